//! ClusterRoleBindings (rbac.authorization.k8s.io/v1): grant a ClusterRole everywhere.

use serde_json::Value;

use crate::error::Cause;
use crate::kinds::{NameRule, Strategy, rbac};
use crate::resources::{ResourceType, entry};
use crate::shape::round_trip;
use crate::table::{Column, Printing};

pub type Typed = k8s_openapi::api::rbac::v1::ClusterRoleBinding;

const COLUMNS: [Column; 6] = rbac::binding_columns(
    "RoleRef can only reference a ClusterRole in the global namespace. If the RoleRef cannot be resolved, the Authorizer must return an error. This field is immutable.",
    "Users in the clusterRoleBinding",
    "Groups in the clusterRoleBinding",
    "ServiceAccounts in the clusterRoleBinding",
);

pub const RESOURCE: ResourceType = ResourceType {
    printing: Printing {
        columns: &COLUMNS,
        cells: rbac::binding_cells,
    },
    protobuf: Some(rbac::BINDING_LAYOUT),
    strategy: &ClusterRoleBindingStrategy,
    ..entry(
        rbac::GROUP,
        "ClusterRoleBinding",
        "clusterrolebindings",
        "clusterrolebinding",
        false,
        round_trip::<Typed>,
    )
};

pub struct ClusterRoleBindingStrategy;

impl Strategy for ClusterRoleBindingStrategy {
    fn name_rule(&self) -> NameRule {
        rbac::path_segment_name
    }

    fn defaults(&self, binding: &mut Value) {
        rbac::default_binding(binding);
    }

    fn validate(&self, binding: &Value) -> Vec<Cause> {
        rbac::validate_binding(binding, false)
    }

    fn validate_update(&self, old: &Value, new: &Value) -> Vec<Cause> {
        let mut causes = self.validate(new);
        causes.extend(rbac::validate_role_ref_unchanged(old, new));
        causes
    }
}
