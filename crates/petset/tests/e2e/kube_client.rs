//! kube-rs against a real `petset up`: typed list, watch, patch, status and scale, and a
//! kube-runtime watcher that survives its history being compacted away (410 Gone, relist).

use std::collections::BTreeMap;
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{ConfigMap, Node};
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::runtime::watcher;
use kube::{Client, Config};
use petset_testkit::Petset;
use serde_json::json;

use crate::start;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

async fn client(petset: &Petset) -> Client {
    let kubeconfig = Kubeconfig::read_from(petset.kubeconfig()).expect("kubeconfig");
    let config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .expect("client config");
    Client::try_from(config).expect("client")
}

fn config_map(name: &str) -> ConfigMap {
    ConfigMap {
        metadata: kube::api::ObjectMeta {
            name: Some(name.to_string()),
            labels: Some(BTreeMap::from([("app".to_string(), "kr".to_string())])),
            ..Default::default()
        },
        data: Some(BTreeMap::from([("k".to_string(), "v".to_string())])),
        ..Default::default()
    }
}

fn statefulset() -> StatefulSet {
    serde_json::from_value(json!({
        "metadata": {"name": "web"},
        "spec": {
            "serviceName": "nginx",
            "replicas": 2,
            "selector": {"matchLabels": {"app": "nginx"}},
            "template": {"metadata": {"labels": {"app": "nginx"}},
                "spec": {"containers": [{"name": "nginx", "image": "registry.k8s.io/nginx-slim:0.8"}]}}
        }
    }))
    .expect("a StatefulSet")
}

#[test]
fn list_watch_patch_status_and_scale() {
    let petset = start(&["--store", "memory"]);
    runtime().block_on(async {
        let client = client(&petset).await;
        let maps: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
        for name in ["a", "b", "c"] {
            maps.create(&PostParams::default(), &config_map(name))
                .await
                .expect("create");
        }
        let listed = maps
            .list(&ListParams::default().labels("app=kr").limit(2))
            .await
            .expect("list");
        assert_eq!(listed.items.len(), 2);
        let token = listed.metadata.continue_.clone().expect("a continue token");
        let rest = maps
            .list(
                &ListParams::default()
                    .labels("app=kr")
                    .continue_token(&token),
            )
            .await
            .expect("second page");
        assert_eq!(rest.items.len(), 1);

        let version = listed
            .metadata
            .resource_version
            .clone()
            .expect("list revision");
        let mut events = maps
            .watch(&WatchParams::default().timeout(30), &version)
            .await
            .expect("watch")
            .boxed();
        maps.patch(
            "a",
            &PatchParams::default(),
            &Patch::Merge(json!({"data": {"k": "changed"}})),
        )
        .await
        .expect("merge patch");
        let event = tokio::time::timeout(Duration::from_secs(20), events.try_next())
            .await
            .expect("an event in time")
            .expect("a good event")
            .expect("the stream is open");
        match event {
            WatchEvent::Modified(changed) => {
                assert_eq!(changed.metadata.name.as_deref(), Some("a"));
                assert_eq!(
                    changed.data.and_then(|d| d.get("k").cloned()).as_deref(),
                    Some("changed")
                );
            }
            other => panic!("expected MODIFIED, got {other:?}"),
        }

        let applied = maps
            .patch(
                "applied",
                &PatchParams::apply("kube-rs-test").force(),
                &Patch::Apply(json!({"apiVersion": "v1", "kind": "ConfigMap",
                    "metadata": {"name": "applied"}, "data": {"x": "1"}})),
            )
            .await
            .expect("server-side apply creates");
        assert_eq!(
            applied.data.and_then(|d| d.get("x").cloned()).as_deref(),
            Some("1")
        );
        let missing = maps.get("nosuch").await.expect_err("not found");
        match missing {
            kube::Error::Api(status) => {
                assert_eq!(status.code, 404);
                assert_eq!(status.reason, "NotFound");
            }
            other => panic!("expected an API error, got {other:?}"),
        }

        let sets: Api<StatefulSet> = Api::namespaced(client.clone(), "default");
        sets.create(&PostParams::default(), &statefulset())
            .await
            .expect("create sts");
        let scale = sets.get_scale("web").await.expect("scale");
        assert_eq!(scale.spec.and_then(|s| s.replicas), Some(2));
        assert_eq!(
            scale.status.map(|s| s.selector),
            Some(Some("app=nginx".into()))
        );
        let scaled = sets
            .patch_scale(
                "web",
                &PatchParams::default(),
                &Patch::Merge(json!({"spec": {"replicas": 4}})),
            )
            .await
            .expect("patch scale");
        assert_eq!(scaled.spec.and_then(|s| s.replicas), Some(4));
        // Status through /status on a kind no controller writes here: a Node.
        let nodes: Api<Node> = Api::all(client.clone());
        nodes
            .create(
                &PostParams::default(),
                &serde_json::from_value(json!({"metadata": {"name": "n1"}})).expect("a node"),
            )
            .await
            .expect("create node");
        let status = nodes
            .patch_status(
                "n1",
                &PatchParams::default(),
                &Patch::Merge(json!({"status": {"phase": "Running"}})),
            )
            .await
            .expect("patch status");
        assert_eq!(
            status.status.and_then(|s| s.phase).as_deref(),
            Some("Running")
        );
        let again = nodes.get("n1").await.expect("get");
        assert_eq!(
            again.metadata.generation,
            Some(1),
            "status writes do not bump generation"
        );
        // A spec change through the main resource leaves status alone.
        let patched = nodes
            .patch(
                "n1",
                &PatchParams::default(),
                &Patch::Strategic(
                    json!({"spec": {"unschedulable": true}, "status": {"phase": "Gone"}}),
                ),
            )
            .await
            .expect("strategic patch");
        assert_eq!(
            patched.status.and_then(|s| s.phase).as_deref(),
            Some("Running")
        );
        assert_eq!(patched.metadata.generation, Some(2));

        // A streaming list (watch-list): initial events, then the end-of-initial-events bookmark.
        let mut streaming =
            watcher(maps.clone(), watcher::Config::default().streaming_lists()).boxed();
        let mut initial = Vec::new();
        let done = tokio::time::timeout(Duration::from_secs(30), async {
            while let Some(event) = streaming.next().await {
                match event.expect("a good event") {
                    watcher::Event::InitApply(cm) => initial.extend(cm.metadata.name),
                    watcher::Event::InitDone => return true,
                    _ => {}
                }
            }
            false
        })
        .await;
        assert_eq!(done, Ok(true), "the streaming list never ended");
        initial.sort();
        // Every namespace also has the cluster CA's ConfigMap (as upstream's do), once its
        // publisher has been there.
        initial.retain(|name| name != "kube-root-ca.crt");
        assert_eq!(initial, ["a", "applied", "b", "c"]);

        let deleted = maps
            .delete_collection(&Default::default(), &ListParams::default().labels("app=kr"))
            .await
            .expect("delete collection");
        let gone = deleted.left().map(|list| list.items.len());
        assert_eq!(gone, Some(3));
        let left = maps.list(&ListParams::default()).await.expect("list");
        let mut names: Vec<String> = left
            .items
            .into_iter()
            .filter_map(|m| m.metadata.name)
            .collect();
        names.retain(|name| name != "kube-root-ca.crt");
        assert_eq!(names, ["applied"], "only the unlabelled ConfigMap is left");
    });
}

#[test]
fn a_watcher_relists_after_its_history_is_compacted() {
    let petset = start(&["--compaction-interval", "1"]);
    runtime().block_on(async {
        let client = client(&petset).await;
        let maps: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
        let elsewhere: Api<ConfigMap> = Api::namespaced(client.clone(), "kube-system");
        maps.create(&PostParams::default(), &config_map("before"))
            .await
            .expect("create");
        // Each watch ends after a second; the watcher resumes from the last revision it saw.
        let config = watcher::Config::default().timeout(1);
        let mut stream = watcher(maps.clone(), config).boxed();
        let mut log = Vec::new();
        let mut initial_lists = 0;
        let mut expired = 0;
        let outcome = tokio::time::timeout(Duration::from_secs(90), async {
            while let Some(event) = stream.next().await {
                match &event {
                    Ok(watcher::Event::Init) => initial_lists += 1,
                    Err(error) if error.to_string().contains("410") || error.to_string().contains("too old") => {
                        expired += 1
                    }
                    _ => {}
                }
                log.push(format!("{event:?}"));
                if let Ok(watcher::Event::Apply(cm) | watcher::Event::InitApply(cm)) = &event
                    && cm.metadata.name.as_deref() == Some("after")
                    && initial_lists >= 2
                {
                    return;
                }
                if initial_lists == 1 && expired == 0 && matches!(event, Ok(watcher::Event::InitDone)) {
                    // Move history on elsewhere, past the watch cache's window (4096 changes)
                    // and past a compaction or two, while the watcher's revision stands still.
                    futures::stream::iter(0..4500)
                        .for_each_concurrent(16, |index| {
                            let elsewhere = elsewhere.clone();
                            async move {
                                elsewhere
                                    .create(&PostParams::default(), &config_map(&format!("churn-{index}")))
                                    .await
                                    .expect("churn");
                            }
                        })
                        .await;
                    tokio::time::sleep(Duration::from_millis(2500)).await;
                    maps.create(&PostParams::default(), &config_map("after"))
                        .await
                        .expect("create after");
                }
            }
        })
        .await;
        assert!(
            outcome.is_ok(),
            "the watcher did not relist and see the new object (lists {initial_lists}, 410s {expired}): {log:#?}"
        );
        assert!(expired >= 1, "no 410 Gone was seen: {log:#?}");
    });
}
