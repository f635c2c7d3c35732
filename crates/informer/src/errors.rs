//! Telling the API's answers apart, and the writes that tolerate the outcome a controller
//! expects on a stale view: creating what already exists, deleting what is already gone.

use kube::Api;
use kube::api::PostParams;
use serde::Serialize;
use serde::de::DeserializeOwned;

/// The API answered 404: the object (or its namespace) does not exist.
pub fn is_not_found(error: &kube::Error) -> bool {
    status_code(error) == Some(404)
}

/// The API answered 409: the object already exists (a create), or it changed since it was
/// read (a guarded update, or a delete whose precondition no longer holds).
pub fn is_conflict(error: &kube::Error) -> bool {
    status_code(error) == Some(409)
}

fn status_code(error: &kube::Error) -> Option<u16> {
    match error {
        kube::Error::Api(status) => Some(status.code),
        _ => None,
    }
}

/// A result with "not found" turned into `None`.
pub fn unless_not_found<T>(result: Result<T, kube::Error>) -> Result<Option<T>, kube::Error> {
    match result {
        Ok(value) => Ok(Some(value)),
        Err(error) if is_not_found(&error) => Ok(None),
        Err(error) => Err(error),
    }
}

/// A result with a conflict (409) turned into `None`.
pub fn unless_conflict<T>(result: Result<T, kube::Error>) -> Result<Option<T>, kube::Error> {
    match result {
        Ok(value) => Ok(Some(value)),
        Err(error) if is_conflict(&error) => Ok(None),
        Err(error) => Err(error),
    }
}

/// Creates `object` unless one of that name exists; the created object, or `None` when it
/// already existed (creates are by name, so a retry on a stale view is a no-op).
pub async fn create_if_absent<K>(api: &Api<K>, object: &K) -> Result<Option<K>, kube::Error>
where
    K: Clone + DeserializeOwned + Serialize + std::fmt::Debug,
{
    unless_conflict(api.create(&PostParams::default(), object).await)
}

#[cfg(test)]
pub(crate) mod tests {
    use k8s_openapi::api::core::v1::ConfigMap;
    use kube::api::ObjectMeta;
    use petset_apiserver::test_cluster::TestCluster;

    use super::*;

    /// A ConfigMap of `name` and nothing else (shared by this crate's tests).
    pub(crate) fn config_map(name: &str) -> ConfigMap {
        ConfigMap {
            metadata: ObjectMeta {
                name: Some(name.into()),
                ..ObjectMeta::default()
            },
            ..ConfigMap::default()
        }
    }

    #[tokio::test]
    async fn a_second_create_of_one_name_is_a_no_op() {
        let cluster = TestCluster::start().await;
        let api: Api<ConfigMap> = Api::namespaced(cluster.client(), "default");
        let first = create_if_absent(&api, &config_map("settings")).await;
        assert!(matches!(first, Ok(Some(_))), "{first:?}");
        let second = create_if_absent(&api, &config_map("settings")).await;
        assert!(matches!(second, Ok(None)), "{second:?}");
    }
}
