//! Webhooks in settings, for owners and admins: the list, a new webhook (its signing
//! secret shown once), enable / disable, delete, a ping, and each webhook's delivery log
//! with its attempts and a redelivery — the same domain calls (`webhooks::*`) and rules
//! as `/v1/webhooks`.

use askama::Template;
use axum::extract::{Path, State};

use crate::api::AppState;
use crate::error::Error;
use crate::web::home::in_page;
use crate::web::{Layout, Page, PageForm, PageResult, excerpt, render, see_other, when};
use crate::webhooks::{self, NewWebhook, Webhook, WebhookPatch};

/// Deliveries the log shows.
const LOG_PAGE: u32 = 50;
/// How much of an attempt's error or answer the log shows.
const ERROR_EXCERPT: usize = 300;

pub struct WebhookRow {
    pub id: String,
    pub url: String,
    pub description: String,
    pub events: String,
    pub enabled: bool,
    pub disabled_reason: String,
}

impl WebhookRow {
    pub fn of(webhook: &Webhook) -> WebhookRow {
        let events = webhooks::event_types_of(webhook);
        WebhookRow {
            id: webhook.id.clone(),
            url: webhook.url.clone(),
            description: webhook.description.clone(),
            events: if events.is_empty() {
                "all events".into()
            } else {
                events.join(", ")
            },
            enabled: webhook.enabled,
            disabled_reason: webhook.disabled_reason.clone().unwrap_or_default(),
        }
    }
}

/// The webhooks of the settings page (owners and admins only; empty for others).
pub async fn rows(ctx: &AppState, page: &Page) -> PageResult<Vec<WebhookRow>> {
    if !page.is_admin() {
        return Ok(Vec::new());
    }
    Ok(webhooks::list_webhooks(ctx, page.actor())
        .await?
        .iter()
        .map(WebhookRow::of)
        .collect())
}

pub struct AttemptRow {
    pub at: String,
    pub code: String,
    pub latency_ms: i64,
    pub error: String,
}

pub struct DeliveryRow {
    pub id: String,
    pub kind: String,
    pub event_type: String,
    pub seq: i64,
    pub status: String,
    pub created: String,
    pub attempts: Vec<AttemptRow>,
}

#[derive(Template)]
#[template(path = "webhook.html")]
struct WebhookPage {
    layout: Layout,
    webhook: WebhookRow,
    deliveries: Vec<DeliveryRow>,
    has_more: bool,
}

/// `GET /settings/webhooks/{id}`: a webhook and its latest deliveries with their attempts.
pub async fn show(
    State(ctx): State<AppState>,
    Path(webhook_id): Path<String>,
    page: Page,
) -> PageResult {
    let webhook = webhooks::get_webhook(&ctx, page.actor(), &webhook_id)
        .await
        .map_err(in_page(&page))?;
    let log = webhooks::list_deliveries(&ctx, page.actor(), &webhook_id, None, LOG_PAGE)
        .await
        .map_err(in_page(&page))?;
    let deliveries = log
        .deliveries
        .into_iter()
        .map(|view| DeliveryRow {
            attempts: view
                .attempts
                .iter()
                .map(|attempt| AttemptRow {
                    at: when(attempt.attempted_at),
                    code: attempt
                        .status_code
                        .map(|code| code.to_string())
                        .unwrap_or_else(|| "–".into()),
                    latency_ms: attempt.latency_ms,
                    error: excerpt(
                        attempt
                            .error
                            .as_deref()
                            .or(attempt.response_excerpt.as_deref())
                            .unwrap_or_default(),
                        ERROR_EXCERPT,
                    ),
                })
                .collect(),
            id: view.delivery.id,
            kind: view.delivery.kind,
            event_type: view.delivery.event_type,
            seq: view.delivery.seq,
            status: view.delivery.status,
            created: when(view.delivery.created_at),
        })
        .collect();
    render(&WebhookPage {
        layout: Layout::new(&page, "Webhook", "settings").live(String::new()),
        webhook: WebhookRow::of(&webhook),
        deliveries,
        has_more: log.has_more,
    })
}

/// `POST /settings/webhooks` (fields `url`, `description`, `events`: event types
/// separated by commas or spaces, empty for all): creates a webhook and shows its
/// secret once.
pub async fn create(State(ctx): State<AppState>, form: PageForm) -> PageResult {
    let description = Some(form.field("description").to_string()).filter(|text| !text.is_empty());
    let new = NewWebhook {
        url: form.field("url").to_string(),
        event_types: form
            .field("events")
            .split([',', ' '])
            .map(str::trim)
            .filter(|kind| !kind.is_empty())
            .map(str::to_string)
            .collect(),
        task_id: None,
        description,
    };
    let created = webhooks::create_webhook(&ctx, form.page.actor(), new)
        .await
        .map_err(in_page(&form.page))?;
    super::settings::page_with_webhook_secret(&ctx, &form.page, created.secret).await
}

/// `POST /settings/webhooks/{id}/enabled` (field `enabled`: `yes` or `no`).
pub async fn set_enabled(
    State(ctx): State<AppState>,
    Path(webhook_id): Path<String>,
    form: PageForm,
) -> PageResult {
    let enabled = match form.field("enabled") {
        "yes" => true,
        "no" => false,
        _ => {
            return Err(in_page(&form.page)(Error::BadRequest {
                message: "say whether the webhook is enabled: `yes` or `no`".into(),
                field: Some("enabled".into()),
            }));
        }
    };
    let patch = WebhookPatch {
        enabled: Some(enabled),
        ..WebhookPatch::default()
    };
    webhooks::update_webhook(&ctx, form.page.actor(), &webhook_id, patch)
        .await
        .map_err(in_page(&form.page))?;
    Ok(see_other(super::home::back(&form)))
}

/// `POST /settings/webhooks/{id}/delete`: the webhook, its deliveries and attempts.
pub async fn delete(
    State(ctx): State<AppState>,
    Path(webhook_id): Path<String>,
    form: PageForm,
) -> PageResult {
    webhooks::delete_webhook(&ctx, form.page.actor(), &webhook_id)
        .await
        .map_err(in_page(&form.page))?;
    Ok(see_other("/settings#webhooks"))
}

/// `POST /settings/webhooks/{id}/ping`: sends a `ping` now; the log shows how it went.
pub async fn ping(
    State(ctx): State<AppState>,
    Path(webhook_id): Path<String>,
    form: PageForm,
) -> PageResult {
    webhooks::ping(&ctx, form.page.actor(), &webhook_id)
        .await
        .map_err(in_page(&form.page))?;
    Ok(see_other(&format!("/settings/webhooks/{webhook_id}")))
}

/// `POST /settings/deliveries/{id}/redeliver`: sends a delivery's body again now, as a
/// new delivery of the log.
pub async fn redeliver(
    State(ctx): State<AppState>,
    Path(delivery_id): Path<String>,
    form: PageForm,
) -> PageResult {
    let sent = webhooks::redeliver(&ctx, form.page.actor(), &delivery_id)
        .await
        .map_err(in_page(&form.page))?;
    Ok(see_other(&format!(
        "/settings/webhooks/{}",
        sent.delivery.webhook_id
    )))
}
