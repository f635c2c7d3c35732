//! Events (core/v1), as recorders write them. They are named by their recorders and may still
//! be written in a namespace being deleted (NamespaceLifecycle lets them through).

use jiff::Timestamp;
use serde_json::{Value, json};

use crate::json::text;
use crate::kinds::{NameRule, Strategy};
use crate::resources::{ResourceType, entry};
use crate::shape::round_trip;
use crate::table::{Column, Printing, col};
use crate::{time, validate};

pub type Typed = k8s_openapi::api::core::v1::Event;

pub const RESOURCE: ResourceType = ResourceType {
    short_names: &["ev"],
    printing: Printing {
        columns: COLUMNS,
        cells: |event, _, _, now| event_cells(event, now),
    },
    strategy: &EventStrategy,
    ..entry("", "Event", "events", "event", true, round_trip::<Typed>)
};

const COLUMNS: &[Column] = &[
    col("Last Seen", "string", 0),
    col("Type", "string", 0),
    col("Reason", "string", 0),
    col("Object", "string", 0),
    col("Subobject", "string", 1),
    col("Source", "string", 1),
    col("Message", "string", 0),
    col("First Seen", "string", 1),
    col("Count", "string", 1),
    col("Name", "string", 1),
];

pub struct EventStrategy;

impl Strategy for EventStrategy {
    fn name_rule(&self) -> NameRule {
        validate::any_name
    }

    fn created_in_terminating_namespace(&self) -> bool {
        true
    }

    fn selectable_field(&self, path: &str) -> bool {
        path.starts_with("involvedObject.")
            || matches!(path, "reason" | "reportingComponent" | "source" | "type")
    }
}

fn event_cells(event: &Value, now: Timestamp) -> Vec<Value> {
    let first = [
        "/firstTimestamp",
        "/eventTime",
        "/metadata/creationTimestamp",
    ]
    .iter()
    .find_map(|p| event.pointer(p).and_then(Value::as_str));
    let last = ["/lastTimestamp", "/series/lastObservedTime", "/eventTime"]
        .iter()
        .find_map(|p| event.pointer(p).and_then(Value::as_str))
        .or(first);
    let count_cell = event.get("count").and_then(Value::as_i64).unwrap_or(1);
    let object = format!(
        "{}/{}",
        text(event, "/involvedObject/kind").to_lowercase(),
        text(event, "/involvedObject/name")
    );
    let source = if !text(event, "/source/component").is_empty() {
        let host = text(event, "/source/host");
        if host.is_empty() {
            text(event, "/source/component").to_string()
        } else {
            format!("{}, {host}", text(event, "/source/component"))
        }
    } else {
        text(event, "/reportingComponent").to_string()
    };
    let last_seen = if count_cell > 1 {
        format!(
            "{} (x{count_cell} over {})",
            time::age(last, now),
            time::age(first, now)
        )
    } else {
        time::age(last, now)
    };
    vec![
        json!(last_seen),
        json!(text(event, "/type")),
        json!(text(event, "/reason")),
        json!(object),
        json!(text(event, "/involvedObject/fieldPath")),
        json!(source),
        json!(text(event, "/message").trim()),
        json!(time::age(first, now)),
        json!(count_cell),
        json!(text(event, "/metadata/name")),
    ]
}
