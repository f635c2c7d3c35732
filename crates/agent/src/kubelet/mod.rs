//! The node API: the kubelet's HTTPS paths, which the API server relays `pods/log`,
//! `pods/exec`, `pods/attach` and `pods/portforward` to (upstream's
//! `pkg/kubelet/server/server.go`):
//!
//! - `GET /containerLogs/{ns}/{pod}/{container}` (`logs.rs`);
//! - `/exec/{ns}/{pod}[/{uid}]/{container}` and `/attach/…` over WebSocket with the
//!   `channel.k8s.io` protocols (`exec.rs`, `attach.rs`, framing in `channel.rs`);
//! - `/portForward/{ns}/{pod}[/{uid}]`, a SPDY/3.1 session in a WebSocket (`portforward.rs`);
//! - `/podProxy/{ns}/{pod}/{uid}/{port}[/{path}]`, petset's own: `pods/proxy` and
//!   `services/proxy` relayed to the pod by its node (`proxy.rs`);
//! - `/healthz`, public.
//!
//! Everything but `/healthz` answers only the API server (`auth.rs`): over the network, a client
//! certificate of the cluster CA for `kube-apiserver-kubelet-client` (`server.rs` reads it from
//! the TLS session); in process, the router the API server reaches through a pipe.
//!
//! A simulated node's pods run no processes: their requests get a clear error and nothing is
//! ever dialed.

mod attach;
pub mod auth;
mod channel;
mod exec;
mod logs;
mod pods;
mod portforward;
mod proxy;
pub mod server;

pub(crate) use proxy::end_to_end;

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use k8s_openapi::api::core::v1::Pod;

use crate::runc::RuncNode;

pub use pods::PodFeed;

/// The port upstream's kubelet serves on, and the one petset's node takes by default.
pub const DEFAULT_PORT: u16 = 10250;

/// What runs this node's pods, as far as the node API needs it.
#[derive(Clone)]
pub enum NodeRuntime {
    /// Real containers: logs, exec, attach and port-forward reach them.
    Runc(Arc<RuncNode>),
    /// Bookkeeping pods without processes: every stream request is refused.
    Simulated,
}

/// The node API of one node; cheap to clone.
#[derive(Clone)]
pub struct Kubelet {
    inner: Arc<Inner>,
}

struct Inner {
    runtime: NodeRuntime,
    pods: pods::PodCache,
}

impl Kubelet {
    /// The node API of `node`; it knows the pods bound to it once the returned feed runs.
    pub fn new(node: &str, runtime: NodeRuntime) -> (Self, PodFeed) {
        let (pods, feed) = pods::PodCache::new(node);
        let inner = Arc::new(Inner { runtime, pods });
        (Self { inner }, feed)
    }

    /// The routes served over the network: every request but `/healthz` must come from the
    /// API server, as [`server::serve_tls`] identifies it.
    pub fn router(&self) -> Router {
        self.routes()
            .layer(axum::middleware::from_fn(auth::require_api_server))
            .route("/healthz", get(|| async { "ok" }))
    }

    /// The same routes for the API server in this process, which reaches them through a pipe
    /// nothing outside the process can open.
    pub fn in_process_router(&self) -> Router {
        self.router().layer(axum::Extension(auth::Peer::InProcess))
    }

    fn routes(&self) -> Router {
        // Upstream's four shapes of each stream path: with or without the pod's uid.
        let streams = [
            ("/exec/{namespace}/{pod}/{container}", StreamKind::Exec),
            (
                "/exec/{namespace}/{pod}/{uid}/{container}",
                StreamKind::Exec,
            ),
            ("/attach/{namespace}/{pod}/{container}", StreamKind::Attach),
            (
                "/attach/{namespace}/{pod}/{uid}/{container}",
                StreamKind::Attach,
            ),
            ("/portForward/{namespace}/{pod}", StreamKind::PortForward),
            (
                "/portForward/{namespace}/{pod}/{uid}",
                StreamKind::PortForward,
            ),
        ];
        streams
            .into_iter()
            .fold(Router::new(), |router, (path, kind)| {
                router.route(path, stream_handler(kind))
            })
            .route(
                "/containerLogs/{namespace}/{pod}/{container}",
                get(container_logs),
            )
            .merge(proxy::routes())
            .with_state(self.clone())
    }

    /// The pod bound to this node, as its feed last saw it; with a uid, only that instance.
    async fn pod(&self, target: &Target) -> Option<Arc<Pod>> {
        self.inner
            .pods
            .find(&target.namespace, &target.pod, target.uid.as_deref())
            .await
    }

    /// The runc node and the pod a stream request (`what`: "exec into", "attach to", …)
    /// reaches; a simulated node's pods have no processes to reach.
    async fn running_pod(
        &self,
        target: &Target,
        what: &str,
    ) -> Result<(&Arc<RuncNode>, Arc<Pod>), Refusal> {
        let NodeRuntime::Runc(node) = &self.inner.runtime else {
            return Err(Refusal::unavailable(format!(
                "pods {:?}: its node runs no processes here (a simulated node), so there is nothing to {what}",
                target.pod
            )));
        };
        let pod = self
            .pod(target)
            .await
            .ok_or_else(|| Refusal::not_found("pod does not exist"))?;
        Ok((node, pod))
    }

    /// The address of a pod of this node that the node may dial for a request (`what`): its
    /// IP, on this node's bridge. Nothing else is ever dialed.
    async fn dialable_pod(&self, target: &Target, what: &str) -> Result<IpAddr, Refusal> {
        let name = &target.pod;
        let (node, pod) = self.running_pod(target, what).await?;
        let address = pod
            .status
            .as_ref()
            .and_then(|s| s.pod_ip.as_deref())
            .and_then(|ip| ip.parse::<IpAddr>().ok())
            .ok_or_else(|| Refusal::bad_request(format!("pod {name} has no IP yet")))?;
        if !node.owns_pod_address(address) {
            return Err(Refusal::unavailable(format!(
                "address {address} of pod {name} is not on petset's pod bridge, so petset does not dial it"
            )));
        }
        Ok(address)
    }
}

/// The stream paths, served alike.
#[derive(Clone, Copy)]
enum StreamKind {
    Exec,
    Attach,
    PortForward,
}

/// What a node API path names.
#[derive(Debug)]
pub(crate) struct Target {
    pub namespace: String,
    pub pod: String,
    pub uid: Option<String>,
    pub container: String,
}

impl Target {
    fn from_path(mut params: HashMap<String, String>) -> Self {
        let mut take = |key: &str| params.remove(key);
        Self {
            namespace: take("namespace").unwrap_or_default(),
            pod: take("pod").unwrap_or_default(),
            uid: take("uid"),
            container: take("container").unwrap_or_default(),
        }
    }
}

/// Why the node refuses a request: a status code and upstream's text, as the kubelet writes
/// it (plain text; the API server turns it into a `Status`).
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Refusal {
    pub code: StatusCode,
    pub message: String,
}

impl Refusal {
    pub fn new(code: StatusCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, message)
    }

    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, message)
    }
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        (
            self.code,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            self.message,
        )
            .into_response()
    }
}

/// The parsed query string; repeated keys keep every value.
pub(crate) struct Query(Vec<(String, String)>);

impl Query {
    pub fn parse(raw: Option<&str>) -> Self {
        Self(
            form_urlencoded::parse(raw.unwrap_or_default().as_bytes())
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect(),
        )
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    pub fn all<'a>(&'a self, key: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.0
            .iter()
            .filter(move |(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// A boolean parameter as the kubelet reads them (`1` or `true`).
    pub fn flag(&self, key: &str) -> bool {
        matches!(self.get(key), Some("1" | "true"))
    }
}

/// How a stream request asks to be upgraded.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Upgrade {
    WebSocket,
    /// SPDY/3.1, which kubectl falls back to when a WebSocket upgrade fails.
    Spdy,
    None,
}

impl Upgrade {
    pub fn of(headers: &HeaderMap) -> Self {
        let upgrade = headers
            .get(header::UPGRADE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        if upgrade.eq_ignore_ascii_case("websocket") {
            Self::WebSocket
        } else if upgrade.to_ascii_lowercase().starts_with("spdy/") {
            Self::Spdy
        } else {
            Self::None
        }
    }

    /// The refusal for a request that is not a WebSocket upgrade, once everything else about
    /// it was found right.
    pub fn refusal(&self) -> Refusal {
        match self {
            Self::Spdy => Refusal::bad_request(
                "unable to upgrade connection: this node serves exec, attach and port-forward over WebSocket only, not SPDY/3.1",
            ),
            _ => Refusal::bad_request("Upgrade request required"),
        }
    }
}

/// The pod's container named `name` (app, init or ephemeral), with whether it has `stdinOnce`.
pub(crate) fn find_container<'a>(
    pod: &'a Pod,
    name: &str,
) -> Option<&'a k8s_openapi::api::core::v1::Container> {
    let spec = pod.spec.as_ref()?;
    spec.containers
        .iter()
        .chain(spec.init_containers.iter().flatten())
        .find(|c| c.name == name)
}

async fn container_logs(
    State(kubelet): State<Kubelet>,
    Path(params): Path<HashMap<String, String>>,
    request: Request,
) -> Response {
    let query = Query::parse(request.uri().query());
    logs::serve(&kubelet, Target::from_path(params), &query)
        .await
        .unwrap_or_else(IntoResponse::into_response)
}

async fn stream(
    kind: StreamKind,
    kubelet: Kubelet,
    params: HashMap<String, String>,
    request: Request,
) -> Response {
    let target = Target::from_path(params);
    let served = match kind {
        StreamKind::Exec => exec::serve(&kubelet, target, request).await,
        StreamKind::Attach => attach::serve(&kubelet, target, request).await,
        StreamKind::PortForward => portforward::serve(&kubelet, target, request).await,
    };
    served.unwrap_or_else(IntoResponse::into_response)
}

/// The handler of one stream path.
fn stream_handler(kind: StreamKind) -> axum::routing::MethodRouter<Kubelet> {
    let handler = move |State(kubelet): State<Kubelet>,
                        Path(params): Path<HashMap<String, String>>,
                        request: Request| stream(kind, kubelet, params, request);
    get(handler).post(handler)
}

/// The WebSocket upgrade of a request whose every other check passed, or the refusal for a
/// request that is not one.
pub(crate) async fn websocket(
    request: Request,
) -> Result<axum::extract::ws::WebSocketUpgrade, Refusal> {
    use axum::extract::FromRequestParts;
    let upgrade = Upgrade::of(request.headers());
    if upgrade != Upgrade::WebSocket {
        return Err(upgrade.refusal());
    }
    let (mut parts, _) = request.into_parts();
    axum::extract::ws::WebSocketUpgrade::from_request_parts(&mut parts, &())
        .await
        .map_err(|e| Refusal::bad_request(format!("Upgrade request required: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tower::ServiceExt;

    /// The status and text of one request to a simulated node's API from `peer` (`None`: a
    /// connection the server could not identify).
    async fn ask(peer: Option<auth::Peer>, method: &str, path: &str) -> (StatusCode, String) {
        let (kubelet, _) = Kubelet::new("n1", NodeRuntime::Simulated);
        let mut request = Request::builder()
            .method(method)
            .uri(path)
            .body(axum::body::Body::empty())
            .expect("request");
        if let Some(peer) = peer {
            request.extensions_mut().insert(peer);
        }
        let (status, body) =
            petset_apiserver::test_cluster::answer(kubelet.router(), request).await;
        (status, String::from_utf8_lossy(&body).into_owned())
    }

    const LOGS: &str = "/containerLogs/default/web-0/main";

    #[tokio::test]
    async fn only_the_api_server_gets_past_the_door() {
        let api_server = auth::Peer::Certificate(auth::API_SERVER_IDENTITY.into());
        let (code, text) = ask(Some(api_server), "GET", LOGS).await;
        // Past the door, a simulated node's answer.
        assert_eq!(code, StatusCode::SERVICE_UNAVAILABLE, "{text}");
        assert!(text.contains("keeps no container logs"), "{text}");
        assert_eq!(
            ask(None, "GET", LOGS).await,
            (StatusCode::UNAUTHORIZED, "Unauthorized".into())
        );
        assert_eq!(
            ask(
                Some(auth::Peer::Anonymous),
                "POST",
                "/exec/default/web-0/main?command=ls"
            )
            .await,
            (StatusCode::UNAUTHORIZED, "Unauthorized".into())
        );
        let node = auth::Peer::Certificate("system:node:other".into());
        let (code, text) = ask(Some(node), "POST", "/exec/default/web-0/main?command=ls").await;
        assert_eq!(code, StatusCode::FORBIDDEN);
        assert_eq!(
            text,
            "Forbidden (user=system:node:other, verb=create, resource=nodes, subresource=proxy)"
        );
    }

    #[tokio::test]
    async fn health_is_public_and_the_in_process_router_trusts_its_pipe() {
        assert_eq!(
            ask(None, "GET", "/healthz").await,
            (StatusCode::OK, "ok".into())
        );
        let (kubelet, _) = Kubelet::new("n1", NodeRuntime::Simulated);
        let request = Request::get("/attach/default/web-0/uid-1/main")
            .body(axum::body::Body::empty())
            .expect("request");
        let response = kubelet
            .in_process_router()
            .oneshot(request)
            .await
            .expect("infallible");
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    }

    #[test]
    fn upgrades_are_told_apart_by_their_header() {
        let mut headers = HeaderMap::new();
        assert_eq!(Upgrade::of(&headers), Upgrade::None);
        headers.insert(header::UPGRADE, "SPDY/3.1".parse().expect("header"));
        assert_eq!(Upgrade::of(&headers), Upgrade::Spdy);
        assert!(Upgrade::Spdy.refusal().message.contains("WebSocket only"));
        headers.insert(header::UPGRADE, "websocket".parse().expect("header"));
        assert_eq!(Upgrade::of(&headers), Upgrade::WebSocket);
        assert_eq!(Upgrade::None.refusal().message, "Upgrade request required");
    }

    #[test]
    fn flags_are_one_or_true() {
        let query = Query::parse(Some("input=1&output=true&error=0&command=a&command=b%20c"));
        assert!(query.flag("input") && query.flag("output"));
        assert!(!query.flag("error") && !query.flag("tty"));
        assert_eq!(query.all("command").collect::<Vec<_>>(), ["a", "b c"]);
    }
}
