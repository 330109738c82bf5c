//! What can stop an export run, each with the reason the `Exported` condition records and
//! whether it is bad input (exit 2, which the Job does not retry).

use crate::adapters::artifacts::ArtifactError;
use crate::adapters::kubernetes::secrets::SecretError;
use crate::adapters::kubernetes::status::StatusError;
use crate::adapters::postgres::SourceError;
use crate::adapters::sftp::SftpError;
use crate::export::encrypt::EncryptionKeyError;
use crate::export::view::ViewError;
use crate::resource::ConditionReason;

#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error("ScheduledExport {namespace}/{name} not found")]
    NotFound { namespace: String, name: String },
    /// The object this run was started for is gone; another of the same name took its place.
    #[error("{0}")]
    Replaced(StatusError),
    #[error(transparent)]
    Secret(#[from] SecretError),
    #[error("the artifact store cannot be used: {0}")]
    ArtifactStore(#[from] ArtifactError),
    #[error("{0}")]
    Source(#[from] SourceError),
    #[error(transparent)]
    View(#[from] ViewError),
    #[error("SFTP delivery failed: {0}")]
    Sftp(#[from] SftpError),
    #[error("cannot spool the file locally: {0}")]
    Spool(#[from] std::io::Error),
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("the delivery task stopped unexpectedly: {0}")]
    Task(#[from] tokio::task::JoinError),
    #[error(
        "the OpenPGP key in Secret {secret} (key \"{key}\", referenced by \
         spec.encryption.pgp.publicKeySecretRef) {problem}"
    )]
    EncryptionKey {
        secret: String,
        key: String,
        problem: EncryptionKeyError,
    },
    #[error(
        "another file named {file} already exists in {directory} ({bytes} bytes) and is not this \
         object's delivery: its size and sha256 match neither this run's file nor an earlier attempt \
         of this object kept in the artifact store. It was left untouched and nothing was delivered. \
         If another ScheduledExport delivers the same file type into this directory, give each its \
         own directory; if the file is a leftover nobody needs, remove it on the server; the next \
         run then delivers"
    )]
    ForeignFile {
        file: String,
        directory: String,
        bytes: u64,
    },
}

impl ExportError {
    /// CamelCase reason for the `Exported` condition.
    pub fn reason(&self) -> ConditionReason {
        match self {
            ExportError::NotFound { .. } | ExportError::Replaced(_) => ConditionReason::NotFound,
            // An SFTP Secret that is unusable is still the Secret's fault, whatever its content.
            ExportError::Secret(SecretError::Api { .. }) => ConditionReason::KubernetesApiFailed,
            ExportError::Secret(_) => ConditionReason::SecretInvalid,
            ExportError::ArtifactStore(_) => ConditionReason::ArtifactStoreFailed,
            ExportError::Source(SourceError::RecoveryConflict { .. }) => {
                ConditionReason::RecoveryConflict
            }
            ExportError::Source(SourceError::Tls { .. }) => ConditionReason::DatabaseTlsFailed,
            ExportError::Source(
                SourceError::InvalidCaCert { .. } | SourceError::InvalidUrl { .. },
            ) => ConditionReason::SecretInvalid,
            ExportError::Source(_) => ConditionReason::DatabaseFailed,
            ExportError::View(_) => ConditionReason::ViewInvalid,
            ExportError::Sftp(err) => err.reason(),
            ExportError::Spool(_) | ExportError::Task(_) => ConditionReason::SpoolFailed,
            ExportError::Kube(_) => ConditionReason::KubernetesApiFailed,
            ExportError::ForeignFile { .. } => ConditionReason::FileExists,
            ExportError::EncryptionKey { .. } => ConditionReason::EncryptionKeyInvalid,
        }
    }

    /// Bad input (a name that does not exist, or is another object now, or a view that cannot
    /// be exported losslessly) exits 2, which the Job's
    /// failure policy does not retry; everything else 1.
    pub fn is_bad_input(&self) -> bool {
        matches!(
            self,
            ExportError::NotFound { .. } | ExportError::Replaced(_) | ExportError::View(_)
        )
    }
}

impl From<StatusError> for ExportError {
    fn from(err: StatusError) -> Self {
        match err {
            StatusError::Kube(err) => ExportError::Kube(err),
            replaced @ StatusError::Replaced { .. } => ExportError::Replaced(replaced),
        }
    }
}
