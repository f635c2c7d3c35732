//! The scheduler's loop: watches keep the snapshot current change by change, one worker
//! decides pod after pod, and bindings are written in the background, at most `BINDS_IN_FLIGHT`
//! at a time. A pod counts on its node from the decision on (upstream's assumed pod), so the
//! next decision sees it before its binding is written. A pod no node fits waits until a change
//! that may help it (a node changes, a placed pod goes, or, for pods that want company, a pod
//! is placed), and is looked at again after a back-off in any case.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{
    Binding, Namespace, Node, ObjectReference, PersistentVolume, PersistentVolumeClaim, Pod,
    Service,
};
use k8s_openapi::api::storage::v1::StorageClass;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;
use kube::{Client, Resource, ResourceExt};
use serde_json::json;
use tokio::sync::Semaphore;

use super::snapshot::{Effect, Key, Snapshot};
use super::volumes::claim_names;
use super::{ClusterObjects, Decision, SELECTED_NODE, decide};
use crate::cache::{Cache, Change, key_of};
use crate::events::Recorder;
use crate::queue::Queue;

/// How long a pod may wait before the wait is reported on the pod (`PodScheduled=False`, a
/// `FailedScheduling` event): a claim is normally bound within milliseconds, and reporting
/// every short wait would double the writes of a scale-up. Also the first back-off.
const REPORT_AFTER: Duration = Duration::from_secs(1);
/// The longest a waiting pod goes without another look (upstream's pod back-off maximum).
const MAX_BACKOFF: Duration = Duration::from_secs(10);
/// Bindings written at once: enough to keep the API busy, few enough that a burst of pods
/// does not become a burst of tasks.
const BINDS_IN_FLIGHT: usize = 64;
/// The scheduler name upstream's default profile answers to; pods naming another scheduler
/// are left to it.
const SCHEDULER_NAME: &str = "default-scheduler";

/// What the watches keep and the worker reads, under one lock.
#[derive(Default)]
struct Shared {
    snapshot: Snapshot,
    /// Unscheduled pods by the claims they mount, so a claim's change wakes only its pods.
    mounting: HashMap<Key, HashSet<Key>>,
    /// The same the other way: each unscheduled pod's claims.
    mounts: HashMap<Key, Vec<Key>>,
    /// Pods no node fits, and whether they wait for other pods (required pod affinity).
    parked: HashMap<Key, bool>,
    /// Pods whose binding is being written.
    binding: HashSet<Key>,
}

type SharedState = Arc<Mutex<Shared>>;

fn lock(shared: &SharedState) -> MutexGuard<'_, Shared> {
    shared.lock().unwrap_or_else(|p| p.into_inner())
}

impl Shared {
    /// Queues the parked pods a change may help.
    fn wake(&mut self, effect: Effect, queue: &Queue<Key>) {
        let woken: Vec<Key> = match effect {
            Effect::Nothing => return,
            Effect::NodeChanged | Effect::PodLeft => self.parked.drain().map(|(k, _)| k).collect(),
            Effect::PodPlaced => {
                let keys: Vec<Key> = self
                    .parked
                    .iter()
                    .filter(|(_, wants_company)| **wants_company)
                    .map(|(k, _)| k.clone())
                    .collect();
                for key in &keys {
                    self.parked.remove(key);
                }
                keys
            }
        };
        for key in woken {
            queue.add(key);
        }
    }

    /// Records the claims an unscheduled pod mounts (none once it is bound or gone).
    fn set_mounting(&mut self, key: &Key, pod: Option<&Pod>) {
        for claim in self.mounts.remove(key).into_iter().flatten() {
            if let Some(pods) = self.mounting.get_mut(&claim) {
                pods.remove(key);
                if pods.is_empty() {
                    self.mounting.remove(&claim);
                }
            }
        }
        let claims: Vec<Key> = pod
            .into_iter()
            .flat_map(claim_names)
            .map(|claim| (key.0.clone(), claim.to_string()))
            .collect();
        for claim in &claims {
            self.mounting
                .entry(claim.clone())
                .or_default()
                .insert(key.clone());
        }
        if !claims.is_empty() {
            self.mounts.insert(key.clone(), claims);
        }
    }
}

fn unscheduled(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_none()
        && pod.spec.as_ref().is_some_and(|s| {
            s.node_name.is_none()
                && s.scheduler_name
                    .as_deref()
                    .is_none_or(|n| n == SCHEDULER_NAME)
        })
}

/// The caches the scheduler decides from.
struct Caches {
    claims: Cache<PersistentVolumeClaim>,
    volumes: Cache<PersistentVolume>,
    classes: Cache<StorageClass>,
    services: Cache<Service>,
    sets: Cache<StatefulSet>,
}

impl ClusterObjects for Caches {
    fn claim(&self, namespace: &str, name: &str) -> Option<Arc<PersistentVolumeClaim>> {
        self.claims.get(namespace, name)
    }

    fn volume(&self, name: &str) -> Option<Arc<PersistentVolume>> {
        self.volumes.get_cluster_scoped(name)
    }

    fn class(&self, name: &str) -> Option<Arc<StorageClass>> {
        self.classes.get_cluster_scoped(name)
    }

    fn services(&self, namespace: &str) -> Vec<Arc<Service>> {
        self.services.in_namespace(namespace)
    }

    fn stateful_set(&self, namespace: &str, name: &str) -> Option<Arc<StatefulSet>> {
        self.sets.get(namespace, name)
    }
}

/// Follows all objects of a kind with `config` into the snapshot through `apply`, and, after a
/// relist, through `prune` for the objects the new list no longer has.
fn follow_into<K: crate::cache::Cached>(
    helpers: &mut tokio::task::JoinSet<()>,
    api: Api<K>,
    config: watcher::Config,
    shared: &SharedState,
    queue: &Arc<Queue<Key>>,
    apply: fn(&mut Shared, Change<'_, K>, &Queue<Key>),
) -> Cache<K> {
    let store: Arc<OnceLock<Store<K>>> = Arc::default();
    let (shared, queue, known) = (shared.clone(), queue.clone(), store.clone());
    let cache = Cache::follow(helpers, api, config, move |change| {
        let mut state = lock(&shared);
        if let (Change::Relisted, Some(store)) = (&change, known.get()) {
            prune(&mut state, store, &queue);
        }
        apply(&mut state, change, &queue);
    });
    let _ = store.set(cache.store().clone());
    cache
}

/// After a relist: forget the nodes and pods the watch no longer shows (their deletions may
/// have been missed while it was down).
fn prune<K: crate::cache::Cached>(state: &mut Shared, store: &Store<K>, queue: &Queue<Key>) {
    let present: HashSet<Key> = store.state().iter().map(|o| key_of(o.as_ref())).collect();
    if K::kind(&()) == "Node" {
        let gone: Vec<String> = state
            .snapshot
            .nodes
            .keys()
            .filter(|n| !present.contains(&(String::new(), (*n).clone())))
            .cloned()
            .collect();
        for name in gone {
            let effect = state.snapshot.remove_node(&name);
            state.wake(effect, queue);
        }
    } else if K::kind(&()) == "Pod" {
        let gone: Vec<Key> = state
            .snapshot
            .placed
            .keys()
            .filter(|k| !present.contains(*k))
            .cloned()
            .collect();
        for key in gone {
            let effect = state.snapshot.forget(&key);
            state.wake(effect, queue);
        }
    }
}

fn apply_pod(state: &mut Shared, change: Change<'_, Pod>, queue: &Queue<Key>) {
    let (pod, deleted) = match change {
        Change::Applied(pod) => (pod, false),
        Change::Deleted(pod) => (pod, true),
        Change::Relisted => return,
    };
    let key = key_of(pod);
    let effect = if deleted {
        state.snapshot.forget(&key)
    } else {
        state.snapshot.apply_pod(pod)
    };
    let waiting = !deleted && unscheduled(pod);
    state.set_mounting(&key, waiting.then_some(pod));
    if waiting || deleted {
        queue.add(key);
    }
    state.wake(effect, queue);
}

fn apply_node(state: &mut Shared, change: Change<'_, Node>, queue: &Queue<Key>) {
    let effect = match change {
        Change::Applied(node) => state.snapshot.apply_node(node),
        Change::Deleted(node) => state.snapshot.remove_node(&node.name_any()),
        Change::Relisted => return,
    };
    state.wake(effect, queue);
}

fn apply_namespace(state: &mut Shared, change: Change<'_, Namespace>, _: &Queue<Key>) {
    match change {
        Change::Applied(namespace) => {
            let labels = namespace
                .labels()
                .iter()
                .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
                .collect();
            state
                .snapshot
                .namespaces
                .insert(namespace.name_any(), labels);
        }
        Change::Deleted(namespace) => {
            state.snapshot.namespaces.remove(&namespace.name_any());
        }
        Change::Relisted => {}
    }
}

/// A cache callback that queues the unscheduled pods mounting the claim (namespace, name) a
/// changed object names.
fn wake_pods_mounting<K: 'static>(
    queue: &Arc<Queue<Key>>,
    shared: &SharedState,
    claim_of: fn(&K) -> Option<Key>,
) -> impl Fn(Change<'_, K>) + Send + 'static {
    let queue = queue.clone();
    let shared = shared.clone();
    move |change| {
        let object = match change {
            Change::Applied(object) | Change::Deleted(object) => object,
            Change::Relisted => return,
        };
        let Some(claim) = claim_of(object) else {
            return;
        };
        let pods: Vec<Key> = lock(&shared)
            .mounting
            .get(&claim)
            .into_iter()
            .flatten()
            .cloned()
            .collect();
        for pod in pods {
            queue.add(pod);
        }
    }
}

/// Runs the scheduler until the task is aborted.
pub async fn run(client: Client) {
    let recorder = Recorder::new(client.clone(), "default-scheduler");
    let (queue, mut keys) = Queue::<Key>::new();
    let shared: SharedState = Arc::default();
    let mut helpers = tokio::task::JoinSet::new();
    let all = watcher::Config::default;
    // Finished pods hold nothing on their node, as upstream's scheduler does not watch them.
    let unfinished = all().fields("status.phase!=Succeeded,status.phase!=Failed");
    let pods = follow_into(
        &mut helpers,
        Api::all(client.clone()),
        unfinished,
        &shared,
        &queue,
        apply_pod,
    );
    let nodes = follow_into(
        &mut helpers,
        Api::all(client.clone()),
        all(),
        &shared,
        &queue,
        apply_node,
    );
    let namespaces = follow_into(
        &mut helpers,
        Api::all(client.clone()),
        all(),
        &shared,
        &queue,
        apply_namespace,
    );
    let caches = Caches {
        // A claim or its volume changed: the pods waiting for that claim look again.
        claims: Cache::follow(
            &mut helpers,
            Api::all(client.clone()),
            all(),
            wake_pods_mounting(&queue, &shared, |claim: &PersistentVolumeClaim| {
                Some((claim.namespace()?, claim.name_any()))
            }),
        ),
        volumes: Cache::follow(
            &mut helpers,
            Api::all(client.clone()),
            all(),
            wake_pods_mounting(&queue, &shared, |volume: &PersistentVolume| {
                let claim = volume.spec.as_ref()?.claim_ref.as_ref()?;
                Some((claim.namespace.clone()?, claim.name.clone()?))
            }),
        ),
        classes: Cache::follow(&mut helpers, Api::all(client.clone()), all(), |_| {}),
        services: Cache::follow(&mut helpers, Api::all(client.clone()), all(), |_| {}),
        sets: Cache::follow(&mut helpers, Api::all(client.clone()), all(), |_| {}),
    };
    pods.ready().await;
    nodes.ready().await;
    namespaces.ready().await;
    caches.claims.ready().await;
    caches.volumes.ready().await;
    caches.classes.ready().await;
    caches.services.ready().await;
    caches.sets.ready().await;
    let binds = Arc::new(Semaphore::new(BINDS_IN_FLIGHT));
    let mut first_blocked: HashMap<Key, (Instant, u32)> = HashMap::new();
    // The reason last reported on each waiting pod, so that one wait is reported once.
    let mut reported: HashMap<Key, String> = HashMap::new();
    while let Some(key) = keys.recv().await {
        queue.taken(&key);
        let pod = pods
            .store()
            .get(&ObjectRef::new(&key.1).within(&key.0))
            .filter(|pod| unscheduled(pod));
        let Some(pod) = pod else {
            // Bound, deleted or left to another scheduler: the watch keeps the snapshot.
            lock(&shared).parked.remove(&key);
            first_blocked.remove(&key);
            reported.remove(&key);
            continue;
        };
        let Some(decision) = look(&shared, &key, &pod, &caches) else {
            continue;
        };
        let message = match decision {
            Decision::Bind(node) => {
                first_blocked.remove(&key);
                let Ok(permit) = binds.clone().acquire_owned().await else {
                    return;
                };
                let bind = Bind {
                    client: client.clone(),
                    recorder: recorder.clone(),
                    queue: queue.clone(),
                    shared: shared.clone(),
                };
                tokio::spawn(async move {
                    bind.write(Pod::clone(&pod), node).await;
                    drop(permit);
                });
                continue;
            }
            Decision::SelectNode { node, claims } => {
                // The claims' change brings the pod back; the delay covers a lost write.
                select_node(&client, &caches, &pod, &node, &claims).await;
                queue.add_after(key, REPORT_AFTER);
                continue;
            }
            Decision::Wait(message) => message,
        };
        let (since, looks) = first_blocked
            .entry(key.clone())
            .or_insert_with(|| (Instant::now(), 0));
        *looks += 1;
        if since.elapsed() >= REPORT_AFTER && reported.get(&key) != Some(&message) {
            report_unschedulable(&client, &recorder, &pod, &message).await;
            reported.insert(key.clone(), message);
        }
        // Nothing may announce the change that unblocks it (a claim's class created later):
        // look again, less often the longer it waits.
        let backoff = REPORT_AFTER
            .saturating_mul(1 << (*looks - 1).min(4))
            .min(MAX_BACKOFF);
        queue.add_after(key, backoff);
    }
}

/// Decides for one unscheduled pod and records the outcome in the snapshot, in one critical
/// section so that no change falls between them; `None` while its binding is being written.
fn look(shared: &SharedState, key: &Key, pod: &Pod, caches: &Caches) -> Option<Decision> {
    let mut state = lock(shared);
    state.parked.remove(key);
    if state.binding.contains(key) {
        return None;
    }
    // An earlier look's assumption is this look's to make again.
    state.snapshot.forget(key);
    let decision = decide(pod, &state.snapshot, caches);
    match &decision {
        Decision::Bind(node) => {
            state.snapshot.assume(pod, node);
            state.binding.insert(key.clone());
        }
        Decision::SelectNode { node, .. } => state.snapshot.assume(pod, node),
        Decision::Wait(_) => {
            state.parked.insert(key.clone(), wants_company(pod));
        }
    }
    Some(decision)
}

fn wants_company(pod: &Pod) -> bool {
    pod.spec
        .as_ref()
        .and_then(|s| s.affinity.as_ref())
        .and_then(|a| a.pod_affinity.as_ref())
        .and_then(|a| {
            a.required_during_scheduling_ignored_during_execution
                .as_ref()
        })
        .is_some_and(|terms| !terms.is_empty())
}

/// Gives each claim the node its pod goes to, guarded by the resourceVersion read (a claim
/// that changed meanwhile is looked at again with the pod).
async fn select_node(client: &Client, caches: &Caches, pod: &Pod, node: &str, claims: &[String]) {
    let namespace = pod.namespace().unwrap_or_default();
    let api: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), &namespace);
    for name in claims {
        let Some(claim) = caches.claim(&namespace, name) else {
            continue;
        };
        let patch = json!({"metadata": {
            "resourceVersion": claim.resource_version(),
            "annotations": {SELECTED_NODE: node},
        }});
        if let Err(error) = api
            .patch(name, &PatchParams::default(), &Patch::Merge(patch))
            .await
        {
            tracing::debug!(%error, claim = %name, "could not select a node for a claim");
        }
    }
}

/// What a binding written in the background needs.
struct Bind {
    client: Client,
    recorder: Recorder,
    queue: Arc<Queue<Key>>,
    shared: SharedState,
}

impl Bind {
    async fn write(self, pod: Pod, node: String) {
        let namespace = pod.namespace().unwrap_or_default();
        let key = (namespace.clone(), pod.name_any());
        let result = bind(&self.client, &pod, &node).await;
        lock(&self.shared).binding.remove(&key);
        match result {
            Ok(()) => {
                let message = format!(
                    "Successfully assigned {namespace}/{} to {node}",
                    pod.name_any()
                );
                self.recorder
                    .record(pod.object_ref(&()), "Normal", "Scheduled", message);
            }
            // Bound by someone else, or gone: the watch says so.
            Err(kube::Error::Api(status)) if status.code == 409 || status.code == 404 => {}
            Err(error) => {
                tracing::debug!(%error, pod = %pod.name_any(), "could not bind a pod; retrying");
                let mut state = lock(&self.shared);
                let effect = state.snapshot.forget(&key);
                state.wake(effect, &self.queue);
                drop(state);
                self.queue.add_after(key, Duration::from_millis(200));
            }
        }
    }
}

async fn bind(client: &Client, pod: &Pod, node: &str) -> Result<(), kube::Error> {
    let namespace = pod.namespace().unwrap_or_default();
    let pods: Api<Pod> = Api::namespaced(client.clone(), &namespace);
    let binding = Binding {
        metadata: ObjectMeta {
            name: Some(pod.name_any()),
            namespace: Some(namespace),
            uid: pod.uid(),
            ..ObjectMeta::default()
        },
        target: ObjectReference {
            api_version: Some("v1".into()),
            kind: Some("Node".into()),
            name: Some(node.to_string()),
            ..ObjectReference::default()
        },
    };
    let _: serde_json::Value = pods
        .create_subresource("binding", &pod.name_any(), &PostParams::default(), &binding)
        .await?;
    Ok(())
}

/// Says on the pod why it waits, as kube-scheduler does: `PodScheduled=False` with reason
/// `Unschedulable`, and a `FailedScheduling` event.
async fn report_unschedulable(client: &Client, recorder: &Recorder, pod: &Pod, message: &str) {
    let namespace = pod.namespace().unwrap_or_default();
    let pods: Api<Pod> = Api::namespaced(client.clone(), &namespace);
    let now = petset_api::time::now();
    let patch = json!({"status": {"conditions": [{
        "type": "PodScheduled", "status": "False", "reason": "Unschedulable",
        "message": message, "lastTransitionTime": now, "lastProbeTime": null}]}});
    if let Err(error) = pods
        .patch_status(
            &pod.name_any(),
            &PatchParams::default(),
            &Patch::Strategic(patch),
        )
        .await
    {
        tracing::debug!(%error, pod = %pod.name_any(), "could not report an unschedulable pod");
    }
    recorder.record(
        pod.object_ref(&()),
        "Warning",
        "FailedScheduling",
        message.to_string(),
    );
}
