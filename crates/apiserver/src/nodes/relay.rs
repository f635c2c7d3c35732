//! Relaying a pod's streams to its node's API (upstream's `UpgradeAwareHandler`): the API
//! server finds the node from the pod's `spec.nodeName` and the Node's published endpoint,
//! opens a connection through the [`NodeConnector`], and forwards the request. A log comes back
//! as a streamed body; an upgrade (exec, attach, port-forward) is relayed as bytes both ways
//! once the node answered 101. Any other answer of the node becomes a `Status` with its code
//! and text.

use axum::body::Body;
use axum::http::request::Parts;
use axum::http::{
    HeaderMap, HeaderName, HeaderValue, Method, Request, Response, StatusCode, header,
};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use petset_api::ApiError;
use serde_json::Value;

use super::connector::{ConnectError, NodeConnector, NodeEndpoint};
use super::location::{self, Stream};
use crate::ApiState;
use crate::handlers::Query;
use crate::registry::Scope;

/// The most of a node's refusal that is read for its message.
const REFUSAL_BYTES: usize = 64 * 1024;

/// The request headers an upgrade needs on the node's side.
const UPGRADE_HEADERS: [&str; 6] = [
    "connection",
    "upgrade",
    "sec-websocket-key",
    "sec-websocket-version",
    "sec-websocket-protocol",
    "x-stream-protocol-version",
];

/// Sends one request to a node's API and returns its answer (the connection lives as long as
/// its body or upgrade needs it).
pub async fn send(
    connector: &dyn NodeConnector,
    endpoint: &NodeEndpoint,
    mut request: Request<Body>,
) -> Result<Response<Incoming>, ConnectError> {
    let protocol = |detail: String| ConnectError::Protocol {
        node: endpoint.node.clone(),
        detail,
    };
    let stream = connector.connect(endpoint).await?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| protocol(e.to_string()))?;
    tokio::spawn(async move {
        if let Err(error) = connection.with_upgrades().await {
            tracing::debug!(%error, "node API connection ended with an error");
        }
    });
    let host = match &endpoint.address {
        Some(address) => format!("{address}:{}", endpoint.port),
        None => endpoint.node.clone(),
    };
    if let Ok(host) = HeaderValue::from_str(&host) {
        request.headers_mut().insert(header::HOST, host);
    }
    sender
        .send_request(request)
        .await
        .map_err(|e| protocol(e.to_string()))
}

/// The connection a node handed over after answering 101.
pub async fn upgraded(
    response: Response<Incoming>,
) -> Result<TokioIo<hyper::upgrade::Upgraded>, hyper::Error> {
    hyper::upgrade::on(response).await.map(TokioIo::new)
}

/// The API's error for a node's refusal: its code, and its text (or the message of a `Status`)
/// as the message.
pub(crate) async fn refusal(response: Response<Incoming>) -> ApiError {
    let status = response.status();
    let body = axum::body::to_bytes(Body::new(response.into_body()), REFUSAL_BYTES)
        .await
        .unwrap_or_default();
    let message = serde_json::from_slice::<Value>(&body)
        .ok()
        .filter(|v| v.get("kind").and_then(Value::as_str) == Some("Status"))
        .and_then(|v| v.get("message").and_then(Value::as_str).map(str::to_string))
        .unwrap_or_else(|| String::from_utf8_lossy(&body).trim().to_string());
    let reason = match status.as_u16() {
        400 => "BadRequest",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "NotFound",
        405 => "MethodNotAllowed",
        409 => "Conflict",
        422 => "Invalid",
        429 => "TooManyRequests",
        503 => "ServiceUnavailable",
        504 => "Timeout",
        _ => "InternalError",
    };
    ApiError {
        code: status.as_u16(),
        reason,
        message,
        details: None,
    }
}

pub(crate) fn unreachable(error: ConnectError) -> ApiError {
    ApiError::service_unavailable(error.to_string())
}

/// The endpoint of the node `node`, and the connector that reaches it.
pub(crate) async fn node_of<'a>(
    state: &'a ApiState,
    node: &str,
) -> Result<(&'a dyn NodeConnector, NodeEndpoint), ApiError> {
    let resource = petset_api::resources::find("", "v1", "nodes").ok_or_else(ApiError::no_route)?;
    let scope = Scope {
        resource,
        namespace: None,
    };
    let node_object = state.registry.get(scope, node).await?;
    let connector = state.nodes.connector.as_deref().ok_or_else(|| {
        ApiError::service_unavailable(format!(
            "node {node:?} is not reachable: this API server has no node connections"
        ))
    })?;
    Ok((connector, NodeEndpoint::of(&node_object)))
}

/// `pods/log`: the node's answer, streamed as it comes (a follow lasts as long as both ends).
pub(crate) async fn log(
    state: &ApiState,
    pod: &Value,
    query: &Query,
) -> Result<axum::response::Response, ApiError> {
    let path = location::log_location(pod, query)?;
    let node = location::node_of(pod).unwrap_or_default();
    let (connector, endpoint) = node_of(state, node).await?;
    let request = Request::get(path)
        .body(Body::empty())
        .map_err(|e| ApiError::internal(e.to_string()))?;
    let response = send(connector, &endpoint, request)
        .await
        .map_err(unreachable)?;
    if response.status() != StatusCode::OK {
        return Err(refusal(response).await);
    }
    axum::response::Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "text/plain")
        .body(Body::new(response.into_body()))
        .map_err(|e| ApiError::internal(e.to_string()))
}

/// `pods/exec`, `attach` and `portforward`: the upgrade is forwarded to the node, and once it
/// answers 101 so is the client's, and the bytes are copied both ways until either side ends.
pub(crate) async fn stream(
    state: &ApiState,
    stream: Stream,
    pod: &Value,
    query: &Query,
    mut parts: Parts,
) -> Result<axum::response::Response, ApiError> {
    let path = location::stream_location(stream, pod, query)?;
    let node = location::node_of(pod).unwrap_or_default();
    let (connector, endpoint) = node_of(state, node).await?;
    let client_upgrade = parts.extensions.remove::<hyper::upgrade::OnUpgrade>();
    let mut request = Request::builder()
        .method(if parts.method == Method::POST {
            Method::POST
        } else {
            Method::GET
        })
        .uri(path)
        .body(Body::empty())
        .map_err(|e| ApiError::internal(e.to_string()))?;
    copy_headers(&parts.headers, request.headers_mut());
    let response = send(connector, &endpoint, request)
        .await
        .map_err(unreachable)?;
    if response.status() != StatusCode::SWITCHING_PROTOCOLS {
        return Err(refusal(response).await);
    }
    let Some(client_upgrade) = client_upgrade else {
        // Over HTTP/2 there is no upgrade to relay to (kubectl upgrades over HTTP/1.1).
        return Err(ApiError::bad_request("Upgrade request required"));
    };
    switch(response, client_upgrade)
}

/// Answers the client's upgrade with the node's 101 (and its headers), then copies the bytes
/// both ways until either side ends.
pub(crate) fn switch(
    response: Response<Incoming>,
    client_upgrade: hyper::upgrade::OnUpgrade,
) -> Result<axum::response::Response, ApiError> {
    let mut answer = axum::response::Response::builder().status(StatusCode::SWITCHING_PROTOCOLS);
    for (name, value) in response.headers() {
        answer = answer.header(name, value);
    }
    tokio::spawn(async move {
        let (node_side, client_side) = match tokio::join!(upgraded(response), client_upgrade) {
            (Ok(node_side), Ok(client_side)) => (node_side, client_side),
            (Err(error), _) | (_, Err(error)) => {
                tracing::debug!(%error, "a stream upgrade failed");
                return;
            }
        };
        let (mut node_side, mut client_side) = (node_side, TokioIo::new(client_side));
        if let Err(error) = tokio::io::copy_bidirectional(&mut client_side, &mut node_side).await {
            tracing::debug!(%error, "a relayed stream ended with an error");
        }
    });
    answer
        .body(Body::empty())
        .map_err(|e| ApiError::internal(e.to_string()))
}

fn copy_headers(from: &HeaderMap, to: &mut HeaderMap) {
    for name in UPGRADE_HEADERS {
        let name = HeaderName::from_static(name);
        for value in from.get_all(&name) {
            to.append(name.clone(), value.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use axum::http::StatusCode;
    use axum::routing::get;
    use serde_json::Value;
    use serde_json::json;

    use crate::nodes::fake;
    use crate::test_cluster::TestCluster;

    /// A node API that answers a log and refuses every exec, as a kubelet that lost the pod.
    fn fake_node() -> axum::Router {
        axum::Router::new()
            .route(
                "/containerLogs/default/web-0/main",
                get(|| async { "line one\nline two\n" }),
            )
            .route(
                "/exec/default/web-0/{uid}/main",
                get(|| async { (axum::http::StatusCode::NOT_FOUND, "pod does not exist") }),
            )
    }

    async fn cluster() -> TestCluster {
        let cluster = fake::cluster(fake_node()).await;
        for (pod, node) in [
            ("web-0", Some("n1")),
            ("pending-0", None),
            ("far-0", Some("n2")),
        ] {
            fake::pod(&cluster, pod, node, json!([])).await;
        }
        cluster
    }

    #[tokio::test]
    async fn a_log_comes_from_the_pods_node() {
        let cluster = cluster().await;
        let request = axum::http::Request::get("/api/v1/namespaces/default/pods/web-0/log")
            .body(Body::empty())
            .expect("request");
        let (status, body) =
            crate::test_cluster::answer(crate::internal_router(cluster.state.clone()), request)
                .await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(&body[..], b"line one\nline two\n");
    }

    #[tokio::test]
    async fn the_nodes_refusal_is_a_status_with_its_code_and_text() {
        let cluster = cluster().await;
        let (code, status) = cluster
            .json(
                "GET",
                "/api/v1/namespaces/default/pods/web-0/exec?command=ls",
                Value::Null,
            )
            .await;
        assert_eq!(code, 404);
        assert_eq!(status["reason"], "NotFound");
        assert_eq!(status["message"], "pod does not exist");
    }

    #[tokio::test]
    async fn a_pod_without_a_node_or_on_an_unreachable_one_is_refused_before_dialing() {
        let cluster = cluster().await;
        let (code, status) = cluster
            .json(
                "GET",
                "/api/v1/namespaces/default/pods/pending-0/attach",
                Value::Null,
            )
            .await;
        assert_eq!(code, 400);
        assert_eq!(
            status["message"],
            "pod pending-0 does not have a host assigned"
        );
        let (code, status) = cluster
            .json(
                "GET",
                "/api/v1/namespaces/default/pods/far-0/log",
                Value::Null,
            )
            .await;
        assert_eq!(code, 503, "{status}");
        assert_eq!(
            status["message"],
            "node \"n2\" is not reachable from this API server"
        );
    }
}
