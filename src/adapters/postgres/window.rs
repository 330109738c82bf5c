//! One no-loss window: the rows not visible in the previous snapshot, read in one
//! `REPEATABLE READ READ ONLY` transaction whose own snapshot becomes the new watermark, streamed
//! through binary COPY into a [`RowSink`]. What the rows are (table, columns) is the caller's
//! [`WindowQuery`]; this module only knows PostgreSQL.

use std::time::Duration;

use futures::{FutureExt, StreamExt};
use tokio_postgres::error::SqlState;
use tokio_postgres::{Client, IsolationLevel, SimpleQueryMessage};

use super::copy::BinaryCopyDecoder;
use super::values::WireType;
use super::{FullExport, Snapshot, SourceError, SourceIdentity, Watermark, WindowOutcome};

/// Most columns a window may select (the decoder keeps one row's cells on the stack).
pub const MAX_COLUMNS: usize = 64;

/// What a window reads: `select_list` yields one value per cell, each of the type its
/// [`WireType`] names, which the client renders as the cell's text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WindowQuery {
    /// The table or view as SQL (a view named in the spec arrives quoted).
    pub table: String,
    /// The primary key (a view's first column), which orders the rows.
    pub key: String,
    pub select_list: String,
    /// Per column of `select_list`, in order, the type it yields.
    pub wire_types: Vec<WireType>,
    /// `SET LOCAL` statements that fix how values are rendered (dates, zones).
    pub session_settings: &'static str,
    /// The longest wait for the next piece of COPY data. A link held open by a proxy or firewall
    /// that stopped forwarding looks healthy to TCP, so only this ends such a run.
    pub stall_timeout: Duration,
}

/// Where decoded rows go, as they stream: one cell per column, `None` for NULL.
pub trait RowSink {
    fn write_row(&mut self, cells: &[Option<&[u8]>]) -> std::io::Result<()>;

    /// Called after the rows of each COPY message were written: a sink that hands its output on
    /// waits here for room, which holds the COPY (back-pressure) instead of buffering.
    fn after_message(&mut self) -> impl Future<Output = std::io::Result<()>> + Send {
        std::future::ready(Ok(()))
    }
}

/// How one window is bounded, decided from the stored watermark and what the export's
/// transaction sees.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WindowPlan {
    /// Rows of transactions visible in this snapshot were delivered before; `None`: every row is
    /// read.
    pub after: Option<Snapshot>,
    /// On a standby, only rows of transactions below this id are read (see [`copy_window`]).
    pub finished_below: Option<u64>,
    /// The watermark to store once the file is delivered.
    pub watermark: Snapshot,
    /// Why every row is read although a watermark was stored.
    pub full_export: Option<FullExport>,
}

/// Decides the window. `previous` is the stored watermark (parsed) and the database it names;
/// `current` is the export transaction's snapshot, taken in `source`.
///
/// A watermark of another database (another cluster, or a database created again) or one whose
/// ids this database has not reached means nothing here, so the window holds every row. On a
/// standby a watermark ahead of the snapshot is taken as replay lag when it names this database
/// (a watermark written through the primary), and the window simply holds nothing it has not
/// replayed yet.
pub fn plan_window(
    previous: Option<(&Snapshot, Option<&SourceIdentity>)>,
    current: &Snapshot,
    source: &SourceIdentity,
    in_recovery: bool,
) -> WindowPlan {
    let full_export = previous.and_then(|(snapshot, stored)| match stored {
        Some(stored)
            if stored
                .system_identifier
                .zip(source.system_identifier)
                .is_some_and(|(stored, current)| stored != current) =>
        {
            Some(FullExport::OtherCluster {
                stored: stored.clone(),
                current: source.clone(),
            })
        }
        Some(stored) if stored.database_oid != source.database_oid => {
            Some(FullExport::OtherDatabase {
                stored: stored.clone(),
                current: source.clone(),
            })
        }
        // Transaction ids only grow within one database, except on a standby that has not yet
        // replayed what the primary had when the watermark was taken.
        _ if current.xmax < snapshot.xmax && !(in_recovery && stored.is_some()) => {
            Some(FullExport::TransactionIdsBehind {
                watermark: snapshot.to_string(),
                current: current.to_string(),
            })
        }
        _ => None,
    });
    let after = match full_export {
        Some(_) => None,
        None => previous.map(|(snapshot, _)| snapshot.clone()),
    };
    if in_recovery {
        WindowPlan {
            watermark: Snapshot::covering(after.as_ref(), current.xmin),
            after,
            finished_below: Some(current.xmin),
            full_export,
        }
    } else {
        WindowPlan {
            after,
            finished_below: None,
            watermark: current.clone(),
            full_export,
        }
    }
}

/// The query of one window: the rows of transactions not visible in `after` (every row when
/// `None`) and, when set, below `finished_below`. Both bounds are embedded as literals (COPY takes
/// no parameters; a snapshot was validated by [`Snapshot::parse`], so it holds only digits, `:`
/// and `,`). Public so benchmarks can run the same query through `psql`.
pub fn window_sql(
    query: &WindowQuery,
    after: Option<&Snapshot>,
    finished_below: Option<u64>,
) -> String {
    let WindowQuery {
        table,
        key,
        select_list,
        ..
    } = query;
    let mut conditions = Vec::new();
    if let Some(snapshot) = after {
        // `txid >= xmin` is implied (everything older is visible) and lets the txid index narrow
        // the scan to recent writes.
        conditions.push(format!(
            "txid >= '{xmin}'::xid8 AND NOT pg_visible_in_snapshot(txid, '{snapshot}'::pg_snapshot)",
            xmin = snapshot.xmin
        ));
    }
    if let Some(below) = finished_below {
        conditions.push(format!("txid < '{below}'::xid8"));
    }
    let filter = if conditions.is_empty() {
        String::new()
    } else {
        format!(" WHERE {}", conditions.join(" AND "))
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

/// What the export's first statement returns: its snapshot and where it runs. Whether the role
/// may read the cluster's control data is asked first, since a refused function call would abort
/// the transaction.
const SNAPSHOT_AND_SOURCE: &str = "SELECT pg_current_snapshot()::text, pg_is_in_recovery()::text, \
     has_function_privilege('pg_catalog.pg_control_system()', 'EXECUTE')::text, current_database(), \
     (SELECT oid FROM pg_database WHERE datname = current_database())::text";

/// Copies the rows of `query` written since `previous` (all rows when `None`) into `out`, and
/// returns the row count, the new watermark and the database it belongs to.
///
/// On a primary the window ends at the transaction's snapshot, which becomes the watermark. A hot
/// standby's snapshot keeps its in-progress transactions where `pg_current_snapshot()` does not
/// show them, so its text would claim that transactions still open on the primary were finished,
/// and their rows would be skipped for good once they commit. There the window ends at the
/// snapshot's `xmin` instead, under which every transaction had finished (its rows are visible iff
/// it committed): rows of later transactions wait for the next window, and the watermark is
/// `xmin:xmin:` (joined with the previous one, see [`Snapshot::covering`]).
///
/// The caller stores the watermark only after the file is delivered, so a failed run repeats the
/// window. `out` receives rows as they stream.
pub async fn copy_window(
    client: &mut Client,
    query: &WindowQuery,
    previous: Option<&Watermark>,
    out: &mut impl RowSink,
) -> Result<WindowOutcome, SourceError> {
    if query.wire_types.len() > MAX_COLUMNS {
        return Err(SourceError::MalformedCopy(format!(
            "{} columns asked of {}, at most {MAX_COLUMNS} are supported",
            query.wire_types.len(),
            query.table
        )));
    }
    let previous = previous
        .map(|watermark| {
            Snapshot::parse(&watermark.snapshot)
                .map(|snapshot| (snapshot, watermark.source.as_ref()))
        })
        .transpose()?;
    let table = query.table.as_str();
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
            "{SNAPSHOT_AND_SOURCE}; {}",
            query.session_settings
        ))
        .await
        .map_err(SourceError::query("cannot take the export snapshot"))?;
    let (current, in_recovery, control_readable, mut source) = messages
        .iter()
        .find_map(|message| match message {
            SimpleQueryMessage::Row(row) => Some(snapshot_and_source(row)),
            _ => None,
        })
        .ok_or_else(|| {
            SourceError::MalformedCopy("pg_current_snapshot() returned no row".into())
        })??;
    if control_readable {
        let messages = transaction
            .simple_query("SELECT system_identifier::text FROM pg_control_system()")
            .await
            .map_err(SourceError::query(
                "cannot read the cluster's system identifier",
            ))?;
        source.system_identifier = messages.iter().find_map(|message| match message {
            SimpleQueryMessage::Row(row) => row.get(0).and_then(|text| text.parse().ok()),
            _ => None,
        });
    }

    let plan = plan_window(
        previous
            .as_ref()
            .map(|(snapshot, stored)| (snapshot, *stored)),
        &current,
        &source,
        in_recovery,
    );
    let settings = window_planner_settings(plan.after.as_ref());
    if !settings.is_empty() {
        transaction
            .batch_execute(settings)
            .await
            .map_err(SourceError::query("cannot set up the export query"))?;
    }
    let sql = window_sql(query, plan.after.as_ref(), plan.finished_below);
    let copy = format!("COPY ({sql}) TO STDOUT (FORMAT binary)");
    let classify = |err| classify_query_error(err, table, in_recovery);
    let stream = transaction
        .copy_out(copy.as_str())
        .await
        .map_err(classify)?;
    futures::pin_mut!(stream);

    let mut rows = 0;
    let mut decoder = BinaryCopyDecoder::new(query.wire_types.clone());
    loop {
        // Rows usually wait in the connection's queue already: take one without arming the stall
        // timer (a timer and a clock read per row are a noticeable share of a fast export).
        let next = match stream.next().now_or_never() {
            Some(ready) => Ok(ready),
            None => tokio::time::timeout(query.stall_timeout, stream.next()).await,
        };
        let chunk = match next {
            Err(_) => {
                return Err(SourceError::Stalled {
                    table: table.to_string(),
                    after: query.stall_timeout,
                });
            }
            Ok(None) => break,
            Ok(Some(chunk)) => chunk.map_err(classify)?,
        };
        decoder.feed(&chunk, |cells| {
            rows += 1;
            out.write_row(cells)
        })?;
        out.after_message().await?;
    }
    decoder.finish()?;
    // Read-only: ending it either way releases the snapshot; commit reports any late error.
    transaction.commit().await.map_err(classify)?;
    Ok(WindowOutcome {
        rows,
        after: plan.after.as_ref().map(Snapshot::to_string),
        watermark: plan.watermark.to_string(),
        source,
        full_export: plan.full_export,
    })
}

/// The first statement's row: the snapshot, whether the server is a standby, whether the role may
/// call `pg_control_system()`, and the database (its system identifier still unknown).
fn snapshot_and_source(
    row: &tokio_postgres::SimpleQueryRow,
) -> Result<(Snapshot, bool, bool, SourceIdentity), SourceError> {
    let column = |index: usize, what: &str| {
        row.get(index)
            .ok_or_else(|| SourceError::MalformedCopy(format!("the server returned no {what}")))
    };
    let snapshot = Snapshot::parse(column(0, "snapshot")?)?;
    let in_recovery = column(1, "recovery state")? == "true";
    let control_readable = column(2, "privilege")? == "true";
    let source = SourceIdentity {
        system_identifier: None,
        database: column(3, "database name")?.to_string(),
        database_oid: column(4, "database oid")?.parse().map_err(|_| {
            SourceError::MalformedCopy("the server returned a malformed database oid".into())
        })?,
    };
    Ok((snapshot, in_recovery, control_readable, source))
}

pub(super) fn classify_query_error(
    err: tokio_postgres::Error,
    table: &str,
    in_recovery: bool,
) -> SourceError {
    if let Some(db) = err.as_db_error() {
        if *db.code() == SqlState::UNDEFINED_TABLE {
            return SourceError::TableMissing {
                table: table.to_string(),
            };
        }
        if *db.code() == SqlState::UNDEFINED_COLUMN || *db.code() == SqlState::UNDEFINED_FUNCTION {
            return SourceError::ColumnMissing {
                table: table.to_string(),
                cause: db.message().to_string(),
            };
        }
        // A standby cancels a query whose snapshot or locks stand in the way of replay with these
        // codes ("canceling statement due to conflict with recovery"); a read-only transaction on a
        // primary never gets them.
        if in_recovery
            && (*db.code() == SqlState::T_R_SERIALIZATION_FAILURE
                || *db.code() == SqlState::DATABASE_DROPPED)
        {
            return SourceError::RecoveryConflict {
                table: table.to_string(),
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

    fn query_of(table: &str, key: &str) -> WindowQuery {
        WindowQuery {
            table: table.to_string(),
            key: key.to_string(),
            select_list: format!("{key}::text AS {key}, title"),
            wire_types: vec![WireType::Text; 2],
            session_settings: "",
            stall_timeout: Duration::from_secs(60),
        }
    }

    #[test]
    fn window_query_filters_on_the_previous_snapshot() {
        let snapshot = Snapshot::parse("10:20:12,15").expect("valid");
        let query = window_sql(&query_of("proposals", "proposal_id"), Some(&snapshot), None);
        assert!(query.starts_with("SELECT proposal_id::text AS proposal_id, "));
        assert!(query.ends_with(
            " FROM proposals WHERE txid >= '10'::xid8 AND NOT pg_visible_in_snapshot(txid, \
             '10:20:12,15'::pg_snapshot) ORDER BY proposals.proposal_id"
        ));
        let all = window_sql(&query_of("interactions", "interaction_id"), None, None);
        assert!(all.ends_with(" FROM interactions ORDER BY interactions.interaction_id"));
        let standby = window_sql(
            &query_of("proposals", "proposal_id"),
            Some(&snapshot),
            Some(30),
        );
        assert!(standby.ends_with(
            " FROM proposals WHERE txid >= '10'::xid8 AND NOT pg_visible_in_snapshot(txid, \
             '10:20:12,15'::pg_snapshot) AND txid < '30'::xid8 ORDER BY proposals.proposal_id"
        ));
        let first_on_standby = window_sql(&query_of("proposals", "proposal_id"), None, Some(30));
        assert!(
            first_on_standby.ends_with(
                " FROM proposals WHERE txid < '30'::xid8 ORDER BY proposals.proposal_id"
            )
        );
    }

    fn source(system_identifier: u64, database: &str, database_oid: u32) -> SourceIdentity {
        SourceIdentity {
            system_identifier: Some(system_identifier),
            database: database.into(),
            database_oid,
        }
    }

    fn snapshot(text: &str) -> Snapshot {
        Snapshot::parse(text).expect("valid")
    }

    #[test]
    fn a_primary_window_ends_at_its_snapshot_and_adopts_an_unnamed_watermark() {
        let crm = source(7, "crm", 16384);
        let previous = snapshot("10:20:12");
        let current = snapshot("25:30:26");
        for stored in [Some(&crm), None] {
            let plan = plan_window(Some((&previous, stored)), &current, &crm, false);
            assert_eq!(plan.after, Some(previous.clone()));
            assert_eq!(plan.finished_below, None);
            assert_eq!(plan.watermark, current);
            assert_eq!(plan.full_export, None);
        }
        let first = plan_window(None, &current, &crm, false);
        assert_eq!((first.after, first.full_export), (None, None));
    }

    #[test]
    fn a_standby_window_ends_below_its_xmin() {
        let crm = source(7, "crm", 16384);
        // The standby's snapshot shows no in-progress ids, though 26 may still be open.
        let current = snapshot("26:30:");
        let plan = plan_window(
            Some((&snapshot("10:20:12"), Some(&crm))),
            &current,
            &crm,
            true,
        );
        assert_eq!(plan.finished_below, Some(26));
        assert_eq!(plan.watermark.to_string(), "26:26:");
        let first = plan_window(None, &current, &crm, true);
        assert_eq!(
            (first.finished_below, first.watermark.to_string()),
            (Some(26), "26:26:".into())
        );
        // A watermark the primary wrote ahead of what the standby replayed is lag, not a restore.
        let ahead = snapshot("40:50:45");
        let lagging = plan_window(Some((&ahead, Some(&crm))), &current, &crm, true);
        assert_eq!(lagging.full_export, None);
        assert_eq!(lagging.watermark, ahead);
    }

    #[test]
    fn another_database_or_ids_behind_the_watermark_read_every_row() {
        let crm = source(7, "crm", 16384);
        let previous = snapshot("100:120:");
        let current = snapshot("125:130:");
        let cases = [
            (source(8, "crm", 16384), "of cluster 8"),
            (
                source(7, "crm", 16999),
                "dropped and created again (oid 16384, now 16999)",
            ),
            (
                source(7, "other", 16999),
                "the source is now database \"other\"",
            ),
        ];
        for (now, says) in cases {
            for in_recovery in [false, true] {
                let plan = plan_window(Some((&previous, Some(&crm))), &current, &now, in_recovery);
                assert_eq!(plan.after, None, "{now:?}");
                let cause = plan.full_export.expect("a full export").to_string();
                assert!(cause.contains(says), "{cause}");
            }
        }
        // A role that may not read the control data names no cluster: the oid still decides.
        let unnamed_cluster = SourceIdentity {
            system_identifier: None,
            ..crm.clone()
        };
        for (stored, now) in [(&crm, &unnamed_cluster), (&unnamed_cluster, &crm)] {
            let plan = plan_window(Some((&previous, Some(stored))), &current, now, false);
            assert_eq!(plan.full_export, None);
            let other = SourceIdentity {
                database_oid: 16999,
                ..now.clone()
            };
            let plan = plan_window(Some((&previous, Some(stored))), &current, &other, false);
            assert!(matches!(
                plan.full_export,
                Some(FullExport::OtherDatabase { .. })
            ));
        }
        // Ids behind the watermark: a restore on a primary; with no database named, on a standby too.
        let behind = snapshot("50:60:");
        for (stored, in_recovery) in [(Some(&crm), false), (None, false), (None, true)] {
            let plan = plan_window(Some((&previous, stored)), &behind, &crm, in_recovery);
            assert!(
                matches!(
                    plan.full_export,
                    Some(FullExport::TransactionIdsBehind { .. })
                ),
                "{stored:?} {in_recovery}"
            );
            assert_eq!(plan.after, None);
        }
    }
}
