//! Each volume of a pod as a directory on this machine: claims through their volume's
//! directory (made here if the node's local-path reconciler has not yet), emptyDir, hostPath,
//! configMap, secret and downward API files under the pod's directory.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::{
    ConfigMap, Container, PersistentVolume, PersistentVolumeClaim, PodSpec, Secret,
};
use kube::api::Api;
use petset_runtime::pods::Mount;

use super::worker::{PodRun, Waiting};
use crate::downward::{field_value, resource_value};
use crate::kubelet_events::{self as events, reason};

/// A volume's directory, and whether the volume is read-only.
pub(super) type Volumes = HashMap<String, (PathBuf, bool)>;

/// A container's mounts of the pod's volumes.
pub(super) fn mounts(container: &Container, volumes: &Volumes) -> Result<Vec<Mount>, Waiting> {
    let mut mounts = Vec::new();
    for mount in container.volume_mounts.iter().flatten() {
        let Some((source, read_only)) = volumes.get(&mount.name) else {
            return Err(Waiting {
                reason: "CreateContainerConfigError".into(),
                message: Some(format!("volume {:?} is not defined in the pod", mount.name)),
                container: Some(container.name.clone()),
            });
        };
        let source = match mount.sub_path.as_deref().filter(|p| !p.is_empty()) {
            Some(sub) if !sub.split('/').any(|c| c == "..") => {
                let path = source.join(sub);
                let _ = std::fs::create_dir_all(&path);
                path
            }
            _ => source.clone(),
        };
        mounts.push(Mount {
            source,
            destination: mount.mount_path.clone(),
            read_only: mount.read_only.unwrap_or(false) || *read_only,
        });
    }
    Ok(mounts)
}

impl PodRun {
    /// Each volume's directory on this machine, and whether it is read-only.
    pub(super) async fn volumes(&self, spec: &PodSpec) -> Result<Volumes, Waiting> {
        let namespace = self.namespace();
        let pod_dir = self.shared.runtime.pod_dir(&self.id);
        let mut volumes = HashMap::new();
        for volume in spec.volumes.iter().flatten() {
            let name = volume.name.clone();
            // As the kubelet's volume manager: the pod waits in ContainerCreating, and the
            // reason is a FailedMount event.
            let config_error = |message: String| {
                let message = events::failed_mount(&name, &message);
                self.event(None, events::WARNING, reason::FAILED_MOUNT, message);
                Waiting {
                    reason: "ContainerCreating".into(),
                    message: None,
                    container: None,
                }
            };
            let path = if let Some(claim) = &volume.persistent_volume_claim {
                let claims: Api<PersistentVolumeClaim> =
                    Api::namespaced(self.shared.client.clone(), &namespace);
                let bound = claims
                    .get_opt(&claim.claim_name)
                    .await
                    .ok()
                    .flatten()
                    .and_then(|c| c.spec.and_then(|s| s.volume_name));
                let Some(volume_name) = bound else {
                    return Err(Waiting::all(
                        "ContainerCreating",
                        format!(
                            "persistentvolumeclaim \"{}\" is not bound",
                            claim.claim_name
                        ),
                    ));
                };
                let volumes_api: Api<PersistentVolume> = Api::all(self.shared.client.clone());
                let host_path = volumes_api
                    .get_opt(&volume_name)
                    .await
                    .ok()
                    .flatten()
                    .and_then(|v| v.spec)
                    .and_then(|s| s.host_path.map(|h| h.path).or(s.local.map(|l| l.path)));
                let Some(host_path) = host_path else {
                    return Err(config_error(format!(
                        "persistentvolume {volume_name:?} has no local path this node can mount"
                    )));
                };
                let path = PathBuf::from(host_path);
                // The pod never races the node's local-path reconciler: whichever comes
                // first makes the directory.
                crate::local_path::ensure_directory(&path).map_err(&config_error)?;
                (path, claim.read_only.unwrap_or(false))
            } else if let Some(host) = &volume.host_path {
                let path = PathBuf::from(&host.path);
                if matches!(host.type_.as_deref(), Some("DirectoryOrCreate")) {
                    let _ = std::fs::create_dir_all(&path);
                }
                (path, false)
            } else if volume.empty_dir.is_some() {
                let path = pod_dir.join("volumes").join("empty-dir").join(&name);
                std::fs::create_dir_all(&path).map_err(|e| config_error(e.to_string()))?;
                (path, false)
            } else if let Some(source) = &volume.config_map {
                let maps: Api<ConfigMap> = Api::namespaced(self.shared.client.clone(), &namespace);
                let data = match maps.get_opt(&source.name).await.ok().flatten() {
                    Some(map) => map
                        .data
                        .unwrap_or_default()
                        .into_iter()
                        .map(|(k, v)| (k, v.into_bytes()))
                        .collect(),
                    None if source.optional == Some(true) => BTreeMap::new(),
                    None => {
                        return Err(config_error(format!(
                            "configmap \"{}\" not found",
                            source.name
                        )));
                    }
                };
                let items = key_paths(source.items.iter().flatten().map(|i| (&i.key, &i.path)));
                (
                    write_files(&pod_dir, "configmap", &name, &data, &items)
                        .map_err(config_error)?,
                    true,
                )
            } else if let Some(source) = &volume.secret {
                let secret_name = source.secret_name.clone().unwrap_or_default();
                let secrets: Api<Secret> = Api::namespaced(self.shared.client.clone(), &namespace);
                let data = match secrets.get_opt(&secret_name).await.ok().flatten() {
                    Some(secret) => secret
                        .data
                        .unwrap_or_default()
                        .into_iter()
                        .map(|(k, v)| (k, v.0))
                        .collect(),
                    None if source.optional == Some(true) => BTreeMap::new(),
                    None => {
                        return Err(config_error(format!("secret \"{secret_name}\" not found")));
                    }
                };
                let items = key_paths(source.items.iter().flatten().map(|i| (&i.key, &i.path)));
                (
                    write_files(&pod_dir, "secret", &name, &data, &items).map_err(config_error)?,
                    true,
                )
            } else if let Some(source) = &volume.downward_api {
                let pod = self.pod_json();
                let mut data = BTreeMap::new();
                for item in source.items.iter().flatten() {
                    let value = if let Some(field) = &item.field_ref {
                        field_value(&pod, &field.field_path)
                    } else if let Some(selector) = &item.resource_field_ref {
                        // A volume names its container; upstream's validation requires it.
                        let target = selector
                            .container_name
                            .as_deref()
                            .and_then(|n| crate::environment::find_container(spec, n))
                            .ok_or_else(|| {
                                config_error(format!(
                                    "container {:?} of item {:?} not found in the pod",
                                    selector.container_name.clone().unwrap_or_default(),
                                    item.path
                                ))
                            })?;
                        resource_value(
                            target,
                            &selector.resource,
                            selector.divisor.as_ref().map(|d| d.0.as_str()),
                            &self.shared.allocatable,
                        )
                        .map_err(config_error)?
                    } else {
                        continue;
                    };
                    data.insert(item.path.clone(), value.into_bytes());
                }
                (
                    write_files(&pod_dir, "downward-api", &name, &data, &[])
                        .map_err(config_error)?,
                    true,
                )
            } else {
                // Projected service-account tokens and the rest: an empty directory for now.
                let path = pod_dir.join("volumes").join("other").join(&name);
                std::fs::create_dir_all(&path).map_err(|e| config_error(e.to_string()))?;
                (path, true)
            };
            volumes.insert(name, path);
        }
        Ok(volumes)
    }
}

/// A configMap's or secret's `items` as (key, path) pairs.
fn key_paths<'a>(items: impl Iterator<Item = (&'a String, &'a String)>) -> Vec<(String, String)> {
    items.map(|(k, p)| (k.clone(), p.clone())).collect()
}

/// Writes a volume's files (all keys, or the listed items) under the pod's directory.
fn write_files(
    pod_dir: &Path,
    kind: &str,
    name: &str,
    data: &BTreeMap<String, Vec<u8>>,
    items: &[(String, String)],
) -> Result<PathBuf, String> {
    let dir = pod_dir.join("volumes").join(kind).join(name);
    // Emptied, not removed: a container taken over after a restart of the node has this
    // directory bind-mounted, and sees the new files only in the same directory.
    if let Ok(entries) = std::fs::read_dir(&dir) {
        for entry in entries.filter_map(Result::ok) {
            let path = entry.path();
            let _ = if entry.file_type().is_ok_and(|t| t.is_dir()) {
                std::fs::remove_dir_all(&path)
            } else {
                std::fs::remove_file(&path)
            };
        }
    }
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let files: Vec<(String, &Vec<u8>)> = if items.is_empty() {
        data.iter().map(|(k, v)| (k.clone(), v)).collect()
    } else {
        items
            .iter()
            .filter_map(|(key, path)| data.get(key).map(|v| (path.clone(), v)))
            .collect()
    };
    for (path, content) in files {
        if path.split('/').any(|c| c == ".." || c.is_empty()) {
            return Err(format!("invalid path {path:?} in volume {name:?}"));
        }
        let target = dir.join(&path);
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent).map_err(|e| format!("{}: {e}", parent.display()))?;
        }
        std::fs::write(&target, content).map_err(|e| format!("{}: {e}", target.display()))?;
    }
    Ok(dir)
}
