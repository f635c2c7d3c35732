//! Protobuf response bodies, for clients that ask for `application/vnd.kubernetes.protobuf`
//! (client-go's typed clients as kubectl configures them): the JSON form of an object, a list
//! or a Status written back into upstream's messages by the same layouts the decoder reads.
//! A value the layout cannot carry (a name it lacks, a shape it does not expect) is an error,
//! never dropped: the caller answers JSON instead when the client takes it.

use base64::Engine;
use petset_api::proto::{Field, Kind, f, many};
use serde_json::{Map, Value};

use super::{child, place};

/// The place and reason a JSON value could not be laid out.
#[derive(Debug, PartialEq, Eq)]
pub struct Unencodable(pub String);

type Encoded = Result<(), Unencodable>;

/// The keys of a JSON object that the envelope, not the message, carries.
const TYPE_META: &[&str] = &["apiVersion", "kind"];

/// metav1.ListMeta.
const LIST_META: &[Field] = &[
    f(1, "selfLink", Kind::String),
    f(2, "resourceVersion", Kind::String),
    f(3, "continue", Kind::String),
    f(4, "remainingItemCount", Kind::OptionalInt),
];

/// metav1.Status (an error, or the answer of a delete that leaves nothing).
const STATUS: &[Field] = &[
    f(1, "metadata", Kind::Message(LIST_META)),
    f(2, "status", Kind::String),
    f(3, "message", Kind::String),
    f(4, "reason", Kind::String),
    f(
        5,
        "details",
        Kind::Message(&[
            f(1, "name", Kind::String),
            f(2, "group", Kind::String),
            f(3, "kind", Kind::String),
            many(
                4,
                "causes",
                Kind::Message(&[
                    f(1, "reason", Kind::String),
                    f(2, "message", Kind::String),
                    f(3, "field", Kind::String),
                ]),
            ),
            f(5, "retryAfterSeconds", Kind::Int),
            f(6, "uid", Kind::String),
        ]),
    ),
    f(6, "code", Kind::Int),
];

/// The `k8s\0` envelope around a runtime.Unknown holding `raw`, as upstream's serializer
/// writes every protobuf body.
pub fn envelope(api_version: &str, kind: &str, raw: &[u8]) -> Vec<u8> {
    let mut type_meta = Vec::new();
    bytes_field(1, api_version.as_bytes(), &mut type_meta);
    bytes_field(2, kind.as_bytes(), &mut type_meta);
    let mut out = b"k8s\0".to_vec();
    bytes_field(1, &type_meta, &mut out);
    bytes_field(2, raw, &mut out);
    // contentEncoding and contentType: empty, as upstream sends them.
    bytes_field(3, b"", &mut out);
    bytes_field(4, b"", &mut out);
    out
}

/// `object` (its `apiVersion` and `kind` aside, which the envelope carries) as the message
/// `fields` describes.
pub fn object(object: &Value, fields: &[Field]) -> Result<Vec<u8>, Unencodable> {
    let mut out = Vec::new();
    let map = object
        .as_object()
        .ok_or_else(|| Unencodable("the object is not a JSON object".into()))?;
    message(map, fields, TYPE_META, "", &mut out)?;
    Ok(out)
}

/// A list (`{metadata, items}`) whose items have the layout `items`.
pub fn list(list: &Value, items: &'static [Field]) -> Result<Vec<u8>, Unencodable> {
    let layout = [
        f(1, "metadata", Kind::Message(LIST_META)),
        many(2, "items", Kind::Message(items)),
    ];
    let map = list
        .as_object()
        .ok_or_else(|| Unencodable("the list is not a JSON object".into()))?;
    let mut out = Vec::new();
    // The items' own type meta, when they carry it, is the list's: left out as upstream does.
    message(map, &layout, TYPE_META, "", &mut out)?;
    Ok(out)
}

/// A watch event's frame body (metav1.WatchEvent: `type` = 1, `object` = 2 a RawExtension
/// whose bytes are the enveloped object), written without an envelope of its own, as
/// upstream's stream serializer writes it.
pub fn watch_event(event_type: &str, enveloped_object: &[u8]) -> Vec<u8> {
    let mut raw_extension = Vec::new();
    bytes_field(1, enveloped_object, &mut raw_extension);
    let mut out = Vec::new();
    bytes_field(1, event_type.as_bytes(), &mut out);
    bytes_field(2, &raw_extension, &mut out);
    out
}

/// Writes the fields of `object` that `fields` lays out, in field-number order as Go does;
/// a key neither laid out nor in `skip` is an error.
fn message(
    object: &Map<String, Value>,
    fields: &[Field],
    skip: &[&str],
    path: &str,
    out: &mut Vec<u8>,
) -> Encoded {
    let mut known: Vec<&str> = skip.to_vec();
    for field in fields {
        known.push(field.name);
        if let Kind::Inline(inner) = field.kind {
            known.extend(inner.iter().map(|inner| inner.name));
        }
    }
    if let Some(stray) = object.keys().find(|key| !known.contains(&key.as_str())) {
        return Err(Unencodable(format!(
            "{} has no protobuf field for {stray:?}",
            place(path)
        )));
    }
    let mut ordered: Vec<&Field> = fields.iter().collect();
    ordered.sort_by_key(|field| field.number);
    for field in ordered {
        if let Kind::Inline(inner) = field.kind {
            let mut body = Vec::new();
            message(object, inner, &known, path, &mut body)?;
            bytes_field(field.number, &body, out);
            continue;
        }
        let Some(value) = object.get(field.name) else {
            continue;
        };
        let here = child(path, field.name);
        match (value, field.repeated) {
            (Value::Null, _) => {}
            (Value::Array(values), true) => {
                for (index, value) in values.iter().enumerate() {
                    single(field, value, &format!("{here}[{index}]"), out)?;
                }
            }
            (_, true) => return Err(Unencodable(format!("{here} is not a list"))),
            (value, false) => single(field, value, &here, out)?,
        }
    }
    Ok(())
}

/// Writes one value of `field`.
fn single(field: &Field, value: &Value, path: &str, out: &mut Vec<u8>) -> Encoded {
    let wrong = || Unencodable(format!("{path} is not what its protobuf field holds"));
    let number = field.number;
    match field.kind {
        Kind::String | Kind::OptionalString => {
            bytes_field(number, value.as_str().ok_or_else(wrong)?.as_bytes(), out)
        }
        Kind::Bytes => {
            let bytes = value
                .as_str()
                .and_then(|b64| base64::engine::general_purpose::STANDARD.decode(b64).ok())
                .ok_or_else(wrong)?;
            bytes_field(number, &bytes, out);
        }
        Kind::Int | Kind::OptionalInt => {
            // int32/int64 on the wire: the two's complement in 64 bits.
            varint_field(number, value.as_i64().ok_or_else(wrong)? as u64, out)
        }
        Kind::Bool | Kind::OptionalBool => {
            varint_field(number, u64::from(value.as_bool().ok_or_else(wrong)?), out)
        }
        Kind::Message(inner) => {
            let map = value.as_object().ok_or_else(wrong)?;
            let mut body = Vec::new();
            // An embedded object's type meta (a claim template's `apiVersion: v1`) has no
            // field in upstream's messages either: Go's protobuf leaves TypeMeta out.
            message(map, inner, TYPE_META, path, &mut body)?;
            bytes_field(number, &body, out);
        }
        Kind::Inline(_) => unreachable!("inlined messages are written by `message`"),
        Kind::StringMap | Kind::BytesMap | Kind::QuantityMap | Kind::TimeMap => {
            let map = value.as_object().ok_or_else(wrong)?;
            let value_kind = match field.kind {
                Kind::BytesMap => Kind::Bytes,
                Kind::QuantityMap => Kind::Quantity,
                Kind::TimeMap => Kind::Time,
                _ => Kind::String,
            };
            // Go writes a map's entries in key order; serde_json's map is ordered already.
            for (key, value) in map {
                let mut entry = Vec::new();
                bytes_field(1, key.as_bytes(), &mut entry);
                single(
                    &f(2, "value", value_kind),
                    value,
                    &format!("{path}[{key:?}]"),
                    &mut entry,
                )?;
                bytes_field(number, &entry, out);
            }
        }
        Kind::IntOrString => {
            let mut body = Vec::new();
            match value {
                Value::Number(n) => {
                    varint_field(1, 0, &mut body);
                    varint_field(2, n.as_i64().ok_or_else(wrong)? as u64, &mut body);
                }
                Value::String(text) => {
                    varint_field(1, 1, &mut body);
                    bytes_field(3, text.as_bytes(), &mut body);
                }
                _ => return Err(wrong()),
            }
            bytes_field(number, &body, out);
        }
        Kind::Time | Kind::MicroTime => {
            if value.is_null() {
                return Ok(());
            }
            let at = value
                .as_str()
                .and_then(petset_api::time::parse)
                .ok_or_else(wrong)?;
            let mut body = Vec::new();
            varint_field(1, at.as_second() as u64, &mut body);
            let nanos = at.subsec_nanosecond();
            if matches!(field.kind, Kind::MicroTime) && nanos != 0 {
                varint_field(2, nanos as u64, &mut body);
            }
            bytes_field(number, &body, out);
        }
        Kind::Quantity => {
            let text = match value {
                Value::String(text) => text.clone(),
                Value::Number(n) => n.to_string(),
                _ => return Err(wrong()),
            };
            let mut body = Vec::new();
            bytes_field(1, text.as_bytes(), &mut body);
            bytes_field(number, &body, out);
        }
        Kind::RawJson => {
            let raw = serde_json::to_vec(value).map_err(|_| wrong())?;
            let mut body = Vec::new();
            bytes_field(1, &raw, &mut body);
            bytes_field(number, &body, out);
        }
        // A field the layout keeps no account of cannot be written back.
        Kind::Ignored => return Err(Unencodable(format!("{path} is not laid out for protobuf"))),
    }
    Ok(())
}

fn varint(mut value: u64, out: &mut Vec<u8>) {
    while value >= 0x80 {
        out.push((value as u8 & 0x7f) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

fn varint_field(number: u64, value: u64, out: &mut Vec<u8>) {
    varint(number << 3, out);
    varint(value, out);
}

fn bytes_field(number: u64, bytes: &[u8], out: &mut Vec<u8>) {
    varint((number << 3) | 2, out);
    varint(bytes.len() as u64, out);
    out.extend_from_slice(bytes);
}

/// What a client's Accept header asks of a body petset would write as JSON.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Preference {
    /// JSON (or a rendering of it: a Table, partial metadata, a watch stream).
    Json,
    /// Protobuf first; `json_too` when JSON is an acceptable second choice.
    Protobuf { json_too: bool },
}

impl Preference {
    /// The first media type of the header decides, as client-go lists its choices in order
    /// (`application/vnd.kubernetes.protobuf,application/json` for a protobuf client). A
    /// protobuf type with parameters (`;as=Table`, `;stream=watch`) is a rendering petset
    /// writes as JSON, so it does not ask for protobuf.
    pub fn of(accept: &str) -> Self {
        let mut types = accept.split(',').map(|part| {
            let mut pieces = part.split(';').map(str::trim);
            let media = pieces.next().unwrap_or_default().to_ascii_lowercase();
            let plain = pieces.all(|param| param.is_empty() || param.starts_with("q="));
            (media, plain)
        });
        match types.next() {
            Some((media, true)) if media == PROTOBUF => Self::Protobuf {
                json_too: types.any(|(media, _)| {
                    matches!(media.as_str(), "application/json" | "application/*" | "*/*")
                }),
            },
            _ => Self::Json,
        }
    }
}

const PROTOBUF: &str = "application/vnd.kubernetes.protobuf";

/// The layout of a JSON body by its `apiVersion` and `kind`: a served kind, its list, or
/// a Status.
fn layout_of(body: &Value) -> Option<Layout> {
    let api_version = body.get("apiVersion")?.as_str()?;
    let kind = body.get("kind")?.as_str()?;
    if api_version == "v1" && kind == "Status" {
        return Some(Layout::Object(STATUS));
    }
    if let Some(fields) =
        petset_api::resources::find_kind(api_version, kind).and_then(|r| r.protobuf)
    {
        return Some(Layout::Object(fields));
    }
    let item = kind.strip_suffix("List")?;
    petset_api::resources::find_kind(api_version, item)
        .and_then(|r| r.protobuf)
        .map(Layout::List)
}

enum Layout {
    Object(&'static [Field]),
    List(&'static [Field]),
}

/// A JSON body as protobuf (the whole `k8s\0` envelope), when its kind has a layout that
/// carries every value of it.
pub fn body(json: &Value) -> Result<Vec<u8>, Unencodable> {
    let layout = layout_of(json).ok_or_else(|| {
        Unencodable(format!(
            "{} {} has no protobuf form in petset",
            json.get("apiVersion")
                .and_then(Value::as_str)
                .unwrap_or_default(),
            json.get("kind").and_then(Value::as_str).unwrap_or_default()
        ))
    })?;
    let raw = match layout {
        Layout::Object(fields) => object(json, fields)?,
        Layout::List(items) => list(json, items)?,
    };
    let text = |key: &str| json.get(key).and_then(Value::as_str).unwrap_or_default();
    Ok(envelope(text("apiVersion"), text("kind"), &raw))
}

/// Middleware on the API's router: a JSON answer goes out as protobuf when the client asks
/// for protobuf first. When its kind has no protobuf form here, the JSON goes out if the
/// client takes it, and upstream's 406 if not.
pub async fn negotiate(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::http::{HeaderValue, header};
    let preference = request
        .headers()
        .get(header::ACCEPT)
        .and_then(|value| value.to_str().ok())
        .map_or(Preference::Json, Preference::of);
    let response = next.run(request).await;
    let Preference::Protobuf { json_too } = preference else {
        return response;
    };
    // Only whole JSON values: a watch stream, logs or a proxied body pass as they are.
    let whole_json = response
        .extensions()
        .get::<crate::response::WholeValue>()
        .is_some()
        && response
            .headers()
            .get(header::CONTENT_TYPE)
            .is_some_and(|value| value.as_bytes() == b"application/json");
    if !whole_json {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, usize::MAX).await else {
        return crate::response::error(&petset_api::ApiError::internal(
            "the answer could not be read back for protobuf",
        ));
    };
    let encoded = serde_json::from_slice::<Value>(&bytes)
        .map_err(|e| Unencodable(e.to_string()))
        .and_then(|json| self::body(&json));
    match encoded {
        Ok(protobuf) => {
            parts.headers.remove(header::CONTENT_LENGTH);
            parts
                .headers
                .insert(header::CONTENT_TYPE, HeaderValue::from_static(PROTOBUF));
            axum::response::Response::from_parts(parts, axum::body::Body::from(protobuf))
        }
        Err(_) if json_too => {
            axum::response::Response::from_parts(parts, axum::body::Body::from(bytes))
        }
        Err(Unencodable(why)) => {
            tracing::debug!(%why, "a protobuf-only client asked for a body petset writes as JSON");
            crate::response::error(&petset_api::ApiError::not_acceptable(
                "only the following media types are accepted: application/json, application/yaml",
            ))
        }
    }
}
