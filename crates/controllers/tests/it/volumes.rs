//! The provisioner makes a volume per claim, pinned to a node, binds the two, and releases
//! the volume as its reclaim policy says once the claim is gone. It never touches a disk.

use std::path::PathBuf;

use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim, Pod};
use k8s_openapi::api::storage::v1::StorageClass;
use kube::Client;
use kube::api::Api;
use serde_json::{Value, json};

use crate::support::{
    Running, cluster, create, eventually, register_node, wait_for_event, wait_gone,
};

/// A root no test creates: the volumes are named under it and must never appear on this disk.
fn volumes_root() -> PathBuf {
    std::env::temp_dir().join(format!(
        "petset-it-volumes-never-made-{}",
        std::process::id()
    ))
}

/// The volume provisioner with storage protection, which lets deleted claims go.
fn start_provisioner(client: &Client) -> Running {
    Running::default()
        .with(petset_controllers::volumes::run(
            client.clone(),
            volumes_root(),
        ))
        .with(petset_controllers::protection::run(client.clone()))
}

async fn create_claim(client: &Client, name: &str, class: Option<&str>) {
    let claims: Api<PersistentVolumeClaim> = Api::default_namespaced(client.clone());
    create(
        &claims,
        json!({"metadata": {"name": name},
               "spec": {"storageClassName": class, "accessModes": ["ReadWriteOnce"],
                        "resources": {"requests": {"storage": "1Gi"}}}}),
    )
    .await;
}

/// The claim once it is Bound, and its volume.
async fn bound(client: &Client, claim: &str) -> (PersistentVolumeClaim, PersistentVolume) {
    let claims: Api<PersistentVolumeClaim> = Api::default_namespaced(client.clone());
    let volumes: Api<PersistentVolume> = Api::all(client.clone());
    eventually("the claim and its volume are bound", || async {
        let claim = claims.get(claim).await.map_err(|e| e.to_string())?;
        let phase = claim.status.as_ref().and_then(|s| s.phase.clone());
        let name = claim.spec.as_ref().and_then(|s| s.volume_name.clone());
        let (Some("Bound"), Some(name)) = (phase.as_deref(), name) else {
            return Err(format!("claim {phase:?}"));
        };
        let volume = volumes.get(&name).await.map_err(|e| e.to_string())?;
        let phase = volume.status.as_ref().and_then(|s| s.phase.clone());
        if phase.as_deref() == Some("Bound") {
            Ok((claim, volume))
        } else {
            Err(format!("volume {phase:?}"))
        }
    })
    .await
}

/// Creates a claim of `class`, waits until it is bound, deletes it; the volume's name.
async fn bind_then_delete_claim(client: &Client, class: Option<&str>) -> String {
    create_claim(client, "www-web-0", class).await;
    let (_, volume) = bound(client, "www-web-0").await;
    let claims: Api<PersistentVolumeClaim> = Api::default_namespaced(client.clone());
    claims
        .delete("www-web-0", &Default::default())
        .await
        .expect("delete the claim");
    wait_gone(&claims, "www-web-0").await;
    volume.metadata.name.expect("name")
}

/// A class of petset's provisioner with these fields.
async fn create_class(client: &Client, name: &str, fields: Value) {
    let mut class = json!({"metadata": {"name": name}, "provisioner": "petset.dev/local-path"});
    if let (Some(class), Value::Object(fields)) = (class.as_object_mut(), fields) {
        class.extend(fields);
    }
    let classes: Api<StorageClass> = Api::all(client.clone());
    create(&classes, class).await;
}

fn affinity(volume: &PersistentVolume) -> Value {
    serde_json::to_value(&volume.spec.as_ref().expect("spec").node_affinity).expect("json")
}

fn pinned_to(node: &str) -> Value {
    json!({"required": {"nodeSelectorTerms": [{"matchExpressions": [
        {"key": "kubernetes.io/hostname", "operator": "In", "values": [node]}]}]}})
}

#[tokio::test]
async fn a_claim_gets_a_volume_pinned_to_the_ready_node_and_both_are_bound() {
    let (_cluster, client) = cluster().await;
    let _provisioner = start_provisioner(&client);
    register_node(&client, "node-a", true).await;
    create_claim(&client, "www-web-0", None).await;
    let (claim, volume) = bound(&client, "www-web-0").await;
    let uid = claim.metadata.uid.clone().expect("uid");
    assert_eq!(
        volume.metadata.name.as_deref(),
        Some(format!("pvc-{uid}").as_str())
    );
    assert_eq!(affinity(&volume), pinned_to("node-a"));
    let spec = volume.spec.clone().expect("spec");
    let claim_ref = spec.claim_ref.expect("claimRef");
    assert_eq!(
        (claim_ref.name.as_deref(), claim_ref.uid.as_deref()),
        (Some("www-web-0"), Some(uid.as_str()))
    );
    let path = volumes_root().join(format!("pvc-{uid}"));
    assert_eq!(
        spec.host_path.map(|h| h.path),
        Some(path.display().to_string())
    );
    assert!(!volumes_root().exists(), "the server side made a directory");
    wait_for_event(
        &client,
        "www-web-0",
        "ProvisioningSucceeded",
        &format!("Successfully provisioned volume pvc-{uid}"),
    )
    .await;
}

#[tokio::test]
async fn a_claim_waits_for_a_ready_node() {
    let (_cluster, client) = cluster().await;
    let _provisioner = start_provisioner(&client);
    register_node(&client, "node-a", false).await;
    create_claim(&client, "www-web-0", None).await;
    wait_for_event(
        &client,
        "www-web-0",
        "ProvisioningFailed",
        "failed to provision volume with StorageClass \"local-path\": no Ready node to hold the volume",
    )
    .await;
    register_node(&client, "node-b", true).await;
    let (_, volume) = bound(&client, "www-web-0").await;
    assert_eq!(affinity(&volume), pinned_to("node-b"));
}

#[tokio::test]
async fn deleting_a_claim_of_reclaim_policy_delete_deletes_its_volume() {
    let (_cluster, client) = cluster().await;
    let _provisioner = start_provisioner(&client);
    register_node(&client, "node-a", true).await;
    let name = bind_then_delete_claim(&client, None).await;
    let volumes: Api<PersistentVolume> = Api::all(client.clone());
    wait_gone(&volumes, &name).await;
}

#[tokio::test]
async fn deleting_a_claim_of_reclaim_policy_retain_releases_its_volume_and_keeps_it() {
    let (_cluster, client) = cluster().await;
    let _provisioner = start_provisioner(&client);
    register_node(&client, "node-a", true).await;
    create_class(&client, "keep", json!({"reclaimPolicy": "Retain"})).await;
    let name = bind_then_delete_claim(&client, Some("keep")).await;
    let volumes: Api<PersistentVolume> = Api::all(client.clone());
    let released = eventually("the volume is Released", || async {
        let volume = volumes.get(&name).await.map_err(|e| e.to_string())?;
        let phase = volume.status.as_ref().and_then(|s| s.phase.clone());
        if phase.as_deref() == Some("Released") {
            Ok(volume)
        } else {
            Err(format!("{phase:?}"))
        }
    })
    .await;
    assert!(
        released.metadata.deletion_timestamp.is_none(),
        "a retained volume is not deleted"
    );
}

#[tokio::test]
async fn a_wait_for_first_consumer_claim_is_provisioned_on_the_node_its_pod_goes_to() {
    let (_cluster, client) = cluster().await;
    let _provisioner = start_provisioner(&client);
    let _scheduler = Running::default().with(petset_controllers::scheduler::run(client.clone()));
    register_node(&client, "node-b", true).await;
    register_node(&client, "node-a", true).await;
    create_class(
        &client,
        "late",
        json!({"volumeBindingMode": "WaitForFirstConsumer"}),
    )
    .await;
    create_claim(&client, "www-web-0", Some("late")).await;
    wait_for_event(
        &client,
        "www-web-0",
        "WaitForFirstConsumer",
        "waiting for first consumer to be created before binding",
    )
    .await;
    let pods: Api<Pod> = Api::default_namespaced(client.clone());
    create(
        &pods,
        json!({"metadata": {"name": "web-0"},
               "spec": {"containers": [{"name": "c", "image": "busybox"}],
                        "volumes": [{"name": "www", "persistentVolumeClaim": {"claimName": "www-web-0"}}]}}),
    )
    .await;
    let (claim, volume) = bound(&client, "www-web-0").await;
    assert_eq!(
        claim
            .metadata
            .annotations
            .unwrap_or_default()
            .get("volume.kubernetes.io/selected-node")
            .map(String::as_str),
        Some("node-a")
    );
    assert_eq!(affinity(&volume), pinned_to("node-a"));
    eventually("the pod follows its volume", || async {
        let pod = pods.get("web-0").await.map_err(|e| e.to_string())?;
        match pod.spec.and_then(|s| s.node_name) {
            Some(node) if node == "node-a" => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
}
