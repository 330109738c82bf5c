//! The chart's Grafana dashboard shows data: the operator binary runs on the host against the test
//! bed's API server (its export Jobs run as Pods), one run succeeds and one fails, a real
//! Prometheus (built by tests/testbed/prometheus.sh) scrapes the operator's /metrics as a
//! ServiceMonitor would (target labels namespace and pod), and every query of every panel in
//! charts/scheduled-exports/files/dashboard.json answers through the Prometheus HTTP API.

mod common;

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::fixture::Fixture;
use common::*;
use kube::api::{Patch, PatchParams};
use serde_json::{Value, json};

/// What Grafana puts for `$__rate_interval` and `$__range`: long enough to hold the whole test.
const WINDOW: &str = "10m";
/// Jobs start as Pods, a failing one is retried twice, the first recheck comes a minute after
/// delivery: a few minutes in all on a busy machine.
const DEADLINE: Duration = Duration::from_secs(300);
const POD_LABEL: &str = "operator-on-host";

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

/// A process of the test, killed when dropped; its output goes to a log file kept for failures.
struct Process {
    child: Child,
    log: PathBuf,
    label: &'static str,
}

impl Process {
    fn start(label: &'static str, command: &mut Command, log: PathBuf) -> Self {
        let file = std::fs::File::create(&log).expect("log file");
        let child = command
            .stdin(Stdio::null())
            .stdout(file.try_clone().expect("log file"))
            .stderr(file)
            .spawn()
            .unwrap_or_else(|err| panic!("start {label}: {err}"));
        Self { child, log, label }
    }

    /// Fails the test, with the log, when the process has ended.
    fn assert_running(&mut self) {
        if let Some(status) = self.child.try_wait().expect("try_wait") {
            panic!(
                "{} exited ({status}):\n{}",
                self.label,
                std::fs::read_to_string(&self.log).unwrap_or_default()
            );
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Prometheus from the test bed (PROMETHEUS in target/testbed/env), or from the environment.
fn prometheus_binary() -> Option<PathBuf> {
    std::env::var("PROMETHEUS")
        .ok()
        .or_else(|| optional_env_var("PROMETHEUS", "Prometheus, from tests/testbed/prometheus.sh"))
        .map(PathBuf::from)
}

/// GET over HTTP/1.0 (so the body is never chunked): status and body.
fn http_get(address: &str, path_and_query: &str) -> Option<(u16, String)> {
    let mut stream = std::net::TcpStream::connect(address).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        stream,
        "GET {path_and_query} HTTP/1.0\r\nHost: {address}\r\n\r\n"
    )
    .ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let status = response.split(' ').nth(1)?.parse().ok()?;
    let body = response.split_once("\r\n\r\n")?.1.to_string();
    Some((status, body))
}

/// An instant query's result vector, or the error Prometheus gave.
fn query(address: &str, promql: &str) -> Result<Vec<Value>, String> {
    let encoded: String = url::form_urlencoded::byte_serialize(promql.as_bytes()).collect();
    let (status, body) = http_get(address, &format!("/api/v1/query?query={encoded}"))
        .ok_or_else(|| "no answer from Prometheus".to_string())?;
    let answer: Value = serde_json::from_str(&body).map_err(|err| format!("{err}: {body}"))?;
    if status != 200 || answer["status"] != "success" {
        return Err(format!("HTTP {status}: {body}"));
    }
    Ok(answer["data"]["result"]
        .as_array()
        .cloned()
        .unwrap_or_default())
}

/// A sample's value, when it is a finite number.
fn finite_value(sample: &Value) -> Option<f64> {
    sample["value"][1]
        .as_str()?
        .parse::<f64>()
        .ok()
        .filter(|v| v.is_finite())
}

/// A panel's query as Grafana sends it for this test's namespace.
fn as_grafana_sends_it(expr: &str, namespace: &str) -> String {
    expr.replace("$namespace", namespace)
        .replace("$__rate_interval", WINDOW)
        .replace("$__range", WINDOW)
}

fn dashboard_queries() -> Vec<(String, String)> {
    let path = repo_root().join("charts/scheduled-exports/files/dashboard.json");
    let dashboard: Value =
        serde_json::from_str(&std::fs::read_to_string(&path).expect("the chart's dashboard"))
            .expect("dashboard JSON");
    let mut queries = Vec::new();
    for panel in dashboard["panels"].as_array().expect("panels") {
        let title = panel["title"].as_str().expect("title").to_string();
        for target in panel["targets"].as_array().expect("targets") {
            let expr = target["expr"].as_str().expect("expr").to_string();
            queries.push((title.clone(), expr));
        }
    }
    assert!(!queries.is_empty());
    queries
}

#[tokio::test]
async fn every_dashboard_query_returns_data_from_a_prometheus_scraping_the_operator() {
    let Some(prometheus) = prometheus_binary() else {
        return;
    };
    let queries = dashboard_queries();
    let fixture = Fixture::new("sx-dash", 25).await;
    let namespace = fixture.namespace.clone();
    let work = tempfile::tempdir().expect("work dir");
    // A recheck a minute after delivery, so the recheck panel has a real result to show.
    fixture
        .patch_spec("daily", json!({"recheckInterval": "1m"}))
        .await;
    // A directory that does not exist: its runs fail (DirectoryMissing).
    fixture
        .create_object(
            "broken",
            json!({"directory": format!("{}-absent", fixture.remote_dir)}),
        )
        .await;

    let metrics_address = format!("127.0.0.1:{}", free_port());
    let mut operator = Process::start(
        "the operator",
        Command::new(env!("CARGO_BIN_EXE_scheduled-exports"))
            .args([
                "controller",
                "--namespace",
                &namespace,
                "--lease-namespace",
                &namespace,
                "--identity",
                POD_LABEL,
                "--image",
                &env_var("SCHEDULED_EXPORTS_IMAGE"),
                "--job-image-pull-policy",
                "Never",
                "--artifact-store",
                &fixture.artifact_store,
                "--artifact-store-secret",
                ARTIFACT_STORE_SECRET,
                "--listen-address",
                &metrics_address,
            ])
            .env_clear()
            .envs(binary_env()),
        work.path().join("operator.log"),
    );

    let prometheus_address = format!("127.0.0.1:{}", free_port());
    let config = work.path().join("prometheus.yml");
    // The target labels a ServiceMonitor gives: the operator's own `namespace` label (of
    // scheduled_exports_next_run_seconds) becomes exported_namespace, as in a cluster.
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n\
             scrape_configs:\n  - job_name: scheduled-exports\n    static_configs:\n\
             \x20     - targets: ['{metrics_address}']\n\
             \x20       labels: {{namespace: '{namespace}', pod: '{POD_LABEL}'}}\n"
        ),
    )
    .expect("write prometheus.yml");
    let mut prometheus = Process::start(
        "Prometheus",
        Command::new(&prometheus)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                work.path().join("data").display()
            ))
            .arg(format!("--web.listen-address={prometheus_address}"))
            .env_clear(),
        work.path().join("prometheus.log"),
    );
    eventually(DEADLINE, "Prometheus to be ready", || {
        prometheus.assert_running();
        let ready = http_get(&prometheus_address, "/-/ready").is_some_and(|(s, _)| s == 200);
        async move { ready.then_some(()) }
    })
    .await;

    // Both runs now, once the operator leads (it sets scheduled_exports_leader to 1 then).
    eventually(
        DEADLINE,
        "the operator to lead, as Prometheus sees it",
        || {
            operator.assert_running();
            let leads = query(&prometheus_address, "scheduled_exports_leader == 1")
                .is_ok_and(|result| !result.is_empty());
            async move { leads.then_some(()) }
        },
    )
    .await;
    for name in ["daily", "broken"] {
        let patch = json!({"metadata": {"annotations": {"exports.crm.dev/run-now": "dashboard"}}});
        fixture
            .api()
            .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .expect("annotate run-now");
    }

    // Real activity behind the panels, not just series at zero: a run of each outcome, rows and
    // bytes delivered, a recheck that found the file, this replica leading.
    let nonzero = |expr: &str| format!("({}) > 0", as_grafana_sends_it(expr, &namespace));
    let evidence = [
        nonzero(
            r#"sum(increase(scheduled_exports_runs_total{namespace=~"$namespace", outcome="succeeded"}[$__range]))"#,
        ),
        nonzero(
            r#"sum(increase(scheduled_exports_runs_total{namespace=~"$namespace", outcome="failed"}[$__range]))"#,
        ),
        nonzero(
            r#"sum(increase(scheduled_exports_rows_exported_total{namespace=~"$namespace"}[$__range]))"#,
        ),
        nonzero(
            r#"sum(increase(scheduled_exports_bytes_exported_total{namespace=~"$namespace"}[$__range]))"#,
        ),
        nonzero(
            r#"sum(increase(scheduled_exports_rechecks_total{namespace=~"$namespace", result="present"}[$__range]))"#,
        ),
    ];
    for promql in &evidence {
        eventually(DEADLINE, promql, || {
            operator.assert_running();
            prometheus.assert_running();
            let seen = query(&prometheus_address, promql).is_ok_and(|r| !r.is_empty());
            async move { seen.then_some(()) }
        })
        .await;
    }

    for (title, expr) in &queries {
        let promql = as_grafana_sends_it(expr, &namespace);
        assert!(
            !promql.contains('$'),
            "panel {title:?} uses a variable this test does not fill in: {expr}"
        );
        let result = eventually(
            Duration::from_secs(60),
            &format!("panel {title:?} to show data: {promql}"),
            || {
                let answer = query(&prometheus_address, &promql);
                if let Err(err) = &answer {
                    assert!(!err.contains("bad_data"), "panel {title:?}: {err}");
                }
                let result = answer
                    .ok()
                    .filter(|result| result.iter().any(|s| finite_value(s).is_some()));
                async move { result }
            },
        )
        .await;
        match title.as_str() {
            "Leader" => assert!(
                result
                    .iter()
                    .any(|s| s["metric"]["pod"] == POD_LABEL && finite_value(s) == Some(1.0)),
                "{result:?}"
            ),
            "Next run per object" => {
                for name in ["daily", "broken"] {
                    assert!(
                        result.iter().any(|s| s["metric"]["name"] == name
                            && s["metric"]["exported_namespace"] == namespace.as_str()),
                        "no next run of {name}: {result:?}"
                    );
                }
            }
            "Runs by file type and outcome" => {
                for outcome in ["succeeded", "failed"] {
                    assert!(
                        result
                            .iter()
                            .any(|s| s["metric"]["file_type"] == "interactions"
                                && s["metric"]["outcome"] == outcome
                                && finite_value(s).is_some_and(|v| v > 0.0)),
                        "no {outcome} run: {result:?}"
                    );
                }
            }
            _ => {}
        }
    }

    drop(prometheus);
    drop(operator);
    fixture.cleanup().await;
}
