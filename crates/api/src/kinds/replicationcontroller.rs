//! ReplicationControllers (v1): upstream's `pkg/registry/core/replicationcontroller/strategy.go`
//! and the ReplicationController parts of the defaulters, validation and printers. Their
//! selector is a plain map of labels, defaulted from the template's, and may change.

use jiff::Timestamp;
use serde_json::{Value, json};

use crate::defaults::{default_status, set_default};
use crate::error::Cause;
use crate::kinds::Strategy;
use crate::kinds::replicaset::{
    REPLICA_COLUMNS, SCALE, WORKLOAD_CONDITION, counts_not_negative, default_template,
    replica_cells, template_rules,
};
use crate::proto::pod::POD_TEMPLATE_SPEC;
use crate::proto::{Field, Kind, OBJECT_META, f, many};
use crate::resources::{ResourceType, entry, status};
use crate::selector::LabelSelector;
use crate::shape::round_trip;
use crate::table::{Printing, or_none};
use crate::validate;

pub type Typed = k8s_openapi::api::core::v1::ReplicationController;

pub const RESOURCE: ResourceType = ResourceType {
    short_names: &["rc"],
    categories: &["all"],
    protobuf: Some(REPLICATION_CONTROLLER),
    subresources: &[SCALE, status("", "v1", "ReplicationController")],
    printing: Printing {
        columns: REPLICA_COLUMNS,
        cells,
    },
    strategy: &ReplicationControllerStrategy,
    ..entry(
        "",
        "ReplicationController",
        "replicationcontrollers",
        "replicationcontroller",
        true,
        round_trip::<Typed>,
    )
};

/// The protobuf layout of a core/v1 ReplicationController (its selector is a plain map).
const REPLICATION_CONTROLLER: &[Field] = &[
    f(1, "metadata", Kind::Message(OBJECT_META)),
    f(
        2,
        "spec",
        Kind::Message(&[
            f(1, "replicas", Kind::OptionalInt),
            f(4, "minReadySeconds", Kind::Int),
            f(2, "selector", Kind::StringMap),
            f(3, "template", Kind::Message(POD_TEMPLATE_SPEC)),
        ]),
    ),
    f(
        3,
        "status",
        Kind::Message(&[
            f(1, "replicas", Kind::Int),
            f(2, "fullyLabeledReplicas", Kind::Int),
            f(4, "readyReplicas", Kind::Int),
            f(5, "availableReplicas", Kind::Int),
            f(3, "observedGeneration", Kind::Int),
            many(6, "conditions", Kind::Message(WORKLOAD_CONDITION)),
        ]),
    ),
];

/// A map selector as a label selector (every pair must match).
pub fn map_selector(selector: Option<&Value>) -> Option<LabelSelector> {
    let map = selector?.as_object()?;
    LabelSelector::from_structured(&json!({"matchLabels": map})).ok()
}

fn cells(object: &Value, name: Value, age: Value, _: Timestamp) -> Vec<Value> {
    let selector = map_selector(object.pointer("/spec/selector"))
        .map(|s| s.to_string())
        .unwrap_or_default();
    replica_cells(object, name, age, or_none(&selector))
}

pub struct ReplicationControllerStrategy;

impl Strategy for ReplicationControllerStrategy {
    /// A new object's first status, as upstream answers a create: upstream's `ReplicationControllerStatus` never omits `replicas`.
    fn prepare_for_create(&self, object: &mut Value) {
        crate::kinds::set_status(object, json!({"replicas": 0}));
    }

    fn tracks_generation(&self) -> bool {
        true
    }

    fn defaults(&self, object: &mut Value) {
        // Answered from creation, before the controller writes one, as upstream does.
        default_status(object, json!({"replicas": 0}));
        let template_labels = object
            .pointer("/spec/template/metadata/labels")
            .filter(|l| l.as_object().is_some_and(|m| !m.is_empty()))
            .cloned();
        if let Some(labels) = template_labels {
            let empty =
                |v: Option<&Value>| v.and_then(Value::as_object).is_none_or(|m| m.is_empty());
            if let Some(spec) = object.get_mut("spec")
                && spec.is_object()
                && empty(spec.get("selector"))
            {
                spec["selector"] = labels.clone();
            }
            if let Some(metadata) = object.get_mut("metadata")
                && metadata.is_object()
                && empty(metadata.get("labels"))
            {
                metadata["labels"] = labels;
            }
        }
        let Some(spec) = object.get_mut("spec") else {
            return;
        };
        set_default(spec, "replicas", json!(1));
        default_template(spec);
    }

    fn validate(&self, object: &Value) -> Vec<Cause> {
        let mut causes = Vec::new();
        let spec = object.get("spec").unwrap_or(&Value::Null);
        counts_not_negative(spec, &["replicas", "minReadySeconds"], &mut causes);
        let selector = spec.get("selector").filter(|s| !s.is_null());
        if selector
            .and_then(Value::as_object)
            .is_none_or(|m| m.is_empty())
        {
            causes.push(Cause::required("spec.selector", ""));
        }
        causes.extend(validate::labels(selector, "spec.selector"));
        causes.extend(template_rules(spec, map_selector(selector).as_ref()));
        causes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_selector_and_labels_default_to_the_templates() {
        let mut rc = json!({"metadata": {"name": "nginx"}, "spec": {"replicas": 3,
            "template": {"metadata": {"labels": {"app": "nginx"}},
                "spec": {"containers": [{"name": "nginx", "image": "nginx"}]}}}});
        ReplicationControllerStrategy.defaults(&mut rc);
        assert_eq!(rc["spec"]["selector"], json!({"app": "nginx"}));
        assert_eq!(rc["metadata"]["labels"], json!({"app": "nginx"}));
        assert_eq!(validate::create(&RESOURCE, &rc), vec![]);
        let cells = cells(&rc, json!("nginx"), json!("1s"), Timestamp::now());
        assert_eq!(cells[7], "app=nginx");
        assert_eq!(cells[1], 3);

        rc["spec"]["selector"] = json!({"app": "other"});
        let causes = validate::create(&RESOURCE, &rc);
        assert_eq!(causes[0].field, "spec.template.metadata.labels");
        // A v1 selector may change, as long as it selects the template.
        let old = rc.clone();
        rc["spec"]["selector"] = json!({"app": "nginx"});
        assert_eq!(validate::update(&RESOURCE, &old, &rc), vec![]);
    }

    #[test]
    fn a_controller_without_selector_or_labels_is_refused() {
        let mut rc = json!({"metadata": {"name": "x"}, "spec": {
            "template": {"spec": {"containers": [{"name": "c", "image": "i"}]}}}});
        ReplicationControllerStrategy.defaults(&mut rc);
        let causes = validate::create(&RESOURCE, &rc);
        assert_eq!(causes[0].field, "spec.selector");
    }
}
