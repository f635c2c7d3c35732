//! The decisions, filter by filter and score by score, on snapshots built from objects.

use k8s_openapi::api::core::v1::{Node, NodeSelector};
use kube::ResourceExt;
use serde_json::{Value, json};

use super::filters::selects;
use super::*;
#[derive(Default)]
struct Objects {
    claims: Vec<Arc<PersistentVolumeClaim>>,
    volumes: Vec<Arc<PersistentVolume>>,
    classes: Vec<Arc<StorageClass>>,
    services: Vec<Arc<Service>>,
    sets: Vec<Arc<StatefulSet>>,
}

impl ClusterObjects for Objects {
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
    fn services(&self, namespace: &str) -> Vec<Arc<Service>> {
        self.services
            .iter()
            .filter(|s| s.namespace().as_deref() == Some(namespace))
            .cloned()
            .collect()
    }
    fn stateful_set(&self, namespace: &str, name: &str) -> Option<Arc<StatefulSet>> {
        self.sets
            .iter()
            .find(|s| s.name_any() == name && s.namespace().as_deref() == Some(namespace))
            .cloned()
    }
}

fn from<K: serde::de::DeserializeOwned>(value: Value) -> Arc<K> {
    Arc::new(serde_json::from_value(value).expect("object"))
}

fn node(name: &str, ready: bool) -> Arc<Node> {
    from(json!({
        "metadata": {"name": name, "labels": {HOSTNAME_LABEL: name}},
        "status": {
            "conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}],
            "allocatable": {"cpu": "4", "memory": "8Gi", "ephemeral-storage": "100Gi", "pods": "110"},
        },
    }))
}

fn snapshot_of(nodes: &[Arc<Node>]) -> Snapshot {
    let mut snapshot = Snapshot::default();
    for node in nodes {
        snapshot.apply_node(node);
    }
    snapshot
}

fn decide_on(pod: &Pod, nodes: &[Arc<Node>], objects: &Objects) -> Decision {
    decide(pod, &snapshot_of(nodes), objects)
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
        decide_on(&pod(&[]), &nodes, &Objects::default()),
        Decision::Bind("a".into())
    );
}

#[test]
fn a_pod_waits_for_its_immediate_claims_to_be_bound() {
    let nodes = [node("a", true)];
    let missing = decide_on(&pod(&["data"]), &nodes, &Objects::default());
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
        decide_on(&pod(&["data"]), &nodes, &pending),
        Decision::Wait(format!(
            "0/1 nodes are available: pod has unbound immediate PersistentVolumeClaims. {}",
            preemption(1)
        ))
    );
}

#[test]
fn without_nodes_the_pod_waits_for_one() {
    assert_eq!(
        decide_on(&pod(&[]), &[], &Objects::default()),
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
        decide_on(
            &pod(&["data"]),
            &[node("a", true), node("b", true)],
            &storage
        ),
        Decision::Bind("b".into())
    );
    assert_eq!(
        decide_on(&pod(&["data"]), &[node("a", true)], &storage),
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
        decide_on(&pod(&["data"]), &nodes, &storage),
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
    let Decision::Wait(message) = decide_on(&pod(&["data"]), &[node("a", true)], &storage) else {
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
        decide_on(&pod(&["data"]), &nodes, &storage),
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
        decide_on(&pod(&["data"]), &nodes, &storage),
        Decision::SelectNode {
            node: "b".into(),
            claims: Vec::new()
        }
    );
    let Decision::Wait(message) = decide_on(&pod(&["data"]), &[node("a", true)], &storage) else {
        panic!("node a is not the claim's");
    };
    assert!(
        message.contains("1 node(s) didn't find available persistent volumes to bind"),
        "{message}"
    );
}

#[test]
fn node_selector_terms_are_ored_and_their_requirements_anded() {
    let snapshot = snapshot_of(&[node("a", true)]);
    let node = &snapshot.nodes["a"];
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
        assert_eq!(selects(&selector(terms.clone()), node), expected, "{terms}");
    }
}
