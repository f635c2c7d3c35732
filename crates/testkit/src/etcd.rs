//! A real, single-member etcd (Debian's `etcd-server`) on loopback ports in a temporary directory.

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::{free_port, http_get, on_path, wait_until};

/// A running etcd; killed and its data removed on drop.
pub struct Etcd {
    child: Child,
    client: SocketAddr,
    dir: tempfile::TempDir,
}

impl Etcd {
    /// Starts etcd, or says why it cannot (no `etcd` on `PATH`, or it did not come up).
    pub fn start() -> Result<Self, String> {
        if !on_path("etcd") {
            return Err("etcd is not installed (apt-get install etcd-server)".into());
        }
        let mut last_error = String::new();
        // Ports are picked before etcd binds them; another test may take one in between.
        for _ in 0..3 {
            match Self::try_start() {
                Ok(etcd) => return Ok(etcd),
                Err(error) => last_error = error,
            }
        }
        Err(last_error)
    }

    fn try_start() -> Result<Self, String> {
        let dir = tempfile::tempdir().map_err(|e| format!("creating a temp dir: {e}"))?;
        let client: SocketAddr = ([127, 0, 0, 1], free_port()).into();
        let peer = format!("http://127.0.0.1:{}", free_port());
        let log = std::fs::File::create(dir.path().join("etcd.log"))
            .map_err(|e| format!("creating etcd.log: {e}"))?;
        let log_err = log.try_clone().map_err(|e| e.to_string())?;
        let child = Command::new("etcd")
            .args(["--name", "test", "--data-dir"])
            .arg(dir.path().join("data"))
            .args(["--listen-client-urls", &format!("http://{client}")])
            .args(["--advertise-client-urls", &format!("http://{client}")])
            .args(["--listen-peer-urls", &peer])
            .args(["--initial-advertise-peer-urls", &peer])
            .args(["--initial-cluster", &format!("test={peer}")])
            .args(["--logger", "zap", "--log-level", "warn"])
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            .spawn()
            .map_err(|e| format!("starting etcd: {e}"))?;
        let mut etcd = Self { child, client, dir };
        let healthy = wait_until(
            Duration::from_secs(20),
            || matches!(http_get(client, "/health"), Ok((200, body)) if body.contains("true")),
        );
        if !healthy {
            let log = std::fs::read_to_string(etcd.dir.path().join("etcd.log")).unwrap_or_default();
            let _ = etcd.child.kill();
            return Err(format!("etcd did not become healthy:\n{log}"));
        }
        Ok(etcd)
    }

    /// The client endpoint, `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.client)
    }

    /// The `--store` value for petset: `etcd://127.0.0.1:PORT`.
    pub fn store_spec(&self) -> String {
        format!("etcd://{}", self.client)
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
