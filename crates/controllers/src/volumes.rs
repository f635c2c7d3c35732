//! The `local-path` provisioner and binder: a PersistentVolume per claim, backed by a directory
//! under the data dir, bound both ways; a released volume is deleted (its directory removed) or
//! kept, as its reclaim policy says.

use std::path::PathBuf;
use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{
    HostPathVolumeSource, ObjectReference, PersistentVolume, PersistentVolumeClaim,
    PersistentVolumeSpec,
};
use k8s_openapi::api::storage::v1::StorageClass;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, ResourceExt};
use serde_json::json;

use crate::queue::Queue;

/// The provisioner name of the default `local-path` class.
pub const PROVISIONER: &str = "petset.dev/local-path";

#[derive(Debug, thiserror::Error)]
enum VolumeError {
    #[error("{0}")]
    Api(#[from] kube::Error),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Runs the provisioner until the task is aborted; volumes live under `root`.
pub async fn run(client: Client, root: PathBuf) {
    let (queue, mut keys) = Queue::<()>::new();
    let mut helpers = tokio::task::JoinSet::new();
    helpers.spawn(watch_changes(client.clone(), queue.clone()));
    while keys.recv().await.is_some() {
        queue.taken(&());
        if let Err(error) = reconcile(&client, &root).await {
            tracing::debug!(%error, "volume reconcile failed; retrying");
            queue.add_after((), std::time::Duration::from_millis(500));
        }
    }
}

async fn reconcile(client: &Client, root: &std::path::Path) -> Result<(), VolumeError> {
    let claims: Api<PersistentVolumeClaim> = Api::all(client.clone());
    let volumes: Api<PersistentVolume> = Api::all(client.clone());
    let classes: Api<StorageClass> = Api::all(client.clone());
    let class_list = classes.list(&ListParams::default()).await?.items;
    let claim_list = claims.list(&ListParams::default()).await?.items;
    let volume_list = volumes.list(&ListParams::default()).await?.items;

    // Claims are independent: bind up to 32 at a time.
    for chunk in claim_list.chunks(32) {
        let results = futures::future::join_all(
            chunk
                .iter()
                .map(|claim| bind(client, root, &class_list, &volume_list, claim)),
        )
        .await;
        if let Some(error) = results.into_iter().find_map(Result::err) {
            return Err(error);
        }
    }
    release(client, root, &claim_list, &volume_list).await
}

/// Provisions and binds one claim of a `local-path` class, if it needs it.
async fn bind(
    client: &Client,
    root: &std::path::Path,
    class_list: &[StorageClass],
    volume_list: &[PersistentVolume],
    claim: &PersistentVolumeClaim,
) -> Result<(), VolumeError> {
    let volumes: Api<PersistentVolume> = Api::all(client.clone());
    {
        if claim.metadata.deletion_timestamp.is_some() {
            return Ok(());
        }
        let spec = claim.spec.clone().unwrap_or_default();
        let phase = claim
            .status
            .as_ref()
            .and_then(|s| s.phase.clone())
            .unwrap_or_default();
        let class_name = spec.storage_class_name.clone().unwrap_or_default();
        let Some(class) = class_list.iter().find(|c| c.name_any() == class_name) else {
            return Ok(());
        };
        if class.provisioner != PROVISIONER || phase == "Bound" {
            return Ok(());
        }
        let namespace = claim.namespace().unwrap_or_default();
        let claim_uid = claim.uid().unwrap_or_default();
        let volume_name = format!("pvc-{claim_uid}");
        let directory = root.join(&volume_name);
        std::fs::create_dir_all(&directory).map_err(|source| VolumeError::Io {
            path: directory.clone(),
            source,
        })?;
        let capacity = spec
            .resources
            .as_ref()
            .and_then(|r| r.requests.as_ref())
            .and_then(|r| r.get("storage").cloned());
        if !volume_list.iter().any(|v| v.name_any() == volume_name) {
            let volume = PersistentVolume {
                metadata: ObjectMeta {
                    name: Some(volume_name.clone()),
                    annotations: Some(
                        [(
                            "pv.kubernetes.io/provisioned-by".to_string(),
                            PROVISIONER.to_string(),
                        )]
                        .into(),
                    ),
                    ..ObjectMeta::default()
                },
                spec: Some(PersistentVolumeSpec {
                    capacity: capacity
                        .clone()
                        .map(|c| [("storage".to_string(), c)].into()),
                    access_modes: spec.access_modes.clone(),
                    persistent_volume_reclaim_policy: Some(
                        class
                            .reclaim_policy
                            .clone()
                            .unwrap_or_else(|| "Delete".into()),
                    ),
                    storage_class_name: Some(class_name.clone()),
                    volume_mode: spec.volume_mode.clone(),
                    host_path: Some(HostPathVolumeSource {
                        path: directory.display().to_string(),
                        type_: Some("DirectoryOrCreate".into()),
                    }),
                    claim_ref: Some(ObjectReference {
                        api_version: Some("v1".into()),
                        kind: Some("PersistentVolumeClaim".into()),
                        namespace: Some(namespace.clone()),
                        name: Some(claim.name_any()),
                        uid: Some(claim_uid.clone()),
                        ..ObjectReference::default()
                    }),
                    ..PersistentVolumeSpec::default()
                }),
                status: None,
            };
            match volumes.create(&PostParams::default(), &volume).await {
                Ok(_) => {}
                Err(kube::Error::Api(status)) if status.code == 409 => {}
                Err(error) => return Err(error.into()),
            }
        }
        volumes
            .patch_status(
                &volume_name,
                &PatchParams::default(),
                &Patch::Merge(json!({"status": {"phase": "Bound"}})),
            )
            .await?;
        let namespaced: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), &namespace);
        namespaced
            .patch(
                &claim.name_any(),
                &PatchParams::default(),
                &Patch::Merge(json!({
                    "metadata": {"annotations": {
                        "pv.kubernetes.io/bind-completed": "yes",
                        "pv.kubernetes.io/bound-by-controller": "yes",
                        "volume.beta.kubernetes.io/storage-provisioner": PROVISIONER,
                        "volume.kubernetes.io/storage-provisioner": PROVISIONER,
                    }},
                    "spec": {"volumeName": volume_name},
                })),
            )
            .await?;
        namespaced
            .patch_status(
                &claim.name_any(),
                &PatchParams::default(),
                &Patch::Merge(json!({"status": {
                    "phase": "Bound",
                    "accessModes": spec.access_modes,
                    "capacity": capacity.map(|c| json!({"storage": c})),
                }})),
            )
            .await?;
    }
    Ok(())
}

/// Volumes whose claim is gone are released: deleted with their directory, or kept.
async fn release(
    client: &Client,
    root: &std::path::Path,
    claim_list: &[PersistentVolumeClaim],
    volume_list: &[PersistentVolume],
) -> Result<(), VolumeError> {
    let volumes: Api<PersistentVolume> = Api::all(client.clone());
    for volume in volume_list {
        let Some(claim_ref) = volume.spec.as_ref().and_then(|s| s.claim_ref.as_ref()) else {
            continue;
        };
        let claim_alive = claim_list.iter().any(|c| c.uid() == claim_ref.uid);
        if claim_alive || volume.metadata.deletion_timestamp.is_some() {
            continue;
        }
        let policy = volume
            .spec
            .as_ref()
            .and_then(|s| s.persistent_volume_reclaim_policy.clone())
            .unwrap_or_default();
        if policy == "Delete" {
            if let Some(path) = volume
                .spec
                .as_ref()
                .and_then(|s| s.host_path.as_ref())
                .map(|h| PathBuf::from(&h.path))
                .filter(|p| p.starts_with(root))
                && let Err(source) = std::fs::remove_dir_all(&path)
                && source.kind() != std::io::ErrorKind::NotFound
            {
                return Err(VolumeError::Io { path, source });
            }
            match volumes
                .delete(&volume.name_any(), &DeleteParams::default())
                .await
            {
                Ok(_) => {}
                Err(kube::Error::Api(status)) if status.code == 404 => {}
                Err(error) => return Err(error.into()),
            }
        } else if volume.status.as_ref().and_then(|s| s.phase.as_deref()) != Some("Released") {
            volumes
                .patch_status(
                    &volume.name_any(),
                    &PatchParams::default(),
                    &Patch::Merge(json!({"status": {"phase": "Released"}})),
                )
                .await?;
        }
    }
    Ok(())
}

/// Queues a reconcile on every change to claims or volumes.
async fn watch_changes(client: Client, queue: Arc<Queue<()>>) {
    let claims = watcher(
        Api::<PersistentVolumeClaim>::all(client.clone()),
        watcher::Config::default(),
    );
    let volumes = watcher(
        Api::<PersistentVolume>::all(client),
        watcher::Config::default(),
    );
    let mut claims = claims.default_backoff().boxed();
    let mut volumes = volumes.default_backoff().boxed();
    loop {
        tokio::select! {
            Some(_) = claims.next() => queue.add(()),
            Some(_) = volumes.next() => queue.add(()),
            else => return,
        }
    }
}
