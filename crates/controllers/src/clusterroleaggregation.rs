//! The ClusterRole aggregation controller, as upstream's (kube-controller-manager's
//! `clusterrole-aggregation`): a ClusterRole with an `aggregationRule` gets as its rules the
//! rules of every other ClusterRole its selectors pick, each rule once, selector by selector
//! and role by role in name order (`petset_api::kinds::rbac::aggregated_rules` decides).
//! Chains settle on their own: a changed `edit` is a ClusterRole change, which syncs `admin`.

use std::sync::Arc;

use k8s_openapi::api::rbac::v1::ClusterRole;
use kube::Client;
use kube::api::{Api, Patch, PatchParams};
use petset_api::kinds::rbac::{aggregated_rules, same_rules};
use serde_json::{Value, json};

use crate::cache::Cache;
use crate::queue::Queue;

/// Upstream's field manager for these writes.
pub const FIELD_MANAGER: &str = "clusterrole-aggregation-controller";

/// Every change may change what any aggregated role gathers: each sync looks at all of them.
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
struct Everything;

/// The rule updates the roles need, as (name, resourceVersion, rules): the pure part.
pub fn updates(roles: &[Value]) -> Vec<(String, String, Vec<Value>)> {
    let mut wanted = Vec::new();
    for role in roles {
        let Some(rules) = aggregated_rules(role, roles) else {
            continue;
        };
        if same_rules(role, &rules) {
            continue;
        }
        let text = |pointer: &str| {
            role.pointer(pointer)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string()
        };
        wanted.push((
            text("/metadata/name"),
            text("/metadata/resourceVersion"),
            rules,
        ));
    }
    wanted
}

/// Runs the controller until the task is aborted.
pub async fn run(client: Client) {
    let (queue, mut keys) = Queue::<Everything>::new();
    let mut helpers = tokio::task::JoinSet::new();
    let roles = Cache::follow_into(
        &mut helpers,
        &client,
        &queue,
        |_: &ClusterRole| vec![Everything],
        Everything,
    );
    roles.ready().await;
    let api: Api<ClusterRole> = Api::all(client.clone());
    while let Some(key) = keys.recv().await {
        queue.taken(&key);
        let current: Vec<Value> = roles
            .store()
            .state()
            .iter()
            .filter_map(|role: &Arc<ClusterRole>| serde_json::to_value(role.as_ref()).ok())
            .collect();
        for (name, resource_version, rules) in updates(&current) {
            // Guarded by the version it was computed from: a role changed meanwhile is looked
            // at again when its change arrives.
            let patch = json!({"metadata": {"resourceVersion": resource_version}, "rules": rules});
            match api
                .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
            {
                Ok(_) => {}
                Err(kube::Error::Api(status)) if status.code == 409 || status.code == 404 => {}
                Err(error) => {
                    tracing::debug!(%error, role = %name, "could not aggregate a ClusterRole; retrying");
                    queue.add_after(Everything, std::time::Duration::from_millis(500));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn role(name: &str, labels: Value, aggregates: Option<&str>, rules: Value) -> Value {
        let mut role = json!({"metadata": {"name": name, "labels": labels, "resourceVersion": "7"}, "rules": rules});
        if let Some(label) = aggregates {
            role["aggregationRule"] =
                json!({"clusterRoleSelectors": [{"matchLabels": {label: "true"}}]});
        }
        role
    }

    fn read(resource: &str) -> Value {
        json!({"verbs": ["get"], "apiGroups": [""], "resources": [resource]})
    }

    #[test]
    fn an_aggregated_role_gets_the_selected_rules_once_by_role_name() {
        let roles = vec![
            role("view", json!({}), Some("to-view"), json!([])),
            role(
                "b",
                json!({"to-view": "true"}),
                None,
                json!([read("pods"), read("secrets")]),
            ),
            role(
                "a",
                json!({"to-view": "true"}),
                None,
                json!([read("pods"), {"verbs": ["list"], "apiGroups": [""], "resources": ["pods"], "resourceNames": []}]),
            ),
            role("c", json!({"other": "true"}), None, json!([read("nodes")])),
        ];
        let wanted = updates(&roles);
        assert_eq!(
            wanted,
            vec![(
                "view".to_string(),
                "7".to_string(),
                vec![
                    read("pods"),
                    json!({"verbs": ["list"], "apiGroups": [""], "resources": ["pods"]}),
                    read("secrets"),
                ]
            )]
        );
        // Once written, nothing more to do.
        let mut settled = roles.clone();
        settled[0]["rules"] = json!(wanted[0].2);
        assert!(updates(&settled).is_empty());
    }

    #[test]
    fn a_role_never_gathers_its_own_rules() {
        let roles = vec![role(
            "self",
            json!({"x": "true"}),
            Some("x"),
            json!([read("pods")]),
        )];
        assert_eq!(
            updates(&roles),
            vec![("self".to_string(), "7".to_string(), vec![])]
        );
    }
}
