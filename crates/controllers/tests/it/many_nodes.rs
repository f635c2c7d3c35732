//! The scheduler's loop over several nodes: pods spread by their anti-affinity, a pod no node
//! fits waits with upstream's message and is placed when room appears, and requests are held
//! against each node's allocatable.

use k8s_openapi::api::core::v1::{Node, Pod};
use kube::Client;
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use serde_json::{Value, json};

use crate::support::{
    Running, cluster, create, eventually, eventually_equal, node_of, register_node,
    unschedulable_message,
};

fn start_scheduler(client: &Client) -> Running {
    Running::default().with(petset_controllers::scheduler::run(client.clone()))
}

async fn create_pod(client: &Client, name: &str, spec: Value) {
    let pods: Api<Pod> = Api::default_namespaced(client.clone());
    create(
        &pods,
        json!({"metadata": {"name": name, "labels": {"app": "zk"}}, "spec": spec}),
    )
    .await;
}

/// A ZooKeeper-style member: one per host.
fn one_per_host() -> Value {
    json!({"containers": [{"name": "c", "image": "busybox"}],
           "terminationGracePeriodSeconds": 0,
           "affinity": {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
               {"labelSelector": {"matchLabels": {"app": "zk"}}, "topologyKey": "kubernetes.io/hostname"}]}}})
}

#[tokio::test]
async fn members_with_anti_affinity_take_one_node_each_and_the_extra_one_waits_for_room() {
    let (_cluster, client) = cluster().await;
    let _scheduler = start_scheduler(&client);
    for node in ["node-a", "node-b", "node-c"] {
        register_node(&client, node, true).await;
    }
    for member in ["zk-0", "zk-1", "zk-2", "zk-3"] {
        create_pod(&client, member, one_per_host()).await;
    }
    let message = eventually("the extra member's wait is reported", || async {
        // Whichever member lost the race waits; the other three hold a node each.
        for member in ["zk-0", "zk-1", "zk-2", "zk-3"] {
            if let Ok(message) = unschedulable_message(&client, member).await {
                return Ok((member, message));
            }
        }
        Err("no member reports a wait yet".to_string())
    })
    .await;
    let (waiting, message) = message;
    assert_eq!(
        message,
        "0/3 nodes are available: 3 node(s) didn't match pod anti-affinity rules. preemption: 0/3 nodes are available: 3 No preemption victims found for incoming pod."
    );
    let mut placed = Vec::new();
    for member in ["zk-0", "zk-1", "zk-2", "zk-3"]
        .into_iter()
        .filter(|m| *m != waiting)
    {
        placed.push((
            eventually("a member is bound", || node_of(&client, member)).await,
            member,
        ));
    }
    placed.sort();
    let nodes: Vec<&str> = placed.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(nodes, ["node-a", "node-b", "node-c"], "one member per node");

    // A member goes (at once: grace period 0): the waiting one takes its node.
    let (freed, gone) = placed[1].clone();
    let pods: Api<Pod> = Api::default_namespaced(client.clone());
    pods.delete(gone, &DeleteParams::default().grace_period(0))
        .await
        .expect("delete a member");
    eventually_equal("the waiting member takes the freed node", freed, || {
        node_of(&client, waiting)
    })
    .await;
}

#[tokio::test]
async fn requests_are_held_against_each_nodes_allocatable_and_taints_keep_pods_off() {
    let (_cluster, client) = cluster().await;
    let _scheduler = start_scheduler(&client);
    for node in ["node-a", "node-b", "node-c"] {
        register_node(&client, node, true).await;
    }
    let nodes: Api<Node> = Api::all(client.clone());
    // node-a is small, node-b is tainted: only node-c fits a 6 GiB pod that does not
    // tolerate the taint.
    nodes
        .patch_status(
            "node-a",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"allocatable": {"memory": "2Gi"}}})),
        )
        .await
        .expect("a smaller node-a");
    nodes
        .patch(
            "node-b",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"taints": [
                {"key": "dedicated", "value": "db", "effect": "NoSchedule"}]}})),
        )
        .await
        .expect("taint node-b");
    let big = json!({"containers": [{"name": "c", "image": "busybox",
                                     "resources": {"requests": {"memory": "6Gi"}}}]});
    create_pod(&client, "big-0", big.clone()).await;
    let node = eventually("the first big pod is bound", || node_of(&client, "big-0")).await;
    assert_eq!(node, "node-c");
    // node-c has 2 GiB left now: the next one fits nowhere.
    create_pod(&client, "big-1", big).await;
    let message = eventually("the second big pod's wait is reported", || {
        unschedulable_message(&client, "big-1")
    })
    .await;
    assert_eq!(
        message,
        "0/3 nodes are available: 1 node(s) had untolerated taint {dedicated: db}, 2 Insufficient memory. preemption: 0/3 nodes are available: 1 Preemption is not helpful for scheduling, 2 No preemption victims found for incoming pod."
    );
    // node-a grows: the pod goes there.
    nodes
        .patch_status(
            "node-a",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"allocatable": {"memory": "16Gi"}}})),
        )
        .await
        .expect("a larger node-a");
    eventually_equal(
        "the second big pod is bound to node-a",
        "node-a".to_string(),
        || node_of(&client, "big-1"),
    )
    .await;
}
