//! The nodes' network and the process handling of `cluster up`, with a stand-in for
//! `petset agent` started through the same spawn code. Needs root (it makes a bridge and
//! namespaces); skips otherwise, and fails under CI=true.

use std::time::Duration;

use petset_testkit::{netns as host, skip, wait_until};

use super::children::{self, ClusterProcess, Launch};
use super::layout::Layout;
use super::netns::{self, NodesNetwork};
use super::record::Record;
use super::*;

/// Removes a test's layout however the test ends (a failed assertion included).
struct RemoveOnDrop(Option<Layout>);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        if let Some(layout) = self.0.take() {
            let _ = netns::remove(&layout);
        }
    }
}

fn runc_layout(name: &str, nodes: u32) -> Layout {
    Layout {
        id: fresh_id(NodeRuntime::Runc).expect("an id"),
        name: name.into(),
        runtime: NodeRuntime::Runc,
        nodes,
        api_port: 6443,
        servers: 1,
        subnet: None,
    }
}

/// Makes the layout's network, recording it in `dir` first as `cluster up` does.
fn make(layout: Layout, dir: &Path) -> (Layout, RemoveOnDrop) {
    let network = NodesNetwork::pick_and_make(layout, |layout| {
        Record {
            layout: layout.clone(),
            processes: Vec::new(),
        }
        .write(dir)
    })
    .expect("making the nodes' network");
    let layout = network.layout().clone();
    (layout.clone(), RemoveOnDrop(Some(layout)))
}

/// A stand-in agent per node, in the node's namespace: it prints its `eth0` and waits.
fn start_stand_ins(layout: &Layout, dir: &Path) -> Vec<ClusterProcess> {
    layout
        .all_nodes()
        .map(|node| {
            let log = layout::node_dir(dir, node.index).join("agent.log");
            let process = children::spawn(Launch {
                role: &node.name,
                argv: ["sh", "-c", "ip -4 addr show eth0; exec sleep 600"]
                    .map(String::from)
                    .to_vec(),
                namespace: node.namespace.as_deref(),
                log: &log,
            })
            .expect("starting a stand-in agent");
            let address = format!("inet {}/24", node.address);
            assert!(
                wait_until(Duration::from_secs(30), || {
                    std::fs::read_to_string(&log).is_ok_and(|text| text.contains(&address))
                }),
                "{} did not show {address} on its eth0: {:?}",
                node.name,
                std::fs::read_to_string(&log)
            );
            process
        })
        .collect()
}

fn nothing_left(layout: &Layout) {
    let namespaces: Vec<_> = host::namespaces()
        .into_iter()
        .filter(|n| layout.owns_name(n))
        .collect();
    assert_eq!(namespaces, Vec::<String>::new(), "namespaces left");
    let links: Vec<_> = host::links()
        .into_iter()
        .filter(|n| layout.owns_name(n))
        .collect();
    assert_eq!(links, Vec::<String>::new(), "links left");
}

fn can_make_networks(test: &str) -> bool {
    if !host::is_root() {
        skip(
            test,
            "needs root (it makes a bridge and network namespaces)",
        );
        return false;
    }
    true
}

#[tokio::test]
async fn two_nodes_reach_the_bridge_and_each_other_and_leave_nothing_behind() {
    if !can_make_networks("two_nodes_reach_the_bridge_and_each_other_and_leave_nothing_behind") {
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let (layout, mut guard) = make(runc_layout("plumbing", 2), dir.path());
    let subnet = layout.subnet.expect("a runc layout has a subnet");
    assert!(subnet.to_string().starts_with("10.250."), "{subnet}");
    let bridge = layout.bridge().expect("a bridge");
    assert!(host::links().contains(&bridge));

    let mut stand_ins = start_stand_ins(&layout, dir.path());
    let [first, second] = [layout.node(1), layout.node(2)];
    for (node, other) in [(&first, &second), (&second, &first)] {
        let namespace = node.namespace.as_deref().expect("a namespace");
        assert!(
            host::pings(namespace, &subnet.gateway().to_string()),
            "{} cannot reach the bridge",
            node.name
        );
        assert!(
            host::pings(namespace, &other.address.to_string()),
            "{} cannot reach {}",
            node.name,
            other.name
        );
        // Only the bridge's subnet: no default route out of a node.
        let routes = host::run_in(namespace, &["ip", "-4", "route", "show"]).expect("ip route");
        let routes = String::from_utf8_lossy(&routes.stdout);
        assert!(!routes.contains("default"), "{routes}");
        assert_eq!(routes.lines().count(), 1, "{routes}");
    }

    children::stop_all(&mut stand_ins, Duration::from_secs(20)).await;
    assert!(stand_ins.iter_mut().all(|p| p.exited().is_some()));
    netns::remove(&layout).expect("removing the network");
    guard.0 = None;
    nothing_left(&layout);
    // Removing again finds nothing to do and says so by succeeding.
    netns::remove(&layout).expect("removing again");
}

#[tokio::test]
async fn cluster_down_removes_what_a_crashed_cluster_up_left() {
    if !can_make_networks("cluster_down_removes_what_a_crashed_cluster_up_left") {
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let (layout, mut guard) = make(runc_layout("crashed", 2), dir.path());
    let stand_ins = start_stand_ins(&layout, dir.path());
    let recorded: Vec<_> = stand_ins.iter().map(ClusterProcess::recorded).collect();
    Record {
        layout: layout.clone(),
        processes: recorded.clone(),
    }
    .write(dir.path())
    .expect("recording the processes");
    // The crash: nothing is stopped or removed.
    drop(stand_ins);

    down(ClusterDownArgs {
        data_dir: dir.path().to_path_buf(),
    })
    .await
    .expect("cluster down");
    guard.0 = None;
    nothing_left(&layout);
    for process in &recorded {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", process.pid));
        assert!(
            stat.is_err() || stat.is_ok_and(|s| s.contains(") Z ")),
            "{} still runs",
            process.role
        );
    }
    assert!(!Record::path(dir.path()).exists());
    // A second down has nothing left to do.
    down(ClusterDownArgs {
        data_dir: dir.path().to_path_buf(),
    })
    .await
    .expect("a second cluster down");
}

fn up_args(nodes: u32, dir: &Path) -> ClusterUpArgs {
    ClusterUpArgs {
        nodes,
        node_runtime: NodeRuntime::Simulated,
        data_dir: dir.to_path_buf(),
        api_port: petset_testkit::free_port(),
        servers: 1,
        fence_deadline: 30,
        name: "petset".into(),
        role_binary: None,
    }
}

#[tokio::test]
async fn a_cluster_of_no_nodes_or_too_many_is_refused_before_anything_is_made() {
    let dir = tempfile::tempdir().expect("temp dir");
    let target = dir.path().join("cluster");
    for nodes in [0, 51] {
        let error = run(up_args(nodes, &target)).await.expect_err("refused");
        assert_eq!(
            error.to_string(),
            format!("--nodes {nodes}: a local cluster has 1 to 50 nodes")
        );
    }
    let error = run(ClusterUpArgs {
        name: "Bad_Name".into(),
        ..up_args(1, &target)
    })
    .await
    .expect_err("refused");
    assert!(
        error.to_string().starts_with("--name \"Bad_Name\""),
        "{error}"
    );
    assert!(!target.exists(), "nothing is made for a refused cluster");
}

#[tokio::test]
async fn a_taken_api_port_is_refused_before_anything_is_made() {
    let dir = tempfile::tempdir().expect("temp dir");
    let target = dir.path().join("cluster");
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("a port");
    let port = taken.local_addr().expect("address").port();
    let error = run(ClusterUpArgs {
        api_port: port,
        servers: 1,
        ..up_args(1, &target)
    })
    .await
    .expect_err("refused");
    let message = error.to_string();
    assert!(
        message.starts_with(&format!(
            "--api-port {port}: cannot listen on 127.0.0.1:{port}"
        )),
        "{message}"
    );
    assert!(!target.exists(), "nothing is made for a refused cluster");
}

#[tokio::test]
async fn a_directory_in_use_is_refused() {
    let dir = tempfile::tempdir().expect("temp dir");
    let _held = record::ClusterLock::take(dir.path()).expect("lock");
    let error = run(up_args(1, dir.path())).await.expect_err("refused");
    assert!(
        error
            .to_string()
            .contains("is in use by another `petset cluster up`"),
        "{error}"
    );
    let error = down(ClusterDownArgs {
        data_dir: dir.path().to_path_buf(),
    })
    .await
    .expect_err("refused");
    assert!(error.to_string().contains("in use"), "{error}");
}
