//! The implementations of `crate::runtime::PodRuntime`.

pub mod runc;
pub mod simulated;
