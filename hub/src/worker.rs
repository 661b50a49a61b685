//! The loop of the hub's leased workers (webhook deliveries, steps delegated to outside
//! A2A agents): one per hub process, woken by a timer and by the notices of workspace
//! feeds (at most one look per [`MIN_NOTICE_GAP`]), it looks for the work this hub may
//! take and runs each item in a task of its own, at most [`LeasedWork::MAX_CONCURRENT`]
//! at once and never one item twice at once.
//! Which hub works on an item is decided by the item's own lease (a conditional update
//! each kind of work writes), under the owner id the loop gives it.

use std::collections::HashSet;
use std::hash::Hash;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::ctx::Ctx;
use crate::error::Result;

/// Least time between two looks that notices woke: under load every committed change
/// notifies the workspace feeds, and a look per notice (a query or two each) cost the
/// hub several percent of its CPU per step while finding nothing. Notices that come
/// meanwhile are taken by the one look that follows.
const MIN_NOTICE_GAP: Duration = Duration::from_millis(20);

/// What a leased worker works on: how it finds its items and what it does with each.
pub(crate) trait LeasedWork: Send + Sync + 'static {
    /// One item of work (a webhook, an A2A call).
    type Item: Send + 'static;
    /// An item is not started while one with the same key runs on this hub.
    type Key: Clone + Eq + Hash + Send + 'static;
    /// The work looked for, as the warning names it when the look fails.
    const WHAT: &'static str;
    /// Items one hub runs at once.
    const MAX_CONCURRENT: usize;

    /// How often the worker looks for work when no notice wakes it.
    fn poll_ms(ctx: &Ctx) -> u64;

    fn key(item: &Self::Item) -> Self::Key;

    /// The items this hub (`owner`) may take now.
    fn candidates(
        &self,
        ctx: &Ctx,
        owner: &str,
    ) -> impl Future<Output = Result<Vec<Self::Item>>> + Send;

    /// Works on one item until it is done for now, or until `shutdown` (then it gives
    /// up what it holds).
    fn run(
        &self,
        ctx: Ctx,
        owner: String,
        item: Self::Item,
        shutdown: CancellationToken,
    ) -> impl Future<Output = ()> + Send + 'static;
}

/// Runs the worker of `work` until `shutdown`, then waits for the items under way to stop.
pub(crate) async fn run_leased<W: LeasedWork>(ctx: Ctx, work: W, shutdown: CancellationToken) {
    let owner = format!("hub-{}", uuid::Uuid::new_v4());
    let in_flight: Arc<Mutex<HashSet<W::Key>>> = Arc::default();
    let mut running = JoinSet::new();
    let mut ticker = tokio::time::interval(Duration::from_millis(W::poll_ms(&ctx).max(1)));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut notices = ctx.bus.workspace_feed_notices();
    let mut last_look = Instant::now();
    loop {
        tokio::select! {
            () = shutdown.cancelled() => break,
            _ = ticker.tick() => {}
            Ok(()) = notices.changed() => {
                tokio::select! {
                    () = shutdown.cancelled() => break,
                    () = tokio::time::sleep_until(last_look + MIN_NOTICE_GAP) => {}
                }
            }
        }
        last_look = Instant::now();
        while running.try_join_next().is_some() {}
        let items = match work.candidates(&ctx, &owner).await {
            Ok(items) => items,
            Err(err) => {
                tracing::warn!(error = %err, "cannot look for {}; retrying", W::WHAT);
                continue;
            }
        };
        for item in items {
            if running.len() >= W::MAX_CONCURRENT {
                break;
            }
            let key = W::key(&item);
            if !in_flight
                .lock()
                .expect("in-flight lock")
                .insert(key.clone())
            {
                continue;
            }
            let job = work.run(ctx.clone(), owner.clone(), item, shutdown.clone());
            let in_flight = Arc::clone(&in_flight);
            running.spawn(async move {
                job.await;
                in_flight.lock().expect("in-flight lock").remove(&key);
            });
        }
    }
    while running.join_next().await.is_some() {}
}
