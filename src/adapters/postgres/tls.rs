//! TLS to the source database, with libpq's `sslmode` meanings: `disable` (plain), `prefer` (the
//! default: TLS when the server offers it, unverified), `require` (TLS, unverified unless a CA is
//! given, as libpq does with a root certificate), `verify-ca` (the chain must lead to the CA) and
//! `verify-full` (also the host name). tokio-postgres itself parses only the first three, so the
//! mode is read here and handed to it as `require` with a verifier that does what the mode asks.

use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};
use tokio_postgres_rustls::MakeRustlsConnect;

use super::SourceError;

/// Where the CA certificate for `verify-ca` and `verify-full` comes from, for messages.
pub const CA_CERT_HINT: &str = "the source Secret's key caCert";

/// How the connection to the source is protected (libpq's `sslmode`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SslMode {
    Disable,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

impl SslMode {
    pub fn parse(value: &str) -> Result<SslMode, SourceError> {
        Ok(match value {
            "disable" => SslMode::Disable,
            // libpq's `allow` tries plain first; TLS first is never weaker.
            "allow" | "prefer" => SslMode::Prefer,
            "require" => SslMode::Require,
            "verify-ca" => SslMode::VerifyCa,
            "verify-full" => SslMode::VerifyFull,
            _ => {
                return Err(SourceError::InvalidUrl {
                    reason: "sslmode must be one of disable, allow, prefer, require, verify-ca, \
                             verify-full"
                        .into(),
                });
            }
        })
    }

    /// The mode as tokio-postgres knows it: every TLS mode is `require` there once the
    /// connector enforces the verification.
    pub fn driver_mode(self) -> tokio_postgres::config::SslMode {
        match self {
            SslMode::Disable => tokio_postgres::config::SslMode::Disable,
            SslMode::Prefer => tokio_postgres::config::SslMode::Prefer,
            SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull => {
                tokio_postgres::config::SslMode::Require
            }
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            SslMode::Disable => "disable",
            SslMode::Prefer => "prefer",
            SslMode::Require => "require",
            SslMode::VerifyCa => "verify-ca",
            SslMode::VerifyFull => "verify-full",
        }
    }
}

/// The connector for `mode`, trusting `ca_pem` (PEM, one or more certificates) when given, and
/// the system's roots otherwise.
pub fn connector(
    mode: SslMode,
    ca_pem: Option<&str>,
    target: &str,
) -> Result<MakeRustlsConnect, SourceError> {
    let failed = |reason: String| SourceError::Tls {
        target: target.to_string(),
        reason,
    };
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|err| failed(format!("cannot set up TLS: {err}")))?;
    let verifier: Arc<dyn ServerCertVerifier> = match (mode, ca_pem) {
        (SslMode::Disable | SslMode::Prefer, _) | (SslMode::Require, None) => {
            Arc::new(Unverified { provider })
        }
        (SslMode::Require | SslMode::VerifyCa, Some(_)) | (SslMode::VerifyCa, None) => {
            Arc::new(ChainOnly(chain_verifier(ca_pem, provider, &failed)?))
        }
        (SslMode::VerifyFull, _) => chain_verifier(ca_pem, provider, &failed)?,
    };
    let config = builder
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    Ok(MakeRustlsConnect::new(config))
}

fn chain_verifier(
    ca_pem: Option<&str>,
    provider: Arc<CryptoProvider>,
    failed: &dyn Fn(String) -> SourceError,
) -> Result<Arc<WebPkiServerVerifier>, SourceError> {
    let mut roots = RootCertStore::empty();
    match ca_pem {
        Some(pem) => {
            let certificates = CertificateDer::pem_slice_iter(pem.as_bytes())
                .collect::<Result<Vec<_>, _>>()
                .map_err(|_| SourceError::InvalidCaCert {
                    reason: "it is not PEM (-----BEGIN CERTIFICATE----- blocks)".into(),
                })?;
            if certificates.is_empty() {
                return Err(SourceError::InvalidCaCert {
                    reason: "it holds no certificate".into(),
                });
            }
            for certificate in certificates {
                roots
                    .add(certificate)
                    .map_err(|err| SourceError::InvalidCaCert {
                        reason: format!("a certificate cannot be used as a CA: {err}"),
                    })?;
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            roots.add_parsable_certificates(found.certs);
            if roots.is_empty() {
                return Err(failed(format!(
                    "no CA to verify the server with: put the server's CA in {CA_CERT_HINT}"
                )));
            }
        }
    }
    WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
        .build()
        .map_err(|err| failed(format!("cannot set up certificate verification: {err}")))
}

/// `verify-ca`: the chain must lead to a trusted CA; the host name is not compared.
#[derive(Debug)]
struct ChainOnly(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        // The chain is checked before the name, so a name error means the chain was trusted.
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
        {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

/// `prefer` and `require` without a CA: encrypted, the certificate not checked (libpq's meaning;
/// the handshake's signatures are still verified, so the session is with the certificate's key).
#[derive(Debug)]
struct Unverified {
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for Unverified {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// A TLS failure in words a database administrator acts on.
pub fn describe_tls_failure(err: &rustls::Error, mode: SslMode, host: &str) -> String {
    match err {
        rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer) => format!(
            "the server's certificate is not signed by a trusted CA (sslmode={}): put the CA that \
             signed it in {CA_CERT_HINT}",
            mode.as_str()
        ),
        rustls::Error::InvalidCertificate(
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
        ) => format!(
            "the server's certificate is not valid for host {host:?} (sslmode=verify-full): connect \
             by a name the certificate lists, or use sslmode=verify-ca"
        ),
        rustls::Error::InvalidCertificate(CertificateError::Expired) => {
            "the server's certificate has expired".into()
        }
        rustls::Error::InvalidCertificate(other) => {
            format!("the server's certificate was refused: {other:?}")
        }
        other => format!("TLS handshake failed: {other}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sslmode_values_follow_libpq() {
        assert_eq!(
            SslMode::parse("verify-full").expect("valid"),
            SslMode::VerifyFull
        );
        assert_eq!(SslMode::parse("allow").expect("valid"), SslMode::Prefer);
        assert_eq!(
            SslMode::VerifyCa.driver_mode(),
            tokio_postgres::config::SslMode::Require
        );
        let err = SslMode::parse("verify_full").expect_err("invalid");
        assert!(err.to_string().contains("verify-full"), "{err}");
    }

    #[test]
    fn a_ca_that_is_not_pem_is_refused_by_name() {
        let err = connector(
            SslMode::VerifyFull,
            Some("not a certificate"),
            "db:5432/crm as sx",
        )
        .err()
        .expect("refused");
        assert!(err.to_string().contains("caCert"), "{err}");
    }
}
