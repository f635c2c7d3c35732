//! The four patch types: JSON Patch (RFC 6902), JSON Merge Patch (RFC 7386), strategic merge
//! patch with upstream's merge keys and directives, and the merge used for server-side apply.

use serde_json::{Map, Value};

use crate::depth;

/// A patch that could not be applied; the API answers 422 (or 400 for a malformed body).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PatchError {
    #[error("{0}")]
    Malformed(String),
    #[error("{0}")]
    DoesNotApply(String),
    /// Past upstream's bound on one patch (413).
    #[error("{0}")]
    TooLarge(String),
}

/// Which patch a request carries, from its Content-Type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatchType {
    Json,
    Merge,
    Strategic,
    Apply,
}

impl PatchType {
    pub fn from_content_type(content_type: &str) -> Option<Self> {
        let base = content_type.split(';').next().unwrap_or_default().trim();
        match base {
            "application/json-patch+json" => Some(Self::Json),
            "application/merge-patch+json" => Some(Self::Merge),
            "application/strategic-merge-patch+json" => Some(Self::Strategic),
            "application/apply-patch+yaml" | "application/apply-patch+cbor" => Some(Self::Apply),
            _ => None,
        }
    }
}

/// Lists a kind merges by a key of its own in strategic merge patches: the list's path (field
/// names from the object root, indices left out) and the key (a kind's strategy names them).
pub type MergeKeys = &'static [(&'static [&'static str], &'static str)];

/// Applies a patch document of the given type to `original` (the object as stored), for an
/// object whose kind merges the lists `keys` names by those keys.
pub fn apply(
    patch_type: PatchType,
    keys: MergeKeys,
    original: &Value,
    patch: &Value,
) -> Result<Value, PatchError> {
    match patch_type {
        PatchType::Json => json_patch(original, patch),
        PatchType::Merge => {
            if !patch.is_object() {
                return Err(PatchError::Malformed(
                    "a merge patch must be a JSON object".into(),
                ));
            }
            let mut result = original.clone();
            merge_patch(&mut result, patch);
            Ok(result)
        }
        PatchType::Strategic | PatchType::Apply => strategic_merge(keys, original, patch),
    }
}

/// Upstream's bound on the operations of one JSON patch.
pub const MAX_JSON_PATCH_OPERATIONS: usize = 10_000;

/// How many bytes the `copy` operations of one patch may duplicate in all (the request body
/// limit, as upstream's accumulated copy size limit): each copy deep-copies what it names, so
/// a few dozen copies of a value into itself would otherwise double a document past memory.
pub const MAX_ACCUMULATED_COPY_BYTES: usize = 3 * 1024 * 1024;

fn json_patch(original: &Value, patch: &Value) -> Result<Value, PatchError> {
    let operations: json_patch::Patch = serde_json::from_value(patch.clone())
        .map_err(|error| PatchError::Malformed(format!("invalid JSON patch: {error}")))?;
    if operations.len() > MAX_JSON_PATCH_OPERATIONS {
        return Err(PatchError::TooLarge(format!(
            "The allowed maximum operations in a JSON patch is {MAX_JSON_PATCH_OPERATIONS}, got {}",
            operations.len()
        )));
    }
    let mut result = original.clone();
    let mut bounds = JsonPatchBounds::of(&result);
    for operation in operations.iter() {
        bounds.admit(&result, operation)?;
        json_patch::patch(&mut result, std::slice::from_ref(operation))
            .map_err(|error| PatchError::DoesNotApply(error.to_string()))?;
    }
    Ok(result)
}

/// What a JSON patch may grow a document to, checked before each operation so that no
/// intermediate document nests past what can be stored or duplicates without bound.
struct JsonPatchBounds {
    /// An upper bound on the document's nesting depth.
    depth: usize,
    copied: usize,
}

impl JsonPatchBounds {
    fn of(document: &Value) -> Self {
        Self {
            depth: depth::nesting_depth(document),
            copied: 0,
        }
    }

    fn admit(
        &mut self,
        document: &Value,
        operation: &json_patch::PatchOperation,
    ) -> Result<(), PatchError> {
        use json_patch::PatchOperation as Op;
        let (path, inserted) = match operation {
            Op::Add(op) => (op.path.as_str(), depth::nesting_depth(&op.value)),
            Op::Replace(op) => (op.path.as_str(), depth::nesting_depth(&op.value)),
            Op::Copy(op) => {
                let Some(value) = document.pointer(op.from.as_str()) else {
                    return Ok(()); // the operation itself reports the missing path
                };
                self.copied = self.copied.saturating_add(serialized_len(value));
                if self.copied > MAX_ACCUMULATED_COPY_BYTES {
                    return Err(PatchError::DoesNotApply(format!(
                        "Unable to copy, a value exceeding the accumulated copy size limit of {MAX_ACCUMULATED_COPY_BYTES} bytes"
                    )));
                }
                (op.path.as_str(), depth::nesting_depth(value))
            }
            Op::Move(op) => {
                // What moves sits under `from`, so the document's bound limits it; only a
                // move that might go too deep is measured.
                let from = depth::pointer_tokens(op.from.as_str());
                let bound = self.depth.saturating_sub(from);
                let moved = if depth::pointer_tokens(op.path.as_str()) + bound > depth::MAX_DEPTH {
                    document
                        .pointer(op.from.as_str())
                        .map_or(0, depth::nesting_depth)
                } else {
                    bound
                };
                (op.path.as_str(), moved)
            }
            Op::Remove(_) | Op::Test(_) => return Ok(()),
        };
        // A value added at a path of n tokens sits inside n containers.
        let reached = depth::pointer_tokens(path) + inserted;
        if reached > depth::MAX_DEPTH {
            return Err(PatchError::DoesNotApply(format!(
                "the patch nests {path:?} {reached} levels deep; at most {} can be stored",
                depth::MAX_DEPTH
            )));
        }
        self.depth = self.depth.max(reached);
        Ok(())
    }
}

/// The length of `value` as compact JSON, counted without building it.
fn serialized_len(value: &Value) -> usize {
    struct Counter(usize);
    impl std::io::Write for Counter {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0 += bytes.len();
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut counter = Counter(0);
    // Writing to a counter cannot fail; a failure would only under-count.
    let _ = serde_json::to_writer(&mut counter, value);
    counter.0
}

/// RFC 7386: objects merge recursively, `null` deletes, anything else replaces.
pub fn merge_patch(target: &mut Value, patch: &Value) {
    let Value::Object(patch_map) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    if let Value::Object(target_map) = target {
        for (key, value) in patch_map {
            if value.is_null() {
                target_map.remove(key);
            } else {
                merge_patch(target_map.entry(key.clone()).or_insert(Value::Null), value);
            }
        }
    }
}

/// How a list field merges in a strategic merge patch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ListStrategy {
    /// The patch's list replaces the original (untagged lists).
    Replace,
    /// A list of objects merged by the named key.
    MergeByKey(&'static str),
    /// A list of scalars merged as a set (`finalizers`).
    MergeScalars,
}

/// The merge strategy of the list at `path` (field names from the object root, list indices
/// left out): the kind's own `keys` first, then the fields every kind shares. Taken from the
/// `patchStrategy`/`patchMergeKey` tags of the served types.
pub(crate) fn list_strategy(keys: MergeKeys, path: &[&str]) -> ListStrategy {
    let Some((&field, parents)) = path.split_last() else {
        return ListStrategy::Replace;
    };
    let parent = parents.last().copied().unwrap_or_default();
    if let Some((_, key)) = keys.iter().find(|(at, _)| *at == path) {
        return ListStrategy::MergeByKey(key);
    }
    match field {
        "containers" | "initContainers" | "ephemeralContainers" => ListStrategy::MergeByKey("name"),
        "env" | "imagePullSecrets" | "volumes" | "schedulingGates" | "resourceClaims" => {
            ListStrategy::MergeByKey("name")
        }
        "ports"
            if matches!(
                parent,
                "containers" | "initContainers" | "ephemeralContainers"
            ) =>
        {
            ListStrategy::MergeByKey("containerPort")
        }
        "volumeMounts" => ListStrategy::MergeByKey("mountPath"),
        "volumeDevices" => ListStrategy::MergeByKey("devicePath"),
        "hostAliases" => ListStrategy::MergeByKey("ip"),
        "topologySpreadConstraints" => ListStrategy::MergeByKey("topologyKey"),
        "conditions" => ListStrategy::MergeByKey("type"),
        "ownerReferences" if parent == "metadata" => ListStrategy::MergeByKey("uid"),
        "finalizers" if parent == "metadata" => ListStrategy::MergeScalars,
        _ => ListStrategy::Replace,
    }
}

const DIRECTIVE: &str = "$patch";
const RETAIN_KEYS: &str = "$retainKeys";
const SET_ORDER_PREFIX: &str = "$setElementOrder/";
const DELETE_FROM_PRIMITIVE_PREFIX: &str = "$deleteFromPrimitiveList/";

/// Applies a strategic merge patch.
pub fn strategic_merge(
    keys: MergeKeys,
    original: &Value,
    patch: &Value,
) -> Result<Value, PatchError> {
    let Value::Object(patch) = patch else {
        return Err(PatchError::Malformed(
            "a strategic merge patch must be a JSON object".into(),
        ));
    };
    let original = match original {
        Value::Object(map) => map.clone(),
        _ => Map::new(),
    };
    let mut path = Vec::new();
    match merge_map(keys, &mut path, original, patch)? {
        Some(map) => Ok(Value::Object(map)),
        None => Ok(Value::Object(Map::new())),
    }
}

/// Merges `patch` into `original`; `None` means the map was deleted by `$patch: delete`.
fn merge_map<'a>(
    keys: MergeKeys,
    path: &mut Vec<&'a str>,
    mut original: Map<String, Value>,
    patch: &'a Map<String, Value>,
) -> Result<Option<Map<String, Value>>, PatchError> {
    match patch.get(DIRECTIVE).and_then(Value::as_str) {
        Some("delete") => return Ok(None),
        Some("replace") => {
            let mut replaced = Map::new();
            for (key, value) in patch {
                if key == DIRECTIVE {
                    continue;
                }
                path.push(key);
                let cleaned = clean(keys, path, value)?;
                path.pop();
                replaced.insert(key.clone(), cleaned);
            }
            return Ok(Some(replaced));
        }
        Some("merge") | None => {}
        Some(other) => {
            return Err(PatchError::Malformed(format!(
                "unknown patch type: {other:?} in map"
            )));
        }
    }

    for (key, value) in patch {
        if key == DIRECTIVE
            || key == RETAIN_KEYS
            || key.starts_with(SET_ORDER_PREFIX)
            || key.starts_with(DELETE_FROM_PRIMITIVE_PREFIX)
        {
            continue;
        }
        path.push(key);
        if value.is_null() {
            original.remove(key);
            path.pop();
            continue;
        }
        let merged = match (original.remove(key), value) {
            (Some(Value::Object(existing)), Value::Object(patch_map)) => {
                merge_map(keys, path, existing, patch_map)?.map(Value::Object)
            }
            (Some(Value::Array(existing)), Value::Array(patch_list)) => {
                Some(Value::Array(merge_list(keys, path, existing, patch_list)?))
            }
            (_, value) => match value {
                Value::Object(patch_map) => {
                    merge_map(keys, path, Map::new(), patch_map)?.map(Value::Object)
                }
                Value::Array(patch_list) => Some(Value::Array(merge_list(
                    keys,
                    path,
                    Vec::new(),
                    patch_list,
                )?)),
                scalar => Some(scalar.clone()),
            },
        };
        path.pop();
        if let Some(merged) = merged {
            original.insert(key.clone(), merged);
        }
    }

    for (key, value) in patch {
        if let Some(field) = key.strip_prefix(DELETE_FROM_PRIMITIVE_PREFIX) {
            let doomed = value.as_array().cloned().unwrap_or_default();
            if let Some(Value::Array(items)) = original.get_mut(field) {
                items.retain(|item| !doomed.contains(item));
            }
        }
    }
    for (key, value) in patch {
        if let Some(field) = key.strip_prefix(SET_ORDER_PREFIX) {
            path.push(field);
            let strategy = list_strategy(keys, path);
            path.pop();
            if let (Some(Value::Array(items)), Some(order)) =
                (original.get_mut(field), value.as_array())
            {
                reorder(items, order, strategy);
            }
        }
    }
    if let Some(retain) = patch.get(RETAIN_KEYS) {
        let keep: Vec<&str> = retain
            .as_array()
            .ok_or_else(|| PatchError::Malformed("$retainKeys must be a list".into()))?
            .iter()
            .filter_map(Value::as_str)
            .collect();
        original.retain(|key, _| keep.contains(&key.as_str()));
    }
    Ok(Some(original))
}

fn merge_list<'a>(
    keys: MergeKeys,
    path: &mut Vec<&'a str>,
    original: Vec<Value>,
    patch: &'a [Value],
) -> Result<Vec<Value>, PatchError> {
    match list_strategy(keys, path) {
        ListStrategy::Replace => patch.iter().map(|item| clean(keys, path, item)).collect(),
        ListStrategy::MergeScalars => {
            let mut merged = original;
            for item in patch {
                if !merged.contains(item) {
                    merged.push(item.clone());
                }
            }
            Ok(merged)
        }
        ListStrategy::MergeByKey(merge_key) => {
            let replace_all = patch.iter().any(|item| {
                item.as_object().is_some_and(|map| {
                    map.len() == 1 && map.get(DIRECTIVE).and_then(Value::as_str) == Some("replace")
                })
            });
            if replace_all {
                return patch
                    .iter()
                    .filter(|item| item.get(DIRECTIVE).is_none())
                    .map(|item| clean(keys, path, item))
                    .collect();
            }
            let mut merged = original;
            for item in patch {
                let Value::Object(item_map) = item else {
                    return Err(PatchError::Malformed(format!(
                        "list {} must contain objects merged by {merge_key:?}",
                        path.join(".")
                    )));
                };
                let key = item_map.get(merge_key).ok_or_else(|| {
                    PatchError::Malformed(format!(
                        "map: {item} does not contain declared merge key: {merge_key}"
                    ))
                })?;
                let position = merged
                    .iter()
                    .position(|existing| existing.get(merge_key) == Some(key));
                let deleting = item_map.get(DIRECTIVE).and_then(Value::as_str) == Some("delete");
                match (position, deleting) {
                    (Some(index), true) => {
                        merged.remove(index);
                    }
                    (None, true) => {}
                    (Some(index), false) => {
                        let existing = match merged.remove(index) {
                            Value::Object(map) => map,
                            _ => Map::new(),
                        };
                        if let Some(result) = merge_map(keys, path, existing, item_map)? {
                            merged.insert(index, Value::Object(result));
                        }
                    }
                    (None, false) => {
                        if let Some(result) = merge_map(keys, path, Map::new(), item_map)? {
                            merged.push(Value::Object(result));
                        }
                    }
                }
            }
            Ok(merged)
        }
    }
}

/// A patch value placed where nothing existed: directives inside it still apply (to nothing).
fn clean<'a>(
    keys: MergeKeys,
    path: &mut Vec<&'a str>,
    value: &'a Value,
) -> Result<Value, PatchError> {
    match value {
        Value::Object(map) => Ok(merge_map(keys, path, Map::new(), map)?
            .map(Value::Object)
            .unwrap_or(Value::Null)),
        Value::Array(items) => Ok(Value::Array(merge_list(keys, path, Vec::new(), items)?)),
        scalar => Ok(scalar.clone()),
    }
}

/// `$setElementOrder`: items named in `order` take its order; the others keep their place
/// after them, in their current order.
fn reorder(items: &mut Vec<Value>, order: &[Value], strategy: ListStrategy) {
    let rank = |item: &Value| -> Option<usize> {
        match strategy {
            ListStrategy::MergeByKey(key) => order
                .iter()
                .position(|o| o.get(key).is_some() && o.get(key) == item.get(key)),
            _ => order.iter().position(|o| o == item),
        }
    };
    let mut ranked: Vec<(usize, usize, Value)> = items
        .drain(..)
        .enumerate()
        .map(|(index, item)| (rank(&item).unwrap_or(usize::MAX), index, item))
        .collect();
    ranked.sort_by_key(|(rank, index, _)| (*rank, *index));
    items.extend(ranked.into_iter().map(|(_, _, item)| item));
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn containers_merge_by_name_and_keep_order() {
        let original = json!({"spec": {"template": {"spec": {"containers": [
            {"name": "nginx", "image": "a", "ports": [{"containerPort": 80, "name": "web"}]},
            {"name": "side", "image": "s"}
        ]}}}});
        let patch = json!({"spec": {"template": {"spec": {
            "$setElementOrder/containers": [{"name": "nginx"}, {"name": "side"}],
            "containers": [{"name": "nginx", "image": "b"}]
        }}}});
        let result = strategic_merge(&[], &original, &patch).expect("applies");
        let containers = &result["spec"]["template"]["spec"]["containers"];
        assert_eq!(containers[0]["image"], "b");
        assert_eq!(containers[0]["ports"][0]["name"], "web");
        assert_eq!(containers[1]["name"], "side");
    }

    #[test]
    fn patch_replace_replaces_the_whole_template() {
        let original = json!({"spec": {"template": {"metadata": {"labels": {"a": "1"}},
            "spec": {"containers": [{"name": "x", "image": "old", "env": [{"name": "E"}]}]}}}});
        let patch = json!({"spec": {"template": {"$patch": "replace",
            "spec": {"containers": [{"name": "x", "image": "new"}]}}}});
        let result = strategic_merge(&[], &original, &patch).expect("applies");
        assert_eq!(
            result["spec"]["template"],
            json!({"spec": {"containers": [{"name": "x", "image": "new"}]}})
        );
    }

    #[test]
    fn delete_directive_and_null_remove() {
        let original = json!({"metadata": {"labels": {"a": "1", "b": "2"}},
            "spec": {"containers": [{"name": "x"}, {"name": "y"}]}});
        let patch = json!({"metadata": {"labels": {"a": null}},
            "spec": {"containers": [{"name": "y", "$patch": "delete"}]}});
        let result = strategic_merge(&[], &original, &patch).expect("applies");
        assert_eq!(result["metadata"]["labels"], json!({"b": "2"}));
        assert_eq!(result["spec"]["containers"], json!([{"name": "x"}]));
    }

    #[test]
    fn finalizers_merge_as_a_set_and_untagged_lists_replace() {
        let original = json!({"metadata": {"finalizers": ["a"]}, "spec": {"args": ["1", "2"]}});
        let patch = json!({"metadata": {"finalizers": ["b", "a"],
            "$deleteFromPrimitiveList/finalizers": ["a"]}, "spec": {"args": ["3"]}});
        let result = strategic_merge(&[], &original, &patch).expect("applies");
        assert_eq!(result["metadata"]["finalizers"], json!(["b"]));
        assert_eq!(result["spec"]["args"], json!(["3"]));
    }

    #[test]
    fn retain_keys_drops_the_rest() {
        let original =
            json!({"spec": {"strategy": {"type": "RollingUpdate", "rollingUpdate": {"x": 1}}}});
        let patch = json!({"spec": {"strategy": {"$retainKeys": ["type"], "type": "Recreate"}}});
        let result = strategic_merge(&[], &original, &patch).expect("applies");
        assert_eq!(result["spec"]["strategy"], json!({"type": "Recreate"}));
    }

    #[test]
    fn service_ports_merge_by_port() {
        let original = json!({"spec": {"ports": [{"port": 80, "name": "web"}]}});
        let patch = json!({"spec": {"ports": [{"port": 80, "targetPort": 8080}, {"port": 443}]}});
        let result =
            strategic_merge(crate::kinds::service::MERGE_KEYS, &original, &patch).expect("applies");
        assert_eq!(
            result["spec"]["ports"],
            json!([{"port": 80, "name": "web", "targetPort": 8080}, {"port": 443}])
        );
    }

    /// A `copy` of a value into itself doubles its depth and size: the patch is refused before
    /// it nests past what can be stored, or duplicates past the copy budget.
    #[test]
    fn json_patch_copies_cannot_nest_or_grow_without_bound() {
        let original = json!({"metadata": {"name": "r"}, "data": {"a": {"b": 1}}});
        // Each copy nests the whole field one level deeper (data = {a: data}).
        let deepening: Vec<Value> = (0..150)
            .map(|_| json!({"op": "copy", "from": "/data", "path": "/data/a"}))
            .collect();
        let error = apply(PatchType::Json, &[], &original, &json!(deepening)).expect_err("refused");
        assert!(
            matches!(&error, PatchError::DoesNotApply(m) if m.contains("levels deep")),
            "{error:?}"
        );
        let big = "x".repeat(64 * 1024);
        let original = json!({"metadata": {"name": "r"}, "data": {"blob": big}});
        let widening: Vec<Value> = (0..100)
            .map(|i| json!({"op": "copy", "from": "/data/blob", "path": format!("/data/c{i}")}))
            .collect();
        let error = apply(PatchType::Json, &[], &original, &json!(widening)).expect_err("refused");
        assert!(
            matches!(&error, PatchError::DoesNotApply(m) if m.contains("copy size limit")),
            "{error:?}"
        );
    }

    #[test]
    fn json_patch_adds_and_moves_are_bounded_by_depth_too() {
        let mut deep = json!(1);
        for _ in 0..98 {
            deep = json!({ "n": deep });
        }
        let original = json!({"metadata": {"name": "r"}, "data": {"a": {}}});
        // Three tokens and 98 levels: 101 in all.
        let add = json!([{"op": "add", "path": "/data/a/x", "value": deep}]);
        assert!(apply(PatchType::Json, &[], &original, &add).is_err());
        let mut shallow = json!(1);
        for _ in 0..50 {
            shallow = json!({ "n": shallow });
        }
        let original =
            json!({"metadata": {"name": "r"}, "data": {"a": shallow.clone(), "b": shallow}});
        let mut moves = Vec::new();
        let mut target = String::from("/data/b");
        for _ in 0..49 {
            target.push_str("/n");
        }
        moves.push(json!({"op": "move", "from": "/data/a", "path": format!("{target}/a")}));
        assert!(apply(PatchType::Json, &[], &original, &json!(moves)).is_err());
    }

    /// json-patch 4.2 panics undoing a move to the root when a later operation fails; the
    /// operations are applied one at a time to a copy, so nothing is undone.
    #[test]
    fn a_failed_patch_after_a_move_to_the_root_is_an_error() {
        let original = json!({"metadata": {"name": "r"}, "data": {"a": "1"}});
        let patch = json!([
            {"op": "move", "from": "/data", "path": ""},
            {"op": "test", "path": "/nope", "value": 1}
        ]);
        assert!(apply(PatchType::Json, &[], &original, &patch).is_err());
    }

    #[test]
    fn json_patch_operations_are_capped_as_upstream() {
        let original = json!({"metadata": {"name": "r"}});
        let many: Vec<Value> = (0..=MAX_JSON_PATCH_OPERATIONS)
            .map(|_| json!({"op": "test", "path": "/metadata/name", "value": "r"}))
            .collect();
        let error = apply(PatchType::Json, &[], &original, &json!(many)).expect_err("refused");
        assert_eq!(
            error,
            PatchError::TooLarge(
                "The allowed maximum operations in a JSON patch is 10000, got 10001".into()
            )
        );
    }

    #[test]
    fn json_patch_test_failure_does_not_apply() {
        let original = json!({"spec": {"replicas": 1}});
        let patch = json!([{"op": "test", "path": "/spec/replicas", "value": 2}]);
        assert!(matches!(
            apply(PatchType::Json, &[], &original, &patch),
            Err(PatchError::DoesNotApply(_))
        ));
        let patch = json!([{"op": "replace", "path": "/spec/replicas", "value": 3}]);
        assert_eq!(
            apply(PatchType::Json, &[], &original, &patch).expect("applies")["spec"]["replicas"],
            3
        );
    }

    #[test]
    fn merge_patch_follows_rfc7386() {
        let mut target = json!({"a": {"b": 1, "c": 2}, "d": [1]});
        merge_patch(&mut target, &json!({"a": {"b": null, "e": 3}, "d": [2]}));
        assert_eq!(target, json!({"a": {"c": 2, "e": 3}, "d": [2]}));
    }
}
