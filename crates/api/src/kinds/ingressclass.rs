//! IngressClasses (networking.k8s.io/v1, cluster-scoped): upstream's
//! `pkg/registry/networking/ingressclass/strategy.go`, `ValidateIngressClass` and
//! `printIngressClass`. The registry's bootstrap makes `petset` (the default class, for the
//! node's ingress proxy) when it is missing, as it makes the default StorageClass.

use jiff::Timestamp;
use serde_json::{Value, json};

use crate::error::Cause;
use crate::json::text;
use crate::kinds::Strategy;
use crate::kinds::networking::{self, object_reference};
use crate::names;
use crate::proto::{Field, Kind, OBJECT_META, f};
use crate::resources::{ResourceType, entry};
use crate::shape::round_trip;
use crate::table::{AGE, Column, NAME, Printing, col};

pub type Typed = k8s_openapi::api::networking::v1::IngressClass;

pub const RESOURCE: ResourceType = ResourceType {
    printing: Printing {
        columns: COLUMNS,
        cells,
    },
    strategy: &ClassStrategy,
    protobuf: Some(INGRESS_CLASS),
    ..entry(
        networking::GROUP,
        "IngressClass",
        "ingressclasses",
        "ingressclass",
        false,
        round_trip::<Typed>,
    )
};

/// The protobuf layout of an IngressClass; in the parameters' reference, `apiGroup`,
/// `scope` and `namespace` are Go pointers.
const INGRESS_CLASS: &[Field] = &[
    f(1, "metadata", Kind::Message(OBJECT_META)),
    f(
        2,
        "spec",
        Kind::Message(&[
            f(1, "controller", Kind::String),
            f(
                2,
                "parameters",
                Kind::Message(&[
                    f(1, "apiGroup", Kind::OptionalString),
                    f(2, "kind", Kind::String),
                    f(3, "name", Kind::String),
                    f(4, "scope", Kind::OptionalString),
                    f(5, "namespace", Kind::OptionalString),
                ]),
            ),
        ]),
    ),
];

/// The class every petset cluster starts with: the node's ingress proxy serves it.
pub const PETSET_CLASS: &str = "petset";
/// Its `spec.controller`.
pub const PETSET_CONTROLLER: &str = "petset.dev/ingress";

/// The class bootstrap makes when it is missing, marked default.
pub fn petset_class() -> Value {
    json!({
        "metadata": {"name": PETSET_CLASS,
            "annotations": {networking::DEFAULT_CLASS_ANNOTATION: "true"}},
        "spec": {"controller": PETSET_CONTROLLER}
    })
}

const COLUMNS: &[Column] = &[
    NAME,
    Column {
        description: "Controller that is responsible for handling this class",
        ..col("Controller", "string", 0)
    },
    Column {
        description: "A reference to a resource with additional parameters",
        ..col("Parameters", "string", 0)
    },
    AGE,
];

fn cells(class: &Value, name: Value, age: Value, _: Timestamp) -> Vec<Value> {
    let parameters = match class.pointer("/spec/parameters").filter(|p| !p.is_null()) {
        None => "<none>".to_string(),
        Some(parameters) => {
            let kind = text(parameters, "/kind");
            let name = text(parameters, "/name");
            match parameters.get("apiGroup").and_then(Value::as_str) {
                Some(group) => format!("{kind}.{group}/{name}"),
                None => format!("{kind}/{name}"),
            }
        }
    };
    vec![
        name,
        json!(text(class, "/spec/controller")),
        json!(parameters),
        age,
    ]
}

/// Upstream's bound on `spec.controller`.
const CONTROLLER_MAX_BYTES: usize = 250;

pub struct ClassStrategy;

impl Strategy for ClassStrategy {
    fn tracks_generation(&self) -> bool {
        true
    }

    /// Upstream's `SetDefaults_IngressClass`: parameters are cluster-wide unless they say.
    fn defaults(&self, class: &mut Value) {
        if let Some(parameters) = class
            .pointer_mut("/spec/parameters")
            .and_then(Value::as_object_mut)
            && parameters.get("scope").is_none_or(Value::is_null)
        {
            parameters.insert("scope".into(), json!("Cluster"));
        }
    }

    fn validate(&self, class: &Value) -> Vec<Cause> {
        let mut causes = Vec::new();
        let controller = text(class, "/spec/controller");
        if controller.is_empty() {
            causes.push(Cause::required("spec.controller", ""));
        } else {
            if controller.len() > CONTROLLER_MAX_BYTES {
                causes.push(Cause {
                    reason: "FieldValueTooLong",
                    field: "spec.controller".to_string(),
                    message: format!("Too long: may not be more than {CONTROLLER_MAX_BYTES} bytes"),
                });
            }
            causes.extend(domain_prefixed_path(controller, "spec.controller"));
        }
        if let Some(parameters) = class.pointer("/spec/parameters").filter(|p| !p.is_null()) {
            causes.extend(object_reference(parameters, "spec.parameters", true));
        }
        causes
    }

    /// Upstream's `ValidateIngressClassUpdate`: the controller is immutable.
    fn validate_update(&self, old: &Value, new: &Value) -> Vec<Cause> {
        let mut causes = Vec::new();
        let controller = new.pointer("/spec/controller").unwrap_or(&Value::Null);
        if controller != old.pointer("/spec/controller").unwrap_or(&Value::Null) {
            causes.push(Cause::invalid(
                "spec.controller",
                controller,
                "field is immutable",
            ));
        }
        causes.extend(self.validate(new));
        causes
    }
}

/// The characters a path of a domain-prefixed path may hold (upstream's `httpPathFmt`).
const HTTP_PATH_FORMAT: &str = r"[A-Za-z0-9/\-._~%!$&'()*+,;=:]+";

/// Upstream's `IsDomainPrefixedPath` (`acme.io/foo`).
fn domain_prefixed_path(value: &str, field: &str) -> Vec<Cause> {
    let Some((host, path)) = value
        .split_once('/')
        .filter(|(host, path)| !host.is_empty() && !path.is_empty())
    else {
        return vec![Cause::invalid(
            field,
            &json!(value),
            "must be a domain-prefixed path (such as \"acme.io/foo\")",
        )];
    };
    let mut causes: Vec<Cause> = names::dns1123_subdomain(host)
        .iter()
        .map(|problem| Cause::invalid(field, &json!(host), problem))
        .collect();
    let path_ok = path
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "/-._~%!$&'()*+,;=:".contains(c));
    if !path_ok {
        causes.push(Cause::invalid(
            field,
            &json!(path),
            &format!("Invalid path (regex used for validation is '{HTTP_PATH_FORMAT}')"),
        ));
    }
    causes
}

#[cfg(test)]
mod tests {
    use super::*;

    fn class(spec: Value) -> Value {
        json!({"metadata": {"name": "petset"}, "spec": spec})
    }

    fn problems(causes: Vec<Cause>) -> Vec<String> {
        causes
            .into_iter()
            .map(|c| format!("{}: {}", c.field, c.message))
            .collect()
    }

    #[test]
    fn the_bootstrap_class_is_valid_and_default() {
        assert_eq!(
            problems(ClassStrategy.validate(&petset_class())),
            Vec::<String>::new()
        );
        assert!(networking::is_default_class(&petset_class()));
    }

    #[test]
    fn a_class_needs_a_domain_prefixed_controller() {
        assert_eq!(
            problems(ClassStrategy.validate(&class(json!({})))),
            ["spec.controller: Required value"]
        );
        assert_eq!(
            problems(ClassStrategy.validate(&class(json!({"controller": "nginx"})))),
            [
                "spec.controller: Invalid value: \"nginx\": must be a domain-prefixed path (such as \"acme.io/foo\")"
            ]
        );
        assert_eq!(
            problems(ClassStrategy.validate(&class(json!({"controller": "acme.io/a b"})))),
            [
                "spec.controller: Invalid value: \"a b\": Invalid path (regex used for validation is '[A-Za-z0-9/\\-._~%!$&'()*+,;=:]+')"
            ]
        );
        let long = format!("acme.io/{}", "a".repeat(250));
        assert_eq!(
            problems(ClassStrategy.validate(&class(json!({"controller": long})))),
            ["spec.controller: Too long: may not be more than 250 bytes"]
        );
    }

    #[test]
    fn parameters_default_to_the_cluster_scope_and_the_controller_is_immutable() {
        let mut object = class(json!({"controller": "acme.io/x",
            "parameters": {"apiGroup": "acme.io", "kind": "Config", "name": "c"}}));
        ClassStrategy.defaults(&mut object);
        assert_eq!(
            object.pointer("/spec/parameters/scope"),
            Some(&json!("Cluster"))
        );
        assert_eq!(
            problems(ClassStrategy.validate(&object)),
            Vec::<String>::new()
        );
        let mut changed = object.clone();
        changed["spec"]["controller"] = json!("acme.io/y");
        assert_eq!(
            problems(ClassStrategy.validate_update(&object, &changed)),
            ["spec.controller: Invalid value: \"acme.io/y\": field is immutable"]
        );
        let row = cells(&object, json!("petset"), json!("1s"), Timestamp::now());
        assert_eq!(
            row,
            [
                json!("petset"),
                json!("acme.io/x"),
                json!("Config.acme.io/c"),
                json!("1s")
            ]
        );
        let row = cells(
            &petset_class(),
            json!("petset"),
            json!("1s"),
            Timestamp::now(),
        );
        assert_eq!(row[1..3], [json!("petset.dev/ingress"), json!("<none>")]);
    }
}
