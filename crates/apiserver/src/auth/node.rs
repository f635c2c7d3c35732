//! What a node's identity (`system:node:<name>` in `system:nodes`) may do: upstream's Node
//! authorizer and NodeRestriction admission, cut to what petset's agent does (the texts are
//! upstream's).
//!
//! - reads: nodes, pods, services, endpoints, endpointslices, namespaces, persistentvolumes,
//!   persistentvolumeclaims, storageclasses; secrets and configmaps one by name, and only those
//!   a pod bound to the node uses (`kube-root-ca.crt` through a pod's projected token volume);
//! - tokens: `create serviceaccounts/token` for an account a pod bound to the node runs as
//!   (the graph's `serviceaccount -> pod -> node`), bound to such a pod by name and uid;
//! - for its ingress proxy: reads of ingresses and ingressclasses, and writes of ingress status
//!   (beyond upstream, whose ingress controllers are not the kubelet);
//! - writes: its own Node (and status), its own Lease in `kube-node-lease`, the status and the
//!   deletion of pods bound to it (by the stored pod), events, and persistent volumes pinned to
//!   it (`kubernetes.io/hostname In [<name>]`: the node's local-path cleanup);
//! - nothing else: no binding, no pod creation (petset runs no static pods), no other node's
//!   objects.
//!
//! Where upstream differs on purpose: it reads PVCs and PVs only along the pods bound to the
//! node (its graph) and, since `AuthorizeNodeWithSelectors`, lists pods only
//! by `spec.nodeName` and gets only its own Node; petset's agent watches every pod (DNS), every
//! node (routes) and every volume (local-path), so those stay readable, and a node may write the
//! volumes pinned to it.

use serde_json::Value;

use super::authz::{Facts, Needs};
use super::references::{Referenced, pod_references};
use super::{RequestInfo, UserInfo};

pub const NODES_GROUP: &str = "system:nodes";
const NODE_USER_PREFIX: &str = "system:node:";
const NODE_LEASE_NAMESPACE: &str = "kube-node-lease";
const MIRROR_POD_ANNOTATION: &str = "kubernetes.io/config.mirror";
const HOSTNAME_LABEL: &str = "kubernetes.io/hostname";

/// What the node rules say about one request.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    Allow,
    /// The authorizer has no rule for it; with upstream's reason when it gives one.
    Deny(Option<String>),
    /// The authorizer lets it through and NodeRestriction refuses it, about object `name`.
    Refuse {
        name: String,
        message: String,
    },
}

fn deny(reason: impl Into<String>) -> Outcome {
    Outcome::Deny(Some(reason.into()))
}

/// The node a user is, as upstream's node identifier: a user named `system:node:<name>` in
/// group `system:nodes` (the name may be empty: a node the rules cannot tell).
pub fn identity(user: &UserInfo) -> Option<&str> {
    let name = user.name.strip_prefix(NODE_USER_PREFIX)?;
    user.in_group(NODES_GROUP).then_some(name)
}

/// Which facts [`decide`] reads for this request.
pub fn needs(info: &RequestInfo) -> Needs {
    let target = (info.api_group.as_str(), info.resource.as_str());
    let verb = info.verb.as_str();
    let sent = verb == "create"
        && ((info.subresource.is_empty()
            && matches!(
                target,
                ("", "nodes") | ("", "pods") | ("coordination.k8s.io", "leases")
            ))
            || is_token_request(info));
    let stored = matches!(
        (target, info.subresource.as_str(), verb),
        (("", "pods"), "", "delete")
            | (("", "pods"), "eviction", "create")
            | (("", "pods"), "status", "update" | "patch")
            | (("", "persistentvolumes"), "", "update" | "patch")
    );
    let pods_here = (matches!(target, ("", "secrets" | "configmaps"))
        && read_by_name(info) == Outcome::Allow)
        || is_token_request(info);
    Needs {
        sent,
        stored,
        pods_here,
    }
}

pub fn decide(user: &UserInfo, node: &str, info: &RequestInfo, facts: &Facts) -> Outcome {
    if node.is_empty() {
        return deny(format!("unknown node for user {:?}", user.name));
    }
    if !info.is_resource_request {
        return Outcome::Deny(None);
    }
    match (info.api_group.as_str(), info.resource.as_str()) {
        ("", "secrets") => used_by_pods_here(node, info, facts, Referenced::Secret),
        ("", "configmaps") => used_by_pods_here(node, info, facts, Referenced::ConfigMap),
        ("", "serviceaccounts") => service_account_token(node, info, facts),
        ("", "nodes") => node_object(node, info, facts),
        ("", "pods") => pod(node, info, facts),
        ("", "persistentvolumes") => persistent_volume(node, info, facts),
        ("coordination.k8s.io", "leases") => lease(node, info, facts),
        ("" | "events.k8s.io", "events") => {
            let writes = matches!(info.verb.as_str(), "create" | "update" | "patch");
            allow_if(writes && info.subresource.is_empty())
        }
        // The node runs the ingress proxy (`petset_agent::ingress`), which reports its address.
        ("networking.k8s.io", "ingresses") => allow_if(
            is_read(info)
                || (info.subresource == "status"
                    && matches!(info.verb.as_str(), "update" | "patch")),
        ),
        ("networking.k8s.io", "ingressclasses") => allow_if(is_read(info)),
        ("", "services" | "endpoints" | "namespaces" | "persistentvolumeclaims")
        | ("discovery.k8s.io", "endpointslices")
        | ("storage.k8s.io", "storageclasses") => allow_if(is_read(info)),
        _ => Outcome::Deny(None),
    }
}

fn allow_if(allowed: bool) -> Outcome {
    if allowed {
        Outcome::Allow
    } else {
        Outcome::Deny(None)
    }
}

fn is_read(info: &RequestInfo) -> bool {
    info.subresource.is_empty() && matches!(info.verb.as_str(), "get" | "list" | "watch")
}

/// Secrets and configmaps: one named object at a time, used by a pod bound to this node
/// (upstream's `authorizeReadNamespacedObject` along its graph).
fn used_by_pods_here(node: &str, info: &RequestInfo, facts: &Facts, kind: Referenced) -> Outcome {
    let outcome = read_by_name(info);
    if outcome != Outcome::Allow {
        return outcome;
    }
    let used = facts
        .pods_here
        .iter()
        .any(|pod| pod_references(pod, kind, &info.name));
    if used {
        Outcome::Allow
    } else {
        no_relationship(node)
    }
}

fn no_relationship(node: &str) -> Outcome {
    deny(format!(
        "no relationship found between node '{node}' and this object"
    ))
}

/// The shape of a read upstream allows for secrets and configmaps: one named object.
fn read_by_name(info: &RequestInfo) -> Outcome {
    if !matches!(info.verb.as_str(), "get" | "list" | "watch") {
        deny("can only read resources of this type")
    } else if !info.subresource.is_empty() {
        deny("cannot read subresource")
    } else if info.namespace.is_empty() {
        deny("can only read namespaced object of this type")
    } else if info.name.is_empty() {
        deny("No Object name found")
    } else {
        Outcome::Allow
    }
}

/// `create serviceaccounts/NAME/token` in a namespace: the shape the token rules judge.
fn is_token_request(info: &RequestInfo) -> bool {
    info.api_group.is_empty()
        && info.resource == "serviceaccounts"
        && info.subresource == "token"
        && info.verb == "create"
        && !info.name.is_empty()
        && !info.namespace.is_empty()
}

/// The account a pod runs as (`default` when it names none).
fn service_account_of(pod: &Value) -> &str {
    pod.pointer("/spec/serviceAccountName")
        .and_then(Value::as_str)
        .filter(|name| !name.is_empty())
        .unwrap_or("default")
}

/// Service accounts: only a token, for an account a pod bound here runs as (upstream's
/// `authorizeCreateToken`), bound to a pod bound here by name and uid (NodeRestriction's
/// `admitServiceAccount`).
fn service_account_token(node: &str, info: &RequestInfo, facts: &Facts) -> Outcome {
    if info.verb != "create" || info.name.is_empty() {
        return deny("can only create tokens for individual service accounts");
    }
    if info.subresource != "token" {
        return deny("can only create token subresource of serviceaccount");
    }
    let used = facts
        .pods_here
        .iter()
        .any(|pod| service_account_of(pod) == info.name);
    if !used {
        return no_relationship(node);
    }
    let refuse = |message: String| Outcome::Refuse {
        name: info.name.clone(),
        message,
    };
    let Some(sent) = facts.sent.as_ref().filter(|sent| sent.is_object()) else {
        return unexpected_object();
    };
    let reference = sent.pointer("/spec/boundObjectRef");
    let field = |name: &str| {
        reference
            .and_then(|r| r.get(name))
            .and_then(Value::as_str)
            .unwrap_or_default()
    };
    if field("apiVersion") != "v1" || field("kind") != "Pod" || field("name").is_empty() {
        return refuse("node requested token not bound to a pod".into());
    }
    let uid = field("uid");
    if uid.is_empty() {
        return refuse("node requested token with a pod binding without a uid".into());
    }
    let bound = facts
        .pods_here
        .iter()
        .find(|pod| object_name(pod) == field("name"));
    let Some(pod) = bound else {
        return refuse("node requested token bound to a pod scheduled on a different node".into());
    };
    if pod.pointer("/metadata/uid").and_then(Value::as_str) != Some(uid) {
        return refuse(format!(
            "the UID in the bound object reference ({uid}) does not match the UID in record. The object might have been deleted and then recreated"
        ));
    }
    Outcome::Allow
}

/// Its own Node: register, update, patch (and status); read any.
fn node_object(node: &str, info: &RequestInfo, facts: &Facts) -> Outcome {
    let verb = info.verb.as_str();
    match (info.subresource.as_str(), verb) {
        ("", "get" | "list" | "watch") => Outcome::Allow,
        ("", "create") => {
            let Some(sent) = &facts.sent else {
                return unexpected_object();
            };
            let name = object_name(sent);
            if name != node {
                return modify_other_node(node, name);
            }
            let forbidden = forbidden_labels(sent);
            if forbidden.is_empty() {
                Outcome::Allow
            } else {
                Outcome::Refuse {
                    name: name.to_string(),
                    message: format!(
                        "node {node:?} is not allowed to set the following labels: {}",
                        forbidden.join(", ")
                    ),
                }
            }
        }
        ("" | "status", "update" | "patch") if info.name == node => Outcome::Allow,
        ("" | "status", "update" | "patch") => modify_other_node(node, &info.name),
        _ => Outcome::Deny(None),
    }
}

fn modify_other_node(node: &str, other: &str) -> Outcome {
    Outcome::Refuse {
        name: other.to_string(),
        message: format!("node {node:?} is not allowed to modify node {other:?}"),
    }
}

fn unexpected_object() -> Outcome {
    Outcome::Refuse {
        name: String::new(),
        message: "unexpected type: the request body is not a JSON object".to_string(),
    }
}

fn object_name(object: &Value) -> &str {
    object
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default()
}

/// The labels a node may not give itself (NodeRestriction): `node-restriction.kubernetes.io`
/// ones, and `kubernetes.io` / `k8s.io` ones the kubelet does not set itself; sorted.
fn forbidden_labels(node: &Value) -> Vec<String> {
    let Some(labels) = node.pointer("/metadata/labels").and_then(Value::as_object) else {
        return Vec::new();
    };
    let mut forbidden: Vec<String> = labels
        .keys()
        .filter(|key| {
            let namespace = key.split_once('/').map(|(prefix, _)| prefix).unwrap_or("");
            within(namespace, "node-restriction.kubernetes.io")
                || (is_kubernetes_namespace(namespace) && !is_kubelet_label(key, namespace))
        })
        .cloned()
        .collect();
    forbidden.sort();
    forbidden
}

/// `namespace` is `domain` or one of its subdomains.
fn within(namespace: &str, domain: &str) -> bool {
    namespace == domain
        || namespace
            .strip_suffix(domain)
            .is_some_and(|rest| rest.ends_with('.'))
}

fn is_kubernetes_namespace(namespace: &str) -> bool {
    within(namespace, "kubernetes.io") || within(namespace, "k8s.io")
}

/// The labels a kubelet sets on its own Node (upstream's `IsKubeletLabel`).
fn is_kubelet_label(key: &str, namespace: &str) -> bool {
    const KUBELET_LABELS: &[&str] = &[
        HOSTNAME_LABEL,
        "topology.kubernetes.io/zone",
        "topology.kubernetes.io/region",
        "failure-domain.beta.kubernetes.io/zone",
        "failure-domain.beta.kubernetes.io/region",
        "beta.kubernetes.io/instance-type",
        "node.kubernetes.io/instance-type",
        "kubernetes.io/os",
        "kubernetes.io/arch",
        "beta.kubernetes.io/os",
        "beta.kubernetes.io/arch",
    ];
    KUBELET_LABELS.contains(&key)
        || within(namespace, "kubelet.kubernetes.io")
        || within(namespace, "node.kubernetes.io")
}

/// Pods: read any; the status and the deletion of those bound to it; no creation.
fn pod(node: &str, info: &RequestInfo, facts: &Facts) -> Outcome {
    let bound_here = || {
        facts
            .stored
            .as_ref()
            .and_then(|pod| pod.pointer("/spec/nodeName"))
            .and_then(Value::as_str)
            == Some(node)
    };
    let name = || info.name.clone();
    match (info.subresource.as_str(), info.verb.as_str()) {
        ("", "get" | "list" | "watch") => Outcome::Allow,
        ("", "create") => create_pod(node, facts.sent.as_ref()),
        // A pod that is not there is the handler's 404, as upstream's admission answers.
        ("", "delete") if facts.stored.is_none() || bound_here() => Outcome::Allow,
        ("", "delete") => Outcome::Refuse {
            name: name(),
            message: format!("node {node:?} can only delete pods with spec.nodeName set to itself"),
        },
        ("status", "update" | "patch") if bound_here() => Outcome::Allow,
        ("status", "update" | "patch") => Outcome::Refuse {
            name: name(),
            message: format!(
                "node {node:?} can only update pod status for pods with spec.nodeName set to itself"
            ),
        },
        ("eviction", "create") if facts.stored.is_none() || bound_here() => Outcome::Allow,
        ("eviction", "create") => Outcome::Refuse {
            name: name(),
            message: format!("node {node} can only evict pods with spec.nodeName set to itself"),
        },
        _ => Outcome::Deny(None),
    }
}

/// Upstream lets a node create only mirror pods of its static pods; petset has none, so a
/// pod that passes upstream's first checks is still not the node's to create.
fn create_pod(node: &str, sent: Option<&Value>) -> Outcome {
    let Some(pod) = sent else {
        return unexpected_object();
    };
    let name = object_name(pod).to_string();
    let mirror = pod
        .pointer("/metadata/annotations")
        .and_then(Value::as_object)
        .is_some_and(|annotations| annotations.contains_key(MIRROR_POD_ANNOTATION));
    if !mirror {
        return Outcome::Refuse {
            name,
            message: format!(
                "pod does not have {MIRROR_POD_ANNOTATION:?} annotation, node {node:?} can only create mirror pods"
            ),
        };
    }
    if pod.pointer("/spec/nodeName").and_then(Value::as_str) != Some(node) {
        return Outcome::Refuse {
            name,
            message: format!("node {node:?} can only create pods with spec.nodeName set to itself"),
        };
    }
    Outcome::Deny(None)
}

/// Its own Lease in `kube-node-lease` (upstream's `authorizeLease`, then `admitLease`).
fn lease(node: &str, info: &RequestInfo, facts: &Facts) -> Outcome {
    const SAME_NAME: &str = "can only access node lease with the same name as the requesting node";
    let verb = info.verb.as_str();
    if !matches!(verb, "get" | "create" | "update" | "patch" | "delete") {
        return deny("can only get, create, update, patch, or delete a node lease");
    }
    if info.namespace != NODE_LEASE_NAMESPACE {
        return deny(format!(
            "can only access leases in the {NODE_LEASE_NAMESPACE:?} system namespace"
        ));
    }
    if verb != "create" {
        return if info.name == node {
            Outcome::Allow
        } else {
            deny(SAME_NAME)
        };
    }
    let Some(sent) = &facts.sent else {
        return unexpected_object();
    };
    let name = object_name(sent);
    if name == node {
        Outcome::Allow
    } else {
        Outcome::Refuse {
            name: name.to_string(),
            message: SAME_NAME.to_string(),
        }
    }
}

/// Persistent volumes: read any; update or patch those pinned to this node (the node's
/// local-path cleanup removes its finalizer), judged by the stored volume.
fn persistent_volume(node: &str, info: &RequestInfo, facts: &Facts) -> Outcome {
    if is_read(info) {
        return Outcome::Allow;
    }
    let writes = info.subresource.is_empty() && matches!(info.verb.as_str(), "update" | "patch");
    if !writes {
        return Outcome::Deny(None);
    }
    if facts.stored.as_ref().is_some_and(|pv| pinned_to(pv, node)) {
        Outcome::Allow
    } else {
        no_relationship(node)
    }
}

/// Whether every term of a volume's required node affinity names only `node` by hostname, so
/// the volume can live nowhere else.
fn pinned_to(volume: &Value, node: &str) -> bool {
    let terms = volume
        .pointer("/spec/nodeAffinity/required/nodeSelectorTerms")
        .and_then(Value::as_array);
    let Some(terms) = terms.filter(|terms| !terms.is_empty()) else {
        return false;
    };
    terms.iter().all(|term| {
        let expressions = term.get("matchExpressions").and_then(Value::as_array);
        expressions.into_iter().flatten().any(|expression| {
            expression.get("key").and_then(Value::as_str) == Some(HOSTNAME_LABEL)
                && expression.get("operator").and_then(Value::as_str) == Some("In")
                && expression.get("values").and_then(Value::as_array)
                    == Some(&vec![Value::from(node)])
        })
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn only_a_system_nodes_member_named_system_node_is_a_node() {
        let user = |name: &str, group: &str| UserInfo::new(name, &[group]);
        assert_eq!(identity(&user("system:node:n1", NODES_GROUP)), Some("n1"));
        assert_eq!(identity(&user("system:node:n1", "developers")), None);
        assert_eq!(identity(&user("n1", NODES_GROUP)), None);
        assert_eq!(identity(&user("system:node:", NODES_GROUP)), Some(""));
    }

    #[test]
    fn a_token_request_reads_its_body_and_the_pods_bound_here() {
        let info = |method: &str, path: &str| {
            let method = axum::http::Method::from_bytes(method.as_bytes()).expect("a method");
            RequestInfo::parse(&method, path, None)
        };
        let token = needs(&info(
            "POST",
            "/api/v1/namespaces/default/serviceaccounts/default/token",
        ));
        assert_eq!(
            token,
            Needs {
                sent: true,
                stored: false,
                pods_here: true
            }
        );
        let read = needs(&info(
            "GET",
            "/api/v1/namespaces/default/serviceaccounts/default",
        ));
        assert_eq!(read, Needs::default());
    }

    #[test]
    fn a_volume_is_pinned_only_when_every_term_names_the_node_alone() {
        let term = |values: Value| json!({"matchExpressions": [{"key": HOSTNAME_LABEL, "operator": "In", "values": values}]});
        let volume = |terms: Vec<Value>| json!({"spec": {"nodeAffinity": {"required": {"nodeSelectorTerms": terms}}}});
        assert!(pinned_to(&volume(vec![term(json!(["n1"]))]), "n1"));
        assert!(!pinned_to(&volume(vec![term(json!(["n1", "n2"]))]), "n1"));
        assert!(!pinned_to(
            &volume(vec![term(json!(["n1"])), term(json!(["n2"]))]),
            "n1"
        ));
        assert!(!pinned_to(&volume(vec![]), "n1"));
        assert!(!pinned_to(&json!({"spec": {}}), "n1"));
    }

    #[test]
    fn label_namespaces_match_whole_domains() {
        assert!(within(
            "node-restriction.kubernetes.io",
            "node-restriction.kubernetes.io"
        ));
        assert!(within(
            "a.node-restriction.kubernetes.io",
            "node-restriction.kubernetes.io"
        ));
        assert!(!within("evilkubernetes.io", "kubernetes.io"));
        assert!(is_kubelet_label("kubernetes.io/hostname", "kubernetes.io"));
        assert!(is_kubelet_label(
            "x.node.kubernetes.io/y",
            "x.node.kubernetes.io"
        ));
        assert!(!is_kubelet_label("kubernetes.io/role", "kubernetes.io"));
    }
}
