//! Unit tests of the Job builder and of Job states.

use super::build::{format_slot, short_hash};
use super::*;
use crate::resource::ScheduledExport;
use chrono::{DateTime, TimeZone, Utc};
use k8s_openapi::api::batch::v1::Job;
use serde_json::json;
use sha2::{Digest, Sha256};

fn slot() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, 8, 7, 30, 0).unwrap()
}

fn is_dns_label(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.ends_with(|c: char| c.is_ascii_alphanumeric())
}

fn object(name: &str) -> ScheduledExport {
    serde_json::from_value(json!({
        "apiVersion": "exports.crm.dev/v1alpha1",
        "kind": "ScheduledExport",
        "metadata": {
            "name": name,
            "namespace": "univ-example",
            "uid": "0b7c5f4e-1d2a-4c3b-9e8f-123456789abc",
        },
        "spec": {
            "fileType": "interactions",
            "time": "07:00",
            "source": {"secretRef": {"name": "crm-database"}},
            "destination": {"sftp": {
                "host": "sftp.example.edu",
                "username": "univ-example",
                "secretRef": {"name": "sftp-credentials"},
            }},
        },
    }))
    .unwrap()
}

fn settings() -> JobSettings {
    JobSettings {
        artifact_store_url: "s3://artifacts/prefix".to_string(),
        log_format: Some("json".to_string()),
        ..JobSettings::default()
    }
}

fn run_now(token: &str) -> RunKind {
    RunKind::RunNow {
        token: token.to_string(),
    }
}

#[test]
fn short_names_are_kept_and_slots_give_the_utc_minute() {
    assert_eq!(
        job_name("interactions-daily", slot(), &RunKind::Scheduled),
        "interactions-daily-202603080730"
    );
    let name = job_name("interactions-daily", slot(), &run_now("2026-03-08"));
    let hash = name.strip_prefix("interactions-daily-now-").unwrap();
    assert_eq!(hash.len(), 8);
    assert!(hash.chars().all(|c| c.is_ascii_hexdigit()));
}

#[test]
fn job_names_are_deterministic_and_distinct() {
    let long = "a".repeat(253);
    for object_name in ["interactions-daily", long.as_str()] {
        for kind in [RunKind::Scheduled, run_now("t1")] {
            assert_eq!(
                job_name(object_name, slot(), &kind),
                job_name(object_name, slot(), &kind)
            );
        }
        let next_day = slot() + chrono::Duration::days(1);
        assert_ne!(
            job_name(object_name, slot(), &RunKind::Scheduled),
            job_name(object_name, next_day, &RunKind::Scheduled)
        );
        assert_ne!(
            job_name(object_name, slot(), &run_now("t1")),
            job_name(object_name, slot(), &run_now("t2"))
        );
        // Run-now names do not depend on the trigger instant: the token alone identifies them.
        assert_eq!(
            job_name(object_name, slot(), &run_now("t1")),
            job_name(object_name, next_day, &run_now("t1"))
        );
    }
    // Pin the hash so a change of algorithm (which would re-run slots) fails loudly.
    assert_eq!(short_hash("t1"), {
        let mut h = hex::encode(Sha256::digest(b"t1"));
        h.truncate(8);
        h
    });
}

#[test]
fn job_names_are_dns_labels_of_at_most_63_characters() {
    let names = [
        "a".repeat(253),
        format!("{}.{}", "b".repeat(120), "c".repeat(132)),
        "exports.univ-example".to_string(),
        "a.b".to_string(),
        "x".repeat(50),
        "x".repeat(51),
        format!("{}-{}", "y".repeat(40), "z".repeat(20)),
        "-.-".to_string(),
    ];
    for object_name in &names {
        for kind in [RunKind::Scheduled, run_now("token with spaces $(HOME)")] {
            let name = job_name(object_name, slot(), &kind);
            assert!(is_dns_label(&name), "{object_name} -> {name}");
        }
    }
    assert_eq!(
        job_name(&"x".repeat(50), slot(), &RunKind::Scheduled).len(),
        63
    );
}

#[test]
fn rewritten_and_long_names_never_collide() {
    let prefix = "p".repeat(60);
    let first = format!("{prefix}-first");
    let second = format!("{prefix}-second");
    for kind in [RunKind::Scheduled, run_now("t")] {
        assert_ne!(
            job_name(&first, slot(), &kind),
            job_name(&second, slot(), &kind)
        );
        assert_ne!(
            job_name("a.b", slot(), &kind),
            job_name("a-b", slot(), &kind)
        );
    }
    // The readable part survives the rewrite.
    assert!(job_name("exports.univ", slot(), &RunKind::Scheduled).starts_with("exports-univ-"));
}

#[test]
fn build_job_sets_owner_labels_and_annotations() {
    let job = build_job(
        &object("interactions-daily"),
        slot(),
        &RunKind::Scheduled,
        &settings(),
    )
    .unwrap();
    let meta = &job.metadata;
    assert_eq!(
        meta.name.as_deref(),
        Some("interactions-daily-202603080730")
    );
    assert_eq!(meta.namespace.as_deref(), Some("univ-example"));
    let owners = meta.owner_references.as_ref().unwrap();
    assert_eq!(owners.len(), 1);
    let owner = &owners[0];
    assert_eq!(owner.api_version, "exports.crm.dev/v1alpha1");
    assert_eq!(owner.kind, "ScheduledExport");
    assert_eq!(owner.name, "interactions-daily");
    assert_eq!(owner.uid, "0b7c5f4e-1d2a-4c3b-9e8f-123456789abc");
    assert_eq!(owner.controller, Some(true));
    assert_eq!(owner.block_owner_deletion, Some(true));

    let labels = meta.labels.as_ref().unwrap();
    assert_eq!(labels[LABEL_APP_NAME], "scheduled-exports");
    assert_eq!(labels[LABEL_COMPONENT], "export");
    assert_eq!(
        labels[LABEL_OWNER_UID],
        "0b7c5f4e-1d2a-4c3b-9e8f-123456789abc"
    );
    assert_eq!(labels[LABEL_OWNER_NAME], "interactions-daily");
    let template_labels = job
        .spec
        .as_ref()
        .unwrap()
        .template
        .metadata
        .as_ref()
        .unwrap()
        .labels
        .as_ref()
        .unwrap();
    assert_eq!(template_labels, labels);

    let annotations = meta.annotations.as_ref().unwrap();
    assert_eq!(annotations[ANNOTATION_SLOT], "2026-03-08T07:30:00Z");
    assert_eq!(annotations[ANNOTATION_RUN_KIND], "scheduled");
    assert!(!annotations.contains_key(ANNOTATION_RUN_NOW_TOKEN));
    assert_eq!(job_slot(&job), Some(slot()));
    assert_eq!(job_run_kind(&job), Some(RunKind::Scheduled));

    let now = build_job(
        &object("interactions-daily"),
        slot(),
        &run_now("abc"),
        &settings(),
    )
    .unwrap();
    let annotations = now.metadata.annotations.as_ref().unwrap();
    assert_eq!(annotations[ANNOTATION_RUN_KIND], "run-now");
    assert_eq!(annotations[ANNOTATION_RUN_NOW_TOKEN], "abc");
    assert_eq!(job_run_kind(&now), Some(run_now("abc")));
    assert!(
        now.metadata
            .name
            .as_deref()
            .unwrap()
            .starts_with("interactions-daily-now-")
    );
}

#[test]
fn a_full_export_job_carries_its_token_and_tells_the_export_to_ignore_the_watermark() {
    let env_of = |job: &Job| -> Vec<(String, Option<String>)> {
        job.spec
            .as_ref()
            .unwrap()
            .template
            .spec
            .as_ref()
            .unwrap()
            .containers[0]
            .env
            .clone()
            .unwrap_or_default()
            .into_iter()
            .map(|var| (var.name, var.value))
            .collect()
    };
    let kind = RunKind::FullExport {
        token: "abc".into(),
    };
    let job = build_job(&object("interactions-daily"), slot(), &kind, &settings()).unwrap();
    let annotations = job.metadata.annotations.as_ref().unwrap();
    assert_eq!(annotations[ANNOTATION_RUN_KIND], "full-export");
    assert_eq!(annotations[ANNOTATION_FULL_EXPORT_TOKEN], "abc");
    assert_eq!(job_run_kind(&job), Some(kind.clone()));
    let name = job.metadata.name.clone().unwrap();
    assert!(name.starts_with("interactions-daily-all-"), "{name}");
    assert_eq!(
        name.len(),
        job_name("interactions-daily", slot(), &run_now("abc")).len()
    );
    assert_ne!(
        name,
        job_name("interactions-daily", slot(), &run_now("abc"))
    );
    assert!(env_of(&job).contains(&(ENV_FULL_EXPORT.to_string(), Some("true".to_string()))));
    // No other kind of run ignores the watermark.
    for other in [RunKind::Scheduled, run_now("abc")] {
        let job = build_job(&object("interactions-daily"), slot(), &other, &settings()).unwrap();
        assert!(env_of(&job).iter().all(|(name, _)| name != ENV_FULL_EXPORT));
    }
}

#[test]
fn long_object_names_are_left_out_of_labels() {
    let name = "n".repeat(64);
    let job = build_job(&object(&name), slot(), &RunKind::Scheduled, &settings()).unwrap();
    let labels = job.metadata.labels.unwrap();
    assert!(!labels.contains_key(LABEL_OWNER_NAME));
    assert!(labels.contains_key(LABEL_OWNER_UID));
    assert!(job.metadata.name.unwrap().len() <= 63);
}

#[test]
fn build_job_pod_runs_the_export_command_with_its_environment() {
    let job = build_job(
        &object("interactions-daily"),
        slot() + chrono::Duration::milliseconds(250),
        &RunKind::Scheduled,
        &settings(),
    )
    .unwrap();
    let job_name = job.metadata.name.clone().unwrap();
    let pod = job.spec.unwrap().template.spec.unwrap();
    assert_eq!(pod.containers.len(), 1);
    let container = &pod.containers[0];
    assert_eq!(container.name, "export");
    assert_eq!(container.image, Some(settings().image));
    assert_eq!(
        container.command.as_deref().unwrap(),
        [
            "scheduled-exports",
            "export",
            "--namespace",
            "univ-example",
            "--name",
            "interactions-daily",
            "--slot",
            "2026-03-08T07:30:00.250Z",
        ]
    );
    assert_eq!(container.args, None);
    let env: BTreeMap<_, _> = container
        .env
        .as_ref()
        .unwrap()
        .iter()
        .map(|var| (var.name.as_str(), var.value.as_deref().unwrap()))
        .collect();
    assert_eq!(
        env,
        BTreeMap::from([
            ("ARTIFACT_STORE_URL", "s3://artifacts/prefix"),
            ("SPOOL_DIR", "/spool"),
            ("TMPDIR", "/spool"),
            ("JOB_NAME", job_name.as_str()),
            ("EXPORT_OBJECT_UID", "0b7c5f4e-1d2a-4c3b-9e8f-123456789abc"),
            ("EXPORT_TIMEOUT", "30s"),
            ("SECRETS_DIR", "/secrets"),
            ("LOG_FORMAT", "json"),
        ])
    );
    let mounts = container.volume_mounts.as_ref().unwrap();
    assert_eq!(mounts.len(), 3, "the spool and the two Secrets: {mounts:?}");
    assert_eq!(mounts[0].name, "spool");
    assert_eq!(mounts[0].mount_path, "/spool");
    let volumes = pod.volumes.as_ref().unwrap();
    assert_eq!(volumes.len(), 3);
    assert_eq!(volumes[0].name, "spool");
    assert_eq!(
        volumes[0].empty_dir.as_ref().unwrap().size_limit,
        Some(Quantity("10Gi".into()))
    );
    assert_eq!(
        container.resources,
        Some(JobSettings::default().resources.clone())
    );
    assert_eq!(
        container.termination_message_policy.as_deref(),
        Some("FallbackToLogsOnError")
    );
    assert_eq!(
        pod.service_account_name.as_deref(),
        Some("scheduled-export-interactions-daily")
    );
    assert_eq!(pod.automount_service_account_token, Some(true));
    assert_eq!(pod.enable_service_links, Some(false));

    let without_format = JobSettings {
        log_format: None,
        ..settings()
    };
    let job = build_job(
        &object("interactions-daily"),
        slot(),
        &RunKind::Scheduled,
        &without_format,
    )
    .unwrap();
    let container = &job.spec.unwrap().template.spec.unwrap().containers[0];
    assert!(
        !container
            .env
            .as_ref()
            .unwrap()
            .iter()
            .any(|var| var.name == "LOG_FORMAT")
    );
}

#[test]
fn artifact_store_credentials_come_from_a_secret_only_when_named() {
    let container = |settings: &JobSettings| {
        let job = build_job(
            &object("interactions-daily"),
            slot(),
            &RunKind::Scheduled,
            settings,
        )
        .unwrap();
        job.spec.unwrap().template.spec.unwrap().containers[0].clone()
    };
    assert_eq!(container(&settings()).env_from, None);
    let with_secret = JobSettings {
        artifact_store_secret: Some("artifact-store".to_string()),
        ..settings()
    };
    let env_from = container(&with_secret).env_from.unwrap();
    let secret = env_from[0].secret_ref.as_ref().unwrap();
    assert_eq!(secret.name, "artifact-store");
    assert_eq!(secret.optional, Some(false));
}

#[test]
fn dollar_signs_reach_the_process_unexpanded() {
    let odd = JobSettings {
        artifact_store_url: "s3://bucket/$(HOME)/x".to_string(),
        ..settings()
    };
    let job = build_job(
        &object("interactions-daily"),
        slot(),
        &RunKind::Scheduled,
        &odd,
    )
    .unwrap();
    let env = job.spec.unwrap().template.spec.unwrap().containers[0]
        .env
        .clone()
        .unwrap();
    let url = env
        .iter()
        .find(|var| var.name == "ARTIFACT_STORE_URL")
        .unwrap();
    assert_eq!(url.value.as_deref(), Some("s3://bucket/$$(HOME)/x"));
}

#[test]
fn build_job_meets_restricted_pod_security() {
    let job = build_job(
        &object("interactions-daily"),
        slot(),
        &RunKind::Scheduled,
        &settings(),
    )
    .unwrap();
    let pod = job.spec.unwrap().template.spec.unwrap();
    assert_eq!(pod.restart_policy.as_deref(), Some("Never"));
    let pod_security = pod.security_context.as_ref().unwrap();
    assert_eq!(pod_security.run_as_non_root, Some(true));
    assert_eq!(pod_security.run_as_user, Some(65532));
    assert_eq!(pod_security.run_as_group, Some(65532));
    assert_eq!(pod_security.fs_group, Some(65532));
    assert_eq!(
        pod_security.seccomp_profile.as_ref().unwrap().type_,
        "RuntimeDefault"
    );
    let security = pod.containers[0].security_context.as_ref().unwrap();
    assert_eq!(security.allow_privilege_escalation, Some(false));
    assert_eq!(security.read_only_root_filesystem, Some(true));
    assert_eq!(security.run_as_non_root, Some(true));
    assert_eq!(security.privileged, None);
    let capabilities = security.capabilities.as_ref().unwrap();
    assert_eq!(capabilities.drop.as_deref(), Some(&["ALL".to_string()][..]));
    assert_eq!(capabilities.add, None);
}

#[test]
fn build_job_fails_at_once_on_bad_input() {
    let job = build_job(
        &object("interactions-daily"),
        slot(),
        &RunKind::Scheduled,
        &settings(),
    )
    .unwrap();
    let spec = job.spec.unwrap();
    assert_eq!(spec.backoff_limit, Some(2));
    assert_eq!(spec.active_deadline_seconds, Some(3600));
    assert_eq!(spec.pod_replacement_policy.as_deref(), Some("Failed"));
    // podFailurePolicy is only valid with restartPolicy Never.
    assert_eq!(
        spec.template
            .spec
            .as_ref()
            .unwrap()
            .restart_policy
            .as_deref(),
        Some("Never")
    );
    let rules = spec.pod_failure_policy.unwrap().rules;
    let fail = &rules[0];
    assert_eq!(fail.action, "FailJob");
    let codes = fail.on_exit_codes.as_ref().unwrap();
    assert_eq!(codes.container_name.as_deref(), Some("export"));
    assert_eq!(codes.operator, "In");
    assert_eq!(codes.values, vec![2]);
    assert!(rules.iter().any(|rule| {
        rule.action == "Ignore"
            && rule
                .on_pod_conditions
                .as_ref()
                .is_some_and(|patterns| patterns[0].type_ == "DisruptionTarget")
    }));
}

#[test]
fn build_job_refuses_incomplete_objects_and_settings() {
    for field in ["name", "namespace", "uid"] {
        let mut object = object("interactions-daily");
        match field {
            "name" => object.metadata.name = None,
            "namespace" => object.metadata.namespace = None,
            _ => object.metadata.uid = None,
        }
        assert_eq!(
            build_job(&object, slot(), &RunKind::Scheduled, &settings()),
            Err(JobError::MissingMetadata { field })
        );
    }
    assert_eq!(
        build_job(
            &object("interactions-daily"),
            slot(),
            &RunKind::Scheduled,
            &JobSettings::default()
        ),
        Err(JobError::MissingSetting {
            setting: "artifact_store_url"
        })
    );
}

fn job_with_status(status: serde_json::Value) -> Job {
    serde_json::from_value(json!({
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": "j"},
        "status": status,
    }))
    .unwrap()
}

#[test]
fn a_succeeded_job_lasts_until_completion_or_until_success_criteria_were_met() {
    let completed = job_with_status(json!({
        "startTime": "2026-12-01T07:00:00Z",
        "completionTime": "2026-12-01T07:00:42Z",
        "conditions": [{"type": "Complete", "status": "True", "lastTransitionTime": "2026-12-01T07:00:42Z"}],
    }));
    assert_eq!(succeeded_job_seconds(&completed), Some(42.0));
    // Seen between the two conditions: no completionTime yet.
    let criteria_met = job_with_status(json!({
        "startTime": "2026-12-01T07:00:00Z",
        "conditions": [{"type": "SuccessCriteriaMet", "status": "True", "lastTransitionTime": "2026-12-01T07:00:40Z"}],
    }));
    assert_eq!(succeeded_job_seconds(&criteria_met), Some(40.0));
    let running = job_with_status(json!({"startTime": "2026-12-01T07:00:00Z", "active": 1}));
    assert_eq!(succeeded_job_seconds(&running), None);
}

#[test]
fn job_state_follows_conditions_and_counts() {
    assert_eq!(job_state(&job_with_status(json!({}))), JobState::Pending);
    assert_eq!(
        job_state(&job_with_status(json!({"active": 1, "ready": 0}))),
        JobState::Pending
    );
    assert_eq!(
        job_state(&job_with_status(json!({"active": 1, "ready": 1}))),
        JobState::Running
    );
    assert_eq!(
        job_state(&job_with_status(json!({"active": 0, "terminating": 1}))),
        JobState::Running
    );
    let complete = job_with_status(json!({"succeeded": 1, "conditions": [
        {"type": "SuccessCriteriaMet", "status": "True"},
        {"type": "Complete", "status": "True"},
    ]}));
    assert_eq!(job_state(&complete), JobState::Succeeded);
    assert!(job_settled(&complete));
    let interim = job_with_status(json!({"terminating": 1, "conditions": [
        {"type": "SuccessCriteriaMet", "status": "True"},
    ]}));
    assert_eq!(job_state(&interim), JobState::Succeeded);
    assert!(!job_settled(&interim));
    let failed = job_with_status(json!({"failed": 3, "conditions": [
        {"type": "FailureTarget", "status": "True", "reason": "BackoffLimitExceeded",
         "message": "Job has reached the specified backoff limit"},
        {"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded",
         "message": "Job has reached the specified backoff limit"},
    ]}));
    assert_eq!(
        job_state(&failed),
        JobState::Failed {
            reason: "BackoffLimitExceeded".into(),
            message: "Job has reached the specified backoff limit".into(),
        }
    );
    assert!(job_settled(&failed));
    let failing = job_with_status(json!({"terminating": 1, "conditions": [
        {"type": "FailureTarget", "status": "True", "reason": "PodFailurePolicy",
         "message": "Container export for pod ns/p failed with exit code 2"},
    ]}));
    assert_eq!(
        job_state(&failing),
        JobState::Failed {
            reason: "PodFailurePolicy".into(),
            message: "Container export for pod ns/p failed with exit code 2".into(),
        }
    );
    assert!(!job_settled(&failing));
    // Conditions that are not True say nothing.
    let not_yet = job_with_status(json!({"active": 1, "ready": 1, "conditions": [
        {"type": "Failed", "status": "False"},
        {"type": "Complete", "status": "Unknown"},
    ]}));
    assert_eq!(job_state(&not_yet), JobState::Running);
    assert!(!job_settled(&not_yet));
    let bare = job_with_status(json!({"conditions": [{"type": "Failed", "status": "True"}]}));
    assert_eq!(
        job_state(&bare),
        JobState::Failed {
            reason: "Failed".into(),
            message: String::new()
        }
    );
    assert_eq!(job_state(&bare).phase().as_str(), "Failed");
    assert_eq!(JobState::Pending.phase().as_str(), "Pending");
}

#[test]
fn foreign_annotations_read_as_none() {
    let job = job_with_status(json!({}));
    assert_eq!(job_slot(&job), None);
    assert_eq!(job_run_kind(&job), None);
    let mut odd = job.clone();
    odd.metadata.annotations = Some(BTreeMap::from([
        (ANNOTATION_SLOT.to_string(), "yesterday".to_string()),
        (ANNOTATION_RUN_KIND.to_string(), "run-now".to_string()),
    ]));
    assert_eq!(job_slot(&odd), None);
    assert_eq!(job_run_kind(&odd), None);
}

/// A Job of the given outcome (`succeeded`, `failed`, `active`, `failing`) for a slot `day`
/// days after the test slot.
fn history_job(name: &str, day: i64, outcome: &str) -> Job {
    let status = match outcome {
        "succeeded" => json!({"conditions": [{"type": "Complete", "status": "True"}]}),
        "failed" => json!({"conditions": [{"type": "Failed", "status": "True"}]}),
        "failing" => {
            json!({"terminating": 1, "conditions": [{"type": "FailureTarget", "status": "True"}]})
        }
        _ => json!({"active": 1, "ready": 1}),
    };
    let slot = slot() + chrono::Duration::days(day);
    serde_json::from_value(json!({
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": name,
            "creationTimestamp": "2026-01-01T00:00:00Z",
            "annotations": {ANNOTATION_SLOT: format_slot(slot)},
        },
        "status": status,
    }))
    .unwrap()
}

#[test]
fn finished_jobs_to_delete_keeps_the_newest_of_each_kind() {
    let jobs = vec![
        history_job("s1", 1, "succeeded"),
        history_job("s5", 5, "succeeded"),
        history_job("f2", 2, "failed"),
        history_job("s3", 3, "succeeded"),
        history_job("f4", 4, "failed"),
        history_job("a0", 0, "active"),
        history_job("s2", 2, "succeeded"),
        history_job("f6", 6, "failed"),
    ];
    let mut doomed = finished_jobs_to_delete(&jobs, 2, 1);
    doomed.sort();
    assert_eq!(doomed, vec!["f2", "f4", "s1", "s2"]);

    let mut all = finished_jobs_to_delete(&jobs, 0, 0);
    all.sort();
    assert_eq!(all, vec!["f2", "f4", "f6", "s1", "s2", "s3", "s5"]);
    assert!(finished_jobs_to_delete(&jobs, 10, 10).is_empty());
}

#[test]
fn finished_jobs_to_delete_spares_active_terminating_and_deleted_jobs() {
    let mut deleted = history_job("gone", 0, "succeeded");
    deleted.metadata.deletion_timestamp = deleted.metadata.creation_timestamp.clone();
    let jobs = vec![
        history_job("a1", 1, "active"),
        history_job("p2", 2, "pending-ish"),
        history_job("t0", 0, "failing"),
        deleted,
    ];
    assert!(finished_jobs_to_delete(&jobs, 0, 0).is_empty());
}

#[test]
fn creation_time_breaks_slot_ties() {
    let mut older = history_job("older", 1, "succeeded");
    let mut newer = history_job("newer", 1, "succeeded");
    older.metadata.creation_timestamp =
        serde_json::from_value(json!("2026-01-01T00:00:00Z")).unwrap();
    newer.metadata.creation_timestamp =
        serde_json::from_value(json!("2026-01-02T00:00:00Z")).unwrap();
    assert_eq!(
        finished_jobs_to_delete(&[newer, older], 1, 0),
        vec!["older"]
    );
}

#[test]
fn an_artifact_store_claim_is_mounted_at_the_file_url_path_and_refused_for_s3() {
    let with_claim = JobSettings {
        artifact_store_url: "file:///var/lib/scheduled-exports/artifacts".to_string(),
        artifact_store_claim: Some("exports-artifacts".to_string()),
        ..settings()
    };
    let job = build_job(&object("daily"), slot(), &RunKind::Scheduled, &with_claim).unwrap();
    let pod = job.spec.unwrap().template.spec.unwrap();
    let volume = pod
        .volumes
        .unwrap()
        .into_iter()
        .find(|volume| volume.name == "artifacts")
        .expect("artifact volume");
    assert_eq!(
        volume.persistent_volume_claim.unwrap().claim_name,
        "exports-artifacts"
    );
    let mount = pod.containers[0]
        .volume_mounts
        .clone()
        .unwrap()
        .into_iter()
        .find(|mount| mount.name == "artifacts")
        .expect("artifact mount");
    assert_eq!(mount.mount_path, "/var/lib/scheduled-exports/artifacts");

    let s3_with_claim = JobSettings {
        artifact_store_claim: Some("exports-artifacts".to_string()),
        ..settings()
    };
    let err = build_job(
        &object("daily"),
        slot(),
        &RunKind::Scheduled,
        &s3_with_claim,
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("exports-artifacts") && err.contains("file://"),
        "{err}"
    );
}

#[test]
fn a_job_belongs_to_the_object_its_controller_reference_names() {
    let object = object("daily");
    let job = build_job(&object, slot(), &RunKind::Scheduled, &settings()).unwrap();
    assert!(owned_by(&job, "0b7c5f4e-1d2a-4c3b-9e8f-123456789abc"));
    // A new object of the same name has another UID: the old Job is not its run, even if
    // someone gave it the new UID's label.
    let mut relabelled = job.clone();
    relabelled.metadata.labels.as_mut().unwrap().insert(
        LABEL_OWNER_UID.to_string(),
        "11111111-2222-3333-4444-555555555555".to_string(),
    );
    assert!(!owned_by(
        &relabelled,
        "11111111-2222-3333-4444-555555555555"
    ));
    // Orphaned (owner reference removed by an orphaning delete) or owned without being the
    // controller: nobody's run.
    let mut orphaned = job.clone();
    orphaned.metadata.owner_references = None;
    assert!(!owned_by(&orphaned, "0b7c5f4e-1d2a-4c3b-9e8f-123456789abc"));
    let mut not_controller = job;
    not_controller.metadata.owner_references.as_mut().unwrap()[0].controller = Some(false);
    assert!(!owned_by(
        &not_controller,
        "0b7c5f4e-1d2a-4c3b-9e8f-123456789abc"
    ));
    assert!(!owned_by(&not_controller, ""));
}

#[test]
fn the_encryption_keys_secret_is_mounted_beside_the_others_once() {
    let mut encrypted = object("interactions-daily");
    encrypted.spec.encryption = Some(crate::resource::Encryption {
        pgp: crate::resource::PgpEncryption {
            public_key_secret_ref: crate::resource::KeySecretReference {
                name: "institution-pgp-key".into(),
                key: "publicKey".into(),
            },
        },
    });
    let mounted = |object: &ScheduledExport| -> Vec<(String, String)> {
        let job = build_job(object, slot(), &RunKind::Scheduled, &settings()).unwrap();
        let pod = job.spec.unwrap().template.spec.unwrap();
        pod.containers[0]
            .volume_mounts
            .clone()
            .unwrap()
            .into_iter()
            .filter(|mount| mount.name != "spool")
            .map(|mount| (mount.name, mount.mount_path))
            .collect()
    };
    assert_eq!(
        mounted(&encrypted),
        [
            (
                "source-secret".to_string(),
                "/secrets/crm-database".to_string()
            ),
            ("sftp-secret".into(), "/secrets/sftp-credentials".into()),
            (
                "encryption-key-secret".into(),
                "/secrets/institution-pgp-key".into()
            ),
        ]
    );
    // A key kept in the SFTP Secret is mounted once, with it.
    if let Some(encryption) = encrypted.spec.encryption.as_mut() {
        encryption.pgp.public_key_secret_ref.name = "sftp-credentials".into();
    }
    assert_eq!(mounted(&encrypted).len(), 2);
}
