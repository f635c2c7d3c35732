//! StatefulSets (apps/v1): upstream's `pkg/registry/apps/statefulset/strategy.go` and the
//! StatefulSet parts of the defaulters, validation and printers.

use jiff::Timestamp;
use serde_json::{Value, json};

use crate::defaults::{self, array_mut, default_status, set_default};
use crate::error::Cause;
use crate::json::{count, items};
use crate::kinds::pvc::PERSISTENT_VOLUME_CLAIM;
use crate::kinds::replicaset::{SCALE, WORKLOAD_CONDITION, counts_not_negative};
use crate::kinds::{NameRule, Strategy};
use crate::names;
use crate::proto::pod::POD_TEMPLATE_SPEC;
use crate::proto::{Field, Kind, LABEL_SELECTOR, OBJECT_META, f, many};
use crate::resources::{ResourceType, entry, status};
use crate::shape::round_trip;
use crate::table::{AGE, Column, NAME, Printing, col, containers_and_images};
use crate::validate;

pub type Typed = k8s_openapi::api::apps::v1::StatefulSet;

pub const RESOURCE: ResourceType = ResourceType {
    short_names: &["sts"],
    categories: &["all"],
    protobuf: Some(STATEFUL_SET),
    subresources: &[SCALE, status("apps", "v1", "StatefulSet")],
    printing: Printing {
        columns: COLUMNS,
        cells,
    },
    strategy: &StatefulSetStrategy,
    ..entry(
        "apps",
        "StatefulSet",
        "statefulsets",
        "statefulset",
        true,
        round_trip::<Typed>,
    )
};

/// The protobuf layout of an apps/v1 StatefulSet.
const STATEFUL_SET: &[Field] = &[
    f(1, "metadata", Kind::Message(OBJECT_META)),
    f(2, "spec", Kind::Message(STATEFUL_SET_SPEC)),
    f(3, "status", Kind::Message(STATEFUL_SET_STATUS)),
];

const STATEFUL_SET_SPEC: &[Field] = &[
    f(1, "replicas", Kind::OptionalInt),
    f(2, "selector", Kind::Message(LABEL_SELECTOR)),
    f(3, "template", Kind::Message(POD_TEMPLATE_SPEC)),
    many(
        4,
        "volumeClaimTemplates",
        Kind::Message(PERSISTENT_VOLUME_CLAIM),
    ),
    f(5, "serviceName", Kind::String),
    f(6, "podManagementPolicy", Kind::String),
    f(
        7,
        "updateStrategy",
        Kind::Message(&[
            f(1, "type", Kind::String),
            f(
                2,
                "rollingUpdate",
                Kind::Message(&[
                    f(1, "partition", Kind::OptionalInt),
                    f(2, "maxUnavailable", Kind::IntOrString),
                ]),
            ),
        ]),
    ),
    f(8, "revisionHistoryLimit", Kind::OptionalInt),
    f(9, "minReadySeconds", Kind::Int),
    f(
        10,
        "persistentVolumeClaimRetentionPolicy",
        Kind::Message(&[
            f(1, "whenDeleted", Kind::String),
            f(2, "whenScaled", Kind::String),
        ]),
    ),
    f(11, "ordinals", Kind::Message(&[f(1, "start", Kind::Int)])),
];

const STATEFUL_SET_STATUS: &[Field] = &[
    f(1, "observedGeneration", Kind::Int),
    f(2, "replicas", Kind::Int),
    f(3, "readyReplicas", Kind::Int),
    f(4, "currentReplicas", Kind::Int),
    f(5, "updatedReplicas", Kind::Int),
    f(6, "currentRevision", Kind::String),
    f(7, "updateRevision", Kind::String),
    f(9, "collisionCount", Kind::OptionalInt),
    many(10, "conditions", Kind::Message(WORKLOAD_CONDITION)),
    f(11, "availableReplicas", Kind::Int),
];

const COLUMNS: &[Column] = &[
    NAME,
    col("Ready", "string", 0),
    AGE,
    col("Containers", "string", 1),
    col("Images", "string", 1),
];

fn cells(object: &Value, name: Value, age: Value, _: Timestamp) -> Vec<Value> {
    let (containers, images) =
        containers_and_images(items(object, "/spec/template/spec/containers"));
    vec![
        name,
        json!(format!(
            "{}/{}",
            count(object, "/status/readyReplicas"),
            count(object, "/spec/replicas")
        )),
        age,
        json!(containers),
        json!(images),
    ]
}

pub struct StatefulSetStrategy;

impl Strategy for StatefulSetStrategy {
    /// A new object's first status, as upstream answers a create: the two counts upstream's `StatefulSetStatus` never omits.
    fn prepare_for_create(&self, object: &mut Value) {
        crate::kinds::set_status(object, json!({"replicas": 0, "availableReplicas": 0}));
    }

    fn tracks_generation(&self) -> bool {
        true
    }

    fn name_rule(&self) -> NameRule {
        names::dns1123_label
    }

    fn defaults(&self, object: &mut Value) {
        default_statefulset(object);
        default_status(object, json!({"replicas": 0, "availableReplicas": 0}));
    }

    fn validate(&self, object: &Value) -> Vec<Cause> {
        validate_statefulset(object)
    }

    fn validate_update(&self, old: &Value, new: &Value) -> Vec<Cause> {
        let mut causes = validate_statefulset(new);
        causes.extend(validate::spec_immutable_except(
            old,
            new,
            |spec| {
                if let Value::Object(map) = spec {
                    for field in [
                        "replicas",
                        "ordinals",
                        "template",
                        "updateStrategy",
                        "revisionHistoryLimit",
                        "persistentVolumeClaimRetentionPolicy",
                        "minReadySeconds",
                    ] {
                        map.remove(field);
                    }
                }
            },
            "updates to statefulset spec for fields other than 'replicas', 'ordinals', 'template', 'updateStrategy', 'revisionHistoryLimit', 'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' are forbidden",
        ));
        causes
    }
}

fn default_statefulset(object: &mut Value) {
    let Some(spec) = object.get_mut("spec") else {
        return;
    };
    set_default(spec, "podManagementPolicy", json!("OrderedReady"));
    let strategy_was_empty = spec
        .pointer("/updateStrategy/type")
        .and_then(Value::as_str)
        .is_none_or(str::is_empty);
    if strategy_was_empty {
        set_default(spec, "updateStrategy", json!({}));
        // Only a map is filled in; any other shape is left for validation to refuse.
        if let Some(strategy) = spec.get_mut("updateStrategy")
            && let Some(map) = strategy.as_object_mut()
        {
            map.insert("type".into(), json!("RollingUpdate"));
            set_default(strategy, "rollingUpdate", json!({}));
        }
    }
    if let Some(rolling) = spec.pointer_mut("/updateStrategy/rollingUpdate")
        && spec_type_is_rolling(rolling)
    {
        set_default(rolling, "partition", json!(0));
    }
    set_default(spec, "persistentVolumeClaimRetentionPolicy", json!({}));
    if let Some(policy) = spec.get_mut("persistentVolumeClaimRetentionPolicy") {
        set_default(policy, "whenDeleted", json!("Retain"));
        set_default(policy, "whenScaled", json!("Retain"));
    }
    set_default(spec, "replicas", json!(1));
    set_default(spec, "revisionHistoryLimit", json!(10));
    set_default(spec, "minReadySeconds", json!(0));
    if let Some(template_spec) = spec.pointer_mut("/template/spec") {
        defaults::pod_spec(template_spec);
    }
    for claim in array_mut(spec, "volumeClaimTemplates") {
        set_default(claim, "apiVersion", json!("v1"));
        set_default(claim, "kind", json!("PersistentVolumeClaim"));
        if let Some(claim_spec) = claim.get_mut("spec") {
            set_default(claim_spec, "volumeMode", json!("Filesystem"));
        }
        set_default(claim, "status", json!({"phase": "Pending"}));
    }
}

/// `rollingUpdate` is only defaulted as an object; anything else is left for validation.
fn spec_type_is_rolling(rolling: &Value) -> bool {
    rolling.is_object()
}

fn validate_statefulset(object: &Value) -> Vec<Cause> {
    let mut causes = Vec::new();
    let empty = json!({});
    let spec = object.get("spec").unwrap_or(&empty);
    match spec.get("podManagementPolicy").and_then(Value::as_str) {
        None | Some("") => causes.push(Cause::required("spec.podManagementPolicy", "")),
        Some("OrderedReady" | "Parallel") => {}
        Some(other) => causes.push(Cause::invalid(
            "spec.podManagementPolicy",
            &json!(other),
            "must be 'OrderedReady' or 'Parallel'",
        )),
    }
    let strategy = spec.get("updateStrategy").unwrap_or(&empty);
    let rolling = strategy.get("rollingUpdate").filter(|r| !r.is_null());
    match strategy.get("type").and_then(Value::as_str) {
        None | Some("") => causes.push(Cause::required("spec.updateStrategy", "")),
        Some("OnDelete") => {
            if let Some(rolling) = rolling {
                causes.push(Cause::invalid(
                    "spec.updateStrategy.rollingUpdate",
                    rolling,
                    "only allowed for updateStrategy 'RollingUpdate'",
                ));
            }
        }
        Some("RollingUpdate") => {
            if let Some(partition) = rolling
                .and_then(|r| r.get("partition"))
                .and_then(Value::as_i64)
                && partition < 0
            {
                causes.push(Cause::invalid(
                    "spec.updateStrategy.rollingUpdate.partition",
                    &json!(partition),
                    "must be greater than or equal to 0",
                ));
            }
            if let Some(max) = rolling.and_then(|r| r.get("maxUnavailable")) {
                causes.extend(max_unavailable(max));
            }
        }
        Some(other) => causes.push(Cause::invalid(
            "spec.updateStrategy",
            &json!(other),
            "must be 'RollingUpdate' or 'OnDelete'",
        )),
    }
    if let Some(policy) = spec.get("persistentVolumeClaimRetentionPolicy") {
        for field in ["whenDeleted", "whenScaled"] {
            if let Some(value) = policy.get(field)
                && !matches!(value.as_str(), Some("Retain" | "Delete"))
            {
                causes.push(Cause::not_supported(
                    format!("spec.persistentVolumeClaimRetentionPolicy.{field}"),
                    value,
                    &["Retain", "Delete"],
                ));
            }
        }
    }
    counts_not_negative(
        spec,
        &["replicas", "minReadySeconds", "ordinals.start"],
        &mut causes,
    );
    causes.extend(validate::selector_of_template(spec, "statefulset"));
    causes.extend(validate::labels(
        spec.pointer("/template/metadata/labels"),
        "spec.template.metadata.labels",
    ));
    causes.extend(validate::always_restarting_template(spec, "StatefulSet"));
    if let Some(templates) = spec.get("volumeClaimTemplates").and_then(Value::as_array) {
        for (index, template) in templates.iter().enumerate() {
            let field = format!("spec.volumeClaimTemplates[{index}]");
            causes.extend(validate::pvc_spec(
                template.get("spec").unwrap_or(&Value::Null),
                &format!("{field}.spec"),
            ));
        }
    }
    causes
}

/// `rollingUpdate.maxUnavailable`: a positive count or a percentage in (0%, 100%].
fn max_unavailable(value: &Value) -> Vec<Cause> {
    let field = "spec.updateStrategy.rollingUpdate.maxUnavailable";
    let mut causes = validate::int_or_percent(value, field);
    let zero = match value {
        Value::Number(number) => number.as_i64() == Some(0),
        Value::String(text) => validate::percent(text) == Some(0),
        _ => false,
    };
    if zero {
        causes.push(Cause::invalid(field, value, "cannot be 0"));
    }
    causes
}

#[cfg(test)]
mod tests {
    use super::*;

    fn web() -> Value {
        let mut sts = json!({
            "metadata": {"name": "web"},
            "spec": {
                "serviceName": "nginx",
                "selector": {"matchLabels": {"app": "nginx"}},
                "template": {"metadata": {"labels": {"app": "nginx"}},
                    "spec": {"containers": [{"name": "nginx", "image": "nginx-slim:0.8"}]}},
                "volumeClaimTemplates": [{"metadata": {"name": "www"}, "spec": {
                    "accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}]
            }
        });
        StatefulSetStrategy.defaults(&mut sts);
        sts
    }

    #[test]
    fn statefulset_defaults_match_upstream() {
        let mut sts = json!({"spec": {"serviceName": "nginx", "selector": {},
            "template": {"spec": {"containers": [{"name": "nginx", "image": "nginx-slim:0.8",
                "ports": [{"containerPort": 80}]}]}},
            "volumeClaimTemplates": [{"metadata": {"name": "www"}, "spec": {"accessModes": ["ReadWriteOnce"]}}]}});
        StatefulSetStrategy.defaults(&mut sts);
        let spec = &sts["spec"];
        assert_eq!(spec["replicas"], 1);
        assert_eq!(spec["podManagementPolicy"], "OrderedReady");
        assert_eq!(
            spec["updateStrategy"],
            json!({"type": "RollingUpdate", "rollingUpdate": {"partition": 0}})
        );
        assert_eq!(
            spec["persistentVolumeClaimRetentionPolicy"]["whenScaled"],
            "Retain"
        );
        let container = &spec["template"]["spec"]["containers"][0];
        assert_eq!(container["imagePullPolicy"], "IfNotPresent");
        assert_eq!(container["ports"][0]["protocol"], "TCP");
        assert_eq!(
            spec["volumeClaimTemplates"][0]["kind"],
            "PersistentVolumeClaim"
        );
        assert!(spec["template"]["spec"].get("serviceAccountName").is_none());
    }

    #[test]
    fn explicit_rolling_update_without_parameters_gets_no_partition() {
        let mut sts = json!({"spec": {"updateStrategy": {"type": "RollingUpdate"}}});
        StatefulSetStrategy.defaults(&mut sts);
        assert_eq!(
            sts["spec"]["updateStrategy"],
            json!({"type": "RollingUpdate"})
        );
    }

    #[test]
    fn a_new_statefulset_answers_the_status_counters_go_always_writes() {
        let mut sts = web();
        StatefulSetStrategy.defaults(&mut sts);
        assert_eq!(
            sts["status"],
            json!({"replicas": 0, "availableReplicas": 0})
        );
        let mut running = web();
        running["status"] = json!({"replicas": 3, "readyReplicas": 3});
        StatefulSetStrategy.defaults(&mut running);
        assert_eq!(
            running["status"],
            json!({"replicas": 3, "readyReplicas": 3, "availableReplicas": 0})
        );
    }

    #[test]
    fn defaults_leave_a_strategy_of_the_wrong_shape_alone() {
        let mut sts = json!({"spec": {"updateStrategy": 5}});
        StatefulSetStrategy.defaults(&mut sts);
        assert_eq!(sts["spec"]["updateStrategy"], 5);
        assert!(!validate::create(&RESOURCE, &sts).is_empty());
    }

    #[test]
    fn the_tutorial_statefulset_is_valid() {
        assert_eq!(validate::create(&RESOURCE, &web()), vec![]);
    }

    #[test]
    fn selector_must_match_template() {
        let mut sts = web();
        sts["spec"]["template"]["metadata"]["labels"] = json!({"app": "other"});
        let causes = validate::create(&RESOURCE, &sts);
        assert_eq!(causes.len(), 1);
        assert_eq!(causes[0].field, "spec.template.metadata.labels");
    }

    #[test]
    fn immutable_fields_are_forbidden_with_upstreams_message() {
        let old = web();
        let mut new = web();
        new["spec"]["serviceName"] = json!("other");
        let causes = validate::update(&RESOURCE, &old, &new);
        assert_eq!(causes[0].field, "spec");
        assert!(
            causes[0]
                .message
                .starts_with("Forbidden: updates to statefulset spec")
        );
        let mut scaled = web();
        scaled["spec"]["replicas"] = json!(5);
        assert_eq!(validate::update(&RESOURCE, &old, &scaled), vec![]);
    }

    #[test]
    fn max_unavailable_must_be_positive_and_at_most_all() {
        for (value, ok) in [
            (json!(1), true),
            (json!("50%"), true),
            (json!(0), false),
            (json!("0%"), false),
            (json!("150%"), false),
            (json!("x"), false),
        ] {
            let mut sts = web();
            sts["spec"]["updateStrategy"]["rollingUpdate"]["maxUnavailable"] = value.clone();
            assert_eq!(validate::create(&RESOURCE, &sts).is_empty(), ok, "{value}");
        }
    }
}
