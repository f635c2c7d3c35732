//! The pod worker over a fake runtime and the in-process API (`TestCluster`): what it starts,
//! the status it writes, and what is left when the node stops.

use std::collections::{BTreeSet, HashMap};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use petset_apiserver::test_cluster::TestCluster;
use petset_runtime::images::Image;
use petset_runtime::pods::{ContainerConfig, RuntimeError, SandboxConfig};
use serde_json::json;
use tokio::sync::oneshot;

use super::{Shared, Workers};
use crate::downward::Allocatable;
use crate::fence::{Fence, State};
use crate::kubelet_events::KubeletEvents;
use crate::runtime::{PodRuntime, StartedContainer};
use crate::testing::{PATIENCE, eventually};

mod token_volume_tests;

const NODE: &str = "node-a";

/// A runtime that keeps its sandboxes and containers in memory. With a gate, each start
/// reports that it began and then blocks until the test releases it.
/// A running container's key (pod, name) and the sender of its exit.
type Running = HashMap<(String, String), oneshot::Sender<Option<i32>>>;

#[derive(Default)]
struct FakeRuntime {
    sandboxes: Mutex<BTreeSet<String>>,
    /// Running containers, by (pod, name), each with the sender of its exit.
    running: Mutex<Running>,
    gate: Option<Gate>,
    /// Whether containers ignore TERM (only KILL ends them).
    ignores_term: bool,
    /// Where pods' directories are (their volumes' files); none: a path that cannot be made.
    root: Option<PathBuf>,
}

struct Gate {
    began: Mutex<std::sync::mpsc::Sender<()>>,
    release: Mutex<std::sync::mpsc::Receiver<()>>,
}

impl FakeRuntime {
    fn containers(&self) -> Vec<(String, String)> {
        let running = self.running.lock().expect("running");
        running.keys().cloned().collect()
    }

    fn sandboxes(&self) -> Vec<String> {
        self.sandboxes
            .lock()
            .expect("sandboxes")
            .iter()
            .cloned()
            .collect()
    }

    fn end(&self, pod: &str, name: &str, code: Option<i32>) {
        let ended = self
            .running
            .lock()
            .expect("running")
            .remove(&(pod.to_string(), name.to_string()));
        if let Some(exit) = ended {
            let _ = exit.send(code);
        }
    }
}

impl PodRuntime for FakeRuntime {
    fn image(&self, reference: &str) -> Result<Image, String> {
        Ok(Image {
            name: reference.into(),
            id: format!("sha256:{reference}"),
            rootfs: PathBuf::from("/nonexistent"),
            entrypoint: vec!["/bin/sh".into()],
            cmd: Vec::new(),
            env: Vec::new(),
            working_dir: None,
            user: None,
        })
    }

    fn create_sandbox(&self, config: &SandboxConfig) -> Result<Option<Ipv4Addr>, RuntimeError> {
        self.sandboxes
            .lock()
            .expect("sandboxes")
            .insert(config.id.clone());
        Ok(Some(Ipv4Addr::new(10, 0, 0, 2)))
    }

    fn start(
        &self,
        pod: &str,
        config: &ContainerConfig,
        _log: &Path,
    ) -> Result<StartedContainer, RuntimeError> {
        if let Some(gate) = &self.gate {
            let _ = gate.began.lock().expect("gate").send(());
            let _ = gate.release.lock().expect("gate").recv();
        }
        let (exited, exit) = oneshot::channel();
        let key = (pod.to_string(), config.name.clone());
        self.running.lock().expect("running").insert(key, exited);
        Ok(StartedContainer {
            stdin: None,
            exit: Box::pin(async move { exit.await.unwrap_or(None) }),
        })
    }

    fn signal(&self, pod: &str, container: &str, signal: &str) -> Result<(), RuntimeError> {
        match signal {
            "TERM" if self.ignores_term => {}
            "TERM" => self.end(pod, container, Some(143)),
            _ => self.end(pod, container, None),
        }
        Ok(())
    }

    fn kill_all(&self, pod: &str) -> Result<(), RuntimeError> {
        for (p, name) in self.containers() {
            if p == pod {
                self.end(pod, &name, None);
            }
        }
        Ok(())
    }

    fn remove_sandbox(&self, pod: &str) -> Result<(), RuntimeError> {
        let names: Vec<String> = self
            .containers()
            .into_iter()
            .filter(|(p, _)| p == pod)
            .map(|(_, name)| name)
            .collect();
        for name in names {
            self.end(pod, &name, None);
        }
        self.sandboxes.lock().expect("sandboxes").remove(pod);
        Ok(())
    }

    fn pods(&self) -> Vec<String> {
        self.sandboxes()
    }

    fn pod_dir(&self, pod: &str) -> PathBuf {
        self.root
            .clone()
            .unwrap_or_else(|| PathBuf::from("/nonexistent"))
            .join("pods")
            .join(pod)
    }

    fn log_path(&self, pod: &str, container: &str, attempt: u32) -> PathBuf {
        self.pod_dir(pod).join(format!("{container}-{attempt}.log"))
    }
}

async fn node_of(
    cluster: &TestCluster,
    runtime: Arc<FakeRuntime>,
) -> (Arc<Workers>, tokio::task::JoinHandle<()>) {
    fenced_node_of(cluster, runtime, Fence::lowered_for_tests()).await
}

/// A node with a 2 s fence whose Lease renewals fail while `cut` is set (its pods' API still
/// answers), with its lease loop, fence watchdog and pod workers running.
struct FencedNode {
    fence: Fence,
    cut: Arc<AtomicBool>,
    lease: tokio::task::JoinHandle<()>,
    watchdog: tokio::task::JoinHandle<()>,
    workers: Arc<Workers>,
    node: tokio::task::JoinHandle<()>,
}

impl FencedNode {
    async fn start(cluster: &TestCluster, runtime: Arc<dyn PodRuntime>) -> Self {
        let fence = Fence::new(Duration::from_secs(2)).expect("a fence");
        let cut = Arc::new(AtomicBool::new(false));
        let lease = tokio::spawn(crate::node::keep_fenced_lease(
            cuttable_client(cluster, cut.clone()),
            NODE.to_string(),
            fence.clone(),
        ));
        let watchdog = tokio::spawn(fence.clone().watch(runtime.clone()));
        let (workers, node) = fenced_node_of(cluster, runtime, fence.clone()).await;
        Self {
            fence,
            cut,
            lease,
            watchdog,
            workers,
            node,
        }
    }

    async fn stop(self) {
        self.lease.abort();
        self.watchdog.abort();
        self.node.abort();
        self.workers.stop(Duration::ZERO).await;
    }
}

async fn fenced_node_of(
    cluster: &TestCluster,
    runtime: Arc<dyn PodRuntime>,
    fence: Fence,
) -> (Arc<Workers>, tokio::task::JoinHandle<()>) {
    node_with_client(cluster.client(), runtime, fence)
}

fn node_with_client(
    client: kube::Client,
    runtime: Arc<dyn PodRuntime>,
    fence: Fence,
) -> (Arc<Workers>, tokio::task::JoinHandle<()>) {
    let shared = Arc::new(Shared {
        stdins: super::Stdins::default(),
        client: client.clone(),
        runtime,
        dns: None,
        events: KubeletEvents::new(client, NODE),
        allocatable: Allocatable {
            cpu: None,
            memory: None,
            ephemeral_storage: None,
        },
        volumes_root: None,
        fence,
    });
    let workers = Arc::new(Workers::default());
    let watching = workers.clone();
    let node = tokio::spawn(async move { super::run(shared, NODE, &watching).await });
    (workers, node)
}

async fn create_pod(cluster: &TestCluster, name: &str) -> Api<Pod> {
    create_pod_with_grace(cluster, name, 1).await
}

async fn create_pod_with_grace(cluster: &TestCluster, name: &str, grace: i64) -> Api<Pod> {
    let pods: Api<Pod> = Api::namespaced(cluster.client(), "default");
    // These tests are about the lifecycle: no token volume (the fake runtime's pods have no
    // directory, and the fake API no TokenRequest; `token_volume_tests` have both).
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {"nodeName": NODE, "terminationGracePeriodSeconds": grace,
                 "automountServiceAccountToken": false,
                 "containers": [{"name": "app", "image": "busybox"}]},
    }))
    .expect("pod");
    pods.create(&PostParams::default(), &pod)
        .await
        .expect("create pod");
    pods
}

#[tokio::test]
async fn a_stop_during_a_start_leaves_no_container() {
    let cluster = TestCluster::start().await;
    let (began, began_rx) = std::sync::mpsc::channel();
    let (release, release_rx) = std::sync::mpsc::channel();
    let runtime = Arc::new(FakeRuntime {
        gate: Some(Gate {
            began: Mutex::new(began),
            release: Mutex::new(release_rx),
        }),
        ..FakeRuntime::default()
    });
    let (workers, node) = node_of(&cluster, runtime.clone()).await;
    create_pod(&cluster, "web-0").await;
    let began = tokio::task::spawn_blocking(move || began_rx.recv_timeout(PATIENCE));
    began.await.expect("join").expect("the start began");
    // The node stops while the start is in flight on the blocking pool: aborting the node's
    // task cannot stop it, so the stop must wait for it and undo it.
    node.abort();
    let stopping = tokio::spawn({
        let workers = workers.clone();
        async move { workers.stop(Duration::from_secs(1)).await }
    });
    release.send(()).expect("release the start");
    tokio::time::timeout(PATIENCE, stopping)
        .await
        .expect("the stop ends")
        .expect("join");
    assert_eq!(runtime.containers(), Vec::<(String, String)>::new());
    assert_eq!(runtime.sandboxes(), Vec::<String>::new());
}

#[tokio::test]
async fn a_pod_runs_and_a_graceful_delete_stops_it_and_confirms() {
    let cluster = TestCluster::start().await;
    let runtime = Arc::new(FakeRuntime::default());
    let (workers, node) = node_of(&cluster, runtime.clone()).await;
    let pods = create_pod(&cluster, "web-0").await;
    eventually("the pod is Running and Ready", async || {
        let pod = pods.get("web-0").await.expect("get");
        let status = serde_json::to_value(pod.status).expect("status");
        status["phase"] == "Running"
            && status["podIP"] == "10.0.0.2"
            && status["containerStatuses"][0]["ready"] == true
            && status["conditions"].as_array().is_some_and(|c| {
                c.iter()
                    .any(|c| c["type"] == "Ready" && c["status"] == "True")
            })
    })
    .await;
    assert_eq!(runtime.containers().len(), 1);
    pods.delete("web-0", &DeleteParams::default())
        .await
        .expect("delete");
    eventually("the deletion is confirmed", async || {
        pods.get_opt("web-0").await.expect("get").is_none()
    })
    .await;
    assert_eq!(runtime.containers(), Vec::<(String, String)>::new());
    assert_eq!(runtime.sandboxes(), Vec::<String>::new());
    node.abort();
    workers.stop(Duration::ZERO).await;
}

#[tokio::test]
async fn a_ready_condition_the_server_set_false_is_written_again() {
    let cluster = TestCluster::start().await;
    let runtime = Arc::new(FakeRuntime::default());
    let (workers, node) = node_of(&cluster, runtime.clone()).await;
    let pods = create_pod(&cluster, "web-0").await;
    let ready = async || {
        let pod = pods.get("web-0").await.expect("get");
        let status = serde_json::to_value(pod.status).expect("status");
        status["conditions"]
            .as_array()
            .and_then(|c| c.iter().find(|c| c["type"] == "Ready"))
            .and_then(|c| c["status"].as_str().map(str::to_string))
    };
    eventually("the pod is Ready", async || {
        ready().await.as_deref() == Some("True")
    })
    .await;
    // The server's node lifecycle controller marks it not Ready while the node was silent.
    pods.patch_status(
        "web-0",
        &PatchParams::default(),
        &Patch::Strategic(json!({"status": {"conditions": [
            {"type": "Ready", "status": "False"}]}})),
    )
    .await
    .expect("mark not ready");
    eventually("the node writes Ready again", async || {
        ready().await.as_deref() == Some("True")
    })
    .await;
    node.abort();
    workers.stop(Duration::ZERO).await;
}

#[tokio::test]
async fn a_node_that_stops_cuts_a_terminating_pods_long_grace_period_to_its_own() {
    let cluster = TestCluster::start().await;
    let runtime = Arc::new(FakeRuntime {
        ignores_term: true,
        ..FakeRuntime::default()
    });
    let (workers, node) = node_of(&cluster, runtime.clone()).await;
    let pods = create_pod_with_grace(&cluster, "slow", 3600).await;
    eventually("the container runs", async || {
        runtime.containers().len() == 1
    })
    .await;
    pods.delete("slow", &DeleteParams::default())
        .await
        .expect("delete");
    // The worker marks the pod unready as it starts to terminate it.
    eventually("the pod terminates", async || {
        let pod = pods.get("slow").await.expect("get");
        let status = serde_json::to_value(pod.status).expect("status");
        status["containerStatuses"][0]["ready"] == false
    })
    .await;
    node.abort();
    // Without the cut, the stop would wait out the pod's hour.
    tokio::time::timeout(PATIENCE, workers.stop(Duration::ZERO))
        .await
        .expect("the stop ends within the node's grace period");
    assert_eq!(runtime.containers(), Vec::<(String, String)>::new());
    assert_eq!(runtime.sandboxes(), Vec::<String>::new());
}

/// A client of the cluster whose requests fail while `cut` is set: the API out of reach.
fn cuttable_client(cluster: &TestCluster, cut: Arc<AtomicBool>) -> kube::Client {
    type BoxError = Box<dyn std::error::Error + Send + Sync>;
    let inner = cluster.client();
    let service = tower::service_fn(move |request: axum::http::Request<kube::client::Body>| {
        let inner = inner.clone();
        let cut = cut.clone();
        async move {
            if cut.load(Ordering::SeqCst) {
                return Err::<axum::http::Response<kube::client::Body>, BoxError>(
                    "the API is out of reach".into(),
                );
            }
            inner.send(request).await.map_err(BoxError::from)
        }
    });
    kube::Client::new(service, "default")
}

/// The state of a pod's first container as its status has it.
async fn container_state(pods: &Api<Pod>, name: &str) -> serde_json::Value {
    let pod = pods.get(name).await.expect("get");
    let status = serde_json::to_value(pod.status).expect("status");
    status["containerStatuses"][0]["state"].clone()
}

#[tokio::test]
async fn a_node_that_cannot_renew_its_lease_kills_its_containers_and_starts_none_until_it_can() {
    let cluster = TestCluster::start().await;
    let runtime = Arc::new(FakeRuntime::default());
    let fenced = FencedNode::start(&cluster, runtime.clone()).await;
    let (fence, cut) = (fenced.fence.clone(), fenced.cut.clone());
    let pods = create_pod(&cluster, "web-0").await;
    eventually("web-0's container runs", async || {
        runtime.containers().len() == 1
    })
    .await;

    // The lease's requests fail from now on; the pods' API still answers, so what the
    // workers write can be seen.
    cut.store(true, Ordering::SeqCst);
    eventually("the fence rises", async || fence.state() == State::Raised).await;
    eventually("web-0's container is killed and held back", async || {
        runtime.containers().is_empty()
            && container_state(&pods, "web-0").await["waiting"]["reason"] == "NodeFenced"
    })
    .await;
    create_pod(&cluster, "web-1").await;
    eventually("web-1's first start is held back", async || {
        container_state(&pods, "web-1").await["waiting"]["reason"] == "NodeFenced"
    })
    .await;
    let state = container_state(&pods, "web-1").await;
    assert_eq!(
        state["waiting"]["message"],
        "the node could not renew its Lease for 2s; containers are stopped until it can"
    );
    assert_eq!(fence.state(), State::Raised);
    assert_eq!(runtime.containers(), Vec::<(String, String)>::new());
    let events: Api<k8s_openapi::api::core::v1::Event> =
        Api::namespaced(cluster.client(), "default");
    eventually("web-1 has a NodeFenced warning", async || {
        let list = events.list(&Default::default()).await.expect("events");
        list.items.iter().any(|e| {
            e.reason.as_deref() == Some("NodeFenced")
                && e.type_.as_deref() == Some("Warning")
                && e.involved_object.name.as_deref() == Some("web-1")
        })
    })
    .await;

    // Renewals succeed again: the fence is lowered and both pods run (web-0 after its
    // back-off).
    cut.store(false, Ordering::SeqCst);
    eventually("the fence is lowered", async || {
        fence.state() == State::Lowered
    })
    .await;
    eventually("both pods run again", async || {
        runtime.containers().len() == 2
            && container_state(&pods, "web-0").await["running"].is_object()
            && container_state(&pods, "web-1").await["running"].is_object()
    })
    .await;
    fenced.stop().await;
}

#[tokio::test]
async fn a_simulated_node_that_cannot_renew_its_lease_ends_its_containers_and_marks_its_pods() {
    let cluster = TestCluster::start().await;
    let cidr = std::str::FromStr::from_str("10.213.9.0/24").expect("cidr");
    let runtime = Arc::new(crate::runtimes::simulated::SimulatedRuntime::new(&cidr));
    let fenced = FencedNode::start(&cluster, runtime.clone()).await;
    let (fence, cut) = (fenced.fence.clone(), fenced.cut.clone());
    let pods = create_pod(&cluster, "web-0").await;
    eventually("web-0 runs", async || {
        container_state(&pods, "web-0").await["running"].is_object()
    })
    .await;
    cut.store(true, Ordering::SeqCst);
    eventually("web-0's container ends and is held back", async || {
        let pod = pods.get("web-0").await.expect("get");
        let status = serde_json::to_value(pod.status).expect("status");
        let container = &status["containerStatuses"][0];
        container["restartCount"].as_i64() >= Some(1)
            && container["state"]["waiting"]["reason"] == "NodeFenced"
    })
    .await;
    assert_eq!(fence.state(), State::Raised);
    // The event is recorded though the simulated node records no other.
    let events: Api<k8s_openapi::api::core::v1::Event> =
        Api::namespaced(cluster.client(), "default");
    eventually("web-0 has a NodeFenced warning", async || {
        let list = events.list(&Default::default()).await.expect("events");
        list.items.iter().any(|e| {
            e.reason.as_deref() == Some("NodeFenced")
                && e.involved_object.name.as_deref() == Some("web-0")
        })
    })
    .await;
    cut.store(false, Ordering::SeqCst);
    eventually("web-0 runs again", async || {
        container_state(&pods, "web-0").await["running"].is_object()
    })
    .await;
    fenced.stop().await;
}

#[test]
fn sandbox_ids_are_short_and_distinct_for_sequential_uids() {
    let first = super::sandbox_id_of("00000000-0000-0000-0000-000000000001");
    let second = super::sandbox_id_of("00000000-0000-0000-0000-000000000002");
    assert_ne!(first, second);
    assert_eq!(first, "p0000000000000001");
    assert_eq!(
        super::sandbox_id_of("0b6f1c52-4f3e-4d2a-9c1b-7e5d3a2f1e0d"),
        "p9c1b7e5d3a2f1e0d"
    );
}
