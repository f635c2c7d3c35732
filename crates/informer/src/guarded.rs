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
    delete_with(api, name, exactly(uid)).await
}

/// Deletes `name` at once (`gracePeriodSeconds: 0`, what `kubectl delete --force
/// --grace-period=0` sends) if it is still the object with `uid`. For a pod bound to a node
/// this skips the node's confirmation that its processes stopped: only for a caller that knows
/// they have (a node that fenced itself).
pub async fn delete_now<K>(api: &Api<K>, name: &str, uid: &str) -> Result<Deleted<K>, kube::Error>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let options = DeleteParams {
        grace_period_seconds: Some(0),
        ..exactly(uid)
    };
    delete_with(api, name, options).await
}

async fn delete_with<K>(
    api: &Api<K>,
    name: &str,
    options: DeleteParams,
) -> Result<Deleted<K>, kube::Error>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    match api.delete(name, &options).await {
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

    #[tokio::test]
    async fn a_delete_now_removes_a_pod_on_a_node_at_once_and_only_the_pod_it_names() {
        use k8s_openapi::api::core::v1::Pod;

        let cluster = TestCluster::start().await;
        let api: Api<Pod> = Api::namespaced(cluster.client(), "default");
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "web-0"},
            "spec": {"nodeName": "node-a", "containers": [{"name": "c", "image": "busybox"}]}
        }))
        .expect("pod");
        let first = api
            .create(&PostParams::default(), &pod)
            .await
            .expect("create");
        let first_uid = first.uid().expect("uid");

        // A plain delete of a pod on a node waits for the node: the pod stays, Terminating.
        let graceful = delete(&api, "web-0", &first_uid).await;
        assert!(matches!(graceful, Ok(Deleted::Done(_))), "{graceful:?}");
        let terminating = api.get("web-0").await.expect("still there");
        assert!(terminating.metadata.deletion_timestamp.is_some());

        let forced = delete_now(&api, "web-0", &first_uid).await;
        assert!(matches!(forced, Ok(Deleted::Done(_))), "{forced:?}");
        let gone = crate::errors::unless_not_found(api.get("web-0").await);
        assert!(matches!(gone, Ok(None)), "{gone:?}");

        let second = api
            .create(&PostParams::default(), &pod)
            .await
            .expect("again");
        let stale = delete_now(&api, "web-0", &first_uid).await;
        assert!(matches!(stale, Ok(Deleted::Already)), "{stale:?}");
        let kept = api.get("web-0").await.expect("the new pod stays");
        assert_eq!(kept.uid(), second.uid());
    }
}
