//! Live event streams as server-sent events: the caller's events and one task's feed,
//! replayed from the outbox after the client's last id, then live.

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::http::header::AUTHORIZATION;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::{Stream, StreamExt, stream};
use serde::Deserialize;
use tokio::sync::mpsc;
use utoipa::IntoParams;

use crate::accounts::token;
use crate::api::AppState;
use crate::api::extract::{ApiQuery, Auth};
use crate::api::views::timestamp;
use crate::error::{Error, Result};
use crate::events::stream::{self as event_stream, StreamEvent};

/// The header in which a reconnecting client names the last event it received.
const LAST_EVENT_ID: &str = "last-event-id";

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct StreamQuery {
    /// Start after this id (default 0: from the first event). A `Last-Event-ID` header
    /// takes precedence.
    pub after: Option<u64>,
}

/// The caller's events (an API key: its member's; an agent token: the agent's) as
/// server-sent events: replayed after `Last-Event-ID` (or `after`), then live.
///
/// `text/event-stream`: each event has `id:` (its `seq`), `event:` (its type) and
/// `data:` (the JSON of one item of `GET /v1/events`). A comment line keeps idle
/// connections open; `retry:` is sent first. See "Event streams" in docs/api.md.
#[utoipa::path(get, path = "/v1/events/stream", tag = "events",
    params(
        StreamQuery,
        ("Last-Event-ID" = Option<String>, Header, description = "The id of the last event received; the stream resumes after it."),
    ),
    responses(
        (status = 200, description = "the event stream", content_type = "text/event-stream", body = String),
        (status = 400, description = "`bad_request`: `Last-Event-ID` is not an event id of this stream"),
        (status = 429, description = "`rate_limited`: too many event streams are open for this key or on this hub, or the hub is shutting down; retry later"),
    ))]
pub async fn stream_events(
    State(ctx): State<AppState>,
    Auth(actor): Auth,
    headers: HeaderMap,
    ApiQuery(query): ApiQuery<StreamQuery>,
) -> Result<Sse<impl Stream<Item = std::result::Result<Event, Infallible>>>> {
    let after = resume_point(&headers, query.after)?;
    let events = event_stream::follow_audience(&ctx, &actor, &stream_key(&headers), after).await?;
    Ok(sse(&ctx, events))
}

/// One task's events as server-sent events: every event about the task once (task and
/// step changes, approvals, questions), the steps' progress (`step.progress`) and their
/// log lines as they are written (`step.log`), replayed after `Last-Event-ID` (or
/// `after`), then live.
///
/// Ids count the task's own events (1, 2, 3, …), not the caller's. See "Event streams"
/// in docs/api.md.
#[utoipa::path(get, path = "/v1/tasks/{id}/stream", tag = "tasks",
    params(
        ("id" = String, Path, description = "The task's id."),
        StreamQuery,
        ("Last-Event-ID" = Option<String>, Header, description = "The id of the last event received; the stream resumes after it."),
    ),
    responses(
        (status = 200, description = "the task's event stream", content_type = "text/event-stream", body = String),
        (status = 400, description = "`bad_request`: `Last-Event-ID` is not an event id of this stream"),
        (status = 404, description = "`not_found`: no task with this id in the caller's workspace"),
        (status = 429, description = "`rate_limited`: too many event streams are open for this key or on this hub, or the hub is shutting down; retry later"),
    ))]
pub async fn stream_task(
    State(ctx): State<AppState>,
    Auth(actor): Auth,
    Path(task_id): Path<String>,
    headers: HeaderMap,
    ApiQuery(query): ApiQuery<StreamQuery>,
) -> Result<Sse<impl Stream<Item = std::result::Result<Event, Infallible>>>> {
    let after = resume_point(&headers, query.after)?;
    let events =
        event_stream::follow_task(&ctx, &actor, &task_id, &stream_key(&headers), after).await?;
    Ok(sse(&ctx, events))
}

/// Where a stream starts: after `Last-Event-ID` when sent (a reconnect), else after
/// `after`.
fn resume_point(headers: &HeaderMap, after: Option<u64>) -> Result<u64> {
    let Some(value) = headers.get(LAST_EVENT_ID) else {
        return Ok(after.unwrap_or(0));
    };
    let text = value.to_str().unwrap_or_default().trim();
    if text.is_empty() {
        return Ok(after.unwrap_or(0));
    }
    text.parse::<u64>().map_err(|_| Error::BadRequest {
        message: format!(
            "`Last-Event-ID` must be the id of an event of this stream (a number), not `{text}`"
        ),
        field: Some("Last-Event-ID".into()),
    })
}

/// What the per-key limit counts: the hash of the caller's API key or agent token (which
/// `Auth` has checked).
fn stream_key(headers: &HeaderMap) -> String {
    let value = headers
        .get(AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default();
    let secret = value
        .strip_prefix("Bearer ")
        .or_else(|| value.strip_prefix("bearer "))
        .unwrap_or(value);
    token::hash(secret.trim())
}

/// The response: `retry:` first, then one SSE event per outbox event, with keep-alive
/// comments. The body ends when the follower stops (shutdown, slow reader).
fn sse(
    ctx: &AppState,
    events: mpsc::Receiver<StreamEvent>,
) -> Sse<impl Stream<Item = std::result::Result<Event, Infallible>> + use<>> {
    let limits = &ctx.settings.streams;
    let hello = Event::default()
        .comment("agenthub event stream")
        .retry(Duration::from_millis(limits.retry_ms));
    let events = stream::unfold(events, |mut events| async move {
        let event = events.recv().await?;
        Some((Ok(sse_event(&event)), events))
    });
    let body = stream::once(async move { Ok(hello) }).chain(events);
    Sse::new(body).keep_alive(
        KeepAlive::new()
            .interval(Duration::from_millis(limits.keep_alive_ms.max(1)))
            .text("keep-alive"),
    )
}

/// `id:` the seq, `event:` the type, `data:` the JSON of one item of `GET /v1/events`
/// (the stored payload is inserted as it is, never parsed).
fn sse_event(event: &StreamEvent) -> Event {
    let event_type = serde_json::to_string(&event.event_type).unwrap_or_default();
    let data = format!(
        r#"{{"seq":{},"type":{},"event":{},"created_at":"{}"}}"#,
        event.seq,
        event_type,
        event.payload,
        timestamp(event.created_at)
    );
    Event::default()
        .id(event.seq.to_string())
        .event(&event.event_type)
        .data(data)
}
