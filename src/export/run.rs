//! One export run (what a Job executes): read the object and its Secrets, then stream the window
//! since the watermark from PostgreSQL to the SFTP server and the artifact store at once (see
//! `export::stream`), and only then advance the watermark in status.
//!
//! What makes a failure lose nothing: the store and the server are checked before the database
//! is read; the file appears under its final name only complete and size-checked, after its
//! artifact was committed; a failed step undoes the steps before it (so no file stays without the
//! artifact a recopy needs); and the watermark moves only after both copies are in place.

use std::io::{BufWriter, Write};
use std::path::PathBuf;
use std::time::Duration;

use chrono::{DateTime, SubsecRound, Utc};
use kube::Client;
use kube::api::Api;
use tracing::{info, warn};

use crate::adapters::artifacts::{ArtifactError, ArtifactKey, ArtifactStore, ArtifactUpload};
use crate::adapters::kubernetes::secrets::{self, SecretError, SecretReader};
use crate::adapters::kubernetes::status::{
    StatusError, StatusWriter, check_incarnation, update_status, update_status_of,
};
use crate::adapters::postgres::{self, SourceError, WindowOutcome, WindowQuery};
use crate::adapters::sftp::{SftpError, SftpSession, SftpTarget, StagedFile};
use crate::digest::{ContentDigest, HashingWriter};
use crate::export::artifacts::prune_older_artifacts;
use crate::export::columns::{self, ColumnKind};
use crate::export::csv::CsvFileWriter;
use crate::export::deliver::{ChecksumFile, Found, Placement, decide, on_session, publish, survey};
use crate::export::encode::FileEncoder;
use crate::export::encrypt::{EncryptionKeyError, RecipientKey};
use crate::export::file_name::{
    FileFormat, checksum_file_name, export_file_name, parse_export_file_name,
};
use crate::export::stream;
use crate::export::view::ViewError;
use crate::progress::Progress;
use crate::resource::{ConditionReason, RunPhase, ScheduledExport, ScheduledExportStatus};
use crate::status::ownership::{self, Content};
use crate::status::{self, DeliveredRun};

/// What to run.
#[derive(Debug, Clone)]
pub struct ExportRequest {
    pub namespace: String,
    pub name: String,
    /// The scheduled instant; `None` means now (a run started by hand).
    pub slot: Option<DateTime<Utc>>,
    /// `file:///path` or `s3://bucket/prefix`.
    pub artifact_store_url: String,
    /// The Job running this export, for status; from the Pod's environment.
    pub job_name: Option<String>,
    /// UID of the object the run belongs to; when set, a run whose object was replaced by a new
    /// one of the same name stops and writes no status.
    pub object_uid: Option<String>,
    /// Bound on each network step (database connect, SFTP operations).
    pub timeout: Duration,
    /// A writable directory for temporary files (the file itself streams and is never spooled).
    pub spool_dir: PathBuf,
    /// Where the Pod's volumes hold the object's Secrets (see [`SecretReader::Mounted`]); `None`
    /// reads them from the API server.
    pub secrets_dir: Option<PathBuf>,
    /// Ignore the stored watermark: the file holds every row (a full-export run).
    pub full_export: bool,
    /// Show rows exported and bytes sent on standard error (a person at a terminal).
    pub progress: bool,
}

/// What a run did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExportOutcome {
    Delivered(Box<DeliveredRun>),
    /// The slot was delivered before; nothing was done.
    AlreadyDelivered {
        file_name: String,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error("ScheduledExport {namespace}/{name} not found")]
    NotFound { namespace: String, name: String },
    /// The object this run was started for is gone; another of the same name took its place.
    #[error("{0}")]
    Replaced(StatusError),
    #[error(transparent)]
    Secret(#[from] SecretError),
    #[error("the artifact store cannot be used: {0}")]
    ArtifactStore(#[from] ArtifactError),
    #[error("{0}")]
    Source(#[from] SourceError),
    #[error(transparent)]
    View(#[from] ViewError),
    #[error("SFTP delivery failed: {0}")]
    Sftp(#[from] SftpError),
    #[error("cannot spool the file locally: {0}")]
    Spool(#[from] std::io::Error),
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("the delivery task stopped unexpectedly: {0}")]
    Task(#[from] tokio::task::JoinError),
    #[error(
        "the OpenPGP key in Secret {secret} (key \"{key}\", referenced by \
         spec.encryption.pgp.publicKeySecretRef) {problem}"
    )]
    EncryptionKey {
        secret: String,
        key: String,
        problem: EncryptionKeyError,
    },
    #[error(
        "another file named {file} already exists in {directory} ({bytes} bytes) and is not this \
         object's delivery: its size and sha256 match neither this run's file nor an earlier attempt \
         of this object kept in the artifact store. It was left untouched and nothing was delivered. \
         If another ScheduledExport delivers the same file type into this directory, give each its \
         own directory; if the file is a leftover nobody needs, remove it on the server; the next \
         run then delivers"
    )]
    ForeignFile {
        file: String,
        directory: String,
        bytes: u64,
    },
}

impl ExportError {
    /// CamelCase reason for the `Exported` condition.
    pub fn reason(&self) -> ConditionReason {
        match self {
            ExportError::NotFound { .. } | ExportError::Replaced(_) => ConditionReason::NotFound,
            // An SFTP Secret that is unusable is still the Secret's fault, whatever its content.
            ExportError::Secret(SecretError::Api { .. }) => ConditionReason::KubernetesApiFailed,
            ExportError::Secret(_) => ConditionReason::SecretInvalid,
            ExportError::ArtifactStore(_) => ConditionReason::ArtifactStoreFailed,
            ExportError::Source(SourceError::RecoveryConflict { .. }) => {
                ConditionReason::RecoveryConflict
            }
            ExportError::Source(SourceError::Tls { .. }) => ConditionReason::DatabaseTlsFailed,
            ExportError::Source(
                SourceError::InvalidCaCert { .. } | SourceError::InvalidUrl { .. },
            ) => ConditionReason::SecretInvalid,
            ExportError::Source(_) => ConditionReason::DatabaseFailed,
            ExportError::View(_) => ConditionReason::ViewInvalid,
            ExportError::Sftp(err) => err.reason(),
            ExportError::Spool(_) | ExportError::Task(_) => ConditionReason::SpoolFailed,
            ExportError::Kube(_) => ConditionReason::KubernetesApiFailed,
            ExportError::ForeignFile { .. } => ConditionReason::FileExists,
            ExportError::EncryptionKey { .. } => ConditionReason::EncryptionKeyInvalid,
        }
    }

    /// Bad input (a name that does not exist, or is another object now, or a view that cannot
    /// be exported losslessly) exits 2, which the Job's
    /// failure policy does not retry; everything else 1.
    pub fn is_bad_input(&self) -> bool {
        matches!(
            self,
            ExportError::NotFound { .. } | ExportError::Replaced(_) | ExportError::View(_)
        )
    }
}

impl From<StatusError> for ExportError {
    fn from(err: StatusError) -> Self {
        match err {
            StatusError::Kube(err) => ExportError::Kube(err),
            replaced @ StatusError::Replaced { .. } => ExportError::Replaced(replaced),
        }
    }
}

/// A status write of this run: only into the object it belongs to, when the Job said which.
async fn write_status(
    api: &Api<ScheduledExport>,
    request: &ExportRequest,
    update: impl Fn(&ScheduledExportStatus) -> ScheduledExportStatus,
) -> Result<bool, ExportError> {
    match &request.object_uid {
        Some(uid) => {
            Ok(update_status_of(api, StatusWriter::Export, &request.name, uid, update).await?)
        }
        None => Ok(update_status(api, StatusWriter::Export, &request.name, update).await?),
    }
}

/// Runs one export and records its outcome in the object's status, success or failure.
pub async fn run_export(
    client: Client,
    request: &ExportRequest,
) -> Result<ExportOutcome, ExportError> {
    let api: Api<ScheduledExport> = Api::namespaced(client.clone(), &request.namespace);
    let object = api
        .get_opt(&request.name)
        .await?
        .ok_or_else(|| ExportError::NotFound {
            namespace: request.namespace.clone(),
            name: request.name.clone(),
        })?;
    if let Some(uid) = &request.object_uid {
        check_incarnation(&object, uid)?;
    }
    let slot = request.slot.unwrap_or_else(Utc::now).trunc_subsecs(0);
    let file_name = export_file_name(object.spec.file_type, FileFormat::of(&object.spec), slot);
    if already_delivered(&object, slot) {
        info!(file = %file_name, "slot already delivered; nothing to do");
        return Ok(ExportOutcome::AlreadyDelivered { file_name });
    }

    let started = Utc::now();
    write_status(&api, request, |current| {
        // Before lastRun is replaced: what it says of the file delivered before goes on record.
        status::run_started(
            &ownership::record_previous(current),
            slot,
            request.job_name.clone(),
            started,
        )
    })
    .await?;

    match deliver(client, request, &object, slot, &file_name, started).await {
        Ok(run) => {
            let generation = object.metadata.generation;
            let content = Content {
                bytes: run.bytes,
                sha256: run.sha256.clone(),
            };
            write_status(&api, request, |current| {
                // The record of what this object delivered is what later proves the file ours.
                ownership::record_delivery(
                    &status::run_delivered(current, &run, generation),
                    &run.file_name,
                    &content,
                    run.finished,
                )
            })
            .await?;
            info!(file = %run.file_name, rows = run.rows, bytes = run.bytes, "export delivered");
            prune_artifacts(request, &object, &run.file_name).await;
            Ok(ExportOutcome::Delivered(Box::new(run)))
        }
        Err(err) => {
            let message = err.to_string();
            let generation = object.metadata.generation;
            let recorded = write_status(&api, request, |current| {
                status::run_failed(current, err.reason(), &message, generation, Utc::now())
            })
            .await;
            if let Err(status_err) = recorded {
                warn!(error = %status_err, "could not record the failure in status");
            }
            Err(err)
        }
    }
}

/// Best effort: a leftover is removed after the next delivery.
async fn prune_artifacts(request: &ExportRequest, object: &ScheduledExport, keep: &str) {
    let pruned = async {
        let store = ArtifactStore::from_url(&request.artifact_store_url)?;
        prune_older_artifacts(
            &store,
            &request.namespace,
            &request.name,
            object.spec.file_type,
            keep,
        )
        .await
    };
    if let Err(err) = pruned.await {
        warn!(error = %err, "could not remove artifacts of earlier files");
    }
}

/// Whether this object delivered this slot's file before: its last run did, or its record of
/// delivered files holds a file of the slot (a slot run again after later runs), in whichever
/// format it was delivered. Delivering again would put other rows under a slot already delivered.
fn already_delivered(object: &ScheduledExport, slot: DateTime<Utc>) -> bool {
    let Some(status) = object.status.as_ref() else {
        return false;
    };
    let of_slot = |name: &str| parse_export_file_name(object.spec.file_type, name) == Some(slot);
    let last_run_delivered_it = status.last_run.as_ref().is_some_and(|run| {
        run.slot == Some(slot)
            && run.phase == Some(RunPhase::Succeeded)
            && run.file_name.as_deref().is_some_and(of_slot)
    });
    last_run_delivered_it
        || status
            .delivered_files
            .iter()
            .any(|file| of_slot(&file.name))
}

async fn deliver(
    client: Client,
    request: &ExportRequest,
    object: &ScheduledExport,
    slot: DateTime<Utc>,
    file_name: &str,
    started: DateTime<Utc>,
) -> Result<DeliveredRun, ExportError> {
    let secrets = match &request.secrets_dir {
        Some(root) => SecretReader::Mounted {
            root: root.clone(),
            namespace: request.namespace.clone(),
        },
        None => SecretReader::Api(Box::new(Api::namespaced(client, &request.namespace))),
    };
    let source = secrets::database_source(&secrets, object).await?;
    // A URL that cannot be used fails before anything else is touched.
    postgres::parse_url(&source.url)?;
    let sftp_spec = &object.spec.destination.sftp;
    let credentials = secrets::sftp_credentials(&secrets, &sftp_spec.secret_ref.name).await?;
    let target = SftpTarget::of(sftp_spec);
    // A key that cannot encrypt fails the run before anything is read or written.
    let recipient = match &object.spec.encryption {
        Some(encryption) => {
            let reference = &encryption.pgp.public_key_secret_ref;
            let key = secrets::pgp_public_key(&secrets, reference).await?;
            let recipient = RecipientKey::parse(&key, started).map_err(|problem| {
                ExportError::EncryptionKey {
                    secret: reference.name.clone(),
                    key: reference.key.clone(),
                    problem,
                }
            })?;
            info!(fingerprint = %recipient.fingerprint(), "encrypting to the OpenPGP key");
            Some(recipient)
        }
        None => None,
    };

    // Fail before touching the database when the store that makes recopies possible, or the
    // server itself (host key, credentials, directory), is not usable. The one SSH connection
    // of the run is opened here and serves every later step.
    let store = ArtifactStore::from_url(&request.artifact_store_url)?;
    store.check().await?;
    let timeout = request.timeout;
    let session =
        tokio::task::spawn_blocking(move || SftpSession::connect(&target, &credentials, timeout))
            .await??;
    session.set_upload_tag(ownership::upload_tag(
        object.metadata.uid.as_deref().unwrap_or_default(),
    ));
    let directory = session.directory().to_string();

    // What is under the final names already, and what an earlier attempt of this object stored,
    // looked at before the stream; decided on once this run's digest is known.
    let key = ArtifactKey {
        namespace: request.namespace.clone(),
        name: request.name.clone(),
        file_name: file_name.to_string(),
    };
    let checksum_name = object
        .spec
        .checksum_file
        .then(|| checksum_file_name(file_name));
    let names = (file_name.to_string(), checksum_name.clone());
    let (session, found) = on_session(session, move |session| {
        let data = survey(session, &names.0)?;
        let checksum = match &names.1 {
            Some(name) => survey(session, name)?,
            None => None,
        };
        Ok::<_, SftpError>((data, checksum))
    })
    .await?;
    let (found_data, found_checksum) = found?;
    let earlier = match found_data.is_some() || found_checksum.is_some() {
        true => store.digest(&key).await?.map(|artifact| Content {
            bytes: artifact.bytes,
            sha256: artifact.sha256,
        }),
        false => None,
    };

    // A full export starts from nothing; its watermark is stored as any other, so the next
    // window continues from it.
    let previous = match request.full_export {
        true => None,
        false => crate::export::window::stored_watermark(object.status.as_ref()),
    };
    let (database, connection) =
        postgres::connect_with_ca(&source.url, source.ca_cert.as_deref(), request.timeout).await?;
    let (query, header) = source_query(&database, object).await?;

    // The stream: COPY -> CSV -> encoding -> digest, and the same bytes at once to the upload
    // (its own thread) and the artifact store (its own task).
    let (chunks, fanout, consumers) = stream::fanout();
    let upload_name = file_name.to_string();
    let upload = tokio::task::spawn_blocking(move || {
        stream::upload_stream(session, &upload_name, consumers.sftp)
    });
    let storing = tokio::spawn(stream::store_stream(
        store.clone(),
        key.clone(),
        consumers.store,
    ));
    let stream_started = std::time::Instant::now();
    let produced = produce(
        database,
        query,
        previous,
        header,
        object.clone(),
        recipient,
        chunks,
        fanout,
        crate::export::window::copy_stall_timeout(request.timeout),
        Progress::on_stderr(request.progress, format!("{file_name}: exported"), None),
    )
    .await;
    connection.abort();
    let (session, uploaded) = upload.await?;
    let stored = storing.await?;
    let (produced, uploaded, stored) = match (produced, uploaded, stored) {
        (Ok(produced), Ok(uploaded), Ok(stored)) => (produced, uploaded, stored),
        (produced, uploaded, stored) => {
            return Err(stream_failure(session, produced, uploaded, stored).await);
        }
    };
    let Produced {
        window,
        digest,
        waited,
    } = produced;
    let (staged, upload_times) = uploaded;
    // Reading and writing rows (the database, formatting, encoding, hashing) is the stream's time
    // less its waits for the consumers; the upload's time splits into libssh2 (encrypting,
    // sending, acknowledgements) and waiting for the stream.
    info!(
        stream_s = secs(stream_started.elapsed()),
        reading_and_writing_rows_s = secs(stream_started.elapsed().saturating_sub(waited)),
        waiting_for_delivery_s = secs(waited),
        upload_sending_s = secs(upload_times.sending),
        upload_waiting_s = secs(upload_times.waiting),
        "where the stream's time went"
    );
    let ContentDigest { sha256, bytes } = digest.clone();
    info!(file = %file_name, rows = window.rows, bytes, "window exported");
    if let Some(full_export) = &window.full_export {
        warn!(file = %file_name, cause = %full_export, "the watermark belongs to another database; the file holds every row");
    }

    // Only now is this run's content known: decide on each name, then commit the artifact, then
    // publish (what the institution sees comes last); a failed step undoes the steps before it.
    let ours = Content {
        bytes,
        sha256: sha256.clone(),
    };
    let decided = decide_both(
        file_name,
        &ours,
        earlier.as_ref(),
        (found_data.as_ref(), found_checksum.as_ref()),
        checksum_name,
    );
    let (placement, checksum) = match decided {
        Ok(decided) => decided,
        Err((name, bytes)) => {
            stored.abort().await;
            let _ = on_session(session, move |session| session.discard(&staged)).await;
            return Err(ExportError::ForeignFile {
                file: name,
                directory,
                bytes,
            });
        }
    };
    if let Err(err) = stored.commit(&digest).await {
        let _ = on_session(session, move |session| session.discard(&staged)).await;
        return Err(err.into());
    }
    let mut sent = Progress::on_stderr(request.progress, format!("{file_name}: sent"), None);
    let (_session, published) = on_session(session, move |session| {
        publish(session, &staged, placement, checksum.as_ref())
    })
    .await?;
    if let Err(err) = published {
        if let Err(cleanup) = store.delete(&key).await {
            warn!(error = %cleanup, "could not remove the artifact of the failed delivery");
        }
        return Err(err.into());
    }
    sent.set_total(bytes);
    sent.finish(None, bytes);

    Ok(DeliveredRun {
        slot,
        job_name: request.job_name.clone(),
        started,
        finished: Utc::now(),
        file_name: file_name.to_string(),
        rows: window.rows,
        bytes,
        sha256,
        watermark: window.watermark,
        watermark_source: crate::export::window::watermark_source(&window.source),
        window_start: window.after.clone(),
        full_export: match request.full_export {
            true => Some(crate::export::window::requested_full_export_note()),
            false => window
                .full_export
                .as_ref()
                .map(crate::export::window::full_export_note),
        },
        destination: object.spec.destination.sftp.url(),
    })
}

fn secs(duration: std::time::Duration) -> f64 {
    (duration.as_secs_f64() * 1000.0).round() / 1000.0
}

/// What the producing side of the stream ends with.
struct Produced {
    window: WindowOutcome,
    digest: ContentDigest,
    /// Waiting for room in the consumers' queues.
    waited: std::time::Duration,
}

/// Runs the COPY through the CSV writer and the encoding into the fan-out, and ends the stream.
/// On any error the fan-out is dropped unended, so both consumers give their copies up.
#[allow(clippy::too_many_arguments)] // each is one input of the stream; a struct would only rename them
async fn produce(
    mut database: tokio_postgres::Client,
    query: WindowQuery,
    previous: Option<crate::adapters::postgres::Watermark>,
    header: Vec<(String, ColumnKind)>,
    object: ScheduledExport,
    recipient: Option<RecipientKey>,
    chunks: stream::ChunkWriter,
    fanout: stream::Fanout,
    stall_timeout: std::time::Duration,
    progress: Progress,
) -> Result<Produced, ExportError> {
    // The digest is of the bytes delivered, so it is taken after the encoding.
    let mut counter = HashingWriter::new(chunks);
    let (window, fanout) = {
        let encoder = FileEncoder::new(&mut counter, object.spec.compression, recipient.as_ref())?;
        let csv = CsvFileWriter::with_header(
            BufWriter::with_capacity(stream::CHUNK, encoder),
            header.iter().map(|(name, kind)| (name.as_str(), *kind)),
            &object.spec.csv,
        )?
        .with_progress(progress);
        let mut sink = stream::StreamingCsv { csv, fanout };
        let window = crate::export::window::export_window_within(
            &mut database,
            query,
            previous.as_ref(),
            &mut sink,
            stall_timeout,
        )
        .await?;
        let stream::StreamingCsv { csv, fanout } = sink;
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
async fn stream_failure(
    session: SftpSession,
    produced: Result<Produced, ExportError>,
    uploaded: Result<(StagedFile, stream::UploadTimes), SftpError>,
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

/// The placement of the data file and of its checksum file (when the spec asks for one), or the
/// name and size of the first that is another's file.
fn decide_both(
    file_name: &str,
    ours: &Content,
    earlier: Option<&Content>,
    found: (Option<&Found>, Option<&Found>),
    checksum_name: Option<String>,
) -> Result<(Placement, Option<ChecksumFile>), (String, u64)> {
    let foreign = |name: &str, found: Option<&Found>| {
        (
            name.to_string(),
            found.map(|found| found.content.bytes).unwrap_or_default(),
        )
    };
    let placement = decide(found.0.map(|found| &found.content), earlier, ours)
        .ok_or_else(|| foreign(file_name, found.0))?;
    let Some(name) = checksum_name else {
        return Ok((placement, None));
    };
    let (line, ours_line) = ownership::checksum_file_content(file_name, ours);
    let earlier_line =
        earlier.map(|artifact| ownership::checksum_file_content(file_name, artifact).1);
    let checksum_placement = decide(
        found.1.map(|found| &found.content),
        earlier_line.as_ref(),
        &ours_line,
    )
    .ok_or_else(|| foreign(&name, found.1))?;
    Ok((
        placement,
        Some(ChecksumFile {
            name,
            line,
            placement: checksum_placement,
        }),
    ))
}

/// The query of the object's rows and the file's columns: the file type's table, or the view
/// `spec.source.view` names, checked before any row is read.
async fn source_query(
    database: &tokio_postgres::Client,
    object: &ScheduledExport,
) -> Result<(WindowQuery, Vec<(String, ColumnKind)>), ExportError> {
    let file_type = object.spec.file_type;
    let Some(view) = &object.spec.source.view else {
        let header = columns::columns(file_type)
            .iter()
            .map(|column| (column.name.to_string(), column.kind))
            .collect();
        return Ok((crate::export::window::query_of(file_type), header));
    };
    let found = postgres::relation_columns(database, &crate::export::view::quote_relation(view))
        .await?
        .ok_or_else(|| ViewError::Missing { view: view.clone() })?;
    let shape = crate::export::view::shape(view, &found)?;
    let header = shape
        .columns
        .iter()
        .map(|column| (column.name.clone(), column.kind))
        .collect();
    Ok((crate::export::window::view_query(&shape), header))
}
