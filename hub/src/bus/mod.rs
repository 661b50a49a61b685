//! Fan-out of committed events to live sessions.
//!
//! The outbox is the source of truth; the bus only carries wake-ups (with the event, so a
//! session that is in step can forward it without a query). A session that sees a gap in
//! `seq` reads the outbox, so a lost notice costs latency, never an event.

pub mod redis;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock, RwLock};

use bytes::Bytes;
use tokio::sync::mpsc;

use crate::error::Result;

/// One committed event for one audience.
#[derive(Debug, Clone)]
pub struct Notice {
    pub audience_id: String,
    pub seq: u64,
    /// The event frame as JSON, exactly as stored in the outbox.
    pub payload: Arc<str>,
    /// When the event was committed (unix milliseconds), as stored in the outbox.
    pub created_at: i64,
    /// The event frame as MessagePack, encoded once however many sessions send it.
    msgpack: OnceLock<Bytes>,
}

impl Notice {
    pub fn new(audience_id: String, seq: u64, payload: Arc<str>, created_at: i64) -> Notice {
        Notice {
            audience_id,
            seq,
            payload,
            created_at,
            msgpack: OnceLock::new(),
        }
    }

    /// Gives the notice its MessagePack encoding (the outbox encodes an agent's events
    /// as it writes them).
    pub fn set_msgpack(&self, bytes: Bytes) {
        let _set_before = self.msgpack.set(bytes);
    }

    /// The event as MessagePack: as set, or encoded from the JSON at the first call.
    pub fn msgpack(&self) -> Result<Bytes> {
        if let Some(bytes) = self.msgpack.get() {
            return Ok(bytes.clone());
        }
        let bytes = crate::events::msgpack_of_json(&self.payload)?;
        Ok(self.msgpack.get_or_init(|| bytes).clone())
    }
}

type Senders = Vec<(u64, mpsc::Sender<Arc<Notice>>, Arc<AtomicBool>)>;

/// In-process fan-out: sessions of this hub subscribe by audience id.
#[derive(Debug, Default)]
pub struct Bus {
    subscribers: RwLock<HashMap<String, Senders>>,
    next_subscription: std::sync::atomic::AtomicU64,
    /// Counts the publishes that carried a notice of a workspace feed: each leased worker
    /// (webhooks, A2A) watches it with a receiver of its own, so every worker sees every
    /// wake-up (a `Notify` woke only one of them).
    workspace_feeds: tokio::sync::watch::Sender<u64>,
}

/// A subscription; dropping it (or calling [`Bus::unsubscribe`]) ends delivery.
#[derive(Debug)]
pub struct Subscription {
    pub audience_id: String,
    pub id: u64,
    /// Shared notices: a clone per subscriber is a pointer, and an idle subscription's
    /// queue (one block of 32 slots allocated up front) costs 32 pointers.
    pub receiver: mpsc::Receiver<Arc<Notice>>,
    /// Set when a notice was dropped because the queue was full: read the outbox.
    pub lagged: Arc<AtomicBool>,
}

impl Bus {
    /// Delivers notices to local subscribers. Never blocks: a subscriber whose queue is
    /// full misses the notice and catches up from the outbox when it sees the gap.
    pub fn publish(&self, notices: Vec<Notice>) {
        if notices.is_empty() {
            return;
        }
        if notices.iter().any(|notice| {
            notice
                .audience_id
                .starts_with(crate::events::feed::WORKSPACE_PREFIX)
        }) {
            // A change between two waits of a receiver is seen by its next wait.
            self.workspace_feeds.send_modify(|n| *n = n.wrapping_add(1));
        }
        let subscribers = self.subscribers.read().expect("bus lock");
        for notice in notices {
            if let Some(senders) = subscribers.get(&notice.audience_id) {
                let notice = Arc::new(notice);
                for (_, sender, lagged) in senders {
                    if sender.try_send(Arc::clone(&notice)).is_err() {
                        // Recovered from the outbox by the subscriber.
                        lagged.store(true, Ordering::Relaxed);
                    }
                }
            }
        }
    }

    /// Subscribes to the events of one audience, with a queue of `capacity` notices.
    pub fn subscribe(&self, audience_id: &str, capacity: usize) -> Subscription {
        let (sender, receiver) = mpsc::channel(capacity.max(1));
        let lagged = Arc::new(AtomicBool::new(false));
        let id = self
            .next_subscription
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.subscribers
            .write()
            .expect("bus lock")
            .entry(audience_id.to_string())
            .or_default()
            .push((id, sender, Arc::clone(&lagged)));
        Subscription {
            audience_id: audience_id.to_string(),
            id,
            receiver,
            lagged,
        }
    }

    /// A receiver that sees each publish carrying a notice of a workspace feed
    /// (`changed()` resolves at once when one came since the last look). For the leased
    /// workers of this hub.
    pub fn workspace_feed_notices(&self) -> tokio::sync::watch::Receiver<u64> {
        self.workspace_feeds.subscribe()
    }

    pub fn unsubscribe(&self, audience_id: &str, subscription_id: u64) {
        let mut subscribers = self.subscribers.write().expect("bus lock");
        if let Some(senders) = subscribers.get_mut(audience_id) {
            senders.retain(|(id, _, _)| *id != subscription_id);
            if senders.is_empty() {
                subscribers.remove(audience_id);
            }
        }
    }
}
