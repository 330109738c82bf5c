//! A hot standby as the source, against the test bed's real streaming standby
//! (`STANDBY_DATABASE_URL`, made with `pg_basebackup` from the primary at `DATABASE_URL`).
//!
//! A standby is read-only: each test creates its database and writes its rows on the primary, and
//! waits until the standby has replayed them before it exports from the standby.

mod common;

use std::time::Duration;

use chrono::{DateTime, Utc};
use common::fixture::{Fixture, read_csv};
use common::*;
use scheduled_exports::adapters::postgres::Snapshot;

const STANDBY: &str = "a hot standby streaming from DATABASE_URL";

fn stderr(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// `base` with its database replaced by `database`.
fn with_database(base: &str, database: &str) -> String {
    let mut url = url::Url::parse(base).expect("a postgres:// URL");
    url.set_path(&format!("/{database}"));
    url.to_string()
}

/// Waits until `standby_check` (a query taking one text parameter) is true on the standby for the
/// value `primary_position` returns on the primary now.
async fn wait_until_standby_reaches(
    standby_base: &str,
    primary_position: &str,
    standby_check: &str,
    deadline: Duration,
    what: &str,
) {
    let primary = connect_database(&env_var("DATABASE_URL")).await;
    let position: String = primary
        .query_one(primary_position, &[])
        .await
        .expect("the primary's position")
        .get(0);
    let standby = connect_database(standby_base).await;
    let (standby, position) = (&standby, position.as_str());
    eventually(deadline, what, || async move {
        let row = standby
            .query_one(standby_check, &[&position])
            .await
            .expect("the standby's position");
        row.get::<_, bool>(0).then_some(())
    })
    .await;
}

/// Waits until the standby has replayed everything the primary has written so far.
async fn wait_for_replay(standby_base: &str) {
    wait_until_standby_reaches(
        standby_base,
        "SELECT pg_current_wal_lsn()::text",
        "SELECT pg_last_wal_replay_lsn() >= $1::text::pg_lsn",
        Duration::from_secs(60),
        "the standby to replay the primary's writes",
    )
    .await;
}

/// Waits until a standby window would include every write the primary has committed so far: its
/// snapshot's xmin passes them. A transaction open anywhere on the primary (another test's) holds
/// that back, which is the standby's documented delay, not a loss.
async fn wait_until_standby_windows_cover_writes(standby_base: &str) {
    wait_until_standby_reaches(
        standby_base,
        "SELECT pg_snapshot_xmax(pg_current_snapshot())::text",
        "SELECT pg_snapshot_xmin(pg_current_snapshot()) >= $1::text::xid8",
        Duration::from_secs(120),
        "the standby's snapshot xmin to pass the primary's writes",
    )
    .await;
}

/// A time setting as `SHOW` prints it (`30s`, `1min`, `500ms`), in whole seconds.
fn parse_setting_seconds(value: &str) -> u64 {
    let (number, unit) = value.split_at(
        value
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(value.len()),
    );
    let number: u64 = number.parse().unwrap_or_else(|_| {
        panic!("max_standby_streaming_delay is {value}: the standby never cancels a query")
    });
    match unit {
        "ms" => number.div_ceil(1000),
        "s" | "" => number,
        "min" => number * 60,
        _ => panic!("max_standby_streaming_delay {value}: unexpected unit"),
    }
}

/// The ids of a delivered file.
fn file_ids(path: &std::path::Path) -> Vec<i64> {
    let (_, rows) = read_csv(path);
    rows.iter()
        .map(|row| row[0].parse().expect("numeric id"))
        .collect()
}

fn slot(day: i64) -> DateTime<Utc> {
    "2026-11-30T12:00:00Z"
        .parse::<DateTime<Utc>>()
        .expect("slot")
        + chrono::Duration::days(day)
}

/// Exports slot `day` and returns the delivered file's ids.
fn export_day(fixture: &Fixture, day: i64) -> Vec<i64> {
    let slot = slot(day);
    let output = fixture.export("daily", &slot.to_rfc3339());
    assert!(output.status.success(), "{}", stderr(&output));
    let name = format!("interactions-{}.csv", slot.format("%Y%m%dT%H%M%SZ"));
    file_ids(&fixture.local_dir.join(name))
}

#[tokio::test]
async fn a_primary_transaction_open_across_a_standby_export_reaches_a_later_file() {
    let Some(standby_base) = optional_env_var("STANDBY_DATABASE_URL", STANDBY) else {
        return;
    };
    let fixture = Fixture::new("sx-standby", 5).await;
    let primary_url = fixture.database_url.clone();
    let standby_url = with_database(&standby_base, &database_name(&primary_url));

    let mut writer = connect_database(&primary_url).await;
    let open = writer.transaction().await.expect("begin");
    open.execute(
        "INSERT INTO interactions (interaction_id, constituent_id, summary) \
         VALUES (777, 1, 'open across the export')",
        &[],
    )
    .await
    .expect("insert in the open transaction");
    // A later transaction commits meanwhile, so the standby's snapshot has the open one between
    // its bounds: the case its text form gets wrong.
    connect_database(&primary_url)
        .await
        .batch_execute(
            "INSERT INTO interactions (interaction_id, constituent_id, summary) \
             VALUES (778, 1, 'committed meanwhile')",
        )
        .await
        .expect("insert");
    wait_for_replay(&standby_base).await;
    fixture.set_database_url(&standby_url).await;

    let mut delivered = export_day(&fixture, 0);
    assert!(
        !delivered.contains(&777),
        "an uncommitted row: {delivered:?}"
    );
    open.commit().await.expect("commit after the export");
    wait_for_replay(&standby_base).await;
    // Any transaction open on the primary (in any database) holds the standby's window back, so
    // later files are exported until every committed row has arrived.
    let expected: Vec<i64> = {
        let mut ids: Vec<i64> = connect_database(&primary_url)
            .await
            .query("SELECT interaction_id FROM interactions", &[])
            .await
            .expect("ids")
            .iter()
            .map(|row| row.get(0))
            .collect();
        ids.sort_unstable();
        ids
    };
    let give_up = tokio::time::Instant::now() + Duration::from_secs(60);
    let mut day = 0;
    loop {
        let mut sorted = delivered.clone();
        sorted.sort_unstable();
        if sorted == expected {
            break;
        }
        assert!(
            tokio::time::Instant::now() < give_up && !sorted.windows(2).any(|w| w[0] == w[1]),
            "after {} files from the standby, delivered {sorted:?}, committed {expected:?}",
            day + 1
        );
        day += 1;
        // Each round is a whole export run, so it paces itself.
        delivered.extend(export_day(&fixture, day));
    }

    let watermark = fixture
        .object("daily")
        .await
        .status
        .and_then(|s| s.watermark)
        .expect("a watermark");
    let watermark = Snapshot::parse(&watermark).expect("a snapshot");
    assert_eq!(
        watermark.xmin, watermark.xmax,
        "a standby's watermark claims nothing at or above its xmin: {watermark}"
    );

    // The primary is the same database: its next window continues where the standby's ended.
    connect_database(&primary_url)
        .await
        .batch_execute("INSERT INTO interactions (interaction_id, constituent_id) VALUES (779, 1)")
        .await
        .expect("insert");
    fixture.set_database_url(&primary_url).await;
    assert_eq!(export_day(&fixture, day + 1), [779], "only the new row");
    let status = fixture.object("daily").await.status.expect("status");
    let exported = status
        .conditions
        .iter()
        .find(|c| c.type_ == "Exported")
        .expect("Exported");
    assert_eq!(exported.reason, "Exported", "{}", exported.message);
    fixture.cleanup().await;
    admin_execute(&format!(
        "DROP DATABASE {} WITH (FORCE)",
        database_name(&primary_url)
    ))
    .await;
}

#[tokio::test]
async fn a_standby_that_cancels_the_export_fails_the_run_and_keeps_the_watermark() {
    let Some(standby_base) = optional_env_var("STANDBY_DATABASE_URL", STANDBY) else {
        return;
    };
    let fixture = Fixture::new("sx-conflict", 5).await;
    let primary_url = fixture.database_url.clone();
    let standby_url = with_database(&standby_base, &database_name(&primary_url));
    // A first window, so there is a watermark the failed run must leave alone.
    wait_for_replay(&standby_base).await;
    fixture.set_database_url(&standby_url).await;
    export_day(&fixture, 0);
    let watermark = fixture
        .object("daily")
        .await
        .status
        .and_then(|s| s.watermark);
    let standby = connect_database(&standby_base).await;
    let delay: String = standby
        .query_one("SHOW max_standby_streaming_delay", &[])
        .await
        .expect("the standby's delay")
        .get(0);
    let delay_seconds = parse_setting_seconds(&delay);
    // An export slow enough to outlast that delay: each of the 5 rows takes a fifth of it and more.
    let per_row = delay_seconds / 5 + 4;
    let primary = connect_database(&primary_url).await;
    primary
        .batch_execute(&format!(
            "ALTER TABLE interactions RENAME TO interactions_base;
             CREATE FUNCTION slowly(id bigint) RETURNS boolean LANGUAGE plpgsql VOLATILE
               AS $$ BEGIN PERFORM pg_sleep({per_row}); RETURN id IS NOT NULL; END $$;
             CREATE VIEW interactions AS SELECT * FROM interactions_base WHERE slowly(interaction_id);
             UPDATE interactions_base SET summary = 'again';"
        ))
        .await
        .expect("make the window slow");
    wait_for_replay(&standby_base).await;
    wait_until_standby_windows_cover_writes(&standby_base).await;

    let args: Vec<String> = [
        "export",
        "--namespace",
        &fixture.namespace,
        "--name",
        "daily",
        "--slot",
        &slot(1).to_rfc3339(),
        "--artifact-store",
        &fixture.artifact_store,
        "--timeout",
        "5s",
    ]
    .iter()
    .map(|arg| arg.to_string())
    .collect();
    let export = tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        run_binary(&args, &[])
    });
    let database = database_name(&primary_url);
    let standby = &standby;
    let database = database.as_str();
    eventually(
        Duration::from_secs(60),
        "the export's COPY to run on the standby",
        || async move {
            let row = standby
                .query_one(
                    "SELECT count(*) FROM pg_stat_activity \
                     WHERE datname = $1 AND state = 'active' AND query LIKE 'COPY%'",
                    &[&database],
                )
                .await
                .expect("the standby's activity");
            (row.get::<_, i64>(0) > 0).then_some(())
        },
    )
    .await;
    // Replaying this lock has to wait for the export's; after the delay the standby cancels it.
    primary
        .batch_execute("BEGIN; LOCK TABLE interactions_base IN ACCESS EXCLUSIVE MODE; COMMIT;")
        .await
        .expect("lock on the primary");
    let output = tokio::time::timeout(Duration::from_secs(180), export)
        .await
        .expect("the export ends")
        .expect("the export task");
    let said = stderr(&output);
    assert_eq!(output.status.code(), Some(1), "{said}");
    assert!(said.contains("conflict with recovery"), "{said}");
    assert!(said.contains("hot_standby_feedback"), "{said}");
    let status = fixture.object("daily").await.status.expect("status");
    assert_eq!(status.watermark, watermark, "the watermark did not move");
    let exported = status
        .conditions
        .iter()
        .find(|c| c.type_ == "Exported")
        .expect("Exported");
    assert_eq!(
        (exported.status.as_str(), exported.reason.as_str()),
        ("False", "RecoveryConflict"),
        "{} (max_standby_streaming_delay {delay})",
        exported.message
    );
    let name = format!("interactions-{}.csv", slot(1).format("%Y%m%dT%H%M%SZ"));
    assert!(
        !fixture.local_dir.join(name).exists(),
        "nothing is delivered"
    );
    fixture.cleanup().await;
    admin_execute(&format!("DROP DATABASE {database} WITH (FORCE)")).await;
}

/// Pauses the standby's replay; resumes it when dropped, also when the test fails, since other
/// tests share the standby.
struct ReplayPaused {
    standby_base: String,
}

impl ReplayPaused {
    async fn new(standby_base: &str) -> ReplayPaused {
        let standby = connect_database(standby_base).await;
        standby
            .batch_execute("SELECT pg_wal_replay_pause()")
            .await
            .expect("pause replay");
        let standby = &standby;
        eventually(Duration::from_secs(30), "replay to pause", || async move {
            let row = standby
                .query_one("SELECT pg_get_wal_replay_pause_state()", &[])
                .await
                .expect("pause state");
            (row.get::<_, String>(0) == "paused").then_some(())
        })
        .await;
        ReplayPaused {
            standby_base: standby_base.to_string(),
        }
    }
}

impl Drop for ReplayPaused {
    fn drop(&mut self) {
        let resumed = std::process::Command::new("psql")
            .args([
                "-X",
                "-q",
                "-d",
                &self.standby_base,
                "-c",
                "SELECT pg_wal_replay_resume()",
            ])
            .output();
        if !resumed.is_ok_and(|output| output.status.success()) {
            eprintln!(
                "could not resume the standby's replay: run SELECT pg_wal_replay_resume() on it"
            );
        }
    }
}

#[tokio::test]
async fn a_standby_behind_the_primary_s_watermark_waits_for_replay_instead_of_a_full_export() {
    let Some(standby_base) = optional_env_var("STANDBY_DATABASE_URL", STANDBY) else {
        return;
    };
    let fixture = Fixture::new("sx-lag", 5).await;
    let primary_url = fixture.database_url.clone();
    let standby_url = with_database(&standby_base, &database_name(&primary_url));
    wait_for_replay(&standby_base).await;
    assert_eq!(export_day(&fixture, 0).len(), 5);

    let paused = ReplayPaused::new(&standby_base).await;
    let primary = connect_database(&primary_url).await;
    primary
        .batch_execute("INSERT INTO interactions (interaction_id, constituent_id) VALUES (801, 1)")
        .await
        .expect("insert");
    assert_eq!(export_day(&fixture, 1), [801]);
    let ahead = fixture
        .object("daily")
        .await
        .status
        .and_then(|s| s.watermark);

    // The standby has not replayed 801 nor the watermark's ids: nothing new, the watermark stays.
    fixture.set_database_url(&standby_url).await;
    assert_eq!(export_day(&fixture, 2), Vec::<i64>::new());
    let status = fixture.object("daily").await.status.expect("status");
    let exported = status
        .conditions
        .iter()
        .find(|c| c.type_ == "Exported")
        .expect("Exported");
    assert_eq!(exported.reason, "Exported", "{}", exported.message);
    assert_eq!(status.watermark, ahead);

    drop(paused);
    primary
        .batch_execute("INSERT INTO interactions (interaction_id, constituent_id) VALUES (802, 1)")
        .await
        .expect("insert");
    wait_for_replay(&standby_base).await;
    let give_up = tokio::time::Instant::now() + Duration::from_secs(60);
    let mut delivered = Vec::new();
    let mut day = 3;
    while delivered != [802] {
        assert!(
            tokio::time::Instant::now() < give_up && delivered.is_empty(),
            "from the standby after replay resumed: {delivered:?}"
        );
        // Each round is a whole export run, so it paces itself.
        delivered.extend(export_day(&fixture, day));
        day += 1;
    }
    fixture.cleanup().await;
    admin_execute(&format!(
        "DROP DATABASE {} WITH (FORCE)",
        database_name(&primary_url)
    ))
    .await;
}
