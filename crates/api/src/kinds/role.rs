//! Roles (rbac.authorization.k8s.io/v1): a namespace's set of permissions. Who may write one
//! is the API server's escalation check; what one grants is its RBAC authorizer's.

use serde_json::Value;

use crate::error::Cause;
use crate::kinds::{NameRule, Strategy, rbac};
use crate::resources::{ResourceType, entry};
use crate::shape::round_trip;
use crate::table::{Column, NAME, Printing};

pub type Typed = k8s_openapi::api::rbac::v1::Role;

pub const RESOURCE: ResourceType = ResourceType {
    printing: Printing {
        columns: &[NAME, rbac::CREATED_AT] as &[Column],
        cells: rbac::role_cells,
    },
    protobuf: Some(rbac::ROLE_LAYOUT),
    strategy: &RoleStrategy,
    ..entry(
        rbac::GROUP,
        "Role",
        "roles",
        "role",
        true,
        round_trip::<Typed>,
    )
};

pub struct RoleStrategy;

impl Strategy for RoleStrategy {
    fn name_rule(&self) -> NameRule {
        rbac::path_segment_name
    }

    fn validate(&self, role: &Value) -> Vec<Cause> {
        rbac::validate_rules(role, true)
    }
}
