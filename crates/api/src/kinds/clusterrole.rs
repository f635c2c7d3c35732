//! ClusterRoles (rbac.authorization.k8s.io/v1): permissions anywhere, or in one namespace
//! through a RoleBinding. One with an `aggregationRule` has its rules written by the
//! clusterrole-aggregation controller.

use serde_json::Value;

use crate::error::Cause;
use crate::kinds::{NameRule, Strategy, rbac};
use crate::resources::{ResourceType, entry};
use crate::shape::round_trip;
use crate::table::{Column, NAME, Printing};

pub type Typed = k8s_openapi::api::rbac::v1::ClusterRole;

pub const RESOURCE: ResourceType = ResourceType {
    printing: Printing {
        columns: &[NAME, rbac::CREATED_AT] as &[Column],
        cells: rbac::role_cells,
    },
    protobuf: Some(rbac::CLUSTER_ROLE_LAYOUT),
    strategy: &ClusterRoleStrategy,
    ..entry(
        rbac::GROUP,
        "ClusterRole",
        "clusterroles",
        "clusterrole",
        false,
        round_trip::<Typed>,
    )
};

pub struct ClusterRoleStrategy;

impl Strategy for ClusterRoleStrategy {
    fn name_rule(&self) -> NameRule {
        rbac::path_segment_name
    }

    fn validate(&self, role: &Value) -> Vec<Cause> {
        let mut causes = rbac::validate_rules(role, false);
        causes.extend(rbac::validate_aggregation_rule(role));
        causes
    }
}
