//! The WebSocket to the hub: connecting (rustls, the msgpack sub-protocol, the agent
//! token), encoding frames, and the reconnect backoff of docs/protocol.md §12.4. The
//! session itself is in [`session`], written over any `Sink`/`Stream` of messages.

pub mod loose;
pub mod session;

use std::sync::Arc;
use std::time::Duration;

use agenthub_protocol::{ClientFrame, Codec, Limits, SUBPROTOCOL_MSGPACK, ServerFrame};
use rand::Rng;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{Connector, MaybeTlsStream, WebSocketStream};

use crate::connection::loose::Loose;
use crate::credentials::Secret;
use crate::tls::HubUrls;

/// A connected WebSocket.
pub type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Why a connection attempt failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConnectError {
    /// HTTP 401: the token is unknown or revoked. Do not retry.
    Unauthorized(String),
    /// HTTP 400 or another answer that retrying will not change.
    Refused(String),
    /// Network errors, 5xx, 429: retry with backoff.
    Transient(String),
}

/// Opens the WebSocket, offering the msgpack sub-protocol.
pub async fn connect(
    urls: &HubUrls,
    token: &Secret,
    tls: Option<Arc<rustls::ClientConfig>>,
) -> Result<(Socket, Codec), ConnectError> {
    let mut request = urls
        .websocket
        .as_str()
        .into_client_request()
        .map_err(|err| ConnectError::Refused(format!("bad WebSocket URL: {err}")))?;
    let mut auth = HeaderValue::from_str(&format!("Bearer {}", token.expose()))
        .map_err(|_| ConnectError::Unauthorized("the agent token has invalid characters".into()))?;
    auth.set_sensitive(true);
    request.headers_mut().insert("authorization", auth);
    request.headers_mut().insert(
        "sec-websocket-protocol",
        HeaderValue::from_static(SUBPROTOCOL_MSGPACK),
    );
    request
        .headers_mut()
        .insert("user-agent", HeaderValue::from_static(crate::AGENT_VERSION));
    // Small buffers: an idle agentd should cost little memory.
    let config = WebSocketConfig::default()
        .read_buffer_size(8 * 1024)
        .write_buffer_size(0)
        .max_message_size(Some(64 << 20));
    let connector = match (urls.websocket.scheme(), tls) {
        ("wss", Some(tls)) => Connector::Rustls(tls),
        ("wss", None) => {
            return Err(ConnectError::Refused(
                "no TLS configuration for a wss:// hub".into(),
            ));
        }
        _ => Connector::Plain,
    };
    let attempt = tokio_tungstenite::connect_async_tls_with_config(
        request,
        Some(config),
        true,
        Some(connector),
    );
    let (socket, response) = match tokio::time::timeout(Duration::from_secs(30), attempt).await {
        Err(_) => {
            return Err(ConnectError::Transient(
                "connecting timed out after 30 s".into(),
            ));
        }
        Ok(Ok(connected)) => connected,
        Ok(Err(tungstenite::Error::Http(response))) => {
            let status = response.status();
            let body = response
                .body()
                .as_deref()
                .map(|body| String::from_utf8_lossy(body).into_owned())
                .unwrap_or_default();
            let detail = format!(
                "HTTP {status}: {}",
                body.chars().take(300).collect::<String>()
            );
            return Err(match status.as_u16() {
                401 => ConnectError::Unauthorized(detail),
                400 | 403 | 404 => ConnectError::Refused(detail),
                _ => ConnectError::Transient(detail),
            });
        }
        Ok(Err(err)) => return Err(ConnectError::Transient(innermost(&err))),
    };
    let codec = response
        .headers()
        .get("sec-websocket-protocol")
        .and_then(|value| value.to_str().ok())
        .and_then(Codec::from_subprotocol)
        .unwrap_or(Codec::MsgPack);
    Ok((socket, codec))
}

fn innermost(err: &dyn std::error::Error) -> String {
    let mut source = err;
    while let Some(inner) = source.source() {
        source = inner;
    }
    source.to_string()
}

/// Encodes a frame as the WebSocket message kind of `codec`.
pub fn encode(codec: Codec, frame: &ClientFrame) -> Message {
    let bytes = codec.encode(frame).expect("client frames always encode");
    if codec.is_binary() {
        Message::Binary(bytes.into())
    } else {
        Message::Text(String::from_utf8(bytes).expect("JSON is UTF-8").into())
    }
}

/// Limits applied to frames from the hub: generous, since a `step.ready` carries the
/// outputs of the steps it depends on.
pub fn decode_limits() -> Limits {
    Limits {
        max_frame_bytes: 64 << 20,
        max_depth: 64,
    }
}

/// A hub frame agentd cannot use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Undecodable {
    /// A frame type this version does not know; its `seq`, if it has one.
    Unknown { seq: Option<u64> },
    /// A frame that breaks the protocol or the limits: why, and what a loose look at it
    /// found.
    Broken { reason: String, loose: Loose },
}

impl Undecodable {
    /// The event's `seq`, if one could be read.
    pub fn seq(&self) -> Option<u64> {
        match self {
            Undecodable::Unknown { seq } => *seq,
            Undecodable::Broken { loose, .. } => loose.seq,
        }
    }
}

/// Decodes a hub frame.
pub fn decode(codec: Codec, bytes: &[u8]) -> Result<ServerFrame, Undecodable> {
    let limits = decode_limits();
    match codec.decode_server(bytes, &limits) {
        Ok(ServerFrame::Unknown) => Err(Undecodable::Unknown {
            seq: codec.peek_seq(bytes, &limits),
        }),
        Ok(frame) => Ok(frame),
        Err(err) => Err(Undecodable::Broken {
            reason: err.to_string(),
            loose: Loose::read(codec, bytes),
        }),
    }
}

/// The reconnect delay: uniformly random in `[0, bound]`, the bound doubling from 1 s
/// up to 60 s after each failure and reset after a session that lasted 60 s.
#[derive(Debug, Clone)]
pub struct Backoff {
    bound: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            bound: Duration::from_secs(1),
        }
    }
}

impl Backoff {
    /// The longest bound.
    pub const CAP: Duration = Duration::from_secs(60);

    /// The next delay; doubles the bound.
    pub fn next_delay(&mut self) -> Duration {
        let delay = random_up_to(self.bound);
        self.bound = (self.bound * 2).min(Self::CAP);
        delay
    }

    /// Back to 1 s.
    pub fn reset(&mut self) {
        self.bound = Duration::from_secs(1);
    }

    /// The current bound.
    pub fn bound(&self) -> Duration {
        self.bound
    }
}

/// A uniformly random duration in `[0, max]`.
pub fn random_up_to(max: Duration) -> Duration {
    let millis = max.as_millis() as u64;
    Duration::from_millis(rand::rng().random_range(0..=millis))
}

#[cfg(test)]
mod tests;
