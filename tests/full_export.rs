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
