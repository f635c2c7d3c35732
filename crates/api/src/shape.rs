//! The shape of an object: whether it decodes as its kind's type (k8s-openapi's, generated from
//! upstream's schema), and which of its fields that type does not know.
//!
//! Upstream decodes every request body into the typed struct: a field of the wrong type is a
//! 400, and unknown fields are dropped (with a warning) or, under `fieldValidation=Strict`,
//! refused. The same happens here, without storing the typed form: the object stays the JSON
//! the client sent, minus the unknown fields.

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::resources::ResourceType;

/// Why an object does not have its kind's shape.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ShapeError(pub String);

/// An object decoded as a kind's typed struct and encoded back: what the type keeps of it.
pub type RoundTrip = fn(&Value) -> Result<Value, ShapeError>;

/// Decodes `object` as its kind's type and returns the paths of the fields the type does not
/// know (`spec.foo`, `spec.template.spec.containers[0].bogus`).
pub fn unknown_fields(resource: &ResourceType, object: &Value) -> Result<Vec<String>, ShapeError> {
    let known = (resource.round_trip)(object)?;
    let mut unknown = Vec::new();
    collect_unknown(object, &known, "", &mut unknown);
    Ok(unknown)
}

/// The round trip through `T` (a catalogue entry names `round_trip::<Typed>`).
pub fn round_trip<T: DeserializeOwned + Serialize>(object: &Value) -> Result<Value, ShapeError> {
    let typed: T = T::deserialize(object).map_err(|e| ShapeError(e.to_string()))?;
    serde_json::to_value(typed).map_err(|e| ShapeError(e.to_string()))
}

/// Fields present (and not null) in `sent` but absent from `known`, the typed round trip.
fn collect_unknown(sent: &Value, known: &Value, path: &str, unknown: &mut Vec<String>) {
    match (sent, known) {
        (Value::Object(sent), Value::Object(known)) => {
            for (key, value) in sent {
                let child = if path.is_empty() {
                    key.clone()
                } else {
                    format!("{path}.{key}")
                };
                match known.get(key) {
                    Some(known_value) => collect_unknown(value, known_value, &child, unknown),
                    None if value.is_null() => {}
                    None => unknown.push(child),
                }
            }
        }
        (Value::Array(sent), Value::Array(known)) => {
            for (index, (value, known_value)) in sent.iter().zip(known).enumerate() {
                collect_unknown(value, known_value, &format!("{path}[{index}]"), unknown);
            }
        }
        _ => {}
    }
}

/// Removes the fields at `paths` (as `unknown_fields` names them) from `object`.
pub fn prune(object: &mut Value, paths: &[String]) {
    for path in paths {
        remove_at(object, &split_path(path));
    }
}

fn remove_at(value: &mut Value, steps: &[Step<'_>]) {
    match steps {
        [] => {}
        [Step::Key(key)] => {
            if let Some(map) = value.as_object_mut() {
                map.remove(*key);
            }
        }
        [first, rest @ ..] => {
            let next = match first {
                Step::Key(key) => value.get_mut(*key),
                Step::Index(index) => value.get_mut(*index),
            };
            if let Some(next) = next {
                remove_at(next, rest);
            }
        }
    }
}

enum Step<'a> {
    Key(&'a str),
    Index(usize),
}

fn split_path(path: &str) -> Vec<Step<'_>> {
    let mut steps = Vec::new();
    for part in path.split('.') {
        let mut rest = part;
        let key_end = rest.find('[').unwrap_or(rest.len());
        steps.push(Step::Key(&rest[..key_end]));
        rest = &rest[key_end..];
        while let Some(open) = rest.strip_prefix('[') {
            let Some(close) = open.find(']') else {
                break;
            };
            if let Ok(index) = open[..close].parse() {
                steps.push(Step::Index(index));
            }
            rest = &open[close + 1..];
        }
    }
    steps
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::find;
    use serde_json::json;

    fn statefulsets() -> &'static ResourceType {
        find("apps", "v1", "statefulsets").expect("served")
    }

    #[test]
    fn finds_and_prunes_unknown_fields() {
        let mut sts = json!({
            "apiVersion": "apps/v1", "kind": "StatefulSet",
            "metadata": {"name": "web", "creationTimestamp": null},
            "spec": {"replicas": 2, "bogus": 1, "selector": {"matchLabels": {"app": "x"}},
                "template": {"spec": {"containers": [{"name": "c", "image": "i", "colour": "red"}]}}}
        });
        let unknown = unknown_fields(statefulsets(), &sts).expect("decodes");
        assert_eq!(
            unknown,
            vec![
                "spec.bogus".to_string(),
                "spec.template.spec.containers[0].colour".to_string()
            ]
        );
        prune(&mut sts, &unknown);
        assert_eq!(
            unknown_fields(statefulsets(), &sts).expect("decodes"),
            Vec::<String>::new()
        );
        assert_eq!(sts["spec"]["replicas"], 2);
    }

    #[test]
    fn a_field_of_the_wrong_type_does_not_decode() {
        let sts = json!({"metadata": {"name": "web"}, "spec": {"replicas": "three"}});
        assert!(unknown_fields(statefulsets(), &sts).is_err());
    }

    #[test]
    fn free_form_fields_are_not_unknown() {
        let revision = json!({"metadata": {"name": "r"}, "revision": 1,
            "data": {"spec": {"template": {"anything": true}}}});
        assert_eq!(
            unknown_fields(
                find("apps", "v1", "controllerrevisions").expect("served"),
                &revision
            )
            .expect("decodes"),
            Vec::<String>::new()
        );
    }
}
