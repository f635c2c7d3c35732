//! Validation of objects on create and update, with upstream's field paths and messages.

use serde_json::{Value, json};

use crate::error::Cause;
use crate::names;
use crate::selector::LabelSelector;

/// Which name rule a kind's `metadata.name` follows.
fn name_rule(kind: &str) -> fn(&str) -> Vec<String> {
    match kind {
        "Namespace" | "Service" | "StatefulSet" => names::dns1123_label,
        "Event" => |_| Vec::new(),
        _ => names::dns1123_subdomain,
    }
}

/// Metadata rules every object follows.
pub fn metadata(kind: &str, object: &Value, creating: bool) -> Vec<Cause> {
    let mut causes = Vec::new();
    let meta = object.get("metadata").cloned().unwrap_or_else(|| json!({}));
    let name = meta.get("name").and_then(Value::as_str).unwrap_or_default();
    if name.is_empty() {
        causes.push(Cause::required(
            "metadata.name",
            "name or generateName is required",
        ));
    } else if creating {
        for problem in name_rule(kind)(name) {
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

/// Per-kind rules for a new object.
pub fn create(kind: &str, object: &Value) -> Vec<Cause> {
    let mut causes = metadata(kind, object, true);
    causes.extend(spec(kind, object));
    causes
}

/// Per-kind rules for an update from `old` to `new`.
pub fn update(kind: &str, old: &Value, new: &Value) -> Vec<Cause> {
    let mut causes = metadata(kind, new, false);
    causes.extend(spec(kind, new));
    match kind {
        "StatefulSet" => causes.extend(statefulset_update(old, new)),
        "PersistentVolumeClaim" => causes.extend(pvc_update(old, new)),
        "Pod" => causes.extend(pod_update(old, new)),
        "Service" => {
            let old_ip = old.pointer("/spec/clusterIP");
            let new_ip = new.pointer("/spec/clusterIP");
            if new_ip.is_some() && old_ip != new_ip {
                causes.push(Cause::invalid(
                    "spec.clusterIPs[0]",
                    new_ip.unwrap_or(&Value::Null),
                    "may not change once set",
                ));
            }
        }
        _ => {}
    }
    causes
}

fn spec(kind: &str, object: &Value) -> Vec<Cause> {
    match kind {
        "StatefulSet" => statefulset(object),
        "Pod" => object
            .get("spec")
            .map(|spec| pod_spec(spec, "spec"))
            .unwrap_or_else(|| vec![Cause::required("spec.containers", "")]),
        "Service" => service(object),
        "PersistentVolumeClaim" => pvc_spec(object.get("spec").unwrap_or(&Value::Null), "spec"),
        "ConfigMap" | "Secret" => {
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
        "ControllerRevision" => {
            if object.get("data").is_none_or(Value::is_null) {
                vec![Cause::required("data", "data is mandatory")]
            } else {
                Vec::new()
            }
        }
        _ => Vec::new(),
    }
}

fn statefulset(object: &Value) -> Vec<Cause> {
    let mut causes = Vec::new();
    let empty = json!({});
    let spec = object.get("spec").unwrap_or(&empty);
    match spec.get("podManagementPolicy").and_then(Value::as_str) {
        None | Some("") => causes.push(Cause::required("spec.podManagementPolicy", "")),
        Some("OrderedReady" | "Parallel") => {}
        Some(other) => causes.push(Cause::invalid(
            "spec.podManagementPolicy",
            &json!(other),
            "must be 'OrderedReady' or 'Parallel'",
        )),
    }
    let strategy = spec.get("updateStrategy").unwrap_or(&empty);
    let rolling = strategy.get("rollingUpdate").filter(|r| !r.is_null());
    match strategy.get("type").and_then(Value::as_str) {
        None | Some("") => causes.push(Cause::required("spec.updateStrategy", "")),
        Some("OnDelete") => {
            if let Some(rolling) = rolling {
                causes.push(Cause::invalid(
                    "spec.updateStrategy.rollingUpdate",
                    rolling,
                    "only allowed for updateStrategy 'RollingUpdate'",
                ));
            }
        }
        Some("RollingUpdate") => {
            if let Some(partition) = rolling
                .and_then(|r| r.get("partition"))
                .and_then(Value::as_i64)
                && partition < 0
            {
                causes.push(Cause::invalid(
                    "spec.updateStrategy.rollingUpdate.partition",
                    &json!(partition),
                    "must be greater than or equal to 0",
                ));
            }
            if let Some(max) = rolling.and_then(|r| r.get("maxUnavailable")) {
                causes.extend(max_unavailable(max));
            }
        }
        Some(other) => causes.push(Cause::invalid(
            "spec.updateStrategy",
            &json!(other),
            "must be 'RollingUpdate' or 'OnDelete'",
        )),
    }
    if let Some(policy) = spec.get("persistentVolumeClaimRetentionPolicy") {
        for field in ["whenDeleted", "whenScaled"] {
            if let Some(value) = policy.get(field)
                && !matches!(value.as_str(), Some("Retain" | "Delete"))
            {
                causes.push(Cause::not_supported(
                    format!("spec.persistentVolumeClaimRetentionPolicy.{field}"),
                    value,
                    &["Retain", "Delete"],
                ));
            }
        }
    }
    for (pointer, field) in [
        ("/replicas", "spec.replicas"),
        ("/minReadySeconds", "spec.minReadySeconds"),
        ("/ordinals/start", "spec.ordinals.start"),
    ] {
        if let Some(value) = spec.pointer(pointer).and_then(Value::as_i64)
            && value < 0
        {
            causes.push(Cause::invalid(
                field,
                &json!(value),
                "must be greater than or equal to 0",
            ));
        }
    }
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
                    "empty selector is invalid for statefulset",
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
    causes.extend(labels(
        spec.pointer("/template/metadata/labels"),
        "spec.template.metadata.labels",
    ));
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
                    "activeDeadlineSeconds in StatefulSet is not Supported",
                ));
            }
            causes.extend(pod_spec(template_spec, "spec.template.spec"));
        }
        None => causes.push(Cause::required("spec.template.spec.containers", "")),
    }
    if let Some(templates) = spec.get("volumeClaimTemplates").and_then(Value::as_array) {
        for (index, template) in templates.iter().enumerate() {
            let field = format!("spec.volumeClaimTemplates[{index}]");
            causes.extend(pvc_spec(
                template.get("spec").unwrap_or(&Value::Null),
                &format!("{field}.spec"),
            ));
        }
    }
    causes
}

/// `rollingUpdate.maxUnavailable`: a positive count or a percentage in (0%, 100%].
fn max_unavailable(value: &Value) -> Vec<Cause> {
    let field = "spec.updateStrategy.rollingUpdate.maxUnavailable";
    let amount = match value {
        Value::Number(number) => number.as_i64(),
        Value::String(text) => match text.strip_suffix('%').map(str::parse::<i64>) {
            Some(Ok(percent)) => {
                if percent > 100 {
                    return vec![Cause::invalid(
                        field,
                        value,
                        "must not be greater than 100%",
                    )];
                }
                Some(percent)
            }
            _ => {
                return vec![Cause::invalid(
                    field,
                    value,
                    "a valid percent string must be a numeric string followed by an ending '%' (e.g. '1%',  or '93%', regex used for validation is '[0-9]+%')",
                )];
            }
        },
        _ => None,
    };
    match amount {
        Some(n) if n < 0 => vec![Cause::invalid(
            field,
            value,
            "must be greater than or equal to 0",
        )],
        Some(0) => vec![Cause::invalid(field, value, "cannot be 0")],
        _ => Vec::new(),
    }
}

const IMMUTABLE_STATEFULSET_MESSAGE: &str = "updates to statefulset spec for fields other than 'replicas', 'ordinals', 'template', 'updateStrategy', 'revisionHistoryLimit', 'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' are forbidden";

fn statefulset_update(old: &Value, new: &Value) -> Vec<Cause> {
    let strip = |object: &Value| {
        let mut spec = object.get("spec").cloned().unwrap_or_else(|| json!({}));
        if let Value::Object(map) = &mut spec {
            for field in [
                "replicas",
                "ordinals",
                "template",
                "updateStrategy",
                "revisionHistoryLimit",
                "persistentVolumeClaimRetentionPolicy",
                "minReadySeconds",
            ] {
                map.remove(field);
            }
        }
        spec
    };
    if strip(old) == strip(new) {
        Vec::new()
    } else {
        vec![Cause::forbidden("spec", IMMUTABLE_STATEFULSET_MESSAGE)]
    }
}

fn pod_spec(spec: &Value, field: &str) -> Vec<Cause> {
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

fn pod_update(old: &Value, new: &Value) -> Vec<Cause> {
    // Upstream lets an update change container images, activeDeadlineSeconds, tolerations
    // (additions) and terminationGracePeriodSeconds; the rest of the spec is fixed.
    let strip = |object: &Value| {
        let mut spec = object.get("spec").cloned().unwrap_or_else(|| json!({}));
        for list in ["containers", "initContainers"] {
            if let Some(containers) = spec.get_mut(list).and_then(Value::as_array_mut) {
                for container in containers {
                    if let Value::Object(map) = container {
                        map.remove("image");
                    }
                }
            }
        }
        if let Value::Object(map) = &mut spec {
            for field in [
                "activeDeadlineSeconds",
                "tolerations",
                "terminationGracePeriodSeconds",
                "schedulingGates",
            ] {
                map.remove(field);
            }
            // Binding sets the node once.
            if old.pointer("/spec/nodeName").is_none_or(Value::is_null) {
                map.remove("nodeName");
            }
        }
        spec
    };
    if strip(old) == strip(new) {
        Vec::new()
    } else {
        vec![Cause::forbidden(
            "spec",
            "pod updates may not change fields other than `spec.containers[*].image`,`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)",
        )]
    }
}

fn service(object: &Value) -> Vec<Cause> {
    let mut causes = Vec::new();
    let empty = json!({});
    let spec = object.get("spec").unwrap_or(&empty);
    let headless = spec.get("clusterIP").and_then(Value::as_str) == Some("None");
    let service_type = spec
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or("ClusterIP");
    if !matches!(
        service_type,
        "ClusterIP" | "NodePort" | "LoadBalancer" | "ExternalName"
    ) {
        causes.push(Cause::not_supported(
            "spec.type",
            &json!(service_type),
            &["ClusterIP", "ExternalName", "LoadBalancer", "NodePort"],
        ));
    }
    let ports = spec.get("ports").and_then(Value::as_array);
    if ports.is_none_or(Vec::is_empty) && !headless && service_type != "ExternalName" {
        causes.push(Cause::required("spec.ports", ""));
    }
    let many = ports.is_some_and(|p| p.len() > 1);
    for (index, port) in ports.into_iter().flatten().enumerate() {
        let field = format!("spec.ports[{index}]");
        match port.get("port").and_then(Value::as_i64) {
            None => causes.push(Cause::required(format!("{field}.port"), "")),
            Some(n) if !(1..=65535).contains(&n) => causes.push(Cause::invalid(
                format!("{field}.port"),
                &json!(n),
                "must be between 1 and 65535, inclusive",
            )),
            Some(_) => {}
        }
        if many
            && port
                .get("name")
                .and_then(Value::as_str)
                .is_none_or(str::is_empty)
        {
            causes.push(Cause::required(format!("{field}.name"), ""));
        }
    }
    causes
}

fn pvc_spec(spec: &Value, field: &str) -> Vec<Cause> {
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

fn pvc_update(old: &Value, new: &Value) -> Vec<Cause> {
    let strip = |object: &Value| {
        let mut spec = object.get("spec").cloned().unwrap_or_else(|| json!({}));
        if let Some(requests) = spec
            .pointer_mut("/resources/requests")
            .and_then(Value::as_object_mut)
        {
            requests.remove("storage");
        }
        if let Value::Object(map) = &mut spec {
            map.remove("volumeAttributesClassName");
            // Binding fills in the volume name once.
            if old.pointer("/spec/volumeName").is_none_or(Value::is_null) {
                map.remove("volumeName");
            }
        }
        spec
    };
    if strip(old) == strip(new) {
        Vec::new()
    } else {
        vec![Cause::forbidden(
            "spec",
            "spec is immutable after creation except resources.requests and volumeAttributesClassName for bound claims",
        )]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::defaults;

    fn web() -> Value {
        let mut sts = json!({
            "metadata": {"name": "web"},
            "spec": {
                "serviceName": "nginx",
                "selector": {"matchLabels": {"app": "nginx"}},
                "template": {"metadata": {"labels": {"app": "nginx"}},
                    "spec": {"containers": [{"name": "nginx", "image": "nginx-slim:0.8"}]}},
                "volumeClaimTemplates": [{"metadata": {"name": "www"}, "spec": {
                    "accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}]
            }
        });
        defaults::apply("StatefulSet", &mut sts);
        sts
    }

    #[test]
    fn the_tutorial_statefulset_is_valid() {
        assert_eq!(create("StatefulSet", &web()), vec![]);
    }

    #[test]
    fn selector_must_match_template() {
        let mut sts = web();
        sts["spec"]["template"]["metadata"]["labels"] = json!({"app": "other"});
        let causes = create("StatefulSet", &sts);
        assert_eq!(causes.len(), 1);
        assert_eq!(causes[0].field, "spec.template.metadata.labels");
    }

    #[test]
    fn immutable_fields_are_forbidden_with_upstreams_message() {
        let old = web();
        let mut new = web();
        new["spec"]["serviceName"] = json!("other");
        let causes = update("StatefulSet", &old, &new);
        assert_eq!(causes[0].field, "spec");
        assert!(
            causes[0]
                .message
                .starts_with("Forbidden: updates to statefulset spec")
        );
        let mut scaled = web();
        scaled["spec"]["replicas"] = json!(5);
        assert_eq!(update("StatefulSet", &old, &scaled), vec![]);
    }

    #[test]
    fn max_unavailable_must_be_positive_and_at_most_all() {
        for (value, ok) in [
            (json!(1), true),
            (json!("50%"), true),
            (json!(0), false),
            (json!("0%"), false),
            (json!("150%"), false),
            (json!("x"), false),
        ] {
            let mut sts = web();
            sts["spec"]["updateStrategy"]["rollingUpdate"]["maxUnavailable"] = value.clone();
            assert_eq!(create("StatefulSet", &sts).is_empty(), ok, "{value}");
        }
    }

    #[test]
    fn names_follow_the_kind_rule() {
        let causes = create("ConfigMap", &json!({"metadata": {"name": "Bad_Name"}}));
        assert_eq!(causes[0].field, "metadata.name");
        assert_eq!(
            create("ConfigMap", &json!({"metadata": {"name": "a.b"}})),
            vec![]
        );
        assert!(
            !create(
                "Service",
                &json!({"metadata": {"name": "a.b"}, "spec": {"clusterIP": "None"}})
            )
            .is_empty()
        );
    }
}
