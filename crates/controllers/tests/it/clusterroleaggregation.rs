//! The ClusterRole aggregation controller: the default `admin`, `edit` and `view` gather their
//! rules along the default chain, and a role labelled later is gathered too.

use k8s_openapi::api::rbac::v1::ClusterRole;
use kube::api::{Api, Patch, PatchParams, PostParams};

use crate::support::{Running, cluster, eventually, object};

/// Whether `role`'s rules grant `verb` on `resource`, as the check needs it spelled.
async fn grants(
    roles: &Api<ClusterRole>,
    role: &str,
    verb: &str,
    resource: &str,
) -> Result<(), String> {
    let found = roles.get(role).await.map_err(|error| error.to_string())?;
    let rules = found.rules.unwrap_or_default();
    let granted = rules.iter().any(|rule| {
        rule.verbs.iter().any(|v| v == verb)
            && rule.resources.iter().flatten().any(|r| r == resource)
    });
    if granted {
        Ok(())
    } else {
        Err(format!("{role} does not grant {verb} {resource} yet"))
    }
}

#[tokio::test]
async fn aggregated_roles_gather_the_rules_of_the_roles_they_select() {
    let (_cluster, client) = cluster().await;
    let _controller = Running::default().with(petset_controllers::clusterroleaggregation::run(
        client.clone(),
    ));
    let roles: Api<ClusterRole> = Api::all(client.clone());
    eventually("view reads pods", || grants(&roles, "view", "get", "pods")).await;
    eventually("edit deletes pods", || {
        grants(&roles, "edit", "delete", "pods")
    })
    .await;
    // admin gathers edit, which gathered view.
    eventually("admin reads pods", || {
        grants(&roles, "admin", "list", "pods")
    })
    .await;
    eventually("admin writes roles", || {
        grants(&roles, "admin", "create", "roles")
    })
    .await;
    let view = roles.get("view").await.expect("view");
    let reads_secrets = view
        .rules
        .unwrap_or_default()
        .iter()
        .any(|rule| rule.resources.iter().flatten().any(|r| r == "secrets"));
    assert!(!reads_secrets, "view must not read secrets");

    // A role that carries the label later is gathered as well, by view and through it by edit.
    roles
        .create(
            &PostParams::default(),
            &object(serde_json::json!({"metadata": {"name": "widgets"},
                "rules": [{"verbs": ["get"], "apiGroups": ["example.com"], "resources": ["widgets"]}]})),
        )
        .await
        .expect("widgets");
    roles
        .patch(
            "widgets",
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"metadata": {"labels": {"rbac.authorization.k8s.io/aggregate-to-view": "true"}}})),
        )
        .await
        .expect("label");
    eventually("view reads widgets", || {
        grants(&roles, "view", "get", "widgets")
    })
    .await;
    eventually("edit reads widgets", || {
        grants(&roles, "edit", "get", "widgets")
    })
    .await;
}
