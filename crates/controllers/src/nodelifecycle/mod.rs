//! Node lifecycle, as kube-controller-manager's node lifecycle and taint-eviction controllers:
//! a node whose Lease (or Ready heartbeat) has not moved for the grace period gets its
//! conditions set to `Unknown` (`NodeStatusUnknown`, "Kubelet stopped posting node
//! status."), a `NodeNotReady` event, and its pods Ready=False so Endpoints drop them. A node
//! that is not Ready is tainted `node.kubernetes.io/unreachable` (Unknown) or
//! `node.kubernetes.io/not-ready` (False), `NoSchedule` and `NoExecute`, until it is Ready
//! again. A pod on a node with a `NoExecute` taint it does not tolerate is deleted at once;
//! one that tolerates it for `tolerationSeconds` when that time has passed since the taint was
//! added, after a `TaintManagerEviction` event and a `DisruptionTarget` condition.
//!
//! As upstream: when every zone has no Ready node, no node gets (or keeps) a `NoExecute`
//! taint, and a small zone (up to 50 nodes) where more than two nodes and at least 55 % are
//! not ready gets no new ones. A zone's nodes get their first `NoExecute` taint one at a
//! time, at `--node-eviction-rate` (0.1 node/s; `--secondary-node-eviction-rate`, 0.01, in a
//! large, partially disrupted zone).
//!
//! [`decisions`] holds what is decided; this module reads caches and writes.

pub mod decisions;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, Pod, Taint};
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::watcher;
use kube::{Client, Resource, ResourceExt};
use serde_json::json;

pub use decisions::NodeLifecycleConfig;
use decisions::{Eviction, Heartbeat, NoExecute, Probe, Readiness};

use crate::cache::{Cache, Change, version_of};
use crate::events::Recorder;
use crate::guarded;

/// How long a pass waits for its caches to have its own last writes.
const CATCH_UP: Duration = Duration::from_secs(1);

/// The shortest time between two passes that changes wake (a burst of pod updates is one).
const SETTLE: Duration = Duration::from_millis(50);

/// What the controller remembers between passes.
#[derive(Default)]
struct Memory {
    probes: HashMap<String, Probe>,
    /// Each node's readiness as last seen, to record `NodeNotReady` once per transition.
    readiness: HashMap<String, Readiness>,
    /// When a taint without timeAdded was first seen: (node, key, effect).
    untimed: HashMap<(String, String, String), Timestamp>,
    /// Per zone, when its next node may get a first `NoExecute` taint.
    zone_next: HashMap<String, Option<Timestamp>>,
    /// Pods asked to go, by uid: not asked again while the cache catches up.
    evicted: HashSet<String>,
    /// The newest resourceVersions written, which a pass waits (bounded) for its caches to have.
    wrote_nodes: u64,
    wrote_pods: u64,
}

struct Writers {
    nodes: Api<Node>,
    client: Client,
    node_events: Recorder,
    eviction_events: Recorder,
}

/// Runs the controller with `config` until the task is aborted.
pub async fn run(client: Client, config: NodeLifecycleConfig) {
    let wake = Arc::new(tokio::sync::Notify::new());
    let mut helpers = tokio::task::JoinSet::new();
    let nodes: Cache<Node> = Cache::follow(
        &mut helpers,
        Api::all(client.clone()),
        watcher::Config::default(),
        wakes(&wake),
    );
    // Heartbeats are read on the monitor's beat; a renewal wakes nothing.
    let leases: Cache<Lease> = Cache::follow(
        &mut helpers,
        Api::namespaced(client.clone(), decisions::LEASE_NAMESPACE),
        watcher::Config::default(),
        |_| {},
    );
    let pods: Cache<Pod> = Cache::follow(
        &mut helpers,
        Api::all(client.clone()),
        watcher::Config::default(),
        wakes(&wake),
    );
    nodes.ready().await;
    leases.ready().await;
    pods.ready().await;
    let writers = Writers {
        nodes: Api::all(client.clone()),
        node_events: Recorder::new(client.clone(), "node-controller"),
        eviction_events: Recorder::new(client.clone(), "taint-eviction-controller"),
        client,
    };
    let mut memory = Memory::default();
    loop {
        let next_eviction = pass(&writers, &nodes, &leases, &pods, &config, &mut memory).await;
        let mut wait = config.monitor_period;
        if let Some(at) = next_eviction {
            let until = at.duration_since(Timestamp::now());
            let until = Duration::try_from(until).unwrap_or(Duration::ZERO);
            wait = wait.min(until);
        }
        tokio::time::sleep(SETTLE.min(wait)).await;
        let rest = wait.saturating_sub(SETTLE);
        if !rest.is_zero() {
            tokio::select! {
                () = tokio::time::sleep(rest) => {}
                () = wake.notified() => {}
            }
        }
    }
}

/// A change to an object wakes the loop.
fn wakes<K>(wake: &Arc<tokio::sync::Notify>) -> impl Fn(Change<'_, K>) + Send + 'static {
    let wake = wake.clone();
    move |change| {
        if !matches!(change, Change::Relisted) {
            wake.notify_one();
        }
    }
}

fn heartbeat(node: &Node, lease: Option<&Lease>) -> Heartbeat {
    Heartbeat {
        lease_renewed: lease
            .and_then(|l| l.spec.as_ref())
            .and_then(|s| s.renew_time.as_ref())
            .map(|t| t.0),
        status_posted: decisions::condition(node, "Ready")
            .and_then(|c| c.last_heartbeat_time.as_ref())
            .map(|t| t.0),
    }
}

/// One look at every node and the pods on them; answers when the next eviction is due.
async fn pass(
    writers: &Writers,
    nodes: &Cache<Node>,
    leases: &Cache<Lease>,
    pods: &Cache<Pod>,
    config: &NodeLifecycleConfig,
    memory: &mut Memory,
) -> Option<Timestamp> {
    nodes.caught_up(memory.wrote_nodes, CATCH_UP).await;
    pods.caught_up(memory.wrote_pods, CATCH_UP).await;
    let now = Timestamp::now();
    let leases: HashMap<String, Arc<Lease>> = leases
        .store()
        .state()
        .into_iter()
        .map(|l| (l.name_any(), l))
        .collect();
    let mut current: Vec<Node> = Vec::new();
    for node in nodes.store().state() {
        let name = node.name_any();
        let probe = decisions::observe(
            memory.probes.get(&name),
            heartbeat(&node, leases.get(&name).map(Arc::as_ref)),
            now,
        );
        let mut node = Node::clone(&node);
        if decisions::silent(&node, &probe, now, config) {
            node = mark_unknown(writers, node, now, &mut memory.wrote_nodes).await;
        }
        memory.probes.insert(name, probe);
        current.push(node);
    }
    let names: HashSet<String> = current.iter().map(ResourceExt::name_any).collect();
    memory.probes.retain(|name, _| names.contains(name));
    memory.readiness.retain(|name, _| names.contains(name));
    memory
        .untimed
        .retain(|(node, _, _), _| names.contains(node));
    let zones_now: HashSet<String> = current.iter().map(decisions::zone_of).collect();
    memory.zone_next.retain(|zone, _| zones_now.contains(zone));

    let readiness: Vec<(String, Readiness)> = current
        .iter()
        .map(|n| (decisions::zone_of(n), decisions::readiness(n)))
        .collect();
    let zones = decisions::zone_states(&readiness, config);
    let policies = decisions::no_execute_policy(&zones, config);
    let mut taints: HashMap<String, Vec<Taint>> = HashMap::new();
    let mut not_ready: HashSet<String> = HashSet::new();
    for node in &mut current {
        let name = node.name_any();
        let ready = decisions::readiness(node);
        let before = memory.readiness.insert(name.clone(), ready);
        if ready != Readiness::Ready {
            not_ready.insert(name.clone());
            if before == Some(Readiness::Ready) {
                writers.node_events.record(
                    node.object_ref(&()),
                    "Normal",
                    "NodeNotReady",
                    format!("Node {name} status is now: NodeNotReady"),
                );
            }
        }
        let zone = decisions::zone_of(node);
        let mut policy = policies.get(&zone).copied().unwrap_or(NoExecute::Add);
        // A node's first NoExecute taint waits for its zone's rate.
        if policy == NoExecute::Add
            && ready != Readiness::Ready
            && !decisions::has_our_no_execute(node)
        {
            let (state, size) = zones
                .get(&zone)
                .copied()
                .unwrap_or((decisions::ZoneState::Normal, 0));
            let rate = decisions::zone_rate(state, size, config);
            let next = memory.zone_next.entry(zone).or_default();
            if !decisions::admits(next, rate, now) {
                policy = NoExecute::Keep;
            }
        }
        if let Some(next) = decisions::taints_after(node, ready, policy, now) {
            write_taints(writers, node, next, &mut memory.wrote_nodes).await;
        }
        let node_taints = node
            .spec
            .as_ref()
            .and_then(|s| s.taints.clone())
            .unwrap_or_default();
        for taint in node_taints.iter().filter(|t| t.time_added.is_none()) {
            memory
                .untimed
                .entry((name.clone(), taint.key.clone(), taint.effect.clone()))
                .or_insert(now);
        }
        taints.insert(name, node_taints);
    }

    let pods = pods.store().state();
    let uids: HashSet<String> = pods.iter().filter_map(|p| p.uid()).collect();
    memory.evicted.retain(|uid| uids.contains(uid));
    let mut next_eviction: Option<Timestamp> = None;
    for pod in &pods {
        let Some(node) = pod.spec.as_ref().and_then(|s| s.node_name.clone()) else {
            continue;
        };
        let Some(node_taints) = taints.get(&node) else {
            continue;
        };
        if not_ready.contains(&node) && decisions::ready_not_false(pod) {
            mark_pod_not_ready(writers, pod, now, &mut memory.wrote_pods).await;
        }
        let uid = pod.uid().unwrap_or_default();
        if pod.metadata.deletion_timestamp.is_some() || memory.evicted.contains(&uid) {
            continue;
        }
        let added_at = |taint: &Taint| {
            memory
                .untimed
                .get(&(node.clone(), taint.key.clone(), taint.effect.clone()))
                .copied()
                .unwrap_or(now)
        };
        match decisions::eviction(pod, node_taints, added_at, now) {
            Eviction::Never => {}
            Eviction::At(at) => next_eviction = Some(next_eviction.map_or(at, |n| n.min(at))),
            Eviction::Now => {
                if evict(writers, pod, &mut memory.wrote_pods).await {
                    memory.evicted.insert(uid);
                }
            }
        }
    }
    next_eviction
}

/// Writes the silent node's conditions as `Unknown` (only if it is still as seen); answers the
/// node as it is now.
async fn mark_unknown(writers: &Writers, node: Node, now: Timestamp, wrote: &mut u64) -> Node {
    let conditions = decisions::unknown_conditions(&node, now);
    if conditions.is_empty() {
        return node;
    }
    let name = node.name_any();
    let patch = json!({
        "metadata": {"resourceVersion": node.resource_version()},
        "status": {"conditions": conditions},
    });
    match writers
        .nodes
        .patch_status(&name, &PatchParams::default(), &Patch::Strategic(&patch))
        .await
    {
        Ok(written) => {
            tracing::info!(node = %name, "the node stopped posting its status; it is Unknown");
            *wrote = (*wrote).max(version_of(&written));
            written
        }
        Err(error) => {
            // Changed meanwhile (perhaps a heartbeat): the next pass looks again.
            tracing::debug!(%error, node = %name, "could not mark the node Unknown");
            node
        }
    }
}

/// Writes the node's taints (only if it is still as seen), and keeps `node` up to date.
async fn write_taints(writers: &Writers, node: &mut Node, taints: Vec<Taint>, wrote: &mut u64) {
    let name = node.name_any();
    match crate::taints::write(&writers.nodes, node, &taints).await {
        Ok(written) => {
            let keys: Vec<String> = taints
                .iter()
                .map(|t| format!("{}:{}", t.key, t.effect))
                .collect();
            tracing::info!(node = %name, taints = ?keys, "updated the node's taints");
            *wrote = (*wrote).max(version_of(&written));
            *node = written;
        }
        Err(error) => {
            tracing::debug!(%error, node = %name, "could not update the node's taints");
        }
    }
}

/// Upstream's MarkPodsNotReady, for one pod: Ready=False, and a `NodeNotReady` event.
async fn mark_pod_not_ready(writers: &Writers, pod: &Pod, now: Timestamp, wrote: &mut u64) {
    let pods: Api<Pod> =
        Api::namespaced(writers.client.clone(), &pod.namespace().unwrap_or_default());
    let patch = json!({"status": {"conditions": [{
        "type": "Ready", "status": "False",
        "lastTransitionTime": petset_api::time::format(now)}]}});
    match pods
        .patch_status(
            &pod.name_any(),
            &PatchParams::default(),
            &Patch::Strategic(&patch),
        )
        .await
    {
        Ok(written) => {
            *wrote = (*wrote).max(version_of(&written));
            writers.node_events.record(
                pod.object_ref(&()),
                "Warning",
                "NodeNotReady",
                "Node is not ready".to_string(),
            );
        }
        Err(error) => {
            tracing::debug!(%error, pod = %pod.name_any(), "could not mark the pod not ready")
        }
    }
}

/// Deletes a pod for a `NoExecute` taint, as upstream's taint-eviction controller: the event,
/// the `DisruptionTarget` condition, then a delete of exactly this pod. Answers whether the
/// pod is gone or going.
async fn evict(writers: &Writers, pod: &Pod, wrote: &mut u64) -> bool {
    let namespace = pod.namespace().unwrap_or_default();
    let name = pod.name_any();
    let pods: Api<Pod> = Api::namespaced(writers.client.clone(), &namespace);
    writers.eviction_events.record(
        pod.object_ref(&()),
        "Normal",
        "TaintManagerEviction",
        format!("Marking for deletion Pod {namespace}/{name}"),
    );
    let written = crate::disruption::mark(
        &pods,
        pod,
        decisions::DISRUPTION_REASON,
        decisions::DISRUPTION_MESSAGE,
    )
    .await;
    match written {
        Ok(None) => {}
        Ok(Some(written)) => *wrote = (*wrote).max(version_of(&written)),
        Err(error) => {
            tracing::debug!(%error, pod = %name, "could not add the DisruptionTarget condition")
        }
    }
    match guarded::delete(&pods, &name, &pod.uid().unwrap_or_default()).await {
        Ok(deleted) => {
            if let guarded::Deleted::Done(Some(answer)) = deleted {
                *wrote = (*wrote).max(version_of(&answer));
            }
            tracing::info!(pod = %format!("{namespace}/{name}"), "evicted for a NoExecute taint");
            true
        }
        Err(error) => {
            tracing::warn!(%error, pod = %name, "could not evict the pod");
            false
        }
    }
}
