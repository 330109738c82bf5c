//! What an alert says: the notices the operator raises and the JSON body a webhook receives.
//! The body is a Slack incoming webhook's (`text`, one sentence) and carries the same facts as
//! typed fields for receivers that route on them.

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;

use crate::redact;

/// Something worth telling the institution about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notice {
    /// A run ended without delivering its file.
    RunFailed {
        job: String,
        slot: Option<DateTime<Utc>>,
        reason: String,
        message: String,
    },
    /// A run delivered its file after the previous run had failed.
    RunRecovered {
        job: String,
        slot: Option<DateTime<Utc>>,
        file: Option<String>,
    },
    /// A delivered file was gone from the export directory and was copied there again.
    FileRecopied { file: String, directory: String },
    /// A recheck could not reach the SFTP server (said once, when it starts).
    RecheckUnreachable {
        file: String,
        reason: String,
        message: String,
    },
    /// A recheck reached the server again after it could not.
    RecheckReachable { file: String },
    /// The checks ahead of the slot found something the run will trip on.
    PreflightFailed { reason: String, message: String },
    /// The checks ahead of the slot pass again.
    PreflightPassed,
}

/// The `event` field: which notice a body carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum NoticeKind {
    RunFailed,
    RunRecovered,
    FileRecopied,
    RecheckUnreachable,
    RecheckReachable,
    PreflightFailed,
    PreflightPassed,
}

impl Notice {
    pub fn kind(&self) -> NoticeKind {
        match self {
            Notice::RunFailed { .. } => NoticeKind::RunFailed,
            Notice::RunRecovered { .. } => NoticeKind::RunRecovered,
            Notice::FileRecopied { .. } => NoticeKind::FileRecopied,
            Notice::RecheckUnreachable { .. } => NoticeKind::RecheckUnreachable,
            Notice::RecheckReachable { .. } => NoticeKind::RecheckReachable,
            Notice::PreflightFailed { .. } => NoticeKind::PreflightFailed,
            Notice::PreflightPassed => NoticeKind::PreflightPassed,
        }
    }
}

/// Which object a notice is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subject {
    pub namespace: String,
    pub name: String,
    pub file_type: String,
}

/// The JSON a webhook receives.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Body {
    /// One sentence for people (what Slack shows).
    pub text: String,
    pub event: NoticeKind,
    pub namespace: String,
    pub name: String,
    pub file_type: String,
    /// When the operator observed what the notice says.
    pub time: DateTime<Utc>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub job: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub slot: Option<DateTime<Utc>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// Driver and server messages may hold anything: newlines would break the one-line `text`, and
/// a registered credential must never leave the process.
fn clean(text: &str) -> String {
    let one_line: String = redact::scrub(text)
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    // A body stays a chat line, not a log dump.
    const MAX: usize = 512;
    match one_line.char_indices().nth(MAX) {
        Some((end, _)) => format!("{}...", &one_line[..end]),
        None => one_line,
    }
}

fn instant(time: DateTime<Utc>) -> String {
    time.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// The body of `notice` about `subject`, observed at `time`. Every free text is scrubbed, so
/// build it after the webhook's own URL and key are registered with the redactor.
pub fn build(subject: &Subject, notice: &Notice, time: DateTime<Utc>) -> Body {
    let who = format!(
        "ScheduledExport {}/{} ({})",
        subject.namespace, subject.name, subject.file_type
    );
    let run = |slot: &Option<DateTime<Utc>>| match slot {
        Some(slot) => format!("the run for {}", instant(*slot)),
        None => "a run".to_string(),
    };
    let mut body = Body {
        text: String::new(),
        event: notice.kind(),
        namespace: subject.namespace.clone(),
        name: subject.name.clone(),
        file_type: subject.file_type.clone(),
        time,
        job: None,
        slot: None,
        file: None,
        reason: None,
        message: None,
    };
    body.text = match notice {
        Notice::RunFailed {
            job,
            slot,
            reason,
            message,
        } => {
            let (reason, message) = (clean(reason), clean(message));
            let text = format!("{who}: {} failed ({reason}): {message}", run(slot));
            body.job = Some(job.clone());
            body.slot = *slot;
            body.reason = Some(reason);
            body.message = Some(message);
            text
        }
        Notice::RunRecovered { job, slot, file } => {
            let text = match file {
                Some(file) => format!(
                    "{who}: {} delivered {file} again after a failed run",
                    run(slot)
                ),
                None => format!("{who}: {} succeeded again after a failed run", run(slot)),
            };
            body.job = Some(job.clone());
            body.slot = *slot;
            body.file.clone_from(file);
            text
        }
        Notice::FileRecopied { file, directory } => {
            body.file = Some(file.clone());
            format!(
                "{who}: {file} was gone from {directory}; copied it again from the artifact store"
            )
        }
        Notice::RecheckUnreachable {
            file,
            reason,
            message,
        } => {
            let (reason, message) = (clean(reason), clean(message));
            let text = format!(
                "{who}: cannot reach the SFTP server to check {file} ({reason}): {message}"
            );
            body.file = Some(file.clone());
            body.reason = Some(reason);
            body.message = Some(message);
            text
        }
        Notice::RecheckReachable { file } => {
            body.file = Some(file.clone());
            format!("{who}: the SFTP server answers again; {file} is checked as usual")
        }
        Notice::PreflightFailed { reason, message } => {
            let (reason, message) = (clean(reason), clean(message));
            let text = format!("{who}: the next run will fail ({reason}): {message}");
            body.reason = Some(reason);
            body.message = Some(message);
            text
        }
        Notice::PreflightPassed => format!("{who}: the checks ahead of the next run pass again"),
    };
    body
}

#[cfg(test)]
mod tests {
    use super::*;

    fn subject() -> Subject {
        Subject {
            namespace: "univ".into(),
            name: "daily".into(),
            file_type: "interactions".into(),
        }
    }

    fn time() -> DateTime<Utc> {
        "2026-11-30T12:00:05Z".parse().unwrap()
    }

    #[test]
    fn a_failed_run_is_one_line_with_the_structured_fields() {
        let notice = Notice::RunFailed {
            job: "daily-29412345".into(),
            slot: Some("2026-11-30T12:00:00Z".parse().unwrap()),
            reason: "DirectoryNotFound".into(),
            message: "no directory /exports\non the server".into(),
        };
        let json = serde_json::to_value(build(&subject(), &notice, time())).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "text": "ScheduledExport univ/daily (interactions): the run for 2026-11-30T12:00:00Z \
                         failed (DirectoryNotFound): no directory /exports on the server",
                "event": "RunFailed",
                "namespace": "univ",
                "name": "daily",
                "fileType": "interactions",
                "time": "2026-11-30T12:00:05Z",
                "job": "daily-29412345",
                "slot": "2026-11-30T12:00:00Z",
                "reason": "DirectoryNotFound",
                "message": "no directory /exports on the server",
            })
        );
    }

    #[test]
    fn every_notice_has_a_sentence_naming_the_object_and_its_event() {
        let notices = [
            Notice::RunRecovered {
                job: "j".into(),
                slot: None,
                file: Some("interactions-20261130T120000Z.csv".into()),
            },
            Notice::FileRecopied {
                file: "f.csv".into(),
                directory: "/exports".into(),
            },
            Notice::RecheckUnreachable {
                file: "f.csv".into(),
                reason: "ConnectionRefused".into(),
                message: "refused".into(),
            },
            Notice::RecheckReachable {
                file: "f.csv".into(),
            },
            Notice::PreflightFailed {
                reason: "HostKeyMismatch".into(),
                message: "the key changed".into(),
            },
            Notice::PreflightPassed,
        ];
        for notice in notices {
            let body = build(&subject(), &notice, time());
            assert!(
                body.text
                    .starts_with("ScheduledExport univ/daily (interactions): "),
                "{body:?}"
            );
            assert!(!body.text.contains('\n'));
            let json = serde_json::to_value(&body).unwrap();
            assert_eq!(json["event"], format!("{:?}", notice.kind()));
        }
    }

    #[test]
    fn registered_credentials_and_url_passwords_are_scrubbed() {
        redact::register_secret("hunter2-webhook-token");
        let notice = Notice::RecheckUnreachable {
            file: "f.csv".into(),
            reason: "AuthenticationFailed".into(),
            message: "token hunter2-webhook-token refused by sftp://u:pw@host".into(),
        };
        let text = serde_json::to_string(&build(&subject(), &notice, time())).unwrap();
        assert!(!text.contains("hunter2-webhook-token"), "{text}");
        assert!(!text.contains(":pw@"), "{text}");
    }

    #[test]
    fn a_long_message_is_cut() {
        let notice = Notice::PreflightFailed {
            reason: "X".into(),
            message: "y".repeat(2000),
        };
        let body = build(&subject(), &notice, time());
        assert_eq!(body.message.unwrap().chars().count(), 515);
    }
}
