//! Prometheus metrics of sensors, with upstream's `argo_events_action_*` names and labels, plus
//! Sluice's own (`sluice_sensor_*`) for what upstream does not count. Durations are histograms where
//! upstream has summaries (the client library has no summaries; histograms aggregate across replicas).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// `argo_events_action_triggered_total`: firings whose action succeeded.
pub const ACTION_TRIGGERED: &str = "argo_events_action_triggered_total";
/// `argo_events_action_failed_total`: failed attempts of an action.
pub const ACTION_FAILED: &str = "argo_events_action_failed_total";
/// `argo_events_action_retries_failed_total`: firings that still failed after their retries.
pub const ACTION_RETRIES_FAILED: &str = "argo_events_action_retries_failed_total";
/// `argo_events_action_duration_milliseconds`: time of one attempt of an action.
pub const ACTION_DURATION: &str = "argo_events_action_duration_milliseconds";
/// `sluice_sensor_dead_lettered_total`: failed firings the dlqTrigger took.
pub const DEAD_LETTERED: &str = "sluice_sensor_dead_lettered_total";
/// `sluice_sensor_events_filtered_out_total`: deliveries that did not pass their dependency's filters.
pub const FILTERED_OUT: &str = "sluice_sensor_events_filtered_out_total";
/// `sluice_sensor_events_replaced_total`: held events replaced by a newer one of the same dependency.
pub const REPLACED: &str = "sluice_sensor_events_replaced_total";

/// `sluice_sensor_filter_results_total`: verdicts of dependency filters, by result (`passed`,
/// `filtered`, `error`), so "why didn't it fire?" has a number per dependency.
pub const FILTER_RESULTS: &str = "sluice_sensor_filter_results_total";

/// Labels of [`FILTER_RESULTS`].
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FilterLabels {
    /// The Sensor's name.
    pub sensor: String,
    /// The dependency's name.
    pub dependency: String,
    /// `passed`, `filtered` (the filters said no) or `error` (a filter could not be evaluated).
    pub result: &'static str,
}

/// Labels of per-trigger metrics (upstream's names).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TriggerLabels {
    /// The Sensor's name.
    pub sensor_name: String,
    /// The trigger template's name.
    pub trigger_name: String,
}

fn duration_histogram() -> Histogram {
    Histogram::new([
        1.0, 2.5, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0, 10000.0, 30000.0,
    ])
}

/// The metric families of every sensor of a process. Cloning shares the families.
#[derive(Clone)]
pub struct SensorMetrics {
    /// See [`ACTION_TRIGGERED`].
    pub triggered: Family<TriggerLabels, Counter>,
    /// See [`ACTION_FAILED`].
    pub failed: Family<TriggerLabels, Counter>,
    /// See [`ACTION_RETRIES_FAILED`].
    pub retries_failed: Family<TriggerLabels, Counter>,
    /// See [`ACTION_DURATION`].
    pub duration: Family<TriggerLabels, Histogram, fn() -> Histogram>,
    /// See [`DEAD_LETTERED`].
    pub dead_lettered: Family<TriggerLabels, Counter>,
    /// See [`FILTERED_OUT`].
    pub filtered_out: Family<TriggerLabels, Counter>,
    /// See [`REPLACED`].
    pub replaced: Family<TriggerLabels, Counter>,
    /// See [`FILTER_RESULTS`].
    pub filter_results: Family<FilterLabels, Counter>,
}

impl Default for SensorMetrics {
    fn default() -> Self {
        Self {
            triggered: Family::default(),
            failed: Family::default(),
            retries_failed: Family::default(),
            duration: Family::new_with_constructor(duration_histogram),
            dead_lettered: Family::default(),
            filtered_out: Family::default(),
            replaced: Family::default(),
            filter_results: Family::default(),
        }
    }
}

fn strip_total(name: &str) -> &str {
    name.strip_suffix("_total").unwrap_or(name)
}

impl SensorMetrics {
    /// New families registered in `registry` (which adds `_total` to counter names itself).
    pub fn register(registry: &mut Registry) -> Self {
        let m = Self::default();
        registry.register(
            strip_total(ACTION_TRIGGERED),
            "Firings whose action succeeded",
            m.triggered.clone(),
        );
        registry.register(
            strip_total(ACTION_FAILED),
            "Failed attempts of an action",
            m.failed.clone(),
        );
        registry.register(
            strip_total(ACTION_RETRIES_FAILED),
            "Firings that still failed after their retries",
            m.retries_failed.clone(),
        );
        registry.register(
            ACTION_DURATION,
            "Milliseconds one attempt of an action took",
            m.duration.clone(),
        );
        registry.register(
            strip_total(DEAD_LETTERED),
            "Failed firings the dlqTrigger took",
            m.dead_lettered.clone(),
        );
        registry.register(
            strip_total(FILTERED_OUT),
            "Deliveries that did not pass their dependency's filters",
            m.filtered_out.clone(),
        );
        registry.register(
            strip_total(REPLACED),
            "Held events replaced by a newer event of the same dependency before they were used",
            m.replaced.clone(),
        );
        registry.register(
            strip_total(FILTER_RESULTS),
            "Verdicts of dependency filters by result (passed, filtered, error)",
            m.filter_results.clone(),
        );
        m
    }

    /// Labels of one trigger.
    pub fn labels(sensor: &str, trigger: &str) -> TriggerLabels {
        TriggerLabels {
            sensor_name: sensor.into(),
            trigger_name: trigger.into(),
        }
    }
}
