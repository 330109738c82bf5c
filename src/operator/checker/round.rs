//! One check round against one SFTP destination: one connection, then each due object's check
//! (and recopy) and prune, on a blocking thread; then each outcome recorded in status, Events and
//! metrics. The decisions themselves are pure, in `decide`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use chrono::{DateTime, Utc};
use k8s_openapi::api::core::v1::Secret;
use kube::api::Api;
use kube::runtime::events::EventType;
use kube::{Resource, ResourceExt};
use tracing::{Instrument, info, warn};

use super::decide::{self, CheckOutcome, Failure, ListedFile, PruneOutcome};
use super::{CheckerState, Destination, Item, ItemResult};
use crate::adapters::artifacts::{ArtifactKey, ArtifactStore, S3Options};
use crate::adapters::kubernetes::secrets::{self, SecretError, SecretReader};
use crate::adapters::kubernetes::status::{StatusWriter, update_status_of};
use crate::adapters::sftp::{
    Expected, Listing, RemoteFile, SftpCredentials, SftpError, SftpSession, SftpTarget,
};
use crate::export::artifacts::prune_older_artifacts;
use crate::export::file_name::checksum_file_name;
use crate::operator::config::DeliverySettings;
use crate::operator::context::Context;
use crate::operator::events::publish;
use crate::operator::notify::transitions;
use crate::resource::{
    CheckResult, ConditionReason, EventReason, ScheduledExport, ScheduledExportStatus,
};
use crate::status::ownership;

impl ListedFile for RemoteFile {
    fn relative(&self) -> &str {
        &self.relative
    }
    fn modified(&self) -> Option<i64> {
        self.modified
    }
    fn size(&self) -> u64 {
        self.size
    }
}

impl From<&SftpError> for Failure {
    fn from(err: &SftpError) -> Self {
        Failure::new(err.reason(), err.to_string())
    }
}

impl From<&SecretError> for Failure {
    fn from(err: &SecretError) -> Self {
        Failure::new(err.reason(), err.to_string())
    }
}

pub(super) async fn run_round(
    ctx: &Context,
    state: &CheckerState,
    destination: Destination,
    items: Vec<Item>,
    now: DateTime<Utc>,
) {
    tracing::debug!(host = %destination.target.host, port = destination.target.port, "check round started");
    // Whatever each call does, the round ends here: a server that answers every call just in
    // time must not hold its destination, nor keep later rounds from starting.
    let deadline = ctx.config.delivery.round_deadline;
    let results = match credentials(ctx, &destination).await {
        Ok(credentials) => {
            let settings = ctx.config.delivery.clone();
            let store = store_options(ctx, &destination.namespace)
                .await
                .map_err(|err| Failure::from(&err));
            let store_url = ctx.config.job.artifact_store_url.clone();
            let work = items.clone();
            let target = destination.target.clone();
            let handle = tokio::runtime::Handle::current();
            let connections = ctx.metrics.sftp_connections.clone();
            let stopped = Arc::new(AtomicBool::new(false));
            let stop = stopped.clone();
            let round = tokio::task::spawn_blocking(move || {
                connections.inc();
                let env = RoundEnv {
                    handle: &handle,
                    settings: &settings,
                    store_url: &store_url,
                    s3: &store,
                    stopped: &stop,
                };
                blocking_round(&env, &target, &credentials, &work, now)
            });
            match tokio::time::timeout(deadline, round).await {
                Ok(joined) => joined.unwrap_or_else(|err| {
                    let cause = Failure::new(
                        ConditionReason::SessionError,
                        format!("the check round stopped unexpectedly: {err}"),
                    );
                    unreachable_results(&items, &cause)
                }),
                Err(_) => {
                    // The blocking thread ends at its current call's timeout and does nothing more.
                    stopped.store(true, Ordering::Relaxed);
                    warn!(host = %destination.target.host, port = destination.target.port,
                        ?deadline, "check round stopped at its deadline");
                    let cause = Failure::new(
                        ConditionReason::Timeout,
                        format!(
                            "the server did not let the check round finish within {deadline:?}; \
                             stopped it, checking again next interval"
                        ),
                    );
                    unreachable_results(&items, &cause)
                }
            }
        }
        Err(err) => unreachable_results(&items, &Failure::from(&err)),
    };
    for (item, result) in items.iter().zip(results) {
        if record(ctx, item, &result, now).await {
            state.remember(&item.object);
        }
    }
}

fn unreachable_results(items: &[Item], cause: &Failure) -> Vec<ItemResult> {
    items
        .iter()
        .map(|item| ItemResult {
            check: item
                .work
                .recheck
                .as_ref()
                .map(|_| CheckOutcome::Unreachable(cause.clone())),
            prune: item
                .work
                .prune
                .then(|| PruneOutcome::Unreachable(cause.clone())),
        })
        .collect()
}

/// The SFTP credentials of a destination; the error names the Secret and the key, never a value.
async fn credentials(
    ctx: &Context,
    destination: &Destination,
) -> Result<SftpCredentials, SecretError> {
    let secrets = SecretReader::Api(Box::new(Api::namespaced(
        ctx.client.clone(),
        &destination.namespace,
    )));
    secrets::sftp_credentials(&secrets, &destination.secret).await
}

/// The S3 settings the objects of `namespace` use: with an `s3://` store and a credentials Secret
/// configured, that namespace's own Secret, as its export Jobs get it (no tenant's recopy runs
/// with another's or the operator's keys); otherwise the operator's environment.
async fn store_options(ctx: &Context, namespace: &str) -> Result<S3Options, SecretError> {
    let defaults = &ctx.config.delivery.s3;
    match &ctx.config.job.artifact_store_secret {
        Some(secret) if ctx.config.job.artifact_store_url.starts_with("s3://") => {
            let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), namespace);
            let secrets = SecretReader::Api(Box::new(secrets));
            secrets::artifact_store_options(&secrets, secret, defaults).await
        }
        _ => Ok(defaults.clone()),
    }
}

/// What every step of a blocking round needs besides the session.
struct RoundEnv<'a> {
    handle: &'a tokio::runtime::Handle,
    settings: &'a DeliverySettings,
    store_url: &'a str,
    /// S3 settings of the artifact store for this destination's namespace, or why there are none.
    s3: &'a Result<S3Options, Failure>,
    /// Set once the round ran past its deadline: from then on nothing more is changed.
    stopped: &'a AtomicBool,
}

impl RoundEnv<'_> {
    fn stopped(&self) -> bool {
        self.stopped.load(Ordering::Relaxed)
    }
}

/// One connection, then every object's check and prune, in order, until the round runs out of
/// time (what is left is reported unreachable, and nothing more is changed).
fn blocking_round(
    env: &RoundEnv<'_>,
    target: &SftpTarget,
    credentials: &SftpCredentials,
    work: &[Item],
    now: DateTime<Utc>,
) -> Vec<ItemResult> {
    let session = match SftpSession::connect(target, credentials, env.settings.sftp_timeout) {
        Ok(session) => session,
        Err(err) => return unreachable_results(work, &Failure::from(&err)),
    };
    let out_of_time = Failure::new(
        ConditionReason::Timeout,
        "the check round ran out of time before this object's turn",
    );
    // Listed at most once per round, and only when some object prunes.
    let mut listing = None;
    work.iter()
        .map(|item| {
            if env.stopped() {
                return unreachable_results(std::slice::from_ref(item), &out_of_time)
                    .pop()
                    .unwrap_or_default();
            }
            session.set_upload_tag(ownership::upload_tag(
                item.object.uid().as_deref().unwrap_or_default(),
            ));
            let check = item
                .work
                .recheck
                .as_ref()
                .map(|file| check_file(env, &session, &item.object, file));
            let prune = item.work.prune.then(|| {
                let files = listing
                    .get_or_insert_with(|| session.list_matching(&decide::prune_may_concern));
                prune_files(env, &session, files, &item.object, &item.excluded, now)
            });
            ItemResult { check, prune }
        })
        .collect()
}

fn check_file(
    env: &RoundEnv<'_>,
    session: &SftpSession,
    object: &ScheduledExport,
    file: &str,
) -> CheckOutcome {
    let delivered = object
        .status
        .as_ref()
        .and_then(|status| ownership::delivered_content(status, file));
    // A same-named file in a sub-directory is the delivered one only with its size and sha256.
    let expected = delivered.as_ref().map(|content| Expected {
        bytes: content.bytes,
        sha256: &content.sha256,
    });
    match session.locate(file, expected) {
        // In place, its checksum file must be too; once moved, the customer has both.
        Ok(Some(found)) if found.relative == file => {
            match ensure_checksum_file(session, object, file, delivered.as_ref()) {
                Ok(false) => CheckOutcome::Found {
                    relative: found.relative,
                },
                Ok(true) => CheckOutcome::Recopied,
                Err(failure) => CheckOutcome::RecopyFailed(failure),
            }
        }
        Ok(Some(found)) => CheckOutcome::Found {
            relative: found.relative,
        },
        // A round past its deadline changes nothing more on the server.
        Ok(None) if env.stopped() => CheckOutcome::Unreachable(Failure::new(
            ConditionReason::Timeout,
            "the check round ran out of time before the recopy",
        )),
        Ok(None) => recopy(env, session, object, file, delivered),
        Err(err) => CheckOutcome::Unreachable(Failure::from(&err)),
    }
}

/// Streams the artifact of `file` from the store straight into the temporary-name-then-rename
/// upload (nothing is spooled locally), checking on the way that the store returned the bytes that
/// were delivered (their sha256, as recorded): a mismatch fails the upload before the rename.
fn recopy(
    env: &RoundEnv<'_>,
    session: &SftpSession,
    object: &ScheduledExport,
    file: &str,
    delivered: Option<ownership::Content>,
) -> CheckOutcome {
    let Some(delivered) = delivered else {
        return CheckOutcome::RecopyFailed(Failure::new(
            ConditionReason::RecopyFailed,
            "the delivered file's size and sha256 are not recorded",
        ));
    };
    let s3 = match env.s3 {
        Ok(s3) => s3,
        Err(failure) => return CheckOutcome::RecopyFailed(failure.clone()),
    };
    let store = match ArtifactStore::from_url_with(env.store_url, s3) {
        Ok(store) => store,
        Err(err) => return CheckOutcome::RecopyFailed(artifact_failure(&err)),
    };
    let key = ArtifactKey::new(
        object.namespace().unwrap_or_default(),
        object.name_any(),
        file,
    );
    let mut artifact =
        match env
            .handle
            .block_on(store.open_verified(&key, &delivered.sha256, env.handle.clone()))
        {
            Ok(artifact) => artifact,
            Err(err) => return CheckOutcome::RecopyFailed(artifact_failure(&err)),
        };
    if artifact.size() != delivered.bytes {
        return CheckOutcome::RecopyFailed(Failure::new(
            ConditionReason::ArtifactStoreFailed,
            format!(
                "the artifact {key} in {store} holds {} bytes, the delivered file {}",
                artifact.size(),
                delivered.bytes
            ),
        ));
    }
    match session.upload_from(&mut artifact, delivered.bytes, file) {
        Ok(_) => match ensure_checksum_file(session, object, file, Some(&delivered)) {
            Ok(_) => CheckOutcome::Recopied,
            Err(failure) => CheckOutcome::RecopyFailed(failure),
        },
        // Put back by someone between the check and the upload: it is there.
        Err(SftpError::AlreadyExists { .. }) => CheckOutcome::Found {
            relative: file.to_string(),
        },
        Err(err) if err.is_transient() => CheckOutcome::Unreachable(Failure::from(&err)),
        Err(err) => CheckOutcome::RecopyFailed(Failure::from(&err)),
    }
}

/// Publishes the checksum file beside `file` when the spec asks for one and it is missing; true
/// when it was published. Its line comes from the record, so a checksum file always vouches for
/// the bytes that were delivered. A file under its name is left as it is, whatever it holds.
fn ensure_checksum_file(
    session: &SftpSession,
    object: &ScheduledExport,
    file: &str,
    delivered: Option<&ownership::Content>,
) -> Result<bool, Failure> {
    if !object.spec.checksum_file {
        return Ok(false);
    }
    let Some(delivered) = delivered else {
        return Err(Failure::new(
            ConditionReason::RecopyFailed,
            "the delivered file's sha256 is not recorded, so its checksum file cannot be written",
        ));
    };
    let name = checksum_file_name(file);
    match session.stat_file(&name) {
        Ok(Some(_)) => return Ok(false),
        Ok(None) => {}
        Err(err) => return Err(Failure::from(&err)),
    }
    let (line, _) = ownership::checksum_file_content(file, delivered);
    match session.upload_from(&mut line.as_bytes(), line.len() as u64, &name) {
        Ok(_) => Ok(true),
        Err(SftpError::AlreadyExists { .. }) => Ok(false),
        Err(err) => Err(Failure::from(&err)),
    }
}

/// Deletes what `decide::files_to_prune` allows, each recorded file only once its sha256 proved
/// it the one this object delivered.
fn prune_files(
    env: &RoundEnv<'_>,
    session: &SftpSession,
    listing: &Result<Listing, SftpError>,
    object: &ScheduledExport,
    excluded: &[String],
    now: DateTime<Utc>,
) -> PruneOutcome {
    let listing = match listing {
        Ok(listing) => listing,
        Err(err) => return PruneOutcome::Unreachable(Failure::from(err)),
    };
    let plan = decide::files_to_prune(&listing.files, object, now, excluded);
    let mut deleted = Vec::new();
    let mut failed = Vec::new();
    let mut not_ours = plan.not_ours;
    let mut forget = Vec::new();
    for (file, content) in plan.verify {
        if env.stopped() {
            break;
        }
        let name = file
            .relative
            .rsplit('/')
            .next()
            .unwrap_or_default()
            .to_string();
        match session.content_digest(&file) {
            Ok(digest) if content.matches(digest.bytes, &digest.sha256) => {
                match session.remove(&file) {
                    Ok(()) => {
                        deleted.push(file.relative);
                        forget.push(name);
                    }
                    Err(err) => failed.push(format!("{} ({err})", file.relative)),
                }
            }
            Ok(_) => not_ours.push(file.relative),
            Err(err) => failed.push(format!("{} ({err})", file.relative)),
        }
    }
    for file in plan.dead_uploads {
        if env.stopped() {
            break;
        }
        match session.remove(&file) {
            Ok(()) => deleted.push(file.relative),
            Err(err) => failed.push(format!("{} ({err})", file.relative)),
        }
    }
    // A file no longer anywhere can leave the record, but only when the whole directory was seen.
    if listing.incomplete.is_none() {
        forget.extend(decide::record_entries_gone(&listing.files, object, now));
    }
    PruneOutcome::Pruned {
        deleted,
        failed,
        not_ours,
        forget,
    }
}

/// Writes one object's outcome to its status, with Events and metrics; true when the status
/// changed.
async fn record(ctx: &Context, item: &Item, result: &ItemResult, now: DateTime<Utc>) -> bool {
    let span = tracing::info_span!("record_check", name = %item.object.name_any());
    record_in_span(ctx, item, result, now)
        .instrument(span)
        .await
}

async fn record_in_span(
    ctx: &Context,
    item: &Item,
    result: &ItemResult,
    now: DateTime<Utc>,
) -> bool {
    let object = &item.object;
    let namespace = object.namespace().unwrap_or_default();
    let name = object.name_any();
    let generation = object.meta().generation;
    let retention_days = object.spec.retention_days;
    let file = item.work.recheck.clone().unwrap_or_default();
    let api: Api<ScheduledExport> = Api::namespaced(ctx.client.clone(), &namespace);
    let check_applied = std::sync::atomic::AtomicBool::new(false);
    let update = |current: &ScheduledExportStatus| {
        // A file delivered by a version that kept no record goes on record while its size and
        // sha256 are still known, so that retention can later prove it ours.
        let mut status = ownership::record_previous(current);
        if let Some(check) = &result.check {
            let checked = decide::after_check(&status, &file, check, generation, now);
            check_applied.store(checked.is_some(), std::sync::atomic::Ordering::Relaxed);
            status = checked.unwrap_or(status);
        }
        if let Some(prune) = &result.prune {
            status = decide::after_prune(&status, prune, retention_days, now);
        }
        status
    };
    // Only into the incarnation that was checked: an object deleted and created again under the
    // same name while the round ran is not this file's owner.
    // (An object read from the API server always has a uid.)
    let uid = object.uid().unwrap_or_default();
    let written = update_status_of(&api, StatusWriter::Checker, &name, &uid, update).await;
    let changed = match written {
        Ok(changed) => changed,
        Err(err) => {
            warn!(namespace, name, error = %err, "could not record a delivery check");
            return false;
        }
    };

    let previous_result = object
        .status
        .as_ref()
        .and_then(|status| status.delivery.as_ref())
        .and_then(|delivery| delivery.last_check_result);
    let was_unreachable = previous_result == Some(CheckResult::Unreachable);
    // A result for a file that is no longer the delivered one (a new run delivered meanwhile) was
    // dropped; it says nothing about the current file.
    let check = result
        .check
        .as_ref()
        .filter(|_| check_applied.load(std::sync::atomic::Ordering::Relaxed));
    if let Some(check) = check {
        let directory = &object.spec.destination.sftp.directory;
        for notice in transitions::check_notices(previous_result, check, &file, directory) {
            ctx.notifier.notify(object, notice);
        }
    }
    match check {
        Some(CheckOutcome::Found { relative }) => {
            let result = if relative.contains('/') {
                CheckResult::Moved
            } else {
                CheckResult::Present
            };
            ctx.metrics.record_check(result);
        }
        Some(CheckOutcome::Recopied) => {
            ctx.metrics.record_check(CheckResult::Recopied);
            ctx.metrics.recopies.inc();
            info!(namespace, name, file, "recopied a missing file");
            let note = format!(
                "{file} was gone from {}; copied it again from the artifact store (sha256 verified)",
                object.spec.destination.sftp.directory
            );
            publish(ctx, object, EventType::Normal, EventReason::Recopied, &note).await;
        }
        Some(CheckOutcome::Unreachable(cause)) => {
            ctx.metrics.record_check(CheckResult::Unreachable);
            if !was_unreachable {
                let note = format!("cannot check {file}: {cause}");
                publish(
                    ctx,
                    object,
                    EventType::Warning,
                    EventReason::ServerUnreachable,
                    &note,
                )
                .await;
            }
        }
        Some(CheckOutcome::RecopyFailed(cause)) => {
            ctx.metrics.record_check(CheckResult::Missing);
            let note = format!("{file} is gone and could not be copied again: {cause}");
            publish(
                ctx,
                object,
                EventType::Warning,
                EventReason::RecopyFailed,
                &note,
            )
            .await;
        }
        None => {}
    }
    match &result.prune {
        Some(PruneOutcome::Pruned {
            deleted,
            failed,
            not_ours,
            ..
        }) => {
            ctx.metrics.files_pruned.inc_by(deleted.len() as u64);
            if !deleted.is_empty() {
                let note = format!(
                    "deleted {} file(s) older than {retention_days} days: {}",
                    deleted.len(),
                    decide::summarize(deleted)
                );
                publish(ctx, object, EventType::Normal, EventReason::Pruned, &note).await;
            }
            if !failed.is_empty() {
                let note = format!("could not delete {}", decide::summarize(failed));
                publish(
                    ctx,
                    object,
                    EventType::Warning,
                    EventReason::PruneFailed,
                    &note,
                )
                .await;
            }
            if !not_ours.is_empty() {
                let note = format!(
                    "left alone {} old file(s) of this object's name pattern that its delivery record \
                     does not prove it delivered: {}",
                    not_ours.len(),
                    decide::summarize(not_ours)
                );
                publish(
                    ctx,
                    object,
                    EventType::Warning,
                    EventReason::PruneRefused,
                    &note,
                )
                .await;
            }
            prune_artifacts(ctx, object).await;
        }
        Some(PruneOutcome::Unreachable(cause)) if result.check.is_none() => {
            let note = format!("nothing deleted: {cause}");
            publish(
                ctx,
                object,
                EventType::Warning,
                EventReason::PruneFailed,
                &note,
            )
            .await;
        }
        _ => {}
    }
    changed
}

/// Artifacts of files older than the delivered one are no longer needed (the export removes them
/// too; this catches what a crash left behind). Newer ones may belong to a run in progress.
async fn prune_artifacts(ctx: &Context, object: &ScheduledExport) {
    let Some(kept) = object
        .status
        .as_ref()
        .and_then(|status| status.delivery.as_ref())
        .and_then(|delivery| delivery.file.clone())
    else {
        return;
    };
    let namespace = object.namespace().unwrap_or_default();
    let name = object.name_any();
    let pruned = async {
        let s3 = store_options(ctx, &namespace)
            .await
            .map_err(|err| err.to_string())?;
        let store = ArtifactStore::from_url_with(&ctx.config.job.artifact_store_url, &s3)
            .map_err(|err| err.to_string())?;
        prune_older_artifacts(&store, &namespace, &name, object.spec.file_type, &kept)
            .await
            .map_err(|err| err.to_string())
    };
    if let Err(err) = pruned.await {
        warn!(namespace, name, error = %err, "could not remove artifacts no longer needed");
    }
}

fn artifact_failure(err: &crate::adapters::artifacts::ArtifactError) -> Failure {
    Failure::new(ConditionReason::ArtifactStoreFailed, err.to_string())
}
