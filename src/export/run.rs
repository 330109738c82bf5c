//! One export run (what a Job executes): read the object and its Secrets, then stream the window
//! since the watermark from PostgreSQL to the SFTP server and the artifact store at once (see
//! `export::stream`), and only then advance the watermark in status.
//!
//! What makes a failure lose nothing: the store and the server are checked before the database
//! is read; the file appears under its final name only complete and size-checked, after its
//! artifact was committed; a failed step undoes the steps before it (so no file stays without the
//! artifact a recopy needs); and the watermark moves only after both copies are in place.

use std::path::PathBuf;
use std::time::Duration;

use chrono::{DateTime, SubsecRound, Utc};
use kube::Client;
use kube::api::Api;
use tracing::{info, warn};

use crate::adapters::artifacts::{ArtifactKey, ArtifactStore};
use crate::adapters::kubernetes::secrets::{self, SecretReader};
use crate::adapters::kubernetes::status::{
    StatusWriter, check_incarnation, update_status, update_status_of,
};
use crate::adapters::postgres::{self, WindowQuery};
use crate::adapters::sftp::{SftpSession, SftpTarget};
use crate::digest::ContentDigest;
use crate::export::artifacts::prune_older_artifacts;
use crate::export::columns::{self, ColumnKind};
use crate::export::deliver::{place_copies, survey_names};
use crate::export::encrypt::RecipientKey;
pub use crate::export::error::ExportError;
use crate::export::file_name::{FileFormat, export_file_name, parse_export_file_name};
use crate::export::stream::{self, Produced, produce, stream_failure};
use crate::export::view::ViewError;
use crate::progress::Progress;
use crate::resource::{RunPhase, ScheduledExport, ScheduledExportStatus};
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
    let RunInputs {
        source,
        credentials,
        target,
        recipient,
    } = read_inputs(client, request, object, started).await?;

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

    let key = ArtifactKey {
        namespace: request.namespace.clone(),
        name: request.name.clone(),
        file_name: file_name.to_string(),
    };
    let (session, surveyed) =
        survey_names(session, &store, &key, object.spec.checksum_file).await?;

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

    let mut sent = Progress::on_stderr(request.progress, format!("{file_name}: sent"), None);
    place_copies(session, staged, stored, &store, &key, surveyed, &digest).await?;
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

/// What a run reads before it touches anything: the source, the SFTP destination and its
/// credentials, and the OpenPGP key, checked at the run's instant.
struct RunInputs {
    source: secrets::DatabaseSource,
    credentials: crate::adapters::sftp::SftpCredentials,
    target: SftpTarget,
    recipient: Option<RecipientKey>,
}

async fn read_inputs(
    client: Client,
    request: &ExportRequest,
    object: &ScheduledExport,
    started: DateTime<Utc>,
) -> Result<RunInputs, ExportError> {
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

    Ok(RunInputs {
        source,
        credentials,
        target,
        recipient,
    })
}

fn secs(duration: std::time::Duration) -> f64 {
    (duration.as_secs_f64() * 1000.0).round() / 1000.0
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
