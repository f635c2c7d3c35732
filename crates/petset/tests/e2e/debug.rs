//! `kubectl debug` on the simulated node: a copy of a StatefulSet's pod with a debug container
//! (`--copy-to`) and a node's debugger pod (`debug node/…`). kubectl creates both pods as
//! protobuf, the whole spec of the pod it copies included.

use std::time::Duration;

use petset_testkit::{Petset, wait_until};

use crate::start;

const WEB: &str = r#"{"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "web"},
    "spec": {"serviceName": "web", "replicas": 1,
        "selector": {"matchLabels": {"app": "web"}},
        "template": {"metadata": {"labels": {"app": "web"}},
            "spec": {"containers": [{"name": "web", "image": "nginx",
                "ports": [{"containerPort": 80, "name": "http"}],
                "env": [{"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}],
                "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}},
                "readinessProbe": {"tcpSocket": {"port": "http"}, "periodSeconds": 5}}]}}}}"#;

fn jsonpath(petset: &Petset, object: &str, path: &str) -> String {
    petset
        .kubectl(&["get", object, "-o", &format!("jsonpath={path}")])
        .stdout
        .clone()
}

#[test]
fn kubectl_debug_copies_a_pod_and_debugs_a_node() {
    let petset = start(&["--store", "memory", "--node-runtime", "simulated"]);
    petset
        .kubectl_with_input(&["create", "-f", "-"], Some(WEB))
        .ok();
    assert!(
        wait_until(Duration::from_secs(60), || {
            !jsonpath(&petset, "pod/web-0", "{.spec.nodeName}").is_empty()
        }),
        "web-0 was never scheduled"
    );

    let copied = petset.kubectl(&[
        "debug",
        "web-0",
        "--copy-to=web-0-debug",
        "--image=busybox",
        "--",
        "true",
    ]);
    copied.ok();
    let containers = jsonpath(
        &petset,
        "pod/web-0-debug",
        "{range .spec.containers[*]}{.name}={.image};{end}",
    );
    let mut names = containers.split_terminator(';');
    assert_eq!(names.next(), Some("web=nginx"), "{containers}");
    let debugger = names.next().unwrap_or_default();
    assert!(
        debugger.starts_with("debugger-") && debugger.ends_with("=busybox"),
        "{containers}"
    );
    // What the copy carried over kubectl's protobuf body.
    assert_eq!(
        jsonpath(
            &petset,
            "pod/web-0-debug",
            "{.spec.containers[0].env[0].valueFrom.fieldRef.fieldPath} \
             {.spec.containers[0].resources.requests.memory} \
             {.spec.containers[0].readinessProbe.tcpSocket.port} {.spec.hostname}"
        ),
        "metadata.name 16Mi http web-0"
    );

    let node = petset
        .kubectl(&["get", "nodes", "-o", "jsonpath={.items[0].metadata.name}"])
        .ok()
        .to_string();
    let debugged = petset.kubectl(&[
        "debug",
        &format!("node/{node}"),
        "--image=busybox",
        "--",
        "true",
    ]);
    let said = debugged.ok().to_string();
    assert!(
        said.contains(&format!("Creating debugging pod node-debugger-{node}-")),
        "{said}"
    );
    let pods = petset
        .kubectl(&["get", "pods", "-o", "name"])
        .ok()
        .to_string();
    let debugger_pod = pods
        .lines()
        .find(|p| p.starts_with(&format!("pod/node-debugger-{node}-")))
        .unwrap_or_else(|| panic!("no node debugger pod in {pods}"))
        .to_string();
    assert_eq!(
        jsonpath(
            &petset,
            &debugger_pod,
            "{.spec.nodeName} {.spec.containers[0].image}"
        ),
        format!("{node} busybox")
    );
}
