//! Scheduling for many nodes: a pod without a node is bound to the best feasible node through
//! the `binding` subresource, as kube-scheduler does. `decide` holds every rule as a pure
//! function of the pod, a [`Snapshot`] of the nodes and the pods already placed on them, and
//! the objects it looks up (claims, volumes, classes, Services, StatefulSets); `run` keeps the
//! snapshot current from watches and writes bindings, the claims' `selected-node`, and the
//! pod's `PodScheduled` condition.
//!
//! The filters are upstream's default ones, in upstream's order, and a node reports the first
//! that rejects it: NodeUnschedulable, TaintToleration (a node not Ready counts as tainted
//! `not-ready` or `unreachable`, as the node lifecycle controller taints it), NodeAffinity
//! (`nodeSelector` and required node affinity), NodePorts, NodeResourcesFit, VolumeBinding
//! and InterPodAffinity. Among the feasible nodes the scores of `score.rs` choose.

mod affinity;
pub(crate) mod filters;
mod run;
mod score;
pub mod snapshot;
mod volumes;

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim, Pod, Service};
use k8s_openapi::api::storage::v1::StorageClass;
use kube::ResourceExt;
use petset_api::selector::{LabelSelector, Requirement};

pub use run::run;
pub use snapshot::Snapshot;

use filters::Rejection;
use volumes::{PodClaim, selected_node};

/// The claim annotation that tells a provisioner which node a `WaitForFirstConsumer` volume
/// is for.
pub const SELECTED_NODE: &str = "volume.kubernetes.io/selected-node";
/// The node label local volumes are pinned by.
pub const HOSTNAME_LABEL: &str = "kubernetes.io/hostname";

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

/// The objects a decision looks up by name.
pub trait ClusterObjects {
    fn claim(&self, namespace: &str, name: &str) -> Option<Arc<PersistentVolumeClaim>>;
    fn volume(&self, name: &str) -> Option<Arc<PersistentVolume>>;
    fn class(&self, name: &str) -> Option<Arc<StorageClass>>;
    /// The Services of a namespace (a pod is spread among the pods of its Services).
    fn services(&self, namespace: &str) -> Vec<Arc<Service>>;
    fn stateful_set(&self, namespace: &str, name: &str) -> Option<Arc<StatefulSet>>;
}

/// Where `pod` goes, given the snapshot and the objects it mounts or belongs to.
pub fn decide(pod: &Pod, snapshot: &Snapshot, objects: &impl ClusterObjects) -> Decision {
    let node_count = snapshot.nodes.len();
    let claims = match volumes::pod_claims(pod, objects) {
        Ok(claims) => claims,
        Err(reason) if node_count == 0 => return Decision::Wait(reason),
        // A PreFilter rejection holds for every node alike, and preemption cannot help it.
        Err(reason) => {
            let preemption = format!("{node_count} {NOT_HELPFUL}");
            return Decision::Wait(unavailable(pod, node_count, &reason, &preemption));
        }
    };
    if node_count == 0 {
        return Decision::Wait("no nodes available to schedule pods".into());
    }
    let (requests, non_zero_requests) = snapshot::requests_of(pod);
    let ports = snapshot::host_ports(pod);
    let pod_affinity = affinity::AffinityCheck::new(pod, snapshot);
    let mut feasible = Vec::new();
    let mut rejections = Vec::new();
    for node in snapshot.nodes.values() {
        let verdict = filters::node_unschedulable(pod, node)
            .and_then(|()| filters::taint_toleration(pod, node))
            .and_then(|()| filters::node_affinity(pod, node))
            .and_then(|()| filters::node_ports(&ports, node))
            .and_then(|()| filters::resources_fit(&requests, node))
            .and_then(|()| volumes::volume_binding(node, &claims, objects))
            .and_then(|()| pod_affinity.filter(node));
        match verdict {
            Ok(()) => feasible.push(node),
            Err(rejection) => rejections.push(rejection),
        }
    }
    if feasible.is_empty() {
        return Decision::Wait(fit_error(pod, node_count, &rejections));
    }
    let spread = spread_selector(pod, objects);
    let input = score::ScoreInput {
        pod,
        snapshot,
        requests: &requests,
        non_zero_requests: &non_zero_requests,
        spread: spread.as_ref(),
    };
    let (best, _) = score::best(&input, &feasible);
    let node = best.name.clone();
    let delayed: Vec<&PersistentVolumeClaim> =
        claims.iter().filter_map(PodClaim::delayed).collect();
    if delayed.is_empty() {
        return Decision::Bind(node);
    }
    let claims = delayed
        .into_iter()
        .filter(|c| selected_node(c).is_none())
        .map(|c| c.name_any())
        .collect();
    Decision::SelectNode { node, claims }
}

const NOT_HELPFUL: &str = "Preemption is not helpful for scheduling";
const NO_VICTIMS: &str = "No preemption victims found for incoming pod";

/// Counts of reasons, `"<count> <reason>"` joined and sorted as text, as upstream's
/// `FitError` sorts its histogram.
fn histogram<'a>(reasons: impl Iterator<Item = &'a str>) -> String {
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for reason in reasons {
        *counts.entry(reason).or_default() += 1;
    }
    let mut lines: Vec<String> = counts
        .iter()
        .map(|(reason, count)| format!("{count} {reason}"))
        .collect();
    lines.sort();
    lines.join(", ")
}

/// kube-scheduler's FitError message when no node passes the filters. petset never preempts:
/// nodes whose rejection preemption could lift (resources, ports, anti-affinity) say, as
/// upstream's DefaultPreemption with no lower-priority pod to evict, that there is no victim.
fn fit_error(pod: &Pod, node_count: usize, rejections: &[Rejection]) -> String {
    let reasons = histogram(
        rejections
            .iter()
            .flat_map(|r| r.reasons.iter().map(String::as_str)),
    );
    let preemption = histogram(rejections.iter().map(|r| {
        if r.resolvable {
            NO_VICTIMS
        } else {
            NOT_HELPFUL
        }
    }));
    unavailable(pod, node_count, &reasons, &preemption)
}

/// `0/N nodes are available: <reasons>.` and the PostFilter (preemption) part.
fn unavailable(pod: &Pod, node_count: usize, reasons: &str, preemption: &str) -> String {
    let never = pod
        .spec
        .as_ref()
        .and_then(|s| s.preemption_policy.as_deref())
        == Some("Never");
    let preemption = if never {
        "not eligible due to preemptionPolicy=Never.".to_string()
    } else {
        format!("0/{node_count} nodes are available: {preemption}.")
    };
    format!("0/{node_count} nodes are available: {reasons}. preemption: {preemption}")
}

/// The pods `pod` is spread among, as upstream's `DefaultSelector`: the selectors of the
/// Services that select it and of the StatefulSet that controls it, together; `None` when
/// there are none.
fn spread_selector(pod: &Pod, objects: &impl ClusterObjects) -> Option<LabelSelector> {
    let namespace = pod.namespace().unwrap_or_default();
    let labels = pod.labels();
    let mut merged: BTreeMap<String, String> = BTreeMap::new();
    for service in objects.services(&namespace) {
        let Some(selector) = service.spec.as_ref().and_then(|s| s.selector.as_ref()) else {
            continue;
        };
        if !selector.is_empty() && selector.iter().all(|(k, v)| labels.get(k) == Some(v)) {
            merged.extend(selector.iter().map(|(k, v)| (k.clone(), v.clone())));
        }
    }
    let mut requirements: Vec<Requirement> = merged
        .into_iter()
        .map(|(k, v)| Requirement::Equals(k, v))
        .collect();
    let owner = pod.owner_references().iter().find(|o| {
        o.controller == Some(true) && o.kind == "StatefulSet" && o.api_version == "apps/v1"
    });
    if let Some(set) = owner.and_then(|o| objects.stateful_set(&namespace, &o.name)) {
        let selector = serde_json::to_value(set.spec.as_ref().map(|s| &s.selector))
            .ok()
            .and_then(|v| LabelSelector::from_structured(&v).ok());
        requirements.extend(selector.into_iter().flat_map(|s| s.requirements));
    }
    (!requirements.is_empty()).then_some(LabelSelector { requirements })
}

#[cfg(test)]
mod tests;
