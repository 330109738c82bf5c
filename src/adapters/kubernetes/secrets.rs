//! The Secrets a ScheduledExport names, read into what the adapters need: the database URL and
//! the SFTP credentials. The export Job and the delivery checker both read them here, so a Secret
//! means the same to both. Errors name the Secret, the field that references it and the key;
//! never a value.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Secret;
use kube::api::Api;

use crate::adapters::sftp::{SftpCredentials, SftpError};
use crate::resource::{ConditionReason, KeySecretReference, ScheduledExport};

/// The spec fields that reference Secrets, as named in messages.
pub const SOURCE_SECRET_FIELD: &str = "spec.source.secretRef";
pub const SFTP_SECRET_FIELD: &str = "spec.destination.sftp.secretRef";
pub const PGP_KEY_SECRET_FIELD: &str = "spec.encryption.pgp.publicKeySecretRef";
/// Key of the source Secret that holds the PostgreSQL URL.
pub const DATABASE_URL_KEY: &str = "url";
/// Optional key of the source Secret: the PEM CA that `sslmode=verify-ca`/`verify-full` trust.
pub const DATABASE_CA_CERT_KEY: &str = "caCert";

#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("Secret {secret} (referenced by {field}) not found in namespace {namespace}")]
    NotFound {
        namespace: String,
        secret: String,
        field: &'static str,
    },
    #[error("Secret {secret} (referenced by {field}) has no key \"{key}\"{hint}")]
    KeyMissing {
        secret: String,
        field: &'static str,
        key: &'static str,
        hint: &'static str,
    },
    #[error(
        "Secret {secret} (referenced by spec.encryption.pgp.publicKeySecretRef) has no key \
         \"{key}\": add the ASCII-armoured public key there (`gpg --armor --export KEY-ID`)"
    )]
    PublicKeyMissing { secret: String, key: String },
    #[error("Secret {secret} (referenced by {field}): key \"{key}\" {problem}")]
    KeyInvalid {
        secret: String,
        field: &'static str,
        key: &'static str,
        problem: &'static str,
    },
    #[error("cannot read Secret {secret}: {source}")]
    Api {
        secret: String,
        #[source]
        source: kube::Error,
    },
    /// The SFTP Secret's content is unusable (a missing key, a value that is not text).
    #[error(transparent)]
    Sftp(#[from] SftpError),
}

impl SecretError {
    /// CamelCase reason for a condition.
    pub fn reason(&self) -> ConditionReason {
        match self {
            SecretError::NotFound { .. }
            | SecretError::KeyMissing { .. }
            | SecretError::PublicKeyMissing { .. }
            | SecretError::KeyInvalid { .. } => ConditionReason::SecretInvalid,
            SecretError::Api { .. } => ConditionReason::KubernetesApiFailed,
            SecretError::Sftp(err) => err.reason(),
        }
    }
}

/// A Secret's data, by key.
pub async fn read_secret(
    secrets: &Api<Secret>,
    name: &str,
    field: &'static str,
) -> Result<BTreeMap<String, Vec<u8>>, SecretError> {
    let secret = secrets
        .get_opt(name)
        .await
        .map_err(|source| SecretError::Api {
            secret: name.to_string(),
            source,
        })?
        .ok_or_else(|| SecretError::NotFound {
            namespace: secrets_namespace(secrets),
            secret: name.to_string(),
            field,
        })?;
    Ok(secret
        .data
        .unwrap_or_default()
        .into_iter()
        .map(|(key, value)| (key, value.0))
        .collect())
}

/// The PostgreSQL URL of the object's source (`spec.source.secretRef`, key `url`).
pub async fn database_url(
    secrets: &Api<Secret>,
    object: &ScheduledExport,
) -> Result<String, SecretError> {
    database_source(secrets, object)
        .await
        .map(|source| source.url)
}

/// How to reach the object's source: the URL and, when the Secret has one, the CA to verify the
/// server with.
pub struct DatabaseSource {
    pub url: String,
    pub ca_cert: Option<String>,
}

/// The object's source from `spec.source.secretRef`: key `url`, and optional key `caCert`.
pub async fn database_source(
    secrets: &Api<Secret>,
    object: &ScheduledExport,
) -> Result<DatabaseSource, SecretError> {
    let name = &object.spec.source.secret_ref.name;
    let data = read_secret(secrets, name, SOURCE_SECRET_FIELD).await?;
    let url = data
        .get(DATABASE_URL_KEY)
        .and_then(|value| String::from_utf8(value.clone()).ok())
        .map(|value| value.trim().to_string())
        .filter(|value| !value.is_empty())
        .ok_or(SecretError::KeyMissing {
            secret: name.clone(),
            field: SOURCE_SECRET_FIELD,
            key: DATABASE_URL_KEY,
            hint: ": add the PostgreSQL URL under key \"url\"",
        })?;
    let ca_cert = match data.get(DATABASE_CA_CERT_KEY) {
        None => None,
        Some(value) => {
            Some(
                String::from_utf8(value.clone()).map_err(|_| SecretError::KeyInvalid {
                    secret: name.clone(),
                    field: SOURCE_SECRET_FIELD,
                    key: DATABASE_CA_CERT_KEY,
                    problem: "must be a PEM certificate (text)",
                })?,
            )
        }
    };
    Ok(DatabaseSource { url, ca_cert })
}

/// The SFTP credentials of the Secret `name` (`spec.destination.sftp.secretRef`).
pub async fn sftp_credentials(
    secrets: &Api<Secret>,
    name: &str,
) -> Result<SftpCredentials, SecretError> {
    let data = read_secret(secrets, name, SFTP_SECRET_FIELD).await?;
    Ok(SftpCredentials::from_secret_data(name, &data)?)
}

/// The institution's OpenPGP public key (`spec.encryption.pgp.publicKeySecretRef`).
pub async fn pgp_public_key(
    secrets: &Api<Secret>,
    reference: &KeySecretReference,
) -> Result<Vec<u8>, SecretError> {
    let data = read_secret(secrets, &reference.name, PGP_KEY_SECRET_FIELD).await?;
    data.get(&reference.key)
        .filter(|value| !value.is_empty())
        .cloned()
        .ok_or_else(|| SecretError::PublicKeyMissing {
            secret: reference.name.clone(),
            key: reference.key.clone(),
        })
}

fn secrets_namespace(secrets: &Api<Secret>) -> String {
    secrets.namespace().unwrap_or_default().to_string()
}
