//! Identities end to end, as users meet them: seed 002's sidecar step (a container lists the
//! pods of its StatefulSet with its mounted ServiceAccount token, is refused with the
//! tutorial's 403, and lists them once a RoleBinding to `view` exists), kube-rs
//! `Client::try_default` inside a pod, and `kubectl auth can-i` / `auth whoami` for the admin, a
//! user of `petset kubeconfig` and a ServiceAccount, impersonation included.

use std::time::Duration;

use petset_testkit::{Petset, can_run_containers, image_with_programs, wait_until};

use crate::runc::start_with_image;

const CLIENT_IMAGE: &str = "petset/in-cluster:test";

/// An image with this build's petset, whose `petset in-cluster` is a kube-rs in-cluster client.
fn in_cluster_client_image(dir: &std::path::Path, name: &str) {
    image_with_programs(dir, name, &[env!("CARGO_BIN_EXE_petset")]);
}

/// Seed 002's database with the sidecar stand-in: every 2 s it connects as its pod's
/// ServiceAccount and lists the pods of its namespace.
fn database() -> String {
    let petset = env!("CARGO_BIN_EXE_petset");
    format!(
        r#"apiVersion: apps/v1
kind: StatefulSet
metadata:
  name: db
  namespace: go-demo-3
spec:
  serviceName: db
  selector:
    matchLabels:
      app: db
  template:
    metadata:
      labels:
        app: db
    spec:
      containers:
      - name: db-sidecar
        image: {CLIENT_IMAGE}
        command: ["sh", "-c", "while true; do {petset} in-cluster 2>&1; sleep 2; done"]
---
apiVersion: v1
kind: Pod
metadata:
  name: no-token
  namespace: go-demo-3
spec:
  automountServiceAccountToken: false
  containers:
  - name: c
    image: {CLIENT_IMAGE}
    command: ["sh", "-c", "ls /var/run/secrets/kubernetes.io/serviceaccount/token 2>&1; {petset} in-cluster 2>&1; sleep 3600"]
"#
    )
}

fn logs_contain(petset: &Petset, pod: &str, text: &str) -> bool {
    let mut last = String::new();
    let seen = wait_until(Duration::from_secs(90), || {
        last = petset
            .kubectl(&["-n", "go-demo-3", "logs", pod, "--tail=20"])
            .stdout;
        last.contains(text)
    });
    assert!(
        seen,
        "{pod}: expected {text:?} in its log, last saw:\n{last}\n{}",
        petset.log()
    );
    seen
}

#[test]
fn seed_002s_sidecar_is_refused_the_pods_until_a_rolebinding_lets_it_list_them() {
    if !can_run_containers(
        "seed_002s_sidecar_is_refused_the_pods_until_a_rolebinding_lets_it_list_them",
    ) {
        return;
    }
    let (_images, petset) = start_with_image(
        in_cluster_client_image,
        CLIENT_IMAGE,
        &["--store", "memory"],
    );
    petset.kubectl(&["create", "namespace", "go-demo-3"]).ok();
    petset
        .kubectl_with_input(&["apply", "-f", "-"], Some(&database()))
        .ok();
    // The tutorial's line, from a kube-rs client that found its API, CA and token alone.
    logs_contain(
        &petset,
        "db-0",
        r#"pods is forbidden: User "system:serviceaccount:go-demo-3:default" cannot list resource "pods" in API group "" in the namespace "go-demo-3""#,
    );
    logs_contain(
        &petset,
        "db-0",
        "user system:serviceaccount:go-demo-3:default",
    );
    petset
        .kubectl(&[
            "-n",
            "go-demo-3",
            "create",
            "rolebinding",
            "db-view",
            "--clusterrole=view",
            "--serviceaccount=go-demo-3:default",
        ])
        .ok();
    logs_contain(&petset, "db-0", "pod db-0");
    logs_contain(&petset, "db-0", "pod no-token");
    // Without automount, no token and no in-cluster client.
    logs_contain(&petset, "no-token", "No such file or directory");
    logs_contain(&petset, "no-token", "connecting as an in-cluster client");
}

/// `kubectl auth can-i` as `who` (a kubeconfig), printing yes or no.
fn can_i(petset: &Petset, kubeconfig: &std::path::Path, args: &[&str]) -> String {
    let mut all = vec![
        "--kubeconfig",
        kubeconfig.to_str().expect("path"),
        "auth",
        "can-i",
    ];
    all.extend_from_slice(args);
    petset.kubectl(&all).stdout.trim().to_string()
}

#[test]
fn auth_can_i_and_whoami_for_the_admin_a_user_and_a_service_account() {
    let petset = crate::start(&["--store", "memory", "--node-runtime", "simulated"]);
    let admin = petset.kubeconfig();
    let jane = petset.data_dir().join("jane.kubeconfig");
    let made = std::process::Command::new(env!("CARGO_BIN_EXE_petset"))
        .args([
            "kubeconfig",
            "--user",
            "jane",
            "--group",
            "developers",
            "--out",
        ])
        .arg(&jane)
        .arg("--data-dir")
        .arg(petset.data_dir())
        .output()
        .expect("petset kubeconfig");
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    let whoami = |kubeconfig: &std::path::Path, extra: &[&str]| {
        let mut args = vec![
            "--kubeconfig",
            kubeconfig.to_str().expect("path"),
            "auth",
            "whoami",
        ];
        args.extend_from_slice(extra);
        petset.kubectl(&args).ok().to_string()
    };
    let me = whoami(&admin, &[]);
    assert!(
        me.contains("kubernetes-admin") && me.contains("system:masters"),
        "{me}"
    );
    let me = whoami(&jane, &[]);
    assert!(me.contains("jane") && me.contains("developers"), "{me}");
    let as_account = whoami(&admin, &["--as=system:serviceaccount:default:default"]);
    assert!(
        as_account.contains("system:serviceaccount:default:default")
            && as_account.contains("system:serviceaccounts:default"),
        "{as_account}"
    );
    // The admin may do anything, jane nothing yet but ask.
    assert_eq!(can_i(&petset, &admin, &["delete", "nodes"]), "yes");
    assert_eq!(can_i(&petset, &jane, &["list", "pods"]), "no");
    assert_eq!(can_i(&petset, &admin, &["list", "pods", "--as=jane"]), "no");
    // jane cannot impersonate anyone.
    let refused = petset.kubectl(&[
        "--kubeconfig",
        jane.to_str().expect("path"),
        "get",
        "pods",
        "--as=system:serviceaccount:default:default",
    ]);
    assert!(
        refused.stderr.contains(
            r#"serviceaccounts "default" is forbidden: User "jane" cannot impersonate resource "serviceaccounts" in API group "" in the namespace "default""#
        ),
        "{}",
        refused.stderr
    );
    // A Role and its binding give jane the pods of one namespace, and nothing else.
    petset
        .kubectl(&[
            "create",
            "role",
            "pod-reader",
            "--verb=get,list,watch",
            "--resource=pods",
        ])
        .ok();
    petset
        .kubectl(&[
            "create",
            "rolebinding",
            "jane-reads",
            "--role=pod-reader",
            "--user=jane",
        ])
        .ok();
    let allowed = wait_until(Duration::from_secs(10), || {
        can_i(&petset, &jane, &["list", "pods"]) == "yes"
    });
    assert!(allowed, "the binding never took effect");
    assert_eq!(
        can_i(&petset, &jane, &["list", "pods", "-n", "kube-system"]),
        "no"
    );
    assert_eq!(can_i(&petset, &jane, &["delete", "pods"]), "no");
    assert_eq!(
        can_i(&petset, &admin, &["list", "pods", "--as=jane"]),
        "yes"
    );
    let listed = petset
        .kubectl(&[
            "--kubeconfig",
            jane.to_str().expect("path"),
            "auth",
            "can-i",
            "--list",
        ])
        .ok()
        .to_string();
    assert!(
        listed.contains("pods") && listed.contains("[get list watch]"),
        "{listed}"
    );
    // A ServiceAccount, by its token and by impersonation.
    petset.kubectl(&["create", "serviceaccount", "bot"]).ok();
    let token = petset
        .kubectl(&["create", "token", "bot"])
        .ok()
        .trim()
        .to_string();
    let as_bot = petset.kubectl(&["--token", &token, "auth", "whoami"]);
    assert!(
        as_bot.ok().contains("system:serviceaccount:default:bot"),
        "{}",
        as_bot.stdout
    );
    assert_eq!(
        can_i(
            &petset,
            &admin,
            &["list", "pods", "--as=system:serviceaccount:default:bot"]
        ),
        "no"
    );
    petset
        .kubectl(&[
            "create",
            "rolebinding",
            "bot-views",
            "--clusterrole=view",
            "--serviceaccount=default:bot",
        ])
        .ok();
    let allowed = wait_until(Duration::from_secs(10), || {
        can_i(
            &petset,
            &admin,
            &["list", "pods", "--as=system:serviceaccount:default:bot"],
        ) == "yes"
    });
    assert!(allowed, "the ServiceAccount's binding never took effect");
    assert_eq!(
        can_i(
            &petset,
            &admin,
            &["get", "secrets", "--as=system:serviceaccount:default:bot"]
        ),
        "no",
        "view reads no secrets"
    );
}
