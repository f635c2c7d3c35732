//! What the API server decides before it relays a pod's stream to its node (upstream's
//! `pkg/registry/core/pod/strategy.go`: `LogLocation`, `streamLocation`,
//! `PortForwardLocation`): the container, upstream's refusals, and the node API path with its
//! query, user-facing `stdin/stdout/stderr/tty` rewritten to `input/output/error/tty`.
//! Pure functions of the pod and the request.

use petset_api::ApiError;
use serde_json::Value;

use crate::handlers::Query;

/// A stream subresource of a pod.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Exec,
    Attach,
    PortForward,
}

impl Stream {
    pub fn of(subresource: &str) -> Option<Self> {
        match subresource {
            "exec" => Some(Self::Exec),
            "attach" => Some(Self::Attach),
            "portforward" => Some(Self::PortForward),
            _ => None,
        }
    }
}

/// A string field of the pod ("" when absent).
fn text<'a>(pod: &'a Value, pointer: &str) -> &'a str {
    pod.pointer(pointer)
        .and_then(Value::as_str)
        .unwrap_or_default()
}

fn container_names(pod: &Value, list: &str) -> Vec<String> {
    pod.pointer(&format!("/spec/{list}"))
        .and_then(Value::as_array)
        .map(|cs| {
            cs.iter()
                .filter_map(|c| c.get("name").and_then(Value::as_str))
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

/// The container a log or exec request means: the one named (init containers too when
/// `with_init`), or the pod's only one; upstream's errors otherwise.
fn container_of(pod: &Value, query: &Query, with_init: bool) -> Result<String, ApiError> {
    let name = text(pod, "/metadata/name");
    let containers = container_names(pod, "containers");
    let init = if with_init {
        container_names(pod, "initContainers")
    } else {
        Vec::new()
    };
    match query.get("container").filter(|c| !c.is_empty()) {
        Some(container) if containers.iter().chain(init.iter()).any(|c| c == container) => {
            Ok(container.to_string())
        }
        Some(container) => Err(ApiError::bad_request(format!(
            "container {container} is not valid for pod {name}"
        ))),
        None if containers.len() == 1 => Ok(containers[0].clone()),
        None => Err(ApiError::bad_request(format!(
            "a container name must be specified for pod {name}, choose one of: [{}]",
            containers.join(" ")
        ))),
    }
}

/// The node a pod runs on, or `None` when it has none yet.
pub fn node_of(pod: &Value) -> Option<&str> {
    Some(text(pod, "/spec/nodeName")).filter(|n| !n.is_empty())
}

/// `/{kind}/{namespace}/{pod}[/{uid}][/{container}]`. The uid (which only the stream paths
/// take) makes the node answer for this instance of the pod, not an older one of its name.
fn path(kind: &str, pod: &Value, container: Option<&str>, with_uid: bool) -> String {
    let mut path = format!(
        "/{kind}/{}/{}",
        text(pod, "/metadata/namespace"),
        text(pod, "/metadata/name")
    );
    let uid = text(pod, "/metadata/uid");
    if with_uid && !uid.is_empty() {
        path.push('/');
        path.push_str(uid);
    }
    if let Some(container) = container {
        path.push('/');
        path.push_str(container);
    }
    path
}

fn with_query(path: String, query: form_urlencoded::Serializer<'_, String>) -> String {
    let mut query = query;
    let rendered = query.finish();
    if rendered.is_empty() {
        path
    } else {
        format!("{path}?{rendered}")
    }
}

/// The node API path and query for `pods/log`, after the API's own checks; with no node yet,
/// the refusal a container that has not started gets.
pub fn log_location(pod: &Value, query: &Query) -> Result<String, ApiError> {
    let name = text(pod, "/metadata/name");
    let container = container_of(pod, query, true)?;
    if let Some(seconds) = query.get("sinceSeconds")
        && seconds.parse::<i64>().ok().filter(|s| *s > 0).is_none()
    {
        return Err(ApiError::bad_request(format!(
            "invalid sinceSeconds {seconds:?}: must be greater than 0"
        )));
    }
    if let Some(time) = query.get("sinceTime")
        && time.parse::<jiff::Timestamp>().is_err()
    {
        return Err(ApiError::bad_request(format!(
            "invalid sinceTime {time:?}: want RFC 3339"
        )));
    }
    if node_of(pod).is_none() {
        let reason = pod
            .pointer("/status/containerStatuses")
            .and_then(Value::as_array)
            .and_then(|s| s.iter().find(|s| s["name"] == container.as_str()))
            .and_then(|s| s.pointer("/state/waiting/reason"))
            .and_then(Value::as_str)
            .unwrap_or("ContainerCreating");
        return Err(ApiError::bad_request(format!(
            "container \"{container}\" in pod \"{name}\" is waiting to start: {reason}"
        )));
    }
    let mut params = form_urlencoded::Serializer::new(String::new());
    for flag in ["follow", "previous", "timestamps"] {
        if query.flag(flag) {
            params.append_pair(flag, "true");
        }
    }
    for number in ["sinceSeconds", "sinceTime", "tailLines", "limitBytes"] {
        if let Some(value) = query.get(number).filter(|v| !v.is_empty()) {
            params.append_pair(number, value);
        }
    }
    Ok(with_query(
        path("containerLogs", pod, Some(&container), false),
        params,
    ))
}

/// The node API path of `pods/proxy` (petset's own: upstream's API server dials the pod
/// itself): `/podProxy/{ns}/{pod}/{uid}/{port}{path}`, and the client's query as it came. The
/// uid is required, so the node relays only to this instance of the pod.
pub fn proxy_location(
    pod: &Value,
    port: u16,
    path: &str,
    query: Option<&str>,
) -> Result<String, ApiError> {
    if text(pod, "/metadata/uid").is_empty() {
        return Err(ApiError::internal(format!(
            "pod {} has no uid to proxy to",
            text(pod, "/metadata/name")
        )));
    }
    let mut location = format!("{}/{port}{path}", self::path("podProxy", pod, None, true));
    if let Some(query) = query {
        location.push('?');
        location.push_str(query);
    }
    Ok(location)
}

/// The node API path and query for `pods/exec`, `attach` or `portforward`, after the API's
/// own checks.
pub fn stream_location(stream: Stream, pod: &Value, query: &Query) -> Result<String, ApiError> {
    let name = text(pod, "/metadata/name");
    let phase = text(pod, "/status/phase");
    let mut params = form_urlencoded::Serializer::new(String::new());
    let container = match stream {
        Stream::Exec => {
            let container = container_of(pod, query, false)?;
            if matches!(phase, "Succeeded" | "Failed") {
                return Err(ApiError::bad_request(format!(
                    "cannot exec into a container in a completed pod; current phase is {phase}"
                )));
            }
            let argv: Vec<&str> = query.all("command").collect();
            if argv.is_empty() {
                return Err(ApiError::bad_request("you must specify at least 1 command"));
            }
            for argument in argv {
                params.append_pair("command", argument);
            }
            Some(container)
        }
        Stream::Attach => {
            let container = container_of(pod, query, false)?;
            // A `kubectl run -i` container (stdinOnce) that ended before the attach arrived
            // still gives its output; any other completed pod has nothing to attach to.
            let stdin_once = pod
                .pointer("/spec/containers")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .find(|c| c.get("name").and_then(Value::as_str) == Some(container.as_str()))
                .and_then(|c| c.get("stdinOnce")?.as_bool())
                .unwrap_or(false);
            if matches!(phase, "Succeeded" | "Failed") && !stdin_once {
                return Err(ApiError::bad_request(format!(
                    "cannot attach a container in a completed pod; current phase is {phase}"
                )));
            }
            Some(container)
        }
        Stream::PortForward => {
            if phase != "Running" {
                return Err(ApiError::bad_request(format!(
                    "unable to forward port because pod is not running. Current status={phase}"
                )));
            }
            if text(pod, "/status/podIP").is_empty() {
                return Err(ApiError::bad_request(format!("pod {name} has no IP yet")));
            }
            for port in query.all("ports") {
                params.append_pair("port", port);
            }
            None
        }
    };
    if node_of(pod).is_none() {
        return Err(ApiError::bad_request(format!(
            "pod {name} does not have a host assigned"
        )));
    }
    if stream != Stream::PortForward {
        for (user, node) in [
            ("stdin", "input"),
            ("stdout", "output"),
            ("stderr", "error"),
            ("tty", "tty"),
        ] {
            if query.flag(user) {
                params.append_pair(node, "1");
            }
        }
    }
    let kind = match stream {
        Stream::Exec => "exec",
        Stream::Attach => "attach",
        Stream::PortForward => "portForward",
    };
    Ok(with_query(
        path(kind, pod, container.as_deref(), true),
        params,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(node: Option<&str>) -> Value {
        json!({"metadata": {"name": "web-0", "namespace": "default"},
            "spec": {"nodeName": node, "containers": [{"name": "nginx"}], "initContainers": [{"name": "setup"}]},
            "status": {"phase": "Running", "podIP": "10.244.0.5"}})
    }

    fn query(text: &str) -> Query {
        Query::parse(Some(text))
    }

    #[test]
    fn exec_asks_the_node_with_its_own_parameter_names() {
        let location = stream_location(
            Stream::Exec,
            &pod(Some("n1")),
            &query("command=sh&command=-c&command=echo%20hi&stdin=true&stdout=true&tty=true"),
        )
        .expect("location");
        assert_eq!(
            location,
            "/exec/default/web-0/nginx?command=sh&command=-c&command=echo+hi&input=1&output=1&tty=1"
        );
    }

    #[test]
    fn a_pod_without_a_node_has_no_stream() {
        let refused = stream_location(Stream::Attach, &pod(None), &query("")).expect_err("no node");
        assert_eq!(refused.code, 400);
        assert_eq!(refused.message, "pod web-0 does not have a host assigned");
        let logs = log_location(&pod(None), &query("")).expect_err("no node");
        assert!(
            logs.message
                .ends_with("is waiting to start: ContainerCreating")
        );
    }

    #[test]
    fn logs_pass_their_options_and_may_name_an_init_container() {
        let location = log_location(
            &pod(Some("n1")),
            &query("container=setup&follow=true&tailLines=3&timestamps=false"),
        )
        .expect("location");
        assert_eq!(
            location,
            "/containerLogs/default/web-0/setup?follow=true&tailLines=3"
        );
        let refused = log_location(&pod(Some("n1")), &query("sinceSeconds=0")).expect_err("bad");
        assert!(refused.message.contains("must be greater than 0"));
        let refused = stream_location(
            Stream::Exec,
            &pod(Some("n1")),
            &query("container=x&command=a"),
        )
        .expect_err("bad container");
        assert_eq!(refused.message, "container x is not valid for pod web-0");
    }

    #[test]
    fn streams_name_the_pods_instance_by_its_uid() {
        let mut pod = pod(Some("n1"));
        pod["metadata"]["uid"] = "u-1".into();
        let location =
            stream_location(Stream::Attach, &pod, &query("stdin=true")).expect("location");
        assert_eq!(location, "/attach/default/web-0/u-1/nginx?input=1");
        let logs = log_location(&pod, &query("")).expect("location");
        assert_eq!(logs, "/containerLogs/default/web-0/nginx");
    }

    #[test]
    fn a_proxy_names_the_pods_instance_its_port_and_the_rest_as_it_came() {
        let mut pod = pod(Some("n1"));
        pod["metadata"]["uid"] = "u-1".into();
        assert_eq!(
            proxy_location(&pod, 8080, "/a%20b/", Some("x=1&x=2")).expect("location"),
            "/podProxy/default/web-0/u-1/8080/a%20b/?x=1&x=2"
        );
        assert_eq!(
            proxy_location(&pod, 80, "/", None).expect("location"),
            "/podProxy/default/web-0/u-1/80/"
        );
        pod["metadata"]["uid"] = "".into();
        assert_eq!(
            proxy_location(&pod, 80, "/", None)
                .expect_err("no uid")
                .code,
            500
        );
    }

    #[test]
    fn port_forward_names_its_ports_as_the_node_reads_them() {
        let location = stream_location(
            Stream::PortForward,
            &pod(Some("n1")),
            &query("ports=80&ports=81"),
        )
        .expect("location");
        assert_eq!(location, "/portForward/default/web-0?port=80&port=81");
    }
}
