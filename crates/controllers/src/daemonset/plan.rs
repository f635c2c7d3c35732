//! The DaemonSet controller's decisions as pure functions (upstream's
//! `pkg/controller/daemon`: `nodeShouldRunDaemonPod`, `podsShouldBeOnNode`, `rollingUpdate`,
//! `updateDaemonSetStatus`): the nodes and the set's pods in, the pods to create and delete and
//! the status out.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Node, Pod, Taint, Toleration};
use petset_api::disruption::scaled;
use serde_json::{Value, json};

use crate::scheduler::filters;
use crate::scheduler::snapshot::NodeInfo;

/// The label naming a pod's revision (upstream's `DefaultDaemonSetUniqueLabelKey`).
pub const HASH_LABEL: &str = "controller-revision-hash";

/// Upstream's `AddOrUpdateDaemonPodTolerations`: what every daemon pod tolerates (the
/// network one only with host networking).
pub fn daemon_tolerations(host_network: bool) -> Vec<Toleration> {
    let mut wanted = vec![
        ("node.kubernetes.io/not-ready", "NoExecute"),
        ("node.kubernetes.io/unreachable", "NoExecute"),
        ("node.kubernetes.io/disk-pressure", "NoSchedule"),
        ("node.kubernetes.io/memory-pressure", "NoSchedule"),
        ("node.kubernetes.io/pid-pressure", "NoSchedule"),
        ("node.kubernetes.io/unschedulable", "NoSchedule"),
    ];
    if host_network {
        wanted.push(("node.kubernetes.io/network-unavailable", "NoSchedule"));
    }
    wanted
        .into_iter()
        .map(|(key, effect)| Toleration {
            key: Some(key.into()),
            operator: Some("Exists".into()),
            effect: Some(effect.into()),
            ..Toleration::default()
        })
        .collect()
}

/// The pod the set makes for `node` from its template: the hash label, the set as controller,
/// upstream's automatic tolerations (added when missing) and the required node affinity
/// replaced by `matchFields metadata.name In [node]`, so the scheduler binds it there.
pub fn pod_for(template: &Value, set: &Value, node: &str, hash: &str) -> Value {
    let mut pod = json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": template.get("metadata").cloned().unwrap_or_else(|| json!({})),
        "spec": template.get("spec").cloned().unwrap_or_else(|| json!({}))});
    let text = |p: &str| {
        set.pointer(p)
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    };
    let metadata = &mut pod["metadata"];
    if !metadata.get("labels").is_some_and(Value::is_object) {
        metadata["labels"] = json!({});
    }
    metadata["labels"][HASH_LABEL] = json!(hash);
    metadata["generateName"] = json!(format!("{}-", text("/metadata/name")));
    metadata["namespace"] = json!(text("/metadata/namespace"));
    if let Some(map) = metadata.as_object_mut() {
        map.remove("name");
    }
    metadata["ownerReferences"] = json!([{"apiVersion": "apps/v1", "kind": "DaemonSet",
        "name": text("/metadata/name"), "uid": text("/metadata/uid"),
        "controller": true, "blockOwnerDeletion": true}]);
    let spec = &mut pod["spec"];
    if !spec.get("affinity").is_some_and(Value::is_object) {
        spec["affinity"] = json!({});
    }
    if !spec["affinity"]
        .get("nodeAffinity")
        .is_some_and(Value::is_object)
    {
        spec["affinity"]["nodeAffinity"] = json!({});
    }
    spec["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"] = json!({"nodeSelectorTerms": [{"matchFields": [
            {"key": "metadata.name", "operator": "In", "values": [node]}]}]});
    let host_network = spec.get("hostNetwork").and_then(Value::as_bool) == Some(true);
    let mut tolerations: Vec<Value> = spec
        .get("tolerations")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    for wanted in daemon_tolerations(host_network) {
        let wanted = serde_json::to_value(&wanted).unwrap_or_default();
        if !tolerations
            .iter()
            .any(|t| t.get("key") == wanted.get("key") && t.get("effect") == wanted.get("effect"))
        {
            tolerations.push(wanted);
        }
    }
    spec["tolerations"] = Value::Array(tolerations);
    pod
}

/// Upstream's `NodeShouldRunDaemonPod` (its `shouldRun`): the template's node selector and
/// required node affinity select the node, and the pod, with the automatic tolerations,
/// tolerates every `NoSchedule` and `NoExecute` taint. A cordoned node still runs daemons.
pub fn should_run(template_pod: &Pod, node: &Node) -> bool {
    let mut info = NodeInfo::describe(node);
    info.taints = node
        .spec
        .as_ref()
        .and_then(|s| s.taints.clone())
        .unwrap_or_default();
    let tolerations: Vec<Toleration> = template_pod
        .spec
        .as_ref()
        .and_then(|s| s.tolerations.clone())
        .unwrap_or_default();
    let tolerated = |taint: &Taint| tolerations.iter().any(|t| filters::tolerates(t, taint));
    let selected = {
        // The template's own affinity, before the node pin replaces it.
        filters::node_affinity(template_pod, &info).is_ok()
    };
    selected
        && info
            .taints
            .iter()
            .filter(|t| t.effect == "NoSchedule" || t.effect == "NoExecute")
            .all(tolerated)
}

/// What the plan reads of one daemon pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Daemon {
    pub name: String,
    pub hash: String,
    pub ready: bool,
    pub available: bool,
    pub failed: bool,
    /// For keeping the oldest of duplicates.
    pub created: String,
}

/// The set's update strategy.
#[derive(Debug, Clone, PartialEq)]
pub enum Update {
    OnDelete,
    RollingUpdate {
        max_unavailable: Value,
        max_surge: Value,
    },
}

/// What one sync does.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Plan {
    /// Nodes that get a pod of the update revision.
    pub create: Vec<String>,
    pub delete: Vec<String>,
}

/// The counts of the status (upstream's `updateDaemonSetStatus`).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Counts {
    pub desired: i64,
    pub current: i64,
    pub misscheduled: i64,
    pub ready: i64,
    pub updated: i64,
    pub available: i64,
}

impl Counts {
    pub fn status(&self, generation: i64, collision_count: Option<i64>) -> Value {
        let mut status = json!({
            "desiredNumberScheduled": self.desired,
            "currentNumberScheduled": self.current,
            "numberMisscheduled": self.misscheduled,
            "numberReady": self.ready,
            "updatedNumberScheduled": self.updated,
            "numberAvailable": self.available,
            "observedGeneration": generation,
        });
        let unavailable = self.desired - self.available;
        if unavailable > 0 {
            status["numberUnavailable"] = json!(unavailable);
        }
        if let Some(count) = collision_count {
            status["collisionCount"] = json!(count);
        }
        status
    }
}

/// `maxUnavailable` and `maxSurge` against the desired count, rounded up, as upstream's
/// `updatedDesiredNodeCounts` (both 0 means one unavailable).
pub fn limits(update: &Update, desired: i64) -> (i64, i64) {
    let Update::RollingUpdate {
        max_unavailable,
        max_surge,
    } = update
    else {
        return (0, 0);
    };
    let unavailable = scaled(max_unavailable, desired, true).unwrap_or(1).max(0);
    let surge = scaled(max_surge, desired, true).unwrap_or(0).max(0);
    if unavailable == 0 && surge == 0 {
        (1, 0)
    } else {
        (unavailable, surge)
    }
}

/// The plan and the counts for `nodes` (name, should run) and the pods on each node.
pub fn plan(
    nodes: &[(String, bool)],
    pods: &BTreeMap<String, Vec<Daemon>>,
    hash: &str,
    update: &Update,
) -> (Plan, Counts) {
    let mut plan = Plan::default();
    let mut counts = Counts::default();
    let empty = Vec::new();
    let desired = nodes.iter().filter(|(_, run)| *run).count() as i64;
    let (max_unavailable, max_surge) = limits(update, desired);
    let mut managed = false;
    // Pods on nodes that are not nodes (any more) go too.
    for (node, on_node) in pods {
        if !nodes.iter().any(|(name, _)| name == node) {
            counts.misscheduled += i64::from(!on_node.is_empty());
            plan.delete.extend(on_node.iter().map(|p| p.name.clone()));
            managed |= !on_node.is_empty();
        }
    }
    for (node, run) in nodes {
        let on_node = pods.get(node).unwrap_or(&empty);
        if !run {
            counts.misscheduled += i64::from(!on_node.is_empty());
            plan.delete.extend(on_node.iter().map(|p| p.name.clone()));
            managed |= !on_node.is_empty();
            continue;
        }
        counts.current += i64::from(!on_node.is_empty());
        for pod in on_node {
            counts.ready += i64::from(pod.ready);
            counts.available += i64::from(pod.available);
            counts.updated += i64::from(pod.hash == hash);
        }
        let failed: Vec<&Daemon> = on_node.iter().filter(|p| p.failed).collect();
        let running: Vec<&Daemon> = on_node.iter().filter(|p| !p.failed).collect();
        plan.delete.extend(failed.iter().map(|p| p.name.clone()));
        managed |= !failed.is_empty();
        if running.is_empty() {
            plan.create.push(node.clone());
            managed = true;
            continue;
        }
        // One pod per node: the oldest stays (with a surge, an old and a new one may both).
        let mut sorted = running.clone();
        sorted.sort_by(|a, b| a.created.cmp(&b.created).then(a.name.cmp(&b.name)));
        let surging = max_surge > 0
            && sorted.len() == 2
            && sorted.iter().any(|p| p.hash == hash)
            && sorted.iter().any(|p| p.hash != hash);
        if sorted.len() > 1 && !surging {
            plan.delete
                .extend(sorted[1..].iter().map(|p| p.name.clone()));
            managed = true;
        }
    }
    if managed || matches!(update, Update::OnDelete) {
        return (plan, counts);
    }
    // The rolling update, on nodes with exactly their pods settled.
    let split = |node: &str| {
        let on_node = pods.get(node).unwrap_or(&empty);
        let new = on_node.iter().find(|p| p.hash == hash);
        let old = on_node.iter().find(|p| p.hash != hash);
        (new, old)
    };
    if max_surge == 0 {
        let mut unavailable = 0;
        let mut replace = Vec::new();
        let mut candidates = Vec::new();
        for (node, _) in nodes.iter().filter(|(_, run)| *run) {
            match split(node) {
                (None, None) | (Some(_), Some(_)) => unavailable += 1,
                (Some(new), None) => unavailable += i64::from(!new.available),
                (None, Some(old)) => {
                    if !old.available {
                        replace.push(old.name.clone());
                    } else if unavailable < max_unavailable {
                        candidates.push(old.name.clone());
                    }
                }
            }
        }
        let room = (max_unavailable - unavailable).clamp(0, candidates.len() as i64) as usize;
        plan.delete.extend(replace);
        plan.delete.extend(candidates.into_iter().take(room));
    } else {
        let mut surge = 0;
        let mut allowed = Vec::new();
        let mut candidates = Vec::new();
        for (node, _) in nodes.iter().filter(|(_, run)| *run) {
            match split(node) {
                (_, None) => {}
                (None, Some(old)) => {
                    if !old.available {
                        allowed.push(node.clone());
                    } else if surge < max_surge {
                        candidates.push(node.clone());
                    }
                }
                (Some(new), Some(old)) => {
                    if new.available {
                        plan.delete.push(old.name.clone());
                    } else {
                        surge += 1;
                    }
                }
            }
        }
        let room = (max_surge - surge).clamp(0, candidates.len() as i64) as usize;
        plan.create.extend(allowed);
        plan.create.extend(candidates.into_iter().take(room));
    }
    (plan, counts)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn daemon(name: &str, hash: &str, available: bool) -> Daemon {
        Daemon {
            name: name.into(),
            hash: hash.into(),
            ready: available,
            available,
            failed: false,
            created: name.into(),
        }
    }

    fn rolling(unavailable: Value, surge: Value) -> Update {
        Update::RollingUpdate {
            max_unavailable: unavailable,
            max_surge: surge,
        }
    }

    fn nodes(names: &[(&str, bool)]) -> Vec<(String, bool)> {
        names.iter().map(|(n, r)| (n.to_string(), *r)).collect()
    }

    #[test]
    fn every_eligible_node_gets_one_pod_and_others_lose_theirs() {
        let mut pods = BTreeMap::new();
        pods.insert(
            "b".to_string(),
            vec![daemon("p-b", "h", true), daemon("p-b2", "h", true)],
        );
        pods.insert("c".to_string(), vec![daemon("p-c", "h", true)]);
        let (plan, counts) = plan(
            &nodes(&[("a", true), ("b", true), ("c", false)]),
            &pods,
            "h",
            &rolling(json!(1), json!(0)),
        );
        assert_eq!(plan.create, ["a"]);
        assert_eq!(plan.delete, ["p-b2", "p-c"]);
        assert_eq!(counts.desired, 0, "desired is the caller's");
        assert_eq!((counts.current, counts.misscheduled), (1, 1));
    }

    #[test]
    fn a_rolling_update_replaces_max_unavailable_pods_at_a_time() {
        let mut pods = BTreeMap::new();
        for node in ["a", "b", "c"] {
            pods.insert(
                node.to_string(),
                vec![daemon(&format!("old-{node}"), "old", true)],
            );
        }
        let all = nodes(&[("a", true), ("b", true), ("c", true)]);
        let (first, counts) = plan(&all, &pods, "new", &rolling(json!(1), json!(0)));
        assert_eq!(first.delete, ["old-a"]);
        assert!(first.create.is_empty());
        assert_eq!(counts.updated, 0);
        // While the new pod on a is not available, nothing else goes.
        pods.insert("a".to_string(), vec![daemon("new-a", "new", false)]);
        let (waiting, _) = plan(&all, &pods, "new", &rolling(json!(1), json!(0)));
        assert_eq!(waiting, Plan::default());
        pods.insert("a".to_string(), vec![daemon("new-a", "new", true)]);
        let (next, counts) = plan(&all, &pods, "new", &rolling(json!("100%"), json!(0)));
        assert_eq!(next.delete, ["old-b", "old-c"]);
        assert_eq!(counts.updated, 1);
    }

    #[test]
    fn a_surge_starts_the_new_pod_before_the_old_goes() {
        let mut pods = BTreeMap::new();
        pods.insert("a".to_string(), vec![daemon("old-a", "old", true)]);
        let all = nodes(&[("a", true)]);
        let update = rolling(json!(0), json!(1));
        let (first, _) = plan(&all, &pods, "new", &update);
        assert_eq!(first.create, ["a"]);
        pods.get_mut("a")
            .expect("test data")
            .push(daemon("new-a", "new", false));
        assert_eq!(plan(&all, &pods, "new", &update).0, Plan::default());
        pods.get_mut("a").expect("test data")[1].available = true;
        assert_eq!(plan(&all, &pods, "new", &update).0.delete, ["old-a"]);
    }

    #[test]
    fn on_delete_replaces_nothing() {
        let mut pods = BTreeMap::new();
        pods.insert("a".to_string(), vec![daemon("old-a", "old", true)]);
        let (plan, _) = plan(&nodes(&[("a", true)]), &pods, "new", &Update::OnDelete);
        assert_eq!(plan, Plan::default());
    }

    #[test]
    fn the_pod_is_pinned_to_its_node_and_tolerates_what_daemons_tolerate() {
        let set = json!({"metadata": {"name": "agent", "namespace": "default", "uid": "u1"}});
        let template = json!({"metadata": {"labels": {"app": "agent"}},
            "spec": {"containers": [{"name": "c", "image": "busybox"}],
                "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution":
                    {"nodeSelectorTerms": [{"matchExpressions": [
                        {"key": "x", "operator": "Exists"}]}]}}}}});
        let pod = pod_for(&template, &set, "node-1", "abc");
        assert_eq!(pod["metadata"]["labels"][HASH_LABEL], "abc");
        assert_eq!(pod["metadata"]["generateName"], "agent-");
        assert_eq!(
            pod["spec"]["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"],
            json!({"nodeSelectorTerms": [{"matchFields": [
                {"key": "metadata.name", "operator": "In", "values": ["node-1"]}]}]})
        );
        let tolerations = pod["spec"]["tolerations"].as_array().expect("test data");
        assert_eq!(tolerations.len(), 6);
        assert!(
            tolerations
                .iter()
                .any(|t| t["key"] == "node.kubernetes.io/unschedulable")
        );
        assert_eq!(pod["metadata"]["ownerReferences"][0]["controller"], true);
    }

    #[test]
    fn a_taint_keeps_daemons_away_unless_tolerated_and_a_cordon_does_not() {
        let node: Node =
            serde_json::from_value(json!({"metadata": {"name": "n", "labels": {"disk": "ssd"}},
            "spec": {"unschedulable": true, "taints": [
                {"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule"}]}}))
            .expect("test data");
        let template = |extra: Value| -> Pod {
            let set = json!({"metadata": {"name": "a", "namespace": "d", "uid": "u"}});
            let mut t = json!({"spec": {"containers": [{"name": "c", "image": "i"}]}});
            if let Some(map) = extra.as_object() {
                for (k, v) in map {
                    t["spec"][k] = v.clone();
                }
            }
            // The automatic tolerations, without the pin (the template's own affinity).
            let mut pod = pod_for(&t, &set, "n", "h");
            pod["spec"]["affinity"] = t["spec"].get("affinity").cloned().unwrap_or(json!({}));
            serde_json::from_value(pod).expect("test data")
        };
        assert!(should_run(&template(json!({})), &node));
        assert!(should_run(
            &template(json!({"nodeSelector": {"disk": "ssd"}})),
            &node
        ));
        assert!(!should_run(
            &template(json!({"nodeSelector": {"disk": "hdd"}})),
            &node
        ));
        let mut tainted = node.clone();
        tainted.spec.as_mut().expect("test data").taints = Some(vec![Taint {
            key: "dedicated".into(),
            value: Some("db".into()),
            effect: "NoSchedule".into(),
            ..Taint::default()
        }]);
        assert!(!should_run(&template(json!({})), &tainted));
        assert!(should_run(
            &template(
                json!({"tolerations": [{"key": "dedicated", "operator": "Equal",
                "value": "db", "effect": "NoSchedule"}]})
            ),
            &tainted
        ));
    }
}
