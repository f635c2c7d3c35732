//! Secrets (core/v1): stored data, `Opaque` unless typed, keys checked as upstream does.

use jiff::Timestamp;
use serde_json::{Value, json};

use crate::defaults::set_default;
use crate::error::Cause;
use crate::json::{map_len, text};
use crate::kinds::Strategy;
use crate::proto::{Field, Kind, OBJECT_META, f};
use crate::resources::{ResourceType, entry};
use crate::shape::round_trip;
use crate::table::{AGE, Column, NAME, Printing, col};
use crate::validate;

pub type Typed = k8s_openapi::api::core::v1::Secret;

pub const RESOURCE: ResourceType = ResourceType {
    printing: Printing {
        columns: &[
            NAME,
            col("Type", "string", 0),
            col("Data", "string", 0),
            AGE,
        ] as &[Column],
        cells,
    },
    strategy: &SecretStrategy,
    protobuf: Some(SECRET),
    ..entry("", "Secret", "secrets", "secret", true, round_trip::<Typed>)
};

/// The protobuf layout kubectl's imperative `create` sends (upstream's `generated.proto`).
const SECRET: &[Field] = &[
    f(1, "metadata", Kind::Message(OBJECT_META)),
    f(2, "data", Kind::BytesMap),
    f(3, "type", Kind::String),
    f(4, "stringData", Kind::StringMap),
    f(5, "immutable", Kind::Bool),
];

fn cells(secret: &Value, name: Value, age: Value, _: Timestamp) -> Vec<Value> {
    vec![
        name,
        json!(text(secret, "/type")),
        json!(map_len(secret, "/data")),
        age,
    ]
}

pub struct SecretStrategy;

impl Strategy for SecretStrategy {
    fn defaults(&self, secret: &mut Value) {
        set_default(secret, "type", json!("Opaque"));
    }

    fn validate(&self, secret: &Value) -> Vec<Cause> {
        validate::data_keys(secret)
    }

    fn selectable_field(&self, path: &str) -> bool {
        path == "type"
    }
}
