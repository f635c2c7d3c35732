//! The API's data-safety rules in the in-process tier: each runs in milliseconds against the
//! real router and an in-memory store (the e2e tests drive the same rules with kubectl).

use serde_json::{Value, json};

use crate::test_cluster::TestCluster;

const CLAIMS: &str = "/api/v1/namespaces/default/persistentvolumeclaims";

fn claim(name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": name},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}})
}

#[tokio::test]
async fn claims_and_volumes_are_protected_from_the_start_and_a_deleted_claim_waits() {
    let cluster = TestCluster::start().await;
    let (code, created) = cluster.json("POST", CLAIMS, claim("data")).await;
    assert_eq!(code, 201, "{created}");
    assert_eq!(
        created["metadata"]["finalizers"],
        json!(["kubernetes.io/pvc-protection"])
    );
    let volume = json!({"apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": "pv-1"},
        "spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"],
                 "hostPath": {"path": "/tmp/pv-1"}}});
    let (code, created) = cluster
        .json("POST", "/api/v1/persistentvolumes", volume)
        .await;
    assert_eq!(code, 201, "{created}");
    assert_eq!(
        created["metadata"]["finalizers"],
        json!(["kubernetes.io/pv-protection"])
    );

    let (code, deleting) = cluster
        .json("DELETE", &format!("{CLAIMS}/data"), Value::Null)
        .await;
    assert_eq!(code, 200, "{deleting}");
    let (code, still) = cluster
        .json("GET", &format!("{CLAIMS}/data"), Value::Null)
        .await;
    assert_eq!(
        code, 200,
        "the claim stays until the protection controller lets it go"
    );
    assert!(
        still["metadata"]["deletionTimestamp"].is_string(),
        "{still}"
    );
}

#[tokio::test]
async fn system_namespaces_refuse_deletion_and_namespaces_have_no_deletecollection() {
    let cluster = TestCluster::start().await;
    for name in ["default", "kube-system", "kube-public"] {
        let (code, answer) = cluster
            .json("DELETE", &format!("/api/v1/namespaces/{name}"), Value::Null)
            .await;
        assert_eq!(code, 403, "{answer}");
        assert_eq!(
            answer["message"],
            format!("namespaces \"{name}\" is forbidden: this namespace may not be deleted")
        );
        assert_eq!(answer["details"]["name"], name);
    }
    let (code, answer) = cluster
        .json("DELETE", "/api/v1/namespaces", Value::Null)
        .await;
    assert_eq!(
        (code, answer["reason"].clone()),
        (405, json!("MethodNotAllowed"))
    );
    let (code, _) = cluster
        .json("DELETE", "/api/v1/namespaces/missing", Value::Null)
        .await;
    assert_eq!(code, 404);
}

#[tokio::test]
async fn a_missing_system_namespace_or_the_kubernetes_service_comes_back() {
    let cluster = TestCluster::start().await;
    let registry = cluster.state.registry();
    let namespaces = crate::registry::Scope {
        resource: crate::registry::namespaces_type(),
        namespace: None,
    };
    registry
        .remove(namespaces, "kube-node-lease", None)
        .await
        .expect("removed");
    let services = "/api/v1/namespaces/default/services/kubernetes";
    let (code, _) = cluster.json("DELETE", services, Value::Null).await;
    assert_eq!(code, 200);
    registry.ensure_system_objects().await.expect("ensure");
    let (code, lease_ns) = cluster
        .json("GET", "/api/v1/namespaces/kube-node-lease", Value::Null)
        .await;
    assert_eq!(code, 200, "{lease_ns}");
    let (code, service) = cluster.json("GET", services, Value::Null).await;
    assert_eq!(
        (code, service["spec"]["clusterIP"].clone()),
        (200, json!("10.96.0.1"))
    );
}

#[tokio::test]
async fn dry_run_takes_only_all_on_every_verb() {
    let cluster = TestCluster::start().await;
    let (code, _) = cluster.json("POST", CLAIMS, claim("kept")).await;
    assert_eq!(code, 201);
    let writes = [
        ("POST", CLAIMS.to_string(), claim("new"), "CreateOptions"),
        (
            "PUT",
            format!("{CLAIMS}/kept"),
            claim("kept"),
            "UpdateOptions",
        ),
        (
            "DELETE",
            format!("{CLAIMS}/kept"),
            Value::Null,
            "DeleteOptions",
        ),
    ];
    for (method, path, body, kind) in writes {
        for value in ["all", "", "true"] {
            let (code, answer) = cluster
                .json(method, &format!("{path}?dryRun={value}"), body.clone())
                .await;
            assert_eq!(code, 422, "{method} dryRun={value}: {answer}");
            assert_eq!(
                answer["message"],
                format!(
                    "{kind}.meta.k8s.io \"\" is invalid: dryRun: Unsupported value: []string{{{value:?}}}: supported values: \"All\""
                )
            );
        }
    }
    let (code, answer) = cluster
        .send(
            "PATCH",
            &format!("{CLAIMS}/kept?dryRun=bogus"),
            "application/merge-patch+json",
            json!({"metadata": {"labels": {"a": "b"}}}),
        )
        .await;
    assert_eq!(code, 422, "{answer}");
    let (code, body_dry_run) = cluster
        .json(
            "DELETE",
            &format!("{CLAIMS}/kept"),
            json!({"kind": "DeleteOptions", "apiVersion": "v1", "dryRun": ["bogus"]}),
        )
        .await;
    assert_eq!(code, 422, "{body_dry_run}");
    let (code, kept) = cluster
        .json("GET", &format!("{CLAIMS}/kept"), Value::Null)
        .await;
    assert_eq!(code, 200);
    assert!(kept["metadata"]["deletionTimestamp"].is_null(), "{kept}");
    assert!(kept["metadata"]["labels"].is_null(), "{kept}");
    let (code, _) = cluster
        .json("GET", &format!("{CLAIMS}/new"), Value::Null)
        .await;
    assert_eq!(code, 404, "nothing was created");
}

#[tokio::test]
async fn nothing_nested_past_the_limit_is_stored_by_any_route() {
    let cluster = TestCluster::start().await;
    // A ControllerRevision's `data` is free-form, so it can carry any nesting.
    let revisions = "/apis/apps/v1/namespaces/default/controllerrevisions";
    let revision = |name: &str, data: Value| {
        json!({"apiVersion": "apps/v1", "kind": "ControllerRevision",
            "metadata": {"name": name}, "revision": 1, "data": data})
    };
    let (code, created) = cluster
        .json("POST", revisions, revision("r", json!({"a": 1})))
        .await;
    assert_eq!(code, 201, "{created}");
    let mut deep = json!("x");
    for _ in 0..110 {
        deep = json!({ "n": deep });
    }
    let attempts = [
        (
            "POST",
            revisions.to_string(),
            "application/json",
            revision("d", deep.clone()),
        ),
        (
            "PUT",
            format!("{revisions}/r"),
            "application/json",
            revision("r", deep.clone()),
        ),
        (
            "PATCH",
            format!("{revisions}/r"),
            "application/merge-patch+json",
            json!({"data": deep}),
        ),
        (
            "PATCH",
            format!("{revisions}/r"),
            "application/json-patch+json",
            json!([{"op": "add", "path": "/data/deep", "value": deep}]),
        ),
    ];
    for (method, path, content_type, body) in attempts {
        let (code, answer) = cluster.send(method, &path, content_type, body).await;
        assert_eq!(code, 422, "{method} {content_type}: {answer}");
        assert!(
            answer["message"]
                .as_str()
                .is_some_and(|m| m.contains("levels")),
            "{method} {content_type}: {answer}"
        );
    }
    let (code, listed) = cluster.json("GET", revisions, Value::Null).await;
    assert_eq!(code, 200, "{listed}");
    let (code, r) = cluster
        .json("GET", &format!("{revisions}/r"), Value::Null)
        .await;
    assert_eq!((code, r["data"]["a"].clone()), (200, json!(1)));
    let (code, _) = cluster
        .json("GET", &format!("{revisions}/d"), Value::Null)
        .await;
    assert_eq!(code, 404);
}
