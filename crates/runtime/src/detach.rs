//! Processes that outlive the node's own (a container's shim, the fence watchdog): started in a
//! process group of their own, so that a signal to the node's group (a terminal's Ctrl-C, a
//! supervisor's stop) does not reach them, and holding no descriptor of the node's but their
//! stdio.
//!
//! What petset opens itself is close-on-exec (Rust opens everything so), but descriptors it
//! inherited without that flag (a job server's pipe, a test harness's) would pass on to such a
//! process and stay open for its whole life, past the node's, keeping a pipe's reader waiting.
//! Rust can close them only with `unsafe`, which the workspace forbids, so bash (essential on
//! Debian) closes every descriptor above stderr and then execs the program in the same process.

use std::path::Path;
use std::process::Command;

const CLOSE_INHERITED_THEN_EXEC: &str = r#"for fd in /proc/$$/fd/*; do n=${fd##*/}; if [ "$n" -gt 2 ]; then eval "exec $n>&-"; fi; done; exec "$0" "$@""#;

/// `program`, to be given its arguments and stdio by the caller, started detached as above.
pub fn detached(program: &Path) -> Command {
    let mut command = Command::new("bash");
    command.args(["-c", CLOSE_INHERITED_THEN_EXEC]).arg(program);
    std::os::unix::process::CommandExt::process_group(&mut command, 0);
    command
}
