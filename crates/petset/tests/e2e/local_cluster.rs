//! `petset cluster up`: a server and N agents on this machine. The refusals need nothing; the
//! clusters need `petset server` and `petset agent` (and, for runc nodes, root and runc).

use std::path::PathBuf;
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
    fn start(nodes: u32, runtime: &str, roles: &Roles) -> Self {
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
            .args(roles.args())
            .envs(roles.env())
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

/// A two-node runc cluster with its id and `cluster.json`, where one can run: with this
/// petset's roles when it has them, with the stand-ins as root.
fn start_runc(test: &str, roles: Roles) -> Option<(LocalCluster, String, serde_json::Value)> {
    let can_run = match roles {
        Roles::Petset => petset_testkit::can_run_containers(test) && has_server_and_agent(test),
        Roles::StandIn(_) if !host::is_root() => {
            petset_testkit::skip(
                test,
                "needs root (it makes a bridge and network namespaces)",
            );
            false
        }
        Roles::StandIn(_) => true,
    };
    if !can_run {
        return None;
    }
    let cluster = LocalCluster::start(2, "runc", &roles);
    let record = cluster.record();
    let id = record["id"].as_str().expect("an id").to_string();
    Some((cluster, id, record))
}

/// The nodes are Ready at their addresses on the bridge (so they reached the server through
/// it), each in its namespace; a clean stop leaves nothing.
fn runc_cluster_is_made_and_removed(test: &str, roles: Roles) {
    let Some((mut cluster, id, record)) = start_runc(test, roles) else {
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
    for namespace in [format!("pstc-{id}-n1"), format!("pstc-{id}-n2")] {
        assert!(host::namespaces().contains(&namespace), "{namespace}");
        assert!(
            host::pings(&namespace, &format!("{prefix}.1")),
            "{namespace}"
        );
    }
    assert!(host::links().contains(&format!("pstc-{id}")));

    let status = cluster.stop_with("TERM");
    assert!(status.success(), "{status}\n{}", cluster.stderr());
    assert_eq!(names_left(&id), Vec::<String>::new());
    assert!(!cluster.dir.join("cluster.json").exists());
}

/// A `cluster up` killed with SIGKILL: its processes stop (they get SIGTERM when it dies), its
/// network stays until `cluster down` removes it.
fn killed_cluster_up_is_cleaned_up_by_cluster_down(test: &str, roles: Roles) {
    let Some((mut cluster, id, _)) = start_runc(test, roles) else {
        return;
    };
    let pids = recorded_pids(&cluster);
    assert_eq!(pids.len(), 3, "{pids:?}");
    cluster.stop_with("KILL");
    assert!(
        wait_until(Duration::from_secs(90), || pids
            .iter()
            .all(|(_, pid)| gone(*pid))),
        "the processes of the killed cluster up still run: {pids:?}"
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

#[test]
fn a_runc_cluster_puts_each_node_in_a_namespace_and_removes_them_all() {
    runc_cluster_is_made_and_removed(
        "a_runc_cluster_puts_each_node_in_a_namespace_and_removes_them_all",
        Roles::Petset,
    );
}

#[test]
fn a_runc_cluster_of_stand_ins_puts_each_node_in_a_namespace_and_removes_them_all() {
    runc_cluster_is_made_and_removed(
        "a_runc_cluster_of_stand_ins_puts_each_node_in_a_namespace_and_removes_them_all",
        Roles::stand_in(),
    );
}

#[test]
fn after_a_killed_cluster_up_its_nodes_stop_and_cluster_down_removes_the_rest() {
    killed_cluster_up_is_cleaned_up_by_cluster_down(
        "after_a_killed_cluster_up_its_nodes_stop_and_cluster_down_removes_the_rest",
        Roles::Petset,
    );
}

#[test]
fn after_a_killed_cluster_up_of_stand_ins_cluster_down_removes_what_it_left() {
    killed_cluster_up_is_cleaned_up_by_cluster_down(
        "after_a_killed_cluster_up_of_stand_ins_cluster_down_removes_what_it_left",
        Roles::stand_in(),
    );
}

/// A stand-in for `petset server` (a `petset up` without a node, which also writes the join
/// token) and `petset agent` (a Node registered Ready through kubectl, at its `--node-ip`),
/// so that what `cluster up` itself does is tested whatever the roles do.
const STAND_IN: &str = r#"#!/bin/sh
set -e
role=$1; shift
while [ $# -gt 0 ]; do
  case $1 in
    --data-dir) data_dir=$2; shift;;
    --api-listen) listen=$2; shift;;
    --token-file) token_file=$2; shift;;
    --server) server=$2; shift;;
    --node-name) name=$2; shift;;
    --node-ip) ip=$2; shift;;
  esac
  shift
done
case $role in
server)
  mkdir -p "$data_dir"
  echo stand-in-token > "$data_dir/node-token"
  exec "$PETSET" up --data-dir "$data_dir" --api-listen "$listen" --store memory --node-runtime none;;
agent)
  test "$(cat "$token_file")" = stand-in-token
  # From the node's namespace the server is at --server, which its certificate does not
  # name (the real server's does): the certificate is checked against 127.0.0.1, a name it has.
  export HOME="$data_dir"
  kubectl() {
    "$KUBECTL" --kubeconfig "$(dirname "$token_file")/kubeconfig" --server "$server" \
      --tls-server-name 127.0.0.1 "$@"
  }
  echo "{\"apiVersion\": \"v1\", \"kind\": \"Node\", \"metadata\": {\"name\": \"$name\"}}" |
    kubectl create -f -
  kubectl patch node "$name" --subresource=status --type=merge \
    -p "{\"status\": {\"conditions\": [{\"type\": \"Ready\", \"status\": \"True\"}], \"addresses\": [{\"type\": \"InternalIP\", \"address\": \"$ip\"}]}}"
  exec sleep 600;;
esac
"#;

/// What runs as `server` and `agent`: this petset, or the stand-ins (in a directory that
/// lives as long as this value).
enum Roles {
    Petset,
    StandIn(tempfile::TempDir),
}

impl Roles {
    fn stand_in() -> Self {
        use std::os::unix::fs::PermissionsExt;
        let bin = tempfile::tempdir().expect("temp dir");
        let script = bin.path().join("stand-in");
        std::fs::write(&script, STAND_IN).expect("writing the stand-in");
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        Roles::StandIn(bin)
    }

    fn args(&self) -> Vec<String> {
        match self {
            Roles::Petset => Vec::new(),
            Roles::StandIn(bin) => vec![
                "--role-binary".into(),
                bin.path().join("stand-in").display().to_string(),
            ],
        }
    }

    /// The stand-ins find the real petset and kubectl in the environment cluster up passes on.
    fn env(&self) -> Vec<(&'static str, PathBuf)> {
        match self {
            Roles::Petset => Vec::new(),
            Roles::StandIn(_) => vec![
                ("PETSET", binary().to_path_buf()),
                ("KUBECTL", PathBuf::from(KUBECTL)),
            ],
        }
    }
}

/// The pids `cluster.json` records, by role.
fn recorded_pids(cluster: &LocalCluster) -> Vec<(String, u32)> {
    cluster.record()["processes"]
        .as_array()
        .expect("processes")
        .iter()
        .filter_map(|p| {
            Some((
                p["role"].as_str()?.to_string(),
                u32::try_from(p["pid"].as_u64()?).ok()?,
            ))
        })
        .collect()
}

/// Whether a process is gone (or a zombie nobody reaped yet).
fn gone(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).map_or(true, |stat| stat.contains(") Z "))
}

/// Three simulated nodes Ready at their own loopback addresses; the summary names the
/// kubeconfig and every log; `signal` stops every process and leaves only the data.
fn simulated_cluster_runs_and_stops(roles: Roles, signal: &str) {
    let mut cluster = LocalCluster::start(3, "simulated", &roles);
    assert_eq!(
        ready_nodes(&cluster),
        [
            "petset-n1 127.0.0.11 True",
            "petset-n2 127.0.0.12 True",
            "petset-n3 127.0.0.13 True"
        ]
    );
    let pids = recorded_pids(&cluster);
    let roles: Vec<&str> = pids.iter().map(|(role, _)| role.as_str()).collect();
    assert_eq!(roles, ["server", "petset-n1", "petset-n2", "petset-n3"]);
    assert!(pids.iter().all(|(_, pid)| !gone(*pid)));
    let stdout = cluster.stdout();
    let kubeconfig = cluster.dir.join("kubeconfig");
    let usage = format!("To use it: export KUBECONFIG={}", kubeconfig.display());
    assert!(stdout.contains(&usage), "{stdout}");
    for log in [
        "server/server.log",
        "nodes/n1/agent.log",
        "nodes/n3/agent.log",
    ] {
        let path = cluster.dir.join(log);
        assert!(stdout.contains(&path.display().to_string()), "{stdout}");
        assert!(path.exists(), "{log}");
    }

    let status = cluster.stop_with(signal);
    assert!(status.success(), "{status}\n{}", cluster.stderr());
    assert!(pids.iter().all(|(_, pid)| gone(*pid)), "{pids:?} still run");
    assert!(!cluster.dir.join("cluster.json").exists());
    assert!(
        kubeconfig.exists(),
        "the kubeconfig stays for the next cluster up"
    );
}

#[test]
fn cluster_up_starts_the_server_then_every_node_and_stops_them_all() {
    simulated_cluster_runs_and_stops(Roles::stand_in(), "TERM");
}

#[test]
fn a_simulated_cluster_has_its_nodes_on_loopback_addresses_and_stops_on_ctrl_c() {
    let test = "a_simulated_cluster_has_its_nodes_on_loopback_addresses_and_stops_on_ctrl_c";
    if has_server_and_agent(test) {
        simulated_cluster_runs_and_stops(Roles::Petset, "INT");
    }
}

#[test]
fn when_a_node_dies_cluster_up_stops_everything_and_says_which() {
    let mut cluster = LocalCluster::start(2, "simulated", &Roles::stand_in());
    let pids = recorded_pids(&cluster);
    let (_, second) = pids
        .iter()
        .find(|(role, _)| role == "petset-n2")
        .expect("petset-n2 runs");
    let _ = Command::new("kill")
        .args(["-KILL", &second.to_string()])
        .status();
    let mut child = cluster.child.take().expect("running");
    let mut status = None;
    wait_until(Duration::from_secs(120), || {
        status = child.try_wait().ok().flatten();
        status.is_some()
    });
    let status = status.expect("cluster up stops by itself when a node dies");
    assert!(!status.success(), "{status}");
    let stderr = cluster.stderr();
    assert!(stderr.contains("petset-n2 exited unexpectedly"), "{stderr}");
    assert!(pids.iter().all(|(_, pid)| gone(*pid)), "{pids:?} still run");
    assert!(!cluster.dir.join("cluster.json").exists());
}
