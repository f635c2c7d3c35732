//! The node-wide image store, as containerd's is on a Kubernetes node: it outlives any one
//! petset data dir (default `/var/lib/petset/images`), so images imported once serve every
//! cluster started on the machine.
//!
//! Layout under the root:
//! - `images.json`: image names (normalized as containerd does: `busybox:1.28` is
//!   `docker.io/library/busybox:1.28`) to the digest of their config;
//! - `configs/<hex>.json`: the image configs (entrypoint, command, env, working dir, user);
//! - `rootfs/<hex>/`: each image's layers applied in order, whiteouts included, once at import.
//!   Containers get a writable overlay over it.
//!
//! Every step that changes the store writes to a temporary name and renames, so an interrupted
//! import leaves either the old state or the new one.

use std::collections::{BTreeMap, HashSet};
use std::fs;
use std::io::{BufReader, Read};
use std::path::{Component, Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::Value;

mod reference;
pub use reference::{ReferenceError, normalize};

/// The store's root when no flag or environment variable says otherwise.
pub const DEFAULT_ROOT: &str = "/var/lib/petset/images";
/// The environment variable that overrides the root (read by the binary, not here).
pub const ROOT_VARIABLE: &str = "PETSET_IMAGE_STORE";

#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: not an image archive: {reason}")]
    Format { path: PathBuf, reason: String },
    #[error("image {0:?} not found in the image store")]
    NotFound(String),
    #[error("invalid image reference {reference:?}: {source}")]
    Reference {
        reference: String,
        source: ReferenceError,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> ImageError + '_ {
    move |source| ImageError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn format_error(path: &Path, reason: impl Into<String>) -> ImageError {
    ImageError::Format {
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

/// The store's key for `reference` (see [`normalize`]), or why it is no image name.
fn canonical_name(reference: &str) -> Result<String, ImageError> {
    normalize(reference).map_err(|source| ImageError::Reference {
        reference: reference.to_string(),
        source,
    })
}

/// What the store knows of one image.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ImageRecord {
    /// `sha256:<hex>` of the image config.
    pub id: String,
    /// Bytes in the unpacked root filesystem.
    pub size: u64,
}

/// What a container needs of its image.
#[derive(Debug, Clone)]
pub struct Image {
    pub name: String,
    pub id: String,
    pub rootfs: PathBuf,
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
    pub env: Vec<String>,
    pub working_dir: Option<String>,
    pub user: Option<String>,
}

pub struct ImageStore {
    root: PathBuf,
}

/// One image found in an archive: its names, config bytes and layer files (in order).
struct Found {
    names: Vec<String>,
    config: Vec<u8>,
    layers: Vec<PathBuf>,
}

impl ImageStore {
    /// The store at `root` (created when missing).
    pub fn open(root: impl Into<PathBuf>) -> Result<Self, ImageError> {
        let root = root.into();
        for dir in ["configs", "rootfs", "tmp"] {
            let path = root.join(dir);
            fs::create_dir_all(&path).map_err(io(&path))?;
        }
        Ok(Self { root })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn index_path(&self) -> PathBuf {
        self.root.join("images.json")
    }

    /// Every image name with its record, sorted by name.
    pub fn list(&self) -> Result<BTreeMap<String, ImageRecord>, ImageError> {
        let path = self.index_path();
        match fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map_err(|e| format_error(&path, format!("damaged image index: {e}"))),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(BTreeMap::new()),
            Err(error) => Err(io(&path)(error)),
        }
    }

    fn write_index(&self, index: &BTreeMap<String, ImageRecord>) -> Result<(), ImageError> {
        let path = self.index_path();
        let temporary = self.root.join("tmp").join("images.json");
        let bytes = serde_json::to_vec_pretty(index).unwrap_or_default();
        fs::write(&temporary, bytes).map_err(io(&temporary))?;
        fs::rename(&temporary, &path).map_err(io(&path))
    }

    /// The image a pod names, ready to run.
    pub fn resolve(&self, reference: &str) -> Result<Image, ImageError> {
        let name = canonical_name(reference)?;
        let record = self
            .list()?
            .remove(&name)
            .ok_or_else(|| ImageError::NotFound(reference.to_string()))?;
        let hex = record.id.trim_start_matches("sha256:");
        let config_path = self.root.join("configs").join(format!("{hex}.json"));
        let config: Value = fs::read(&config_path)
            .map_err(io(&config_path))
            .and_then(|b| {
                serde_json::from_slice(&b).map_err(|e| format_error(&config_path, e.to_string()))
            })?;
        let strings = |key: &str| -> Vec<String> {
            config
                .pointer(&format!("/config/{key}"))
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter_map(Value::as_str)
                        .map(str::to_string)
                        .collect()
                })
                .unwrap_or_default()
        };
        let text = |key: &str| {
            config
                .pointer(&format!("/config/{key}"))
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
                .map(str::to_string)
        };
        Ok(Image {
            rootfs: self.root.join("rootfs").join(hex),
            entrypoint: strings("Entrypoint"),
            cmd: strings("Cmd"),
            env: strings("Env"),
            working_dir: text("WorkingDir"),
            user: text("User"),
            id: record.id,
            name,
        })
    }

    /// Removes a name; the image's files go with its last name.
    pub fn remove(&self, reference: &str) -> Result<ImageRecord, ImageError> {
        let name = canonical_name(reference)?;
        let mut index = self.list()?;
        let record = index
            .remove(&name)
            .ok_or_else(|| ImageError::NotFound(reference.to_string()))?;
        self.write_index(&index)?;
        if !index.values().any(|r| r.id == record.id) {
            let hex = record.id.trim_start_matches("sha256:");
            let rootfs = self.root.join("rootfs").join(hex);
            if rootfs.exists() {
                fs::remove_dir_all(&rootfs).map_err(io(&rootfs))?;
            }
            let config = self.root.join("configs").join(format!("{hex}.json"));
            let _ = fs::remove_file(config);
        }
        Ok(record)
    }

    /// Imports every image of a `docker save` archive or an OCI image layout (a tar or a
    /// directory). `names` replace the archive's own names (allowed only for one image).
    /// Returns the names imported.
    pub fn import(&self, source: &Path, names: &[String]) -> Result<Vec<String>, ImageError> {
        let scratch = tempfile_dir(&self.root.join("tmp"))?;
        let result = self.import_from(source, names, &scratch);
        let _ = fs::remove_dir_all(&scratch);
        result
    }

    fn import_from(
        &self,
        source: &Path,
        names: &[String],
        scratch: &Path,
    ) -> Result<Vec<String>, ImageError> {
        let metadata = fs::metadata(source).map_err(io(source))?;
        let directory = if metadata.is_dir() {
            source.to_path_buf()
        } else {
            let unpacked = scratch.join("archive");
            fs::create_dir_all(&unpacked).map_err(io(&unpacked))?;
            let file = fs::File::open(source).map_err(io(source))?;
            let mut archive = tar::Archive::new(maybe_gzip(BufReader::new(file), source)?);
            archive.unpack(&unpacked).map_err(io(source))?;
            unpacked
        };
        let found = if directory.join("manifest.json").is_file() {
            docker_archive(&directory)?
        } else if directory.join("index.json").is_file() {
            oci_layout(&directory)?
        } else {
            return Err(format_error(
                source,
                "neither manifest.json (docker save) nor index.json (OCI layout) at its top",
            ));
        };
        if found.is_empty() {
            return Err(format_error(source, "it holds no image"));
        }
        if !names.is_empty() && found.len() > 1 {
            return Err(format_error(
                source,
                "it holds several images; names can be given for one only",
            ));
        }
        let mut imported = Vec::new();
        for image in found {
            let image_names = if names.is_empty() {
                image.names.clone()
            } else {
                names.to_vec()
            };
            if image_names.is_empty() {
                return Err(format_error(
                    source,
                    "an image has no name; give one with --name",
                ));
            }
            let normalized = image_names
                .iter()
                .map(|n| canonical_name(n))
                .collect::<Result<Vec<_>, _>>()?;
            let record = self.store_image(&image, scratch)?;
            let mut index = self.list()?;
            for name in &normalized {
                index.insert(name.clone(), record.clone());
            }
            self.write_index(&index)?;
            imported.extend(normalized);
        }
        Ok(imported)
    }

    /// Writes the config and the flattened root filesystem of one image.
    fn store_image(&self, image: &Found, scratch: &Path) -> Result<ImageRecord, ImageError> {
        let hex = sha256_hex(&image.config);
        let rootfs = self.root.join("rootfs").join(&hex);
        if !rootfs.is_dir() {
            let building = scratch.join(format!("rootfs-{hex}"));
            fs::create_dir_all(&building).map_err(io(&building))?;
            for layer in &image.layers {
                apply_layer(layer, &building)?;
            }
            fs::rename(&building, &rootfs).map_err(io(&rootfs))?;
        }
        let config = self.root.join("configs").join(format!("{hex}.json"));
        fs::write(&config, &image.config).map_err(io(&config))?;
        Ok(ImageRecord {
            id: format!("sha256:{hex}"),
            size: tree_size(&rootfs),
        })
    }
}

/// A fresh directory under `parent`.
fn tempfile_dir(parent: &Path) -> Result<PathBuf, ImageError> {
    let unique = format!(
        "import-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default()
    );
    let path = parent.join(unique);
    fs::create_dir_all(&path).map_err(io(&path))?;
    Ok(path)
}

fn sha256_hex(bytes: &[u8]) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, bytes);
    digest.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

fn tree_size(path: &Path) -> u64 {
    let Ok(metadata) = fs::symlink_metadata(path) else {
        return 0;
    };
    if !metadata.is_dir() {
        return metadata.len();
    }
    fs::read_dir(path)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|e| tree_size(&e.path()))
                .sum()
        })
        .unwrap_or(0)
}

/// A reader that gunzips when the stream starts with gzip's magic bytes.
fn maybe_gzip<R: std::io::BufRead + 'static>(
    mut reader: R,
    path: &Path,
) -> Result<Box<dyn Read>, ImageError> {
    let head = reader.fill_buf().map_err(io(path))?;
    if head.starts_with(&[0x1f, 0x8b]) {
        Ok(Box::new(flate2::bufread::MultiGzDecoder::new(reader)))
    } else {
        Ok(Box::new(reader))
    }
}

/// A path inside an archive, refused if it would leave it.
fn inside(base: &Path, relative: &str) -> Result<PathBuf, ImageError> {
    let relative = Path::new(relative);
    if relative
        .components()
        .any(|c| !matches!(c, Component::Normal(_) | Component::CurDir))
    {
        return Err(format_error(
            base,
            format!("{} points outside the archive", relative.display()),
        ));
    }
    Ok(base.join(relative))
}

fn read_json(path: &Path) -> Result<Value, ImageError> {
    let bytes = fs::read(path).map_err(io(path))?;
    serde_json::from_slice(&bytes).map_err(|e| format_error(path, e.to_string()))
}

/// `docker save`: `manifest.json` lists each image's config, tags and layer files.
fn docker_archive(directory: &Path) -> Result<Vec<Found>, ImageError> {
    let manifest_path = directory.join("manifest.json");
    let manifest = read_json(&manifest_path)?;
    let entries = manifest
        .as_array()
        .ok_or_else(|| format_error(&manifest_path, "manifest.json is not a list"))?;
    entries
        .iter()
        .map(|entry| {
            let config = entry
                .get("Config")
                .and_then(Value::as_str)
                .ok_or_else(|| format_error(&manifest_path, "an entry has no Config"))?;
            let config_path = inside(directory, config)?;
            let layers = entry
                .get("Layers")
                .and_then(Value::as_array)
                .map(|layers| {
                    layers
                        .iter()
                        .filter_map(Value::as_str)
                        .map(|l| inside(directory, l))
                        .collect::<Result<Vec<_>, _>>()
                })
                .transpose()?
                .unwrap_or_default();
            let names = entry
                .get("RepoTags")
                .and_then(Value::as_array)
                .map(|tags| {
                    tags.iter()
                        .filter_map(Value::as_str)
                        .map(str::to_string)
                        .collect()
                })
                .unwrap_or_default();
            Ok(Found {
                names,
                config: fs::read(&config_path).map_err(io(&config_path))?,
                layers,
            })
        })
        .collect()
}

fn blob_path(directory: &Path, digest: &str) -> Result<PathBuf, ImageError> {
    let (algorithm, hex) = digest
        .split_once(':')
        .ok_or_else(|| format_error(directory, format!("bad digest {digest:?}")))?;
    inside(directory, &format!("blobs/{algorithm}/{hex}"))
}

/// An OCI image layout: `index.json` names manifests (or nested indexes), each manifest a
/// config and layers, all as digests under `blobs/`.
fn oci_layout(directory: &Path) -> Result<Vec<Found>, ImageError> {
    let index_path = directory.join("index.json");
    let index: oci_spec::image::ImageIndex =
        serde_json::from_slice(&fs::read(&index_path).map_err(io(&index_path))?)
            .map_err(|e| format_error(&index_path, e.to_string()))?;
    let mut found = Vec::new();
    let mut seen = HashSet::new();
    for descriptor in index.manifests() {
        let annotations = descriptor.annotations().clone().unwrap_or_default();
        let name = annotations
            .get("io.containerd.image.name")
            .cloned()
            .or_else(|| {
                annotations
                    .get("org.opencontainers.image.ref.name")
                    .cloned()
            });
        let mut manifest_path = blob_path(directory, descriptor.digest().as_ref())?;
        let mut manifest = read_json(&manifest_path)?;
        // A nested index (multi-platform): take the manifest for this machine.
        if manifest.get("manifests").is_some() {
            let arch = match std::env::consts::ARCH {
                "x86_64" => "amd64",
                "aarch64" => "arm64",
                other => other,
            };
            let chosen = manifest
                .get("manifests")
                .and_then(Value::as_array)
                .and_then(|m| {
                    m.iter()
                        .find(|d| d.pointer("/platform/architecture") == Some(&Value::from(arch)))
                        .or_else(|| m.first())
                })
                .and_then(|d| d.get("digest"))
                .and_then(Value::as_str)
                .ok_or_else(|| format_error(&manifest_path, "an index without manifests"))?
                .to_string();
            manifest_path = blob_path(directory, &chosen)?;
            manifest = read_json(&manifest_path)?;
        }
        let config_digest = manifest
            .pointer("/config/digest")
            .and_then(Value::as_str)
            .ok_or_else(|| format_error(&manifest_path, "a manifest without a config"))?;
        let config_path = blob_path(directory, config_digest)?;
        let layers = manifest
            .get("layers")
            .and_then(Value::as_array)
            .map(|layers| {
                layers
                    .iter()
                    .filter_map(|l| l.get("digest").and_then(Value::as_str))
                    .map(|d| blob_path(directory, d))
                    .collect::<Result<Vec<_>, _>>()
            })
            .transpose()?
            .unwrap_or_default();
        let config = fs::read(&config_path).map_err(io(&config_path))?;
        if !seen.insert((sha256_hex(&config), name.clone())) {
            continue;
        }
        found.push(Found {
            names: name.into_iter().collect(),
            config,
            layers,
        });
    }
    Ok(found)
}

/// Applies one layer (tar, gzipped or not) onto `root`, honouring OCI whiteouts: `.wh.NAME`
/// deletes NAME from the layers below, `.wh..wh..opq` empties its directory of them.
pub fn apply_layer(layer: &Path, root: &Path) -> Result<(), ImageError> {
    let file = fs::File::open(layer).map_err(io(layer))?;
    let mut archive = tar::Archive::new(maybe_gzip(BufReader::new(file), layer)?);
    archive.set_preserve_permissions(true);
    archive.set_preserve_ownerships(true);
    archive.set_overwrite(true);
    let mut added: HashSet<PathBuf> = HashSet::new();
    for entry in archive.entries().map_err(io(layer))? {
        let mut entry = entry.map_err(io(layer))?;
        let path = entry.path().map_err(io(layer))?.into_owned();
        let relative: PathBuf = path
            .components()
            .filter(|c| matches!(c, Component::Normal(_)))
            .collect();
        if path.components().any(|c| matches!(c, Component::ParentDir)) {
            return Err(format_error(
                layer,
                format!("{} points outside the image", path.display()),
            ));
        }
        let file_name = relative
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let parent = relative.parent().map(Path::to_path_buf).unwrap_or_default();
        if file_name == ".wh..wh..opq" {
            let directory = root.join(&parent);
            if let Ok(children) = fs::read_dir(&directory) {
                for child in children.filter_map(Result::ok) {
                    let child_relative = parent.join(child.file_name());
                    if !added.contains(&child_relative) {
                        remove_any(&child.path())?;
                    }
                }
            }
            continue;
        }
        if let Some(hidden) = file_name.strip_prefix(".wh.") {
            remove_any(&root.join(&parent).join(hidden))?;
            continue;
        }
        if relative.as_os_str().is_empty() {
            continue;
        }
        let target = root.join(&relative);
        let is_dir = entry.header().entry_type().is_dir();
        if let Ok(existing) = fs::symlink_metadata(&target)
            && (!is_dir || !existing.is_dir())
        {
            // Never write through what a lower layer left there (a symlink above all).
            remove_any(&target)?;
        }
        entry.unpack_in(root).map_err(io(&target))?;
        added.insert(relative);
    }
    Ok(())
}

fn remove_any(path: &Path) -> Result<(), ImageError> {
    match fs::symlink_metadata(path) {
        Ok(metadata) if metadata.is_dir() => fs::remove_dir_all(path).map_err(io(path)),
        Ok(_) => fs::remove_file(path).map_err(io(path)),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(error) => Err(io(path)(error)),
    }
}

#[cfg(test)]
mod import_tests {
    use std::io::Write;

    use serde_json::json;

    use super::*;

    enum Item<'a> {
        Dir(&'a str),
        File(&'a str, &'a str),
        Link(&'a str, &'a str),
    }

    fn layer(items: &[Item<'_>], gzip: bool) -> Vec<u8> {
        let mut builder = tar::Builder::new(Vec::new());
        for item in items {
            let mut header = tar::Header::new_gnu();
            header.set_mode(0o755);
            header.set_mtime(0);
            header.set_uid(0);
            header.set_gid(0);
            match item {
                Item::Dir(path) => {
                    header.set_entry_type(tar::EntryType::Directory);
                    header.set_size(0);
                    builder
                        .append_data(&mut header, path, std::io::empty())
                        .expect("dir");
                }
                Item::File(path, content) => {
                    header.set_size(content.len() as u64);
                    builder
                        .append_data(&mut header, path, content.as_bytes())
                        .expect("file");
                }
                Item::Link(path, target) => {
                    header.set_entry_type(tar::EntryType::Symlink);
                    header.set_size(0);
                    builder
                        .append_link(&mut header, path, target)
                        .expect("link");
                }
            }
        }
        let bytes = builder.into_inner().expect("tar");
        if !gzip {
            return bytes;
        }
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        encoder.write_all(&bytes).expect("gzip");
        encoder.finish().expect("gzip")
    }

    fn layers() -> Vec<Vec<u8>> {
        vec![
            layer(
                &[
                    Item::Dir("etc/"),
                    Item::File("etc/a", "1"),
                    Item::File("etc/b", "2"),
                    Item::Dir("data/"),
                    Item::File("data/x", "x"),
                    Item::Link("link", "etc/a"),
                ],
                true,
            ),
            layer(
                &[
                    Item::File("etc/.wh.a", ""),
                    Item::File("etc/b", "3"),
                    Item::Dir("data/"),
                    Item::File("data/.wh..wh..opq", ""),
                    Item::File("data/y", "y"),
                ],
                false,
            ),
        ]
    }

    fn config() -> Vec<u8> {
        serde_json::to_vec(&json!({
            "architecture": "amd64", "os": "linux",
            "config": {"Entrypoint": ["/bin/web"], "Cmd": ["--port", "80"],
                "Env": ["PATH=/bin"], "WorkingDir": "/srv"},
            "rootfs": {"type": "layers", "diff_ids": []},
        }))
        .expect("config")
    }

    fn write_blob(directory: &Path, bytes: &[u8]) -> String {
        let hex = sha256_hex(bytes);
        let path = directory.join("blobs/sha256");
        fs::create_dir_all(&path).expect("blobs");
        fs::write(path.join(&hex), bytes).expect("blob");
        format!("sha256:{hex}")
    }

    fn oci_layout_dir(directory: &Path, name: &str) {
        let config = config();
        let config_digest = write_blob(directory, &config);
        let layer_descriptors: Vec<Value> = layers()
            .iter()
            .map(|l| {
                json!({"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                "digest": write_blob(directory, l), "size": l.len()})
            })
            .collect();
        let manifest = serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": config_digest, "size": config.len()},
            "layers": layer_descriptors,
        }))
        .expect("manifest");
        let manifest_digest = write_blob(directory, &manifest);
        fs::write(
            directory.join("index.json"),
            serde_json::to_vec(&json!({
                "schemaVersion": 2,
                "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json",
                    "digest": manifest_digest, "size": manifest.len(),
                    "annotations": {"io.containerd.image.name": name,
                        "org.opencontainers.image.ref.name": "1"}}],
            }))
            .expect("index"),
        )
        .expect("index.json");
        fs::write(
            directory.join("oci-layout"),
            br#"{"imageLayoutVersion":"1.0.0"}"#,
        )
        .expect("oci-layout");
    }

    fn check_rootfs(image: &Image) {
        let read = |p: &str| fs::read_to_string(image.rootfs.join(p)).ok();
        assert_eq!(read("etc/a"), None, "whiteout removes a");
        assert_eq!(read("etc/b").as_deref(), Some("3"));
        assert_eq!(read("data/x"), None, "opaque directory hides x");
        assert_eq!(read("data/y").as_deref(), Some("y"));
        assert_eq!(
            fs::read_link(image.rootfs.join("link")).ok(),
            Some(PathBuf::from("etc/a"))
        );
        assert_eq!(image.entrypoint, vec!["/bin/web"]);
        assert_eq!(image.cmd, vec!["--port", "80"]);
        assert_eq!(image.working_dir.as_deref(), Some("/srv"));
    }

    /// An empty store and an OCI layout of the test image named `name`, in a temporary
    /// directory that lives as long as the first value.
    fn store_and_layout(name: &str) -> (tempfile::TempDir, ImageStore, PathBuf) {
        let temp = tempfile::tempdir().expect("temp");
        let store = ImageStore::open(temp.path().join("store")).expect("store");
        let layout = temp.path().join("layout");
        oci_layout_dir(&layout, name);
        (temp, store, layout)
    }

    #[test]
    fn an_oci_layout_directory_is_imported_with_whiteouts_and_removed_with_its_last_name() {
        let (_temp, store, layout) = store_and_layout("registry.k8s.io/test:1");
        let names = store.import(&layout, &[]).expect("import");
        assert_eq!(names, vec!["registry.k8s.io/test:1"]);
        let image = store.resolve("registry.k8s.io/test:1").expect("resolve");
        check_rootfs(&image);
        // A second import and a second name share the files.
        store
            .import(&layout, &["test:2".to_string()])
            .expect("again");
        assert_eq!(store.list().expect("list").len(), 2);
        store.remove("registry.k8s.io/test:1").expect("remove");
        assert!(image.rootfs.is_dir(), "still named test:2");
        store.remove("docker.io/library/test:2").expect("remove");
        assert!(!image.rootfs.exists());
        assert!(matches!(
            store.resolve("registry.k8s.io/test:1"),
            Err(ImageError::NotFound(_))
        ));
    }

    #[test]
    fn every_spelling_of_a_name_finds_the_same_image_and_a_malformed_one_says_why() {
        let (_temp, store, layout) = store_and_layout("unused:1");
        let names = [
            "busybox".to_string(),
            "k8s.gcr.io/nginx-slim:0.8".to_string(),
        ];
        let imported = store.import(&layout, &names).expect("import");
        assert_eq!(
            imported,
            vec![
                "docker.io/library/busybox:latest",
                "k8s.gcr.io/nginx-slim:0.8"
            ]
        );
        let id = |reference: &str| store.resolve(reference).expect(reference).id;
        let expected = id("busybox");
        for spelling in [
            "busybox:latest",
            "docker.io/busybox",
            "index.docker.io/library/busybox:latest",
            "k8s.gcr.io/nginx-slim:0.8",
        ] {
            assert_eq!(id(spelling), expected, "{spelling}");
        }
        let error = store.resolve("Busybox").expect_err("uppercase");
        assert!(matches!(error, ImageError::Reference { .. }), "{error}");
        assert_eq!(
            error.to_string(),
            "invalid image reference \"Busybox\": invalid reference format: repository name (library/Busybox) must be lowercase"
        );
        assert!(matches!(
            store.resolve("busybox:1.28"),
            Err(ImageError::NotFound(_))
        ));
    }

    #[test]
    fn a_docker_save_tar_is_imported_under_its_repo_tags() {
        let temp = tempfile::tempdir().expect("temp");
        let store = ImageStore::open(temp.path().join("store")).expect("store");
        let saved = temp.path().join("saved");
        fs::create_dir_all(saved.join("l1")).expect("dir");
        fs::create_dir_all(saved.join("l2")).expect("dir");
        let layers = layers();
        fs::write(saved.join("l1/layer.tar"), &layers[0]).expect("l1");
        fs::write(saved.join("l2/layer.tar"), &layers[1]).expect("l2");
        fs::write(saved.join("config.json"), config()).expect("config");
        fs::write(
            saved.join("manifest.json"),
            serde_json::to_vec(&json!([{"Config": "config.json",
                "RepoTags": ["busybox:1.28"], "Layers": ["l1/layer.tar", "l2/layer.tar"]}]))
            .expect("manifest"),
        )
        .expect("manifest.json");
        let archive = temp.path().join("busybox.tar");
        let mut builder = tar::Builder::new(fs::File::create(&archive).expect("archive"));
        builder.append_dir_all(".", &saved).expect("append");
        builder.finish().expect("finish");
        drop(builder);
        let names = store.import(&archive, &[]).expect("import");
        assert_eq!(names, vec!["docker.io/library/busybox:1.28"]);
        check_rootfs(&store.resolve("busybox:1.28").expect("resolve"));
    }

    #[test]
    fn an_archive_that_escapes_is_refused_and_the_store_is_unchanged() {
        let temp = tempfile::tempdir().expect("temp");
        let store = ImageStore::open(temp.path().join("store")).expect("store");
        let saved = temp.path().join("saved");
        fs::create_dir_all(&saved).expect("dir");
        fs::write(
            saved.join("manifest.json"),
            br#"[{"Config": "../../etc/passwd", "RepoTags": ["x:1"], "Layers": []}]"#,
        )
        .expect("manifest");
        let error = store.import(&saved, &[]).expect_err("refused");
        assert!(error.to_string().contains("outside"), "{error}");
        assert!(store.list().expect("list").is_empty());
        let missing = store
            .import(&temp.path().join("nothing"), &[])
            .expect_err("missing");
        assert!(matches!(missing, ImageError::Io { .. }), "{missing}");
    }
}
