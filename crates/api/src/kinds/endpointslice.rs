//! EndpointSlices (discovery.k8s.io/v1), written by the endpoints controller.

use jiff::Timestamp;
use serde_json::{Value, json};

use crate::defaults::{array_mut, set_default};
use crate::json::{items, text};
use crate::kinds::Strategy;
use crate::proto::{Field, Kind, OBJECT_META, OBJECT_REFERENCE, f, many};
use crate::resources::{ResourceType, entry};
use crate::shape::round_trip;
use crate::table::{AGE, Column, NAME, Printing, col, truncated_list};

pub type Typed = k8s_openapi::api::discovery::v1::EndpointSlice;

pub const RESOURCE: ResourceType = ResourceType {
    printing: Printing {
        columns: COLUMNS,
        cells,
    },
    strategy: &EndpointSliceStrategy,
    protobuf: Some(ENDPOINT_SLICE),
    ..entry(
        "discovery.k8s.io",
        "EndpointSlice",
        "endpointslices",
        "endpointslice",
        true,
        round_trip::<Typed>,
    )
};

/// discovery/v1 Endpoint: its conditions are `*bool`s (unknown is not false), and
/// hostname, nodeName and zone are pointers too.
const ENDPOINT: &[Field] = &[
    many(1, "addresses", Kind::String),
    f(
        2,
        "conditions",
        Kind::Message(&[
            f(1, "ready", Kind::OptionalBool),
            f(2, "serving", Kind::OptionalBool),
            f(3, "terminating", Kind::OptionalBool),
        ]),
    ),
    f(3, "hostname", Kind::OptionalString),
    f(4, "targetRef", Kind::Message(OBJECT_REFERENCE)),
    f(5, "deprecatedTopology", Kind::StringMap),
    f(6, "nodeName", Kind::OptionalString),
    f(7, "zone", Kind::OptionalString),
    f(
        8,
        "hints",
        Kind::Message(&[
            many(1, "forZones", Kind::Message(&[f(1, "name", Kind::String)])),
            many(2, "forNodes", Kind::Message(&[f(1, "name", Kind::String)])),
        ]),
    ),
];

/// discovery/v1 EndpointPort: every field a pointer.
const ENDPOINT_PORT: &[Field] = &[
    f(1, "name", Kind::OptionalString),
    f(2, "protocol", Kind::OptionalString),
    f(3, "port", Kind::OptionalInt),
    f(4, "appProtocol", Kind::OptionalString),
];

/// The protobuf layout of an EndpointSlice (no spec: its fields sit beside the metadata).
const ENDPOINT_SLICE: &[Field] = &[
    f(1, "metadata", Kind::Message(OBJECT_META)),
    f(4, "addressType", Kind::String),
    many(2, "endpoints", Kind::Message(ENDPOINT)),
    many(3, "ports", Kind::Message(ENDPOINT_PORT)),
];

const COLUMNS: &[Column] = &[
    NAME,
    col("AddressType", "string", 0),
    col("Ports", "string", 0),
    col("Endpoints", "string", 0),
    AGE,
];

fn cells(slice: &Value, name: Value, age: Value, _: Timestamp) -> Vec<Value> {
    let ports: Vec<String> = items(slice, "/ports")
        .iter()
        .filter_map(|p| p.get("port").and_then(Value::as_i64))
        .map(|p| p.to_string())
        .collect();
    let addresses: Vec<String> = items(slice, "/endpoints")
        .iter()
        .flat_map(|e| items(e, "/addresses").iter())
        .filter_map(|a| a.as_str().map(str::to_string))
        .collect();
    vec![
        name,
        json!(text(slice, "/addressType")),
        json!(if ports.is_empty() {
            "<unset>".to_string()
        } else {
            ports.join(",")
        }),
        json!(if addresses.is_empty() {
            "<unset>".to_string()
        } else {
            truncated_list(&addresses)
        }),
        age,
    ]
}

pub struct EndpointSliceStrategy;

impl Strategy for EndpointSliceStrategy {
    fn defaults(&self, slice: &mut Value) {
        for port in array_mut(slice, "ports") {
            set_default(port, "protocol", json!("TCP"));
        }
    }
}
