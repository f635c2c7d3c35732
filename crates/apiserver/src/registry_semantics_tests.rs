//! What a write means beyond its bytes, through the HTTP surface of an in-process cluster:
//! defaults, validation in upstream's words, optimistic concurrency, finalizers, graceful pod
//! deletion, generateName and dry runs. Nothing here depends on uids or clock readings.

use serde_json::{Value, json};

use crate::gc_tests::gone;
use crate::test_cluster::TestCluster;

const PODS: &str = "/api/v1/namespaces/default/pods";
const CONFIGMAPS: &str = "/api/v1/namespaces/default/configmaps";

fn pod(name: &str, node: Option<&str>) -> Value {
    let mut pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
        "spec": {"containers": [{"name": "app", "image": "busybox:1.36"}]}});
    if let Some(node) = node {
        pod["spec"]["nodeName"] = json!(node);
    }
    pod
}

fn configmap(name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}})
}

async fn created(cluster: &TestCluster, collection: &str, object: Value) -> Value {
    let (code, answer) = cluster.json("POST", collection, object).await;
    assert_eq!(code, 201, "{answer}");
    answer
}

#[tokio::test]
async fn a_created_pod_gets_upstreams_defaults() {
    let cluster = TestCluster::start().await;
    let mut bare = pod("web-0", None);
    bare["spec"]["containers"][0]["ports"] = json!([{"containerPort": 80}]);
    bare["spec"]["containers"].as_array_mut().expect("containers").push(
        json!({"name": "sidecar", "image": "busybox", "readinessProbe": {"httpGet": {"port": 80}}}),
    );
    let answer = created(&cluster, PODS, bare).await;
    let spec = &answer["spec"];
    for (field, expected) in [
        ("restartPolicy", json!("Always")),
        ("terminationGracePeriodSeconds", json!(30)),
        ("dnsPolicy", json!("ClusterFirst")),
        ("securityContext", json!({})),
        ("schedulerName", json!("default-scheduler")),
        ("serviceAccountName", json!("default")),
        ("enableServiceLinks", json!(true)),
        ("priority", json!(0)),
        ("preemptionPolicy", json!("PreemptLowerPriority")),
    ] {
        assert_eq!(spec[field], expected, "spec.{field}");
    }
    let tolerations = spec["tolerations"].as_array().expect("tolerations");
    for taint in [
        "node.kubernetes.io/not-ready",
        "node.kubernetes.io/unreachable",
    ] {
        assert!(
            tolerations.contains(&json!({"key": taint, "operator": "Exists",
                "effect": "NoExecute", "tolerationSeconds": 300})),
            "{tolerations:?}"
        );
    }
    let app = &spec["containers"][0];
    assert_eq!(app["imagePullPolicy"], "IfNotPresent", "a tagged image");
    assert_eq!(app["terminationMessagePath"], "/dev/termination-log");
    assert_eq!(app["terminationMessagePolicy"], "File");
    assert_eq!(app["ports"][0]["protocol"], "TCP");
    let sidecar = &spec["containers"][1];
    assert_eq!(sidecar["imagePullPolicy"], "Always", "an untagged image");
    assert_eq!(
        sidecar["readinessProbe"],
        json!({"httpGet": {"port": 80, "path": "/", "scheme": "HTTP"}, "timeoutSeconds": 1,
               "periodSeconds": 10, "successThreshold": 1, "failureThreshold": 3})
    );
    assert_eq!(answer["status"]["phase"], "Pending");
    assert_eq!(answer["metadata"]["generation"], 1);
    assert!(
        answer["metadata"]["resourceVersion"].is_string(),
        "{answer}"
    );
}

#[tokio::test]
async fn an_invalid_object_is_422_with_upstreams_message_and_causes() {
    let cluster = TestCluster::start().await;
    let (code, status) = cluster.json("POST", PODS, pod("Bad_Name", None)).await;
    assert_eq!(code, 422, "{status}");
    let detail = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')";
    assert_eq!(status["kind"], "Status");
    assert_eq!(status["status"], "Failure");
    assert_eq!(status["reason"], "Invalid");
    assert_eq!(status["code"], 422);
    assert_eq!(
        status["message"],
        format!(
            "Pod \"Bad_Name\" is invalid: metadata.name: Invalid value: \"Bad_Name\": {detail}"
        )
    );
    assert_eq!(status["details"]["name"], "Bad_Name");
    assert_eq!(status["details"]["kind"], "Pod");
    assert_eq!(
        status["details"]["causes"],
        json!([{"reason": "FieldValueInvalid", "field": "metadata.name",
                "message": format!("Invalid value: \"Bad_Name\": {detail}")}])
    );
    let (code, _) = cluster
        .json("GET", &format!("{PODS}/Bad_Name"), Value::Null)
        .await;
    assert_eq!(code, 404, "a refused create stores nothing");

    let mut no_containers = pod("empty", None);
    no_containers["spec"]["containers"] = json!([]);
    let (code, status) = cluster.json("POST", PODS, no_containers).await;
    assert_eq!(code, 422, "{status}");
    assert_eq!(
        status["details"]["causes"][0],
        json!({"reason": "FieldValueRequired", "field": "spec.containers", "message": "Required value"}),
        "{status}"
    );
}

#[tokio::test]
async fn a_stale_resource_version_is_a_409_conflict_in_upstreams_words() {
    let cluster = TestCluster::start().await;
    let first = created(&cluster, CONFIGMAPS, configmap("c")).await;
    let mut update = first.clone();
    update["data"] = json!({"a": "1"});
    let (code, answer) = cluster
        .json("PUT", &format!("{CONFIGMAPS}/c"), update.clone())
        .await;
    assert_eq!(code, 200, "{answer}");
    assert_ne!(
        answer["metadata"]["resourceVersion"],
        first["metadata"]["resourceVersion"]
    );
    update["data"] = json!({"a": "2"});
    let (code, status) = cluster
        .json("PUT", &format!("{CONFIGMAPS}/c"), update)
        .await;
    assert_eq!(code, 409, "{status}");
    assert_eq!(status["reason"], "Conflict");
    assert_eq!(
        status["message"],
        "Operation cannot be fulfilled on configmaps \"c\": the object has been modified; please apply your changes to the latest version and try again"
    );
    assert_eq!(
        status["details"],
        json!({"name": "c", "kind": "configmaps"})
    );
    let (_, stored) = cluster
        .json("GET", &format!("{CONFIGMAPS}/c"), Value::Null)
        .await;
    assert_eq!(
        stored["data"],
        json!({"a": "1"}),
        "the stale write changed nothing"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_read_modify_writes_with_retry_all_land() {
    const WRITERS: usize = 8;
    let cluster = std::sync::Arc::new(TestCluster::start().await);
    created(&cluster, CONFIGMAPS, configmap("shared")).await;
    let path = format!("{CONFIGMAPS}/shared");
    let mut writers = tokio::task::JoinSet::new();
    for writer in 0..WRITERS {
        let cluster = cluster.clone();
        let path = path.clone();
        writers.spawn(async move {
            let mut conflicts = 0;
            loop {
                let (code, mut current) = cluster.json("GET", &path, Value::Null).await;
                assert_eq!(code, 200, "{current}");
                current["data"][format!("writer-{writer}")] = json!("done");
                let (code, answer) = cluster.json("PUT", &path, current).await;
                match code {
                    200 => return conflicts,
                    409 => conflicts += 1,
                    other => panic!("writer {writer}: {other} {answer}"),
                }
            }
        });
    }
    let mut conflicts = 0;
    while let Some(result) = writers.join_next().await {
        conflicts += result.expect("a writer panicked");
    }
    let (_, shared) = cluster.json("GET", &path, Value::Null).await;
    let data = shared["data"].as_object().expect("data");
    for writer in 0..WRITERS {
        assert_eq!(
            data.get(&format!("writer-{writer}")),
            Some(&json!("done")),
            "{shared} after {conflicts} conflicts"
        );
    }
}

#[tokio::test]
async fn a_finalizer_keeps_a_deleted_object_until_it_is_removed() {
    let cluster = TestCluster::start().await;
    let mut held = configmap("held");
    held["metadata"]["finalizers"] = json!(["example.com/hold"]);
    created(&cluster, CONFIGMAPS, held).await;
    let path = format!("{CONFIGMAPS}/held");
    let (code, deleted) = cluster.json("DELETE", &path, Value::Null).await;
    assert_eq!(code, 200, "{deleted}");
    assert!(
        deleted["metadata"]["deletionTimestamp"].is_string(),
        "{deleted}"
    );
    let (code, kept) = cluster.json("GET", &path, Value::Null).await;
    assert_eq!(code, 200, "{kept}");
    assert_eq!(kept["metadata"]["finalizers"], json!(["example.com/hold"]));
    // A second delete changes nothing and still answers with the object.
    let (code, again) = cluster.json("DELETE", &path, Value::Null).await;
    assert_eq!(code, 200, "{again}");
    assert_eq!(
        again["metadata"]["deletionTimestamp"],
        kept["metadata"]["deletionTimestamp"]
    );
    let mut released = kept.clone();
    released["metadata"]["finalizers"] = json!([]);
    let (code, answer) = cluster.json("PUT", &path, released).await;
    assert_eq!(code, 200, "{answer}");
    gone(&cluster, &path).await;
}

/// Deletes with `gracePeriodSeconds`; the deletionGracePeriodSeconds the answer has.
async fn delete_with_grace(cluster: &TestCluster, path: &str, grace: i64) -> Value {
    let (code, answer) = cluster
        .json(
            "DELETE",
            &format!("{path}?gracePeriodSeconds={grace}"),
            Value::Null,
        )
        .await;
    assert_eq!(code, 200, "{answer}");
    answer["metadata"]["deletionGracePeriodSeconds"].clone()
}

#[tokio::test]
async fn a_bound_pod_is_deleted_gracefully_and_a_shorter_grace_shortens_it() {
    let cluster = TestCluster::start().await;
    created(&cluster, PODS, pod("web-0", Some("node-a"))).await;
    let path = format!("{PODS}/web-0");
    let (code, deleting) = cluster.json("DELETE", &path, Value::Null).await;
    assert_eq!(code, 200, "{deleting}");
    assert_eq!(
        deleting["metadata"]["deletionGracePeriodSeconds"], 30,
        "{deleting}"
    );
    assert!(
        deleting["metadata"]["deletionTimestamp"].is_string(),
        "{deleting}"
    );
    assert_eq!(delete_with_grace(&cluster, &path, 5).await, 5);
    assert_eq!(
        delete_with_grace(&cluster, &path, 60).await,
        5,
        "a grace period is never lengthened"
    );
    let (code, still) = cluster.json("GET", &path, Value::Null).await;
    assert_eq!(code, 200, "the node has not confirmed yet: {still}");
    // What a node (or `--force --grace-period=0`) does to finish it.
    delete_with_grace(&cluster, &path, 0).await;
    gone(&cluster, &path).await;
}

#[tokio::test]
async fn a_pod_without_a_node_is_deleted_at_once() {
    let cluster = TestCluster::start().await;
    for (name, query) in [("unbound", ""), ("forced", "?gracePeriodSeconds=0")] {
        created(&cluster, PODS, pod(name, None)).await;
        let path = format!("{PODS}/{name}");
        let (code, answer) = cluster
            .json("DELETE", &format!("{path}{query}"), Value::Null)
            .await;
        assert_eq!(code, 200, "{answer}");
        let (code, answer) = cluster.json("GET", &path, Value::Null).await;
        assert_eq!(code, 404, "{name}: {answer}");
    }
}

#[tokio::test]
async fn generate_name_makes_a_fresh_name_from_the_prefix() {
    let cluster = TestCluster::start().await;
    let template =
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"generateName": "job-"}});
    let mut names = Vec::new();
    for _ in 0..3 {
        let answer = created(&cluster, CONFIGMAPS, template.clone()).await;
        let name = answer["metadata"]["name"]
            .as_str()
            .expect("a name")
            .to_string();
        assert_eq!(answer["metadata"]["generateName"], "job-");
        let suffix = name.strip_prefix("job-").expect("the prefix");
        assert_eq!(suffix.len(), 5, "{name}");
        let (code, _) = cluster
            .json("GET", &format!("{CONFIGMAPS}/{name}"), Value::Null)
            .await;
        assert_eq!(code, 200, "{name} is stored");
        names.push(name);
    }
    names.dedup();
    assert_eq!(names.len(), 3, "{names:?}");
    let (code, status) = cluster
        .json(
            "POST",
            CONFIGMAPS,
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {}}),
        )
        .await;
    assert_eq!(code, 422, "{status}");
    assert_eq!(
        status["details"]["causes"][0]["message"],
        "Required value: name or generateName is required"
    );
}

#[tokio::test]
async fn a_dry_run_answers_as_the_write_would_and_writes_nothing() {
    let cluster = TestCluster::start().await;
    let (code, answer) = cluster
        .json("POST", &format!("{PODS}?dryRun=All"), pod("dry", None))
        .await;
    assert_eq!(code, 201, "{answer}");
    assert_eq!(
        answer["spec"]["restartPolicy"], "Always",
        "defaults applied"
    );
    let (code, _) = cluster
        .json("GET", &format!("{PODS}/dry"), Value::Null)
        .await;
    assert_eq!(code, 404, "a dry-run create stores nothing");

    let stored = created(&cluster, CONFIGMAPS, configmap("c")).await;
    let path = format!("{CONFIGMAPS}/c");
    let mut update = stored.clone();
    update["data"] = json!({"a": "1"});
    let (code, answer) = cluster
        .json("PUT", &format!("{path}?dryRun=All"), update)
        .await;
    assert_eq!(code, 200, "{answer}");
    assert_eq!(answer["data"], json!({"a": "1"}));
    let (code, answer) = cluster
        .send(
            "PATCH",
            &format!("{path}?dryRun=All"),
            "application/merge-patch+json",
            json!({"data": {"b": "2"}}),
        )
        .await;
    assert_eq!(code, 200, "{answer}");
    let (code, answer) = cluster
        .json("DELETE", &format!("{path}?dryRun=All"), Value::Null)
        .await;
    assert_eq!(code, 200, "{answer}");
    let (_, after) = cluster.json("GET", &path, Value::Null).await;
    assert_eq!(
        after, stored,
        "dry runs of update, patch and delete changed nothing"
    );
}
