//! The shared state of a hub process that domain functions need beyond the database:
//! the bus, presence and the protocol settings.

use std::path::PathBuf;
use std::sync::Arc;

use crate::a2a::client::A2aClientSettings;
use crate::agents::Presence;
use crate::bus::redis::RedisBus;
use crate::bus::{Bus, Notice};
use crate::events::Written;
use crate::events::staged::Numberer;
use crate::events::stream::{StreamLimits, Streams};
use crate::gateway::registry::Sessions;
use crate::metrics::Metrics;
use crate::store::Store;
use crate::tasks::Writes;
use crate::webhooks::WebhookSettings;
use crate::webhooks::deliver::Sender;

/// Timings and limits of the agent protocol and uploads.
#[derive(Debug, Clone)]
pub struct Settings {
    /// How long a claim or a `step.progress` holds a step.
    pub lease_ms: u64,
    /// How often the hub pings a session.
    pub heartbeat_interval_ms: u64,
    /// Silence after which a session is closed.
    pub heartbeat_timeout_ms: u64,
    /// Largest accepted agent frame.
    pub max_frame_bytes: usize,
    /// Sustained frames per second per session.
    pub max_frames_per_s: u32,
    /// Frames queued for a session before it is closed as too slow.
    pub session_queue: usize,
    /// Largest accepted upload.
    pub max_upload_bytes: u64,
    /// Where uploads are stored (`uploads/YYYY/MM/…` below it).
    pub data_dir: PathBuf,
    /// Time a connection has to finish its TLS handshake and send a request's headers
    /// (also how long an idle keep-alive connection stays open); 0: no limit.
    pub header_timeout_ms: u64,
    /// Time a JSON request body has to arrive whole, and the longest pause within an
    /// upload's body; 0: no limit.
    pub body_timeout_ms: u64,
    /// Connections that have not yet sent a complete request; admitting one more closes
    /// the oldest of them. 0: no cap.
    pub max_pending_connections: usize,
    /// Sustained REST requests per second per token (bursts up to 5 s worth); 0: off.
    pub rate_limit_per_key: u32,
    /// Sustained REST requests per second per client address (bursts up to 5 s worth);
    /// 0: off.
    pub rate_limit_per_address: u32,
    /// Days a read notification is kept before the sweep deletes it; 0: forever.
    pub notification_retention_days: u32,
    /// Limits and timings of the event streams.
    pub streams: StreamLimits,
    /// Timings and limits of webhook delivery.
    pub webhooks: WebhookSettings,
    /// Timings and limits of steps delegated to outside A2A agents.
    pub a2a: A2aClientSettings,
    /// The base URL people reach this hub at (sign-in links); an `https://` URL marks the
    /// session cookie `Secure`.
    pub public_url: String,
}

/// Default lease of a claimed step: an agent that vanishes without a close frame has its
/// step pushed to another assignee after at most this plus one sweep interval. Agents
/// renew it with `step.progress` every third of it.
pub const DEFAULT_LEASE_MS: u64 = 25_000;

/// The public URL of a hub on the default listen address.
pub const DEFAULT_PUBLIC_URL: &str = "http://127.0.0.1:7700";

impl Default for Settings {
    fn default() -> Self {
        Settings {
            lease_ms: DEFAULT_LEASE_MS,
            heartbeat_interval_ms: 15_000,
            heartbeat_timeout_ms: 45_000,
            max_frame_bytes: 1024 * 1024,
            max_frames_per_s: 200,
            session_queue: 1024,
            max_upload_bytes: 100 * 1024 * 1024,
            data_dir: PathBuf::from("."),
            header_timeout_ms: 10_000,
            body_timeout_ms: 30_000,
            max_pending_connections: 512,
            rate_limit_per_key: 100,
            rate_limit_per_address: 500,
            notification_retention_days: 30,
            streams: StreamLimits::default(),
            webhooks: WebhookSettings::default(),
            a2a: A2aClientSettings::default(),
            public_url: DEFAULT_PUBLIC_URL.to_string(),
        }
    }
}

/// Everything a domain function may touch. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Ctx {
    pub store: Store,
    pub bus: Arc<Bus>,
    /// The live agent sessions of this hub process, as the domain reads them: the same
    /// registry as `sessions`.
    pub presence: Arc<dyn Presence>,
    /// The live agent sessions of this hub process, for the gateway.
    pub sessions: Arc<Sessions>,
    /// Open event streams of this hub process.
    pub streams: Arc<Streams>,
    pub settings: Arc<Settings>,
    pub metrics: Arc<Metrics>,
    /// Fan-out to the other hub processes, when several share a database.
    pub remote: Option<Arc<RedisBus>>,
    /// The HTTP client of webhook deliveries.
    pub webhook_sender: Arc<Sender>,
    /// Numbers the events this hub's changes staged ([`crate::events::staged`]).
    pub numberer: Arc<Numberer>,
    /// The task creations, claims and submits of this hub process on SQLite, run in
    /// batches (one transaction for those that queue while the one before runs).
    pub writes: Arc<Writes>,
}

impl Ctx {
    pub fn new(store: Store, settings: Settings) -> Self {
        let sessions = Arc::new(Sessions::default());
        let metrics = Arc::new(Metrics::for_store(&store));
        Ctx {
            store,
            bus: Arc::default(),
            presence: Arc::clone(&sessions) as Arc<dyn Presence>,
            sessions,
            streams: Arc::default(),
            settings: Arc::new(settings),
            metrics,
            remote: None,
            webhook_sender: Arc::default(),
            numberer: Arc::default(),
            writes: Arc::default(),
        }
    }

    /// Connects this hub to the others through Redis (`prefix` namespaces its keys).
    pub fn with_redis(mut self, url: &str, prefix: &str) -> Result<Self, String> {
        self.remote = Some(RedisBus::start(url, prefix, Arc::clone(&self.bus))?);
        Ok(self)
    }

    /// Publishes committed events to live sessions, and numbers the events staged for
    /// numbering ([`crate::events::staged`]): returns once they are numbered and
    /// published too, so whoever asked for the change finds its events.
    pub async fn publish(&self, written: Written) {
        self.publish_numbered(written.notices);
        if !written.staged_feeds.is_empty() {
            self.numberer.number(self, written.staged_feeds).await;
        }
    }

    /// Publishes committed, numbered events to live sessions.
    pub fn publish_numbered(&self, notices: Vec<Notice>) {
        self.metrics.events_written.inc_by(notices.len() as u64);
        if let Some(remote) = &self.remote {
            remote.publish(&notices);
        }
        self.bus.publish(notices);
    }
}
