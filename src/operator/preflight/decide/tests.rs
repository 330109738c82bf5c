use super::*;
use crate::clock::{Clock, ManualClock};
use chrono::{TimeDelta, TimeZone};

/// An object of generation 3 that the controller has seen, with `status` merged in.
fn object(status: serde_json::Value) -> ScheduledExport {
    let mut status = status;
    if status.get("observedGeneration").is_none() {
        status["observedGeneration"] = 3.into();
    }
    serde_json::from_value(serde_json::json!({
        "apiVersion": "exports.crm.dev/v1alpha1",
        "kind": "ScheduledExport",
        "metadata": {"name": "daily", "namespace": "univ", "uid": "uid-1", "generation": 3},
        "spec": {
            "fileType": "interactions",
            "time": "07:00",
            "source": {"secretRef": {"name": "db"}},
            "destination": {"sftp": {"host": "sftp.example.edu", "username": "u",
                "directory": "/exports", "secretRef": {"name": "sftp"}}},
            "encryption": {"pgp": {"publicKeySecretRef": {"name": "key"}}}
        },
        "status": status
    }))
    .unwrap()
}

fn versions(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(name, version)| (name.to_string(), version.to_string()))
        .collect()
}

fn at(hour: u32, minute: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 12, 1, hour, minute, 0).unwrap()
}

fn settings() -> PreflightSettings {
    PreflightSettings::default()
}

fn last(inputs: &str, checked_at: DateTime<Utc>, passed: bool) -> LastCheck {
    LastCheck {
        inputs: inputs.to_string(),
        checked_at,
        passed,
    }
}

#[test]
fn the_fingerprint_follows_the_inputs_and_nothing_else() {
    let plain = object(serde_json::json!({}));
    let secrets = versions(&[("db", "10"), ("sftp", "11"), ("key", "12"), ("other", "1")]);
    let base = fingerprint(&plain, &secrets);
    assert_eq!(base.len(), 32);
    assert_eq!(base, fingerprint(&plain, &secrets), "stable");

    // A Secret the object does not name, the schedule and the status are not inputs.
    let mut unrelated = secrets.clone();
    unrelated.insert("other".into(), "99".into());
    assert_eq!(fingerprint(&plain, &unrelated), base);
    let mut rescheduled = object(serde_json::json!({"nextRunTime": "2026-12-01T12:00:00Z"}));
    rescheduled.spec.time = "09:30".into();
    assert_eq!(fingerprint(&rescheduled, &secrets), base);

    // Each referenced Secret's version, its absence, and each spec part are.
    for (name, version) in [("db", "20"), ("sftp", "21"), ("key", "22")] {
        let mut changed = secrets.clone();
        changed.insert(name.into(), version.into());
        assert_ne!(fingerprint(&plain, &changed), base, "{name}");
        let mut gone = secrets.clone();
        gone.remove(name);
        assert_ne!(fingerprint(&plain, &gone), base, "{name} missing");
    }
    let mut moved = plain.clone();
    moved.spec.destination.sftp.directory = "/exports/b".into();
    assert_ne!(fingerprint(&moved, &secrets), base);
    let mut viewed = plain.clone();
    viewed.spec.source.view = Some("crm.major_donors".into());
    assert_ne!(fingerprint(&viewed, &secrets), base);
    let mut unencrypted = plain.clone();
    unencrypted.spec.encryption = None;
    assert_ne!(fingerprint(&unencrypted, &secrets), base);
}

#[test]
fn an_unchecked_or_changed_object_is_due_at_once() {
    let plain = object(serde_json::json!({}));
    let now = at(3, 0);
    assert_eq!(due(now, &plain, "a", None, &settings()), Some(Due::Changed));
    let checked = last("a", now - TimeDelta::seconds(5), true);
    assert_eq!(due(now, &plain, "a", Some(&checked), &settings()), None);
    assert_eq!(
        due(now, &plain, "b", Some(&checked), &settings()),
        Some(Due::Changed)
    );
    // Not yet seen by the controller in this generation: its next run is unknown.
    let unseen = object(serde_json::json!({"observedGeneration": 2}));
    assert_eq!(due(now, &unseen, "b", None, &settings()), None);
    let mut deleted = object(serde_json::json!({}));
    deleted.metadata = serde_json::from_value(serde_json::json!({
        "name": "daily", "namespace": "univ", "uid": "uid-1",
        "generation": 3, "deletionTimestamp": "2026-12-01T02:59:00Z"
    }))
    .unwrap();
    assert_eq!(due(now, &deleted, "b", None, &settings()), None);
}

#[test]
fn a_check_is_due_once_within_the_lead_before_each_run() {
    // The loop's clock is injectable: "15 minutes before the slot" without waiting.
    let clock = ManualClock::new(at(6, 0));
    let scheduled = object(serde_json::json!({"nextRunTime": "2026-12-01T07:00:00Z"}));
    let checked = last("a", at(2, 0), true);
    let due_now =
        |checked: &LastCheck| due(clock.now(), &scheduled, "a", Some(checked), &settings());
    assert_eq!(due_now(&checked), None, "an hour before: not yet");
    clock.set(at(6, 44) + TimeDelta::seconds(59));
    assert_eq!(due_now(&checked), None, "just before the lead");
    clock.set(at(6, 45));
    assert_eq!(due_now(&checked), Some(Due::AheadOfRun), "the lead begins");
    let rechecked = last("a", at(6, 45) + TimeDelta::seconds(2), true);
    clock.set(at(6, 50));
    assert_eq!(due_now(&rechecked), None, "once per run");
    clock.set(at(7, 0));
    assert_eq!(due_now(&checked), None, "the run itself is due: too late");
}

#[test]
fn a_failed_check_is_repeated_after_the_retry_period() {
    let plain = object(serde_json::json!({}));
    let failed = last("a", at(3, 0), false);
    let retry = TimeDelta::from_std(settings().retry_failed).unwrap();
    assert_eq!(
        due(
            at(3, 0) + retry - TimeDelta::seconds(1),
            &plain,
            "a",
            Some(&failed),
            &settings()
        ),
        None
    );
    assert_eq!(
        due(at(3, 0) + retry, &plain, "a", Some(&failed), &settings()),
        Some(Due::Retry)
    );
    let passed = last("a", at(3, 0), true);
    assert_eq!(
        due(
            at(3, 0) + retry * 10,
            &plain,
            "a",
            Some(&passed),
            &settings()
        ),
        None
    );
}

#[test]
fn the_freshest_record_wins_over_a_lagging_cache() {
    let older = last("a", at(3, 0), false);
    let newer = last("b", at(3, 1), true);
    assert_eq!(
        LastCheck::latest(Some(older.clone()), Some(newer.clone())),
        Some(newer.clone())
    );
    assert_eq!(
        LastCheck::latest(Some(newer.clone()), Some(older)),
        Some(newer.clone())
    );
    assert_eq!(LastCheck::latest(None, Some(newer.clone())), Some(newer));
    // A status with the condition but no fingerprint records no complete check.
    let partial = object(
        serde_json::json!({"conditions": [{"type": "Preflight", "status": "True",
        "reason": "Passed", "message": "", "lastTransitionTime": "2026-12-01T03:00:00Z"}]}),
    );
    assert_eq!(LastCheck::of_status(partial.status.as_ref()), None);
}

#[test]
fn the_key_is_checked_as_of_the_next_run() {
    let scheduled = object(serde_json::json!({"nextRunTime": "2026-12-01T07:00:00Z"}));
    assert_eq!(
        key_instant(&scheduled, at(6, 45)),
        (at(7, 0), Some(at(7, 0)))
    );
    // A run already due (or none scheduled) is checked as of now.
    assert_eq!(
        key_instant(&scheduled, at(7, 5)),
        (at(7, 5), Some(at(7, 0)))
    );
    let suspended = object(serde_json::json!({}));
    assert_eq!(key_instant(&suspended, at(6, 45)), (at(6, 45), None));
}

#[test]
fn an_outcome_becomes_the_condition_and_the_status_record() {
    let current = object(serde_json::json!({})).status.unwrap_or_default();
    let failed = Outcome::Failed(vec![
        Failure::new(
            ConditionReason::HostKeyMismatch,
            "SFTP destination x: HOST KEY MISMATCH",
        ),
        Failure::new(
            ConditionReason::DatabaseUnreachable,
            "database: cannot reach",
        ),
    ]);
    let status = after_check(&current, &failed, "abc", Some(at(7, 0)), Some(3), at(6, 45));
    let condition = status::condition(&status.conditions, ConditionType::Preflight).unwrap();
    assert_eq!(condition.status, "False");
    assert_eq!(condition.reason, "HostKeyMismatch");
    assert_eq!(
        condition.message,
        "SFTP destination x: HOST KEY MISMATCH Also: database: cannot reach"
    );
    assert_eq!(condition.observed_generation, Some(3));
    assert_eq!(
        status.preflight,
        Some(PreflightStatus {
            checked_at: Some(at(6, 45)),
            checked_for: Some(at(7, 0)),
            inputs: Some("abc".into()),
        })
    );
    // The same outcome again keeps the transition time; a pass moves it.
    let again = after_check(&status, &failed, "abc", None, Some(3), at(6, 50));
    let kept = status::condition(&again.conditions, ConditionType::Preflight).unwrap();
    assert_eq!(kept.last_transition_time, at(6, 45));
    let passed = Outcome::Passed {
        summary: "all good".into(),
    };
    let fixed = after_check(&again, &passed, "abc", None, Some(3), at(6, 55));
    let condition = status::condition(&fixed.conditions, ConditionType::Preflight).unwrap();
    assert_eq!(
        (condition.status.as_str(), condition.reason.as_str()),
        ("True", "Passed")
    );
    assert_eq!(condition.last_transition_time, at(6, 55));
}

#[test]
fn an_event_only_when_the_outcome_changes() {
    let passed = Outcome::Passed {
        summary: "the database answers".into(),
    };
    let host_key = Outcome::Failed(vec![Failure::new(ConditionReason::HostKeyMismatch, "m1")]);
    let host_key_again =
        Outcome::Failed(vec![Failure::new(ConditionReason::HostKeyMismatch, "m2")]);
    let login = Outcome::Failed(vec![Failure::new(
        ConditionReason::AuthenticationFailed,
        "bad login",
    )]);
    let (warning, reason, note) = change_event(None, &passed).expect("first outcome");
    assert!(!warning);
    assert_eq!(reason, EventReason::PreflightPassed);
    assert_eq!(note, "preflight passed: the database answers");
    assert_eq!(change_event(Some((true, "Passed")), &passed), None);
    let (warning, reason, note) =
        change_event(Some((true, "Passed")), &host_key).expect("passed to failed");
    assert!(warning);
    assert_eq!(reason, EventReason::PreflightFailed);
    assert_eq!(note, "preflight failed (HostKeyMismatch): m1");
    assert_eq!(
        change_event(Some((false, "HostKeyMismatch")), &host_key_again),
        None,
        "the same reason with other words is a repeat"
    );
    assert!(change_event(Some((false, "HostKeyMismatch")), &login).is_some());
    assert!(change_event(Some((false, "AuthenticationFailed")), &passed).is_some());
}

#[test]
fn messages_never_carry_a_registered_secret() {
    crate::redact::register_secret("s3cr3t-preflight-password");
    let failed = Outcome::Failed(vec![Failure::new(
        ConditionReason::AuthenticationFailed,
        "the server said: password s3cr3t-preflight-password refused",
    )]);
    assert!(!failed.message().contains("s3cr3t"), "{}", failed.message());
    let (_, _, note) = change_event(None, &failed).unwrap();
    assert!(!note.contains("s3cr3t"), "{note}");
    let long = Outcome::Failed(vec![Failure::new(
        ConditionReason::RemoteError,
        "x".repeat(5000),
    )]);
    assert!(long.message().chars().count() <= MESSAGE_LIMIT + 3);
}

#[test]
fn each_failure_gets_its_precise_reason() {
    let plain = object(serde_json::json!({}));
    let source = |err: SourceError| source_failure(&plain, &err);
    let unreachable = source(SourceError::Unreachable {
        target: "db.example.edu:5432/crm as exporter".into(),
        cause: "connection refused".into(),
    });
    assert_eq!(unreachable.reason, ConditionReason::DatabaseUnreachable);
    assert!(
        unreachable.message.starts_with("database (Secret db referenced by spec.source.secretRef): cannot reach PostgreSQL at db.example.edu:5432/crm"),
        "{}",
        unreachable.message
    );
    assert!(unreachable.message.contains("check the host and port"));
    for (err, reason) in [
        (
            SourceError::ConnectTimeout {
                target: "t".into(),
                timeout: std::time::Duration::from_secs(15),
            },
            ConditionReason::DatabaseUnreachable,
        ),
        (
            SourceError::AuthenticationFailed {
                target: "t".into(),
                user: "u".into(),
                cause: "c".into(),
            },
            ConditionReason::DatabaseAuthenticationFailed,
        ),
        (
            SourceError::DatabaseMissing {
                target: "t".into(),
                database: "d".into(),
            },
            ConditionReason::DatabaseMissing,
        ),
        (
            SourceError::Tls {
                target: "t".into(),
                reason: "r".into(),
            },
            ConditionReason::DatabaseTlsFailed,
        ),
        (
            SourceError::InvalidUrl { reason: "r".into() },
            ConditionReason::SecretInvalid,
        ),
        (
            SourceError::TableMissing {
                table: "interactions".into(),
            },
            ConditionReason::TableMissing,
        ),
        (
            SourceError::ColumnMissing {
                table: "interactions".into(),
                cause: "c".into(),
            },
            ConditionReason::ColumnMissing,
        ),
    ] {
        assert_eq!(source(err).reason, reason);
    }

    let sftp = |err: SftpError| sftp_failure(&plain, &err);
    let mismatch = sftp(SftpError::HostKeyMismatch {
        address: "sftp.example.edu:22".into(),
        key_type: "ssh-ed25519".into(),
        fingerprint: "SHA256:abc".into(),
    });
    assert_eq!(mismatch.reason, ConditionReason::HostKeyMismatch);
    assert!(
        mismatch.message.starts_with(
            "SFTP destination sftp://u@sftp.example.edu:22/exports: HOST KEY MISMATCH"
        )
    );
    assert_eq!(
        sftp(SftpError::AuthenticationFailed {
            address: "a".into(),
            username: "u".into(),
            method: "password",
            allowed: "publickey,password".into(),
            detail: "d".into(),
        })
        .reason,
        ConditionReason::AuthenticationFailed
    );
    assert_eq!(
        sftp(SftpError::DirectoryNotWritable {
            address: "a".into(),
            directory: "/exports".into(),
            detail: "permission denied".into(),
        })
        .reason,
        ConditionReason::DirectoryNotWritable
    );

    let missing = secret_failure(&SecretError::NotFound {
        namespace: "univ".into(),
        secret: "sftp".into(),
        field: SFTP_SECRET_FIELD,
    });
    assert_eq!(missing.reason, ConditionReason::SecretNotFound);
    assert!(
        missing.message.ends_with(
            "not found in namespace univ; create it, or correct the name in spec.destination.sftp.secretRef"
        ),
        "{}",
        missing.message
    );

    let key = key_failure(
        "key",
        "publicKey",
        &EncryptionKeyError::NoEncryptionSubkey,
        at(7, 0),
        at(6, 45),
    );
    assert_eq!(key.reason, ConditionReason::EncryptionKeyInvalid);
    assert!(
        key.message.starts_with("the OpenPGP key in Secret key (key \"publicKey\", referenced by spec.encryption.pgp.publicKeySecretRef) has no valid"),
        "{}",
        key.message
    );
    assert!(
        key.message
            .ends_with("(checked as of the run at 2026-12-01T07:00:00+00:00)")
    );
    // Valid now, expired at the run: it expires before the run.
    let expiring = key_failure(
        "key",
        "publicKey",
        &EncryptionKeyError::Expired(at(6, 50)),
        at(7, 0),
        at(6, 45),
    );
    assert!(
        expiring
            .message
            .contains(") expires at 2026-12-01T06:50:00+00:00, before the next run;"),
        "{}",
        expiring.message
    );
    let expired = key_failure(
        "key",
        "publicKey",
        &EncryptionKeyError::Expired(at(6, 0)),
        at(7, 0),
        at(6, 45),
    );
    assert!(
        expired
            .message
            .contains(") expired at 2026-12-01 06:00:00 UTC;"),
        "{}",
        expired.message
    );
    assert_eq!(
        view_failure(&ViewError::NoTxid {
            view: "donors".into()
        })
        .reason,
        ConditionReason::ViewInvalid
    );
}

#[test]
fn a_passed_check_says_what_it_covered() {
    let plain = object(serde_json::json!({}));
    let summary = passed_summary(&plain, Some(at(7, 0)));
    assert!(summary.contains("table interactions"), "{summary}");
    assert!(
        summary.contains("sftp://u@sftp.example.edu:22/exports"),
        "{summary}"
    );
    assert!(
        summary.contains("encrypt at the next run (2026-12-01T07:00:00+00:00)"),
        "{summary}"
    );
    let mut unencrypted = plain.clone();
    unencrypted.spec.encryption = None;
    assert!(!passed_summary(&unencrypted, None).contains("encryption"));
}

#[test]
fn the_probe_file_is_never_taken_for_a_delivery() {
    use crate::adapters::sftp::PROBE_PREFIX;
    use crate::operator::checker::decide::prune_may_concern;
    for name in [
        format!("{PROBE_PREFIX}0123abcd89abcdef"),
        format!("{PROBE_PREFIX}0123abcd89abcdef.renamed"),
    ] {
        assert!(name.starts_with('.'), "hidden: {name}");
        assert!(!prune_may_concern(&name), "{name}");
    }
}
