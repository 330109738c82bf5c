//! The preflight loop: beside the reconcile loop, on the same cache, it checks what each object's
//! runs need (the database, the SFTP destination, the encryption key, the Secrets) and records the
//! outcome as the `Preflight` condition, so a wrong key or password shows the day it is set.
//!
//! It scales by not checking what has not changed. Each tick lists the Secrets' metadata once per
//! namespace that holds objects (no Secret content, no request per object), fingerprints each
//! object's inputs (`decide::fingerprint`) and checks only the objects that are due
//! (`decide::due`): inputs changed since the fingerprint in `status.preflight`, the next run
//! is within the lead, or the last check failed a while ago. Checks run a few at once, each
//! bounded in time, and a finished check starts the next due one at once.

mod check;
pub mod decide;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use chrono::{DateTime, Utc};
use futures::StreamExt;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, ListParams};
use kube::runtime::events::EventType;
use kube::runtime::reflector::Store;
use kube::{Resource, ResourceExt};
use tokio::task::JoinSet;
use tracing::{Instrument, info, warn};

use crate::adapters::kubernetes::status::{StatusWriter, update_status_of};
use crate::operator::checker::decide::Failure;
use crate::operator::config::PreflightSettings;
use crate::operator::context::Context;
use crate::operator::events::publish;
use crate::operator::notify::Notice;
use crate::resource::{ConditionReason, ScheduledExport};
use decide::{Due, LastCheck, Outcome};

/// A namespace's Secrets: name to resourceVersion.
type SecretVersions = BTreeMap<String, String>;

/// Secret metadata lists in flight at once, at each tick.
const NAMESPACE_LISTS_AT_ONCE: usize = 8;

/// One object's check waiting for a free slot.
struct Candidate {
    object: Arc<ScheduledExport>,
    uid: String,
    inputs: String,
    due: Due,
}

/// Runs preflight checks until `stop` resolves; `synced` as for the delivery checker.
pub async fn run(
    ctx: Arc<Context>,
    store: Store<ScheduledExport>,
    synced: Arc<AtomicBool>,
    stop: impl std::future::Future<Output = ()>,
) {
    let Some(settings) = ctx.config.delivery.preflight else {
        stop.await;
        return;
    };
    tokio::pin!(stop);
    let mut ticker = tokio::time::interval(settings.tick);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // Checks this process made, newer than the cache may show yet.
    let mut memory: HashMap<String, LastCheck> = HashMap::new();
    let mut in_flight: HashSet<String> = HashSet::new();
    let mut tasks: HashMap<tokio::task::Id, String> = HashMap::new();
    let mut queue: VecDeque<Candidate> = VecDeque::new();
    let mut checks: JoinSet<(String, LastCheck)> = JoinSet::new();
    loop {
        tokio::select! {
            _ = ticker.tick() => {
                if synced.load(Ordering::Relaxed) {
                    queue = due_checks(&ctx, &store, &settings, &mut memory, &in_flight).await;
                }
            }
            Some(done) = checks.join_next_with_id(), if !checks.is_empty() => {
                let id = match &done {
                    Ok((id, _)) => *id,
                    Err(err) => err.id(),
                };
                if let Some(uid) = tasks.remove(&id) {
                    in_flight.remove(&uid);
                }
                match done {
                    Ok((_, (uid, last))) => {
                        memory.insert(uid, last);
                    }
                    Err(err) => warn!(error = %err, "a preflight check stopped unexpectedly"),
                }
            }
            () = &mut stop => break,
        }
        while checks.len() < settings.max_concurrent.max(1) {
            let Some(candidate) = queue.pop_front() else {
                break;
            };
            if !in_flight.insert(candidate.uid.clone()) {
                continue;
            }
            let ctx = ctx.clone();
            let span = tracing::info_span!(
                "preflight",
                namespace = %candidate.object.namespace().unwrap_or_default(),
                name = %candidate.object.name_any(),
                due = ?candidate.due,
            );
            let uid = candidate.uid.clone();
            let handle = checks.spawn(
                async move { check_and_record(&ctx, &settings, candidate).await }.instrument(span),
            );
            tasks.insert(handle.id(), uid);
        }
    }
    checks.abort_all();
}

/// The objects due a check now, in the order to serve them: changed inputs first, then the
/// nearest runs, then retries.
async fn due_checks(
    ctx: &Context,
    store: &Store<ScheduledExport>,
    settings: &PreflightSettings,
    memory: &mut HashMap<String, LastCheck>,
    in_flight: &HashSet<String>,
) -> VecDeque<Candidate> {
    let now = ctx.clock.now();
    let objects = store.state();
    let present: HashSet<String> = objects.iter().filter_map(|object| object.uid()).collect();
    memory.retain(|uid, _| present.contains(uid));
    let namespaces: BTreeSet<String> = objects
        .iter()
        .filter_map(|object| object.namespace())
        .collect();
    // A few lists at once: a fleet spread over many namespaces is listed in seconds.
    let listed: Vec<(String, Result<SecretVersions, kube::Error>)> =
        futures::stream::iter(namespaces)
            .map(|namespace| async move {
                let found = secret_versions(ctx, &namespace).await;
                (namespace, found)
            })
            .buffer_unordered(NAMESPACE_LISTS_AT_ONCE)
            .collect()
            .await;
    let mut versions: BTreeMap<String, SecretVersions> = BTreeMap::new();
    for (namespace, found) in listed {
        match found {
            Ok(found) => {
                versions.insert(namespace, found);
            }
            // Without the versions a change cannot be told from none: this namespace waits.
            Err(err) => warn!(namespace, error = %err,
                "cannot list the Secrets' metadata for the preflight (the operator needs list on secrets there)"),
        }
    }
    let mut due: Vec<(Due, Option<DateTime<Utc>>, Candidate)> = Vec::new();
    for object in objects {
        let (Some(uid), Some(namespace)) = (object.uid(), object.namespace()) else {
            continue;
        };
        let Some(versions) = versions.get(&namespace) else {
            continue;
        };
        if in_flight.contains(&uid) {
            continue;
        }
        let inputs = decide::fingerprint(&object, versions);
        let last = LastCheck::latest(
            LastCheck::of_status(object.status.as_ref()),
            memory.get(&uid).cloned(),
        );
        if let Some(reason) = decide::due(now, &object, &inputs, last.as_ref(), settings) {
            let next = object
                .status
                .as_ref()
                .and_then(|status| status.next_run_time);
            due.push((
                reason,
                next,
                Candidate {
                    object,
                    uid,
                    inputs,
                    due: reason,
                },
            ));
        }
    }
    // Changed first, then the nearest run (objects without one last).
    due.sort_by_key(|(reason, next, _)| (*reason, next.is_none(), *next));
    if !due.is_empty() {
        tracing::debug!(due = due.len(), "preflight checks due");
    }
    due.into_iter().map(|(_, _, candidate)| candidate).collect()
}

/// Name to resourceVersion of every Secret in `namespace`: one metadata-only list, served from
/// the API server's cache.
async fn secret_versions(ctx: &Context, namespace: &str) -> Result<SecretVersions, kube::Error> {
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), namespace);
    let listed = secrets
        .list_metadata(&ListParams::default().match_any())
        .await?;
    Ok(listed
        .items
        .into_iter()
        .filter_map(|secret| Some((secret.metadata.name?, secret.metadata.resource_version?)))
        .collect())
}

/// Runs one check within its bound, records it, and tells of a changed outcome.
async fn check_and_record(
    ctx: &Context,
    settings: &PreflightSettings,
    candidate: Candidate,
) -> (String, LastCheck) {
    let object = &candidate.object;
    let started = ctx.clock.now();
    let outcome = match tokio::time::timeout(
        settings.check_timeout,
        check::run_check(ctx, object, settings, started),
    )
    .await
    {
        Ok(outcome) => outcome,
        Err(_) => Outcome::Failed(vec![Failure::new(
            ConditionReason::Timeout,
            format!(
                "the check did not finish within {:?}: the database or the SFTP server answers too \
                 slowly; checked again in {:?}",
                settings.check_timeout, settings.retry_failed
            ),
        )]),
    };
    let checked_at = ctx.clock.now();
    ctx.metrics.record_preflight(outcome.passed());
    record(ctx, &candidate, &outcome, checked_at).await;
    let last = LastCheck {
        inputs: candidate.inputs,
        checked_at,
        passed: outcome.passed(),
    };
    (candidate.uid, last)
}

/// Writes the outcome into the status of the incarnation that was checked; on a change of
/// outcome, announces it.
async fn record(ctx: &Context, candidate: &Candidate, outcome: &Outcome, now: DateTime<Utc>) {
    let object = &candidate.object;
    let namespace = object.namespace().unwrap_or_default();
    let name = object.name_any();
    let api: Api<ScheduledExport> = Api::namespaced(ctx.client.clone(), &namespace);
    let (_, checked_for) = decide::key_instant(object, now);
    let generation = object.meta().generation;
    // The outcome before this check, as the status read for the write says.
    let previous = std::sync::Mutex::new(None);
    let written = update_status_of(
        &api,
        StatusWriter::Preflight,
        &name,
        &candidate.uid,
        |current| {
            *previous
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner()) =
                Some(decide::previous_outcome(current));
            decide::after_check(
                current,
                outcome,
                &candidate.inputs,
                checked_for,
                generation,
                now,
            )
        },
    )
    .await;
    if let Err(err) = written {
        warn!(namespace, name, error = %err, "could not record a preflight check");
        return;
    }
    let previous = previous
        .into_inner()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .flatten();
    let previous = previous
        .as_ref()
        .map(|(passed, reason)| (*passed, reason.as_str()));
    announce_preflight_change(ctx, object, previous, outcome).await;
}

/// Tells people when the outcome changed (the first outcome, passed after failing, failed for
/// another reason); a repeat tells nothing. The one place for that: the Event, the log line and
/// the webhook alert. The failing gauge follows the status at scrape time (`Metrics::encode`), so it needs no
/// call here and is right after a leader change.
pub async fn announce_preflight_change(
    ctx: &Context,
    object: &ScheduledExport,
    previous: Option<(bool, &str)>,
    outcome: &Outcome,
) {
    let Some((warning, reason, note)) = decide::change_event(previous, outcome) else {
        return;
    };
    info!(outcome = %outcome.reason(), "preflight outcome changed");
    let type_ = if warning {
        EventType::Warning
    } else {
        EventType::Normal
    };
    publish(ctx, object, type_, reason, &note).await;
    // The webhook hears of a failure, and of passing again after one; a new object's first pass
    // is no news.
    let notice = match outcome.passed() {
        false => Some(Notice::PreflightFailed {
            reason: outcome.reason().to_string(),
            message: outcome.message(),
        }),
        true if previous.is_some_and(|(passed, _)| !passed) => Some(Notice::PreflightPassed),
        true => None,
    };
    if let Some(notice) = notice {
        ctx.notifier.notify(object, notice);
    }
}
