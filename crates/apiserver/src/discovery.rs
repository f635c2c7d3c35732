//! Discovery documents: `/version`, `/api`, `/apis` (legacy and aggregated v2), and the
//! per-group-version resource lists.
//!
//! The old versions petset accepts beyond upstream (`old_versions`) are listed after their
//! group's served versions, so they are never preferred (`kubectl api-resources` and `kubectl
//! get` use only the preferred version), but kubectl can map an old manifest's kind: without
//! them `kubectl apply` fails before sending anything (`no matches for kind`). They carry only
//! the resources that convert, with their `status` subresource, and no short names or
//! categories (so `sts` and `all` still expand once).

use petset_api::kinds::old_versions::{self, OldVersion};
use petset_api::resources::{RESOURCES, ResourceType, STATUS_VERBS, group_versions};
use serde_json::{Value, json};

/// The Kubernetes version petset reports; the kubectl dispatcher on these machines picks the
/// matching kubectl from its minor version.
pub const KUBERNETES_MAJOR: &str = "1";
pub const KUBERNETES_MINOR: &str = "33";
pub const GIT_VERSION: &str = "v1.33.0";

/// The media type of aggregated discovery documents.
pub const AGGREGATED_CONTENT_TYPE: &str =
    "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList";

pub fn version() -> Value {
    json!({
        "major": KUBERNETES_MAJOR,
        "minor": KUBERNETES_MINOR,
        "emulationMajor": KUBERNETES_MAJOR,
        "emulationMinor": KUBERNETES_MINOR,
        "gitVersion": GIT_VERSION,
        "gitCommit": concat!("petset-", env!("CARGO_PKG_VERSION")),
        "gitTreeState": "clean",
        "buildDate": "2026-11-01T00:00:00Z",
        "goVersion": "none (petset is written in Rust)",
        "compiler": "rustc",
        "platform": format!("{}/{}", std::env::consts::OS, go_arch()),
    })
}

fn go_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

/// Whether the client asked for aggregated discovery (kubectl 1.30+ does).
pub fn wants_aggregated(accept: &str) -> bool {
    accept.split(',').any(|part| {
        let params: Vec<&str> = part.split(';').map(str::trim).collect();
        params.contains(&"g=apidiscovery.k8s.io")
            && params.contains(&"as=APIGroupDiscoveryList")
            && (params.contains(&"v=v2") || params.contains(&"v=v2beta1"))
    })
}

fn in_group_version(group: &str, version: &str) -> impl Iterator<Item = &'static ResourceType> {
    let group = group.to_string();
    let version = version.to_string();
    RESOURCES
        .iter()
        .filter(move |r| r.group == group && r.version == version)
}

/// `/api`, legacy form.
pub fn core_versions(server_address: &str) -> Value {
    json!({
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}]
    })
}

/// Every group version discovery lists, in preference order: the served ones as the
/// catalogue has them, then (`with_old`) the old ones. Only the aggregated form, which
/// kubectl and client-go read, lists old versions: kubectl needs them to map an old
/// manifest's kind at all, while clients of the legacy form (the Python client's dynamic
/// discovery, older tools) see the current versions only, so a kind stays unique there.
fn listed_group_versions(with_old: bool) -> Vec<(&'static str, &'static str)> {
    let mut listed = group_versions().to_vec();
    if with_old {
        listed.extend(old_versions::group_versions());
    }
    listed
}

fn group_entry(group: &str) -> Value {
    let versions: Vec<Value> = listed_group_versions(false)
        .iter()
        .filter(|(g, _)| *g == group)
        .map(|(g, v)| json!({"groupVersion": format!("{g}/{v}"), "version": v}))
        .collect();
    json!({
        "name": group,
        "versions": versions,
        "preferredVersion": versions.first().cloned().unwrap_or(Value::Null),
    })
}

fn named_groups(with_old: bool) -> Vec<&'static str> {
    let mut groups: Vec<&str> = Vec::new();
    for (group, _) in listed_group_versions(with_old) {
        if !group.is_empty() && !groups.contains(&group) {
            groups.push(group);
        }
    }
    groups
}

/// `/apis`, legacy form.
pub fn group_list() -> Value {
    let groups: Vec<Value> = named_groups(false).into_iter().map(group_entry).collect();
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
}

/// `/apis/{group}`.
pub fn group(group: &str) -> Option<Value> {
    named_groups(false).contains(&group).then(|| {
        let mut entry = group_entry(group);
        entry["kind"] = json!("APIGroup");
        entry["apiVersion"] = json!("v1");
        entry
    })
}

/// An old version's resource and its status, in the legacy list.
fn old_resource_entries(old: &OldVersion) -> Vec<Value> {
    let Some(current) = old.current() else {
        return Vec::new();
    };
    let mut entries = vec![json!({
        "name": old.plural,
        "singularName": current.singular,
        "namespaced": current.namespaced,
        "kind": old.kind,
        "verbs": current.verbs,
    })];
    if current.has_status() {
        entries.push(json!({
            "name": format!("{}/status", old.plural),
            "singularName": "",
            "namespaced": current.namespaced,
            "kind": old.kind,
            "verbs": STATUS_VERBS,
        }));
    }
    entries
}

/// An old version's resource, in the aggregated document.
fn old_aggregated_resource(old: &OldVersion) -> Option<Value> {
    let current = old.current()?;
    let subresources: Vec<Value> = if current.has_status() {
        vec![json!({
            "subresource": "status",
            "responseKind": {"group": old.group, "version": old.version, "kind": old.kind},
            "verbs": STATUS_VERBS,
        })]
    } else {
        Vec::new()
    };
    Some(json!({
        "resource": old.plural,
        "responseKind": {"group": old.group, "version": old.version, "kind": old.kind},
        "scope": if current.namespaced { "Namespaced" } else { "Cluster" },
        "singularResource": current.singular,
        "verbs": current.verbs,
        "subresources": subresources,
    }))
}

/// `/api/v1`, `/apis/{group}/{version}`.
pub fn resource_list(group: &str, version: &str) -> Value {
    let mut resources: Vec<Value> = old_versions::in_group_version(group, version)
        .flat_map(old_resource_entries)
        .collect();
    for resource in in_group_version(group, version) {
        resources.push(json!({
            "name": resource.plural,
            "singularName": resource.singular,
            "namespaced": resource.namespaced,
            "kind": resource.kind,
            "verbs": resource.verbs,
            "shortNames": resource.short_names,
            "categories": resource.categories,
        }));
        for sub in resource.subresources {
            let mut entry = json!({
                "name": format!("{}/{}", resource.plural, sub.name),
                "singularName": "",
                "namespaced": resource.namespaced,
                "kind": sub.kind,
                "verbs": sub.verbs,
            });
            if sub.group != resource.group {
                entry["group"] = json!(sub.group);
                entry["version"] = json!(sub.version);
            }
            resources.push(entry);
        }
    }
    let group_version = if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    };
    json!({
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": group_version,
        "resources": resources,
    })
}

fn aggregated_resource(resource: &ResourceType) -> Value {
    let subresources: Vec<Value> = resource
        .subresources
        .iter()
        .map(|sub| {
            json!({
                "subresource": sub.name,
                "responseKind": {"group": sub.group, "version": sub.version, "kind": sub.kind},
                "verbs": sub.verbs,
            })
        })
        .collect();
    let mut entry = json!({
        "resource": resource.plural,
        "responseKind": {"group": resource.group, "version": resource.version, "kind": resource.kind},
        "scope": if resource.namespaced { "Namespaced" } else { "Cluster" },
        "singularResource": resource.singular,
        "verbs": resource.verbs,
        "subresources": subresources,
    });
    if !resource.short_names.is_empty() {
        entry["shortNames"] = json!(resource.short_names);
    }
    if !resource.categories.is_empty() {
        entry["categories"] = json!(resource.categories);
    }
    entry
}

fn aggregated_group(group: &str) -> Value {
    let versions: Vec<Value> = listed_group_versions(true)
        .iter()
        .filter(|(g, _)| *g == group)
        .map(|(g, v)| {
            let mut resources: Vec<Value> =
                in_group_version(g, v).map(aggregated_resource).collect();
            resources
                .extend(old_versions::in_group_version(g, v).filter_map(old_aggregated_resource));
            json!({"version": v, "resources": resources, "freshness": "Current"})
        })
        .collect();
    json!({"metadata": {"name": group}, "versions": versions})
}

/// `/api`, aggregated form.
pub fn aggregated_core() -> Value {
    json!({
        "kind": "APIGroupDiscoveryList",
        "apiVersion": "apidiscovery.k8s.io/v2",
        "metadata": {},
        "items": [aggregated_group("")],
    })
}

/// `/apis`, aggregated form.
pub fn aggregated_groups() -> Value {
    let items: Vec<Value> = named_groups(true)
        .into_iter()
        .map(aggregated_group)
        .collect();
    json!({
        "kind": "APIGroupDiscoveryList",
        "apiVersion": "apidiscovery.k8s.io/v2",
        "metadata": {},
        "items": items,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kubectl_accept_header_selects_aggregated() {
        assert!(wants_aggregated(
            "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,application/json"
        ));
        assert!(!wants_aggregated("application/json, */*"));
    }

    #[test]
    fn old_versions_are_listed_after_the_preferred_one_in_the_aggregated_form_only() {
        let aggregated = aggregated_groups();
        let apps = aggregated["items"]
            .as_array()
            .and_then(|items| items.iter().find(|g| g["metadata"]["name"] == "apps"))
            .cloned()
            .expect("apps");
        let versions: Vec<&str> = apps["versions"]
            .as_array()
            .expect("versions")
            .iter()
            .filter_map(|v| v["version"].as_str())
            .collect();
        assert_eq!(versions, ["v1", "v1beta2", "v1beta1"]);
        let groups = aggregated["items"].as_array().expect("items");
        assert!(groups.iter().any(|g| g["metadata"]["name"] == "extensions"));
        // Each group is listed once, however many versions it has.
        assert_eq!(
            groups
                .iter()
                .filter(|g| g["metadata"]["name"] == "apps")
                .count(),
            1
        );

        // The legacy form shows the current versions only.
        let apps = group("apps").expect("apps");
        assert_eq!(
            apps["versions"],
            json!([{"groupVersion": "apps/v1", "version": "v1"}])
        );
        assert_eq!(apps["preferredVersion"]["groupVersion"], "apps/v1");
        assert!(group("extensions").is_none());
        let names: Vec<Value> = group_list()["groups"]
            .as_array()
            .expect("groups")
            .iter()
            .map(|g| g["name"].clone())
            .collect();
        assert!(!names.contains(&json!("extensions")));
    }

    #[test]
    fn an_old_version_lists_only_what_converts() {
        let list = resource_list("apps", "v1beta2");
        assert_eq!(list["groupVersion"], "apps/v1beta2");
        let names: Vec<&str> = list["resources"]
            .as_array()
            .expect("resources")
            .iter()
            .filter_map(|r| r["name"].as_str())
            .collect();
        assert_eq!(
            names,
            [
                "statefulsets",
                "statefulsets/status",
                "deployments",
                "deployments/status"
            ]
        );
        let sets = &list["resources"][0];
        assert_eq!(sets["kind"], "StatefulSet");
        assert!(sets.get("shortNames").is_none() && sets.get("categories").is_none());

        let all = aggregated_groups();
        let apps = all["items"]
            .as_array()
            .and_then(|items| items.iter().find(|g| g["metadata"]["name"] == "apps"))
            .cloned()
            .expect("apps");
        let versions = apps["versions"].as_array().expect("versions");
        assert_eq!(versions[0]["version"], "v1");
        let beta1 = versions
            .iter()
            .find(|v| v["version"] == "v1beta1")
            .expect("v1beta1");
        let kinds: Vec<Value> = beta1["resources"]
            .as_array()
            .expect("resources")
            .iter()
            .map(|r| r["responseKind"].clone())
            .collect();
        assert_eq!(
            kinds,
            [
                json!({"group": "apps", "version": "v1beta1", "kind": "StatefulSet"}),
                json!({"group": "apps", "version": "v1beta1", "kind": "Deployment"}),
            ]
        );
    }

    #[test]
    fn statefulsets_advertise_scale_as_autoscaling() {
        let list = resource_list("apps", "v1");
        let scale = list["resources"]
            .as_array()
            .and_then(|r| r.iter().find(|e| e["name"] == "statefulsets/scale"))
            .cloned()
            .expect("scale listed");
        assert_eq!(scale["group"], "autoscaling");
        let all = aggregated_groups();
        let apps = all["items"]
            .as_array()
            .and_then(|i| i.first())
            .cloned()
            .expect("apps");
        assert_eq!(apps["metadata"]["name"], "apps");
    }
}
