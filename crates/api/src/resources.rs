//! The catalogue of served resource types: what discovery advertises, what the URL router
//! accepts, where each type lives in the store, and (through its entry) how a kind is shaped,
//! printed and handled. The entries live with their kinds (`kinds/`); the list of them is
//! `served_kinds!`.

use std::sync::OnceLock;

use crate::kinds::Strategy;
use crate::proto::Field;
use crate::shape::RoundTrip;
use crate::table::Printing;

/// One served resource type (a group, a version and a plural name).
pub struct ResourceType {
    /// API group; `""` is the core group.
    pub group: &'static str,
    pub version: &'static str,
    pub kind: &'static str,
    pub plural: &'static str,
    pub singular: &'static str,
    pub namespaced: bool,
    pub short_names: &'static [&'static str],
    pub categories: &'static [&'static str],
    pub subresources: &'static [Subresource],
    /// Subresources served but not advertised in discovery (as upstream lists none of these).
    pub unlisted_subresources: &'static [&'static str],
    /// Decodes an object as the kind's typed struct and encodes it back (shape checks).
    pub round_trip: RoundTrip,
    /// The columns `kubectl get` shows.
    pub printing: Printing,
    /// The message layout of protobuf bodies, for the kinds kubectl sends that way.
    pub protobuf: Option<&'static [Field]>,
    /// The kind's own rules.
    pub strategy: &'static dyn Strategy,
    /// What may be done to the collection and its objects: [`VERBS`], or [`CREATE_ONLY`] for
    /// the reviews the API server answers without storing anything.
    pub verbs: &'static [&'static str],
}

impl PartialEq for ResourceType {
    fn eq(&self, other: &Self) -> bool {
        (self.group, self.version, self.plural) == (other.group, other.version, other.plural)
    }
}

impl Eq for ResourceType {}

impl std::fmt::Debug for ResourceType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{} {}", self.group, self.version, self.plural)
    }
}

/// A subresource such as `statefulsets/scale`.
#[derive(Debug, PartialEq, Eq)]
pub struct Subresource {
    pub name: &'static str,
    pub group: &'static str,
    pub version: &'static str,
    pub kind: &'static str,
    pub verbs: &'static [&'static str],
}

/// Verbs of every served resource type.
pub const VERBS: &[&str] = &[
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
];

pub const STATUS_VERBS: &[&str] = &["get", "patch", "update"];
/// A kind that is only ever created, answered at once and never stored (the access and token
/// reviews).
pub const CREATE_ONLY: &[&str] = &["create"];
pub const CONNECT_VERBS: &[&str] = &["create", "get"];
pub const PROXY_VERBS: &[&str] = &["create", "delete", "get", "patch", "update"];

/// The `status` subresource of a kind.
pub const fn status(group: &'static str, version: &'static str, kind: &'static str) -> Subresource {
    Subresource {
        name: "status",
        group,
        version,
        kind,
        verbs: STATUS_VERBS,
    }
}

/// An entry with the common parts filled in: no short names, categories or subresources,
/// printed with NAME and AGE, handled by the generic strategy.
pub const fn entry(
    group: &'static str,
    kind: &'static str,
    plural: &'static str,
    singular: &'static str,
    namespaced: bool,
    round_trip: RoundTrip,
) -> ResourceType {
    ResourceType {
        group,
        version: "v1",
        kind,
        plural,
        singular,
        namespaced,
        short_names: &[],
        categories: &[],
        subresources: &[],
        unlisted_subresources: &[],
        round_trip,
        printing: crate::table::NAME_AGE,
        protobuf: None,
        strategy: &crate::kinds::generic::Generic,
        verbs: VERBS,
    }
}

macro_rules! catalogue {
    ($($kind:ident),* $(,)?) => {
        /// Every served resource type, in the order discovery lists them.
        pub static RESOURCES: &[ResourceType] = &[$(crate::kinds::$kind::RESOURCE),*];
    };
}

crate::served_kinds!(catalogue);

/// Group versions in discovery preference order: as they first appear in the catalogue.
pub fn group_versions() -> &'static [(&'static str, &'static str)] {
    static GROUP_VERSIONS: OnceLock<Vec<(&'static str, &'static str)>> = OnceLock::new();
    GROUP_VERSIONS.get_or_init(|| {
        let mut found: Vec<(&str, &str)> = Vec::new();
        for resource in RESOURCES {
            if !found.contains(&(resource.group, resource.version)) {
                found.push((resource.group, resource.version));
            }
        }
        found
    })
}

impl ResourceType {
    /// `apiVersion` as written in objects: `v1` or `apps/v1`.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_string()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// The name Status messages use: `pods`, `statefulsets.apps`.
    pub fn qualified_plural(&self) -> String {
        if self.group.is_empty() {
            self.plural.to_string()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }

    /// Where objects of this type live in the store. The two event types (core and
    /// events.k8s.io) are one resource upstream, but petset keeps them apart: each is served in
    /// its own shape.
    pub fn store_prefix(&self) -> String {
        let group = if self.group.is_empty() {
            "core"
        } else {
            self.group
        };
        format!("/registry/{group}/{}/", self.plural)
    }

    /// The store key of one object.
    pub fn store_key(&self, namespace: Option<&str>, name: &str) -> String {
        match namespace {
            Some(namespace) if self.namespaced => {
                format!("{}{namespace}/{name}", self.store_prefix())
            }
            _ => format!("{}{name}", self.store_prefix()),
        }
    }

    /// The store prefix of a list: one namespace, or all of them.
    pub fn list_prefix(&self, namespace: Option<&str>) -> String {
        match namespace {
            Some(namespace) if self.namespaced => format!("{}{namespace}/", self.store_prefix()),
            _ => self.store_prefix(),
        }
    }

    pub fn subresource(&self, name: &str) -> Option<&'static Subresource> {
        self.subresources.iter().find(|sub| sub.name == name)
    }

    pub fn has_status(&self) -> bool {
        self.subresource("status").is_some()
    }

    pub fn is(&self, group: &str, plural: &str) -> bool {
        self.group == group && self.plural == plural
    }

    /// Whether `name` is a subresource this type serves, advertised or not.
    /// Whether objects of this kind are kept (every kind but the reviews).
    pub fn is_stored(&self) -> bool {
        self.verbs != CREATE_ONLY
    }

    pub fn serves_subresource(&self, name: &str) -> bool {
        self.subresource(name).is_some() || self.unlisted_subresources.contains(&name)
    }

    /// Whether a field selector may name `path`.
    pub fn selectable_field(&self, path: &str) -> bool {
        matches!(path, "metadata.name" | "metadata.namespace")
            || self.strategy.selectable_field(path)
    }
}

/// Finds the served type behind a URL's group, version and plural.
pub fn find(group: &str, version: &str, plural: &str) -> Option<&'static ResourceType> {
    RESOURCES
        .iter()
        .find(|r| r.group == group && r.version == version && r.plural == plural)
}

/// Finds the served type for an object's `apiVersion` and `kind`.
pub fn find_kind(api_version: &str, kind: &str) -> Option<&'static ResourceType> {
    let (group, version) = split_api_version(api_version);
    RESOURCES
        .iter()
        .find(|r| r.group == group && r.version == version && r.kind == kind)
}

/// Finds a type by the key prefix of a store key (the inverse of `store_key`).
pub fn find_by_key(key: &str) -> Option<&'static ResourceType> {
    RESOURCES
        .iter()
        .find(|r| key.starts_with(r.store_prefix().as_str()))
}

/// `apps/v1` → (`apps`, `v1`); `v1` → (``, `v1`).
pub fn split_api_version(api_version: &str) -> (&str, &str) {
    match api_version.split_once('/') {
        Some((group, version)) => (group, version),
        None => ("", api_version),
    }
}

/// Whether a group version is served.
pub fn serves_group_version(group: &str, version: &str) -> bool {
    group_versions().contains(&(group, version))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip_to_their_type() {
        for resource in RESOURCES {
            let key = resource.store_key(Some("default"), "x");
            // A kind served at two versions (HorizontalPodAutoscaler) is stored once: its key
            // names the kind, not the version.
            let found = find_by_key(&key).map(|r| (r.group, r.plural));
            assert_eq!(found, Some((resource.group, resource.plural)), "{key}");
        }
    }

    #[test]
    fn the_two_event_types_are_stored_apart() {
        let core = find("", "v1", "events").map(ResourceType::store_prefix);
        let new = find("events.k8s.io", "v1", "events").map(ResourceType::store_prefix);
        assert_ne!(core, new);
    }

    #[test]
    fn group_versions_keep_discoverys_order() {
        assert_eq!(
            group_versions(),
            [
                ("", "v1"),
                ("apps", "v1"),
                ("events.k8s.io", "v1"),
                ("autoscaling", "v2"),
                ("autoscaling", "v1"),
                ("batch", "v1"),
                ("policy", "v1"),
                ("rbac.authorization.k8s.io", "v1"),
                ("storage.k8s.io", "v1"),
                ("discovery.k8s.io", "v1"),
                ("coordination.k8s.io", "v1"),
                ("networking.k8s.io", "v1"),
                ("authentication.k8s.io", "v1"),
                ("authorization.k8s.io", "v1"),
            ]
        );
    }

    #[test]
    fn every_type_is_in_a_served_group_version() {
        for resource in RESOURCES {
            assert!(serves_group_version(resource.group, resource.version));
        }
    }
}
