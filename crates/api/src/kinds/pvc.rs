//! PersistentVolumeClaims (core/v1): upstream's
//! `pkg/registry/core/persistentvolumeclaim/strategy.go`, with the admission upstream gives
//! claims (the default StorageClass, the pvc-protection finalizer).

use jiff::Timestamp;
use serde_json::{Value, json};

use crate::defaults::set_default;
use crate::error::Cause;
use crate::json::{items, text};
use crate::kinds::{Admission, Strategy, set_status};
use crate::proto::volume::PERSISTENT_VOLUME_CLAIM_SPEC;
use crate::proto::{Field, Kind, OBJECT_META, f, many};
use crate::resources::{ResourceType, entry, status};
use crate::shape::round_trip;
use crate::table::{AGE, Column, NAME, Printing, access_modes, col, unset};
use crate::validate;

pub type Typed = k8s_openapi::api::core::v1::PersistentVolumeClaim;

/// Keeps a claim while a pod uses it (removed by the claim protection controller).
pub const PVC_PROTECTION_FINALIZER: &str = "kubernetes.io/pvc-protection";

pub const RESOURCE: ResourceType = ResourceType {
    short_names: &["pvc"],
    protobuf: Some(PERSISTENT_VOLUME_CLAIM),
    subresources: &[status("", "v1", "PersistentVolumeClaim")],
    printing: Printing {
        columns: COLUMNS,
        cells,
    },
    strategy: &ClaimStrategy,
    ..entry(
        "",
        "PersistentVolumeClaim",
        "persistentvolumeclaims",
        "persistentvolumeclaim",
        true,
        round_trip::<Typed>,
    )
};

/// The protobuf layout of a core/v1 PersistentVolumeClaim, whole (a StatefulSet's
/// `volumeClaimTemplates` are claims, status included).
pub(crate) const PERSISTENT_VOLUME_CLAIM: &[Field] = &[
    f(1, "metadata", Kind::Message(OBJECT_META)),
    f(2, "spec", Kind::Message(PERSISTENT_VOLUME_CLAIM_SPEC)),
    f(3, "status", Kind::Message(PERSISTENT_VOLUME_CLAIM_STATUS)),
];

const PERSISTENT_VOLUME_CLAIM_STATUS: &[Field] = &[
    f(1, "phase", Kind::String),
    many(2, "accessModes", Kind::String),
    f(3, "capacity", Kind::QuantityMap),
    many(
        4,
        "conditions",
        Kind::Message(&[
            f(1, "type", Kind::String),
            f(2, "status", Kind::String),
            f(3, "lastProbeTime", Kind::Time),
            f(4, "lastTransitionTime", Kind::Time),
            f(5, "reason", Kind::String),
            f(6, "message", Kind::String),
        ]),
    ),
    f(5, "allocatedResources", Kind::QuantityMap),
    // ClaimResourceStatus values are strings.
    f(7, "allocatedResourceStatuses", Kind::StringMap),
    f(8, "currentVolumeAttributesClassName", Kind::OptionalString),
    f(
        9,
        "modifyVolumeStatus",
        Kind::Message(&[
            f(1, "targetVolumeAttributesClassName", Kind::String),
            f(2, "status", Kind::String),
        ]),
    ),
];

const COLUMNS: &[Column] = &[
    NAME,
    col("Status", "string", 0),
    col("Volume", "string", 0),
    col("Capacity", "string", 0),
    col("Access Modes", "string", 0),
    col("StorageClass", "string", 0),
    col("VolumeAttributesClass", "string", 0),
    AGE,
    col("VolumeMode", "string", 1),
];

fn cells(claim: &Value, name: Value, age: Value, _: Timestamp) -> Vec<Value> {
    let phase = if claim.pointer("/metadata/deletionTimestamp").is_some() {
        "Terminating"
    } else {
        text(claim, "/status/phase")
    };
    let bound = text(claim, "/status/phase") == "Bound";
    vec![
        name,
        json!(phase),
        json!(text(claim, "/spec/volumeName")),
        json!(if bound {
            text(claim, "/status/capacity/storage")
        } else {
            ""
        }),
        json!(if bound {
            access_modes(items(claim, "/status/accessModes"))
        } else {
            String::new()
        }),
        json!(text(claim, "/spec/storageClassName")),
        json!(unset(text(claim, "/spec/volumeAttributesClassName"))),
        age,
        json!(text(claim, "/spec/volumeMode")),
    ]
}

pub struct ClaimStrategy;

impl Strategy for ClaimStrategy {
    fn tracks_generation(&self) -> bool {
        true
    }

    fn prepare_for_create(&self, claim: &mut Value) {
        set_status(claim, json!({"phase": "Pending"}));
    }

    fn defaults(&self, claim: &mut Value) {
        if let Some(spec) = claim.get_mut("spec") {
            set_default(spec, "volumeMode", json!("Filesystem"));
        }
    }

    fn validate(&self, claim: &Value) -> Vec<Cause> {
        validate::pvc_spec(claim.get("spec").unwrap_or(&Value::Null), "spec")
    }

    fn validate_update(&self, old: &Value, new: &Value) -> Vec<Cause> {
        let mut causes = self.validate(new);
        let unbound = old.pointer("/spec/volumeName").is_none_or(Value::is_null);
        causes.extend(validate::spec_immutable_except(
            old,
            new,
            |spec| {
                if let Some(requests) = spec
                    .pointer_mut("/resources/requests")
                    .and_then(Value::as_object_mut)
                {
                    requests.remove("storage");
                }
                if let Value::Object(map) = spec {
                    map.remove("volumeAttributesClassName");
                    // Binding fills in the volume name once.
                    if unbound {
                        map.remove("volumeName");
                    }
                }
            },
            "spec is immutable after creation except resources.requests and volumeAttributesClassName for bound claims",
        ));
        causes
    }

    fn protection_finalizer(&self) -> Option<&'static str> {
        Some(PVC_PROTECTION_FINALIZER)
    }

    fn admission(&self) -> &'static [Admission] {
        &[Admission::DefaultStorageClass]
    }
}
