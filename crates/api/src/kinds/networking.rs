//! What the three kinds of `networking.k8s.io/v1` (`ingress.rs`, `ingressclass.rs`,
//! `networkpolicy.rs`) share: upstream's `pkg/apis/networking/validation` checks of ports,
//! label selectors and object references, Go's rendering of the values some of its messages
//! quote, and the annotation that marks the default IngressClass.

use serde_json::{Value, json};

use crate::error::Cause;
use crate::json::text;
use crate::kinds::rbac::path_segment_problems;
use crate::names;
use crate::selector::LabelSelector;
use crate::validate;

pub const GROUP: &str = "networking.k8s.io";

/// The annotation that makes an IngressClass the one an Ingress without a class gets.
pub const DEFAULT_CLASS_ANNOTATION: &str = "ingressclass.kubernetes.io/is-default-class";

/// Whether an IngressClass is marked default (the value must be exactly `"true"`, as upstream).
pub fn is_default_class(class: &Value) -> bool {
    class
        .pointer("/metadata/annotations")
        .and_then(|annotations| annotations.get(DEFAULT_CLASS_ANNOTATION))
        .and_then(Value::as_str)
        == Some("true")
}

/// The class an Ingress without one gets: of the classes marked default, the newest (by
/// creation time, then the first by name), as upstream's DefaultIngressClass admission.
pub fn newest_default_class(classes: &[Value]) -> Option<&str> {
    classes
        .iter()
        .filter(|class| is_default_class(class))
        .map(|class| {
            let created = class
                .pointer("/metadata/creationTimestamp")
                .and_then(Value::as_str)
                .and_then(crate::time::parse);
            (created, text(class, "/metadata/name"))
        })
        .max_by(|(a_created, a_name), (b_created, b_name)| {
            a_created.cmp(b_created).then_with(|| b_name.cmp(a_name))
        })
        .map(|(_, name)| name)
}

/// An Invalid cause whose value is already rendered as Go's `%#v` renders it (upstream quotes
/// whole slices in a few messages, e.g. `[]networking.IngressRule(nil)`).
pub(crate) fn go_invalid(field: impl Into<String>, rendered: &str, detail: &str) -> Cause {
    Cause {
        reason: "FieldValueInvalid",
        field: field.into(),
        message: format!("Invalid value: {rendered}: {detail}"),
    }
}

/// Go's `%#v` of a slice of strings of a named type: `nil` when absent,
/// `[]T{"a", "b"}` otherwise.
pub(crate) fn go_slice(type_name: &str, value: Option<&Value>) -> String {
    match value.and_then(Value::as_array) {
        None => format!("[]{type_name}(nil)"),
        Some(entries) => {
            let quoted: Vec<String> = entries
                .iter()
                .map(|entry| match entry {
                    Value::String(text) => format!("{text:?}"),
                    other => other.to_string(),
                })
                .collect();
            format!("[]{type_name}{{{}}}", quoted.join(", "))
        }
    }
}

/// Upstream's `IsValidPortNum`.
pub(crate) fn port_number(number: i64, field: &str) -> Vec<Cause> {
    if (1..=65535).contains(&number) {
        Vec::new()
    } else {
        vec![Cause::invalid(
            field,
            &json!(number),
            "must be between 1 and 65535, inclusive",
        )]
    }
}

/// Upstream's `IsValidPortName`, one cause per problem.
pub(crate) fn port_name(name: &str, field: &str) -> Vec<Cause> {
    names::port_name(name)
        .iter()
        .map(|problem| Cause::invalid(field, &json!(name), problem))
        .collect()
}

/// A `metav1.LabelSelector`: its label keys and values, and its expressions.
pub(crate) fn label_selector(selector: &Value, field: &str) -> Vec<Cause> {
    let mut causes = validate::labels(selector.get("matchLabels"), &format!("{field}.matchLabels"));
    if let Err(error) = LabelSelector::from_structured(selector) {
        causes.push(Cause::invalid(field, selector, &error.to_string()));
    }
    causes
}

/// A reference to an object by API group, kind and name: an Ingress backend's `resource`
/// (upstream's `validateIngressTypedLocalObjectReference`), and with `scope` an IngressClass's
/// `parameters` (`validateIngressClassParametersReference`).
pub(crate) fn object_reference(reference: &Value, field: &str, with_scope: bool) -> Vec<Cause> {
    let mut causes = Vec::new();
    if let Some(group) = reference.get("apiGroup").and_then(Value::as_str) {
        for problem in names::dns1123_subdomain(group) {
            causes.push(Cause::invalid(
                format!("{field}.apiGroup"),
                &json!(group),
                &problem,
            ));
        }
    }
    for part in ["kind", "name"] {
        let value = text(reference, &format!("/{part}"));
        if value.is_empty() {
            causes.push(Cause::required(format!("{field}.{part}"), ""));
            continue;
        }
        for problem in path_segment_problems(value) {
            causes.push(Cause::invalid(
                format!("{field}.{part}"),
                &json!(value),
                &problem,
            ));
        }
    }
    if with_scope {
        causes.extend(parameters_scope(reference, field));
    }
    causes
}

fn parameters_scope(reference: &Value, field: &str) -> Vec<Cause> {
    let namespace = reference.get("namespace").filter(|n| !n.is_null());
    match reference.get("scope").and_then(Value::as_str) {
        None => vec![Cause::required(format!("{field}.scope"), "")],
        Some("Namespace") => match namespace.and_then(Value::as_str) {
            None => vec![Cause::required(
                format!("{field}.namespace"),
                "`parameters.scope` is set to 'Namespace'",
            )],
            Some(namespace) => names::dns1123_label(namespace)
                .iter()
                .map(|problem| {
                    Cause::invalid(format!("{field}.namespace"), &json!(namespace), problem)
                })
                .collect(),
        },
        Some("Cluster") if namespace.is_some() => vec![Cause::forbidden(
            format!("{field}.namespace"),
            "`parameters.scope` is set to 'Cluster'",
        )],
        Some("Cluster") => Vec::new(),
        Some(other) => vec![Cause::not_supported(
            format!("{field}.scope"),
            &json!(other),
            &["Cluster", "Namespace"],
        )],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_exact_value_true_makes_a_class_default() {
        let class =
            |value: Value| json!({"metadata": {"annotations": {DEFAULT_CLASS_ANNOTATION: value}}});
        assert!(is_default_class(&class(json!("true"))));
        assert!(!is_default_class(&class(json!("True"))));
        assert!(!is_default_class(&class(json!(true))));
        assert!(!is_default_class(&json!({"metadata": {}})));
    }

    #[test]
    fn the_newest_default_class_wins_and_a_tie_goes_to_the_first_name() {
        let class = |name: &str, created: &str, default: bool| {
            json!({"metadata": {"name": name, "creationTimestamp": created,
                "annotations": {DEFAULT_CLASS_ANNOTATION: default.to_string()}}})
        };
        let early = "2026-01-01T00:00:00Z";
        let late = "2026-01-02T00:00:00Z";
        assert_eq!(newest_default_class(&[]), None);
        assert_eq!(newest_default_class(&[class("a", late, false)]), None);
        assert_eq!(
            newest_default_class(&[
                class("old", early, true),
                class("new", late, true),
                class("newest-but-not-default", "2026-02-01T00:00:00Z", false)
            ]),
            Some("new")
        );
        assert_eq!(
            newest_default_class(&[class("b", late, true), class("a", late, true)]),
            Some("a")
        );
    }

    #[test]
    fn slices_are_rendered_as_gos_percent_hash_v() {
        assert_eq!(
            go_slice("networking.IngressRule", None),
            "[]networking.IngressRule(nil)"
        );
        assert_eq!(
            go_slice("networking.PolicyType", Some(&json!(["Ingress", "Egress"]))),
            r#"[]networking.PolicyType{"Ingress", "Egress"}"#
        );
    }

    #[test]
    fn ports_are_numbers_in_range_or_iana_names() {
        assert!(port_number(80, "p").is_empty());
        assert_eq!(
            port_number(0, "p")[0].message,
            "Invalid value: 0: must be between 1 and 65535, inclusive"
        );
        assert!(port_name("http", "p").is_empty());
        let messages: Vec<String> = port_name("-B--", "p")
            .into_iter()
            .map(|c| c.message)
            .collect();
        assert_eq!(
            messages,
            [
                "Invalid value: \"-B--\": must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)",
                "Invalid value: \"-B--\": must contain at least one letter (a-z)",
                "Invalid value: \"-B--\": must not contain consecutive hyphens",
                "Invalid value: \"-B--\": must not begin or end with a hyphen",
            ]
        );
    }

    #[test]
    fn references_need_kind_and_name_and_parameters_a_scope() {
        let causes = |reference: Value, with_scope: bool| -> Vec<String> {
            object_reference(&reference, "spec.parameters", with_scope)
                .into_iter()
                .map(|c| format!("{}: {}", c.field, c.message))
                .collect()
        };
        assert_eq!(
            causes(json!({"kind": "Config", "name": "a"}), false),
            Vec::<String>::new()
        );
        assert_eq!(
            causes(json!({"name": "a%b"}), false),
            [
                "spec.parameters.kind: Required value",
                "spec.parameters.name: Invalid value: \"a%b\": may not contain '%'",
            ]
        );
        assert_eq!(
            causes(json!({"kind": "C", "name": "a"}), true),
            ["spec.parameters.scope: Required value"]
        );
        assert_eq!(
            causes(
                json!({"kind": "C", "name": "a", "scope": "Namespace"}),
                true
            ),
            ["spec.parameters.namespace: Required value: `parameters.scope` is set to 'Namespace'"]
        );
        assert_eq!(
            causes(
                json!({"kind": "C", "name": "a", "scope": "Cluster", "namespace": "x"}),
                true
            ),
            ["spec.parameters.namespace: Forbidden: `parameters.scope` is set to 'Cluster'"]
        );
        assert_eq!(
            causes(json!({"kind": "C", "name": "a", "scope": "World"}), true),
            [
                "spec.parameters.scope: Unsupported value: \"World\": supported values: \"Cluster\", \"Namespace\""
            ]
        );
    }
}
