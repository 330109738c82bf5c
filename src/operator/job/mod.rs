//! The export Jobs the controller creates, as pure functions: the Job's name and manifest
//! (`build`), and what an observed Job says (`state`: its state, slot, run kind, which finished
//! Jobs to delete).
//!
//! Nothing here talks to the API server, so every rule that keeps runs exactly-once (the
//! deterministic name) or safe (Pod security, failure policy) is unit-tested without a cluster.

mod build;
mod identity;
mod state;
#[cfg(test)]
mod tests;

pub use build::*;
pub use identity::*;
pub use state::*;

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ResourceRequirements;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

/// `app.kubernetes.io/name` of everything this operator creates.
pub const LABEL_APP_NAME: &str = "app.kubernetes.io/name";
/// `app.kubernetes.io/component`; `export` marks the export Jobs and their Pods.
pub const LABEL_COMPONENT: &str = "app.kubernetes.io/component";
/// UID of the owning ScheduledExport. The selector of an object's Jobs, because a UID always fits a
/// label value (63 characters) while an object name may not, and a UID is not reused by a new object
/// of the same name.
pub const LABEL_OWNER_UID: &str = "exports.crm.dev/scheduled-export-uid";
/// Name of the owning ScheduledExport, for people (`kubectl get jobs -l ...`); omitted when the name
/// is longer than a label value may be.
pub const LABEL_OWNER_NAME: &str = "exports.crm.dev/scheduled-export";
/// The slot (UTC, RFC 3339) a Job runs; for run-now, the trigger instant.
pub const ANNOTATION_SLOT: &str = "exports.crm.dev/slot";
/// `scheduled` or `run-now`.
pub const ANNOTATION_RUN_KIND: &str = "exports.crm.dev/run-kind";
/// The run-now token a Job honours; the Job name only carries a hash of it.
pub const ANNOTATION_RUN_NOW_TOKEN: &str = "exports.crm.dev/run-now-token";
/// The full-export token a Job honours; the Job name only carries a hash of it.
pub const ANNOTATION_FULL_EXPORT_TOKEN: &str = "exports.crm.dev/full-export-token";

/// Value of [`LABEL_APP_NAME`].
pub const APP_NAME: &str = "scheduled-exports";
/// Value of [`LABEL_COMPONENT`].
pub const COMPONENT_EXPORT: &str = "export";
/// Name of the one container of an export Pod; the failure policy matches exit codes on it.
pub const CONTAINER_NAME: &str = "export";
/// Where the spool `emptyDir` is mounted; `SPOOL_DIR` and `TMPDIR` point here because the root
/// filesystem is read-only.
pub const SPOOL_MOUNT_PATH: &str = "/spool";
/// Where the export container finds the Secrets its object names (`SECRETS_DIR`): each Secret's
/// keys as files under `{SECRETS_MOUNT_PATH}/{secret name}/`.
pub const SECRETS_MOUNT_PATH: &str = "/secrets";
/// Environment variable of the export container holding the owning object's UID.
pub const ENV_OBJECT_UID: &str = "EXPORT_OBJECT_UID";
/// Environment variable of the export container that makes the run ignore the watermark.
pub const ENV_FULL_EXPORT: &str = "EXPORT_FULL";
/// Exit status of `scheduled-exports` for bad input: a retry cannot help.
pub const EXIT_BAD_INPUT: i32 = 2;

const RUN_KIND_SCHEDULED: &str = "scheduled";
const RUN_KIND_RUN_NOW: &str = "run-now";
const RUN_KIND_FULL_EXPORT: &str = "full-export";
const SPOOL_VOLUME: &str = "spool";
/// UID and GID of the export process: the conventional non-root "nonroot" user of distroless
/// images, so the restricted Pod Security level admits the Pod whatever the image's USER says.
const NON_ROOT_ID: i64 = 65532;

/// Longest DNS-1123 label, and so the longest Job name whose Pods can carry it in their
/// `job-name` label.
const MAX_JOB_NAME: usize = 63;
/// Length of `-{YYYYMMDDHHMM}`, `-now-{8 hex}` and `-all-{8 hex}`; the suffixes have one length.
const SUFFIX_LEN: usize = 13;
/// Longest object-name part of a Job name.
const MAX_BASE: usize = MAX_JOB_NAME - SUFFIX_LEN;
/// Hex digits of the hash that stands for a shortened or rewritten object name, or for a token.
const HASH_HEX: usize = 8;

/// Settings from the operator's configuration (Helm values / flags).
#[derive(Debug, Clone, PartialEq)]
pub struct JobSettings {
    /// Image of the export container; it must hold `scheduled-exports` on its `PATH`.
    pub image: String,
    /// `imagePullPolicy`; `None` leaves the Kubernetes default (IfNotPresent for a tagged image).
    pub image_pull_policy: Option<String>,
    /// Where delivered files are kept for recopies (`ARTIFACT_STORE_URL`). No default: a Job
    /// without it could only fail.
    pub artifact_store_url: String,
    /// Secret in the object's namespace whose keys become the export's environment
    /// (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_ENDPOINT_URL`, ... for an `s3://` store).
    pub artifact_store_secret: Option<String>,
    /// PersistentVolumeClaim holding a `file://` store, mounted in the export Pod at the URL's
    /// path (the controller mounts the same claim, so it can recopy from it).
    pub artifact_store_claim: Option<String>,
    /// Container resources. The ephemeral-storage limit must exceed `spool_size_limit`, or the
    /// kubelet evicts the Pod before the spool reaches its own limit.
    pub resources: ResourceRequirements,
    /// Upper bound on one Job's whole life, retries included, so a hung export cannot block the
    /// object's next runs forever (runs of one object never overlap).
    pub active_deadline_seconds: i64,
    /// Retries after a failed Pod (a failure on bad input, exit 2, is never retried).
    pub backoff_limit: i32,
    /// Bound on each network step of the export (`EXPORT_TIMEOUT`), e.g. `30s` or `2m`.
    pub export_timeout: String,
    /// `LOG_FORMAT` of the export process (`text` or `json`); `None` keeps the binary's default.
    pub log_format: Option<String>,
    /// `sizeLimit` of the spool `emptyDir`, the Pod's only writable place (`TMPDIR`); the file
    /// itself streams to the server and the store and is never written there.
    pub spool_size_limit: Option<String>,
}

impl Default for JobSettings {
    /// Defaults that run one export of a mid-sized institution: the file streams from the database
    /// to the server and the store in bounded memory.
    fn default() -> Self {
        let requests = BTreeMap::from([
            ("cpu".to_string(), Quantity("100m".into())),
            ("memory".to_string(), Quantity("64Mi".into())),
            ("ephemeral-storage".to_string(), Quantity("1Gi".into())),
        ]);
        // No CPU limit: throttling would only stretch the export; memory is bounded because the
        // process streams. Ephemeral storage: the 10Gi spool plus room for logs.
        let limits = BTreeMap::from([
            ("memory".to_string(), Quantity("256Mi".into())),
            ("ephemeral-storage".to_string(), Quantity("11Gi".into())),
        ]);
        Self {
            image: format!(
                "ghcr.io/example/scheduled-exports:{}",
                env!("CARGO_PKG_VERSION")
            ),
            image_pull_policy: None,
            artifact_store_url: String::new(),
            artifact_store_secret: None,
            artifact_store_claim: None,
            resources: ResourceRequirements {
                requests: Some(requests),
                limits: Some(limits),
                claims: None,
            },
            active_deadline_seconds: 3600,
            backoff_limit: 2,
            export_timeout: "30s".to_string(),
            log_format: None,
            spool_size_limit: Some("10Gi".to_string()),
        }
    }
}

/// Why a Job runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunKind {
    /// The daily run of a slot.
    Scheduled,
    /// One extra run asked for through the run-now annotation; the token is honoured once.
    RunNow { token: String },
    /// One extra run whose file holds every row, asked for through the full-export annotation;
    /// the token is honoured once.
    FullExport { token: String },
}

/// Why no Job could be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JobError {
    /// Only an object read from the API server can own Jobs: the owner reference needs its UID,
    /// and the Job lives in its namespace.
    #[error(
        "the ScheduledExport has no metadata.{field}; only an object read from the API server can own export Jobs"
    )]
    MissingMetadata { field: &'static str },
    /// A setting without which the Job could only fail.
    #[error("the operator setting {setting} is empty; set it in the operator's configuration")]
    MissingSetting { setting: &'static str },
    /// A claim only makes sense for a store on a filesystem.
    #[error(
        "the artifact store claim {claim} needs a file:// artifact store URL, not {url}; remove the claim or use a file:// URL"
    )]
    ClaimWithoutFileStore { claim: String, url: String },
}

const ARTIFACT_VOLUME: &str = "artifacts";
