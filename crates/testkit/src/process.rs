//! A real `petset up` process on a free loopback port with its own data directory: the one
//! helper every end-to-end test uses to start and stop petset.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

use crate::{free_port, http_get, wait_until};

/// A running `petset up`; SIGKILLed on drop if not stopped before. Its log is `DATA_DIR/petset.log`.
pub struct Petset {
    child: Option<Child>,
    api: SocketAddr,
    data_dir: PathBuf,
    _temp: Option<tempfile::TempDir>,
}

impl Petset {
    /// Starts `binary up` on a fresh data directory and waits until `/readyz` answers `ok`.
    pub fn start(binary: &Path, extra_args: &[&str]) -> Result<Self, String> {
        let temp = tempfile::tempdir().map_err(|e| format!("creating a temp dir: {e}"))?;
        let data_dir = temp.path().join("data");
        let mut petset = Self::spawn(binary, &data_dir, extra_args)?;
        petset._temp = Some(temp);
        petset.wait_ready()?;
        Ok(petset)
    }

    /// Starts `binary up` on `data_dir` (which may already hold a cluster) without waiting.
    pub fn spawn(binary: &Path, data_dir: &Path, extra_args: &[&str]) -> Result<Self, String> {
        std::fs::create_dir_all(data_dir)
            .map_err(|e| format!("creating {}: {e}", data_dir.display()))?;
        let api: SocketAddr = ([127, 0, 0, 1], free_port()).into();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(data_dir.join("petset.log"))
            .map_err(|e| format!("creating petset.log: {e}"))?;
        let log_err = log.try_clone().map_err(|e| e.to_string())?;
        let child = Command::new(binary)
            .arg("up")
            .arg("--data-dir")
            .arg(data_dir)
            .args(["--api-listen", &api.to_string()])
            .args(extra_args)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            .spawn()
            .map_err(|e| format!("starting {}: {e}", binary.display()))?;
        Ok(Self {
            child: Some(child),
            api,
            data_dir: data_dir.to_path_buf(),
            _temp: None,
        })
    }

    /// Waits (60 s at most) until `/readyz` answers `ok`; fails early if the process exits.
    pub fn wait_ready(&mut self) -> Result<(), String> {
        let api = self.api;
        let mut exited = None;
        let ready = wait_until(Duration::from_secs(60), || {
            if let Some(child) = &mut self.child
                && let Ok(Some(status)) = child.try_wait()
            {
                exited = Some(status);
                return true;
            }
            matches!(http_get(api, "/readyz"), Ok((200, body)) if body == "ok")
        });
        match (ready, exited) {
            (true, None) => Ok(()),
            (_, Some(status)) => Err(format!("petset exited with {status}:\n{}", self.log())),
            (false, None) => Err(format!("petset did not become ready:\n{}", self.log())),
        }
    }

    pub fn api_addr(&self) -> SocketAddr {
        self.api
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// What petset has logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.data_dir.join("petset.log")).unwrap_or_default()
    }

    /// Sends `signal` (a name kill(1) knows: `TERM`, `INT`, `KILL`) and waits (30 s at most)
    /// for the process to exit.
    pub fn stop_with(&mut self, signal: &str) -> Result<ExitStatus, String> {
        let Some(mut child) = self.child.take() else {
            return Err("petset was already stopped".into());
        };
        signal_process(child.id(), signal);
        let mut status = None;
        wait_until(Duration::from_secs(30), || {
            status = child.try_wait().ok().flatten();
            status.is_some()
        });
        match status {
            Some(status) => Ok(status),
            None => {
                let _ = child.kill();
                let _ = child.wait();
                Err(format!(
                    "petset did not exit within 30 s of signal {signal}"
                ))
            }
        }
    }

    /// Stops petset the way a user does (SIGTERM) and waits for it.
    pub fn stop(&mut self) -> Result<ExitStatus, String> {
        self.stop_with("TERM")
    }

    /// Waits (30 s at most) for petset to exit by itself.
    pub fn wait_exit(&mut self) -> Option<ExitStatus> {
        let mut status = None;
        if let Some(child) = &mut self.child {
            wait_until(Duration::from_secs(30), || {
                status = child.try_wait().ok().flatten();
                status.is_some()
            });
        }
        if status.is_some() {
            self.child = None;
        }
        status
    }
}

/// Signals our own child through kill(1), which keeps this crate free of `unsafe`.
fn signal_process(pid: u32, signal: &str) {
    let _ = Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(pid.to_string())
        .status();
}

impl Drop for Petset {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
