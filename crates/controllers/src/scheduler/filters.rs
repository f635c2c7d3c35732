//! The filters that read only the pod and one node, each upstream's plugin of that name with
//! its reason texts: NodeUnschedulable, TaintToleration, NodeAffinity, NodePorts and
//! NodeResourcesFit.

use k8s_openapi::api::core::v1::{
    NodeSelector, NodeSelectorRequirement, NodeSelectorTerm, Pod, Taint, Toleration,
};

use super::snapshot::{HostPort, NodeInfo, Resources};

/// Why a node cannot take a pod, and whether preempting other pods could change that
/// (upstream's `Unschedulable`, against `UnschedulableAndUnresolvable`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    pub reasons: Vec<String>,
    pub resolvable: bool,
}

impl Rejection {
    pub fn unresolvable(reason: impl Into<String>) -> Self {
        Self {
            reasons: vec![reason.into()],
            resolvable: false,
        }
    }

    pub fn resolvable(reasons: Vec<String>) -> Self {
        Self {
            reasons,
            resolvable: true,
        }
    }
}

pub type Verdict = Result<(), Rejection>;

const UNSCHEDULABLE_TAINT: &str = "node.kubernetes.io/unschedulable";

fn tolerations(pod: &Pod) -> &[Toleration] {
    pod.spec
        .as_ref()
        .and_then(|s| s.tolerations.as_deref())
        .unwrap_or_default()
}

/// Upstream's `Toleration.ToleratesTaint`: an empty effect tolerates every effect, an empty
/// key with `Exists` every key, `Exists` any value and `Equal` (the default) the same value.
pub fn tolerates(toleration: &Toleration, taint: &Taint) -> bool {
    let effect = toleration.effect.as_deref().unwrap_or_default();
    if !effect.is_empty() && effect != taint.effect {
        return false;
    }
    let key = toleration.key.as_deref().unwrap_or_default();
    let operator = toleration.operator.as_deref().unwrap_or("Equal");
    if !key.is_empty() && key != taint.key {
        return false;
    }
    match operator {
        "Exists" => true,
        "Equal" | "" => {
            toleration.value.as_deref().unwrap_or_default()
                == taint.value.as_deref().unwrap_or_default()
        }
        _ => false,
    }
}

fn tolerated(pod: &Pod, taint: &Taint) -> bool {
    tolerations(pod).iter().any(|t| tolerates(t, taint))
}

/// NodeUnschedulable: a cordoned node takes only pods that tolerate its taint.
pub fn node_unschedulable(pod: &Pod, node: &NodeInfo) -> Verdict {
    let taint = Taint {
        key: UNSCHEDULABLE_TAINT.into(),
        effect: "NoSchedule".into(),
        ..Taint::default()
    };
    if node.unschedulable && !tolerated(pod, &taint) {
        return Err(Rejection::unresolvable("node(s) were unschedulable"));
    }
    Ok(())
}

/// TaintToleration: the first `NoSchedule` or `NoExecute` taint the pod does not tolerate.
pub fn taint_toleration(pod: &Pod, node: &NodeInfo) -> Verdict {
    let untolerated = node
        .taints
        .iter()
        .filter(|t| t.effect == "NoSchedule" || t.effect == "NoExecute")
        .find(|t| !tolerated(pod, t));
    match untolerated {
        Some(taint) => Err(Rejection::unresolvable(format!(
            "node(s) had untolerated taint {{{}: {}}}",
            taint.key,
            taint.value.as_deref().unwrap_or_default()
        ))),
        None => Ok(()),
    }
}

/// How many of the node's `PreferNoSchedule` taints the pod does not tolerate (the
/// TaintToleration score counts them against the node).
pub fn intolerable_preferences(pod: &Pod, node: &NodeInfo) -> i64 {
    let preferring: Vec<&Toleration> = tolerations(pod)
        .iter()
        .filter(|t| {
            matches!(
                t.effect.as_deref(),
                None | Some("") | Some("PreferNoSchedule")
            )
        })
        .collect();
    node.taints
        .iter()
        .filter(|t| t.effect == "PreferNoSchedule")
        .filter(|t| !preferring.iter().any(|tol| tolerates(tol, t)))
        .count() as i64
}

/// NodeAffinity: `nodeSelector` and the required node affinity both hold.
pub fn node_affinity(pod: &Pod, node: &NodeInfo) -> Verdict {
    let spec = pod.spec.as_ref();
    let selector_holds = spec
        .and_then(|s| s.node_selector.as_ref())
        .into_iter()
        .flatten()
        .all(|(k, v)| node.labels.get(k) == Some(v));
    let required = spec
        .and_then(|s| s.affinity.as_ref())
        .and_then(|a| a.node_affinity.as_ref())
        .and_then(|a| {
            a.required_during_scheduling_ignored_during_execution
                .as_ref()
        });
    if selector_holds && required.is_none_or(|r| selects(r, node)) {
        Ok(())
    } else {
        Err(Rejection::unresolvable(
            "node(s) didn't match Pod's node affinity/selector",
        ))
    }
}

/// The NodeAffinity score: the weights of the preferred terms the node matches.
pub fn preferred_node_affinity(pod: &Pod, node: &NodeInfo) -> i64 {
    pod.spec
        .as_ref()
        .and_then(|s| s.affinity.as_ref())
        .and_then(|a| a.node_affinity.as_ref())
        .and_then(|a| {
            a.preferred_during_scheduling_ignored_during_execution
                .as_ref()
        })
        .into_iter()
        .flatten()
        .filter(|p| term_selects(&p.preference, node))
        .map(|p| i64::from(p.weight))
        .sum()
}

/// A node selector's terms are ORed.
pub fn selects(selector: &NodeSelector, node: &NodeInfo) -> bool {
    selector
        .node_selector_terms
        .iter()
        .any(|term| term_selects(term, node))
}

/// A term's requirements are ANDed; a term with no requirement selects nothing, as upstream.
fn term_selects(term: &NodeSelectorTerm, node: &NodeInfo) -> bool {
    let expressions = term.match_expressions.as_deref().unwrap_or_default();
    let fields = term.match_fields.as_deref().unwrap_or_default();
    (!expressions.is_empty() || !fields.is_empty())
        && expressions
            .iter()
            .all(|r| requirement_holds(r, node.labels.get(&r.key).map(String::as_str)))
        && fields
            .iter()
            .all(|r| r.key == "metadata.name" && requirement_holds(r, Some(node.name.as_str())))
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

/// NodePorts: none of the pod's host ports is taken on the node.
pub fn node_ports(ports: &[HostPort], node: &NodeInfo) -> Verdict {
    if ports
        .iter()
        .any(|wanted| node.ports.iter().any(|used| used.conflicts(wanted)))
    {
        return Err(Rejection::resolvable(vec![
            "node(s) didn't have free ports for the requested pod ports".into(),
        ]));
    }
    Ok(())
}

/// NodeResourcesFit: the pod fits in what the node has left, every resource it lacks named
/// (pods first, then CPU, memory, ephemeral storage and extended resources).
pub fn resources_fit(requests: &Resources, node: &NodeInfo) -> Verdict {
    let mut reasons = Vec::new();
    if node.pods.len() as i64 + 1 > node.allowed_pods {
        reasons.push("Too many pods".to_string());
    }
    if requests.is_zero() {
        return if reasons.is_empty() {
            Ok(())
        } else {
            Err(Rejection::resolvable(reasons))
        };
    }
    let (allocatable, requested) = (&node.allocatable, &node.requested);
    let native = [
        (
            "cpu",
            requests.milli_cpu,
            allocatable.milli_cpu,
            requested.milli_cpu,
        ),
        (
            "memory",
            requests.memory,
            allocatable.memory,
            requested.memory,
        ),
        (
            "ephemeral-storage",
            requests.ephemeral_storage,
            allocatable.ephemeral_storage,
            requested.ephemeral_storage,
        ),
    ];
    let scalar = requests.scalar.iter().map(|(name, wanted)| {
        let has = allocatable.scalar.get(name).copied().unwrap_or(0);
        let used = requested.scalar.get(name).copied().unwrap_or(0);
        (name.as_str(), *wanted, has, used)
    });
    for (name, wanted, has, used) in native.into_iter().chain(scalar) {
        if wanted > 0 && wanted > has - used {
            reasons.push(format!("Insufficient {name}"));
        }
    }
    if reasons.is_empty() {
        Ok(())
    } else {
        Err(Rejection::resolvable(reasons))
    }
}
