//! The test bed's kubelet stand-in (DESIGN section 8, tests/testbed/kubelet/): Jobs created here run
//! through the real Job controller, and their Pods' containers run as local processes of this
//! project's binary with the Pod's arguments, environment and ServiceAccount identity.
//! Needs the test bed: tests/testbed/up.

mod common;

use std::time::Duration;

use common::{client, eventually, test_namespace};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret, ServiceAccount};
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use kube::{Client, ResourceExt};
use serde_json::{Value, json};

const DEADLINE: Duration = Duration::from_secs(90);

async fn create<K>(client: &Client, ns: &str, object: Value) -> K
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + std::fmt::Debug
        + serde::de::DeserializeOwned
        + serde::Serialize,
{
    let api: Api<K> = Api::namespaced(client.clone(), ns);
    let object: K = serde_json::from_value(object).expect("valid object");
    api.create(&PostParams::default(), &object)
        .await
        .expect("create")
}

async fn service_account(client: &Client, ns: &str, name: &str) {
    create::<ServiceAccount>(client, ns, json!({"metadata": {"name": name}})).await;
}

/// A Job with one container running `command`, no retries unless `backoff_limit` says so.
async fn job(client: &Client, ns: &str, name: &str, backoff_limit: i32, pod_spec: Value) -> Job {
    let mut spec = json!({
        "restartPolicy": "Never",
        "serviceAccountName": "runner",
        "terminationGracePeriodSeconds": 5,
    });
    for (k, v) in pod_spec.as_object().expect("pod spec object") {
        spec[k] = v.clone();
    }
    let annotations = spec
        .as_object_mut()
        .and_then(|s| s.remove("annotations"))
        .unwrap_or(json!({}));
    create::<Job>(
        client,
        ns,
        json!({
            "metadata": {"name": name},
            "spec": {
                "backoffLimit": backoff_limit,
                "template": {"metadata": {"annotations": annotations}, "spec": spec},
            },
        }),
    )
    .await
}

fn container(command: &[&str]) -> Value {
    json!([{"name": "main", "image": "scheduled-exports:dev", "command": command}])
}

async fn job_condition(client: &Client, ns: &str, name: &str, condition: &str) -> Job {
    let jobs: Api<Job> = Api::namespaced(client.clone(), ns);
    eventually(
        DEADLINE,
        &format!("Job {ns}/{name} to be {condition}"),
        || {
            let jobs = jobs.clone();
            async move {
                let job = jobs.get(name).await.ok()?;
                let done = job
                    .status
                    .as_ref()?
                    .conditions
                    .as_ref()?
                    .iter()
                    .any(|c| c.type_ == condition && c.status == "True");
                done.then_some(job)
            }
        },
    )
    .await
}

async fn job_pods(client: &Client, ns: &str, job: &str) -> Vec<Pod> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    pods.list(&ListParams::default().labels(&format!("batch.kubernetes.io/job-name={job}")))
        .await
        .expect("list pods")
        .items
}

/// The Job's single Pod once it reached a terminal phase.
async fn finished_pod(client: &Client, ns: &str, job: &str) -> Pod {
    eventually(
        DEADLINE,
        &format!("a finished Pod of Job {ns}/{job}"),
        || async move {
            job_pods(client, ns, job)
                .await
                .into_iter()
                .find(|p| matches!(phase(p), "Succeeded" | "Failed"))
        },
    )
    .await
}

fn phase(pod: &Pod) -> &str {
    pod.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("")
}

fn pod_message(pod: &Pod) -> String {
    pod.status
        .as_ref()
        .and_then(|s| s.message.clone())
        .unwrap_or_default()
}

fn pod_reason(pod: &Pod) -> String {
    pod.status
        .as_ref()
        .and_then(|s| s.reason.clone())
        .unwrap_or_default()
}

fn exit_code(pod: &Pod) -> Option<i32> {
    pod.status
        .as_ref()?
        .container_statuses
        .as_ref()?
        .first()?
        .state
        .as_ref()?
        .terminated
        .as_ref()
        .map(|t| t.exit_code)
}

fn pod_log(pod: &Pod) -> String {
    let path = common::repo_root().join(format!(
        "target/testbed/logs/pods/{}_{}.log",
        pod.namespace().unwrap_or_default(),
        pod.name_any()
    ));
    std::fs::read_to_string(&path).unwrap_or_else(|err| panic!("read {}: {err}", path.display()))
}

#[tokio::test]
async fn a_job_completes_through_the_job_controller_and_its_output_is_logged() {
    let client = client().await;
    let ns = test_namespace(&client, "kubelet-ok").await;
    service_account(&client, &ns, "runner").await;
    job(
        &client,
        &ns,
        "next",
        0,
        json!({"containers": container(&[
            "scheduled-exports", "next", "--time", "07:00", "--time-zone", "UTC",
            "--after", "2026-01-01T00:00:00Z",
        ])}),
    )
    .await;

    job_condition(&client, &ns, "next", "Complete").await;
    let pod = finished_pod(&client, &ns, "next").await;
    assert_eq!(phase(&pod), "Succeeded");
    assert_eq!(exit_code(&pod), Some(0));
    assert_eq!(
        pod.spec.as_ref().and_then(|s| s.node_name.as_deref()),
        Some("testbed-node")
    );
    let log = pod_log(&pod);
    assert!(log.contains("2026-01-01T07:00:00Z"), "pod log: {log}");
    common::delete_namespace(&client, &ns).await;
}

#[tokio::test]
async fn a_failing_job_is_retried_up_to_its_backoff_limit() {
    let client = client().await;
    let ns = test_namespace(&client, "kubelet-fail").await;
    service_account(&client, &ns, "runner").await;
    // 07:15 is not on the 30-minute step: bad input, exit status 2.
    job(
        &client,
        &ns,
        "bad",
        1,
        json!({"containers": container(&[
            "scheduled-exports", "next", "--time", "07:15", "--time-zone", "UTC",
        ])}),
    )
    .await;

    job_condition(&client, &ns, "bad", "Failed").await;
    let pods = eventually(DEADLINE, "two failed pods", || {
        let (client, ns) = (client.clone(), ns.clone());
        async move {
            let pods = job_pods(&client, &ns, "bad").await;
            (pods.len() == 2 && pods.iter().all(|p| phase(p) == "Failed")).then_some(pods)
        }
    })
    .await;
    for pod in &pods {
        assert_eq!(exit_code(pod), Some(2), "{:?}", pod.status);
        assert!(
            pod_message(pod).contains("exited with code 2"),
            "{}",
            pod_message(pod)
        );
    }
    common::delete_namespace(&client, &ns).await;
}

#[tokio::test]
async fn a_container_that_is_not_this_projects_binary_is_refused() {
    let client = client().await;
    let ns = test_namespace(&client, "kubelet-refuse").await;
    service_account(&client, &ns, "runner").await;
    job(
        &client,
        &ns,
        "shell",
        0,
        json!({"containers": container(&["/bin/sh", "-c", "echo hi"])}),
    )
    .await;

    job_condition(&client, &ns, "shell", "Failed").await;
    let pod = finished_pod(&client, &ns, "shell").await;
    assert_eq!(phase(&pod), "Failed");
    assert_eq!(pod_reason(&pod), "UnsupportedCommand");
    let message = pod_message(&pod);
    assert!(
        message.contains("/bin/sh") && message.contains("only this project's binary"),
        "{message}"
    );
    common::delete_namespace(&client, &ns).await;
}

#[tokio::test]
async fn env_from_secrets_config_maps_and_fields_reaches_the_process() {
    let client = client().await;
    let ns = test_namespace(&client, "kubelet-env").await;
    service_account(&client, &ns, "runner").await;
    create::<Secret>(
        &client,
        &ns,
        json!({
            "metadata": {"name": "zone"}, "stringData": {"zone": "America/New_York"},
        }),
    )
    .await;
    create::<ConfigMap>(&client, &ns, json!({
        "metadata": {"name": "settings"}, "data": {"AFTER": "2026-01-01T00:00:00Z", "COUNT": "2"},
    }))
    .await;
    job(&client, &ns, "env", 0, json!({
        "annotations": {"sx/time": "09:30"},
        "containers": [{
            "name": "main",
            "image": "scheduled-exports:dev",
            // Empty command: the image's entrypoint, this project's binary.
            "args": ["next", "--time", "$(TIME)", "--time-zone", "$(ZONE)", "--after", "$(SX_AFTER)",
                     "--count", "$(SX_COUNT)"],
            "envFrom": [{"configMapRef": {"name": "settings"}, "prefix": "SX_"}],
            "env": [
                {"name": "TIME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.annotations['sx/time']"}}},
                {"name": "ZONE", "valueFrom": {"secretKeyRef": {"name": "zone", "key": "zone"}}},
            ],
        }],
    }))
    .await;

    job_condition(&client, &ns, "env", "Complete").await;
    let log = pod_log(&finished_pod(&client, &ns, "env").await);
    assert!(
        log.contains("2026-01-01T14:30:00Z 2026-01-01T09:30:00-05:00"),
        "{log}"
    );
    assert!(log.contains("2026-01-02T14:30:00Z"), "{log}");
    common::delete_namespace(&client, &ns).await;
}

#[tokio::test]
async fn the_test_beds_environment_does_not_leak_into_pods() {
    let client = client().await;
    let ns = test_namespace(&client, "kubelet-leak").await;
    service_account(&client, &ns, "runner").await;
    // sample-data reads DATABASE_URL when --database-url is absent: it must not find the test bed's.
    job(
        &client,
        &ns,
        "leak",
        0,
        json!({"containers": container(&[
            "scheduled-exports", "sample-data", "--interactions", "0", "--proposals", "0",
        ])}),
    )
    .await;

    let pod = finished_pod(&client, &ns, "leak").await;
    assert_eq!(phase(&pod), "Failed");
    assert_eq!(exit_code(&pod), Some(2), "{}", pod_message(&pod));
    assert!(
        pod_message(&pod).contains("database-url"),
        "{}",
        pod_message(&pod)
    );
    common::delete_namespace(&client, &ns).await;
}

#[tokio::test]
async fn the_process_acts_with_the_pods_service_account() {
    let client = client().await;
    common::install_crd(&client).await;
    let ns = test_namespace(&client, "kubelet-identity").await;
    service_account(&client, &ns, "runner").await;
    let export = |name: &str| {
        json!({"containers": container(&[
            "scheduled-exports", "export", "--namespace", &ns, "--name", name,
            "--artifact-store", "file:///tmp/scheduled-exports-kubelet-test",
        ])})
    };

    // No RBAC for the ServiceAccount: the API refuses the read.
    job(&client, &ns, "forbidden", 0, export("missing")).await;
    let pod = finished_pod(&client, &ns, "forbidden").await;
    let message = pod_message(&pod).to_lowercase();
    assert_eq!(phase(&pod), "Failed");
    assert!(message.contains("forbidden"), "{message}");
    assert!(
        message.contains(&format!("system:serviceaccount:{ns}:runner")),
        "{message}"
    );

    create::<Role>(
        &client,
        &ns,
        json!({
            "metadata": {"name": "read-exports"},
            "rules": [{"apiGroups": ["exports.crm.dev"], "resources": ["scheduledexports"],
                       "verbs": ["get", "list", "watch"]}],
        }),
    )
    .await;
    create::<RoleBinding>(&client, &ns, json!({
        "metadata": {"name": "runner-reads-exports"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "read-exports"},
        "subjects": [{"kind": "ServiceAccount", "name": "runner", "namespace": ns}],
    }))
    .await;
    job(&client, &ns, "allowed", 0, export("missing")).await;
    let pod = finished_pod(&client, &ns, "allowed").await;
    let message = pod_message(&pod);
    assert_eq!(phase(&pod), "Failed");
    assert!(
        message.contains("not found") && !message.to_lowercase().contains("forbidden"),
        "{message}"
    );
    common::delete_namespace(&client, &ns).await;
}

#[tokio::test]
async fn a_pod_that_opts_out_of_a_token_gets_no_identity() {
    let client = client().await;
    common::install_crd(&client).await;
    let ns = test_namespace(&client, "kubelet-notoken").await;
    service_account(&client, &ns, "runner").await;
    // Neither the stand-in's admin kubeconfig (via HOME or KUBECONFIG) nor in-cluster settings may
    // stand in for the missing token.
    job(
        &client,
        &ns,
        "notoken",
        0,
        json!({
            "automountServiceAccountToken": false,
            "containers": container(&[
                "scheduled-exports", "export", "--namespace", &ns, "--name", "missing",
                "--artifact-store", "file:///tmp/scheduled-exports-kubelet-test",
            ]),
        }),
    )
    .await;
    let pod = finished_pod(&client, &ns, "notoken").await;
    assert_eq!(phase(&pod), "Failed");
    assert!(
        pod_message(&pod).contains("cannot reach the Kubernetes API"),
        "{}",
        pod_message(&pod)
    );
    common::delete_namespace(&client, &ns).await;
}

/// A loopback port that accepts TCP connections (the kernel's backlog) but never answers, so
/// `sample-data` against it runs until its 30s connect timeout.
fn silent_listener() -> (std::net::TcpListener, u16) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    (listener, port)
}

fn hanging_container(port: u16) -> Value {
    let url = format!("postgres://nobody:nothing@127.0.0.1:{port}/nothing");
    container(&["scheduled-exports", "sample-data", "--database-url", &url])
}

/// The pid of the Job's running Pod's process (containerID testbed://PID).
async fn running_pid(client: &Client, ns: &str, job: &str) -> (Pod, u32) {
    eventually(DEADLINE, "a running pod with a pid", || async move {
        job_pods(client, ns, job).await.into_iter().find_map(|pod| {
            let status = pod.status.as_ref()?;
            if status.phase.as_deref() != Some("Running") {
                return None;
            }
            let id = status
                .container_statuses
                .as_ref()?
                .first()?
                .container_id
                .clone()?;
            let pid = id.strip_prefix("testbed://")?.parse().ok()?;
            Some((pod, pid))
        })
    })
    .await
}

fn process_runs_sample_data(pid: u32) -> bool {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .is_ok_and(|cmdline| String::from_utf8_lossy(&cmdline).contains("sample-data"))
}

#[tokio::test]
async fn deleting_a_job_kills_its_running_process() {
    let client = client().await;
    let ns = test_namespace(&client, "kubelet-delete").await;
    service_account(&client, &ns, "runner").await;
    let (_listener, port) = silent_listener();
    job(
        &client,
        &ns,
        "hang",
        0,
        json!({"containers": hanging_container(port)}),
    )
    .await;

    let (pod, pid) = running_pid(&client, &ns, "hang").await;
    assert!(
        process_runs_sample_data(pid),
        "pid {pid} is the pod's process"
    );
    let jobs: Api<Job> = Api::namespaced(client.clone(), &ns);
    jobs.delete("hang", &DeleteParams::background())
        .await
        .expect("delete job");

    eventually(
        Duration::from_secs(20),
        "the pod's process to be killed",
        || async move { (!process_runs_sample_data(pid)).then_some(()) },
    )
    .await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    let name = pod.name_any();
    eventually(DEADLINE, "the pod to be gone", || {
        let (pods, name) = (pods.clone(), name.clone());
        async move { pods.get_opt(&name).await.ok()?.is_none().then_some(()) }
    })
    .await;
    common::delete_namespace(&client, &ns).await;
}

#[tokio::test]
async fn a_pods_active_deadline_kills_its_process() {
    let client = client().await;
    let ns = test_namespace(&client, "kubelet-deadline").await;
    service_account(&client, &ns, "runner").await;
    let (_listener, port) = silent_listener();
    job(
        &client,
        &ns,
        "slow",
        0,
        json!({
            "activeDeadlineSeconds": 3,
            "containers": hanging_container(port),
        }),
    )
    .await;

    let (_, pid) = running_pid(&client, &ns, "slow").await;
    let pod = finished_pod(&client, &ns, "slow").await;
    assert_eq!(phase(&pod), "Failed");
    assert_eq!(pod_reason(&pod), "DeadlineExceeded");
    assert_ne!(exit_code(&pod), Some(0));
    assert!(!process_runs_sample_data(pid), "the process was killed");
    job_condition(&client, &ns, "slow", "Failed").await;
    common::delete_namespace(&client, &ns).await;
}
