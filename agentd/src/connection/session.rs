//! One session with the hub, over any `Sink`/`Stream` of WebSocket messages: `hello`,
//! `welcome`, events deduplicated by `seq` and acknowledged, claims, replies routed to
//! the workers that asked, journaled results (re)sent, heartbeats answered.

use std::collections::HashMap;
use std::fmt::Display;
use std::time::Duration;

use agenthub_protocol::{
    Ack, ClientFrame, Codec, Hello, Pong, ServerFrame, StepClaim, StepFail, StepSubmit, close_code,
};
use futures_util::{Sink, SinkExt, Stream, StreamExt};
use tokio::sync::oneshot;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::connection::loose::Loose;
use crate::connection::{Undecodable, decode, encode};
use crate::daemon::{Core, OnceResult};
use crate::executor::{Outbound, Reply};
use crate::state::JournalEntry;

/// How long the hub has to answer `hello`.
const WELCOME_TIMEOUT: Duration = Duration::from_secs(10);
/// Acknowledge at the latest this long after processing an event.
const ACK_DELAY: Duration = Duration::from_secs(1);
/// Acknowledge at once after this many unacknowledged events.
const ACK_EVERY: u64 = 100;

/// Why a session ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionEnd {
    /// Asked to stop.
    Shutdown,
    /// `--once`: a result was acknowledged.
    Once,
    /// The token was refused or revoked: do not reconnect.
    Unauthorized(String),
    /// Another session of this agent replaced this one: do not reconnect.
    Superseded,
    /// Reconnect; `soon` after a hub restart or a slow-reader close (0-5 s jitter),
    /// otherwise with backoff.
    Reconnect { reason: String, soon: bool },
}

/// An event to process.
enum Event {
    Known(Box<ServerFrame>),
    Undecodable(Undecodable),
}

enum Pending {
    Claim(Box<agenthub_protocol::StepInfo>),
    /// A claim of a step that cannot be run, to fail it with `reason`.
    ClaimToFail {
        step_id: Uuid,
        reason: String,
    },
    Journal {
        step_id: Uuid,
        attempt: u32,
    },
    Worker(Option<oneshot::Sender<Reply>>),
}

struct Session<'a, Si> {
    sink: &'a mut Si,
    codec: Codec,
    core: &'a mut Core,
    next_id: u64,
    pending: HashMap<u64, Pending>,
    in_flight_journal: Vec<(Uuid, u32)>,
    unacked: u64,
    ack_deadline: Option<Instant>,
}

/// Runs one session to its end.
pub async fn run_session<Si, St, E>(
    sink: &mut Si,
    stream: &mut St,
    codec: Codec,
    core: &mut Core,
    shutdown: &CancellationToken,
) -> SessionEnd
where
    Si: Sink<Message> + Unpin,
    Si::Error: Display,
    St: Stream<Item = Result<Message, E>> + Unpin,
    E: Display,
{
    let mut session = Session {
        sink,
        codec,
        core,
        next_id: 1,
        pending: HashMap::new(),
        in_flight_journal: Vec::new(),
        unacked: 0,
        ack_deadline: None,
    };
    match session.handshake(stream).await {
        Ok(heartbeat_timeout) => session.serve(stream, shutdown, heartbeat_timeout).await,
        Err(end) => end,
    }
}

impl<Si> Session<'_, Si>
where
    Si: Sink<Message> + Unpin,
    Si::Error: Display,
{
    async fn send(&mut self, frame: &ClientFrame) -> Result<(), SessionEnd> {
        self.sink
            .send(encode(self.codec, frame))
            .await
            .map_err(|err| SessionEnd::Reconnect {
                reason: format!("sending failed: {err}"),
                soon: false,
            })
    }

    async fn request(&mut self, frame: ClientFrame, pending: Pending) -> Result<(), SessionEnd> {
        let id = self.next_id;
        self.next_id += 1;
        self.pending.insert(id, pending);
        self.send(&with_id(frame, id)).await
    }

    async fn handshake<St, E>(&mut self, stream: &mut St) -> Result<Duration, SessionEnd>
    where
        St: Stream<Item = Result<Message, E>> + Unpin,
        E: Display,
    {
        let hello = ClientFrame::Hello(Hello {
            agent_version: crate::AGENT_VERSION.to_string(),
            capabilities: self.core.capabilities.clone(),
            max_concurrency: self.core.max_concurrency,
            last_seq: self.core.last_seq,
        });
        self.send(&hello).await?;
        let deadline = Instant::now() + WELCOME_TIMEOUT;
        loop {
            let message = match tokio::time::timeout_at(deadline, stream.next()).await {
                Err(_) => {
                    return Err(SessionEnd::Reconnect {
                        reason: "no welcome within 10 s".into(),
                        soon: false,
                    });
                }
                Ok(message) => message,
            };
            let bytes = match read_message(message)? {
                Some(bytes) => bytes,
                None => continue,
            };
            match decode(self.codec, &bytes) {
                Ok(ServerFrame::Welcome(welcome)) => {
                    if self.core.last_seq > welcome.last_seq {
                        tracing::warn!(
                            stored = self.core.last_seq,
                            hub = welcome.last_seq,
                            "the hub's event history is behind our position; starting over from the hub's"
                        );
                        if let Err(err) = self.core.set_last_seq(welcome.last_seq) {
                            tracing::error!(error = %err, "cannot persist the position");
                        }
                    }
                    self.core.lease_ms = welcome.lease_ms;
                    self.core.notifier.bound_to(welcome.member_id);
                    self.core.notifier.catch_up();
                    self.core.set_connected(true, Some(&welcome.agent_name));
                    self.core.publish_status();
                    tracing::info!(
                        agent.name = %welcome.agent_name,
                        agent.id = %welcome.agent_id,
                        last_seq = self.core.last_seq,
                        hub_last_seq = welcome.last_seq,
                        "session open"
                    );
                    return Ok(Duration::from_millis(
                        welcome.heartbeat_timeout_ms.max(1000),
                    ));
                }
                Ok(ServerFrame::Error(error)) => {
                    return Err(SessionEnd::Reconnect {
                        reason: format!(
                            "the hub refused hello: {} ({})",
                            error.message, error.code
                        ),
                        soon: false,
                    });
                }
                Ok(ServerFrame::Ping(ping)) => {
                    self.send(&ClientFrame::Pong(Pong { nonce: ping.nonce }))
                        .await?;
                }
                _ => {}
            }
        }
    }

    async fn serve<St, E>(
        &mut self,
        stream: &mut St,
        shutdown: &CancellationToken,
        heartbeat_timeout: Duration,
    ) -> SessionEnd
    where
        St: Stream<Item = Result<Message, E>> + Unpin,
        E: Display,
    {
        if let Err(end) = self.send_journal().await {
            return end;
        }
        if let Err(end) = self.claim_waiting().await {
            return end;
        }
        let mut last_heard = Instant::now();
        loop {
            let ack_at = self.ack_deadline;
            let result = tokio::select! {
                () = shutdown.cancelled() => {
                    let _ = self.flush_ack().await;
                    let _ = self.sink.send(Message::Close(Some(CloseFrame {
                        code: CloseCode::Normal,
                        reason: "agentd stopping".into(),
                    }))).await;
                    return SessionEnd::Shutdown;
                }
                message = stream.next() => {
                    last_heard = Instant::now();
                    match read_message(message) {
                        Ok(Some(bytes)) => self.on_frame(&bytes).await,
                        Ok(None) => Ok(()),
                        Err(end) => Err(end),
                    }
                }
                Some(outbound) = self.core.outbound_rx.recv() => self.on_outbound(outbound).await,
                Some(joined) = self.core.workers.join_next(), if !self.core.workers.is_empty() => {
                    // A revoked attempt's worker may end after the next attempt of
                    // the same step started (a paused task resumed): keep that one.
                    if let Ok((step_id, attempt)) = joined
                        && self.core.running.get(&step_id).is_some_and(|running| running.attempt == attempt)
                    {
                        self.core.running.remove(&step_id);
                    }
                    self.core.publish_status();
                    self.claim_waiting().await
                }
                () = sleep_until_opt(ack_at) => self.flush_ack().await,
                () = tokio::time::sleep_until(last_heard + heartbeat_timeout) => {
                    Err(SessionEnd::Reconnect {
                        reason: format!("nothing heard from the hub for {} s", heartbeat_timeout.as_secs()),
                        soon: false,
                    })
                }
            };
            if let Err(end) = result {
                let _ = self.flush_ack().await;
                return end;
            }
            if self.core.once_result.is_some() {
                let _ = self.flush_ack().await;
                let _ = self
                    .sink
                    .send(Message::Close(Some(CloseFrame {
                        code: CloseCode::Normal,
                        reason: "agentd done".into(),
                    })))
                    .await;
                return SessionEnd::Once;
            }
        }
    }

    async fn flush_ack(&mut self) -> Result<(), SessionEnd> {
        self.ack_deadline = None;
        if self.unacked == 0 {
            return Ok(());
        }
        self.unacked = 0;
        let seq = self.core.last_seq;
        self.send(&ClientFrame::Ack(Ack { seq })).await
    }

    async fn send_journal(&mut self) -> Result<(), SessionEnd> {
        let entries = match self.core.state.journal() {
            Ok(entries) => entries,
            Err(err) => {
                tracing::error!(error = %err, "cannot read the journal");
                return Ok(());
            }
        };
        for entry in entries {
            let key = (entry.step_id(), entry.attempt());
            if self.in_flight_journal.contains(&key) {
                continue;
            }
            self.in_flight_journal.push(key);
            let frame = match entry {
                JournalEntry::Submit {
                    step_id,
                    attempt,
                    result,
                    summary,
                    files,
                    usage,
                    check,
                } => ClientFrame::StepSubmit(StepSubmit {
                    id: 0,
                    step_id,
                    attempt,
                    result,
                    summary,
                    self_check: None,
                    check: check.map(Box::new),
                    files,
                    usage,
                }),
                JournalEntry::Fail {
                    step_id,
                    attempt,
                    reason,
                    retryable,
                } => ClientFrame::StepFail(StepFail {
                    id: 0,
                    step_id,
                    attempt,
                    reason,
                    retryable,
                }),
            };
            self.request(
                frame,
                Pending::Journal {
                    step_id: key.0,
                    attempt: key.1,
                },
            )
            .await?;
        }
        Ok(())
    }

    async fn claim_waiting(&mut self) -> Result<(), SessionEnd> {
        while (self.core.running.len() + self.core.claiming.len())
            < self.core.max_concurrency as usize
        {
            let Some(step) = self.core.waiting.pop_front() else {
                break;
            };
            if self.core.running.contains_key(&step.step_id)
                || self.core.claiming.contains(&step.step_id)
            {
                continue;
            }
            self.core.claiming.insert(step.step_id);
            let frame = ClientFrame::StepClaim(StepClaim {
                id: 0,
                step_id: step.step_id,
                attempt: Some(step.attempt),
            });
            self.request(frame, Pending::Claim(Box::new(step))).await?;
        }
        Ok(())
    }

    async fn on_outbound(&mut self, outbound: Outbound) -> Result<(), SessionEnd> {
        match outbound {
            Outbound::Request { frame, reply } => self.request(frame, Pending::Worker(reply)).await,
            Outbound::Journaled => {
                self.core.publish_status();
                self.send_journal().await
            }
        }
    }

    async fn on_frame(&mut self, bytes: &[u8]) -> Result<(), SessionEnd> {
        let frame = match decode(self.codec, bytes) {
            Ok(frame) => frame,
            Err(undecodable) => {
                if let Undecodable::Broken { reason, loose } = &undecodable {
                    tracing::error!(
                        r#type = loose.type_name.as_deref().unwrap_or("?"),
                        seq = loose.seq,
                        step.id = loose.step_id.map(|id| id.to_string()),
                        reason,
                        "the hub sent a frame agentd cannot decode; skipping it"
                    );
                }
                return match undecodable.seq() {
                    // An event this version does not know or cannot read: count it.
                    Some(seq) => self.on_event(seq, Event::Undecodable(undecodable)).await,
                    None => {
                        tracing::debug!("ignoring a hub frame this version does not know");
                        Ok(())
                    }
                };
            }
        };
        if let Some(seq) = frame.seq() {
            return self.on_event(seq, Event::Known(Box::new(frame))).await;
        }
        match frame {
            ServerFrame::Ping(ping) => {
                self.send(&ClientFrame::Pong(Pong { nonce: ping.nonce }))
                    .await
            }
            ServerFrame::Ok(ok) => {
                let id = ok.id;
                self.on_reply(id, Reply::Ok(ok)).await
            }
            ServerFrame::Error(error) => match error.id {
                Some(id) => {
                    self.on_reply(
                        id,
                        Reply::Error {
                            code: error.code,
                            message: error.message,
                        },
                    )
                    .await
                }
                None => {
                    tracing::warn!(code = %error.code, message = %error.message, "the hub reported an error");
                    if error.code == agenthub_protocol::error_code::UNAUTHORIZED {
                        return Err(SessionEnd::Unauthorized(error.message));
                    }
                    Ok(())
                }
            },
            _ => Ok(()),
        }
    }

    async fn on_reply(&mut self, id: u64, reply: Reply) -> Result<(), SessionEnd> {
        let Some(pending) = self.pending.remove(&id) else {
            return Ok(());
        };
        match pending {
            Pending::Worker(Some(sender)) => {
                let _ = sender.send(reply);
            }
            Pending::Worker(None) => {
                if let Reply::Error { code, message } = reply {
                    tracing::debug!(code, message, "the hub refused a log line");
                }
            }
            Pending::Claim(step) => {
                self.core.claiming.remove(&step.step_id);
                match reply {
                    Reply::Ok(ok) => {
                        let attempt = ok.attempt.unwrap_or(step.attempt);
                        self.core.start_step(*step, attempt);
                    }
                    Reply::Error { code, message } => {
                        tracing::info!(step.id = %step.step_id, code, message, "claim refused; not ours");
                    }
                }
                self.claim_waiting().await?;
            }
            Pending::ClaimToFail { step_id, reason } => match reply {
                Reply::Ok(ok) => {
                    let attempt = ok.attempt.unwrap_or(1);
                    tracing::warn!(step.id = %step_id, attempt, reason, "step failed");
                    let entry = JournalEntry::Fail {
                        step_id,
                        attempt,
                        reason,
                        retryable: false,
                    };
                    match self.core.state.journal_add(&entry) {
                        Ok(()) => self.send_journal().await?,
                        Err(err) => tracing::error!(error = %err, "cannot update the journal"),
                    }
                }
                Reply::Error { code, message } => {
                    tracing::info!(step.id = %step_id, code, message, "claim refused; not ours");
                }
            },
            Pending::Journal { step_id, attempt } => {
                self.in_flight_journal
                    .retain(|key| *key != (step_id, attempt));
                let entry_kind = self.core.state.journal().ok().and_then(|entries| {
                    entries
                        .into_iter()
                        .find(|entry| entry.step_id() == step_id && entry.attempt() == attempt)
                });
                match reply {
                    Reply::Ok(ok) => {
                        let status = ok.status.unwrap_or_else(|| "acknowledged".into());
                        tracing::info!(step.id = %step_id, attempt, status, "result delivered");
                        if let Err(err) = self.core.state.journal_remove(step_id, attempt) {
                            tracing::error!(error = %err, "cannot update the journal");
                        }
                        if self.core.once {
                            self.core.once_result = Some(match entry_kind {
                                Some(JournalEntry::Fail { reason, .. }) => {
                                    OnceResult::Failed(reason)
                                }
                                _ => OnceResult::Submitted(status),
                            });
                        }
                    }
                    Reply::Error { code, message } => {
                        let permanent = matches!(
                            code.as_str(),
                            "conflict"
                                | "not_found"
                                | "forbidden"
                                | "bad_frame"
                                | "invalid"
                                | "too_large"
                        );
                        // A result the hub cannot take as it is (malformed, too large,
                        // breaking a rule) fails the step instead, so that the task
                        // fails visibly and its person can retry it; a step that is no
                        // longer ours (conflict, not found, forbidden) is just dropped.
                        let unusable_result =
                            matches!(entry_kind, Some(JournalEntry::Submit { .. }))
                                && matches!(code.as_str(), "bad_frame" | "invalid" | "too_large");
                        if permanent {
                            tracing::warn!(step.id = %step_id, attempt, code, message, "the hub refused the result; dropping it");
                            if let Err(err) = self.core.state.journal_remove(step_id, attempt) {
                                tracing::error!(error = %err, "cannot update the journal");
                            }
                            if unusable_result {
                                let entry = JournalEntry::Fail {
                                    step_id,
                                    attempt,
                                    reason: format!("the hub refused the result: {message}"),
                                    retryable: false,
                                };
                                match self.core.state.journal_add(&entry) {
                                    Ok(()) => self.send_journal().await?,
                                    Err(err) => {
                                        tracing::error!(error = %err, "cannot update the journal")
                                    }
                                }
                            }
                            if self.core.once {
                                self.core.once_result = Some(OnceResult::Failed(format!(
                                    "the hub refused the result: {message}"
                                )));
                            }
                        } else {
                            tracing::warn!(step.id = %step_id, attempt, code, message, "the hub could not take the result now; it stays journaled");
                        }
                    }
                }
                self.core.publish_status();
            }
        }
        Ok(())
    }

    async fn on_event(&mut self, seq: u64, event: Event) -> Result<(), SessionEnd> {
        let last_seq = self.core.last_seq;
        if seq <= last_seq {
            return Ok(());
        }
        if seq != last_seq + 1 {
            let _ = self
                .sink
                .send(Message::Close(Some(CloseFrame {
                    code: CloseCode::Normal,
                    reason: "seq gap".into(),
                })))
                .await;
            return Err(SessionEnd::Reconnect {
                reason: format!(
                    "events {} to {} are missing; resuming",
                    last_seq + 1,
                    seq - 1
                ),
                soon: true,
            });
        }
        match event {
            Event::Known(frame) => self.on_known_event(*frame).await?,
            Event::Undecodable(Undecodable::Broken { reason, loose }) => {
                self.on_broken_event(reason, loose).await?;
            }
            Event::Undecodable(Undecodable::Unknown { .. }) => {}
        }
        if let Err(err) = self.core.set_last_seq(seq) {
            tracing::error!(error = %err, "cannot persist the position");
        }
        self.unacked += 1;
        if self.unacked >= ACK_EVERY {
            self.flush_ack().await?;
        } else if self.ack_deadline.is_none() {
            self.ack_deadline = Some(Instant::now() + ACK_DELAY);
        }
        Ok(())
    }

    /// A `step.ready` that cannot be decoded cannot be run: its step is claimed and
    /// failed, so that its task fails visibly instead of waiting for this agent.
    async fn on_broken_event(&mut self, reason: String, loose: Loose) -> Result<(), SessionEnd> {
        if loose.type_name.as_deref() != Some("step.ready") {
            return Ok(());
        }
        let (Some(step_id), Some(attempt)) = (loose.step_id, loose.attempt) else {
            return Ok(());
        };
        if self.core.running.contains_key(&step_id) || self.core.claiming.contains(&step_id) {
            return Ok(());
        }
        self.core
            .waiting
            .retain(|waiting| waiting.step_id != step_id);
        let frame = ClientFrame::StepClaim(StepClaim {
            id: 0,
            step_id,
            attempt: Some(attempt),
        });
        let reason = format!("agentd cannot read this step as the hub sent it ({reason})");
        self.request(frame, Pending::ClaimToFail { step_id, reason })
            .await
    }

    async fn on_known_event(&mut self, frame: ServerFrame) -> Result<(), SessionEnd> {
        self.core.notifier.handle_event(&frame);
        match frame {
            ServerFrame::StepReady(ready) => {
                let step = ready.step;
                tracing::info!(step.id = %step.step_id, attempt = step.attempt, title = %step.title, "step ready");
                if let Some(running) = self.core.running.get(&step.step_id)
                    && running.attempt >= step.attempt
                {
                    return Ok(());
                }
                self.core
                    .waiting
                    .retain(|waiting| waiting.step_id != step.step_id);
                self.core.waiting.push_back(step);
                self.claim_waiting().await?;
            }
            ServerFrame::StepRevoked(revoked) => {
                tracing::info!(step.id = %revoked.step_id, attempt = revoked.attempt, reason = %revoked.reason, "step revoked");
                self.core.waiting.retain(|waiting| {
                    !(waiting.step_id == revoked.step_id && waiting.attempt <= revoked.attempt)
                });
                if let Some(running) = self.core.running.get(&revoked.step_id)
                    && running.attempt == revoked.attempt
                {
                    running.cancel.cancel();
                    self.core.running.remove(&revoked.step_id);
                }
                if let Err(err) = self
                    .core
                    .state
                    .journal_remove(revoked.step_id, revoked.attempt)
                {
                    tracing::error!(error = %err, "cannot update the journal");
                }
                self.core.publish_status();
            }
            ServerFrame::PlanRequested(requested) => {
                self.core.start_planner(*requested);
            }
            ServerFrame::AvailabilityRequested(requested) => {
                self.core.answer_availability(requested);
            }
            ServerFrame::MeetingScheduled(scheduled) => {
                tracing::info!(
                    step.id = %scheduled.step_id,
                    from = %scheduled.slot.from,
                    to = %scheduled.slot.to,
                    "meeting \"{}\" scheduled; the invitation is attached to the step",
                    scheduled.title
                );
            }
            ServerFrame::InputAnswered(answered) => {
                if let Some(running) = self.core.running.get(&answered.step_id) {
                    let _ = running.answers.try_send(answered.answer);
                }
            }
            ServerFrame::ApprovalRequested(requested) => {
                tracing::info!(
                    step.id = %requested.step_id,
                    approval_id = %requested.approval_id,
                    "approval requested of you for \"{}\"; run `agentd inbox`",
                    requested.step_title
                );
            }
            ServerFrame::InputRequested(requested) => {
                tracing::info!(
                    step.id = %requested.step_id,
                    input_request_id = %requested.input_request_id,
                    "question for you: {}; run `agentd inbox`",
                    requested.question
                );
            }
            other => {
                tracing::debug!(frame = other.type_name(), "event");
            }
        }
        Ok(())
    }
}

/// The payload of a data message; `None` for control messages; the end of the session
/// for a close or a broken stream.
fn read_message<E: Display>(
    message: Option<Result<Message, E>>,
) -> Result<Option<Vec<u8>>, SessionEnd> {
    match message {
        None => Err(SessionEnd::Reconnect {
            reason: "the connection closed".into(),
            soon: false,
        }),
        Some(Err(err)) => Err(SessionEnd::Reconnect {
            reason: format!("the connection broke: {err}"),
            soon: false,
        }),
        Some(Ok(Message::Binary(bytes))) => Ok(Some(bytes.to_vec())),
        Some(Ok(Message::Text(text))) => Ok(Some(text.as_bytes().to_vec())),
        Some(Ok(Message::Close(frame))) => {
            let (code, reason) = frame
                .map(|frame| (u16::from(frame.code), frame.reason.to_string()))
                .unwrap_or((close_code::NORMAL, String::new()));
            Err(match code {
                close_code::TOKEN_REVOKED => {
                    SessionEnd::Unauthorized(format!("the token was revoked ({reason})"))
                }
                close_code::SUPERSEDED => SessionEnd::Superseded,
                close_code::GOING_AWAY | close_code::TOO_SLOW => SessionEnd::Reconnect {
                    reason: format!("the hub closed the session ({code} {reason})"),
                    soon: true,
                },
                _ => SessionEnd::Reconnect {
                    reason: format!("the hub closed the session ({code} {reason})"),
                    soon: false,
                },
            })
        }
        Some(Ok(_)) => Ok(None),
    }
}

async fn sleep_until_opt(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

/// Sets the request id of a request frame.
pub fn with_id(frame: ClientFrame, id: u64) -> ClientFrame {
    match frame {
        ClientFrame::StepClaim(mut inner) => {
            inner.id = id;
            ClientFrame::StepClaim(inner)
        }
        ClientFrame::StepProgress(mut inner) => {
            inner.id = id;
            ClientFrame::StepProgress(inner)
        }
        ClientFrame::StepLog(mut inner) => {
            inner.id = id;
            ClientFrame::StepLog(inner)
        }
        ClientFrame::StepSubmit(mut inner) => {
            inner.id = id;
            ClientFrame::StepSubmit(inner)
        }
        ClientFrame::StepBlock(mut inner) => {
            inner.id = id;
            ClientFrame::StepBlock(inner)
        }
        ClientFrame::StepFail(mut inner) => {
            inner.id = id;
            ClientFrame::StepFail(inner)
        }
        ClientFrame::ApprovalDecide(mut inner) => {
            inner.id = id;
            ClientFrame::ApprovalDecide(inner)
        }
        ClientFrame::InputAnswer(mut inner) => {
            inner.id = id;
            ClientFrame::InputAnswer(inner)
        }
        ClientFrame::AvailabilityRespond(mut inner) => {
            inner.id = id;
            ClientFrame::AvailabilityRespond(inner)
        }
        ClientFrame::PlanSubmit(mut inner) => {
            inner.id = id;
            ClientFrame::PlanSubmit(inner)
        }
        other => other,
    }
}
