//! Field ownership on every write (upstream's field manager): which manager an apply or an
//! update names, the part of an object managers can own, and the `managedFields` a write
//! leaves. The set algebra and the conflicts are `petset_api::managed_fields`.

use petset_api::managed_fields::{self, Conflicts, Managers, compare, field_set};
use petset_api::resources::ResourceType;
use petset_api::{ApiError, Cause};
use serde_json::{Value, json};

/// Who a write is for, as the request named it.
#[derive(Debug, Clone, Copy, Default)]
pub struct Manager<'a> {
    /// `fieldManager`, or what the user agent gives; `None` for the server's own writes.
    pub name: Option<&'a str>,
    /// `force`: an apply takes the fields other managers own instead of conflicting.
    pub force: bool,
    /// The subresource the entry is recorded against (`status`, `scale`).
    pub subresource: Option<&'a str>,
}

impl<'a> Manager<'a> {
    pub fn named(name: Option<&'a str>) -> Self {
        Self {
            name: name.filter(|n| !n.is_empty()),
            ..Self::default()
        }
    }

    pub fn at(mut self, subresource: Option<&'a str>) -> Self {
        self.subresource = subresource;
        self
    }
}

/// What a write does to ownership.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Write<'a> {
    /// Server-side apply of `config`: its fields become the manager's `Apply` entry.
    Apply {
        manager: &'a str,
        config: &'a Value,
        force: bool,
        subresource: Option<&'a str>,
        /// The version the configuration was applied at when it is not the served one (an
        /// old version): upstream records the request's version.
        api_version: Option<&'a str>,
    },
    /// Any other write: what it changes moves to the manager's `Update` entry.
    Update(Manager<'a>),
}

impl Write<'_> {
    fn subresource(&self) -> Option<&str> {
        match self {
            Self::Apply { subresource, .. } => *subresource,
            Self::Update(manager) => manager.subresource,
        }
    }
}

/// Metadata the system writes, which no manager owns (upstream's stripped fields).
const SYSTEM_METADATA: &[&str] = &[
    "name",
    "namespace",
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "selfLink",
    "managedFields",
];

/// The part of `object` managers own: no type meta or system metadata; through the status
/// subresource only the status, and elsewhere never the status of a kind that has one (as
/// upstream's reset fields).
fn owned_part(resource: &ResourceType, object: &Value, subresource: Option<&str>) -> Value {
    let Some(map) = object.as_object() else {
        return json!({});
    };
    let mut owned = map.clone();
    owned.remove("apiVersion");
    owned.remove("kind");
    if let Some(Value::Object(meta)) = owned.get_mut("metadata") {
        for field in SYSTEM_METADATA {
            meta.remove(*field);
        }
        if meta.is_empty() {
            owned.remove("metadata");
        }
    }
    match subresource {
        Some("status") => owned.retain(|field, _| field == "status"),
        _ if resource.has_status() => {
            owned.remove("status");
        }
        _ => {}
    }
    Value::Object(owned)
}

fn writer<'a>(
    api_version: &'a str,
    manager: &'a str,
    subresource: Option<&'a str>,
    now: &'a str,
) -> managed_fields::Writer<'a> {
    managed_fields::Writer {
        manager,
        api_version,
        subresource,
        time: now,
    }
}

/// Before an apply's merge is written: the fields its manager applied last time and leaves out
/// now are removed from `merged`, unless another manager owns them.
pub(crate) fn prune_unapplied(
    resource: &ResourceType,
    current: &Value,
    merged: &mut Value,
    write: &Write<'_>,
) {
    let Write::Apply {
        manager,
        config,
        subresource,
        api_version,
        ..
    } = write
    else {
        return;
    };
    let keys = resource.strategy.merge_keys();
    let managers = Managers::of(current).unwrap_or_default();
    let api_version = api_version.map_or_else(|| resource.api_version(), str::to_string);
    let who = writer(&api_version, manager, *subresource, "");
    let applied = field_set(&owned_part(resource, config, *subresource), keys);
    let doomed = managers.applied_by(&who).difference(&applied);
    if doomed.is_empty() {
        return;
    }
    let kept = managers.owned_by_others(&who).union(&applied);
    managed_fields::prune(merged, &doomed, &kept, keys);
}

/// Records the write of `next` over `current` (`None` for a create) in `next`'s
/// `managedFields`. An apply that changes fields other managers own, without force, is
/// upstream's 409 with one cause per field.
pub(crate) fn record(
    resource: &ResourceType,
    current: Option<&Value>,
    next: &mut Value,
    write: &Write<'_>,
    now: &str,
) -> Result<(), ApiError> {
    let keys = resource.strategy.merge_keys();
    let subresource = write.subresource();
    let empty = json!({});
    let old = current.unwrap_or(&empty);
    let comparison = compare(
        &owned_part(resource, old, subresource),
        &owned_part(resource, next, subresource),
        keys,
    );
    let mut managers = starting_managers(current, next, write);
    let served_version = resource.api_version();
    match *write {
        Write::Apply {
            manager,
            config,
            force,
            subresource,
            api_version,
        } => {
            let api_version = api_version.unwrap_or(&served_version);
            let applied = field_set(&owned_part(resource, config, subresource), keys);
            let writer = writer(api_version, manager, subresource, now);
            let attempt = managers.apply(&writer, applied.clone(), &comparison, force);
            match attempt {
                Err(conflicts) if manager == KUBECTL => {
                    match conflicts_left_after_client_side_apply(resource, current, conflicts) {
                        None => managers.apply(&writer, applied, &comparison, true),
                        Some(left) => Err(left),
                    }
                }
                other => other,
            }
            .map_err(|conflicts| conflict_error(&conflicts))?;
            if manager == KUBECTL {
                keep_last_applied_current(current, config, next);
            }
        }
        Write::Update(Manager {
            name: Some(name),
            subresource,
            ..
        }) => managers.update(
            &writer(&served_version, name, subresource, now),
            &comparison,
        ),
        // The server's own writes name nobody: fields they remove are owned by nobody.
        Write::Update(_) => managers.forget(&comparison.removed),
    }
    if let Some(meta) = next.get_mut("metadata").and_then(Value::as_object_mut) {
        if managers.is_empty() {
            meta.remove("managedFields");
        } else {
            meta.insert("managedFields".into(), managers.to_json());
        }
    }
    Ok(())
}

/// The manager `kubectl apply --server-side` names; upstream eases its move from client-side
/// apply, and only its.
const KUBECTL: &str = "kubectl";
/// What client-side `kubectl apply` last applied.
const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// Upstream's upgrade from client-side apply (`lastAppliedManager`): a conflict on a field the
/// object's last client-side apply set, and that still holds the value it set, is the user's
/// own field changing hands, not someone else's; `None` when every conflict is such, else the
/// others. Without the annotation every conflict stands.
fn conflicts_left_after_client_side_apply(
    resource: &ResourceType,
    current: Option<&Value>,
    conflicts: Conflicts,
) -> Option<Conflicts> {
    let last_applied = current
        .and_then(|c| {
            c.pointer("/metadata/annotations")?
                .get(LAST_APPLIED)?
                .as_str()
        })
        .and_then(|text| serde_json::from_str::<Value>(text).ok());
    let (Some(current), Some(last_applied)) = (current, last_applied) else {
        return Some(conflicts);
    };
    let keys = resource.strategy.merge_keys();
    let last_applied = owned_part(resource, &last_applied, None);
    let live = owned_part(resource, current, None);
    // Fields the live object no longer holds as last applied are someone else's doing.
    let drifted = compare(&last_applied, &live, keys);
    let allowed = field_set(&last_applied, keys)
        .difference(&drifted.changed)
        .difference(&drifted.removed);
    let left: Vec<_> = conflicts
        .0
        .into_iter()
        .filter(|conflict| !allowed.contains(&conflict.path.0))
        .collect();
    (!left.is_empty()).then_some(Conflicts(left))
}

/// Upstream's `lastAppliedUpdater`: once an object kept client-side apply's annotation,
/// a server-side apply by kubectl rewrites it to what was applied now, so a client-side apply
/// that follows compares against the truth.
fn keep_last_applied_current(current: Option<&Value>, config: &Value, next: &mut Value) {
    let had_it = current
        .and_then(|c| c.pointer("/metadata/annotations")?.get(LAST_APPLIED))
        .is_some();
    if !had_it {
        return;
    }
    let mut applied = config.clone();
    if let Some(annotations) = applied
        .pointer_mut("/metadata/annotations")
        .and_then(Value::as_object_mut)
    {
        annotations.remove(LAST_APPLIED);
        if annotations.is_empty() {
            applied["metadata"]
                .as_object_mut()
                .map(|meta| meta.remove("annotations"));
        }
    }
    let Ok(text) = serde_json::to_string(&applied) else {
        return;
    };
    if let Some(annotations) = next
        .pointer_mut("/metadata/annotations")
        .and_then(Value::as_object_mut)
    {
        annotations.insert(LAST_APPLIED.into(), Value::String(text));
    }
}

/// The entries a write starts from: an update may set `managedFields` itself (kubectl's
/// migration from client-side apply does), otherwise, and for applies and subresources, the
/// stored ones. Entries that do not parse are replaced by the stored ones, as upstream.
fn starting_managers(current: Option<&Value>, next: &Value, write: &Write<'_>) -> Managers {
    let stored = || {
        current
            .and_then(|c| Managers::of(c).ok())
            .unwrap_or_default()
    };
    match write {
        Write::Update(manager) if manager.subresource.is_none() => match Managers::of(next) {
            Ok(given) if !given.is_empty() => given,
            _ => stored(),
        },
        _ => stored(),
    }
}

/// Upstream's `NewApplyConflict`: 409 Conflict, one `FieldManagerConflict` cause per field.
fn conflict_error(conflicts: &Conflicts) -> ApiError {
    let causes = conflicts
        .0
        .iter()
        .map(|conflict| Cause {
            reason: "FieldManagerConflict",
            field: conflict.path.to_string(),
            message: format!("conflict with {}", conflict.manager),
        })
        .collect();
    ApiError::apply_conflict(conflicts.to_string(), causes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deployments() -> &'static ResourceType {
        petset_api::resources::find("apps", "v1", "deployments").expect("served")
    }

    #[test]
    fn system_metadata_and_status_are_nobody_s() {
        let object = json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "uid": "u", "labels": {"a": "b"}},
            "spec": {"replicas": 1}, "status": {"replicas": 1}});
        assert_eq!(
            owned_part(deployments(), &object, None),
            json!({"metadata": {"labels": {"a": "b"}}, "spec": {"replicas": 1}})
        );
        assert_eq!(
            owned_part(deployments(), &object, Some("status")),
            json!({"status": {"replicas": 1}})
        );
    }

    #[test]
    fn a_conflict_is_upstream_s_409() {
        let current = json!({"metadata": {"name": "web", "managedFields": [
            {"manager": "a", "operation": "Apply", "apiVersion": "apps/v1",
             "fieldsType": "FieldsV1", "fieldsV1": {"f:spec": {"f:replicas": {}}}}]},
            "spec": {"replicas": 1}});
        let config = json!({"spec": {"replicas": 2}});
        let mut next = json!({"metadata": {"name": "web"}, "spec": {"replicas": 2}});
        let write = Write::Apply {
            manager: "b",
            config: &config,
            force: false,
            subresource: None,
            api_version: None,
        };
        let error =
            record(deployments(), Some(&current), &mut next, &write, "t").expect_err("conflict");
        assert_eq!(error.code, 409);
        assert_eq!(
            error.message,
            "Apply failed with 1 conflict: conflict with \"a\": .spec.replicas"
        );
        let status = error.to_status();
        assert_eq!(
            status["details"]["causes"],
            json!([{"reason": "FieldManagerConflict", "message": "conflict with \"a\"", "field": ".spec.replicas"}])
        );
    }
}
