//! A full export on demand and the run history, against the real test bed: the export runs as the
//! export Job runs it (`EXPORT_FULL` in its environment), and the delivered files are read from
//! the SFTP directory as the institution reads them.

mod common;

use common::fixture::{Fixture, read_csv};
use common::*;
use scheduled_exports::resource::ScheduledExport;
use sha2::Digest;

fn stderr(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// `scheduled-exports export` of `name` at `slot`, as a full-export Job runs it.
fn full_export(fixture: &Fixture, name: &str, slot: &str) -> std::process::Output {
    run_binary(
        &[
            "export",
            "--namespace",
            &fixture.namespace,
            "--name",
            name,
            "--slot",
            slot,
            "--artifact-store",
            &fixture.artifact_store,
            "--timeout",
            "5s",
        ],
        &[("EXPORT_FULL", "true".to_string())],
    )
}

/// (status, reason, message) of the Exported condition.
fn exported(object: &ScheduledExport) -> (String, String, String) {
    let condition = object
        .status
        .as_ref()
        .and_then(|status| status.conditions.iter().find(|c| c.type_ == "Exported"))
        .expect("an Exported condition");
    (
        condition.status.clone(),
        condition.reason.clone(),
        condition.message.clone(),
    )
}

/// The ids of a delivered file, ascending.
fn file_ids(fixture: &Fixture, file: &str) -> Vec<i64> {
    let (_, rows) = read_csv(&fixture.local_dir.join(file));
    let mut ids: Vec<i64> = rows
        .iter()
        .map(|row| row[0].parse().expect("numeric id"))
        .collect();
    ids.sort();
    ids
}

#[tokio::test]
async fn a_full_export_delivers_every_row_and_the_next_file_continues_from_it() {
    let fixture = Fixture::new("sx-full", 12).await;
    let db = connect_database(&fixture.database_url).await;

    let first = fixture.export("daily", "2026-11-30T12:00:00Z");
    assert!(first.status.success(), "{}", stderr(&first));
    db.batch_execute("UPDATE interactions SET summary = 'edited' WHERE interaction_id = (SELECT min(interaction_id) FROM interactions)")
        .await
        .expect("edit a row");
    let incremental = fixture.export("daily", "2026-12-01T12:00:00Z");
    assert!(incremental.status.success(), "{}", stderr(&incremental));
    assert_eq!(
        file_ids(&fixture, "interactions-20261201T120000Z.csv").len(),
        1,
        "an ordinary run holds only the edited row"
    );

    // Everything again, although nothing changed since the last file.
    let full = full_export(&fixture, "daily", "2026-12-01T15:30:00Z");
    assert!(full.status.success(), "{}", stderr(&full));
    let all_ids: Vec<i64> = db
        .query("SELECT interaction_id FROM interactions ORDER BY 1", &[])
        .await
        .expect("ids")
        .iter()
        .map(|row| row.get(0))
        .collect();
    assert_eq!(all_ids.len(), 12);
    let (headers, rows) = read_csv(&fixture.local_dir.join("interactions-20261201T153000Z.csv"));
    assert_eq!(headers, INTERACTION_COLUMNS);
    assert_eq!(
        file_ids(&fixture, "interactions-20261201T153000Z.csv"),
        all_ids
    );
    assert!(rows.iter().any(|row| row[7] == "edited"), "latest versions");

    let object = fixture.object("daily").await;
    let (status, reason, message) = exported(&object);
    assert_eq!(
        (status.as_str(), reason.as_str()),
        ("True", "FullExportRequested")
    );
    assert!(
        message.contains("12 rows") && message.contains("every row"),
        "{message}"
    );
    let status = object.status.expect("status");
    let last_run = status.last_run.clone().expect("lastRun");
    assert_eq!(last_run.every_row, Some(true));
    assert_eq!(
        last_run.window_start, None,
        "the window started from nothing"
    );
    assert_eq!(last_run.window_end, status.watermark);
    let full_window_end = last_run.window_end.clone();

    // The watermark continues from the full export: the next ordinary run holds only what
    // changed after it.
    db.batch_execute(
        "INSERT INTO interactions (interaction_id, constituent_id, summary) VALUES (990001, 1, 'after the full export')",
    )
    .await
    .expect("insert");
    let next = fixture.export("daily", "2026-12-02T12:00:00Z");
    assert!(next.status.success(), "{}", stderr(&next));
    assert_eq!(
        file_ids(&fixture, "interactions-20261202T120000Z.csv"),
        [990001]
    );
    let status = fixture.object("daily").await.status.expect("status");
    let last_run = status.last_run.expect("lastRun");
    assert_eq!(last_run.every_row, Some(false));
    assert_eq!(
        last_run.window_start, full_window_end,
        "the next window starts where the full export ended"
    );
    fixture.cleanup().await;
}

#[tokio::test]
async fn the_history_lists_what_each_run_sent_or_why_it_failed_newest_first() {
    let fixture = Fixture::new("sx-history", 6).await;
    let db = connect_database(&fixture.database_url).await;
    let first = fixture.export("daily", "2026-11-28T12:00:00Z");
    assert!(first.status.success(), "{}", stderr(&first));

    // A run that fails: the source's password is wrong. Neither it nor any other secret may
    // reach the history.
    let wrong_password = format!("wrong-{}", random_suffix());
    let mut bad_url = url::Url::parse(&fixture.database_url).expect("url");
    bad_url
        .set_password(Some(&wrong_password))
        .expect("password");
    fixture.set_database_url(bad_url.as_str()).await;
    let failed = fixture.export("daily", "2026-11-29T12:00:00Z");
    assert!(
        !failed.status.success(),
        "the run with a wrong password fails"
    );
    fixture.set_database_url(&fixture.database_url).await;

    db.batch_execute("UPDATE interactions SET summary = 'changed' WHERE interaction_id IN (SELECT interaction_id FROM interactions ORDER BY 1 LIMIT 2)")
        .await
        .expect("edit rows");
    let third = fixture.export("daily", "2026-11-30T12:00:00Z");
    assert!(third.status.success(), "{}", stderr(&third));

    // Read it as the institution would: kubectl get sx -o json.
    let (ok, out, err) = kubectl(&["-n", &fixture.namespace, "get", "sx", "daily", "-o", "json"]);
    assert!(ok, "{err}");
    let object: serde_json::Value = serde_json::from_str(&out).expect("json");
    let history = object["status"]["history"]
        .as_array()
        .expect("status.history");
    let slots: Vec<&str> = history
        .iter()
        .map(|entry| entry["slot"].as_str().expect("slot"))
        .collect();
    assert_eq!(
        slots,
        [
            "2026-11-30T12:00:00Z",
            "2026-11-29T12:00:00Z",
            "2026-11-28T12:00:00Z"
        ],
        "newest first"
    );
    // Each delivered entry describes the very file on the server.
    for (entry, rows, every_row) in [(&history[0], 2, false), (&history[2], 6, true)] {
        assert_eq!(entry["phase"], "Succeeded", "{entry}");
        let name = entry["fileName"].as_str().expect("fileName");
        let bytes = std::fs::read(fixture.local_dir.join(name)).expect("the delivered file");
        let (_, file_rows) = read_csv(&fixture.local_dir.join(name));
        assert_eq!(file_rows.len(), rows, "{name}");
        assert_eq!(entry["rows"], rows);
        assert_eq!(entry["bytes"], bytes.len());
        assert_eq!(
            entry["sha256"],
            hex::encode(sha2::Sha256::digest(&bytes)),
            "{name}"
        );
        assert_eq!(entry["everyRow"], every_row);
        assert!(entry["windowEnd"].is_string());
        assert_eq!(entry["windowStart"].is_string(), !every_row, "{entry}");
    }
    assert_eq!(
        history[0]["windowStart"], history[2]["windowEnd"],
        "the failed run moved nothing: the next window starts where the last delivered one ended"
    );
    let failure = &history[1];
    assert_eq!(failure["phase"], "Failed");
    assert_eq!(failure["reason"], "DatabaseFailed", "{failure}");
    assert!(
        failure["message"]
            .as_str()
            .is_some_and(|message| message.contains("authentication failed")),
        "{failure}"
    );
    assert!(failure.get("fileName").is_none() && failure.get("sha256").is_none());
    let text = serde_json::to_string(history).expect("text");
    for secret in secret_values().into_iter().chain([wrong_password]) {
        assert!(!text.contains(&secret), "a secret in status.history");
    }
    fixture.cleanup().await;
}

/// The annotation end to end: the controller (in this process, on a manual clock) creates the
/// full-export Job, whose Pod runs the project's image on the test bed's node and delivers every
/// row although the watermark says nothing changed.
#[tokio::test]
async fn the_full_export_annotation_runs_one_job_whose_file_holds_every_row() {
    use std::sync::Arc;

    use common::running::{RunningController, TEST_PERIODS};
    use kube::api::{Patch, PatchParams};
    use scheduled_exports::clock::ManualClock;
    use scheduled_exports::operator::job::{RunKind, job_name};
    use scheduled_exports::operator::{Context, ControllerConfig, DeliverySettings};

    let fixture = Fixture::new("sx-full-job", 8).await;
    // A delivered file first, so the watermark says nothing is new.
    let first = fixture.export("daily", "2026-11-30T13:00:00Z");
    assert!(first.status.success(), "{}", stderr(&first));

    let now = chrono::DateTime::parse_from_rfc3339("2026-11-30T15:00:00Z")
        .expect("instant")
        .with_timezone(&chrono::Utc);
    let clock = ManualClock::new(now);
    let config = ControllerConfig {
        namespace: Some(fixture.namespace.clone()),
        default_zone: chrono_tz::UTC,
        job: scheduled_exports::operator::job::JobSettings {
            // An image built from this tree, when given, for the Pod runs what this tree's
            // export reads (EXPORT_FULL); the bed's own image is main's.
            image: std::env::var("SCHEDULED_EXPORTS_IMAGE")
                .unwrap_or_else(|_| env_var("SCHEDULED_EXPORTS_IMAGE")),
            ..export_job_settings(&fixture.artifact_store)
        },
        delivery: DeliverySettings {
            s3: testbed_s3_options(),
            ..DeliverySettings::default()
        },
        instance: "tests".to_string(),
        periods: TEST_PERIODS,
    };
    let controller = RunningController::spawn(Arc::new(Context::new(
        fixture.client.clone(),
        Arc::new(clock.clone()),
        config,
    )));
    fixture
        .wait_for("daily", "the first reconcile", |o| {
            o.status.as_ref()?.next_run_time
        })
        .await;

    let patch = serde_json::json!({"metadata": {"annotations": {"exports.crm.dev/full-export": "everything-1"}}});
    fixture
        .api()
        .patch("daily", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .expect("annotate");
    let job = job_name(
        "daily",
        now,
        &RunKind::FullExport {
            token: "everything-1".into(),
        },
    );
    wait_for_job_complete(
        &fixture.client,
        &fixture.namespace,
        &job,
        std::time::Duration::from_secs(120),
    )
    .await;
    let object = fixture
        .wait_for("daily", "the full export recorded", |o| {
            let status = o.status.as_ref()?;
            (status.last_full_export_token.as_deref() == Some("everything-1")
                && status.last_run.as_ref()?.job_name.as_deref() == Some(job.as_str())
                && status.last_run.as_ref()?.phase.map(|p| p.as_str()) == Some("Succeeded"))
            .then(|| o.clone())
        })
        .await;
    assert_eq!(
        file_ids(&fixture, "interactions-20261130T150000Z.csv").len(),
        8,
        "every row, although none changed since the last file"
    );
    let (_, reason, _) = exported(&object);
    assert_eq!(reason, "FullExportRequested");
    let status = object.status.expect("status");
    assert_eq!(status.history[0].job_name.as_deref(), Some(job.as_str()));
    assert_eq!(status.history[0].every_row, Some(true));
    let events = event_messages(&fixture.client, &fixture.namespace, "daily").await;
    assert!(events.contains("FullExport: created Job"), "{events}");

    controller.stop().await;
    fixture.cleanup().await;
}
