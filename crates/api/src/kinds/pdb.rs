//! PodDisruptionBudgets (policy/v1): upstream's
//! `pkg/registry/policy/poddisruptionbudget/strategy.go`, the spec rules of
//! `pkg/apis/policy/validation` and the printer's columns. The status is the disruption
//! controller's (`crates/controllers/src/pdb.rs`), and `pods/NAME/eviction`
//! (`crates/apiserver/src/eviction.rs`) spends it; both compute with `crate::disruption`.
//!
//! Added the catalogue way, to show it is enough: this file, its `pub mod` line in
//! `kinds/mod.rs` and its name in `served_kinds!` (and the e2e test in
//! `crates/petset/tests/e2e/catalogue.rs`). Discovery, `api-resources`, `explain`, tables,
//! shape checks and the registry read the entry; no other file names the kind.

use jiff::Timestamp;
use serde_json::{Value, json};

use crate::error::Cause;
use crate::json::count;
use crate::kinds::{Strategy, set_status};
use crate::proto::{CONDITION, Field, Kind, LABEL_SELECTOR, OBJECT_META, f, many};
use crate::resources::{ResourceType, entry, status};
use crate::selector::LabelSelector;
use crate::shape::round_trip;
use crate::table::{AGE, Column, NAME, Printing, col};
use crate::validate;

pub type Typed = k8s_openapi::api::policy::v1::PodDisruptionBudget;

pub const RESOURCE: ResourceType = ResourceType {
    short_names: &["pdb"],
    subresources: &[status("policy", "v1", "PodDisruptionBudget")],
    printing: Printing {
        columns: COLUMNS,
        cells,
    },
    strategy: &BudgetStrategy,
    protobuf: Some(POD_DISRUPTION_BUDGET),
    ..entry(
        "policy",
        "PodDisruptionBudget",
        "poddisruptionbudgets",
        "poddisruptionbudget",
        true,
        round_trip::<Typed>,
    )
};

/// The protobuf layout of a PodDisruptionBudget. The spec's fields are Go pointers; the
/// status's counts are not (a zero count is left out, and the typed round trip restores it).
const POD_DISRUPTION_BUDGET: &[Field] = &[
    f(1, "metadata", Kind::Message(OBJECT_META)),
    f(
        2,
        "spec",
        Kind::Message(&[
            f(1, "minAvailable", Kind::IntOrString),
            f(2, "selector", Kind::Message(LABEL_SELECTOR)),
            f(3, "maxUnavailable", Kind::IntOrString),
            f(4, "unhealthyPodEvictionPolicy", Kind::OptionalString),
        ]),
    ),
    f(
        3,
        "status",
        Kind::Message(&[
            f(1, "observedGeneration", Kind::Int),
            f(2, "disruptedPods", Kind::TimeMap),
            f(3, "disruptionsAllowed", Kind::Int),
            f(4, "currentHealthy", Kind::Int),
            f(5, "desiredHealthy", Kind::Int),
            f(6, "expectedPods", Kind::Int),
            many(7, "conditions", Kind::Message(CONDITION)),
        ]),
    ),
];

const COLUMNS: &[Column] = &[
    NAME,
    Column {
        description: "The minimum number of pods that must be available.",
        ..col("Min Available", "string", 0)
    },
    Column {
        description: "The maximum number of pods that may be unavailable.",
        ..col("Max Unavailable", "string", 0)
    },
    Column {
        description: "Calculated number of pods that may be disrupted at this time.",
        ..col("Allowed Disruptions", "integer", 0)
    },
    AGE,
];

/// An int-or-string as upstream prints it; `N/A` when unset.
fn amount(budget: &Value, pointer: &str) -> String {
    match budget.pointer(pointer) {
        Some(Value::String(text)) => text.clone(),
        Some(Value::Number(number)) => number.to_string(),
        _ => "N/A".to_string(),
    }
}

fn cells(budget: &Value, name: Value, age: Value, _: Timestamp) -> Vec<Value> {
    vec![
        name,
        json!(amount(budget, "/spec/minAvailable")),
        json!(amount(budget, "/spec/maxUnavailable")),
        json!(count(budget, "/status/disruptionsAllowed")),
        age,
    ]
}

pub struct BudgetStrategy;

impl Strategy for BudgetStrategy {
    fn tracks_generation(&self) -> bool {
        true
    }

    /// A new budget's status is upstream's zero status (its counts are not optional).
    fn prepare_for_create(&self, budget: &mut Value) {
        set_status(
            budget,
            json!({"disruptionsAllowed": 0, "currentHealthy": 0,
                    "desiredHealthy": 0, "expectedPods": 0}),
        );
    }

    fn validate(&self, budget: &Value) -> Vec<Cause> {
        let empty = json!({});
        let spec = budget.get("spec").unwrap_or(&empty);
        let mut causes = Vec::new();
        let min = spec.get("minAvailable").filter(|v| !v.is_null());
        let max = spec.get("maxUnavailable").filter(|v| !v.is_null());
        if min.is_some() && max.is_some() {
            causes.push(Cause::invalid(
                "spec",
                spec,
                "minAvailable and maxUnavailable cannot be both set",
            ));
        }
        if let Some(min) = min {
            causes.extend(validate::int_or_percent(min, "spec.minAvailable"));
        }
        if let Some(max) = max {
            causes.extend(validate::int_or_percent(max, "spec.maxUnavailable"));
        }
        if let Some(selector) = spec.get("selector").filter(|s| !s.is_null()) {
            causes.extend(validate::labels(
                selector.get("matchLabels"),
                "spec.selector.matchLabels",
            ));
            if let Err(error) = LabelSelector::from_structured(selector) {
                causes.push(Cause::invalid(
                    "spec.selector",
                    selector,
                    &error.to_string(),
                ));
            }
        }
        if let Some(policy) = spec
            .get("unhealthyPodEvictionPolicy")
            .filter(|p| !p.is_null())
            && !matches!(policy.as_str(), Some("AlwaysAllow" | "IfHealthyBudget"))
        {
            causes.push(Cause::not_supported(
                "spec.unhealthyPodEvictionPolicy",
                policy,
                &["AlwaysAllow", "IfHealthyBudget"],
            ));
        }
        causes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn budget(spec: Value) -> Value {
        json!({"metadata": {"name": "web"}, "spec": spec})
    }

    #[test]
    fn one_of_min_available_and_max_unavailable_as_a_count_or_percentage() {
        for (spec, ok) in [
            (json!({"minAvailable": 2}), true),
            (json!({"maxUnavailable": "25%"}), true),
            (json!({}), true),
            (json!({"minAvailable": 1, "maxUnavailable": 1}), false),
            (json!({"minAvailable": -1}), false),
            (json!({"maxUnavailable": "120%"}), false),
            (json!({"minAvailable": "half"}), false),
            (json!({"unhealthyPodEvictionPolicy": "Sometimes"}), false),
        ] {
            let causes = validate::create(&RESOURCE, &budget(spec.clone()));
            assert_eq!(causes.is_empty(), ok, "{spec}: {causes:?}");
        }
    }

    #[test]
    fn both_set_is_refused_on_spec_with_upstreams_message() {
        let causes =
            BudgetStrategy.validate(&budget(json!({"minAvailable": 1, "maxUnavailable": 1})));
        assert_eq!(causes[0].field, "spec");
        assert!(
            causes[0]
                .message
                .ends_with("minAvailable and maxUnavailable cannot be both set"),
            "{}",
            causes[0].message
        );
    }

    #[test]
    fn the_row_prints_unset_amounts_as_not_applicable() {
        let row = crate::table::cells(
            &RESOURCE,
            &json!({"metadata": {"name": "web"}, "spec": {"minAvailable": 2},
                "status": {"disruptionsAllowed": 1}}),
            Timestamp::now(),
        );
        assert_eq!(row[1], "2");
        assert_eq!(row[2], "N/A");
        assert_eq!(row[3], 1);
    }
}
