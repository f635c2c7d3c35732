//! The node's proxy relay against a pod stand-in on loopback (the only address a test may
//! dial): what is passed on, what is not, upgrades, and refusals.

use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use super::*;
use crate::kubelet::{NodeRuntime, auth};

/// A pod's web server on loopback that answers every request with what it received, as JSON,
/// and headers of its own (a hop-by-hop one, and a forged node marker).
async fn echo_pod() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let address = listener.local_addr().expect("address");
    let echo = axum::Router::new().fallback(|request: Request<Body>| async move {
        let seen = petset_apiserver::test_cluster::echo(request).await;
        (
            StatusCode::IM_A_TEAPOT,
            [
                ("keep-alive", "timeout=5"),
                (RELAYED_FROM_POD, "forged"),
                ("x-pod", "yes"),
            ],
            seen.to_string(),
        )
    });
    tokio::spawn(async move {
        let _ = axum::serve(listener, echo).await;
    });
    address
}

async fn body_json(response: Response) -> Value {
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .expect("body");
    serde_json::from_slice(&bytes).expect("json")
}

#[tokio::test]
async fn the_request_reaches_the_pod_as_it_came_and_its_answer_comes_back_marked() {
    let pod = echo_pod().await;
    let request = Request::builder()
        .method(Method::PUT)
        .uri("/podProxy/default/web-0/u-1/80/a%20b/c?x=1&y=2")
        .header(header::CONNECTION, "keep-alive, x-hop")
        .header("x-hop", "of this connection only")
        .header(header::TE, "trailers")
        .header("x-end", "to the pod")
        .header(RELAYED_FROM_POD, "forged by the client")
        .body(Body::from("the body"))
        .expect("request");
    let proxied = ProxyPath::parse(request.uri()).expect("proxy path");
    let response = forward(pod, &proxied.path_and_query, request)
        .await
        .expect("relayed");
    assert_eq!(response.status(), StatusCode::IM_A_TEAPOT);
    let headers = response.headers().clone();
    assert_eq!(headers[RELAYED_FROM_POD], "true");
    assert_eq!(headers.get_all(RELAYED_FROM_POD).iter().count(), 1);
    assert_eq!(headers["x-pod"], "yes");
    assert!(headers.get("keep-alive").is_none(), "{headers:?}");
    let seen = body_json(response).await;
    assert_eq!(seen["method"], "PUT");
    assert_eq!(seen["uri"], "/a%20b/c?x=1&y=2");
    assert_eq!(seen["body"], "the body");
    assert_eq!(seen["headers"]["x-end"], "to the pod");
    assert_eq!(seen["headers"]["host"], pod.to_string());
    for dropped in ["x-hop", "te", RELAYED_FROM_POD] {
        assert!(seen["headers"].get(dropped).is_none(), "{dropped}: {seen}");
    }
}

#[test]
fn proxy_paths_name_the_pod_its_uid_the_port_and_the_rest() {
    let parse = |uri: &str| ProxyPath::parse(&uri.parse().expect("uri"));
    let proxied = parse("/podProxy/ns/web-0/u-1/8080").expect("no rest");
    assert_eq!(
        (
            proxied.target.namespace.as_str(),
            proxied.target.pod.as_str(),
            proxied.target.uid.as_deref(),
            proxied.port,
            proxied.path_and_query.as_str()
        ),
        ("ns", "web-0", Some("u-1"), 8080, "/")
    );
    assert_eq!(
        parse("/podProxy/ns/web-0/u-1/80/")
            .expect("root")
            .path_and_query,
        "/"
    );
    assert_eq!(
        parse("/podProxy/ns/web-0/u-1/80//x/?q")
            .expect("rest")
            .path_and_query,
        "//x/?q"
    );
    for bad in [
        "/podProxy/ns/web-0/u-1",
        "/podProxy/ns//u-1/80/",
        "/podProxy/ns/web-0/u-1/http/",
        "/podProxy/ns/web-0/u-1/0/",
        "/podProxy/ns/web-0/u-1/65536/",
    ] {
        let refused = parse(bad).expect_err(bad);
        assert_eq!(refused.code, StatusCode::BAD_REQUEST, "{bad}");
    }
}

#[tokio::test]
async fn a_pod_that_does_not_answer_is_the_upstream_503() {
    let closed = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let address = closed.local_addr().expect("address");
    drop(closed);
    let request = Request::get("/").body(Body::empty()).expect("request");
    let refused = forward(address, "/", request).await.expect_err("refused");
    assert_eq!(refused.code, StatusCode::SERVICE_UNAVAILABLE);
    assert!(
        refused.message.starts_with(&format!(
            "error trying to reach service: dial tcp {address}: "
        )),
        "{}",
        refused.message
    );
}

/// A pod that switches to an echo protocol on request and then sends back what it reads.
async fn upgrading_pod() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let address = listener.local_addr().expect("address");
    tokio::spawn(async move {
        let Ok((mut connection, _)) = listener.accept().await else {
            return;
        };
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            if connection.read_exact(&mut byte).await.is_err() {
                return;
            }
            head.push(byte[0]);
        }
        let head = String::from_utf8_lossy(&head).to_ascii_lowercase();
        if !head.contains("upgrade: echo") || !head.contains("connection: upgrade") {
            let _ = connection
                .write_all(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n")
                .await;
            return;
        }
        let _ = connection
            .write_all(
                b"HTTP/1.1 101 Switching Protocols\r\nconnection: upgrade\r\nupgrade: echo\r\n\r\n",
            )
            .await;
        let mut buffer = [0u8; 64];
        while let Ok(read) = connection.read(&mut buffer).await {
            if read == 0 || connection.write_all(&buffer[..read]).await.is_err() {
                return;
            }
        }
    });
    address
}

#[tokio::test]
async fn an_upgrade_is_relayed_both_ways() {
    let pod = upgrading_pod().await;
    // The node's side of a connection from the API server.
    let node = axum::Router::new().fallback(move |request: Request<Body>| async move {
        forward(pod, "/", request)
            .await
            .unwrap_or_else(IntoResponse::into_response)
    });
    let (status, headers, echoed) =
        petset_apiserver::test_cluster::upgrade_to_echo(node, "/").await;
    assert_eq!(status, StatusCode::SWITCHING_PROTOCOLS);
    assert_eq!(headers[header::UPGRADE], "echo");
    assert_eq!(headers[RELAYED_FROM_POD], "true");
    assert_eq!(echoed, b"ping");
}

#[tokio::test]
async fn a_simulated_nodes_pods_are_never_dialed_and_strangers_never_get_in() {
    let (kubelet, _) = Kubelet::new("n1", NodeRuntime::Simulated);
    let ask = |peer: Option<auth::Peer>| {
        let mut request = Request::get("/podProxy/default/web-0/u-1/80/")
            .body(Body::empty())
            .expect("request");
        if let Some(peer) = peer {
            request.extensions_mut().insert(peer);
        }
        petset_apiserver::test_cluster::answer(kubelet.router(), request)
    };
    let (code, text) = ask(Some(auth::Peer::InProcess)).await;
    assert_eq!(code, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        String::from_utf8_lossy(&text),
        "pods \"web-0\": its node runs no processes here (a simulated node), so there is nothing to proxy to"
    );
    let (code, _) = ask(None).await;
    assert_eq!(code, StatusCode::UNAUTHORIZED);
    let (code, text) = ask(Some(auth::Peer::Certificate("system:node:n2".into()))).await;
    assert_eq!(code, StatusCode::FORBIDDEN);
    assert_eq!(
        String::from_utf8_lossy(&text),
        "Forbidden (user=system:node:n2, verb=get, resource=nodes, subresource=proxy)"
    );
}
