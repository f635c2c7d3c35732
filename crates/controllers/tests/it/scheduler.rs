//! The scheduler binds a pod once its claims allow it, to a node its volumes allow.

use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim, Pod};
use kube::Client;
use kube::api::{Api, Patch, PatchParams};
use serde_json::json;

use crate::support::{
    Running, cluster, create, eventually, node_of, register_node, unschedulable_message,
    wait_for_event,
};

fn start_scheduler(client: &Client) -> Running {
    Running::default().with(petset_controllers::scheduler::run(client.clone()))
}

async fn create_pod_with_claim(client: &Client, claim: &str) {
    let pods: Api<Pod> = Api::default_namespaced(client.clone());
    create(
        &pods,
        json!({"metadata": {"name": "web-0"},
               "spec": {"containers": [{"name": "c", "image": "busybox"}],
                        "volumes": [{"name": "www", "persistentVolumeClaim": {"claimName": claim}}]}}),
    )
    .await;
}

/// Binds `claim` to a new volume pinned to `node`, as a provisioner would.
async fn bind_to_volume_on(client: &Client, claim: &str, volume: &str, node: &str) {
    let volumes: Api<PersistentVolume> = Api::all(client.clone());
    create(
        &volumes,
        json!({"metadata": {"name": volume},
               "spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"],
                        "hostPath": {"path": format!("/nowhere/{volume}")},
                        "claimRef": {"namespace": "default", "name": claim},
                        "nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": [
                            {"key": "kubernetes.io/hostname", "operator": "In", "values": [node]}]}]}}}}),
    )
    .await;
    let claims: Api<PersistentVolumeClaim> = Api::default_namespaced(client.clone());
    claims
        .patch(
            claim,
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"volumeName": volume}})),
        )
        .await
        .expect("claim's volume");
    claims
        .patch_status(
            claim,
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"phase": "Bound"}})),
        )
        .await
        .expect("claim bound");
}

/// A claim of a class that binds at once (the default `local-path` waits for the first
/// consumer), so the pod waits for it to be Bound.
async fn create_claim(client: &Client, name: &str) {
    let classes: Api<k8s_openapi::api::storage::v1::StorageClass> = Api::all(client.clone());
    if classes
        .get_opt("immediate")
        .await
        .expect("get the class")
        .is_none()
    {
        create(
            &classes,
            json!({"metadata": {"name": "immediate"}, "provisioner": "petset.dev/local-path",
                   "volumeBindingMode": "Immediate"}),
        )
        .await;
    }
    let claims: Api<PersistentVolumeClaim> = Api::default_namespaced(client.clone());
    create(
        &claims,
        json!({"metadata": {"name": name},
               "spec": {"storageClassName": "immediate", "accessModes": ["ReadWriteOnce"],
                        "resources": {"requests": {"storage": "1Gi"}}}}),
    )
    .await;
}

#[tokio::test]
async fn a_pod_waits_for_its_claim_then_binds_to_the_ready_node() {
    let (_cluster, client) = cluster().await;
    let _scheduler = start_scheduler(&client);
    register_node(&client, "node-b", false).await;
    register_node(&client, "node-a", true).await;
    create_claim(&client, "www").await;
    create_pod_with_claim(&client, "www").await;
    let message = eventually("the wait is reported on the pod", || {
        unschedulable_message(&client, "web-0")
    })
    .await;
    assert_eq!(
        message,
        "0/2 nodes are available: pod has unbound immediate PersistentVolumeClaims. preemption: 0/2 nodes are available: 2 Preemption is not helpful for scheduling."
    );
    wait_for_event(&client, "web-0", "FailedScheduling", &message).await;

    bind_to_volume_on(&client, "www", "pv-a", "node-a").await;
    let node = eventually("the pod is bound", || node_of(&client, "web-0")).await;
    assert_eq!(node, "node-a", "the Ready node, not the other");
    wait_for_event(
        &client,
        "web-0",
        "Scheduled",
        "Successfully assigned default/web-0 to node-a",
    )
    .await;
}

#[tokio::test]
async fn a_pod_whose_volume_is_pinned_elsewhere_is_not_placed_on_another_node() {
    let (_cluster, client) = cluster().await;
    let _scheduler = start_scheduler(&client);
    register_node(&client, "node-a", true).await;
    create_claim(&client, "www").await;
    bind_to_volume_on(&client, "www", "pv-b", "node-b").await;
    create_pod_with_claim(&client, "www").await;
    let message = eventually("the conflict is reported on the pod", || {
        unschedulable_message(&client, "web-0")
    })
    .await;
    assert_eq!(
        message,
        "0/1 nodes are available: 1 node(s) had volume node affinity conflict. preemption: 0/1 nodes are available: 1 Preemption is not helpful for scheduling."
    );
    // The volume's node joins: the pod goes there.
    register_node(&client, "node-b", true).await;
    let node = eventually("the pod is bound", || node_of(&client, "web-0")).await;
    assert_eq!(node, "node-b");
}
