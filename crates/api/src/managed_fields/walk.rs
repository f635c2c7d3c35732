//! Field sets of objects, the difference between two versions of one, and removing owned
//! fields: structured-merge-diff's `ToFieldSet`, `Compare` and prune, with the list types and
//! atomic fields of the served kinds instead of an OpenAPI schema.

use serde_json::Value;

use super::set::{FieldSet, PathElement};
use crate::patch::{ListStrategy, MergeKeys, list_strategy};

/// How server-side apply merges and owns a list (upstream's `x-kubernetes-list-type`).
#[derive(Debug, Clone, PartialEq, Eq)]
enum ListType {
    /// Items keyed by these fields (`listType=map`, `listMapKey`s), owned one by one.
    Map(Vec<&'static str>),
    /// Scalars owned one by one (`listType=set`).
    Set,
    /// Owned as a whole (`listType=atomic`, the default).
    Atomic,
}

/// The list type at `names` (field names from the root, indices left out): the strategic
/// merge keys, widened to upstream's list-map keys where those have more than one field.
fn list_type(keys: MergeKeys, names: &[&str]) -> ListType {
    match list_strategy(keys, names) {
        ListStrategy::Replace => ListType::Atomic,
        ListStrategy::MergeScalars => ListType::Set,
        ListStrategy::MergeByKey(key) => ListType::Map(match key {
            // Container ports and Service ports: `+listMapKey=…` and `+listMapKey=protocol`.
            "containerPort" => vec!["containerPort", "protocol"],
            "port" => vec!["port", "protocol"],
            "topologyKey" => vec!["topologyKey", "whenUnsatisfiable"],
            other => vec![other],
        }),
    }
}

/// A list-map key field's default, used when an item leaves it out (upstream defaults list-map
/// keys from the schema, so `{"containerPort":80}` is the item `{"containerPort":80,"protocol":"TCP"}`).
fn key_default(field: &str) -> Option<Value> {
    (field == "protocol").then(|| Value::from("TCP"))
}

/// Structs and maps owned as a whole (`+structType=atomic`, `+mapType=atomic`): label
/// selectors (a Service's selector map too) and the references of `valueFrom`.
const ATOMIC_FIELDS: &[&str] = &[
    "selector",
    "labelSelector",
    "namespaceSelector",
    "podSelector",
    "fieldRef",
    "resourceFieldRef",
    "configMapKeyRef",
    "secretKeyRef",
];

fn is_atomic_object(names: &[&str]) -> bool {
    names
        .last()
        .is_some_and(|name| ATOMIC_FIELDS.contains(name))
}

/// Fields that are never absent in upstream's typed objects (Go values, not pointers), so an
/// update that fills them never adds the node itself (`.`) to its manager's set.
const ALWAYS_PRESENT: &[&str] = &[
    "metadata",
    "spec",
    "status",
    "template",
    "containers",
    "strategy",
    "updateStrategy",
];

/// The key of a list-map item, or `None` when it is not an object with its keys.
fn item_key(item: &Value, key_names: &[&'static str]) -> Option<PathElement> {
    let map = item.as_object()?;
    let mut fields = Vec::with_capacity(key_names.len());
    for name in key_names {
        let value = map.get(*name).cloned().or_else(|| key_default(name))?;
        fields.push((*name, value));
    }
    Some(PathElement::key(&fields))
}

fn element_of(item: &Value, index: usize, list: &ListType) -> PathElement {
    match list {
        ListType::Map(key_names) => item_key(item, key_names).unwrap_or(PathElement::Index(index)),
        ListType::Set => PathElement::value(item),
        ListType::Atomic => PathElement::Index(index),
    }
}

struct Walker {
    keys: MergeKeys,
    /// Also make optional maps and lists members themselves (what a diff needs: a label map
    /// that appears is a change of its own).
    nodes: bool,
}

impl Walker {
    fn walk<'v>(
        &self,
        value: &'v Value,
        names: &mut Vec<&'v str>,
        path: &mut Vec<PathElement>,
        set: &mut FieldSet,
    ) {
        let optional = self.nodes
            && names
                .last()
                .is_some_and(|name| !ALWAYS_PRESENT.contains(name));
        match value {
            Value::Object(map) => {
                if map.is_empty() || is_atomic_object(names) {
                    set.insert(path);
                    return;
                }
                if optional {
                    set.insert(path);
                }
                for (name, child) in map {
                    names.push(name);
                    path.push(PathElement::Field(name.clone()));
                    self.walk(child, names, path, set);
                    path.pop();
                    names.pop();
                }
            }
            Value::Array(items) => {
                let list = list_type(self.keys, names);
                if list == ListType::Atomic {
                    set.insert(path);
                    return;
                }
                if optional && !items.is_empty() {
                    set.insert(path);
                }
                for (index, item) in items.iter().enumerate() {
                    path.push(element_of(item, index, &list));
                    set.insert(path);
                    if list != ListType::Set {
                        self.walk_item(item, names, path, set);
                    }
                    path.pop();
                }
            }
            _ => set.insert(path),
        }
    }

    /// The fields of a list-map item (the item itself is already a member).
    fn walk_item<'v>(
        &self,
        item: &'v Value,
        names: &mut Vec<&'v str>,
        path: &mut Vec<PathElement>,
        set: &mut FieldSet,
    ) {
        if let Value::Object(map) = item {
            for (name, child) in map {
                names.push(name);
                path.push(PathElement::Field(name.clone()));
                self.walk(child, names, path, set);
                path.pop();
                names.pop();
            }
        }
    }

    fn set_of(&self, object: &Value) -> FieldSet {
        let mut set = FieldSet::new();
        if object.is_object() {
            self.walk(object, &mut Vec::new(), &mut Vec::new(), &mut set);
        }
        set
    }
}

/// The fields an applied configuration sets (upstream's `ToFieldSet`): every leaf, every item
/// of a keyed list or set, every empty map; never the maps and lists that hold them.
pub fn field_set(object: &Value, keys: MergeKeys) -> FieldSet {
    Walker { keys, nodes: false }.set_of(object)
}

/// What changed between two versions of an object.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Comparison {
    /// Fields added, or whose value changed.
    pub changed: FieldSet,
    /// Fields present before and gone now.
    pub removed: FieldSet,
}

/// Compares two versions of an object, field by field.
pub fn compare(old: &Value, new: &Value, keys: MergeKeys) -> Comparison {
    let walker = Walker { keys, nodes: true };
    let old_set = walker.set_of(old);
    let new_set = walker.set_of(new);
    let mut changed = new_set.difference(&old_set);
    for path in new_set.intersection(&old_set).paths() {
        let path = path.0;
        let leaf = !new_set.has_children(&path) && !old_set.has_children(&path);
        if leaf && lookup(old, &path, keys) != lookup(new, &path, keys) {
            changed.insert(&path);
        }
    }
    Comparison {
        changed,
        removed: old_set.difference(&new_set),
    }
}

/// The value at `path`, if the object has one there.
pub fn lookup<'v>(object: &'v Value, path: &[PathElement], keys: MergeKeys) -> Option<&'v Value> {
    let mut current = object;
    let mut names: Vec<&str> = Vec::new();
    for element in path {
        current = match element {
            PathElement::Field(name) => {
                names.push(name);
                current.get(name)?
            }
            PathElement::Index(index) => current.as_array()?.get(*index)?,
            PathElement::Key(_) | PathElement::Value(_) => {
                let list = list_type(keys, &names);
                current
                    .as_array()?
                    .iter()
                    .enumerate()
                    .find(|(index, item)| element_of(item, *index, &list) == *element)?
                    .1
            }
        };
    }
    Some(current)
}

/// Removes the value at `path`; false when there was none.
fn remove(object: &mut Value, path: &[PathElement], keys: MergeKeys) -> bool {
    let Some((last, parent_path)) = path.split_last() else {
        return false;
    };
    // The parent's position is resolved on a shared borrow, then walked mutably by indices.
    let mut steps: Vec<Step> = Vec::with_capacity(parent_path.len());
    let mut names: Vec<&str> = Vec::new();
    let mut current: &Value = object;
    for element in parent_path {
        let step = resolve(current, element, &names, keys);
        let Some(step) = step else {
            return false;
        };
        if let PathElement::Field(name) = element {
            names.push(name);
        }
        current = match &step {
            Step::Field(name) => &current[name.as_str()],
            Step::Index(index) => &current[*index],
        };
        steps.push(step);
    }
    let last_step = resolve(current, last, &names, keys);
    let mut target: &mut Value = object;
    for step in steps {
        target = match step {
            Step::Field(name) => &mut target[name.as_str()],
            Step::Index(index) => &mut target[index],
        };
    }
    match last_step {
        Some(Step::Field(name)) => target
            .as_object_mut()
            .is_some_and(|map| map.remove(&name).is_some()),
        Some(Step::Index(index)) => match target.as_array_mut() {
            Some(items) if index < items.len() => {
                items.remove(index);
                true
            }
            _ => false,
        },
        None => false,
    }
}

enum Step {
    Field(String),
    Index(usize),
}

fn resolve(value: &Value, element: &PathElement, names: &[&str], keys: MergeKeys) -> Option<Step> {
    match element {
        PathElement::Field(name) => value.get(name).map(|_| Step::Field(name.clone())),
        PathElement::Index(index) => value.as_array()?.get(*index).map(|_| Step::Index(*index)),
        PathElement::Key(_) | PathElement::Value(_) => {
            let list = list_type(keys, names);
            value
                .as_array()?
                .iter()
                .enumerate()
                .position(|(index, item)| element_of(item, index, &list) == *element)
                .map(Step::Index)
        }
    }
}

/// Removes from `object` every member of `doomed` that nothing in `kept` lies at or below
/// (what an applier stopped applying and no other manager owns).
pub fn prune(object: &mut Value, doomed: &FieldSet, kept: &FieldSet, keys: MergeKeys) {
    // Deepest first, so a parent that must stay is never taken away with its children.
    let mut paths = doomed.paths();
    paths.sort_by_key(|path| std::cmp::Reverse(path.0.len()));
    for path in paths {
        if !kept.covers(&path.0) {
            remove(object, &path.0, keys);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn deployment_config() -> Value {
        json!({
            "metadata": {"labels": {"app": "nginx"}},
            "spec": {
                "replicas": 3,
                "selector": {"matchLabels": {"app": "nginx"}},
                "template": {
                    "metadata": {"labels": {"app": "nginx"}},
                    "spec": {"containers": [{
                        "name": "nginx",
                        "image": "nginx:1.14.2",
                        "env": [{"name": "MY_NODE_NAME", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}}],
                        "ports": [{"containerPort": 80}]
                    }]}
                }
            }
        })
    }

    /// The set upstream records for this Deployment's apply (a provider-kubernetes object's
    /// managedFields, as kube-apiserver stored it).
    #[test]
    fn an_applied_deployment_owns_what_upstream_records() {
        let set = field_set(&deployment_config(), &[]);
        assert_eq!(
            set.to_fields_v1().to_string(),
            r#"{"f:metadata":{"f:labels":{"f:app":{}}},"f:spec":{"f:replicas":{},"f:selector":{},"f:template":{"f:metadata":{"f:labels":{"f:app":{}}},"f:spec":{"f:containers":{"k:{\"name\":\"nginx\"}":{".":{},"f:env":{"k:{\"name\":\"MY_NODE_NAME\"}":{".":{},"f:name":{},"f:valueFrom":{"f:fieldRef":{}}}},"f:image":{},"f:name":{},"f:ports":{"k:{\"containerPort\":80,\"protocol\":\"TCP\"}":{".":{},"f:containerPort":{}}}}}}}}}"#
        );
    }

    /// A created StatefulSet as upstream records it for `kubectl create`: optional maps and
    /// lists that appear are members themselves, Go's always-present structs are not.
    #[test]
    fn a_created_statefulset_changes_what_upstream_records() {
        let created = json!({
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": {"app": "iab"}},
                "serviceName": "iab",
                "template": {
                    "metadata": {"labels": {"app": "iab"}},
                    "spec": {"containers": [{"name": "iab", "image": "nginx",
                        "ports": [{"containerPort": 80, "name": "iab", "protocol": "TCP"}],
                        "resources": {}}]}
                },
                "updateStrategy": {"rollingUpdate": {"partition": 0}, "type": "RollingUpdate"}
            }
        });
        let comparison = compare(&json!({}), &created, &[]);
        assert_eq!(
            comparison.changed.to_fields_v1().to_string(),
            r#"{"f:spec":{"f:replicas":{},"f:selector":{},"f:serviceName":{},"f:template":{"f:metadata":{"f:labels":{".":{},"f:app":{}}},"f:spec":{"f:containers":{"k:{\"name\":\"iab\"}":{".":{},"f:image":{},"f:name":{},"f:ports":{".":{},"k:{\"containerPort\":80,\"protocol\":\"TCP\"}":{".":{},"f:containerPort":{},"f:name":{},"f:protocol":{}}},"f:resources":{}}}}},"f:updateStrategy":{"f:rollingUpdate":{".":{},"f:partition":{}},"f:type":{}}}}"#
        );
        assert!(comparison.removed.is_empty());
    }

    #[test]
    fn a_comparison_names_changed_and_removed_fields_only() {
        let old = deployment_config();
        let mut new = old.clone();
        new["spec"]["replicas"] = json!(5);
        new["spec"]["template"]["spec"]["containers"][0]
            .as_object_mut()
            .expect("container")
            .remove("env");
        let comparison = compare(&old, &new, &[]);
        assert_eq!(
            comparison.changed.to_fields_v1(),
            json!({"f:spec": {"f:replicas": {}}})
        );
        let removed: Vec<String> = comparison
            .removed
            .paths()
            .iter()
            .map(ToString::to_string)
            .collect();
        assert!(
            removed.contains(
                &".spec.template.spec.containers[name=\"nginx\"].env[name=\"MY_NODE_NAME\"]"
                    .to_string()
            ),
            "{removed:?}"
        );
        assert!(compare(&old, &old, &[]).changed.is_empty());
    }

    #[test]
    fn pruning_removes_unowned_fields_and_keeps_owned_ones() {
        let mut object = deployment_config();
        let mut doomed = FieldSet::new();
        let container = PathElement::key(&[("name", json!("nginx"))]);
        let base = [
            PathElement::Field("spec".into()),
            PathElement::Field("template".into()),
            PathElement::Field("spec".into()),
            PathElement::Field("containers".into()),
            container,
        ];
        let mut image = base.to_vec();
        image.push(PathElement::Field("image".into()));
        let mut ports = base.to_vec();
        ports.push(PathElement::Field("ports".into()));
        ports.push(PathElement::key(&[
            ("containerPort", json!(80)),
            ("protocol", json!("TCP")),
        ]));
        doomed.insert(&image);
        doomed.insert(&ports);
        doomed.insert(&[
            PathElement::Field("spec".into()),
            PathElement::Field("replicas".into()),
        ]);
        let mut kept = FieldSet::new();
        kept.insert(&image);
        prune(&mut object, &doomed, &kept, &[]);
        let container = &object["spec"]["template"]["spec"]["containers"][0];
        assert_eq!(container["image"], "nginx:1.14.2");
        assert_eq!(container["ports"], json!([]));
        assert!(object["spec"].get("replicas").is_none());
    }

    #[test]
    fn finalizers_are_a_set_and_service_ports_key_on_port_and_protocol() {
        let set = field_set(
            &json!({"metadata": {"finalizers": ["a"]}, "spec": {"ports": [{"port": 80, "protocol": "UDP"}], "args": ["x"]}}),
            crate::kinds::service::MERGE_KEYS,
        );
        assert_eq!(
            set.to_fields_v1().to_string(),
            r#"{"f:metadata":{"f:finalizers":{"v:\"a\"":{}}},"f:spec":{"f:args":{},"f:ports":{"k:{\"port\":80,\"protocol\":\"UDP\"}":{".":{},"f:port":{},"f:protocol":{}}}}}"#
        );
    }
}
