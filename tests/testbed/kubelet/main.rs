//! `testbed-kubelet`: the test bed's stand-in for the kubelet (DESIGN section 8).
//!
//! There is no scheduler and no kubelet in the test bed. This runner registers a Node, keeps it Ready
//! (Lease heartbeat plus status updates), binds pending Pods to it through the `pods/binding`
//! subresource, runs their containers as local processes of this project's binary with the Pod's
//! arguments, environment and ServiceAccount identity, and reports each exit through the Pod status,
//! so the real Job controller in kube-controller-manager sees the Job complete or fail.
//!
//! See `tests/testbed/README.md` for what it does and does not emulate.

mod env;
mod node;
mod run;
mod status;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context as _, Result};
use clap::Parser;
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, PostParams, Preconditions};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, Config, ResourceExt};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tracing::{debug, info, warn};

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Stand-in for the kubelet in the scheduled-exports test bed: runs the containers of Pods as local
/// processes of this project's binary and reports their exit through the Pod status.
#[derive(Debug, Clone, Parser)]
#[command(name = "testbed-kubelet")]
pub struct Args {
    /// Kubeconfig of the stand-in itself (the test bed's admin). Pods get their own credentials.
    #[arg(long, env = "KUBECONFIG")]
    pub kubeconfig: PathBuf,
    /// Name of the Node to register and run Pods for.
    #[arg(long, default_value = "testbed-node")]
    pub node_name: String,
    /// Only handle Pods in this namespace (default: all namespaces).
    #[arg(long)]
    pub namespace: Option<String>,
    /// The local scheduled-exports binary that containers running `scheduled-exports` execute.
    #[arg(long, default_value_os_t = repo_root().join("target/debug/scheduled-exports"))]
    pub binary: PathBuf,
    /// Where each Pod's container output goes, as `<namespace>_<pod>.log`.
    #[arg(long, default_value_os_t = repo_root().join("target/testbed/logs/pods"))]
    pub log_dir: PathBuf,
    /// Per-Pod scratch directories (kubeconfig, TMPDIR, HOME, emptyDir volumes) live under
    /// `<work-dir>/<node-name>/<pod uid>/` while the Pod runs.
    #[arg(long, default_value_os_t = repo_root().join("target/testbed/kubelet"))]
    pub work_dir: PathBuf,
    /// Do not bind Pods without spec.nodeName; run only Pods already bound to this Node.
    #[arg(long)]
    pub no_bind: bool,
    /// File created once the Node is registered and the Pod watch has listed (for scripts).
    #[arg(long)]
    pub ready_file: Option<PathBuf>,
    /// Seconds between Lease renewals (Node status is refreshed every third renewal).
    #[arg(long, default_value_t = 10)]
    pub heartbeat_seconds: u64,
}

/// Why a running Pod's processes must stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// The Pod got a deletionTimestamp: stop within its grace period, then finish the deletion.
    Deleted { grace_seconds: i64 },
    /// The Pod object is gone: stop at once, nothing to report.
    Gone,
    /// The stand-in is shutting down.
    Shutdown,
}

enum Entry {
    Running(watch::Sender<Option<Stop>>),
    /// Ran (or was handled) by this process; later events for it are not new work.
    Done,
}

pub struct Ctx {
    pub client: Client,
    pub args: Args,
    /// The `cluster` entry of the stand-in's kubeconfig, reused in each Pod's kubeconfig.
    pub cluster: serde_json::Value,
    pods: Mutex<HashMap<String, Entry>>,
    tasks: Mutex<JoinSet<()>>,
}

impl Ctx {
    fn spawn<F>(&self, fut: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let mut tasks = self.tasks.lock().expect("tasks lock");
        // Reap finished tasks so the set does not grow for the life of the process.
        while tasks.try_join_next().is_some() {}
        tasks.spawn(fut);
    }

    pub fn mark_done(&self, uid: &str) {
        let mut pods = self.pods.lock().expect("pods lock");
        if let Some(entry) = pods.get_mut(uid) {
            *entry = Entry::Done;
        }
    }
}

#[tokio::main]
async fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let args = Args::parse();

    let kubeconfig = Kubeconfig::read_from(&args.kubeconfig)
        .with_context(|| format!("reading {}", args.kubeconfig.display()))?;
    let cluster = child_cluster(&kubeconfig, &args.kubeconfig)?;
    let config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .context("kubeconfig")?;
    let client = Client::try_from(config).context("client")?;

    std::fs::create_dir_all(&args.log_dir)
        .with_context(|| format!("creating {}", args.log_dir.display()))?;
    let work_root = args.work_dir.join(&args.node_name);
    std::fs::create_dir_all(&work_root)
        .with_context(|| format!("creating {}", work_root.display()))?;
    if !args.binary.exists() {
        warn!(binary = %args.binary.display(), "the scheduled-exports binary does not exist (yet); pods will fail to start until it does");
    }
    // Processes a previous instance left behind (killed without a chance to stop them).
    run::sweep_leftovers(&work_root);

    let node_uid = node::register(&client, &args.node_name).await?;
    info!(node = %args.node_name, "node registered");
    tokio::spawn(node::heartbeat(
        client.clone(),
        args.node_name.clone(),
        node_uid,
        Duration::from_secs(args.heartbeat_seconds.max(1)),
    ));

    let ctx = Arc::new(Ctx {
        client: client.clone(),
        args: args.clone(),
        cluster,
        pods: Mutex::new(HashMap::new()),
        tasks: Mutex::new(JoinSet::new()),
    });

    let pods: Api<Pod> = match &args.namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    let mut events = watcher(pods, watcher::Config::default())
        .default_backoff()
        .boxed();
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let mut ready_written = false;
    loop {
        tokio::select! {
            event = events.try_next() => match event {
                Ok(Some(watcher::Event::Apply(pod) | watcher::Event::InitApply(pod))) => handle(&ctx, pod),
                Ok(Some(watcher::Event::Delete(pod))) => handle_gone(&ctx, &pod),
                Ok(Some(watcher::Event::InitDone)) => {
                    if !ready_written {
                        ready_written = true;
                        if let Some(file) = &args.ready_file {
                            std::fs::write(file, format!("{}\n", std::process::id()))
                                .with_context(|| format!("writing {}", file.display()))?;
                        }
                        info!("watching pods; ready");
                    }
                }
                Ok(Some(watcher::Event::Init)) => {}
                Ok(None) => break,
                Err(err) => warn!(error = %err, "pod watch failed; retrying"),
            },
            _ = tokio::signal::ctrl_c() => break,
            _ = terminate.recv() => break,
        }
    }

    info!("shutting down: stopping running pods");
    {
        let pods = ctx.pods.lock().expect("pods lock");
        for entry in pods.values() {
            if let Entry::Running(stop) = entry {
                let _ = stop.send(Some(Stop::Shutdown));
            }
        }
    }
    let mut tasks = std::mem::take(&mut *ctx.tasks.lock().expect("tasks lock"));
    let drained = tokio::time::timeout(Duration::from_secs(15), async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        warn!("pods did not stop within 15s; exiting anyway");
    }
    Ok(())
}

/// The current context's cluster (server URL, CA) for the Pods' kubeconfigs; a relative CA path is
/// made absolute since the Pod's kubeconfig lives elsewhere.
fn child_cluster(kubeconfig: &Kubeconfig, path: &std::path::Path) -> Result<serde_json::Value> {
    let context_name = kubeconfig
        .current_context
        .clone()
        .context("the kubeconfig has no current-context")?;
    let context = kubeconfig
        .contexts
        .iter()
        .find(|c| c.name == context_name)
        .and_then(|c| c.context.clone())
        .with_context(|| format!("context {context_name} not found"))?;
    let mut cluster = kubeconfig
        .clusters
        .iter()
        .find(|c| c.name == context.cluster)
        .and_then(|c| c.cluster.clone())
        .with_context(|| format!("cluster {} not found", context.cluster))?;
    if let Some(ca) = &cluster.certificate_authority {
        let ca = PathBuf::from(ca);
        if ca.is_relative() {
            let base = path.parent().unwrap_or(std::path::Path::new("."));
            cluster.certificate_authority = Some(base.join(ca).display().to_string());
        }
    }
    Ok(serde_json::to_value(cluster)?)
}

fn is_terminal(pod: &Pod) -> bool {
    matches!(
        pod.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Succeeded" | "Failed")
    )
}

/// Decides what a Pod event means for this node: bind, start, stop, finish a deletion, or nothing.
fn handle(ctx: &Arc<Ctx>, pod: Pod) {
    let Some(uid) = pod.uid() else { return };
    let Some(spec) = pod.spec.as_ref() else {
        return;
    };
    let deleting = pod.metadata.deletion_timestamp.is_some();
    match spec.node_name.as_deref() {
        None | Some("") => {
            let gated = spec
                .scheduling_gates
                .as_ref()
                .is_some_and(|g| !g.is_empty());
            if !ctx.args.no_bind && !deleting && !gated && !is_terminal(&pod) {
                let ctx2 = ctx.clone();
                ctx.spawn(async move { bind(&ctx2, &pod).await });
            }
            return;
        }
        Some(node) if node == ctx.args.node_name => {}
        Some(_) => return,
    }

    let mut pods = ctx.pods.lock().expect("pods lock");
    match pods.get(&uid) {
        Some(Entry::Running(stop)) => {
            if deleting {
                let grace_seconds = pod.metadata.deletion_grace_period_seconds.unwrap_or(30);
                let _ = stop.send(Some(Stop::Deleted { grace_seconds }));
            }
            return;
        }
        Some(Entry::Done) => {
            if deleting && pod.metadata.deletion_grace_period_seconds != Some(0) {
                let ctx2 = ctx.clone();
                ctx.spawn(async move { finish_deletion(&ctx2, &pod).await });
            }
            return;
        }
        None => {}
    }

    if deleting {
        pods.insert(uid, Entry::Done);
        let ctx2 = ctx.clone();
        ctx.spawn(async move {
            if !is_terminal(&pod) {
                run::fail_unstarted(&ctx2, &pod, "the pod was deleted before it ran").await;
            }
            finish_deletion(&ctx2, &pod).await;
        });
        return;
    }
    if is_terminal(&pod) {
        pods.insert(uid, Entry::Done);
        return;
    }
    let started = pod
        .status
        .as_ref()
        .is_some_and(|s| s.start_time.is_some() || s.phase.as_deref() == Some("Running"));
    if started {
        // Started by an earlier instance of the stand-in: its process was stopped with it (or swept
        // at start-up) and its exit status is lost, so the Pod fails and the Job controller decides
        // about a replacement, as after a node crash.
        pods.insert(uid, Entry::Done);
        let ctx2 = ctx.clone();
        ctx.spawn(async move { run::fail_orphan(&ctx2, &pod).await });
        return;
    }
    let (stop_tx, stop_rx) = watch::channel(None);
    pods.insert(uid.clone(), Entry::Running(stop_tx));
    drop(pods);
    let ctx2 = ctx.clone();
    ctx.spawn(async move {
        run::run_pod(&ctx2, pod, stop_rx).await;
        ctx2.mark_done(&uid);
    });
}

fn handle_gone(ctx: &Arc<Ctx>, pod: &Pod) {
    let Some(uid) = pod.uid() else { return };
    let mut pods = ctx.pods.lock().expect("pods lock");
    if let Some(Entry::Running(stop)) = pods.get(&uid) {
        let _ = stop.send(Some(Stop::Gone));
    }
    pods.remove(&uid);
}

async fn bind(ctx: &Ctx, pod: &Pod) {
    let (name, ns) = (pod.name_any(), pod.namespace().unwrap_or_default());
    let api: Api<Pod> = Api::namespaced(ctx.client.clone(), &ns);
    let binding = serde_json::json!({
        "apiVersion": "v1",
        "kind": "Binding",
        "metadata": {"name": name, "uid": pod.uid()},
        "target": {"apiVersion": "v1", "kind": "Node", "name": ctx.args.node_name},
    });
    match api
        .create_subresource::<_, serde_json::Value>(
            "binding",
            &name,
            &PostParams::default(),
            &binding,
        )
        .await
    {
        Ok(_) => info!(pod = %format!("{ns}/{name}"), node = %ctx.args.node_name, "bound"),
        // Already bound (a repeated event) or gone.
        Err(err) => debug!(pod = %format!("{ns}/{name}"), error = %err, "binding failed"),
    }
}

/// A bound Pod with a deletionTimestamp stays until its kubelet confirms the containers are gone
/// with a deletion of grace period 0; finalizers (the Job controller's) may keep it a little longer.
pub async fn finish_deletion(ctx: &Ctx, pod: &Pod) {
    let (name, ns) = (pod.name_any(), pod.namespace().unwrap_or_default());
    let api: Api<Pod> = Api::namespaced(ctx.client.clone(), &ns);
    let params = DeleteParams {
        grace_period_seconds: Some(0),
        preconditions: Some(Preconditions {
            uid: pod.uid(),
            resource_version: None,
        }),
        ..DeleteParams::default()
    };
    match api.delete(&name, &params).await {
        Ok(_) => debug!(pod = %format!("{ns}/{name}"), "deletion confirmed"),
        Err(kube::Error::Api(err)) if err.code == 404 || err.code == 409 => {}
        Err(err) => {
            warn!(pod = %format!("{ns}/{name}"), error = %err, "confirming the deletion failed")
        }
    }
}
