//! networking.k8s.io/v1 through kubectl: an Ingress without a class gets the default class
//! `petset`, `get ing` prints upstream's columns, and `apply` of a NetworkPolicy prints the
//! warning that petset does not enforce it.

use crate::start;

const JENKINS: &str = r#"{"apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
    "metadata": {"name": "jenkins"},
    "spec": {"rules": [{"http": {"paths": [{"path": "/jenkins", "pathType": "Prefix",
        "backend": {"service": {"name": "jenkins", "port": {"number": 8080}}}}]}}]}}"#;

const POLICY: &str = r#"{"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
    "metadata": {"name": "db"},
    "spec": {"podSelector": {"matchLabels": {"app": "db"}},
        "ingress": [{"from": [{"podSelector": {"matchLabels": {"app": "web"}}}],
            "ports": [{"port": 5432}]}]}}"#;

const NOT_ENFORCED: &str = "Warning: networking.k8s.io/v1 NetworkPolicy is stored but not enforced by petset: pod traffic is not restricted";

fn words(text: &str) -> Vec<Vec<&str>> {
    text.lines()
        .map(|l| l.split_whitespace().collect())
        .collect()
}

#[test]
fn ingresses_get_the_default_class_and_network_policies_a_warning() {
    let petset = start(&["--store", "memory"]);

    // kubectl sorts by name.
    let resources = petset.kubectl(&["api-resources", "--api-group=networking.k8s.io"]);
    let lines = words(resources.ok());
    let expected: [&[&str]; 3] = [
        &[
            "ingressclasses",
            "networking.k8s.io/v1",
            "false",
            "IngressClass",
        ],
        &[
            "ingresses",
            "ing",
            "networking.k8s.io/v1",
            "true",
            "Ingress",
        ],
        &[
            "networkpolicies",
            "netpol",
            "networking.k8s.io/v1",
            "true",
            "NetworkPolicy",
        ],
    ];
    assert_eq!(lines[1..], expected, "{}", resources.stdout);
    let explained = petset.kubectl(&["explain", "ing.spec.rules.http.paths"]);
    assert!(explained.ok().contains("pathType"), "{}", explained.stdout);

    let classes = petset.kubectl(&["get", "ingressclass"]);
    let lines = words(classes.ok());
    assert_eq!(
        lines.first().map(Vec::as_slice),
        Some(["NAME", "CONTROLLER", "PARAMETERS", "AGE"].as_slice()),
        "{}",
        classes.stdout
    );
    assert_eq!(
        lines.get(1).map(|row| &row[..3]),
        Some(["petset", "petset.dev/ingress", "<none>"].as_slice()),
        "{}",
        classes.stdout
    );

    let created = petset.kubectl_with_input(&["create", "-f", "-"], Some(JENKINS));
    assert_eq!(created.ok(), "ingress.networking.k8s.io/jenkins created\n");
    let class = petset.kubectl(&[
        "get",
        "ing",
        "jenkins",
        "-o",
        "jsonpath={.spec.ingressClassName}",
    ]);
    assert_eq!(class.ok(), "petset");
    let table = petset.kubectl(&["get", "ing"]);
    let lines = words(table.ok());
    assert_eq!(
        lines.first().map(Vec::as_slice),
        Some(["NAME", "CLASS", "HOSTS", "ADDRESS", "PORTS", "AGE"].as_slice()),
        "{}",
        table.stdout
    );
    // ADDRESS is empty until a proxy fills the status in, so the row has five words.
    assert_eq!(
        lines.get(1).map(|row| &row[..4]),
        Some(["jenkins", "petset", "*", "80"].as_slice()),
        "{}",
        table.stdout
    );

    let applied = petset.kubectl_with_input(&["apply", "-f", "-"], Some(POLICY));
    assert_eq!(applied.ok(), "networkpolicy.networking.k8s.io/db created\n");
    assert!(applied.stderr.contains(NOT_ENFORCED), "{}", applied.stderr);
    let table = petset.kubectl(&["get", "netpol"]);
    let lines = words(table.ok());
    assert_eq!(
        lines.first().map(Vec::as_slice),
        Some(["NAME", "POD-SELECTOR", "AGE"].as_slice()),
        "{}",
        table.stdout
    );
    assert_eq!(
        lines.get(1).map(|row| &row[..2]),
        Some(["db", "app=db"].as_slice()),
        "{}",
        table.stdout
    );

    let refused = petset.kubectl_with_input(
        &["apply", "-f", "-"],
        Some(&POLICY.replace("5432", "70000")),
    );
    assert!(
        refused
            .err()
            .contains("spec.ingress[0].ports[0].port: Invalid value: 70000: must be between 1 and 65535, inclusive"),
        "{}",
        refused.stderr
    );
}
