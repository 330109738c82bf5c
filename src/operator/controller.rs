//! The reconcile loop: a kube-runtime `Controller` over ScheduledExports that owns their Jobs.
//! Each reconcile reads the clock once, asks `plan` what to do, and carries it out: create the
//! due Job, prune Job history, publish Events, and write the controller's part of the status.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures::{FutureExt, Stream, StreamExt, TryStreamExt};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Secret;
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, GetParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::EventType;
use kube::runtime::{PredicateConfig, WatchStreamExt, predicates, reflector, watcher};
use tracing::{Instrument, info, warn};

use crate::adapters::kubernetes::client;
use crate::adapters::kubernetes::secrets::{
    PGP_KEY_SECRET_FIELD, SFTP_SECRET_FIELD, SOURCE_SECRET_FIELD, WEBHOOK_SECRET_FIELD,
};
use crate::adapters::kubernetes::status::{StatusError, StatusWriter, update_status_from};
use crate::operator::checker;
use crate::operator::context::Context;
use crate::operator::events::publish;
use crate::operator::job::{self, JobState, RunKind};
use crate::operator::leader::{LeaderElection, LeaderError};
use crate::operator::notify::{Notice, transitions};
use crate::operator::owned_jobs;
use crate::operator::plan::{self, RunToStart};
use crate::resource::{ConditionReason, ConditionType, EventReason, ScheduledExport};
use crate::status;

/// Annotations the controller puts on a Job once its `Started` and outcome Events are published.
const STARTED_ANNOTATION: &str = "exports.crm.dev/reported-started";
const REPORTED_ANNOTATION: &str = "exports.crm.dev/reported";
/// Field manager of what the controller applies.
const FIELD_MANAGER: &str = "scheduled-exports-controller";
/// Finished Jobs kept per object, like a CronJob's history limits.
const KEEP_SUCCEEDED_JOBS: usize = 3;
const KEEP_FAILED_JOBS: usize = 1;
/// Reconciles running at once.
const RECONCILE_CONCURRENCY: u16 = 32;
/// How long reconciles and check rounds in progress may take to finish after shutdown begins;
/// then they are abandoned, so SIGTERM ends the process within seconds whatever they wait for.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(3);

#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    #[error("ScheduledExport has no namespace")]
    NoNamespace,
    #[error("cannot build the export Job: {0}")]
    Job(#[from] job::JobError),
    #[error("Job {0} already exists and belongs to another object")]
    JobNameConflict(String),
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
}

/// Runs the controller until `shutdown` resolves.
pub async fn run(
    ctx: Arc<Context>,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) {
    let client = ctx.client.clone();
    let (objects, jobs): (Api<ScheduledExport>, Api<Job>) = match &ctx.config.namespace {
        Some(namespace) => (
            Api::namespaced(client.clone(), namespace),
            Api::namespaced(client, namespace),
        ),
        None => (Api::all(client.clone()), Api::all(client)),
    };
    let jobs_config = client::watcher_config().labels(&format!(
        "{}={}",
        job::LABEL_COMPONENT,
        job::COMPONENT_EXPORT
    ));
    // The Jobs' watch feeds the local copy reconciles read, then wakes their owners; the copy is
    // updated before the wake-up, so that reconcile sees the change.
    ctx.jobs.reset();
    let job_changes = watcher(jobs, jobs_config)
        .modify(owned_jobs::trim_for_cache)
        .map_ok({
            let owned = ctx.jobs.clone();
            move |event| {
                owned.apply(&event);
                event
            }
        })
        .touched_objects();
    let (reader, writer) = reflector::store();
    let triggers = changed_objects(
        reflector(
            writer,
            watcher(objects, client::watcher_config()).modify(trim_for_cache),
        )
        .applied_objects(),
    );
    let controller = Controller::for_stream(triggers, reader).owns_stream(job_changes);
    let store = controller.store();
    ctx.metrics.watch_objects(Some(store.clone()));
    ctx.metrics.leader.set(1);
    // Rechecks and pruning run beside the reconcile loop, on the same cache, until shutdown.
    let shutdown = shutdown.shared();
    let synced = Arc::new(AtomicBool::new(false));
    let mut checker = tokio::spawn(supervise_checker(
        ctx.clone(),
        store.clone(),
        synced.clone(),
        shutdown.clone(),
    ));
    // Preflight checks likewise, leader only; cancelled with the controller (they change nothing
    // that a later check does not redo).
    let preflight = AbortOnDrop(tokio::spawn(supervise_preflight(
        ctx.clone(),
        store,
        synced.clone(),
        shutdown.clone(),
    )));
    let reconciles = controller
        // A restart reconciles every object at once; bounded, it does not flood the API server.
        .with_config(
            kube::runtime::controller::Config::default().concurrency(RECONCILE_CONCURRENCY),
        )
        .graceful_shutdown_on(shutdown.clone())
        .run(reconcile, error_policy, ctx.clone())
        .for_each(|result| {
            // Reconciles start only once the cache is complete, so their results say it is; a
            // watch error can come before that.
            if !matches!(result, Err(kube::runtime::controller::Error::QueueError(_))) {
                synced.store(true, Ordering::Relaxed);
            }
            async move {
                if let Err(err) = result {
                    warn!(error = %err, "reconcile failed");
                }
            }
        });
    // kube's graceful shutdown waits for the reconciles in progress, and for ever when it comes
    // before the cache's first list completed (it holds its runner until the cache is ready, and
    // a stopped watch never makes it ready): the grace bounds both.
    let grace_over = async {
        shutdown.clone().await;
        tokio::time::sleep(SHUTDOWN_GRACE).await;
    };
    tokio::pin!(grace_over);
    let drained = tokio::select! {
        () = reconciles => tokio::select! {
            _ = &mut checker => true,
            () = &mut grace_over => false,
        },
        () = &mut grace_over => false,
    };
    if !drained {
        warn!(grace = ?SHUTDOWN_GRACE, "work in progress did not finish in time after shutdown began; abandoning it");
    }
    // Dropping the reconciles cancelled them; aborting the checker cancels its rounds.
    checker.abort();
    drop(preflight);
    ctx.metrics.leader.set(0);
    ctx.metrics.watch_objects(None);
    ctx.jobs.reset();
}

/// The objects that need a reconcile: those whose resourceVersion changed since last seen. When
/// the API server expires a watch's resourceVersion (410 Gone, frequent when other namespaces'
/// objects of the kind churn), the watcher lists every object again; unchanged ones already have
/// their wake-up scheduled, and reconciling them all would be a pass of API reads per re-list.
fn changed_objects(
    objects: impl Stream<Item = Result<ScheduledExport, watcher::Error>> + Send + 'static,
) -> impl Stream<Item = Result<ScheduledExport, watcher::Error>> + Send + 'static {
    objects.predicate_filter(predicates::resource_version, PredicateConfig::default())
}

/// Drops what no part of the operator reads from the cached copy of an object: `managedFields` and
/// kubectl's last-applied copy of the object are each often larger than the spec, and a re-list
/// holds the whole new list beside the cache until it replaces it.
fn trim_for_cache(object: &mut ScheduledExport) {
    object.metadata.managed_fields = None;
    if let Some(annotations) = object.metadata.annotations.as_mut() {
        annotations.remove(LAST_APPLIED_ANNOTATION);
    }
}

const LAST_APPLIED_ANNOTATION: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// Runs the delivery checker until shutdown, restarting it should it ever panic, so rechecks do
/// not silently stop while reconciles go on.
async fn supervise_checker(
    ctx: Arc<Context>,
    store: kube::runtime::reflector::Store<ScheduledExport>,
    synced: Arc<AtomicBool>,
    shutdown: futures::future::Shared<impl std::future::Future<Output = ()> + Send + 'static>,
) {
    loop {
        // Aborted with this task (a shutdown whose grace ran out), so no round outlives it.
        let mut checker = AbortOnDrop(tokio::spawn(checker::run(
            ctx.clone(),
            store.clone(),
            synced.clone(),
            shutdown.clone(),
        )));
        match (&mut checker.0).await {
            Ok(()) => return,
            Err(err) => {
                tracing::error!(error = %err, "the delivery checker stopped unexpectedly; restarting it");
                tokio::time::sleep(Duration::from_secs(5)).await;
            }
        }
    }
}

/// Runs the preflight loop until shutdown, restarting it should it ever panic.
async fn supervise_preflight(
    ctx: Arc<Context>,
    store: kube::runtime::reflector::Store<ScheduledExport>,
    synced: Arc<AtomicBool>,
    shutdown: futures::future::Shared<impl std::future::Future<Output = ()> + Send + 'static>,
) {
    loop {
        let mut loop_task = AbortOnDrop(tokio::spawn(crate::operator::preflight::run(
            ctx.clone(),
            store.clone(),
            synced.clone(),
            shutdown.clone(),
        )));
        match (&mut loop_task.0).await {
            Ok(()) => return,
            Err(err) => {
                tracing::error!(error = %err, "the preflight loop stopped unexpectedly; restarting it");
                tokio::time::sleep(Duration::from_secs(5)).await;
            }
        }
    }
}

/// A task that is aborted when its handle is dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Runs the controller while this replica holds the leader Lease: waits for it, reconciles until
/// `shutdown` (then gives the Lease up) or until the Lease is lost (then returns the error, and the
/// process should exit so it restarts as a standby). Every step is bounded, so `shutdown` ends
/// this within about [`SHUTDOWN_GRACE`] plus the Lease release's own bound.
pub async fn run_with_leader_election(
    ctx: Arc<Context>,
    election: Arc<LeaderElection>,
    shutdown: impl std::future::Future<Output = ()> + Send,
) -> Result<(), LeaderError> {
    tokio::pin!(shutdown);
    tokio::select! {
        () = election.acquire() => {}
        () = &mut shutdown => {
            info!("shutting down before becoming leader");
            return Ok(());
        }
    }
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let mut controller = tokio::spawn(run(ctx, async move {
        let _ = stopped.await;
    }));
    let (lost, controller_ended) = tokio::select! {
        lost = election.hold() => (Some(lost), false),
        () = &mut shutdown => (None, false),
        // The controller never ends by itself; should it panic, stop leading rather than hold
        // the Lease while nothing reconciles.
        _ = &mut controller => (Some(LeaderError::ControllerStopped), true),
    };
    info!("stopping the controller");
    let _ = stop.send(());
    // `run` bounds its own drain; this bound only guards against a bug there.
    if !controller_ended
        && tokio::time::timeout(SHUTDOWN_GRACE * 2, &mut controller)
            .await
            .is_err()
    {
        controller.abort();
    }
    // Also after a failed renewal: the Lease may still name this replica. A Lease another
    // replica holds is left alone.
    election.release().await;
    match lost {
        Some(lost) => Err(lost),
        None => Ok(()),
    }
}

/// Failures are counted where the reconcile is timed (`Metrics::record_reconcile`).
fn error_policy(_object: Arc<ScheduledExport>, err: &ReconcileError, _ctx: Arc<Context>) -> Action {
    warn!(error = %err, "will retry");
    Action::requeue(Duration::from_secs(15))
}

impl ReconcileError {
    /// The `reason` label of `reconcile_failures`.
    fn metric_label(&self) -> &'static str {
        match self {
            ReconcileError::NoNamespace => "no_namespace",
            ReconcileError::Job(_) => "job",
            ReconcileError::JobNameConflict(_) => "job_name_conflict",
            ReconcileError::Kube(_) => "kubernetes_api",
        }
    }
}

/// One reconcile, in a span naming the object, timed and counted in the metrics.
async fn reconcile(
    object: Arc<ScheduledExport>,
    ctx: Arc<Context>,
) -> Result<Action, ReconcileError> {
    let span = tracing::info_span!(
        "reconcile",
        namespace = %object.namespace().unwrap_or_default(),
        name = %object.name_any(),
    );
    let started = std::time::Instant::now();
    let result = reconcile_object(object, ctx.clone()).instrument(span).await;
    ctx.metrics.record_reconcile(
        started.elapsed().as_secs_f64(),
        result.as_ref().err().map(ReconcileError::metric_label),
    );
    result
}

async fn reconcile_object(
    object: Arc<ScheduledExport>,
    ctx: Arc<Context>,
) -> Result<Action, ReconcileError> {
    // A deleted object is cancelled: no new runs; its Jobs go with it through owner references.
    if object.metadata.deletion_timestamp.is_some() {
        return Ok(Action::await_change());
    }
    let namespace = object.namespace().ok_or(ReconcileError::NoNamespace)?;
    let uid = object.uid().unwrap_or_default();
    let jobs_api: Api<Job> = Api::namespaced(ctx.client.clone(), &namespace);
    // From the local copy, by controller UID: a Job of an earlier object of the same name
    // (orphaned, or relabelled) is not this object's run. A Job the copy has not seen yet is
    // still caught by its deterministic name (a create answers 409).
    ctx.jobs.wait_until_ready().await;
    let mut jobs = ctx.jobs.controlled_by(&namespace, &uid);

    let now = ctx.clock.now();
    let mut plan = plan::plan(
        now,
        &object,
        &jobs,
        ctx.config.default_zone,
        ctx.config.periods.reconcile_poll,
    );
    if let Some(run) = &plan.start
        && let Some(created) = start_run(&ctx, &object, &jobs_api, run).await?
    {
        ctx.jobs.written(created.clone());
        jobs.push(created);
    }
    // After the create, so a burst of due objects reaches its Jobs first; it only sets Ready.
    if let Some(missing) = missing_secret(&ctx, &object, &namespace).await? {
        let already_said = object
            .status
            .as_ref()
            .and_then(|status| status::condition(&status.conditions, ConditionType::Ready))
            .is_some_and(|ready| {
                ready.reason == ConditionReason::SecretNotFound.as_str() && ready.message == missing
            });
        if !already_said {
            publish(
                &ctx,
                &object,
                EventType::Warning,
                EventReason::InvalidReference,
                &missing,
            )
            .await;
        }
        plan.schedule_status.ready = (false, ConditionReason::SecretNotFound, missing);
    }
    report_job_events(&ctx, &object, &jobs_api, &jobs).await;
    for stale in job::finished_jobs_to_delete(&jobs, KEEP_SUCCEEDED_JOBS, KEEP_FAILED_JOBS) {
        match jobs_api.delete(&stale, &DeleteParams::background()).await {
            Ok(_) => jobs.retain(|job| job.metadata.name.as_deref() != Some(stale.as_str())),
            Err(kube::Error::Api(response)) if response.code == 404 => {}
            Err(err) => return Err(err.into()),
        }
    }

    let api: Api<ScheduledExport> = Api::namespaced(ctx.client.clone(), &namespace);
    match update_status_from(&api, StatusWriter::Controller, &object, |current| {
        plan::merge_status(current, &plan.schedule_status, &jobs, now)
    })
    .await
    {
        Ok(_) => {}
        // The object was deleted and created again since the cache saw it: what this reconcile
        // computed belongs to the old one; the new one gets its own reconcile.
        Err(StatusError::Replaced { .. }) => return Ok(Action::await_change()),
        Err(StatusError::Kube(err)) => return Err(err.into()),
    }
    Ok(Action::requeue(requeue_after(&ctx, &object, &plan)))
}

/// When to look again: at the next run, measured from the clock as the reconcile ends (its API
/// calls took time) plus a small margin so the slot has surely begun; an idle object's safety
/// re-check is spread by UID so objects created together do not all wake together.
fn requeue_after(ctx: &Context, object: &ScheduledExport, plan: &plan::Plan) -> Duration {
    const MARGIN: Duration = Duration::from_millis(100);
    if ctx.config.periods.reconcile_poll.is_some() {
        return plan.requeue_after;
    }
    let now = ctx.clock.now();
    match plan.schedule_status.next_run_time {
        Some(next) if plan.requeue_after < plan::MAX_REQUEUE => {
            (next - now).to_std().unwrap_or_default() + MARGIN
        }
        _ => {
            let uid = object.uid().unwrap_or_default();
            let spread = uid
                .bytes()
                .fold(0u64, |h, b| h.wrapping_mul(31).wrapping_add(u64::from(b)));
            plan::MAX_REQUEUE - Duration::from_secs(spread % 600)
        }
    }
}

/// Creates the Job of a run. Its name is derived from the object and the slot, so a second
/// replica, a restart or a lost status write finds it already there instead of running twice.
async fn start_run(
    ctx: &Context,
    object: &ScheduledExport,
    jobs_api: &Api<Job>,
    run: &RunToStart,
) -> Result<Option<Job>, ReconcileError> {
    let job = job::build_job(object, run.slot, &run.kind, &ctx.config.job)?;
    let job_name = job.name_any();
    // Before the Job: its Pod runs as this identity, and a Pod whose ServiceAccount does not
    // exist yet is refused.
    apply_export_identity(ctx, object).await?;
    match jobs_api.create(&PostParams::default(), &job).await {
        Ok(created) => {
            info!(job = %job_name, slot = %run.slot, "export Job created");
            if let Some(note) = plan::describe_missed(run.missed_slots) {
                publish(
                    ctx,
                    object,
                    EventType::Warning,
                    EventReason::MissedSlots,
                    &note,
                )
                .await;
            }
            let (reason, note) = match &run.kind {
                RunKind::Scheduled => (
                    EventReason::Scheduled,
                    format!(
                        "created Job {job_name} for the run due at {}",
                        run.slot.to_rfc3339()
                    ),
                ),
                RunKind::RunNow { token } => (
                    EventReason::RunNow,
                    format!("created Job {job_name} for run-now token {token:?}"),
                ),
                RunKind::FullExport { token } => (
                    EventReason::FullExport,
                    format!(
                        "created Job {job_name} for full-export token {token:?}: its file holds every row"
                    ),
                ),
            };
            publish(ctx, object, EventType::Normal, reason, &note).await;
            Ok(Some(created))
        }
        // Ours already (a restart, a lost status write): nothing to do. Another object's (a
        // recreated object whose old Jobs were orphaned): running nothing would skip the slot
        // silently, so say so and retry.
        Err(kube::Error::Api(response)) if response.code == 409 => {
            let existing = jobs_api.get(&job_name).await?;
            if job::owned_by(&existing, &object.uid().unwrap_or_default()) {
                return Ok(None);
            }
            let note = format!(
                "Job {job_name} already exists and belongs to another object; delete it so this slot can run"
            );
            publish(
                ctx,
                object,
                EventType::Warning,
                EventReason::JobNameConflict,
                &note,
            )
            .await;
            Err(ReconcileError::JobNameConflict(job_name))
        }
        Err(err) => Err(err.into()),
    }
}

/// Creates or updates the object's export identity (ServiceAccount, Role, RoleBinding) by
/// server-side apply, so a hand edit of its Role is put back at the next run. The operator holds
/// every right the Role grants, which is what lets it create that Role at all.
async fn apply_export_identity(
    ctx: &Context,
    object: &ScheduledExport,
) -> Result<(), ReconcileError> {
    use k8s_openapi::api::core::v1::ServiceAccount;
    use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
    let identity = job::export_identity(object)?;
    let namespace = object.namespace().ok_or(ReconcileError::NoNamespace)?;
    let name = job::export_identity_name(&object.name_any());
    let params = PatchParams::apply(FIELD_MANAGER).force();
    Api::<ServiceAccount>::namespaced(ctx.client.clone(), &namespace)
        .patch(&name, &params, &Patch::Apply(&identity.service_account))
        .await?;
    Api::<Role>::namespaced(ctx.client.clone(), &namespace)
        .patch(&name, &params, &Patch::Apply(&identity.role))
        .await?;
    Api::<RoleBinding>::namespaced(ctx.client.clone(), &namespace)
        .patch(&name, &params, &Patch::Apply(&identity.role_binding))
        .await?;
    Ok(())
}

/// One `Started` Event when a Job's export is running and one `Succeeded` or `Failed` Event when
/// it ends; an annotation on the Job remembers what was published, across restarts and replicas.
async fn report_job_events(
    ctx: &Context,
    object: &ScheduledExport,
    jobs_api: &Api<Job>,
    jobs: &[Job],
) {
    for job in jobs {
        let annotations = job.annotations();
        let (mark, type_, reason, note) = match job::job_state(job) {
            JobState::Running if !annotations.contains_key(STARTED_ANNOTATION) => (
                STARTED_ANNOTATION,
                EventType::Normal,
                EventReason::Started,
                format!("Job {} is exporting", job.name_any()),
            ),
            JobState::Succeeded if !annotations.contains_key(REPORTED_ANNOTATION) => (
                REPORTED_ANNOTATION,
                EventType::Normal,
                EventReason::Succeeded,
                format!("Job {} delivered its file", job.name_any()),
            ),
            JobState::Failed { reason, message }
                if !annotations.contains_key(REPORTED_ANNOTATION) =>
            {
                (
                    REPORTED_ANNOTATION,
                    EventType::Warning,
                    EventReason::Failed,
                    format!("Job {} failed ({reason}): {message}", job.name_any()),
                )
            }
            _ => continue,
        };
        publish(ctx, object, type_, reason, &note).await;
        match reason {
            EventReason::Succeeded => {
                let file = record_success(ctx, object, job).await;
                if object.spec.notify.is_some() && transitions::previous_run_failed(job, jobs) {
                    let notice = Notice::RunRecovered {
                        job: job.name_any(),
                        slot: job::job_slot(job),
                        file,
                    };
                    ctx.notifier.notify(object, notice);
                }
            }
            EventReason::Failed => {
                ctx.metrics
                    .record_run(object.spec.file_type.as_str(), false);
                if object.spec.notify.is_some() {
                    let notice = run_failure(ctx, object, job).await;
                    ctx.notifier.notify(object, notice);
                }
            }
            _ => {}
        }
        let patch = serde_json::json!({"metadata": {"annotations": {mark: "true"}}});
        match jobs_api
            .patch(
                &job.name_any(),
                &PatchParams::default(),
                &Patch::Merge(&patch),
            )
            .await
        {
            // Into the local copy at once: a reconcile a Job change queued meanwhile would
            // otherwise see the Job unmarked and publish (and alert) a second time.
            Ok(marked) => ctx.jobs.written(marked),
            Err(err) => {
                warn!(job = %job.name_any(), error = %err, "could not mark the Job's Event as published");
            }
        }
    }
}

/// Why a run failed, for its alert: the export's own reason and message as it recorded them in
/// status (read fresh, like the figures of a success), else the Job's condition (a Pod that never
/// started records nothing).
async fn run_failure(ctx: &Context, object: &ScheduledExport, job: &Job) -> Notice {
    let job_name = job.name_any();
    let (mut reason, mut message) = match job::job_state(job) {
        JobState::Failed { reason, message } => (reason, message),
        _ => (String::new(), String::new()),
    };
    let api: Api<ScheduledExport> =
        Api::namespaced(ctx.client.clone(), &object.namespace().unwrap_or_default());
    match api.get_status(&object.name_any()).await {
        Ok(fresh) => {
            let recorded = fresh.status.and_then(|status| {
                status
                    .history
                    .into_iter()
                    .find(|run| run.job_name.as_deref() == Some(job_name.as_str()))
            });
            if let Some(run) = recorded {
                reason = run.reason.unwrap_or(reason);
                message = run.message.unwrap_or(message);
            }
        }
        Err(err) => warn!(error = %err, "could not read why the run failed for its alert"),
    }
    Notice::RunFailed {
        job: job_name,
        slot: job::job_slot(job),
        reason,
        message,
    }
}

/// Counts a delivered run in the metrics: rows and bytes as the export recorded them in status
/// (read fresh, since the cached object may predate that write), duration from the Job. Returns
/// the delivered file's name, when status has it.
async fn record_success(ctx: &Context, object: &ScheduledExport, job: &Job) -> Option<String> {
    let file_type = object.spec.file_type.as_str();
    ctx.metrics.record_run(file_type, true);
    let api: Api<ScheduledExport> =
        Api::namespaced(ctx.client.clone(), &object.namespace().unwrap_or_default());
    let last_run = match api.get_status(&object.name_any()).await {
        Ok(fresh) => fresh.status.and_then(|status| status.last_run),
        Err(err) => {
            warn!(error = %err, "could not read the run's figures for the metrics");
            None
        }
    }
    .filter(|run| run.job_name == job.metadata.name);
    let seconds = job::succeeded_job_seconds(job);
    let run = last_run?;
    ctx.metrics.record_delivery(
        file_type,
        run.rows.unwrap_or(0),
        run.bytes.unwrap_or(0),
        seconds,
    );
    run.file_name
}

/// The first referenced Secret that does not exist, as a sentence naming the field.
async fn missing_secret(
    ctx: &Context,
    object: &ScheduledExport,
    namespace: &str,
) -> Result<Option<String>, ReconcileError> {
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), namespace);
    let key_secret = object.spec.encryption.as_ref().map(|encryption| {
        (
            PGP_KEY_SECRET_FIELD,
            &encryption.pgp.public_key_secret_ref.name,
        )
    });
    let webhook_secret = object
        .spec
        .notify
        .as_ref()
        .map(|notify| (WEBHOOK_SECRET_FIELD, &notify.webhook.secret_ref.name));
    for (field, name) in [
        (SOURCE_SECRET_FIELD, &object.spec.source.secret_ref.name),
        (
            SFTP_SECRET_FIELD,
            &object.spec.destination.sftp.secret_ref.name,
        ),
    ]
    .into_iter()
    .chain(key_secret)
    .chain(webhook_secret)
    {
        // The API server's watch cache answers the usual case (the Secret is there), sparing
        // etcd a quorum read per Secret per reconcile; a miss is confirmed by a quorum read,
        // since a Secret applied together with the object may not have reached the cache yet.
        let cached = secrets
            .get_metadata_opt_with(name, &GetParams::any())
            .await?;
        if cached.is_none() && secrets.get_metadata_opt(name).await?.is_none() {
            return Ok(Some(format!(
                "Secret {name} referenced by {field} does not exist in namespace {namespace}"
            )));
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn object(name: &str, uid: &str, resource_version: &str) -> ScheduledExport {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "exports.crm.dev/v1alpha1",
            "kind": "ScheduledExport",
            "metadata": {"name": name, "namespace": "ns", "uid": uid, "resourceVersion": resource_version},
            "spec": {
                "fileType": "interactions", "time": "07:00", "timeZone": "UTC",
                "source": {"secretRef": {"name": "db"}},
                "destination": {"sftp": {"host": "h", "username": "u", "secretRef": {"name": "s"}}}
            }
        }))
        .unwrap()
    }

    #[test]
    fn the_cache_keeps_neither_managed_fields_nor_the_last_applied_copy() {
        let mut cached = object("a", "uid-a", "10");
        cached.metadata.managed_fields = Some(vec![Default::default()]);
        cached.metadata.annotations = Some(
            [
                (LAST_APPLIED_ANNOTATION.to_string(), "{...}".to_string()),
                ("exports.crm.dev/run-now".to_string(), "x".to_string()),
            ]
            .into(),
        );
        trim_for_cache(&mut cached);
        assert_eq!(cached.metadata.managed_fields, None);
        let annotations = cached.metadata.annotations.expect("kept");
        assert_eq!(
            annotations.keys().collect::<Vec<_>>(),
            ["exports.crm.dev/run-now"]
        );
        assert_eq!(cached.spec, object("a", "uid-a", "10").spec);
    }

    #[tokio::test]
    async fn a_relist_triggers_only_objects_that_changed() {
        let events = vec![
            // The first list: everything.
            object("a", "uid-a", "10"),
            object("b", "uid-b", "11"),
            // A re-list after 410 Gone: a unchanged, b's status written meanwhile.
            object("a", "uid-a", "10"),
            object("b", "uid-b", "15"),
            // a deleted and created again under the same name.
            object("a", "uid-a2", "10"),
        ];
        let triggered: Vec<(String, String, String)> =
            changed_objects(futures::stream::iter(events.into_iter().map(Ok)))
                .map(|result| {
                    let object = result.unwrap();
                    (
                        object.name_any(),
                        object.uid().unwrap(),
                        object.resource_version().unwrap(),
                    )
                })
                .collect()
                .await;
        let expected = [
            ("a", "uid-a", "10"),
            ("b", "uid-b", "11"),
            ("b", "uid-b", "15"),
            ("a", "uid-a2", "10"),
        ];
        assert_eq!(
            triggered,
            expected
                .iter()
                .map(|(n, u, v)| (n.to_string(), u.to_string(), v.to_string()))
                .collect::<Vec<_>>()
        );
    }
}
