//! What a request asks to do, in authorization's terms: a verb on a resource (group, namespace,
//! name, subresource) or on a plain path, read from the method and URL alone as upstream's
//! `RequestInfoFactory` does (before any handler has looked at the request). It differs from
//! the router's parsing on purpose: a resource petset does not serve is still named, so the
//! refusal says what was asked.

use axum::http::Method;

/// The attributes an authorizer decides on.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RequestInfo {
    /// `get`, `list`, `watch`, `create`, `update`, `patch`, `delete`, `deletecollection`;
    /// for a plain path, the lower-case method.
    pub verb: String,
    /// Whether this names a resource (else it is a plain path, such as discovery).
    pub is_resource_request: bool,
    pub path: String,
    pub api_group: String,
    pub api_version: String,
    pub namespace: String,
    pub resource: String,
    pub subresource: String,
    pub name: String,
}

/// Subresources of a namespace itself, not resources inside it (`/namespaces/x/status`).
const NAMESPACE_SUBRESOURCES: &[&str] = &["status", "finalize"];

impl RequestInfo {
    pub fn parse(method: &Method, path: &str, query: Option<&str>) -> Self {
        let mut info = Self {
            verb: method.as_str().to_ascii_lowercase(),
            path: path.to_string(),
            ..Self::default()
        };
        let parts: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
        let mut rest: &[&str] = match parts.as_slice() {
            ["api", version, rest @ ..] if !rest.is_empty() => {
                info.api_version = (*version).to_string();
                rest
            }
            ["apis", group, version, rest @ ..] if !rest.is_empty() => {
                info.api_group = (*group).to_string();
                info.api_version = (*version).to_string();
                rest
            }
            _ => return info,
        };
        info.is_resource_request = true;
        // `/watch/…` and `/proxy/…` name the verb in the path (the old forms).
        let verb_in_path = matches!(rest, ["watch" | "proxy", _, ..]);
        if verb_in_path {
            info.verb = rest[0].to_string();
            rest = &rest[1..];
        } else {
            info.verb = match *method {
                Method::POST => "create",
                Method::GET | Method::HEAD => "get",
                Method::PUT => "update",
                Method::PATCH => "patch",
                Method::DELETE => "delete",
                _ => "",
            }
            .to_string();
        }
        if let ["namespaces", namespace, after @ ..] = rest {
            info.namespace = (*namespace).to_string();
            if after
                .first()
                .is_some_and(|p| !NAMESPACE_SUBRESOURCES.contains(p))
            {
                rest = after;
            }
        }
        info.resource = rest.first().map(|s| s.to_string()).unwrap_or_default();
        info.name = rest.get(1).map(|s| s.to_string()).unwrap_or_default();
        if info.verb != "proxy" {
            info.subresource = rest.get(2).map(|s| s.to_string()).unwrap_or_default();
        }
        let query = Query::new(query);
        if info.name.is_empty() && info.verb == "get" {
            info.verb = if query.watch() { "watch" } else { "list" }.to_string();
            // A list or watch of one object by name is about that object.
            if let Some(name) = query.exact_name() {
                info.name = name;
            }
        }
        if info.name.is_empty() && info.verb == "delete" {
            info.verb = "deletecollection".to_string();
        }
        info
    }

    /// `<resource>` or `<resource>/<subresource>`, as refusals name it.
    pub fn resource_path(&self) -> String {
        if self.subresource.is_empty() {
            self.resource.clone()
        } else {
            format!("{}/{}", self.resource, self.subresource)
        }
    }
}

struct Query(Vec<(String, String)>);

impl Query {
    fn new(raw: Option<&str>) -> Self {
        Self(
            form_urlencoded::parse(raw.unwrap_or_default().as_bytes())
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect(),
        )
    }

    fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    fn watch(&self) -> bool {
        crate::handlers::query_bool(self.get("watch"))
    }

    /// The name a field selector requires (`metadata.name=x` or `==x` among its terms).
    fn exact_name(&self) -> Option<String> {
        let selector = self.get("fieldSelector")?;
        selector.split(',').find_map(|term| {
            let value = term
                .trim()
                .strip_prefix("metadata.name")?
                .trim_start()
                .strip_prefix('=')?;
            let value = value.strip_prefix('=').unwrap_or(value).trim();
            // Only a name that could be a path segment counts, as upstream checks.
            (!value.is_empty() && value != "." && value != ".." && !value.contains(['/', '%']))
                .then(|| value.to_string())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(method: Method, uri: &str) -> RequestInfo {
        let (path, query) = match uri.split_once('?') {
            Some((path, query)) => (path, Some(query)),
            None => (uri, None),
        };
        RequestInfo::parse(&method, path, query)
    }

    /// (verb, group, namespace, resource, subresource, name)
    fn attributes(info: &RequestInfo) -> (&str, &str, &str, &str, &str, &str) {
        (
            &info.verb,
            &info.api_group,
            &info.namespace,
            &info.resource,
            &info.subresource,
            &info.name,
        )
    }

    #[test]
    fn verbs_come_from_the_method_and_the_path_as_upstream() {
        let cases = [
            (
                Method::GET,
                "/api/v1/pods",
                ("list", "", "", "pods", "", ""),
            ),
            (
                Method::GET,
                "/api/v1/namespaces/default/pods?watch=true",
                ("watch", "", "default", "pods", "", ""),
            ),
            (
                Method::GET,
                "/api/v1/namespaces/default/pods/web-0",
                ("get", "", "default", "pods", "", "web-0"),
            ),
            (
                Method::GET,
                "/api/v1/namespaces/default/secrets?fieldSelector=metadata.name%3Dtoken&watch=1",
                ("watch", "", "default", "secrets", "", "token"),
            ),
            (
                Method::PATCH,
                "/api/v1/namespaces/default/pods/web-0/status",
                ("patch", "", "default", "pods", "status", "web-0"),
            ),
            (
                Method::POST,
                "/api/v1/namespaces/default/pods/web-0/binding",
                ("create", "", "default", "pods", "binding", "web-0"),
            ),
            (
                Method::PUT,
                "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/n1",
                (
                    "update",
                    "coordination.k8s.io",
                    "kube-node-lease",
                    "leases",
                    "",
                    "n1",
                ),
            ),
            (
                Method::DELETE,
                "/api/v1/namespaces/default/pods",
                ("deletecollection", "", "default", "pods", "", ""),
            ),
            (
                Method::GET,
                "/api/v1/namespaces/default",
                ("get", "", "default", "namespaces", "", "default"),
            ),
            (
                Method::PUT,
                "/api/v1/namespaces/gone/finalize",
                ("update", "", "gone", "namespaces", "finalize", "gone"),
            ),
            (
                Method::GET,
                "/api/v1/watch/namespaces/default/pods",
                ("watch", "", "default", "pods", "", ""),
            ),
            (
                Method::GET,
                "/api/v1/namespaces/default/pods/web-0/proxy/index.html",
                ("get", "", "default", "pods", "proxy", "web-0"),
            ),
            (
                Method::POST,
                "/api/v1/nodes",
                ("create", "", "", "nodes", "", ""),
            ),
        ];
        for (method, uri, expected) in cases {
            let info = parse(method, uri);
            assert!(info.is_resource_request, "{uri}");
            assert_eq!(attributes(&info), expected, "{uri}");
        }
    }

    #[test]
    fn discovery_and_other_paths_are_not_resources() {
        for uri in [
            "/api",
            "/api/v1",
            "/apis",
            "/apis/apps/v1",
            "/version",
            "/openapi/v2",
        ] {
            let info = parse(Method::GET, uri);
            assert!(!info.is_resource_request, "{uri}");
            assert_eq!(info.verb, "get");
            assert_eq!(info.path, uri);
        }
        assert_eq!(parse(Method::POST, "/logs").verb, "post");
    }
}
