//! What the plugin prints, as pure functions of the objects (and the files found) and the clock's
//! `now`: the status table and its JSON, the next run instants, the file listing.

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use serde::Serialize;

use crate::resource::{
    Condition, DeliveryStatus, LastRun, RetentionStatus, RunPhase, ScheduledExport,
};
use crate::schedule::{self, SlotTime};

/// A ScheduledExport as `status` shows it (and `-o json` prints it).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ObjectSummary {
    pub name: String,
    pub namespace: String,
    pub file_type: String,
    pub time: String,
    /// The zone in effect (`spec.timeZone`, else what the operator reported); `None` when the
    /// operator's default applies and it has not said which.
    pub time_zone: Option<String>,
    pub suspended: bool,
    pub next_run: Option<NextRun>,
    pub last_run: Option<LastRun>,
    pub delivery: Option<DeliveryStatus>,
    pub retention: Option<RetentionStatus>,
    pub conditions: Vec<Condition>,
}

/// One due instant, in UTC and in the object's zone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NextRun {
    pub utc: DateTime<Utc>,
    /// RFC 3339 with the zone's offset at that instant.
    pub local: String,
}

/// Why no next instants can be told.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NextRunsError {
    #[error("{name}: {reason}")]
    InvalidSchedule { name: String, reason: String },
    #[error(
        "{name} has no spec.timeZone, so the operator's default zone applies, and the operator has \
         not reported it yet (status.timeZone)"
    )]
    ZoneUnknown { name: String },
}

/// The zone in effect for `object`: its own, else the one the operator reported.
fn effective_zone(object: &ScheduledExport) -> Option<String> {
    object.spec.time_zone.clone().or_else(|| {
        object
            .status
            .as_ref()
            .and_then(|status| status.time_zone.clone())
    })
}

/// The next `count` due instants after `now`. The first is the operator's `status.nextRunTime`
/// when that describes the current spec (it knows about a run already made today, or one waiting
/// for a running Job); the rest, or all of them before the operator has looked, come from the
/// schedule itself. A suspended object lists the instants it would run at once resumed.
pub fn next_runs(
    object: &ScheduledExport,
    now: DateTime<Utc>,
    count: usize,
) -> Result<Vec<NextRun>, NextRunsError> {
    let name = object.metadata.name.clone().unwrap_or_default();
    let invalid = |reason: String| NextRunsError::InvalidSchedule {
        name: name.clone(),
        reason,
    };
    let time: SlotTime = object
        .spec
        .time
        .parse()
        .map_err(|err: schedule::ScheduleError| invalid(err.to_string()))?;
    let zone_name =
        effective_zone(object).ok_or_else(|| NextRunsError::ZoneUnknown { name: name.clone() })?;
    let zone: Tz = schedule::parse_time_zone(&zone_name).map_err(|err| invalid(err.to_string()))?;
    let reported = object.status.as_ref().filter(|status| {
        status.observed_generation.is_some()
            && status.observed_generation == object.metadata.generation
    });
    let first = reported
        .and_then(|status| status.next_run_time)
        .filter(|_| !object.spec.suspend);
    let instants: Vec<DateTime<Utc>> = match first {
        Some(first) => std::iter::once(first)
            .chain(schedule::runs_after(first, time, zone))
            .take(count)
            .collect(),
        None => schedule::runs_after(now, time, zone).take(count).collect(),
    };
    Ok(instants
        .into_iter()
        .map(|utc| NextRun {
            utc,
            local: schedule::format_local(utc, zone),
        })
        .collect())
}

/// The summary of one object at `now`.
pub fn summarize(object: &ScheduledExport, now: DateTime<Utc>) -> ObjectSummary {
    let status = object.status.clone().unwrap_or_default();
    let next_run = if object.spec.suspend {
        None
    } else {
        next_runs(object, now, 1)
            .ok()
            .and_then(|runs| runs.into_iter().next())
    };
    ObjectSummary {
        name: object.metadata.name.clone().unwrap_or_default(),
        namespace: object.metadata.namespace.clone().unwrap_or_default(),
        file_type: object.spec.file_type.to_string(),
        time: object.spec.time.clone(),
        time_zone: effective_zone(object),
        suspended: object.spec.suspend,
        next_run,
        last_run: status.last_run,
        delivery: status.delivery,
        retention: status.retention,
        conditions: status.conditions,
    }
}

/// The status table: one line per object, then one line per condition that is not `True`, with
/// its message (why a run failed, why a file could not be checked).
/// With `with_namespace` (all namespaces), a first column names each object's namespace.
pub fn status_table(
    summaries: &[ObjectSummary],
    now: DateTime<Utc>,
    with_namespace: bool,
) -> String {
    let mut headers = vec![
        "NAME",
        "ZONE",
        "NEXT RUN (UTC)",
        "NEXT RUN (LOCAL)",
        "LAST RUN",
        "FILE",
        "ROWS",
        "BYTES",
        "WHEN",
        "DELIVERY",
        "RETENTION",
        "CONDITIONS",
    ];
    if with_namespace {
        headers.insert(0, "NAMESPACE");
    }
    let rows: Vec<Vec<String>> = summaries
        .iter()
        .map(|summary| {
            let mut row = status_row(summary, now);
            if with_namespace {
                row.insert(0, summary.namespace.clone());
            }
            row
        })
        .collect();
    let mut text = table(&headers, &rows);
    for summary in summaries {
        let name = if with_namespace {
            format!("{}/{}", summary.namespace, summary.name)
        } else {
            summary.name.clone()
        };
        for condition in summary.conditions.iter().filter(|c| c.status != "True") {
            text.push_str(&format!(
                "{name}: {}={} {}: {}\n",
                condition.type_,
                condition.status,
                condition.reason,
                one_line(&condition.message)
            ));
        }
    }
    text
}

fn status_row(summary: &ObjectSummary, now: DateTime<Utc>) -> Vec<String> {
    let dash = || "-".to_string();
    let (next_utc, next_local) = match (&summary.next_run, summary.suspended) {
        (_, true) => ("suspended".to_string(), dash()),
        (Some(next), false) => (
            next.utc.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            next.local.clone(),
        ),
        (None, false) => (dash(), dash()),
    };
    let run = summary.last_run.as_ref();
    let phase = run
        .and_then(|run| run.phase)
        .map_or_else(dash, |phase| phase.to_string());
    let when = run
        .and_then(|run| match run.phase {
            Some(RunPhase::Running | RunPhase::Pending) => run.start_time,
            _ => run.finish_time.or(run.start_time),
        })
        .map_or_else(dash, |at| format!("{} ago", age(now, at)));
    vec![
        summary.name.clone(),
        summary.time_zone.clone().unwrap_or_else(dash),
        next_utc,
        next_local,
        phase,
        run.and_then(|run| run.file_name.clone())
            .unwrap_or_else(dash),
        run.and_then(|run| run.rows)
            .map_or_else(dash, |rows| rows.to_string()),
        run.and_then(|run| run.bytes).map_or_else(dash, size),
        when,
        delivery_cell(summary.delivery.as_ref(), now),
        retention_cell(summary.retention.as_ref(), now),
        conditions_cell(&summary.conditions),
    ]
}

fn delivery_cell(delivery: Option<&DeliveryStatus>, now: DateTime<Utc>) -> String {
    let Some(delivery) = delivery else {
        return "-".to_string();
    };
    let mut cell = match (delivery.last_check_result, delivery.last_check_time) {
        (Some(result), Some(at)) => format!("{result} {} ago", age(now, at)),
        (Some(result), None) => result.to_string(),
        (None, _) if delivery.file.is_some() => "delivered".to_string(),
        (None, _) => "-".to_string(),
    };
    if let Some(found_at) = delivery.found_at.as_deref().filter(|at| at.contains('/')) {
        cell.push_str(&format!(" at {found_at}"));
    }
    if delivery.recopies > 0 {
        cell.push_str(&format!(", {} recopies", delivery.recopies));
    }
    cell
}

fn retention_cell(retention: Option<&RetentionStatus>, now: DateTime<Utc>) -> String {
    let Some(retention) = retention else {
        return "-".to_string();
    };
    match (retention.last_prune_time, retention.last_attempt_time) {
        (Some(pruned), attempt) if attempt.is_none_or(|attempt| attempt <= pruned) => format!(
            "{} deleted {} ago",
            retention.files_deleted,
            age(now, pruned)
        ),
        (_, Some(attempt)) => format!("not pruned, tried {} ago", age(now, attempt)),
        (_, None) => "-".to_string(),
    }
}

fn conditions_cell(conditions: &[Condition]) -> String {
    if conditions.is_empty() {
        return "-".to_string();
    }
    conditions
        .iter()
        .map(|c| format!("{}={}/{}", c.type_, c.status, c.reason))
        .collect::<Vec<_>>()
        .join(",")
}

/// `next` output: one `UTC local` line per instant, as `scheduled-exports next` prints them.
pub fn next_lines(runs: &[NextRun]) -> String {
    runs.iter()
        .map(|run| {
            format!(
                "{} {}\n",
                run.utc.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                run.local
            )
        })
        .collect()
}

/// Where a file of the object was found below its export directory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase", tag = "kind", content = "directory")]
pub enum Location {
    /// Directly in the export directory: not picked up yet.
    InPlace,
    /// In this sub-directory (relative, with a trailing `/`): picked up by the customer.
    Moved(String),
}

/// One export file on the server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FileEntry {
    pub name: String,
    /// Relative to the export directory.
    pub path: String,
    pub bytes: u64,
    pub modified: Option<DateTime<Utc>>,
    pub location: Location,
    /// In `status.deliveredFiles` with this size: delivered by this object, so retention prunes it.
    pub recorded: bool,
}

/// A file found at `relative` (below the export directory), with its size and modification time.
pub struct FoundFile<'a> {
    pub relative: &'a str,
    pub bytes: u64,
    pub modified: Option<i64>,
}

/// The object's files among those found: only names of its file type's pattern, by path.
pub fn file_entries(object: &ScheduledExport, found: &[FoundFile<'_>]) -> Vec<FileEntry> {
    let delivered = object
        .status
        .as_ref()
        .map(|status| status.delivered_files.as_slice())
        .unwrap_or_default();
    let mut entries: Vec<FileEntry> = found
        .iter()
        .filter_map(|file| {
            let (directory, name) = match file.relative.rsplit_once('/') {
                Some((directory, name)) => (Some(directory), name),
                None => (None, file.relative),
            };
            let slot =
                crate::export::file_name::parse_export_file_name(object.spec.file_type, name)?;
            Some(FileEntry {
                name: name.to_string(),
                path: file.relative.to_string(),
                bytes: file.bytes,
                modified: file
                    .modified
                    .and_then(|seconds| DateTime::from_timestamp(seconds, 0))
                    .or(Some(slot)),
                location: match directory {
                    None => Location::InPlace,
                    Some(directory) => Location::Moved(format!("{directory}/")),
                },
                recorded: delivered
                    .iter()
                    .any(|known| known.name == name && known.bytes == file.bytes),
            })
        })
        .collect();
    entries.sort_by(|a, b| a.path.cmp(&b.path));
    entries
}

/// The file listing: name, size, age, where it is, and whether this object recorded it.
pub fn files_table(entries: &[FileEntry], now: DateTime<Utc>) -> String {
    let rows: Vec<Vec<String>> = entries
        .iter()
        .map(|entry| {
            vec![
                entry.name.clone(),
                size(entry.bytes),
                entry
                    .modified
                    .map_or_else(|| "-".to_string(), |at| age(now, at)),
                match &entry.location {
                    Location::InPlace => "in place".to_string(),
                    Location::Moved(directory) => format!("moved to {directory}"),
                },
                if entry.recorded { "yes" } else { "no" }.to_string(),
            ]
        })
        .collect();
    table(&["NAME", "SIZE", "AGE", "WHERE", "RECORDED"], &rows)
}

/// Left-aligned columns, two spaces apart, as kubectl prints them.
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let mut text = String::new();
        for (index, (cell, width)) in cells.iter().zip(&widths).enumerate() {
            if index + 1 == cells.len() {
                text.push_str(cell);
            } else {
                text.push_str(&format!("{cell:<width$}  "));
            }
        }
        text.trim_end().to_string() + "\n"
    };
    let mut text = line(headers.to_vec());
    for row in rows {
        text.push_str(&line(row.iter().map(String::as_str).collect()));
    }
    text
}

/// How long ago `then` was, in the largest fitting unit: `45s`, `12m`, `5h`, `3d`.
pub fn age(now: DateTime<Utc>, then: DateTime<Utc>) -> String {
    let seconds = (now - then).num_seconds().max(0);
    match seconds {
        0..120 => format!("{seconds}s"),
        120..7_200 => format!("{}m", seconds / 60),
        7_200..172_800 => format!("{}h", seconds / 3_600),
        _ => format!("{}d", seconds / 86_400),
    }
}

/// A size for people, as progress lines show it.
pub fn size(bytes: u64) -> String {
    crate::progress::human_bytes(bytes)
}

fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests;
