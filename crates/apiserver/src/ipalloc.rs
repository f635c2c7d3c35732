//! ClusterIP allocation through the store, safe with several API servers over one store: each
//! allocated address is one key, `/registry/networking.k8s.io/ipaddresses/<ip>`, written with
//! create-if-absent, so of two servers picking one address at once exactly one gets it
//! (upstream's `IPAddress` objects, named by their address). The key holds the address as a
//! `networking.k8s.io/v1` IPAddress naming its Service in `spec.parentRef` (with the Service's
//! uid, as v1alpha1 had it). Nothing serves that path, so watches and lists skip it.
//!
//! An address whose Service is gone is released by the delete, or else (a crash between the
//! two writes, a create that failed after its address was reserved) by [`repair`] at start
//! or by the next request for that very address, once the key is older than
//! [`RESERVATION_GRACE`]: younger ones may belong to a create still in flight on another
//! server.

use std::collections::HashSet;
use std::net::Ipv4Addr;
use std::time::Duration;

use bytes::Bytes;
use petset_api::{ApiError, Cause, resources, time};
use petset_store::{KeyValue, ListOptions, Store, StoreError};
use serde_json::{Value, json};

use crate::registry::store_error;

const PREFIX: &str = "/registry/networking.k8s.io/ipaddresses/";
/// How long a reserved address may wait for its Service before it counts as leaked: far
/// longer than any create between its two writes.
pub const RESERVATION_GRACE: Duration = Duration::from_secs(60);
/// `.1` is the `kubernetes` Service's; the rest start here, as they always have in petset.
const FIRST_DYNAMIC_OFFSET: u32 = 10;

/// A service range: network address and prefix length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServiceNetwork {
    pub base: Ipv4Addr,
    pub bits: u8,
}

impl ServiceNetwork {
    pub fn new((base, bits): (Ipv4Addr, u8)) -> Self {
        Self {
            base,
            bits: bits.min(32),
        }
    }

    fn mask(&self) -> u32 {
        if self.bits == 0 {
            0
        } else {
            u32::MAX << (32 - u32::from(self.bits))
        }
    }

    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        u32::from(ip) & self.mask() == u32::from(self.base) & self.mask()
    }

    /// Every address handed out without a request, in order (the network and broadcast
    /// addresses never).
    fn dynamic(&self) -> impl Iterator<Item = Ipv4Addr> {
        let base = u32::from(self.base) & self.mask();
        let size = (!self.mask()).saturating_add(1).max(1);
        (FIRST_DYNAMIC_OFFSET..size.saturating_sub(1))
            .map(move |offset| Ipv4Addr::from(base + offset))
    }
}

impl std::fmt::Display for ServiceNetwork {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.base, self.bits)
    }
}

fn key_of(ip: Ipv4Addr) -> String {
    format!("{PREFIX}{ip}")
}

/// The Service an address belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Parent {
    namespace: String,
    name: String,
    uid: String,
}

impl Parent {
    fn of(service: &Value) -> Self {
        let field = |name: &str| {
            service
                .pointer(&format!("/metadata/{name}"))
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string()
        };
        Self {
            namespace: field("namespace"),
            name: field("name"),
            uid: field("uid"),
        }
    }

    /// The parent a stored address names; `None` when the value is not one of ours.
    fn stored(value: &[u8]) -> Option<(Self, Option<jiff::Timestamp>)> {
        let address: Value = serde_json::from_slice(value).ok()?;
        let parent = address.pointer("/spec/parentRef")?;
        let field = |name: &str| {
            parent
                .get(name)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string()
        };
        let created = address
            .pointer("/metadata/creationTimestamp")
            .and_then(Value::as_str)
            .and_then(time::parse);
        Some((
            Self {
                namespace: field("namespace"),
                name: field("name"),
                uid: field("uid"),
            },
            created,
        ))
    }

    /// The stored IPAddress for `ip`, shaped as upstream's networking.k8s.io/v1 object.
    fn address(&self, ip: Ipv4Addr) -> Bytes {
        let address = json!({
            "apiVersion": "networking.k8s.io/v1",
            "kind": "IPAddress",
            "metadata": {
                "name": ip.to_string(),
                "creationTimestamp": time::now(),
                "labels": {
                    "ipaddress.kubernetes.io/ip-family": "IPv4",
                    "ipaddress.kubernetes.io/managed-by": "ipallocator.k8s.io",
                },
            },
            "spec": {"parentRef": {
                "group": "",
                "resource": "services",
                "namespace": self.namespace,
                "name": self.name,
                "uid": self.uid,
            }},
        });
        Bytes::from(serde_json::to_vec(&address).unwrap_or_default())
    }
}

/// Gives `service` its ClusterIP: the one it asks for (`spec.clusterIP`) if free and in range,
/// else the first free one; headless and ExternalName Services get none.
pub async fn allocate(
    store: &dyn Store,
    network: ServiceNetwork,
    service: &mut Value,
) -> Result<(), ApiError> {
    let requested = service
        .pointer("/spec/clusterIP")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let service_type = service
        .pointer("/spec/type")
        .and_then(Value::as_str)
        .unwrap_or("ClusterIP");
    if service_type == "ExternalName" {
        return Ok(());
    }
    if requested == "None" {
        if let Some(spec) = service.get_mut("spec").and_then(Value::as_object_mut) {
            spec.insert("clusterIPs".into(), json!(["None"]));
        }
        return Ok(());
    }
    let parent = Parent::of(service);
    let chosen = if requested.is_empty() {
        allocate_next(store, network, &parent).await?
    } else {
        let ip: Ipv4Addr = requested.parse().map_err(|_| {
            invalid(
                &parent,
                Cause::invalid(
                    "spec.clusterIPs[0]",
                    &json!(requested),
                    "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)",
                ),
            )
        })?;
        if !network.contains(ip) {
            return Err(not_allocated(
                &parent,
                ip,
                &format!(
                    "provided IP is not in the valid range. The range of valid IPs is {network}"
                ),
            ));
        }
        if !reserve(store, ip, &parent).await? {
            return Err(not_allocated(
                &parent,
                ip,
                "provided IP is already allocated",
            ));
        }
        ip
    };
    if let Some(spec) = service.get_mut("spec").and_then(Value::as_object_mut) {
        spec.insert("clusterIP".into(), json!(chosen.to_string()));
        spec.insert("clusterIPs".into(), json!([chosen.to_string()]));
    }
    Ok(())
}

/// The first address no key holds, reserved; a key another server wrote meanwhile moves on
/// to the next.
async fn allocate_next(
    store: &dyn Store,
    network: ServiceNetwork,
    parent: &Parent,
) -> Result<Ipv4Addr, ApiError> {
    let taken: HashSet<Ipv4Addr> = addresses(store)
        .await?
        .iter()
        .filter_map(|kv| address_of(&kv.key))
        .collect();
    for ip in network.dynamic().filter(|ip| !taken.contains(ip)) {
        match store.create(&key_of(ip), parent.address(ip)).await {
            Ok(_) => return Ok(ip),
            Err(StoreError::AlreadyExists { .. }) => continue,
            Err(other) => return Err(store_error(other)),
        }
    }
    Err(ApiError::internal("the service IP range is full"))
}

/// Takes `ip` for `parent`: a free address, one it already holds, or one leaked by a Service
/// that is gone. Whether it is `parent`'s now.
async fn reserve(store: &dyn Store, ip: Ipv4Addr, parent: &Parent) -> Result<bool, ApiError> {
    let key = key_of(ip);
    match store.create(&key, parent.address(ip)).await {
        Ok(_) => return Ok(true),
        Err(StoreError::AlreadyExists { .. }) => {}
        Err(other) => return Err(store_error(other)),
    }
    let Some(current) = store.get(&key).await.map_err(store_error)? else {
        // Released in between: one more try, as a fresh create.
        return match store.create(&key, parent.address(ip)).await {
            Ok(_) => Ok(true),
            Err(StoreError::AlreadyExists { .. }) => Ok(false),
            Err(other) => Err(store_error(other)),
        };
    };
    let holder = Parent::stored(&current.value);
    if holder.as_ref().is_some_and(|(holder, _)| holder == parent) {
        return Ok(true);
    }
    if !leaked(store, ip, holder, jiff::Timestamp::now(), RESERVATION_GRACE).await? {
        return Ok(false);
    }
    match store
        .update(&key, parent.address(ip), current.mod_revision)
        .await
    {
        Ok(_) => Ok(true),
        Err(StoreError::Conflict { .. } | StoreError::NotFound { .. }) => Ok(false),
        Err(other) => Err(store_error(other)),
    }
}

/// Whether an address key is held by nothing: its Service (by namespace, name and uid) is gone
/// or has another address, and the key is older than `grace`.
async fn leaked(
    store: &dyn Store,
    ip: Ipv4Addr,
    holder: Option<(Parent, Option<jiff::Timestamp>)>,
    now: jiff::Timestamp,
    grace: Duration,
) -> Result<bool, ApiError> {
    // A value that is not one of ours is left alone.
    let Some((holder, created)) = holder else {
        return Ok(false);
    };
    let old_enough = created.is_some_and(|created| {
        jiff::SignedDuration::try_from(grace)
            .ok()
            .and_then(|grace| created.checked_add(grace).ok())
            .is_some_and(|expiry| expiry <= now)
    });
    if !old_enough {
        return Ok(false);
    }
    let Some(services) = resources::find("", "v1", "services") else {
        return Ok(false);
    };
    let key = services.store_key(Some(&holder.namespace), &holder.name);
    let Some(service) = store.get(&key).await.map_err(store_error)? else {
        return Ok(true);
    };
    let service: Value = serde_json::from_slice(&service.value).unwrap_or(Value::Null);
    Ok(!holds(&service, &holder, ip))
}

/// Whether `service` is the one `holder` names and has `ip`.
fn holds(service: &Value, holder: &Parent, ip: Ipv4Addr) -> bool {
    Parent::of(service).uid == holder.uid && address_in(service) == Some(ip)
}

/// A Service's IPv4 ClusterIP (none for headless and ExternalName Services).
fn address_in(service: &Value) -> Option<Ipv4Addr> {
    service
        .pointer("/spec/clusterIP")
        .and_then(Value::as_str)
        .and_then(|ip| ip.parse().ok())
}

/// Frees the address of a Service that is gone (or never got stored), if the address is
/// still its own. A failure leaves a leaked key for [`repair`] to find, never a shared one.
pub async fn release(store: &dyn Store, service: &Value) {
    let Some(ip) = address_in(service) else {
        return;
    };
    let parent = Parent::of(service);
    let key = key_of(ip);
    let current = match store.get(&key).await {
        Ok(Some(current)) => current,
        Ok(None) => return,
        Err(error) => {
            tracing::warn!(%error, %ip, "could not read a ClusterIP to release it");
            return;
        }
    };
    if Parent::stored(&current.value).is_none_or(|(holder, _)| holder != parent) {
        return;
    }
    match store.delete(&key, Some(current.mod_revision)).await {
        Ok(_) | Err(StoreError::NotFound { .. } | StoreError::Conflict { .. }) => {}
        Err(error) => tracing::warn!(%error, %ip, "could not release a ClusterIP"),
    }
}

/// What a repair pass did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Repaired {
    /// Addresses of Services that had no key (made before keys existed): now recorded.
    pub recorded: Vec<Ipv4Addr>,
    /// Keys whose Service is gone: released.
    pub released: Vec<Ipv4Addr>,
}

/// Upstream's repair loop, run at start: every Service's address has its key, and keys older
/// than `grace` whose Service is gone are released.
pub async fn repair(
    store: &dyn Store,
    network: ServiceNetwork,
    grace: Duration,
) -> Result<Repaired, ApiError> {
    let mut repaired = Repaired::default();
    let Some(services_type) = resources::find("", "v1", "services") else {
        return Ok(repaired);
    };
    // Leaks first: a Service re-created under its old name and address then gets its key back
    // below.
    let now = jiff::Timestamp::now();
    let mut held = HashSet::new();
    for kv in addresses(store).await? {
        let Some(ip) = address_of(&kv.key) else {
            continue;
        };
        if !leaked(store, ip, Parent::stored(&kv.value), now, grace).await? {
            held.insert(ip);
            continue;
        }
        match store.delete(&kv.key, Some(kv.mod_revision)).await {
            Ok(_) => repaired.released.push(ip),
            Err(StoreError::NotFound { .. } | StoreError::Conflict { .. }) => {}
            Err(other) => return Err(store_error(other)),
        }
    }
    let services = store
        .list(ListOptions {
            prefix: services_type.store_prefix(),
            ..ListOptions::default()
        })
        .await
        .map_err(store_error)?;
    for kv in &services.items {
        let Ok(service) = serde_json::from_slice::<Value>(&kv.value) else {
            continue;
        };
        let Some(ip) = address_in(&service) else {
            continue;
        };
        if held.contains(&ip) || !network.contains(ip) {
            continue;
        }
        let parent = Parent::of(&service);
        match store.create(&key_of(ip), parent.address(ip)).await {
            Ok(_) => {
                held.insert(ip);
                repaired.recorded.push(ip);
            }
            Err(StoreError::AlreadyExists { .. }) => {}
            Err(other) => return Err(store_error(other)),
        }
    }
    if !repaired.recorded.is_empty() || !repaired.released.is_empty() {
        tracing::info!(recorded = ?repaired.recorded, released = ?repaired.released, "repaired ClusterIP allocations");
    }
    Ok(repaired)
}

async fn addresses(store: &dyn Store) -> Result<Vec<KeyValue>, ApiError> {
    Ok(store
        .list(ListOptions {
            prefix: PREFIX.into(),
            ..ListOptions::default()
        })
        .await
        .map_err(store_error)?
        .items)
}

fn address_of(key: &str) -> Option<Ipv4Addr> {
    key.strip_prefix(PREFIX)?.parse().ok()
}

fn invalid(parent: &Parent, cause: Cause) -> ApiError {
    ApiError::invalid("Service", "", &parent.name, vec![cause])
}

/// `spec.clusterIPs: Invalid value: []string{"<ip>"}: failed to allocate IP <ip>: <why>`, as
/// upstream renders the list it was given.
fn not_allocated(parent: &Parent, ip: Ipv4Addr, why: &str) -> ApiError {
    invalid(
        parent,
        Cause {
            reason: "FieldValueInvalid",
            field: "spec.clusterIPs".into(),
            message: format!(
                "Invalid value: []string{{\"{ip}\"}}: failed to allocate IP {ip}: {why}"
            ),
        },
    )
}

#[cfg(test)]
mod tests;
