//! The node's local-path cleanup against an in-process API server: a deleted volume of
//! reclaim policy Delete loses its directory and then the cleanup finalizer once it is no
//! longer Bound; a Retain volume, a directory no volume names, a link, and the simulated
//! node's bookkeeping disk never lose data. The directories live under a scratch root.

use std::path::{Path, PathBuf};
use std::time::Duration;

use petset_agent::local_path::{CLEANUP_FINALIZER, Disk};
use petset_apiserver::test_cluster::TestCluster;
use serde_json::{Value, json};

const NODE: &str = "node-a";
const VOLUMES: &str = "/api/v1/persistentvolumes";
const PV_PROTECTION: &str = "kubernetes.io/pv-protection";
const MERGE_PATCH: &str = "application/merge-patch+json";
/// How long a condition may take before a test gives up (a hang guard, not a speed check).
const PATIENCE: Duration = Duration::from_secs(20);

/// A fresh directory under the system's temporary directory, removed when dropped.
struct Scratch(PathBuf);

impl Scratch {
    fn new(test: &str) -> Self {
        let path = std::env::temp_dir().join(format!(
            "petset-it-local-path-{test}-{}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).expect("scratch directory");
        Self(path)
    }

    fn root(&self) -> PathBuf {
        self.0.join("volumes")
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A cluster with node `NODE`'s local-path work running over `disk`; it stops when dropped.
struct Node {
    cluster: TestCluster,
    task: tokio::task::JoinHandle<()>,
}

impl Node {
    async fn start(disk: Disk) -> Self {
        let cluster = TestCluster::start().await;
        let task = tokio::spawn(petset_agent::local_path::run(
            cluster.client(),
            NODE.to_string(),
            disk,
        ));
        Self { cluster, task }
    }

    /// Creates a volume of petset's provisioner pinned to `NODE` at `path`, in `phase`.
    async fn create_volume(&self, name: &str, path: &Path, policy: &str, phase: &str) {
        let finalizers: Vec<&str> = if policy == "Delete" {
            vec![CLEANUP_FINALIZER]
        } else {
            vec![]
        };
        let volume = json!({"metadata": {"name": name, "finalizers": finalizers,
                "annotations": {"pv.kubernetes.io/provisioned-by": "petset.dev/local-path"}},
            "spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"],
                "persistentVolumeReclaimPolicy": policy, "storageClassName": "local-path",
                "hostPath": {"path": path.display().to_string()},
                "nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": [
                    {"key": "kubernetes.io/hostname", "operator": "In", "values": [NODE]}]}]}}}});
        let (code, answer) = self.cluster.json("POST", VOLUMES, volume).await;
        assert_eq!(code, 201, "{answer}");
        self.set_phase(name, phase).await;
    }

    async fn set_phase(&self, name: &str, phase: &str) {
        let (code, answer) = self
            .cluster
            .send(
                "PATCH",
                &format!("{VOLUMES}/{name}/status"),
                MERGE_PATCH,
                json!({"status": {"phase": phase}}),
            )
            .await;
        assert_eq!(code, 200, "{answer}");
    }

    async fn patch(&self, name: &str, patch: Value) {
        let (code, answer) = self
            .cluster
            .send("PATCH", &format!("{VOLUMES}/{name}"), MERGE_PATCH, patch)
            .await;
        assert_eq!(code, 200, "{answer}");
    }

    async fn delete(&self, name: &str) {
        let (code, answer) = self
            .cluster
            .json("DELETE", &format!("{VOLUMES}/{name}"), Value::Null)
            .await;
        assert!(code == 200 || code == 202, "{code} {answer}");
    }

    /// The volume's finalizers once `done` holds for them.
    async fn finalizers_when(&self, name: &str, done: impl Fn(&[String]) -> bool) -> Vec<String> {
        eventually(&format!("{name}'s finalizers"), || async {
            let (code, volume) = self
                .cluster
                .json("GET", &format!("{VOLUMES}/{name}"), Value::Null)
                .await;
            let finalizers: Vec<String> =
                serde_json::from_value(volume["metadata"]["finalizers"].clone())
                    .unwrap_or_default();
            if code == 200 && done(&finalizers) {
                Ok(finalizers)
            } else {
                Err(format!("{code} {volume}"))
            }
        })
        .await
    }

    /// Makes a volume and waits for its directory: every pass before it is over.
    async fn a_later_pass(&self, root: &Path, name: &str) {
        let directory = root.join(name);
        self.create_volume(name, &directory, "Delete", "Bound")
            .await;
        eventually(&format!("{name}'s directory"), || async {
            directory
                .is_dir()
                .then_some(())
                .ok_or("not yet".to_string())
        })
        .await;
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, String>>,
{
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        match check().await {
            Ok(value) => return value,
            Err(last) => assert!(
                tokio::time::Instant::now() < deadline,
                "{what}: never so; last: {last}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn has_cleanup(finalizers: &[String]) -> bool {
    finalizers.iter().any(|f| f == CLEANUP_FINALIZER)
}

#[tokio::test]
async fn a_deleted_delete_volume_loses_its_directory_once_released_then_its_finalizer() {
    let scratch = Scratch::new("delete");
    let root = scratch.root();
    let node = Node::start(Disk::Host(root.clone())).await;
    let directory = root.join("pvc-a");
    node.create_volume("pvc-a", &directory, "Delete", "Bound")
        .await;
    eventually("the node makes the directory", || async {
        directory
            .is_dir()
            .then_some(())
            .ok_or("not yet".to_string())
    })
    .await;
    std::fs::write(directory.join("data"), "in use").expect("data");

    // Deleted while Bound: a pod may still use it, so the data stays.
    node.delete("pvc-a").await;
    node.a_later_pass(&root, "pvc-marker").await;
    assert!(directory.join("data").is_file(), "removed while Bound");
    let finalizers = node.finalizers_when("pvc-a", |_| true).await;
    assert!(has_cleanup(&finalizers), "{finalizers:?}");

    // Released (its claim went): the directory goes, then the finalizer.
    node.set_phase("pvc-a", "Released").await;
    let finalizers = node.finalizers_when("pvc-a", |f| !has_cleanup(f)).await;
    assert!(!directory.exists(), "the directory went first");
    assert_eq!(finalizers, [PV_PROTECTION], "only the node's own goes");
}

#[tokio::test]
async fn a_retained_volume_deleted_by_hand_keeps_its_directory() {
    let scratch = Scratch::new("retain");
    let root = scratch.root();
    let node = Node::start(Disk::Host(root.clone())).await;
    for name in ["pvc-kept", "pvc-was-delete"] {
        node.create_volume(name, &root.join(name), "Retain", "Released")
            .await;
        std::fs::create_dir_all(root.join(name)).expect("directory");
        std::fs::write(root.join(name).join("data"), "kept").expect("data");
    }
    // Its policy was Delete, then changed to Retain before the finalizer could go.
    node.patch(
        "pvc-was-delete",
        json!({"metadata": {"finalizers": [PV_PROTECTION, CLEANUP_FINALIZER]}}),
    )
    .await;
    for name in ["pvc-kept", "pvc-was-delete"] {
        node.delete(name).await;
    }
    node.finalizers_when("pvc-was-delete", |f| !has_cleanup(f))
        .await;
    // The plain Retain volume goes altogether once pv-protection lets it.
    node.patch("pvc-kept", json!({"metadata": {"finalizers": []}}))
        .await;
    node.a_later_pass(&root, "pvc-marker").await;
    for name in ["pvc-kept", "pvc-was-delete"] {
        assert_eq!(
            std::fs::read_to_string(root.join(name).join("data"))
                .ok()
                .as_deref(),
            Some("kept"),
            "{name}"
        );
    }
}

#[tokio::test]
async fn a_link_in_place_of_a_directory_is_refused_and_the_volume_stays() {
    let scratch = Scratch::new("link");
    let root = scratch.root();
    let outside = scratch.0.join("precious");
    std::fs::create_dir_all(&outside).expect("outside");
    std::fs::create_dir_all(&root).expect("root");
    std::fs::write(outside.join("data"), "kept").expect("data");
    std::os::unix::fs::symlink(&outside, root.join("pvc-link")).expect("link");
    let node = Node::start(Disk::Host(root.clone())).await;
    node.create_volume("pvc-link", &root.join("pvc-link"), "Delete", "Released")
        .await;
    node.delete("pvc-link").await;
    eventually("a VolumeFailedDelete event", || async {
        let (_, events) = node
            .cluster
            .json("GET", "/api/v1/namespaces/default/events", Value::Null)
            .await;
        let reasons: Vec<&Value> = events["items"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|e| e["involvedObject"]["name"] == "pvc-link")
            .map(|e| &e["reason"])
            .collect();
        reasons
            .iter()
            .any(|r| *r == "VolumeFailedDelete")
            .then_some(())
            .ok_or(format!("{reasons:?}"))
    })
    .await;
    let finalizers = node.finalizers_when("pvc-link", |_| true).await;
    assert!(
        has_cleanup(&finalizers),
        "stays Terminating: {finalizers:?}"
    );
    assert!(root.join("pvc-link").is_symlink());
    assert_eq!(
        std::fs::read_to_string(outside.join("data"))
            .ok()
            .as_deref(),
        Some("kept")
    );
}

#[tokio::test]
async fn the_simulated_nodes_bookkeeping_disk_lets_a_volume_go_without_touching_a_disk() {
    let scratch = Scratch::new("bookkeeping");
    let directory = scratch.root().join("pvc-sim");
    std::fs::create_dir_all(&directory).expect("directory");
    std::fs::write(directory.join("data"), "kept").expect("data");
    let node = Node::start(Disk::bookkeeping()).await;
    node.create_volume("pvc-sim", &directory, "Delete", "Released")
        .await;
    node.delete("pvc-sim").await;
    let finalizers = node.finalizers_when("pvc-sim", |f| !has_cleanup(f)).await;
    assert_eq!(finalizers, [PV_PROTECTION]);
    assert_eq!(
        std::fs::read_to_string(directory.join("data"))
            .ok()
            .as_deref(),
        Some("kept"),
        "the simulated node never touches this machine's disk"
    );
}
