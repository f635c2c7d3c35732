//! The `local-path` provisioner and binder: a PersistentVolume per claim, pinned to one node
//! (`spec.nodeAffinity`, as rancher's local-path-provisioner writes it) and bound both ways; a
//! released volume is deleted or kept, as its reclaim policy says.
//!
//! This side only decides and binds: the directory behind a volume is made and removed by the
//! node the volume is pinned to, so nothing here touches a disk. A volume of reclaim policy
//! Delete carries the cleanup finalizer (as upstream's external provisioner puts
//! `external-provisioner.volume.kubernetes.io/finalizer` on its volumes): deleting the object
//! leaves it Terminating until its node has removed the directory and the finalizer, so a
//! node that is down delays the cleanup and loses nothing. A volume of any other policy has
//! no such finalizer, and its data outlives the object. `claim_step`, `volume_step` and
//! `finalizer_step` hold the decisions as pure functions; the async code reads caches and the
//! API, writes, and records events.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use futures::StreamExt;
use k8s_openapi::api::core::v1::{
    HostPathVolumeSource, Node, NodeSelector, NodeSelectorRequirement, NodeSelectorTerm,
    ObjectReference, PersistentVolume, PersistentVolumeClaim, PersistentVolumeSpec,
    VolumeNodeAffinity,
};
use k8s_openapi::api::storage::v1::StorageClass;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::{Client, Resource, ResourceExt};
use serde_json::json;

use crate::cache::{Cache, Change, version_of};
use crate::events::Recorder;
use crate::guarded;
use crate::queue::Queue;
use crate::scheduler::{HOSTNAME_LABEL, SELECTED_NODE};
use petset_informer::finalizers::{add_finalizer, remove_finalizer};

/// The provisioner name of the default `local-path` class.
pub const PROVISIONER: &str = "petset.dev/local-path";
/// The volume annotation naming the provisioner that made it.
pub const PROVISIONED_BY: &str = "pv.kubernetes.io/provisioned-by";
/// The finalizer on this provisioner's volumes of reclaim policy Delete; the node the volume
/// is pinned to removes it once the directory is gone (`petset_agent::local_path`). Named for
/// petset rather than upstream's external-provisioner finalizer, since here the node, not the
/// provisioner, does the cleanup and lets the volume go.
pub const CLEANUP_FINALIZER: &str = "petset.dev/local-path-cleanup";

/// How many claims are provisioned and bound at once.
const BIND_CONCURRENCY: usize = 128;
/// The caches the provisioner reads, and the newest resourceVersion it wrote of each kind.
struct Views {
    classes: Cache<StorageClass>,
    claims: Cache<PersistentVolumeClaim>,
    volumes: Cache<PersistentVolume>,
    nodes: Cache<Node>,
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

/// Why a claim stays Pending, as upstream's volume controller and provisioners report it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Wait {
    /// Its class does not exist.
    NoClass(String),
    /// No class and no volume to bind statically.
    NoClassSet,
    /// Its class names a provisioner that is not petset's.
    External(String),
    /// Its class binds on first use, and no pod has been given a node for it yet.
    FirstConsumer,
    /// The node chosen for it does not exist.
    NodeNotFound(String),
    /// Its class binds at once, and no node is Ready to hold the volume.
    NoReadyNode(String),
}

impl Wait {
    pub fn reason(&self) -> &'static str {
        match self {
            Wait::NoClass(_) | Wait::NodeNotFound(_) | Wait::NoReadyNode(_) => "ProvisioningFailed",
            Wait::NoClassSet => "FailedBinding",
            Wait::External(_) => "ExternalProvisioning",
            Wait::FirstConsumer => "WaitForFirstConsumer",
        }
    }

    /// The event's type, reason and message.
    pub fn event(&self) -> (&'static str, &'static str, String) {
        let message = match self {
            Wait::NoClass(class) => format!("storageclass.storage.k8s.io {class:?} not found"),
            Wait::NoClassSet => {
                "no persistent volumes available for this claim and no storage class is set".into()
            }
            Wait::External(provisioner) => format!(
                "Waiting for a volume to be created either by the external provisioner '{provisioner}' or manually by the system administrator. If volume creation is delayed, please verify that the provisioner is running and correctly registered."
            ),
            Wait::FirstConsumer => "waiting for first consumer to be created before binding".into(),
            Wait::NodeNotFound(node) => {
                format!("failed to get target node: nodes {node:?} not found")
            }
            Wait::NoReadyNode(class) => format!(
                "failed to provision volume with StorageClass {class:?}: no Ready node to hold the volume"
            ),
        };
        let type_ = match self {
            Wait::External(_) | Wait::FirstConsumer => "Normal",
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

/// What one claim needs.
#[derive(Debug, Clone, PartialEq)]
pub enum ClaimStep {
    /// Bound already, or being deleted.
    Nothing,
    /// It waits, for this reason.
    Wait(Wait),
    /// This volume is made for it (unless it exists) and the two are bound to each other.
    Provision(Box<PersistentVolume>),
}

/// The node a claim's volume goes to: the one the scheduler chose for its first pod
/// (`WaitForFirstConsumer`), or, for a class that binds at once, the first Ready schedulable
/// node by name.
fn node_for<'a>(
    claim: &PersistentVolumeClaim,
    class: &StorageClass,
    nodes: &'a [Arc<Node>],
) -> Result<&'a Node, Wait> {
    if let Some(selected) = claim.annotations().get(SELECTED_NODE) {
        return nodes
            .iter()
            .find(|n| n.name_any() == *selected)
            .map(|n| n.as_ref())
            .ok_or_else(|| Wait::NodeNotFound(selected.clone()));
    }
    if class.volume_binding_mode.as_deref() == Some("WaitForFirstConsumer") {
        return Err(Wait::FirstConsumer);
    }
    let mut ready: Vec<&Node> = nodes
        .iter()
        .map(|n| n.as_ref())
        .filter(|n| is_ready_and_schedulable(n))
        .collect();
    ready.sort_by_key(|n| n.name_any());
    ready
        .first()
        .copied()
        .ok_or_else(|| Wait::NoReadyNode(class.name_any()))
}

fn is_ready_and_schedulable(node: &Node) -> bool {
    let schedulable = node.spec.as_ref().and_then(|s| s.unschedulable) != Some(true);
    let ready = node
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
    schedulable && ready
}

/// The name of a claim's volume: one per claim, whatever its name.
pub fn volume_name(claim: &PersistentVolumeClaim) -> String {
    format!("pvc-{}", claim.uid().unwrap_or_default())
}

/// What `claim` needs, given the classes and nodes there are; volumes live under `root` on
/// their node.
pub fn claim_step(
    claim: &PersistentVolumeClaim,
    classes: &[Arc<StorageClass>],
    nodes: &[Arc<Node>],
    root: &Path,
) -> ClaimStep {
    let bound = claim.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Bound");
    if claim.metadata.deletion_timestamp.is_some() || bound {
        return ClaimStep::Nothing;
    }
    let spec = claim.spec.clone().unwrap_or_default();
    let class_name = spec.storage_class_name.clone().unwrap_or_default();
    if let Some(wait) = Wait::of(&class_name, classes) {
        return ClaimStep::Wait(wait);
    }
    let Some(class) = classes.iter().find(|c| c.name_any() == class_name) else {
        return ClaimStep::Nothing;
    };
    let node = match node_for(claim, class, nodes) {
        Ok(node) => node,
        Err(wait) => return ClaimStep::Wait(wait),
    };
    // Pinned by the node's hostname label, or its name without one, as rancher's does.
    let hostname = node
        .labels()
        .get(HOSTNAME_LABEL)
        .cloned()
        .unwrap_or_else(|| node.name_any());
    let name = volume_name(claim);
    let capacity = spec
        .resources
        .as_ref()
        .and_then(|r| r.requests.as_ref())
        .and_then(|r| r.get("storage").cloned());
    let policy = class
        .reclaim_policy
        .clone()
        .unwrap_or_else(|| "Delete".into());
    ClaimStep::Provision(Box::new(PersistentVolume {
        metadata: ObjectMeta {
            name: Some(name.clone()),
            annotations: Some([(PROVISIONED_BY.to_string(), PROVISIONER.to_string())].into()),
            finalizers: (policy == "Delete").then(|| vec![CLEANUP_FINALIZER.to_string()]),
            ..ObjectMeta::default()
        },
        spec: Some(PersistentVolumeSpec {
            capacity: capacity.map(|c| [("storage".to_string(), c)].into()),
            access_modes: spec.access_modes.clone(),
            persistent_volume_reclaim_policy: Some(policy),
            storage_class_name: Some(class_name),
            volume_mode: spec.volume_mode.clone(),
            host_path: Some(HostPathVolumeSource {
                path: root.join(&name).display().to_string(),
                type_: Some("DirectoryOrCreate".into()),
            }),
            node_affinity: Some(VolumeNodeAffinity {
                required: Some(NodeSelector {
                    node_selector_terms: vec![NodeSelectorTerm {
                        match_expressions: Some(vec![NodeSelectorRequirement {
                            key: HOSTNAME_LABEL.into(),
                            operator: "In".into(),
                            values: Some(vec![hostname]),
                        }]),
                        match_fields: None,
                    }],
                }),
            }),
            claim_ref: Some(ObjectReference {
                api_version: Some("v1".into()),
                kind: Some("PersistentVolumeClaim".into()),
                namespace: claim.namespace(),
                name: Some(claim.name_any()),
                uid: claim.uid(),
                ..ObjectReference::default()
            }),
            ..PersistentVolumeSpec::default()
        }),
        status: None,
    }))
}

/// What one volume needs once its claim may be gone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VolumeStep {
    /// Its claim is there, it has none, or it was released already and is retained or going.
    Keep,
    /// Its claim is gone (to be confirmed with the API: this destroys data): mark it Released
    /// unless it is, then delete the object if its policy says `Delete` and it is not being
    /// deleted already. The object then waits, Terminating, behind the cleanup finalizer until
    /// the node it is pinned to has removed the directory (for as long as that node is down).
    Release { mark: bool, delete: bool },
}

/// What `volume` needs, given the cached claim of its claimRef's name.
pub fn volume_step(volume: &PersistentVolume, claim: Option<&PersistentVolumeClaim>) -> VolumeStep {
    let spec = volume.spec.as_ref();
    let Some(claim_ref) = spec.and_then(|s| s.claim_ref.as_ref()) else {
        return VolumeStep::Keep;
    };
    let phase = volume.status.as_ref().and_then(|s| s.phase.as_deref());
    let deleting = volume.metadata.deletion_timestamp.is_some();
    let released = phase == Some("Released");
    if claim.is_some_and(|c| c.uid() == claim_ref.uid) || (deleting && released) {
        return VolumeStep::Keep;
    }
    let policy = spec.and_then(|s| s.persistent_volume_reclaim_policy.as_deref());
    let (mark, delete) = (!released, policy == Some("Delete") && !deleting);
    if !mark && !delete {
        // Released and retained, or going: nothing left to do.
        return VolumeStep::Keep;
    }
    VolumeStep::Release { mark, delete }
}

/// What a volume's cleanup finalizer needs, as upstream's provisioner library keeps its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FinalizerStep {
    Nothing,
    /// A Bound volume of policy Delete that lacks it (made before volumes carried it).
    Add,
    /// Its policy is no longer Delete: its data is to stay, so nothing is to clean up.
    Remove,
}

/// What `volume`'s cleanup finalizer needs; only this provisioner's volumes have one.
pub fn finalizer_step(volume: &PersistentVolume) -> FinalizerStep {
    if volume.annotations().get(PROVISIONED_BY).map(String::as_str) != Some(PROVISIONER) {
        return FinalizerStep::Nothing;
    }
    let has = volume.finalizers().iter().any(|f| f == CLEANUP_FINALIZER);
    let policy = volume
        .spec
        .as_ref()
        .and_then(|s| s.persistent_volume_reclaim_policy.as_deref());
    let phase = volume.status.as_ref().and_then(|s| s.phase.as_deref());
    match policy {
        Some("Delete")
            if !has && phase == Some("Bound") && volume.metadata.deletion_timestamp.is_none() =>
        {
            FinalizerStep::Add
        }
        Some("Retain" | "Recycle") if has => FinalizerStep::Remove,
        _ => FinalizerStep::Nothing,
    }
}

/// How long a reconcile waits for the caches to show the provisioner's own last writes.
const CATCH_UP: std::time::Duration = std::time::Duration::from_secs(2);

/// Runs the provisioner until the task is aborted; volumes are named under `root` (on the
/// node each is pinned to).
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
        // A node turning Ready may be what a waiting claim needs.
        nodes: Cache::follow(
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
    views.nodes.ready().await;
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

/// Any change to classes, claims, volumes or nodes queues a reconcile.
fn reconcile_on_change<K>(queue: &Arc<Queue<()>>) -> impl Fn(Change<'_, K>) + Send + 'static {
    let queue = queue.clone();
    move |_| queue.add(())
}

async fn reconcile(client: &Client, root: &Path, views: &Views) -> Result<(), kube::Error> {
    let classes = views.classes.store().state();
    let nodes = views.nodes.store().state();

    // Claims are independent: bind many at a time, each as soon as a slot frees up.
    let mut running = futures::stream::FuturesUnordered::new();
    let mut failed = None;
    for claim in views.claims.store().state() {
        let volume = match claim_step(&claim, &classes, &nodes, root) {
            ClaimStep::Nothing => continue,
            ClaimStep::Wait(wait) => {
                views.events.waiting(&claim, wait);
                continue;
            }
            ClaimStep::Provision(volume) => volume,
        };
        if running.len() >= BIND_CONCURRENCY
            && let Some(Err(error)) = running.next().await
        {
            failed.get_or_insert(error);
        }
        running.push(async move { bind(client, views, &claim, &volume).await });
    }
    while let Some(result) = running.next().await {
        if let Err(error) = result {
            failed.get_or_insert(error);
        }
    }
    if let Some(error) = failed {
        return Err(error);
    }
    release(client, views).await?;
    keep_finalizers(client, views).await
}

/// Adds the cleanup finalizer to volumes of policy Delete that lack it and removes it from
/// volumes whose policy changed (the node also lets a retained volume go without touching
/// its data, should it be deleted first).
async fn keep_finalizers(client: &Client, views: &Views) -> Result<(), kube::Error> {
    let volumes: Api<PersistentVolume> = Api::all(client.clone());
    for volume in views.volumes.store().state() {
        let written = match finalizer_step(&volume) {
            FinalizerStep::Nothing => continue,
            FinalizerStep::Add => add_finalizer(&volumes, &volume, CLEANUP_FINALIZER).await,
            FinalizerStep::Remove => remove_finalizer(&volumes, &volume, CLEANUP_FINALIZER).await,
        };
        match written {
            // Changed meanwhile: its watch event brings another reconcile.
            Err(kube::Error::Api(status)) if status.code == 409 => {}
            other => other?,
        }
    }
    Ok(())
}

/// Makes `volume` for `claim` (unless it exists) and binds the two to each other.
async fn bind(
    client: &Client,
    views: &Views,
    claim: &PersistentVolumeClaim,
    volume: &PersistentVolume,
) -> Result<(), kube::Error> {
    let volumes: Api<PersistentVolume> = Api::all(client.clone());
    let volume_name = volume.name_any();
    if views
        .volumes
        .store()
        .get(&ObjectRef::new(&volume_name))
        .is_none()
    {
        match volumes.create(&PostParams::default(), volume).await {
            Ok(created) => {
                Views::wrote(&views.wrote_volumes, &created);
                views.events.provisioned(claim, &volume_name);
            }
            Err(kube::Error::Api(status)) if status.code == 409 => {}
            Err(error) => return Err(error),
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
    let spec = claim.spec.clone().unwrap_or_default();
    let capacity = volume.spec.as_ref().and_then(|s| s.capacity.clone());
    let namespaced: Api<PersistentVolumeClaim> =
        Api::namespaced(client.clone(), &claim.namespace().unwrap_or_default());
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
                "capacity": capacity,
            }})),
        )
        .await?;
    Views::wrote(&views.wrote_claims, &bound);
    Ok(())
}

/// Volumes whose claim is gone are released: marked Released, then deleted or kept.
async fn release(client: &Client, views: &Views) -> Result<(), kube::Error> {
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
        let VolumeStep::Release { mark, delete } = volume_step(&volume, cached.as_deref()) else {
            continue;
        };
        // Releasing destroys data: the cache's word that the claim is gone is checked with
        // the API first, as upstream's volume controller does.
        let claims: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), &claim_namespace);
        let live = claims.get_opt(&claim_name).await?;
        if volume_step(&volume, live.as_ref()) == VolumeStep::Keep {
            continue;
        }
        // Released first, as upstream's volume controller does: the volume protection
        // controller lets a deleted volume go only once it is no longer Bound.
        if mark {
            let released = volumes
                .patch_status(
                    &volume.name_any(),
                    &PatchParams::default(),
                    &Patch::Merge(json!({"status": {"phase": "Released"}})),
                )
                .await?;
            Views::wrote(&views.wrote_volumes, &released);
        }
        if delete {
            let uid = volume.uid().unwrap_or_default();
            guarded::delete(&volumes, &volume.name_any(), &uid).await?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    fn from<K: serde::de::DeserializeOwned>(value: Value) -> K {
        serde_json::from_value(value).expect("object")
    }

    fn class(name: &str, provisioner: &str) -> Arc<StorageClass> {
        Arc::new(from(json!({
            "metadata": {"name": name}, "provisioner": provisioner,
            "reclaimPolicy": "Delete", "volumeBindingMode": "Immediate",
        })))
    }

    fn late_class() -> Arc<StorageClass> {
        Arc::new(from(json!({
            "metadata": {"name": "late"}, "provisioner": PROVISIONER,
            "reclaimPolicy": "Retain", "volumeBindingMode": "WaitForFirstConsumer",
        })))
    }

    fn node(name: &str, ready: bool, hostname: Option<&str>) -> Arc<Node> {
        let labels = hostname.map(|h| json!({HOSTNAME_LABEL: h}));
        Arc::new(from(json!({
            "metadata": {"name": name, "labels": labels},
            "status": {"conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}]},
        })))
    }

    fn claim(class: &str, selected_node: Option<&str>) -> PersistentVolumeClaim {
        let annotations = selected_node.map(|n| json!({SELECTED_NODE: n}));
        from(json!({
            "metadata": {"name": "www-web-0", "namespace": "default", "uid": "1234",
                         "annotations": annotations},
            "spec": {"storageClassName": class, "accessModes": ["ReadWriteOnce"],
                     "resources": {"requests": {"storage": "1Gi"}}},
            "status": {"phase": "Pending"},
        }))
    }

    fn provisioned(step: ClaimStep) -> PersistentVolume {
        match step {
            ClaimStep::Provision(volume) => *volume,
            other => panic!("expected a volume, got {other:?}"),
        }
    }

    fn pinned_to(volume: &PersistentVolume) -> Value {
        let spec = volume.spec.as_ref().expect("spec");
        serde_json::to_value(&spec.node_affinity).expect("affinity")
    }

    fn affinity(node: &str) -> Value {
        json!({"required": {"nodeSelectorTerms": [{"matchExpressions": [
            {"key": "kubernetes.io/hostname", "operator": "In", "values": [node]}]}]}})
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

    #[test]
    fn an_immediate_claim_gets_a_volume_pinned_to_the_first_ready_node_by_name() {
        let classes = [class("local-path", PROVISIONER)];
        let nodes = [
            node("c", true, Some("c")),
            node("a", false, Some("a")),
            node("b", true, Some("b-host")),
        ];
        let volume = provisioned(claim_step(
            &claim("local-path", None),
            &classes,
            &nodes,
            Path::new("/data/volumes"),
        ));
        assert_eq!(pinned_to(&volume), affinity("b-host"));
        let spec = volume.spec.as_ref().expect("spec");
        assert_eq!(volume.name_any(), "pvc-1234");
        assert_eq!(
            spec.host_path.as_ref().map(|h| h.path.as_str()),
            Some("/data/volumes/pvc-1234")
        );
        assert_eq!(
            spec.persistent_volume_reclaim_policy.as_deref(),
            Some("Delete")
        );
        assert_eq!(
            volume.finalizers(),
            [CLEANUP_FINALIZER],
            "its node cleans it up before it goes"
        );
        let claim_ref = spec.claim_ref.as_ref().expect("claimRef");
        assert_eq!(
            (claim_ref.name.as_deref(), claim_ref.uid.as_deref()),
            (Some("www-web-0"), Some("1234"))
        );
        assert_eq!(
            volume.annotations().get(PROVISIONED_BY).map(String::as_str),
            Some(PROVISIONER)
        );
    }

    #[test]
    fn a_node_without_a_hostname_label_is_pinned_by_its_name() {
        let volume = provisioned(claim_step(
            &claim("local-path", None),
            &[class("local-path", PROVISIONER)],
            &[node("solo", true, None)],
            Path::new("/v"),
        ));
        assert_eq!(pinned_to(&volume), affinity("solo"));
    }

    #[test]
    fn an_immediate_claim_waits_while_no_node_is_ready() {
        let step = claim_step(
            &claim("local-path", None),
            &[class("local-path", PROVISIONER)],
            &[node("a", false, Some("a"))],
            Path::new("/v"),
        );
        assert_eq!(
            step,
            ClaimStep::Wait(Wait::NoReadyNode("local-path".into()))
        );
    }

    #[test]
    fn a_wait_for_first_consumer_claim_goes_where_the_scheduler_chose() {
        let classes = [late_class()];
        let nodes = [node("a", true, Some("a")), node("b", true, Some("b"))];
        let waiting = claim_step(&claim("late", None), &classes, &nodes, Path::new("/v"));
        assert_eq!(waiting, ClaimStep::Wait(Wait::FirstConsumer));
        assert_eq!(
            Wait::FirstConsumer.event(),
            (
                "Normal",
                "WaitForFirstConsumer",
                "waiting for first consumer to be created before binding".to_string()
            )
        );
        let volume = provisioned(claim_step(
            &claim("late", Some("b")),
            &classes,
            &nodes,
            Path::new("/v"),
        ));
        assert_eq!(pinned_to(&volume), affinity("b"));
        let spec = volume.spec.as_ref().expect("spec");
        assert_eq!(
            spec.persistent_volume_reclaim_policy.as_deref(),
            Some("Retain")
        );
        assert!(
            volume.finalizers().is_empty(),
            "a retained volume's data stays"
        );
        let gone = claim_step(&claim("late", Some("z")), &classes, &nodes, Path::new("/v"));
        assert_eq!(gone, ClaimStep::Wait(Wait::NodeNotFound("z".into())));
    }

    #[test]
    fn bound_and_deleted_claims_need_nothing() {
        let classes = [class("local-path", PROVISIONER)];
        let nodes = [node("a", true, Some("a"))];
        let mut bound = claim("local-path", None);
        bound.status.get_or_insert_default().phase = Some("Bound".into());
        assert_eq!(
            claim_step(&bound, &classes, &nodes, Path::new("/v")),
            ClaimStep::Nothing
        );
        let mut deleted = claim("local-path", None);
        deleted.metadata.deletion_timestamp = Some(
            k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(jiff::Timestamp::UNIX_EPOCH),
        );
        assert_eq!(
            claim_step(&deleted, &classes, &nodes, Path::new("/v")),
            ClaimStep::Nothing
        );
    }

    fn volume(policy: &str, phase: &str, deleting: bool) -> PersistentVolume {
        let mut volume: PersistentVolume = from(json!({
            "metadata": {"name": "pvc-1234"},
            "spec": {"persistentVolumeReclaimPolicy": policy,
                     "claimRef": {"namespace": "default", "name": "www-web-0", "uid": "1234"}},
            "status": {"phase": phase},
        }));
        if deleting {
            volume.metadata.deletion_timestamp = Some(
                k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(jiff::Timestamp::UNIX_EPOCH),
            );
        }
        volume
    }

    #[test]
    fn a_volume_is_kept_while_its_own_claim_exists() {
        let claim = claim("local-path", None);
        assert_eq!(
            volume_step(&volume("Delete", "Bound", false), Some(&claim)),
            VolumeStep::Keep
        );
        let mut successor = claim.clone();
        successor.metadata.uid = Some("5678".into());
        assert_eq!(
            volume_step(&volume("Delete", "Bound", false), Some(&successor)),
            VolumeStep::Release {
                mark: true,
                delete: true
            },
            "a claim of the same name but another uid is not the volume's"
        );
    }

    #[test]
    fn a_volume_whose_claim_is_gone_is_released_then_deleted_or_retained_by_policy() {
        assert_eq!(
            volume_step(&volume("Delete", "Bound", false), None),
            VolumeStep::Release {
                mark: true,
                delete: true
            }
        );
        assert_eq!(
            volume_step(&volume("Retain", "Bound", false), None),
            VolumeStep::Release {
                mark: true,
                delete: false
            }
        );
        assert_eq!(
            volume_step(&volume("Retain", "Released", false), None),
            VolumeStep::Keep,
            "a retained volume, once Released, is left alone"
        );
        assert_eq!(
            volume_step(&volume("Delete", "Bound", true), None),
            VolumeStep::Release {
                mark: true,
                delete: false
            },
            "a volume being deleted is marked Released so protection lets it go"
        );
        assert_eq!(
            volume_step(&volume("Delete", "Released", true), None),
            VolumeStep::Keep
        );
    }

    fn provisioned_volume(policy: &str, phase: &str, finalizers: &[&str]) -> PersistentVolume {
        let mut volume = volume(policy, phase, false);
        volume.metadata.annotations = Some([(PROVISIONED_BY.into(), PROVISIONER.into())].into());
        volume.metadata.finalizers = Some(finalizers.iter().map(|f| f.to_string()).collect());
        volume
    }

    #[test]
    fn the_cleanup_finalizer_follows_the_reclaim_policy_as_upstreams_provisioner_keeps_it() {
        assert_eq!(
            finalizer_step(&provisioned_volume("Delete", "Bound", &[CLEANUP_FINALIZER])),
            FinalizerStep::Nothing
        );
        assert_eq!(
            finalizer_step(&provisioned_volume("Delete", "Bound", &[])),
            FinalizerStep::Add,
            "a volume made before volumes carried it"
        );
        assert_eq!(
            finalizer_step(&provisioned_volume("Delete", "Released", &[])),
            FinalizerStep::Nothing,
            "only a Bound volume gets it, as upstream"
        );
        let mut deleting = provisioned_volume("Delete", "Bound", &[]);
        deleting.metadata.deletion_timestamp = Some(
            k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(jiff::Timestamp::UNIX_EPOCH),
        );
        assert_eq!(
            finalizer_step(&deleting),
            FinalizerStep::Nothing,
            "no finalizer can be added to an object being deleted"
        );
        for policy in ["Retain", "Recycle"] {
            assert_eq!(
                finalizer_step(&provisioned_volume(policy, "Bound", &[CLEANUP_FINALIZER])),
                FinalizerStep::Remove,
                "{policy}"
            );
            assert_eq!(
                finalizer_step(&provisioned_volume(policy, "Bound", &[])),
                FinalizerStep::Nothing
            );
        }
        assert_eq!(
            finalizer_step(&volume("Delete", "Bound", false)),
            FinalizerStep::Nothing,
            "another provisioner's volume"
        );
    }
}
