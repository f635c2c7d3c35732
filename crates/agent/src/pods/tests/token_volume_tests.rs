//! A pod's projected service-account volume on the node: its token from a TokenRequest
//! (answered here by a fake in front of the in-process API), its CA and namespace, the wait
//! in ContainerCreating while the TokenRequest fails, and the renewal while the pod runs.

use std::sync::atomic::AtomicUsize;

use axum::http::{Method, Request, Response, StatusCode};
use k8s_openapi::api::core::v1::{ConfigMap, Event};

use super::*;

/// How the fake TokenRequest answers.
struct FakeTokens {
    /// Whether it refuses (403) instead.
    refuse: AtomicBool,
    /// How many tokens it issued (each one is `token-N`).
    issued: AtomicUsize,
    /// The lifetime it grants, in seconds.
    lifetime: i64,
    /// The bodies it was sent.
    requests: Mutex<Vec<serde_json::Value>>,
}

impl FakeTokens {
    fn new(lifetime: i64) -> Arc<Self> {
        Arc::new(Self {
            refuse: AtomicBool::new(false),
            issued: AtomicUsize::new(0),
            lifetime,
            requests: Mutex::new(Vec::new()),
        })
    }
}

/// A client of the cluster whose TokenRequests the fake answers.
fn client_with_tokens(cluster: &TestCluster, tokens: Arc<FakeTokens>) -> kube::Client {
    type BoxError = Box<dyn std::error::Error + Send + Sync>;
    let inner = cluster.client();
    let service = tower::service_fn(move |request: Request<kube::client::Body>| {
        let inner = inner.clone();
        let tokens = tokens.clone();
        async move {
            let is_token = request.method() == Method::POST
                && request.uri().path().ends_with("/token")
                && request.uri().path().contains("/serviceaccounts/");
            if !is_token {
                return inner.send(request).await.map_err(BoxError::from);
            }
            let body =
                axum::body::to_bytes(axum::body::Body::new(request.into_body()), 1 << 20).await?;
            let sent: serde_json::Value = serde_json::from_slice(&body)?;
            tokens.requests.lock().expect("requests").push(sent.clone());
            let (status, answer) = if tokens.refuse.load(Ordering::SeqCst) {
                (
                    StatusCode::FORBIDDEN,
                    json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                        "reason": "Forbidden", "code": 403,
                        "message": "serviceaccounts \"default\" is forbidden: not now"}),
                )
            } else {
                let n = tokens.issued.fetch_add(1, Ordering::SeqCst) + 1;
                let expires = jiff::Timestamp::now()
                    .checked_add(jiff::SignedDuration::from_secs(tokens.lifetime))
                    .expect("expiry");
                let mut answer = sent;
                answer["spec"]["expirationSeconds"] = json!(tokens.lifetime);
                answer["status"] = json!({"token": format!("token-{n}"),
                    "expirationTimestamp": expires.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()});
                (StatusCode::CREATED, answer)
            };
            let response = Response::builder()
                .status(status)
                .header("content-type", "application/json")
                .body(kube::client::Body::from(answer.to_string().into_bytes()))?;
            Ok::<_, BoxError>(response)
        }
    });
    kube::Client::new(service, "default")
}

async fn publish_root_ca(cluster: &TestCluster) {
    let maps: Api<ConfigMap> = Api::namespaced(cluster.client(), "default");
    let map: ConfigMap = serde_json::from_value(json!({
        "metadata": {"name": "kube-root-ca.crt"}, "data": {"ca.crt": "THE CA"}}))
    .expect("configmap");
    maps.create(&PostParams::default(), &map)
        .await
        .expect("create the CA");
}

async fn create_token_pod(cluster: &TestCluster, name: &str) -> Pod {
    let pods: Api<Pod> = Api::namespaced(cluster.client(), "default");
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {"nodeName": NODE, "terminationGracePeriodSeconds": 1,
                 "containers": [{"name": "app", "image": "busybox"}]},
    }))
    .expect("pod");
    pods.create(&PostParams::default(), &pod)
        .await
        .expect("create pod")
}

/// The projected volume's directory of `pod` on the fake runtime.
fn token_dir(root: &Path, pod: &Pod) -> PathBuf {
    let spec = pod.spec.as_ref().expect("spec");
    let volume = spec
        .volumes
        .iter()
        .flatten()
        .next()
        .expect("the token volume");
    root.join("pods")
        .join(super::super::sandbox_id_of(
            pod.metadata.uid.as_deref().expect("uid"),
        ))
        .join("volumes/projected")
        .join(&volume.name)
}

fn read(path: &Path) -> Option<String> {
    std::fs::read_to_string(path).ok()
}

#[tokio::test]
async fn a_pods_token_volume_holds_the_token_the_ca_and_the_namespace() {
    let cluster = TestCluster::start().await;
    publish_root_ca(&cluster).await;
    let root = tempfile::tempdir().expect("tempdir");
    let runtime = Arc::new(FakeRuntime {
        root: Some(root.path().to_path_buf()),
        ..FakeRuntime::default()
    });
    let tokens = FakeTokens::new(3607);
    let (workers, node) = node_with_client(
        client_with_tokens(&cluster, tokens.clone()),
        runtime.clone(),
        Fence::lowered_for_tests(),
    );
    let pod = create_token_pod(&cluster, "web-0").await;
    let dir = token_dir(root.path(), &pod);
    eventually("the container runs", async || {
        runtime.containers().len() == 1
    })
    .await;
    assert_eq!(read(&dir.join("token")).as_deref(), Some("token-1"));
    assert_eq!(read(&dir.join("ca.crt")).as_deref(), Some("THE CA"));
    assert_eq!(read(&dir.join("namespace")).as_deref(), Some("default"));
    assert_eq!(
        std::fs::read_link(dir.join("token")).expect("a link"),
        Path::new("..data/token")
    );
    let sent = tokens.requests.lock().expect("requests")[0].clone();
    assert_eq!(
        sent,
        json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
            "spec": {"audiences": [], "expirationSeconds": 3607, "boundObjectRef": {
                "kind": "Pod", "apiVersion": "v1", "name": "web-0",
                "uid": pod.metadata.uid.clone().expect("uid")}}})
    );
    node.abort();
    workers.stop(Duration::ZERO).await;
}

#[tokio::test]
async fn a_refused_token_request_keeps_the_pod_creating_with_a_failed_mount_until_it_succeeds() {
    let cluster = TestCluster::start().await;
    publish_root_ca(&cluster).await;
    let root = tempfile::tempdir().expect("tempdir");
    let runtime = Arc::new(FakeRuntime {
        root: Some(root.path().to_path_buf()),
        ..FakeRuntime::default()
    });
    let tokens = FakeTokens::new(3607);
    tokens.refuse.store(true, Ordering::SeqCst);
    let (workers, node) = node_with_client(
        client_with_tokens(&cluster, tokens.clone()),
        runtime.clone(),
        Fence::lowered_for_tests(),
    );
    let pods: Api<Pod> = Api::namespaced(cluster.client(), "default");
    let pod = create_token_pod(&cluster, "web-0").await;
    let volume = token_dir(root.path(), &pod)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .expect("a name");
    eventually("the pod waits in ContainerCreating", async || {
        container_state(&pods, "web-0").await["waiting"]["reason"] == "ContainerCreating"
    })
    .await;
    let events: Api<Event> = Api::namespaced(cluster.client(), "default");
    let expected = format!(
        "MountVolume.SetUp failed for volume \"{volume}\" : failed to fetch token: serviceaccounts \"default\" is forbidden: not now"
    );
    eventually("a FailedMount warning says why", async || {
        let list = events.list(&Default::default()).await.expect("events");
        list.items.iter().any(|e| {
            e.reason.as_deref() == Some("FailedMount")
                && e.type_.as_deref() == Some("Warning")
                && e.message.as_deref() == Some(expected.as_str())
        })
    })
    .await;
    assert!(runtime.containers().is_empty());
    tokens.refuse.store(false, Ordering::SeqCst);
    eventually("the container runs once a token is issued", async || {
        runtime.containers().len() == 1
    })
    .await;
    node.abort();
    workers.stop(Duration::ZERO).await;
}

#[tokio::test]
async fn a_running_pods_token_is_renewed_before_it_expires() {
    let cluster = TestCluster::start().await;
    publish_root_ca(&cluster).await;
    let root = tempfile::tempdir().expect("tempdir");
    let runtime = Arc::new(FakeRuntime {
        root: Some(root.path().to_path_buf()),
        ..FakeRuntime::default()
    });
    // Tokens of 2 s: each is renewed 1.6 s after it was issued.
    let tokens = FakeTokens::new(2);
    let (workers, node) = node_with_client(
        client_with_tokens(&cluster, tokens.clone()),
        runtime.clone(),
        Fence::lowered_for_tests(),
    );
    let pod = create_token_pod(&cluster, "web-0").await;
    let dir = token_dir(root.path(), &pod);
    eventually("the container runs", async || {
        runtime.containers().len() == 1
    })
    .await;
    eventually("a second token replaces the first", async || {
        read(&dir.join("token")).as_deref() == Some("token-2")
    })
    .await;
    node.abort();
    workers.stop(Duration::ZERO).await;
}
