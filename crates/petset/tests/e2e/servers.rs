//! Several `petset server`s over one etcd, sharing one CA and admin token (copied): both
//! serve the API and stand in the `kubernetes` Endpoints, one runs the controllers under the
//! `kube-system/petset-controller-manager` Lease, and when it is killed (-9) the other takes
//! the Lease over, the controllers carry on from there, and the dead one drops out of the
//! Endpoints.

use std::net::IpAddr;
use std::time::Duration;

use petset_testkit::{Agent, Etcd, LocalCluster, Petset, skip, wait_until};

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

/// The pid `cluster up` recorded for `role`.
fn pid_of(cluster: &LocalCluster, role: &str) -> u32 {
    let record: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(cluster.data_dir().join("cluster.json")).expect("cluster.json"),
    )
    .expect("json");
    record["processes"]
        .as_array()
        .expect("processes")
        .iter()
        .find(|p| p["role"] == role)
        .and_then(|p| p["pid"].as_u64())
        .and_then(|pid| u32::try_from(pid).ok())
        .unwrap_or_else(|| panic!("no {role} in {record}"))
}

/// kubectl against server `port` of the cluster (its kubeconfig names the first server).
fn kubectl_at(cluster: &LocalCluster, port: u16, args: &[&str]) -> petset_testkit::Kubectl {
    let mut command = cluster.kubectl_command(args);
    command.args(["--server", &format!("https://127.0.0.1:{port}")]);
    petset_testkit::Kubectl::run(command, None)
}

const HUNDRED: &str = r#"
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: hundred}
spec:
  serviceName: hundred
  replicas: 100
  podManagementPolicy: Parallel
  selector: {matchLabels: {app: hundred}}
  template:
    metadata: {labels: {app: hundred}}
    spec: {containers: [{name: main, image: busybox}]}
"#;

/// `count` Services named `<prefix>-<i>`, as one multi-document manifest.
fn services(prefix: &str, count: usize) -> String {
    (0..count)
        .map(|i| {
            format!(
                "apiVersion: v1\nkind: Service\nmetadata: {{name: {prefix}-{i}}}\nspec: {{ports: [{{port: 80}}]}}\n"
            )
        })
        .collect::<Vec<_>>()
        .join("---\n")
}

#[test]
fn three_servers_survive_the_loss_of_the_controllers_leader_during_a_scale_up() {
    let test = "three_servers_survive_the_loss_of_the_controllers_leader_during_a_scale_up";
    if !std::path::Path::new("/usr/bin/etcd").exists() {
        return skip(test, "needs Debian's etcd-server");
    }
    let cluster = LocalCluster::start(binary(), 1, "simulated", &["--servers", "3"])
        .unwrap_or_else(|e| panic!("{e}"));
    let first_port = {
        let text = std::fs::read_to_string(cluster.kubeconfig()).expect("kubeconfig");
        text.lines()
            .find_map(|line| line.trim().strip_prefix("server: https://127.0.0.1:"))
            .and_then(|port| port.trim().parse::<u16>().ok())
            .expect("the first server's port")
    };
    let ports: Vec<u16> = (0..3).map(|i| first_port + i).collect();
    let identities: Vec<String> = ["server", "servers/s2", "servers/s3"]
        .iter()
        .map(|dir| {
            std::fs::read_to_string(cluster.data_dir().join(dir).join("server-identity"))
                .expect("identity")
                .trim()
                .to_string()
        })
        .collect();
    let holder = || {
        kubectl_at(
            &cluster,
            ports[2],
            &[
                "get",
                "lease",
                "-n",
                "kube-system",
                "petset-controller-manager",
                "-o",
                "jsonpath={.spec.holderIdentity}",
            ],
        )
        .stdout
    };
    let leader = identities
        .iter()
        .position(|identity| *identity == holder())
        .unwrap_or_else(|| panic!("the lease holder {:?} is none of {identities:?}", holder()));
    let survivor = ports[(leader + 1) % 3];

    // Every pod the scale-up makes, as a surviving server's watch sees it.
    let seen = tempfile::NamedTempFile::new().expect("temp file");
    let mut watch = cluster
        .kubectl_command(&[
            "get",
            "pods",
            "-l",
            "app=hundred",
            "--watch",
            "-o",
            "jsonpath={.metadata.name} {.metadata.uid}{\"\\n\"}",
            "--server",
            &format!("https://127.0.0.1:{survivor}"),
        ])
        .stdout(seen.reopen().expect("reopen"))
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("kubectl get --watch");

    let apply = cluster.kubectl_command(&[
        "apply",
        "-f",
        "-",
        "--server",
        &format!("https://127.0.0.1:{survivor}"),
    ]);
    petset_testkit::Kubectl::run(apply, Some(HUNDRED)).ok();
    let started = wait_until(Duration::from_secs(60), || {
        kubectl_at(
            &cluster,
            survivor,
            &["get", "pods", "-l", "app=hundred", "-o", "name"],
        )
        .stdout
        .lines()
        .count()
            >= 5
    });
    assert!(started, "the scale-up did not start");
    let role = match leader {
        0 => "server".to_string(),
        index => format!("server:{}", index + 1),
    };
    let _ = std::process::Command::new("kill")
        .args(["-KILL", &pid_of(&cluster, &role).to_string()])
        .status();

    let done = wait_until(Duration::from_secs(180), || {
        kubectl_at(
            &cluster,
            survivor,
            &[
                "get",
                "statefulset",
                "hundred",
                "-o",
                "jsonpath={.status.replicas}",
            ],
        )
        .stdout
            == "100"
    });
    assert!(
        done,
        "the scale-up did not complete after the leader's loss"
    );
    let after = holder();
    assert!(
        after != identities[leader] && identities.contains(&after),
        "the lease went to {after:?}"
    );
    let listed = kubectl_at(
        &cluster,
        survivor,
        &["get", "pods", "-l", "app=hundred", "-o", "name"],
    );
    assert_eq!(listed.stdout.lines().count(), 100);
    let _ = watch.kill();
    let _ = watch.wait();
    // No pod was made twice: each name came with one uid.
    let mut uids: std::collections::BTreeMap<String, std::collections::BTreeSet<String>> =
        Default::default();
    for line in std::fs::read_to_string(seen.path())
        .expect("watch output")
        .lines()
    {
        if let Some((name, uid)) = line.split_once(' ') {
            uids.entry(name.to_string())
                .or_default()
                .insert(uid.to_string());
        }
    }
    assert_eq!(uids.len(), 100, "the watch saw {} pods", uids.len());
    let twice: Vec<_> = uids.iter().filter(|(_, u)| u.len() > 1).collect();
    assert!(twice.is_empty(), "made twice: {twice:?}");

    // Two servers allocating ClusterIPs at once hand out different addresses.
    let surviving: Vec<u16> = ports
        .iter()
        .copied()
        .filter(|p| *p != ports[leader])
        .collect();
    let creators: Vec<_> = surviving
        .iter()
        .enumerate()
        .map(|(i, port)| {
            let mut command = cluster.kubectl_command(&[
                "apply",
                "-f",
                "-",
                "--server",
                &format!("https://127.0.0.1:{port}"),
            ]);
            let manifest = services(&format!("s{i}"), 100);
            std::thread::spawn(move || {
                command.stdout(std::process::Stdio::null());
                petset_testkit::Kubectl::run(command, Some(&manifest))
            })
        })
        .collect();
    for creator in creators {
        let created = creator.join().expect("creator");
        assert!(created.success, "{created:?}");
    }
    let ips = kubectl_at(
        &cluster,
        surviving[0],
        &[
            "get",
            "services",
            "-o",
            "jsonpath={range .items[*]}{.spec.clusterIP}{\"\\n\"}{end}",
        ],
    )
    .ok()
    .to_string();
    let ips: Vec<&str> = ips
        .lines()
        .filter(|ip| !ip.is_empty() && *ip != "None")
        .collect();
    let distinct: std::collections::BTreeSet<&str> = ips.iter().copied().collect();
    // 200 new Services and the kubernetes Service.
    assert_eq!(ips.len(), 201, "{ips:?}");
    assert_eq!(
        distinct.len(),
        ips.len(),
        "a ClusterIP was handed out twice"
    );
}
