//! The ReplicaSet, ReplicationController and Deployment controllers over the in-process API
//! server, with a stand-in kubelet that marks every pod Running and Ready.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::{Pod, ReplicationController};
use kube::api::{Api, ListParams, Patch, PatchParams};
use kube::{Client, ResourceExt};
use petset_apiserver::test_cluster::TestCluster;
use petset_controllers::{deployment, replicaset};
use serde_json::json;

use crate::support::{Running, create, events_about, eventually, wait_for_event_matching};

/// Marks every pod of `default` Running and Ready, as a node would, until dropped.
async fn kubelet(client: Client) {
    let pods: Api<Pod> = Api::default_namespaced(client);
    loop {
        if let Ok(list) = pods.list(&ListParams::default()).await {
            for pod in list.items {
                let ready = pod
                    .status
                    .as_ref()
                    .and_then(|s| s.conditions.as_ref())
                    .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
                if !ready && pod.metadata.deletion_timestamp.is_none() {
                    let _ = pods
                        .patch_status(
                            &pod.name_any(),
                            &PatchParams::default(),
                            &Patch::Merge(json!({"status": {"phase": "Running",
                                "conditions": [{"type": "Ready", "status": "True",
                                    "lastTransitionTime": "2020-01-01T00:00:00Z"}]}})),
                        )
                        .await;
                }
            }
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

fn web(replicas: i32, image: &str) -> serde_json::Value {
    json!({"metadata": {"name": "web"}, "spec": {"replicas": replicas,
        "selector": {"matchLabels": {"app": "web"}},
        "template": {"metadata": {"labels": {"app": "web"}},
            "spec": {"containers": [{"name": "web", "image": image}]}}}})
}

async fn live_pods(client: &Client) -> Vec<Pod> {
    let pods: Api<Pod> = Api::default_namespaced(client.clone());
    pods.list(&ListParams::default())
        .await
        .expect("pods")
        .items
        .into_iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .collect()
}

/// The value of annotation `key` of `object`.
fn annotation<'a>(object: &'a impl ResourceExt, key: &str) -> Option<&'a str> {
    object.annotations().get(key).map(String::as_str)
}

/// The image of a pod's first container.
fn image_of(pod: &Pod) -> Option<&str> {
    pod.spec.as_ref().expect("as the test set it up").containers[0]
        .image
        .as_deref()
}

/// Points the `web` deployment's template at `image`.
async fn set_image(deployments: &Api<Deployment>, image: &str) {
    deployments
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::Strategic(json!({"spec": {"template": {"spec": {"containers": [
                {"name": "web", "image": image}]}}}})),
        )
        .await
        .expect("as the test set it up");
}

/// The Deployment and ReplicaSet controllers with the stand-in kubelet, until dropped.
fn deployment_controllers(client: &Client) -> Running {
    Running::default()
        .with(replicaset::run_replica_sets(client.clone()))
        .with(deployment::run(client.clone()))
        .with(kubelet(client.clone()))
}

#[tokio::test]
async fn a_replica_set_keeps_its_replicas_adopts_orphans_and_releases_relabelled_pods() {
    let cluster = TestCluster::start().await;
    let client = cluster.client();
    let _running = Running::default()
        .with(replicaset::run_replica_sets(client.clone()))
        .with(kubelet(client.clone()));
    let pods: Api<Pod> = Api::default_namespaced(client.clone());
    // An orphan that matches is adopted and counts toward the replicas.
    create(
        &pods,
        json!({"metadata": {"name": "stray", "labels": {"app": "web"}},
        "spec": {"containers": [{"name": "web", "image": "nginx"}]}}),
    )
    .await;
    let sets: Api<ReplicaSet> = Api::default_namespaced(client.clone());
    let rs = create(&sets, web(3, "nginx")).await;
    let uid = rs.uid().expect("as the test set it up");
    let owned = |pods: &[Pod]| {
        pods.iter()
            .filter(|p| p.owner_references().iter().any(|o| o.uid == uid))
            .count()
    };
    eventually(
        "three pods, the stray adopted, and status counted",
        || async {
            let live = live_pods(&client).await;
            let set = sets.get("web").await.map_err(|e| e.to_string())?;
            let status = set.status.clone().unwrap_or_default();
            let adopted = live.iter().any(|p| {
                p.name_any() == "stray" && p.owner_references().iter().any(|o| o.uid == uid)
            });
            (live.len() == 3
                && owned(&live) == 3
                && adopted
                && status.ready_replicas == Some(3)
                && status.available_replicas == Some(3)
                && status.fully_labeled_replicas == Some(3)
                && status.observed_generation == set.metadata.generation)
                .then_some(())
                .ok_or(format!("{} pods, status {status:?}", live.len()))
        },
    )
    .await;
    let made = live_pods(&client)
        .await
        .into_iter()
        .find(|p| p.name_any() != "stray")
        .expect("as the test set it up");
    assert!(made.name_any().starts_with("web-") && made.name_any().len() == "web-".len() + 5);

    // A pod relabelled out of the selector is released, and replaced.
    pods.patch(
        "stray",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"labels": {"app": "other"}}})),
    )
    .await
    .expect("as the test set it up");
    eventually("the stray released and replaced", || async {
        let live = live_pods(&client).await;
        let stray = live.iter().find(|p| p.name_any() == "stray").cloned();
        (owned(&live) == 3 && stray.is_some_and(|p| p.owner_references().is_empty()))
            .then_some(())
            .ok_or(format!("{} owned", owned(&live)))
    })
    .await;

    // Scaling down to one leaves one.
    sets.patch(
        "web",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"replicas": 1}})),
    )
    .await
    .expect("as the test set it up");
    eventually("one pod left", || async {
        let n = owned(&live_pods(&client).await);
        (n == 1).then_some(()).ok_or(format!("{n}"))
    })
    .await;
    wait_for_event_matching(&client, "web", "a SuccessfulCreate event", |e| {
        e.reason.as_deref() == Some("SuccessfulCreate")
            && e.message
                .as_deref()
                .is_some_and(|m| m.starts_with("Created pod: web-"))
    })
    .await;
    wait_for_event_matching(&client, "web", "a SuccessfulDelete event", |e| {
        e.reason.as_deref() == Some("SuccessfulDelete")
    })
    .await;
}

#[tokio::test]
async fn a_replication_controller_keeps_its_replicas() {
    let cluster = TestCluster::start().await;
    let client = cluster.client();
    let _running = Running::default()
        .with(replicaset::run_replication_controllers(client.clone()))
        .with(kubelet(client.clone()));
    let controllers: Api<ReplicationController> = Api::default_namespaced(client.clone());
    create(
        &controllers,
        json!({"metadata": {"name": "nginx"}, "spec": {"replicas": 2,
        "template": {"metadata": {"labels": {"app": "nginx"}},
            "spec": {"containers": [{"name": "nginx", "image": "nginx"}]}}}}),
    )
    .await;
    eventually("two ready replicas", || async {
        let rc = controllers.get("nginx").await.map_err(|e| e.to_string())?;
        let ready = rc.status.as_ref().and_then(|s| s.ready_replicas);
        (ready == Some(2) && live_pods(&client).await.len() == 2)
            .then_some(())
            .ok_or(format!("{ready:?}"))
    })
    .await;
}

#[tokio::test]
async fn a_deployment_rolls_out_updates_and_keeps_its_history() {
    let cluster = TestCluster::start().await;
    let client = cluster.client();
    let _running = deployment_controllers(&client);
    let deployments: Api<Deployment> = Api::default_namespaced(client.clone());
    let sets: Api<ReplicaSet> = Api::default_namespaced(client.clone());
    create(&deployments, web(3, "nginx:1")).await;
    let complete = |image: &'static str| {
        let deployments = deployments.clone();
        let client = client.clone();
        async move {
            eventually(&format!("rolled out to {image}"), || async {
                let d = deployments.get("web").await.map_err(|e| e.to_string())?;
                let status = d.status.clone().unwrap_or_default();
                let progressing = status
                    .conditions
                    .iter()
                    .flatten()
                    .find(|c| c.type_ == "Progressing")
                    .and_then(|c| c.reason.clone());
                let live = live_pods(&client).await;
                let images_ok = live.len() == 3 && live.iter().all(|p| image_of(p) == Some(image));
                (status.updated_replicas == Some(3)
                    && status.available_replicas == Some(3)
                    && status.replicas == Some(3)
                    && progressing.as_deref() == Some("NewReplicaSetAvailable")
                    && images_ok)
                    .then_some(d)
                    .ok_or(format!("{status:?}"))
            })
            .await
        }
    };
    let first = complete("nginx:1").await;
    assert_eq!(annotation(&first, deployment::REVISION), Some("1"));
    let rs_list = sets
        .list(&ListParams::default())
        .await
        .expect("as the test set it up")
        .items;
    assert_eq!(rs_list.len(), 1);
    let first_rs = &rs_list[0];
    let hash = first_rs
        .labels()
        .get(deployment::HASH_LABEL)
        .cloned()
        .expect("as the test set it up");
    assert_eq!(first_rs.name_any(), format!("web-{hash}"));
    assert_eq!(annotation(first_rs, deployment::MAX_REPLICAS), Some("4"));
    let available = first
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|c| c.iter().find(|c| c.type_ == "Available").cloned())
        .expect("as the test set it up");
    assert_eq!(
        available.reason.as_deref(),
        Some("MinimumReplicasAvailable")
    );

    set_image(&deployments, "nginx:2").await;
    let second = complete("nginx:2").await;
    assert_eq!(annotation(&second, deployment::REVISION), Some("2"));
    let rs_list = sets
        .list(&ListParams::default())
        .await
        .expect("as the test set it up")
        .items;
    let by_revision: BTreeMap<String, i32> = rs_list
        .iter()
        .map(|rs| {
            (
                rs.annotations()
                    .get(deployment::REVISION)
                    .cloned()
                    .unwrap_or_default(),
                rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(-1),
            )
        })
        .collect();
    assert_eq!(
        by_revision,
        BTreeMap::from([("1".into(), 0), ("2".into(), 3)])
    );
    let scaled_up = format!("Scaled up replica set web-{hash} from 0 to 3");
    wait_for_event_matching(&client, "web", "the scale-up event", |e| {
        e.message.as_deref() == Some(&scaled_up)
    })
    .await;
    let scaled_down = format!("Scaled down replica set web-{hash} from");
    wait_for_event_matching(&client, "web", "a scale-down event", |e| {
        e.message
            .as_deref()
            .is_some_and(|m| m.starts_with(&scaled_down))
    })
    .await;

    // Back to the first template: its replica set comes back as revision 3.
    set_image(&deployments, "nginx:1").await;
    let third = complete("nginx:1").await;
    assert_eq!(annotation(&third, deployment::REVISION), Some("3"));
    let again = sets
        .get(&format!("web-{hash}"))
        .await
        .expect("as the test set it up");
    assert_eq!(annotation(&again, deployment::REVISION), Some("3"));
    assert_eq!(annotation(&again, deployment::REVISION_HISTORY), Some("1"));

    // Scaled while settled: the one active set takes the new size.
    deployments
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"replicas": 5}})),
        )
        .await
        .expect("as the test set it up");
    eventually("five replicas", || async {
        let d = deployments.get("web").await.map_err(|e| e.to_string())?;
        let available = d.status.as_ref().and_then(|s| s.available_replicas);
        (available == Some(5))
            .then_some(())
            .ok_or(format!("{available:?}"))
    })
    .await;
}

#[tokio::test]
async fn a_recreate_deployment_stops_every_old_pod_before_starting_new_ones() {
    let cluster = TestCluster::start().await;
    let client = cluster.client();
    let _running = deployment_controllers(&client);
    let deployments: Api<Deployment> = Api::default_namespaced(client.clone());
    let mut manifest = web(2, "nginx:1");
    manifest["spec"]["strategy"] = json!({"type": "Recreate"});
    create(&deployments, manifest).await;
    eventually("two old pods", || async {
        let live = live_pods(&client).await;
        (live.len() == 2)
            .then_some(())
            .ok_or(format!("{}", live.len()))
    })
    .await;
    set_image(&deployments, "nginx:2").await;
    eventually("two new pods and never both", || async {
        let pods: Api<Pod> = Api::default_namespaced(client.clone());
        let all = pods
            .list(&ListParams::default())
            .await
            .map_err(|e| e.to_string())?
            .items;
        let old = all
            .iter()
            .filter(|p| image_of(p) == Some("nginx:1"))
            .count();
        let new = all
            .iter()
            .filter(|p| image_of(p) == Some("nginx:2"))
            .count();
        assert!(old == 0 || new == 0, "old {old} and new {new} pods at once");
        (new == 2)
            .then_some(())
            .ok_or(format!("old {old}, new {new}"))
    })
    .await;
}

/// The image of the `web` deployment's template.
fn template_image(d: &Deployment) -> Option<String> {
    d.spec.as_ref()?.template.spec.as_ref()?.containers[0]
        .image
        .clone()
}

/// An `apps/v1beta1` Deployment's `spec.rollbackTo` (petset serves that old version, beyond
/// upstream): the controller copies the template of the revision asked for and drops the
/// request, as upstream's controller still does.
#[tokio::test]
async fn rollback_to_at_apps_v1beta1_restores_the_revision_asked_for() {
    let cluster = TestCluster::start().await;
    let client = cluster.client();
    let _running = deployment_controllers(&client);
    let deployments: Api<Deployment> = Api::default_namespaced(client.clone());
    let sets: Api<ReplicaSet> = Api::default_namespaced(client.clone());
    create(&deployments, web(1, "nginx:1")).await;
    let revisions = |count: usize| {
        let sets = sets.clone();
        async move {
            eventually(&format!("{count} revisions"), || async {
                let found = sets
                    .list(&ListParams::default())
                    .await
                    .map_err(|e| e.to_string())?
                    .items
                    .len();
                (found == count).then_some(()).ok_or(format!("{found}"))
            })
            .await
        }
    };
    revisions(1).await;
    set_image(&deployments, "nginx:2").await;
    revisions(2).await;

    let rollback = |revision: i64| {
        let cluster = &cluster;
        async move {
            let (code, answer) = cluster
                .send(
                    "PATCH",
                    "/apis/apps/v1beta1/namespaces/default/deployments/web",
                    "application/merge-patch+json",
                    json!({"spec": {"rollbackTo": {"revision": revision}}}),
                )
                .await;
            assert_eq!(code, 200, "{answer}");
        }
    };
    rollback(1).await;
    eventually("the first template back, the request gone", || async {
        let d = deployments.get("web").await.map_err(|e| e.to_string())?;
        let image = template_image(&d);
        let asked = annotation(&d, deployment::rollback::ROLLBACK_TO).map(str::to_string);
        (image.as_deref() == Some("nginx:1") && asked.is_none())
            .then_some(())
            .ok_or(format!("{image:?} {asked:?}"))
    })
    .await;
    eventually("the rollback's event", || async {
        let reasons: Vec<(String, String)> = events_about(&client, "web")
            .await
            .into_iter()
            .map(|e| (e.reason.unwrap_or_default(), e.message.unwrap_or_default()))
            .collect();
        reasons
            .contains(&(
                "DeploymentRollback".into(),
                "Rolled back deployment \"web\" to revision 1".into(),
            ))
            .then_some(())
            .ok_or(format!("{reasons:?}"))
    })
    .await;

    // A revision no set has: nothing changes but the request, which goes, with a warning.
    rollback(9).await;
    eventually("the request dropped", || async {
        let d = deployments.get("web").await.map_err(|e| e.to_string())?;
        let asked = annotation(&d, deployment::rollback::ROLLBACK_TO).map(str::to_string);
        (asked.is_none() && template_image(&d).as_deref() == Some("nginx:1"))
            .then_some(())
            .ok_or(format!("{asked:?}"))
    })
    .await;
    wait_for_event_matching(&client, "web", "the revision-not-found event", |e| {
        e.reason.as_deref() == Some("DeploymentRollbackRevisionNotFound")
    })
    .await;
}
