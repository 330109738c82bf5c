//! Alerts to an institution's webhook (`spec.notify.webhook`): the reconcile loop and the checker
//! hand a [`Notice`] to the [`Notifier`], which queues it and returns at once; a background task
//! sends it, retried with backoff. So an alert never fails or delays a run, a check or a
//! reconcile, and the export Job never needs the webhook's Secret.
//!
//! The queue is bounded: when a receiver stays down while notices keep coming, the oldest is
//! dropped (logged and counted), since the newest says the most about the current state.

pub mod body;
pub mod deliver;
pub mod sign;
pub mod transitions;

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use kube::ResourceExt;
use tokio::sync::Semaphore;
use tracing::{info, warn};

pub use body::{Notice, NoticeKind, Subject};
pub use deliver::RetryPolicy;
use deliver::{Outcome, Pending};

use crate::clock::Clock;
use crate::operator::metrics::Metrics;
use crate::resource::ScheduledExport;

/// Alerts waiting to be sent, at most.
pub const QUEUE_CAPACITY: usize = 256;
/// Alerts being sent at once: a slow receiver holds a slot for its retries, not the whole queue.
const CONCURRENT_DELIVERIES: usize = 4;

/// The handle the controller and the checker send notices through. Cheap to clone.
#[derive(Clone)]
pub struct Notifier {
    inner: Arc<Inner>,
}

struct Inner {
    client: kube::Client,
    clock: Arc<dyn Clock>,
    metrics: Arc<Metrics>,
    policy: RetryPolicy,
    /// The HTTP client, or why it could not be built (then every alert fails with that cause).
    http: Result<reqwest::Client, String>,
    queue: Mutex<VecDeque<Pending>>,
    wake: tokio::sync::Notify,
    worker_started: AtomicBool,
    /// Alerts queued or being sent.
    backlog: AtomicUsize,
}

impl Notifier {
    pub fn new(
        client: kube::Client,
        clock: Arc<dyn Clock>,
        metrics: Arc<Metrics>,
        policy: RetryPolicy,
    ) -> Self {
        let http = reqwest::Client::builder()
            // A redirected POST is a URL to fix, not one to follow.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|err| format!("cannot build the HTTP client: {err}"));
        Self {
            inner: Arc::new(Inner {
                client,
                clock,
                metrics,
                policy,
                http,
                queue: Mutex::new(VecDeque::new()),
                wake: tokio::sync::Notify::new(),
                worker_started: AtomicBool::new(false),
                backlog: AtomicUsize::new(0),
            }),
        }
    }

    /// Queues `notice` about `object` for its webhook, if it has one. Never blocks; call it from
    /// within the Tokio runtime.
    pub fn notify(&self, object: &ScheduledExport, notice: Notice) {
        let Some(notify) = &object.spec.notify else {
            return;
        };
        let pending = Pending {
            subject: Subject {
                namespace: object.namespace().unwrap_or_default(),
                name: object.name_any(),
                file_type: object.spec.file_type.as_str().to_string(),
            },
            secret: notify.webhook.secret_ref.name.clone(),
            notice,
            time: self.inner.clock.now(),
        };
        self.inner.backlog.fetch_add(1, Ordering::AcqRel);
        let dropped = {
            let mut queue = self
                .inner
                .queue
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            queue.push_back(pending);
            (queue.len() > QUEUE_CAPACITY)
                .then(|| queue.pop_front())
                .flatten()
        };
        if let Some(dropped) = dropped {
            self.inner.backlog.fetch_sub(1, Ordering::AcqRel);
            self.inner.metrics.record_webhook_delivery("dropped");
            warn!(namespace = %dropped.subject.namespace, name = %dropped.subject.name,
                event = ?dropped.notice.kind(), capacity = QUEUE_CAPACITY,
                "the alert queue is full; dropped its oldest alert");
        }
        self.start_worker();
        self.inner.wake.notify_one();
    }

    /// Alerts queued or being sent: 0 once every alert handed over so far has its outcome.
    pub fn backlog(&self) -> usize {
        self.inner.backlog.load(Ordering::Acquire)
    }

    fn start_worker(&self) {
        if self.inner.worker_started.swap(true, Ordering::AcqRel) {
            return;
        }
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn(run_worker(self.inner.clone()));
            }
            Err(_) => {
                self.inner.worker_started.store(false, Ordering::Release);
                warn!("alerts queued outside the async runtime wait for the next alert");
            }
        }
    }
}

/// Takes alerts off the queue for as long as the process runs.
async fn run_worker(inner: Arc<Inner>) {
    let slots = Arc::new(Semaphore::new(CONCURRENT_DELIVERIES));
    loop {
        // A slot first, so a full set of slow deliveries leaves the newest alerts in the queue
        // (where the bound applies) rather than in tasks.
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        let next = inner
            .queue
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .pop_front();
        let Some(pending) = next else {
            drop(slot);
            inner.wake.notified().await;
            continue;
        };
        let inner = inner.clone();
        tokio::spawn(async move {
            let _slot = slot;
            send(&inner, &pending).await;
            inner.backlog.fetch_sub(1, Ordering::AcqRel);
        });
    }
}

async fn send(inner: &Inner, pending: &Pending) {
    let outcome = match &inner.http {
        Ok(http) => deliver::deliver(&inner.client, http, &inner.policy, pending).await,
        Err(cause) => Outcome::Failed(cause.clone()),
    };
    inner
        .metrics
        .record_webhook_delivery(outcome.metric_label());
    let (namespace, name, event) = (
        &pending.subject.namespace,
        &pending.subject.name,
        pending.notice.kind(),
    );
    match &outcome {
        Outcome::Delivered { attempts } => {
            info!(%namespace, %name, ?event, attempts, "alert delivered");
        }
        Outcome::Failed(cause) => {
            warn!(%namespace, %name, ?event, cause, "alert not delivered");
        }
        Outcome::NoTarget(err) => {
            warn!(%namespace, %name, ?event, error = %err, "alert not sent");
        }
    }
}
