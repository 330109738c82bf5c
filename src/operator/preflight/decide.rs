//! The preflight as pure decisions: the fingerprint of what a check depends on, when a check is
//! due, what each failure is called, and the condition, status and Event an outcome gives.
//! `check.rs` does the I/O and `mod.rs` the scheduling.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};

use crate::adapters::kubernetes::secrets::{
    PGP_KEY_SECRET_FIELD, SFTP_SECRET_FIELD, SOURCE_SECRET_FIELD, SecretError,
};
use crate::adapters::postgres::{SourceError, is_permission_denied};
use crate::adapters::sftp::SftpError;
use crate::export::encrypt::EncryptionKeyError;
use crate::export::view::ViewError;
use crate::operator::checker::decide::Failure;
use crate::operator::config::PreflightSettings;
use crate::resource::{
    ConditionReason, ConditionType, EventReason, PreflightStatus, ScheduledExport,
    ScheduledExportStatus,
};
use crate::status::{self, ConditionUpdate};

/// Bumped when the checks themselves change, so every object is checked again after an upgrade.
const CHECKS_VERSION: u32 = 1;

/// Longest condition message, in characters: enough for two failures' full sentences.
const MESSAGE_LIMIT: usize = 1024;

/// The Secrets an object references, as (the spec field, the Secret's name).
pub fn referenced_secrets(object: &ScheduledExport) -> Vec<(&'static str, &str)> {
    let spec = &object.spec;
    let mut secrets = vec![
        (SOURCE_SECRET_FIELD, spec.source.secret_ref.name.as_str()),
        (
            SFTP_SECRET_FIELD,
            spec.destination.sftp.secret_ref.name.as_str(),
        ),
    ];
    if let Some(encryption) = &spec.encryption {
        secrets.push((
            PGP_KEY_SECRET_FIELD,
            encryption.pgp.public_key_secret_ref.name.as_str(),
        ));
    }
    secrets
}

/// The fingerprint of everything a check depends on: the spec's file type, source, destination
/// and encryption, and the resourceVersion of each Secret they name (`versions`: name to
/// resourceVersion in the object's namespace; a missing Secret counts as such). Never the
/// Secrets' content, which the operator does not even list.
pub fn fingerprint(object: &ScheduledExport, versions: &BTreeMap<String, String>) -> String {
    let spec = &object.spec;
    let secrets: Vec<(&str, Option<&String>)> = referenced_secrets(object)
        .into_iter()
        .map(|(_, name)| (name, versions.get(name)))
        .collect();
    let inputs = serde_json::json!({
        "checks": CHECKS_VERSION,
        "fileType": spec.file_type,
        "source": spec.source,
        "destination": spec.destination,
        "encryption": spec.encryption,
        "secrets": secrets,
    });
    let digest = Sha256::digest(inputs.to_string().as_bytes());
    hex::encode(&digest[..16])
}

/// The last check of an object, from its status or, fresher, from the loop's memory (the cache
/// lags the loop's own status writes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LastCheck {
    pub inputs: String,
    pub checked_at: DateTime<Utc>,
    pub passed: bool,
}

impl LastCheck {
    /// What the object's status records, if it records a complete check.
    pub fn of_status(status: Option<&ScheduledExportStatus>) -> Option<Self> {
        let status = status?;
        let preflight = status.preflight.as_ref()?;
        let condition = status::condition(&status.conditions, ConditionType::Preflight)?;
        Some(Self {
            inputs: preflight.inputs.clone()?,
            checked_at: preflight.checked_at?,
            passed: condition.status == "True",
        })
    }

    /// The more recent of two records.
    pub fn latest(a: Option<Self>, b: Option<Self>) -> Option<Self> {
        match (a, b) {
            (Some(a), Some(b)) => Some(if b.checked_at > a.checked_at { b } else { a }),
            (a, b) => a.or(b),
        }
    }
}

/// Why a check is due, in the order they are served.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Due {
    /// Never checked, or an input changed since the last check.
    Changed,
    /// The next run is near and its inputs were not checked since the lead began.
    AheadOfRun,
    /// The last check failed a while ago: a fix on the server's side changes no input.
    Retry,
}

/// Whether `object` is due a check at `now`, given its inputs' fingerprint and its last check.
/// Objects the controller has not yet seen in their current generation wait for it.
pub fn due(
    now: DateTime<Utc>,
    object: &ScheduledExport,
    inputs: &str,
    last: Option<&LastCheck>,
    settings: &PreflightSettings,
) -> Option<Due> {
    if object.metadata.deletion_timestamp.is_some() {
        return None;
    }
    // Until the controller has seen this generation, the next run (the instant the key is
    // checked at) is not known; it writes status within moments of every change.
    let observed = object
        .status
        .as_ref()
        .and_then(|status| status.observed_generation);
    if observed != object.metadata.generation {
        return None;
    }
    let Some(last) = last else {
        return Some(Due::Changed);
    };
    if last.inputs != inputs {
        return Some(Due::Changed);
    }
    let lead = chrono::TimeDelta::from_std(settings.lead).unwrap_or(chrono::TimeDelta::MAX);
    if let Some(next) = object
        .status
        .as_ref()
        .and_then(|status| status.next_run_time)
    {
        let lead_begins = next
            .checked_sub_signed(lead)
            .unwrap_or(DateTime::<Utc>::MIN_UTC);
        if now >= lead_begins && now < next && last.checked_at < lead_begins {
            return Some(Due::AheadOfRun);
        }
    }
    let retry =
        chrono::TimeDelta::from_std(settings.retry_failed).unwrap_or(chrono::TimeDelta::MAX);
    if !last.passed
        && last
            .checked_at
            .checked_add_signed(retry)
            .is_some_and(|again| now >= again)
    {
        return Some(Due::Retry);
    }
    None
}

/// The instant the encryption key must be valid at: the next run, or `now` when none is
/// scheduled or it is already due.
pub fn key_instant(
    object: &ScheduledExport,
    now: DateTime<Utc>,
) -> (DateTime<Utc>, Option<DateTime<Utc>>) {
    let next = object
        .status
        .as_ref()
        .and_then(|status| status.next_run_time);
    (next.filter(|next| *next > now).unwrap_or(now), next)
}

/// What a check found: everything works, or the failures in the order checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Passed { summary: String },
    Failed(Vec<Failure>),
}

impl Outcome {
    pub fn passed(&self) -> bool {
        matches!(self, Outcome::Passed { .. })
    }

    /// The condition's reason.
    pub fn reason(&self) -> ConditionReason {
        match self {
            Outcome::Passed { .. } => ConditionReason::Passed,
            Outcome::Failed(failures) => failures
                .first()
                .map_or(ConditionReason::SessionError, |failure| failure.reason),
        }
    }

    /// The condition's message: what was checked, or every failure (the first gives the reason).
    pub fn message(&self) -> String {
        let text = match self {
            Outcome::Passed { summary } => summary.clone(),
            Outcome::Failed(failures) => failures
                .iter()
                .map(|failure| failure.message.as_str())
                .collect::<Vec<_>>()
                .join(" Also: "),
        };
        truncate(&crate::redact::scrub(&text), MESSAGE_LIMIT)
    }
}

fn truncate(text: &str, limit: usize) -> String {
    match text.char_indices().nth(limit) {
        Some((cut, _)) => format!("{}...", &text[..cut]),
        None => text.to_string(),
    }
}

/// The sentence of a check that passed: what it proved, so a reader sees what was covered.
pub fn passed_summary(object: &ScheduledExport, key_at: Option<DateTime<Utc>>) -> String {
    let spec = &object.spec;
    let source = match &spec.source.view {
        Some(view) => format!("view {view}"),
        None => format!("table {}", spec.file_type),
    };
    let key = match (&spec.encryption, key_at) {
        (Some(_), Some(at)) => format!(
            "; the encryption key can encrypt at the next run ({})",
            at.to_rfc3339()
        ),
        (Some(_), None) => "; the encryption key can encrypt".to_string(),
        (None, _) => String::new(),
    };
    format!(
        "the database answers and the export's query of {source} runs; {} accepts the host key \
         and the login, and the account can create, rename and remove a file in the directory{key}",
        spec.destination.sftp.url()
    )
}

/// The status after a check: `preflight` and the Preflight condition.
pub fn after_check(
    current: &ScheduledExportStatus,
    outcome: &Outcome,
    inputs: &str,
    checked_for: Option<DateTime<Utc>>,
    generation: Option<i64>,
    now: DateTime<Utc>,
) -> ScheduledExportStatus {
    let mut status = current.clone();
    status.preflight = Some(PreflightStatus {
        checked_at: Some(now),
        checked_for,
        inputs: Some(inputs.to_string()),
    });
    status::set_condition(
        &mut status.conditions,
        ConditionUpdate {
            type_: ConditionType::Preflight,
            status: outcome.passed(),
            reason: outcome.reason(),
            message: outcome.message(),
        },
        generation,
        now,
    );
    status
}

/// The Event of an outcome, when it differs from the one before (`previous`: the condition's
/// status and reason as they were): (warning, reason, note). A repeat gives none.
pub fn change_event(
    previous: Option<(bool, &str)>,
    outcome: &Outcome,
) -> Option<(bool, EventReason, String)> {
    let now = (outcome.passed(), outcome.reason().as_str());
    if previous == Some(now) {
        return None;
    }
    Some(match outcome {
        Outcome::Passed { summary } => (
            false,
            EventReason::PreflightPassed,
            format!("preflight passed: {summary}"),
        ),
        Outcome::Failed(_) => (
            true,
            EventReason::PreflightFailed,
            format!(
                "preflight failed ({}): {}",
                outcome.reason(),
                outcome.message()
            ),
        ),
    })
}

/// The condition's status and reason as they are in `status`.
pub fn previous_outcome(status: &ScheduledExportStatus) -> Option<(bool, String)> {
    status::condition(&status.conditions, ConditionType::Preflight)
        .map(|condition| (condition.status == "True", condition.reason.clone()))
}

/// A Secret that could not be read. A missing one is named so, with the fix.
pub fn secret_failure(err: &SecretError) -> Failure {
    match err {
        SecretError::NotFound { field, .. } => Failure::new(
            ConditionReason::SecretNotFound,
            format!("{err}; create it, or correct the name in {field}"),
        ),
        other => Failure::new(other.reason(), other.to_string()),
    }
}

/// The encryption key, checked as of `at` (the next run) at `now`: a key that expires in between
/// is said to expire before the run, not to have expired.
pub fn key_failure(
    secret: &str,
    key: &str,
    problem: &EncryptionKeyError,
    at: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Failure {
    let problem = match problem {
        EncryptionKeyError::Expired(expires) if *expires > now => format!(
            "expires at {}, before the next run; ask the institution to extend it or send its \
             new public key",
            expires.to_rfc3339()
        ),
        other => other.to_string(),
    };
    Failure::new(
        ConditionReason::EncryptionKeyInvalid,
        format!(
            "the OpenPGP key in Secret {secret} (key \"{key}\", referenced by \
             {PGP_KEY_SECRET_FIELD}) {problem} (checked as of the run at {})",
            at.to_rfc3339()
        ),
    )
}

/// The SFTP destination: the adapter's reason, its message (which names the fix) after the place.
pub fn sftp_failure(object: &ScheduledExport, err: &SftpError) -> Failure {
    Failure::new(
        err.reason(),
        format!(
            "SFTP destination {}: {err}",
            object.spec.destination.sftp.url()
        ),
    )
}

/// The database, named by the Secret whose `url` reaches it, with what to fix.
pub fn source_failure(object: &ScheduledExport, err: &SourceError) -> Failure {
    let (reason, fix) = match err {
        SourceError::InvalidUrl { .. } | SourceError::InvalidCaCert { .. } => {
            (ConditionReason::SecretInvalid, "")
        }
        SourceError::Unreachable { .. }
        | SourceError::ConnectTimeout { .. }
        | SourceError::Connect { .. } => (
            ConditionReason::DatabaseUnreachable,
            "; check the host and port in the Secret's url and that the database accepts \
             connections from the operator's namespace",
        ),
        SourceError::AuthenticationFailed { .. } => (
            ConditionReason::DatabaseAuthenticationFailed,
            "; check the user and password in the Secret's url",
        ),
        SourceError::DatabaseMissing { .. } => (
            ConditionReason::DatabaseMissing,
            "; check the database name in the Secret's url",
        ),
        SourceError::Tls { .. } => (
            ConditionReason::DatabaseTlsFailed,
            "; check sslmode in the Secret's url and its caCert",
        ),
        SourceError::TableMissing { .. } => (ConditionReason::TableMissing, ""),
        SourceError::ColumnMissing { .. } => (ConditionReason::ColumnMissing, ""),
        SourceError::RecoveryConflict { .. } => (ConditionReason::RecoveryConflict, ""),
        other if is_permission_denied(other) => (
            ConditionReason::DatabasePermissionDenied,
            "; grant the URL's role SELECT on the table or view (and USAGE on its schema)",
        ),
        _ => (ConditionReason::DatabaseFailed, ""),
    };
    Failure::new(
        reason,
        format!(
            "database (Secret {} referenced by {SOURCE_SECRET_FIELD}): {err}{fix}",
            object.spec.source.secret_ref.name
        ),
    )
}

/// A view the export would refuse.
pub fn view_failure(err: &ViewError) -> Failure {
    Failure::new(ConditionReason::ViewInvalid, err.to_string())
}

#[cfg(test)]
mod tests;
