//! The kubelet's events about pods and their containers, with upstream's reasons, types and
//! messages (`pkg/kubelet/events`, the image manager, the runtime manager, the prober), each
//! about the pod with the container as `fieldPath` (`spec.containers{name}`), so `kubectl
//! describe pod` lists them as it does on a kubelet's node.

use k8s_openapi::api::core::v1::{ObjectReference, Pod};
use kube::{Resource, ResourceExt};
use petset_informer::events::Recorder;

pub const NORMAL: &str = "Normal";
pub const WARNING: &str = "Warning";

/// The reasons, as upstream names them.
pub mod reason {
    pub const PULLED: &str = "Pulled";
    pub const FAILED: &str = "Failed";
    pub const BACK_OFF: &str = "BackOff";
    pub const CREATED: &str = "Created";
    pub const STARTED: &str = "Started";
    pub const KILLING: &str = "Killing";
    pub const UNHEALTHY: &str = "Unhealthy";
    pub const FAILED_MOUNT: &str = "FailedMount";
}

/// Which container of the pod an event is about.
#[derive(Debug, Clone, Copy)]
pub struct ContainerOf<'a> {
    pub name: &'a str,
    pub init: bool,
}

/// The pod as events name it; with a container, its `fieldPath` too.
pub fn reference(pod: &Pod, container: Option<ContainerOf<'_>>) -> ObjectReference {
    ObjectReference {
        field_path: container.map(field_path),
        ..pod.object_ref(&())
    }
}

pub fn field_path(container: ContainerOf<'_>) -> String {
    let list = if container.init {
        "initContainers"
    } else {
        "containers"
    };
    format!("spec.{list}{{{}}}", container.name)
}

/// Records the kubelet's events (source `kubelet`, host the node).
#[derive(Clone)]
pub struct KubeletEvents(Recorder);

impl KubeletEvents {
    pub fn new(client: kube::Client, node_name: &str) -> Self {
        Self(Recorder::new(client, "kubelet").on_host(node_name.to_string()))
    }

    pub fn record(
        &self,
        pod: &Pod,
        container: Option<ContainerOf<'_>>,
        type_: &str,
        reason: &str,
        message: String,
    ) {
        self.0
            .record(reference(pod, container), type_, reason, message);
    }
}

pub fn pulled(image: &str) -> String {
    format!("Container image \"{image}\" already present on machine")
}

pub fn failed_to_pull(image: &str, error: &str) -> String {
    format!("Failed to pull image \"{image}\": {error}")
}

pub fn back_off_pulling(image: &str) -> String {
    format!("Back-off pulling image \"{image}\"")
}

/// The waiting message of a container whose image is in back-off: the back-off and the last
/// pull's error, so the status still says how to get the image.
pub fn back_off_pulling_status(image: &str, last_error: &str) -> String {
    format!("{}: ErrImagePull: {last_error}", back_off_pulling(image))
}

/// The `Failed` event that repeats a container's waiting reason or start error.
pub fn error(detail: &str) -> String {
    format!("Error: {detail}")
}

pub fn created(container: &str) -> String {
    format!("Created container: {container}")
}

pub fn started(container: &str) -> String {
    format!("Started container {container}")
}

pub fn stopping(container: &str) -> String {
    format!("Stopping container {container}")
}

/// `pod` as upstream's `format.Pod` writes it: `name_namespace(uid)`.
pub fn pod_text(pod: &Pod) -> String {
    format!(
        "{}_{}({})",
        pod.name_any(),
        pod.namespace().unwrap_or_default(),
        pod.uid().unwrap_or_default()
    )
}

pub fn back_off_restarting(container: &str, pod: &Pod) -> String {
    format!(
        "Back-off restarting failed container {container} in pod {}",
        pod_text(pod)
    )
}

/// The kinds of probe, as the prober names them in its events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProbeKind {
    Startup,
    Readiness,
    Liveness,
}

impl ProbeKind {
    fn title(self) -> &'static str {
        match self {
            ProbeKind::Startup => "Startup",
            ProbeKind::Readiness => "Readiness",
            ProbeKind::Liveness => "Liveness",
        }
    }
}

pub fn unhealthy(kind: ProbeKind, output: &str) -> String {
    format!("{} probe failed: {output}", kind.title())
}

/// The `Killing` message of a container its liveness or startup probe failed.
pub fn failed_probe_restart(container: &str, kind: ProbeKind) -> String {
    format!(
        "Container {container} failed {} probe, will be restarted",
        kind.title().to_lowercase()
    )
}

/// What a probe checked, for its failure message.
#[derive(Debug, Clone)]
pub enum ProbeTarget {
    Exec { command: String },
    Http { url: String, address: String },
    Tcp { address: String },
}

/// The prober's message for a failed probe, from what the probe printed: an exec probe's
/// output as it is; for network probes, the `petset probe` error in the words of the
/// kubelet's HTTP and TCP probers.
pub fn probe_failure(target: &ProbeTarget, printed: &str) -> String {
    let detail = printed.trim();
    let error = detail.strip_prefix("error: ").unwrap_or(detail);
    let refused = error.contains("Connection refused");
    match target {
        ProbeTarget::Exec { .. } => printed.to_string(),
        ProbeTarget::Http { url, address } => {
            if let Some(code) = error.strip_prefix("HTTP status ") {
                format!("HTTP probe failed with statuscode: {code}")
            } else if refused {
                format!("Get \"{url}\": dial tcp {address}: connect: connection refused")
            } else {
                format!("Get \"{url}\": {error}")
            }
        }
        ProbeTarget::Tcp { address } if refused => {
            format!("dial tcp {address}: connect: connection refused")
        }
        ProbeTarget::Tcp { address } => format!("dial tcp {address}: {error}"),
    }
}

/// The prober's message for a probe that ran out of time.
pub fn probe_timeout(target: &ProbeTarget) -> String {
    match target {
        ProbeTarget::Exec { command } => format!("command \"{command}\" timed out"),
        ProbeTarget::Http { url, .. } => format!(
            "Get \"{url}\": context deadline exceeded (Client.Timeout exceeded while awaiting headers)"
        ),
        ProbeTarget::Tcp { address } => format!("dial tcp {address}: i/o timeout"),
    }
}

pub fn failed_mount(volume: &str, error: &str) -> String {
    format!("MountVolume.SetUp failed for volume \"{volume}\" : {error}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod() -> Pod {
        serde_json::from_value(json!({"metadata": {"name": "web-0", "namespace": "shop",
            "uid": "u-1", "resourceVersion": "7"}}))
        .expect("pod")
    }

    #[test]
    fn references_name_the_container_by_its_field_path() {
        let reference = reference(
            &pod(),
            Some(ContainerOf {
                name: "init-config",
                init: true,
            }),
        );
        assert_eq!(
            reference.field_path.as_deref(),
            Some("spec.initContainers{init-config}")
        );
        assert_eq!(reference.kind.as_deref(), Some("Pod"));
        assert_eq!(reference.uid.as_deref(), Some("u-1"));
        let app = ContainerOf {
            name: "main",
            init: false,
        };
        assert_eq!(field_path(app), "spec.containers{main}");
        assert_eq!(super::reference(&pod(), None).field_path, None);
    }

    #[test]
    fn messages_read_as_upstream_writes_them() {
        assert_eq!(
            pulled("busybox:1.36"),
            "Container image \"busybox:1.36\" already present on machine"
        );
        assert_eq!(created("main"), "Created container: main");
        assert_eq!(started("main"), "Started container main");
        assert_eq!(stopping("main"), "Stopping container main");
        assert_eq!(
            back_off_restarting("main", &pod()),
            "Back-off restarting failed container main in pod web-0_shop(u-1)"
        );
        assert_eq!(
            unhealthy(
                ProbeKind::Readiness,
                "HTTP probe failed with statuscode: 503"
            ),
            "Readiness probe failed: HTTP probe failed with statuscode: 503"
        );
        assert_eq!(
            failed_probe_restart("main", ProbeKind::Liveness),
            "Container main failed liveness probe, will be restarted"
        );
        assert_eq!(
            failed_mount("config", "configmap \"x\" not found"),
            "MountVolume.SetUp failed for volume \"config\" : configmap \"x\" not found"
        );
        assert_eq!(
            back_off_pulling_status("a:1", "not here"),
            "Back-off pulling image \"a:1\": ErrImagePull: not here"
        );
        assert_eq!(error("ImagePullBackOff"), "Error: ImagePullBackOff");
    }

    #[test]
    fn probe_failures_read_as_the_kubelets_probers_write_them() {
        let http = ProbeTarget::Http {
            url: "http://10.244.0.2:8080/ready".into(),
            address: "10.244.0.2:8080".into(),
        };
        assert_eq!(
            probe_failure(&http, "error: HTTP status 404\n"),
            "HTTP probe failed with statuscode: 404"
        );
        assert_eq!(
            probe_failure(&http, "error: Connection refused (os error 111)\n"),
            "Get \"http://10.244.0.2:8080/ready\": dial tcp 10.244.0.2:8080: connect: connection refused"
        );
        let tcp = ProbeTarget::Tcp {
            address: "10.244.0.2:5432".into(),
        };
        assert_eq!(
            probe_failure(&tcp, "error: Connection refused (os error 111)"),
            "dial tcp 10.244.0.2:5432: connect: connection refused"
        );
        let exec = ProbeTarget::Exec {
            command: "cat /tmp/alive".into(),
        };
        assert_eq!(
            probe_failure(
                &exec,
                "cat: can't open '/tmp/alive': No such file or directory\n"
            ),
            "cat: can't open '/tmp/alive': No such file or directory\n"
        );
        assert_eq!(probe_timeout(&exec), "command \"cat /tmp/alive\" timed out");
        assert_eq!(probe_timeout(&tcp), "dial tcp 10.244.0.2:5432: i/o timeout");
    }
}
