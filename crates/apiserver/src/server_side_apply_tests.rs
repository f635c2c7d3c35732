//! Server-side apply as upstream, through the HTTP surface of an in-process cluster: managers'
//! field sets in `managedFields`, 409 conflicts in upstream's words, `force`, fields an applier
//! stops applying, updates taking fields, and managedFields that stay bounded.

use serde_json::{Value, json};

use crate::test_cluster::TestCluster;

const APPLY: &str = "application/apply-patch+yaml";
const DEPLOYMENTS: &str = "/apis/apps/v1/namespaces/default/deployments";
const CONFIGMAPS: &str = "/api/v1/namespaces/default/configmaps";

fn deployment(replicas: i64) -> Value {
    json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
        "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "nginx", "image": "nginx:1.27"}]}}}})
}

async fn apply(cluster: &TestCluster, path: &str, query: &str, body: Value) -> (u16, Value) {
    cluster
        .send("PATCH", &format!("{path}?{query}"), APPLY, body)
        .await
}

/// The managers whose entries own `pointer` (a path in a FieldsV1 document).
fn owners(object: &Value, pointer: &str) -> Vec<String> {
    object["metadata"]["managedFields"]
        .as_array()
        .map(|entries| {
            entries
                .iter()
                .filter(|e| e["fieldsV1"].pointer(pointer).is_some())
                .map(|e| e["manager"].as_str().unwrap_or_default().to_string())
                .collect()
        })
        .unwrap_or_default()
}

const REPLICAS: &str = "/f:spec/f:replicas";

#[tokio::test]
async fn an_apply_records_its_fields_and_a_get_shows_them() {
    let cluster = TestCluster::start().await;
    let web = format!("{DEPLOYMENTS}/web");
    let (code, answer) = apply(&cluster, &web, "fieldManager=a", deployment(2)).await;
    assert_eq!(code, 201, "{answer}");
    let (code, got) = cluster.json("GET", &web, Value::Null).await;
    assert_eq!(code, 200);
    let entries = got["metadata"]["managedFields"]
        .as_array()
        .expect("managedFields");
    assert_eq!(entries.len(), 1, "{entries:?}");
    let entry = &entries[0];
    assert_eq!(entry["manager"], "a");
    assert_eq!(entry["operation"], "Apply");
    assert_eq!(entry["apiVersion"], "apps/v1");
    assert_eq!(entry["fieldsType"], "FieldsV1");
    assert!(entry["time"].is_string());
    assert_eq!(
        entry["fieldsV1"],
        json!({"f:spec": {"f:replicas": {}, "f:selector": {}, "f:template": {
            "f:metadata": {"f:labels": {"f:app": {}}},
            "f:spec": {"f:containers": {"k:{\"name\":\"nginx\"}": {".": {}, "f:image": {}, "f:name": {}}}}}}})
    );
}

#[tokio::test]
async fn a_changed_field_of_another_manager_conflicts_until_forced() {
    let cluster = TestCluster::start().await;
    let web = format!("{DEPLOYMENTS}/web");
    let (code, _) = apply(&cluster, &web, "fieldManager=a", deployment(2)).await;
    assert_eq!(code, 201);
    let (code, answer) = apply(&cluster, &web, "fieldManager=b", deployment(3)).await;
    assert_eq!(code, 409, "{answer}");
    assert_eq!(answer["reason"], "Conflict");
    assert_eq!(
        answer["message"],
        "Apply failed with 1 conflict: conflict with \"a\": .spec.replicas"
    );
    assert_eq!(
        answer["details"]["causes"],
        json!([{"reason": "FieldManagerConflict", "message": "conflict with \"a\"", "field": ".spec.replicas"}])
    );
    let (_, unchanged) = cluster.json("GET", &web, Value::Null).await;
    assert_eq!(unchanged["spec"]["replicas"], 2);

    // The same value is shared ownership, no conflict.
    let (code, shared) = apply(&cluster, &web, "fieldManager=b", deployment(2)).await;
    assert_eq!(code, 200, "{shared}");
    assert_eq!(owners(&shared, REPLICAS), vec!["a", "b"]);

    // Forced: b takes the field from a.
    let (code, forced) = apply(&cluster, &web, "fieldManager=b&force=true", deployment(5)).await;
    assert_eq!(code, 200, "{forced}");
    assert_eq!(forced["spec"]["replicas"], 5);
    assert_eq!(owners(&forced, REPLICAS), vec!["b"]);
    // a still owns the rest of what it applied.
    assert_eq!(
        owners(&forced, "/f:spec/f:template/f:spec/f:containers"),
        vec!["a", "b"]
    );
}

#[tokio::test]
async fn several_conflicts_are_listed_per_manager() {
    let cluster = TestCluster::start().await;
    let web = format!("{DEPLOYMENTS}/web");
    let (code, _) = apply(&cluster, &web, "fieldManager=a", deployment(2)).await;
    assert_eq!(code, 201);
    let mut changed = deployment(4);
    changed["spec"]["template"]["spec"]["containers"][0]["image"] = json!("nginx:1.28");
    let (code, answer) = apply(&cluster, &web, "fieldManager=b", changed).await;
    assert_eq!(code, 409, "{answer}");
    assert_eq!(
        answer["message"],
        "Apply failed with 2 conflicts: conflicts with \"a\":\n- .spec.replicas\n- .spec.template.spec.containers[name=\"nginx\"].image"
    );
    assert_eq!(
        answer["details"]["causes"].as_array().map(Vec::len),
        Some(2)
    );
}

#[tokio::test]
async fn fields_an_applier_drops_go_unless_someone_else_owns_them() {
    let cluster = TestCluster::start().await;
    let settings = format!("{CONFIGMAPS}/settings");
    let config = |data: Value| json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "settings"}, "data": data});
    let (code, _) = apply(
        &cluster,
        &settings,
        "fieldManager=a",
        config(json!({"x": "1", "y": "2", "z": "3"})),
    )
    .await;
    assert_eq!(code, 201);
    // b applies z too (same value: shared).
    let (code, _) = apply(
        &cluster,
        &settings,
        "fieldManager=b",
        config(json!({"z": "3"})),
    )
    .await;
    assert_eq!(code, 200);
    let (code, answer) = apply(
        &cluster,
        &settings,
        "fieldManager=a",
        config(json!({"x": "1"})),
    )
    .await;
    assert_eq!(code, 200, "{answer}");
    // y was a's alone: removed. z is still b's: kept, and no longer a's.
    assert_eq!(answer["data"], json!({"x": "1", "z": "3"}));
    assert_eq!(owners(&answer, "/f:data/f:z"), vec!["b"]);
    assert_eq!(owners(&answer, "/f:data/f:x"), vec!["a"]);
}

#[tokio::test]
async fn client_side_apply_then_server_side_apply_of_the_same_file_succeeds() {
    let cluster = TestCluster::start().await;
    let web = format!("{DEPLOYMENTS}/web");
    // What `kubectl apply` (client-side) does first: a create for its manager.
    let (code, created) = cluster
        .json(
            "POST",
            &format!("{DEPLOYMENTS}?fieldManager=kubectl-client-side-apply"),
            deployment(3),
        )
        .await;
    assert_eq!(code, 201, "{created}");
    let csa = &created["metadata"]["managedFields"][0];
    assert_eq!(csa["manager"], "kubectl-client-side-apply");
    assert_eq!(csa["operation"], "Update");
    // Defaults the create filled in are its manager's too, as upstream.
    assert!(
        csa["fieldsV1"].pointer("/f:spec/f:strategy").is_some(),
        "{csa}"
    );

    let (code, answer) = apply(&cluster, &web, "fieldManager=kubectl", deployment(3)).await;
    assert_eq!(code, 200, "{answer}");
    assert_eq!(
        owners(&answer, REPLICAS),
        vec!["kubectl-client-side-apply", "kubectl"]
    );

    let (code, answer) = apply(&cluster, &web, "fieldManager=kubectl", deployment(4)).await;
    assert_eq!(code, 409, "{answer}");
    assert_eq!(
        answer["message"],
        "Apply failed with 1 conflict: conflict with \"kubectl-client-side-apply\" using apps/v1: .spec.replicas"
    );
}

/// A Deployment as client-side `kubectl apply` creates it: with its manifest in the
/// last-applied annotation.
fn client_side_applied(replicas: i64) -> Value {
    let mut object = deployment(replicas);
    object["metadata"]["annotations"] = json!({
        "kubectl.kubernetes.io/last-applied-configuration": deployment(replicas).to_string()
    });
    object
}

const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

#[tokio::test]
async fn kubectl_moving_from_client_side_apply_takes_the_fields_it_last_applied() {
    let cluster = TestCluster::start().await;
    let web = format!("{DEPLOYMENTS}/web");
    let (code, created) = cluster
        .json(
            "POST",
            &format!("{DEPLOYMENTS}?fieldManager=kubectl-client-side-apply"),
            client_side_applied(3),
        )
        .await;
    assert_eq!(code, 201, "{created}");

    // Another applier gets no such ease.
    let (code, answer) = apply(&cluster, &web, "fieldManager=helm", deployment(4)).await;
    assert_eq!(code, 409, "{answer}");

    // kubectl's own field, still as it last applied it, changes hands without a conflict; the
    // annotation follows what was applied.
    let (code, answer) = apply(&cluster, &web, "fieldManager=kubectl", deployment(4)).await;
    assert_eq!(code, 200, "{answer}");
    assert_eq!(answer["spec"]["replicas"], 4);
    assert_eq!(owners(&answer, REPLICAS), vec!["kubectl"]);
    let annotation: Value = serde_json::from_str(
        answer["metadata"]["annotations"][LAST_APPLIED]
            .as_str()
            .expect("the annotation kept"),
    )
    .expect("JSON");
    assert_eq!(annotation, deployment(4));
}

#[tokio::test]
async fn a_field_someone_else_changed_since_the_client_side_apply_still_conflicts() {
    let cluster = TestCluster::start().await;
    let web = format!("{DEPLOYMENTS}/web");
    let (code, _) = cluster
        .json(
            "POST",
            &format!("{DEPLOYMENTS}?fieldManager=kubectl-client-side-apply"),
            client_side_applied(3),
        )
        .await;
    assert_eq!(code, 201);
    let (code, answer) = cluster
        .send(
            "PATCH",
            &format!("{web}?fieldManager=autoscaler"),
            "application/merge-patch+json",
            json!({"spec": {"replicas": 5}}),
        )
        .await;
    assert_eq!(code, 200, "{answer}");

    let (code, answer) = apply(&cluster, &web, "fieldManager=kubectl", deployment(6)).await;
    assert_eq!(code, 409, "{answer}");
    assert_eq!(
        answer["message"],
        "Apply failed with 1 conflict: conflict with \"autoscaler\" using apps/v1: .spec.replicas"
    );
}

#[tokio::test]
async fn updates_take_fields_and_never_conflict() {
    let cluster = TestCluster::start().await;
    let web = format!("{DEPLOYMENTS}/web");
    let (code, _) = apply(&cluster, &web, "fieldManager=a", deployment(2)).await;
    assert_eq!(code, 201);
    let (code, scaled) = cluster
        .send(
            "PATCH",
            &format!("{web}?fieldManager=kubectl-scale"),
            "application/merge-patch+json",
            json!({"spec": {"replicas": 6}}),
        )
        .await;
    assert_eq!(code, 200, "{scaled}");
    assert_eq!(owners(&scaled, REPLICAS), vec!["kubectl-scale"]);
    let entry = scaled["metadata"]["managedFields"]
        .as_array()
        .and_then(|e| e.iter().find(|e| e["manager"] == "kubectl-scale"))
        .expect("an entry for the patch");
    assert_eq!(entry["operation"], "Update");
    assert_eq!(entry["fieldsV1"], json!({"f:spec": {"f:replicas": {}}}));
    // Through /scale the entry names its subresource.
    let (code, answer) = cluster
        .send(
            "PATCH",
            &format!("{web}/scale?fieldManager=kubectl"),
            "application/merge-patch+json",
            json!({"spec": {"replicas": 7}}),
        )
        .await;
    assert_eq!(code, 200, "{answer}");
    let (_, got) = cluster.json("GET", &web, Value::Null).await;
    let scale = got["metadata"]["managedFields"]
        .as_array()
        .and_then(|e| e.iter().find(|e| e["manager"] == "kubectl"))
        .expect("an entry for /scale");
    assert_eq!(scale["subresource"], "scale");
    assert_eq!(owners(&got, REPLICAS), vec!["kubectl"]);
    // a applying its old count again now conflicts with the updater.
    let (code, answer) = apply(&cluster, &web, "fieldManager=a", deployment(2)).await;
    assert_eq!(code, 409, "{answer}");
    assert_eq!(
        answer["message"],
        "Apply failed with 1 conflict: conflict with \"kubectl\" with subresource \"scale\" using apps/v1: .spec.replicas"
    );
}

#[tokio::test]
async fn managed_fields_stay_bounded_and_a_repeated_apply_writes_nothing() {
    let cluster = TestCluster::start().await;
    let web = format!("{DEPLOYMENTS}/web");
    let (code, first) = apply(&cluster, &web, "fieldManager=a", deployment(2)).await;
    assert_eq!(code, 201);
    let (code, again) = apply(&cluster, &web, "fieldManager=a", deployment(2)).await;
    assert_eq!(code, 200);
    assert_eq!(
        again["metadata"]["resourceVersion"], first["metadata"]["resourceVersion"],
        "an apply that changes nothing is not a write"
    );
    for i in 0..30 {
        let (code, answer) = cluster
            .send(
                "PATCH",
                &format!("{web}?fieldManager=m{i}"),
                "application/merge-patch+json",
                json!({"metadata": {"annotations": {format!("n{i}"): "v"}}}),
            )
            .await;
        assert_eq!(code, 200, "{answer}");
    }
    let (_, got) = cluster.json("GET", &web, Value::Null).await;
    let entries = got["metadata"]["managedFields"]
        .as_array()
        .expect("entries");
    let updates = entries
        .iter()
        .filter(|e| e["operation"] == "Update")
        .count();
    assert!(updates <= 10, "{updates} Update entries");
    assert!(entries.iter().any(|e| e["manager"] == "ancient-changes"));
    assert_eq!(owners(&got, REPLICAS), vec!["a"]);
}

#[tokio::test]
async fn a_status_write_is_recorded_against_the_status() {
    let cluster = TestCluster::start().await;
    let web = format!("{DEPLOYMENTS}/web");
    let (code, _) = apply(&cluster, &web, "fieldManager=a", deployment(2)).await;
    assert_eq!(code, 201);
    let (code, answer) = cluster
        .send(
            "PATCH",
            &format!("{web}/status?fieldManager=controller"),
            "application/merge-patch+json",
            json!({"status": {"observedGeneration": 1}}),
        )
        .await;
    assert_eq!(code, 200, "{answer}");
    let (_, got) = cluster.json("GET", &web, Value::Null).await;
    let entry = got["metadata"]["managedFields"]
        .as_array()
        .and_then(|e| e.iter().find(|e| e["manager"] == "controller"))
        .expect("an entry for the status write");
    assert_eq!(entry["subresource"], "status");
    assert_eq!(
        entry["fieldsV1"],
        json!({"f:status": {"f:observedGeneration": {}}})
    );
}

/// kubectl's migration after a server-side apply replaces managedFields with a JSON patch; the
/// entries it sends are kept as they are.
#[tokio::test]
async fn an_update_may_set_managed_fields_itself() {
    let cluster = TestCluster::start().await;
    let web = format!("{DEPLOYMENTS}/web");
    let (code, created) = apply(&cluster, &web, "fieldManager=a", deployment(2)).await;
    assert_eq!(code, 201);
    let mut entries = created["metadata"]["managedFields"].clone();
    entries[0]["manager"] = json!("kubectl");
    let patch = json!([
        {"op": "test", "path": "/metadata/resourceVersion", "value": created["metadata"]["resourceVersion"]},
        {"op": "replace", "path": "/metadata/managedFields", "value": entries}
    ]);
    let (code, answer) = cluster
        .send(
            "PATCH",
            &format!("{web}?fieldManager=kubectl"),
            "application/json-patch+json",
            patch,
        )
        .await;
    assert_eq!(code, 200, "{answer}");
    assert_eq!(owners(&answer, REPLICAS), vec!["kubectl"]);
}

#[tokio::test]
async fn force_is_refused_on_a_patch_that_is_not_an_apply() {
    let cluster = TestCluster::start().await;
    let (code, _) = cluster.json("POST", DEPLOYMENTS, deployment(1)).await;
    assert_eq!(code, 201);
    let (code, answer) = cluster
        .send(
            "PATCH",
            &format!("{DEPLOYMENTS}/web?force=true"),
            "application/merge-patch+json",
            json!({"spec": {"replicas": 2}}),
        )
        .await;
    assert_eq!(code, 422, "{answer}");
    assert_eq!(
        answer["message"],
        "PatchOptions.meta.k8s.io \"\" is invalid: force: Forbidden: may not be specified for non-apply patch"
    );
    let (_, unchanged) = cluster
        .json("GET", &format!("{DEPLOYMENTS}/web"), Value::Null)
        .await;
    assert_eq!(unchanged["spec"]["replicas"], 1);
}
