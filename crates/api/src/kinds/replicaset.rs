//! ReplicaSets (apps/v1): upstream's `pkg/registry/apps/replicaset/strategy.go` and the
//! ReplicaSet parts of the defaulters, validation and printers. The rules a replica set's pod
//! template follows are shared with Deployments and ReplicationControllers (`template_rules`).

use jiff::Timestamp;
use serde_json::{Value, json};

use crate::defaults::{self, default_status, set_default};
use crate::error::Cause;
use crate::json::{count, items};
use crate::kinds::Strategy;
use crate::proto::pod::POD_TEMPLATE_SPEC;
use crate::proto::{Field, Kind, LABEL_SELECTOR, OBJECT_META, f, many};
use crate::resources::{ResourceType, STATUS_VERBS, Subresource, entry, status};
use crate::selector::LabelSelector;
use crate::shape::round_trip;
use crate::table::{AGE, Column, NAME, Printing, col, containers_and_images};
use crate::validate;

pub type Typed = k8s_openapi::api::apps::v1::ReplicaSet;

/// The `scale` subresource (autoscaling/v1 Scale) of the kinds that have replicas.
pub const SCALE: Subresource = Subresource {
    name: "scale",
    group: "autoscaling",
    version: "v1",
    kind: "Scale",
    verbs: STATUS_VERBS,
};

pub const RESOURCE: ResourceType = ResourceType {
    short_names: &["rs"],
    categories: &["all"],
    protobuf: Some(REPLICA_SET),
    subresources: &[SCALE, status("apps", "v1", "ReplicaSet")],
    printing: Printing {
        columns: REPLICA_COLUMNS,
        cells,
    },
    strategy: &ReplicaSetStrategy,
    ..entry(
        "apps",
        "ReplicaSet",
        "replicasets",
        "replicaset",
        true,
        round_trip::<Typed>,
    )
};

/// The condition of the older workload statuses (apps/v1 ReplicaSet, StatefulSet and DaemonSet
/// conditions, core/v1 ReplicationControllerCondition): laid out alike, without metav1.Condition's
/// `observedGeneration`.
pub(crate) const WORKLOAD_CONDITION: &[Field] = &[
    f(1, "type", Kind::String),
    f(2, "status", Kind::String),
    f(3, "lastTransitionTime", Kind::Time),
    f(4, "reason", Kind::String),
    f(5, "message", Kind::String),
];

/// The protobuf layout of an apps/v1 ReplicaSet (client-go's typed clients send protobuf).
const REPLICA_SET: &[Field] = &[
    f(1, "metadata", Kind::Message(OBJECT_META)),
    f(
        2,
        "spec",
        Kind::Message(&[
            f(1, "replicas", Kind::OptionalInt),
            f(4, "minReadySeconds", Kind::Int),
            f(2, "selector", Kind::Message(LABEL_SELECTOR)),
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
            f(7, "terminatingReplicas", Kind::OptionalInt),
            f(3, "observedGeneration", Kind::Int),
            many(6, "conditions", Kind::Message(WORKLOAD_CONDITION)),
        ]),
    ),
];

/// ReplicaSets' and ReplicationControllers' columns.
pub(crate) const REPLICA_COLUMNS: &[Column] = &[
    NAME,
    col("Desired", "integer", 0),
    col("Current", "integer", 0),
    col("Ready", "integer", 0),
    AGE,
    col("Containers", "string", 1),
    col("Images", "string", 1),
    col("Selector", "string", 1),
];

/// The cells of `REPLICA_COLUMNS`, with the selector as the kind spells it.
pub(crate) fn replica_cells(
    object: &Value,
    name: Value,
    age: Value,
    selector: String,
) -> Vec<Value> {
    let (containers, images) =
        containers_and_images(items(object, "/spec/template/spec/containers"));
    vec![
        name,
        json!(count(object, "/spec/replicas")),
        json!(count(object, "/status/replicas")),
        json!(count(object, "/status/readyReplicas")),
        age,
        json!(containers),
        json!(images),
        json!(selector),
    ]
}

/// A structured selector as upstream prints it (`<none>` when it has no terms).
pub(crate) fn selector_text(selector: Option<&Value>) -> String {
    let text = selector
        .and_then(|s| LabelSelector::from_structured(s).ok())
        .map(|s| s.to_string())
        .unwrap_or_default();
    crate::table::or_none(&text)
}

fn cells(object: &Value, name: Value, age: Value, _: Timestamp) -> Vec<Value> {
    let selector = selector_text(object.pointer("/spec/selector"));
    replica_cells(object, name, age, selector)
}

pub struct ReplicaSetStrategy;

impl Strategy for ReplicaSetStrategy {
    /// A new object's first status, as upstream answers a create: upstream's `ReplicaSetStatus` never omits `replicas`.
    fn prepare_for_create(&self, object: &mut Value) {
        crate::kinds::set_status(object, json!({"replicas": 0}));
    }

    fn tracks_generation(&self) -> bool {
        true
    }

    fn defaults(&self, object: &mut Value) {
        // Answered from creation, before the controller writes one, as upstream does.
        default_status(object, json!({"replicas": 0}));
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
        causes.extend(structured_selector_rules(spec, "deployment"));
        causes
    }

    fn validate_update(&self, old: &Value, new: &Value) -> Vec<Cause> {
        let mut causes = self.validate(new);
        causes.extend(selector_immutable(old, new));
        causes
    }
}

/// Defaults a workload's pod template as a pod's spec is defaulted.
pub(crate) fn default_template(spec: &mut Value) {
    if let Some(template_spec) = spec.pointer_mut("/template/spec") {
        defaults::pod_spec(template_spec);
    }
}

/// `spec.<field>` must not be negative, for each field given (dotted for nested ones:
/// `ordinals.start`).
pub(crate) fn counts_not_negative(spec: &Value, fields: &[&str], causes: &mut Vec<Cause>) {
    for field in fields {
        let pointer = format!("/{}", field.replace('.', "/"));
        if let Some(value) = spec.pointer(&pointer).and_then(Value::as_i64)
            && value < 0
        {
            causes.push(Cause::invalid(
                format!("spec.{field}"),
                &json!(value),
                "must be greater than or equal to 0",
            ));
        }
    }
}

/// apps/v1 selectors may not change (upstream's `ValidateImmutableField`).
pub(crate) fn selector_immutable(old: &Value, new: &Value) -> Vec<Cause> {
    let old_selector = old.pointer("/spec/selector");
    let new_selector = new.pointer("/spec/selector");
    if old_selector == new_selector {
        return Vec::new();
    }
    vec![Cause::invalid(
        "spec.selector",
        new_selector.unwrap_or(&Value::Null),
        "field is immutable",
    )]
}

/// A structured (apps/v1) selector and the template it must select: upstream's
/// `ValidateReplicaSetSpec`/`ValidateDeploymentSpec` selector part and
/// `ValidatePodTemplateSpecForReplicaSet`. `kind` names the kind in the empty-selector message
/// (upstream says "deployment" for both).
pub(crate) fn structured_selector_rules(spec: &Value, kind: &str) -> Vec<Cause> {
    let mut causes = Vec::new();
    let selector = match spec.get("selector").filter(|s| !s.is_null()) {
        None => {
            causes.push(Cause::required("spec.selector", ""));
            None
        }
        Some(selector) => {
            causes.extend(validate::labels(
                selector.get("matchLabels"),
                "spec.selector.matchLabels",
            ));
            let terms = crate::json::map_len(selector, "/matchLabels")
                + items(selector, "/matchExpressions").len();
            if terms == 0 {
                causes.push(Cause::invalid(
                    "spec.selector",
                    selector,
                    &format!("empty selector is invalid for {kind}"),
                ));
            }
            match LabelSelector::from_structured(selector) {
                Ok(parsed) => Some(parsed),
                Err(_) => {
                    causes.push(Cause::invalid(
                        "spec.selector",
                        selector,
                        "invalid label selector",
                    ));
                    None
                }
            }
        }
    };
    causes.extend(template_rules(spec, selector.as_ref()));
    causes
}

/// The pod template of a workload with replicas: selected by `selector` (when it has terms),
/// restartPolicy Always, no activeDeadlineSeconds, and a valid pod spec.
pub(crate) fn template_rules(spec: &Value, selector: Option<&LabelSelector>) -> Vec<Cause> {
    let mut causes = Vec::new();
    let Some(template) = spec.get("template").filter(|t| !t.is_null()) else {
        causes.push(Cause::required("spec.template", ""));
        return causes;
    };
    let labels = template.pointer("/metadata/labels");
    if let Some(selector) = selector
        && !selector.is_empty()
        && !selector.matches(labels.and_then(Value::as_object))
    {
        causes.push(Cause::invalid(
            "spec.template.metadata.labels",
            labels.unwrap_or(&Value::Null),
            "`selector` does not match template `labels`",
        ));
    }
    causes.extend(validate::labels(labels, "spec.template.metadata.labels"));
    causes.extend(validate::always_restarting_template(spec, "ReplicaSet"));
    causes
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn frontend() -> Value {
        let mut rs = json!({
            "metadata": {"name": "frontend"},
            "spec": {
                "replicas": 3,
                "selector": {"matchLabels": {"tier": "frontend"}},
                "template": {"metadata": {"labels": {"tier": "frontend"}},
                    "spec": {"containers": [{"name": "php-redis", "image": "gb-frontend:v5"}]}}
            }
        });
        ReplicaSetStrategy.defaults(&mut rs);
        rs
    }

    #[test]
    fn a_replica_set_is_defaulted_and_valid() {
        let mut rs = frontend();
        rs["spec"].as_object_mut().map(|s| s.remove("replicas"));
        ReplicaSetStrategy.defaults(&mut rs);
        assert_eq!(rs["spec"]["replicas"], 1);
        assert_eq!(
            rs["spec"]["template"]["spec"]["containers"][0]["imagePullPolicy"],
            "IfNotPresent"
        );
        assert_eq!(validate::create(&RESOURCE, &rs), vec![]);
    }

    #[test]
    fn the_selector_must_select_the_template_and_never_change() {
        let mut rs = frontend();
        rs["spec"]["template"]["metadata"]["labels"] = json!({"tier": "backend"});
        let causes = validate::create(&RESOURCE, &rs);
        assert_eq!(causes.len(), 1, "{causes:?}");
        assert_eq!(causes[0].field, "spec.template.metadata.labels");
        assert!(
            causes[0]
                .message
                .contains("`selector` does not match template `labels`")
        );

        let mut empty = frontend();
        empty["spec"]["selector"] = json!({});
        let causes = validate::create(&RESOURCE, &empty);
        assert!(
            causes[0]
                .message
                .contains("empty selector is invalid for deployment")
        );

        let old = frontend();
        let mut moved = frontend();
        moved["spec"]["selector"] = json!({"matchLabels": {"tier": "frontend", "x": "y"}});
        moved["spec"]["template"]["metadata"]["labels"]["x"] = json!("y");
        let causes = validate::update(&RESOURCE, &old, &moved);
        assert_eq!(causes.len(), 1, "{causes:?}");
        assert!(causes[0].message.contains("field is immutable"));
    }

    #[test]
    fn negative_replicas_and_other_restart_policies_are_refused() {
        let mut rs = frontend();
        rs["spec"]["replicas"] = json!(-1);
        rs["spec"]["template"]["spec"]["restartPolicy"] = json!("Never");
        let fields: Vec<String> = validate::create(&RESOURCE, &rs)
            .into_iter()
            .map(|c| c.field)
            .collect();
        assert_eq!(
            fields,
            vec!["spec.replicas", "spec.template.spec.restartPolicy"]
        );
    }

    #[test]
    fn cells_show_desired_current_ready_and_the_selector() {
        let mut rs = frontend();
        rs["status"] = json!({"replicas": 3, "readyReplicas": 2});
        let cells = cells(&rs, json!("frontend"), json!("1m"), Timestamp::now());
        assert_eq!(
            cells,
            vec![
                json!("frontend"),
                json!(3),
                json!(3),
                json!(2),
                json!("1m"),
                json!("php-redis"),
                json!("gb-frontend:v5"),
                json!("tier=frontend")
            ]
        );
    }
}
