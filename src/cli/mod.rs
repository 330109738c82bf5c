//! Command-line interface: subcommands and their arguments.

pub mod commands;
pub mod plugin;

use chrono::{DateTime, Utc};
use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::schedule::SlotTime;

/// Delivers a daily CSV export of CRM data over SFTP, scheduled by ScheduledExport objects.
#[derive(Debug, Parser)]
#[command(name = "scheduled-exports", version, about, propagate_version = true)]
pub struct Cli {
    /// Log format on stderr.
    #[arg(long, global = true, env = "LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    #[command(subcommand)]
    pub command: Command,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line, for log collectors.
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the operator: watch ScheduledExports and create export Jobs at their due instants.
    // Boxed: its many flags make it far larger than the other variants.
    Controller(Box<ControllerArgs>),
    /// Run one export of a ScheduledExport (what an export Job executes).
    Export(ExportArgs),
    /// Print the CustomResourceDefinition YAML (the file committed under crds/).
    Crd,
    /// Print the next run instants of a time of day in a time zone.
    Next(NextArgs),
    /// Apply the reference schema to a database and add synthetic rows.
    #[cfg(feature = "sample-data")]
    SampleData(SampleDataArgs),
    /// The kubectl plugin's commands (`kubectl sx ...` when linked as `kubectl-sx` on the PATH).
    Sx(plugin::SxArgs),
}

#[derive(Debug, Args)]
pub struct ControllerArgs {
    /// Watch only this namespace (default: all namespaces).
    #[arg(long, env = "WATCH_NAMESPACE")]
    pub namespace: Option<String>,
    /// Time zone of objects that omit spec.timeZone.
    #[arg(long, env = "DEFAULT_TIME_ZONE", default_value = "UTC", value_parser = parse_zone)]
    pub default_time_zone: chrono_tz::Tz,
    /// Container image of the export Jobs (this binary).
    #[arg(long, env = "EXPORT_IMAGE")]
    pub image: String,
    /// imagePullPolicy of the export containers: Always, IfNotPresent or Never (default: the
    /// cluster's, IfNotPresent for a tagged image).
    #[arg(long, env = "EXPORT_IMAGE_PULL_POLICY", value_parser = ["Always", "IfNotPresent", "Never"])]
    pub job_image_pull_policy: Option<String>,
    /// Resources of the export containers, as JSON of a container's `resources`, e.g.
    /// {"requests":{"cpu":"100m","memory":"64Mi"},"limits":{"memory":"256Mi"}}. Omitted: requests
    /// of 100m CPU, 64Mi memory and 1Gi ephemeral storage, limits of 256Mi memory and 11Gi.
    #[arg(long, env = "EXPORT_RESOURCES", value_parser = parse_resources)]
    pub job_resources: Option<k8s_openapi::api::core::v1::ResourceRequirements>,
    /// Where delivered files are kept for recopies: file:///path or s3://bucket/prefix.
    #[arg(long, env = "ARTIFACT_STORE_URL")]
    pub artifact_store: String,
    /// Secret (in each object's namespace) with the artifact store's credentials for the export
    /// Jobs, e.g. AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_ENDPOINT_URL.
    #[arg(long, env = "ARTIFACT_STORE_SECRET")]
    pub artifact_store_secret: Option<String>,
    /// PersistentVolumeClaim holding a file:// artifact store, mounted into the export Jobs at the
    /// URL's path (mount it at the same path in the operator's own Pod).
    #[arg(long, env = "ARTIFACT_STORE_CLAIM")]
    pub artifact_store_claim: Option<String>,
    /// Address of the HTTP server for /metrics, /healthz and /readyz.
    #[arg(long, env = "LISTEN_ADDRESS", default_value = "0.0.0.0:8080")]
    pub listen_address: std::net::SocketAddr,
    /// Bound on each SFTP step of rechecks, recopies and pruning, e.g. 30s.
    #[arg(long, env = "SFTP_TIMEOUT", default_value = "30s", value_parser = parse_duration)]
    pub sftp_timeout: std::time::Duration,
    /// Check what each object's runs need (database, SFTP server, encryption key, Secrets) when
    /// its inputs change and ahead of each run, into the Preflight condition.
    #[arg(long, env = "PREFLIGHT", default_value_t = true, action = clap::ArgAction::Set)]
    pub preflight: bool,
    /// How long before each run the preflight checks its inputs again, e.g. 15m.
    #[arg(long, env = "PREFLIGHT_LEAD", default_value = "15m", value_parser = parse_duration)]
    pub preflight_lead: std::time::Duration,
    /// How often the preflight looks for changed inputs (one metadata list of Secrets per
    /// namespace each time), e.g. 30s.
    #[arg(long, env = "PREFLIGHT_INTERVAL", default_value = "30s", value_parser = parse_duration)]
    pub preflight_interval: std::time::Duration,
    /// Preflight checks running at once.
    #[arg(long, env = "PREFLIGHT_CONCURRENCY", default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=256))]
    pub preflight_concurrency: u16,
    /// Directory where a recopy keeps the file while it uploads it.
    #[arg(long, env = "SPOOL_DIR", default_value_os_t = std::env::temp_dir())]
    pub spool_dir: std::path::PathBuf,
    /// Elect a leader through a Lease, for running several replicas.
    #[arg(long, env = "LEADER_ELECTION", default_value_t = true, action = clap::ArgAction::Set)]
    pub leader_election: bool,
    /// Namespace of the leader Lease (the operator's own namespace).
    #[arg(long, env = "POD_NAMESPACE", default_value = "default")]
    pub lease_namespace: String,
    /// This replica's identity in the Lease and in Events.
    #[arg(long, env = "POD_NAME")]
    pub identity: Option<String>,
}

#[derive(Debug, Args)]
pub struct ExportArgs {
    /// Namespace of the ScheduledExport.
    #[arg(long, env = "EXPORT_NAMESPACE")]
    pub namespace: String,
    /// Name of the ScheduledExport.
    #[arg(long, env = "EXPORT_NAME")]
    pub name: String,
    /// The scheduled instant this run is for, RFC 3339 (default: now).
    #[arg(long, value_parser = parse_instant)]
    pub slot: Option<DateTime<Utc>>,
    /// Where delivered files are kept for recopies: file:///path or s3://bucket/prefix.
    #[arg(long, env = "ARTIFACT_STORE_URL")]
    pub artifact_store: String,
    /// Bound on each network step (database connect, each SFTP operation), e.g. 30s.
    #[arg(long, env = "EXPORT_TIMEOUT", default_value = "30s", value_parser = parse_duration)]
    pub timeout: std::time::Duration,
    /// Directory for temporary files (an emptyDir in a Job). The file itself streams to the
    /// server and the artifact store and is never written here.
    #[arg(long, env = "SPOOL_DIR", default_value_os_t = std::env::temp_dir())]
    pub spool_dir: std::path::PathBuf,
    /// Read the object's Secrets from files instead of the API server: the source Secret's keys
    /// under DIR/source, the SFTP Secret's under DIR/sftp (the operator's Jobs mount them there).
    #[arg(long, env = "SECRETS_DIR", value_name = "DIR")]
    pub secrets_dir: Option<std::path::PathBuf>,
    /// Name of the Job running this export (set by the operator).
    #[arg(long, env = "JOB_NAME", hide = true)]
    pub job_name: Option<String>,
    /// UID of the object this run belongs to (set by the operator): a run whose object was
    /// deleted and created again under the same name stops without touching the new one.
    #[arg(long, env = "EXPORT_OBJECT_UID", hide = true)]
    pub uid: Option<String>,
    /// Ignore the stored watermark: the file holds every row, and later runs continue from this
    /// one (what a full-export Job sets).
    #[arg(long, env = "EXPORT_FULL")]
    pub full: bool,
}

#[derive(Debug, Args)]
pub struct NextArgs {
    /// Local time of day, HH:MM in 24-hour form on a 30-minute step.
    #[arg(long, value_name = "HH:MM")]
    pub time: SlotTime,
    /// IANA time zone, e.g. America/New_York.
    #[arg(long, value_name = "ZONE", value_parser = parse_zone)]
    pub time_zone: chrono_tz::Tz,
    /// Print runs strictly after this instant, RFC 3339 (default: now).
    #[arg(long, value_name = "RFC3339", value_parser = parse_instant)]
    pub after: Option<DateTime<Utc>>,
    /// How many runs to print.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub count: u32,
}

#[derive(Debug, Args)]
pub struct SampleDataArgs {
    /// PostgreSQL URL of the database to fill. Prefer the DATABASE_URL environment variable: a
    /// URL on the command line (and the password in it) is visible to every user of the machine,
    /// e.g. in `ps`.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    pub database_url: String,
    /// Synthetic interactions to add (0 applies the schema alone).
    #[arg(long, default_value_t = 1000)]
    pub interactions: u64,
    /// Synthetic proposals to add (0 applies the schema alone).
    #[arg(long, default_value_t = 100)]
    pub proposals: u64,
    /// Synthetic constituents to add.
    #[arg(long, default_value_t = 0)]
    pub constituents: u64,
    /// Seed of the generator, for reproducible data.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
}

fn parse_instant(value: &str) -> Result<DateTime<Utc>, String> {
    DateTime::parse_from_rfc3339(value)
        .map(|instant| instant.with_timezone(&Utc))
        .map_err(|err| {
            format!("invalid instant \"{value}\": {err}; use RFC 3339, e.g. 2026-03-08T07:30:00Z")
        })
}

fn parse_duration(value: &str) -> Result<std::time::Duration, String> {
    let (number, unit) = value.split_at(
        value
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(value.len()),
    );
    let seconds = match unit {
        "s" => 1,
        "m" => 60,
        _ => {
            return Err(format!(
                "invalid duration \"{value}\": use seconds or minutes, e.g. 30s or 2m"
            ));
        }
    };
    number
        .parse::<u64>()
        .ok()
        .filter(|n| *n > 0)
        .map(|n| std::time::Duration::from_secs(n * seconds))
        .ok_or_else(|| {
            format!("invalid duration \"{value}\": use a positive whole number, e.g. 30s or 2m")
        })
}

fn parse_resources(
    value: &str,
) -> Result<k8s_openapi::api::core::v1::ResourceRequirements, String> {
    serde_json::from_str(value).map_err(|err| {
        format!("not a container's resources as JSON ({err}); e.g. {{\"limits\":{{\"memory\":\"256Mi\"}}}}")
    })
}

fn parse_zone(value: &str) -> Result<chrono_tz::Tz, String> {
    crate::schedule::parse_time_zone(value).map_err(|err| err.to_string())
}
