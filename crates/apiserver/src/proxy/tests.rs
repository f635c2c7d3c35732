//! The proxy subresources: URL forms and endpoint choice as pure functions, then the whole
//! path through the API router to a fake node API (an in-process router), with the node's
//! answers and refusals, on `TestCluster`.

use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::response::IntoResponse;
use serde_json::{Value, json};
use tower::ServiceExt;

use super::*;
use crate::nodes::{Nodes, fake};
use crate::test_cluster::TestCluster;

#[test]
fn proxy_paths_name_the_object_the_port_and_the_rest() {
    let target = ProxyTarget::parse("/api/v1/namespaces/ns/pods/web-0/proxy/").expect("pod proxy");
    assert_eq!((target.name.as_str(), target.port.as_str()), ("web-0", ""));
    assert_eq!(target.path, "/");
    assert!(!target.service);
    let target = ProxyTarget::parse("/api/v1/namespaces/ns/services/https:web:443/proxy/a/b")
        .expect("service proxy");
    assert_eq!(
        (
            target.name.as_str(),
            target.port.as_str(),
            target.path.as_str()
        ),
        ("web", "443", "/a/b")
    );
    assert!(target.service);
    assert_eq!(
        ProxyTarget::parse("/api/v1/namespaces/ns/pods/web-0/proxy")
            .expect("bare")
            .path,
        "/"
    );
    assert!(ProxyTarget::parse("/api/v1/namespaces/ns/pods/web-0/exec").is_none());
    assert!(ProxyTarget::parse("/api/v1/namespaces/ns/pods/web-0/proxyx").is_none());
}

#[test]
fn a_service_port_is_named_or_numbered_and_leads_to_the_endpoints_port() {
    let service =
        json!({"spec": {"ports": [{"name": "http", "port": 80}, {"name": "admin", "port": 9000}]}});
    assert_eq!(
        service_port_name(&service, "web", "admin").expect("named"),
        "admin"
    );
    assert_eq!(
        service_port_name(&service, "web", "9000").expect("numbered"),
        "admin"
    );
    assert_eq!(service_port_name(&service, "web", "").expect("unnamed"), "");
    let refused = service_port_name(&service, "web", "81").expect_err("no such port");
    assert_eq!(
        (refused.code, refused.message.as_str()),
        (503, "no service port 81 found for service \"web\"")
    );
    let endpoints = json!({"subsets": [
        {"addresses": [
            {"ip": "10.244.0.5", "targetRef": {"kind": "Pod", "name": "web-0", "namespace": "ns"}},
            {"ip": "10.244.0.6", "targetRef": {"kind": "Pod", "name": "web-1", "namespace": "other"}},
            {"ip": "10.244.0.7", "targetRef": {"kind": "Node", "name": "n1", "namespace": "ns"}},
            {"ip": "not an address"},
            {"ip": "10.96.0.1"}],
         "notReadyAddresses": [{"ip": "10.244.0.8", "targetRef": {"kind": "Pod", "name": "web-2", "namespace": "ns"}}],
         "ports": [{"name": "http", "port": 8080}, {"name": "admin", "port": 9001}]},
        {"addresses": [{"ip": "10.244.0.9"}], "ports": [{"name": "other", "port": 1}]},
    ]});
    let endpoint = |ip: &str, port, pod: Option<&str>| Endpoint {
        ip: ip.parse().expect("ip"),
        port,
        pod: pod.map(str::to_string),
    };
    assert_eq!(
        ready_endpoints(&endpoints, "admin", "ns"),
        [
            endpoint("10.244.0.5", 9001, Some("web-0")),
            endpoint("10.244.0.6", 9001, None),
            endpoint("10.244.0.7", 9001, None),
            endpoint("10.96.0.1", 9001, None),
        ]
    );
    assert!(ready_endpoints(&endpoints, "", "ns").is_empty());
    assert!(ready_endpoints(&json!({}), "http", "ns").is_empty());
    let pod =
        json!({"spec": {"containers": [{"ports": [{"name": "web", "containerPort": 8000}]}]}});
    assert_eq!(pod_port(&pod, "web"), Some(8000));
    assert_eq!(pod_port(&pod, ""), Some(8000));
    assert_eq!(
        pod_port(&json!({"spec": {"containers": [{}]}}), ""),
        Some(80)
    );
    assert_eq!(pod_port(&pod, "nope"), None);
}

#[test]
fn only_end_to_end_headers_are_passed_on_and_credentials_never_to_the_pod() {
    let mut headers = HeaderMap::new();
    for (name, value) in [
        ("connection", "keep-alive, x-hop"),
        ("x-hop", "1"),
        ("transfer-encoding", "chunked"),
        ("authorization", "Bearer admin"),
        ("impersonate-extra-scopes", "all"),
        ("accept", "text/html"),
        (RELAYED_FROM_POD, "true"),
    ] {
        headers.insert(
            HeaderName::from_static(name),
            HeaderValue::from_static(value),
        );
    }
    let names = |kept: HeaderMap| {
        let mut names: Vec<String> = kept.keys().map(|n| n.to_string()).collect();
        names.sort();
        names
    };
    assert_eq!(names(end_to_end(&headers, true)), ["accept"]);
    assert_eq!(
        names(end_to_end(&headers, false)),
        [
            "accept",
            "authorization",
            "impersonate-extra-scopes",
            RELAYED_FROM_POD
        ]
    );
    assert!(!is_upgrade(&headers));
    headers.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    assert!(is_upgrade(&headers));
}

/// A node API as petset's node answers the proxy path: the pod's answers (marked) echo what
/// arrived; gone-0 is one the node does not have, its refusal unmarked.
fn fake_node() -> axum::Router {
    axum::Router::new().route(
        "/podProxy/{*rest}",
        axum::routing::any(|request: Request<Body>| async move {
            let path = request.uri().path().to_string();
            if path.starts_with("/podProxy/default/gone-0/") {
                return (StatusCode::NOT_FOUND, "pod does not exist").into_response();
            }
            if path.ends_with("/echo") {
                return switch_to_echo(request);
            }
            if path.ends_with("/missing.html") {
                let marked = [(RELAYED_FROM_POD, "true")];
                return (StatusCode::NOT_FOUND, marked, "the pod's own 404 page").into_response();
            }
            let seen = crate::test_cluster::echo(request).await;
            (
                [
                    (RELAYED_FROM_POD, "true"),
                    ("content-type", "application/json"),
                ],
                seen.to_string(),
            )
                .into_response()
        }),
    )
}

/// The pod's answer to an upgrade: 101, then every byte back as it came.
fn switch_to_echo(mut request: Request<Body>) -> axum::response::Response {
    let upgrade = hyper::upgrade::on(&mut request);
    tokio::spawn(async move {
        let Ok(upgraded) = upgrade.await else { return };
        let (mut reader, mut writer) = tokio::io::split(hyper_util::rt::TokioIo::new(upgraded));
        let _ = tokio::io::copy(&mut reader, &mut writer).await;
    });
    axum::response::Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header(header::CONNECTION, "upgrade")
        .header(header::UPGRADE, "echo")
        .header(RELAYED_FROM_POD, "true")
        .body(Body::empty())
        .expect("response")
}

/// Pods: web-0 (on n1, the reachable node, port `web` 8000), far-0 (on n2, which the API
/// server cannot reach), pending-0 (no node, no address), lost-0 (an address, no node),
/// gone-0 (on n1, which does not have it).
/// Services over them, with hand-made Endpoints.
async fn cluster() -> TestCluster {
    let cluster = fake::cluster(fake_node()).await;
    let ports = json!([{"name": "web", "containerPort": 8000}]);
    for (pod, node, ip) in [
        ("web-0", Some("n1"), Some("10.244.0.5")),
        ("far-0", Some("n2"), Some("10.244.1.5")),
        ("pending-0", None, None),
        ("lost-0", None, Some("10.244.0.9")),
        ("gone-0", Some("n1"), Some("10.244.0.7")),
    ] {
        fake::pod(&cluster, pod, node, ports.clone()).await;
        if let Some(ip) = ip {
            let (code, patched) = cluster
                .send(
                    "PATCH",
                    &format!("{PODS}/{pod}/status"),
                    "application/merge-patch+json",
                    json!({"status": {"podIP": ip, "podIPs": [{"ip": ip}]}}),
                )
                .await;
            assert_eq!(code, 200, "{patched}");
        }
    }
    let web = json!({"kind": "Pod", "name": "web-0", "namespace": "default"});
    let far = json!({"kind": "Pod", "name": "far-0", "namespace": "default"});
    let lost = json!({"kind": "Pod", "name": "lost-0", "namespace": "default"});
    let nosuch = json!({"kind": "Pod", "name": "nosuch", "namespace": "default"});
    for (service, addresses) in [
        ("web", json!([{"ip": "10.244.0.5", "targetRef": web}])),
        // Only web-0's endpoint is a pod that has its address.
        (
            "mixed",
            json!([
                {"ip": "10.244.0.9", "targetRef": nosuch},
                {"ip": "10.244.0.5", "targetRef": web},
                {"ip": "10.244.0.8", "targetRef": lost},
                {"ip": "10.244.0.5"},
            ]),
        ),
        ("far", json!([{"ip": "10.244.1.5", "targetRef": far}])),
        ("outside", json!([{"ip": "192.0.2.1"}])),
        ("empty", json!([])),
    ] {
        let body = json!({"metadata": {"name": service}, "spec": {"clusterIP": "None",
            "ports": [{"name": "http", "port": 80, "targetPort": 8000}]}});
        fake::create(&cluster, SERVICES, body).await;
        let subsets = if addresses == json!([]) {
            json!([])
        } else {
            json!([{"addresses": addresses, "ports": [{"name": "http", "port": 8000}]}])
        };
        let endpoints = json!({"metadata": {"name": service}, "subsets": subsets});
        fake::create(&cluster, "/api/v1/namespaces/default/endpoints", endpoints).await;
    }
    cluster
}

/// One request through the API router: the status, the body as text.
async fn ask(cluster: &TestCluster, request: Request<Body>) -> (StatusCode, String) {
    let (status, body) =
        crate::test_cluster::answer(crate::internal_router(cluster.state.clone()), request).await;
    (status, String::from_utf8_lossy(&body).into_owned())
}

async fn get(cluster: &TestCluster, path: &str) -> (StatusCode, Value) {
    let request = Request::get(path).body(Body::empty()).expect("request");
    let (status, body) = ask(cluster, request).await;
    (status, serde_json::from_str(&body).unwrap_or(Value::Null))
}

const PODS: &str = "/api/v1/namespaces/default/pods";
const SERVICES: &str = "/api/v1/namespaces/default/services";

#[tokio::test]
async fn a_pod_proxy_goes_to_the_pods_node_with_its_uid_port_path_and_query() {
    let cluster = cluster().await;
    let (_, pod) = cluster
        .json("GET", &format!("{PODS}/web-0"), Value::Null)
        .await;
    let uid = pod["metadata"]["uid"].as_str().expect("uid").to_string();
    for (url, port, rest) in [
        ("web-0/proxy", 8000, "/"),
        ("web-0/proxy/", 8000, "/"),
        ("web-0:web/proxy/a%20b/c?x=1&x=2", 8000, "/a%20b/c?x=1&x=2"),
        ("web-0:9090/proxy/metrics", 9090, "/metrics"),
        ("https:web-0:8443/proxy/", 8443, "/"),
    ] {
        let (code, seen) = get(&cluster, &format!("{PODS}/{url}")).await;
        assert_eq!(code, StatusCode::OK, "{url}: {seen}");
        assert_eq!(
            seen["uri"],
            format!("/podProxy/default/web-0/{uid}/{port}{rest}"),
            "{url}"
        );
    }
}

#[tokio::test]
async fn the_request_is_passed_on_without_the_callers_credentials() {
    let cluster = cluster().await;
    let request = Request::post(format!("{PODS}/web-0/proxy/form"))
        .header("authorization", "Bearer the-admin-token")
        .header("impersonate-user", "someone")
        .header("x-custom", "kept")
        .body(Body::from("a=1"))
        .expect("request");
    let (code, seen) = ask(&cluster, request).await;
    assert_eq!(code, StatusCode::OK, "{seen}");
    let seen: Value = serde_json::from_str(&seen).expect("echo");
    assert_eq!(seen["method"], "POST");
    assert_eq!(seen["body"], "a=1");
    assert_eq!(seen["headers"]["x-custom"], "kept");
    assert!(seen["headers"].get("authorization").is_none(), "{seen}");
    assert!(seen["headers"].get("impersonate-user").is_none(), "{seen}");
}

#[tokio::test]
async fn a_service_proxy_goes_to_the_pod_of_a_ready_endpoint_on_its_port() {
    let cluster = cluster().await;
    let (_, pod) = cluster
        .json("GET", &format!("{PODS}/web-0"), Value::Null)
        .await;
    let uid = pod["metadata"]["uid"].as_str().expect("uid").to_string();
    // Every turn of the round ends at the one endpoint that is a pod with its address.
    for url in [
        "web:http/proxy/index.html",
        "web:80/proxy/index.html",
        "http:web:http/proxy/index.html",
        "mixed:http/proxy/index.html",
        "mixed:http/proxy/index.html",
        "mixed:http/proxy/index.html",
        "mixed:http/proxy/index.html",
    ] {
        let (code, seen) = get(&cluster, &format!("{SERVICES}/{url}")).await;
        assert_eq!(code, StatusCode::OK, "{url}: {seen}");
        assert_eq!(
            seen["uri"],
            format!("/podProxy/default/web-0/{uid}/8000/index.html"),
            "{url}"
        );
    }
}

#[tokio::test]
async fn the_pods_own_answer_comes_back_as_it_is_and_the_nodes_refusal_as_a_status() {
    let cluster = cluster().await;
    let request = Request::get(format!("{PODS}/web-0/proxy/missing.html"))
        .body(Body::empty())
        .expect("request");
    let response = crate::internal_router(cluster.state.clone())
        .oneshot(request)
        .await
        .expect("infallible");
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    assert!(response.headers().get(RELAYED_FROM_POD).is_none());
    let body = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .expect("body");
    assert_eq!(&body[..], b"the pod's own 404 page");

    // The node does not have the pod (its watch lags, say): its refusal, as a Status.
    let (code, status) = get(&cluster, &format!("{PODS}/gone-0/proxy/")).await;
    assert_eq!(code, StatusCode::NOT_FOUND, "{status}");
    assert_eq!(status["kind"], "Status");
    assert_eq!(status["message"], "pod does not exist");
}

#[tokio::test]
async fn proxies_that_cannot_be_served_get_upstreams_refusals() {
    let cluster = cluster().await;
    for (url, code, message) in [
        (
            format!("{PODS}/nosuch/proxy/"),
            StatusCode::NOT_FOUND,
            "pods \"nosuch\" not found",
        ),
        (
            format!("{PODS}/pending-0/proxy/"),
            StatusCode::BAD_REQUEST,
            "address not allowed: pod pending-0 has no IP yet",
        ),
        (
            format!("{PODS}/lost-0/proxy/"),
            StatusCode::BAD_REQUEST,
            "pod lost-0 does not have a host assigned",
        ),
        (
            format!("{PODS}/web-0:nope/proxy/"),
            StatusCode::BAD_REQUEST,
            "no port named \"nope\" in pod web-0",
        ),
        (
            format!("{PODS}/far-0/proxy/"),
            StatusCode::SERVICE_UNAVAILABLE,
            "node \"n2\" is not reachable from this API server",
        ),
        (
            format!("{SERVICES}/far:http/proxy/"),
            StatusCode::SERVICE_UNAVAILABLE,
            "node \"n2\" is not reachable from this API server",
        ),
        (
            format!("{SERVICES}/nosuch/proxy/"),
            StatusCode::NOT_FOUND,
            "services \"nosuch\" not found",
        ),
        (
            format!("{SERVICES}/empty/proxy/"),
            StatusCode::SERVICE_UNAVAILABLE,
            "no endpoints available for service \"empty\"",
        ),
        // The Service's one port is named: a URL without a port means an unnamed one.
        (
            format!("{SERVICES}/web/proxy/"),
            StatusCode::SERVICE_UNAVAILABLE,
            "no endpoints available for service \"web\"",
        ),
        (
            format!("{SERVICES}/https:web:admin/proxy/"),
            StatusCode::SERVICE_UNAVAILABLE,
            "no endpoints available for service \"https:web:admin\"",
        ),
        (
            format!("{SERVICES}/web:81/proxy/"),
            StatusCode::SERVICE_UNAVAILABLE,
            "no service port 81 found for service \"web\"",
        ),
        // An address that is no pod's (the API server's own, say) is never proxied to.
        (
            format!("{SERVICES}/outside:http/proxy/"),
            StatusCode::SERVICE_UNAVAILABLE,
            "no endpoints available for service \"outside:http\"",
        ),
    ] {
        let (got, status) = get(&cluster, &url).await;
        assert_eq!(got, code, "{url}: {status}");
        assert_eq!(status["message"], message, "{url}");
    }
}

#[tokio::test]
async fn without_node_connections_a_proxy_is_unavailable() {
    let mut cluster = cluster().await;
    cluster.state = cluster.state.clone().with_nodes(Nodes::default());
    let (code, status) = get(&cluster, &format!("{PODS}/web-0/proxy/")).await;
    assert_eq!(code, StatusCode::SERVICE_UNAVAILABLE, "{status}");
    assert_eq!(
        status["message"],
        "node \"n1\" is not reachable: this API server has no node connections"
    );
}

#[tokio::test]
async fn an_upgrade_is_relayed_to_the_pod_and_back() {
    let cluster = cluster().await;
    let router = crate::internal_router(cluster.state.clone());
    let (status, headers, echoed) =
        crate::test_cluster::upgrade_to_echo(router, &format!("{PODS}/web-0/proxy/echo")).await;
    assert_eq!(status, StatusCode::SWITCHING_PROTOCOLS);
    assert_eq!(headers[header::UPGRADE], "echo");
    assert!(headers.get(RELAYED_FROM_POD).is_none());
    assert_eq!(echoed, b"ping");
}
