//! The caller's notification inbox: list, read, unread.

use axum::Json;
use axum::extract::{Path, State};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};

use crate::api::AppState;
use crate::api::extract::{ApiQuery, Auth, OptionalApiJson};
use crate::api::views::timestamp;
use crate::error::Result;
use crate::notifications::{self, Counts, ListQuery, Priority, ReadAll, model::NotificationRow};

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct NotificationsQuery {
    /// Only notifications neither read nor resolved (default false).
    pub unread: Option<bool>,
    /// `action` or `info` (default both).
    pub priority: Option<String>,
    /// The cursor: only notifications older than this id (`meta.next_before`).
    pub before: Option<String>,
    /// At most this many (1-200, default 50).
    pub limit: Option<u32>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct NotificationResponse {
    pub id: String,
    /// `approval.requested`, `input.requested`, `availability.requested`,
    /// `task.completed`, `task.failed`, `task.cancelled`, `agent.offline`,
    /// `webhook.disabled`, `plan.proposed`, `workflow.proposed`, `step.unfit`, or another
    /// kind the hub adds (clients show unknown kinds by title and body).
    pub kind: String,
    /// `action`: waits on the caller until they act or it stops waiting; `info`.
    pub priority: String,
    pub title: String,
    pub body: String,
    pub task_id: Option<String>,
    pub step_id: Option<String>,
    /// The approval, input request, availability request or agent it is about.
    pub subject_id: Option<String>,
    /// What a client needs to act: `attempt` and `digest` of an approval, `question` and
    /// `options` of a question, the agent and its held steps of `agent.offline`, ….
    #[schema(value_type = Object)]
    pub data: Value,
    /// The `seq` of the caller's event it was made from (`GET /v1/events`), if any. On
    /// PostgreSQL a member's events are numbered just after their change commits: an item
    /// read in between shows `null`.
    pub event_seq: Option<i64>,
    pub created_at: String,
    pub read_at: Option<String>,
    /// When an action item stopped waiting (decided, answered, timed out, the step moved
    /// on or its task ended).
    pub resolved_at: Option<String>,
    /// Neither read nor resolved.
    pub unread: bool,
}

impl From<NotificationRow> for NotificationResponse {
    fn from(row: NotificationRow) -> Self {
        NotificationResponse {
            unread: row.read_at.is_none() && row.resolved_at.is_none(),
            id: row.id,
            kind: row.kind,
            priority: row.priority,
            title: row.title,
            body: row.body,
            task_id: row.task_id,
            step_id: row.step_id,
            subject_id: row.subject_id,
            data: serde_json::from_str(&row.data).unwrap_or(Value::Null),
            // A placeholder (negative) is not a seq yet (`events::staged`).
            event_seq: row.event_seq.filter(|seq| *seq > 0),
            created_at: timestamp(row.created_at),
            read_at: row.read_at.map(timestamp),
            resolved_at: row.resolved_at.map(timestamp),
        }
    }
}

/// Unread notifications (neither read nor resolved) per priority.
#[derive(Debug, Serialize, ToSchema)]
pub struct UnreadCounts {
    pub action: u64,
    pub info: u64,
}

impl From<Counts> for UnreadCounts {
    fn from(counts: Counts) -> Self {
        UnreadCounts {
            action: counts.action,
            info: counts.info,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct NotificationsMeta {
    pub count: usize,
    /// Pass as `before` for the next (older) page; null on the last page.
    pub next_before: Option<String>,
    pub has_more: bool,
    /// Over all of the caller's notifications, whatever the filters.
    pub unread: UnreadCounts,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct NotificationList {
    pub notifications: Vec<NotificationResponse>,
    pub meta: NotificationsMeta,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct NotificationEnvelope {
    pub notification: NotificationResponse,
    /// The caller's unread counts after the change.
    pub unread: UnreadCounts,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReadAllRequest {
    /// Only this notification and older ones (e.g. the newest one shown); default all.
    pub up_to: Option<String>,
    /// `action` or `info`; default both.
    pub priority: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ReadAllResponse {
    /// How many notifications were marked read.
    pub marked: u64,
    /// The caller's unread counts after the change.
    pub unread: UnreadCounts,
}

/// The caller's notifications (an agent token: its member's), newest first: what waits
/// on them (`action`) and what they should know (`info`), with the unread counts.
///
/// This is the inbox to use; `GET /v1/me/inbox` stays for older clients.
#[utoipa::path(get, path = "/v1/me/notifications", tag = "me", params(NotificationsQuery),
    responses(
        (status = 200, description = "a page of notifications, newest first", body = NotificationList),
        (status = 400, description = "`bad_request`: `priority` is not `action` or `info`, or `before` is not a notification id"),
    ))]
pub async fn list_notifications(
    State(ctx): State<AppState>,
    Auth(actor): Auth,
    ApiQuery(query): ApiQuery<NotificationsQuery>,
) -> Result<Json<NotificationList>> {
    let query = ListQuery {
        unread: query.unread.unwrap_or(false),
        priority: query.priority.as_deref().map(str::parse).transpose()?,
        before: query.before,
        limit: query.limit.unwrap_or(50),
    };
    let page = notifications::list(&ctx, &actor, &query).await?;
    let next_before = page
        .has_more
        .then(|| page.notifications.last().map(|row| row.id.clone()))
        .flatten();
    let notifications: Vec<NotificationResponse> =
        page.notifications.into_iter().map(Into::into).collect();
    Ok(Json(NotificationList {
        meta: NotificationsMeta {
            count: notifications.len(),
            next_before,
            has_more: page.has_more,
            unread: page.counts.into(),
        },
        notifications,
    }))
}

/// Marks one of the caller's notifications read (reading it again keeps the first time).
#[utoipa::path(post, path = "/v1/me/notifications/{id}/read", tag = "me",
    params(("id" = String, Path, description = "The notification's id.")),
    responses(
        (status = 200, description = "the notification, read", body = NotificationEnvelope),
        (status = 404, description = "`not_found`: the caller has no notification with this id (another member's included)"),
    ))]
pub async fn read_notification(
    State(ctx): State<AppState>,
    Auth(actor): Auth,
    Path(id): Path<String>,
) -> Result<Json<NotificationEnvelope>> {
    let (row, counts) = notifications::set_read(&ctx, &actor, &id, true).await?;
    Ok(Json(NotificationEnvelope {
        notification: row.into(),
        unread: counts.into(),
    }))
}

/// Marks one of the caller's notifications unread again.
#[utoipa::path(post, path = "/v1/me/notifications/{id}/unread", tag = "me",
    params(("id" = String, Path, description = "The notification's id.")),
    responses(
        (status = 200, description = "the notification, unread (unless resolved)", body = NotificationEnvelope),
        (status = 404, description = "`not_found`: the caller has no notification with this id (another member's included)"),
    ))]
pub async fn unread_notification(
    State(ctx): State<AppState>,
    Auth(actor): Auth,
    Path(id): Path<String>,
) -> Result<Json<NotificationEnvelope>> {
    let (row, counts) = notifications::set_read(&ctx, &actor, &id, false).await?;
    Ok(Json(NotificationEnvelope {
        notification: row.into(),
        unread: counts.into(),
    }))
}

/// Marks the caller's notifications read: all of them, or (body) those up to an id
/// and/or of one priority.
#[utoipa::path(post, path = "/v1/me/notifications/read", tag = "me",
    request_body(content = ReadAllRequest, description = "optional; no body marks all"),
    responses(
        (status = 200, description = "how many were marked, and the unread counts", body = ReadAllResponse),
        (status = 400, description = "`bad_request`: `priority` is not `action` or `info`, or `up_to` is not a notification id"),
    ))]
pub async fn read_all_notifications(
    State(ctx): State<AppState>,
    Auth(actor): Auth,
    OptionalApiJson(req): OptionalApiJson<ReadAllRequest>,
) -> Result<Json<ReadAllResponse>> {
    let req = req.unwrap_or(ReadAllRequest {
        up_to: None,
        priority: None,
    });
    let read_all = ReadAll {
        up_to: req.up_to,
        priority: req
            .priority
            .as_deref()
            .map(str::parse::<Priority>)
            .transpose()?,
    };
    let (marked, counts) = notifications::mark_all_read(&ctx, &actor, &read_all).await?;
    Ok(Json(ReadAllResponse {
        marked,
        unread: counts.into(),
    }))
}
