//! Each volume of a pod as a directory on this machine: claims through their volume's
//! directory (made here if the node's local-path reconciler has not yet), emptyDir, hostPath,
//! and configMap, secret, downward API and projected files under the pod's directory, each
//! written as one version at a time (`atomic_writer`). A projected `serviceAccountToken`
//! source is a TokenRequest bound to the pod (`tokens`), renewed while the pod runs
//! (`PodRun::refresh_tokens`).

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use jiff::Timestamp;
use k8s_openapi::api::core::v1::{
    ConfigMap, Container, DownwardAPIVolumeFile, KeyToPath, PersistentVolume,
    PersistentVolumeClaim, PodSpec, ProjectedVolumeSource, Secret,
};
use kube::api::Api;
use petset_runtime::pods::Mount;

use super::atomic_writer::{self, File};
use super::tokens::{self, TokenState};
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
    /// Each volume's directory on this machine, and whether it is read-only; and where the
    /// tokens of each projected volume with tokens stand.
    pub(super) async fn volumes(&self, spec: &PodSpec) -> Result<(Volumes, Tokens), Waiting> {
        let mut tokens = Tokens::new();
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
                let default_mode = mode_bits(source.default_mode);
                let optional = source.optional == Some(true);
                let data = match self.config_map_data(&source.name).await {
                    Ok(Some(data)) => data,
                    Ok(None) if optional => BTreeMap::new(),
                    Ok(None) => {
                        return Err(config_error(format!(
                            "configmap \"{}\" not found",
                            source.name
                        )));
                    }
                    Err(error) => return Err(config_error(error)),
                };
                let items = source.items.as_deref().unwrap_or_default();
                let files = key_files(&data, items, default_mode, optional, KeyKind::ConfigMap)
                    .map_err(&config_error)?;
                (
                    write_volume(&pod_dir, "configmap", &name, &files).map_err(config_error)?,
                    true,
                )
            } else if let Some(source) = &volume.secret {
                let secret_name = source.secret_name.clone().unwrap_or_default();
                let default_mode = mode_bits(source.default_mode);
                let optional = source.optional == Some(true);
                let data = match self.secret_data(&secret_name).await {
                    Ok(Some(data)) => data,
                    Ok(None) if optional => BTreeMap::new(),
                    Ok(None) => {
                        return Err(config_error(format!("secret \"{secret_name}\" not found")));
                    }
                    Err(error) => return Err(config_error(error)),
                };
                let items = source.items.as_deref().unwrap_or_default();
                let files = key_files(&data, items, default_mode, optional, KeyKind::Secret)
                    .map_err(&config_error)?;
                (
                    write_volume(&pod_dir, "secret", &name, &files).map_err(config_error)?,
                    true,
                )
            } else if let Some(source) = &volume.downward_api {
                let items = source.items.as_deref().unwrap_or_default();
                let files = self
                    .downward_files(spec, items, mode_bits(source.default_mode))
                    .map_err(&config_error)?;
                (
                    write_volume(&pod_dir, "downward-api", &name, &files).map_err(config_error)?,
                    true,
                )
            } else if let Some(source) = &volume.projected {
                let (files, refresh) = self
                    .projected_files(spec, source)
                    .await
                    .map_err(&config_error)?;
                if let Some(state) = refresh {
                    tokens.insert(name.clone(), state);
                }
                (
                    write_volume(&pod_dir, "projected", &name, &files).map_err(config_error)?,
                    true,
                )
            } else {
                // Volume kinds a node of petset does not provide (cloud disks, NFS, CSI, …):
                // an empty directory, so the pod still runs.
                let path = pod_dir.join("volumes").join("other").join(&name);
                std::fs::create_dir_all(&path).map_err(|e| config_error(e.to_string()))?;
                (path, true)
            };
            volumes.insert(name, path);
        }
        Ok((volumes, tokens))
    }

    /// A ConfigMap's `data` and `binaryData` (`None`: there is no such ConfigMap).
    async fn config_map_data(
        &self,
        name: &str,
    ) -> Result<Option<BTreeMap<String, Vec<u8>>>, String> {
        let maps: Api<ConfigMap> = Api::namespaced(self.shared.client.clone(), &self.namespace());
        let map = maps.get_opt(name).await.map_err(api_error)?;
        Ok(map.map(|map| {
            let text = map
                .data
                .unwrap_or_default()
                .into_iter()
                .map(|(k, v)| (k, v.into_bytes()));
            let binary = map
                .binary_data
                .unwrap_or_default()
                .into_iter()
                .map(|(k, v)| (k, v.0));
            text.chain(binary).collect()
        }))
    }

    /// A Secret's `data` (`None`: there is no such Secret).
    async fn secret_data(&self, name: &str) -> Result<Option<BTreeMap<String, Vec<u8>>>, String> {
        let secrets: Api<Secret> = Api::namespaced(self.shared.client.clone(), &self.namespace());
        let secret = secrets.get_opt(name).await.map_err(api_error)?;
        Ok(secret.map(|secret| {
            secret
                .data
                .unwrap_or_default()
                .into_iter()
                .map(|(k, v)| (k, v.0))
                .collect()
        }))
    }

    /// The files of downward-API items (a volume's or a projected source's).
    fn downward_files(
        &self,
        spec: &PodSpec,
        items: &[DownwardAPIVolumeFile],
        default_mode: u32,
    ) -> Result<BTreeMap<String, File>, String> {
        let pod = self.pod_json();
        let mut files = BTreeMap::new();
        for item in items {
            let value = if let Some(field) = &item.field_ref {
                field_value(&pod, &field.field_path)
            } else if let Some(selector) = &item.resource_field_ref {
                // A volume names its container; upstream's validation requires it.
                let target = selector
                    .container_name
                    .as_deref()
                    .and_then(|n| crate::environment::find_container(spec, n))
                    .ok_or_else(|| {
                        format!(
                            "container {:?} of item {:?} not found in the pod",
                            selector.container_name.clone().unwrap_or_default(),
                            item.path
                        )
                    })?;
                resource_value(
                    target,
                    &selector.resource,
                    selector.divisor.as_ref().map(|d| d.0.as_str()),
                    &self.shared.allocatable,
                )?
            } else {
                continue;
            };
            let mode = item.mode.map_or(default_mode, |m| mode_bits(Some(m)));
            files.insert(
                item.path.clone(),
                File {
                    content: value.into_bytes(),
                    mode,
                },
            );
        }
        Ok(files)
    }

    /// A projected volume's files, source after source (a later source's file of the same
    /// path wins, as upstream), and when its first token is to be renewed.
    async fn projected_files(
        &self,
        spec: &PodSpec,
        source: &ProjectedVolumeSource,
    ) -> Result<(BTreeMap<String, File>, Option<TokenState>), String> {
        let default_mode = mode_bits(source.default_mode);
        let mut files = BTreeMap::new();
        let mut refresh: Option<TokenState> = None;
        for projection in source.sources.iter().flatten() {
            if let Some(token) = &projection.service_account_token {
                let account = spec
                    .service_account_name
                    .as_deref()
                    .or(spec.service_account.as_deref())
                    .filter(|name| !name.is_empty())
                    .unwrap_or("default");
                let (namespace, pod_name, pod_uid) = (
                    self.namespace(),
                    self.pod.metadata.name.clone().unwrap_or_default(),
                    self.pod.metadata.uid.clone().unwrap_or_default(),
                );
                let issued = tokens::request(
                    &self.shared.client,
                    &tokens::TokenFor {
                        namespace: &namespace,
                        service_account: account,
                        pod_name: &pod_name,
                        pod_uid: &pod_uid,
                    },
                    token.audience.as_deref(),
                    token
                        .expiration_seconds
                        .unwrap_or(tokens::DEFAULT_EXPIRATION_SECONDS),
                )
                .await?;
                let state = TokenState::Issued {
                    issued: issued.issued,
                    expires: issued.expires,
                };
                // A token due at once (a server that grants very short lives, or a clock
                // ahead of the server's) is renewed after a pause, never in a busy loop.
                let state = if state.is_due(Timestamp::now()) {
                    TokenState::RetryAt(
                        Timestamp::now()
                            .checked_add(TOKEN_RETRY)
                            .unwrap_or(Timestamp::MAX),
                    )
                } else {
                    state
                };
                refresh = Some(refresh.map_or(state, |r| r.earlier(state)));
                files.insert(
                    token.path.clone(),
                    File {
                        content: issued.token.into_bytes(),
                        mode: default_mode,
                    },
                );
            } else if let Some(map) = &projection.config_map {
                let optional = map.optional == Some(true);
                match self.config_map_data(&map.name).await? {
                    Some(data) => {
                        let items = map.items.as_deref().unwrap_or_default();
                        files.extend(key_files(
                            &data,
                            items,
                            default_mode,
                            optional,
                            KeyKind::ConfigMap,
                        )?);
                    }
                    None if optional => {}
                    None => return Err(format!("configmap \"{}\" not found", map.name)),
                }
            } else if let Some(secret) = &projection.secret {
                let optional = secret.optional == Some(true);
                match self.secret_data(&secret.name).await? {
                    Some(data) => {
                        let items = secret.items.as_deref().unwrap_or_default();
                        files.extend(key_files(
                            &data,
                            items,
                            default_mode,
                            optional,
                            KeyKind::Secret,
                        )?);
                    }
                    None if optional => {}
                    None => return Err(format!("secret \"{}\" not found", secret.name)),
                }
            } else if let Some(downward) = &projection.downward_api {
                let items = downward.items.as_deref().unwrap_or_default();
                files.extend(self.downward_files(spec, items, default_mode)?);
            }
        }
        Ok((files, refresh))
    }

    /// Writes again, with new tokens, the projected volumes whose tokens are due
    /// (`tokens::requires_refresh`), and says where they stand now. A failed TokenRequest
    /// keeps the old token, is a FailedMount event, and is tried again in `TOKEN_RETRY`.
    pub(super) async fn refresh_tokens(&self, current: &Tokens) -> Tokens {
        let spec = self.spec();
        let pod_dir = self.shared.runtime.pod_dir(&self.id);
        let now = Timestamp::now();
        let mut next = current.clone();
        for volume in spec.volumes.iter().flatten() {
            let (Some(source), Some(state)) = (&volume.projected, current.get(&volume.name)) else {
                continue;
            };
            if !state.is_due(now) {
                continue;
            }
            let written = match self.projected_files(&spec, source).await {
                Ok((files, refresh)) => {
                    write_volume(&pod_dir, "projected", &volume.name, &files).map(|_| refresh)
                }
                Err(error) => Err(error),
            };
            let state = match written {
                Ok(Some(state)) => state,
                Ok(None) => continue,
                Err(error) => {
                    let message = events::failed_mount(&volume.name, &error);
                    self.event(None, events::WARNING, reason::FAILED_MOUNT, message);
                    TokenState::RetryAt(now.checked_add(TOKEN_RETRY).unwrap_or(Timestamp::MAX))
                }
            };
            next.insert(volume.name.clone(), state);
        }
        next
    }
}

/// Where the tokens of each projected volume with tokens stand, by volume.
pub(super) type Tokens = BTreeMap<String, TokenState>;

/// How soon a failed token renewal is tried again.
const TOKEN_RETRY: std::time::Duration = std::time::Duration::from_secs(10);

/// An API error as the kubelet words it: the Status's message.
fn api_error(error: kube::Error) -> String {
    match error {
        kube::Error::Api(status) => status.message.clone(),
        other => other.to_string(),
    }
}

/// A `defaultMode` or `mode` as permission bits (upstream's default 0644 when unset; only the
/// permission bits count).
fn mode_bits(mode: Option<i32>) -> u32 {
    mode.and_then(|m| u32::try_from(m).ok())
        .map_or(0o644, |m| m & 0o777)
}

/// Which kind of object a `KeyToPath` item names a key of, for upstream's words.
#[derive(Clone, Copy)]
enum KeyKind {
    ConfigMap,
    Secret,
}

/// A ConfigMap's or Secret's files: every key, or only the listed items at their paths, each
/// with its own mode or the default. A listed key the object lacks is an error unless the
/// source is optional.
fn key_files(
    data: &BTreeMap<String, Vec<u8>>,
    items: &[KeyToPath],
    default_mode: u32,
    optional: bool,
    kind: KeyKind,
) -> Result<BTreeMap<String, File>, String> {
    if items.is_empty() {
        return Ok(data
            .iter()
            .map(|(key, content)| {
                let file = File {
                    content: content.clone(),
                    mode: default_mode,
                };
                (key.clone(), file)
            })
            .collect());
    }
    let mut files = BTreeMap::new();
    for item in items {
        let Some(content) = data.get(&item.key) else {
            if optional {
                continue;
            }
            return Err(match kind {
                KeyKind::ConfigMap => {
                    format!("configmap references non-existent config key: {}", item.key)
                }
                KeyKind::Secret => {
                    format!("secret references non-existent secret key: {}", item.key)
                }
            });
        };
        let mode = item.mode.map_or(default_mode, |m| mode_bits(Some(m)));
        files.insert(
            item.path.clone(),
            File {
                content: content.clone(),
                mode,
            },
        );
    }
    Ok(files)
}

/// Writes a volume's files under the pod's directory, one version at a time.
fn write_volume(
    pod_dir: &Path,
    kind: &str,
    name: &str,
    files: &BTreeMap<String, File>,
) -> Result<PathBuf, String> {
    let dir = pod_dir.join("volumes").join(kind).join(name);
    atomic_writer::write(&dir, files).map_err(|e| e.to_string())?;
    Ok(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(key: &str, path: &str, mode: Option<i32>) -> KeyToPath {
        KeyToPath {
            key: key.into(),
            path: path.into(),
            mode,
        }
    }

    fn data() -> BTreeMap<String, Vec<u8>> {
        [("a", "1"), ("b", "2")]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()))
            .collect()
    }

    #[test]
    fn every_key_or_the_listed_items_with_their_modes() {
        let all = key_files(&data(), &[], 0o644, false, KeyKind::ConfigMap).expect("all");
        assert_eq!(all.keys().collect::<Vec<_>>(), ["a", "b"]);
        let listed = key_files(
            &data(),
            &[item("b", "dir/b.txt", Some(0o400))],
            0o644,
            false,
            KeyKind::ConfigMap,
        )
        .expect("listed");
        assert_eq!(
            listed,
            BTreeMap::from([(
                "dir/b.txt".to_string(),
                File {
                    content: b"2".to_vec(),
                    mode: 0o400
                }
            )])
        );
    }

    #[test]
    fn a_missing_key_is_an_error_unless_optional() {
        let missing = [item("nope", "x", None)];
        assert_eq!(
            key_files(&data(), &missing, 0o644, false, KeyKind::ConfigMap),
            Err("configmap references non-existent config key: nope".to_string())
        );
        assert_eq!(
            key_files(&data(), &missing, 0o644, false, KeyKind::Secret),
            Err("secret references non-existent secret key: nope".to_string())
        );
        assert_eq!(
            key_files(&data(), &missing, 0o644, true, KeyKind::Secret),
            Ok(BTreeMap::new())
        );
    }

    #[test]
    fn modes_keep_only_permission_bits() {
        assert_eq!(mode_bits(None), 0o644);
        assert_eq!(mode_bits(Some(420)), 0o644);
        assert_eq!(mode_bits(Some(0o4755)), 0o755);
        assert_eq!(mode_bits(Some(-1)), 0o644);
    }
}
