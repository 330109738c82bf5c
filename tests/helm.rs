//! The Helm chart (charts/scheduled-exports): `helm lint` and `helm template` of the default values
//! and of the institution example, the artifact store a default install must be told, and a release
//! on the test bed's real node: installed with `--wait` into a restricted namespace, its operator
//! replicas electing a leader, run-now exports delivered by Job Pods with the s3:// and the file://
//! store, the leader's Pod deleted, then upgraded and uninstalled.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use common::*;
use k8s_openapi::api::admissionregistration::v1::{
    ValidatingAdmissionPolicy, ValidatingAdmissionPolicyBinding,
};
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{
    ConfigMap, PersistentVolume, PersistentVolumeClaim, Pod, Secret, Service, ServiceAccount,
};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kube::Client;
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use kube::core::GroupVersionKind;
use scheduled_exports::adapters::artifacts::{ArtifactKey, ArtifactStore};
use scheduled_exports::operator::job::{ANNOTATION_RUN_NOW_TOKEN, LABEL_OWNER_NAME};
use scheduled_exports::resource::ScheduledExport;
use serde_json::{Value, json};

const CRD_FILE: &str = "scheduledexports.exports.crm.dev.yaml";

/// The one value a release must be given (the chart has no default artifact store), for renders
/// whose subject is something else.
const S3_STORE: &str = "artifactStore.url=s3://crm-exports-artifacts/acme";
/// The file:// store the chart documents, on a claim it creates.
const FILE_STORE: &str = "artifactStore.url=file:///var/lib/scheduled-exports/artifacts";

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

/// What the operator may do wherever it watches (cluster-wide with watchAllNamespaces): no Secret.
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
        ("events.k8s.io/events", &["create", "patch"]),
    ])
}

/// What the operator may do only in the namespaces whose objects run: read their Secrets and
/// make each object's export identity.
fn namespaced_rules() -> BTreeMap<String, BTreeSet<String>> {
    rule_set(&[
        ("/secrets", &["get", "list"]),
        ("/serviceaccounts", &["create", "get", "patch"]),
        (
            "rbac.authorization.k8s.io/roles",
            &["create", "get", "patch"],
        ),
        (
            "rbac.authorization.k8s.io/rolebindings",
            &["create", "get", "patch"],
        ),
    ])
}

/// The Role of an operator that watches only its own namespace.
fn namespace_operator_rules() -> BTreeMap<String, BTreeSet<String>> {
    let mut rules = controller_rules();
    rules.extend(namespaced_rules());
    rules
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
fn lint_passes_for_the_required_values_and_the_institution_example() {
    let chart = chart_dir();
    let chart = chart.to_str().expect("path");
    let values = institution_values();
    for extra in [
        vec!["--set", S3_STORE],
        vec!["--set", FILE_STORE],
        vec!["--values", values.to_str().expect("path")],
    ] {
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
        S3_STORE,
        "--set",
        "schedules[0].name=x,schedules[0].fileType=interactions,schedules[0].time=07:15",
    ]);
    assert!(!output.status.success(), "lint accepted time 07:15");
    let said = format!("{}{}", text(&output.stdout), text(&output.stderr));
    assert!(said.contains("/schedules/0/time"), "{said}");
    // And rendering refuses a Secret to create without its value, saying which.
    let output = helm(&[
        "template",
        "acme",
        chart,
        "--set",
        S3_STORE,
        "--set",
        "database.create=true",
    ]);
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
    let rendered = render(&["--include-crds", "--set", S3_STORE]);
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
    let objects = render(&["--set", FILE_STORE]);
    assert_eq!(
        kinds(&objects),
        expected_kinds(&[
            ("Deployment", 1),
            ("Lease", 1),
            ("PersistentVolumeClaim", 1),
            ("PodDisruptionBudget", 1),
            ("Role", 2),
            ("RoleBinding", 2),
            ("Service", 1),
            ("ServiceAccount", 1),
        ]),
        "default values and a file:// store: no ClusterRole, no Secret, no ScheduledExport, no \
         optional extras, and no shared export identity (each object gets its own from the operator)"
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
    let leases = "acme-scheduled-exports-leader-election";
    assert_eq!(
        rules(find(&objects, "Role", name)),
        namespace_operator_rules()
    );
    assert_eq!(rules(find(&objects, "Role", leases)), lease_rules());
    assert_binding(
        find(&objects, "RoleBinding", name),
        "Role",
        name,
        name,
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
    // The leader Lease is the release's (so uninstall removes it); its holder is the operator's.
    let lease = find(&objects, "Lease", "scheduled-exports-controller");
    assert_eq!(lease["apiVersion"], "coordination.k8s.io/v1");
    assert_eq!(lease["spec"], json!({}));
    let without_election = render(&["--set", FILE_STORE, "--set", "leaderElection=false"]);
    assert!(
        !without_election.iter().any(|o| kind_of(o) == "Lease"),
        "no Lease without leader election"
    );

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
    // Mounted by both replicas and every export Job, wherever they are scheduled.
    assert_eq!(claim["spec"]["accessModes"], json!(["ReadWriteMany"]));
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

/// What renders for `helm template` with `extra`: the objects, or the error Helm printed.
fn try_render(extra: &[&str]) -> Result<Vec<Value>, String> {
    let chart = chart_dir();
    let mut args = vec!["template", "acme", chart.to_str().expect("path")];
    args.extend_from_slice(extra);
    let output = helm(&args);
    if output.status.success() {
        Ok(documents(&text(&output.stdout)))
    } else {
        Err(text(&output.stderr))
    }
}

/// The claims a Pod template mounts, by name.
fn claims_mounted(pod_spec: &Value) -> Vec<String> {
    pod_spec["volumes"]
        .as_array()
        .expect("volumes")
        .iter()
        .filter_map(|v| v["persistentVolumeClaim"]["claimName"].as_str())
        .map(str::to_string)
        .collect()
}

/// A default install must work on a cluster of many nodes, where the two replicas and the export
/// Jobs land on different nodes. A ReadWriteOnce claim mounted by all of them cannot: so there is
/// no default store, and a file:// store's claim must be ReadWriteMany.
#[test]
fn no_default_install_depends_on_pods_sharing_a_node() {
    // Default values: no store is guessed; the message names the value and both choices.
    let refused = try_render(&[]).expect_err("rendered without artifactStore.url");
    for needed in [
        "artifactStore.url is required",
        "s3://",
        "file://",
        "ReadWriteMany",
    ] {
        assert!(refused.contains(needed), "{needed:?} not in: {refused}");
    }
    // A file:// store on a claim only one node can mount is refused, saying why and what instead.
    for modes in ["{ReadWriteOnce}", "{ReadWriteOncePod}"] {
        let refused = try_render(&[
            "--set",
            FILE_STORE,
            "--set",
            &format!("artifactStore.persistence.accessModes={modes}"),
        ])
        .expect_err(modes);
        for needed in [
            "artifactStore.persistence.accessModes",
            "must be ReadWriteMany",
            "s3://",
        ] {
            assert!(
                refused.contains(needed),
                "{modes}: {needed:?} not in: {refused}"
            );
        }
    }

    // A file:// store with the chart's defaults: one ReadWriteMany claim, mounted by the
    // replicas (two, free to spread) and named to the operator for its Jobs.
    let objects = try_render(&["--set", FILE_STORE]).expect("file:// with the defaults");
    let claim = find(
        &objects,
        "PersistentVolumeClaim",
        "acme-scheduled-exports-artifacts",
    );
    assert_eq!(claim["spec"]["accessModes"], json!(["ReadWriteMany"]));
    let deployment = find(&objects, "Deployment", "acme-scheduled-exports");
    assert_eq!(deployment["spec"]["replicas"], 2);
    let pod = &deployment["spec"]["template"]["spec"];
    assert_eq!(
        claims_mounted(pod),
        vec!["acme-scheduled-exports-artifacts"]
    );
    assert!(pod.get("affinity").is_none() && pod.get("nodeSelector").is_none());
    let env = env_of(container(deployment));
    assert_eq!(
        env["ARTIFACT_STORE_CLAIM"],
        "acme-scheduled-exports-artifacts"
    );

    // An s3:// store: nothing node-bound at all.
    let objects = try_render(&["--set", S3_STORE]).expect("s3://");
    assert!(
        !objects
            .iter()
            .any(|o| kind_of(o) == "PersistentVolumeClaim")
    );
    let deployment = find(&objects, "Deployment", "acme-scheduled-exports");
    assert!(claims_mounted(&deployment["spec"]["template"]["spec"]).is_empty());
    assert!(!env_of(container(deployment)).contains_key("ARTIFACT_STORE_CLAIM"));

    // A claim of the user's own is taken as given (the chart cannot see its access modes).
    let objects = try_render(&[
        "--set",
        FILE_STORE,
        "--set",
        "artifactStore.persistence.existingClaim=shared-artifacts",
        "--set",
        "artifactStore.persistence.accessModes={ReadWriteOnce}",
    ])
    .expect("an existing claim");
    assert!(
        !objects
            .iter()
            .any(|o| kind_of(o) == "PersistentVolumeClaim")
    );
    let deployment = find(&objects, "Deployment", "acme-scheduled-exports");
    assert_eq!(
        claims_mounted(&deployment["spec"]["template"]["spec"]),
        vec!["shared-artifacts"]
    );
}

#[test]
fn watching_all_namespaces_takes_a_cluster_role() {
    let objects = render(&[
        "--set",
        S3_STORE,
        "--set",
        "watchAllNamespaces=true",
        "--set",
        "exportNamespaces={univ-b}",
    ]);
    let kinds = kinds(&objects);
    assert_eq!(kinds.get("ClusterRole"), Some(&2), "{kinds:?}");
    assert_eq!(kinds.get("ClusterRoleBinding"), Some(&1), "{kinds:?}");
    assert_standard_metadata(&objects, "univ-a", &["ClusterRole", "ClusterRoleBinding"]);
    // Cluster-scoped names carry the release namespace: releases in two namespaces don't clash.
    let cluster = "univ-a-acme-scheduled-exports";
    assert_eq!(
        rules(find(&objects, "ClusterRole", cluster)),
        controller_rules(),
        "cluster-wide: no Secret, no ServiceAccount, no RBAC object"
    );
    assert_binding(
        find(&objects, "ClusterRoleBinding", cluster),
        "ClusterRole",
        cluster,
        "acme-scheduled-exports",
        "univ-a",
    );
    // Secrets and the export identities: granted by RoleBindings in the listed namespaces only.
    let namespaced = format!("{cluster}-namespaced");
    assert_eq!(
        rules(find(&objects, "ClusterRole", &namespaced)),
        namespaced_rules()
    );
    let bindings: BTreeSet<(String, String)> = objects
        .iter()
        .filter(|o| kind_of(o) == "RoleBinding")
        .map(|o| {
            let namespace = o["metadata"]["namespace"].as_str().expect("namespace");
            (namespace.to_string(), name_of(o).to_string())
        })
        .collect();
    let binding = "acme-scheduled-exports-namespaced";
    let leases = "acme-scheduled-exports-leader-election";
    assert_eq!(
        bindings,
        BTreeSet::from([
            ("univ-a".into(), leases.into()),
            ("univ-a".into(), binding.into()),
            ("univ-b".into(), binding.into()),
        ])
    );
    for object in objects
        .iter()
        .filter(|o| kind_of(o) == "RoleBinding" && name_of(o) == binding)
    {
        assert_binding(
            object,
            "ClusterRole",
            &namespaced,
            "acme-scheduled-exports",
            "univ-a",
        );
    }
    // No Role grants anything but the Lease; no ServiceAccount but the operator's.
    let roles: Vec<&str> = objects
        .iter()
        .filter(|o| kind_of(o) == "Role")
        .map(name_of)
        .collect();
    assert_eq!(roles, [leases]);
    let accounts: Vec<&str> = objects
        .iter()
        .filter(|o| kind_of(o) == "ServiceAccount")
        .map(name_of)
        .collect();
    assert_eq!(accounts, ["acme-scheduled-exports"]);
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
            ("Lease", 1),
            ("NetworkPolicy", 2),
            ("PodDisruptionBudget", 1),
            ("Role", 2),
            ("RoleBinding", 2),
            ("ScheduledExport", 3),
            ("Service", 1),
            ("ServiceAccount", 1),
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
    // The operator holds no store credentials: a recopy reads the object's namespace's Secret.
    assert!(container.get("envFrom").is_none(), "{container}");
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
// The chart on the test bed's real node
// ------------------------------------------------------------------------------------------------

const RELEASE: &str = "univ-example";
const FULLNAME: &str = "univ-example-scheduled-exports";
/// The ScheduledExport the release renders from `schedules`.
const SCHEDULE: &str = "interactions-daily";
/// The operator's leader Lease (a fixed name, rendered by the chart).
const LEASE: &str = "scheduled-exports-controller";
/// Where the chart mounts a file:// store in the operator and the export Jobs.
const FILE_STORE_PATH: &str = "/var/lib/scheduled-exports/artifacts";
const STORAGE_CLASS: &str = "scheduled-exports-helm-test";
/// A rollout, a takeover or an export on the shared two-core machine.
const WAIT: Duration = Duration::from_secs(180);

/// `helm` against the test bed's cluster.
fn helm_on_bed(args: &[&str]) -> String {
    let kubeconfig = kubeconfig_path();
    let mut args = args.to_vec();
    args.extend(["--kubeconfig", kubeconfig.to_str().expect("path")]);
    helm_ok(&args)
}

/// Deletes what the test made outside the release (namespace, PersistentVolume, directories),
/// also when an assertion failed half-way.
struct Cleanup {
    namespace: String,
    volume: String,
    directories: Vec<PathBuf>,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let _ = kubectl(&["delete", "namespace", &self.namespace, "--wait=false"]);
        let _ = kubectl(&[
            "delete",
            "persistentvolume",
            &self.volume,
            "--ignore-not-found",
            "--wait=false",
        ]);
        let policy = admission_policy_name(&self.namespace);
        for kind in [
            "validatingadmissionpolicybinding",
            "validatingadmissionpolicy",
        ] {
            let _ = kubectl(&["delete", kind, &policy, "--ignore-not-found"]);
        }
        for directory in &self.directories {
            let _ = std::fs::remove_dir_all(directory);
        }
    }
}

/// A PersistentVolume for the release's file:// claim (the test bed has no provisioner): a
/// directory of this machine, owned by the image's user (hostPath volumes get no fsGroup), bound
/// to the claim the chart will create and to nothing else.
async fn artifact_volume(client: &Client, name: &str, namespace: &str, directory: &Path) {
    std::fs::create_dir_all(directory).expect("create the volume's directory");
    let status = Command::new("chown")
        .args(["65532:65532", directory.to_str().expect("path")])
        .status()
        .expect("chown");
    assert!(status.success(), "chown the volume's directory");
    let volume: PersistentVolume = serde_json::from_value(json!({
        "metadata": {"name": name, "labels": {"scheduled-exports.test/owner": "integration-tests"}},
        "spec": {
            "capacity": {"storage": "1Gi"},
            // One node here; ReadWriteMany is what the chart asks of a file:// store's claim.
            "accessModes": ["ReadWriteMany"],
            "persistentVolumeReclaimPolicy": "Retain",
            "storageClassName": STORAGE_CLASS,
            "claimRef": {"namespace": namespace, "name": format!("{FULLNAME}-artifacts")},
            "hostPath": {"path": directory.to_str().expect("path"), "type": "Directory"},
        }
    }))
    .expect("PersistentVolume");
    Api::<PersistentVolume>::all(client.clone())
        .create(&PostParams::default(), &volume)
        .await
        .expect("create the PersistentVolume");
}

fn is_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|status| status.conditions.as_ref())
        .is_some_and(|conditions| {
            conditions
                .iter()
                .any(|c| c.type_ == "Ready" && c.status == "True")
        })
}

fn pod_name(pod: &Pod) -> String {
    pod.metadata.name.clone().expect("a Pod has a name")
}

/// The operator's Pods of the release that are not being deleted.
async fn operator_pods(pods: &Api<Pod>) -> Vec<Pod> {
    let selector =
        format!("app.kubernetes.io/instance={RELEASE},app.kubernetes.io/component=controller");
    pods.list(&ListParams::default().labels(&selector))
        .await
        .map(|list| list.items)
        .unwrap_or_default()
        .into_iter()
        .filter(|pod| pod.metadata.deletion_timestamp.is_none())
        .collect()
}

/// Waits until the Deployment's current template runs in two Ready Pods and no other Pod of it is
/// left (a rollout is over), then returns them.
async fn two_ready_replicas(client: &Client, namespace: &str) -> Vec<Pod> {
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), namespace);
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    eventually(WAIT, "two Ready operator replicas", || async {
        let deployment = deployments.get(FULLNAME).await.ok()?;
        let status = deployment.status?;
        let settled = status.observed_generation == deployment.metadata.generation
            && status.replicas == Some(2)
            && status.updated_replicas == Some(2)
            && status.ready_replicas == Some(2);
        if !settled {
            return None;
        }
        let live = operator_pods(&pods).await;
        (live.len() == 2 && live.iter().all(is_ready)).then_some(live)
    })
    .await
}

/// GET over plain HTTP/1.1: (status, body), or None when nothing answers.
fn http_get(address: &str, path: &str) -> Option<(u16, String)> {
    let mut stream = std::net::TcpStream::connect(address).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(3))).ok()?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let status = response.split(' ').nth(1)?.parse().ok()?;
    let body = response.split_once("\r\n\r\n")?.1.to_string();
    Some((status, body))
}

/// Each replica is Ready because the kubelet's probes of the chart's endpoints pass, and those
/// endpoints answer from this machine too (the Pod network is the host's bridge).
fn assert_probed_and_answering(pods: &[Pod]) {
    for pod in pods {
        let name = pod_name(pod);
        let spec = pod.spec.as_ref().expect("spec");
        let container = &spec.containers[0];
        let probe_path = |probe: &Option<k8s_openapi::api::core::v1::Probe>| {
            probe
                .as_ref()
                .and_then(|p| p.http_get.as_ref())
                .and_then(|get| get.path.clone())
        };
        assert_eq!(
            probe_path(&container.readiness_probe).as_deref(),
            Some("/readyz"),
            "{name}"
        );
        assert_eq!(
            probe_path(&container.liveness_probe).as_deref(),
            Some("/healthz"),
            "{name}"
        );
        let ip = pod
            .status
            .as_ref()
            .and_then(|s| s.pod_ip.clone())
            .expect("a Ready Pod has an IP");
        for path in ["/readyz", "/healthz"] {
            let answer = http_get(&format!("{ip}:8080"), path);
            assert_eq!(
                answer.as_ref().map(|(status, _)| *status),
                Some(200),
                "{name} {path}: {answer:?}"
            );
        }
        let restricted = container
            .security_context
            .as_ref()
            .expect("securityContext");
        assert_eq!(restricted.run_as_non_root, Some(true), "{name}");
        assert_eq!(restricted.read_only_root_filesystem, Some(true), "{name}");
    }
}

const NO_NEW_OPERATOR_PODS: &str = "the test keeps the Deployment from replacing a Pod";

/// While it exists, the API server refuses new operator Pods of the release in `namespace` (and
/// nothing else): a ValidatingAdmissionPolicy with its binding.
struct NoNewOperatorPods {
    client: Client,
    name: String,
}

async fn refuse_new_operator_pods(client: &Client, namespace: &str) -> NoNewOperatorPods {
    let name = admission_policy_name(namespace);
    let owner = json!({"scheduled-exports.test/owner": "integration-tests"});
    let policy: ValidatingAdmissionPolicy = serde_json::from_value(json!({
        "metadata": {"name": name, "labels": owner},
        "spec": {
            "failurePolicy": "Fail",
            "matchConstraints": {"resourceRules": [{
                "apiGroups": [""], "apiVersions": ["v1"], "operations": ["CREATE"],
                "resources": ["pods"],
            }]},
            "validations": [{"expression": "false", "message": NO_NEW_OPERATOR_PODS}],
        }
    }))
    .expect("policy");
    let binding: ValidatingAdmissionPolicyBinding = serde_json::from_value(json!({
        "metadata": {"name": name, "labels": owner},
        "spec": {
            "policyName": name,
            "validationActions": ["Deny"],
            "matchResources": {
                "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": namespace}},
                "objectSelector": {"matchLabels": {
                    "app.kubernetes.io/instance": RELEASE,
                    "app.kubernetes.io/component": "controller",
                }},
            },
        }
    }))
    .expect("binding");
    let post = PostParams::default();
    Api::<ValidatingAdmissionPolicy>::all(client.clone())
        .create(&post, &policy)
        .await
        .expect("create the ValidatingAdmissionPolicy");
    Api::<ValidatingAdmissionPolicyBinding>::all(client.clone())
        .create(&post, &binding)
        .await
        .expect("create the ValidatingAdmissionPolicyBinding");
    // In force once the API server has loaded both: a server-side dry run of the Deployment's own
    // Pod is refused with the policy's message.
    let template = Api::<Deployment>::namespaced(client.clone(), namespace)
        .get(FULLNAME)
        .await
        .expect("the Deployment")
        .spec
        .expect("spec")
        .template;
    let probe = Pod {
        metadata: kube::api::ObjectMeta {
            name: Some("admission-probe".into()),
            labels: template.metadata.and_then(|m| m.labels),
            ..Default::default()
        },
        spec: template.spec,
        ..Default::default()
    };
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let dry_run = PostParams {
        dry_run: true,
        ..PostParams::default()
    };
    eventually(WAIT, "the policy to refuse operator Pods", || async {
        match pods.create(&dry_run, &probe).await {
            Err(kube::Error::Api(response)) if response.message.contains(NO_NEW_OPERATOR_PODS) => {
                Some(())
            }
            _ => None,
        }
    })
    .await;
    NoNewOperatorPods {
        client: client.clone(),
        name,
    }
}

fn admission_policy_name(namespace: &str) -> String {
    format!("{namespace}-no-new-operator-pods")
}

impl NoNewOperatorPods {
    async fn lift(self) {
        let delete = DeleteParams::default();
        Api::<ValidatingAdmissionPolicyBinding>::all(self.client.clone())
            .delete(&self.name, &delete)
            .await
            .expect("delete the ValidatingAdmissionPolicyBinding");
        Api::<ValidatingAdmissionPolicy>::all(self.client.clone())
            .delete(&self.name, &delete)
            .await
            .expect("delete the ValidatingAdmissionPolicy");
    }
}

async fn lease_holder(leases: &Api<Lease>) -> Option<String> {
    leases
        .get_opt(LEASE)
        .await
        .ok()??
        .spec?
        .holder_identity
        .filter(|holder| !holder.is_empty())
}

/// Waits until one of `pods` holds the Lease; returns its name.
async fn leader_among(leases: &Api<Lease>, pods: &[Pod]) -> String {
    let names: Vec<String> = pods.iter().map(pod_name).collect();
    eventually(
        WAIT,
        &format!("one of {names:?} to hold the Lease"),
        || async {
            lease_holder(leases)
                .await
                .filter(|holder| names.contains(holder))
        },
    )
    .await
}

async fn ask_run_now(api: &Api<ScheduledExport>, token: &str) {
    api.patch(
        SCHEDULE,
        &PatchParams::default(),
        &Patch::Merge(&json!({"metadata": {"annotations": {"exports.crm.dev/run-now": token}}})),
    )
    .await
    .expect("annotate run-now");
}

/// The Jobs of the schedule created for run-now `token`.
async fn jobs_for_token(jobs: &Api<Job>, token: &str) -> Vec<Job> {
    jobs.list(&ListParams::default().labels(&format!("{LABEL_OWNER_NAME}={SCHEDULE}")))
        .await
        .expect("list Jobs")
        .items
        .into_iter()
        .filter(|job| {
            job.metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(ANNOTATION_RUN_NOW_TOKEN))
                .map(String::as_str)
                == Some(token)
        })
        .collect()
}

/// One run asked for with `token`, followed to its end: exactly one Job, run by one real Pod of
/// the project's image on the node, delivering a file to the SFTP directory whose rows, size and
/// digest are those the status records. Returns the status' `lastRun`.
async fn run_now_delivered(
    client: &Client,
    namespace: &str,
    token: &str,
    local_dir: &Path,
) -> Value {
    let api: Api<ScheduledExport> = Api::namespaced(client.clone(), namespace);
    let jobs: Api<Job> = Api::namespaced(client.clone(), namespace);
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    ask_run_now(&api, token).await;
    let job_name = eventually(WAIT, &format!("a Job for run-now {token}"), || async {
        jobs_for_token(&jobs, token)
            .await
            .first()
            .and_then(|job| job.metadata.name.clone())
    })
    .await;
    let last_run = eventually(WAIT, &format!("Job {job_name} to deliver"), || async {
        let object = serde_json::to_value(api.get(SCHEDULE).await.ok()?).ok()?;
        let status = &object["status"];
        let last_run = &status["lastRun"];
        if status["lastRunNowToken"] != token || last_run["jobName"] != job_name.as_str() {
            return None;
        }
        if last_run["phase"] == "Failed" {
            let (_, log, _) = kubectl(&["-n", namespace, "logs", &format!("job/{job_name}")]);
            panic!("the export failed: {last_run}\n{log}");
        }
        (last_run["phase"] == "Succeeded" && status["delivery"]["file"] == last_run["fileName"])
            .then(|| last_run.clone())
    })
    .await;

    // Exactly once: one Job for the token, one Pod for the Job, and it succeeded (the Job
    // controller counts it a moment after the export wrote its status).
    let job_status = eventually(WAIT, &format!("Job {job_name} to complete"), || async {
        let status = jobs.get(&job_name).await.ok()?.status?;
        (status.succeeded == Some(1)).then_some(status)
    })
    .await;
    assert_eq!(
        job_status.failed.unwrap_or(0),
        0,
        "{job_name}: {job_status:?}"
    );
    assert_eq!(
        jobs_for_token(&jobs, token).await.len(),
        1,
        "Jobs for run-now {token}"
    );
    let job_pods = pods
        .list(&ListParams::default().labels(&format!("job-name={job_name}")))
        .await
        .expect("list the Job's Pods")
        .items;
    assert_eq!(job_pods.len(), 1, "Pods of {job_name}");
    let pod = &job_pods[0];
    let spec = pod.spec.as_ref().expect("spec");
    assert_eq!(
        spec.node_name.as_deref(),
        Some(env_var("TESTBED_NODE_NAME").as_str())
    );
    assert_eq!(
        spec.containers[0].image.as_deref(),
        Some(env_var("SCHEDULED_EXPORTS_IMAGE").as_str()),
        "the export ran the test bed's image"
    );
    let exit_code = pod
        .status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .and_then(|statuses| statuses.first())
        .and_then(|c| c.state.as_ref())
        .and_then(|state| state.terminated.as_ref())
        .map(|terminated| terminated.exit_code);
    assert_eq!(exit_code, Some(0), "the export container of {job_name}");

    // The file on the SFTP server is the one the status describes.
    let file = last_run["fileName"].as_str().expect("fileName");
    assert!(
        file.starts_with("interactions-") && file.ends_with(".csv"),
        "{file}"
    );
    let bytes = std::fs::read(local_dir.join(file)).expect("the file is on the SFTP server");
    assert_eq!(
        Some(bytes.len() as u64),
        last_run["bytes"].as_u64(),
        "{file}"
    );
    assert_eq!(
        last_run["sha256"].as_str(),
        Some(sha256_hex(&bytes).as_str()),
        "{file}"
    );
    let mut reader = csv::Reader::from_reader(bytes.as_slice());
    assert_eq!(
        reader.headers().expect("header").get(0),
        Some("interaction_id")
    );
    let rows = reader
        .records()
        .collect::<Result<Vec<_>, _>>()
        .expect("CSV records")
        .len();
    assert_eq!(Some(rows as u64), last_run["rows"].as_u64(), "{file}");
    last_run
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}

/// A replica that was refused an API call logs it; none may have been.
fn assert_no_refusals(namespace: &str, pods: &[Pod]) {
    for pod in pods {
        let name = pod_name(pod);
        let (ok, log, err) = kubectl(&["-n", namespace, "logs", &name]);
        assert!(ok, "kubectl logs {name}: {err}");
        for refused in ["forbidden", "Forbidden", " 403"] {
            assert!(
                !log.contains(refused),
                "{name} was refused something:\n{log}"
            );
        }
    }
}

fn names_of<K: kube::Resource>(objects: Vec<K>) -> impl Iterator<Item = String> {
    objects
        .into_iter()
        .map(|o| o.meta().name.clone().unwrap_or_default())
}

async fn list_all<K>(client: &Client, namespace: &str) -> Vec<K>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
{
    Api::<K>::namespaced(client.clone(), namespace)
        .list(&ListParams::default())
        .await
        .expect("list")
        .items
}

/// Everything of the kinds a release makes or causes that is still in the namespace (but what
/// every namespace has: the `default` ServiceAccount and the root CA ConfigMap).
async fn leftovers(client: &Client, namespace: &str) -> Vec<String> {
    let mut left = Vec::new();
    let mut add = |kind: &str, names: Vec<String>| {
        left.extend(names.into_iter().map(|name| format!("{kind}/{name}")));
    };
    add(
        "Deployment",
        names_of(list_all::<Deployment>(client, namespace).await).collect(),
    );
    add(
        "ReplicaSet",
        names_of(list_all::<ReplicaSet>(client, namespace).await).collect(),
    );
    add(
        "Pod",
        names_of(list_all::<Pod>(client, namespace).await).collect(),
    );
    add(
        "Job",
        names_of(list_all::<Job>(client, namespace).await).collect(),
    );
    add(
        "Role",
        names_of(list_all::<Role>(client, namespace).await).collect(),
    );
    add(
        "RoleBinding",
        names_of(list_all::<RoleBinding>(client, namespace).await).collect(),
    );
    add(
        "Lease",
        names_of(list_all::<Lease>(client, namespace).await).collect(),
    );
    add(
        "Service",
        names_of(list_all::<Service>(client, namespace).await).collect(),
    );
    add(
        "Secret",
        names_of(list_all::<Secret>(client, namespace).await).collect(),
    );
    add(
        "PersistentVolumeClaim",
        names_of(list_all::<PersistentVolumeClaim>(client, namespace).await).collect(),
    );
    add(
        "PodDisruptionBudget",
        names_of(list_all::<PodDisruptionBudget>(client, namespace).await).collect(),
    );
    add(
        "NetworkPolicy",
        names_of(list_all::<NetworkPolicy>(client, namespace).await).collect(),
    );
    add(
        "ScheduledExport",
        names_of(list_all::<ScheduledExport>(client, namespace).await).collect(),
    );
    add(
        "ServiceAccount",
        names_of(list_all::<ServiceAccount>(client, namespace).await)
            .filter(|name| name != "default")
            .collect(),
    );
    add(
        "ConfigMap",
        names_of(list_all::<ConfigMap>(client, namespace).await)
            .filter(|name| name != "kube-root-ca.crt")
            .collect(),
    );
    left
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

fn write_values(path: &Path, values: &Value) -> String {
    std::fs::write(path, serde_yaml::to_string(values).expect("yaml")).expect("write values");
    path.display().to_string()
}

/// The user's path on a real node: `helm install --wait` with the test bed's values into a
/// restricted namespace, two replicas Ready through their probes and electing a leader, run-now
/// exports delivered by Job Pods with the s3:// store, the leader's Pod deleted and the other
/// replica taking over with the next run happening once, `helm upgrade` to a file:// store on a
/// PersistentVolume, and `helm uninstall` leaving nothing of the release.
#[tokio::test(flavor = "multi_thread")]
async fn helm_release_runs_exports_on_the_real_node() {
    let started = std::time::Instant::now();
    let phase = |what: &str| eprintln!("[{:>5.1}s] {what}", started.elapsed().as_secs_f64());
    let client = client().await;
    // Restricted: a Pod of the release (operator or export Job) that the level refuses is never
    // created, and the test times out waiting for it.
    let namespace = restricted_namespace(&client, "helm").await;
    let (remote_dir, local_dir) = sftp_directory(&namespace);
    let volume_dir = repo_root()
        .join("target/helm-test-volumes")
        .join(&namespace);
    let volume = format!("{namespace}-artifacts");
    let _cleanup = Cleanup {
        namespace: namespace.clone(),
        volume: volume.clone(),
        directories: vec![local_dir.clone(), volume_dir.clone()],
    };
    let work = tempfile::tempdir().expect("tempdir");
    let chart = chart_dir();
    let chart = chart.to_str().expect("path");
    let bed_values = env_var("HELM_VALUES_FILE");
    let bed: Value = serde_yaml::from_str(
        &std::fs::read_to_string(&bed_values).expect("read the test bed's helm values"),
    )
    .expect("helm-values.yaml is YAML");
    let s3_store = bed["artifactStore"]["url"]
        .as_str()
        .expect("helm-values.yaml has an artifact store")
        .to_string();
    assert!(s3_store.starts_with("s3://"), "{s3_store}");

    // The test bed's values as they are, plus this test's SFTP directory and one schedule.
    let release_values = json!({
        "sftp": {"directory": remote_dir},
        "schedules": [{"name": SCHEDULE, "fileType": "interactions", "time": "07:00"}],
    });
    let release_values = write_values(&work.path().join("release.yaml"), &release_values);
    phase("helm install --wait");
    helm_on_bed(&[
        "install",
        RELEASE,
        chart,
        "--namespace",
        &namespace,
        "--values",
        &bed_values,
        "--values",
        &release_values,
        "--wait",
        "--timeout",
        "3m",
    ]);
    phase("installed");

    // Every object of the release exists, labelled as Helm's.
    let manifest = helm_on_bed(&["get", "manifest", RELEASE, "--namespace", &namespace]);
    let objects = manifest_objects(&manifest);
    let created: BTreeSet<&str> = objects
        .iter()
        .map(|(_, kind, _, _)| kind.as_str())
        .collect();
    for kind in [
        "Deployment",
        "Lease",
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
            labels.get("app.kubernetes.io/instance").map(String::as_str),
            Some(RELEASE)
        );
    }

    // Both replicas Ready through their probes, one of them the leader.
    let replicas = two_ready_replicas(&client, &namespace).await;
    assert_probed_and_answering(&replicas);
    let leases: Api<Lease> = Api::namespaced(client.clone(), &namespace);
    let leader = leader_among(&leases, &replicas).await;
    phase(&format!("both replicas Ready, {leader} leads"));
    let services: Api<Service> = Api::namespaced(client.clone(), &namespace);
    let service_ip = services
        .get(FULLNAME)
        .await
        .expect("the Service")
        .spec
        .and_then(|spec| spec.cluster_ip)
        .expect("a ClusterIP");
    let (status, metrics) =
        http_get(&format!("{service_ip}:8080"), "/metrics").expect("/metrics through the Service");
    assert_eq!(status, 200);
    assert!(
        metrics.trim_end().ends_with("# EOF"),
        "OpenMetrics text: {metrics}"
    );

    // A run now, delivered by a Job Pod; its artifact is in the s3:// store (MinIO).
    let first = run_now_delivered(&client, &namespace, "helm-s3", &local_dir).await;
    phase(&format!(
        "run-now delivered {} with the s3:// store",
        first["fileName"]
    ));
    let s3 =
        ArtifactStore::from_url_with(&s3_store, &testbed_s3_options()).expect("the s3:// store");
    let first_file = first["fileName"].as_str().expect("file").to_string();
    assert!(
        s3.exists(&ArtifactKey::new(&namespace, SCHEDULE, &first_file))
            .await
            .expect("ask the s3:// store"),
        "{first_file} is kept in {s3_store}"
    );
    assert_no_refusals(&namespace, &replicas);

    // The leader's Pod goes; the standby takes the Lease and the next run happens once. While it
    // does, no replacement Pod may be created (it would start and race the standby for the Lease).
    let standby = replicas
        .iter()
        .map(pod_name)
        .find(|name| *name != leader)
        .expect("two replicas");
    let transitions = |lease: Lease| lease.spec.and_then(|spec| spec.lease_transitions);
    let transitions_before = transitions(leases.get(LEASE).await.expect("the Lease"));
    let no_replacement = refuse_new_operator_pods(&client, &namespace).await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), &namespace);
    pods.delete(&leader, &DeleteParams::default())
        .await
        .expect("delete the leader's Pod");
    let api: Api<ScheduledExport> = Api::namespaced(client.clone(), &namespace);
    ask_run_now(&api, "helm-takeover").await;
    let successor = eventually(WAIT, "another replica to take the Lease", || async {
        lease_holder(&leases)
            .await
            .filter(|holder| *holder != leader)
    })
    .await;
    assert_eq!(successor, standby, "the standby took over");
    let transitions_after = transitions(leases.get(LEASE).await.expect("the Lease"));
    assert!(
        transitions_after > transitions_before,
        "a takeover counts as a transition: {transitions_before:?} then {transitions_after:?}"
    );
    phase(&format!(
        "{leader} deleted; the standby {successor} holds the Lease"
    ));
    let second = run_now_delivered(&client, &namespace, "helm-takeover", &local_dir).await;
    phase(&format!(
        "after the takeover, run-now delivered {}",
        second["fileName"]
    ));
    let alone: Vec<String> = operator_pods(&pods).await.iter().map(pod_name).collect();
    assert_eq!(alone, vec![standby.clone()], "the standby ran it alone");
    no_replacement.lift().await;
    let jobs: Api<Job> = Api::namespaced(client.clone(), &namespace);
    let all_jobs: Vec<String> = names_of(
        jobs.list(&ListParams::default())
            .await
            .expect("list Jobs")
            .items,
    )
    .collect();
    assert_eq!(all_jobs.len(), 2, "one Job per run: {all_jobs:?}");
    assert_eq!(
        common::fixture::files_in(&local_dir),
        Vec::from([
            first_file.clone(),
            second["fileName"].as_str().expect("file").to_string()
        ]),
        "one file per run"
    );
    let replicas = two_ready_replicas(&client, &namespace).await;
    assert!(
        replicas.iter().all(|pod| pod_name(pod) != leader),
        "the deleted Pod is gone"
    );
    let holder = leader_among(&leases, &replicas).await;
    assert_eq!(holder, successor, "the successor keeps the Lease");
    assert_no_refusals(&namespace, &replicas);

    // helm upgrade: the file:// store on a PersistentVolume instead, without the S3 Secret.
    artifact_volume(&client, &volume, &namespace, &volume_dir).await;
    let file_values = json!({
        "artifactStore": {
            "url": format!("file://{FILE_STORE_PATH}"),
            "persistence": {
                "enabled": true,
                "storageClassName": STORAGE_CLASS,
                "size": "1Gi",
                "accessModes": ["ReadWriteMany"],
            },
            "credentials": {"create": false},
        },
    });
    let file_values = write_values(&work.path().join("file-store.yaml"), &file_values);
    phase("helm upgrade --wait (file:// store on a PersistentVolume)");
    helm_on_bed(&[
        "upgrade",
        RELEASE,
        chart,
        "--namespace",
        &namespace,
        "--values",
        &bed_values,
        "--values",
        &release_values,
        "--values",
        &file_values,
        "--wait",
        "--timeout",
        "3m",
    ]);
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), &namespace);
    let claim = claims
        .get(&format!("{FULLNAME}-artifacts"))
        .await
        .expect("the chart's claim");
    assert_eq!(
        claim.spec.as_ref().and_then(|s| s.volume_name.as_deref()),
        Some(volume.as_str())
    );
    assert_eq!(
        claim.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Bound")
    );
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &namespace);
    eventually(
        WAIT,
        "the upgrade to remove the S3 credentials Secret",
        || async {
            secrets
                .get_opt(&format!("{FULLNAME}-artifact-store"))
                .await
                .ok()?
                .is_none()
                .then_some(())
        },
    )
    .await;
    let upgraded = two_ready_replicas(&client, &namespace).await;
    for pod in &upgraded {
        assert!(
            !replicas.iter().any(|old| pod_name(old) == pod_name(pod)),
            "the upgrade rolled the Pods"
        );
        let mounts_claim = pod
            .spec
            .as_ref()
            .expect("spec")
            .volumes
            .iter()
            .flatten()
            .any(|v| {
                v.persistent_volume_claim
                    .as_ref()
                    .is_some_and(|c| c.claim_name == format!("{FULLNAME}-artifacts"))
            });
        assert!(mounts_claim, "{} mounts the store's claim", pod_name(pod));
    }
    assert_probed_and_answering(&upgraded);
    let leader = leader_among(&leases, &upgraded).await;
    phase(&format!("upgraded, {leader} leads"));
    let third = run_now_delivered(&client, &namespace, "helm-file", &local_dir).await;
    let third_file = third["fileName"].as_str().expect("file");
    let kept = std::fs::read(volume_dir.join(&namespace).join(SCHEDULE).join(third_file))
        .expect("the artifact is on the PersistentVolume");
    assert_eq!(third["sha256"].as_str(), Some(sha256_hex(&kept).as_str()));
    phase(&format!(
        "run-now delivered {third_file} with the file:// store"
    ));
    assert_no_refusals(&namespace, &upgraded);

    // helm uninstall leaves nothing of the release: no Deployment, Pod, Job, Role, Lease, claim.
    phase("helm uninstall --wait");
    helm_on_bed(&[
        "uninstall",
        RELEASE,
        "--namespace",
        &namespace,
        "--wait",
        "--timeout",
        "3m",
    ]);
    let give_up = tokio::time::Instant::now() + WAIT;
    loop {
        let left = leftovers(&client, &namespace).await;
        if left.is_empty() {
            break;
        }
        assert!(
            tokio::time::Instant::now() < give_up,
            "{WAIT:?} after helm uninstall, still there: {left:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let releases = helm_on_bed(&["list", "--namespace", &namespace, "-q"]);
    assert!(releases.trim().is_empty(), "{releases}");
    let volumes: Api<PersistentVolume> = Api::all(client.clone());
    eventually(
        WAIT,
        "the PersistentVolume to be Released by its claim",
        || async {
            let phase = volumes.get(&volume).await.ok()?.status?.phase?;
            (phase == "Released").then_some(())
        },
    )
    .await;
    phase("uninstalled, nothing left");
}
