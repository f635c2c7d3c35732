//! The simulated node (`petset up --node-runtime simulated`), like kwok: it registers a Node
//! and keeps its Lease, and runs the pods bound to it through the node's one pod worker
//! (`crate::pods`) over `crate::runtimes::simulated`, which runs nothing: pods are Running and
//! Ready (as its knobs say) with bookkeeping IPs from the pod CIDR (`--pod-cidr`) that nothing
//! ever dials, and their volumes are bookkeeping too. Pods whose `restartPolicy` is `Never` or
//! `OnFailure` (Jobs, Helm hooks) finish as kwok's default stages finish them: shortly after
//! Running their containers terminate with exit code 0 (reason Completed) and the pod Succeeds.

use std::sync::Arc;

use kube::Client;
use petset_runtime::network::Cidr;

use crate::downward::Allocatable;
use crate::fence::Fence;
use crate::kubelet_events::KubeletEvents;
use crate::pods::{Shared, Workers};
use crate::runtimes::simulated::SimulatedRuntime;

/// Runs the simulated node `node_name`, its pods' addresses from `pod_cidr`, until the task
/// is aborted (which ends its pod workers too: they hold nothing to clean up). Its fence is
/// off (`Fence::off`); `run_fenced` gives it one.
pub async fn run(client: Client, node_name: String, pod_cidr: Cidr) {
    run_fenced(client, node_name, pod_cidr, Fence::off()).await
}

/// As `run`, with `fence` (`crate::fence`): the node fences itself when it cannot renew its
/// Lease. No process runs, so the fence only ends the bookkeeping containers, holds back
/// their starts and marks the pods.
pub async fn run_fenced(client: Client, node_name: String, pod_cidr: Cidr, fence: Fence) {
    let facts = crate::node::NodeFacts::simulated(pod_cidr.to_string());
    if let Err(error) =
        crate::node::register(&client, &node_name, crate::node::Kind::Simulated, &facts).await
    {
        tracing::warn!(%error, node = %node_name, "could not register the simulated node");
    }
    let mut helpers = tokio::task::JoinSet::new();
    let runtime = Arc::new(SimulatedRuntime::new(&pod_cidr));
    helpers.spawn(crate::node::keep_fenced_lease(
        client.clone(),
        node_name.clone(),
        fence.clone(),
    ));
    helpers.spawn(fence.clone().watch(runtime.clone()));
    // The simulated node's volumes are bookkeeping too: it makes no directories.
    let disk = crate::local_path::Disk::bookkeeping();
    helpers.spawn(crate::local_path::run(
        client.clone(),
        node_name.clone(),
        disk,
    ));
    let shared = Arc::new(Shared {
        stdins: Default::default(),
        client: client.clone(),
        runtime,
        dns: None,
        events: KubeletEvents::new(client, &node_name),
        allocatable: Allocatable::default(),
        volumes_root: None,
        fence,
    });
    // Dropped with this task when it is aborted, which aborts every worker.
    let workers = Workers::default();
    crate::pods::run(shared, &node_name, &workers).await;
}

#[cfg(test)]
mod cluster_tests {
    //! The simulated node over the in-process API.

    use std::str::FromStr;

    use k8s_openapi::api::core::v1::Pod;
    use kube::api::{Api, DeleteParams, PostParams};
    use petset_apiserver::test_cluster::TestCluster;
    use petset_runtime::network::Cidr;
    use serde_json::json;

    use crate::testing::eventually;

    #[tokio::test]
    async fn bound_pods_run_ready_with_a_bookkeeping_address_and_graceful_deletes_complete() {
        let cluster = TestCluster::start().await;
        let cidr = Cidr::from_str("10.213.0.0/16").expect("cidr");
        let node = tokio::spawn(super::run(cluster.client(), "sim".into(), cidr));
        let pods: Api<Pod> = Api::namespaced(cluster.client(), "default");
        for (name, annotations) in [
            ("ready", json!({})),
            ("unready", json!({"simulation.petset.dev/ready": "false"})),
        ] {
            let pod = serde_json::from_value(json!({
                "metadata": {"name": name, "annotations": annotations},
                "spec": {"nodeName": "sim", "containers": [{"name": "app", "image": "nginx"}]},
            }))
            .expect("pod");
            pods.create(&PostParams::default(), &pod)
                .await
                .expect("create");
        }
        let status_of = async |name: &str| {
            let pod = pods.get(name).await.expect("get");
            serde_json::to_value(pod.status).expect("status")
        };
        let ready_condition = |status: &serde_json::Value| {
            status["conditions"]
                .as_array()
                .and_then(|c| c.iter().find(|c| c["type"] == "Ready"))
                .map(|c| c["status"].clone())
        };
        eventually("both pods Running", async || {
            status_of("ready").await["phase"] == "Running"
                && status_of("unready").await["phase"] == "Running"
        })
        .await;
        let ready = status_of("ready").await;
        assert_eq!(ready_condition(&ready), Some(json!("True")));
        assert_eq!(ready["containerStatuses"][0]["ready"], true);
        let address = ready["podIP"].as_str().unwrap_or_default().to_string();
        assert!(address.starts_with("10.213."), "{address:?}");
        let unready = status_of("unready").await;
        assert_eq!(ready_condition(&unready), Some(json!("False")));
        assert_ne!(unready["podIP"], ready["podIP"], "one address per pod");
        pods.delete("ready", &DeleteParams::default())
            .await
            .expect("delete");
        eventually("the graceful delete completes", async || {
            pods.get_opt("ready").await.expect("get").is_none()
        })
        .await;
        node.abort();
    }

    #[tokio::test]
    async fn pods_that_do_not_restart_run_to_completion() {
        let cluster = TestCluster::start().await;
        let cidr = Cidr::from_str("10.214.0.0/16").expect("cidr");
        let node = tokio::spawn(super::run(cluster.client(), "sim".into(), cidr));
        let pods: Api<Pod> = Api::namespaced(cluster.client(), "default");
        let pod = serde_json::from_value(json!({
            "metadata": {"name": "once"},
            "spec": {"nodeName": "sim", "restartPolicy": "Never",
                "containers": [{"name": "app", "image": "busybox"}]},
        }))
        .expect("pod");
        pods.create(&PostParams::default(), &pod)
            .await
            .expect("create");
        eventually("the pod Succeeds", async || {
            let pod = pods.get("once").await.expect("get");
            pod.status.and_then(|s| s.phase).as_deref() == Some("Succeeded")
        })
        .await;
        let status =
            serde_json::to_value(pods.get("once").await.expect("get").status).expect("status");
        let terminated = &status["containerStatuses"][0]["state"]["terminated"];
        assert_eq!(terminated["exitCode"], 0);
        assert_eq!(terminated["reason"], "Completed");
        node.abort();
    }
}
