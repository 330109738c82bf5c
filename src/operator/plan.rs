//! The scheduling decision, as a pure function of the clock, the object and its Jobs: which run
//! (if any) to start now, what the controller's part of the status says, and when to look again.
//! The reconciler only carries the decision out, so every scheduling rule (docs/design.md, "When runs happen") is unit-tested
//! here without an API server.

use chrono::{DateTime, SubsecRound, Utc};
use chrono_tz::Tz;
use k8s_openapi::api::batch::v1::Job;

use crate::operator::job::{JobState, RunKind, job_run_kind, job_settled, job_slot, job_state};
use crate::resource::{
    ActiveSchedule, ConditionReason, ConditionType, FULL_EXPORT_ANNOTATION, LastRun,
    RUN_NOW_ANNOTATION, RunPhase, ScheduledExport, ScheduledExportStatus,
};
use crate::schedule::{self, SlotTime};
use crate::status::{self, ConditionUpdate};

/// A run to start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunToStart {
    pub slot: DateTime<Utc>,
    pub kind: RunKind,
    /// Slots that passed without a run (operator down, or a run that outlasted a day).
    pub missed_slots: u32,
}

/// What the reconciler should do.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    pub start: Option<RunToStart>,
    /// The controller-owned part of the status; merged into the current status at write time.
    pub schedule_status: ScheduleStatus,
    /// When to reconcile again if nothing changes before.
    pub requeue_after: std::time::Duration,
}

/// The status fields the controller owns (the export owns watermark, lastRun details and delivery).
#[derive(Debug, Clone, PartialEq)]
pub struct ScheduleStatus {
    pub observed_generation: Option<i64>,
    pub time_zone: String,
    pub schedule: Option<ActiveSchedule>,
    pub next_run_time: Option<DateTime<Utc>>,
    pub next_run_local: Option<String>,
    pub last_schedule_time: Option<DateTime<Utc>>,
    pub last_run_now_token: Option<String>,
    pub last_full_export_token: Option<String>,
    pub ready: (bool, ConditionReason, String),
}

/// Longest sleep between reconciles of an idle object; watches wake it earlier on any change, and
/// a run due sooner wakes it at the run.
pub const MAX_REQUEUE: std::time::Duration = std::time::Duration::from_secs(6 * 3600);

pub fn plan(
    now: DateTime<Utc>,
    object: &ScheduledExport,
    jobs: &[Job],
    default_zone: Tz,
    // Set when the clock can jump (a test's): look again this often instead of at the next run.
    reconcile_poll: Option<std::time::Duration>,
) -> Plan {
    let now = now.trunc_subsecs(0);
    let status = object.status.clone().unwrap_or_default();
    let zone_name = object
        .spec
        .time_zone
        .clone()
        .unwrap_or_else(|| default_zone.name().to_string());
    let parsed = object
        .spec
        .time
        .parse::<SlotTime>()
        .and_then(|time| schedule::parse_time_zone(&zone_name).map(|zone| (time, zone)));
    let (time, zone) = match parsed {
        Ok(parsed) => parsed,
        // Admission refuses these; an object stored before a CRD upgrade can still carry one.
        Err(err) => {
            return Plan {
                start: None,
                schedule_status: ScheduleStatus {
                    observed_generation: object.metadata.generation,
                    time_zone: zone_name,
                    schedule: status.schedule.clone(),
                    next_run_time: None,
                    next_run_local: None,
                    last_schedule_time: status.last_schedule_time,
                    last_run_now_token: status.last_run_now_token.clone(),
                    last_full_export_token: status.last_full_export_token.clone(),
                    ready: (false, ConditionReason::InvalidSchedule, err.to_string()),
                },
                requeue_after: MAX_REQUEUE,
            };
        }
    };

    let active = ActiveSchedule {
        time: time.to_string(),
        time_zone: zone_name.clone(),
        suspended: object.spec.suspend,
        since: now,
    };
    let schedule = match &status.schedule {
        Some(current) if same_schedule(current, &active) => current.clone(),
        _ => active,
    };

    // Busy until the Job controller says every pod has ended, so two exports never overlap.
    let running = jobs.iter().find(|job| !job_settled(job));
    let latest_scheduled_job = jobs
        .iter()
        .filter(|job| job_run_kind(job) == Some(RunKind::Scheduled))
        .filter_map(job_slot)
        .max();
    // A lost status write must not let a slot run twice: the Jobs themselves also say what ran.
    let anchor = [
        Some(schedule.since),
        status.last_schedule_time,
        latest_scheduled_job,
    ]
    .into_iter()
    .flatten()
    .max()
    .unwrap_or(schedule.since);
    let due = schedule::latest_run_at_or_before(now, time, zone);
    // One scheduled run per local day: after an edit of `time` later on a day that already ran,
    // the next run is tomorrow's.
    let local_day = |instant: DateTime<Utc>| instant.with_timezone(&zone).date_naive();
    let ran_on = status
        .last_schedule_time
        .max(latest_scheduled_job)
        .map(local_day);
    let pending = !schedule.suspended && due > anchor && Some(local_day(due)) != ran_on;

    let run_now = Token::of(
        object,
        jobs,
        RUN_NOW_ANNOTATION,
        status.last_run_now_token.as_deref(),
        |token| RunKind::RunNow { token },
    );
    let full_export = Token::of(
        object,
        jobs,
        FULL_EXPORT_ANNOTATION,
        status.last_full_export_token.as_deref(),
        |token| RunKind::FullExport { token },
    );

    let mut last_schedule_time = status.last_schedule_time.max(latest_scheduled_job);
    // A token whose Job exists is done even if recording it in status was lost.
    let mut last_run_now_token = run_now.recorded(status.last_run_now_token.as_deref());
    let mut last_full_export_token = full_export.recorded(status.last_full_export_token.as_deref());
    // A due slot goes before a new token: the token's file is named after a later instant, and
    // files of one object must be delivered in name order. The token waits until the slot's Job
    // has settled. Of two new tokens the full export goes first, so the run-now after it delivers
    // only what changed since.
    let start = match (running, &full_export.new, &run_now.new) {
        (Some(_), _, _) => None,
        (None, _, _) if pending => {
            last_schedule_time = Some(due);
            Some(RunToStart {
                slot: due,
                kind: RunKind::Scheduled,
                missed_slots: missed_between(anchor, due, time, zone),
            })
        }
        (None, Some(token), _) => {
            last_full_export_token = Some(token.clone());
            Some(RunToStart {
                slot: now,
                kind: RunKind::FullExport {
                    token: token.clone(),
                },
                missed_slots: 0,
            })
        }
        (None, None, Some(token)) => {
            last_run_now_token = Some(token.clone());
            Some(RunToStart {
                slot: now,
                kind: RunKind::RunNow {
                    token: token.clone(),
                },
                missed_slots: 0,
            })
        }
        (None, None, None) => None,
    };

    // A due slot that waits for a running export is still the next run.
    let next_run = if schedule.suspended {
        None
    } else if pending && start.is_none() {
        Some(due)
    } else {
        let ran_on = last_schedule_time.map(local_day);
        schedule::runs_after(now, time, zone)
            .take(3)
            .find(|run| Some(local_day(*run)) != ran_on)
    };
    let ready = match (schedule.suspended, running, next_run) {
        (true, _, _) => (
            true,
            ConditionReason::Suspended,
            "suspended: no run starts until spec.suspend is false".to_string(),
        ),
        (false, Some(job), Some(next)) if next <= now => (
            true,
            ConditionReason::WaitingForRun,
            format!(
                "the run due at {} waits for Job {} to finish",
                schedule::format_local(next, zone),
                job.metadata.name.as_deref().unwrap_or_default()
            ),
        ),
        (false, _, Some(next)) => (
            true,
            ConditionReason::Scheduled,
            format!("next run at {}", schedule::format_local(next, zone)),
        ),
        (false, _, None) => (true, ConditionReason::Scheduled, String::new()),
    };
    let requeue_after = reconcile_poll.unwrap_or_else(|| {
        next_run
            .filter(|next| *next > now)
            .and_then(|next| (next - now).to_std().ok())
            .map_or(MAX_REQUEUE, |wait| wait.min(MAX_REQUEUE))
    });

    Plan {
        start,
        schedule_status: ScheduleStatus {
            observed_generation: object.metadata.generation,
            time_zone: zone_name,
            schedule: Some(schedule),
            next_run_time: next_run,
            next_run_local: next_run.map(|next| schedule::format_local(next, zone)),
            last_schedule_time,
            last_run_now_token,
            last_full_export_token,
            ready,
        },
        requeue_after,
    }
}

/// The token of one annotation (run-now or full-export) and whether it still has to run.
struct Token {
    /// The annotation's value, trimmed; `None` when absent or empty.
    current: Option<String>,
    /// Whether `current` has run: it is the recorded token, or a Job of its kind carries it.
    done: bool,
    /// `current` when it has not run yet.
    new: Option<String>,
}

impl Token {
    fn of(
        object: &ScheduledExport,
        jobs: &[Job],
        annotation: &str,
        recorded: Option<&str>,
        kind: impl Fn(String) -> RunKind,
    ) -> Token {
        let current = object
            .metadata
            .annotations
            .as_ref()
            .and_then(|annotations| annotations.get(annotation))
            .map(|token| token.trim().to_string())
            .filter(|token| !token.is_empty());
        let done = current.as_ref().is_some_and(|token| {
            recorded == Some(token.as_str())
                || jobs
                    .iter()
                    .any(|job| job_run_kind(job) == Some(kind(token.clone())))
        });
        let new = current.clone().filter(|_| !done);
        Token { current, done, new }
    }

    /// The token to record in status: the current one once it has run, else what was recorded.
    fn recorded(&self, recorded: Option<&str>) -> Option<String> {
        match &self.current {
            Some(token) if self.done => Some(token.clone()),
            _ => recorded.map(str::to_string),
        }
    }
}

fn same_schedule(a: &ActiveSchedule, b: &ActiveSchedule) -> bool {
    (a.time.as_str(), a.time_zone.as_str(), a.suspended)
        == (b.time.as_str(), b.time_zone.as_str(), b.suspended)
}

/// Due instants strictly between `after` and `due` (both excluded), bounded to keep this cheap.
fn missed_between(after: DateTime<Utc>, due: DateTime<Utc>, time: SlotTime, zone: Tz) -> u32 {
    let missed = schedule::runs_after(after, time, zone)
        .take_while(|slot| *slot < due)
        .take(10_000)
        .count();
    u32::try_from(missed).unwrap_or(u32::MAX)
}

/// Merges the controller's fields and what the Jobs say into the current status. Applied to the
/// status as read just before writing, so the export's own writes are never lost.
pub fn merge_status(
    current: &ScheduledExportStatus,
    schedule: &ScheduleStatus,
    jobs: &[Job],
    now: DateTime<Utc>,
) -> ScheduledExportStatus {
    let mut merged = ScheduledExportStatus {
        observed_generation: schedule.observed_generation,
        time_zone: Some(schedule.time_zone.clone()),
        schedule: schedule.schedule.clone(),
        next_run_time: schedule.next_run_time,
        next_run_local: schedule.next_run_local.clone(),
        last_schedule_time: schedule.last_schedule_time.max(current.last_schedule_time),
        last_run_now_token: schedule
            .last_run_now_token
            .clone()
            .or_else(|| current.last_run_now_token.clone()),
        last_full_export_token: schedule
            .last_full_export_token
            .clone()
            .or_else(|| current.last_full_export_token.clone()),
        ..current.clone()
    };
    observe_latest_job(&mut merged, jobs, schedule.observed_generation, now);
    let (ready, reason, message) = &schedule.ready;
    status::set_condition(
        &mut merged.conditions,
        ConditionUpdate {
            type_: ConditionType::Ready,
            status: *ready,
            reason: *reason,
            message: message.clone(),
        },
        schedule.observed_generation,
        // Keep an unchanged condition byte-identical so a status write is skipped.
        now,
    );
    merged
}

/// `lastRun` follows the newest Job until the export records its own outcome; a Job that failed
/// without the export saying so (deadline, a Pod that never started) is recorded as failed.
fn observe_latest_job(
    status: &mut ScheduledExportStatus,
    jobs: &[Job],
    generation: Option<i64>,
    now: DateTime<Utc>,
) {
    let Some((job, slot)) = jobs
        .iter()
        .filter_map(|job| job_slot(job).map(|slot| (job, slot)))
        .max_by_key(|(job, slot)| (*slot, job.metadata.creation_timestamp.clone().map(|t| t.0)))
    else {
        return;
    };
    let job_name = job.metadata.name.clone();
    let recorded = status.last_run.clone().unwrap_or_default();
    let same_run = recorded.slot == Some(slot)
        && recorded
            .job_name
            .as_ref()
            .is_none_or(|name| Some(name) == job_name.as_ref());
    let recorded_terminal = recorded.phase.is_some_and(RunPhase::is_terminal);
    match job_state(job) {
        JobState::Pending | JobState::Running if !same_run => {
            status.last_run = Some(LastRun {
                slot: Some(slot),
                job_name,
                phase: Some(if matches!(job_state(job), JobState::Running) {
                    RunPhase::Running
                } else {
                    RunPhase::Pending
                }),
                ..LastRun::default()
            });
        }
        JobState::Failed { reason, message } if !(same_run && recorded_terminal) => {
            let error = format!(
                "Job {} failed ({reason}): {message}",
                job_name.as_deref().unwrap_or_default()
            );
            // `lastRun` names this Job before the failure is recorded, so its history entry does.
            let mut run = status.last_run.clone().unwrap_or_default();
            if !same_run {
                run = LastRun::default();
            }
            run.slot = Some(slot);
            run.job_name = job_name;
            status.last_run = Some(run);
            *status =
                status::run_failed(status, ConditionReason::JobFailed, &error, generation, now);
        }
        _ => {}
    }
}

/// Slots the plan reports as missed, for the Event text.
pub fn describe_missed(missed: u32) -> Option<String> {
    match missed {
        0 => None,
        1 => Some(
            "1 slot passed without a run; this run covers every row since the last file"
                .to_string(),
        ),
        n => Some(format!(
            "{n} slots passed without a run; this one catch-up run covers every row since the last file"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::operator::job::{JobSettings, build_job};
    use serde_json::json;

    fn utc(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text)
            .unwrap()
            .with_timezone(&Utc)
    }

    /// 07:00 New York, with the schedule in effect since `since`.
    fn object(since: &str, status: serde_json::Value) -> ScheduledExport {
        let mut status = status;
        status["schedule"] = json!({"time": "07:00", "timeZone": "America/New_York", "suspended": false, "since": since});
        serde_json::from_value(json!({
            "apiVersion": "exports.crm.dev/v1alpha1",
            "kind": "ScheduledExport",
            "metadata": {"name": "daily", "namespace": "ns", "uid": "uid-1", "generation": 1},
            "spec": {
                "fileType": "interactions", "time": "07:00", "timeZone": "America/New_York",
                "source": {"secretRef": {"name": "db"}},
                "destination": {"sftp": {"host": "h", "username": "u", "secretRef": {"name": "s"}}}
            },
            "status": status
        }))
        .unwrap()
    }

    fn job(object: &ScheduledExport, slot: &str, kind: RunKind, condition: Option<&str>) -> Job {
        let settings = JobSettings {
            artifact_store_url: "file:///a".into(),
            ..JobSettings::default()
        };
        let mut job = build_job(object, utc(slot), &kind, &settings).unwrap();
        job.status = Some(match condition {
            Some(done) => {
                serde_json::from_value(json!({"conditions": [{"type": done, "status": "True"}]}))
                    .unwrap()
            }
            None => serde_json::from_value(json!({"active": 1, "ready": 1})).unwrap(),
        });
        job
    }

    #[test]
    fn nothing_starts_before_the_slot_and_the_slot_starts_once_due() {
        let object = object("2026-11-30T10:00:00Z", json!({}));
        let before = plan(
            utc("2026-11-30T11:59:59Z"),
            &object,
            &[],
            chrono_tz::UTC,
            None,
        );
        assert_eq!(before.start, None);
        assert_eq!(
            before.schedule_status.next_run_time,
            Some(utc("2026-11-30T12:00:00Z"))
        );
        assert_eq!(before.requeue_after, std::time::Duration::from_secs(1));

        let due = plan(
            utc("2026-11-30T12:00:00Z"),
            &object,
            &[],
            chrono_tz::UTC,
            None,
        );
        let start = due.start.expect("a run starts");
        assert_eq!(
            (start.slot, start.kind, start.missed_slots),
            (utc("2026-11-30T12:00:00Z"), RunKind::Scheduled, 0)
        );
        assert_eq!(
            due.schedule_status.last_schedule_time,
            Some(utc("2026-11-30T12:00:00Z"))
        );
        assert_eq!(
            due.schedule_status.next_run_time,
            Some(utc("2026-12-01T12:00:00Z"))
        );
    }

    #[test]
    fn a_slot_before_the_schedule_took_effect_never_runs() {
        let object = object("2026-11-30T12:30:00Z", json!({}));
        let plan = plan(
            utc("2026-11-30T13:00:00Z"),
            &object,
            &[],
            chrono_tz::UTC,
            None,
        );
        assert_eq!(plan.start, None);
        assert_eq!(
            plan.schedule_status.next_run_time,
            Some(utc("2026-12-01T12:00:00Z"))
        );
    }

    #[test]
    fn a_running_job_delays_the_next_slot_and_downtime_gives_one_catch_up() {
        let object = object(
            "2026-11-01T00:00:00Z",
            json!({"lastScheduleTime": "2026-11-27T12:00:00Z"}),
        );
        let running = job(&object, "2026-11-27T12:00:00Z", RunKind::Scheduled, None);
        let busy = plan(
            utc("2026-11-30T15:00:00Z"),
            &object,
            &[running],
            chrono_tz::UTC,
            None,
        );
        assert_eq!(busy.start, None, "never two runs of one object at once");
        assert_eq!(
            busy.schedule_status.next_run_time,
            Some(utc("2026-11-30T12:00:00Z")),
            "the due slot waits"
        );
        assert_eq!(busy.schedule_status.ready.1, ConditionReason::WaitingForRun);

        let done = job(
            &object,
            "2026-11-27T12:00:00Z",
            RunKind::Scheduled,
            Some("Complete"),
        );
        let free = plan(
            utc("2026-11-30T15:00:00Z"),
            &object,
            &[done],
            chrono_tz::UTC,
            None,
        );
        let start = free.start.expect("one catch-up run");
        assert_eq!(
            (start.slot, start.missed_slots),
            (utc("2026-11-30T12:00:00Z"), 2)
        );
    }

    #[test]
    fn a_job_for_the_slot_counts_as_scheduled_even_if_status_lost_it() {
        let object = object("2026-11-01T00:00:00Z", json!({}));
        let done = job(
            &object,
            "2026-11-30T12:00:00Z",
            RunKind::Scheduled,
            Some("Complete"),
        );
        let plan = plan(
            utc("2026-11-30T12:05:00Z"),
            &object,
            &[done],
            chrono_tz::UTC,
            None,
        );
        assert_eq!(plan.start, None);
        assert_eq!(
            plan.schedule_status.last_schedule_time,
            Some(utc("2026-11-30T12:00:00Z"))
        );
    }

    #[test]
    fn an_edit_later_on_a_day_that_already_ran_moves_the_next_run_to_tomorrow() {
        // 07:00 ran; at 07:30 the time became 08:00 (since = the edit).
        let mut object = object(
            "2026-11-30T12:30:00Z",
            json!({"lastScheduleTime": "2026-11-30T12:00:00Z"}),
        );
        object.spec.time = "08:00".into();
        if let Some(schedule) = object.status.as_mut().and_then(|s| s.schedule.as_mut()) {
            schedule.time = "08:00".into();
        }
        let plan = plan(
            utc("2026-11-30T13:00:00Z"),
            &object,
            &[],
            chrono_tz::UTC,
            None,
        );
        assert_eq!(plan.start, None, "one scheduled run per local day");
        assert_eq!(
            plan.schedule_status.next_run_time,
            Some(utc("2026-12-01T13:00:00Z"))
        );
    }

    #[test]
    fn run_now_runs_once_per_token_even_when_recording_it_was_lost() {
        let mut object = object("2026-11-30T12:30:00Z", json!({}));
        object.metadata.annotations =
            Some([(RUN_NOW_ANNOTATION.to_string(), "t1".to_string())].into());
        let first = plan(
            utc("2026-11-30T15:00:00.750Z"),
            &object,
            &[],
            chrono_tz::UTC,
            None,
        );
        let start = first.start.expect("run-now starts");
        assert_eq!(start.kind, RunKind::RunNow { token: "t1".into() });
        assert_eq!(start.slot, utc("2026-11-30T15:00:00Z"), "whole seconds");

        let done = job(
            &object,
            "2026-11-30T15:00:00Z",
            RunKind::RunNow { token: "t1".into() },
            Some("Complete"),
        );
        let again = plan(
            utc("2026-11-30T15:10:00Z"),
            &object,
            &[done],
            chrono_tz::UTC,
            None,
        );
        assert_eq!(again.start, None);
        assert_eq!(
            again.schedule_status.last_run_now_token.as_deref(),
            Some("t1")
        );
    }

    #[test]
    fn a_due_slot_is_not_overtaken_by_a_run_now_token() {
        // Slot 07:00 New York (12:00 UTC) is due and a token arrives at the same time: the
        // run-now file would be named 12:00:30, so the 12:00 file must be delivered first.
        let mut object = object("2026-11-01T00:00:00Z", json!({}));
        object.metadata.annotations =
            Some([(RUN_NOW_ANNOTATION.to_string(), "t1".to_string())].into());
        let now = utc("2026-11-30T12:00:30Z");
        let first = plan(now, &object, &[], chrono_tz::UTC, None);
        let start = first.start.expect("the due slot starts");
        assert_eq!(
            (start.slot, start.kind),
            (utc("2026-11-30T12:00:00Z"), RunKind::Scheduled)
        );
        assert_eq!(
            first.schedule_status.last_run_now_token, None,
            "the token is not honoured yet"
        );

        // While the slot's Job runs (a Pod retrying after a failure included), the token waits.
        let running = job(&object, "2026-11-30T12:00:00Z", RunKind::Scheduled, None);
        let busy = plan(
            utc("2026-11-30T12:01:00Z"),
            &object,
            std::slice::from_ref(&running),
            chrono_tz::UTC,
            None,
        );
        assert_eq!(busy.start, None);
        assert_eq!(busy.schedule_status.last_run_now_token, None);

        // Once it has settled, succeeded or failed, the token runs, after it in name order.
        for outcome in ["Complete", "Failed"] {
            let settled = job(
                &object,
                "2026-11-30T12:00:00Z",
                RunKind::Scheduled,
                Some(outcome),
            );
            let next = plan(
                utc("2026-11-30T12:02:00Z"),
                &object,
                &[settled],
                chrono_tz::UTC,
                None,
            );
            let start = next.start.expect("run-now starts");
            assert_eq!(
                start.kind,
                RunKind::RunNow { token: "t1".into() },
                "{outcome}"
            );
            assert_eq!(start.slot, utc("2026-11-30T12:02:00Z"));
            assert_eq!(
                next.schedule_status.last_run_now_token.as_deref(),
                Some("t1")
            );
        }
    }

    #[test]
    fn a_slot_missed_while_the_operator_was_down_runs_before_a_waiting_token() {
        let mut object = object(
            "2026-11-01T00:00:00Z",
            json!({"lastScheduleTime": "2026-11-27T12:00:00Z"}),
        );
        object.metadata.annotations =
            Some([(RUN_NOW_ANNOTATION.to_string(), "t2".to_string())].into());
        let plan = plan(
            utc("2026-11-30T15:00:00Z"),
            &object,
            &[],
            chrono_tz::UTC,
            None,
        );
        let start = plan.start.expect("the catch-up run starts");
        assert_eq!(
            (start.slot, start.kind, start.missed_slots),
            (utc("2026-11-30T12:00:00Z"), RunKind::Scheduled, 2)
        );
    }

    #[test]
    fn a_full_export_runs_once_per_token_after_a_due_slot_and_before_run_now() {
        let mut object = object("2026-11-01T00:00:00Z", json!({}));
        object.metadata.annotations = Some(
            [
                (FULL_EXPORT_ANNOTATION.to_string(), " all-1 ".to_string()),
                (RUN_NOW_ANNOTATION.to_string(), "now-1".to_string()),
            ]
            .into(),
        );
        let full = RunKind::FullExport {
            token: "all-1".into(),
        };
        // The due slot first, as with run-now: its file is named after an earlier instant.
        let first = plan(
            utc("2026-11-30T12:00:30Z"),
            &object,
            &[],
            chrono_tz::UTC,
            None,
        );
        let start = first.start.expect("the due slot starts");
        assert_eq!(start.kind, RunKind::Scheduled);
        assert_eq!(first.schedule_status.last_full_export_token, None);

        // Once the slot's Job has settled, the full export (not the run-now) runs, slot = now.
        let slot_job = job(
            &object,
            "2026-11-30T12:00:00Z",
            RunKind::Scheduled,
            Some("Complete"),
        );
        let second = plan(
            utc("2026-11-30T12:05:00Z"),
            &object,
            std::slice::from_ref(&slot_job),
            chrono_tz::UTC,
            None,
        );
        let start = second.start.expect("the full export starts");
        assert_eq!(
            (start.kind, start.slot),
            (full.clone(), utc("2026-11-30T12:05:00Z"))
        );
        assert_eq!(
            second.schedule_status.last_full_export_token.as_deref(),
            Some("all-1"),
            "the token is trimmed and recorded"
        );
        assert_eq!(second.schedule_status.last_run_now_token, None);

        // Its Job exists (recording the token was lost): the token is done, run-now goes next.
        let full_job = job(
            &object,
            "2026-11-30T12:05:00Z",
            full.clone(),
            Some("Complete"),
        );
        let third = plan(
            utc("2026-11-30T12:10:00Z"),
            &object,
            &[slot_job.clone(), full_job.clone()],
            chrono_tz::UTC,
            None,
        );
        let start = third.start.expect("run-now starts");
        assert_eq!(
            start.kind,
            RunKind::RunNow {
                token: "now-1".into()
            }
        );
        assert_eq!(
            third.schedule_status.last_full_export_token.as_deref(),
            Some("all-1")
        );

        // A token that was recorded never runs again; a new one does.
        let mut recorded = object.clone();
        recorded.metadata.annotations =
            Some([(FULL_EXPORT_ANNOTATION.to_string(), "all-1".to_string())].into());
        recorded
            .status
            .as_mut()
            .expect("status")
            .last_full_export_token = Some("all-1".into());
        let again = plan(
            utc("2026-11-30T13:00:00Z"),
            &recorded,
            std::slice::from_ref(&slot_job),
            chrono_tz::UTC,
            None,
        );
        assert_eq!(again.start, None);
        recorded.metadata.annotations =
            Some([(FULL_EXPORT_ANNOTATION.to_string(), "all-2".to_string())].into());
        let next = plan(
            utc("2026-11-30T13:00:00Z"),
            &recorded,
            &[slot_job],
            chrono_tz::UTC,
            None,
        );
        assert_eq!(
            next.start.map(|start| start.kind),
            Some(RunKind::FullExport {
                token: "all-2".into()
            })
        );
    }

    #[test]
    fn a_job_that_failed_without_the_export_saying_so_enters_the_history() {
        let object = object("2026-11-01T00:00:00Z", json!({}));
        let failed = job(
            &object,
            "2026-11-30T12:00:00Z",
            RunKind::Scheduled,
            Some("Failed"),
        );
        let plan = plan(
            utc("2026-11-30T13:00:00Z"),
            &object,
            std::slice::from_ref(&failed),
            chrono_tz::UTC,
            None,
        );
        let current = object.status.clone().unwrap_or_default();
        let merged = merge_status(
            &current,
            &plan.schedule_status,
            std::slice::from_ref(&failed),
            utc("2026-11-30T13:00:00Z"),
        );
        let entry = merged.history.first().expect("a history entry");
        assert_eq!(entry.slot, Some(utc("2026-11-30T12:00:00Z")));
        assert_eq!(entry.job_name, failed.metadata.name);
        assert_eq!(entry.phase, Some(RunPhase::Failed));
        assert_eq!(entry.reason.as_deref(), Some("JobFailed"));
        assert!(
            entry
                .message
                .as_deref()
                .is_some_and(|message| message.starts_with("Job daily-202611301200 failed")),
            "{entry:?}"
        );
        // Observed again, the same failure is not recorded twice.
        let again = merge_status(
            &merged,
            &plan.schedule_status,
            std::slice::from_ref(&failed),
            utc("2026-11-30T13:01:00Z"),
        );
        assert_eq!(again.history, merged.history);
    }

    #[test]
    fn suspended_objects_have_no_next_run_and_a_manual_clock_is_polled() {
        let mut object = object("2026-11-01T00:00:00Z", json!({}));
        object.spec.suspend = true;
        let plan = plan(
            utc("2026-11-30T12:00:00Z"),
            &object,
            &[],
            chrono_tz::UTC,
            Some(std::time::Duration::from_millis(500)),
        );
        assert_eq!(plan.start, None);
        assert_eq!(plan.schedule_status.next_run_time, None);
        assert_eq!(plan.schedule_status.ready.1, ConditionReason::Suspended);
        assert!(plan.requeue_after < std::time::Duration::from_secs(1));
    }
}
