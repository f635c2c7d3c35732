//! RoleBindings (rbac.authorization.k8s.io/v1): grant a Role, or a ClusterRole within the
//! binding's namespace, to users, groups and service accounts.

use serde_json::Value;

use crate::error::Cause;
use crate::kinds::{NameRule, Strategy, rbac};
use crate::resources::{ResourceType, entry};
use crate::shape::round_trip;
use crate::table::{Column, Printing};

pub type Typed = k8s_openapi::api::rbac::v1::RoleBinding;

const COLUMNS: [Column; 6] = rbac::binding_columns(
    "RoleRef can reference a Role in the current namespace or a ClusterRole in the global namespace. If the RoleRef cannot be resolved, the Authorizer must return an error. This field is immutable.",
    "Users in the roleBinding",
    "Groups in the roleBinding",
    "ServiceAccounts in the roleBinding",
);

pub const RESOURCE: ResourceType = ResourceType {
    printing: Printing {
        columns: &COLUMNS,
        cells: rbac::binding_cells,
    },
    protobuf: Some(rbac::BINDING_LAYOUT),
    strategy: &RoleBindingStrategy,
    ..entry(
        rbac::GROUP,
        "RoleBinding",
        "rolebindings",
        "rolebinding",
        true,
        round_trip::<Typed>,
    )
};

pub struct RoleBindingStrategy;

impl Strategy for RoleBindingStrategy {
    fn name_rule(&self) -> NameRule {
        rbac::path_segment_name
    }

    fn defaults(&self, binding: &mut Value) {
        rbac::default_binding(binding);
    }

    fn validate(&self, binding: &Value) -> Vec<Cause> {
        rbac::validate_binding(binding, true)
    }

    fn validate_update(&self, old: &Value, new: &Value) -> Vec<Cause> {
        let mut causes = self.validate(new);
        causes.extend(rbac::validate_role_ref_unchanged(old, new));
        causes
    }
}
