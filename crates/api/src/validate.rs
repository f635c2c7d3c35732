//! Validation of objects on create and update, with upstream's field paths and messages: the
//! metadata rules every object follows and the parts kinds share. Each kind's own rules are in
//! its strategy (`kinds/`).

use serde_json::{Value, json};

use crate::error::Cause;
use crate::kinds::NameRule;
use crate::names;
use crate::resources::ResourceType;
use crate::selector::LabelSelector;

/// The rules for a new object: metadata, then the kind's.
pub fn create(resource: &ResourceType, object: &Value) -> Vec<Cause> {
    let mut causes = metadata(resource.strategy.name_rule(), object, true);
    causes.extend(resource.strategy.validate(object));
    causes
}

/// The rules for an update from `old` to `new`: metadata, then the kind's.
pub fn update(resource: &ResourceType, old: &Value, new: &Value) -> Vec<Cause> {
    let mut causes = metadata(resource.strategy.name_rule(), new, false);
    causes.extend(resource.strategy.validate_update(old, new));
    causes
}

/// Names that need no particular form (events are named by their recorders).
pub fn any_name(_: &str) -> Vec<String> {
    Vec::new()
}

/// Metadata rules every object follows.
pub fn metadata(name_rule: NameRule, object: &Value, creating: bool) -> Vec<Cause> {
    let mut causes = Vec::new();
    let meta = object.get("metadata").cloned().unwrap_or_else(|| json!({}));
    let name = meta.get("name").and_then(Value::as_str).unwrap_or_default();
    if name.is_empty() {
        causes.push(Cause::required(
            "metadata.name",
            "name or generateName is required",
        ));
    } else if creating {
        for problem in name_rule(name) {
            causes.push(Cause::invalid("metadata.name", &json!(name), &problem));
        }
    }
    if name.contains('/') || name == "." || name == ".." {
        causes.push(Cause::invalid(
            "metadata.name",
            &json!(name),
            "may not contain '/'",
        ));
    }
    causes.extend(labels(meta.get("labels"), "metadata.labels"));
    causes.extend(annotations(meta.get("annotations"), "metadata.annotations"));
    causes
}

/// Label keys and values.
pub fn labels(labels: Option<&Value>, field: &str) -> Vec<Cause> {
    let mut causes = Vec::new();
    let Some(labels) = labels.and_then(Value::as_object) else {
        return causes;
    };
    for (key, value) in labels {
        for problem in names::qualified_name(key) {
            causes.push(Cause::invalid(field, &json!(key), &problem));
        }
        let text = value.as_str().unwrap_or_default();
        for problem in names::label_value(text) {
            causes.push(Cause::invalid(field, &json!(text), &problem));
        }
    }
    causes
}

fn annotations(annotations: Option<&Value>, field: &str) -> Vec<Cause> {
    let mut causes = Vec::new();
    let Some(annotations) = annotations.and_then(Value::as_object) else {
        return causes;
    };
    let mut total = 0;
    for (key, value) in annotations {
        total += key.len() + value.as_str().map_or(0, str::len);
        for problem in names::qualified_name(&key.to_lowercase()) {
            causes.push(Cause::invalid(field, &json!(key), &problem));
        }
    }
    if total > names::ANNOTATIONS_MAX_BYTES {
        causes.push(Cause {
            reason: "FieldValueTooLong",
            field: field.to_string(),
            message: format!(
                "Too long: may not be more than {} bytes",
                names::ANNOTATIONS_MAX_BYTES
            ),
        });
    }
    causes
}

pub(crate) fn pod_spec(spec: &Value, field: &str) -> Vec<Cause> {
    let mut causes = Vec::new();
    let containers = spec.get("containers").and_then(Value::as_array);
    match containers {
        None => causes.push(Cause::required(format!("{field}.containers"), "")),
        Some(list) if list.is_empty() => {
            causes.push(Cause::required(format!("{field}.containers"), ""))
        }
        Some(_) => {}
    }
    let mut seen = Vec::new();
    for list in ["initContainers", "containers"] {
        for (index, container) in spec
            .get(list)
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .enumerate()
        {
            let path = format!("{field}.{list}[{index}]");
            let name = container
                .get("name")
                .and_then(Value::as_str)
                .unwrap_or_default();
            if name.is_empty() {
                causes.push(Cause::required(format!("{path}.name"), ""));
            } else {
                for problem in names::dns1123_label(name) {
                    causes.push(Cause::invalid(
                        format!("{path}.name"),
                        &json!(name),
                        &problem,
                    ));
                }
                if seen.contains(&name) {
                    causes.push(Cause::duplicate(format!("{path}.name"), &json!(name)));
                }
                seen.push(name);
            }
            if container
                .get("image")
                .and_then(Value::as_str)
                .is_none_or(|image| image.trim().is_empty())
            {
                causes.push(Cause::required(format!("{path}.image"), ""));
            }
            for (port_index, port) in container
                .get("ports")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .enumerate()
            {
                let number = port.get("containerPort").and_then(Value::as_i64);
                let port_field = format!("{path}.ports[{port_index}].containerPort");
                match number {
                    None => causes.push(Cause::required(port_field, "")),
                    Some(n) if !(1..=65535).contains(&n) => causes.push(Cause::invalid(
                        port_field,
                        &json!(n),
                        "must be between 1 and 65535, inclusive",
                    )),
                    Some(_) => {}
                }
            }
        }
    }
    if let Some(policy) = spec.get("restartPolicy")
        && !matches!(policy.as_str(), Some("Always" | "OnFailure" | "Never"))
    {
        causes.push(Cause::not_supported(
            format!("{field}.restartPolicy"),
            policy,
            &["Always", "OnFailure", "Never"],
        ));
    }
    causes
}

pub(crate) fn pvc_spec(spec: &Value, field: &str) -> Vec<Cause> {
    let mut causes = Vec::new();
    let modes = spec.get("accessModes").and_then(Value::as_array);
    if modes.is_none_or(Vec::is_empty) {
        causes.push(Cause::required(
            format!("{field}.accessModes"),
            "at least 1 access mode is required",
        ));
    }
    for mode in modes.into_iter().flatten() {
        if !matches!(
            mode.as_str(),
            Some("ReadWriteOnce" | "ReadOnlyMany" | "ReadWriteMany" | "ReadWriteOncePod")
        ) {
            causes.push(Cause::not_supported(
                format!("{field}.accessModes"),
                mode,
                &[
                    "ReadOnlyMany",
                    "ReadWriteMany",
                    "ReadWriteOnce",
                    "ReadWriteOncePod",
                ],
            ));
        }
    }
    if spec.pointer("/resources/requests/storage").is_none() {
        causes.push(Cause::required(format!("{field}.resources[storage]"), ""));
    }
    causes
}

/// The keys of `data`, `binaryData` and `stringData` (ConfigMaps and Secrets).
pub(crate) fn data_keys(object: &Value) -> Vec<Cause> {
    let mut causes = Vec::new();
    for field in ["data", "binaryData", "stringData"] {
        if let Some(map) = object.get(field).and_then(Value::as_object) {
            for key in map.keys() {
                for problem in names::config_map_key(key) {
                    causes.push(Cause::invalid(
                        format!("{field}[{key}]"),
                        &json!(key),
                        &problem,
                    ));
                }
            }
        }
    }
    causes
}

/// Upstream's `ValidatePositiveIntOrPercent` and `IsNotMoreThan100Percent`: a count of at
/// least 0, or a percentage of at most 100%.
pub(crate) fn int_or_percent(value: &Value, field: &str) -> Vec<Cause> {
    match value {
        Value::Number(number) => match number.as_i64() {
            Some(n) if n < 0 => vec![Cause::invalid(
                field,
                value,
                "must be greater than or equal to 0",
            )],
            Some(_) => Vec::new(),
            None => vec![Cause::invalid(
                field,
                value,
                "must be an integer or percentage (e.g '5%')",
            )],
        },
        Value::String(text) => match percent(text) {
            None => vec![Cause::invalid(
                field,
                value,
                "a valid percent string must be a numeric string followed by an ending '%' (e.g. '1%',  or '93%', regex used for validation is '[0-9]+%')",
            )],
            Some(p) if p > 100 => vec![Cause::invalid(
                field,
                value,
                "must not be greater than 100%",
            )],
            Some(_) => Vec::new(),
        },
        _ => vec![Cause::invalid(
            field,
            value,
            "must be an integer or percentage (e.g '5%')",
        )],
    }
}

/// `50%` → 50; `None` unless digits and a `%` (upstream's `[0-9]+%`).
pub(crate) fn percent(text: &str) -> Option<u64> {
    let digits = text.strip_suffix('%')?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    // Too many digits to count is still far more than 100%.
    Some(digits.parse().unwrap_or(u64::MAX))
}

/// A workload's `spec.template.spec`: required, `restartPolicy` only `Always`, no
/// `activeDeadlineSeconds` (`activeDeadlineSeconds in <Kind> is not Supported`), and a valid pod
/// spec (upstream's apps validation of DaemonSets and StatefulSets).
pub(crate) fn always_restarting_template(spec: &Value, kind: &str) -> Vec<Cause> {
    let mut causes = Vec::new();
    match spec.pointer("/template/spec") {
        Some(template_spec) => {
            if let Some(policy) = template_spec.get("restartPolicy")
                && policy.as_str() != Some("Always")
            {
                causes.push(Cause::not_supported(
                    "spec.template.spec.restartPolicy",
                    policy,
                    &["Always"],
                ));
            }
            if template_spec
                .get("activeDeadlineSeconds")
                .is_some_and(|v| !v.is_null())
            {
                causes.push(Cause::forbidden(
                    "spec.template.spec.activeDeadlineSeconds",
                    &format!("activeDeadlineSeconds in {kind} is not Supported"),
                ));
            }
            causes.extend(pod_spec(template_spec, "spec.template.spec"));
        }
        None => causes.push(Cause::required("spec.template.spec.containers", "")),
    }
    causes
}

/// A workload's `spec.selector`: required, not empty (`empty selector is invalid for
/// <workload>`), valid, and matching the template's labels (upstream's apps validation).
pub(crate) fn selector_of_template(spec: &Value, workload: &str) -> Vec<Cause> {
    let mut causes = Vec::new();
    match spec.get("selector").filter(|s| !s.is_null()) {
        None => causes.push(Cause::required("spec.selector", "")),
        Some(selector) => {
            let has_labels = selector
                .get("matchLabels")
                .and_then(Value::as_object)
                .is_some_and(|m| !m.is_empty());
            let has_expressions = selector
                .get("matchExpressions")
                .and_then(Value::as_array)
                .is_some_and(|m| !m.is_empty());
            if !has_labels && !has_expressions {
                causes.push(Cause::invalid(
                    "spec.selector",
                    selector,
                    &format!("empty selector is invalid for {workload}"),
                ));
            }
            causes.extend(labels(
                selector.get("matchLabels"),
                "spec.selector.matchLabels",
            ));
            match LabelSelector::from_structured(selector) {
                Ok(parsed) => {
                    let template_labels = spec.pointer("/template/metadata/labels");
                    if (has_labels || has_expressions)
                        && !parsed.matches(template_labels.and_then(Value::as_object))
                    {
                        causes.push(Cause::invalid(
                            "spec.template.metadata.labels",
                            template_labels.unwrap_or(&Value::Null),
                            "`selector` does not match template `labels`",
                        ));
                    }
                }
                Err(error) => causes.push(Cause::invalid(
                    "spec.selector",
                    selector,
                    &error.to_string(),
                )),
            }
        }
    }
    causes
}

/// Forbids any change to `spec` beyond what `strip` removes (immutability rules).
pub(crate) fn spec_immutable_except(
    old: &Value,
    new: &Value,
    strip: impl Fn(&mut Value),
    message: &str,
) -> Vec<Cause> {
    let stripped = |object: &Value| {
        let mut spec = object.get("spec").cloned().unwrap_or_else(|| json!({}));
        strip(&mut spec);
        spec
    };
    if stripped(old) == stripped(new) {
        Vec::new()
    } else {
        vec![Cause::forbidden("spec", message)]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::find;

    #[test]
    fn names_follow_the_kind_rule() {
        let configmaps = find("", "v1", "configmaps").expect("served");
        let causes = create(configmaps, &json!({"metadata": {"name": "Bad_Name"}}));
        assert_eq!(causes[0].field, "metadata.name");
        assert_eq!(
            create(configmaps, &json!({"metadata": {"name": "a.b"}})),
            vec![]
        );
        let services = find("", "v1", "services").expect("served");
        assert!(
            !create(
                services,
                &json!({"metadata": {"name": "a.b"}, "spec": {"clusterIP": "None"}})
            )
            .is_empty()
        );
    }

    #[test]
    fn int_or_percent_takes_counts_and_percentages_up_to_all() {
        for (value, ok) in [
            (json!(0), true),
            (json!(3), true),
            (json!("0%"), true),
            (json!("100%"), true),
            (json!(-1), false),
            (json!("101%"), false),
            (json!("5"), false),
            (json!("-5%"), false),
            (json!(true), false),
        ] {
            assert_eq!(int_or_percent(&value, "f").is_empty(), ok, "{value}");
        }
    }
}
