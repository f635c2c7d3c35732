//! `/containerLogs/{ns}/{pod}/{container}`: a container's output, with the v1 `PodLogOptions`
//! upstream's kubelet reads from the query (`follow`, `previous`, `timestamps`, `tailLines` or
//! the legacy `tail`, `limitBytes`, `sinceSeconds`, `sinceTime`).
//!
//! The runc node keeps each run's output in the CRI log format, as the kubelet does: one record
//! per line, `<RFC 3339 time> <stdout|stderr> <F|P> <text>` (`P`: a piece of a longer line).

use std::io::{Read, Seek, SeekFrom};
use std::path::PathBuf;
use std::time::Duration;

use axum::body::Body;
use axum::http::{StatusCode, header};
use axum::response::Response;
use k8s_openapi::api::core::v1::Pod;

use super::{Kubelet, NodeRuntime, Query, Refusal, Target};

/// How a request wants a container's log.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct LogOptions {
    pub follow: bool,
    pub previous: bool,
    pub timestamps: bool,
    pub tail: Option<usize>,
    pub limit: Option<u64>,
    pub since: Option<jiff::Timestamp>,
}

/// Upstream's answers to a query that does not decode, or decodes to invalid options.
fn undecodable() -> Refusal {
    Refusal::bad_request(r#"{"message": "Unable to decode query."}"#)
}

fn invalid() -> Refusal {
    Refusal::new(
        StatusCode::UNPROCESSABLE_ENTITY,
        r#"{"message": "Invalid request."}"#,
    )
}

impl LogOptions {
    /// Decodes the query as the kubelet does (`tail=all` is no limit), then validates it as
    /// upstream's `ValidatePodLogOptions`; `now` anchors `sinceSeconds`.
    pub fn parse(query: &Query, now: jiff::Timestamp) -> Result<Self, Refusal> {
        let flag = |key: &str| match query.get(key) {
            None | Some("" | "false" | "0") => Ok(false),
            Some("true" | "1") => Ok(true),
            Some(_) => Err(undecodable()),
        };
        let number = |key: &str| -> Result<Option<i64>, Refusal> {
            match query.get(key).filter(|v| !v.is_empty()) {
                None => Ok(None),
                Some(text) => text.parse().map(Some).map_err(|_| undecodable()),
            }
        };
        let tail = match query.get("tail").filter(|t| !t.is_empty()) {
            Some("all") => None,
            Some(tail) => Some(tail.parse::<i64>().map_err(|_| undecodable())?),
            None => number("tailLines")?,
        };
        let limit = number("limitBytes")?;
        let since_seconds = number("sinceSeconds")?;
        let since_time = match query.get("sinceTime").filter(|t| !t.is_empty()) {
            Some(time) => Some(time.parse::<jiff::Timestamp>().map_err(|_| undecodable())?),
            None => None,
        };
        if tail.is_some_and(|t| t < 0)
            || limit.is_some_and(|l| l < 1)
            || since_seconds.is_some_and(|s| s < 1)
            || (since_seconds.is_some() && since_time.is_some())
        {
            return Err(invalid());
        }
        let since = since_time.or_else(|| {
            since_seconds.map(|seconds| {
                now.checked_sub(jiff::SignedDuration::from_secs(seconds))
                    .unwrap_or(jiff::Timestamp::MIN)
            })
        });
        Ok(Self {
            follow: flag("follow")?,
            previous: flag("previous")?,
            timestamps: flag("timestamps")?,
            tail: tail.map(|t| usize::try_from(t).unwrap_or(usize::MAX)),
            limit: limit.map(|l| u64::try_from(l).unwrap_or(u64::MAX)),
            since,
        })
    }
}

/// Why a container has no output yet, as its status says (`ContainerCreating` by default).
fn waiting_reason(pod: &Pod, container: &str) -> String {
    pod.status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .and_then(|statuses| statuses.iter().find(|s| s.name == container))
        .and_then(|s| s.state.as_ref()?.waiting.as_ref()?.reason.clone())
        .unwrap_or_else(|| "ContainerCreating".to_string())
}

/// The response to a log request.
pub(crate) async fn serve(
    kubelet: &Kubelet,
    target: Target,
    query: &Query,
) -> Result<Response, Refusal> {
    let options = LogOptions::parse(query, jiff::Timestamp::now())?;
    let (name, container) = (&target.pod, &target.container);
    let NodeRuntime::Runc(node) = &kubelet.inner.runtime else {
        return Err(Refusal::unavailable(format!(
            "pods {name:?}: its node keeps no container logs (a simulated node runs no processes)"
        )));
    };
    let pod = kubelet
        .pod(&target)
        .await
        .ok_or_else(|| Refusal::not_found(format!("pod {name:?} does not exist")))?;
    if super::find_container(&pod, container).is_none() {
        return Err(Refusal::not_found(format!(
            "container {container:?} not found in pod {name:?}"
        )));
    }
    let uid = pod.metadata.uid.clone().unwrap_or_default();
    let files = node.log_files(&uid, container).unwrap_or_default();
    let file = if options.previous {
        files.iter().rev().nth(1).cloned().ok_or_else(|| {
            Refusal::bad_request(format!(
                "previous terminated container \"{container}\" in pod \"{name}\" not found"
            ))
        })?
    } else {
        files.last().cloned().ok_or_else(|| {
            Refusal::bad_request(format!(
                "container \"{container}\" in pod \"{name}\" is waiting to start: {}",
                waiting_reason(&pod, container)
            ))
        })?
    };
    let raw = read_from(file.clone(), 0).await.unwrap_or_default();
    // A record is complete once its newline is written; the rest is read when it is.
    let complete = raw.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
    let mut view = LogView {
        timestamps: options.timestamps,
        since: options.since,
        at_line_start: true,
    };
    let mut content = view.render(&raw[..complete]);
    let offset = complete as u64;
    if let Some(tail) = options.tail {
        content = last_lines(&content, tail).to_vec();
    }
    if let Some(limit) = options.limit {
        content.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
    }
    let response = Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "text/plain");
    let follow = options.follow && !options.previous;
    let body = if follow && options.limit.is_none() {
        Body::from_stream(follow_file(file, content, offset, view))
    } else {
        Body::from(content)
    };
    response
        .body(body)
        .map_err(|e| Refusal::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))
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
                    let chunk = read_from(file.clone(), offset).await?;
                    if !chunk.is_empty() {
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

/// What `file` holds from `offset` on, read off the async threads; `None` when it cannot be
/// read (it was removed with its pod).
pub(crate) async fn read_from(file: PathBuf, offset: u64) -> Option<Vec<u8>> {
    tokio::task::spawn_blocking(move || {
        let mut handle = std::fs::File::open(&file).ok()?;
        let mut chunk = Vec::new();
        handle.seek(SeekFrom::Start(offset)).ok()?;
        handle.read_to_end(&mut chunk).ok()?;
        Some(chunk)
    })
    .await
    .ok()
    .flatten()
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

    fn options(query: &str) -> Result<LogOptions, Refusal> {
        let now: jiff::Timestamp = "2026-11-25T10:00:00Z".parse().expect("time");
        LogOptions::parse(&Query::parse(Some(query)), now)
    }

    #[test]
    fn log_options_are_read_as_the_kubelet_reads_them() {
        assert_eq!(options(""), Ok(LogOptions::default()));
        let read = options("follow=true&previous=1&timestamps=true&tailLines=5&limitBytes=10")
            .expect("valid");
        assert!(read.follow && read.previous && read.timestamps);
        assert_eq!((read.tail, read.limit), (Some(5), Some(10)));
        // The legacy `tail` wins over `tailLines`; `all` is no limit.
        assert_eq!(options("tail=2&tailLines=5").expect("valid").tail, Some(2));
        assert_eq!(options("tail=all&tailLines=5").expect("valid").tail, None);
        assert_eq!(
            options("sinceSeconds=60").expect("valid").since,
            "2026-11-25T09:59:00Z".parse().ok()
        );
        assert_eq!(
            options("sinceTime=2026-11-25T09:00:00Z")
                .expect("valid")
                .since,
            "2026-11-25T09:00:00Z".parse().ok()
        );
    }

    #[test]
    fn bad_log_options_get_upstreams_answers() {
        for undecodable in ["follow=maybe", "tailLines=x", "sinceTime=yesterday"] {
            let refusal = options(undecodable).expect_err(undecodable);
            assert_eq!(refusal.code, StatusCode::BAD_REQUEST, "{undecodable}");
        }
        for invalid in [
            "tailLines=-1",
            "limitBytes=0",
            "sinceSeconds=0",
            "sinceSeconds=5&sinceTime=2026-11-25T09:00:00Z",
        ] {
            let refusal = options(invalid).expect_err(invalid);
            assert_eq!(refusal.code, StatusCode::UNPROCESSABLE_ENTITY, "{invalid}");
            assert_eq!(refusal.message, r#"{"message": "Invalid request."}"#);
        }
    }

    #[test]
    fn the_last_lines_are_counted_from_the_end() {
        assert_eq!(last_lines(b"a\nb\nc\n", 2), b"b\nc\n");
        assert_eq!(last_lines(b"a\nb\nc", 1), b"c");
        assert_eq!(last_lines(b"a\nb\n", 5), b"a\nb\n");
        assert_eq!(last_lines(b"a\nb\n", 0), b"");
    }
}
