//! `kubectl sx run`: a fresh run-now token in the object's annotation, and, with `--wait`, the
//! run followed to its end. When a run has ended is decided purely from the object and its Job.

use std::time::Duration;

use chrono::{DateTime, Utc};
use k8s_openapi::api::batch::v1::Job;
use kube::Client;
use kube::api::{Api, Patch, PatchParams};
use rand::{RngCore, SeedableRng};

use super::PluginError;
use crate::operator::job::{JobState, RunKind, job_name, job_state};
use crate::resource::{RUN_NOW_ANNOTATION, RunPhase, ScheduledExport};

/// How often `--wait` looks at the object and its Job.
const POLL_EVERY: Duration = Duration::from_secs(1);

/// A run asked for: its token and the Job that will run it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunRequest {
    pub token: String,
    pub job_name: String,
}

/// Where a run-now stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunProgress {
    /// The operator has not taken the token yet (or a due scheduled run goes first).
    Waiting,
    /// Its Job exists and has not finished.
    Running(RunPhase),
    /// Delivered: file, rows, bytes.
    Succeeded {
        file_name: String,
        rows: Option<u64>,
        bytes: Option<u64>,
    },
    /// Failed for good (the Job will not try again): why.
    Failed(String),
}

/// A token no one used before: the instant and 32 random bits, e.g. `20261201T073000Z-1a2b3c4d`.
pub fn fresh_token(now: DateTime<Utc>) -> String {
    let mut rng = rand::rngs::StdRng::from_os_rng();
    format!("{}-{:08x}", now.format("%Y%m%dT%H%M%SZ"), rng.next_u32())
}

/// Where the run of `request` stands, from the object and (when it could be read) its Job.
///
/// The Job decides when the run has ended, since a failed attempt is retried and the status may
/// say `Failed` before a later attempt succeeds; the status tells what the run delivered or why it
/// failed. A Job that is gone (deleted by the history limit) leaves the status to tell.
pub fn run_progress(
    object: &ScheduledExport,
    request: &RunRequest,
    job: Option<&JobState>,
) -> RunProgress {
    let status = object.status.clone().unwrap_or_default();
    let last_run = status
        .last_run
        .filter(|run| run.job_name.as_deref() == Some(request.job_name.as_str()));
    let recorded_phase = last_run.as_ref().and_then(|run| run.phase);
    let succeeded = |run: Option<&crate::resource::LastRun>| RunProgress::Succeeded {
        file_name: run
            .and_then(|run| run.file_name.clone())
            .unwrap_or_default(),
        rows: run.and_then(|run| run.rows),
        bytes: run.and_then(|run| run.bytes),
    };
    let failure = |fallback: String| {
        last_run
            .as_ref()
            .and_then(|run| run.error.clone())
            .unwrap_or(fallback)
    };
    match job {
        Some(JobState::Succeeded) => succeeded(last_run.as_ref()),
        Some(JobState::Failed { reason, message }) => RunProgress::Failed(failure(format!(
            "Job {} failed ({reason}): {message}",
            request.job_name
        ))),
        Some(state) => RunProgress::Running(recorded_phase.unwrap_or(state.phase())),
        None => match recorded_phase {
            Some(RunPhase::Succeeded) => succeeded(last_run.as_ref()),
            Some(RunPhase::Failed) => {
                RunProgress::Failed(failure(format!("Job {} failed", request.job_name)))
            }
            Some(phase) => RunProgress::Running(phase),
            None => RunProgress::Waiting,
        },
    }
}

/// What a run whose Job has not finished is doing, for a person: the status may already hold the
/// outcome of an attempt the Job has not acted on yet.
fn describe_running(phase: RunPhase) -> &'static str {
    match phase {
        RunPhase::Failed => "an attempt failed; waiting for the Job to try again or give up",
        RunPhase::Succeeded => "delivered; waiting for the Job to complete",
        RunPhase::Pending => "Pending",
        RunPhase::Running | RunPhase::Unknown => "Running",
    }
}

/// Sets a fresh run-now token on the object; the operator starts the run at its next look.
pub async fn request_run(
    api: &Api<ScheduledExport>,
    name: &str,
    now: DateTime<Utc>,
) -> Result<RunRequest, PluginError> {
    let token = fresh_token(now);
    let patch = serde_json::json!({"metadata": {"annotations": {RUN_NOW_ANNOTATION: token}}});
    api.patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .map_err(|err| PluginError::from_api(err, &namespace_of(api), name))?;
    Ok(RunRequest {
        job_name: job_name(
            name,
            now,
            &RunKind::RunNow {
                token: token.clone(),
            },
        ),
        token,
    })
}

fn namespace_of(api: &Api<ScheduledExport>) -> String {
    api.namespace().unwrap_or_default().to_string()
}

/// Polls until the run ends or `timeout` passes.
pub async fn wait_for_run(
    client: &Client,
    api: &Api<ScheduledExport>,
    namespace: &str,
    name: &str,
    request: &RunRequest,
    timeout: Duration,
) -> Result<RunProgress, PluginError> {
    let jobs: Api<Job> = Api::namespaced(client.clone(), namespace);
    let give_up = tokio::time::Instant::now() + timeout;
    let mut last_seen = RunProgress::Waiting;
    loop {
        let object = api
            .get(name)
            .await
            .map_err(|err| PluginError::from_api(err, &namespace_of(api), name))?;
        let job = jobs
            .get_opt(&request.job_name)
            .await
            .map_err(PluginError::Api)?;
        let progress = run_progress(&object, request, job.as_ref().map(job_state).as_ref());
        if matches!(
            progress,
            RunProgress::Succeeded { .. } | RunProgress::Failed(_)
        ) {
            return Ok(progress);
        }
        if progress != last_seen {
            if let RunProgress::Running(phase) = &progress {
                eprintln!("Job {}: {}", request.job_name, describe_running(*phase));
            }
            last_seen = progress.clone();
        }
        if tokio::time::Instant::now() >= give_up {
            let state = match progress {
                RunProgress::Running(phase) => format!("its Job {} is {phase}", request.job_name),
                _ => "the operator has not started it (is the operator running?)".to_string(),
            };
            return Err(PluginError::TimedOut(format!(
                "the run of {namespace}/{name} did not end within {}s: {state}",
                timeout.as_secs()
            )));
        }
        tokio::time::sleep(POLL_EVERY).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn object(status: serde_json::Value) -> ScheduledExport {
        serde_json::from_value(json!({
            "apiVersion": "exports.crm.dev/v1alpha1",
            "kind": "ScheduledExport",
            "metadata": {"name": "daily", "namespace": "ns"},
            "spec": {
                "fileType": "interactions", "time": "07:00", "timeZone": "America/New_York",
                "source": {"secretRef": {"name": "db"}},
                "destination": {"sftp": {"host": "h", "username": "u", "secretRef": {"name": "s"}}}
            },
            "status": status
        }))
        .unwrap()
    }

    fn request() -> RunRequest {
        RunRequest {
            token: "t".into(),
            job_name: "daily-now-12345678".into(),
        }
    }

    #[test]
    fn a_token_the_operator_has_not_taken_waits() {
        let other =
            object(json!({"lastRun": {"jobName": "daily-202612011200", "phase": "Running"}}));
        assert_eq!(run_progress(&other, &request(), None), RunProgress::Waiting);
        assert_eq!(
            run_progress(&object(json!({})), &request(), None),
            RunProgress::Waiting
        );
    }

    #[test]
    fn a_failed_attempt_the_job_retries_is_still_running() {
        let failed_once = object(json!({"lastRun": {
            "jobName": "daily-now-12345678", "phase": "Failed", "error": "connection refused"}}));
        assert_eq!(
            run_progress(&failed_once, &request(), Some(&JobState::Running)),
            RunProgress::Running(RunPhase::Failed)
        );
        let failed = JobState::Failed {
            reason: "BackoffLimitExceeded".into(),
            message: "Job has reached the specified backoff limit".into(),
        };
        assert_eq!(
            run_progress(&failed_once, &request(), Some(&failed)),
            RunProgress::Failed("connection refused".into())
        );
        // Without the export's word, the Job's says why.
        let RunProgress::Failed(message) =
            run_progress(&object(json!({})), &request(), Some(&failed))
        else {
            panic!("failed")
        };
        assert!(message.contains("BackoffLimitExceeded"), "{message}");
    }

    #[test]
    fn a_succeeded_job_reports_the_delivered_file() {
        let delivered = object(json!({"lastRun": {
            "jobName": "daily-now-12345678", "phase": "Succeeded",
            "fileName": "interactions-20261201T073000Z.csv", "rows": 5, "bytes": 900}}));
        let expected = RunProgress::Succeeded {
            file_name: "interactions-20261201T073000Z.csv".into(),
            rows: Some(5),
            bytes: Some(900),
        };
        assert_eq!(
            run_progress(&delivered, &request(), Some(&JobState::Succeeded)),
            expected
        );
        // The history limit deleted the Job: the status tells.
        assert_eq!(run_progress(&delivered, &request(), None), expected);
    }

    #[test]
    fn tokens_are_fresh_and_name_their_instant() {
        let now = DateTime::parse_from_rfc3339("2026-12-01T07:30:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let (a, b) = (fresh_token(now), fresh_token(now));
        assert_ne!(a, b);
        assert!(a.starts_with("20261201T073000Z-"), "{a}");
        assert_eq!(a.len(), "20261201T073000Z-".len() + 8);
    }
}
