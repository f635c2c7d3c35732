//! `pods/{name}/exec` over WebSocket with the `v5.channel.k8s.io` subprotocol, as kubectl tries
//! it first: binary messages whose first byte is the stream (0 stdin, 1 stdout, 2 stderr,
//! 3 status, 255 half-close), ending with a `Status` on stream 3 and a normal close.
//!
//! `pods/{name}/attach` speaks the same protocol to a running container: its output (the
//! node's log file of the current run) and, when the container has one, its stdin.
//!
//! The node runs the command ([`NodeExec`]); nothing here dials anything. With `tty=true`
//! (`kubectl exec -it`) the command gets a terminal and its output comes on stdout; resize
//! messages (stream 4) are read and ignored, so the terminal keeps its first size (80x24).

use std::process::Stdio;
use std::sync::Arc;

use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::response::{IntoResponse, Response};
use petset_api::ApiError;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::handlers::Query;

pub const PROTOCOL: &str = "v5.channel.k8s.io";

/// Runs commands in the containers of the pods this process's node runs.
pub trait NodeExec: Send + Sync {
    /// The command to run `argv` in the container, stdio left to the caller; `None` when this
    /// node does not run the pod.
    fn command(
        &self,
        pod: &Value,
        container: &str,
        argv: &[String],
        tty: bool,
    ) -> Option<tokio::process::Command>;

    /// Attaches to the running container; `None` when this node does not run it. With
    /// `stdin_once`, the stdin is handed over for good and the output sent from the start of
    /// the run (also when the container already ended).
    fn attach(&self, pod: &Value, container: &str, stdin_once: bool) -> Option<Attachment>;
}

/// A running container as `attach` reaches it.
pub struct Attachment {
    /// The output of the container's current run.
    pub log: std::path::PathBuf,
    /// Send the output from the start of the run rather than from now.
    pub from_start: bool,
    pub stdin: Option<Box<dyn std::io::Write + Send>>,
    pub running: Box<dyn Fn() -> bool + Send + Sync>,
}

/// Checks an attach request and upgrades it.
pub(crate) fn serve_attach(
    exec: Option<&Arc<dyn NodeExec>>,
    pod: &Value,
    query: &Query,
    upgrade: WebSocketUpgrade,
) -> Result<Response, ApiError> {
    let name = crate::logs::text(pod, "/metadata/name").to_string();
    let container = crate::logs::container_of(pod, query, false)?;
    let phase = crate::logs::text(pod, "/status/phase");
    // A `kubectl run -i` container (stdinOnce) that ended before the attach arrived still
    // gives its output; any other completed pod has nothing to attach to.
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
    let Some(exec) = exec else {
        return Err(ApiError::service_unavailable(format!(
            "pods {name:?}: its node runs no processes here (a simulated node), so there is nothing to attach to"
        )));
    };
    let Some(mut attachment) = exec.attach(pod, &container, stdin_once) else {
        return Err(ApiError::bad_request(format!(
            "unable to upgrade connection: container {container} not found in pod {name}"
        )));
    };
    if query.get("stdin") != Some("true") {
        attachment.stdin = None;
    }
    Ok(upgrade
        .protocols([PROTOCOL])
        .on_upgrade(move |socket| run_attach(socket, attachment))
        .into_response())
}

/// Sends the container's output as it grows and passes stdin on, until the container stops
/// (then a `Success` status) or the client leaves.
async fn run_attach(mut socket: WebSocket, attachment: Attachment) {
    use std::io::{Read, Seek, SeekFrom};
    let Attachment {
        log,
        from_start,
        stdin,
        running,
    } = attachment;
    // Writes to a pipe may block: they happen on a thread of their own.
    let stdin = stdin.map(|mut pipe| {
        let (sender, receiver) = std::sync::mpsc::channel::<Vec<u8>>();
        std::thread::spawn(move || {
            while let Ok(data) = receiver.recv() {
                if pipe.write_all(&data).is_err() {
                    return;
                }
            }
        });
        sender
    });
    let mut stdin = stdin;
    let mut offset = if from_start {
        0
    } else {
        std::fs::metadata(&log).map(|m| m.len()).unwrap_or(0)
    };
    let mut ticker = tokio::time::interval(std::time::Duration::from_millis(50));
    loop {
        tokio::select! {
            _ = ticker.tick() => {
                let alive = running();
                let mut chunk = Vec::new();
                if let Ok(mut file) = std::fs::File::open(&log)
                    && file.seek(SeekFrom::Start(offset)).is_ok()
                {
                    let _ = file.read_to_end(&mut chunk);
                }
                // Whole records only; a record still being written is read next time.
                chunk.truncate(chunk.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1));
                offset += chunk.len() as u64;
                for record in crate::logs::records(&chunk) {
                    let stream = if record.stream == "stderr" { 2 } else { 1 };
                    let mut text = record.text.to_vec();
                    if record.ends_line {
                        text.push(b'\n');
                    }
                    if !send(&mut socket, stream, &text).await {
                        return;
                    }
                }
                // Read once more after the container stopped: its last words are in the file.
                if !alive && chunk.is_empty() {
                    break;
                }
            }
            message = socket.recv() => match message {
                Some(Ok(Message::Binary(data))) => match data.first() {
                    Some(0) => {
                        if let Some(pipe) = &stdin
                            && pipe.send(data[1..].to_vec()).is_err()
                        {
                            stdin = None;
                        }
                    }
                    Some(255) if data.get(1) == Some(&0) => stdin = None,
                    _ => {}
                },
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return,
                Some(Ok(_)) => {}
            },
        }
    }
    let status = json!({"metadata": {}, "status": "Success"});
    end_with(&mut socket, &status).await;
}

/// Checks the request and upgrades it; the command runs once the WebSocket is open.
pub(crate) fn serve(
    exec: Option<&Arc<dyn NodeExec>>,
    pod: &Value,
    query: &Query,
    upgrade: WebSocketUpgrade,
) -> Result<Response, ApiError> {
    let name = crate::logs::text(pod, "/metadata/name").to_string();
    let container = crate::logs::container_of(pod, query, false)?;
    let phase = crate::logs::text(pod, "/status/phase");
    if matches!(phase, "Succeeded" | "Failed") {
        return Err(ApiError::bad_request(format!(
            "cannot exec into a container in a completed pod; current phase is {phase}"
        )));
    }
    let argv: Vec<String> = query.all("command").map(str::to_string).collect();
    if argv.is_empty() {
        return Err(ApiError::bad_request("you must specify at least 1 command"));
    }
    let Some(exec) = exec else {
        return Err(ApiError::service_unavailable(format!(
            "pods {name:?}: its node runs no processes here (a simulated node), so there is nothing to exec into"
        )));
    };
    let tty = query.get("tty") == Some("true");
    let Some(mut command) = exec.command(pod, &container, &argv, tty) else {
        // The answer goes in the stream's status rather than as a refused upgrade: kubectl
        // retries a refused WebSocket upgrade over SPDY, and would print what that says. From
        // the status it prints this message, as it prints the kubelet's refusal upstream.
        let message =
            format!("unable to upgrade connection: container not found (\"{container}\")");
        return Ok(upgrade
            .protocols([PROTOCOL])
            .on_upgrade(move |socket| refuse(socket, message))
            .into_response());
    };
    let stdin = query.get("stdin") == Some("true");
    command
        .stdin(if stdin { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    Ok(upgrade
        .protocols([PROTOCOL])
        .on_upgrade(move |socket| run(socket, command))
        .into_response())
}

/// Ends an exec stream at once with a `Failure` status carrying `message`.
async fn refuse(mut socket: WebSocket, message: String) {
    let status = json!({"metadata": {}, "status": "Failure", "message": message});
    end_with(&mut socket, &status).await;
}

/// Sends the stream's final status and closes it normally.
async fn end_with(socket: &mut WebSocket, status: &Value) {
    send(socket, 3, status.to_string().as_bytes()).await;
    let _ = socket
        .send(Message::Close(Some(CloseFrame {
            code: 1000,
            reason: "".into(),
        })))
        .await;
}

async fn send(socket: &mut WebSocket, stream: u8, payload: &[u8]) -> bool {
    let mut message = Vec::with_capacity(payload.len() + 1);
    message.push(stream);
    message.extend_from_slice(payload);
    socket.send(Message::Binary(message.into())).await.is_ok()
}

/// Pumps stdio between the WebSocket and the process, then reports how it ended.
async fn run(mut socket: WebSocket, mut command: tokio::process::Command) {
    let mut child = match command.spawn() {
        Ok(child) => child,
        Err(error) => {
            let status = json!({"metadata": {}, "status": "Failure",
                "message": format!("failed to start the command: {error}")});
            send(&mut socket, 3, status.to_string().as_bytes()).await;
            let _ = socket.send(Message::Close(None)).await;
            return;
        }
    };
    let mut stdin = child.stdin.take();
    let (Some(mut stdout), Some(mut stderr)) = (child.stdout.take(), child.stderr.take()) else {
        return;
    };
    let (mut out_buffer, mut err_buffer) = (vec![0u8; 32 * 1024], vec![0u8; 32 * 1024]);
    let (mut out_open, mut err_open) = (true, true);
    let mut exit = None;
    while out_open || err_open || exit.is_none() {
        tokio::select! {
            read = stdout.read(&mut out_buffer), if out_open => match read {
                Ok(0) | Err(_) => out_open = false,
                Ok(n) => if !send(&mut socket, 1, &out_buffer[..n]).await { break },
            },
            read = stderr.read(&mut err_buffer), if err_open => match read {
                Ok(0) | Err(_) => err_open = false,
                Ok(n) => if !send(&mut socket, 2, &err_buffer[..n]).await { break },
            },
            status = child.wait(), if exit.is_none() => exit = Some(status),
            message = socket.recv() => match message {
                Some(Ok(Message::Binary(data))) => match data.first() {
                    Some(0) => {
                        if let Some(pipe) = stdin.as_mut()
                            && pipe.write_all(&data[1..]).await.is_err()
                        {
                            stdin = None;
                        }
                    }
                    // [255, 0]: the client's stdin ended.
                    Some(255) if data.get(1) == Some(&0) => stdin = None,
                    _ => {}
                },
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => {
                    let _ = child.start_kill();
                    return;
                }
                Some(Ok(_)) => {}
            },
        }
    }
    let status = match exit {
        Some(Ok(status)) if status.success() => json!({"metadata": {}, "status": "Success"}),
        Some(Ok(status)) => {
            let code = status.code().unwrap_or(137);
            json!({"metadata": {}, "status": "Failure", "reason": "NonZeroExitCode",
                "message": format!("command terminated with non-zero exit code: error executing command, exit status {code}"),
                "details": {"causes": [{"reason": "ExitCode", "message": code.to_string()}]}})
        }
        Some(Err(error)) => json!({"metadata": {}, "status": "Failure",
            "message": format!("error waiting for the command: {error}")}),
        None => json!({"metadata": {}, "status": "Failure", "message": "the stream ended early"}),
    };
    end_with(&mut socket, &status).await;
}
