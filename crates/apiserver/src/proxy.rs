//! `pods/{name}/proxy/…` and `services/{name}/proxy/…`, which `kubectl proxy` and dashboards
//! use: the request goes to the pod (for a Service, the pod of one of its ready endpoints) and
//! the answer comes back as it is.
//!
//! Unlike upstream's, this API server dials no pod address: the request is relayed to the
//! pod's node API (`/podProxy/{ns}/{pod}/{uid}/{port}{path}`, see `nodes/location.rs`), and
//! the node dials its own pod, on its own bridge, as for port-forward. So the API server needs
//! no route into any pod network, and a pod on a node it cannot reach answers 503 as logs and
//! exec do. The node marks the pod's own answers (`petset-relayed-from-pod`); anything else
//! it answers is its refusal, which becomes a `Status`.

use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::Response;
use petset_api::ApiError;
use serde_json::Value;

use crate::ApiState;
use crate::nodes::relay;
use crate::registry::Scope;

/// The header a node sets on the answers that are the pod's own (petset's node API,
/// `agent/src/kubelet/proxy.rs`).
const RELAYED_FROM_POD: &str = "petset-relayed-from-pod";

/// What a proxy URL names: `pods|services`, the namespace, `[scheme:]name[:port]`, the rest.
pub(crate) struct ProxyTarget {
    pub namespace: String,
    pub service: bool,
    /// The object as the URL names it (`https:web:443`), for upstream's messages.
    pub id: String,
    pub name: String,
    pub port: String,
    pub path: String,
}

impl ProxyTarget {
    /// Recognizes `/api/v1/namespaces/NS/{pods,services}/NAME/proxy[/…]`.
    pub fn parse(path: &str) -> Option<Self> {
        let rest = path.strip_prefix("/api/v1/namespaces/")?;
        let (namespace, rest) = rest.split_once('/')?;
        let (kind, rest) = rest.split_once('/')?;
        let service = match kind {
            "pods" => false,
            "services" => true,
            _ => return None,
        };
        let (name, rest) = rest.split_once('/')?;
        let path = match rest.strip_prefix("proxy") {
            Some("") => "/".to_string(),
            Some(path) if path.starts_with('/') => path.to_string(),
            _ => return None,
        };
        // `name`, `name:port` or `scheme:name:port`, as upstream splits it.
        let id = name.to_string();
        let parts: Vec<&str> = name.split(':').collect();
        let (name, port) = match parts.as_slice() {
            [name] => (*name, ""),
            [name, port] => (*name, *port),
            [_scheme, name, port] => (*name, *port),
            _ => return None,
        };
        Some(Self {
            namespace: namespace.to_string(),
            service,
            id,
            name: name.to_string(),
            port: port.to_string(),
            path,
        })
    }
}

/// Round-robin over a Service's endpoints, process-wide.
static NEXT_ENDPOINT: AtomicUsize = AtomicUsize::new(0);

pub(crate) async fn serve(
    state: &ApiState,
    target: ProxyTarget,
    request: Request,
) -> Result<Response, ApiError> {
    let (pod, port) = if target.service {
        service_backend(state, &target).await?
    } else {
        pod_backend(state, &target).await?
    };
    let node = crate::nodes::node_of(&pod).ok_or_else(|| {
        ApiError::bad_request(format!(
            "pod {} does not have a host assigned",
            text(&pod, "/metadata/name")
        ))
    })?;
    let location = crate::nodes::proxy_location(&pod, port, &target.path, request.uri().query())?;
    relay_to_node(state, node, &location, request).await
}

/// Sends the request on to `node` as `location` and relays its answer: the pod's as it is
/// (an upgrade once the pod switched), the node's own refusal as a `Status`.
async fn relay_to_node(
    state: &ApiState,
    node: &str,
    location: &str,
    mut request: Request,
) -> Result<Response, ApiError> {
    let (connector, endpoint) = relay::node_of(state, node).await?;
    // An upgrade is relayed only where there is one to hand over (HTTP/1.1).
    let client_upgrade = if is_upgrade(request.headers()) {
        request
            .extensions_mut()
            .remove::<hyper::upgrade::OnUpgrade>()
    } else {
        None
    };
    let (parts, body) = request.into_parts();
    let mut outgoing = Request::new(if client_upgrade.is_some() {
        Body::empty()
    } else {
        body
    });
    *outgoing.method_mut() = parts.method;
    *outgoing.uri_mut() = location
        .parse()
        .map_err(|_| ApiError::bad_request(format!("invalid proxy path {location:?}")))?;
    *outgoing.headers_mut() = end_to_end(&parts.headers, true);
    if client_upgrade.is_some()
        && let Some(upgrade) = parts.headers.get(header::UPGRADE)
    {
        let headers = outgoing.headers_mut();
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        headers.insert(header::UPGRADE, upgrade.clone());
    }
    let mut answer = relay::send(connector, &endpoint, outgoing)
        .await
        .map_err(relay::unreachable)?;
    if answer.headers_mut().remove(RELAYED_FROM_POD).is_none() {
        return Err(relay::refusal(answer).await);
    }
    if answer.status() == StatusCode::SWITCHING_PROTOCOLS {
        let Some(client_upgrade) = client_upgrade else {
            return Err(ApiError::bad_request("Upgrade request required"));
        };
        return relay::switch(answer, client_upgrade);
    }
    let (mut parts, body) = answer.into_parts();
    parts.headers = end_to_end(&parts.headers, false);
    Ok(Response::from_parts(parts, Body::new(body)))
}

/// A string field of an object ("" when absent).
fn text<'a>(object: &'a Value, pointer: &str) -> &'a str {
    object
        .pointer(pointer)
        .and_then(Value::as_str)
        .unwrap_or_default()
}

fn scope<'a>(plural: &str, namespace: &'a str) -> Result<Scope<'a>, ApiError> {
    Ok(Scope {
        resource: petset_api::resources::find("", "v1", plural).ok_or_else(ApiError::no_route)?,
        namespace: Some(namespace),
    })
}

/// `pods/NAME[:PORT]/proxy`: the pod, once it has an address, and the port.
async fn pod_backend(state: &ApiState, target: &ProxyTarget) -> Result<(Value, u16), ApiError> {
    let pod = state
        .registry
        .get(scope("pods", &target.namespace)?, &target.name)
        .await?;
    if text(&pod, "/status/podIP").parse::<IpAddr>().is_err() {
        return Err(ApiError::bad_request(format!(
            "address not allowed: pod {} has no IP yet",
            target.name
        )));
    }
    let port = pod_port(&pod, &target.port).ok_or_else(|| {
        ApiError::bad_request(format!(
            "no port named {:?} in pod {}",
            target.port, target.name
        ))
    })?;
    Ok((pod, port))
}

/// `services/NAME[:PORT]/proxy`: the pod of a ready endpoint and the endpoint's port. As
/// upstream, an endpoint counts only when its `targetRef` names a pod of the namespace that
/// has its address; the endpoints are tried in turn from the next in a process-wide round.
async fn service_backend(state: &ApiState, target: &ProxyTarget) -> Result<(Value, u16), ApiError> {
    let namespace = &target.namespace;
    let service = state
        .registry
        .get(scope("services", namespace)?, &target.name)
        .await?;
    let port_name = service_port_name(&service, &target.name, &target.port)?;
    let endpoints = state
        .registry
        .get(scope("endpoints", namespace)?, &target.name)
        .await
        .unwrap_or(Value::Null);
    let unavailable = |id: &str| {
        ApiError::service_unavailable(format!("no endpoints available for service \"{id}\""))
    };
    let has_subsets = endpoints
        .get("subsets")
        .and_then(Value::as_array)
        .is_some_and(|subsets| !subsets.is_empty());
    if !has_subsets {
        return Err(unavailable(&target.name));
    }
    let candidates = ready_endpoints(&endpoints, &port_name, namespace);
    let turn = NEXT_ENDPOINT.fetch_add(1, Ordering::Relaxed);
    for offset in 0..candidates.len() {
        let endpoint = &candidates[(turn + offset) % candidates.len()];
        if let Some(pod) = pod_of(state, namespace, endpoint).await? {
            return Ok((pod, endpoint.port));
        }
    }
    Err(unavailable(&target.id))
}

/// The pod an endpoint names, when it still has the endpoint's address.
async fn pod_of(
    state: &ApiState,
    namespace: &str,
    endpoint: &Endpoint,
) -> Result<Option<Value>, ApiError> {
    let Some(name) = &endpoint.pod else {
        return Ok(None);
    };
    let pod = match state.registry.get(scope("pods", namespace)?, name).await {
        Ok(pod) => pod,
        Err(error) if error.code == 404 => return Ok(None),
        Err(error) => return Err(error),
    };
    let primary = std::iter::once(text(&pod, "/status/podIP"));
    let mut all = primary.chain(
        pod.pointer("/status/podIPs")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .map(|entry| text(entry, "/ip")),
    );
    let has_address = all.any(|address| address.parse::<IpAddr>().ok() == Some(endpoint.ip));
    Ok(has_address.then_some(pod))
}

/// A container port of the pod by name or number; without one, the first port a container
/// declares, else 80, as upstream.
fn pod_port(pod: &Value, port: &str) -> Option<u16> {
    if let Ok(number) = port.parse() {
        return Some(number);
    }
    let mut declared = pod
        .pointer("/spec/containers")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .flat_map(|c| {
            c.get("ports")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
        });
    let found = if port.is_empty() {
        match declared.next() {
            Some(first) => first,
            None => return Some(80),
        }
    } else {
        declared.find(|p| p.get("name").and_then(Value::as_str) == Some(port))?
    };
    found
        .get("containerPort")?
        .as_u64()
        .and_then(|p| u16::try_from(p).ok())
}

/// The name of the Service's port a proxy URL means (`port`): a name as it is, a number
/// through `spec.ports` (upstream's refusal when there is none), nothing the unnamed port.
fn service_port_name(service: &Value, name: &str, port: &str) -> Result<String, ApiError> {
    let Ok(number) = port.parse::<u64>() else {
        return Ok(port.to_string());
    };
    service
        .pointer("/spec/ports")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .find(|p| p.get("port").and_then(Value::as_u64) == Some(number))
        .map(|p| text(p, "/name").to_string())
        .ok_or_else(|| {
            ApiError::service_unavailable(format!(
                "no service port {number} found for service \"{name}\""
            ))
        })
}

/// A ready address of a Service's port.
#[derive(Debug, PartialEq, Eq)]
struct Endpoint {
    ip: IpAddr,
    /// The port on the pod.
    port: u16,
    /// The pod its `targetRef` names in the Service's namespace.
    pod: Option<String>,
}

/// The ready addresses of the Service's port `port_name`, in the order of the Endpoints.
fn ready_endpoints(endpoints: &Value, port_name: &str, namespace: &str) -> Vec<Endpoint> {
    fn list<'a>(value: &'a Value, key: &str) -> &'a [Value] {
        value
            .get(key)
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or_default()
    }
    let mut ready = Vec::new();
    for subset in list(endpoints, "subsets") {
        let Some(port) = list(subset, "ports")
            .iter()
            .find(|p| text(p, "/name") == port_name)
            .and_then(|p| p.get("port")?.as_u64())
            .and_then(|p| u16::try_from(p).ok())
        else {
            continue;
        };
        for address in list(subset, "addresses") {
            let Ok(ip) = text(address, "/ip").parse() else {
                continue;
            };
            let pod = Some(address)
                .filter(|a| text(a, "/targetRef/kind") == "Pod")
                .filter(|a| text(a, "/targetRef/namespace") == namespace)
                .map(|a| text(a, "/targetRef/name").to_string())
                .filter(|name| !name.is_empty());
            ready.push(Endpoint { ip, port, pod });
        }
    }
    ready
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

/// The headers passed on: not those of one connection (RFC 9110 7.6.1: the fixed ones and
/// those `Connection` names), and on a request (`to_pod`) not the caller's credentials for the
/// API either, which are not the pod's business (upstream's authentication drops them too).
fn end_to_end(headers: &HeaderMap, to_pod: bool) -> HeaderMap {
    let named: Vec<String> = connection_tokens(headers).collect();
    let dropped = |name: &HeaderName| {
        let name = name.as_str();
        let hop = matches!(
            name,
            "connection"
                | "keep-alive"
                | "proxy-connection"
                | "te"
                | "trailer"
                | "transfer-encoding"
                | "upgrade"
                | "host"
        ) || named.iter().any(|n| n == name);
        let credential = matches!(
            name,
            "authorization"
                | "proxy-authorization"
                | "impersonate-user"
                | "impersonate-group"
                | "impersonate-uid"
        ) || name.starts_with("impersonate-extra-");
        hop || (to_pod && (credential || name == RELAYED_FROM_POD))
    };
    let mut kept = HeaderMap::new();
    for (name, value) in headers {
        if !dropped(name) {
            kept.append(name.clone(), value.clone());
        }
    }
    kept
}

#[cfg(test)]
mod tests;
