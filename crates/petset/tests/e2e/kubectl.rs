//! The real kubectl (through the machine's version dispatcher) against a real `petset up`: the
//! commands of the StatefulSet tutorials, and the errors users see.

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::Duration;

use petset_testkit::{Petset, wait_until};

use crate::start;

const WEB: &str = include_str!("web.yaml");

fn petset() -> Petset {
    start(&["--store", "memory"])
}

fn create_web(petset: &Petset) {
    let out = petset.kubectl_with_input(&["create", "-f", "-"], Some(WEB));
    assert_eq!(
        out.ok(),
        "service/nginx created\nstatefulset.apps/web created\n"
    );
}

fn jsonpath(petset: &Petset, object: &str, path: &str) -> String {
    petset
        .kubectl(&["get", object, "-o", &format!("jsonpath={path}")])
        .ok()
        .to_string()
}

#[test]
fn version_discovery_and_api_resources() {
    let petset = petset();
    let version = petset.kubectl(&["version"]);
    assert!(
        version.ok().contains("Server Version: v1.33"),
        "{}",
        version.stdout
    );
    let resources = petset.kubectl(&["api-resources"]);
    let text = resources.ok();
    for line in [
        "statefulsets                        sts          apps/v1",
        "persistentvolumeclaims              pvc          v1",
    ] {
        let name = line.split_whitespace().next().unwrap_or_default();
        assert!(
            text.lines().any(|l| l.starts_with(name)),
            "{name} missing:\n{text}"
        );
    }
    assert!(petset.kubectl(&["get", "--raw", "/readyz"]).ok() == "ok");
    let namespaces = petset.kubectl(&["get", "ns", "-o", "name"]);
    for ns in ["default", "kube-system", "kube-public"] {
        assert!(namespaces.ok().contains(&format!("namespace/{ns}\n")));
    }
}

#[test]
fn create_get_and_output_formats() {
    let petset = petset();
    create_web(&petset);
    let again = petset.kubectl_with_input(&["create", "-f", "-"], Some(WEB));
    assert!(
        again.err().contains(
            "Error from server (AlreadyExists): error when creating \"STDIN\": services \"nginx\" already exists"
        ),
        "{}",
        again.stderr
    );
    let table = petset.kubectl(&["get", "sts"]);
    let mut lines = table.ok().lines();
    assert_eq!(
        lines
            .next()
            .map(|l| l.split_whitespace().collect::<Vec<_>>()),
        Some(vec!["NAME", "READY", "AGE"])
    );
    assert_eq!(
        lines
            .next()
            .map(|l| l.split_whitespace().take(2).collect::<Vec<_>>()),
        Some(vec!["web", "0/2"])
    );
    let wide = petset.kubectl(&["get", "sts", "-o", "wide"]);
    assert!(
        wide.ok().contains("registry.k8s.io/nginx-slim:0.8"),
        "{}",
        wide.stdout
    );
    let svc = petset.kubectl(&["get", "svc", "nginx"]);
    assert!(svc.ok().contains("ClusterIP   None"), "{}", svc.stdout);
    assert!(svc.ok().contains("80/TCP"), "{}", svc.stdout);

    let json = petset.kubectl(&["get", "sts", "web", "-o", "json"]);
    let object: serde_json::Value = serde_json::from_str(json.ok()).expect("JSON");
    assert_eq!(object["spec"]["podManagementPolicy"], "OrderedReady");
    assert_eq!(
        object["spec"]["updateStrategy"]["rollingUpdate"]["partition"],
        0
    );
    assert_eq!(object["metadata"]["generation"], 1);
    let yaml = petset.kubectl(&["get", "sts", "web", "-o", "yaml"]);
    assert!(yaml.ok().contains("revisionHistoryLimit: 10"));
    assert_eq!(jsonpath(&petset, "sts/web", "{.spec.serviceName}"), "nginx");
    let columns = petset.kubectl(&[
        "get",
        "svc",
        "-l",
        "app=nginx",
        "-o",
        "custom-columns=NAME:.metadata.name,IP:.spec.clusterIP",
    ]);
    assert_eq!(columns.ok(), "NAME    IP\nnginx   None\n");
    let none = petset.kubectl(&["get", "svc", "-l", "app=other"]);
    assert!(
        none.stderr
            .contains("No resources found in default namespace.")
    );
}

#[test]
fn patches_scale_labels_and_the_errors_of_updates() {
    let petset = petset();
    create_web(&petset);
    let scaled = petset.kubectl(&["scale", "sts", "web", "--replicas=5"]);
    assert_eq!(scaled.ok(), "statefulset.apps/web scaled\n");
    assert_eq!(jsonpath(&petset, "sts/web", "{.spec.replicas}"), "5");
    assert_eq!(jsonpath(&petset, "sts/web", "{.metadata.generation}"), "2");

    let strategic = petset.kubectl(&["patch", "sts", "web", "-p", r#"{"spec":{"replicas":3}}"#]);
    assert_eq!(strategic.ok(), "statefulset.apps/web patched\n");
    let json_patch = petset.kubectl(&[
        "patch",
        "sts",
        "web",
        "--type=json",
        "-p",
        r#"[{"op":"replace","path":"/spec/template/spec/containers/0/image","value":"registry.k8s.io/nginx-slim:0.7"}]"#,
    ]);
    json_patch.ok();
    let merge = petset.kubectl(&[
        "patch",
        "sts",
        "web",
        "--type=merge",
        "-p",
        r#"{"spec":{"updateStrategy":{"rollingUpdate":{"partition":2}}}}"#,
    ]);
    merge.ok();
    assert_eq!(
        jsonpath(
            &petset,
            "sts/web",
            "{.spec.replicas} {.spec.template.spec.containers[0].image} {.spec.updateStrategy.rollingUpdate.partition}"
        ),
        "3 registry.k8s.io/nginx-slim:0.7 2"
    );
    // The container kept its port: the strategic patch merged containers by name.
    assert_eq!(
        jsonpath(
            &petset,
            "sts/web",
            "{.spec.template.spec.containers[0].ports[0].containerPort}"
        ),
        "80"
    );
    let unchanged = petset.kubectl(&["patch", "sts", "web", "-p", r#"{"spec":{"replicas":3}}"#]);
    assert_eq!(unchanged.ok(), "statefulset.apps/web patched (no change)\n");

    petset
        .kubectl(&["label", "sts", "web", "tier=frontend"])
        .ok();
    petset
        .kubectl(&["annotate", "sts", "web", "note=hello"])
        .ok();
    assert_eq!(
        jsonpath(
            &petset,
            "sts/web",
            "{.metadata.labels.tier} {.metadata.annotations.note}"
        ),
        "frontend hello"
    );
    let failed_test = petset.kubectl(&[
        "patch",
        "sts",
        "web",
        "--type=json",
        "-p",
        r#"[{"op":"test","path":"/spec/replicas","value":9}]"#,
    ]);
    assert!(
        failed_test
            .err()
            .contains("the server rejected our request due to an error in our request"),
        "{}",
        failed_test.stderr
    );

    let immutable = petset.kubectl(&[
        "patch",
        "sts",
        "web",
        "-p",
        r#"{"spec":{"serviceName":"other"}}"#,
    ]);
    assert_eq!(
        immutable.err().trim(),
        "The StatefulSet \"web\" is invalid: spec: Forbidden: updates to statefulset spec for fields other than 'replicas', 'ordinals', 'template', 'updateStrategy', 'revisionHistoryLimit', 'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' are forbidden"
    );

    // A replace with a stale resourceVersion is a Conflict.
    let stale = petset.kubectl(&["get", "sts", "web", "-o", "json"]);
    petset
        .kubectl(&["scale", "sts", "web", "--replicas=4"])
        .ok();
    let replaced = petset.kubectl_with_input(&["replace", "-f", "-"], Some(stale.ok()));
    assert!(
        replaced.err().contains("Error from server (Conflict): error when replacing \"STDIN\": Operation cannot be fulfilled on statefulsets.apps \"web\": the object has been modified; please apply your changes to the latest version and try again"),
        "{}",
        replaced.stderr
    );
    let missing = petset.kubectl(&["scale", "sts", "nosuch", "--replicas=1"]);
    assert!(
        missing
            .err()
            .starts_with("error: no objects passed to scale")
    );
}

#[test]
fn apply_client_side_and_server_side() {
    let petset = petset();
    let first = petset.kubectl_with_input(&["apply", "-f", "-"], Some(WEB));
    assert_eq!(
        first.ok(),
        "service/nginx created\nstatefulset.apps/web created\n"
    );
    let annotation = jsonpath(
        &petset,
        "sts/web",
        "{.metadata.annotations.kubectl\\.kubernetes\\.io/last-applied-configuration}",
    );
    assert!(
        annotation.contains("\"serviceName\":\"nginx\""),
        "{annotation}"
    );
    // As upstream, kubectl re-sends volumeClaimTemplates (a list without merge key whose live
    // form carries defaults) and prints "configured"; nothing changes on the server.
    let second = petset.kubectl_with_input(&["apply", "-f", "-"], Some(WEB));
    assert_eq!(
        second.ok(),
        "service/nginx unchanged\nstatefulset.apps/web configured\n"
    );
    assert_eq!(jsonpath(&petset, "sts/web", "{.metadata.generation}"), "1");
    let changed = WEB.replace("replicas: 2", "replicas: 3");
    let third = petset.kubectl_with_input(&["apply", "-f", "-"], Some(&changed));
    assert_eq!(
        third.ok(),
        "service/nginx unchanged\nstatefulset.apps/web configured\n"
    );
    assert_eq!(jsonpath(&petset, "sts/web", "{.spec.replicas}"), "3");
    let server_side = WEB.replace("replicas: 2", "replicas: 4");
    let applied = petset.kubectl_with_input(
        &["apply", "--server-side", "--force-conflicts", "-f", "-"],
        Some(&server_side),
    );
    assert!(
        applied
            .ok()
            .contains("statefulset.apps/web serverside-applied")
    );
    assert_eq!(jsonpath(&petset, "sts/web", "{.spec.replicas}"), "4");
    let fresh = petset.kubectl_with_input(
        &["apply", "--server-side", "-f", "-"],
        Some("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: ssa\ndata:\n  a: b\n"),
    );
    assert_eq!(fresh.ok(), "configmap/ssa serverside-applied\n");
}

/// Field ownership as upstream: a client-side apply upgrades to a server-side one without
/// conflicts, even one that changes a field it last applied; another manager changing
/// replicas conflicts until it forces, and then owns the field.
#[test]
fn apply_server_side_conflicts_and_force_conflicts() {
    let petset = petset();
    petset
        .kubectl_with_input(&["apply", "-f", "-"], Some(WEB))
        .ok();
    let moved = WEB.replace("replicas: 2", "replicas: 3");
    let upgraded = petset.kubectl_with_input(&["apply", "--server-side", "-f", "-"], Some(&moved));
    assert!(
        upgraded
            .ok()
            .contains("statefulset.apps/web serverside-applied"),
        "{}",
        upgraded.stdout
    );
    assert_eq!(jsonpath(&petset, "sts/web", "{.spec.replicas}"), "3");
    let scaled = WEB.replace("replicas: 2", "replicas: 5");
    let refused = petset.kubectl_with_input(
        &["apply", "--server-side", "--field-manager=b", "-f", "-"],
        Some(&scaled),
    );
    let message = refused.err();
    assert!(
        message.contains("Apply failed with 1 conflict: conflict with \"kubectl\": .spec.replicas"),
        "{message}"
    );
    assert_eq!(jsonpath(&petset, "sts/web", "{.spec.replicas}"), "3");
    let forced = petset.kubectl_with_input(
        &[
            "apply",
            "--server-side",
            "--field-manager=b",
            "--force-conflicts",
            "-f",
            "-",
        ],
        Some(&scaled),
    );
    assert!(
        forced
            .ok()
            .contains("statefulset.apps/web serverside-applied")
    );
    assert_eq!(jsonpath(&petset, "sts/web", "{.spec.replicas}"), "5");
    let shown = petset.kubectl(&["get", "sts", "web", "-o", "yaml", "--show-managed-fields"]);
    let yaml = shown.ok();
    let entry_of_b = yaml
        .split("\n  - ")
        .find(|entry| entry.lines().any(|l| l.trim() == "manager: b"))
        .unwrap_or_else(|| panic!("no entry for manager b:\n{yaml}"));
    assert!(entry_of_b.contains("f:replicas: {}"), "{entry_of_b}");
    assert!(entry_of_b.contains("operation: Apply"), "{entry_of_b}");
    // Without the flag kubectl hides managedFields, which the server sends.
    let hidden = petset.kubectl(&["get", "sts", "web", "-o", "yaml"]);
    assert!(!hidden.ok().contains("managedFields"));
}

#[test]
fn imperative_creates_send_protobuf_and_work() {
    let petset = petset();
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(dir.path().join("sleep-interval"), "25").expect("write");
    let from_file = format!("--from-file={}", dir.path().display());
    let created = petset.kubectl(&["create", "configmap", "fortune-config", &from_file]);
    assert_eq!(created.ok(), "configmap/fortune-config created\n");
    assert_eq!(
        jsonpath(&petset, "cm/fortune-config", "{.data.sleep-interval}"),
        "25"
    );
    petset.kubectl(&["create", "namespace", "other"]).ok();
    petset
        .kubectl(&["create", "secret", "generic", "s", "--from-literal=k=v"])
        .ok();
    assert_eq!(jsonpath(&petset, "secret/s", "{.data.k}"), "dg==");
    petset
        .kubectl(&["create", "service", "clusterip", "nginx", "--tcp=80"])
        .ok();
    let again = petset.kubectl(&["create", "service", "clusterip", "nginx", "--tcp=80"]);
    assert_eq!(
        again.err().trim(),
        "error: failed to create ClusterIP service: services \"nginx\" already exists"
    );
    let cm = petset.kubectl(&["get", "cm", "fortune-config"]);
    assert!(
        cm.ok().contains("fortune-config   1      "),
        "{}",
        cm.stdout
    );
    // Every kind's create goes as protobuf, and its answer comes back as protobuf (kubectl's
    // typed clients ask for it first).
    for (args, printed) in [
        (
            &[
                "create",
                "deployment",
                "web",
                "--image=nginx",
                "--replicas=2",
            ][..],
            "deployment.apps/web created\n",
        ),
        (
            &[
                "create",
                "pdb",
                "web",
                "--selector=app=web",
                "--min-available=1",
            ][..],
            "poddisruptionbudget.policy/web created\n",
        ),
        (
            &[
                "create",
                "ingress",
                "web",
                "--rule=example.com/jenkins*=nginx:80",
            ][..],
            "ingress.networking.k8s.io/web created\n",
        ),
    ] {
        assert_eq!(petset.kubectl(args).ok(), printed, "{args:?}");
    }
    assert_eq!(jsonpath(&petset, "deploy/web", "{.spec.replicas}"), "2");
    assert_eq!(
        jsonpath(
            &petset,
            "ingress/web",
            "{.spec.rules[0].http.paths[0].pathType}"
        ),
        "Prefix"
    );
}

#[test]
fn errors_are_precise_and_store_nothing() {
    let petset = petset();
    let invalid = petset.kubectl_with_input(
        &["create", "-f", "-"],
        Some("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: Bad_Name\n"),
    );
    assert!(
        invalid.err().contains("The ConfigMap \"Bad_Name\" is invalid: metadata.name: Invalid value: \"Bad_Name\": a lowercase RFC 1123 subdomain"),
        "{}",
        invalid.stderr
    );
    let unnamed = petset.kubectl_with_input(
        &["create", "-f", "-", "--validate=false"],
        Some("apiVersion: v1\nkind: ConfigMap\nmetadata: {}\n"),
    );
    assert!(
        unnamed
            .err()
            .contains("metadata.name: Required value: name or generateName is required"),
        "{}",
        unnamed.stderr
    );
    let no_namespace = petset.kubectl_with_input(
        &["create", "-n", "nosuch", "-f", "-"],
        Some("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: x\n"),
    );
    assert!(
        no_namespace
            .err()
            .contains("namespaces \"nosuch\" not found"),
        "{}",
        no_namespace.stderr
    );
    let not_found = petset.kubectl(&["get", "pod", "nosuch"]);
    assert_eq!(
        not_found.err().trim(),
        "Error from server (NotFound): pods \"nosuch\" not found"
    );
    let delete_missing = petset.kubectl(&["delete", "sts", "nosuch"]);
    assert_eq!(
        delete_missing.err().trim(),
        "Error from server (NotFound): statefulsets.apps \"nosuch\" not found"
    );
    let malformed = petset.kubectl_with_input(&["create", "-f", "-"], Some("kind: [unclosed\n"));
    assert!(
        malformed.err().starts_with("error:"),
        "{}",
        malformed.stderr
    );
    let huge = format!(
        "{{\"apiVersion\":\"v1\",\"kind\":\"ConfigMap\",\"metadata\":{{\"name\":\"huge\"}},\"data\":{{\"x\":\"{}\"}}}}",
        "a".repeat(3 * 1024 * 1024 + 10)
    );
    let too_large = petset.kubectl_with_input(&["create", "-f", "-"], Some(&huge));
    assert!(
        too_large.err().contains("Request entity too large"),
        "{}",
        too_large.stderr
    );
    let unknown_field = petset.kubectl_with_input(
        &["create", "-f", "-"],
        Some("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: x\ncolour: red\n"),
    );
    assert!(
        unknown_field.err().contains("ConfigMap in version \"v1\" cannot be handled as a ConfigMap: strict decoding error: unknown field \"colour\""),
        "{}",
        unknown_field.stderr
    );
    // Nothing but the cluster CA's ConfigMap, which every namespace has as upstream's do.
    let nothing = petset.kubectl(&["get", "cm", "-o", "name"]);
    let stored: Vec<&str> = nothing
        .ok()
        .lines()
        .filter(|line| *line != "configmap/kube-root-ca.crt")
        .collect();
    assert!(stored.is_empty(), "{stored:?}");
    let bad_selector = petset.kubectl(&["get", "pods", "--field-selector", "spec.bogus=1"]);
    assert!(
        bad_selector.err().contains("field label not supported"),
        "{}",
        bad_selector.stderr
    );
}

#[test]
fn delete_cascades_background_orphan_and_foreground() {
    let petset = start(&["--store", "memory", "--node-runtime", "simulated"]);
    for (policy, pods_remain) in [
        ("orphan", true),
        ("foreground", false),
        ("background", false),
    ] {
        create_web(&petset);
        let created = wait_until(Duration::from_secs(60), || {
            jsonpath(&petset, "sts/web", "{.status.readyReplicas}") == "2"
        });
        assert!(
            created,
            "{policy}: the set's pods did not become ready\n{}",
            petset.log()
        );
        let deleted = petset.kubectl(&["delete", "sts", "web", &format!("--cascade={policy}")]);
        assert_eq!(
            deleted.ok(),
            "statefulset.apps \"web\" deleted\n",
            "{policy}"
        );
        let gone = petset.kubectl(&["get", "sts", "web"]);
        assert!(gone.err().contains("NotFound"), "{policy}: {}", gone.stderr);
        let settled = wait_until(Duration::from_secs(30), || {
            let pods = petset.kubectl(&["get", "pods", "-o", "name"]).stdout;
            if pods_remain {
                pods == "pod/web-0\npod/web-1\n"
                    && jsonpath(&petset, "pod/web-0", "{.metadata.ownerReferences}").is_empty()
            } else {
                pods.is_empty()
            }
        });
        assert!(settled, "{policy}: pods did not settle\n{}", petset.log());
        petset.kubectl(&["delete", "svc", "nginx"]).ok();
        petset.kubectl(&["delete", "pods", "--all"]).ok();
    }
}

#[test]
fn namespace_deletion_empties_then_removes_the_namespace() {
    let petset = petset();
    petset.kubectl(&["create", "namespace", "doomed"]).ok();
    petset
        .kubectl_with_input(&["create", "-n", "doomed", "-f", "-"], Some(WEB))
        .ok();
    let deleted = petset.kubectl(&["delete", "namespace", "doomed"]);
    assert_eq!(deleted.ok(), "namespace \"doomed\" deleted\n");
    let gone = petset.kubectl(&["get", "namespace", "doomed"]);
    assert!(gone.err().contains("NotFound"), "{}", gone.stderr);
    let contents = petset.kubectl(&["get", "sts,svc", "-n", "doomed", "-o", "name"]);
    assert_eq!(contents.ok(), "");
}

#[test]
fn watch_prints_changes_as_they_happen() {
    let petset = petset();
    create_web(&petset);
    let mut watcher = petset
        .kubectl_command(&[
            "get",
            "sts",
            "web",
            "-w",
            "-o",
            "custom-columns=N:.metadata.name,R:.spec.replicas",
            "--no-headers",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("kubectl get -w");
    let stdout = watcher.stdout.take().expect("piped");
    let (lines_tx, lines_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if lines_tx.send(line).is_err() {
                return;
            }
        }
    });
    let first = lines_rx
        .recv_timeout(Duration::from_secs(30))
        .expect("initial line");
    assert_eq!(first.split_whitespace().collect::<Vec<_>>(), ["web", "2"]);
    petset
        .kubectl(&["scale", "sts", "web", "--replicas=7"])
        .ok();
    let mut seen = Vec::new();
    let found = wait_until(Duration::from_secs(30), || {
        while let Ok(line) = lines_rx.try_recv() {
            seen.push(line);
        }
        seen.iter()
            .any(|l| l.split_whitespace().collect::<Vec<_>>() == ["web", "7"])
    });
    let _ = watcher.kill();
    let _ = watcher.wait();
    assert!(found, "the scale was not seen: {seen:?}");
}

#[test]
fn describe_and_explain() {
    let petset = petset();
    create_web(&petset);
    let described = petset.kubectl(&["describe", "sts", "web"]);
    let text = described.ok();
    assert!(text.contains("Replicas:           2 desired |"), "{text}");
    assert!(text.contains("Partition:        0"), "{text}");
    let explained = petset.kubectl(&["explain", "statefulset.spec.replicas"]);
    assert!(explained.ok().contains("replicas"), "{}", explained.stderr);
}

#[test]
fn a_pod_on_a_node_terminates_gracefully_until_forced() {
    let petset = petset();
    let pod = r#"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"bound","labels":{"app":"x"}},
        "spec":{"nodeName":"node-1","containers":[{"name":"c","image":"busybox:1.28"}]}}"#;
    petset
        .kubectl_with_input(&["create", "-f", "-"], Some(pod))
        .ok();
    let deleted = petset.kubectl(&["delete", "pod", "bound", "--wait=false"]);
    assert_eq!(deleted.ok(), "pod \"bound\" deleted\n");
    let row = petset.kubectl(&["get", "pod", "bound", "--no-headers"]);
    assert!(row.ok().contains("Terminating"), "{}", row.stdout);
    assert_eq!(
        jsonpath(
            &petset,
            "pod/bound",
            "{.metadata.deletionGracePeriodSeconds}"
        ),
        "30"
    );
    let forced = petset.kubectl(&["delete", "pod", "bound", "--grace-period=0", "--force"]);
    assert!(forced.ok().contains("force deleted"), "{}", forced.stdout);
    let gone = petset.kubectl(&["get", "pod", "bound"]);
    assert!(gone.err().contains("NotFound"), "{}", gone.stderr);
}

#[test]
fn get_all_and_events() {
    let petset = petset();
    create_web(&petset);
    let all = petset.kubectl(&["get", "all"]);
    let text = all.ok();
    assert!(text.contains("service/nginx"), "{text}");
    assert!(text.contains("statefulset.apps/web"), "{text}");
    // A message no controller writes, so the row found below can only be this event (the
    // controllers' own events for web and web-0 are listed too, in an order that depends on
    // timing).
    let event = r#"{"apiVersion":"v1","kind":"Event","metadata":{"name":"web.1"},
        "involvedObject":{"kind":"StatefulSet","name":"web","namespace":"default"},
        "reason":"HandMade","message":"an event created with kubectl create",
        "type":"Normal","source":{"component":"statefulset-controller"},"count":1}"#;
    petset
        .kubectl_with_input(&["create", "-f", "-"], Some(event))
        .ok();
    let events = petset.kubectl(&["get", "events"]);
    let header = events.ok().lines().next().unwrap_or_default().to_string();
    assert!(
        header.starts_with("LAST SEEN") && header.contains("OBJECT") && header.contains("MESSAGE"),
        "{header}"
    );
    let row = events
        .ok()
        .lines()
        .find(|line| line.contains("an event created with kubectl create"))
        .unwrap_or_default()
        .to_string();
    assert!(
        row.contains("Normal") && row.contains("HandMade") && row.contains("statefulset/web"),
        "{}",
        events.stdout
    );
    let selected = petset.kubectl(&[
        "get",
        "events",
        "--field-selector",
        "involvedObject.kind=StatefulSet,involvedObject.name=web",
        "-o",
        "name",
    ]);
    assert!(
        selected.ok().lines().any(|l| l == "event/web.1"),
        "{}",
        selected.stdout
    );
    let none = petset.kubectl(&[
        "get",
        "events",
        "--field-selector",
        "involvedObject.kind=Pod",
        "-o",
        "name",
    ]);
    assert!(!none.ok().contains("event/web.1"), "{}", none.stdout);
    let bad_label = petset.kubectl_with_input(
        &["create", "-f", "-"],
        Some("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: labelled\n  labels:\n    app: -bad-\n"),
    );
    assert!(
        bad_label.err().contains(
            "The ConfigMap \"labelled\" is invalid: metadata.labels: Invalid value: \"-bad-\""
        ),
        "{}",
        bad_label.stderr
    );
}

#[test]
fn created_objects_come_back_with_their_first_status() {
    let petset = petset();
    let created = petset.kubectl_with_input(&["create", "-f", "-", "-o", "json"], Some(WEB));
    // kubectl prints one JSON document per object created.
    let items: Vec<serde_json::Value> = serde_json::Deserializer::from_str(created.ok())
        .into_iter()
        .collect::<Result<_, _>>()
        .expect("JSON objects");
    let status = |kind: &str| {
        items
            .iter()
            .find(|item| item["kind"] == kind)
            .map(|item| item["status"].clone())
            .unwrap_or_default()
    };
    assert_eq!(status("Service"), serde_json::json!({"loadBalancer": {}}));
    assert_eq!(
        status("StatefulSet"),
        serde_json::json!({"replicas": 0, "availableReplicas": 0})
    );
}

#[test]
fn debug_with_an_ephemeral_container_is_refused_clearly() {
    let petset = start(&["--store", "memory", "--node-runtime", "simulated"]);
    create_web(&petset);
    let running = wait_until(Duration::from_secs(60), || {
        jsonpath(&petset, "pod/web-0", "{.status.phase}") == "Running"
    });
    assert!(running, "web-0 runs\n{}", petset.log());
    // kubectl dereferences a 404's details here; petset refuses with a reason instead.
    let debug = petset.kubectl(&["debug", "web-0", "--image=busybox", "--", "true"]);
    assert!(!debug.success, "{}", debug.stdout);
    assert!(
        debug
            .stderr
            .contains("ephemeral containers are not supported by petset's nodes yet"),
        "{}",
        debug.stderr
    );
    assert!(!debug.stderr.contains("panic"), "{}", debug.stderr);
    // A URL naming nothing served is a 404 whose details are there and empty, as upstream's.
    let missing = petset.kubectl(&[
        "get",
        "--raw",
        "/api/v1/namespaces/default/pods/web-0/nosuch",
    ]);
    assert!(
        missing
            .stderr
            .contains("the server could not find the requested resource"),
        "{}",
        missing.stderr
    );
}
