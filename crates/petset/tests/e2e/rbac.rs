//! RBAC objects made with kubectl's imperative creates (which send protobuf) and read back
//! with `kubectl get -o wide`, as upstream prints them; the default policy is there and the
//! user-facing roles get their aggregated rules.

use std::time::Duration;

use petset_testkit::{Petset, wait_until};

use crate::start;

fn petset() -> Petset {
    start(&["--store", "memory"])
}

/// The lines of a table, split into columns.
fn rows(table: &str) -> Vec<Vec<String>> {
    table
        .lines()
        .map(|line| line.split_whitespace().map(str::to_string).collect())
        .collect()
}

#[test]
fn each_rbac_kind_is_created_by_kubectl_and_printed_as_upstream() {
    let petset = petset();

    let role = petset.kubectl(&[
        "create",
        "role",
        "pod-reader",
        "--verb=get",
        "--verb=list",
        "--resource=pods",
    ]);
    assert_eq!(
        role.ok(),
        "role.rbac.authorization.k8s.io/pod-reader created\n"
    );
    let binding = petset.kubectl(&[
        "create",
        "rolebinding",
        "read-pods",
        "--clusterrole=view",
        "--serviceaccount=default:default",
        "--user=jane",
        "--group=developers",
    ]);
    assert_eq!(
        binding.ok(),
        "rolebinding.rbac.authorization.k8s.io/read-pods created\n"
    );
    let aggregated = petset.kubectl(&[
        "create",
        "clusterrole",
        "team-view",
        "--aggregation-rule=team=a",
    ]);
    assert_eq!(
        aggregated.ok(),
        "clusterrole.rbac.authorization.k8s.io/team-view created\n"
    );
    let plain = petset.kubectl(&[
        "create",
        "clusterrole",
        "team-a-pods",
        "--verb=get",
        "--resource=pods",
    ]);
    assert_eq!(
        plain.ok(),
        "clusterrole.rbac.authorization.k8s.io/team-a-pods created\n"
    );
    let cluster_binding = petset.kubectl(&[
        "create",
        "clusterrolebinding",
        "team-view",
        "--clusterrole=team-view",
        "--group=team-a",
    ]);
    assert_eq!(
        cluster_binding.ok(),
        "clusterrolebinding.rbac.authorization.k8s.io/team-view created\n"
    );

    let roles = rows(
        petset
            .kubectl(&["get", "role", "pod-reader", "-o", "wide"])
            .ok(),
    );
    assert_eq!(roles[0], ["NAME", "CREATED", "AT"]);
    assert_eq!(roles[1][0], "pod-reader");
    assert!(roles[1][1].ends_with('Z'), "{roles:?}");

    let bindings = rows(
        petset
            .kubectl(&["get", "rolebinding", "read-pods", "-o", "wide"])
            .ok(),
    );
    assert_eq!(
        bindings[0],
        ["NAME", "ROLE", "AGE", "USERS", "GROUPS", "SERVICEACCOUNTS"]
    );
    let row = &bindings[1];
    assert_eq!(
        (
            row[0].as_str(),
            row[1].as_str(),
            row[3].as_str(),
            row[4].as_str(),
            row[5].as_str()
        ),
        (
            "read-pods",
            "ClusterRole/view",
            "jane",
            "developers",
            "default:default"
        ),
        "{bindings:?}"
    );

    let cluster_bindings = rows(
        petset
            .kubectl(&["get", "clusterrolebinding", "team-view", "-o", "wide"])
            .ok(),
    );
    assert_eq!(
        cluster_bindings[0],
        ["NAME", "ROLE", "AGE", "USERS", "GROUPS", "SERVICEACCOUNTS"]
    );
    assert_eq!(cluster_bindings[1][1], "ClusterRole/team-view");
    assert_eq!(cluster_bindings[1][3], "team-a");

    // The rules of the created role are what kubectl sent.
    let rules = petset.kubectl(&["get", "role", "pod-reader", "-o", "jsonpath={.rules}"]);
    let rules: serde_json::Value = serde_json::from_str(rules.ok()).expect("rules JSON");
    assert_eq!(
        rules,
        serde_json::json!([{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list"]}])
    );

    // The aggregation controller fills the aggregated role once a role carries its label.
    petset
        .kubectl(&["label", "clusterrole", "team-a-pods", "team=a"])
        .ok();
    let gathered = wait_until(Duration::from_secs(30), || {
        let rules = petset.kubectl(&["get", "clusterrole", "team-view", "-o", "jsonpath={.rules}"]);
        rules.success && rules.stdout.contains("pods")
    });
    assert!(gathered, "team-view never gathered team-a-pods' rules");
}

#[test]
fn the_default_policy_is_there_and_view_gathers_its_rules() {
    let petset = petset();
    let bindings = rows(
        petset
            .kubectl(&["get", "clusterrolebinding", "cluster-admin", "-o", "wide"])
            .ok(),
    );
    assert_eq!(bindings[1][1], "ClusterRole/cluster-admin");
    assert_eq!(bindings[1][3], "system:masters");
    let gathered = wait_until(Duration::from_secs(30), || {
        let rules = petset.kubectl(&["get", "clusterrole", "view", "-o", "jsonpath={.rules}"]);
        rules.success && rules.stdout.contains("statefulsets")
    });
    assert!(gathered, "view never gathered its rules");
    let view = petset.kubectl(&["get", "clusterrole", "view", "-o", "jsonpath={.rules}"]);
    assert!(!view.ok().contains("secrets"), "{}", view.stdout);
}
