//! The observed state, written by the controller, the export Jobs and the delivery checker.

use chrono::{DateTime, Utc};
use kube::KubeSchema;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{CheckResult, RunPhase};

/// Observed state, written by the operator and by the export Jobs. Never holds a secret.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
// Fields of another version are stored, not pruned: during an upgrade or a rollback, a writer of one
// version must not make the API server drop what a writer of the other version recorded.
#[schemars(extend("x-kubernetes-preserve-unknown-fields" = true))]
pub struct ScheduledExportStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// The time zone in effect: `spec.timeZone`, or the operator's default when that is omitted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_zone: Option<String>,
    /// The next scheduled run, UTC (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_run_time: Option<DateTime<Utc>>,
    /// The next scheduled run in the effective time zone, RFC 3339 with its offset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_run_local: Option<String>,
    /// The schedule in effect and since when: runs are due only for slots after `since`, so an edit of
    /// `time` or `timeZone`, or a resume, starts nothing by itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<ActiveSchedule>,
    /// The slot of the last scheduled Job the operator created.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_schedule_time: Option<DateTime<Utc>>,
    /// The last `exports.crm.dev/run-now` token honoured; a token runs once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_run_now_token: Option<String>,
    /// The last `exports.crm.dev/full-export` token honoured; a token runs once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_full_export_token: Option<String>,
    /// Opaque upper bound of the last delivered window. The next file holds every row written after it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub watermark: Option<String>,
    /// The database `watermark` was taken in. A run whose source is another database (another
    /// cluster, or a database dropped and created again) exports every row, since the watermark
    /// says nothing about that database's rows; a physical standby of the same database counts as
    /// the same. Written with the watermark; a watermark without it is adopted by the next run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub watermark_source: Option<WatermarkSource>,
    /// The most recent run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_run: Option<LastRun>,
    /// The last runs that ended, newest first, at most 10: the file each delivered (name, rows,
    /// bytes, sha256, window) or why it failed. A Pod retried within the same Job replaces its
    /// run's entry.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 10))]
    pub history: Vec<RunRecord>,
    /// The most recently delivered file and its checks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivery: Option<DeliveryStatus>,
    /// Pruning of files older than `retentionDays`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retention: Option<RetentionStatus>,
    /// The files this object itself delivered and that may still be on the server, oldest first:
    /// its proof of ownership. Retention deletes only files listed here whose size and sha256
    /// match, and a retried run replaces a file of its own name only when it matches this list or
    /// the object's artifact; so objects sharing a directory never touch each other's files,
    /// whatever host alias or path spelling they use. Entries leave the list once pruned.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub delivered_files: Vec<DeliveredFile>,
    /// The last preflight check: when it ran and on which inputs. Its outcome is the `Preflight`
    /// condition.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preflight: Option<PreflightStatus>,
    /// `Ready` (the schedule is valid and running), `Exported` (the last run exported its rows),
    /// `Delivered` (the last file is on the server) and `Preflight` (what the next run needs was
    /// checked and works).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = kube::core::ListMerge::Map(vec!["type".into()]))]
    pub conditions: Vec<Condition>,
}

/// When the operator last checked what a run needs, and against which inputs. The check runs
/// again when the inputs change (the spec's source, destination or encryption, or the content of a
/// Secret they name), ahead of each run, and every few minutes while it fails.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
// Fields of another version are stored, not pruned: during an upgrade or a rollback, a writer of one
// version must not make the API server drop what a writer of the other version recorded.
#[schemars(extend("x-kubernetes-preserve-unknown-fields" = true))]
pub struct PreflightStatus {
    /// When the last check ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checked_at: Option<DateTime<Utc>>,
    /// The run the check was for (`nextRunTime` then): the encryption key was checked as of this
    /// instant, so a key that expires before the run fails the check. Absent when no run was
    /// scheduled (suspended).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checked_for: Option<DateTime<Utc>>,
    /// Fingerprint (hex) of the inputs checked: the spec's fileType, source, destination and
    /// encryption, and the resourceVersion of each Secret they name (never the Secrets' content).
    /// A change of any of them makes the operator check again within a minute.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inputs: Option<String>,
}

/// What identifies the database a watermark was taken in.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
// Fields of another version are stored, not pruned: during an upgrade or a rollback, a writer of one
// version must not make the API server drop what a writer of the other version recorded.
#[schemars(extend("x-kubernetes-preserve-unknown-fields" = true))]
pub struct WatermarkSource {
    /// The PostgreSQL cluster's system identifier (`pg_control_system()`), decimal. Chosen when the
    /// cluster was created and shared by its physical standbys, so a failover keeps it. Absent when
    /// the export's role may not call that function.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system_identifier: Option<String>,
    /// The database's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub database: Option<String>,
    /// The database's oid: new when a database is dropped and created again under the same name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub database_oid: Option<u32>,
}

/// The schedule the operator is following.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ActiveSchedule {
    /// `spec.time` as observed.
    pub time: String,
    /// The effective time zone as observed.
    pub time_zone: String,
    /// Whether the schedule is suspended.
    pub suspended: bool,
    /// When this schedule took effect (creation, an edit of time or zone, suspend or resume).
    pub since: DateTime<Utc>,
}

/// One run of the export.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
// Fields of another version are stored, not pruned: during an upgrade or a rollback, a writer of one
// version must not make the API server drop what a writer of the other version recorded.
#[schemars(extend("x-kubernetes-preserve-unknown-fields" = true))]
pub struct LastRun {
    /// The scheduled instant (UTC) this run is for; for run-now, the trigger instant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slot: Option<DateTime<Utc>>,
    /// Name of the Job that ran it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_name: Option<String>,
    /// `Pending`, `Running`, `Succeeded` or `Failed`.
    // A plain string in the schema, so a value from another version is stored, not refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<String>")]
    pub phase: Option<RunPhase>,
    /// When the run started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<DateTime<Utc>>,
    /// When the run finished.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finish_time: Option<DateTime<Utc>>,
    /// Name of the delivered file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file_name: Option<String>,
    /// Data rows in the file (the header not counted).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rows: Option<u64>,
    /// Size of the file in bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes: Option<u64>,
    /// SHA-256 of the file, hex.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// Why the run failed, when it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// `true` when the file holds every row: a full export asked for with the
    /// `exports.crm.dev/full-export` annotation, the first run, or a watermark of another database.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub every_row: Option<bool>,
    /// The watermark the window started after: the file holds the rows written since. Absent when
    /// the file holds every row.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window_start: Option<String>,
    /// The watermark the window ended at, which the next run starts after.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window_end: Option<String>,
}

/// One ended run, as `status.history` keeps it.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
// Fields of another version are stored, not pruned: during an upgrade or a rollback, a writer of one
// version must not make the API server drop what a writer of the other version recorded.
#[schemars(extend("x-kubernetes-preserve-unknown-fields" = true))]
pub struct RunRecord {
    /// The scheduled instant (UTC) the run was for; for run-now and full-export, the trigger
    /// instant. The file's name carries the same instant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slot: Option<DateTime<Utc>>,
    /// Name of the Job that ran it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_name: Option<String>,
    /// `Succeeded` or `Failed`.
    // A plain string in the schema, so a value from another version is stored, not refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<String>")]
    pub phase: Option<RunPhase>,
    /// When the run ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finish_time: Option<DateTime<Utc>>,
    /// Name of the delivered file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file_name: Option<String>,
    /// Data rows in the file (the header not counted).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rows: Option<u64>,
    /// Size of the file in bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes: Option<u64>,
    /// SHA-256 of the file, hex.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// `true` when the file holds every row (a full export, the first run, or another database).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub every_row: Option<bool>,
    /// The watermark the window started after; absent when the file holds every row.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window_start: Option<String>,
    /// The watermark the window ended at.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window_end: Option<String>,
    /// Why the run failed, one CamelCase word (the Exported condition's reason at the time).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Why the run failed, for people (at most 512 characters).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// The most recently delivered file.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
// Fields of another version are stored, not pruned: during an upgrade or a rollback, a writer of one
// version must not make the API server drop what a writer of the other version recorded.
#[schemars(extend("x-kubernetes-preserve-unknown-fields" = true))]
pub struct DeliveryStatus {
    /// File name on the server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    /// When the file was first delivered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivered_at: Option<DateTime<Utc>>,
    /// Where it was delivered, `sftp://user@host:port/directory`. Rechecks look only there, and
    /// stop when `spec.destination.sftp` names another place (the next run delivers there).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub destination: Option<String>,
    /// When the operator last looked for the file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_check_time: Option<DateTime<Utc>>,
    /// `present` (in the export directory), `moved` (found by name in a sub-directory: picked up,
    /// so checks stop), `recopied` (it was gone and was copied again from the artifact store),
    /// `unreachable` (the server could not be asked; checked again next interval) or `missing`
    /// (gone, and copying it again failed; see the Delivered condition).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<String>")]
    pub last_check_result: Option<CheckResult>,
    /// Where the last check found the file, relative to the export directory, e.g. `archive/x.csv`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub found_at: Option<String>,
    /// How many times the file was copied again after it went missing.
    #[serde(default)]
    pub recopies: u32,
    /// Size of the delivered file in bytes. A file of this name elsewhere counts as this one only
    /// with this size and `sha256`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes: Option<u64>,
    /// SHA-256 of the delivered file, hex; what a recopy verifies and what proves a found file ours.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
}

/// One file this object delivered.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeliveredFile {
    /// File name on the server.
    pub name: String,
    /// Size in bytes.
    pub bytes: u64,
    /// SHA-256, hex.
    pub sha256: String,
    /// When it was delivered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivered_at: Option<DateTime<Utc>>,
}

/// Pruning of old files.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
// Fields of another version are stored, not pruned: during an upgrade or a rollback, a writer of one
// version must not make the API server drop what a writer of the other version recorded.
#[schemars(extend("x-kubernetes-preserve-unknown-fields" = true))]
pub struct RetentionStatus {
    /// When files were last pruned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_prune_time: Option<DateTime<Utc>>,
    /// Files deleted by the last prune.
    #[serde(default)]
    pub files_deleted: u32,
    /// When pruning was last tried, successful or not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_attempt_time: Option<DateTime<Utc>>,
    /// What the last attempt did, or why it deleted nothing (e.g. the server could not be reached).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// A status condition, as in `metav1.Condition`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    /// `Ready`, `Exported`, `Delivered` or `Preflight`.
    #[serde(rename = "type")]
    pub type_: String,
    /// `True`, `False` or `Unknown`.
    pub status: String,
    /// One CamelCase word for machines.
    pub reason: String,
    /// A sentence for people.
    #[serde(default)]
    pub message: String,
    /// When `status` last changed.
    pub last_transition_time: DateTime<Utc>,
    /// The `metadata.generation` the condition was computed from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}
