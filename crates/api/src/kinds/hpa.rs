//! HorizontalPodAutoscalers (autoscaling/v2), served so that `kubectl autoscale` and `kubectl
//! get hpa` get a clear answer, and refused on create: petset serves no metrics API
//! (`metrics.k8s.io`) yet, so an autoscaler could never act. Upstream stores one and its
//! status says `FailedGetResourceMetric` for ever; a refusal up front tells the user at once.

use jiff::Timestamp;
use serde_json::{Value, json};

use crate::error::Cause;
use crate::json::text;
use crate::kinds::Strategy;
use crate::proto::{Field, Kind, OBJECT_META, f};
use crate::resources::{ResourceType, entry};
use crate::shape::round_trip;
use crate::table::{AGE, Column, NAME, Printing, col};

pub type Typed = k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;

/// Why no autoscaler is created, as the 422's cause says it.
pub const NO_METRICS: &str = "petset serves no metrics API (metrics.k8s.io) yet, so a \
    HorizontalPodAutoscaler could never scale its target; set the replicas with `kubectl scale`";

pub const RESOURCE: ResourceType = ResourceType {
    short_names: &["hpa"],
    categories: &["all"],
    printing: Printing {
        columns: COLUMNS,
        cells,
    },
    strategy: &AutoscalerStrategy,
    // kubectl autoscale sends protobuf; the refusal needs only what it targets.
    protobuf: Some(AUTOSCALER),
    version: "v2",
    ..entry(
        "autoscaling",
        "HorizontalPodAutoscaler",
        "horizontalpodautoscalers",
        "horizontalpodautoscaler",
        true,
        round_trip::<Typed>,
    )
};

/// The part of upstream's `generated.proto` a refusal reads: the target and the bounds.
/// autoscaling/v1 numbers these fields alike; the targets (v2's `metrics`, v1's
/// `targetCPUUtilizationPercentage`, both field 4) and v2's `behavior` are known and not read.
pub(crate) const AUTOSCALER: &[Field] = &[
    f(1, "metadata", Kind::Message(OBJECT_META)),
    f(
        2,
        "spec",
        Kind::Message(&[
            f(
                1,
                "scaleTargetRef",
                Kind::Message(&[
                    f(1, "kind", Kind::String),
                    f(2, "name", Kind::String),
                    f(3, "apiVersion", Kind::String),
                ]),
            ),
            f(2, "minReplicas", Kind::OptionalInt),
            f(3, "maxReplicas", Kind::Int),
            f(4, "targets", Kind::Ignored),
            f(5, "behavior", Kind::Ignored),
        ]),
    ),
];

pub(crate) const COLUMNS: &[Column] = &[
    NAME,
    col("Reference", "string", 0),
    col("Targets", "string", 0),
    col("MinPods", "string", 0),
    col("MaxPods", "string", 0),
    col("Replicas", "string", 0),
    AGE,
];

pub(crate) fn cells(hpa: &Value, name: Value, age: Value, _: Timestamp) -> Vec<Value> {
    let reference = format!(
        "{}/{}",
        text(hpa, "/spec/scaleTargetRef/kind"),
        text(hpa, "/spec/scaleTargetRef/name")
    );
    let number = |pointer: &str| hpa.pointer(pointer).and_then(Value::as_i64);
    vec![
        name,
        json!(reference),
        json!("<unknown>"),
        json!(number("/spec/minReplicas").unwrap_or(1).to_string()),
        json!(number("/spec/maxReplicas").unwrap_or(0).to_string()),
        json!(number("/status/currentReplicas").unwrap_or(0).to_string()),
        age,
    ]
}

pub struct AutoscalerStrategy;

impl Strategy for AutoscalerStrategy {
    fn tracks_generation(&self) -> bool {
        true
    }

    fn validate(&self, _hpa: &Value) -> Vec<Cause> {
        vec![Cause::forbidden("spec", NO_METRICS)]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_autoscaler_is_refused_with_the_reason() {
        let hpa = json!({"spec": {"scaleTargetRef": {"kind": "StatefulSet", "name": "web"},
            "minReplicas": 1, "maxReplicas": 3}});
        let causes = AutoscalerStrategy.validate(&hpa);
        assert_eq!(causes.len(), 1);
        assert_eq!(causes[0].field, "spec");
        assert!(causes[0].message.contains("metrics.k8s.io"), "{causes:?}");
    }

    #[test]
    fn the_row_names_the_target() {
        let hpa = json!({"spec": {"scaleTargetRef": {"kind": "StatefulSet", "name": "web"},
            "maxReplicas": 3}});
        let row = cells(&hpa, json!("web"), json!("1s"), Timestamp::now());
        assert_eq!(row[1], "StatefulSet/web");
        assert_eq!(row[3], "1");
        assert_eq!(row[4], "3");
    }
}
