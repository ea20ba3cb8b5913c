//! A [`MetricSource`] that serves recorded series: `DIR/baseline.{csv,json}` and
//! `DIR/canary.{csv,json}` in the formats `canary analyze` reads.
//!
//! Queries are not run: a request is answered with the recorded series of its metric
//! (`latency_p95`, `error_rate:errors`, `error_rate:total`) and side, cut to the
//! request's window. Paired with a compressed clock that starts at the recording's
//! first timestamp, it replays a whole rollout in seconds.

use std::path::{Path, PathBuf};

use async_trait::async_trait;

use super::recorded::{self, RecordedDataError, RecordedInstances};
use super::{LabeledSeries, MetricSource, RangeRequest, Side, SourceError};
use crate::domain::{MetricData, Observations, Sample};

/// Recorded baseline and canary series.
#[derive(Debug, Clone)]
pub struct ReplaySource {
    directory: PathBuf,
    baseline: Observations,
    canary: Observations,
    /// The series of every instance a side's CSV rows name, served one per instance.
    instances: [RecordedInstances; 2],
}

fn side_file(directory: &Path, side: Side) -> Result<PathBuf, RecordedDataError> {
    ["csv", "json"]
        .iter()
        .map(|extension| directory.join(format!("{}.{extension}", side.as_str())))
        .find(|path| path.exists())
        .ok_or_else(|| RecordedDataError {
            file: directory.display().to_string(),
            line: None,
            message: format!(
                "a replay directory needs {0}.csv or {0}.json",
                side.as_str()
            ),
        })
}

impl ReplaySource {
    /// Reads both sides from `directory`.
    pub fn open(directory: &Path) -> Result<Self, RecordedDataError> {
        let (baseline, baseline_instances) =
            recorded::read_file_with_instances(&side_file(directory, Side::Baseline)?)?;
        let (canary, canary_instances) =
            recorded::read_file_with_instances(&side_file(directory, Side::Canary)?)?;
        Ok(Self {
            directory: directory.to_owned(),
            baseline,
            canary,
            instances: [baseline_instances, canary_instances],
        })
    }

    /// The first and last timestamps recorded on either side.
    pub fn time_range(&self) -> Option<(f64, f64)> {
        let mut range: Option<(f64, f64)> = None;
        for observations in [&self.baseline, &self.canary] {
            for data in observations.metrics.values() {
                let samples = match data {
                    MetricData::Samples { samples, .. } => samples,
                    MetricData::Counts { total, .. } => total,
                };
                for sample in samples {
                    range = Some(match range {
                        None => (sample.timestamp, sample.timestamp),
                        Some((low, high)) => {
                            (low.min(sample.timestamp), high.max(sample.timestamp))
                        }
                    });
                }
            }
        }
        range
    }

    fn series(&self, metric: &str, side: Side) -> Option<&[Sample]> {
        let observations = match side {
            Side::Baseline => &self.baseline,
            Side::Canary => &self.canary,
        };
        let (name, half) = match metric.split_once(':') {
            Some((name, half)) => (name, Some(half)),
            None => (metric, None),
        };
        match (observations.metrics.get(name)?, half) {
            (MetricData::Samples { samples, .. }, None) => Some(samples),
            (MetricData::Counts { errors, .. }, Some("errors")) => Some(errors),
            (MetricData::Counts { total, .. }, Some("total")) => Some(total),
            _ => None,
        }
    }
}

#[async_trait]
impl MetricSource for ReplaySource {
    fn describe(&self) -> String {
        format!("replay:{}", self.directory.display())
    }

    fn uses_queries(&self) -> bool {
        false
    }

    fn recorded_range(&self) -> Option<(f64, f64)> {
        self.time_range()
    }

    async fn healthcheck(&self) -> Result<(), SourceError> {
        Ok(())
    }

    async fn fetch(&self, request: &RangeRequest) -> Result<Vec<LabeledSeries>, SourceError> {
        // Rows that name their instance are served one series per instance, labelled
        // `instance`, as a Prometheus query `by (instance)` answers.
        let side = match request.side {
            Side::Baseline => &self.instances[0],
            Side::Canary => &self.instances[1],
        };
        if let Some(per_instance) = side.get(&request.metric) {
            return Ok(per_instance
                .iter()
                .flat_map(|(instance, samples)| {
                    LabeledSeries::unlabeled_in_window(samples.iter().copied(), request)
                        .into_iter()
                        .map(|mut series| {
                            series
                                .labels
                                .insert("instance".to_owned(), instance.clone());
                            series
                        })
                })
                .collect());
        }
        Ok(self
            .series(&request.metric, request.side)
            .map(|samples| LabeledSeries::unlabeled_in_window(samples.iter().copied(), request))
            .unwrap_or_default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(metric: &str, side: Side, start: f64, end: f64) -> RangeRequest {
        RangeRequest {
            metric: metric.to_owned(),
            side,
            query: String::new(),
            start,
            end,
            step: 15.0,
            raw_samples: false,
        }
    }

    #[tokio::test]
    async fn rows_that_name_their_instance_are_served_one_series_per_instance() {
        let directory = std::env::temp_dir().join(format!("canary-replay-{}", std::process::id()));
        std::fs::create_dir_all(&directory).unwrap();
        for side in ["baseline", "canary"] {
            std::fs::write(
                directory.join(format!("{side}.csv")),
                "metric,timestamp,value,instance\nlatency,10,0.1,a\nlatency,10,0.2,b\n\
                 latency,20,0.1,a\nlatency,20,0.2,b\n",
            )
            .unwrap();
        }
        let source = ReplaySource::open(&directory).unwrap();
        let series = source
            .fetch(&request("latency", Side::Canary, 0.0, 15.0))
            .await
            .unwrap();
        std::fs::remove_dir_all(&directory).unwrap();
        assert_eq!(series.len(), 2);
        assert_eq!(series[0].labels["instance"], "a");
        assert_eq!(series[1].labels["instance"], "b");
        assert_eq!(series[1].samples.len(), 1, "(0, 15] holds one point each");
    }

    #[tokio::test]
    async fn recorded_series_are_served_by_metric_side_and_window() {
        let directory = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/scenarios/healthy");
        let source = ReplaySource::open(&directory).unwrap();
        let (first, last) = source.time_range().unwrap();
        assert_eq!(first, 1_700_000_000.0);
        assert_eq!(last, 1_700_000_000.0 + 119.0 * 15.0);
        let latency = source
            .fetch(&request("latency_p95", Side::Canary, first, first + 150.0))
            .await
            .unwrap();
        assert_eq!(
            latency[0].samples.len(),
            10,
            "(start, end] holds ten 15 s points"
        );
        let errors = source
            .fetch(&request(
                "error_rate:errors",
                Side::Baseline,
                first - 1.0,
                last,
            ))
            .await
            .unwrap();
        assert_eq!(errors[0].samples.len(), 120);
        let unknown = source
            .fetch(&request("nope", Side::Canary, first, last))
            .await
            .unwrap();
        assert!(unknown.is_empty());
    }
}
