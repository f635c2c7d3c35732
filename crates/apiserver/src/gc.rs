//! The controllers that are part of the API's own contract: the garbage collector (owner
//! references; background, foreground and orphan deletion) and namespace lifecycle (a deleted
//! namespace empties, then goes).
//!
//! What to do about an object is decided by the pure functions of `decisions`; this module
//! keeps the graph they read and carries their actions out.
//!
//! Both keep an owner graph of every object, built from one consistent list and then kept
//! current from the watch cache's events, in revision order: whether an owner exists is then a
//! fact about one revision, never a race between two reads. Only objects touched by a change
//! are looked at again, so a steady stream of writes costs little.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use petset_api::patch::PatchType;
use petset_api::resources::{self, ResourceType};
use petset_store::{EventKind, ListOptions, Revision};
use serde_json::{Value, json};
use tokio::sync::broadcast::error::RecvError;
use tokio::task::JoinHandle;

use crate::ApiState;
use crate::registry::{
    DeleteOptions, Registry, SYSTEM_NAMESPACES, Scope, decode, finalizers, namespaces_type,
};
use crate::watch_cache::WatchCache;

mod decisions;

use decisions::{Action, Dependent, OwnerRef};

/// How long to wait before trying again when the graph cannot be kept current.
const RETRY: Duration = Duration::from_secs(1);

/// What the collector knows of one object.
struct Node {
    resource: &'static ResourceType,
    namespace: Option<String>,
    name: String,
    owners: Vec<OwnerRef>,
    deleting: bool,
    finalizers: Vec<String>,
}

impl Node {
    fn of(resource: &'static ResourceType, object: &Value) -> (String, Self) {
        let text = |field: &str| {
            object
                .pointer(&format!("/metadata/{field}"))
                .and_then(Value::as_str)
                .map(str::to_string)
        };
        let owners = object
            .pointer("/metadata/ownerReferences")
            .and_then(Value::as_array)
            .map(|refs| {
                refs.iter()
                    .filter_map(|r| {
                        let uid = r.get("uid").and_then(Value::as_str)?;
                        let blocks = r.get("blockOwnerDeletion").and_then(Value::as_bool);
                        Some(OwnerRef {
                            uid: uid.to_string(),
                            blocks: blocks == Some(true),
                        })
                    })
                    .collect()
            })
            .unwrap_or_default();
        (
            text("uid").unwrap_or_default(),
            Self {
                resource,
                namespace: text("namespace").filter(|_| resource.namespaced),
                name: text("name").unwrap_or_default(),
                owners,
                deleting: object.pointer("/metadata/deletionTimestamp").is_some(),
                finalizers: finalizers(object),
            },
        )
    }

    fn scope(&self) -> Scope<'_> {
        Scope {
            resource: self.resource,
            namespace: self.namespace.as_deref(),
        }
    }

    fn is_namespace(&self) -> bool {
        self.resource.is("", "namespaces")
    }
}

#[derive(Default)]
struct Graph {
    nodes: HashMap<String, Node>,
    dependents: HashMap<String, HashSet<String>>,
    members: HashMap<String, HashSet<String>>,
    /// Namespace name to uid.
    namespaces: HashMap<String, String>,
    /// Objects to look at again.
    dirty: HashSet<String>,
    /// Namespaces whose deletion may have progressed.
    dirty_namespaces: HashSet<String>,
}

impl Graph {
    fn namespace_uid(&self, namespace: &str) -> Option<&str> {
        self.namespaces.get(namespace).map(String::as_str)
    }

    fn namespace_terminating(&self, namespace: &str) -> bool {
        self.namespace_uid(namespace)
            .and_then(|uid| self.nodes.get(uid))
            .is_some_and(|n| n.deleting)
    }

    fn remove(&mut self, uid: &str) {
        let Some(node) = self.nodes.remove(uid) else {
            return;
        };
        if node.is_namespace() && self.namespaces.get(&node.name).is_some_and(|u| u == uid) {
            self.namespaces.remove(&node.name);
        }
        for owner in &node.owners {
            if let Some(set) = self.dependents.get_mut(&owner.uid) {
                set.remove(uid);
            }
            // A foreground deletion waiting for this dependent may be done.
            self.dirty.insert(owner.uid.clone());
        }
        if let Some(dependents) = self.dependents.get(uid) {
            self.dirty.extend(dependents.iter().cloned());
        }
        if let Some(namespace) = &node.namespace {
            if let Some(set) = self.members.get_mut(namespace) {
                set.remove(uid);
            }
            self.dirty_namespaces.insert(namespace.clone());
        }
    }

    fn upsert(&mut self, uid: String, node: Node) {
        self.remove(&uid);
        for owner in &node.owners {
            self.dependents
                .entry(owner.uid.clone())
                .or_default()
                .insert(uid.clone());
        }
        if let Some(namespace) = &node.namespace {
            self.members
                .entry(namespace.clone())
                .or_default()
                .insert(uid.clone());
            if self.namespace_terminating(namespace) {
                self.dirty_namespaces.insert(namespace.clone());
            }
        }
        if node.is_namespace() {
            self.namespaces.insert(node.name.clone(), uid.clone());
            if node.deleting {
                self.dirty_namespaces.insert(node.name.clone());
            }
        }
        self.dirty.insert(uid.clone());
        self.nodes.insert(uid, node);
    }

    /// What to do about object `uid` now.
    fn decide(&self, uid: &str) -> Vec<Action> {
        let Some(node) = self.nodes.get(uid) else {
            return Vec::new();
        };
        if !node.deleting {
            return decisions::for_dependent(uid, &node.owners, |owner| {
                self.nodes.contains_key(owner)
            })
            .into_iter()
            .collect();
        }
        let dependents: Vec<Dependent<'_>> = self
            .dependents
            .get(uid)
            .into_iter()
            .flatten()
            .filter_map(|dependent| {
                let child = self.nodes.get(dependent)?;
                Some(Dependent {
                    uid: dependent,
                    deleting: child.deleting,
                    blocks: child.owners.iter().any(|o| o.uid == uid && o.blocks),
                })
            })
            .collect();
        decisions::for_deleting_owner(uid, &node.finalizers, &dependents)
    }

    /// What to do about namespace `name` now: something only while it is being deleted.
    fn decide_namespace(&self, name: &str) -> Vec<Action> {
        if !self.namespace_terminating(name) {
            return Vec::new();
        }
        let members: Vec<(&str, bool)> = self
            .members
            .get(name)
            .into_iter()
            .flatten()
            .map(|uid| {
                // A member the graph no longer holds is on its way out: wait for it.
                let deleting = self.nodes.get(uid).is_none_or(|n| n.deleting);
                (uid.as_str(), deleting)
            })
            .collect();
        decisions::for_terminating_namespace(name, self.namespace_uid(name), &members)
    }

    fn apply(&mut self, event: &crate::watch_cache::CachedEvent) {
        match event.kind {
            EventKind::Created | EventKind::Updated => {
                if let Some(new) = &event.new
                    && let Some(resource) = resources::find_by_key(&event.key)
                {
                    let (uid, node) = Node::of(resource, new.value());
                    self.upsert(uid, node);
                }
            }
            EventKind::Deleted => {
                if let Some(old) = &event.old
                    && let Some(uid) = old.value().pointer("/metadata/uid").and_then(Value::as_str)
                {
                    self.remove(uid);
                }
            }
        }
    }
}

/// Starts the garbage collector and the namespace controller; they stop when the server does.
pub fn spawn_controllers(state: &ApiState) -> JoinHandle<()> {
    let registry = state.registry.clone();
    let cache = state.watch_cache.clone();
    let mut stopping = state.stopping();
    tokio::spawn(async move {
        let system = keep_system_objects(registry.clone());
        tokio::pin!(system);
        loop {
            tokio::select! {
                _ = run(&registry, &cache) => {}
                _ = &mut system => {}
                _ = stopping.changed() => return,
            }
            tokio::time::sleep(RETRY).await;
        }
    })
}

/// How often the system namespaces and the `kubernetes` Service are checked (upstream's
/// kubernetes-service controller: 10 s); a finished deletion of one re-creates it at once.
const SYSTEM_OBJECTS_PERIOD: Duration = Duration::from_secs(10);

async fn keep_system_objects(registry: Arc<Registry>) {
    loop {
        tokio::time::sleep(SYSTEM_OBJECTS_PERIOD).await;
        if let Err(error) = registry.ensure_system_objects().await {
            tracing::debug!(%error, "could not re-create the system objects");
        }
    }
}

/// Builds the graph from a list, then follows the watch cache until it falls behind.
async fn run(registry: &Arc<Registry>, cache: &Arc<WatchCache>) {
    let Some((mut graph, revision)) = snapshot(registry).await else {
        return;
    };
    graph.dirty = graph.nodes.keys().cloned().collect();
    graph.dirty_namespaces = graph
        .nodes
        .values()
        .filter(|n| n.is_namespace() && n.deleting)
        .map(|n| n.name.clone())
        .collect();
    let Some(subscription) = cache.subscribe(revision + 1) else {
        // The cache is not running (yet): settle what the list shows, then start over.
        settle(registry, &mut graph).await;
        tokio::time::sleep(Duration::from_secs(2)).await;
        return;
    };
    for event in &subscription.backlog {
        if event.revision > revision {
            graph.apply(event);
        }
    }
    let mut live = subscription.live;
    loop {
        settle(registry, &mut graph).await;
        match live.recv().await {
            Ok(batch) => {
                for event in &batch.events {
                    if event.revision > revision {
                        graph.apply(event);
                    }
                }
                // Take whatever else is already there before acting.
                while let Ok(batch) = live.try_recv() {
                    for event in &batch.events {
                        if event.revision > revision {
                            graph.apply(event);
                        }
                    }
                }
            }
            Err(RecvError::Lagged(_)) => {
                tracing::debug!("garbage collector fell behind; relisting");
                return;
            }
            Err(RecvError::Closed) => return,
        }
    }
}

async fn snapshot(registry: &Registry) -> Option<(Graph, Revision)> {
    let page = registry
        .store()
        .list(ListOptions {
            prefix: "/registry/".into(),
            ..ListOptions::default()
        })
        .await
        .map_err(|error| tracing::warn!(%error, "garbage collector cannot list the store"))
        .ok()?;
    let mut graph = Graph::default();
    for kv in &page.items {
        let Some(resource) = resources::find_by_key(&kv.key) else {
            continue;
        };
        let Ok(object) = decode(resource, kv) else {
            continue;
        };
        let (uid, node) = Node::of(resource, &object);
        graph.upsert(uid, node);
    }
    Some((graph, page.revision))
}

/// Acts on everything marked dirty. Writes come back as events and update the graph then.
async fn settle(registry: &Registry, graph: &mut Graph) {
    let dirty: Vec<String> = graph.dirty.drain().collect();
    let mut actions: Vec<Action> = dirty.iter().flat_map(|uid| graph.decide(uid)).collect();
    let namespaces: Vec<String> = graph.dirty_namespaces.drain().collect();
    actions.extend(
        namespaces
            .iter()
            .flat_map(|name| graph.decide_namespace(name)),
    );
    for action in &actions {
        carry_out(registry, graph, action).await;
    }
}

async fn carry_out(registry: &Registry, graph: &Graph, action: &Action) {
    match action {
        Action::Delete { uid, propagation } => {
            if let Some(node) = graph.nodes.get(uid) {
                tracing::debug!(kind = node.resource.kind, name = %node.name, ?propagation, "garbage collector deleting");
                delete(registry, node, uid, propagation.as_str()).await;
            }
        }
        Action::RemoveOwnerReferences { uid, owners } => {
            if let Some(node) = graph.nodes.get(uid) {
                remove_owner_refs(registry, node, owners).await;
            }
        }
        Action::RemoveFinalizer { uid, finalizer } => {
            if let Some(node) = graph.nodes.get(uid) {
                remove_finalizer(registry, node, finalizer).await;
            }
        }
        Action::RemoveNamespace { name, uid } => {
            remove_namespace(registry, name, uid.as_deref()).await;
        }
    }
}

async fn remove_namespace(registry: &Registry, namespace: &str, uid: Option<&str>) {
    let scope = Scope {
        resource: namespaces_type(),
        namespace: None,
    };
    match registry.remove(scope, namespace, uid).await {
        Ok(()) if SYSTEM_NAMESPACES.contains(&namespace) => {
            tracing::info!(namespace, "system namespace deleted; re-creating it");
            if let Err(error) = registry.ensure_system_objects().await {
                tracing::warn!(%error, namespace, "could not re-create a system namespace");
            }
        }
        Ok(()) => tracing::info!(namespace, "namespace deleted"),
        Err(error) => {
            tracing::warn!(%error, namespace, "could not finish deleting a namespace");
        }
    }
}

async fn delete(registry: &Registry, node: &Node, uid: &str, policy: &str) {
    let options = DeleteOptions {
        propagation_policy: Some(policy.to_string()),
        precondition_uid: Some(uid.to_string()),
        ..DeleteOptions::default()
    };
    if let Err(error) = registry.delete(node.scope(), &node.name, &options).await
        && error.code != 404
        && error.code != 409
    {
        tracing::warn!(%error, kind = node.resource.kind, name = %node.name, "garbage collector could not delete");
    }
}

async fn remove_owner_refs(registry: &Registry, node: &Node, uids: &[String]) {
    let removals: Vec<Value> = uids
        .iter()
        .map(|uid| json!({"uid": uid, "$patch": "delete"}))
        .collect();
    let patch = json!({"metadata": {"ownerReferences": removals}});
    patch_metadata(registry, node, &patch, "remove owner references").await;
}

async fn remove_finalizer(registry: &Registry, node: &Node, finalizer: &str) {
    let patch = json!({"metadata": {"$deleteFromPrimitiveList/finalizers": [finalizer]}});
    patch_metadata(registry, node, &patch, "remove a finalizer").await;
}

/// A strategic merge patch of an object's metadata; an object already gone needs nothing.
async fn patch_metadata(registry: &Registry, node: &Node, patch: &Value, what: &str) {
    let result = registry
        .patch(
            node.scope(),
            &node.name,
            None,
            PatchType::Strategic,
            patch,
            crate::registry::Manager::default(),
            false,
            false,
        )
        .await;
    if let Err(error) = result
        && error.code != 404
    {
        tracing::warn!(%error, kind = node.resource.kind, name = %node.name, "garbage collector could not {what}");
    }
}

#[cfg(test)]
mod tests {
    use petset_api::resources;
    use serde_json::{Value, json};

    use super::decisions::{Action, FOREGROUND, Propagation};
    use super::{Graph, Node};

    fn object(kind: &str, name: &str, uid: &str, owners: &[(&str, bool)], extra: Value) -> Value {
        let references: Vec<Value> = owners
            .iter()
            .map(|(uid, blocks)| json!({"uid": uid, "blockOwnerDeletion": blocks}))
            .collect();
        let mut object = json!({"kind": kind, "metadata": {"name": name, "namespace": "default",
            "uid": uid, "ownerReferences": references}});
        if let (Some(meta), Some(extra)) = (object["metadata"].as_object_mut(), extra.as_object()) {
            meta.extend(extra.clone());
        }
        object
    }

    fn graph(objects: &[(&str, Value)]) -> Graph {
        let mut graph = Graph::default();
        for (plural, object) in objects {
            let group = if *plural == "statefulsets" {
                "apps"
            } else {
                ""
            };
            let resource = resources::find(group, "v1", plural).expect("a served resource");
            let (uid, node) = Node::of(resource, object);
            graph.upsert(uid, node);
        }
        graph
    }

    #[test]
    fn the_graph_finds_nothing_to_do_while_every_owner_exists() {
        let set = object("StatefulSet", "web", "set", &[], json!({}));
        let pod = object("Pod", "web-0", "pod", &[("set", true)], json!({}));
        let graph = graph(&[("statefulsets", set), ("pods", pod)]);
        assert_eq!(graph.decide("pod"), vec![]);
        assert_eq!(graph.decide("set"), vec![]);
    }

    #[test]
    fn the_graph_deletes_a_pod_whose_set_is_gone() {
        let set = object("StatefulSet", "web", "set", &[], json!({}));
        let pod = object("Pod", "web-0", "pod", &[("set", true)], json!({}));
        let mut graph = graph(&[("statefulsets", set), ("pods", pod)]);
        graph.remove("set");
        assert!(
            graph.dirty.contains("pod"),
            "a dependent is looked at again"
        );
        assert_eq!(
            graph.decide("pod"),
            vec![Action::Delete {
                uid: "pod".into(),
                propagation: Propagation::Background
            }]
        );
    }

    #[test]
    fn the_graph_tells_a_foreground_owner_which_dependents_block_it() {
        let deleting =
            json!({"deletionTimestamp": "2025-01-01T00:00:00Z", "finalizers": [FOREGROUND]});
        let set = object("StatefulSet", "web", "set", &[], deleting.clone());
        let blocking = object("Pod", "web-0", "a", &[("set", true)], deleting);
        let free = object("Pod", "web-1", "b", &[("set", false)], json!({}));
        let graph = graph(&[("statefulsets", set), ("pods", blocking), ("pods", free)]);
        // web-0 is already being deleted and blocks: only web-1 is deleted, the set waits.
        assert_eq!(
            graph.decide("set"),
            vec![Action::Delete {
                uid: "b".into(),
                propagation: Propagation::Foreground
            }]
        );
    }

    #[test]
    fn the_graph_removes_an_emptied_terminating_namespace() {
        let namespace = json!({"kind": "Namespace", "metadata": {"name": "doomed", "uid": "ns",
            "deletionTimestamp": "2025-01-01T00:00:00Z"}});
        let mut member = object("ConfigMap", "c", "c", &[], json!({}));
        member["metadata"]["namespace"] = json!("doomed");
        let mut graph = graph(&[("namespaces", namespace), ("configmaps", member)]);
        assert_eq!(
            graph.decide_namespace("doomed"),
            vec![Action::Delete {
                uid: "c".into(),
                propagation: Propagation::Background
            }]
        );
        graph.remove("c");
        assert_eq!(
            graph.decide_namespace("doomed"),
            vec![Action::RemoveNamespace {
                name: "doomed".into(),
                uid: Some("ns".into())
            }]
        );
        assert_eq!(graph.decide_namespace("default"), vec![], "not terminating");
    }
}
