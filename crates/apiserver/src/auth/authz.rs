//! What a user may do. `system:masters` may do anything; every authenticated user may read
//! discovery (upstream's default `system:discovery` binding); a node may do what upstream's
//! Node authorizer and NodeRestriction admission let a kubelet do, as far as petset's agent
//! needs ([`super::node`]); anything else is refused with upstream's 403 text.

use petset_api::ApiError;
use petset_api::error::Details;
use serde_json::Value;

use super::authn::MASTERS_GROUP;
use super::node::{self, Outcome};
use super::{RequestInfo, UserInfo};

/// What the rules read beyond the URL, fetched only when [`needs`] says so.
#[derive(Debug, Default)]
pub struct Facts {
    /// The object a create sends (its body as JSON).
    pub sent: Option<Value>,
    /// The stored object a write names (`None` when it does not exist).
    pub stored: Option<Value>,
}

/// Which [`Facts`] a decision needs.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Needs {
    pub sent: bool,
    pub stored: bool,
}

pub fn needs(user: &UserInfo, info: &RequestInfo) -> Needs {
    if user.in_group(MASTERS_GROUP) {
        return Needs::default();
    }
    match node::identity(user) {
        Some(_) => node::needs(info),
        None => Needs::default(),
    }
}

/// Non-resource paths `system:discovery` lets every authenticated user read.
fn is_discovery(path: &str) -> bool {
    let path = path.trim_end_matches('/');
    matches!(path, "/api" | "/apis" | "/openapi" | "/version")
        || ["/api/", "/apis/", "/openapi/"]
            .iter()
            .any(|prefix| path.starts_with(prefix))
}

/// Lets the request through, or the 403 upstream answers it with.
pub fn authorize(user: &UserInfo, info: &RequestInfo, facts: &Facts) -> Result<(), ApiError> {
    if user.in_group(MASTERS_GROUP) {
        return Ok(());
    }
    if !info.is_resource_request && info.verb == "get" && is_discovery(&info.path) {
        return Ok(());
    }
    let outcome = match node::identity(user) {
        Some(node_name) => node::decide(user, node_name, info, facts),
        None => Outcome::Deny(None),
    };
    match outcome {
        Outcome::Allow => Ok(()),
        Outcome::Deny(reason) => {
            let denial = match reason {
                Some(reason) => format!("{}: {reason}", denial_message(user, info)),
                None => denial_message(user, info),
            };
            Err(forbidden(info, &info.name, denial))
        }
        Outcome::Refuse { name, message } => Err(forbidden(info, &name, message)),
    }
}

/// The authorizer's refusal (upstream's `forbiddenMessage`).
fn denial_message(user: &UserInfo, info: &RequestInfo) -> String {
    let name = &user.name;
    let verb = &info.verb;
    if !info.is_resource_request {
        return format!("User {name:?} cannot {verb} path {:?}", info.path);
    }
    let resource = info.resource_path();
    let group = &info.api_group;
    if info.namespace.is_empty() {
        format!(
            "User {name:?} cannot {verb} resource {resource:?} in API group {group:?} at the cluster scope"
        )
    } else {
        let namespace = &info.namespace;
        format!(
            "User {name:?} cannot {verb} resource {resource:?} in API group {group:?} in the namespace {namespace:?}"
        )
    }
}

/// Upstream's `NewForbidden(group resource, name, message)`.
fn forbidden(info: &RequestInfo, name: &str, message: String) -> ApiError {
    let qualified = match (info.resource.as_str(), info.api_group.as_str()) {
        ("", _) => String::new(),
        (resource, "") => resource.to_string(),
        (resource, group) => format!("{resource}.{group}"),
    };
    let message = match (qualified.is_empty(), name.is_empty()) {
        (true, _) => format!("forbidden: {message}"),
        (false, true) => format!("{qualified} is forbidden: {message}"),
        (false, false) => format!("{qualified} {name:?} is forbidden: {message}"),
    };
    ApiError {
        code: 403,
        reason: "Forbidden",
        message,
        details: Some(Details {
            name: name.to_string(),
            group: info.api_group.clone(),
            kind: info.resource.clone(),
            ..Details::default()
        }),
    }
}

#[cfg(test)]
mod tests {
    use axum::http::Method;
    use serde_json::json;

    use super::*;
    use crate::auth::authn::AUTHENTICATED_GROUP;
    use crate::auth::node::NODES_GROUP;

    fn node_user(name: &str) -> UserInfo {
        UserInfo::new(
            &format!("system:node:{name}"),
            &[NODES_GROUP, AUTHENTICATED_GROUP],
        )
    }

    fn pod_on(node: &str) -> Value {
        json!({"metadata": {"name": "web-0", "namespace": "default"}, "spec": {"nodeName": node}})
    }

    fn volume_pinned_to(node: &str) -> Value {
        json!({"metadata": {"name": "pvc-1"}, "spec": {"nodeAffinity": {"required": {"nodeSelectorTerms": [
            {"matchExpressions": [{"key": "kubernetes.io/hostname", "operator": "In", "values": [node]}]}
        ]}}}})
    }

    struct Case {
        user: UserInfo,
        method: Method,
        uri: &'static str,
        facts: Facts,
        /// `None`: allowed; else the refusal's message.
        refusal: Option<&'static str>,
    }

    fn case(
        user: &UserInfo,
        method: Method,
        uri: &'static str,
        refusal: Option<&'static str>,
    ) -> Case {
        Case {
            user: user.clone(),
            method,
            uri,
            facts: Facts::default(),
            refusal,
        }
    }

    fn with(mut case: Case, sent: Option<Value>, stored: Option<Value>) -> Case {
        case.facts = Facts { sent, stored };
        case
    }

    #[test]
    fn the_decision_table() {
        let n1 = node_user("n1");
        let admin = UserInfo::new("kubernetes-admin", &[MASTERS_GROUP, AUTHENTICATED_GROUP]);
        let stranger = UserInfo::new("jane", &["developers", AUTHENTICATED_GROUP]);
        let unnamed_node = UserInfo::new("system:node:", &[NODES_GROUP, AUTHENTICATED_GROUP]);
        use Method as M;
        let cases = vec![
            case(&admin, M::DELETE, "/api/v1/nodes/n2", None),
            case(&admin, M::GET, "/api/v1/secrets", None),
            // Discovery for everyone authenticated; nothing else for a stranger.
            case(&stranger, M::GET, "/apis/apps/v1", None),
            case(
                &stranger,
                M::GET,
                "/api/v1/namespaces/default/pods",
                Some(
                    r#"pods is forbidden: User "jane" cannot list resource "pods" in API group "" in the namespace "default""#,
                ),
            ),
            case(
                &stranger,
                M::GET,
                "/metrics",
                Some(r#"forbidden: User "jane" cannot get path "/metrics""#),
            ),
            case(
                &unnamed_node,
                M::GET,
                "/api/v1/nodes",
                Some(
                    r#"nodes is forbidden: User "system:node:" cannot list resource "nodes" in API group "" at the cluster scope: unknown node for user "system:node:""#,
                ),
            ),
            // Reads the agent makes.
            case(
                &n1,
                M::GET,
                "/api/v1/pods?fieldSelector=spec.nodeName%3Dn1&watch=true",
                None,
            ),
            case(&n1, M::GET, "/api/v1/pods?watch=true", None),
            case(&n1, M::GET, "/api/v1/nodes", None),
            case(&n1, M::GET, "/api/v1/services?watch=1", None),
            case(&n1, M::GET, "/api/v1/endpoints", None),
            case(
                &n1,
                M::GET,
                "/apis/discovery.k8s.io/v1/endpointslices",
                None,
            ),
            case(&n1, M::GET, "/api/v1/persistentvolumes?watch=true", None),
            case(
                &n1,
                M::GET,
                "/api/v1/namespaces/default/persistentvolumeclaims/data-web-0",
                None,
            ),
            case(
                &n1,
                M::GET,
                "/apis/storage.k8s.io/v1/storageclasses/local-path",
                None,
            ),
            case(
                &n1,
                M::GET,
                "/api/v1/namespaces/default/secrets/token",
                None,
            ),
            case(
                &n1,
                M::GET,
                "/api/v1/namespaces/default/configmaps/settings",
                None,
            ),
            case(
                &n1,
                M::GET,
                "/api/v1/namespaces/default/secrets",
                Some(
                    r#"secrets is forbidden: User "system:node:n1" cannot list resource "secrets" in API group "" in the namespace "default": No Object name found"#,
                ),
            ),
            case(
                &n1,
                M::GET,
                "/api/v1/secrets?watch=true",
                Some(
                    r#"secrets is forbidden: User "system:node:n1" cannot watch resource "secrets" in API group "" at the cluster scope: can only read namespaced object of this type"#,
                ),
            ),
            case(
                &n1,
                M::DELETE,
                "/api/v1/namespaces/default/secrets/token",
                Some(
                    r#"secrets "token" is forbidden: User "system:node:n1" cannot delete resource "secrets" in API group "" in the namespace "default": can only read resources of this type"#,
                ),
            ),
            case(
                &n1,
                M::PATCH,
                "/api/v1/namespaces/default/services/web",
                Some(
                    r#"services "web" is forbidden: User "system:node:n1" cannot patch resource "services" in API group "" in the namespace "default""#,
                ),
            ),
            // Its own Node, and no other.
            with(
                case(&n1, M::POST, "/api/v1/nodes", None),
                Some(
                    json!({"metadata": {"name": "n1", "labels": {"kubernetes.io/hostname": "n1", "node.petset.dev/simulated": "true"}}}),
                ),
                None,
            ),
            with(
                case(
                    &n1,
                    M::POST,
                    "/api/v1/nodes",
                    Some(
                        r#"nodes "n2" is forbidden: node "n1" is not allowed to modify node "n2""#,
                    ),
                ),
                Some(json!({"metadata": {"name": "n2"}})),
                None,
            ),
            with(
                case(
                    &n1,
                    M::POST,
                    "/api/v1/nodes",
                    Some(
                        r#"nodes "n1" is forbidden: node "n1" is not allowed to set the following labels: foo.kubernetes.io/bar, node-restriction.kubernetes.io/pool"#,
                    ),
                ),
                Some(
                    json!({"metadata": {"name": "n1", "labels": {"node-restriction.kubernetes.io/pool": "a", "foo.kubernetes.io/bar": "b", "node.kubernetes.io/instance-type": "c"}}}),
                ),
                None,
            ),
            case(&n1, M::PATCH, "/api/v1/nodes/n1/status", None),
            case(&n1, M::PATCH, "/api/v1/nodes/n1", None),
            case(&n1, M::PUT, "/api/v1/nodes/n1", None),
            case(
                &n1,
                M::PATCH,
                "/api/v1/nodes/n2/status",
                Some(r#"nodes "n2" is forbidden: node "n1" is not allowed to modify node "n2""#),
            ),
            case(
                &n1,
                M::DELETE,
                "/api/v1/nodes/n1",
                Some(
                    r#"nodes "n1" is forbidden: User "system:node:n1" cannot delete resource "nodes" in API group "" at the cluster scope"#,
                ),
            ),
            case(
                &n1,
                M::GET,
                "/api/v1/nodes/n2/proxy/metrics",
                Some(
                    r#"nodes "n2" is forbidden: User "system:node:n1" cannot get resource "nodes/proxy" in API group "" at the cluster scope"#,
                ),
            ),
            // Its own Lease.
            case(
                &n1,
                M::PATCH,
                "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/n1",
                None,
            ),
            with(
                case(
                    &n1,
                    M::POST,
                    "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases",
                    None,
                ),
                Some(json!({"metadata": {"name": "n1"}})),
                None,
            ),
            with(
                case(
                    &n1,
                    M::POST,
                    "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases",
                    Some(
                        r#"leases.coordination.k8s.io "n2" is forbidden: can only access node lease with the same name as the requesting node"#,
                    ),
                ),
                Some(json!({"metadata": {"name": "n2"}})),
                None,
            ),
            case(
                &n1,
                M::PATCH,
                "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/n2",
                Some(
                    r#"leases.coordination.k8s.io "n2" is forbidden: User "system:node:n1" cannot patch resource "leases" in API group "coordination.k8s.io" in the namespace "kube-node-lease": can only access node lease with the same name as the requesting node"#,
                ),
            ),
            case(
                &n1,
                M::PATCH,
                "/apis/coordination.k8s.io/v1/namespaces/default/leases/n1",
                Some(
                    r#"leases.coordination.k8s.io "n1" is forbidden: User "system:node:n1" cannot patch resource "leases" in API group "coordination.k8s.io" in the namespace "default": can only access leases in the "kube-node-lease" system namespace"#,
                ),
            ),
            case(
                &n1,
                M::GET,
                "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases",
                Some(
                    r#"leases.coordination.k8s.io is forbidden: User "system:node:n1" cannot list resource "leases" in API group "coordination.k8s.io" in the namespace "kube-node-lease": can only get, create, update, patch, or delete a node lease"#,
                ),
            ),
            // Pods bound to it, judged by the stored pod.
            with(
                case(
                    &n1,
                    M::PATCH,
                    "/api/v1/namespaces/default/pods/web-0/status",
                    None,
                ),
                None,
                Some(pod_on("n1")),
            ),
            with(
                case(
                    &n1,
                    M::PATCH,
                    "/api/v1/namespaces/default/pods/web-0/status",
                    Some(
                        r#"pods "web-0" is forbidden: node "n1" can only update pod status for pods with spec.nodeName set to itself"#,
                    ),
                ),
                None,
                Some(pod_on("n2")),
            ),
            with(
                case(
                    &n1,
                    M::DELETE,
                    "/api/v1/namespaces/default/pods/web-0",
                    None,
                ),
                None,
                Some(pod_on("n1")),
            ),
            with(
                case(
                    &n1,
                    M::DELETE,
                    "/api/v1/namespaces/default/pods/web-0",
                    Some(
                        r#"pods "web-0" is forbidden: node "n1" can only delete pods with spec.nodeName set to itself"#,
                    ),
                ),
                None,
                Some(pod_on("n2")),
            ),
            with(
                case(
                    &n1,
                    M::POST,
                    "/api/v1/namespaces/default/pods",
                    Some(
                        r#"pods "web-0" is forbidden: pod does not have "kubernetes.io/config.mirror" annotation, node "n1" can only create mirror pods"#,
                    ),
                ),
                Some(pod_on("n1")),
                None,
            ),
            case(
                &n1,
                M::POST,
                "/api/v1/namespaces/default/pods/web-0/binding",
                Some(
                    r#"pods "web-0" is forbidden: User "system:node:n1" cannot create resource "pods/binding" in API group "" in the namespace "default""#,
                ),
            ),
            case(
                &n1,
                M::PATCH,
                "/api/v1/namespaces/default/pods/web-0",
                Some(
                    r#"pods "web-0" is forbidden: User "system:node:n1" cannot patch resource "pods" in API group "" in the namespace "default""#,
                ),
            ),
            // Events anywhere.
            case(&n1, M::POST, "/api/v1/namespaces/shop/events", None),
            case(
                &n1,
                M::PATCH,
                "/apis/events.k8s.io/v1/namespaces/shop/events/e1",
                None,
            ),
            case(
                &n1,
                M::DELETE,
                "/api/v1/namespaces/shop/events/e1",
                Some(
                    r#"events "e1" is forbidden: User "system:node:n1" cannot delete resource "events" in API group "" in the namespace "shop""#,
                ),
            ),
            // Volumes pinned to it.
            with(
                case(&n1, M::PATCH, "/api/v1/persistentvolumes/pvc-1", None),
                None,
                Some(volume_pinned_to("n1")),
            ),
            with(
                case(
                    &n1,
                    M::PATCH,
                    "/api/v1/persistentvolumes/pvc-1",
                    Some(
                        r#"persistentvolumes "pvc-1" is forbidden: User "system:node:n1" cannot patch resource "persistentvolumes" in API group "" at the cluster scope: no relationship found between node 'n1' and this object"#,
                    ),
                ),
                None,
                Some(volume_pinned_to("n2")),
            ),
            case(
                &n1,
                M::DELETE,
                "/api/v1/persistentvolumes/pvc-1",
                Some(
                    r#"persistentvolumes "pvc-1" is forbidden: User "system:node:n1" cannot delete resource "persistentvolumes" in API group "" at the cluster scope"#,
                ),
            ),
        ];
        for case in cases {
            let (path, query) = match case.uri.split_once('?') {
                Some((path, query)) => (path, Some(query)),
                None => (case.uri, None),
            };
            let info = RequestInfo::parse(&case.method, path, query);
            let decision = authorize(&case.user, &info, &case.facts);
            let refusal = decision.as_ref().err().map(|e| e.message.as_str());
            assert_eq!(
                refusal, case.refusal,
                "{} {} as {}",
                case.method, case.uri, case.user.name
            );
            if let Err(error) = decision {
                assert_eq!((error.code, error.reason), (403, "Forbidden"));
            }
        }
    }

    #[test]
    fn only_node_writes_that_judge_an_object_read_one() {
        let n1 = node_user("n1");
        let needs =
            |method: Method, path: &str| needs(&n1, &RequestInfo::parse(&method, path, None));
        assert_eq!(
            needs(Method::POST, "/api/v1/nodes"),
            Needs {
                sent: true,
                stored: false
            }
        );
        assert_eq!(
            needs(
                Method::PATCH,
                "/api/v1/namespaces/default/pods/web-0/status"
            ),
            Needs {
                sent: false,
                stored: true
            }
        );
        assert_eq!(needs(Method::GET, "/api/v1/pods"), Needs::default());
        let admin = UserInfo::new("kubernetes-admin", &[MASTERS_GROUP]);
        let info = RequestInfo::parse(&Method::POST, "/api/v1/nodes", None);
        assert_eq!(super::needs(&admin, &info), Needs::default());
    }
}
