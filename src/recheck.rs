//! The delivery checker: beside the reconcile loop, a tick asks `delivery::due_work` which objects
//! need a recheck or a prune, groups them by SFTP destination, and runs one round per destination
//! on a blocking thread: one connection, then each object's check (and recopy) and prune. A round
//! never runs inside a reconcile, and at most one round per destination runs at a time, so a slow
//! or unreachable server delays only its own objects.

use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use k8s_openapi::api::core::v1::Secret;
use kube::api::Api;
use kube::runtime::events::EventType;
use kube::runtime::reflector::Store;
use kube::{Resource, ResourceExt};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tracing::{info, warn};

use crate::artifacts::{ArtifactKey, ArtifactStore, S3Options};
use crate::controller::{Context, publish};
use crate::delivery::{self, CheckOutcome, DueWork, PruneOutcome, check_result};
use crate::files::parse_export_file_name;
use crate::resource::ScheduledExport;
use crate::sftp::{SftpCredentials, SftpError, SftpSession, SftpTarget};
use crate::status_update::update_status;

/// How the checker reaches servers and the artifact store (flags, Helm values).
#[derive(Debug, Clone)]
pub struct DeliverySettings {
    /// S3 settings for an `s3://` artifact store (the controller's environment in production).
    pub s3: S3Options,
    /// Bound on each SFTP step (connect, handshake, every request).
    pub sftp_timeout: Duration,
    /// Where a recopy keeps the artifact while it uploads it.
    pub spool_dir: PathBuf,
    /// Rounds (destinations) checked at the same time.
    pub max_concurrent_rounds: usize,
}

impl Default for DeliverySettings {
    fn default() -> Self {
        Self {
            s3: S3Options::default(),
            sftp_timeout: Duration::from_secs(30),
            spool_dir: std::env::temp_dir(),
            max_concurrent_rounds: 8,
        }
    }
}

/// Objects that share a server login and directory share one connection per round.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct Destination {
    namespace: String,
    secret: String,
    host: String,
    port: u16,
    username: String,
    directory: String,
}

impl Destination {
    fn of(object: &ScheduledExport) -> Self {
        let sftp = &object.spec.destination.sftp;
        Self {
            namespace: object.namespace().unwrap_or_default(),
            secret: sftp.secret_ref.name.clone(),
            host: sftp.host.clone(),
            port: sftp.port,
            username: sftp.username.clone(),
            directory: sftp.directory.clone(),
        }
    }

    fn target(&self) -> SftpTarget {
        SftpTarget {
            host: self.host.clone(),
            port: self.port,
            username: self.username.clone(),
            directory: self.directory.clone(),
        }
    }
}

/// One object's share of a round.
#[derive(Clone)]
struct Item {
    object: Arc<ScheduledExport>,
    work: DueWork,
    /// Directories of other objects below this one's, which its retention must not enter.
    excluded: Vec<String>,
    /// Another object delivering the same file type into the same directory: their files cannot
    /// be told apart, so neither prunes.
    shared_with: Option<String>,
}

/// What a round found for one object.
#[derive(Debug, Default)]
struct ItemResult {
    check: Option<CheckOutcome>,
    prune: Option<PruneOutcome>,
}

/// What the checker remembers between ticks.
#[derive(Default)]
struct CheckerState {
    /// Destinations with a round in progress.
    in_flight: Mutex<HashSet<Destination>>,
    /// For each object (by UID) whose status a round changed: the resourceVersion the round
    /// started from. The cache can lag behind a status write for a moment; while it still holds
    /// that version the object is skipped, so no round acts on a status from before the last one
    /// (a file just seen as moved is never recopied because the next round read an older status).
    written: Mutex<std::collections::HashMap<String, (String, std::time::Instant)>>,
}

/// The cache lags a write by milliseconds; an object held back longer than this is let through,
/// so a watch that stalls can delay checks but never stop them.
const CACHE_LAG_LIMIT: Duration = Duration::from_secs(30);

impl CheckerState {
    /// Whether the cached object is newer than the one the last round that changed it started from.
    fn cache_caught_up(&self, object: &ScheduledExport) -> bool {
        let uid = object.uid().unwrap_or_default();
        let mut written = self
            .written
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let Some((base, since)) = written.get(&uid) else {
            return true;
        };
        let caught_up =
            object.resource_version().as_ref() != Some(base) || since.elapsed() > CACHE_LAG_LIMIT;
        if caught_up {
            written.remove(&uid);
        }
        caught_up
    }

    fn remember(&self, object: &ScheduledExport) {
        if let (Some(uid), Some(version)) = (object.uid(), object.resource_version()) {
            self.written
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .insert(uid, (version, std::time::Instant::now()));
        }
    }
}

/// Where every object delivers, indexed once per tick so that finding an object's neighbours
/// costs a lookup, not a pass over all objects (a restart makes every object due at once).
struct Neighbours<'a> {
    /// Normalized directory (no trailing `/`; the root is "") to the objects delivering there.
    by_directory: BTreeMap<String, Vec<&'a ScheduledExport>>,
}

impl<'a> Neighbours<'a> {
    fn of(objects: &'a [Arc<ScheduledExport>]) -> Self {
        let mut by_directory: BTreeMap<String, Vec<&'a ScheduledExport>> = BTreeMap::new();
        for object in objects {
            by_directory
                .entry(normalized(&object.spec.destination.sftp.directory))
                .or_default()
                .push(object);
        }
        Self { by_directory }
    }

    /// Other objects' directories below this one's, whatever server they name: host aliases or
    /// another login to the same tree must not make their files look like ours.
    fn nested_below(&self, object: &ScheduledExport) -> Vec<String> {
        let directory = normalized(&object.spec.destination.sftp.directory);
        let prefix = format!("{directory}/");
        let candidates = self
            .by_directory
            .range(prefix.clone()..)
            .take_while(|(other, _)| other.starts_with(&prefix))
            .map(|(other, _)| other.as_str());
        delivery::nested_directories(&object.spec.destination.sftp.directory, candidates)
    }

    /// Another object delivering the same file type into the same directory of the same server:
    /// the files of the two cannot be told apart, so neither prunes.
    fn sharing_files_with(&self, object: &ScheduledExport) -> Option<String> {
        let sftp = &object.spec.destination.sftp;
        self.by_directory
            .get(&normalized(&sftp.directory))?
            .iter()
            .find(|other| {
                let theirs = &other.spec.destination.sftp;
                other.uid() != object.uid()
                    && other.spec.file_type == object.spec.file_type
                    && theirs.host.eq_ignore_ascii_case(&sftp.host)
                    && theirs.port == sftp.port
            })
            .map(|other| {
                format!(
                    "{}/{} delivers {} files into the same directory, so they cannot be told apart",
                    other.namespace().unwrap_or_default(),
                    other.name_any(),
                    object.spec.file_type
                )
            })
    }
}

fn normalized(directory: &str) -> String {
    directory.trim_end_matches('/').to_string()
}

/// Releases a destination when its round ends, however it ends.
struct InFlight {
    state: Arc<CheckerState>,
    destination: Destination,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.state
            .in_flight
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .remove(&self.destination);
    }
}

/// Runs check rounds until `stop` resolves, then waits briefly for rounds in progress.
///
/// `synced` turns true once the controller has reconciled (so `store` holds every object). It
/// stands in for `Store::wait_until_ready`, whose signal wakes only its last waiter, and the
/// controller itself waits on it.
pub async fn run(
    ctx: Arc<Context>,
    store: Store<ScheduledExport>,
    synced: Arc<std::sync::atomic::AtomicBool>,
    stop: impl std::future::Future<Output = ()>,
) {
    tokio::pin!(stop);
    // Due times are whole minutes apart; a manual (test) clock can jump at any moment.
    let period = if ctx.clock.is_manual() {
        Duration::from_millis(250)
    } else {
        Duration::from_secs(10)
    };
    let mut ticker = tokio::time::interval(period);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let state = Arc::new(CheckerState::default());
    let permits = Arc::new(Semaphore::new(
        ctx.config.delivery.max_concurrent_rounds.max(1),
    ));
    let mut rounds = JoinSet::new();
    loop {
        tokio::select! {
            _ = ticker.tick() => {
                if !synced.load(std::sync::atomic::Ordering::Relaxed) {
                    continue;
                }
                start_due_rounds(&ctx, &store, &state, &permits, &mut rounds);
                while rounds.try_join_next().is_some() {}
            }
            () = &mut stop => break,
        }
    }
    if tokio::time::timeout(Duration::from_secs(30), async {
        while rounds.join_next().await.is_some() {}
    })
    .await
    .is_err()
    {
        rounds.abort_all();
    }
}

fn start_due_rounds(
    ctx: &Arc<Context>,
    store: &Store<ScheduledExport>,
    state: &Arc<CheckerState>,
    permits: &Arc<Semaphore>,
    rounds: &mut JoinSet<()>,
) {
    let now = ctx.clock.now();
    let objects = store.state();
    let neighbours = Neighbours::of(&objects);
    let mut due: BTreeMap<Destination, Vec<Item>> = BTreeMap::new();
    for object in &objects {
        let Some(work) = delivery::due_work(now, object) else {
            continue;
        };
        if !state.cache_caught_up(object) {
            continue;
        }
        let destination = Destination::of(object);
        due.entry(destination).or_default().push(Item {
            object: object.clone(),
            work,
            excluded: neighbours.nested_below(object),
            shared_with: neighbours.sharing_files_with(object),
        });
    }
    for (destination, items) in due {
        tracing::debug!(host = %destination.host, port = destination.port,
            directory = %destination.directory, objects = items.len(), "delivery checks due");
        let newly_started = state
            .in_flight
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .insert(destination.clone());
        if !newly_started {
            continue;
        }
        let guard = InFlight {
            state: state.clone(),
            destination: destination.clone(),
        };
        let ctx = ctx.clone();
        let permits = permits.clone();
        let state = state.clone();
        rounds.spawn(async move {
            let _guard = guard;
            let Ok(_permit) = permits.acquire_owned().await else {
                return;
            };
            run_round(&ctx, &state, destination, items, now).await;
        });
    }
}

async fn run_round(
    ctx: &Context,
    state: &CheckerState,
    destination: Destination,
    items: Vec<Item>,
    now: DateTime<Utc>,
) {
    tracing::debug!(host = %destination.host, port = destination.port, "check round started");
    let results = match credentials(ctx, &destination).await {
        Ok(credentials) => {
            let settings = ctx.config.delivery.clone();
            let store_url = ctx.config.job.artifact_store_url.clone();
            let work = items.clone();
            let target = destination.target();
            let handle = tokio::runtime::Handle::current();
            let connections = ctx.metrics.sftp_connections.clone();
            tokio::task::spawn_blocking(move || {
                connections.inc();
                blocking_round(
                    &handle,
                    &target,
                    &credentials,
                    &settings,
                    &store_url,
                    &work,
                    now,
                )
            })
            .await
            .unwrap_or_else(|err| {
                let cause = format!("the check round stopped unexpectedly: {err}");
                unreachable_results(&items, &cause)
            })
        }
        Err(cause) => unreachable_results(&items, &cause),
    };
    for (item, result) in items.iter().zip(results) {
        if record(ctx, item, &result, now).await {
            state.remember(&item.object);
        }
    }
}

fn unreachable_results(items: &[Item], cause: &str) -> Vec<ItemResult> {
    items
        .iter()
        .map(|item| ItemResult {
            check: item
                .work
                .recheck
                .as_ref()
                .map(|_| CheckOutcome::Unreachable(cause.to_string())),
            prune: item
                .work
                .prune
                .then(|| PruneOutcome::Unreachable(cause.to_string())),
        })
        .collect()
}

/// The SFTP credentials of a destination; the error names the Secret and the key, never a value.
async fn credentials(ctx: &Context, destination: &Destination) -> Result<SftpCredentials, String> {
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), &destination.namespace);
    let secret = secrets
        .get_opt(&destination.secret)
        .await
        .map_err(|err| format!("cannot read Secret {}: {err}", destination.secret))?
        .ok_or_else(|| {
            format!(
                "Secret {} (spec.destination.sftp.secretRef) does not exist",
                destination.secret
            )
        })?;
    let data = secret
        .data
        .unwrap_or_default()
        .into_iter()
        .map(|(key, value)| (key, value.0))
        .collect();
    SftpCredentials::from_secret_data(&destination.secret, &data).map_err(|err| err.to_string())
}

/// One connection, then every object's check and prune, in order.
fn blocking_round(
    handle: &tokio::runtime::Handle,
    target: &SftpTarget,
    credentials: &SftpCredentials,
    settings: &DeliverySettings,
    store_url: &str,
    work: &[Item],
    now: DateTime<Utc>,
) -> Vec<ItemResult> {
    let session = match SftpSession::connect(target, credentials, settings.sftp_timeout) {
        Ok(session) => session,
        Err(err) => return unreachable_results(work, &err.to_string()),
    };
    // Listed at most once per round, and only when some object prunes.
    let mut listing = None;
    work.iter()
        .map(|item| {
            let check =
                item.work.recheck.as_ref().map(|file| {
                    check_file(handle, &session, settings, store_url, &item.object, file)
                });
            let prune = item.work.prune.then(|| match &item.shared_with {
                Some(reason) => PruneOutcome::Refused(reason.clone()),
                None => {
                    let files = listing.get_or_insert_with(|| session.list_recursive());
                    prune_files(&session, files, &item.object, &item.excluded, now)
                }
            });
            ItemResult { check, prune }
        })
        .collect()
}

fn check_file(
    handle: &tokio::runtime::Handle,
    session: &SftpSession,
    settings: &DeliverySettings,
    store_url: &str,
    object: &ScheduledExport,
    file: &str,
) -> CheckOutcome {
    match session.locate(file) {
        Ok(Some(found)) => CheckOutcome::Found {
            relative: found.relative,
        },
        Ok(None) => recopy(handle, session, settings, store_url, object, file),
        Err(err) => CheckOutcome::Unreachable(err.to_string()),
    }
}

/// Copies the artifact of `file` back through the temporary-name-then-rename upload, after
/// checking that the store returned the bytes that were delivered (sha256 of `lastRun`).
fn recopy(
    handle: &tokio::runtime::Handle,
    session: &SftpSession,
    settings: &DeliverySettings,
    store_url: &str,
    object: &ScheduledExport,
    file: &str,
) -> CheckOutcome {
    let Some(sha256) = object
        .status
        .as_ref()
        .and_then(|status| status.last_run.as_ref())
        .filter(|run| run.file_name.as_deref() == Some(file))
        .and_then(|run| run.sha256.clone())
    else {
        return CheckOutcome::RecopyFailed("the delivered file's sha256 is not recorded".into());
    };
    let store = match ArtifactStore::from_url_with(store_url, &settings.s3) {
        Ok(store) => store,
        Err(err) => return CheckOutcome::RecopyFailed(err.to_string()),
    };
    let spool = match tempfile::tempdir_in(&settings.spool_dir) {
        Ok(spool) => spool,
        Err(err) => {
            return CheckOutcome::RecopyFailed(format!(
                "cannot create a spool directory in {}: {err}",
                settings.spool_dir.display()
            ));
        }
    };
    let local = spool.path().join(file);
    let key = ArtifactKey::new(
        object.namespace().unwrap_or_default(),
        object.name_any(),
        file,
    );
    if let Err(err) = handle.block_on(store.get_to_file(&key, &local, &sha256)) {
        return CheckOutcome::RecopyFailed(err.to_string());
    }
    match session.upload(&local, file) {
        Ok(_) => CheckOutcome::Recopied,
        // Put back by someone between the check and the upload: it is there.
        Err(SftpError::AlreadyExists { .. }) => CheckOutcome::Found {
            relative: file.to_string(),
        },
        Err(err) if err.is_transient() => CheckOutcome::Unreachable(err.to_string()),
        Err(err) => CheckOutcome::RecopyFailed(err.to_string()),
    }
}

fn prune_files(
    session: &SftpSession,
    listing: &Result<Vec<crate::sftp::RemoteFile>, SftpError>,
    object: &ScheduledExport,
    excluded: &[String],
    now: DateTime<Utc>,
) -> PruneOutcome {
    let files = match listing {
        Ok(files) => files,
        Err(err) => return PruneOutcome::Unreachable(err.to_string()),
    };
    let mut deleted = Vec::new();
    let mut failed = Vec::new();
    for file in delivery::files_to_prune(
        files,
        object.spec.file_type,
        object.spec.retention_days,
        now,
        excluded,
    ) {
        match session.remove(&file) {
            Ok(()) => deleted.push(file.relative),
            Err(err) => failed.push(format!("{} ({err})", file.relative)),
        }
    }
    PruneOutcome::Pruned { deleted, failed }
}

/// Writes one object's outcome to its status, with Events and metrics; true when the status
/// changed.
async fn record(ctx: &Context, item: &Item, result: &ItemResult, now: DateTime<Utc>) -> bool {
    let object = &item.object;
    let namespace = object.namespace().unwrap_or_default();
    let name = object.name_any();
    let generation = object.meta().generation;
    let retention_days = object.spec.retention_days;
    let file = item.work.recheck.clone().unwrap_or_default();
    let api: Api<ScheduledExport> = Api::namespaced(ctx.client.clone(), &namespace);
    let check_applied = std::sync::atomic::AtomicBool::new(false);
    let written = update_status(&api, &name, |current| {
        let mut status = current.clone();
        if let Some(check) = &result.check {
            let checked = delivery::after_check(&status, &file, check, generation, now);
            check_applied.store(checked.is_some(), std::sync::atomic::Ordering::Relaxed);
            status = checked.unwrap_or(status);
        }
        if let Some(prune) = &result.prune {
            status = delivery::after_prune(&status, prune, retention_days, now);
        }
        status
    })
    .await;
    let changed = match written {
        Ok(changed) => changed,
        Err(err) => {
            warn!(namespace, name, error = %err, "could not record a delivery check");
            return false;
        }
    };

    let was_unreachable = object
        .status
        .as_ref()
        .and_then(|status| status.delivery.as_ref())
        .and_then(|delivery| delivery.last_check_result.as_deref())
        == Some(check_result::UNREACHABLE);
    // A result for a file that is no longer the delivered one (a new run delivered meanwhile) was
    // dropped; it says nothing about the current file.
    let check = result
        .check
        .as_ref()
        .filter(|_| check_applied.load(std::sync::atomic::Ordering::Relaxed));
    match check {
        Some(CheckOutcome::Found { relative }) => {
            let result = if relative.contains('/') {
                check_result::MOVED
            } else {
                check_result::PRESENT
            };
            ctx.metrics.record_check(result);
        }
        Some(CheckOutcome::Recopied) => {
            ctx.metrics.record_check(check_result::RECOPIED);
            ctx.metrics.recopies.inc();
            info!(namespace, name, file, "recopied a missing file");
            let note = format!(
                "{file} was gone from {}; copied it again from the artifact store (sha256 verified)",
                object.spec.destination.sftp.directory
            );
            publish(ctx, object, EventType::Normal, "Recopied", &note).await;
        }
        Some(CheckOutcome::Unreachable(cause)) => {
            ctx.metrics.record_check(check_result::UNREACHABLE);
            if !was_unreachable {
                let note = format!("cannot check {file}: {cause}");
                publish(ctx, object, EventType::Warning, "ServerUnreachable", &note).await;
            }
        }
        Some(CheckOutcome::RecopyFailed(cause)) => {
            ctx.metrics.record_check(check_result::MISSING);
            let note = format!("{file} is gone and could not be copied again: {cause}");
            publish(ctx, object, EventType::Warning, "RecopyFailed", &note).await;
        }
        None => {}
    }
    match &result.prune {
        Some(PruneOutcome::Pruned { deleted, failed }) => {
            ctx.metrics.files_pruned.inc_by(deleted.len() as u64);
            if !deleted.is_empty() {
                let note = format!(
                    "deleted {} file(s) older than {retention_days} days: {}",
                    deleted.len(),
                    delivery::summarize(deleted)
                );
                publish(ctx, object, EventType::Normal, "Pruned", &note).await;
            }
            if !failed.is_empty() {
                let note = format!("could not delete {}", delivery::summarize(failed));
                publish(ctx, object, EventType::Warning, "PruneFailed", &note).await;
            }
            prune_artifacts(ctx, object).await;
        }
        Some(PruneOutcome::Refused(cause)) => {
            let note = format!("nothing deleted: {cause}");
            publish(ctx, object, EventType::Warning, "PruneRefused", &note).await;
        }
        Some(PruneOutcome::Unreachable(cause)) if result.check.is_none() => {
            let note = format!("nothing deleted: {cause}");
            publish(ctx, object, EventType::Warning, "PruneFailed", &note).await;
        }
        _ => {}
    }
    changed
}

/// Artifacts of files older than the delivered one are no longer needed (the export removes them
/// too; this catches what a crash left behind). Newer ones may belong to a run in progress.
async fn prune_artifacts(ctx: &Context, object: &ScheduledExport) {
    let file_type = object.spec.file_type;
    let Some(kept_slot) = object
        .status
        .as_ref()
        .and_then(|status| status.delivery.as_ref())
        .and_then(|delivery| delivery.file.as_deref())
        .and_then(|file| parse_export_file_name(file_type, file))
    else {
        return;
    };
    let namespace = object.namespace().unwrap_or_default();
    let name = object.name_any();
    let pruned = async {
        let store = ArtifactStore::from_url_with(
            &ctx.config.job.artifact_store_url,
            &ctx.config.delivery.s3,
        )?;
        for key in store.list(&namespace, &name).await? {
            if parse_export_file_name(file_type, &key.file_name)
                .is_some_and(|slot| slot < kept_slot)
            {
                store.delete(&key).await?;
            }
        }
        Ok::<(), crate::artifacts::ArtifactError>(())
    };
    if let Err(err) = pruned.await {
        warn!(namespace, name, error = %err, "could not remove artifacts no longer needed");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn object(name: &str, file_type: &str, host: &str, directory: &str) -> Arc<ScheduledExport> {
        Arc::new(
            serde_json::from_value(serde_json::json!({
                "apiVersion": "exports.crm.dev/v1alpha1",
                "kind": "ScheduledExport",
                "metadata": {"name": name, "namespace": "univ", "uid": format!("uid-{name}")},
                "spec": {
                    "fileType": file_type,
                    "time": "07:00",
                    "source": {"secretRef": {"name": "db"}},
                    "destination": {"sftp": {"host": host, "username": "u",
                        "directory": directory, "secretRef": {"name": "sftp"}}}
                }
            }))
            .unwrap(),
        )
    }

    #[test]
    fn neighbours_are_found_by_directory_whatever_the_server() {
        let objects = vec![
            object("a", "interactions", "sftp.example.edu", "/exports"),
            object(
                "nested",
                "interactions",
                "SFTP.EXAMPLE.EDU",
                "/exports/univ-b/",
            ),
            object("deeper", "proposals", "10.0.0.5", "/exports/univ-b/archive"),
            object("sibling", "interactions", "sftp.example.edu", "/exportsx"),
            object("twin", "interactions", "SFTP.example.edu", "/exports/"),
            object("other-type", "proposals", "sftp.example.edu", "/exports"),
        ];
        let neighbours = Neighbours::of(&objects);
        assert_eq!(
            neighbours.nested_below(&objects[0]),
            vec!["univ-b".to_string(), "univ-b/archive".to_string()]
        );
        assert_eq!(
            neighbours.nested_below(&objects[1]),
            vec!["archive".to_string()]
        );
        assert!(neighbours.nested_below(&objects[3]).is_empty());

        let shared = neighbours.sharing_files_with(&objects[0]).expect("twin");
        assert!(shared.contains("univ/twin"), "{shared}");
        assert_eq!(
            neighbours.sharing_files_with(&objects[5]),
            None,
            "another file type in the same directory is told apart by name"
        );
        assert_eq!(neighbours.sharing_files_with(&objects[1]), None);
    }
}
