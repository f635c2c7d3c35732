//! The decisions, filter by filter and score by score, on snapshots built from objects.

use k8s_openapi::api::core::v1::{Node, NodeSelector, Taint, Toleration};
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

/// A Ready node of 4 CPUs and 8 GiB with `extra` merged in (labels, spec, status).
fn node_with(name: &str, extra: Value) -> Arc<Node> {
    let mut node = json!({
        "metadata": {"name": name, "labels": {HOSTNAME_LABEL: name}},
        "status": {
            "conditions": [{"type": "Ready", "status": "True"}],
            "allocatable": {"cpu": "4", "memory": "8Gi", "ephemeral-storage": "100Gi", "pods": "110"},
        },
    });
    merge(&mut node, extra);
    from(node)
}

fn merge(into: &mut Value, extra: Value) {
    match (into, extra) {
        (Value::Object(into), Value::Object(extra)) => {
            for (key, value) in extra {
                merge(into.entry(key).or_insert(Value::Null), value);
            }
        }
        (into, extra) => *into = extra,
    }
}

/// A pod named `name` in `default` with one container and `extra` merged in.
fn pod_with(name: &str, extra: Value) -> Pod {
    let mut pod = json!({
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"containers": [{"name": "c"}]},
    });
    merge(&mut pod, extra);
    serde_json::from_value(pod).expect("pod")
}

fn requesting(resources: Value) -> Value {
    json!({"spec": {"containers": [{"name": "c", "resources": {"requests": resources}}]}})
}

/// The same pod, placed on `node` as the watch shows it.
fn on(node: &str, mut pod: Pod) -> Pod {
    pod.spec.get_or_insert_default().node_name = Some(node.to_string());
    pod
}

fn one_node(reason: &str, preemption: &str) -> String {
    format!(
        "0/1 nodes are available: 1 {reason}. preemption: 0/1 nodes are available: 1 {preemption}."
    )
}

const NOT_HELPFUL_TEXT: &str = "Preemption is not helpful for scheduling";
const NO_VICTIMS_TEXT: &str = "No preemption victims found for incoming pod";

#[test]
fn every_filter_rejects_a_node_with_upstreams_reason() {
    let cases = [
        (
            json!({"spec": {"unschedulable": true}}),
            json!({}),
            "node(s) were unschedulable",
            NOT_HELPFUL_TEXT,
        ),
        (
            json!({"spec": {"taints": [{"key": "dedicated", "value": "gpu", "effect": "NoSchedule"}]}}),
            json!({}),
            "node(s) had untolerated taint {dedicated: gpu}",
            NOT_HELPFUL_TEXT,
        ),
        (
            json!({"spec": {"taints": [{"key": "example.com/drain", "effect": "NoExecute"}]}}),
            json!({"spec": {"tolerations": [{"key": "dedicated", "operator": "Exists"}]}}),
            "node(s) had untolerated taint {example.com/drain: }",
            NOT_HELPFUL_TEXT,
        ),
        (
            json!({"status": {"conditions": [{"type": "Ready", "status": "False"}]}}),
            json!({}),
            "node(s) had untolerated taint {node.kubernetes.io/not-ready: }",
            NOT_HELPFUL_TEXT,
        ),
        (
            json!({"status": {"conditions": [{"type": "Ready", "status": "Unknown"}]}}),
            json!({}),
            "node(s) had untolerated taint {node.kubernetes.io/unreachable: }",
            NOT_HELPFUL_TEXT,
        ),
        (
            json!({}),
            json!({"spec": {"nodeSelector": {"disk": "ssd"}}}),
            "node(s) didn't match Pod's node affinity/selector",
            NOT_HELPFUL_TEXT,
        ),
        (
            json!({"metadata": {"labels": {"topology.kubernetes.io/zone": "z1"}}}),
            json!({"spec": {"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [{"matchExpressions": [
                    {"key": "topology.kubernetes.io/zone", "operator": "In", "values": ["z2"]}]}]}}}}}),
            "node(s) didn't match Pod's node affinity/selector",
            NOT_HELPFUL_TEXT,
        ),
        (
            json!({}),
            requesting(json!({"cpu": "4500m"})),
            "Insufficient cpu",
            NO_VICTIMS_TEXT,
        ),
        (
            json!({}),
            requesting(json!({"memory": "9Gi"})),
            "Insufficient memory",
            NO_VICTIMS_TEXT,
        ),
        (
            json!({}),
            requesting(json!({"ephemeral-storage": "101Gi"})),
            "Insufficient ephemeral-storage",
            NO_VICTIMS_TEXT,
        ),
        (
            json!({}),
            requesting(json!({"example.com/gpu": "1"})),
            "Insufficient example.com/gpu",
            NO_VICTIMS_TEXT,
        ),
        (
            json!({"status": {"allocatable": {"pods": "0"}}}),
            json!({}),
            "Too many pods",
            NO_VICTIMS_TEXT,
        ),
    ];
    for (node_extra, pod_extra, reason, preemption) in cases {
        let nodes = [node_with("a", node_extra.clone())];
        assert_eq!(
            decide_on(
                &pod_with("p", pod_extra.clone()),
                &nodes,
                &Objects::default()
            ),
            Decision::Wait(one_node(reason, preemption)),
            "node {node_extra}, pod {pod_extra}"
        );
    }
}

#[test]
fn a_node_reports_every_resource_it_lacks_and_counts_once_for_preemption() {
    let pod = pod_with("p", requesting(json!({"cpu": "5", "memory": "9Gi"})));
    assert_eq!(
        decide_on(&pod, &[node_with("a", json!({}))], &Objects::default()),
        Decision::Wait(format!(
            "0/1 nodes are available: 1 Insufficient cpu, 1 Insufficient memory. preemption: 0/1 nodes are available: 1 {NO_VICTIMS_TEXT}."
        ))
    );
}

#[test]
fn tolerations_match_taints_as_upstream() {
    let taint = |key: &str, value: &str, effect: &str| Taint {
        key: key.into(),
        value: Some(value.into()).filter(|v: &String| !v.is_empty()),
        effect: effect.into(),
        ..Taint::default()
    };
    let toleration =
        |value: Value| -> Toleration { serde_json::from_value(value).expect("toleration") };
    let cases = [
        (
            json!({"key": "k", "operator": "Equal", "value": "v", "effect": "NoSchedule"}),
            taint("k", "v", "NoSchedule"),
            true,
        ),
        (
            json!({"key": "k", "value": "v"}),
            taint("k", "v", "NoExecute"),
            true,
        ),
        (
            json!({"key": "k", "value": "w"}),
            taint("k", "v", "NoSchedule"),
            false,
        ),
        (
            json!({"key": "k", "operator": "Exists"}),
            taint("k", "anything", "NoSchedule"),
            true,
        ),
        (
            json!({"operator": "Exists"}),
            taint("any", "v", "NoExecute"),
            true,
        ),
        (
            json!({"key": "k", "operator": "Exists", "effect": "NoExecute"}),
            taint("k", "", "NoSchedule"),
            false,
        ),
        (
            json!({"key": "other", "operator": "Exists"}),
            taint("k", "", "NoSchedule"),
            false,
        ),
    ];
    for (tol, taint, expected) in cases {
        assert_eq!(
            filters::tolerates(&toleration(tol.clone()), &taint),
            expected,
            "{tol} {taint:?}"
        );
    }
}

#[test]
fn a_cordoned_or_tainted_node_takes_pods_that_tolerate_it() {
    let nodes = [node_with(
        "a",
        json!({"spec": {"unschedulable": true, "taints": [
            {"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule"},
            {"key": "dedicated", "value": "db", "effect": "NoSchedule"}]}}),
    )];
    let tolerant = pod_with(
        "p",
        json!({"spec": {"tolerations": [
            {"key": "node.kubernetes.io/unschedulable", "operator": "Exists", "effect": "NoSchedule"},
            {"key": "dedicated", "value": "db"}]}}),
    );
    assert_eq!(
        decide_on(&tolerant, &nodes, &Objects::default()),
        Decision::Bind("a".into())
    );
}

#[test]
fn requests_are_the_containers_or_the_largest_init_container_plus_overhead() {
    let cases = [
        // Two containers add up; a limit without a request is the request.
        (
            json!({"containers": [
                {"name": "a", "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}}},
                {"name": "b", "resources": {"limits": {"cpu": "200m"}}}]}),
            (300, 64 << 20),
        ),
        // An init container larger than the containers sets the request.
        (
            json!({"initContainers": [{"name": "i", "resources": {"requests": {"cpu": "1"}}}],
                   "containers": [{"name": "a", "resources": {"requests": {"cpu": "100m"}}}]}),
            (1000, 0),
        ),
        // A sidecar keeps running: it adds to the containers and to the init containers after it.
        (
            json!({"initContainers": [
                    {"name": "s", "restartPolicy": "Always", "resources": {"requests": {"cpu": "200m"}}},
                    {"name": "i", "resources": {"requests": {"cpu": "500m"}}}],
                   "containers": [{"name": "a", "resources": {"requests": {"cpu": "100m"}}}]}),
            (700, 0),
        ),
        (
            json!({"overhead": {"cpu": "250m", "memory": "1Mi"},
                   "containers": [{"name": "a", "resources": {"requests": {"cpu": "250m"}}}]}),
            (500, 1 << 20),
        ),
    ];
    for (spec, (milli_cpu, memory)) in cases {
        let pod = pod_with("p", json!({"spec": spec.clone()}));
        let (requests, _) = snapshot::requests_of(&pod);
        assert_eq!(
            (requests.milli_cpu, requests.memory),
            (milli_cpu, memory),
            "{spec}"
        );
    }
}

#[test]
fn placed_pods_use_up_their_node_until_they_go_or_finish() {
    let mut snapshot = snapshot_of(&[node_with("a", json!({}))]);
    let objects = Objects::default();
    let big = on("a", pod_with("big", requesting(json!({"cpu": "3"}))));
    let pod = pod_with("p", requesting(json!({"cpu": "2"})));
    snapshot.apply_pod(&big);
    assert_eq!(
        decide(&pod, &snapshot, &objects),
        Decision::Wait(one_node("Insufficient cpu", NO_VICTIMS_TEXT))
    );
    let mut finished = big.clone();
    finished.status.get_or_insert_default().phase = Some("Succeeded".into());
    snapshot.apply_pod(&finished);
    assert_eq!(
        decide(&pod, &snapshot, &objects),
        Decision::Bind("a".into())
    );
    snapshot.apply_pod(&big);
    snapshot.forget(&("default".into(), "big".into()));
    assert_eq!(
        decide(&pod, &snapshot, &objects),
        Decision::Bind("a".into())
    );
}

#[test]
fn a_host_port_in_use_keeps_another_pod_off_the_node() {
    let with_port = |name: &str, ip: &str| {
        pod_with(
            name,
            json!({"spec": {"containers": [{"name": "c", "ports": [
                {"containerPort": 80, "hostPort": 8080, "hostIP": ip}]}]}}),
        )
    };
    let mut snapshot = snapshot_of(&[node_with("a", json!({}))]);
    snapshot.apply_pod(&on("a", with_port("first", "")));
    assert_eq!(
        decide(
            &with_port("second", "10.0.0.1"),
            &snapshot,
            &Objects::default()
        ),
        Decision::Wait(one_node(
            "node(s) didn't have free ports for the requested pod ports",
            NO_VICTIMS_TEXT
        ))
    );
}

#[test]
fn the_issues_example_message_counts_each_nodes_reason_and_preemption_verdict() {
    let storage = Objects {
        claims: vec![claim("data", "local-path", Some("pvc-1"))],
        volumes: vec![volume_on("pvc-1", "b")],
        ..Objects::default()
    };
    let nodes = [
        node_with("a", json!({})),
        node_with("b", json!({"status": {"allocatable": {"memory": "1Gi"}}})),
        node_with("c", json!({})),
    ];
    let mut pod = pod(&["data"]);
    pod.spec.get_or_insert_default().containers[0].resources =
        Some(serde_json::from_value(json!({"requests": {"memory": "2Gi"}})).expect("resources"));
    let mut snapshot = snapshot_of(&nodes);
    // Node b lacks memory; a and c are taken by the pinned volume's affinity.
    snapshot.apply_pod(&on("b", pod_with("other", json!({}))));
    assert_eq!(
        decide(&pod, &snapshot, &storage),
        Decision::Wait(format!(
            "0/3 nodes are available: 1 Insufficient memory, 2 node(s) had volume node affinity conflict. preemption: 0/3 nodes are available: 1 {NO_VICTIMS_TEXT}, 2 {NOT_HELPFUL_TEXT}."
        ))
    );
}

#[test]
fn a_pod_that_never_preempts_says_so() {
    let pod = pod_with(
        "p",
        json!({"spec": {"preemptionPolicy": "Never", "containers": [{"name": "c",
            "resources": {"requests": {"cpu": "8"}}}]}}),
    );
    assert_eq!(
        decide_on(&pod, &[node_with("a", json!({}))], &Objects::default()),
        Decision::Wait(
            "0/1 nodes are available: 1 Insufficient cpu. preemption: not eligible due to preemptionPolicy=Never."
                .into()
        )
    );
}

/// Decides for each pod in turn, placing it where it goes, as the loop assumes pods.
fn schedule_all(snapshot: &mut Snapshot, pods: &[Pod], objects: &Objects) -> Vec<Decision> {
    pods.iter()
        .map(|pod| {
            let decision = decide(pod, snapshot, objects);
            if let Decision::Bind(node) = &decision {
                snapshot.assume(pod, node);
            }
            decision
        })
        .collect()
}

fn binds(nodes: &[&str]) -> Vec<Decision> {
    nodes
        .iter()
        .map(|n| Decision::Bind(n.to_string()))
        .collect()
}

fn web_pod(index: usize, extra: Value) -> Pod {
    let mut pod = pod_with(
        &format!("web-{index}"),
        json!({"metadata": {"labels": {"app": "web"}}}),
    );
    let mut value = serde_json::to_value(&pod).expect("pod");
    merge(&mut value, extra);
    pod = serde_json::from_value(value).expect("pod");
    pod
}

fn anti_affinity(key: &str) -> Value {
    json!({"spec": {"affinity": {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
        {"labelSelector": {"matchLabels": {"app": "web"}}, "topologyKey": key}]}}}})
}

#[test]
fn required_anti_affinity_runs_one_pod_per_node_and_leaves_the_rest_pending() {
    let mut snapshot = snapshot_of(&[node_with("a", json!({})), node_with("b", json!({}))]);
    let pods: Vec<Pod> = (0..3)
        .map(|i| web_pod(i, anti_affinity(HOSTNAME_LABEL)))
        .collect();
    let decisions = schedule_all(&mut snapshot, &pods, &Objects::default());
    assert_eq!(decisions[..2], binds(&["a", "b"])[..]);
    assert_eq!(
        decisions[2],
        Decision::Wait(format!(
            "0/2 nodes are available: 2 node(s) didn't match pod anti-affinity rules. preemption: 0/2 nodes are available: 2 {NO_VICTIMS_TEXT}."
        ))
    );
}

#[test]
fn anti_affinity_on_zones_keeps_a_second_pod_out_of_the_first_ones_zone() {
    let zone = |z: &str| json!({"metadata": {"labels": {"topology.kubernetes.io/zone": z}}});
    let mut snapshot = snapshot_of(&[
        node_with("a", zone("z1")),
        node_with("b", zone("z1")),
        node_with("c", zone("z2")),
    ]);
    let pods: Vec<Pod> = (0..2)
        .map(|i| web_pod(i, anti_affinity("topology.kubernetes.io/zone")))
        .collect();
    assert_eq!(
        schedule_all(&mut snapshot, &pods, &Objects::default()),
        binds(&["a", "c"])
    );
}

#[test]
fn a_placed_pods_anti_affinity_keeps_the_pods_it_names_away() {
    let mut snapshot = snapshot_of(&[node_with("a", json!({})), node_with("b", json!({}))]);
    let loner = pod_with(
        "loner",
        json!({"spec": {"affinity": {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
            {"labelSelector": {"matchLabels": {"app": "web"}}, "topologyKey": HOSTNAME_LABEL}]}}}}),
    );
    snapshot.apply_pod(&on("a", loner));
    assert_eq!(
        decide(&web_pod(0, json!({})), &snapshot, &Objects::default()),
        Decision::Bind("b".into())
    );
    snapshot.remove_node("b");
    assert_eq!(
        decide(&web_pod(0, json!({})), &snapshot, &Objects::default()),
        Decision::Wait(one_node(
            "node(s) didn't satisfy existing pods anti-affinity rules",
            NO_VICTIMS_TEXT
        ))
    );
}

#[test]
fn required_affinity_follows_the_pods_it_names_and_the_first_of_a_group_goes_anywhere() {
    let wants_cache = json!({"spec": {"affinity": {"podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
        {"labelSelector": {"matchLabels": {"app": "cache"}}, "topologyKey": HOSTNAME_LABEL}]}}}});
    let mut snapshot = snapshot_of(&[node_with("a", json!({})), node_with("b", json!({}))]);
    let objects = Objects::default();
    assert_eq!(
        decide(&pod_with("p", wants_cache.clone()), &snapshot, &objects),
        Decision::Wait(format!(
            "0/2 nodes are available: 2 node(s) didn't match pod affinity rules. preemption: 0/2 nodes are available: 2 {NOT_HELPFUL_TEXT}."
        ))
    );
    let mut first_cache = wants_cache.clone();
    merge(
        &mut first_cache,
        json!({"metadata": {"labels": {"app": "cache"}}}),
    );
    assert_eq!(
        decide(&pod_with("c0", first_cache), &snapshot, &objects),
        Decision::Bind("a".into())
    );
    snapshot.apply_pod(&on(
        "b",
        pod_with("c1", json!({"metadata": {"labels": {"app": "cache"}}})),
    ));
    assert_eq!(
        decide(&pod_with("p", wants_cache), &snapshot, &objects),
        Decision::Bind("b".into())
    );
}

fn web_set() -> Arc<StatefulSet> {
    from(
        json!({"metadata": {"name": "web", "namespace": "default", "uid": "u1"},
        "spec": {"selector": {"matchLabels": {"app": "web"}}, "serviceName": "web",
                 "template": {"metadata": {"labels": {"app": "web"}}}}}),
    )
}

fn owned_by_web(index: usize) -> Pod {
    web_pod(
        index,
        json!({"metadata": {"ownerReferences": [{"apiVersion": "apps/v1", "kind": "StatefulSet",
            "name": "web", "uid": "u1", "controller": true}]}}),
    )
}

#[test]
fn a_sets_pods_spread_one_per_node_even_when_one_node_is_far_larger() {
    // LeastAllocated alone would put all three on the large node.
    let large = json!({"status": {"allocatable": {"cpu": "64", "memory": "256Gi"}}});
    let nodes = [
        node_with("a", large),
        node_with("b", json!({})),
        node_with("c", json!({})),
    ];
    let objects = Objects {
        sets: vec![web_set()],
        ..Objects::default()
    };
    let pods: Vec<Pod> = (0..3).map(owned_by_web).collect();
    let mut snapshot = snapshot_of(&nodes);
    let mut placed: Vec<Decision> = schedule_all(&mut snapshot, &pods, &objects);
    placed.sort_by_key(|d| format!("{d:?}"));
    assert_eq!(placed, binds(&["a", "b", "c"]));
    // Without the set, nothing spreads them.
    let mut snapshot = snapshot_of(&nodes);
    let alone = schedule_all(&mut snapshot, &pods, &Objects::default());
    assert_eq!(alone, binds(&["a", "a", "a"]));
}

#[test]
fn the_pods_of_a_service_spread_too() {
    let large = json!({"status": {"allocatable": {"cpu": "64", "memory": "256Gi"}}});
    let nodes = [node_with("a", large), node_with("b", json!({}))];
    let objects = Objects {
        services: vec![from(
            json!({"metadata": {"name": "web", "namespace": "default"},
            "spec": {"selector": {"app": "web"}}}),
        )],
        ..Objects::default()
    };
    let pods: Vec<Pod> = (0..2).map(|i| web_pod(i, json!({}))).collect();
    let mut placed = schedule_all(&mut snapshot_of(&nodes), &pods, &objects);
    placed.sort_by_key(|d| format!("{d:?}"));
    assert_eq!(placed, binds(&["a", "b"]));
}

#[test]
fn scores_prefer_free_nodes_tolerated_preferences_and_preferred_affinity() {
    let objects = Objects::default();
    // LeastAllocated: the node with room left.
    let mut snapshot = snapshot_of(&[node_with("a", json!({})), node_with("b", json!({}))]);
    snapshot.apply_pod(&on(
        "a",
        pod_with("busy", requesting(json!({"cpu": "2", "memory": "4Gi"}))),
    ));
    assert_eq!(
        decide(&pod_with("p", json!({})), &snapshot, &objects),
        Decision::Bind("b".into())
    );
    // TaintToleration: a PreferNoSchedule taint the pod does not tolerate.
    let prefer_not = json!({"spec": {"taints": [{"key": "spot", "effect": "PreferNoSchedule"}]}});
    let nodes = [node_with("a", prefer_not), node_with("b", json!({}))];
    assert_eq!(
        decide_on(&pod_with("p", json!({})), &nodes, &objects),
        Decision::Bind("b".into())
    );
    let tolerant = pod_with(
        "p",
        json!({"spec": {"tolerations": [{"key": "spot", "operator": "Exists"}]}}),
    );
    assert_eq!(
        decide_on(&tolerant, &nodes, &objects),
        Decision::Bind("a".into())
    );
    // NodeAffinity: the preferred zone.
    let zone = |z: &str| json!({"metadata": {"labels": {"topology.kubernetes.io/zone": z}}});
    let nodes = [node_with("a", zone("z1")), node_with("b", zone("z2"))];
    let prefers_z2 = pod_with(
        "p",
        json!({"spec": {"affinity": {"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
            {"weight": 10, "preference": {"matchExpressions": [
                {"key": "topology.kubernetes.io/zone", "operator": "In", "values": ["z2"]}]}}]}}}}),
    );
    assert_eq!(
        decide_on(&prefers_z2, &nodes, &objects),
        Decision::Bind("b".into())
    );
    // InterPodAffinity: near the pod it prefers, though that node is busier.
    let mut snapshot = snapshot_of(&[node_with("a", json!({})), node_with("b", json!({}))]);
    snapshot.apply_pod(&on(
        "b",
        pod_with("cache", json!({"metadata": {"labels": {"app": "cache"}}})),
    ));
    let near_cache = pod_with(
        "p",
        json!({"spec": {"affinity": {"podAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
            {"weight": 50, "podAffinityTerm": {"labelSelector": {"matchLabels": {"app": "cache"}},
                "topologyKey": HOSTNAME_LABEL}}]}}}}),
    );
    assert_eq!(
        decide(&near_cache, &snapshot, &objects),
        Decision::Bind("b".into())
    );
}

#[test]
fn only_changes_that_scheduling_reads_count_as_node_changes() {
    let mut snapshot = Snapshot::default();
    assert_eq!(
        snapshot.apply_node(&node_with("a", json!({}))),
        snapshot::Effect::NodeChanged
    );
    let heartbeat = node_with(
        "a",
        json!({"status": {"conditions": [{"type": "Ready", "status": "True", "lastHeartbeatTime": "2026-01-01T00:00:00Z"}]}}),
    );
    assert_eq!(snapshot.apply_node(&heartbeat), snapshot::Effect::Nothing);
    let labelled = node_with("a", json!({"metadata": {"labels": {"disk": "ssd"}}}));
    assert_eq!(
        snapshot.apply_node(&labelled),
        snapshot::Effect::NodeChanged
    );
    let pod = pod_with("p", json!({}));
    snapshot.assume(&pod, "a");
    // The watch then shows the binding: already counted.
    assert_eq!(snapshot.apply_pod(&on("a", pod)), snapshot::Effect::Nothing);
    assert_eq!(snapshot.nodes["a"].pods.len(), 1);
}
