//! Prometheus metrics, rendered in the text format on `GET /metrics`.

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{
    DescriptorEncoder, EncodeCounterValue, EncodeLabelSet, EncodeMetric,
};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::{Registry, Unit};

use crate::store::Store;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HttpLabels {
    pub method: String,
    pub status: u16,
}

/// The hub's metrics. Cheap to update from any task.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    pub http_requests: Family<HttpLabels, Counter>,
    pub events_written: Counter,
    pub sessions_open: Gauge,
    pub frames_received: Counter,
    pub leases_expired: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("agenthub");
        let http_requests = Family::<HttpLabels, Counter>::default();
        let events_written = Counter::default();
        let sessions_open = Gauge::default();
        let frames_received = Counter::default();
        let leases_expired = Counter::default();
        registry.register(
            "http_requests",
            "HTTP requests by method and status",
            http_requests.clone(),
        );
        registry.register(
            "events_written",
            "Events committed to the outbox",
            events_written.clone(),
        );
        registry.register(
            "agent_sessions_open",
            "Agent WebSocket sessions open on this hub",
            sessions_open.clone(),
        );
        registry.register(
            "agent_frames_received",
            "Frames received from agents",
            frames_received.clone(),
        );
        registry.register(
            "leases_expired",
            "Claimed steps returned to ready because their lease expired",
            leases_expired.clone(),
        );
        Metrics {
            registry,
            http_requests,
            events_written,
            sessions_open,
            frames_received,
            leases_expired,
        }
    }
}

impl Metrics {
    /// The hub's metrics, with those of `store` read at each scrape.
    pub fn for_store(store: &Store) -> Metrics {
        let mut metrics = Metrics::default();
        metrics
            .registry
            .register_collector(Box::new(StoreCollector(store.clone())));
        metrics
    }

    pub fn render(&self) -> String {
        let mut text = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut text, &self.registry);
        text
    }
}

/// The store's own counters, read when scraped: on SQLite, the writer's
/// ([`crate::store::WriterStats`]). Its busy seconds per second say how near the hub is to
/// what one writer carries; transactions per commit, how large its groups are.
#[derive(Debug)]
struct StoreCollector(Store);

impl Collector for StoreCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let Some(stats) = self.0.writer_stats() else {
            return Ok(());
        };
        let seconds = Some(&Unit::Seconds);
        encode_counter(
            &mut encoder,
            "sqlite_writer_busy",
            "Time the SQLite writer connection was held by transactions and commits",
            seconds,
            stats.busy.as_secs_f64(),
        )?;
        encode_counter(
            &mut encoder,
            "sqlite_writer_wait",
            "Time callers waited for the SQLite writer, summed over the callers",
            seconds,
            stats.waited.as_secs_f64(),
        )?;
        encode_counter(
            &mut encoder,
            "sqlite_writer_transactions",
            "Write transactions run on SQLite, grouped or alone",
            None,
            stats.transactions,
        )?;
        encode_counter(
            &mut encoder,
            "sqlite_writer_commits",
            "Commits of the SQLite writer (each commits a group of transactions)",
            None,
            stats.commits,
        )
    }
}

/// Writes one counter whose value is read at the scrape.
fn encode_counter<N: EncodeCounterValue>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    unit: Option<&Unit>,
    value: N,
) -> Result<(), std::fmt::Error> {
    let counter = ConstCounter::new(value);
    let metric = encoder.encode_descriptor(name, help, unit, counter.metric_type())?;
    counter.encode(metric)
}
