//! The default ClusterRoles and ClusterRoleBindings (upstream's `bootstrappolicy`, cut to the
//! kinds petset serves and the identities it has), and their reconciliation at every start as
//! upstream's `ensureRBACPolicy` does it: a missing object is created; an existing one with
//! `rbac.authorization.kubernetes.io/autoupdate: "true"`-or-unset gets the labels,
//! annotations, rules, aggregation selectors and subjects it lacks (additive: what an
//! administrator added stays), a binding whose roleRef changed is re-created; one annotated
//! `"false"` is left as it is.
//!
//! petset's controllers and scheduler run in process as the loopback user (`system:masters`);
//! the `system:kube-controller-manager` and `system:kube-scheduler` roles and bindings are
//! there for clients that look for them, and `system:node` (bound to no one) because the Node
//! authorizer decides for nodes.

use petset_api::ApiError;
use petset_api::resources::{self, ResourceType};
use serde_json::{Map, Value, json};

use super::escalation::uncovered;
use super::rbac::{GROUP, Rule};
use crate::registry::{Registry, Scope};

const BOOTSTRAP_LABEL: (&str, &str) = ("kubernetes.io/bootstrapping", "rbac-defaults");
pub const AUTOUPDATE_ANNOTATION: &str = "rbac.authorization.kubernetes.io/autoupdate";
const TO_ADMIN: &str = "rbac.authorization.k8s.io/aggregate-to-admin";
const TO_EDIT: &str = "rbac.authorization.k8s.io/aggregate-to-edit";
const TO_VIEW: &str = "rbac.authorization.k8s.io/aggregate-to-view";

const READ: &[&str] = &["get", "list", "watch"];
const WRITE: &[&str] = &["create", "update", "patch", "delete", "deletecollection"];
const READ_WRITE: &[&str] = &[
    "get",
    "list",
    "watch",
    "create",
    "update",
    "patch",
    "delete",
    "deletecollection",
];
const CORE: &[&str] = &[""];

/// One rule of the table: verbs, groups, resources, resource names, non-resource URLs.
struct RuleRow(
    &'static [&'static str],
    &'static [&'static str],
    &'static [&'static str],
    &'static [&'static str],
    &'static [&'static str],
);

const fn on(
    verbs: &'static [&'static str],
    groups: &'static [&'static str],
    resources: &'static [&'static str],
) -> RuleRow {
    RuleRow(verbs, groups, resources, &[], &[])
}

const fn named(
    verbs: &'static [&'static str],
    groups: &'static [&'static str],
    resources: &'static [&'static str],
    names: &'static [&'static str],
) -> RuleRow {
    RuleRow(verbs, groups, resources, names, &[])
}

const fn urls(verbs: &'static [&'static str], urls: &'static [&'static str]) -> RuleRow {
    RuleRow(verbs, &[], &[], &[], urls)
}

/// One ClusterRole: name, the aggregation label it carries, the label it aggregates, rules.
struct RoleRow {
    name: &'static str,
    label: Option<&'static str>,
    aggregates: Option<&'static str>,
    rules: &'static [RuleRow],
}

const fn role(name: &'static str, rules: &'static [RuleRow]) -> RoleRow {
    RoleRow {
        name,
        label: None,
        aggregates: None,
        rules,
    }
}

const EVENTS: RuleRow = on(
    &["create", "update", "patch"],
    &["", "events.k8s.io"],
    &["events"],
);

const CLUSTER_ROLES: &[RoleRow] = &[
    role(
        "cluster-admin",
        &[on(&["*"], &["*"], &["*"]), urls(&["*"], &["*"])],
    ),
    role(
        "system:discovery",
        &[urls(
            &["get"],
            &[
                "/livez",
                "/readyz",
                "/healthz",
                "/version",
                "/version/",
                "/openapi",
                "/openapi/*",
                "/api",
                "/api/*",
                "/apis",
                "/apis/*",
            ],
        )],
    ),
    role(
        "system:monitoring",
        &[urls(
            &["get"],
            &[
                "/metrics",
                "/metrics/slis",
                "/livez",
                "/readyz",
                "/healthz",
                "/livez/*",
                "/readyz/*",
                "/healthz/*",
            ],
        )],
    ),
    role(
        "system:basic-user",
        &[
            on(
                &["create"],
                &["authorization.k8s.io"],
                &["selfsubjectaccessreviews", "selfsubjectrulesreviews"],
            ),
            on(
                &["create"],
                &["authentication.k8s.io"],
                &["selfsubjectreviews"],
            ),
        ],
    ),
    role(
        "system:public-info-viewer",
        &[urls(
            &["get"],
            &["/livez", "/readyz", "/healthz", "/version", "/version/"],
        )],
    ),
    RoleRow {
        name: "admin",
        label: None,
        aggregates: Some(TO_ADMIN),
        rules: &[],
    },
    RoleRow {
        name: "edit",
        label: Some(TO_ADMIN),
        aggregates: Some(TO_EDIT),
        rules: &[],
    },
    RoleRow {
        name: "view",
        label: Some(TO_EDIT),
        aggregates: Some(TO_VIEW),
        rules: &[],
    },
    RoleRow {
        name: "system:aggregate-to-admin",
        label: Some(TO_ADMIN),
        aggregates: None,
        rules: &[
            on(
                &["create"],
                &["authorization.k8s.io"],
                &["localsubjectaccessreviews"],
            ),
            on(READ_WRITE, &[GROUP], &["roles", "rolebindings"]),
        ],
    },
    RoleRow {
        name: "system:aggregate-to-edit",
        label: Some(TO_EDIT),
        aggregates: None,
        rules: &[
            on(
                READ,
                CORE,
                &[
                    "pods/attach",
                    "pods/proxy",
                    "pods/exec",
                    "pods/portforward",
                    "secrets",
                    "services/proxy",
                ],
            ),
            on(&["impersonate"], CORE, &["serviceaccounts"]),
            on(
                WRITE,
                CORE,
                &[
                    "pods",
                    "pods/attach",
                    "pods/proxy",
                    "pods/exec",
                    "pods/portforward",
                ],
            ),
            on(&["create"], CORE, &["pods/eviction"]),
            on(
                WRITE,
                CORE,
                &[
                    "replicationcontrollers",
                    "replicationcontrollers/scale",
                    "serviceaccounts",
                    "services",
                    "services/proxy",
                    "persistentvolumeclaims",
                    "configmaps",
                    "secrets",
                ],
            ),
            on(&["create"], CORE, &["serviceaccounts/token"]),
            on(
                WRITE,
                &["apps"],
                &[
                    "statefulsets",
                    "statefulsets/scale",
                    "daemonsets",
                    "deployments",
                    "deployments/scale",
                    "deployments/rollback",
                    "replicasets",
                    "replicasets/scale",
                ],
            ),
            on(WRITE, &["autoscaling"], &["horizontalpodautoscalers"]),
            on(WRITE, &["batch"], &["jobs", "cronjobs"]),
            on(
                WRITE,
                &["extensions"],
                &[
                    "daemonsets",
                    "deployments",
                    "deployments/scale",
                    "deployments/rollback",
                    "ingresses",
                    "replicasets",
                    "replicasets/scale",
                    "replicationcontrollers/scale",
                    "networkpolicies",
                ],
            ),
            on(WRITE, &["policy"], &["poddisruptionbudgets"]),
            on(
                WRITE,
                &["networking.k8s.io"],
                &["networkpolicies", "ingresses"],
            ),
        ],
    },
    RoleRow {
        name: "system:aggregate-to-view",
        label: Some(TO_VIEW),
        aggregates: None,
        rules: &[
            on(
                READ,
                CORE,
                &[
                    "pods",
                    "replicationcontrollers",
                    "replicationcontrollers/scale",
                    "serviceaccounts",
                    "services",
                    "services/status",
                    "endpoints",
                    "persistentvolumeclaims",
                    "persistentvolumeclaims/status",
                    "configmaps",
                ],
            ),
            on(
                READ,
                CORE,
                &[
                    "limitranges",
                    "resourcequotas",
                    "bindings",
                    "events",
                    "pods/status",
                    "resourcequotas/status",
                    "namespaces/status",
                    "replicationcontrollers/status",
                    "pods/log",
                ],
            ),
            // Reading namespaces in a namespace reads that one: which namespaces one may use.
            on(READ, CORE, &["namespaces"]),
            on(READ, &["discovery.k8s.io"], &["endpointslices"]),
            on(
                READ,
                &["apps"],
                &[
                    "controllerrevisions",
                    "statefulsets",
                    "statefulsets/status",
                    "statefulsets/scale",
                    "daemonsets",
                    "daemonsets/status",
                    "deployments",
                    "deployments/status",
                    "deployments/scale",
                    "replicasets",
                    "replicasets/status",
                    "replicasets/scale",
                ],
            ),
            on(
                READ,
                &["autoscaling"],
                &[
                    "horizontalpodautoscalers",
                    "horizontalpodautoscalers/status",
                ],
            ),
            on(
                READ,
                &["batch"],
                &["jobs", "cronjobs", "cronjobs/status", "jobs/status"],
            ),
            on(
                READ,
                &["extensions"],
                &[
                    "daemonsets",
                    "daemonsets/status",
                    "deployments",
                    "deployments/scale",
                    "deployments/status",
                    "ingresses",
                    "ingresses/status",
                    "replicasets",
                    "replicasets/scale",
                    "replicasets/status",
                    "replicationcontrollers/scale",
                    "networkpolicies",
                ],
            ),
            on(
                READ,
                &["policy"],
                &["poddisruptionbudgets", "poddisruptionbudgets/status"],
            ),
            on(
                READ,
                &["networking.k8s.io"],
                &["networkpolicies", "ingresses", "ingresses/status"],
            ),
        ],
    },
    role(
        "system:node",
        &[
            on(&["create"], &["authentication.k8s.io"], &["tokenreviews"]),
            on(
                &["create"],
                &["authorization.k8s.io"],
                &["subjectaccessreviews", "localsubjectaccessreviews"],
            ),
            on(READ, CORE, &["services"]),
            on(&["create", "get", "list", "watch"], CORE, &["nodes"]),
            on(&["update", "patch"], CORE, &["nodes/status"]),
            on(&["update", "patch"], CORE, &["nodes"]),
            on(&["create", "update", "patch"], CORE, &["events"]),
            on(READ, CORE, &["pods"]),
            on(&["create", "delete"], CORE, &["pods"]),
            on(&["update", "patch"], CORE, &["pods/status"]),
            on(&["create"], CORE, &["pods/eviction"]),
            on(READ, CORE, &["secrets", "configmaps"]),
            on(
                &["get"],
                CORE,
                &["persistentvolumeclaims", "persistentvolumes"],
            ),
            on(&["get"], CORE, &["endpoints"]),
            on(
                &["get", "create", "update", "patch", "delete"],
                &["coordination.k8s.io"],
                &["leases"],
            ),
            on(&["create"], CORE, &["serviceaccounts/token"]),
            on(
                &["get", "update", "patch"],
                CORE,
                &["persistentvolumeclaims/status"],
            ),
        ],
    ),
    role(
        "system:kube-controller-manager",
        &[
            EVENTS,
            on(&["create"], &["coordination.k8s.io"], &["leases"]),
            named(
                &["get", "update"],
                &["coordination.k8s.io"],
                &["leases"],
                &["kube-controller-manager"],
            ),
            on(&["create"], CORE, &["secrets", "serviceaccounts"]),
            on(&["delete"], CORE, &["secrets"]),
            on(
                &["get"],
                CORE,
                &["namespaces", "secrets", "serviceaccounts", "configmaps"],
            ),
            on(&["update"], CORE, &["secrets", "serviceaccounts"]),
            on(&["create"], &["authentication.k8s.io"], &["tokenreviews"]),
            on(
                &["create"],
                &["authorization.k8s.io"],
                &["subjectaccessreviews"],
            ),
            on(&["list", "watch"], &["*"], &["*"]),
            on(&["create"], CORE, &["serviceaccounts/token"]),
        ],
    ),
    role(
        "system:kube-scheduler",
        &[
            EVENTS,
            on(&["create"], &["coordination.k8s.io"], &["leases"]),
            named(
                &["get", "update"],
                &["coordination.k8s.io"],
                &["leases"],
                &["kube-scheduler"],
            ),
            on(READ, CORE, &["nodes"]),
            on(&["get", "list", "watch", "delete"], CORE, &["pods"]),
            on(&["create"], CORE, &["pods/binding", "bindings"]),
            on(&["patch", "update"], CORE, &["pods/status"]),
            on(READ, CORE, &["services", "replicationcontrollers"]),
            on(READ, &["apps", "extensions"], &["replicasets"]),
            on(READ, &["apps"], &["statefulsets"]),
            on(READ, &["policy"], &["poddisruptionbudgets"]),
            on(READ, CORE, &["persistentvolumeclaims", "persistentvolumes"]),
            on(&["create"], &["authentication.k8s.io"], &["tokenreviews"]),
            on(
                &["create"],
                &["authorization.k8s.io"],
                &["subjectaccessreviews"],
            ),
            on(READ, &["storage.k8s.io"], &["csinodes"]),
            on(READ, CORE, &["namespaces"]),
            on(
                READ,
                &["storage.k8s.io"],
                &["csidrivers", "csistoragecapacities"],
            ),
        ],
    ),
    role(
        "system:volume-scheduler",
        &[
            on(
                &["get", "list", "watch", "update", "patch"],
                CORE,
                &["persistentvolumes"],
            ),
            on(READ, &["storage.k8s.io"], &["storageclasses"]),
            on(
                &["get", "list", "watch", "update", "patch"],
                CORE,
                &["persistentvolumeclaims"],
            ),
        ],
    ),
    role(
        "system:service-account-issuer-discovery",
        &[urls(
            &["get"],
            &["/.well-known/openid-configuration", "/openid/v1/jwks"],
        )],
    ),
];

/// One ClusterRoleBinding: its name (also the role's) and its subjects (kind, name).
struct BindingRow(&'static str, &'static [(&'static str, &'static str)]);

const CLUSTER_ROLE_BINDINGS: &[BindingRow] = &[
    BindingRow("cluster-admin", &[("Group", "system:masters")]),
    BindingRow("system:monitoring", &[("Group", "system:monitoring")]),
    BindingRow("system:discovery", &[("Group", "system:authenticated")]),
    BindingRow("system:basic-user", &[("Group", "system:authenticated")]),
    BindingRow(
        "system:public-info-viewer",
        &[
            ("Group", "system:authenticated"),
            ("Group", "system:unauthenticated"),
        ],
    ),
    BindingRow(
        "system:kube-controller-manager",
        &[("User", "system:kube-controller-manager")],
    ),
    BindingRow(
        "system:kube-scheduler",
        &[("User", "system:kube-scheduler")],
    ),
    BindingRow(
        "system:volume-scheduler",
        &[("User", "system:kube-scheduler")],
    ),
    // Upstream keeps it with no subjects since the Node authorizer took over.
    BindingRow("system:node", &[]),
    BindingRow(
        "system:service-account-issuer-discovery",
        &[("Group", "system:serviceaccounts")],
    ),
];

fn bootstrap_metadata(name: &str, extra_label: Option<&str>) -> Value {
    let mut labels = Map::new();
    labels.insert(BOOTSTRAP_LABEL.0.into(), json!(BOOTSTRAP_LABEL.1));
    if let Some(label) = extra_label {
        labels.insert(label.into(), json!("true"));
    }
    json!({"name": name, "labels": labels, "annotations": {AUTOUPDATE_ANNOTATION: "true"}})
}

fn rule_json(row: &RuleRow) -> Value {
    let RuleRow(verbs, groups, resources, names, urls) = row;
    let mut rule = Map::new();
    rule.insert("verbs".into(), json!(verbs));
    for (field, values) in [
        ("apiGroups", groups),
        ("resources", resources),
        ("resourceNames", names),
        ("nonResourceURLs", urls),
    ] {
        if !values.is_empty() {
            rule.insert(field.into(), json!(values));
        }
    }
    Value::Object(rule)
}

/// The default ClusterRoles as objects.
pub fn cluster_roles() -> Vec<Value> {
    CLUSTER_ROLES
        .iter()
        .map(|row| {
            let mut role = json!({
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "ClusterRole",
                "metadata": bootstrap_metadata(row.name, row.label),
                "rules": row.rules.iter().map(rule_json).collect::<Vec<_>>(),
            });
            if let Some(label) = row.aggregates {
                role["aggregationRule"] =
                    json!({"clusterRoleSelectors": [{"matchLabels": {label: "true"}}]});
            }
            role
        })
        .collect()
}

/// The default ClusterRoleBindings as objects.
pub fn cluster_role_bindings() -> Vec<Value> {
    CLUSTER_ROLE_BINDINGS
        .iter()
        .map(|BindingRow(name, subjects)| {
            let subjects: Vec<Value> = subjects
                .iter()
                .map(|(kind, subject)| json!({"kind": kind, "apiGroup": GROUP, "name": subject}))
                .collect();
            json!({
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "ClusterRoleBinding",
                "metadata": bootstrap_metadata(name, None),
                "roleRef": {"apiGroup": GROUP, "kind": "ClusterRole", "name": name},
                "subjects": subjects,
            })
        })
        .collect()
}

/// `roles` with every aggregated role's rules filled in as the aggregation controller will
/// (three rounds reach `admin` through `edit` and `view`, the longest default chain); what a
/// server that has run its controller holds.
#[cfg(test)]
pub(crate) fn with_aggregation(mut roles: Vec<Value>) -> Vec<Value> {
    for _ in 0..3 {
        let snapshot = roles.clone();
        for role in roles.iter_mut() {
            if let Some(rules) = petset_api::kinds::rbac::aggregated_rules(role, &snapshot) {
                role["rules"] = Value::Array(rules);
            }
        }
    }
    roles
}

/// An index holding the default policy, aggregated: what a fresh server decides with.
#[cfg(test)]
pub(crate) fn default_index() -> super::RbacIndex {
    let roles = with_aggregation(cluster_roles());
    let bindings = cluster_role_bindings();
    let index = super::RbacIndex::new();
    index.replace_all(
        roles.iter().map(|role| ("clusterroles", role)).chain(
            bindings
                .iter()
                .map(|binding| ("clusterrolebindings", binding)),
        ),
    );
    index
}

/// `expected`'s labels or annotations over `existing`'s, the existing value winning (upstream's
/// `merge(expected, existing)`); whether anything was added.
fn merge_map(existing: &mut Value, expected: &Value, field: &str) -> bool {
    let Some(wanted) = expected
        .pointer(&format!("/metadata/{field}"))
        .and_then(Value::as_object)
    else {
        return false;
    };
    let meta = existing
        .as_object_mut()
        .map(|object| object.entry("metadata").or_insert_with(|| json!({})));
    let Some(meta) = meta.and_then(Value::as_object_mut) else {
        return false;
    };
    let map = meta.entry(field).or_insert_with(|| json!({}));
    if !map.is_object() {
        *map = json!({});
    }
    let Some(map) = map.as_object_mut() else {
        return false;
    };
    let mut changed = false;
    for (key, value) in wanted {
        if !map.contains_key(key) {
            map.insert(key.clone(), value.clone());
            changed = true;
        }
    }
    changed
}

fn protected(existing: &Value) -> bool {
    existing
        .pointer(&format!(
            "/metadata/annotations/{}",
            AUTOUPDATE_ANNOTATION.replace('/', "~1")
        ))
        .and_then(Value::as_str)
        == Some("false")
}

fn rule_json_of(rule: &Rule) -> Value {
    let mut object = Map::new();
    object.insert("verbs".into(), json!(rule.verbs));
    for (field, values) in [
        ("apiGroups", &rule.api_groups),
        ("resources", &rule.resources),
        ("resourceNames", &rule.resource_names),
        ("nonResourceURLs", &rule.non_resource_urls),
    ] {
        if !values.is_empty() {
            object.insert(field.into(), json!(values));
        }
    }
    Value::Object(object)
}

/// Upstream's `computeReconciledRole` in its additive form; `None` when nothing changes.
pub fn reconciled_role(existing: &Value, expected: &Value) -> Option<Value> {
    let mut role = existing.clone();
    let mut changed = merge_map(&mut role, expected, "annotations");
    changed |= merge_map(&mut role, expected, "labels");
    let missing = uncovered(&Rule::all_of(existing), &Rule::all_of(expected));
    if !missing.is_empty() {
        let rules = role
            .as_object_mut()
            .map(|object| object.entry("rules").or_insert_with(|| json!([])));
        if let Some(Value::Array(rules)) = rules {
            rules.extend(missing.iter().map(rule_json_of));
        }
        changed = true;
    }
    let selectors = |role: &Value| -> Vec<Value> {
        role.pointer("/aggregationRule/clusterRoleSelectors")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default()
    };
    match (
        expected.get("aggregationRule"),
        existing.get("aggregationRule"),
    ) {
        (None, Some(rule)) if !rule.is_null() => {
            if let Some(object) = role.as_object_mut() {
                object.remove("aggregationRule");
            }
            changed = true;
        }
        (Some(_), _) => {
            let have = selectors(existing);
            let missing: Vec<Value> = selectors(expected)
                .into_iter()
                .filter(|selector| !have.contains(selector))
                .collect();
            if !missing.is_empty() {
                let mut all = have;
                all.extend(missing);
                role["aggregationRule"] = json!({"clusterRoleSelectors": all});
                changed = true;
            }
        }
        _ => {}
    }
    changed.then_some(role)
}

/// What reconciling a binding does.
#[derive(Debug, PartialEq)]
pub enum BindingChange {
    None,
    Update(Value),
    /// The roleRef differs: the binding is deleted and made again, keeping its subjects.
    Recreate(Value),
}

/// Upstream's `computeReconciledRoleBinding` in its additive form.
pub fn reconciled_binding(existing: &Value, expected: &Value) -> BindingChange {
    let mut binding = existing.clone();
    let mut changed = merge_map(&mut binding, expected, "annotations");
    changed |= merge_map(&mut binding, expected, "labels");
    let subjects = |b: &Value| {
        b.get("subjects")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default()
    };
    let mut have = subjects(existing);
    for subject in subjects(expected) {
        if !have.contains(&subject) {
            have.push(subject);
            changed = true;
        }
    }
    binding["subjects"] = Value::Array(have);
    if existing.get("roleRef") != expected.get("roleRef") {
        binding["roleRef"] = expected["roleRef"].clone();
        if let Some(meta) = binding.get_mut("metadata").and_then(Value::as_object_mut) {
            for field in ["resourceVersion", "uid", "creationTimestamp"] {
                meta.remove(field);
            }
        }
        return BindingChange::Recreate(binding);
    }
    if changed {
        BindingChange::Update(binding)
    } else {
        BindingChange::None
    }
}

fn rbac_type(plural: &str) -> Option<&'static ResourceType> {
    resources::find(GROUP, "v1", plural)
}

fn name_of(object: &Value) -> &str {
    object
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default()
}

/// Creates or reconciles the default policy (every server start).
pub async fn reconcile(registry: &Registry) -> Result<(), ApiError> {
    let (Some(roles_type), Some(bindings_type)) =
        (rbac_type("clusterroles"), rbac_type("clusterrolebindings"))
    else {
        return Ok(());
    };
    let roles = Scope {
        resource: roles_type,
        namespace: None,
    };
    let bindings = Scope {
        resource: bindings_type,
        namespace: None,
    };
    for expected in cluster_roles() {
        let name = name_of(&expected).to_string();
        match registry.get(roles, &name).await {
            Err(error) if error.code == 404 => {
                ignore_conflict(registry.create(roles, expected, false).await)?;
            }
            Err(error) => return Err(error),
            Ok(existing) if protected(&existing) => {}
            Ok(existing) => {
                if let Some(role) = reconciled_role(&existing, &expected) {
                    ignore_conflict(registry.update(roles, &name, None, role, false).await)?;
                }
            }
        }
    }
    for expected in cluster_role_bindings() {
        let name = name_of(&expected).to_string();
        match registry.get(bindings, &name).await {
            Err(error) if error.code == 404 => {
                ignore_conflict(registry.create(bindings, expected, false).await)?;
            }
            Err(error) => return Err(error),
            Ok(existing) if protected(&existing) => {}
            Ok(existing) => match reconciled_binding(&existing, &expected) {
                BindingChange::None => {}
                BindingChange::Update(binding) => {
                    ignore_conflict(registry.update(bindings, &name, None, binding, false).await)?;
                }
                BindingChange::Recreate(binding) => {
                    let options = crate::registry::DeleteOptions::default();
                    let _ = registry.delete(bindings, &name, &options).await;
                    ignore_conflict(registry.create(bindings, binding, false).await)?;
                }
            },
        }
    }
    Ok(())
}

/// Another server reconciling at the same time got there first: that is as good.
fn ignore_conflict<T>(result: Result<T, ApiError>) -> Result<(), ApiError> {
    match result {
        Ok(_) => Ok(()),
        Err(error) if error.code == 409 => Ok(()),
        Err(error) => Err(error),
    }
}

#[cfg(test)]
#[path = "bootstrap_policy_tests.rs"]
mod tests;
