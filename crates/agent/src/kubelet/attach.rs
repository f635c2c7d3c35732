//! `/attach/{ns}/{pod}/{container}`: a running container's output (its log file of the current
//! run, as it grows) and, when it has one, its stdin, over the `channel.k8s.io` WebSocket.

use axum::extract::Request;
use axum::extract::ws::WebSocket;
use axum::response::{IntoResponse, Response};

use super::channel::{self, Channels, Incoming, Outcome};
use super::{Kubelet, Query, Refusal, Target};
use crate::runc::Attached;

/// Checks an attach request and upgrades it.
pub(crate) async fn serve(
    kubelet: &Kubelet,
    target: Target,
    request: Request,
) -> Result<Response, Refusal> {
    let query = Query::parse(request.uri().query());
    let (node, pod) = kubelet.running_pod(&target, "attach to").await?;
    let stdin_once = super::find_container(&pod, &target.container)
        .and_then(|c| c.stdin_once)
        .unwrap_or(false);
    let uid = pod.metadata.uid.clone().unwrap_or_default();
    let Some(mut attached) = node.attach(&uid, &target.container, stdin_once) else {
        return Err(Refusal::bad_request(format!(
            "unable to upgrade connection: container {} not found in pod {}",
            target.container, target.pod
        )));
    };
    let upgrade = super::websocket(request).await?;
    if !query.flag("input") {
        attached.stdin = None;
    }
    Ok(upgrade
        .protocols(channel::PROTOCOLS)
        .on_upgrade(move |socket| run(socket, attached))
        .into_response())
}

/// Sends the container's output as it grows and passes stdin on, until the container stops
/// (then a `Success` status) or the client leaves.
async fn run(socket: WebSocket, attached: Attached) {
    let mut channels = Channels::new(socket);
    let Attached {
        log,
        from_start,
        stdin,
        running,
    } = attached;
    let running = std::sync::Arc::new(running);
    // Writes to a pipe may block: they happen on a thread of their own.
    let mut stdin = stdin.map(|mut pipe| {
        let (sender, receiver) = std::sync::mpsc::channel::<Vec<u8>>();
        std::thread::spawn(move || {
            use std::io::Write;
            while let Ok(data) = receiver.recv() {
                if pipe.write_all(&data).is_err() {
                    return;
                }
            }
        });
        sender
    });
    let mut offset = if from_start {
        0
    } else {
        std::fs::metadata(&log).map(|m| m.len()).unwrap_or(0)
    };
    let mut ticker = tokio::time::interval(std::time::Duration::from_millis(50));
    loop {
        tokio::select! {
            _ = ticker.tick() => {
                // `runc state` is a process: asked off the async threads.
                let alive = {
                    let running = running.clone();
                    tokio::task::spawn_blocking(move || running()).await.unwrap_or(false)
                };
                let mut chunk = super::logs::read_from(log.clone(), offset).await.unwrap_or_default();
                // Whole records only; a record still being written is read next time.
                chunk.truncate(chunk.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1));
                offset += chunk.len() as u64;
                for record in super::logs::records(&chunk) {
                    let stream = if record.stream == "stderr" { channel::STDERR } else { channel::STDOUT };
                    let mut text = record.text.to_vec();
                    if record.ends_line {
                        text.push(b'\n');
                    }
                    if !channels.send(stream, &text).await {
                        return;
                    }
                }
                // Read once more after the container stopped: its last words are in the file.
                if !alive && chunk.is_empty() {
                    break;
                }
            }
            incoming = channels.recv() => match incoming {
                Incoming::Stdin(data) => {
                    if let Some(pipe) = &stdin
                        && pipe.send(data).is_err()
                    {
                        stdin = None;
                    }
                }
                Incoming::StdinClosed => stdin = None,
                Incoming::Ignored => {}
                Incoming::Gone => return,
            },
        }
    }
    channels.finish(Outcome::Success).await;
}
