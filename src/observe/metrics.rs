//! The agent's own metrics, in Prometheus text format at `/metrics`.
//!
//! One process-wide registry. Components record through [`metrics()`];
//! every family is labelled by component name (`sources.app_logs`), so a
//! fleet dashboard can compare agents and find the stuck stage.

use std::sync::LazyLock;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ComponentLabels {
    pub component: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    pub component: String,
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub component: String,
    pub signal: String,
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    pub component: String,
    pub reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RuleLabels {
    pub rule: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FileLabels {
    pub component: String,
    pub path: String,
}

/// Every metric family tailguard records.
pub struct Metrics {
    /// Events a component sent downstream.
    pub events_out: Family<ComponentLabels, Counter>,
    /// Body bytes a component sent downstream.
    pub bytes_out: Family<ComponentLabels, Counter>,
    /// Events sent to a component (its input).
    pub events_in: Family<ComponentLabels, Counter>,
    /// Events a sink settled, by outcome: delivered, rejected, errored.
    pub sink_events: Family<OutcomeLabels, Counter>,
    /// Export requests by signal and outcome: accepted, retryable, rejected.
    pub requests: Family<RequestLabels, Counter>,
    /// Retries of export requests.
    pub retries: Family<ComponentLabels, Counter>,
    /// Events dropped on purpose or by policy, by reason.
    pub dropped: Family<ReasonLabels, Counter>,
    /// Bytes in a sink's disk buffer.
    pub buffer_bytes: Family<ComponentLabels, Gauge>,
    /// Batches in flight to the collector (memory buffer) per sink.
    pub in_flight_batches: Family<ComponentLabels, Gauge>,
    /// Disk buffer segments skipped as corrupt.
    pub buffer_corrupt_segments: Family<ComponentLabels, Counter>,
    /// Secret findings by rule.
    pub findings: Family<RuleLabels, Counter>,
    /// Response actions by outcome.
    pub actions: Family<OutcomeLabels, Counter>,
    /// Bytes read from a file but not yet acknowledged by every sink.
    pub checkpoint_lag_bytes: Family<FileLabels, Gauge>,
    /// Files a file source holds open.
    pub open_files: Family<ComponentLabels, Gauge>,
    /// Lines cut at max_line_bytes.
    pub truncated_lines: Family<ComponentLabels, Counter>,
}

static METRICS: LazyLock<(Metrics, Registry)> = LazyLock::new(|| {
    let m = Metrics {
        events_out: Family::default(),
        bytes_out: Family::default(),
        events_in: Family::default(),
        sink_events: Family::default(),
        requests: Family::default(),
        retries: Family::default(),
        dropped: Family::default(),
        buffer_bytes: Family::default(),
        in_flight_batches: Family::default(),
        buffer_corrupt_segments: Family::default(),
        findings: Family::default(),
        actions: Family::default(),
        checkpoint_lag_bytes: Family::default(),
        open_files: Family::default(),
        truncated_lines: Family::default(),
    };
    let mut r = Registry::with_prefix("tailguard");
    r.register(
        "component_sent_events",
        "Events a component sent downstream",
        m.events_out.clone(),
    );
    r.register(
        "component_sent_bytes",
        "Body bytes a component sent downstream",
        m.bytes_out.clone(),
    );
    r.register(
        "component_received_events",
        "Events sent to a component",
        m.events_in.clone(),
    );
    r.register(
        "sink_events",
        "Events a sink settled, by outcome",
        m.sink_events.clone(),
    );
    r.register(
        "export_requests",
        "Export requests by signal and outcome",
        m.requests.clone(),
    );
    r.register(
        "export_retries",
        "Retried export requests",
        m.retries.clone(),
    );
    r.register(
        "dropped_events",
        "Events dropped, by reason",
        m.dropped.clone(),
    );
    r.register(
        "buffer_bytes",
        "Bytes in a sink's disk buffer",
        m.buffer_bytes.clone(),
    );
    r.register(
        "in_flight_batches",
        "Batches waiting for the collector",
        m.in_flight_batches.clone(),
    );
    r.register(
        "buffer_corrupt_segments",
        "Disk buffer segments skipped as corrupt",
        m.buffer_corrupt_segments.clone(),
    );
    r.register("findings", "Secret findings by rule", m.findings.clone());
    r.register("actions", "Response actions by outcome", m.actions.clone());
    r.register(
        "checkpoint_lag_bytes",
        "Bytes read from a file and not yet acknowledged",
        m.checkpoint_lag_bytes.clone(),
    );
    r.register(
        "open_files",
        "Files a file source holds open",
        m.open_files.clone(),
    );
    r.register(
        "truncated_lines",
        "Lines cut at max_line_bytes",
        m.truncated_lines.clone(),
    );
    (m, r)
});

/// The process-wide metrics.
pub fn metrics() -> &'static Metrics {
    &METRICS.0
}

pub fn component(name: &str) -> ComponentLabels {
    ComponentLabels {
        component: name.to_string(),
    }
}

pub fn outcome(name: &str, outcome: &str) -> OutcomeLabels {
    OutcomeLabels {
        component: name.to_string(),
        outcome: outcome.to_string(),
    }
}

/// Everything, in the Prometheus text exposition format.
pub fn encode() -> String {
    let mut out = String::new();
    prometheus_client::encoding::text::encode(&mut out, &METRICS.1)
        .expect("writing to a String cannot fail");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_appear_in_the_text_format() {
        metrics()
            .events_out
            .get_or_create(&component("sources.t"))
            .inc_by(3);
        // Families without samples are left out, so record one first.
        metrics().retries.get_or_create(&component("sinks.t")).inc();
        let text = encode();
        assert!(
            text.contains("tailguard_component_sent_events_total{component=\"sources.t\"} 3"),
            "{text}"
        );
        assert!(
            text.contains("# TYPE tailguard_export_retries counter"),
            "{text}"
        );
    }
}
