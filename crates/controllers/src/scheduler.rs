//! Scheduling for the nodes petset runs: a pod without a node is bound to a Ready node (the one
//! node, for now) through the `binding` subresource, as kube-scheduler does. As upstream's
//! VolumeBinding plugin with `Immediate` claims, a pod waits until every claim it mounts is
//! Bound, so the node never starts a pod whose volume does not exist yet.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{
    Binding, Node, ObjectReference, PersistentVolumeClaim, Pod, PodSpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;
use kube::{Client, Resource, ResourceExt};
use serde_json::json;

use crate::cache::{Cache, Change};
use crate::events::Recorder;
use crate::queue::Queue;

type Key = (String, String);

/// How long a pod may wait for its claims before the wait is reported on the pod
/// (`PodScheduled=False`, a `FailedScheduling` event): a claim is normally bound within
/// milliseconds, and reporting every short wait would double the writes of a scale-up.
const REPORT_AFTER: Duration = Duration::from_secs(1);

/// Runs the scheduler until the task is aborted.
pub async fn run(client: Client) {
    let recorder = Recorder::new(client.clone(), "default-scheduler");
    let (queue, mut keys) = Queue::<Key>::new();
    let mut helpers = tokio::task::JoinSet::new();
    let unscheduled: Cache<Pod> = {
        let queue = queue.clone();
        Cache::follow(
            &mut helpers,
            Api::all(client.clone()),
            watcher::Config::default().fields("spec.nodeName="),
            move |change| match change {
                Change::Applied(pod) | Change::Deleted(pod) => {
                    queue.add((pod.namespace().unwrap_or_default(), pod.name_any()));
                }
                Change::Relisted => {}
            },
        )
    };
    let nodes: Cache<Node> = Cache::follow(
        &mut helpers,
        Api::all(client.clone()),
        watcher::Config::default(),
        |_| {},
    );
    let claims: Cache<PersistentVolumeClaim> = {
        let queue = queue.clone();
        let waiting = unscheduled.store().clone();
        Cache::follow(
            &mut helpers,
            Api::all(client.clone()),
            watcher::Config::default(),
            move |change| {
                // A claim changed: the pods waiting for it look again.
                let claim = match change {
                    Change::Applied(claim) | Change::Deleted(claim) => claim,
                    Change::Relisted => return,
                };
                let namespace = claim.namespace().unwrap_or_default();
                let name = claim.name_any();
                for pod in waiting.state() {
                    if pod.metadata.namespace.as_deref() == Some(namespace.as_str())
                        && claim_names(&pod).any(|c| c == name)
                    {
                        queue.add((namespace.clone(), pod.name_any()));
                    }
                }
            },
        )
    };
    unscheduled.ready().await;
    nodes.ready().await;
    claims.ready().await;
    let mut first_blocked: HashMap<Key, std::time::Instant> = HashMap::new();
    // The reason last reported on each waiting pod, so that one wait is reported once.
    let mut reported: HashMap<Key, String> = HashMap::new();
    while let Some(key) = keys.recv().await {
        queue.taken(&key);
        let pod = unscheduled
            .store()
            .get(&ObjectRef::new(&key.1).within(&key.0))
            .filter(|pod| {
                pod.metadata.deletion_timestamp.is_none()
                    && pod
                        .spec
                        .as_ref()
                        .and_then(|s| s.node_name.as_ref())
                        .is_none()
            });
        let Some(pod) = pod else {
            first_blocked.remove(&key);
            reported.remove(&key);
            continue;
        };
        let node_count = nodes.store().state().len();
        let blocked = match unbound_claim(&pod, claims.store()) {
            Some(reason) => Some(reason),
            None => match nodes.store().state().into_iter().find(|n| is_ready(n)) {
                Some(node) => {
                    first_blocked.remove(&key);
                    spawn_bind(
                        &client,
                        &recorder,
                        &queue,
                        Pod::clone(&pod),
                        node.name_any(),
                    );
                    None
                }
                None => Some("no nodes available to schedule pods".to_string()),
            },
        };
        let Some(reason) = blocked else { continue };
        let since = *first_blocked
            .entry(key.clone())
            .or_insert_with(std::time::Instant::now);
        if since.elapsed() >= REPORT_AFTER {
            let message = if node_count == 0 {
                reason
            } else {
                format!(
                    "0/{node_count} nodes are available: {reason}. preemption: 0/{node_count} nodes are available: {node_count} Preemption is not helpful for scheduling."
                )
            };
            if reported.get(&key) != Some(&message) {
                report_unschedulable(&client, &recorder, &pod, &message).await;
                reported.insert(key.clone(), message);
            }
        }
        // Nothing may announce the change that unblocks it (a node turning Ready): look again.
        queue.add_after(key, REPORT_AFTER);
    }
}

fn claim_names(pod: &Pod) -> impl Iterator<Item = &str> {
    pod.spec
        .iter()
        .flat_map(|s: &PodSpec| s.volumes.iter().flatten())
        .filter_map(|v| v.persistent_volume_claim.as_ref())
        .map(|c| c.claim_name.as_str())
}

/// Why the pod's claims keep it from a node, as upstream's VolumeBinding plugin says it.
fn unbound_claim(pod: &Pod, claims: &Store<PersistentVolumeClaim>) -> Option<String> {
    let namespace = pod.namespace().unwrap_or_default();
    let mut seen = HashSet::new();
    for name in claim_names(pod).filter(|n| seen.insert(*n)) {
        let Some(claim) = claims.get(&ObjectRef::new(name).within(&namespace)) else {
            return Some(format!("persistentvolumeclaim \"{name}\" not found"));
        };
        if claim.metadata.deletion_timestamp.is_some() {
            return Some(format!("persistentvolumeclaim \"{name}\" is being deleted"));
        }
        let bound = claim.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Bound");
        if !bound {
            return Some("pod has unbound immediate PersistentVolumeClaims".into());
        }
    }
    None
}

fn is_ready(node: &Node) -> bool {
    let unschedulable = node
        .spec
        .as_ref()
        .and_then(|s| s.unschedulable)
        .unwrap_or(false);
    !unschedulable
        && node
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// Binds in the background: bindings are independent, and many at once keep a burst of new
/// pods moving.
fn spawn_bind(
    client: &Client,
    recorder: &Recorder,
    queue: &Arc<Queue<Key>>,
    pod: Pod,
    node: String,
) {
    let client = client.clone();
    let recorder = recorder.clone();
    let queue = queue.clone();
    tokio::spawn(async move {
        let namespace = pod.namespace().unwrap_or_default();
        let key = (namespace.clone(), pod.name_any());
        match bind(&client, &pod, &node).await {
            Ok(()) => {
                let message = format!(
                    "Successfully assigned {namespace}/{} to {node}",
                    pod.name_any()
                );
                recorder.record(pod.object_ref(&()), "Normal", "Scheduled", message);
            }
            // Bound by someone else, or gone: the watch says so.
            Err(kube::Error::Api(status)) if status.code == 409 || status.code == 404 => {}
            Err(error) => {
                tracing::debug!(%error, pod = %pod.name_any(), "could not bind a pod; retrying");
                queue.add_after(key, Duration::from_millis(200));
            }
        }
    });
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
