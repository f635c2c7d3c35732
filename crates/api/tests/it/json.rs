//! Strategies for JSON values: arbitrary ones, and ones whose keys collide often enough for
//! patches and merges to meet the fields they name.

use proptest::prelude::*;
use serde_json::{Map, Value};

/// A scalar of any JSON type (finite numbers only: JSON has no others).
pub fn scalar() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        any::<String>().prop_map(Value::String),
        key().prop_map(Value::String),
    ]
}

/// Object keys from a small alphabet (so documents and patches share fields), the directives of
/// strategic merge patches, and arbitrary text.
pub fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => prop::sample::select(vec![
            "a", "b", "name", "metadata", "spec", "containers", "finalizers", "ownerReferences",
            "uid", "ports", "port", "$patch", "$retainKeys", "$setElementOrder/containers",
            "$deleteFromPrimitiveList/finalizers", "delete", "replace", "merge", "0", "-",
        ])
        .prop_map(str::to_string),
        1 => any::<String>(),
    ]
}

/// Any JSON value up to a few levels deep.
pub fn value() -> impl Strategy<Value = Value> {
    scalar().prop_recursive(5, 64, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec((key(), inner), 0..6)
                .prop_map(|fields| Value::Object(fields.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

/// A JSON object (what every stored document is).
pub fn object() -> impl Strategy<Value = Value> {
    prop::collection::vec((key(), value()), 0..6)
        .prop_map(|fields| Value::Object(fields.into_iter().collect()))
}
