//! The simulated node against an in-process API server: it registers, runs the pods bound to
//! it (Running and Ready, a bookkeeping IP from its pod CIDR), confirms graceful deletes, and
//! honours the `simulation.petset.dev/*` knobs. Everything goes through the API, as a node's
//! work does.

use std::net::Ipv4Addr;
use std::str::FromStr;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, WatchEvent, WatchParams};
use petset_apiserver::test_cluster::TestCluster;
use petset_runtime::network::Cidr;
use serde_json::{Value, json};

const NODE: &str = "sim-node";
const POD_CIDR: &str = "10.213.7.0/24";
const PODS: &str = "/api/v1/namespaces/default/pods";
const FENCE: &str = petset_agent::node::FENCE_DEADLINE_ANNOTATION;
/// How long a condition may take before a test gives up (a hang guard, not a speed check).
const PATIENCE: Duration = Duration::from_secs(20);

/// A cluster with the simulated node running on it; the node stops when this is dropped.
struct SimulatedCluster {
    cluster: TestCluster,
    node: tokio::task::JoinHandle<()>,
}

impl SimulatedCluster {
    async fn start() -> Self {
        let cluster = TestCluster::start().await;
        let cidr = Cidr::from_str(POD_CIDR).expect("a pod CIDR");
        let node = tokio::spawn(petset_agent::simulated::run(
            cluster.client(),
            NODE.to_string(),
            cidr,
        ));
        Self { cluster, node }
    }

    async fn create_pod(&self, pod: Value) {
        let (code, answer) = self.cluster.json("POST", PODS, pod).await;
        assert_eq!(code, 201, "{answer}");
    }

    /// GETs `path` until `done` holds for the status code and the answer; the last answer.
    async fn eventually(&self, path: &str, done: impl Fn(u16, &Value) -> bool) -> Value {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            let (code, answer) = self.cluster.json("GET", path, Value::Null).await;
            if done(code, &answer) {
                return answer;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{path} never got there: {code} {answer}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    async fn running(&self, name: &str) -> Value {
        self.eventually(&format!("{PODS}/{name}"), |_, pod| {
            pod["status"]["phase"] == "Running"
        })
        .await
    }
}

impl Drop for SimulatedCluster {
    fn drop(&mut self) {
        self.node.abort();
    }
}

fn pod(name: &str, node: &str, image: &str, annotations: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "annotations": annotations},
        "spec": {"nodeName": node, "containers": [{"name": "app", "image": image}]}})
}

fn condition<'a>(pod: &'a Value, kind: &str) -> &'a Value {
    pod["status"]["conditions"]
        .as_array()
        .and_then(|conditions| conditions.iter().find(|c| c["type"] == kind))
        .map_or(&Value::Null, |c| &c["status"])
}

fn pod_ip(pod: &Value) -> Ipv4Addr {
    pod["status"]["podIP"]
        .as_str()
        .and_then(|ip| ip.parse().ok())
        .unwrap_or_else(|| panic!("a pod IP: {pod}"))
}

#[tokio::test]
async fn the_node_registers_with_its_pod_cidr_and_keeps_a_lease() {
    let sim = SimulatedCluster::start().await;
    let node = sim
        .eventually(&format!("/api/v1/nodes/{NODE}"), |code, _| code == 200)
        .await;
    assert_eq!(node["spec"]["podCIDR"], POD_CIDR, "{node}");
    assert_eq!(condition(&node, "Ready"), "True", "{node}");
    sim.eventually(
        &format!("/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/{NODE}"),
        |code, lease| code == 200 && lease["spec"]["holderIdentity"] == NODE,
    )
    .await;
}

/// A fenced simulated node promises on its Node that its pods stop within the deadline even if
/// its agent dies (they are bookkeeping in its memory, so they die with it); the same node
/// started again without a fence takes the promise back.
#[tokio::test]
async fn a_fenced_simulated_node_advertises_its_deadline_and_an_unfenced_run_takes_it_back() {
    let cluster = TestCluster::start().await;
    let cidr = Cidr::from_str(POD_CIDR).expect("a pod CIDR");
    let fence = petset_agent::fence::Fence::new(Duration::from_secs(30))
        .expect("a fence")
        .with_pods_that_die_with_the_agent();
    let fenced = tokio::spawn(petset_agent::simulated::run_fenced(
        cluster.client(),
        NODE.to_string(),
        cidr,
        fence,
    ));
    let mut sim = SimulatedCluster {
        cluster,
        node: fenced,
    };
    let annotation = |node: &Value| node["metadata"]["annotations"][FENCE].clone();
    let node = sim
        .eventually(&format!("/api/v1/nodes/{NODE}"), |code, node| {
            code == 200 && annotation(node) == "30"
        })
        .await;
    assert_eq!(condition(&node, "Ready"), "True", "{node}");

    sim.node.abort();
    sim.node = tokio::spawn(petset_agent::simulated::run(
        sim.cluster.client(),
        NODE.to_string(),
        cidr,
    ));
    sim.eventually(&format!("/api/v1/nodes/{NODE}"), |code, node| {
        code == 200 && annotation(node).is_null()
    })
    .await;
}

#[tokio::test]
async fn bound_pods_run_and_are_ready_with_distinct_addresses_from_the_pod_cidr() {
    let sim = SimulatedCluster::start().await;
    let cidr = Cidr::from_str(POD_CIDR).expect("a pod CIDR");
    for name in ["web-0", "web-1"] {
        sim.create_pod(pod(name, NODE, "busybox:1.36", json!({})))
            .await;
    }
    let mut addresses = Vec::new();
    for name in ["web-0", "web-1"] {
        let running = sim
            .eventually(&format!("{PODS}/{name}"), |_, pod| {
                condition(pod, "Ready") == "True"
            })
            .await;
        assert_eq!(running["status"]["phase"], "Running");
        assert_eq!(condition(&running, "ContainersReady"), "True");
        let status = &running["status"]["containerStatuses"][0];
        assert_eq!(status["name"], "app");
        assert_eq!(status["ready"], true);
        assert!(
            status["state"]["running"]["startedAt"].is_string(),
            "{running}"
        );
        let ip = pod_ip(&running);
        assert!(cidr.contains(ip), "{ip} is in {POD_CIDR}");
        // The network's address and the bridge's (its first) are never a pod's.
        assert!(
            u32::from(ip) >= u32::from(cidr.network()) + 2,
            "{ip} is past the network and bridge addresses"
        );
        addresses.push(ip);
    }
    assert_ne!(addresses[0], addresses[1]);
}

#[tokio::test]
async fn pods_bound_to_another_node_are_not_this_nodes() {
    let sim = SimulatedCluster::start().await;
    sim.create_pod(pod("elsewhere", "other-node", "busybox", json!({})))
        .await;
    sim.create_pod(pod("here", NODE, "busybox", json!({})))
        .await;
    sim.running("here").await;
    let (_, elsewhere) = sim
        .cluster
        .json("GET", &format!("{PODS}/elsewhere"), Value::Null)
        .await;
    assert_eq!(elsewhere["status"]["phase"], "Pending", "{elsewhere}");
    assert!(elsewhere["status"]["podIP"].is_null(), "{elsewhere}");
}

#[tokio::test]
async fn the_ready_false_annotation_keeps_a_running_pod_unready() {
    let sim = SimulatedCluster::start().await;
    let annotations = json!({"simulation.petset.dev/ready": "false"});
    sim.create_pod(pod("unready", NODE, "busybox", annotations))
        .await;
    let running = sim.running("unready").await;
    assert_eq!(condition(&running, "Ready"), "False", "{running}");
    assert_eq!(running["status"]["containerStatuses"][0]["ready"], false);
}

#[tokio::test]
async fn an_image_tagged_never_ready_is_never_ready() {
    let sim = SimulatedCluster::start().await;
    sim.create_pod(pod("never", NODE, "busybox:never-ready", json!({})))
        .await;
    let running = sim.running("never").await;
    assert_eq!(condition(&running, "Ready"), "False", "{running}");
}

#[tokio::test]
async fn ready_after_ms_makes_a_pod_running_first_and_ready_later() {
    let sim = SimulatedCluster::start().await;
    // Every write to the pod, in order: a watch misses none, however slow this test runs.
    let pods: Api<Pod> = Api::namespaced(sim.cluster.client(), "default");
    let params = WatchParams::default().fields("metadata.name=slow");
    let mut events = pods.watch(&params, "0").await.expect("a watch").boxed();
    let annotations = json!({"simulation.petset.dev/ready-after-ms": "2000"});
    sim.create_pod(pod("slow", NODE, "busybox", annotations))
        .await;
    let mut readiness_while_running = Vec::new();
    while readiness_while_running.last() != Some(&true) {
        let event = tokio::time::timeout(PATIENCE, events.next())
            .await
            .expect("the pod becomes ready")
            .expect("the watch goes on")
            .expect("a watch event");
        let WatchEvent::Modified(pod) = event else {
            continue;
        };
        let status = pod.status.unwrap_or_default();
        if status.phase.as_deref() != Some("Running") {
            continue;
        }
        let ready = status
            .conditions
            .unwrap_or_default()
            .iter()
            .any(|c| c.type_ == "Ready" && c.status == "True");
        readiness_while_running.push(ready);
    }
    assert_eq!(
        readiness_while_running.first(),
        Some(&false),
        "Running before Ready: {readiness_while_running:?}"
    );
}

#[tokio::test]
async fn a_graceful_delete_of_a_running_pod_completes() {
    let sim = SimulatedCluster::start().await;
    // A grace period near i64::MAX too: the node waits as long as it would for any.
    let mut patient = pod("patient", NODE, "busybox", json!({}));
    patient["spec"]["terminationGracePeriodSeconds"] = json!(i64::MAX);
    for pod in [pod("web-0", NODE, "busybox", json!({})), patient] {
        sim.create_pod(pod).await;
    }
    for name in ["web-0", "patient"] {
        sim.running(name).await;
        let (code, deleting) = sim
            .cluster
            .json("DELETE", &format!("{PODS}/{name}"), Value::Null)
            .await;
        assert_eq!(code, 200, "{deleting}");
        assert!(
            deleting["metadata"]["deletionGracePeriodSeconds"].as_i64() > Some(0),
            "a graceful delete: {deleting}"
        );
    }
    for name in ["web-0", "patient"] {
        sim.eventually(&format!("{PODS}/{name}"), |code, _| code == 404)
            .await;
    }
}
