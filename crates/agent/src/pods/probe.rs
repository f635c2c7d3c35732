//! Probes as the kubelet runs them: the startup probe first (until it passes nothing else
//! runs), then readiness and liveness, each counted against its thresholds
//! (`crate::probes::ProbeState`); a container that fails its liveness or startup probe is
//! killed, and restarts as its policy says. TCP and HTTP probes run inside the pod's network
//! namespace (the runtime's `probe_command`), so nothing outside it is dialed.

use std::time::Duration;

use k8s_openapi::api::core::v1::{Container, Probe};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use tokio::time::Instant;

use super::worker::PodRun;
use crate::kubelet_events::{self as events, ContainerOf, ProbeKind, ProbeTarget, reason};
use crate::runtime::ProbeCheck;

impl PodRun {
    /// Runs the probes that are due.
    pub(super) async fn probe(&mut self) {
        let spec = self.spec();
        for container in &spec.containers {
            let Some(record) = self.containers.get(&container.name).cloned() else {
                continue;
            };
            if !record.running {
                continue;
            }
            let now = Instant::now();
            let mut kill = None;
            let mut updated = record.clone();
            if let Some(probe) = &container.startup_probe
                && !record.startup.passed
            {
                if record.startup.due(now) {
                    let ok = self.run_probe(container, probe, ProbeKind::Startup).await;
                    if updated.startup.record(probe, ok, Instant::now()) {
                        kill = Some(ProbeKind::Startup);
                    }
                }
            } else {
                if let Some(probe) = &container.readiness_probe
                    && record.readiness.due(now)
                {
                    let ok = self.run_probe(container, probe, ProbeKind::Readiness).await;
                    updated.readiness.record(probe, ok, Instant::now());
                }
                if let Some(probe) = &container.liveness_probe
                    && record.liveness.due(now)
                {
                    let ok = self.run_probe(container, probe, ProbeKind::Liveness).await;
                    if updated.liveness.record(probe, ok, Instant::now()) {
                        kill = Some(ProbeKind::Liveness);
                    }
                }
            }
            if let Some(kind) = kill {
                self.event(
                    Some(ContainerOf {
                        name: &container.name,
                        init: false,
                    }),
                    events::NORMAL,
                    reason::KILLING,
                    events::failed_probe_restart(&container.name, kind),
                );
                updated.liveness.next = None;
                updated.readiness.next = None;
                updated.startup.next = None;
                self.signal_all(std::slice::from_ref(&container.name), "KILL")
                    .await;
            }
            self.containers.insert(container.name.clone(), updated);
        }
    }

    /// One probe run; a failure is an `Unhealthy` event with the prober's message.
    async fn run_probe(&self, container: &Container, probe: &Probe, kind: ProbeKind) -> bool {
        let (ok, output) = self.probe_once(container, probe).await;
        if !ok {
            self.event(
                Some(ContainerOf {
                    name: &container.name,
                    init: false,
                }),
                events::WARNING,
                reason::UNHEALTHY,
                events::unhealthy(kind, &output),
            );
        }
        ok
    }

    /// Whether the probe passed, and what the prober says of a failure.
    async fn probe_once(&self, container: &Container, probe: &Probe) -> (bool, String) {
        let timeout = Duration::from_secs(probe.timeout_seconds.unwrap_or(1).max(1) as u64);
        let port_of = |port: &IntOrString| match port {
            IntOrString::Int(number) => Some(*number),
            IntOrString::String(name) => container
                .ports
                .iter()
                .flatten()
                .find(|p| p.name.as_deref() == Some(name.as_str()))
                .map(|p| p.container_port),
        };
        let address = self
            .pod_ip
            .map_or_else(|| "127.0.0.1".to_string(), |a| a.to_string());
        let (check, target) = if let Some(exec) = &probe.exec {
            let argv = exec.command.clone().unwrap_or_default();
            let command = argv.join(" ");
            (ProbeCheck::Exec(argv), ProbeTarget::Exec { command })
        } else if let Some(get) = &probe.http_get {
            let Some(port) = port_of(&get.port) else {
                return (false, format!("unknown port {:?}", get.port));
            };
            let path = get.path.clone().unwrap_or_else(|| "/".into());
            let target = ProbeTarget::Http {
                url: format!("http://{address}:{port}{path}"),
                address: format!("{address}:{port}"),
            };
            (ProbeCheck::Http { port, path }, target)
        } else if let Some(tcp) = &probe.tcp_socket {
            let Some(port) = port_of(&tcp.port) else {
                return (false, format!("unknown port {:?}", tcp.port));
            };
            let target = ProbeTarget::Tcp {
                address: format!("{address}:{port}"),
            };
            (ProbeCheck::Tcp(port), target)
        } else {
            return (true, String::new());
        };
        let command = match self
            .shared
            .runtime
            .probe_command(&self.id, &container.name, &check)
        {
            Ok(command) => command,
            Err(message) => return (false, message),
        };
        let mut command = tokio::process::Command::from(command);
        command
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true);
        match tokio::time::timeout(timeout, command.output()).await {
            Ok(Ok(output)) if output.status.success() => (true, String::new()),
            Ok(Ok(output)) => {
                let mut text = String::from_utf8_lossy(&output.stdout).into_owned();
                text.push_str(&String::from_utf8_lossy(&output.stderr));
                (false, events::probe_failure(&target, &text))
            }
            Ok(Err(error)) => (false, error.to_string()),
            Err(_) => (false, events::probe_timeout(&target)),
        }
    }
}
