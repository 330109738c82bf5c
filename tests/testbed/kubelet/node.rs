//! The Node this stand-in registers, kept Ready with a Lease in `kube-node-lease` (the heartbeat the
//! node lifecycle controller watches) and periodic status updates, so the controller never taints it
//! NotReady/unreachable and the taint-eviction controller never evicts its Pods.

use std::time::Duration;

use anyhow::{Context as _, Result};
use chrono::{SecondsFormat, Utc};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Node;
use kube::Client;
use kube::api::{Api, Patch, PatchParams};
use serde_json::json;
use tracing::warn;

const MANAGER: &str = "testbed-kubelet";
const LEASE_NAMESPACE: &str = "kube-node-lease";
const LEASE_DURATION_SECONDS: i64 = 40;

fn now_secs() -> String {
    Utc::now().to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// Creates or updates the Node (server-side apply) and reports it Ready; returns its uid.
pub async fn register(client: &Client, name: &str) -> Result<String> {
    let nodes: Api<Node> = Api::all(client.clone());
    let node = json!({
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "labels": {
                "kubernetes.io/hostname": name,
                "kubernetes.io/os": "linux",
                "kubernetes.io/arch": std::env::consts::ARCH,
                "scheduled-exports.test/kubelet-standin": "true",
            },
        },
        "spec": {},
    });
    let node = nodes
        .patch(
            name,
            &PatchParams::apply(MANAGER).force(),
            &Patch::Apply(&node),
        )
        .await
        .with_context(|| format!("registering node {name}"))?;
    let since = now_secs();
    update_status(client, name, &since).await?;
    renew_lease(
        client,
        name,
        node.metadata.uid.as_deref().unwrap_or_default(),
    )
    .await?;
    Ok(node.metadata.uid.unwrap_or_default())
}

async fn update_status(client: &Client, name: &str, since: &str) -> Result<()> {
    let nodes: Api<Node> = Api::all(client.clone());
    let now = now_secs();
    let condition = |type_: &str, status: &str, reason: &str, message: &str| {
        json!({
            "type": type_, "status": status, "reason": reason, "message": message,
            "lastHeartbeatTime": now, "lastTransitionTime": since,
        })
    };
    let resources =
        json!({"cpu": "8", "memory": "16Gi", "pods": "110", "ephemeral-storage": "100Gi"});
    let status = json!({
        "status": {
            "conditions": [
                condition("MemoryPressure", "False", "KubeletHasSufficientMemory", "testbed-kubelet has sufficient memory available"),
                condition("DiskPressure", "False", "KubeletHasNoDiskPressure", "testbed-kubelet has no disk pressure"),
                condition("PIDPressure", "False", "KubeletHasSufficientPID", "testbed-kubelet has sufficient PID available"),
                condition("Ready", "True", "KubeletReady", "testbed-kubelet is posting ready status"),
            ],
            "addresses": [
                {"type": "InternalIP", "address": "127.0.0.1"},
                {"type": "Hostname", "address": name},
            ],
            "capacity": resources,
            "allocatable": resources,
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 0}},
            "nodeInfo": {
                "machineID": "testbed", "systemUUID": "testbed", "bootID": "testbed",
                "kernelVersion": "", "osImage": "scheduled-exports test bed",
                "containerRuntimeVersion": "testbed-kubelet://local-processes",
                "kubeletVersion": "v1.33.0-testbed", "kubeProxyVersion": "",
                "operatingSystem": "linux", "architecture": std::env::consts::ARCH,
            },
        }
    });
    nodes
        .patch_status(name, &PatchParams::default(), &Patch::Strategic(&status))
        .await
        .with_context(|| format!("updating the status of node {name}"))?;
    Ok(())
}

async fn renew_lease(client: &Client, name: &str, node_uid: &str) -> Result<()> {
    let leases: Api<Lease> = Api::namespaced(client.clone(), LEASE_NAMESPACE);
    let mut metadata = json!({"name": name, "namespace": LEASE_NAMESPACE});
    if !node_uid.is_empty() {
        // Like the kubelet's: the Lease goes away with the Node.
        metadata["ownerReferences"] = json!([{
            "apiVersion": "v1", "kind": "Node", "name": name, "uid": node_uid,
        }]);
    }
    let lease = json!({
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": metadata,
        "spec": {
            "holderIdentity": name,
            "leaseDurationSeconds": LEASE_DURATION_SECONDS,
            "renewTime": Utc::now().to_rfc3339_opts(SecondsFormat::Micros, true),
        },
    });
    leases
        .patch(
            name,
            &PatchParams::apply(MANAGER).force(),
            &Patch::Apply(&lease),
        )
        .await
        .with_context(|| format!("renewing lease {LEASE_NAMESPACE}/{name}"))?;
    Ok(())
}

/// Renews the Lease every `every` and refreshes the Node status every third time; re-registers the
/// Node if someone deleted it.
pub async fn heartbeat(client: Client, name: String, mut node_uid: String, every: Duration) {
    let since = now_secs();
    let mut ticks: u64 = 0;
    loop {
        tokio::time::sleep(every).await;
        ticks += 1;
        if let Err(err) = renew_lease(&client, &name, &node_uid).await {
            warn!(error = %format!("{err:#}"), "lease renewal failed");
        }
        if ticks.is_multiple_of(3)
            && let Err(err) = update_status(&client, &name, &since).await
        {
            warn!(error = %format!("{err:#}"), "node status update failed; re-registering");
            match register(&client, &name).await {
                Ok(uid) => node_uid = uid,
                Err(err) => {
                    warn!(error = %format!("{err:#}"), "re-registering the node failed")
                }
            }
        }
    }
}
