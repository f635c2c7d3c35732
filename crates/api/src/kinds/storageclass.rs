//! StorageClasses (storage.k8s.io/v1). A class has no spec, so no generation.

use jiff::Timestamp;
use serde_json::{Value, json};

use crate::defaults::set_default;
use crate::json::text;
use crate::kinds::Strategy;
use crate::resources::{ResourceType, entry};
use crate::shape::round_trip;
use crate::table::{AGE, Column, NAME, Printing, col};

pub type Typed = k8s_openapi::api::storage::v1::StorageClass;

pub const RESOURCE: ResourceType = ResourceType {
    short_names: &["sc"],
    printing: Printing {
        columns: COLUMNS,
        cells,
    },
    strategy: &ClassStrategy,
    ..entry(
        "storage.k8s.io",
        "StorageClass",
        "storageclasses",
        "storageclass",
        false,
        round_trip::<Typed>,
    )
};

const COLUMNS: &[Column] = &[
    NAME,
    col("Provisioner", "string", 0),
    col("ReclaimPolicy", "string", 0),
    col("VolumeBindingMode", "string", 0),
    col("AllowVolumeExpansion", "string", 0),
    AGE,
];

fn cells(class: &Value, _: Value, age: Value, _: Timestamp) -> Vec<Value> {
    let is_default = text(
        class,
        "/metadata/annotations/storageclass.kubernetes.io~1is-default-class",
    ) == "true";
    let shown = if is_default {
        format!("{} (default)", text(class, "/metadata/name"))
    } else {
        text(class, "/metadata/name").to_string()
    };
    vec![
        json!(shown),
        json!(text(class, "/provisioner")),
        json!(text(class, "/reclaimPolicy")),
        json!(text(class, "/volumeBindingMode")),
        json!(
            class
                .get("allowVolumeExpansion")
                .and_then(Value::as_bool)
                .unwrap_or(false)
                .to_string()
        ),
        age,
    ]
}

pub struct ClassStrategy;

impl Strategy for ClassStrategy {
    fn defaults(&self, class: &mut Value) {
        set_default(class, "reclaimPolicy", json!("Delete"));
        set_default(class, "volumeBindingMode", json!("Immediate"));
    }
}
