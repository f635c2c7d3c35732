//! The in-process test tier: the API's whole router over an in-memory store, driven with plain
//! HTTP requests or a `kube::Client` and no sockets, so API and controller behaviour is tested
//! in milliseconds. Other crates use it through the `test-cluster` feature (dev-dependency).
//!
//! Its clock stands still at `START` (until `advance`) and uids count up from
//! `00000000-0000-0000-0000-000000000001`, so answers can be compared as snapshots.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, header};
use http_body_util::BodyExt;
use jiff::{SignedDuration, Timestamp};
use petset_store::LocalStore;
use serde_json::Value;
use tower::ServiceExt;

use crate::ApiState;
use crate::clock::{FixedClock, SequentialUids};

/// Where a test cluster's clock starts.
pub const START: &str = "2026-01-01T00:00:00Z";

/// An API server with the objects every cluster starts with, its watch cache and its own
/// controllers (garbage collector, namespace lifecycle); both stop when it is dropped.
pub struct TestCluster {
    pub state: ApiState,
    clock: Arc<FixedClock>,
    background: Vec<tokio::task::JoinHandle<()>>,
}

impl TestCluster {
    pub async fn start() -> Self {
        let start: Timestamp = START.parse().expect("START is a timestamp");
        let clock = Arc::new(FixedClock::at(start));
        let state = ApiState::new(Arc::new(LocalStore::in_memory()), None)
            .with_clock(clock.clone(), Arc::new(SequentialUids::default()));
        state.registry().bootstrap().await.expect("bootstrap");
        let background = vec![state.spawn_watch_cache(), crate::spawn_controllers(&state)];
        Self {
            state,
            clock,
            background,
        }
    }

    /// Moves the cluster's clock on by `seconds`.
    pub fn advance(&self, seconds: i64) {
        self.clock.advance(SignedDuration::from_secs(seconds));
    }

    /// A client of this API, as the controllers and the node use in `petset up` (namespace
    /// `default`).
    pub fn client(&self) -> kube::Client {
        kube::Client::new(crate::internal_router(self.state.clone()), "default")
    }

    /// A client of the network's API (authenticated and authorized) presenting `certificate`,
    /// as a node's agent does over TLS (namespace `default`).
    pub fn client_as(&self, certificate: crate::auth::ClientCertificate) -> kube::Client {
        let router = crate::router(self.state.clone()).layer(axum::Extension(certificate));
        kube::Client::new(router, "default")
    }

    /// One request (`body` null: no body); the status code and the answer as JSON (`null`
    /// when it is not JSON).
    pub async fn send(
        &self,
        method: &str,
        path: &str,
        content_type: &str,
        body: Value,
    ) -> (u16, Value) {
        self.exchange(method, path, content_type, "application/json", body)
            .await
    }

    /// A GET answered as a Table, as `kubectl get` asks for it.
    pub async fn table(&self, path: &str) -> (u16, Value) {
        let accept = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json";
        self.exchange("GET", path, "application/json", accept, Value::Null)
            .await
    }

    async fn exchange(
        &self,
        method: &str,
        path: &str,
        content_type: &str,
        accept: &str,
        body: Value,
    ) -> (u16, Value) {
        let request = request(method, path, content_type, accept, body);
        answer_json(crate::internal_router(self.state.clone()), request).await
    }

    /// A JSON request (`POST`, `PUT`, `DELETE`, `GET`).
    pub async fn json(&self, method: &str, path: &str, body: Value) -> (u16, Value) {
        self.send(method, path, "application/json", body).await
    }

    /// One request through the network's router (where answers are negotiated, protobuf
    /// included) as the loopback user: the status, the Content-Type and the body as sent.
    pub async fn negotiated(
        &self,
        method: &str,
        path: &str,
        accept: &str,
        body: Value,
    ) -> (u16, String, bytes::Bytes) {
        let request = request(method, path, "application/json", accept, body);
        let router = crate::router_as(self.state.clone(), crate::auth::loopback_user());
        let response = router.oneshot(request).await.expect("infallible");
        let status = response.status().as_u16();
        let content_type = response
            .headers()
            .get(header::CONTENT_TYPE)
            .map(|value| String::from_utf8_lossy(value.as_bytes()).into_owned())
            .unwrap_or_default();
        (status, content_type, whole_body(response.into_body()).await)
    }

    /// One request through the API's router: the status, the `Warning` headers (as sent) and
    /// the answer as JSON (`null` when it is not JSON).
    pub async fn warned(
        &self,
        method: &str,
        path: &str,
        content_type: &str,
        body: Value,
    ) -> (u16, Vec<String>, Value) {
        let request = request(method, path, content_type, "application/json", body);
        let response = crate::internal_router(self.state.clone())
            .oneshot(request)
            .await
            .expect("infallible");
        let status = response.status().as_u16();
        let warnings = response
            .headers()
            .get_all(header::WARNING)
            .iter()
            .map(|value| String::from_utf8_lossy(value.as_bytes()).into_owned())
            .collect();
        let bytes = whole_body(response.into_body()).await;
        (
            status,
            warnings,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        )
    }
}

/// A request with a JSON body (`body` null: no body).
pub fn request(
    method: &str,
    path: &str,
    content_type: &str,
    accept: &str,
    body: Value,
) -> Request<Body> {
    Request::builder()
        .method(method)
        .uri(path)
        .header(header::CONTENT_TYPE, content_type)
        .header(header::ACCEPT, accept)
        .body(if body.is_null() {
            Body::empty()
        } else {
            Body::from(body.to_string())
        })
        .expect("request")
}

/// Sends one request to a router and reads the status code and the answer as JSON (`null`
/// when it is not JSON).
pub async fn answer_json(router: axum::Router, request: Request<Body>) -> (u16, Value) {
    let (status, bytes) = answer(router, request).await;
    (
        status.as_u16(),
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

/// Sends one request to a router (any axum router: the API's, a node's) and reads the whole
/// answer.
pub async fn answer(
    router: axum::Router,
    request: Request<Body>,
) -> (axum::http::StatusCode, bytes::Bytes) {
    let response = router.oneshot(request).await.expect("infallible");
    let status = response.status();
    (status, whole_body(response.into_body()).await)
}

/// Reads a whole body (an axum answer's, or a hyper client's).
pub async fn whole_body<B>(body: B) -> bytes::Bytes
where
    B: hyper::body::Body<Data = bytes::Bytes>,
    B::Error: std::fmt::Debug,
{
    body.collect().await.expect("body").to_bytes()
}

/// What a request carried, as JSON (`method`, `uri`, `headers`, `body` as text): the answer
/// of a fake backend (a node API, a pod) that shows a test what reached it.
pub async fn echo(request: Request<Body>) -> Value {
    let (parts, body) = request.into_parts();
    let body = axum::body::to_bytes(body, 1 << 20)
        .await
        .unwrap_or_default();
    let headers: serde_json::Map<String, Value> = parts
        .headers
        .iter()
        .map(|(name, value)| {
            let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
            (name.to_string(), Value::String(value))
        })
        .collect();
    serde_json::json!({
        "method": parts.method.as_str(),
        "uri": parts.uri.to_string(),
        "headers": headers,
        "body": String::from_utf8_lossy(&body),
    })
}

/// Asks `router`, served over one in-memory HTTP/1.1 connection with upgrades, to switch
/// `path` to the `echo` protocol: the answer's status and headers and, after a switch, what
/// came back of `ping` sent over the switched connection.
pub async fn upgrade_to_echo(
    router: axum::Router,
    path: &str,
) -> (axum::http::StatusCode, axum::http::HeaderMap, Vec<u8>) {
    use hyper_util::rt::TokioIo;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (client_end, server_end) = tokio::io::duplex(4096);
    let service = hyper_util::service::TowerToHyperService::new(router);
    tokio::spawn(
        hyper::server::conn::http1::Builder::new()
            .serve_connection(TokioIo::new(server_end), service)
            .with_upgrades(),
    );
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(client_end))
        .await
        .expect("handshake");
    tokio::spawn(connection.with_upgrades());
    let request = Request::get(path)
        .header(header::HOST, "test")
        .header(header::CONNECTION, "Upgrade")
        .header(header::UPGRADE, "echo")
        .body(Body::empty())
        .expect("request");
    let response = sender.send_request(request).await.expect("answer");
    let (status, headers) = (response.status(), response.headers().clone());
    if status != axum::http::StatusCode::SWITCHING_PROTOCOLS {
        return (status, headers, Vec::new());
    }
    let mut upgraded = TokioIo::new(hyper::upgrade::on(response).await.expect("upgraded"));
    upgraded.write_all(b"ping").await.expect("write");
    let mut echoed = vec![0u8; 4];
    upgraded.read_exact(&mut echoed).await.expect("read");
    (status, headers, echoed)
}

impl Drop for TestCluster {
    fn drop(&mut self) {
        for task in &self.background {
            task.abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::Namespace;
    use kube::api::{Api, ListParams};

    use super::TestCluster;

    #[tokio::test]
    async fn a_kube_client_sees_the_objects_every_cluster_starts_with() {
        let cluster = TestCluster::start().await;
        let namespaces: Api<Namespace> = Api::all(cluster.client());
        let names: Vec<String> = namespaces
            .list(&ListParams::default())
            .await
            .expect("list")
            .items
            .into_iter()
            .filter_map(|namespace| namespace.metadata.name)
            .collect();
        for expected in ["default", "kube-node-lease", "kube-public", "kube-system"] {
            assert!(names.iter().any(|name| name == expected), "{names:?}");
        }
    }
}
