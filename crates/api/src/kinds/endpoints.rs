//! Endpoints (core/v1), written by the endpoints controller.

use jiff::Timestamp;
use serde_json::{Value, json};

use crate::defaults::{array_mut, set_default};
use crate::json::{count, items, text};
use crate::kinds::Strategy;
use crate::resources::{ResourceType, entry};
use crate::shape::round_trip;
use crate::table::{AGE, Column, NAME, Printing, col, truncated_list};

pub type Typed = k8s_openapi::api::core::v1::Endpoints;

pub const RESOURCE: ResourceType = ResourceType {
    short_names: &["ep"],
    printing: Printing {
        columns: &[NAME, col("Endpoints", "string", 0), AGE] as &[Column],
        cells: |endpoints, name, age, _: Timestamp| vec![name, json!(summary(endpoints)), age],
    },
    strategy: &EndpointsStrategy,
    ..entry(
        "",
        "Endpoints",
        "endpoints",
        "endpoints",
        true,
        round_trip::<Typed>,
    )
};

pub struct EndpointsStrategy;

impl Strategy for EndpointsStrategy {
    fn defaults(&self, endpoints: &mut Value) {
        for subset in array_mut(endpoints, "subsets") {
            for port in array_mut(subset, "ports") {
                set_default(port, "protocol", json!("TCP"));
            }
        }
    }
}

fn summary(object: &Value) -> String {
    let mut entries = Vec::new();
    for subset in items(object, "/subsets") {
        let ports = items(subset, "/ports");
        for address in items(subset, "/addresses") {
            let ip = text(address, "/ip");
            if ports.is_empty() {
                entries.push(ip.to_string());
            }
            for port in ports {
                entries.push(format!("{ip}:{}", count(port, "/port")));
            }
        }
    }
    if entries.is_empty() {
        "<none>".to_string()
    } else {
        truncated_list(&entries)
    }
}
