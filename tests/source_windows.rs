//! No-loss export windows against the test bed's real PostgreSQL.
//!
//! Each test creates its own database, so tests run in parallel and never see each other's rows.
//! The server comes from `target/testbed/env` (`DATABASE_URL`, a superuser URL);
//! `SCHEDULED_EXPORTS_TEST_DATABASE_URL` overrides it for running against another server.

mod common;

use std::io::{self, Write};
use std::time::{Duration, Instant};

use scheduled_exports::adapters::postgres::{
    FullExport, Snapshot, SourceError, Watermark, WindowOutcome, connect,
};
use scheduled_exports::export::columns;
use scheduled_exports::export::csv::CsvFileWriter;
use scheduled_exports::export::window::{export_window, text_window_query};
use scheduled_exports::resource::{CsvOptions, FileType, LineTerminator};
use scheduled_exports::sample_data::{apply_schema, generate, run_sample_data};
use sha2::{Digest, Sha256};
use tokio_postgres::{Client, SimpleQueryMessage};

const TIMEOUT: Duration = Duration::from_secs(10);

const INTERACTIONS_HEADER: &str = "interaction_id,interaction_import_id,constituent_id,constituent_import_id,category,interaction_type,occurred_on,summary,description,solicitors,creator_user_id,proposal_id,proposal_import_id,created_at,updated_at,deleted";
const PROPOSALS_HEADER: &str = "proposal_id,proposal_import_id,constituent_id,constituent_import_id,title,status,stage,ask_amount,expected_amount,funded_amount,ask_date,expected_date,funded_date,solicitors,created_at,updated_at,deleted";

fn admin_url() -> String {
    std::env::var("SCHEDULED_EXPORTS_TEST_DATABASE_URL")
        .unwrap_or_else(|_| common::env_var("DATABASE_URL"))
}

/// Unique enough for names of throwaway databases and roles (rand's thread RNG is not enabled).
fn unique_suffix() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    hasher.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default(),
    );
    hasher.finish()
}

fn url_with_database(base: &str, database: &str) -> String {
    let mut url = url::Url::parse(base).expect("DATABASE_URL is a postgres:// URL");
    url.set_path(&format!("/{database}"));
    url.to_string()
}

/// A database of its own for one test.
struct TestDb {
    name: String,
    url: String,
}

impl TestDb {
    async fn create() -> TestDb {
        let name = format!("sx_test_{:016x}", unique_suffix());
        let (admin, _connection) = connect(&admin_url(), TIMEOUT).await.expect("connect");
        admin
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .expect("create database");
        let url = url_with_database(&admin_url(), &name);
        TestDb { name, url }
    }

    /// A connected client with the reference schema applied.
    async fn client(&self) -> Client {
        let (client, _connection) = connect(&self.url, TIMEOUT).await.expect("connect");
        apply_schema(&client).await.expect("schema");
        client
    }

    async fn drop(self) {
        let (admin, _connection) = connect(&admin_url(), TIMEOUT).await.expect("connect");
        admin
            .batch_execute(&format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.name
            ))
            .await
            .expect("drop database");
    }
}

async fn export_with(
    client: &mut Client,
    file_type: FileType,
    previous: Option<&str>,
    options: &CsvOptions,
) -> Result<(Vec<u8>, WindowOutcome), SourceError> {
    let mut writer = CsvFileWriter::new(Vec::new(), file_type, options)?;
    // As a watermark of an earlier version: it names no database.
    let previous = previous.map(|snapshot| Watermark {
        snapshot: snapshot.to_string(),
        source: None,
    });
    let outcome = export_window(client, file_type, previous.as_ref(), &mut writer).await?;
    assert_eq!(outcome.rows, writer.rows());
    Ok((writer.finish()?, outcome))
}

async fn export(
    client: &mut Client,
    file_type: FileType,
    previous: Option<&str>,
) -> (Vec<csv::StringRecord>, WindowOutcome) {
    let (bytes, outcome) = export_with(client, file_type, previous, &CsvOptions::default())
        .await
        .expect("export");
    let records = parse(&bytes, file_type);
    assert_eq!(records.len() as u64, outcome.rows);
    Snapshot::parse(&outcome.watermark).expect("the new watermark is a snapshot");
    (records, outcome)
}

/// Parses a file, checking the exact header, and returns its data records.
fn parse(bytes: &[u8], file_type: FileType) -> Vec<csv::StringRecord> {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .from_reader(bytes);
    let header = reader
        .headers()
        .expect("header")
        .iter()
        .collect::<Vec<_>>()
        .join(",");
    let expected = match file_type {
        FileType::Interactions => INTERACTIONS_HEADER,
        FileType::Proposals => PROPOSALS_HEADER,
        FileType::Constituents => unreachable!("tests/saved_searches.rs covers constituents"),
    };
    assert_eq!(header, expected);
    reader
        .records()
        .collect::<Result<Vec<_>, _>>()
        .expect("valid CSV")
}

fn ids(records: &[csv::StringRecord]) -> Vec<i64> {
    records
        .iter()
        .map(|r| r[0].parse().expect("numeric id"))
        .collect()
}

async fn insert_interaction(client: &Client, summary: &str) -> i64 {
    let row = client
        .query_one(
            "INSERT INTO interactions (constituent_id, summary, solicitors) \
             VALUES (7, $1, ARRAY['Ann Lee', 'Bo Chen']) RETURNING interaction_id",
            &[&summary],
        )
        .await
        .expect("insert");
    row.get(0)
}

fn xmax(watermark: &str) -> u64 {
    Snapshot::parse(watermark).expect("snapshot").xmax
}

#[tokio::test]
async fn first_run_exports_every_row_and_an_unchanged_window_is_header_only() {
    let db = TestDb::create().await;
    let mut client = db.client().await;
    for n in 0..5 {
        insert_interaction(&client, &format!("row {n}")).await;
    }
    let (records, first) = export(&mut client, FileType::Interactions, None).await;
    assert_eq!(ids(&records), [1, 2, 3, 4, 5]);
    assert_eq!(&records[2][7], "row 2");
    assert_eq!(&records[2][9], "Ann Lee;Bo Chen");
    assert_eq!(&records[2][15], "false");

    let (bytes, second) = export_with(
        &mut client,
        FileType::Interactions,
        Some(&first.watermark),
        &CsvOptions::default(),
    )
    .await
    .expect("export");
    assert_eq!(second.rows, 0);
    assert_eq!(bytes, format!("{INTERACTIONS_HEADER}\r\n").into_bytes());
    assert!(xmax(&second.watermark) >= xmax(&first.watermark));

    // The other file type is independent and empty.
    let (records, _) = export(&mut client, FileType::Proposals, None).await;
    assert!(records.is_empty());
    db.drop().await;
}

#[tokio::test]
async fn plain_sql_writes_between_runs_come_out_once_in_their_latest_version() {
    let db = TestDb::create().await;
    let mut client = db.client().await;
    let a = insert_interaction(&client, "a").await;
    let b = insert_interaction(&client, "b").await;
    let _c = insert_interaction(&client, "c").await;
    let (_, first) = export(&mut client, FileType::Interactions, None).await;
    let before: String = client
        .query_one(
            "SELECT updated_at::text FROM interactions WHERE interaction_id = $1",
            &[&b],
        )
        .await
        .expect("select")
        .get(0);

    client
        .execute(
            "UPDATE interactions SET summary = 'b, version 2' WHERE interaction_id = $1",
            &[&b],
        )
        .await
        .expect("update");
    client
        .execute(
            "UPDATE interactions SET summary = 'b \"version 3\"' WHERE interaction_id = $1",
            &[&b],
        )
        .await
        .expect("update");
    let d = insert_interaction(&client, "d").await;
    // Rolled back: never exported.
    client
        .batch_execute(
            "BEGIN; UPDATE interactions SET summary = 'rolled back' WHERE interaction_id = 1; ROLLBACK",
        )
        .await
        .expect("rollback");

    let (records, second) =
        export(&mut client, FileType::Interactions, Some(&first.watermark)).await;
    assert_eq!(ids(&records), [b, d]);
    assert_eq!(&records[0][7], "b \"version 3\"");
    assert_ne!(
        &records[0][14], &records[0][13],
        "the trigger bumps updated_at"
    );
    assert!(!before.is_empty());
    assert!(records[0][14].ends_with('Z'));
    assert!(!ids(&records).contains(&a));

    let (records, _) = export(&mut client, FileType::Interactions, Some(&second.watermark)).await;
    assert!(records.is_empty(), "each write comes out exactly once");
    db.drop().await;
}

#[tokio::test]
async fn writes_that_skip_ordinary_triggers_still_reach_the_next_file() {
    // Logical replication subscribers and `pg_restore --disable-triggers` write with
    // session_replication_role = replica, which silences ordinary triggers.
    let db = TestDb::create().await;
    let mut client = db.client().await;
    let a = insert_interaction(&client, "a").await;
    let (_, first) = export(&mut client, FileType::Interactions, None).await;
    client
        .batch_execute(&format!(
            "SET session_replication_role = replica; \
             UPDATE interactions SET summary = 'fixed in bulk' WHERE interaction_id = {a}; \
             SET session_replication_role = DEFAULT"
        ))
        .await
        .expect("a write as a replica would make it");
    let (records, _) = export(&mut client, FileType::Interactions, Some(&first.watermark)).await;
    assert_eq!(
        ids(&records),
        [a],
        "the replica-role write is in the next file"
    );
    assert_eq!(&records[0][7], "fixed in bulk");
    db.drop().await;
}

#[tokio::test]
async fn a_transaction_open_across_an_export_is_in_the_next_file() {
    let db = TestDb::create().await;
    let mut client = db.client().await;
    let (writer_a, _connection_a) = connect(&db.url, TIMEOUT).await.expect("connect A");

    // Transaction A writes and stays open.
    writer_a
        .batch_execute(
            "BEGIN; INSERT INTO interactions (constituent_id, summary) VALUES (1, 'slow writer')",
        )
        .await
        .expect("A inserts");
    let a_txid: String = writer_a
        .query_one(
            "SELECT txid::text FROM interactions WHERE summary = 'slow writer'",
            &[],
        )
        .await
        .expect("A sees its row")
        .get(0);
    // A later transaction commits, so the snapshot's xmax is past A's id.
    let fast = insert_interaction(&client, "fast writer").await;

    let (records, first) = export(&mut client, FileType::Interactions, None).await;
    assert_eq!(ids(&records), [fast]);
    let snapshot = Snapshot::parse(&first.watermark).expect("snapshot");
    let a_txid: u64 = a_txid.parse().expect("xid8");
    assert!(
        a_txid < snapshot.xmax,
        "A's id ({a_txid}) is below the watermark's xmax ({}): a \"txid > last xmax\" window would lose A's row",
        snapshot.xmax
    );
    assert!(snapshot.in_progress.contains(&a_txid));

    writer_a.batch_execute("COMMIT").await.expect("A commits");

    let (records, second) =
        export(&mut client, FileType::Interactions, Some(&first.watermark)).await;
    assert_eq!(records.len(), 1, "exactly A's row");
    assert_eq!(&records[0][7], "slow writer");
    assert!(ids(&records)[0] != fast);

    let (records, _) = export(&mut client, FileType::Interactions, Some(&second.watermark)).await;
    assert!(records.is_empty());
    db.drop().await;
}

#[tokio::test]
async fn a_soft_delete_reaches_the_next_file_as_a_deleted_row() {
    let db = TestDb::create().await;
    let mut client = db.client().await;
    client
        .batch_execute(
            "INSERT INTO proposals (constituent_id, title, status, ask_amount, funded_amount, ask_date) \
             VALUES (3, 'Library', 'Active', 1000, -25.5, '2024-02-29'), (4, 'Boathouse', 'Pending', 5, NULL, NULL)",
        )
        .await
        .expect("insert");
    let (records, first) = export(&mut client, FileType::Proposals, None).await;
    assert_eq!(ids(&records), [1, 2]);
    assert_eq!(&records[0][7], "1000.00");
    assert_eq!(&records[0][9], "-25.50");
    assert_eq!(&records[0][10], "2024-02-29");
    assert_eq!(&records[0][16], "false");

    client
        .batch_execute("UPDATE proposals SET deleted = true WHERE proposal_id = 2")
        .await
        .expect("soft delete");
    let (records, _) = export(&mut client, FileType::Proposals, Some(&first.watermark)).await;
    assert_eq!(ids(&records), [2]);
    assert_eq!(&records[0][4], "Boathouse");
    assert_eq!(&records[0][16], "true");
    db.drop().await;
}

#[tokio::test]
async fn a_malformed_watermark_is_refused_naming_the_status_field() {
    let db = TestDb::create().await;
    let mut client = db.client().await;
    insert_interaction(&client, "x").await;
    for bad in [
        "2024-05-01T07:00:00Z",
        "12:10:",
        "1:2:3'; DROP TABLE interactions; --",
    ] {
        let err = export_with(
            &mut client,
            FileType::Interactions,
            Some(bad),
            &CsvOptions::default(),
        )
        .await
        .expect_err("malformed watermark");
        assert!(
            matches!(err, SourceError::InvalidWatermark { .. }),
            "{err:?}"
        );
        assert!(err.to_string().contains("status.watermark"), "{err}");
    }
    // The table survived and the client still works.
    let (records, _) = export(&mut client, FileType::Interactions, None).await;
    assert_eq!(records.len(), 1);
    db.drop().await;
}

#[tokio::test]
async fn a_role_that_may_not_read_control_data_still_exports_and_names_its_database() {
    let db = TestDb::create().await;
    let owner = db.client().await;
    insert_interaction(&owner, "one").await;
    // Function privileges are per database: this affects only the test's own database.
    let role = format!("sx_reader_{:08x}", unique_suffix() as u32);
    owner
        .batch_execute(&format!(
            "REVOKE EXECUTE ON FUNCTION pg_control_system() FROM PUBLIC;
             CREATE ROLE {role} LOGIN PASSWORD 'reader-password';
             GRANT SELECT ON interactions, proposals TO {role};"
        ))
        .await
        .expect("a reader role");
    let mut url = url::Url::parse(&db.url).expect("url");
    url.set_username(&role).expect("user");
    url.set_password(Some("reader-password")).expect("password");
    let (mut reader, _connection) = connect(url.as_str(), TIMEOUT).await.expect("connect");

    let (records, first) = export(&mut reader, FileType::Interactions, None).await;
    assert_eq!(ids(&records), [1]);
    assert_eq!(first.source.system_identifier, None);
    assert_eq!(first.source.database, db.name);
    // The database it names is this one: the next window continues.
    let watermark = Watermark {
        snapshot: first.watermark.clone(),
        source: Some(first.source.clone()),
    };
    insert_interaction(&owner, "two").await;
    let mut writer = CsvFileWriter::new(Vec::new(), FileType::Interactions, &CsvOptions::default())
        .expect("writer");
    let second = export_window(
        &mut reader,
        FileType::Interactions,
        Some(&watermark),
        &mut writer,
    )
    .await
    .expect("export");
    assert_eq!((second.rows, second.full_export), (1, None));

    drop(reader);
    db.drop().await;
    let (admin, _connection) = connect(&admin_url(), TIMEOUT).await.expect("connect");
    admin
        .batch_execute(&format!("DROP ROLE {role}"))
        .await
        .expect("drop role");
}

#[tokio::test]
async fn a_watermark_ahead_of_the_database_reads_every_row_instead_of_none() {
    let db = TestDb::create().await;
    let mut client = db.client().await;
    insert_interaction(&client, "after a restore").await;
    // As if the database had been restored from a backup: its ids are far behind the watermark,
    // so every row looks delivered to it.
    let (records, outcome) = export(
        &mut client,
        FileType::Interactions,
        Some("4000000000:4000000000:"),
    )
    .await;
    assert_eq!(ids(&records), [1]);
    let cause = outcome.full_export.expect("a full export");
    assert!(
        matches!(cause, FullExport::TransactionIdsBehind { .. }),
        "{cause:?}"
    );
    assert!(
        cause.to_string().contains("restored from a backup"),
        "{cause}"
    );
    assert!(xmax(&outcome.watermark) < 4_000_000_000);
    db.drop().await;
}

#[tokio::test]
async fn connection_failures_name_the_cause_without_the_password() {
    let secret = "Sx-Wr0ng-Passw0rd";
    // Unreachable: a port nobody listens on.
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.local_addr().expect("addr").port()
    };
    let url = format!("postgres://exporter:{secret}@127.0.0.1:{port}/crm");
    let err = connect(&url, Duration::from_secs(3))
        .await
        .expect_err("refused");
    let message = err.to_string();
    assert!(matches!(err, SourceError::Unreachable { .. }), "{err:?}");
    assert!(
        message.contains(&format!("127.0.0.1:{port}/crm as exporter")),
        "{message}"
    );
    assert!(!message.contains(secret), "{message}");
    assert!(!format!("{err:?}").contains(secret));

    // Wrong password for a real role (only meaningful when the server checks passwords on TCP).
    let db = TestDb::create().await;
    let role = format!("sx_role_{:08x}", unique_suffix() as u32);
    let (admin, _connection) = connect(&db.url, TIMEOUT).await.expect("connect");
    admin
        .batch_execute(&format!(
            "CREATE ROLE {role} LOGIN PASSWORD 'right-password'"
        ))
        .await
        .expect("create role");
    let mut wrong = url::Url::parse(&db.url).expect("url");
    wrong.set_username(&role).expect("user");
    wrong.set_password(Some(secret)).expect("password");
    match connect(wrong.as_str(), TIMEOUT).await {
        Ok(_) => eprintln!(
            "the server trusts this client without a password; skipped the wrong-password check"
        ),
        Err(err) => {
            let message = err.to_string();
            assert!(
                matches!(err, SourceError::AuthenticationFailed { .. }),
                "{err:?}"
            );
            assert!(message.contains("authentication failed"), "{message}");
            assert!(message.contains(&role), "{message}");
            assert!(!message.contains(secret), "{message}");
            assert!(!format!("{err:?}").contains(secret));
        }
    }

    // A database that does not exist.
    let missing = url_with_database(&db.url, "sx_no_such_database");
    let err = connect(&missing, TIMEOUT)
        .await
        .expect_err("missing database");
    assert!(
        matches!(err, SourceError::DatabaseMissing { .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("sx_no_such_database"), "{err}");

    // A database without the schema: the message says how to create it.
    let (mut bare, _connection) = connect(&db.url, TIMEOUT).await.expect("connect");
    let err = export_with(&mut bare, FileType::Proposals, None, &CsvOptions::default())
        .await
        .expect_err("no table");
    assert!(matches!(err, SourceError::TableMissing { .. }), "{err:?}");
    let message = err.to_string();
    assert!(message.contains("table proposals not found"), "{message}");
    assert!(
        message.contains("scheduled-exports sample-data"),
        "{message}"
    );

    // An unparsable URL does not echo itself.
    let err = connect(&format!("postgres://u:{secret}@h:notaport/db"), TIMEOUT)
        .await
        .expect_err("bad url");
    assert!(!err.to_string().contains(secret), "{err}");

    admin
        .batch_execute(&format!("DROP ROLE {role}"))
        .await
        .expect("drop role");
    drop(admin);
    drop(bare);
    db.drop().await;
}

/// Every cell of the file equals the database's own rendering of the row.
async fn assert_matches_database(
    client: &Client,
    file_type: FileType,
    records: &[csv::StringRecord],
) {
    let query = text_window_query(file_type, None);
    let messages = client
        .simple_query(&format!(
            "BEGIN; {}; {query}; COMMIT",
            columns::SESSION_SETTINGS
        ))
        .await
        .expect("select");
    let rows: Vec<_> = messages
        .iter()
        .filter_map(|m| match m {
            SimpleQueryMessage::Row(row) => Some(row),
            _ => None,
        })
        .collect();
    assert_eq!(rows.len(), records.len());
    for (row, record) in rows.iter().zip(records) {
        for index in 0..record.len() {
            assert_eq!(
                row.get(index).unwrap_or(""),
                &record[index],
                "column {index}"
            );
        }
    }
}

/// Ids, dates, timestamps and lists travel in binary and are rendered by the client: at the edges
/// of each type (BC years, far years, infinities, NULL list elements, nested lists) the file still
/// says what the server's own rendering says.
#[tokio::test]
async fn edge_values_render_as_the_server_renders_them() {
    let db = TestDb::create().await;
    run_sample_data(&db.url, 0, 0, 0, 1)
        .await
        .expect("schema only");
    let (mut client, _connection) = connect(&db.url, TIMEOUT).await.expect("connect");
    client
        .batch_execute(
            r#"INSERT INTO interactions (interaction_id, constituent_id, occurred_on, solicitors,
                   proposal_id, created_at, updated_at) VALUES
               (-5, -9223372036854775808, '4713-01-01 BC', '{}', NULL,
                '4713-01-01 00:00:00+00 BC', '1969-12-31 23:59:59.999999+00'),
               (0, 0, '0001-12-31 BC', '{NULL}', 0, '0001-01-01 00:00:00+00', '2000-01-01 00:00:00+00'),
               (9223372036854775807, 1, '10000-01-01', '{a,NULL,b}', 9223372036854775807,
                '294276-12-31 23:59:59.999999+00', 'infinity'),
               (7, 2, 'infinity', '{{a,b},{c,d}}', -1, '-infinity', '1999-12-31 23:59:59.5+00'),
               (8, 3, '-infinity', '{"",x}', NULL, '2024-02-29 12:00:00.000001+00',
                '0044-03-15 12:00:00+00 BC'),
               (9, 4, NULL, '{"semi;colon","quo\"te"}', NULL, '1900-03-01 00:00:00+00',
                '2100-02-28 23:59:59+00');
               INSERT INTO proposals (proposal_id, constituent_id, ask_amount, ask_date, expected_date,
                   funded_date, deleted) VALUES
               (1, 1, -0.50, '2000-02-29', NULL, 'infinity', true),
               (2, 2, 12345678901.99, '1582-10-15', '1582-10-04', '-infinity', false)"#,
        )
        .await
        .expect("edge rows");
    let (records, _) = export(&mut client, FileType::Interactions, None).await;
    assert_eq!(records.len(), 6);
    assert_matches_database(&client, FileType::Interactions, &records).await;
    // In key order: -5, 0, 7, 8, 9, then the largest id.
    let created: Vec<&str> = records.iter().map(|r| &r[13]).collect();
    assert_eq!(
        created[0], "4713-01-01T00:00:00.000000Z",
        "to_char shows no BC"
    );
    assert_eq!(created[2], "", "an infinite timestamp has no text");
    let (records, _) = export(&mut client, FileType::Proposals, None).await;
    assert_eq!(records.len(), 2);
    assert_matches_database(&client, FileType::Proposals, &records).await;
    drop(client);
    db.drop().await;
}

#[tokio::test]
async fn sample_data_exports_parse_back_with_exact_headers() {
    let db = TestDb::create().await;
    // Twice: the schema is idempotent, and the second call adds rows.
    run_sample_data(&db.url, 0, 0, 0, 1)
        .await
        .expect("schema only");
    let summary = run_sample_data(&db.url, 3000, 700, 0, 42)
        .await
        .expect("sample data");
    assert_eq!((summary.interactions, summary.proposals), (3000, 700));
    let (mut client, _connection) = connect(&db.url, TIMEOUT).await.expect("connect");

    let (records, _) = export(&mut client, FileType::Interactions, None).await;
    assert_eq!(records.len(), 3000);
    assert_matches_database(&client, FileType::Interactions, &records).await;
    let all = |column: usize| records.iter().map(move |r| r[column].to_string());
    assert!(
        all(8).any(|d| d.contains("\r\n")),
        "CRLF inside a description"
    );
    assert!(
        all(8).any(|d| d.contains('\n') && !d.contains('\r')),
        "LF inside a description"
    );
    assert!(all(7).any(|s| s.contains('"')), "quotes");
    assert!(all(7).any(|s| s.contains(',')), "commas");
    assert!(all(7).any(|s| s.starts_with('=')), "formula-looking text");
    assert!(
        all(7).any(|s| s.chars().any(|c| ('\u{4e00}'..='\u{9fff}').contains(&c))),
        "CJK"
    );
    assert!(
        all(7).any(|s| s.chars().any(|c| c as u32 >= 0x1F300)),
        "emoji"
    );
    assert!(
        all(9).any(|s| s.matches(';').count() >= 2),
        "several solicitors"
    );
    assert!(all(15).any(|s| s == "true"), "soft-deleted rows");
    assert!(all(14).all(|s| s.len() == 27 && s.ends_with('Z') && &s[10..11] == "T"));

    let (records, _) = export(&mut client, FileType::Proposals, None).await;
    assert_eq!(records.len(), 700);
    assert_matches_database(&client, FileType::Proposals, &records).await;
    assert!(
        records.iter().any(|r| r[9].starts_with('-')),
        "a negative amount"
    );

    // The other dialect: BOM, LF, escaped formulas; same rows, numbers untouched.
    let options = CsvOptions {
        line_terminator: LineTerminator::Lf,
        byte_order_mark: true,
        escape_formulas: true,
    };
    let (bytes, outcome) = export_with(&mut client, FileType::Proposals, None, &options)
        .await
        .expect("export");
    assert!(bytes.starts_with(b"\xEF\xBB\xBFproposal_id,"));
    let escaped = parse(&bytes, FileType::Proposals);
    assert_eq!(escaped.len() as u64, outcome.rows);
    assert_eq!(escaped.len(), records.len());
    for (plain, escaped) in records.iter().zip(&escaped) {
        for index in 0..plain.len() {
            let column = &columns::columns(FileType::Proposals)[index];
            let cell = &plain[index];
            let formula = cell.starts_with(['=', '+', '-', '@', '\t', '\r']);
            if column.kind.escapes_formulas() && formula {
                assert_eq!(escaped[index], format!("'{cell}"));
            } else {
                assert_eq!(&escaped[index], cell, "{}", column.name);
            }
        }
    }
    drop(client);
    db.drop().await;
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

#[tokio::test]
async fn the_same_seed_gives_the_same_files() {
    let mut digests = Vec::new();
    for seed in [9, 9, 10] {
        let db = TestDb::create().await;
        run_sample_data(&db.url, 1500, 300, 0, seed)
            .await
            .expect("sample data");
        let (mut client, _connection) = connect(&db.url, TIMEOUT).await.expect("connect");
        let mut files = String::new();
        for file_type in [FileType::Interactions, FileType::Proposals] {
            let (bytes, _) = export_with(&mut client, file_type, None, &CsvOptions::default())
                .await
                .expect("export");
            files.push_str(&sha256_hex(&bytes));
        }
        digests.push(files);
        drop(client);
        db.drop().await;
    }
    assert_eq!(digests[0], digests[1], "same seed, same bytes");
    assert_ne!(digests[0], digests[2], "another seed, other rows");
}

/// Hashes and counts what it is given, keeping nothing: the export's memory is its own.
struct HashingSink {
    hasher: Sha256,
    bytes: u64,
}

impl Write for HashingSink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.hasher.update(buf);
        self.bytes += buf.len() as u64;
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

#[tokio::test]
async fn a_large_export_streams_in_constant_memory() {
    let db = TestDb::create().await;
    let client = db.client().await;
    let started = Instant::now();
    generate(&client, 200_000, 0, 5).await.expect("generate");
    eprintln!("generated 200000 interactions in {:?}", started.elapsed());
    let mut client = client;

    let before = peak_rss_kib();
    let started = Instant::now();
    let sink = HashingSink {
        hasher: Sha256::new(),
        bytes: 0,
    };
    let mut writer =
        CsvFileWriter::new(sink, FileType::Interactions, &CsvOptions::default()).expect("writer");
    let outcome = export_window(&mut client, FileType::Interactions, None, &mut writer)
        .await
        .expect("export");
    let sink = writer.finish().expect("finish");
    let after = peak_rss_kib();
    eprintln!(
        "exported {} rows, {} bytes in {:?}",
        outcome.rows,
        sink.bytes,
        started.elapsed()
    );
    assert_eq!(outcome.rows, 200_000);
    assert!(sink.bytes > 40 * 1024 * 1024, "{} bytes", sink.bytes);
    if let (Some(before), Some(after)) = (before, after) {
        let growth_kib = after.saturating_sub(before);
        eprintln!("peak RSS grew by {growth_kib} KiB");
        assert!(
            growth_kib * 1024 < sink.bytes / 4,
            "peak RSS grew by {growth_kib} KiB for a {}-byte file",
            sink.bytes
        );
    }
    drop(client);
    db.drop().await;
}

/// Benchmark, run by hand: `cargo test --release --test source_windows -- --ignored --nocapture`.
/// Generates `SX_BENCH_ROWS` (default 1,000,000) interactions and exports them to a file under
/// `SX_BENCH_DIR` (default the system temp dir), then prints the `psql` command that runs the same
/// query for comparison; set `SX_BENCH_KEEP=1` to keep the database for that.
#[tokio::test]
#[ignore = "benchmark; run by hand"]
async fn benchmark_generate_and_export_interactions() {
    let rows: u64 = std::env::var("SX_BENCH_ROWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let dir = std::env::var("SX_BENCH_DIR")
        .unwrap_or_else(|_| std::env::temp_dir().display().to_string());
    let db = TestDb::create().await;
    let client = db.client().await;
    let started = Instant::now();
    generate(&client, rows, 0, 1).await.expect("generate");
    eprintln!("generate: {rows} interactions in {:?}", started.elapsed());
    client
        .batch_execute("VACUUM ANALYZE interactions")
        .await
        .expect("vacuum");
    let mut client = client;
    let path = std::path::Path::new(&dir).join(format!("{}.csv", db.name));
    for attempt in 0..3 {
        let started = Instant::now();
        let file = std::fs::File::create(&path).expect("create file");
        let mut writer = CsvFileWriter::new(file, FileType::Interactions, &CsvOptions::default())
            .expect("writer");
        let outcome = export_window(&mut client, FileType::Interactions, None, &mut writer)
            .await
            .expect("export");
        let file = writer.finish().expect("finish");
        file.sync_all().expect("sync");
        let size = file.metadata().expect("metadata").len();
        eprintln!(
            "export #{attempt}: {} rows, {size} bytes in {:?} -> {}",
            outcome.rows,
            started.elapsed(),
            path.display()
        );
    }
    let query = text_window_query(FileType::Interactions, None);
    // The password stays out of the output: psql takes it from PGPASSWORD or ~/.pgpass.
    let mut shown = url::Url::parse(&db.url).expect("url");
    shown.set_password(None).ok();
    eprintln!(
        "compare: psql -X '{shown}' -c \"COPY ({query}) TO STDOUT CSV HEADER\" > {dir}/psql.csv"
    );
    if std::env::var("SX_BENCH_KEEP").is_err() {
        drop(client);
        std::fs::remove_file(&path).ok();
        db.drop().await;
    }
}
