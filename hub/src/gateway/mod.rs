//! The agent WebSocket gateway at `GET /v1/agent/connect`: the upgrade (token and
//! sub-protocol checks) and the hub-wide watcher that ends sessions whose token was
//! revoked. The session itself is in [`session`], the registry of live sessions of this
//! hub (which is also the agents' presence) in [`registry`].

mod limits;
pub mod registry;
pub mod session;

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

use crate::accounts::token;
use crate::agents;
use crate::ctx::Ctx;
use crate::error::Error;
use crate::gateway::registry::Kick;
use crate::store::now_ms;

/// Read buffer of one WebSocket, allocated and zero-filled by tungstenite for every
/// connection, so it is most of what an idle session costs: 1 KiB holds several agent
/// frames (claims, acks, pongs are ~100 B). Larger frames still arrive: the buffer grows
/// to the frame's size while it is read (up to the frame size limit), 1 KiB per read.
const READ_BUFFER_BYTES: usize = 1024;

/// How many bytes of written frames a session collects before it hands them to the
/// socket: the frames a session has queued go out together with its flush (a task's
/// `task.created` and `step.ready`, a submit's `ok` and the events it caused), one system
/// call instead of one per frame. A frame larger than this is written at once, as with
/// no buffer; an idle session writes nothing, so the buffer costs it nothing.
const WRITE_BUFFER_BYTES: usize = 8 * 1024;

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
        .write_buffer_size(WRITE_BUFFER_BYTES)
        .max_message_size(max_frame)
        .max_frame_size(max_frame)
        .on_upgrade(move |socket: WebSocket| {
            let (sink, stream) = socket.split();
            session::run(ctx, agent, token_hash, codec, sink, stream)
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
    while ctx.sessions.n_running() > 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
