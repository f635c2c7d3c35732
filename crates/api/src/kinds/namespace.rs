//! Namespaces (core/v1): upstream's `pkg/registry/core/namespace/strategy.go` and the
//! NamespaceLifecycle admission's own rules. A deleted namespace turns Terminating and stays
//! until the namespace controller has emptied it; the system namespaces are never deleted.

use jiff::Timestamp;
use serde_json::{Value, json};

use crate::defaults::set_default;
use crate::json::text;
use crate::kinds::{NameRule, Strategy, set_status};
use crate::names;
use crate::proto::{Field, Kind, OBJECT_META, f, many};
use crate::resources::{ResourceType, entry, status};
use crate::shape::round_trip;
use crate::table::{AGE, Column, NAME, Printing, col};

pub type Typed = k8s_openapi::api::core::v1::Namespace;

pub const RESOURCE: ResourceType = ResourceType {
    short_names: &["ns"],
    subresources: &[status("", "v1", "Namespace")],
    unlisted_subresources: &["finalize"],
    printing: Printing {
        columns: &[NAME, col("Status", "string", 0), AGE] as &[Column],
        cells,
    },
    strategy: &NamespaceStrategy,
    protobuf: Some(NAMESPACE),
    ..entry(
        "",
        "Namespace",
        "namespaces",
        "namespace",
        false,
        round_trip::<Typed>,
    )
};

/// The protobuf layout kubectl's imperative `create` sends (upstream's `generated.proto`).
const NAMESPACE: &[Field] = &[
    f(1, "metadata", Kind::Message(OBJECT_META)),
    f(
        2,
        "spec",
        Kind::Message(&[many(1, "finalizers", Kind::String)]),
    ),
    f(
        3,
        "status",
        Kind::Message(&[
            f(1, "phase", Kind::String),
            many(2, "conditions", Kind::Message(NAMESPACE_CONDITION)),
        ]),
    ),
];

/// core/v1 NamespaceCondition (upstream numbers it without a field 3).
const NAMESPACE_CONDITION: &[Field] = &[
    f(1, "type", Kind::String),
    f(2, "status", Kind::String),
    f(4, "lastTransitionTime", Kind::Time),
    f(5, "reason", Kind::String),
    f(6, "message", Kind::String),
];

fn cells(namespace: &Value, name: Value, age: Value, _: Timestamp) -> Vec<Value> {
    vec![name, json!(text(namespace, "/status/phase")), age]
}

/// The label upstream's defaulter gives every namespace: its own name.
pub const NAME_LABEL: &str = "kubernetes.io/metadata.name";

/// The namespaces upstream's NamespaceLifecycle admission refuses to delete.
pub const IMMORTAL_NAMESPACES: [&str; 3] = ["default", "kube-system", "kube-public"];

pub struct NamespaceStrategy;

impl Strategy for NamespaceStrategy {
    fn tracks_generation(&self) -> bool {
        true
    }

    fn name_rule(&self) -> NameRule {
        names::dns1123_label
    }

    fn prepare_for_create(&self, namespace: &mut Value) {
        set_status(namespace, json!({"phase": "Active"}));
    }

    /// The spec (its finalizers) changes only through `/finalize`.
    fn prepare_for_update(&self, old: &Value, new: &mut Value) {
        if let Some(map) = new.as_object_mut() {
            map.insert(
                "spec".into(),
                old.get("spec").cloned().unwrap_or_else(|| json!({})),
            );
        }
    }

    /// Upstream's defaulter also labels every named namespace with its own name
    /// (`kubernetes.io/metadata.name`), on create and on every update.
    fn defaults(&self, namespace: &mut Value) {
        set_default(namespace, "spec", json!({"finalizers": ["kubernetes"]}));
        let Some(name) = namespace
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .filter(|n| !n.is_empty())
            .map(str::to_string)
        else {
            return;
        };
        if let Some(meta) = namespace.get_mut("metadata") {
            set_default(meta, "labels", json!({}));
            if let Some(labels) = meta.get_mut("labels").and_then(Value::as_object_mut) {
                labels.insert(NAME_LABEL.into(), json!(name));
            }
        }
    }

    fn kept_without_finalizers(&self, _: &Value) -> bool {
        true
    }

    fn begin_deletion(&self, namespace: &mut Value) -> bool {
        set_status(namespace, json!({"phase": "Terminating"}));
        true
    }

    fn undeletable(&self, name: &str) -> Option<&'static str> {
        IMMORTAL_NAMESPACES
            .contains(&name)
            .then_some("this namespace may not be deleted")
    }

    /// One request must not empty the cluster (upstream serves no deletecollection here).
    fn allows_delete_collection(&self) -> bool {
        false
    }

    fn selectable_field(&self, path: &str) -> bool {
        path == "status.phase"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_namespace_is_labelled_with_its_name_even_when_the_label_is_changed() {
        let mut created = json!({"metadata": {"name": "team-a"}});
        NamespaceStrategy.defaults(&mut created);
        assert_eq!(created["metadata"]["labels"], json!({NAME_LABEL: "team-a"}));
        let mut updated = json!({"metadata": {"name": "team-a",
            "labels": {NAME_LABEL: "other", "tier": "x"}}});
        NamespaceStrategy.defaults(&mut updated);
        assert_eq!(
            updated["metadata"]["labels"],
            json!({NAME_LABEL: "team-a", "tier": "x"})
        );
        let mut unnamed = json!({"metadata": {"generateName": "ns-"}});
        NamespaceStrategy.defaults(&mut unnamed);
        assert!(unnamed["metadata"].get("labels").is_none());
    }
}
