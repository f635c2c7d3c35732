//! networking.k8s.io/v1 in the in-process tier: Ingresses, IngressClasses and NetworkPolicies
//! stored and listed, the bootstrap class `petset`, the DefaultIngressClass admission, and the
//! `Warning` every NetworkPolicy write is answered with.

use petset_api::kinds::networkpolicy::NOT_ENFORCED;
use serde_json::{Value, json};

use crate::test_cluster::TestCluster;

const INGRESSES: &str = "/apis/networking.k8s.io/v1/namespaces/default/ingresses";
const CLASSES: &str = "/apis/networking.k8s.io/v1/ingressclasses";
const POLICIES: &str = "/apis/networking.k8s.io/v1/namespaces/default/networkpolicies";

fn jenkins(class: Option<&str>) -> Value {
    let mut ingress = json!({"apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
        "metadata": {"name": "jenkins"},
        "spec": {"rules": [{"http": {"paths": [{"path": "/jenkins", "pathType": "Prefix",
            "backend": {"service": {"name": "jenkins", "port": {"number": 8080}}}}]}}]}});
    if let Some(class) = class {
        ingress["spec"]["ingressClassName"] = json!(class);
    }
    ingress
}

fn class(name: &str, default: bool) -> Value {
    json!({"metadata": {"name": name,
            "annotations": {"ingressclass.kubernetes.io/is-default-class": default.to_string()}},
        "spec": {"controller": format!("example.com/{name}")}})
}

fn policy() -> Value {
    json!({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
        "metadata": {"name": "db"},
        "spec": {"podSelector": {"matchLabels": {"app": "db"}},
            "ingress": [{"from": [{"podSelector": {"matchLabels": {"app": "web"}}}],
                "ports": [{"port": 5432}]}]}})
}

#[tokio::test]
async fn the_cluster_starts_with_the_default_class_petset() {
    let cluster = TestCluster::start().await;
    let (code, petset) = cluster
        .json("GET", &format!("{CLASSES}/petset"), Value::Null)
        .await;
    assert_eq!(code, 200, "{petset}");
    assert_eq!(petset["spec"]["controller"], "petset.dev/ingress");
    assert_eq!(
        petset["metadata"]["annotations"]["ingressclass.kubernetes.io/is-default-class"],
        "true"
    );
    assert_eq!(petset["metadata"]["generation"], 1);

    // A user's change survives the next start's bootstrap, as the StorageClass's does.
    let (code, _) = cluster
        .send(
            "PATCH",
            &format!("{CLASSES}/petset"),
            "application/merge-patch+json",
            json!({"metadata": {"annotations": {"ingressclass.kubernetes.io/is-default-class": "false"}}}),
        )
        .await;
    assert_eq!(code, 200);
    cluster
        .state
        .registry()
        .bootstrap()
        .await
        .expect("bootstrap");
    let (_, kept) = cluster
        .json("GET", &format!("{CLASSES}/petset"), Value::Null)
        .await;
    assert_eq!(
        kept["metadata"]["annotations"]["ingressclass.kubernetes.io/is-default-class"],
        "false"
    );
}

#[tokio::test]
async fn an_ingress_without_a_class_gets_the_default_one() {
    let cluster = TestCluster::start().await;
    let (code, created) = cluster.json("POST", INGRESSES, jenkins(None)).await;
    assert_eq!(code, 201, "{created}");
    assert_eq!(created["spec"]["ingressClassName"], "petset");
    assert_eq!(created["status"], json!({"loadBalancer": {}}));
    assert_eq!(created["metadata"]["generation"], 1);

    // A class given, in the field or the old annotation, is kept.
    let mut named = jenkins(Some("nginx"));
    named["metadata"]["name"] = json!("named");
    let (_, named) = cluster.json("POST", INGRESSES, named).await;
    assert_eq!(named["spec"]["ingressClassName"], "nginx");
    let mut annotated = jenkins(None);
    annotated["metadata"] = json!({"name": "annotated",
        "annotations": {"kubernetes.io/ingress.class": "nginx"}});
    let (code, annotated) = cluster.json("POST", INGRESSES, annotated).await;
    assert_eq!(code, 201, "{annotated}");
    assert!(
        annotated["spec"].get("ingressClassName").is_none(),
        "{annotated}"
    );

    // With two defaults the newer one wins (upstream since 1.28).
    cluster.advance(10);
    let (code, _) = cluster.json("POST", CLASSES, class("newer", true)).await;
    assert_eq!(code, 201);
    let mut later = jenkins(None);
    later["metadata"]["name"] = json!("later");
    let (_, later) = cluster.json("POST", INGRESSES, later).await;
    assert_eq!(later["spec"]["ingressClassName"], "newer");

    // With no default class, none is set.
    for name in ["newer", "petset"] {
        let (code, _) = cluster
            .json("DELETE", &format!("{CLASSES}/{name}"), Value::Null)
            .await;
        assert_eq!(code, 200);
    }
    let (code, _) = cluster.json("POST", CLASSES, class("other", false)).await;
    assert_eq!(code, 201);
    let mut classless = jenkins(None);
    classless["metadata"]["name"] = json!("classless");
    let (_, classless) = cluster.json("POST", INGRESSES, classless).await;
    assert!(
        classless["spec"].get("ingressClassName").is_none(),
        "{classless}"
    );

    let (code, list) = cluster.json("GET", INGRESSES, Value::Null).await;
    assert_eq!(code, 200);
    let names: Vec<&str> = list["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter_map(|i| i["metadata"]["name"].as_str())
        .collect();
    assert_eq!(
        names,
        ["annotated", "classless", "jenkins", "later", "named"]
    );
}

#[tokio::test]
async fn an_invalid_ingress_is_refused_with_upstreams_message() {
    let cluster = TestCluster::start().await;
    let mut ingress = jenkins(None);
    ingress["spec"]["rules"][0]["http"]["paths"][0]["path"] = json!("jenkins");
    let (code, status) = cluster.json("POST", INGRESSES, ingress).await;
    assert_eq!(code, 422, "{status}");
    assert_eq!(
        status["message"],
        "Ingress.networking.k8s.io \"jenkins\" is invalid: spec.rules[0].http.paths[0].path: Invalid value: \"jenkins\": must be an absolute path"
    );
}

#[tokio::test]
async fn ingresses_print_upstreams_columns() {
    let cluster = TestCluster::start().await;
    let (code, _) = cluster.json("POST", INGRESSES, jenkins(None)).await;
    assert_eq!(code, 201);
    let (code, table) = cluster.table(INGRESSES).await;
    assert_eq!(code, 200, "{table}");
    let columns: Vec<&str> = table["columnDefinitions"]
        .as_array()
        .expect("columns")
        .iter()
        .filter_map(|c| c["name"].as_str())
        .collect();
    assert_eq!(
        columns,
        ["Name", "Class", "Hosts", "Address", "Ports", "Age"]
    );
    assert_eq!(
        table["rows"][0]["cells"],
        json!(["jenkins", "petset", "*", "", "80", "0s"])
    );
    let (_, table) = cluster.table(CLASSES).await;
    assert_eq!(
        table["rows"][0]["cells"],
        json!(["petset", "petset.dev/ingress", "<none>", "0s"])
    );
}

#[tokio::test]
async fn every_network_policy_write_warns_that_it_is_not_enforced() {
    let cluster = TestCluster::start().await;
    let expected = format!("299 - {NOT_ENFORCED:?}");
    let (code, warned, created) = cluster
        .warned("POST", POLICIES, "application/json", policy())
        .await;
    assert_eq!(code, 201, "{created}");
    assert_eq!(warned, std::slice::from_ref(&expected));
    assert_eq!(created["spec"]["policyTypes"], json!(["Ingress"]));
    assert_eq!(created["spec"]["ingress"][0]["ports"][0]["protocol"], "TCP");

    let mut changed = created.clone();
    changed["spec"]["podSelector"] = json!({"matchLabels": {"app": "postgres"}});
    let (code, warned, _) = cluster
        .warned(
            "PUT",
            &format!("{POLICIES}/db"),
            "application/json",
            changed,
        )
        .await;
    assert_eq!(code, 200);
    assert_eq!(warned, std::slice::from_ref(&expected));

    // kubectl apply of a policy that exists is a patch.
    let (code, warned, patched) = cluster
        .warned(
            "PATCH",
            &format!("{POLICIES}/db"),
            "application/strategic-merge-patch+json",
            json!({"metadata": {"labels": {"tier": "db"}}}),
        )
        .await;
    assert_eq!(code, 200, "{patched}");
    assert_eq!(warned, [expected]);
    assert_eq!(patched["metadata"]["generation"], 2);

    // Reads and a refused write carry no such warning; other kinds never do.
    let (code, warned, _) = cluster
        .warned(
            "GET",
            &format!("{POLICIES}/db"),
            "application/json",
            Value::Null,
        )
        .await;
    assert_eq!((code, warned.len()), (200, 0));
    let mut bad = policy();
    bad["metadata"]["name"] = json!("bad");
    bad["spec"]["policyTypes"] = json!(["Sideways"]);
    let (code, warned, status) = cluster
        .warned("POST", POLICIES, "application/json", bad)
        .await;
    assert_eq!((code, warned.len()), (422, 0), "{status}");
    assert_eq!(
        status["message"],
        "NetworkPolicy.networking.k8s.io \"bad\" is invalid: spec.policyTypes[0]: Unsupported value: \"Sideways\": supported values: \"Ingress\", \"Egress\""
    );
    let (code, warned, _) = cluster
        .warned("POST", INGRESSES, "application/json", jenkins(None))
        .await;
    assert_eq!((code, warned.len()), (201, 0));

    let (_, table) = cluster.table(POLICIES).await;
    assert_eq!(
        table["rows"][0]["cells"],
        json!(["db", "app=postgres", "0s"])
    );
}
