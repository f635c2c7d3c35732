//! What the node lifecycle controller decides, as pure functions of what it sees and of the
//! time: whether a node has gone silent, the conditions and taints it then gets, which zones
//! are disrupted, and when a pod on a `NoExecute`-tainted node is evicted.

use std::collections::BTreeMap;
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::{Node, NodeCondition, Pod, Taint, Toleration};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

/// The taint of a node whose Ready condition is `False`.
pub const NOT_READY: &str = "node.kubernetes.io/not-ready";
/// The taint of a node whose Ready condition is `Unknown`.
pub const UNREACHABLE: &str = "node.kubernetes.io/unreachable";
/// Where the nodes' Leases live.
pub const LEASE_NAMESPACE: &str = "kube-node-lease";

/// The conditions the controller sets to `Unknown` on a silent node, Ready last.
pub const CONDITIONS: [&str; 4] = ["MemoryPressure", "DiskPressure", "PIDPressure", "Ready"];

pub const STOPPED_REASON: &str = "NodeStatusUnknown";
pub const STOPPED_MESSAGE: &str = "Kubelet stopped posting node status.";
pub const NEVER_REASON: &str = "NodeStatusNeverUpdated";
pub const NEVER_MESSAGE: &str = "Kubelet never posted node status.";

pub const DISRUPTION_REASON: &str = "DeletionByTaintManager";
pub const DISRUPTION_MESSAGE: &str = "Taint manager: deleting due to NoExecute taint";

/// The node lifecycle controller's settings, with kube-controller-manager's defaults.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeLifecycleConfig {
    /// `--node-monitor-grace-period`: how long a node may be silent before it is Unknown.
    pub grace_period: Duration,
    /// `--node-monitor-period`: how often the nodes are looked at.
    pub monitor_period: Duration,
    /// `--node-startup-grace-period`: how long a new node has to post its first Ready.
    pub startup_grace_period: Duration,
    /// `--unhealthy-zone-threshold`: the share of not-ready nodes that disrupts a zone.
    pub unhealthy_zone_threshold: f64,
    /// `--large-cluster-size-threshold`: up to this many nodes a zone is small, and a
    /// partially disrupted small zone gets no new `NoExecute` taints.
    pub large_cluster_size_threshold: usize,
    /// `--node-eviction-rate`: nodes per second of a zone that may get a first `NoExecute`
    /// taint (one at once, then one per 1/rate seconds).
    pub node_eviction_rate: f64,
    /// `--secondary-node-eviction-rate`: the same for a large, partially disrupted zone.
    pub secondary_node_eviction_rate: f64,
}

impl Default for NodeLifecycleConfig {
    fn default() -> Self {
        Self {
            grace_period: Duration::from_secs(50),
            monitor_period: Duration::from_secs(5),
            startup_grace_period: Duration::from_secs(60),
            unhealthy_zone_threshold: 0.55,
            large_cluster_size_threshold: 50,
            node_eviction_rate: 0.1,
            secondary_node_eviction_rate: 0.01,
        }
    }
}

/// What the node's Ready condition says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Readiness {
    Ready,
    /// `False`: the node's agent says it is not ready.
    NotReady,
    /// `Unknown`, or no Ready condition at all.
    Unknown,
}

pub fn condition<'a>(node: &'a Node, type_: &str) -> Option<&'a NodeCondition> {
    node.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == type_)
}

pub fn readiness(node: &Node) -> Readiness {
    match condition(node, "Ready").map(|c| c.status.as_str()) {
        Some("True") => Readiness::Ready,
        Some("False") => Readiness::NotReady,
        _ => Readiness::Unknown,
    }
}

/// What shows a node is alive: its Lease's renewTime and its Ready condition's
/// lastHeartbeatTime. Any change of either is a heartbeat.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Heartbeat {
    pub lease_renewed: Option<Timestamp>,
    pub status_posted: Option<Timestamp>,
}

/// What the controller remembers of a node: its last heartbeat, and when (by the
/// controller's clock, as upstream's probeTimestamp) it was first seen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Probe {
    pub heartbeat: Heartbeat,
    pub seen_at: Timestamp,
}

/// The probe after looking at a node `now`: a heartbeat not seen before counts from `now`, as
/// upstream's probeTimestamp does, so a node's clock (ahead or behind ours) never matters, and
/// a controller that starts gives every node a full grace period.
pub fn observe(previous: Option<&Probe>, heartbeat: Heartbeat, now: Timestamp) -> Probe {
    match previous {
        Some(probe) if probe.heartbeat == heartbeat => probe.clone(),
        _ => Probe {
            heartbeat,
            seen_at: now,
        },
    }
}

/// Whether the node has been silent for longer than its grace period: the monitor grace
/// period once it has posted a Ready condition, the startup grace period (from its creation)
/// before.
pub fn silent(node: &Node, probe: &Probe, now: Timestamp, config: &NodeLifecycleConfig) -> bool {
    let (since, grace) = if condition(node, "Ready").is_none() {
        let created = node
            .metadata
            .creation_timestamp
            .as_ref()
            .map_or(probe.seen_at, |t| t.0);
        (created.max(probe.seen_at), config.startup_grace_period)
    } else {
        (probe.seen_at, config.grace_period)
    };
    let grace = jiff::SignedDuration::try_from(grace).unwrap_or(jiff::SignedDuration::MAX);
    now.duration_since(since) > grace
}

/// The conditions a silent node gets (only those that change; none when it is Unknown
/// already): each of [`CONDITIONS`] `Unknown`, keeping its last heartbeat, as of `now`.
pub fn unknown_conditions(node: &Node, now: Timestamp) -> Vec<NodeCondition> {
    let mut changed = Vec::new();
    for type_ in CONDITIONS {
        match condition(node, type_) {
            None => changed.push(NodeCondition {
                type_: type_.to_string(),
                status: "Unknown".into(),
                reason: Some(NEVER_REASON.into()),
                message: Some(NEVER_MESSAGE.into()),
                last_heartbeat_time: node.metadata.creation_timestamp.clone(),
                last_transition_time: Some(Time(now)),
            }),
            Some(current) if current.status != "Unknown" => changed.push(NodeCondition {
                status: "Unknown".into(),
                reason: Some(STOPPED_REASON.into()),
                message: Some(STOPPED_MESSAGE.into()),
                last_transition_time: Some(Time(now)),
                ..current.clone()
            }),
            Some(_) => {}
        }
    }
    changed
}

/// The health of a zone, from its nodes' readiness.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ZoneState {
    Normal,
    /// More than two nodes and at least the threshold's share of them not ready.
    PartialDisruption,
    /// No node ready.
    FullDisruption,
}

/// A node's zone, as upstream keys it: region and zone labels.
pub fn zone_of(node: &Node) -> String {
    let labels = node.metadata.labels.clone().unwrap_or_default();
    let label = |key: &str| labels.get(key).cloned().unwrap_or_default();
    format!(
        "{}:\0:{}",
        label("topology.kubernetes.io/region"),
        label("topology.kubernetes.io/zone")
    )
}

/// Each zone's state and size, from the readiness of its nodes.
pub fn zone_states(
    nodes: &[(String, Readiness)],
    config: &NodeLifecycleConfig,
) -> BTreeMap<String, (ZoneState, usize)> {
    let mut counts: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    for (zone, readiness) in nodes {
        let (ready, not_ready) = counts.entry(zone.clone()).or_default();
        if *readiness == Readiness::Ready {
            *ready += 1;
        } else {
            *not_ready += 1;
        }
    }
    counts
        .into_iter()
        .map(|(zone, (ready, not_ready))| {
            let state = if ready == 0 && not_ready > 0 {
                ZoneState::FullDisruption
            } else if not_ready > 2
                && not_ready as f64 / (ready + not_ready) as f64 >= config.unhealthy_zone_threshold
            {
                ZoneState::PartialDisruption
            } else {
                ZoneState::Normal
            };
            (zone, (state, ready + not_ready))
        })
        .collect()
}

/// What may happen to the `NoExecute` taints of the not-ready nodes of one zone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoExecute {
    /// Added as nodes go, removed as they come back.
    Add,
    /// None added; those there stay (a partially disrupted small zone).
    Keep,
    /// All removed: every zone is fully disrupted, which says more about the controller's own
    /// connectivity than about the nodes (upstream's "master disruption mode").
    Remove,
}

/// The `NoExecute` policy of every zone.
pub fn no_execute_policy(
    zones: &BTreeMap<String, (ZoneState, usize)>,
    config: &NodeLifecycleConfig,
) -> BTreeMap<String, NoExecute> {
    let all_down =
        !zones.is_empty() && zones.values().all(|(s, _)| *s == ZoneState::FullDisruption);
    zones
        .iter()
        .map(|(zone, (state, size))| {
            let policy = if all_down {
                NoExecute::Remove
            } else if *state == ZoneState::PartialDisruption
                && *size <= config.large_cluster_size_threshold
            {
                NoExecute::Keep
            } else {
                NoExecute::Add
            };
            (zone.clone(), policy)
        })
        .collect()
}

/// How many nodes per second of a zone may get a first `NoExecute` taint.
pub fn zone_rate(state: ZoneState, size: usize, config: &NodeLifecycleConfig) -> f64 {
    match state {
        ZoneState::PartialDisruption if size > config.large_cluster_size_threshold => {
            config.secondary_node_eviction_rate
        }
        ZoneState::PartialDisruption => 0.0,
        ZoneState::Normal | ZoneState::FullDisruption => config.node_eviction_rate,
    }
}

/// A zone's token bucket of one, as upstream's rate-limited tainting queue: whether a node may
/// be tainted `now` at `rate` per second; `next` is when the zone's next one may be.
pub fn admits(next: &mut Option<Timestamp>, rate: f64, now: Timestamp) -> bool {
    if rate <= 0.0 || next.is_some_and(|next| now < next) {
        return false;
    }
    let interval =
        jiff::SignedDuration::try_from_secs_f64(1.0 / rate).unwrap_or(jiff::SignedDuration::MAX);
    *next = Some(now.checked_add(interval).unwrap_or(Timestamp::MAX));
    true
}

/// Whether the node has a `NoExecute` taint of this controller's (a node that has one only
/// swaps it, without waiting for its zone's rate).
pub fn has_our_no_execute(node: &Node) -> bool {
    node.spec
        .as_ref()
        .and_then(|s| s.taints.as_ref())
        .is_some_and(|t| t.iter().any(|t| is_ours(t) && t.effect == "NoExecute"))
}

fn is_ours(taint: &Taint) -> bool {
    taint.key == NOT_READY || taint.key == UNREACHABLE
}

/// The node's taints after this pass, or `None` when they stay as they are: the other taints
/// kept in order, then `not-ready` (Ready=False) or `unreachable` (Unknown) with `NoSchedule`
/// and, as `policy` allows, `NoExecute`; both gone once the node is Ready. A taint that stays
/// keeps its timeAdded; a new one is added as of `now`.
pub fn taints_after(
    node: &Node,
    readiness: Readiness,
    policy: NoExecute,
    now: Timestamp,
) -> Option<Vec<Taint>> {
    let current = node
        .spec
        .as_ref()
        .and_then(|s| s.taints.clone())
        .unwrap_or_default();
    let key = match readiness {
        Readiness::Ready => None,
        Readiness::NotReady => Some(NOT_READY),
        Readiness::Unknown => Some(UNREACHABLE),
    };
    let find = |key: &str, effect: &str| {
        current
            .iter()
            .find(|t| t.key == key && t.effect == effect)
            .cloned()
    };
    let fresh = |key: &str, effect: &str| Taint {
        key: key.to_string(),
        effect: effect.to_string(),
        time_added: Some(Time(now)),
        value: None,
    };
    let mut next: Vec<Taint> = current.iter().filter(|t| !is_ours(t)).cloned().collect();
    if let Some(key) = key {
        next.push(find(key, "NoSchedule").unwrap_or_else(|| fresh(key, "NoSchedule")));
        match policy {
            NoExecute::Add => {
                next.push(find(key, "NoExecute").unwrap_or_else(|| fresh(key, "NoExecute")))
            }
            NoExecute::Keep => next.extend(
                current
                    .iter()
                    .filter(|t| is_ours(t) && t.effect == "NoExecute")
                    .cloned(),
            ),
            NoExecute::Remove => {}
        }
    }
    let same = next.len() == current.len() && next.iter().all(|t| current.contains(t));
    (!same).then_some(next)
}

/// Upstream's `ToleratesTaint`.
pub fn tolerates(toleration: &Toleration, taint: &Taint) -> bool {
    let effect = toleration.effect.as_deref().unwrap_or_default();
    if !effect.is_empty() && effect != taint.effect {
        return false;
    }
    let key = toleration.key.as_deref().unwrap_or_default();
    if !key.is_empty() && key != taint.key {
        return false;
    }
    match toleration.operator.as_deref().unwrap_or("Equal") {
        "Exists" => true,
        "Equal" | "" => {
            toleration.value.as_deref().unwrap_or_default()
                == taint.value.as_deref().unwrap_or_default()
        }
        _ => false,
    }
}

/// When a pod is evicted from its node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Eviction {
    /// It tolerates every `NoExecute` taint for good (or there are none).
    Never,
    /// It does not tolerate one of them, or its time is up.
    Now,
    At(Timestamp),
}

/// When the pod goes, given its node's taints: at once for a `NoExecute` taint it does not
/// tolerate, else the shortest `tolerationSeconds` of the tolerations that let it stay, counted
/// from when the first of the taints was added (`added_at` says when a taint without
/// timeAdded was first seen).
pub fn eviction(
    pod: &Pod,
    taints: &[Taint],
    added_at: impl Fn(&Taint) -> Timestamp,
    now: Timestamp,
) -> Eviction {
    let no_execute: Vec<&Taint> = taints.iter().filter(|t| t.effect == "NoExecute").collect();
    if no_execute.is_empty() {
        return Eviction::Never;
    }
    let tolerations = pod
        .spec
        .as_ref()
        .and_then(|s| s.tolerations.clone())
        .unwrap_or_default();
    let mut shortest: Option<i64> = None;
    for taint in &no_execute {
        let Some(used) = tolerations.iter().find(|t| tolerates(t, taint)) else {
            return Eviction::Now;
        };
        if let Some(seconds) = used.toleration_seconds {
            let seconds = seconds.max(0);
            shortest = Some(shortest.map_or(seconds, |s| s.min(seconds)));
        }
    }
    let Some(seconds) = shortest else {
        return Eviction::Never;
    };
    let since = no_execute
        .iter()
        .map(|t| t.time_added.as_ref().map_or_else(|| added_at(t), |t| t.0))
        .min()
        .unwrap_or(now);
    let at = since
        .checked_add(jiff::SignedDuration::from_secs(seconds))
        .unwrap_or(Timestamp::MAX);
    if at <= now {
        Eviction::Now
    } else {
        Eviction::At(at)
    }
}

/// Whether the pod's Ready condition is anything but `False` (so MarkPodsNotReady changes it).
pub fn ready_not_false(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|c| c.iter().find(|c| c.type_ == "Ready"))
        .is_some_and(|c| c.status != "False")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn at(seconds: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + seconds).expect("a time")
    }

    fn node(value: Value) -> Node {
        serde_json::from_value(value).expect("node")
    }

    fn ready_node(status: &str) -> Node {
        node(
            json!({"metadata": {"name": "n", "creationTimestamp": "2027-01-15T08:00:00Z"},
            "status": {"conditions": [
                {"type": "MemoryPressure", "status": "False", "reason": "KubeletHasSufficientMemory",
                 "lastHeartbeatTime": "2027-01-15T08:00:00Z", "lastTransitionTime": "2027-01-15T08:00:00Z"},
                {"type": "Ready", "status": status, "reason": "KubeletReady",
                 "lastHeartbeatTime": "2027-01-15T08:00:00Z", "lastTransitionTime": "2027-01-15T08:00:00Z"}]}}),
        )
    }

    fn config() -> NodeLifecycleConfig {
        NodeLifecycleConfig::default()
    }

    fn lease(seconds: i64) -> Heartbeat {
        Heartbeat {
            lease_renewed: Some(at(seconds)),
            status_posted: None,
        }
    }

    #[test]
    fn upstreams_defaults() {
        let config = config();
        assert_eq!(config.grace_period, Duration::from_secs(50));
        assert_eq!(config.monitor_period, Duration::from_secs(5));
        assert_eq!(config.startup_grace_period, Duration::from_secs(60));
    }

    #[test]
    fn a_node_is_silent_once_the_grace_period_has_passed_since_its_last_heartbeat() {
        let node = ready_node("True");
        let probe = observe(None, lease(0), at(0));
        assert!(!silent(&node, &probe, at(50), &config()));
        assert!(silent(&node, &probe, at(51), &config()));
        // A renewal seen at 40 starts the grace period again, by our clock.
        let renewed = observe(Some(&probe), lease(40), at(45));
        assert_eq!(renewed.seen_at, at(45));
        assert!(!silent(&node, &renewed, at(95), &config()));
        assert!(silent(&node, &renewed, at(96), &config()));
        // Nothing new: the probe stays.
        assert_eq!(observe(Some(&renewed), lease(40), at(99)), renewed);
        // A heartbeat counts from when we first saw it, whatever clock wrote it.
        assert_eq!(observe(None, lease(30), at(10)).seen_at, at(10));
        assert_eq!(observe(None, lease(-500), at(10)).seen_at, at(10));
    }

    #[test]
    fn a_status_heartbeat_counts_as_well_as_a_lease() {
        let node = ready_node("True");
        let probe = observe(None, lease(0), at(0));
        let posted = Heartbeat {
            lease_renewed: Some(at(0)),
            status_posted: Some(at(30)),
        };
        let probe = observe(Some(&probe), posted, at(30));
        assert!(!silent(&node, &probe, at(60), &config()));
    }

    #[test]
    fn a_node_that_never_posted_ready_has_the_startup_grace_period() {
        let mut node = ready_node("True");
        node.status = None;
        let probe = observe(None, Heartbeat::default(), at(0));
        node.metadata.creation_timestamp = Some(Time(at(0)));
        assert!(!silent(&node, &probe, at(60), &config()));
        assert!(silent(&node, &probe, at(61), &config()));
        let conditions = unknown_conditions(&node, at(61));
        assert_eq!(conditions.len(), 4);
        assert!(conditions.iter().all(|c| c.status == "Unknown"
            && c.reason.as_deref() == Some(NEVER_REASON)
            && c.message.as_deref() == Some(NEVER_MESSAGE)));
    }

    #[test]
    fn a_silent_node_gets_unknown_conditions_keeping_its_last_heartbeat() {
        let node = ready_node("True");
        let conditions = unknown_conditions(&node, at(100));
        let types: Vec<&str> = conditions.iter().map(|c| c.type_.as_str()).collect();
        assert_eq!(
            types,
            ["MemoryPressure", "DiskPressure", "PIDPressure", "Ready"]
        );
        let ready = &conditions[3];
        assert_eq!(ready.status, "Unknown");
        assert_eq!(ready.reason.as_deref(), Some("NodeStatusUnknown"));
        assert_eq!(
            ready.message.as_deref(),
            Some("Kubelet stopped posting node status.")
        );
        assert_eq!(
            ready.last_heartbeat_time,
            condition(&node, "Ready").and_then(|c| c.last_heartbeat_time.clone())
        );
        assert_eq!(ready.last_transition_time, Some(Time(at(100))));
        // Missing ones (DiskPressure here) say the node never posted them.
        assert_eq!(conditions[1].reason.as_deref(), Some(NEVER_REASON));

        let mut unknown = node.clone();
        unknown.status.as_mut().expect("status").conditions = Some(conditions);
        assert!(unknown_conditions(&unknown, at(200)).is_empty());
    }

    fn keys(taints: &[Taint]) -> Vec<(String, String)> {
        taints
            .iter()
            .map(|t| (t.key.clone(), t.effect.clone()))
            .collect()
    }

    fn pair(key: &str, effect: &str) -> (String, String) {
        (key.to_string(), effect.to_string())
    }

    #[test]
    fn which_taints_a_node_gets() {
        let mut node = ready_node("True");
        node.spec = Some(
            serde_json::from_value(json!({"taints": [
            {"key": "dedicated", "value": "db", "effect": "NoSchedule"}]}))
            .expect("spec"),
        );
        assert_eq!(
            taints_after(&node, Readiness::Ready, NoExecute::Add, at(0)),
            None
        );
        let unreachable =
            taints_after(&node, Readiness::Unknown, NoExecute::Add, at(5)).expect("a change");
        assert_eq!(
            keys(&unreachable),
            [
                pair("dedicated", "NoSchedule"),
                pair(UNREACHABLE, "NoSchedule"),
                pair(UNREACHABLE, "NoExecute")
            ]
        );
        assert!(
            unreachable[1..]
                .iter()
                .all(|t| t.time_added == Some(Time(at(5))))
        );
        node.spec.as_mut().expect("spec").taints = Some(unreachable.clone());
        // Nothing changes while it stays unreachable: the taints keep their timeAdded.
        assert_eq!(
            taints_after(&node, Readiness::Unknown, NoExecute::Add, at(9)),
            None
        );
        // The agent says not ready: the taints swap.
        let not_ready =
            taints_after(&node, Readiness::NotReady, NoExecute::Add, at(9)).expect("a change");
        assert_eq!(
            keys(&not_ready),
            [
                pair("dedicated", "NoSchedule"),
                pair(NOT_READY, "NoSchedule"),
                pair(NOT_READY, "NoExecute")
            ]
        );
        // Ready again: ours go, the others stay.
        let back = taints_after(&node, Readiness::Ready, NoExecute::Add, at(20)).expect("a change");
        assert_eq!(keys(&back), [pair("dedicated", "NoSchedule")]);
        // With every zone down, no NoExecute taint; a small, partly disrupted zone keeps the
        // ones it has and gets none.
        let removed =
            taints_after(&node, Readiness::Unknown, NoExecute::Remove, at(20)).expect("a change");
        assert_eq!(
            keys(&removed),
            [
                pair("dedicated", "NoSchedule"),
                pair(UNREACHABLE, "NoSchedule")
            ]
        );
        assert_eq!(
            taints_after(&node, Readiness::Unknown, NoExecute::Keep, at(20)),
            None
        );
    }

    #[test]
    fn zones_and_what_they_allow() {
        let zone = |ready: usize, not_ready: usize| -> Vec<(String, Readiness)> {
            (0..ready)
                .map(|_| ("z".to_string(), Readiness::Ready))
                .chain((0..not_ready).map(|_| ("z".to_string(), Readiness::Unknown)))
                .collect()
        };
        let policy = |nodes: Vec<(String, Readiness)>| {
            let zones = zone_states(&nodes, &config());
            (zones["z"].0, no_execute_policy(&zones, &config())["z"])
        };
        assert_eq!(policy(zone(1, 1)), (ZoneState::Normal, NoExecute::Add));
        assert_eq!(
            policy(zone(0, 1)),
            (ZoneState::FullDisruption, NoExecute::Remove)
        );
        assert_eq!(
            policy(zone(2, 3)),
            (ZoneState::PartialDisruption, NoExecute::Keep)
        );
        // A large zone goes on tainting.
        assert_eq!(
            policy(zone(20, 40)),
            (ZoneState::PartialDisruption, NoExecute::Add)
        );
        // One zone down of two: that zone's nodes are tainted.
        let mut nodes = zone(0, 2);
        nodes.push(("other".to_string(), Readiness::Ready));
        let zones = zone_states(&nodes, &config());
        assert_eq!(no_execute_policy(&zones, &config())["z"], NoExecute::Add);
    }

    #[test]
    fn a_zone_taints_one_node_at_once_then_one_per_interval() {
        let mut next = None;
        let rate = zone_rate(ZoneState::Normal, 3, &config());
        assert!(admits(&mut next, rate, at(0)));
        assert!(!admits(&mut next, rate, at(9)));
        assert!(admits(&mut next, rate, at(10)));
        // A small, partly disrupted zone taints none; a large one slowly.
        assert_eq!(zone_rate(ZoneState::PartialDisruption, 5, &config()), 0.0);
        assert!(!admits(&mut None, 0.0, at(0)));
        let slow = zone_rate(ZoneState::PartialDisruption, 60, &config());
        let mut next = None;
        assert!(admits(&mut next, slow, at(0)));
        assert!(!admits(&mut next, slow, at(99)));
        assert!(admits(&mut next, slow, at(100)));
    }

    fn pod(tolerations: Value) -> Pod {
        serde_json::from_value(json!({"metadata": {"name": "p"},
            "spec": {"containers": [], "tolerations": tolerations}}))
        .expect("pod")
    }

    fn taint(key: &str, effect: &str, added: Option<i64>) -> Taint {
        Taint {
            key: key.into(),
            effect: effect.into(),
            value: None,
            time_added: added.map(|s| Time(at(s))),
        }
    }

    #[test]
    fn when_a_pod_is_evicted() {
        let unreachable = [
            taint(UNREACHABLE, "NoSchedule", Some(10)),
            taint(UNREACHABLE, "NoExecute", Some(10)),
        ];
        let never_seen = |_: &Taint| at(0);
        let defaulted = pod(json!([
            {"key": NOT_READY, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300},
            {"key": UNREACHABLE, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300}]));
        assert_eq!(
            eviction(&defaulted, &unreachable, never_seen, at(11)),
            Eviction::At(at(310))
        );
        assert_eq!(
            eviction(&defaulted, &unreachable, never_seen, at(310)),
            Eviction::Now
        );
        // Only NoSchedule taints: nothing to do.
        assert_eq!(
            eviction(&pod(json!([])), &unreachable[..1], never_seen, at(11)),
            Eviction::Never
        );
        // No toleration: at once.
        assert_eq!(
            eviction(&pod(json!([])), &unreachable, never_seen, at(11)),
            Eviction::Now
        );
        // A toleration without seconds: never; a negative one counts as zero.
        let forever = pod(json!([{"key": UNREACHABLE, "operator": "Exists"}]));
        assert_eq!(
            eviction(&forever, &unreachable, never_seen, at(11)),
            Eviction::Never
        );
        let negative = pod(json!([{"operator": "Exists", "tolerationSeconds": -5}]));
        assert_eq!(
            eviction(&negative, &unreachable, never_seen, at(11)),
            Eviction::Now
        );
        // Another NoExecute taint it does not tolerate: at once.
        let mut more = unreachable.to_vec();
        more.push(Taint {
            value: Some("db".into()),
            ..taint("dedicated", "NoExecute", Some(10))
        });
        assert_eq!(
            eviction(&defaulted, &more, never_seen, at(11)),
            Eviction::Now
        );
        let equal = pod(json!([
            {"key": UNREACHABLE, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 1},
            {"key": "dedicated", "operator": "Equal", "value": "db", "effect": "NoExecute", "tolerationSeconds": 60}]));
        assert_eq!(
            eviction(&equal, &more, never_seen, at(10)),
            Eviction::At(at(11))
        );
        // A taint without timeAdded counts from when it was first seen.
        let untimed = [taint(UNREACHABLE, "NoExecute", None)];
        assert_eq!(
            eviction(&equal, &untimed, |_| at(40), at(40)),
            Eviction::At(at(41))
        );
    }
}
