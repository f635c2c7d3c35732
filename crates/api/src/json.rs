//! Getters for objects in wire form: a field at a JSON pointer, or its zero value, so that
//! reading an object never fails (validation is where a wrong type is refused).

use serde_json::Value;

/// The string at `pointer` (a JSON pointer); empty when missing or not a string.
pub fn text<'a>(object: &'a Value, pointer: &str) -> &'a str {
    object
        .pointer(pointer)
        .and_then(Value::as_str)
        .unwrap_or_default()
}

/// The array at `pointer`; empty when missing or not an array.
pub fn items<'a>(object: &'a Value, pointer: &str) -> &'a [Value] {
    object
        .pointer(pointer)
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default()
}

/// The integer at `pointer`; 0 when missing or not an integer.
pub fn count(object: &Value, pointer: &str) -> i64 {
    object.pointer(pointer).and_then(Value::as_i64).unwrap_or(0)
}

/// How many entries the map at `pointer` has; 0 when missing or not a map.
pub fn map_len(object: &Value, pointer: &str) -> usize {
    object
        .pointer(pointer)
        .and_then(Value::as_object)
        .map_or(0, |m| m.len())
}
