//! Joining: a real `petset server` and real `petset agent`s (simulated nodes, each at an
//! address of its own on loopback). A good token makes a Ready node that the API reaches over
//! its node API; a wrong secret, a wrong CA pin, a revoked token and a stolen node name are
//! each refused with a message that says so, on the agent and in the server's log; and a
//! node's certificate cannot act as another node.

use std::net::IpAddr;
use std::time::Duration;

use petset_testkit::{Agent, Petset, wait_until};

use crate::binary;

fn server() -> Petset {
    Petset::start_server(binary(), &[]).unwrap_or_else(|e| panic!("{e}"))
}

fn loopback(last: u8) -> IpAddr {
    IpAddr::from([127, 0, 0, last])
}

/// Waits until node `name` is Ready; says what is wrong when it is not.
fn wait_ready(server: &Petset, agent: &mut Agent, name: &str) {
    let ready = wait_until(Duration::from_secs(60), || {
        server
            .kubectl(&[
                "get",
                "node",
                name,
                "-o",
                "jsonpath={.status.conditions[?(@.type=='Ready')].status}",
            ])
            .stdout
            == "True"
            || !agent.is_running()
    });
    assert!(
        ready && agent.is_running(),
        "node {name} did not become Ready\nagent:\n{}\nserver:\n{}",
        agent.log(),
        server.log()
    );
}

/// Starts an agent that must be refused, and returns what it logged.
fn refused(server: &Petset, name: &str, address: u8, args: &[&str]) -> String {
    let mut agent = Agent::spawn(binary(), server, name, loopback(address), args)
        .unwrap_or_else(|e| panic!("{e}"));
    let status = agent.wait_exit(Duration::from_secs(60));
    let log = agent.log();
    assert!(
        status.is_some_and(|s| !s.success()),
        "agent {name} was not refused:\n{log}"
    );
    log
}

/// The server's token with its CA pin or its secret replaced.
fn altered(token: &str, part: &str) -> String {
    let (pin, credential) = token.split_once("::").expect("a K10 token");
    let (id, _secret) = credential.split_once('.').expect("id.secret");
    match part {
        "pin" => format!("K10{}::{credential}", "0".repeat(64)),
        "secret" => format!("{pin}::{id}.{}", "a".repeat(16)),
        _ => unreachable!("a part of the token"),
    }
}

#[test]
fn an_agent_joins_with_the_servers_token_and_serves_its_node() {
    let server = server();
    let mut agent = Agent::spawn(binary(), &server, "joiner-a", loopback(31), &[])
        .unwrap_or_else(|e| panic!("{e}"));
    wait_ready(&server, &mut agent, "joiner-a");
    let wide = server
        .kubectl(&["get", "nodes", "-o", "wide"])
        .ok()
        .to_string();
    assert!(
        wide.contains("joiner-a") && wide.contains("127.0.0.31"),
        "{wide}"
    );
    let cidr = server
        .kubectl(&["get", "node", "joiner-a", "-o", "jsonpath={.spec.podCIDR}"])
        .ok()
        .to_string();
    assert!(
        cidr.starts_with("10.42.") && cidr.ends_with("/24"),
        "{cidr}"
    );
    let lease = server
        .kubectl(&[
            "get",
            "lease",
            "-n",
            "kube-node-lease",
            "joiner-a",
            "-o",
            "jsonpath={.spec.holderIdentity}",
        ])
        .ok()
        .to_string();
    assert_eq!(lease, "joiner-a");
    // The API server reaches the node over its node API: a simulated node refuses streams
    // with its own message, which only the node can give.
    server
        .kubectl(&[
            "run",
            "sleeper",
            "--image=busybox",
            "--overrides",
            r#"{"spec":{"nodeName":"joiner-a"}}"#,
        ])
        .ok();
    let logs_answer = wait_until(Duration::from_secs(30), || {
        let logs = server.kubectl(&["logs", "sleeper"]);
        !logs.success && logs.stderr.contains("simulated")
    });
    assert!(logs_answer, "{:?}", server.kubectl(&["logs", "sleeper"]));
    // A restart of the agent reuses its identity: it does not join again.
    agent.stop();
    let dir = agent.data_dir().to_path_buf();
    assert!(dir.join("pki/node-client.crt").exists());
}

#[test]
fn a_server_with_a_node_of_its_own_takes_a_range_as_its_agents_do() {
    let server = Petset::start_server(
        binary(),
        &[
            "--node-runtime",
            "simulated",
            "--node-name",
            "own",
            "--kubelet-port",
            "0",
        ],
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let mut agent = Agent::spawn(binary(), &server, "joiner-b", loopback(32), &[])
        .unwrap_or_else(|e| panic!("{e}"));
    wait_ready(&server, &mut agent, "joiner-b");
    let ready = wait_until(Duration::from_secs(30), || {
        server
            .kubectl(&[
                "get",
                "node",
                "own",
                "-o",
                "jsonpath={.status.conditions[?(@.type=='Ready')].status}",
            ])
            .stdout
            == "True"
    });
    assert!(
        ready,
        "the server's own node is not Ready\n{}",
        server.log()
    );
    let range = |node: &str| {
        server
            .kubectl(&["get", "node", node, "-o", "jsonpath={.spec.podCIDR}"])
            .ok()
            .to_string()
    };
    let (own, joined) = (range("own"), range("joiner-b"));
    assert!(own.starts_with("10.42.") && own.ends_with("/24"), "{own}");
    assert_ne!(own, joined, "two nodes share a pod range");
    // Its pods are reached through its node API, as a joined node's are.
    server
        .kubectl(&[
            "run",
            "at-home",
            "--image=busybox",
            "--overrides",
            r#"{"spec":{"nodeName":"own"}}"#,
        ])
        .ok();
    let answered = wait_until(Duration::from_secs(30), || {
        let logs = server.kubectl(&["logs", "at-home"]);
        !logs.success && logs.stderr.contains("simulated")
    });
    assert!(answered, "{:?}", server.kubectl(&["logs", "at-home"]));
}

#[test]
fn wrong_tokens_revoked_tokens_and_stolen_names_are_refused_clearly() {
    let server = server();
    let token = server.join_token().unwrap_or_else(|e| panic!("{e}"));

    let log = refused(
        &server,
        "wrong-pin",
        41,
        &["--token", &altered(&token, "pin")],
    );
    assert!(
        log.contains("token CA hash does not match the Cluster CA certificate hash"),
        "{log}"
    );

    let log = refused(
        &server,
        "wrong-secret",
        42,
        &["--token", &altered(&token, "secret")],
    );
    assert!(log.contains("refused the join token"), "{log}");

    let created = std::process::Command::new(binary())
        .args(["token", "create", "--data-dir"])
        .arg(server.data_dir())
        .output()
        .expect("petset token create");
    assert!(created.status.success(), "{created:?}");
    let revocable = String::from_utf8_lossy(&created.stdout).trim().to_string();
    let id = revocable
        .split_once("::")
        .and_then(|(_, credential)| credential.split_once('.'))
        .map(|(id, _)| id.to_string())
        .expect("a K10 token");
    let revoked = std::process::Command::new(binary())
        .args(["token", "revoke", &id, "--data-dir"])
        .arg(server.data_dir())
        .output()
        .expect("petset token revoke");
    assert!(revoked.status.success(), "{revoked:?}");
    let log = refused(&server, "revoked", 43, &["--token", &revocable]);
    assert!(log.contains("refused the join token"), "{log}");

    let mut first = Agent::spawn(binary(), &server, "taken", loopback(44), &[])
        .unwrap_or_else(|e| panic!("{e}"));
    wait_ready(&server, &mut first, "taken");
    let address_of_taken = || {
        server
            .kubectl(&[
                "get",
                "node",
                "taken",
                "-o",
                "jsonpath={.status.addresses[0].address}",
            ])
            .ok()
            .to_string()
    };
    let before = address_of_taken();
    let log = refused(&server, "taken", 45, &[]);
    assert!(log.contains("Node password rejected"), "{log}");
    let after = address_of_taken();
    assert_eq!(before, after, "the first node's address changed");
    assert!(
        first.is_running(),
        "the first node stopped:\n{}",
        first.log()
    );
    let server_log = server.log();
    assert!(server_log.contains("wrong-secret"), "{server_log}");
    assert!(server_log.contains("taken"), "{server_log}");

    // The node's own certificate may write its own Node and nothing of another's.
    let pki = first.data_dir().join("pki");
    let kubeconfig = first.data_dir().join("node-kubeconfig");
    std::fs::write(
        &kubeconfig,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: https://{api}\n    certificate-authority: {ca}\nusers:\n- name: node\n  user:\n    client-certificate: {cert}\n    client-key: {key}\ncontexts:\n- name: c\n  context: {{cluster: c, user: node}}\ncurrent-context: c\n",
            api = server.api_addr(),
            ca = server.data_dir().join("pki/ca.crt").display(),
            cert = pki.join("node-client.crt").display(),
            key = pki.join("node-client.key").display(),
        ),
    )
    .expect("write the node's kubeconfig");
    let as_node = |args: &[&str]| {
        let mut command = server.kubectl_command(args);
        command.env("KUBECONFIG", &kubeconfig);
        petset_testkit::Kubectl::run(command, None)
    };
    as_node(&[
        "label",
        "node",
        "taken",
        "petset.dev/e2e=own",
        "--overwrite",
    ])
    .ok();
    let mut other = Agent::spawn(binary(), &server, "other", loopback(46), &[])
        .unwrap_or_else(|e| panic!("{e}"));
    wait_ready(&server, &mut other, "other");
    let stolen = as_node(&["label", "node", "other", "petset.dev/e2e=theirs"]);
    assert!(
        stolen
            .stderr
            .contains(r#"node "taken" is not allowed to modify node "other""#),
        "{stolen:?}"
    );
    let lease = as_node(&["delete", "lease", "-n", "kube-node-lease", "other"]);
    assert!(lease.stderr.contains("forbidden"), "{lease:?}");
}

#[test]
fn an_agent_with_a_fence_stops_its_pods_while_it_cannot_renew_its_lease() {
    let server = server();
    let mut agent = Agent::spawn(
        binary(),
        &server,
        "fenced",
        loopback(61),
        &["--fence-deadline", "2"],
    )
    .unwrap_or_else(|e| panic!("{e}"));
    wait_ready(&server, &mut agent, "fenced");
    server
        .kubectl(&[
            "run",
            "guarded",
            "--image=busybox",
            "--overrides",
            r#"{"spec":{"nodeName":"fenced"}}"#,
        ])
        .ok();
    let running = wait_until(Duration::from_secs(30), || {
        server
            .kubectl(&["get", "pod", "guarded", "-o", "jsonpath={.status.phase}"])
            .stdout
            == "Running"
    });
    assert!(running, "the pod did not run\n{}", agent.log());

    // The API goes silent (the server is stopped, not killed): the node cannot renew.
    let pid = server.pid().expect("the server's pid").to_string();
    let _ = std::process::Command::new("kill")
        .args(["-STOP", &pid])
        .status();
    let raised = wait_until(Duration::from_secs(30), || {
        agent.log().contains("fence raised")
    });
    let _ = std::process::Command::new("kill")
        .args(["-CONT", &pid])
        .status();
    assert!(raised, "the fence did not rise\n{}", agent.log());

    // Renewals resume: the fence is lowered and the pod's container starts again.
    let lowered = wait_until(Duration::from_secs(60), || {
        agent.log().contains("fence lowered")
    });
    assert!(lowered, "the fence did not come down\n{}", agent.log());
    let restarted = wait_until(Duration::from_secs(60), || {
        server
            .kubectl(&[
                "get",
                "pod",
                "guarded",
                "-o",
                "jsonpath={.status.containerStatuses[0].restartCount} {.status.phase}",
            ])
            .stdout
            .split_once(' ')
            .is_some_and(|(count, phase)| {
                count.parse::<u32>().is_ok_and(|c| c >= 1) && phase == "Running"
            })
    });
    assert!(
        restarted,
        "{:?}\n{}",
        server.kubectl(&["get", "pod", "guarded", "-o", "yaml"]),
        agent.log()
    );
}

#[test]
fn a_node_whose_agent_dies_is_marked_unknown_tainted_and_its_pods_evicted() {
    let server = Petset::start_server(binary(), &["--node-monitor-grace-period", "3"])
        .unwrap_or_else(|e| panic!("{e}"));
    let mut lost = Agent::spawn(binary(), &server, "lost", loopback(71), &[])
        .unwrap_or_else(|e| panic!("{e}"));
    let mut kept = Agent::spawn(binary(), &server, "kept", loopback(72), &[])
        .unwrap_or_else(|e| panic!("{e}"));
    wait_ready(&server, &mut lost, "lost");
    wait_ready(&server, &mut kept, "kept");
    // A pod that tolerates the node's loss for a second only.
    server
        .kubectl(&[
            "run",
            "short-lived",
            "--image=busybox",
            "--overrides",
            r#"{"spec":{"nodeName":"lost","tolerations":[{"key":"node.kubernetes.io/unreachable","operator":"Exists","effect":"NoExecute","tolerationSeconds":1}]}}"#,
        ])
        .ok();
    let running = wait_until(Duration::from_secs(30), || {
        server
            .kubectl(&[
                "get",
                "pod",
                "short-lived",
                "-o",
                "jsonpath={.status.phase}",
            ])
            .stdout
            == "Running"
    });
    assert!(running, "the pod did not run\n{}", lost.log());

    lost.kill();
    let unknown = wait_until(Duration::from_secs(60), || {
        server
            .kubectl(&[
                "get",
                "node",
                "lost",
                "-o",
                "jsonpath={.status.conditions[?(@.type=='Ready')].status}/{.status.conditions[?(@.type=='Ready')].reason}/{.spec.taints[*].key}",
            ])
            .stdout
            .starts_with("Unknown/NodeStatusUnknown/node.kubernetes.io/unreachable")
    });
    assert!(
        unknown,
        "{:?}",
        server.kubectl(&["get", "node", "lost", "-o", "yaml"])
    );
    // Evicted after its toleration: marked for deletion (only its node could finish it).
    let evicted = wait_until(Duration::from_secs(60), || {
        !server
            .kubectl(&[
                "get",
                "pod",
                "short-lived",
                "-o",
                "jsonpath={.metadata.deletionTimestamp}",
            ])
            .stdout
            .is_empty()
    });
    assert!(
        evicted,
        "{:?}",
        server.kubectl(&["get", "pod", "short-lived", "-o", "yaml"])
    );
    let events = server
        .kubectl(&[
            "get",
            "events",
            "--field-selector",
            "involvedObject.name=short-lived",
        ])
        .ok()
        .to_string();
    assert!(events.contains("TaintManagerEviction"), "{events}");
    // The node that lives is untouched.
    assert_eq!(
        server
            .kubectl(&[
                "get",
                "node",
                "kept",
                "-o",
                "jsonpath={.status.conditions[?(@.type=='Ready')].status}",
            ])
            .stdout,
        "True"
    );
}

/// A field of an object, by kubectl's jsonpath.
fn field(server: &Petset, kind: &str, name: &str, path: &str) -> String {
    server
        .kubectl(&["get", kind, name, "-o", &format!("jsonpath={path}")])
        .stdout
}

/// The processes in the cgroups of the pod with this uid, under every hierarchy.
fn pod_processes(uid: &str) -> Vec<u32> {
    let pod = petset_agent::pods::sandbox_id_of(uid);
    let base = std::path::Path::new("/sys/fs/cgroup");
    let mut pods = vec![base.join("petset").join(&pod)];
    for hierarchy in std::fs::read_dir(base).into_iter().flatten().flatten() {
        pods.push(hierarchy.path().join("petset").join(&pod));
    }
    let mut pids: Vec<u32> = pods
        .iter()
        .flat_map(|dir| std::fs::read_dir(dir).into_iter().flatten().flatten())
        .filter_map(|container| std::fs::read_to_string(container.path().join("cgroup.procs")).ok())
        .flat_map(|procs| {
            procs
                .lines()
                .filter_map(|l| l.parse().ok())
                .collect::<Vec<u32>>()
        })
        .collect();
    pids.sort_unstable();
    pids.dedup();
    pids
}

/// Whether a process runs (exists and is no zombie).
fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| {
            let (_, rest) = stat.rsplit_once(')')?;
            rest.split_whitespace().next().map(|state| state != "Z")
        })
        .unwrap_or(false)
}

/// The fence watchdog's pid, as it writes it in its lock.
fn watchdog_pid(data_dir: &std::path::Path) -> Option<u32> {
    std::fs::read_to_string(data_dir.join("fence").join("watchdog.lock"))
        .ok()?
        .trim()
        .parse()
        .ok()
        .filter(|pid| alive(*pid))
}

#[test]
fn a_fenced_runc_agent_killed_with_sigkill_has_its_containers_killed_by_the_watchdog() {
    let test = "a_fenced_runc_agent_killed_with_sigkill_has_its_containers_killed_by_the_watchdog";
    if !petset_testkit::can_run_containers(test) {
        return;
    }
    let images = tempfile::tempdir().expect("temp");
    petset_testkit::busybox_image(&images.path().join("saved"), "busybox:test");
    let store = images.path().join("store");
    crate::runc::import_image(&store, &images.path().join("saved"));
    // Ranges and a bridge of the test's own: the node's pod network is in the host's namespace.
    let server = Petset::start_server(
        binary(),
        &[
            "--cluster-cidr",
            "10.217.0.0/16",
            "--service-cidr",
            "10.218.0.0/16",
        ],
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let node_dir = tempfile::tempdir().expect("temp");
    let data_dir = node_dir.path().join("node");
    let volumes = node_dir
        .path()
        .join("volumes")
        .to_string_lossy()
        .into_owned();
    let store = store.to_string_lossy().into_owned();
    let args = [
        "--node-runtime",
        "runc",
        "--fence-deadline",
        "3",
        "--bridge",
        "psfence0",
        "--image-store",
        &store,
        "--local-path-dir",
        &volumes,
    ];
    let spawn = || {
        let temp = tempfile::tempdir().expect("temp");
        Agent::spawn_in(
            binary(),
            &server,
            "watched",
            loopback(81),
            &data_dir,
            &args,
            temp,
        )
        .unwrap_or_else(|e| panic!("{e}"))
    };
    let mut agent = spawn();
    wait_ready(&server, &mut agent, "watched");
    let advertised = wait_until(Duration::from_secs(30), || {
        field(
            &server,
            "node",
            "watched",
            r"{.metadata.annotations.petset\.dev/fence-deadline-seconds}",
        ) == "3"
    });
    assert!(
        advertised,
        "the node does not advertise its fence\n{}",
        agent.log()
    );
    server
        .kubectl(&[
            "run",
            "watched-pod",
            "--image=busybox:test",
            "--overrides",
            r#"{"spec":{"nodeName":"watched"}}"#,
            "--command",
            "--",
            "sleep",
            "600",
        ])
        .ok();
    let running = wait_until(Duration::from_secs(60), || {
        field(&server, "pod", "watched-pod", "{.status.phase}") == "Running"
    });
    assert!(running, "the pod did not run\n{}", agent.log());
    let uid = server
        .kubectl(&[
            "get",
            "pod",
            "watched-pod",
            "-o",
            "jsonpath={.metadata.uid}",
        ])
        .ok()
        .to_string();
    let processes = pod_processes(&uid);
    assert!(!processes.is_empty(), "no process in the pod's cgroups");

    // The watchdog: in a process group of its own, holding nothing of the agent's.
    let watchdog = watchdog_pid(&data_dir).expect("a fence watchdog runs");
    let stat = std::fs::read_to_string(format!("/proc/{watchdog}/stat")).expect("its stat");
    let group = stat
        .rsplit_once(')')
        .and_then(|(_, rest)| rest.split_whitespace().nth(2))
        .and_then(|g| g.parse::<u32>().ok());
    assert_eq!(group, Some(watchdog), "not in a process group of its own");
    let mut descriptors: Vec<(String, std::path::PathBuf)> =
        std::fs::read_dir(format!("/proc/{watchdog}/fd"))
            .expect("its descriptors")
            .flatten()
            .map(|fd| {
                let target = std::fs::read_link(fd.path()).unwrap_or_default();
                (fd.file_name().to_string_lossy().into_owned(), target)
            })
            .collect();
    descriptors.sort();
    let fence = data_dir.join("fence");
    assert_eq!(
        descriptors,
        [
            ("0".to_string(), "/dev/null".into()),
            ("1".to_string(), "/dev/null".into()),
            ("2".to_string(), fence.join("watchdog.log")),
            ("3".to_string(), fence.join("watchdog.lock")),
        ]
    );

    // kill -9: the agent cannot fence; its containers live on, until the watchdog's deadline
    // (3 s from the last renewal sent, a margin for a loaded machine).
    agent.kill();
    let killed = wait_until(Duration::from_secs(3 + 15), || {
        processes.iter().all(|pid| !alive(*pid))
    });
    let watchdog_log = std::fs::read_to_string(fence.join("watchdog.log")).unwrap_or_default();
    assert!(killed, "the pod outlived the fence\n{watchdog_log}");
    // The marker follows the kills (the processes may be seen gone a moment before it).
    let mut marker = String::new();
    let marked = wait_until(Duration::from_secs(10), || {
        marker = std::fs::read_to_string(fence.join("fenced")).unwrap_or_default();
        marker.starts_with("fenced\n")
    });
    let watchdog_log = std::fs::read_to_string(fence.join("watchdog.log")).unwrap_or_default();
    assert!(marked, "{marker:?}\n{watchdog_log}");
    let pod = petset_agent::pods::sandbox_id_of(&uid);
    assert!(marker.contains(&pod), "{marker}");
    assert!(
        wait_until(Duration::from_secs(10), || !alive(watchdog)),
        "the watchdog did not exit after fencing\n{watchdog_log}"
    );

    // Started again, the agent removes what is left and runs its pod again; stopped cleanly,
    // it tells its watchdog, which exits killing nothing more.
    let mut agent = spawn();
    wait_ready(&server, &mut agent, "watched");
    let rerun = wait_until(Duration::from_secs(60), || {
        field(
            &server,
            "pod",
            "watched-pod",
            "{.status.containerStatuses[0].state.running.startedAt}",
        )
        .len()
            > 1
            && !pod_processes(&uid).is_empty()
            && watchdog_pid(&data_dir).is_some()
    });
    assert!(rerun, "the pod did not run again\n{}", agent.log());
    let watchdog = watchdog_pid(&data_dir).expect("a fence watchdog runs");
    assert!(agent.stop().is_some_and(|s| s.success()), "{}", agent.log());
    assert_eq!(
        std::fs::read_to_string(fence.join("heartbeat")).unwrap_or_default(),
        "stopped\n"
    );
    assert!(
        wait_until(Duration::from_secs(10), || !alive(watchdog)),
        "the watchdog outlived a clean stop"
    );
    assert!(
        pod_processes(&uid).is_empty(),
        "a clean stop left processes"
    );
}
