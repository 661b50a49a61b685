//! A simulated agent: one WebSocket speaking the MessagePack sub-protocol, as agentd or a
//! third-party agent would.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use agenthub_protocol::{
    Ack, ClientFrame, Codec, Hello, Limits, OkReply, Pong, SUBPROTOCOL_MSGPACK, ServerFrame,
    StepClaim, StepSubmit,
};
use anyhow::{Context, bail};
use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpSocket;
use tokio::sync::{Notify, mpsc};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

/// What the agent does with pushed steps.
#[derive(Clone)]
pub enum Mode {
    /// Stay connected; answer pings.
    Idle,
    /// Report the arrival of every `step.ready` (its step title and when it was decoded).
    Report(mpsc::UnboundedSender<(String, Instant)>),
    /// Claim and submit every step; count completions.
    Work {
        done: Arc<AtomicUsize>,
        target: usize,
        finished: Arc<Notify>,
    },
}

pub type Socket = tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>;

/// Connects and completes the handshake; `local_ip` picks the source address (to get
/// past the ephemeral-port limit with many connections).
pub async fn connect(
    hub: SocketAddr,
    token: &str,
    local_ip: Option<IpAddr>,
) -> anyhow::Result<Socket> {
    let socket = if hub.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    if let Some(ip) = local_ip {
        socket.bind(SocketAddr::new(ip, 0))?;
    }
    let stream = socket
        .connect(hub)
        .await
        .with_context(|| format!("connecting to {hub}"))?;
    stream.set_nodelay(true)?;
    let mut request = format!("ws://{hub}/v1/agent/connect").into_client_request()?;
    request
        .headers_mut()
        .insert("authorization", format!("Bearer {token}").parse()?);
    request
        .headers_mut()
        .insert("sec-websocket-protocol", SUBPROTOCOL_MSGPACK.parse()?);
    let config = WebSocketConfig::default()
        .read_buffer_size(4096)
        .write_buffer_size(0);
    let (mut ws, _) =
        tokio_tungstenite::client_async_with_config(request, stream, Some(config)).await?;
    let hello = ClientFrame::Hello(Hello {
        agent_version: "agenthub-bench".into(),
        capabilities: vec![],
        max_concurrency: 64,
        last_seq: 0,
    });
    ws.send(Message::Binary(Codec::MsgPack.encode(&hello)?.into()))
        .await?;
    loop {
        match ws.next().await {
            Some(Ok(Message::Binary(bytes))) => {
                match Codec::MsgPack.decode_server(&bytes, &Limits::default())? {
                    ServerFrame::Welcome(_) => return Ok(ws),
                    ServerFrame::Error(err) => bail!("hello refused: {} {}", err.code, err.message),
                    _ => {}
                }
            }
            Some(Ok(_)) => {}
            Some(Err(err)) => return Err(err.into()),
            None => bail!("closed during the handshake"),
        }
    }
}

/// Runs the agent until the connection ends.
pub async fn run(ws: Socket, mode: Mode) -> anyhow::Result<()> {
    let (mut sink, mut stream) = ws.split();
    let limits = Limits {
        max_frame_bytes: 16 * 1024 * 1024,
        ..Limits::default()
    };
    let mut next_id: u64 = 1;
    // Request id → (step id, attempt) of claims in flight.
    let mut claims: HashMap<u64, (uuid::Uuid, u32)> = HashMap::new();
    let mut submits: HashMap<u64, ()> = HashMap::new();
    while let Some(message) = stream.next().await {
        let bytes = match message? {
            Message::Binary(bytes) => bytes,
            Message::Close(_) => break,
            _ => continue,
        };
        let frame = Codec::MsgPack.decode_server(&bytes, &limits)?;
        let mut replies: Vec<ClientFrame> = Vec::new();
        match frame {
            ServerFrame::Ping(ping) => replies.push(ClientFrame::Pong(Pong { nonce: ping.nonce })),
            ServerFrame::StepReady(ready) => {
                replies.push(ClientFrame::Ack(Ack { seq: ready.seq }));
                match &mode {
                    Mode::Idle => {}
                    Mode::Report(sender) => {
                        let _ = sender.send((ready.step.title.clone(), Instant::now()));
                    }
                    Mode::Work { .. } => {
                        let id = next_id;
                        next_id += 1;
                        claims.insert(id, (ready.step.step_id, ready.step.attempt));
                        replies.push(ClientFrame::StepClaim(StepClaim {
                            id,
                            step_id: ready.step.step_id,
                        }));
                    }
                }
            }
            ServerFrame::Ok(OkReply {
                id,
                status,
                attempt,
                ..
            }) => {
                if let Some((step_id, ready_attempt)) = claims.remove(&id) {
                    let submit_id = next_id;
                    next_id += 1;
                    submits.insert(submit_id, ());
                    replies.push(ClientFrame::StepSubmit(StepSubmit {
                        id: submit_id,
                        step_id,
                        attempt: attempt.unwrap_or(ready_attempt),
                        result: serde_json::json!({"ok": true, "by": "bench"}),
                        summary: None,
                        self_check: None,
                        files: vec![],
                        usage: None,
                    }));
                } else if submits.remove(&id).is_some()
                    && status.as_deref() == Some("done")
                    && let Mode::Work {
                        done,
                        target,
                        finished,
                    } = &mode
                    && done.fetch_add(1, Ordering::Relaxed) + 1 == *target
                {
                    finished.notify_one();
                }
            }
            ServerFrame::Error(err) => {
                claims.remove(&err.id.unwrap_or(0));
                if err.code != "conflict" {
                    eprintln!("agent error: {} {}", err.code, err.message);
                }
            }
            other => {
                if let Some(seq) = other.seq() {
                    replies.push(ClientFrame::Ack(Ack { seq }));
                }
            }
        }
        for reply in replies {
            sink.send(Message::Binary(Codec::MsgPack.encode(&reply)?.into()))
                .await?;
        }
    }
    Ok(())
}
