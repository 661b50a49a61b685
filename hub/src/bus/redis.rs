//! Fan-out between hub processes through Redis pub/sub.
//!
//! A committed event is delivered to this hub's sessions at once (the local [`Bus`]) and
//! published on one Redis channel with the id of the hub that wrote it; every other hub's
//! subscriber delivers it to its local sessions. Publishing never blocks a request: notices
//! go through a bounded queue to one publisher task that pipelines them. When Redis is
//! down the bus reports itself unhealthy (sessions then poll the outbox) and both tasks
//! reconnect by themselves. A lost message costs latency, never an event: sessions read
//! the outbox when they see a gap in `seq`.

use std::borrow::Cow;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use crate::bus::{Bus, Notice};

/// The channel every hub publishes to and subscribes on.
const CHANNEL_SUFFIX: &str = "events";

/// Notices waiting for the publisher task; beyond this they are dropped (and recovered
/// from the outbox by the sessions that miss them).
const PUBLISH_QUEUE: usize = 65_536;

#[derive(Debug, Serialize, Deserialize)]
struct WireNotice<'a> {
    /// The hub that committed the event.
    #[serde(rename = "o", borrow)]
    origin: Cow<'a, str>,
    #[serde(rename = "a", borrow)]
    audience_id: Cow<'a, str>,
    #[serde(rename = "s")]
    seq: u64,
    #[serde(rename = "p", borrow)]
    payload: Cow<'a, str>,
    /// When the event was committed (unix milliseconds; 0 from hubs that do not send it).
    #[serde(rename = "t", default)]
    created_at: i64,
}

/// The Redis side of the bus.
#[derive(Debug)]
pub struct RedisBus {
    origin: String,
    queue: mpsc::Sender<Notice>,
    publisher_healthy: Arc<AtomicBool>,
    subscriber_healthy: Arc<AtomicBool>,
}

impl RedisBus {
    /// Starts the publisher and subscriber tasks. `prefix` namespaces the channel
    /// (tests use one per test). Returns at once; connection problems surface as
    /// [`RedisBus::healthy`] being false and are retried in the background.
    pub fn start(url: &str, prefix: &str, local: Arc<Bus>) -> Result<Arc<RedisBus>, String> {
        // `TCP_NODELAY`: a `PUBLISH` is a small write and must not wait (Nagle) for the
        // acknowledgement of the previous one.
        let info = redis::IntoConnectionInfo::into_connection_info(url)
            .map_err(|err| format!("invalid redis url: {err}"))?
            .set_tcp_settings(redis::io::tcp::TcpSettings::default().set_nodelay(true));
        let client =
            redis::Client::open(info.clone()).map_err(|err| format!("invalid redis url: {err}"))?;
        let manager = deadpool_redis::Manager::new(info)
            .map_err(|err| format!("invalid redis url: {err}"))?;
        let pool = deadpool_redis::Pool::builder(manager)
            .runtime(deadpool_redis::Runtime::Tokio1)
            .build()
            .map_err(|err| format!("redis pool: {err}"))?;
        let (queue, receiver) = mpsc::channel(PUBLISH_QUEUE);
        let bus = Arc::new(RedisBus {
            origin: uuid::Uuid::now_v7().to_string(),
            queue,
            publisher_healthy: Arc::new(AtomicBool::new(false)),
            subscriber_healthy: Arc::new(AtomicBool::new(false)),
        });
        let channel = format!("{prefix}{CHANNEL_SUFFIX}");
        tokio::spawn(publish_loop(
            pool,
            channel.clone(),
            bus.origin.clone(),
            receiver,
            Arc::clone(&bus.publisher_healthy),
        ));
        tokio::spawn(subscribe_loop(
            client,
            channel,
            bus.origin.clone(),
            local,
            Arc::clone(&bus.subscriber_healthy),
        ));
        Ok(bus)
    }

    /// Queues notices for the other hubs. Never blocks.
    pub fn publish(&self, notices: &[Notice]) {
        for notice in notices {
            if self.queue.try_send(notice.clone()).is_err() {
                tracing::warn!(
                    "redis publish queue full; sessions on other hubs will catch up from the outbox"
                );
                return;
            }
        }
    }

    /// Whether both the publisher and the subscriber are connected.
    pub fn healthy(&self) -> bool {
        self.publisher_healthy.load(Ordering::Relaxed)
            && self.subscriber_healthy.load(Ordering::Relaxed)
    }

    /// The id of this hub process on the bus.
    pub fn origin(&self) -> &str {
        &self.origin
    }
}

/// Notices kept for the next attempt while Redis cannot be reached.
const MAX_UNSENT: usize = 10_000;

async fn publish_loop(
    pool: deadpool_redis::Pool,
    channel: String,
    origin: String,
    mut receiver: mpsc::Receiver<Notice>,
    healthy: Arc<AtomicBool>,
) {
    let mut batch: Vec<Notice> = Vec::with_capacity(256);
    // Idle hubs still check Redis, so health (and the sessions' polling fallback) follows
    // the server's state.
    let mut check = tokio::time::interval(Duration::from_millis(500));
    check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            notice = receiver.recv() => {
                let Some(notice) = notice else { return };
                batch.push(notice);
                let mut n_taken = 1;
                while n_taken < 256 {
                    match receiver.try_recv() {
                        Ok(notice) => batch.push(notice),
                        Err(_) => break,
                    }
                    n_taken += 1;
                }
            }
            _ = check.tick() => {}
        }
        let mut pipe = redis::pipe();
        if batch.is_empty() {
            pipe.cmd("PING").ignore();
        }
        for notice in &batch {
            let wire = WireNotice {
                origin: Cow::Borrowed(&origin),
                audience_id: Cow::Borrowed(&notice.audience_id),
                seq: notice.seq,
                payload: Cow::Borrowed(&notice.payload),
                created_at: notice.created_at,
            };
            let message = serde_json::to_string(&wire).unwrap_or_default();
            pipe.cmd("PUBLISH").arg(&channel).arg(message).ignore();
        }
        let sent = match pool.get().await {
            Ok(mut conn) => pipe
                .query_async::<()>(&mut conn)
                .await
                .map_err(|err| err.to_string()),
            Err(err) => Err(err.to_string()),
        };
        match sent {
            Ok(()) => {
                batch.clear();
                if !healthy.swap(true, Ordering::Relaxed) {
                    tracing::info!("redis publisher connected");
                }
            }
            Err(err) => {
                // Sent again with the next attempt: another hub that is already back on the
                // bus (so no longer polling) would otherwise miss these until its next
                // event. The outbox has them all; past the cap the oldest go, and such a
                // session notices the gap with its next event.
                if batch.len() > MAX_UNSENT {
                    batch.drain(..batch.len() - MAX_UNSENT);
                }
                if healthy.swap(false, Ordering::Relaxed) {
                    tracing::warn!(error = %err, "redis publish failed; sessions fall back to polling the outbox");
                }
            }
        }
    }
}

async fn subscribe_loop(
    client: redis::Client,
    channel: String,
    origin: String,
    local: Arc<Bus>,
    healthy: Arc<AtomicBool>,
) {
    let mut backoff = Duration::from_millis(100);
    loop {
        let connected = async {
            let mut pubsub = client.get_async_pubsub().await?;
            pubsub.subscribe(&channel).await?;
            redis::RedisResult::Ok(pubsub)
        }
        .await;
        let pubsub = match connected {
            Ok(pubsub) => pubsub,
            Err(err) => {
                if healthy.swap(false, Ordering::Relaxed) {
                    tracing::warn!(error = %err, "redis subscriber disconnected; retrying");
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
                continue;
            }
        };
        if !healthy.swap(true, Ordering::Relaxed) {
            tracing::info!("redis subscriber connected");
        }
        backoff = Duration::from_millis(100);
        let mut messages = pubsub.into_on_message();
        while let Some(message) = messages.next().await {
            let Ok(text) = message.get_payload::<String>() else {
                continue;
            };
            let Ok(wire) = serde_json::from_str::<WireNotice<'_>>(&text) else {
                continue;
            };
            if wire.origin == origin {
                continue;
            }
            local.publish(vec![Notice::new(
                wire.audience_id.into_owned(),
                wire.seq,
                Arc::from(wire.payload.as_ref()),
                wire.created_at,
            )]);
        }
        // The stream ends when the connection drops (DEPS trap 11): reconnect.
        healthy.store(false, Ordering::Relaxed);
        tracing::warn!("redis subscription ended; reconnecting");
    }
}
