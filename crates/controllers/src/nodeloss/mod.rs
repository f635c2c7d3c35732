//! Fenced failover of a lost node's StatefulSet pods, beyond upstream: upstream leaves such a
//! pod `Terminating` until its node confirms that its processes stopped, because it cannot know
//! that they did (the at-most-one rule). A petset node can give that proof ahead of time: one
//! whose Node carries `petset.dev/fence-deadline-seconds: "S"` kills every container once it
//! has not renewed its Lease (`kube-node-lease/<node>`) for S seconds, even when its agent
//! process is dead (a watchdog beside it does the kills then).
//!
//! So once this controller has seen the Lease unchanged for S seconds plus a stop allowance
//! (10 s), on its own monotonic clock, the node is *lost and fenced*: the node counted its
//! deadline from when it sent its last renewal that succeeded, no later than this controller
//! saw it, and its kills have had the allowance to be done. After confirming with the API that
//! the Lease is still as seen, it taints the node `petset.dev/fenced:NoSchedule` (so the
//! replacements go elsewhere; the node lifecycle's `unreachable` taint comes only at 50 s) and,
//! for each pod of a StatefulSet bound to it:
//! - with no claim bound to a local volume on that node: a `NodeLostFailover` event, the
//!   `DisruptionTarget` condition, and a delete at once (grace 0, for this pod's uid only); its
//!   StatefulSet makes it again on another node;
//! - with such a claim and the StatefulSet annotated `petset.dev/on-node-loss: recreate-claim`:
//!   the claim is deleted too (events on the pod, the set and the claim), so the pod comes back
//!   with a new, empty claim that binds on a live node;
//! - with such a claim and no such annotation: the pod waits for its node, with one
//!   `NodeLostWaitingForVolume` event on it and one on its set saying how to opt in.
//!
//! A pod made again whose claim is still local to a lost node (deleted by hand, say) gets that
//! claim replaced too, when its set opted in. A node whose Lease changes again is back: it is
//! untainted and nothing more of it is deleted. Nodes without the annotation, and pods not of a
//! StatefulSet, are left to the node lifecycle controller, as upstream. While no node is left
//! to fail over to, nothing is done (the servers are likelier cut off than every node lost).
//!
//! [`decisions`], [`claims`] and [`texts`] decide and word; this module reads caches and
//! confirms, [`act`] writes.

mod act;
pub mod claims;
pub mod decisions;
pub mod texts;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use jiff::Timestamp;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, PersistentVolume, PersistentVolumeClaim, Pod};
use kube::runtime::watcher;
use kube::{Client, ResourceExt};

pub use decisions::{
    FENCE_DEADLINE_ANNOTATION, FENCED_TAINT, NodeLossConfig, ON_NODE_LOSS_ANNOTATION,
    RECREATE_CLAIM, STOP_ALLOWANCE,
};
use decisions::{Failover, Fence, Loss, Sighting};

use crate::cache::{Cache, Cached, Change};
use crate::nodelifecycle::decisions::LEASE_NAMESPACE;

/// How long a pass waits for its caches to have its own last writes.
const CATCH_UP: Duration = Duration::from_secs(1);

/// Each node's Lease as this controller saw it, by node name; written by the Lease watch.
type Sightings = Arc<Mutex<HashMap<String, Sighting>>>;

/// What the controller remembers between passes.
#[derive(Default)]
struct Memory {
    /// Nodes confirmed lost (each gets one `NodeLostFenced` event per loss).
    lost: HashSet<String>,
    /// Pods deleted, by uid: not deleted again while the cache catches up.
    deleted: HashSet<String>,
    /// Claims deleted, by uid.
    replaced: HashSet<String>,
    /// Pods told they wait for their node, by uid, with that node: told once per loss.
    warned: HashMap<String, String>,
    /// Nodes whose fence annotation was reported unreadable.
    invalid: HashSet<String>,
    /// Whether the last pass held back for want of a node to fail over to (logged once).
    held: bool,
    wrote_nodes: u64,
    wrote_pods: u64,
}

struct Caches {
    nodes: Cache<Node>,
    pods: Cache<Pod>,
    claims: Cache<PersistentVolumeClaim>,
    volumes: Cache<PersistentVolume>,
    sets: Cache<StatefulSet>,
    leases: Cache<Lease>,
}

impl claims::Storage for Caches {
    fn claim(&self, namespace: &str, name: &str) -> Option<Arc<PersistentVolumeClaim>> {
        self.claims.get(namespace, name)
    }

    fn volume(&self, name: &str) -> Option<Arc<PersistentVolume>> {
        self.volumes.get_cluster_scoped(name)
    }
}

/// Runs the controller with `config` until the task is aborted.
pub async fn run(client: Client, config: NodeLossConfig) {
    let sightings: Sightings = Arc::default();
    let mut helpers = tokio::task::JoinSet::new();
    let caches = Caches {
        nodes: follow(&mut helpers, &client),
        pods: follow(&mut helpers, &client),
        claims: follow(&mut helpers, &client),
        volumes: follow(&mut helpers, &client),
        sets: follow(&mut helpers, &client),
        leases: Cache::follow(
            &mut helpers,
            kube::Api::namespaced(client.clone(), LEASE_NAMESPACE),
            watcher::Config::default(),
            sight(sightings.clone()),
        ),
    };
    caches.nodes.ready().await;
    caches.pods.ready().await;
    caches.claims.ready().await;
    caches.volumes.ready().await;
    caches.sets.ready().await;
    caches.leases.ready().await;
    let writers = act::Writers::new(client);
    let mut memory = Memory::default();
    loop {
        pass(&writers, &caches, &sightings, &config, &mut memory).await;
        // Loss is a matter of time passing, not of a change to wake on.
        tokio::time::sleep(config.check_period).await;
    }
}

/// A cache of every `K`; the passes read it on their own beat.
fn follow<K: Cached>(helpers: &mut tokio::task::JoinSet<()>, client: &Client) -> Cache<K> {
    Cache::follow(
        helpers,
        kube::Api::all(client.clone()),
        watcher::Config::default(),
        |_| {},
    )
}

fn renew_time(lease: &Lease) -> Option<Timestamp> {
    lease.spec.as_ref()?.renew_time.as_ref().map(|t| t.0)
}

/// Records when each Lease change was seen, as the watch delivers it: every change counts,
/// however soon the next one follows, and a gap in the watch restarts every clock.
fn sight(sightings: Sightings) -> impl Fn(Change<'_, Lease>) + Send + 'static {
    move |change| {
        let now = Instant::now();
        let mut seen = sightings.lock().unwrap_or_else(|p| p.into_inner());
        match change {
            Change::Applied(lease) => {
                let name = lease.name_any();
                let next = decisions::observe(seen.get(&name), renew_time(lease), now);
                seen.insert(name, next);
            }
            Change::Deleted(lease) => {
                let name = lease.name_any();
                let next = decisions::observe(seen.get(&name), None, now);
                seen.insert(name, next);
            }
            Change::Relisted => {
                for sighting in seen.values_mut() {
                    *sighting = decisions::restart_clock(sighting, now);
                }
            }
        }
    }
}

/// The node's sighting; a node whose Lease the watch has not shown yet is first seen now.
fn sighting_of(sightings: &Sightings, node: &str, leases: &Cache<Lease>, now: Instant) -> Sighting {
    let mut seen = sightings.lock().unwrap_or_else(|p| p.into_inner());
    seen.entry(node.to_string())
        .or_insert_with(|| {
            let cached = leases.get(LEASE_NAMESPACE, node);
            decisions::observe(None, cached.as_deref().and_then(renew_time), now)
        })
        .clone()
}

/// What one pass found to do on one lost node.
type Work = BTreeMap<String, Vec<(Arc<Pod>, Failover)>>;

/// One look at every node and the pods of the lost ones.
async fn pass(
    writers: &act::Writers,
    caches: &Caches,
    sightings: &Sightings,
    config: &NodeLossConfig,
    memory: &mut Memory,
) {
    caches.nodes.caught_up(memory.wrote_nodes, CATCH_UP).await;
    caches.pods.caught_up(memory.wrote_pods, CATCH_UP).await;
    let now = Instant::now();
    let nodes = caches.nodes.store().state();
    let mut lost: HashMap<String, Loss> = HashMap::new();
    for node in &nodes {
        let name = node.name_any();
        let seen = sighting_of(sightings, &name, &caches.leases, now);
        let fence = decisions::fence_of(node);
        if let Fence::Invalid(value) = &fence {
            // Told once; told again should it become unreadable after being readable.
            if memory.invalid.insert(name.clone()) {
                writers.invalid_deadline(node, value);
            }
        } else {
            memory.invalid.remove(&name);
        }
        let deadline = match fence {
            Fence::Deadline(deadline) => Some(deadline),
            Fence::None | Fence::Invalid(_) => None,
        };
        match deadline {
            Some(deadline) if decisions::lost(&seen, deadline, config, now) => {
                let loss = Loss {
                    node: name.clone(),
                    hostname: decisions::hostname_of(node),
                    silent_for: decisions::silent_for(&seen, now),
                    deadline,
                    renewed: seen.renewed,
                };
                lost.insert(name, loss);
            }
            _ => {
                if memory.lost.remove(&name) {
                    memory.warned.retain(|_, on| *on != name);
                    tracing::info!(node = %name, "the node is no longer lost");
                }
                // Untainted on proof of life, or once the node no longer says it is fenced: a
                // node seen only since this controller started may still be the dead one.
                if seen.moved || deadline.is_none() {
                    writers.untaint(node, &mut memory.wrote_nodes).await;
                }
            }
        }
    }
    forget_the_gone(caches, sightings, &nodes, memory);
    if lost.is_empty() {
        return;
    }
    if !decisions::anywhere_to_go(nodes.iter().map(Arc::as_ref), &lost) {
        if !memory.held {
            tracing::warn!(
                lost = ?lost.keys().collect::<Vec<_>>(),
                "fenced nodes are lost but no Ready node is left to fail over to; waiting"
            );
        }
        memory.held = true;
        return;
    }
    memory.held = false;
    let mut work = find_work(caches, &lost, memory);
    for (name, loss) in &lost {
        let Some(node) = nodes.iter().find(|n| n.name_any() == *name) else {
            continue;
        };
        let pods = work.remove(name).unwrap_or_default();
        let tainted = decisions::has_fenced_taint(node);
        if pods.is_empty() && tainted && memory.lost.contains(name) {
            continue;
        }
        let mut acting = act::Acting::new(writers, loss.clone(), sightings.clone(), config);
        let Some(fresh) = acting.confirm().await else {
            continue;
        };
        if memory.lost.insert(name.clone()) {
            writers.node_lost(&fresh, acting.loss());
        }
        if !tainted && !writers.taint(&fresh, &mut memory.wrote_nodes).await {
            // Nothing is deleted while the replacements could be placed back on the node.
            continue;
        }
        for (pod, failover) in pods {
            acting.carry_out(&pod, failover, memory).await;
        }
    }
}

/// What to do with each pod, by the lost node it concerns.
fn find_work(caches: &Caches, lost: &HashMap<String, Loss>, memory: &Memory) -> Work {
    let lost_hosts: HashMap<String, String> = lost
        .values()
        .map(|l| (l.hostname.clone(), l.node.clone()))
        .collect();
    let mut work = Work::new();
    for pod in caches.pods.store().state() {
        let node = pod
            .spec
            .as_ref()
            .and_then(|s| s.node_name.clone())
            .filter(|n| !n.is_empty());
        let on_lost_node = node.as_ref().is_some_and(|n| lost.contains_key(n));
        // A pod on a live node is no business of this controller's: skip the lookups.
        if node.is_some() && !on_lost_node {
            continue;
        }
        let Some(set_ref) = decisions::controlling_set(&pod) else {
            continue;
        };
        let uid = pod.uid().unwrap_or_default();
        if memory.deleted.contains(&uid) {
            continue;
        }
        let namespace = pod.namespace().unwrap_or_default();
        let set = caches
            .sets
            .get(&namespace, &set_ref.name)
            .filter(|s| s.uid().as_deref() == Some(set_ref.uid.as_str()));
        let mut local = claims::local_claims(&pod, caches, &lost_hosts);
        local.retain(|c| !memory.replaced.contains(&c.uid));
        if let Some(node) = &node {
            // A pod's data can only be on the node it runs on.
            local.retain(|c| c.node == *node);
        }
        let policy = decisions::on_node_loss(set.as_deref());
        match decisions::failover(&pod, on_lost_node, local, policy) {
            Failover::Leave => {}
            Failover::Wait(_) if memory.warned.contains_key(&uid) => {}
            Failover::ReplaceClaims(local) => {
                // One item per lost node, each confirmed on its own.
                let mut by_node: BTreeMap<String, Vec<claims::LocalClaim>> = BTreeMap::new();
                for claim in local {
                    by_node.entry(claim.node.clone()).or_default().push(claim);
                }
                for (lost_node, local) in by_node {
                    work.entry(lost_node)
                        .or_default()
                        .push((pod.clone(), Failover::ReplaceClaims(local)));
                }
            }
            failover => {
                if let Some(node) = node {
                    work.entry(node).or_default().push((pod.clone(), failover));
                }
            }
        }
    }
    work
}

/// Drops what is remembered of objects that are gone.
fn forget_the_gone(
    caches: &Caches,
    sightings: &Sightings,
    nodes: &[Arc<Node>],
    memory: &mut Memory,
) {
    let names: HashSet<String> = nodes.iter().map(|n| n.name_any()).collect();
    let leases: HashSet<String> = caches
        .leases
        .store()
        .state()
        .iter()
        .map(|l| l.name_any())
        .collect();
    sightings
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .retain(|name, _| names.contains(name) || leases.contains(name));
    memory.lost.retain(|name| names.contains(name));
    memory.invalid.retain(|name| names.contains(name));
    let pods = caches.pods.uids();
    memory.deleted.retain(|uid| pods.contains(uid));
    memory.warned.retain(|uid, _| pods.contains(uid));
    let claims = caches.claims.uids();
    memory.replaced.retain(|uid| claims.contains(uid));
}
