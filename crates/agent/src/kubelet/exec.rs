//! `/exec/{ns}/{pod}/{container}`: runs a command in a running container and pumps its stdio
//! over the WebSocket (`channel.rs`). The API server asks with upstream's parameters:
//! `command` (repeated), `input`, `output`, `error`, `tty`. With a tty (`kubectl exec -it`) the
//! command gets a terminal and its output comes on stdout.

use std::process::Stdio;

use axum::extract::Request;
use axum::extract::ws::WebSocket;
use axum::response::{IntoResponse, Response};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::channel::{self, Channels, Incoming, Outcome};
use super::{Kubelet, Query, Refusal, Target};

/// Checks the request and upgrades it; the command runs once the WebSocket is open.
pub(crate) async fn serve(
    kubelet: &Kubelet,
    target: Target,
    request: Request,
) -> Result<Response, Refusal> {
    let query = Query::parse(request.uri().query());
    let argv: Vec<String> = query.all("command").map(str::to_string).collect();
    if argv.is_empty() {
        return Err(Refusal::bad_request("you must specify at least 1 command"));
    }
    let (node, pod) = kubelet.running_pod(&target, "exec into").await?;
    let upgrade = super::websocket(request).await?;
    let uid = pod.metadata.uid.clone().unwrap_or_default();
    let tty = query.flag("tty");
    let upgrade = upgrade.protocols(channel::PROTOCOLS);
    let Some(command) = node.exec_command(&uid, &target.container, &argv, tty) else {
        // The answer goes in the stream's status rather than as a refused upgrade: kubectl
        // retries a refused WebSocket upgrade over SPDY, and would print what that says. From
        // the status it prints this message, as it prints the kubelet's refusal upstream.
        let message = format!(
            "unable to upgrade connection: container not found (\"{}\")",
            target.container
        );
        return Ok(upgrade
            .on_upgrade(move |socket| async move {
                Channels::new(socket).finish(Outcome::Failed(message)).await;
            })
            .into_response());
    };
    let mut command = tokio::process::Command::from(command);
    command
        .stdin(if query.flag("input") {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    Ok(upgrade
        .on_upgrade(move |socket| run(socket, command))
        .into_response())
}

/// Pumps stdio between the WebSocket and the process, then reports how it ended.
async fn run(socket: WebSocket, mut command: tokio::process::Command) {
    let mut channels = Channels::new(socket);
    let mut child = match command.spawn() {
        Ok(child) => child,
        Err(error) => {
            let message = format!("failed to start the command: {error}");
            return channels.finish(Outcome::Failed(message)).await;
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
                Ok(n) => if !channels.send(channel::STDOUT, &out_buffer[..n]).await { break },
            },
            read = stderr.read(&mut err_buffer), if err_open => match read {
                Ok(0) | Err(_) => err_open = false,
                Ok(n) => if !channels.send(channel::STDERR, &err_buffer[..n]).await { break },
            },
            status = child.wait(), if exit.is_none() => exit = Some(status),
            incoming = channels.recv() => match incoming {
                Incoming::Stdin(data) => {
                    if let Some(pipe) = stdin.as_mut()
                        && pipe.write_all(&data).await.is_err()
                    {
                        stdin = None;
                    }
                }
                Incoming::StdinClosed => stdin = None,
                Incoming::Ignored => {}
                Incoming::Gone => {
                    let _ = child.start_kill();
                    return;
                }
            },
        }
    }
    let outcome = match exit {
        Some(Ok(status)) if status.success() => Outcome::Success,
        Some(Ok(status)) => Outcome::Exited(status.code().unwrap_or(137)),
        Some(Err(error)) => Outcome::Failed(format!("error waiting for the command: {error}")),
        None => Outcome::Failed("the stream ended early".into()),
    };
    channels.finish(outcome).await;
}
