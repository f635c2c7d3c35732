//! What the node loss controller decides, as pure functions: when a fenced node counts as lost
//! (by this controller's monotonic clock, never by comparing the node's timestamps with ours),
//! what the `petset.dev/fence-deadline-seconds` and `petset.dev/on-node-loss` annotations say,
//! the taint that keeps new pods off a lost node, and what becomes of each pod.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use jiff::Timestamp;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{Node, Pod, Taint};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{OwnerReference, Time};
use kube::ResourceExt;

use super::claims::LocalClaim;

/// The Node annotation by which a node says its fence covers the death of its agent: it kills
/// its containers when it has not renewed its Lease for this many seconds (an integer), even
/// when the agent process itself is gone. Set by the node, read here; a node without it never
/// has its pods failed over (upstream's behaviour: they wait for the node).
pub const FENCE_DEADLINE_ANNOTATION: &str = "petset.dev/fence-deadline-seconds";

/// The StatefulSet annotation that says what becomes of a pod whose claim is bound to a local
/// volume on a lost node: with [`RECREATE_CLAIM`] the claim is replaced by an empty one on a
/// live node; without it (or with any other value) the pod waits for its node.
pub const ON_NODE_LOSS_ANNOTATION: &str = "petset.dev/on-node-loss";
pub const RECREATE_CLAIM: &str = "recreate-claim";

/// The taint a lost, fenced node gets before any of its pods is deleted, so their replacements
/// are not scheduled back onto it: the node lifecycle controller's `unreachable` taint comes
/// only at its grace period (50 s), after the failover (40 s). Removed once the node renews
/// its Lease again.
pub const FENCED_TAINT: &str = "petset.dev/fenced";

/// How long after a node's fence deadline the node counts as lost: the node raises its fence
/// (SIGKILL of every container, no grace) at its deadline, and this is the time allowed for the
/// kills to be done, for its watchdog to wake on a loaded machine and for the two machines'
/// monotonic clocks to run at slightly different rates. The same allowance the node leaves
/// before the servers' grace period (`petset_agent::fence::STOP_ALLOWANCE`).
pub const STOP_ALLOWANCE: Duration = Duration::from_secs(10);

/// How long a confirmation with the API that a node is still lost is acted on: past this, the
/// next delete confirms again. It bounds how long after the node's renewal (should one come
/// just after a confirmation) this controller may still delete one of its pods; a node that
/// renews after its fence was raised must let at least this pass, and learn of its pods from
/// the API afresh, before it starts any container again.
pub const CONFIRMATION_LIFETIME: Duration = Duration::from_secs(2);

/// The `DisruptionTarget` condition's reason on a pod deleted for its node's loss.
pub const DISRUPTION_REASON: &str = "DeletionByPetsetNodeLoss";
pub const DISRUPTION_MESSAGE: &str =
    "petset node loss: the node fenced itself and stopped renewing its Lease";

/// The controller's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeLossConfig {
    /// How long after a node's fence deadline it counts as lost ([`STOP_ALLOWANCE`]).
    pub stop_allowance: Duration,
    /// How often the nodes are looked at: a node is failed over at most this late.
    pub check_period: Duration,
}

impl Default for NodeLossConfig {
    fn default() -> Self {
        Self {
            stop_allowance: STOP_ALLOWANCE,
            check_period: Duration::from_secs(1),
        }
    }
}

/// What the controller last saw of a node's Lease, and when (by its own monotonic clock) it
/// first saw it so: the same way `crate::leader` measures another candidate's Lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sighting {
    /// The Lease's `renewTime` (`None`: no Lease, or none set).
    pub renewed: Option<Timestamp>,
    pub seen_at: Instant,
    /// Whether this controller has seen the Lease change at least once: proof that the node
    /// renewed while this controller watched (a first sighting proves nothing).
    pub moved: bool,
}

/// The sighting after looking at a Lease `now`: a `renewTime` not seen before counts from
/// `now`. The node sent that renewal no later than this, so counting from here can only make
/// the controller wait longer than the node did.
pub fn observe(previous: Option<&Sighting>, renewed: Option<Timestamp>, now: Instant) -> Sighting {
    match previous {
        Some(seen) if seen.renewed == renewed => seen.clone(),
        Some(_) => Sighting {
            renewed,
            seen_at: now,
            moved: true,
        },
        None => Sighting {
            renewed,
            seen_at: now,
            moved: false,
        },
    }
}

/// The sighting after a gap in the watch (it started over): changes may have been missed, so
/// the clock starts again `now`, which only delays.
pub fn restart_clock(seen: &Sighting, now: Instant) -> Sighting {
    Sighting {
        seen_at: now,
        ..seen.clone()
    }
}

/// What a Node says of its fence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fence {
    /// No annotation: its pods are never failed over.
    None,
    Deadline(Duration),
    /// The annotation is there but is no whole number of seconds above zero; the node is
    /// treated as unfenced.
    Invalid(String),
}

pub fn fence_of(node: &Node) -> Fence {
    let Some(value) = node.annotations().get(FENCE_DEADLINE_ANNOTATION) else {
        return Fence::None;
    };
    match value.trim().parse::<u64>() {
        Ok(seconds) if seconds > 0 => Fence::Deadline(Duration::from_secs(seconds)),
        _ => Fence::Invalid(value.clone()),
    }
}

/// How long the Lease has not changed, as this controller saw it.
pub fn silent_for(seen: &Sighting, now: Instant) -> Duration {
    now.saturating_duration_since(seen.seen_at)
}

/// Whether a node with this fence deadline is lost and fenced: the node counts its deadline
/// from when it *sent* its last renewal that succeeded, which is no later than this controller
/// saw that renewal, so once `deadline + stop_allowance` has passed since the sighting the
/// node's fence rose at least `stop_allowance` ago and its containers are dead.
pub fn lost(seen: &Sighting, deadline: Duration, config: &NodeLossConfig, now: Instant) -> bool {
    silent_for(seen, now) >= deadline.saturating_add(config.stop_allowance)
}

/// The name a node's local volumes are pinned by: its `kubernetes.io/hostname` label, or its
/// name without one (as the provisioner pins them, `crate::volumes`).
pub fn hostname_of(node: &Node) -> String {
    node.labels()
        .get(HOSTNAME_LABEL)
        .cloned()
        .unwrap_or_else(|| node.name_any())
}

pub const HOSTNAME_LABEL: &str = "kubernetes.io/hostname";

/// Whether the node has the Ready condition `True`.
pub fn ready(node: &Node) -> bool {
    node.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// Whether a failover has anywhere to go: some node that is Ready and not lost. With none, the
/// likelier story is that this server is cut off from every node, not that every node died
/// (upstream's node lifecycle stops evictions then too), and replacing pods, let alone their
/// claims, would gain nothing and could lose every copy of a replicated app's data.
pub fn anywhere_to_go<'a>(
    nodes: impl IntoIterator<Item = &'a Node>,
    lost: &HashMap<String, Loss>,
) -> bool {
    nodes
        .into_iter()
        .any(|n| ready(n) && !lost.contains_key(&n.name_any()))
}

pub fn has_fenced_taint(node: &Node) -> bool {
    taints(node).iter().any(|t| t.key == FENCED_TAINT)
}

fn taints(node: &Node) -> &[Taint] {
    node.spec
        .as_ref()
        .and_then(|s| s.taints.as_deref())
        .unwrap_or_default()
}

/// The node's taints with [`FENCED_TAINT`] (`NoSchedule`, as of `now`) added; `None` when it
/// has it already.
pub fn with_fenced_taint(node: &Node, now: Timestamp) -> Option<Vec<Taint>> {
    if has_fenced_taint(node) {
        return None;
    }
    let mut next = taints(node).to_vec();
    next.push(Taint {
        key: FENCED_TAINT.into(),
        effect: "NoSchedule".into(),
        time_added: Some(Time(now)),
        value: None,
    });
    Some(next)
}

/// The node's taints without [`FENCED_TAINT`]; `None` when it has none.
pub fn without_fenced_taint(node: &Node) -> Option<Vec<Taint>> {
    if !has_fenced_taint(node) {
        return None;
    }
    Some(
        taints(node)
            .iter()
            .filter(|t| t.key != FENCED_TAINT)
            .cloned()
            .collect(),
    )
}

/// A node found lost: what the events say of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Loss {
    pub node: String,
    /// What its local volumes are pinned by ([`hostname_of`]).
    pub hostname: String,
    /// How long its Lease has not changed, by this controller's clock.
    pub silent_for: Duration,
    pub deadline: Duration,
    /// The Lease's renewTime as last seen: the API must still say so before anything is done.
    pub renewed: Option<Timestamp>,
}

/// The StatefulSet that controls the pod, as its controller reference names it.
pub fn controlling_set(pod: &Pod) -> Option<&OwnerReference> {
    pod.owner_references()
        .iter()
        .find(|o| o.controller == Some(true) && o.kind == "StatefulSet")
}

/// What a StatefulSet asks for when a pod's claim is local to a lost node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnNodeLoss {
    /// The pod waits for its node (the default: its data is there).
    Wait,
    /// The claim is replaced by an empty one on a live node.
    RecreateClaim,
}

pub fn on_node_loss(set: Option<&StatefulSet>) -> OnNodeLoss {
    let asked = set.and_then(|s| s.annotations().get(ON_NODE_LOSS_ANNOTATION));
    if asked.map(String::as_str) == Some(RECREATE_CLAIM) {
        OnNodeLoss::RecreateClaim
    } else {
        OnNodeLoss::Wait
    }
}

/// What becomes of one pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failover {
    /// Nothing: not a StatefulSet's pod, not on a lost node, or already deleted at once.
    Leave,
    /// Delete it at once; its StatefulSet makes it again on another node.
    DeletePod,
    /// Delete these claims (local to a lost node), then the pod: it comes back with new,
    /// empty claims on a live node.
    ReplaceClaimsAndPod(Vec<LocalClaim>),
    /// The pod is not on a node (made again after its old self was deleted) but its claims
    /// are local to a lost node, so it can go nowhere: delete these claims, and its StatefulSet
    /// makes empty ones that bind on a live node.
    ReplaceClaims(Vec<LocalClaim>),
    /// The pod waits for its node: these claims hold its data there.
    Wait(Vec<LocalClaim>),
}

/// What becomes of `pod`: `on_lost_node` says whether it is bound to a lost node, `local` are
/// its claims bound to volumes pinned to a lost node, `policy` is its StatefulSet's word.
pub fn failover(
    pod: &Pod,
    on_lost_node: bool,
    local: Vec<LocalClaim>,
    policy: OnNodeLoss,
) -> Failover {
    if controlling_set(pod).is_none() || deleted_at_once(pod) {
        return Failover::Leave;
    }
    let scheduled = pod
        .spec
        .as_ref()
        .and_then(|s| s.node_name.as_deref())
        .is_some_and(|n| !n.is_empty());
    match (scheduled, on_lost_node, local.is_empty(), policy) {
        (true, false, _, _) => Failover::Leave,
        (true, true, true, _) => Failover::DeletePod,
        (true, true, false, OnNodeLoss::RecreateClaim) => Failover::ReplaceClaimsAndPod(local),
        (true, true, false, OnNodeLoss::Wait) => Failover::Wait(local),
        (false, _, false, OnNodeLoss::RecreateClaim) => Failover::ReplaceClaims(local),
        (false, _, _, _) => Failover::Leave,
    }
}

/// Whether the pod was deleted with no grace already (it waits only for its finalizers).
fn deleted_at_once(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_some()
        && pod.metadata.deletion_grace_period_seconds == Some(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const THIRTY: Duration = Duration::from_secs(30);

    fn config() -> NodeLossConfig {
        NodeLossConfig::default()
    }

    fn at(seconds: u64, start: Instant) -> Instant {
        start + Duration::from_secs(seconds)
    }

    fn renewed(second: i64) -> Option<Timestamp> {
        Timestamp::from_second(1_700_000_000 + second).ok()
    }

    #[test]
    fn a_node_is_lost_once_its_deadline_and_the_stop_allowance_passed_since_its_lease_last_changed()
    {
        let start = Instant::now();
        let seen = observe(None, renewed(0), start);
        assert!(!lost(&seen, THIRTY, &config(), at(39, start)));
        assert!(lost(&seen, THIRTY, &config(), at(40, start)));
        assert_eq!(silent_for(&seen, at(41, start)), Duration::from_secs(41));
        // The same renewTime seen again does not move the clock.
        let again = observe(Some(&seen), renewed(0), at(20, start));
        assert_eq!(again, seen);
        assert!(lost(&again, THIRTY, &config(), at(40, start)));
    }

    #[test]
    fn a_renewal_restarts_the_clock_whatever_time_the_node_wrote() {
        let start = Instant::now();
        let seen = observe(None, renewed(100), start);
        assert!(!seen.moved, "a first sighting proves nothing");
        // The node's clock went backwards: still a change, counted from when it was seen.
        let renewal = observe(Some(&seen), renewed(-5000), at(35, start));
        assert!(renewal.moved);
        assert_eq!(renewal.seen_at, at(35, start));
        assert!(!lost(&renewal, THIRTY, &config(), at(74, start)));
        assert!(lost(&renewal, THIRTY, &config(), at(75, start)));
        // A Lease that goes away is a change too.
        let gone = observe(Some(&renewal), None, at(80, start));
        assert_eq!((gone.renewed, gone.seen_at), (None, at(80, start)));
    }

    #[test]
    fn a_gap_in_the_watch_starts_the_clock_again() {
        let start = Instant::now();
        let seen = observe(None, renewed(0), start);
        let restarted = restart_clock(&seen, at(30, start));
        assert!(!lost(&restarted, THIRTY, &config(), at(40, start)));
        assert!(lost(&restarted, THIRTY, &config(), at(70, start)));
        assert_eq!(restarted.renewed, seen.renewed);
    }

    fn node(annotations: serde_json::Value) -> Node {
        serde_json::from_value(json!({"metadata": {"name": "node-a", "annotations": annotations}}))
            .expect("node")
    }

    #[test]
    fn the_fence_annotation_is_a_whole_number_of_seconds_above_zero() {
        assert_eq!(fence_of(&node(json!({}))), Fence::None);
        assert_eq!(
            fence_of(&node(json!({FENCE_DEADLINE_ANNOTATION: "30"}))),
            Fence::Deadline(THIRTY)
        );
        for bad in ["0", "-3", "30s", "", "1.5"] {
            assert_eq!(
                fence_of(&node(json!({FENCE_DEADLINE_ANNOTATION: bad}))),
                Fence::Invalid(bad.into()),
                "{bad}"
            );
        }
    }

    #[test]
    fn the_fenced_taint_is_added_once_beside_the_others_and_removed_alone() {
        let mut tainted = node(json!({}));
        tainted.spec = Some(k8s_openapi::api::core::v1::NodeSpec {
            taints: Some(vec![Taint {
                key: "dedicated".into(),
                effect: "NoExecute".into(),
                ..Taint::default()
            }]),
            ..Default::default()
        });
        let now = Timestamp::UNIX_EPOCH;
        let added = with_fenced_taint(&tainted, now).expect("added");
        let keys: Vec<(&str, &str)> = added
            .iter()
            .map(|t| (t.key.as_str(), t.effect.as_str()))
            .collect();
        assert_eq!(
            keys,
            [("dedicated", "NoExecute"), (FENCED_TAINT, "NoSchedule")]
        );
        tainted.spec.as_mut().expect("spec").taints = Some(added);
        assert!(has_fenced_taint(&tainted));
        assert_eq!(with_fenced_taint(&tainted, now), None);
        let removed = without_fenced_taint(&tainted).expect("removed");
        assert_eq!(removed.len(), 1);
        assert_eq!(removed[0].key, "dedicated");
        assert_eq!(without_fenced_taint(&node(json!({}))), None);
    }

    fn pod(owner_kind: &str, node: Option<&str>) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": "web-0", "namespace": "default", "uid": "u1",
                "ownerReferences": [{"apiVersion": "apps/v1", "kind": owner_kind, "name": "web",
                                     "uid": "s1", "controller": true}]},
            "spec": {"nodeName": node, "containers": [{"name": "c"}]}
        }))
        .expect("pod")
    }

    fn claim() -> LocalClaim {
        LocalClaim {
            claim: "www-web-0".into(),
            uid: "c1".into(),
            volume: "pvc-c1".into(),
            node: "node-a".into(),
        }
    }

    #[test]
    fn only_a_statefulsets_pods_fail_over() {
        for kind in ["ReplicaSet", "Job", "DaemonSet"] {
            let other = pod(kind, Some("node-a"));
            assert_eq!(
                failover(&other, true, Vec::new(), OnNodeLoss::Wait),
                Failover::Leave,
                "{kind}"
            );
        }
        let mut bare = pod("StatefulSet", Some("node-a"));
        bare.metadata.owner_references = None;
        assert_eq!(
            failover(&bare, true, Vec::new(), OnNodeLoss::RecreateClaim),
            Failover::Leave
        );
    }

    #[test]
    fn a_statefulset_pod_on_a_lost_node_is_deleted_unless_its_data_is_there() {
        let on_lost = pod("StatefulSet", Some("node-a"));
        assert_eq!(
            failover(&on_lost, true, Vec::new(), OnNodeLoss::Wait),
            Failover::DeletePod
        );
        assert_eq!(
            failover(&on_lost, true, vec![claim()], OnNodeLoss::Wait),
            Failover::Wait(vec![claim()])
        );
        assert_eq!(
            failover(&on_lost, true, vec![claim()], OnNodeLoss::RecreateClaim),
            Failover::ReplaceClaimsAndPod(vec![claim()])
        );
        assert_eq!(
            failover(&on_lost, false, Vec::new(), OnNodeLoss::RecreateClaim),
            Failover::Leave,
            "a live node's pod stays"
        );
    }

    #[test]
    fn a_terminating_pod_is_deleted_at_once_but_only_once() {
        let mut terminating = pod("StatefulSet", Some("node-a"));
        terminating.metadata.deletion_timestamp = Some(Time(Timestamp::UNIX_EPOCH));
        terminating.metadata.deletion_grace_period_seconds = Some(30);
        assert_eq!(
            failover(&terminating, true, Vec::new(), OnNodeLoss::Wait),
            Failover::DeletePod,
            "upstream leaves it Terminating forever"
        );
        terminating.metadata.deletion_grace_period_seconds = Some(0);
        assert_eq!(
            failover(&terminating, true, Vec::new(), OnNodeLoss::Wait),
            Failover::Leave
        );
    }

    #[test]
    fn a_pod_made_again_whose_claim_is_on_a_lost_node_gets_a_new_claim_only_when_asked() {
        let pending = pod("StatefulSet", None);
        assert_eq!(
            failover(&pending, false, vec![claim()], OnNodeLoss::RecreateClaim),
            Failover::ReplaceClaims(vec![claim()])
        );
        assert_eq!(
            failover(&pending, false, vec![claim()], OnNodeLoss::Wait),
            Failover::Leave
        );
        assert_eq!(
            failover(&pending, false, Vec::new(), OnNodeLoss::RecreateClaim),
            Failover::Leave
        );
    }

    #[test]
    fn only_recreate_claim_opts_in() {
        let set = |value: &str| -> StatefulSet {
            serde_json::from_value(json!({"metadata": {"name": "web",
                "annotations": {ON_NODE_LOSS_ANNOTATION: value}}}))
            .expect("set")
        };
        assert_eq!(
            on_node_loss(Some(&set("recreate-claim"))),
            OnNodeLoss::RecreateClaim
        );
        for other in ["Recreate-Claim", "delete", "", "recreate-claim "] {
            assert_eq!(on_node_loss(Some(&set(other))), OnNodeLoss::Wait, "{other}");
        }
        assert_eq!(on_node_loss(None), OnNodeLoss::Wait);
    }

    #[test]
    fn a_failover_needs_a_ready_node_that_is_not_lost() {
        let ready_node = |name: &str, status: &str| -> Node {
            serde_json::from_value(json!({"metadata": {"name": name},
                "status": {"conditions": [{"type": "Ready", "status": status}]}}))
            .expect("node")
        };
        let nodes = [
            ready_node("node-a", "True"),
            ready_node("node-b", "Unknown"),
        ];
        let loss = Loss {
            node: "node-a".into(),
            hostname: "node-a".into(),
            silent_for: Duration::from_secs(41),
            deadline: THIRTY,
            renewed: None,
        };
        let lost: HashMap<String, Loss> = [("node-a".to_string(), loss)].into();
        assert!(!anywhere_to_go(&nodes, &lost));
        assert!(anywhere_to_go(&nodes, &HashMap::new()));
        let more = [ready_node("node-c", "True")];
        assert!(anywhere_to_go(nodes.iter().chain(&more), &lost));
    }

    #[test]
    fn volumes_are_pinned_by_the_hostname_label_or_the_name() {
        let mut labelled = node(json!({}));
        assert_eq!(hostname_of(&labelled), "node-a");
        labelled.metadata.labels =
            Some([(HOSTNAME_LABEL.to_string(), "host-a".to_string())].into());
        assert_eq!(hostname_of(&labelled), "host-a");
    }
}
