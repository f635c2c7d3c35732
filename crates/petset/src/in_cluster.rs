//! `petset in-cluster`: run inside a pod, it connects as in-cluster clients do (kube-rs
//! `Client::try_default`: `KUBERNETES_SERVICE_HOST`/`_PORT`, and the ServiceAccount token and CA
//! mounted at `/var/run/secrets/kubernetes.io/serviceaccount`), then says who it is and lists
//! the pods of its namespace, or prints the API's refusal (a way to check a pod's RBAC from the
//! inside).

use anyhow::Context;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams, PostParams};

pub async fn run() -> anyhow::Result<()> {
    let client = kube::Client::try_default()
        .await
        .context("connecting as an in-cluster client")?;
    let namespace = client.default_namespace().to_string();
    println!("namespace {namespace}");
    let review: kube::core::DynamicObject = serde_json::from_value(serde_json::json!({
        "apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview",
        "metadata": {},
    }))?;
    let resource = kube::core::ApiResource {
        group: "authentication.k8s.io".into(),
        version: "v1".into(),
        api_version: "authentication.k8s.io/v1".into(),
        kind: "SelfSubjectReview".into(),
        plural: "selfsubjectreviews".into(),
    };
    let reviews: Api<kube::core::DynamicObject> = Api::all_with(client.clone(), &resource);
    match reviews.create(&PostParams::default(), &review).await {
        Ok(answer) => {
            let user = &answer.data["status"]["userInfo"]["username"];
            println!("user {}", user.as_str().unwrap_or_default());
        }
        Err(error) => println!("whoami: {}", refusal(&error)),
    }
    let pods: Api<Pod> = Api::namespaced(client, &namespace);
    match pods.list(&ListParams::default()).await {
        Ok(list) => {
            for pod in list {
                println!("pod {}", pod.metadata.name.unwrap_or_default());
            }
            Ok(())
        }
        Err(error) => {
            println!("{}", refusal(&error));
            anyhow::bail!("listing the pods of {namespace} was refused")
        }
    }
}

/// The API's own message for a refusal, else the client's error.
fn refusal(error: &kube::Error) -> String {
    match error {
        kube::Error::Api(status) => status.message.clone(),
        other => other.to_string(),
    }
}
