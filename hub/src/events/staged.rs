//! Feeds numbered after the commit, on PostgreSQL: a workspace's feed (every frame of
//! every change in the workspace) and each member's feed.
//!
//! A feed's `seq` is gap-free and comes from its counter row (`audience_seqs`). On
//! PostgreSQL that row is a lock held from the statement that moves it to the commit of
//! the transaction, and every change in a workspace writes to the workspace's feed (and
//! in most, to the creator's): numbered inside the changes, a workspace's changes would
//! commit one at a time, at about 300 per second whatever the hubs and database cores.
//! So a change writes those events with a placeholder seq instead, the negative of a
//! number from the sequence `staged_event_ids`, taken in the order it queued them, and
//! has this hub's [`Numberer`] number them after its commit, before it answers. The numberer gives every committed
//! placeholder of a feed its number in one short transaction (the counter row is held
//! for a few statements, not for a change), oldest placeholder first, and publishes the
//! numbered events. Two changes that touch the same rows commit one after the other, and
//! the later one takes its placeholders after the earlier one committed: their events are
//! numbered in the order of the changes.
//!
//! Numbering a row updates its `seq`, so its old version stays in the indexes until a
//! vacuum; a round reads only the placeholders above the feed's floor (`staged_floors`),
//! below which every placeholder is numbered or gone ([`number_batch`]).
//!
//! Readers never see a placeholder: every read asks for `seq > n` with n >= 0. A hub that
//! stops between a commit and the numbering leaves placeholders behind; each hub's
//! sweeper numbers what it finds ([`number_all`]), so nothing is lost. The numberers of
//! several hubs on one database take the counter row in turn. SQLite's single writer
//! keeps the counters in memory and numbers every event in its change's transaction.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use diesel::prelude::*;
use diesel::sql_types::{Array, BigInt, Text};
use diesel_async::RunQueryDsl;
use tokio::sync::watch;

use super::Audience;
use super::feed::WORKSPACE_PREFIX;
use crate::bus::Notice;
use crate::ctx::Ctx;
use crate::error::Result;
use crate::schema::{audience_seqs, events, staged_floors};
use crate::store::Db;

/// Placeholders numbered in one transaction at most.
const BATCH: i64 = 1_000;

/// Whether `audience`'s events are numbered after the commit on this connection.
pub(crate) fn defers(db: &Db<'_>, audience: &Audience) -> bool {
    matches!(db, Db::Postgres(_))
        && matches!(audience, Audience::WorkspaceFeed(_) | Audience::Member(_))
}

/// `count` placeholder seqs, each the negative of a new number of `staged_event_ids`,
/// in the order taken (so the numberer, going from the least negative, keeps it).
pub(crate) async fn placeholders(db: &mut Db<'_>, count: usize) -> QueryResult<Vec<i64>> {
    #[derive(QueryableByName)]
    struct Taken {
        #[diesel(sql_type = BigInt)]
        id: i64,
    }
    let Db::Postgres(conn) = db.reborrow() else {
        return Err(diesel::result::Error::QueryBuilderError(
            "placeholder seqs are taken on PostgreSQL only".into(),
        ));
    };
    let mut taken: Vec<Taken> =
        // The transaction's id is taken first (the filter runs once, before any row): the
        // numberer's floor relies on every placeholder's transaction having one by then.
        diesel::sql_query(
            "SELECT nextval('staged_event_ids') AS id FROM generate_series(1, $1) \
             WHERE pg_current_xact_id() IS NOT NULL",
        )
            .bind::<BigInt, _>(count as i64)
            .load(conn)
            .await?;
    taken.sort_by_key(|taken| taken.id);
    Ok(taken.into_iter().map(|taken| -taken.id).collect())
}

/// The numberer of this hub: one round at a time per feed, each numbering everything of
/// the feed committed when it starts, so a round's batch grows with the load (what is
/// staged while a round runs waits for the next, however many changes staged it).
#[derive(Debug, Default)]
pub struct Numberer {
    feeds: Mutex<HashMap<String, Rounds>>,
}

/// The rounds of one feed, while a task numbers it (the task removes them when it ends).
#[derive(Debug)]
struct Rounds {
    /// Rounds asked for so far.
    asked: u64,
    /// The last round asked for when the latest finished round started.
    done: watch::Sender<u64>,
}

impl Numberer {
    /// Returns once `feeds` are numbered up to what was committed before this call: after
    /// a round of each that started later. A round that fails is logged and left to the
    /// sweeper ([`number_all`]); this returns then too.
    pub(crate) async fn number(&self, ctx: &Ctx, feeds: impl IntoIterator<Item = String>) {
        let mut waits = Vec::new();
        for feed in feeds {
            let (asked, mut done, start) = {
                let mut all = self.feeds.lock().expect("numberer lock");
                // No rounds yet: no task numbers the feed, so this call starts one.
                let start = !all.contains_key(&feed);
                let rounds = all.entry(feed.clone()).or_insert_with(|| Rounds {
                    asked: 0,
                    done: watch::Sender::new(0),
                });
                rounds.asked += 1;
                (rounds.asked, rounds.done.subscribe(), start)
            };
            if start {
                tokio::spawn(run_rounds(ctx.clone(), feed));
            }
            waits.push(async move {
                // A dropped sender has sent its last round first.
                let _done = done.wait_for(|done| *done >= asked).await;
            });
        }
        futures_util::future::join_all(waits).await;
    }
}

/// Numbers `feed` round after round while rounds are asked for.
async fn run_rounds(ctx: Ctx, feed: String) {
    loop {
        let asked = match ctx.numberer.feeds.lock().expect("numberer lock").get(&feed) {
            Some(rounds) => rounds.asked,
            None => return,
        };
        if let Err(err) = number_feed(&ctx, &feed).await {
            tracing::warn!(feed, error = %err, "numbering staged events failed; the sweeper retries");
        }
        let mut all = ctx.numberer.feeds.lock().expect("numberer lock");
        let Some(rounds) = all.get_mut(&feed) else {
            return;
        };
        rounds.done.send_replace(asked);
        if rounds.asked == asked {
            // Nothing asked since this round started: the feed's state goes.
            all.remove(&feed);
            return;
        }
    }
}

/// Numbers every committed placeholder of `feed` and publishes the events; returns how
/// many it numbered.
pub async fn number_feed(ctx: &Ctx, feed: &str) -> Result<usize> {
    let mut n_numbered = 0;
    loop {
        let notices = ctx
            .store
            .transaction(async |db| Ok::<_, crate::error::Error>(number_batch(db, feed).await?))
            .await?;
        let n_batch = notices.len();
        n_numbered += n_batch;
        ctx.publish_numbered(notices);
        if (n_batch as i64) < BATCH {
            return Ok(n_numbered);
        }
    }
}

/// Numbers the placeholders of every feed that has some (a hub that stopped before
/// numbering what it staged, or a command that wrote events and ended); returns how many.
/// Fails only when the feeds cannot be listed; a feed that fails is logged and skipped.
///
/// A staged feed is a workspace's or a member's, so the feeds are found from those tables:
/// one look per feed for a placeholder above its floor, each reading only the feed's
/// unnumbered placeholders, never the dead versions its numbered ones left below the floor
/// until a vacuum (a scan of every `seq < 0` would walk them all, once per sweep). The
/// placeholders of a deleted member's feed stay unnumbered: nobody reads that feed.
pub async fn number_all(ctx: &Ctx) -> Result<usize> {
    #[derive(QueryableByName)]
    struct Feed {
        #[diesel(sql_type = Text)]
        audience_id: String,
    }
    if ctx.store.backend() != crate::store::Backend::Postgres {
        return Ok(0);
    }
    let feeds: Vec<Feed> = ctx
        .store
        .read(async |db| {
            let Db::Postgres(conn) = db.reborrow() else {
                return Ok(Vec::new());
            };
            Ok::<_, crate::error::Error>(
                diesel::sql_query(
                    // LATERAL … LIMIT 1: one index probe per feed, whatever the plan.
                    "SELECT a.audience_id FROM ( \
                     SELECT $1 || id AS audience_id FROM workspaces \
                     UNION ALL SELECT id FROM members) AS a \
                     LEFT JOIN staged_floors AS f ON f.audience_id = a.audience_id \
                     CROSS JOIN LATERAL (SELECT 1 FROM events AS e \
                     WHERE e.audience_id = a.audience_id \
                     AND e.seq < 0 AND e.seq < -COALESCE(f.floor_id, 0) LIMIT 1) AS p",
                )
                .bind::<Text, _>(WORKSPACE_PREFIX)
                .load(conn)
                .await?,
            )
        })
        .await?;
    // A feed that fails is logged and left to the next sweep; the others are numbered.
    let mut n_numbered = 0;
    for feed in feeds {
        match number_feed(ctx, &feed.audience_id).await {
            Ok(n_feed) => n_numbered += n_feed,
            Err(err) => tracing::warn!(
                feed = feed.audience_id,
                error = %err,
                "numbering staged events failed; the next sweep retries"
            ),
        }
    }
    Ok(n_numbered)
}

/// One batch of `feed`'s oldest placeholders, numbered in the caller's transaction: the
/// counter row is locked first, so the placeholders read after it are every one committed
/// before, and no other numberer takes them.
///
/// Only placeholders above the feed's floor are read: numbering leaves each row's old
/// version (with its placeholder) in the indexes until a vacuum, and below the floor there
/// are only those. The floor moves up to the mark (the last placeholder id taken when the
/// mark was set) once the oldest running transaction is younger than the mark's: every
/// transaction that took a placeholder up to the mark has then ended, so this round sees
/// all of them that committed, and numbers them if it numbers everything it sees.
async fn number_batch(db: &mut Db<'_>, feed: &str) -> QueryResult<Vec<Notice>> {
    #[derive(QueryableByName)]
    struct Locked {
        #[diesel(sql_type = BigInt)]
        last_seq: i64,
        #[diesel(sql_type = BigInt)]
        last_id: i64,
    }
    #[derive(QueryableByName)]
    struct Horizon {
        #[diesel(sql_type = BigInt)]
        xmin: i64,
        #[diesel(sql_type = BigInt)]
        xmax: i64,
        #[diesel(sql_type = diesel::sql_types::Nullable<BigInt>)]
        floor_id: Option<i64>,
        #[diesel(sql_type = diesel::sql_types::Nullable<BigInt>)]
        mark_id: Option<i64>,
        #[diesel(sql_type = diesel::sql_types::Nullable<BigInt>)]
        mark_xmax: Option<i64>,
    }
    let Db::Postgres(conn) = db.reborrow() else {
        return Ok(Vec::new());
    };
    // Locks the counter row; the last placeholder id taken is read before the snapshot
    // below is (the mark's guarantee needs that order).
    let locked: Locked = diesel::sql_query(
        "INSERT INTO audience_seqs (audience_id, last_seq) VALUES ($1, 0) \
         ON CONFLICT (audience_id) DO UPDATE SET last_seq = audience_seqs.last_seq \
         RETURNING last_seq, (SELECT CASE WHEN is_called THEN last_value ELSE 0 END \
         FROM staged_event_ids) AS last_id",
    )
    .bind::<Text, _>(feed)
    .get_result(conn)
    .await?;
    let horizon: Horizon = diesel::sql_query(
        "SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint AS xmin, \
         pg_snapshot_xmax(pg_current_snapshot())::text::bigint AS xmax, \
         f.floor_id, f.mark_id, f.mark_xmax \
         FROM (SELECT 1) AS one LEFT JOIN staged_floors AS f ON f.audience_id = $1",
    )
    .bind::<Text, _>(feed)
    .get_result(conn)
    .await?;
    let floor = horizon.floor_id.unwrap_or(0);
    let last = locked.last_seq;
    let staged: Vec<(i64, String, i64)> = events::table
        .filter(
            // The floor is never negative: this reads placeholders only, a range of the
            // primary key (audience_id, seq) below the numbered rows' dead versions.
            events::audience_id.eq(feed).and(events::seq.lt(-floor)),
        )
        .order(events::seq.desc())
        .limit(BATCH)
        .select((events::seq, events::payload, events::created_at))
        .load(conn)
        .await?;
    let n_staged = staged.len();
    // The floor moves only after a round that numbered everything it saw.
    let (floor, mark_id, mark_xmax) = match (horizon.mark_id, horizon.mark_xmax) {
        _ if n_staged as i64 >= BATCH => (
            floor,
            horizon.mark_id.unwrap_or(0),
            horizon.mark_xmax.unwrap_or(0),
        ),
        (Some(mark_id), Some(mark_xmax)) if horizon.xmin < mark_xmax => (floor, mark_id, mark_xmax),
        (Some(mark_id), Some(_)) => (mark_id.max(floor), locked.last_id, horizon.xmax),
        _ => (floor, locked.last_id, horizon.xmax),
    };
    diesel::insert_into(staged_floors::table)
        .values((
            staged_floors::audience_id.eq(feed),
            staged_floors::floor_id.eq(floor),
            staged_floors::mark_id.eq(mark_id),
            staged_floors::mark_xmax.eq(mark_xmax),
        ))
        .on_conflict(staged_floors::audience_id)
        .do_update()
        .set((
            staged_floors::floor_id.eq(floor),
            staged_floors::mark_id.eq(mark_id),
            staged_floors::mark_xmax.eq(mark_xmax),
        ))
        .execute(conn)
        .await?;
    if staged.is_empty() {
        return Ok(Vec::new());
    }
    let mut olds = Vec::with_capacity(staged.len());
    let mut seqs = Vec::with_capacity(staged.len());
    let mut payloads = Vec::with_capacity(staged.len());
    let mut notices = Vec::with_capacity(staged.len());
    for (offset, (old, payload, created_at)) in staged.into_iter().enumerate() {
        let seq = last + 1 + offset as i64;
        let payload = super::with_seq(&payload, seq as u64);
        notices.push(Notice::new(
            feed.to_string(),
            seq as u64,
            Arc::from(payload.as_str()),
            created_at,
        ));
        olds.push(old);
        seqs.push(seq);
        payloads.push(payload);
    }
    let last = last + olds.len() as i64;
    // The batch's range of placeholders, so that whatever plan runs the updates below
    // (one kept per connection) reads only it, not the feed's numbered rows or the dead
    // versions below the floor.
    let lowest = olds.iter().copied().min().unwrap_or(0);
    let highest = olds.iter().copied().max().unwrap_or(0);
    diesel::sql_query(
        "UPDATE events AS e SET seq = m.seq, payload = m.payload \
         FROM unnest($2, $3, $4) AS m(old, seq, payload) \
         WHERE e.audience_id = $1 AND e.seq BETWEEN $5 AND $6 AND e.seq = m.old",
    )
    .bind::<Text, _>(feed)
    .bind::<Array<BigInt>, _>(&olds)
    .bind::<Array<BigInt>, _>(&seqs)
    .bind::<Array<Text>, _>(&payloads)
    .bind::<BigInt, _>(lowest)
    .bind::<BigInt, _>(highest)
    .execute(conn)
    .await?;
    if !feed.starts_with(WORKSPACE_PREFIX) {
        // A member's feed: the notifications made from these events learn their seqs.
        diesel::sql_query(
            "UPDATE notifications AS n SET event_seq = m.seq \
             FROM unnest($2, $3) AS m(old, seq) \
             WHERE n.member_id = $1 AND n.event_seq < 0 AND n.event_seq BETWEEN $4 AND $5 \
             AND n.event_seq = m.old",
        )
        .bind::<Text, _>(feed)
        .bind::<Array<BigInt>, _>(&olds)
        .bind::<Array<BigInt>, _>(&seqs)
        .bind::<BigInt, _>(lowest)
        .bind::<BigInt, _>(highest)
        .execute(conn)
        .await?;
    }
    diesel::update(audience_seqs::table.find(feed))
        .set(audience_seqs::last_seq.eq(last))
        .execute(conn)
        .await?;
    Ok(notices)
}
