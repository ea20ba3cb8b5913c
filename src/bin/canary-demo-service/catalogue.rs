//! The metric catalogue beyond the web set: the names the shipped seed profiles
//! (`analysis-profiles/*.toml`) query, in sets a bed turns on with `--metric-sets`, so a
//! bed exports only what its profile reads. Every series is per track and pod, present
//! from the first scrape. Pure: the gauges' levels are drawn by the caller.
//!
//! | set         | series                                                                 |
//! |-------------|------------------------------------------------------------------------|
//! | `migration` | `migrations_total{outcome="succeeded"\|"failed"}`, `reserve_ratio`, `resource_utilization_ratio` |
//! | `feature`   | `feature_requests_total{outcome="ok"\|"error"}`, `feature_request_duration_seconds` (histogram), `resource_utilization_ratio` |
//! | `transport` | `transport_requests_total{outcome="ok"\|"error"}`, `transport_request_duration_seconds` (histogram), `http_responses_total{code}` |
//! | `container` | `container_memory_working_set_bytes`, `container_spec_memory_limit_bytes` |
//! | `business`  | `fund_setups_total{outcome="success"\|"failure"}`, `wizard_events_total{event="started"\|"completed"}`, `probe_success` |
//!
//! Requests, their errors and their latencies are the web set's own (`feature_*`,
//! `transport_*` and `http_responses_total` are other names for the same requests);
//! every request is also one business event (a migration, a fund setup, a wizard
//! started), which fails with the business failure rate.

use std::fmt::Write;

use serde::{Deserialize, Serialize};

use crate::metrics::{PodCounters, write_histogram};
use crate::traffic::Pod;

/// A set of series `--metric-sets` turns on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum MetricSet {
    /// Migrations and reserves (cohort-migration).
    Migration,
    /// A toggled feature's requests (dark-launch).
    Feature,
    /// A transport's requests and HTTP responses (protocol-transport).
    Transport,
    /// Container memory against its limit (staged-ga).
    Container,
    /// Fund setups, wizard events and a health probe (v2-1-0-canary).
    Business,
}

/// A gauge a fault can set on one track.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Gauge {
    /// `reserve_ratio`, healthy at 1.0.
    ReserveRatio,
    /// `resource_utilization_ratio`, healthy at about 0.45.
    ResourceUtilizationRatio,
    /// `probe_success`, healthy at 1.
    ProbeSuccess,
}

impl Gauge {
    /// Every gauge.
    pub const ALL: [Gauge; 3] = [
        Gauge::ReserveRatio,
        Gauge::ResourceUtilizationRatio,
        Gauge::ProbeSuccess,
    ];

    /// The metric's name.
    pub fn name(self) -> &'static str {
        match self {
            Gauge::ReserveRatio => "reserve_ratio",
            Gauge::ResourceUtilizationRatio => "resource_utilization_ratio",
            Gauge::ProbeSuccess => "probe_success",
        }
    }

    /// The healthy level.
    pub fn healthy(self) -> f64 {
        match self {
            Gauge::ReserveRatio => 1.0,
            Gauge::ResourceUtilizationRatio => 0.45,
            Gauge::ProbeSuccess => 1.0,
        }
    }

    /// The standard deviation of its noise at each scrape (none for the probe's 0/1).
    pub fn noise(self) -> f64 {
        match self {
            Gauge::ReserveRatio => 0.001,
            Gauge::ResourceUtilizationRatio => 0.02,
            Gauge::ProbeSuccess => 0.0,
        }
    }

    /// Whether a fault may set it to `value`.
    pub fn accepts(self, value: f64) -> bool {
        match self {
            Gauge::ProbeSuccess => value == 0.0 || value == 1.0,
            Gauge::ReserveRatio | Gauge::ResourceUtilizationRatio => {
                value.is_finite() && value >= 0.0
            }
        }
    }

    /// What [`Self::accepts`] allows, for error messages.
    pub fn allowed(self) -> &'static str {
        match self {
            Gauge::ProbeSuccess => "must be 0 or 1",
            Gauge::ReserveRatio | Gauge::ResourceUtilizationRatio => "must be a number, at least 0",
        }
    }

    /// Whether `sets` export it.
    pub fn exported_by(self, sets: &[MetricSet]) -> bool {
        sets.iter().any(|set| match self {
            Gauge::ReserveRatio => *set == MetricSet::Migration,
            Gauge::ResourceUtilizationRatio => {
                matches!(set, MetricSet::Migration | MetricSet::Feature)
            }
            Gauge::ProbeSuccess => *set == MetricSet::Business,
        })
    }
}

/// Memory limit of every pod's container, bytes (a pod uses about 180 MB: 36 %).
pub const MEMORY_LIMIT_BYTES: f64 = 500e6;

/// The levels of every gauge at one scrape: `levels[g][i]` is gauge `Gauge::ALL[g]` of
/// pod `i`.
pub type GaugeLevels = [Vec<f64>; 3];

/// A label value and how to read its count from a pod's counters.
type LabelledCount<'a> = (&'a str, fn(&PodCounters) -> u64);

/// A pod's labels: `track="…",pod="…"`.
fn pod_labels(pod: &Pod) -> String {
    format!("track=\"{}\",pod=\"{}\"", pod.track.name(), pod.name)
}

/// Appends the counters of `sets` to `text`: per pod, one series per outcome.
fn render_counters(text: &mut String, sets: &[MetricSet], pods: &[Pod], counters: &[PodCounters]) {
    let labels = pod_labels;
    let has = |set: MetricSet| sets.contains(&set);
    let mut counter_pair = |name: &str, help: &str, label: &str, values: [LabelledCount; 2]| {
        let _ = writeln!(text, "# HELP {name} {help}\n# TYPE {name} counter");
        for (pod, counter) in pods.iter().zip(counters) {
            for (value, count) in values {
                let _ = writeln!(
                    text,
                    "{name}{{{},{label}=\"{value}\"}} {}",
                    labels(pod),
                    count(counter)
                );
            }
        }
    };
    if has(MetricSet::Migration) {
        counter_pair(
            "migrations_total",
            "Migrations attempted, by outcome.",
            "outcome",
            [
                ("succeeded", |c| c.business_events - c.business_failures),
                ("failed", |c| c.business_failures),
            ],
        );
    }
    if has(MetricSet::Feature) {
        counter_pair(
            "feature_requests_total",
            "Requests to the feature, by outcome.",
            "outcome",
            [("ok", |c| c.ok), ("error", |c| c.errors)],
        );
    }
    if has(MetricSet::Transport) {
        counter_pair(
            "transport_requests_total",
            "Requests through the transport, by outcome.",
            "outcome",
            [("ok", |c| c.ok), ("error", |c| c.errors)],
        );
        counter_pair(
            "http_responses_total",
            "HTTP responses, by status code.",
            "code",
            [("200", |c| c.ok), ("500", |c| c.errors)],
        );
    }
    if has(MetricSet::Business) {
        counter_pair(
            "fund_setups_total",
            "Fund setups, by outcome.",
            "outcome",
            [
                ("success", |c| c.business_events - c.business_failures),
                ("failure", |c| c.business_failures),
            ],
        );
        counter_pair(
            "wizard_events_total",
            "Setup wizard events: started, and completed.",
            "event",
            [
                ("started", |c| c.business_events),
                ("completed", |c| c.business_events - c.business_failures),
            ],
        );
    }
}

/// Appends the series of `sets` to `text`.
pub fn render_sets(
    text: &mut String,
    sets: &[MetricSet],
    pods: &[Pod],
    counters: &[PodCounters],
    memory_bytes: &[f64],
    gauges: &GaugeLevels,
    bounds: &[f64],
) {
    let labels = |pod: &Pod| pod_labels(pod);
    let has = |set: MetricSet| sets.contains(&set);
    render_counters(text, sets, pods, counters);
    if has(MetricSet::Feature) {
        write_histogram(
            text,
            "feature_request_duration_seconds",
            pods,
            counters,
            bounds,
        );
    }
    if has(MetricSet::Transport) {
        write_histogram(
            text,
            "transport_request_duration_seconds",
            pods,
            counters,
            bounds,
        );
    }
    if has(MetricSet::Container) {
        let mut gauge = |name: &str, values: &mut dyn Iterator<Item = f64>| {
            let _ = writeln!(
                text,
                "# HELP {name} Container memory, bytes.\n# TYPE {name} gauge"
            );
            for (pod, value) in pods.iter().zip(values) {
                let _ = writeln!(text, "{name}{{{}}} {}", labels(pod), value.round());
            }
        };
        gauge(
            "container_memory_working_set_bytes",
            &mut memory_bytes.iter().copied(),
        );
        gauge(
            "container_spec_memory_limit_bytes",
            &mut std::iter::repeat(MEMORY_LIMIT_BYTES),
        );
    }
    for (gauge, levels) in Gauge::ALL.iter().zip(gauges) {
        if !gauge.exported_by(sets) {
            continue;
        }
        let name = gauge.name();
        let _ = writeln!(text, "# HELP {name} A gauge per pod.\n# TYPE {name} gauge");
        for (pod, level) in pods.iter().zip(levels) {
            let _ = writeln!(text, "{name}{{{}}} {level}", labels(pod));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::latency_buckets;
    use crate::rng::SplitMix;
    use crate::traffic::build_pods;

    fn render_all(sets: &[MetricSet], counters: &[PodCounters], pods: &[Pod]) -> String {
        let bounds = latency_buckets();
        let gauges: GaugeLevels = Gauge::ALL.map(|gauge| vec![gauge.healthy(); pods.len()]);
        let mut text = String::new();
        render_sets(
            &mut text,
            sets,
            pods,
            counters,
            &vec![180e6; pods.len()],
            &gauges,
            &bounds,
        );
        text
    }

    #[test]
    fn no_set_adds_nothing() {
        let pods = build_pods(1, 0.0, &mut SplitMix::new(1));
        let counters = vec![PodCounters::new(latency_buckets().len()); pods.len()];
        assert_eq!(render_all(&[], &counters, &pods), "");
    }

    #[test]
    fn every_set_names_what_the_seed_profiles_query() {
        let pods = build_pods(1, 0.0, &mut SplitMix::new(1));
        let bounds = latency_buckets();
        let mut counters = vec![PodCounters::new(bounds.len()); pods.len()];
        counters[2].record(&bounds, 0.2, true);
        counters[2].record_business(false);
        counters[2].record_business(true);
        let all = [
            MetricSet::Migration,
            MetricSet::Feature,
            MetricSet::Transport,
            MetricSet::Container,
            MetricSet::Business,
        ];
        let text = render_all(&all, &counters, &pods);
        let canary = "track=\"canary\",pod=\"canary-0\"";
        for line in [
            format!("migrations_total{{{canary},outcome=\"failed\"}} 1"),
            format!("migrations_total{{{canary},outcome=\"succeeded\"}} 1"),
            format!("feature_requests_total{{{canary},outcome=\"error\"}} 1"),
            format!("transport_requests_total{{{canary},outcome=\"ok\"}} 0"),
            format!("http_responses_total{{{canary},code=\"500\"}} 1"),
            format!("fund_setups_total{{{canary},outcome=\"success\"}} 1"),
            format!("wizard_events_total{{{canary},event=\"started\"}} 2"),
            format!("wizard_events_total{{{canary},event=\"completed\"}} 1"),
            format!("feature_request_duration_seconds_bucket{{{canary},le=\"0.2\"}} 1"),
            format!("transport_request_duration_seconds_count{{{canary}}} 1"),
            format!("container_memory_working_set_bytes{{{canary}}} 180000000"),
            format!("container_spec_memory_limit_bytes{{{canary}}} 500000000"),
            format!("reserve_ratio{{{canary}}} 1"),
            format!("resource_utilization_ratio{{{canary}}} 0.45"),
            format!("probe_success{{{canary}}} 1"),
        ] {
            assert!(text.contains(&format!("{line}\n")), "missing {line}");
        }
        // resource_utilization_ratio is in two sets but exported once.
        let utilization = text
            .lines()
            .filter(|line| line.starts_with("resource_utilization_ratio{"))
            .count();
        assert_eq!(utilization, pods.len());
    }

    #[test]
    fn a_set_exports_only_its_own_series() {
        let pods = build_pods(1, 0.0, &mut SplitMix::new(1));
        let counters = vec![PodCounters::new(latency_buckets().len()); pods.len()];
        let text = render_all(&[MetricSet::Business], &counters, &pods);
        assert!(text.contains("probe_success{"));
        for absent in [
            "migrations_total",
            "reserve_ratio",
            "feature_requests_total",
        ] {
            assert!(
                !text.contains(absent),
                "{absent} exported by the business set"
            );
        }
    }
}
