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
