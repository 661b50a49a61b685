//! The agent WebSocket gateway at `GET /v1/agent/connect`: the upgrade (token and
//! sub-protocol checks), the registry of live sessions of this hub, and the hub-wide
//! watcher that ends sessions whose token was revoked. The session itself is in
//! [`session`].

mod limits;
pub mod session;

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use agenthub_protocol::{Codec, SUBPROTOCOLS, close_code};
use axum::extract::State;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{WebSocket, WebSocketUpgrade};
use axum::http::HeaderValue;
use axum::http::header::SEC_WEBSOCKET_PROTOCOL;
use axum::http::request::Parts;
use axum::response::Response;
use futures_util::StreamExt;
use tokio::sync::oneshot;

use crate::accounts::token;
use crate::agents;
use crate::ctx::Ctx;
use crate::error::Error;
use crate::store::now_ms;

/// Read buffer of one WebSocket, allocated and zero-filled by tungstenite for every
/// connection, so it is most of what an idle session costs: 1 KiB holds several agent
/// frames (claims, acks, pongs are ~100 B). Larger frames still arrive: the buffer grows
/// to the frame's size while it is read (up to the frame size limit), 1 KiB per read.
const READ_BUFFER_BYTES: usize = 1024;

/// Why a session is told to end from outside it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Kick {
    pub code: u16,
    pub reason: &'static str,
}

/// Upgrades an agent connection (see docs/protocol.md §3-§6): the agent token first
/// (`401` before upgrading), then the sub-protocol (`400` naming the supported ones).
#[tracing::instrument(skip_all)]
pub async fn connect(
    State(ctx): State<Ctx>,
    parts: Parts,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Result<Response, Error> {
    // Says what is wrong: no header, not `Bearer …`, or not a valid agent token.
    let secret = crate::api::extract::bearer_token(&parts)?;
    let agent = agents::authenticate_token(&ctx.store, secret).await?;
    let token_hash = token::hash(secret);
    let codec = negotiate(&parts)?;
    let upgrade = upgrade.map_err(|rejection| {
        Error::bad_request(format!(
            "expected a WebSocket upgrade: {}",
            rejection.body_text()
        ))
    })?;
    let max_frame = ctx.settings.max_frame_bytes;
    let mut response = upgrade
        .read_buffer_size(READ_BUFFER_BYTES)
        .write_buffer_size(0)
        .max_message_size(max_frame)
        .max_frame_size(max_frame)
        .on_upgrade(move |socket: WebSocket| async move {
            let sessions = std::sync::Arc::clone(&ctx.sessions);
            let _running = sessions.running();
            let (sink, stream) = socket.split();
            session::run(ctx, agent, token_hash, codec, sink, stream).await;
        });
    response.headers_mut().insert(
        SEC_WEBSOCKET_PROTOCOL,
        HeaderValue::from_static(codec.subprotocol()),
    );
    Ok(response)
}

/// The first offered sub-protocol the hub knows, from every `Sec-WebSocket-Protocol`
/// header of the request.
fn negotiate(parts: &Parts) -> Result<Codec, Error> {
    let offers: Vec<&str> = parts
        .headers
        .get_all(SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .collect();
    agenthub_protocol::negotiate(offers.iter().copied()).ok_or_else(|| {
        Error::Unsupported(format!(
            "no supported sub-protocol offered; supported: {}",
            SUBPROTOCOLS.join(", ")
        ))
    })
}

#[derive(Debug)]
struct Entry {
    session_id: u64,
    token_hash: String,
    /// Taken by the first kick; later kicks of the same session are no-ops.
    kick: Option<oneshot::Sender<Kick>>,
}

impl Entry {
    fn kick(&mut self, kick: Kick) {
        if let Some(sender) = self.kick.take() {
            let _already_ending = sender.send(kick);
        }
    }
}

/// The live sessions of this hub, one per agent: a newer session of an agent replaces
/// the older one (closed with `4005`).
#[derive(Debug, Default)]
pub struct Sessions {
    by_agent: Mutex<HashMap<String, Entry>>,
    next_id: AtomicU64,
    /// Session tasks not finished yet (including their close handshake).
    running: AtomicUsize,
}

/// Counts a session task as running until dropped.
#[derive(Debug)]
pub struct Running<'a>(&'a Sessions);

impl Drop for Running<'_> {
    fn drop(&mut self) {
        self.0.running.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A registered session: its id and where kicks arrive.
#[derive(Debug)]
pub struct Registration {
    pub session_id: u64,
    /// Resolves with the reason when the session is told to end from outside (a oneshot:
    /// an idle session costs a few bytes instead of an mpsc block).
    pub kicks: oneshot::Receiver<Kick>,
}

impl Sessions {
    /// Marks a session task as running until the returned guard is dropped.
    pub fn running(&self) -> Running<'_> {
        self.running.fetch_add(1, Ordering::AcqRel);
        Running(self)
    }

    /// Registers the session of `agent_id`, closing an older one of the same agent.
    pub fn register(&self, agent_id: &str, token_hash: &str) -> Registration {
        let session_id = self.next_id.fetch_add(1, Ordering::Relaxed) + 1;
        let (kick, kicks) = oneshot::channel();
        let old = self.by_agent.lock().expect("sessions lock").insert(
            agent_id.to_string(),
            Entry {
                session_id,
                token_hash: token_hash.to_string(),
                kick: Some(kick),
            },
        );
        if let Some(mut old) = old {
            old.kick(Kick {
                code: close_code::SUPERSEDED,
                reason: "a newer session of this agent replaced this one",
            });
        }
        Registration { session_id, kicks }
    }

    /// Removes the session; true when it was still the agent's current one.
    pub fn unregister(&self, agent_id: &str, session_id: u64) -> bool {
        let mut by_agent = self.by_agent.lock().expect("sessions lock");
        match by_agent.get(agent_id) {
            Some(entry) if entry.session_id == session_id => {
                by_agent.remove(agent_id);
                true
            }
            _ => false,
        }
    }

    /// Whether the agent has a session on this hub.
    pub fn is_connected(&self, agent_id: &str) -> bool {
        self.by_agent
            .lock()
            .expect("sessions lock")
            .contains_key(agent_id)
    }

    /// The agents with a session on this hub.
    pub fn agent_ids(&self) -> Vec<String> {
        self.by_agent
            .lock()
            .expect("sessions lock")
            .keys()
            .cloned()
            .collect()
    }

    /// Number of live sessions.
    pub fn len(&self) -> usize {
        self.by_agent.lock().expect("sessions lock").len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Ends the sessions authenticated by one of `token_hashes`; returns how many.
    pub fn kick_tokens(&self, token_hashes: &[String], kick: Kick) -> usize {
        let mut by_agent = self.by_agent.lock().expect("sessions lock");
        let mut n_kicked = 0;
        for entry in by_agent.values_mut() {
            if token_hashes.contains(&entry.token_hash) {
                entry.kick(kick);
                n_kicked += 1;
            }
        }
        n_kicked
    }

    /// Ends the sessions of revoked tokens at once (`4001`).
    pub fn close_revoked(&self, token_hashes: &[String]) -> usize {
        self.kick_tokens(
            token_hashes,
            Kick {
                code: close_code::TOKEN_REVOKED,
                reason: "the agent token was revoked",
            },
        )
    }

    /// Ends every session (hub shutdown: `1001`, reconnect elsewhere).
    pub fn kick_all(&self, kick: Kick) {
        for entry in self.by_agent.lock().expect("sessions lock").values_mut() {
            entry.kick(kick);
        }
    }
}

/// Ends sessions whose token was revoked (by this hub, another hub or the admin CLI),
/// checking every `interval`, and renews the presence of this hub's agents in the
/// database every [`agents::PRESENCE_REFRESH_MS`] (so every hub and the admin CLI see
/// them online), until the process ends. A few queries per hub, whatever the number of
/// sessions.
pub async fn watch_sessions(ctx: Ctx, interval: Duration) {
    let mut since = now_ms();
    let mut refreshed_at = now_ms();
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        if now_ms() - refreshed_at >= agents::PRESENCE_REFRESH_MS {
            refreshed_at = now_ms();
            let connected = ctx.sessions.agent_ids();
            if let Err(err) = agents::refresh_presence(&ctx.store, &connected).await {
                tracing::warn!(error = %err, "presence refresh failed; retrying");
            }
        }
        if ctx.sessions.is_empty() {
            since = now_ms();
            continue;
        }
        // Overlap the windows a little: clocks of several hubs differ slightly.
        let checked_at = now_ms();
        match agents::revoked_tokens_since(&ctx.store, since - 5_000).await {
            Ok(hashes) if !hashes.is_empty() => {
                let n_kicked = ctx.sessions.kick_tokens(
                    &hashes,
                    Kick {
                        code: close_code::TOKEN_REVOKED,
                        reason: "the agent token was revoked",
                    },
                );
                if n_kicked > 0 {
                    tracing::info!(n_kicked, "closed sessions of revoked agent tokens");
                }
                since = checked_at;
            }
            Ok(_) => since = checked_at,
            Err(err) => tracing::warn!(error = %err, "revocation check failed; retrying"),
        }
    }
}

/// Tells every agent of this hub to reconnect elsewhere (`1001`) and waits up to `grace`
/// for the sessions to end.
pub async fn close_all(ctx: &Ctx, grace: Duration) {
    ctx.sessions.kick_all(Kick {
        code: close_code::GOING_AWAY,
        reason: "the hub is shutting down; reconnect",
    });
    let deadline = tokio::time::Instant::now() + grace;
    while ctx.sessions.running.load(Ordering::Acquire) > 0 && tokio::time::Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
