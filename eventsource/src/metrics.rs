//! Prometheus metrics of event sources, with upstream's `argo_events_*` names and labels so existing
//! dashboards keep working. (`event_processing_duration_milliseconds` is a histogram here where
//! upstream has a summary: the client library has no summaries, and histograms aggregate across pods.)

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// `argo_events_event_service_running_total`.
pub const EVENT_SERVICE_RUNNING: &str = "argo_events_event_service_running_total";
/// `argo_events_events_sent_total`.
pub const EVENTS_SENT: &str = "argo_events_events_sent_total";
/// `argo_events_events_sent_failed_total`.
pub const EVENTS_SENT_FAILED: &str = "argo_events_events_sent_failed_total";
/// `argo_events_events_processing_failed_total`.
pub const EVENTS_PROCESSING_FAILED: &str = "argo_events_events_processing_failed_total";
/// `argo_events_event_processing_duration_milliseconds`.
pub const EVENT_PROCESSING_DURATION: &str = "argo_events_event_processing_duration_milliseconds";
/// `sluice_eventsource_events_filtered_total` (a Sluice extension: upstream does not count them).
pub const EVENTS_FILTERED: &str = "sluice_eventsource_events_filtered_total";
/// `sluice_eventsource_events_rejected_total{reason}` (a Sluice extension): messages that can never
/// be stored (`reason="too_large"`: bigger than the bus takes), dropped after an error log.
pub const EVENTS_REJECTED: &str = "sluice_eventsource_events_rejected_total";

/// Labels of per-event metrics.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EventLabels {
    /// The EventSource's name.
    pub eventsource_name: String,
    /// The event's name.
    pub event_name: String,
}

/// Labels of rejected events.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RejectLabels {
    /// The EventSource's name.
    pub eventsource_name: String,
    /// The event's name.
    pub event_name: String,
    /// Why it was rejected (`too_large`).
    pub reason: String,
}

/// Labels of per-EventSource metrics.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SourceLabels {
    /// The EventSource's name.
    pub eventsource_name: String,
}

fn duration_histogram() -> Histogram {
    Histogram::new([
        1.0, 2.5, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0, 10000.0,
    ])
}

/// The metric families of all event sources of a process.
#[derive(Clone)]
pub struct SourceMetrics {
    /// Events configured and running, per EventSource.
    pub running: Family<SourceLabels, Gauge>,
    /// Events the bus stored.
    pub sent: Family<EventLabels, Counter>,
    /// Events the bus did not take.
    pub sent_failed: Family<EventLabels, Counter>,
    /// Requests or messages that could not be turned into an event, plus `sent_failed`.
    pub processing_failed: Family<EventLabels, Counter>,
    /// Time from receipt to the bus's ack.
    pub processing_duration: Family<EventLabels, Histogram, fn() -> Histogram>,
    /// Events `filter.expression` dropped (false, or an error on the event).
    pub filtered: Family<EventLabels, Counter>,
    /// Messages that can never be stored (too large), by reason.
    pub rejected: Family<RejectLabels, Counter>,
}

impl Default for SourceMetrics {
    fn default() -> Self {
        Self {
            running: Family::default(),
            sent: Family::default(),
            sent_failed: Family::default(),
            processing_failed: Family::default(),
            processing_duration: Family::new_with_constructor(duration_histogram),
            filtered: Family::default(),
            rejected: Family::default(),
        }
    }
}

impl SourceMetrics {
    /// New families registered in `registry`. The registry adds `_total` to counters itself, so the
    /// counter names are registered without it.
    pub fn register(registry: &mut Registry) -> Self {
        let m = Self::default();
        registry.register(
            EVENT_SERVICE_RUNNING,
            "How many configured events in the EventSource are running",
            m.running.clone(),
        );
        registry.register(
            strip_total(EVENTS_SENT),
            "Events stored on the bus",
            m.sent.clone(),
        );
        registry.register(
            strip_total(EVENTS_SENT_FAILED),
            "Events the bus did not take",
            m.sent_failed.clone(),
        );
        registry.register(
            strip_total(EVENTS_PROCESSING_FAILED),
            "Events that failed to be processed, including those the bus did not take",
            m.processing_failed.clone(),
        );
        registry.register(
            EVENT_PROCESSING_DURATION,
            "Milliseconds from receipt to the bus's acknowledgement",
            m.processing_duration.clone(),
        );
        registry.register(
            strip_total(EVENTS_FILTERED),
            "Events the EventSource's filter.expression did not let through",
            m.filtered.clone(),
        );
        registry.register(
            strip_total(EVENTS_REJECTED),
            "Messages that can never be stored (e.g. bigger than the bus takes), dropped after an error log",
            m.rejected.clone(),
        );
        m
    }

    /// Labels for one event.
    pub fn labels(eventsource_name: &str, event_name: &str) -> EventLabels {
        EventLabels {
            eventsource_name: eventsource_name.into(),
            event_name: event_name.into(),
        }
    }
}

fn strip_total(name: &str) -> &str {
    name.strip_suffix("_total").unwrap_or(name)
}

/// `sluice_http_connections_rejected_total{listener, reason}` (a Sluice extension): connections and
/// requests the HTTP server refused: `connection_limit` (answered 503), `header_timeout` (closed),
/// `header_too_large` (431), `body_timeout` (408).
pub const HTTP_CONNECTIONS_REJECTED: &str = "sluice_http_connections_rejected_total";
/// `sluice_http_connections_idle_closed_total{listener}`: kept-alive connections closed after the
/// idle timeout (normal, not a rejection).
pub const HTTP_CONNECTIONS_IDLE_CLOSED: &str = "sluice_http_connections_idle_closed_total";
/// `sluice_http_accept_errors_total{listener}`: failed accepts (usually the descriptor limit).
pub const HTTP_ACCEPT_ERRORS: &str = "sluice_http_accept_errors_total";
/// `sluice_http_connections_open{listener}`: connections being served now.
pub const HTTP_CONNECTIONS_OPEN: &str = "sluice_http_connections_open";

/// Labels of per-listener HTTP metrics.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HttpListenerLabels {
    /// The listener: `push:<port>` or `metrics`.
    pub listener: String,
}

/// Labels of HTTP rejections.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HttpRejectLabels {
    /// The listener: `push:<port>` or `metrics`.
    pub listener: String,
    /// `connection_limit`, `header_timeout`, `header_too_large` or `body_timeout`.
    pub reason: String,
}

/// The metric families of the HTTP server ([`crate::http::server`]), shared by every listener.
#[derive(Clone, Default)]
pub struct ServerMetrics {
    /// Connections and requests refused, by listener and reason.
    pub rejected: Family<HttpRejectLabels, Counter>,
    /// Idle keep-alive connections closed.
    pub idle_closed: Family<HttpListenerLabels, Counter>,
    /// Failed accepts.
    pub accept_errors: Family<HttpListenerLabels, Counter>,
    /// Connections being served.
    pub open: Family<HttpListenerLabels, Gauge>,
}

impl ServerMetrics {
    /// New families registered in `registry`.
    pub fn register(registry: &mut Registry) -> Self {
        let m = Self::default();
        registry.register(
            strip_total(HTTP_CONNECTIONS_REJECTED),
            "Connections and requests the HTTP server refused (connection limit, header timeout, oversize head, body timeout)",
            m.rejected.clone(),
        );
        registry.register(
            strip_total(HTTP_CONNECTIONS_IDLE_CLOSED),
            "Kept-alive connections closed after the idle timeout",
            m.idle_closed.clone(),
        );
        registry.register(
            strip_total(HTTP_ACCEPT_ERRORS),
            "Connections the HTTP server failed to accept (usually the descriptor limit)",
            m.accept_errors.clone(),
        );
        registry.register(
            HTTP_CONNECTIONS_OPEN,
            "Connections the HTTP server is serving",
            m.open.clone(),
        );
        m
    }
}
