//! The shape check every body goes through before the registry acts on it (admission): it
//! must decode as its kind's typed struct; fields the type does not know are refused or
//! dropped, as `fieldValidation` says.

use petset_api::resources::ResourceType;
use petset_api::{ApiError, shape};
use serde_json::Value;

/// What to do with fields the kind's type does not know (`fieldValidation`).
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum FieldValidation {
    Strict,
    Warn,
    Ignore,
}

/// Checks a body against its kind's type: a wrong shape is a 400; unknown fields are refused
/// (Strict) or dropped, and returned as warnings (Warn).
pub fn check_shape(
    resource: &ResourceType,
    object: &mut Value,
    validation: FieldValidation,
) -> Result<Vec<String>, ApiError> {
    let cannot_handle = |detail: String| {
        ApiError::bad_request(format!(
            "{kind} in version \"{version}\" cannot be handled as a {kind}: {detail}",
            kind = resource.kind,
            version = resource.version
        ))
    };
    let unknown =
        shape::unknown_fields(resource, object).map_err(|error| cannot_handle(error.0))?;
    if unknown.is_empty() {
        return Ok(Vec::new());
    }
    let described: Vec<String> = unknown
        .iter()
        .map(|field| format!("unknown field {field:?}"))
        .collect();
    if validation == FieldValidation::Strict {
        return Err(cannot_handle(format!(
            "strict decoding error: {}",
            described.join(", ")
        )));
    }
    shape::prune(object, &unknown);
    Ok(if validation == FieldValidation::Warn {
        described
    } else {
        Vec::new()
    })
}
