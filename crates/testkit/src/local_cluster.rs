//! A real `petset cluster up`: a server and N agents on this machine (runc agents each in a
//! network namespace of their own), the helper multi-node end-to-end tests start clusters
//! with. Its log is `DATA_DIR/cluster-up.log`; each node's is where the command says.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

use crate::process::{exit_within, signal_process};
use crate::{Kubectl, wait_until};

/// A running `petset cluster up`; stopped with SIGTERM on drop (which removes every
/// namespace, bridge and mount it made).
pub struct LocalCluster {
    child: Option<Child>,
    data_dir: PathBuf,
    _temp: tempfile::TempDir,
}

impl LocalCluster {
    /// Starts `binary cluster up --nodes N --node-runtime RUNTIME` (plus `extra_args`) on a
    /// fresh data directory and waits (up to 3 minutes) until N nodes are Ready.
    pub fn start(
        binary: &Path,
        nodes: usize,
        runtime: &str,
        extra_args: &[&str],
    ) -> Result<Self, String> {
        Self::start_with_images(binary, nodes, runtime, extra_args, None)
    }

    /// [`LocalCluster::start`] with every node's image store at `image_store` (through
    /// `PETSET_IMAGE_STORE`, which the nodes inherit).
    pub fn start_with_images(
        binary: &Path,
        nodes: usize,
        runtime: &str,
        extra_args: &[&str],
        image_store: Option<&Path>,
    ) -> Result<Self, String> {
        let temp = tempfile::tempdir().map_err(|e| format!("creating a temp dir: {e}"))?;
        let data_dir = temp.path().join("cluster");
        std::fs::create_dir_all(&data_dir).map_err(|e| e.to_string())?;
        let log = std::fs::File::create(data_dir.join("cluster-up.log"))
            .map_err(|e| format!("creating cluster-up.log: {e}"))?;
        let log_err = log.try_clone().map_err(|e| e.to_string())?;
        let mut command = Command::new(binary);
        if let Some(store) = image_store {
            command.env("PETSET_IMAGE_STORE", store);
        }
        let child = command
            .args(["cluster", "up", "--nodes", &nodes.to_string()])
            .args(["--node-runtime", runtime])
            .arg("--data-dir")
            .arg(&data_dir)
            .args(["--api-port", &cluster_ports()?.to_string()])
            .args(extra_args)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            .spawn()
            .map_err(|e| format!("starting {}: {e}", binary.display()))?;
        let mut cluster = Self {
            child: Some(child),
            data_dir,
            _temp: temp,
        };
        let mut exited = false;
        let ready = wait_until(Duration::from_secs(180), || {
            if !cluster.is_running() {
                exited = true;
                return true;
            }
            cluster.kubeconfig().exists() && cluster.ready_nodes() == nodes
        });
        if !ready || exited {
            return Err(format!(
                "petset cluster up did not bring {nodes} nodes up:\n{}",
                cluster.log()
            ));
        }
        Ok(cluster)
    }

    fn ready_nodes(&self) -> usize {
        let out = self.kubectl(&[
            "get",
            "nodes",
            "-o",
            "jsonpath={range .items[*]}{.status.conditions[?(@.type=='Ready')].status}{'\\n'}{end}",
        ]);
        out.stdout.lines().filter(|l| l.trim() == "True").count()
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    pub fn kubeconfig(&self) -> PathBuf {
        self.data_dir.join("kubeconfig")
    }

    /// What `cluster up` itself logged (its nodes log to files of their own).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.data_dir.join("cluster-up.log")).unwrap_or_default()
    }

    /// kubectl against the cluster, with a private HOME.
    pub fn kubectl(&self, args: &[&str]) -> Kubectl {
        self.kubectl_with_input(args, None)
    }

    /// kubectl with `input` on its standard input (`-f -`).
    pub fn kubectl_with_input(&self, args: &[&str], input: Option<&str>) -> Kubectl {
        Kubectl::run(self.kubectl_command(args), input)
    }

    /// A kubectl command against the cluster (to run in the background, e.g. port-forward).
    pub fn kubectl_command(&self, args: &[&str]) -> Command {
        crate::process::kubectl_at(&self.kubeconfig(), &self.data_dir, args)
    }

    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|child| matches!(child.try_wait(), Ok(None)))
    }

    /// Stops the cluster as a user does (SIGTERM) and waits up to 90 s for it to clean up.
    pub fn stop(&mut self) -> Result<ExitStatus, String> {
        self.stop_with("TERM")
    }

    /// Sends `signal` (a name kill(1) knows: `TERM`, `INT`, `KILL`) and waits up to 90 s for
    /// `cluster up` to exit.
    pub fn stop_with(&mut self, signal: &str) -> Result<ExitStatus, String> {
        let Some(child) = &self.child else {
            return Err("the cluster was already stopped".into());
        };
        signal_process(child.id(), signal);
        self.wait_exit()
            .ok_or_else(|| format!("petset cluster up did not stop within 90 s of SIG{signal}"))
    }

    /// Waits up to 90 s for `cluster up` to exit (by itself, or after a signal); kills it
    /// when it does not.
    pub fn wait_exit(&mut self) -> Option<ExitStatus> {
        let mut child = self.child.take()?;
        let status = exit_within(&mut child, Duration::from_secs(90));
        if status.is_none() {
            let _ = child.kill();
            let _ = child.wait();
        }
        status
    }
}

impl Drop for LocalCluster {
    fn drop(&mut self) {
        if self.child.is_some() {
            let _ = self.stop();
        }
    }
}

/// A first API port whose block (`port..port+5` for servers, `port+1000..port+1010` for
/// etcd members) is free: free ports come from the kernel in sequence, so two clusters
/// started at once would otherwise take each other's neighbours.
fn cluster_ports() -> Result<u16, String> {
    use std::net::TcpListener;
    let free = |port: u16| TcpListener::bind(("127.0.0.1", port)).is_ok();
    for _ in 0..64 {
        // Spread over 20000–27990 by a port the kernel just handed out.
        let candidate = 20_000 + (crate::free_port() % 800) * 10;
        let block = (candidate..candidate + 5).chain(candidate + 1000..candidate + 1010);
        if block.clone().all(free) {
            return Ok(candidate);
        }
    }
    Err("no free block of ports for a local cluster".into())
}
