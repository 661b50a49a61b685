//! The delivery worker: one per hub process, woken by the bus on every notice of a
//! workspace feed and by a timer ([`WebhookSettings::poll_ms`]).
//!
//! **One hub at a time per webhook.** A hub works on a webhook only while it holds the
//! webhook's lease (`lease_owner`, `lease_until`), taken and renewed by one conditional
//! `UPDATE … WHERE lease_owner IS NULL OR lease_until < now OR lease_owner = me`. This
//! stands for PostgreSQL's `FOR UPDATE SKIP LOCKED` and works the same on SQLite: a hub
//! that loses the race skips the webhook, and a hub that dies leaves a lease that expires
//! after [`WebhookSettings::lease_ms`]. The lease is renewed before every attempt (an
//! attempt takes at most [`WebhookSettings::timeout_ms`], well under the lease), and
//! every change of the cursor is conditional on still holding it.
//!
//! **In order, at least once.** Per webhook, the events of the feed after its cursor are
//! taken in `seq` order: one the filters do not match moves the cursor on; a matching one
//! gets a delivery row (committed before the first attempt) which is attempted until it
//! succeeds, the cursor moving on only then, while the webhook's later events wait. A hub
//! killed mid-attempt leaves the row pending and the cursor before it: the next holder of
//! the lease sends it again (the same delivery id). Retries wait
//! `rand(0, min(cap, base · 2^(n-1)))` after the n-th failure (full jitter); a delivery
//! failing for [`WebhookSettings::max_age_ms`] is marked failed and the webhook disabled,
//! its cursor left before that event, so enabling it again resumes there.

use std::time::Instant;

use rand::Rng;
use tokio_util::sync::CancellationToken;

use crate::ctx::Ctx;
use crate::error::{Error, Result};
use crate::events::{self, EventRow, feed};
use crate::store::{new_id, now_ms};
use crate::webhooks::{
    self, Attempt, Delivery, DeliveryView, MAX_EXCERPT_BYTES, Webhook, WebhookSettings, guard,
    model,
};
use crate::worker::{self, LeasedWork};

/// Webhooks one hub works on at once.
const MAX_CONCURRENT: usize = 32;
/// Events of a feed read per query.
const PAGE: u32 = 100;

/// The HTTP client of webhook deliveries: the SSRF guard's client
/// ([`guard::GuardedClient`]) with the attempt deadline.
#[derive(Debug, Default)]
pub struct Sender {
    client: guard::GuardedClient,
}

impl Sender {
    fn client(&self, settings: &WebhookSettings) -> std::result::Result<&reqwest::Client, String> {
        self.client.get(guard::ClientSpec {
            allow_private: settings.allow_private,
            option: guard::WEBHOOK_OPTION,
            timeout_ms: settings.timeout_ms,
            user_agent: concat!("AgentHub-Webhooks/", env!("CARGO_PKG_VERSION")),
            what: "webhook",
        })
    }
}

/// What one attempt found.
#[derive(Debug, Clone)]
struct Outcome {
    status_code: Option<u16>,
    latency_ms: i64,
    error: Option<String>,
    excerpt: Option<String>,
}

impl Outcome {
    fn succeeded(&self) -> bool {
        self.error.is_none()
            && self
                .status_code
                .is_some_and(|code| (200..300).contains(&code))
    }
}

/// Runs the delivery worker of this hub until `shutdown`: then it stops, gives up its
/// leases (an attempt under way is dropped and retried by the next holder) and returns.
pub async fn run_worker(ctx: Ctx, shutdown: CancellationToken) {
    worker::run_leased(ctx, Deliveries, shutdown).await;
}

/// The delivery worker's work: webhooks with events to send, each sent by a [`Worker`].
struct Deliveries;

impl LeasedWork for Deliveries {
    type Item = String;
    type Key = String;
    const WHAT: &'static str = "webhook deliveries";
    const MAX_CONCURRENT: usize = MAX_CONCURRENT;

    fn poll_ms(ctx: &Ctx) -> u64 {
        ctx.settings.webhooks.poll_ms
    }

    fn key(webhook_id: &String) -> String {
        webhook_id.clone()
    }

    async fn candidates(&self, ctx: &Ctx, owner: &str) -> Result<Vec<String>> {
        candidates(ctx, owner).await
    }

    fn run(
        &self,
        ctx: Ctx,
        owner: String,
        webhook_id: String,
        shutdown: CancellationToken,
    ) -> impl Future<Output = ()> + Send + 'static {
        let worker = Worker {
            ctx,
            owner,
            webhook_id,
        };
        worker.run(shutdown)
    }
}

/// The enabled webhooks this hub may take whose feed has events after their cursor.
async fn candidates(ctx: &Ctx, owner: &str) -> Result<Vec<String>> {
    ctx.store
        .read(async |db| {
            let webhooks = model::claimable_webhooks(db, owner, now_ms()).await?;
            if webhooks.is_empty() {
                return Ok(Vec::new());
            }
            let mut feeds: Vec<String> = webhooks
                .iter()
                .map(|(_, workspace_id, _)| feed::workspace_audience_id(workspace_id))
                .collect();
            feeds.sort();
            feeds.dedup();
            let last_seqs = model::last_seqs(db, &feeds).await?;
            Ok::<_, Error>(
                webhooks
                    .into_iter()
                    .filter(|(_, workspace_id, cursor_seq)| {
                        let feed_id = feed::workspace_audience_id(workspace_id);
                        last_seqs
                            .iter()
                            .any(|(id, last)| *id == feed_id && last > cursor_seq)
                    })
                    .map(|(id, _, _)| id)
                    .collect(),
            )
        })
        .await
}

/// One webhook, worked on while this hub holds its lease.
struct Worker {
    ctx: Ctx,
    owner: String,
    webhook_id: String,
}

/// Why a pass over a webhook stopped.
enum Pause {
    /// Nothing more to send now (caught up, or the head waits for its retry).
    Idle,
    /// Another hub holds the lease, or the webhook is disabled or gone.
    NotOurs,
}

impl Worker {
    async fn run(self, shutdown: CancellationToken) {
        let res = tokio::select! {
            () = shutdown.cancelled() => Ok(Pause::Idle),
            res = self.work() => res,
        };
        if let Err(err) = res {
            tracing::warn!(webhook.id = %self.webhook_id, error = %err, "webhook delivery failed; retrying");
        }
        let released = self
            .ctx
            .store
            .transaction(async |db| {
                model::release_lease(db, &self.webhook_id, &self.owner).await?;
                Ok::<_, Error>(())
            })
            .await;
        if let Err(err) = released {
            tracing::debug!(webhook.id = %self.webhook_id, error = %err, "cannot release a webhook lease; it expires");
        }
    }

    /// Sends the webhook's events after its cursor, in order, until it is caught up or
    /// its head waits for a retry.
    async fn work(&self) -> Result<Pause> {
        let settings = &self.ctx.settings.webhooks;
        loop {
            let now = now_ms();
            let until = now.saturating_add(settings.lease_ms as i64);
            let webhook_id = &self.webhook_id;
            let owner = &self.owner;
            let held = self
                .ctx
                .store
                .transaction(async |db| {
                    if !model::take_lease(db, webhook_id, owner, now, until).await? {
                        return Ok::<_, Error>(None);
                    }
                    let Some(webhook) = model::webhook_by_id(db, webhook_id).await? else {
                        return Ok(None);
                    };
                    let head = model::head_delivery(db, webhook_id, webhook.cursor_seq).await?;
                    Ok(Some((webhook, head)))
                })
                .await?;
            let Some((webhook, head)) = held else {
                return Ok(Pause::NotOurs);
            };
            let pause = match head {
                Some(delivery) if delivery.status == "failed" => {
                    // Disabled with this delivery failing, and enabled again since: it
                    // gets a fresh retry window.
                    let delivery_id = delivery.id.clone();
                    self.ctx
                        .store
                        .transaction(async |db| {
                            model::reopen_delivery(db, &delivery_id, now).await?;
                            Ok::<_, Error>(())
                        })
                        .await?;
                    None
                }
                Some(delivery) if delivery.next_attempt_at.unwrap_or(0) > now => Some(Pause::Idle),
                Some(delivery) => self.attempt_head(&webhook, delivery).await?,
                None => self.next_delivery(&webhook).await?,
            };
            if let Some(pause) = pause {
                return Ok(pause);
            }
        }
    }

    /// Attempts the head delivery; on success the cursor moves past it, on failure it
    /// waits for its retry, or fails for good and the webhook is disabled.
    async fn attempt_head(&self, webhook: &Webhook, delivery: Delivery) -> Result<Option<Pause>> {
        let settings = &self.ctx.settings.webhooks;
        let outcome = attempt(&self.ctx, webhook, &delivery).await;
        let attempted_at = now_ms();
        let succeeded = outcome.succeeded();
        let first_attempt_at = delivery.first_attempt_at.unwrap_or(attempted_at);
        let expired = !succeeded
            && attempted_at.saturating_sub(first_attempt_at) >= settings.max_age_ms as i64;
        let next_attempt_at = (!succeeded && !expired)
            .then(|| attempted_at.saturating_add(retry_delay_ms(settings, delivery.attempts + 1)));
        let status = if succeeded {
            "delivered"
        } else if expired {
            "failed"
        } else {
            "pending"
        };
        let reason = expired.then(|| {
            format!(
                "deliveries failed for {} (the last: {}); enable the webhook again to \
                 resume from the event that failed",
                duration_text(settings.max_age_ms),
                outcome_text(&outcome)
            )
        });
        let owner = &self.owner;
        let row = attempt_row(&delivery.id, attempted_at, &outcome);
        let still_ours = self
            .ctx
            .store
            .transaction(async |db| {
                model::insert_attempt(db, &row).await?;
                model::record_outcome(db, &delivery.id, status, attempted_at, next_attempt_at)
                    .await?;
                let still_ours = if succeeded {
                    model::advance_cursor(db, &webhook.id, owner, delivery.seq).await?
                } else if let Some(reason) = &reason {
                    let disabled =
                        model::disable(db, &webhook.id, owner, reason, attempted_at).await?;
                    if disabled {
                        webhooks::notify_disabled(db, webhook, reason).await?;
                    }
                    disabled
                } else {
                    true
                };
                Ok::<_, Error>(still_ours)
            })
            .await?;
        if let Some(reason) = &reason
            && still_ours
        {
            tracing::warn!(
                webhook.id = %webhook.id,
                workspace.id = %webhook.workspace_id,
                reason = %reason,
                "webhook disabled; its creator was notified"
            );
            return Ok(Some(Pause::NotOurs));
        }
        match (succeeded, still_ours) {
            (true, true) => Ok(None),
            (_, false) => Ok(Some(Pause::NotOurs)),
            (false, true) => Ok(Some(Pause::Idle)),
        }
    }

    /// Reads the feed after the cursor: events the filters skip move the cursor on; the
    /// first match gets its delivery row. `None`: go on with it.
    async fn next_delivery(&self, webhook: &Webhook) -> Result<Option<Pause>> {
        let feed_id = feed::workspace_audience_id(&webhook.workspace_id);
        let rows =
            events::list_after(&self.ctx.store, &feed_id, webhook.cursor_seq as u64, PAGE).await?;
        if rows.is_empty() {
            return Ok(Some(Pause::Idle));
        }
        let event_types = webhooks::event_types_of(webhook);
        let mut skipped_to = None;
        let mut matched = None;
        for row in rows {
            if self.matches(webhook, &event_types, &row).await? {
                matched = Some(row);
                break;
            }
            skipped_to = Some(row.seq);
        }
        let owner = &self.owner;
        let now = now_ms();
        // An A2A push notification carries the task's A2A state when the delivery is
        // written, not the event.
        let a2a_body = match (&matched, &webhook.a2a_token) {
            (Some(_), Some(_)) => Some(crate::a2a::push_body(&self.ctx, webhook).await?),
            _ => None,
        };
        let delivery = matched.map(|row| Delivery {
            id: new_id(),
            webhook_id: webhook.id.clone(),
            kind: "event".into(),
            seq: row.seq,
            payload: a2a_body.unwrap_or_else(|| {
                webhooks::body(row.seq, &row.event_type, &row.payload, row.created_at)
            }),
            event_type: row.event_type,
            status: "pending".into(),
            attempts: 0,
            next_attempt_at: Some(now),
            first_attempt_at: None,
            last_attempt_at: None,
            delivered_at: None,
            redelivery_of: None,
            created_at: now,
        });
        let still_ours = self
            .ctx
            .store
            .transaction(async |db| {
                if let Some(seq) = skipped_to
                    && !model::advance_cursor(db, &webhook.id, owner, seq).await?
                {
                    return Ok::<_, Error>(false);
                }
                if let Some(delivery) = &delivery {
                    model::insert_delivery(db, delivery).await?;
                }
                Ok(true)
            })
            .await;
        match still_ours {
            Ok(true) => Ok(None),
            Ok(false) => Ok(Some(Pause::NotOurs)),
            // Another hub wrote this event's delivery after taking an expired lease.
            Err(Error::Conflict(_)) => Ok(Some(Pause::NotOurs)),
            Err(err) => Err(err),
        }
    }

    /// Whether the webhook's filters take this event of its feed.
    async fn matches(
        &self,
        webhook: &Webhook,
        event_types: &[String],
        row: &EventRow,
    ) -> Result<bool> {
        if !event_types.is_empty() && !event_types.contains(&row.event_type) {
            return Ok(false);
        }
        let Some(task_id) = &webhook.task_id else {
            return Ok(true);
        };
        let Ok(frame) = serde_json::from_str::<agenthub_protocol::ServerFrame>(&row.payload) else {
            return Ok(false);
        };
        match feed::subject_of(&frame) {
            Some(feed::Subject::Task(id)) => Ok(id.to_string() == *task_id),
            Some(feed::Subject::Step(step_id)) => {
                let step_ids = [step_id.to_string()];
                let found = self
                    .ctx
                    .store
                    .read(async |db| {
                        Ok::<_, Error>(events::model::tasks_of_steps(db, &step_ids).await?)
                    })
                    .await?;
                Ok(found.iter().any(|(_, id)| id == task_id))
            }
            None => Ok(false),
        }
    }
}

/// Writes a ping or redelivery, attempts it once and records the attempt; the answer
/// holds the delivery with its attempt.
pub(crate) async fn deliver_once(
    ctx: &Ctx,
    webhook: &Webhook,
    mut delivery: Delivery,
) -> Result<DeliveryView> {
    let row = delivery.clone();
    ctx.store
        .transaction(async |db| {
            model::insert_delivery(db, &row).await?;
            Ok::<_, Error>(())
        })
        .await?;
    let outcome = attempt(ctx, webhook, &delivery).await;
    let attempted_at = now_ms();
    let status = if outcome.succeeded() {
        "delivered"
    } else {
        "failed"
    };
    let attempt = attempt_row(&delivery.id, attempted_at, &outcome);
    let delivery_id = delivery.id.clone();
    ctx.store
        .transaction(async |db| {
            model::insert_attempt(db, &attempt).await?;
            model::record_outcome(db, &delivery_id, status, attempted_at, None).await?;
            Ok::<_, Error>(())
        })
        .await?;
    delivery.status = status.into();
    delivery.attempts += 1;
    delivery.first_attempt_at = Some(attempted_at);
    delivery.last_attempt_at = Some(attempted_at);
    delivery.next_attempt_at = None;
    delivery.delivered_at = outcome.succeeded().then_some(attempted_at);
    Ok(DeliveryView {
        delivery,
        attempts: vec![attempt],
    })
}

/// One signed `POST` of a delivery's body to the webhook's URL.
async fn attempt(ctx: &Ctx, webhook: &Webhook, delivery: &Delivery) -> Outcome {
    let started = Instant::now();
    let failed = |error: String| Outcome {
        status_code: None,
        latency_ms: started.elapsed().as_millis() as i64,
        error: Some(error),
        excerpt: None,
    };
    let settings = &ctx.settings.webhooks;
    let client = match ctx.webhook_sender.client(settings) {
        Ok(client) => client,
        Err(err) => return failed(err),
    };
    let url = match reqwest::Url::parse(&webhook.url) {
        Ok(url) => url,
        Err(err) => return failed(format!("the URL is unreadable: {err}")),
    };
    if let Err(err) = guard::check_url(&url, settings.allow_private) {
        return failed(err);
    }
    let request = client
        .post(url)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .header("AgentHub-Delivery", &delivery.id)
        .header("AgentHub-Event", &delivery.event_type);
    // An A2A push notification config authenticates with its token, as A2A clients expect.
    let request = match &webhook.a2a_token {
        Some(token) => request.header("X-A2A-Notification-Token", token),
        None => {
            let timestamp = now_ms() / 1000;
            let signature = webhooks::signature(&webhook.secret, timestamp, &delivery.payload);
            request.header("AgentHub-Signature", signature)
        }
    };
    let sent = request.body(delivery.payload.clone()).send().await;
    let mut response = match sent {
        Ok(response) => response,
        Err(err) => return failed(error_text(&err, settings)),
    };
    let status_code = response.status().as_u16();
    let mut excerpt = Vec::new();
    let mut error = None;
    while excerpt.len() < MAX_EXCERPT_BYTES {
        match response.chunk().await {
            Ok(Some(chunk)) => excerpt.extend_from_slice(&chunk),
            Ok(None) => break,
            Err(err) => {
                error = Some(error_text(&err, settings));
                break;
            }
        }
    }
    excerpt.truncate(MAX_EXCERPT_BYTES);
    let excerpt = String::from_utf8_lossy(&excerpt).replace('\0', "\u{fffd}");
    if error.is_none() && !(200..300).contains(&status_code) {
        error = Some(format!("the answer was {status_code}, not 2xx"));
    }
    Outcome {
        status_code: Some(status_code),
        latency_ms: started.elapsed().as_millis() as i64,
        error,
        excerpt: (!excerpt.is_empty()).then_some(excerpt),
    }
}

fn attempt_row(delivery_id: &str, attempted_at: i64, outcome: &Outcome) -> Attempt {
    Attempt {
        id: new_id(),
        delivery_id: delivery_id.to_string(),
        attempted_at,
        status_code: outcome.status_code.map(i32::from),
        latency_ms: outcome.latency_ms,
        error: outcome.error.clone(),
        response_excerpt: outcome.excerpt.clone(),
    }
}

/// A reqwest error with its causes (the resolver's refusal among them), or the deadline.
fn error_text(err: &reqwest::Error, settings: &WebhookSettings) -> String {
    if err.is_timeout() {
        return format!("no answer within {}", duration_text(settings.timeout_ms));
    }
    let mut text = err.to_string();
    let mut source = std::error::Error::source(err);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

fn outcome_text(outcome: &Outcome) -> String {
    outcome
        .error
        .clone()
        .unwrap_or_else(|| format!("{:?}", outcome.status_code))
}

/// The wait before the retry after the `n_failures`-th failure: full jitter over
/// `min(cap, base · 2^(n-1))`.
pub fn retry_delay_ms(settings: &WebhookSettings, n_failures: i32) -> i64 {
    let exponent = n_failures.saturating_sub(1).clamp(0, 30) as u32;
    let ceiling = settings
        .retry_base_ms
        .saturating_mul(1u64 << exponent)
        .min(settings.retry_cap_ms)
        .max(1);
    rand::rng().random_range(0..=ceiling) as i64
}

fn duration_text(ms: u64) -> String {
    if ms >= 3_600_000 && ms.is_multiple_of(3_600_000) {
        format!("{} h", ms / 3_600_000)
    } else if ms >= 1000 && ms.is_multiple_of(1000) {
        format!("{} s", ms / 1000)
    } else {
        format!("{ms} ms")
    }
}
