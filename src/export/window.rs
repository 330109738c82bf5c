//! A file type's window, read from the source: the columns of [`columns`] turned into the
//! adapter's query, and rows streamed straight into the CSV writer.

use std::io::Write;
use std::time::Duration;

use tokio_postgres::Client;

use crate::adapters::postgres::{
    FullExport, RowSink, Snapshot, SourceError, SourceIdentity, Watermark, WindowOutcome,
    WindowQuery, copy_window, window_sql,
};
use crate::export::columns;
use crate::export::csv::CsvFileWriter;
use crate::export::view::{ViewShape, quote_identifier};
use crate::resource::{ConditionReason, FileType, ScheduledExportStatus, WatermarkSource};

/// How long a run waits for the next piece of COPY data, by default (twenty of the default
/// 30 s network steps). Generous: the first rows of a large window come only after the server has
/// found (and sorted) them.
pub const COPY_STALL_TIMEOUT: Duration = Duration::from_secs(600);

/// The COPY stall bound for a run whose network steps are bounded by `step` (`--timeout`).
pub fn copy_stall_timeout(step: Duration) -> Duration {
    step.saturating_mul(20)
}

/// The query of `file_type`'s rows.
pub fn query_of(file_type: FileType) -> WindowQuery {
    WindowQuery {
        table: columns::table(file_type).to_string(),
        key: columns::key_column(file_type).to_string(),
        select_list: columns::select_list(file_type),
        wire_types: columns::wire_types(file_type),
        session_settings: columns::SESSION_SETTINGS,
        stall_timeout: COPY_STALL_TIMEOUT,
    }
}

/// The SQL of one window of `file_type` on a primary. Public so tests can check its plan.
pub fn window_query(file_type: FileType, previous: Option<&Snapshot>) -> String {
    window_sql(&query_of(file_type), previous, None)
}

/// [`window_query`] with every cell rendered as text by the server: the same file's cells, the
/// way a script would `COPY` them. Benchmarks run it through `psql`; tests compare with it.
pub fn text_window_query(file_type: FileType, previous: Option<&Snapshot>) -> String {
    let query = WindowQuery {
        select_list: columns::text_select_list(file_type),
        ..query_of(file_type)
    };
    window_sql(&query, previous, None)
}

/// Exports the rows of `file_type` written since `previous` (all rows when `None`) into `out`,
/// and returns the row count and the new watermark. The caller calls `finish` on `out`.
pub async fn export_window<W: Write>(
    client: &mut Client,
    file_type: FileType,
    previous: Option<&Watermark>,
    out: &mut CsvFileWriter<W>,
) -> Result<WindowOutcome, SourceError> {
    export_window_within(
        client,
        query_of(file_type),
        previous,
        out,
        COPY_STALL_TIMEOUT,
    )
    .await
}

/// The query of a view's rows (`spec.source.view`): its columns as [`shape`] rendered them,
/// ordered by its first column.
///
/// [`shape`]: crate::export::view::shape
pub fn view_query(shape: &ViewShape) -> WindowQuery {
    WindowQuery {
        table: shape.relation.clone(),
        key: shape.key.clone(),
        select_list: shape
            .columns
            .iter()
            .map(|column| format!("{} AS {}", column.sql, quote_identifier(&column.name)))
            .collect::<Vec<_>>()
            .join(", "),
        wire_types: shape.columns.iter().map(|column| column.wire).collect(),
        session_settings: columns::SESSION_SETTINGS,
        stall_timeout: COPY_STALL_TIMEOUT,
    }
}

/// [`export_window`], ending the run when no COPY data arrives for `stall_timeout`.
pub async fn export_window_within(
    client: &mut Client,
    query: WindowQuery,
    previous: Option<&Watermark>,
    out: &mut impl RowSink,
    stall_timeout: Duration,
) -> Result<WindowOutcome, SourceError> {
    let query = WindowQuery {
        stall_timeout,
        ..query
    };
    copy_window(client, &query, previous, out).await
}

/// The watermark stored in `status`, with the database it names. A source without a database
/// name and oid (a status of an earlier version, or edited by hand) names none, and the next run
/// adopts the database it reads; one without a system identifier names its database but not its
/// cluster.
pub fn stored_watermark(status: Option<&ScheduledExportStatus>) -> Option<Watermark> {
    let status = status?;
    let snapshot = status.watermark.clone()?;
    let source = status.watermark_source.as_ref().and_then(|source| {
        Some(SourceIdentity {
            system_identifier: source
                .system_identifier
                .as_deref()
                .and_then(|text| text.parse().ok()),
            database: source.database.clone()?,
            database_oid: source.database_oid?,
        })
    });
    Some(Watermark { snapshot, source })
}

/// `source` as `status.watermarkSource` records it.
pub fn watermark_source(source: &SourceIdentity) -> WatermarkSource {
    WatermarkSource {
        system_identifier: source.system_identifier.map(|id| id.to_string()),
        database: Some(source.database.clone()),
        database_oid: Some(source.database_oid),
    }
}

/// The Exported condition's reason for a window that held every row, and why.
pub fn full_export_note(full_export: &FullExport) -> (ConditionReason, String) {
    let reason = match full_export {
        FullExport::OtherCluster { .. } | FullExport::OtherDatabase { .. } => {
            ConditionReason::SourceChanged
        }
        FullExport::TransactionIdsBehind { .. } => ConditionReason::SourceRewound,
    };
    (reason, full_export.to_string())
}

/// The Exported condition's reason for a run that was asked to hold every row, and why.
pub fn requested_full_export_note() -> (ConditionReason, String) {
    (
        ConditionReason::FullExportRequested,
        "the exports.crm.dev/full-export annotation asked for it".to_string(),
    )
}

impl<W: Write> RowSink for CsvFileWriter<W> {
    fn write_row(&mut self, cells: &[Option<&[u8]>]) -> std::io::Result<()> {
        CsvFileWriter::write_row(self, cells)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::adapters::postgres::MAX_COLUMNS;

    #[test]
    fn a_stored_source_round_trips_and_an_incomplete_one_names_no_database() {
        let source = SourceIdentity {
            system_identifier: Some(u64::MAX),
            database: "crm".into(),
            database_oid: 16384,
        };
        let mut status = ScheduledExportStatus {
            watermark: Some("1:2:".into()),
            watermark_source: Some(watermark_source(&source)),
            ..Default::default()
        };
        let stored = stored_watermark(Some(&status)).expect("a watermark");
        assert_eq!(stored.snapshot, "1:2:");
        assert_eq!(stored.source, Some(source));
        status
            .watermark_source
            .as_mut()
            .expect("source")
            .database_oid = None;
        assert_eq!(
            stored_watermark(Some(&status)).expect("a watermark").source,
            None
        );
        status.watermark_source = None;
        assert_eq!(
            stored_watermark(Some(&status)).expect("a watermark").source,
            None
        );
        status.watermark = None;
        assert_eq!(stored_watermark(Some(&status)), None);
    }

    #[test]
    fn every_file_type_fits_the_decoder() {
        for file_type in FileType::ALL {
            let query = query_of(file_type);
            assert!(query.wire_types.len() <= MAX_COLUMNS, "{file_type}");
            assert_eq!(
                query.wire_types.len(),
                query.select_list.matches(" AS ").count()
            );
            assert!(
                query
                    .select_list
                    .starts_with(&format!("{}::int8 AS ", query.key))
            );
        }
    }
}
