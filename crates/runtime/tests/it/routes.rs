//! The host-gw route primitives for real, between two network namespaces on one bridge (two
//! "nodes" of the private test network 10.251.N.0/24), each with a veth end of its own
//! holding an address of its own pod CIDR (a "pod"). A ping from A's pod to B's pod goes through only
//! once both routes are there, and not after one goes. Needs root and busybox (its ping);
//! skips elsewhere (fails under CI=true). Everything it makes is removed by a guard, even
//! when it fails.
//!
//! The primitives act on the calling process's namespace, so the test runs them in a node's
//! namespace by running this test binary's `in_namespace` helper there (`ip netns exec`).

use std::net::Ipv4Addr;
use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use petset_runtime::network::Cidr;
use petset_runtime::network::routes::{self, PodRoute};
use petset_testkit::{on_path, skip, wait_until};

const HELPER: &str = "routes::in_namespace";
const OPERATION: &str = "PETSET_TEST_ROUTE_OPERATION";
const ANSWER: &str = "ROUTES-HELPER:";

fn run(program: &str, args: &[&str]) -> Output {
    Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{program} {args:?}: {e}"))
}

fn must(program: &str, args: &[&str]) -> String {
    let output = run(program, args);
    assert!(
        output.status.success(),
        "{program} {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"))
}

/// Two namespaces, a bridge, the veths and what is in them; removed on drop.
struct Nodes {
    namespaces: [String; 2],
    bridge: String,
    host_ends: [String; 2],
}

impl Drop for Nodes {
    fn drop(&mut self) {
        // A namespace takes its links with it, and a veth its peer.
        for namespace in &self.namespaces {
            let _ = run("ip", &["netns", "del", namespace]);
        }
        for link in self.host_ends.iter().chain([&self.bridge]) {
            if Path::new("/sys/class/net").join(link).exists() {
                let _ = run("ip", &["link", "del", link]);
            }
        }
    }
}

impl Nodes {
    /// Node A and node B at `addresses` on one /24, each with a "pod" at `pods[i]`.
    fn make(id: u32, addresses: [&str; 2], pods: [&str; 2]) -> Self {
        let nodes = Nodes {
            namespaces: [format!("pst-rt{id}-a"), format!("pst-rt{id}-b")],
            bridge: format!("prt{id}b"),
            host_ends: [format!("prt{id}a"), format!("prt{id}c")],
        };
        must("ip", &["link", "add", &nodes.bridge, "type", "bridge"]);
        must("ip", &["link", "set", &nodes.bridge, "up"]);
        for i in 0..2 {
            let namespace = &nodes.namespaces[i];
            let host_end = &nodes.host_ends[i];
            must("ip", &["netns", "add", namespace]);
            must(
                "ip",
                &[
                    "link", "add", host_end, "type", "veth", "peer", "name", "eth0", "netns",
                    namespace,
                ],
            );
            must(
                "ip",
                &["link", "set", host_end, "master", &nodes.bridge, "up"],
            );
            let address = format!("{}/24", addresses[i]);
            let pod = format!("{}/32", pods[i]);
            for command in [
                vec!["link", "set", "lo", "up"],
                vec!["addr", "add", &address, "dev", "eth0"],
                vec!["link", "set", "eth0", "up"],
                // The "pod": one end of a veth pair of the namespace's own (no dummy
                // module needed), holding an address of the node's pod CIDR.
                vec![
                    "link", "add", "pod0", "type", "veth", "peer", "name", "pod1",
                ],
                vec!["addr", "add", &pod, "dev", "pod0"],
                vec!["link", "set", "pod0", "up"],
                vec!["link", "set", "pod1", "up"],
            ] {
                let mut args = vec!["-n", namespace.as_str()];
                args.extend(command);
                must("ip", &args);
            }
        }
        nodes
    }

    /// Runs one route operation in node `i`'s namespace through the helper; its answer line.
    fn in_namespace(&self, i: usize, operation: &str) -> Result<String, String> {
        let exe = std::env::current_exe().expect("the test binary");
        let output = Command::new("ip")
            .args(["netns", "exec", &self.namespaces[i]])
            .arg(exe)
            .args([
                HELPER,
                "--exact",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(OPERATION, operation)
            .output()
            .expect("running the helper");
        let stdout = String::from_utf8_lossy(&output.stdout);
        let answer = stdout
            .lines()
            // libtest prints the test's name on the same line before its output.
            .find_map(|l| l.split_once(ANSWER).map(|(_, answer)| answer))
            .map(|a| a.trim().to_string())
            .unwrap_or_default();
        if answer.starts_with("error") || !output.status.success() {
            Err(format!(
                "{answer} {}",
                String::from_utf8_lossy(&output.stderr)
            ))
        } else {
            Ok(answer)
        }
    }

    fn ping(&self, from: &str, to: &str) -> bool {
        run(
            "ip",
            &[
                "netns",
                "exec",
                &self.namespaces[0],
                "busybox",
                "ping",
                "-c",
                "1",
                "-W",
                "1",
                "-I",
                from,
                to,
            ],
        )
        .status
        .success()
    }
}

/// Not a test of its own: the entry point `Nodes::in_namespace` runs inside a namespace.
#[test]
#[ignore = "run by routes_carry_pod_traffic_between_two_nodes inside a node's namespace"]
fn in_namespace() {
    let operation = std::env::var(OPERATION)
        .expect("run only by routes_carry_pod_traffic_between_two_nodes, which sets the operation");
    let words: Vec<&str> = operation.split_whitespace().collect();
    let cidr = |text: &str| text.parse::<Cidr>().expect("cidr");
    let answer = match words.as_slice() {
        ["replace", destination, gateway] => routes::replace_route(&PodRoute {
            destination: cidr(destination),
            gateway: gateway.parse::<Ipv4Addr>().expect("gateway"),
        })
        .map(|()| "replaced".to_string()),
        ["remove", destination] => {
            routes::remove_route(cidr(destination)).map(|()| "removed".to_string())
        }
        ["list"] => routes::petset_routes().map(|listed| {
            listed
                .iter()
                .map(|r| format!("{}>{}", r.destination, r.gateway))
                .collect::<Vec<_>>()
                .join(",")
        }),
        ["forward"] => routes::enable_ipv4_forwarding().map(|()| "forwarding".to_string()),
        other => panic!("unknown operation {other:?}"),
    };
    match answer {
        Ok(answer) => println!("{ANSWER} {answer}"),
        Err(error) => println!("{ANSWER} error: {error}"),
    }
}

#[test]
fn routes_carry_pod_traffic_between_two_nodes() {
    const TEST: &str = "routes_carry_pod_traffic_between_two_nodes";
    if !is_root() {
        return skip(TEST, "needs root to make network namespaces");
    }
    if !on_path("ip") || !on_path("busybox") {
        return skip(TEST, "needs ip (iproute2) and busybox (its ping)");
    }
    let id = std::process::id() % 100_000;
    let n = 100 + id % 100;
    let (a, b) = (format!("10.251.{n}.11"), format!("10.251.{n}.12"));
    let (pods_a, pods_b) = (format!("10.252.{n}.0/24"), format!("10.253.{n}.0/24"));
    let (pod_a, pod_b) = (format!("10.252.{n}.2"), format!("10.253.{n}.2"));
    let host_forwarding = std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward");
    let names;
    {
        let nodes = Nodes::make(id, [&a, &b], [&pod_a, &pod_b]);
        names = (nodes.namespaces.clone(), nodes.bridge.clone());
        assert!(
            !nodes.ping(&pod_a, &pod_b),
            "B's pod answered before any route"
        );

        assert_eq!(
            nodes.in_namespace(0, &format!("replace {pods_b} {b}")),
            Ok("replaced".into())
        );
        assert!(
            !nodes.ping(&pod_a, &pod_b),
            "B's pod answered A's without a route back"
        );
        assert_eq!(
            nodes.in_namespace(1, &format!("replace {pods_a} {a}")),
            Ok("replaced".into())
        );
        assert!(
            wait_until(Duration::from_secs(20), || nodes.ping(&pod_a, &pod_b)),
            "A's pod cannot reach B's through the routes"
        );
        assert_eq!(nodes.in_namespace(0, "list"), Ok(format!("{pods_b}>{b}")));

        // The kernel keeps host-gw's layer-2 rule: no gateway off the node's own link.
        let refused = nodes.in_namespace(0, &format!("replace 10.254.{n}.0/24 192.0.2.1"));
        assert!(refused.is_err(), "{refused:?}");

        // A route to the same kind of network that petset did not make is left alone.
        let foreign = format!("10.254.{n}.0/24");
        must(
            "ip",
            &[
                "-n",
                &nodes.namespaces[0],
                "route",
                "add",
                &foreign,
                "via",
                &b,
                "proto",
                "static",
            ],
        );
        assert_eq!(
            nodes.in_namespace(0, &format!("remove {foreign}")),
            Ok("removed".into())
        );
        let table = must("ip", &["-n", &nodes.namespaces[0], "-4", "route", "show"]);
        assert!(table.contains(&foreign), "{table}");
        assert_eq!(nodes.in_namespace(0, "list"), Ok(format!("{pods_b}>{b}")));

        assert_eq!(
            nodes.in_namespace(0, &format!("remove {pods_b}")),
            Ok("removed".into())
        );
        assert!(
            !nodes.ping(&pod_a, &pod_b),
            "B's pod still answers after the route went"
        );
        assert_eq!(nodes.in_namespace(0, "list"), Ok(String::new()));

        // Forwarding goes on in the node's namespace, and only there.
        assert_eq!(nodes.in_namespace(0, "forward"), Ok("forwarding".into()));
        let inside = must(
            "ip",
            &[
                "netns",
                "exec",
                &nodes.namespaces[0],
                "cat",
                "/proc/sys/net/ipv4/ip_forward",
            ],
        );
        assert_eq!(inside.trim(), "1");
        assert_eq!(
            std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward").ok(),
            host_forwarding.ok()
        );
    }
    let (namespaces, bridge) = names;
    for namespace in namespaces {
        assert!(
            !Path::new("/run/netns").join(&namespace).exists(),
            "{namespace} is left"
        );
    }
    assert!(
        !Path::new("/sys/class/net").join(&bridge).exists(),
        "{bridge} is left"
    );
}
