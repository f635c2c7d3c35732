//! The node's integration tests: what it parses from pods never panics it, and the simulated
//! node runs pods against an in-process API server (TestCluster), in milliseconds; the fence
//! watchdog kills a process tree of a fake runtime root.

mod local_path;
mod quantities;
mod routes;
mod simulated;
mod watchdog;

use proptest::test_runner::Config;

/// proptest's defaults (which honour `PROPTEST_CASES`) without regression files.
pub fn config() -> Config {
    Config {
        failure_persistence: None,
        ..Config::default()
    }
}
