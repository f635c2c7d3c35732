//! What the four kinds of `rbac.authorization.k8s.io/v1` share: upstream's
//! `pkg/apis/rbac/validation` (names are path segments, rules need verbs, subjects are users,
//! groups or service accounts), the v1 defaults of subjects and role references, the printers'
//! cells and the protobuf layouts of `generated.proto` that kubectl's `create role`,
//! `create clusterrole`, `create rolebinding` and `create clusterrolebinding` send.

use jiff::Timestamp;
use serde_json::{Value, json};

use crate::error::Cause;
use crate::json::{items, text};
use crate::names;
use crate::proto::{Field, Kind, OBJECT_META, f, many};
use crate::selector::LabelSelector;
use crate::table::Column;
use crate::validate;

pub const GROUP: &str = "rbac.authorization.k8s.io";

/// Upstream's `ValidateRBACName`: any name that can be one segment of a URL path, so
/// `system:controller:foo` is valid. The generic metadata rules already refuse a `/`.
pub fn path_segment_name(name: &str) -> Vec<String> {
    if name == "." || name == ".." {
        return vec![format!("may not be '{name}'")];
    }
    if name.contains('%') {
        return vec!["may not contain '%'".to_string()];
    }
    Vec::new()
}

/// The whole of upstream's `IsValidPathSegmentName`, for names outside metadata.
pub(crate) fn path_segment_problems(name: &str) -> Vec<String> {
    if name == "." || name == ".." {
        return vec![format!("may not be '{name}'")];
    }
    ["/", "%"]
        .iter()
        .filter(|illegal| name.contains(*illegal))
        .map(|illegal| format!("may not contain '{illegal}'"))
        .collect()
}

/// The rules of a Role (`namespaced`) or ClusterRole: upstream's `ValidatePolicyRule`.
pub fn validate_rules(object: &Value, namespaced: bool) -> Vec<Cause> {
    let mut causes = Vec::new();
    for (index, rule) in items(object, "/rules").iter().enumerate() {
        let path = format!("rules[{index}]");
        let listed = |field: &str| items(rule, &format!("/{field}")).len();
        if listed("verbs") == 0 {
            causes.push(Cause::required(
                format!("{path}.verbs"),
                "verbs must contain at least one value",
            ));
        }
        if listed("nonResourceURLs") > 0 {
            let urls: Vec<String> = items(rule, "/nonResourceURLs")
                .iter()
                .map(|url| format!("{:?}", url.as_str().unwrap_or_default()))
                .collect();
            // Go's `%#v` of a string slice, as upstream's message shows the value.
            let urls = format!("[]string{{{}}}", urls.join(", "));
            if namespaced {
                causes.push(go_invalid(
                    format!("{path}.nonResourceURLs"),
                    &urls,
                    "namespaced rules cannot apply to non-resource URLs",
                ));
            }
            if listed("apiGroups") > 0 || listed("resources") > 0 || listed("resourceNames") > 0 {
                causes.push(go_invalid(
                    format!("{path}.nonResourceURLs"),
                    &urls,
                    "rules cannot apply to both regular resources and non-resource URLs",
                ));
            }
            continue;
        }
        if listed("apiGroups") == 0 {
            causes.push(Cause::required(
                format!("{path}.apiGroups"),
                "resource rules must supply at least one api group",
            ));
        }
        if listed("resources") == 0 {
            causes.push(Cause::required(
                format!("{path}.resources"),
                "resource rules must supply at least one resource",
            ));
        }
    }
    causes
}

/// A ClusterRole's `aggregationRule`: at least one selector, each a valid label selector.
pub fn validate_aggregation_rule(role: &Value) -> Vec<Cause> {
    let Some(rule) = role.get("aggregationRule").filter(|rule| !rule.is_null()) else {
        return Vec::new();
    };
    let selectors = items(rule, "/clusterRoleSelectors");
    if selectors.is_empty() {
        return vec![Cause::required(
            "aggregationRule.clusterRoleSelectors",
            "at least one clusterRoleSelector required if aggregationRule is non-nil",
        )];
    }
    let mut causes = Vec::new();
    for (index, selector) in selectors.iter().enumerate() {
        let path = format!("aggregationRule.clusterRoleSelectors[{index}]");
        causes.extend(validate::labels(
            selector.get("matchLabels"),
            &format!("{path}.matchLabels"),
        ));
        if LabelSelector::from_structured(selector).is_err() {
            causes.push(Cause::invalid(path, selector, "invalid label selector."));
        }
    }
    causes
}

/// v1's defaults: a role reference and User and Group subjects are in the RBAC group (a
/// ServiceAccount subject is in the core group, which is empty).
pub fn default_binding(binding: &mut Value) {
    if let Some(role_ref) = binding.get_mut("roleRef").and_then(Value::as_object_mut)
        && role_ref
            .get("apiGroup")
            .and_then(Value::as_str)
            .is_none_or(str::is_empty)
    {
        role_ref.insert("apiGroup".into(), json!(GROUP));
    }
    if let Some(subjects) = binding.get_mut("subjects").and_then(Value::as_array_mut) {
        for subject in subjects.iter_mut().filter_map(Value::as_object_mut) {
            let kind = subject
                .get("kind")
                .and_then(Value::as_str)
                .unwrap_or_default();
            let unset = subject
                .get("apiGroup")
                .and_then(Value::as_str)
                .is_none_or(str::is_empty);
            if unset && matches!(kind, "User" | "Group") {
                subject.insert("apiGroup".into(), json!(GROUP));
            }
        }
    }
}

/// A RoleBinding (`namespaced`) or ClusterRoleBinding: upstream's `ValidateRoleBinding` and
/// `ValidateClusterRoleBinding`.
pub fn validate_binding(binding: &Value, namespaced: bool) -> Vec<Cause> {
    let mut causes = Vec::new();
    let role_ref = binding.get("roleRef").cloned().unwrap_or_else(|| json!({}));
    let group = text(&role_ref, "/apiGroup");
    if group != GROUP {
        causes.push(Cause::not_supported(
            "roleRef.apiGroup",
            &json!(group),
            &[GROUP],
        ));
    }
    let kind = text(&role_ref, "/kind");
    let kinds: &[&str] = if namespaced {
        &["Role", "ClusterRole"]
    } else {
        &["ClusterRole"]
    };
    if !kinds.contains(&kind) {
        causes.push(Cause::not_supported("roleRef.kind", &json!(kind), kinds));
    }
    let name = text(&role_ref, "/name");
    if name.is_empty() {
        causes.push(Cause::required("roleRef.name", ""));
    } else {
        for problem in path_segment_problems(name) {
            causes.push(Cause::invalid("roleRef.name", &json!(name), &problem));
        }
    }
    for (index, subject) in items(binding, "/subjects").iter().enumerate() {
        causes.extend(validate_subject(
            subject,
            namespaced,
            &format!("subjects[{index}]"),
        ));
    }
    causes
}

/// Upstream's `ValidateRoleBindingSubject`.
fn validate_subject(subject: &Value, namespaced: bool, path: &str) -> Vec<Cause> {
    let mut causes = Vec::new();
    let name = text(subject, "/name");
    if name.is_empty() {
        causes.push(Cause::required(format!("{path}.name"), ""));
    }
    let group = text(subject, "/apiGroup");
    match text(subject, "/kind") {
        "ServiceAccount" => {
            if !name.is_empty() {
                for problem in names::dns1123_subdomain(name) {
                    causes.push(Cause::invalid(
                        format!("{path}.name"),
                        &json!(name),
                        &problem,
                    ));
                }
            }
            if !group.is_empty() {
                causes.push(Cause::not_supported(
                    format!("{path}.apiGroup"),
                    &json!(group),
                    &[""],
                ));
            }
            if !namespaced && text(subject, "/namespace").is_empty() {
                causes.push(Cause::required(format!("{path}.namespace"), ""));
            }
        }
        "User" | "Group" => {
            if group != GROUP {
                causes.push(Cause::not_supported(
                    format!("{path}.apiGroup"),
                    &json!(group),
                    &[GROUP],
                ));
            }
        }
        other => causes.push(Cause::not_supported(
            format!("{path}.kind"),
            &json!(other),
            &["ServiceAccount", "User", "Group"],
        )),
    }
    causes
}

/// A binding's `roleRef` never changes (upstream: delete and re-create instead).
pub fn validate_role_ref_unchanged(old: &Value, new: &Value) -> Vec<Cause> {
    let role_ref = |binding: &Value| binding.get("roleRef").cloned().unwrap_or(Value::Null);
    let (before, after) = (role_ref(old), role_ref(new));
    if before == after {
        return Vec::new();
    }
    // Go's `%#v` of upstream's internal struct, the form its message shows.
    let rendered = format!(
        "rbac.RoleRef{{APIGroup:{:?}, Kind:{:?}, Name:{:?}}}",
        text(&after, "/apiGroup"),
        text(&after, "/kind"),
        text(&after, "/name")
    );
    vec![go_invalid(
        "roleRef".to_string(),
        &rendered,
        "cannot change roleRef",
    )]
}

/// An Invalid cause whose value is already rendered as upstream renders a Go value.
fn go_invalid(field: String, rendered: &str, detail: &str) -> Cause {
    Cause {
        reason: "FieldValueInvalid",
        field,
        message: format!("Invalid value: {rendered}: {detail}"),
    }
}

/// Upstream's `printRole`/`printClusterRole` column: the creation time, RFC 3339 in UTC.
pub const CREATED_AT: Column = Column {
    name: "Created At",
    kind: "date",
    priority: 0,
    description: crate::table::AGE.description,
};

pub fn role_cells(role: &Value, name: Value, _age: Value, _: Timestamp) -> Vec<Value> {
    vec![name, json!(text(role, "/metadata/creationTimestamp"))]
}

/// ROLE (`Kind/name`), AGE, then upstream's wide USERS, GROUPS and SERVICEACCOUNTS
/// (`namespace:name`, or the name alone when the subject has no namespace).
pub fn binding_cells(binding: &Value, name: Value, age: Value, _: Timestamp) -> Vec<Value> {
    let role = format!(
        "{}/{}",
        text(binding, "/roleRef/kind"),
        text(binding, "/roleRef/name")
    );
    let (mut users, mut groups, mut accounts) = (Vec::new(), Vec::new(), Vec::new());
    for subject in items(binding, "/subjects") {
        let subject_name = text(subject, "/name");
        match text(subject, "/kind") {
            "User" => users.push(subject_name.to_string()),
            "Group" => groups.push(subject_name.to_string()),
            "ServiceAccount" => match text(subject, "/namespace") {
                "" => accounts.push(subject_name.to_string()),
                namespace => accounts.push(format!("{namespace}:{subject_name}")),
            },
            _ => {}
        }
    }
    vec![
        name,
        json!(role),
        age,
        json!(users.join(", ")),
        json!(groups.join(", ")),
        json!(accounts.join(", ")),
    ]
}

/// The binding columns; `scope` is how upstream's descriptions name the kind.
pub const fn binding_columns(
    role: &'static str,
    users: &'static str,
    groups: &'static str,
    accounts: &'static str,
) -> [Column; 6] {
    [
        crate::table::NAME,
        Column {
            name: "Role",
            kind: "string",
            priority: 0,
            description: role,
        },
        crate::table::AGE,
        Column {
            name: "Users",
            kind: "string",
            priority: 1,
            description: users,
        },
        Column {
            name: "Groups",
            kind: "string",
            priority: 1,
            description: groups,
        },
        Column {
            name: "ServiceAccounts",
            kind: "string",
            priority: 1,
            description: accounts,
        },
    ]
}

const POLICY_RULE: &[Field] = &[
    many(1, "verbs", Kind::String),
    many(2, "apiGroups", Kind::String),
    many(3, "resources", Kind::String),
    many(4, "resourceNames", Kind::String),
    many(5, "nonResourceURLs", Kind::String),
];

const LABEL_SELECTOR_REQUIREMENT: &[Field] = &[
    f(1, "key", Kind::String),
    f(2, "operator", Kind::String),
    many(3, "values", Kind::String),
];

const LABEL_SELECTOR: &[Field] = &[
    f(1, "matchLabels", Kind::StringMap),
    many(
        2,
        "matchExpressions",
        Kind::Message(LABEL_SELECTOR_REQUIREMENT),
    ),
];

const AGGREGATION_RULE: &[Field] = &[many(
    1,
    "clusterRoleSelectors",
    Kind::Message(LABEL_SELECTOR),
)];

const SUBJECT: &[Field] = &[
    f(1, "kind", Kind::String),
    f(2, "apiGroup", Kind::String),
    f(3, "name", Kind::String),
    f(4, "namespace", Kind::String),
];

const ROLE_REF: &[Field] = &[
    f(1, "apiGroup", Kind::String),
    f(2, "kind", Kind::String),
    f(3, "name", Kind::String),
];

pub const ROLE_LAYOUT: &[Field] = &[
    f(1, "metadata", Kind::Message(OBJECT_META)),
    many(2, "rules", Kind::Message(POLICY_RULE)),
];

pub const CLUSTER_ROLE_LAYOUT: &[Field] = &[
    f(1, "metadata", Kind::Message(OBJECT_META)),
    many(2, "rules", Kind::Message(POLICY_RULE)),
    f(3, "aggregationRule", Kind::Message(AGGREGATION_RULE)),
];

/// RoleBinding and ClusterRoleBinding share one layout.
pub const BINDING_LAYOUT: &[Field] = &[
    f(1, "metadata", Kind::Message(OBJECT_META)),
    many(2, "subjects", Kind::Message(SUBJECT)),
    f(3, "roleRef", Kind::Message(ROLE_REF)),
];

/// A rule with only its non-empty lists: upstream compares rules semantically, where an
/// empty list and a missing one are the same.
fn normalized_rule(rule: &Value) -> Value {
    let mut normalized = serde_json::Map::new();
    for field in [
        "verbs",
        "apiGroups",
        "resources",
        "resourceNames",
        "nonResourceURLs",
    ] {
        if let Some(values) = rule.get(field).and_then(Value::as_array)
            && !values.is_empty()
        {
            normalized.insert(field.into(), Value::Array(values.clone()));
        }
    }
    Value::Object(normalized)
}

/// The rules a ClusterRole with an `aggregationRule` should have (upstream's
/// clusterrole-aggregation controller): for each selector in turn, the ClusterRoles it
/// selects by name (not the role itself), each rule once, in that order. `None` when the role
/// aggregates nothing or a selector cannot be read.
pub fn aggregated_rules(role: &Value, cluster_roles: &[Value]) -> Option<Vec<Value>> {
    let selectors = role
        .pointer("/aggregationRule/clusterRoleSelectors")?
        .as_array()?;
    let own_name = text(role, "/metadata/name");
    let mut by_name: Vec<&Value> = cluster_roles.iter().collect();
    by_name.sort_by(|a, b| text(a, "/metadata/name").cmp(text(b, "/metadata/name")));
    let mut rules: Vec<Value> = Vec::new();
    for selector in selectors {
        let selector = LabelSelector::from_structured(selector).ok()?;
        for other in &by_name {
            if text(other, "/metadata/name") == own_name || !selector.matches_object(other) {
                continue;
            }
            for rule in items(other, "/rules") {
                let rule = normalized_rule(rule);
                if !rules.contains(&rule) {
                    rules.push(rule);
                }
            }
        }
    }
    Some(rules)
}

/// Whether `current` already holds exactly `wanted` (compared semantically).
pub fn same_rules(current: &Value, wanted: &[Value]) -> bool {
    let current: Vec<Value> = items(current, "/rules")
        .iter()
        .map(normalized_rule)
        .collect();
    current == wanted
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::find;

    fn causes(plural: &str, object: Value) -> Vec<(String, String)> {
        let resource = find(GROUP, "v1", plural).expect("served");
        crate::validate::create(resource, &object)
            .into_iter()
            .map(|cause| (cause.field, cause.message))
            .collect()
    }

    #[test]
    fn names_are_path_segments() {
        assert!(
            causes(
                "clusterroles",
                json!({"metadata": {"name": "system:controller:foo"}})
            )
            .is_empty()
        );
        assert_eq!(
            causes("clusterroles", json!({"metadata": {"name": "50%"}})),
            [(
                "metadata.name".to_string(),
                "Invalid value: \"50%\": may not contain '%'".to_string()
            )]
        );
    }

    #[test]
    fn rules_need_verbs_groups_and_resources_and_urls_only_cluster_wide() {
        let role = json!({"metadata": {"name": "r", "namespace": "a"}, "rules": [
            {"resources": ["pods"]},
            {"verbs": ["get"], "nonResourceURLs": ["/metrics"]}]});
        assert_eq!(
            causes("roles", role),
            [
                ("rules[0].verbs".to_string(), "Required value: verbs must contain at least one value".to_string()),
                ("rules[0].apiGroups".to_string(), "Required value: resource rules must supply at least one api group".to_string()),
                ("rules[1].nonResourceURLs".to_string(), "Invalid value: []string{\"/metrics\"}: namespaced rules cannot apply to non-resource URLs".to_string()),
            ]
        );
        let mixed = json!({"metadata": {"name": "r"}, "rules": [
            {"verbs": ["get"], "resources": ["pods"], "nonResourceURLs": ["/metrics"]}]});
        assert_eq!(
            causes("clusterroles", mixed),
            [(
                "rules[0].nonResourceURLs".to_string(),
                "Invalid value: []string{\"/metrics\"}: rules cannot apply to both regular resources and non-resource URLs".to_string()
            )]
        );
        let empty_aggregation = json!({"metadata": {"name": "r"}, "aggregationRule": {}});
        assert_eq!(
            causes("clusterroles", empty_aggregation),
            [(
                "aggregationRule.clusterRoleSelectors".to_string(),
                "Required value: at least one clusterRoleSelector required if aggregationRule is non-nil".to_string()
            )]
        );
    }

    #[test]
    fn subjects_and_role_references_get_their_groups_by_default() {
        let mut binding = json!({"roleRef": {"kind": "ClusterRole", "name": "view"}, "subjects": [
            {"kind": "User", "name": "jane"}, {"kind": "ServiceAccount", "name": "default"}]});
        default_binding(&mut binding);
        assert_eq!(binding["roleRef"]["apiGroup"], GROUP);
        assert_eq!(binding["subjects"][0]["apiGroup"], GROUP);
        assert_eq!(binding["subjects"][1].get("apiGroup"), None);
    }

    #[test]
    fn a_binding_prints_its_role_and_subjects_as_upstream() {
        let binding = json!({"roleRef": {"kind": "ClusterRole", "name": "view"}, "subjects": [
            {"kind": "User", "name": "jane"}, {"kind": "User", "name": "joe"},
            {"kind": "Group", "name": "devs"}, {"kind": "ServiceAccount", "name": "default", "namespace": "a"}]});
        let cells = binding_cells(&binding, json!("b"), json!("1m"), Timestamp::now());
        assert_eq!(
            cells,
            [
                json!("b"),
                json!("ClusterRole/view"),
                json!("1m"),
                json!("jane, joe"),
                json!("devs"),
                json!("a:default")
            ]
        );
    }
}
