//! What every kind of node does the same way: register a Node with its status, and renew its
//! Lease as the kubelet does.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::api::core::v1::Node;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::Client;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::json;

/// How often the node's Lease is renewed (the kubelet's default).
const LEASE_RENEWAL: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Pods are bookkeeping only.
    Simulated,
    /// Pods are runc containers.
    Runc,
}

/// Now, as Kubernetes writes times (seconds).
pub fn now() -> String {
    jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

pub async fn register(client: &Client, node_name: &str, kind: Kind) -> Result<(), kube::Error> {
    let nodes: Api<Node> = Api::all(client.clone());
    let simulated = kind == Kind::Simulated;
    let (runtime, os_image, posting) = if simulated {
        (
            "simulated://petset",
            "petset simulated node",
            "simulated node is posting ready status",
        )
    } else {
        ("runc://petset", "petset", "kubelet is posting ready status")
    };
    let mut labels = json!({
        "kubernetes.io/hostname": node_name,
        "kubernetes.io/os": "linux",
        "kubernetes.io/arch": "amd64",
    });
    if simulated {
        labels["node.petset.dev/simulated"] = json!("true");
    }
    let node: Node = serde_json::from_value(json!({
        "metadata": {"name": node_name, "labels": labels},
        "spec": {"podCIDR": "10.244.0.0/16", "podCIDRs": ["10.244.0.0/16"]},
    }))
    .map_err(kube::Error::SerdeError)?;
    match nodes.create(&PostParams::default(), &node).await {
        Ok(_) => {}
        Err(kube::Error::Api(status)) if status.code == 409 => {}
        Err(error) => return Err(error),
    }
    let now = now();
    let status = json!({"status": {
        "conditions": [
            {"type": "MemoryPressure", "status": "False", "reason": "KubeletHasSufficientMemory",
             "message": "kubelet has sufficient memory available", "lastHeartbeatTime": now, "lastTransitionTime": now},
            {"type": "DiskPressure", "status": "False", "reason": "KubeletHasNoDiskPressure",
             "message": "kubelet has no disk pressure", "lastHeartbeatTime": now, "lastTransitionTime": now},
            {"type": "PIDPressure", "status": "False", "reason": "KubeletHasSufficientPID",
             "message": "kubelet has sufficient PID available", "lastHeartbeatTime": now, "lastTransitionTime": now},
            {"type": "Ready", "status": "True", "reason": "KubeletReady",
             "message": posting, "lastHeartbeatTime": now, "lastTransitionTime": now},
        ],
        "addresses": [{"type": "Hostname", "address": node_name}],
        "capacity": {"cpu": "32", "memory": "256Gi", "pods": "10000"},
        "allocatable": {"cpu": "32", "memory": "256Gi", "pods": "10000"},
        "nodeInfo": {
            "kubeletVersion": "v1.33.0",
            "kubeProxyVersion": "",
            "containerRuntimeVersion": runtime,
            "operatingSystem": "linux",
            "architecture": "amd64",
            "osImage": os_image,
            "kernelVersion": "",
            "machineID": "", "systemUUID": "", "bootID": "",
        },
    }});
    nodes
        .patch_status(node_name, &PatchParams::default(), &Patch::Merge(status))
        .await?;
    Ok(())
}

pub async fn keep_lease(client: Client, node_name: String) {
    let leases: Api<Lease> = Api::namespaced(client, "kube-node-lease");
    loop {
        let lease = Lease {
            metadata: ObjectMeta {
                name: Some(node_name.clone()),
                ..ObjectMeta::default()
            },
            spec: Some(LeaseSpec {
                holder_identity: Some(node_name.clone()),
                lease_duration_seconds: Some(40),
                renew_time: Some(MicroTime(jiff::Timestamp::now())),
                ..LeaseSpec::default()
            }),
        };
        let result = leases
            .patch(
                &node_name,
                &PatchParams::apply("petset-node").force(),
                &Patch::Apply(&lease),
            )
            .await;
        if let Err(error) = result {
            tracing::debug!(%error, "could not renew the node lease");
        }
        tokio::time::sleep(LEASE_RENEWAL).await;
    }
}
