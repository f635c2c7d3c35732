//! `/portForward/{ns}/{pod}`, as `kubectl port-forward` speaks it through the API server: a
//! WebSocket with the subprotocol `SPDY/3.1+portforward.k8s.io` that carries a SPDY/3.1 session
//! as a byte stream. For every local connection the client opens two SPDY streams with the
//! headers `port`, `requestID` and `streamType` (`error` or `data`); the node connects to that
//! port of the pod and copies bytes between the connection and the data stream, and writes any
//! failure to the error stream. Both end (FIN) when the connection does.
//!
//! Only what the client uses is implemented: SYN_STREAM/SYN_REPLY, DATA, RST_STREAM, PING,
//! GOAWAY, and WINDOW_UPDATE (sent once the pod's side took the bytes, so a client that counts
//! its window is never stalled and one that sends faster than the pod reads is held back).
//! Header blocks from the client are zlib with the SPDY/3 dictionary; ours are zlib stored
//! blocks, which any inflater reads without a dictionary.
//!
//! Memory is bounded: frames to the client and bytes to each pod connection go through
//! bounded channels, so a fast client waits for a slow pod instead of growing a queue.
//!
//! The pod is dialed at its address on this node's bridge only.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};

use axum::extract::Request;
use axum::extract::ws::{Message, WebSocket};
use axum::response::{IntoResponse, Response};
use futures::{SinkExt, StreamExt};
use miniz_oxide::inflate::TINFLStatus;
use miniz_oxide::inflate::core::{DecompressorOxide, decompress, inflate_flags};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

use super::{Kubelet, Refusal, Target};

pub const PROTOCOL: &str = "SPDY/3.1+portforward.k8s.io";

const SYN_STREAM: u16 = 1;
const SYN_REPLY: u16 = 2;
const RST_STREAM: u16 = 3;
const PING: u16 = 6;
const GOAWAY: u16 = 7;
const WINDOW_UPDATE: u16 = 9;
const FLAG_FIN: u8 = 0x01;

/// Frames queued for the client, and chunks queued for one pod connection, at most.
const OUTGOING_FRAMES: usize = 64;
const TO_POD_CHUNKS: usize = 16;

/// Checks the pod and upgrades; the session runs once the WebSocket is open.
pub(crate) async fn serve(
    kubelet: &Kubelet,
    target: Target,
    request: Request,
) -> Result<Response, Refusal> {
    let address = kubelet.dialable_pod(&target, "forward to").await?;
    let upgrade = super::websocket(request).await?;
    Ok(upgrade
        .protocols([PROTOCOL])
        .on_upgrade(move |socket| session(socket, address))
        .into_response())
}

fn control_frame(kind: u16, flags: u8, body: &[u8]) -> Vec<u8> {
    let mut frame = Vec::with_capacity(8 + body.len());
    frame.extend_from_slice(&(0x8003u16).to_be_bytes());
    frame.extend_from_slice(&kind.to_be_bytes());
    frame.push(flags);
    frame.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
    frame.extend_from_slice(body);
    frame
}

fn data_frame(stream: u32, flags: u8, data: &[u8]) -> Vec<u8> {
    let mut frame = Vec::with_capacity(8 + data.len());
    frame.extend_from_slice(&(stream & 0x7fff_ffff).to_be_bytes());
    frame.push(flags);
    frame.extend_from_slice(&(data.len() as u32).to_be_bytes()[1..]);
    frame.extend_from_slice(data);
    frame
}

/// The SPDY/3 header-compression dictionary (SPDY/3 draft, section 2.6.10.1): these names,
/// each preceded by its length as 4 big-endian bytes, then a run of status lines, dates and
/// content types as they are.
fn dictionary() -> Vec<u8> {
    const NAMES: &[&str] = &[
        "options",
        "head",
        "post",
        "put",
        "delete",
        "trace",
        "accept",
        "accept-charset",
        "accept-encoding",
        "accept-language",
        "accept-ranges",
        "age",
        "allow",
        "authorization",
        "cache-control",
        "connection",
        "content-base",
        "content-encoding",
        "content-language",
        "content-length",
        "content-location",
        "content-md5",
        "content-range",
        "content-type",
        "date",
        "etag",
        "expect",
        "expires",
        "from",
        "host",
        "if-match",
        "if-modified-since",
        "if-none-match",
        "if-range",
        "if-unmodified-since",
        "last-modified",
        "location",
        "max-forwards",
        "pragma",
        "proxy-authenticate",
        "proxy-authorization",
        "range",
        "referer",
        "retry-after",
        "server",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "user-agent",
        "vary",
        "via",
        "warning",
        "www-authenticate",
        "method",
        "get",
        "status",
        "200 OK",
        "version",
        "HTTP/1.1",
        "url",
        "public",
        "set-cookie",
        "keep-alive",
        "origin",
    ];
    const TAIL: &str = concat!(
        "100101201202205206300302303304305306307402405406407408409410411412413414415416417",
        "502504505203 Non-Authoritative Information204 No Content301 Moved Permanently",
        "400 Bad Request401 Unauthorized403 Forbidden404 Not Found500 Internal Server Error",
        "501 Not Implemented503 Service UnavailableJan Feb Mar Apr May Jun Jul Aug Sept Oct ",
        "Nov Dec 00:00:00 Mon, Tue, Wed, Thu, Fri, Sat, Sun, GMTchunked,text/html,image/png,",
        "image/jpg,image/gif,application/xml,application/xhtml+xml,text/plain,",
        "text/javascript,publicprivatemax-age=gzip,deflate,sdchcharset=utf-8charset=",
        "iso-8859-1,utf-,*,enq=0.",
    );
    let mut dictionary = Vec::new();
    for name in NAMES {
        dictionary.extend_from_slice(&(name.len() as u32).to_be_bytes());
        dictionary.extend_from_slice(name.as_bytes());
    }
    dictionary.extend_from_slice(TAIL.as_bytes());
    dictionary
}

/// The session's header decompressor: one zlib stream over every header block the client
/// sends, which may refer back to the dictionary and to earlier blocks.
struct Headers {
    inflater: Box<DecompressorOxide>,
    /// Everything inflated so far (after the dictionary, when the stream uses it): the window
    /// later blocks refer back into.
    history: Vec<u8>,
    started: bool,
}

/// The history kept once it grows past this: deflate refers back at most 32 KiB.
const HISTORY_LIMIT: usize = 256 * 1024;
const WINDOW: usize = 32 * 1024;

impl Headers {
    fn new() -> Self {
        Self {
            inflater: Box::default(),
            history: Vec::new(),
            started: false,
        }
    }

    /// Decodes one header block into (lowercase name, value) pairs.
    fn decode(&mut self, mut block: &[u8]) -> Option<Vec<(String, String)>> {
        if !self.started {
            // The zlib header; with FDICT set, the dictionary's id follows.
            let (method, flags) = (*block.first()?, *block.get(1)?);
            if method & 0x0f != 8 {
                return None;
            }
            block = &block[2..];
            if flags & 0x20 != 0 {
                block = block.get(4..)?;
                self.history = dictionary();
            }
            self.started = true;
        }
        let start = self.history.len();
        let flags = inflate_flags::TINFL_FLAG_USING_NON_WRAPPING_OUTPUT_BUF
            | inflate_flags::TINFL_FLAG_HAS_MORE_INPUT;
        loop {
            let position = self.history.len();
            self.history.resize(position + 4096, 0);
            let (status, read, written) = decompress(
                &mut self.inflater,
                block,
                &mut self.history,
                position,
                flags,
            );
            self.history.truncate(position + written);
            block = &block[read..];
            match status {
                TINFLStatus::HasMoreOutput => continue,
                TINFLStatus::NeedsMoreInput | TINFLStatus::Done if block.is_empty() => break,
                TINFLStatus::NeedsMoreInput | TINFLStatus::Done => continue,
                _ => return None,
            }
        }
        let pairs = parse_pairs(&self.history[start..]);
        if self.history.len() > HISTORY_LIMIT {
            let cut = self.history.len() - WINDOW;
            self.history.drain(..cut);
        }
        pairs
    }
}

/// A decompressed header block: a count, then length-prefixed names and values.
fn parse_pairs(block: &[u8]) -> Option<Vec<(String, String)>> {
    let read_u32 = |at: usize| -> Option<usize> {
        let bytes: [u8; 4] = block.get(at..at + 4)?.try_into().ok()?;
        Some(u32::from_be_bytes(bytes) as usize)
    };
    let count = read_u32(0)?;
    let mut at = 4;
    let mut pairs = Vec::new();
    for _ in 0..count {
        let length = read_u32(at)?;
        let name = String::from_utf8_lossy(block.get(at + 4..at + 4 + length)?).to_lowercase();
        at += 4 + length;
        let length = read_u32(at)?;
        let value = String::from_utf8_lossy(block.get(at + 4..at + 4 + length)?).into_owned();
        at += 4 + length;
        pairs.push((name, value));
    }
    Some(pairs)
}

/// Our header blocks: an empty header list as a zlib stored block (the first one after the
/// zlib header) and a sync-flush marker, so the client's inflater reads it without the
/// dictionary.
struct ReplyHeaders {
    started: bool,
}

impl ReplyHeaders {
    fn empty_block(&mut self) -> Vec<u8> {
        let content = 0u32.to_be_bytes();
        let mut block = Vec::new();
        if !self.started {
            block.extend_from_slice(&[0x78, 0x01]);
            self.started = true;
        }
        let length = content.len() as u16;
        block.push(0x00);
        block.extend_from_slice(&length.to_le_bytes());
        block.extend_from_slice(&(!length).to_le_bytes());
        block.extend_from_slice(&content);
        // An empty stored block ends it, as zlib's sync flush does: inflaters (Go's among them)
        // hand out a stored block's bytes only once the next block begins.
        block.extend_from_slice(&[0x00, 0x00, 0x00, 0xff, 0xff]);
        block
    }
}

/// A forwarded connection: its two streams, and where the client's bytes for the pod go.
#[derive(Default)]
struct Forward {
    data: Option<u32>,
    error: Option<u32>,
    port: Option<u16>,
    to_pod: Option<mpsc::Sender<Option<Vec<u8>>>>,
    started: bool,
}

async fn session(socket: WebSocket, address: IpAddr) {
    let (mut sink, mut incoming) = socket.split();
    let (outgoing, mut frames) = mpsc::channel::<Vec<u8>>(OUTGOING_FRAMES);
    let writer = tokio::spawn(async move {
        while let Some(frame) = frames.recv().await {
            if sink.send(Message::Binary(frame.into())).await.is_err() {
                return;
            }
        }
        let _ = sink.close().await;
    });
    let mut buffer: Vec<u8> = Vec::new();
    let mut headers = Headers::new();
    let mut replies = ReplyHeaders { started: false };
    let mut forwards: HashMap<String, Forward> = HashMap::new();
    let mut request_of: HashMap<u32, String> = HashMap::new();
    'session: while let Some(message) = incoming.next().await {
        let message = match message {
            Ok(message) => message,
            Err(error) => {
                tracing::debug!(%error, "port-forward: the WebSocket failed");
                break;
            }
        };
        match message {
            Message::Binary(bytes) => buffer.extend_from_slice(&bytes),
            Message::Close(_) => break,
            other => {
                tracing::debug!(?other, "port-forward: a message that is not binary");
                continue;
            }
        }
        while buffer.len() >= 8 {
            let length = u32::from_be_bytes([0, buffer[5], buffer[6], buffer[7]]) as usize;
            if buffer.len() < 8 + length {
                break;
            }
            let frame: Vec<u8> = buffer.drain(..8 + length).collect();
            let flags = frame[4];
            let body = &frame[8..];
            if frame[0] & 0x80 == 0 {
                // DATA from the client: bytes for the pod, or the end of them.
                let stream = u32::from_be_bytes([frame[0], frame[1], frame[2], frame[3]]);
                let forward = request_of.get(&stream).and_then(|r| forwards.get(r));
                if let Some(to_pod) = forward
                    .filter(|f| f.data == Some(stream))
                    .and_then(|f| f.to_pod.clone())
                {
                    // Waits while the pod's side is full: the client is held back, not queued.
                    if !body.is_empty() {
                        let _ = to_pod.send(Some(body.to_vec())).await;
                    }
                    if flags & FLAG_FIN != 0 {
                        let _ = to_pod.send(None).await;
                    }
                }
                if !body.is_empty() {
                    let mut update = stream.to_be_bytes().to_vec();
                    update.extend_from_slice(&(body.len() as u32).to_be_bytes());
                    let _ = outgoing
                        .send(control_frame(WINDOW_UPDATE, 0, &update))
                        .await;
                }
                continue;
            }
            let kind = u16::from_be_bytes([frame[2], frame[3]]);
            match kind {
                SYN_STREAM if body.len() >= 10 => {
                    let stream =
                        u32::from_be_bytes([body[0], body[1], body[2], body[3]]) & 0x7fff_ffff;
                    let Some(pairs) = headers.decode(&body[10..]) else {
                        tracing::debug!("port-forward: unreadable SPDY headers");
                        break 'session;
                    };
                    let header = |name: &str| {
                        pairs
                            .iter()
                            .find(|(n, _)| n == name)
                            .map(|(_, v)| v.clone())
                    };
                    let request = header("requestid").unwrap_or_default();
                    let mut reply = stream.to_be_bytes().to_vec();
                    reply.extend_from_slice(&replies.empty_block());
                    let _ = outgoing.send(control_frame(SYN_REPLY, 0, &reply)).await;
                    // Connections that ended are forgotten (their copier dropped its end).
                    forwards.retain(|_, f| f.to_pod.as_ref().is_none_or(|t| !t.is_closed()));
                    request_of.retain(|_, r| forwards.contains_key(r));
                    let forward = forwards.entry(request.clone()).or_default();
                    forward.port = forward
                        .port
                        .or_else(|| header("port").and_then(|p| p.parse().ok()));
                    match header("streamtype").as_deref() {
                        Some("error") => forward.error = Some(stream),
                        _ => forward.data = Some(stream),
                    }
                    request_of.insert(stream, request.clone());
                    // The kubelet starts once it has both streams of a request.
                    if let (Some(data), Some(error), false) =
                        (forward.data, forward.error, forward.started)
                    {
                        forward.started = true;
                        let (to_pod, from_client) = mpsc::channel(TO_POD_CHUNKS);
                        forward.to_pod = Some(to_pod);
                        tokio::spawn(connect(
                            SocketAddr::new(address, forward.port.unwrap_or(0)),
                            data,
                            error,
                            from_client,
                            outgoing.clone(),
                        ));
                    }
                }
                PING => {
                    let _ = outgoing.send(control_frame(PING, 0, body)).await;
                }
                GOAWAY => break 'session,
                RST_STREAM if body.len() >= 4 => {
                    let stream =
                        u32::from_be_bytes([body[0], body[1], body[2], body[3]]) & 0x7fff_ffff;
                    if let Some(request) = request_of.remove(&stream)
                        && let Some(to_pod) = forwards.get(&request).and_then(|f| f.to_pod.clone())
                    {
                        let _ = to_pod.send(None).await;
                    }
                }
                // SETTINGS, WINDOW_UPDATE, HEADERS: nothing to do.
                _ => {}
            }
        }
    }
    let mut goaway = 0u32.to_be_bytes().to_vec();
    goaway.extend_from_slice(&0u32.to_be_bytes());
    let _ = outgoing.send(control_frame(GOAWAY, 0, &goaway)).await;
    drop(outgoing);
    for forward in forwards.values() {
        if let Some(to_pod) = &forward.to_pod {
            // A connection whose queue is full is ended by the sender's drop instead.
            let _ = to_pod.try_send(None);
        }
    }
    let _ = writer.await;
}

/// One forwarded connection: dials the pod, then copies both ways; a failure goes to the
/// error stream. Both streams end with a FIN.
async fn connect(
    target: SocketAddr,
    data: u32,
    error: u32,
    mut from_client: mpsc::Receiver<Option<Vec<u8>>>,
    outgoing: mpsc::Sender<Vec<u8>>,
) {
    let connection = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        tokio::net::TcpStream::connect(target),
    )
    .await;
    let stream = match connection {
        Ok(Ok(stream)) => stream,
        Ok(Err(e)) => {
            return fail(&outgoing, data, error, &format!("dial tcp {target}: {e}")).await;
        }
        Err(_) => {
            return fail(
                &outgoing,
                data,
                error,
                &format!("dial tcp {target}: timeout"),
            )
            .await;
        }
    };
    let (mut reader, mut writer) = stream.into_split();
    let to_pod = async move {
        while let Some(Some(bytes)) = from_client.recv().await {
            if writer.write_all(&bytes).await.is_err() {
                return;
            }
        }
        let _ = writer.shutdown().await;
    };
    let outgoing_data = outgoing.clone();
    let from_pod = async move {
        let mut buffer = vec![0u8; 32 * 1024];
        loop {
            match reader.read(&mut buffer).await {
                Ok(0) | Err(_) => break,
                Ok(read) => {
                    if outgoing_data
                        .send(data_frame(data, 0, &buffer[..read]))
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
            }
        }
        let _ = outgoing_data.send(data_frame(data, FLAG_FIN, &[])).await;
    };
    tokio::join!(to_pod, from_pod);
    let _ = outgoing.send(data_frame(error, FLAG_FIN, &[])).await;
}

async fn fail(outgoing: &mpsc::Sender<Vec<u8>>, data: u32, error: u32, message: &str) {
    for frame in [
        data_frame(error, 0, message.as_bytes()),
        data_frame(error, FLAG_FIN, &[]),
        data_frame(data, FLAG_FIN, &[]),
    ] {
        if outgoing.send(frame).await.is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_dictionary_is_the_spdy3_one() {
        let dictionary = dictionary();
        assert_eq!(dictionary.len(), 1423);
        assert_eq!(&dictionary[..11], b"\0\0\0\x07options");
        assert!(dictionary.ends_with(b",*,enq=0."));
    }

    #[test]
    fn header_blocks_decode_across_a_session() {
        // Two blocks of one zlib stream, as stored blocks (no dictionary).
        let mut replies = ReplyHeaders { started: false };
        let first = replies.empty_block();
        let mut headers = Headers::new();
        assert_eq!(headers.decode(&first), Some(Vec::new()));
        let second = replies.empty_block();
        assert_eq!(headers.decode(&second), Some(Vec::new()));
        let mut content = Vec::new();
        content.extend_from_slice(&1u32.to_be_bytes());
        for word in ["Port", "8080"] {
            content.extend_from_slice(&(word.len() as u32).to_be_bytes());
            content.extend_from_slice(word.as_bytes());
        }
        let mut block = vec![0x00];
        let length = content.len() as u16;
        block.extend_from_slice(&length.to_le_bytes());
        block.extend_from_slice(&(!length).to_le_bytes());
        block.extend_from_slice(&content);
        assert_eq!(
            headers.decode(&block),
            Some(vec![("port".to_string(), "8080".to_string())])
        );
    }
}
