//! Old versions of served kinds, accepted beyond upstream so that tutorials written for them
//! still apply: `apps/v1beta1` and `apps/v1beta2` StatefulSets and Deployments (upstream
//! stopped serving them in 1.16) and `extensions/v1beta1` Ingresses (1.22). An old version is a view of the served type: objects are
//! stored in the served (current) version only, converted on the way in with the old
//! version's own defaults, and converted back on the way out.
//!
//! Each row of [`OLD_VERSIONS`] names the old group, version and plural, the served type it
//! is stored as, upstream's lifecycle (for the `Warning` every such request is answered with),
//! and three pure functions: the old version's defaults and the two conversions.
//! `extensions/v1beta1` Ingress (removed in 1.22) is stored as `networking.k8s.io/v1`.

use serde_json::{Map, Value, json};

use crate::defaults::set_default;
use crate::resources::{self, ResourceType};

/// One old version of a served resource.
pub struct OldVersion {
    pub group: &'static str,
    pub version: &'static str,
    pub plural: &'static str,
    /// The kind in the old version (also the served type's kind for every row so far).
    pub kind: &'static str,
    /// The group and version of the served type the objects are stored as (same plural).
    pub current_group: &'static str,
    pub current_version: &'static str,
    /// Upstream's `prerelease-lifecycle-gen` tags: deprecated in, and removed in (major, minor).
    pub deprecated_in: (u32, u32),
    pub removed_in: (u32, u32),
    /// The old version's defaulters (upstream's `pkg/apis/<group>/<version>/defaults.go`),
    /// run on the object in its old form before it is converted. The served type's own
    /// defaults run after (in the registry), as upstream reads a stored object back.
    pub defaults: fn(&mut Value),
    /// The fields that differ, old form → served form (apiVersion is set by [`OldVersion`]).
    pub to_current: fn(&mut Value),
    /// The fields that differ, served form → old form.
    pub from_current: fn(&mut Value),
}

/// Every old version, in discovery order (a group's newer old versions first, as upstream
/// listed `apps/v1`, `apps/v1beta2`, `apps/v1beta1`).
pub static OLD_VERSIONS: &[OldVersion] = &[
    OldVersion {
        group: "apps",
        version: "v1beta2",
        plural: "statefulsets",
        kind: "StatefulSet",
        current_group: "apps",
        current_version: "v1",
        deprecated_in: (1, 9),
        removed_in: (1, 16),
        defaults: same_as_current,
        to_current: unchanged,
        from_current: unchanged,
    },
    OldVersion {
        group: "apps",
        version: "v1beta2",
        plural: "deployments",
        kind: "Deployment",
        current_group: "apps",
        current_version: "v1",
        deprecated_in: (1, 9),
        removed_in: (1, 16),
        defaults: same_as_current,
        to_current: unchanged,
        from_current: unchanged,
    },
    OldVersion {
        group: "apps",
        version: "v1beta1",
        plural: "statefulsets",
        kind: "StatefulSet",
        current_group: "apps",
        current_version: "v1",
        deprecated_in: (1, 8),
        removed_in: (1, 16),
        defaults: statefulset_v1beta1_defaults,
        to_current: unchanged,
        from_current: unchanged,
    },
    OldVersion {
        group: "apps",
        version: "v1beta1",
        plural: "deployments",
        kind: "Deployment",
        current_group: "apps",
        current_version: "v1",
        deprecated_in: (1, 8),
        removed_in: (1, 16),
        defaults: deployment_v1beta1_defaults,
        to_current: rollback_to_into_annotation,
        from_current: rollback_to_from_annotation,
    },
    OldVersion {
        group: "extensions",
        version: "v1beta1",
        plural: "ingresses",
        kind: "Ingress",
        current_group: "networking.k8s.io",
        current_version: "v1",
        deprecated_in: (1, 14),
        removed_in: (1, 22),
        defaults: ingress_v1beta1_defaults,
        to_current: ingress_backends_to_v1,
        from_current: ingress_backends_from_v1,
    },
];

/// The old version a URL names, if it names one.
pub fn find(group: &str, version: &str, plural: &str) -> Option<&'static OldVersion> {
    OLD_VERSIONS
        .iter()
        .find(|old| old.group == group && old.version == version && old.plural == plural)
}

/// The old group versions, in discovery order.
pub fn group_versions() -> Vec<(&'static str, &'static str)> {
    let mut found: Vec<(&'static str, &'static str)> = Vec::new();
    for old in OLD_VERSIONS {
        if !found.contains(&(old.group, old.version)) {
            found.push((old.group, old.version));
        }
    }
    found
}

/// Whether `group`/`version` is an old group version.
pub fn serves_group_version(group: &str, version: &str) -> bool {
    OLD_VERSIONS
        .iter()
        .any(|old| old.group == group && old.version == version)
}

/// The old versions of one group version, in discovery order.
pub fn in_group_version<'a>(
    group: &'a str,
    version: &'a str,
) -> impl Iterator<Item = &'static OldVersion> + 'a {
    OLD_VERSIONS
        .iter()
        .filter(move |old| old.group == group && old.version == version)
}

impl OldVersion {
    /// `apps/v1beta2`.
    pub fn api_version(&self) -> String {
        join_api_version(self.group, self.version)
    }

    /// The served type objects of this old version are stored as.
    pub fn current(&self) -> Option<&'static ResourceType> {
        resources::find(self.current_group, self.current_version, self.plural)
    }

    /// The `Warning` upstream answered every request of a deprecated version with
    /// (`deprecation.WarningMessage`): `apps/v1beta2 StatefulSet is deprecated in v1.9+,
    /// unavailable in v1.16+; use apps/v1 StatefulSet`.
    pub fn warning(&self) -> String {
        let (deprecated_major, deprecated_minor) = self.deprecated_in;
        let (removed_major, removed_minor) = self.removed_in;
        format!(
            "{} {} is deprecated in v{deprecated_major}.{deprecated_minor}+, unavailable in v{removed_major}.{removed_minor}+; use {} {}",
            self.api_version(),
            self.kind,
            join_api_version(self.current_group, self.current_version),
            self.kind
        )
    }

    /// An object sent in the old version, as the served type stores it: the old version's
    /// defaults, then its conversion. Anything but a JSON object is left for the served type's
    /// checks to refuse.
    pub fn convert_in(&self, object: &mut Value) {
        if !object.is_object() {
            return;
        }
        (self.defaults)(object);
        (self.to_current)(object);
        self.set_type(
            object,
            join_api_version(self.current_group, self.current_version),
        );
    }

    /// A stored object as the old version shows it.
    pub fn convert_out(&self, object: &mut Value) {
        if !object.is_object() {
            return;
        }
        (self.from_current)(object);
        self.set_type(object, self.api_version());
    }

    fn set_type(&self, object: &mut Value, api_version: String) {
        if let Some(map) = object.as_object_mut() {
            map.insert("apiVersion".into(), json!(api_version));
            map.insert("kind".into(), json!(self.kind));
        }
    }
}

fn join_api_version(group: &str, version: &str) -> String {
    if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    }
}

/// The old version's defaults are the served version's (as `apps/v1beta2`'s are `apps/v1`'s),
/// which the registry applies.
fn same_as_current(_: &mut Value) {}

/// The old version's fields are the served version's.
fn unchanged(_: &mut Value) {}

/// Both `apps/v1beta1` kinds default their selector, and the object's labels, from the pod
/// template's labels (the reason `apps/v1` made the selector required).
fn selector_and_labels_from_template(object: &mut Value) {
    let Some(labels) = object
        .pointer("/spec/template/metadata/labels")
        .filter(|labels| labels.is_object())
        .cloned()
    else {
        return;
    };
    if let Some(spec) = object.get_mut("spec") {
        set_default(spec, "selector", json!({"matchLabels": labels}));
    }
    let metadata = object
        .as_object_mut()
        .map(|map| map.entry("metadata").or_insert_with(|| json!({})));
    if let Some(metadata) = metadata.filter(|m| m.is_object()) {
        let empty = metadata
            .get("labels")
            .and_then(Value::as_object)
            .is_none_or(Map::is_empty);
        if empty {
            metadata["labels"] = labels;
        }
    }
}

/// `apps/v1beta1` StatefulSets (upstream's `SetDefaults_StatefulSet`): updates wait for a
/// pod's deletion (`OnDelete`), and the selector comes from the template.
fn statefulset_v1beta1_defaults(object: &mut Value) {
    let Some(spec) = object.get_mut("spec").filter(|spec| spec.is_object()) else {
        return;
    };
    set_default(spec, "podManagementPolicy", json!("OrderedReady"));
    set_default(spec, "updateStrategy", json!({}));
    if let Some(strategy) = spec.get_mut("updateStrategy")
        && let Some(map) = strategy.as_object_mut()
        && map
            .get("type")
            .and_then(Value::as_str)
            .is_none_or(str::is_empty)
    {
        map.insert("type".into(), json!("OnDelete"));
    }
    set_default(spec, "replicas", json!(1));
    set_default(spec, "revisionHistoryLimit", json!(10));
    selector_and_labels_from_template(object);
}

/// `apps/v1beta1` Deployments (upstream's `SetDefaults_Deployment`): two old replica sets
/// kept, not ten.
fn deployment_v1beta1_defaults(object: &mut Value) {
    selector_and_labels_from_template(object);
    let Some(spec) = object.get_mut("spec").filter(|spec| spec.is_object()) else {
        return;
    };
    set_default(spec, "replicas", json!(1));
    set_default(spec, "strategy", json!({}));
    if let Some(strategy) = spec.get_mut("strategy")
        && strategy.is_object()
    {
        if strategy
            .get("type")
            .and_then(Value::as_str)
            .is_none_or(str::is_empty)
        {
            strategy["type"] = json!("RollingUpdate");
        }
        if strategy.get("type").and_then(Value::as_str) == Some("RollingUpdate") {
            set_default(strategy, "rollingUpdate", json!({}));
            if let Some(rolling) = strategy.get_mut("rollingUpdate") {
                set_default(rolling, "maxUnavailable", json!("25%"));
                set_default(rolling, "maxSurge", json!("25%"));
            }
        }
    }
    set_default(spec, "revisionHistoryLimit", json!(2));
    set_default(spec, "progressDeadlineSeconds", json!(600));
}

/// Where `apps/v1` keeps an old version's `spec.rollbackTo` (upstream's
/// `appsv1.DeprecatedRollbackTo`), so a round trip through storage keeps it.
pub const ROLLBACK_TO_ANNOTATION: &str = "deprecated.deployment.rollback.to";

/// `spec.rollbackTo.revision` becomes the annotation; without `rollbackTo` the annotation
/// goes (upstream's `Convert_apps_Deployment_To_v1_Deployment`). A revision that is not an
/// integer is left in place for the shape check to report.
fn rollback_to_into_annotation(object: &mut Value) {
    let rollback = object.pointer("/spec/rollbackTo").cloned();
    let revision = match &rollback {
        None | Some(Value::Null) => None,
        Some(config) => match config.get("revision") {
            None | Some(Value::Null) => Some(0),
            Some(revision) => match revision.as_i64() {
                Some(revision) => Some(revision),
                None => return,
            },
        },
    };
    if let Some(spec) = object.get_mut("spec").and_then(Value::as_object_mut) {
        spec.remove("rollbackTo");
    }
    match revision {
        Some(revision) => {
            let Some(metadata) = object
                .as_object_mut()
                .map(|map| map.entry("metadata").or_insert_with(|| json!({})))
                .and_then(Value::as_object_mut)
            else {
                return;
            };
            let annotations = metadata.entry("annotations").or_insert_with(|| json!({}));
            if annotations.is_null() {
                *annotations = json!({});
            }
            if let Some(annotations) = annotations.as_object_mut() {
                annotations.insert(ROLLBACK_TO_ANNOTATION.into(), json!(revision.to_string()));
            }
        }
        None => remove_rollback_annotation(object),
    }
}

/// The annotation becomes `spec.rollbackTo` again (upstream's
/// `Convert_v1_Deployment_To_apps_Deployment`); one that is not a number stays an annotation.
fn rollback_to_from_annotation(object: &mut Value) {
    let Some(revision) = object
        .pointer("/metadata/annotations")
        .and_then(|annotations| annotations.get(ROLLBACK_TO_ANNOTATION))
        .and_then(Value::as_str)
        .filter(|revision| !revision.is_empty())
        .and_then(|revision| revision.parse::<i64>().ok())
    else {
        return;
    };
    remove_rollback_annotation(object);
    if let Some(spec) = object.get_mut("spec").and_then(Value::as_object_mut) {
        spec.insert("rollbackTo".into(), json!({"revision": revision}));
    }
}

fn remove_rollback_annotation(object: &mut Value) {
    let Some(metadata) = object.get_mut("metadata").and_then(Value::as_object_mut) else {
        return;
    };
    if let Some(annotations) = metadata
        .get_mut("annotations")
        .and_then(Value::as_object_mut)
    {
        annotations.remove(ROLLBACK_TO_ANNOTATION);
        if annotations.is_empty() {
            metadata.remove("annotations");
        }
    }
}

/// `extensions/v1beta1` Ingresses (upstream's `SetDefaults_HTTPIngressPath`): a path without a
/// type is `ImplementationSpecific`, which v1 requires to be said.
fn ingress_v1beta1_defaults(object: &mut Value) {
    for_each_path(object, |path| {
        set_default(path, "pathType", json!("ImplementationSpecific"));
    });
}

/// Calls `each` on every `spec.rules[].http.paths[]` that is an object.
fn for_each_path(object: &mut Value, mut each: impl FnMut(&mut Value)) {
    let Some(rules) = object
        .pointer_mut("/spec/rules")
        .and_then(Value::as_array_mut)
    else {
        return;
    };
    for rule in rules {
        let Some(paths) = rule
            .pointer_mut("/http/paths")
            .and_then(Value::as_array_mut)
        else {
            continue;
        };
        for path in paths.iter_mut().filter(|p| p.is_object()) {
            each(path);
        }
    }
}

/// Renames `spec.<from>` to `spec.<to>` and converts every backend with `convert`.
fn convert_ingress_backends(object: &mut Value, from: &str, to: &str, convert: fn(&mut Value)) {
    if let Some(spec) = object.get_mut("spec").and_then(Value::as_object_mut)
        && let Some(mut backend) = spec.remove(from)
    {
        convert(&mut backend);
        spec.insert(to.into(), backend);
    }
    for_each_path(object, |path| {
        if let Some(backend) = path.get_mut("backend") {
            convert(backend);
        }
    });
}

/// `spec.backend` becomes `spec.defaultBackend`, and each `{serviceName, servicePort}` a
/// `service: {name, port: {number | name}}` (upstream's `Convert_v1beta1_IngressBackend_To_networking_IngressBackend`).
fn ingress_backends_to_v1(object: &mut Value) {
    convert_ingress_backends(object, "backend", "defaultBackend", |backend| {
        let Some(map) = backend.as_object_mut() else {
            return;
        };
        let name = map.remove("serviceName");
        let port = map.remove("servicePort");
        if name.is_none() && port.is_none() {
            return;
        }
        let port = match port {
            Some(Value::Number(number)) => json!({"number": number}),
            Some(Value::String(name)) => json!({"name": name}),
            Some(other) => other,
            None => json!({}),
        };
        map.insert(
            "service".into(),
            json!({"name": name.unwrap_or(Value::Null), "port": port}),
        );
    });
}

/// The reverse of [`ingress_backends_to_v1`].
fn ingress_backends_from_v1(object: &mut Value) {
    convert_ingress_backends(object, "defaultBackend", "backend", |backend| {
        let Some(map) = backend.as_object_mut() else {
            return;
        };
        let Some(service) = map.remove("service") else {
            return;
        };
        if let Some(name) = service.get("name") {
            map.insert("serviceName".into(), name.clone());
        }
        let port = service
            .pointer("/port/number")
            .or_else(|| service.pointer("/port/name"));
        if let Some(port) = port {
            map.insert("servicePort".into(), port.clone());
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn old(group: &str, version: &str, plural: &str) -> &'static OldVersion {
        find(group, version, plural).expect("an old version")
    }

    fn template() -> Value {
        json!({"metadata": {"labels": {"app": "consul"}},
               "spec": {"containers": [{"name": "consul", "image": "consul:1.0.2"}]}})
    }

    #[test]
    fn every_row_is_stored_as_a_served_type_of_its_kind() {
        for row in OLD_VERSIONS {
            let current = row.current().expect("a served type");
            assert_eq!(current.kind, row.kind, "{}", row.api_version());
            assert!(!resources::serves_group_version(row.group, row.version));
        }
    }

    #[test]
    fn warnings_are_upstreams_words() {
        assert_eq!(
            old("apps", "v1beta2", "statefulsets").warning(),
            "apps/v1beta2 StatefulSet is deprecated in v1.9+, unavailable in v1.16+; use apps/v1 StatefulSet"
        );
        assert_eq!(
            old("apps", "v1beta1", "deployments").warning(),
            "apps/v1beta1 Deployment is deprecated in v1.8+, unavailable in v1.16+; use apps/v1 Deployment"
        );
    }

    #[test]
    fn the_old_group_versions_come_in_discovery_order() {
        assert_eq!(
            group_versions(),
            [
                ("apps", "v1beta2"),
                ("apps", "v1beta1"),
                ("extensions", "v1beta1")
            ]
        );
        assert!(serves_group_version("apps", "v1beta1"));
        assert!(!serves_group_version("apps", "v1"));
        assert!(find("apps", "v1beta2", "replicasets").is_none());
    }

    #[test]
    fn a_v1beta2_statefulset_only_changes_its_api_version() {
        let mut set = json!({"apiVersion": "apps/v1beta2", "kind": "StatefulSet",
            "metadata": {"name": "consul", "namespace": null},
            "spec": {"serviceName": "consul", "selector": {"matchLabels": {"app": "consul"}},
                     "template": template()}});
        let sent = set.clone();
        let row = old("apps", "v1beta2", "statefulsets");
        row.convert_in(&mut set);
        assert_eq!(set["apiVersion"], "apps/v1");
        let mut expected = sent.clone();
        expected["apiVersion"] = json!("apps/v1");
        assert_eq!(set, expected);
        row.convert_out(&mut set);
        assert_eq!(set, sent);
    }

    #[test]
    fn a_v1beta1_statefulset_waits_for_deletes_and_selects_its_template() {
        let mut set = json!({"apiVersion": "apps/v1beta1", "kind": "StatefulSet",
            "metadata": {"name": "consul"},
            "spec": {"serviceName": "consul", "template": template()}});
        old("apps", "v1beta1", "statefulsets").convert_in(&mut set);
        assert_eq!(set["apiVersion"], "apps/v1");
        let spec = &set["spec"];
        assert_eq!(spec["updateStrategy"], json!({"type": "OnDelete"}));
        assert_eq!(spec["selector"], json!({"matchLabels": {"app": "consul"}}));
        assert_eq!(set["metadata"]["labels"], json!({"app": "consul"}));
        assert_eq!(spec["podManagementPolicy"], "OrderedReady");
        assert_eq!(spec["replicas"], 1);
        assert_eq!(spec["revisionHistoryLimit"], 10);
        // apps/v1's defaults then leave OnDelete alone (no partition for it).
        crate::kinds::statefulset::RESOURCE
            .strategy
            .defaults(&mut set);
        assert_eq!(set["spec"]["updateStrategy"], json!({"type": "OnDelete"}));
    }

    #[test]
    fn a_v1beta1_object_keeps_what_it_says() {
        let mut set = json!({"metadata": {"labels": {"tier": "db"}},
            "spec": {"selector": {"matchLabels": {"tier": "db"}},
                     "updateStrategy": {"type": "RollingUpdate"}, "template": template()}});
        old("apps", "v1beta1", "statefulsets").convert_in(&mut set);
        assert_eq!(
            set["spec"]["updateStrategy"],
            json!({"type": "RollingUpdate"})
        );
        assert_eq!(
            set["spec"]["selector"],
            json!({"matchLabels": {"tier": "db"}})
        );
        assert_eq!(set["metadata"]["labels"], json!({"tier": "db"}));
    }

    #[test]
    fn a_v1beta1_deployment_gets_its_versions_defaults() {
        let mut deployment = json!({"apiVersion": "apps/v1beta1", "kind": "Deployment",
            "metadata": {"name": "web"}, "spec": {"template": template()}});
        old("apps", "v1beta1", "deployments").convert_in(&mut deployment);
        let spec = &deployment["spec"];
        assert_eq!(spec["revisionHistoryLimit"], 2);
        assert_eq!(spec["progressDeadlineSeconds"], 600);
        assert_eq!(spec["replicas"], 1);
        assert_eq!(
            spec["strategy"],
            json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"}})
        );
        assert_eq!(spec["selector"], json!({"matchLabels": {"app": "consul"}}));
        assert_eq!(deployment["metadata"]["labels"], json!({"app": "consul"}));

        let mut recreate = json!({"spec": {"strategy": {"type": "Recreate"}}});
        old("apps", "v1beta1", "deployments").convert_in(&mut recreate);
        assert_eq!(recreate["spec"]["strategy"], json!({"type": "Recreate"}));
    }

    #[test]
    fn a_v1beta2_deployment_keeps_ten_revisions_as_apps_v1() {
        let mut deployment = json!({"spec": {"template": template(),
            "selector": {"matchLabels": {"app": "consul"}}}});
        old("apps", "v1beta2", "deployments").convert_in(&mut deployment);
        assert!(deployment["spec"].get("revisionHistoryLimit").is_none());
        crate::kinds::deployment::RESOURCE
            .strategy
            .defaults(&mut deployment);
        assert_eq!(deployment["spec"]["revisionHistoryLimit"], 10);
    }

    #[test]
    fn rollback_to_travels_as_upstreams_annotation() {
        let row = old("apps", "v1beta1", "deployments");
        let mut deployment = json!({"metadata": {"name": "web"},
            "spec": {"rollbackTo": {"revision": 3}, "template": template()}});
        row.convert_in(&mut deployment);
        assert!(deployment["spec"].get("rollbackTo").is_none());
        assert_eq!(
            deployment["metadata"]["annotations"][ROLLBACK_TO_ANNOTATION],
            "3"
        );
        row.convert_out(&mut deployment);
        assert_eq!(deployment["spec"]["rollbackTo"], json!({"revision": 3}));
        assert!(deployment["metadata"].get("annotations").is_none());
        assert_eq!(deployment["apiVersion"], "apps/v1beta1");

        // Without rollbackTo, a stale annotation goes; other annotations stay.
        let mut deployment = json!({"metadata": {"annotations": {
            ROLLBACK_TO_ANNOTATION: "2", "team": "a"}}, "spec": {}});
        row.convert_in(&mut deployment);
        assert_eq!(deployment["metadata"]["annotations"], json!({"team": "a"}));

        // An empty rollbackTo is revision 0 (the last revision), as upstream's int64 zero.
        let mut deployment = json!({"spec": {"rollbackTo": {}}});
        row.convert_in(&mut deployment);
        assert_eq!(
            deployment["metadata"]["annotations"][ROLLBACK_TO_ANNOTATION],
            "0"
        );
    }

    #[test]
    fn a_revision_that_is_not_a_number_is_left_for_the_shape_check() {
        let row = old("apps", "v1beta1", "deployments");
        let mut deployment = json!({"spec": {"rollbackTo": {"revision": "three"}}});
        row.convert_in(&mut deployment);
        assert_eq!(deployment["spec"]["rollbackTo"]["revision"], "three");
        let mut stored =
            json!({"metadata": {"annotations": {ROLLBACK_TO_ANNOTATION: "x"}}, "spec": {}});
        row.convert_out(&mut stored);
        assert_eq!(
            stored["metadata"]["annotations"][ROLLBACK_TO_ANNOTATION],
            "x"
        );
        assert!(stored["spec"].get("rollbackTo").is_none());
    }

    #[test]
    fn bodies_that_are_not_objects_are_left_alone() {
        for row in OLD_VERSIONS {
            let mut body = json!([1, 2]);
            row.convert_in(&mut body);
            row.convert_out(&mut body);
            assert_eq!(body, json!([1, 2]));
            let mut odd = json!({"metadata": "x", "spec": "y"});
            row.convert_in(&mut odd);
            assert_eq!(odd["spec"], "y");
        }
    }

    #[test]
    fn extensions_v1beta1_ingresses_convert_both_ways_as_upstream() {
        let old = find("extensions", "v1beta1", "ingresses").expect("a row");
        assert_eq!(
            old.warning(),
            "extensions/v1beta1 Ingress is deprecated in v1.14+, unavailable in v1.22+; use networking.k8s.io/v1 Ingress"
        );
        // Seed 003's consul-ingress.yaml, plus a default backend named by port name.
        let sent = json!({"apiVersion": "extensions/v1beta1", "kind": "Ingress",
            "metadata": {"name": "consul"},
            "spec": {"backend": {"serviceName": "fallback", "servicePort": "http"},
                "rules": [{"host": "consul.cloud.example.com", "http": {"paths": [
                    {"path": "/", "backend": {"serviceName": "consul-ui", "servicePort": 8500}}]}}]}});
        let mut stored = sent.clone();
        old.convert_in(&mut stored);
        assert_eq!(
            stored,
            json!({"apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
                "metadata": {"name": "consul"},
                "spec": {"defaultBackend": {"service": {"name": "fallback", "port": {"name": "http"}}},
                    "rules": [{"host": "consul.cloud.example.com", "http": {"paths": [
                        {"path": "/", "pathType": "ImplementationSpecific",
                         "backend": {"service": {"name": "consul-ui", "port": {"number": 8500}}}}]}}]}})
        );
        let mut shown = stored;
        old.convert_out(&mut shown);
        let mut expected = sent;
        expected["spec"]["rules"][0]["http"]["paths"][0]["pathType"] =
            json!("ImplementationSpecific");
        assert_eq!(shown, expected);
    }
}
