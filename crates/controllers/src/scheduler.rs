//! Scheduling for the nodes petset runs: a pod without a node is bound to a Ready node (the one
//! node, for now) through the `binding` subresource, as kube-scheduler does.

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Binding, Node, ObjectReference, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, ListParams, PostParams};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, ResourceExt};

use crate::events::Recorder;

/// Runs the scheduler until the task is aborted.
pub async fn run(client: Client) {
    let recorder = Recorder::new(client.clone(), "default-scheduler");
    let pods: Api<Pod> = Api::all(client.clone());
    let config = watcher::Config::default().fields("spec.nodeName=");
    let mut events = watcher(pods, config).default_backoff().boxed();
    while let Some(event) = events.next().await {
        let pod = match event {
            Ok(watcher::Event::Apply(pod) | watcher::Event::InitApply(pod)) => pod,
            Ok(_) => continue,
            Err(error) => {
                tracing::debug!(%error, "scheduler watch error");
                continue;
            }
        };
        if pod.metadata.deletion_timestamp.is_some()
            || pod
                .spec
                .as_ref()
                .and_then(|s| s.node_name.as_ref())
                .is_some()
        {
            continue;
        }
        // Bindings are independent: many at once keep a burst of new pods moving.
        let client = client.clone();
        let recorder = recorder.clone();
        tokio::spawn(async move {
            match bind(&client, &pod).await {
                Ok(Some(node)) => {
                    let namespace = pod.namespace().unwrap_or_default();
                    let reference = ObjectReference {
                        api_version: Some("v1".into()),
                        kind: Some("Pod".into()),
                        name: Some(pod.name_any()),
                        namespace: Some(namespace.clone()),
                        uid: pod.uid(),
                        ..ObjectReference::default()
                    };
                    recorder
                        .record(
                            reference,
                            "Normal",
                            "Scheduled",
                            format!(
                                "Successfully assigned {namespace}/{} to {node}",
                                pod.name_any()
                            ),
                        )
                        .await;
                }
                Ok(None) => {}
                Err(error) => {
                    tracing::debug!(%error, pod = %pod.name_any(), "could not schedule a pod");
                }
            }
        });
    }
}

fn is_ready(node: &Node) -> bool {
    node.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// Binds a pod to a Ready node; the node's name, or `None` when no node is Ready.
async fn bind(client: &Client, pod: &Pod) -> Result<Option<String>, kube::Error> {
    let nodes: Api<Node> = Api::all(client.clone());
    let Some(node) = nodes
        .list(&ListParams::default())
        .await?
        .items
        .into_iter()
        .find(is_ready)
    else {
        return Ok(None);
    };
    let namespace = pod.namespace().unwrap_or_default();
    let pods: Api<Pod> = Api::namespaced(client.clone(), &namespace);
    let binding = Binding {
        metadata: ObjectMeta {
            name: Some(pod.name_any()),
            namespace: Some(namespace),
            ..ObjectMeta::default()
        },
        target: ObjectReference {
            api_version: Some("v1".into()),
            kind: Some("Node".into()),
            name: Some(node.name_any()),
            ..ObjectReference::default()
        },
    };
    let _: serde_json::Value = pods
        .create_subresource("binding", &pod.name_any(), &PostParams::default(), &binding)
        .await?;
    Ok(Some(node.name_any()))
}
