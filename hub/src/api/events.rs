//! The caller's events, paged by `seq`.

use axum::Json;
use axum::extract::State;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};

use crate::api::AppState;
use crate::api::extract::{ApiQuery, Auth};
use crate::api::views::timestamp;
use crate::error::Result;
use crate::events;

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct EventsQuery {
    /// Return events with a seq greater than this (default 0).
    pub after: Option<u64>,
    /// At most this many (1-1000, default 100).
    pub limit: Option<u32>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct EventResponse {
    /// Increases with every event of this audience.
    pub seq: i64,
    /// The frame type (`task.created`, `step.ready`, …).
    #[serde(rename = "type")]
    pub event_type: String,
    /// The event frame exactly as pushed over the agent protocol.
    #[schema(value_type = Object)]
    pub event: Value,
    pub created_at: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct EventsMeta {
    pub count: usize,
    /// Pass as `after` for the next page.
    pub next_after: u64,
    pub has_more: bool,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct EventList {
    pub events: Vec<EventResponse>,
    pub meta: EventsMeta,
}

/// The caller's events (an agent token: the agent's; an API key: the member's), oldest
/// first, paged by `seq`.
///
/// The same events are pushed to agents over their WebSocket; `event` is the frame as
/// docs/protocol.md describes it.
#[utoipa::path(get, path = "/v1/events", tag = "events", params(EventsQuery),
    responses((status = 200, description = "a page of events", body = EventList)))]
pub async fn list_events(
    State(ctx): State<AppState>,
    Auth(actor): Auth,
    ApiQuery(query): ApiQuery<EventsQuery>,
) -> Result<Json<EventList>> {
    let after = query.after.unwrap_or(0);
    let limit = query.limit.unwrap_or(100).clamp(1, 1000);
    // One more than asked tells whether another page exists.
    let mut rows = events::list_after(&ctx.store, actor.audience_id(), after, limit + 1).await?;
    let has_more = rows.len() > limit as usize;
    rows.truncate(limit as usize);
    let next_after = rows.last().map_or(after, |row| row.seq as u64);
    let events: Vec<EventResponse> = rows
        .into_iter()
        .map(|row| EventResponse {
            seq: row.seq,
            event: serde_json::from_str(&row.payload).unwrap_or(Value::Null),
            event_type: row.event_type,
            created_at: timestamp(row.created_at),
        })
        .collect();
    Ok(Json(EventList {
        meta: EventsMeta {
            count: events.len(),
            next_after,
            has_more,
        },
        events,
    }))
}
