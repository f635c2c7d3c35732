//! The registry calling each kind's strategy, in the in-process tier: generation tracking,
//! create and update hooks, and what a created object's metadata is under the test cluster's
//! fixed clock and sequential uids.

use serde_json::{Value, json};

use crate::test_cluster::{START, TestCluster};

const CONFIGMAPS: &str = "/api/v1/namespaces/default/configmaps";
const STATEFULSETS: &str = "/apis/apps/v1/namespaces/default/statefulsets";
const BUDGETS: &str = "/apis/policy/v1/namespaces/default/poddisruptionbudgets";
const PODS: &str = "/api/v1/namespaces/default/pods";

fn web() -> Value {
    json!({"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "web"},
        "spec": {"serviceName": "nginx", "replicas": 1,
            "selector": {"matchLabels": {"app": "nginx"}},
            "template": {"metadata": {"labels": {"app": "nginx"}},
                "spec": {"containers": [{"name": "nginx", "image": "nginx-slim:0.8"}]}}}})
}

async fn merge_patch(cluster: &TestCluster, path: &str, patch: Value) -> (u16, Value) {
    cluster
        .send("PATCH", path, "application/merge-patch+json", patch)
        .await
}

#[tokio::test]
async fn a_kind_without_spec_never_has_a_generation() {
    let cluster = TestCluster::start().await;
    let (code, created) = cluster
        .json(
            "POST",
            CONFIGMAPS,
            json!({"metadata": {"name": "settings", "generation": 7}, "data": {"a": "1"}}),
        )
        .await;
    assert_eq!(code, 201, "{created}");
    assert!(created["metadata"].get("generation").is_none(), "{created}");
    let (code, changed) = merge_patch(
        &cluster,
        &format!("{CONFIGMAPS}/settings"),
        json!({"data": {"a": "2"}}),
    )
    .await;
    assert_eq!(code, 200, "{changed}");
    assert_eq!(changed["data"]["a"], "2");
    assert!(changed["metadata"].get("generation").is_none(), "{changed}");

    // A lease has a spec but no generation upstream: only an allow-list says who counts.
    let leases = "/apis/coordination.k8s.io/v1/namespaces/default/leases";
    let (code, lease) = cluster
        .json(
            "POST",
            leases,
            json!({"metadata": {"name": "l"}, "spec": {"holderIdentity": "a"}}),
        )
        .await;
    assert_eq!(code, 201, "{lease}");
    let (_, lease) = merge_patch(
        &cluster,
        &format!("{leases}/l"),
        json!({"spec": {"holderIdentity": "b"}}),
    )
    .await;
    assert_eq!(lease["spec"]["holderIdentity"], "b");
    assert!(lease["metadata"].get("generation").is_none(), "{lease}");

    let (_, class) = cluster
        .json(
            "GET",
            "/apis/storage.k8s.io/v1/storageclasses/local-path",
            Value::Null,
        )
        .await;
    assert_eq!(class["metadata"]["name"], "local-path");
    assert!(class["metadata"].get("generation").is_none(), "{class}");
}

#[tokio::test]
async fn spec_changes_bump_the_generation_and_status_writes_never_do() {
    let cluster = TestCluster::start().await;
    let (code, created) = cluster.json("POST", STATEFULSETS, web()).await;
    assert_eq!(code, 201, "{created}");
    assert_eq!(created["metadata"]["generation"], 1);

    let web_path = format!("{STATEFULSETS}/web");
    let (code, status) = merge_patch(
        &cluster,
        &format!("{web_path}/status"),
        json!({"status": {"replicas": 1, "observedGeneration": 1}}),
    )
    .await;
    assert_eq!(code, 200, "{status}");
    assert_eq!(status["status"]["replicas"], 1);
    assert_eq!(status["metadata"]["generation"], 1, "status writes keep it");

    let (_, labelled) = merge_patch(
        &cluster,
        &web_path,
        json!({"metadata": {"labels": {"a": "b"}}}),
    )
    .await;
    assert_eq!(labelled["metadata"]["generation"], 1, "metadata keeps it");

    let (_, scaled) = merge_patch(&cluster, &web_path, json!({"spec": {"replicas": 3}})).await;
    assert_eq!(scaled["metadata"]["generation"], 2, "{scaled}");

    // The same spec again, or one that differs only by defaults, is no change.
    let (_, again) = merge_patch(&cluster, &web_path, json!({"spec": {"replicas": 3}})).await;
    assert_eq!(again["metadata"]["generation"], 2);
    let (_, defaulted) = merge_patch(
        &cluster,
        &web_path,
        json!({"spec": {"podManagementPolicy": "OrderedReady"}}),
    )
    .await;
    assert_eq!(defaulted["metadata"]["generation"], 2);
}

#[tokio::test]
async fn a_disruption_budget_starts_with_upstreams_zero_status_and_counts_spec_changes() {
    let cluster = TestCluster::start().await;
    let budget = json!({"apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
        "metadata": {"name": "web"},
        "spec": {"minAvailable": 2, "selector": {"matchLabels": {"app": "nginx"}}},
        "status": {"disruptionsAllowed": 5}});
    let (code, created) = cluster.json("POST", BUDGETS, budget).await;
    assert_eq!(code, 201, "{created}");
    assert_eq!(created["metadata"]["generation"], 1);
    assert_eq!(
        created["status"],
        json!({"currentHealthy": 0, "desiredHealthy": 0, "disruptionsAllowed": 0, "expectedPods": 0}),
        "a client's status is dropped"
    );
    let path = format!("{BUDGETS}/web");
    let (_, status) = merge_patch(
        &cluster,
        &format!("{path}/status"),
        json!({"status": {"disruptionsAllowed": 1}}),
    )
    .await;
    assert_eq!(status["status"]["disruptionsAllowed"], 1);
    assert_eq!(status["metadata"]["generation"], 1);
    let (_, changed) = merge_patch(&cluster, &path, json!({"spec": {"minAvailable": "50%"}})).await;
    assert_eq!(changed["metadata"]["generation"], 2, "{changed}");
    assert_eq!(
        changed["status"]["disruptionsAllowed"], 1,
        "a spec write keeps status"
    );

    // The table's AGE counts on the cluster's clock, so the whole row is a snapshot.
    cluster.advance(90);
    let (code, table) = cluster.table(BUDGETS).await;
    assert_eq!(code, 200, "{table}");
    let columns: Vec<&str> = table["columnDefinitions"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| c["name"].as_str())
        .collect();
    assert_eq!(
        columns,
        [
            "Name",
            "Min Available",
            "Max Unavailable",
            "Allowed Disruptions",
            "Age"
        ]
    );
    assert_eq!(
        table["rows"][0]["cells"],
        json!(["web", "50%", "N/A", 1, "90s"])
    );

    let (code, refused) =
        merge_patch(&cluster, &path, json!({"spec": {"maxUnavailable": 1}})).await;
    assert_eq!(code, 422, "{refused}");
    assert_eq!(
        refused["details"]["causes"][0]["field"], "spec",
        "{refused}"
    );
}

#[tokio::test]
async fn create_and_update_hooks_are_the_kinds_own() {
    let cluster = TestCluster::start().await;
    // Pods: status is the system's (phase and QoS class), whatever the client sent.
    let pod = json!({"metadata": {"name": "p"}, "status": {"phase": "Running"},
        "spec": {"containers": [{"name": "c", "image": "busybox",
            "resources": {"limits": {"cpu": "1", "memory": "1Gi"}}}]}});
    let (code, created) = cluster.json("POST", PODS, pod).await;
    assert_eq!(code, 201, "{created}");
    assert_eq!(
        created["status"],
        json!({"phase": "Pending", "qosClass": "Guaranteed"})
    );
    assert_eq!(
        created["spec"]["serviceAccountName"], "default",
        "pod defaults"
    );

    // Namespaces: Active at first, and a plain update cannot touch the spec's finalizers.
    let (code, namespace) = cluster
        .json(
            "POST",
            "/api/v1/namespaces",
            json!({"metadata": {"name": "team"}}),
        )
        .await;
    assert_eq!(code, 201, "{namespace}");
    assert_eq!(namespace["status"]["phase"], "Active");
    assert_eq!(namespace["spec"]["finalizers"], json!(["kubernetes"]));
    let (code, updated) = merge_patch(
        &cluster,
        "/api/v1/namespaces/team",
        json!({"metadata": {"labels": {"x": "y"}}, "spec": {"finalizers": []}}),
    )
    .await;
    assert_eq!(code, 200, "{updated}");
    assert_eq!(updated["metadata"]["labels"]["x"], "y");
    assert_eq!(updated["spec"]["finalizers"], json!(["kubernetes"]));

    // Services: the ClusterIP comes from admission, and stays.
    let services = "/api/v1/namespaces/default/services";
    let (code, service) = cluster
        .json(
            "POST",
            services,
            json!({"metadata": {"name": "s"}, "spec": {"ports": [{"port": 80}]}}),
        )
        .await;
    assert_eq!(code, 201, "{service}");
    let ip = service["spec"]["clusterIP"].as_str().unwrap_or_default();
    assert!(ip.starts_with("10."), "{service}");
    let (code, refused) = merge_patch(
        &cluster,
        &format!("{services}/s"),
        json!({"spec": {"clusterIP": "10.96.0.99"}}),
    )
    .await;
    assert_eq!(code, 422, "{refused}");
}

#[tokio::test]
async fn a_created_objects_metadata_is_a_snapshot_under_the_fixed_clock() {
    let cluster = TestCluster::start().await;
    let (code, created) = cluster
        .json(
            "POST",
            CONFIGMAPS,
            json!({"metadata": {"generateName": "settings-", "uid": "mine",
                "creationTimestamp": "1999-01-01T00:00:00Z"}}),
        )
        .await;
    assert_eq!(code, 201, "{created}");
    let metadata = &created["metadata"];
    let name = metadata["name"].as_str().unwrap_or_default();
    assert!(name.starts_with("settings-") && name.len() == 14, "{name}");
    // Bootstrap made 33 objects (four namespaces, the `kubernetes` Service, 16 ClusterRoles
    // and 10 ClusterRoleBindings, the default StorageClass and IngressClass); the generated
    // name took the 34th id, the object the 35th (0x23).
    assert_eq!(
        *metadata,
        json!({
            "name": name,
            "generateName": "settings-",
            "namespace": "default",
            "uid": "00000000-0000-0000-0000-000000000023",
            "creationTimestamp": START,
            "resourceVersion": metadata["resourceVersion"],
        })
    );
    let (_, read) = cluster
        .json("GET", &format!("{CONFIGMAPS}/{name}"), Value::Null)
        .await;
    assert_eq!(
        read["metadata"], *metadata,
        "what is stored is what was answered"
    );

    // Time moves only when the test says so: a bound pod's deletion deadline is the clock's
    // now plus its grace period.
    cluster.advance(90);
    let pod = json!({"metadata": {"name": "p"}, "spec": {"nodeName": "node-1",
        "terminationGracePeriodSeconds": 10, "containers": [{"name": "c", "image": "busybox"}]}});
    let (code, created) = cluster.json("POST", PODS, pod).await;
    assert_eq!(code, 201, "{created}");
    assert_eq!(
        created["metadata"]["creationTimestamp"],
        "2026-01-01T00:01:30Z"
    );
    let (code, deleting) = cluster
        .json("DELETE", &format!("{PODS}/p"), Value::Null)
        .await;
    assert_eq!(code, 200, "{deleting}");
    assert_eq!(
        deleting["metadata"]["deletionTimestamp"],
        "2026-01-01T00:01:40Z"
    );
    assert_eq!(deleting["metadata"]["deletionGracePeriodSeconds"], 10);
}
