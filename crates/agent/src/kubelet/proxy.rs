//! `/podProxy/{namespace}/{pod}/{uid}/{port}[/{path…}]`, any method: the node's half of
//! `pods/proxy` and `services/proxy`. It is petset's own path (upstream's kubelet has none:
//! upstream's API server dials pods itself, which needs a route from it into every pod
//! network). Here the node that runs the pod dials it, as for port-forward, so the API server
//! needs no route into pod networks.
//!
//! - `{uid}` names this instance of the pod (an older pod of the same name is refused);
//! - `{port}` is a number (the API server resolves named ports from the pod's spec);
//! - the rest of the path, and the query as it came, are what the pod is asked for (`/` when
//!   there is no rest).
//!
//! The request is relayed as it came (method, end-to-end headers, the body streamed) to
//! `podIP:port`, a pod of this node at its address on this node's bridge, and its answer is
//! streamed back with [`RELAYED_FROM_POD`] set, so the API server tells the pod's own answers
//! (a 404 page, say) from the node's refusals, which it turns into a `Status`. An upgrade
//! (WebSocket and the like) is relayed too: once the pod answers 101, bytes are copied both
//! ways until either side ends.

use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use hyper_util::rt::TokioIo;

use super::{Kubelet, Refusal, Target};

/// The header the node sets on every answer that is the pod's own (and removes from what the
/// pod sent, so a pod cannot pass a refusal off as its answer or the other way round).
pub const RELAYED_FROM_POD: &str = "petset-relayed-from-pod";

/// How long dialing a pod may take.
const DIAL_TIMEOUT: Duration = Duration::from_secs(10);

const PREFIX: &str = "/podProxy/";

/// The proxy path, every method.
pub(crate) fn routes() -> Router<Kubelet> {
    Router::new().route("/podProxy/{*rest}", any(handle))
}

async fn handle(State(kubelet): State<Kubelet>, request: Request) -> Response {
    serve(&kubelet, request)
        .await
        .unwrap_or_else(IntoResponse::into_response)
}

async fn serve(kubelet: &Kubelet, request: Request) -> Result<Response, Refusal> {
    let proxied = ProxyPath::parse(request.uri())?;
    let address = kubelet.dialable_pod(&proxied.target, "proxy to").await?;
    forward(
        SocketAddr::new(address, proxied.port),
        &proxied.path_and_query,
        request,
    )
    .await
}

/// What a proxy path names. The path is taken as it came (still percent-encoded), so the pod
/// is asked for exactly what the client asked for.
#[derive(Debug)]
struct ProxyPath {
    target: Target,
    port: u16,
    path_and_query: String,
}

impl ProxyPath {
    fn parse(uri: &Uri) -> Result<Self, Refusal> {
        let malformed = || {
            Refusal::bad_request(format!(
                "malformed proxy path {:?}: want {PREFIX}{{namespace}}/{{pod}}/{{uid}}/{{port}}[/{{path}}]",
                uri.path()
            ))
        };
        let rest = uri.path().strip_prefix(PREFIX).ok_or_else(malformed)?;
        let mut parts = rest.splitn(5, '/');
        let mut segment = || parts.next().filter(|s| !s.is_empty()).map(str::to_string);
        let (Some(namespace), Some(pod), Some(uid), Some(port)) =
            (segment(), segment(), segment(), segment())
        else {
            return Err(malformed());
        };
        let path = format!("/{}", parts.next().unwrap_or_default());
        let port =
            port.parse::<u16>().ok().filter(|p| *p > 0).ok_or_else(|| {
                Refusal::bad_request(format!("invalid port {port:?} to proxy to"))
            })?;
        let path_and_query = match uri.query() {
            Some(query) => format!("{path}?{query}"),
            None => path,
        };
        Ok(Self {
            target: Target {
                namespace,
                pod,
                uid: Some(uid),
                container: String::new(),
            },
            port,
            path_and_query,
        })
    }
}

/// Whether a request asks to switch protocols (`Connection: upgrade` with an `Upgrade`).
fn is_upgrade(headers: &HeaderMap) -> bool {
    headers.contains_key(header::UPGRADE)
        && connection_tokens(headers).any(|token| token == "upgrade")
}

/// The header names the `Connection` header lists, lowercase.
fn connection_tokens(headers: &HeaderMap) -> impl Iterator<Item = String> + '_ {
    headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|token| token.trim().to_ascii_lowercase())
}

/// The headers of one hop (RFC 9110 7.6.1: the fixed ones and those `Connection` names) are
/// not passed on, nor the node's own marker.
pub(crate) fn end_to_end(headers: &HeaderMap) -> HeaderMap {
    let named_by_connection: Vec<String> = connection_tokens(headers).collect();
    let mut kept = HeaderMap::new();
    for (name, value) in headers {
        let hop = matches!(
            name.as_str(),
            "connection"
                | "keep-alive"
                | "proxy-connection"
                | "te"
                | "trailer"
                | "transfer-encoding"
                | "upgrade"
                | "host"
                | RELAYED_FROM_POD
        ) || named_by_connection.iter().any(|n| n == name.as_str());
        if !hop {
            kept.append(name.clone(), value.clone());
        }
    }
    kept
}

/// Keeps an upgrade's own headers on the next hop.
fn with_upgrade(headers: &mut HeaderMap, upgrade: Option<HeaderValue>) {
    if let Some(upgrade) = upgrade {
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        headers.insert(header::UPGRADE, upgrade);
    }
}

/// Relays `request` to the pod at `to` as `path_and_query`, and the pod's answer back.
async fn forward(
    to: SocketAddr,
    path_and_query: &str,
    mut request: Request,
) -> Result<Response, Refusal> {
    let unreachable = |e: &dyn std::fmt::Display| {
        Refusal::unavailable(format!("error trying to reach service: dial tcp {to}: {e}"))
    };
    let stream = tokio::time::timeout(DIAL_TIMEOUT, tokio::net::TcpStream::connect(to))
        .await
        .map_err(|e| unreachable(&e))?
        .map_err(|e| unreachable(&e))?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| unreachable(&e))?;
    tokio::spawn(async move {
        if let Err(error) = connection.with_upgrades().await {
            tracing::debug!(%error, "a proxied pod connection ended with an error");
        }
    });
    let client_upgrade = is_upgrade(request.headers()).then(|| {
        (
            request.headers().get(header::UPGRADE).cloned(),
            hyper::upgrade::on(&mut request),
        )
    });
    let (parts, body) = request.into_parts();
    let uri: Uri = path_and_query
        .parse()
        .map_err(|_| Refusal::bad_request(format!("invalid proxy path {path_and_query:?}")))?;
    let mut outgoing = axum::http::Request::new(body);
    *outgoing.method_mut() = parts.method;
    *outgoing.uri_mut() = uri;
    *outgoing.headers_mut() = end_to_end(&parts.headers);
    with_upgrade(
        outgoing.headers_mut(),
        client_upgrade
            .as_ref()
            .and_then(|(upgrade, _)| upgrade.clone()),
    );
    if let Ok(host) = HeaderValue::from_str(&to.to_string()) {
        outgoing.headers_mut().insert(header::HOST, host);
    }
    let mut answer = sender
        .send_request(outgoing)
        .await
        .map_err(|e| unreachable(&e))?;
    let switching = answer.status() == StatusCode::SWITCHING_PROTOCOLS;
    let pod_upgrade = switching.then(|| {
        (
            answer.headers().get(header::UPGRADE).cloned(),
            hyper::upgrade::on(&mut answer),
        )
    });
    let (mut parts, body) = answer.into_parts();
    parts.headers = end_to_end(&parts.headers);
    parts.headers.insert(
        HeaderName::from_static(RELAYED_FROM_POD),
        HeaderValue::from_static("true"),
    );
    if let (Some((upgrade, pod_side)), Some((_, client_side))) = (pod_upgrade, client_upgrade) {
        with_upgrade(&mut parts.headers, upgrade);
        tokio::spawn(splice(pod_side, client_side));
    }
    Ok(Response::from_parts(parts, Body::new(body)))
}

/// Copies bytes both ways between the client and the pod once both have switched.
async fn splice(pod_side: hyper::upgrade::OnUpgrade, client_side: hyper::upgrade::OnUpgrade) {
    let (pod_side, client_side) = match tokio::join!(pod_side, client_side) {
        (Ok(pod_side), Ok(client_side)) => (pod_side, client_side),
        (Err(error), _) | (_, Err(error)) => {
            tracing::debug!(%error, "a proxied upgrade failed");
            return;
        }
    };
    let (mut pod_side, mut client_side) = (TokioIo::new(pod_side), TokioIo::new(client_side));
    if let Err(error) = tokio::io::copy_bidirectional(&mut client_side, &mut pod_side).await {
        tracing::debug!(%error, "a proxied upgrade ended with an error");
    }
}

#[cfg(test)]
mod tests;
