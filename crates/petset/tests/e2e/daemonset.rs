//! DaemonSets with the real kubectl on a `petset server` with three simulated agents: one pod
//! per node, a node skipped by the template's node selector, a tainted node covered only by a
//! set that tolerates its taint, and a rolling update that `kubectl rollout status` follows,
//! with `rollout history` and `rollout undo`.

use std::net::IpAddr;
use std::time::Duration;

use petset_testkit::{Agent, Petset, wait_until};

use crate::binary;

const NODES: [(&str, u8); 3] = [("ds-a", 61), ("ds-b", 62), ("ds-c", 63)];

fn set(name: &str, extra_spec: &str) -> String {
    format!(
        "apiVersion: apps/v1
kind: DaemonSet
metadata:
  name: {name}
spec:
  selector:
    matchLabels:
      app: {name}
  template:
    metadata:
      labels:
        app: {name}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: main
        image: registry.k8s.io/nginx-slim:0.8
{extra_spec}"
    )
}

/// `node:image` of each pod of the set, sorted, once every pod is Running.
fn placement(server: &Petset, app: &str) -> String {
    let out = server
        .kubectl(&[
            "get",
            "pods",
            "-l",
            &format!("app={app}"),
            "-o",
            "jsonpath={range .items[*]}{.spec.nodeName}:{.spec.containers[0].image}:{.status.phase}:{.metadata.deletionTimestamp} {end}",
        ])
        .stdout;
    let mut entries: Vec<&str> = out.split_whitespace().collect();
    entries.sort();
    entries.join(" ")
}

fn wait_placement(server: &Petset, app: &str, expected: &str) {
    let mut last = String::new();
    let done = wait_until(Duration::from_secs(90), || {
        last = placement(server, app);
        last == expected
    });
    assert!(
        done,
        "{app}: expected {expected:?}, last saw {last:?}\n{}",
        server.log()
    );
}

#[test]
fn daemonsets_cover_their_nodes_and_roll_out() {
    let server = Petset::start_server(binary(), &[]).unwrap_or_else(|e| panic!("{e}"));
    let mut agents: Vec<Agent> = NODES
        .iter()
        .map(|(name, last)| {
            Agent::spawn(
                binary(),
                &server,
                name,
                IpAddr::from([127, 0, 0, *last]),
                &[],
            )
            .unwrap_or_else(|e| panic!("{e}"))
        })
        .collect();
    let ready = wait_until(Duration::from_secs(90), || {
        server
            .kubectl(&[
                "get",
                "nodes",
                "-o",
                "jsonpath={range .items[*]}{.status.conditions[?(@.type=='Ready')].status} {end}",
            ])
            .stdout
            .trim()
            == "True True True"
    });
    assert!(ready, "{}", server.log());
    server
        .kubectl(&["label", "node", "ds-a", "ds-b", "role=worker"])
        .ok();
    server
        .kubectl(&["taint", "node", "ds-b", "dedicated=db:NoSchedule"])
        .ok();

    // One pod on every node it may run on.
    let plain = set("plain", "");
    server
        .kubectl_with_input(&["apply", "-f", "-"], Some(&plain))
        .ok();
    let image = "registry.k8s.io/nginx-slim:0.8";
    wait_placement(
        &server,
        "plain",
        &format!("ds-a:{image}:Running: ds-c:{image}:Running:"),
    );
    let tolerant = set(
        "tolerant",
        "      tolerations:\n      - {key: dedicated, operator: Equal, value: db, effect: NoSchedule}\n",
    );
    server
        .kubectl_with_input(&["apply", "-f", "-"], Some(&tolerant))
        .ok();
    wait_placement(
        &server,
        "tolerant",
        &format!("ds-a:{image}:Running: ds-b:{image}:Running: ds-c:{image}:Running:"),
    );
    let workers = set(
        "workers",
        "      nodeSelector: {role: worker}\n      tolerations:\n      - {key: dedicated, operator: Exists}\n",
    );
    server
        .kubectl_with_input(&["apply", "-f", "-"], Some(&workers))
        .ok();
    wait_placement(
        &server,
        "workers",
        &format!("ds-a:{image}:Running: ds-b:{image}:Running:"),
    );
    let table = server.kubectl(&["get", "ds", "workers"]).ok().to_string();
    assert!(
        table.starts_with(
            "NAME      DESIRED   CURRENT   READY   UP-TO-DATE   AVAILABLE   NODE SELECTOR   AGE"
        ),
        "{table}"
    );
    assert!(table.contains("role=worker"), "{table}");

    // A rolling update, followed to the end.
    let status = server.kubectl(&["rollout", "status", "ds/tolerant", "--timeout=60s"]);
    assert!(
        status
            .ok()
            .contains("daemon set \"tolerant\" successfully rolled out"),
        "{}",
        status.stdout
    );
    server
        .kubectl(&[
            "set",
            "image",
            "ds/tolerant",
            "main=registry.k8s.io/nginx-slim:0.9",
        ])
        .ok();
    let status = server.kubectl(&["rollout", "status", "ds/tolerant", "--timeout=90s"]);
    assert!(
        status
            .ok()
            .contains("daemon set \"tolerant\" successfully rolled out"),
        "{}\n{}",
        status.stdout,
        server.log()
    );
    let new = "registry.k8s.io/nginx-slim:0.9";
    wait_placement(
        &server,
        "tolerant",
        &format!("ds-a:{new}:Running: ds-b:{new}:Running: ds-c:{new}:Running:"),
    );
    let history = server
        .kubectl(&["rollout", "history", "ds/tolerant"])
        .ok()
        .to_string();
    assert!(
        history.contains("REVISION  CHANGE-CAUSE")
            && history.contains("\n1 ")
            && history.contains("\n2 "),
        "{history}"
    );
    server.kubectl(&["rollout", "undo", "ds/tolerant"]).ok();
    let status = server.kubectl(&["rollout", "status", "ds/tolerant", "--timeout=90s"]);
    assert!(status.success, "{}\n{}", status.stdout, status.stderr);
    wait_placement(
        &server,
        "tolerant",
        &format!("ds-a:{image}:Running: ds-b:{image}:Running: ds-c:{image}:Running:"),
    );

    for agent in &mut agents {
        agent.stop();
    }
}
