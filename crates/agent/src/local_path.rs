//! Node-side local-path volumes, as rancher's local-path-provisioner does them on the node: the
//! directory of every PersistentVolume that petset's provisioner made for this node (its
//! `spec.nodeAffinity` requires `kubernetes.io/hostname In [this node]`) exists, with mode
//! 0777, and a directory under the volumes root that no PersistentVolume names any more is
//! removed.
//!
//! Level-triggered: each pass compares a fresh list of PersistentVolumes from the API with the
//! directories on disk, at start (so a deletion while the node was down is caught up) and on
//! every change of a volume. Only directories directly under the root and named like a
//! provisioned volume (`pvc-…`) are ever removed, and never one that any volume (of any node)
//! still names. The simulated node runs the same passes over a bookkeeping disk that makes
//! nothing.

use std::collections::BTreeSet;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use futures::{FutureExt, StreamExt};
use k8s_openapi::api::core::v1::PersistentVolume;
use kube::api::{Api, ListParams};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, ResourceExt};

/// The provisioner of petset's `local-path` class, as its volumes' annotation names it (the
/// same name as `petset_controllers::volumes::PROVISIONER`).
pub const PROVISIONER: &str = "petset.dev/local-path";
const PROVISIONED_BY: &str = "pv.kubernetes.io/provisioned-by";
const HOSTNAME_LABEL: &str = "kubernetes.io/hostname";

/// Whether the volume is one of petset's local-path volumes on `node`.
pub fn is_mine(volume: &PersistentVolume, node: &str) -> bool {
    let provisioned = volume.annotations().get(PROVISIONED_BY).map(String::as_str);
    let terms = volume
        .spec
        .as_ref()
        .and_then(|s| s.node_affinity.as_ref())
        .and_then(|a| a.required.as_ref())
        .map(|r| r.node_selector_terms.as_slice())
        .unwrap_or_default();
    provisioned == Some(PROVISIONER)
        && terms.iter().any(|term| {
            term.match_expressions.iter().flatten().any(|e| {
                e.key == HOSTNAME_LABEL
                    && e.operator == "In"
                    && e.values.iter().flatten().any(|v| v == node)
            })
        })
}

/// Whether a directory name is one the provisioner makes (`pvc-<uid>`, or rancher's
/// `pvc-<uid>_<namespace>_<claim>`): nothing else under the root is ever removed.
pub fn looks_provisioned(name: &str) -> bool {
    name.strip_prefix("pvc-").is_some_and(|rest| {
        !rest.is_empty()
            && rest
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    })
}

/// The volume's directory name when its path is a provisioned directory directly under
/// `root` (`None`: the bookkeeping disk's, which takes any parent).
pub fn directory_under(volume: &PersistentVolume, root: Option<&Path>) -> Option<String> {
    let spec = volume.spec.as_ref()?;
    let path = spec
        .host_path
        .as_ref()
        .map(|h| h.path.as_str())
        .or(spec.local.as_ref().map(|l| l.path.as_str()))?;
    let path = Path::new(path);
    let name = path.file_name()?.to_str()?;
    (root.is_none_or(|r| path.parent() == Some(r)) && looks_provisioned(name))
        .then(|| name.to_string())
}

/// What one pass does to the disk.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Plan {
    pub create: Vec<String>,
    pub remove: Vec<String>,
}

/// Compares the volumes with the directories under `root`: this node's volumes that are not
/// released get their directory; a provisioned directory that no volume names goes.
pub fn plan(
    volumes: &[PersistentVolume],
    node: &str,
    root: Option<&Path>,
    existing: &[String],
) -> Plan {
    let named: BTreeSet<String> = volumes
        .iter()
        .filter_map(|v| directory_under(v, root))
        .collect();
    let released = |v: &PersistentVolume| {
        let phase = v.status.as_ref().and_then(|s| s.phase.as_deref());
        matches!(phase, Some("Released" | "Failed")) || v.metadata.deletion_timestamp.is_some()
    };
    let mine: BTreeSet<String> = volumes
        .iter()
        .filter(|v| is_mine(v, node) && !released(v))
        .filter_map(|v| directory_under(v, root))
        .collect();
    let existing: BTreeSet<&String> = existing.iter().collect();
    Plan {
        create: mine
            .iter()
            .filter(|name| !existing.contains(name))
            .cloned()
            .collect(),
        remove: existing
            .into_iter()
            .filter(|name| looks_provisioned(name) && !named.contains(*name))
            .cloned()
            .collect(),
    }
}

/// Makes a volume's directory (and its parents) if it is missing, open to every user as
/// rancher's provisioner makes it (0777: the pod's processes may run as any user).
pub fn ensure_directory(path: &Path) -> Result<(), String> {
    if path.is_dir() {
        return Ok(());
    }
    let failed = |e: std::io::Error| format!("{}: {e}", path.display());
    std::fs::create_dir_all(path).map_err(failed)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o777)).map_err(failed)
}

/// Where a node's volume directories are.
pub enum Disk {
    /// Directories under this root on this machine.
    Host(PathBuf),
    /// The simulated node's: names only, nothing is made.
    Bookkeeping(Mutex<BTreeSet<String>>),
}

impl Disk {
    pub fn bookkeeping() -> Self {
        Self::Bookkeeping(Mutex::default())
    }

    fn root(&self) -> Option<&Path> {
        match self {
            Self::Host(root) => Some(root),
            Self::Bookkeeping(_) => None,
        }
    }

    /// The directory names under the root.
    fn list(&self) -> std::io::Result<Vec<String>> {
        match self {
            Self::Host(root) => match std::fs::read_dir(root) {
                Ok(entries) => Ok(entries
                    .filter_map(Result::ok)
                    .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                    .filter_map(|e| e.file_name().to_str().map(str::to_string))
                    .collect()),
                Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
                Err(error) => Err(error),
            },
            Self::Bookkeeping(names) => Ok(lock(names).iter().cloned().collect()),
        }
    }

    fn create(&self, name: &str) -> Result<(), String> {
        match self {
            Self::Host(root) => ensure_directory(&root.join(name)),
            Self::Bookkeeping(names) => {
                lock(names).insert(name.to_string());
                Ok(())
            }
        }
    }

    fn remove(&self, name: &str) -> Result<(), String> {
        match self {
            Self::Host(root) => {
                let path = root.join(name);
                match std::fs::remove_dir_all(&path) {
                    Ok(()) => Ok(()),
                    Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(()),
                    Err(error) => Err(format!("{}: {error}", path.display())),
                }
            }
            Self::Bookkeeping(names) => {
                lock(names).remove(name);
                Ok(())
            }
        }
    }
}

fn lock(names: &Mutex<BTreeSet<String>>) -> std::sync::MutexGuard<'_, BTreeSet<String>> {
    names.lock().unwrap_or_else(|e| e.into_inner())
}

/// One pass over a fresh list of the volumes.
async fn reconcile(client: &Client, node: &str, disk: &Disk) -> Result<Plan, String> {
    let api: Api<PersistentVolume> = Api::all(client.clone());
    // Removing destroys data: the list is the API's, never a cache's.
    let volumes = api
        .list(&ListParams::default())
        .await
        .map_err(|e| e.to_string())?
        .items;
    let existing = disk.list().map_err(|e| e.to_string())?;
    let plan = plan(&volumes, node, disk.root(), &existing);
    for name in &plan.create {
        match disk.create(name) {
            Ok(()) => tracing::info!(volume = %name, "made a local-path volume's directory"),
            Err(error) => tracing::warn!(%error, "could not make a local-path volume's directory"),
        }
    }
    for name in &plan.remove {
        match disk.remove(name) {
            Ok(()) => {
                tracing::info!(volume = %name, "removed a deleted local-path volume's directory")
            }
            Err(error) => {
                tracing::warn!(%error, "could not remove a local-path volume's directory")
            }
        }
    }
    Ok(plan)
}

/// How long a failed pass waits before the next.
const RETRY: Duration = Duration::from_secs(5);

/// Keeps `disk` in step with the volumes of node `node` until the task is aborted.
pub async fn run(client: Client, node: String, disk: Disk) {
    let api: Api<PersistentVolume> = Api::all(client.clone());
    let mut changes = watcher(api, watcher::Config::default())
        .default_backoff()
        .boxed();
    loop {
        if let Err(error) = reconcile(&client, &node, &disk).await {
            tracing::debug!(%error, "local-path pass failed; retrying");
            tokio::time::sleep(RETRY).await;
            continue;
        }
        // One pass covers every change seen so far: a burst of volumes is one pass.
        if changes.next().await.is_none() {
            return;
        }
        while let Some(Some(_)) = changes.next().now_or_never() {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const ROOT: &str = "/data/volumes";

    fn volume(name: &str, node: Option<&str>, phase: &str) -> PersistentVolume {
        let mut value = json!({
            "metadata": {"name": name, "annotations": {PROVISIONED_BY: PROVISIONER}},
            "spec": {"hostPath": {"path": format!("{ROOT}/{name}")}},
            "status": {"phase": phase},
        });
        if let Some(node) = node {
            value["spec"]["nodeAffinity"] = json!({"required": {"nodeSelectorTerms": [
                {"matchExpressions": [
                    {"key": HOSTNAME_LABEL, "operator": "In", "values": [node]}]}]}});
        }
        serde_json::from_value(value).expect("volume")
    }

    fn names(names: &[&str]) -> Vec<String> {
        names.iter().map(|n| n.to_string()).collect()
    }

    #[test]
    fn only_petsets_volumes_pinned_to_this_node_are_mine() {
        assert!(is_mine(&volume("pvc-a", Some("here"), "Bound"), "here"));
        assert!(!is_mine(&volume("pvc-a", Some("there"), "Bound"), "here"));
        assert!(
            !is_mine(&volume("pvc-a", None, "Bound"), "here"),
            "no node affinity"
        );
        let mut other = volume("pvc-a", Some("here"), "Bound");
        other
            .metadata
            .annotations
            .as_mut()
            .expect("annotations")
            .insert(PROVISIONED_BY.into(), "example.com/nfs".into());
        assert!(!is_mine(&other, "here"), "another provisioner's");
    }

    #[test]
    fn a_missing_directory_of_this_nodes_volume_is_made() {
        let volumes = [
            volume("pvc-new", Some("here"), "Bound"),
            volume("pvc-made", Some("here"), "Bound"),
            volume("pvc-theirs", Some("there"), "Bound"),
            volume("pvc-gone", Some("here"), "Released"),
        ];
        let plan = plan(
            &volumes,
            "here",
            Some(Path::new(ROOT)),
            &names(&["pvc-made"]),
        );
        assert_eq!(plan.create, names(&["pvc-new"]));
        assert_eq!(plan.remove, Vec::<String>::new());
    }

    #[test]
    fn only_provisioned_directories_that_no_volume_names_are_stale() {
        let volumes = [
            volume("pvc-kept", Some("here"), "Bound"),
            // Retained after its claim went, or another node's: its data stays.
            volume("pvc-retained", Some("here"), "Released"),
            volume("pvc-legacy", None, "Bound"),
        ];
        let existing = names(&[
            "pvc-kept",
            "pvc-retained",
            "pvc-legacy",
            "pvc-deleted",
            "lost+found",
            "pvc-",
            "notes",
        ]);
        let plan = plan(&volumes, "here", Some(Path::new(ROOT)), &existing);
        assert_eq!(plan.remove, names(&["pvc-deleted"]));
        assert_eq!(plan.create, Vec::<String>::new());
    }

    #[test]
    fn a_volume_outside_the_root_is_never_touched() {
        let mut outside = volume("pvc-out", Some("here"), "Bound");
        outside.spec.as_mut().expect("spec").host_path =
            Some(serde_json::from_value(json!({"path": "/etc/pvc-out"})).expect("path"));
        assert_eq!(directory_under(&outside, Some(Path::new(ROOT))), None);
        let plan = plan(&[outside], "here", Some(Path::new(ROOT)), &[]);
        assert_eq!(plan, Plan::default());
        let mut nested = volume("pvc-x", Some("here"), "Bound");
        nested.spec.as_mut().expect("spec").host_path = Some(
            serde_json::from_value(json!({"path": format!("{ROOT}/deep/pvc-x")})).expect("path"),
        );
        assert_eq!(directory_under(&nested, Some(Path::new(ROOT))), None);
    }

    #[test]
    fn provisioned_names_are_the_provisioners_only() {
        assert!(looks_provisioned(
            "pvc-4f1c2a7e-0d7b-4b8e-9a35-3c1e2f0a9b11"
        ));
        assert!(looks_provisioned("pvc-4f1c_default_data-web-0"));
        for name in ["pvc-", "data", "..", "pvc-a/b", "pvc-a b", "PVC-a"] {
            assert!(!looks_provisioned(name), "{name}");
        }
    }

    #[test]
    fn the_bookkeeping_disk_makes_nothing_on_this_machine() {
        let disk = Disk::bookkeeping();
        let volume = volume("pvc-sim", Some("here"), "Bound");
        let plan = plan(&[volume], "here", disk.root(), &disk.list().expect("list"));
        assert_eq!(plan.create, names(&["pvc-sim"]));
        disk.create("pvc-sim").expect("create");
        assert_eq!(disk.list().expect("list"), names(&["pvc-sim"]));
        assert!(!Path::new(ROOT).join("pvc-sim").exists());
    }
}
