//! The chart's alerting rules and Grafana dashboard as `helm template` renders them: the rules pass
//! `promtool check rules` and the unit tests in tests/prometheus/alerts.test.yaml (promtool built
//! from the Prometheus Go module by tests/testbed/prometheus.sh), and the dashboard ConfigMap holds
//! the chart's dashboard file for Grafana's sidecar. tests/dashboard.rs runs the dashboard's
//! queries against a real Prometheus.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::*;
use serde::Deserialize;
use serde_yaml::Value;

/// The namespace tests/prometheus/alerts.test.yaml expects the rules to be scoped to.
const NAMESPACE: &str = "sx-alerts";

fn chart_dir() -> PathBuf {
    repo_root().join("charts/scheduled-exports")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// `helm template` of the chart in NAMESPACE with `extra` values, as a list of objects.
fn render(extra: &[&str]) -> Vec<Value> {
    let home = tempfile::tempdir().expect("helm home");
    let chart = chart_dir();
    let mut args = vec![
        "template",
        "acme",
        chart.to_str().expect("path"),
        "--namespace",
        NAMESPACE,
        "--set",
        "artifactStore.url=s3://crm-exports-artifacts/acme",
    ];
    for value in extra {
        args.extend(["--set", value]);
    }
    // Helm's own configuration directories, so nothing of the user's Helm setup plays a part.
    let output = Command::new(env_var("HELM_BINARY"))
        .args(&args)
        .env_remove("KUBECONFIG")
        .env("HELM_CONFIG_HOME", home.path().join("config"))
        .env("HELM_CACHE_HOME", home.path().join("cache"))
        .env("HELM_DATA_HOME", home.path().join("data"))
        .output()
        .expect("run helm (HELM_BINARY from target/testbed/env)");
    assert!(
        output.status.success(),
        "helm template failed:\n{}",
        text(&output.stderr)
    );
    serde_yaml::Deserializer::from_str(&text(&output.stdout))
        .map(|document| Value::deserialize(document).expect("rendered YAML"))
        .filter(|object| !object.is_null())
        .collect()
}

fn of_kind<'a>(objects: &'a [Value], kind: &str) -> Vec<&'a Value> {
    objects
        .iter()
        .filter(|object| object["kind"].as_str() == Some(kind))
        .collect()
}

/// promtool from the test bed (PROMTOOL in target/testbed/env), or from the environment.
fn promtool() -> Option<PathBuf> {
    std::env::var("PROMTOOL")
        .ok()
        .or_else(|| optional_env_var("PROMTOOL", "promtool, from tests/testbed/prometheus.sh"))
        .map(PathBuf::from)
}

fn run_promtool(promtool: &Path, dir: &Path, args: &[&str]) -> Output {
    Command::new(promtool)
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run promtool")
}

/// The rule file of the chart with the substitutions the template makes.
fn chart_rules(namespace: &str, runbook_url: &str) -> Value {
    let file = std::fs::read_to_string(chart_dir().join("files/prometheus-rules.yaml"))
        .expect("the chart's rule file");
    serde_yaml::from_str(
        &file
            .replace("RELEASE_NAMESPACE", namespace)
            .replace("RUNBOOK_URL", runbook_url),
    )
    .expect("rule file YAML")
}

/// Writes the rendered PrometheusRule's groups as a rule file into a fresh directory, with the
/// unit tests beside it, as promtool reads them.
fn rendered_rule_dir() -> (tempfile::TempDir, Value) {
    let objects = render(&["metrics.prometheusRule.enabled=true"]);
    let rules = of_kind(&objects, "PrometheusRule");
    assert_eq!(rules.len(), 1, "one PrometheusRule");
    let spec = rules[0]["spec"].clone();
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(
        dir.path().join("rules.yaml"),
        serde_yaml::to_string(&spec).expect("rules as YAML"),
    )
    .expect("write rules.yaml");
    std::fs::copy(
        repo_root().join("tests/prometheus/alerts.test.yaml"),
        dir.path().join("alerts.test.yaml"),
    )
    .expect("copy the rule tests");
    (dir, spec)
}

#[test]
fn the_rules_the_chart_ships_pass_promtool_check_and_their_unit_tests() {
    let Some(promtool) = promtool() else { return };
    let (dir, spec) = rendered_rule_dir();

    let check = run_promtool(&promtool, dir.path(), &["check", "rules", "rules.yaml"]);
    let check_output = format!("{}{}", text(&check.stdout), text(&check.stderr));
    assert!(
        check.status.success(),
        "promtool check rules:\n{check_output}"
    );
    let rule_count = spec["groups"]
        .as_sequence()
        .expect("groups")
        .iter()
        .map(|group| group["rules"].as_sequence().expect("rules").len())
        .sum::<usize>();
    assert!(
        check_output.contains(&format!("SUCCESS: {rule_count} rules found")),
        "{check_output}"
    );

    let test = run_promtool(
        &promtool,
        dir.path(),
        &["test", "rules", "--run", ".*", "alerts.test.yaml"],
    );
    let test_output = format!("{}{}", text(&test.stdout), text(&test.stderr));
    assert!(test.status.success(), "promtool test rules:\n{test_output}");
    assert!(test_output.contains("SUCCESS"), "{test_output}");
}

/// Every alert has a unit test that sees it fire, and the metric names are the operator's.
#[test]
fn every_alert_is_unit_tested_and_uses_metrics_the_operator_exposes() {
    let tests = std::fs::read_to_string(repo_root().join("tests/prometheus/alerts.test.yaml"))
        .expect("rule tests");
    let tests: Value = serde_yaml::from_str(&tests).expect("rule tests YAML");
    let fired: Vec<&str> = tests["tests"]
        .as_sequence()
        .expect("tests")
        .iter()
        .flat_map(|case| case["alert_rule_test"].as_sequence().expect("alert tests"))
        .filter(|case| {
            case["exp_alerts"]
                .as_sequence()
                .is_some_and(|alerts| !alerts.is_empty())
        })
        .map(|case| case["alertname"].as_str().expect("alertname"))
        .collect();
    let exposed = operator_metrics_text();
    let exposed_families: Vec<String> = exposed
        .lines()
        .filter_map(|line| line.strip_prefix("# TYPE "))
        .filter_map(|line| line.split_whitespace().next())
        .map(str::to_string)
        .collect();
    let rules = chart_rules(NAMESPACE, "docs/operations.md");
    for rule in rules["groups"][0]["rules"].as_sequence().expect("rules") {
        let name = rule["alert"].as_str().expect("alert name");
        assert!(fired.contains(&name), "no unit test sees {name} fire");
        assert!(
            matches!(
                rule["labels"]["severity"].as_str(),
                Some("warning" | "critical")
            ),
            "{name} has no severity"
        );
        for key in ["summary", "description", "runbook_url"] {
            assert!(rule["annotations"][key].is_string(), "{name} has no {key}");
        }
        let anchor = rule["annotations"]["runbook_url"]
            .as_str()
            .and_then(|url| url.split_once('#'))
            .map(|(_, anchor)| anchor.to_string())
            .expect("runbook_url with an anchor");
        assert_eq!(anchor, name.to_lowercase(), "{name}'s runbook anchor");
        let expr = rule["expr"].as_str().expect("expr");
        for metric in metric_names(expr) {
            assert!(
                exposed_families.contains(&family_of(&metric)),
                "{name} uses {metric}, which the operator does not expose"
            );
        }
    }
    let operations =
        std::fs::read_to_string(repo_root().join("docs/operations.md")).expect("operations");
    for rule in rules["groups"][0]["rules"].as_sequence().expect("rules") {
        let name = rule["alert"].as_str().expect("alert name");
        assert!(
            operations.contains(&format!("#### {name}\n")),
            "docs/operations.md has no runbook heading for {name}"
        );
    }
}

/// The operator's /metrics text with one object in its cache, so the per-object gauges have a
/// series (its preflight fails, so the failing gauge has one too).
fn operator_metrics_text() -> String {
    use kube::runtime::{reflector, watcher};
    use scheduled_exports::resource::ScheduledExport;
    let mut object = valid_object("daily");
    object["metadata"]["namespace"] = NAMESPACE.into();
    object["status"] = serde_json::json!({
        "nextRunTime": "2026-12-01T12:00:00Z",
        "conditions": [{"type": "Preflight", "status": "False", "reason": "HostKeyMismatch",
            "message": "", "lastTransitionTime": "2026-12-01T06:00:00Z"}],
    });
    let object: ScheduledExport = serde_json::from_value(object).expect("object");
    let (store, mut writer) = reflector::store::<ScheduledExport>();
    writer.apply_watcher_event(&watcher::Event::Apply(object));
    let metrics = scheduled_exports::operator::metrics::Metrics::new();
    metrics.watch_objects(Some(store));
    metrics.encode(chrono::Utc::now()).expect("metrics text")
}

/// The metric family a series name belongs to, as OpenMetrics' `# TYPE` line names it.
fn family_of(series: &str) -> String {
    ["_total", "_bucket", "_sum", "_count"]
        .iter()
        .find_map(|suffix| series.strip_suffix(suffix))
        .unwrap_or(series)
        .to_string()
}

/// The `scheduled_exports_*` names in a PromQL expression.
fn metric_names(expr: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut rest = expr;
    while let Some(start) = rest.find("scheduled_exports_") {
        let tail = &rest[start..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        names.push(tail[..end].to_string());
        rest = &tail[end..];
    }
    assert!(!names.is_empty(), "no metric in {expr}");
    names
}

#[test]
fn the_rendered_rules_are_the_chart_file_scoped_to_the_release_namespace() {
    assert!(
        of_kind(&render(&[]), "PrometheusRule").is_empty(),
        "off by default"
    );
    let (_dir, spec) = rendered_rule_dir();
    assert_eq!(spec, chart_rules(NAMESPACE, "docs/operations.md"));
    let rendered = serde_yaml::to_string(&spec).expect("YAML");
    assert!(!rendered.contains("RELEASE_NAMESPACE") && !rendered.contains("RUNBOOK_URL"));

    let objects = render(&[
        "metrics.prometheusRule.enabled=true",
        "metrics.prometheusRule.namespace=monitoring",
        "metrics.prometheusRule.labels.release=kube-prometheus-stack",
        "metrics.prometheusRule.runbookUrl=https://git.example.edu/platform/operations.md",
    ]);
    let rule = of_kind(&objects, "PrometheusRule")[0];
    assert_eq!(rule["metadata"]["namespace"], "monitoring");
    assert_eq!(
        rule["metadata"]["labels"]["release"],
        "kube-prometheus-stack"
    );
    assert_eq!(
        rule["metadata"]["labels"]["app.kubernetes.io/instance"],
        "acme"
    );
    // The object may live elsewhere; the rules still watch the release's own series.
    assert_eq!(
        rule["spec"],
        chart_rules(NAMESPACE, "https://git.example.edu/platform/operations.md")
    );
}

#[test]
fn the_dashboard_config_map_carries_the_chart_dashboard_and_the_sidecar_label() {
    assert!(
        of_kind(&render(&[]), "ConfigMap")
            .iter()
            .all(|map| map["metadata"]["labels"]["grafana_dashboard"].is_null()),
        "off by default"
    );
    let objects = render(&["metrics.dashboard.enabled=true"]);
    let maps: Vec<&Value> = of_kind(&objects, "ConfigMap")
        .into_iter()
        .filter(|map| map["metadata"]["name"] == "acme-scheduled-exports-dashboard")
        .collect();
    assert_eq!(maps.len(), 1, "one dashboard ConfigMap");
    let map = maps[0];
    assert_eq!(map["metadata"]["namespace"], NAMESPACE);
    assert_eq!(map["metadata"]["labels"]["grafana_dashboard"], "1");
    let shipped: serde_json::Value = serde_json::from_str(
        map["data"]["scheduled-exports.json"]
            .as_str()
            .expect("dashboard JSON in the ConfigMap"),
    )
    .expect("the ConfigMap's dashboard is JSON");
    let file: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(chart_dir().join("files/dashboard.json")).expect("dashboard file"),
    )
    .expect("dashboard file is JSON");
    assert_eq!(shipped, file);
    let panels = file["panels"].as_array().expect("panels");
    assert!(panels.len() >= 8, "{} panels", panels.len());
    for panel in panels {
        let targets = panel["targets"].as_array().expect("targets");
        assert!(!targets.is_empty(), "{} has no query", panel["title"]);
        assert!(targets.iter().all(|t| t["expr"].is_string()));
    }

    let objects = render(&[
        "metrics.dashboard.enabled=true",
        "metrics.dashboard.namespace=grafana",
        "metrics.dashboard.label=grafana_dashboard_scheduled",
        "metrics.dashboard.labelValue=yes",
        "metrics.dashboard.annotations.grafana_folder=Operators",
    ]);
    let map = of_kind(&objects, "ConfigMap")
        .into_iter()
        .find(|map| map["metadata"]["name"] == "acme-scheduled-exports-dashboard")
        .expect("dashboard ConfigMap");
    assert_eq!(map["metadata"]["namespace"], "grafana");
    assert_eq!(
        map["metadata"]["labels"]["grafana_dashboard_scheduled"],
        "yes"
    );
    assert!(map["metadata"]["labels"]["grafana_dashboard"].is_null());
    assert_eq!(
        map["metadata"]["annotations"]["grafana_folder"],
        "Operators"
    );
}
