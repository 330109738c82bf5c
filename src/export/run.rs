//! One export run (what a Job executes): read the object and its Secrets, export the window since
//! the watermark into a spool file, then keep it in the artifact store and deliver it over SFTP
//! (under a temporary name, then the final one) at the same time, and only then advance the
//! watermark in status.
//!
//! What makes a failure lose nothing: the store and the server are checked before the database
//! is read; the file appears under its final name only complete; a run whose artifact or delivery
//! failed undoes the other half (so no file stays without the artifact a recopy needs); and the
//! watermark moves only after both succeeded.

use std::io::BufWriter;
use std::path::PathBuf;
use std::time::Duration;

use chrono::{DateTime, SubsecRound, Utc};
use kube::Client;
use kube::api::Api;
use tracing::{info, warn};

use crate::adapters::artifacts::{ArtifactError, ArtifactKey, ArtifactStore};
use crate::adapters::kubernetes::secrets::{self, SecretError, SecretReader};
use crate::adapters::kubernetes::status::{
    StatusError, StatusWriter, check_incarnation, update_status, update_status_of,
};
use crate::adapters::postgres::WindowQuery;
use crate::adapters::postgres::{self, SourceError};
use crate::adapters::sftp::{SftpCredentials, SftpError, SftpSession, SftpTarget};
use crate::digest::{ContentDigest, HashingWriter};
use crate::export::artifacts::prune_older_artifacts;
use crate::export::columns::{self, ColumnKind};
use crate::export::csv::CsvFileWriter;
use crate::export::encode::FileEncoder;
use crate::export::encrypt::{EncryptionKeyError, RecipientKey};
use crate::export::file_name::{
    FileFormat, checksum_file_name, export_file_name, parse_export_file_name,
};
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
    /// Where the file is spooled before delivery.
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
    // server itself (host key, credentials, directory), is not usable.
    let store = ArtifactStore::from_url(&request.artifact_store_url)?;
    store.check().await?;
    let timeout = request.timeout;
    let preflight = (target.clone(), credentials.clone());
    tokio::task::spawn_blocking(move || {
        SftpSession::connect(&preflight.0, &preflight.1, timeout).map(drop)
    })
    .await??;

    // A full export starts from nothing; its watermark is stored as any other, so the next
    // window continues from it.
    let previous = match request.full_export {
        true => None,
        false => crate::export::window::stored_watermark(object.status.as_ref()),
    };
    let (mut database, connection) =
        postgres::connect_with_ca(&source.url, source.ca_cert.as_deref(), request.timeout).await?;
    let spool = tempfile::Builder::new()
        .prefix(".scheduled-export-")
        .tempfile_in(&request.spool_dir)?;
    // The digest is of the bytes delivered, so it is taken after the encoding.
    let mut counter = HashingWriter::new(spool.reopen()?);
    let (query, header) = source_query(&database, object).await?;
    let encoder = FileEncoder::new(&mut counter, object.spec.compression, recipient.as_ref())?;
    let mut csv = CsvFileWriter::with_header(
        BufWriter::with_capacity(1 << 20, encoder),
        header.iter().map(|(name, kind)| (name.as_str(), *kind)),
        &object.spec.csv,
    )?
    .with_progress(Progress::on_stderr(
        request.progress,
        format!("{file_name}: exported"),
        None,
    ));
    let window = crate::export::window::export_window_within(
        &mut database,
        query,
        previous.as_ref(),
        &mut csv,
        crate::export::window::copy_stall_timeout(request.timeout),
    )
    .await;
    drop(database);
    connection.abort();
    let window = window?;
    csv.finish()?
        .into_inner()
        .map_err(|err| err.into_error())?
        .finish()?;
    let (_, ContentDigest { sha256, bytes }) = counter.finish()?;
    info!(file = %file_name, rows = window.rows, bytes, "window exported");
    if let Some(full_export) = &window.full_export {
        warn!(file = %file_name, cause = %full_export, "the watermark belongs to another database; the file holds every row");
    }

    let key = ArtifactKey {
        namespace: request.namespace.clone(),
        name: request.name.clone(),
        file_name: file_name.to_string(),
    };
    // A file already under the final name is decided on before the artifact is written (the
    // artifact of an earlier attempt is part of the proof).
    let content = Content {
        bytes,
        sha256: sha256.clone(),
    };
    let placement = placement(&target, &credentials, timeout, &store, &key, &content).await?;
    let checksum = match object.spec.checksum_file {
        true => {
            Some(checksum_placement(&target, &credentials, timeout, &store, &key, &content).await?)
        }
        false => None,
    };
    // The two copies go out at once; the run counts only if both arrive, and a half-done pair is
    // undone so a failed run leaves neither a file under the final name nor an orphan artifact.
    let local = spool.path().to_path_buf();
    let remote_name = file_name.to_string();
    let (upload_target, upload_credentials) = (target.clone(), credentials.clone());
    let tag = ownership::upload_tag(object.metadata.uid.as_deref().unwrap_or_default());
    let progress = Progress::on_stderr(request.progress, format!("{file_name}: sent"), Some(bytes));
    let upload = tokio::task::spawn_blocking(move || {
        deliver_file(
            &upload_target,
            &upload_credentials,
            timeout,
            &local,
            &remote_name,
            placement,
            checksum,
            tag,
            progress,
        )
    });
    let (stored, delivered) = tokio::join!(store.put_file(&key, spool.path()), upload);
    drop(spool);
    let delivered = delivered
        .map_err(ExportError::from)
        .and_then(|result| result.map_err(ExportError::from));
    match (stored, delivered) {
        (Ok(_), Ok(_)) => {}
        (Ok(_), Err(err)) => {
            if let Err(cleanup) = store.delete(&key).await {
                warn!(error = %cleanup, "could not remove the artifact of the failed delivery");
            }
            return Err(err);
        }
        (Err(err), delivered) => {
            if delivered.is_ok() {
                let name = file_name.to_string();
                let with_checksum = object.spec.checksum_file;
                let removed = tokio::task::spawn_blocking(move || {
                    remove_delivered(&target, &credentials, timeout, &name, with_checksum)
                })
                .await;
                if !matches!(removed, Ok(Ok(()))) {
                    warn!(file = %file_name, "could not remove the file of a run whose artifact was not stored");
                }
            }
            return Err(err.into());
        }
    }

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

/// What to do about the final name on the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Placement {
    /// Nothing is there: upload.
    New,
    /// This run's very file is there (an earlier attempt delivered the same bytes): keep it.
    Adopt,
    /// An earlier attempt of this object left its file there without recording it (its status
    /// write was lost): the artifact it stored under this object's key holds the same bytes. That
    /// window started at the same watermark, so this file holds all of its rows and more.
    ReplaceEarlierAttempt,
}

/// Decides, from what the file under the final name holds, whether it is provably this object's
/// own: the same size and sha256 as this run's file, or as the artifact an earlier attempt of this
/// object stored under its key. Anything else is another's file and the run fails, leaving it be.
async fn placement(
    target: &SftpTarget,
    credentials: &SftpCredentials,
    timeout: Duration,
    store: &ArtifactStore,
    key: &ArtifactKey,
    content: &Content,
) -> Result<Placement, ExportError> {
    let (name, placed) = (key.file_name.as_str(), |artifact| artifact);
    placement_of(
        target,
        credentials,
        timeout,
        store,
        key,
        name,
        content,
        placed,
    )
    .await
}

/// The checksum file to publish beside the data file, and what to do about its name: decided like
/// [`placement`], its content being the line for this run's file or for an earlier attempt's.
async fn checksum_placement(
    target: &SftpTarget,
    credentials: &SftpCredentials,
    timeout: Duration,
    store: &ArtifactStore,
    key: &ArtifactKey,
    content: &Content,
) -> Result<ChecksumFile, ExportError> {
    let name = checksum_file_name(&key.file_name);
    let (line, ours) = ownership::checksum_file_content(&key.file_name, content);
    let placed = |artifact| ownership::checksum_file_content(&key.file_name, &artifact).1;
    let placement = placement_of(
        target,
        credentials,
        timeout,
        store,
        key,
        &name,
        &ours,
        placed,
    )
    .await?;
    Ok(ChecksumFile {
        name,
        line,
        placement,
    })
}

/// The placement of `name`, which this run would fill with `ours`, and an earlier attempt with
/// `placed` of the artifact it stored under `key`.
#[allow(clippy::too_many_arguments)] // each is one fact of the decision; a struct would only rename them
async fn placement_of(
    target: &SftpTarget,
    credentials: &SftpCredentials,
    timeout: Duration,
    store: &ArtifactStore,
    key: &ArtifactKey,
    name: &str,
    ours: &Content,
    placed: impl FnOnce(Content) -> Content,
) -> Result<Placement, ExportError> {
    let Some(existing) = existing_content(target, credentials, timeout, name).await? else {
        return Ok(Placement::New);
    };
    if ours.matches(existing.bytes, &existing.sha256) {
        info!(file = %name, "the file is already on the server with this run's content; keeping it");
        return Ok(Placement::Adopt);
    }
    let earlier = store.digest(key).await?.map(|artifact| {
        placed(Content {
            bytes: artifact.bytes,
            sha256: artifact.sha256,
        })
    });
    if earlier.is_some_and(|earlier| earlier.matches(existing.bytes, &existing.sha256)) {
        return Ok(Placement::ReplaceEarlierAttempt);
    }
    Err(foreign_file(target, name, existing.bytes))
}

/// The size and sha256 of the file of this name directly in the target directory, if any.
async fn existing_content(
    target: &SftpTarget,
    credentials: &SftpCredentials,
    timeout: Duration,
    name: &str,
) -> Result<Option<ContentDigest>, ExportError> {
    let (target, credentials, name) = (target.clone(), credentials.clone(), name.to_string());
    Ok(tokio::task::spawn_blocking(move || {
        let session = SftpSession::connect(&target, &credentials, timeout)?;
        match session.stat_file(&name)? {
            Some(found) => Ok::<_, SftpError>(Some(session.content_digest(&found)?)),
            None => Ok(None),
        }
    })
    .await??)
}

fn foreign_file(target: &SftpTarget, name: &str, bytes: u64) -> ExportError {
    ExportError::ForeignFile {
        file: name.to_string(),
        directory: target.directory.clone(),
        bytes,
    }
}

/// The `NAME.sha256` file published after the data file.
#[derive(Debug, Clone, PartialEq, Eq)]
struct ChecksumFile {
    name: String,
    line: String,
    placement: Placement,
}

/// Uploads under a temporary name and renames (`upload` verifies the size on the server), unless
/// `placement` says the file is there already. A file under the final name is removed first only
/// for [`Placement::ReplaceEarlierAttempt`] (what `placement` found there moments before); in
/// every other case a file there makes the upload fail, so a file is never overwritten. The
/// checksum file follows the same rules once the data file is in place; when it cannot be
/// published, the data file this call put there is taken back, so the run leaves neither.
#[allow(clippy::too_many_arguments)] // each is one fact of this delivery; a struct would only rename them
fn deliver_file(
    target: &SftpTarget,
    credentials: &SftpCredentials,
    timeout: Duration,
    local: &std::path::Path,
    file_name: &str,
    placement: Placement,
    checksum: Option<ChecksumFile>,
    upload_tag: u32,
    mut progress: Progress,
) -> Result<u64, SftpError> {
    let session = SftpSession::connect(target, credentials, timeout)?;
    session.set_upload_tag(upload_tag);
    let size = std::fs::metadata(local)
        .map_err(|source| SftpError::LocalFile {
            path: local.to_path_buf(),
            source,
        })?
        .len();
    place(&session, file_name, placement, |session| {
        let sent = session.upload_observed(local, file_name, &mut |sent| {
            progress.update(None, sent);
        })?;
        progress.finish(None, sent);
        Ok(sent)
    })?;
    if let Some(checksum) = checksum {
        let published = place(&session, &checksum.name, checksum.placement, |session| {
            session.upload_from(
                &mut checksum.line.as_bytes(),
                checksum.line.len() as u64,
                &checksum.name,
            )
        });
        if let Err(err) = published {
            if placement != Placement::Adopt
                && let Ok(Some(delivered)) = session.stat_file(file_name)
                && session.remove(&delivered).is_err()
            {
                warn!(file = %file_name, "could not remove the file whose checksum file failed");
            }
            return Err(err);
        }
    }
    Ok(size)
}

/// Puts one file under its final name as `placement` decided.
fn place(
    session: &SftpSession,
    name: &str,
    placement: Placement,
    upload: impl FnOnce(&SftpSession) -> Result<u64, SftpError>,
) -> Result<(), SftpError> {
    match placement {
        Placement::Adopt => return Ok(()),
        Placement::ReplaceEarlierAttempt => {
            if let Some(existing) = session.stat_file(name)? {
                warn!(file = %name, "replacing the file of an earlier attempt of this object at this slot");
                session.remove(&existing)?;
            }
        }
        Placement::New => {}
    }
    upload(session).map(drop)
}

/// Takes back a delivered file (only when the run as a whole failed).
fn remove_delivered(
    target: &SftpTarget,
    credentials: &SftpCredentials,
    timeout: Duration,
    file_name: &str,
    with_checksum: bool,
) -> Result<(), SftpError> {
    let session = SftpSession::connect(target, credentials, timeout)?;
    // The checksum file first (only when this run published one): while the data file is still
    // there, nothing vouches for it.
    let checksum = with_checksum.then(|| checksum_file_name(file_name));
    for name in checksum.into_iter().chain([file_name.to_string()]) {
        if let Some(found) = session.stat_file(&name)? {
            session.remove(&found)?;
        }
    }
    Ok(())
}
