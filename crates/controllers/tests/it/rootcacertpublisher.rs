//! The root CA publisher: every namespace gets `kube-root-ca.crt` with the cluster CA, again
//! after a delete, and back after an edit.

use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kube::api::{Api, DeleteParams, PostParams};
use petset_controllers::rootcacertpublisher::{DESCRIPTION, DESCRIPTION_ANNOTATION};

use crate::support::{Running, cluster, eventually, object};

const CA: &str = "-----BEGIN CERTIFICATE-----\nMIIBtest\n-----END CERTIFICATE-----\n";

/// The published CA of a namespace, with its description, or why there is none yet.
async fn published(maps: &Api<ConfigMap>) -> Result<(String, String), String> {
    let map = maps
        .get_opt("kube-root-ca.crt")
        .await
        .map_err(|e| e.to_string())?
        .ok_or("no kube-root-ca.crt")?;
    let ca = map
        .data
        .as_ref()
        .and_then(|d| d.get("ca.crt"))
        .cloned()
        .ok_or("no ca.crt")?;
    let description = map
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(DESCRIPTION_ANNOTATION))
        .cloned()
        .unwrap_or_default();
    Ok((ca, description))
}

async fn restored(maps: &Api<ConfigMap>) -> Result<(), String> {
    let (ca, description) = published(maps).await?;
    if ca == CA && description == DESCRIPTION {
        Ok(())
    } else {
        Err(format!("not yet restored: {ca:?}"))
    }
}

#[tokio::test]
async fn every_namespace_gets_the_cluster_ca_restored_after_a_delete_or_an_edit() {
    let (_cluster, client) = cluster().await;
    let _controller = Running::default().with(petset_controllers::rootcacertpublisher::run(
        client.clone(),
        CA.to_string(),
    ));
    let default: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    eventually("default has the CA", || restored(&default)).await;
    let namespaces: Api<Namespace> = Api::all(client.clone());
    namespaces
        .create(
            &PostParams::default(),
            &object(serde_json::json!({"metadata": {"name": "team"}})),
        )
        .await
        .expect("namespace");
    let team: Api<ConfigMap> = Api::namespaced(client.clone(), "team");
    eventually("team has the CA", || restored(&team)).await;

    team.delete("kube-root-ca.crt", &DeleteParams::default())
        .await
        .expect("delete");
    eventually("team has the CA again", || restored(&team)).await;

    let mut edited = team.get("kube-root-ca.crt").await.expect("get");
    edited.data = Some([("ca.crt".to_string(), "forged".to_string())].into());
    edited
        .metadata
        .annotations
        .get_or_insert_default()
        .remove(DESCRIPTION_ANNOTATION);
    team.replace("kube-root-ca.crt", &PostParams::default(), &edited)
        .await
        .expect("edit");
    eventually("the edit is undone", || restored(&team)).await;
}
