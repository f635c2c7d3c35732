//! The ServiceAccounts controller: every namespace gets its `default` ServiceAccount, again
//! after a delete, and none while it is being deleted.

use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, PostParams};

use crate::support::{Running, cluster, eventually, object};

async fn default_uid(accounts: &Api<ServiceAccount>) -> Result<String, String> {
    match accounts.get_opt("default").await {
        Ok(Some(account)) => Ok(account.uid().unwrap_or_default()),
        Ok(None) => Err("no default ServiceAccount".into()),
        Err(error) => Err(error.to_string()),
    }
}

#[tokio::test]
async fn every_namespace_has_a_default_service_account_made_again_after_a_delete() {
    let (_cluster, client) = cluster().await;
    let _controller =
        Running::default().with(petset_controllers::serviceaccounts::run(client.clone()));
    // Namespaces that were there before the controller, and one made after it.
    let default: Api<ServiceAccount> = Api::namespaced(client.clone(), "default");
    eventually("default has its account", || default_uid(&default)).await;
    let namespaces: Api<Namespace> = Api::all(client.clone());
    namespaces
        .create(
            &PostParams::default(),
            &object(serde_json::json!({"metadata": {"name": "team"}})),
        )
        .await
        .expect("namespace");
    let team: Api<ServiceAccount> = Api::namespaced(client.clone(), "team");
    let first = eventually("team has its account", || default_uid(&team)).await;
    team.delete("default", &DeleteParams::default())
        .await
        .expect("delete");
    let again = eventually("team has its account again", || async {
        default_uid(&team).await.and_then(|uid| {
            if uid == first {
                Err("the old one".into())
            } else {
                Ok(uid)
            }
        })
    })
    .await;
    assert_ne!(again, first);
    // A namespace being deleted gets none: its contents go, and so does the namespace.
    namespaces
        .delete("team", &DeleteParams::default())
        .await
        .expect("delete namespace");
    eventually("team is gone", || async {
        match namespaces.get_opt("team").await {
            Ok(None) => Ok(()),
            Ok(Some(_)) => Err("team still there".into()),
            Err(error) => Err(error.to_string()),
        }
    })
    .await;
}
