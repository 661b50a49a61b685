//! Prometheus metrics, rendered in the text format on `GET /metrics`.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

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
    pub fn render(&self) -> String {
        let mut text = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut text, &self.registry);
        text
    }
}
