//! One no-loss window: the rows not visible in the previous snapshot, read in one
//! `REPEATABLE READ READ ONLY` transaction whose own snapshot becomes the new watermark, streamed
//! through binary COPY into a [`RowSink`]. What the rows are (table, columns) is the caller's
//! [`WindowQuery`]; this module only knows PostgreSQL.

use futures::StreamExt;
use tokio_postgres::error::SqlState;
use tokio_postgres::{Client, IsolationLevel, SimpleQueryMessage};

use super::copy::BinaryCopyDecoder;
use super::{Snapshot, SourceError, WindowOutcome};

/// Most columns a window may select (the decoder keeps one row's cells on the stack).
pub const MAX_COLUMNS: usize = 32;

/// What a window reads: every column already rendered as text by `select_list`, so the client
/// only copies bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WindowQuery {
    pub table: &'static str,
    /// The primary key, which orders the rows.
    pub key: &'static str,
    pub select_list: String,
    /// How many columns `select_list` yields.
    pub columns: usize,
    /// `SET LOCAL` statements that fix how values are rendered (dates, zones).
    pub session_settings: &'static str,
}

/// Where decoded rows go, as they stream: one cell per column, `None` for NULL.
pub trait RowSink {
    fn write_row(&mut self, cells: &[Option<&[u8]>]) -> std::io::Result<()>;
}

/// The query of one window, with the previous snapshot embedded as a literal (COPY takes no
/// parameters; the snapshot was validated by [`Snapshot::parse`], so it holds only digits, `:` and
/// `,`). Public so benchmarks can run the same query through `psql`.
pub fn window_sql(query: &WindowQuery, previous: Option<&Snapshot>) -> String {
    let WindowQuery {
        table,
        key,
        select_list,
        ..
    } = query;
    let filter = match previous {
        None => String::new(),
        // `txid >= xmin` is implied (everything older is visible) and lets the txid index narrow
        // the scan to recent writes.
        Some(snapshot) => format!(
            " WHERE txid >= '{xmin}'::xid8 AND NOT pg_visible_in_snapshot(txid, '{snapshot}'::pg_snapshot)",
            xmin = snapshot.xmin
        ),
    };
    // Qualified, so ORDER BY names the table's column, not the select list's text alias of the
    // same name: numeric order, and the primary key's index yields it without a sort.
    format!("SELECT {select_list} FROM {table}{filter} ORDER BY {table}.{key}")
}

/// Planner settings for one window, run inside its transaction before the COPY. A full export
/// reads the whole table, where the planner may prefer a sequential scan and a sort that spills
/// the table to disk; walking the primary key gives the same order in constant memory. A later
/// window keeps the planner's choice: the txid index finds its few rows, and sorting them is cheap.
pub fn window_planner_settings(previous: Option<&Snapshot>) -> &'static str {
    match previous {
        None => "SET LOCAL enable_sort = off",
        Some(_) => "",
    }
}

/// Copies the rows of `query` written since `previous` (all rows when `None`) into `out`, and
/// returns the row count and the new watermark.
///
/// The caller stores the watermark only after the file is delivered, so a failed run repeats the
/// window. `out` receives rows as they stream.
pub async fn copy_window(
    client: &mut Client,
    query: &WindowQuery,
    previous: Option<&str>,
    out: &mut impl RowSink,
) -> Result<WindowOutcome, SourceError> {
    if query.columns > MAX_COLUMNS {
        return Err(SourceError::MalformedCopy(format!(
            "{} columns asked of {}, at most {MAX_COLUMNS} are supported",
            query.columns, query.table
        )));
    }
    let previous = previous.map(Snapshot::parse).transpose()?;
    let table = query.table;
    let transaction = client
        .build_transaction()
        .isolation_level(IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .await
        .map_err(SourceError::query("cannot start the export transaction"))?;
    // First statement of the transaction: it establishes the transaction snapshot, so the text
    // returned is exactly the snapshot every later statement reads with.
    let messages = transaction
        .simple_query(&format!(
            "SELECT pg_current_snapshot()::text; {}",
            query.session_settings
        ))
        .await
        .map_err(SourceError::query("cannot take the export snapshot"))?;
    let watermark = messages
        .iter()
        .find_map(|message| match message {
            SimpleQueryMessage::Row(row) => row.get(0).map(str::to_string),
            _ => None,
        })
        .ok_or_else(|| {
            SourceError::MalformedCopy("pg_current_snapshot() returned no row".into())
        })?;

    // Transaction ids only grow; a database whose current snapshot is behind the watermark was
    // restored or replaced, and its new rows would be invisible to this window until the ids
    // caught up, then skipped for good. Refuse instead of delivering empty files.
    if let Some(previous) = &previous {
        let current = Snapshot::parse(&watermark)?;
        if current.xmax < previous.xmax {
            return Err(SourceError::WatermarkAhead {
                watermark: previous.to_string(),
                current: current.to_string(),
            });
        }
    }

    let settings = window_planner_settings(previous.as_ref());
    if !settings.is_empty() {
        transaction
            .batch_execute(settings)
            .await
            .map_err(SourceError::query("cannot set up the export query"))?;
    }
    let sql = window_sql(query, previous.as_ref());
    let copy = format!("COPY ({sql}) TO STDOUT (FORMAT binary)");
    let stream = transaction
        .copy_out(copy.as_str())
        .await
        .map_err(|err| classify_query_error(err, table))?;
    futures::pin_mut!(stream);

    let mut rows = 0;
    let mut decoder = BinaryCopyDecoder::new(query.columns);
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|err| classify_query_error(err, table))?;
        decoder.feed(&chunk, |cells| {
            rows += 1;
            out.write_row(cells)
        })?;
    }
    decoder.finish()?;
    // Read-only: ending it either way releases the snapshot; commit reports any late error.
    transaction
        .commit()
        .await
        .map_err(SourceError::query(format!("cannot finish reading {table}")))?;
    Ok(WindowOutcome { rows, watermark })
}

fn classify_query_error(err: tokio_postgres::Error, table: &'static str) -> SourceError {
    if let Some(db) = err.as_db_error() {
        if *db.code() == SqlState::UNDEFINED_TABLE {
            return SourceError::TableMissing { table };
        }
        if *db.code() == SqlState::UNDEFINED_COLUMN || *db.code() == SqlState::UNDEFINED_FUNCTION {
            return SourceError::ColumnMissing {
                table,
                cause: db.message().to_string(),
            };
        }
    }
    SourceError::Query {
        context: format!("cannot export {table}"),
        source: err,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query_of(table: &'static str, key: &'static str) -> WindowQuery {
        WindowQuery {
            table,
            key,
            select_list: format!("{key}::text AS {key}, title"),
            columns: 2,
            session_settings: "",
        }
    }

    #[test]
    fn window_query_filters_on_the_previous_snapshot() {
        let snapshot = Snapshot::parse("10:20:12,15").expect("valid");
        let query = window_sql(&query_of("proposals", "proposal_id"), Some(&snapshot));
        assert!(query.starts_with("SELECT proposal_id::text AS proposal_id, "));
        assert!(query.ends_with(
            " FROM proposals WHERE txid >= '10'::xid8 AND NOT pg_visible_in_snapshot(txid, \
             '10:20:12,15'::pg_snapshot) ORDER BY proposals.proposal_id"
        ));
        let all = window_sql(&query_of("interactions", "interaction_id"), None);
        assert!(all.ends_with(" FROM interactions ORDER BY interactions.interaction_id"));
    }
}
