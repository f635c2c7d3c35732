//! The old versions petset accepts beyond upstream (`apps/v1beta1`, `apps/v1beta2`), through
//! the in-process API: every verb at the old version, the deprecation `Warning` on every
//! answer, objects stored as `apps/v1` with the old version's defaults, and converted back
//! on the way out.

use serde_json::{Value, json};

use axum::http::header;
use tower::ServiceExt;

use crate::test_cluster::{TestCluster, request, whole_body};

const V1BETA2_SETS: &str = "/apis/apps/v1beta2/namespaces/default/statefulsets";
const V1BETA1_SETS: &str = "/apis/apps/v1beta1/namespaces/default/statefulsets";
const V1BETA1_DEPLOYMENTS: &str = "/apis/apps/v1beta1/namespaces/default/deployments";
const V1_SETS: &str = "/apis/apps/v1/namespaces/default/statefulsets";
const V1_DEPLOYMENTS: &str = "/apis/apps/v1/namespaces/default/deployments";

const V1BETA2_SET_WARNING: &str = "299 - \"apps/v1beta2 StatefulSet is deprecated in v1.9+, unavailable in v1.16+; use apps/v1 StatefulSet\"";
const V1BETA1_SET_WARNING: &str = "299 - \"apps/v1beta1 StatefulSet is deprecated in v1.8+, unavailable in v1.16+; use apps/v1 StatefulSet\"";
const V1BETA1_DEPLOYMENT_WARNING: &str = "299 - \"apps/v1beta1 Deployment is deprecated in v1.8+, unavailable in v1.16+; use apps/v1 Deployment\"";

/// The object's bytes in the store, as JSON.
async fn stored(cluster: &TestCluster, key: &str) -> Value {
    let kv = cluster
        .state
        .registry()
        .store()
        .get(key)
        .await
        .expect("store read")
        .expect("stored");
    serde_json::from_slice(&kv.value).expect("stored JSON")
}

fn template() -> Value {
    json!({"metadata": {"labels": {"app": "consul"}},
           "spec": {"containers": [{"name": "consul", "image": "consul:1.0.2"}]}})
}

/// Seed 003's StatefulSet, cut down: `apps/v1beta2` with an empty namespace.
fn consul_v1beta2() -> Value {
    json!({"apiVersion": "apps/v1beta2", "kind": "StatefulSet",
        "metadata": {"name": "consul", "namespace": null, "labels": {"type": "statefulset"}},
        "spec": {"serviceName": "consul", "replicas": 3,
                 "selector": {"matchLabels": {"app": "consul"}}, "template": template()}})
}

#[tokio::test]
async fn a_v1beta2_statefulset_is_stored_as_apps_v1_and_shown_as_v1beta2() {
    let cluster = TestCluster::start().await;
    let (code, warnings, created) = cluster
        .warned("POST", V1BETA2_SETS, "application/json", consul_v1beta2())
        .await;
    assert_eq!(code, 201, "{created}");
    assert_eq!(warnings, [V1BETA2_SET_WARNING]);
    assert_eq!(created["apiVersion"], "apps/v1beta2");
    assert_eq!(created["metadata"]["namespace"], "default");
    // apps/v1beta2's defaults are apps/v1's.
    assert_eq!(
        created["spec"]["updateStrategy"],
        json!({"type": "RollingUpdate", "rollingUpdate": {"partition": 0}})
    );

    let raw = stored(&cluster, "/registry/apps/statefulsets/default/consul").await;
    assert_eq!(raw["apiVersion"], "apps/v1");
    assert_eq!(raw["spec"]["replicas"], 3);

    let (code, warnings, current) = cluster
        .warned("GET", &format!("{V1_SETS}/consul"), "", Value::Null)
        .await;
    assert_eq!(code, 200);
    assert!(warnings.is_empty(), "{warnings:?}");
    assert_eq!(current["apiVersion"], "apps/v1");

    let (code, warnings, old) = cluster
        .warned("GET", &format!("{V1BETA2_SETS}/consul"), "", Value::Null)
        .await;
    assert_eq!(code, 200);
    assert_eq!(warnings, [V1BETA2_SET_WARNING]);
    assert_eq!(old["apiVersion"], "apps/v1beta2");
    assert_eq!(old["kind"], "StatefulSet");

    let (code, warnings, list) = cluster.warned("GET", V1BETA2_SETS, "", Value::Null).await;
    assert_eq!(code, 200);
    assert_eq!(warnings, [V1BETA2_SET_WARNING]);
    assert_eq!(list["apiVersion"], "apps/v1beta2");
    assert_eq!(list["kind"], "StatefulSetList");
    assert_eq!(list["items"][0]["metadata"]["name"], "consul");
}

#[tokio::test]
async fn patches_at_an_old_version_apply_to_the_old_form() {
    let cluster = TestCluster::start().await;
    let (code, _, _) = cluster
        .warned("POST", V1BETA2_SETS, "application/json", consul_v1beta2())
        .await;
    assert_eq!(code, 201);
    let (code, warnings, patched) = cluster
        .warned(
            "PATCH",
            &format!("{V1BETA2_SETS}/consul"),
            "application/strategic-merge-patch+json",
            json!({"spec": {"replicas": 5}}),
        )
        .await;
    assert_eq!(code, 200, "{patched}");
    assert_eq!(warnings, [V1BETA2_SET_WARNING]);
    assert_eq!(patched["apiVersion"], "apps/v1beta2");
    assert_eq!(patched["spec"]["replicas"], 5);
    let raw = stored(&cluster, "/registry/apps/statefulsets/default/consul").await;
    assert_eq!(raw["spec"]["replicas"], 5);
    assert_eq!(raw["apiVersion"], "apps/v1");

    // A JSON patch sees the old version's apiVersion.
    let (code, _, answer) = cluster
        .warned(
            "PATCH",
            &format!("{V1BETA2_SETS}/consul"),
            "application/json-patch+json",
            json!([{"op": "test", "path": "/apiVersion", "value": "apps/v1beta2"},
               {"op": "replace", "path": "/spec/replicas", "value": 4}]),
        )
        .await;
    assert_eq!(code, 200, "{answer}");
    assert_eq!(answer["spec"]["replicas"], 4);
}

#[tokio::test]
async fn a_v1beta1_statefulset_gets_its_own_versions_defaults() {
    let cluster = TestCluster::start().await;
    let set = json!({"apiVersion": "apps/v1beta1", "kind": "StatefulSet",
        "metadata": {"name": "db"},
        "spec": {"serviceName": "db", "template": template()}});
    let (code, warnings, created) = cluster
        .warned("POST", V1BETA1_SETS, "application/json", set)
        .await;
    assert_eq!(code, 201, "{created}");
    assert_eq!(warnings, [V1BETA1_SET_WARNING]);
    assert_eq!(created["apiVersion"], "apps/v1beta1");
    let raw = stored(&cluster, "/registry/apps/statefulsets/default/db").await;
    assert_eq!(raw["apiVersion"], "apps/v1");
    assert_eq!(raw["spec"]["updateStrategy"], json!({"type": "OnDelete"}));
    assert_eq!(
        raw["spec"]["selector"],
        json!({"matchLabels": {"app": "consul"}})
    );
    assert_eq!(raw["metadata"]["labels"], json!({"app": "consul"}));
}

#[tokio::test]
async fn a_v1beta1_deployment_keeps_rollback_to_through_storage() {
    let cluster = TestCluster::start().await;
    let deployment = json!({"apiVersion": "apps/v1beta1", "kind": "Deployment",
        "metadata": {"name": "web"},
        "spec": {"template": template(), "rollbackTo": {"revision": 1}}});
    let (code, warnings, created) = cluster
        .warned("POST", V1BETA1_DEPLOYMENTS, "application/json", deployment)
        .await;
    assert_eq!(code, 201, "{created}");
    assert_eq!(warnings, [V1BETA1_DEPLOYMENT_WARNING]);
    assert_eq!(created["spec"]["rollbackTo"], json!({"revision": 1}));
    assert_eq!(created["spec"]["revisionHistoryLimit"], 2);

    let (_, _, current) = cluster
        .warned("GET", &format!("{V1_DEPLOYMENTS}/web"), "", Value::Null)
        .await;
    assert_eq!(
        current["metadata"]["annotations"]["deprecated.deployment.rollback.to"],
        "1"
    );
    assert!(current["spec"].get("rollbackTo").is_none());
    assert_eq!(current["spec"]["progressDeadlineSeconds"], 600);

    // A PUT at the old version without rollbackTo takes the annotation away.
    let mut updated = created.clone();
    updated["spec"]
        .as_object_mut()
        .expect("spec")
        .remove("rollbackTo");
    let (code, warnings, answer) = cluster
        .warned(
            "PUT",
            &format!("{V1BETA1_DEPLOYMENTS}/web"),
            "application/json",
            updated,
        )
        .await;
    assert_eq!(code, 200, "{answer}");
    assert_eq!(warnings, [V1BETA1_DEPLOYMENT_WARNING]);
    assert_eq!(answer["apiVersion"], "apps/v1beta1");
    let raw = stored(&cluster, "/registry/apps/deployments/default/web").await;
    assert!(raw["metadata"].get("annotations").is_none(), "{raw}");
}

#[tokio::test]
async fn server_side_apply_at_an_old_version_creates_then_patches() {
    let cluster = TestCluster::start().await;
    let path = format!("{V1BETA1_SETS}/applied?fieldManager=kubectl");
    let config = json!({"apiVersion": "apps/v1beta1", "kind": "StatefulSet",
        "metadata": {"name": "applied"},
        "spec": {"serviceName": "applied", "template": template()}});
    let (code, warnings, created) = cluster
        .warned(
            "PATCH",
            &path,
            "application/apply-patch+yaml",
            config.clone(),
        )
        .await;
    assert_eq!(code, 201, "{created}");
    assert_eq!(warnings, [V1BETA1_SET_WARNING]);
    assert_eq!(created["apiVersion"], "apps/v1beta1");
    assert_eq!(created["spec"]["updateStrategy"]["type"], "OnDelete");
    assert_eq!(
        created["metadata"]["managedFields"][0]["apiVersion"],
        "apps/v1beta1"
    );
    let mut scaled = config;
    scaled["spec"]["replicas"] = json!(2);
    let (code, _, patched) = cluster
        .warned("PATCH", &path, "application/apply-patch+yaml", scaled)
        .await;
    assert_eq!(code, 200, "{patched}");
    assert_eq!(patched["spec"]["replicas"], 2);
    assert_eq!(patched["spec"]["updateStrategy"]["type"], "OnDelete");
    let raw = stored(&cluster, "/registry/apps/statefulsets/default/applied").await;
    assert_eq!(raw["apiVersion"], "apps/v1");

    // An applied configuration of another version is refused, warned all the same.
    let (code, warnings, refused) = cluster.warned(
        "PATCH",
        &path,
        "application/apply-patch+yaml",
        json!({"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "applied"}}),
    )
    .await;
    assert_eq!(code, 400, "{refused}");
    assert_eq!(warnings, [V1BETA1_SET_WARNING]);
    assert_eq!(
        refused["message"],
        "the API version in the data (apps/v1) does not match the expected API version (apps/v1beta1)"
    );
}

#[tokio::test]
async fn errors_and_deletes_at_an_old_version_are_warned_too() {
    let cluster = TestCluster::start().await;
    let (code, warnings, _) = cluster
        .warned("GET", &format!("{V1BETA2_SETS}/missing"), "", Value::Null)
        .await;
    assert_eq!(code, 404);
    assert_eq!(warnings, [V1BETA2_SET_WARNING]);
    cluster
        .warned("POST", V1BETA2_SETS, "application/json", consul_v1beta2())
        .await;
    // A body that is not JSON is named by the URL's version.
    let response = crate::internal_router(cluster.state.clone())
        .oneshot(
            axum::http::Request::post(V1BETA2_SETS)
                .header(header::CONTENT_TYPE, "application/json")
                .body(axum::body::Body::from("{not json"))
                .expect("request"),
        )
        .await
        .expect("infallible");
    assert_eq!(response.status().as_u16(), 400);
    let refused: Value =
        serde_json::from_slice(&whole_body(response.into_body()).await).expect("a Status");
    let message = refused["message"].as_str().unwrap_or_default();
    assert!(
        message
            .starts_with("StatefulSet in version \"v1beta2\" cannot be handled as a StatefulSet"),
        "{message}"
    );
    // An old version serves no Scale (its kinds were apps/v1beta2 Scale).
    let (code, _, _) = cluster
        .warned(
            "GET",
            &format!("{V1BETA2_SETS}/consul/scale"),
            "",
            Value::Null,
        )
        .await;
    assert_eq!(code, 404);
    let (code, _, status) = cluster
        .warned(
            "GET",
            &format!("{V1BETA2_SETS}/consul/status"),
            "",
            Value::Null,
        )
        .await;
    assert_eq!(code, 200);
    assert_eq!(status["apiVersion"], "apps/v1beta2");
    let (code, warnings, deleted) = cluster
        .warned("DELETE", &format!("{V1BETA2_SETS}/consul"), "", Value::Null)
        .await;
    assert_eq!(code, 200, "{deleted}");
    assert_eq!(warnings, [V1BETA2_SET_WARNING]);
    let (code, _, _) = cluster
        .warned("GET", &format!("{V1_SETS}/consul"), "", Value::Null)
        .await;
    assert_eq!(code, 404);
}

#[tokio::test]
async fn a_watch_at_an_old_version_sees_objects_in_that_version() {
    let cluster = TestCluster::start().await;
    cluster
        .warned("POST", V1BETA2_SETS, "application/json", consul_v1beta2())
        .await;
    let response = crate::internal_router(cluster.state.clone())
        .oneshot(request(
            "GET",
            &format!("{V1BETA2_SETS}?watch=1&timeoutSeconds=1&allowWatchBookmarks=true"),
            "application/json",
            "application/json",
            Value::Null,
        ))
        .await
        .expect("infallible");
    let warned: Vec<&[u8]> = response
        .headers()
        .get_all(header::WARNING)
        .iter()
        .map(|value| value.as_bytes())
        .collect();
    assert_eq!(warned, [V1BETA2_SET_WARNING.as_bytes()]);
    let body = whole_body(response.into_body()).await;
    let events: Vec<Value> = String::from_utf8_lossy(&body)
        .lines()
        .map(|line| serde_json::from_str(line).expect("a watch event per line"))
        .collect();
    let added = events
        .iter()
        .find(|event| event["type"] == "ADDED")
        .expect("the set");
    assert_eq!(added["object"]["apiVersion"], "apps/v1beta2");
    assert_eq!(added["object"]["metadata"]["name"], "consul");
}

#[tokio::test]
async fn discovery_lists_old_versions_after_the_preferred_one() {
    let cluster = TestCluster::start().await;
    let (code, _, list) = cluster
        .warned("GET", "/apis/apps/v1beta1", "", Value::Null)
        .await;
    assert_eq!(code, 200);
    assert_eq!(list["groupVersion"], "apps/v1beta1");
    let (code, _, apps) = cluster.warned("GET", "/apis/apps", "", Value::Null).await;
    assert_eq!(code, 200);
    assert_eq!(apps["preferredVersion"]["version"], "v1");
    // Kinds that do not convert are not served at the old version.
    let (code, _, _) = cluster
        .warned(
            "GET",
            "/apis/apps/v1beta2/namespaces/default/replicasets",
            "",
            Value::Null,
        )
        .await;
    assert_eq!(code, 404);
}
