//! Telling the API's answers apart, and the writes that tolerate the outcome a controller
//! expects on a stale view: creating what already exists, deleting what is already gone.

use kube::Api;
use kube::api::{DeleteParams, PostParams, Preconditions};
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

/// Deletes `name` if it is still there and, when `uid` is given, still the same object (a
/// name may be reused by a new object the caller has not seen); says whether this call
/// deleted it. An object already gone or replaced is not an error.
pub async fn delete_if_present<K>(
    api: &Api<K>,
    name: &str,
    uid: Option<&str>,
) -> Result<bool, kube::Error>
where
    K: Clone + DeserializeOwned + std::fmt::Debug,
{
    let params = DeleteParams {
        preconditions: uid.map(|uid| Preconditions {
            uid: Some(uid.to_string()),
            resource_version: None,
        }),
        ..DeleteParams::default()
    };
    match api.delete(name, &params).await {
        Ok(_) => Ok(true),
        Err(error) if is_not_found(&error) || is_conflict(&error) => Ok(false),
        Err(error) => Err(error),
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::ConfigMap;
    use kube::ResourceExt;
    use kube::api::ObjectMeta;
    use petset_apiserver::test_cluster::TestCluster;

    use super::*;

    fn config_map(name: &str) -> ConfigMap {
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

    #[tokio::test]
    async fn a_delete_spares_a_new_object_under_the_old_name_and_tolerates_a_missing_one() {
        let cluster = TestCluster::start().await;
        let api: Api<ConfigMap> = Api::namespaced(cluster.client(), "default");
        let old = api
            .create(&PostParams::default(), &config_map("settings"))
            .await
            .expect("create");
        let old_uid = old.uid().expect("uid");
        api.delete("settings", &DeleteParams::default())
            .await
            .expect("delete");
        let new = api
            .create(&PostParams::default(), &config_map("settings"))
            .await
            .expect("create again");

        let deleted = delete_if_present(&api, "settings", Some(&old_uid)).await;
        assert!(matches!(deleted, Ok(false)), "{deleted:?}");
        let kept = api.get("settings").await.expect("still there");
        assert_eq!(kept.uid(), new.uid());

        let deleted = delete_if_present(&api, "settings", new.uid().as_deref()).await;
        assert!(matches!(deleted, Ok(true)), "{deleted:?}");
        let missing = unless_not_found(api.get("settings").await);
        assert!(matches!(missing, Ok(None)), "{missing:?}");
        let again = delete_if_present(&api, "settings", None).await;
        assert!(matches!(again, Ok(false)), "{again:?}");
    }
}
