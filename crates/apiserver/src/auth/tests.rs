//! Authentication and authorization through the real router: a node's certificate does what
//! its agent does and is refused the rest with upstream's texts; and over real TLS, the
//! certificate a client presents reaches authentication.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, header};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};

use super::ClientCertificate;
use crate::test_cluster::{TestCluster, answer_json, request, whole_body};

const MERGE: &str = "application/merge-patch+json";
const APPLY: &str = "application/apply-patch+yaml";

/// The cluster's CA (in a temp dir) and the identity of node `n1` it signed.
struct Identity {
    _dir: tempfile::TempDir,
    certificate: ClientCertificate,
}

/// A client certificate and key (PEM) for node `node`, signed by the CA of `dir`.
pub(super) fn issue_node_certificate(dir: &std::path::Path, node: &str) -> (String, String) {
    crate::tls::issue_client_certificate(dir, &format!("system:node:{node}"), Some("system:nodes"))
        .expect("certificate")
}

fn node_identity(node: &str) -> Identity {
    let dir = tempfile::tempdir().expect("temp dir");
    let (pem, _) = issue_node_certificate(dir.path(), node);
    let certificate = ClientCertificate::from_pem(&pem).expect("a certificate");
    Identity {
        _dir: dir,
        certificate,
    }
}

/// One request through the network's router as the holder of `certificate`.
async fn as_node(
    cluster: &TestCluster,
    certificate: &ClientCertificate,
    method: &str,
    path: &str,
    content_type: &str,
    body: Value,
) -> (u16, Value) {
    let mut request = request(method, path, content_type, "application/json", body);
    request.extensions_mut().insert(certificate.clone());
    answer_json(crate::router(cluster.state.clone()), request).await
}

/// Two nodes, and a pod bound to each that mounts a secret of its own.
async fn two_nodes_with_a_pod_each() -> TestCluster {
    let cluster = TestCluster::start().await;
    for node in ["n1", "n2"] {
        let (status, body) = cluster
            .json("POST", "/api/v1/nodes", json!({"metadata": {"name": node}}))
            .await;
        assert_eq!(status, 201, "{body}");
    }
    for secret in ["token-0", "token-1"] {
        let manifest = json!({"metadata": {"name": secret}, "stringData": {"token": secret}});
        let (status, body) = cluster
            .json("POST", "/api/v1/namespaces/default/secrets", manifest)
            .await;
        assert_eq!(status, 201, "{body}");
    }
    for (pod, node, secret) in [("web-0", "n1", "token-0"), ("web-1", "n2", "token-1")] {
        let manifest = json!({
            "metadata": {"name": pod},
            "spec": {
                "nodeName": node,
                "containers": [{"name": "web", "image": "nginx"}],
                "volumes": [{"name": "token", "secret": {"secretName": secret}}],
            },
        });
        let (status, body) = cluster
            .json("POST", "/api/v1/namespaces/default/pods", manifest)
            .await;
        assert_eq!(status, 201, "{body}");
    }
    cluster
}

fn lease(node: &str) -> Value {
    json!({
        "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
        "metadata": {"name": node, "namespace": "kube-node-lease"},
        "spec": {"holderIdentity": node, "leaseDurationSeconds": 40},
    })
}

fn message(body: &Value) -> &str {
    body["message"].as_str().unwrap_or_default()
}

#[tokio::test]
async fn a_node_certificate_does_what_its_agent_does() {
    let cluster = two_nodes_with_a_pod_each().await;
    let n1 = node_identity("n1");
    let node = &n1.certificate;
    let lease_path = "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/n1?fieldManager=petset-node&force=true";
    let (status, body) = as_node(&cluster, node, "PATCH", lease_path, APPLY, lease("n1")).await;
    assert!(status == 200 || status == 201, "{status} {body}");
    let ready = json!({"status": {"conditions": [{"type": "Ready", "status": "True"}]}});
    let (status, body) = as_node(
        &cluster,
        node,
        "PATCH",
        "/api/v1/nodes/n1/status",
        MERGE,
        ready,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let running = json!({"status": {"phase": "Running"}});
    let pod_status = "/api/v1/namespaces/default/pods/web-0/status";
    let (status, body) = as_node(&cluster, node, "PATCH", pod_status, MERGE, running).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"]["phase"], "Running");
    for path in [
        "/api/v1/pods?fieldSelector=spec.nodeName%3Dn1",
        "/api/v1/nodes",
        "/api/v1/services",
        "/api/v1/persistentvolumes",
        "/api/v1/namespaces/default/secrets/token-0",
        "/api",
    ] {
        let (status, body) = as_node(&cluster, node, "GET", path, MERGE, Value::Null).await;
        assert_eq!(status, 200, "{path}: {body}");
    }
    let (status, body) = as_node(
        &cluster,
        node,
        "DELETE",
        "/api/v1/namespaces/default/pods/web-0",
        "application/json",
        Value::Null,
    )
    .await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test]
async fn a_node_certificate_cannot_act_as_another_node() {
    let cluster = two_nodes_with_a_pod_each().await;
    let n1 = node_identity("n1");
    let node = &n1.certificate;
    let ready = json!({"status": {"conditions": [{"type": "Ready", "status": "True"}]}});
    let other_lease = "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/n2?fieldManager=petset-node&force=true";
    let pod = json!({"metadata": {"name": "sneaky"}, "spec": {"nodeName": "n1", "containers": [{"name": "c", "image": "busybox"}]}});
    let refusals = [
        (
            "PATCH",
            "/api/v1/nodes/n2/status",
            MERGE,
            ready,
            r#"nodes "n2" is forbidden: node "n1" is not allowed to modify node "n2""#,
        ),
        (
            "PATCH",
            other_lease,
            APPLY,
            lease("n2"),
            r#"leases.coordination.k8s.io "n2" is forbidden: User "system:node:n1" cannot patch resource "leases" in API group "coordination.k8s.io" in the namespace "kube-node-lease": can only access node lease with the same name as the requesting node"#,
        ),
        (
            "DELETE",
            "/api/v1/namespaces/default/pods/web-1",
            "application/json",
            Value::Null,
            r#"pods "web-1" is forbidden: node "n1" can only delete pods with spec.nodeName set to itself"#,
        ),
        (
            "PATCH",
            "/api/v1/namespaces/default/pods/web-1/status",
            MERGE,
            json!({"status": {"phase": "Failed"}}),
            r#"pods "web-1" is forbidden: node "n1" can only update pod status for pods with spec.nodeName set to itself"#,
        ),
        (
            "POST",
            "/api/v1/namespaces/default/pods",
            "application/json",
            pod,
            r#"pods "sneaky" is forbidden: pod does not have "kubernetes.io/config.mirror" annotation, node "n1" can only create mirror pods"#,
        ),
        (
            "GET",
            "/api/v1/namespaces/default/secrets",
            "application/json",
            Value::Null,
            r#"secrets is forbidden: User "system:node:n1" cannot list resource "secrets" in API group "" in the namespace "default": No Object name found"#,
        ),
        (
            "GET",
            "/api/v1/namespaces/default/secrets/token-1",
            "application/json",
            Value::Null,
            r#"secrets "token-1" is forbidden: User "system:node:n1" cannot get resource "secrets" in API group "" in the namespace "default": no relationship found between node 'n1' and this object"#,
        ),
    ];
    for (method, path, content_type, body, expected) in refusals {
        let (status, answer) = as_node(&cluster, node, method, path, content_type, body).await;
        assert_eq!(status, 403, "{method} {path}: {answer}");
        assert_eq!(message(&answer), expected, "{method} {path}");
        assert_eq!(answer["reason"], "Forbidden");
    }
    // Nothing of the other node's changed.
    let (_, web_1) = cluster
        .json("GET", "/api/v1/namespaces/default/pods/web-1", Value::Null)
        .await;
    assert!(web_1["status"]["phase"] != "Failed", "{web_1}");
    assert!(web_1["metadata"]["deletionTimestamp"].is_null(), "{web_1}");
    let (status, _) = cluster
        .json("GET", "/api/v1/namespaces/default/pods/sneaky", Value::Null)
        .await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn a_certificate_outside_system_nodes_gets_discovery_only() {
    let cluster = TestCluster::start().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let (pem, _) = crate::tls::issue_client_certificate(dir.path(), "jane", Some("developers"))
        .expect("certificate");
    let jane = ClientCertificate::from_pem(&pem).expect("a certificate");
    let (status, _) = as_node(&cluster, &jane, "GET", "/apis", MERGE, Value::Null).await;
    assert_eq!(status, 200);
    let (status, body) = as_node(&cluster, &jane, "GET", "/api/v1/nodes", MERGE, Value::Null).await;
    assert_eq!(status, 403);
    assert_eq!(
        message(&body),
        r#"nodes is forbidden: User "jane" cannot list resource "nodes" in API group "" at the cluster scope"#
    );
}

/// Serves the router over TLS on 127.0.0.1 with the cluster's credentials in `dir`.
struct TlsServer {
    address: std::net::SocketAddr,
    ca_pem: String,
    stop: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

async fn serve_over_tls(dir: &std::path::Path) -> TlsServer {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let address = listener.local_addr().expect("address");
    let service_ip = std::net::IpAddr::V4(std::net::Ipv4Addr::new(10, 96, 0, 1));
    let credentials = crate::tls::load_or_create(dir, address, service_ip).expect("credentials");
    let state = crate::ApiState::new(
        Arc::new(petset_store::LocalStore::in_memory()),
        Some(credentials.admin_token.clone()),
    );
    state.registry().bootstrap().await.expect("bootstrap");
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let task = tokio::spawn(crate::serve::serve_tls(
        listener,
        credentials.server_config.clone(),
        crate::router(state),
        stopped,
        Duration::from_secs(1),
    ));
    TlsServer {
        address,
        ca_pem: credentials.ca_pem,
        stop,
        task,
    }
}

/// One GET over a new TLS connection, presenting `identity` (certificate and key PEM) if any;
/// `Err` says which step failed when the server does not answer.
async fn get_over_tls(
    server: &TlsServer,
    identity: Option<(&str, &str)>,
    path: &str,
) -> Result<(u16, Value), String> {
    let config = crate::tls::kubelet_client_config(&server.ca_pem, identity).expect("client TLS");
    let connector = tokio_rustls::TlsConnector::from(config);
    let tcp = tokio::net::TcpStream::connect(server.address)
        .await
        .expect("connect");
    let name = rustls::pki_types::ServerName::IpAddress(server.address.ip().into());
    let tls = connector
        .connect(name, tcp)
        .await
        .map_err(|e| format!("TLS handshake: {e}"))?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .map_err(|e| format!("HTTP handshake: {e}"))?;
    let driver = tokio::spawn(connection);
    let request = Request::builder()
        .uri(path)
        .header(header::HOST, server.address.to_string())
        .body(Body::empty())
        .expect("request");
    let answer = sender.send_request(request).await;
    let result = match answer {
        Ok(response) => {
            let status = response.status().as_u16();
            let bytes = whole_body(response.into_body()).await;
            let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
            Ok((status, body))
        }
        Err(error) => Err(format!("request: {error}")),
    };
    driver.abort();
    result
}

#[tokio::test]
async fn over_tls_the_client_certificate_is_who_asks() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = serve_over_tls(dir.path()).await;
    let (cert, key) = issue_node_certificate(dir.path(), "n1");
    let node = Some((cert.as_str(), key.as_str()));
    let get = |identity, path| get_over_tls(&server, identity, path);
    let (status, body) = get(None, "/api/v1/nodes").await.expect("answered");
    assert_eq!(status, 401, "{body}");
    let (status, body) = get(node, "/api/v1/nodes").await.expect("answered");
    assert_eq!(status, 200, "{body}");
    let secrets = "/api/v1/namespaces/default/secrets";
    let (status, body) = get(node, secrets).await.expect("answered");
    assert_eq!(status, 403, "{body}");
    assert_eq!(
        message(&body),
        r#"secrets is forbidden: User "system:node:n1" cannot list resource "secrets" in API group "" in the namespace "default": No Object name found"#
    );
    let (status, _) = get(None, "/healthz").await.expect("answered");
    assert_eq!(status, 200);
    server.stop.send_replace(true);
    server.task.await.expect("server stopped");
}

#[tokio::test]
async fn a_certificate_of_another_ca_is_a_401_as_upstream_answers_it() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = serve_over_tls(dir.path()).await;
    let elsewhere = tempfile::tempdir().expect("temp dir");
    let (cert, key) = issue_node_certificate(elsewhere.path(), "n1");
    let refused = get_over_tls(&server, Some((&cert, &key)), "/api/v1/nodes").await;
    let (status, body) = refused.expect("answered");
    assert_eq!(
        (status, &body["reason"]),
        (401, &json!("Unauthorized")),
        "{body}"
    );
    // The same server answers its own CA's certificates.
    let (cert, key) = issue_node_certificate(dir.path(), "n1");
    let answered = get_over_tls(&server, Some((&cert, &key)), "/api/v1/nodes").await;
    assert_eq!(answered.map(|(status, _)| status), Ok(200));
    server.stop.send_replace(true);
    server.task.await.expect("server stopped");
}

#[tokio::test]
async fn a_kube_client_with_a_node_certificate_registers_and_renews_as_the_agent_does() {
    use k8s_openapi::api::coordination::v1::Lease;
    use k8s_openapi::api::core::v1::{Node, Pod};
    use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};

    let cluster = TestCluster::start().await;
    let n1 = node_identity("n1");
    let client = cluster.client_as(n1.certificate.clone());
    let nodes: Api<Node> = Api::all(client.clone());
    let node: Node = serde_json::from_value(json!({
        "metadata": {"name": "n1", "labels": {"kubernetes.io/hostname": "n1", "kubernetes.io/os": "linux"}},
    }))
    .expect("a node");
    nodes
        .create(&PostParams::default(), &node)
        .await
        .expect("registers itself");
    let ready = json!({"status": {"conditions": [{"type": "Ready", "status": "True"}]}});
    nodes
        .patch_status("n1", &PatchParams::default(), &Patch::Merge(&ready))
        .await
        .expect("reports its status");
    let leases: Api<Lease> = Api::namespaced(client.clone(), "kube-node-lease");
    let apply = PatchParams::apply("petset-node").force();
    leases
        .patch("n1", &apply, &Patch::Apply(lease("n1")))
        .await
        .expect("renews its lease");
    let pods: Api<Pod> = Api::all(client.clone());
    let bound_here = ListParams::default().fields("spec.nodeName=n1");
    pods.list(&bound_here).await.expect("lists its pods");
    let refused = leases
        .patch("n2", &apply, &Patch::Apply(lease("n2")))
        .await
        .expect_err("not its lease");
    assert!(
        matches!(&refused, kube::Error::Api(status) if status.code == 403),
        "{refused:?}"
    );
}

#[tokio::test]
async fn a_node_reads_ingresses_and_writes_only_their_status_for_its_ingress_proxy() {
    let cluster = two_nodes_with_a_pod_each().await;
    let ingress = json!({"metadata": {"name": "web"}, "spec": {"defaultBackend":
        {"service": {"name": "web", "port": {"number": 80}}}}});
    let (status, body) = cluster
        .json(
            "POST",
            "/apis/networking.k8s.io/v1/namespaces/default/ingresses",
            ingress,
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let n1 = node_identity("n1");
    let node = &n1.certificate;
    for path in [
        "/apis/networking.k8s.io/v1/ingresses",
        "/apis/networking.k8s.io/v1/ingressclasses",
    ] {
        let (status, body) = as_node(&cluster, node, "GET", path, MERGE, Value::Null).await;
        assert_eq!(status, 200, "{path}: {body}");
    }
    let address = json!({"status": {"loadBalancer": {"ingress": [{"ip": "127.0.0.1"}]}}});
    let (status, body) = as_node(
        &cluster,
        node,
        "PATCH",
        "/apis/networking.k8s.io/v1/namespaces/default/ingresses/web/status",
        MERGE,
        address,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let rerouted =
        json!({"spec": {"defaultBackend": {"service": {"name": "evil", "port": {"number": 80}}}}});
    let (status, body) = as_node(
        &cluster,
        node,
        "PATCH",
        "/apis/networking.k8s.io/v1/namespaces/default/ingresses/web",
        MERGE,
        rerouted,
    )
    .await;
    assert_eq!(status, 403, "{body}");
}
