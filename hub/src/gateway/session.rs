//! One agent session: handshake, replay then live events with no gap and no duplicate,
//! requests dispatched to the domain, heartbeats, rate and abuse limits, backpressure.
//!
//! Written over a generic `Sink`/`Stream` of WebSocket messages, in one task: it reads
//! frames, receives bus notices, runs the timers and writes its bounded queue of outgoing
//! messages to the sink whenever the socket takes them. A peer too slow to drain the
//! queue is closed with `4002`; its events stay in the outbox for the resume.

use std::collections::VecDeque;
use std::future::poll_fn;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant};

use agenthub_protocol::{
    ClientFrame, Codec, DecodeError, ErrorReply, Hello, Limits, OkReply, Ping, RequestId,
    ServerFrame, Welcome, close_code, error_code,
};
use axum::extract::ws::{CloseFrame, Message};
use futures_util::{Sink, SinkExt, Stream, StreamExt};
use tokio::sync::oneshot;
use tokio::time::{MissedTickBehavior, sleep_until};
use uuid::Uuid;

use crate::accounts::{Actor, AgentActor};
use crate::agents;
use crate::approvals::{self, ApprovalRef};
use crate::bus::{Notice, Subscription};
use crate::ctx::Ctx;
use crate::error::Error;
use crate::events::{self, EventRow};
use crate::gateway::limits::{Abuse, RateLimit};
use crate::gateway::registry::Kick;
use crate::store::now_ms;
use crate::tasks::{self, Submitted};

/// Time the client has to send `hello`.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Events read from the outbox per query during replay and catch-up.
const PAGE: u32 = 500;
/// While the Redis bus is down, sessions poll the outbox this often.
const POLL_WHEN_BUS_DOWN: Duration = Duration::from_secs(1);
/// Time the peer gets to stop sending after the close frame went out.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);
/// Silence after the close frame that shows the peer has stopped sending.
const CLOSE_QUIET: Duration = Duration::from_millis(250);
/// Time the socket gets to take what is queued (and the close frame) once the session
/// ended.
const WRITER_GRACE: Duration = Duration::from_secs(10);

/// A queued outgoing message.
#[derive(Debug)]
enum Out {
    Message(Message),
    Close(u16, String),
}

/// The outgoing queue of a session: empty and unallocated while the session is idle.
#[derive(Debug)]
struct Outgoing {
    queue: VecDeque<Out>,
    /// Messages queued at most; one more means the peer reads too slowly.
    capacity: usize,
    /// Messages handed to the sink since its last flush.
    unflushed: bool,
    /// The close frame was handed to the sink: nothing more is sent.
    closed: bool,
}

/// Why the session ends.
#[derive(Debug)]
struct Close {
    code: u16,
    reason: String,
}

impl Close {
    fn new(code: u16, reason: impl Into<String>) -> Self {
        Close {
            code,
            reason: reason.into(),
        }
    }
}

/// The session's future: runs it until it ends; never panics on peer input.
///
/// A plain function building the session before its future, so that the future holds each
/// part once: an `async fn` keeps its arguments beside the locals they move into for as
/// long as it runs, and this future lives as long as the connection. What only a session's
/// end runs (the close handshake, the last write-out) and each request are boxed when they
/// start, so that an idle session does not carry their room (W3 in docs/benchmarks.md).
///
/// `S` is `Sync` because a request's domain call borrows the session across its awaits.
pub fn run<S, R>(
    ctx: Ctx,
    agent: AgentActor,
    token_hash: String,
    codec: Codec,
    sink: S,
    mut stream: R,
) -> impl Future<Output = ()> + Send + 'static
where
    S: Sink<Message, Error = axum::Error> + Send + Sync + Unpin + 'static,
    R: Stream<Item = Result<Message, axum::Error>> + Send + Unpin + 'static,
{
    let limits = Limits {
        max_frame_bytes: ctx.settings.max_frame_bytes,
        ..Limits::default()
    };
    let now = Instant::now();
    let rate = RateLimit::new(ctx.settings.max_frames_per_s, now);
    let out = Outgoing::new(ctx.settings.session_queue.max(16));
    let mut session = Session {
        ctx,
        agent,
        codec,
        limits,
        sink,
        out,
        next_seq: 1,
        rate,
        abuse: Abuse::new(now),
        last_heard: now,
        ping_nonce: 0,
    };
    async move {
        let sessions = Arc::clone(&session.ctx.sessions);
        let _running = sessions.running();
        let hello = match session.handshake(&mut stream).await {
            Ok(hello) => hello,
            Err(close) => {
                Box::pin(session.hang_up(close, &mut stream)).await;
                return;
            }
        };
        // Subscribe before reading the last seq: nothing committed from here on is missed.
        let mut subscription = session.ctx.bus.subscribe(
            &session.agent.agent_id,
            session.ctx.settings.session_queue.max(16),
        );
        let registration = sessions.register(&session.agent.agent_id, &token_hash, now_ms());
        session.ctx.metrics.sessions_open.inc();
        tracing::info!(
            agent.id = %session.agent.agent_id,
            agent.name = %session.agent.agent_name,
            last_seq = hello.last_seq,
            "agent session opened"
        );
        let end = session
            .serve(&hello, &mut stream, &mut subscription, registration.kicks)
            .await;
        session
            .ctx
            .bus
            .unsubscribe(&subscription.audience_id, subscription.id);
        session.ctx.metrics.sessions_open.dec();
        let was_current = sessions.unregister(&session.agent.agent_id, registration.session_id);
        tracing::info!(
            agent.id = %session.agent.agent_id,
            code = end.as_ref().map(|close| close.code),
            reason = end.as_ref().map(|close| close.reason.as_str()),
            "agent session closed"
        );
        if was_current {
            Box::pin(announce(&session.ctx, &session.agent, false)).await;
        }
        match end {
            Some(close) => Box::pin(session.hang_up(close, &mut stream)).await,
            None => Box::pin(session.finish()).await,
        }
    }
}

/// Records presence and tells the members who care (`agent.online` / `agent.offline`).
async fn announce(ctx: &Ctx, agent: &AgentActor, online: bool) {
    if let Err(err) = agents::announce_presence(ctx, agent, online).await {
        tracing::warn!(error = %err, agent.id = %agent.agent_id, "cannot record presence");
    }
}

impl Outgoing {
    fn new(capacity: usize) -> Outgoing {
        Outgoing {
            queue: VecDeque::new(),
            capacity,
            unflushed: false,
            closed: false,
        }
    }

    /// Whether something waits to be written or flushed.
    fn busy(&self) -> bool {
        !self.queue.is_empty() || self.unflushed
    }

    fn is_full(&self) -> bool {
        self.queue.len() >= self.capacity
    }

    /// Queues a close frame after what is queued, or instead of it when the queue is
    /// full (the close jumps the queue; what it held is not sent).
    fn close(&mut self, close: Close) {
        if self.closed {
            return;
        }
        if self.is_full() {
            self.queue.clear();
        }
        self.queue.push_back(Out::Close(close.code, close.reason));
    }

    /// Hands queued messages to `sink` in order while it takes them, then flushes it.
    /// Ready once everything queued is written and flushed (or the close frame is),
    /// or with the error that broke the socket.
    fn poll_write<S>(&mut self, sink: &mut S, cx: &mut Context<'_>) -> Poll<Result<(), axum::Error>>
    where
        S: Sink<Message, Error = axum::Error> + Unpin,
    {
        while !self.closed && !self.queue.is_empty() {
            ready!(sink.poll_ready_unpin(cx))?;
            let message = match self.queue.pop_front() {
                Some(Out::Message(message)) => message,
                Some(Out::Close(code, reason)) => {
                    self.closed = true;
                    self.queue.clear();
                    Message::Close(Some(CloseFrame {
                        code,
                        reason: reason.into(),
                    }))
                }
                None => break,
            };
            sink.start_send_unpin(message)?;
            self.unflushed = true;
        }
        if self.queue.is_empty() && self.queue.capacity() > 0 {
            // Written out: an idle session holds no queue (a burst allocates it anew).
            self.queue = VecDeque::new();
        }
        if self.unflushed {
            ready!(sink.poll_flush_unpin(cx))?;
            self.unflushed = false;
        }
        Poll::Ready(Ok(()))
    }
}

struct Session<S> {
    ctx: Ctx,
    agent: AgentActor,
    codec: Codec,
    limits: Limits,
    sink: S,
    out: Outgoing,
    /// The seq of the next event to send.
    next_seq: u64,
    rate: RateLimit,
    abuse: Abuse,
    last_heard: Instant,
    ping_nonce: u64,
}

/// What one incoming message asks of the session.
enum Incoming {
    Frame(ClientFrame),
    /// A WebSocket control frame, handled by the WebSocket layer.
    Control,
    /// Refused with an `error` frame already sent.
    Refused,
}

impl<S> Session<S>
where
    S: Sink<Message, Error = axum::Error> + Send + Unpin,
{
    /// Writes what is queued until the socket has taken it all.
    async fn write(&mut self) -> Result<(), axum::Error> {
        poll_fn(|cx| self.out.poll_write(&mut self.sink, cx)).await
    }

    /// Writes what is queued once the session ended; a peer that does not read for
    /// [`WRITER_GRACE`] is cut off.
    async fn finish(mut self) {
        let _cut_off_or_gone = tokio::time::timeout(WRITER_GRACE, self.write()).await;
    }

    /// Sends `close` after what is queued and lets the socket go only once the peer has
    /// had it and sends no more: while the queued frames and the close frame are written,
    /// the peer's frames are read and dropped; then until the peer's close reply, or
    /// until it has been silent for [`CLOSE_QUIET`] (many clients never send the reply),
    /// at most [`CLOSE_TIMEOUT`]. Closing a socket with unread input resets the
    /// connection, and the peer's system then discards what it had not read yet: every
    /// reply and the close frame would be lost (a burst of rate-limited frames ended
    /// with close `1006` instead of the errors and `1008`).
    async fn hang_up<R>(mut self, close: Close, stream: &mut R)
    where
        R: Stream<Item = Result<Message, axum::Error>> + Unpin,
    {
        // A refused oversized frame stays unread in the socket and cannot be read past:
        // wait a moment for the peer to read the close frame instead.
        let linger = close.code == close_code::TOO_LARGE;
        self.out.close(close);
        if linger {
            let _cut_off_or_gone = tokio::time::timeout(WRITER_GRACE, self.write()).await;
            tokio::time::sleep(Duration::from_millis(500)).await;
            return;
        }
        // Set once the close frame is out (or the socket is gone).
        let mut close_sent_at: Option<tokio::time::Instant> = None;
        let mut peer_closed = false;
        let mut wait = Box::pin(sleep_until(tokio::time::Instant::now() + WRITER_GRACE));
        while !(close_sent_at.is_some() && peer_closed) {
            tokio::select! {
                _written_or_gone = poll_fn(|cx| self.out.poll_write(&mut self.sink, cx)),
                    if close_sent_at.is_none() =>
                {
                    let now = tokio::time::Instant::now();
                    close_sent_at = Some(now);
                    wait.as_mut().reset(now + CLOSE_QUIET);
                }
                message = stream.next(), if !peer_closed => match message {
                    Some(Ok(Message::Close(_)) | Err(_)) | None => peer_closed = true,
                    Some(Ok(_)) => {
                        if let Some(sent_at) = close_sent_at {
                            let now = tokio::time::Instant::now();
                            wait.as_mut().reset((now + CLOSE_QUIET).min(sent_at + CLOSE_TIMEOUT));
                        }
                    }
                },
                () = &mut wait => break,
            }
        }
    }

    /// Waits for `hello` (within [`HANDSHAKE_TIMEOUT`]); anything else closes with `4004`.
    async fn handshake<R>(&mut self, stream: &mut R) -> Result<Hello, Close>
    where
        R: Stream<Item = Result<Message, axum::Error>> + Unpin,
    {
        let deadline = tokio::time::Instant::now() + HANDSHAKE_TIMEOUT;
        loop {
            let message = tokio::select! {
                message = stream.next() => message,
                () = sleep_until(deadline) => {
                    return Err(Close::new(close_code::HANDSHAKE_FAILED, "no hello within 10 s"));
                }
            };
            let Some(message) = message else {
                return Err(Close::new(close_code::NORMAL, "closed before hello"));
            };
            match self.receive(message)? {
                Incoming::Control => continue,
                Incoming::Refused => {
                    return Err(Close::new(
                        close_code::HANDSHAKE_FAILED,
                        "the first frame was not a valid hello",
                    ));
                }
                Incoming::Frame(ClientFrame::Hello(hello)) => return Ok(hello),
                Incoming::Frame(other) => {
                    self.reply_error(
                        other.request_id(),
                        error_code::BAD_FRAME,
                        format!("the first frame must be hello, not {}", other.type_name()),
                    )?;
                    return Err(Close::new(
                        close_code::HANDSHAKE_FAILED,
                        "the first frame was not hello",
                    ));
                }
            }
        }
    }

    /// Welcome, replay, then live events and requests until the session ends.
    async fn serve<R>(
        &mut self,
        hello: &Hello,
        stream: &mut R,
        subscription: &mut Subscription,
        mut kicks: oneshot::Receiver<Kick>,
    ) -> Option<Close>
    where
        R: Stream<Item = Result<Message, axum::Error>> + Unpin,
    {
        match Box::pin(self.open(hello)).await {
            Ok(()) => {}
            Err(close) => return Some(close),
        }
        let settings = std::sync::Arc::clone(&self.ctx.settings);
        let mut pings = tokio::time::interval_at(
            tokio::time::Instant::now() + Duration::from_millis(settings.heartbeat_interval_ms),
            Duration::from_millis(settings.heartbeat_interval_ms.max(1)),
        );
        pings.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let timeout = Duration::from_millis(settings.heartbeat_timeout_ms.max(1));
        let silence = sleep_until(tokio::time::Instant::from_std(self.last_heard + timeout));
        tokio::pin!(silence);
        let mut polls = tokio::time::interval(POLL_WHEN_BUS_DOWN);
        polls.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let polling = self.ctx.remote.is_some();
        // Whether the last poll found the bus down: events committed between that poll and
        // the bus's return were published to nobody, so the first poll after it reads the
        // outbox once more.
        let mut bus_was_down = false;
        let res: Result<(), Close> = loop {
            let step = tokio::select! {
                // Queued messages go out before the next frame is handled.
                biased;
                written = poll_fn(|cx| self.out.poll_write(&mut self.sink, cx)), if self.out.busy() => {
                    written.map_err(|err| {
                        tracing::debug!(error = %err, "agent socket write failed; ending the session");
                        Close::new(close_code::NORMAL, "the connection is gone")
                    })
                }
                kick = &mut kicks => {
                    let kick = kick.unwrap_or(Kick {
                        code: close_code::INTERNAL,
                        reason: "the session was dropped",
                    });
                    if kick.code == close_code::TOKEN_REVOKED {
                        let _closing_anyway = self.reply_error(
                            None,
                            error_code::UNAUTHORIZED,
                            "the agent token was revoked".into(),
                        );
                    }
                    break Err(Close::new(kick.code, kick.reason));
                }
                message = stream.next() => match message {
                    // Boxed: the session's future stays small while it waits.
                    Some(message) => match self.handle(message) {
                        Ok(Some(request)) => Box::pin(self.request(request)).await,
                        Ok(None) => Ok(()),
                        Err(close) => Err(close),
                    },
                    None => break Ok(()),
                },
                notice = subscription.receiver.recv() => match notice {
                    Some(notice) => self.deliver(notice).await,
                    None => break Ok(()),
                },
                _ = pings.tick() => {
                    if subscription.lagged.swap(false, Ordering::Relaxed) {
                        Box::pin(self.catch_up()).await
                    } else {
                        self.ping()
                    }
                }
                () = &mut silence => {
                    let deadline = self.last_heard + timeout;
                    if Instant::now() >= deadline {
                        break Err(Close::new(
                            close_code::HEARTBEAT_TIMEOUT,
                            "no frame within the heartbeat timeout",
                        ));
                    }
                    silence.as_mut().reset(tokio::time::Instant::from_std(deadline));
                    Ok(())
                }
                _ = polls.tick(), if polling => {
                    let bus_down = self.ctx.remote.as_ref().is_some_and(|remote| !remote.healthy());
                    let missed = std::mem::replace(&mut bus_was_down, bus_down);
                    if bus_down || missed { Box::pin(self.catch_up()).await } else { Ok(()) }
                }
            };
            if let Err(close) = step {
                break Err(close);
            }
        };
        res.err()
    }

    /// Sends `welcome` and replays every event after `hello.last_seq`.
    async fn open(&mut self, hello: &Hello) -> Result<(), Close> {
        let last_seq = events::last_seq(&self.ctx.store, &self.agent.agent_id)
            .await
            .map_err(|err| {
                tracing::warn!(error = %err, "cannot read the agent's last seq");
                Close::new(close_code::INTERNAL, "the hub cannot read its event log")
            })?;
        let settings = &self.ctx.settings;
        let welcome = ServerFrame::Welcome(Welcome {
            agent_id: Uuid::parse_str(&self.agent.agent_id).unwrap_or_default(),
            agent_name: self.agent.agent_name.clone(),
            session_id: Uuid::now_v7(),
            heartbeat_interval_ms: settings.heartbeat_interval_ms,
            heartbeat_timeout_ms: settings.heartbeat_timeout_ms,
            lease_ms: settings.lease_ms,
            max_frame_bytes: settings.max_frame_bytes as u64,
            max_frames_per_s: settings.max_frames_per_s,
            last_seq,
            member_id: Uuid::parse_str(&self.agent.member_id).ok(),
        });
        self.send_frame(&welcome)?;
        // A client ahead of the hub (e.g. after a database reset) resumes from here.
        self.next_seq = if hello.last_seq > last_seq {
            last_seq + 1
        } else {
            hello.last_seq + 1
        };
        self.catch_up().await?;
        announce(&self.ctx, &self.agent, true).await;
        Ok(())
    }

    /// Forwards a live event, or reads the outbox when it reveals a gap.
    async fn deliver(&mut self, notice: Arc<Notice>) -> Result<(), Close> {
        if notice.seq < self.next_seq {
            return Ok(());
        }
        if notice.seq > self.next_seq {
            return Box::pin(self.catch_up()).await;
        }
        let message = match self.codec {
            Codec::Json => Message::Text(notice.payload.as_ref().into()),
            Codec::MsgPack => Message::Binary(notice.msgpack().map_err(unencodable)?),
        };
        self.next_seq += 1;
        self.push(message)
    }

    /// Sends every event of the outbox from `next_seq` on.
    async fn catch_up(&mut self) -> Result<(), Close> {
        loop {
            let rows: Vec<EventRow> = events::list_after(
                &self.ctx.store,
                &self.agent.agent_id,
                self.next_seq - 1,
                PAGE,
            )
            .await
            .map_err(|err| {
                tracing::warn!(error = %err, "cannot read the outbox");
                Close::new(close_code::INTERNAL, "the hub cannot read its event log")
            })?;
            let n_rows = rows.len();
            for row in rows {
                let message = self.event_message(&row.payload)?;
                self.next_seq = row.seq as u64 + 1;
                self.push_waiting(message).await?;
            }
            if n_rows < PAGE as usize {
                return Ok(());
            }
        }
    }

    /// An outbox payload (JSON) in the session's encoding.
    fn event_message(&self, payload: &str) -> Result<Message, Close> {
        match self.codec {
            Codec::Json => Ok(Message::Text(payload.into())),
            Codec::MsgPack => Ok(Message::Binary(
                events::msgpack_of_json(payload).map_err(unencodable)?,
            )),
        }
    }

    /// Queues a message; a full queue means the peer reads too slowly.
    fn push(&mut self, message: Message) -> Result<(), Close> {
        if self.out.closed {
            return Err(Close::new(close_code::NORMAL, "the connection is gone"));
        }
        if self.out.is_full() {
            return Err(Close::new(
                close_code::TOO_SLOW,
                "the send queue overflowed; reconnect and resume",
            ));
        }
        self.out.queue.push_back(Out::Message(message));
        Ok(())
    }

    /// Queues a message during replay; when the queue is full, first writes it out,
    /// waiting for the peer to read for up to the heartbeat timeout.
    async fn push_waiting(&mut self, message: Message) -> Result<(), Close> {
        if self.out.is_full() {
            let patience = Duration::from_millis(self.ctx.settings.heartbeat_timeout_ms.max(1));
            match tokio::time::timeout(patience, self.write()).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => return Err(Close::new(close_code::NORMAL, "the connection is gone")),
                Err(_) => {
                    return Err(Close::new(
                        close_code::TOO_SLOW,
                        "the send queue overflowed; reconnect and resume",
                    ));
                }
            }
        }
        self.push(message)
    }

    fn send_frame(&mut self, frame: &ServerFrame) -> Result<(), Close> {
        let bytes = self.codec.encode(frame).map_err(|err| {
            tracing::error!(error = %err, "cannot encode a frame");
            Close::new(close_code::INTERNAL, "cannot encode a frame")
        })?;
        let message = match self.codec {
            Codec::Json => Message::Text(
                String::from_utf8(bytes)
                    .map_err(|_| Close::new(close_code::INTERNAL, "cannot encode a frame"))?
                    .into(),
            ),
            Codec::MsgPack => Message::Binary(bytes.into()),
        };
        self.push(message)
    }

    fn reply_ok(&mut self, ok: OkReply) -> Result<(), Close> {
        self.send_frame(&ServerFrame::Ok(ok))
    }

    fn reply_error(
        &mut self,
        id: Option<RequestId>,
        code: &str,
        message: String,
    ) -> Result<(), Close> {
        self.send_frame(&ServerFrame::Error(ErrorReply {
            id,
            code: code.to_string(),
            message,
        }))
    }

    fn ping(&mut self) -> Result<(), Close> {
        self.ping_nonce += 1;
        self.send_frame(&ServerFrame::Ping(Ping {
            nonce: self.ping_nonce,
        }))
    }

    /// Applies limits and decodes one message. `Err` ends the session.
    fn receive(&mut self, message: Result<Message, axum::Error>) -> Result<Incoming, Close> {
        let message = match message {
            Ok(message) => message,
            Err(err) => return Err(self.read_failed(err)),
        };
        let (bytes, binary) = match &message {
            Message::Binary(bytes) => (bytes.as_ref(), true),
            Message::Text(text) => (text.as_str().as_bytes(), false),
            Message::Close(_) => return Err(Close::new(close_code::NORMAL, "closed by the agent")),
            // Control frames are answered by the WebSocket layer and are not liveness.
            Message::Ping(_) | Message::Pong(_) => return Ok(Incoming::Control),
        };
        let now = Instant::now();
        self.last_heard = now;
        self.ctx.metrics.frames_received.inc();
        if !self.rate.admit(now) {
            let id = self.codec.peek_id(bytes, &self.limits);
            self.reply_error(
                id,
                error_code::RATE_LIMITED,
                format!(
                    "more than {} frames per second; the frame was dropped",
                    self.ctx.settings.max_frames_per_s
                ),
            )?;
            return self.abused(now).map(|()| Incoming::Refused);
        }
        if binary != self.codec.is_binary() {
            let expected = if self.codec.is_binary() {
                "binary"
            } else {
                "text"
            };
            self.reply_error(
                None,
                error_code::BAD_FRAME,
                format!(
                    "this session uses {expected} messages ({})",
                    self.codec.subprotocol()
                ),
            )?;
            return self.abused(now).map(|()| Incoming::Refused);
        }
        match self.codec.decode_client(bytes, &self.limits) {
            Ok(frame) => Ok(Incoming::Frame(frame)),
            Err(DecodeError::TooLarge { size, max }) => {
                self.reply_error(
                    None,
                    error_code::TOO_LARGE,
                    format!("frame of {size} bytes exceeds the limit of {max} bytes"),
                )?;
                Err(Close::new(close_code::TOO_LARGE, "frame too large"))
            }
            Err(err @ DecodeError::UnknownType { .. }) => {
                self.reply_error(err.request_id(), error_code::UNSUPPORTED, err.to_string())?;
                Ok(Incoming::Refused)
            }
            Err(err @ DecodeError::Malformed(_)) => {
                let id = self.codec.peek_id(bytes, &self.limits);
                self.reply_error(id, error_code::BAD_FRAME, err.to_string())?;
                self.abused(now).map(|()| Incoming::Refused)
            }
        }
    }

    fn abused(&mut self, now: Instant) -> Result<(), Close> {
        if self.abuse.record(now) {
            return Err(Close::new(
                close_code::POLICY_VIOLATION,
                "too many malformed or rate-limited frames",
            ));
        }
        Ok(())
    }

    /// A read error: an oversized frame (refused before it is read) or a broken socket.
    fn read_failed(&mut self, err: axum::Error) -> Close {
        use tokio_tungstenite::tungstenite::Error as WsError;
        let inner = err.into_inner();
        match inner.downcast_ref::<WsError>() {
            Some(WsError::Capacity(capacity)) => {
                let _closing_anyway = self.reply_error(
                    None,
                    error_code::TOO_LARGE,
                    format!(
                        "{capacity}; the limit is {} bytes",
                        self.ctx.settings.max_frame_bytes
                    ),
                );
                Close::new(close_code::TOO_LARGE, "frame too large")
            }
            Some(WsError::Protocol(protocol)) => {
                Close::new(close_code::POLICY_VIOLATION, protocol.to_string())
            }
            _ => Close::new(close_code::NORMAL, "the connection was lost"),
        }
    }

    /// Handles one message of an open session; a request to the domain is returned to be
    /// answered by [`Self::request`].
    fn handle(
        &mut self,
        message: Result<Message, axum::Error>,
    ) -> Result<Option<ClientFrame>, Close> {
        let frame = match self.receive(message)? {
            Incoming::Control | Incoming::Refused => return Ok(None),
            Incoming::Frame(frame) => frame,
        };
        match frame {
            ClientFrame::Hello(_) => self.reply_error(
                None,
                error_code::BAD_FRAME,
                "hello after the handshake is ignored".into(),
            )?,
            ClientFrame::Ack(ack) if ack.seq >= self.next_seq => self.reply_error(
                None,
                error_code::BAD_FRAME,
                format!("ack of seq {} that was not sent", ack.seq),
            )?,
            // Resume is driven by `hello.last_seq`; an ack needs nothing more.
            ClientFrame::Ack(_) | ClientFrame::Pong(_) | ClientFrame::Unknown => {}
            request => return Ok(Some(request)),
        }
        Ok(None)
    }

    /// Answers one request with the outcome of its domain call.
    async fn request(&mut self, frame: ClientFrame) -> Result<(), Close> {
        let id = frame.request_id().unwrap_or_default();
        match self.dispatch(frame).await {
            Ok(ok) => self.reply_ok(ok),
            Err(err) => {
                let (code, message) = wire_error(&err);
                self.reply_error(Some(id), code, message)
            }
        }
    }

    /// One request, one domain call.
    async fn dispatch(&self, frame: ClientFrame) -> Result<OkReply, Error> {
        let ctx = &self.ctx;
        let agent = &self.agent;
        match frame {
            ClientFrame::StepClaim(claim) => {
                let claimed =
                    tasks::claim_step_at(ctx, agent, &claim.step_id.to_string(), claim.attempt)
                        .await?;
                Ok(OkReply {
                    status: Some("claimed".into()),
                    attempt: Some(claimed.attempt),
                    lease_ms: Some(claimed.lease_ms),
                    ..OkReply::new(claim.id)
                })
            }
            ClientFrame::StepProgress(progress) => {
                let step_id = progress.step_id.to_string();
                let lease_ms = tasks::progress_step(
                    ctx,
                    agent,
                    &step_id,
                    progress.attempt,
                    progress.percent,
                    progress.message.as_deref(),
                )
                .await?;
                Ok(OkReply {
                    lease_ms: Some(lease_ms),
                    ..OkReply::new(progress.id)
                })
            }
            ClientFrame::StepLog(log) => {
                let step_id = log.step_id.to_string();
                tasks::log_step(ctx, agent, &step_id, log.attempt, log.stream, &log.text).await?;
                Ok(OkReply::new(log.id))
            }
            ClientFrame::StepSubmit(submit) => {
                let outcome = tasks::submit_step(
                    ctx,
                    agent,
                    Submitted {
                        step_id: submit.step_id.to_string(),
                        attempt: submit.attempt,
                        result: submit.result,
                        summary: submit.summary,
                        self_check: submit.self_check,
                        check: submit.check.map(|check| *check),
                        files: submit.files,
                        usage: submit.usage,
                    },
                )
                .await?;
                Ok(OkReply {
                    status: Some(outcome.status),
                    ..OkReply::new(submit.id)
                })
            }
            ClientFrame::StepBlock(block) => {
                let request_id = approvals::ask(
                    ctx,
                    agent,
                    &block.step_id.to_string(),
                    block.attempt,
                    &block.question,
                    &block.options,
                )
                .await?;
                Ok(OkReply {
                    status: Some("blocked".into()),
                    created_id: Uuid::parse_str(&request_id).ok(),
                    ..OkReply::new(block.id)
                })
            }
            ClientFrame::StepFail(fail) => {
                let step_id = fail.step_id.to_string();
                tasks::fail_step(
                    ctx,
                    agent,
                    &step_id,
                    fail.attempt,
                    &fail.reason,
                    fail.retryable,
                )
                .await?;
                Ok(OkReply::new(fail.id))
            }
            ClientFrame::ApprovalDecide(decide) => {
                let approval_id = decide.approval_id.to_string();
                approvals::decide(
                    ctx,
                    &Actor::Agent(agent.clone()),
                    ApprovalRef::Id(&approval_id),
                    approvals::Verdict {
                        decision: decide.decision,
                        comment: decide.comment.as_deref(),
                        digest: decide.digest.as_deref(),
                    },
                )
                .await?;
                Ok(OkReply::new(decide.id))
            }
            ClientFrame::InputAnswer(answer) => {
                approvals::answer(
                    ctx,
                    &Actor::Agent(agent.clone()),
                    &answer.input_request_id.to_string(),
                    &answer.answer,
                )
                .await?;
                Ok(OkReply::new(answer.id))
            }
            ClientFrame::AvailabilityRespond(respond) => {
                let request_id = respond.request_id.to_string();
                // A meeting's participant first; otherwise a member's question.
                if !tasks::meeting::respond_as_agent(
                    ctx,
                    agent,
                    &request_id,
                    respond.intervals.as_deref(),
                )
                .await?
                {
                    approvals::respond_availability(
                        ctx,
                        agent,
                        &request_id,
                        respond.available,
                        respond.note.as_deref(),
                    )
                    .await?;
                }
                Ok(OkReply::new(respond.id))
            }
            ClientFrame::PlanSubmit(submit) => {
                tasks::submit_plan(
                    ctx,
                    agent,
                    &submit.plan_id.to_string(),
                    submit.steps,
                    submit.note.as_deref(),
                )
                .await?;
                Ok(OkReply {
                    status: Some("proposed".into()),
                    ..OkReply::new(submit.id)
                })
            }
            ClientFrame::Hello(_)
            | ClientFrame::Ack(_)
            | ClientFrame::Pong(_)
            | ClientFrame::Unknown => Err(Error::internal("not a request")),
        }
    }
}

/// An event that cannot be sent in MessagePack: logged, and the session ends.
fn unencodable(err: Error) -> Close {
    tracing::error!(error = %err, "cannot encode an event");
    Close::new(close_code::INTERNAL, "cannot encode an event")
}

/// The protocol error code and message of a domain error; 5xx details stay in the log.
fn wire_error(err: &Error) -> (&'static str, String) {
    match err {
        Error::BadRequest { .. } => (error_code::BAD_FRAME, err.to_string()),
        // The frame decoded; what it asks breaks a rule (a rejection without a comment,
        // an empty answer, a log entry over its size).
        Error::Invalid {
            field: Some(field), ..
        } => (error_code::INVALID, format!("{err} (field `{field}`)")),
        Error::Invalid { .. } | Error::TooLarge(_) => (error_code::INVALID, err.to_string()),
        Error::Unauthorized(_) => (error_code::UNAUTHORIZED, err.to_string()),
        Error::Forbidden(_) => (error_code::FORBIDDEN, err.to_string()),
        Error::NotFound(_) => (error_code::NOT_FOUND, err.to_string()),
        Error::Conflict(_) => (error_code::CONFLICT, err.to_string()),
        Error::RateLimited | Error::TooManyStreams(_) => {
            (error_code::RATE_LIMITED, err.to_string())
        }
        Error::Unsupported(_) => (error_code::UNSUPPORTED, err.to_string()),
        // `Timeout` is an HTTP request body's; no frame produces it.
        Error::Unavailable(_) | Error::Internal(_) | Error::Timeout(_) => {
            tracing::error!(error = %err, "request failed inside the hub");
            (error_code::INTERNAL, "internal error; retry later".into())
        }
    }
}
