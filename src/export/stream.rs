//! The one stream of a run: rows leave PostgreSQL's COPY, are written as CSV (compressed and
//! encrypted when the spec says so) and hashed, and the same bytes go at once to the SFTP upload
//! (on a thread of its own, where libssh2 encrypts) and to the artifact store (an async task),
//! each through a bounded queue. Memory stays bounded whatever the window's size, and the slowest
//! of the three sets the pace: the COPY waits while both queues are full.
//!
//! Nothing becomes visible while the stream runs: the upload stays under its temporary name and
//! the artifact uncommitted until the run has decided, on the complete digest, what to publish
//! (see `export::deliver`).

use std::collections::VecDeque;
use std::io::{self, BufWriter, Write};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use tokio::sync::mpsc;

use crate::adapters::artifacts::{ArtifactError, ArtifactKey, ArtifactStore, ArtifactUpload};
use crate::adapters::postgres::{RowSink, SourceError, Watermark, WindowOutcome, WindowQuery};
use crate::adapters::sftp::{SftpError, SftpSession, StagedFile};
use crate::digest::{ContentDigest, HashingWriter};
use crate::export::columns::ColumnKind;
use crate::export::csv::CsvFileWriter;
use crate::export::deliver::on_session;
use crate::export::encode::FileEncoder;
use crate::export::encrypt::RecipientKey;
use crate::export::error::ExportError;
use crate::progress::Progress;
use crate::resource::ScheduledExport;

/// The size of the pieces handed to the consumers.
pub const CHUNK: usize = 256 * 1024;
/// Pieces waiting for each consumer at most: with [`CHUNK`], 1 MiB per consumer.
const QUEUE: usize = 4;

/// What goes down a consumer's queue. A queue that closes without [`Piece::End`] means the stream
/// failed upstream: the consumer gives its copy up.
#[derive(Debug)]
pub enum Piece {
    Data(Bytes),
    End,
}

/// The end of the encoding chain: cuts the file's bytes into [`CHUNK`]s, which the
/// [`StreamingCsv`] that owns the chain then hands to the consumers.
pub struct ChunkWriter {
    current: BytesMut,
    ready: Arc<Mutex<VecDeque<Bytes>>>,
}

impl Write for ChunkWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.current.extend_from_slice(buf);
        if self.current.len() >= CHUNK {
            let mut ready = self.ready.lock().unwrap_or_else(PoisonError::into_inner);
            while self.current.len() >= CHUNK {
                ready.push_back(self.current.split_to(CHUNK).freeze());
            }
        }
        Ok(buf.len())
    }

    /// Hands over what is gathered, however little (the end of the file).
    fn flush(&mut self) -> io::Result<()> {
        if !self.current.is_empty() {
            let rest = self.current.split().freeze();
            self.ready
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push_back(rest);
        }
        Ok(())
    }
}

/// The two queues the stream feeds, and the pieces cut but not yet sent.
pub struct Fanout {
    ready: Arc<Mutex<VecDeque<Bytes>>>,
    to_sftp: mpsc::Sender<Piece>,
    to_store: mpsc::Sender<Piece>,
    /// Time spent waiting for room in a queue: the consumers were slower than the stream.
    pub waited: Duration,
}

/// The consumers' ends of the queues.
pub struct Consumers {
    pub sftp: mpsc::Receiver<Piece>,
    pub store: mpsc::Receiver<Piece>,
}

/// A writer for the encoding chain and the fan-out it feeds.
pub fn fanout() -> (ChunkWriter, Fanout, Consumers) {
    let ready = Arc::new(Mutex::new(VecDeque::new()));
    let (to_sftp, sftp) = mpsc::channel(QUEUE);
    let (to_store, store) = mpsc::channel(QUEUE);
    (
        ChunkWriter {
            current: BytesMut::with_capacity(CHUNK * 2),
            ready: ready.clone(),
        },
        Fanout {
            ready,
            to_sftp,
            to_store,
            waited: Duration::ZERO,
        },
        Consumers { sftp, store },
    )
}

impl Fanout {
    /// Sends every piece cut so far to both queues, waiting for room.
    pub async fn send_ready(&mut self) -> io::Result<()> {
        loop {
            let next = self
                .ready
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .pop_front();
            let Some(piece) = next else {
                return Ok(());
            };
            let started = Instant::now();
            let stopped = || io::Error::other("the delivery stopped before the file was complete");
            self.to_sftp
                .send(Piece::Data(piece.clone()))
                .await
                .map_err(|_| stopped())?;
            self.to_store
                .send(Piece::Data(piece))
                .await
                .map_err(|_| stopped())?;
            self.waited += started.elapsed();
        }
    }

    /// Sends what is left and tells both consumers the file is complete.
    pub async fn end(mut self) -> io::Result<Duration> {
        self.send_ready().await?;
        let stopped = |_| io::Error::other("the delivery stopped before the file was complete");
        self.to_sftp.send(Piece::End).await.map_err(stopped)?;
        self.to_store.send(Piece::End).await.map_err(stopped)?;
        Ok(self.waited)
    }
}

/// The COPY's row sink: writes each row as CSV through the encoding chain, and after each COPY
/// message hands what was cut to the consumers (an `await`, so a full queue holds the COPY).
pub struct StreamingCsv<W: Write> {
    pub csv: CsvFileWriter<W>,
    pub fanout: Fanout,
}

impl<W: Write> RowSink for StreamingCsv<W> {
    fn write_row(&mut self, cells: &[Option<&[u8]>]) -> io::Result<()> {
        self.csv.write_row(cells)
    }

    fn after_message(&mut self) -> impl Future<Output = io::Result<()>> + Send {
        self.fanout.send_ready()
    }
}

/// The SFTP side of the stream: writes every piece under a temporary name on `session` and
/// returns the staged file (complete, synced and size-checked) with the session, so the run goes
/// on on the same connection. A queue that closes early removes the temporary file.
pub fn upload_stream(
    session: SftpSession,
    file_name: &str,
    mut pieces: mpsc::Receiver<Piece>,
) -> (SftpSession, Result<(StagedFile, UploadTimes), SftpError>) {
    let result = (|| {
        let mut times = UploadTimes::default();
        let mut upload = session.begin_upload(file_name)?;
        loop {
            let waited = Instant::now();
            let next = pieces.blocking_recv();
            times.waiting += waited.elapsed();
            match next {
                Some(Piece::Data(piece)) => {
                    let started = Instant::now();
                    upload.write(&piece)?;
                    times.sending += started.elapsed();
                }
                Some(Piece::End) => break,
                None => {
                    // Dropping `upload` removes the temporary file.
                    return Err(SftpError::SourceFailed {
                        address: session.address().to_string(),
                        path: file_name.to_string(),
                        detail: "the export stopped before the file was complete".to_string(),
                    });
                }
            }
        }
        let started = Instant::now();
        let staged = upload.finish()?;
        times.sending += started.elapsed();
        Ok((staged, times))
    })();
    (session, result)
}

/// Where the SFTP side's time went.
#[derive(Debug, Clone, Copy, Default)]
pub struct UploadTimes {
    /// In libssh2: encrypting, sending, waiting for acknowledgements.
    pub sending: Duration,
    /// Waiting for the stream's next piece.
    pub waiting: Duration,
}

/// The artifact side of the stream: writes every piece into an upload that is committed later.
/// A queue that closes early aborts it.
pub async fn store_stream(
    store: ArtifactStore,
    key: ArtifactKey,
    mut pieces: mpsc::Receiver<Piece>,
) -> Result<ArtifactUpload, ArtifactError> {
    let mut upload = store.begin_upload(&key).await?;
    loop {
        match pieces.recv().await {
            Some(Piece::Data(piece)) => {
                if let Err(err) = upload.write(piece).await {
                    upload.abort().await;
                    return Err(err);
                }
            }
            Some(Piece::End) => return Ok(upload),
            None => {
                upload.abort().await;
                return Err(ArtifactError::Incomplete {
                    key: key.to_string(),
                });
            }
        }
    }
}

/// What the producing side of the stream ends with.
pub struct Produced {
    pub window: WindowOutcome,
    pub digest: ContentDigest,
    /// Waiting for room in the consumers' queues.
    pub waited: std::time::Duration,
}

/// Runs the COPY through the CSV writer and the encoding into the fan-out, and ends the stream.
/// On any error the fan-out is dropped unended, so both consumers give their copies up.
#[allow(clippy::too_many_arguments)] // each is one input of the stream; a struct would only rename them
pub async fn produce(
    mut database: tokio_postgres::Client,
    query: WindowQuery,
    previous: Option<Watermark>,
    header: Vec<(String, ColumnKind)>,
    object: ScheduledExport,
    recipient: Option<RecipientKey>,
    chunks: ChunkWriter,
    fanout: Fanout,
    stall_timeout: std::time::Duration,
    progress: Progress,
) -> Result<Produced, ExportError> {
    // The digest is of the bytes delivered, so it is taken after the encoding.
    let mut counter = HashingWriter::new(chunks);
    let (window, fanout) = {
        let encoder = FileEncoder::new(&mut counter, object.spec.compression, recipient.as_ref())?;
        let csv = CsvFileWriter::with_header(
            BufWriter::with_capacity(CHUNK, encoder),
            header.iter().map(|(name, kind)| (name.as_str(), *kind)),
            &object.spec.csv,
        )?
        .with_progress(progress);
        let mut sink = StreamingCsv { csv, fanout };
        let window = crate::export::window::export_window_within(
            &mut database,
            query,
            previous.as_ref(),
            &mut sink,
            stall_timeout,
        )
        .await?;
        let StreamingCsv { csv, fanout } = sink;
        csv.finish()?
            .into_inner()
            .map_err(|err| err.into_error())?
            .finish()?;
        (window, fanout)
    };
    let (mut chunks, digest) = counter.finish()?;
    chunks.flush()?;
    let waited = fanout.end().await?;
    Ok(Produced {
        window,
        digest,
        waited,
    })
}

/// The error of a stream that failed somewhere, after both copies were given up. A consumer's own
/// failure (the server, the store) explains a producer that stopped for want of a reader; the
/// producer's (the database, the file's encoding) explains consumers that were cut off.
pub async fn stream_failure(
    session: SftpSession,
    produced: Result<Produced, ExportError>,
    uploaded: Result<(StagedFile, UploadTimes), SftpError>,
    stored: Result<ArtifactUpload, ArtifactError>,
) -> ExportError {
    let stored = match stored {
        Ok(upload) => {
            upload.abort().await;
            None
        }
        Err(ArtifactError::Incomplete { .. }) => None,
        Err(err) => Some(err),
    };
    let uploaded = match uploaded {
        Ok((staged, _)) => {
            let _ = on_session(session, move |session| session.discard(&staged)).await;
            None
        }
        Err(SftpError::SourceFailed { .. }) => None,
        Err(err) => Some(err),
    };
    match (produced, uploaded, stored) {
        (Err(ExportError::Source(SourceError::Write(_))), Some(err), _) => err.into(),
        (Err(ExportError::Source(SourceError::Write(_))), None, Some(err)) => err.into(),
        (Err(ExportError::Spool(_)), Some(err), _) => err.into(),
        (Err(ExportError::Spool(_)), None, Some(err)) => err.into(),
        (Err(err), _, _) => err,
        (Ok(_), Some(err), _) => err.into(),
        (Ok(_), None, Some(err)) => err.into(),
        (Ok(_), None, None) => ExportError::Spool(std::io::Error::other(
            "the delivery ended without a file and without an error",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_stream_reaches_both_queues_whole_and_in_order() {
        let (mut writer, mut fanout, mut consumers) = fanout();
        let data: Vec<u8> = (0..(CHUNK * 2 + 1000)).map(|i| (i % 251) as u8).collect();
        let collect = |mut queue: mpsc::Receiver<Piece>| async move {
            let mut got = Vec::new();
            loop {
                match queue.recv().await {
                    Some(Piece::Data(piece)) => got.extend_from_slice(&piece),
                    Some(Piece::End) => return Some(got),
                    None => return None,
                }
            }
        };
        let sftp = tokio::spawn(collect(std::mem::replace(
            &mut consumers.sftp,
            mpsc::channel(1).1,
        )));
        let store = tokio::spawn(collect(std::mem::replace(
            &mut consumers.store,
            mpsc::channel(1).1,
        )));
        for piece in data.chunks(10_000) {
            writer.write_all(piece).expect("write");
            fanout.send_ready().await.expect("send");
        }
        writer.flush().expect("flush");
        fanout.end().await.expect("end");
        assert_eq!(sftp.await.expect("task"), Some(data.clone()));
        assert_eq!(store.await.expect("task"), Some(data));
    }

    #[tokio::test]
    async fn a_stream_that_stops_early_never_says_end() {
        let (mut writer, mut fanout, mut consumers) = fanout();
        writer.write_all(&[1; CHUNK]).expect("write");
        fanout.send_ready().await.expect("send");
        drop(fanout);
        assert!(matches!(consumers.sftp.recv().await, Some(Piece::Data(_))));
        assert!(
            consumers.sftp.recv().await.is_none(),
            "closed without End: the consumer gives its copy up"
        );
    }

    #[tokio::test]
    async fn a_consumer_that_stops_stops_the_stream() {
        let (mut writer, mut fanout, consumers) = fanout();
        drop(consumers.sftp);
        writer.write_all(&[1; CHUNK]).expect("write");
        let err = fanout.send_ready().await.expect_err("nobody reads");
        assert!(err.to_string().contains("delivery stopped"), "{err}");
    }
}
