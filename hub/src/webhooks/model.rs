//! Rows and queries of webhooks, their deliveries and the attempts of each delivery.

use diesel::prelude::*;
use diesel_async::RunQueryDsl;

use crate::schema::{audience_seqs, webhook_attempts, webhook_deliveries, webhooks};
use crate::store::Db;

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = webhooks, treat_none_as_default_value = false)]
pub struct Webhook {
    pub id: String,
    pub workspace_id: String,
    pub url: String,
    /// The signing secret (`whsec_…`); shown only when created or rotated.
    pub secret: String,
    /// JSON array of event types; empty: every type.
    pub event_types: String,
    pub task_id: Option<String>,
    pub description: String,
    pub enabled: bool,
    pub disabled_reason: Option<String>,
    /// The last seq of the workspace feed handled (delivered, or skipped by the filters).
    pub cursor_seq: i64,
    pub lease_owner: Option<String>,
    pub lease_until: Option<i64>,
    pub created_by: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
    /// Set: an A2A push notification config of `task_id`, whose deliveries carry this
    /// token in `X-A2A-Notification-Token` instead of a signature.
    pub a2a_token: Option<String>,
}

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = webhook_deliveries, treat_none_as_default_value = false)]
pub struct Delivery {
    pub id: String,
    pub webhook_id: String,
    /// `event`, `ping` or `redeliver`.
    pub kind: String,
    pub seq: i64,
    pub event_type: String,
    pub payload: String,
    /// `pending`, `delivered` or `failed`.
    pub status: String,
    pub attempts: i32,
    pub next_attempt_at: Option<i64>,
    pub first_attempt_at: Option<i64>,
    pub last_attempt_at: Option<i64>,
    pub delivered_at: Option<i64>,
    pub redelivery_of: Option<String>,
    pub created_at: i64,
}

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = webhook_attempts, treat_none_as_default_value = false)]
pub struct Attempt {
    pub id: String,
    pub delivery_id: String,
    pub attempted_at: i64,
    pub status_code: Option<i32>,
    pub latency_ms: i64,
    pub error: Option<String>,
    pub response_excerpt: Option<String>,
}

/// What a PATCH changes; `None` leaves a column as it is.
#[derive(Debug, Default, AsChangeset)]
#[diesel(table_name = webhooks)]
pub struct WebhookChanges {
    pub url: Option<String>,
    pub secret: Option<String>,
    pub event_types: Option<String>,
    pub task_id: Option<Option<String>>,
    pub description: Option<String>,
    pub enabled: Option<bool>,
    pub disabled_reason: Option<Option<String>>,
    pub updated_at: Option<i64>,
}

pub async fn insert_webhook(db: &mut Db<'_>, row: &Webhook) -> QueryResult<()> {
    crate::db!(db, |conn| diesel::insert_into(webhooks::table)
        .values(row)
        .execute(conn)
        .await)?;
    Ok(())
}

pub async fn count_webhooks(db: &mut Db<'_>, workspace_id: &str) -> QueryResult<i64> {
    crate::db!(db, |conn| webhooks::table
        .filter(webhooks::workspace_id.eq(workspace_id))
        .count()
        .get_result(conn)
        .await)
}

pub async fn list_webhooks(db: &mut Db<'_>, workspace_id: &str) -> QueryResult<Vec<Webhook>> {
    crate::db!(db, |conn| webhooks::table
        .filter(webhooks::workspace_id.eq(workspace_id))
        .order(webhooks::created_at.asc())
        .select(Webhook::as_select())
        .load(conn)
        .await)
}

pub async fn find_webhook(
    db: &mut Db<'_>,
    workspace_id: &str,
    webhook_id: &str,
) -> QueryResult<Option<Webhook>> {
    crate::db!(db, |conn| webhooks::table
        .filter(
            webhooks::id
                .eq(webhook_id)
                .and(webhooks::workspace_id.eq(workspace_id)),
        )
        .select(Webhook::as_select())
        .first(conn)
        .await
        .optional())
}

pub async fn webhook_by_id(db: &mut Db<'_>, webhook_id: &str) -> QueryResult<Option<Webhook>> {
    crate::db!(db, |conn| webhooks::table
        .find(webhook_id)
        .select(Webhook::as_select())
        .first(conn)
        .await
        .optional())
}

pub async fn update_webhook(
    db: &mut Db<'_>,
    webhook_id: &str,
    changes: &WebhookChanges,
) -> QueryResult<usize> {
    crate::db!(db, |conn| diesel::update(webhooks::table.find(webhook_id))
        .set(changes)
        .execute(conn)
        .await)
}

pub async fn delete_webhook(db: &mut Db<'_>, webhook_id: &str) -> QueryResult<usize> {
    crate::db!(db, |conn| diesel::delete(webhooks::table.find(webhook_id))
        .execute(conn)
        .await)
}

/// The enabled webhooks whose lease is free or expired (or already ours), oldest first.
pub async fn claimable_webhooks(
    db: &mut Db<'_>,
    owner: &str,
    now: i64,
) -> QueryResult<Vec<(String, String, i64)>> {
    crate::db!(db, |conn| webhooks::table
        .filter(
            webhooks::enabled.eq(true).and(
                webhooks::lease_until
                    .is_null()
                    .or(webhooks::lease_until.lt(now))
                    .or(webhooks::lease_owner.eq(owner)),
            )
        )
        .order(webhooks::created_at.asc())
        .select((webhooks::id, webhooks::workspace_id, webhooks::cursor_seq))
        .load(conn)
        .await)
}

/// The last seq of each of these audiences that has one.
pub async fn last_seqs(
    db: &mut Db<'_>,
    audience_ids: &[String],
) -> QueryResult<Vec<(String, i64)>> {
    crate::db!(db, |conn| audience_seqs::table
        .filter(audience_seqs::audience_id.eq_any(audience_ids))
        .select((audience_seqs::audience_id, audience_seqs::last_seq))
        .load(conn)
        .await)
}

/// Takes or renews the lease of an enabled webhook for `owner` until `until`: one
/// conditional update, so of several hubs exactly one holds it. True when `owner` holds it.
pub async fn take_lease(
    db: &mut Db<'_>,
    webhook_id: &str,
    owner: &str,
    now: i64,
    until: i64,
) -> QueryResult<bool> {
    let n_rows = crate::db!(db, |conn| diesel::update(webhooks::table)
        .filter(
            webhooks::id
                .eq(webhook_id)
                .and(webhooks::enabled.eq(true))
                .and(
                    webhooks::lease_owner
                        .is_null()
                        .or(webhooks::lease_until.is_null())
                        .or(webhooks::lease_until.lt(now))
                        .or(webhooks::lease_owner.eq(owner)),
                ),
        )
        .set((
            webhooks::lease_owner.eq(owner),
            webhooks::lease_until.eq(until),
        ))
        .execute(conn)
        .await)?;
    Ok(n_rows == 1)
}

/// Gives the lease up, when `owner` holds it.
pub async fn release_lease(db: &mut Db<'_>, webhook_id: &str, owner: &str) -> QueryResult<()> {
    crate::db!(db, |conn| diesel::update(webhooks::table)
        .filter(
            webhooks::id
                .eq(webhook_id)
                .and(webhooks::lease_owner.eq(owner)),
        )
        .set((
            webhooks::lease_owner.eq(None::<String>),
            webhooks::lease_until.eq(None::<i64>),
        ))
        .execute(conn)
        .await)?;
    Ok(())
}

/// Moves the cursor forward to `seq`, when `owner` still holds the lease. True when moved.
pub async fn advance_cursor(
    db: &mut Db<'_>,
    webhook_id: &str,
    owner: &str,
    seq: i64,
) -> QueryResult<bool> {
    let n_rows = crate::db!(db, |conn| diesel::update(webhooks::table)
        .filter(
            webhooks::id
                .eq(webhook_id)
                .and(webhooks::lease_owner.eq(owner))
                .and(webhooks::cursor_seq.lt(seq)),
        )
        .set(webhooks::cursor_seq.eq(seq))
        .execute(conn)
        .await)?;
    Ok(n_rows == 1)
}

/// Disables a webhook, when `owner` still holds its lease, and gives the lease up.
pub async fn disable(
    db: &mut Db<'_>,
    webhook_id: &str,
    owner: &str,
    reason: &str,
    now: i64,
) -> QueryResult<bool> {
    let n_rows = crate::db!(db, |conn| diesel::update(webhooks::table)
        .filter(
            webhooks::id
                .eq(webhook_id)
                .and(webhooks::lease_owner.eq(owner)),
        )
        .set((
            webhooks::enabled.eq(false),
            webhooks::disabled_reason.eq(reason),
            webhooks::lease_owner.eq(None::<String>),
            webhooks::lease_until.eq(None::<i64>),
            webhooks::updated_at.eq(now),
        ))
        .execute(conn)
        .await)?;
    Ok(n_rows == 1)
}

pub async fn insert_delivery(db: &mut Db<'_>, row: &Delivery) -> QueryResult<()> {
    crate::db!(db, |conn| diesel::insert_into(webhook_deliveries::table)
        .values(row)
        .execute(conn)
        .await)?;
    Ok(())
}

/// The first event delivery of the ordered stream after the cursor that is not yet
/// delivered (pending, or failed when the webhook was disabled).
pub async fn head_delivery(
    db: &mut Db<'_>,
    webhook_id: &str,
    cursor_seq: i64,
) -> QueryResult<Option<Delivery>> {
    crate::db!(db, |conn| webhook_deliveries::table
        .filter(
            webhook_deliveries::webhook_id
                .eq(webhook_id)
                .and(webhook_deliveries::kind.eq("event"))
                .and(webhook_deliveries::seq.gt(cursor_seq))
                .and(webhook_deliveries::status.ne("delivered")),
        )
        .order(webhook_deliveries::seq.asc())
        .select(Delivery::as_select())
        .first(conn)
        .await
        .optional())
}

pub async fn find_delivery(db: &mut Db<'_>, delivery_id: &str) -> QueryResult<Option<Delivery>> {
    crate::db!(db, |conn| webhook_deliveries::table
        .find(delivery_id)
        .select(Delivery::as_select())
        .first(conn)
        .await
        .optional())
}

/// A page of a webhook's deliveries, newest first, created before `before` (an id).
pub async fn list_deliveries(
    db: &mut Db<'_>,
    webhook_id: &str,
    before: Option<&str>,
    limit: i64,
) -> QueryResult<Vec<Delivery>> {
    crate::db!(db, |conn| {
        let mut query = webhook_deliveries::table
            .filter(webhook_deliveries::webhook_id.eq(webhook_id))
            .into_boxed();
        if let Some(before) = before {
            query = query.filter(webhook_deliveries::id.lt(before.to_string()));
        }
        query
            .order(webhook_deliveries::id.desc())
            .limit(limit)
            .select(Delivery::as_select())
            .load(conn)
            .await
    })
}

pub async fn attempts_of(db: &mut Db<'_>, delivery_ids: &[String]) -> QueryResult<Vec<Attempt>> {
    crate::db!(db, |conn| webhook_attempts::table
        .filter(webhook_attempts::delivery_id.eq_any(delivery_ids))
        .order((
            webhook_attempts::attempted_at.asc(),
            webhook_attempts::id.asc(),
        ))
        .select(Attempt::as_select())
        .load(conn)
        .await)
}

pub async fn insert_attempt(db: &mut Db<'_>, row: &Attempt) -> QueryResult<()> {
    crate::db!(db, |conn| diesel::insert_into(webhook_attempts::table)
        .values(row)
        .execute(conn)
        .await)?;
    Ok(())
}

/// Records the outcome of an attempt on its delivery.
pub async fn record_outcome(
    db: &mut Db<'_>,
    delivery_id: &str,
    status: &str,
    attempted_at: i64,
    next_attempt_at: Option<i64>,
) -> QueryResult<()> {
    let delivered_at = (status == "delivered").then_some(attempted_at);
    crate::db!(db, |conn| diesel::update(
        webhook_deliveries::table.find(delivery_id)
    )
    .set((
        webhook_deliveries::status.eq(status),
        webhook_deliveries::attempts.eq(webhook_deliveries::attempts + 1),
        webhook_deliveries::last_attempt_at.eq(attempted_at),
        webhook_deliveries::next_attempt_at.eq(next_attempt_at),
        webhook_deliveries::delivered_at.eq(delivered_at),
    ))
    .execute(conn)
    .await)?;
    crate::db!(db, |conn| diesel::update(
        webhook_deliveries::table.filter(
            webhook_deliveries::id
                .eq(delivery_id)
                .and(webhook_deliveries::first_attempt_at.is_null())
        )
    )
    .set(webhook_deliveries::first_attempt_at.eq(attempted_at))
    .execute(conn)
    .await)?;
    Ok(())
}

/// Makes a failed delivery pending again, due now, with a fresh retry window (a webhook
/// enabled again resumes with it).
pub async fn reopen_delivery(db: &mut Db<'_>, delivery_id: &str, now: i64) -> QueryResult<()> {
    crate::db!(db, |conn| diesel::update(
        webhook_deliveries::table.find(delivery_id)
    )
    .set((
        webhook_deliveries::status.eq("pending"),
        webhook_deliveries::next_attempt_at.eq(now),
        webhook_deliveries::first_attempt_at.eq(None::<i64>),
    ))
    .execute(conn)
    .await)?;
    Ok(())
}
