//! A container's keeper: a small process of its own (petset's `container-shim`, as containerd
//! has its shim and CRI-O conmon) that runs `runc run` in the foreground, copies its output into
//! the container's log, and records its exit. It lives in a process group of its own, so the
//! container outlives the process that started it: a node that is killed (-9) or upgraded comes
//! back and takes its running containers over (`crate::pods::Runtime::adopt`) instead of
//! starting them again.
//!
//! **How the end is seen without being the parent.** The starter opens `keeper.lock` in the
//! container's directory, takes an exclusive `flock` on it and hands that open file to the shim
//! as its stdin before it lets go of its own: from then on the lock lives exactly as long as
//! the shim does (the kernel drops it when the shim's last descriptor closes, whatever kills
//! it, so a reused pid never fools anyone). Whoever waits for the container takes a shared lock
//! on the same file (blocking) and then reads `exit`, which the shim writes (atomically) just
//! before it ends. A shim that was killed itself leaves no `exit`: the code is then unknown.
//!
//! Containers with a stdin or a terminal keep their pipes in the node's process (attach writes
//! to them), so they are still run as its children and are not adoptable.

use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};

/// The subcommand of petset's binary that runs a shim (hidden from its help).
pub const SUBCOMMAND: &str = "container-shim";

/// What stays under a kept container's directory.
const LOCK_FILE: &str = "keeper.lock";
const EXIT_FILE: &str = "exit";
/// The log file the container's current run writes to (its path, as text).
const LOG_FILE: &str = "log-path";

/// The files of a container kept by a shim, in its directory.
#[derive(Debug, Clone)]
pub struct Kept {
    dir: PathBuf,
}

impl Kept {
    pub fn in_dir(dir: &Path) -> Self {
        Self {
            dir: dir.to_path_buf(),
        }
    }

    fn lock(&self) -> PathBuf {
        self.dir.join(LOCK_FILE)
    }

    fn exit(&self) -> PathBuf {
        self.dir.join(EXIT_FILE)
    }

    /// The log file of the run the shim keeps, as recorded at its start.
    pub fn log_path(&self) -> Option<PathBuf> {
        let text = fs::read_to_string(self.dir.join(LOG_FILE)).ok()?;
        Some(PathBuf::from(text))
    }

    /// Whether a shim keeps this container now (its lock is held).
    pub fn alive(&self) -> bool {
        let Ok(file) = File::open(self.lock()) else {
            return false;
        };
        file.try_lock_shared().is_err()
    }

    /// Whether a shim ever kept this container (its lock file is there).
    pub fn exists(&self) -> bool {
        self.lock().exists()
    }

    /// Blocks until the shim is gone, then returns the container's exit code (`None`: killed
    /// by a signal runc did not report as a code, or the shim itself died first).
    pub fn wait(&self) -> io::Result<Option<i32>> {
        let file = File::open(self.lock())?;
        file.lock_shared()?;
        Ok(fs::read_to_string(self.exit())
            .ok()
            .and_then(|text| text.trim().parse().ok()))
    }

    /// Starts a shim for `runc` with these arguments, its output to `log`, and returns once it
    /// runs (holding the lock).
    pub fn start(&self, shim: &Path, runc_args: &[String], log: &Path) -> io::Result<()> {
        let _ = fs::remove_file(self.exit());
        fs::write(self.dir.join(LOG_FILE), log.to_string_lossy().as_bytes())?;
        let lock = File::create(self.lock())?;
        lock.lock()?;
        // Detached (`crate::detach`): a signal to the node's process group does not reach the
        // container's keeper, and it holds nothing of the node's but the lock, its stdin.
        let mut command = crate::detach::detached(shim);
        command
            .arg(SUBCOMMAND)
            .arg(log)
            .arg(self.exit())
            .args(runc_args)
            .stdin(Stdio::from(lock))
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        // The child is not waited for by anyone here: it outlives this process by design, and
        // whoever waits for the container waits on the lock. Reaping happens when this process
        // ends (its orphans go to init) or below, by a thread that only collects the status.
        let mut child = command.spawn()?;
        std::thread::spawn(move || {
            let _ = child.wait();
        });
        Ok(())
    }
}

/// The shim's own body: `container-shim LOG EXIT RUNC-ARGS…`, stdin the held lock. Runs
/// `runc` with the rest, copies its stdout and stderr into LOG as records, writes the exit code
/// into EXIT, and ends.
pub fn main(args: &[String]) -> ExitCode {
    let [log, exit, runc_args @ ..] = args else {
        eprintln!("usage: petset {SUBCOMMAND} LOG EXIT RUNC-ARGS...");
        return ExitCode::from(2);
    };
    match keep(Path::new(log), Path::new(exit), runc_args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("petset {SUBCOMMAND}: {error}");
            ExitCode::FAILURE
        }
    }
}

fn keep(log: &Path, exit: &Path, runc_args: &[String]) -> io::Result<()> {
    let output = fs::OpenOptions::new().create(true).append(true).open(log)?;
    let mut child = Command::new("runc")
        .args(runc_args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let copiers = crate::logs::copy_outputs_of(&mut child, output)?;
    let status = child.wait()?;
    for copier in copiers {
        let _ = copier.join();
    }
    let code = status.code().map_or_else(String::new, |c| c.to_string());
    let written = exit.with_extension("tmp");
    fs::write(&written, code)?;
    fs::rename(&written, exit)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_container_without_a_keeper_is_neither_alive_nor_kept() {
        let temp = tempfile::tempdir().expect("temp");
        let kept = Kept::in_dir(temp.path());
        assert!(!kept.exists());
        assert!(!kept.alive());
        assert!(kept.wait().is_err(), "no lock file: nothing to wait for");
    }

    #[test]
    fn the_lock_tells_a_live_keeper_and_the_exit_file_its_code() {
        let temp = tempfile::tempdir().expect("temp");
        let kept = Kept::in_dir(temp.path());
        let held = File::create(kept.lock()).expect("lock");
        held.lock().expect("exclusive");
        assert!(kept.alive());
        fs::write(kept.exit(), "3").expect("exit");
        drop(held);
        assert!(!kept.alive());
        assert_eq!(kept.wait().expect("wait"), Some(3));
        fs::write(kept.exit(), "").expect("exit");
        assert_eq!(kept.wait().expect("wait"), None, "killed by a signal");
    }
}
