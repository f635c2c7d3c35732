//! The catalogue of served resource types: what discovery advertises, what the URL router
//! accepts, and where each type lives in the store.

/// One served resource type (a group, a version and a plural name).
#[derive(Debug, PartialEq, Eq)]
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

const STATUS_VERBS: &[&str] = &["get", "patch", "update"];
const CONNECT_VERBS: &[&str] = &["create", "get"];
const PROXY_VERBS: &[&str] = &["create", "delete", "get", "patch", "update"];

const fn status(group: &'static str, version: &'static str, kind: &'static str) -> Subresource {
    Subresource {
        name: "status",
        group,
        version,
        kind,
        verbs: STATUS_VERBS,
    }
}

const POD_SUBRESOURCES: &[Subresource] = &[
    status("", "v1", "Pod"),
    Subresource {
        name: "log",
        group: "",
        version: "v1",
        kind: "Pod",
        verbs: &["get"],
    },
    Subresource {
        name: "exec",
        group: "",
        version: "v1",
        kind: "PodExecOptions",
        verbs: CONNECT_VERBS,
    },
    Subresource {
        name: "attach",
        group: "",
        version: "v1",
        kind: "PodAttachOptions",
        verbs: CONNECT_VERBS,
    },
    Subresource {
        name: "portforward",
        group: "",
        version: "v1",
        kind: "PodPortForwardOptions",
        verbs: CONNECT_VERBS,
    },
    Subresource {
        name: "proxy",
        group: "",
        version: "v1",
        kind: "PodProxyOptions",
        verbs: PROXY_VERBS,
    },
];

const SERVICE_SUBRESOURCES: &[Subresource] = &[
    status("", "v1", "Service"),
    Subresource {
        name: "proxy",
        group: "",
        version: "v1",
        kind: "ServiceProxyOptions",
        verbs: PROXY_VERBS,
    },
];

const STATEFULSET_SUBRESOURCES: &[Subresource] = &[
    Subresource {
        name: "scale",
        group: "autoscaling",
        version: "v1",
        kind: "Scale",
        verbs: STATUS_VERBS,
    },
    status("apps", "v1", "StatefulSet"),
];

const fn core(
    kind: &'static str,
    plural: &'static str,
    singular: &'static str,
    namespaced: bool,
    short_names: &'static [&'static str],
) -> ResourceType {
    ResourceType {
        group: "",
        version: "v1",
        kind,
        plural,
        singular,
        namespaced,
        short_names,
        categories: &[],
        subresources: &[],
    }
}

/// Every served resource type, in the order discovery lists them.
pub static RESOURCES: &[ResourceType] = &[
    ResourceType {
        subresources: &[status("", "v1", "Namespace")],
        ..core("Namespace", "namespaces", "namespace", false, &["ns"])
    },
    ResourceType {
        categories: &["all"],
        subresources: POD_SUBRESOURCES,
        ..core("Pod", "pods", "pod", true, &["po"])
    },
    ResourceType {
        categories: &["all"],
        subresources: SERVICE_SUBRESOURCES,
        ..core("Service", "services", "service", true, &["svc"])
    },
    core("Endpoints", "endpoints", "endpoints", true, &["ep"]),
    core("ConfigMap", "configmaps", "configmap", true, &["cm"]),
    core("Secret", "secrets", "secret", true, &[]),
    core(
        "ServiceAccount",
        "serviceaccounts",
        "serviceaccount",
        true,
        &["sa"],
    ),
    core("Event", "events", "event", true, &["ev"]),
    ResourceType {
        subresources: &[status("", "v1", "Node")],
        ..core("Node", "nodes", "node", false, &["no"])
    },
    ResourceType {
        subresources: &[status("", "v1", "PersistentVolumeClaim")],
        ..core(
            "PersistentVolumeClaim",
            "persistentvolumeclaims",
            "persistentvolumeclaim",
            true,
            &["pvc"],
        )
    },
    ResourceType {
        subresources: &[status("", "v1", "PersistentVolume")],
        ..core(
            "PersistentVolume",
            "persistentvolumes",
            "persistentvolume",
            false,
            &["pv"],
        )
    },
    ResourceType {
        group: "apps",
        version: "v1",
        kind: "StatefulSet",
        plural: "statefulsets",
        singular: "statefulset",
        namespaced: true,
        short_names: &["sts"],
        categories: &["all"],
        subresources: STATEFULSET_SUBRESOURCES,
    },
    ResourceType {
        group: "apps",
        version: "v1",
        kind: "ControllerRevision",
        plural: "controllerrevisions",
        singular: "controllerrevision",
        namespaced: true,
        short_names: &[],
        categories: &[],
        subresources: &[],
    },
    ResourceType {
        group: "storage.k8s.io",
        version: "v1",
        kind: "StorageClass",
        plural: "storageclasses",
        singular: "storageclass",
        namespaced: false,
        short_names: &["sc"],
        categories: &[],
        subresources: &[],
    },
    ResourceType {
        group: "discovery.k8s.io",
        version: "v1",
        kind: "EndpointSlice",
        plural: "endpointslices",
        singular: "endpointslice",
        namespaced: true,
        short_names: &[],
        categories: &[],
        subresources: &[],
    },
    ResourceType {
        group: "coordination.k8s.io",
        version: "v1",
        kind: "Lease",
        plural: "leases",
        singular: "lease",
        namespaced: true,
        short_names: &[],
        categories: &[],
        subresources: &[],
    },
    ResourceType {
        group: "events.k8s.io",
        version: "v1",
        kind: "Event",
        plural: "events",
        singular: "event",
        namespaced: true,
        short_names: &["ev"],
        categories: &[],
        subresources: &[],
    },
];

/// Group versions in discovery preference order.
pub static GROUP_VERSIONS: &[(&str, &str)] = &[
    ("", "v1"),
    ("apps", "v1"),
    ("events.k8s.io", "v1"),
    ("storage.k8s.io", "v1"),
    ("discovery.k8s.io", "v1"),
    ("coordination.k8s.io", "v1"),
];

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
    GROUP_VERSIONS.contains(&(group, version))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip_to_their_type() {
        for resource in RESOURCES {
            let key = resource.store_key(Some("default"), "x");
            assert_eq!(find_by_key(&key), Some(resource), "{key}");
        }
    }

    #[test]
    fn the_two_event_types_are_stored_apart() {
        let core = find("", "v1", "events").map(ResourceType::store_prefix);
        let new = find("events.k8s.io", "v1", "events").map(ResourceType::store_prefix);
        assert_ne!(core, new);
    }

    #[test]
    fn every_type_is_in_a_served_group_version() {
        for resource in RESOURCES {
            assert!(serves_group_version(resource.group, resource.version));
        }
    }
}
