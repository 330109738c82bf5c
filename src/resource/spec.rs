//! The desired state: what to export, when, and where to deliver it.

use kube::core::{Message, Rule};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::ScheduledExportStatus;

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
    /// Which CRM records the file holds: `interactions`, `proposals` or `constituents`; it names the
    /// file and, without `source.view`, the table its rows come from. Immutable once created,
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

    /// Compression of the delivered files: `none` (the default) or `gzip`, which names them
    /// `{fileType}-{YYYYMMDD}T{HHMMSS}Z.csv.gz` (`gunzip` restores the CSV). Changing it applies from
    /// the next run; files already delivered keep their names and are still rechecked and pruned.
    #[serde(default)]
    pub compression: Compression,

    /// Encrypt each file to the institution's OpenPGP key, after compression. The files are then
    /// named `.csv.pgp` (or `.csv.gz.pgp`) and `gpg --decrypt` with the institution's private key
    /// restores them. A key that cannot encrypt (expired, revoked, without an encryption subkey) fails
    /// the run before any row is read, with reason `EncryptionKeyInvalid`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encryption: Option<Encryption>,

    /// Publish `NAME.sha256` beside each delivered file, one line in `sha256sum` form, so
    /// `sha256sum -c NAME.sha256` verifies the file. It appears only after the data file is in place,
    /// so its presence means the data file is complete; rechecks, recopies and retention treat the
    /// two as one delivery.
    #[serde(default)]
    pub checksum_file: bool,

    /// Where the operator sends alerts: when a run fails, when the next run succeeds again, when a
    /// delivered file had to be copied again, and when a recheck cannot reach the SFTP server (once,
    /// and once more when it can again). Omitted: no alerts (Events and metrics say the same
    /// things either way). An alert is sent by the operator, never by the export, and never fails
    /// or delays a run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notify: Option<Notify>,
}

/// The CRM record type a file holds, which fixes its columns and name prefix: `interactions` (calls,
/// meetings, emails with constituents), `proposals` (fundraising proposals) or `constituents`
/// (the people and organisations: names, contact details, address, affiliations).
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum FileType {
    // Variant docs would turn the schema into a oneOf; the enum doc above says it all.
    Interactions,
    Proposals,
    Constituents,
}

impl FileType {
    /// Every file type.
    pub const ALL: [FileType; 3] = [
        FileType::Interactions,
        FileType::Proposals,
        FileType::Constituents,
    ];

    /// The name used in the spec, the file name and the source table.
    pub fn as_str(self) -> &'static str {
        match self {
            FileType::Interactions => "interactions",
            FileType::Proposals => "proposals",
            FileType::Constituents => "constituents",
        }
    }
}

impl std::fmt::Display for FileType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The PostgreSQL database that holds the file type's table (`interactions`, `proposals`,
/// `constituents`, or views of those names), or the view `view` names.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new(
    "(has(self.view) ? self.view : '') == (has(oldSelf.view) ? oldSelf.view : '')"
).message(
    "source.view is immutable: the watermark belongs to the rows of one view; create a new ScheduledExport for another view (after redefining the view itself, annotate exports.crm.dev/full-export)"
))]
pub struct Source {
    /// Secret in this namespace whose key `url` holds a `postgres://` URL (a read-only role is enough;
    /// `?sslmode=verify-full` for TLS with the host name checked). Optional key `caCert`: the PEM CA
    /// that `sslmode=verify-ca` and `verify-full` trust; without it, the system's CAs.
    pub secret_ref: SecretReference,

    /// A saved search: the name of a view (or table) the institution defines over its own tables,
    /// `name` or `schema.name`, case-sensitive. The file then holds the view's columns in the
    /// view's order (named after `fileType`), under the same no-loss windows: the view must expose
    /// `txid xid8`, the id of the transaction that last changed each row (see the design document
    /// for views that join several tables). A view without it fails the run with reason
    /// `ViewInvalid`. Omitted: the table named after `fileType`. Immutable once set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 127))]
    #[x_kube(validation = Rule::new(
        "self.matches('^[A-Za-z_][A-Za-z0-9_$]{0,62}([.][A-Za-z_][A-Za-z0-9_$]{0,62})?$')"
    ).message(Message::Expression(
        "'view \"' + self + '\" must be a PostgreSQL name such as major_donors or crm.major_donors: letters, digits, _ and $, not starting with a digit, at most 63 characters per part'".into()
    )))]
    pub view: Option<String>,
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

impl SftpDestination {
    /// Where files go, as recorded in `delivery.destination`: `sftp://user@host:port/directory`,
    /// the host in lower case and the directory normalized, so two spellings of one place compare
    /// equal.
    pub fn url(&self) -> String {
        format!(
            "sftp://{}@{}:{}{}",
            self.username,
            self.host.to_ascii_lowercase(),
            self.port,
            normalize_directory(&self.directory)
        )
    }
}

/// A directory as every comparison sees it: without trailing slashes, the root as `/`.
pub fn normalize_directory(directory: &str) -> &str {
    match directory.trim_end_matches('/') {
        "" => "/",
        trimmed => trimmed,
    }
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

/// Where alerts go.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Notify {
    /// A JSON POST to an HTTP(S) endpoint, Slack-incoming-webhook compatible (a `text` field with
    /// one sentence) and structured (`event`, `namespace`, `name`, `reason`, ...); retried with
    /// backoff. See the operations guide for the body and the signature.
    pub webhook: WebhookNotify,
}

/// An alert webhook.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct WebhookNotify {
    /// Secret in this namespace whose key `url` holds the endpoint (`https://...` or `http://...`;
    /// the URL is treated as a credential, since incoming-webhook URLs carry their token), and
    /// optional key `signingKey`: when present, each POST carries
    /// `X-Scheduled-Exports-Signature: sha256=<hex HMAC-SHA256 of "<timestamp>.<body>">` and
    /// `X-Scheduled-Exports-Timestamp: <unix seconds>`, so the receiver can prove it came from
    /// this operator and refuse replays. Only the operator reads this Secret, never the export Job.
    #[x_kube(validation = Rule::new(
        "self.name.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?([.][a-z0-9]([-a-z0-9]*[a-z0-9])?)*$')"
    ).message(Message::Expression(
        "'notify.webhook.secretRef.name \"' + self.name + '\" must be a Secret name: lower-case letters, digits, - and ., starting and ending with a letter or digit'".into()
    )))]
    pub secret_ref: SecretReference,
}

/// How delivered files are encrypted.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Encryption {
    /// OpenPGP encryption to one public key (every valid encryption subkey of it).
    pub pgp: PgpEncryption,
}

/// OpenPGP encryption of delivered files.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PgpEncryption {
    /// Secret in this namespace holding the institution's ASCII-armoured public key (only the
    /// public key: the operator never needs the private one).
    pub public_key_secret_ref: KeySecretReference,
}

/// A key of a Secret in the object's own namespace.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
pub struct KeySecretReference {
    /// Name of the Secret.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// Key within the Secret; `publicKey` when omitted.
    #[serde(default = "default_public_key_key")]
    #[schemars(length(min = 1, max = 253))]
    pub key: String,
}

fn default_public_key_key() -> String {
    "publicKey".to_string()
}

/// Compression of delivered files: `none` or `gzip`.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum Compression {
    #[default]
    None,
    Gzip,
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
