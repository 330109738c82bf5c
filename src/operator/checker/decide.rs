//! Delivery assurance as pure decisions (docs/design.md, "Delivery assurance"): when an object's delivered file is due
//! for a recheck, when its directory is due for pruning, which remote files retention may delete,
//! and the status each outcome writes. `round.rs` does the I/O.

use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::export::file_name::{checksum_data_file, parse_export_file_name};
use crate::resource::{
    CheckResult, ConditionReason, ConditionType, FileType, RetentionStatus, ScheduledExport,
    ScheduledExportSpec, ScheduledExportStatus, normalize_directory,
};
use crate::status::{self, ConditionUpdate, ownership};

/// Used when `recheckInterval` cannot be read (admission refuses such values; an object stored
/// under an older CRD could still carry one).
const DEFAULT_RECHECK_INTERVAL: Duration = Duration::from_secs(600);
/// Pruning runs after each delivered file and at least this often.
const PRUNE_EVERY: chrono::TimeDelta = chrono::TimeDelta::hours(24);
/// A temporary upload file this old belongs to an upload that died; none lives longer than a Job.
const STALE_PARTIAL_AGE: chrono::TimeDelta = chrono::TimeDelta::hours(24);

/// What is due for one object at a check round.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DueWork {
    /// The delivered file to look for.
    pub recheck: Option<String>,
    pub prune: bool,
}

/// What a check found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CheckOutcome {
    /// Found; `relative` is its path under the export directory (a sub-directory means moved).
    Found { relative: String },
    /// It was gone and the artifact was copied again.
    Recopied,
    /// Could not ask the server.
    Unreachable(Failure),
    /// Gone, and copying it again failed.
    RecopyFailed(Failure),
}

/// Why a step of a round failed: the adapter's reason (`HostKeyMismatch`, `ConnectionRefused`,
/// ...) and a sentence that names the cause and holds no secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub reason: ConditionReason,
    pub message: String,
}

impl Failure {
    pub fn new(reason: ConditionReason, message: impl Into<String>) -> Self {
        Self {
            reason,
            message: message.into(),
        }
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

/// What a prune did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PruneOutcome {
    /// Files deleted (relative paths), the files that could not be deleted with why, the old
    /// files of this object's name pattern left alone because it cannot prove it delivered them,
    /// and the names whose record entries go (deleted, or gone from the server).
    Pruned {
        deleted: Vec<String>,
        failed: Vec<String>,
        not_ours: Vec<String>,
        forget: Vec<String>,
    },
    /// Nothing was deleted because the server could not be reached.
    Unreachable(Failure),
}

/// `recheckInterval` as a duration: `1h30m`, `10m`, `90s`.
pub fn recheck_interval(spec: &ScheduledExportSpec) -> Duration {
    // Bounded so instant arithmetic cannot overflow on a value that slipped past admission.
    const LONGEST: Duration = Duration::from_secs(366 * 86_400);
    parse_interval(&spec.recheck_interval)
        .unwrap_or(DEFAULT_RECHECK_INTERVAL)
        .min(LONGEST)
}

fn parse_interval(text: &str) -> Option<Duration> {
    let mut total = 0u64;
    let mut number = String::new();
    for c in text.chars() {
        if c.is_ascii_digit() {
            number.push(c);
            continue;
        }
        let unit = match c {
            'h' => 3600,
            'm' => 60,
            's' => 1,
            _ => return None,
        };
        total = total.checked_add(number.parse::<u64>().ok()?.checked_mul(unit)?)?;
        number.clear();
    }
    (number.is_empty() && total > 0).then(|| Duration::from_secs(total))
}

/// What is due for `object` at `now`, if anything.
///
/// Rechecks run every `recheckInterval` after delivery until a newer file is delivered (it then
/// takes the place of `delivery.file`) or the file is picked up (moved into a sub-directory). A
/// next run that starts, or keeps failing, does not end them: the last delivered file is what the
/// customer has until a newer one arrives. Pruning runs after each delivered file and at least daily, retried no more
/// often than the recheck interval when the server cannot be reached. A suspended object is left
/// alone.
pub fn due_work(now: DateTime<Utc>, object: &ScheduledExport) -> Option<DueWork> {
    if object.spec.suspend || object.metadata.deletion_timestamp.is_some() {
        return None;
    }
    let status = object.status.as_ref()?;
    let delivery = status.delivery.as_ref()?;
    let file = delivery.file.as_ref()?;
    let interval = chrono::TimeDelta::from_std(recheck_interval(&object.spec))
        .unwrap_or(chrono::TimeDelta::minutes(10));

    // Only a name of our own pattern is ever looked for, copied or used as a local path: status is
    // writable by the export's identity, and a crafted value must not reach a file system.
    let ours = parse_export_file_name(object.spec.file_type, file).is_some();
    // After an edit of the destination the file is not looked for in the new place, where it was
    // never delivered (that would copy it there, or take another file of that name for it).
    let same_place = delivery
        .destination
        .as_ref()
        .is_none_or(|place| *place == object.spec.destination.sftp.url());
    let picked_up = delivery.last_check_result == Some(CheckResult::Moved);
    let last_check = delivery.last_check_time.or(delivery.delivered_at);
    let recheck = (ours
        && same_place
        && !picked_up
        && last_check.is_none_or(|checked| now >= checked + interval))
    .then(|| file.clone());

    let retention = status.retention.clone().unwrap_or_default();
    let pruned_since_delivery = match (retention.last_prune_time, delivery.delivered_at) {
        (Some(pruned), Some(delivered)) => pruned >= delivered,
        (Some(_), None) => true,
        (None, _) => false,
    };
    let prune_stale = retention
        .last_prune_time
        .is_none_or(|pruned| now >= pruned + PRUNE_EVERY);
    let retry_allowed = retention
        .last_attempt_time
        .is_none_or(|attempt| now >= attempt + interval);
    let prune = (!pruned_since_delivery || prune_stale) && retry_allowed;

    (recheck.is_some() || prune).then_some(DueWork { recheck, prune })
}

/// A file as a server listing shows it; the SFTP adapter's listing implements this, so the
/// decision stays free of I/O types.
pub trait ListedFile {
    /// Path relative to the export directory (`file.csv`, `archive/2025/file.csv`).
    fn relative(&self) -> &str;
    /// Modification time, Unix seconds, when the server reports it.
    fn modified(&self) -> Option<i64>;
    /// Size in bytes.
    fn size(&self) -> u64;
}

/// What retention may do with a listing: under the export directory (sub-directories included),
/// files named exactly `{fileType}-{YYYYMMDD}T{HHMMSS}Z.csv` for this object's file type, with a
/// UTC instant more than `retention_days` before `now`, are deleted only when this object's record
/// says it delivered that name with that size (`verify`: the caller deletes each only once its
/// sha256 matched too); such files the record does not prove ours are left alone and named
/// (`not_ours`). The files status names as delivered now are never candidates, whatever their
/// name's date (an old `--slot` run, a clock far ahead). Temporary upload files of such names
/// that carry this object's upload tag (`.{name}.partial-{tag}{random}` in the export directory
/// itself) and were left by an upload that died more than a day ago go too (`dead_uploads`).
/// Files below `excluded` (relative directories of other ScheduledExports on the same server)
/// are never looked at.
pub fn files_to_prune<F: ListedFile + Clone>(
    files: &[F],
    object: &ScheduledExport,
    now: DateTime<Utc>,
    excluded: &[String],
) -> PrunePlan<F> {
    let file_type = object.spec.file_type;
    let cutoff = now - chrono::TimeDelta::days(i64::from(object.spec.retention_days));
    let empty = ScheduledExportStatus::default();
    let status = object.status.as_ref().unwrap_or(&empty);
    let current = ownership::current_files(status);
    let tag = ownership::upload_tag(object.metadata.uid.as_deref().unwrap_or_default());
    let mut plan = PrunePlan::default();
    for file in files.iter().filter(|file| {
        !excluded.iter().any(|dir| {
            file.relative()
                .strip_prefix(dir.trim_end_matches('/'))
                .is_some_and(|rest| rest.starts_with('/'))
        })
    }) {
        let (dir, name) = match file.relative().rsplit_once('/') {
            Some((dir, name)) => (Some(dir), name),
            None => (None, file.relative()),
        };
        // A checksum file goes with its data file: past retention with it, and only holding the
        // line the record's sha256 gives (whether or not the data file is still there).
        let (data, is_checksum) = match checksum_data_file(file_type, name) {
            Some(data) => (data, true),
            None => (name, false),
        };
        if let Some(slot) = parse_export_file_name(file_type, data) {
            if slot >= cutoff || current.iter().any(|kept| kept == data) {
                continue;
            }
            let expected =
                ownership::delivered_content(status, data).map(|content| match is_checksum {
                    true => ownership::checksum_file_content(data, &content).1,
                    false => content,
                });
            match expected {
                Some(content) if content.bytes == file.size() => {
                    plan.verify.push((file.clone(), content));
                }
                _ => plan.not_ours.push(file.relative().to_string()),
            }
            continue;
        }
        let dead = dir.is_none()
            && is_partial_of(file_type, name, tag)
            && file.modified().is_some_and(|modified| {
                DateTime::from_timestamp(modified, 0)
                    .is_some_and(|modified| modified < now - STALE_PARTIAL_AGE)
            });
        if dead {
            plan.dead_uploads.push(file.clone());
        }
    }
    plan
}

/// What a prune does with one listing; see [`files_to_prune`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrunePlan<F> {
    /// Old files the record says this object delivered, with what they must hold.
    pub verify: Vec<(F, ownership::Content)>,
    /// Dead temporary uploads of this object.
    pub dead_uploads: Vec<F>,
    /// Old files of this object's name pattern that it cannot prove it delivered (relative paths).
    pub not_ours: Vec<String>,
}

impl<F> Default for PrunePlan<F> {
    fn default() -> Self {
        Self {
            verify: Vec::new(),
            dead_uploads: Vec::new(),
            not_ours: Vec::new(),
        }
    }
}

/// Entries of the record that can go: their file is past retention and was nowhere in a complete
/// listing (the customer took it away), so no prune will ever meet it. Never the current file.
pub fn record_entries_gone<F: ListedFile>(
    files: &[F],
    object: &ScheduledExport,
    now: DateTime<Utc>,
) -> Vec<String> {
    let Some(status) = object.status.as_ref() else {
        return Vec::new();
    };
    let cutoff = now - chrono::TimeDelta::days(i64::from(object.spec.retention_days));
    let current = ownership::current_files(status);
    status
        .delivered_files
        .iter()
        .filter(|entry| {
            parse_export_file_name(object.spec.file_type, &entry.name)
                .is_some_and(|slot| slot < cutoff)
                && !current.contains(&entry.name)
                && !files.iter().any(|file| {
                    file.relative().rsplit('/').next().is_some_and(|listed| {
                        listed == entry.name
                            || checksum_data_file(object.spec.file_type, listed)
                                == Some(entry.name.as_str())
                    })
                })
        })
        .map(|entry| entry.name.clone())
        .collect()
}

/// Whether a listed name is one a prune may act on (an export file name of any type, or the
/// temporary name of an upload): the round lists only those, so memory follows our files, not the
/// directory's other contents.
pub fn prune_may_concern(name: &str) -> bool {
    let final_name = name
        .strip_prefix('.')
        .and_then(|rest| rest.rsplit_once(".partial-"))
        .map_or(name, |(final_name, _)| final_name);
    FileType::ALL
        .into_iter()
        .any(|file_type| is_delivered_name(file_type, final_name))
}

/// A name of ours for this file type: a data file in any format, or the checksum file of one.
fn is_delivered_name(file_type: FileType, name: &str) -> bool {
    parse_export_file_name(file_type, name).is_some()
        || checksum_data_file(file_type, name).is_some()
}

/// `.{export file name}.partial-{tag:08x}{8 hex}`, the temporary name of an upload of the object
/// whose upload tag is `tag` (see `adapters::sftp`).
fn is_partial_of(file_type: FileType, name: &str, tag: u32) -> bool {
    let Some((final_name, random)) = name
        .strip_prefix('.')
        .and_then(|rest| rest.rsplit_once(".partial-"))
    else {
        return false;
    };
    random.len() == 16
        && random.bytes().all(|b| b.is_ascii_hexdigit())
        && random[..8].eq_ignore_ascii_case(&format!("{tag:08x}"))
        && is_delivered_name(file_type, final_name)
}

/// Directories of other objects on the same server, relative to `directory`, when they lie below
/// it: retention of `directory` must not reach into them.
pub fn nested_directories<'a>(
    directory: &str,
    others: impl IntoIterator<Item = &'a str>,
) -> Vec<String> {
    let base = normalize_directory(directory);
    others
        .into_iter()
        .filter_map(|other| {
            let other = normalize_directory(other);
            let rest = if base == "/" {
                other.strip_prefix('/')
            } else {
                other.strip_prefix(base)?.strip_prefix('/')
            }?;
            (!rest.is_empty()).then(|| rest.to_string())
        })
        .collect()
}

/// Status after a check of `file`. `None` when the status has moved on to another file (a new
/// run delivered meanwhile), so a stale result never overwrites a newer delivery.
pub fn after_check(
    current: &ScheduledExportStatus,
    file: &str,
    outcome: &CheckOutcome,
    generation: Option<i64>,
    now: DateTime<Utc>,
) -> Option<ScheduledExportStatus> {
    let mut status = current.clone();
    let delivery = status.delivery.as_mut()?;
    if delivery.file.as_deref() != Some(file) {
        return None;
    }
    delivery.last_check_time = Some(now);
    let (ok, reason, message) = match outcome {
        CheckOutcome::Found { relative } if relative.contains('/') => {
            delivery.last_check_result = Some(CheckResult::Moved);
            delivery.found_at = Some(relative.clone());
            (
                true,
                ConditionReason::PickedUp,
                format!("{file} was moved to {relative}: picked up, no more checks"),
            )
        }
        CheckOutcome::Found { relative } => {
            delivery.last_check_result = Some(CheckResult::Present);
            delivery.found_at = Some(relative.clone());
            (
                true,
                ConditionReason::Present,
                format!("{file} is on the server"),
            )
        }
        CheckOutcome::Recopied => {
            delivery.last_check_result = Some(CheckResult::Recopied);
            delivery.found_at = Some(file.to_string());
            delivery.recopies += 1;
            (
                true,
                ConditionReason::Recopied,
                format!(
                    "{file} was gone and was copied again from the artifact store (copy {})",
                    delivery.recopies
                ),
            )
        }
        // The adapter's reason, so Delivered says HostKeyMismatch or ConnectionRefused.
        CheckOutcome::Unreachable(cause) => {
            delivery.last_check_result = Some(CheckResult::Unreachable);
            (
                false,
                cause.reason,
                format!("cannot check {file}: {cause}; checking again next interval"),
            )
        }
        CheckOutcome::RecopyFailed(cause) => {
            delivery.last_check_result = Some(CheckResult::Missing);
            delivery.found_at = None;
            (
                false,
                ConditionReason::RecopyFailed,
                format!("{file} is gone from the server and could not be copied again: {cause}"),
            )
        }
    };
    status::set_condition(
        &mut status.conditions,
        ConditionUpdate {
            type_: ConditionType::Delivered,
            status: ok,
            reason,
            message,
        },
        generation,
        now,
    );
    Some(status)
}

/// Status after a prune attempt.
pub fn after_prune(
    current: &ScheduledExportStatus,
    outcome: &PruneOutcome,
    retention_days: u32,
    now: DateTime<Utc>,
) -> ScheduledExportStatus {
    let mut status = match outcome {
        PruneOutcome::Pruned { forget, .. } => ownership::forget(current, forget),
        PruneOutcome::Unreachable(_) => current.clone(),
    };
    let previous = status.retention.clone().unwrap_or_default();
    status.retention = Some(match outcome {
        PruneOutcome::Pruned {
            deleted,
            failed,
            not_ours,
            ..
        } => {
            let mut message = match deleted.len() {
                0 => format!("no file of ours older than {retention_days} days"),
                n => format!(
                    "deleted {n} file{} older than {retention_days} days: {}",
                    if n == 1 { "" } else { "s" },
                    summarize(deleted)
                ),
            };
            if !failed.is_empty() {
                message.push_str(&format!("; could not delete {}", summarize(failed)));
            }
            if !not_ours.is_empty() {
                message.push_str(&format!(
                    "; left alone, as this object's record does not prove it delivered them \
                     (another object's, or older than the record): {}",
                    summarize(not_ours)
                ));
            }

            RetentionStatus {
                last_prune_time: Some(now),
                files_deleted: u32::try_from(deleted.len()).unwrap_or(u32::MAX),
                last_attempt_time: Some(now),
                message: Some(message),
            }
        }
        PruneOutcome::Unreachable(Failure { message: cause, .. }) => RetentionStatus {
            last_attempt_time: Some(now),
            message: Some(format!("nothing deleted: {cause}")),
            ..previous
        },
    });
    status
}

/// A list for a status message or Event, bounded so a large first prune keeps them small.
pub fn summarize(names: &[String]) -> String {
    const SHOWN: usize = 5;
    let mut text = names
        .iter()
        .take(SHOWN)
        .cloned()
        .collect::<Vec<_>>()
        .join(", ");
    if names.len() > SHOWN {
        text.push_str(&format!(" and {} more", names.len() - SHOWN));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resource::{DeliveryStatus, LastRun, RunPhase};
    use chrono::TimeZone;

    fn at(day: u32, hour: u32, minute: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 6, day, hour, minute, 0).unwrap()
    }

    const FILE: &str = "interactions-20260601T110000Z.csv";

    fn delivered_object(delivered: DateTime<Utc>) -> ScheduledExport {
        let mut object: ScheduledExport = serde_json::from_value(serde_json::json!({
            "apiVersion": "exports.crm.dev/v1alpha1",
            "kind": "ScheduledExport",
            "metadata": {"name": "daily", "namespace": "univ", "generation": 1, "uid": "uid-daily"},
            "spec": {
                "fileType": "interactions",
                "time": "07:00",
                "source": {"secretRef": {"name": "db"}},
                "destination": {"sftp": {"host": "h", "username": "u", "directory": "/exports",
                    "secretRef": {"name": "sftp"}}}
            }
        }))
        .unwrap();
        object.status = Some(ScheduledExportStatus {
            last_run: Some(LastRun {
                phase: Some(RunPhase::Succeeded),
                file_name: Some(FILE.into()),
                ..LastRun::default()
            }),
            delivery: Some(DeliveryStatus {
                file: Some(FILE.into()),
                delivered_at: Some(delivered),
                last_check_time: Some(delivered),
                last_check_result: Some(CheckResult::Present),
                found_at: Some(FILE.into()),
                recopies: 0,
                destination: None,
                bytes: Some(10),
                sha256: Some("ab".into()),
            }),
            retention: Some(RetentionStatus {
                last_prune_time: Some(delivered),
                last_attempt_time: Some(delivered),
                ..RetentionStatus::default()
            }),
            ..ScheduledExportStatus::default()
        });
        object
    }

    #[derive(Debug, Clone, PartialEq, Eq)]
    struct RemoteFile {
        relative: String,
        modified: Option<i64>,
        size: u64,
    }

    impl ListedFile for RemoteFile {
        fn relative(&self) -> &str {
            &self.relative
        }
        fn modified(&self) -> Option<i64> {
            self.modified
        }
        fn size(&self) -> u64 {
            self.size
        }
    }

    fn remote(relative: &str, modified: Option<DateTime<Utc>>) -> RemoteFile {
        RemoteFile {
            relative: relative.to_string(),
            modified: modified.map(|m| m.timestamp()),
            size: 0,
        }
    }

    #[test]
    fn intervals_read_like_the_admission_rule() {
        assert_eq!(parse_interval("10m"), Some(Duration::from_secs(600)));
        assert_eq!(parse_interval("1h30m"), Some(Duration::from_secs(5400)));
        assert_eq!(parse_interval("90s"), Some(Duration::from_secs(90)));
        assert_eq!(parse_interval("1h0m5s"), Some(Duration::from_secs(3605)));
        for bad in ["", "10", "m", "0m", "10x", "1.5h", "-1m"] {
            assert_eq!(parse_interval(bad), None, "{bad}");
        }
    }

    #[test]
    fn a_recheck_is_due_every_interval_after_delivery() {
        let object = delivered_object(at(1, 11, 0));
        assert_eq!(due_work(at(1, 11, 9), &object), None);
        let due = due_work(at(1, 11, 10), &object).expect("due");
        assert_eq!(due.recheck.as_deref(), Some(FILE));
        assert!(!due.prune, "pruned at delivery already");

        let mut checked = object.clone();
        checked
            .status
            .as_mut()
            .unwrap()
            .delivery
            .as_mut()
            .unwrap()
            .last_check_time = Some(at(1, 11, 10));
        assert_eq!(due_work(at(1, 11, 19), &checked), None);
        assert!(due_work(at(1, 11, 20), &checked).is_some());

        let mut hourly = object.clone();
        hourly.spec.recheck_interval = "1h".into();
        assert_eq!(due_work(at(1, 11, 59), &hourly), None);
        assert!(due_work(at(1, 12, 0), &hourly).is_some());
    }

    #[test]
    fn checks_go_on_while_the_next_run_runs_or_fails_and_stop_when_picked_up_or_suspended() {
        let object = delivered_object(at(1, 11, 0));
        let later = at(1, 12, 0);

        // The next run starts, and fails: the file delivered before is still the customer's.
        let mut next_run = object.clone();
        next_run.status.as_mut().unwrap().last_run = Some(LastRun {
            phase: Some(RunPhase::Pending),
            ..LastRun::default()
        });
        assert_eq!(
            due_work(later, &next_run).and_then(|due| due.recheck),
            Some(FILE.to_string())
        );
        let mut failed_next = object.clone();
        failed_next.status.as_mut().unwrap().last_run = Some(LastRun {
            phase: Some(RunPhase::Failed),
            ..LastRun::default()
        });
        assert_eq!(
            due_work(later, &failed_next).and_then(|due| due.recheck),
            Some(FILE.to_string())
        );

        // A newer file delivered: it is the one checked from then on.
        let newer = "interactions-20260601T120000Z.csv";
        let mut delivered_next = object.clone();
        let delivery = delivered_next
            .status
            .as_mut()
            .unwrap()
            .delivery
            .as_mut()
            .unwrap();
        delivery.file = Some(newer.into());
        delivery.last_check_time = Some(at(1, 11, 30));
        assert_eq!(
            due_work(later, &delivered_next).and_then(|due| due.recheck),
            Some(newer.to_string())
        );

        let mut moved = object.clone();
        moved
            .status
            .as_mut()
            .unwrap()
            .delivery
            .as_mut()
            .unwrap()
            .last_check_result = Some(CheckResult::Moved);
        assert_eq!(due_work(later, &moved), None);

        let mut suspended = object.clone();
        suspended.spec.suspend = true;
        assert_eq!(due_work(later, &suspended), None);

        let mut edited = object.clone();
        edited
            .status
            .as_mut()
            .unwrap()
            .delivery
            .as_mut()
            .unwrap()
            .destination = Some(edited.spec.destination.sftp.url());
        assert!(due_work(later, &edited).unwrap().recheck.is_some());
        edited.spec.destination.sftp.directory = "/exports/crm".into();
        assert_eq!(
            due_work(later, &edited).and_then(|due| due.recheck),
            None,
            "a file is looked for only where it was delivered"
        );

        let mut crafted = object.clone();
        let status = crafted.status.as_mut().unwrap();
        let evil = "../../var/lib/artifacts/other/interactions-20260601T110000Z.csv".to_string();
        status.delivery.as_mut().unwrap().file = Some(evil.clone());
        status.last_run.as_mut().unwrap().file_name = Some(evil);
        assert_eq!(
            due_work(later, &crafted).and_then(|due| due.recheck),
            None,
            "a name not of our pattern is never looked for"
        );

        let mut never = object;
        never.status.as_mut().unwrap().delivery = None;
        assert_eq!(due_work(later, &never), None);
    }

    #[test]
    fn pruning_follows_each_delivery_and_runs_daily_with_bounded_retries() {
        let mut object = delivered_object(at(1, 11, 0));
        object.status.as_mut().unwrap().retention = None;
        let due = due_work(at(1, 11, 0), &object).expect("never pruned: due");
        assert!(due.prune && due.recheck.is_none());

        let delivered = delivered_object(at(1, 11, 0));
        let mut moved = delivered.clone();
        moved
            .status
            .as_mut()
            .unwrap()
            .delivery
            .as_mut()
            .unwrap()
            .last_check_result = Some(CheckResult::Moved);
        assert_eq!(due_work(at(2, 10, 59), &moved), None);
        assert_eq!(
            due_work(at(2, 11, 0), &moved),
            Some(DueWork {
                recheck: None,
                prune: true
            }),
            "at least daily"
        );

        // A failed attempt is retried after one recheck interval, not at every round.
        let mut failed = object.clone();
        failed.status.as_mut().unwrap().retention = Some(RetentionStatus {
            last_attempt_time: Some(at(1, 11, 0)),
            ..RetentionStatus::default()
        });
        failed
            .status
            .as_mut()
            .unwrap()
            .delivery
            .as_mut()
            .unwrap()
            .last_check_result = Some(CheckResult::Moved);
        assert_eq!(due_work(at(1, 11, 5), &failed), None);
        assert!(due_work(at(1, 11, 10), &failed).unwrap().prune);
    }

    fn sized(relative: &str, size: u64, modified: Option<DateTime<Utc>>) -> RemoteFile {
        RemoteFile {
            size,
            ..remote(relative, modified)
        }
    }

    #[test]
    fn retention_deletes_only_old_files_this_object_recorded_and_never_the_current_one() {
        let now = at(30, 12, 0);
        let old = |days: i64| now - chrono::TimeDelta::days(days);
        let name = |file_type: FileType, days: i64| {
            crate::export::file_name::export_file_name(
                file_type,
                crate::export::file_name::FileFormat::default(),
                old(days),
            )
        };
        let mut object = delivered_object(at(1, 11, 0));
        let mut status = object.status.take().unwrap();
        for (file, bytes) in [
            (name(FileType::Interactions, 91), 10),
            (name(FileType::Interactions, 95), 10),
            (name(FileType::Interactions, 89), 10),
            (name(FileType::Interactions, 92), 10),
        ] {
            let content = ownership::Content {
                bytes,
                sha256: "ab".into(),
            };
            status = ownership::record_delivery(&status, &file, &content, old(0));
        }
        // The current file is ancient by its name (an old `--slot` run, or a clock far ahead).
        let current = name(FileType::Interactions, 400);
        status.delivery.as_mut().unwrap().file = Some(current.clone());
        status.last_run.as_mut().unwrap().file_name = Some(current.clone());
        object.status = Some(status);
        let files = vec![
            sized(&name(FileType::Interactions, 91), 10, None),
            sized(&name(FileType::Interactions, 89), 10, None),
            sized(&name(FileType::Proposals, 91), 10, None),
            sized("notes.csv", 10, None),
            sized(
                &format!("{}.bak", name(FileType::Interactions, 91)),
                10,
                None,
            ),
            sized(
                &format!("archive/{}", name(FileType::Interactions, 95)),
                10,
                None,
            ),
            // Same name as a recorded file, other size: a neighbour's.
            sized(&name(FileType::Interactions, 92), 11, None),
            // Our pattern, but never recorded: not provably ours.
            sized(&name(FileType::Interactions, 93), 10, None),
            sized(&current, 10, None),
            sized(
                &format!("other-object/{}", name(FileType::Interactions, 91)),
                10,
                None,
            ),
        ];
        let plan = files_to_prune(&files, &object, now, &["other-object".to_string()]);
        let verify: Vec<String> = plan
            .verify
            .iter()
            .map(|(file, _)| file.relative.clone())
            .collect();
        assert_eq!(
            verify,
            vec![
                name(FileType::Interactions, 91),
                format!("archive/{}", name(FileType::Interactions, 95)),
            ]
        );
        assert_eq!(
            plan.not_ours,
            vec![
                name(FileType::Interactions, 92),
                name(FileType::Interactions, 93),
            ]
        );
        assert!(plan.dead_uploads.is_empty());

        // Recorded, past retention and nowhere on the server: the entry can go.
        let gone = record_entries_gone(&files[1..files.len() - 1], &object, now);
        assert_eq!(gone, vec![name(FileType::Interactions, 91)]);
    }

    #[test]
    fn checksum_files_go_with_their_data_file_and_only_with_the_recorded_line() {
        let now = at(30, 12, 0);
        let name = |days: i64| {
            crate::export::file_name::export_file_name(
                FileType::Interactions,
                crate::export::file_name::FileFormat::default(),
                now - chrono::TimeDelta::days(days),
            )
        };
        let checksum = |days: i64| crate::export::file_name::checksum_file_name(&name(days));
        let mut object = delivered_object(at(1, 11, 0));
        let mut status = object.status.take().unwrap();
        let data = ownership::Content {
            bytes: 10,
            sha256: "ab".repeat(32),
        };
        for days in [91, 92, 10] {
            status = ownership::record_delivery(&status, &name(days), &data, now);
        }
        object.status = Some(status);
        let (_, line) = ownership::checksum_file_content(&name(91), &data);
        let files = vec![
            sized(&name(91), 10, None),
            sized(&checksum(91), line.bytes, None),
            // The data file was taken away; its checksum file is still provably ours.
            sized(&checksum(92), line.bytes, None),
            // Within retention: kept.
            sized(&checksum(10), line.bytes, None),
            // Another size than the recorded line: not ours.
            sized(&checksum(93), line.bytes + 1, None),
        ];
        let plan = files_to_prune(&files, &object, now, &[]);
        let verify: Vec<(String, ownership::Content)> = plan
            .verify
            .iter()
            .map(|(file, content)| (file.relative.clone(), content.clone()))
            .collect();
        assert_eq!(
            verify,
            vec![
                (name(91), data.clone()),
                (checksum(91), line.clone()),
                (
                    checksum(92),
                    ownership::checksum_file_content(&name(92), &data).1
                ),
            ]
        );
        assert_eq!(plan.not_ours, vec![checksum(93)]);
        // An entry stays while its checksum file is still there.
        assert_eq!(
            record_entries_gone(&files[2..3], &object, now),
            vec![name(91)]
        );
        assert!(prune_may_concern(&checksum(91)));
        assert!(!prune_may_concern("notes.csv.sha256"));
    }

    #[test]
    fn dead_uploads_of_this_object_are_removed_and_others_kept() {
        let now = at(30, 12, 0);
        let object = delivered_object(at(1, 11, 0));
        let tag = format!("{:08x}", ownership::upload_tag("uid-daily"));
        let partial = format!(".{FILE}.partial-{tag}89abcdef");
        let files = vec![
            remote(&partial, Some(now - chrono::TimeDelta::hours(25))),
            remote(
                &format!(".interactions-20260630T110000Z.csv.partial-{tag}000000ff"),
                Some(now - chrono::TimeDelta::minutes(5)),
            ),
            // Another object's (or an older version's) dead upload.
            remote(
                &format!(".{FILE}.partial-0123456789abcdef"),
                Some(now - chrono::TimeDelta::days(9)),
            ),
            remote(
                &format!(".notes.csv.partial-{tag}89abcdef"),
                Some(now - chrono::TimeDelta::days(9)),
            ),
            remote(
                &format!(".{FILE}.partial-xyz"),
                Some(now - chrono::TimeDelta::days(9)),
            ),
            remote(
                &format!("archive/{partial}"),
                Some(now - chrono::TimeDelta::days(9)),
            ),
            remote(&format!(".{FILE}.partial-{tag}89abcdee"), None),
        ];
        let pruned: Vec<String> = files_to_prune(&files, &object, now, &[])
            .dead_uploads
            .into_iter()
            .map(|file| file.relative)
            .collect();
        assert_eq!(pruned, vec![partial]);
        assert!(prune_may_concern(FILE) && prune_may_concern(&format!(".{FILE}.partial-x")));
        assert!(!prune_may_concern("notes.csv"));
    }

    #[test]
    fn nested_directories_of_other_objects_are_found() {
        assert_eq!(
            nested_directories(
                "/exports",
                ["/exports/univ-b", "/exports", "/exportsx/a", "/other"]
            ),
            vec!["univ-b".to_string()]
        );
        assert_eq!(
            nested_directories("/", ["/exports/a/", "/"]),
            vec!["exports/a".to_string()]
        );
    }

    #[test]
    fn check_outcomes_set_delivery_and_the_condition() {
        let object = delivered_object(at(1, 11, 0));
        let current = object.status.clone().unwrap();
        let now = at(1, 11, 10);

        let recopied = after_check(&current, FILE, &CheckOutcome::Recopied, Some(1), now).unwrap();
        let delivery = recopied.delivery.as_ref().unwrap();
        assert_eq!(delivery.last_check_result, Some(CheckResult::Recopied));
        assert_eq!(
            (delivery.recopies, delivery.last_check_time),
            (1, Some(now))
        );
        let delivered = recopied
            .conditions
            .iter()
            .find(|c| c.type_ == "Delivered")
            .unwrap();
        assert_eq!(
            (delivered.status.as_str(), delivered.reason.as_str()),
            ("True", "Recopied")
        );

        let moved = after_check(
            &current,
            FILE,
            &CheckOutcome::Found {
                relative: format!("archive/{FILE}"),
            },
            Some(1),
            now,
        )
        .unwrap();
        let delivery = moved.delivery.as_ref().unwrap();
        assert_eq!(delivery.last_check_result, Some(CheckResult::Moved));
        assert_eq!(delivery.found_at, Some(format!("archive/{FILE}")));

        let down = after_check(
            &current,
            FILE,
            &CheckOutcome::Unreachable(Failure::new(
                ConditionReason::ConnectionRefused,
                "connection refused",
            )),
            Some(1),
            now,
        )
        .unwrap();
        let delivered = down
            .conditions
            .iter()
            .find(|c| c.type_ == "Delivered")
            .unwrap();
        assert_eq!(
            (delivered.status.as_str(), delivered.reason.as_str()),
            ("False", "ConnectionRefused"),
            "the adapter's reason says why the server could not be asked"
        );
        assert!(delivered.message.contains("connection refused"));
        assert_eq!(down.delivery.as_ref().unwrap().recopies, 0);

        assert_eq!(
            after_check(
                &current,
                "interactions-other.csv",
                &CheckOutcome::Recopied,
                Some(1),
                now
            ),
            None,
            "a result for a file that is no longer the delivered one is dropped"
        );
    }

    #[test]
    fn prune_outcomes_set_retention() {
        let current = ScheduledExportStatus::default();
        let now = at(2, 11, 0);
        let pruned = after_prune(
            &current,
            &PruneOutcome::Pruned {
                deleted: vec!["a.csv".into(), "archive/b.csv".into()],
                failed: vec![],
                not_ours: vec!["c.csv".into()],
                forget: vec![],
            },
            90,
            now,
        );
        let retention = pruned.retention.as_ref().unwrap();
        assert_eq!(
            (retention.files_deleted, retention.last_prune_time),
            (2, Some(now))
        );
        assert!(
            retention
                .message
                .as_ref()
                .unwrap()
                .contains("archive/b.csv")
        );
        assert!(
            retention
                .message
                .as_ref()
                .unwrap()
                .contains("left alone, as this object's record does not prove it delivered them"),
            "{retention:?}"
        );

        let later = now + chrono::TimeDelta::hours(1);
        let down = after_prune(
            &pruned,
            &PruneOutcome::Unreachable(Failure::new(ConditionReason::Timeout, "timed out")),
            90,
            later,
        );
        let retention = down.retention.as_ref().unwrap();
        assert_eq!(
            retention.last_prune_time,
            Some(now),
            "unchanged: nothing was pruned"
        );
        assert_eq!(retention.last_attempt_time, Some(later));
        assert!(
            retention
                .message
                .as_ref()
                .unwrap()
                .starts_with("nothing deleted: timed out")
        );
    }
}
