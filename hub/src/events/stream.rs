//! Following an audience's events live, for the event streams: replay from the outbox
//! after a given `seq`, then live events from the bus with no seam and no duplicate.
//!
//! The gap rule is the agent gateway's: a notice is forwarded only when it is the next
//! `seq`; a gap, a dropped notice (the subscription's `lagged` flag) or a Redis outage
//! (polling) makes the follower read the outbox from its next `seq`. Each follower
//! hands its events to the reader through a bounded queue: a reader that leaves it full
//! for [`StreamLimits::slow_reader_ms`] is cut off (it resumes from its last id), so
//! nothing is ever buffered without bound. [`Streams`] counts the open streams for the
//! limits and ends them all when the hub shuts down.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Deserialize;
use tokio::sync::mpsc;
use tokio::sync::mpsc::error::SendTimeoutError;
use tokio_util::sync::CancellationToken;

use crate::accounts::Actor;
use crate::bus::{Notice, Subscription};
use crate::ctx::Ctx;
use crate::error::{Error, Result};
use crate::events::{self, EventRow, feed, model};

/// Events read from the outbox per query during replay and catch-up.
const PAGE: u32 = 500;
/// How often a follower checks for dropped notices and, with Redis, for a bus outage.
const CHECK_INTERVAL: Duration = Duration::from_secs(1);
/// Notices queued on the bus for one follower; past it the follower reads the outbox.
const BUS_QUEUE: usize = 64;

/// Limits and timings of the event streams.
#[derive(Debug, Clone)]
pub struct StreamLimits {
    /// Interval of the keep-alive comment lines.
    pub keep_alive_ms: u64,
    /// The reconnection delay sent to clients (`retry:`).
    pub retry_ms: u64,
    /// Open streams per API key or agent token.
    pub max_per_key: usize,
    /// Open streams per hub process.
    pub max_per_hub: usize,
    /// Events queued for one stream's reader.
    pub queue: usize,
    /// How long a full queue may wait for its reader before the stream is cut.
    pub slow_reader_ms: u64,
}

impl Default for StreamLimits {
    fn default() -> Self {
        StreamLimits {
            keep_alive_ms: 15_000,
            retry_ms: 3_000,
            max_per_key: 16,
            max_per_hub: 10_000,
            queue: 256,
            slow_reader_ms: 10_000,
        }
    }
}

/// One event as a stream sends it: the outbox row or a live notice.
#[derive(Debug, Clone)]
pub struct StreamEvent {
    pub seq: u64,
    pub event_type: String,
    /// The event's JSON, exactly as stored in the outbox.
    pub payload: Arc<str>,
    /// Unix milliseconds.
    pub created_at: i64,
}

impl From<EventRow> for StreamEvent {
    fn from(row: EventRow) -> Self {
        StreamEvent {
            seq: row.seq as u64,
            event_type: row.event_type,
            payload: Arc::from(row.payload.as_str()),
            created_at: row.created_at,
        }
    }
}

/// The open streams of this hub process, by key, and the signal that ends them.
#[derive(Debug, Default)]
pub struct Streams {
    open: Mutex<OpenStreams>,
    shutdown: CancellationToken,
}

#[derive(Debug, Default)]
struct OpenStreams {
    total: usize,
    by_key: HashMap<String, usize>,
}

/// An open stream counted against the limits until dropped.
#[derive(Debug)]
pub struct StreamPermit {
    streams: Arc<Streams>,
    key: String,
}

impl Drop for StreamPermit {
    fn drop(&mut self) {
        let mut open = self.streams.open.lock().expect("streams lock");
        open.total = open.total.saturating_sub(1);
        if let Some(n_open) = open.by_key.get_mut(&self.key) {
            *n_open = n_open.saturating_sub(1);
            if *n_open == 0 {
                open.by_key.remove(&self.key);
            }
        }
    }
}

impl Streams {
    /// Counts a new stream of `key`, or refuses it past a limit (`429 rate_limited`).
    pub fn admit(self: &Arc<Self>, key: &str, limits: &StreamLimits) -> Result<StreamPermit> {
        if self.shutdown.is_cancelled() {
            return Err(Error::TooManyStreams(
                "this hub is shutting down; reconnect to another one".into(),
            ));
        }
        let mut open = self.open.lock().expect("streams lock");
        if open.total >= limits.max_per_hub {
            return Err(Error::TooManyStreams(format!(
                "this hub serves at most {} event streams; retry later",
                limits.max_per_hub
            )));
        }
        let n_of_key = open.by_key.get(key).copied().unwrap_or(0);
        if n_of_key >= limits.max_per_key {
            return Err(Error::TooManyStreams(format!(
                "at most {} event streams may be open per API key or agent token on one \
                 hub; close one first",
                limits.max_per_key
            )));
        }
        open.total += 1;
        open.by_key.insert(key.to_string(), n_of_key + 1);
        Ok(StreamPermit {
            streams: Arc::clone(self),
            key: key.to_string(),
        })
    }

    /// Number of open streams of this hub.
    pub fn len(&self) -> usize {
        self.open.lock().expect("streams lock").total
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Ends every stream of this hub (shutdown: clients reconnect elsewhere and resume)
    /// and refuses new ones.
    pub fn close_all(&self) {
        self.shutdown.cancel();
    }
}

/// Why a follower stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stop {
    /// The reader went away.
    Gone,
    /// The reader left its queue full for too long.
    Slow,
    /// The hub is shutting down.
    Shutdown,
    /// The outbox could not be read.
    Storage,
}

/// Follows the caller's events (a member's or an agent's) after `after`, counted
/// against the stream limits under `key`; see [`follow`].
pub async fn follow_audience(
    ctx: &Ctx,
    actor: &Actor,
    key: &str,
    after: u64,
) -> Result<mpsc::Receiver<StreamEvent>> {
    let permit = ctx.streams.admit(key, &ctx.settings.streams)?;
    Ok(follow(ctx, actor.audience_id(), after, permit))
}

/// Follows a task's feed ([`feed`]) after `after`, for any caller of its workspace,
/// counted against the stream limits under `key`; see [`follow`].
pub async fn follow_task(
    ctx: &Ctx,
    actor: &Actor,
    task_id: &str,
    key: &str,
    after: u64,
) -> Result<mpsc::Receiver<StreamEvent>> {
    let exists = ctx
        .store
        .read(async |db| {
            Ok::<_, Error>(model::task_exists(db, actor.workspace_id(), task_id).await?)
        })
        .await?;
    if !exists {
        return Err(Error::not_found(format!("task `{task_id}`")));
    }
    let permit = ctx.streams.admit(key, &ctx.settings.streams)?;
    Ok(follow(ctx, &feed::audience_id(task_id), after, permit))
}

/// Follows the events of `audience_id` after `after`: the returned queue gets the
/// outbox's events from `after + 1` on, then live ones, in `seq` order with no gap and
/// no duplicate. The queue closes when the hub shuts down, the outbox cannot be read,
/// or the reader leaves it full for too long; dropping it stops the follower. An `after`
/// beyond the audience's last `seq` (a database reset) follows from that last `seq`.
fn follow(
    ctx: &Ctx,
    audience_id: &str,
    after: u64,
    permit: StreamPermit,
) -> mpsc::Receiver<StreamEvent> {
    let limits = &ctx.settings.streams;
    let (sender, receiver) = mpsc::channel(limits.queue.max(1));
    // Subscribe before anything is read: nothing committed from here on is missed.
    let subscription = ctx.bus.subscribe(audience_id, BUS_QUEUE);
    let follower = Follower {
        ctx: ctx.clone(),
        audience_id: audience_id.to_string(),
        next_seq: after.saturating_add(1),
        sender,
        slow_reader: Duration::from_millis(limits.slow_reader_ms.max(1)),
    };
    tokio::spawn(follower.run(subscription, after, permit));
    receiver
}

struct Follower {
    ctx: Ctx,
    audience_id: String,
    next_seq: u64,
    sender: mpsc::Sender<StreamEvent>,
    slow_reader: Duration,
}

impl Follower {
    async fn run(mut self, mut subscription: Subscription, after: u64, permit: StreamPermit) {
        let shutdown = permit.streams.shutdown.clone();
        let reader = self.sender.clone();
        let stop = tokio::select! {
            stop = self.serve(&mut subscription, after) => stop,
            () = shutdown.cancelled() => Stop::Shutdown,
            () = reader.closed() => Stop::Gone,
        };
        self.ctx
            .bus
            .unsubscribe(&subscription.audience_id, subscription.id);
        match stop {
            Stop::Slow => tracing::info!(
                audience.id = %self.audience_id,
                next_seq = self.next_seq,
                "event stream cut: its reader is too slow"
            ),
            Stop::Shutdown => tracing::debug!(
                audience.id = %self.audience_id,
                "event stream ended: the hub is shutting down"
            ),
            Stop::Gone | Stop::Storage => {}
        }
        drop(permit);
    }

    async fn serve(&mut self, subscription: &mut Subscription, after: u64) -> Stop {
        match events::last_seq(&self.ctx.store, &self.audience_id).await {
            Ok(last_seq) if after > last_seq => self.next_seq = last_seq + 1,
            Ok(_) => {}
            Err(err) => {
                tracing::warn!(error = %err, "cannot read an audience's last seq");
                return Stop::Storage;
            }
        }
        if let Err(stop) = self.catch_up().await {
            return stop;
        }
        let mut checks = tokio::time::interval(CHECK_INTERVAL);
        checks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // Whether the last check found the Redis bus down: events committed between that
        // check and the bus's return were published to nobody, so the check after it
        // reads the outbox once more.
        let mut bus_was_down = false;
        loop {
            let res = tokio::select! {
                notice = subscription.receiver.recv() => match notice {
                    Some(notice) => self.deliver(&notice).await,
                    None => return Stop::Gone,
                },
                _ = checks.tick() => {
                    let lagged = subscription.lagged.swap(false, Ordering::Relaxed);
                    let bus_down = self.ctx.remote.as_ref().is_some_and(|remote| !remote.healthy());
                    let missed = std::mem::replace(&mut bus_was_down, bus_down);
                    if lagged || bus_down || missed {
                        self.catch_up().await
                    } else {
                        Ok(())
                    }
                }
            };
            if let Err(stop) = res {
                return stop;
            }
        }
    }

    /// Forwards a live event, or reads the outbox when it reveals a gap.
    async fn deliver(&mut self, notice: &Notice) -> std::result::Result<(), Stop> {
        if notice.seq < self.next_seq {
            return Ok(());
        }
        if notice.seq > self.next_seq {
            return self.catch_up().await;
        }
        let Some(event_type) = type_of(&notice.payload) else {
            tracing::error!(seq = notice.seq, "an event without a type on the bus");
            return self.catch_up().await;
        };
        let event = StreamEvent {
            seq: notice.seq,
            event_type,
            payload: Arc::clone(&notice.payload),
            created_at: notice.created_at,
        };
        self.send(event).await
    }

    /// Sends every event of the outbox from `next_seq` on.
    async fn catch_up(&mut self) -> std::result::Result<(), Stop> {
        loop {
            let rows =
                events::list_after(&self.ctx.store, &self.audience_id, self.next_seq - 1, PAGE)
                    .await
                    .map_err(|err| {
                        tracing::warn!(error = %err, "cannot read the outbox");
                        Stop::Storage
                    })?;
            let n_rows = rows.len();
            for row in rows {
                self.send(StreamEvent::from(row)).await?;
            }
            if n_rows < PAGE as usize {
                return Ok(());
            }
        }
    }

    /// Queues an event for the reader, waiting at most `slow_reader` for room.
    async fn send(&mut self, event: StreamEvent) -> std::result::Result<(), Stop> {
        let seq = event.seq;
        match self.sender.send_timeout(event, self.slow_reader).await {
            Ok(()) => {
                self.next_seq = seq + 1;
                Ok(())
            }
            Err(SendTimeoutError::Timeout(_)) => Err(Stop::Slow),
            Err(SendTimeoutError::Closed(_)) => Err(Stop::Gone),
        }
    }
}

/// The `type` of an event's JSON.
fn type_of(payload: &str) -> Option<String> {
    #[derive(Deserialize)]
    struct Head {
        #[serde(rename = "type")]
        event_type: String,
    }
    serde_json::from_str::<Head>(payload)
        .ok()
        .map(|head| head.event_type)
}
