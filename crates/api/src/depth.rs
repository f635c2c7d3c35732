//! How deeply a JSON value nests, measured without recursion.
//!
//! Every reader of a stored object (this server's decoder, its list and watch envelopes,
//! kube-rs clients, the in-process controllers) parses JSON with serde_json's limit of 128
//! nested containers. An object that nests deeper could be stored but never read back, so
//! writes are refused past [`MAX_DEPTH`], which leaves room for the envelopes around an object
//! (a list's `items`, a watch event, a Table row).

use serde_json::Value;

/// The deepest nesting a stored object may have: its own object counts as one level.
pub const MAX_DEPTH: usize = 100;

/// The number of nested containers in `value`: 0 for a scalar, 1 for `{}` or `[1]`.
pub fn nesting_depth(value: &Value) -> usize {
    let mut deepest = 0;
    let mut pending = vec![(value, 1usize)];
    while let Some((value, level)) = pending.pop() {
        let children: Box<dyn Iterator<Item = &Value>> = match value {
            Value::Object(map) => Box::new(map.values()),
            Value::Array(items) => Box::new(items.iter()),
            _ => continue,
        };
        deepest = deepest.max(level);
        pending.extend(children.map(|child| (child, level + 1)));
    }
    deepest
}

/// The first top-level field of `object` that nests past [`MAX_DEPTH`], with its depth
/// counted from the object, or `None` when the object is shallow enough.
pub fn too_deep(object: &Value) -> Option<(String, usize)> {
    let Value::Object(fields) = object else {
        return None;
    };
    fields.iter().find_map(|(name, value)| {
        let depth = 1 + nesting_depth(value);
        (depth > MAX_DEPTH).then(|| (name.clone(), depth))
    })
}

/// How many reference tokens a JSON pointer (RFC 6901) has: `""` is 0, `/a/b` is 2.
pub fn pointer_tokens(pointer: &str) -> usize {
    pointer.bytes().filter(|b| *b == b'/').count()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn nested(levels: usize) -> Value {
        let mut value = json!(1);
        for _ in 0..levels {
            value = json!({ "a": value });
        }
        value
    }

    #[test]
    fn scalars_are_flat_and_containers_count_once_each() {
        assert_eq!(nesting_depth(&json!("x")), 0);
        assert_eq!(nesting_depth(&json!({})), 1);
        assert_eq!(nesting_depth(&json!([1, [2, [3]]])), 3);
        assert_eq!(nesting_depth(&nested(250)), 250);
    }

    #[test]
    fn a_field_past_the_limit_is_named() {
        let object = json!({"metadata": {"name": "x"}, "data": nested(MAX_DEPTH)});
        assert_eq!(too_deep(&object), Some(("data".into(), MAX_DEPTH + 1)));
        let object = json!({"metadata": {"name": "x"}, "data": nested(MAX_DEPTH - 1)});
        assert_eq!(too_deep(&object), None);
    }

    #[test]
    fn pointers_count_their_tokens() {
        assert_eq!(pointer_tokens(""), 0);
        assert_eq!(pointer_tokens("/data"), 1);
        assert_eq!(pointer_tokens("/spec/template/spec"), 3);
    }
}
