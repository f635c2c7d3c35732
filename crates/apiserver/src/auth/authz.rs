//! What a user may do, as upstream's authorizer chain `Node,RBAC`. `system:masters` may do
//! anything (upstream's privileged group, which is also bound to `cluster-admin`); a node may do
//! what upstream's Node authorizer and NodeRestriction admission let a kubelet do, as far as
//! petset's agent needs ([`super::node`]), and what RBAC grants it beyond; everyone else what
//! RBAC grants ([`super::rbac`]: discovery and the self reviews through the default
//! `system:discovery`, `system:basic-user` and `system:public-info-viewer` bindings). A refusal
//! carries upstream's 403 text, with the reasons of the authorizers that had no opinion.

use petset_api::ApiError;
use petset_api::error::Details;
use serde_json::Value;

use super::authn::MASTERS_GROUP;
use super::node::{self, Outcome};
use super::rbac::RbacIndex;
use super::{RequestInfo, UserInfo};

/// What the rules read beyond the URL, fetched only when [`needs`] says so.
#[derive(Debug, Default)]
pub struct Facts {
    /// The object a create sends (its body as JSON).
    pub sent: Option<Value>,
    /// The stored object a write names (`None` when it does not exist).
    pub stored: Option<Value>,
    /// The pods in the request's namespace bound to the requesting node.
    pub pods_here: Vec<Value>,
}

/// Which [`Facts`] a decision needs.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Needs {
    pub sent: bool,
    pub stored: bool,
    pub pods_here: bool,
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

/// Lets the request through, or the 403 upstream answers it with.
pub fn authorize(
    rbac: &RbacIndex,
    user: &UserInfo,
    info: &RequestInfo,
    facts: &Facts,
) -> Result<(), ApiError> {
    if user.in_group(MASTERS_GROUP) {
        return Ok(());
    }
    // The Node authorizer first: its "no opinion" (with its reason) falls through to RBAC.
    let mut reasons = Vec::new();
    if let Some(node_name) = node::identity(user) {
        match node::decide(user, node_name, info, facts) {
            Outcome::Allow => return Ok(()),
            Outcome::Refuse { name, message } => return Err(forbidden(info, &name, message)),
            Outcome::Deny(reason) => reasons.extend(reason),
        }
    }
    let decision = rbac.authorize(user, info);
    if decision.allowed {
        return Ok(());
    }
    if !decision.reason.is_empty() {
        reasons.push(decision.reason);
    }
    // Upstream's union authorizer joins the reasons of its members with newlines.
    let denial = match reasons.is_empty() {
        true => denial_message(user, info),
        false => format!("{}: {}", denial_message(user, info), reasons.join("\n")),
    };
    Err(forbidden(info, &info.name, denial))
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

    /// One decision a line: `<user> <METHOD> <uri> [sent:<fixture>] [stored:<fixture>]
    /// [pods-here:<fixture>…] => <refusal message, or "allowed">`.
    const TABLE: &str = r#"
admin DELETE /api/v1/nodes/n2 => allowed
admin GET /api/v1/secrets => allowed
jane GET /apis/apps/v1 => allowed
jane GET /api/v1/namespaces/default/pods => pods is forbidden: User "jane" cannot list resource "pods" in API group "" in the namespace "default"
jane GET /metrics => forbidden: User "jane" cannot get path "/metrics"
unnamed GET /api/v1/nodes => nodes is forbidden: User "system:node:" cannot list resource "nodes" in API group "" at the cluster scope: unknown node for user "system:node:"
n1 GET /api/v1/pods?fieldSelector=spec.nodeName%3Dn1&watch=true => allowed
n1 GET /api/v1/pods?watch=true => allowed
n1 GET /api/v1/nodes => allowed
n1 GET /api/v1/services?watch=1 => allowed
n1 GET /api/v1/endpoints => allowed
n1 GET /apis/discovery.k8s.io/v1/endpointslices => allowed
n1 GET /api/v1/persistentvolumes?watch=true => allowed
n1 GET /api/v1/namespaces/default/persistentvolumeclaims/data-web-0 => allowed
n1 GET /apis/storage.k8s.io/v1/storageclasses/local-path => allowed
n1 GET /api/v1/namespaces/default/secrets/token pods-here:pod-with-token => allowed
n1 GET /api/v1/namespaces/default/secrets?fieldSelector=metadata.name%3Dtoken&watch=true pods-here:pod-with-token => allowed
n1 GET /api/v1/namespaces/default/secrets/other pods-here:pod-with-token => secrets "other" is forbidden: User "system:node:n1" cannot get resource "secrets" in API group "" in the namespace "default": no relationship found between node 'n1' and this object
n1 GET /api/v1/namespaces/default/secrets/token => secrets "token" is forbidden: User "system:node:n1" cannot get resource "secrets" in API group "" in the namespace "default": no relationship found between node 'n1' and this object
n1 GET /api/v1/namespaces/default/configmaps/settings pods-here:pod-with-token => allowed
n1 GET /api/v1/namespaces/default/configmaps/token pods-here:pod-with-token => configmaps "token" is forbidden: User "system:node:n1" cannot get resource "configmaps" in API group "" in the namespace "default": no relationship found between node 'n1' and this object
n1 GET /api/v1/namespaces/default/secrets => secrets is forbidden: User "system:node:n1" cannot list resource "secrets" in API group "" in the namespace "default": No Object name found
n1 GET /api/v1/secrets?watch=true => secrets is forbidden: User "system:node:n1" cannot watch resource "secrets" in API group "" at the cluster scope: can only read namespaced object of this type
n1 DELETE /api/v1/namespaces/default/secrets/token => secrets "token" is forbidden: User "system:node:n1" cannot delete resource "secrets" in API group "" in the namespace "default": can only read resources of this type
n1 PATCH /api/v1/namespaces/default/services/web => services "web" is forbidden: User "system:node:n1" cannot patch resource "services" in API group "" in the namespace "default"
n1 POST /api/v1/nodes sent:node-n1 => allowed
n1 POST /api/v1/nodes sent:node-n2 => nodes "n2" is forbidden: node "n1" is not allowed to modify node "n2"
n1 POST /api/v1/nodes sent:node-n1-restricted-labels => nodes "n1" is forbidden: node "n1" is not allowed to set the following labels: foo.kubernetes.io/bar, node-restriction.kubernetes.io/pool
n1 PATCH /api/v1/nodes/n1/status => allowed
n1 PATCH /api/v1/nodes/n1 => allowed
n1 PUT /api/v1/nodes/n1 => allowed
n1 PATCH /api/v1/nodes/n2/status => nodes "n2" is forbidden: node "n1" is not allowed to modify node "n2"
n1 DELETE /api/v1/nodes/n1 => nodes "n1" is forbidden: User "system:node:n1" cannot delete resource "nodes" in API group "" at the cluster scope
n1 GET /api/v1/nodes/n2/proxy/metrics => nodes "n2" is forbidden: User "system:node:n1" cannot get resource "nodes/proxy" in API group "" at the cluster scope
n1 PATCH /apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/n1 => allowed
n1 POST /apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases sent:lease-n1 => allowed
n1 POST /apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases sent:lease-n2 => leases.coordination.k8s.io "n2" is forbidden: can only access node lease with the same name as the requesting node
n1 PATCH /apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/n2 => leases.coordination.k8s.io "n2" is forbidden: User "system:node:n1" cannot patch resource "leases" in API group "coordination.k8s.io" in the namespace "kube-node-lease": can only access node lease with the same name as the requesting node
n1 PATCH /apis/coordination.k8s.io/v1/namespaces/default/leases/n1 => leases.coordination.k8s.io "n1" is forbidden: User "system:node:n1" cannot patch resource "leases" in API group "coordination.k8s.io" in the namespace "default": can only access leases in the "kube-node-lease" system namespace
n1 GET /apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases => leases.coordination.k8s.io is forbidden: User "system:node:n1" cannot list resource "leases" in API group "coordination.k8s.io" in the namespace "kube-node-lease": can only get, create, update, patch, or delete a node lease
n1 PATCH /api/v1/namespaces/default/pods/web-0/status stored:pod-on-n1 => allowed
n1 PATCH /api/v1/namespaces/default/pods/web-0/status stored:pod-on-n2 => pods "web-0" is forbidden: node "n1" can only update pod status for pods with spec.nodeName set to itself
n1 PATCH /api/v1/namespaces/default/pods/web-0/status => pods "web-0" is forbidden: node "n1" can only update pod status for pods with spec.nodeName set to itself
n1 DELETE /api/v1/namespaces/default/pods/web-0 stored:pod-on-n1 => allowed
n1 DELETE /api/v1/namespaces/default/pods/web-0 stored:pod-on-n2 => pods "web-0" is forbidden: node "n1" can only delete pods with spec.nodeName set to itself
n1 POST /api/v1/namespaces/default/pods/web-0/eviction stored:pod-on-n2 => pods "web-0" is forbidden: node n1 can only evict pods with spec.nodeName set to itself
n1 POST /api/v1/namespaces/default/pods sent:pod-on-n1 => pods "web-0" is forbidden: pod does not have "kubernetes.io/config.mirror" annotation, node "n1" can only create mirror pods
n1 POST /api/v1/namespaces/default/pods sent:mirror-pod-on-n2 => pods "web-0" is forbidden: node "n1" can only create pods with spec.nodeName set to itself
n1 POST /api/v1/namespaces/default/pods/web-0/binding => pods "web-0" is forbidden: User "system:node:n1" cannot create resource "pods/binding" in API group "" in the namespace "default"
n1 PATCH /api/v1/namespaces/default/pods/web-0 => pods "web-0" is forbidden: User "system:node:n1" cannot patch resource "pods" in API group "" in the namespace "default"
n1 POST /api/v1/namespaces/shop/events => allowed
n1 PATCH /apis/events.k8s.io/v1/namespaces/shop/events/e1 => allowed
n1 DELETE /api/v1/namespaces/shop/events/e1 => events "e1" is forbidden: User "system:node:n1" cannot delete resource "events" in API group "" in the namespace "shop"
n1 PATCH /api/v1/persistentvolumes/pvc-1 stored:volume-on-n1 => allowed
n1 POST /api/v1/namespaces/default/serviceaccounts/default/token sent:token-for-web-0 pods-here:pod-on-n1 => allowed
n1 POST /api/v1/namespaces/default/serviceaccounts/builder/token sent:token-for-web-0 pods-here:pod-on-n1 => serviceaccounts "builder" is forbidden: User "system:node:n1" cannot create resource "serviceaccounts/token" in API group "" in the namespace "default": no relationship found between node 'n1' and this object
n1 POST /api/v1/namespaces/default/serviceaccounts/default/token sent:token-unbound pods-here:pod-on-n1 => serviceaccounts "default" is forbidden: node requested token not bound to a pod
n1 POST /api/v1/namespaces/default/serviceaccounts/default/token sent:token-without-uid pods-here:pod-on-n1 => serviceaccounts "default" is forbidden: node requested token with a pod binding without a uid
n1 POST /api/v1/namespaces/default/serviceaccounts/default/token sent:token-for-web-1 pods-here:pod-on-n1 => serviceaccounts "default" is forbidden: node requested token bound to a pod scheduled on a different node
n1 POST /api/v1/namespaces/default/serviceaccounts/default/token sent:token-for-old-web-0 pods-here:pod-on-n1 => serviceaccounts "default" is forbidden: the UID in the bound object reference (old-uid) does not match the UID in record. The object might have been deleted and then recreated
n1 GET /api/v1/namespaces/default/serviceaccounts/default pods-here:pod-on-n1 => serviceaccounts "default" is forbidden: User "system:node:n1" cannot get resource "serviceaccounts" in API group "" in the namespace "default": can only create tokens for individual service accounts
n1 GET /api/v1/namespaces/default/configmaps/kube-root-ca.crt pods-here:pod-with-token-volume => allowed
n1 GET /api/v1/namespaces/default/configmaps/kube-root-ca.crt pods-here:pod-on-n1 => configmaps "kube-root-ca.crt" is forbidden: User "system:node:n1" cannot get resource "configmaps" in API group "" in the namespace "default": no relationship found between node 'n1' and this object
n1 PATCH /api/v1/persistentvolumes/pvc-1 stored:volume-on-n2 => persistentvolumes "pvc-1" is forbidden: User "system:node:n1" cannot patch resource "persistentvolumes" in API group "" at the cluster scope: no relationship found between node 'n1' and this object
n1 DELETE /api/v1/persistentvolumes/pvc-1 => persistentvolumes "pvc-1" is forbidden: User "system:node:n1" cannot delete resource "persistentvolumes" in API group "" at the cluster scope
"#;

    fn user(key: &str) -> UserInfo {
        match key {
            "admin" => UserInfo::new("kubernetes-admin", &[MASTERS_GROUP, AUTHENTICATED_GROUP]),
            "jane" => UserInfo::new("jane", &["developers", AUTHENTICATED_GROUP]),
            "unnamed" => UserInfo::new("system:node:", &[NODES_GROUP, AUTHENTICATED_GROUP]),
            node => UserInfo::new(
                &format!("system:node:{node}"),
                &[NODES_GROUP, AUTHENTICATED_GROUP],
            ),
        }
    }

    fn token_request(bound: Value) -> Value {
        json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
            "spec": {"audiences": [], "expirationSeconds": 3607, "boundObjectRef": bound}})
    }
    fn fixture(key: &str) -> Value {
        let hostname = |node: &str| json!({"matchExpressions": [{"key": "kubernetes.io/hostname", "operator": "In", "values": [node]}]});
        let labels = json!({"node-restriction.kubernetes.io/pool": "a", "foo.kubernetes.io/bar": "b",
            "node.kubernetes.io/instance-type": "c", "kubernetes.io/hostname": "n1"});
        match key {
            "node-n1" => {
                json!({"metadata": {"name": "n1", "labels": {"node.petset.dev/simulated": "true"}}})
            }
            "node-n2" => json!({"metadata": {"name": "n2"}}),
            "node-n1-restricted-labels" => json!({"metadata": {"name": "n1", "labels": labels}}),
            "lease-n1" => json!({"metadata": {"name": "n1"}}),
            "lease-n2" => json!({"metadata": {"name": "n2"}}),
            "pod-with-token" => json!({"metadata": {"name": "web-0"}, "spec": {"nodeName": "n1",
                "volumes": [{"name": "t", "secret": {"secretName": "token"}}, {"name": "s", "configMap": {"name": "settings"}}]}}),
            "pod-on-n1" => json!({"metadata": {"name": "web-0", "uid": "web-0-uid"},
                "spec": {"nodeName": "n1", "serviceAccountName": "default"}}),
            "pod-with-token-volume" => {
                json!({"metadata": {"name": "web-0"}, "spec": {"nodeName": "n1",
                "volumes": [{"name": "kube-api-access-x2b4z", "projected": {"sources": [
                    {"serviceAccountToken": {"path": "token"}},
                    {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}}]}}]}})
            }
            "token-for-web-0" => token_request(
                json!({"kind": "Pod", "apiVersion": "v1", "name": "web-0", "uid": "web-0-uid"}),
            ),
            "token-for-old-web-0" => token_request(
                json!({"kind": "Pod", "apiVersion": "v1", "name": "web-0", "uid": "old-uid"}),
            ),
            "token-for-web-1" => token_request(
                json!({"kind": "Pod", "apiVersion": "v1", "name": "web-1", "uid": "web-1-uid"}),
            ),
            "token-without-uid" => {
                token_request(json!({"kind": "Pod", "apiVersion": "v1", "name": "web-0"}))
            }
            "token-unbound" => {
                json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": {}})
            }
            "pod-on-n2" => json!({"metadata": {"name": "web-0"}, "spec": {"nodeName": "n2"}}),
            "mirror-pod-on-n2" => json!({"metadata": {"name": "web-0",
                "annotations": {"kubernetes.io/config.mirror": "x"}}, "spec": {"nodeName": "n2"}}),
            "volume-on-n1" => {
                json!({"spec": {"nodeAffinity": {"required": {"nodeSelectorTerms": [hostname("n1")]}}}})
            }
            "volume-on-n2" => {
                json!({"spec": {"nodeAffinity": {"required": {"nodeSelectorTerms": [hostname("n2")]}}}})
            }
            other => panic!("no fixture {other}"),
        }
    }

    fn request(method: &str, uri: &str) -> RequestInfo {
        let method = Method::from_bytes(method.as_bytes()).expect("a method");
        let (path, query) = match uri.split_once('?') {
            Some((path, query)) => (path, Some(query)),
            None => (uri, None),
        };
        RequestInfo::parse(&method, path, query)
    }

    #[test]
    fn the_decision_table() {
        let policy = crate::auth::bootstrap_policy::default_index();
        for line in TABLE.lines().filter(|line| !line.trim().is_empty()) {
            let (request_text, expected) = line.split_once(" => ").expect("a decision");
            let mut words = request_text.split_whitespace();
            let (Some(user_key), Some(method), Some(uri)) =
                (words.next(), words.next(), words.next())
            else {
                panic!("{line}: user, method and URI");
            };
            let mut facts = Facts::default();
            for word in words {
                match word.split_once(':') {
                    Some(("sent", key)) => facts.sent = Some(fixture(key)),
                    Some(("stored", key)) => facts.stored = Some(fixture(key)),
                    Some(("pods-here", key)) => facts.pods_here.push(fixture(key)),
                    _ => panic!("{line}: {word}?"),
                }
            }
            let decision = authorize(&policy, &user(user_key), &request(method, uri), &facts);
            match decision {
                Ok(()) => assert_eq!(expected, "allowed", "{line}"),
                Err(refusal) => {
                    assert_eq!(refusal.message, expected, "{line}");
                    assert_eq!((refusal.code, refusal.reason), (403, "Forbidden"));
                }
            }
        }
    }

    #[test]
    fn only_what_a_node_decision_reads_is_read() {
        let n1 = user("n1");
        let needs_of = |method: &str, uri: &str| needs(&n1, &request(method, uri));
        let sent = Needs {
            sent: true,
            ..Needs::default()
        };
        let stored = Needs {
            stored: true,
            ..Needs::default()
        };
        let pods_here = Needs {
            pods_here: true,
            ..Needs::default()
        };
        assert_eq!(needs_of("POST", "/api/v1/nodes"), sent);
        assert_eq!(
            needs_of("PATCH", "/api/v1/namespaces/default/pods/web-0/status"),
            stored
        );
        assert_eq!(
            needs_of("GET", "/api/v1/namespaces/default/secrets/db"),
            pods_here
        );
        assert_eq!(
            needs_of("GET", "/api/v1/namespaces/default/secrets"),
            Needs::default()
        );
        assert_eq!(needs_of("GET", "/api/v1/pods"), Needs::default());
        assert_eq!(
            needs(&user("admin"), &request("POST", "/api/v1/nodes")),
            Needs::default()
        );
    }

    #[test]
    fn a_refusal_names_the_resource_its_group_and_the_object() {
        let info = request(
            "PATCH",
            "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/n2",
        );
        let policy = crate::auth::bootstrap_policy::default_index();
        let refusal =
            authorize(&policy, &user("n1"), &info, &Facts::default()).expect_err("refused");
        let status = refusal.to_status();
        assert_eq!(
            status["details"],
            json!({"name": "n2", "group": "coordination.k8s.io", "kind": "leases"})
        );
        assert_eq!(status["code"], 403);
    }
}
