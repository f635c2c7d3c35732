//! The ServiceAccount admission of pods through the in-process API: the token volume a new
//! pod gets, the opt-outs, and the refusal of a pod whose account does not exist.

use serde_json::{Value, json};

use crate::test_cluster::TestCluster;

const PODS: &str = "/api/v1/namespaces/default/pods";
const ACCOUNTS: &str = "/api/v1/namespaces/default/serviceaccounts";

fn pod(name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
        "spec": {"initContainers": [{"name": "init", "image": "busybox"}],
                 "containers": [{"name": "app", "image": "busybox"}]}})
}

async fn create(cluster: &TestCluster, object: Value) -> Value {
    let (code, answer) = cluster.json("POST", PODS, object).await;
    assert_eq!(code, 201, "{answer}");
    answer
}

#[tokio::test]
async fn a_created_pod_mounts_its_token_volume_in_every_container() {
    let cluster = TestCluster::start().await;
    // No `default` account yet (no controller runs here): the pod is admitted all the same.
    let answer = create(&cluster, pod("web-0")).await;
    let volumes = answer["spec"]["volumes"].as_array().expect("volumes");
    assert_eq!(volumes.len(), 1, "{volumes:?}");
    let name = volumes[0]["name"].as_str().expect("a name");
    let suffix = name.strip_prefix("kube-api-access-").expect("the prefix");
    assert_eq!(suffix.len(), 5, "{name}");
    assert!(
        suffix
            .chars()
            .all(|c| "bcdfghjklmnpqrstvwxz2456789".contains(c)),
        "{name}"
    );
    assert_eq!(
        volumes[0]["projected"]["sources"][0],
        json!({"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}})
    );
    assert_eq!(volumes[0]["projected"]["defaultMode"], 420);
    for list in ["initContainers", "containers"] {
        assert_eq!(
            answer["spec"][list][0]["volumeMounts"],
            json!([{"name": name, "readOnly": true,
                "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount"}]),
            "{list}"
        );
    }
}

#[tokio::test]
async fn automount_false_on_the_pod_or_its_account_mounts_nothing() {
    let cluster = TestCluster::start().await;
    let mut opted_out = pod("own-choice");
    opted_out["spec"]["automountServiceAccountToken"] = json!(false);
    let answer = create(&cluster, opted_out).await;
    assert!(answer["spec"].get("volumes").is_none(), "{answer}");
    assert!(
        answer["spec"]["containers"][0]
            .get("volumeMounts")
            .is_none()
    );

    let (code, account) = cluster
        .json(
            "POST",
            ACCOUNTS,
            json!({"metadata": {"name": "quiet"}, "automountServiceAccountToken": false}),
        )
        .await;
    assert_eq!(code, 201, "{account}");
    let mut quiet = pod("quiet-account");
    quiet["spec"]["serviceAccountName"] = json!("quiet");
    let answer = create(&cluster, quiet).await;
    assert!(answer["spec"].get("volumes").is_none(), "{answer}");
    // The pod's own word wins over its account's.
    let mut insists = pod("insists");
    insists["spec"]["serviceAccountName"] = json!("quiet");
    insists["spec"]["automountServiceAccountToken"] = json!(true);
    let answer = create(&cluster, insists).await;
    assert_eq!(answer["spec"]["volumes"].as_array().map(Vec::len), Some(1));
}

#[tokio::test]
async fn a_pod_of_a_missing_account_is_forbidden_in_upstreams_words() {
    let cluster = TestCluster::start().await;
    let mut orphan = pod("orphan");
    orphan["spec"]["serviceAccountName"] = json!("builder");
    let (code, status) = cluster.json("POST", PODS, orphan).await;
    assert_eq!(code, 403, "{status}");
    assert_eq!(status["reason"], "Forbidden");
    assert_eq!(
        status["message"],
        r#"pods "orphan" is forbidden: error looking up service account default/builder: serviceaccount "builder" not found"#
    );
    let (code, _) = cluster
        .json("GET", &format!("{PODS}/orphan"), Value::Null)
        .await;
    assert_eq!(code, 404, "nothing was written");
}

#[tokio::test]
async fn a_container_with_its_own_mount_at_the_path_keeps_it() {
    let cluster = TestCluster::start().await;
    let mut own = pod("own-token");
    own["spec"]["volumes"] = json!([{"name": "mine", "emptyDir": {}}]);
    for list in ["initContainers", "containers"] {
        own["spec"][list][0]["volumeMounts"] = json!([{"name": "mine",
            "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount"}]);
    }
    let answer = create(&cluster, own).await;
    assert_eq!(
        answer["spec"]["volumes"],
        json!([{"name": "mine", "emptyDir": {}}])
    );
}
