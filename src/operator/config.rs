//! How the operator is configured: flags and Helm values, gathered in one place so the
//! controller, the Job builder and the checker read the same settings.

use std::path::PathBuf;
use std::time::Duration;

use chrono_tz::Tz;

use crate::adapters::artifacts::S3Options;
use crate::operator::job::JobSettings;

/// The operator's configuration.
#[derive(Debug, Clone)]
pub struct ControllerConfig {
    /// Watch one namespace, or all when `None`.
    pub namespace: Option<String>,
    pub default_zone: Tz,
    pub job: JobSettings,
    /// How delivered files are rechecked, recopied and pruned.
    pub delivery: DeliverySettings,
    /// Name under which Events are reported, e.g. the Pod name.
    pub instance: String,
    /// How often the loops look at the clock.
    pub periods: Periods,
}

/// How the checker and the preflight loop reach servers and the artifact store.
#[derive(Debug, Clone)]
pub struct DeliverySettings {
    /// S3 settings for an `s3://` artifact store (the controller's environment in production).
    pub s3: S3Options,
    /// Bound on each SFTP step (connect, handshake, every request).
    pub sftp_timeout: Duration,
    /// Where a recopy keeps the artifact while it uploads it.
    pub spool_dir: PathBuf,
    /// Rounds (destinations) checked at the same time.
    pub max_concurrent_rounds: usize,
    /// Bound on one check round as a whole: a server that answers every call just in time must
    /// not hold its destination, or a round permit other destinations wait for, for hours.
    pub round_deadline: Duration,
    /// The preflight loop, or `None` for none. The binary runs it unless `--preflight=false`;
    /// the library default has none, so a test that embeds the controller opts in.
    pub preflight: Option<PreflightSettings>,
}

/// When and how the preflight loop checks what runs need (see `operator::preflight`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PreflightSettings {
    /// Between two looks for changed inputs (one metadata list of Secrets per namespace): a
    /// change is checked within about this plus the check's own time.
    pub tick: Duration,
    /// How long before each run its inputs are checked again.
    pub lead: Duration,
    /// While a check fails, how often it is repeated (a fix on the server side changes no input).
    pub retry_failed: Duration,
    /// Checks running at once.
    pub max_concurrent: usize,
    /// Bound on each network step of a check (database connect, each SFTP step).
    pub step_timeout: Duration,
    /// Bound on one check as a whole.
    pub check_timeout: Duration,
}

impl Default for PreflightSettings {
    fn default() -> Self {
        Self {
            tick: Duration::from_secs(30),
            lead: Duration::from_secs(15 * 60),
            retry_failed: Duration::from_secs(5 * 60),
            max_concurrent: 4,
            step_timeout: Duration::from_secs(15),
            check_timeout: Duration::from_secs(60),
        }
    }
}

impl Default for DeliverySettings {
    fn default() -> Self {
        Self {
            s3: S3Options::default(),
            sftp_timeout: Duration::from_secs(30),
            spool_dir: std::env::temp_dir(),
            max_concurrent_rounds: 8,
            round_deadline: Duration::from_secs(600),
            preflight: None,
        }
    }
}

/// How often the loops wake up. The defaults suit the system clock: checks are due whole minutes
/// apart, and a reconcile sleeps until the next slot. A test whose clock jumps sets short
/// periods instead, since a jump sends no watch event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Periods {
    /// Between two looks of the delivery checker for due rechecks and prunes.
    pub checker_tick: Duration,
    /// When set, every reconcile is requeued after this instead of at the next slot.
    pub reconcile_poll: Option<Duration>,
}

impl Default for Periods {
    fn default() -> Self {
        Self {
            checker_tick: Duration::from_secs(10),
            reconcile_poll: None,
        }
    }
}
