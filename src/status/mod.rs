//! Pure status computation: conditions that keep their transition time while unchanged, and the
//! status an export run writes for its outcome. No I/O here, so every rule is unit-tested.

pub mod ownership;
pub mod patch;

use chrono::{DateTime, Utc};

use crate::resource::{
    CheckResult, Condition, ConditionReason, ConditionType, DeliveryStatus, LastRun, RunPhase,
    RunRecord, ScheduledExportStatus, WatermarkSource,
};

/// The desired state of one condition; `set_condition` adds the bookkeeping.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConditionUpdate {
    pub type_: ConditionType,
    pub status: bool,
    pub reason: ConditionReason,
    pub message: String,
}

/// The condition of `type_`, if the status has one.
pub fn condition(conditions: &[Condition], type_: ConditionType) -> Option<&Condition> {
    conditions.iter().find(|c| c.type_ == type_.as_str())
}

/// Sets a condition, keeping `lastTransitionTime` when the status did not change, so a status
/// rewritten with the same truth does not look like a new event.
pub fn set_condition(
    conditions: &mut Vec<Condition>,
    update: ConditionUpdate,
    generation: Option<i64>,
    now: DateTime<Utc>,
) {
    let status = if update.status { "True" } else { "False" }.to_string();
    let transition = conditions
        .iter()
        .find(|existing| existing.type_ == update.type_.as_str())
        .filter(|existing| existing.status == status)
        .map_or(now, |existing| existing.last_transition_time);
    let condition = Condition {
        type_: update.type_.to_string(),
        status,
        reason: update.reason.to_string(),
        message: update.message,
        last_transition_time: transition,
        observed_generation: generation,
    };
    match conditions.iter_mut().find(|c| c.type_ == condition.type_) {
        Some(existing) => *existing = condition,
        None => conditions.push(condition),
    }
}

/// Most runs `status.history` keeps.
pub const HISTORY_LIMIT: usize = 10;

/// Longest failure message a history entry keeps, in characters: ten entries stay small next to
/// the object's size limit, and the full message is in `lastRun.error` and the Events.
pub const HISTORY_MESSAGE_LIMIT: usize = 512;

/// Records the run `status.lastRun` describes (it has just ended) as the newest entry of
/// `status.history`. An entry of the same slot and Job (an earlier Pod of a retried Job) is
/// replaced; entries stay newest first by slot, and at most [`HISTORY_LIMIT`].
fn record_history(status: &mut ScheduledExportStatus, reason: Option<ConditionReason>) {
    let Some(run) = status.last_run.as_ref() else {
        return;
    };
    let entry = RunRecord {
        slot: run.slot,
        job_name: run.job_name.clone(),
        phase: run.phase,
        finish_time: run.finish_time,
        file_name: run.file_name.clone(),
        rows: run.rows,
        bytes: run.bytes,
        sha256: run.sha256.clone(),
        every_row: run.every_row,
        window_start: run.window_start.clone(),
        window_end: run.window_end.clone(),
        reason: reason.map(|reason| reason.to_string()),
        message: run.error.as_deref().map(|message| {
            match message.char_indices().nth(HISTORY_MESSAGE_LIMIT) {
                Some((cut, _)) => format!("{}…", &message[..cut]),
                None => message.to_string(),
            }
        }),
    };
    status
        .history
        .retain(|kept| (kept.slot, &kept.job_name) != (entry.slot, &entry.job_name));
    status.history.insert(0, entry);
    // Stable: entries of one slot keep the order they were recorded in.
    status
        .history
        .sort_by_key(|entry| std::cmp::Reverse(entry.slot));
    status.history.truncate(HISTORY_LIMIT);
}

/// What a successful export produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveredRun {
    pub slot: DateTime<Utc>,
    pub job_name: Option<String>,
    pub started: DateTime<Utc>,
    pub finished: DateTime<Utc>,
    pub file_name: String,
    pub rows: u64,
    pub bytes: u64,
    pub sha256: String,
    pub watermark: String,
    /// The watermark the window started after; `None` when the file holds every row.
    pub window_start: Option<String>,
    /// The database the watermark was taken in.
    pub watermark_source: WatermarkSource,
    /// Set when the file holds every row although a watermark was stored: the reason
    /// (`SourceChanged` or `SourceRewound`) and why, for the Exported condition.
    pub full_export: Option<(ConditionReason, String)>,
    /// `sftp://user@host:port/directory` of the delivery (`SftpDestination::url`).
    pub destination: String,
}

/// Status after a run started: `lastRun` says Running; nothing else moves.
pub fn run_started(
    current: &ScheduledExportStatus,
    slot: DateTime<Utc>,
    job_name: Option<String>,
    now: DateTime<Utc>,
) -> ScheduledExportStatus {
    ScheduledExportStatus {
        last_run: Some(LastRun {
            slot: Some(slot),
            job_name,
            phase: Some(RunPhase::Running),
            start_time: Some(now),
            ..LastRun::default()
        }),
        ..current.clone()
    }
}

/// Status after a delivered run: the watermark advances to the new window's end, and the
/// file becomes the one the operator rechecks.
pub fn run_delivered(
    current: &ScheduledExportStatus,
    run: &DeliveredRun,
    generation: Option<i64>,
) -> ScheduledExportStatus {
    let mut status = current.clone();
    status.watermark = Some(run.watermark.clone());
    status.watermark_source = Some(run.watermark_source.clone());
    status.last_run = Some(LastRun {
        slot: Some(run.slot),
        job_name: run.job_name.clone(),
        phase: Some(RunPhase::Succeeded),
        start_time: Some(run.started),
        finish_time: Some(run.finished),
        file_name: Some(run.file_name.clone()),
        rows: Some(run.rows),
        bytes: Some(run.bytes),
        sha256: Some(run.sha256.clone()),
        error: None,
        every_row: Some(run.window_start.is_none()),
        window_start: run.window_start.clone(),
        window_end: Some(run.watermark.clone()),
    });
    record_history(&mut status, None);
    status.delivery = Some(DeliveryStatus {
        file: Some(run.file_name.clone()),
        delivered_at: Some(run.finished),
        destination: Some(run.destination.clone()),
        last_check_time: Some(run.finished),
        last_check_result: Some(CheckResult::Present),
        found_at: Some(run.file_name.clone()),
        recopies: 0,
        bytes: Some(run.bytes),
        sha256: Some(run.sha256.clone()),
    });
    let rows = match run.rows {
        1 => "1 row".to_string(),
        n => format!("{n} rows"),
    };
    set_condition(
        &mut status.conditions,
        ConditionUpdate {
            type_: ConditionType::Exported,
            status: true,
            reason: run
                .full_export
                .as_ref()
                .map_or(ConditionReason::Exported, |(reason, _)| *reason),
            message: match &run.full_export {
                None => format!("{rows} exported to {}", run.file_name),
                Some((_, cause)) => {
                    format!(
                        "{rows} exported to {}: every row, because {cause}",
                        run.file_name
                    )
                }
            },
        },
        generation,
        run.finished,
    );
    set_condition(
        &mut status.conditions,
        ConditionUpdate {
            type_: ConditionType::Delivered,
            status: true,
            reason: ConditionReason::Delivered,
            message: format!("{} delivered ({} bytes)", run.file_name, run.bytes),
        },
        generation,
        run.finished,
    );
    status
}

/// Status after a failed run: the watermark and the last delivered file stay as they were, so the
/// next run covers the missed rows too. `reason` is CamelCase; `message` must hold no secret.
pub fn run_failed(
    current: &ScheduledExportStatus,
    reason: ConditionReason,
    message: &str,
    generation: Option<i64>,
    now: DateTime<Utc>,
) -> ScheduledExportStatus {
    let mut status = current.clone();
    let previous = current.last_run.clone().unwrap_or_default();
    status.last_run = Some(LastRun {
        phase: Some(RunPhase::Failed),
        finish_time: Some(now),
        file_name: None,
        rows: None,
        bytes: None,
        sha256: None,
        error: Some(message.to_string()),
        every_row: None,
        window_start: None,
        window_end: None,
        ..previous
    });
    record_history(&mut status, Some(reason));
    set_condition(
        &mut status.conditions,
        ConditionUpdate {
            type_: ConditionType::Exported,
            status: false,
            reason,
            message: message.to_string(),
        },
        generation,
        now,
    );
    status
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{Datelike, TimeZone};

    fn at(hour: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 30, hour, 0, 0).unwrap()
    }

    fn delivered(watermark: &str, finished: DateTime<Utc>) -> DeliveredRun {
        DeliveredRun {
            slot: at(7),
            job_name: Some("job".into()),
            started: at(7),
            finished,
            file_name: "interactions-20261130T070000Z.csv".into(),
            rows: 1,
            bytes: 10,
            sha256: "ab".into(),
            watermark: watermark.into(),
            window_start: Some("5:5:".into()),
            watermark_source: WatermarkSource {
                system_identifier: Some("7".into()),
                database: Some("crm".into()),
                database_oid: Some(16384),
            },
            full_export: None,
            destination: "sftp://u@h:22/exports".into(),
        }
    }

    #[test]
    fn transition_time_is_kept_while_the_status_is_unchanged() {
        let mut conditions = Vec::new();
        let update = |message: &str| ConditionUpdate {
            type_: ConditionType::Ready,
            status: true,
            reason: ConditionReason::Scheduled,
            message: message.into(),
        };
        set_condition(&mut conditions, update("a"), Some(1), at(1));
        set_condition(&mut conditions, update("b"), Some(2), at(2));
        assert_eq!(conditions.len(), 1);
        assert_eq!(conditions[0].last_transition_time, at(1));
        assert_eq!(conditions[0].message, "b");
        assert_eq!(conditions[0].observed_generation, Some(2));

        let failed = ConditionUpdate {
            status: false,
            ..update("c")
        };
        set_condition(&mut conditions, failed, Some(2), at(3));
        assert_eq!(conditions[0].last_transition_time, at(3));
        assert_eq!(conditions[0].status, "False");
    }

    #[test]
    fn delivery_advances_the_watermark_and_failure_keeps_it() {
        let first = run_delivered(
            &ScheduledExportStatus::default(),
            &delivered("10:20:", at(8)),
            Some(1),
        );
        assert_eq!(first.watermark.as_deref(), Some("10:20:"));
        assert_eq!(
            first.last_run.as_ref().and_then(|r| r.phase),
            Some(RunPhase::Succeeded)
        );
        assert_eq!(
            first.delivery.as_ref().and_then(|d| d.file.as_deref()),
            Some("interactions-20261130T070000Z.csv")
        );

        assert_eq!(
            first.watermark_source.as_ref().and_then(|s| s.database_oid),
            Some(16384),
            "the watermark names its database"
        );

        let started = run_started(&first, at(9), Some("job2".into()), at(9));
        assert_eq!(started.watermark, first.watermark);
        assert_eq!(started.watermark_source, first.watermark_source);
        assert_eq!(started.delivery, first.delivery);
        let failed = run_failed(
            &started,
            ConditionReason::DatabaseFailed,
            "connection refused",
            Some(1),
            at(10),
        );
        assert_eq!(
            failed.watermark.as_deref(),
            Some("10:20:"),
            "a failed run never advances the watermark"
        );
        assert_eq!(
            failed.delivery, first.delivery,
            "the last delivered file stays the one to recheck"
        );
        let last = failed.last_run.expect("last run");
        assert_eq!(last.phase, Some(RunPhase::Failed));
        assert_eq!(last.slot, Some(at(9)));
        assert_eq!(last.error.as_deref(), Some("connection refused"));
        let exported = failed
            .conditions
            .iter()
            .find(|c| c.type_ == "Exported")
            .expect("Exported");
        assert_eq!(
            (exported.status.as_str(), exported.reason.as_str()),
            ("False", "DatabaseFailed")
        );
        let delivered = failed
            .conditions
            .iter()
            .find(|c| c.type_ == "Delivered")
            .expect("Delivered");
        assert_eq!(
            delivered.status, "True",
            "the previous file is still delivered"
        );
    }

    #[test]
    fn history_keeps_the_last_ten_runs_newest_first_and_one_entry_per_job() {
        let mut status = ScheduledExportStatus::default();
        for day in 1..=12u32 {
            let slot = Utc.with_ymd_and_hms(2026, 11, day, 12, 0, 0).unwrap();
            let job = format!("daily-202611{day:02}1200");
            status = run_started(&status, slot, Some(job.clone()), slot);
            if day % 4 == 0 || day == 7 {
                status = run_failed(
                    &status,
                    ConditionReason::AuthenticationFailed,
                    &"the server refused the key ".repeat(40),
                    Some(1),
                    slot,
                );
            }
            // A failed first Pod of the Job, then its retry delivering, is one entry.
            let run = DeliveredRun {
                slot,
                job_name: Some(job),
                file_name: format!("interactions-202611{day:02}T120000Z.csv"),
                rows: u64::from(day),
                window_start: (day > 1).then(|| format!("{day}:{day}:")),
                ..delivered(&format!("{}:{}:", day + 1, day + 1), slot)
            };
            if day != 7 {
                status = run_delivered(&status, &run, Some(1));
            }
        }
        assert_eq!(status.history.len(), HISTORY_LIMIT, "bounded");
        let slots: Vec<u32> = status
            .history
            .iter()
            .map(|entry| entry.slot.expect("slot").day())
            .collect();
        assert_eq!(slots, [12, 11, 10, 9, 8, 7, 6, 5, 4, 3], "newest first");
        let newest = &status.history[0];
        assert_eq!(
            newest.phase,
            Some(RunPhase::Succeeded),
            "the retry replaced the failure"
        );
        assert_eq!(
            (newest.rows, newest.file_name.as_deref()),
            (Some(12), Some("interactions-20261112T120000Z.csv"))
        );
        assert_eq!(
            (newest.window_start.as_deref(), newest.window_end.as_deref()),
            (Some("12:12:"), Some("13:13:"))
        );
        assert_eq!(
            (newest.reason.as_deref(), newest.message.as_deref()),
            (None, None)
        );
        let failed = &status.history[5];
        assert_eq!(failed.job_name.as_deref(), Some("daily-202611071200"));
        assert_eq!(failed.phase, Some(RunPhase::Failed));
        assert_eq!(failed.reason.as_deref(), Some("AuthenticationFailed"));
        let message = failed.message.as_deref().expect("message");
        assert_eq!(
            message.chars().count(),
            HISTORY_MESSAGE_LIMIT + 1,
            "cut, with an ellipsis"
        );
        assert!(message.ends_with('…'));
        assert_eq!((failed.file_name.as_ref(), failed.rows), (None, None));
    }

    #[test]
    fn history_round_trips_and_drops_empty_fields() {
        let status = run_delivered(
            &ScheduledExportStatus::default(),
            &DeliveredRun {
                window_start: None,
                ..delivered("10:20:", at(8))
            },
            Some(1),
        );
        let json = serde_json::to_value(&status).expect("serialize");
        let entry = &json["history"][0];
        assert_eq!(entry["everyRow"], true);
        assert_eq!(entry["windowEnd"], "10:20:");
        assert!(entry.get("windowStart").is_none() && entry.get("reason").is_none());
        let back: ScheduledExportStatus = serde_json::from_value(json).expect("parse");
        assert_eq!(back, status);
    }

    #[test]
    fn a_full_export_says_why_in_the_exported_condition() {
        let run = DeliveredRun {
            full_export: Some((
                ConditionReason::SourceChanged,
                "database \"crm\" was dropped and created again".into(),
            )),
            ..delivered("10:20:", at(8))
        };
        let status = run_delivered(&ScheduledExportStatus::default(), &run, Some(1));
        let exported = condition(&status.conditions, ConditionType::Exported).expect("Exported");
        assert_eq!(
            (exported.status.as_str(), exported.reason.as_str()),
            ("True", "SourceChanged")
        );
        assert!(
            exported.message.ends_with(
                "exported to interactions-20261130T070000Z.csv: every row, because database \"crm\" \
                 was dropped and created again"
            ),
            "{}",
            exported.message
        );
    }
}
