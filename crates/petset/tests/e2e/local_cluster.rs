//! `petset cluster up`: a server and N agents on this machine. The refusals need nothing; the
//! command itself is driven with stand-ins for `petset server` and `petset agent` (runc
//! clusters as root); the same checks run with the real roles once this petset has them (and,
//! for runc nodes, root and runc).

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use petset_testkit::{KUBECTL, LocalCluster, netns as host, wait_until};

use crate::binary;

fn petset(args: &[&str]) -> std::process::Output {
    Command::new(binary())
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("running petset")
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
    let output = cluster_down(dir.path());
    assert!(output.status.success(), "{output:?}");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains("records no cluster: nothing to remove"),
        "{stdout}"
    );
}

/// What runs as `server` and `agent`: this petset, or the stand-ins (in a directory that
/// lives as long as this value).
enum Roles {
    Petset,
    StandIn(tempfile::TempDir),
}

/// A stand-in for `petset server` (a `petset up` without a node, which also writes the join
/// token) and `petset agent` (a Node registered Ready through kubectl, at its `--node-ip`),
/// so that what `cluster up` itself does is tested whatever the roles do. It follows a
/// first line that names the real petset and kubectl.
const STAND_IN: &str = r#"set -e
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

impl Roles {
    fn stand_in() -> Self {
        use std::os::unix::fs::PermissionsExt;
        let bin = tempfile::tempdir().expect("temp dir");
        let script = bin.path().join("stand-in");
        let programs = format!(
            "#!/bin/sh\nPETSET='{}' KUBECTL='{KUBECTL}'\n",
            binary().display()
        );
        std::fs::write(&script, programs + STAND_IN).expect("writing the stand-in");
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

    /// Starts a cluster of `nodes` with these roles and waits until they are Ready.
    fn start(&self, nodes: usize, runtime: &str) -> LocalCluster {
        let args = self.args();
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        LocalCluster::start(binary(), nodes, runtime, &args).unwrap_or_else(|e| panic!("{e}"))
    }
}

/// `cluster.json` of a running cluster (or of one that crashed).
fn record(cluster: &LocalCluster) -> serde_json::Value {
    let path = cluster.data_dir().join("cluster.json");
    let text = std::fs::read_to_string(&path).expect("cluster.json");
    serde_json::from_str(&text).expect("JSON")
}

/// The pids `cluster.json` records, by role.
fn recorded_pids(cluster: &LocalCluster) -> Vec<(String, u32)> {
    record(cluster)["processes"]
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

fn cluster_down(dir: &Path) -> std::process::Output {
    petset(&["cluster", "down", "--data-dir", &dir.display().to_string()])
}

/// Runs `cluster down` on its directory when dropped.
struct DownOnDrop(std::path::PathBuf);

impl Drop for DownOnDrop {
    fn drop(&mut self) {
        let _ = cluster_down(&self.0);
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

/// Each node `kubectl get nodes` shows: name, InternalIP and Ready status.
fn nodes(cluster: &LocalCluster) -> Vec<String> {
    cluster
        .kubectl(&[
            "get",
            "nodes",
            "-o",
            "jsonpath={range .items[*]}{.metadata.name} {.status.addresses[?(@.type==\"InternalIP\")].address} {.status.conditions[?(@.type==\"Ready\")].status}{\"\\n\"}{end}",
        ])
        .ok()
        .lines()
        .map(str::to_string)
        .collect()
}

/// Three simulated nodes Ready at their own loopback addresses; the summary names the
/// kubeconfig and every log; `signal` stops every process and leaves only the data.
fn simulated_cluster_runs_and_stops(roles: Roles, signal: &str) {
    let mut cluster = roles.start(3, "simulated");
    assert_eq!(
        nodes(&cluster),
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
    let log = cluster.log();
    let usage = format!(
        "To use it: export KUBECONFIG={}",
        cluster.kubeconfig().display()
    );
    assert!(log.contains(&usage), "{log}");
    for node_log in [
        "server/server.log",
        "nodes/n1/agent.log",
        "nodes/n3/agent.log",
    ] {
        let path = cluster.data_dir().join(node_log);
        assert!(log.contains(&path.display().to_string()), "{log}");
        assert!(path.exists(), "{node_log}");
    }

    let status = cluster.stop_with(signal).expect("stopping");
    assert!(status.success(), "{status}\n{}", cluster.log());
    assert!(pids.iter().all(|(_, pid)| gone(*pid)), "{pids:?} still run");
    assert!(!cluster.data_dir().join("cluster.json").exists());
    assert!(
        cluster.kubeconfig().exists(),
        "the kubeconfig stays for the next cluster up"
    );
}

#[test]
fn cluster_up_starts_the_server_then_every_node_and_stops_them_all() {
    simulated_cluster_runs_and_stops(Roles::stand_in(), "TERM");
}

#[test]
fn cluster_up_stops_them_all_when_its_terminal_goes_away() {
    simulated_cluster_runs_and_stops(Roles::stand_in(), "HUP");
}

#[test]
fn a_simulated_cluster_has_its_nodes_on_loopback_addresses_and_stops_on_ctrl_c() {
    simulated_cluster_runs_and_stops(Roles::Petset, "INT");
}

#[test]
fn when_a_node_dies_cluster_up_says_which_and_the_rest_carries_on() {
    let mut cluster = Roles::stand_in().start(2, "simulated");
    let pids = recorded_pids(&cluster);
    let (_, second) = pids
        .iter()
        .find(|(role, _)| role == "petset-n2")
        .expect("petset-n2 runs");
    let _ = Command::new("kill")
        .args(["-KILL", &second.to_string()])
        .status();
    let told = wait_until(Duration::from_secs(30), || {
        let log = cluster.log();
        log.contains("petset-n2 exited unexpectedly")
            && log.contains("the rest of the cluster carries on")
    });
    assert!(told, "{}", cluster.log());
    assert!(cluster.is_running(), "{}", cluster.log());
    let others: Vec<&(String, u32)> = pids
        .iter()
        .filter(|(role, _)| role != "petset-n2")
        .collect();
    assert!(
        others.iter().all(|(_, pid)| !gone(*pid)),
        "{others:?} stopped"
    );
    let status = cluster.stop().expect("stopping");
    assert!(status.success(), "{status}\n{}", cluster.log());
    assert!(pids.iter().all(|(_, pid)| gone(*pid)), "{pids:?} still run");
    assert!(!cluster.data_dir().join("cluster.json").exists());
}

/// A two-node runc cluster and its id, where one can run: with this petset's roles when it
/// has them, with the stand-ins as root.
fn start_runc(test: &str, roles: &Roles) -> Option<(LocalCluster, String)> {
    let can_run = match roles {
        Roles::Petset => petset_testkit::can_run_containers(test),
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
    let cluster = roles.start(2, "runc");
    let id = record(&cluster)["id"].as_str().expect("an id").to_string();
    Some((cluster, id))
}

/// The nodes are Ready at their addresses on the bridge (so they reached the server through
/// it), each in its namespace; a clean stop leaves nothing.
fn runc_cluster_is_made_and_removed(test: &str, roles: Roles) {
    let Some((mut cluster, id)) = start_runc(test, &roles) else {
        return;
    };
    let subnet = record(&cluster)["subnet"]
        .as_str()
        .expect("a subnet")
        .to_string();
    let prefix = subnet.trim_end_matches(".0/24");
    assert_eq!(
        nodes(&cluster),
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

    let status = cluster.stop().expect("stopping");
    assert!(status.success(), "{status}\n{}", cluster.log());
    assert_eq!(names_left(&id), Vec::<String>::new());
    assert!(!cluster.data_dir().join("cluster.json").exists());
}

/// A `cluster up` killed with SIGKILL: its processes stop (they get SIGTERM when it dies), its
/// network stays until `cluster down` removes it.
fn killed_cluster_up_is_cleaned_up_by_cluster_down(test: &str, roles: Roles) {
    let Some((mut cluster, id)) = start_runc(test, &roles) else {
        return;
    };
    // Should an assertion below fail, what the crash left is still removed.
    let _down = DownOnDrop(cluster.data_dir().to_path_buf());
    let pids = recorded_pids(&cluster);
    assert_eq!(pids.len(), 3, "{pids:?}");
    cluster.stop_with("KILL").expect("killing cluster up");
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
    let down = cluster_down(cluster.data_dir());
    assert!(down.status.success(), "{down:?}");
    assert_eq!(names_left(&id), Vec::<String>::new());
    assert!(!cluster.data_dir().join("cluster.json").exists());
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

#[test]
fn a_cluster_of_three_servers_runs_them_over_one_etcd_and_stops_them_all() {
    let test = "a_cluster_of_three_servers_runs_them_over_one_etcd_and_stops_them_all";
    if !Path::new("/usr/bin/etcd").exists() {
        return petset_testkit::skip(test, "needs Debian's etcd-server");
    }
    let mut cluster = LocalCluster::start(binary(), 2, "simulated", &["--servers", "3"])
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        nodes(&cluster),
        ["petset-n1 127.0.0.11 True", "petset-n2 127.0.0.12 True"]
    );
    let pids = recorded_pids(&cluster);
    let roles: Vec<&str> = pids.iter().map(|(role, _)| role.as_str()).collect();
    assert_eq!(
        roles,
        [
            "etcd:1",
            "etcd:2",
            "etcd:3",
            "server",
            "server:2",
            "server:3",
            "petset-n1",
            "petset-n2"
        ]
    );
    // Every server stands in the kubernetes Endpoints, and one holds the controllers' Lease.
    let published = wait_until(Duration::from_secs(30), || {
        cluster
            .kubectl(&[
                "get",
                "endpoints",
                "kubernetes",
                "-o",
                "jsonpath={.subsets[*].ports[0].port}",
            ])
            .stdout
            .split_whitespace()
            .count()
            == 3
    });
    assert!(
        published,
        "{:?}",
        cluster.kubectl(&["get", "endpoints", "kubernetes", "-o", "yaml"])
    );
    let holder = cluster
        .kubectl(&[
            "get",
            "lease",
            "-n",
            "kube-system",
            "petset-controller-manager",
            "-o",
            "jsonpath={.spec.holderIdentity}",
        ])
        .ok()
        .to_string();
    assert!(!holder.is_empty());

    let status = cluster.stop().expect("stopping");
    assert!(status.success(), "{status}\n{}", cluster.log());
    assert!(pids.iter().all(|(_, pid)| gone(*pid)), "{pids:?} still run");
    assert!(!cluster.data_dir().join("cluster.json").exists());
}
