//! Decorators that time every metric-source fetch and every flag change and count
//! their failures in [`EngineMetrics`], so `/metrics` shows a slow Prometheus or a flag
//! store that refuses changes without any source or actuator knowing about metrics.
//!
//! They are wrapped around the registry's entries once, in the composition root
//! ([`crate::scheduler::Registry::instrumented`]); the label is the name the
//! settings give the source or actuator, which keeps the label set small and stable.

use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;

use super::EngineMetrics;
use crate::actuators::{Actuator, ActuatorError, FlagChange, FlagState};
use crate::sources::{LabeledSeries, MetricSource, RangeRequest, SourceError};

/// A [`MetricSource`] whose fetches are timed and whose failures are counted by kind.
pub struct InstrumentedSource {
    name: String,
    inner: Arc<dyn MetricSource>,
    metrics: Arc<EngineMetrics>,
}

impl InstrumentedSource {
    /// Wraps `inner`, reporting under `name`.
    pub fn new(name: &str, inner: Arc<dyn MetricSource>, metrics: Arc<EngineMetrics>) -> Self {
        Self {
            name: name.to_owned(),
            inner,
            metrics,
        }
    }
}

/// The `kind` label of `canary_source_errors_total`.
fn source_error_kind(error: &SourceError) -> &'static str {
    error.kind()
}

#[async_trait]
impl MetricSource for InstrumentedSource {
    fn describe(&self) -> String {
        self.inner.describe()
    }

    fn uses_queries(&self) -> bool {
        self.inner.uses_queries()
    }

    fn language(&self) -> crate::domain::QueryLanguage {
        self.inner.language()
    }

    fn render_scope(&self, scope: &str) -> Result<String, String> {
        self.inner.render_scope(scope)
    }

    fn query_variables(&self, start: f64, end: f64) -> Vec<(&'static str, String)> {
        self.inner.query_variables(start, end)
    }

    fn recorded_range(&self) -> Option<(f64, f64)> {
        self.inner.recorded_range()
    }

    async fn healthcheck(&self) -> Result<(), SourceError> {
        self.inner.healthcheck().await
    }

    async fn fetch(&self, request: &RangeRequest) -> Result<Vec<LabeledSeries>, SourceError> {
        let started = Instant::now();
        let result = self.inner.fetch(request).await;
        let kind = result.as_ref().err().map(source_error_kind);
        self.metrics
            .observe_source_request(&self.name, started.elapsed().as_secs_f64(), kind);
        result
    }
}

/// An [`Actuator`] whose flag changes (`set_rollout`, `kill`) are timed and whose
/// failures are counted. Read-backs and health checks are not flag changes and are
/// passed through untimed.
pub struct InstrumentedActuator {
    name: String,
    inner: Arc<dyn Actuator>,
    metrics: Arc<EngineMetrics>,
}

impl InstrumentedActuator {
    /// Wraps `inner`, reporting under `name`.
    pub fn new(name: &str, inner: Arc<dyn Actuator>, metrics: Arc<EngineMetrics>) -> Self {
        Self {
            name: name.to_owned(),
            inner,
            metrics,
        }
    }

    fn observe<T>(&self, started: Instant, result: &Result<T, ActuatorError>) {
        self.metrics.observe_actuation(
            &self.name,
            started.elapsed().as_secs_f64(),
            result.is_err(),
        );
    }
}

#[async_trait]
impl Actuator for InstrumentedActuator {
    fn describe(&self) -> String {
        self.inner.describe()
    }

    async fn healthcheck(&self, flag: &str) -> Result<FlagState, ActuatorError> {
        self.inner.healthcheck(flag).await
    }

    async fn current(&self, flag: &str) -> Result<FlagState, ActuatorError> {
        self.inner.current(flag).await
    }

    fn sees_outside_changes(&self) -> bool {
        self.inner.sees_outside_changes()
    }

    async fn apply(&self, change: &FlagChange) -> Result<FlagState, ActuatorError> {
        let started = Instant::now();
        let result = self.inner.apply(change).await;
        self.observe(started, &result);
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::actuators::ActuatorExt;
    use crate::actuators::log_only::LogOnlyActuator;
    use crate::domain::Percentage;
    use crate::sources::Side;

    /// A source that fails every fetch as unreachable.
    struct DownSource;

    #[async_trait]
    impl MetricSource for DownSource {
        fn describe(&self) -> String {
            "down".to_owned()
        }
        async fn healthcheck(&self) -> Result<(), SourceError> {
            Ok(())
        }
        async fn fetch(&self, _: &RangeRequest) -> Result<Vec<LabeledSeries>, SourceError> {
            Err(SourceError::Unreachable {
                source_name: "down".to_owned(),
                message: "connection refused".to_owned(),
            })
        }
    }

    #[tokio::test]
    async fn fetches_and_flag_changes_are_timed_and_failures_counted_under_the_settings_name() {
        let metrics = Arc::new(EngineMetrics::new());
        let source = InstrumentedSource::new("prod", Arc::new(DownSource), Arc::clone(&metrics));
        let request = RangeRequest {
            metric: "latency".to_owned(),
            side: Side::Canary,
            query: "q".to_owned(),
            start: 0.0,
            end: 60.0,
            step: 1.0,
            raw_samples: true,
        };
        assert!(source.fetch(&request).await.is_err());
        assert_eq!(source.describe(), "down");

        let actuator = InstrumentedActuator::new(
            "flags",
            Arc::new(LogOnlyActuator::new()),
            Arc::clone(&metrics),
        );
        actuator
            .set_rollout("checkout", Percentage::parse(5.0).unwrap())
            .await
            .unwrap();
        actuator.kill("checkout").await.unwrap();
        actuator.current("checkout").await.unwrap();

        let text = metrics.encode();
        for line in [
            "canary_source_request_duration_seconds_count{source=\"prod\"} 1",
            "canary_source_errors_total{source=\"prod\",kind=\"unreachable\"} 1",
            "canary_actuator_request_duration_seconds_count{actuator=\"flags\"} 2",
        ] {
            assert!(text.contains(line), "{line} missing from\n{text}");
        }
        assert!(!text.contains("canary_actuator_errors_total{actuator=\"flags\"}"));
    }
}
