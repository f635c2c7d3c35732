//! Which backend an HTTP request goes to, by the rules of the Ingresses the proxy serves:
//! upstream's matching (networking.k8s.io/v1 `HTTPIngressPath`), decided without I/O.
//!
//! - A rule's `host` matches the request's host exactly, or as a wildcard `*.example.com` of
//!   exactly one more label; a rule without a host matches every host. An exact host beats a
//!   wildcard, and a wildcard beats no host.
//! - Within the matching rules, an `Exact` path beats any prefix, and a longer prefix beats a
//!   shorter one. `Prefix` matches whole path elements (`/foo` matches `/foo` and `/foo/bar`,
//!   not `/foobar`); `ImplementationSpecific` is matched as `Prefix` here.
//! - Several Ingresses merge; a tie goes to the oldest (then the first by namespace and name),
//!   as ingress-nginx settles it. No matching path: the oldest Ingress's `defaultBackend`.

use k8s_openapi::api::networking::v1::{Ingress, IngressBackend};

/// Where a matched request goes: a Service port in the Ingress's namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub namespace: String,
    pub service: String,
    pub port: ServicePort,
}

/// A Service port as an Ingress names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServicePort {
    Number(i32),
    Name(String),
}

/// The answer for one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Backend(Route),
    /// A rule or default matched, but names something the proxy cannot serve (a `resource`
    /// backend): answered 503.
    Unservable,
    /// Nothing matched: answered 404.
    NoRule,
}

/// How strongly a candidate matched: compared as a tuple, higher wins.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Strength {
    /// 2 exact host, 1 wildcard host, 0 any host.
    host: u8,
    exact_path: bool,
    path_length: usize,
}

/// The backend for a request to `host` (its `Host` header, any port stripped) and `path`
/// (without the query), among `ingresses` (those of the proxy's class).
pub fn decide(ingresses: &[&Ingress], host: &str, path: &str) -> Decision {
    let host = strip_port(host).to_ascii_lowercase();
    let mut ordered: Vec<&Ingress> = ingresses.to_vec();
    ordered.sort_by_key(|ingress| age_order(ingress));
    let mut best: Option<(Strength, Decision)> = None;
    for ingress in &ordered {
        let namespace = ingress.metadata.namespace.clone().unwrap_or_default();
        let Some(spec) = &ingress.spec else { continue };
        for rule in spec.rules.iter().flatten() {
            let Some(host_strength) = host_match(rule.host.as_deref(), &host) else {
                continue;
            };
            let Some(http) = &rule.http else { continue };
            for candidate in &http.paths {
                let wanted = candidate.path.as_deref().unwrap_or("/");
                let exact = candidate.path_type == "Exact";
                let matched = if exact {
                    wanted == path
                } else {
                    prefix_match(wanted, path)
                };
                if !matched {
                    continue;
                }
                let strength = Strength {
                    host: host_strength,
                    exact_path: exact,
                    path_length: wanted.trim_end_matches('/').len(),
                };
                // Strictly stronger only: an older Ingress keeps a tie.
                if best.as_ref().is_none_or(|(held, _)| strength > *held) {
                    best = Some((strength, decision(&namespace, &candidate.backend)));
                }
            }
        }
    }
    if let Some((_, decision)) = best {
        return decision;
    }
    ordered
        .iter()
        .find_map(|ingress| {
            let backend = ingress.spec.as_ref()?.default_backend.as_ref()?;
            let namespace = ingress.metadata.namespace.clone().unwrap_or_default();
            Some(decision(&namespace, backend))
        })
        .unwrap_or(Decision::NoRule)
}

fn decision(namespace: &str, backend: &IngressBackend) -> Decision {
    let Some(service) = &backend.service else {
        return Decision::Unservable;
    };
    let port = match &service.port {
        Some(port) => match (&port.name, port.number) {
            (Some(name), _) if !name.is_empty() => ServicePort::Name(name.clone()),
            (_, Some(number)) => ServicePort::Number(number),
            _ => return Decision::Unservable,
        },
        None => return Decision::Unservable,
    };
    Decision::Backend(Route {
        namespace: namespace.to_string(),
        service: service.name.clone(),
        port,
    })
}

/// Oldest first; ties by namespace and name, so that the order never depends on a cache's.
fn age_order(ingress: &Ingress) -> (String, String, String) {
    let created = ingress
        .metadata
        .creation_timestamp
        .as_ref()
        .map(|t| t.0.to_string())
        .unwrap_or_default();
    (
        created,
        ingress.metadata.namespace.clone().unwrap_or_default(),
        ingress.metadata.name.clone().unwrap_or_default(),
    )
}

fn strip_port(host: &str) -> &str {
    // An IPv6 literal keeps its brackets; anything after the last ':' past them is a port.
    match host.rfind(':') {
        Some(colon) if !host[colon..].contains(']') => &host[..colon],
        _ => host,
    }
}

/// How `rule_host` matches `host`, or None.
fn host_match(rule_host: Option<&str>, host: &str) -> Option<u8> {
    let Some(rule_host) = rule_host.filter(|h| !h.is_empty()) else {
        return Some(0);
    };
    let rule_host = rule_host.to_ascii_lowercase();
    if let Some(suffix) = rule_host.strip_prefix("*.") {
        let (first, rest) = host.split_once('.')?;
        return (!first.is_empty() && rest == suffix).then_some(1);
    }
    (rule_host == host).then_some(2)
}

/// Upstream's `Prefix`: `wanted`'s path elements are a prefix of `path`'s (a trailing '/' on
/// either side is ignored, so `/foo/` matches `/foo`).
fn prefix_match(wanted: &str, path: &str) -> bool {
    let elements = |p: &str| -> Vec<String> {
        p.split('/')
            .filter(|e| !e.is_empty())
            .map(str::to_string)
            .collect()
    };
    let wanted = elements(wanted);
    let path = elements(path);
    path.len() >= wanted.len() && path[..wanted.len()] == wanted[..]
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn ingress(name: &str, created: &str, spec: serde_json::Value) -> Ingress {
        serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": "ns", "creationTimestamp": created},
            "spec": spec,
        }))
        .expect("an Ingress")
    }

    fn path(path: &str, path_type: &str, service: &str) -> serde_json::Value {
        json!({"path": path, "pathType": path_type,
            "backend": {"service": {"name": service, "port": {"number": 80}}}})
    }

    fn to(service: &str) -> Decision {
        Decision::Backend(Route {
            namespace: "ns".into(),
            service: service.into(),
            port: ServicePort::Number(80),
        })
    }

    #[test]
    fn prefix_matches_whole_path_elements() {
        assert!(prefix_match("/jenkins", "/jenkins"));
        assert!(prefix_match("/jenkins", "/jenkins/"));
        assert!(prefix_match("/jenkins/", "/jenkins"));
        assert!(prefix_match("/jenkins", "/jenkins/login"));
        assert!(!prefix_match("/jenkins", "/jenkinsx"));
        assert!(prefix_match("/", "/anything"));
        assert!(!prefix_match("/a/b", "/a"));
    }

    #[test]
    fn exact_beats_prefix_and_longer_prefix_beats_shorter() {
        let one = ingress(
            "one",
            "2026-01-01T00:00:00Z",
            json!({"rules": [{"http": {"paths": [
                path("/", "Prefix", "root"),
                path("/app", "Prefix", "app"),
                path("/app/admin", "ImplementationSpecific", "admin"),
                path("/app/exact", "Exact", "exact"),
            ]}}]}),
        );
        let all = [&one];
        assert_eq!(decide(&all, "x", "/other"), to("root"));
        assert_eq!(decide(&all, "x", "/app/page"), to("app"));
        assert_eq!(decide(&all, "x", "/app/admin/users"), to("admin"));
        assert_eq!(decide(&all, "x", "/app/exact"), to("exact"));
        assert_eq!(decide(&all, "x", "/app/exact/more"), to("app"));
    }

    #[test]
    fn hosts_exact_then_wildcard_of_one_label_then_any() {
        let one = ingress(
            "one",
            "2026-01-01T00:00:00Z",
            json!({"rules": [
                {"http": {"paths": [path("/", "Prefix", "any")]}},
                {"host": "*.example.com", "http": {"paths": [path("/", "Prefix", "wild")]}},
                {"host": "shop.example.com", "http": {"paths": [path("/", "Prefix", "shop")]}},
            ]}),
        );
        let all = [&one];
        assert_eq!(decide(&all, "shop.example.com:8080", "/"), to("shop"));
        assert_eq!(decide(&all, "Blog.Example.com", "/"), to("wild"));
        assert_eq!(decide(&all, "a.b.example.com", "/"), to("any"));
        assert_eq!(decide(&all, "example.com", "/"), to("any"));
        assert_eq!(decide(&all, "localhost", "/x"), to("any"));
    }

    #[test]
    fn the_oldest_ingress_wins_a_tie_and_gives_the_default_backend() {
        let newer = ingress(
            "newer",
            "2026-02-01T00:00:00Z",
            json!({"defaultBackend": {"service": {"name": "newer-default", "port": {"number": 80}}},
                "rules": [{"http": {"paths": [path("/a", "Prefix", "newer")]}}]}),
        );
        let older = ingress(
            "older",
            "2026-01-01T00:00:00Z",
            json!({"defaultBackend": {"service": {"name": "older-default", "port": {"name": "http"}}},
                "rules": [{"http": {"paths": [path("/a", "Prefix", "older")]}}]}),
        );
        let all = [&newer, &older];
        assert_eq!(decide(&all, "x", "/a/b"), to("older"));
        assert_eq!(
            decide(&all, "x", "/nothing"),
            Decision::Backend(Route {
                namespace: "ns".into(),
                service: "older-default".into(),
                port: ServicePort::Name("http".into()),
            })
        );
    }

    #[test]
    fn no_rule_is_a_404_and_a_resource_backend_a_503() {
        let one = ingress(
            "one",
            "2026-01-01T00:00:00Z",
            json!({"rules": [{"host": "a.test", "http": {"paths": [
                {"path": "/bucket", "pathType": "Prefix",
                 "backend": {"resource": {"kind": "StorageBucket", "name": "b"}}}]}}]}),
        );
        let all = [&one];
        assert_eq!(decide(&all, "b.test", "/bucket"), Decision::NoRule);
        assert_eq!(decide(&all, "a.test", "/bucket"), Decision::Unservable);
        assert_eq!(decide(&[], "a.test", "/"), Decision::NoRule);
    }
}
