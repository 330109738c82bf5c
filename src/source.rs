//! The source database: connecting, and exporting one no-loss window (DESIGN section 6).
//!
//! A window is bounded by PostgreSQL snapshots, not timestamps. Every row carries `txid`, the id of
//! the transaction that last wrote it. An export runs in one `REPEATABLE READ READ ONLY`
//! transaction whose first statement takes `pg_current_snapshot()`: that snapshot is the
//! transaction's own, so it describes exactly what the export sees, and it becomes the new
//! watermark. The rows of the window are those not visible in the previous watermark. A row
//! written by a transaction that was still open during the previous export is invisible in that
//! snapshot, so it is picked up next time even though its txid is older than the snapshot's xmax;
//! a timestamp or "txid > last xmax" watermark would lose it. A row updated after an export gets a
//! new txid and comes out again, in its latest version.
//!
//! Rows stream through `COPY (SELECT ...) TO STDOUT (FORMAT binary)` with every column already
//! rendered as text by [`crate::columns`]: binary framing needs no unescaping, so the client only
//! copies bytes into the CSV writer, in constant memory.

pub mod sample_data;

use std::fmt;
use std::io::Write;
use std::time::Duration;

use bytes::{Buf, BytesMut};
use futures::StreamExt;
use tokio::task::JoinHandle;
use tokio_postgres::error::SqlState;
use tokio_postgres::{Client, Config, IsolationLevel, NoTls, SimpleQueryMessage};

use crate::columns::{self, MAX_COLUMNS};
use crate::csv_file::CsvFileWriter;
use crate::resource::FileType;

/// Why talking to the source database failed. Messages name the server as `host:port/db as user`
/// and never carry the password.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// The URL could not be parsed (the message names the offending option, not its value).
    #[error("invalid database URL: {reason}")]
    InvalidUrl { reason: String },
    /// Nothing answered at the address.
    #[error("cannot reach PostgreSQL at {target}: {cause}")]
    Unreachable { target: String, cause: String },
    /// The server did not complete the connection in time.
    #[error("timed out after {timeout:?} connecting to PostgreSQL at {target}")]
    ConnectTimeout { target: String, timeout: Duration },
    /// Wrong user or password, or `pg_hba.conf` refuses the client.
    #[error("authentication failed for user {user:?} at {target}: {cause}")]
    AuthenticationFailed {
        target: String,
        user: String,
        cause: String,
    },
    /// The database named in the URL does not exist.
    #[error("database {database:?} does not exist at {target}")]
    DatabaseMissing { target: String, database: String },
    /// Any other failure while connecting.
    #[error("cannot connect to PostgreSQL at {target}: {cause}")]
    Connect { target: String, cause: String },
    /// The file type's table or view is missing.
    #[error(
        "table {table} not found: apply the reference schema with `scheduled-exports sample-data \
         --database-url URL --interactions 0 --proposals 0` or create views named interactions and \
         proposals"
    )]
    TableMissing { table: &'static str },
    /// A column the file needs is missing from the table or view.
    #[error("{table} lacks a column the file needs: {cause}")]
    ColumnMissing { table: &'static str, cause: String },
    /// `status.watermark` is not a PostgreSQL snapshot.
    #[error(
        "status.watermark {watermark:?} is not a valid watermark ({reason}); remove it from the \
         status to export every row again"
    )]
    InvalidWatermark { watermark: String, reason: String },
    /// The database's transaction ids are behind the stored watermark (a restore, or another server).
    #[error(
        "status.watermark {watermark} is ahead of the database's current snapshot {current}: the database \
         was restored or replaced; check the source, then remove status.watermark to export every row again"
    )]
    WatermarkAhead { watermark: String, current: String },
    /// A statement failed.
    #[error("{context}: {source}")]
    Query {
        context: String,
        #[source]
        source: tokio_postgres::Error,
    },
    /// The `COPY` stream was not the binary format it should be.
    #[error("unexpected COPY data from the server: {0}")]
    MalformedCopy(String),
    /// Writing the file failed.
    #[error("cannot write the export file: {0}")]
    Write(#[from] std::io::Error),
}

impl SourceError {
    fn query(context: impl Into<String>) -> impl FnOnce(tokio_postgres::Error) -> SourceError {
        let context = context.into();
        move |source| SourceError::Query { context, source }
    }
}

/// The outcome of one exported window.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WindowOutcome {
    /// Data rows written to the file.
    pub rows: u64,
    /// The new watermark: the export's own snapshot, to store in `status.watermark` once the file is
    /// delivered.
    pub watermark: String,
}

/// A parsed `pg_snapshot` text `xmin:xmax:xip,...`; checked before it is sent to the server so a
/// corrupted status gives a clear error instead of a SQL one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Snapshot {
    /// Every transaction before this one had finished.
    pub xmin: u64,
    /// Every transaction from this one on had not yet started.
    pub xmax: u64,
    /// Transactions in between that were still running.
    pub in_progress: Vec<u64>,
}

impl Snapshot {
    /// Parses a watermark, naming `status.watermark` in the error.
    pub fn parse(watermark: &str) -> Result<Snapshot, SourceError> {
        let invalid = |reason: &str| SourceError::InvalidWatermark {
            watermark: watermark.chars().take(80).collect(),
            reason: reason.to_string(),
        };
        let mut parts = watermark.split(':');
        let (Some(xmin), Some(xmax), Some(xip), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(invalid("expected xmin:xmax:xip,..."));
        };
        let number = |text: &str| -> Result<u64, SourceError> {
            if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
                return Err(invalid("transaction ids must be decimal numbers"));
            }
            text.parse::<u64>()
                .map_err(|_| invalid("transaction id out of range"))
        };
        let xmin = number(xmin)?;
        let xmax = number(xmax)?;
        if xmin == 0 || xmin > xmax {
            return Err(invalid("xmin must be positive and at most xmax"));
        }
        let mut in_progress = Vec::new();
        if !xip.is_empty() {
            for text in xip.split(',') {
                let xid = number(text)?;
                if xid < xmin || xid >= xmax {
                    return Err(invalid("in-progress ids must lie in [xmin, xmax)"));
                }
                if in_progress.last().is_some_and(|&last| last >= xid) {
                    return Err(invalid("in-progress ids must be ascending"));
                }
                in_progress.push(xid);
            }
        }
        Ok(Snapshot {
            xmin,
            xmax,
            in_progress,
        })
    }
}

impl fmt::Display for Snapshot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:", self.xmin, self.xmax)?;
        for (index, xid) in self.in_progress.iter().enumerate() {
            if index > 0 {
                f.write_str(",")?;
            }
            write!(f, "{xid}")?;
        }
        Ok(())
    }
}

/// `host:port/db as user` for messages: everything useful to find the server, never the password.
pub fn describe_target(config: &Config) -> String {
    let hosts: Vec<String> = config
        .get_hosts()
        .iter()
        .enumerate()
        .map(|(index, host)| {
            let name = match host {
                tokio_postgres::config::Host::Tcp(name) => name.clone(),
                #[cfg(unix)]
                tokio_postgres::config::Host::Unix(path) => path.display().to_string(),
            };
            let port = config
                .get_ports()
                .get(index)
                .or_else(|| config.get_ports().first())
                .copied()
                .unwrap_or(5432);
            format!("{name}:{port}")
        })
        .collect();
    let hosts = if hosts.is_empty() {
        "localhost:5432".to_string()
    } else {
        hosts.join(",")
    };
    let user = config.get_user().unwrap_or("(default user)");
    let database = config.get_dbname().unwrap_or(user);
    format!("{hosts}/{database} as {user}")
}

/// Parses a `postgres://` URL (or key=value string) into a config, without echoing it.
pub fn parse_url(url: &str) -> Result<Config, SourceError> {
    url.parse::<Config>()
        .map_err(|err| SourceError::InvalidUrl {
            reason: err.to_string(),
        })
}

/// Connects with `timeout` covering TCP connect, TLS-less startup and authentication, and spawns
/// the connection task. Errors say what went wrong (unreachable, authentication, missing database)
/// without the password.
///
/// Only unencrypted connections are supported for now (`sslmode=disable` or `prefer` falling back);
/// `sslmode=require` fails with a clear message.
pub async fn connect(
    url: &str,
    timeout: Duration,
) -> Result<(Client, JoinHandle<()>), SourceError> {
    let mut config = parse_url(url)?;
    config.connect_timeout(timeout);
    // A connection that dies mid-COPY (a half-open TCP path) must fail the run, not hang it until
    // the Job's deadline and block the object's next runs: TCP keepalives and a bound on
    // unacknowledged data detect it.
    config
        .keepalives(true)
        .keepalives_idle(timeout)
        .tcp_user_timeout(timeout.max(Duration::from_secs(30)));
    if config.get_application_name().is_none() {
        config.application_name("scheduled-exports");
    }
    let target = describe_target(&config);
    let user = config.get_user().unwrap_or_default().to_string();
    let database = config.get_dbname().unwrap_or(&user).to_string();
    let connecting = config.connect(NoTls);
    let (client, connection) = match tokio::time::timeout(timeout, connecting).await {
        Err(_) => return Err(SourceError::ConnectTimeout { target, timeout }),
        Ok(Err(err)) => return Err(classify_connect_error(err, target, user, database)),
        Ok(Ok(pair)) => pair,
    };
    let handle = tokio::spawn(async move {
        if let Err(err) = connection.await {
            tracing::warn!(error = %err, "PostgreSQL connection closed with an error");
        }
    });
    Ok((client, handle))
}

fn classify_connect_error(
    err: tokio_postgres::Error,
    target: String,
    user: String,
    database: String,
) -> SourceError {
    if let Some(db) = err.as_db_error() {
        let cause = db.message().to_string();
        let code = db.code();
        if *code == SqlState::INVALID_PASSWORD
            || *code == SqlState::INVALID_AUTHORIZATION_SPECIFICATION
        {
            return SourceError::AuthenticationFailed {
                target,
                user,
                cause,
            };
        }
        if *code == SqlState::INVALID_CATALOG_NAME {
            return SourceError::DatabaseMissing { target, database };
        }
        return SourceError::Connect { target, cause };
    }
    let mut cause = err.to_string();
    let mut source = std::error::Error::source(&err);
    while let Some(inner) = source {
        if let Some(io) = inner.downcast_ref::<std::io::Error>() {
            use std::io::ErrorKind;
            let reason = match io.kind() {
                ErrorKind::ConnectionRefused => {
                    "connection refused (is the host and port right, is PostgreSQL running?)"
                }
                ErrorKind::TimedOut => "connection timed out",
                ErrorKind::NotFound => "host name not found",
                _ => "",
            };
            let detail = if reason.is_empty() {
                io.to_string()
            } else {
                format!("{reason}: {io}")
            };
            return SourceError::Unreachable {
                target,
                cause: detail,
            };
        }
        cause = format!("{cause}: {inner}");
        source = inner.source();
    }
    if cause.contains("password missing") {
        return SourceError::AuthenticationFailed {
            target,
            user,
            cause: "the server asks for a password and the URL has none".to_string(),
        };
    }
    if cause.contains("timeout") || cause.contains("timed out") {
        return SourceError::Unreachable { target, cause };
    }
    SourceError::Connect { target, cause }
}

/// The query of one window, with the previous snapshot embedded as a literal (COPY takes no
/// parameters; the snapshot was validated by [`Snapshot::parse`], so it holds only digits, `:` and
/// `,`). Public so benchmarks can run the same query through `psql`.
pub fn window_query(file_type: FileType, previous: Option<&Snapshot>) -> String {
    let table = columns::table(file_type);
    let key = columns::key_column(file_type);
    let select = columns::select_list(file_type);
    let filter = match previous {
        None => String::new(),
        // `txid >= xmin` is implied (everything older is visible) and lets the txid index narrow
        // the scan to recent writes.
        Some(snapshot) => format!(
            " WHERE txid >= '{xmin}'::xid8 AND NOT pg_visible_in_snapshot(txid, '{snapshot}'::pg_snapshot)",
            xmin = snapshot.xmin
        ),
    };
    format!("SELECT {select} FROM {table}{filter} ORDER BY {key}")
}

/// Exports the rows of `file_type` written since `previous` (all rows when `None`) into `out`,
/// and returns the row count and the new watermark.
///
/// The caller stores the watermark only after the file is delivered, so a failed run repeats the
/// window. `out` receives rows as they stream; the caller calls `finish` on it.
pub async fn export_window<W: Write>(
    client: &mut Client,
    file_type: FileType,
    previous: Option<&str>,
    out: &mut CsvFileWriter<W>,
) -> Result<WindowOutcome, SourceError> {
    let previous = previous.map(Snapshot::parse).transpose()?;
    let table = columns::table(file_type);
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
            columns::SESSION_SETTINGS
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

    let query = window_query(file_type, previous.as_ref());
    let copy = format!("COPY ({query}) TO STDOUT (FORMAT binary)");
    let stream = transaction
        .copy_out(copy.as_str())
        .await
        .map_err(|err| classify_query_error(err, file_type))?;
    futures::pin_mut!(stream);

    let rows_before = out.rows();
    let mut decoder = BinaryCopyDecoder::new(out.columns().len());
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|err| classify_query_error(err, file_type))?;
        decoder.feed(&chunk, |cells| out.write_row(cells))?;
    }
    decoder.finish()?;
    // Read-only: ending it either way releases the snapshot; commit reports any late error.
    transaction
        .commit()
        .await
        .map_err(SourceError::query(format!("cannot finish reading {table}")))?;
    Ok(WindowOutcome {
        rows: out.rows() - rows_before,
        watermark,
    })
}

fn classify_query_error(err: tokio_postgres::Error, file_type: FileType) -> SourceError {
    let table = columns::table(file_type);
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

/// Incremental parser of PostgreSQL's binary COPY format, for rows whose fields are all text:
/// an 11-byte signature, flags and header extension, then per tuple an i16 field count and per
/// field an i32 length (-1 for NULL) and its bytes, and finally a -1 trailer.
///
/// Tuples may span chunks; only an incomplete tail is kept between chunks, so memory stays at one
/// row plus one chunk.
struct BinaryCopyDecoder {
    columns: usize,
    pending: BytesMut,
    header_done: bool,
    trailer_seen: bool,
}

const SIGNATURE: &[u8] = b"PGCOPY\n\xff\r\n\0";

enum Step {
    /// Need more bytes.
    Incomplete,
    /// Consumed this many bytes.
    Consumed(usize),
}

impl BinaryCopyDecoder {
    fn new(columns: usize) -> Self {
        Self {
            columns,
            pending: BytesMut::new(),
            header_done: false,
            trailer_seen: false,
        }
    }

    fn feed<F>(&mut self, chunk: &[u8], mut row: F) -> Result<(), SourceError>
    where
        F: FnMut(&[Option<&[u8]>]) -> Result<(), std::io::Error>,
    {
        if self.pending.is_empty() {
            // Fast path: parse straight out of the chunk, keep only an incomplete tail.
            let used = self.parse(chunk, &mut row)?;
            self.pending.extend_from_slice(&chunk[used..]);
        } else {
            self.pending.extend_from_slice(chunk);
            let buffer = std::mem::take(&mut self.pending);
            let used = self.parse(&buffer, &mut row)?;
            let mut buffer = buffer;
            buffer.advance(used);
            self.pending = buffer;
        }
        Ok(())
    }

    fn parse<F>(&mut self, data: &[u8], row: &mut F) -> Result<usize, SourceError>
    where
        F: FnMut(&[Option<&[u8]>]) -> Result<(), std::io::Error>,
    {
        let mut at = 0;
        if !self.header_done {
            match self.header(data)? {
                Step::Incomplete => return Ok(0),
                Step::Consumed(n) => {
                    at = n;
                    self.header_done = true;
                }
            }
        }
        while at < data.len() {
            if self.trailer_seen {
                return Err(SourceError::MalformedCopy("data after the trailer".into()));
            }
            match self.tuple(&data[at..], row)? {
                Step::Incomplete => break,
                Step::Consumed(n) => at += n,
            }
        }
        Ok(at)
    }

    fn header(&self, data: &[u8]) -> Result<Step, SourceError> {
        let fixed = SIGNATURE.len() + 8;
        if data.len() < fixed {
            if !SIGNATURE.starts_with(&data[..data.len().min(SIGNATURE.len())]) {
                return Err(SourceError::MalformedCopy(
                    "missing binary signature".into(),
                ));
            }
            return Ok(Step::Incomplete);
        }
        if &data[..SIGNATURE.len()] != SIGNATURE {
            return Err(SourceError::MalformedCopy(
                "missing binary signature".into(),
            ));
        }
        let extension = read_i32(&data[SIGNATURE.len() + 4..]);
        let extension = usize::try_from(extension)
            .map_err(|_| SourceError::MalformedCopy("negative header extension".into()))?;
        if data.len() < fixed + extension {
            return Ok(Step::Incomplete);
        }
        Ok(Step::Consumed(fixed + extension))
    }

    fn tuple<F>(&mut self, data: &[u8], row: &mut F) -> Result<Step, SourceError>
    where
        F: FnMut(&[Option<&[u8]>]) -> Result<(), std::io::Error>,
    {
        if data.len() < 2 {
            return Ok(Step::Incomplete);
        }
        let count = i16::from_be_bytes([data[0], data[1]]);
        if count == -1 {
            self.trailer_seen = true;
            return Ok(Step::Consumed(2));
        }
        if usize::try_from(count).ok() != Some(self.columns) {
            return Err(SourceError::MalformedCopy(format!(
                "tuple has {count} fields, expected {}",
                self.columns
            )));
        }
        let mut cells: [Option<&[u8]>; MAX_COLUMNS] = [None; MAX_COLUMNS];
        let mut at = 2;
        for cell in cells.iter_mut().take(self.columns) {
            if data.len() < at + 4 {
                return Ok(Step::Incomplete);
            }
            let length = read_i32(&data[at..]);
            at += 4;
            if length < 0 {
                *cell = None;
                continue;
            }
            let length = length as usize;
            if data.len() < at + length {
                return Ok(Step::Incomplete);
            }
            *cell = Some(&data[at..at + length]);
            at += length;
        }
        row(&cells[..self.columns])?;
        Ok(Step::Consumed(at))
    }

    fn finish(self) -> Result<(), SourceError> {
        if !self.trailer_seen || !self.pending.is_empty() {
            return Err(SourceError::MalformedCopy(
                "the stream ended in the middle of a row".into(),
            ));
        }
        Ok(())
    }
}

fn read_i32(data: &[u8]) -> i32 {
    i32::from_be_bytes([data[0], data[1], data[2], data[3]])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_snapshots() {
        let snapshot = Snapshot::parse("1234:1240:1236,1238").expect("valid");
        assert_eq!(snapshot.xmin, 1234);
        assert_eq!(snapshot.xmax, 1240);
        assert_eq!(snapshot.in_progress, vec![1236, 1238]);
        assert_eq!(snapshot.to_string(), "1234:1240:1236,1238");
        assert_eq!(Snapshot::parse("5:5:").expect("valid").to_string(), "5:5:");
    }

    #[test]
    fn refuses_malformed_watermarks_naming_the_status_field() {
        for bad in [
            "",
            "2024-01-01T00:00:00Z",
            "1:2",
            "1:2:3:4",
            "a:2:",
            "1:2:x",
            "3:2:",
            "0:2:",
            "1:5:7",
            "1:5:3,2",
            "1:5:,",
            "1:5:3,",
            "1:2:'; DROP TABLE interactions; --",
            "99999999999999999999999:1:",
        ] {
            let err = Snapshot::parse(bad).expect_err(bad);
            let message = err.to_string();
            assert!(message.contains("status.watermark"), "{message}");
        }
    }

    #[test]
    fn describes_targets_without_the_password() {
        let config = parse_url("postgres://exporter:s3cret@db.example:6543/crm").expect("url");
        let target = describe_target(&config);
        assert_eq!(target, "db.example:6543/crm as exporter");
        assert!(!target.contains("s3cret"));
    }

    #[test]
    fn window_query_filters_on_the_previous_snapshot() {
        let snapshot = Snapshot::parse("10:20:12,15").expect("valid");
        let query = window_query(FileType::Proposals, Some(&snapshot));
        assert!(query.starts_with("SELECT proposal_id::text AS proposal_id, "));
        assert!(query.ends_with(
            " FROM proposals WHERE txid >= '10'::xid8 AND NOT pg_visible_in_snapshot(txid, \
             '10:20:12,15'::pg_snapshot) ORDER BY proposal_id"
        ));
        let all = window_query(FileType::Interactions, None);
        assert!(all.ends_with(" FROM interactions ORDER BY interaction_id"));
    }

    fn encode(rows: &[Vec<Option<&[u8]>>]) -> Vec<u8> {
        let mut out = SIGNATURE.to_vec();
        out.extend_from_slice(&0i32.to_be_bytes());
        out.extend_from_slice(&0i32.to_be_bytes());
        for row in rows {
            out.extend_from_slice(&(row.len() as i16).to_be_bytes());
            for cell in row {
                match cell {
                    None => out.extend_from_slice(&(-1i32).to_be_bytes()),
                    Some(bytes) => {
                        out.extend_from_slice(&(bytes.len() as i32).to_be_bytes());
                        out.extend_from_slice(bytes);
                    }
                }
            }
        }
        out.extend_from_slice(&(-1i16).to_be_bytes());
        out
    }

    #[test]
    fn decodes_binary_copy_split_at_every_byte() {
        let rows: Vec<Vec<Option<&[u8]>>> = vec![
            vec![Some(b"1"), None, Some(b"")],
            vec![Some("é,\"x\"".as_bytes()), Some(b"a\r\nb"), None],
        ];
        let data = encode(&rows);
        for chunk_size in 1..=data.len() {
            let mut decoder = BinaryCopyDecoder::new(3);
            let mut seen: Vec<Vec<Option<Vec<u8>>>> = Vec::new();
            for chunk in data.chunks(chunk_size) {
                decoder
                    .feed(chunk, |cells| {
                        seen.push(cells.iter().map(|c| c.map(<[u8]>::to_vec)).collect());
                        Ok(())
                    })
                    .expect("decode");
            }
            decoder.finish().expect("complete");
            let expected: Vec<Vec<Option<Vec<u8>>>> = rows
                .iter()
                .map(|r| r.iter().map(|c| c.map(<[u8]>::to_vec)).collect())
                .collect();
            assert_eq!(seen, expected, "chunk size {chunk_size}");
        }
    }

    #[test]
    fn rejects_truncated_or_foreign_streams() {
        let data = encode(&[vec![Some(b"1")]]);
        let mut decoder = BinaryCopyDecoder::new(1);
        decoder
            .feed(&data[..data.len() - 3], |_| Ok(()))
            .expect("partial is fine");
        assert!(decoder.finish().is_err());

        let mut decoder = BinaryCopyDecoder::new(1);
        assert!(decoder.feed(b"id,name\r\n1,x\r\n", |_| Ok(())).is_err());

        let mut decoder = BinaryCopyDecoder::new(2);
        assert!(decoder.feed(&data, |_| Ok(())).is_err());
    }
}
