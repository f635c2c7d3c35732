//! ConfigMaps (core/v1): stored data, keys checked as upstream does.

use jiff::Timestamp;
use serde_json::{Value, json};

use crate::error::Cause;
use crate::json::map_len;
use crate::kinds::Strategy;
use crate::proto::{Field, Kind, OBJECT_META, f};
use crate::resources::{ResourceType, entry};
use crate::shape::round_trip;
use crate::table::{AGE, Column, NAME, Printing, col};
use crate::validate;

pub type Typed = k8s_openapi::api::core::v1::ConfigMap;

pub const RESOURCE: ResourceType = ResourceType {
    short_names: &["cm"],
    printing: Printing {
        columns: &[NAME, col("Data", "string", 0), AGE] as &[Column],
        cells,
    },
    strategy: &ConfigMapStrategy,
    protobuf: Some(CONFIG_MAP),
    ..entry(
        "",
        "ConfigMap",
        "configmaps",
        "configmap",
        true,
        round_trip::<Typed>,
    )
};

/// The protobuf layout kubectl's imperative `create` sends (upstream's `generated.proto`).
const CONFIG_MAP: &[Field] = &[
    f(1, "metadata", Kind::Message(OBJECT_META)),
    f(2, "data", Kind::StringMap),
    f(3, "binaryData", Kind::BytesMap),
    f(4, "immutable", Kind::Bool),
];

fn cells(config: &Value, name: Value, age: Value, _: Timestamp) -> Vec<Value> {
    let keys = map_len(config, "/data") + map_len(config, "/binaryData");
    vec![name, json!(keys), age]
}

pub struct ConfigMapStrategy;

impl Strategy for ConfigMapStrategy {
    fn validate(&self, config: &Value) -> Vec<Cause> {
        validate::data_keys(config)
    }
}
