//! The StatefulSet controller alone: ordered creation with claims, scale-down, and deletes
//! that name the object they mean.

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
use kube::Client;
use kube::api::{Api, Patch, PatchParams};
use petset_controllers::guarded::{self, Deleted};
use serde_json::json;

use crate::support::{
    Running, cluster, create, set_pod_status, wait_exists, wait_for_event, wait_gone,
};

async fn create_web(client: &Client) {
    let sets: Api<StatefulSet> = Api::default_namespaced(client.clone());
    create(
        &sets,
        json!({"metadata": {"name": "web"},
               "spec": {"serviceName": "nginx", "replicas": 2,
                        "selector": {"matchLabels": {"app": "nginx"}},
                        "template": {"metadata": {"labels": {"app": "nginx"}},
                                     "spec": {"containers": [{"name": "nginx", "image": "nginx"}]}},
                        "volumeClaimTemplates": [{"metadata": {"name": "www"},
                            "spec": {"accessModes": ["ReadWriteOnce"],
                                     "resources": {"requests": {"storage": "1Gi"}}}}]}}),
    )
    .await;
}

#[tokio::test]
async fn scaling_up_creates_each_pod_and_its_claim_after_its_predecessor_is_ready() {
    let (_cluster, client) = cluster().await;
    let _controller = Running::default().with(petset_controllers::statefulset::run(client.clone()));
    create_web(&client).await;
    let pods: Api<Pod> = Api::default_namespaced(client.clone());
    let claims: Api<PersistentVolumeClaim> = Api::default_namespaced(client.clone());
    let first = wait_exists(&pods, "web-0").await;
    wait_exists(&claims, "www-web-0").await;
    let spec = first.spec.expect("spec");
    assert_eq!(
        (spec.hostname.as_deref(), spec.subdomain.as_deref()),
        (Some("web-0"), Some("nginx"))
    );
    let mounted: Vec<_> = spec
        .volumes
        .unwrap_or_default()
        .into_iter()
        .filter_map(|v| v.persistent_volume_claim.map(|c| c.claim_name))
        .collect();
    assert_eq!(mounted, ["www-web-0"]);
    // web-0 is not Ready, so OrderedReady creates nothing after it.
    assert!(pods.get_opt("web-1").await.expect("get").is_none());

    set_pod_status(&client, "web-0", "10.0.0.2", true).await;
    wait_exists(&pods, "web-1").await;
    wait_exists(&claims, "www-web-1").await;
    wait_for_event(
        &client,
        "web",
        "SuccessfulCreate",
        "create Pod web-1 in StatefulSet web successful",
    )
    .await;
}

#[tokio::test]
async fn scaling_down_deletes_the_highest_pod_and_keeps_its_claim() {
    let (_cluster, client) = cluster().await;
    let _controller = Running::default().with(petset_controllers::statefulset::run(client.clone()));
    create_web(&client).await;
    let pods: Api<Pod> = Api::default_namespaced(client.clone());
    wait_exists(&pods, "web-0").await;
    set_pod_status(&client, "web-0", "10.0.0.2", true).await;
    wait_exists(&pods, "web-1").await;
    set_pod_status(&client, "web-1", "10.0.0.3", true).await;

    let sets: Api<StatefulSet> = Api::default_namespaced(client.clone());
    sets.patch(
        "web",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"replicas": 1}})),
    )
    .await
    .expect("scale down");
    wait_gone(&pods, "web-1").await;
    let claims: Api<PersistentVolumeClaim> = Api::default_namespaced(client.clone());
    assert!(
        claims.get_opt("www-web-1").await.expect("get").is_some(),
        "whenScaled defaults to Retain"
    );
    assert!(pods.get_opt("web-0").await.expect("get").is_some());
    wait_for_event(
        &client,
        "web",
        "SuccessfulDelete",
        "delete Pod web-1 in StatefulSet web successful",
    )
    .await;
}

/// Every delete the controllers issue goes through `guarded::delete`: one meant for an object
/// that was replaced under its name meanwhile deletes nothing and is no error.
#[tokio::test]
async fn a_delete_meant_for_one_pod_never_deletes_the_pod_that_replaced_it() {
    let (_cluster, client) = cluster().await;
    let pods: Api<Pod> = Api::default_namespaced(client.clone());
    let pod = json!({"metadata": {"name": "web-0"},
                     "spec": {"containers": [{"name": "c", "image": "busybox"}]}});
    let first = create(&pods, pod.clone()).await;
    let first_uid = first.metadata.uid.expect("uid");
    pods.delete("web-0", &Default::default())
        .await
        .expect("delete");
    let second = create(&pods, pod).await;
    let second_uid = second.metadata.uid.expect("uid");
    assert_ne!(first_uid, second_uid);

    let stale = guarded::delete(&pods, "web-0", &first_uid)
        .await
        .expect("no error");
    assert!(matches!(stale, Deleted::Already), "{stale:?}");
    let kept = pods
        .get("web-0")
        .await
        .expect("the replacement is still there");
    assert_eq!(kept.metadata.uid.as_deref(), Some(second_uid.as_str()));

    let meant = guarded::delete(&pods, "web-0", &second_uid)
        .await
        .expect("deleted");
    assert!(matches!(meant, Deleted::Done(_)), "{meant:?}");
    assert!(pods.get_opt("web-0").await.expect("get").is_none());
}

/// As upstream: a pod is not made again while its claim is being deleted, or it would come
/// back on the old claim; once the claim is gone, the pod comes back with a new one.
#[tokio::test]
async fn a_pod_is_not_made_again_while_its_claim_is_being_deleted() {
    let (_cluster, client) = cluster().await;
    let _controller = Running::default().with(petset_controllers::statefulset::run(client.clone()));
    create_web(&client).await;
    let pods: Api<Pod> = Api::default_namespaced(client.clone());
    let claims: Api<PersistentVolumeClaim> = Api::default_namespaced(client.clone());
    wait_exists(&pods, "web-0").await;
    let old_claim = wait_exists(&claims, "www-web-0").await;
    // The claim is deleted while its pod is there (pvc-protection holds it: no controller here
    // lets it go), then the pod is deleted at once.
    claims
        .delete("www-web-0", &Default::default())
        .await
        .expect("delete the claim");
    let claim = claims.get("www-web-0").await.expect("still there");
    assert!(claim.metadata.deletion_timestamp.is_some());
    let pod_uid = pods
        .get("web-0")
        .await
        .expect("web-0")
        .metadata
        .uid
        .expect("uid");
    guarded::delete_now(&pods, "web-0", &pod_uid)
        .await
        .expect("delete web-0");
    wait_for_event(
        &client,
        "web",
        "FailedCreate",
        "create Pod web-0 in StatefulSet web failed error: pvc www-web-0 is being deleted",
    )
    .await;
    assert!(pods.get_opt("web-0").await.expect("get").is_none());

    claims
        .patch(
            "www-web-0",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"finalizers": null}})),
        )
        .await
        .expect("let the claim go");
    let pod = wait_exists(&pods, "web-0").await;
    assert_ne!(pod.metadata.uid.as_deref(), Some(pod_uid.as_str()));
    let new_claim = wait_exists(&claims, "www-web-0").await;
    assert_ne!(new_claim.metadata.uid, old_claim.metadata.uid);
    assert!(new_claim.metadata.deletion_timestamp.is_none());
}
