//! Webhooks: registering targets, pings, the delivery log and redeliveries (owners and
//! admins).

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Deserializer, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::api::AppState;
use crate::api::extract::{ApiJson, ApiQuery, Auth};
use crate::api::views::timestamp;
use crate::error::Result;
use crate::webhooks::{self, Attempt, DeliveryView, NewWebhook, Webhook, WebhookPatch};

#[derive(Debug, Serialize, ToSchema)]
pub struct WebhookResponse {
    pub id: String,
    pub url: String,
    /// The event types delivered; `["*"]`: every type.
    pub event_types: Vec<String>,
    /// Only the events of this task, when set.
    pub task_id: Option<String>,
    pub description: String,
    pub enabled: bool,
    /// Why the hub disabled the webhook (deliveries failed for too long).
    pub disabled_reason: Option<String>,
    /// The last `seq` of the workspace's feed handled (delivered, or not matching the
    /// filters); delivery goes on after it.
    pub cursor: i64,
    /// The member who created it.
    pub created_by: Option<String>,
    pub created_at: String,
    pub updated_at: String,
    /// The signing secret (`whsec_…`): only in the answer of a create or a rotation.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
}

impl WebhookResponse {
    fn new(row: Webhook, with_secret: bool) -> Self {
        let mut event_types = webhooks::event_types_of(&row);
        if event_types.is_empty() {
            event_types.push("*".into());
        }
        WebhookResponse {
            event_types,
            secret: with_secret.then_some(row.secret),
            id: row.id,
            url: row.url,
            task_id: row.task_id,
            description: row.description,
            enabled: row.enabled,
            disabled_reason: row.disabled_reason,
            cursor: row.cursor_seq,
            created_by: row.created_by,
            created_at: timestamp(row.created_at),
            updated_at: timestamp(row.updated_at),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct WebhookListMeta {
    pub count: usize,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct WebhookList {
    pub webhooks: Vec<WebhookResponse>,
    pub meta: WebhookListMeta,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateWebhookRequest {
    /// `https://…` (or `http://…`), at most 2048 bytes.
    pub url: String,
    /// Event types to deliver (`task.created`, `step.completed`, …); empty or `["*"]`
    /// (the default): every type.
    #[serde(default)]
    pub event_types: Vec<String>,
    /// Only the events of this task of the workspace.
    #[serde(default)]
    pub task_id: Option<String>,
    /// At most 500 bytes.
    #[serde(default)]
    pub description: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateWebhookRequest {
    #[serde(default)]
    pub url: Option<String>,
    #[serde(default)]
    pub event_types: Option<Vec<String>>,
    /// A task id, or `null` to deliver the events of every task.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    pub task_id: Option<Option<String>>,
    #[serde(default)]
    pub description: Option<String>,
    /// `true` enables a disabled webhook: delivery resumes after its cursor, with the
    /// event that failed.
    #[serde(default)]
    pub enabled: Option<bool>,
    /// `true`: a new secret, in the answer; the old one signs nothing more.
    #[serde(default)]
    pub rotate_secret: bool,
}

/// A field that is present (`null` included) is `Some`.
fn present<'de, D, T>(deserializer: D) -> std::result::Result<Option<Option<T>>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(deserializer).map(Some)
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AttemptResponse {
    pub attempted_at: String,
    /// The answer's status; `null` when there was none (timeout, connection refused).
    pub status_code: Option<i32>,
    pub latency_ms: i64,
    /// What went wrong; `null` on a 2xx.
    pub error: Option<String>,
    /// The first 1024 bytes of the answer's body.
    pub response_excerpt: Option<String>,
}

impl From<Attempt> for AttemptResponse {
    fn from(row: Attempt) -> Self {
        AttemptResponse {
            attempted_at: timestamp(row.attempted_at),
            status_code: row.status_code,
            latency_ms: row.latency_ms,
            error: row.error,
            response_excerpt: row.response_excerpt,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DeliveryResponse {
    /// Sent as `AgentHub-Delivery`, the same on every attempt: de-duplicate by it.
    pub id: String,
    pub webhook_id: String,
    /// `event` (the ordered stream), `ping` or `redeliver`.
    pub kind: String,
    /// The event's `seq` in the workspace's feed (0 for a ping).
    pub seq: i64,
    pub event_type: String,
    /// `pending` (waiting for a retry), `delivered` or `failed`.
    pub status: String,
    pub attempts: Vec<AttemptResponse>,
    pub next_attempt_at: Option<String>,
    pub delivered_at: Option<String>,
    /// For a redelivery: the delivery it repeats.
    pub redelivery_of: Option<String>,
    pub created_at: String,
    /// The body sent (an item of `GET /v1/events`).
    #[schema(value_type = Object)]
    pub payload: serde_json::Value,
}

impl From<DeliveryView> for DeliveryResponse {
    fn from(view: DeliveryView) -> Self {
        let row = view.delivery;
        DeliveryResponse {
            payload: serde_json::from_str(&row.payload).unwrap_or(serde_json::Value::Null),
            id: row.id,
            webhook_id: row.webhook_id,
            kind: row.kind,
            seq: row.seq,
            event_type: row.event_type,
            status: row.status,
            attempts: view.attempts.into_iter().map(Into::into).collect(),
            next_attempt_at: row.next_attempt_at.map(timestamp),
            delivered_at: row.delivered_at.map(timestamp),
            redelivery_of: row.redelivery_of,
            created_at: timestamp(row.created_at),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DeliveriesMeta {
    pub count: usize,
    pub has_more: bool,
    /// Pass as `before` for the next (older) page.
    pub next_before: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DeliveryList {
    pub deliveries: Vec<DeliveryResponse>,
    pub meta: DeliveriesMeta,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DeliveriesQuery {
    /// Deliveries older than this delivery id (the previous page's `next_before`).
    pub before: Option<String>,
    /// At most this many (1-100, default 20).
    pub limit: Option<u32>,
}

const FORBIDDEN: &str = "`forbidden`: the caller is not an owner or admin, is an agent token, or lacks the `admin` scope";

/// Registers a webhook; it receives the workspace's events committed from now on.
///
/// Owners and admins (with the `admin` scope). The answer holds the signing secret, shown
/// only here and on rotation. See "Webhooks" in docs/api.md.
#[utoipa::path(post, path = "/v1/webhooks", tag = "webhooks", request_body = CreateWebhookRequest,
    responses(
        (status = 201, description = "the webhook, with its secret", body = WebhookResponse),
        (status = 403, description = FORBIDDEN),
        (status = 409, description = "`conflict`: the workspace has the most webhooks it may have"),
        (status = 422, description = "`invalid`: the URL is not http(s), too long or a refused address; an unknown event type; a task not in the workspace; a description over 500 bytes"),
    ))]
pub async fn create_webhook(
    State(ctx): State<AppState>,
    Auth(actor): Auth,
    ApiJson(req): ApiJson<CreateWebhookRequest>,
) -> Result<(StatusCode, Json<WebhookResponse>)> {
    let new = NewWebhook {
        url: req.url,
        event_types: req.event_types,
        task_id: req.task_id,
        description: req.description,
    };
    let webhook = webhooks::create_webhook(&ctx, &actor, new).await?;
    Ok((
        StatusCode::CREATED,
        Json(WebhookResponse::new(webhook, true)),
    ))
}

/// The webhooks of the caller's workspace, oldest first (without secrets).
#[utoipa::path(get, path = "/v1/webhooks", tag = "webhooks",
    responses(
        (status = 200, description = "the webhooks", body = WebhookList),
        (status = 403, description = FORBIDDEN),
    ))]
pub async fn list_webhooks(
    State(ctx): State<AppState>,
    Auth(actor): Auth,
) -> Result<Json<WebhookList>> {
    let webhooks: Vec<WebhookResponse> = webhooks::list_webhooks(&ctx, &actor)
        .await?
        .into_iter()
        .map(|row| WebhookResponse::new(row, false))
        .collect();
    Ok(Json(WebhookList {
        meta: WebhookListMeta {
            count: webhooks.len(),
        },
        webhooks,
    }))
}

/// One webhook (without its secret).
#[utoipa::path(get, path = "/v1/webhooks/{id}", tag = "webhooks",
    params(("id" = String, Path, description = "The webhook's id.")),
    responses(
        (status = 200, description = "the webhook", body = WebhookResponse),
        (status = 403, description = FORBIDDEN),
        (status = 404, description = "`not_found`: no webhook with this id in the caller's workspace"),
    ))]
pub async fn get_webhook(
    State(ctx): State<AppState>,
    Auth(actor): Auth,
    Path(webhook_id): Path<String>,
) -> Result<Json<WebhookResponse>> {
    let webhook = webhooks::get_webhook(&ctx, &actor, &webhook_id).await?;
    Ok(Json(WebhookResponse::new(webhook, false)))
}

/// Changes a webhook: its URL, event types, task filter, description, whether it is
/// enabled (enabling resumes after its cursor), or its secret (`rotate_secret`).
#[utoipa::path(patch, path = "/v1/webhooks/{id}", tag = "webhooks",
    params(("id" = String, Path, description = "The webhook's id.")),
    request_body = UpdateWebhookRequest,
    responses(
        (status = 200, description = "the webhook (with the new secret when rotated)", body = WebhookResponse),
        (status = 403, description = FORBIDDEN),
        (status = 404, description = "`not_found`: no webhook with this id in the caller's workspace"),
        (status = 422, description = "`invalid`: as for creating a webhook"),
    ))]
pub async fn update_webhook(
    State(ctx): State<AppState>,
    Auth(actor): Auth,
    Path(webhook_id): Path<String>,
    ApiJson(req): ApiJson<UpdateWebhookRequest>,
) -> Result<Json<WebhookResponse>> {
    let patch = WebhookPatch {
        url: req.url,
        event_types: req.event_types,
        task_id: req.task_id,
        description: req.description,
        enabled: req.enabled,
        rotate_secret: req.rotate_secret,
    };
    let webhook = webhooks::update_webhook(&ctx, &actor, &webhook_id, patch).await?;
    Ok(Json(WebhookResponse::new(webhook, req.rotate_secret)))
}

/// Deletes a webhook and its delivery log.
#[utoipa::path(delete, path = "/v1/webhooks/{id}", tag = "webhooks",
    params(("id" = String, Path, description = "The webhook's id.")),
    responses(
        (status = 204, description = "deleted"),
        (status = 403, description = FORBIDDEN),
        (status = 404, description = "`not_found`: no webhook with this id in the caller's workspace"),
    ))]
pub async fn delete_webhook(
    State(ctx): State<AppState>,
    Auth(actor): Auth,
    Path(webhook_id): Path<String>,
) -> Result<StatusCode> {
    webhooks::delete_webhook(&ctx, &actor, &webhook_id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Sends a signed `ping` event to the webhook now (enabled or not) and answers with the
/// delivery and its one attempt, failed or not. Not retried.
#[utoipa::path(post, path = "/v1/webhooks/{id}/ping", tag = "webhooks",
    params(("id" = String, Path, description = "The webhook's id.")),
    responses(
        (status = 200, description = "the ping's delivery with its attempt (`status` says whether it arrived)", body = DeliveryResponse),
        (status = 403, description = FORBIDDEN),
        (status = 404, description = "`not_found`: no webhook with this id in the caller's workspace"),
    ))]
pub async fn ping_webhook(
    State(ctx): State<AppState>,
    Auth(actor): Auth,
    Path(webhook_id): Path<String>,
) -> Result<Json<DeliveryResponse>> {
    let delivery = webhooks::ping(&ctx, &actor, &webhook_id).await?;
    Ok(Json(delivery.into()))
}

/// A webhook's deliveries, newest first, each with every attempt.
#[utoipa::path(get, path = "/v1/webhooks/{id}/deliveries", tag = "webhooks",
    params(("id" = String, Path, description = "The webhook's id."), DeliveriesQuery),
    responses(
        (status = 200, description = "a page of deliveries", body = DeliveryList),
        (status = 403, description = FORBIDDEN),
        (status = 404, description = "`not_found`: no webhook with this id in the caller's workspace"),
    ))]
pub async fn list_deliveries(
    State(ctx): State<AppState>,
    Auth(actor): Auth,
    Path(webhook_id): Path<String>,
    ApiQuery(query): ApiQuery<DeliveriesQuery>,
) -> Result<Json<DeliveryList>> {
    let limit = query.limit.unwrap_or(20).clamp(1, 100);
    let page = webhooks::list_deliveries(&ctx, &actor, &webhook_id, query.before.as_deref(), limit)
        .await?;
    let deliveries: Vec<DeliveryResponse> = page.deliveries.into_iter().map(Into::into).collect();
    Ok(Json(DeliveryList {
        meta: DeliveriesMeta {
            count: deliveries.len(),
            has_more: page.has_more,
            next_before: deliveries.last().map(|delivery| delivery.id.clone()),
        },
        deliveries,
    }))
}

/// Sends a delivery's body again now, as a new delivery (`kind: redeliver`, a new id),
/// outside the ordered stream; answers with it and its one attempt. Not retried.
#[utoipa::path(post, path = "/v1/deliveries/{id}/redeliver", tag = "webhooks",
    params(("id" = String, Path, description = "The delivery's id.")),
    responses(
        (status = 200, description = "the new delivery with its attempt", body = DeliveryResponse),
        (status = 403, description = FORBIDDEN),
        (status = 404, description = "`not_found`: no delivery with this id in the caller's workspace"),
    ))]
pub async fn redeliver(
    State(ctx): State<AppState>,
    Auth(actor): Auth,
    Path(delivery_id): Path<String>,
) -> Result<Json<DeliveryResponse>> {
    let delivery = webhooks::redeliver(&ctx, &actor, &delivery_id).await?;
    Ok(Json(delivery.into()))
}
