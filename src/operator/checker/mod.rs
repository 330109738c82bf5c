//! The delivery checker: beside the reconcile loop, a tick asks `decide::due_work` which objects
//! need a recheck or a prune, groups them by SFTP destination, and runs one round per destination
//! on a blocking thread: one connection, then each object's check (and recopy) and prune. A round
//! never runs inside a reconcile, and at most one round per destination runs at a time, so a slow
//! or unreachable server delays only its own objects.

pub mod decide;
mod round;

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kube::ResourceExt;
use kube::runtime::reflector::Store;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tracing::Instrument;

use crate::adapters::sftp::SftpTarget;
use crate::operator::context::Context;
use crate::resource::{ScheduledExport, normalize_directory};
use decide::{CheckOutcome, DueWork, PruneOutcome};

/// Objects that share a server login and directory share one connection per round.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct Destination {
    namespace: String,
    secret: String,
    target: SftpTarget,
}

impl Destination {
    fn of(object: &ScheduledExport) -> Self {
        let sftp = &object.spec.destination.sftp;
        Self {
            namespace: object.namespace().unwrap_or_default(),
            secret: sftp.secret_ref.name.clone(),
            target: SftpTarget::of(sftp),
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
                .entry(normalize_directory(&object.spec.destination.sftp.directory).to_string())
                .or_default()
                .push(object);
        }
        Self { by_directory }
    }

    /// Other objects' directories below this one's, whatever server they name: host aliases or
    /// another login to the same tree must not make their files look like ours.
    fn nested_below(&self, object: &ScheduledExport) -> Vec<String> {
        let directory = normalize_directory(&object.spec.destination.sftp.directory);
        let prefix = match directory {
            "/" => "/".to_string(),
            _ => format!("{directory}/"),
        };
        let candidates = self
            .by_directory
            .range(prefix.clone()..)
            .take_while(|(other, _)| other.starts_with(&prefix))
            .filter(|(other, _)| other.as_str() != directory)
            .map(|(other, _)| other.as_str());
        decide::nested_directories(&object.spec.destination.sftp.directory, candidates)
    }
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
    let mut ticker = tokio::time::interval(ctx.config.periods.checker_tick);
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
        let Some(work) = decide::due_work(now, object) else {
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
        });
    }
    for (destination, items) in due {
        tracing::debug!(host = %destination.target.host, port = destination.target.port,
            directory = %destination.target.directory, objects = items.len(), "delivery checks due");
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
        let span = tracing::info_span!(
            "check_round",
            namespace = %destination.namespace,
            host = %destination.target.host,
            port = destination.target.port,
            directory = %destination.target.directory,
            objects = items.len(),
        );
        rounds.spawn(
            async move {
                let _guard = guard;
                let Ok(_permit) = permits.acquire_owned().await else {
                    return;
                };
                round::run_round(&ctx, &state, destination, items, now).await;
            }
            .instrument(span),
        );
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
    }
}
