//! Server-side apply's field ownership, as upstream's structured-merge-diff: field sets and
//! their `FieldsV1` form (`set.rs`), the fields of an applied configuration and the diff of two
//! versions of an object (`walk.rs`), and the `managedFields` entries an apply or an update
//! leaves, with upstream's conflicts (`managers.rs`). Pure: the registry decides when.

mod managers;
mod set;
mod walk;

pub use managers::{
    ANCIENT_CHANGES, Conflict, Conflicts, Entry, MAX_UPDATE_MANAGERS, Managers, Operation, Writer,
};
pub use set::{FieldPath, FieldSet, FieldsV1Error, PathElement, canonical};
pub use walk::{Comparison, compare, field_set, lookup, prune};
