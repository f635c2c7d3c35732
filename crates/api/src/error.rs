//! API errors with upstream's codes, reasons and messages; rendered as `Status` objects at the
//! HTTP edge.

use serde_json::{Value, json};

use crate::resources::ResourceType;

/// One field-level problem in a 422 Invalid error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cause {
    /// `FieldValueRequired`, `FieldValueInvalid`, `FieldValueForbidden`, ...
    pub reason: &'static str,
    pub field: String,
    /// The text after `field: `, e.g. `Required value: name or generateName is required`.
    pub message: String,
}

impl Cause {
    pub fn required(field: impl Into<String>, detail: &str) -> Self {
        let message = if detail.is_empty() {
            "Required value".to_string()
        } else {
            format!("Required value: {detail}")
        };
        Self {
            reason: "FieldValueRequired",
            field: field.into(),
            message,
        }
    }

    /// `Invalid value: "x": detail`, with the value rendered as upstream does.
    pub fn invalid(field: impl Into<String>, value: &Value, detail: &str) -> Self {
        let rendered = match value {
            Value::String(text) => format!("{text:?}"),
            other => other.to_string(),
        };
        Self {
            reason: "FieldValueInvalid",
            field: field.into(),
            message: format!("Invalid value: {rendered}: {detail}"),
        }
    }

    pub fn forbidden(field: impl Into<String>, detail: &str) -> Self {
        Self {
            reason: "FieldValueForbidden",
            field: field.into(),
            message: format!("Forbidden: {detail}"),
        }
    }

    pub fn not_supported(field: impl Into<String>, value: &Value, supported: &[&str]) -> Self {
        let rendered = match value {
            Value::String(text) => format!("{text:?}"),
            other => other.to_string(),
        };
        let quoted: Vec<String> = supported.iter().map(|s| format!("{s:?}")).collect();
        Self {
            reason: "FieldValueNotSupported",
            field: field.into(),
            message: format!(
                "Unsupported value: {rendered}: supported values: {}",
                quoted.join(", ")
            ),
        }
    }

    pub fn duplicate(field: impl Into<String>, value: &Value) -> Self {
        let rendered = match value {
            Value::String(text) => format!("{text:?}"),
            other => other.to_string(),
        };
        Self {
            reason: "FieldValueDuplicate",
            field: field.into(),
            message: format!("Duplicate value: {rendered}"),
        }
    }
}

/// An error the API answers with. Built by the registry and the handlers, rendered once.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason} ({code}): {message}")]
pub struct ApiError {
    pub code: u16,
    pub reason: &'static str,
    pub message: String,
    pub details: Option<Details>,
}

/// `Status.details`: `kind` holds the resource plural for most errors and the Kind for Invalid.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Details {
    pub name: String,
    pub group: String,
    pub kind: String,
    pub uid: String,
    pub causes: Vec<Cause>,
    pub retry_after_seconds: Option<u32>,
}

impl ApiError {
    fn new(code: u16, reason: &'static str, message: impl Into<String>) -> Self {
        Self {
            code,
            reason,
            message: message.into(),
            details: None,
        }
    }

    fn about(mut self, resource: &ResourceType, name: &str) -> Self {
        self.details = Some(Details {
            name: name.to_string(),
            group: resource.group.to_string(),
            kind: resource.plural.to_string(),
            ..Details::default()
        });
        self
    }

    pub fn not_found(resource: &ResourceType, name: &str) -> Self {
        Self::new(
            404,
            "NotFound",
            format!("{} {name:?} not found", resource.qualified_plural()),
        )
        .about(resource, name)
    }

    pub fn already_exists(resource: &ResourceType, name: &str) -> Self {
        Self::new(
            409,
            "AlreadyExists",
            format!("{} {name:?} already exists", resource.qualified_plural()),
        )
        .about(resource, name)
    }

    pub fn conflict(resource: &ResourceType, name: &str) -> Self {
        Self::new(
            409,
            "Conflict",
            format!(
                "Operation cannot be fulfilled on {} {name:?}: the object has been modified; please apply your changes to the latest version and try again",
                resource.qualified_plural()
            ),
        )
        .about(resource, name)
    }

    /// A Conflict with a free-form cause, e.g. a failed precondition.
    pub fn conflict_because(resource: &ResourceType, name: &str, why: &str) -> Self {
        Self::new(
            409,
            "Conflict",
            format!(
                "Operation cannot be fulfilled on {} {name:?}: {why}",
                resource.qualified_plural()
            ),
        )
        .about(resource, name)
    }

    /// 422 Invalid. kubectl rebuilds its line from `details.kind`, `details.name` and the causes.
    pub fn invalid(kind: &str, group: &str, name: &str, causes: Vec<Cause>) -> Self {
        let listed: Vec<String> = causes
            .iter()
            .map(|cause| format!("{}: {}", cause.field, cause.message))
            .collect();
        let summary = if listed.len() == 1 {
            listed.join("")
        } else {
            format!("[{}]", listed.join(", "))
        };
        let qualified = if group.is_empty() {
            kind.to_string()
        } else {
            format!("{kind}.{group}")
        };
        Self {
            code: 422,
            reason: "Invalid",
            message: format!("{qualified} {name:?} is invalid: {summary}"),
            details: Some(Details {
                name: name.to_string(),
                group: group.to_string(),
                kind: kind.to_string(),
                causes,
                ..Details::default()
            }),
        }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(400, "BadRequest", message)
    }

    pub fn namespace_not_found(namespace: &str) -> Self {
        Self::new(
            404,
            "NotFound",
            format!("namespaces {namespace:?} not found"),
        )
        .with_details(Details {
            name: namespace.to_string(),
            kind: "namespaces".to_string(),
            ..Details::default()
        })
    }

    /// 403 for an action upstream's admission refuses on one object, with its reason.
    pub fn forbidden_on(resource: &ResourceType, name: &str, why: &str) -> Self {
        Self::new(
            403,
            "Forbidden",
            format!(
                "{} {name:?} is forbidden: {why}",
                resource.qualified_plural()
            ),
        )
        .about(resource, name)
    }

    /// Creating in a namespace that is being deleted.
    pub fn namespace_terminating(resource: &ResourceType, name: &str, namespace: &str) -> Self {
        Self::new(
            403,
            "Forbidden",
            format!(
                "{} {name:?} is forbidden: unable to create new content in namespace {namespace} because it is being terminated",
                resource.qualified_plural()
            ),
        )
        .about(resource, name)
    }

    /// A 404 for a URL that names nothing served. Its `details` are present but empty, as
    /// upstream's: kubectl tells this 404 from a missing object by the empty name (and
    /// `kubectl debug` dereferences the details without a check).
    pub fn no_route() -> Self {
        Self::new(
            404,
            "NotFound",
            "the server could not find the requested resource",
        )
        .with_details(Details::default())
    }

    pub fn method_not_allowed(method: &str) -> Self {
        Self::new(
            405,
            "MethodNotAllowed",
            format!("the server does not allow this method on the requested resource ({method})"),
        )
        .with_details(Details::default())
    }

    pub fn not_acceptable(message: impl Into<String>) -> Self {
        Self::new(406, "NotAcceptable", message)
    }

    pub fn unsupported_media_type(content_type: &str) -> Self {
        Self::new(
            415,
            "UnsupportedMediaType",
            format!(
                "the body of the request was in an unknown format - accepted media types include: application/json, application/yaml, application/vnd.kubernetes.protobuf (got {content_type:?})"
            ),
        )
    }

    pub fn too_large() -> Self {
        Self::new(
            413,
            "RequestEntityTooLarge",
            "Request entity too large: limit is 3145728",
        )
    }

    /// 413 with upstream's reason, for a request past one of its bounds.
    pub fn too_large_because(message: impl Into<String>) -> Self {
        Self::new(413, "RequestEntityTooLarge", message)
    }

    /// 410 Gone: a watch or continue token older than the kept history.
    pub fn expired(message: impl Into<String>) -> Self {
        Self::new(410, "Expired", message)
    }

    pub fn unauthorized() -> Self {
        Self::new(401, "Unauthorized", "Unauthorized")
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(403, "Forbidden", message)
    }

    pub fn unprocessable(message: impl Into<String>) -> Self {
        Self::new(422, "Invalid", message)
    }

    pub fn service_unavailable(message: impl Into<String>) -> Self {
        Self::new(503, "ServiceUnavailable", message)
    }

    /// 429 TooManyRequests (no `Retry-After`), with the causes in `details`.
    pub fn too_many_requests(message: impl Into<String>, causes: Vec<Cause>) -> Self {
        Self::new(429, "TooManyRequests", message).with_details(Details {
            causes,
            ..Details::default()
        })
    }

    /// 500, worded and detailed as upstream's `NewInternalError`: the cause is the message.
    pub fn internal(message: impl Into<String>) -> Self {
        let message = message.into();
        Self::new(
            500,
            "InternalError",
            format!("Internal error occurred: {message}"),
        )
        .with_details(Details {
            causes: vec![Cause {
                reason: "",
                field: String::new(),
                message,
            }],
            ..Details::default()
        })
    }

    /// A timeout talking to storage: the client may retry.
    pub fn timeout(message: impl Into<String>) -> Self {
        Self::new(504, "Timeout", message)
    }

    /// Upstream's `NewApplyConflict`: a server-side apply that would change fields other
    /// managers own; the details carry only the causes.
    pub fn apply_conflict(message: impl Into<String>, causes: Vec<Cause>) -> Self {
        Self::new(409, "Conflict", message).with_details(Details {
            causes,
            ..Details::default()
        })
    }

    pub fn with_details(mut self, details: Details) -> Self {
        self.details = Some(details);
        self
    }

    /// The `Status` object kubectl and kube-rs parse.
    pub fn to_status(&self) -> Value {
        let mut status = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        });
        if let Some(details) = &self.details {
            let mut rendered = serde_json::Map::new();
            if !details.name.is_empty() {
                rendered.insert("name".into(), details.name.clone().into());
            }
            if !details.group.is_empty() {
                rendered.insert("group".into(), details.group.clone().into());
            }
            if !details.kind.is_empty() {
                rendered.insert("kind".into(), details.kind.clone().into());
            }
            if !details.uid.is_empty() {
                rendered.insert("uid".into(), details.uid.clone().into());
            }
            if !details.causes.is_empty() {
                let causes = details
                    .causes
                    .iter()
                    .map(|cause| {
                        let mut rendered = json!({"message": cause.message});
                        // `reason` and `field` are omitted when empty, as upstream's `omitempty`.
                        if !cause.reason.is_empty() {
                            rendered["reason"] = json!(cause.reason);
                        }
                        if !cause.field.is_empty() {
                            rendered["field"] = json!(cause.field);
                        }
                        rendered
                    })
                    .collect();
                rendered.insert("causes".into(), Value::Array(causes));
            }
            if let Some(seconds) = details.retry_after_seconds {
                rendered.insert("retryAfterSeconds".into(), seconds.into());
            }
            status["details"] = Value::Object(rendered);
        }
        status
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::find;

    #[test]
    fn messages_match_upstream() {
        let sts = find("apps", "v1", "statefulsets").expect("served");
        assert_eq!(
            ApiError::not_found(sts, "nosuch").message,
            "statefulsets.apps \"nosuch\" not found"
        );
        let svc = find("", "v1", "services").expect("served");
        assert_eq!(
            ApiError::already_exists(svc, "nginx").message,
            "services \"nginx\" already exists"
        );
        let invalid = ApiError::invalid(
            "ConfigMap",
            "",
            "",
            vec![Cause::required(
                "metadata.name",
                "name or generateName is required",
            )],
        );
        assert_eq!(
            invalid.message,
            "ConfigMap \"\" is invalid: metadata.name: Required value: name or generateName is required"
        );
        let status = invalid.to_status();
        assert_eq!(status["details"]["causes"][0]["field"], "metadata.name");
    }

    #[test]
    fn errors_carry_details_as_upstream_fills_them() {
        // kubectl debug reads `details.name` of a 404 without checking for details.
        assert_eq!(ApiError::no_route().to_status()["details"], json!({}));
        assert_eq!(
            ApiError::method_not_allowed("PUT").to_status()["details"],
            json!({})
        );
        let internal = ApiError::internal("the disk is full").to_status();
        assert_eq!(
            internal["message"],
            "Internal error occurred: the disk is full"
        );
        assert_eq!(
            internal["details"],
            json!({"causes": [{"message": "the disk is full"}]})
        );
        let sts = find("apps", "v1", "statefulsets").expect("served");
        assert_eq!(
            ApiError::not_found(sts, "web").to_status()["details"],
            json!({"name": "web", "group": "apps", "kind": "statefulsets"})
        );
    }
}
