//! Property tests of the API machinery: whatever a request carries, names, selectors, patches,
//! defaults and validation answer with a value or an error, never a panic.
//!
//! Case counts stay bounded so the suite stays fast (256 per property, or `PROPTEST_CASES`),
//! and a failure is reported with its shrunk input instead of being written into the tree.

mod json;
mod names;
mod objects;
mod patches;
mod selectors;

use proptest::test_runner::Config;

/// proptest's defaults (which honour `PROPTEST_CASES`) without regression files.
pub fn config() -> Config {
    Config {
        failure_persistence: None,
        ..Config::default()
    }
}
