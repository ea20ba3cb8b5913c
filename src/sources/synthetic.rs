//! A [`MetricSource`] that generates labeled rollouts: baseline and canary series drawn
//! from chosen distributions, with faults that start at a chosen time.
//!
//! Every value is a pure function of (seed, metric, side, timestamp), so overlapping
//! windows fetched by successive looks see the same data, like a real time-series
//! database, and a seeded simulation is repeatable. Used by the scenario tests of the
//! shipped profiles and by the false-rollback check; queries are not run, metrics are
//! looked up by name (`latency_p95`, `error_rate:errors`, `error_rate:total`).

use std::collections::BTreeMap;

use async_trait::async_trait;

use super::{LabeledSeries, MetricSource, RangeRequest, Side, SourceError};
use crate::domain::Sample;

/// How one side's samples are distributed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Distribution {
    /// Log-normal with this median and log-scale standard deviation (latencies).
    LogNormal {
        /// The median.
        median: f64,
        /// Standard deviation of the logarithm.
        sigma: f64,
    },
    /// Normal with this mean and standard deviation, clipped at 0 (saturation, ratios).
    Normal {
        /// The mean.
        mean: f64,
        /// The standard deviation.
        sd: f64,
    },
}

/// Events per step and the share of them that are errors.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CountModel {
    /// Mean events per step (Poisson).
    pub events_per_step: f64,
    /// Probability that an event is an error.
    pub error_rate: f64,
}

/// The model of one side of one metric, possibly changing at a point in time.
#[derive(Debug, Clone, PartialEq)]
pub enum SideModel {
    /// Plain samples.
    Samples {
        /// Before `change_at`.
        before: Distribution,
        /// From `change_at` on.
        after: Option<(f64, Distribution)>,
    },
    /// Error and total counts.
    Counts {
        /// Before `change_at`.
        before: CountModel,
        /// From `change_at` on.
        after: Option<(f64, CountModel)>,
    },
}

/// Both sides of one metric, and an optional gap where the canary reports nothing.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricModel {
    /// The baseline.
    pub baseline: SideModel,
    /// The canary.
    pub canary: SideModel,
    /// `[from, to)` during which the canary series is absent (a dropped exporter).
    pub canary_gap: Option<(f64, f64)>,
}

impl MetricModel {
    /// Both sides drawn from the same distribution: an A/A metric.
    pub fn same_samples(distribution: Distribution) -> Self {
        Self {
            baseline: SideModel::Samples {
                before: distribution,
                after: None,
            },
            canary: SideModel::Samples {
                before: distribution,
                after: None,
            },
            canary_gap: None,
        }
    }

    /// Both sides with the same counts: an A/A proportion.
    pub fn same_counts(model: CountModel) -> Self {
        Self {
            baseline: SideModel::Counts {
                before: model,
                after: None,
            },
            canary: SideModel::Counts {
                before: model,
                after: None,
            },
            canary_gap: None,
        }
    }

    /// The canary switches to `distribution` at analysis time `at`.
    pub fn canary_samples_from(mut self, at: f64, distribution: Distribution) -> Self {
        if let SideModel::Samples { after, .. } = &mut self.canary {
            *after = Some((at, distribution));
        }
        self
    }

    /// The canary switches to `model` at analysis time `at`.
    pub fn canary_counts_from(mut self, at: f64, model: CountModel) -> Self {
        if let SideModel::Counts { after, .. } = &mut self.canary {
            *after = Some((at, model));
        }
        self
    }
}

/// Generated series for a set of metrics.
#[derive(Debug, Clone)]
pub struct SyntheticSource {
    seed: u64,
    step: f64,
    metrics: BTreeMap<String, MetricModel>,
}

/// SplitMix64: a tiny, well-mixed generator; seeded per point so values do not depend
/// on the order of requests.
pub(crate) struct SplitMix(pub(crate) u64);

impl SplitMix {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in (0, 1).
    pub(crate) fn unit(&mut self) -> f64 {
        ((self.next_u64() >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    }

    pub(crate) fn normal(&mut self) -> f64 {
        let (u, v) = (self.unit(), self.unit());
        (-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos()
    }

    pub(crate) fn poisson(&mut self, mean: f64) -> f64 {
        if mean < 30.0 {
            // Knuth's product method is exact and cheap for small means.
            let limit = (-mean).exp();
            let mut product = self.unit();
            let mut count = 0.0;
            while product > limit {
                product *= self.unit();
                count += 1.0;
            }
            count
        } else {
            (mean + mean.sqrt() * self.normal()).round().max(0.0)
        }
    }

    pub(crate) fn binomial(&mut self, trials: f64, p: f64) -> f64 {
        if trials * p < 30.0 && trials < 5_000.0 {
            (0..trials as u64).filter(|_| self.unit() < p).count() as f64
        } else {
            let mean = trials * p;
            (mean + (mean * (1.0 - p)).sqrt() * self.normal())
                .round()
                .clamp(0.0, trials)
        }
    }
}

pub(crate) fn point_seed(seed: u64, metric: &str, side: Side, timestamp: f64) -> u64 {
    // FNV-1a over the identity of the point.
    let mut hash = 0xcbf2_9ce4_8422_2325u64 ^ seed;
    let millis = (timestamp * 1000.0).round() as i64;
    for byte in metric
        .bytes()
        .chain([side as u8])
        .chain(millis.to_le_bytes())
    {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash
}

impl SyntheticSource {
    /// A source with one point per `step` seconds.
    pub fn new(seed: u64, step: f64, metrics: BTreeMap<String, MetricModel>) -> Self {
        Self {
            seed,
            step,
            metrics,
        }
    }

    fn value(&self, metric: &str, half: Option<&str>, side: Side, timestamp: f64) -> Option<f64> {
        let model = self.metrics.get(metric)?;
        if side == Side::Canary
            && let Some((from, to)) = model.canary_gap
            && timestamp >= from
            && timestamp < to
        {
            return None;
        }
        let side_model = match side {
            Side::Baseline => &model.baseline,
            Side::Canary => &model.canary,
        };
        let mut rng = SplitMix(point_seed(self.seed, metric, side, timestamp));
        match (side_model, half) {
            (SideModel::Samples { before, after }, None) => {
                let distribution = match after {
                    Some((at, changed)) if timestamp >= *at => changed,
                    _ => before,
                };
                Some(match *distribution {
                    Distribution::LogNormal { median, sigma } => {
                        median * (sigma * rng.normal()).exp()
                    }
                    Distribution::Normal { mean, sd } => (mean + sd * rng.normal()).max(0.0),
                })
            }
            (SideModel::Counts { before, after }, Some(half)) => {
                let counts = match after {
                    Some((at, changed)) if timestamp >= *at => changed,
                    _ => before,
                };
                // Both halves come from the same draw, so errors never exceed the total.
                let total = rng.poisson(counts.events_per_step);
                let errors = rng.binomial(total, counts.error_rate);
                match half {
                    "errors" => Some(errors),
                    "total" => Some(total),
                    _ => None,
                }
            }
            _ => None,
        }
    }
}

#[async_trait]
impl MetricSource for SyntheticSource {
    fn describe(&self) -> String {
        format!("synthetic:seed={}", self.seed)
    }

    fn uses_queries(&self) -> bool {
        false
    }

    async fn healthcheck(&self) -> Result<(), SourceError> {
        Ok(())
    }

    async fn fetch(&self, request: &RangeRequest) -> Result<Vec<LabeledSeries>, SourceError> {
        let (metric, half) = match request.metric.split_once(':') {
            Some((metric, half)) => (metric, Some(half)),
            None => (request.metric.as_str(), None),
        };
        let first = (request.start / self.step).floor() as i64 + 1;
        let last = (request.end / self.step).floor() as i64;
        let samples = (first..=last).filter_map(|k| {
            let timestamp = k as f64 * self.step;
            self.value(metric, half, request.side, timestamp)
                .map(|value| Sample { timestamp, value })
        });
        Ok(LabeledSeries::unlabeled_in_window(samples, request))
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

    fn source() -> SyntheticSource {
        let latency = Distribution::LogNormal {
            median: 0.2,
            sigma: 0.2,
        };
        SyntheticSource::new(
            7,
            15.0,
            BTreeMap::from([
                (
                    "latency".to_owned(),
                    MetricModel::same_samples(latency).canary_samples_from(
                        600.0,
                        Distribution::LogNormal {
                            median: 0.4,
                            sigma: 0.2,
                        },
                    ),
                ),
                (
                    "errors".to_owned(),
                    MetricModel::same_counts(CountModel {
                        events_per_step: 200.0,
                        error_rate: 0.01,
                    }),
                ),
            ]),
        )
    }

    #[tokio::test]
    async fn overlapping_windows_see_the_same_points() {
        let source = source();
        let a = source
            .fetch(&request("latency", Side::Canary, 0.0, 300.0))
            .await
            .unwrap();
        let b = source
            .fetch(&request("latency", Side::Canary, 150.0, 450.0))
            .await
            .unwrap();
        let shared: Vec<&Sample> = a[0]
            .samples
            .iter()
            .filter(|s| s.timestamp > 150.0)
            .collect();
        assert_eq!(shared.len(), 10);
        for sample in shared {
            assert!(b[0].samples.contains(sample));
        }
    }

    #[tokio::test]
    async fn a_fault_changes_the_canary_from_its_start_time() {
        let source = source();
        let before = source
            .fetch(&request("latency", Side::Canary, 0.0, 600.0))
            .await
            .unwrap();
        let after = source
            .fetch(&request("latency", Side::Canary, 600.0, 1200.0))
            .await
            .unwrap();
        let mean = |s: &[Sample]| s.iter().map(|x| x.value).sum::<f64>() / s.len() as f64;
        assert!(mean(&after[0].samples) > 1.5 * mean(&before[0].samples));
    }

    #[tokio::test]
    async fn counts_never_have_more_errors_than_events() {
        let source = source();
        let errors = source
            .fetch(&request("errors:errors", Side::Baseline, 0.0, 3000.0))
            .await
            .unwrap();
        let total = source
            .fetch(&request("errors:total", Side::Baseline, 0.0, 3000.0))
            .await
            .unwrap();
        for (e, t) in errors[0].samples.iter().zip(&total[0].samples) {
            assert!(e.value <= t.value && t.value > 100.0);
        }
        let rate: f64 = errors[0].samples.iter().map(|s| s.value).sum::<f64>()
            / total[0].samples.iter().map(|s| s.value).sum::<f64>();
        assert!((rate - 0.01).abs() < 0.003, "{rate}");
    }
}
