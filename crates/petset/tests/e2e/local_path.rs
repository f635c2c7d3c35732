//! Local-path volumes are made and removed by the node that uses them: a claim's volume is a
//! directory on the runc node that its pod writes into and that goes with the claim (reclaim
//! Delete, behind the cleanup finalizer the node removes); a volume pinned to the node by
//! `spec.nodeAffinity` gets its directory (mode 0777) from the node alone. Data goes only that
//! way: a Retain volume deleted by hand keeps its directory, and a directory no volume names is
//! left alone. Needs root and runc.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use petset_testkit::{can_run_containers, wait_until};

use crate::runc::start_with_busybox;
use crate::statefulset::wait_for;

const CLAIM_AND_POD: &str = r#"
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: data}
spec:
  accessModes: [ReadWriteOnce]
  resources: {requests: {storage: 1Gi}}
---
apiVersion: v1
kind: Pod
metadata: {name: writer}
spec:
  terminationGracePeriodSeconds: 5
  containers:
  - name: main
    image: busybox:test
    command: ["sh", "-c", "echo hello > /data/greeting; trap 'exit 0' TERM; while true; do sleep 0.2; done"]
    volumeMounts: [{name: data, mountPath: /data}]
  volumes:
  - name: data
    persistentVolumeClaim: {claimName: data}
"#;

fn wait_for_path(petset: &petset_testkit::Petset, what: &str, ready: impl Fn() -> bool) {
    let done = wait_until(Duration::from_secs(60), ready);
    assert!(done, "{what}\n{}", petset.log());
}

#[test]
fn a_claims_volume_is_a_directory_on_the_node_that_goes_with_the_claim() {
    if !can_run_containers("a_claims_volume_is_a_directory_on_the_node_that_goes_with_the_claim") {
        return;
    }
    let (_images, petset) = start_with_busybox(&["--store", "memory"]);
    petset
        .kubectl_with_input(&["apply", "-f", "-"], Some(CLAIM_AND_POD))
        .ok();
    wait_for(
        &petset,
        "the writer runs",
        &["get", "pod", "writer", "-o", "jsonpath={.status.phase}"],
        "Running",
    );
    let volume = petset
        .kubectl(&["get", "pvc", "data", "-o", "jsonpath={.spec.volumeName}"])
        .ok()
        .to_string();
    assert!(volume.starts_with("pvc-"), "{volume:?}");
    // The node it is pinned to removes the directory, then this finalizer.
    wait_for(
        &petset,
        "the volume carries the cleanup finalizer",
        &[
            "get",
            "pv",
            &volume,
            "-o",
            "jsonpath={.metadata.finalizers}",
        ],
        r#"["petset.dev/local-path-cleanup","kubernetes.io/pv-protection"]"#,
    );
    let directory = petset.data_dir().join("volumes").join(&volume);
    let greeting = directory.join("greeting");
    wait_for_path(&petset, "the pod wrote into its volume", || {
        std::fs::read_to_string(&greeting).is_ok_and(|text| text == "hello\n")
    });
    petset.kubectl(&["delete", "pod", "writer"]).ok();
    petset.kubectl(&["delete", "pvc", "data"]).ok();
    wait_for_path(
        &petset,
        "the volume's directory went with its claim",
        || !directory.exists(),
    );
    let gone = wait_until(Duration::from_secs(60), || {
        petset
            .kubectl(&["get", "pv", &volume, "--ignore-not-found", "-o", "name"])
            .ok()
            .is_empty()
    });
    assert!(
        gone,
        "the volume went once its node cleaned up\n{}",
        petset.log()
    );
}

/// A volume of petset's provisioner made by hand, pinned to `node`, at `directory`.
fn volume_by_hand(name: &str, node: &str, directory: &Path, policy: &str) -> String {
    let finalizers = if policy == "Delete" {
        "[petset.dev/local-path-cleanup]"
    } else {
        "[]"
    };
    format!(
        r#"
apiVersion: v1
kind: PersistentVolume
metadata:
  name: {name}
  annotations: {{pv.kubernetes.io/provisioned-by: petset.dev/local-path}}
  finalizers: {finalizers}
spec:
  capacity: {{storage: 1Gi}}
  accessModes: [ReadWriteOnce]
  persistentVolumeReclaimPolicy: {policy}
  storageClassName: manual
  hostPath: {{path: {path}}}
  nodeAffinity:
    required:
      nodeSelectorTerms:
      - matchExpressions:
        - {{key: kubernetes.io/hostname, operator: In, values: [{node}]}}
"#,
        path = directory.display(),
    )
}

#[test]
fn the_node_makes_its_volumes_directories_and_removes_only_those_of_deleted_delete_volumes() {
    if !can_run_containers(
        "the_node_makes_its_volumes_directories_and_removes_only_those_of_deleted_delete_volumes",
    ) {
        return;
    }
    let (_images, petset) = start_with_busybox(&["--store", "memory"]);
    let node = petset
        .kubectl(&["get", "nodes", "-o", "jsonpath={.items[0].metadata.name}"])
        .ok()
        .to_string();
    assert!(!node.is_empty(), "the node registered");
    let root = petset.data_dir().join("volumes");
    let unnamed = root.join("pvc-deleted-while-down");
    let unrelated = root.join("notes");
    for directory in [&unnamed, &unrelated] {
        std::fs::create_dir_all(directory).expect("a directory under the volumes root");
    }
    let retained = root.join("pvc-retained-by-hand");
    let deleted = root.join("pvc-deleted-by-hand");
    // Volumes the server only binds: the node alone makes their directories.
    for (name, directory, policy) in [
        ("pvc-retained-by-hand", &retained, "Retain"),
        ("pvc-deleted-by-hand", &deleted, "Delete"),
    ] {
        petset
            .kubectl_with_input(
                &["apply", "-f", "-"],
                Some(&volume_by_hand(name, &node, directory, policy)),
            )
            .ok();
    }
    wait_for_path(&petset, "the node made the volumes' directories", || {
        retained.is_dir() && deleted.is_dir()
    });
    let mode = std::fs::metadata(&retained)
        .expect("metadata")
        .permissions()
        .mode();
    assert_eq!(
        mode & 0o777,
        0o777,
        "open to every user, as rancher's provisioner makes it"
    );
    std::fs::write(retained.join("data"), "kept\n").expect("data");

    petset
        .kubectl(&["delete", "pv", "pvc-retained-by-hand"])
        .ok();
    // Deleted after the Retain one: its cleanup is a later pass over every volume.
    petset
        .kubectl(&["delete", "pv", "pvc-deleted-by-hand"])
        .ok();
    wait_for_path(
        &petset,
        "the Delete volume's directory went with it",
        || !deleted.exists(),
    );
    assert_eq!(
        std::fs::read_to_string(retained.join("data"))
            .ok()
            .as_deref(),
        Some("kept\n"),
        "a Retain volume deleted by hand keeps its data\n{}",
        petset.log()
    );
    assert!(
        unnamed.is_dir(),
        "a directory no volume names is left alone"
    );
    assert!(
        unrelated.is_dir(),
        "a directory not named like a volume stays"
    );
    let said = petset
        .log()
        .lines()
        .filter(|l| {
            l.contains("no volume names is left alone") && l.contains("pvc-deleted-while-down")
        })
        .count();
    assert_eq!(said, 1, "said once\n{}", petset.log());
}
