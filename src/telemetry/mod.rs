//! Logging set-up and the engine's own metrics.
//!
//! Logs: a `tracing` subscriber writing to stderr, so stdout stays free for reports that
//! pipelines parse. `RUST_LOG` overrides the default level (`warn`).
//!
//! Metrics: [`EngineMetrics`] owns one Prometheus registry with every metric the engine
//! exports at `GET /metrics`. The API updates the HTTP and analyses-by-state metrics;
//! the workers call the `record_*` / `observe_*` hooks, and the [`instrumented`]
//! decorators time every source fetch and flag change. Nothing here does I/O: the API
//! encodes the registry when it is scraped.

pub mod analyses;
pub mod instrumented;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use tracing_subscriber::EnvFilter;

use crate::store::AnalysisState;

/// Installs the global subscriber. Safe to call once per process. Logs are coloured
/// only on a terminal without `NO_COLOR`: a log file or a CI log gets plain text.
pub fn init() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn"));
    let colour = colour(
        std::io::IsTerminal::is_terminal(&std::io::stderr()),
        std::env::var_os("NO_COLOR"),
    );
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(colour)
        .try_init();
}

/// Whether a stream gets ANSI colours: only a terminal, and only when `NO_COLOR`
/// (<https://no-color.org>) is unset or empty.
pub fn colour(is_terminal: bool, no_color: Option<std::ffi::OsString>) -> bool {
    is_terminal && no_color.is_none_or(|value| value.is_empty())
}

/// `state`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StateLabels {
    /// An analysis state (`pending`, `running`, ...).
    pub state: String,
}

/// `method`, `route`, `status`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HttpLabels {
    /// `GET`, `POST`, ...
    pub method: String,
    /// The route's template (`/v1/analyses/{id}`), never the raw path, so ids do not
    /// explode the series count; `unmatched` for requests no route takes.
    pub route: String,
    /// The response's status code.
    pub status: u16,
}

/// `outcome`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    /// `promote`, `hold` or `rollback`.
    pub outcome: String,
}

/// `source`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SourceLabels {
    /// The source's name in settings.
    pub source: String,
}

/// `source`, `kind`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SourceErrorLabels {
    /// The source's name in settings.
    pub source: String,
    /// What went wrong, e.g. `unreachable`, `bad_query`, `no_data`.
    pub kind: String,
}

/// `actuator`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ActuatorLabels {
    /// The actuator's name in settings.
    pub actuator: String,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

fn latency_histogram() -> Histogram {
    // 5 ms to about 82 s: a healthy query takes milliseconds, a retried one seconds.
    Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(
        0.005, 2.0, 15,
    ))
}

/// Every metric the engine exports, in one registry. Cheap to share (`Arc`); every
/// metric is safe to update from many tasks.
///
/// | metric | type | labels | meaning |
/// |---|---|---|---|
/// | `canary_analyses` | gauge | `state` | analyses in each state, read from the store at each scrape (every state present, zeros included) |
/// | `canary_http_requests_total` | counter | `method`, `route`, `status` | API requests answered |
/// | `canary_http_request_duration_seconds` | histogram | `method`, `route` | API request time (long-polls included: their time is mostly waiting) |
/// | `canary_verdicts_total` | counter | `outcome` | looks judged by the workers, by verdict |
/// | `canary_analysis_state`, `canary_analysis_verdict` | gauge | `analysis`, `flag`, `profile`, `value` | 1 per active analysis (pending, running, paused, awaiting review, rollback failed), `value` its state / its latest look's verdict; read from the store at scrape time, at most 500 analyses; finished ones leave |
/// | `canary_analysis_score`, `canary_analysis_traffic_percent`, `canary_analysis_stage` | gauge | `analysis`, `flag`, `profile` | the latest look's score, the canary's traffic share, the 0-based stage |
/// | `canary_analysis_metric_classification` | gauge | `analysis`, `flag`, `profile`, `metric`, `classification` | 1 per metric of the latest look |
/// | `canary_analysis_metric_effect`, `_effect_lower`, `_effect_upper` | gauge | `analysis`, `flag`, `profile`, `metric` | the metric's effect estimate (canary − baseline) and its interval at the latest look |
/// | `canary_executions_total` | counter | `outcome` | one-shot window judgements (Kayenta's API) run by this instance, `succeeded` or `failed` |
/// | `canary_interval_lateness_seconds` | histogram | — | how late a look started after it was due |
/// | `canary_source_request_duration_seconds` | histogram | `source` | time of one metric-source fetch, retries included |
/// | `canary_source_errors_total` | counter | `source`, `kind` | failed metric-source fetches |
/// | `canary_actuator_request_duration_seconds` | histogram | `actuator` | time of one flag change |
/// | `canary_actuator_errors_total` | counter | `actuator` | failed flag changes |
/// | `canary_notifications_total` | counter | `notifier`, `outcome` | notifications `sent` or `failed` per notifier, and `suppressed` by the rate limiter (notifier `-`) |
/// | `canary_pruned_analyses_total` | counter | — | finished analyses deleted by retention (`[store] retain_finished`), with their looks, flag changes and audit entries |
/// | `canary_prune_errors_total` | counter | — | retention passes that failed (the store was unavailable); the next pass tries again |
#[derive(Debug)]
pub struct EngineMetrics {
    registry: Registry,
    /// `canary_analyses{state}`: analyses in each state; set from the store's counts
    /// just before each scrape is encoded.
    pub analyses: Family<StateLabels, Gauge>,
    /// `canary_http_requests_total{method,route,status}`.
    pub http_requests: Family<HttpLabels, Counter>,
    /// `canary_http_request_duration_seconds{method,route}`.
    pub http_request_duration: HistogramFamily<HttpRouteLabels>,
    /// `canary_verdicts_total{outcome}`: updated by the workers.
    pub verdicts: Family<OutcomeLabels, Counter>,
    /// `canary_executions_total{outcome}`: updated by the executor.
    pub executions: Family<OutcomeLabels, Counter>,
    /// `canary_interval_lateness_seconds`: updated by the workers.
    pub interval_lateness: Histogram,
    /// `canary_source_request_duration_seconds{source}`: updated by the workers.
    pub source_request_duration: HistogramFamily<SourceLabels>,
    /// `canary_source_errors_total{source,kind}`: updated by the workers.
    pub source_errors: Family<SourceErrorLabels, Counter>,
    /// `canary_actuator_request_duration_seconds{actuator}`: updated by the workers.
    pub actuator_request_duration: HistogramFamily<ActuatorLabels>,
    /// `canary_actuator_errors_total{actuator}`: updated by the workers.
    pub actuator_errors: Family<ActuatorLabels, Counter>,
    /// `canary_notifications_total{notifier,outcome}`: updated by the workers.
    pub notifications: Family<NotificationLabels, Counter>,
    /// `canary_pruned_analyses_total`: updated by the retention task.
    pub pruned_analyses: Counter,
    /// `canary_prune_errors_total`: updated by the retention task.
    pub prune_errors: Counter,
    /// `canary_analysis_*`: each active analysis's results, set from the store at each
    /// scrape.
    pub active: analyses::ActiveAnalyses,
    /// Held while a scrape sets the store-read series and encodes, so two concurrent
    /// scrapes never see each other's half-set series.
    scrape: std::sync::Mutex<()>,
}

/// `notifier`, `outcome`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct NotificationLabels {
    /// The notifier's name in the settings (`-` for notifications held back).
    pub notifier: String,
    /// `sent`, `failed` or `suppressed`.
    pub outcome: String,
}

/// `method`, `route`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HttpRouteLabels {
    /// `GET`, `POST`, ...
    pub method: String,
    /// The route's template.
    pub route: String,
}

impl Default for EngineMetrics {
    fn default() -> Self {
        Self::new()
    }
}

impl EngineMetrics {
    /// A registry with every metric registered and at zero.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("canary");
        let active = analyses::ActiveAnalyses::register(&mut registry);
        let analyses = Family::<StateLabels, Gauge>::default();
        registry.register(
            "analyses",
            "Analyses in each state, read from the store at scrape time",
            analyses.clone(),
        );
        let http_requests = Family::<HttpLabels, Counter>::default();
        registry.register(
            "http_requests",
            "API requests answered, by method, route template and status code",
            http_requests.clone(),
        );
        let http_request_duration: HistogramFamily<HttpRouteLabels> =
            Family::new_with_constructor(latency_histogram);
        registry.register(
            "http_request_duration_seconds",
            "API request time in seconds (long-polls included)",
            http_request_duration.clone(),
        );
        let verdicts = Family::<OutcomeLabels, Counter>::default();
        registry.register(
            "verdicts",
            "Looks judged by the workers, by verdict (promote, hold, rollback)",
            verdicts.clone(),
        );
        let executions = Family::<OutcomeLabels, Counter>::default();
        registry.register(
            "executions",
            "One-shot window judgements (Kayenta's API) run by this instance, by outcome \
             (succeeded, failed)",
            executions.clone(),
        );
        // 10 ms to about 164 s: the benchmark's target is a p99 under 1 s.
        let interval_lateness = Histogram::new(
            prometheus_client::metrics::histogram::exponential_buckets(0.01, 2.0, 15),
        );
        registry.register(
            "interval_lateness_seconds",
            "How late a look started after it was due, in seconds",
            interval_lateness.clone(),
        );
        let source_request_duration: HistogramFamily<SourceLabels> =
            Family::new_with_constructor(latency_histogram);
        registry.register(
            "source_request_duration_seconds",
            "Time of one metric-source fetch in seconds, retries included",
            source_request_duration.clone(),
        );
        let source_errors = Family::<SourceErrorLabels, Counter>::default();
        registry.register(
            "source_errors",
            "Failed metric-source fetches, by source and kind of error",
            source_errors.clone(),
        );
        let actuator_request_duration: HistogramFamily<ActuatorLabels> =
            Family::new_with_constructor(latency_histogram);
        registry.register(
            "actuator_request_duration_seconds",
            "Time of one flag change in seconds",
            actuator_request_duration.clone(),
        );
        let actuator_errors = Family::<ActuatorLabels, Counter>::default();
        registry.register(
            "actuator_errors",
            "Failed flag changes, by actuator",
            actuator_errors.clone(),
        );
        let notifications = Family::<NotificationLabels, Counter>::default();
        registry.register(
            "notifications",
            "Notifications sent or failed per notifier, and held back by the rate limiter",
            notifications.clone(),
        );
        let pruned_analyses = Counter::default();
        registry.register(
            "pruned_analyses",
            "Finished analyses deleted by retention, with their looks, flag changes and audit entries",
            pruned_analyses.clone(),
        );
        let prune_errors = Counter::default();
        registry.register(
            "prune_errors",
            "Retention passes that failed",
            prune_errors.clone(),
        );
        Self {
            registry,
            notifications,
            pruned_analyses,
            prune_errors,
            analyses,
            http_requests,
            http_request_duration,
            verdicts,
            executions,
            interval_lateness,
            source_request_duration,
            source_errors,
            actuator_request_duration,
            actuator_errors,
            active,
            scrape: std::sync::Mutex::new(()),
        }
    }

    /// The retention task deleted `analyses` finished analyses, or failed (`None`).
    pub fn observe_prune(&self, analyses: Option<u64>) {
        match analyses {
            Some(count) => {
                self.pruned_analyses.inc_by(count);
            }
            None => {
                self.prune_errors.inc();
            }
        }
    }

    /// A worker judged a look: `outcome` is `promote`, `hold` or `rollback`.
    pub fn record_verdict(&self, outcome: &str) {
        self.verdicts
            .get_or_create(&OutcomeLabels {
                outcome: outcome.to_owned(),
            })
            .inc();
    }

    /// The executor finished an execution: `outcome` is `succeeded` or `failed`.
    pub fn observe_execution(&self, outcome: &str) {
        self.executions
            .get_or_create(&OutcomeLabels {
                outcome: outcome.to_owned(),
            })
            .inc();
    }

    /// A worker started a look `seconds` after it was due (negative values count as 0).
    pub fn observe_interval_lateness(&self, seconds: f64) {
        self.interval_lateness.observe(seconds.max(0.0));
    }

    /// A fetch from `source` took `seconds`; `error_kind` is `Some` when it failed.
    pub fn observe_source_request(&self, source: &str, seconds: f64, error_kind: Option<&str>) {
        self.source_request_duration
            .get_or_create(&SourceLabels {
                source: source.to_owned(),
            })
            .observe(seconds);
        if let Some(kind) = error_kind {
            self.source_errors
                .get_or_create(&SourceErrorLabels {
                    source: source.to_owned(),
                    kind: kind.to_owned(),
                })
                .inc();
        }
    }

    /// A flag change through `actuator` took `seconds`; `failed` when it did not apply.
    pub fn observe_actuation(&self, actuator: &str, seconds: f64, failed: bool) {
        let labels = ActuatorLabels {
            actuator: actuator.to_owned(),
        };
        self.actuator_request_duration
            .get_or_create(&labels)
            .observe(seconds);
        if failed {
            self.actuator_errors.get_or_create(&labels).inc();
        }
    }

    /// A notification was sent to `delivered`, failed at `failed`, or held back.
    pub fn observe_notification(&self, delivered: &[String], failed: &[String], suppressed: bool) {
        let count = |notifier: &str, outcome: &str| {
            self.notifications
                .get_or_create(&NotificationLabels {
                    notifier: notifier.to_owned(),
                    outcome: outcome.to_owned(),
                })
                .inc();
        };
        if suppressed {
            count("-", "suppressed");
        }
        for notifier in delivered {
            count(notifier, "sent");
        }
        for notifier in failed {
            count(notifier, "failed");
        }
    }

    /// The API answered a request.
    pub fn observe_http_request(&self, method: &str, route: &str, status: u16, seconds: f64) {
        self.http_requests
            .get_or_create(&HttpLabels {
                method: method.to_owned(),
                route: route.to_owned(),
                status,
            })
            .inc();
        self.http_request_duration
            .get_or_create(&HttpRouteLabels {
                method: method.to_owned(),
                route: route.to_owned(),
            })
            .observe(seconds);
    }

    /// Sets `canary_analyses{state}` for every state (absent states count 0).
    pub fn set_analyses_by_state(&self, counts: &std::collections::BTreeMap<AnalysisState, u64>) {
        for state in AnalysisState::ALL {
            let count = counts.get(&state).copied().unwrap_or(0);
            self.analyses
                .get_or_create(&StateLabels {
                    state: state.as_str().to_owned(),
                })
                .set(i64::try_from(count).unwrap_or(i64::MAX));
        }
    }

    /// One scrape: the analyses by state and each active analysis's results, as the
    /// store has them now, then the whole registry encoded, as one step.
    pub fn encode_scrape(
        &self,
        counts: &std::collections::BTreeMap<AnalysisState, u64>,
        active: &[(crate::store::Analysis, Option<crate::store::LookRecord>)],
    ) -> String {
        let _scrape = self
            .scrape
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        self.set_analyses_by_state(counts);
        self.active.set(active);
        self.encode()
    }

    /// The registry in the OpenMetrics text format (which Prometheus scrapes), ending
    /// with `# EOF`.
    pub fn encode(&self) -> String {
        let mut text = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut text, &self.registry);
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logs_are_coloured_only_on_a_terminal_without_no_color() {
        assert!(colour(true, None));
        assert!(colour(true, Some("".into())));
        assert!(!colour(true, Some("1".into())));
        assert!(
            !colour(false, None),
            "issue 12: a redirected log gets no ANSI codes"
        );
    }

    #[test]
    fn the_worker_hooks_show_up_in_the_exposition() {
        let metrics = EngineMetrics::new();
        metrics.record_verdict("rollback");
        metrics.observe_interval_lateness(0.3);
        metrics.observe_source_request("prod", 0.02, Some("unreachable"));
        metrics.observe_actuation("flags", 0.001, true);
        metrics.observe_notification(&["oncall".to_owned()], &[], false);
        metrics.set_analyses_by_state(&Default::default());
        metrics.observe_prune(Some(3));
        metrics.observe_prune(None);
        let text = metrics.encode();
        for line in [
            "canary_pruned_analyses_total 3",
            "canary_prune_errors_total 1",
            "canary_verdicts_total{outcome=\"rollback\"} 1",
            "canary_interval_lateness_seconds_count 1",
            "canary_source_request_duration_seconds_count{source=\"prod\"} 1",
            "canary_source_errors_total{source=\"prod\",kind=\"unreachable\"} 1",
            "canary_actuator_errors_total{actuator=\"flags\"} 1",
            "canary_notifications_total{notifier=\"oncall\",outcome=\"sent\"} 1",
            "canary_analyses{state=\"rollback_failed\"} 0",
        ] {
            assert!(text.contains(line), "{line} missing from\n{text}");
        }
        assert!(text.ends_with("# EOF\n"));
    }
}
