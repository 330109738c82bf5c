//! The Helm chart (charts/scheduled-exports): `helm lint` and `helm template` of the default values
//! and of the institution example, and `helm install` into the test bed's API server, where the
//! operator runs as a process under the chart's own ServiceAccount and RBAC (the test bed has no
//! kubelet for the Deployment) and the chart's ScheduledExports become Ready and deliver a file.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use common::*;
use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{Secret, ServiceAccount};
use kube::Client;
use kube::api::{Api, DynamicObject, Patch, PatchParams, PostParams};
use kube::core::GroupVersionKind;
use scheduled_exports::resource::ScheduledExport;
use serde_json::{Value, json};

const CRD_FILE: &str = "scheduledexports.exports.crm.dev.yaml";

fn chart_dir() -> PathBuf {
    repo_root().join("charts/scheduled-exports")
}

fn institution_values() -> PathBuf {
    repo_root().join("examples/institution-values.yaml")
}

/// Runs the test bed's Helm with its own configuration directories, so nothing of the user's
/// Helm setup (repositories, plugins, registry logins) plays a part.
fn helm(args: &[&str]) -> Output {
    let home = repo_root().join("target/helm-test-home");
    Command::new(env_var("HELM_BINARY"))
        .args(args)
        .env_remove("KUBECONFIG")
        .env("HELM_CONFIG_HOME", home.join("config"))
        .env("HELM_CACHE_HOME", home.join("cache"))
        .env("HELM_DATA_HOME", home.join("data"))
        .output()
        .expect("run helm (HELM_BINARY from target/testbed/env)")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn helm_ok(args: &[&str]) -> String {
    let output = helm(args);
    assert!(
        output.status.success(),
        "helm {} failed:\n{}{}",
        args.join(" "),
        text(&output.stdout),
        text(&output.stderr)
    );
    text(&output.stdout)
}

/// The documents of a multi-document YAML stream, as JSON values; empty documents are dropped.
fn documents(yaml: &str) -> Vec<Value> {
    use serde::Deserialize;
    serde_yaml::Deserializer::from_str(yaml)
        .map(|document| Value::deserialize(document).expect("helm output is YAML"))
        .filter(|document| !document.is_null())
        .collect()
}

/// `helm template` of the chart in namespace `univ-a` (release `acme`) with extra arguments.
fn render(extra: &[&str]) -> Vec<Value> {
    let chart = chart_dir();
    let mut args = vec![
        "template",
        "acme",
        chart.to_str().expect("path"),
        "--namespace",
        "univ-a",
    ];
    args.extend_from_slice(extra);
    documents(&helm_ok(&args))
}

fn kind_of(object: &Value) -> &str {
    object["kind"].as_str().expect("every object has a kind")
}

fn name_of(object: &Value) -> &str {
    object["metadata"]["name"]
        .as_str()
        .expect("every object has a name")
}

fn kinds(objects: &[Value]) -> BTreeMap<String, usize> {
    let mut kinds = BTreeMap::new();
    for object in objects {
        *kinds.entry(kind_of(object).to_string()).or_default() += 1;
    }
    kinds
}

fn find<'a>(objects: &'a [Value], kind: &str, name: &str) -> &'a Value {
    objects
        .iter()
        .find(|object| kind_of(object) == kind && name_of(object) == name)
        .unwrap_or_else(|| {
            let present: Vec<String> = objects
                .iter()
                .map(|o| format!("{}/{}", kind_of(o), name_of(o)))
                .collect();
            panic!("no {kind} {name} among {present:?}")
        })
}

fn expected_kinds(pairs: &[(&str, usize)]) -> BTreeMap<String, usize> {
    pairs.iter().map(|(k, n)| (k.to_string(), *n)).collect()
}

fn container(deployment: &Value) -> &Value {
    let containers = deployment["spec"]["template"]["spec"]["containers"]
        .as_array()
        .expect("containers");
    assert_eq!(containers.len(), 1, "one container: {containers:?}");
    &containers[0]
}

/// The container's literal env values; downward-API entries as `fieldRef:PATH`.
fn env_of(container: &Value) -> BTreeMap<String, String> {
    container["env"]
        .as_array()
        .expect("env")
        .iter()
        .map(|var| {
            let name = var["name"].as_str().expect("env name").to_string();
            let value = match (&var["value"], &var["valueFrom"]["fieldRef"]["fieldPath"]) {
                (Value::String(value), _) => value.clone(),
                (_, Value::String(path)) => format!("fieldRef:{path}"),
                other => panic!("env {name}: unexpected {other:?}"),
            };
            (name, value)
        })
        .collect()
}

/// Rules of a Role or ClusterRole as (apiGroup/resource, sorted verbs).
fn rules(role: &Value) -> BTreeMap<String, BTreeSet<String>> {
    let strings = |value: &Value| -> Vec<String> {
        value
            .as_array()
            .expect("list")
            .iter()
            .map(|s| s.as_str().expect("string").to_string())
            .collect()
    };
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for rule in role["rules"].as_array().expect("rules") {
        assert!(
            rule.get("resourceNames").is_none() || rule["resourceNames"].is_array(),
            "{rule}"
        );
        for group in strings(&rule["apiGroups"]) {
            for resource in strings(&rule["resources"]) {
                out.entry(format!("{group}/{resource}"))
                    .or_default()
                    .extend(strings(&rule["verbs"]));
            }
        }
    }
    out
}

fn rule_set(pairs: &[(&str, &[&str])]) -> BTreeMap<String, BTreeSet<String>> {
    pairs
        .iter()
        .map(|(resource, verbs)| {
            (
                resource.to_string(),
                verbs.iter().map(|v| v.to_string()).collect(),
            )
        })
        .collect()
}

fn controller_rules() -> BTreeMap<String, BTreeSet<String>> {
    rule_set(&[
        (
            "exports.crm.dev/scheduledexports",
            &["get", "list", "watch"],
        ),
        (
            "exports.crm.dev/scheduledexports/status",
            &["get", "update", "patch"],
        ),
        (
            "batch/jobs",
            &["get", "list", "watch", "create", "delete", "patch"],
        ),
        ("/secrets", &["get"]),
        ("events.k8s.io/events", &["create", "patch"]),
    ])
}

fn export_rules() -> BTreeMap<String, BTreeSet<String>> {
    rule_set(&[
        ("exports.crm.dev/scheduledexports", &["get"]),
        (
            "exports.crm.dev/scheduledexports/status",
            &["get", "update", "patch"],
        ),
        ("/secrets", &["get"]),
    ])
}

fn lease_rules() -> BTreeMap<String, BTreeSet<String>> {
    rule_set(&[("coordination.k8s.io/leases", &["get", "create", "update"])])
}

/// The binding grants `role` (of `kind`) to exactly the ServiceAccount `account` in `namespace`.
fn assert_binding(binding: &Value, kind: &str, role: &str, account: &str, namespace: &str) {
    assert_eq!(
        binding["roleRef"],
        json!({"apiGroup": "rbac.authorization.k8s.io", "kind": kind, "name": role}),
        "{binding}"
    );
    assert_eq!(
        binding["subjects"],
        json!([{"kind": "ServiceAccount", "name": account, "namespace": namespace}]),
        "{binding}"
    );
}

/// Every object carries the standard labels of the release and sits in the release namespace.
fn assert_standard_metadata(objects: &[Value], namespace: &str, cluster_scoped: &[&str]) {
    for object in objects {
        let labels = &object["metadata"]["labels"];
        let what = format!("{} {}", kind_of(object), name_of(object));
        assert_eq!(
            labels["app.kubernetes.io/name"], "scheduled-exports",
            "{what}"
        );
        assert_eq!(labels["app.kubernetes.io/instance"], "acme", "{what}");
        assert_eq!(labels["app.kubernetes.io/managed-by"], "Helm", "{what}");
        assert_eq!(
            labels["app.kubernetes.io/part-of"], "scheduled-exports",
            "{what}"
        );
        assert!(labels["app.kubernetes.io/version"].is_string(), "{what}");
        assert!(labels["app.kubernetes.io/component"].is_string(), "{what}");
        assert!(
            labels["helm.sh/chart"]
                .as_str()
                .is_some_and(|chart| chart.starts_with("scheduled-exports-")),
            "{what}"
        );
        if cluster_scoped.contains(&kind_of(object)) {
            assert!(object["metadata"].get("namespace").is_none(), "{what}");
        } else if kind_of(object) != "ServiceAccount"
            && kind_of(object) != "Role"
            && kind_of(object) != "RoleBinding"
        {
            // Export identities may also live in exportNamespaces; checked where they are.
            assert_eq!(object["metadata"]["namespace"], namespace, "{what}");
        }
    }
}

/// The env var names the controller's command line reads, from `controller --help`.
fn controller_env_names() -> BTreeSet<String> {
    let output = run_binary(&["controller", "--help"], &[]);
    assert!(output.status.success(), "controller --help");
    let help = text(&output.stdout);
    help.split("[env: ")
        .skip(1)
        .filter_map(|rest| rest.split(['=', ']']).next())
        .map(str::to_string)
        .collect()
}

#[test]
fn lint_passes_for_default_values_and_the_institution_example() {
    let chart = chart_dir();
    let chart = chart.to_str().expect("path");
    let values = institution_values();
    for extra in [vec![], vec!["--values", values.to_str().expect("path")]] {
        let mut args = vec!["lint", "--strict", chart];
        args.extend(extra);
        let stdout = helm_ok(&args);
        assert!(
            stdout.contains("1 chart(s) linted, 0 chart(s) failed"),
            "{stdout}"
        );
        assert!(
            !stdout.contains("[WARNING]") && !stdout.contains("[ERROR]"),
            "{stdout}"
        );
    }
    // Lint must be able to fail: values.schema.json refuses a time off the 30-minute grid.
    let output = helm(&[
        "lint",
        chart,
        "--set",
        "schedules[0].name=x,schedules[0].fileType=interactions,schedules[0].time=07:15",
    ]);
    assert!(!output.status.success(), "lint accepted time 07:15");
    let said = format!("{}{}", text(&output.stdout), text(&output.stderr));
    assert!(said.contains("/schedules/0/time"), "{said}");
    // And rendering refuses a Secret to create without its value, saying which.
    let output = helm(&["template", "acme", chart, "--set", "database.create=true"]);
    assert!(
        !output.status.success(),
        "rendered database.create without database.url"
    );
    assert!(
        text(&output.stderr).contains("database.url is required when database.create is true"),
        "{}",
        text(&output.stderr)
    );
}

#[test]
fn the_charts_crd_is_the_committed_crd() {
    let chart_crd = std::fs::read(chart_dir().join("crds").join(CRD_FILE)).expect("chart CRD");
    let committed = std::fs::read(repo_root().join("crds").join(CRD_FILE)).expect("crds/ CRD");
    assert!(
        chart_crd == committed,
        "charts/scheduled-exports/crds/{CRD_FILE} differs from crds/{CRD_FILE}; copy it again"
    );
    let entries: Vec<_> = std::fs::read_dir(chart_dir().join("crds"))
        .expect("chart crds/")
        .map(|entry| entry.expect("entry").file_name())
        .collect();
    assert_eq!(entries, vec![std::ffi::OsString::from(CRD_FILE)]);
    // Helm ships it as is: the rendered CRD is the committed one.
    let rendered = render(&["--include-crds"]);
    let crd = find(
        &rendered,
        "CustomResourceDefinition",
        "scheduledexports.exports.crm.dev",
    );
    let committed: Value = serde_yaml::from_slice(&committed).expect("CRD YAML");
    assert_eq!(crd, &committed);
}

#[test]
fn default_values_render_a_namespaced_operator() {
    let objects = render(&[]);
    assert_eq!(
        kinds(&objects),
        expected_kinds(&[
            ("Deployment", 1),
            ("PersistentVolumeClaim", 1),
            ("PodDisruptionBudget", 1),
            ("Role", 3),
            ("RoleBinding", 3),
            ("Service", 1),
            ("ServiceAccount", 2),
        ]),
        "default values: no ClusterRole, no Secret, no ScheduledExport, no optional extras"
    );
    assert_standard_metadata(&objects, "univ-a", &[]);
    for object in &objects {
        assert_eq!(
            object["metadata"]["namespace"],
            "univ-a",
            "{}",
            name_of(object)
        );
    }

    // RBAC: least privilege, in the release namespace.
    let name = "acme-scheduled-exports";
    let export = "acme-scheduled-exports-export";
    let leases = "acme-scheduled-exports-leader-election";
    assert_eq!(rules(find(&objects, "Role", name)), controller_rules());
    assert_eq!(rules(find(&objects, "Role", export)), export_rules());
    assert_eq!(rules(find(&objects, "Role", leases)), lease_rules());
    assert_binding(
        find(&objects, "RoleBinding", name),
        "Role",
        name,
        name,
        "univ-a",
    );
    assert_binding(
        find(&objects, "RoleBinding", export),
        "Role",
        export,
        export,
        "univ-a",
    );
    assert_binding(
        find(&objects, "RoleBinding", leases),
        "Role",
        leases,
        name,
        "univ-a",
    );
    find(&objects, "ServiceAccount", name);
    find(&objects, "ServiceAccount", export);

    // The Deployment.
    let deployment = find(&objects, "Deployment", name);
    let spec = &deployment["spec"];
    assert_eq!(spec["replicas"], 2);
    let pod = &spec["template"]["spec"];
    assert_eq!(pod["serviceAccountName"], name);
    let pod_labels = spec["template"]["metadata"]["labels"]
        .as_object()
        .expect("pod labels");
    let selector = spec["selector"]["matchLabels"]
        .as_object()
        .expect("selector");
    assert!(!selector.is_empty());
    for (key, value) in selector {
        assert_eq!(
            pod_labels.get(key),
            Some(value),
            "selector {key} matches the Pods"
        );
    }
    assert_eq!(selector["app.kubernetes.io/component"], "controller");

    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    assert_eq!(pod["securityContext"]["runAsUser"], 65532);
    assert_eq!(pod["securityContext"]["fsGroup"], 65532);
    assert_eq!(
        pod["securityContext"]["seccompProfile"]["type"],
        "RuntimeDefault"
    );
    let container = container(deployment);
    let security = &container["securityContext"];
    assert_eq!(security["runAsNonRoot"], true);
    assert_eq!(security["readOnlyRootFilesystem"], true);
    assert_eq!(security["allowPrivilegeEscalation"], false);
    assert_eq!(security["capabilities"], json!({"drop": ["ALL"]}));
    assert_eq!(security["seccompProfile"]["type"], "RuntimeDefault");
    assert!(security.get("privileged").is_none_or(|p| p == false));

    assert_eq!(container["command"], json!(["scheduled-exports"]));
    assert_eq!(container["args"], json!(["controller"]));
    assert_eq!(container["image"], "scheduled-exports:0.1.0");
    assert_eq!(
        container["ports"],
        json!([{"name": "http", "containerPort": 8080, "protocol": "TCP"}])
    );
    assert_eq!(
        container["livenessProbe"]["httpGet"],
        json!({"path": "/healthz", "port": "http"})
    );
    assert_eq!(
        container["readinessProbe"]["httpGet"],
        json!({"path": "/readyz", "port": "http"})
    );
    assert!(container["resources"]["requests"]["cpu"].is_string());
    assert!(container["resources"]["requests"]["memory"].is_string());
    assert!(container["resources"]["limits"]["memory"].is_string());

    let env = env_of(container);
    let expected: BTreeMap<String, String> = [
        ("WATCH_NAMESPACE", "univ-a"),
        ("DEFAULT_TIME_ZONE", "UTC"),
        ("EXPORT_IMAGE", "scheduled-exports:0.1.0"),
        ("EXPORT_SERVICE_ACCOUNT", export),
        (
            "ARTIFACT_STORE_URL",
            "file:///var/lib/scheduled-exports/artifacts",
        ),
        ("ARTIFACT_STORE_CLAIM", "acme-scheduled-exports-artifacts"),
        ("LEADER_ELECTION", "true"),
        ("POD_NAMESPACE", "fieldRef:metadata.namespace"),
        ("POD_NAME", "fieldRef:metadata.name"),
        ("LISTEN_ADDRESS", "0.0.0.0:8080"),
        ("LOG_FORMAT", "json"),
        ("RUST_LOG", "info"),
        ("TMPDIR", "/tmp"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    assert_eq!(env, expected);
    assert!(
        container.get("envFrom").is_none(),
        "no artifact store Secret by default"
    );
    // Every variable the chart sets (but the process-wide ones) is one the controller reads.
    let known = controller_env_names();
    for name in env
        .keys()
        .filter(|name| !["RUST_LOG", "TMPDIR"].contains(&name.as_str()))
    {
        assert!(
            known.contains(name),
            "the controller does not read {name}; it reads {known:?}"
        );
    }

    // The file:// store's claim, mounted at the URL's path; /tmp writable on a read-only root.
    let claim = find(
        &objects,
        "PersistentVolumeClaim",
        "acme-scheduled-exports-artifacts",
    );
    assert_eq!(claim["spec"]["accessModes"], json!(["ReadWriteOnce"]));
    assert_eq!(
        container["volumeMounts"],
        json!([
            {"name": "tmp", "mountPath": "/tmp"},
            {"name": "artifacts", "mountPath": "/var/lib/scheduled-exports/artifacts"}
        ])
    );
    assert_eq!(
        pod["volumes"][1],
        json!({"name": "artifacts", "persistentVolumeClaim": {"claimName": "acme-scheduled-exports-artifacts"}})
    );
    assert!(pod["volumes"][0]["emptyDir"].is_object());

    // The Service selects the operator's Pods on the http port.
    let service = find(&objects, "Service", name);
    assert_eq!(service["spec"]["selector"], Value::Object(selector.clone()));
    assert_eq!(service["spec"]["ports"][0]["targetPort"], "http");
    assert_eq!(service["spec"]["ports"][0]["name"], "http");
}

#[test]
fn watching_all_namespaces_takes_a_cluster_role() {
    let objects = render(&[
        "--set",
        "watchAllNamespaces=true",
        "--set",
        "exportNamespaces={univ-b}",
    ]);
    let kinds = kinds(&objects);
    assert_eq!(kinds.get("ClusterRole"), Some(&1), "{kinds:?}");
    assert_eq!(kinds.get("ClusterRoleBinding"), Some(&1), "{kinds:?}");
    assert_standard_metadata(&objects, "univ-a", &["ClusterRole", "ClusterRoleBinding"]);
    // Cluster-scoped names carry the release namespace: releases in two namespaces don't clash.
    let cluster = "univ-a-acme-scheduled-exports";
    assert_eq!(
        rules(find(&objects, "ClusterRole", cluster)),
        controller_rules()
    );
    assert_binding(
        find(&objects, "ClusterRoleBinding", cluster),
        "ClusterRole",
        cluster,
        "acme-scheduled-exports",
        "univ-a",
    );
    // The Lease stays namespaced; the export identity exists in both namespaces.
    let roles: Vec<(String, String)> = objects
        .iter()
        .filter(|o| kind_of(o) == "Role")
        .map(|o| {
            let namespace = o["metadata"]["namespace"].as_str().expect("namespace");
            (namespace.to_string(), name_of(o).to_string())
        })
        .collect();
    let export = "acme-scheduled-exports-export";
    assert_eq!(
        roles.iter().cloned().collect::<BTreeSet<_>>(),
        BTreeSet::from([
            (
                "univ-a".into(),
                "acme-scheduled-exports-leader-election".into()
            ),
            ("univ-a".into(), export.into()),
            ("univ-b".into(), export.into()),
        ])
    );
    for object in objects.iter().filter(|o| name_of(o) == export) {
        let namespace = object["metadata"]["namespace"].as_str().expect("namespace");
        match kind_of(object) {
            "Role" => assert_eq!(rules(object), export_rules()),
            "RoleBinding" => assert_binding(object, "Role", export, export, namespace),
            "ServiceAccount" => {}
            other => panic!("unexpected {other} {export}"),
        }
    }
    assert_eq!(
        objects
            .iter()
            .filter(|o| kind_of(o) == "ServiceAccount" && name_of(o) == export)
            .count(),
        2
    );
    let deployment = find(&objects, "Deployment", "acme-scheduled-exports");
    let env = env_of(container(deployment));
    assert!(!env.contains_key("WATCH_NAMESPACE"), "{env:?}");
}

#[test]
fn the_institution_example_renders_its_schedules() {
    let values = institution_values();
    let objects = render(&["--values", values.to_str().expect("path")]);
    assert_eq!(
        kinds(&objects),
        expected_kinds(&[
            ("Deployment", 1),
            ("NetworkPolicy", 2),
            ("PodDisruptionBudget", 1),
            ("Role", 3),
            ("RoleBinding", 3),
            ("ScheduledExport", 3),
            ("Service", 1),
            ("ServiceAccount", 2),
            ("ServiceMonitor", 1),
        ]),
        "s3:// store: no claim; Secrets are created outside Helm"
    );
    assert_standard_metadata(&objects, "univ-a", &[]);

    let deployment = find(&objects, "Deployment", "acme-scheduled-exports");
    let container = container(deployment);
    assert_eq!(
        container["image"],
        "registry.example.edu/platform/scheduled-exports:0.1.0"
    );
    let env = env_of(container);
    assert_eq!(env["DEFAULT_TIME_ZONE"], "America/New_York");
    assert_eq!(
        env["EXPORT_IMAGE"],
        "registry.example.edu/platform/scheduled-exports:0.1.0"
    );
    assert_eq!(
        env["ARTIFACT_STORE_URL"],
        "s3://crm-exports-artifacts/univ-example"
    );
    assert_eq!(env["ARTIFACT_STORE_SECRET"], "scheduled-exports-artifacts");
    assert!(!env.contains_key("ARTIFACT_STORE_CLAIM"));
    assert_eq!(
        container["envFrom"],
        json!([{"secretRef": {"name": "scheduled-exports-artifacts"}}])
    );
    assert_eq!(
        container["volumeMounts"],
        json!([{"name": "tmp", "mountPath": "/tmp"}])
    );

    // The schedules: release-level source and destination unless a schedule overrides them; only
    // the fields a schedule sets, so the CRD's defaults apply and a GitOps diff stays empty.
    let spec = |name: &str| find(&objects, "ScheduledExport", name)["spec"].clone();
    assert_eq!(
        spec("interactions-daily"),
        json!({
            "fileType": "interactions",
            "time": "07:00",
            "source": {"secretRef": {"name": "crm-database"}},
            "destination": {"sftp": {
                "host": "sftp.example.edu", "port": 22, "username": "univ-example",
                "directory": "/exports", "secretRef": {"name": "sftp-credentials"}
            }},
            "recheckInterval": "10m",
            "retentionDays": 90
        })
    );
    let proposals = spec("proposals-daily");
    assert_eq!(proposals["timeZone"], "America/Chicago");
    assert_eq!(proposals["time"], "18:30");
    assert_eq!(proposals["csv"], json!({"escapeFormulas": true}));
    assert_eq!(
        proposals["destination"]["sftp"]["directory"],
        "/exports/proposals"
    );
    assert_eq!(proposals["destination"]["sftp"]["host"], "sftp.example.edu");
    let archive = spec("interactions-archive");
    assert_eq!(archive["suspend"], true);
    assert_eq!(archive["retentionDays"], 30);
    assert_eq!(
        archive["destination"]["sftp"]["host"],
        "archive-sftp.example.edu"
    );
    assert_eq!(archive["destination"]["sftp"]["username"], "univ-example");
    // Each is a valid object of the operator's own type.
    for object in objects.iter().filter(|o| kind_of(o) == "ScheduledExport") {
        assert_eq!(object["apiVersion"], "exports.crm.dev/v1alpha1");
        let _: ScheduledExport = serde_json::from_value(object.clone())
            .unwrap_or_else(|err| panic!("{} is not a ScheduledExport: {err}", name_of(object)));
    }

    let monitor = find(&objects, "ServiceMonitor", "acme-scheduled-exports");
    assert_eq!(
        monitor["metadata"]["labels"]["release"],
        "kube-prometheus-stack"
    );
    assert_eq!(monitor["spec"]["endpoints"][0]["port"], "http");
    assert_eq!(monitor["spec"]["endpoints"][0]["path"], "/metrics");
    let policy = find(&objects, "NetworkPolicy", "acme-scheduled-exports");
    assert_eq!(
        policy["spec"]["podSelector"]["matchLabels"],
        deployment["spec"]["selector"]["matchLabels"]
    );
    let export_policy = find(&objects, "NetworkPolicy", "acme-scheduled-exports-export");
    assert_eq!(
        export_policy["spec"]["podSelector"]["matchLabels"],
        json!({"app.kubernetes.io/name": "scheduled-exports", "app.kubernetes.io/component": "export"})
    );
}

#[test]
fn secrets_from_values_have_the_keys_the_operator_reads() {
    let objects = render(&[
        "--set",
        "database.create=true",
        "--set-string",
        "database.url=postgres://reader:pw@db:5432/crm",
        "--set",
        "sftp.create=true,sftp.password=pw,sftp.knownHosts=host-key",
        "--set",
        "artifactStore.url=s3://bucket/prefix,artifactStore.credentials.create=true",
        "--set",
        "artifactStore.credentials.accessKeyId=id,artifactStore.credentials.secretAccessKey=key",
    ]);
    let keys = |name: &str| -> BTreeSet<String> {
        find(&objects, "Secret", name)["data"]
            .as_object()
            .expect("data")
            .keys()
            .cloned()
            .collect()
    };
    assert_eq!(keys("crm-database"), BTreeSet::from(["url".to_string()]));
    assert_eq!(
        keys("sftp-credentials"),
        BTreeSet::from(["knownHosts".to_string(), "password".to_string()])
    );
    assert_eq!(
        keys("acme-scheduled-exports-artifact-store"),
        BTreeSet::from([
            "AWS_ACCESS_KEY_ID".to_string(),
            "AWS_SECRET_ACCESS_KEY".to_string()
        ])
    );
    let env = env_of(container(find(
        &objects,
        "Deployment",
        "acme-scheduled-exports",
    )));
    assert_eq!(
        env["ARTIFACT_STORE_SECRET"],
        "acme-scheduled-exports-artifact-store"
    );
    assert_eq!(kinds(&objects).get("PersistentVolumeClaim"), None);

    // No trust on first use: an SFTP Secret without knownHosts is refused.
    let chart = chart_dir();
    let output = helm(&[
        "template",
        "acme",
        chart.to_str().expect("path"),
        "--set",
        "sftp.create=true,sftp.password=pw",
    ]);
    assert!(!output.status.success());
    assert!(
        text(&output.stderr).contains("sftp.knownHosts is required"),
        "{}",
        text(&output.stderr)
    );
}

// ------------------------------------------------------------------------------------------------
// helm install on the test bed
// ------------------------------------------------------------------------------------------------

/// The operator started as a process; killed when dropped.
struct Operator {
    child: Child,
    log: PathBuf,
}

impl Operator {
    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Deletes the test's namespace (and with it whatever the release left) and its SFTP directory,
/// also when an assertion failed half-way.
struct Cleanup {
    namespace: String,
    local_dir: PathBuf,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let _ = kubectl(&["delete", "namespace", &self.namespace, "--wait=false"]);
        let _ = std::fs::remove_dir_all(&self.local_dir);
    }
}

/// A kubeconfig acting as ServiceAccount `account`, with a token from the TokenRequest API.
async fn service_account_kubeconfig(client: &Client, namespace: &str, account: &str, path: &Path) {
    let accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), namespace);
    let request = TokenRequest {
        spec: TokenRequestSpec {
            audiences: vec![],
            expiration_seconds: Some(3600),
            ..TokenRequestSpec::default()
        },
        ..TokenRequest::default()
    };
    let token = accounts
        .create_token_request(account, &PostParams::default(), &request)
        .await
        .expect("token for the chart's ServiceAccount")
        .status
        .expect("token status")
        .token;
    let user = format!("system:serviceaccount:{namespace}:{account}");
    let kubeconfig = json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "testbed", "cluster": {
            "server": env_var("KUBE_APISERVER_URL"),
            "certificate-authority": env_var("KUBE_CA_FILE"),
        }}],
        "users": [{"name": user, "user": {"token": token}}],
        "contexts": [{"name": "operator", "context": {"cluster": "testbed", "user": user, "namespace": namespace}}],
        "current-context": "operator",
    });
    std::fs::write(path, serde_json::to_vec_pretty(&kubeconfig).expect("json")).expect("write");
}

/// A free loopback port for the operator's HTTP server.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

/// GET over plain HTTP/1.1: (status, body), or None when the server doesn't answer (yet).
fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(3))).ok()?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let status = response.split(' ').nth(1)?.parse().ok()?;
    let body = response.split_once("\r\n\r\n")?.1.to_string();
    Some((status, body))
}

fn condition(object: &Value, type_: &str) -> Option<Value> {
    object["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == type_)
        .cloned()
}

/// The objects of a manifest stream as (apiVersion, kind, namespace, name).
fn manifest_objects(manifest: &str) -> Vec<(String, String, Option<String>, String)> {
    documents(manifest)
        .iter()
        .map(|object| {
            (
                object["apiVersion"]
                    .as_str()
                    .expect("apiVersion")
                    .to_string(),
                kind_of(object).to_string(),
                object["metadata"]["namespace"].as_str().map(str::to_string),
                name_of(object).to_string(),
            )
        })
        .collect()
}

/// GETs an object of any kind; None when it does not exist.
async fn get_object(
    client: &Client,
    api_version: &str,
    kind: &str,
    namespace: Option<&str>,
    name: &str,
) -> Option<DynamicObject> {
    let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
    let gvk = GroupVersionKind::gvk(group, version, kind);
    let (resource, _) = kube::discovery::pinned_kind(client, &gvk)
        .await
        .unwrap_or_else(|err| panic!("discover {api_version} {kind}: {err}"));
    let api: Api<DynamicObject> = match namespace {
        Some(namespace) => Api::namespaced_with(client.clone(), namespace, &resource),
        None => Api::all_with(client.clone(), &resource),
    };
    api.get_opt(name)
        .await
        .unwrap_or_else(|err| panic!("get {kind} {name}: {err}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn helm_install_runs_the_institution_on_the_test_bed() {
    const WAIT: Duration = Duration::from_secs(90);
    let client = client().await;
    let namespace = test_namespace(&client, "helm").await;
    let release = "univ-example";
    let fullname = "univ-example-scheduled-exports";
    let work = tempfile::tempdir().expect("tempdir");
    let kubeconfig = kubeconfig_path();
    let kubeconfig = kubeconfig.to_str().expect("path");

    // The institution's database, SFTP directory and artifact prefix on the test bed.
    let database_url = create_database("sx_helm").await;
    let output = run_binary(
        &[
            "sample-data",
            "--database-url",
            &database_url,
            "--interactions",
            "25",
            "--proposals",
            "5",
        ],
        &[],
    );
    assert!(
        output.status.success(),
        "sample-data: {}",
        text(&output.stderr)
    );
    let (remote_dir, local_dir) = sftp_directory(&namespace);
    let read = |var: &str| std::fs::read_to_string(env_var(var)).expect("test bed file");
    let _cleanup = Cleanup {
        namespace: namespace.clone(),
        local_dir: local_dir.clone(),
    };

    // The example's values, pointed at the test bed; the chart creates the three Secrets.
    // No ServiceMonitor: the test bed has no Prometheus Operator CRDs.
    let overrides = json!({
        "database": {"create": true, "url": database_url},
        "sftp": {
            "host": env_var("SFTP_HOST"),
            "port": env_var("SFTP_PORT").parse::<u16>().expect("port"),
            "username": env_var("SFTP_USER"),
            "directory": remote_dir,
            "create": true,
            "privateKey": read("SFTP_PRIVATE_KEY_FILE"),
            "knownHosts": read("SFTP_KNOWN_HOSTS_FILE"),
        },
        "artifactStore": {
            "url": format!("s3://{}/{namespace}", env_var("S3_BUCKET")),
            "credentials": {
                "secretName": "scheduled-exports-artifacts",
                "create": true,
                "accessKeyId": env_var("AWS_ACCESS_KEY_ID"),
                "secretAccessKey": env_var("AWS_SECRET_ACCESS_KEY"),
                "region": env_var("AWS_REGION"),
                "endpointUrl": env_var("S3_ENDPOINT"),
            },
        },
        "metrics": {"serviceMonitor": {"enabled": false}},
        // The kubelet stand-in would run the Deployment's Pods too (it runs every pending Pod);
        // the operator runs below as one process this test controls instead.
        "replicaCount": 0,
    });
    let overrides_file = work.path().join("testbed-values.yaml");
    std::fs::write(
        &overrides_file,
        serde_yaml::to_string(&overrides).expect("yaml"),
    )
    .expect("write");
    let chart = chart_dir();
    let values = institution_values();
    helm_ok(&[
        "install",
        release,
        chart.to_str().expect("path"),
        "--namespace",
        &namespace,
        "--kubeconfig",
        kubeconfig,
        "--values",
        values.to_str().expect("path"),
        "--values",
        overrides_file.to_str().expect("path"),
        "--timeout",
        "2m",
    ]);

    // Every object of the release exists, labelled as Helm's; the CRD came with the chart (or was
    // there already) and is the committed one.
    let manifest = helm_ok(&[
        "get",
        "manifest",
        release,
        "--namespace",
        &namespace,
        "--kubeconfig",
        kubeconfig,
    ]);
    let objects = manifest_objects(&manifest);
    let created: BTreeSet<&str> = objects
        .iter()
        .map(|(_, kind, _, _)| kind.as_str())
        .collect();
    for kind in [
        "Deployment",
        "NetworkPolicy",
        "Role",
        "RoleBinding",
        "ScheduledExport",
        "Secret",
        "Service",
        "ServiceAccount",
    ] {
        assert!(
            created.contains(kind),
            "the release has no {kind}: {created:?}"
        );
    }
    for (api_version, kind, object_namespace, name) in &objects {
        assert_eq!(
            object_namespace.as_deref(),
            Some(namespace.as_str()),
            "{kind} {name}"
        );
        let object = get_object(&client, api_version, kind, Some(&namespace), name)
            .await
            .unwrap_or_else(|| panic!("{kind} {name} was not created"));
        let labels = object.metadata.labels.unwrap_or_default();
        assert_eq!(
            labels
                .get("app.kubernetes.io/managed-by")
                .map(String::as_str),
            Some("Helm")
        );
        assert_eq!(
            labels.get("app.kubernetes.io/instance").map(String::as_str),
            Some(release)
        );
    }
    let crd = get_object(
        &client,
        "apiextensions.k8s.io/v1",
        "CustomResourceDefinition",
        None,
        "scheduledexports.exports.crm.dev",
    )
    .await
    .expect("the CRD is installed");
    assert_eq!(crd.data["spec"]["names"]["shortNames"], json!(["sx"]));
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &namespace);
    let artifact_secret = secrets
        .get("scheduled-exports-artifacts")
        .await
        .expect("secret");

    // The operator, as the Deployment would run it: its env from the rendered Deployment (the
    // downward API resolved, envFrom read from the Secret), acting as the chart's ServiceAccount
    // so the chart's RBAC is what it gets. Leader election stays on: the Lease Role is tested too.
    let deployment = get_object(&client, "apps/v1", "Deployment", Some(&namespace), fullname)
        .await
        .expect("Deployment");
    let deployment = serde_json::to_value(&deployment).expect("json");
    let container = container(&deployment);
    let port = free_port();
    let pod_name = format!("{fullname}-0");
    let mut env: BTreeMap<String, String> = env_of(container)
        .into_iter()
        .map(|(name, value)| {
            let value = match value.as_str() {
                "fieldRef:metadata.namespace" => namespace.clone(),
                "fieldRef:metadata.name" => pod_name.clone(),
                _ => value,
            };
            (name, value)
        })
        .collect();
    for (key, value) in artifact_secret.data.clone().unwrap_or_default() {
        env.entry(key)
            .or_insert_with(|| String::from_utf8(value.0).expect("utf-8"));
    }
    env.insert("LISTEN_ADDRESS".into(), format!("127.0.0.1:{port}"));
    env.insert("TMPDIR".into(), work.path().display().to_string());
    env.insert("RUST_LOG".into(), "info,scheduled_exports=debug".into());
    let operator_kubeconfig = work.path().join("operator-kubeconfig");
    service_account_kubeconfig(&client, &namespace, fullname, &operator_kubeconfig).await;
    env.insert(
        "KUBECONFIG".into(),
        operator_kubeconfig.display().to_string(),
    );
    env.insert("PATH".into(), std::env::var("PATH").unwrap_or_default());
    let log = work.path().join("operator.log");
    let log_file = std::fs::File::create(&log).expect("log file");
    let args: Vec<&str> = container["args"]
        .as_array()
        .expect("args")
        .iter()
        .map(|arg| arg.as_str().expect("arg"))
        .collect();
    let operator = Operator {
        child: Command::new(env!("CARGO_BIN_EXE_scheduled-exports"))
            .args(&args)
            .env_clear()
            .envs(&env)
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().expect("log"))
            .stderr(log_file)
            .spawn()
            .expect("start the operator"),
        log,
    };

    // The probes and the scrape the chart points at.
    for path in ["/healthz", "/readyz"] {
        eventually(WAIT, &format!("{path} to answer 200"), || async {
            matches!(http_get(port, path), Some((200, _))).then_some(())
        })
        .await;
    }
    let (status, metrics) = http_get(port, "/metrics").expect("/metrics answers");
    assert_eq!(status, 200);
    assert!(
        metrics.trim_end().ends_with("# EOF"),
        "OpenMetrics text: {metrics}"
    );

    // The chart's ScheduledExports become Ready: the Secrets they reference exist.
    let api: Api<ScheduledExport> = Api::namespaced(client.clone(), &namespace);
    for (name, reason) in [
        ("interactions-daily", "Scheduled"),
        ("proposals-daily", "Scheduled"),
        ("interactions-archive", "Suspended"),
    ] {
        let ready = eventually(WAIT, &format!("{name} to become Ready"), || {
            let api = api.clone();
            async move {
                let object = serde_json::to_value(api.get(name).await.ok()?).ok()?;
                condition(&object, "Ready").filter(|c| c["status"] == "True")
            }
        })
        .await;
        assert_eq!(ready["reason"], reason, "{name}: {ready}");
    }
    let proposals =
        serde_json::to_value(api.get("proposals-daily").await.expect("get")).expect("json");
    assert_eq!(proposals["status"]["timeZone"], "America/Chicago");
    let daily =
        serde_json::to_value(api.get("interactions-daily").await.expect("get")).expect("json");
    assert_eq!(
        daily["status"]["timeZone"], "America/New_York",
        "defaultTimeZone applies"
    );

    // It holds the leader Lease in the release namespace.
    let lease = get_object(
        &client,
        "coordination.k8s.io/v1",
        "Lease",
        Some(&namespace),
        "scheduled-exports-controller",
    )
    .await
    .expect("the leader Lease");
    assert_eq!(lease.data["spec"]["holderIdentity"], pod_name.as_str());

    // One run through the chart's Job identity: the kubelet stand-in runs the Job as the export
    // ServiceAccount with the artifact store Secret through envFrom; the file lands on the server.
    api.patch(
        "interactions-daily",
        &PatchParams::default(),
        &Patch::Merge(
            &json!({"metadata": {"annotations": {"exports.crm.dev/run-now": "helm-test"}}}),
        ),
    )
    .await
    .expect("annotate run-now");
    let delivered = eventually(
        Duration::from_secs(120),
        "the run-now export to be delivered",
        || {
            let api = api.clone();
            async move {
                let object =
                    serde_json::to_value(api.get("interactions-daily").await.ok()?).ok()?;
                let last_run = &object["status"]["lastRun"];
                assert_ne!(last_run["phase"], "Failed", "the export failed: {last_run}");
                (last_run["phase"] == "Succeeded")
                    .then(|| {
                        object["status"]["delivery"]["file"]
                            .as_str()
                            .map(str::to_string)
                    })
                    .flatten()
            }
        },
    )
    .await;
    assert!(
        delivered.starts_with("interactions-") && delivered.ends_with(".csv"),
        "{delivered}"
    );
    assert!(
        local_dir.join(&delivered).is_file(),
        "{delivered} is on the SFTP server"
    );

    // The chart's RBAC was enough for everything the operator did.
    let log = operator.log();
    for refused in ["forbidden", "Forbidden", " 403"] {
        assert!(
            !log.contains(refused),
            "the operator was refused something:\n{log}"
        );
    }
    drop(operator);

    // Uninstall removes what the release created.
    helm_ok(&[
        "uninstall",
        release,
        "--namespace",
        &namespace,
        "--kubeconfig",
        kubeconfig,
        "--wait",
        "--timeout",
        "2m",
    ]);
    for (api_version, kind, _, name) in &objects {
        eventually(WAIT, &format!("{kind} {name} to be deleted"), || async {
            get_object(&client, api_version, kind, Some(&namespace), name)
                .await
                .is_none()
                .then_some(())
        })
        .await;
    }
    let releases = helm_ok(&[
        "list",
        "--namespace",
        &namespace,
        "--kubeconfig",
        kubeconfig,
        "-q",
    ]);
    assert!(releases.trim().is_empty(), "{releases}");
}
