//! The export Jobs the controller creates, as pure functions: the Job's name, its manifest, and
//! what an observed Job says (state, slot, run kind, which finished Jobs to delete).
//!
//! Nothing here talks to the API server, so every rule that keeps runs exactly-once (the
//! deterministic name) or safe (Pod security, failure policy) is unit-tested without a cluster.

use std::cmp::Reverse;
use std::collections::BTreeMap;

use chrono::{DateTime, SecondsFormat, Utc};
use k8s_openapi::api::batch::v1::{
    Job, JobCondition, JobSpec, PodFailurePolicy, PodFailurePolicyOnExitCodesRequirement,
    PodFailurePolicyOnPodConditionsPattern, PodFailurePolicyRule,
};
use k8s_openapi::api::core::v1::{
    Capabilities, Container, EmptyDirVolumeSource, EnvFromSource, EnvVar,
    PersistentVolumeClaimVolumeSource, PodSecurityContext, PodSpec, PodTemplateSpec,
    ResourceRequirements, SeccompProfile, SecretEnvSource, SecurityContext, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::{Resource, ResourceExt};
use sha2::{Digest, Sha256};

use crate::resource::ScheduledExport;
use crate::status::phase;

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

/// Value of [`LABEL_APP_NAME`].
pub const APP_NAME: &str = "scheduled-exports";
/// Value of [`LABEL_COMPONENT`].
pub const COMPONENT_EXPORT: &str = "export";
/// Name of the one container of an export Pod; the failure policy matches exit codes on it.
pub const CONTAINER_NAME: &str = "export";
/// Where the spool `emptyDir` is mounted; `SPOOL_DIR` and `TMPDIR` point here because the root
/// filesystem is read-only.
pub const SPOOL_MOUNT_PATH: &str = "/spool";
/// Exit status of `scheduled-exports` for bad input (DESIGN section 7): a retry cannot help.
pub const EXIT_BAD_INPUT: i32 = 2;

const RUN_KIND_SCHEDULED: &str = "scheduled";
const RUN_KIND_RUN_NOW: &str = "run-now";
const SPOOL_VOLUME: &str = "spool";
/// UID and GID of the export process: the conventional non-root "nonroot" user of distroless
/// images, so the restricted Pod Security level admits the Pod whatever the image's USER says.
const NON_ROOT_ID: i64 = 65532;

/// Longest DNS-1123 label, and so the longest Job name whose Pods can carry it in their
/// `job-name` label.
const MAX_JOB_NAME: usize = 63;
/// Length of `-{YYYYMMDDHHMM}` and of `-now-{8 hex}`; both suffixes have the same length.
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
    /// The Job ServiceAccount: may read its ScheduledExport and the Secrets it names, and write its
    /// status. Distinct from the controller's, so a Job holds only what one export needs.
    pub service_account: String,
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
    /// `sizeLimit` of the spool `emptyDir`, which holds the whole file before delivery.
    pub spool_size_limit: Option<String>,
}

impl Default for JobSettings {
    /// Defaults that run one export of a mid-sized institution: the file streams from the database
    /// to the spool, so memory stays small while the spool needs disk.
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
            service_account: "scheduled-exports-export".to_string(),
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

/// The settings every Job needs; checked at the operator's start and for each Job.
pub fn check_settings(settings: &JobSettings) -> Result<(), JobError> {
    if settings.artifact_store_url.is_empty() {
        return Err(JobError::MissingSetting {
            setting: "artifact_store_url",
        });
    }
    if settings.image.is_empty() {
        return Err(JobError::MissingSetting { setting: "image" });
    }
    artifact_claim_volume(settings).map(|_| ())
}

/// The volume and mount of `artifact_store_claim`: the claim mounted at the `file://` URL's path.
fn artifact_claim_volume(
    settings: &JobSettings,
) -> Result<Option<(Volume, VolumeMount)>, JobError> {
    let Some(claim) = &settings.artifact_store_claim else {
        return Ok(None);
    };
    let path = url::Url::parse(&settings.artifact_store_url)
        .ok()
        .filter(|url| url.scheme() == "file")
        .and_then(|url| url.to_file_path().ok())
        .ok_or_else(|| JobError::ClaimWithoutFileStore {
            claim: claim.clone(),
            url: crate::artifacts::redact_url(&settings.artifact_store_url),
        })?;
    let volume = Volume {
        name: ARTIFACT_VOLUME.to_string(),
        persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
            claim_name: claim.clone(),
            read_only: Some(false),
        }),
        ..Volume::default()
    };
    let mount = VolumeMount {
        name: ARTIFACT_VOLUME.to_string(),
        mount_path: path.display().to_string(),
        ..VolumeMount::default()
    };
    Ok(Some((volume, mount)))
}

/// Deterministic Job name for (object, slot, kind): restarts, two replicas or a lost status write
/// can never create a second Job for one slot, because creating the same name again fails with
/// AlreadyExists.
///
/// The result is a DNS-1123 label of at most 63 characters (the Job's Pods carry the name in their
/// `job-name` label): `{base}-{YYYYMMDDHHMM}` (the slot's UTC minute) for a scheduled run,
/// `{base}-now-{8 hex of SHA-256(token)}` for run-now. `{base}` is the object name when it is at
/// most 50 characters of `[a-z0-9-]`; otherwise (too long, or holding a '.') it is the name with
/// every other character replaced by '-', cut to 41 characters, then `-{8 hex of SHA-256(name)}`, so
/// two names that differ only after the cut, or only in '.' versus '-', still get distinct Jobs.
/// Both suffixes are 13 characters, and a scheduled suffix ends in 12 digits while a run-now one
/// ends in `now-` and 8 hex digits, so Jobs of different objects or kinds never share a name.
pub fn job_name(object_name: &str, slot: DateTime<Utc>, kind: &RunKind) -> String {
    let base = name_base(object_name);
    match kind {
        RunKind::Scheduled => format!("{base}-{}", slot.format("%Y%m%d%H%M")),
        RunKind::RunNow { token } => format!("{base}-now-{}", short_hash(token)),
    }
}

/// The object-name part of a Job name: the name itself when it is short and label-safe, else a
/// label-safe prefix plus a hash of the whole name.
fn name_base(object_name: &str) -> String {
    let safe: String = object_name
        .chars()
        .map(|c| {
            if c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' {
                c
            } else {
                '-'
            }
        })
        .collect();
    let label_safe = safe == object_name
        && safe.starts_with(|c: char| c.is_ascii_alphanumeric())
        && safe.ends_with(|c: char| c.is_ascii_alphanumeric());
    if label_safe && safe.len() <= MAX_BASE {
        return safe;
    }
    // `safe` is ASCII, so byte slicing cuts between characters.
    let cut = &safe[..safe.len().min(MAX_BASE - 1 - HASH_HEX)];
    let prefix = cut.trim_matches('-');
    // A name of nothing but separators leaves no prefix; the hash alone would start with a digit
    // or letter either way, but a fixed word keeps the Job recognisable.
    let prefix = if prefix.is_empty() { "sx" } else { prefix };
    format!("{prefix}-{}", short_hash(object_name))
}

/// First 8 hex digits of SHA-256: stable across processes and releases, unlike std's hasher.
fn short_hash(value: &str) -> String {
    let digest = Sha256::digest(value.as_bytes());
    let mut hex = hex::encode(digest);
    hex.truncate(HASH_HEX);
    hex
}

/// A string the kubelet passes through unchanged: it expands `$(VAR)` in command and env values,
/// and `$$` is its escape for a literal `$`.
fn literal(value: &str) -> String {
    value.replace('$', "$$")
}

/// The slot as written into the annotation and the `--slot` argument: UTC RFC 3339 with `Z`,
/// fractional seconds only when the instant has them, so [`job_slot`] gives back the same instant.
fn format_slot(slot: DateTime<Utc>) -> String {
    slot.to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

/// Labels of the Job and of its Pods.
fn job_labels(object_name: &str, object_uid: &str) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::from([
        (LABEL_APP_NAME.to_string(), APP_NAME.to_string()),
        (LABEL_COMPONENT.to_string(), COMPONENT_EXPORT.to_string()),
        (LABEL_OWNER_UID.to_string(), object_uid.to_string()),
    ]);
    // An object name is a DNS-1123 subdomain, so when it fits it is also a valid label value.
    if object_name.len() <= MAX_JOB_NAME {
        labels.insert(LABEL_OWNER_NAME.to_string(), object_name.to_string());
    }
    labels
}

/// The export Job of one slot of one object.
///
/// Owned by the object (controller, blockOwnerDeletion), so deleting the object garbage-collects its
/// Jobs. The Pod meets the `restricted` Pod Security level, writes only to its spool `emptyDir`,
/// and exits 2 on bad input, which the failure policy turns into an immediate Job failure instead
/// of `backoffLimit` pointless retries.
pub fn build_job(
    object: &ScheduledExport,
    slot: DateTime<Utc>,
    kind: &RunKind,
    settings: &JobSettings,
) -> Result<Job, JobError> {
    let missing = |field| JobError::MissingMetadata { field };
    let name = object.metadata.name.as_deref().ok_or(missing("name"))?;
    let namespace = object
        .metadata
        .namespace
        .as_deref()
        .ok_or(missing("namespace"))?;
    let uid = object.metadata.uid.as_deref().ok_or(missing("uid"))?;
    check_settings(settings)?;
    // kube's controller reference leaves blockOwnerDeletion unset; with it, a foreground deletion
    // of the object waits until its Jobs are gone.
    let owner = OwnerReference {
        block_owner_deletion: Some(true),
        ..object.controller_owner_ref(&()).ok_or(missing("uid"))?
    };

    let job_name = job_name(name, slot, kind);
    let slot_text = format_slot(slot);
    let labels = job_labels(name, uid);

    let mut annotations = BTreeMap::from([(ANNOTATION_SLOT.to_string(), slot_text.clone())]);
    match kind {
        RunKind::Scheduled => {
            annotations.insert(
                ANNOTATION_RUN_KIND.to_string(),
                RUN_KIND_SCHEDULED.to_string(),
            );
        }
        RunKind::RunNow { token } => {
            annotations.insert(
                ANNOTATION_RUN_KIND.to_string(),
                RUN_KIND_RUN_NOW.to_string(),
            );
            annotations.insert(ANNOTATION_RUN_NOW_TOKEN.to_string(), token.clone());
        }
    }

    let env_var = |name: &str, value: &str| EnvVar {
        name: name.to_string(),
        value: Some(literal(value)),
        value_from: None,
    };
    let mut env = vec![
        env_var("ARTIFACT_STORE_URL", &settings.artifact_store_url),
        env_var("SPOOL_DIR", SPOOL_MOUNT_PATH),
        // Anything else the process or its libraries write goes to the spool too: `/` is read-only.
        env_var("TMPDIR", SPOOL_MOUNT_PATH),
        env_var("JOB_NAME", &job_name),
        env_var("EXPORT_TIMEOUT", &settings.export_timeout),
    ];
    if let Some(format) = &settings.log_format {
        env.push(env_var("LOG_FORMAT", format));
    }

    let command = [
        "scheduled-exports",
        "export",
        "--namespace",
        namespace,
        "--name",
        name,
        "--slot",
        &slot_text,
    ]
    .into_iter()
    .map(literal)
    .collect();

    let artifact_claim = artifact_claim_volume(settings)?;
    let container = Container {
        name: CONTAINER_NAME.to_string(),
        image: Some(settings.image.clone()),
        image_pull_policy: settings.image_pull_policy.clone(),
        command: Some(command),
        env: Some(env),
        env_from: settings.artifact_store_secret.as_ref().map(|secret| {
            vec![EnvFromSource {
                secret_ref: Some(SecretEnvSource {
                    name: secret.clone(),
                    optional: Some(false),
                }),
                ..EnvFromSource::default()
            }]
        }),
        resources: Some(settings.resources.clone()),
        volume_mounts: Some(
            [VolumeMount {
                name: SPOOL_VOLUME.to_string(),
                mount_path: SPOOL_MOUNT_PATH.to_string(),
                ..VolumeMount::default()
            }]
            .into_iter()
            .chain(artifact_claim.as_ref().map(|(_, mount)| mount.clone()))
            .collect(),
        ),
        security_context: Some(SecurityContext {
            allow_privilege_escalation: Some(false),
            read_only_root_filesystem: Some(true),
            run_as_non_root: Some(true),
            capabilities: Some(Capabilities {
                drop: Some(vec!["ALL".to_string()]),
                add: None,
            }),
            ..SecurityContext::default()
        }),
        // The one-line reason on stderr becomes the Pod's termination message, so a failed run
        // explains itself in `kubectl describe` and in the Job's status.
        termination_message_policy: Some("FallbackToLogsOnError".to_string()),
        ..Container::default()
    };

    let pod_spec = PodSpec {
        containers: vec![container],
        restart_policy: Some("Never".to_string()),
        service_account_name: Some(settings.service_account.clone()),
        automount_service_account_token: Some(true),
        // Service environment variables are noise for this process and leak the namespace's
        // service list into it.
        enable_service_links: Some(false),
        security_context: Some(PodSecurityContext {
            run_as_non_root: Some(true),
            run_as_user: Some(NON_ROOT_ID),
            run_as_group: Some(NON_ROOT_ID),
            fs_group: Some(NON_ROOT_ID),
            seccomp_profile: Some(SeccompProfile {
                type_: "RuntimeDefault".to_string(),
                localhost_profile: None,
            }),
            ..PodSecurityContext::default()
        }),
        volumes: Some(
            [Volume {
                name: SPOOL_VOLUME.to_string(),
                empty_dir: Some(EmptyDirVolumeSource {
                    medium: None,
                    size_limit: settings.spool_size_limit.clone().map(Quantity),
                }),
                ..Volume::default()
            }]
            .into_iter()
            .chain(artifact_claim.map(|(volume, _)| volume))
            .collect(),
        ),
        ..PodSpec::default()
    };

    // Rules apply in order; the API server accepts a podFailurePolicy only with restartPolicy Never.
    let pod_failure_policy = PodFailurePolicy {
        rules: vec![
            PodFailurePolicyRule {
                action: "FailJob".to_string(),
                on_exit_codes: Some(PodFailurePolicyOnExitCodesRequirement {
                    container_name: Some(CONTAINER_NAME.to_string()),
                    operator: "In".to_string(),
                    values: vec![EXIT_BAD_INPUT],
                }),
                on_pod_conditions: None,
            },
            // A Pod evicted by a node drain or preempted did not fail the export; retrying it must
            // not use up the backoff limit (the export is idempotent per slot).
            PodFailurePolicyRule {
                action: "Ignore".to_string(),
                on_exit_codes: None,
                on_pod_conditions: Some(vec![PodFailurePolicyOnPodConditionsPattern {
                    type_: "DisruptionTarget".to_string(),
                    status: "True".to_string(),
                }]),
            },
        ],
    };

    Ok(Job {
        metadata: ObjectMeta {
            name: Some(job_name),
            namespace: Some(namespace.to_string()),
            labels: Some(labels.clone()),
            annotations: Some(annotations),
            owner_references: Some(vec![owner]),
            ..ObjectMeta::default()
        },
        spec: Some(JobSpec {
            backoff_limit: Some(settings.backoff_limit),
            active_deadline_seconds: Some(settings.active_deadline_seconds),
            completions: Some(1),
            parallelism: Some(1),
            pod_failure_policy: Some(pod_failure_policy),
            // A replacement Pod starts only once the previous one has fully terminated, so two
            // processes never export the same object at once (the only value allowed with a
            // podFailurePolicy; stated so the intent is visible).
            pod_replacement_policy: Some("Failed".to_string()),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels),
                    ..ObjectMeta::default()
                }),
                spec: Some(pod_spec),
            },
            ..JobSpec::default()
        }),
        status: None,
    })
}

/// What a Job is doing, from its status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobState {
    /// No Pod of the Job is running yet (not created, unscheduled, or pulling its image).
    Pending,
    /// A Pod's container is running (or a Pod is still terminating).
    Running,
    /// The export succeeded.
    Succeeded,
    /// The Job failed for good: the condition's reason (`BackoffLimitExceeded`, `DeadlineExceeded`,
    /// `PodFailurePolicy`, ...) and message.
    Failed { reason: String, message: String },
}

impl JobState {
    /// The `status.lastRun.phase` word for this state.
    pub fn phase(&self) -> &'static str {
        match self {
            JobState::Pending => "Pending",
            JobState::Running => phase::RUNNING,
            JobState::Succeeded => phase::SUCCEEDED,
            JobState::Failed { .. } => phase::FAILED,
        }
    }

    /// Whether the Job has an outcome (it may still be terminating its Pods; see [`job_settled`]).
    pub fn is_finished(&self) -> bool {
        matches!(self, JobState::Succeeded | JobState::Failed { .. })
    }
}

/// The first condition of this type whose status is `True`.
fn true_condition<'a>(job: &'a Job, type_: &str) -> Option<&'a JobCondition> {
    job.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|condition| condition.type_ == type_ && condition.status == "True")
}

/// What a Job is doing, from its status.
///
/// The terminal conditions `Complete` and `Failed` win; the interim `SuccessCriteriaMet` and
/// `FailureTarget`, which the Job controller sets first while it still terminates Pods, already
/// decide the outcome and count as the same. Otherwise the Job is `Running` when a Pod is ready
/// (the container has no readiness probe, so ready means started) or terminating, else `Pending`.
pub fn job_state(job: &Job) -> JobState {
    let failed = |condition: &JobCondition| JobState::Failed {
        reason: condition
            .reason
            .clone()
            .filter(|reason| !reason.is_empty())
            .unwrap_or_else(|| condition.type_.clone()),
        message: condition.message.clone().unwrap_or_default(),
    };
    if let Some(condition) = true_condition(job, "Failed") {
        return failed(condition);
    }
    if true_condition(job, "Complete").is_some() {
        return JobState::Succeeded;
    }
    if let Some(condition) = true_condition(job, "FailureTarget") {
        return failed(condition);
    }
    if true_condition(job, "SuccessCriteriaMet").is_some() {
        return JobState::Succeeded;
    }
    let status = job.status.as_ref();
    let ready = status.and_then(|s| s.ready).unwrap_or(0);
    let terminating = status.and_then(|s| s.terminating).unwrap_or(0);
    if ready > 0 || terminating > 0 {
        JobState::Running
    } else {
        JobState::Pending
    }
}

/// Whether the Job is over with no Pod left: it carries the terminal `Complete` or `Failed`
/// condition, which the Job controller (Kubernetes 1.31 and later) sets only after all its Pods
/// terminated. The controller should wait for this, not merely for a finished [`job_state`],
/// before starting the object's next run, so two export processes never overlap.
pub fn job_settled(job: &Job) -> bool {
    true_condition(job, "Complete").is_some() || true_condition(job, "Failed").is_some()
}

/// The slot a Job runs, from its slot annotation.
pub fn job_slot(job: &Job) -> Option<DateTime<Utc>> {
    let text = job.annotations().get(ANNOTATION_SLOT)?;
    DateTime::parse_from_rfc3339(text)
        .ok()
        .map(|slot| slot.with_timezone(&Utc))
}

/// Why a Job runs, from its annotations; `None` for a Job this operator did not build.
pub fn job_run_kind(job: &Job) -> Option<RunKind> {
    let annotations = job.annotations();
    match annotations.get(ANNOTATION_RUN_KIND)?.as_str() {
        RUN_KIND_SCHEDULED => Some(RunKind::Scheduled),
        RUN_KIND_RUN_NOW => Some(RunKind::RunNow {
            token: annotations.get(ANNOTATION_RUN_NOW_TOKEN)?.clone(),
        }),
        _ => None,
    }
}

/// Finished Jobs to delete so history stays bounded: keep the newest `keep_succeeded` succeeded and
/// `keep_failed` failed Jobs (newest by slot, then creation time, then name); never an unfinished
/// Job, nor one whose Pods are still terminating, nor one already being deleted.
///
/// A Job without a readable slot annotation sorts as the oldest.
pub fn finished_jobs_to_delete(
    jobs: &[Job],
    keep_succeeded: usize,
    keep_failed: usize,
) -> Vec<String> {
    let mut succeeded = Vec::new();
    let mut failed = Vec::new();
    for job in jobs {
        if job.metadata.deletion_timestamp.is_some() {
            continue;
        }
        match job_state(job) {
            JobState::Succeeded => succeeded.push(job),
            JobState::Failed { .. } => failed.push(job),
            JobState::Pending | JobState::Running => {}
        }
    }
    let mut doomed = Vec::new();
    for (mut group, keep) in [(succeeded, keep_succeeded), (failed, keep_failed)] {
        group.sort_by_key(|job| {
            Reverse((
                job_slot(job),
                job.metadata.creation_timestamp.clone(),
                job.metadata.name.clone(),
            ))
        });
        doomed.extend(
            group
                .into_iter()
                .skip(keep)
                .filter(|job| job_settled(job))
                .filter_map(|job| job.metadata.name.clone()),
        );
    }
    doomed
}

/// Label selector that lists one object's export Jobs.
pub fn jobs_selector(object_uid: &str) -> String {
    format!("{LABEL_COMPONENT}={COMPONENT_EXPORT},{LABEL_OWNER_UID}={object_uid}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use serde_json::json;

    fn slot() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 3, 8, 7, 30, 0).unwrap()
    }

    fn is_dns_label(name: &str) -> bool {
        !name.is_empty()
            && name.len() <= 63
            && name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
            && name.starts_with(|c: char| c.is_ascii_alphanumeric())
            && name.ends_with(|c: char| c.is_ascii_alphanumeric())
    }

    fn object(name: &str) -> ScheduledExport {
        serde_json::from_value(json!({
            "apiVersion": "exports.crm.dev/v1alpha1",
            "kind": "ScheduledExport",
            "metadata": {
                "name": name,
                "namespace": "univ-example",
                "uid": "0b7c5f4e-1d2a-4c3b-9e8f-123456789abc",
            },
            "spec": {
                "fileType": "interactions",
                "time": "07:00",
                "source": {"secretRef": {"name": "crm-database"}},
                "destination": {"sftp": {
                    "host": "sftp.example.edu",
                    "username": "univ-example",
                    "secretRef": {"name": "sftp-credentials"},
                }},
            },
        }))
        .unwrap()
    }

    fn settings() -> JobSettings {
        JobSettings {
            artifact_store_url: "s3://artifacts/prefix".to_string(),
            log_format: Some("json".to_string()),
            ..JobSettings::default()
        }
    }

    fn run_now(token: &str) -> RunKind {
        RunKind::RunNow {
            token: token.to_string(),
        }
    }

    #[test]
    fn short_names_are_kept_and_slots_give_the_utc_minute() {
        assert_eq!(
            job_name("interactions-daily", slot(), &RunKind::Scheduled),
            "interactions-daily-202603080730"
        );
        let name = job_name("interactions-daily", slot(), &run_now("2026-03-08"));
        let hash = name.strip_prefix("interactions-daily-now-").unwrap();
        assert_eq!(hash.len(), 8);
        assert!(hash.chars().all(|c| c.is_ascii_hexdigit()));
    }

    #[test]
    fn job_names_are_deterministic_and_distinct() {
        let long = "a".repeat(253);
        for object_name in ["interactions-daily", long.as_str()] {
            for kind in [RunKind::Scheduled, run_now("t1")] {
                assert_eq!(
                    job_name(object_name, slot(), &kind),
                    job_name(object_name, slot(), &kind)
                );
            }
            let next_day = slot() + chrono::Duration::days(1);
            assert_ne!(
                job_name(object_name, slot(), &RunKind::Scheduled),
                job_name(object_name, next_day, &RunKind::Scheduled)
            );
            assert_ne!(
                job_name(object_name, slot(), &run_now("t1")),
                job_name(object_name, slot(), &run_now("t2"))
            );
            // Run-now names do not depend on the trigger instant: the token alone identifies them.
            assert_eq!(
                job_name(object_name, slot(), &run_now("t1")),
                job_name(object_name, next_day, &run_now("t1"))
            );
        }
        // Pin the hash so a change of algorithm (which would re-run slots) fails loudly.
        assert_eq!(short_hash("t1"), {
            let mut h = hex::encode(Sha256::digest(b"t1"));
            h.truncate(8);
            h
        });
    }

    #[test]
    fn job_names_are_dns_labels_of_at_most_63_characters() {
        let names = [
            "a".repeat(253),
            format!("{}.{}", "b".repeat(120), "c".repeat(132)),
            "exports.univ-example".to_string(),
            "a.b".to_string(),
            "x".repeat(50),
            "x".repeat(51),
            format!("{}-{}", "y".repeat(40), "z".repeat(20)),
            "-.-".to_string(),
        ];
        for object_name in &names {
            for kind in [RunKind::Scheduled, run_now("token with spaces $(HOME)")] {
                let name = job_name(object_name, slot(), &kind);
                assert!(is_dns_label(&name), "{object_name} -> {name}");
            }
        }
        assert_eq!(
            job_name(&"x".repeat(50), slot(), &RunKind::Scheduled).len(),
            63
        );
    }

    #[test]
    fn rewritten_and_long_names_never_collide() {
        let prefix = "p".repeat(60);
        let first = format!("{prefix}-first");
        let second = format!("{prefix}-second");
        for kind in [RunKind::Scheduled, run_now("t")] {
            assert_ne!(
                job_name(&first, slot(), &kind),
                job_name(&second, slot(), &kind)
            );
            assert_ne!(
                job_name("a.b", slot(), &kind),
                job_name("a-b", slot(), &kind)
            );
        }
        // The readable part survives the rewrite.
        assert!(job_name("exports.univ", slot(), &RunKind::Scheduled).starts_with("exports-univ-"));
    }

    #[test]
    fn build_job_sets_owner_labels_and_annotations() {
        let job = build_job(
            &object("interactions-daily"),
            slot(),
            &RunKind::Scheduled,
            &settings(),
        )
        .unwrap();
        let meta = &job.metadata;
        assert_eq!(
            meta.name.as_deref(),
            Some("interactions-daily-202603080730")
        );
        assert_eq!(meta.namespace.as_deref(), Some("univ-example"));
        let owners = meta.owner_references.as_ref().unwrap();
        assert_eq!(owners.len(), 1);
        let owner = &owners[0];
        assert_eq!(owner.api_version, "exports.crm.dev/v1alpha1");
        assert_eq!(owner.kind, "ScheduledExport");
        assert_eq!(owner.name, "interactions-daily");
        assert_eq!(owner.uid, "0b7c5f4e-1d2a-4c3b-9e8f-123456789abc");
        assert_eq!(owner.controller, Some(true));
        assert_eq!(owner.block_owner_deletion, Some(true));

        let labels = meta.labels.as_ref().unwrap();
        assert_eq!(labels[LABEL_APP_NAME], "scheduled-exports");
        assert_eq!(labels[LABEL_COMPONENT], "export");
        assert_eq!(
            labels[LABEL_OWNER_UID],
            "0b7c5f4e-1d2a-4c3b-9e8f-123456789abc"
        );
        assert_eq!(labels[LABEL_OWNER_NAME], "interactions-daily");
        let template_labels = job
            .spec
            .as_ref()
            .unwrap()
            .template
            .metadata
            .as_ref()
            .unwrap()
            .labels
            .as_ref()
            .unwrap();
        assert_eq!(template_labels, labels);

        let annotations = meta.annotations.as_ref().unwrap();
        assert_eq!(annotations[ANNOTATION_SLOT], "2026-03-08T07:30:00Z");
        assert_eq!(annotations[ANNOTATION_RUN_KIND], "scheduled");
        assert!(!annotations.contains_key(ANNOTATION_RUN_NOW_TOKEN));
        assert_eq!(job_slot(&job), Some(slot()));
        assert_eq!(job_run_kind(&job), Some(RunKind::Scheduled));

        let now = build_job(
            &object("interactions-daily"),
            slot(),
            &run_now("abc"),
            &settings(),
        )
        .unwrap();
        let annotations = now.metadata.annotations.as_ref().unwrap();
        assert_eq!(annotations[ANNOTATION_RUN_KIND], "run-now");
        assert_eq!(annotations[ANNOTATION_RUN_NOW_TOKEN], "abc");
        assert_eq!(job_run_kind(&now), Some(run_now("abc")));
        assert!(
            now.metadata
                .name
                .as_deref()
                .unwrap()
                .starts_with("interactions-daily-now-")
        );
    }

    #[test]
    fn long_object_names_are_left_out_of_labels() {
        let name = "n".repeat(64);
        let job = build_job(&object(&name), slot(), &RunKind::Scheduled, &settings()).unwrap();
        let labels = job.metadata.labels.unwrap();
        assert!(!labels.contains_key(LABEL_OWNER_NAME));
        assert!(labels.contains_key(LABEL_OWNER_UID));
        assert!(job.metadata.name.unwrap().len() <= 63);
    }

    #[test]
    fn build_job_pod_runs_the_export_command_with_its_environment() {
        let job = build_job(
            &object("interactions-daily"),
            slot() + chrono::Duration::milliseconds(250),
            &RunKind::Scheduled,
            &settings(),
        )
        .unwrap();
        let job_name = job.metadata.name.clone().unwrap();
        let pod = job.spec.unwrap().template.spec.unwrap();
        assert_eq!(pod.containers.len(), 1);
        let container = &pod.containers[0];
        assert_eq!(container.name, "export");
        assert_eq!(container.image, Some(settings().image));
        assert_eq!(
            container.command.as_deref().unwrap(),
            [
                "scheduled-exports",
                "export",
                "--namespace",
                "univ-example",
                "--name",
                "interactions-daily",
                "--slot",
                "2026-03-08T07:30:00.250Z",
            ]
        );
        assert_eq!(container.args, None);
        let env: BTreeMap<_, _> = container
            .env
            .as_ref()
            .unwrap()
            .iter()
            .map(|var| (var.name.as_str(), var.value.as_deref().unwrap()))
            .collect();
        assert_eq!(
            env,
            BTreeMap::from([
                ("ARTIFACT_STORE_URL", "s3://artifacts/prefix"),
                ("SPOOL_DIR", "/spool"),
                ("TMPDIR", "/spool"),
                ("JOB_NAME", job_name.as_str()),
                ("EXPORT_TIMEOUT", "30s"),
                ("LOG_FORMAT", "json"),
            ])
        );
        let mounts = container.volume_mounts.as_ref().unwrap();
        assert_eq!(mounts.len(), 1);
        assert_eq!(mounts[0].name, "spool");
        assert_eq!(mounts[0].mount_path, "/spool");
        let volumes = pod.volumes.as_ref().unwrap();
        assert_eq!(volumes.len(), 1);
        assert_eq!(volumes[0].name, "spool");
        assert_eq!(
            volumes[0].empty_dir.as_ref().unwrap().size_limit,
            Some(Quantity("10Gi".into()))
        );
        assert_eq!(
            container.resources,
            Some(JobSettings::default().resources.clone())
        );
        assert_eq!(
            container.termination_message_policy.as_deref(),
            Some("FallbackToLogsOnError")
        );
        assert_eq!(
            pod.service_account_name.as_deref(),
            Some("scheduled-exports-export")
        );
        assert_eq!(pod.automount_service_account_token, Some(true));
        assert_eq!(pod.enable_service_links, Some(false));

        let without_format = JobSettings {
            log_format: None,
            ..settings()
        };
        let job = build_job(
            &object("interactions-daily"),
            slot(),
            &RunKind::Scheduled,
            &without_format,
        )
        .unwrap();
        let container = &job.spec.unwrap().template.spec.unwrap().containers[0];
        assert!(
            !container
                .env
                .as_ref()
                .unwrap()
                .iter()
                .any(|var| var.name == "LOG_FORMAT")
        );
    }

    #[test]
    fn artifact_store_credentials_come_from_a_secret_only_when_named() {
        let container = |settings: &JobSettings| {
            let job = build_job(
                &object("interactions-daily"),
                slot(),
                &RunKind::Scheduled,
                settings,
            )
            .unwrap();
            job.spec.unwrap().template.spec.unwrap().containers[0].clone()
        };
        assert_eq!(container(&settings()).env_from, None);
        let with_secret = JobSettings {
            artifact_store_secret: Some("artifact-store".to_string()),
            ..settings()
        };
        let env_from = container(&with_secret).env_from.unwrap();
        let secret = env_from[0].secret_ref.as_ref().unwrap();
        assert_eq!(secret.name, "artifact-store");
        assert_eq!(secret.optional, Some(false));
    }

    #[test]
    fn dollar_signs_reach_the_process_unexpanded() {
        let odd = JobSettings {
            artifact_store_url: "s3://bucket/$(HOME)/x".to_string(),
            ..settings()
        };
        let job = build_job(
            &object("interactions-daily"),
            slot(),
            &RunKind::Scheduled,
            &odd,
        )
        .unwrap();
        let env = job.spec.unwrap().template.spec.unwrap().containers[0]
            .env
            .clone()
            .unwrap();
        let url = env
            .iter()
            .find(|var| var.name == "ARTIFACT_STORE_URL")
            .unwrap();
        assert_eq!(url.value.as_deref(), Some("s3://bucket/$$(HOME)/x"));
    }

    #[test]
    fn build_job_meets_restricted_pod_security() {
        let job = build_job(
            &object("interactions-daily"),
            slot(),
            &RunKind::Scheduled,
            &settings(),
        )
        .unwrap();
        let pod = job.spec.unwrap().template.spec.unwrap();
        assert_eq!(pod.restart_policy.as_deref(), Some("Never"));
        let pod_security = pod.security_context.as_ref().unwrap();
        assert_eq!(pod_security.run_as_non_root, Some(true));
        assert_eq!(pod_security.run_as_user, Some(65532));
        assert_eq!(pod_security.run_as_group, Some(65532));
        assert_eq!(pod_security.fs_group, Some(65532));
        assert_eq!(
            pod_security.seccomp_profile.as_ref().unwrap().type_,
            "RuntimeDefault"
        );
        let security = pod.containers[0].security_context.as_ref().unwrap();
        assert_eq!(security.allow_privilege_escalation, Some(false));
        assert_eq!(security.read_only_root_filesystem, Some(true));
        assert_eq!(security.run_as_non_root, Some(true));
        assert_eq!(security.privileged, None);
        let capabilities = security.capabilities.as_ref().unwrap();
        assert_eq!(capabilities.drop.as_deref(), Some(&["ALL".to_string()][..]));
        assert_eq!(capabilities.add, None);
    }

    #[test]
    fn build_job_fails_at_once_on_bad_input() {
        let job = build_job(
            &object("interactions-daily"),
            slot(),
            &RunKind::Scheduled,
            &settings(),
        )
        .unwrap();
        let spec = job.spec.unwrap();
        assert_eq!(spec.backoff_limit, Some(2));
        assert_eq!(spec.active_deadline_seconds, Some(3600));
        assert_eq!(spec.pod_replacement_policy.as_deref(), Some("Failed"));
        // podFailurePolicy is only valid with restartPolicy Never.
        assert_eq!(
            spec.template
                .spec
                .as_ref()
                .unwrap()
                .restart_policy
                .as_deref(),
            Some("Never")
        );
        let rules = spec.pod_failure_policy.unwrap().rules;
        let fail = &rules[0];
        assert_eq!(fail.action, "FailJob");
        let codes = fail.on_exit_codes.as_ref().unwrap();
        assert_eq!(codes.container_name.as_deref(), Some("export"));
        assert_eq!(codes.operator, "In");
        assert_eq!(codes.values, vec![2]);
        assert!(rules.iter().any(|rule| {
            rule.action == "Ignore"
                && rule
                    .on_pod_conditions
                    .as_ref()
                    .is_some_and(|patterns| patterns[0].type_ == "DisruptionTarget")
        }));
    }

    #[test]
    fn build_job_refuses_incomplete_objects_and_settings() {
        for field in ["name", "namespace", "uid"] {
            let mut object = object("interactions-daily");
            match field {
                "name" => object.metadata.name = None,
                "namespace" => object.metadata.namespace = None,
                _ => object.metadata.uid = None,
            }
            assert_eq!(
                build_job(&object, slot(), &RunKind::Scheduled, &settings()),
                Err(JobError::MissingMetadata { field })
            );
        }
        assert_eq!(
            build_job(
                &object("interactions-daily"),
                slot(),
                &RunKind::Scheduled,
                &JobSettings::default()
            ),
            Err(JobError::MissingSetting {
                setting: "artifact_store_url"
            })
        );
    }

    fn job_with_status(status: serde_json::Value) -> Job {
        serde_json::from_value(json!({
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": {"name": "j"},
            "status": status,
        }))
        .unwrap()
    }

    #[test]
    fn job_state_follows_conditions_and_counts() {
        assert_eq!(job_state(&job_with_status(json!({}))), JobState::Pending);
        assert_eq!(
            job_state(&job_with_status(json!({"active": 1, "ready": 0}))),
            JobState::Pending
        );
        assert_eq!(
            job_state(&job_with_status(json!({"active": 1, "ready": 1}))),
            JobState::Running
        );
        assert_eq!(
            job_state(&job_with_status(json!({"active": 0, "terminating": 1}))),
            JobState::Running
        );
        let complete = job_with_status(json!({"succeeded": 1, "conditions": [
            {"type": "SuccessCriteriaMet", "status": "True"},
            {"type": "Complete", "status": "True"},
        ]}));
        assert_eq!(job_state(&complete), JobState::Succeeded);
        assert!(job_settled(&complete));
        let interim = job_with_status(json!({"terminating": 1, "conditions": [
            {"type": "SuccessCriteriaMet", "status": "True"},
        ]}));
        assert_eq!(job_state(&interim), JobState::Succeeded);
        assert!(!job_settled(&interim));
        let failed = job_with_status(json!({"failed": 3, "conditions": [
            {"type": "FailureTarget", "status": "True", "reason": "BackoffLimitExceeded",
             "message": "Job has reached the specified backoff limit"},
            {"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded",
             "message": "Job has reached the specified backoff limit"},
        ]}));
        assert_eq!(
            job_state(&failed),
            JobState::Failed {
                reason: "BackoffLimitExceeded".into(),
                message: "Job has reached the specified backoff limit".into(),
            }
        );
        assert!(job_settled(&failed));
        let failing = job_with_status(json!({"terminating": 1, "conditions": [
            {"type": "FailureTarget", "status": "True", "reason": "PodFailurePolicy",
             "message": "Container export for pod ns/p failed with exit code 2"},
        ]}));
        assert_eq!(
            job_state(&failing),
            JobState::Failed {
                reason: "PodFailurePolicy".into(),
                message: "Container export for pod ns/p failed with exit code 2".into(),
            }
        );
        assert!(!job_settled(&failing));
        // Conditions that are not True say nothing.
        let not_yet = job_with_status(json!({"active": 1, "ready": 1, "conditions": [
            {"type": "Failed", "status": "False"},
            {"type": "Complete", "status": "Unknown"},
        ]}));
        assert_eq!(job_state(&not_yet), JobState::Running);
        assert!(!job_settled(&not_yet));
        let bare = job_with_status(json!({"conditions": [{"type": "Failed", "status": "True"}]}));
        assert_eq!(
            job_state(&bare),
            JobState::Failed {
                reason: "Failed".into(),
                message: String::new()
            }
        );
        assert_eq!(job_state(&bare).phase(), "Failed");
        assert_eq!(JobState::Pending.phase(), "Pending");
    }

    #[test]
    fn foreign_annotations_read_as_none() {
        let job = job_with_status(json!({}));
        assert_eq!(job_slot(&job), None);
        assert_eq!(job_run_kind(&job), None);
        let mut odd = job.clone();
        odd.metadata.annotations = Some(BTreeMap::from([
            (ANNOTATION_SLOT.to_string(), "yesterday".to_string()),
            (ANNOTATION_RUN_KIND.to_string(), "run-now".to_string()),
        ]));
        assert_eq!(job_slot(&odd), None);
        assert_eq!(job_run_kind(&odd), None);
    }

    /// A Job of the given outcome (`succeeded`, `failed`, `active`, `failing`) for a slot `day`
    /// days after the test slot.
    fn history_job(name: &str, day: i64, outcome: &str) -> Job {
        let status = match outcome {
            "succeeded" => json!({"conditions": [{"type": "Complete", "status": "True"}]}),
            "failed" => json!({"conditions": [{"type": "Failed", "status": "True"}]}),
            "failing" => {
                json!({"terminating": 1, "conditions": [{"type": "FailureTarget", "status": "True"}]})
            }
            _ => json!({"active": 1, "ready": 1}),
        };
        let slot = slot() + chrono::Duration::days(day);
        serde_json::from_value(json!({
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": {
                "name": name,
                "creationTimestamp": "2026-01-01T00:00:00Z",
                "annotations": {ANNOTATION_SLOT: format_slot(slot)},
            },
            "status": status,
        }))
        .unwrap()
    }

    #[test]
    fn finished_jobs_to_delete_keeps_the_newest_of_each_kind() {
        let jobs = vec![
            history_job("s1", 1, "succeeded"),
            history_job("s5", 5, "succeeded"),
            history_job("f2", 2, "failed"),
            history_job("s3", 3, "succeeded"),
            history_job("f4", 4, "failed"),
            history_job("a0", 0, "active"),
            history_job("s2", 2, "succeeded"),
            history_job("f6", 6, "failed"),
        ];
        let mut doomed = finished_jobs_to_delete(&jobs, 2, 1);
        doomed.sort();
        assert_eq!(doomed, vec!["f2", "f4", "s1", "s2"]);

        let mut all = finished_jobs_to_delete(&jobs, 0, 0);
        all.sort();
        assert_eq!(all, vec!["f2", "f4", "f6", "s1", "s2", "s3", "s5"]);
        assert!(finished_jobs_to_delete(&jobs, 10, 10).is_empty());
    }

    #[test]
    fn finished_jobs_to_delete_spares_active_terminating_and_deleted_jobs() {
        let mut deleted = history_job("gone", 0, "succeeded");
        deleted.metadata.deletion_timestamp = deleted.metadata.creation_timestamp.clone();
        let jobs = vec![
            history_job("a1", 1, "active"),
            history_job("p2", 2, "pending-ish"),
            history_job("t0", 0, "failing"),
            deleted,
        ];
        assert!(finished_jobs_to_delete(&jobs, 0, 0).is_empty());
    }

    #[test]
    fn creation_time_breaks_slot_ties() {
        let mut older = history_job("older", 1, "succeeded");
        let mut newer = history_job("newer", 1, "succeeded");
        older.metadata.creation_timestamp =
            serde_json::from_value(json!("2026-01-01T00:00:00Z")).unwrap();
        newer.metadata.creation_timestamp =
            serde_json::from_value(json!("2026-01-02T00:00:00Z")).unwrap();
        assert_eq!(
            finished_jobs_to_delete(&[newer, older], 1, 0),
            vec!["older"]
        );
    }

    #[test]
    fn selector_names_the_uid_label() {
        assert_eq!(
            jobs_selector("abc-123"),
            "app.kubernetes.io/component=export,exports.crm.dev/scheduled-export-uid=abc-123"
        );
    }

    #[test]
    fn an_artifact_store_claim_is_mounted_at_the_file_url_path_and_refused_for_s3() {
        let with_claim = JobSettings {
            artifact_store_url: "file:///var/lib/scheduled-exports/artifacts".to_string(),
            artifact_store_claim: Some("exports-artifacts".to_string()),
            ..settings()
        };
        let job = build_job(&object("daily"), slot(), &RunKind::Scheduled, &with_claim).unwrap();
        let pod = job.spec.unwrap().template.spec.unwrap();
        let volume = pod
            .volumes
            .unwrap()
            .into_iter()
            .find(|volume| volume.name == "artifacts")
            .expect("artifact volume");
        assert_eq!(
            volume.persistent_volume_claim.unwrap().claim_name,
            "exports-artifacts"
        );
        let mount = pod.containers[0]
            .volume_mounts
            .clone()
            .unwrap()
            .into_iter()
            .find(|mount| mount.name == "artifacts")
            .expect("artifact mount");
        assert_eq!(mount.mount_path, "/var/lib/scheduled-exports/artifacts");

        let s3_with_claim = JobSettings {
            artifact_store_claim: Some("exports-artifacts".to_string()),
            ..settings()
        };
        let err = build_job(
            &object("daily"),
            slot(),
            &RunKind::Scheduled,
            &s3_with_claim,
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("exports-artifacts") && err.contains("file://"),
            "{err}"
        );
    }
}
