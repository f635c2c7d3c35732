//! One module per served kind: its catalogue entry (names, scope, subresources, typed shape,
//! printing columns) and its `Strategy`, the kind's own rules (upstream's
//! `rest.RESTCreateStrategy` and `RESTUpdateStrategy`, one `strategy.go` per kind). The
//! registry is generic and asks the strategy; nothing else branches on a kind.
//!
//! Adding a kind: a file here with `Typed`, `RESOURCE` and a `Strategy`, a `pub mod` line below,
//! and its module name in `served_kinds!`. Discovery, OpenAPI, shape checks, tables and the
//! registry all read the entry.

use serde_json::Value;

use crate::error::Cause;
use crate::names;
use crate::patch::MergeKeys;

pub mod clusterrole;
pub mod clusterrolebinding;
pub mod configmap;
pub mod controllerrevision;
pub mod cronjob;
pub mod daemonset;
pub mod deployment;
pub mod endpoints;
pub mod endpointslice;
pub mod event;
pub mod events_v1;
pub mod generic;
pub mod hpa;
pub mod hpa_v1;
pub mod ingress;
pub mod ingressclass;
pub mod job;
pub mod lease;
pub mod namespace;
pub mod networking;
pub mod networkpolicy;
pub mod node;
pub mod old_versions;
pub mod pdb;
pub mod pod;
pub mod pv;
pub mod pvc;
pub mod rbac;
pub mod replicaset;
pub mod replicationcontroller;
pub mod reviews;
pub mod role;
pub mod rolebinding;
pub mod secret;
pub mod service;
pub mod serviceaccount;
pub mod statefulset;
pub mod storageclass;

pub use reviews::{
    localsubjectaccessreview, selfsubjectaccessreview, selfsubjectreview, selfsubjectrulesreview,
    subjectaccessreview, tokenreview,
};

/// The single list of served kinds, in discovery order: one module of `kinds` each.
/// `resources::RESOURCES` is one expansion; the API server expands it again for each kind's
/// OpenAPI schema, which needs the typed struct (`$kind::Typed`) at compile time.
#[macro_export]
macro_rules! served_kinds {
    ($each:ident) => {
        $each!(
            namespace,
            pod,
            service,
            endpoints,
            configmap,
            secret,
            serviceaccount,
            event,
            node,
            pvc,
            pv,
            statefulset,
            deployment,
            replicaset,
            replicationcontroller,
            controllerrevision,
            daemonset,
            events_v1,
            hpa,
            hpa_v1,
            job,
            cronjob,
            pdb,
            clusterrolebinding,
            clusterrole,
            rolebinding,
            role,
            storageclass,
            endpointslice,
            lease,
            ingress,
            ingressclass,
            networkpolicy,
            selfsubjectreview,
            tokenreview,
            selfsubjectaccessreview,
            selfsubjectrulesreview,
            subjectaccessreview,
            localsubjectaccessreview,
        );
    };
}

/// Sets an object's status (a strategy's first status, or the one a delete starts).
pub(crate) fn set_status(object: &mut Value, status: Value) {
    if let Some(map) = object.as_object_mut() {
        map.insert("status".into(), status);
    }
}

/// A check `metadata.name` must pass on create: the problems found, empty when valid.
pub type NameRule = fn(&str) -> Vec<String>;

/// Admission steps that need the cluster's state (the registry carries them out).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// A claim without `storageClassName` gets the default StorageClass.
    DefaultStorageClass,
    /// A Service gets its ClusterIP (or has the one it asks for checked).
    ClusterIp,
    /// A pod's ServiceAccount must exist, and its token is mounted unless the pod or the
    /// account opt out (upstream's ServiceAccount plugin; `service_account_admission`).
    ServiceAccount,
    /// An Ingress without a class gets the default IngressClass (upstream's
    /// DefaultIngressClass plugin).
    DefaultIngressClass,
}

/// A kind's own rules. Every method has the behaviour of a plain stored object by default, so
/// a kind states only what sets it apart.
pub trait Strategy: Sync {
    /// Whether `metadata.generation` counts spec changes (set to 1 on create, bumped when the
    /// spec changes, never by status writes). An allow-list: only kinds with a spec say yes.
    fn tracks_generation(&self) -> bool {
        false
    }

    /// The rule `metadata.name` follows on create.
    fn name_rule(&self) -> NameRule {
        names::dns1123_subdomain
    }

    /// What the system sets on a new object (upstream's `PrepareForCreate`), after the client's
    /// status was dropped: its first status.
    fn prepare_for_create(&self, _object: &mut Value) {}

    /// What a plain update (not `/status`) may not change, put back from the stored object
    /// (upstream's `PrepareForUpdate`; status is kept generically).
    fn prepare_for_update(&self, _old: &Value, _new: &mut Value) {}

    /// Field defaults, as upstream's defaulters and defaulting admission apply them.
    fn defaults(&self, _object: &mut Value) {}

    /// The kind's rules on a new object (the metadata rules are everyone's).
    fn validate(&self, _object: &Value) -> Vec<Cause> {
        Vec::new()
    }

    /// The kind's rules on an update: by default its create rules on the new object.
    fn validate_update(&self, _old: &Value, new: &Value) -> Vec<Cause> {
        self.validate(new)
    }

    /// Warnings a create or an update (not of `/status`) is answered with, as `Warning`
    /// headers (upstream's `WarningsOnCreate` and `WarningsOnUpdate`).
    fn warnings(&self, _object: &Value) -> Vec<String> {
        Vec::new()
    }

    /// Seconds a delete waits for someone to confirm it (0: the object goes at once).
    fn grace_period(&self, _object: &Value, _requested: Option<i64>) -> i64 {
        0
    }

    /// Whether an object on its way out stays although no finalizer is left (a pod its node
    /// has not confirmed, a namespace its controller has not emptied).
    fn kept_without_finalizers(&self, _object: &Value) -> bool {
        false
    }

    /// Marks an object a delete starts on; true when the kind's own controller removes it
    /// (the namespace lifecycle), whatever the finalizers.
    fn begin_deletion(&self, _object: &mut Value) -> bool {
        false
    }

    /// Why an object of this name may never be deleted, if it may not.
    fn undeletable(&self, _name: &str) -> Option<&'static str> {
        None
    }

    /// The finalizer every new object gets (storage-object-in-use protection).
    fn protection_finalizer(&self) -> Option<&'static str> {
        None
    }

    /// Admission steps that need the cluster's state, in order.
    fn admission(&self) -> &'static [Admission] {
        &[]
    }

    /// Whether objects may still be created in a namespace being deleted.
    fn created_in_terminating_namespace(&self) -> bool {
        false
    }

    /// Whether a delete answers with the object instead of a Status (upstream's
    /// `ReturnDeletedObject`).
    fn returns_deleted_object(&self) -> bool {
        false
    }

    /// Whether one request may delete a whole collection.
    fn allows_delete_collection(&self) -> bool {
        true
    }

    /// Field selector paths beyond `metadata.name` and `metadata.namespace`.
    fn selectable_field(&self, _path: &str) -> bool {
        false
    }

    /// Lists this kind merges by a key of its own in strategic merge patches (the lists all
    /// kinds share, such as containers by name, are the patch module's).
    fn merge_keys(&self) -> MergeKeys {
        &[]
    }
}

#[cfg(test)]
mod tests {
    use jiff::Timestamp;
    use serde_json::json;

    use crate::resources::RESOURCES;

    /// Shapes no client should send, but any may: every hook takes them without a panic.
    fn odd_objects() -> Vec<serde_json::Value> {
        vec![
            json!({}),
            json!([]),
            json!("x"),
            json!({"spec": 5, "status": "x", "metadata": []}),
            json!({"spec": {"containers": 5, "ports": "x", "updateStrategy": [],
                "template": {"spec": 1}, "selector": "x", "minAvailable": {}}}),
            json!({"spec": {"containers": [1, "x", {"resources": {"limits": 1}}],
                "ports": [1], "volumeClaimTemplates": [1]}, "data": [1], "subsets": 1}),
        ]
    }

    #[test]
    fn every_strategy_takes_any_shape_without_panicking() {
        for resource in RESOURCES {
            let strategy = resource.strategy;
            for original in odd_objects() {
                let mut object = original.clone();
                strategy.prepare_for_create(&mut object);
                strategy.defaults(&mut object);
                strategy.prepare_for_update(&original, &mut object);
                let _ = strategy.validate(&object);
                let _ = strategy.validate_update(&original, &object);
                let _ = strategy.grace_period(&object, Some(i64::MAX));
                let _ = strategy.kept_without_finalizers(&object);
                let _ = strategy.begin_deletion(&mut object);
                let _ = crate::table::cells(resource, &object, Timestamp::now());
            }
        }
    }

    /// Upstream answers a create with the object's first status (`{}` at least), never without
    /// one, for every kind with a status subresource. Nodes are the exception: their agent
    /// reports the status.
    #[test]
    fn every_kind_with_a_status_starts_with_one() {
        let without: Vec<&str> = RESOURCES
            .iter()
            .filter(|r| r.has_status() && r.kind != "Node")
            .filter(|r| {
                let mut object = serde_json::json!({"spec": {}});
                r.strategy.prepare_for_create(&mut object);
                !object
                    .get("status")
                    .is_some_and(serde_json::Value::is_object)
            })
            .map(|r| r.kind)
            .collect();
        assert_eq!(without, Vec::<&str>::new());
    }

    #[test]
    fn kinds_without_a_spec_do_not_track_generation() {
        let tracking: Vec<&str> = RESOURCES
            .iter()
            .filter(|r| r.strategy.tracks_generation())
            .map(|r| r.kind)
            .collect();
        for kind in [
            "ConfigMap",
            "Secret",
            "Event",
            "Endpoints",
            "ServiceAccount",
            "ControllerRevision",
            "EndpointSlice",
            "Lease",
            "StorageClass",
        ] {
            assert!(!tracking.contains(&kind), "{kind}");
        }
        assert!(tracking.contains(&"StatefulSet") && tracking.contains(&"PodDisruptionBudget"));
    }
}
