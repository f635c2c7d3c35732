//! DaemonSets (apps/v1): upstream's `pkg/registry/apps/daemonset/strategy.go`, the DaemonSet
//! parts of the v1 defaulters, of `pkg/apis/apps/validation` and of the printers.

use jiff::Timestamp;
use serde_json::{Value, json};

use crate::defaults::{self, set_default};
use crate::error::Cause;
use crate::json::{count, items};
use crate::kinds::replicaset::{WORKLOAD_CONDITION, counts_not_negative};
use crate::kinds::{Strategy, set_status};
use crate::proto::pod::POD_TEMPLATE_SPEC;
use crate::proto::{Field, Kind, LABEL_SELECTOR, OBJECT_META, f, many};
use crate::resources::{ResourceType, entry, status};
use crate::selector::LabelSelector;
use crate::shape::round_trip;
use crate::table::{AGE, Column, NAME, Printing, col, containers_and_images};
use crate::validate;

pub type Typed = k8s_openapi::api::apps::v1::DaemonSet;

pub const RESOURCE: ResourceType = ResourceType {
    short_names: &["ds"],
    categories: &["all"],
    protobuf: Some(DAEMON_SET),
    subresources: &[status("apps", "v1", "DaemonSet")],
    printing: Printing {
        columns: COLUMNS,
        cells,
    },
    strategy: &DaemonSetStrategy,
    ..entry(
        "apps",
        "DaemonSet",
        "daemonsets",
        "daemonset",
        true,
        round_trip::<Typed>,
    )
};

/// The protobuf layout of an apps/v1 DaemonSet.
const DAEMON_SET: &[Field] = &[
    f(1, "metadata", Kind::Message(OBJECT_META)),
    f(
        2,
        "spec",
        Kind::Message(&[
            f(1, "selector", Kind::Message(LABEL_SELECTOR)),
            f(2, "template", Kind::Message(POD_TEMPLATE_SPEC)),
            f(
                3,
                "updateStrategy",
                Kind::Message(&[
                    f(1, "type", Kind::String),
                    f(
                        2,
                        "rollingUpdate",
                        Kind::Message(&[
                            f(1, "maxUnavailable", Kind::IntOrString),
                            f(2, "maxSurge", Kind::IntOrString),
                        ]),
                    ),
                ]),
            ),
            f(4, "minReadySeconds", Kind::Int),
            f(6, "revisionHistoryLimit", Kind::OptionalInt),
        ]),
    ),
    f(3, "status", Kind::Message(DAEMON_SET_STATUS)),
];

const DAEMON_SET_STATUS: &[Field] = &[
    f(1, "currentNumberScheduled", Kind::Int),
    f(2, "numberMisscheduled", Kind::Int),
    f(3, "desiredNumberScheduled", Kind::Int),
    f(4, "numberReady", Kind::Int),
    f(5, "observedGeneration", Kind::Int),
    f(6, "updatedNumberScheduled", Kind::Int),
    f(7, "numberAvailable", Kind::Int),
    f(8, "numberUnavailable", Kind::Int),
    f(9, "collisionCount", Kind::OptionalInt),
    many(10, "conditions", Kind::Message(WORKLOAD_CONDITION)),
];

const COLUMNS: &[Column] = &[
    NAME,
    col("Desired", "integer", 0),
    col("Current", "integer", 0),
    col("Ready", "integer", 0),
    col("Up-to-date", "integer", 0),
    col("Available", "integer", 0),
    col("Node Selector", "string", 0),
    AGE,
    col("Containers", "string", 1),
    col("Images", "string", 1),
    col("Selector", "string", 1),
];

/// `labels.FormatLabels`: `k=v,…` in key order, `<none>` when empty.
fn node_selector(set: &Value) -> String {
    let Some(map) = set
        .pointer("/spec/template/spec/nodeSelector")
        .and_then(Value::as_object)
        .filter(|m| !m.is_empty())
    else {
        return "<none>".to_string();
    };
    let mut pairs: Vec<String> = map
        .iter()
        .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
        .collect();
    pairs.sort();
    pairs.join(",")
}

fn cells(set: &Value, name: Value, age: Value, _: Timestamp) -> Vec<Value> {
    let (containers, images) = containers_and_images(items(set, "/spec/template/spec/containers"));
    let selector = set
        .pointer("/spec/selector")
        .and_then(|s| LabelSelector::from_structured(s).ok())
        .map(|s| s.to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "<none>".to_string());
    vec![
        name,
        json!(count(set, "/status/desiredNumberScheduled")),
        json!(count(set, "/status/currentNumberScheduled")),
        json!(count(set, "/status/numberReady")),
        json!(count(set, "/status/updatedNumberScheduled")),
        json!(count(set, "/status/numberAvailable")),
        json!(node_selector(set)),
        age,
        json!(containers),
        json!(images),
        json!(selector),
    ]
}

pub struct DaemonSetStrategy;

impl Strategy for DaemonSetStrategy {
    fn tracks_generation(&self) -> bool {
        true
    }

    fn prepare_for_create(&self, set: &mut Value) {
        set_status(
            set,
            json!({"currentNumberScheduled": 0, "numberMisscheduled": 0,
                "desiredNumberScheduled": 0, "numberReady": 0}),
        );
    }

    fn defaults(&self, set: &mut Value) {
        let Some(spec) = set.get_mut("spec") else {
            return;
        };
        let untyped = spec
            .pointer("/updateStrategy/type")
            .and_then(Value::as_str)
            .is_none_or(str::is_empty);
        if untyped {
            set_default(spec, "updateStrategy", json!({}));
            if let Some(map) = spec
                .get_mut("updateStrategy")
                .and_then(Value::as_object_mut)
            {
                map.insert("type".into(), json!("RollingUpdate"));
            }
        }
        if spec.pointer("/updateStrategy/type").and_then(Value::as_str) == Some("RollingUpdate")
            && let Some(strategy) = spec.get_mut("updateStrategy")
        {
            set_default(strategy, "rollingUpdate", json!({}));
            if let Some(rolling) = strategy.get_mut("rollingUpdate")
                && rolling.is_object()
            {
                set_default(rolling, "maxUnavailable", json!(1));
                set_default(rolling, "maxSurge", json!(0));
            }
        }
        set_default(spec, "revisionHistoryLimit", json!(10));
        if let Some(template_spec) = spec.pointer_mut("/template/spec") {
            defaults::pod_spec(template_spec);
        }
    }

    fn validate(&self, set: &Value) -> Vec<Cause> {
        validate_daemonset(set)
    }

    fn validate_update(&self, old: &Value, new: &Value) -> Vec<Cause> {
        let mut causes = validate_daemonset(new);
        let selector = |set: &Value| set.pointer("/spec/selector").cloned();
        if selector(old) != selector(new) {
            causes.push(Cause::invalid(
                "spec.selector",
                &selector(new).unwrap_or(Value::Null),
                "field is immutable",
            ));
        }
        causes
    }
}

/// The value of an int-or-percent, as upstream's `getIntOrPercentValue` (0 when unreadable).
fn amount(value: Option<&Value>) -> i64 {
    match value {
        Some(Value::Number(n)) => n.as_i64().unwrap_or(0),
        Some(Value::String(s)) => validate::percent(s)
            .and_then(|p| i64::try_from(p).ok())
            .unwrap_or(0),
        _ => 0,
    }
}

fn validate_daemonset(set: &Value) -> Vec<Cause> {
    let empty = json!({});
    let spec = set.get("spec").unwrap_or(&empty);
    let mut causes = validate::selector_of_template(spec, "daemonset");
    causes.extend(validate::labels(
        spec.pointer("/template/metadata/labels"),
        "spec.template.metadata.labels",
    ));
    causes.extend(validate::always_restarting_template(spec, "DaemonSet"));
    counts_not_negative(
        spec,
        &["minReadySeconds", "revisionHistoryLimit"],
        &mut causes,
    );
    let strategy = spec.get("updateStrategy").unwrap_or(&empty);
    match strategy.get("type").and_then(Value::as_str) {
        Some("OnDelete") => {}
        Some("RollingUpdate") => {
            let field = "spec.updateStrategy.rollingUpdate";
            match strategy.get("rollingUpdate").filter(|r| !r.is_null()) {
                None => causes.push(Cause::required(field, "")),
                Some(rolling) => {
                    let unavailable = rolling.get("maxUnavailable").filter(|v| !v.is_null());
                    let surge = rolling.get("maxSurge").filter(|v| !v.is_null());
                    for (value, name) in [(unavailable, "maxUnavailable"), (surge, "maxSurge")] {
                        if let Some(value) = value {
                            causes.extend(validate::int_or_percent(
                                value,
                                &format!("{field}.{name}"),
                            ));
                        }
                    }
                    match (amount(unavailable) != 0, amount(surge) != 0) {
                        (true, true) => causes.push(Cause::invalid(
                            format!("{field}.maxSurge"),
                            surge.unwrap_or(&Value::Null),
                            "may not be set when maxUnavailable is non-zero",
                        )),
                        (false, false) => causes.push(Cause::required(
                            format!("{field}.maxUnavailable"),
                            "cannot be 0 when maxSurge is 0",
                        )),
                        _ => {}
                    }
                }
            }
        }
        other => causes.push(Cause::not_supported(
            "spec.updateStrategy.type",
            &json!(other.unwrap_or_default()),
            &["OnDelete", "RollingUpdate"],
        )),
    }
    causes
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(spec_extra: Value) -> Value {
        let mut set = json!({"apiVersion": "apps/v1", "kind": "DaemonSet",
            "metadata": {"name": "agent", "namespace": "default"},
            "spec": {"selector": {"matchLabels": {"app": "agent"}},
                "template": {"metadata": {"labels": {"app": "agent"}},
                    "spec": {"containers": [{"name": "c", "image": "busybox"}]}}}});
        if let Some(extra) = spec_extra.as_object() {
            for (k, v) in extra {
                set["spec"][k] = v.clone();
            }
        }
        set
    }

    #[test]
    fn defaults_are_a_rolling_update_of_one_unavailable_and_no_surge() {
        let mut ds = set(json!({}));
        DaemonSetStrategy.defaults(&mut ds);
        assert_eq!(
            ds["spec"]["updateStrategy"],
            json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 0}})
        );
        assert_eq!(ds["spec"]["revisionHistoryLimit"], 10);
        assert_eq!(ds["spec"]["template"]["spec"]["restartPolicy"], "Always");
        assert!(validate::create(&RESOURCE, &ds).is_empty());
        let mut on_delete = set(json!({"updateStrategy": {"type": "OnDelete"}}));
        DaemonSetStrategy.defaults(&mut on_delete);
        assert_eq!(
            on_delete["spec"]["updateStrategy"],
            json!({"type": "OnDelete"})
        );
    }

    #[test]
    fn validation_speaks_as_upstream() {
        let messages = |extra: Value| {
            let mut ds = set(extra);
            DaemonSetStrategy.defaults(&mut ds);
            validate::create(&RESOURCE, &ds)
                .into_iter()
                .map(|c| format!("{}: {}", c.field, c.message))
                .collect::<Vec<_>>()
        };
        assert_eq!(
            messages(json!({"updateStrategy": {"type": "RollingUpdate",
                "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 0}}})),
            [
                "spec.updateStrategy.rollingUpdate.maxUnavailable: Required value: cannot be 0 when maxSurge is 0"
            ]
        );
        assert_eq!(
            messages(json!({"updateStrategy": {"type": "RollingUpdate",
                "rollingUpdate": {"maxUnavailable": 1, "maxSurge": "10%"}}})),
            [
                "spec.updateStrategy.rollingUpdate.maxSurge: Invalid value: \"10%\": may not be set when maxUnavailable is non-zero"
            ]
        );
        assert_eq!(
            messages(json!({"selector": {"matchLabels": {"app": "other"}}})),
            [
                "spec.template.metadata.labels: Invalid value: {\"app\":\"agent\"}: `selector` does not match template `labels`"
            ]
        );
        assert_eq!(
            messages(json!({"selector": {}})),
            ["spec.selector: Invalid value: {}: empty selector is invalid for daemonset"]
        );
    }

    #[test]
    fn the_selector_is_immutable() {
        let mut old = set(json!({}));
        DaemonSetStrategy.defaults(&mut old);
        let mut new = old.clone();
        new["spec"]["selector"]["matchLabels"]["tier"] = json!("x");
        new["spec"]["template"]["metadata"]["labels"]["tier"] = json!("x");
        let causes = DaemonSetStrategy.validate_update(&old, &new);
        assert!(
            causes
                .iter()
                .any(|c| c.field == "spec.selector" && c.message.ends_with("field is immutable")),
            "{causes:?}"
        );
    }

    #[test]
    fn the_row_has_upstreams_columns() {
        let mut ds = set(json!({}));
        ds["spec"]["template"]["spec"]["nodeSelector"] = json!({"zone": "a", "disk": "ssd"});
        ds["status"] = json!({"desiredNumberScheduled": 3, "currentNumberScheduled": 3,
            "numberReady": 2, "updatedNumberScheduled": 1, "numberAvailable": 2});
        let row = crate::table::cells(&RESOURCE, &ds, Timestamp::now());
        assert_eq!(
            row[1..6],
            [json!(3), json!(3), json!(2), json!(1), json!(2)]
        );
        assert_eq!(row[6], "disk=ssd,zone=a");
        assert_eq!(row[10], "app=agent");
    }
}
