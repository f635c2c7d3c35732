//! Storage semantics of the API: what create, update, patch and delete do to an object beyond
//! writing bytes (uids, timestamps, generation, defaults, validation, optimistic concurrency,
//! finalizers, graceful deletion). Every write to the store goes through here.

use std::net::Ipv4Addr;
use std::sync::Arc;

use bytes::Bytes;
use petset_api::kinds::old_versions::OldVersion;
use petset_api::kinds::{Admission, ingressclass, networking};
use petset_api::patch::{self, PatchError, PatchType};
use petset_api::resources::{self, ResourceType};
use petset_api::selector::{FieldSelector, LabelSelector};
use petset_api::{ApiError, Cause, depth, time, validate};
use petset_store::{KeyValue, ListOptions, Revision, Store, StoreError};
use serde_json::{Map, Value, json};

use crate::auth::RbacIndex;
use crate::ipalloc;

use crate::clock::{Clock, RandomUids, SystemClock, Uids};

pub mod ownership;
pub mod shape;
#[cfg(test)]
mod strategy_tests;
pub use ownership::Manager;
use ownership::Write;
pub use shape::{FieldValidation, check_shape};

/// Where a request points: a type and, for namespaced types, a namespace (`None` = all).
#[derive(Clone, Copy, Debug)]
pub struct Scope<'a> {
    pub resource: &'static ResourceType,
    pub namespace: Option<&'a str>,
}

/// What a delete did.
pub enum Deleted {
    /// The object is gone; here is its last state.
    Gone(Value),
    /// The object stays for now (graceful deletion or finalizers); here is its current state.
    Pending(Value),
}

/// Options of a delete, from the body or the query.
#[derive(Debug, Default, Clone)]
pub struct DeleteOptions {
    pub grace_period_seconds: Option<i64>,
    pub propagation_policy: Option<String>,
    pub orphan_dependents: Option<bool>,
    pub precondition_uid: Option<String>,
    pub precondition_resource_version: Option<String>,
    pub dry_run: bool,
}

impl DeleteOptions {
    pub fn from_json(value: &Value) -> Self {
        Self {
            grace_period_seconds: value.get("gracePeriodSeconds").and_then(Value::as_i64),
            propagation_policy: value
                .get("propagationPolicy")
                .and_then(Value::as_str)
                .map(str::to_string),
            orphan_dependents: value.get("orphanDependents").and_then(Value::as_bool),
            precondition_uid: value
                .pointer("/preconditions/uid")
                .and_then(Value::as_str)
                .map(str::to_string),
            precondition_resource_version: value
                .pointer("/preconditions/resourceVersion")
                .and_then(Value::as_str)
                .map(str::to_string),
            dry_run: value
                .get("dryRun")
                .and_then(Value::as_array)
                .is_some_and(|d| !d.is_empty()),
        }
    }
}

/// A list page.
pub struct ListPage {
    pub items: Vec<Value>,
    pub resource_version: Revision,
    pub continue_token: Option<String>,
    pub remaining: Option<u64>,
}

/// Filters of a list or watch.
#[derive(Default, Clone)]
pub struct Filters {
    pub labels: LabelSelector,
    pub fields: FieldSelector,
}

impl Filters {
    pub fn matches(&self, object: &Value) -> bool {
        self.labels.matches_object(object) && self.fields.matches(object)
    }
}

const ORPHAN_FINALIZER: &str = "orphan";
const FOREGROUND_FINALIZER: &str = "foregroundDeletion";
/// The cluster IP range services get addresses from (upstream's default service CIDR).
/// The ClusterIP range unless the cluster says otherwise (`--service-cidr`), as upstream's
/// default `--service-cluster-ip-range`.
pub const DEFAULT_SERVICE_NETWORK: (Ipv4Addr, u8) = (Ipv4Addr::new(10, 96, 0, 0), 12);
/// How often a read-modify-write retries after losing a race to another writer.
const UPDATE_RETRIES: usize = 16;

pub struct Registry {
    store: Arc<dyn Store>,
    /// Where ClusterIPs come from: network address and prefix length.
    service_network: (Ipv4Addr, u8),
    /// What creation and deletion timestamps say.
    clock: Arc<dyn Clock>,
    /// Where object uids (and `generateName` suffixes) come from.
    uids: Arc<dyn Uids>,
    /// What the requester of a write holds, for the RBAC kinds' escalation check.
    rbac: Arc<RbacIndex>,
}

/// The error a store failure becomes.
pub fn store_error(error: StoreError) -> ApiError {
    match error {
        StoreError::Compacted {
            requested,
            compacted,
        } => ApiError::expired(format!(
            "too old resource version: {requested} ({})",
            compacted.unwrap_or(requested)
        )),
        StoreError::FutureRevision { requested, current } => ApiError::timeout(format!(
            "Too large resource version: {requested}, current: {current}"
        )),
        StoreError::Closed => ApiError::service_unavailable("the store is shutting down"),
        other => ApiError::internal(other.to_string()),
    }
}

/// Decodes a stored object and stamps it with its revision, kind and apiVersion.
pub fn decode(resource: &ResourceType, kv: &KeyValue) -> Result<Value, ApiError> {
    decode_at(resource, &kv.value, kv.mod_revision)
}

pub fn decode_at(
    resource: &ResourceType,
    bytes: &[u8],
    revision: Revision,
) -> Result<Value, ApiError> {
    let mut object: Value = serde_json::from_slice(bytes)
        .map_err(|error| ApiError::internal(format!("stored object is not JSON: {error}")))?;
    set_type_meta(resource, &mut object);
    if let Some(meta) = object.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.insert("resourceVersion".into(), json!(revision.to_string()));
    }
    Ok(object)
}

fn set_type_meta(resource: &ResourceType, object: &mut Value) {
    if let Value::Object(map) = object {
        map.insert("kind".into(), json!(resource.kind));
        map.insert("apiVersion".into(), json!(resource.api_version()));
    }
}

fn encode(object: &Value) -> Bytes {
    let mut stored = object.clone();
    if let Some(meta) = stored.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.remove("resourceVersion");
        meta.remove("selfLink");
        // Empty lists and maps are left out, as upstream's encoding does.
        meta.retain(|_, value| match value {
            Value::Array(items) => !items.is_empty(),
            Value::Object(map) => !map.is_empty(),
            Value::Null => false,
            _ => true,
        });
    }
    Bytes::from(serde_json::to_vec(&stored).unwrap_or_default())
}

fn meta(object: &Value) -> &Value {
    object.get("metadata").unwrap_or(&Value::Null)
}

fn meta_str<'a>(object: &'a Value, field: &str) -> Option<&'a str> {
    meta(object).get(field).and_then(Value::as_str)
}

/// The object's metadata, made an empty map where it is missing or not a map. Callers pass
/// objects (bodies are checked to be objects first); anything else becomes one rather than
/// panic.
fn meta_mut(object: &mut Value) -> &mut Map<String, Value> {
    if !object.is_object() {
        *object = Value::Object(Map::new());
    }
    let Value::Object(fields) = object else {
        unreachable!("the value was just made an object")
    };
    let metadata = fields
        .entry("metadata")
        .or_insert_with(|| Value::Object(Map::new()));
    if !metadata.is_object() {
        *metadata = Value::Object(Map::new());
    }
    match metadata {
        Value::Object(map) => map,
        _ => unreachable!("metadata was just made an object"),
    }
}

pub fn finalizers(object: &Value) -> Vec<String> {
    meta(object)
        .get("finalizers")
        .and_then(Value::as_array)
        .map(|f| {
            f.iter()
                .filter_map(|s| s.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

fn is_deleting(object: &Value) -> bool {
    meta(object)
        .get("deletionTimestamp")
        .is_some_and(|v| !v.is_null())
}

impl Registry {
    pub fn new(store: Arc<dyn Store>) -> Self {
        Self {
            store,
            service_network: DEFAULT_SERVICE_NETWORK,
            clock: Arc::new(SystemClock),
            uids: Arc::new(RandomUids),
            rbac: Arc::new(RbacIndex::new()),
        }
    }

    /// Checks writes of RBAC objects against what `rbac` says their requester holds.
    pub fn with_rbac(mut self, rbac: Arc<RbacIndex>) -> Self {
        self.rbac = rbac;
        self
    }

    /// Upstream's policy-based RBAC storage: a network request (which has a requester) may
    /// not write a role or binding granting more than its requester holds.
    fn check_escalation(
        &self,
        scope: Scope<'_>,
        old: Option<&Value>,
        new: &Value,
    ) -> Result<(), ApiError> {
        if scope.resource.group != crate::auth::rbac::GROUP {
            return Ok(());
        }
        let Some(requester) = crate::auth::requester::current() else {
            return Ok(());
        };
        crate::auth::escalation::check_write(
            &self.rbac,
            &requester,
            scope.resource,
            scope.namespace.unwrap_or_default(),
            old,
            new,
        )
    }

    /// Timestamps from `clock` and uids from `uids` instead (the test tier's fixed ones).
    pub fn with_clock(mut self, clock: Arc<dyn Clock>, uids: Arc<dyn Uids>) -> Self {
        self.clock = clock;
        self.uids = uids;
        self
    }

    /// A registry like this one, over the same store with the same settings.
    pub fn rebuilt(&self) -> Self {
        Self::new(self.store.clone())
            .with_service_network(self.service_network)
            .with_clock(self.clock.clone(), self.uids.clone())
            .with_rbac(self.rbac.clone())
    }

    /// Now, by this registry's clock.
    pub fn timestamp(&self) -> jiff::Timestamp {
        self.clock.now()
    }

    /// Now, as the API writes it (from this registry's clock).
    pub fn now(&self) -> String {
        time::format(self.clock.now())
    }

    /// The random part of a `generateName`: five characters of upstream's alphabet.
    fn random_suffix(&self) -> String {
        const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
        let bytes = self.uids.next().into_bytes();
        // The last bytes: sequential uids differ there, random ones everywhere.
        bytes
            .iter()
            .rev()
            .take(5)
            .map(|b| ALPHABET[*b as usize % ALPHABET.len()] as char)
            .collect()
    }

    /// ClusterIPs from this range instead; the `kubernetes` Service gets its first address.
    pub fn with_service_network(mut self, network: (Ipv4Addr, u8)) -> Self {
        self.service_network = network;
        self
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    fn key(scope: Scope<'_>, name: &str) -> String {
        scope.resource.store_key(scope.namespace, name)
    }

    pub async fn get(&self, scope: Scope<'_>, name: &str) -> Result<Value, ApiError> {
        let key = Self::key(scope, name);
        match self.store.get(&key).await.map_err(store_error)? {
            Some(kv) => decode(scope.resource, &kv),
            None => Err(ApiError::not_found(scope.resource, name)),
        }
    }

    async fn get_raw(&self, scope: Scope<'_>, name: &str) -> Result<(Value, Revision), ApiError> {
        let key = Self::key(scope, name);
        match self.store.get(&key).await.map_err(store_error)? {
            Some(kv) => Ok((decode(scope.resource, &kv)?, kv.mod_revision)),
            None => Err(ApiError::not_found(scope.resource, name)),
        }
    }

    /// A page of matching objects. `limit` counts matches; `continue_token` resumes a list.
    pub async fn list(
        &self,
        scope: Scope<'_>,
        filters: &Filters,
        limit: Option<usize>,
        continue_token: Option<&str>,
        revision: Option<Revision>,
    ) -> Result<ListPage, ApiError> {
        let prefix = scope.resource.list_prefix(scope.namespace);
        let (mut revision, mut start) = match continue_token {
            Some(token) => {
                let (revision, key) = decode_continue(token)?;
                if !key.starts_with(&prefix) {
                    return Err(ApiError::bad_request("continue key is not in this list"));
                }
                (Some(revision), Some(key))
            }
            None => (revision.filter(|r| *r > 0), None),
        };
        let wanted = limit.filter(|l| *l > 0);
        let mut items = Vec::new();
        loop {
            let page_size = wanted.map(|w| (w - items.len()).max(64)).unwrap_or(0);
            let page = self
                .store
                .list(ListOptions {
                    prefix: prefix.clone(),
                    start: start.clone(),
                    limit: (page_size > 0).then_some(page_size),
                    revision,
                })
                .await
                .map_err(|error| match error {
                    StoreError::Compacted { .. } if continue_token.is_some() => ApiError::expired(
                        "The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter, or use the continue token in this response to retrieve the remainder of the results. Continuing with the provided token results in an inconsistent list - objects that were created, modified, or deleted between the time the first chunk was returned and now may show up in the list.",
                    ),
                    other => store_error(other),
                })?;
            revision = Some(page.revision);
            let mut last_key = None;
            let count = page.items.len();
            for (index, kv) in page.items.into_iter().enumerate() {
                let object = decode(scope.resource, &kv)?;
                last_key = Some(kv.key.to_string());
                if filters.matches(&object) {
                    items.push(object);
                    if wanted.is_some_and(|w| items.len() >= w) {
                        let more = index + 1 < count || page.remaining > 0;
                        let token =
                            more.then(|| encode_continue(page.revision, &format!("{}\0", kv.key)));
                        return Ok(ListPage {
                            items,
                            resource_version: page.revision,
                            continue_token: token,
                            remaining: None,
                        });
                    }
                }
            }
            if page.remaining == 0 || last_key.is_none() {
                return Ok(ListPage {
                    items,
                    resource_version: page.revision,
                    continue_token: None,
                    remaining: None,
                });
            }
            start = last_key.map(|k| format!("{k}\0"));
        }
    }

    /// Checks that the namespace of a namespaced create exists and is not terminating.
    async fn check_namespace(&self, scope: Scope<'_>, name: &str) -> Result<(), ApiError> {
        let Some(namespace) = scope.namespace.filter(|_| scope.resource.namespaced) else {
            return Ok(());
        };
        let namespaces = namespaces_type();
        let key = namespaces.store_key(None, namespace);
        match self.store.get(&key).await.map_err(store_error)? {
            None => Err(ApiError::namespace_not_found(namespace)),
            Some(kv) => {
                let ns = decode(namespaces, &kv)?;
                if is_deleting(&ns) && !scope.resource.strategy.created_in_terminating_namespace() {
                    Err(ApiError::namespace_terminating(
                        scope.resource,
                        name,
                        namespace,
                    ))
                } else {
                    Ok(())
                }
            }
        }
    }

    /// Creates an object; the caller has checked that its kind matches the scope.
    pub async fn create(
        &self,
        scope: Scope<'_>,
        object: Value,
        dry_run: bool,
    ) -> Result<Value, ApiError> {
        self.create_by(scope, object, dry_run, Manager::default())
            .await
    }

    /// Creates an object for a field manager, who owns what it sets.
    pub async fn create_by(
        &self,
        scope: Scope<'_>,
        object: Value,
        dry_run: bool,
        manager: Manager<'_>,
    ) -> Result<Value, ApiError> {
        self.create_as(scope, object, dry_run, &Write::Update(manager))
            .await
    }

    async fn create_as(
        &self,
        scope: Scope<'_>,
        mut object: Value,
        dry_run: bool,
        write: &Write<'_>,
    ) -> Result<Value, ApiError> {
        let resource = scope.resource;
        if !object.is_object() {
            return Err(ApiError::bad_request("the body must be a JSON object"));
        }
        let meta = meta_mut(&mut object);
        if meta
            .get("name")
            .and_then(Value::as_str)
            .is_none_or(str::is_empty)
            && let Some(prefix) = meta.get("generateName").and_then(Value::as_str)
            && !prefix.is_empty()
        {
            let name = format!("{prefix}{}", self.random_suffix());
            meta.insert("name".into(), json!(name));
        }
        if resource.namespaced {
            match (
                scope.namespace,
                meta.get("namespace").and_then(Value::as_str),
            ) {
                (Some(url), Some(body)) if !body.is_empty() && body != url => {
                    return Err(ApiError::bad_request(
                        "the namespace of the provided object does not match the namespace sent on the request",
                    ));
                }
                (Some(url), _) => {
                    meta.insert("namespace".into(), json!(url));
                }
                (None, _) => return Err(ApiError::no_route()),
            }
        } else {
            meta.remove("namespace");
        }
        for field in [
            "resourceVersion",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "selfLink",
        ] {
            meta.remove(field);
        }
        meta.insert("uid".into(), json!(self.uids.next().to_string()));
        meta.insert("creationTimestamp".into(), json!(self.now()));
        if resource.strategy.tracks_generation() {
            meta.insert("generation".into(), json!(1));
        } else {
            meta.remove("generation");
        }
        let name = meta_str(&object, "name").unwrap_or_default().to_string();
        // Status is set by the system, never by a create.
        if resource.has_status()
            && let Some(map) = object.as_object_mut()
        {
            map.remove("status");
        }
        resource.strategy.prepare_for_create(&mut object);
        resource.strategy.defaults(&mut object);
        self.check_escalation(scope, None, &object)?;
        self.admit_create(scope, &mut object).await?;
        ownership::record(resource, None, &mut object, write, &self.now())?;
        let causes = validate::create(resource, &object);
        if !causes.is_empty() {
            return Err(ApiError::invalid(
                resource.kind,
                resource.group,
                &name,
                causes,
            ));
        }
        check_depth(resource, &name, &object)?;
        self.check_namespace(scope, &name).await?;
        // Allocations come last, once nothing else can refuse the object.
        if resource
            .strategy
            .admission()
            .contains(&Admission::ClusterIp)
        {
            self.allocate_cluster_ip(&mut object).await?;
        }
        let key = Self::key(scope, &name);
        let stored = if dry_run {
            match self.store.get(&key).await.map_err(store_error)? {
                Some(_) => Err(ApiError::already_exists(resource, &name)),
                None => Ok(object.clone()),
            }
        } else {
            match self.store.create(&key, encode(&object)).await {
                Ok(kv) => return decode(resource, &kv),
                Err(StoreError::AlreadyExists { .. }) => {
                    Err(ApiError::already_exists(resource, &name))
                }
                Err(other) => Err(store_error(other)),
            }
        };
        // A dry run, or a create that failed, keeps no address.
        if resource.is("", "services") {
            ipalloc::release(self.store.as_ref(), &object).await;
        }
        stored
    }

    /// Admission-time defaults that need the store (the default storage class), and the
    /// storage-in-use protection finalizers (upstream's StorageObjectInUseProtection plugin).
    async fn admit_create(&self, scope: Scope<'_>, object: &mut Value) -> Result<(), ApiError> {
        let strategy = scope.resource.strategy;
        if let Some(finalizer) = strategy.protection_finalizer() {
            let mut wanted = finalizers(object);
            if !wanted.iter().any(|f| f == finalizer) {
                wanted.push(finalizer.to_string());
                meta_mut(object).insert("finalizers".into(), json!(wanted));
            }
        }
        if strategy
            .admission()
            .contains(&Admission::DefaultStorageClass)
            && object.pointer("/spec/storageClassName").is_none()
            && let Some(class) = self.default_storage_class().await?
            && let Some(spec) = object.get_mut("spec").and_then(Value::as_object_mut)
        {
            spec.insert("storageClassName".into(), json!(class));
        }
        if strategy.admission().contains(&Admission::ServiceAccount) {
            self.admit_service_account(scope, object).await?;
        }
        if strategy
            .admission()
            .contains(&Admission::DefaultIngressClass)
        {
            self.admit_ingress_class(object).await?;
        }
        Ok(())
    }

    /// Upstream's DefaultIngressClass admission: an Ingress that names no class, neither in
    /// `spec.ingressClassName` nor in the old annotation, gets the default one (the newest,
    /// when several are marked).
    async fn admit_ingress_class(&self, ingress: &mut Value) -> Result<(), ApiError> {
        use petset_api::kinds::ingress;
        let names_a_class = ingress
            .pointer("/spec/ingressClassName")
            .is_some_and(|class| !class.is_null())
            || ingress
                .pointer("/metadata/annotations")
                .and_then(|annotations| annotations.get(ingress::CLASS_ANNOTATION))
                .is_some();
        if names_a_class {
            return Ok(());
        }
        let classes = self
            .list_cluster_scoped(networking::GROUP, "v1", "ingressclasses")
            .await?;
        if let Some(class) = networking::newest_default_class(&classes)
            && let Some(spec) = ingress.get_mut("spec").and_then(Value::as_object_mut)
        {
            spec.insert("ingressClassName".into(), json!(class));
        }
        Ok(())
    }

    /// Upstream's ServiceAccount admission of a new pod: its account must exist, and its
    /// token volume is mounted unless the pod or the account opt out. Mirror pods are left
    /// as they are.
    ///
    /// The account is read from the store, never from a cache, so an account made just
    /// before the pod is always seen. Upstream retries a missing `default` account for about
    /// a second before refusing the pod, because its controller makes it only after the
    /// namespace; petset admits the pod at once instead: the account the controller makes has
    /// no `automountServiceAccountToken`, so the pod gets what it would get after the wait,
    /// and `kubectl run` right after `kubectl create namespace` never fails. The node's
    /// TokenRequest for the pod waits for the account (the pod stays ContainerCreating until
    /// then). Any other missing account is upstream's 403.
    async fn admit_service_account(
        &self,
        scope: Scope<'_>,
        pod: &mut Value,
    ) -> Result<(), ApiError> {
        use petset_api::service_account_admission as admission;
        if admission::is_mirror_pod(pod) {
            return Ok(());
        }
        let (Some(namespace), Some(accounts)) = (
            scope.namespace,
            resources::find("", "v1", "serviceaccounts"),
        ) else {
            return Ok(());
        };
        let name = admission::service_account_name(pod).to_string();
        let key = accounts.store_key(Some(namespace), &name);
        let account = match self.store.get(&key).await.map_err(store_error)? {
            Some(kv) => Some(decode(accounts, &kv)?),
            None if name == "default" => None,
            None => {
                let pod_name = meta_str(pod, "name").unwrap_or_default().to_string();
                return Err(ApiError::forbidden_on(
                    scope.resource,
                    &pod_name,
                    &admission::missing_account_reason(namespace, &name),
                ));
            }
        };
        if admission::should_automount(pod, account.as_ref()) {
            let suffix = self.random_suffix();
            if let Some(spec) = pod.get_mut("spec") {
                admission::mount_token(spec, &suffix);
            }
        }
        Ok(())
    }

    /// Every object of a cluster-scoped kind (none when the kind is not served).
    async fn list_cluster_scoped(
        &self,
        group: &str,
        version: &str,
        plural: &str,
    ) -> Result<Vec<Value>, ApiError> {
        let Some(resource) = resources::find(group, version, plural) else {
            return Ok(Vec::new());
        };
        let scope = Scope {
            resource,
            namespace: None,
        };
        let page = self
            .list(scope, &Filters::default(), None, None, None)
            .await?;
        Ok(page.items)
    }

    async fn default_storage_class(&self) -> Result<Option<String>, ApiError> {
        Ok(self
            .list_cluster_scoped("storage.k8s.io", "v1", "storageclasses")
            .await?
            .iter()
            .find(|class| {
                class
                    .pointer("/metadata/annotations/storageclass.kubernetes.io~1is-default-class")
                    .and_then(Value::as_str)
                    == Some("true")
            })
            .and_then(|class| meta_str(class, "name").map(str::to_string)))
    }

    async fn allocate_cluster_ip(&self, service: &mut Value) -> Result<(), ApiError> {
        let network = ipalloc::ServiceNetwork::new(self.service_network);
        ipalloc::allocate(self.store.as_ref(), network, service).await
    }

    /// PUT: replaces an object (or its status), guarded by the body's resourceVersion when given.
    pub async fn update(
        &self,
        scope: Scope<'_>,
        name: &str,
        subresource: Option<&str>,
        new: Value,
        dry_run: bool,
    ) -> Result<Value, ApiError> {
        let manager = Manager::default().at(subresource);
        self.update_by(scope, name, subresource, new, dry_run, manager)
            .await
    }

    /// PUT for a field manager, who takes the fields it changes.
    pub async fn update_by(
        &self,
        scope: Scope<'_>,
        name: &str,
        subresource: Option<&str>,
        new: Value,
        dry_run: bool,
        manager: Manager<'_>,
    ) -> Result<Value, ApiError> {
        let resource = scope.resource;
        if meta_str(&new, "name").is_some_and(|n| n != name) {
            return Err(ApiError::bad_request(format!(
                "the name of the object ({}) does not match the name on the URL ({name})",
                meta_str(&new, "name").unwrap_or_default()
            )));
        }
        let wanted_rv = meta_str(&new, "resourceVersion")
            .filter(|rv| !rv.is_empty())
            .map(str::to_string);
        self.write_loop(
            scope,
            name,
            dry_run,
            |current| {
                if let Some(rv) = &wanted_rv
                    && meta_str(current, "resourceVersion") != Some(rv.as_str())
                {
                    return Err(ApiError::conflict(resource, name));
                }
                Ok(new.clone())
            },
            subresource,
            &Write::Update(manager.at(subresource)),
        )
        .await
    }

    /// PATCH: applies a patch to the current object, retrying when another writer got there first
    /// (unless the patch itself pins a resourceVersion). Server-side apply creates a missing
    /// object; the `bool` says whether it did.
    #[allow(clippy::too_many_arguments)]
    pub async fn patch(
        &self,
        scope: Scope<'_>,
        name: &str,
        subresource: Option<&str>,
        patch_type: PatchType,
        body: &Value,
        manager: Manager<'_>,
        strict: bool,
        dry_run: bool,
    ) -> Result<(Value, bool), ApiError> {
        self.patch_as(
            scope,
            None,
            name,
            subresource,
            patch_type,
            body,
            manager,
            strict,
            dry_run,
        )
        .await
    }

    /// [`Registry::patch`] sent at `old`, an old version of the scope's type (beyond
    /// upstream): the patch applies to the object as that version shows it, and the result
    /// comes back in with that version's defaults, as upstream patches a versioned object and
    /// decodes it. What is written and returned is the served type's form.
    #[allow(clippy::too_many_arguments)]
    pub async fn patch_as(
        &self,
        scope: Scope<'_>,
        old: Option<&'static OldVersion>,
        name: &str,
        subresource: Option<&str>,
        patch_type: PatchType,
        body: &Value,
        manager: Manager<'_>,
        strict: bool,
        dry_run: bool,
    ) -> Result<(Value, bool), ApiError> {
        let resource = scope.resource;
        let old_api_version = old.map(OldVersion::api_version);
        let validation = if strict {
            FieldValidation::Strict
        } else {
            FieldValidation::Ignore
        };
        if patch_type == PatchType::Apply {
            if !body.is_object() {
                return Err(ApiError::bad_request(
                    "an apply patch must be an object (the applied configuration)",
                ));
            }
            if manager.name.is_none() {
                return Err(ApiError::bad_request(
                    "PATCH, application/apply-patch+yaml requires fieldManager parameter",
                ));
            }
            match self.get_raw(scope, name).await {
                Err(error) if error.code == 404 && subresource.is_none() => {
                    let mut object = body.clone();
                    if let Some(old) = old {
                        old.convert_in(&mut object);
                    }
                    if meta_str(&object, "name").is_none() {
                        meta_mut(&mut object).insert("name".into(), json!(name));
                    }
                    check_shape(resource, &mut object, validation)?;
                    let config = object.clone();
                    let write = Write::Apply {
                        manager: manager.name.unwrap_or_default(),
                        config: &config,
                        force: manager.force,
                        subresource: None,
                        api_version: old_api_version.as_deref(),
                    };
                    let created = self.create_as(scope, object, dry_run, &write).await?;
                    return Ok((created, true));
                }
                Err(error) => return Err(error),
                Ok(_) => {}
            }
        }
        let manager = manager.at(manager.subresource.or(subresource));
        // An applied configuration at an old version owns the fields of its served form.
        let converted = old.map(|old| {
            let mut converted = body.clone();
            old.convert_in(&mut converted);
            converted
        });
        let write = match (patch_type, manager.name) {
            (PatchType::Apply, Some(name)) => Write::Apply {
                manager: name,
                config: converted.as_ref().unwrap_or(body),
                force: manager.force,
                subresource: manager.subresource,
                api_version: old_api_version.as_deref(),
            },
            _ => Write::Update(manager),
        };
        let result = self
            .write_loop(
                scope,
                name,
                dry_run,
                |current| {
                    let shown = old.map(|old| {
                        let mut shown = current.clone();
                        old.convert_out(&mut shown);
                        shown
                    });
                    let original = shown.as_ref().unwrap_or(current);
                    let mut patched = patch::apply(patch_type, resource.strategy.merge_keys(), original, body)
                        .map_err(|error| match error {
                            PatchError::Malformed(message) => ApiError::bad_request(message),
                            PatchError::DoesNotApply(message) => ApiError::unprocessable(format!(
                                "the server rejected our request due to an error in our request: {message}"
                            )),
                            PatchError::TooLarge(message) => ApiError::too_large_because(message),
                        })?;
                    if let Some(old) = old {
                        old.convert_in(&mut patched);
                    }
                    if let Some(rv) = meta_str(&patched, "resourceVersion")
                        && meta_str(current, "resourceVersion") != Some(rv)
                    {
                        return Err(ApiError::conflict(resource, name));
                    }
                    ownership::prune_unapplied(resource, current, &mut patched, &write);
                    check_shape(resource, &mut patched, validation)?;
                    Ok(patched)
                },
                subresource,
                &write,
            )
            .await?;
        Ok((result, false))
    }

    /// The read-modify-write every update goes through.
    async fn write_loop<F>(
        &self,
        scope: Scope<'_>,
        name: &str,
        dry_run: bool,
        change: F,
        subresource: Option<&str>,
        write: &Write<'_>,
    ) -> Result<Value, ApiError>
    where
        F: Fn(&Value) -> Result<Value, ApiError>,
    {
        let resource = scope.resource;
        let key = Self::key(scope, name);
        for _ in 0..UPDATE_RETRIES {
            let (current, revision) = self.get_raw(scope, name).await?;
            let proposed = change(&current)?;
            let mut next = merge_update(resource, &current, proposed, subresource)?;
            if subresource.is_none() || subresource == Some("status") {
                resource.strategy.defaults(&mut next);
            }
            self.check_escalation(scope, Some(&current), &next)?;
            // Compared after defaulting: a spec that only differs by defaults is unchanged.
            if resource.strategy.tracks_generation() && current.get("spec") != next.get("spec") {
                let generation = meta(&current)
                    .get("generation")
                    .and_then(Value::as_i64)
                    .unwrap_or(0);
                meta_mut(&mut next).insert("generation".into(), json!(generation + 1));
            }
            ownership::record(resource, Some(&current), &mut next, write, &self.now())?;
            let causes = validate::update(resource, &current, &next);
            if !causes.is_empty() {
                return Err(ApiError::invalid(
                    resource.kind,
                    resource.group,
                    name,
                    causes,
                ));
            }
            check_depth(resource, name, &next)?;
            if semantically_equal(&current, &next) {
                return Ok(current);
            }
            if dry_run {
                return Ok(next);
            }
            // Some objects stay for someone else to remove (a pod's node, the namespace
            // controller).
            if is_deleting(&next)
                && finalizers(&next).is_empty()
                && !resource.strategy.kept_without_finalizers(&next)
            {
                // The last finalizer is gone: the object goes.
                return match self.store.delete(&key, Some(revision)).await {
                    Ok(event) => {
                        if resource.is("", "services") {
                            ipalloc::release(self.store.as_ref(), &next).await;
                        }
                        let mut gone = next;
                        meta_mut(&mut gone)
                            .insert("resourceVersion".into(), json!(event.revision.to_string()));
                        Ok(gone)
                    }
                    Err(StoreError::Conflict { .. }) => continue,
                    Err(StoreError::NotFound { .. }) => Err(ApiError::not_found(resource, name)),
                    Err(other) => Err(store_error(other)),
                };
            }
            match self.store.update(&key, encode(&next), revision).await {
                Ok(kv) => return decode(resource, &kv),
                Err(StoreError::Conflict { .. }) => continue,
                Err(StoreError::NotFound { .. }) => {
                    return Err(ApiError::not_found(resource, name));
                }
                Err(other) => return Err(store_error(other)),
            }
        }
        Err(ApiError::conflict(resource, name))
    }

    /// DELETE of one object.
    pub async fn delete(
        &self,
        scope: Scope<'_>,
        name: &str,
        options: &DeleteOptions,
    ) -> Result<Deleted, ApiError> {
        let resource = scope.resource;
        if let Some(reason) = resource.strategy.undeletable(name) {
            // Checked after the lookup, as upstream: a missing one is still a 404.
            self.get_raw(scope, name).await?;
            return Err(ApiError::forbidden_on(resource, name, reason));
        }
        let key = Self::key(scope, name);
        for _ in 0..UPDATE_RETRIES {
            let (current, revision) = self.get_raw(scope, name).await?;
            if let Some(uid) = &options.precondition_uid
                && meta_str(&current, "uid") != Some(uid.as_str())
            {
                return Err(ApiError::conflict_because(
                    resource,
                    name,
                    &format!(
                        "Precondition failed: UID in precondition: {uid}, UID in object meta: {}",
                        meta_str(&current, "uid").unwrap_or_default()
                    ),
                ));
            }
            if let Some(rv) = &options.precondition_resource_version
                && meta_str(&current, "resourceVersion") != Some(rv.as_str())
            {
                return Err(ApiError::conflict_because(
                    resource,
                    name,
                    &format!(
                        "Precondition failed: ResourceVersion in precondition: {rv}, ResourceVersion in object meta: {}",
                        meta_str(&current, "resourceVersion").unwrap_or_default()
                    ),
                ));
            }
            let mut next = current.clone();
            let policy =
                options
                    .propagation_policy
                    .as_deref()
                    .or(match options.orphan_dependents {
                        Some(true) => Some("Orphan"),
                        Some(false) => Some("Background"),
                        None => None,
                    });
            let mut wanted_finalizers = finalizers(&current);
            match policy {
                Some("Orphan") => {
                    wanted_finalizers.retain(|f| f != FOREGROUND_FINALIZER);
                    if !wanted_finalizers.iter().any(|f| f == ORPHAN_FINALIZER) {
                        wanted_finalizers.push(ORPHAN_FINALIZER.into());
                    }
                }
                Some("Foreground") => {
                    wanted_finalizers.retain(|f| f != ORPHAN_FINALIZER);
                    if !wanted_finalizers.iter().any(|f| f == FOREGROUND_FINALIZER) {
                        wanted_finalizers.push(FOREGROUND_FINALIZER.into());
                    }
                }
                Some("Background") | None => {}
                Some(other) => {
                    return Err(ApiError::invalid(
                        "DeleteOptions",
                        "",
                        "",
                        vec![Cause::not_supported(
                            "propagationPolicy",
                            &json!(other),
                            &["Foreground", "Background", "Orphan", "nil"],
                        )],
                    ));
                }
            }
            let grace = resource
                .strategy
                .grace_period(&current, options.grace_period_seconds);
            let lifecycle = resource.strategy.begin_deletion(&mut next);
            let keep = !wanted_finalizers.is_empty() || grace > 0 || lifecycle;
            if !keep {
                if options.dry_run {
                    return Ok(Deleted::Gone(current));
                }
                match self.store.delete(&key, Some(revision)).await {
                    Ok(event) => {
                        if resource.is("", "services") {
                            ipalloc::release(self.store.as_ref(), &current).await;
                        }
                        let mut gone = current;
                        meta_mut(&mut gone)
                            .insert("resourceVersion".into(), json!(event.revision.to_string()));
                        return Ok(Deleted::Gone(gone));
                    }
                    Err(StoreError::Conflict { .. }) => continue,
                    Err(StoreError::NotFound { .. }) => {
                        return Err(ApiError::not_found(resource, name));
                    }
                    Err(other) => return Err(store_error(other)),
                }
            }
            let already_deleting = is_deleting(&current);
            let meta = meta_mut(&mut next);
            meta.insert("finalizers".into(), json!(wanted_finalizers));
            if wanted_finalizers.is_empty() {
                meta.remove("finalizers");
            }
            let now = self.clock.now();
            let deadline = now
                .checked_add(jiff::SignedDuration::from_secs(grace))
                .unwrap_or(now);
            let shortens = meta
                .get("deletionGracePeriodSeconds")
                .and_then(Value::as_i64)
                .is_none_or(|existing| grace < existing);
            if !already_deleting || shortens {
                meta.insert("deletionTimestamp".into(), json!(time::format(deadline)));
                meta.insert("deletionGracePeriodSeconds".into(), json!(grace));
            }
            if next == current {
                return Ok(Deleted::Pending(current));
            }
            if options.dry_run {
                return Ok(Deleted::Pending(next));
            }
            match self.store.update(&key, encode(&next), revision).await {
                Ok(kv) => return Ok(Deleted::Pending(decode(resource, &kv)?)),
                Err(StoreError::Conflict { .. }) => continue,
                Err(StoreError::NotFound { .. }) => {
                    return Err(ApiError::not_found(resource, name));
                }
                Err(other) => return Err(store_error(other)),
            }
        }
        Err(ApiError::conflict(resource, name))
    }

    /// Removes an object outright, whatever its finalizers: the node agent's final word on a
    /// terminating pod, and the namespace controller's last step.
    pub async fn remove(
        &self,
        scope: Scope<'_>,
        name: &str,
        uid: Option<&str>,
    ) -> Result<(), ApiError> {
        let key = Self::key(scope, name);
        for _ in 0..UPDATE_RETRIES {
            let (current, revision) = self.get_raw(scope, name).await?;
            if uid.is_some_and(|u| meta_str(&current, "uid") != Some(u)) {
                return Ok(());
            }
            match self.store.delete(&key, Some(revision)).await {
                Ok(_) => return Ok(()),
                Err(StoreError::Conflict { .. }) => continue,
                Err(StoreError::NotFound { .. }) => return Ok(()),
                Err(other) => return Err(store_error(other)),
            }
        }
        Err(ApiError::conflict(scope.resource, name))
    }

    /// Creates the objects every cluster starts with, when missing, and reconciles the default
    /// RBAC policy.
    pub async fn bootstrap(&self) -> Result<(), ApiError> {
        self.ensure_system_objects().await?;
        crate::auth::bootstrap_policy::reconcile(self).await?;
        let network = ipalloc::ServiceNetwork::new(self.service_network);
        ipalloc::repair(self.store.as_ref(), network, ipalloc::RESERVATION_GRACE).await?;
        if let Some(classes) = resources::find("storage.k8s.io", "v1", "storageclasses") {
            // As rancher's class: a local volume is made only once the scheduler has chosen
            // its first pod's node, so the volume never pins a pod where it cannot run.
            let local_path = json!({
                "metadata": {"name": "local-path", "annotations": {"storageclass.kubernetes.io/is-default-class": "true"}},
                "provisioner": "petset.dev/local-path",
                "reclaimPolicy": "Delete",
                "volumeBindingMode": "WaitForFirstConsumer",
                "allowVolumeExpansion": true
            });
            self.create_if_missing(classes, None, local_path).await?;
        }
        // The class of the node's ingress proxy, made when missing as the StorageClass is: a
        // class the user changed is kept, and one they deleted comes back at the next start.
        if let Some(classes) = resources::find(networking::GROUP, "v1", "ingressclasses") {
            self.create_if_missing(classes, None, ingressclass::petset_class())
                .await?;
        }
        Ok(())
    }

    /// The system namespaces and the `kubernetes` Service, re-created whenever they are
    /// missing, as upstream's system-namespaces and kubernetes-service controllers do
    /// (kube-node-lease may be deleted; it comes back).
    pub async fn ensure_system_objects(&self) -> Result<(), ApiError> {
        for namespace in SYSTEM_NAMESPACES {
            let object = json!({"metadata": {"name": namespace,
                "labels": {"kubernetes.io/metadata.name": namespace}}});
            self.create_if_missing(namespaces_type(), None, object)
                .await?;
        }
        let first = Ipv4Addr::from(u32::from(self.service_network.0) + 1).to_string();
        let kubernetes = json!({
            "metadata": {"name": "kubernetes", "labels": {"component": "apiserver", "provider": "kubernetes"}},
            "spec": {"clusterIP": first, "ports": [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": 6443}]}
        });
        self.create_if_missing(services_type(), Some("default"), kubernetes)
            .await
    }

    async fn create_if_missing(
        &self,
        resource: &'static ResourceType,
        namespace: Option<&str>,
        object: Value,
    ) -> Result<(), ApiError> {
        let scope = Scope {
            resource,
            namespace,
        };
        // Looked up first: creating an existing Service again fails on its cluster IP (422,
        // as upstream) before the name is compared, and every restart would stop there.
        let name = meta_str(&object, "name").unwrap_or_default().to_string();
        if self.get(scope, &name).await.is_ok() {
            return Ok(());
        }
        match self.create(scope, object, false).await {
            Ok(_) => Ok(()),
            Err(error) if error.code == 409 => Ok(()),
            Err(error) => Err(error),
        }
    }
}

/// Refuses an object no reader could parse back: see `petset_api::depth`.
fn check_depth(resource: &ResourceType, name: &str, object: &Value) -> Result<(), ApiError> {
    match depth::too_deep(object) {
        None => Ok(()),
        Some((field, levels)) => Err(ApiError::invalid(
            resource.kind,
            resource.group,
            name,
            vec![Cause::invalid(
                field,
                &json!(format!("{levels} levels of nesting")),
                &format!(
                    "may not nest more than {} levels deep, or no client could read it back",
                    depth::MAX_DEPTH
                ),
            )],
        )),
    }
}

/// The namespaces every cluster has.
pub const SYSTEM_NAMESPACES: [&str; 4] =
    ["default", "kube-system", "kube-public", "kube-node-lease"];

/// Namespaces are core to the registry's own checks.
pub fn namespaces_type() -> &'static ResourceType {
    resources::RESOURCES
        .iter()
        .find(|r| r.is("", "namespaces"))
        .unwrap_or(&resources::RESOURCES[0])
}

fn services_type() -> &'static ResourceType {
    resources::RESOURCES
        .iter()
        .find(|r| r.is("", "services"))
        .unwrap_or(&resources::RESOURCES[0])
}

/// Combines the stored object with what a client sent, keeping what clients may not change.
fn merge_update(
    resource: &ResourceType,
    current: &Value,
    proposed: Value,
    subresource: Option<&str>,
) -> Result<Value, ApiError> {
    if !proposed.is_object() {
        return Err(ApiError::bad_request("the body must be a JSON object"));
    }
    let mut next = match subresource {
        Some("status") => {
            // Only status (and for namespaces nothing else) changes through /status.
            let mut next = current.clone();
            next["status"] = proposed.get("status").cloned().unwrap_or(Value::Null);
            if next["status"].is_null()
                && let Some(map) = next.as_object_mut()
            {
                map.remove("status");
            }
            next
        }
        // The binding subresource sets the node and the PodScheduled condition in one write.
        Some("binding") => proposed,
        Some("finalize") => {
            let mut next = current.clone();
            next["spec"] = proposed.get("spec").cloned().unwrap_or_else(|| json!({}));
            next
        }
        _ => {
            let mut next = proposed;
            if resource.has_status() {
                match current.get("status") {
                    Some(status) => next["status"] = status.clone(),
                    None => {
                        if let Some(map) = next.as_object_mut() {
                            map.remove("status");
                        }
                    }
                }
            }
            resource.strategy.prepare_for_update(current, &mut next);
            next
        }
    };
    let current_meta = meta(current).clone();
    let meta = meta_mut(&mut next);
    for field in [
        "uid",
        "creationTimestamp",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
        "namespace",
        "name",
        "generation",
        "resourceVersion",
    ] {
        match current_meta.get(field) {
            Some(value) => meta.insert(field.into(), value.clone()),
            None => meta.remove(field),
        };
    }
    // Nothing new may be attached to an object on its way out.
    if is_deleting(current) {
        let old = finalizers(current);
        let added = finalizers(&next).into_iter().any(|f| !old.contains(&f));
        if added {
            return Err(ApiError::invalid(
                resource.kind,
                resource.group,
                current_meta
                    .get("name")
                    .and_then(Value::as_str)
                    .unwrap_or_default(),
                vec![Cause::forbidden(
                    "metadata.finalizers",
                    "no new finalizers can be added if the object is being deleted",
                )],
            ));
        }
    }
    Ok(next)
}

/// Equal for the purpose of "did anything change": the times of managedFields entries aside
/// (upstream keeps the stored object when only those would change), ownership included.
fn semantically_equal(current: &Value, next: &Value) -> bool {
    let strip = |v: &Value| {
        let mut v = v.clone();
        if let Some(meta) = v.get_mut("metadata").and_then(Value::as_object_mut) {
            meta.remove("resourceVersion");
            if let Some(Value::Array(entries)) = meta.get_mut("managedFields") {
                for entry in entries.iter_mut().filter_map(Value::as_object_mut) {
                    entry.remove("time");
                }
            }
        }
        v
    };
    strip(current) == strip(next)
}

fn encode_continue(revision: Revision, key: &str) -> String {
    let hex: String = key.bytes().map(|b| format!("{b:02x}")).collect();
    format!("{revision}-{hex}")
}

fn decode_continue(token: &str) -> Result<(Revision, String), ApiError> {
    let invalid = || ApiError::bad_request(format!("continue key is not valid: {token:?}"));
    let (revision, hex) = token.split_once('-').ok_or_else(invalid)?;
    let revision: Revision = revision.parse().map_err(|_| invalid())?;
    if hex.len() % 2 != 0 {
        return Err(invalid());
    }
    // By bytes: a token is ASCII hex, and slicing text with multi-byte characters would panic.
    let bytes: Result<Vec<u8>, _> = hex
        .as_bytes()
        .chunks(2)
        .map(|pair| {
            std::str::from_utf8(pair)
                .map_err(|_| ())
                .and_then(|digits| u8::from_str_radix(digits, 16).map_err(|_| ()))
        })
        .collect();
    let key = String::from_utf8(bytes.map_err(|_| invalid())?).map_err(|_| invalid())?;
    Ok((revision, key))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn malformed_continue_tokens_are_bad_requests() {
        for token in ["1-a\u{e9}0", "1-\u{e9}", "x-00", "1-0", "1-zz"] {
            assert_eq!(
                decode_continue(token).expect_err(token).code,
                400,
                "{token}"
            );
        }
    }

    #[test]
    fn metadata_is_made_where_it_is_missing_or_not_a_map() {
        for mut object in [json!([]), json!("x"), json!({"metadata": 1}), json!({})] {
            meta_mut(&mut object).insert("name".into(), json!("a"));
            assert_eq!(object["metadata"]["name"], "a");
        }
    }

    #[test]
    fn continue_tokens_round_trip() {
        let token = encode_continue(42, "/registry/core/pods/default/web-1\0");
        assert_eq!(
            decode_continue(&token).expect("valid"),
            (42, "/registry/core/pods/default/web-1\0".to_string())
        );
        assert!(decode_continue("nonsense").is_err());
    }

    #[test]
    fn generate_name_suffixes_are_five_safe_characters() {
        let registry = Registry::new(Arc::new(petset_store::LocalStore::in_memory()));
        let suffix = registry.random_suffix();
        assert_eq!(suffix.len(), 5);
        assert!(suffix.chars().all(|c| c.is_ascii_alphanumeric()));
    }
}
