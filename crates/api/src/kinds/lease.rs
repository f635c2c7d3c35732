//! Leases (coordination.k8s.io/v1): node heartbeats, and later leader election.

use serde_json::json;

use crate::json::text;
use crate::resources::{ResourceType, entry};
use crate::shape::round_trip;
use crate::table::{AGE, Column, NAME, Printing, col};

pub type Typed = k8s_openapi::api::coordination::v1::Lease;

pub const RESOURCE: ResourceType = ResourceType {
    printing: Printing {
        columns: &[NAME, col("Holder", "string", 0), AGE] as &[Column],
        cells: |lease, name, age, _| vec![name, json!(text(lease, "/spec/holderIdentity")), age],
    },
    ..entry(
        "coordination.k8s.io",
        "Lease",
        "leases",
        "lease",
        true,
        round_trip::<Typed>,
    )
};
