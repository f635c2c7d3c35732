//! A kind added through the catalogue alone is served everywhere kubectl looks.
//!
//! policy/v1 PodDisruptionBudget was added as one file (`crates/api/src/kinds/pdb.rs`) plus one
//! catalogue entry (its name in `served_kinds!` and its `pub mod` line in `kinds/mod.rs`); no
//! file of discovery, OpenAPI, tables, shape checks or the registry names it.

use petset_testkit::Petset;

use crate::start;

const BUDGET: &str = r#"{"apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
    "metadata": {"name": "web"},
    "spec": {"minAvailable": 2, "selector": {"matchLabels": {"app": "nginx"}}}}"#;

fn petset() -> Petset {
    start(&["--store", "memory"])
}

#[test]
fn a_disruption_budget_is_listed_discovered_explained_created_and_printed() {
    let petset = petset();

    let resources = petset.kubectl(&["api-resources", "--api-group=policy"]);
    let line = resources
        .ok()
        .lines()
        .find(|l| l.starts_with("poddisruptionbudgets"))
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .unwrap_or_default();
    assert_eq!(
        line,
        [
            "poddisruptionbudgets",
            "pdb",
            "policy/v1",
            "true",
            "PodDisruptionBudget"
        ],
        "{}",
        resources.stdout
    );

    let discovery = petset.kubectl(&["get", "--raw", "/apis/policy/v1"]);
    let list: serde_json::Value = serde_json::from_str(discovery.ok()).expect("discovery JSON");
    let names: Vec<&str> = list["resources"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| r["name"].as_str())
        .collect();
    assert_eq!(
        names,
        ["poddisruptionbudgets", "poddisruptionbudgets/status"],
        "{list}"
    );

    let explained = petset.kubectl(&["explain", "pdb.spec"]);
    let text = explained.ok();
    assert!(text.contains("KIND:       PodDisruptionBudget"), "{text}");
    assert!(text.contains("minAvailable"), "{text}");
    assert!(text.contains("maxUnavailable"), "{text}");

    let created = petset.kubectl_with_input(&["create", "-f", "-"], Some(BUDGET));
    assert_eq!(created.ok(), "poddisruptionbudget.policy/web created\n");
    let table = petset.kubectl(&["get", "pdb"]);
    let lines: Vec<Vec<&str>> = table
        .ok()
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(
        lines.first().map(Vec::as_slice),
        Some(
            [
                "NAME",
                "MIN",
                "AVAILABLE",
                "MAX",
                "UNAVAILABLE",
                "ALLOWED",
                "DISRUPTIONS",
                "AGE"
            ]
            .as_slice()
        ),
        "{}",
        table.stdout
    );
    assert_eq!(
        lines.get(1).map(|row| &row[..4]),
        Some(["web", "2", "N/A", "0"].as_slice()),
        "{}",
        table.stdout
    );

    // Upstream's validation: one of the two, as a count or a percentage.
    let both = petset.kubectl(&[
        "patch",
        "pdb",
        "web",
        "--type=merge",
        "-p",
        r#"{"spec":{"maxUnavailable":1}}"#,
    ]);
    assert!(
        both.err()
            .contains("minAvailable and maxUnavailable cannot be both set"),
        "{}",
        both.stderr
    );
}

/// `kubectl autoscale` gets the reason no autoscaler is made (no metrics API), at either
/// version kubectl tries, and `get hpa` works on the served kind.
#[test]
fn autoscale_is_refused_with_the_reason() {
    let petset = petset();
    let set = r#"{"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "web"},
        "spec": {"serviceName": "web", "replicas": 1,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "web", "image": "nginx"}]}}}}"#;
    petset
        .kubectl_with_input(&["create", "-f", "-"], Some(set))
        .ok();

    let refused = petset.kubectl(&[
        "autoscale",
        "statefulset",
        "web",
        "--max=3",
        "--cpu-percent=50",
    ]);
    let text = refused.err();
    assert!(
        text.contains(r#"The HorizontalPodAutoscaler "web" is invalid: spec: Forbidden: petset serves no metrics API (metrics.k8s.io) yet"#),
        "{text}"
    );
    let listed = petset.kubectl(&["get", "hpa"]);
    listed.ok();
    assert!(
        listed
            .stderr
            .contains("No resources found in default namespace."),
        "{}",
        listed.stderr
    );
    let resources = petset.kubectl(&["api-resources", "--api-group=autoscaling"]);
    assert!(
        resources.ok().contains("autoscaling/v2"),
        "{}",
        resources.stdout
    );
}
