//! OpenPGP encryption of a delivered file to the institution's public key (Sequoia, on its
//! pure-Rust RustCrypto backend). The key is checked the way the run will use it, at the run's
//! instant, before any row is read: a key that cannot encrypt is a failed run with a reason, not a
//! file nobody can open.
//!
//! Why the RustCrypto backend's "variable-time" flag is acceptable here: only public-key
//! operations run (encrypting a session key to the recipient); no secret key is ever used, so
//! there is nothing for a timing side channel to leak.

use std::io::Write;
use std::time::SystemTime;

use chrono::{DateTime, Utc};
use sequoia_openpgp::Cert;
use sequoia_openpgp::cert::prelude::ValidErasedKeyAmalgamation;
use sequoia_openpgp::packet::key::PublicParts;
use sequoia_openpgp::parse::Parse;
use sequoia_openpgp::policy::StandardPolicy;
use sequoia_openpgp::serialize::stream::{Encryptor, LiteralWriter, Message};
use sequoia_openpgp::types::RevocationStatus;

/// The policy every check and encryption runs under: what the OpenPGP community currently
/// considers safe (no SHA-1 binding signatures, no short RSA keys, ...).
static POLICY: StandardPolicy<'static> = StandardPolicy::new();

/// Why a public key cannot be used; the text follows "the OpenPGP key in Secret S, key K".
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EncryptionKeyError {
    #[error(
        "is not an ASCII-armoured OpenPGP public key; export it with `gpg --armor --export KEY-ID`"
    )]
    Unreadable,
    #[error(
        "holds a private key; store only the public key (`gpg --armor --export KEY-ID`) and keep \
         the private key with the institution"
    )]
    PrivateKey,
    #[error("is revoked; ask the institution for its current public key")]
    Revoked,
    #[error("expired at {0}; ask the institution to extend it or send its new public key")]
    Expired(DateTime<Utc>),
    #[error("is not usable under the OpenPGP standard policy: {0}")]
    Rejected(String),
    #[error(
        "has no valid, unexpired, unrevoked encryption subkey; ask the institution for a key that \
         can encrypt"
    )]
    NoEncryptionSubkey,
}

/// A public key checked, at a given instant, to have at least one key that can encrypt.
#[derive(Debug, Clone)]
pub struct RecipientKey {
    cert: Cert,
    at: SystemTime,
}

impl RecipientKey {
    /// Parses and checks an armoured (or binary) public key as of `now`.
    pub fn parse(key: &[u8], now: DateTime<Utc>) -> Result<Self, EncryptionKeyError> {
        let cert = Cert::from_bytes(key).map_err(|_| EncryptionKeyError::Unreadable)?;
        if cert.is_tsk() {
            return Err(EncryptionKeyError::PrivateKey);
        }
        let key = Self {
            cert,
            at: SystemTime::from(now),
        };
        key.check()?;
        Ok(key)
    }

    /// The key's fingerprint, for logs and status (public).
    pub fn fingerprint(&self) -> String {
        self.cert.fingerprint().to_hex()
    }

    fn check(&self) -> Result<(), EncryptionKeyError> {
        let valid = self
            .cert
            .with_policy(&POLICY, self.at)
            .map_err(|err| EncryptionKeyError::Rejected(err.to_string()))?;
        if let RevocationStatus::Revoked(_) = valid.revocation_status() {
            return Err(EncryptionKeyError::Revoked);
        }
        if valid.alive().is_err() {
            let expired = valid
                .primary_key()
                .key_expiration_time()
                .map(DateTime::<Utc>::from);
            return Err(match expired {
                Some(at) => EncryptionKeyError::Expired(at),
                None => EncryptionKeyError::NoEncryptionSubkey,
            });
        }
        if self.recipients(&POLICY).next().is_none() {
            return Err(EncryptionKeyError::NoEncryptionSubkey);
        }
        Ok(())
    }

    fn recipients<'a>(
        &'a self,
        policy: &'a StandardPolicy<'static>,
    ) -> impl Iterator<Item = ValidErasedKeyAmalgamation<'a, PublicParts>> + 'a {
        self.cert
            .keys()
            .with_policy(policy, self.at)
            .supported()
            .alive()
            .revoked(false)
            .for_storage_encryption()
            .for_transport_encryption()
    }

    /// A writer that encrypts what it is given into `sink` as one OpenPGP message (binary, one
    /// literal data packet) to every valid encryption subkey; `finalize` it to write the end.
    pub fn encrypting_writer<'a, W: Write + Send + Sync + 'a>(
        &'a self,
        sink: W,
    ) -> std::io::Result<Message<'a>> {
        let message = Message::new(sink);
        let message = Encryptor::for_recipients(message, self.recipients(&POLICY))
            .build()
            .map_err(std::io::Error::other)?;
        LiteralWriter::new(message)
            .build()
            .map_err(std::io::Error::other)
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::time::Duration;

    use sequoia_openpgp::cert::CertBuilder;
    use sequoia_openpgp::serialize::SerializeInto;

    use super::*;

    fn armored_public(cert: &Cert) -> Vec<u8> {
        cert.armored().to_vec().unwrap()
    }

    #[test]
    fn a_general_purpose_key_encrypts() {
        let (cert, _) = CertBuilder::general_purpose(Some("exports@example.edu"))
            .generate()
            .unwrap();
        let key = RecipientKey::parse(&armored_public(&cert), Utc::now()).unwrap();
        assert_eq!(key.fingerprint(), cert.fingerprint().to_hex());
        let mut out = Vec::new();
        let mut writer = key.encrypting_writer(&mut out).unwrap();
        writer.write_all(b"id\r\n1\r\n").unwrap();
        writer.finalize().unwrap();
        assert!(!out.is_empty());
        assert!(
            !out.windows(7).any(|w| w == b"id\r\n1\r\n"),
            "the plaintext is not in the message"
        );
    }

    #[test]
    fn keys_that_cannot_encrypt_are_refused_with_the_reason() {
        let (signing_only, _) = CertBuilder::new()
            .add_userid("sign only")
            .add_signing_subkey()
            .generate()
            .unwrap();
        assert_eq!(
            RecipientKey::parse(&armored_public(&signing_only), Utc::now()).unwrap_err(),
            EncryptionKeyError::NoEncryptionSubkey
        );

        let created = SystemTime::now() - Duration::from_secs(10 * 86_400);
        let (expiring, _) = CertBuilder::general_purpose(Some("expiring"))
            .set_creation_time(created)
            .set_validity_period(Duration::from_secs(86_400))
            .generate()
            .unwrap();
        assert!(matches!(
            RecipientKey::parse(&armored_public(&expiring), Utc::now()).unwrap_err(),
            EncryptionKeyError::Expired(_)
        ));
        // The same key was fine while it was valid: the run's clock decides.
        let then = DateTime::<Utc>::from(created + Duration::from_secs(3600));
        assert!(RecipientKey::parse(&armored_public(&expiring), then).is_ok());

        let (revoked, revocation) = CertBuilder::general_purpose(Some("revoked"))
            .generate()
            .unwrap();
        let (revoked, _) = revoked.insert_packets(revocation).unwrap();
        assert_eq!(
            RecipientKey::parse(&armored_public(&revoked), Utc::now()).unwrap_err(),
            EncryptionKeyError::Revoked
        );

        let (with_secret, _) = CertBuilder::general_purpose(Some("secret"))
            .generate()
            .unwrap();
        let private = with_secret.as_tsk().armored().to_vec().unwrap();
        assert_eq!(
            RecipientKey::parse(&private, Utc::now()).unwrap_err(),
            EncryptionKeyError::PrivateKey
        );
        assert_eq!(
            RecipientKey::parse(
                b"-----BEGIN PGP PUBLIC KEY BLOCK-----\nnonsense",
                Utc::now()
            )
            .unwrap_err(),
            EncryptionKeyError::Unreadable
        );
    }
}
