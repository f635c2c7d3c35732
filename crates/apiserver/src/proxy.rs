//! `pods/{name}/proxy/…` and `services/{name}/proxy/…`, which `kubectl proxy` and dashboards
//! use: the request goes to the pod's address (for a Service, one of its ready endpoints) and
//! the answer comes back as it is.
//!
//! The API server dials only what [`PodDialer`] allows: a pod that this process's node runs as
//! real containers, at its address on petset's own bridge. A pod of a simulated node has an
//! address for bookkeeping only and gets a clear 503; nothing else is ever dialed.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderName, Uri, header};
use axum::response::Response;
use hyper_util::rt::TokioIo;
use petset_api::ApiError;
use serde_json::Value;

use crate::ApiState;
use crate::registry::Scope;

/// Decides which pod addresses the API server may dial.
pub trait PodDialer: Send + Sync {
    /// `Ok` when this process's node runs `pod` as real containers and `address` is on its
    /// bridge; otherwise why not.
    fn may_dial(&self, pod: &Value, address: IpAddr) -> Result<(), String>;
}

/// What a proxy URL names: `pods|services`, the namespace, `[scheme:]name[:port]`, the rest.
pub(crate) struct ProxyTarget {
    pub namespace: String,
    pub service: bool,
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
    dialer: Option<&Arc<dyn PodDialer>>,
    target: ProxyTarget,
    request: Request,
) -> Result<Response, ApiError> {
    let find =
        |plural: &str| petset_api::resources::find("", "v1", plural).ok_or_else(ApiError::no_route);
    let scope = |plural| -> Result<Scope<'_>, ApiError> {
        Ok(Scope {
            resource: find(plural)?,
            namespace: Some(&target.namespace),
        })
    };
    let (pod, address, port) = if target.service {
        let service = state.registry.get(scope("services")?, &target.name).await?;
        let endpoints = state
            .registry
            .get(scope("endpoints")?, &target.name)
            .await
            .unwrap_or(Value::Null);
        let (ip, port, pod_name) =
            pick_endpoint(&service, &endpoints, &target.port).ok_or_else(|| {
                ApiError::service_unavailable(format!(
                    "no endpoints available for service \"{}\"",
                    target.name
                ))
            })?;
        let pod = match pod_name {
            Some(name) => state.registry.get(scope("pods")?, &name).await?,
            None => Value::Null,
        };
        (pod, ip, port)
    } else {
        let pod = state.registry.get(scope("pods")?, &target.name).await?;
        let ip = pod
            .pointer("/status/podIP")
            .and_then(Value::as_str)
            .and_then(|ip| ip.parse::<IpAddr>().ok())
            .ok_or_else(|| {
                ApiError::bad_request(format!(
                    "address not allowed: pod {} has no IP yet",
                    target.name
                ))
            })?;
        let port = pod_port(&pod, &target.port).ok_or_else(|| {
            ApiError::bad_request(format!(
                "no port named {:?} in pod {}",
                target.port, target.name
            ))
        })?;
        (pod, ip, port)
    };
    let Some(dialer) = dialer else {
        return Err(ApiError::service_unavailable(format!(
            "pod {}: no node here runs real containers, so there is nothing to proxy to",
            pod.pointer("/metadata/name")
                .and_then(Value::as_str)
                .unwrap_or(&target.name)
        )));
    };
    dialer
        .may_dial(&pod, address)
        .map_err(ApiError::service_unavailable)?;
    forward(SocketAddr::new(address, port), &target.path, request).await
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

/// A ready endpoint of the Service's port `port` (its name or number; empty for a Service of
/// one unnamed port): address, target port, and the pod's name.
fn pick_endpoint(
    service: &Value,
    endpoints: &Value,
    port: &str,
) -> Option<(IpAddr, u16, Option<String>)> {
    let service_ports = service.pointer("/spec/ports")?.as_array()?;
    let port_name = if port.is_empty() {
        String::new()
    } else if let Ok(number) = port.parse::<u64>() {
        let found = service_ports
            .iter()
            .find(|p| p.get("port").and_then(Value::as_u64) == Some(number))?;
        found
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    } else {
        port.to_string()
    };
    let mut candidates = Vec::new();
    for subset in endpoints
        .get("subsets")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let Some(target_port) = subset
            .get("ports")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .find(|p| p.get("name").and_then(Value::as_str).unwrap_or_default() == port_name)
            .and_then(|p| p.get("port")?.as_u64())
            .and_then(|p| u16::try_from(p).ok())
        else {
            continue;
        };
        for address in subset
            .get("addresses")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let Some(ip) = address
                .get("ip")
                .and_then(Value::as_str)
                .and_then(|ip| ip.parse().ok())
            else {
                continue;
            };
            let pod = address
                .pointer("/targetRef")
                .filter(|r| r.get("kind").and_then(Value::as_str) == Some("Pod"))
                .and_then(|r| r.get("name")?.as_str())
                .map(str::to_string);
            candidates.push((ip, target_port, pod));
        }
    }
    if candidates.is_empty() {
        return None;
    }
    let index = NEXT_ENDPOINT.fetch_add(1, Ordering::Relaxed) % candidates.len();
    Some(candidates.swap_remove(index))
}

/// Headers that belong to one connection (RFC 9110 7.6.1) or to the API server: never passed
/// on. The caller's credentials for the API are not the pod's business.
fn is_not_forwarded(name: &HeaderName) -> bool {
    matches!(
        name.as_str(),
        "connection"
            | "keep-alive"
            | "proxy-connection"
            | "te"
            | "trailer"
            | "transfer-encoding"
            | "upgrade"
            | "authorization"
            | "proxy-authorization"
            | "impersonate-user"
            | "impersonate-group"
    )
}

async fn forward(to: SocketAddr, path: &str, request: Request) -> Result<Response, ApiError> {
    let unreachable = |e: &dyn std::fmt::Display| {
        ApiError::service_unavailable(format!("error trying to reach service: dial tcp {to}: {e}"))
    };
    let stream = tokio::time::timeout(Duration::from_secs(10), tokio::net::TcpStream::connect(to))
        .await
        .map_err(|e| unreachable(&e))?
        .map_err(|e| unreachable(&e))?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| unreachable(&e))?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    let (parts, body) = request.into_parts();
    let path_and_query = match parts.uri.query() {
        Some(query) => format!("{path}?{query}"),
        None => path.to_string(),
    };
    let uri: Uri = path_and_query
        .parse()
        .map_err(|_| ApiError::bad_request(format!("invalid proxy path {path_and_query:?}")))?;
    let mut outgoing = axum::http::Request::builder().method(parts.method).uri(uri);
    for (name, value) in &parts.headers {
        if !is_not_forwarded(name) && name != header::HOST {
            outgoing = outgoing.header(name, value);
        }
    }
    outgoing = outgoing.header(header::HOST, to.to_string());
    let outgoing = outgoing
        .body(body)
        .map_err(|e| ApiError::internal(e.to_string()))?;
    let answer = sender
        .send_request(outgoing)
        .await
        .map_err(|e| unreachable(&e))?;
    let (mut parts, body) = answer.into_parts();
    let dropped: Vec<HeaderName> = parts
        .headers
        .keys()
        .filter(|name| is_not_forwarded(name))
        .cloned()
        .collect();
    for name in dropped {
        parts.headers.remove(name);
    }
    Ok(Response::from_parts(parts, Body::new(body)))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn proxy_paths_name_the_object_the_port_and_the_rest() {
        let target =
            ProxyTarget::parse("/api/v1/namespaces/ns/pods/web-0/proxy/").expect("pod proxy");
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
    fn a_service_port_picks_the_matching_endpoint_port() {
        let service = json!({"spec": {"ports": [{"name": "http", "port": 80}, {"name": "admin", "port": 9000}]}});
        let endpoints = json!({"subsets": [{
            "addresses": [{"ip": "10.244.0.5", "targetRef": {"kind": "Pod", "name": "web-0"}}],
            "ports": [{"name": "http", "port": 8080}, {"name": "admin", "port": 9001}],
        }]});
        let (ip, port, pod) = pick_endpoint(&service, &endpoints, "admin").expect("admin");
        assert_eq!(
            (ip.to_string(), port, pod.as_deref()),
            ("10.244.0.5".into(), 9001, Some("web-0"))
        );
        assert_eq!(
            pick_endpoint(&service, &endpoints, "80").map(|e| e.1),
            Some(8080)
        );
        assert!(pick_endpoint(&service, &json!({}), "http").is_none());
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
}
