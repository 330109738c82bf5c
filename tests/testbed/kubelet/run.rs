//! Running one Pod: its containers as local processes (init containers first, then the app
//! containers, one at a time), with the Pod's ServiceAccount identity, and the status reports that
//! let the Job controller count the Pod as succeeded or failed.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context as _, Result};
use k8s_openapi::api::authentication::v1::{BoundObjectReference, TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{Container, Pod, ServiceAccount};
use kube::ResourceExt;
use kube::api::{Api, Patch, PatchParams, PostParams};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::{info, warn};

use crate::env::{self, EnvList, Refs};
use crate::status::{ContainerState, PodStatus, State, Terminated, now};
use crate::{Ctx, Stop};

/// Bound on the stderr tail kept as a termination message.
const MESSAGE_BYTES: usize = 2048;
/// The longest a stand-in shutdown waits for a Pod's process after SIGTERM.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);
const TOKEN_SECONDS: i64 = 3600;

fn pod_key(pod: &Pod) -> String {
    format!("{}/{}", pod.namespace().unwrap_or_default(), pod.name_any())
}

fn image(c: &Container) -> String {
    c.image.clone().unwrap_or_default()
}

/// Patches the status subresource; false when the Pod is gone or was replaced (uid precondition).
async fn patch_status(api: &Api<Pod>, name: &str, status: &PodStatus) -> bool {
    let body = status.patch();
    for attempt in 1..=5 {
        match api
            .patch_status(name, &PatchParams::default(), &Patch::Strategic(&body))
            .await
        {
            Ok(_) => return true,
            Err(kube::Error::Api(err)) if err.code == 404 || err.code == 409 => return false,
            Err(err) => {
                warn!(pod = %name, attempt, error = %err, "status update failed");
                tokio::time::sleep(Duration::from_millis(500 * attempt)).await;
            }
        }
    }
    false
}

fn initial_status(pod: &Pod) -> PodStatus {
    let spec = pod.spec.clone().unwrap_or_default();
    PodStatus::new(
        pod.uid().unwrap_or_default(),
        spec.init_containers
            .iter()
            .flatten()
            .map(|c| ContainerState::new(&c.name, &image(c), "PodInitializing"))
            .collect(),
        spec.containers
            .iter()
            .map(|c| ContainerState::new(&c.name, &image(c), "ContainerCreating"))
            .collect(),
    )
}

/// A Pod that got a deletionTimestamp before this stand-in ran it.
pub async fn fail_unstarted(ctx: &Ctx, pod: &Pod, message: &str) {
    let api: Api<Pod> = Api::namespaced(ctx.client.clone(), &pod.namespace().unwrap_or_default());
    let mut status = initial_status(pod);
    status.finish("Failed", None, Some(message.to_string()));
    patch_status(&api, &pod.name_any(), &status).await;
}

/// A Pod an earlier instance of the stand-in started: its process is gone (stopped with that
/// instance or swept at start-up) and its exit status unknown, so it fails like a Pod on a crashed
/// node; the Job controller replaces it within the Job's backoffLimit.
pub async fn fail_orphan(ctx: &Ctx, pod: &Pod) {
    warn!(pod = %pod_key(pod), "pod was started by an earlier stand-in; marking it Failed");
    let api: Api<Pod> = Api::namespaced(ctx.client.clone(), &pod.namespace().unwrap_or_default());
    let mut status = initial_status(pod);
    if let Some(Ok(serde_json::Value::String(start))) = pod
        .status
        .as_ref()
        .and_then(|s| s.start_time.as_ref())
        .map(serde_json::to_value)
    {
        status.start_time = start;
    }
    status.finish(
        "Failed",
        Some("StandinRestarted".into()),
        Some(
            "the test bed's kubelet stand-in restarted while this pod ran; its exit status is lost"
                .into(),
        ),
    );
    patch_status(&api, &pod.name_any(), &status).await;
}

/// Kills processes that an earlier instance left in `<work-root>/<uid>/` and removes the directories.
pub fn sweep_leftovers(work_root: &Path) {
    let Ok(entries) = std::fs::read_dir(work_root) else {
        return;
    };
    for entry in entries.flatten() {
        let dir = entry.path();
        if let Some(pid) = std::fs::read_to_string(dir.join("pid"))
            .ok()
            .and_then(|s| s.trim().parse::<u32>().ok())
        {
            let marker = dir.display().to_string();
            let ours = std::fs::read(format!("/proc/{pid}/environ")).is_ok_and(|environ| {
                environ
                    .windows(marker.len())
                    .any(|w| w == marker.as_bytes())
            });
            if ours {
                warn!(pid, dir = %dir.display(), "killing a process left by an earlier stand-in");
                signal_group(pid, "KILL");
            }
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}

/// Sends a signal to the process group the child leads (it was started with its own group).
fn signal_group(pid: u32, signal: &str) {
    let _ = Command::new("kill")
        .args(["-s", signal, "--", &format!("-{pid}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

struct Outcome {
    phase: &'static str,
    reason: Option<String>,
    message: Option<String>,
    /// Deleted while running: confirm the deletion once stopped.
    deleted: bool,
    /// The Pod object is gone: nothing to report.
    gone: bool,
}

impl Outcome {
    fn failed(reason: Option<&str>, message: impl Into<String>) -> Self {
        Outcome {
            phase: "Failed",
            reason: reason.map(str::to_string),
            message: Some(message.into()),
            deleted: false,
            gone: false,
        }
    }

    fn stopped(stop: Stop) -> Self {
        match stop {
            Stop::Deleted { .. } => Outcome {
                deleted: true,
                ..Outcome::failed(None, "the pod was deleted while it ran")
            },
            Stop::Gone => Outcome {
                gone: true,
                ..Outcome::failed(None, "")
            },
            Stop::Shutdown => Outcome::failed(
                Some("StandinStopped"),
                "the test bed's kubelet stand-in stopped while this pod ran",
            ),
        }
    }

    fn deadline() -> Self {
        Outcome::failed(
            Some("DeadlineExceeded"),
            "Pod was active on the node longer than the specified deadline",
        )
    }
}

/// Resolves to the first stop request (a dropped sender means the Pod is gone).
async fn stop_requested(stop: &mut watch::Receiver<Option<Stop>>) -> Stop {
    loop {
        if let Some(s) = *stop.borrow_and_update() {
            return s;
        }
        if stop.changed().await.is_err() {
            return (*stop.borrow()).unwrap_or(Stop::Gone);
        }
    }
}

async fn deadline_reached(deadline: Option<Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

pub async fn run_pod(ctx: &Ctx, pod: Pod, mut stop: watch::Receiver<Option<Stop>>) {
    let (ns, name, uid) = (
        pod.namespace().unwrap_or_default(),
        pod.name_any(),
        pod.uid().unwrap_or_default(),
    );
    let api: Api<Pod> = Api::namespaced(ctx.client.clone(), &ns);
    let workdir = ctx.args.work_dir.join(&ctx.args.node_name).join(&uid);
    let deadline = pod
        .spec
        .as_ref()
        .and_then(|s| s.active_deadline_seconds)
        .map(|s| Instant::now() + Duration::from_secs(s.max(0) as u64));
    let mut status = initial_status(&pod);
    info!(pod = %pod_key(&pod), "starting");
    if !patch_status(&api, &name, &status).await {
        return;
    }
    let log_path = ctx.args.log_dir.join(format!("{ns}_{name}.log"));
    let outcome = match OpenOptions::new().create(true).append(true).open(&log_path) {
        Ok(file) => {
            let log = Arc::new(Mutex::new(file));
            execute(
                ctx,
                &pod,
                &api,
                &mut status,
                &workdir,
                &log,
                deadline,
                &mut stop,
            )
            .await
        }
        Err(err) => Outcome::failed(
            Some("StartError"),
            format!("cannot open {}: {err}", log_path.display()),
        ),
    };
    let _ = std::fs::remove_dir_all(&workdir);
    if outcome.gone {
        info!(pod = %pod_key(&pod), "pod is gone; process stopped");
        return;
    }
    status.finish(
        outcome.phase,
        outcome.reason.clone(),
        outcome.message.clone(),
    );
    info!(pod = %pod_key(&pod), phase = outcome.phase, reason = outcome.reason.as_deref().unwrap_or(""), "finished");
    patch_status(&api, &name, &status).await;
    if outcome.deleted {
        crate::finish_deletion(ctx, &pod).await;
    }
}

/// The Pod's identity: a kubeconfig with a token of its ServiceAccount bound to the Pod, made by the
/// TokenRequest API like the kubelet's projected token; None when the Pod opts out.
async fn write_identity(ctx: &Ctx, pod: &Pod, workdir: &Path) -> Result<Option<PathBuf>> {
    let spec = pod.spec.clone().unwrap_or_default();
    if spec.automount_service_account_token == Some(false) {
        return Ok(None);
    }
    let ns = pod.namespace().unwrap_or_default();
    let sa_name = spec
        .service_account_name
        .clone()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "default".into());
    let sas: Api<ServiceAccount> = Api::namespaced(ctx.client.clone(), &ns);
    let request = TokenRequest {
        spec: TokenRequestSpec {
            audiences: vec![],
            bound_object_ref: Some(BoundObjectReference {
                api_version: Some("v1".into()),
                kind: Some("Pod".into()),
                name: Some(pod.name_any()),
                uid: pod.uid(),
            }),
            expiration_seconds: Some(TOKEN_SECONDS),
        },
        ..TokenRequest::default()
    };
    let response = sas
        .create_token_request(&sa_name, &PostParams::default(), &request)
        .await
        .with_context(|| format!("requesting a token for serviceaccount {ns}/{sa_name}"))?;
    let token = response
        .status
        .context("token request without status")?
        .token;
    let user = format!("system:serviceaccount:{ns}:{sa_name}");
    let kubeconfig = serde_json::json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "testbed", "cluster": ctx.cluster}],
        "users": [{"name": user, "user": {"token": token}}],
        "contexts": [{"name": "pod", "context": {"cluster": "testbed", "user": user, "namespace": ns}}],
        "current-context": "pod",
    });
    let path = workdir.join("kubeconfig");
    let mut file = OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .mode(0o600)
        .open(&path)
        .with_context(|| format!("writing {}", path.display()))?;
    file.write_all(serde_json::to_string_pretty(&kubeconfig)?.as_bytes())?;
    Ok(Some(path))
}

fn prepare_workdir(pod: &Pod, workdir: &Path) -> std::io::Result<()> {
    for sub in ["tmp", "home"] {
        std::fs::create_dir_all(workdir.join(sub))?;
    }
    let volumes = pod
        .spec
        .as_ref()
        .and_then(|s| s.volumes.clone())
        .unwrap_or_default();
    for volume in volumes.iter().filter(|v| v.empty_dir.is_some()) {
        std::fs::create_dir_all(workdir.join("volumes").join(&volume.name))?;
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
async fn execute(
    ctx: &Ctx,
    pod: &Pod,
    api: &Api<Pod>,
    status: &mut PodStatus,
    workdir: &Path,
    log: &Arc<Mutex<File>>,
    deadline: Option<Instant>,
    stop: &mut watch::Receiver<Option<Stop>>,
) -> Outcome {
    let spec = pod.spec.clone().unwrap_or_default();
    let init = spec.init_containers.clone().unwrap_or_default();
    for c in &init {
        if c.restart_policy.as_deref() == Some("Always") {
            return Outcome::failed(
                Some("UnsupportedCommand"),
                format!(
                    "init container {:?} is a sidecar (restartPolicy Always); the stand-in does not run sidecars",
                    c.name
                ),
            );
        }
    }
    for c in init.iter().chain(spec.containers.iter()) {
        if let Err(message) = env::program_args(c) {
            warn!(pod = %pod_key(pod), "{message}");
            return Outcome::failed(Some("UnsupportedCommand"), message);
        }
    }
    if !ctx.args.binary.is_file() {
        return Outcome::failed(
            Some("StartError"),
            format!(
                "{} does not exist; build it with `cargo build --bin scheduled-exports`",
                ctx.args.binary.display()
            ),
        );
    }
    if let Err(err) = prepare_workdir(pod, workdir) {
        return Outcome::failed(
            Some("StartError"),
            format!("cannot create {}: {err}", workdir.display()),
        );
    }
    let kubeconfig = match write_identity(ctx, pod, workdir).await {
        Ok(path) => path,
        Err(err) => return Outcome::failed(Some("CreateContainerConfigError"), format!("{err:#}")),
    };
    let restart_on_failure = spec.restart_policy.as_deref() == Some("OnFailure");
    let grace =
        Duration::from_secs(spec.termination_grace_period_seconds.unwrap_or(30).max(0) as u64);
    let mut refs = Refs::new(&ctx.client, &pod.namespace().unwrap_or_default());

    let all: Vec<(bool, usize, &Container)> = init
        .iter()
        .enumerate()
        .map(|(i, c)| (true, i, c))
        .chain(
            spec.containers
                .iter()
                .enumerate()
                .map(|(i, c)| (false, i, c)),
        )
        .collect();
    for (is_init, index, container) in all {
        let mut backoff = Duration::from_secs(10);
        loop {
            if let Some(s) = *stop.borrow() {
                return Outcome::stopped(s);
            }
            let env = match env::container_env(&mut refs, pod, &ctx.args.node_name, container).await
            {
                Ok(env) => env,
                Err(err) => {
                    return Outcome::failed(
                        Some("CreateContainerConfigError"),
                        format!("container {:?}: {err:#}", container.name),
                    );
                }
            };
            let mounts = env::empty_dir_mounts(pod, container, &workdir.join("volumes"));
            let args: Vec<String> = env::program_args(container)
                .unwrap_or_default()
                .iter()
                .map(|a| env::rewrite_mount_path(&env::expand(a, |n| env.get(n)), &mounts))
                .collect();
            let child_env = process_env(pod, env, &mounts, workdir, kubeconfig.as_deref());
            let cwd = container
                .working_dir
                .as_deref()
                .map(|d| PathBuf::from(env::rewrite_mount_path(d, &mounts)))
                .filter(|d| d.is_dir())
                .unwrap_or_else(|| workdir.to_path_buf());

            write_log(
                log,
                &format!(
                    "# testbed-kubelet {} container {} ({}): {} {}",
                    now(),
                    container.name,
                    pod_key(pod),
                    ctx.args.binary.display(),
                    args.join(" ")
                ),
            );
            let started_at = now();
            let process = match spawn(&ctx.args.binary, &args, &child_env, &cwd, log) {
                Ok(p) => p,
                Err(err) => {
                    let message = format!(
                        "container {:?}: cannot start {}: {err}",
                        container.name,
                        ctx.args.binary.display()
                    );
                    set_state(
                        status,
                        is_init,
                        index,
                        State::Terminated(Terminated {
                            exit_code: 128,
                            reason: "StartError".into(),
                            message: Some(message.clone()),
                            started_at: None,
                            finished_at: now(),
                        }),
                    );
                    return Outcome::failed(Some("StartError"), message);
                }
            };
            let _ = std::fs::write(workdir.join("pid"), format!("{}\n", process.pid));
            {
                let c = container_mut(status, is_init, index);
                c.pid = Some(process.pid);
                c.state = State::Running {
                    started_at: started_at.clone(),
                };
            }
            if !is_init {
                status.running();
            }
            info!(pod = %pod_key(pod), container = %container.name, pid = process.pid, "container started");
            patch_status(api, &pod.name_any(), status).await;

            let Process { pid, mut waiter } = process;
            let interrupted: Option<Outcome>;
            let finished = tokio::select! {
                done = &mut waiter => { interrupted = None; done }
                s = stop_requested(stop) => {
                    let grace = match s {
                        Stop::Deleted { grace_seconds } => Duration::from_secs(grace_seconds.max(0) as u64),
                        Stop::Gone => Duration::ZERO,
                        Stop::Shutdown => SHUTDOWN_GRACE.min(grace),
                    };
                    interrupted = Some(Outcome::stopped(s));
                    terminate(pid, &mut waiter, grace).await
                }
                () = deadline_reached(deadline) => {
                    interrupted = Some(Outcome::deadline());
                    terminate(pid, &mut waiter, grace).await
                }
            };
            let (exit, tail) = match finished {
                Ok((Ok(exit), tail)) => (exit_code(exit), tail),
                Ok((Err(err), tail)) => {
                    warn!(pod = %pod_key(pod), error = %err, "waiting for the process failed");
                    (137, tail)
                }
                Err(err) => {
                    warn!(pod = %pod_key(pod), error = %err, "process waiter failed");
                    (137, String::new())
                }
            };
            write_log(
                log,
                &format!(
                    "# testbed-kubelet {} container {} exited with code {exit}",
                    now(),
                    container.name
                ),
            );
            info!(pod = %pod_key(pod), container = %container.name, exit, "container exited");
            let terminated = Terminated {
                exit_code: exit,
                reason: if exit == 0 { "Completed" } else { "Error" }.into(),
                message: (!tail.is_empty()).then(|| tail.clone()),
                started_at: Some(started_at),
                finished_at: now(),
            };
            set_state(
                status,
                is_init,
                index,
                State::Terminated(terminated.clone()),
            );
            if let Some(outcome) = interrupted {
                return outcome;
            }
            if exit == 0 {
                break;
            }
            if !restart_on_failure {
                let mut message = format!("container {:?} exited with code {exit}", container.name);
                if !tail.is_empty() {
                    message.push_str(": ");
                    message.push_str(&tail);
                }
                return Outcome::failed(None, message);
            }
            // restartPolicy OnFailure: the kubelet restarts the container in place with a back-off;
            // the Job controller counts restarts against backoffLimit and deletes the Pod when done.
            {
                let c = container_mut(status, is_init, index);
                c.last = Some(terminated);
                c.restart_count += 1;
                c.state = State::Waiting {
                    reason: "CrashLoopBackOff".into(),
                    message: Some(format!(
                        "back-off {}s restarting failed container",
                        backoff.as_secs()
                    )),
                };
            }
            status.not_ready();
            patch_status(api, &pod.name_any(), status).await;
            tokio::select! {
                () = tokio::time::sleep(backoff) => {}
                s = stop_requested(stop) => return Outcome::stopped(s),
                () = deadline_reached(deadline) => return Outcome::deadline(),
            }
            backoff = (backoff * 2).min(Duration::from_secs(300));
        }
        if !is_init && index + 1 < spec.containers.len() {
            status.not_ready();
        }
    }
    Outcome {
        phase: "Succeeded",
        reason: None,
        message: None,
        deleted: false,
        gone: false,
    }
}

fn container_mut(status: &mut PodStatus, is_init: bool, index: usize) -> &mut ContainerState {
    if is_init {
        &mut status.init[index]
    } else {
        &mut status.main[index]
    }
}

fn set_state(status: &mut PodStatus, is_init: bool, index: usize, state: State) {
    container_mut(status, is_init, index).state = state;
}

/// The process's whole environment: a few basics of the stand-in's own, a private HOME and TMPDIR,
/// the container's env (emptyDir mount paths rewritten) and KUBECONFIG with the Pod's identity.
fn process_env(
    pod: &Pod,
    env: EnvList,
    mounts: &[(String, PathBuf)],
    workdir: &Path,
    kubeconfig: Option<&Path>,
) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for name in env::PASSED_THROUGH {
        if let Ok(value) = std::env::var(name) {
            out.insert(name.to_string(), value);
        }
    }
    out.entry("PATH".into())
        .or_insert_with(|| "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into());
    out.insert("HOME".into(), workdir.join("home").display().to_string());
    out.insert("TMPDIR".into(), workdir.join("tmp").display().to_string());
    out.insert("HOSTNAME".into(), pod.name_any());
    let mut env = env;
    env.map_values(|v| env::rewrite_mount_path(v, mounts));
    for (name, value) in env.iter() {
        out.insert(name.to_string(), value.to_string());
    }
    if let Some(path) = kubeconfig {
        out.insert("KUBECONFIG".into(), path.display().to_string());
    }
    out
}

struct Process {
    pid: u32,
    waiter: JoinHandle<(std::io::Result<ExitStatus>, String)>,
}

fn write_log(log: &Arc<Mutex<File>>, line: &str) {
    if let Ok(mut file) = log.lock() {
        let _ = writeln!(file, "{line}");
    }
}

/// Copies a pipe into the Pod's log line by line, keeping the tail if asked.
fn pump(
    pipe: impl Read + Send + 'static,
    log: Arc<Mutex<File>>,
    tail: Option<Arc<Mutex<Vec<u8>>>>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let mut reader = BufReader::new(pipe);
        let mut line = Vec::new();
        loop {
            line.clear();
            match reader.read_until(b'\n', &mut line) {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
            if !line.ends_with(b"\n") {
                line.push(b'\n');
            }
            if let Ok(mut file) = log.lock() {
                let _ = file.write_all(&line);
            }
            if let Some(tail) = &tail
                && let Ok(mut tail) = tail.lock()
            {
                tail.extend_from_slice(&line);
                if tail.len() > 2 * MESSAGE_BYTES {
                    let cut = tail.len() - MESSAGE_BYTES;
                    tail.drain(..cut);
                }
            }
        }
    })
}

/// The last MESSAGE_BYTES of stderr, starting at a line boundary when one is near.
fn tail_message(bytes: &[u8]) -> String {
    let mut start = bytes.len().saturating_sub(MESSAGE_BYTES);
    if start > 0
        && let Some(nl) = bytes[start..].iter().position(|b| *b == b'\n')
        && nl + 1 < bytes.len() - start
    {
        start += nl + 1;
    }
    String::from_utf8_lossy(&bytes[start..]).trim().to_string()
}

fn spawn(
    binary: &Path,
    args: &[String],
    env: &BTreeMap<String, String>,
    cwd: &Path,
    log: &Arc<Mutex<File>>,
) -> std::io::Result<Process> {
    let mut child = Command::new(binary)
        .args(args)
        .env_clear()
        .envs(env)
        .current_dir(cwd)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Its own process group, so signals reach anything it starts and never the stand-in.
        .process_group(0)
        .spawn()?;
    let pid = child.id();
    let tail = Arc::new(Mutex::new(Vec::new()));
    let out = child.stdout.take().map(|p| pump(p, log.clone(), None));
    let err = child
        .stderr
        .take()
        .map(|p| pump(p, log.clone(), Some(tail.clone())));
    let waiter = tokio::task::spawn_blocking(move || {
        let status = child.wait();
        for reader in [out, err].into_iter().flatten() {
            let _ = reader.join();
        }
        let tail = tail.lock().map(|t| tail_message(&t)).unwrap_or_default();
        (status, tail)
    });
    Ok(Process { pid, waiter })
}

/// SIGTERM to the process group, SIGKILL after `grace`; resolves once the process is reaped.
async fn terminate(
    pid: u32,
    waiter: &mut JoinHandle<(std::io::Result<ExitStatus>, String)>,
    grace: Duration,
) -> Result<(std::io::Result<ExitStatus>, String), tokio::task::JoinError> {
    if !waiter.is_finished() {
        signal_group(pid, "TERM");
    }
    match tokio::time::timeout(grace, &mut *waiter).await {
        Ok(done) => done,
        Err(_) => {
            if !waiter.is_finished() {
                signal_group(pid, "KILL");
            }
            waiter.await
        }
    }
}

fn exit_code(status: ExitStatus) -> i32 {
    status
        .code()
        .unwrap_or_else(|| 128 + status.signal().unwrap_or(9))
}
