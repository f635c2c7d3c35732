//! `petset cluster up`: a server and N agents on this machine. The refusals need nothing; the
//! clusters need `petset server` and `petset agent` (and, for runc nodes, root and runc).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use petset_testkit::{KUBECTL, free_port, netns as host, wait_until};

use crate::binary;

fn petset(args: &[&str]) -> std::process::Output {
    Command::new(binary())
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("running petset")
}

/// Whether this petset has the roles a local cluster runs. Until `petset server` and `petset
/// agent` are merged the cluster tests print why they do not run (the lead removes this guard
/// with that merge, after which they always run).
fn has_server_and_agent(test: &str) -> bool {
    let has = |role: &str| petset(&[role, "--help"]).status.success();
    if has("server") && has("agent") {
        return true;
    }
    eprintln!("SKIPPED {test}: this petset has no `server` and `agent` subcommands yet");
    false
}

#[test]
fn cluster_up_refuses_no_nodes_and_too_many() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data_dir = dir.path().join("cluster");
    for nodes in ["0", "51"] {
        let output = petset(&[
            "cluster",
            "up",
            "--nodes",
            nodes,
            "--node-runtime",
            "simulated",
            "--data-dir",
            &data_dir.display().to_string(),
        ]);
        assert!(!output.status.success());
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            stderr.contains(&format!(
                "--nodes {nodes}: a local cluster has 1 to 50 nodes"
            )),
            "{stderr}"
        );
    }
    assert!(!data_dir.exists(), "a refused cluster makes nothing");
}

#[test]
fn cluster_down_of_a_directory_without_a_cluster_has_nothing_to_do() {
    let dir = tempfile::tempdir().expect("temp dir");
    let output = petset(&[
        "cluster",
        "down",
        "--data-dir",
        &dir.path().display().to_string(),
    ]);
    assert!(output.status.success(), "{output:?}");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains("records no cluster: nothing to remove"),
        "{stdout}"
    );
}

/// A running `petset cluster up`; stopped (SIGTERM, then `cluster down`) on drop.
struct LocalCluster {
    child: Option<Child>,
    dir: PathBuf,
    _temp: tempfile::TempDir,
}

impl LocalCluster {
    /// Starts `cluster up` and waits until it says the cluster is ready to use. Its nodes
    /// share an image store of the test's own.
    fn start(nodes: u32, runtime: &str) -> Self {
        let temp = tempfile::tempdir().expect("temp dir");
        let dir = temp.path().join("cluster");
        std::fs::create_dir_all(&dir).expect("data dir");
        let output = std::fs::File::create(temp.path().join("cluster-up.out")).expect("out");
        let errors = std::fs::File::create(temp.path().join("cluster-up.err")).expect("err");
        let mut command = Command::new(binary());
        command
            .args(["cluster", "up", "--nodes", &nodes.to_string()])
            .args(["--node-runtime", runtime, "--data-dir"])
            .arg(&dir)
            .args(["--api-port", &free_port().to_string()])
            .stdin(Stdio::null())
            .env("PETSET_IMAGE_STORE", temp.path().join("images"))
            .stdout(output)
            .stderr(errors);
        let mut cluster = Self {
            child: Some(command.spawn().expect("starting cluster up")),
            dir,
            _temp: temp,
        };
        let mut exited = None;
        let ready = wait_until(Duration::from_secs(480), || {
            if let Some(status) = cluster
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                exited = Some(status);
                return true;
            }
            cluster.stdout().contains("To use it: export KUBECONFIG=")
        });
        assert!(
            ready && exited.is_none(),
            "cluster up did not get ready ({exited:?}):\n{}\n{}",
            cluster.stdout(),
            cluster.stderr()
        );
        cluster
    }

    fn stdout(&self) -> String {
        std::fs::read_to_string(self._temp.path().join("cluster-up.out")).unwrap_or_default()
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(self._temp.path().join("cluster-up.err")).unwrap_or_default()
    }

    fn kubectl(&self, args: &[&str]) -> String {
        let home = self.dir.join("kubectl-home");
        let output = Command::new(KUBECTL)
            .args(args)
            .env("KUBECONFIG", self.dir.join("kubeconfig"))
            .env("HOME", &home)
            .output()
            .expect("kubectl");
        assert!(output.status.success(), "kubectl {args:?}: {output:?}");
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// The layout `cluster.json` records (while the cluster runs or after a crash).
    fn record(&self) -> serde_json::Value {
        let text = std::fs::read_to_string(self.dir.join("cluster.json")).expect("cluster.json");
        serde_json::from_str(&text).expect("JSON")
    }

    fn pid(&self) -> u32 {
        self.child.as_ref().map(Child::id).expect("running")
    }

    /// Sends `signal` and waits for `cluster up` to exit.
    fn stop_with(&mut self, signal: &str) -> std::process::ExitStatus {
        self.try_stop_with(signal)
            .unwrap_or_else(|| panic!("cluster up did not stop within 120 s of SIG{signal}"))
    }

    fn try_stop_with(&mut self, signal: &str) -> Option<std::process::ExitStatus> {
        let mut child = self.child.take()?;
        let _ = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(child.id().to_string())
            .status();
        let mut status = None;
        wait_until(Duration::from_secs(120), || {
            status = child.try_wait().ok().flatten();
            status.is_some()
        });
        if status.is_none() {
            let _ = child.kill();
            let _ = child.wait();
        }
        status
    }

    fn down(&self) -> std::process::Output {
        petset(&[
            "cluster",
            "down",
            "--data-dir",
            &self.dir.display().to_string(),
        ])
    }
}

impl Drop for LocalCluster {
    fn drop(&mut self) {
        self.try_stop_with("TERM");
        let _ = self.down();
    }
}

/// The namespaces and links of the cluster `id` still on this machine.
fn names_left(id: &str) -> Vec<String> {
    host::namespaces()
        .into_iter()
        .chain(host::links())
        .filter(|name| {
            name.starts_with(&format!("pstc-{id}")) || name.starts_with(&format!("pstc{id}"))
        })
        .collect()
}

/// The names of the nodes `kubectl get nodes` shows Ready, with their InternalIP.
fn ready_nodes(cluster: &LocalCluster) -> Vec<String> {
    cluster
        .kubectl(&[
            "get",
            "nodes",
            "-o",
            "jsonpath={range .items[*]}{.metadata.name} {.status.addresses[?(@.type==\"InternalIP\")].address} {.status.conditions[?(@.type==\"Ready\")].status}{\"\\n\"}{end}",
        ])
        .lines()
        .map(str::to_string)
        .collect()
}

#[test]
fn a_simulated_cluster_has_its_nodes_on_loopback_addresses_and_stops_cleanly() {
    let test = "a_simulated_cluster_has_its_nodes_on_loopback_addresses_and_stops_cleanly";
    if !has_server_and_agent(test) {
        return;
    }
    let mut cluster = LocalCluster::start(3, "simulated");
    assert_eq!(
        ready_nodes(&cluster),
        [
            "petset-n1 127.0.0.11 True",
            "petset-n2 127.0.0.12 True",
            "petset-n3 127.0.0.13 True"
        ]
    );
    let stdout = cluster.stdout();
    for log in [
        "server/server.log",
        "nodes/n1/agent.log",
        "nodes/n3/agent.log",
    ] {
        let path = cluster.dir.join(log);
        assert!(stdout.contains(&path.display().to_string()), "{stdout}");
        assert!(path.exists(), "{log}");
    }
    let status = cluster.stop_with("INT");
    assert!(status.success(), "{status}\n{}", cluster.stderr());
    assert!(!cluster.dir.join("cluster.json").exists());
}

/// A two-node runc cluster with its id and `cluster.json`, where one can run.
fn start_runc(test: &str) -> Option<(LocalCluster, String, serde_json::Value)> {
    if !petset_testkit::can_run_containers(test) || !has_server_and_agent(test) {
        return None;
    }
    let cluster = LocalCluster::start(2, "runc");
    let record = cluster.record();
    let id = record["id"].as_str().expect("an id").to_string();
    Some((cluster, id, record))
}

#[test]
fn a_runc_cluster_puts_each_node_in_a_namespace_and_removes_them_all() {
    let Some((mut cluster, id, record)) =
        start_runc("a_runc_cluster_puts_each_node_in_a_namespace_and_removes_them_all")
    else {
        return;
    };
    let subnet = record["subnet"].as_str().expect("a subnet").to_string();
    let prefix = subnet.trim_end_matches(".0/24");
    assert_eq!(
        ready_nodes(&cluster),
        [
            format!("petset-n1 {prefix}.11 True"),
            format!("petset-n2 {prefix}.12 True")
        ]
    );
    let namespaces = [format!("pstc-{id}-n1"), format!("pstc-{id}-n2")];
    for namespace in &namespaces {
        assert!(host::namespaces().contains(namespace), "{namespace}");
        assert!(
            host::pings(namespace, &format!("{prefix}.1")),
            "{namespace}"
        );
    }
    assert!(host::links().contains(&format!("pstc-{id}")));

    let status = cluster.stop_with("TERM");
    assert!(status.success(), "{status}\n{}", cluster.stderr());
    assert_eq!(names_left(&id), Vec::<String>::new());
    assert!(!cluster.dir.join("cluster.json").exists());
}

#[test]
fn after_a_killed_cluster_up_its_nodes_stop_and_cluster_down_removes_the_rest() {
    let Some((mut cluster, id, record)) =
        start_runc("after_a_killed_cluster_up_its_nodes_stop_and_cluster_down_removes_the_rest")
    else {
        return;
    };
    let pids: Vec<u64> = record["processes"]
        .as_array()
        .expect("processes")
        .iter()
        .filter_map(|p| p["pid"].as_u64())
        .collect();
    assert_eq!(pids.len(), 3, "{record}");
    let up = cluster.pid();
    cluster.stop_with("KILL");
    // Its children get SIGTERM when it dies, and stop as on Ctrl-C.
    assert!(
        wait_until(Duration::from_secs(90), || pids.iter().all(
            |pid| !Path::new(&format!("/proc/{pid}")).exists()
                || std::fs::read_to_string(format!("/proc/{pid}/stat"))
                    .is_ok_and(|s| s.contains(") Z "))
        )),
        "the nodes and the server of the killed cluster up {up} still run"
    );
    assert!(
        host::namespaces().contains(&format!("pstc-{id}-n1")),
        "a crash removes nothing"
    );
    let down = cluster.down();
    assert!(down.status.success(), "{down:?}");
    assert_eq!(names_left(&id), Vec::<String>::new());
    assert!(!cluster.dir.join("cluster.json").exists());
}
