//! Shared helpers for the integration tests: the test bed's environment, a client of its real API
//! server, the CRD, throwaway namespaces, and polling with a deadline.
#![allow(dead_code)] // each test binary uses its own subset

pub mod fixture;
pub mod gpg;
pub mod running;
pub mod toxiproxy;

use std::collections::HashMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};

pub fn repo_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The variables `tests/testbed/up` wrote to `target/testbed/env`.
pub fn testbed_env() -> &'static HashMap<String, String> {
    static ENV: OnceLock<HashMap<String, String>> = OnceLock::new();
    ENV.get_or_init(|| {
        let path = repo_root().join("target/testbed/env");
        match std::fs::read_to_string(&path) {
            Ok(text) => {
                let mut env = parse_env_file(&text);
                // An image built from a branch (tests/testbed/image/build) replaces the bed's.
                if let Ok(image) = std::env::var("SCHEDULED_EXPORTS_IMAGE") {
                    env.insert("SCHEDULED_EXPORTS_IMAGE".to_string(), image);
                }
                env
            }
            // tests/run sets SCHEDULED_EXPORTS_REQUIRE_TESTBED, so there a missing bed fails.
            Err(err) if std::env::var_os("SCHEDULED_EXPORTS_REQUIRE_TESTBED").is_some() => {
                panic!(
                    "cannot read {}: {err}; start the test bed with tests/testbed/up",
                    path.display()
                )
            }
            Err(_) => {
                eprintln!(
                    "\nThese tests need the test bed, which is not running ({} is missing).\n\
                     Start it with `tests/testbed/up` (as root), or run everything with `tests/run`.\n\
                     Skipping the rest of this test binary.",
                    path.display()
                );
                std::process::exit(0)
            }
        }
    })
}

/// Parses `export NAME=value` lines, with optional single or double quotes around the value.
pub fn parse_env_file(text: &str) -> HashMap<String, String> {
    text.lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .filter_map(|line| line.strip_prefix("export ").unwrap_or(line).split_once('='))
        .map(|(name, value)| {
            let value = value
                .strip_prefix('"')
                .and_then(|v| v.strip_suffix('"'))
                .or_else(|| value.strip_prefix('\'').and_then(|v| v.strip_suffix('\'')))
                .unwrap_or(value);
            (name.trim().to_string(), value.to_string())
        })
        .collect()
}

/// A variable of a part the test bed may not have yet (`what` names the part). Without it a test
/// returns early, saying so, unless `SCHEDULED_EXPORTS_REQUIRE_TESTBED` is set (as in
/// `tests/run`), where a missing part fails the test.
pub fn optional_env_var(name: &str, what: &str) -> Option<String> {
    let value = testbed_env().get(name).cloned();
    if value.is_none() {
        assert!(
            std::env::var_os("SCHEDULED_EXPORTS_REQUIRE_TESTBED").is_none(),
            "target/testbed/env does not export {name} ({what}); restart the test bed with tests/testbed/up"
        );
        eprintln!("target/testbed/env does not export {name} ({what}): skipping this test");
    }
    value
}

pub fn env_var(name: &str) -> String {
    testbed_env()
        .get(name)
        .cloned()
        .unwrap_or_else(|| panic!("target/testbed/env does not export {name}"))
}

pub fn kubeconfig_path() -> PathBuf {
    PathBuf::from(env_var("KUBECONFIG"))
}

pub async fn client() -> Client {
    let kubeconfig =
        Kubeconfig::read_from(kubeconfig_path()).expect("read the test bed kubeconfig");
    let config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .expect("kubeconfig is usable");
    Client::try_from(config).expect("client")
}

/// Polls `check` until it returns `Some`, failing the test with `what` after `deadline`.
pub async fn eventually<T, F, Fut>(deadline: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let give_up = tokio::time::Instant::now() + deadline;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < give_up,
            "timed out after {deadline:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Applies the CRD (server-side apply, so every test may call it) and waits until it is Established.
pub async fn install_crd(client: &Client) {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let crd = scheduled_exports::resource::crd();
    let name = crd.metadata.name.clone().expect("CRD has a name");
    crds.patch(
        &name,
        &PatchParams::apply("scheduled-exports-tests").force(),
        &Patch::Apply(&crd),
    )
    .await
    .expect("apply the CRD");
    eventually(
        Duration::from_secs(30),
        "the CRD to become Established",
        || {
            let crds = crds.clone();
            let name = name.clone();
            async move {
                let crd = crds.get(&name).await.ok()?;
                let established = crd.status?.conditions?.into_iter().any(|condition| {
                    condition.type_ == "Established" && condition.status == "True"
                });
                established.then_some(())
            }
        },
    )
    .await;
}

/// A fresh namespace for one test, so tests run in parallel without seeing each other's objects.
pub async fn test_namespace(client: &Client, prefix: &str) -> String {
    create_namespace(client, prefix, serde_json::json!({})).await
}

/// A fresh namespace like [`test_namespace`] that enforces the restricted Pod Security Standard
/// (latest version), so a Pod that level refuses is never created and the test sees it fail.
pub async fn restricted_namespace(client: &Client, prefix: &str) -> String {
    let labels = serde_json::json!({
        "pod-security.kubernetes.io/enforce": "restricted",
        "pod-security.kubernetes.io/enforce-version": "latest",
    });
    create_namespace(client, prefix, labels).await
}

async fn create_namespace(client: &Client, prefix: &str, mut labels: serde_json::Value) -> String {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let name = format!("{prefix}-{}", random_suffix());
    labels["scheduled-exports.test/owner"] = serde_json::json!("integration-tests");
    let namespace: Namespace = serde_json::from_value(serde_json::json!({
        "metadata": {"name": name, "labels": labels}
    }))
    .expect("namespace");
    namespaces
        .create(&PostParams::default(), &namespace)
        .await
        .expect("create namespace");
    name
}

pub async fn delete_namespace(client: &Client, name: &str) {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let _ = namespaces.delete(name, &DeleteParams::background()).await;
}

/// A random hex suffix for names that must not collide between parallel tests.
pub fn random_suffix() -> String {
    use rand::{RngCore, SeedableRng};
    let mut rng = rand::rngs::StdRng::from_os_rng();
    format!("{:08x}", rng.next_u32())
}

/// Runs the machine's kubectl against the test bed, returning (success, stdout, stderr).
pub fn kubectl(args: &[&str]) -> (bool, String, String) {
    let output = std::process::Command::new("kubectl")
        .env("KUBECONFIG", kubeconfig_path())
        .args(args)
        .output()
        .expect("run kubectl");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// A valid ScheduledExport as JSON, for tests to alter.
pub fn valid_object(name: &str) -> serde_json::Value {
    serde_json::json!({
        "apiVersion": "exports.crm.dev/v1alpha1",
        "kind": "ScheduledExport",
        "metadata": {"name": name},
        "spec": {
            "fileType": "interactions",
            "time": "07:00",
            "timeZone": "America/New_York",
            "source": {"secretRef": {"name": "crm-database"}},
            "destination": {"sftp": {
                "host": "sftp.example.edu",
                "username": "univ-example",
                "secretRef": {"name": "sftp-credentials"}
            }}
        }
    })
}

/// A fresh database on the test bed's PostgreSQL, so tests never see each other's rows.
/// Returns its URL (superuser credentials, as in `DATABASE_URL`).
pub async fn create_database(prefix: &str) -> String {
    let admin_url = env_var("DATABASE_URL");
    let name = format!("{prefix}_{}", random_suffix());
    let (client, connection) = tokio_postgres::connect(&admin_url, tokio_postgres::NoTls)
        .await
        .expect("connect to the test bed's PostgreSQL");
    let connection = tokio::spawn(connection);
    client
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .await
        .expect("create database");
    drop(client);
    let _ = connection.await;
    let (base, _) = admin_url
        .rsplit_once('/')
        .expect("DATABASE_URL has a database");
    format!("{base}/{name}")
}

/// Runs `sql` as the test bed's superuser on the database of `DATABASE_URL` (to create, copy and
/// drop a test's own databases).
pub async fn admin_execute(sql: &str) {
    connect_database(&env_var("DATABASE_URL"))
        .await
        .batch_execute(sql)
        .await
        .unwrap_or_else(|err| match err.as_db_error() {
            Some(db) => panic!("{sql}: {}", db.message()),
            None => panic!("{sql}: {err}"),
        });
}

/// The database a `postgres://` URL names.
pub fn database_name(url: &str) -> String {
    let url = url::Url::parse(url).expect("a postgres:// URL");
    url.path().trim_start_matches('/').to_string()
}

pub async fn connect_database(url: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .expect("connect");
    tokio::spawn(connection);
    client
}

/// A directory of its own under the SFTP server's `/exports`, owned by the SFTP user.
/// Returns (path as the server shows it, local path).
pub fn sftp_directory(name: &str) -> (String, PathBuf) {
    let local = PathBuf::from(env_var("SFTP_ROOT"))
        .join("exports")
        .join(name);
    create_sftp_user_dir(&local);
    (format!("/exports/{name}"), local)
}

/// Creates a directory the test bed's SFTP user owns (and so can write and delete in).
pub fn create_sftp_user_dir(path: &Path) {
    std::fs::create_dir_all(path).expect("create the SFTP test directory");
    let status = std::process::Command::new("chown")
        .arg(format!("{0}:{0}", env_var("SFTP_USER")))
        .arg(path)
        .status()
        .expect("run chown");
    assert!(status.success(), "chown the SFTP test directory");
}

/// Creates an Opaque Secret with string data.
pub async fn create_secret(client: &Client, namespace: &str, name: &str, data: &[(&str, String)]) {
    use k8s_openapi::api::core::v1::Secret;
    let secrets: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let string_data: std::collections::BTreeMap<String, String> = data
        .iter()
        .map(|(key, value)| (key.to_string(), value.clone()))
        .collect();
    let secret = Secret {
        metadata: kube::api::ObjectMeta {
            name: Some(name.to_string()),
            ..Default::default()
        },
        string_data: Some(string_data),
        ..Default::default()
    };
    secrets
        .create(&PostParams::default(), &secret)
        .await
        .expect("create secret");
}

/// The SFTP Secret for the test bed's server: private key and known_hosts.
pub fn sftp_secret_data() -> Vec<(&'static str, String)> {
    let read = |var: &str| std::fs::read_to_string(env_var(var)).expect("read test bed SFTP file");
    vec![
        ("privateKey", read("SFTP_PRIVATE_KEY_FILE")),
        ("knownHosts", read("SFTP_KNOWN_HOSTS_FILE")),
    ]
}

/// The header of an interactions file, as the contract names its columns.
pub const INTERACTION_COLUMNS: [&str; 16] = [
    "interaction_id",
    "interaction_import_id",
    "constituent_id",
    "constituent_import_id",
    "category",
    "interaction_type",
    "occurred_on",
    "summary",
    "description",
    "solicitors",
    "creator_user_id",
    "proposal_id",
    "proposal_import_id",
    "created_at",
    "updated_at",
    "deleted",
];

/// The secret values of the test bed, none of which may ever appear in output or status.
pub fn secret_values() -> Vec<String> {
    let mut values = vec![
        env_var("SFTP_PASSWORD"),
        env_var("AWS_SECRET_ACCESS_KEY"),
        env_var("PGPASSWORD"),
    ];
    let key = std::fs::read_to_string(env_var("SFTP_PRIVATE_KEY_FILE")).expect("private key");
    // Any line of the key body is a leak, not just the whole key.
    values.extend(
        key.lines()
            .filter(|line| !line.starts_with("-----") && line.len() > 20)
            .map(str::to_string),
    );
    values
}

/// The environment the binary gets in tests: the test bed's kubeconfig and S3 settings, nothing else.
pub fn binary_env() -> Vec<(&'static str, String)> {
    vec![
        ("PATH", std::env::var("PATH").unwrap_or_default()),
        ("KUBECONFIG", kubeconfig_path().display().to_string()),
        ("AWS_ACCESS_KEY_ID", env_var("AWS_ACCESS_KEY_ID")),
        ("AWS_SECRET_ACCESS_KEY", env_var("AWS_SECRET_ACCESS_KEY")),
        ("AWS_REGION", env_var("AWS_REGION")),
        ("AWS_ENDPOINT_URL", env_var("S3_ENDPOINT")),
        ("RUST_LOG", "info".to_string()),
    ]
}

/// Runs this project's binary with `binary_env`, plus `extra_env`.
pub fn run_binary(args: &[&str], extra_env: &[(&str, String)]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_scheduled-exports"))
        .args(args)
        .env_clear()
        .envs(binary_env())
        .envs(extra_env.iter().cloned())
        .output()
        .expect("run scheduled-exports")
}

/// Name of the artifact store credentials Secret in a test namespace (the chart's default name).
pub const ARTIFACT_STORE_SECRET: &str = "scheduled-exports-artifacts";

/// The test bed's MinIO as the environment of an `s3://` store: the keys of the chart's credentials
/// Secret, with the endpoint address that works from Pods and from this process alike.
pub fn artifact_store_secret_data() -> Vec<(&'static str, String)> {
    vec![
        ("AWS_ACCESS_KEY_ID", env_var("AWS_ACCESS_KEY_ID")),
        ("AWS_SECRET_ACCESS_KEY", env_var("AWS_SECRET_ACCESS_KEY")),
        ("AWS_REGION", env_var("AWS_REGION")),
        ("AWS_ENDPOINT_URL", env_var("S3_ENDPOINT")),
    ]
}

/// The S3 settings of a controller running in this process (the operator reads the same
/// variables from its environment).
pub fn testbed_s3_options() -> scheduled_exports::adapters::artifacts::S3Options {
    scheduled_exports::adapters::artifacts::S3Options::from_lookup(|name| {
        testbed_env().get(name).cloned()
    })
}

/// Export Jobs as a release on the test bed runs them: the project's image imported into the node
/// (never pulled), and the store's credentials Secret (each object's Job identity is the
/// operator's own making).
pub fn export_job_settings(
    artifact_store_url: &str,
) -> scheduled_exports::operator::job::JobSettings {
    scheduled_exports::operator::job::JobSettings {
        image: env_var("SCHEDULED_EXPORTS_IMAGE"),
        image_pull_policy: Some("Never".into()),
        artifact_store_url: artifact_store_url.to_string(),
        artifact_store_secret: Some(ARTIFACT_STORE_SECRET.into()),
        ..Default::default()
    }
}

/// Waits until Job `job` has succeeded. A Job that fails, or the deadline, ends the test at once,
/// with the Job's status and its Pods' logs (from the API server, as `kubectl logs` shows them).
pub async fn wait_for_job_complete(
    client: &Client,
    namespace: &str,
    job: &str,
    deadline: Duration,
) {
    use k8s_openapi::api::batch::v1::Job;
    let jobs: Api<Job> = Api::namespaced(client.clone(), namespace);
    let give_up = tokio::time::Instant::now() + deadline;
    loop {
        let status = jobs
            .get_opt(job)
            .await
            .ok()
            .flatten()
            .and_then(|j| j.status);
        if status.as_ref().and_then(|s| s.succeeded).unwrap_or(0) >= 1 {
            return;
        }
        let failed = status.as_ref().is_some_and(|s| {
            s.conditions
                .iter()
                .flatten()
                .any(|c| c.type_ == "Failed" && c.status == "True")
        });
        if failed || tokio::time::Instant::now() >= give_up {
            let logs = job_pod_logs(client, namespace, job).await;
            panic!(
                "Job {namespace}/{job} {}: {status:?}\n{logs}",
                if failed {
                    "failed".to_string()
                } else {
                    format!("did not complete within {deadline:?}")
                }
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Phase, container state and log of every Pod of Job `job`, for a failing test's message.
pub async fn job_pod_logs(client: &Client, namespace: &str, job: &str) -> String {
    use k8s_openapi::api::core::v1::Pod;
    use kube::api::{ListParams, LogParams};
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let selector = format!("batch.kubernetes.io/job-name={job}");
    let Ok(list) = pods.list(&ListParams::default().labels(&selector)).await else {
        return "(cannot list the Job's Pods)".to_string();
    };
    if list.items.is_empty() {
        // A Pod the namespace's Pod Security level refuses shows up as the Job's FailedCreate.
        return format!(
            "(the Job has no Pods) Events: {}",
            event_messages(client, namespace, job).await
        );
    }
    let mut text = String::new();
    for pod in list.items {
        let name = pod.metadata.name.clone().unwrap_or_default();
        let status = pod.status.as_ref();
        let phase = status.and_then(|s| s.phase.clone()).unwrap_or_default();
        let states = status
            .and_then(|s| s.container_statuses.clone())
            .unwrap_or_default()
            .into_iter()
            .map(|c| format!("{:?}", c.state))
            .collect::<Vec<_>>()
            .join("; ");
        let log = pods
            .logs(&name, &LogParams::default())
            .await
            .unwrap_or_else(|err| format!("(no log: {err})"));
        text.push_str(&format!("--- Pod {name} ({phase}) {states}\n{log}\n"));
    }
    text
}

/// `reason: message` of the Events about the object named `name`, for a failing test's message.
pub async fn event_messages(client: &Client, namespace: &str, name: &str) -> String {
    use k8s_openapi::api::core::v1::Event;
    use kube::api::ListParams;
    let events: Api<Event> = Api::namespaced(client.clone(), namespace);
    let selector = format!("involvedObject.name={name}");
    match events.list(&ListParams::default().fields(&selector)).await {
        Ok(list) => list
            .items
            .into_iter()
            .map(|e| {
                format!(
                    "{}: {}",
                    e.reason.unwrap_or_default(),
                    e.message.unwrap_or_default()
                )
            })
            .collect::<Vec<_>>()
            .join("; "),
        Err(err) => format!("(cannot list Events: {err})"),
    }
}
