//! Node-side local-path volumes, as rancher's local-path-provisioner does them on the node: the
//! directory of every PersistentVolume that petset's provisioner made for this node (its
//! `spec.nodeAffinity` requires `kubernetes.io/hostname In [this node]`) exists, with mode
//! 0777; and a volume of reclaim policy Delete that is being deleted has its directory removed
//! here, behind the provisioner's finalizer, as upstream's external provisioner deletes the
//! backing volume before it lets the PersistentVolume go.
//!
//! The cleanup finalizer is the only way data goes: a directory that no volume names any more
//! is left alone (a Retain volume deleted by hand keeps its data, as upstream), and a volume
//! whose policy is not Delete loses only the finalizer. A node that is down delays only the
//! cleanup: its volumes stay Terminating until it is back, as upstream's do while their CSI
//! driver is gone. Only directories directly under the root, named like a provisioned volume
//! (`pvc-…`) and not a link are ever removed, never one that another volume also names, and
//! never while the volume is still Bound (a pod may be using it).
//!
//! Level-triggered: each pass compares a fresh list of PersistentVolumes from the API with the
//! directories on disk, at start (so a deletion while the node was down is caught up) and on
//! every change of a volume. The simulated node runs the same passes over a bookkeeping disk
//! that makes and removes nothing on this machine.

use petset_informer::finalizers::remove_finalizer;
use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use futures::{FutureExt, StreamExt};
use k8s_openapi::api::core::v1::PersistentVolume;
use kube::api::{Api, ListParams};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, Resource, ResourceExt};
use petset_informer::events::Recorder;

/// The provisioner of petset's `local-path` class, as its volumes' annotation names it (the
/// same name as `petset_controllers::volumes::PROVISIONER`).
pub const PROVISIONER: &str = "petset.dev/local-path";
/// The finalizer the provisioner puts on its volumes of reclaim policy Delete and the volume's
/// node removes once the directory is gone (the same name as
/// `petset_controllers::volumes::CLEANUP_FINALIZER`).
pub const CLEANUP_FINALIZER: &str = "petset.dev/local-path-cleanup";
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

/// The path a volume names on its node (`spec.hostPath` or `spec.local`).
fn path_of(volume: &PersistentVolume) -> Option<&str> {
    let spec = volume.spec.as_ref()?;
    spec.host_path
        .as_ref()
        .map(|h| h.path.as_str())
        .or(spec.local.as_ref().map(|l| l.path.as_str()))
}

/// The volume's directory name when its path is a provisioned directory directly under
/// `root` (`None`: the bookkeeping disk's, which takes any parent).
pub fn directory_under(volume: &PersistentVolume, root: Option<&Path>) -> Option<String> {
    let path = Path::new(path_of(volume)?);
    let name = path.file_name()?.to_str()?;
    (root.is_none_or(|r| path.parent() == Some(r)) && looks_provisioned(name))
        .then(|| name.to_string())
}

fn phase(volume: &PersistentVolume) -> Option<&str> {
    volume.status.as_ref().and_then(|s| s.phase.as_deref())
}

fn is_deleting(volume: &PersistentVolume) -> bool {
    volume.metadata.deletion_timestamp.is_some()
}

fn has_cleanup_finalizer(volume: &PersistentVolume) -> bool {
    volume.finalizers().iter().any(|f| f == CLEANUP_FINALIZER)
}

/// What this node does for one of its volumes that is being deleted behind the cleanup
/// finalizer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reclaim {
    /// Reclaim Delete: this directory goes, then the finalizer.
    Remove(String),
    /// The data stays (the policy is no longer Delete, another volume names the same
    /// directory, or the disk is bookkeeping): only the finalizer goes.
    Keep(&'static str),
    /// The directory cannot be removed safely: the volume stays Terminating and says why, as a
    /// volume does whose provisioner fails to delete it.
    Refuse(String),
}

/// One volume's cleanup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cleanup {
    pub volume: String,
    pub reclaim: Reclaim,
}

/// What one pass does.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// Directories to make, of this node's volumes in use.
    pub create: Vec<String>,
    /// This node's deleted volumes whose finalizer it is to remove.
    pub cleanup: Vec<Cleanup>,
    /// Provisioned directories that no volume names: left alone, and said once.
    pub unclaimed: Vec<String>,
}

/// How many volumes name each directory under `root`.
fn directory_users(volumes: &[PersistentVolume], root: Option<&Path>) -> BTreeMap<String, usize> {
    let mut users = BTreeMap::new();
    for name in volumes.iter().filter_map(|v| directory_under(v, root)) {
        *users.entry(name).or_insert(0) += 1;
    }
    users
}

/// What a deleted volume's cleanup does, given how many volumes name each directory; `None`
/// when there is nothing for this node to do (not its volume, not deleted, no finalizer, or
/// still Bound: pv-protection keeps a Bound volume, and its data may be in use until the
/// volume controller marks it Released).
fn reclaim(
    volume: &PersistentVolume,
    node: &str,
    root: Option<&Path>,
    users: &BTreeMap<String, usize>,
) -> Option<Reclaim> {
    if !is_mine(volume, node)
        || !is_deleting(volume)
        || !has_cleanup_finalizer(volume)
        || phase(volume) == Some("Bound")
    {
        return None;
    }
    let policy = volume
        .spec
        .as_ref()
        .and_then(|s| s.persistent_volume_reclaim_policy.as_deref());
    if policy != Some("Delete") {
        return Some(Reclaim::Keep("its reclaim policy is not Delete"));
    }
    Some(match (directory_under(volume, root), root) {
        (Some(name), _) if users.get(&name).copied().unwrap_or(0) > 1 => {
            Reclaim::Keep("another volume names the same directory")
        }
        (Some(name), _) => Reclaim::Remove(name),
        (None, None) => Reclaim::Keep("the node's disk is bookkeeping"),
        (None, Some(root)) => Reclaim::Refuse(format!(
            "refusing to remove {:?}: not a provisioned directory directly under {}",
            path_of(volume).unwrap_or_default(),
            root.display()
        )),
    })
}

/// Compares the volumes with the directories under `root`: this node's volumes that are in
/// use get their directory, its deleted ones are cleaned up, and a provisioned directory that
/// no volume names is only reported.
pub fn plan(
    volumes: &[PersistentVolume],
    node: &str,
    root: Option<&Path>,
    existing: &[String],
) -> Plan {
    let users = directory_users(volumes, root);
    let released =
        |v: &PersistentVolume| matches!(phase(v), Some("Released" | "Failed")) || is_deleting(v);
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
        cleanup: volumes
            .iter()
            .filter_map(|v| {
                reclaim(v, node, root, &users).map(|reclaim| Cleanup {
                    volume: v.name_any(),
                    reclaim,
                })
            })
            .collect(),
        unclaimed: existing
            .into_iter()
            .filter(|name| looks_provisioned(name) && !users.contains_key(*name))
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

/// Removes the directory `path` and everything in it; a link or a file in its place is
/// refused (never followed, never removed), and a missing one is removed already.
fn remove_directory(path: &Path) -> Result<(), String> {
    let failed = |e: std::io::Error| format!("{}: {e}", path.display());
    match std::fs::symlink_metadata(path) {
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(error) => Err(failed(error)),
        // remove_dir_all never follows a link inside the tree either: it removes the link.
        Ok(meta) if meta.file_type().is_dir() => match std::fs::remove_dir_all(path) {
            Err(error) if error.kind() != std::io::ErrorKind::NotFound => Err(failed(error)),
            _ => Ok(()),
        },
        Ok(_) => Err(format!(
            "refusing to remove {}: not a directory",
            path.display()
        )),
    }
}

/// Where a node's volume directories are.
pub enum Disk {
    /// Directories under this root on this machine.
    Host(PathBuf),
    /// The simulated node's: names only, nothing is made or removed on this machine.
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

    /// The directory names under the root (links are not directories here).
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

    /// Removes a provisioned directory directly under the root.
    fn remove(&self, name: &str) -> Result<(), String> {
        if !looks_provisioned(name) {
            return Err(format!(
                "refusing to remove {name:?}: not a provisioned name"
            ));
        }
        match self {
            Self::Host(root) => remove_directory(&root.join(name)),
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

/// How a pass ended.
#[derive(Debug, PartialEq, Eq)]
enum Pass {
    /// Nothing left that another pass could do before the volumes change.
    Settled,
    /// Something failed that may work later (a removal, a write): try again after `RETRY`.
    Unsettled,
}

/// A node's local-path work: its disk, its events, and what it has said already.
struct LocalPath {
    client: Client,
    node: String,
    disk: Disk,
    events: Recorder,
    /// The unclaimed directories reported so far, so each is said once.
    reported: BTreeSet<String>,
}

impl LocalPath {
    /// One pass over a fresh list of the volumes.
    async fn reconcile(&mut self) -> Result<Pass, String> {
        let api: Api<PersistentVolume> = Api::all(self.client.clone());
        // Removing destroys data: the list is the API's, never a cache's.
        let volumes = api
            .list(&ListParams::default())
            .await
            .map_err(|e| e.to_string())?
            .items;
        let existing = self.disk.list().map_err(|e| e.to_string())?;
        let plan = plan(&volumes, &self.node, self.disk.root(), &existing);
        for name in &plan.create {
            match self.disk.create(name) {
                Ok(()) => tracing::info!(volume = %name, "made a local-path volume's directory"),
                Err(error) => {
                    tracing::warn!(%error, "could not make a local-path volume's directory")
                }
            }
        }
        self.report_unclaimed(plan.unclaimed);
        let mut pass = Pass::Settled;
        for cleanup in &plan.cleanup {
            let Some(volume) = volumes.iter().find(|v| v.name_any() == cleanup.volume) else {
                continue;
            };
            if self.clean_up(&api, volume, &cleanup.reclaim).await == Pass::Unsettled {
                pass = Pass::Unsettled;
            }
        }
        Ok(pass)
    }

    /// Says once, for each, that a provisioned directory no volume names is left alone.
    fn report_unclaimed(&mut self, unclaimed: Vec<String>) {
        let now: BTreeSet<String> = unclaimed.into_iter().collect();
        for name in now.difference(&self.reported) {
            tracing::info!(
                directory = %name,
                "a local-path directory that no volume names is left alone"
            );
        }
        self.reported = now;
    }

    /// Carries out one volume's cleanup: the directory (if it is to go), then the finalizer.
    async fn clean_up(
        &self,
        api: &Api<PersistentVolume>,
        volume: &PersistentVolume,
        reclaim: &Reclaim,
    ) -> Pass {
        let name = volume.name_any();
        match reclaim {
            Reclaim::Refuse(message) => {
                self.failed_delete(volume, message.clone());
                return Pass::Settled;
            }
            Reclaim::Remove(directory) => match self.disk.remove(directory) {
                Ok(()) => {
                    tracing::info!(volume = %name, "removed a deleted local-path volume's directory")
                }
                Err(error) => {
                    self.failed_delete(volume, error);
                    return Pass::Unsettled;
                }
            },
            Reclaim::Keep(why) => {
                tracing::info!(volume = %name, why, "kept a deleted local-path volume's directory")
            }
        }
        match remove_finalizer(api, volume, CLEANUP_FINALIZER).await {
            Ok(()) => Pass::Settled,
            Err(error) => {
                tracing::debug!(%error, volume = %name, "could not remove the cleanup finalizer; retrying");
                Pass::Unsettled
            }
        }
    }

    /// Reports a cleanup that did not happen on the volume, as upstream's provisioner reports
    /// a failed Delete.
    fn failed_delete(&self, volume: &PersistentVolume, message: String) {
        tracing::warn!(volume = %volume.name_any(), error = %message, "could not remove a local-path volume's directory");
        self.events.record(
            volume.object_ref(&()),
            "Warning",
            "VolumeFailedDelete",
            message,
        );
    }
}

/// How long a failed pass waits before the next.
const RETRY: Duration = Duration::from_secs(5);

/// Keeps `disk` in step with the volumes of node `node` until the task is aborted.
pub async fn run(client: Client, node: String, disk: Disk) {
    let api: Api<PersistentVolume> = Api::all(client.clone());
    let mut changes = watcher(api, watcher::Config::default())
        .default_backoff()
        .boxed();
    let mut local = LocalPath {
        events: Recorder::new(client.clone(), PROVISIONER).on_host(node.clone()),
        client,
        node,
        disk,
        reported: BTreeSet::new(),
    };
    loop {
        let pass = local.reconcile().await.unwrap_or_else(|error| {
            tracing::debug!(%error, "local-path pass failed; retrying");
            Pass::Unsettled
        });
        // One pass covers every change seen so far: a burst of volumes is one pass. A pass
        // that left something undone runs again after RETRY even if nothing changes.
        let changed = match pass {
            Pass::Settled => changes.next().await.is_some(),
            Pass::Unsettled => tokio::select! {
                next = changes.next() => next.is_some(),
                () = tokio::time::sleep(RETRY) => true,
            },
        };
        if !changed {
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
            "metadata": {"name": name, "uid": format!("uid-{name}"),
                         "annotations": {PROVISIONED_BY: PROVISIONER}},
            "spec": {"hostPath": {"path": format!("{ROOT}/{name}")},
                     "persistentVolumeReclaimPolicy": "Delete"},
            "status": {"phase": phase},
        });
        if let Some(node) = node {
            value["spec"]["nodeAffinity"] = json!({"required": {"nodeSelectorTerms": [
                {"matchExpressions": [
                    {"key": HOSTNAME_LABEL, "operator": "In", "values": [node]}]}]}});
        }
        serde_json::from_value(value).expect("volume")
    }

    /// `volume` being deleted behind the cleanup finalizer, with this reclaim policy.
    fn deleted(mut volume: PersistentVolume, policy: &str) -> PersistentVolume {
        volume.metadata.deletion_timestamp = Some(
            k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(jiff::Timestamp::UNIX_EPOCH),
        );
        volume.metadata.finalizers = Some(vec![
            "kubernetes.io/pv-protection".into(),
            CLEANUP_FINALIZER.into(),
        ]);
        volume
            .spec
            .get_or_insert_default()
            .persistent_volume_reclaim_policy = Some(policy.into());
        volume
    }

    fn names(names: &[&str]) -> Vec<String> {
        names.iter().map(|n| n.to_string()).collect()
    }

    fn root() -> Option<&'static Path> {
        Some(Path::new(ROOT))
    }

    fn cleanup(volume: &str, reclaim: Reclaim) -> Cleanup {
        Cleanup {
            volume: volume.into(),
            reclaim,
        }
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
        let plan = plan(&volumes, "here", root(), &names(&["pvc-made"]));
        assert_eq!(plan.create, names(&["pvc-new"]));
        assert_eq!(plan.cleanup, vec![]);
    }

    #[test]
    fn a_directory_no_volume_names_is_left_alone_and_only_reported() {
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
            "pvc-deleted-by-hand",
            "lost+found",
            "pvc-",
            "notes",
        ]);
        let plan = plan(&volumes, "here", root(), &existing);
        assert_eq!(
            plan,
            Plan {
                unclaimed: names(&["pvc-deleted-by-hand"]),
                ..Plan::default()
            }
        );
    }

    #[test]
    fn a_released_delete_volume_being_deleted_loses_its_directory_then_its_finalizer() {
        let going = deleted(volume("pvc-a", Some("here"), "Released"), "Delete");
        let plan = plan(&[going], "here", root(), &names(&["pvc-a"]));
        assert_eq!(
            plan.cleanup,
            vec![cleanup("pvc-a", Reclaim::Remove("pvc-a".into()))]
        );
        assert_eq!(plan.create, Vec::<String>::new(), "never made again");
    }

    #[test]
    fn a_volume_being_deleted_while_bound_keeps_its_directory_until_released() {
        let bound = deleted(volume("pvc-a", Some("here"), "Bound"), "Delete");
        assert_eq!(
            plan(&[bound], "here", root(), &names(&["pvc-a"])),
            Plan::default()
        );
    }

    #[test]
    fn a_volume_whose_policy_became_retain_keeps_its_directory_and_loses_the_finalizer() {
        for policy in ["Retain", "Recycle"] {
            let kept = deleted(volume("pvc-a", Some("here"), "Released"), policy);
            let plan = plan(&[kept], "here", root(), &names(&["pvc-a"]));
            assert_eq!(
                plan.cleanup,
                vec![cleanup(
                    "pvc-a",
                    Reclaim::Keep("its reclaim policy is not Delete")
                )],
                "{policy}"
            );
        }
    }

    #[test]
    fn only_this_nodes_volumes_with_the_finalizer_are_cleaned_up() {
        let mut unfinalized = deleted(volume("pvc-plain", Some("here"), "Released"), "Delete");
        unfinalized.metadata.finalizers = Some(vec!["kubernetes.io/pv-protection".into()]);
        let theirs = deleted(volume("pvc-theirs", Some("there"), "Released"), "Delete");
        let plan = plan(
            &[unfinalized, theirs],
            "here",
            root(),
            &names(&["pvc-plain", "pvc-theirs"]),
        );
        assert_eq!(plan, Plan::default());
    }

    #[test]
    fn a_directory_another_volume_names_is_kept() {
        let going = deleted(volume("pvc-a", Some("here"), "Released"), "Delete");
        let mut twin = volume("pvc-twin", Some("here"), "Bound");
        twin.spec.as_mut().expect("spec").host_path =
            Some(serde_json::from_value(json!({"path": format!("{ROOT}/pvc-a")})).expect("path"));
        let plan = plan(&[going, twin], "here", root(), &names(&["pvc-a"]));
        assert_eq!(
            plan.cleanup,
            vec![cleanup(
                "pvc-a",
                Reclaim::Keep("another volume names the same directory")
            )]
        );
    }

    #[test]
    fn a_volume_outside_the_root_is_never_touched() {
        let mut outside = volume("pvc-out", Some("here"), "Bound");
        outside.spec.as_mut().expect("spec").host_path =
            Some(serde_json::from_value(json!({"path": "/etc/pvc-out"})).expect("path"));
        assert_eq!(directory_under(&outside, root()), None);
        assert_eq!(
            plan(std::slice::from_ref(&outside), "here", root(), &[]),
            Plan::default()
        );
        let mut nested = volume("pvc-x", Some("here"), "Bound");
        nested.spec.as_mut().expect("spec").host_path = Some(
            serde_json::from_value(json!({"path": format!("{ROOT}/deep/pvc-x")})).expect("path"),
        );
        assert_eq!(directory_under(&nested, root()), None);
        let mut going = deleted(outside, "Delete");
        going.status.get_or_insert_default().phase = Some("Released".into());
        let plan = plan(&[going], "here", root(), &[]);
        assert_eq!(
            plan.cleanup,
            vec![cleanup(
                "pvc-out",
                Reclaim::Refuse(
                    "refusing to remove \"/etc/pvc-out\": not a provisioned directory directly under /data/volumes"
                        .into()
                )
            )]
        );
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
    fn the_bookkeeping_disk_makes_and_removes_nothing_on_this_machine() {
        let disk = Disk::bookkeeping();
        let volume = volume("pvc-sim", Some("here"), "Bound");
        let made = plan(
            std::slice::from_ref(&volume),
            "here",
            disk.root(),
            &disk.list().expect("list"),
        );
        assert_eq!(made.create, names(&["pvc-sim"]));
        disk.create("pvc-sim").expect("create");
        assert_eq!(disk.list().expect("list"), names(&["pvc-sim"]));
        assert!(!Path::new(ROOT).join("pvc-sim").exists());
        let mut elsewhere = deleted(volume, "Delete");
        elsewhere.status.get_or_insert_default().phase = Some("Released".into());
        elsewhere.spec.as_mut().expect("spec").host_path =
            Some(serde_json::from_value(json!({"path": "/anywhere/data"})).expect("path"));
        let cleaned = plan(&[elsewhere], "here", disk.root(), &[]);
        assert_eq!(
            cleaned.cleanup,
            vec![cleanup(
                "pvc-sim",
                Reclaim::Keep("the node's disk is bookkeeping")
            )]
        );
    }

    /// A fresh directory under the system's temporary directory, removed when dropped.
    struct Scratch(PathBuf);

    impl Scratch {
        fn new(test: &str) -> Self {
            let path = std::env::temp_dir()
                .join(format!("petset-local-path-{test}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&path);
            std::fs::create_dir_all(&path).expect("scratch directory");
            Self(path)
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    #[test]
    fn a_removal_never_follows_a_link_out_of_the_root() {
        let scratch = Scratch::new("links");
        let root = scratch.0.join("volumes");
        let outside = scratch.0.join("precious");
        std::fs::create_dir_all(&outside).expect("outside");
        std::fs::write(outside.join("data"), "kept").expect("data");
        std::fs::create_dir_all(root.join("pvc-real")).expect("volume");
        std::os::unix::fs::symlink(&outside, root.join("pvc-real").join("escape")).expect("link");
        std::os::unix::fs::symlink(&outside, root.join("pvc-link")).expect("link");
        let disk = Disk::Host(root.clone());
        assert_eq!(
            disk.list().expect("list"),
            names(&["pvc-real"]),
            "links are not listed"
        );

        let refused = disk.remove("pvc-link");
        assert!(refused.is_err(), "{refused:?}");
        assert!(root.join("pvc-link").is_symlink(), "the link stays");
        disk.remove("pvc-real").expect("a real directory goes");
        assert!(!root.join("pvc-real").exists());
        disk.remove("pvc-real").expect("gone already is done");
        assert_eq!(
            std::fs::read_to_string(outside.join("data"))
                .ok()
                .as_deref(),
            Some("kept"),
            "what the links pointed at is untouched"
        );
        assert!(disk.remove("notes").is_err(), "not a provisioned name");
    }
}
