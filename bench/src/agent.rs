//! A simulated agent: one WebSocket speaking the MessagePack sub-protocol, as agentd or a
//! third-party agent would (acks at least every 100 events or 1 s, pongs, claim and
//! submit, reconnect with agentd's backoff and resume from the last seq).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use agenthub_protocol::{
    Ack, ClientFrame, Codec, Hello, Limits, OkReply, Pong, SUBPROTOCOL_MSGPACK, ServerFrame,
    StepClaim, StepSubmit, Welcome,
};
use anyhow::{Context, bail};
use futures_util::{SinkExt, StreamExt};
use rand::Rng;
use tokio::net::TcpSocket;
use tokio::sync::{Notify, mpsc};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use uuid::Uuid;

/// Acknowledge at once after this many unacknowledged events (docs/protocol.md §7).
const ACK_EVERY: u64 = 100;
/// Acknowledge at the latest this long after processing an event.
const ACK_WITHIN: Duration = Duration::from_secs(1);

/// A `step.ready` as an agent decoded it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub title: String,
    pub attempt: u32,
    pub at: Instant,
}

/// What the agent does with pushed steps.
#[derive(Clone)]
pub enum Mode {
    /// Stay connected; answer pings.
    Idle,
    /// Report every `step.ready` when decoded.
    Report(mpsc::UnboundedSender<Seen>),
    /// Claim and submit every step; count completions (`done` answers to submits).
    Work {
        done: Arc<AtomicUsize>,
        target: usize,
        finished: Arc<Notify>,
    },
    /// Claim the first step, report when the claim is granted, then go silent without
    /// closing the connection (a frozen machine or a cut cable).
    ClaimThenVanish(mpsc::UnboundedSender<Instant>),
}

pub type Socket = tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>;

/// Connects, sends `hello` with `last_seq` and waits for `welcome`; `local_ip` picks the
/// source address (to get past the ephemeral-port limit with many connections).
pub async fn connect(
    hub: SocketAddr,
    token: &str,
    local_ip: Option<IpAddr>,
    last_seq: u64,
) -> anyhow::Result<(Socket, Welcome)> {
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
        last_seq,
    });
    ws.send(Message::Binary(Codec::MsgPack.encode(&hello)?.into()))
        .await?;
    loop {
        match ws.next().await {
            Some(Ok(Message::Binary(bytes))) => {
                match Codec::MsgPack.decode_server(&bytes, &Limits::default())? {
                    ServerFrame::Welcome(welcome) => return Ok((ws, welcome)),
                    ServerFrame::Error(err) => bail!("hello refused: {} {}", err.code, err.message),
                    _ => {}
                }
            }
            Some(Ok(Message::Close(frame))) => bail!("closed during the handshake: {frame:?}"),
            Some(Ok(_)) => {}
            Some(Err(err)) => return Err(err.into()),
            None => bail!("closed during the handshake"),
        }
    }
}

/// Tells the caller once the agent has processed every event up to `seq`:
/// (agent index, when the session was welcomed, when it caught up).
pub struct CatchUp {
    pub seq: u64,
    pub agent: usize,
    pub welcomed_at: Instant,
    pub notify: mpsc::UnboundedSender<(usize, Instant, Instant)>,
}

/// Runs the agent until the connection ends. `last_seq` is the seq of the last event
/// processed, kept across reconnects.
pub async fn run(
    ws: Socket,
    mode: &Mode,
    last_seq: &mut u64,
    mut catch_up: Option<CatchUp>,
) -> anyhow::Result<()> {
    let (mut sink, mut stream) = ws.split();
    let limits = Limits {
        max_frame_bytes: 16 * 1024 * 1024,
        ..Limits::default()
    };
    let mut next_id: u64 = 1;
    // Request id → (step id, attempt) of claims in flight.
    let mut claims: HashMap<u64, (Uuid, u32)> = HashMap::new();
    let mut submits: HashMap<u64, ()> = HashMap::new();
    let mut acked = *last_seq;
    let mut ack_at = tokio::time::Instant::now() + ACK_WITHIN;
    let mut vanished = false;
    let check_caught_up = |last_seq: u64, catch_up: &mut Option<CatchUp>| {
        if let Some(target) = catch_up.as_ref()
            && last_seq >= target.seq
        {
            let _ = target
                .notify
                .send((target.agent, target.welcomed_at, Instant::now()));
            *catch_up = None;
        }
    };
    check_caught_up(*last_seq, &mut catch_up);
    let mut replies: Vec<ClientFrame> = Vec::new();
    loop {
        let message = tokio::select! {
            message = stream.next() => match message {
                Some(message) => message?,
                None => break,
            },
            () = tokio::time::sleep_until(ack_at), if *last_seq > acked => {
                sink.send(encode(&ClientFrame::Ack(Ack { seq: *last_seq }))?).await?;
                acked = *last_seq;
                continue;
            }
        };
        let bytes = match message {
            Message::Binary(bytes) => bytes,
            Message::Close(_) => break,
            _ => continue,
        };
        let frame = Codec::MsgPack.decode_server(&bytes, &limits)?;
        if let Some(seq) = frame.seq() {
            if *last_seq == acked {
                ack_at = tokio::time::Instant::now() + ACK_WITHIN;
            }
            *last_seq = (*last_seq).max(seq);
        }
        match frame {
            ServerFrame::Ping(ping) => replies.push(ClientFrame::Pong(Pong { nonce: ping.nonce })),
            ServerFrame::StepReady(ready) => match mode {
                Mode::Idle => {}
                Mode::Report(sender) => {
                    let _ = sender.send(Seen {
                        title: ready.step.title.clone(),
                        attempt: ready.step.attempt,
                        at: Instant::now(),
                    });
                }
                Mode::Work { .. } | Mode::ClaimThenVanish(_) => {
                    let id = next_id;
                    next_id += 1;
                    claims.insert(id, (ready.step.step_id, ready.step.attempt));
                    replies.push(ClientFrame::StepClaim(StepClaim {
                        id,
                        step_id: ready.step.step_id,
                        attempt: Some(ready.step.attempt),
                    }));
                }
            },
            ServerFrame::Ok(OkReply {
                id,
                status,
                attempt,
                ..
            }) => {
                if let Some((step_id, ready_attempt)) = claims.remove(&id) {
                    if let Mode::ClaimThenVanish(sender) = mode {
                        let _ = sender.send(Instant::now());
                        vanished = true;
                    } else {
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
                            check: None,
                            files: vec![],
                            usage: None,
                        }));
                    }
                } else if submits.remove(&id).is_some()
                    && status.as_deref() == Some("done")
                    && let Mode::Work {
                        done,
                        target,
                        finished,
                    } = mode
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
            _ => {}
        }
        if vanished {
            // Hold the socket open and read nothing more, answer nothing more.
            std::future::pending::<()>().await;
        }
        if *last_seq >= acked + ACK_EVERY {
            replies.push(ClientFrame::Ack(Ack { seq: *last_seq }));
            acked = *last_seq;
        }
        for reply in replies.drain(..) {
            sink.feed(encode(&reply)?).await?;
        }
        sink.flush().await?;
        check_caught_up(*last_seq, &mut catch_up);
    }
    Ok(())
}

fn encode(frame: &ClientFrame) -> anyhow::Result<Message> {
    Ok(Message::Binary(Codec::MsgPack.encode(frame)?.into()))
}

/// The agent's session with the hub, as agentd keeps it: reconnect with backoff (a
/// random delay up to a bound that starts at 1 s and doubles up to 60 s, back to 1 s
/// after a welcome) and resume from the last processed seq. Every welcome is reported
/// with the moment the agent has caught up with the hub's `last_seq` at that welcome.
pub async fn run_resilient(
    hub: SocketAddr,
    token: String,
    local_ip: Option<IpAddr>,
    mode: Mode,
    agent: usize,
    caught_up: mpsc::UnboundedSender<(usize, Instant, Instant)>,
) {
    let mut last_seq = 0;
    let mut bound = Duration::from_secs(1);
    loop {
        if let Ok((ws, welcome)) = connect(hub, &token, local_ip, last_seq).await {
            bound = Duration::from_secs(1);
            let catch_up = CatchUp {
                seq: welcome.last_seq,
                agent,
                welcomed_at: Instant::now(),
                notify: caught_up.clone(),
            };
            let _ended = run(ws, &mode, &mut last_seq, Some(catch_up)).await;
        }
        let millis = bound.as_millis() as u64;
        let delay = Duration::from_millis(rand::rng().random_range(0..=millis));
        bound = (bound * 2).min(Duration::from_secs(60));
        tokio::time::sleep(delay).await;
    }
}
