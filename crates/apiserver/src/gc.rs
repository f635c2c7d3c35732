//! The controllers that are part of the API's own contract: the garbage collector (owner
//! references; background, foreground and orphan deletion) and namespace lifecycle (a deleted
//! namespace empties, then goes).
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

/// How long to wait before trying again when the graph cannot be kept current.
const RETRY: Duration = Duration::from_secs(1);

/// What the collector knows of one object.
struct Node {
    resource: &'static ResourceType,
    namespace: Option<String>,
    name: String,
    /// Owner uids, each with whether it blocks the owner's foreground deletion.
    owners: Vec<(String, bool)>,
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
                        Some((uid.to_string(), blocks == Some(true)))
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
        for (owner, _) in &node.owners {
            if let Some(set) = self.dependents.get_mut(owner) {
                set.remove(uid);
            }
            // A foreground deletion waiting for this dependent may be done.
            self.dirty.insert(owner.clone());
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
        for (owner, _) in &node.owners {
            self.dependents
                .entry(owner.clone())
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
    for uid in dirty {
        let Some(node) = graph.nodes.get(&uid) else {
            continue;
        };
        let dependents: Vec<&str> = graph
            .dependents
            .get(&uid)
            .map(|set| set.iter().map(String::as_str).collect())
            .unwrap_or_default();
        if node.deleting {
            if node.finalizers.iter().any(|f| f == "orphan") {
                for dependent in &dependents {
                    if let Some(child) = graph.nodes.get(*dependent) {
                        remove_owner_refs(registry, child, &[uid.as_str()]).await;
                    }
                }
                remove_finalizer(registry, node, "orphan").await;
            } else if node.finalizers.iter().any(|f| f == "foregroundDeletion") {
                let mut blocking = 0;
                for dependent in &dependents {
                    let Some(child) = graph.nodes.get(*dependent) else {
                        continue;
                    };
                    if child.owners.iter().any(|(o, blocks)| *o == uid && *blocks) {
                        blocking += 1;
                    }
                    if !child.deleting {
                        delete(registry, child, dependent, "Foreground").await;
                    }
                }
                if blocking == 0 {
                    remove_finalizer(registry, node, "foregroundDeletion").await;
                }
            }
            continue;
        }
        if node.owners.is_empty() {
            continue;
        }
        let dangling: Vec<&str> = node
            .owners
            .iter()
            .map(|(owner, _)| owner.as_str())
            .filter(|owner| !graph.nodes.contains_key(*owner))
            .collect();
        if dangling.is_empty() {
            continue;
        }
        if dangling.len() == node.owners.len() {
            tracing::debug!(kind = node.resource.kind, name = %node.name, "owner gone; deleting dependent");
            delete(registry, node, &uid, "Background").await;
        } else {
            remove_owner_refs(registry, node, &dangling).await;
        }
    }

    let namespaces: Vec<String> = graph.dirty_namespaces.drain().collect();
    for namespace in namespaces {
        if !graph.namespace_terminating(&namespace) {
            continue;
        }
        let members: Vec<&str> = graph
            .members
            .get(&namespace)
            .map(|set| set.iter().map(String::as_str).collect())
            .unwrap_or_default();
        for uid in &members {
            if let Some(node) = graph.nodes.get(*uid)
                && !node.deleting
            {
                delete(registry, node, uid, "Background").await;
            }
        }
        if members.is_empty() {
            let scope = Scope {
                resource: namespaces_type(),
                namespace: None,
            };
            let uid = graph.namespace_uid(&namespace);
            match registry.remove(scope, &namespace, uid).await {
                Ok(()) if SYSTEM_NAMESPACES.contains(&namespace.as_str()) => {
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

async fn remove_owner_refs(registry: &Registry, node: &Node, uids: &[&str]) {
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
            None,
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
