//! The data directory and its lock: one petset per directory, whatever the store.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, anyhow};

const LOCK_FILE: &str = "petset.lock";

/// An open data directory, locked for as long as this value lives.
pub struct DataDir {
    path: PathBuf,
    _lock: File,
}

impl DataDir {
    /// Creates the directory if needed and locks it, or says which process holds it.
    pub fn lock(path: &Path) -> anyhow::Result<Self> {
        std::fs::create_dir_all(path)
            .with_context(|| format!("creating data directory {}", path.display()))?;
        let lock = take_lock(&path.join(LOCK_FILE), |holder| {
            let by = if holder.is_empty() {
                String::new()
            } else {
                format!(" (pid {holder})")
            };
            anyhow!(
                "data directory {} is in use by another petset{by}; stop it or pass another --data-dir",
                path.display()
            )
        })?;
        let path = path
            .canonicalize()
            .with_context(|| format!("resolving {}", path.display()))?;
        Ok(Self { path, _lock: lock })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Locks the file at `lock_path` (creating it) for as long as the returned file is open, and
/// writes this process's id into it; when another process holds it, `in_use` gets that
/// process's id as written (empty when unknown) and says what to do.
pub(crate) fn take_lock(
    lock_path: &Path,
    in_use: impl FnOnce(&str) -> anyhow::Error,
) -> anyhow::Result<File> {
    let mut lock = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(lock_path)
        .with_context(|| format!("opening {}", lock_path.display()))?;
    match lock.try_lock() {
        Ok(()) => {}
        Err(TryLockError::WouldBlock) => {
            let mut holder = String::new();
            let _ = lock.read_to_string(&mut holder);
            return Err(in_use(holder.trim()));
        }
        Err(TryLockError::Error(error)) => {
            return Err(error).with_context(|| format!("locking {}", lock_path.display()));
        }
    }
    lock.set_len(0)
        .and_then(|()| lock.rewind())
        .and_then(|()| writeln!(lock, "{}", std::process::id()))
        .with_context(|| format!("writing {}", lock_path.display()))?;
    Ok(lock)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_locked_directory_is_refused_with_the_holder() {
        let dir = tempfile::tempdir().expect("temp dir");
        let first = DataDir::lock(dir.path()).expect("first lock");
        let Err(error) = DataDir::lock(dir.path()) else {
            panic!("second lock must fail");
        };
        let message = error.to_string();
        assert!(message.contains("in use by another petset"), "{message}");
        assert!(
            message.contains(&format!("pid {}", std::process::id())),
            "{message}"
        );
        drop(first);
        DataDir::lock(dir.path()).expect("lock again after release");
    }
}
