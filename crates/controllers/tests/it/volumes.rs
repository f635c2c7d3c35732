//! The provisioner makes a volume per claim, pinned to a node, binds the two, and releases
//! the volume as its reclaim policy says once the claim is gone. It never touches a disk: a
//! volume of policy Delete waits behind the cleanup finalizer for its node, which these tests
//! play by hand.

use std::path::PathBuf;

use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim, Pod};
use k8s_openapi::api::storage::v1::StorageClass;
use kube::api::{Api, Patch, PatchParams};
use kube::{Client, ResourceExt};
use serde_json::{Value, json};

use crate::support::{
    Running, cluster, create, eventually, register_node, wait_for_event, wait_gone,
};

/// The finalizer the node removes once a deleted volume's directory is gone.
const CLEANUP: &str = "petset.dev/local-path-cleanup";

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

/// Creates the claim `www-web-0` of `class` and waits until it is bound.
async fn bind_claim(
    client: &Client,
    class: Option<&str>,
) -> (PersistentVolumeClaim, PersistentVolume) {
    create_claim(client, "www-web-0", class).await;
    bound(client, "www-web-0").await
}

/// Creates a claim of `class`, waits until it is bound, deletes it; the volume's name.
async fn bind_then_delete_claim(client: &Client, class: Option<&str>) -> String {
    let (_, volume) = bind_claim(client, class).await;
    let claims: Api<PersistentVolumeClaim> = Api::default_namespaced(client.clone());
    claims
        .delete("www-web-0", &Default::default())
        .await
        .expect("delete the claim");
    wait_gone(&claims, "www-web-0").await;
    volume.metadata.name.expect("name")
}

/// A class of petset's provisioner that binds at once (the default `local-path` waits for the
/// first consumer); its name.
async fn immediate_class(client: &Client) -> &'static str {
    create_class(client, IMMEDIATE, json!({"volumeBindingMode": "Immediate"})).await;
    IMMEDIATE
}

const IMMEDIATE: &str = "local-path-immediate";

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
    let (claim, volume) = bind_claim(&client, Some(immediate_class(&client).await)).await;
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
    assert!(
        volume.finalizers().iter().any(|f| f == CLEANUP),
        "{:?}",
        volume.finalizers()
    );
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
    create_claim(&client, "www-web-0", Some(immediate_class(&client).await)).await;
    wait_for_event(
        &client,
        "www-web-0",
        "ProvisioningFailed",
        "failed to provision volume with StorageClass \"local-path-immediate\": no Ready node to hold the volume",
    )
    .await;
    register_node(&client, "node-b", true).await;
    let (_, volume) = bound(&client, "www-web-0").await;
    assert_eq!(affinity(&volume), pinned_to("node-b"));
}

/// Waits until the volume `name` is so, as `check` tells from it; the volume.
async fn volume_when(
    client: &Client,
    name: &str,
    what: &str,
    check: impl Fn(&PersistentVolume) -> bool,
) -> PersistentVolume {
    let volumes: Api<PersistentVolume> = Api::all(client.clone());
    eventually(what, || async {
        let volume = volumes.get(name).await.map_err(|e| e.to_string())?;
        if check(&volume) {
            Ok(volume)
        } else {
            Err(format!(
                "{:?} {:?} {:?}",
                volume.status.as_ref().and_then(|s| s.phase.as_ref()),
                volume.metadata.deletion_timestamp,
                volume.finalizers()
            ))
        }
    })
    .await
}

fn phase(volume: &PersistentVolume) -> Option<&str> {
    volume.status.as_ref().and_then(|s| s.phase.as_deref())
}

#[tokio::test]
async fn deleting_a_claim_of_reclaim_policy_delete_deletes_its_volume_once_its_node_cleaned_up() {
    let (_cluster, client) = cluster().await;
    let _provisioner = start_provisioner(&client);
    register_node(&client, "node-a", true).await;
    let name = bind_then_delete_claim(&client, Some(immediate_class(&client).await)).await;
    // pv-protection lets the Released volume go; the cleanup finalizer waits for the node.
    let waiting = volume_when(
        &client,
        &name,
        "the volume waits for its node, Released and Terminating",
        |v| {
            phase(v) == Some("Released")
                && v.metadata.deletion_timestamp.is_some()
                && v.finalizers() == [CLEANUP]
        },
    )
    .await;
    // The node has removed the directory: it removes its finalizer, guarded as it does.
    let volumes: Api<PersistentVolume> = Api::all(client.clone());
    volumes
        .patch(
            &name,
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {
                "resourceVersion": waiting.resource_version(),
                "finalizers": [],
            }})),
        )
        .await
        .expect("the node lets the volume go");
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
    assert!(
        !released.finalizers().iter().any(|f| f == CLEANUP),
        "nothing is to clean up: {:?}",
        released.finalizers()
    );
}

#[tokio::test]
async fn a_volume_whose_policy_becomes_retain_loses_the_cleanup_finalizer_and_is_kept() {
    let (_cluster, client) = cluster().await;
    let _provisioner = start_provisioner(&client);
    register_node(&client, "node-a", true).await;
    let (_, volume) = bind_claim(&client, Some(immediate_class(&client).await)).await;
    let name = volume.name_any();
    let volumes: Api<PersistentVolume> = Api::all(client.clone());
    volumes
        .patch(
            &name,
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"persistentVolumeReclaimPolicy": "Retain"}})),
        )
        .await
        .expect("retain");
    volume_when(&client, &name, "the cleanup finalizer goes", |v| {
        !v.finalizers().iter().any(|f| f == CLEANUP)
    })
    .await;
    let claims: Api<PersistentVolumeClaim> = Api::default_namespaced(client.clone());
    claims
        .delete("www-web-0", &Default::default())
        .await
        .expect("delete the claim");
    let released = volume_when(&client, &name, "the volume is Released", |v| {
        phase(v) == Some("Released")
    })
    .await;
    assert!(released.metadata.deletion_timestamp.is_none(), "kept");
}

#[tokio::test]
async fn a_bound_delete_volume_made_without_the_cleanup_finalizer_gets_it() {
    let (_cluster, client) = cluster().await;
    let _provisioner = start_provisioner(&client);
    let volumes: Api<PersistentVolume> = Api::all(client.clone());
    create(
        &volumes,
        json!({"metadata": {"name": "pvc-older",
                            "annotations": {"pv.kubernetes.io/provisioned-by": "petset.dev/local-path"}},
               "spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"],
                        "persistentVolumeReclaimPolicy": "Delete",
                        "hostPath": {"path": volumes_root().join("pvc-older").display().to_string()}}}),
    )
    .await;
    volumes
        .patch_status(
            "pvc-older",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"phase": "Bound"}})),
        )
        .await
        .expect("bound");
    volume_when(
        &client,
        "pvc-older",
        "the cleanup finalizer is added",
        |v| v.finalizers().iter().any(|f| f == CLEANUP),
    )
    .await;
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
