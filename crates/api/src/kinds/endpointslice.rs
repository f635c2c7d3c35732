//! EndpointSlices (discovery.k8s.io/v1), written by the endpoints controller.

use jiff::Timestamp;
use serde_json::{Value, json};

use crate::defaults::{array_mut, set_default};
use crate::json::{items, text};
use crate::kinds::Strategy;
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
    ..entry(
        "discovery.k8s.io",
        "EndpointSlice",
        "endpointslices",
        "endpointslice",
        true,
        round_trip::<Typed>,
    )
};

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
