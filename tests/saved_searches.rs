//! The constituents file type and saved searches (`spec.source.view`) against the real test bed:
//! the rows are PostgreSQL's, the files are read from the SFTP directory as the institution reads
//! them, and admission is the real API server's.

mod common;

use common::fixture::{Fixture, files_in, read_csv};
use common::*;
use scheduled_exports::resource::ScheduledExport;
use serde_json::json;

fn stderr(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

const CONSTITUENT_COLUMNS: [&str; 19] = [
    "constituent_id",
    "constituent_import_id",
    "name_prefix",
    "first_name",
    "middle_name",
    "last_name",
    "name_suffix",
    "primary_email",
    "phone",
    "address_line_1",
    "address_line_2",
    "city",
    "region",
    "postal_code",
    "country",
    "affiliations",
    "created_at",
    "updated_at",
    "deleted",
];

/// A ScheduledExport of `constituents` into the fixture's directory, reading `view` when given.
async fn create_constituents_object(fixture: &Fixture, name: &str, view: Option<&str>) {
    let mut object = valid_object(name);
    object["spec"]["fileType"] = json!("constituents");
    if let Some(view) = view {
        object["spec"]["source"]["view"] = json!(view);
    }
    object["spec"]["destination"]["sftp"] = json!({
        "host": env_var("SFTP_HOST"),
        "port": env_var("SFTP_PORT").parse::<u16>().expect("port"),
        "username": env_var("SFTP_USER"),
        "directory": fixture.remote_dir,
        "secretRef": {"name": "sftp-credentials"},
    });
    let object: ScheduledExport = serde_json::from_value(object).expect("object");
    fixture
        .api()
        .create(&Default::default(), &object)
        .await
        .expect("create ScheduledExport");
}

/// Adds `count` sample constituents to the fixture's database.
fn load_constituents(fixture: &Fixture, count: u64) {
    let output = run_binary(
        &[
            "sample-data",
            "--database-url",
            &fixture.database_url,
            "--interactions",
            "0",
            "--proposals",
            "0",
            "--constituents",
            &count.to_string(),
        ],
        &[],
    );
    assert!(output.status.success(), "sample-data: {}", stderr(&output));
}

/// The text of `sql`'s rows, every column cast to text by the query itself.
async fn rows_of(db: &tokio_postgres::Client, sql: &str) -> Vec<Vec<String>> {
    db.query(sql, &[])
        .await
        .expect(sql)
        .iter()
        .map(|row| {
            (0..row.len())
                .map(|index| row.get::<_, Option<String>>(index).unwrap_or_default())
                .collect()
        })
        .collect()
}

#[tokio::test]
async fn constituents_are_delivered_with_every_column_then_only_what_changed() {
    let fixture = Fixture::new("sx-constituents", 0).await;
    load_constituents(&fixture, 25);
    create_constituents_object(&fixture, "people", None).await;

    let first = fixture.export("people", "2026-11-30T12:00:00Z");
    assert!(first.status.success(), "{}", stderr(&first));
    let file = fixture.local_dir.join("constituents-20261130T120000Z.csv");
    let (headers, rows) = read_csv(&file);
    assert_eq!(headers, CONSTITUENT_COLUMNS);
    let db = connect_database(&fixture.database_url).await;
    let expected = rows_of(
        &db,
        "SELECT constituent_id::text, constituent_import_id, name_prefix, first_name, middle_name, \
         last_name, name_suffix, primary_email, phone, address_line_1, address_line_2, city, \
         region, postal_code, country, array_to_string(affiliations, ';'), \
         to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'), \
         to_char(updated_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'), \
         deleted::text FROM constituents ORDER BY constituents.constituent_id",
    )
    .await;
    assert_eq!(rows.len(), 25);
    assert_eq!(
        rows, expected,
        "every constituent, cell for cell, in key order"
    );
    assert!(
        rows.iter().any(|row| row[15].contains(';')),
        "affiliations are a ;-separated list"
    );

    // A write whose transaction is still open during the next export reaches the file after it.
    let mut writer = connect_database(&fixture.database_url).await;
    let open = writer.transaction().await.expect("begin");
    open.execute(
        "UPDATE constituents SET city = 'Late, committed' WHERE constituent_id = 3",
        &[],
    )
    .await
    .expect("update in an open transaction");
    db.batch_execute(
        "UPDATE constituents SET affiliations = '{Alumni,\"Board of Trustees\"}' WHERE constituent_id = 1",
    )
    .await
    .expect("update");
    let second = fixture.export("people", "2026-12-01T12:00:00Z");
    assert!(second.status.success(), "{}", stderr(&second));
    let (_, rows) = read_csv(&fixture.local_dir.join("constituents-20261201T120000Z.csv"));
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(
        (rows[0][0].as_str(), rows[0][15].as_str()),
        ("1", "Alumni;Board of Trustees")
    );
    open.commit().await.expect("commit");
    let third = fixture.export("people", "2026-12-02T12:00:00Z");
    assert!(third.status.success(), "{}", stderr(&third));
    let (_, rows) = read_csv(&fixture.local_dir.join("constituents-20261202T120000Z.csv"));
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(
        (rows[0][0].as_str(), rows[0][11].as_str()),
        ("3", "Late, committed")
    );
    fixture.cleanup().await;
}

#[tokio::test]
async fn a_saved_search_is_delivered_with_its_columns_in_its_order_under_the_same_windows() {
    let fixture = Fixture::new("sx-view", 0).await;
    load_constituents(&fixture, 40);
    let db = connect_database(&fixture.database_url).await;
    // Mixed case and a schema: the name must be quoted exactly as written.
    db.batch_execute(
        "CREATE SCHEMA crm;
         CREATE VIEW crm.\"MajorDonors\" AS
             SELECT c.last_name, c.constituent_id, c.primary_email, c.affiliations, c.updated_at,
                    c.deleted, c.txid
             FROM constituents c WHERE 'Alumni' = ANY (c.affiliations);",
    )
    .await
    .expect("create the saved search");
    create_constituents_object(&fixture, "major-donors", Some("crm.MajorDonors")).await;

    let first = fixture.export("major-donors", "2026-11-30T12:00:00Z");
    assert!(first.status.success(), "{}", stderr(&first));
    let (headers, rows) = read_csv(&fixture.local_dir.join("constituents-20261130T120000Z.csv"));
    assert_eq!(
        headers,
        [
            "last_name",
            "constituent_id",
            "primary_email",
            "affiliations",
            "updated_at",
            "deleted"
        ],
        "the view's columns in its order, txid left out"
    );
    let expected = rows_of(
        &db,
        "SELECT last_name, constituent_id::text, primary_email, array_to_string(affiliations, ';'), \
         to_char(updated_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'), deleted::text \
         FROM crm.\"MajorDonors\" ORDER BY last_name",
    )
    .await;
    assert!(!expected.is_empty(), "the sample data has alumni");
    let mut sorted = rows.clone();
    sorted.sort();
    let mut expected_sorted = expected.clone();
    expected_sorted.sort();
    assert_eq!(sorted, expected_sorted, "exactly the saved search's rows");
    let mut order = rows.clone();
    order.sort_by(|a, b| a[0].cmp(&b[0]));
    assert_eq!(
        rows.iter().map(|r| &r[0]).collect::<Vec<_>>(),
        order.iter().map(|r| &r[0]).collect::<Vec<_>>(),
        "ordered by the view's first column"
    );

    // Only what changed since: one alumnus edited, one constituent joining the search.
    db.batch_execute(
        "UPDATE constituents SET primary_email = 'new@example.edu' \
             WHERE constituent_id = (SELECT min(constituent_id) FROM crm.\"MajorDonors\");
         UPDATE constituents SET affiliations = '{Alumni}' \
             WHERE constituent_id = (SELECT min(constituent_id) FROM constituents \
                                     WHERE NOT 'Alumni' = ANY (affiliations));",
    )
    .await
    .expect("edit");
    let second = fixture.export("major-donors", "2026-12-01T12:00:00Z");
    assert!(second.status.success(), "{}", stderr(&second));
    let (_, rows) = read_csv(&fixture.local_dir.join("constituents-20261201T120000Z.csv"));
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert!(rows.iter().any(|row| row[2] == "new@example.edu"));
    assert!(
        rows.iter()
            .all(|row| row[3].split(';').any(|a| a == "Alumni"))
    );
    fixture.cleanup().await;
}

#[tokio::test]
async fn a_view_without_txid_is_refused_with_the_field_and_the_fix() {
    let fixture = Fixture::new("sx-view-notxid", 0).await;
    load_constituents(&fixture, 5);
    connect_database(&fixture.database_url)
        .await
        .batch_execute(
            "CREATE VIEW saved_search AS SELECT constituent_id, last_name FROM constituents",
        )
        .await
        .expect("create a view without txid");
    create_constituents_object(&fixture, "search", Some("saved_search")).await;

    let output = fixture.export("search", "2026-11-30T12:00:00Z");
    assert_eq!(
        output.status.code(),
        Some(2),
        "bad input, not retried: {}",
        stderr(&output)
    );
    assert!(files_in(&fixture.local_dir).is_empty(), "nothing delivered");
    let object = fixture.object("search").await;
    let status = object.status.expect("status");
    let exported = status
        .conditions
        .iter()
        .find(|c| c.type_ == "Exported")
        .expect("Exported");
    assert_eq!(
        (exported.status.as_str(), exported.reason.as_str()),
        ("False", "ViewInvalid")
    );
    for says in [
        "spec.source.view \"saved_search\"",
        "no column txid",
        "CREATE OR REPLACE VIEW",
    ] {
        assert!(exported.message.contains(says), "{}", exported.message);
    }
    assert_eq!(status.watermark, None);

    // A name that is no view at all says so too.
    create_constituents_object(&fixture, "missing", Some("no_such_view")).await;
    let output = fixture.export("missing", "2026-11-30T12:00:00Z");
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("spec.source.view \"no_such_view\" names no table or view"),
        "{}",
        stderr(&output)
    );
    fixture.cleanup().await;
}

#[tokio::test]
async fn the_api_server_refuses_a_malformed_view_name_and_a_changed_view() {
    let client = client().await;
    install_crd(&client).await;
    let namespace = test_namespace(&client, "sx-view-admission").await;
    let api: kube::Api<ScheduledExport> = kube::Api::namespaced(client.clone(), &namespace);
    let with_view = |name: &str, view: &str| {
        let mut object = valid_object(name);
        object["spec"]["fileType"] = json!("constituents");
        object["spec"]["source"]["view"] = json!(view);
        serde_json::from_value::<ScheduledExport>(object).expect("object")
    };
    for bad in [
        "major donors",
        "1st_search",
        "a.b.c",
        "x\"; DROP TABLE constituents; --",
    ] {
        let err = api
            .create(&Default::default(), &with_view("bad", bad))
            .await
            .expect_err(bad);
        let message = err.to_string();
        assert!(
            message.contains("must be a PostgreSQL name such as major_donors"),
            "{bad}: {message}"
        );
    }
    api.create(&Default::default(), &with_view("good", "crm.MajorDonors"))
        .await
        .expect("a valid view name is admitted");
    for change in [json!("crm.Other"), serde_json::Value::Null] {
        let err = api
            .patch(
                "good",
                &kube::api::PatchParams::default(),
                &kube::api::Patch::Merge(&json!({"spec": {"source": {"view": change}}})),
            )
            .await
            .expect_err("the view cannot change");
        assert!(
            err.to_string().contains("source.view is immutable"),
            "{err}"
        );
    }
    let (ok, out, err) = kubectl(&["explain", "scheduledexport.spec.source.view"]);
    assert!(ok, "{err}");
    assert!(
        out.contains("saved search") && out.contains("txid"),
        "{out}"
    );
    delete_namespace(&client, &namespace).await;
}
