//! Losing a node, for real: a `cluster up` of six runc nodes (each in a network namespace of
//! its own, every node fenced) runs the 3-member etcd example with
//! `petset.dev/on-node-loss: recreate-claim`. The node of one member is lost in each of the
//! three ways a node is lost (its agent killed -9, its agent stopped with SIGSTOP, its network
//! cut inside its namespace): each time the member runs and is Ready again on another node and
//! every member answers healthy. A set without the annotation, whose claim is on the first lost
//! node, waits for it with an event that says so. All along, a sampler on the host records
//! every container's process of these pods (its start from `/proc`, its end when runc no longer
//! runs it) and the test checks that no two processes of one pod identity ever overlapped.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use petset_testkit::{LocalCluster, wait_until};

use crate::binary;

/// The etcd example (examples/etcd.yaml), opted into claim replacement, one member per node.
fn etcd_set() -> String {
    let example = include_str!("../../../../examples/etcd.yaml");
    example
        .replace(
            "  name: etcd\nspec:\n  serviceName: etcd",
            "  name: etcd\n  annotations: {petset.dev/on-node-loss: recreate-claim}\nspec:\n  serviceName: etcd",
        )
        .replace(
            "    spec:\n      terminationGracePeriodSeconds: 10",
            "    spec:\n      terminationGracePeriodSeconds: 10\n      affinity:\n        podAntiAffinity:\n          requiredDuringSchedulingIgnoredDuringExecution:\n          - labelSelector: {matchLabels: {app: etcd}}\n            topologyKey: kubernetes.io/hostname",
        )
        .replace("image: petset/etcd:3.4", "image: petset/etcd:test")
}

/// A set whose pod keeps its claim: on node loss it waits for its node (no annotation).
fn waiter_set(node: &str) -> String {
    format!(
        r#"
apiVersion: apps/v1
kind: StatefulSet
metadata: {{name: waiter}}
spec:
  serviceName: waiter
  replicas: 1
  selector: {{matchLabels: {{app: waiter}}}}
  template:
    metadata: {{labels: {{app: waiter}}}}
    spec:
      terminationGracePeriodSeconds: 1
      nodeSelector: {{kubernetes.io/hostname: {node}}}
      containers:
      - name: main
        image: petset/etcd:test
        command: ["sh", "-c", "trap 'exit 0' TERM; while true; do sleep 0.5; done"]
        volumeMounts: [{{name: data, mountPath: /data}}]
  volumeClaimTemplates:
  - metadata: {{name: data}}
    spec:
      accessModes: [ReadWriteOnce]
      resources: {{requests: {{storage: 1Gi}}}}
"#
    )
}

/// One process of a pod's container, as the sampler saw it (times in seconds since boot).
#[derive(Debug, Clone)]
struct Run {
    pod: String,
    node: PathBuf,
    pid: u32,
    start: f64,
    /// The first sample that no longer saw it run; `None` while it runs.
    end: Option<f64>,
}

fn uptime() -> f64 {
    std::fs::read_to_string("/proc/uptime")
        .ok()
        .and_then(|t| t.split_whitespace().next()?.parse().ok())
        .unwrap_or(0.0)
}

/// The start of a process in seconds since boot (field 22 of its stat, in clock ticks).
fn process_start(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after_name = stat.rsplit_once(')')?.1;
    let ticks: f64 = after_name.split_whitespace().nth(19)?.parse().ok()?;
    Some(ticks / 100.0)
}

/// The containers runc runs on one node: (sandbox-container id, pid).
fn running_on(node: &Path) -> Vec<(String, u32)> {
    let Ok(output) = Command::new("runc")
        .arg("--root")
        .arg(node.join("node/runc"))
        .args(["list", "--format", "json"])
        .output()
    else {
        return Vec::new();
    };
    let listed: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap_or_default();
    listed
        .as_array()
        .into_iter()
        .flatten()
        .filter(|c| c["status"] == "running")
        .filter_map(|c| {
            Some((
                c["id"].as_str()?.to_string(),
                u32::try_from(c["pid"].as_u64()?).ok()?,
            ))
        })
        .collect()
}

/// Every run the sampler saw, by node, container id and pid.
type Runs = Arc<Mutex<BTreeMap<(PathBuf, String, u32), Run>>>;

/// Samples every node's containers every 50 ms until stopped; returns every run it saw.
struct Sampler {
    runs: Runs,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Sampler {
    fn start(nodes: Vec<PathBuf>) -> Self {
        let runs: Runs = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (runs, stop) = (runs.clone(), stop.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::SeqCst) {
                    let now = uptime();
                    let mut seen = Vec::new();
                    for node in &nodes {
                        for (id, pid) in running_on(node) {
                            let sandbox = id.split('-').next().unwrap_or_default().to_string();
                            let hostname =
                                node.join("node/pods").join(&sandbox).join("etc/hostname");
                            let Ok(pod) = std::fs::read_to_string(hostname) else {
                                continue;
                            };
                            seen.push(((node.clone(), id, pid), pod.trim().to_string()));
                        }
                    }
                    let mut runs = runs.lock().unwrap_or_else(|e| e.into_inner());
                    for (key, pod) in &seen {
                        runs.entry(key.clone()).or_insert_with(|| Run {
                            pod: pod.clone(),
                            node: key.0.clone(),
                            pid: key.2,
                            start: process_start(key.2).unwrap_or(now),
                            end: None,
                        });
                    }
                    for (key, run) in runs.iter_mut() {
                        if run.end.is_none() && !seen.iter().any(|(k, _)| k == key) {
                            run.end = Some(now);
                        }
                    }
                    drop(runs);
                    std::thread::sleep(Duration::from_millis(50));
                }
            })
        };
        Self {
            runs,
            stop,
            thread: Some(thread),
        }
    }

    /// Every pod identity's runs, checked never to overlap.
    fn check_at_most_one(&self) -> BTreeMap<String, Vec<Run>> {
        let runs = self.runs.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let mut by_pod: BTreeMap<String, Vec<Run>> = BTreeMap::new();
        for run in runs.into_values() {
            by_pod.entry(run.pod.clone()).or_default().push(run);
        }
        for (pod, runs) in &mut by_pod {
            runs.sort_by(|a, b| a.start.total_cmp(&b.start));
            for pair in runs.windows(2) {
                let ended = pair[0].end.unwrap_or(f64::INFINITY);
                let (a, b) = (&pair[0], &pair[1]);
                assert!(
                    ended <= b.start,
                    "two processes of {pod} ran at once: pid {} on {} from {} to {:?}, and pid {} on {} from {}",
                    a.pid,
                    a.node.display(),
                    a.start,
                    a.end,
                    b.pid,
                    b.node.display(),
                    b.start
                );
            }
        }
        by_pod
    }
}

impl Drop for Sampler {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn field(cluster: &LocalCluster, args: &[&str]) -> String {
    cluster.kubectl(args).stdout.trim().to_string()
}

fn node_of(cluster: &LocalCluster, pod: &str) -> String {
    field(
        cluster,
        &["get", "pod", pod, "-o", "jsonpath={.spec.nodeName}"],
    )
}

fn uid_of(cluster: &LocalCluster, pod: &str) -> String {
    field(
        cluster,
        &["get", "pod", pod, "-o", "jsonpath={.metadata.uid}"],
    )
}

/// The pid `cluster up` recorded for a role (a node's agent is recorded by node name).
fn pid_of(cluster: &LocalCluster, role: &str) -> u32 {
    let text = std::fs::read_to_string(cluster.data_dir().join("cluster.json")).expect("record");
    let record: serde_json::Value = serde_json::from_str(&text).expect("record json");
    record["processes"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|p| p["role"] == role)
        .and_then(|p| u32::try_from(p["pid"].as_u64()?).ok())
        .unwrap_or_else(|| panic!("no process recorded for {role}: {record}"))
}

fn signal(pid: u32, name: &str) {
    let status = Command::new("kill")
        .args([&format!("-{name}"), &pid.to_string()])
        .status()
        .expect("kill");
    assert!(status.success(), "kill -{name} {pid}");
}

/// Cuts the node off inside its namespace: every link but loopback goes down.
fn cut_network(agent: u32) {
    let namespace = Command::new("ip")
        .args(["netns", "identify", &agent.to_string()])
        .output()
        .expect("ip netns identify");
    let namespace = String::from_utf8_lossy(&namespace.stdout)
        .trim()
        .to_string();
    assert!(
        !namespace.is_empty(),
        "agent {agent} is in no named namespace"
    );
    let links = Command::new("ip")
        .args(["-n", &namespace, "-o", "link", "show"])
        .output()
        .expect("ip link");
    for line in String::from_utf8_lossy(&links.stdout).lines() {
        let Some(name) = line
            .split(':')
            .nth(1)
            .map(|n| n.trim().split('@').next().unwrap_or_default().to_string())
        else {
            continue;
        };
        if name == "lo" || name.is_empty() {
            continue;
        }
        let status = Command::new("ip")
            .args(["-n", &namespace, "link", "set", &name, "down"])
            .status()
            .expect("ip link set down");
        assert!(status.success(), "{name} in {namespace}");
    }
}

/// Waits until the member `pod` runs, Ready, on a node other than `lost`, as a new pod.
fn wait_replaced(cluster: &LocalCluster, pod: &str, lost: &str, old_uid: &str) {
    let replaced = wait_until(Duration::from_secs(180), || {
        let state = field(
            cluster,
            &[
                "get",
                "pod",
                pod,
                "-o",
                "jsonpath={.metadata.uid} {.spec.nodeName} {.status.conditions[?(@.type==\"Ready\")].status}",
            ],
        );
        let words: Vec<&str> = state.split_whitespace().collect();
        matches!(words[..], [uid, node, "True"] if uid != old_uid && node != lost)
    });
    assert!(
        replaced,
        "{pod} was not replaced off {lost}:\n{}\n{}",
        field(cluster, &["get", "pods", "-o", "wide"]),
        field(
            cluster,
            &[
                "get",
                "events",
                "--field-selector",
                &format!("involvedObject.name={pod}")
            ]
        ),
    );
}

/// Every member answers healthy (its `/health`, through the API server's proxy to the pod).
fn wait_etcd_healthy(cluster: &LocalCluster) {
    let mut last = String::new();
    let healthy = wait_until(Duration::from_secs(120), || {
        last = (0..3)
            .map(|i| {
                let path = format!("/api/v1/namespaces/default/pods/etcd-{i}:2379/proxy/health");
                let answer = cluster.kubectl(&["get", "--raw", &path]);
                format!("{}{}", answer.stdout, answer.stderr)
            })
            .collect::<Vec<_>>()
            .join(" ");
        last.matches("\"health\":\"true\"").count() == 3
    });
    assert!(healthy, "etcd is not healthy: {last}");
}

#[test]
fn a_lost_nodes_etcd_member_moves_to_another_node_in_each_way_a_node_is_lost() {
    let test = "a_lost_nodes_etcd_member_moves_to_another_node_in_each_way_a_node_is_lost";
    let Some((_images, store)) = crate::runc::etcd_image_store(test) else {
        return;
    };
    // A short fence, so the three losses take seconds, not minutes.
    let cluster = LocalCluster::start_with_images(
        binary(),
        6,
        "runc",
        &["--fence-deadline", "5"],
        Some(&store),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let nodes: Vec<PathBuf> = (1..=6)
        .map(|i| cluster.data_dir().join(format!("nodes/n{i}")))
        .collect();
    let sampler = Sampler::start(nodes);

    cluster
        .kubectl_with_input(&["apply", "-f", "-"], Some(&etcd_set()))
        .ok();
    let ready = wait_until(Duration::from_secs(180), || {
        field(
            &cluster,
            &[
                "get",
                "statefulset",
                "etcd",
                "-o",
                "jsonpath={.status.readyReplicas}",
            ],
        ) == "3"
    });
    assert!(ready, "{}", field(&cluster, &["get", "pods", "-o", "wide"]));
    wait_etcd_healthy(&cluster);
    let first_lost = node_of(&cluster, "etcd-0");
    cluster
        .kubectl_with_input(&["apply", "-f", "-"], Some(&waiter_set(&first_lost)))
        .ok();
    let waiting = wait_until(Duration::from_secs(120), || {
        field(
            &cluster,
            &[
                "get",
                "statefulset",
                "waiter",
                "-o",
                "jsonpath={.status.readyReplicas}",
            ],
        ) == "1"
    });
    assert!(
        waiting,
        "{}",
        field(&cluster, &["get", "pods", "-o", "wide"])
    );
    let waiter_uid = uid_of(&cluster, "waiter-0");

    // 1. The agent of etcd-0's node is killed -9 (its watchdog fences the node).
    let uid = uid_of(&cluster, "etcd-0");
    signal(pid_of(&cluster, &first_lost), "KILL");
    wait_replaced(&cluster, "etcd-0", &first_lost, &uid);
    wait_etcd_healthy(&cluster);
    // The set without the annotation waits for its node, and says so.
    assert_eq!(
        uid_of(&cluster, "waiter-0"),
        waiter_uid,
        "waiter-0 was replaced"
    );
    let told = wait_until(Duration::from_secs(60), || {
        field(
            &cluster,
            &[
                "get",
                "events",
                "--field-selector",
                "involvedObject.name=waiter-0",
                "-o",
                "jsonpath={.items[*].message}",
            ],
        )
        .contains("petset.dev/on-node-loss=recreate-claim")
    });
    assert!(
        told,
        "{}",
        field(
            &cluster,
            &[
                "get",
                "events",
                "--field-selector",
                "involvedObject.name=waiter-0"
            ]
        )
    );

    // 2. The agent of etcd-1's node hangs (SIGSTOP).
    let stopped_node = node_of(&cluster, "etcd-1");
    let stopped = pid_of(&cluster, &stopped_node);
    let uid = uid_of(&cluster, "etcd-1");
    signal(stopped, "STOP");
    wait_replaced(&cluster, "etcd-1", &stopped_node, &uid);
    wait_etcd_healthy(&cluster);

    // 3. etcd-2's node is cut off inside its namespace.
    let cut_node = node_of(&cluster, "etcd-2");
    let uid = uid_of(&cluster, "etcd-2");
    cut_network(pid_of(&cluster, &cut_node));
    wait_replaced(&cluster, "etcd-2", &cut_node, &uid);
    wait_etcd_healthy(&cluster);

    let runs = sampler.check_at_most_one();
    for pod in ["etcd-0", "etcd-1", "etcd-2"] {
        let seen = runs.get(pod).map(Vec::len).unwrap_or(0);
        assert!(
            seen >= 2,
            "{pod}: the sampler saw {seen} runs, not the lost one and its replacement: {runs:?}"
        );
    }
    assert_eq!(runs.get("waiter-0").map(Vec::len), Some(1), "{runs:?}");

    // The stopped agent goes on: its node is Ready again and no longer tainted, and what it
    // ran of etcd-1 (killed by its watchdog, replaced since) never starts again there.
    signal(stopped, "CONT");
    let back = wait_until(Duration::from_secs(120), || {
        field(
            &cluster,
            &[
                "get",
                "node",
                &stopped_node,
                "-o",
                "jsonpath={.status.conditions[?(@.type==\"Ready\")].status} {.spec.taints[*].key}",
            ],
        ) == "True"
    });
    assert!(
        back,
        "{stopped_node} did not come back: {}",
        field(&cluster, &["get", "node", &stopped_node, "-o", "yaml"])
    );
    let runs = sampler.check_at_most_one();
    assert_eq!(
        runs.get("etcd-1").map(|r| r
            .iter()
            .filter(|run| run
                .node
                .ends_with(format!("n{}", stopped_node.trim_start_matches("petset-n"))))
            .count()),
        Some(1),
        "etcd-1 ran again on the node that came back: {runs:?}"
    );
    drop(sampler);
}
