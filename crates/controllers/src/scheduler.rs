//! Scheduling for the nodes petset runs: a pod without a node is bound to a feasible node
//! through the `binding` subresource, as kube-scheduler does. `decide` holds every rule as a
//! pure function of the pod, the nodes and the storage objects; the async code reads caches,
//! writes the binding, the claims' `selected-node`, and the pod's `PodScheduled` condition.
//!
//! The filters are upstream's that matter for stateful pods, in upstream's order: the node is
//! schedulable and Ready, and the VolumeBinding plugin's: every claim the pod mounts exists and
//! is not being deleted; an `Immediate` claim is Bound (so the node never starts a pod whose
//! volume does not exist yet) and its volume's node affinity admits the node; a
//! `WaitForFirstConsumer` claim is given the chosen node (`volume.kubernetes.io/selected-node`)
//! and the pod is bound once the provisioner has bound the claim there. Among feasible nodes
//! the first by name wins: spreading pods over many nodes is the next step's.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{
    Binding, Node, NodeSelector, NodeSelectorRequirement, ObjectReference, PersistentVolume,
    PersistentVolumeClaim, Pod, PodSpec,
};
use k8s_openapi::api::storage::v1::StorageClass;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::{Client, Resource, ResourceExt};
use serde_json::json;

use crate::cache::{Cache, Change};
use crate::events::Recorder;
use crate::queue::Queue;

/// The claim annotation that tells a provisioner which node a `WaitForFirstConsumer` volume
/// is for.
pub const SELECTED_NODE: &str = "volume.kubernetes.io/selected-node";
/// The node label local volumes are pinned by.
pub const HOSTNAME_LABEL: &str = "kubernetes.io/hostname";

type Key = (String, String);

/// How long a pod may wait for its claims before the wait is reported on the pod
/// (`PodScheduled=False`, a `FailedScheduling` event): a claim is normally bound within
/// milliseconds, and reporting every short wait would double the writes of a scale-up.
const REPORT_AFTER: Duration = Duration::from_secs(1);

/// What the scheduler does with one unscheduled pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Bind the pod to this node.
    Bind(String),
    /// The pod goes to `node` once its `WaitForFirstConsumer` claims are bound there: give
    /// `claims` (those not yet told) the node, and look again when they change.
    SelectNode { node: String, claims: Vec<String> },
    /// No node fits; the message kube-scheduler reports.
    Wait(String),
}

/// The storage objects a decision reads, by name.
pub trait Storage {
    fn claim(&self, namespace: &str, name: &str) -> Option<Arc<PersistentVolumeClaim>>;
    fn volume(&self, name: &str) -> Option<Arc<PersistentVolume>>;
    fn class(&self, name: &str) -> Option<Arc<StorageClass>>;
}

/// Where `pod` goes, given every node and the storage objects.
pub fn decide(pod: &Pod, nodes: &[Arc<Node>], storage: &impl Storage) -> Decision {
    let claims = match pod_claims(pod, storage) {
        Ok(claims) => claims,
        Err(reason) => return Decision::Wait(unavailable(nodes.len(), &reason)),
    };
    if nodes.is_empty() {
        return Decision::Wait("no nodes available to schedule pods".into());
    }
    let mut by_name: Vec<&Arc<Node>> = nodes.iter().collect();
    by_name.sort_by_key(|n| n.name_any());
    let mut reasons: BTreeMap<&'static str, usize> = BTreeMap::new();
    for node in by_name {
        match filter(node, &claims, storage) {
            Err(reason) => *reasons.entry(reason).or_default() += 1,
            Ok(()) => {
                let node = node.name_any();
                let delayed: Vec<&PersistentVolumeClaim> =
                    claims.iter().filter_map(|c| c.delayed()).collect();
                if delayed.is_empty() {
                    return Decision::Bind(node);
                }
                let claims = delayed
                    .into_iter()
                    .filter(|c| selected_node(c).is_none())
                    .map(|c| c.name_any())
                    .collect();
                return Decision::SelectNode { node, claims };
            }
        }
    }
    // Sorted as text, count first, as upstream's FitError sorts them.
    let mut histogram: Vec<String> = reasons
        .iter()
        .map(|(reason, count)| format!("{count} {reason}"))
        .collect();
    histogram.sort();
    Decision::Wait(unavailable(nodes.len(), &histogram.join(", ")))
}

/// kube-scheduler's FitError message with its preemption suffix (none of these reasons can be
/// helped by preempting other pods).
fn unavailable(node_count: usize, reason: &str) -> String {
    if node_count == 0 {
        return reason.to_string();
    }
    format!(
        "0/{node_count} nodes are available: {reason}. preemption: 0/{node_count} nodes are available: {node_count} Preemption is not helpful for scheduling."
    )
}

/// A claim the pod mounts, as the VolumeBinding plugin sorts it.
enum PodClaim {
    Bound(Arc<PersistentVolumeClaim>),
    /// Unbound, of a `WaitForFirstConsumer` class: bound once a node is chosen.
    Delayed(Arc<PersistentVolumeClaim>),
}

impl PodClaim {
    fn delayed(&self) -> Option<&PersistentVolumeClaim> {
        match self {
            PodClaim::Delayed(claim) => Some(claim),
            PodClaim::Bound(_) => None,
        }
    }
}

fn claim_names(pod: &Pod) -> impl Iterator<Item = &str> {
    pod.spec
        .iter()
        .flat_map(|s: &PodSpec| s.volumes.iter().flatten())
        .filter_map(|v| v.persistent_volume_claim.as_ref())
        .map(|c| c.claim_name.as_str())
}

fn selected_node(claim: &PersistentVolumeClaim) -> Option<&str> {
    claim.annotations().get(SELECTED_NODE).map(String::as_str)
}

/// The pod's claims, or why they keep it from every node (the plugin's PreFilter).
fn pod_claims(pod: &Pod, storage: &impl Storage) -> Result<Vec<PodClaim>, String> {
    let namespace = pod.namespace().unwrap_or_default();
    let mut seen = HashSet::new();
    let mut claims = Vec::new();
    for name in claim_names(pod).filter(|n| seen.insert(*n)) {
        let Some(claim) = storage.claim(&namespace, name) else {
            return Err(format!("persistentvolumeclaim \"{name}\" not found"));
        };
        if claim.metadata.deletion_timestamp.is_some() {
            return Err(format!("persistentvolumeclaim \"{name}\" is being deleted"));
        }
        let bound = claim.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Bound");
        if bound {
            claims.push(PodClaim::Bound(claim));
        } else if waits_for_first_consumer(&claim, storage) {
            claims.push(PodClaim::Delayed(claim));
        } else {
            return Err("pod has unbound immediate PersistentVolumeClaims".into());
        }
    }
    Ok(claims)
}

fn waits_for_first_consumer(claim: &PersistentVolumeClaim, storage: &impl Storage) -> bool {
    let class = claim
        .spec
        .as_ref()
        .and_then(|s| s.storage_class_name.as_deref())
        .and_then(|name| storage.class(name));
    class.and_then(|c| c.volume_binding_mode.clone()).as_deref() == Some("WaitForFirstConsumer")
}

/// Why `node` cannot take the pod, in upstream's words (a node reports its first failure).
fn filter(node: &Node, claims: &[PodClaim], storage: &impl Storage) -> Result<(), &'static str> {
    if node.spec.as_ref().and_then(|s| s.unschedulable) == Some(true) {
        return Err("node(s) were unschedulable");
    }
    if !is_ready(node) {
        // Upstream's node lifecycle controller taints a node that is not Ready, and a pod
        // tolerates that taint for scheduling only if it says so.
        return Err("node(s) had untolerated taint {node.kubernetes.io/not-ready: }");
    }
    for claim in claims {
        match claim {
            PodClaim::Bound(claim) => {
                let volume = claim
                    .spec
                    .as_ref()
                    .and_then(|s| s.volume_name.as_deref())
                    .and_then(|name| storage.volume(name));
                let Some(volume) = volume else {
                    return Err(
                        "node(s) unavailable due to one or more pvc(s) bound to non-existent pv(s)",
                    );
                };
                if !volume_admits(&volume, node) {
                    return Err("node(s) had volume node affinity conflict");
                }
            }
            PodClaim::Delayed(claim) => {
                if selected_node(claim).is_some_and(|n| n != node.name_any()) {
                    return Err("node(s) didn't find available persistent volumes to bind");
                }
            }
        }
    }
    Ok(())
}

fn is_ready(node: &Node) -> bool {
    node.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// Whether a volume's required node affinity admits `node` (none admits every node).
pub fn volume_admits(volume: &PersistentVolume, node: &Node) -> bool {
    volume
        .spec
        .as_ref()
        .and_then(|s| s.node_affinity.as_ref())
        .and_then(|a| a.required.as_ref())
        .is_none_or(|selector| selects(selector, node))
}

/// A node selector's terms are ORed, each term's requirements ANDed; a term with no
/// requirement selects nothing, as upstream.
fn selects(selector: &NodeSelector, node: &Node) -> bool {
    let labels = node.labels();
    let name = node.name_any();
    selector.node_selector_terms.iter().any(|term| {
        let expressions = term.match_expressions.as_deref().unwrap_or_default();
        let fields = term.match_fields.as_deref().unwrap_or_default();
        (!expressions.is_empty() || !fields.is_empty())
            && expressions
                .iter()
                .all(|r| requirement_holds(r, labels.get(&r.key).map(String::as_str)))
            && fields
                .iter()
                .all(|r| r.key == "metadata.name" && requirement_holds(r, Some(name.as_str())))
    })
}

fn requirement_holds(requirement: &NodeSelectorRequirement, value: Option<&str>) -> bool {
    let values = requirement.values.as_deref().unwrap_or_default();
    let number = |v: &str| v.parse::<i64>().ok();
    let bound = || values.first().and_then(|v| number(v));
    match requirement.operator.as_str() {
        "In" => value.is_some_and(|v| values.iter().any(|w| w == v)),
        "NotIn" => value.is_none_or(|v| values.iter().all(|w| w != v)),
        "Exists" => value.is_some(),
        "DoesNotExist" => value.is_none(),
        "Gt" => matches!((value.and_then(number), bound()), (Some(v), Some(b)) if v > b),
        "Lt" => matches!((value.and_then(number), bound()), (Some(v), Some(b)) if v < b),
        _ => false,
    }
}

/// The caches the scheduler decides from.
struct Caches {
    nodes: Cache<Node>,
    claims: Cache<PersistentVolumeClaim>,
    volumes: Cache<PersistentVolume>,
    classes: Cache<StorageClass>,
}

impl Storage for Caches {
    fn claim(&self, namespace: &str, name: &str) -> Option<Arc<PersistentVolumeClaim>> {
        self.claims
            .store()
            .get(&ObjectRef::new(name).within(namespace))
    }

    fn volume(&self, name: &str) -> Option<Arc<PersistentVolume>> {
        self.volumes.store().get(&ObjectRef::new(name))
    }

    fn class(&self, name: &str) -> Option<Arc<StorageClass>> {
        self.classes.store().get(&ObjectRef::new(name))
    }
}

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
    let caches = Caches {
        nodes: Cache::follow(
            &mut helpers,
            Api::all(client.clone()),
            watcher::Config::default(),
            |_| {},
        ),
        // A claim or its volume changed: the pods waiting for that claim look again.
        claims: Cache::follow(
            &mut helpers,
            Api::all(client.clone()),
            watcher::Config::default(),
            wake_pods_mounting(&queue, &unscheduled, |claim: &PersistentVolumeClaim| {
                Some((claim.namespace()?, claim.name_any()))
            }),
        ),
        volumes: Cache::follow(
            &mut helpers,
            Api::all(client.clone()),
            watcher::Config::default(),
            wake_pods_mounting(&queue, &unscheduled, |volume: &PersistentVolume| {
                let claim = volume.spec.as_ref()?.claim_ref.as_ref()?;
                Some((claim.namespace.clone()?, claim.name.clone()?))
            }),
        ),
        classes: Cache::follow(
            &mut helpers,
            Api::all(client.clone()),
            watcher::Config::default(),
            |_| {},
        ),
    };
    unscheduled.ready().await;
    caches.nodes.ready().await;
    caches.claims.ready().await;
    caches.volumes.ready().await;
    caches.classes.ready().await;
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
        let message = match decide(&pod, &caches.nodes.store().state(), &caches) {
            Decision::Bind(node) => {
                first_blocked.remove(&key);
                spawn_bind(&client, &recorder, &queue, Pod::clone(&pod), node);
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
        let since = *first_blocked
            .entry(key.clone())
            .or_insert_with(std::time::Instant::now);
        if since.elapsed() >= REPORT_AFTER && reported.get(&key) != Some(&message) {
            report_unschedulable(&client, &recorder, &pod, &message).await;
            reported.insert(key.clone(), message);
        }
        // Nothing may announce the change that unblocks it (a node turning Ready): look again.
        queue.add_after(key, REPORT_AFTER);
    }
}

/// A cache callback that queues the unscheduled pods mounting the claim (namespace, name) a
/// changed object names.
fn wake_pods_mounting<K: 'static>(
    queue: &Arc<Queue<Key>>,
    unscheduled: &Cache<Pod>,
    claim_of: fn(&K) -> Option<(String, String)>,
) -> impl Fn(Change<'_, K>) + Send + 'static {
    let queue = queue.clone();
    let waiting = unscheduled.store().clone();
    move |change| {
        let object = match change {
            Change::Applied(object) | Change::Deleted(object) => object,
            Change::Relisted => return,
        };
        let Some((namespace, claim)) = claim_of(object) else {
            return;
        };
        for pod in waiting.state() {
            if pod.metadata.namespace.as_deref() == Some(namespace.as_str())
                && claim_names(&pod).any(|c| c == claim)
            {
                queue.add((namespace.clone(), pod.name_any()));
            }
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    #[derive(Default)]
    struct Objects {
        claims: Vec<Arc<PersistentVolumeClaim>>,
        volumes: Vec<Arc<PersistentVolume>>,
        classes: Vec<Arc<StorageClass>>,
    }

    impl Storage for Objects {
        fn claim(&self, namespace: &str, name: &str) -> Option<Arc<PersistentVolumeClaim>> {
            self.claims
                .iter()
                .find(|c| c.name_any() == name && c.namespace().as_deref() == Some(namespace))
                .cloned()
        }
        fn volume(&self, name: &str) -> Option<Arc<PersistentVolume>> {
            self.volumes.iter().find(|v| v.name_any() == name).cloned()
        }
        fn class(&self, name: &str) -> Option<Arc<StorageClass>> {
            self.classes.iter().find(|c| c.name_any() == name).cloned()
        }
    }

    fn from<K: serde::de::DeserializeOwned>(value: Value) -> Arc<K> {
        Arc::new(serde_json::from_value(value).expect("object"))
    }

    fn node(name: &str, ready: bool) -> Arc<Node> {
        from(json!({
            "metadata": {"name": name, "labels": {HOSTNAME_LABEL: name}},
            "status": {"conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}]},
        }))
    }

    fn pod(claims: &[&str]) -> Pod {
        let volumes: Vec<Value> = claims
            .iter()
            .map(|c| json!({"name": c, "persistentVolumeClaim": {"claimName": c}}))
            .collect();
        serde_json::from_value(json!({
            "metadata": {"name": "web-0", "namespace": "default"},
            "spec": {"containers": [{"name": "c"}], "volumes": volumes},
        }))
        .expect("pod")
    }

    fn claim(name: &str, class: &str, bound_to: Option<&str>) -> Arc<PersistentVolumeClaim> {
        from(json!({
            "metadata": {"name": name, "namespace": "default"},
            "spec": {"storageClassName": class, "volumeName": bound_to},
            "status": {"phase": if bound_to.is_some() { "Bound" } else { "Pending" }},
        }))
    }

    fn volume_on(name: &str, node: &str) -> Arc<PersistentVolume> {
        from(json!({
            "metadata": {"name": name},
            "spec": {"nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": [
                {"key": HOSTNAME_LABEL, "operator": "In", "values": [node]}]}]}}},
        }))
    }

    fn class(name: &str, mode: &str) -> Arc<StorageClass> {
        from(json!({"metadata": {"name": name}, "provisioner": "p", "volumeBindingMode": mode}))
    }

    fn preemption(nodes: usize) -> String {
        format!(
            "preemption: 0/{nodes} nodes are available: {nodes} Preemption is not helpful for scheduling."
        )
    }

    #[test]
    fn a_pod_without_claims_goes_to_the_first_ready_node_by_name() {
        let nodes = [node("b", true), node("c", false), node("a", true)];
        assert_eq!(
            decide(&pod(&[]), &nodes, &Objects::default()),
            Decision::Bind("a".into())
        );
    }

    #[test]
    fn a_pod_waits_for_its_immediate_claims_to_be_bound() {
        let nodes = [node("a", true)];
        let missing = decide(&pod(&["data"]), &nodes, &Objects::default());
        assert_eq!(
            missing,
            Decision::Wait(format!(
                "0/1 nodes are available: persistentvolumeclaim \"data\" not found. {}",
                preemption(1)
            ))
        );
        let pending = Objects {
            claims: vec![claim("data", "local-path", None)],
            classes: vec![class("local-path", "Immediate")],
            ..Objects::default()
        };
        assert_eq!(
            decide(&pod(&["data"]), &nodes, &pending),
            Decision::Wait(format!(
                "0/1 nodes are available: pod has unbound immediate PersistentVolumeClaims. {}",
                preemption(1)
            ))
        );
    }

    #[test]
    fn without_nodes_the_pod_waits_for_one() {
        assert_eq!(
            decide(&pod(&[]), &[], &Objects::default()),
            Decision::Wait("no nodes available to schedule pods".into())
        );
    }

    #[test]
    fn a_bound_volume_pinned_to_another_node_is_a_volume_node_affinity_conflict() {
        let storage = Objects {
            claims: vec![claim("data", "local-path", Some("pvc-1"))],
            volumes: vec![volume_on("pvc-1", "b")],
            ..Objects::default()
        };
        assert_eq!(
            decide(
                &pod(&["data"]),
                &[node("a", true), node("b", true)],
                &storage
            ),
            Decision::Bind("b".into())
        );
        assert_eq!(
            decide(&pod(&["data"]), &[node("a", true)], &storage),
            Decision::Wait(format!(
                "0/1 nodes are available: 1 node(s) had volume node affinity conflict. {}",
                preemption(1)
            ))
        );
    }

    #[test]
    fn the_reasons_of_every_node_are_counted_in_order() {
        let storage = Objects {
            claims: vec![claim("data", "local-path", Some("pvc-1"))],
            volumes: vec![volume_on("pvc-1", "elsewhere")],
            ..Objects::default()
        };
        let mut cordoned = Node::clone(&node("c", true));
        cordoned.spec.get_or_insert_default().unschedulable = Some(true);
        let nodes = [
            node("a", true),
            node("b", false),
            Arc::new(cordoned),
            node("d", true),
        ];
        assert_eq!(
            decide(&pod(&["data"]), &nodes, &storage),
            Decision::Wait(format!(
                "0/4 nodes are available: 1 node(s) had untolerated taint {{node.kubernetes.io/not-ready: }}, 1 node(s) were unschedulable, 2 node(s) had volume node affinity conflict. {}",
                preemption(4)
            ))
        );
    }

    #[test]
    fn a_claim_bound_to_a_volume_that_does_not_exist_blocks_every_node() {
        let storage = Objects {
            claims: vec![claim("data", "local-path", Some("pvc-gone"))],
            ..Objects::default()
        };
        let Decision::Wait(message) = decide(&pod(&["data"]), &[node("a", true)], &storage) else {
            panic!("the pod must wait");
        };
        assert!(
            message.contains(
                "1 node(s) unavailable due to one or more pvc(s) bound to non-existent pv(s)"
            ),
            "{message}"
        );
    }

    #[test]
    fn wait_for_first_consumer_claims_are_given_the_chosen_node_before_the_pod_binds() {
        let mut storage = Objects {
            claims: vec![claim("data", "late", None)],
            classes: vec![class("late", "WaitForFirstConsumer")],
            ..Objects::default()
        };
        let nodes = [node("a", true), node("b", true)];
        assert_eq!(
            decide(&pod(&["data"]), &nodes, &storage),
            Decision::SelectNode {
                node: "a".into(),
                claims: vec!["data".into()]
            }
        );
        // Told already, for node b: the pod follows its claim and nothing is written again.
        let mut told = PersistentVolumeClaim::clone(&storage.claims[0]);
        told.annotations_mut()
            .insert(SELECTED_NODE.into(), "b".into());
        storage.claims = vec![Arc::new(told)];
        assert_eq!(
            decide(&pod(&["data"]), &nodes, &storage),
            Decision::SelectNode {
                node: "b".into(),
                claims: Vec::new()
            }
        );
        let Decision::Wait(message) = decide(&pod(&["data"]), &[node("a", true)], &storage) else {
            panic!("node a is not the claim's");
        };
        assert!(
            message.contains("1 node(s) didn't find available persistent volumes to bind"),
            "{message}"
        );
    }

    #[test]
    fn node_selector_terms_are_ored_and_their_requirements_anded() {
        let node = node("a", true);
        let selector = |terms: Value| -> NodeSelector {
            serde_json::from_value(json!({"nodeSelectorTerms": terms})).expect("selector")
        };
        let term = |key: &str, operator: &str, values: &[&str]| json!({"key": key, "operator": operator, "values": values});
        let cases = [
            (
                json!([{"matchExpressions": [term(HOSTNAME_LABEL, "In", &["a"])]}]),
                true,
            ),
            (
                json!([{"matchExpressions": [term(HOSTNAME_LABEL, "NotIn", &["a"])]}]),
                false,
            ),
            (
                json!([{"matchExpressions": [term("zone", "DoesNotExist", &[])]}]),
                true,
            ),
            (
                json!([{"matchExpressions": [term(HOSTNAME_LABEL, "In", &["a"]), term("zone", "Exists", &[])]}]),
                false,
            ),
            (
                json!([{"matchExpressions": [term("zone", "Exists", &[])]}, {"matchFields": [term("metadata.name", "In", &["a"])]}]),
                true,
            ),
            (json!([{}]), false),
        ];
        for (terms, expected) in cases {
            assert_eq!(
                selects(&selector(terms.clone()), &node),
                expected,
                "{terms}"
            );
        }
    }
}
