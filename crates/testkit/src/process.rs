//! A real `petset up` process on a free loopback port with its own data directory: the one
//! helper every end-to-end test uses to start and stop petset.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

use crate::{free_port, https_get, wait_until};

/// A running `petset up`; SIGKILLed on drop if not stopped before. Its log is `DATA_DIR/petset.log`.
pub struct Petset {
    /// `up`, or `server` for a control plane that agents join.
    role: &'static str,
    child: Option<Child>,
    api: SocketAddr,
    data_dir: PathBuf,
    binary: PathBuf,
    args: Vec<String>,
    _temp: Option<tempfile::TempDir>,
    /// The test network this petset's runc node uses (its bridge's name), and the lock held
    /// while this petset may use it, so no other test takes it.
    network: Option<(String, std::fs::File)>,
}

impl Petset {
    /// Starts `binary up` on a fresh data directory and waits until `/readyz` answers `ok`.
    pub fn start(binary: &Path, extra_args: &[&str]) -> Result<Self, String> {
        Self::start_as("up", binary, extra_args)
    }

    /// Starts `binary server` (no node of its own; agents join it with the token in
    /// `DATA_DIR/node-token`) on a fresh data directory and waits until it is ready.
    pub fn start_server(binary: &Path, extra_args: &[&str]) -> Result<Self, String> {
        Self::start_as("server", binary, extra_args)
    }

    /// Starts another `binary server` of `first`'s cluster: its data directory starts with
    /// `first`'s CA, admin token and service-account key (`pki/ca.crt`, `pki/ca.key`, `pki/admin.token`, `pki/sa.key`), as the
    /// README says to copy them, so that one kubeconfig and one join token serve both.
    pub fn start_server_sharing_pki(
        binary: &Path,
        first: &Petset,
        extra_args: &[&str],
    ) -> Result<Self, String> {
        let temp = tempfile::tempdir().map_err(|e| format!("creating a temp dir: {e}"))?;
        let data_dir = temp.path().join("data");
        let pki = data_dir.join("pki");
        std::fs::create_dir_all(&pki).map_err(|e| format!("creating {}: {e}", pki.display()))?;
        // As petset_apiserver::tls::SHARED_PKI_FILES (this crate does not depend on it).
        for file in ["ca.crt", "ca.key", "admin.token", "sa.key"] {
            let from = first.data_dir.join("pki").join(file);
            std::fs::copy(&from, pki.join(file))
                .map_err(|e| format!("copying {}: {e}", from.display()))?;
        }
        let mut petset = Self::spawn_as("server", binary, &data_dir, extra_args)?;
        petset._temp = Some(temp);
        petset.wait_ready()?;
        Ok(petset)
    }

    fn start_as(role: &'static str, binary: &Path, extra_args: &[&str]) -> Result<Self, String> {
        let temp = tempfile::tempdir().map_err(|e| format!("creating a temp dir: {e}"))?;
        let data_dir = temp.path().join("data");
        let mut petset = Self::spawn_as(role, binary, &data_dir, extra_args)?;
        petset._temp = Some(temp);
        petset.wait_ready()?;
        Ok(petset)
    }

    /// The join token a `server` wrote for agents.
    pub fn join_token(&self) -> Result<String, String> {
        std::fs::read_to_string(self.data_dir.join("node-token"))
            .map(|token| token.trim().to_string())
            .map_err(|e| format!("reading the server's node-token: {e}"))
    }

    /// Starts `binary up` on `data_dir` (which may already hold a cluster) without waiting.
    pub fn spawn(binary: &Path, data_dir: &Path, extra_args: &[&str]) -> Result<Self, String> {
        Self::spawn_as("up", binary, data_dir, extra_args)
    }

    fn spawn_as(
        role: &'static str,
        binary: &Path,
        data_dir: &Path,
        extra_args: &[&str],
    ) -> Result<Self, String> {
        let api: SocketAddr = ([127, 0, 0, 1], free_port()).into();
        let mut args: Vec<String> = extra_args.iter().map(|a| a.to_string()).collect();
        // Tests run side by side, in threads or (with nextest) in processes: each runc node
        // gets a bridge, a pod /24 and a service /24 of its own, kept across restarts and
        // reserved by a lock file for as long as this `Petset` lives.
        let runc = args
            .windows(2)
            .any(|w| w[0] == "--node-runtime" && w[1] == "runc");
        let mut network = None;
        if runc && !args.iter().any(|a| a == "--bridge") {
            let (n, lock) = reserve_network()?;
            network = Some((format!("pst-e2e-{n}"), lock));
            args.extend([
                "--bridge".to_string(),
                format!("pst-e2e-{n}"),
                "--pod-cidr".to_string(),
                format!("10.244.{n}.0/24"),
                "--service-cidr".to_string(),
                format!("10.96.{n}.0/24"),
            ]);
        }
        let child = Self::launch(role, binary, data_dir, api, &args)?;
        Ok(Self {
            role,
            child: Some(child),
            api,
            data_dir: data_dir.to_path_buf(),
            binary: binary.to_path_buf(),
            args,
            _temp: None,
            network,
        })
    }

    /// Stops petset (SIGTERM) and starts it again on the same data directory and address, as a
    /// user restarting it would; waits until it is ready.
    pub fn restart(&mut self) -> Result<(), String> {
        if self.child.is_some() {
            self.stop()?;
        }
        self.child = Some(Self::launch(
            self.role,
            &self.binary,
            &self.data_dir,
            self.api,
            &self.args,
        )?);
        self.wait_ready()
    }

    fn launch(
        role: &str,
        binary: &Path,
        data_dir: &Path,
        api: SocketAddr,
        extra_args: &[String],
    ) -> Result<Child, String> {
        std::fs::create_dir_all(data_dir)
            .map_err(|e| format!("creating {}: {e}", data_dir.display()))?;
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(data_dir.join("petset.log"))
            .map_err(|e| format!("creating petset.log: {e}"))?;
        let log_err = log.try_clone().map_err(|e| e.to_string())?;
        // Tests that name no node get none: as root, `up` would otherwise run real containers.
        let no_node: &[&str] = if role != "up" || extra_args.iter().any(|a| a == "--node-runtime") {
            &[]
        } else {
            &["--node-runtime", "none"]
        };
        Command::new(binary)
            .arg(role)
            .arg("--data-dir")
            .arg(data_dir)
            .args(["--api-listen", &api.to_string()])
            .args(extra_args)
            .args(no_node)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            .spawn()
            .map_err(|e| format!("starting {}: {e}", binary.display()))
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
            matches!(https_get(api, "/readyz"), Ok((200, body)) if body == "ok")
        });
        match (ready, exited) {
            (true, None) => Ok(()),
            (_, Some(status)) => Err(format!("petset exited with {status}:\n{}", self.log())),
            (false, None) => Err(format!("petset did not become ready:\n{}", self.log())),
        }
    }

    /// The bridge of a runc node's pod network.
    pub fn bridge(&self) -> Option<String> {
        self.args
            .windows(2)
            .find(|w| w[0] == "--bridge")
            .map(|w| w[1].clone())
    }

    /// Where the cluster DNS of a runc node answers: port 53 on its bridge.
    pub fn dns_address(&self) -> Option<std::net::Ipv4Addr> {
        let cidr = self
            .args
            .windows(2)
            .find(|w| w[0] == "--pod-cidr")
            .map(|w| w[1].clone())?;
        let network: std::net::Ipv4Addr = cidr.split('/').next()?.parse().ok()?;
        Some(std::net::Ipv4Addr::from(u32::from(network) + 1))
    }

    /// The process id of the running petset.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The resident memory of the running petset (`VmRSS` in `/proc/<pid>/status`), in bytes.
    pub fn rss_bytes(&self) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()?)).ok()?;
        let kilobytes = status
            .lines()
            .find_map(|line| line.strip_prefix("VmRSS:"))?
            .trim()
            .strip_suffix("kB")?
            .trim()
            .parse::<u64>()
            .ok()?;
        Some(kilobytes * 1024)
    }

    pub fn api_addr(&self) -> SocketAddr {
        self.api
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// The kubeconfig petset wrote for its admin user.
    pub fn kubeconfig(&self) -> PathBuf {
        self.data_dir.join("kubeconfig")
    }

    /// Runs the real kubectl against this petset, with a private HOME so that its caches never
    /// mix with other runs.
    pub fn kubectl(&self, args: &[&str]) -> Kubectl {
        self.kubectl_with_input(args, None)
    }

    /// Runs kubectl with `input` on its standard input (`-f -`).
    pub fn kubectl_with_input(&self, args: &[&str], input: Option<&str>) -> Kubectl {
        Kubectl::run(self.kubectl_command(args), input)
    }

    /// Runs kubectl on a terminal (util-linux's `script` gives it one), so `-it` asks the
    /// server for a TTY as it does for a user; `input` is typed into that terminal. The
    /// terminal's output comes back as stdout.
    pub fn kubectl_on_terminal(&self, args: &[&str], input: &str) -> Kubectl {
        let kubectl = self.kubectl_command(args);
        let line = std::iter::once(kubectl.get_program())
            .chain(kubectl.get_args())
            .map(|w| format!("'{}'", w.to_string_lossy().replace('\'', "'\\''")))
            .collect::<Vec<_>>()
            .join(" ");
        let mut on_terminal = Command::new("script");
        on_terminal
            .args(["--quiet", "--return", "--command", &line, "/dev/null"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (key, value) in kubectl.get_envs() {
            if let Some(value) = value {
                on_terminal.env(key, value);
            }
        }
        let child = on_terminal.spawn().and_then(|mut child| {
            if let Some(mut stdin) = child.stdin.take() {
                use std::io::Write;
                let _ = stdin.write_all(input.as_bytes());
            }
            child.wait_with_output()
        });
        match child {
            Ok(output) => Kubectl {
                success: output.status.success(),
                stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
                stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
            },
            Err(error) => Kubectl {
                success: false,
                stdout: String::new(),
                stderr: format!("running kubectl on a terminal: {error}"),
            },
        }
    }

    /// A kubectl command line for this petset, to run in the background (`get -w`).
    pub fn kubectl_command(&self, args: &[&str]) -> Command {
        kubectl_at(&self.kubeconfig(), &self.data_dir, args)
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
        match exit_within(&mut child, Duration::from_secs(30)) {
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
        let status = self
            .child
            .as_mut()
            .and_then(|child| exit_within(child, Duration::from_secs(30)));
        if status.is_some() {
            self.child = None;
        }
        status
    }
}

/// Waits up to `timeout` for `child` to exit; its status, or `None` while it still runs.
pub(crate) fn exit_within(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let mut status = None;
    wait_until(timeout, || {
        status = child.try_wait().ok().flatten();
        status.is_some()
    });
    status
}

/// kubectl with `args` against `kubeconfig`, its HOME a directory of its own under `dir`.
pub(crate) fn kubectl_at(kubeconfig: &Path, dir: &Path, args: &[&str]) -> Command {
    let home = dir.join("kubectl-home");
    let _ = std::fs::create_dir_all(&home);
    let mut command = Command::new(KUBECTL);
    command
        .args(args)
        .env("KUBECONFIG", kubeconfig)
        .env("HOME", &home);
    command
}

/// The kubectl every test drives: the machine's, through its version dispatcher.
pub const KUBECTL: &str = "/usr/bin/kubectl";

/// What a kubectl run printed.
#[derive(Debug, Clone)]
pub struct Kubectl {
    pub success: bool,
    pub stdout: String,
    pub stderr: String,
}

impl Kubectl {
    /// Runs `command` (a kubectl command line) to its end, with `input` on its standard input.
    pub fn run(mut command: Command, input: Option<&str>) -> Self {
        use std::io::Write;
        command
            .stdin(if input.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = match command.spawn() {
            Ok(child) => child,
            Err(error) => {
                return Self {
                    success: false,
                    stdout: String::new(),
                    stderr: format!("starting {KUBECTL}: {error}"),
                };
            }
        };
        if let (Some(text), Some(mut stdin)) = (input, child.stdin.take()) {
            let _ = stdin.write_all(text.as_bytes());
        }
        match child.wait_with_output() {
            Ok(output) => Self {
                success: output.status.success(),
                stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
                stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
            },
            Err(error) => Self {
                success: false,
                stdout: String::new(),
                stderr: format!("waiting for kubectl: {error}"),
            },
        }
    }

    /// The stdout of a run that must have succeeded.
    #[track_caller]
    pub fn ok(&self) -> &str {
        assert!(
            self.success,
            "kubectl failed:\n{}{}",
            self.stdout, self.stderr
        );
        &self.stdout
    }

    /// The stderr of a run that must have failed.
    #[track_caller]
    pub fn err(&self) -> &str {
        assert!(
            !self.success,
            "kubectl should have failed:\n{}",
            self.stdout
        );
        &self.stderr
    }
}

/// Signals our own child through kill(1), which keeps this crate free of `unsafe`.
pub(crate) fn signal_process(pid: u32, signal: &str) {
    let _ = Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(pid.to_string())
        .status();
}

/// A network number (100–249) no other test holds, and the lock that holds it.
fn reserve_network() -> Result<(u32, std::fs::File), String> {
    let dir = Path::new("/run/petset/testkit");
    std::fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    let start = std::process::id();
    for step in 0..150 {
        let n = 100 + (start + step) % 150;
        let path = dir.join(format!("network-{n}.lock"));
        let file = std::fs::File::create(&path)
            .map_err(|e| format!("creating {}: {e}", path.display()))?;
        if file.try_lock().is_ok()
            && !Path::new("/sys/class/net")
                .join(format!("pst-e2e-{n}"))
                .exists()
        {
            return Ok((n, file));
        }
    }
    Err("no free test network among 10.244.100.0/24–10.244.249.0/24".into())
}

impl Drop for Petset {
    /// A test that fails midway still stops petset cleanly (SIGTERM: its node removes every
    /// container, mount, namespace and bridge it made), and kills it only when that hangs.
    /// A petset that was killed (by the test, or because its stop hung) cannot remove its
    /// bridge, so the test does, and says so: everything a test starts, it stops.
    fn drop(&mut self) {
        if self.child.is_some() {
            let _ = self.stop_with("TERM");
        }
        if let Some((bridge, _lock)) = &self.network {
            remove_leftover_bridge(bridge);
        }
    }
}

/// Deletes a test bridge (and the node's address records for it) that a killed petset left.
fn remove_leftover_bridge(bridge: &str) {
    if !Path::new("/sys/class/net").join(bridge).exists() {
        return;
    }
    eprintln!("petset left its bridge {bridge} (it was killed); removing it");
    let _ = std::process::Command::new("ip")
        .args(["link", "del", bridge])
        .status();
    let records = Path::new("/run/petset/networks").join(bridge);
    let _ = std::fs::remove_dir_all(&records);
    let _ = std::fs::remove_file(records.with_extension("lock"));
}
