//! The `ScheduledExport` custom resource: spec, status, defaults and the admission rules that the
//! API server itself enforces (OpenAPI constraints and CEL `x-kubernetes-validations`).
//!
//! Doc comments on these types are what `kubectl explain scheduledexport.spec...` prints.

use chrono::{DateTime, Utc};
use kube::core::{Message, Rule};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// API group of the resource.
pub const GROUP: &str = "exports.crm.dev";
/// Annotation whose new value starts one extra export now; each token is honoured once.
pub const RUN_NOW_ANNOTATION: &str = "exports.crm.dev/run-now";

/// What to export, when, and where to deliver it.
///
/// At the due instant of each local day the operator creates a Job that exports the rows written
/// since the previous delivered file and uploads `{fileType}-{YYYYMMDD}T{HHMMSS}Z.csv` to the SFTP
/// directory; the outcome is recorded in `status`.
// Every `printcolumn(...)` repeats `type_ = ...`, which clippy mistakes for a duplicated attribute.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "exports.crm.dev",
    version = "v1alpha1",
    kind = "ScheduledExport",
    plural = "scheduledexports",
    singular = "scheduledexport",
    shortname = "sx",
    namespaced,
    status = "ScheduledExportStatus",
    derive = "PartialEq",
    doc = "A daily CSV export of one CRM file type, delivered over SFTP at a chosen local time of day.",
    printcolumn(name = "File Type", type_ = "string", json_path = ".spec.fileType"),
    printcolumn(name = "Time", type_ = "string", json_path = ".spec.time"),
    printcolumn(name = "Time Zone", type_ = "string", json_path = ".status.timeZone"),
    printcolumn(
        name = "Next Run",
        type_ = "string",
        json_path = ".status.nextRunLocal"
    ),
    printcolumn(
        name = "Last File",
        type_ = "string",
        json_path = ".status.delivery.file"
    ),
    printcolumn(
        name = "Delivered",
        type_ = "date",
        json_path = ".status.delivery.deliveredAt"
    ),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct ScheduledExportSpec {
    /// Which CRM records the file holds: `interactions` or `proposals`. Immutable once created,
    /// because the watermark and the files already delivered belong to one file type; create a
    /// new ScheduledExport for another.
    #[x_kube(validation = Rule::new("self == oldSelf").message(
        "fileType is immutable: create a new ScheduledExport for another file type"
    ))]
    pub file_type: FileType,

    /// Local time of day of the daily run, `HH:MM` in 24-hour form on a 30-minute step
    /// (`"00:00"` ... `"23:30"`). A time skipped by a daylight-saving change runs with the offset in
    /// force before the change (02:30 becomes 03:30); a time that occurs twice runs once, at its first
    /// occurrence. Editing it moves the next run at once and starts nothing by itself.
    #[schemars(length(max = 16))]
    #[x_kube(validation = Rule::new("self.matches('^([01][0-9]|2[0-3]):(00|30)$')").message(
        Message::Expression("'time \"' + self + '\" must be HH:MM in 24-hour form on a 30-minute step (00:00 ... 23:30), e.g. \"07:00\"'".into())
    ))]
    pub time: String,

    /// IANA time zone in which `time` is read, e.g. `America/New_York`. When omitted, the operator's
    /// default zone applies (Helm value `defaultTimeZone`); `status.timeZone` shows the zone in effect.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 64))]
    #[x_kube(validation = time_zone_rule())]
    pub time_zone: Option<String>,

    /// Pauses the schedule without deleting anything. Resuming waits for the next slot; it does not
    /// run the slots that passed while suspended (the next file still holds every row since the last
    /// delivered one).
    #[serde(default)]
    pub suspend: bool,

    /// Where the rows come from.
    pub source: Source,

    /// Where the files go.
    pub destination: Destination,

    /// How often, between runs, the operator checks that the delivered file is still on the server and
    /// copies it again if it is not. A duration such as `10m` or `1h30m`; at least `1m`.
    #[serde(default = "default_recheck_interval")]
    #[schemars(length(min = 2, max = 32))]
    #[x_kube(validation = Rule::new(
        "self.matches('^([0-9]+h)?([0-9]+m)?([0-9]+s)?$') && duration(self) >= duration('1m')"
    ).message("recheckInterval must be a duration such as 10m or 1h30m, at least 1m"))]
    pub recheck_interval: String,

    /// Days after which the operator deletes its own delivered files (by the UTC date in their name)
    /// from the export directory and its sub-directories. No other file is ever touched. At least 1.
    #[serde(default = "default_retention_days")]
    #[schemars(range(min = 1, max = 36500))]
    pub retention_days: u32,

    /// CSV dialect of the delivered files.
    #[serde(default)]
    pub csv: CsvOptions,
}

/// The CRM record type a file holds, which fixes its columns and name prefix: `interactions` (calls,
/// meetings, emails with constituents) or `proposals` (fundraising proposals).
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum FileType {
    // Variant docs would turn the schema into a oneOf; the enum doc above says it all.
    Interactions,
    Proposals,
}

impl FileType {
    /// The name used in the spec, the file name and the source table.
    pub fn as_str(self) -> &'static str {
        match self {
            FileType::Interactions => "interactions",
            FileType::Proposals => "proposals",
        }
    }
}

impl std::fmt::Display for FileType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The PostgreSQL database that holds the `interactions` and `proposals` tables (or views).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Source {
    /// Secret in this namespace whose key `url` holds a `postgres://` URL. A read-only role is enough.
    pub secret_ref: SecretReference,
}

/// Delivery target of the files.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Destination {
    /// The SFTP server and directory that receive the files.
    pub sftp: SftpDestination,
}

/// An SFTP server, account and directory.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SftpDestination {
    /// Host name or IP address of the SFTP server.
    #[schemars(length(min = 1, max = 253))]
    pub host: String,

    /// TCP port of the SFTP server (1-65535).
    #[serde(default = "default_port")]
    #[schemars(range(min = 1, max = 65535))]
    pub port: u16,

    /// Account name on the SFTP server.
    #[schemars(length(min = 1, max = 256))]
    pub username: String,

    /// Absolute directory on the server that receives the files, e.g. `/exports`. Files moved into its
    /// sub-directories count as picked up and are not copied again.
    #[serde(default = "default_directory")]
    #[schemars(length(min = 1, max = 1024))]
    #[x_kube(
        validation = Rule::new("self.startsWith('/')")
            .message("directory must be an absolute path such as /exports"),
        validation = Rule::new("!self.matches('(^|/)[.][.]?(/|$)')")
            .message("directory must not contain '.' or '..' segments: use a plain absolute path such as /exports")
    )]
    pub directory: String,

    /// Secret in this namespace holding the credentials: `privateKey` (and optional `passphrase`) or
    /// `password`, and `knownHosts` (required: the server's host key in OpenSSH known_hosts form; there
    /// is no trust on first use).
    pub secret_ref: SecretReference,
}

/// A reference to a Secret in the object's own namespace.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
pub struct SecretReference {
    /// Name of the Secret.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
}

/// CSV dialect. The defaults follow RFC 4180.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CsvOptions {
    /// Line terminator: `CRLF` (RFC 4180, the default) or `LF`.
    #[serde(default)]
    pub line_terminator: LineTerminator,
    /// Start the file with a UTF-8 byte order mark, for spreadsheet programs that need one.
    #[serde(default)]
    pub byte_order_mark: bool,
    /// Prefix free-text cells that start with `=`, `+`, `-`, `@`, tab or carriage return with `'`,
    /// so spreadsheet programs do not run them as formulas (OWASP CSV injection). Numeric and date
    /// columns are never altered.
    #[serde(default)]
    pub escape_formulas: bool,
}

impl Default for CsvOptions {
    fn default() -> Self {
        Self {
            line_terminator: LineTerminator::Crlf,
            byte_order_mark: false,
            escape_formulas: false,
        }
    }
}

/// Line terminator of CSV records: `CRLF` (RFC 4180) or `LF`.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum LineTerminator {
    #[default]
    #[serde(rename = "CRLF")]
    Crlf,
    #[serde(rename = "LF")]
    Lf,
}

/// Observed state, written by the operator and by the export Jobs. Never holds a secret.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
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
    /// Opaque upper bound of the last delivered window. The next file holds every row written after it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub watermark: Option<String>,
    /// The most recent run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_run: Option<LastRun>,
    /// The most recently delivered file and its checks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivery: Option<DeliveryStatus>,
    /// Pruning of files older than `retentionDays`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retention: Option<RetentionStatus>,
    /// `Ready` (the schedule is valid and running), `Exported` (the last run exported its rows) and
    /// `Delivered` (the last file is on the server).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = kube::core::ListMerge::Map(vec!["type".into()]))]
    pub conditions: Vec<Condition>,
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
pub struct LastRun {
    /// The scheduled instant (UTC) this run is for; for run-now, the trigger instant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slot: Option<DateTime<Utc>>,
    /// Name of the Job that ran it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_name: Option<String>,
    /// `Pending`, `Running`, `Succeeded` or `Failed`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<String>,
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
}

/// The most recently delivered file.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
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
    pub last_check_result: Option<String>,
    /// Where the last check found the file, relative to the export directory, e.g. `archive/x.csv`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub found_at: Option<String>,
    /// How many times the file was copied again after it went missing.
    #[serde(default)]
    pub recopies: u32,
}

/// Pruning of old files.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
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
    /// `Ready`, `Exported` or `Delivered`.
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

fn default_recheck_interval() -> String {
    "10m".to_string()
}

fn default_retention_days() -> u32 {
    90
}

fn default_port() -> u16 {
    22
}

fn default_directory() -> String {
    "/exports".to_string()
}

/// Admission rule for `timeZone`: membership in the IANA names this binary's zone database knows,
/// so the API server refuses a zone the operator could not schedule.
fn time_zone_rule() -> Rule {
    let names: Vec<String> = chrono_tz::TZ_VARIANTS
        .iter()
        .map(|tz| format!("'{}'", tz.name()))
        .collect();
    Rule::new(format!("self in [{}]", names.join(", "))).message(Message::Expression(
        "'timeZone \"' + self + '\" is not an IANA time zone name: use one such as America/New_York or UTC (names are case-sensitive)'".into(),
    ))
}

/// The CustomResourceDefinition as installed: the derived one, with doc-comment line breaks inside
/// paragraphs unwrapped so `kubectl explain` reflows the text instead of breaking lines twice.
pub fn crd()
-> k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition {
    use kube::CustomResourceExt;
    let mut crd = ScheduledExport::crd();
    for version in &mut crd.spec.versions {
        if let Some(schema) = version
            .schema
            .as_mut()
            .and_then(|validation| validation.open_api_v3_schema.as_mut())
        {
            unwrap_descriptions(schema);
        }
    }
    crd
}

fn unwrap_descriptions(
    schema: &mut k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::JSONSchemaProps,
) {
    if let Some(description) = schema.description.as_mut() {
        *description = description
            .split("\n\n")
            .map(|paragraph| paragraph.split_whitespace().collect::<Vec<_>>().join(" "))
            .collect::<Vec<_>>()
            .join("\n\n");
    }
    for property in schema
        .properties
        .iter_mut()
        .flat_map(|properties| properties.values_mut())
    {
        unwrap_descriptions(property);
    }
    if let Some(k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::JSONSchemaPropsOrArray::Schema(items)) =
        schema.items.as_mut()
    {
        unwrap_descriptions(items);
    }
}
