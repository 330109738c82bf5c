//! `scheduled-exports export` end to end against the real test bed: the API server holds the object
//! and its Secrets, PostgreSQL the rows, sshd the delivered files, MinIO the artifacts.

mod common;

use common::fixture::{Fixture, files_in, load_sample_data, read_csv};
use common::*;
use kube::api::{Patch, PatchParams};
use serde_json::json;
use sha2::{Digest, Sha256};

fn stderr(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[tokio::test]
async fn export_delivers_every_row_then_only_what_changed_and_records_it() {
    let fixture = Fixture::new("sx-export", 40).await;

    // First run: every row, under the UTC-dated name, nothing else in the directory.
    let output = fixture.export("daily", "2026-11-30T12:00:00Z");
    assert!(
        output.status.success(),
        "export failed: {}",
        stderr(&output)
    );
    let first_name = "interactions-20261130T120000Z.csv";
    assert_eq!(
        files_in(&fixture.local_dir),
        [first_name],
        "only the final file is visible"
    );
    let first_path = fixture.local_dir.join(first_name);
    let bytes = std::fs::read(&first_path).expect("delivered file");
    assert!(
        bytes.starts_with(b"interaction_id,interaction_import_id,"),
        "header first"
    );
    assert!(bytes.windows(2).any(|w| w == b"\r\n"), "CRLF by default");
    let (headers, rows) = read_csv(&first_path);
    assert_eq!(headers, INTERACTION_COLUMNS);
    assert_eq!(rows.len(), 40);

    let status = fixture.object("daily").await.status.expect("status");
    let last_run = status.last_run.clone().expect("lastRun");
    assert_eq!(
        last_run.phase.map(|phase| phase.as_str()),
        Some("Succeeded")
    );
    assert_eq!(last_run.file_name.as_deref(), Some(first_name));
    assert_eq!(last_run.rows, Some(40));
    assert_eq!(last_run.bytes, Some(bytes.len() as u64));
    assert_eq!(
        last_run.sha256.as_deref(),
        Some(hex::encode(Sha256::digest(&bytes)).as_str())
    );
    assert_eq!(
        status.delivery.as_ref().and_then(|d| d.file.as_deref()),
        Some(first_name)
    );
    let first_watermark = status.watermark.clone().expect("watermark after delivery");
    for condition in ["Exported", "Delivered"] {
        let found = status
            .conditions
            .iter()
            .find(|c| c.type_ == condition)
            .expect(condition);
        assert_eq!(found.status, "True", "{condition}: {}", found.message);
    }

    // The artifact store holds the same bytes, for recopies.
    let store = scheduled_exports::adapters::artifacts::ArtifactStore::from_url_with(
        &fixture.artifact_store,
        &s3_options(),
    )
    .expect("store");
    let key = scheduled_exports::adapters::artifacts::ArtifactKey {
        namespace: fixture.namespace.clone(),
        name: "daily".into(),
        file_name: first_name.into(),
    };
    let copy = tempfile::NamedTempFile::new().expect("temp");
    store
        .get_to_file(&key, copy.path(), last_run.sha256.as_deref().expect("sha"))
        .await
        .expect("artifact matches the delivered file");

    // The same slot again is a no-op that says so.
    let again = fixture.export("daily", "2026-11-30T12:00:00Z");
    assert!(again.status.success(), "{}", stderr(&again));
    let said = String::from_utf8_lossy(&again.stdout).into_owned();
    assert!(said.contains("already delivered"), "{said}");
    assert_eq!(
        fixture
            .object("daily")
            .await
            .status
            .and_then(|s| s.watermark),
        Some(first_watermark.clone())
    );

    // Rows written by plain SQL since then, inserted and updated, come out once, in their latest version.
    let db = connect_database(&fixture.database_url).await;
    db.batch_execute(
        "INSERT INTO interactions (interaction_id, constituent_id, summary, occurred_on)
             VALUES (900001, 1, 'new, with a comma', '2026-11-30');
         UPDATE interactions SET summary = 'changed \"quoted\"' WHERE interaction_id = (SELECT min(interaction_id) FROM interactions);",
    )
    .await
    .expect("write rows");
    let output = fixture.export("daily", "2026-12-01T12:00:00Z");
    assert!(output.status.success(), "{}", stderr(&output));
    let (_, rows) = read_csv(&fixture.local_dir.join("interactions-20261201T120000Z.csv"));
    assert_eq!(
        rows.len(),
        2,
        "only the inserted and the updated row: {rows:?}"
    );
    assert!(
        rows.iter()
            .any(|row| row[0] == "900001" && row[7] == "new, with a comma")
    );
    assert!(rows.iter().any(|row| row[7] == "changed \"quoted\""));

    // Nothing written since: a header-only file still arrives.
    let output = fixture.export("daily", "2026-12-02T12:00:00Z");
    assert!(output.status.success(), "{}", stderr(&output));
    let (headers, rows) = read_csv(&fixture.local_dir.join("interactions-20261202T120000Z.csv"));
    assert_eq!(headers.len(), 16);
    assert!(rows.is_empty());
    let status = fixture.object("daily").await.status.expect("status");
    assert_eq!(status.last_run.and_then(|r| r.rows), Some(0));
    // Only the latest file's artifact is kept: it is all a recopy can need.
    let kept = store
        .list(&fixture.namespace, "daily")
        .await
        .expect("list artifacts");
    let kept: Vec<_> = kept.iter().map(|key| key.file_name.as_str()).collect();
    assert_eq!(kept, ["interactions-20261202T120000Z.csv"]);
    assert_ne!(status.watermark, Some(first_watermark));
    fixture.cleanup().await;
}

#[tokio::test]
async fn a_row_whose_transaction_was_open_during_an_export_reaches_the_next_file() {
    let fixture = Fixture::new("sx-opentx", 5).await;
    let mut db = connect_database(&fixture.database_url).await;
    let open = db.transaction().await.expect("begin");
    open.execute(
        "INSERT INTO interactions (interaction_id, constituent_id, summary) VALUES (777, 1, 'late commit')",
        &[],
    )
    .await
    .expect("insert in the open transaction");

    let output = fixture.export("daily", "2026-11-30T12:00:00Z");
    assert!(output.status.success(), "{}", stderr(&output));
    let (_, rows) = read_csv(&fixture.local_dir.join("interactions-20261130T120000Z.csv"));
    assert!(
        rows.iter().all(|row| row[0] != "777"),
        "uncommitted row is not exported"
    );

    open.commit().await.expect("commit after the export");
    let output = fixture.export("daily", "2026-12-01T12:00:00Z");
    assert!(output.status.success(), "{}", stderr(&output));
    let (_, rows) = read_csv(&fixture.local_dir.join("interactions-20261201T120000Z.csv"));
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0][0], "777");
    fixture.cleanup().await;
}

fn s3_options() -> scheduled_exports::adapters::artifacts::S3Options {
    scheduled_exports::adapters::artifacts::S3Options {
        endpoint: Some(env_var("S3_ENDPOINT")),
        region: env_var("AWS_REGION"),
        access_key_id: Some(env_var("AWS_ACCESS_KEY_ID")),
        secret_access_key: Some(env_var("AWS_SECRET_ACCESS_KEY")),
    }
}

/// A closed loopback port: bound, then released.
fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr").port()
}

#[tokio::test]
async fn every_failure_exits_1_names_the_cause_and_leaves_everything_as_it_was() {
    let fixture = Fixture::new("sx-failures", 3).await;
    // Root-owned, so the SFTP user cannot write into it.
    let read_only = fixture.local_dir.join("read-only");
    std::fs::create_dir_all(&read_only).expect("mkdir");
    let output = fixture.export("daily", "2026-11-30T12:00:00Z");
    assert!(
        output.status.success(),
        "baseline export: {}",
        stderr(&output)
    );
    let delivered_before = files_in(&fixture.local_dir);

    let wrong_password_url =
        fixture
            .database_url
            .replacen(&env_var("PGPASSWORD"), "not-the-password", 1);
    let unreachable_db_url = fixture.database_url.replacen(
        &format!(":{}/", env_var("PGPORT")),
        &format!(":{}/", closed_port()),
        1,
    );
    let other_key = {
        let dir = tempfile::tempdir().expect("dir");
        let key = dir.path().join("k");
        let status = std::process::Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-f"])
            .arg(&key)
            .status()
            .expect("ssh-keygen");
        assert!(status.success());
        std::fs::read_to_string(key.with_extension("pub")).expect("public key")
    };
    let wrong_known_hosts = format!(
        "[{}]:{} {}",
        env_var("SFTP_HOST"),
        env_var("SFTP_PORT"),
        other_key
            .split_whitespace()
            .take(2)
            .collect::<Vec<_>>()
            .join(" ")
    );
    let s3_down = format!("s3://{}/{}", env_var("S3_BUCKET"), fixture.namespace);

    // A refused connection's reason names the address the export tried.
    let (database_host, sftp_host) = (env_var("PGHOST"), env_var("SFTP_HOST"));
    let database_words = [database_host.as_str()];
    let sftp_words = [sftp_host.as_str()];

    struct Case<'a> {
        name: &'static str,
        database_url: Option<String>,
        sftp_secret: Option<Vec<(&'static str, String)>>,
        sftp: serde_json::Value,
        store_endpoint: Option<String>,
        reason: &'static str,
        words: &'a [&'a str],
    }
    let default_case = || Case {
        name: "",
        database_url: None,
        sftp_secret: None,
        sftp: json!({}),
        store_endpoint: None,
        reason: "",
        words: &[],
    };
    let cases = vec![
        Case {
            name: "db-unreachable",
            database_url: Some(unreachable_db_url),
            reason: "DatabaseFailed",
            words: &database_words,
            ..default_case()
        },
        Case {
            name: "db-password",
            database_url: Some(wrong_password_url),
            reason: "DatabaseFailed",
            words: &["password authentication failed"],
            ..default_case()
        },
        Case {
            name: "sftp-down",
            sftp: json!({"port": closed_port()}),
            reason: "ConnectionRefused",
            words: &sftp_words,
            ..default_case()
        },
        Case {
            name: "host-key",
            sftp_secret: Some(vec![
                ("privateKey", sftp_secret_data()[0].1.clone()),
                ("knownHosts", wrong_known_hosts),
            ]),
            reason: "HostKeyMismatch",
            words: &["host key"],
            ..default_case()
        },
        Case {
            name: "dir-missing",
            sftp: json!({"directory": format!("{}/missing", fixture.remote_dir)}),
            reason: "DirectoryMissing",
            words: &["/missing"],
            ..default_case()
        },
        Case {
            name: "dir-read-only",
            sftp: json!({"directory": format!("{}/read-only", fixture.remote_dir)}),
            reason: "DirectoryNotWritable",
            words: &["read-only"],
            ..default_case()
        },
        Case {
            name: "s3-down",
            store_endpoint: Some(format!("http://127.0.0.1:{}", closed_port())),
            reason: "ArtifactStoreFailed",
            words: &["artifact store"],
            ..default_case()
        },
        Case {
            name: "no-known-hosts",
            sftp_secret: Some(vec![("privateKey", sftp_secret_data()[0].1.clone())]),
            reason: "SecretInvalid",
            words: &["knownHosts"],
            ..default_case()
        },
    ];

    let mut failures = Vec::new();
    for case in cases {
        let name = case.name;
        let mut sftp = case.sftp.clone();
        if let Some(url) = &case.database_url {
            create_secret(
                &fixture.client,
                &fixture.namespace,
                &format!("db-{name}"),
                &[("url", url.clone())],
            )
            .await;
        }
        if let Some(data) = &case.sftp_secret {
            create_secret(
                &fixture.client,
                &fixture.namespace,
                &format!("sftp-{name}"),
                data,
            )
            .await;
            sftp["secretRef"] = json!({"name": format!("sftp-{name}")});
        }
        fixture.create_object(name, sftp).await;
        // Give each object the baseline's watermark, as if it had delivered before.
        let watermark = fixture
            .object("daily")
            .await
            .status
            .and_then(|s| s.watermark)
            .expect("watermark");
        let patch = json!({"status": {"watermark": watermark}});
        if case.database_url.is_some() {
            fixture
                .api()
                .patch(
                    name,
                    &PatchParams::default(),
                    &Patch::Merge(
                        &json!({"spec": {"source": {"secretRef": {"name": format!("db-{name}")}}}}),
                    ),
                )
                .await
                .expect("point at the broken database secret");
        }
        fixture
            .api()
            .patch_status(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .expect("seed watermark");

        let output = match &case.store_endpoint {
            None => fixture.export(name, "2026-12-01T12:00:00Z"),
            Some(endpoint) => run_binary(
                &[
                    "export",
                    "--namespace",
                    &fixture.namespace,
                    "--name",
                    name,
                    "--slot",
                    "2026-12-01T12:00:00Z",
                    "--artifact-store",
                    &s3_down,
                    "--timeout",
                    "5s",
                ],
                &[("AWS_ENDPOINT_URL", endpoint.clone())],
            ),
        };
        let err = stderr(&output);
        let object = fixture.object(name).await;
        let status = object.status.clone().unwrap_or_default();
        let status_json = serde_json::to_string(&status).expect("json");
        let exported = status.conditions.iter().find(|c| c.type_ == "Exported");
        let last_line = err
            .trim_end()
            .lines()
            .last()
            .unwrap_or_default()
            .to_string();

        let mut problems = Vec::new();
        if output.status.code() != Some(1) {
            problems.push(format!("exit {:?}", output.status.code()));
        }
        if !last_line.starts_with("error: ") {
            problems.push(format!("last stderr line is not the reason: {last_line}"));
        }
        for word in case.words {
            if !last_line.to_lowercase().contains(&word.to_lowercase()) {
                problems.push(format!("reason lacks {word:?}: {last_line}"));
            }
        }
        if exported.map(|c| (c.status.as_str(), c.reason.as_str())) != Some(("False", case.reason))
        {
            problems.push(format!(
                "Exported condition {exported:?}, expected False/{}",
                case.reason
            ));
        }
        if status.watermark.as_deref() != Some(watermark.as_str()) {
            problems.push("watermark moved".into());
        }
        if status
            .last_run
            .as_ref()
            .and_then(|r| r.phase.map(|phase| phase.as_str()))
            != Some("Failed")
        {
            problems.push(format!("lastRun {:?}", status.last_run));
        }
        for secret in secret_values() {
            if err.contains(&secret)
                || status_json.contains(&secret)
                || String::from_utf8_lossy(&output.stdout).contains(&secret)
            {
                problems.push("a secret value leaked into output or status".into());
            }
        }
        if files_in(&fixture.local_dir) != delivered_before
            || std::fs::read_dir(&read_only)
                .map(|d| d.count())
                .unwrap_or(0)
                != 0
        {
            problems.push(format!("files changed: {:?}", files_in(&fixture.local_dir)));
        }
        let artifacts = scheduled_exports::adapters::artifacts::ArtifactStore::from_url_with(
            &fixture.artifact_store,
            &s3_options(),
        )
        .expect("store")
        .list(&fixture.namespace, name)
        .await
        .expect("list artifacts");
        if !artifacts.is_empty() {
            problems.push(format!("artifacts kept for a failed run: {artifacts:?}"));
        }
        if !problems.is_empty() {
            failures.push(format!("{name}: {}\n  stderr: {err}", problems.join("; ")));
        }
    }
    fixture.cleanup().await;
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[tokio::test]
async fn a_lost_status_write_is_repaired_and_an_unrelated_file_is_never_overwritten() {
    let fixture = Fixture::new("sx-rerun", 4).await;
    let output = fixture.export("daily", "2026-11-30T12:00:00Z");
    assert!(output.status.success(), "{}", stderr(&output));
    let name = "interactions-20261130T120000Z.csv";

    // As if the export's final status write had been lost: status still says the slot is running,
    // from the watermark before it. The retry replaces its own earlier file with a complete one.
    // The record of delivered files is part of that same write.
    let lost = json!({"status": {"watermark": null, "delivery": null, "deliveredFiles": null, "lastRun": {"slot": "2026-11-30T12:00:00Z", "phase": "Running"}}});
    fixture
        .api()
        .patch_status("daily", &PatchParams::default(), &Patch::Merge(&lost))
        .await
        .expect("simulate the lost write");
    let db = connect_database(&fixture.database_url).await;
    db.batch_execute("INSERT INTO interactions (interaction_id, constituent_id) VALUES (4242, 1)")
        .await
        .expect("insert");
    let output = fixture.export("daily", "2026-11-30T12:00:00Z");
    assert!(
        output.status.success(),
        "retry of the same slot: {}",
        stderr(&output)
    );
    let (_, rows) = read_csv(&fixture.local_dir.join(name));
    assert_eq!(
        rows.len(),
        5,
        "the replacement holds every row of the window and the new one"
    );
    assert_eq!(files_in(&fixture.local_dir), [name]);

    // A file of the next slot's name that no attempt of ours wrote is left alone; the run fails.
    let foreign = fixture.local_dir.join("interactions-20261201T120000Z.csv");
    std::fs::write(&foreign, "not ours\n").expect("write foreign file");
    let watermark = fixture
        .object("daily")
        .await
        .status
        .and_then(|s| s.watermark);
    let output = fixture.export("daily", "2026-12-01T12:00:00Z");
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    assert!(
        stderr(&output).to_lowercase().contains("exists"),
        "{}",
        stderr(&output)
    );
    assert_eq!(
        std::fs::read_to_string(&foreign).expect("read"),
        "not ours\n"
    );
    let status = fixture.object("daily").await.status.expect("status");
    assert_eq!(
        status.watermark, watermark,
        "a failed run never advances the watermark"
    );
    fixture.cleanup().await;
}

/// The Exported condition's (reason, message).
fn exported_condition(object: &scheduled_exports::resource::ScheduledExport) -> (String, String) {
    let condition = object
        .status
        .as_ref()
        .and_then(|status| status.conditions.iter().find(|c| c.type_ == "Exported"))
        .expect("an Exported condition");
    assert_eq!(condition.status, "True", "{}", condition.message);
    (condition.reason.clone(), condition.message.clone())
}

/// The interaction ids in the database at `url`, ascending.
/// One SSH connection carries the whole run: the check before the database is read, the look at
/// the final names, the streamed upload, its rename and the checksum file.
#[tokio::test]
async fn a_run_opens_one_ssh_connection_and_streams_the_file_whole() {
    let fixture = Fixture::new("sx-one-connection", 2_000).await;
    fixture
        .patch_spec("daily", json!({"checksumFile": true}))
        .await;
    let output = run_binary(
        &[
            "export",
            "--namespace",
            &fixture.namespace,
            "--name",
            "daily",
            "--slot",
            "2026-11-30T12:00:00Z",
            "--artifact-store",
            &fixture.artifact_store,
        ],
        &[(
            "RUST_LOG",
            "info,scheduled_exports::adapters::sftp=debug".to_string(),
        )],
    );
    let log = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{log}");
    assert_eq!(
        log.matches("SSH connection open").count(),
        1,
        "one connection per run: {log}"
    );
    assert!(log.contains("where the stream's time went"), "{log}");
    let name = "interactions-20261130T120000Z.csv";
    let (_, rows) = read_csv(&fixture.local_dir.join(name));
    assert_eq!(rows.len(), 2_000);
    let ids: Vec<u64> = rows
        .iter()
        .map(|row| row[0].parse().expect("numeric id"))
        .collect();
    assert!(
        ids.windows(2).all(|pair| pair[0] < pair[1]),
        "rows stream in numeric key order"
    );
    assert_eq!(
        files_in(&fixture.local_dir),
        [name.to_string(), format!("{name}.sha256")],
        "no temporary file is left"
    );
    fixture.cleanup().await;
}

async fn interaction_ids(url: &str) -> Vec<String> {
    connect_database(url)
        .await
        .query(
            "SELECT interaction_id FROM interactions ORDER BY interaction_id",
            &[],
        )
        .await
        .expect("read ids")
        .iter()
        .map(|row| row.get::<_, i64>(0).to_string())
        .collect()
}

/// Ids of a delivered file, ascending.
fn file_ids(path: &std::path::Path) -> Vec<String> {
    let (_, rows) = read_csv(path);
    let mut ids: Vec<String> = rows.into_iter().map(|row| row[0].clone()).collect();
    ids.sort_by_key(|id| id.parse::<i64>().expect("numeric id"));
    ids
}

#[tokio::test]
async fn a_source_pointed_at_another_database_delivers_every_row_of_it() {
    let fixture = Fixture::new("sx-switch", 5).await;
    // Written before the first export: the watermark taken in the fixture's database covers these
    // ids, as on one server every database shares the transaction counter.
    let other_url = create_database("sx_switch").await;
    load_sample_data(&other_url, 30, 11);

    let output = fixture.export("daily", "2026-11-30T12:00:00Z");
    assert!(output.status.success(), "{}", stderr(&output));
    let status = fixture.object("daily").await.status.expect("status");
    let source = status
        .watermark_source
        .expect("the watermark names its database");
    assert_eq!(
        source.database.as_deref(),
        Some(database_name(&fixture.database_url).as_str())
    );
    assert!(source.database_oid.is_some() && source.system_identifier.is_some());

    fixture.set_database_url(&other_url).await;
    let output = fixture.export("daily", "2026-12-01T12:00:00Z");
    assert!(output.status.success(), "{}", stderr(&output));
    let delivered = file_ids(&fixture.local_dir.join("interactions-20261201T120000Z.csv"));
    assert_eq!(delivered.len(), 30, "every row of the other database");
    assert_eq!(delivered, interaction_ids(&other_url).await);
    let object = fixture.object("daily").await;
    let (reason, message) = exported_condition(&object);
    assert_eq!(reason, "SourceChanged", "{message}");
    let other_name = database_name(&other_url);
    assert!(
        message.contains(&format!("the source is now database {other_name:?}")),
        "{message}"
    );
    assert_eq!(
        object
            .status
            .and_then(|s| s.watermark_source)
            .and_then(|s| s.database),
        Some(other_name.clone())
    );

    // From then on the other database's windows are incremental again.
    let output = fixture.export("daily", "2026-12-02T12:00:00Z");
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(file_ids(&fixture.local_dir.join("interactions-20261202T120000Z.csv")).is_empty());
    assert_eq!(
        exported_condition(&fixture.object("daily").await).0,
        "Exported"
    );
    admin_execute(&format!("DROP DATABASE {other_name} WITH (FORCE)")).await;
    fixture.cleanup().await;
}

#[tokio::test]
async fn a_database_created_again_under_its_name_delivers_every_row_of_it() {
    let fixture = Fixture::new("sx-recreate", 5).await;
    let name = database_name(&fixture.database_url);
    // A copy whose rows carry ids the coming watermark covers, as a restored file-level copy
    // would: its 5 rows and 10 more written in it now.
    let copy = format!("{name}_copy");
    admin_execute(&format!("CREATE DATABASE {copy} TEMPLATE {name}")).await;
    let copy_url = fixture
        .database_url
        .replace(&format!("/{name}"), &format!("/{copy}"));
    connect_database(&copy_url)
        .await
        .batch_execute(
            "INSERT INTO interactions (interaction_id, constituent_id, summary)
             SELECT 800000 + n, 1, 'in the copy' FROM generate_series(1, 10) AS n",
        )
        .await
        .expect("write rows in the copy");

    let output = fixture.export("daily", "2026-11-30T12:00:00Z");
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(
        file_ids(&fixture.local_dir.join("interactions-20261130T120000Z.csv")).len(),
        5
    );

    // The same Secret, the same name, another database.
    admin_execute(&format!("DROP DATABASE {name} WITH (FORCE)")).await;
    admin_execute(&format!("CREATE DATABASE {name} TEMPLATE {copy}")).await;
    let output = fixture.export("daily", "2026-12-01T12:00:00Z");
    assert!(output.status.success(), "{}", stderr(&output));
    let delivered = file_ids(&fixture.local_dir.join("interactions-20261201T120000Z.csv"));
    assert_eq!(
        delivered.len(),
        15,
        "every row of the new database: {delivered:?}"
    );
    assert_eq!(delivered, interaction_ids(&fixture.database_url).await);
    let (reason, message) = exported_condition(&fixture.object("daily").await);
    assert_eq!(reason, "SourceChanged", "{message}");
    assert!(
        message.contains(&format!("database {name:?} was dropped and created again")),
        "{message}"
    );
    admin_execute(&format!("DROP DATABASE {copy} WITH (FORCE)")).await;
    fixture.cleanup().await;
}

#[tokio::test]
async fn a_watermark_that_names_no_database_is_adopted_without_a_full_export() {
    let fixture = Fixture::new("sx-adopt", 5).await;
    let output = fixture.export("daily", "2026-11-30T12:00:00Z");
    assert!(output.status.success(), "{}", stderr(&output));
    // As an earlier version wrote it: a watermark and nothing about its database.
    let earlier = json!({"status": {"watermarkSource": null}});
    fixture
        .api()
        .patch_status("daily", &PatchParams::default(), &Patch::Merge(&earlier))
        .await
        .expect("remove the watermark's source");
    connect_database(&fixture.database_url)
        .await
        .batch_execute(
            "INSERT INTO interactions (interaction_id, constituent_id) VALUES (900002, 1)",
        )
        .await
        .expect("insert");

    let output = fixture.export("daily", "2026-12-01T12:00:00Z");
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(
        file_ids(&fixture.local_dir.join("interactions-20261201T120000Z.csv")),
        ["900002"],
        "only the new row"
    );
    let object = fixture.object("daily").await;
    assert_eq!(exported_condition(&object).0, "Exported");
    assert_eq!(
        object
            .status
            .and_then(|s| s.watermark_source)
            .and_then(|s| s.database),
        Some(database_name(&fixture.database_url)),
        "the next success records the database"
    );
    fixture.cleanup().await;
}
