//! `pods/{name}/log`: a container's output, as `kubectl logs` asks for it (`container`,
//! `previous`, `tailLines`, `follow`, `timestamps`, `limitBytes`).
//!
//! The node that ran the container says where its output is ([`NodeLogs`]); this module
//! answers upstream's errors and streams the file. Nothing here dials anything: a pod whose node
//! keeps no logs (the simulated node, another machine) gets a clear error.

use std::io::{Read, Seek, SeekFrom};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{StatusCode, header};
use axum::response::Response;
use petset_api::ApiError;
use serde_json::Value;

use crate::handlers::Query;

/// Where this process's node keeps the output of a pod's containers.
pub trait NodeLogs: Send + Sync {
    /// The files of the container's runs, oldest first; `None` when this node does not run the
    /// pod.
    fn log_files(&self, pod: &Value, container: &str) -> Option<Vec<PathBuf>>;
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
pub(crate) fn container_of(
    pod: &Value,
    query: &Query,
    with_init: bool,
) -> Result<String, ApiError> {
    let name = pod
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default();
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
        Some(container) => Err(bad_request(format!(
            "container {container} is not valid for pod {name}"
        ))),
        None if containers.len() == 1 => Ok(containers[0].clone()),
        None => Err(bad_request(format!(
            "a container name must be specified for pod {name}, choose one of: [{}]",
            containers.join(" ")
        ))),
    }
}

fn bad_request(message: String) -> ApiError {
    ApiError::bad_request(message)
}

/// The response to a log request for `pod`.
pub(crate) fn serve(
    logs: Option<&Arc<dyn NodeLogs>>,
    pod: &Value,
    query: &Query,
) -> Result<Response, ApiError> {
    let name = pod
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let container = container_of(pod, query, true)?;
    let Some(logs) = logs else {
        return Err(ApiError::service_unavailable(format!(
            "pods {name:?}: its node keeps no container logs (a simulated node runs no processes)"
        )));
    };
    let files = logs.log_files(pod, &container).unwrap_or_default();
    let previous = query.get("previous") == Some("true");
    let file = if previous {
        files.iter().rev().nth(1).cloned().ok_or_else(|| {
            bad_request(format!(
                "previous terminated container \"{container}\" in pod \"{name}\" not found"
            ))
        })?
    } else {
        match files.last() {
            Some(file) => file.clone(),
            None => {
                let reason = pod
                    .pointer("/status/containerStatuses")
                    .and_then(Value::as_array)
                    .and_then(|s| s.iter().find(|s| s["name"] == container.as_str()))
                    .and_then(|s| s.pointer("/state/waiting/reason"))
                    .and_then(Value::as_str)
                    .unwrap_or("ContainerCreating")
                    .to_string();
                return Err(bad_request(format!(
                    "container \"{container}\" in pod \"{name}\" is waiting to start: {reason}"
                )));
            }
        }
    };
    let tail = query.get("tailLines").and_then(|t| t.parse::<usize>().ok());
    let limit = query.get("limitBytes").and_then(|t| t.parse::<u64>().ok());
    let follow = query.get("follow") == Some("true") && !previous;
    let mut content = std::fs::read(&file).unwrap_or_default();
    let offset = content.len() as u64;
    if let Some(tail) = tail {
        content = last_lines(&content, tail).to_vec();
    }
    if let Some(limit) = limit {
        content.truncate(limit as usize);
    }
    let response = Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "text/plain");
    let body = if follow && limit.is_none() {
        Body::from_stream(follow_file(file, content, offset))
    } else {
        Body::from(content)
    };
    response
        .body(body)
        .map_err(|e| ApiError::internal(e.to_string()))
}

/// The last `count` lines of `content`.
fn last_lines(content: &[u8], count: usize) -> &[u8] {
    if count == 0 {
        return &[];
    }
    let body = content.strip_suffix(b"\n").unwrap_or(content);
    let mut seen = 0;
    for (index, byte) in body.iter().enumerate().rev() {
        if *byte == b'\n' {
            seen += 1;
            if seen == count {
                return &content[index + 1..];
            }
        }
    }
    content
}

/// What was read, then whatever the file gains, until it is removed or a newer run starts.
fn follow_file(
    file: PathBuf,
    first: Vec<u8>,
    offset: u64,
) -> impl futures::Stream<Item = Result<Vec<u8>, std::io::Error>> {
    futures::stream::unfold((Some(first), offset), move |(pending, offset)| {
        let file = file.clone();
        async move {
            if let Some(first) = pending {
                return Some((Ok(first), (None, offset)));
            }
            loop {
                tokio::time::sleep(Duration::from_millis(200)).await;
                let Ok(mut handle) = std::fs::File::open(&file) else {
                    return None;
                };
                let length = handle.metadata().map(|m| m.len()).unwrap_or(0);
                if length > offset {
                    let mut chunk = Vec::new();
                    if handle.seek(SeekFrom::Start(offset)).is_err()
                        || handle.read_to_end(&mut chunk).is_err()
                    {
                        return None;
                    }
                    let next = offset + chunk.len() as u64;
                    return Some((Ok(chunk), (None, next)));
                }
                if newer_run_exists(&file) {
                    return None;
                }
            }
        }
    })
}

/// Whether a later run of the container has its own file next to this one (`N.log`).
fn newer_run_exists(file: &std::path::Path) -> bool {
    let attempt = |p: &std::path::Path| {
        p.file_stem()
            .and_then(|s| s.to_str())
            .and_then(|s| s.parse::<u64>().ok())
    };
    let Some(current) = attempt(file) else {
        return false;
    };
    file.parent()
        .and_then(|d| std::fs::read_dir(d).ok())
        .is_some_and(|entries| {
            entries
                .filter_map(Result::ok)
                .any(|e| attempt(&e.path()).is_some_and(|a| a > current))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_lines_are_counted_from_the_end() {
        assert_eq!(last_lines(b"a\nb\nc\n", 2), b"b\nc\n");
        assert_eq!(last_lines(b"a\nb\nc", 1), b"c");
        assert_eq!(last_lines(b"a\nb\n", 5), b"a\nb\n");
        assert_eq!(last_lines(b"a\nb\n", 0), b"");
    }
}
