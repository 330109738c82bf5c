//! Which observed changes raise a notice. Each decision rests on state that survives a restart
//! (the Jobs kept as history, the status' last check result), so a restarted operator neither
//! repeats an alert nor misses one it had not yet decided.

use k8s_openapi::api::batch::v1::Job;

use super::Notice;
use crate::operator::checker::decide::CheckOutcome;
use crate::operator::job::{JobState, job_state};
use crate::resource::CheckResult;

/// Whether the run that ended before `job` (by creation, among the object's `jobs`) failed: a
/// success after it is a recovery. The history limits always keep the newest failed Job, so
/// the run just before a success is still there to ask.
pub fn previous_run_failed(job: &Job, jobs: &[Job]) -> bool {
    let key = |job: &Job| {
        (
            job.metadata.creation_timestamp.as_ref().map(|time| time.0),
            job.metadata.name.clone(),
        )
    };
    let this = key(job);
    jobs.iter()
        .filter(|other| key(other) < this && job_state(other).is_finished())
        .max_by_key(|other| key(other))
        .is_some_and(|previous| matches!(job_state(previous), JobState::Failed { .. }))
}

/// The notices one applied check of `file` raises, given the result recorded before it: a
/// recopy, and the server becoming unreachable or reachable again (each once per change, since
/// the recorded result changes with it).
pub fn check_notices(
    previous: Option<CheckResult>,
    outcome: &CheckOutcome,
    file: &str,
    directory: &str,
) -> Vec<Notice> {
    let was_unreachable = previous == Some(CheckResult::Unreachable);
    let mut notices = Vec::new();
    match outcome {
        CheckOutcome::Unreachable(cause) => {
            if !was_unreachable {
                notices.push(Notice::RecheckUnreachable {
                    file: file.to_string(),
                    reason: cause.reason.as_str().to_string(),
                    message: cause.message.clone(),
                });
            }
        }
        // The server answered, whatever it said about the file.
        CheckOutcome::Found { .. } | CheckOutcome::Recopied | CheckOutcome::RecopyFailed(_) => {
            if was_unreachable {
                notices.push(Notice::RecheckReachable {
                    file: file.to_string(),
                });
            }
            if matches!(outcome, CheckOutcome::Recopied) {
                notices.push(Notice::FileRecopied {
                    file: file.to_string(),
                    directory: directory.to_string(),
                });
            }
        }
    }
    notices
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::operator::checker::decide::Failure;
    use crate::resource::ConditionReason;

    fn job(name: &str, created: &str, condition: Option<&str>) -> Job {
        let conditions = condition.map(|type_| {
            serde_json::json!([{"type": type_, "status": "True", "reason": "BackoffLimitExceeded"}])
        });
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": name, "creationTimestamp": created},
            "status": {"conditions": conditions},
        }))
        .unwrap()
    }

    #[test]
    fn a_success_after_a_failure_is_a_recovery_and_after_a_success_is_not() {
        let failed = job("a", "2026-11-28T12:00:00Z", Some("Failed"));
        let succeeded = job("b", "2026-11-29T12:00:00Z", Some("Complete"));
        let next = job("c", "2026-11-30T12:00:00Z", Some("Complete"));
        let jobs = vec![failed.clone(), succeeded.clone(), next.clone()];
        assert!(previous_run_failed(&succeeded, &jobs));
        assert!(!previous_run_failed(&next, &jobs));
        assert!(!previous_run_failed(&failed, &jobs), "no run before it");
    }

    #[test]
    fn runs_still_going_or_newer_do_not_count() {
        let failed = job("a", "2026-11-28T12:00:00Z", Some("Failed"));
        let running = job("b", "2026-11-29T12:00:00Z", None);
        let succeeded = job("c", "2026-11-30T12:00:00Z", Some("Complete"));
        let newer_failure = job("d", "2026-12-01T12:00:00Z", Some("Failed"));
        let jobs = vec![failed, running, succeeded.clone(), newer_failure.clone()];
        assert!(previous_run_failed(&succeeded, &jobs));
        assert!(!previous_run_failed(&newer_failure, &jobs[2..]));
    }

    fn unreachable() -> CheckOutcome {
        CheckOutcome::Unreachable(Failure::new(
            ConditionReason::ConnectionRefused,
            "connection refused",
        ))
    }

    #[test]
    fn unreachable_is_said_once_and_reachable_again_once() {
        let notices = check_notices(Some(CheckResult::Present), &unreachable(), "f", "/x");
        assert_eq!(
            notices,
            vec![Notice::RecheckUnreachable {
                file: "f".into(),
                reason: "ConnectionRefused".into(),
                message: "connection refused".into(),
            }]
        );
        assert!(
            check_notices(Some(CheckResult::Unreachable), &unreachable(), "f", "/x").is_empty()
        );
        let found = CheckOutcome::Found {
            relative: "f".into(),
        };
        assert_eq!(
            check_notices(Some(CheckResult::Unreachable), &found, "f", "/x"),
            vec![Notice::RecheckReachable { file: "f".into() }]
        );
        assert!(check_notices(Some(CheckResult::Present), &found, "f", "/x").is_empty());
        assert!(check_notices(None, &found, "f", "/x").is_empty());
    }

    #[test]
    fn a_recopy_is_said_and_after_an_outage_so_is_the_server_being_back() {
        assert_eq!(
            check_notices(None, &CheckOutcome::Recopied, "f", "/x"),
            vec![Notice::FileRecopied {
                file: "f".into(),
                directory: "/x".into()
            }]
        );
        assert_eq!(
            check_notices(
                Some(CheckResult::Unreachable),
                &CheckOutcome::Recopied,
                "f",
                "/x"
            ),
            vec![
                Notice::RecheckReachable { file: "f".into() },
                Notice::FileRecopied {
                    file: "f".into(),
                    directory: "/x".into()
                }
            ]
        );
    }
}
