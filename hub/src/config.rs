//! Configuration of a hub process, built in one place from flags and `AGENTHUB_*`
//! environment variables (flags win). docs/operations.md lists every one.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Args;

use crate::a2a::client::A2aClientSettings;
use crate::ctx::Settings;
use crate::events::stream::StreamLimits;
use crate::store::{Store, StoreOptions};
use crate::webhooks::WebhookSettings;

/// Where the data lives.
#[derive(Clone, Args)]
pub struct DbArgs {
    /// Data directory of the embedded default (SQLite file and uploads).
    /// Default: the platform data dir (e.g. ~/.local/share/agenthub).
    #[arg(long, env = "AGENTHUB_DATA_DIR", global = true)]
    pub data_dir: Option<PathBuf>,
    /// `postgres://…` to use PostgreSQL instead of the embedded SQLite file.
    #[arg(
        long,
        env = "AGENTHUB_DATABASE_URL",
        global = true,
        hide_env_values = true
    )]
    pub database_url: Option<String>,
    /// Connections in the PostgreSQL pool.
    #[arg(
        long,
        env = "AGENTHUB_DB_POOL_SIZE",
        default_value_t = 16,
        global = true
    )]
    pub db_pool_size: usize,
}

impl fmt::Debug for DbArgs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DbArgs")
            .field("data_dir", &self.data_dir)
            .field(
                "database_url",
                &self.database_url.as_ref().map(|_| "<redacted>"),
            )
            .field("db_pool_size", &self.db_pool_size)
            .finish()
    }
}

impl DbArgs {
    /// The data directory: the flag, or the platform default.
    pub fn data_dir(&self) -> anyhow::Result<PathBuf> {
        if let Some(dir) = &self.data_dir {
            return Ok(dir.clone());
        }
        let dirs = directories::ProjectDirs::from("dev", "agenthub", "agenthub")
            .ok_or_else(|| anyhow::anyhow!("cannot find a home directory; pass --data-dir"))?;
        Ok(dirs.data_dir().to_path_buf())
    }

    /// Opens the store (not yet migrated).
    pub fn open_store(&self) -> anyhow::Result<Store> {
        let data_dir = self.data_dir()?;
        let store = match &self.database_url {
            Some(url) => Store::connect(
                url,
                &StoreOptions {
                    pg_pool_size: self.db_pool_size,
                    ..StoreOptions::default()
                },
            )?,
            None => Store::open_data_dir(&data_dir).map_err(|err| {
                anyhow::anyhow!(
                    "cannot open the data directory {}: {err}",
                    data_dir.display()
                )
            })?,
        };
        Ok(store)
    }
}

/// A URL that may carry a password: `Debug` never shows it.
#[derive(Clone)]
pub struct SecretUrl(pub String);

impl std::str::FromStr for SecretUrl {
    type Err = std::convert::Infallible;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Ok(SecretUrl(text.to_string()))
    }
}

impl fmt::Debug for SecretUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// `agenthub serve` settings.
#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "AGENTHUB_LISTEN", default_value = "127.0.0.1:7700")]
    pub listen: SocketAddr,
    /// How long a claim or a `step.progress` holds a step, in milliseconds.
    #[arg(long, env = "AGENTHUB_LEASE_MS", default_value_t = crate::ctx::DEFAULT_LEASE_MS)]
    pub lease_ms: u64,
    /// Interval of server pings to agents, in milliseconds.
    #[arg(long, env = "AGENTHUB_HEARTBEAT_INTERVAL_MS", default_value_t = 15_000)]
    pub heartbeat_interval_ms: u64,
    /// Silence after which an agent session is closed, in milliseconds.
    #[arg(long, env = "AGENTHUB_HEARTBEAT_TIMEOUT_MS", default_value_t = 45_000)]
    pub heartbeat_timeout_ms: u64,
    /// Largest accepted agent frame, in bytes.
    #[arg(long, env = "AGENTHUB_MAX_FRAME_BYTES", default_value_t = 1024 * 1024)]
    pub max_frame_bytes: usize,
    /// Sustained frames per second accepted from one agent session (bursts up to twice).
    #[arg(long, env = "AGENTHUB_MAX_FRAMES_PER_S", default_value_t = 200)]
    pub max_frames_per_s: u32,
    /// Frames queued for one agent session before it is closed as too slow (`4002`).
    #[arg(long, env = "AGENTHUB_SESSION_QUEUE", default_value_t = 1024)]
    pub session_queue: usize,
    /// Largest accepted upload, in bytes.
    #[arg(long, env = "AGENTHUB_MAX_UPLOAD_BYTES", default_value_t = 100 * 1024 * 1024)]
    pub max_upload_bytes: u64,
    /// `redis://…`: fan out events and presence to the other hub processes on the same
    /// database. Without it, one hub process serves alone.
    #[arg(long, env = "AGENTHUB_REDIS_URL", hide_env_values = true)]
    pub redis_url: Option<SecretUrl>,
    /// PEM certificate chain: serve HTTPS/WSS with rustls (needs --tls-key).
    #[arg(long, env = "AGENTHUB_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key for --tls-cert.
    #[arg(long, env = "AGENTHUB_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// How often expired leases are returned to ready, in milliseconds.
    #[arg(long, env = "AGENTHUB_SWEEP_INTERVAL_MS", default_value_t = 1_000)]
    pub sweep_interval_ms: u64,
    /// Time a connection has to finish its TLS handshake and send a request's headers,
    /// and to stay idle between requests, in milliseconds (0: no limit).
    #[arg(long, env = "AGENTHUB_HEADER_TIMEOUT_MS", default_value_t = 10_000)]
    pub header_timeout_ms: u64,
    /// Time a JSON request body has to arrive whole, and the longest pause within an
    /// upload, in milliseconds (0: no limit).
    #[arg(long, env = "AGENTHUB_BODY_TIMEOUT_MS", default_value_t = 30_000)]
    pub body_timeout_ms: u64,
    /// Connections that have not yet sent a complete request; one more closes the oldest
    /// of them (0: no cap).
    #[arg(long, env = "AGENTHUB_MAX_PENDING_CONNECTIONS", default_value_t = 512)]
    pub max_pending_connections: usize,
    /// Sustained REST requests per second per API key or agent token, bursts up to 5 s
    /// worth (0: off).
    #[arg(long, env = "AGENTHUB_RATE_LIMIT_PER_KEY", default_value_t = 100)]
    pub rate_limit_per_key: u32,
    /// Sustained REST requests per second per client address, bursts up to 5 s worth
    /// (0: off).
    #[arg(long, env = "AGENTHUB_RATE_LIMIT_PER_ADDRESS", default_value_t = 500)]
    pub rate_limit_per_address: u32,
    /// Days a read notification is kept before the sweep deletes it (0: kept forever).
    #[arg(
        long,
        env = "AGENTHUB_NOTIFICATION_RETENTION_DAYS",
        default_value_t = 30
    )]
    pub notification_retention_days: u32,
    /// The base URL people reach this hub at, used in sign-in links (default: from
    /// --listen, `https://` with --tls-cert). An `https://` URL makes the dashboard's
    /// session cookie `Secure`.
    #[arg(long, env = "AGENTHUB_PUBLIC_URL")]
    pub public_url: Option<String>,
    #[command(flatten)]
    pub streams: StreamArgs,
    #[command(flatten)]
    pub webhooks: WebhookArgs,
    #[command(flatten)]
    pub a2a: A2aArgs,
}

/// Steps delegated to outside A2A agents (`"executor": "a2a"`).
#[derive(Debug, Clone, Args)]
pub struct A2aArgs {
    /// Allow Agent Cards and A2A endpoints on loopback, private, link-local, unique-local
    /// and other non-public addresses (refused by default, after DNS resolution).
    #[arg(long, env = "AGENTHUB_A2A_ALLOW_PRIVATE")]
    pub a2a_allow_private: bool,
    /// The first wait between two polls of a remote A2A task, in milliseconds (it doubles
    /// while nothing changes, up to --a2a-max-poll-ms).
    #[arg(
        long,
        env = "AGENTHUB_A2A_POLL_MS",
        default_value_t = 1_000,
        hide = true
    )]
    pub a2a_poll_ms: u64,
    /// The longest wait between two polls of a remote A2A task, in milliseconds.
    #[arg(
        long,
        env = "AGENTHUB_A2A_MAX_POLL_MS",
        default_value_t = 5_000,
        hide = true
    )]
    pub a2a_max_poll_ms: u64,
    /// The deadline of one call to an outside A2A agent, in milliseconds.
    #[arg(long, env = "AGENTHUB_A2A_TIMEOUT_MS", default_value_t = 15_000)]
    pub a2a_timeout_ms: u64,
}

impl A2aArgs {
    pub fn settings(&self) -> A2aClientSettings {
        A2aClientSettings {
            allow_private: self.a2a_allow_private,
            poll_ms: self.a2a_poll_ms,
            max_poll_ms: self.a2a_max_poll_ms,
            timeout_ms: self.a2a_timeout_ms,
            ..A2aClientSettings::default()
        }
    }
}

/// Webhook delivery (`/v1/webhooks`).
#[derive(Debug, Clone, Args)]
pub struct WebhookArgs {
    /// Allow webhook targets on loopback, private, link-local, unique-local and other
    /// non-public addresses (refused by default, after DNS resolution, on every attempt).
    #[arg(long, env = "AGENTHUB_WEBHOOK_ALLOW_PRIVATE")]
    pub webhook_allow_private: bool,
    /// Webhooks per workspace.
    #[arg(
        long,
        env = "AGENTHUB_MAX_WEBHOOKS_PER_WORKSPACE",
        default_value_t = 20
    )]
    pub max_webhooks_per_workspace: usize,
    /// The ceiling of the first retry's random wait, in milliseconds (doubling per
    /// failure up to --webhook-retry-cap-ms).
    #[arg(
        long,
        env = "AGENTHUB_WEBHOOK_RETRY_BASE_MS",
        default_value_t = 5_000,
        hide = true
    )]
    pub webhook_retry_base_ms: u64,
    /// The largest ceiling of a retry's random wait, in milliseconds.
    #[arg(
        long,
        env = "AGENTHUB_WEBHOOK_RETRY_CAP_MS",
        default_value_t = 3_600_000,
        hide = true
    )]
    pub webhook_retry_cap_ms: u64,
    /// How long a delivery may keep failing before its webhook is disabled, in
    /// milliseconds.
    #[arg(
        long,
        env = "AGENTHUB_WEBHOOK_MAX_AGE_MS",
        default_value_t = 86_400_000,
        hide = true
    )]
    pub webhook_max_age_ms: u64,
    /// How long a hub holds a webhook it delivers, in milliseconds (renewed before each
    /// attempt; longer than --webhook-timeout-ms).
    #[arg(
        long,
        env = "AGENTHUB_WEBHOOK_LEASE_MS",
        default_value_t = 30_000,
        hide = true
    )]
    pub webhook_lease_ms: u64,
    /// The deadline of one delivery attempt, in milliseconds.
    #[arg(
        long,
        env = "AGENTHUB_WEBHOOK_TIMEOUT_MS",
        default_value_t = 10_000,
        hide = true
    )]
    pub webhook_timeout_ms: u64,
    /// How often the delivery worker looks for work besides its wake-ups, in milliseconds.
    #[arg(
        long,
        env = "AGENTHUB_WEBHOOK_POLL_MS",
        default_value_t = 1_000,
        hide = true
    )]
    pub webhook_poll_ms: u64,
}

impl WebhookArgs {
    pub fn settings(&self) -> WebhookSettings {
        WebhookSettings {
            allow_private: self.webhook_allow_private,
            retry_base_ms: self.webhook_retry_base_ms,
            retry_cap_ms: self.webhook_retry_cap_ms,
            max_age_ms: self.webhook_max_age_ms,
            lease_ms: self.webhook_lease_ms,
            timeout_ms: self.webhook_timeout_ms,
            poll_ms: self.webhook_poll_ms,
            max_per_workspace: self.max_webhooks_per_workspace,
        }
    }
}

/// Limits and timings of the event streams (`GET /v1/events/stream`,
/// `GET /v1/tasks/{id}/stream`).
#[derive(Debug, Clone, Args)]
pub struct StreamArgs {
    /// Interval of the keep-alive comment lines of event streams, in milliseconds.
    #[arg(long, env = "AGENTHUB_STREAM_KEEPALIVE_MS", default_value_t = 15_000)]
    pub stream_keepalive_ms: u64,
    /// Reconnection delay sent to event stream clients (`retry:`), in milliseconds.
    #[arg(long, env = "AGENTHUB_STREAM_RETRY_MS", default_value_t = 3_000)]
    pub stream_retry_ms: u64,
    /// Event streams open at once per API key or agent token on one hub.
    #[arg(long, env = "AGENTHUB_MAX_STREAMS_PER_KEY", default_value_t = 16)]
    pub max_streams_per_key: usize,
    /// Event streams open at once on one hub.
    #[arg(long, env = "AGENTHUB_MAX_STREAMS", default_value_t = 10_000)]
    pub max_streams: usize,
    /// Events queued for one event stream's reader.
    #[arg(long, env = "AGENTHUB_STREAM_QUEUE", default_value_t = 256)]
    pub stream_queue: usize,
    /// How long an event stream's full queue waits for its reader before the stream is
    /// cut (the client resumes from its last id), in milliseconds.
    #[arg(long, env = "AGENTHUB_STREAM_SLOW_READER_MS", default_value_t = 10_000)]
    pub stream_slow_reader_ms: u64,
}

impl StreamArgs {
    pub fn limits(&self) -> StreamLimits {
        StreamLimits {
            keep_alive_ms: self.stream_keepalive_ms,
            retry_ms: self.stream_retry_ms,
            max_per_key: self.max_streams_per_key,
            max_per_hub: self.max_streams,
            queue: self.stream_queue,
            slow_reader_ms: self.stream_slow_reader_ms,
        }
    }
}

impl ServeArgs {
    pub fn settings(&self, data_dir: PathBuf) -> Settings {
        Settings {
            lease_ms: self.lease_ms,
            heartbeat_interval_ms: self.heartbeat_interval_ms,
            heartbeat_timeout_ms: self.heartbeat_timeout_ms,
            max_frame_bytes: self.max_frame_bytes,
            max_frames_per_s: self.max_frames_per_s,
            session_queue: self.session_queue,
            max_upload_bytes: self.max_upload_bytes,
            data_dir,
            header_timeout_ms: self.header_timeout_ms,
            body_timeout_ms: self.body_timeout_ms,
            max_pending_connections: self.max_pending_connections,
            rate_limit_per_key: self.rate_limit_per_key,
            rate_limit_per_address: self.rate_limit_per_address,
            notification_retention_days: self.notification_retention_days,
            streams: self.streams.limits(),
            webhooks: self.webhooks.settings(),
            a2a: self.a2a.settings(),
            public_url: self.public_url(),
        }
    }

    /// `--public-url` without a trailing `/`, or the URL of the listen address (an
    /// unspecified address such as `0.0.0.0` becomes `localhost`).
    pub fn public_url(&self) -> String {
        if let Some(url) = &self.public_url {
            return url.trim_end_matches('/').to_string();
        }
        let scheme = if self.tls_cert.is_some() {
            "https"
        } else {
            "http"
        };
        public_url_of(scheme, self.listen)
    }
}

/// The URL of a listen address: an unspecified address (`0.0.0.0`, `::`) becomes
/// `localhost`.
pub fn public_url_of(scheme: &str, listen: SocketAddr) -> String {
    if listen.ip().is_unspecified() {
        format!("{scheme}://localhost:{}", listen.port())
    } else {
        format!("{scheme}://{listen}")
    }
}
