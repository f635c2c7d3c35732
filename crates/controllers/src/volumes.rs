//! The `local-path` provisioner and binder: a PersistentVolume per claim, backed by a directory
//! under the data dir, bound both ways; a released volume is deleted (its directory removed) or
//! kept, as its reclaim policy says.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use futures::StreamExt;
use k8s_openapi::api::core::v1::{
    HostPathVolumeSource, ObjectReference, PersistentVolume, PersistentVolumeClaim,
    PersistentVolumeSpec,
};
use k8s_openapi::api::storage::v1::StorageClass;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::{Client, Resource, ResourceExt};
use serde_json::json;

use crate::cache::{Cache, Change, version_of};
use crate::events::Recorder;
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

/// How many claims are provisioned and bound at once.
const BIND_CONCURRENCY: usize = 128;

/// The caches the provisioner reads, and the newest resourceVersion it wrote of each kind.
struct Views {
    classes: Cache<StorageClass>,
    claims: Cache<PersistentVolumeClaim>,
    volumes: Cache<PersistentVolume>,
    wrote_claims: AtomicU64,
    wrote_volumes: AtomicU64,
    events: Events,
}

impl Views {
    fn wrote<K: kube::Resource>(counter: &AtomicU64, object: &K) {
        counter.fetch_max(version_of(object), Ordering::SeqCst);
    }
}

/// The events `kubectl describe pvc` shows, from the two components upstream has: the volume
/// controller (why a claim waits) and the provisioner (what it made).
struct Events {
    controller: Recorder,
    provisioner: Recorder,
    /// Why each pending claim was last reported waiting (by uid), so a claim's wait is
    /// recorded once per reason rather than at every reconcile of every claim.
    waiting: Mutex<HashMap<String, String>>,
}

/// How many pending claims' reasons are remembered; past it the memory starts over, which
/// only repeats an event.
const MAX_REMEMBERED_WAITS: usize = 4096;

impl Events {
    fn new(client: &Client) -> Self {
        Self {
            controller: Recorder::new(client.clone(), "persistentvolume-controller"),
            provisioner: Recorder::new(client.clone(), PROVISIONER),
            waiting: Mutex::default(),
        }
    }

    /// Records why `claim` waits, once while the reason stays the same.
    fn waiting(&self, claim: &PersistentVolumeClaim, wait: Wait) {
        let uid = claim.uid().unwrap_or_default();
        {
            let mut waiting = self.waiting.lock().unwrap_or_else(|p| p.into_inner());
            if waiting.get(&uid).is_some_and(|r| *r == wait.reason()) {
                return;
            }
            if waiting.len() >= MAX_REMEMBERED_WAITS {
                waiting.clear();
            }
            waiting.insert(uid, wait.reason().to_string());
        }
        let (type_, reason, message) = wait.event();
        self.controller
            .record(claim.object_ref(&()), type_, reason, message);
    }

    fn provisioned(&self, claim: &PersistentVolumeClaim, volume: &str) {
        let namespace = claim.namespace().unwrap_or_default();
        self.provisioner.record(
            claim.object_ref(&()),
            "Normal",
            "Provisioning",
            format!(
                "External provisioner is provisioning volume for claim \"{namespace}/{}\"",
                claim.name_any()
            ),
        );
        self.provisioner.record(
            claim.object_ref(&()),
            "Normal",
            "ProvisioningSucceeded",
            format!("Successfully provisioned volume {volume}"),
        );
        self.waiting
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&claim.uid().unwrap_or_default());
    }
}

/// Why a claim stays Pending, as upstream's volume controller reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Wait {
    /// Its class does not exist.
    NoClass(String),
    /// No class and no volume to bind statically.
    NoClassSet,
    /// Its class names a provisioner that is not petset's.
    External(String),
}

impl Wait {
    fn reason(&self) -> &'static str {
        match self {
            Wait::NoClass(_) => "ProvisioningFailed",
            Wait::NoClassSet => "FailedBinding",
            Wait::External(_) => "ExternalProvisioning",
        }
    }

    fn event(&self) -> (&'static str, &'static str, String) {
        let message = match self {
            Wait::NoClass(class) => format!("storageclass.storage.k8s.io {class:?} not found"),
            Wait::NoClassSet => {
                "no persistent volumes available for this claim and no storage class is set".into()
            }
            Wait::External(provisioner) => format!(
                "Waiting for a volume to be created either by the external provisioner '{provisioner}' or manually by the system administrator. If volume creation is delayed, please verify that the provisioner is running and correctly registered."
            ),
        };
        let type_ = match self {
            Wait::External(_) => "Normal",
            _ => "Warning",
        };
        (type_, self.reason(), message)
    }

    /// Why a claim of `class_name` waits, given the classes there are; `None` when petset's
    /// provisioner serves it.
    fn of(class_name: &str, classes: &[Arc<StorageClass>]) -> Option<Self> {
        if class_name.is_empty() {
            return Some(Wait::NoClassSet);
        }
        match classes.iter().find(|c| c.name_any() == class_name) {
            None => Some(Wait::NoClass(class_name.to_string())),
            Some(class) if class.provisioner != PROVISIONER => {
                Some(Wait::External(class.provisioner.clone()))
            }
            Some(_) => None,
        }
    }
}

/// How long a reconcile waits for the caches to show the provisioner's own last writes.
const CATCH_UP: std::time::Duration = std::time::Duration::from_secs(2);

/// Runs the provisioner until the task is aborted; volumes live under `root`.
pub async fn run(client: Client, root: PathBuf) {
    let (queue, mut keys) = Queue::<()>::new();
    let mut helpers = tokio::task::JoinSet::new();
    let views = Views {
        classes: Cache::follow(
            &mut helpers,
            Api::all(client.clone()),
            watcher::Config::default(),
            reconcile_on_change(&queue),
        ),
        claims: Cache::follow(
            &mut helpers,
            Api::all(client.clone()),
            watcher::Config::default(),
            reconcile_on_change(&queue),
        ),
        volumes: Cache::follow(
            &mut helpers,
            Api::all(client.clone()),
            watcher::Config::default(),
            reconcile_on_change(&queue),
        ),
        wrote_claims: AtomicU64::new(0),
        wrote_volumes: AtomicU64::new(0),
        events: Events::new(&client),
    };
    views.classes.ready().await;
    views.claims.ready().await;
    views.volumes.ready().await;
    while keys.recv().await.is_some() {
        queue.taken(&());
        views
            .claims
            .caught_up(views.wrote_claims.load(Ordering::SeqCst), CATCH_UP)
            .await;
        views
            .volumes
            .caught_up(views.wrote_volumes.load(Ordering::SeqCst), CATCH_UP)
            .await;
        if let Err(error) = reconcile(&client, &root, &views).await {
            tracing::debug!(%error, "volume reconcile failed; retrying");
            queue.add_after((), std::time::Duration::from_millis(500));
        }
    }
}

/// Any change to classes, claims or volumes queues a reconcile.
fn reconcile_on_change<K>(queue: &Arc<Queue<()>>) -> impl Fn(Change<'_, K>) + Send + 'static {
    let queue = queue.clone();
    move |_| queue.add(())
}

async fn reconcile(
    client: &Client,
    root: &std::path::Path,
    views: &Views,
) -> Result<(), VolumeError> {
    let class_list = views.classes.store().state();
    let claim_list = views.claims.store().state();

    // Claims are independent: bind many at a time, each as soon as a slot frees up.
    let mut running = futures::stream::FuturesUnordered::new();
    let mut failed = None;
    for claim in &claim_list {
        if running.len() >= BIND_CONCURRENCY
            && let Some(Err(error)) = running.next().await
        {
            failed.get_or_insert(error);
        }
        running.push(bind(client, root, &class_list, views, claim));
    }
    while let Some(result) = running.next().await {
        if let Err(error) = result {
            failed.get_or_insert(error);
        }
    }
    if let Some(error) = failed {
        return Err(error);
    }
    release(client, root, views).await
}

/// Provisions and binds one claim of a `local-path` class, if it needs it.
async fn bind(
    client: &Client,
    root: &std::path::Path,
    class_list: &[Arc<StorageClass>],
    views: &Views,
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
        if phase == "Bound" {
            return Ok(());
        }
        if let Some(wait) = Wait::of(&class_name, class_list) {
            views.events.waiting(claim, wait);
            return Ok(());
        }
        let Some(class) = class_list.iter().find(|c| c.name_any() == class_name) else {
            return Ok(());
        };
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
        if views
            .volumes
            .store()
            .get(&ObjectRef::new(&volume_name))
            .is_none()
        {
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
                Ok(created) => {
                    Views::wrote(&views.wrote_volumes, &created);
                    views.events.provisioned(claim, &volume_name);
                }
                Err(kube::Error::Api(status)) if status.code == 409 => {}
                Err(error) => return Err(error.into()),
            }
        }
        let bound = volumes
            .patch_status(
                &volume_name,
                &PatchParams::default(),
                &Patch::Merge(json!({"status": {"phase": "Bound"}})),
            )
            .await?;
        Views::wrote(&views.wrote_volumes, &bound);
        let namespaced: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), &namespace);
        let claimed = namespaced
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
        Views::wrote(&views.wrote_claims, &claimed);
        let bound = namespaced
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
        Views::wrote(&views.wrote_claims, &bound);
    }
    Ok(())
}

/// Volumes whose claim is gone are released: deleted with their directory, or kept.
async fn release(
    client: &Client,
    root: &std::path::Path,
    views: &Views,
) -> Result<(), VolumeError> {
    let volumes: Api<PersistentVolume> = Api::all(client.clone());
    for volume in views.volumes.store().state() {
        let Some(claim_ref) = volume.spec.as_ref().and_then(|s| s.claim_ref.as_ref()) else {
            continue;
        };
        let claim_name = claim_ref.name.clone().unwrap_or_default();
        let claim_namespace = claim_ref.namespace.clone().unwrap_or_default();
        let cached = views
            .claims
            .store()
            .get(&ObjectRef::new(&claim_name).within(&claim_namespace));
        let phase = volume.status.as_ref().and_then(|s| s.phase.as_deref());
        let deleting = volume.metadata.deletion_timestamp.is_some();
        if cached.is_some_and(|c| c.uid() == claim_ref.uid)
            || (deleting && phase == Some("Released"))
        {
            continue;
        }
        // Releasing destroys data: the cache's word that the claim is gone is checked with
        // the API first, as upstream's volume controller does.
        let claims: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), &claim_namespace);
        if claims
            .get_opt(&claim_name)
            .await?
            .is_some_and(|c| c.uid() == claim_ref.uid)
        {
            continue;
        }
        let policy = volume
            .spec
            .as_ref()
            .and_then(|s| s.persistent_volume_reclaim_policy.clone())
            .unwrap_or_default();
        // Released first, as upstream's volume controller does: the volume protection
        // controller lets a deleted volume go only once it is no longer Bound.
        if phase != Some("Released") {
            let released = volumes
                .patch_status(
                    &volume.name_any(),
                    &PatchParams::default(),
                    &Patch::Merge(json!({"status": {"phase": "Released"}})),
                )
                .await?;
            Views::wrote(&views.wrote_volumes, &released);
        }
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
            if !deleting {
                match volumes
                    .delete(&volume.name_any(), &DeleteParams::default())
                    .await
                {
                    Ok(_) => {}
                    Err(kube::Error::Api(status)) if status.code == 404 => {}
                    Err(error) => return Err(error.into()),
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn class(name: &str, provisioner: &str) -> Arc<StorageClass> {
        Arc::new(StorageClass {
            metadata: ObjectMeta {
                name: Some(name.into()),
                ..ObjectMeta::default()
            },
            provisioner: provisioner.into(),
            ..StorageClass::default()
        })
    }

    #[test]
    fn a_pending_claim_says_why_as_upstream_does() {
        let classes = vec![
            class("local-path", PROVISIONER),
            class("nfs", "example.com/nfs"),
        ];
        assert_eq!(Wait::of("local-path", &classes), None);
        let missing = Wait::of("nfs-storageclass", &classes).expect("waits");
        assert_eq!(
            missing.event(),
            (
                "Warning",
                "ProvisioningFailed",
                "storageclass.storage.k8s.io \"nfs-storageclass\" not found".to_string()
            )
        );
        let external = Wait::of("nfs", &classes).expect("waits");
        assert_eq!(external.reason(), "ExternalProvisioning");
        assert!(external.event().2.contains("'example.com/nfs'"));
        assert_eq!(Wait::of("", &classes), Some(Wait::NoClassSet));
    }
}
