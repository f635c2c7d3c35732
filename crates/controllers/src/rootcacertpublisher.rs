//! The root CA publisher, as upstream's (kube-controller-manager's
//! `root-ca-cert-publisher`): every active namespace has the ConfigMap `kube-root-ca.crt`
//! whose `ca.crt` is the cluster CA, the bundle a pod's token volume projects for in-cluster
//! clients to verify the API server with. It is made with the namespace, again when it is
//! deleted, and put back when it is edited (its data, or its description annotation).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kube::api::{Api, ObjectMeta, PostParams};
use kube::{Client, ResourceExt};
use petset_api::service_account_admission::{ROOT_CA_CONFIG_MAP, ROOT_CA_KEY};

use crate::cache::Cache;
use crate::queue::Queue;

/// The annotation upstream writes on the ConfigMap.
pub const DESCRIPTION_ANNOTATION: &str = "kubernetes.io/description";

/// Its value, as upstream words it.
pub const DESCRIPTION: &str = "Contains a CA bundle that can be used to verify the kube-apiserver when using internal endpoints such as the internal service IP or kubernetes.default.svc. No other usage is guaranteed across distributions of Kubernetes clusters.";

/// What one reconcile looks at: a namespace by name, or every namespace after a relist.
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
enum Key {
    Namespace(String),
    All,
}

/// What a namespace's `kube-root-ca.crt` needs.
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    Nothing,
    Create,
    /// Put the data and annotation back on the one there.
    Restore,
}

/// The step for `namespace`, given its ConfigMap (if any) and the CA PEM.
pub fn step(namespace: &Namespace, current: Option<&ConfigMap>, ca_pem: &str) -> Step {
    let terminating = namespace.metadata.deletion_timestamp.is_some()
        || namespace.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Terminating");
    match current {
        _ if terminating => Step::Nothing,
        None => Step::Create,
        Some(map) => {
            let data_matches = map.data.as_ref() == Some(&wanted_data(ca_pem));
            let described = map
                .annotations()
                .get(DESCRIPTION_ANNOTATION)
                .is_some_and(|d| !d.is_empty());
            if data_matches && described && map.binary_data.is_none() {
                Step::Nothing
            } else {
                Step::Restore
            }
        }
    }
}

fn wanted_data(ca_pem: &str) -> BTreeMap<String, String> {
    BTreeMap::from([(ROOT_CA_KEY.to_string(), ca_pem.to_string())])
}

/// Runs the controller until the task is aborted, publishing `ca_pem`.
pub async fn run(client: Client, ca_pem: String) {
    let (queue, mut keys) = Queue::<Key>::new();
    let mut helpers = tokio::task::JoinSet::new();
    let namespaces = Cache::follow_into(
        &mut helpers,
        &client,
        &queue,
        |namespace: &Namespace| vec![Key::Namespace(namespace.name_any())],
        Key::All,
    );
    let maps = Cache::follow_into(
        &mut helpers,
        &client,
        &queue,
        |map: &ConfigMap| {
            if map.name_any() == ROOT_CA_CONFIG_MAP {
                vec![Key::Namespace(map.namespace().unwrap_or_default())]
            } else {
                Vec::new()
            }
        },
        Key::All,
    );
    namespaces.ready().await;
    maps.ready().await;
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
            let current = maps.get(&name, ROOT_CA_CONFIG_MAP);
            let result = match step(&namespace, current.as_deref(), &ca_pem) {
                Step::Nothing => Ok(()),
                Step::Create => create(&client, &name, &ca_pem).await,
                Step::Restore => match current {
                    Some(map) => restore(&client, &name, (*map).clone(), &ca_pem).await,
                    None => Ok(()),
                },
            };
            if let Err(error) = result {
                tracing::debug!(%error, namespace = %name, "could not publish the root CA; retrying");
                queue.add_after(Key::Namespace(name), std::time::Duration::from_millis(500));
            }
        }
    }
}

async fn create(client: &Client, namespace: &str, ca_pem: &str) -> Result<(), kube::Error> {
    let maps: Api<ConfigMap> = Api::namespaced(client.clone(), namespace);
    let map = ConfigMap {
        metadata: ObjectMeta {
            name: Some(ROOT_CA_CONFIG_MAP.to_string()),
            annotations: Some(BTreeMap::from([(
                DESCRIPTION_ANNOTATION.to_string(),
                DESCRIPTION.to_string(),
            )])),
            ..ObjectMeta::default()
        },
        data: Some(wanted_data(ca_pem)),
        ..ConfigMap::default()
    };
    match maps.create(&PostParams::default(), &map).await {
        Ok(_) => Ok(()),
        // Made meanwhile (the cache lags; its event brings the namespace back), or the
        // namespace is gone or terminating: nothing to do, as upstream.
        Err(kube::Error::Api(status)) if [409, 404, 403].contains(&status.code) => Ok(()),
        Err(error) => Err(error),
    }
}

async fn restore(
    client: &Client,
    namespace: &str,
    mut map: ConfigMap,
    ca_pem: &str,
) -> Result<(), kube::Error> {
    let maps: Api<ConfigMap> = Api::namespaced(client.clone(), namespace);
    map.data = Some(wanted_data(ca_pem));
    map.binary_data = None;
    map.annotations_mut()
        .insert(DESCRIPTION_ANNOTATION.to_string(), DESCRIPTION.to_string());
    match maps
        .replace(ROOT_CA_CONFIG_MAP, &PostParams::default(), &map)
        .await
    {
        Ok(_) => Ok(()),
        // Changed or deleted meanwhile: its event brings the namespace back.
        Err(kube::Error::Api(status)) if [409, 404].contains(&status.code) => Ok(()),
        Err(error) => Err(error),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CA: &str = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";

    fn namespace(terminating: bool) -> Namespace {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "team"},
            "status": {"phase": if terminating { "Terminating" } else { "Active" }},
        }))
        .expect("namespace")
    }

    fn map(data: serde_json::Value, annotations: serde_json::Value) -> ConfigMap {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": ROOT_CA_CONFIG_MAP, "annotations": annotations},
            "data": data,
        }))
        .expect("configmap")
    }

    #[test]
    fn a_missing_map_is_made_except_in_a_namespace_being_deleted() {
        assert_eq!(step(&namespace(false), None, CA), Step::Create);
        assert_eq!(step(&namespace(true), None, CA), Step::Nothing);
    }

    #[test]
    fn an_edited_map_is_restored_and_a_right_one_left_alone() {
        let described = serde_json::json!({DESCRIPTION_ANNOTATION: DESCRIPTION});
        let right = map(serde_json::json!({"ca.crt": CA}), described.clone());
        assert_eq!(step(&namespace(false), Some(&right), CA), Step::Nothing);
        let other_ca = map(serde_json::json!({"ca.crt": "x"}), described.clone());
        assert_eq!(step(&namespace(false), Some(&other_ca), CA), Step::Restore);
        let extra = map(serde_json::json!({"ca.crt": CA, "more": "y"}), described);
        assert_eq!(step(&namespace(false), Some(&extra), CA), Step::Restore);
        let undescribed = map(serde_json::json!({"ca.crt": CA}), serde_json::json!({}));
        assert_eq!(
            step(&namespace(false), Some(&undescribed), CA),
            Step::Restore
        );
    }
}
