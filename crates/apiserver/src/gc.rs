//! The controllers that are part of the API's own contract: the garbage collector (owner
//! references; background, foreground and orphan deletion) and namespace lifecycle (a deleted
//! namespace empties, then goes).
//!
//! Both work from one consistent snapshot of the whole store, taken after a burst of changes
//! settles: whether an owner exists is then a fact about one revision, never a race between
//! two reads.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use petset_api::patch::PatchType;
use petset_api::resources::{self, ResourceType};
use petset_store::ListOptions;
use serde_json::{Value, json};
use tokio::task::JoinHandle;

use crate::ApiState;
use crate::registry::{DeleteOptions, Registry, Scope, decode, finalizers, namespaces_type};

/// How long after a change the sweep waits for more changes to arrive.
const SETTLE: Duration = Duration::from_millis(100);
/// A sweep also runs this often when nothing happens, to finish work a failed step left.
const RESYNC: Duration = Duration::from_secs(10);

struct Entry {
    resource: &'static ResourceType,
    object: Value,
}

impl Entry {
    fn meta_str(&self, field: &str) -> Option<&str> {
        self.object
            .pointer(&format!("/metadata/{field}"))
            .and_then(Value::as_str)
    }

    fn name(&self) -> &str {
        self.meta_str("name").unwrap_or_default()
    }

    fn namespace(&self) -> Option<&str> {
        self.meta_str("namespace")
    }

    fn uid(&self) -> &str {
        self.meta_str("uid").unwrap_or_default()
    }

    fn deleting(&self) -> bool {
        self.object.pointer("/metadata/deletionTimestamp").is_some()
    }

    fn owner_refs(&self) -> &[Value] {
        self.object
            .pointer("/metadata/ownerReferences")
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or_default()
    }

    fn scope(&self) -> Scope<'_> {
        Scope {
            resource: self.resource,
            namespace: self.namespace(),
        }
    }
}

fn owner_uid(reference: &Value) -> &str {
    reference
        .get("uid")
        .and_then(Value::as_str)
        .unwrap_or_default()
}

/// Starts the garbage collector and the namespace controller; they stop when the server does.
pub fn spawn_controllers(state: &ApiState) -> JoinHandle<()> {
    let registry = state.registry.clone();
    let mut stopping = state.stopping();
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = run(&registry) => {}
                _ = stopping.changed() => return,
            }
            // The watch broke (store restart, compaction): start over after a pause.
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    })
}

async fn run(registry: &Arc<Registry>) {
    let store = registry.store().clone();
    let mut changes = match store.watch("/registry/", 0).await {
        Ok(changes) => changes,
        Err(error) => {
            tracing::warn!(%error, "garbage collector cannot watch the store");
            return;
        }
    };
    loop {
        sweep(registry).await;
        let first = tokio::time::timeout(RESYNC, next_change(&mut changes)).await;
        if let Ok(false) = first {
            return;
        }
        // Let the burst settle.
        let _ =
            tokio::time::timeout(SETTLE, async { while next_change(&mut changes).await {} }).await;
    }
}

/// Waits for a batch with events; false when the watch ended.
async fn next_change(changes: &mut petset_store::WatchStream) -> bool {
    loop {
        match changes.next().await {
            Some(Ok(batch)) if batch.events.is_empty() => continue,
            Some(Ok(_)) => return true,
            Some(Err(error)) => {
                tracing::debug!(%error, "garbage collector watch ended");
                return false;
            }
            None => return false,
        }
    }
}

async fn snapshot(registry: &Registry) -> Option<Vec<Entry>> {
    let page = registry
        .store()
        .list(ListOptions {
            prefix: "/registry/".into(),
            ..ListOptions::default()
        })
        .await
        .map_err(|error| tracing::warn!(%error, "garbage collector cannot list the store"))
        .ok()?;
    Some(
        page.items
            .iter()
            .filter_map(|kv| {
                let resource = resources::find_by_key(&kv.key)?;
                let object = decode(resource, kv).ok()?;
                Some(Entry { resource, object })
            })
            .collect(),
    )
}

async fn sweep(registry: &Registry) {
    let Some(entries) = snapshot(registry).await else {
        return;
    };
    let by_uid: HashMap<&str, &Entry> = entries.iter().map(|e| (e.uid(), e)).collect();
    let mut dependents: HashMap<&str, Vec<&Entry>> = HashMap::new();
    for entry in &entries {
        for reference in entry.owner_refs() {
            dependents
                .entry(owner_uid(reference))
                .or_default()
                .push(entry);
        }
    }

    for owner in entries.iter().filter(|e| e.deleting()) {
        let owned = dependents.get(owner.uid()).cloned().unwrap_or_default();
        let finalizers = finalizers(&owner.object);
        if finalizers.iter().any(|f| f == "orphan") {
            orphan(registry, owner, &owned).await;
        } else if finalizers.iter().any(|f| f == "foregroundDeletion") {
            foreground(registry, owner, &owned).await;
        }
    }

    for entry in &entries {
        if entry.owner_refs().is_empty() || entry.deleting() {
            continue;
        }
        let dangling: Vec<&str> = entry
            .owner_refs()
            .iter()
            .map(owner_uid)
            .filter(|uid| !by_uid.contains_key(uid))
            .collect();
        if dangling.is_empty() {
            continue;
        }
        if dangling.len() == entry.owner_refs().len() {
            tracing::debug!(
                kind = entry.resource.kind,
                name = entry.name(),
                "owner gone; deleting dependent"
            );
            delete(registry, entry, "Background").await;
        } else {
            remove_owner_refs(registry, entry, &dangling).await;
        }
    }

    let terminating: HashSet<&str> = entries
        .iter()
        .filter(|e| e.resource.is("", "namespaces") && e.deleting())
        .map(Entry::name)
        .collect();
    if terminating.is_empty() {
        return;
    }
    let mut remaining: HashMap<&str, usize> = HashMap::new();
    for entry in &entries {
        let Some(namespace) = entry.namespace().filter(|n| terminating.contains(n)) else {
            continue;
        };
        if !entry.resource.namespaced {
            continue;
        }
        *remaining.entry(namespace).or_default() += 1;
        if !entry.deleting() {
            delete(registry, entry, "Background").await;
        }
    }
    for namespace in terminating {
        if remaining.get(namespace).copied().unwrap_or(0) == 0 {
            let scope = Scope {
                resource: namespaces_type(),
                namespace: None,
            };
            let uid = by_uid
                .values()
                .find(|e| e.resource.is("", "namespaces") && e.name() == namespace)
                .map(|e| e.uid());
            if let Err(error) = registry.remove(scope, namespace, uid).await {
                tracing::warn!(%error, namespace, "could not finish deleting a namespace");
            } else {
                tracing::info!(namespace, "namespace deleted");
            }
        }
    }
}

async fn delete(registry: &Registry, entry: &Entry, policy: &str) {
    let options = DeleteOptions {
        propagation_policy: Some(policy.to_string()),
        precondition_uid: Some(entry.uid().to_string()),
        ..DeleteOptions::default()
    };
    if let Err(error) = registry.delete(entry.scope(), entry.name(), &options).await
        && error.code != 404
        && error.code != 409
    {
        tracing::warn!(%error, kind = entry.resource.kind, name = entry.name(), "garbage collector could not delete");
    }
}

async fn remove_owner_refs(registry: &Registry, entry: &Entry, uids: &[&str]) {
    let removals: Vec<Value> = uids
        .iter()
        .map(|uid| json!({"uid": uid, "$patch": "delete"}))
        .collect();
    let patch = json!({"metadata": {"ownerReferences": removals}});
    patch_metadata(registry, entry, &patch, "remove owner references").await;
}

async fn remove_finalizer(registry: &Registry, entry: &Entry, finalizer: &str) {
    let patch = json!({"metadata": {"$deleteFromPrimitiveList/finalizers": [finalizer]}});
    patch_metadata(registry, entry, &patch, "remove a finalizer").await;
}

/// A strategic merge patch of an object's metadata; an object already gone needs nothing.
async fn patch_metadata(registry: &Registry, entry: &Entry, patch: &Value, what: &str) {
    let result = registry
        .patch(
            entry.scope(),
            entry.name(),
            None,
            PatchType::Strategic,
            patch,
            None,
            false,
        )
        .await;
    if let Err(error) = result
        && error.code != 404
    {
        tracing::warn!(%error, kind = entry.resource.kind, name = entry.name(), "garbage collector could not {what}");
    }
}

/// Orphan: the dependents lose their reference to the owner, then the owner goes.
async fn orphan(registry: &Registry, owner: &Entry, owned: &[&Entry]) {
    for dependent in owned {
        remove_owner_refs(registry, dependent, &[owner.uid()]).await;
    }
    remove_finalizer(registry, owner, "orphan").await;
}

/// Foreground: the dependents go first; the owner goes once no blocking dependent is left.
async fn foreground(registry: &Registry, owner: &Entry, owned: &[&Entry]) {
    let mut blocking = 0;
    for dependent in owned {
        let blocks = dependent.owner_refs().iter().any(|r| {
            owner_uid(r) == owner.uid()
                && r.get("blockOwnerDeletion").and_then(Value::as_bool) == Some(true)
        });
        if blocks {
            blocking += 1;
        }
        if !dependent.deleting() {
            delete(registry, dependent, "Foreground").await;
        }
    }
    if blocking == 0 {
        remove_finalizer(registry, owner, "foregroundDeletion").await;
    }
}
