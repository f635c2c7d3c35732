//! Protobuf request bodies, as kubectl's imperative `create` commands, `kubectl debug` and
//! client-go's typed clients send them: the `k8s\0` envelope around a `runtime.Unknown`,
//! whose `raw` bytes are the object. Decoded into the same JSON the object would have arrived
//! as, by the kind's layout (`petset_api::proto`; field numbers are upstream's
//! `generated.proto`). A field with a value that the layout lacks is a 400 naming it, never
//! dropped. Answers go out as protobuf by the same layouts (`encode`) when a client asks.

use base64::Engine;
use petset_api::ApiError;
use petset_api::proto::{Field, Kind, f};
use petset_api::resources::ResourceType;
use serde_json::{Map, Value, json};

pub mod encode;

const MAGIC: &[u8] = b"k8s\0";

/// runtime.Unknown: typeMeta {apiVersion=1, kind=2}, raw=2.
const UNKNOWN: &[Field] = &[
    f(
        1,
        "typeMeta",
        Kind::Message(&[f(1, "apiVersion", Kind::String), f(2, "kind", Kind::String)]),
    ),
    f(2, "raw", Kind::Bytes),
    f(3, "contentEncoding", Kind::String),
    f(4, "contentType", Kind::String),
];

/// The message layout of a kind, from its catalogue entry.
fn schema(api_version: &str, kind: &str) -> Option<&'static [Field]> {
    petset_api::resources::find_kind(api_version, kind).and_then(|resource| resource.protobuf)
}

/// Decodes a protobuf request body for `resource` into its JSON form.
pub fn decode(body: &[u8], resource: &ResourceType) -> Result<Value, ApiError> {
    let bad = |detail: &str| {
        ApiError::bad_request(format!(
            "{kind} in version \"{version}\" cannot be handled as a {kind}: {detail}",
            kind = resource.kind,
            version = resource.version
        ))
    };
    let envelope = body
        .strip_prefix(MAGIC)
        .ok_or_else(|| bad("the protobuf body lacks the k8s envelope"))?;
    let unknown = message(envelope, UNKNOWN, "").map_err(|e| bad(&e))?;
    let kind = unknown
        .pointer("/typeMeta/kind")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let api_version = unknown
        .pointer("/typeMeta/apiVersion")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let fields = schema(api_version, kind).ok_or_else(|| {
        ApiError::unsupported_media_type(&format!(
            "application/vnd.kubernetes.protobuf for {kind:?} (send JSON)"
        ))
    })?;
    let raw = unknown
        .get("raw")
        .and_then(Value::as_str)
        .and_then(|b64| base64::engine::general_purpose::STANDARD.decode(b64).ok())
        .unwrap_or_default();
    let mut object = message(&raw, fields, "").map_err(|e| bad(&e))?;
    object["kind"] = json!(kind);
    object["apiVersion"] = json!(api_version);
    Ok(object)
}

/// Decodes a protobuf body that is not a stored kind but the options of a request:
/// `DeleteOptions` (a DELETE's body) or an `Eviction`; `what` names it in errors.
pub fn decode_request_options(body: &[u8], what: &str) -> Result<Value, ApiError> {
    let bad = |detail: &str| ApiError::bad_request(format!("invalid {what}: {detail}"));
    let envelope = body
        .strip_prefix(MAGIC)
        .ok_or_else(|| bad("the protobuf body lacks the k8s envelope"))?;
    let unknown = message(envelope, UNKNOWN, "").map_err(|e| bad(&e))?;
    let kind = unknown
        .pointer("/typeMeta/kind")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let fields = match kind.as_str() {
        "DeleteOptions" => petset_api::proto::DELETE_OPTIONS,
        "Eviction" => petset_api::proto::EVICTION,
        "TokenRequest" => petset_api::kinds::serviceaccount::TOKEN_REQUEST,
        _ => return Err(bad(&format!("a {kind:?} is not a {what}"))),
    };
    let raw = unknown
        .get("raw")
        .and_then(Value::as_str)
        .and_then(|b64| base64::engine::general_purpose::STANDARD.decode(b64).ok())
        .unwrap_or_default();
    let mut options = message(&raw, fields, "").map_err(|e| bad(&e))?;
    options["kind"] = json!(kind);
    Ok(options)
}

struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    fn varint(&mut self) -> Result<u64, String> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let (&byte, rest) = self.bytes.split_first().ok_or("truncated varint")?;
            self.bytes = rest;
            value |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err("varint too long".into())
    }

    fn take(&mut self, length: usize) -> Result<&'a [u8], String> {
        if self.bytes.len() < length {
            return Err("truncated field".into());
        }
        let (head, rest) = self.bytes.split_at(length);
        self.bytes = rest;
        Ok(head)
    }

    /// The next field: its number and its value as the wire type carries it.
    fn field(&mut self) -> Result<(u64, Wire<'a>), String> {
        let tag = self.varint()?;
        let (number, wire) = (tag >> 3, tag & 7);
        let value = match wire {
            0 => Wire::Varint(self.varint()?),
            1 => Wire::Fixed(self.take(8)?),
            5 => Wire::Fixed(self.take(4)?),
            2 => {
                let length = usize::try_from(self.varint()?).map_err(|_| "length overflow")?;
                Wire::Bytes(self.take(length)?)
            }
            other => return Err(format!("unsupported wire type {other} of field {number}")),
        };
        Ok((number, value))
    }
}

/// A field's value as it is on the wire.
#[derive(Clone, Copy)]
enum Wire<'a> {
    Varint(u64),
    Fixed(&'a [u8]),
    Bytes(&'a [u8]),
}

/// How deep `carries_a_value` looks into an unknown field that might be a message.
const ZERO_PROBE_DEPTH: usize = 32;

/// Whether an unknown field holds anything. Go's generated marshallers send every non-pointer
/// field, set or not (a status nobody filled, an empty string, a zero count), so a field that
/// is zero all the way down carries nothing the object would not have without it: such a
/// field may be skipped. Anything else would be data lost, and is refused.
fn carries_a_value(value: Wire<'_>, depth: usize) -> bool {
    match value {
        Wire::Varint(value) => value != 0,
        Wire::Fixed(bytes) => bytes.iter().any(|&b| b != 0),
        Wire::Bytes([]) => false,
        Wire::Bytes(_) if depth == 0 => true,
        Wire::Bytes(bytes) => {
            // Zero only if the bytes read as a message of zero fields.
            let mut reader = Reader { bytes };
            while !reader.bytes.is_empty() {
                match reader.field() {
                    Ok((_, inner)) if !carries_a_value(inner, depth - 1) => {}
                    _ => return true,
                }
            }
            false
        }
    }
}

fn text(bytes: &[u8]) -> Result<String, String> {
    String::from_utf8(bytes.to_vec()).map_err(|_| "a string field is not UTF-8".to_string())
}

/// `path` with `name` appended, as the error messages name a place in the object.
fn child(path: &str, name: &str) -> String {
    if path.is_empty() {
        name.to_string()
    } else {
        format!("{path}.{name}")
    }
}

fn place(path: &str) -> String {
    if path.is_empty() {
        "the object".to_string()
    } else {
        path.to_string()
    }
}

/// Decodes one message, `path` being where it sits in the object (for errors). A field the
/// layout does not know is skipped only when it holds nothing (`carries_a_value`); one with
/// a value is a bad request naming its number and place, never silently dropped.
fn message(bytes: &[u8], fields: &[Field], path: &str) -> Result<Value, String> {
    let mut object = Map::new();
    decode_into(bytes, fields, path, &mut object)?;
    Ok(Value::Object(object))
}

/// Decodes the fields of one message into `object` (an inlined message shares its parent's).
fn decode_into(
    bytes: &[u8],
    fields: &[Field],
    path: &str,
    object: &mut Map<String, Value>,
) -> Result<(), String> {
    let mut reader = Reader { bytes };
    while !reader.bytes.is_empty() {
        let (number, value) = reader.field()?;
        let Some(field) = fields.iter().find(|f| f.number == number) else {
            if carries_a_value(value, ZERO_PROBE_DEPTH) {
                return Err(format!(
                    "field number {number} of {} is not one petset decodes from protobuf \
                     (refused rather than dropped; send the object as JSON)",
                    place(path)
                ));
            }
            continue;
        };
        decode_field(field, value, path, object)?;
    }
    Ok(())
}

fn decode_field(
    field: &Field,
    value: Wire<'_>,
    path: &str,
    object: &mut Map<String, Value>,
) -> Result<(), String> {
    let mismatch = || {
        format!(
            "field {} ({}) of {} has the wrong wire type",
            field.number,
            field.name,
            place(path)
        )
    };
    let payload = match (value, field.kind) {
        (_, Kind::Ignored) => return Ok(()),
        (Wire::Varint(value), Kind::Bool | Kind::OptionalBool) => {
            put(object, field, json!(value != 0));
            return Ok(());
        }
        // int32/int64 fields: two's complement in 64 bits.
        (Wire::Varint(value), Kind::Int | Kind::OptionalInt) => {
            put(object, field, json!(value as i64));
            return Ok(());
        }
        // A packed repeated int: varints back to back.
        (Wire::Bytes(bytes), Kind::Int) if field.repeated => {
            let mut reader = Reader { bytes };
            while !reader.bytes.is_empty() {
                put(object, field, json!(reader.varint()? as i64));
            }
            return Ok(());
        }
        (Wire::Bytes(payload), _) => payload,
        _ => return Err(mismatch()),
    };
    let here = child(path, field.name);
    match field.kind {
        Kind::String | Kind::OptionalString => put(object, field, json!(text(payload)?)),
        Kind::Bytes => put(
            object,
            field,
            json!(base64::engine::general_purpose::STANDARD.encode(payload)),
        ),
        Kind::Message(inner) => {
            let here = if field.repeated {
                let index = object
                    .get(field.name)
                    .and_then(Value::as_array)
                    .map_or(0, Vec::len);
                format!("{here}[{index}]")
            } else {
                here
            };
            put(object, field, message(payload, inner, &here)?);
        }
        Kind::Inline(inner) => decode_into(payload, inner, path, object)?,
        Kind::StringMap | Kind::BytesMap | Kind::QuantityMap | Kind::TimeMap => {
            let value_kind = match field.kind {
                Kind::BytesMap => Kind::Bytes,
                Kind::QuantityMap => Kind::Quantity,
                Kind::TimeMap => Kind::Time,
                _ => Kind::String,
            };
            let entry = message(
                payload,
                &[f(1, "key", Kind::String), f(2, "value", value_kind)],
                &here,
            )?;
            let key = entry.get("key").and_then(Value::as_str).unwrap_or_default();
            let value = entry
                .get("value")
                .cloned()
                .unwrap_or_else(|| match value_kind {
                    Kind::Quantity => json!("0"),
                    // Go's zero time, which JSON writes as null.
                    Kind::Time => Value::Null,
                    _ => json!(""),
                });
            let map = object
                .entry(field.name.to_string())
                .or_insert_with(|| json!({}));
            if let Some(map) = map.as_object_mut() {
                map.insert(key.to_string(), value);
            }
        }
        Kind::IntOrString => {
            let parsed = message(
                payload,
                &[
                    f(1, "type", Kind::Int),
                    f(2, "intVal", Kind::Int),
                    f(3, "strVal", Kind::String),
                ],
                &here,
            )?;
            let value = if parsed.get("type").and_then(Value::as_i64) == Some(1) {
                parsed.get("strVal").cloned().unwrap_or_else(|| json!(""))
            } else {
                parsed.get("intVal").cloned().unwrap_or_else(|| json!(0))
            };
            put(object, field, value);
        }
        // Go sends a zero time as an empty message (JSON null): no field at all.
        Kind::Time if payload.is_empty() => {}
        Kind::Time => {
            // The nanoseconds are never sent by Go and not kept by JSON (whole seconds).
            let parsed = message(
                payload,
                &[f(1, "seconds", Kind::Int), f(2, "nanos", Kind::Ignored)],
                &here,
            )?;
            let seconds = parsed.get("seconds").and_then(Value::as_i64).unwrap_or(0);
            let at = jiff::Timestamp::from_second(seconds)
                .map_err(|_| format!("{here}: the time {seconds} s is out of range"))?;
            put(object, field, json!(petset_api::time::format(at)));
        }
        Kind::MicroTime if payload.is_empty() => {}
        Kind::MicroTime => {
            let parsed = message(
                payload,
                &[f(1, "seconds", Kind::Int), f(2, "nanos", Kind::Int)],
                &here,
            )?;
            let seconds = parsed.get("seconds").and_then(Value::as_i64).unwrap_or(0);
            let nanos = parsed.get("nanos").and_then(Value::as_i64).unwrap_or(0);
            let at = i32::try_from(nanos)
                .ok()
                .and_then(|nanos| jiff::Timestamp::new(seconds, nanos).ok())
                .ok_or_else(|| {
                    format!("{here}: the time {seconds} s {nanos} ns is out of range")
                })?;
            put(object, field, json!(petset_api::time::format_micro(at)));
        }
        Kind::Quantity => {
            let parsed = message(payload, &[f(1, "string", Kind::String)], &here)?;
            // A zero Quantity is sent as "0"; an empty message is one too.
            let quantity = parsed.get("string").cloned().unwrap_or_else(|| json!("0"));
            put(object, field, quantity);
        }
        Kind::RawJson => {
            let parsed = message(payload, &[f(1, "raw", Kind::Bytes)], &here)?;
            let raw = parsed
                .get("raw")
                .and_then(Value::as_str)
                .and_then(|b64| base64::engine::general_purpose::STANDARD.decode(b64).ok())
                .unwrap_or_default();
            let json = if raw.is_empty() {
                json!({})
            } else {
                serde_json::from_slice(&raw).map_err(|e| format!("{here}: {e}"))?
            };
            put(object, field, json);
        }
        Kind::Int | Kind::OptionalInt | Kind::Bool | Kind::OptionalBool | Kind::Ignored => {
            return Err(mismatch());
        }
    }
    Ok(())
}

/// Zero scalars of non-pointer fields are left out, as Go's JSON encoding of the decoded
/// struct would (and as the defaulting that follows expects); a pointer's zero is a value.
fn put(object: &mut Map<String, Value>, field: &Field, value: Value) {
    let zero = matches!(&value, Value::String(s) if s.is_empty())
        || value.as_i64() == Some(0)
        || value.as_bool() == Some(false);
    let pointer = matches!(
        field.kind,
        Kind::IntOrString | Kind::OptionalInt | Kind::OptionalBool | Kind::OptionalString
    );
    if zero && !field.repeated && !pointer {
        return;
    }
    if field.repeated {
        let list = object
            .entry(field.name.to_string())
            .or_insert_with(|| json!([]));
        if let Some(list) = list.as_array_mut() {
            list.push(value);
        }
    } else {
        object.insert(field.name.to_string(), value);
    }
}

// The round trips: the pod tree and the first kinds in `round_trip_tests`, whose fixtures the
// others share; then one file per group of kinds.
#[cfg(test)]
mod answer_tests;
#[cfg(test)]
mod round_trip_apps_tests;
#[cfg(test)]
mod round_trip_core_tests;
#[cfg(test)]
mod round_trip_networking_tests;
#[cfg(test)]
mod round_trip_tests;

#[cfg(test)]
mod tests {
    use super::*;

    fn varint(mut value: u64, out: &mut Vec<u8>) {
        loop {
            let byte = (value & 0x7f) as u8;
            value >>= 7;
            if value == 0 {
                out.push(byte);
                return;
            }
            out.push(byte | 0x80);
        }
    }

    fn bytes_field(number: u64, payload: &[u8], out: &mut Vec<u8>) {
        varint(number << 3 | 2, out);
        varint(payload.len() as u64, out);
        out.extend_from_slice(payload);
    }

    #[test]
    fn decodes_a_config_map_as_kubectl_sends_it() {
        let mut meta = Vec::new();
        bytes_field(1, b"fortune-config", &mut meta);
        let mut entry = Vec::new();
        bytes_field(1, b"sleep-interval", &mut entry);
        bytes_field(2, b"25", &mut entry);
        let mut config_map = Vec::new();
        bytes_field(1, &meta, &mut config_map);
        bytes_field(2, &entry, &mut config_map);
        let mut type_meta = Vec::new();
        bytes_field(1, b"v1", &mut type_meta);
        bytes_field(2, b"ConfigMap", &mut type_meta);
        let mut unknown = Vec::new();
        bytes_field(1, &type_meta, &mut unknown);
        bytes_field(2, &config_map, &mut unknown);
        let body = [MAGIC, &unknown].concat();
        let resource =
            petset_api::resources::find("", "v1", "configmaps").expect("configmaps are served");
        let object = decode(&body, resource).expect("decodes");
        assert_eq!(
            object,
            json!({"metadata": {"name": "fortune-config"}, "data": {"sleep-interval": "25"},
                "kind": "ConfigMap", "apiVersion": "v1"})
        );
    }

    #[test]
    fn garbage_is_a_bad_request() {
        let resource =
            petset_api::resources::find("", "v1", "configmaps").expect("configmaps are served");
        assert_eq!(
            decode(b"nonsense", resource).err().map(|e| e.code),
            Some(400)
        );
        let truncated = [MAGIC, &[0x0a, 0x05, 0x01]].concat();
        assert_eq!(
            decode(&truncated, resource).err().map(|e| e.code),
            Some(400)
        );
    }

    fn envelope(api_version: &[u8], kind: &[u8], raw: &[u8]) -> Vec<u8> {
        let mut type_meta = Vec::new();
        bytes_field(1, api_version, &mut type_meta);
        bytes_field(2, kind, &mut type_meta);
        let mut unknown = Vec::new();
        bytes_field(1, &type_meta, &mut unknown);
        bytes_field(2, raw, &mut unknown);
        [MAGIC, &unknown].concat()
    }

    #[test]
    fn a_known_field_of_the_wrong_wire_type_is_a_bad_request() {
        let resource =
            petset_api::resources::find("", "v1", "configmaps").expect("configmaps are served");
        // metadata (a message) sent as a varint.
        let error = decode(&envelope(b"v1", b"ConfigMap", &[0x08, 0x01]), resource)
            .expect_err("a varint is no ObjectMeta");
        assert_eq!(error.code, 400);
        assert!(
            error
                .message
                .contains("field 1 (metadata) of the object has the wrong wire type"),
            "{}",
            error.message
        );
    }

    #[test]
    fn packed_repeated_ints_decode_as_a_list() {
        // spec.securityContext.supplementalGroups = [0, 2000], packed.
        let mut security_context = Vec::new();
        bytes_field(4, &[0x00, 0xd0, 0x0f], &mut security_context);
        let mut spec = Vec::new();
        bytes_field(14, &security_context, &mut spec);
        let mut pod = Vec::new();
        bytes_field(2, &spec, &mut pod);
        let pods = petset_api::resources::find("", "v1", "pods").expect("pods are served");
        let decoded = decode(&envelope(b"v1", b"Pod", &pod), pods).expect("decodes");
        assert_eq!(
            decoded["spec"]["securityContext"]["supplementalGroups"],
            json!([0, 2000])
        );
    }

    #[test]
    fn decodes_delete_options_and_evictions_as_kubectl_drain_sends_them() {
        // gracePeriodSeconds: 0, propagationPolicy: Foreground.
        let mut options = vec![0x08, 0x00];
        bytes_field(4, b"Foreground", &mut options);
        let decoded = decode_request_options(
            &envelope(b"v1", b"DeleteOptions", &options),
            "DeleteOptions",
        )
        .expect("decodes");
        assert_eq!(
            decoded,
            json!({"gracePeriodSeconds": 0, "propagationPolicy": "Foreground", "kind": "DeleteOptions"})
        );
        let mut meta = Vec::new();
        bytes_field(1, b"web-0", &mut meta);
        let mut eviction = Vec::new();
        bytes_field(1, &meta, &mut eviction);
        bytes_field(2, &options, &mut eviction);
        let decoded =
            decode_request_options(&envelope(b"policy/v1", b"Eviction", &eviction), "Eviction")
                .expect("decodes");
        assert_eq!(decoded["metadata"]["name"], "web-0");
        assert_eq!(decoded["deleteOptions"]["propagationPolicy"], "Foreground");
        let wrong = decode_request_options(&envelope(b"v1", b"Pod", &[]), "DeleteOptions")
            .expect_err("a pod is no DeleteOptions");
        assert_eq!(wrong.code, 400);
    }
}
