//! Kubernetes API machinery for petset, with no I/O: which types are served and where they are
//! stored, their defaults and validation, label and field selectors, the four patch types,
//! server-side printing, and the `Status` errors the API answers with.
//!
//! Objects are handled as JSON values in their wire form (the form they are stored in), so
//! that fields petset does not interpret survive a round trip untouched.

pub mod cron;
pub mod defaults;
pub mod depth;
pub mod disruption;
pub mod error;
pub mod json;
pub mod kinds;
pub mod managed_fields;
pub mod names;
pub mod patch;
pub mod proto;
pub mod quantity;
pub mod resources;
pub mod selector;
pub mod service_account_admission;
pub mod shape;
pub mod table;
pub mod time;
pub mod validate;

pub use error::{ApiError, Cause};
pub use resources::ResourceType;
