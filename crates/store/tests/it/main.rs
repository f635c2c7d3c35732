//! The store's integration tests: one battery run against every backend, the embedded
//! backend's durability (reopen, locking, damage), and a crash test with SIGKILL.

mod backends;
mod battery;
mod crash;
mod embedded;
