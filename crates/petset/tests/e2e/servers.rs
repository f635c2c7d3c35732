//! Several `petset server`s over one etcd, sharing one CA and admin token (copied): both
//! serve the API and stand in the `kubernetes` Endpoints, one runs the controllers under the
//! `kube-system/petset-controller-manager` Lease, and when it is killed (-9) the other takes
//! the Lease over, the controllers carry on from there, and the dead one drops out of the
//! Endpoints.

use std::net::IpAddr;
use std::time::Duration;

use petset_testkit::{Agent, Etcd, Petset, skip, wait_until};

use crate::binary;

const SET: &str = r#"
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: shared}
spec:
  serviceName: shared
  replicas: 2
  podManagementPolicy: Parallel
  selector: {matchLabels: {app: shared}}
  template:
    metadata: {labels: {app: shared}}
    spec: {containers: [{name: main, image: busybox}]}
"#;

fn lease_holder(server: &Petset) -> String {
    server
        .kubectl(&[
            "get",
            "lease",
            "-n",
            "kube-system",
            "petset-controller-manager",
            "-o",
            "jsonpath={.spec.holderIdentity}/{.spec.leaseTransitions}",
        ])
        .stdout
}

fn pods(server: &Petset) -> usize {
    server
        .kubectl(&["get", "pods", "-l", "app=shared", "-o", "name"])
        .stdout
        .lines()
        .count()
}

/// The ports the `kubernetes` Endpoints name (every server listens on 127.0.0.1 here).
fn api_ports(server: &Petset) -> Vec<u16> {
    let listed = server
        .kubectl(&[
            "get",
            "endpoints",
            "kubernetes",
            "-o",
            "jsonpath={.subsets[*].ports[0].port}",
        ])
        .stdout;
    let mut ports: Vec<u16> = listed
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect();
    ports.sort_unstable();
    ports
}

fn node_ready(server: &Petset, node: &str) -> bool {
    server
        .kubectl(&[
            "get",
            "node",
            node,
            "-o",
            "jsonpath={.status.conditions[?(@.type=='Ready')].status}",
        ])
        .stdout
        == "True"
}

fn node_lease_renewed(server: &Petset, node: &str) -> String {
    server
        .kubectl(&[
            "get",
            "lease",
            "-n",
            "kube-node-lease",
            node,
            "-o",
            "jsonpath={.spec.renewTime}",
        ])
        .stdout
}

fn identity(server: &Petset) -> String {
    std::fs::read_to_string(server.data_dir().join("server-identity"))
        .expect("the server's identity")
        .trim()
        .to_string()
}

#[test]
fn two_servers_over_one_etcd_elect_one_controller_manager_and_fail_over() {
    let test = "two_servers_over_one_etcd_elect_one_controller_manager_and_fail_over";
    let etcd = match Etcd::start() {
        Ok(etcd) => etcd,
        Err(reason) => return skip(test, &reason),
    };
    let store = etcd.store_spec();
    let mut first =
        Petset::start_server(binary(), &["--store", &store]).unwrap_or_else(|e| panic!("{e}"));
    let elected = wait_until(Duration::from_secs(30), || {
        lease_holder(&first) == format!("{}/0", identity(&first))
    });
    assert!(
        elected,
        "the first server holds no lease: {}",
        lease_holder(&first)
    );
    let second = Petset::start_server_sharing_pki(binary(), &first, &["--store", &store])
        .unwrap_or_else(|e| panic!("{e}"));
    // One cluster: the first server's kubeconfig (its CA, its token) is good on the second,
    // and both hand out the same CA to joining agents.
    let second_url = format!("https://{}", second.api_addr());
    let through_first = first.kubectl_command(&[
        "get",
        "namespace",
        "kube-system",
        "-o",
        "name",
        "--server",
        &second_url,
    ]);
    assert_eq!(
        petset_testkit::Kubectl::run(through_first, None)
            .ok()
            .trim(),
        "namespace/kube-system"
    );
    assert_eq!(
        std::fs::read(first.data_dir().join("pki/ca.crt")).expect("first CA"),
        std::fs::read(second.data_dir().join("pki/ca.crt")).expect("second CA")
    );

    let mut both = vec![first.api_addr().port(), second.api_addr().port()];
    both.sort_unstable();
    let published = wait_until(Duration::from_secs(30), || api_ports(&second) == both);
    assert!(
        published,
        "the kubernetes Endpoints name {:?}, not {both:?}",
        api_ports(&second)
    );

    // Written through the second server, reconciled by the first's controllers.
    second
        .kubectl_with_input(&["apply", "-f", "-"], Some(SET))
        .ok();
    let created = wait_until(Duration::from_secs(30), || pods(&second) == 2);
    assert!(created, "no pods were made\n{}", first.log());
    assert_eq!(
        lease_holder(&second),
        format!("{}/0", identity(&first)),
        "the second server took the lease while the first lives"
    );

    // An agent that knows both servers stays in touch when one dies.
    let first_url = format!("https://{}", first.api_addr());
    let mut agent = Agent::spawn(
        binary(),
        &first,
        "both-servers",
        IpAddr::from([127, 0, 0, 51]),
        &["--server", &second_url],
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let ready = wait_until(Duration::from_secs(60), || {
        node_ready(&second, "both-servers") || !agent.is_running()
    });
    assert!(
        ready && agent.is_running(),
        "the agent did not join through {first_url}\n{}",
        agent.log()
    );

    first.stop_with("KILL").expect("kill -9 the leader");
    second
        .kubectl(&["scale", "statefulset", "shared", "--replicas=4"])
        .ok();
    let took_over = wait_until(Duration::from_secs(60), || {
        lease_holder(&second) == format!("{}/1", identity(&second)) && pods(&second) == 4
    });
    assert!(
        took_over,
        "the second server did not carry on: lease {}, {} pods\n{}",
        lease_holder(&second),
        pods(&second),
        second.log()
    );
    // The agent renews its Lease through the surviving server.
    let renewed_before = node_lease_renewed(&second, "both-servers");
    let renewing = wait_until(Duration::from_secs(60), || {
        node_lease_renewed(&second, "both-servers") != renewed_before
    });
    assert!(
        renewing && agent.is_running(),
        "the agent stopped renewing its Lease\n{}",
        agent.log()
    );
    assert!(node_ready(&second, "both-servers"));

    // The dead server drops out of the Endpoints once its Lease is stale.
    let dropped = wait_until(Duration::from_secs(60), || {
        api_ports(&second) == [second.api_addr().port()]
    });
    assert!(dropped, "the Endpoints still name {:?}", api_ports(&second));
}
