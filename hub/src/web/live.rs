//! The pages' live updates: the member's events and a task's feed as server-sent events,
//! through the same followers as `GET /v1/events/stream` and `GET /v1/tasks/{id}/stream`
//! but authenticated by the session cookie (a `GET` changes nothing, so no CSRF token).
//! Events carry no `event:` name, so that a page's `EventSource.onmessage` sees every
//! one; the data is the event type. The browser resumes after a lost connection with
//! `Last-Event-ID`.

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::{Stream, StreamExt, stream};
use tokio::sync::mpsc;

use crate::api::AppState;
use crate::events::stream::{self as event_stream, StreamEvent};
use crate::events::{self, feed};
use crate::web::{Page, PageResult};

/// `GET /live/me`: the signed-in member's events.
pub async fn mine(
    State(ctx): State<AppState>,
    page: Page,
    headers: HeaderMap,
) -> PageResult<Sse<impl Stream<Item = Result<Event, Infallible>> + use<>>> {
    let after = match resume_point(&headers) {
        Some(after) => after,
        None => events::last_seq(&ctx.store, page.actor().audience_id()).await?,
    };
    let events =
        event_stream::follow_audience(&ctx, page.actor(), &stream_key(&page), after).await?;
    Ok(sse(&ctx, events))
}

/// `GET /live/tasks/{id}`: one task's feed.
pub async fn task(
    State(ctx): State<AppState>,
    page: Page,
    Path(task_id): Path<String>,
    headers: HeaderMap,
) -> PageResult<Sse<impl Stream<Item = Result<Event, Infallible>> + use<>>> {
    let after = match resume_point(&headers) {
        Some(after) => after,
        None => events::last_seq(&ctx.store, &feed::audience_id(&task_id)).await?,
    };
    let events =
        event_stream::follow_task(&ctx, page.actor(), &task_id, &stream_key(&page), after).await?;
    Ok(sse(&ctx, events))
}

/// Streams count against the per-key limit per session.
fn stream_key(page: &Page) -> String {
    format!("web:{}", page.session.id)
}

/// After `Last-Event-ID` when the browser reconnects; `None` on a first connection,
/// which starts after the newest event (the page's script fetches the page once when
/// the stream opens, to catch up with what happened since it was rendered).
fn resume_point(headers: &HeaderMap) -> Option<u64> {
    headers
        .get("last-event-id")
        .and_then(|value| value.to_str().ok())
        .and_then(|text| text.trim().parse().ok())
}

fn sse(
    ctx: &AppState,
    events: mpsc::Receiver<StreamEvent>,
) -> Sse<impl Stream<Item = Result<Event, Infallible>> + use<>> {
    let limits = &ctx.settings.streams;
    let hello = Event::default()
        .comment("agenthub live")
        .retry(Duration::from_millis(limits.retry_ms));
    let events = stream::unfold(events, |mut events| async move {
        let event = events.recv().await?;
        let sse_event = Event::default()
            .id(event.seq.to_string())
            .data(&event.event_type);
        Some((Ok(sse_event), events))
    });
    let body = stream::once(async move { Ok(hello) }).chain(events);
    Sse::new(body).keep_alive(
        KeepAlive::new()
            .interval(Duration::from_millis(limits.keep_alive_ms.max(1)))
            .text("keep-alive"),
    )
}
