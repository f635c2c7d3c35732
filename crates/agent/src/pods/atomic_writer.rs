//! A volume's files replaced all at once, as the kubelet's AtomicWriter does, so a container
//! never reads half a token or a mix of two versions of a ConfigMap:
//!
//! ```text
//! DIR/..2026_12_01_21_20_23.412345678/token   the files of one version
//! DIR/..data -> ..2026_12_01_21_20_23.412345678
//! DIR/token  -> ..data/token                  what the container opens
//! ```
//!
//! A new version is written into a fresh timestamped directory, then `..data` is switched to
//! it by renaming a new link over the old one (a rename is atomic), then the visible links are
//! made for new top-level names and removed for names that went, and the old directory goes.
//! The volume's directory itself is never replaced: a container taken over after a restart of
//! the node has it bind-mounted, and sees new files only in the same directory. Links are
//! relative, so they resolve inside the container's mount as well as on the node.

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// The link to the current version's directory.
const DATA_LINK: &str = "..data";
/// The new link, renamed over [`DATA_LINK`].
const NEW_DATA_LINK: &str = "..data_tmp";

/// One file of a volume: its content and its permission bits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct File {
    pub(crate) content: Vec<u8>,
    pub(crate) mode: u32,
}

/// Why a volume's files could not be written.
#[derive(Debug, thiserror::Error)]
pub(crate) enum WriteError {
    #[error("invalid path {0:?}: a volume's paths are relative and never name `..`")]
    InvalidPath(String),
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
}

fn io_error(path: &Path) -> impl FnOnce(io::Error) -> WriteError + '_ {
    move |source| WriteError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// A path a payload may use: relative, no empty, `.` or `..` component, not starting with `..`
/// (the writer's own names).
fn valid(path: &str) -> bool {
    !path.is_empty()
        && !path.starts_with("..")
        && path
            .split('/')
            .all(|component| !component.is_empty() && component != "." && component != "..")
}

/// The first component of a payload path: what gets a visible link.
fn top_level(path: &str) -> &str {
    path.split('/').next().unwrap_or(path)
}

/// Replaces the files under `dir` with `payload` (paths relative to `dir`), atomically for a
/// reader that opens them through the visible links. A payload equal to the current one
/// changes nothing.
pub(crate) fn write(dir: &Path, payload: &BTreeMap<String, File>) -> Result<(), WriteError> {
    if let Some(bad) = payload.keys().find(|path| !valid(path)) {
        return Err(WriteError::InvalidPath(bad.clone()));
    }
    std::fs::create_dir_all(dir).map_err(io_error(dir))?;
    let data_link = dir.join(DATA_LINK);
    let old_version = std::fs::read_link(&data_link).ok();
    if let Some(old) = &old_version
        && matches(&dir.join(old), payload)
    {
        return Ok(());
    }
    let version = new_version_dir(dir)?;
    for (path, file) in payload {
        let target = version.join(path);
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent).map_err(io_error(parent))?;
        }
        std::fs::write(&target, &file.content).map_err(io_error(&target))?;
        std::fs::set_permissions(&target, std::fs::Permissions::from_mode(file.mode))
            .map_err(io_error(&target))?;
    }
    let new_link = dir.join(NEW_DATA_LINK);
    let _ = std::fs::remove_file(&new_link);
    let version_name = version
        .file_name()
        .map(PathBuf::from)
        .unwrap_or_else(|| version.clone());
    std::os::unix::fs::symlink(&version_name, &new_link).map_err(io_error(&new_link))?;
    std::fs::rename(&new_link, &data_link).map_err(io_error(&data_link))?;

    let wanted: BTreeSet<&str> = payload.keys().map(|path| top_level(path)).collect();
    for name in &wanted {
        let visible = dir.join(name);
        let link_target = Path::new(DATA_LINK).join(name);
        match std::fs::symlink_metadata(&visible) {
            Ok(meta) if meta.file_type().is_symlink() => {
                if std::fs::read_link(&visible).ok().as_deref() == Some(link_target.as_path()) {
                    continue;
                }
                std::fs::remove_file(&visible).map_err(io_error(&visible))?;
            }
            // A plain file or directory an older petset wrote before it wrote versions.
            Ok(meta) if meta.is_dir() => {
                std::fs::remove_dir_all(&visible).map_err(io_error(&visible))?;
            }
            Ok(_) => std::fs::remove_file(&visible).map_err(io_error(&visible))?,
            Err(_) => {}
        }
        std::os::unix::fs::symlink(&link_target, &visible).map_err(io_error(&visible))?;
    }
    // Names that went, and versions other than the current one.
    for entry in std::fs::read_dir(dir).map_err(io_error(dir))?.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let path = entry.path();
        let stale = if name.starts_with("..") {
            name != DATA_LINK && Some(Path::new(&name)) != version.file_name().map(Path::new)
        } else {
            !wanted.contains(name.as_str())
        };
        if stale {
            let _ = if entry.file_type().is_ok_and(|t| t.is_dir()) {
                std::fs::remove_dir_all(&path)
            } else {
                std::fs::remove_file(&path)
            };
        }
    }
    Ok(())
}

/// Whether the version directory `version` holds exactly `payload`.
fn matches(version: &Path, payload: &BTreeMap<String, File>) -> bool {
    let mut found = BTreeMap::new();
    if collect(version, "", &mut found).is_err() {
        return false;
    }
    found == *payload
}

fn collect(dir: &Path, prefix: &str, into: &mut BTreeMap<String, File>) -> io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = format!("{prefix}{}", entry.file_name().to_string_lossy());
        let path = entry.path();
        if entry.file_type()?.is_dir() {
            collect(&path, &format!("{name}/"), into)?;
        } else {
            let mode = entry.metadata()?.permissions().mode() & 0o7777;
            into.insert(
                name,
                File {
                    content: std::fs::read(&path)?,
                    mode,
                },
            );
        }
    }
    Ok(())
}

/// A fresh directory for one version, named by the time it was written.
fn new_version_dir(dir: &Path) -> Result<PathBuf, WriteError> {
    let now = jiff::Timestamp::now();
    let stamp = now.strftime("..%Y_%m_%d_%H_%M_%S").to_string();
    for attempt in 0u32.. {
        let candidate = dir.join(format!("{stamp}.{:09}{attempt}", now.subsec_nanosecond()));
        match std::fs::create_dir(&candidate) {
            Ok(()) => return Ok(candidate),
            Err(error) if error.kind() == io::ErrorKind::AlreadyExists && attempt < 1000 => {}
            Err(error) => return Err(io_error(&candidate)(error)),
        }
    }
    Err(WriteError::InvalidPath(stamp))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(content: &str, mode: u32) -> File {
        File {
            content: content.as_bytes().to_vec(),
            mode,
        }
    }

    fn payload(entries: &[(&str, &str)]) -> BTreeMap<String, File> {
        entries
            .iter()
            .map(|(path, content)| (path.to_string(), file(content, 0o644)))
            .collect()
    }

    fn versions(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .expect("dir")
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with("..") && n != DATA_LINK)
            .collect();
        names.sort();
        names
    }

    #[test]
    fn files_are_links_into_the_current_version() {
        let dir = tempfile::tempdir().expect("tempdir");
        let volume = dir.path().join("volume");
        write(
            &volume,
            &payload(&[("token", "first"), ("ca.crt", "ca"), ("nested/leaf", "x")]),
        )
        .expect("write");
        assert_eq!(
            std::fs::read_to_string(volume.join("token")).expect("token"),
            "first"
        );
        assert_eq!(
            std::fs::read_to_string(volume.join("nested/leaf")).expect("leaf"),
            "x"
        );
        assert_eq!(
            std::fs::read_link(volume.join("token")).expect("a link"),
            Path::new("..data/token")
        );
        assert_eq!(
            std::fs::read_link(volume.join("nested")).expect("a link"),
            Path::new("..data/nested")
        );
        let version = std::fs::read_link(volume.join(DATA_LINK)).expect("..data");
        assert!(
            version.to_string_lossy().starts_with(".."),
            "{version:?} is relative and hidden"
        );
        assert_eq!(
            versions(&volume),
            vec![version.to_string_lossy().into_owned()]
        );
    }

    #[test]
    fn a_new_version_replaces_the_old_and_names_that_went_disappear() {
        let dir = tempfile::tempdir().expect("tempdir");
        let volume = dir.path().join("volume");
        write(&volume, &payload(&[("token", "first"), ("old", "o")])).expect("first");
        let first = std::fs::read_link(volume.join(DATA_LINK)).expect("..data");
        write(&volume, &payload(&[("token", "second")])).expect("second");
        let second = std::fs::read_link(volume.join(DATA_LINK)).expect("..data");
        assert_ne!(first, second);
        assert_eq!(
            std::fs::read_to_string(volume.join("token")).expect("token"),
            "second"
        );
        assert!(std::fs::symlink_metadata(volume.join("old")).is_err());
        assert_eq!(
            versions(&volume),
            vec![second.to_string_lossy().into_owned()],
            "the old version is removed"
        );
    }

    #[test]
    fn the_same_payload_writes_nothing_new() {
        let dir = tempfile::tempdir().expect("tempdir");
        let volume = dir.path().join("volume");
        let files = payload(&[("token", "same")]);
        write(&volume, &files).expect("first");
        let first = std::fs::read_link(volume.join(DATA_LINK)).expect("..data");
        write(&volume, &files).expect("again");
        assert_eq!(
            std::fs::read_link(volume.join(DATA_LINK)).expect("..data"),
            first
        );
    }

    #[test]
    fn modes_are_applied_and_a_changed_mode_is_a_new_version() {
        let dir = tempfile::tempdir().expect("tempdir");
        let volume = dir.path().join("volume");
        let mut files = BTreeMap::new();
        files.insert("key".to_string(), file("k", 0o400));
        write(&volume, &files).expect("write");
        let mode = std::fs::metadata(volume.join("key"))
            .expect("meta")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o400);
        files.insert("key".to_string(), file("k", 0o644));
        write(&volume, &files).expect("write");
        let mode = std::fs::metadata(volume.join("key"))
            .expect("meta")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o644);
    }

    #[test]
    fn plain_files_of_an_older_writer_are_replaced_by_links() {
        let dir = tempfile::tempdir().expect("tempdir");
        let volume = dir.path().join("volume");
        std::fs::create_dir_all(volume.join("nested")).expect("dir");
        std::fs::write(volume.join("token"), "plain").expect("file");
        std::fs::write(volume.join("gone"), "plain").expect("file");
        write(&volume, &payload(&[("token", "new"), ("nested/x", "y")])).expect("write");
        assert_eq!(
            std::fs::read_to_string(volume.join("token")).expect("token"),
            "new"
        );
        assert!(
            std::fs::symlink_metadata(volume.join("nested"))
                .expect("nested")
                .file_type()
                .is_symlink()
        );
        assert!(std::fs::symlink_metadata(volume.join("gone")).is_err());
    }

    #[test]
    fn paths_that_leave_the_volume_are_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        for bad in [
            "../escape",
            "a/../../b",
            "/abs",
            "",
            "..data",
            "a//b",
            "./a",
        ] {
            let error = write(dir.path(), &payload(&[(bad, "x")])).expect_err(bad);
            assert!(
                matches!(error, WriteError::InvalidPath(_)),
                "{bad}: {error}"
            );
        }
    }
}
