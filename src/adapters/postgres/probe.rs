//! The preflight's read of the source: the window query itself, limited to no rows, in a
//! read-only transaction, so whatever a run would trip over (a missing table, column, function or
//! privilege) shows now and nothing is read or written.

use tokio_postgres::Client;
use tokio_postgres::IsolationLevel;

use super::window::{WindowQuery, classify_query_error, window_sql};
use super::{Snapshot, SourceError};

/// Runs `query`'s window (with an incremental filter, so the `txid` column and the snapshot
/// functions are exercised too) as `SELECT ... LIMIT 0` inside a `READ ONLY` transaction.
pub async fn probe_window(client: &mut Client, query: &WindowQuery) -> Result<(), SourceError> {
    let transaction = client
        .build_transaction()
        .isolation_level(IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .await
        .map_err(SourceError::query("cannot start a read-only transaction"))?;
    if !query.session_settings.is_empty() {
        transaction
            .batch_execute(query.session_settings)
            .await
            .map_err(SourceError::query(
                "cannot apply the export's session settings",
            ))?;
    }
    let after = Snapshot {
        xmin: 1,
        xmax: 1,
        in_progress: Vec::new(),
    };
    let sql = format!(
        "SELECT * FROM ({}) AS preflight LIMIT 0",
        window_sql(query, Some(&after), None)
    );
    transaction
        .simple_query(&sql)
        .await
        .map_err(|err| classify_query_error(err, &query.table, false))?;
    // Nothing was written; ending it either way is the same.
    let _ = transaction.rollback().await;
    Ok(())
}

/// Whether `err` is the server refusing the role access to the table, view or schema.
pub fn is_permission_denied(err: &SourceError) -> bool {
    match err {
        SourceError::Query { source, .. } => source.as_db_error().is_some_and(|db| {
            *db.code() == tokio_postgres::error::SqlState::INSUFFICIENT_PRIVILEGE
        }),
        _ => false,
    }
}
