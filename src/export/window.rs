//! A file type's window, read from the source: the columns of [`columns`] turned into the
//! adapter's query, and rows streamed straight into the CSV writer.

use std::io::Write;

use tokio_postgres::Client;

use crate::adapters::postgres::{
    RowSink, Snapshot, SourceError, WindowOutcome, WindowQuery, copy_window, window_sql,
};
use crate::export::columns;
use crate::export::csv::CsvFileWriter;
use crate::resource::FileType;

/// The query of `file_type`'s rows.
pub fn query_of(file_type: FileType) -> WindowQuery {
    WindowQuery {
        table: columns::table(file_type),
        key: columns::key_column(file_type),
        select_list: columns::select_list(file_type),
        columns: columns::columns(file_type).len(),
        session_settings: columns::SESSION_SETTINGS,
    }
}

/// The SQL of one window of `file_type`. Public so benchmarks can run the same query through
/// `psql`.
pub fn window_query(file_type: FileType, previous: Option<&Snapshot>) -> String {
    window_sql(&query_of(file_type), previous)
}

/// Exports the rows of `file_type` written since `previous` (all rows when `None`) into `out`,
/// and returns the row count and the new watermark. The caller calls `finish` on `out`.
pub async fn export_window<W: Write>(
    client: &mut Client,
    file_type: FileType,
    previous: Option<&str>,
    out: &mut CsvFileWriter<W>,
) -> Result<WindowOutcome, SourceError> {
    copy_window(client, &query_of(file_type), previous, out).await
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
    fn every_file_type_fits_the_decoder() {
        for file_type in [FileType::Interactions, FileType::Proposals] {
            let query = query_of(file_type);
            assert!(query.columns <= MAX_COLUMNS, "{file_type}");
            assert!(
                query
                    .select_list
                    .starts_with(&format!("{}::text AS ", query.key))
            );
        }
    }
}
