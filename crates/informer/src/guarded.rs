//! Deletes that stay right on a stale view: each names the uid of the object it means, so an
//! object re-created under the same name meanwhile is never deleted by mistake.

use kube::api::{Api, DeleteParams, Preconditions};

/// What a guarded delete found.
#[derive(Debug)]
pub enum Deleted<K> {
    /// Deleted (or, with finalizers or a grace period, being deleted); the object as the
    /// server answered with it, when it did.
    Done(Option<K>),
    /// Already gone (404), or replaced by another object of the name (409: the uid
    /// precondition failed): someone else got there first, and there is nothing of ours left.
    Already,
}

/// The delete options of a delete meant for the object with `uid` only.
fn exactly(uid: &str) -> DeleteParams {
    DeleteParams {
        preconditions: Some(Preconditions {
            uid: Some(uid.to_string()),
            resource_version: None,
        }),
        ..DeleteParams::default()
    }
}

/// Deletes `name` if it is still the object with `uid`.
pub async fn delete<K>(api: &Api<K>, name: &str, uid: &str) -> Result<Deleted<K>, kube::Error>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    match api.delete(name, &exactly(uid)).await {
        Ok(answer) => Ok(Deleted::Done(answer.left())),
        Err(kube::Error::Api(status)) if status.code == 404 || status.code == 409 => {
            Ok(Deleted::Already)
        }
        Err(error) => Err(error),
    }
}

#[cfg(test)]
mod tests {
    use kube::ResourceExt;
    use kube::api::PostParams;
    use petset_apiserver::test_cluster::TestCluster;

    use super::*;
    use crate::errors::tests::config_map;
    use k8s_openapi::api::core::v1::ConfigMap;

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

        let deleted = delete(&api, "settings", &old_uid).await;
        assert!(matches!(deleted, Ok(Deleted::Already)), "{deleted:?}");
        let kept = api.get("settings").await.expect("still there");
        assert_eq!(kept.uid(), new.uid());

        let deleted = delete(&api, "settings", &new.uid().expect("uid")).await;
        assert!(matches!(deleted, Ok(Deleted::Done(_))), "{deleted:?}");
        let missing = crate::errors::unless_not_found(api.get("settings").await);
        assert!(matches!(missing, Ok(None)), "{missing:?}");
        let again = delete(&api, "settings", &new.uid().expect("uid")).await;
        assert!(matches!(again, Ok(Deleted::Already)), "{again:?}");
    }
}
