//! The `channel.k8s.io` WebSocket protocols of exec and attach (apimachinery's
//! `wsstream/conn.go`, `remotecommand/constants.go`): binary messages whose first byte is the
//! stream (0 stdin, 1 stdout, 2 stderr, 3 error/status, 4 resize).
//!
//! - `v5.channel.k8s.io` (kubectl since 1.30): as v4, plus `[255, stream]` to half-close a
//!   stream (kubectl sends `[255, 0]` when its stdin ends);
//! - `v4.channel.k8s.io`: the stream ends with a `Status` on stream 3 (exit codes as causes);
//! - `v3`, `v2` and plain `channel.k8s.io`: stream 3 carries the failure's text only, nothing
//!   on success.
//!
//! Either way the server then closes the WebSocket normally (1000). Resize messages are read
//! and ignored, so a terminal keeps its first size (80x24).

use axum::extract::ws::{CloseFrame, Message, WebSocket};
use serde_json::{Value, json};

/// What the server offers, best first.
pub(crate) const PROTOCOLS: [&str; 5] = [
    "v5.channel.k8s.io",
    "v4.channel.k8s.io",
    "v3.channel.k8s.io",
    "v2.channel.k8s.io",
    "channel.k8s.io",
];

pub(crate) const STDOUT: u8 = 1;
pub(crate) const STDERR: u8 = 2;
const STATUS: u8 = 3;
const CLOSE: u8 = 255;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Version {
    V5,
    V4,
    /// v3, v2 and v1: the error stream carries text.
    Text,
}

impl Version {
    /// The version of the subprotocol the upgrade chose (none chosen: the oldest).
    pub fn of(protocol: Option<&str>) -> Self {
        match protocol {
            Some("v5.channel.k8s.io") => Self::V5,
            Some("v4.channel.k8s.io") => Self::V4,
            _ => Self::Text,
        }
    }
}

/// How a command or an attach ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Outcome {
    Success,
    /// The process exited with this non-zero code.
    Exited(i32),
    Failed(String),
}

impl Outcome {
    /// The message on the error stream for this protocol version (`None`: nothing to send).
    pub fn payload(&self, version: Version) -> Option<Vec<u8>> {
        let message = match self {
            Self::Success => None,
            Self::Exited(code) => Some(format!(
                "command terminated with non-zero exit code: error executing command, exit status {code}"
            )),
            Self::Failed(message) => Some(message.clone()),
        };
        if version == Version::Text {
            return message.map(String::into_bytes);
        }
        let status: Value = match self {
            Self::Success => json!({"metadata": {}, "status": "Success"}),
            Self::Exited(code) => json!({"metadata": {}, "status": "Failure",
                "reason": "NonZeroExitCode", "message": message,
                "details": {"causes": [{"reason": "ExitCode", "message": code.to_string()}]}}),
            Self::Failed(message) => {
                json!({"metadata": {}, "status": "Failure", "message": message})
            }
        };
        Some(status.to_string().into_bytes())
    }
}

/// What a client's message means.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Incoming {
    Stdin(Vec<u8>),
    /// The client's stdin ended (v5's half-close of stream 0).
    StdinClosed,
    /// Resize, or anything else that changes nothing here.
    Ignored,
    /// The client closed the WebSocket or it failed.
    Gone,
}

/// Reads a client's message.
pub(crate) fn decode(version: Version, message: Option<Result<Message, axum::Error>>) -> Incoming {
    match message {
        Some(Ok(Message::Binary(data))) => match data.first() {
            Some(0) => Incoming::Stdin(data[1..].to_vec()),
            Some(&CLOSE) if version == Version::V5 && data.get(1) == Some(&0) => {
                Incoming::StdinClosed
            }
            _ => Incoming::Ignored,
        },
        Some(Ok(Message::Close(_))) | None | Some(Err(_)) => Incoming::Gone,
        Some(Ok(_)) => Incoming::Ignored,
    }
}

/// One exec or attach session's WebSocket.
pub(crate) struct Channels {
    pub socket: WebSocket,
    pub version: Version,
}

impl Channels {
    pub fn new(socket: WebSocket) -> Self {
        let version = Version::of(socket.protocol().and_then(|p| p.to_str().ok()));
        Self { socket, version }
    }

    /// Sends `payload` on `stream`; false when the client is gone.
    pub async fn send(&mut self, stream: u8, payload: &[u8]) -> bool {
        let mut message = Vec::with_capacity(payload.len() + 1);
        message.push(stream);
        message.extend_from_slice(payload);
        self.socket
            .send(Message::Binary(message.into()))
            .await
            .is_ok()
    }

    pub async fn recv(&mut self) -> Incoming {
        decode(self.version, self.socket.recv().await)
    }

    /// Reports the outcome and closes the WebSocket normally.
    pub async fn finish(mut self, outcome: Outcome) {
        if let Some(payload) = outcome.payload(self.version) {
            self.send(STATUS, &payload).await;
        }
        let _ = self
            .socket
            .send(Message::Close(Some(CloseFrame {
                code: 1000,
                reason: "".into(),
            })))
            .await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn binary(bytes: &[u8]) -> Option<Result<Message, axum::Error>> {
        Some(Ok(Message::Binary(bytes.to_vec().into())))
    }

    #[test]
    fn the_chosen_subprotocol_decides_the_version() {
        assert_eq!(Version::of(Some("v5.channel.k8s.io")), Version::V5);
        assert_eq!(Version::of(Some("v4.channel.k8s.io")), Version::V4);
        assert_eq!(Version::of(Some("v2.channel.k8s.io")), Version::Text);
        assert_eq!(Version::of(None), Version::Text);
    }

    #[test]
    fn stdin_and_its_end_are_read_as_each_version_means_them() {
        assert_eq!(
            decode(Version::V5, binary(b"\x00hi\n")),
            Incoming::Stdin(b"hi\n".to_vec())
        );
        assert_eq!(
            decode(Version::V5, binary(&[255, 0])),
            Incoming::StdinClosed
        );
        // Before v5, 255 is no stream at all.
        assert_eq!(decode(Version::V4, binary(&[255, 0])), Incoming::Ignored);
        assert_eq!(
            decode(Version::V5, binary(b"\x04{\"Width\":80,\"Height\":24}\n")),
            Incoming::Ignored
        );
        assert_eq!(decode(Version::V5, None), Incoming::Gone);
    }

    #[test]
    fn outcomes_are_a_status_from_v4_on_and_text_before() {
        let exited = Outcome::Exited(3);
        let status: Value =
            serde_json::from_slice(&exited.payload(Version::V5).expect("status")).expect("json");
        assert_eq!(status["reason"], "NonZeroExitCode");
        assert_eq!(status["details"]["causes"][0]["message"], "3");
        assert_eq!(
            Outcome::Success.payload(Version::V4),
            Some(br#"{"metadata":{},"status":"Success"}"#.to_vec())
        );
        assert_eq!(Outcome::Success.payload(Version::Text), None);
        assert_eq!(
            Outcome::Failed("no".into()).payload(Version::Text),
            Some(b"no".to_vec())
        );
    }
}
