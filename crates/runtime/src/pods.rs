//! Pods as OCI containers run by `runc`, without Kubernetes types.
//!
//! A pod's sandbox is a set of persistent namespaces the pod's containers join: a network
//! namespace (`ip netns`, named `petset-<id>`) and UTS and IPC namespaces bind-mounted under the
//! pod's directory (made with util-linux's `unshare`, the hostname set once). The sandbox
//! outlives container restarts, as the kubelet's pause container does, and needs no image.
//! On a node with a pod network ([`crate::network`]), the network namespace gets an `eth0` on
//! the node's bridge and an address, which `/etc/hosts` names.
//!
//! Each container gets an overlay root filesystem (its image's root below, a writable layer of
//! its own above) and an OCI bundle whose `config.json` is checked against oci-spec's runtime
//! types. `runc run` stays in the foreground as the container's parent, so its exit status is
//! the container's; the container's stdout and stderr are copied into a log file of
//! timestamped records ([`crate::logs`]). With a shim ([`Runtime::with_shim`]) both happen in
//! a keeper process of the container's own ([`crate::shim`]), so the container outlives the
//! process that started it and a later one takes it over ([`Runtime::adopt`]).
//!
//! Layout under the runtime root: `runc/` (runc's state), `pods/<id>/` with `ns/uts`,
//! `ns/ipc`, `etc/hosts`, `etc/hostname`, `etc/resolv.conf`, `containers/<name>/{upper,work,
//! rootfs,config.json}` and `logs/<name>/<attempt>.log`.

use std::fs;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::{Value, json};

use crate::images::Image;
use crate::network::{Network, NetworkConfig};
use crate::shim::Kept;

#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{command} failed: {detail}")]
    Command { command: String, detail: String },
    #[error("invalid container config: {0}")]
    Config(String),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> RuntimeError + '_ {
    move |source| RuntimeError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Runs a command to completion; its stderr becomes the error.
fn run(program: &str, args: &[&str]) -> Result<String, RuntimeError> {
    let output = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| RuntimeError::Command {
            command: program.to_string(),
            detail: e.to_string(),
        })?;
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    } else {
        Err(RuntimeError::Command {
            command: format!("{program} {}", args.join(" ")),
            detail: String::from_utf8_lossy(&output.stderr).trim().to_string(),
        })
    }
}

/// What a pod's sandbox is made of.
#[derive(Debug, Clone)]
pub struct SandboxConfig {
    /// A short, unique, runc-safe id for the pod (the agent derives it from the pod's uid).
    pub id: String,
    pub hostname: String,
    /// The names of the pod's own address in `/etc/hosts`, tab-separated (the kubelet writes
    /// the FQDN, then the hostname).
    pub host_names: String,
    pub resolv_conf: String,
}

/// `/etc/hosts` as the kubelet writes it; the pod's own line has its address, or 127.0.1.1
/// on a node without a pod network.
fn hosts_file(address: Option<Ipv4Addr>, names: &str) -> String {
    let own = address.map_or_else(|| "127.0.1.1".to_string(), |a| a.to_string());
    format!(
        "# Kubernetes-managed hosts file.\n127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\nfe00::0\tip6-mcastprefix\nfe00::1\tip6-allnodes\nfe00::2\tip6-allrouters\n{own}\t{names}\n"
    )
}

/// A bind mount into a container.
#[derive(Debug, Clone)]
pub struct Mount {
    pub source: PathBuf,
    pub destination: String,
    pub read_only: bool,
}

/// One container to run.
#[derive(Debug, Clone)]
pub struct ContainerConfig {
    pub name: String,
    pub image: Image,
    /// The whole command line (entrypoint and arguments already resolved).
    pub args: Vec<String>,
    /// `NAME=value` pairs.
    pub env: Vec<String>,
    pub cwd: String,
    pub mounts: Vec<Mount>,
    pub memory_limit_bytes: Option<i64>,
    /// CPU limit in millicores.
    pub cpu_limit_millis: Option<i64>,
    /// Whether the container reads a stdin the caller writes to (the child's `stdin` pipe);
    /// otherwise its stdin is empty.
    pub stdin: bool,
    /// Whether the container's process runs on a terminal (`tty: true`, as `kubectl run -it`
    /// asks): stdin then always has a pipe, and stdout carries the terminal's output.
    pub tty: bool,
}

/// A started container: `runc run` in the foreground, under this process or under a shim of
/// its own (`crate::shim`), which outlives this process.
pub struct RunningContainer {
    keeper: Keeper,
    /// The container's stdin, when it was started with one.
    pub stdin: Option<std::process::ChildStdin>,
}

enum Keeper {
    /// `runc run` is this process's child, and its output copiers are threads of it.
    Child {
        child: std::process::Child,
        copiers: Vec<std::thread::JoinHandle<()>>,
    },
    /// A shim keeps the container.
    Shim(Kept),
}

impl RunningContainer {
    /// Waits for the container to exit, and for its last output to be in the log file; returns
    /// its exit code (`None`: ended by a signal, or its keeper died without telling).
    pub fn wait(&mut self) -> std::io::Result<Option<i32>> {
        match &mut self.keeper {
            Keeper::Child { child, copiers } => {
                let status = child.wait()?;
                for copier in copiers.drain(..) {
                    let _ = copier.join();
                }
                Ok(status.code())
            }
            Keeper::Shim(kept) => kept.wait(),
        }
    }
}

pub struct Runtime {
    root: PathBuf,
    network: Option<Network>,
    /// The program whose `container-shim` keeps containers (`crate::shim`); without one, they
    /// are this process's children and end with it.
    shim: Option<PathBuf>,
}

impl Runtime {
    /// The runtime under `root`; fails with a message naming what is missing when this machine
    /// cannot run containers.
    pub fn open(root: impl Into<PathBuf>) -> Result<Self, RuntimeError> {
        let root = root.into();
        for (program, package) in [
            ("runc", "runc"),
            ("ip", "iproute2"),
            ("unshare", "util-linux"),
            ("mount", "mount"),
        ] {
            if run("sh", &["-c", &format!("command -v {program}")]).is_err() {
                return Err(RuntimeError::Command {
                    command: program.to_string(),
                    detail: format!("not found on PATH (Debian package {package})"),
                });
            }
        }
        let pods = root.join("pods");
        fs::create_dir_all(&pods).map_err(io(&pods))?;
        fs::create_dir_all(root.join("runc")).map_err(io(&root))?;
        // Namespace files bind-mounted under a shared mount would propagate (and pin) into
        // other namespaces: the pods directory is a private mount of its own.
        let canonical = fs::canonicalize(&pods).map_err(io(&pods))?;
        let mounts = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        let mounted = mounts
            .lines()
            .any(|l| l.split(' ').nth(4) == Some(&*canonical.to_string_lossy()));
        if !mounted {
            let path = canonical.to_string_lossy().into_owned();
            run("mount", &["--bind", &path, &path])?;
            run("mount", &["--make-private", &path])?;
        }
        Ok(Self {
            root: canonical.parent().map(Path::to_path_buf).unwrap_or(root),
            network: None,
            shim: None,
        })
    }

    /// Puts every sandbox made from now on on this pod network. When the network cannot be
    /// had, `open`'s private mount is undone before the error is returned.
    pub fn with_network(mut self, config: NetworkConfig) -> Result<Self, RuntimeError> {
        match Network::open(config) {
            Ok(network) => {
                self.network = Some(network);
                Ok(self)
            }
            Err(error) => {
                let _ = self.release();
                Err(error)
            }
        }
    }

    /// Keeps every container started from now on (but those with a stdin or a terminal) by a
    /// shim, `program container-shim` (`crate::shim`), so that it outlives this process and a
    /// later one can take it over (`adopt`).
    pub fn with_shim(mut self, program: PathBuf) -> Self {
        self.shim = Some(program);
        self
    }

    pub fn network(&self) -> Option<&Network> {
        self.network.as_ref()
    }

    /// Undoes `open`'s private mount and removes the pod network's bridge when no pod is left
    /// (tests, a node stopping empty); with pods left they stay. `open` makes them again.
    pub fn release(&self) -> Result<(), RuntimeError> {
        let pods = self.root.join("pods");
        if self.pods().is_empty() {
            if is_mount_point(&pods) {
                run("umount", &[&pods.to_string_lossy()])?;
            }
            if let Some(network) = &self.network {
                network.close()?;
            }
        }
        Ok(())
    }

    pub fn pod_dir(&self, id: &str) -> PathBuf {
        self.root.join("pods").join(id)
    }

    fn runc_root(&self) -> String {
        self.root.join("runc").to_string_lossy().into_owned()
    }

    pub fn netns_name(id: &str) -> String {
        format!("petset-{id}")
    }

    fn container_id(pod: &str, name: &str) -> String {
        format!("{pod}-{name}")
    }

    pub fn log_path(&self, pod: &str, name: &str, attempt: u32) -> PathBuf {
        self.pod_dir(pod)
            .join("logs")
            .join(name)
            .join(format!("{attempt}.log"))
    }

    /// Makes the pod's namespaces, network and files, and returns the pod's address (`None`
    /// without a pod network); does nothing to a sandbox that exists.
    pub fn create_sandbox(&self, config: &SandboxConfig) -> Result<Option<Ipv4Addr>, RuntimeError> {
        let dir = self.pod_dir(&config.id);
        let ns = dir.join("ns");
        let etc = dir.join("etc");
        fs::create_dir_all(&ns).map_err(io(&ns))?;
        fs::create_dir_all(&etc).map_err(io(&etc))?;
        let netns = Self::netns_name(&config.id);
        if !Path::new("/run/netns").join(&netns).exists() {
            run("ip", &["netns", "add", &netns])?;
            run("ip", &["-n", &netns, "link", "set", "lo", "up"])?;
        }
        let address = match &self.network {
            Some(network) => Some(network.attach(&config.id, &netns)?),
            None => None,
        };
        for (file, text) in [
            ("hosts", hosts_file(address, &config.host_names)),
            ("hostname", format!("{}\n", config.hostname)),
            ("resolv.conf", config.resolv_conf.clone()),
        ] {
            let path = etc.join(file);
            fs::write(&path, text).map_err(io(&path))?;
        }
        let uts = ns.join("uts");
        if !is_mount_point(&uts) {
            for file in ["uts", "ipc"] {
                let path = ns.join(file);
                fs::write(&path, b"").map_err(io(&path))?;
            }
            let uts_arg = format!("--uts={}", uts.display());
            let ipc_arg = format!("--ipc={}", ns.join("ipc").display());
            run(
                "unshare",
                &[&uts_arg, &ipc_arg, "hostname", &config.hostname],
            )?;
        }
        Ok(address)
    }

    /// Prepares the container's root filesystem and bundle and starts `runc run`, returning once
    /// the container's process runs; the child exits when the container does, with its status.
    /// stdout and stderr go to `log`.
    pub fn start(
        &self,
        pod: &str,
        config: &ContainerConfig,
        log: &Path,
    ) -> Result<RunningContainer, RuntimeError> {
        let id = Self::container_id(pod, &config.name);
        // A container of this name from an earlier attempt goes first.
        self.remove_container(pod, &config.name)?;
        let dir = self.pod_dir(pod).join("containers").join(&config.name);
        let (upper, work, rootfs) = (dir.join("upper"), dir.join("work"), dir.join("rootfs"));
        for path in [&upper, &work, &rootfs] {
            fs::create_dir_all(path).map_err(io(path))?;
        }
        let options = format!(
            "lowerdir={},upperdir={},workdir={}",
            config.image.rootfs.display(),
            upper.display(),
            work.display()
        );
        run(
            "mount",
            &[
                "-t",
                "overlay",
                "overlay",
                "-o",
                &options,
                &rootfs.to_string_lossy(),
            ],
        )?;
        let spec = self.bundle_config(pod, config, &rootfs)?;
        let config_path = dir.join("config.json");
        fs::write(&config_path, spec).map_err(io(&config_path))?;
        if let Some(parent) = log.parent() {
            fs::create_dir_all(parent).map_err(io(parent))?;
        }
        let run_args = [
            "--root".to_string(),
            self.runc_root(),
            "run".into(),
            "--bundle".into(),
            dir.to_string_lossy().into_owned(),
            id.clone(),
        ];
        let (keeper, stdin) = match &self.shim {
            Some(shim) if !config.stdin && !config.tty => {
                let kept = Kept::in_dir(&dir);
                kept.start(shim, &run_args, log)
                    .map_err(|e| RuntimeError::Command {
                        command: format!("{} {}", shim.display(), crate::shim::SUBCOMMAND),
                        detail: e.to_string(),
                    })?;
                (Keeper::Shim(kept), None)
            }
            _ => {
                let (child, copiers) = self.run_as_child(&run_args, config, log)?;
                (Keeper::Child { child, copiers }, None)
            }
        };
        let mut started = RunningContainer { keeper, stdin };
        // Returned once the container's process runs (or already ended), so that "running"
        // is true when the caller says it.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while std::time::Instant::now() < deadline {
            let ended = match &mut started.keeper {
                Keeper::Child { child, .. } => matches!(child.try_wait(), Ok(Some(_))),
                Keeper::Shim(kept) => !kept.alive(),
            };
            if ended
                || matches!(
                    self.status(pod, &config.name).as_deref(),
                    Some("running" | "stopped")
                )
            {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
        if let Keeper::Child { child, .. } = &mut started.keeper {
            started.stdin = child.stdin.take();
        }
        Ok(started)
    }

    /// `runc run` as this process's child, its output copied into `log` by threads of this
    /// process: a container that ends with it (one with a stdin or a terminal, whose pipes the
    /// node keeps, or any without a shim).
    fn run_as_child(
        &self,
        run_args: &[String],
        config: &ContainerConfig,
        log: &Path,
    ) -> Result<(std::process::Child, Vec<std::thread::JoinHandle<()>>), RuntimeError> {
        let output = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .map_err(io(log))?;
        let mut child = runc(run_args, config.tty)
            .stdin(if config.stdin || config.tty {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| RuntimeError::Command {
                command: "runc run".into(),
                detail: e.to_string(),
            })?;
        // The output becomes timestamped records (crate::logs); the copiers end with the
        // container, which ends with this process (its next start removes what is left).
        let copiers = crate::logs::copy_outputs_of(&mut child, output).map_err(io(log))?;
        Ok((child, copiers))
    }

    /// A container of the pod that a shim still keeps (or kept: one that ended since answers
    /// its exit at once), which an earlier run of this process started, with the log file its
    /// run writes to; `None` when there is nothing to take over.
    pub fn adopt(&self, pod: &str, name: &str) -> Option<(RunningContainer, PathBuf)> {
        let dir = self.pod_dir(pod).join("containers").join(name);
        let kept = Kept::in_dir(&dir);
        if !kept.exists() {
            return None;
        }
        let log = kept.log_path()?;
        Some((
            RunningContainer {
                keeper: Keeper::Shim(kept),
                stdin: None,
            },
            log,
        ))
    }

    fn bundle_config(
        &self,
        pod: &str,
        config: &ContainerConfig,
        rootfs: &Path,
    ) -> Result<Vec<u8>, RuntimeError> {
        let pod_dir = self.pod_dir(pod);
        let mut mounts = vec![
            json!({"destination": "/proc", "type": "proc", "source": "proc"}),
            json!({"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
                "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]}),
            json!({"destination": "/dev/pts", "type": "devpts", "source": "devpts",
                "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"]}),
            json!({"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
                "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]}),
            json!({"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
                "options": ["nosuid", "noexec", "nodev"]}),
            json!({"destination": "/sys", "type": "sysfs", "source": "sysfs",
                "options": ["nosuid", "noexec", "nodev", "ro"]}),
        ];
        for file in ["hosts", "hostname", "resolv.conf"] {
            mounts.push(
                json!({"destination": format!("/etc/{file}"), "type": "bind",
                "source": pod_dir.join("etc").join(file), "options": ["rbind", "rw"]}),
            );
        }
        for mount in &config.mounts {
            let mode = if mount.read_only { "ro" } else { "rw" };
            mounts.push(json!({"destination": mount.destination, "type": "bind",
                "source": mount.source, "options": ["rbind", mode]}));
        }
        let mut resources = json!({"devices": [{"allow": false, "access": "rwm"}]});
        if let Some(limit) = config.memory_limit_bytes {
            resources["memory"] = json!({"limit": limit});
        }
        if let Some(millis) = config.cpu_limit_millis {
            resources["cpu"] = json!({"quota": millis * 100, "period": 100_000});
        }
        let capabilities = [
            "CAP_CHOWN",
            "CAP_DAC_OVERRIDE",
            "CAP_FSETID",
            "CAP_FOWNER",
            "CAP_MKNOD",
            "CAP_NET_RAW",
            "CAP_SETGID",
            "CAP_SETUID",
            "CAP_SETFCAP",
            "CAP_SETPCAP",
            "CAP_NET_BIND_SERVICE",
            "CAP_SYS_CHROOT",
            "CAP_KILL",
            "CAP_AUDIT_WRITE",
        ];
        let ns = pod_dir.join("ns");
        let spec = json!({
            "ociVersion": "1.0.2",
            "process": {
                "terminal": config.tty,
                "user": {"uid": 0, "gid": 0},
                "args": config.args,
                "env": config.env,
                "cwd": config.cwd,
                "capabilities": {"bounding": capabilities, "effective": capabilities,
                    "permitted": capabilities},
                "noNewPrivileges": false,
            },
            "root": {"path": rootfs, "readonly": false},
            "mounts": mounts,
            "linux": {
                "namespaces": [
                    {"type": "pid"}, {"type": "mount"},
                    {"type": "network", "path": format!("/run/netns/{}", Self::netns_name(pod))},
                    {"type": "uts", "path": ns.join("uts")},
                    {"type": "ipc", "path": ns.join("ipc")},
                ],
                "cgroupsPath": format!("/petset/{pod}/{}", config.name),
                "resources": resources,
                "maskedPaths": ["/proc/kcore", "/proc/keys", "/proc/timer_list", "/sys/firmware"],
                "readonlyPaths": ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys",
                    "/proc/sysrq-trigger"],
            },
        });
        // oci-spec is the schema: a config it cannot read is ours to fix, not runc's to guess.
        let checked: oci_spec::runtime::Spec =
            serde_json::from_value(spec).map_err(|e| RuntimeError::Config(e.to_string()))?;
        serde_json::to_vec_pretty(&checked).map_err(|e| RuntimeError::Config(e.to_string()))
    }

    /// Sends a signal (`TERM`, `KILL`, …) to the container's main process.
    pub fn signal(&self, pod: &str, name: &str, signal: &str) -> Result<(), RuntimeError> {
        let id = Self::container_id(pod, name);
        run("runc", &["--root", &self.runc_root(), "kill", &id, signal]).map(|_| ())
    }

    /// The container's runc status (`running`, `stopped`, …), or `None` when runc has none.
    pub fn status(&self, pod: &str, name: &str) -> Option<String> {
        let id = Self::container_id(pod, name);
        let state = run("runc", &["--root", &self.runc_root(), "state", &id]).ok()?;
        let state: Value = serde_json::from_str(&state).ok()?;
        state
            .get("status")
            .and_then(Value::as_str)
            .map(str::to_string)
    }

    /// Stops (SIGKILL) and removes a container and its root filesystem.
    pub fn remove_container(&self, pod: &str, name: &str) -> Result<(), RuntimeError> {
        let id = Self::container_id(pod, name);
        let _ = run(
            "runc",
            &["--root", &self.runc_root(), "delete", "--force", &id],
        );
        // Whatever still runs in the container's cgroup (runc's state lost, a process runc
        // no longer knows) is killed too: a container's processes never outlive its removal.
        kill_leftovers(
            &cgroup_dirs(pod)
                .into_iter()
                .map(|d| d.join(name))
                .collect::<Vec<_>>(),
        );
        let dir = self.pod_dir(pod).join("containers").join(name);
        // Its shim ends with runc, writing its exit into the directory: it goes first, so the
        // directory is not removed under its last write (two seconds at most).
        let kept = Kept::in_dir(&dir);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
        while kept.alive() && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        let rootfs = dir.join("rootfs");
        if is_mount_point(&rootfs) {
            run("umount", &["-l", &rootfs.to_string_lossy()])?;
        }
        if dir.exists() {
            fs::remove_dir_all(&dir).map_err(io(&dir))?;
        }
        Ok(())
    }

    /// Removes every container of the pod and its sandbox (namespaces, files, logs).
    pub fn remove_sandbox(&self, pod: &str) -> Result<(), RuntimeError> {
        let dir = self.pod_dir(pod);
        if let Ok(containers) = fs::read_dir(dir.join("containers")) {
            for container in containers.filter_map(Result::ok) {
                self.remove_container(pod, &container.file_name().to_string_lossy())?;
            }
        }
        for file in ["uts", "ipc"] {
            let path = dir.join("ns").join(file);
            if is_mount_point(&path) {
                run("umount", &[&path.to_string_lossy()])?;
            }
        }
        let netns = Self::netns_name(pod);
        if Path::new("/run/netns").join(&netns).exists() {
            run("ip", &["netns", "delete", &netns])?;
        }
        if let Some(network) = &self.network {
            network.release(pod);
        }
        remove_cgroups(pod);
        if dir.exists() {
            fs::remove_dir_all(&dir).map_err(io(&dir))?;
        }
        Ok(())
    }

    /// The ids of the pods that have a directory here (running or not).
    pub fn pods(&self) -> Vec<String> {
        fs::read_dir(self.root.join("pods"))
            .map(|entries| {
                entries
                    .filter_map(Result::ok)
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// A command that runs `args` inside the container (`runc exec`), stdio left to the caller;
    /// with `tty`, on a terminal (see `runc` below).
    pub fn exec_command(&self, pod: &str, name: &str, args: &[String], tty: bool) -> Command {
        let mut exec_args = vec!["--root".to_string(), self.runc_root(), "exec".into()];
        if tty {
            exec_args.push("--tty".into());
        }
        exec_args.push(Self::container_id(pod, name));
        exec_args.extend(args.iter().cloned());
        runc(&exec_args, tty)
    }
}

/// `runc` with these arguments. With `terminal`, runc forwards between the container's
/// terminal and one on its own stdin, which util-linux's `script` provides over the caller's
/// pipes (passing the exit status on); stdout then carries the terminal's output.
fn runc(args: &[String], terminal: bool) -> Command {
    if !terminal {
        let mut command = Command::new("runc");
        command.args(args);
        return command;
    }
    let line: Vec<String> = std::iter::once("runc")
        .chain(args.iter().map(String::as_str))
        .map(shell_quote)
        .collect();
    let mut command = Command::new("script");
    command.args([
        "--quiet",
        "--flush",
        "--return",
        "--command",
        &line.join(" "),
        "/dev/null",
    ]);
    command
}

/// `word` as one word for `sh -c`.
fn shell_quote(word: &str) -> String {
    format!("'{}'", word.replace('\'', "'\\''"))
}

/// The pod's cgroup directories: under every v1 controller, and in the v2 hierarchy.
fn cgroup_dirs(pod: &str) -> Vec<PathBuf> {
    let base = Path::new("/sys/fs/cgroup");
    let mut candidates = vec![base.join("petset").join(pod)];
    if let Ok(controllers) = fs::read_dir(base) {
        for controller in controllers.filter_map(Result::ok) {
            candidates.push(controller.path().join("petset").join(pod));
        }
    }
    candidates
}

/// Sends SIGKILL to every process left in these cgroups, and waits (a second at most) until
/// they are gone.
fn kill_leftovers(cgroups: &[PathBuf]) {
    let members = || -> Vec<String> {
        let mut pids: Vec<String> = cgroups
            .iter()
            .filter_map(|c| fs::read_to_string(c.join("cgroup.procs")).ok())
            .flat_map(|text| text.lines().map(str::to_string).collect::<Vec<_>>())
            .filter(|pid| pid.parse::<u32>().is_ok())
            .collect();
        pids.sort();
        pids.dedup();
        pids
    };
    let left = members();
    if left.is_empty() {
        return;
    }
    let mut args = vec!["-KILL".to_string()];
    args.extend(left);
    let _ = Command::new("kill")
        .args(&args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(1);
    while !members().is_empty() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

/// Kills every process in the pod's cgroups and all their descendants, under every hierarchy
/// (`cgroup.kill` where the kernel has it, cgroup v2 since 5.14; else SIGKILL to each member),
/// and waits (a second a round at most) until they are gone. It needs neither runc's state nor
/// a `Runtime`: the fence watchdog, a process of its own, kills through it what runc may no
/// longer know of.
pub fn kill_pod_cgroups(pod: &str) {
    let mut cgroups = Vec::new();
    let mut pending = cgroup_dirs(pod);
    while let Some(directory) = pending.pop() {
        let Ok(children) = fs::read_dir(&directory) else {
            continue;
        };
        for child in children.filter_map(Result::ok) {
            if child.file_type().is_ok_and(|t| t.is_dir()) {
                pending.push(child.path());
            }
        }
        cgroups.push(directory);
    }
    for cgroup in &cgroups {
        // Only where the kernel made it: `/sys/fs/cgroup` itself may be a plain tmpfs (cgroup
        // v1), where writing would only make a file.
        let kill = cgroup.join("cgroup.kill");
        if kill.exists() {
            let _ = fs::write(&kill, "1");
        }
    }
    // A process that forked between the listing and the kill leaves a child: a few rounds.
    for _ in 0..3 {
        kill_leftovers(&cgroups);
    }
}

/// Removes the pod's (empty) cgroup directories, which runc leaves behind the containers' own:
/// under every v1 controller, and the v2 hierarchy.
fn remove_cgroups(pod: &str) {
    for directory in cgroup_dirs(pod) {
        // rmdir only: a cgroup directory is removed empty, never recursively.
        if let Ok(children) = fs::read_dir(&directory) {
            for child in children.filter_map(Result::ok) {
                if child.file_type().is_ok_and(|t| t.is_dir()) {
                    let _ = fs::remove_dir(child.path());
                }
            }
        }
        let _ = fs::remove_dir(&directory);
    }
}

fn is_mount_point(path: &Path) -> bool {
    let Ok(canonical) = fs::canonicalize(path) else {
        return false;
    };
    fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .any(|l| l.split(' ').nth(4) == Some(&*canonical.to_string_lossy()))
}

#[cfg(test)]
mod tests {
    #[test]
    fn words_are_quoted_for_the_shell() {
        assert_eq!(super::shell_quote("it's $HOME"), "'it'\\''s $HOME'");
        assert_eq!(super::shell_quote(""), "''");
    }
}
