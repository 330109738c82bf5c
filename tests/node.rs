//! The test bed's real node: the project's image runs in real containers under the restricted Pod
//! Security level, a Pod the level refuses never gets created, and a Pod reaches the API server
//! through the in-cluster `kubernetes` Service with its ServiceAccount token.

mod common;

use std::time::Duration;

use common::*;
use k8s_openapi::api::core::v1::{Pod, ServiceAccount};
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kube::api::{Api, LogParams, PostParams};
use serde_json::{Value, json};

/// The first Pod after `up` may wait for the node's first sandbox; later ones take ~3 s.
const POD_DEADLINE: Duration = Duration::from_secs(120);

/// A fresh namespace that enforces the restricted Pod Security Standard, with its `default`
/// ServiceAccount present (Pods are refused until the controller has created it).
async fn namespace_with_default_account(client: &kube::Client, prefix: &str) -> String {
    let name = restricted_namespace(client, prefix).await;
    let accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), &name);
    eventually(
        Duration::from_secs(30),
        "the default ServiceAccount",
        || {
            let accounts = accounts.clone();
            async move { accounts.get_opt("default").await.ok().flatten() }
        },
    )
    .await;
    name
}

/// A Pod that satisfies the restricted level, running the project's image with `args`.
fn restricted_pod(name: &str, args: &[&str]) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {
            "restartPolicy": "Never",
            "securityContext": {
                "runAsNonRoot": true,
                "runAsUser": 65532,
                "runAsGroup": 65532,
                "seccompProfile": {"type": "RuntimeDefault"}
            },
            "containers": [{
                "name": "main",
                "image": env_var("SCHEDULED_EXPORTS_IMAGE"),
                "imagePullPolicy": "Never",
                "args": args,
                "securityContext": {
                    "allowPrivilegeEscalation": false,
                    "readOnlyRootFilesystem": true,
                    "capabilities": {"drop": ["ALL"]}
                }
            }]
        }
    })
}

async fn create_pod(pods: &Api<Pod>, pod: &Value) -> Result<Pod, kube::Error> {
    let pod: Pod = serde_json::from_value(pod.clone()).expect("pod");
    pods.create(&PostParams::default(), &pod).await
}

/// Polls the Pod until it has finished; returns its phase (Succeeded or Failed).
async fn wait_until_finished(pods: &Api<Pod>, name: &str) -> String {
    eventually(POD_DEADLINE, &format!("Pod {name} to finish"), || {
        let pods = pods.clone();
        let name = name.to_string();
        async move {
            let pod = pods.get(&name).await.ok()?;
            let phase = pod.status?.phase?;
            matches!(phase.as_str(), "Succeeded" | "Failed").then_some(phase)
        }
    })
    .await
}

/// The container's log through the API server, which fetches it from the kubelet.
async fn pod_log(pods: &Api<Pod>, name: &str) -> String {
    pods.logs(name, &LogParams::default())
        .await
        .expect("read the Pod's log")
}

#[tokio::test]
async fn restricted_pod_runs_the_image_to_completion() {
    let client = client().await;
    let namespace = namespace_with_default_account(&client, "sx-node-run").await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), &namespace);

    let pod = restricted_pod(
        "next-run",
        &[
            "next",
            "--time",
            "07:00",
            "--time-zone",
            "UTC",
            "--after",
            "2026-01-01T00:00:00Z",
            "--count",
            "1",
        ],
    );
    create_pod(&pods, &pod)
        .await
        .expect("the restricted level admits the Pod");
    let phase = wait_until_finished(&pods, "next-run").await;
    let log = pod_log(&pods, "next-run").await;
    assert_eq!(phase, "Succeeded", "log: {log}");
    assert_eq!(log, "2026-01-01T07:00:00Z 2026-01-01T07:00:00+00:00\n");

    // It ran on the real node, as the image's non-root user.
    let pod = pods.get("next-run").await.expect("get the Pod");
    let spec = pod.spec.expect("spec");
    assert_eq!(
        spec.node_name.as_deref(),
        Some(env_var("TESTBED_NODE_NAME").as_str())
    );
    let status = pod.status.expect("status");
    let container = &status.container_statuses.expect("container statuses")[0];
    let terminated = container
        .state
        .as_ref()
        .and_then(|state| state.terminated.as_ref())
        .expect("terminated state");
    assert_eq!(terminated.exit_code, 0);
    assert!(
        container
            .container_id
            .as_deref()
            .is_some_and(|id| id.starts_with("containerd://")),
        "{:?}",
        container.container_id
    );

    delete_namespace(&client, &namespace).await;
}

#[tokio::test]
async fn pod_the_restricted_level_refuses_is_never_created() {
    let client = client().await;
    let namespace = namespace_with_default_account(&client, "sx-node-refuse").await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), &namespace);

    // The same Pod without its security contexts: root allowed, privilege escalation allowed,
    // capabilities kept, no seccomp profile.
    let mut pod = restricted_pod("too-privileged", &["--help"]);
    let spec = pod["spec"].as_object_mut().expect("spec");
    spec.remove("securityContext");
    spec["containers"][0]
        .as_object_mut()
        .expect("container")
        .remove("securityContext");

    let err = create_pod(&pods, &pod)
        .await
        .expect_err("the restricted level refuses the Pod");
    let message = err.to_string();
    assert!(
        message.contains("violates PodSecurity \"restricted:latest\""),
        "{message}"
    );
    for field in ["allowPrivilegeEscalation", "runAsNonRoot", "seccompProfile"] {
        assert!(message.contains(field), "{field} not named in: {message}");
    }
    assert!(pods.get_opt("too-privileged").await.expect("get").is_none());

    delete_namespace(&client, &namespace).await;
}

#[tokio::test]
async fn pod_reaches_the_api_server_through_the_kubernetes_service() {
    let client = client().await;
    install_crd(&client).await;
    let namespace = namespace_with_default_account(&client, "sx-node-api").await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), &namespace);

    // The Pod's ServiceAccount may read ScheduledExports, so the answer for a missing one is a
    // 404 from the API server, which it only gives to an authenticated, authorised request.
    let roles: Api<Role> = Api::namespaced(client.clone(), &namespace);
    let role: Role = serde_json::from_value(json!({
        "metadata": {"name": "read-scheduledexports"},
        "rules": [{"apiGroups": ["exports.crm.dev"], "resources": ["scheduledexports"], "verbs": ["get"]}]
    }))
    .expect("role");
    roles
        .create(&PostParams::default(), &role)
        .await
        .expect("create the Role");
    let bindings: Api<RoleBinding> = Api::namespaced(client.clone(), &namespace);
    let binding: RoleBinding = serde_json::from_value(json!({
        "metadata": {"name": "read-scheduledexports"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "read-scheduledexports"},
        "subjects": [{"kind": "ServiceAccount", "name": "default", "namespace": namespace}]
    }))
    .expect("role binding");
    bindings
        .create(&PostParams::default(), &binding)
        .await
        .expect("create the RoleBinding");

    // `export` builds its client from the in-cluster settings: KUBERNETES_SERVICE_HOST (the
    // Service's ClusterIP, translated by kube-proxy) and the projected token and CA.
    let pod = restricted_pod(
        "in-cluster",
        &[
            "export",
            "--namespace",
            &namespace,
            "--name",
            "absent",
            "--artifact-store",
            "file:///tmp/artifacts",
        ],
    );
    create_pod(&pods, &pod).await.expect("create the Pod");
    let phase = wait_until_finished(&pods, "in-cluster").await;
    let log = pod_log(&pods, "in-cluster").await;
    assert_eq!(phase, "Failed", "log: {log}");
    assert!(
        log.contains(&format!("ScheduledExport {namespace}/absent not found")),
        "{log}"
    );

    delete_namespace(&client, &namespace).await;
}
