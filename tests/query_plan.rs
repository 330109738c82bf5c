//! The full export reads rows in numeric key order by walking the primary key, as the test bed's
//! real PostgreSQL plans it: no Sort node over the window, and files in ascending numeric order.

mod common;

use scheduled_exports::adapters::postgres::{Snapshot, window_planner_settings};
use scheduled_exports::export::csv::CsvFileWriter;
use scheduled_exports::export::window::{export_window, window_query};
use scheduled_exports::resource::{CsvOptions, FileType};
use serde_json::Value;

/// Every node type of an `EXPLAIN (FORMAT JSON)` plan, depth first, with its index name if any.
fn plan_nodes(node: &Value, out: &mut Vec<(String, Option<String>)>) {
    let kind = node["Node Type"].as_str().unwrap_or_default().to_string();
    let index = node["Index Name"].as_str().map(str::to_string);
    out.push((kind, index));
    for child in node["Plans"].as_array().into_iter().flatten() {
        plan_nodes(child, out);
    }
}

/// The plan of `file_type`'s window after `previous`, planned as the export plans it: in a
/// read-only repeatable-read transaction with the export's planner settings.
async fn window_plan(
    client: &mut tokio_postgres::Client,
    file_type: FileType,
    previous: Option<&Snapshot>,
) -> Vec<(String, Option<String>)> {
    let transaction = client
        .build_transaction()
        .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .await
        .expect("begin");
    let settings = window_planner_settings(previous);
    if !settings.is_empty() {
        transaction.batch_execute(settings).await.expect("settings");
    }
    let sql = format!(
        "EXPLAIN (FORMAT JSON) {}",
        window_query(file_type, previous)
    );
    // The simple protocol returns the plan as text (the crate has no JSON column support here).
    let messages = transaction.simple_query(&sql).await.expect("explain");
    let text = messages
        .iter()
        .find_map(|message| match message {
            tokio_postgres::SimpleQueryMessage::Row(row) => row.get(0).map(str::to_string),
            _ => None,
        })
        .expect("a plan");
    let plan: Value = serde_json::from_str(&text).expect("JSON plan");
    transaction.rollback().await.expect("rollback");
    let mut nodes = Vec::new();
    plan_nodes(&plan[0]["Plan"], &mut nodes);
    nodes
}

#[tokio::test]
async fn the_full_export_walks_the_primary_key_and_comes_out_in_numeric_order() {
    let url = common::create_database("sx_plan").await;
    let output = common::run_binary(
        &[
            "sample-data",
            "--database-url",
            &url,
            "--interactions",
            "3000",
            "--proposals",
            "1200",
            "--seed",
            "11",
        ],
        &[],
    );
    assert!(
        output.status.success(),
        "sample-data: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let mut client = common::connect_database(&url).await;
    // Statistics as a table in use has them, so the planner chooses on real costs.
    client.batch_execute("ANALYZE").await.expect("analyze");

    for (file_type, pkey) in [
        (FileType::Interactions, "interactions_pkey"),
        (FileType::Proposals, "proposals_pkey"),
    ] {
        let nodes = window_plan(&mut client, file_type, None).await;
        assert!(
            nodes.iter().all(|(kind, _)| kind != "Sort"),
            "{file_type}: the full export sorts: {nodes:?}"
        );
        assert!(
            nodes
                .iter()
                .any(|(kind, index)| kind.starts_with("Index") && index.as_deref() == Some(pkey)),
            "{file_type}: the full export does not walk {pkey}: {nodes:?}"
        );

        let mut writer =
            CsvFileWriter::new(Vec::new(), file_type, &CsvOptions::default()).expect("writer");
        let outcome = export_window(&mut client, file_type, None, &mut writer)
            .await
            .expect("export");
        let bytes = writer.finish().expect("finish");
        let mut reader = csv::Reader::from_reader(bytes.as_slice());
        let ids: Vec<u64> = reader
            .records()
            .map(|record| record.expect("record")[0].parse().expect("numeric id"))
            .collect();
        assert_eq!(ids.len() as u64, outcome.rows);
        assert!(ids.len() >= 1000, "{file_type}: {} rows", ids.len());
        // Text order would put 10 right after 1, and 1000 after 100.
        assert!(
            ids.windows(2).all(|pair| pair[0] < pair[1]),
            "{file_type}: ids not in ascending numeric order: {:?}",
            &ids[..20.min(ids.len())]
        );
    }
}
