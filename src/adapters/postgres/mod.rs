//! The source database: connecting, and exporting one no-loss window.
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
//! On a hot standby the snapshot's in-progress transactions are not in its text form, so there the
//! window ends at the snapshot's `xmin` instead: see [`copy_window`].
//!
//! Rows stream through `COPY (SELECT ...) TO STDOUT (FORMAT binary)`: binary framing needs no
//! unescaping, text columns arrive as the cells' bytes, and integers, dates, timestamps and lists
//! arrive in their binary forms, which the client renders (see [`WireType`]) so the database spends
//! its time reading rows rather than formatting them. Memory stays constant.

mod connect;
mod copy;
mod probe;
mod tls;
mod values;
mod view;
mod window;

pub use connect::{connect, connect_with_ca, describe_target, parse_url};
pub use probe::{is_permission_denied, probe_window};
pub use tls::SslMode;
pub use values::WireType;
pub use view::{RelationColumn, relation_columns};
pub use window::{
    MAX_COLUMNS, RowSink, WindowPlan, WindowQuery, copy_window, plan_window,
    window_planner_settings, window_sql,
};

use std::fmt;
use std::time::Duration;

/// Why talking to the source database failed. Messages name the server as `host:port/db as user`
/// and never carry the password.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// The URL could not be parsed (the message names the offending option, not its value).
    #[error(
        "invalid database URL (key url of the Secret spec.source.secretRef names; DATABASE_URL \
         for sample-data): {reason}"
    )]
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
    /// TLS could not be set up or the server's certificate was refused (`sslmode`, `caCert`).
    #[error("TLS to PostgreSQL at {target} failed: {reason}")]
    Tls { target: String, reason: String },
    /// The source Secret's `caCert` is not a usable PEM CA certificate.
    #[error("the source Secret's key caCert is not a usable CA certificate: {reason}")]
    InvalidCaCert { reason: String },
    /// Any other failure while connecting.
    #[error("cannot connect to PostgreSQL at {target}: {cause}")]
    Connect { target: String, cause: String },
    /// The file type's table or view is missing.
    #[error(
        "table {table} not found: apply the reference schema with `scheduled-exports sample-data \
         --database-url URL --interactions 0 --proposals 0 --constituents 0`, create a view of \
         that name, or name a view in spec.source.view"
    )]
    TableMissing { table: String },
    /// A column the file needs is missing from the table or view.
    #[error("{table} lacks a column the file needs: {cause}")]
    ColumnMissing { table: String, cause: String },
    /// `status.watermark` is not a PostgreSQL snapshot.
    #[error(
        "status.watermark {watermark:?} is not a valid watermark ({reason}); remove it from the \
         status to export every row again"
    )]
    InvalidWatermark { watermark: String, reason: String },
    /// A hot standby cancelled the export because replaying the primary's changes needed what the
    /// export was reading.
    #[error(
        "the standby cancelled the export of {table} because of a conflict with recovery ({cause}); \
         nothing was delivered and the watermark did not move. Turn hot_standby_feedback on and raise \
         max_standby_streaming_delay on the standby, or export from the primary"
    )]
    RecoveryConflict { table: String, cause: String },
    /// A statement failed. The driver's text may quote the server, so it is scrubbed.
    #[error("{context}: {}", crate::redact::scrub(&.source.to_string()))]
    Query {
        context: String,
        #[source]
        source: tokio_postgres::Error,
    },
    /// No COPY data arrived for too long: the link stalled (a proxy or firewall holding it).
    #[error(
        "no data from PostgreSQL for {after:?} while exporting {table}: the connection stalled \
         (a proxy or firewall between the Job and the database holding it open); the next run \
         repeats the window"
    )]
    Stalled { table: String, after: Duration },
    /// The `COPY` stream was not the binary format it should be.
    #[error("unexpected COPY data from the server: {0}")]
    MalformedCopy(String),
    /// Writing the file failed.
    #[error("cannot write the export file: {0}")]
    Write(#[from] std::io::Error),
}

impl SourceError {
    pub(crate) fn query(
        context: impl Into<String>,
    ) -> impl FnOnce(tokio_postgres::Error) -> SourceError {
        let context = context.into();
        move |source| SourceError::Query { context, source }
    }
}

/// The outcome of one exported window.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WindowOutcome {
    /// Data rows written to the file.
    pub rows: u64,
    /// The snapshot the window started after (its rows are those written since); `None` when the
    /// window held every row.
    pub after: Option<String>,
    /// The new watermark, to store in `status.watermark` once the file is delivered: the export's
    /// own snapshot on a primary, the conservative end of the window on a standby.
    pub watermark: String,
    /// The database the window was read from, to store with the watermark.
    pub source: SourceIdentity,
    /// Set when the window held every row although a watermark was stored, and why.
    pub full_export: Option<FullExport>,
}

/// The end of the previous window as stored: its snapshot, and the database it was taken in when
/// known (a watermark of an earlier version has none).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Watermark {
    pub snapshot: String,
    pub source: Option<SourceIdentity>,
}

/// What tells one database apart from every other, including a copy of itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SourceIdentity {
    /// `pg_control_system().system_identifier`: chosen by `initdb`, kept by physical standbys
    /// (and so across a failover), new for a cluster restored from a logical dump. `None` when the
    /// role may not call that function: then only the database's oid tells databases apart.
    pub system_identifier: Option<u64>,
    /// `current_database()`.
    pub database: String,
    /// The database's oid: a database dropped and created again under the same name gets a new one.
    pub database_oid: u32,
}

/// Why a window holds every row although a watermark was stored: the watermark's transaction ids
/// mean nothing in this database, and trusting them would skip its rows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FullExport {
    /// The source is another cluster (another server, or a restore into a new cluster); both
    /// system identifiers are known.
    OtherCluster {
        stored: SourceIdentity,
        current: SourceIdentity,
    },
    /// Same cluster, another database: another name, or the same name dropped and created again.
    OtherDatabase {
        stored: SourceIdentity,
        current: SourceIdentity,
    },
    /// The database's transaction ids are behind the watermark: it was restored from a backup, a
    /// failover lost transactions, or (with a watermark of an earlier version, which names no
    /// database) it is another database.
    TransactionIdsBehind { watermark: String, current: String },
}

impl fmt::Display for FullExport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FullExport::OtherCluster { stored, current } => write!(
                f,
                "the watermark was taken in database {:?} of cluster {}, the source is now database \
                 {:?} of cluster {} (another server, or a restore into a new cluster)",
                stored.database,
                stored.system_identifier.unwrap_or_default(),
                current.database,
                current.system_identifier.unwrap_or_default()
            ),
            FullExport::OtherDatabase { stored, current }
                if stored.database == current.database =>
            {
                write!(
                    f,
                    "database {:?} was dropped and created again (oid {}, now {})",
                    current.database, stored.database_oid, current.database_oid
                )
            }
            FullExport::OtherDatabase { stored, current } => write!(
                f,
                "the watermark was taken in database {:?}, the source is now database {:?}",
                stored.database, current.database
            ),
            FullExport::TransactionIdsBehind { watermark, current } => write!(
                f,
                "the database's transaction ids (snapshot {current}) are behind the watermark \
                 {watermark}: it was restored from a backup, or a failover lost transactions"
            ),
        }
    }
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

impl Snapshot {
    /// The snapshot under which exactly the transactions visible in `previous` or below
    /// `finished_below` count as delivered: the watermark of a standby's window, which read the
    /// rows not visible in `previous` of the transactions below `finished_below` (its snapshot's
    /// `xmin`, under which every transaction had finished). Neither set is lost when the other lags
    /// behind it (a standby behind the primary that wrote `previous`).
    pub fn covering(previous: Option<&Snapshot>, finished_below: u64) -> Snapshot {
        let Some(previous) = previous else {
            return Snapshot {
                xmin: finished_below,
                xmax: finished_below,
                in_progress: Vec::new(),
            };
        };
        let xmin = previous.xmin.max(finished_below);
        Snapshot {
            xmin,
            xmax: previous.xmax.max(finished_below),
            in_progress: previous
                .in_progress
                .iter()
                .copied()
                .filter(|&xid| xid >= xmin)
                .collect(),
        }
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

    /// Whether `xid` counts as delivered under `snapshot`, as `pg_visible_in_snapshot` decides it.
    fn visible(snapshot: &Snapshot, xid: u64) -> bool {
        xid < snapshot.xmin || (xid < snapshot.xmax && !snapshot.in_progress.contains(&xid))
    }

    #[test]
    fn a_covering_snapshot_holds_exactly_both_sets() {
        let previous = Snapshot::parse("10:20:12,15,18").expect("valid");
        for finished_below in [1, 5, 10, 11, 12, 13, 15, 16, 19, 20, 21, 30] {
            let covering = Snapshot::covering(Some(&previous), finished_below);
            Snapshot::parse(&covering.to_string()).expect("a valid watermark");
            for xid in 1..40 {
                assert_eq!(
                    visible(&covering, xid),
                    visible(&previous, xid) || xid < finished_below,
                    "xid {xid} below {finished_below}: {covering}"
                );
            }
        }
        assert_eq!(Snapshot::covering(None, 7).to_string(), "7:7:");
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
}
