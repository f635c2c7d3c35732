//! Data safety: storage-in-use protection, immortal namespaces, dryRun and nesting-depth checks.
//! Each test types what a user types and checks that nothing is lost.

use std::time::Duration;

use petset_testkit::{Petset, can_run_containers, wait_until};

use crate::runc::start_with_busybox;
use crate::start;
use crate::statefulset::wait_for;

/// One raw API request with the admin token, through curl: the status code and the body.
/// kubectl cannot send a malformed `dryRun` or a raw PATCH, which is what these tests need.
fn api(petset: &Petset, method: &str, path: &str, body: Option<&str>) -> (u16, String) {
    let content_type = if method == "PATCH" {
        "application/json-patch+json"
    } else {
        "application/json"
    };
    api_with(petset, method, path, content_type, body)
}

/// How long one request may take; a watch is cut off by it.
const REQUEST_SECONDS: &str = "20";

fn api_with(
    petset: &Petset,
    method: &str,
    path: &str,
    content_type: &str,
    body: Option<&str>,
) -> (u16, String) {
    let kubeconfig = std::fs::read_to_string(petset.kubeconfig()).expect("kubeconfig");
    let token = kubeconfig
        .lines()
        .find_map(|line| line.trim().strip_prefix("token: "))
        .expect("a token in the kubeconfig")
        .trim_matches('"')
        .to_string();
    let mut command = std::process::Command::new("curl");
    command
        .args([
            "-sk",
            "--max-time",
            if path.contains("watch=1") {
                "3"
            } else {
                REQUEST_SECONDS
            },
            "-w",
            "\n%{http_code}",
            "-X",
            method,
        ])
        .args(["-H", &format!("Authorization: Bearer {token}")])
        .args(["-H", &format!("Content-Type: {content_type}")]);
    if let Some(body) = body {
        command.args(["--data-binary", body]);
    }
    let output = command
        .arg(format!("https://{}{path}", petset.api_addr()))
        .output()
        .expect("curl");
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    let (body, status) = text.rsplit_once('\n').unwrap_or(("", text.as_str()));
    (status.trim().parse().unwrap_or(0), body.to_string())
}

fn exists(petset: &Petset, args: &[&str]) -> bool {
    petset.kubectl(args).success
}

#[test]
fn system_namespaces_survive_delete_all_and_deletecollection() {
    let petset = start(&["--store", "memory"]);
    let deleted = petset.kubectl(&["delete", "ns", "--all", "--wait=false"]);
    for name in ["default", "kube-system", "kube-public"] {
        assert!(
            deleted.stderr.contains(&format!(
                "Error from server (Forbidden): namespaces \"{name}\" is forbidden: this namespace may not be deleted"
            )),
            "{name}: {deleted:?}"
        );
    }
    assert!(
        deleted
            .stdout
            .contains("namespace \"kube-node-lease\" deleted"),
        "{deleted:?}"
    );
    // kube-node-lease may go, and comes back as upstream's system-namespaces controller does.
    wait_for(
        &petset,
        "kube-node-lease re-created",
        &[
            "get",
            "ns",
            "kube-node-lease",
            "-o",
            "jsonpath={.status.phase}",
        ],
        "Active",
    );
    for name in ["default", "kube-system", "kube-public"] {
        let phase = petset
            .kubectl(&["get", "ns", name, "-o", "jsonpath={.status.phase}"])
            .ok()
            .to_string();
        assert_eq!(phase, "Active", "{name}");
    }
    petset
        .kubectl(&["create", "configmap", "still-works", "-n", "default"])
        .ok();
    assert!(exists(
        &petset,
        &["get", "service", "kubernetes", "-n", "default"]
    ));

    let (code, body) = api(&petset, "DELETE", "/api/v1/namespaces", None);
    assert_eq!(code, 405, "{body}");
    assert!(body.contains("MethodNotAllowed"), "{body}");
    for name in ["default", "kube-system", "kube-public", "kube-node-lease"] {
        assert!(
            exists(&petset, &["get", "ns", name]),
            "{name} after DELETE /api/v1/namespaces"
        );
    }
}

#[test]
fn a_dry_run_other_than_all_is_refused_and_writes_nothing() {
    let petset = start(&["--store", "memory", "--node-runtime", "simulated"]);
    petset
        .kubectl(&["create", "configmap", "kept", "--from-literal=a=1"])
        .ok();
    petset
        .kubectl_with_input(&["create", "-f", "-"], Some(SMALL_SET))
        .ok();
    let configmaps = "/api/v1/namespaces/default/configmaps";
    let created = r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"new"}}"#;
    let replaced =
        r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"kept"},"data":{"a":"2"}}"#;
    let patch = r#"[{"op":"replace","path":"/data/a","value":"3"}]"#;
    for value in ["all", "true", "bogus"] {
        let requests = [
            (
                "POST",
                format!("{configmaps}?dryRun={value}"),
                Some(created),
                "CreateOptions",
            ),
            (
                "PUT",
                format!("{configmaps}/kept?dryRun={value}"),
                Some(replaced),
                "UpdateOptions",
            ),
            (
                "PATCH",
                format!("{configmaps}/kept?dryRun={value}"),
                Some(patch),
                "PatchOptions",
            ),
            (
                "DELETE",
                format!("{configmaps}/kept?dryRun={value}"),
                None,
                "DeleteOptions",
            ),
        ];
        for (method, path, body, kind) in requests {
            let (code, answer) = api(&petset, method, &path, body);
            assert_eq!(code, 422, "{method} {path}: {answer}");
            assert!(
                answer.contains(&format!(
                    "{kind}.meta.k8s.io \\\"\\\" is invalid: dryRun: Unsupported value: []string{{\\\"{value}\\\"}}: supported values: \\\"All\\\""
                )),
                "{method} {path}: {answer}"
            );
        }
        let scale =
            format!("/apis/apps/v1/namespaces/default/statefulsets/small/scale?dryRun={value}");
        let (code, answer) = api(
            &petset,
            "PUT",
            &scale,
            Some(
                r#"{"apiVersion":"autoscaling/v1","kind":"Scale","metadata":{"name":"small","namespace":"default"},"spec":{"replicas":5}}"#,
            ),
        );
        assert_eq!(code, 422, "scale: {answer}");
    }
    // A dryRun in a DeleteOptions body is checked too.
    let (code, answer) = api(
        &petset,
        "DELETE",
        &format!("{configmaps}/kept"),
        Some(r#"{"kind":"DeleteOptions","apiVersion":"v1","dryRun":["bogus"]}"#),
    );
    assert_eq!(code, 422, "{answer}");
    // Nothing was written: the object is as it was, nothing new exists, the set kept its size.
    assert_eq!(
        petset
            .kubectl(&["get", "configmap", "kept", "-o", "jsonpath={.data.a}"])
            .ok(),
        "1"
    );
    assert!(!exists(&petset, &["get", "configmap", "new"]));
    assert_eq!(
        petset
            .kubectl(&["get", "sts", "small", "-o", "jsonpath={.spec.replicas}"])
            .ok(),
        "1"
    );
    // The one valid value still works and still writes nothing.
    let (code, answer) = api(
        &petset,
        "POST",
        &format!("{configmaps}?dryRun=All"),
        Some(created),
    );
    assert_eq!(code, 201, "{answer}");
    assert!(!exists(&petset, &["get", "configmap", "new"]));
}

const SMALL_SET: &str = r#"
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: small}
spec:
  serviceName: small
  replicas: 1
  selector: {matchLabels: {app: small}}
  template:
    metadata: {labels: {app: small}}
    spec:
      containers: [{name: main, image: busybox:1.28}]
"#;

/// A JSON patch whose copies nest a free-form field past any reader's limit is refused, and the
/// type still lists and the namespace still deletes (before, one such patch broke both for good).
#[test]
fn no_patch_can_store_what_get_cannot_read() {
    let petset = start(&["--store", "memory", "--node-runtime", "simulated"]);
    petset.kubectl(&["create", "namespace", "deep"]).ok();
    petset
        .kubectl_with_input(&["create", "-n", "deep", "-f", "-"], Some(SMALL_SET))
        .ok();
    wait_for(
        &petset,
        "the set's first revision",
        &[
            "get",
            "controllerrevisions",
            "-n",
            "deep",
            "-o",
            "jsonpath={.items[*].revision}",
        ],
        "1",
    );
    let revision = petset
        .kubectl(&[
            "get",
            "controllerrevisions",
            "-n",
            "deep",
            "-o",
            "jsonpath={.items[0].metadata.name}",
        ])
        .ok()
        .to_string();
    // Each copy nests `data` one level deeper: 200 of them reach far past 128 levels.
    let copies: Vec<String> = (0..200)
        .map(|_| r#"{"op":"copy","from":"/data","path":"/data/spec"}"#.to_string())
        .collect();
    let patch = format!("[{}]", copies.join(","));
    let path = format!("/apis/apps/v1/namespaces/deep/controllerrevisions/{revision}");
    let (code, answer) = api(&petset, "PATCH", &path, Some(&patch));
    assert_eq!(code, 422, "{answer}");
    assert!(answer.contains("levels deep"), "{answer}");
    // A body that nests too deep is refused as well, whatever route it takes.
    let mut deep = String::from("1");
    for _ in 0..110 {
        deep = format!("{{\"n\":{deep}}}");
    }
    let merge = format!(r#"{{"data":{deep}}}"#);
    let (code, answer) = api_with(
        &petset,
        "PATCH",
        &path,
        "application/merge-patch+json",
        Some(&merge),
    );
    assert_eq!(code, 422, "{answer}");
    assert!(
        answer.contains("may not nest more than 100 levels deep"),
        "{answer}"
    );

    let (code, answer) = api(&petset, "GET", &path, None);
    assert_eq!(code, 200, "{answer}");
    let listed = petset.kubectl(&["get", "controllerrevisions", "-A"]);
    assert!(listed.success, "{listed:?}");
    petset
        .kubectl(&["delete", "namespace", "deep", "--timeout=60s"])
        .ok();
    assert!(!exists(&petset, &["get", "namespace", "deep"]));
}

/// A claim the tutorial's clean-up deletes while its pod still runs keeps its data until the
/// pod is gone (upstream's `kubernetes.io/pvc-protection`); then claim, volume and directory go.
#[test]
fn a_claim_deleted_under_a_running_pod_keeps_its_data_until_the_pod_is_gone() {
    if !can_run_containers(
        "a_claim_deleted_under_a_running_pod_keeps_its_data_until_the_pod_is_gone",
    ) {
        return;
    }
    let (_images, petset) = start_with_busybox(&["--store", "memory"]);
    petset
        .kubectl_with_input(&["apply", "-f", "-"], Some(PROTECTED_SET))
        .ok();
    wait_for(
        &petset,
        "keeper-0 Running",
        &["get", "pod", "keeper-0", "-o", "jsonpath={.status.phase}"],
        "Running",
    );
    let volume = petset
        .kubectl(&[
            "get",
            "pvc",
            "data-keeper-0",
            "-o",
            "jsonpath={.spec.volumeName}",
        ])
        .ok()
        .to_string();
    let file = petset
        .data_dir()
        .join("volumes")
        .join(&volume)
        .join("precious");
    assert!(
        wait_until(Duration::from_secs(30), || std::fs::read_to_string(&file)
            .is_ok_and(|t| t == "kept\n")),
        "keeper-0 wrote its file\n{}",
        petset.log()
    );
    let finalizers = petset
        .kubectl(&[
            "get",
            "pvc",
            "data-keeper-0",
            "-o",
            "jsonpath={.metadata.finalizers}",
        ])
        .ok()
        .to_string();
    assert!(
        finalizers.contains("kubernetes.io/pvc-protection"),
        "{finalizers}"
    );
    let pv_finalizers = petset
        .kubectl(&[
            "get",
            "pv",
            &volume,
            "-o",
            "jsonpath={.metadata.finalizers}",
        ])
        .ok()
        .to_string();
    assert!(
        pv_finalizers.contains("kubernetes.io/pv-protection"),
        "{pv_finalizers}"
    );

    let deleted = petset.kubectl(&["delete", "pvc", "data-keeper-0", "--wait=false"]);
    assert!(
        deleted
            .ok()
            .contains("persistentvolumeclaim \"data-keeper-0\" deleted"),
        "{deleted:?}"
    );
    let mut table = String::new();
    assert!(
        wait_until(Duration::from_secs(30), || {
            table = petset.kubectl(&["get", "pvc", "data-keeper-0"]).stdout;
            table.contains("Terminating")
        }),
        "the claim shows Terminating: {table}"
    );
    let described = petset
        .kubectl(&["describe", "pvc", "data-keeper-0"])
        .ok()
        .to_string();
    assert!(
        described.contains("kubernetes.io/pvc-protection"),
        "{described}"
    );
    assert!(described.contains("ProvisioningSucceeded"), "{described}");
    // Still there a while later: nothing lets it go while the pod runs.
    std::thread::sleep(Duration::from_secs(3));
    assert!(exists(&petset, &["get", "pvc", "data-keeper-0"]));
    assert!(exists(&petset, &["get", "pv", &volume]));
    let read = petset
        .kubectl(&["exec", "keeper-0", "--", "cat", "/data/precious"])
        .ok()
        .to_string();
    assert_eq!(read, "kept\n");
    assert_eq!(
        std::fs::read_to_string(&file).expect("still on disk"),
        "kept\n"
    );

    // The set goes, its pod goes: then the claim, the volume and the data go too.
    petset.kubectl(&["delete", "statefulset", "keeper"]).ok();
    assert!(
        wait_until(Duration::from_secs(60), || !exists(
            &petset,
            &["get", "pvc", "data-keeper-0"]
        ) && !exists(
            &petset,
            &["get", "pv", &volume]
        )),
        "claim and volume gone after the pod\n{}",
        petset.log()
    );
    assert!(
        wait_until(Duration::from_secs(10), || !file.exists()),
        "the volume's directory is removed"
    );
}

const PROTECTED_SET: &str = r#"
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: keeper}
spec:
  serviceName: keeper
  replicas: 1
  selector: {matchLabels: {app: keeper}}
  template:
    metadata: {labels: {app: keeper}}
    spec:
      terminationGracePeriodSeconds: 2
      containers:
      - name: main
        image: busybox:test
        command: ["sh", "-c", "echo kept > /data/precious; trap 'exit 0' TERM; while true; do sleep 0.2; done"]
        volumeMounts: [{name: data, mountPath: /data}]
  volumeClaimTemplates:
  - metadata: {name: data}
    spec:
      accessModes: [ReadWriteOnce]
      resources: {requests: {storage: 1Gi}}
"#;

/// A claim that cannot be provisioned says why in `describe`, as upstream's volume controller.
#[test]
fn a_pending_claim_says_why_it_waits() {
    let petset = start(&["--store", "memory"]);
    petset
        .kubectl_with_input(
            &["create", "-f", "-"],
            Some(
                r#"
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: waits}
spec:
  storageClassName: nfs-storageclass
  accessModes: [ReadWriteOnce]
  resources: {requests: {storage: 1Gi}}
"#,
            ),
        )
        .ok();
    let mut described = String::new();
    assert!(
        wait_until(Duration::from_secs(30), || {
            described = petset.kubectl(&["describe", "pvc", "waits"]).stdout;
            described.contains("ProvisioningFailed")
        }),
        "{described}"
    );
    assert!(
        described.contains("storageclass.storage.k8s.io \"nfs-storageclass\" not found"),
        "{described}"
    );
    assert!(described.contains("Pending"), "{described}");
}

/// Deleting a set's claim and then its pod (what a user does to start a member afresh): the
/// claim waits for the pod, the re-created pod does not hold the old claim, and it starts on a
/// new, empty claim instead of waiting forever.
#[test]
fn a_pod_recreated_onto_a_deleted_claim_gets_a_fresh_claim() {
    let petset = start(&["--store", "memory", "--node-runtime", "simulated"]);
    petset
        .kubectl_with_input(
            &["apply", "-f", "-"],
            Some(&PROTECTED_SET.replace("busybox:test", "busybox:1.28")),
        )
        .ok();
    wait_for(
        &petset,
        "keeper-0 Running",
        &["get", "pod", "keeper-0", "-o", "jsonpath={.status.phase}"],
        "Running",
    );
    let uid_of = |kind: &str, name: &str| {
        petset
            .kubectl(&["get", kind, name, "-o", "jsonpath={.metadata.uid}"])
            .stdout
    };
    let old_claim = uid_of("pvc", "data-keeper-0");
    petset
        .kubectl(&["delete", "pvc", "data-keeper-0", "--wait=false"])
        .ok();
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(
        uid_of("pvc", "data-keeper-0"),
        old_claim,
        "the claim waits for its pod"
    );
    petset
        .kubectl(&["delete", "pod", "keeper-0", "--wait=false"])
        .ok();
    let mut last = String::new();
    assert!(
        wait_until(Duration::from_secs(60), || {
            let claim = uid_of("pvc", "data-keeper-0");
            let phase = petset
                .kubectl(&["get", "pod", "keeper-0", "-o", "jsonpath={.status.phase}"])
                .stdout;
            last = format!("claim {claim}, pod {phase}");
            !claim.is_empty() && claim != old_claim && phase == "Running"
        }),
        "a new claim and a running pod: {last}\n{}",
        petset.log()
    );
}

/// Inputs a fuzzing run found to panic the server: each now gets upstream's 4xx and the server
/// goes on serving.
#[test]
fn inputs_that_used_to_panic_get_a_status() {
    let petset = start(&["--store", "memory"]);
    let configmap = |labels: &str| {
        format!(
            r#"{{"apiVersion":"v1","kind":"ConfigMap","metadata":{{"name":"c","labels":{labels}}}}}"#
        )
    };
    let long_label = configmap(&format!(r#"{{"a":"{}\u00e9"}}"#, "a".repeat(62)));
    let (code, answer) = api(
        &petset,
        "POST",
        "/api/v1/namespaces/default/configmaps",
        Some(&long_label),
    );
    assert_eq!(code, 422, "{answer}");
    let (code, answer) = api(
        &petset,
        "GET",
        "/api/v1/configmaps?limit=1&continue=1-a%C3%A90",
        None,
    );
    assert_eq!(code, 400, "{answer}");
    let (code, answer) = api(&petset, "GET", "/api/v1/pods?labelSelector=)(", None);
    assert_eq!(code, 400, "{answer}");
    for body in ["[]", "\"x\"", "1"] {
        let (code, answer) = api_with(
            &petset,
            "PATCH",
            "/api/v1/namespaces/default/configmaps/missing?fieldManager=fuzz",
            "application/apply-patch+yaml",
            Some(body),
        );
        assert_eq!(code, 400, "apply {body}: {answer}");
    }
    let (code, answer) = api(
        &petset,
        "PATCH",
        "/api/v1/namespaces/default/configmaps/c",
        Some(r#"[{"op":"move","from":"/data","path":""},{"op":"test","path":"/nope","value":1}]"#),
    );
    assert_eq!(code, 404, "{answer}");
    petset
        .kubectl(&["create", "configmap", "c", "--from-literal=a=1"])
        .ok();
    let (code, answer) = api(
        &petset,
        "PATCH",
        "/api/v1/namespaces/default/configmaps/c",
        Some(r#"[{"op":"move","from":"/data","path":""},{"op":"test","path":"/nope","value":1}]"#),
    );
    assert_eq!(code, 422, "{answer}");
    // A watch whose timeout is past what the clock holds is a watch without one; curl's own
    // limit ends it.
    let (code, _) = api(
        &petset,
        "GET",
        "/api/v1/configmaps?watch=1&timeoutSeconds=9223372036854775807",
        None,
    );
    assert_eq!(code, 200);
    assert_eq!(
        petset
            .kubectl(&["get", "configmap", "c", "-o", "jsonpath={.data.a}"])
            .ok(),
        "1",
        "the server still serves\n{}",
        petset.log()
    );
}
