//! Scoring the feasible nodes, with upstream's default score plugins, their normalizations to
//! 0..100 and their weights: TaintToleration (3, PreferNoSchedule taints), NodeAffinity (2,
//! preferred terms), NodeResourcesFit (1, LeastAllocated over CPU and memory),
//! NodeResourcesBalancedAllocation (1), PodTopologySpread (2, the system default constraints)
//! and InterPodAffinity (2, preferred terms both ways). The highest total wins; upstream breaks
//! ties at random, petset takes the first node by name so that a decision can be replayed.

use std::collections::HashMap;

use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;
use petset_api::selector::{LabelSelector, Requirement};

use super::HOSTNAME_LABEL;
use super::affinity::preference_weights;
use super::filters::{intolerable_preferences, preferred_node_affinity, selects};
use super::snapshot::{NodeInfo, Resources, Snapshot};

const MAX_SCORE: i64 = 100;
const ZONE_LABEL: &str = "topology.kubernetes.io/zone";

/// Upstream's `PodTopologySpread` system defaults: spread over hosts (skew 3) and zones (5),
/// both `ScheduleAnyway`, so they only score.
const DEFAULT_SPREAD: [(&str, i64); 2] = [(HOSTNAME_LABEL, 3), (ZONE_LABEL, 5)];

/// What scoring needs besides the nodes.
pub struct ScoreInput<'a> {
    pub pod: &'a Pod,
    pub snapshot: &'a Snapshot,
    pub requests: &'a Resources,
    pub non_zero_requests: &'a Resources,
    /// The pods the pod is spread among (upstream's `DefaultSelector`: its Services' and its
    /// StatefulSet's selectors); `None` when it belongs to none.
    pub spread: Option<&'a LabelSelector>,
}

/// The best of `feasible` (at least one), and each node's total.
pub fn best<'a>(input: &ScoreInput<'_>, feasible: &[&'a NodeInfo]) -> (&'a NodeInfo, Vec<i64>) {
    let mut totals = vec![0i64; feasible.len()];
    let mut add = |weight: i64, scores: Vec<i64>| {
        for (total, score) in totals.iter_mut().zip(scores) {
            *total += weight * score;
        }
    };
    let pod = input.pod;
    add(
        3,
        normalize(
            feasible
                .iter()
                .map(|n| intolerable_preferences(pod, n))
                .collect(),
            true,
        ),
    );
    add(
        2,
        normalize(
            feasible
                .iter()
                .map(|n| preferred_node_affinity(pod, n))
                .collect(),
            false,
        ),
    );
    add(
        1,
        feasible
            .iter()
            .map(|n| least_allocated(input.non_zero_requests, n))
            .collect(),
    );
    if input.requests.milli_cpu != 0 || input.requests.memory != 0 {
        add(
            1,
            feasible
                .iter()
                .map(|n| balanced(input.requests, n))
                .collect(),
        );
    }
    if let Some(selector) = input.spread {
        add(2, spread(input, selector, feasible));
    }
    add(2, inter_pod_affinity(input, feasible));
    let mut best = 0;
    for (at, total) in totals.iter().enumerate() {
        if *total > totals[best] {
            best = at;
        }
    }
    (feasible[best], totals)
}

/// Upstream's `DefaultNormalizeScore`: scaled to 0..100 by the highest, or reversed.
fn normalize(mut scores: Vec<i64>, reverse: bool) -> Vec<i64> {
    let highest = scores.iter().copied().max().unwrap_or(0);
    for score in &mut scores {
        let scaled = if highest == 0 {
            0
        } else {
            MAX_SCORE * *score / highest
        };
        *score = if reverse { MAX_SCORE - scaled } else { scaled };
    }
    scores
}

/// The CPU and memory the node would have in use with the pod, and what it has.
fn usage(pod: &Resources, requested: &Resources, node: &NodeInfo) -> [(i64, i64); 2] {
    [
        (
            requested.milli_cpu + pod.milli_cpu,
            node.allocatable.milli_cpu,
        ),
        (requested.memory + pod.memory, node.allocatable.memory),
    ]
}

/// LeastAllocated: the share of CPU and memory left free, averaged.
fn least_allocated(pod: &Resources, node: &NodeInfo) -> i64 {
    let scored: Vec<i64> = usage(pod, &node.non_zero_requested, node)
        .into_iter()
        .filter(|(_, allocatable)| *allocatable != 0)
        .map(|(requested, allocatable)| {
            if requested > allocatable {
                0
            } else {
                (allocatable - requested) * MAX_SCORE / allocatable
            }
        })
        .collect();
    if scored.is_empty() {
        return 0;
    }
    scored.iter().sum::<i64>() / scored.len() as i64
}

/// BalancedAllocation: CPU and memory used in like shares score higher.
fn balanced(pod: &Resources, node: &NodeInfo) -> i64 {
    let fractions: Vec<f64> = usage(pod, &node.requested, node)
        .into_iter()
        .filter(|(_, allocatable)| *allocatable != 0)
        .map(|(requested, allocatable)| (requested as f64 / allocatable as f64).min(1.0))
        .collect();
    let deviation = match fractions.as_slice() {
        [a, b] => ((a - b) / 2.0).abs(),
        _ => 0.0,
    };
    ((1.0 - deviation) * MAX_SCORE as f64) as i64
}

/// The `label=value` requirements of a selector, for the label index.
fn equalities(selector: &LabelSelector) -> impl Iterator<Item = (&str, &str)> {
    selector.requirements.iter().filter_map(|r| match r {
        Requirement::Equals(k, v) => Some((k.as_str(), v.as_str())),
        _ => None,
    })
}

/// PodTopologySpread with the system default constraints: fewer pods of the same group on a
/// node (and in its zone) score higher.
fn spread(input: &ScoreInput<'_>, selector: &LabelSelector, feasible: &[&NodeInfo]) -> Vec<i64> {
    let namespace = input.pod.namespace().unwrap_or_default();
    let snapshot = input.snapshot;
    let mut per_node: HashMap<&str, i64> = HashMap::new();
    for (_, placed) in snapshot.candidates(&namespace, equalities(selector)) {
        if !placed.terminating && selector.matches(Some(&placed.labels)) {
            *per_node.entry(placed.node.as_str()).or_default() += 1;
        }
    }
    let zones: std::collections::HashSet<&String> = feasible
        .iter()
        .filter_map(|n| n.labels.get(ZONE_LABEL))
        .collect();
    // Nodes the pod could never go to (its node affinity) do not count for a zone.
    let required = input
        .pod
        .spec
        .as_ref()
        .and_then(|s| s.affinity.as_ref())
        .and_then(|a| a.node_affinity.as_ref())
        .and_then(|a| {
            a.required_during_scheduling_ignored_during_execution
                .as_ref()
        });
    let node_selector = input
        .pod
        .spec
        .as_ref()
        .and_then(|s| s.node_selector.as_ref());
    let mut per_zone: HashMap<&String, i64> = HashMap::new();
    for node in snapshot.nodes.values() {
        let Some(zone) = node.labels.get(ZONE_LABEL).filter(|z| zones.contains(z)) else {
            continue;
        };
        let admitted = required.is_none_or(|r| selects(r, node))
            && node_selector
                .into_iter()
                .flatten()
                .all(|(k, v)| node.labels.get(k) == Some(v));
        if admitted {
            *per_zone.entry(zone).or_default() +=
                per_node.get(node.name.as_str()).copied().unwrap_or(0);
        }
    }
    let weight = |size: usize| ((size + 2) as f64).ln();
    let scores: Vec<i64> = feasible
        .iter()
        .map(|node| {
            let mut score = 0.0;
            for (key, max_skew) in DEFAULT_SPREAD {
                let Some(value) = node.labels.get(key) else {
                    continue;
                };
                let (count, size) = if key == HOSTNAME_LABEL {
                    (
                        per_node.get(node.name.as_str()).copied().unwrap_or(0),
                        feasible.len(),
                    )
                } else {
                    (per_zone.get(value).copied().unwrap_or(0), zones.len())
                };
                score += count as f64 * weight(size) + (max_skew - 1) as f64;
            }
            score.round() as i64
        })
        .collect();
    let lowest = scores.iter().copied().min().unwrap_or(0);
    let highest = scores.iter().copied().max().unwrap_or(0);
    scores
        .into_iter()
        .map(|s| {
            if highest == 0 {
                MAX_SCORE
            } else {
                MAX_SCORE * (highest + lowest - s) / highest
            }
        })
        .collect()
}

/// InterPodAffinity: the preferred weights of each node's topology, scaled between the lowest
/// and the highest.
fn inter_pod_affinity(input: &ScoreInput<'_>, feasible: &[&NodeInfo]) -> Vec<i64> {
    let weights = preference_weights(input.pod, input.snapshot);
    if weights.is_empty() {
        return vec![0; feasible.len()];
    }
    let raw: Vec<i64> = feasible
        .iter()
        .map(|node| {
            weights
                .iter()
                .filter(|((key, value), _)| node.labels.get(key) == Some(value))
                .map(|(_, weight)| weight)
                .sum()
        })
        .collect();
    let lowest = raw.iter().copied().min().unwrap_or(0);
    let highest = raw.iter().copied().max().unwrap_or(0);
    raw.into_iter()
        .map(|s| {
            if highest > lowest {
                MAX_SCORE * (s - lowest) / (highest - lowest)
            } else {
                0
            }
        })
        .collect()
}
