//! The eviction subresource against PodDisruptionBudgets on an in-process cluster (no
//! disruption controller here: each test writes the budget's status itself, as the controller
//! would).

use serde_json::{Value, json};

use crate::test_cluster::TestCluster;

const PODS: &str = "/api/v1/namespaces/default/pods";
const BUDGETS: &str = "/apis/policy/v1/namespaces/default/poddisruptionbudgets";

async fn pod(cluster: &TestCluster, name: &str, phase: &str, ready: bool) {
    let (code, created) = cluster
        .json(
            "POST",
            PODS,
            json!({"apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": name, "labels": {"app": "web"}},
                "spec": {"containers": [{"name": "c", "image": "busybox"}]}}),
        )
        .await;
    assert_eq!(code, 201, "{created}");
    let mut with_status = created;
    with_status["status"] = json!({"phase": phase, "conditions": [
        {"type": "Ready", "status": if ready {"True"} else {"False"}}]});
    let (code, answer) = cluster
        .json("PUT", &format!("{PODS}/{name}/status"), with_status)
        .await;
    assert_eq!(code, 200, "{answer}");
}

/// A budget selecting `app=web` whose status the controller would have written.
async fn budget(cluster: &TestCluster, name: &str, status: Value, spec: Value) {
    let mut spec = spec;
    spec["selector"] = json!({"matchLabels": {"app": "web"}});
    let (code, created) = cluster
        .json(
            "POST",
            BUDGETS,
            json!({"apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
                "metadata": {"name": name}, "spec": spec}),
        )
        .await;
    assert_eq!(code, 201, "{created}");
    let mut with_status = created;
    let mut status = status;
    status["observedGeneration"] = json!(1);
    with_status["status"] = status;
    let (code, answer) = cluster
        .json("PUT", &format!("{BUDGETS}/{name}/status"), with_status)
        .await;
    assert_eq!(code, 200, "{answer}");
}

async fn evict(cluster: &TestCluster, name: &str, options: Value) -> (u16, Value) {
    cluster
        .json(
            "POST",
            &format!("{PODS}/{name}/eviction"),
            json!({"apiVersion": "policy/v1", "kind": "Eviction",
                "metadata": {"name": name}, "deleteOptions": options}),
        )
        .await
}

async fn exists(cluster: &TestCluster, name: &str) -> bool {
    cluster
        .json("GET", &format!("{PODS}/{name}"), Value::Null)
        .await
        .0
        == 200
}

fn healthy(allowed: i64) -> Value {
    json!({"disruptionsAllowed": allowed, "currentHealthy": 3, "desiredHealthy": 2,
        "expectedPods": 3})
}

#[tokio::test]
async fn an_eviction_spends_the_budget_then_is_refused_with_upstreams_429() {
    let cluster = TestCluster::start().await;
    for name in ["web-0", "web-1", "web-2"] {
        pod(&cluster, name, "Running", true).await;
    }
    budget(&cluster, "web", healthy(1), json!({"minAvailable": 2})).await;

    let (code, answer) = evict(&cluster, "web-2", Value::Null).await;
    assert_eq!(code, 201, "{answer}");
    assert_eq!(answer["status"], "Success");
    assert!(!exists(&cluster, "web-2").await);
    let (_, spent) = cluster
        .json("GET", &format!("{BUDGETS}/web"), Value::Null)
        .await;
    assert_eq!(spent["status"]["disruptionsAllowed"], 0, "{spent}");
    assert!(
        spent["status"]["disruptedPods"]["web-2"].is_string(),
        "{spent}"
    );
    assert_eq!(
        spent["status"]["conditions"][0]["reason"], "InsufficientPods",
        "{spent}"
    );

    let (code, refused) = evict(&cluster, "web-1", Value::Null).await;
    assert_eq!(code, 429, "{refused}");
    assert_eq!(refused["reason"], "TooManyRequests");
    assert_eq!(
        refused["message"],
        "Cannot evict pod as it would violate the pod's disruption budget."
    );
    assert_eq!(
        refused["details"]["causes"][0]["reason"],
        "DisruptionBudget"
    );
    assert_eq!(
        refused["details"]["causes"][0]["message"],
        "The disruption budget web needs 2 healthy pods and has 3 currently"
    );
    assert!(refused["details"]["causes"][0].get("field").is_none());
    assert!(exists(&cluster, "web-1").await);
}

#[tokio::test]
async fn a_pod_with_two_budgets_is_a_500() {
    let cluster = TestCluster::start().await;
    pod(&cluster, "web-0", "Running", true).await;
    budget(&cluster, "a", healthy(1), json!({"minAvailable": 1})).await;
    budget(&cluster, "b", healthy(1), json!({"minAvailable": 1})).await;
    let (code, answer) = evict(&cluster, "web-0", Value::Null).await;
    assert_eq!(code, 500, "{answer}");
    assert_eq!(
        answer["message"],
        "This pod has more than one PodDisruptionBudget, which the eviction subresource does not support."
    );
    assert!(exists(&cluster, "web-0").await);
}

#[tokio::test]
async fn pending_and_terminal_pods_go_without_asking_the_budget() {
    let cluster = TestCluster::start().await;
    pod(&cluster, "pending", "Pending", false).await;
    pod(&cluster, "done", "Succeeded", false).await;
    budget(&cluster, "web", healthy(0), json!({"minAvailable": 2})).await;
    for name in ["pending", "done"] {
        let (code, answer) = evict(&cluster, name, Value::Null).await;
        assert_eq!(code, 201, "{name}: {answer}");
        assert!(!exists(&cluster, name).await);
    }
}

#[tokio::test]
async fn an_unready_pod_goes_without_spending_a_healthy_budget_but_not_an_unhealthy_one() {
    let cluster = TestCluster::start().await;
    pod(&cluster, "sick", "Running", false).await;
    budget(&cluster, "web", healthy(0), json!({"minAvailable": 2})).await;
    let (code, answer) = evict(&cluster, "sick", Value::Null).await;
    assert_eq!(code, 201, "{answer}");
    assert!(!exists(&cluster, "sick").await);

    // The budget is not met: an unready pod is guarded like any other...
    let cluster = TestCluster::start().await;
    pod(&cluster, "sick", "Running", false).await;
    budget(
        &cluster,
        "web",
        json!({"disruptionsAllowed": 0, "currentHealthy": 1, "desiredHealthy": 2, "expectedPods": 3}),
        json!({"minAvailable": 2}),
    )
    .await;
    let (code, _) = evict(&cluster, "sick", Value::Null).await;
    assert_eq!(code, 429);
    // ...unless the budget says AlwaysAllow.
    let cluster = TestCluster::start().await;
    pod(&cluster, "sick", "Running", false).await;
    budget(
        &cluster,
        "web",
        json!({"disruptionsAllowed": 0, "currentHealthy": 1, "desiredHealthy": 2, "expectedPods": 3}),
        json!({"minAvailable": 2, "unhealthyPodEvictionPolicy": "AlwaysAllow"}),
    )
    .await;
    let (code, answer) = evict(&cluster, "sick", Value::Null).await;
    assert_eq!(code, 201, "{answer}");
}

#[tokio::test]
async fn a_dry_run_changes_neither_the_pod_nor_the_budget() {
    let cluster = TestCluster::start().await;
    pod(&cluster, "web-0", "Running", true).await;
    budget(&cluster, "web", healthy(1), json!({"minAvailable": 2})).await;
    let (code, answer) = evict(&cluster, "web-0", json!({"dryRun": ["All"]})).await;
    assert_eq!(code, 201, "{answer}");
    assert!(exists(&cluster, "web-0").await);
    let (_, unchanged) = cluster
        .json("GET", &format!("{BUDGETS}/web"), Value::Null)
        .await;
    assert_eq!(unchanged["status"]["disruptionsAllowed"], 1);
    let (_, pod) = cluster
        .json("GET", &format!("{PODS}/web-0"), Value::Null)
        .await;
    assert!(
        !pod["status"]["conditions"]
            .to_string()
            .contains("DisruptionTarget")
    );
}

#[tokio::test]
async fn a_stale_precondition_is_a_conflict_and_a_budget_not_yet_processed_a_429() {
    let cluster = TestCluster::start().await;
    pod(&cluster, "web-0", "Running", true).await;
    let (code, answer) = evict(
        &cluster,
        "web-0",
        json!({"preconditions": {"resourceVersion": "1"}}),
    )
    .await;
    assert_eq!(code, 409, "{answer}");
    assert!(exists(&cluster, "web-0").await);

    budget(&cluster, "web", healthy(1), json!({"minAvailable": 2})).await;
    // A spec change the controller has not seen yet.
    let (code, _) = cluster
        .send(
            "PATCH",
            &format!("{BUDGETS}/web"),
            "application/merge-patch+json",
            json!({"spec": {"minAvailable": 1}}),
        )
        .await;
    assert_eq!(code, 200);
    let (code, refused) = evict(&cluster, "web-0", Value::Null).await;
    assert_eq!(code, 429, "{refused}");
    assert_eq!(
        refused["details"]["causes"][0]["message"],
        "The disruption budget web is still being processed by the server."
    );
}

#[tokio::test]
async fn an_evicted_pod_says_why_it_went() {
    let cluster = TestCluster::start().await;
    pod(&cluster, "web-0", "Running", true).await;
    // A pod on a node is deleted gracefully, so its last status can be read.
    let (code, _) = cluster
        .send(
            "PATCH",
            &format!("{PODS}/web-0"),
            "application/merge-patch+json",
            json!({"metadata": {"finalizers": ["example.com/hold"]}}),
        )
        .await;
    assert_eq!(code, 200);
    let (code, answer) = evict(&cluster, "web-0", Value::Null).await;
    assert_eq!(code, 201, "{answer}");
    let (_, pod) = cluster
        .json("GET", &format!("{PODS}/web-0"), Value::Null)
        .await;
    let condition = pod["status"]["conditions"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["type"] == "DisruptionTarget"))
        .cloned()
        .unwrap_or_default();
    assert_eq!(condition["reason"], "EvictionByEvictionAPI", "{pod}");
    assert_eq!(condition["message"], "Eviction API: evicting");
    assert!(pod["metadata"]["deletionTimestamp"].is_string());
}
