//! The node's ingress proxy: an HTTP/1.1 server (keep-alive) on `--ingress-listen` that routes
//! each request by the rules of the Ingresses of petset's class ([`rules`]) to one of the
//! ready endpoints of the Service port a rule names, in turn, and reports its address in those
//! Ingresses' `status.loadBalancer.ingress`.
//!
//! Nothing matched: 404; a Service with no ready endpoint (or none that answers): 503, each with
//! a small page as ingress-nginx's. Like the service proxy (`crate::services`), it dials only
//! pod addresses of the networks this node reaches: an Endpoints object cannot point it at the
//! node or the outside.

pub mod rules;

use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderValue, Request, Response, StatusCode, header};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use k8s_openapi::api::core::v1::{Endpoints, Service};
use k8s_openapi::api::networking::v1::{Ingress, IngressClass};
use kube::api::{Patch, PatchParams};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::{Api, Client};
use petset_informer::cache::Cache;
use serde_json::json;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;
use tokio::task::JoinSet;

use crate::routes::PodNetworks;
use rules::{Decision, Route, ServicePort};

/// The controller name of petset's IngressClass (`petset`, made at bootstrap).
pub const CONTROLLER: &str = "petset.dev/ingress";

const DIAL_TIMEOUT: Duration = Duration::from_secs(5);

/// What the request handlers read: the caches and where they may dial.
#[derive(Clone)]
struct Routing {
    ingresses: Cache<Ingress>,
    classes: Cache<IngressClass>,
    services: Cache<Service>,
    endpoints: Cache<Endpoints>,
    reached: PodNetworks,
    next: Arc<AtomicUsize>,
}

impl Routing {
    /// The Ingresses this proxy serves: of a class whose controller is petset's, or of no class
    /// (petset is the cluster's only ingress controller).
    fn served(&self) -> Vec<Arc<Ingress>> {
        let ours: BTreeSet<String> = self
            .classes
            .store()
            .state()
            .iter()
            .filter(|class| {
                class.spec.as_ref().and_then(|s| s.controller.as_deref()) == Some(CONTROLLER)
            })
            .filter_map(|class| class.metadata.name.clone())
            .collect();
        self.ingresses
            .store()
            .state()
            .into_iter()
            .filter(|ingress| {
                match ingress
                    .spec
                    .as_ref()
                    .and_then(|s| s.ingress_class_name.as_deref())
                {
                    Some(class) => ours.contains(class),
                    None => true,
                }
            })
            .collect()
    }

    /// The ready endpoints behind `route`, among the addresses this node may dial.
    fn backends(&self, route: &Route) -> Vec<SocketAddr> {
        let Some(service) = self
            .services
            .store()
            .get(&ObjectRef::new(&route.service).within(&route.namespace))
        else {
            return Vec::new();
        };
        let port = service
            .spec
            .iter()
            .flat_map(|s| s.ports.iter().flatten())
            .find(|p| match &route.port {
                ServicePort::Number(number) => p.port == *number,
                ServicePort::Name(name) => p.name.as_deref() == Some(name),
            });
        let Some(port) = port else {
            return Vec::new();
        };
        let port_name = port.name.clone().unwrap_or_default();
        let networks = self.reached.current();
        self.endpoints
            .store()
            .get(&ObjectRef::new(&route.service).within(&route.namespace))
            .map(|e| crate::services::backends(&e, &port_name))
            .unwrap_or_default()
            .into_iter()
            .filter(|b| crate::services::may_dial(*b, &networks, &[]))
            .collect()
    }
}

/// Runs the proxy on `listen` until aborted; says once why when it cannot listen.
pub async fn run(client: Client, listen: SocketAddr, reached: PodNetworks) {
    let listener = match TcpListener::bind(listen).await {
        Ok(listener) => listener,
        Err(error) => {
            tracing::warn!(%error, address = %listen, "the ingress proxy cannot listen");
            return;
        }
    };
    tracing::info!(address = %listen, "ingress proxy listening");
    let mut helpers = JoinSet::new();
    let changed = Arc::new(Notify::new());
    let notify = changed.clone();
    let routing = Routing {
        ingresses: Cache::follow(
            &mut helpers,
            Api::all(client.clone()),
            watcher::Config::default(),
            move |_| notify.notify_one(),
        ),
        classes: Cache::follow(
            &mut helpers,
            Api::all(client.clone()),
            watcher::Config::default(),
            |_| {},
        ),
        services: Cache::follow(
            &mut helpers,
            Api::all(client.clone()),
            watcher::Config::default(),
            |_| {},
        ),
        endpoints: Cache::follow(
            &mut helpers,
            Api::all(client.clone()),
            watcher::Config::default(),
            |_| {},
        ),
        reached,
        next: Arc::new(AtomicUsize::new(0)),
    };
    helpers.spawn(report_status(client, routing.clone(), changed, listen.ip()));
    loop {
        let Ok((stream, peer)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let routing = routing.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |request| {
                let routing = routing.clone();
                async move { Ok::<_, std::convert::Infallible>(answer(&routing, peer, request).await) }
            });
            let served = hyper::server::conn::http1::Builder::new()
                .keep_alive(true)
                .serve_connection(TokioIo::new(stream), service)
                .await;
            if let Err(error) = served {
                tracing::debug!(%peer, %error, "an ingress connection ended with an error");
            }
        });
    }
}

/// One request: routed, relayed, or answered with the default page.
async fn answer(routing: &Routing, peer: SocketAddr, request: Request<Incoming>) -> Response<Body> {
    let host = request
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(str::to_string)
        .or_else(|| request.uri().authority().map(|a| a.to_string()))
        .unwrap_or_default();
    let served = routing.served();
    let refs: Vec<&Ingress> = served.iter().map(Arc::as_ref).collect();
    let route = match rules::decide(&refs, &host, request.uri().path()) {
        Decision::Backend(route) => route,
        Decision::Unservable => return page(StatusCode::SERVICE_UNAVAILABLE),
        Decision::NoRule => return page(StatusCode::NOT_FOUND),
    };
    let candidates = routing.backends(&route);
    if candidates.is_empty() {
        return page(StatusCode::SERVICE_UNAVAILABLE);
    }
    let start = routing.next.fetch_add(1, Ordering::Relaxed);
    let Some(stream) = connect(&candidates, start).await else {
        return page(StatusCode::SERVICE_UNAVAILABLE);
    };
    relay(stream, peer, &host, request)
        .await
        .unwrap_or_else(|| page(StatusCode::BAD_GATEWAY))
}

/// The first of `candidates` that accepts, starting at `start`.
async fn connect(candidates: &[SocketAddr], start: usize) -> Option<TcpStream> {
    for attempt in 0..candidates.len() {
        let backend = candidates[(start + attempt) % candidates.len()];
        if let Ok(Ok(stream)) =
            tokio::time::timeout(DIAL_TIMEOUT, TcpStream::connect(backend)).await
        {
            return Some(stream);
        }
    }
    None
}

/// Sends `request` over `stream` with the forwarding headers ingress-nginx sets, and returns
/// the backend's answer (None when the backend broke off).
async fn relay(
    stream: TcpStream,
    peer: SocketAddr,
    host: &str,
    request: Request<Incoming>,
) -> Option<Response<Body>> {
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .ok()?;
    tokio::spawn(async move {
        if let Err(error) = connection.await {
            tracing::debug!(%error, "an ingress backend connection ended with an error");
        }
    });
    let (mut parts, body) = request.into_parts();
    let mut headers = crate::kubelet::end_to_end(&parts.headers);
    if let Ok(host) = HeaderValue::from_str(host) {
        headers.insert(header::HOST, host.clone());
        headers.insert("x-forwarded-host", host);
    }
    if let Ok(peer) = HeaderValue::from_str(&peer.ip().to_string()) {
        headers.insert("x-real-ip", peer.clone());
        headers.insert("x-forwarded-for", peer);
    }
    headers.insert("x-forwarded-proto", HeaderValue::from_static("http"));
    parts.headers = headers;
    parts.uri = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/")
        .parse()
        .ok()?;
    let answer = sender
        .send_request(Request::from_parts(parts, body))
        .await
        .ok()?;
    let (mut parts, body) = answer.into_parts();
    parts.headers = crate::kubelet::end_to_end(&parts.headers);
    Some(Response::from_parts(parts, Body::new(body)))
}

/// The default answers, worded as nginx's pages.
fn page(status: StatusCode) -> Response<Body> {
    let title = format!(
        "{} {}",
        status.as_u16(),
        status.canonical_reason().unwrap_or_default()
    );
    let body = format!(
        "<html>\r\n<head><title>{title}</title></head>\r\n<body>\r\n<center><h1>{title}</h1></center>\r\n<hr><center>petset ingress</center>\r\n</body>\r\n</html>\r\n"
    );
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html"));
    response
}

/// What `status.loadBalancer.ingress` says of a proxy listening on `ip`: the address, and on
/// loopback also the name `localhost` (the tutorials read `.hostname`).
pub fn load_balancer_status(ip: IpAddr) -> serde_json::Value {
    let shown = if ip.is_unspecified() {
        IpAddr::from([127, 0, 0, 1])
    } else {
        ip
    };
    if shown.is_loopback() {
        json!([{"ip": shown.to_string(), "hostname": "localhost"}])
    } else {
        json!([{"ip": shown.to_string()}])
    }
}

/// Keeps the served Ingresses' status naming this proxy's address, after each change.
async fn report_status(client: Client, routing: Routing, changed: Arc<Notify>, ip: IpAddr) {
    let wanted = load_balancer_status(ip);
    loop {
        for ingress in routing.served() {
            let current = ingress
                .status
                .as_ref()
                .and_then(|s| s.load_balancer.as_ref())
                .and_then(|lb| serde_json::to_value(&lb.ingress).ok())
                .unwrap_or_default();
            if current == wanted {
                continue;
            }
            let (Some(name), Some(namespace)) = (
                ingress.metadata.name.as_deref(),
                ingress.metadata.namespace.as_deref(),
            ) else {
                continue;
            };
            let api: Api<Ingress> = Api::namespaced(client.clone(), namespace);
            let patch = json!({"status": {"loadBalancer": {"ingress": wanted}}});
            if let Err(error) = api
                .patch_status(name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
            {
                tracing::warn!(%error, ingress = %name, "could not report the ingress address");
            }
        }
        changed.notified().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_address_is_reported_with_localhost_on_loopback() {
        assert_eq!(
            load_balancer_status("127.0.0.1".parse().expect("ip")),
            json!([{"ip": "127.0.0.1", "hostname": "localhost"}])
        );
        assert_eq!(
            load_balancer_status("0.0.0.0".parse().expect("ip")),
            json!([{"ip": "127.0.0.1", "hostname": "localhost"}])
        );
        assert_eq!(
            load_balancer_status("10.0.0.5".parse().expect("ip")),
            json!([{"ip": "10.0.0.5"}])
        );
    }

    #[test]
    fn default_pages_carry_the_status() {
        let page = page(StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(page.status(), 503);
    }
}
