//! The four patch types on arbitrary documents: they answer with a document or an error, and a
//! JSON patch can neither nest a document past what can be stored nor copy it without bound.

use petset_api::depth::{MAX_DEPTH, nesting_depth};
use petset_api::patch::{self, MAX_ACCUMULATED_COPY_BYTES, MergeKeys, PatchType};
use petset_api::resources::RESOURCES;
use proptest::prelude::*;
use serde_json::{Value, json};

use crate::json;

fn patch_type() -> impl Strategy<Value = PatchType> {
    prop::sample::select(vec![
        PatchType::Json,
        PatchType::Merge,
        PatchType::Strategic,
        PatchType::Apply,
    ])
}

/// The strategic-merge keys of a kind that has some, or of one that has none.
fn kind() -> impl Strategy<Value = MergeKeys> {
    prop::sample::select(vec!["Pod", "StatefulSet", "Service", "Node", "ConfigMap"]).prop_map(
        |kind| {
            RESOURCES
                .iter()
                .find(|resource| resource.kind == kind)
                .map_or(&[][..], |resource| resource.strategy.merge_keys())
        },
    )
}

/// A kind that merges no list by a key of its own (ConfigMap).
const NO_KEYS: MergeKeys = &[];

/// JSON pointers over the same small alphabet as the documents' keys, so most of them name
/// something; sometimes the root, sometimes nonsense.
fn pointer() -> impl Strategy<Value = String> {
    prop_oneof![
        8 => prop::collection::vec(json::key(), 0..4).prop_map(|tokens| {
            tokens.iter().map(|t| format!("/{}", t.replace('~', "~0").replace('/', "~1"))).collect()
        }),
        1 => any::<String>(),
    ]
}

fn operation() -> impl Strategy<Value = Value> {
    let op = prop::sample::select(vec![
        "add", "remove", "replace", "move", "copy", "test", "nope",
    ]);
    (op, pointer(), pointer(), json::value()).prop_map(
        |(op, path, from, value)| json!({"op": op, "path": path, "from": from, "value": value}),
    )
}

fn json_patch() -> impl Strategy<Value = Value> {
    prop_oneof![
        8 => prop::collection::vec(operation(), 0..8).prop_map(Value::Array),
        1 => json::value(),
    ]
}

/// A chain of single-key objects `levels` deep, with a leaf at the bottom.
fn chain(levels: usize) -> Value {
    (0..levels).fold(json!("leaf"), |inner, _| json!({"a": inner}))
}

fn chain_pointer(tokens: usize) -> String {
    "/a".repeat(tokens)
}

/// Copies, moves and adds deep inside a document that is already near the depth bound.
fn deep_json_patch() -> impl Strategy<Value = (Value, Value)> {
    (80usize..=MAX_DEPTH).prop_flat_map(|levels| {
        let op = prop::sample::select(vec!["add", "move", "copy", "replace"]);
        let operation = (op, 0..=levels, 0..=levels, 0usize..30).prop_map(|(op, path, from, value)| {
            json!({"op": op, "path": chain_pointer(path), "from": chain_pointer(from), "value": chain(value)})
        });
        (Just(chain(levels)), prop::collection::vec(operation, 1..6).prop_map(Value::Array))
    })
}

fn serialized_len(value: &Value) -> usize {
    serde_json::to_vec(value).map_or(0, |bytes| bytes.len())
}

proptest! {
    #![proptest_config(crate::config())]

    #[test]
    fn no_patch_of_any_type_panics(
        patch_type in patch_type(),
        kind in kind(),
        original in json::value(),
        body in prop_oneof![json::value(), json_patch()],
    ) {
        let _ = patch::apply(patch_type, kind, &original, &body);
    }

    #[test]
    fn merges_nest_no_deeper_than_their_inputs(
        patch_type in prop::sample::select(vec![PatchType::Merge, PatchType::Strategic, PatchType::Apply]),
        kind in kind(),
        original in json::object(),
        body in json::object(),
    ) {
        if let Ok(merged) = patch::apply(patch_type, kind, &original, &body) {
            prop_assert!(nesting_depth(&merged) <= nesting_depth(&original).max(nesting_depth(&body)));
        }
    }

    #[test]
    fn a_json_patch_grows_a_document_only_by_what_it_carries_and_copies(
        original in json::object(),
        body in json_patch(),
    ) {
        if let Ok(patched) = patch::apply(PatchType::Json, NO_KEYS, &original, &body) {
            prop_assert!(
                serialized_len(&patched)
                    <= serialized_len(&original) + serialized_len(&body) + MAX_ACCUMULATED_COPY_BYTES
            );
        }
    }

    #[test]
    fn a_json_patch_never_nests_a_storable_document_past_the_bound((original, body) in deep_json_patch()) {
        match patch::apply(PatchType::Json, NO_KEYS, &original, &body) {
            Ok(patched) => prop_assert!(nesting_depth(&patched) <= MAX_DEPTH, "{}", nesting_depth(&patched)),
            Err(patch::PatchError::TooLarge(message)) => prop_assert!(false, "{}", message),
            Err(_) => {}
        }
    }

    #[test]
    fn a_failed_json_patch_leaves_no_trace(original in json::object(), body in json_patch()) {
        // `apply` works on a copy: whatever it answers, the original is what it was.
        let before = original.clone();
        let _ = patch::apply(PatchType::Json, NO_KEYS, &original, &body);
        prop_assert_eq!(original, before);
    }
}
