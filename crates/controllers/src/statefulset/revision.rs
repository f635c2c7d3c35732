//! ControllerRevisions as upstream stores them: the pod template as a strategic-merge patch with
//! `$patch: replace`, keys sorted, named `<set>-<hash>` where the hash is FNV-1 (32 bit) over
//! those bytes and the collision count, spelled in upstream's safe alphabet.

use k8s_openapi::api::apps::v1::StatefulSet;
use serde_json::{Value, json};

/// Upstream's `rand.SafeEncodeString` alphabet.
const SAFE_ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

/// The revision `data` of a set's current template: `{"spec":{"template":{"$patch":"replace",…}}}`.
pub fn patch_of(set: &StatefulSet) -> Value {
    patch_of_template(
        set.spec
            .as_ref()
            .map(|spec| serde_json::to_value(&spec.template).unwrap_or_else(|_| json!({})))
            .unwrap_or_else(|| json!({})),
    )
}

/// The revision `data` of a pod template (a DaemonSet's revisions have the same shape).
pub fn patch_of_template(mut template: Value) -> Value {
    if let Some(map) = template.as_object_mut() {
        map.insert("$patch".into(), json!("replace"));
    }
    json!({"spec": {"template": template}})
}

/// The bytes hashed and stored: serde_json's maps are sorted, as upstream's map round trip is.
pub fn bytes_of(patch: &Value) -> Vec<u8> {
    serde_json::to_vec(patch).unwrap_or_default()
}

fn fnv1_32(parts: &[&[u8]]) -> u32 {
    let mut hash: u32 = 0x811c_9dc5;
    for part in parts {
        for byte in *part {
            hash = hash.wrapping_mul(0x0100_0193);
            hash ^= u32::from(*byte);
        }
    }
    hash
}

/// The revision hash for these bytes and collision count.
pub fn hash(bytes: &[u8], collision_count: i32) -> String {
    let count = collision_count.to_string();
    let value = fnv1_32(&[bytes, count.as_bytes()]);
    value
        .to_string()
        .bytes()
        .map(|digit| SAFE_ALPHABET[usize::from(digit) % SAFE_ALPHABET.len()] as char)
        .collect()
}

/// `<set>-<hash>`, the set's name cut to keep the whole within 253 characters.
pub fn name(set_name: &str, hash: &str) -> String {
    let prefix: String = set_name.chars().take(223).collect();
    format!("{prefix}-{hash}")
}

/// The template stored in a revision's data, with the directive removed.
pub fn template_of(data: &Value) -> Option<Value> {
    let mut template = data.pointer("/spec/template")?.clone();
    if let Some(map) = template.as_object_mut() {
        map.remove("$patch");
    }
    Some(template)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_use_the_safe_alphabet_and_depend_on_the_collision_count() {
        let first = hash(b"{}", 0);
        assert!(first.chars().all(|c| "456789bcdf".contains(c)), "{first}");
        assert!((9..=10).contains(&first.len()));
        assert_ne!(first, hash(b"{}", 1));
        assert_eq!(first, hash(b"{}", 0));
    }

    #[test]
    fn fnv1_matches_the_reference_values() {
        // FNV-1 32 of "" is the offset basis; of "a" it is 0x050c5d7e.
        assert_eq!(fnv1_32(&[b""]), 0x811c_9dc5);
        assert_eq!(fnv1_32(&[b"a"]), 0x050c_5d7e);
    }

    #[test]
    fn patches_replace_the_template_and_sort_keys() {
        let set: StatefulSet = serde_json::from_value(json!({
            "metadata": {"name": "web"},
            "spec": {"selector": {}, "serviceName": "nginx", "template": {
                "metadata": {"labels": {"app": "nginx"}},
                "spec": {"containers": [{"name": "nginx", "image": "nginx-slim:0.8"}]}}}
        }))
        .expect("a set");
        let patch = patch_of(&set);
        let text = String::from_utf8(bytes_of(&patch)).expect("utf-8");
        assert!(
            text.starts_with(r#"{"spec":{"template":{"$patch":"replace","metadata":"#),
            "{text}"
        );
        let template = template_of(&patch).expect("template");
        assert_eq!(template["spec"]["containers"][0]["image"], "nginx-slim:0.8");
    }
}
