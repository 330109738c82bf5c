//! SIGTERM ends the operator within seconds in every state it can be in, and a leader gives its
//! Lease up on the way out so a standby takes over at once. Each test runs the operator binary
//! against the test bed's API server (directly, through a TCP proxy this test controls, with an
//! identity that cannot fill the cache, or at a closed port), sends SIGTERM and bounds the exit.
//! The same proxy shows that no API call waits for ever on a server that stopped answering.

mod common;

use std::io::BufRead;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use k8s_openapi::api::coordination::v1::Lease;
use kube::api::{Api, PostParams};
use serde_json::json;

const LEASE: &str = "scheduled-exports-controller";
/// The operator's grace for work in progress (3 s) plus its Lease release (2 s) plus margin.
const EXIT_BOUND: Duration = Duration::from_secs(10);
const WAIT: Duration = Duration::from_secs(60);

/// An operator process, its stderr collected line by line.
struct Operator {
    child: Child,
    log: Arc<Mutex<Vec<String>>>,
    identity: String,
    _work: tempfile::TempDir,
}

impl Operator {
    fn start(namespace: &str, identity: &str, kubeconfig: &Path) -> Self {
        let work = tempfile::tempdir().expect("work dir");
        let store = format!("file://{}", work.path().display());
        let mut child = Command::new(env!("CARGO_BIN_EXE_scheduled-exports"))
            .args([
                "controller",
                "--namespace",
                namespace,
                "--lease-namespace",
                namespace,
                "--identity",
                identity,
                // No Job runs in these tests; the image is never pulled.
                "--image",
                "example.invalid/scheduled-exports:never",
                "--artifact-store",
                &store,
                "--listen-address",
                "127.0.0.1:0",
            ])
            .env_clear()
            .envs(binary_env())
            .env("KUBECONFIG", kubeconfig)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start the operator");
        let log = Arc::new(Mutex::new(Vec::new()));
        let stderr = child.stderr.take().expect("stderr");
        let lines = log.clone();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                lines.lock().expect("log").push(line);
            }
        });
        Self {
            child,
            log,
            identity: identity.to_string(),
            _work: work,
        }
    }

    fn log_text(&self) -> String {
        self.log.lock().expect("log").join("\n")
    }

    /// Waits until a log line contains `needle`, failing with the log if the process exits first.
    async fn wait_for_log(&mut self, needle: &str) {
        let give_up = Instant::now() + WAIT;
        loop {
            if self
                .log
                .lock()
                .expect("log")
                .iter()
                .any(|l| l.contains(needle))
            {
                return;
            }
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                panic!(
                    "{} exited ({status}) before logging {needle:?}:\n{}",
                    self.identity,
                    self.log_text()
                );
            }
            assert!(
                Instant::now() < give_up,
                "{} did not log {needle:?} within {WAIT:?}:\n{}",
                self.identity,
                self.log_text()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Sends SIGTERM and waits for the exit, at most `EXIT_BOUND`; returns how long it took.
    async fn terminate(&mut self) -> Duration {
        let sent = Instant::now();
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -TERM");
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                assert!(
                    status.success(),
                    "{} exited with {status} after SIGTERM:\n{}",
                    self.identity,
                    self.log_text()
                );
                return sent.elapsed();
            }
            if sent.elapsed() > EXIT_BOUND {
                let _ = self.child.kill();
                panic!(
                    "{} still running {EXIT_BOUND:?} after SIGTERM:\n{}",
                    self.identity,
                    self.log_text()
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The test bed's kubeconfig, as a YAML value to alter.
fn kubeconfig() -> serde_yaml::Value {
    let text = std::fs::read_to_string(kubeconfig_path()).expect("read the kubeconfig");
    serde_yaml::from_str(&text).expect("kubeconfig YAML")
}

fn write_kubeconfig(dir: &Path, name: &str, config: &serde_yaml::Value) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, serde_yaml::to_string(config).expect("YAML")).expect("write kubeconfig");
    path
}

/// The kubeconfig with the API server at `server` instead.
fn kubeconfig_for_server(dir: &Path, name: &str, server: &str) -> PathBuf {
    let mut config = kubeconfig();
    config["clusters"][0]["cluster"]["server"] = server.into();
    write_kubeconfig(dir, name, &config)
}

fn api_server_address() -> SocketAddr {
    let url = url::Url::parse(&env_var("KUBE_APISERVER_URL")).expect("API server URL");
    format!(
        "{}:{}",
        url.host_str().expect("host"),
        url.port().expect("port")
    )
    .parse()
    .expect("an address")
}

fn leases(client: &kube::Client, namespace: &str) -> Api<Lease> {
    Api::namespaced(client.clone(), namespace)
}

async fn holder(client: &kube::Client, namespace: &str) -> Option<String> {
    leases(client, namespace)
        .get_opt(LEASE)
        .await
        .expect("get the Lease")?
        .spec?
        .holder_identity
        .filter(|holder| !holder.is_empty())
}

/// The Lease names no holder: the leader gave it up rather than letting it expire.
async fn assert_released(client: &kube::Client, namespace: &str, operator: &Operator) {
    assert_eq!(
        holder(client, namespace).await,
        None,
        "the Lease was not released:\n{}",
        operator.log_text()
    );
}

async fn namespace_with_crd(prefix: &str) -> (kube::Client, String) {
    let client = client().await;
    install_crd(&client).await;
    let namespace = test_namespace(&client, prefix).await;
    (client, namespace)
}

#[tokio::test]
async fn sigterm_ends_a_standby_at_once_and_leaves_the_holders_lease_alone() {
    let (client, namespace) = namespace_with_crd("sx-stop-standby").await;
    let now = k8s_openapi::jiff::Timestamp::now();
    let lease: Lease = serde_json::from_value(json!({
        "metadata": {"name": LEASE},
        "spec": {
            "holderIdentity": "another-replica",
            "leaseDurationSeconds": 3600,
            "renewTime": now.to_string(),
            "acquireTime": now.to_string(),
        }
    }))
    .expect("lease");
    leases(&client, &namespace)
        .create(&PostParams::default(), &lease)
        .await
        .expect("create the Lease");

    let mut operator = Operator::start(&namespace, "standby", &kubeconfig_path());
    operator.wait_for_log("waiting as a standby").await;
    operator.terminate().await;
    assert_eq!(
        holder(&client, &namespace).await.as_deref(),
        Some("another-replica"),
        "a standby never touches the holder's Lease"
    );
    delete_namespace(&client, &namespace).await;
}

#[tokio::test]
async fn sigterm_just_after_becoming_leader_releases_the_lease_and_the_standby_takes_over() {
    let (client, namespace) = namespace_with_crd("sx-stop-leader").await;
    let mut first = Operator::start(&namespace, "replica-a", &kubeconfig_path());
    first.wait_for_log("became leader").await;
    let mut second = Operator::start(&namespace, "replica-b", &kubeconfig_path());
    second.wait_for_log("waiting as a standby").await;

    first.terminate().await;
    assert_ne!(
        holder(&client, &namespace).await.as_deref(),
        Some("replica-a"),
        "the leader gave the Lease up:\n{}",
        first.log_text()
    );
    // The standby retries every 5 s; an expiring Lease (15 s) would take longer.
    let took_over = Instant::now();
    second.wait_for_log("became leader").await;
    assert!(
        took_over.elapsed() < Duration::from_secs(10),
        "the standby took {:?} to take over",
        took_over.elapsed()
    );

    // SIGTERM at once after "became leader", before its cache can have filled.
    second.terminate().await;
    assert_released(&client, &namespace, &second).await;
    delete_namespace(&client, &namespace).await;
}

/// A kubeconfig of a ServiceAccount that may hold the Lease but not read ScheduledExports or
/// Jobs, so the controller leads with a cache that never fills (as when lists fail while the
/// API server restarts).
async fn lease_only_kubeconfig(client: &kube::Client, namespace: &str, dir: &Path) -> PathBuf {
    use k8s_openapi::api::core::v1::ServiceAccount;
    use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
    let post = PostParams::default();
    let account: ServiceAccount =
        serde_json::from_value(json!({"metadata": {"name": "lease-only"}})).expect("sa");
    Api::<ServiceAccount>::namespaced(client.clone(), namespace)
        .create(&post, &account)
        .await
        .expect("create the ServiceAccount");
    let role: Role = serde_json::from_value(json!({
        "metadata": {"name": "lease-only"},
        "rules": [
            {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"],
             "verbs": ["get", "create", "update"]},
            {"apiGroups": ["", "events.k8s.io"], "resources": ["events"],
             "verbs": ["create", "patch"]}
        ]
    }))
    .expect("role");
    Api::<Role>::namespaced(client.clone(), namespace)
        .create(&post, &role)
        .await
        .expect("create the Role");
    let binding: RoleBinding = serde_json::from_value(json!({
        "metadata": {"name": "lease-only"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "lease-only"},
        "subjects": [{"kind": "ServiceAccount", "name": "lease-only", "namespace": namespace}]
    }))
    .expect("binding");
    Api::<RoleBinding>::namespaced(client.clone(), namespace)
        .create(&post, &binding)
        .await
        .expect("create the RoleBinding");
    let (ok, token, err) = kubectl(&[
        "create",
        "token",
        "lease-only",
        "-n",
        namespace,
        "--duration",
        "1h",
    ]);
    assert!(ok, "kubectl create token: {err}");
    let mut config = kubeconfig();
    config["users"][0]["user"] =
        serde_yaml::to_value(json!({"token": token.trim()})).expect("user");
    write_kubeconfig(dir, "lease-only.kubeconfig", &config)
}

#[tokio::test]
async fn sigterm_ends_a_leader_whose_cache_never_filled_and_releases_the_lease() {
    let (client, namespace) = namespace_with_crd("sx-stop-nocache").await;
    let dir = tempfile::tempdir().expect("dir");
    let kubeconfig = lease_only_kubeconfig(&client, &namespace, dir.path()).await;
    let mut operator = Operator::start(&namespace, "replica-nocache", &kubeconfig);
    operator.wait_for_log("became leader").await;
    // Its watches are refused, so it is leading with an empty cache, for as long as it runs.
    operator.wait_for_log("forbidden").await;
    operator.terminate().await;
    assert_released(&client, &namespace, &operator).await;
    delete_namespace(&client, &namespace).await;
}

#[tokio::test]
async fn sigterm_ends_an_operator_that_cannot_reach_the_api_server() {
    let (client, namespace) = namespace_with_crd("sx-stop-closed").await;
    let dir = tempfile::tempdir().expect("dir");
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = closed.local_addr().expect("addr").port();
    drop(closed);
    let kubeconfig = kubeconfig_for_server(
        dir.path(),
        "closed.kubeconfig",
        &format!("https://127.0.0.1:{port}"),
    );
    let mut operator = Operator::start(&namespace, "replica-unreachable", &kubeconfig);
    // It keeps trying instead of exiting, and still ends at once on SIGTERM.
    operator
        .wait_for_log("cannot read the leader Lease; retrying")
        .await;
    operator.terminate().await;
    delete_namespace(&client, &namespace).await;
}

/// A TCP proxy that can hold every byte in both directions: a server (the API server, the SFTP
/// server) that accepted the connections and stopped answering, as during a restart behind a load
/// balancer.
struct FreezingProxy {
    address: SocketAddr,
    frozen: tokio::sync::watch::Sender<bool>,
    accepted: Arc<std::sync::atomic::AtomicUsize>,
    /// Chunks clients sent while frozen: requests made to the silent server.
    held: Arc<std::sync::atomic::AtomicUsize>,
    accept: tokio::task::JoinHandle<()>,
}

impl FreezingProxy {
    /// Listens on the upstream's IP, which clients already trust and reach.
    async fn start(upstream: SocketAddr) -> Self {
        let listener = tokio::net::TcpListener::bind((upstream.ip(), 0))
            .await
            .expect("bind the proxy");
        let address = listener.local_addr().expect("proxy address");
        let (frozen, watch) = tokio::sync::watch::channel(false);
        let accepted = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counter = accepted.clone();
        let held = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let held_requests = held.clone();
        let accept = tokio::spawn(async move {
            while let Ok((downstream, _)) = listener.accept().await {
                counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let watch = watch.clone();
                let held_requests = held_requests.clone();
                tokio::spawn(async move {
                    let Ok(upstream) = tokio::net::TcpStream::connect(upstream).await else {
                        return;
                    };
                    let (down_read, down_write) = downstream.into_split();
                    let (up_read, up_write) = upstream.into_split();
                    tokio::join!(
                        pipe(down_read, up_write, watch.clone(), Some(held_requests)),
                        pipe(up_read, down_write, watch, None),
                    );
                });
            }
        });
        Self {
            address,
            frozen,
            accepted,
            held,
            accept,
        }
    }

    fn freeze(&self) {
        let _ = self.frozen.send(true);
    }

    /// Chunks clients sent since the proxy froze.
    fn held_requests(&self) -> usize {
        self.held.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Connections accepted so far.
    fn connections(&self) -> usize {
        self.accepted.load(std::sync::atomic::Ordering::SeqCst)
    }
}

impl Drop for FreezingProxy {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

/// Copies bytes from `from` to `to`, holding them while the proxy is frozen.
async fn pipe(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mut frozen: tokio::sync::watch::Receiver<bool>,
    held: Option<Arc<std::sync::atomic::AtomicUsize>>,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut buffer = vec![0u8; 16 * 1024];
    loop {
        let read = match from.read(&mut buffer).await {
            Ok(0) | Err(_) => return,
            Ok(read) => read,
        };
        if *frozen.borrow()
            && let Some(held) = &held
        {
            held.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
        if frozen.wait_for(|frozen| !*frozen).await.is_err() {
            return;
        }
        if to.write_all(&buffer[..read]).await.is_err() {
            return;
        }
    }
}

#[tokio::test]
async fn sigterm_ends_a_leader_while_the_api_server_does_not_answer() {
    let (client, namespace) = namespace_with_crd("sx-stop-frozen").await;
    let proxy = FreezingProxy::start(api_server_address()).await;
    let dir = tempfile::tempdir().expect("dir");
    let kubeconfig = kubeconfig_for_server(
        dir.path(),
        "proxy.kubeconfig",
        &format!("https://{}", proxy.address),
    );
    let object: scheduled_exports::resource::ScheduledExport =
        serde_json::from_value(valid_object("daily")).expect("object");
    Api::namespaced(client.clone(), &namespace)
        .create(&PostParams::default(), &object)
        .await
        .expect("create ScheduledExport");
    let mut operator = Operator::start(&namespace, "replica-frozen", &kubeconfig);
    operator.wait_for_log("became leader").await;
    // Reconciling: its first status write is there.
    let objects: Api<scheduled_exports::resource::ScheduledExport> =
        Api::namespaced(client.clone(), &namespace);
    eventually(WAIT, "the operator's first reconcile", || async {
        objects.get("daily").await.ok()?.status?.next_run_time
    })
    .await;

    // Every request in flight (watches, renewals, the next reconcile's calls) now hangs.
    proxy.freeze();
    operator.terminate().await;
    delete_namespace(&client, &namespace).await;
}

/// Holds an exclusive lock on `interactions`, so an export blocks on the database until released.
async fn lock_interactions(database_url: &str) -> tokio_postgres::Client {
    let client = connect_database(database_url).await;
    client
        .batch_execute("BEGIN; LOCK TABLE interactions IN ACCESS EXCLUSIVE MODE")
        .await
        .expect("lock interactions");
    client
}

#[tokio::test]
async fn a_status_write_to_an_api_server_that_stopped_answering_fails_instead_of_hanging() {
    let fixture = common::fixture::Fixture::new("sx-deadline", 5).await;
    let proxy = FreezingProxy::start(api_server_address()).await;
    let dir = tempfile::tempdir().expect("dir");
    let kubeconfig = kubeconfig_for_server(
        dir.path(),
        "proxy.kubeconfig",
        &format!("https://{}", proxy.address),
    );
    let lock = lock_interactions(&fixture.database_url).await;
    let export = Command::new(env!("CARGO_BIN_EXE_scheduled-exports"))
        .args([
            "export",
            "--namespace",
            &fixture.namespace,
            "--name",
            "daily",
            "--slot",
            "2026-11-30T12:00:00Z",
            "--artifact-store",
            &fixture.artifact_store,
            "--timeout",
            "5s",
        ])
        .env_clear()
        .envs(binary_env())
        .env("KUBECONFIG", &kubeconfig)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the export");
    // Its first status write went through; it now waits for the database.
    fixture
        .wait_for("daily", "the run recorded as started", |o| {
            let phase = o.status.as_ref()?.last_run.as_ref()?.phase?;
            (phase.as_str() == "Running").then_some(())
        })
        .await;
    // The API server stops answering on the connection the export keeps for its next write.
    proxy.freeze();
    lock.batch_execute("ROLLBACK")
        .await
        .expect("release the lock");
    let started = Instant::now();
    let output = tokio::task::spawn_blocking(move || {
        let mut export = export;
        let give_up = Instant::now() + Duration::from_secs(60);
        loop {
            if export.try_wait().expect("try_wait").is_some() {
                return Some(export.wait_with_output().expect("output"));
            }
            if Instant::now() > give_up {
                let _ = export.kill();
                let _ = export.wait();
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    })
    .await
    .expect("join");
    let output =
        output.expect("the export still waited 60 s for an API server that does not answer");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("Kubernetes API"), "{stderr}");
    // The read timeout (30 s), not the 60 s bound above, ended it.
    assert!(
        started.elapsed() < Duration::from_secs(45),
        "{:?}",
        started.elapsed()
    );
    fixture.cleanup().await;
}

// Multi-threaded: the proxy keeps serving while this thread waits for the export binary.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_check_round_stuck_on_a_silent_sftp_server_does_not_hold_up_shutdown() {
    use common::running::{RunningController, TEST_PERIODS};
    use scheduled_exports::operator::{Context, ControllerConfig, DeliverySettings};

    let fixture = common::fixture::Fixture::new("sx-stop-round", 5).await;
    // The object delivers through a proxy to the test bed's SFTP server.
    let sftp_port: u16 = env_var("SFTP_PORT").parse().expect("port");
    let proxy = FreezingProxy::start(
        format!("{}:{sftp_port}", env_var("SFTP_HOST"))
            .parse()
            .expect("SFTP address"),
    )
    .await;
    let mut secret = sftp_secret_data();
    for (key, value) in &mut secret {
        if *key == "knownHosts" {
            *value = value.replace(
                &format!(":{sftp_port} "),
                &format!(":{} ", proxy.address.port()),
            );
        }
    }
    create_secret(
        &fixture.client,
        &fixture.namespace,
        "sftp-via-proxy",
        &secret,
    )
    .await;
    fixture
        .patch_spec(
            "daily",
            json!({"destination": {"sftp": {
                "port": proxy.address.port(),
                "secretRef": {"name": "sftp-via-proxy"},
            }}}),
        )
        .await;
    let output = fixture.export("daily", "2026-11-30T12:00:00Z");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );

    // The server now accepts connections and says nothing; the checker's first round (its
    // retention pass and, an hour on, its recheck) hangs in the SSH handshake.
    proxy.freeze();
    let connections_before = proxy.connections();
    let clock = scheduled_exports::clock::ManualClock::new(
        chrono::Utc::now() + chrono::TimeDelta::hours(1),
    );
    let config = ControllerConfig {
        namespace: Some(fixture.namespace.clone()),
        default_zone: chrono_tz::UTC,
        job: export_job_settings(&fixture.artifact_store),
        delivery: DeliverySettings {
            s3: testbed_s3_options(),
            ..DeliverySettings::default()
        },
        instance: "tests".to_string(),
        periods: TEST_PERIODS,
    };
    let controller = RunningController::spawn(Arc::new(Context::new(
        fixture.client.clone(),
        Arc::new(clock),
        config,
    )));
    eventually(WAIT, "a check round connecting to the server", || async {
        (proxy.connections() > connections_before).then_some(())
    })
    .await;

    let stopping = Instant::now();
    controller.stop().await;
    assert!(
        stopping.elapsed() < EXIT_BOUND,
        "stopping took {:?} with a round in progress",
        stopping.elapsed()
    );
    fixture.cleanup().await;
}

// Multi-threaded: the proxy keeps serving while the controller runs in this process.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopping_the_controller_mid_reconcile_on_a_silent_api_server_takes_seconds() {
    use common::running::{RunningController, TEST_PERIODS};
    use scheduled_exports::operator::{Context, ControllerConfig, DeliverySettings};

    let (client, namespace) = namespace_with_crd("sx-stop-reconcile").await;
    let object: scheduled_exports::resource::ScheduledExport =
        serde_json::from_value(valid_object("daily")).expect("object");
    let objects: Api<scheduled_exports::resource::ScheduledExport> =
        Api::namespaced(client.clone(), &namespace);
    objects
        .create(&PostParams::default(), &object)
        .await
        .expect("create ScheduledExport");
    let proxy = FreezingProxy::start(api_server_address()).await;
    let dir = tempfile::tempdir().expect("dir");
    let kubeconfig = kubeconfig_for_server(
        dir.path(),
        "proxy.kubeconfig",
        &format!("https://{}", proxy.address),
    );
    // A client without read timeouts: the controller's own bound must end the stop.
    let proxied = kube::Client::try_from(
        kube::Config::from_custom_kubeconfig(
            kube::config::Kubeconfig::read_from(&kubeconfig).expect("kubeconfig"),
            &kube::config::KubeConfigOptions::default(),
        )
        .await
        .expect("config"),
    )
    .expect("client");
    let config = ControllerConfig {
        namespace: Some(namespace.clone()),
        default_zone: chrono_tz::UTC,
        job: export_job_settings("file:///tmp/sx-stop-reconcile"),
        delivery: DeliverySettings::default(),
        instance: "tests".to_string(),
        periods: TEST_PERIODS,
    };
    let clock = scheduled_exports::clock::ManualClock::new(chrono::Utc::now());
    let controller =
        RunningController::spawn(Arc::new(Context::new(proxied, Arc::new(clock), config)));
    eventually(WAIT, "the controller's first reconcile", || async {
        objects.get("daily").await.ok()?.status?.next_run_time
    })
    .await;

    // The next reconcile (every 500 ms on this clock) sends its first request and waits.
    proxy.freeze();
    eventually(WAIT, "a reconcile's request held", || async {
        (proxy.held_requests() > 0).then_some(())
    })
    .await;
    let stopping = Instant::now();
    controller.stop().await;
    assert!(
        stopping.elapsed() < EXIT_BOUND,
        "stopping took {:?} mid-reconcile",
        stopping.elapsed()
    );
    delete_namespace(&client, &namespace).await;
}
