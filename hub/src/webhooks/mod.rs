//! Signed webhooks: owners and admins register URLs that receive the workspace's events
//! as signed HTTP `POST`s.
//!
//! A webhook follows its workspace's feed (outbox audience `workspace:<id>`,
//! [`crate::events::feed::workspace_audience_id`]) with a cursor of its own in the
//! database: the last feed `seq` it handled. [`deliver`] runs one worker per hub that
//! delivers each webhook's events in `seq` order, one hub at a time per webhook, at least
//! once; a delivery row is written before its first attempt, so a hub killed mid-delivery
//! leaves it to be retried. Pings and redeliveries are tried once, at once, outside the
//! ordered stream. Every attempt is recorded ([`model::Attempt`]).
//!
//! The body of a delivery is an item of `GET /v1/events` (`seq` is the workspace feed's),
//! signed as `AgentHub-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`
//! ([`signature`]).

pub mod deliver;
pub mod guard;
pub mod model;

use hmac::{Hmac, KeyInit, Mac};
use rand::RngCore;
use sha2::Sha256;

use crate::accounts::{Actor, authority};
use crate::ctx::Ctx;
use crate::error::{Error, Result};
use crate::events::{self, feed};
use crate::notifications;
use crate::store::{new_id, now_ms};
pub use model::{Attempt, Delivery, Webhook};

/// The event types a webhook may ask for (the agent protocol's event frames).
pub const EVENT_TYPES: &[&str] = &[
    "task.created",
    "task.updated",
    "step.ready",
    "step.revoked",
    "step.completed",
    "workflow.changed",
    "approval.requested",
    "approval.resolved",
    "approval.timed_out",
    "input.requested",
    "input.answered",
    "input.timed_out",
    "availability.requested",
    "agent.online",
    "agent.offline",
];

/// The prefix of webhook signing secrets.
pub const SECRET_PREFIX: &str = "whsec_";
/// The event type of a ping.
pub const PING: &str = "ping";
/// The longest accepted URL, in bytes.
pub const MAX_URL_BYTES: usize = 2048;
/// The longest accepted description, in bytes.
pub const MAX_DESCRIPTION_BYTES: usize = 500;
/// The most event types one webhook names.
pub const MAX_EVENT_TYPES: usize = 32;
/// The most bytes of an answer's body kept with an attempt.
pub const MAX_EXCERPT_BYTES: usize = 1024;

/// Timings and limits of webhook delivery.
#[derive(Debug, Clone)]
pub struct WebhookSettings {
    /// Targets on loopback, private, link-local … addresses are allowed.
    pub allow_private: bool,
    /// The first retry waits up to this (full jitter); each further one up to twice the
    /// last, capped by `retry_cap_ms`.
    pub retry_base_ms: u64,
    pub retry_cap_ms: u64,
    /// A delivery failing for this long disables its webhook.
    pub max_age_ms: u64,
    /// How long a hub holds a webhook (renewed before each attempt).
    pub lease_ms: u64,
    /// The deadline of one attempt (connect, send, answer).
    pub timeout_ms: u64,
    /// How often the worker looks for work without a wake-up.
    pub poll_ms: u64,
    /// Webhooks per workspace.
    pub max_per_workspace: usize,
}

impl Default for WebhookSettings {
    fn default() -> Self {
        WebhookSettings {
            allow_private: false,
            retry_base_ms: 5_000,
            retry_cap_ms: 3_600_000,
            max_age_ms: 24 * 3_600_000,
            lease_ms: 30_000,
            timeout_ms: 10_000,
            poll_ms: 1_000,
            max_per_workspace: 20,
        }
    }
}

/// A webhook to create.
#[derive(Debug, Clone, Default)]
pub struct NewWebhook {
    pub url: String,
    /// Empty, or `*`: every type.
    pub event_types: Vec<String>,
    pub task_id: Option<String>,
    pub description: Option<String>,
}

/// What a PATCH changes; `None` leaves it.
#[derive(Debug, Clone, Default)]
pub struct WebhookPatch {
    pub url: Option<String>,
    pub event_types: Option<Vec<String>>,
    /// `Some(None)` removes the task filter.
    pub task_id: Option<Option<String>>,
    pub description: Option<String>,
    /// Enabling a disabled webhook resumes after its cursor.
    pub enabled: Option<bool>,
    /// A new secret (shown in the answer); the old one stops signing at once.
    pub rotate_secret: bool,
}

/// A delivery with its attempts, oldest first.
#[derive(Debug, Clone)]
pub struct DeliveryView {
    pub delivery: Delivery,
    pub attempts: Vec<Attempt>,
}

/// A page of deliveries, newest first.
#[derive(Debug, Clone)]
pub struct DeliveryPage {
    pub deliveries: Vec<DeliveryView>,
    pub has_more: bool,
}

/// Registers a webhook in the caller's workspace; it receives the events committed from
/// now on. The returned row holds the secret, which only this answer shows.
pub async fn create_webhook(ctx: &Ctx, actor: &Actor, new: NewWebhook) -> Result<Webhook> {
    authority::may_manage_webhooks(actor)?;
    let url = check_url(ctx, &new.url)?;
    let event_types = check_event_types(&new.event_types)?;
    let description = new.description.unwrap_or_default();
    check_description(&description)?;
    let workspace_id = actor.workspace_id().to_string();
    let max = ctx.settings.webhooks.max_per_workspace;
    let member_id = match actor {
        Actor::Member(member) => Some(member.member_id.clone()),
        Actor::Agent(_) => None,
    };
    ctx.store
        .transaction(async |db| {
            if let Some(task_id) = &new.task_id {
                check_task(db, &workspace_id, task_id).await?;
            }
            let n_webhooks = model::count_webhooks(db, &workspace_id).await?;
            if n_webhooks >= max as i64 {
                return Err(Error::conflict(format!(
                    "this workspace has {n_webhooks} webhooks, the most it may have; delete \
                     one first"
                )));
            }
            let feed_id = feed::workspace_audience_id(&workspace_id);
            let cursor_seq = events::model::last_seq(db, &feed_id).await?;
            let now = now_ms();
            let row = Webhook {
                id: new_id(),
                workspace_id: workspace_id.clone(),
                url,
                secret: new_secret(),
                event_types,
                task_id: new.task_id.clone(),
                description,
                enabled: true,
                disabled_reason: None,
                cursor_seq,
                lease_owner: None,
                lease_until: None,
                created_by: member_id,
                created_at: now,
                updated_at: now,
                a2a_token: None,
            };
            model::insert_webhook(db, &row).await?;
            Ok(row)
        })
        .await
}

/// The webhooks of the caller's workspace, oldest first.
pub async fn list_webhooks(ctx: &Ctx, actor: &Actor) -> Result<Vec<Webhook>> {
    authority::may_manage_webhooks(actor)?;
    let workspace_id = actor.workspace_id();
    ctx.store
        .read(async |db| Ok(model::list_webhooks(db, workspace_id).await?))
        .await
}

pub async fn get_webhook(ctx: &Ctx, actor: &Actor, webhook_id: &str) -> Result<Webhook> {
    authority::may_manage_webhooks(actor)?;
    let workspace_id = actor.workspace_id();
    ctx.store
        .read(async |db| find(db, workspace_id, webhook_id).await)
        .await
}

/// Changes a webhook. Returns the row (with the new secret when rotated).
pub async fn update_webhook(
    ctx: &Ctx,
    actor: &Actor,
    webhook_id: &str,
    patch: WebhookPatch,
) -> Result<Webhook> {
    authority::may_manage_webhooks(actor)?;
    let mut changes = model::WebhookChanges {
        url: patch
            .url
            .as_deref()
            .map(|url| check_url(ctx, url))
            .transpose()?,
        event_types: patch
            .event_types
            .as_deref()
            .map(check_event_types)
            .transpose()?,
        description: patch.description.clone(),
        enabled: patch.enabled,
        secret: patch.rotate_secret.then(new_secret),
        ..model::WebhookChanges::default()
    };
    if let Some(description) = &changes.description {
        check_description(description)?;
    }
    if patch.enabled == Some(true) {
        changes.disabled_reason = Some(None);
    }
    let workspace_id = actor.workspace_id().to_string();
    ctx.store
        .transaction(async |db| {
            find(db, &workspace_id, webhook_id).await?;
            if let Some(task_id) = &patch.task_id {
                if let Some(task_id) = task_id {
                    check_task(db, &workspace_id, task_id).await?;
                }
                changes.task_id = Some(task_id.clone());
            }
            changes.updated_at = Some(now_ms());
            model::update_webhook(db, webhook_id, &changes).await?;
            if patch.enabled == Some(true) {
                // Nothing waits on the owner any more once it runs again.
                notifications::resolve_subject(db, webhook_id).await?;
            }
            find(db, &workspace_id, webhook_id).await
        })
        .await
}

/// Deletes a webhook with its deliveries and their attempts.
pub async fn delete_webhook(ctx: &Ctx, actor: &Actor, webhook_id: &str) -> Result<()> {
    authority::may_manage_webhooks(actor)?;
    let workspace_id = actor.workspace_id().to_string();
    ctx.store
        .transaction(async |db| {
            find(db, &workspace_id, webhook_id).await?;
            model::delete_webhook(db, webhook_id).await?;
            notifications::resolve_subject(db, webhook_id).await?;
            Ok(())
        })
        .await
}

/// Sends a `ping` to the webhook now (enabled or not) and answers with the delivery and
/// its one attempt. Outside the ordered stream; not retried.
pub async fn ping(ctx: &Ctx, actor: &Actor, webhook_id: &str) -> Result<DeliveryView> {
    let webhook = get_webhook(ctx, actor, webhook_id).await?;
    let now = now_ms();
    let event = serde_json::json!({
        "type": PING,
        "webhook_id": webhook.id,
        "workspace_id": webhook.workspace_id,
    });
    let delivery = Delivery {
        id: new_id(),
        webhook_id: webhook.id.clone(),
        kind: "ping".into(),
        seq: 0,
        event_type: PING.into(),
        payload: body(0, PING, &event.to_string(), now),
        status: "pending".into(),
        attempts: 0,
        next_attempt_at: Some(now),
        first_attempt_at: None,
        last_attempt_at: None,
        delivered_at: None,
        redelivery_of: None,
        created_at: now,
    };
    deliver::deliver_once(ctx, &webhook, delivery).await
}

/// Sends a delivery's body again, now, as a new delivery (`kind: redeliver`, a new
/// delivery id) outside the ordered stream; answers with it and its one attempt.
pub async fn redeliver(ctx: &Ctx, actor: &Actor, delivery_id: &str) -> Result<DeliveryView> {
    authority::may_manage_webhooks(actor)?;
    let workspace_id = actor.workspace_id().to_string();
    let (webhook, original) = ctx
        .store
        .read(async |db| {
            let not_found = || Error::not_found(format!("delivery `{delivery_id}`"));
            let delivery = model::find_delivery(db, delivery_id)
                .await?
                .ok_or_else(not_found)?;
            let webhook = model::find_webhook(db, &workspace_id, &delivery.webhook_id)
                .await?
                .ok_or_else(not_found)?;
            Ok::<_, Error>((webhook, delivery))
        })
        .await?;
    let now = now_ms();
    let delivery = Delivery {
        id: new_id(),
        webhook_id: webhook.id.clone(),
        kind: "redeliver".into(),
        seq: original.seq,
        event_type: original.event_type.clone(),
        payload: original.payload.clone(),
        status: "pending".into(),
        attempts: 0,
        next_attempt_at: Some(now),
        first_attempt_at: None,
        last_attempt_at: None,
        delivered_at: None,
        redelivery_of: Some(original.id.clone()),
        created_at: now,
    };
    deliver::deliver_once(ctx, &webhook, delivery).await
}

/// A page of a webhook's deliveries, newest first, each with its attempts; `before` is
/// the id of the last delivery of the previous page.
pub async fn list_deliveries(
    ctx: &Ctx,
    actor: &Actor,
    webhook_id: &str,
    before: Option<&str>,
    limit: u32,
) -> Result<DeliveryPage> {
    authority::may_manage_webhooks(actor)?;
    let workspace_id = actor.workspace_id();
    ctx.store
        .read(async |db| {
            find(db, workspace_id, webhook_id).await?;
            let mut deliveries =
                model::list_deliveries(db, webhook_id, before, i64::from(limit) + 1).await?;
            let has_more = deliveries.len() > limit as usize;
            deliveries.truncate(limit as usize);
            let ids: Vec<String> = deliveries.iter().map(|row| row.id.clone()).collect();
            let mut attempts = if ids.is_empty() {
                Vec::new()
            } else {
                model::attempts_of(db, &ids).await?
            };
            let deliveries = deliveries
                .into_iter()
                .map(|delivery| {
                    let (own, rest) = attempts
                        .drain(..)
                        .partition(|attempt: &Attempt| attempt.delivery_id == delivery.id);
                    attempts = rest;
                    DeliveryView {
                        delivery,
                        attempts: own,
                    }
                })
                .collect();
            Ok(DeliveryPage {
                deliveries,
                has_more,
            })
        })
        .await
}

/// The event types a webhook receives (empty: all).
pub fn event_types_of(webhook: &Webhook) -> Vec<String> {
    serde_json::from_str(&webhook.event_types).unwrap_or_default()
}

/// The `AgentHub-Signature` value of `body` sent at `timestamp` (unix seconds):
/// `t=<timestamp>,v1=<hex HMAC-SHA256(secret, "<timestamp>.<body>")>`.
pub fn signature(secret: &str, timestamp: i64, body: &str) -> String {
    let mut mac =
        Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key size");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body.as_bytes());
    format!(
        "t={timestamp},v1={}",
        hex::encode(mac.finalize().into_bytes())
    )
}

/// The body of a delivery: the JSON of an item of `GET /v1/events` (the stored event is
/// inserted as it is).
pub fn body(seq: i64, event_type: &str, event: &str, created_at: i64) -> String {
    let event_type = serde_json::to_string(event_type).unwrap_or_default();
    format!(
        r#"{{"seq":{seq},"type":{event_type},"event":{event},"created_at":"{}"}}"#,
        feed::rfc3339(created_at)
    )
}

/// Tells the webhook's creator (or, when they left the workspace, its owners) in their
/// notification inbox that it was disabled and why; in the transaction that disabled it.
pub(crate) async fn notify_disabled(
    db: &mut crate::store::Db<'_>,
    webhook: &Webhook,
    reason: &str,
) -> Result<()> {
    let members = crate::accounts::model::list_members(db, &webhook.workspace_id).await?;
    let creator = webhook
        .created_by
        .as_deref()
        .filter(|id| members.iter().any(|member| member.id == *id));
    let recipients: Vec<&str> = match creator {
        Some(id) => vec![id],
        None => members
            .iter()
            .filter(|member| member.role == "owner")
            .map(|member| member.id.as_str())
            .collect(),
    };
    for member_id in recipients {
        notifications::notify(
            db,
            &webhook.workspace_id,
            member_id,
            notifications::Notification {
                kind: notifications::WEBHOOK_DISABLED.into(),
                priority: notifications::Priority::Action,
                task_id: None,
                step_id: None,
                subject_id: Some(webhook.id.clone()),
                title: format!("Webhook to {} was disabled", webhook.url),
                body: reason.to_string(),
                data: serde_json::json!({"webhook_id": webhook.id, "url": webhook.url, "reason": reason}),
            },
        )
        .await?;
    }
    Ok(())
}

async fn find(
    db: &mut crate::store::Db<'_>,
    workspace_id: &str,
    webhook_id: &str,
) -> Result<Webhook> {
    model::find_webhook(db, workspace_id, webhook_id)
        .await?
        .ok_or_else(|| Error::not_found(format!("webhook `{webhook_id}`")))
}

async fn check_task(
    db: &mut crate::store::Db<'_>,
    workspace_id: &str,
    task_id: &str,
) -> Result<()> {
    if events::model::task_exists(db, workspace_id, task_id).await? {
        return Ok(());
    }
    Err(Error::invalid_field(
        "task_id",
        format!("no task `{task_id}` in this workspace"),
    ))
}

/// A target URL: `http` or `https`, with a host, at most [`MAX_URL_BYTES`]; an address
/// the SSRF guard refuses is refused here already (names are checked on every attempt).
fn check_url(ctx: &Ctx, url: &str) -> Result<String> {
    check_target(url, ctx.settings.webhooks.allow_private)
}

/// [`check_url`] for callers with the operator's `allow_private` at hand (A2A push
/// notification configs are webhooks too).
pub fn check_target(url: &str, allow_private: bool) -> Result<String> {
    let url = url.trim();
    if url.is_empty() || url.len() > MAX_URL_BYTES {
        return Err(Error::invalid_field(
            "url",
            format!("a webhook URL is 1-{MAX_URL_BYTES} bytes"),
        ));
    }
    let parsed = reqwest::Url::parse(url)
        .map_err(|err| Error::invalid_field("url", format!("`{url}` is not a URL: {err}")))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(Error::invalid_field(
            "url",
            format!(
                "a webhook URL is http:// or https://, not {}://",
                parsed.scheme()
            ),
        ));
    }
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err(Error::invalid_field("url", "a webhook URL needs a host"));
    }
    guard::check_url(&parsed, allow_private)
        .map_err(|message| Error::invalid_field("url", message))?;
    Ok(parsed.to_string())
}

/// The stored form of an event type filter: a JSON array, empty for every type.
fn check_event_types(types: &[String]) -> Result<String> {
    if types.len() > MAX_EVENT_TYPES {
        return Err(Error::invalid_field(
            "event_types",
            format!("a webhook names at most {MAX_EVENT_TYPES} event types"),
        ));
    }
    let mut names: Vec<&str> = Vec::new();
    for (idx, name) in types.iter().enumerate() {
        if name == "*" {
            return Ok("[]".into());
        }
        if !EVENT_TYPES.contains(&name.as_str()) {
            return Err(Error::invalid_field(
                format!("event_types[{idx}]"),
                format!(
                    "unknown event type `{name}`; use `*` or some of: {}",
                    EVENT_TYPES.join(", ")
                ),
            ));
        }
        if !names.contains(&name.as_str()) {
            names.push(name);
        }
    }
    Ok(serde_json::to_string(&names)?)
}

fn check_description(description: &str) -> Result<()> {
    crate::content::person_text("description", description, MAX_DESCRIPTION_BYTES)
}

fn new_secret() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    format!("{SECRET_PREFIX}{}", hex::encode(bytes))
}
