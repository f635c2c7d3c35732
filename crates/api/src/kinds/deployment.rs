//! Deployments (apps/v1): upstream's `pkg/registry/apps/deployment/strategy.go` and the
//! Deployment parts of the defaulters, validation and printers.

use jiff::Timestamp;
use serde_json::{Value, json};

use crate::defaults::{default_status, set_default};
use crate::error::Cause;
use crate::json::{count, items};
use crate::kinds::Strategy;
use crate::kinds::replicaset::{
    SCALE, counts_not_negative, default_template, selector_immutable, selector_text,
    structured_selector_rules,
};
use crate::proto::pod::POD_TEMPLATE_SPEC;
use crate::proto::{Field, Kind, LABEL_SELECTOR, OBJECT_META, f, many};
use crate::resources::{ResourceType, entry, status};
use crate::shape::round_trip;
use crate::table::{AGE, Column, NAME, Printing, col, containers_and_images};
use crate::validate;

pub type Typed = k8s_openapi::api::apps::v1::Deployment;

pub const RESOURCE: ResourceType = ResourceType {
    short_names: &["deploy"],
    categories: &["all"],
    protobuf: Some(DEPLOYMENT),
    subresources: &[SCALE, status("apps", "v1", "Deployment")],
    printing: Printing {
        columns: COLUMNS,
        cells,
    },
    strategy: &DeploymentStrategy,
    ..entry(
        "apps",
        "Deployment",
        "deployments",
        "deployment",
        true,
        round_trip::<Typed>,
    )
};

/// The protobuf layout of an apps/v1 Deployment (`kubectl create deployment` sends protobuf).
const DEPLOYMENT: &[Field] = &[
    f(1, "metadata", Kind::Message(OBJECT_META)),
    f(2, "spec", Kind::Message(DEPLOYMENT_SPEC)),
    f(3, "status", Kind::Message(DEPLOYMENT_STATUS)),
];

const DEPLOYMENT_SPEC: &[Field] = &[
    f(1, "replicas", Kind::OptionalInt),
    f(2, "selector", Kind::Message(LABEL_SELECTOR)),
    f(3, "template", Kind::Message(POD_TEMPLATE_SPEC)),
    f(
        4,
        "strategy",
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
    f(5, "minReadySeconds", Kind::Int),
    f(6, "revisionHistoryLimit", Kind::OptionalInt),
    f(7, "paused", Kind::Bool),
    f(9, "progressDeadlineSeconds", Kind::OptionalInt),
    // Newer upstreams' alpha `podReplacementPolicy` (10) is left out, as the v1.33 schema
    // petset serves has no such field: a value there is refused, not dropped.
];

const DEPLOYMENT_STATUS: &[Field] = &[
    f(1, "observedGeneration", Kind::Int),
    f(2, "replicas", Kind::Int),
    f(3, "updatedReplicas", Kind::Int),
    f(7, "readyReplicas", Kind::Int),
    f(4, "availableReplicas", Kind::Int),
    f(5, "unavailableReplicas", Kind::Int),
    f(9, "terminatingReplicas", Kind::OptionalInt),
    many(
        6,
        "conditions",
        // DeploymentCondition: the workload condition with `lastUpdateTime`, numbered apart.
        Kind::Message(&[
            f(1, "type", Kind::String),
            f(2, "status", Kind::String),
            f(6, "lastUpdateTime", Kind::Time),
            f(7, "lastTransitionTime", Kind::Time),
            f(4, "reason", Kind::String),
            f(5, "message", Kind::String),
        ]),
    ),
    f(8, "collisionCount", Kind::OptionalInt),
];

const COLUMNS: &[Column] = &[
    NAME,
    col("Ready", "string", 0),
    col("Up-to-date", "integer", 0),
    col("Available", "integer", 0),
    AGE,
    col("Containers", "string", 1),
    col("Images", "string", 1),
    col("Selector", "string", 1),
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
        json!(count(object, "/status/updatedReplicas")),
        json!(count(object, "/status/availableReplicas")),
        age,
        json!(containers),
        json!(images),
        json!(selector_text(object.pointer("/spec/selector"))),
    ]
}

pub struct DeploymentStrategy;

impl Strategy for DeploymentStrategy {
    /// A new object's first status, as upstream answers a create: every count of upstream's `DeploymentStatus` is omitted when zero.
    fn prepare_for_create(&self, object: &mut Value) {
        crate::kinds::set_status(object, json!({}));
    }

    fn tracks_generation(&self) -> bool {
        true
    }

    fn defaults(&self, object: &mut Value) {
        // Answered from creation, before the controller writes one, as upstream does.
        default_status(object, json!({}));
        let Some(spec) = object.get_mut("spec") else {
            return;
        };
        set_default(spec, "replicas", json!(1));
        set_default(spec, "strategy", json!({}));
        if let Some(strategy) = spec.get_mut("strategy")
            && strategy.is_object()
        {
            set_default(strategy, "type", json!("RollingUpdate"));
            if strategy.get("type").and_then(Value::as_str) == Some("RollingUpdate") {
                set_default(strategy, "rollingUpdate", json!({}));
                if let Some(rolling) = strategy.get_mut("rollingUpdate")
                    && rolling.is_object()
                {
                    set_default(rolling, "maxUnavailable", json!("25%"));
                    set_default(rolling, "maxSurge", json!("25%"));
                }
            }
        }
        set_default(spec, "revisionHistoryLimit", json!(10));
        set_default(spec, "progressDeadlineSeconds", json!(600));
        default_template(spec);
    }

    fn validate(&self, object: &Value) -> Vec<Cause> {
        validate_deployment(object)
    }

    fn validate_update(&self, old: &Value, new: &Value) -> Vec<Cause> {
        let mut causes = validate_deployment(new);
        causes.extend(selector_immutable(old, new));
        causes
    }
}

fn validate_deployment(object: &Value) -> Vec<Cause> {
    let mut causes = Vec::new();
    let spec = object.get("spec").unwrap_or(&Value::Null);
    counts_not_negative(spec, &["replicas", "minReadySeconds"], &mut causes);
    causes.extend(structured_selector_rules(spec, "deployment"));
    causes.extend(strategy_rules(spec.get("strategy").unwrap_or(&Value::Null)));
    counts_not_negative(spec, &["revisionHistoryLimit"], &mut causes);
    if let Some(deadline) = spec.get("progressDeadlineSeconds").and_then(Value::as_i64) {
        if deadline < 0 {
            counts_not_negative(spec, &["progressDeadlineSeconds"], &mut causes);
        } else if deadline
            <= spec
                .get("minReadySeconds")
                .and_then(Value::as_i64)
                .unwrap_or(0)
        {
            causes.push(Cause::invalid(
                "spec.progressDeadlineSeconds",
                &json!(deadline),
                "must be greater than minReadySeconds",
            ));
        }
    }
    causes
}

/// Upstream's `ValidateDeploymentStrategy` and `ValidateRollingUpdateDeployment`.
fn strategy_rules(strategy: &Value) -> Vec<Cause> {
    let mut causes = Vec::new();
    let rolling = strategy.get("rollingUpdate").filter(|r| !r.is_null());
    match strategy.get("type").and_then(Value::as_str) {
        Some("Recreate") => {
            if rolling.is_some() {
                causes.push(Cause::forbidden(
                    "spec.strategy.rollingUpdate",
                    "may not be specified when strategy `type` is 'Recreate'",
                ));
            }
        }
        Some("RollingUpdate") => {
            let Some(rolling) = rolling else {
                causes.push(Cause::required(
                    "spec.strategy.rollingUpdate",
                    "this should be defaulted and never be nil",
                ));
                return causes;
            };
            let unavailable_field = "spec.strategy.rollingUpdate.maxUnavailable";
            let surge_field = "spec.strategy.rollingUpdate.maxSurge";
            let unavailable = rolling.get("maxUnavailable");
            let surge = rolling.get("maxSurge");
            if let Some(value) = unavailable {
                causes.extend(validate::int_or_percent(value, unavailable_field));
                if let Value::String(text) = value
                    && validate::percent(text).is_some_and(|p| p > 100)
                {
                    causes.push(Cause::invalid(
                        unavailable_field,
                        value,
                        "must not be greater than 100%",
                    ));
                }
            }
            if let Some(value) = surge {
                causes.extend(validate::int_or_percent(value, surge_field));
            }
            if unavailable.is_some_and(is_zero) && surge.is_some_and(is_zero) {
                causes.push(Cause::invalid(
                    unavailable_field,
                    unavailable.unwrap_or(&Value::Null),
                    "may not be 0 when `maxSurge` is 0",
                ));
            }
        }
        None | Some("") => causes.push(Cause::required("spec.strategy.type", "")),
        Some(other) => causes.push(Cause::not_supported(
            "spec.strategy.type",
            &json!(other),
            &["Recreate", "RollingUpdate"],
        )),
    }
    causes
}

fn is_zero(value: &Value) -> bool {
    match value {
        Value::Number(number) => number.as_i64() == Some(0),
        Value::String(text) => validate::percent(text) == Some(0),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nginx() -> Value {
        let mut deployment = json!({
            "metadata": {"name": "nginx-deployment"},
            "spec": {
                "selector": {"matchLabels": {"app": "nginx"}},
                "template": {"metadata": {"labels": {"app": "nginx"}},
                    "spec": {"containers": [{"name": "nginx", "image": "nginx:1.14.2",
                        "ports": [{"containerPort": 80}]}]}}
            }
        });
        DeploymentStrategy.defaults(&mut deployment);
        deployment
    }

    #[test]
    fn defaults_are_upstreams() {
        let deployment = nginx();
        let spec = &deployment["spec"];
        assert_eq!(spec["replicas"], 1);
        assert_eq!(
            spec["strategy"],
            json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"}})
        );
        assert_eq!(spec["revisionHistoryLimit"], 10);
        assert_eq!(spec["progressDeadlineSeconds"], 600);
        assert_eq!(
            spec["template"]["spec"]["containers"][0]["ports"][0]["protocol"],
            "TCP"
        );
        assert_eq!(validate::create(&RESOURCE, &deployment), vec![]);

        let mut recreate = json!({"spec": {"strategy": {"type": "Recreate"}}});
        DeploymentStrategy.defaults(&mut recreate);
        assert_eq!(recreate["spec"]["strategy"], json!({"type": "Recreate"}));
    }

    #[test]
    fn surge_and_unavailable_may_not_both_be_zero() {
        let mut deployment = nginx();
        deployment["spec"]["strategy"]["rollingUpdate"] =
            json!({"maxSurge": 0, "maxUnavailable": "0%"});
        let causes = validate::create(&RESOURCE, &deployment);
        assert_eq!(causes.len(), 1, "{causes:?}");
        assert_eq!(
            causes[0].field,
            "spec.strategy.rollingUpdate.maxUnavailable"
        );
        assert!(
            causes[0]
                .message
                .contains("may not be 0 when `maxSurge` is 0")
        );

        deployment["spec"]["strategy"]["rollingUpdate"] =
            json!({"maxSurge": 1, "maxUnavailable": "110%"});
        let causes = validate::create(&RESOURCE, &deployment);
        assert!(
            causes[0].message.contains("must not be greater than 100%"),
            "{causes:?}"
        );
    }

    #[test]
    fn recreate_takes_no_rolling_parameters_and_types_are_checked() {
        let mut deployment = nginx();
        deployment["spec"]["strategy"]["type"] = json!("Recreate");
        let causes = validate::create(&RESOURCE, &deployment);
        assert_eq!(causes[0].field, "spec.strategy.rollingUpdate");
        deployment["spec"]["strategy"] = json!({"type": "BlueGreen"});
        let causes = validate::create(&RESOURCE, &deployment);
        assert_eq!(causes[0].field, "spec.strategy.type");
    }

    #[test]
    fn the_deadline_must_exceed_min_ready_seconds() {
        let mut deployment = nginx();
        deployment["spec"]["minReadySeconds"] = json!(600);
        let causes = validate::create(&RESOURCE, &deployment);
        assert_eq!(causes[0].field, "spec.progressDeadlineSeconds");
        assert!(
            causes[0]
                .message
                .contains("must be greater than minReadySeconds")
        );
    }

    #[test]
    fn the_selector_is_immutable_but_the_template_is_not() {
        let old = nginx();
        let mut new = nginx();
        new["spec"]["template"]["spec"]["containers"][0]["image"] = json!("nginx:1.16.1");
        new["spec"]["replicas"] = json!(3);
        assert_eq!(validate::update(&RESOURCE, &old, &new), vec![]);
        new["spec"]["selector"] = json!({"matchLabels": {"app": "nginx", "t": "x"}});
        new["spec"]["template"]["metadata"]["labels"]["t"] = json!("x");
        let causes = validate::update(&RESOURCE, &old, &new);
        assert_eq!(causes.len(), 1);
        assert_eq!(causes[0].field, "spec.selector");
    }

    #[test]
    fn cells_show_ready_up_to_date_and_available() {
        let mut deployment = nginx();
        deployment["spec"]["replicas"] = json!(3);
        deployment["status"] =
            json!({"readyReplicas": 2, "updatedReplicas": 3, "availableReplicas": 2});
        let cells = cells(
            &deployment,
            json!("nginx-deployment"),
            json!("5s"),
            Timestamp::now(),
        );
        assert_eq!(cells[1], "2/3");
        assert_eq!(cells[2], 3);
        assert_eq!(cells[3], 2);
        assert_eq!(cells[7], "app=nginx");
    }
}
