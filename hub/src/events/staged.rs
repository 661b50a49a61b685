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
//! has this hub's [`Numberer`] number them after its commit, before it answers. The
//! numberer gives every committed placeholder of the feeds asked for its number in one
//! short transaction (the counter rows are held for a few statements, not for a change),
//! oldest placeholder first, and publishes the numbered events. A round costs the same
//! six statements and one commit whatever it holds: the rounds of a busy hub grow with
//! the load instead of multiplying. Two changes that touch the same rows commit one after
//! the other, and the later one takes its placeholders after the earlier one committed:
//! their events are numbered in the order of the changes.
//!
//! Numbering a row updates its `seq`, so its old version stays in the indexes until a
//! vacuum; a round reads only the placeholders above the feed's floor (`staged_floors`),
//! below which every placeholder is numbered or gone ([`number_batch`]).
//!
//! Readers never see a placeholder: every read asks for `seq > n` with n >= 0. A hub that
//! stops between a commit and the numbering leaves placeholders behind; each hub's
//! sweeper numbers what it finds ([`number_all`]), so nothing is lost. The numberers of
//! several hubs on one database take the counter rows in turn, each round locking its
//! feeds in the same order. SQLite's single writer keeps the counters in memory and
//! numbers every event in its change's transaction.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

use diesel::prelude::*;
use diesel::sql_types::{Array, BigInt, Nullable, Text};
use diesel_async::RunQueryDsl;
use futures_util::FutureExt;
use tokio::sync::watch;

use super::Audience;
use super::feed::WORKSPACE_PREFIX;
use crate::bus::Notice;
use crate::ctx::Ctx;
use crate::error::Result;
use crate::store::{Ahead, Db, Fixed};

/// Placeholders numbered in one transaction at most.
const BATCH: i64 = 1_000;

/// Whether `audience`'s events are numbered after the commit on this connection.
pub(crate) fn defers(db: &Db<'_>, audience: &Audience) -> bool {
    matches!(db, Db::Postgres(_))
        && matches!(audience, Audience::WorkspaceFeed(_) | Audience::Member(_))
}

/// `count` placeholder seqs, each the negative of a new number of `staged_event_ids`,
/// in the order taken (so the numberer, going from the least negative, keeps it). Started
/// ahead ([`ahead!`](crate::ahead)): the numbers are taken with the transaction's next
/// statement.
pub(crate) async fn placeholders(db: &mut Db<'_>, count: usize) -> Ahead<Vec<i64>> {
    #[derive(QueryableByName)]
    struct Taken {
        #[diesel(sql_type = BigInt)]
        id: i64,
    }
    let Db::Postgres(conn) = db.reborrow() else {
        return Ahead::answered(Err(diesel::result::Error::QueryBuilderError(
            "placeholder seqs are taken on PostgreSQL only".into(),
        )));
    };
    // The transaction's id is taken first (the filter runs once, before any row): the
    // numberer's floor relies on every placeholder's transaction having one by then.
    let query = diesel::sql_query(
        "SELECT nextval('staged_event_ids') AS id FROM generate_series(1, $1) \
         WHERE pg_current_xact_id() IS NOT NULL",
    )
    .bind::<BigInt, _>(count as i64);
    Ahead::sent(conn.ahead(move |mut conn| {
        async move {
            let taken: Vec<Taken> = Fixed(query).load(&mut conn).await?;
            let mut ids: Vec<i64> = taken.into_iter().map(|taken| taken.id).collect();
            ids.sort_unstable();
            Ok(ids.into_iter().map(|id| -id).collect())
        }
        .boxed()
    }))
}

/// The numberer of this hub: one round at a time, each numbering every feed asked for
/// before it started in one transaction, so a round's batch grows with the load (what is
/// staged while a round runs waits for the next, however many changes and feeds staged
/// it) and a round costs the same few statements and one commit however much it holds.
#[derive(Debug)]
pub struct Numberer {
    rounds: Mutex<Rounds>,
}

/// What the rounds of this hub are asked for.
#[derive(Debug)]
struct Rounds {
    /// The feeds asked for since the running round took its own.
    feeds: BTreeSet<String>,
    /// Asks so far.
    asked: u64,
    /// Whether a task runs rounds: it stops when it would start one with no feed asked.
    running: bool,
    /// The last ask made before the latest finished round took its feeds.
    done: watch::Sender<u64>,
}

impl Default for Numberer {
    fn default() -> Self {
        Numberer {
            rounds: Mutex::new(Rounds {
                feeds: BTreeSet::new(),
                asked: 0,
                running: false,
                done: watch::Sender::new(0),
            }),
        }
    }
}

impl Numberer {
    /// Returns once `feeds` are numbered up to what was committed before this call: after
    /// a round that took them later. A round that fails is logged and left to the sweeper
    /// ([`number_all`]); this returns then too.
    pub(crate) async fn number(&self, ctx: &Ctx, feeds: impl IntoIterator<Item = String>) {
        let (asked, mut done, start) = {
            let mut rounds = self.rounds.lock().expect("numberer lock");
            rounds.feeds.extend(feeds);
            rounds.asked += 1;
            let start = !std::mem::replace(&mut rounds.running, true);
            (rounds.asked, rounds.done.subscribe(), start)
        };
        if start {
            tokio::spawn(run_rounds(ctx.clone()));
        }
        // The sender lives as long as this numberer.
        let _done = done.wait_for(|done| *done >= asked).await;
    }
}

/// Numbers round after round the feeds asked for meanwhile, while there are some.
async fn run_rounds(ctx: Ctx) {
    loop {
        let (asked, feeds) = {
            let mut rounds = ctx.numberer.rounds.lock().expect("numberer lock");
            let asked = rounds.asked;
            if rounds.feeds.is_empty() {
                rounds.done.send_replace(asked);
                rounds.running = false;
                return;
            }
            (asked, std::mem::take(&mut rounds.feeds))
        };
        let feeds: Vec<String> = feeds.into_iter().collect();
        if let Err(err) = number_feeds(&ctx, &feeds).await {
            tracing::warn!(
                n_feeds = feeds.len(),
                error = %err,
                "numbering staged events failed; the sweeper retries"
            );
        }
        ctx.numberer
            .rounds
            .lock()
            .expect("numberer lock")
            .done
            .send_replace(asked);
    }
}

/// Numbers every committed placeholder of `feeds`, all of them in each transaction, and
/// publishes the events; returns how many it numbered.
pub async fn number_feeds(ctx: &Ctx, feeds: &[String]) -> Result<usize> {
    // In one order on every hub: the rounds of two hubs lock shared counters in turn,
    // never each waiting for the other.
    let mut feeds = feeds.to_vec();
    feeds.sort();
    feeds.dedup();
    let mut n_numbered = 0;
    while !feeds.is_empty() {
        let round = ctx
            .store
            .transaction(async |db| Ok::<_, crate::error::Error>(number_batch(db, &feeds).await?))
            .await?;
        n_numbered += round.notices.len();
        ctx.publish_numbered(round.notices);
        feeds = round.full;
    }
    Ok(n_numbered)
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
                     AND e.seq < -COALESCE(f.floor_id, 0) LIMIT 1) AS p",
                )
                .bind::<Text, _>(WORKSPACE_PREFIX)
                .load(conn)
                .await?,
            )
        })
        .await?;
    let feeds: Vec<String> = feeds.into_iter().map(|feed| feed.audience_id).collect();
    let err = match number_feeds(ctx, &feeds).await {
        Ok(n_numbered) => return Ok(n_numbered),
        Err(err) => err,
    };
    // The feeds are numbered together, so one that fails fails them all: each alone now,
    // the one that fails logged and left to the next sweep.
    tracing::warn!(error = %err, "numbering the staged feeds together failed; numbering each alone");
    let mut n_numbered = 0;
    for feed in feeds {
        match number_feeds(ctx, std::slice::from_ref(&feed)).await {
            Ok(n_feed) => n_numbered += n_feed,
            Err(err) => tracing::warn!(
                feed,
                error = %err,
                "numbering staged events failed; the next sweep retries"
            ),
        }
    }
    Ok(n_numbered)
}

/// What one transaction numbered.
#[derive(Default)]
struct Round {
    /// The numbered events, to publish after the commit.
    notices: Vec<Notice>,
    /// The feeds with a full batch of placeholders: more may wait.
    full: Vec<String>,
}

/// What a round sees of one feed.
struct Seen {
    /// The feed's floor row as it is (floor id, mark id, mark xmax), if it has one.
    stored: Option<(i64, i64, i64)>,
    /// Placeholders above the floor: (placeholder seq, payload, created_at).
    staged: Vec<(i64, String, i64)>,
}

/// One batch of the oldest placeholders of each of `feeds` (sorted, without repeats),
/// numbered in the caller's transaction with the same few statements however many feeds
/// and events it holds: the counter rows are locked first, so the placeholders read after
/// are every one committed before, and no other numberer takes them.
///
/// Only placeholders above a feed's floor are read: numbering leaves each row's old
/// version (with its placeholder) in the indexes until a vacuum, and below the floor there
/// are only those. The floor moves up to the mark (the last placeholder id taken when the
/// mark was set) once the oldest running transaction is younger than the mark's: every
/// transaction that took a placeholder up to the mark has then ended, so this round sees
/// all of them that committed, and numbers them if it numbers everything it sees.
async fn number_batch(db: &mut Db<'_>, feeds: &[String]) -> QueryResult<Round> {
    #[derive(QueryableByName)]
    struct Locked {
        #[diesel(sql_type = Text)]
        audience_id: String,
        #[diesel(sql_type = BigInt)]
        last_seq: i64,
        #[diesel(sql_type = BigInt)]
        last_id: i64,
    }
    #[derive(QueryableByName)]
    struct Row {
        #[diesel(sql_type = Text)]
        audience_id: String,
        #[diesel(sql_type = BigInt)]
        xmin: i64,
        #[diesel(sql_type = BigInt)]
        xmax: i64,
        #[diesel(sql_type = Nullable<BigInt>)]
        floor_id: Option<i64>,
        #[diesel(sql_type = Nullable<BigInt>)]
        mark_id: Option<i64>,
        #[diesel(sql_type = Nullable<BigInt>)]
        mark_xmax: Option<i64>,
        #[diesel(sql_type = Nullable<BigInt>)]
        seq: Option<i64>,
        #[diesel(sql_type = Nullable<Text>)]
        payload: Option<String>,
        #[diesel(sql_type = Nullable<BigInt>)]
        created_at: Option<i64>,
    }
    let Db::Postgres(conn) = db.reborrow() else {
        return Ok(Round::default());
    };
    // Locks the counter rows, in the order given; the last placeholder id taken is read
    // before the snapshot of the next statement is (the mark's guarantee needs that order).
    let locked: Vec<Locked> = diesel::sql_query(
        "INSERT INTO audience_seqs (audience_id, last_seq) \
         SELECT feed, 0 FROM unnest($1) AS f(feed) \
         ON CONFLICT (audience_id) DO UPDATE SET last_seq = audience_seqs.last_seq \
         RETURNING audience_id, last_seq, (SELECT CASE WHEN is_called THEN last_value \
         ELSE 0 END FROM staged_event_ids) AS last_id",
    )
    .bind::<Array<Text>, _>(feeds)
    .load(conn)
    .await?;
    let last_id = locked
        .iter()
        .map(|locked| locked.last_id)
        .min()
        .unwrap_or(0);
    let mut last_seqs: HashMap<String, i64> = locked
        .into_iter()
        .map(|locked| (locked.audience_id, locked.last_seq))
        .collect();
    // Each feed's floor and the placeholders above it, under one snapshot, whose horizon
    // moves the floors. A feed with none has one row without an event.
    let rows: Vec<Row> = diesel::sql_query(
        "SELECT a.audience_id, \
         pg_snapshot_xmin(pg_current_snapshot())::text::bigint AS xmin, \
         pg_snapshot_xmax(pg_current_snapshot())::text::bigint AS xmax, \
         f.floor_id, f.mark_id, f.mark_xmax, e.seq, e.payload, e.created_at \
         FROM unnest($1) AS a(audience_id) \
         LEFT JOIN staged_floors AS f ON f.audience_id = a.audience_id \
         LEFT JOIN LATERAL (SELECT seq, payload, created_at FROM events \
         WHERE events.audience_id = a.audience_id \
         AND events.seq < -COALESCE(f.floor_id, 0) \
         ORDER BY seq DESC LIMIT $2) AS e ON true",
    )
    .bind::<Array<Text>, _>(feeds)
    .bind::<BigInt, _>(BATCH)
    .load(conn)
    .await?;
    let Some((xmin, xmax)) = rows.as_slice().first().map(|row| (row.xmin, row.xmax)) else {
        return Ok(Round::default());
    };
    let mut seen: BTreeMap<String, Seen> = BTreeMap::new();
    for row in rows {
        let feed = seen.entry(row.audience_id).or_insert_with(|| Seen {
            stored: row
                .floor_id
                .zip(row.mark_id)
                .zip(row.mark_xmax)
                .map(|((floor_id, mark_id), mark_xmax)| (floor_id, mark_id, mark_xmax)),
            staged: Vec::new(),
        });
        if let (Some(seq), Some(payload), Some(created_at)) = (row.seq, row.payload, row.created_at)
        {
            feed.staged.push((seq, payload, created_at));
        }
    }

    let mut round = Round::default();
    let mut floors = Floors::default();
    let mut numbered = Numbered::default();
    let mut counters: (Vec<String>, Vec<i64>) = (Vec::new(), Vec::new());
    for (feed, Seen { stored, mut staged }) in seen {
        let floor_id = stored.map_or(0, |(floor_id, ..)| floor_id);
        // Oldest first: a placeholder is the negative of its id, taken in order.
        staged.sort_by_key(|(old, ..)| std::cmp::Reverse(*old));
        let full = staged.len() as i64 >= BATCH;
        // The floor moves only after a round that numbered everything it saw.
        let moved = match stored {
            _ if full => stored.unwrap_or((floor_id, 0, 0)),
            Some((_, mark_id, mark_xmax)) if xmin < mark_xmax => (floor_id, mark_id, mark_xmax),
            Some((_, mark_id, _)) => (mark_id.max(floor_id), last_id, xmax),
            None => (floor_id, last_id, xmax),
        };
        if stored != Some(moved) {
            floors.push(&feed, moved);
        }
        if staged.is_empty() {
            continue;
        }
        // Every feed's counter was locked (and made) above.
        let mut last = last_seqs
            .remove(&feed)
            .ok_or(diesel::result::Error::NotFound)?;
        let member = !feed.starts_with(WORKSPACE_PREFIX);
        for (old, payload, created_at) in staged {
            last += 1;
            let payload = super::with_seq(&payload, last as u64);
            round.notices.push(Notice::new(
                feed.clone(),
                last as u64,
                Arc::from(payload.as_str()),
                created_at,
            ));
            numbered.push(&feed, old, last, payload, member);
        }
        counters.0.push(feed.clone());
        counters.1.push(last);
        if full {
            round.full.push(feed);
        }
    }

    // The writes below need no answer: they go with the round's COMMIT (`PgConn::defer`).
    if !floors.feeds.is_empty() {
        conn.defer(
            diesel::sql_query(
                "INSERT INTO staged_floors (audience_id, floor_id, mark_id, mark_xmax) \
             SELECT * FROM unnest($1, $2, $3, $4) \
             ON CONFLICT (audience_id) DO UPDATE SET floor_id = excluded.floor_id, \
             mark_id = excluded.mark_id, mark_xmax = excluded.mark_xmax",
            )
            .bind::<Array<Text>, _>(floors.feeds)
            .bind::<Array<BigInt>, _>(floors.floor_ids)
            .bind::<Array<BigInt>, _>(floors.mark_ids)
            .bind::<Array<BigInt>, _>(floors.mark_xmaxes),
        );
    }
    if numbered.olds.is_empty() {
        return Ok(round);
    }
    // The batch's range of placeholders, so that whatever plan runs the updates below
    // (one kept per connection) reads only it, not the feeds' numbered rows or the dead
    // versions below the floors.
    let lowest = numbered.olds.iter().copied().min().unwrap_or(0);
    let highest = numbered.olds.iter().copied().max().unwrap_or(0);
    let Numbered {
        feeds,
        olds,
        seqs,
        payloads,
        members,
        member_olds,
        member_seqs,
    } = numbered;
    conn.defer(
        diesel::sql_query(
            "UPDATE events AS e SET seq = m.seq, payload = m.payload \
         FROM unnest($1, $2, $3, $4) AS m(audience_id, old, seq, payload) \
         WHERE e.audience_id = m.audience_id AND e.seq BETWEEN $5 AND $6 AND e.seq = m.old",
        )
        .bind::<Array<Text>, _>(feeds)
        .bind::<Array<BigInt>, _>(olds)
        .bind::<Array<BigInt>, _>(seqs)
        .bind::<Array<Text>, _>(payloads)
        .bind::<BigInt, _>(lowest)
        .bind::<BigInt, _>(highest),
    );
    if !members.is_empty() {
        // Members' feeds: the notifications made from these events learn their seqs.
        conn.defer(
            diesel::sql_query(
                "UPDATE notifications AS n SET event_seq = m.seq \
             FROM unnest($1, $2, $3) AS m(member_id, old, seq) \
             WHERE n.member_id = m.member_id AND n.event_seq < 0 \
             AND n.event_seq BETWEEN $4 AND $5 AND n.event_seq = m.old",
            )
            .bind::<Array<Text>, _>(members)
            .bind::<Array<BigInt>, _>(member_olds)
            .bind::<Array<BigInt>, _>(member_seqs)
            .bind::<BigInt, _>(lowest)
            .bind::<BigInt, _>(highest),
        );
    }
    conn.defer(
        diesel::sql_query(
            "UPDATE audience_seqs AS a SET last_seq = m.last_seq \
         FROM unnest($1, $2) AS m(audience_id, last_seq) WHERE a.audience_id = m.audience_id",
        )
        .bind::<Array<Text>, _>(counters.0)
        .bind::<Array<BigInt>, _>(counters.1),
    );
    Ok(round)
}

/// The floors a round moves, as the columns of one statement.
#[derive(Default)]
struct Floors {
    feeds: Vec<String>,
    floor_ids: Vec<i64>,
    mark_ids: Vec<i64>,
    mark_xmaxes: Vec<i64>,
}

impl Floors {
    fn push(&mut self, feed: &str, (floor_id, mark_id, mark_xmax): (i64, i64, i64)) {
        self.feeds.push(feed.to_string());
        self.floor_ids.push(floor_id);
        self.mark_ids.push(mark_id);
        self.mark_xmaxes.push(mark_xmax);
    }
}

/// The events a round numbers, as the columns of its updates: every event, and those of
/// members' feeds again for their notifications.
#[derive(Default)]
struct Numbered {
    feeds: Vec<String>,
    olds: Vec<i64>,
    seqs: Vec<i64>,
    payloads: Vec<String>,
    members: Vec<String>,
    member_olds: Vec<i64>,
    member_seqs: Vec<i64>,
}

impl Numbered {
    fn push(&mut self, feed: &str, old: i64, seq: i64, payload: String, member: bool) {
        self.feeds.push(feed.to_string());
        self.olds.push(old);
        self.seqs.push(seq);
        self.payloads.push(payload);
        if member {
            self.members.push(feed.to_string());
            self.member_olds.push(old);
            self.member_seqs.push(seq);
        }
    }
}
