//! PersistentVolumes (core/v1): upstream's `pkg/registry/core/persistentvolume/strategy.go`,
//! with the pv-protection finalizer upstream's admission adds.

use jiff::Timestamp;
use serde_json::{Value, json};

use crate::defaults::set_default;
use crate::json::{items, text};
use crate::kinds::{Strategy, set_status};
use crate::resources::{ResourceType, entry, status};
use crate::shape::round_trip;
use crate::table::{AGE, Column, NAME, Printing, access_modes, col, unset};

pub type Typed = k8s_openapi::api::core::v1::PersistentVolume;

/// Keeps a volume while it is bound (removed by the volume protection controller).
pub const PV_PROTECTION_FINALIZER: &str = "kubernetes.io/pv-protection";

pub const RESOURCE: ResourceType = ResourceType {
    short_names: &["pv"],
    subresources: &[status("", "v1", "PersistentVolume")],
    printing: Printing {
        columns: COLUMNS,
        cells,
    },
    strategy: &VolumeStrategy,
    ..entry(
        "",
        "PersistentVolume",
        "persistentvolumes",
        "persistentvolume",
        false,
        round_trip::<Typed>,
    )
};

const COLUMNS: &[Column] = &[
    NAME,
    col("Capacity", "string", 0),
    col("Access Modes", "string", 0),
    col("Reclaim Policy", "string", 0),
    col("Status", "string", 0),
    col("Claim", "string", 0),
    col("StorageClass", "string", 0),
    col("VolumeAttributesClass", "string", 0),
    col("Reason", "string", 0),
    AGE,
    col("VolumeMode", "string", 1),
];

fn cells(volume: &Value, name: Value, age: Value, _: Timestamp) -> Vec<Value> {
    let claim = if volume.pointer("/spec/claimRef").is_some() {
        format!(
            "{}/{}",
            text(volume, "/spec/claimRef/namespace"),
            text(volume, "/spec/claimRef/name")
        )
    } else {
        String::new()
    };
    let phase = if volume.pointer("/metadata/deletionTimestamp").is_some() {
        "Terminating"
    } else {
        text(volume, "/status/phase")
    };
    vec![
        name,
        json!(text(volume, "/spec/capacity/storage")),
        json!(access_modes(items(volume, "/spec/accessModes"))),
        json!(text(volume, "/spec/persistentVolumeReclaimPolicy")),
        json!(phase),
        json!(claim),
        json!(text(volume, "/spec/storageClassName")),
        json!(unset(text(volume, "/spec/volumeAttributesClassName"))),
        json!(text(volume, "/status/reason")),
        age,
        json!(text(volume, "/spec/volumeMode")),
    ]
}

pub struct VolumeStrategy;

impl Strategy for VolumeStrategy {
    fn tracks_generation(&self) -> bool {
        true
    }

    fn prepare_for_create(&self, volume: &mut Value) {
        set_status(volume, json!({"phase": "Pending"}));
    }

    fn defaults(&self, volume: &mut Value) {
        if let Some(spec) = volume.get_mut("spec") {
            set_default(spec, "persistentVolumeReclaimPolicy", json!("Retain"));
            set_default(spec, "volumeMode", json!("Filesystem"));
        }
    }

    fn protection_finalizer(&self) -> Option<&'static str> {
        Some(PV_PROTECTION_FINALIZER)
    }
}
