//! Server-side printing: the columns `kubectl get` shows for each type, as upstream's printers
//! define them (kubernetes `pkg/printers/internalversion/printers.go`). Each kind's columns and
//! cells are in its catalogue entry (`kinds/`); here are the table machinery and the helpers
//! the printers share.

use jiff::Timestamp;
use serde_json::{Value, json};

use crate::json::text;
use crate::resources::ResourceType;
use crate::time;

/// One column: name, type and priority (1 = only with `-o wide`).
pub struct Column {
    pub name: &'static str,
    pub kind: &'static str,
    pub priority: u8,
    pub description: &'static str,
}

pub const fn col(name: &'static str, kind: &'static str, priority: u8) -> Column {
    Column {
        name,
        kind,
        priority,
        description: "",
    }
}

pub const NAME: Column = Column {
    name: "Name",
    kind: "string",
    priority: 0,
    description: "Name must be unique within a namespace.",
};
pub const AGE: Column = Column {
    name: "Age",
    kind: "string",
    priority: 0,
    description: "CreationTimestamp is a timestamp representing the server time when this object was created.",
};

/// The cells of one row: from the object, its NAME and AGE cells already made, and now.
pub type Cells = fn(object: &Value, name: Value, age: Value, now: Timestamp) -> Vec<Value>;

/// How a kind is printed: its columns and the cells of a row, one per column.
pub struct Printing {
    pub columns: &'static [Column],
    pub cells: Cells,
}

/// NAME and AGE, what upstream prints for a kind without a printer of its own.
pub const NAME_AGE: Printing = Printing {
    columns: &[NAME, AGE],
    cells: |_, name, age, _| vec![name, age],
};

/// The columns of a type.
pub fn columns(resource: &ResourceType) -> &'static [Column] {
    resource.printing.columns
}

/// The column definitions as the Table object carries them.
pub fn column_definitions(resource: &ResourceType) -> Value {
    Value::Array(
        columns(resource)
            .iter()
            .map(|c| {
                json!({
                    "name": c.name,
                    "type": c.kind,
                    "format": if c.name == "Name" { "name" } else { "" },
                    "description": c.description,
                    "priority": c.priority,
                })
            })
            .collect(),
    )
}

/// The cells of one row.
pub fn cells(resource: &ResourceType, object: &Value, now: Timestamp) -> Vec<Value> {
    let name = json!(text(object, "/metadata/name"));
    let age = json!(time::age(
        object
            .pointer("/metadata/creationTimestamp")
            .and_then(Value::as_str),
        now
    ));
    (resource.printing.cells)(object, name, age, now)
}

pub(crate) fn or_none(value: &str) -> String {
    if value.is_empty() {
        "<none>".to_string()
    } else {
        value.to_string()
    }
}

pub(crate) fn unset(value: &str) -> &str {
    if value.is_empty() { "<unset>" } else { value }
}

pub(crate) fn access_modes(modes: &[Value]) -> String {
    let mut short = Vec::new();
    for (long, abbreviation) in [
        ("ReadWriteOnce", "RWO"),
        ("ReadOnlyMany", "ROX"),
        ("ReadWriteMany", "RWX"),
        ("ReadWriteOncePod", "RWOP"),
    ] {
        if modes.iter().any(|m| m.as_str() == Some(long)) {
            short.push(abbreviation);
        }
    }
    short.join(",")
}

pub(crate) fn containers_and_images(containers: &[Value]) -> (String, String) {
    let names: Vec<&str> = containers.iter().map(|c| text(c, "/name")).collect();
    let images: Vec<&str> = containers.iter().map(|c| text(c, "/image")).collect();
    (names.join(","), images.join(","))
}

/// Upstream shows at most three entries and "+ N more...".
pub(crate) fn truncated_list(entries: &[String]) -> String {
    if entries.len() <= 3 {
        entries.join(",")
    } else {
        format!("{} + {} more...", entries[..3].join(","), entries.len() - 3)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_row_has_as_many_cells_as_columns() {
        let now = Timestamp::now();
        for resource in crate::resources::RESOURCES {
            let row = cells(resource, &json!({"metadata": {"name": "x"}}), now);
            assert_eq!(row.len(), columns(resource).len(), "{}", resource.plural);
        }
    }
}
