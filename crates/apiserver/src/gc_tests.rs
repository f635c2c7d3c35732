//! The garbage collector and namespace lifecycle on an in-process cluster: owner references
//! with each propagation policy, dependents with two owners, namespaces that empty and go, and
//! finalizers that hold an object until they are removed.

use std::time::Duration;

use serde_json::{Value, json};

use crate::test_cluster::TestCluster;

/// How long a condition may take before a test gives up (a hang guard, not a speed check).
const PATIENCE: Duration = Duration::from_secs(20);

/// GETs `path` until `done` holds for the status code and the answer; the last answer.
pub(crate) async fn eventually(
    cluster: &TestCluster,
    path: &str,
    done: impl Fn(u16, &Value) -> bool,
) -> (u16, Value) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let (code, answer) = cluster.json("GET", path, Value::Null).await;
        if done(code, &answer) {
            return (code, answer);
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{path} never got there: {code} {answer}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

pub(crate) async fn gone(cluster: &TestCluster, path: &str) {
    eventually(cluster, path, |code, _| code == 404).await;
}

/// Waits until the object at `path` has a deletionTimestamp; the object then.
async fn being_deleted(cluster: &TestCluster, path: &str) -> Value {
    let (_, object) = eventually(cluster, path, |_, object| {
        object["metadata"]["deletionTimestamp"].is_string()
    })
    .await;
    object
}

const CONFIGMAPS: &str = "/api/v1/namespaces/default/configmaps";

fn configmap(name: &str) -> String {
    format!("{CONFIGMAPS}/{name}")
}

/// Creates ConfigMap `name` with these owners (uid, blockOwnerDeletion) and finalizers; its uid.
async fn create(
    cluster: &TestCluster,
    name: &str,
    owners: &[(&str, bool)],
    finalizers: &[&str],
) -> String {
    let references: Vec<Value> = owners
        .iter()
        .map(|(uid, blocks)| {
            json!({"apiVersion": "v1", "kind": "ConfigMap", "name": format!("owner-{uid}"),
                   "uid": uid, "blockOwnerDeletion": blocks})
        })
        .collect();
    let object = json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": name, "ownerReferences": references, "finalizers": finalizers}});
    let (code, answer) = cluster.json("POST", CONFIGMAPS, object).await;
    assert_eq!(code, 201, "{answer}");
    answer["metadata"]["uid"]
        .as_str()
        .expect("a created object has a uid")
        .to_string()
}

async fn delete(cluster: &TestCluster, path: &str, propagation: &str) -> Value {
    let options =
        json!({"kind": "DeleteOptions", "apiVersion": "v1", "propagationPolicy": propagation});
    let (code, answer) = cluster.json("DELETE", path, options).await;
    assert!(matches!(code, 200 | 202), "{path}: {code} {answer}");
    answer
}

async fn drop_finalizers(cluster: &TestCluster, path: &str) {
    let (code, answer) = cluster
        .send(
            "PATCH",
            path,
            "application/merge-patch+json",
            json!({"metadata": {"finalizers": null}}),
        )
        .await;
    assert_eq!(code, 200, "{answer}");
}

fn owner_uids(object: &Value) -> Vec<&str> {
    object["metadata"]["ownerReferences"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| r["uid"].as_str())
        .collect()
}

#[tokio::test]
async fn a_background_delete_removes_the_dependents_after_the_owner() {
    let cluster = TestCluster::start().await;
    let owner = create(&cluster, "owner", &[], &[]).await;
    create(&cluster, "child", &[(&owner, false)], &[]).await;
    create(&cluster, "grandchild", &[], &[]).await;
    delete(&cluster, &configmap("owner"), "Background").await;
    gone(&cluster, &configmap("owner")).await;
    gone(&cluster, &configmap("child")).await;
    let (code, _) = cluster
        .json("GET", &configmap("grandchild"), Value::Null)
        .await;
    assert_eq!(code, 200, "an object without owners is no one's dependent");
}

#[tokio::test]
async fn an_object_whose_owner_never_existed_is_collected() {
    let cluster = TestCluster::start().await;
    create(&cluster, "child", &[("no-such-uid", false)], &[]).await;
    gone(&cluster, &configmap("child")).await;
}

#[tokio::test]
async fn a_foreground_delete_keeps_the_owner_until_its_blocking_dependents_are_gone() {
    let cluster = TestCluster::start().await;
    let owner = create(&cluster, "owner", &[], &[]).await;
    // The dependent's own finalizer holds it, and so the owner, until the test lets go.
    create(&cluster, "child", &[(&owner, true)], &["example.com/hold"]).await;
    delete(&cluster, &configmap("owner"), "Foreground").await;
    let child = being_deleted(&cluster, &configmap("child")).await;
    // Deleted in the foreground in turn: its own foregroundDeletion may still be there.
    let finalizers = child["metadata"]["finalizers"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert!(finalizers.contains(&json!("example.com/hold")), "{child}");
    let (code, held) = cluster.json("GET", &configmap("owner"), Value::Null).await;
    assert_eq!(code, 200, "the owner waits for its dependent: {held}");
    assert_eq!(
        held["metadata"]["finalizers"],
        json!(["foregroundDeletion"])
    );
    assert!(held["metadata"]["deletionTimestamp"].is_string(), "{held}");
    drop_finalizers(&cluster, &configmap("child")).await;
    gone(&cluster, &configmap("child")).await;
    gone(&cluster, &configmap("owner")).await;
}

#[tokio::test]
async fn a_foreground_owner_does_not_wait_for_dependents_that_do_not_block_it() {
    let cluster = TestCluster::start().await;
    let owner = create(&cluster, "owner", &[], &[]).await;
    create(&cluster, "child", &[(&owner, false)], &["example.com/hold"]).await;
    delete(&cluster, &configmap("owner"), "Foreground").await;
    gone(&cluster, &configmap("owner")).await;
    let child = being_deleted(&cluster, &configmap("child")).await;
    assert_eq!(child["metadata"]["finalizers"], json!(["example.com/hold"]));
    drop_finalizers(&cluster, &configmap("child")).await;
    gone(&cluster, &configmap("child")).await;
}

#[tokio::test]
async fn an_orphan_delete_removes_the_owner_reference_and_keeps_the_dependent() {
    let cluster = TestCluster::start().await;
    let owner = create(&cluster, "owner", &[], &[]).await;
    create(&cluster, "child", &[(&owner, true)], &[]).await;
    delete(&cluster, &configmap("owner"), "Orphan").await;
    gone(&cluster, &configmap("owner")).await;
    let (code, child) = cluster.json("GET", &configmap("child"), Value::Null).await;
    assert_eq!(code, 200, "{child}");
    assert_eq!(owner_uids(&child), Vec::<&str>::new(), "{child}");
    assert!(child["metadata"]["deletionTimestamp"].is_null(), "{child}");
}

#[tokio::test]
async fn a_dependent_with_two_owners_survives_one_and_goes_with_the_other() {
    let cluster = TestCluster::start().await;
    let first = create(&cluster, "first", &[], &[]).await;
    let second = create(&cluster, "second", &[], &[]).await;
    create(&cluster, "child", &[(&first, false), (&second, false)], &[]).await;
    delete(&cluster, &configmap("first"), "Background").await;
    let (_, child) = eventually(&cluster, &configmap("child"), |code, child| {
        code == 200 && owner_uids(child) == [second.as_str()]
    })
    .await;
    assert!(child["metadata"]["deletionTimestamp"].is_null(), "{child}");
    delete(&cluster, &configmap("second"), "Background").await;
    gone(&cluster, &configmap("child")).await;
}

#[tokio::test]
async fn a_deleted_namespace_removes_its_objects_then_itself() {
    let cluster = TestCluster::start().await;
    let (code, answer) = cluster
        .json(
            "POST",
            "/api/v1/namespaces",
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "doomed"}}),
        )
        .await;
    assert_eq!(code, 201, "{answer}");
    let held = "/api/v1/namespaces/doomed/configmaps/held";
    for (name, finalizers) in [("plain", json!([])), ("held", json!(["example.com/hold"]))] {
        let object = json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": name, "finalizers": finalizers}});
        let (code, answer) = cluster
            .json("POST", "/api/v1/namespaces/doomed/configmaps", object)
            .await;
        assert_eq!(code, 201, "{answer}");
    }
    let (code, answer) = cluster
        .json("DELETE", "/api/v1/namespaces/doomed", Value::Null)
        .await;
    assert_eq!(code, 200, "{answer}");
    assert_eq!(answer["status"]["phase"], "Terminating", "{answer}");
    gone(&cluster, "/api/v1/namespaces/doomed/configmaps/plain").await;
    // A member held by a finalizer holds the namespace too.
    being_deleted(&cluster, held).await;
    let (code, namespace) = cluster
        .json("GET", "/api/v1/namespaces/doomed", Value::Null)
        .await;
    assert_eq!(code, 200, "{namespace}");
    let (code, refused) = cluster
        .json(
            "POST",
            "/api/v1/namespaces/doomed/configmaps",
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "late"}}),
        )
        .await;
    assert_eq!(
        code, 403,
        "nothing new in a terminating namespace: {refused}"
    );
    drop_finalizers(&cluster, held).await;
    gone(&cluster, held).await;
    gone(&cluster, "/api/v1/namespaces/doomed").await;
}

#[tokio::test]
async fn a_finalizer_holds_a_deleted_object_until_it_is_removed() {
    let cluster = TestCluster::start().await;
    create(&cluster, "held", &[], &["example.com/hold"]).await;
    let answer = delete(&cluster, &configmap("held"), "Background").await;
    assert!(
        answer["metadata"]["deletionTimestamp"].is_string(),
        "{answer}"
    );
    let (code, held) = cluster.json("GET", &configmap("held"), Value::Null).await;
    assert_eq!(code, 200, "{held}");
    assert_eq!(held["metadata"]["finalizers"], json!(["example.com/hold"]));
    drop_finalizers(&cluster, &configmap("held")).await;
    gone(&cluster, &configmap("held")).await;
}
