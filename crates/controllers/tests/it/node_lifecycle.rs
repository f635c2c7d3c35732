//! Node lifecycle with a two-second grace period: a node whose Lease stops is Unknown with
//! upstream's reason and message and tainted unreachable, its pods are not Ready (so Endpoints
//! list them as not ready), pods are evicted for `NoExecute` taints as their tolerations say,
//! and a node that comes back is untainted.

use std::time::Duration;

use k8s_openapi::api::core::v1::{Endpoints, Node, Pod, Service};
use kube::Client;
use kube::api::{Api, Patch, PatchParams};
use petset_controllers::nodelifecycle::{self, NodeLifecycleConfig};
use serde_json::{Value, json};

use crate::support::{
    Running, cluster, create, eventually, heartbeat, set_pod_status, wait_for_event,
};

const NOT_READY: &str = "node.kubernetes.io/not-ready";
const UNREACHABLE: &str = "node.kubernetes.io/unreachable";

fn quick() -> NodeLifecycleConfig {
    NodeLifecycleConfig {
        grace_period: Duration::from_secs(2),
        monitor_period: Duration::from_millis(100),
        startup_grace_period: Duration::from_secs(1),
        ..NodeLifecycleConfig::default()
    }
}

/// The node's four conditions as its agent posts them, Ready as `ready` says.
fn conditions(ready: &str, now: &str) -> Value {
    let condition = |type_: &str, status: &str, reason: &str| {
        json!({"type": type_, "status": status, "reason": reason, "message": "",
               "lastHeartbeatTime": now, "lastTransitionTime": now})
    };
    json!([
        condition("MemoryPressure", "False", "KubeletHasSufficientMemory"),
        condition("DiskPressure", "False", "KubeletHasNoDiskPressure"),
        condition("PIDPressure", "False", "KubeletHasSufficientPID"),
        condition("Ready", ready, "KubeletReady"),
    ])
}

/// Posts the node's status as its agent does; answers the heartbeat time written.
async fn post_status(client: &Client, name: &str, ready: &str) -> String {
    let nodes: Api<Node> = Api::all(client.clone());
    let now = petset_api::time::now();
    nodes
        .patch_status(
            name,
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"conditions": conditions(ready, &now),
                "allocatable": {"cpu": "4", "memory": "8Gi", "pods": "110"}}})),
        )
        .await
        .expect("node status");
    now
}

/// A registered, Ready node whose Lease is renewed while the answer is kept.
async fn live_node(client: &Client, name: &str) -> (Running, String) {
    let nodes: Api<Node> = Api::all(client.clone());
    create(
        &nodes,
        json!({"metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}}}),
    )
    .await;
    let posted = post_status(client, name, "True").await;
    (heartbeat(client, name), posted)
}

async fn create_pod_on(client: &Client, name: &str, node: &str, tolerations: Value) {
    let pods: Api<Pod> = Api::default_namespaced(client.clone());
    create(
        &pods,
        json!({"metadata": {"name": name, "labels": {"app": "web"}},
               "spec": {"nodeName": node, "tolerations": tolerations,
                        "containers": [{"name": "c", "image": "busybox"}]}}),
    )
    .await;
}

async fn node(client: &Client, name: &str) -> Result<Node, String> {
    let nodes: Api<Node> = Api::all(client.clone());
    nodes.get(name).await.map_err(|e| e.to_string())
}

/// The node's taints as `key:effect`, each with whether it has a timeAdded.
fn taints(node: &Node) -> Vec<(String, bool)> {
    node.spec
        .as_ref()
        .and_then(|s| s.taints.clone())
        .unwrap_or_default()
        .into_iter()
        .map(|t| (format!("{}:{}", t.key, t.effect), t.time_added.is_some()))
        .collect()
}

fn pod_condition(pod: &Pod, type_: &str) -> Option<(String, Option<String>)> {
    pod.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == type_)
        .map(|c| (c.status.clone(), c.reason.clone()))
}

/// Waits until the pod is being deleted; answers it.
async fn wait_evicted(client: &Client, name: &str) -> Pod {
    let pods: Api<Pod> = Api::default_namespaced(client.clone());
    eventually(&format!("{name} is evicted"), || async {
        let pod = pods.get(name).await.map_err(|e| e.to_string())?;
        if pod.metadata.deletion_timestamp.is_some() {
            Ok(pod)
        } else {
            Err("not being deleted".to_string())
        }
    })
    .await
}

#[tokio::test]
async fn a_node_whose_lease_stops_is_unknown_and_tainted_and_its_pods_are_not_ready_then_evicted() {
    let (_cluster, client) = cluster().await;
    // A second node stays alive: with every node down, upstream adds no NoExecute taint.
    let (_alive, _) = live_node(&client, "node-a").await;
    let (dying, posted) = live_node(&client, "node-b").await;
    let _controllers = Running::default()
        .with(nodelifecycle::run(client.clone(), quick()))
        .with(petset_controllers::endpoints::run(client.clone()));
    let services: Api<Service> = Api::default_namespaced(client.clone());
    create(
        &services,
        json!({"metadata": {"name": "web"},
               "spec": {"selector": {"app": "web"}, "ports": [{"port": 80}]}}),
    )
    .await;
    // web-0 has the default tolerations (300 s); quick tolerates unreachable for 1 s.
    create_pod_on(&client, "web-0", "node-b", json!([])).await;
    create_pod_on(
        &client,
        "quick",
        "node-b",
        json!([{"key": UNREACHABLE, "operator": "Exists", "effect": "NoExecute",
                "tolerationSeconds": 1}]),
    )
    .await;
    set_pod_status(&client, "web-0", "10.42.1.5", true).await;
    let endpoints: Api<Endpoints> = Api::default_namespaced(client.clone());
    let addresses = |ready: bool| {
        let endpoints = endpoints.clone();
        async move {
            let current = endpoints.get("web").await.map_err(|e| e.to_string())?;
            let subsets = current.subsets.unwrap_or_default();
            let ips: Vec<String> = subsets
                .iter()
                .flat_map(|s| {
                    if ready {
                        s.addresses.clone()
                    } else {
                        s.not_ready_addresses.clone()
                    }
                    .unwrap_or_default()
                })
                .map(|a| a.ip)
                .collect();
            if ips == ["10.42.1.5"] {
                Ok(())
            } else {
                Err(format!("{subsets:?}"))
            }
        }
    };
    eventually("web-0 is a ready endpoint", || addresses(true)).await;

    // node-b's lease stops.
    drop(dying);
    let unknown = eventually("node-b is Unknown and tainted", || async {
        let node = node(&client, "node-b").await?;
        let expected = vec![
            (format!("{UNREACHABLE}:NoSchedule"), true),
            (format!("{UNREACHABLE}:NoExecute"), true),
        ];
        if taints(&node) == expected {
            Ok(node)
        } else {
            Err(format!("{:?}", node.spec))
        }
    })
    .await;
    let conditions = unknown
        .status
        .and_then(|s| s.conditions)
        .unwrap_or_default();
    assert_eq!(conditions.len(), 4);
    for condition in &conditions {
        assert_eq!(condition.status, "Unknown", "{condition:?}");
        assert_eq!(condition.reason.as_deref(), Some("NodeStatusUnknown"));
        assert_eq!(
            condition.message.as_deref(),
            Some("Kubelet stopped posting node status.")
        );
        let heartbeat = condition.last_heartbeat_time.as_ref().map(|t| t.0);
        assert_eq!(heartbeat, petset_api::time::parse(&posted), "kept");
    }
    wait_for_event(
        &client,
        "node-b",
        "NodeNotReady",
        "Node node-b status is now: NodeNotReady",
    )
    .await;

    // Its pods are not Ready, and Endpoints list web-0 as not ready.
    let pods: Api<Pod> = Api::default_namespaced(client.clone());
    eventually("web-0 is not Ready", || async {
        let pod = pods.get("web-0").await.map_err(|e| e.to_string())?;
        match pod_condition(&pod, "Ready") {
            Some((status, _)) if status == "False" => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    wait_for_event(&client, "web-0", "NodeNotReady", "Node is not ready").await;
    eventually("web-0 is a not-ready endpoint", || addresses(false)).await;

    // quick goes after its second; web-0 (300 s) stays.
    let evicted = wait_evicted(&client, "quick").await;
    assert_eq!(
        pod_condition(&evicted, "DisruptionTarget"),
        Some((
            "True".to_string(),
            Some("DeletionByTaintManager".to_string())
        ))
    );
    wait_for_event(
        &client,
        "quick",
        "TaintManagerEviction",
        "Marking for deletion Pod default/quick",
    )
    .await;
    let web = pods.get("web-0").await.expect("web-0");
    assert!(
        web.metadata.deletion_timestamp.is_none(),
        "web-0 tolerates 300 s"
    );

    // node-b comes back: its Lease is renewed and its agent posts Ready; the taints go.
    let _back = heartbeat(&client, "node-b");
    post_status(&client, "node-b", "True").await;
    eventually("node-b is untainted", || async {
        let node = node(&client, "node-b").await?;
        if taints(&node).is_empty() {
            Ok(())
        } else {
            Err(format!("{:?}", node.spec))
        }
    })
    .await;
    let web = pods.get("web-0").await.expect("web-0");
    assert!(web.metadata.deletion_timestamp.is_none(), "web-0 stays");
}

#[tokio::test]
async fn a_node_that_says_it_is_not_ready_is_tainted_not_ready_and_evicts_what_does_not_tolerate_a_no_execute_taint()
 {
    let (_cluster, client) = cluster().await;
    let (_alive, _) = live_node(&client, "node-a").await;
    let (_sick, _) = live_node(&client, "node-b").await;
    let _controllers = Running::default().with(nodelifecycle::run(client.clone(), quick()));
    create_pod_on(&client, "plain", "node-a", json!([])).await;
    create_pod_on(
        &client,
        "tolerant",
        "node-a",
        json!([{"key": "dedicated", "operator": "Equal", "value": "db", "effect": "NoExecute"}]),
    )
    .await;

    // The agent of node-b says it is not ready; its Lease goes on.
    post_status(&client, "node-b", "False").await;
    eventually("node-b is tainted not-ready", || async {
        let node = node(&client, "node-b").await?;
        let expected = vec![
            (format!("{NOT_READY}:NoSchedule"), true),
            (format!("{NOT_READY}:NoExecute"), true),
        ];
        if taints(&node) == expected {
            Ok(())
        } else {
            Err(format!("{:?}", node.spec))
        }
    })
    .await;
    let sick = node(&client, "node-b").await.expect("node-b");
    let ready = sick
        .status
        .and_then(|s| s.conditions)
        .unwrap_or_default()
        .into_iter()
        .find(|c| c.type_ == "Ready")
        .expect("Ready");
    assert_eq!(
        (ready.status.as_str(), ready.reason.as_deref()),
        ("False", Some("KubeletReady")),
        "the agent's own word stays"
    );

    // A NoExecute taint on node-a: the pod that does not tolerate it goes at once.
    let nodes: Api<Node> = Api::all(client.clone());
    nodes
        .patch(
            "node-a",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"taints": [
                {"key": "dedicated", "value": "db", "effect": "NoExecute"}]}})),
        )
        .await
        .expect("taint node-a");
    wait_evicted(&client, "plain").await;
    let pods: Api<Pod> = Api::default_namespaced(client.clone());
    let tolerant = pods.get("tolerant").await.expect("tolerant");
    assert!(
        tolerant.metadata.deletion_timestamp.is_none(),
        "tolerates it for good"
    );
    // node-a is Ready, so its own taint stays as the user set it.
    let node_a = node(&client, "node-a").await.expect("node-a");
    assert_eq!(
        taints(&node_a),
        vec![("dedicated:NoExecute".to_string(), false)]
    );
}
