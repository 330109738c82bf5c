//! The Secrets a ScheduledExport names, read into what the adapters need: the database URL and
//! the SFTP credentials. The export Job and the delivery checker both read them here, so a Secret
//! means the same to both. Errors name the Secret, the field that references it and the key;
//! never a value.
//!
//! The checker reads Secrets from the API server. An export Job's Pod gets its object's two
//! Secrets as volumes the kubelet fills ([`SecretReader::Mounted`]), so the Job's own identity
//! needs no right to read any Secret.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::Secret;
use kube::api::Api;

use crate::adapters::artifacts::S3Options;
use crate::adapters::sftp::{SftpCredentials, SftpError};
use crate::resource::{ConditionReason, KeySecretReference, ScheduledExport};

/// The spec fields that reference Secrets, as named in messages.
pub const SOURCE_SECRET_FIELD: &str = "spec.source.secretRef";
pub const SFTP_SECRET_FIELD: &str = "spec.destination.sftp.secretRef";
pub const PGP_KEY_SECRET_FIELD: &str = "spec.encryption.pgp.publicKeySecretRef";
pub const WEBHOOK_SECRET_FIELD: &str = "spec.notify.webhook.secretRef";
/// The operator's setting that names the artifact store's credentials Secret of each namespace.
pub const ARTIFACT_STORE_SECRET_FIELD: &str = "the operator's artifact store credentials setting";
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
    #[error("cannot read Secret {secret} (referenced by {field}) from its volume: {source}")]
    Unreadable {
        secret: String,
        field: &'static str,
        #[source]
        source: std::io::Error,
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
            | SecretError::KeyInvalid { .. }
            | SecretError::Unreadable { .. } => ConditionReason::SecretInvalid,
            SecretError::Api { .. } => ConditionReason::KubernetesApiFailed,
            SecretError::Sftp(err) => err.reason(),
        }
    }
}

/// Where an export finds the Secrets its object names.
pub enum SecretReader {
    /// From the API server (the checker, or an export started by hand). Boxed: a client is far
    /// larger than the other variant.
    Api(Box<Api<Secret>>),
    /// From the volumes of an export Pod: each Secret under `{root}/{secret name}`, one file per
    /// key (a Secret's name is a DNS subdomain, so it is one plain path segment). The volumes are
    /// optional, so a Secret that is missing (or lacks a key) is reported by the export with its
    /// name instead of holding the Pod in `CreateContainerConfigError`.
    Mounted { root: PathBuf, namespace: String },
}

impl SecretReader {
    /// The data of Secret `name`, referenced by `field`, by key.
    pub async fn read(
        &self,
        name: &str,
        field: &'static str,
    ) -> Result<BTreeMap<String, Vec<u8>>, SecretError> {
        match self {
            SecretReader::Api(secrets) => read_secret(secrets, name, field).await,
            SecretReader::Mounted { root, namespace } => {
                read_mounted(&root.join(name), namespace, name, field)
            }
        }
    }
}

/// A Secret volume's keys. The kubelet writes each key as a file (a link into a `..`-prefixed
/// directory it swaps atomically); those bookkeeping entries are not keys. An empty volume is an
/// optional Secret that does not exist.
fn read_mounted(
    dir: &Path,
    namespace: &str,
    name: &str,
    field: &'static str,
) -> Result<BTreeMap<String, Vec<u8>>, SecretError> {
    let unreadable = |source| SecretError::Unreadable {
        secret: name.to_string(),
        field,
        source,
    };
    let not_found = || SecretError::NotFound {
        namespace: namespace.to_string(),
        secret: name.to_string(),
        field,
    };
    // A Secret's name is one path segment; anything else was never mounted.
    if name.is_empty() || name.contains('/') || name.starts_with('.') {
        return Err(not_found());
    }
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Err(not_found()),
        Err(err) => return Err(unreadable(err)),
    };
    let mut data = BTreeMap::new();
    for entry in entries {
        let entry = entry.map_err(unreadable)?;
        let Some(key) = entry.file_name().to_str().map(str::to_string) else {
            continue;
        };
        if key.starts_with("..") {
            continue;
        }
        let value = std::fs::read(entry.path()).map_err(unreadable)?;
        data.insert(key, value);
    }
    if data.is_empty() {
        return Err(not_found());
    }
    Ok(data)
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

/// How to reach the object's source: the URL and, when the Secret has one, the CA to verify the
/// server with.
pub struct DatabaseSource {
    pub url: String,
    pub ca_cert: Option<String>,
}

/// The object's source from `spec.source.secretRef`: key `url`, and optional key `caCert`.
pub async fn database_source(
    secrets: &SecretReader,
    object: &ScheduledExport,
) -> Result<DatabaseSource, SecretError> {
    let name = &object.spec.source.secret_ref.name;
    let data = secrets.read(name, SOURCE_SECRET_FIELD).await?;
    database_source_of(name, &data)
}

/// The source a Secret's data describes.
fn database_source_of(
    name: &str,
    data: &BTreeMap<String, Vec<u8>>,
) -> Result<DatabaseSource, SecretError> {
    let url = data
        .get(DATABASE_URL_KEY)
        .and_then(|value| String::from_utf8(value.clone()).ok())
        .map(|value| value.trim().to_string())
        .filter(|value| !value.is_empty())
        .ok_or(SecretError::KeyMissing {
            secret: name.to_string(),
            field: SOURCE_SECRET_FIELD,
            key: DATABASE_URL_KEY,
            hint: ": add the PostgreSQL URL under key \"url\"",
        })?;
    let ca_cert = match data.get(DATABASE_CA_CERT_KEY) {
        None => None,
        Some(value) => {
            Some(
                String::from_utf8(value.clone()).map_err(|_| SecretError::KeyInvalid {
                    secret: name.to_string(),
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
    secrets: &SecretReader,
    name: &str,
) -> Result<SftpCredentials, SecretError> {
    let data = secrets.read(name, SFTP_SECRET_FIELD).await?;
    Ok(SftpCredentials::from_secret_data(name, &data)?)
}

/// The S3 settings of the artifact store for one namespace, from that namespace's credentials
/// Secret `name` (the keys the export Jobs get as environment: `AWS_ACCESS_KEY_ID`, ...), so a
/// recopy uses the same credentials as the namespace's own Jobs. The endpoint and region, which
/// are no secret, fall back to `defaults` when the Secret leaves them out; the keys never do.
pub async fn artifact_store_options(
    secrets: &SecretReader,
    name: &str,
    defaults: &S3Options,
) -> Result<S3Options, SecretError> {
    let data = secrets.read(name, ARTIFACT_STORE_SECRET_FIELD).await?;
    Ok(s3_options_of(&data, defaults))
}

fn s3_options_of(data: &BTreeMap<String, Vec<u8>>, defaults: &S3Options) -> S3Options {
    let lookup = |key: &str| {
        data.get(key)
            .and_then(|value| String::from_utf8(value.clone()).ok())
            .map(|value| value.trim().to_string())
            .filter(|value| !value.is_empty())
    };
    let mut options = S3Options::from_lookup(lookup);
    if options.endpoint.is_none() {
        options.endpoint = defaults.endpoint.clone();
    }
    if lookup("AWS_REGION").is_none() && lookup("AWS_DEFAULT_REGION").is_none() {
        options.region = defaults.region.clone();
    }
    options
}

/// The institution's OpenPGP public key (`spec.encryption.pgp.publicKeySecretRef`).
pub async fn pgp_public_key(
    secrets: &SecretReader,
    reference: &KeySecretReference,
) -> Result<Vec<u8>, SecretError> {
    let data = secrets.read(&reference.name, PGP_KEY_SECRET_FIELD).await?;
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A Secret volume as the kubelet writes it: keys link into a `..data` directory.
    fn volume(keys: &[(&str, &str)]) -> tempfile::TempDir {
        let root = tempfile::tempdir().expect("tempdir");
        let dir = root.path().join("crm-database");
        let data = dir.join("..2026_12_01_00_00_00.000000001");
        std::fs::create_dir_all(&data).expect("data dir");
        std::os::unix::fs::symlink(data.file_name().expect("name"), dir.join("..data"))
            .expect("..data");
        for (key, value) in keys {
            std::fs::write(data.join(key), value).expect("key");
            std::os::unix::fs::symlink(format!("..data/{key}"), dir.join(key)).expect("link");
        }
        root
    }

    fn mounted(root: &tempfile::TempDir) -> SecretReader {
        SecretReader::Mounted {
            root: root.path().to_path_buf(),
            namespace: "univ-a".into(),
        }
    }

    #[tokio::test]
    async fn a_mounted_secret_reads_its_keys_and_not_the_kubelets_bookkeeping() {
        let root = volume(&[("url", "postgres://u@db/crm\n"), ("caCert", "PEM")]);
        let data = mounted(&root)
            .read("crm-database", SOURCE_SECRET_FIELD)
            .await
            .expect("read");
        assert_eq!(
            data.keys().collect::<Vec<_>>(),
            ["caCert", "url"],
            "only the keys"
        );
        let source = database_source_of("crm-database", &data).expect("source");
        assert_eq!(source.url, "postgres://u@db/crm");
        assert_eq!(source.ca_cert.as_deref(), Some("PEM"));
    }

    #[tokio::test]
    async fn a_mounted_secret_without_the_key_names_the_secret_and_the_key() {
        let root = volume(&[("caCert", "PEM")]);
        let data = mounted(&root)
            .read("crm-database", SOURCE_SECRET_FIELD)
            .await
            .expect("read");
        let err = database_source_of("crm-database", &data)
            .err()
            .expect("no url");
        assert_eq!(err.reason(), ConditionReason::SecretInvalid);
        let message = err.to_string();
        assert!(
            message.contains("crm-database")
                && message.contains("\"url\"")
                && message.contains(SOURCE_SECRET_FIELD),
            "{message}"
        );
    }

    #[test]
    fn store_credentials_come_from_the_namespace_secret_and_never_from_the_operator() {
        let defaults = S3Options {
            endpoint: Some("http://minio:9000".into()),
            region: "eu-west-1".into(),
            access_key_id: Some("OPERATOR".into()),
            secret_access_key: Some("operator-secret".into()),
        };
        let data = BTreeMap::from([
            ("AWS_ACCESS_KEY_ID".to_string(), b"TENANT".to_vec()),
            (
                "AWS_SECRET_ACCESS_KEY".to_string(),
                b"tenant-secret\n".to_vec(),
            ),
        ]);
        let options = s3_options_of(&data, &defaults);
        assert_eq!(options.access_key_id.as_deref(), Some("TENANT"));
        assert_eq!(options.secret_access_key.as_deref(), Some("tenant-secret"));
        assert_eq!(options.endpoint.as_deref(), Some("http://minio:9000"));
        assert_eq!(options.region, "eu-west-1");

        let own_endpoint = BTreeMap::from([
            (
                "AWS_ENDPOINT_URL".to_string(),
                b"http://tenant-store".to_vec(),
            ),
            ("AWS_REGION".to_string(), b"us-east-2".to_vec()),
        ]);
        let options = s3_options_of(&own_endpoint, &defaults);
        assert_eq!(options.endpoint.as_deref(), Some("http://tenant-store"));
        assert_eq!(options.region, "us-east-2");
        assert_eq!(
            options.access_key_id, None,
            "no fallback to the operator's keys"
        );
        assert_eq!(options.secret_access_key, None);
    }

    #[tokio::test]
    async fn an_empty_optional_volume_is_a_secret_that_does_not_exist() {
        let root = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir(root.path().join("sftp-credentials")).expect("dir");
        let err = mounted(&root)
            .read("sftp-credentials", SFTP_SECRET_FIELD)
            .await
            .expect_err("not found");
        assert!(matches!(err, SecretError::NotFound { .. }), "{err:?}");
        let message = err.to_string();
        assert!(
            message.contains("sftp-credentials")
                && message.contains(SFTP_SECRET_FIELD)
                && message.contains("univ-a"),
            "{message}"
        );
    }
}
