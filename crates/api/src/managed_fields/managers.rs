//! `metadata.managedFields`: one entry per manager, operation and subresource, and how an
//! apply or an update moves ownership between them (structured-merge-diff's `Updater`).

use std::fmt;

use serde_json::{Value, json};

use super::set::{FieldPath, FieldSet, FieldsV1Error};
use super::walk::Comparison;

/// Upstream's bound on `Update` entries (`DefaultMaxUpdateManagers`); older ones are merged
/// into one entry of [`ANCIENT_CHANGES`].
pub const MAX_UPDATE_MANAGERS: usize = 10;
pub const ANCIENT_CHANGES: &str = "ancient-changes";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    Apply,
    Update,
}

impl Operation {
    fn as_str(self) -> &'static str {
        match self {
            Self::Apply => "Apply",
            Self::Update => "Update",
        }
    }
}

/// One `ManagedFieldsEntry`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub manager: String,
    pub operation: Operation,
    pub api_version: String,
    pub time: Option<String>,
    pub subresource: Option<String>,
    pub fields: FieldSet,
}

impl Entry {
    fn from_json(value: &Value) -> Result<Self, FieldsV1Error> {
        let text = |field: &str| value.get(field).and_then(Value::as_str).map(str::to_string);
        let operation = match text("operation").as_deref() {
            Some("Apply") => Operation::Apply,
            Some("Update") => Operation::Update,
            other => {
                return Err(FieldsV1Error(format!(
                    "managedFields operation must be Apply or Update, got {other:?}"
                )));
            }
        };
        if let Some(kind) = text("fieldsType")
            && kind != "FieldsV1"
        {
            return Err(FieldsV1Error(format!(
                "managedFields fieldsType must be FieldsV1, got {kind:?}"
            )));
        }
        let fields = match value.get("fieldsV1") {
            Some(fields) => FieldSet::from_fields_v1(fields)?,
            None => FieldSet::new(),
        };
        Ok(Self {
            manager: text("manager").unwrap_or_default(),
            operation,
            api_version: text("apiVersion").unwrap_or_default(),
            time: text("time"),
            subresource: text("subresource").filter(|s| !s.is_empty()),
            fields,
        })
    }

    fn to_json(&self) -> Value {
        let mut entry = json!({
            "manager": self.manager,
            "operation": self.operation.as_str(),
            "apiVersion": self.api_version,
        });
        if let Some(time) = &self.time {
            entry["time"] = json!(time);
        }
        entry["fieldsType"] = json!("FieldsV1");
        entry["fieldsV1"] = self.fields.to_fields_v1();
        if let Some(subresource) = &self.subresource {
            entry["subresource"] = json!(subresource);
        }
        entry
    }

    fn is(&self, writer: &Writer<'_>, operation: Operation) -> bool {
        self.manager == writer.manager
            && self.operation == operation
            && self.subresource.as_deref() == writer.subresource
    }

    /// How a conflict names this manager (upstream's `printManager`): an applier by name, an
    /// updater with its subresource and the version it wrote.
    fn printed(&self) -> String {
        let mut printed = format!("{:?}", self.manager);
        if let Some(subresource) = &self.subresource {
            printed.push_str(&format!(" with subresource {subresource:?}"));
        }
        if self.operation == Operation::Update {
            printed.push_str(&format!(" using {}", self.api_version));
        }
        printed
    }
}

/// Who writes, at which version and through which subresource, and when.
#[derive(Debug, Clone, Copy)]
pub struct Writer<'a> {
    pub manager: &'a str,
    pub api_version: &'a str,
    pub subresource: Option<&'a str>,
    pub time: &'a str,
}

/// One field another manager owns and an apply would change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conflict {
    /// The manager as upstream prints it (`"kubectl" using apps/v1`).
    pub manager: String,
    pub path: FieldPath,
}

/// The conflicts of one apply; never empty.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct Conflicts(pub Vec<Conflict>);

/// Upstream's message: `Apply failed with 1 conflict: conflict with "M": .spec.replicas`, or
/// with several, one line per field under each manager in name order.
impl fmt::Display for Conflicts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let [only] = self.0.as_slice() {
            return write!(
                f,
                "Apply failed with 1 conflict: conflict with {}: {}",
                only.manager, only.path
            );
        }
        let mut managers: Vec<&str> = self.0.iter().map(|c| c.manager.as_str()).collect();
        managers.sort_unstable();
        managers.dedup();
        let mut lines = Vec::new();
        for manager in managers {
            lines.push(format!("conflicts with {manager}:"));
            for conflict in self.0.iter().filter(|c| c.manager == manager) {
                lines.push(format!("- {}", conflict.path));
            }
        }
        write!(
            f,
            "Apply failed with {} conflicts: {}",
            self.0.len(),
            lines.join("\n")
        )
    }
}

/// The managedFields of one object.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Managers(pub Vec<Entry>);

impl Managers {
    /// Reads `metadata.managedFields` (none is no managers).
    pub fn of(object: &Value) -> Result<Self, FieldsV1Error> {
        match object.pointer("/metadata/managedFields") {
            None | Some(Value::Null) => Ok(Self::default()),
            Some(Value::Array(entries)) => entries
                .iter()
                .map(Entry::from_json)
                .collect::<Result<_, _>>()
                .map(Self),
            Some(other) => Err(FieldsV1Error(format!(
                "managedFields must be a list, got {other}"
            ))),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn to_json(&self) -> Value {
        Value::Array(self.0.iter().map(Entry::to_json).collect())
    }

    /// The fields `writer` last applied (empty when it never applied).
    pub fn applied_by(&self, writer: &Writer<'_>) -> FieldSet {
        self.0
            .iter()
            .find(|entry| entry.is(writer, Operation::Apply))
            .map(|entry| entry.fields.clone())
            .unwrap_or_default()
    }

    /// Everything owned by managers other than `writer`'s apply.
    pub fn owned_by_others(&self, writer: &Writer<'_>) -> FieldSet {
        self.0
            .iter()
            .filter(|entry| !entry.is(writer, Operation::Apply))
            .fold(FieldSet::new(), |all, entry| all.union(&entry.fields))
    }

    /// An apply: `applied` becomes the writer's `Apply` entry. A changed field another manager
    /// owns is a conflict, unless `force` takes it from them; an unchanged one is shared.
    pub fn apply(
        &mut self,
        writer: &Writer<'_>,
        applied: FieldSet,
        comparison: &Comparison,
        force: bool,
    ) -> Result<(), Conflicts> {
        let mut conflicts = Vec::new();
        for entry in self
            .0
            .iter_mut()
            .filter(|entry| !entry.is(writer, Operation::Apply))
        {
            let taken = entry.fields.intersection(&comparison.changed);
            if taken.is_empty() {
                continue;
            }
            if force {
                entry.fields = entry.fields.difference(&taken);
            } else {
                let manager = entry.printed();
                conflicts.extend(taken.paths().into_iter().map(|path| Conflict {
                    manager: manager.clone(),
                    path,
                }));
            }
        }
        if !conflicts.is_empty() {
            conflicts.sort_by(|a, b| (&a.manager, &a.path).cmp(&(&b.manager, &b.path)));
            return Err(Conflicts(conflicts));
        }
        self.forget(&comparison.removed);
        self.set_entry(writer, Operation::Apply, applied);
        self.drop_empty();
        Ok(())
    }

    /// An update (create, PUT, a non-apply patch): the writer's `Update` entry gains what it
    /// changed, which every other manager loses; updates never conflict.
    pub fn update(&mut self, writer: &Writer<'_>, comparison: &Comparison) {
        for entry in self
            .0
            .iter_mut()
            .filter(|entry| !entry.is(writer, Operation::Update))
        {
            entry.fields = entry.fields.difference(&comparison.changed);
        }
        self.forget(&comparison.removed);
        if !comparison.changed.is_empty() {
            let previous = self
                .0
                .iter()
                .find(|entry| entry.is(writer, Operation::Update))
                .map(|entry| entry.fields.clone())
                .unwrap_or_default();
            let fields = previous
                .union(&comparison.changed)
                .difference(&comparison.removed);
            self.set_entry(writer, Operation::Update, fields);
        }
        self.drop_empty();
        self.cap_updates();
    }

    /// A write nobody is named for: fields that are gone are owned by nobody.
    pub fn forget(&mut self, removed: &FieldSet) {
        if removed.is_empty() {
            return;
        }
        for entry in &mut self.0 {
            entry.fields = entry.fields.difference(removed);
        }
        self.drop_empty();
    }

    fn set_entry(&mut self, writer: &Writer<'_>, operation: Operation, fields: FieldSet) {
        let entry = Entry {
            manager: writer.manager.to_string(),
            operation,
            api_version: writer.api_version.to_string(),
            time: Some(writer.time.to_string()),
            subresource: writer.subresource.map(str::to_string),
            fields,
        };
        match self.0.iter_mut().find(|e| e.is(writer, operation)) {
            Some(existing) => *existing = entry,
            None => self.0.push(entry),
        }
    }

    fn drop_empty(&mut self) {
        self.0.retain(|entry| !entry.fields.is_empty());
    }

    /// Keeps at most [`MAX_UPDATE_MANAGERS`] `Update` entries: the oldest are merged into one.
    fn cap_updates(&mut self) {
        loop {
            let updates = self
                .0
                .iter()
                .filter(|e| e.operation == Operation::Update)
                .count();
            if updates <= MAX_UPDATE_MANAGERS {
                return;
            }
            let Some(oldest) = self
                .0
                .iter()
                .enumerate()
                .filter(|(_, e)| e.operation == Operation::Update && e.manager != ANCIENT_CHANGES)
                .min_by(|(_, a), (_, b)| a.time.cmp(&b.time))
                .map(|(index, _)| index)
            else {
                return;
            };
            let old = self.0.remove(oldest);
            match self
                .0
                .iter_mut()
                .find(|e| e.operation == Operation::Update && e.manager == ANCIENT_CHANGES)
            {
                Some(ancient) => ancient.fields = ancient.fields.union(&old.fields),
                None => self.0.push(Entry {
                    manager: ANCIENT_CHANGES.to_string(),
                    subresource: None,
                    ..old
                }),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::walk::{compare, field_set};
    use super::*;

    fn writer<'a>(manager: &'a str) -> Writer<'a> {
        Writer {
            manager,
            api_version: "apps/v1",
            subresource: None,
            time: "2026-01-01T00:00:00Z",
        }
    }

    fn deployment(replicas: i64, image: &str) -> Value {
        json!({"spec": {"replicas": replicas, "template": {"spec": {"containers": [
            {"name": "nginx", "image": image}]}}}})
    }

    #[test]
    fn an_apply_conflicts_with_an_updater_of_a_changed_field_only() {
        let mut managers = Managers::default();
        let created = deployment(3, "nginx:1");
        managers.update(
            &writer("kubectl-client-side-apply"),
            &compare(&json!({}), &created, &[]),
        );
        // The same values: shared, no conflict.
        let same = field_set(&created, &[]);
        managers
            .apply(
                &writer("kubectl"),
                same.clone(),
                &compare(&created, &created, &[]),
                false,
            )
            .expect("no conflict with equal values");
        assert_eq!(managers.0.len(), 2);
        // A different replica count: a conflict naming the updater and its version.
        let scaled = deployment(5, "nginx:1");
        let error = managers
            .clone()
            .apply(
                &writer("b"),
                field_set(&scaled, &[]),
                &compare(&created, &scaled, &[]),
                false,
            )
            .expect_err("conflict");
        assert_eq!(
            error.to_string(),
            "Apply failed with 2 conflicts: conflicts with \"kubectl\":\n- .spec.replicas\nconflicts with \"kubectl-client-side-apply\" using apps/v1:\n- .spec.replicas"
        );
        // Forced: b owns replicas alone.
        managers
            .apply(
                &writer("b"),
                field_set(&scaled, &[]),
                &compare(&created, &scaled, &[]),
                true,
            )
            .expect("forced");
        let replicas = [
            super::super::PathElement::Field("spec".into()),
            super::super::PathElement::Field("replicas".into()),
        ];
        let owners: Vec<&str> = managers
            .0
            .iter()
            .filter(|e| e.fields.contains(&replicas))
            .map(|e| e.manager.as_str())
            .collect();
        assert_eq!(owners, vec!["b"]);
    }

    #[test]
    fn one_conflict_reads_as_upstream() {
        let conflicts = Conflicts(vec![Conflict {
            manager: "\"kubectl-client-side-apply\" using apps/v1".into(),
            path: FieldPath(vec![
                super::super::PathElement::Field("spec".into()),
                super::super::PathElement::Field("replicas".into()),
            ]),
        }]);
        assert_eq!(
            conflicts.to_string(),
            "Apply failed with 1 conflict: conflict with \"kubectl-client-side-apply\" using apps/v1: .spec.replicas"
        );
    }

    #[test]
    fn update_entries_stay_bounded() {
        let mut managers = Managers::default();
        let mut old = json!({});
        for i in 0..25 {
            let time = format!("2026-01-01T00:00:{i:02}Z");
            let manager = format!("m{i}");
            let w = Writer {
                manager: &manager,
                api_version: "v1",
                subresource: None,
                time: &time,
            };
            let mut merged = old.clone();
            merged["data"][format!("k{i}")] = json!("v");
            managers.update(&w, &compare(&old, &merged, &[]));
            old = merged;
        }
        assert!(
            managers.0.len() <= MAX_UPDATE_MANAGERS,
            "{}",
            managers.0.len()
        );
        assert!(managers.0.iter().any(|e| e.manager == ANCIENT_CHANGES));
        // The entries read back as they were written.
        let again = Managers::of(&json!({"metadata": {"managedFields": managers.to_json()}}))
            .expect("round trip");
        assert_eq!(again, managers);
    }
}
