//! A real `petset agent` process that joins a `petset server` started by [`Petset`]: the
//! helper multi-node tests start nodes with. Its log is `DATA_DIR/agent.log`.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

use crate::process::{exit_within, signal_process};
use crate::{Petset, free_port};

/// A running `petset agent`; stopped (SIGTERM, then SIGKILL) on drop.
pub struct Agent {
    child: Option<Child>,
    data_dir: PathBuf,
    _temp: tempfile::TempDir,
}

impl Agent {
    /// Starts `binary agent` joining `server` as node `name` at `node_ip` (a simulated node
    /// unless `extra_args` says otherwise), with the server's own join token unless
    /// `extra_args` gives one; its node API on a free port of `node_ip`.
    pub fn spawn(
        binary: &Path,
        server: &Petset,
        name: &str,
        node_ip: IpAddr,
        extra_args: &[&str],
    ) -> Result<Self, String> {
        let temp = tempfile::tempdir().map_err(|e| format!("creating a temp dir: {e}"))?;
        let data_dir = temp.path().join("node");
        Self::spawn_in(binary, server, name, node_ip, &data_dir, extra_args, temp)
    }

    /// [`Agent::spawn`] on a data directory of the caller's (which may hold an earlier
    /// node's identity).
    pub fn spawn_in(
        binary: &Path,
        server: &Petset,
        name: &str,
        node_ip: IpAddr,
        data_dir: &Path,
        extra_args: &[&str],
        temp: tempfile::TempDir,
    ) -> Result<Self, String> {
        std::fs::create_dir_all(data_dir)
            .map_err(|e| format!("creating {}: {e}", data_dir.display()))?;
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(data_dir.join("agent.log"))
            .map_err(|e| format!("creating agent.log: {e}"))?;
        let log_err = log.try_clone().map_err(|e| e.to_string())?;
        let mut command = Command::new(binary);
        command
            .arg("agent")
            .args(["--server", &format!("https://{}", server.api_addr())])
            .arg("--data-dir")
            .arg(data_dir)
            .args(["--node-name", name])
            .args(["--node-ip", &node_ip.to_string()])
            .args(["--kubelet-port", &free_port().to_string()]);
        if !extra_args
            .iter()
            .any(|a| *a == "--token" || *a == "--token-file")
        {
            command.args(["--token", &server.join_token()?]);
        }
        if !extra_args.contains(&"--node-runtime") {
            command.args(["--node-runtime", "simulated"]);
        }
        let child = command
            .args(extra_args)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            .spawn()
            .map_err(|e| format!("starting {}: {e}", binary.display()))?;
        Ok(Self {
            child: Some(child),
            data_dir: data_dir.to_path_buf(),
            _temp: temp,
        })
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// What the agent has logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.data_dir.join("agent.log")).unwrap_or_default()
    }

    /// Waits (`timeout` at most) for the agent to exit by itself, as it does when its join is
    /// refused.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let status = self
            .child
            .as_mut()
            .and_then(|child| exit_within(child, timeout));
        if status.is_some() {
            self.child = None;
        }
        status
    }

    /// Whether the agent still runs.
    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|child| matches!(child.try_wait(), Ok(None)))
    }

    /// Kills the agent at once (SIGKILL), as a crash would, and reaps it.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Stops the agent the way a user does (SIGTERM), SIGKILL after 30 s.
    pub fn stop(&mut self) -> Option<ExitStatus> {
        let mut child = self.child.take()?;
        signal_process(child.id(), "TERM");
        let mut status = exit_within(&mut child, Duration::from_secs(30));
        if status.is_none() {
            let _ = child.kill();
            status = child.wait().ok();
        }
        status
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        self.stop();
    }
}
