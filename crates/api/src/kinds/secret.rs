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

/// Upstream's conversion writes `stringData` into `data` (base64, its keys winning) and keeps
/// no `stringData`: a Secret is stored and answered with `data` only. A `stringData` that is
/// not a map of strings (or a `data` that is not a map) is left for validation to refuse.
fn merge_string_data(secret: &mut Value) {
    let Some(map) = secret.as_object_mut() else {
        return;
    };
    let mergeable = matches!(map.get("stringData"), Some(Value::Object(strings))
        if strings.values().all(Value::is_string))
        && matches!(map.get("data"), None | Some(Value::Null | Value::Object(_)));
    if !mergeable {
        return;
    }
    let Some(Value::Object(strings)) = map.remove("stringData") else {
        return;
    };
    if strings.is_empty() {
        return;
    }
    let data = map.entry("data").or_insert(Value::Null);
    if data.is_null() {
        *data = Value::Object(serde_json::Map::new());
    }
    let Some(data) = data.as_object_mut() else {
        return;
    };
    for (key, value) in strings {
        let bytes = k8s_openapi::ByteString(value.as_str().unwrap_or_default().as_bytes().to_vec());
        if let Ok(encoded) = serde_json::to_value(bytes) {
            data.insert(key, encoded);
        }
    }
}

pub struct SecretStrategy;

impl Strategy for SecretStrategy {
    fn defaults(&self, secret: &mut Value) {
        set_default(secret, "type", json!("Opaque"));
        merge_string_data(secret);
    }

    fn validate(&self, secret: &Value) -> Vec<Cause> {
        validate::data_keys(secret)
    }

    fn selectable_field(&self, path: &str) -> bool {
        path == "type"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn string_data_is_written_into_data_and_not_kept() {
        let mut secret = json!({"metadata": {"name": "s"},
            "data": {"kept": "eA==", "both": "b2xk"},
            "stringData": {"both": "new", "plain": "v"}});
        SecretStrategy.defaults(&mut secret);
        assert_eq!(
            secret,
            json!({"metadata": {"name": "s"}, "type": "Opaque",
                "data": {"kept": "eA==", "both": "bmV3", "plain": "dg=="}})
        );
        let mut only = json!({"stringData": {"k": "v"}});
        SecretStrategy.defaults(&mut only);
        assert_eq!(only["data"], json!({"k": "dg=="}));
        let mut empty = json!({"stringData": {}});
        SecretStrategy.defaults(&mut empty);
        assert_eq!(empty, json!({"type": "Opaque"}));
        let mut wrong = json!({"stringData": {"k": 5}});
        SecretStrategy.defaults(&mut wrong);
        assert_eq!(wrong["stringData"], json!({"k": 5}), "left for validation");
        let mut odd_data = json!({"data": 5, "stringData": {"k": "v"}});
        SecretStrategy.defaults(&mut odd_data);
        assert_eq!(
            odd_data["stringData"],
            json!({"k": "v"}),
            "left for validation"
        );
    }
}
