//! `pods/{name}/log`: a container's output, as `kubectl logs` asks for it (`container`,
//! `previous`, `tailLines`, `follow`, `timestamps`, `sinceSeconds`, `sinceTime`,
//! `limitBytes`).
//!
//! The node keeps each run's output in the CRI log format, as the kubelet does: one record per
//! line, `<RFC 3339 time> <stdout|stderr> <F|P> <text>` (`P`: a piece of a longer line).
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

/// A string field of the pod ("" when absent).
pub(crate) fn text<'a>(pod: &'a Value, pointer: &str) -> &'a str {
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
pub(crate) fn container_of(
    pod: &Value,
    query: &Query,
    with_init: bool,
) -> Result<String, ApiError> {
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
    let name = text(pod, "/metadata/name").to_string();
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
    let since = since(query)?;
    let raw = std::fs::read(&file).unwrap_or_default();
    // A record is complete once its newline is written; the rest is read when it is.
    let complete = raw.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
    let mut view = LogView {
        timestamps: query.get("timestamps") == Some("true"),
        since,
        at_line_start: true,
    };
    let mut content = view.render(&raw[..complete]);
    let offset = complete as u64;
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
        Body::from_stream(follow_file(file, content, offset, view))
    } else {
        Body::from(content)
    };
    response
        .body(body)
        .map_err(|e| ApiError::internal(e.to_string()))
}

/// `sinceSeconds` or `sinceTime` as the earliest time wanted.
fn since(query: &Query) -> Result<Option<jiff::Timestamp>, ApiError> {
    if let Some(seconds) = query.get("sinceSeconds") {
        let seconds: i64 = seconds.parse().ok().filter(|s| *s > 0).ok_or_else(|| {
            bad_request(format!(
                "invalid sinceSeconds {seconds:?}: must be greater than 0"
            ))
        })?;
        let cutoff = jiff::Timestamp::now()
            .checked_sub(jiff::SignedDuration::from_secs(seconds))
            .unwrap_or(jiff::Timestamp::MIN);
        return Ok(Some(cutoff));
    }
    match query.get("sinceTime") {
        Some(time) => time
            .parse()
            .map(Some)
            .map_err(|_| bad_request(format!("invalid sinceTime {time:?}: want RFC 3339"))),
        None => Ok(None),
    }
}

/// One record of a log file: its time, stream, whether it ends a line, and its text.
pub(crate) struct Record<'a> {
    pub time: &'a str,
    pub stream: &'a str,
    pub ends_line: bool,
    pub text: &'a [u8],
}

/// The records of complete log content (each ending in a newline); malformed lines are kept
/// as stdout text.
pub(crate) fn records(content: &[u8]) -> impl Iterator<Item = Record<'_>> {
    content
        .split(|b| *b == b'\n')
        .filter(|line| !line.is_empty())
        .map(|line| {
            let mut fields = line.splitn(4, |b| *b == b' ');
            let parsed = (|| {
                let time = std::str::from_utf8(fields.next()?).ok()?;
                let stream = std::str::from_utf8(fields.next()?).ok()?;
                let tag = fields.next()?;
                Some((time, stream, tag, fields.next().unwrap_or_default()))
            })();
            match parsed {
                Some((time, stream, tag, text)) if tag == b"F" || tag == b"P" => Record {
                    time,
                    stream,
                    ends_line: tag == b"F",
                    text,
                },
                _ => Record {
                    time: "",
                    stream: "stdout",
                    ends_line: true,
                    text: line,
                },
            }
        })
}

/// How a request wants the records shown; carries, across the chunks of a follow, whether the
/// next record starts a line.
struct LogView {
    timestamps: bool,
    since: Option<jiff::Timestamp>,
    at_line_start: bool,
}

impl LogView {
    fn render(&mut self, content: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(content.len());
        for record in records(content) {
            if let Some(since) = self.since
                && record
                    .time
                    .parse::<jiff::Timestamp>()
                    .is_ok_and(|time| time < since)
            {
                continue;
            }
            if self.timestamps && self.at_line_start && !record.time.is_empty() {
                out.extend_from_slice(record.time.as_bytes());
                out.push(b' ');
            }
            out.extend_from_slice(record.text);
            if record.ends_line {
                out.push(b'\n');
            }
            self.at_line_start = record.ends_line;
        }
        out
    }
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
    view: LogView,
) -> impl futures::Stream<Item = Result<Vec<u8>, std::io::Error>> {
    futures::stream::unfold(
        (Some(first), offset, view),
        move |(pending, offset, mut view)| {
            let file = file.clone();
            async move {
                if let Some(first) = pending {
                    return Some((Ok(first), (None, offset, view)));
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
                        let complete = chunk.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
                        if complete > 0 {
                            let shown = view.render(&chunk[..complete]);
                            let next = offset + complete as u64;
                            return Some((Ok(shown), (None, next, view)));
                        }
                    }
                    if newer_run_exists(&file) {
                        return None;
                    }
                }
            }
        },
    )
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
    fn records_show_as_lines_with_or_without_their_times() {
        let content = b"2026-11-25T10:00:00Z stdout F one\n2026-11-25T10:00:01.5Z stderr P tw\n2026-11-25T10:00:02Z stderr F o\nnot a record\n";
        let mut plain = LogView {
            timestamps: false,
            since: None,
            at_line_start: true,
        };
        assert_eq!(plain.render(content), b"one\ntwo\nnot a record\n");
        let mut stamped = LogView {
            timestamps: true,
            since: "2026-11-25T10:00:01Z".parse().ok(),
            at_line_start: true,
        };
        assert_eq!(
            stamped.render(content),
            b"2026-11-25T10:00:01.5Z two\nnot a record\n"
        );
    }

    #[test]
    fn the_last_lines_are_counted_from_the_end() {
        assert_eq!(last_lines(b"a\nb\nc\n", 2), b"b\nc\n");
        assert_eq!(last_lines(b"a\nb\nc", 1), b"c");
        assert_eq!(last_lines(b"a\nb\n", 5), b"a\nb\n");
        assert_eq!(last_lines(b"a\nb\n", 0), b"");
    }
}
