//! Child processes of a benchmark (servers, agents, etcd), stopped when dropped.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context;

/// A child process stopped (SIGTERM, then SIGKILL) when dropped.
pub(super) struct Process(pub(super) Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.0.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if matches!(self.0.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub(super) fn spawn(binary: &Path, args: &[String], log: &Path) -> anyhow::Result<Process> {
    spawn_with_env(binary, args, log, &[])
}

/// `spawn` with these environment variables set for the child.
pub(super) fn spawn_with_env(
    binary: &Path,
    args: &[String],
    log: &Path,
    env: &[(&str, std::path::PathBuf)],
) -> anyhow::Result<Process> {
    let out = std::fs::File::create(log).with_context(|| format!("creating {}", log.display()))?;
    let err = out.try_clone()?;
    let mut command = Command::new(binary);
    for (key, value) in env {
        command.env(key, value);
    }
    command
        .args(args)
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .map(Process)
        .with_context(|| format!("starting {}", binary.display()))
}
