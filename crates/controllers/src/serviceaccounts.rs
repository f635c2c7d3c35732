//! The ServiceAccounts controller, as upstream's (kube-controller-manager's
//! `serviceaccount-controller`): every active namespace has a `default` ServiceAccount. It is
//! made when the namespace is, and again when it is deleted, but not in a namespace that is
//! being deleted (its contents are going).

use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use kube::api::{Api, ObjectMeta, PostParams};
use kube::{Client, ResourceExt};

use crate::cache::Cache;
use crate::queue::Queue;

/// The ServiceAccount every namespace has.
pub const DEFAULT_SERVICE_ACCOUNT: &str = "default";

/// What one reconcile looks at: a namespace by name, or every namespace after a relist.
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
enum Key {
    Namespace(String),
    All,
}

/// Whether `namespace` needs its default ServiceAccount made, given whether it has one.
pub fn needs_default(namespace: &Namespace, has_default: bool) -> bool {
    let terminating = namespace.metadata.deletion_timestamp.is_some()
        || namespace.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Terminating");
    !terminating && !has_default
}

/// Runs the controller until the task is aborted.
pub async fn run(client: Client) {
    let (queue, mut keys) = Queue::<Key>::new();
    let mut helpers = tokio::task::JoinSet::new();
    let namespaces = Cache::follow_into(
        &mut helpers,
        &client,
        &queue,
        |namespace: &Namespace| vec![Key::Namespace(namespace.name_any())],
        Key::All,
    );
    let accounts = Cache::follow_into(
        &mut helpers,
        &client,
        &queue,
        |account: &ServiceAccount| vec![Key::Namespace(account.namespace().unwrap_or_default())],
        Key::All,
    );
    namespaces.ready().await;
    accounts.ready().await;
    while let Some(key) = keys.recv().await {
        queue.taken(&key);
        let names = match &key {
            Key::All => namespaces
                .store()
                .state()
                .iter()
                .map(|n| n.name_any())
                .collect(),
            Key::Namespace(name) => vec![name.clone()],
        };
        for name in names {
            let Some(namespace) = namespaces.get_cluster_scoped(&name) else {
                continue;
            };
            let has_default = accounts.get(&name, DEFAULT_SERVICE_ACCOUNT).is_some();
            if !needs_default(&namespace, has_default) {
                continue;
            }
            if let Err(error) = make_default(&client, &name).await {
                tracing::debug!(%error, namespace = %name, "could not make the default ServiceAccount; retrying");
                queue.add_after(Key::Namespace(name), std::time::Duration::from_millis(500));
            }
        }
    }
}

async fn make_default(client: &Client, namespace: &str) -> Result<(), kube::Error> {
    let accounts: Api<ServiceAccount> = Api::namespaced(client.clone(), namespace);
    let account = ServiceAccount {
        metadata: ObjectMeta {
            name: Some(DEFAULT_SERVICE_ACCOUNT.to_string()),
            ..ObjectMeta::default()
        },
        ..ServiceAccount::default()
    };
    match accounts.create(&PostParams::default(), &account).await {
        Ok(_) => Ok(()),
        // Made meanwhile (the cache lags), or the namespace began terminating: nothing to do.
        Err(kube::Error::Api(status)) if status.code == 409 || status.code == 403 => Ok(()),
        Err(error) => Err(error),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn namespace(terminating: bool) -> Namespace {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "team"},
            "status": {"phase": if terminating { "Terminating" } else { "Active" }},
        }))
        .expect("namespace")
    }

    #[test]
    fn an_active_namespace_without_its_default_account_gets_one_and_no_other_does() {
        assert!(needs_default(&namespace(false), false));
        assert!(!needs_default(&namespace(false), true));
        assert!(
            !needs_default(&namespace(true), false),
            "a namespace being deleted"
        );
    }
}
