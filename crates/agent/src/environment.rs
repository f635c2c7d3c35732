//! A container's environment and command line as the kubelet makes them
//! (`makeEnvironmentVariables`, `ExpandContainerCommandAndArgs`): `envFrom` first, then `env`
//! in order, each `value` expanded against what is defined so far; `command` and `args`
//! expanded against the result. The image's variables are the runtime's: under the pod's, and
//! never referenced by `$(…)`.

use k8s_openapi::api::core::v1::{ConfigMap, Container, PodSpec, Secret, Service};
use kube::Client;
use kube::api::{Api, ListParams};
use petset_runtime::images::Image;
use serde_json::Value;

use crate::downward::{Allocatable, field_value, resource_value};
use crate::expansion::expand;

/// Where a container's variables come from, besides the API.
pub struct Sources<'a> {
    pub client: &'a Client,
    pub namespace: &'a str,
    /// The pod as JSON, with the address the node has given it.
    pub pod: &'a Value,
    pub spec: &'a PodSpec,
    pub allocatable: &'a Allocatable,
    pub hostname: &'a str,
}

/// A container's variables: the kubelet's (in their order; what `$(…)` may reference), and the
/// process's (the image's, then the runtime's `HOSTNAME`, then the kubelet's; later names win).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ContainerEnv {
    pub kubelet: Vec<(String, String)>,
    pub process: Vec<String>,
}

/// Defines `name`, or redefines it where it was first defined (as the kubelet's map does).
fn define(env: &mut Vec<(String, String)>, name: String, value: String) {
    match env.iter_mut().find(|(k, _)| *k == name) {
        Some(existing) => existing.1 = value,
        None => env.push((name, value)),
    }
}

fn lookup<'e>(env: &'e [(String, String)]) -> impl Fn(&str) -> Option<String> + 'e {
    move |name| env.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
}

/// The container's variables; the error is the waiting message of a container whose
/// variables cannot be made (`CreateContainerConfigError`).
pub async fn container_env(
    sources: &Sources<'_>,
    container: &Container,
    image: &Image,
) -> Result<ContainerEnv, String> {
    let namespace = sources.namespace;
    let maps: Api<ConfigMap> = Api::namespaced(sources.client.clone(), namespace);
    let secrets: Api<Secret> = Api::namespaced(sources.client.clone(), namespace);
    let services = service_env(sources).await;
    let mut env: Vec<(String, String)> = Vec::new();
    for source in container.env_from.iter().flatten() {
        let prefix = source.prefix.clone().unwrap_or_default();
        if let Some(reference) = &source.config_map_ref {
            match maps.get_opt(&reference.name).await.ok().flatten() {
                Some(map) => {
                    for (key, value) in map.data.unwrap_or_default() {
                        define(&mut env, format!("{prefix}{key}"), value);
                    }
                }
                None if reference.optional == Some(true) => {}
                None => return Err(format!("configmap \"{}\" not found", reference.name)),
            }
        }
        if let Some(reference) = &source.secret_ref {
            match secrets.get_opt(&reference.name).await.ok().flatten() {
                Some(secret) => {
                    for (key, value) in secret.data.unwrap_or_default() {
                        let value = String::from_utf8_lossy(&value.0).into_owned();
                        define(&mut env, format!("{prefix}{key}"), value);
                    }
                }
                None if reference.optional == Some(true) => {}
                None => return Err(format!("secret \"{}\" not found", reference.name)),
            }
        }
    }
    for variable in container.env.iter().flatten() {
        let value = match (&variable.value, &variable.value_from) {
            (Some(value), _) if !value.is_empty() => expand(value, |name| {
                lookup(&env)(name).or_else(|| lookup(&services)(name))
            }),
            (_, Some(from)) => {
                if let Some(field) = &from.field_ref {
                    field_value(sources.pod, &field.field_path)
                } else if let Some(selector) = &from.resource_field_ref {
                    let target = match selector.container_name.as_deref() {
                        Some(name) if !name.is_empty() && name != container.name => {
                            find_container(sources.spec, name).ok_or_else(|| {
                                format!("container {name:?} of resourceFieldRef not found")
                            })?
                        }
                        _ => container,
                    };
                    resource_value(
                        target,
                        &selector.resource,
                        selector.divisor.as_ref().map(|d| d.0.as_str()),
                        sources.allocatable,
                    )?
                } else if let Some(key) = &from.config_map_key_ref {
                    let found = maps
                        .get_opt(&key.name)
                        .await
                        .ok()
                        .flatten()
                        .and_then(|m| m.data.and_then(|d| d.get(&key.key).cloned()));
                    let reference = (namespace, key.name.as_str(), key.key.as_str());
                    match required(found, key.optional, "ConfigMap", reference)? {
                        Some(value) => value,
                        None => continue,
                    }
                } else if let Some(key) = &from.secret_key_ref {
                    let found = secrets
                        .get_opt(&key.name)
                        .await
                        .ok()
                        .flatten()
                        .and_then(|s| s.data.and_then(|d| d.get(&key.key).cloned()))
                        .map(|value| String::from_utf8_lossy(&value.0).into_owned());
                    let reference = (namespace, key.name.as_str(), key.key.as_str());
                    match required(found, key.optional, "Secret", reference)? {
                        Some(value) => value,
                        None => continue,
                    }
                } else {
                    String::new()
                }
            }
            _ => String::new(),
        };
        define(&mut env, variable.name.clone(), value);
    }
    // The service variables come last, where the container does not define the name itself.
    for (name, value) in services {
        if !env.iter().any(|(k, _)| *k == name) {
            env.push((name, value));
        }
    }
    Ok(ContainerEnv {
        process: process_env(image, sources.hostname, &env),
        kubelet: env,
    })
}

/// The service variables the kubelet gives a pod: those of the `kubernetes` Service always,
/// and with `enableServiceLinks` (the default) those of every Service of the pod's namespace
/// that has a ClusterIP.
async fn service_env(sources: &Sources<'_>) -> Vec<(String, String)> {
    let mut services: Vec<Service> = Vec::new();
    if sources.spec.enable_service_links != Some(false) {
        let api: Api<Service> = Api::namespaced(sources.client.clone(), sources.namespace);
        if let Ok(list) = api.list(&ListParams::default()).await {
            services.extend(list.items);
        }
    }
    if sources.namespace != "default" || sources.spec.enable_service_links == Some(false) {
        let api: Api<Service> = Api::namespaced(sources.client.clone(), "default");
        if let Ok(Some(kubernetes)) = api.get_opt("kubernetes").await {
            services.retain(|s| s.metadata.name.as_deref() != Some("kubernetes"));
            services.push(kubernetes);
        }
    }
    service_variables(&services)
}

/// Upstream's service environment variables (`envvars.FromServices`), Docker-link style.
pub fn service_variables(services: &[Service]) -> Vec<(String, String)> {
    let mut env = Vec::new();
    let mut services: Vec<&Service> = services.iter().collect();
    services.sort_by_key(|s| s.metadata.name.clone());
    for service in services {
        let spec = service.spec.clone().unwrap_or_default();
        let Some(ip) = spec.cluster_ip.filter(|ip| !ip.is_empty() && ip != "None") else {
            continue;
        };
        let ports = spec.ports.unwrap_or_default();
        let Some(first) = ports.first() else {
            continue;
        };
        let prefix = service
            .metadata
            .name
            .clone()
            .unwrap_or_default()
            .replace('-', "_")
            .to_uppercase();
        env.push((format!("{prefix}_SERVICE_HOST"), ip.clone()));
        env.push((format!("{prefix}_SERVICE_PORT"), first.port.to_string()));
        for port in &ports {
            if let Some(name) = port.name.as_deref().filter(|n| !n.is_empty()) {
                let name = name.replace('-', "_").to_uppercase();
                env.push((
                    format!("{prefix}_SERVICE_PORT_{name}"),
                    port.port.to_string(),
                ));
            }
        }
        let host = |port: i32| {
            if ip.contains(':') {
                format!("[{ip}]:{port}")
            } else {
                format!("{ip}:{port}")
            }
        };
        for (index, port) in ports.iter().enumerate() {
            let protocol = port.protocol.clone().unwrap_or_else(|| "TCP".into());
            let lower = protocol.to_lowercase();
            let url = format!("{lower}://{}", host(port.port));
            if index == 0 {
                env.push((format!("{prefix}_PORT"), url.clone()));
            }
            let port_prefix = format!("{prefix}_PORT_{}_{}", port.port, protocol.to_uppercase());
            env.push((port_prefix.clone(), url));
            env.push((format!("{port_prefix}_PROTO"), lower));
            env.push((format!("{port_prefix}_PORT"), port.port.to_string()));
            env.push((format!("{port_prefix}_ADDR"), ip.clone()));
        }
    }
    env
}

/// A key's value; a missing key is skipped when it is optional, else the container's error.
fn required(
    found: Option<String>,
    optional: Option<bool>,
    kind: &str,
    (namespace, name, key): (&str, &str, &str),
) -> Result<Option<String>, String> {
    match found {
        Some(value) => Ok(Some(value)),
        None if optional == Some(true) => Ok(None),
        None => Err(format!(
            "couldn't find key {key} in {kind} {namespace}/{name}"
        )),
    }
}

/// A container of the pod, init or app, by name.
pub fn find_container<'s>(spec: &'s PodSpec, name: &str) -> Option<&'s Container> {
    spec.containers
        .iter()
        .chain(spec.init_containers.iter().flatten())
        .find(|c| c.name == name)
}

/// The process's variables: the image's (with a default `PATH`), the runtime's `HOSTNAME`,
/// then the kubelet's; a later definition replaces an earlier one in its place.
fn process_env(image: &Image, hostname: &str, kubelet: &[(String, String)]) -> Vec<String> {
    let mut env: Vec<(String, String)> = Vec::new();
    for entry in &image.env {
        if let Some((key, value)) = entry.split_once('=') {
            define(&mut env, key.to_string(), value.to_string());
        }
    }
    if !env.iter().any(|(k, _)| k == "PATH") {
        env.push((
            "PATH".into(),
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into(),
        ));
    }
    define(&mut env, "HOSTNAME".into(), hostname.to_string());
    for (key, value) in kubelet {
        define(&mut env, key.clone(), value.clone());
    }
    env.into_iter().map(|(k, v)| format!("{k}={v}")).collect()
}

/// What the container runs: its `command` and `args` (each expanded against the kubelet's
/// variables), or the image's entrypoint and cmd where the container sets none.
pub fn command_line(
    container: &Container,
    image: &Image,
    kubelet: &[(String, String)],
) -> Vec<String> {
    let expanded = |list: &Option<Vec<String>>| -> Option<Vec<String>> {
        list.as_ref()
            .filter(|l| !l.is_empty())
            .map(|l| l.iter().map(|item| expand(item, lookup(kubelet))).collect())
    };
    let (command, args) = (expanded(&container.command), expanded(&container.args));
    let argv: Vec<String> = match (command, args) {
        (Some(command), args) => command
            .into_iter()
            .chain(args.into_iter().flatten())
            .collect(),
        (None, Some(args)) => image.entrypoint.iter().cloned().chain(args).collect(),
        (None, None) => image
            .entrypoint
            .iter()
            .chain(image.cmd.iter())
            .cloned()
            .collect(),
    };
    if argv.is_empty() {
        vec!["sh".into()]
    } else {
        argv
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn bare_image() -> Image {
        Image {
            name: "docker.io/library/test:1".into(),
            id: "sha256:0".into(),
            rootfs: "/nowhere".into(),
            entrypoint: Vec::new(),
            cmd: Vec::new(),
            env: Vec::new(),
            working_dir: None,
            user: None,
        }
    }

    fn image() -> Image {
        Image {
            env: vec!["PATH=/bin".into(), "LANG=C".into()],
            entrypoint: vec!["/entry".into()],
            cmd: vec!["serve".into()],
            ..bare_image()
        }
    }

    fn container(value: Value) -> Container {
        serde_json::from_value(value).expect("container")
    }

    #[test]
    fn command_and_args_expand_the_kubelets_variables() {
        let kubelet = vec![
            ("POD_NAMESPACE".to_string(), "shop".to_string()),
            ("PORT".to_string(), "8080".to_string()),
        ];
        let c = container(json!({"name": "c", "command": ["/bin/sh", "-c",
            "sed -i s/default/$(POD_NAMESPACE)/g f; echo $(LANG) $$(PORT)"],
            "args": ["--port=$(PORT)"]}));
        assert_eq!(
            command_line(&c, &image(), &kubelet),
            vec![
                "/bin/sh",
                "-c",
                "sed -i s/default/shop/g f; echo $(LANG) $(PORT)",
                "--port=8080"
            ]
        );
        let args_only = container(json!({"name": "c", "args": ["$(PORT)"]}));
        assert_eq!(
            command_line(&args_only, &image(), &kubelet),
            vec!["/entry", "8080"]
        );
        let neither = container(json!({"name": "c"}));
        assert_eq!(
            command_line(&neither, &image(), &kubelet),
            vec!["/entry", "serve"]
        );
        assert_eq!(command_line(&neither, &bare_image(), &kubelet), vec!["sh"]);
    }

    #[test]
    fn the_process_gets_the_image_then_the_kubelets_variables() {
        let kubelet = vec![
            ("LANG".to_string(), "en".to_string()),
            ("A".to_string(), "1".to_string()),
        ];
        assert_eq!(
            process_env(&image(), "web-0", &kubelet),
            vec!["PATH=/bin", "LANG=en", "HOSTNAME=web-0", "A=1"]
        );
        let bare = process_env(&bare_image(), "h", &[]);
        assert!(bare[0].starts_with("PATH=/usr/local/sbin:"), "{bare:?}");
    }

    #[test]
    fn services_with_a_cluster_ip_become_variables() {
        let services: Vec<Service> = serde_json::from_value(json!([
            {"metadata": {"name": "redis-primary"}, "spec": {"clusterIP": "10.96.0.11",
                "ports": [{"port": 6379}, {"name": "metrics", "port": 9121, "protocol": "TCP"}]}},
            {"metadata": {"name": "headless"}, "spec": {"clusterIP": "None",
                "ports": [{"port": 80}]}},
            {"metadata": {"name": "dns"}, "spec": {"clusterIP": "10.96.0.10",
                "ports": [{"name": "dns", "port": 53, "protocol": "UDP"}]}},
        ]))
        .expect("services");
        let env = service_variables(&services);
        let names: Vec<String> = env.iter().map(|(k, v)| format!("{k}={v}")).collect();
        assert_eq!(
            names,
            vec![
                "DNS_SERVICE_HOST=10.96.0.10",
                "DNS_SERVICE_PORT=53",
                "DNS_SERVICE_PORT_DNS=53",
                "DNS_PORT=udp://10.96.0.10:53",
                "DNS_PORT_53_UDP=udp://10.96.0.10:53",
                "DNS_PORT_53_UDP_PROTO=udp",
                "DNS_PORT_53_UDP_PORT=53",
                "DNS_PORT_53_UDP_ADDR=10.96.0.10",
                "REDIS_PRIMARY_SERVICE_HOST=10.96.0.11",
                "REDIS_PRIMARY_SERVICE_PORT=6379",
                "REDIS_PRIMARY_SERVICE_PORT_METRICS=9121",
                "REDIS_PRIMARY_PORT=tcp://10.96.0.11:6379",
                "REDIS_PRIMARY_PORT_6379_TCP=tcp://10.96.0.11:6379",
                "REDIS_PRIMARY_PORT_6379_TCP_PROTO=tcp",
                "REDIS_PRIMARY_PORT_6379_TCP_PORT=6379",
                "REDIS_PRIMARY_PORT_6379_TCP_ADDR=10.96.0.11",
                "REDIS_PRIMARY_PORT_9121_TCP=tcp://10.96.0.11:9121",
                "REDIS_PRIMARY_PORT_9121_TCP_PROTO=tcp",
                "REDIS_PRIMARY_PORT_9121_TCP_PORT=9121",
                "REDIS_PRIMARY_PORT_9121_TCP_ADDR=10.96.0.11",
            ]
        );
    }

    #[test]
    fn a_later_definition_replaces_an_earlier_in_place() {
        let mut env = Vec::new();
        define(&mut env, "A".into(), "1".into());
        define(&mut env, "B".into(), "2".into());
        define(&mut env, "A".into(), "3".into());
        assert_eq!(
            env,
            vec![("A".into(), "3".into()), ("B".into(), "2".into())]
        );
        assert_eq!(lookup(&env)("B").as_deref(), Some("2"));
        assert_eq!(lookup(&env)("C"), None);
    }
}

#[cfg(test)]
mod service_link_tests {
    use super::*;
    use crate::downward::Allocatable;
    use petset_apiserver::test_cluster::TestCluster;
    use serde_json::json;

    /// The service variables a pod of `namespace` gets, with `enableServiceLinks` as given.
    async fn variables(cluster: &TestCluster, namespace: &str, links: bool) -> Vec<String> {
        let client = cluster.client();
        let spec: PodSpec = serde_json::from_value(json!({
            "containers": [{"name": "app", "image": "i"}], "enableServiceLinks": links}))
        .expect("spec");
        let allocatable = Allocatable {
            cpu: None,
            memory: None,
            ephemeral_storage: None,
        };
        let sources = Sources {
            client: &client,
            namespace,
            pod: &json!({}),
            spec: &spec,
            allocatable: &allocatable,
            hostname: "web-0",
        };
        service_env(&sources)
            .await
            .into_iter()
            .map(|(name, _)| name)
            .collect()
    }

    #[tokio::test]
    async fn the_kubernetes_service_is_in_every_pods_environment_even_without_service_links() {
        let cluster = TestCluster::start().await;
        let (code, answer) = cluster
            .json(
                "POST",
                "/api/v1/namespaces",
                json!({"metadata": {"name": "team"}}),
            )
            .await;
        assert_eq!(code, 201, "{answer}");
        let (code, answer) = cluster
            .json(
                "POST",
                "/api/v1/namespaces/team/services",
                json!({"metadata": {"name": "db"}, "spec": {"ports": [{"port": 5432}]}}),
            )
            .await;
        assert_eq!(code, 201, "{answer}");
        let kubernetes = [
            "KUBERNETES_SERVICE_HOST",
            "KUBERNETES_SERVICE_PORT",
            "KUBERNETES_SERVICE_PORT_HTTPS",
            "KUBERNETES_PORT",
            "KUBERNETES_PORT_443_TCP",
            "KUBERNETES_PORT_443_TCP_PROTO",
            "KUBERNETES_PORT_443_TCP_PORT",
            "KUBERNETES_PORT_443_TCP_ADDR",
        ];
        for (namespace, links) in [("team", false), ("team", true), ("default", false)] {
            let names = variables(&cluster, namespace, links).await;
            for name in kubernetes {
                assert!(
                    names.iter().any(|n| n == name),
                    "{namespace} links={links}: {name} in {names:?}"
                );
            }
            assert_eq!(
                names.iter().any(|n| n == "DB_SERVICE_HOST"),
                namespace == "team" && links,
                "{namespace} links={links}: {names:?}"
            );
        }
    }
}
