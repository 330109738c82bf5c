//! What an observed export Job says: its state, the slot and run kind it was created for, and
//! which finished Jobs the history limits delete.

use std::cmp::Reverse;

use chrono::{DateTime, Utc};
use k8s_openapi::api::batch::v1::{Job, JobCondition};
use kube::ResourceExt;

use crate::resource::RunPhase;

use super::*;

/// What a Job is doing, from its status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobState {
    /// No Pod of the Job is running yet (not created, unscheduled, or pulling its image).
    Pending,
    /// A Pod's container is running (or a Pod is still terminating).
    Running,
    /// The export succeeded.
    Succeeded,
    /// The Job failed for good: the condition's reason (`BackoffLimitExceeded`, `DeadlineExceeded`,
    /// `PodFailurePolicy`, ...) and message.
    Failed { reason: String, message: String },
}

impl JobState {
    /// The `status.lastRun.phase` for this state.
    pub fn phase(&self) -> RunPhase {
        match self {
            JobState::Pending => RunPhase::Pending,
            JobState::Running => RunPhase::Running,
            JobState::Succeeded => RunPhase::Succeeded,
            JobState::Failed { .. } => RunPhase::Failed,
        }
    }

    /// Whether the Job has an outcome (it may still be terminating its Pods; see [`job_settled`]).
    pub fn is_finished(&self) -> bool {
        matches!(self, JobState::Succeeded | JobState::Failed { .. })
    }
}

/// The first condition of this type whose status is `True`.
fn true_condition<'a>(job: &'a Job, type_: &str) -> Option<&'a JobCondition> {
    job.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|condition| condition.type_ == type_ && condition.status == "True")
}

/// What a Job is doing, from its status.
///
/// The terminal conditions `Complete` and `Failed` win; the interim `SuccessCriteriaMet` and
/// `FailureTarget`, which the Job controller sets first while it still terminates Pods, already
/// decide the outcome and count as the same. Otherwise the Job is `Running` when a Pod is ready
/// (the container has no readiness probe, so ready means started) or terminating, else `Pending`.
pub fn job_state(job: &Job) -> JobState {
    let failed = |condition: &JobCondition| JobState::Failed {
        reason: condition
            .reason
            .clone()
            .filter(|reason| !reason.is_empty())
            .unwrap_or_else(|| condition.type_.clone()),
        message: condition.message.clone().unwrap_or_default(),
    };
    if let Some(condition) = true_condition(job, "Failed") {
        return failed(condition);
    }
    if true_condition(job, "Complete").is_some() {
        return JobState::Succeeded;
    }
    if let Some(condition) = true_condition(job, "FailureTarget") {
        return failed(condition);
    }
    if true_condition(job, "SuccessCriteriaMet").is_some() {
        return JobState::Succeeded;
    }
    let status = job.status.as_ref();
    let ready = status.and_then(|s| s.ready).unwrap_or(0);
    let terminating = status.and_then(|s| s.terminating).unwrap_or(0);
    if ready > 0 || terminating > 0 {
        JobState::Running
    } else {
        JobState::Pending
    }
}

/// Seconds from the Job's start to its success. The Job controller sets `completionTime` only with
/// `Complete`, after its Pods terminated; a Job seen at the earlier `SuccessCriteriaMet` has
/// finished its work when that condition turned true, so its transition time ends the run.
pub fn succeeded_job_seconds(job: &Job) -> Option<f64> {
    let status = job.status.as_ref()?;
    let started = status.start_time.as_ref()?.0;
    let ended = match &status.completion_time {
        Some(completed) => completed.0,
        None => {
            true_condition(job, "SuccessCriteriaMet")?
                .last_transition_time
                .as_ref()?
                .0
        }
    };
    Some(ended.duration_since(started).as_secs_f64())
}

/// Whether the Job is over with no Pod left: it carries the terminal `Complete` or `Failed`
/// condition, which the Job controller (Kubernetes 1.31 and later) sets only after all its Pods
/// terminated. The controller should wait for this, not merely for a finished [`job_state`],
/// before starting the object's next run, so two export processes never overlap.
pub fn job_settled(job: &Job) -> bool {
    true_condition(job, "Complete").is_some() || true_condition(job, "Failed").is_some()
}

/// The slot a Job runs, from its slot annotation.
pub fn job_slot(job: &Job) -> Option<DateTime<Utc>> {
    let text = job.annotations().get(ANNOTATION_SLOT)?;
    DateTime::parse_from_rfc3339(text)
        .ok()
        .map(|slot| slot.with_timezone(&Utc))
}

/// Why a Job runs, from its annotations; `None` for a Job this operator did not build.
pub fn job_run_kind(job: &Job) -> Option<RunKind> {
    let annotations = job.annotations();
    match annotations.get(ANNOTATION_RUN_KIND)?.as_str() {
        RUN_KIND_SCHEDULED => Some(RunKind::Scheduled),
        RUN_KIND_RUN_NOW => Some(RunKind::RunNow {
            token: annotations.get(ANNOTATION_RUN_NOW_TOKEN)?.clone(),
        }),
        RUN_KIND_FULL_EXPORT => Some(RunKind::FullExport {
            token: annotations.get(ANNOTATION_FULL_EXPORT_TOKEN)?.clone(),
        }),
        _ => None,
    }
}

/// Finished Jobs to delete so history stays bounded: keep the newest `keep_succeeded` succeeded and
/// `keep_failed` failed Jobs (newest by slot, then creation time, then name); never an unfinished
/// Job, nor one whose Pods are still terminating, nor one already being deleted.
///
/// A Job without a readable slot annotation sorts as the oldest.
pub fn finished_jobs_to_delete(
    jobs: &[Job],
    keep_succeeded: usize,
    keep_failed: usize,
) -> Vec<String> {
    let mut succeeded = Vec::new();
    let mut failed = Vec::new();
    for job in jobs {
        if job.metadata.deletion_timestamp.is_some() {
            continue;
        }
        match job_state(job) {
            JobState::Succeeded => succeeded.push(job),
            JobState::Failed { .. } => failed.push(job),
            JobState::Pending | JobState::Running => {}
        }
    }
    let mut doomed = Vec::new();
    for (mut group, keep) in [(succeeded, keep_succeeded), (failed, keep_failed)] {
        group.sort_by_key(|job| {
            Reverse((
                job_slot(job),
                job.metadata.creation_timestamp.clone(),
                job.metadata.name.clone(),
            ))
        });
        doomed.extend(
            group
                .into_iter()
                .skip(keep)
                .filter(|job| job_settled(job))
                .filter_map(|job| job.metadata.name.clone()),
        );
    }
    doomed
}

/// Whether `job` belongs to the object with UID `object_uid`: its controller owner reference names
/// that UID. A Job of a deleted object of the same name never counts as the new object's run.
pub fn owned_by(job: &Job, object_uid: &str) -> bool {
    !object_uid.is_empty() && controller_uid(job) == Some(object_uid)
}

/// The UID its controller owner reference names (the API server allows one), if any.
pub fn controller_uid(job: &Job) -> Option<&str> {
    job.owner_references()
        .iter()
        .find(|owner| owner.controller == Some(true))
        .map(|owner| owner.uid.as_str())
        .filter(|uid| !uid.is_empty())
}
