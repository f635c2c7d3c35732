//! ControllerRevisions (apps/v1): immutable snapshots a controller keeps of its template.

use jiff::Timestamp;
use serde_json::{Value, json};

use crate::error::Cause;
use crate::json::{count, items, text};
use crate::kinds::Strategy;
use crate::proto::{Field, Kind, OBJECT_META, f};
use crate::resources::{ResourceType, entry};
use crate::shape::round_trip;
use crate::table::{AGE, Column, NAME, Printing, col};

pub type Typed = k8s_openapi::api::apps::v1::ControllerRevision;

pub const RESOURCE: ResourceType = ResourceType {
    protobuf: Some(CONTROLLER_REVISION),
    printing: Printing {
        columns: &[
            NAME,
            col("Controller", "string", 0),
            col("Revision", "integer", 0),
            AGE,
        ] as &[Column],
        cells,
    },
    strategy: &RevisionStrategy,
    ..entry(
        "apps",
        "ControllerRevision",
        "controllerrevisions",
        "controllerrevision",
        true,
        round_trip::<Typed>,
    )
};

/// The protobuf layout of an apps/v1 ControllerRevision: its `data` is a runtime.RawExtension,
/// JSON bytes on the wire.
const CONTROLLER_REVISION: &[Field] = &[
    f(1, "metadata", Kind::Message(OBJECT_META)),
    f(2, "data", Kind::RawJson),
    f(3, "revision", Kind::Int),
];

fn cells(revision: &Value, name: Value, age: Value, _: Timestamp) -> Vec<Value> {
    let controller = items(revision, "/metadata/ownerReferences")
        .iter()
        .find(|o| o.get("controller").and_then(Value::as_bool) == Some(true))
        .map(|owner| {
            let api_version = text(owner, "/apiVersion");
            let group = api_version
                .split_once('/')
                .map(|(g, _)| g)
                .unwrap_or_default();
            let kind = text(owner, "/kind").to_lowercase();
            let kind = if group.is_empty() {
                kind
            } else {
                format!("{kind}.{group}")
            };
            format!("{kind}/{}", text(owner, "/name"))
        })
        .unwrap_or_else(|| "<none>".to_string());
    vec![
        name,
        json!(controller),
        json!(count(revision, "/revision")),
        age,
    ]
}

pub struct RevisionStrategy;

impl Strategy for RevisionStrategy {
    fn validate(&self, revision: &Value) -> Vec<Cause> {
        if revision.get("data").is_none_or(Value::is_null) {
            vec![Cause::required("data", "data is mandatory")]
        } else {
            Vec::new()
        }
    }
}
