//! The route controller for real, in a network namespace made for the test (never the
//! host's): against an in-process API server it routes the other nodes' pod CIDRs via their
//! addresses, refuses a node off its link, removes a stale petset route from an earlier run,
//! follows a node's new address, removes the route of a deleted node, turns forwarding on
//! in its namespace only, and keeps the service proxy's pod networks in step. Needs root;
//! skips elsewhere (fails under CI=true). The namespace goes at the end, even on failure.
//!
//! The controller acts on its own process's namespace, so the test runs this binary's
//! `controller_in_namespace` helper inside it (`ip netns exec`).

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use petset_agent::routes::{self, PodNetworks};
use petset_apiserver::test_cluster::TestCluster;
use petset_runtime::network::Cidr;
use petset_runtime::network::routes::petset_routes;
use serde_json::json;

const HELPER: &str = "routes::controller_in_namespace";
/// The test's /24 number (N in 10.251.N.0/24 and the pod CIDRs), from the outer test.
const SUBNET: &str = "PETSET_TEST_ROUTES_SUBNET";
const DONE: &str = "ROUTE-CONTROLLER-HELPER: done";
/// How long a route may take to appear or go (a hang guard, not a speed check).
const PATIENCE: Duration = Duration::from_secs(20);

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"))
}

/// The test's namespace; deleted (with its links) on drop.
struct Namespace(String);

impl Drop for Namespace {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

fn ip(args: &[&str]) {
    let output = Command::new("ip").args(args).output().expect("running ip");
    assert!(
        output.status.success(),
        "ip {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn the_route_controller_follows_the_nodes_in_its_namespace() {
    const TEST: &str = "the_route_controller_follows_the_nodes_in_its_namespace";
    if !is_root() {
        return petset_testkit::skip(TEST, "needs root to make a network namespace");
    }
    if !petset_testkit::on_path("ip") {
        return petset_testkit::skip(TEST, "needs ip (iproute2)");
    }
    let n = 100 + std::process::id() % 100;
    let name = format!("pst-rc{}", std::process::id());
    let host_forwarding = std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward").ok();
    {
        let namespace = Namespace(name.clone());
        ip(&["netns", "add", &namespace.0]);
        // This node's link: one end of a veth pair of the namespace's own, on 10.251.N.0/24.
        let address = format!("10.251.{n}.11/24");
        for args in [
            vec!["link", "set", "lo", "up"],
            vec![
                "link", "add", "eth0", "type", "veth", "peer", "name", "eth1",
            ],
            vec!["addr", "add", address.as_str(), "dev", "eth0"],
            vec!["link", "set", "eth0", "up"],
            vec!["link", "set", "eth1", "up"],
        ] {
            let mut all = vec!["-n", namespace.0.as_str()];
            all.extend(args);
            ip(&all);
        }
        // A route a crash of an earlier run left (petset's mark, a node that is gone).
        let stale = format!("10.252.{n}.0/24");
        let gateway = format!("10.251.{n}.99");
        ip(&[
            "-n",
            &namespace.0,
            "route",
            "add",
            &stale,
            "via",
            &gateway,
            "proto",
            &routes::ROUTE_PROTOCOL.to_string(),
        ]);
        let exe = std::env::current_exe().expect("the test binary");
        let output = Command::new("ip")
            .args(["netns", "exec", &namespace.0])
            .arg(exe)
            .args([HELPER, "--exact", "--ignored", "--nocapture"])
            .env(SUBNET, n.to_string())
            .output()
            .expect("running the helper");
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success() && stdout.contains(DONE),
            "the controller in its namespace: {stdout}\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
        assert_eq!(
            std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward").ok(),
            host_forwarding,
            "the host's forwarding changed"
        );
    }
    assert!(
        !Path::new("/run/netns").join(&name).exists(),
        "{name} is left"
    );
}

fn node(name: &str, pod_cidr: &str) -> Node {
    serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {"podCIDR": pod_cidr, "podCIDRs": [pod_cidr]},
    }))
    .expect("node")
}

/// Gives the node its `InternalIP`, as its agent does through the status.
async fn set_address(nodes: &Api<Node>, name: &str, address: &str) {
    nodes
        .patch_status(
            name,
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"addresses": [
                {"type": "InternalIP", "address": address}]}})),
        )
        .await
        .expect("setting a node's address");
}

/// Waits until petset's routes in this namespace are `wanted`.
async fn routes_become(wanted: &BTreeMap<Cidr, Ipv4Addr>) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let now: BTreeMap<Cidr, Ipv4Addr> = petset_routes()
            .expect("listing routes")
            .into_iter()
            .map(|r| (r.destination, r.gateway))
            .collect();
        if &now == wanted {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "routes are {now:?}, not {wanted:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Not a test of its own: what the test above runs inside its namespace.
#[tokio::test]
#[ignore = "run by the_route_controller_follows_the_nodes_in_its_namespace inside a namespace"]
async fn controller_in_namespace() {
    let n: u32 = std::env::var(SUBNET)
        .ok()
        .and_then(|n| n.parse().ok())
        .expect("run only by the_route_controller_follows_the_nodes_in_its_namespace");
    let cidr = |text: String| text.parse::<Cidr>().expect("cidr");
    let own = cidr(format!("10.42.{n}.0/24"));
    let theirs = cidr(format!("10.253.{n}.0/24"));
    let (first, moved) = (
        Ipv4Addr::new(10, 251, n as u8, 12),
        Ipv4Addr::new(10, 251, n as u8, 13),
    );
    let cluster = TestCluster::start().await;
    let nodes: Api<Node> = Api::all(cluster.client());
    for (name, pod_cidr, address) in [
        ("node-1", own.to_string(), format!("10.251.{n}.11")),
        ("node-2", theirs.to_string(), first.to_string()),
        ("far", format!("10.254.{n}.0/24"), "192.0.2.7".to_string()),
    ] {
        nodes
            .create(&PostParams::default(), &node(name, &pod_cidr))
            .await
            .expect("a node");
        set_address(&nodes, name, &address).await;
    }
    let reached = PodNetworks::of_this_node(Some(own));
    let controller = tokio::spawn(routes::run(
        cluster.client(),
        "node-1".into(),
        own,
        true,
        reached.clone(),
    ));

    // The stale route goes, node-2 is routed, the node off the link is not.
    routes_become(&BTreeMap::from([(theirs, first)])).await;
    assert_eq!(reached.current(), [own, theirs]);
    assert_eq!(
        std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward")
            .expect("ip_forward")
            .trim(),
        "1"
    );

    set_address(&nodes, "node-2", &moved.to_string()).await;
    routes_become(&BTreeMap::from([(theirs, moved)])).await;

    nodes
        .delete("node-2", &DeleteParams::default())
        .await
        .expect("deleting node-2");
    routes_become(&BTreeMap::new()).await;
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while reached.current() != [own] {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{:?}",
            reached.current()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    controller.abort();
    println!("{DONE}");
}
