//! Streaming CSV writer for export files.
//!
//! RFC 4180: a cell is quoted only when it contains `,`, `"`, CR or LF, and quotes inside it are
//! doubled. The line terminator option changes only the record terminators, never line breaks
//! inside quoted cells, because those are data. Memory is constant: each row goes straight into a
//! fixed-size buffer in front of the output.
//!
//! Hand-written rather than the `csv` crate's `Writer` so the rules above are visible in one place
//! and the hot loop (a million rows per export) does a single scan per cell.
//!
//! NULL and the empty string both become an empty cell: RFC 4180 has no way to tell them apart and
//! spreadsheet programs would not show a difference.

use std::io::{self, BufWriter, Write};

use crate::export::columns::{self, ColumnKind};
use crate::progress::Progress;
use crate::resource::{CsvOptions, FileType, LineTerminator};

/// The UTF-8 byte order mark some spreadsheet programs need to read UTF-8.
pub const BYTE_ORDER_MARK: &[u8] = b"\xEF\xBB\xBF";

const BUFFER_CAPACITY: usize = 256 * 1024;

/// Rows between two looks at the progress clock: cheap next to writing the rows themselves.
const ROWS_PER_PROGRESS_UPDATE: u64 = 1024;

/// Writes one export file: optional byte order mark, the header row, then data rows.
pub struct CsvFileWriter<W: Write> {
    out: BufWriter<W>,
    /// Per column, whether `escapeFormulas` may alter its cells.
    escapes: Vec<bool>,
    terminator: &'static [u8],
    escape_formulas: bool,
    rows: u64,
    bytes: u64,
    progress: Progress,
}

impl<W: Write> CsvFileWriter<W> {
    /// Starts a file of `file_type`, writing the byte order mark (if asked for) and the header at
    /// once, so that even a window without rows yields a complete file.
    pub fn new(out: W, file_type: FileType, options: &CsvOptions) -> Result<Self, io::Error> {
        let header = columns::columns(file_type)
            .iter()
            .map(|column| (column.name, column.kind));
        Self::with_header(out, header, options)
    }

    /// Starts a file whose columns are `header` (name and kind, in order): a view's.
    pub fn with_header<'a>(
        out: W,
        header: impl IntoIterator<Item = (&'a str, ColumnKind)>,
        options: &CsvOptions,
    ) -> Result<Self, io::Error> {
        let header: Vec<(&str, ColumnKind)> = header.into_iter().collect();
        let mut writer = Self {
            out: BufWriter::with_capacity(BUFFER_CAPACITY, out),
            escapes: header
                .iter()
                .map(|(_, kind)| kind.escapes_formulas())
                .collect(),
            terminator: match options.line_terminator {
                LineTerminator::Crlf => b"\r\n",
                LineTerminator::Lf => b"\n",
            },
            escape_formulas: options.escape_formulas,
            rows: 0,
            bytes: 0,
            progress: Progress::hidden(),
        };
        if options.byte_order_mark {
            writer.put(BYTE_ORDER_MARK)?;
        }
        for (index, (name, _)) in header.iter().enumerate() {
            if index > 0 {
                writer.put(b",")?;
            }
            // Never formula-escaped. The file types' names are plain identifiers and so never
            // quoted; a view's column may be any quoted identifier and is quoted as data is.
            writer.write_cell(name.as_bytes(), false)?;
        }
        writer.put(writer.terminator)?;
        Ok(writer)
    }

    /// Shows rows and bytes written on `progress` (a terminal's), ended by `finish`.
    pub fn with_progress(mut self, progress: Progress) -> Self {
        self.progress = progress;
        self
    }

    /// How many columns the file has; `write_row` expects one cell per column.
    pub fn column_count(&self) -> usize {
        self.escapes.len()
    }

    /// Appends one data row. `cells` must hold one entry per column; `None` (SQL NULL) becomes an
    /// empty cell.
    pub fn write_row(&mut self, cells: &[Option<&[u8]>]) -> Result<(), io::Error> {
        if cells.len() != self.escapes.len() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "row has {} cells but the file has {} columns",
                    cells.len(),
                    self.escapes.len()
                ),
            ));
        }
        for (index, cell) in cells.iter().enumerate() {
            // Checked above: one flag per cell.
            let escapes = self.escapes[index];
            if index > 0 {
                self.put(b",")?;
            }
            if let Some(value) = cell {
                let prefix = self.escape_formulas && escapes && starts_like_formula(value);
                self.write_cell(value, prefix)?;
            }
        }
        self.put(self.terminator)?;
        self.rows += 1;
        if self.rows.is_multiple_of(ROWS_PER_PROGRESS_UPDATE) {
            self.progress.update(Some(self.rows), self.bytes);
        }
        Ok(())
    }

    /// Data rows written so far (the header not counted).
    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// Bytes of the file so far, byte order mark and header included.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Flushes everything and returns the output, so the caller can sync or upload it.
    pub fn finish(mut self) -> Result<W, io::Error> {
        self.progress.finish(Some(self.rows), self.bytes);
        self.out.into_inner().map_err(|err| err.into_error())
    }

    fn write_cell(&mut self, value: &[u8], formula_prefix: bool) -> Result<(), io::Error> {
        let needs_quotes = value
            .iter()
            .any(|&b| matches!(b, b',' | b'"' | b'\r' | b'\n'));
        if !needs_quotes {
            if formula_prefix {
                self.put(b"'")?;
            }
            return self.put(value);
        }
        self.put(b"\"")?;
        if formula_prefix {
            self.put(b"'")?;
        }
        let mut rest = value;
        while let Some(at) = rest.iter().position(|&b| b == b'"') {
            // Write up to and including the quote, then the quote again.
            self.put(&rest[..=at])?;
            self.put(b"\"")?;
            rest = &rest[at + 1..];
        }
        self.put(rest)?;
        self.put(b"\"")
    }

    fn put(&mut self, bytes: &[u8]) -> Result<(), io::Error> {
        self.bytes += bytes.len() as u64;
        self.out.write_all(bytes)
    }
}

/// OWASP CSV injection: cells a spreadsheet would evaluate start with one of these.
fn starts_like_formula(value: &[u8]) -> bool {
    matches!(
        value.first(),
        Some(b'=' | b'+' | b'-' | b'@' | b'\t' | b'\r')
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const INTERACTIONS_HEADER: &str = "interaction_id,interaction_import_id,constituent_id,constituent_import_id,category,interaction_type,occurred_on,summary,description,solicitors,creator_user_id,proposal_id,proposal_import_id,created_at,updated_at,deleted";
    const PROPOSALS_HEADER: &str = "proposal_id,proposal_import_id,constituent_id,constituent_import_id,title,status,stage,ask_amount,expected_amount,funded_amount,ask_date,expected_date,funded_date,solicitors,created_at,updated_at,deleted";

    fn options(terminator: LineTerminator, bom: bool, escape: bool) -> CsvOptions {
        CsvOptions {
            line_terminator: terminator,
            byte_order_mark: bom,
            escape_formulas: escape,
        }
    }

    /// An interactions row whose summary (free text), constituent_import_id (id) and
    /// description are given; every other cell is fixed.
    fn interaction<'a>(
        summary: Option<&'a str>,
        description: Option<&'a str>,
    ) -> Vec<Option<&'a [u8]>> {
        let mut cells: Vec<Option<&[u8]>> = vec![
            Some(b"1"),
            Some(b"INT-1"),
            Some(b"42"),
            Some(b"C-42"),
            Some(b"Cultivation"),
            Some(b"Meeting"),
            Some(b"2024-03-05"),
            None,
            None,
            Some(b"Ann Lee;Bo Chen"),
            Some(b"jdoe"),
            None,
            None,
            Some(b"2024-03-05T14:07:09.123456Z"),
            Some(b"2024-03-05T14:07:09.123456Z"),
            Some(b"false"),
        ];
        cells[7] = summary.map(str::as_bytes);
        cells[8] = description.map(str::as_bytes);
        cells
    }

    fn render(options: &CsvOptions, rows: &[Vec<Option<&[u8]>>]) -> String {
        let mut writer =
            CsvFileWriter::new(Vec::new(), FileType::Interactions, options).expect("writer");
        for row in rows {
            writer.write_row(row).expect("row");
        }
        assert_eq!(writer.rows(), rows.len() as u64);
        let bytes_counted = writer.bytes();
        let out = writer.finish().expect("finish");
        assert_eq!(bytes_counted, out.len() as u64);
        String::from_utf8(out).expect("utf-8")
    }

    /// The summary cell (8th) of the only data row.
    fn summary_cell(options: &CsvOptions, summary: &str) -> String {
        let text = render(options, &[interaction(Some(summary), None)]);
        let body = text
            .split_once("\r\n")
            .map(|(_, body)| body)
            .expect("header");
        let prefix = "1,INT-1,42,C-42,Cultivation,Meeting,2024-03-05,";
        let suffix = ",,Ann Lee;Bo Chen,jdoe,,,2024-03-05T14:07:09.123456Z,2024-03-05T14:07:09.123456Z,false\r\n";
        body.strip_prefix(prefix)
            .and_then(|rest| rest.strip_suffix(suffix))
            .expect("row shape")
            .to_string()
    }

    #[test]
    fn header_is_exact_for_interactions() {
        let text = render(&CsvOptions::default(), &[]);
        assert_eq!(text, format!("{INTERACTIONS_HEADER}\r\n"));
    }

    #[test]
    fn a_views_header_is_quoted_like_data_and_only_its_text_is_escaped() {
        let header = [
            ("id", ColumnKind::Id),
            ("Name, full", ColumnKind::FreeText),
            ("total", ColumnKind::Number),
        ];
        let mut writer = CsvFileWriter::with_header(
            Vec::new(),
            header,
            &options(LineTerminator::Lf, false, true),
        )
        .expect("writer");
        assert_eq!(writer.column_count(), 3);
        writer
            .write_row(&[Some(b"-1"), Some(b"=cmd"), Some(b"-5.00")])
            .expect("row");
        let text = String::from_utf8(writer.finish().expect("finish")).expect("utf-8");
        assert_eq!(text, "id,\"Name, full\",total\n-1,'=cmd,-5.00\n");
    }

    #[test]
    fn header_is_exact_for_proposals() {
        let writer = CsvFileWriter::new(Vec::new(), FileType::Proposals, &CsvOptions::default())
            .expect("writer");
        assert_eq!(writer.rows(), 0);
        let out = writer.finish().expect("finish");
        assert_eq!(out, format!("{PROPOSALS_HEADER}\r\n").into_bytes());
    }

    #[test]
    fn empty_window_is_header_only_with_lf() {
        let text = render(&options(LineTerminator::Lf, false, false), &[]);
        assert_eq!(text, format!("{INTERACTIONS_HEADER}\n"));
    }

    #[test]
    fn byte_order_mark_comes_before_the_header() {
        let writer = CsvFileWriter::new(
            Vec::new(),
            FileType::Proposals,
            &options(LineTerminator::Crlf, true, false),
        )
        .expect("writer");
        let _ = writer.column_count();
        let out = writer.finish().expect("finish");
        assert_eq!(&out[..3], BYTE_ORDER_MARK);
        assert_eq!(&out[3..], format!("{PROPOSALS_HEADER}\r\n").as_bytes());
        // Without the option there is no BOM.
        let plain = render(&CsvOptions::default(), &[]);
        assert!(plain.starts_with("interaction_id,"));
    }

    #[test]
    fn plain_cells_are_not_quoted() {
        assert_eq!(
            summary_cell(&CsvOptions::default(), "Lunch with the dean"),
            "Lunch with the dean"
        );
        assert_eq!(summary_cell(&CsvOptions::default(), ""), "");
        assert_eq!(summary_cell(&CsvOptions::default(), " padded "), " padded ");
    }

    #[test]
    fn quoting_cases() {
        let default = CsvOptions::default();
        assert_eq!(summary_cell(&default, "a,b"), "\"a,b\"");
        assert_eq!(summary_cell(&default, "say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(summary_cell(&default, "\""), "\"\"\"\"");
        assert_eq!(summary_cell(&default, "line1\nline2"), "\"line1\nline2\"");
        assert_eq!(summary_cell(&default, "cr\ronly"), "\"cr\ronly\"");
        assert_eq!(summary_cell(&default, "tab\there"), "tab\there");
        assert_eq!(summary_cell(&default, "semi;colon"), "semi;colon");
    }

    #[test]
    fn embedded_crlf_is_kept_inside_quotes_with_either_terminator() {
        let row = interaction(Some("first\r\nsecond"), Some("x\ny"));
        let crlf = render(&CsvOptions::default(), std::slice::from_ref(&row));
        assert!(crlf.contains(",\"first\r\nsecond\",\"x\ny\","));
        assert!(crlf.ends_with(",false\r\n"));
        let lf = render(&options(LineTerminator::Lf, false, false), &[row]);
        // The cell keeps its CRLF; only the record terminator changes.
        assert!(lf.contains(",\"first\r\nsecond\",\"x\ny\","));
        assert!(lf.ends_with(",false\n"));
        assert!(lf.starts_with(&format!("{INTERACTIONS_HEADER}\n")));
    }

    #[test]
    fn crlf_and_lf_terminate_every_record() {
        let rows = [interaction(Some("a"), None), interaction(Some("b"), None)];
        let crlf = render(&CsvOptions::default(), &rows);
        assert_eq!(crlf.matches("\r\n").count(), 3);
        assert!(!crlf.replace("\r\n", "").contains('\n'));
        let lf = render(&options(LineTerminator::Lf, false, false), &rows);
        assert_eq!(lf.matches('\n').count(), 3);
        assert!(!lf.contains('\r'));
    }

    #[test]
    fn each_formula_prefix_is_escaped_in_free_text() {
        let escape = options(LineTerminator::Crlf, false, true);
        assert_eq!(summary_cell(&escape, "=SUM(A1)"), "'=SUM(A1)");
        assert_eq!(summary_cell(&escape, "+1"), "'+1");
        assert_eq!(summary_cell(&escape, "-x"), "'-x");
        assert_eq!(summary_cell(&escape, "@cmd"), "'@cmd");
        assert_eq!(summary_cell(&escape, "\tindent"), "'\tindent");
        // The prefixed cell is then quoted as usual.
        assert_eq!(summary_cell(&escape, "\rcarriage"), "\"'\rcarriage\"");
        assert_eq!(
            summary_cell(&escape, "=HYPERLINK(\"x\",\"y\")"),
            "\"'=HYPERLINK(\"\"x\"\",\"\"y\"\")\""
        );
        // Not at the start: untouched.
        assert_eq!(summary_cell(&escape, "a=b"), "a=b");
        assert_eq!(summary_cell(&escape, ""), "");
    }

    #[test]
    fn formulas_are_left_alone_without_the_option() {
        let default = CsvOptions::default();
        assert_eq!(summary_cell(&default, "=SUM(A1)"), "=SUM(A1)");
        assert_eq!(summary_cell(&default, "-x"), "-x");
    }

    #[test]
    fn numeric_and_id_columns_starting_with_minus_are_not_altered() {
        let escape = options(LineTerminator::Lf, false, true);
        let mut writer =
            CsvFileWriter::new(Vec::new(), FileType::Proposals, &escape).expect("writer");
        let row: [Option<&[u8]>; 17] = [
            Some(b"7"),
            Some(b"-P7"),
            Some(b"42"),
            Some(b"=C42"),
            Some(b"-Refund"),
            Some(b"@Active"),
            Some(b"+Stage"),
            Some(b"-100.50"),
            Some(b"-0.01"),
            Some(b"-5"),
            Some(b"2024-01-01"),
            None,
            None,
            Some(b"-Ann;Bo"),
            Some(b"2024-01-01T00:00:00.000000Z"),
            Some(b"2024-01-01T00:00:00.000000Z"),
            Some(b"true"),
        ];
        writer.write_row(&row).expect("row");
        let out = String::from_utf8(writer.finish().expect("finish")).expect("utf-8");
        let data = out.lines().nth(1).expect("data row");
        assert_eq!(
            data,
            "7,-P7,42,=C42,'-Refund,'@Active,'+Stage,-100.50,-0.01,-5,2024-01-01,,,'-Ann;Bo,\
             2024-01-01T00:00:00.000000Z,2024-01-01T00:00:00.000000Z,true"
        );
    }

    #[test]
    fn non_ascii_round_trips_through_a_csv_reader() {
        let texts = [
            "Café, crème brûlée",
            "王小明 said \"你好\"",
            "🎉 gift 💰\r\nnext line",
            "Ødegaard\nZoë",
        ];
        let rows: Vec<_> = texts
            .iter()
            .map(|t| interaction(Some(t), Some(t)))
            .collect();
        let text = render(&CsvOptions::default(), &rows);
        let mut reader = csv::ReaderBuilder::new()
            .has_headers(true)
            .from_reader(text.as_bytes());
        let headers = reader.headers().expect("headers").clone();
        assert_eq!(
            headers.iter().collect::<Vec<_>>().join(","),
            INTERACTIONS_HEADER
        );
        let records: Vec<csv::StringRecord> =
            reader.records().collect::<Result<_, _>>().expect("records");
        assert_eq!(records.len(), texts.len());
        for (record, text) in records.iter().zip(texts) {
            assert_eq!(record.len(), 16);
            assert_eq!(&record[7], text);
            assert_eq!(&record[8], text);
            assert_eq!(&record[9], "Ann Lee;Bo Chen");
        }
    }

    #[test]
    fn null_becomes_an_empty_cell() {
        let text = render(&CsvOptions::default(), &[interaction(None, None)]);
        assert!(text.contains(",2024-03-05,,,Ann Lee;Bo Chen,"));
    }

    #[test]
    fn wrong_cell_count_is_refused() {
        let mut writer =
            CsvFileWriter::new(Vec::new(), FileType::Interactions, &CsvOptions::default())
                .expect("writer");
        let err = writer.write_row(&[Some(b"1")]).expect_err("too few cells");
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
        assert_eq!(writer.rows(), 0);
    }
}
