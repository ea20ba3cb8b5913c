//! Recorded observations of one side (baseline or canary): per metric, either a
//! series of samples or a pair of count series (errors and total events).
//!
//! Values may be NaN: that is how Prometheus and recorders mark a missing
//! point, and the judge decides what missing data means. Infinities and
//! malformed numbers never get here; the readers refuse them with a file and line.

use std::collections::BTreeMap;

use super::Location;

/// One timestamped value. `value` may be NaN (missing).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    /// Seconds since the Unix epoch.
    pub timestamp: f64,
    /// The observed value, or NaN when the point is missing.
    pub value: f64,
}

impl Sample {
    /// The sum of `samples`' values, missing (NaN) points left out: the events a run of
    /// per-step counts holds.
    pub fn total(samples: &[Sample]) -> f64 {
        samples
            .iter()
            .map(|s| s.value)
            .filter(|v| v.is_finite())
            .sum()
    }
}

/// The data for one metric on one side.
#[derive(Debug, Clone, PartialEq)]
pub enum MetricData {
    /// Plain samples, for continuous and threshold metrics.
    Samples {
        /// In the order they were read.
        samples: Vec<Sample>,
        /// Where the metric first appears, for error messages.
        origin: Location,
    },
    /// Errors and total events per timestamp, for proportion (and rate threshold) metrics.
    /// Both series hold the same timestamps in the same order; counts are
    /// non-negative and `errors <= total` at every timestamp (the readers check).
    Counts {
        /// Error (bad event) counts per timestamp; NaN when missing.
        errors: Vec<Sample>,
        /// Total event counts per timestamp; NaN when missing.
        total: Vec<Sample>,
        /// Where the metric first appears, for error messages.
        origin: Location,
    },
}

impl MetricData {
    /// Where the metric first appears in its file.
    pub fn origin(&self) -> &Location {
        match self {
            MetricData::Samples { origin, .. } | MetricData::Counts { origin, .. } => origin,
        }
    }
}

/// Everything recorded for one side of the comparison.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Observations {
    /// Metric name → data.
    pub metrics: BTreeMap<String, MetricData>,
    /// Metric name → why its data could not be had or cannot be trusted (the source was
    /// unreachable, a series had no counterpart on the other side). The judge makes such
    /// a metric inconclusive with this reason, whatever data it has.
    pub problems: BTreeMap<String, String>,
    /// Metric name → its samples per instance (host, pod), for continuous metrics whose
    /// series carry instance labels (`[judge] instance_labels`). The same points are
    /// pooled in `metrics`; this only says which instance each came from, so the judge
    /// can tell how many instances stand behind each side. Absent when the source's
    /// series name no instance (an aggregated query, a recording without instances).
    pub instances: BTreeMap<String, Vec<InstanceSeries>>,
    /// Metric name → its error and total counts per instance, for proportion metrics
    /// whose series carry instance labels: the same counts are summed in `metrics`;
    /// this lets the judge allow for error rates that differ from host to host.
    pub count_instances: BTreeMap<String, Vec<InstanceCounts>>,
}

/// The per-step counts of one instance (host, pod) of one side of a proportion metric.
#[derive(Debug, Clone, PartialEq)]
pub struct InstanceCounts {
    /// The instance's name, as for [`InstanceSeries::instance`].
    pub instance: String,
    /// Its error counts per step, in time order (an instance that had no error series
    /// has none).
    pub errors: Vec<Sample>,
    /// Its total counts per step, in time order.
    pub total: Vec<Sample>,
}

/// The points of one instance (host, pod) of one side of a continuous metric.
#[derive(Debug, Clone, PartialEq)]
pub struct InstanceSeries {
    /// The instance's name: its instance labels, `pod="web-1"` or
    /// `instance="10.0.0.7:9100",pod="web-1"`.
    pub instance: String,
    /// Its samples, in time order; NaN where missing.
    pub samples: Vec<Sample>,
}

/// Data that does not fit the profile it is judged under.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{origin}: {message}")]
pub struct DataMismatch {
    /// Where the offending metric first appears.
    pub origin: Location,
    /// What does not fit and what the profile expects.
    pub message: String,
}

impl Observations {
    /// Checks that every metric in the data is one the profile knows, with the shape
    /// its kind needs. A profile metric absent from the data is *not* an error here:
    /// the judge reports it as inconclusive (missing data holds, it never promotes).
    pub fn check_against(&self, profile: &super::Profile) -> Result<(), DataMismatch> {
        use super::MetricKind;
        for (name, data) in &self.metrics {
            let Some(spec) = profile.metric(name) else {
                let known: Vec<&str> = profile.metrics.iter().map(|m| m.name.as_str()).collect();
                return Err(DataMismatch {
                    origin: data.origin().clone(),
                    message: format!(
                        "metric {name:?} is not in profile {:?}; its metrics are: {}",
                        profile.name,
                        known.join(", ")
                    ),
                });
            };
            let message = match (&spec.kind, data) {
                (MetricKind::Continuous(_), MetricData::Counts { .. }) => Some(format!(
                    "metric {name:?} is continuous in the profile, so it needs plain `{name}` rows, not `{name}:errors`/`{name}:total` counts"
                )),
                (MetricKind::Proportion(_), MetricData::Samples { .. }) => Some(format!(
                    "metric {name:?} is a proportion in the profile, so it needs `{name}:errors` and `{name}:total` rows, not plain `{name}` rows"
                )),
                _ => None,
            };
            if let Some(message) = message {
                return Err(DataMismatch {
                    origin: data.origin().clone(),
                    message,
                });
            }
        }
        Ok(())
    }
}

impl Observations {
    /// The observations with timestamps in `(from, to]`, problems kept. Count pairs stay
    /// aligned because both halves share their timestamps.
    pub fn restricted(&self, from: f64, to: f64) -> Observations {
        let keep = |samples: &[Sample]| -> Vec<Sample> {
            samples
                .iter()
                .copied()
                .filter(|s| s.timestamp > from && s.timestamp <= to)
                .collect()
        };
        let metrics = self
            .metrics
            .iter()
            .map(|(name, data)| {
                let data = match data {
                    MetricData::Samples { samples, origin } => MetricData::Samples {
                        samples: keep(samples),
                        origin: origin.clone(),
                    },
                    MetricData::Counts {
                        errors,
                        total,
                        origin,
                    } => MetricData::Counts {
                        errors: keep(errors),
                        total: keep(total),
                        origin: origin.clone(),
                    },
                };
                (name.clone(), data)
            })
            .collect();
        let instances = self
            .instances
            .iter()
            .map(|(name, instances)| {
                let kept = instances
                    .iter()
                    .map(|one| InstanceSeries {
                        instance: one.instance.clone(),
                        samples: keep(&one.samples),
                    })
                    .filter(|one| !one.samples.is_empty())
                    .collect();
                (name.clone(), kept)
            })
            .collect();
        let count_instances = self
            .count_instances
            .iter()
            .map(|(name, instances)| {
                let kept = instances
                    .iter()
                    .map(|one| InstanceCounts {
                        instance: one.instance.clone(),
                        errors: keep(&one.errors),
                        total: keep(&one.total),
                    })
                    .filter(|one| !one.total.is_empty())
                    .collect();
                (name.clone(), kept)
            })
            .collect();
        Observations {
            metrics,
            problems: self.problems.clone(),
            instances,
            count_instances,
        }
    }
}

/// The share of the baseline's points a canary series must have, in the same window,
/// before its data is trusted.
pub const MIN_COVERAGE: f64 = 0.9;

/// The smallest chance, under equal measured shares, of a canary measuring as few of
/// its steps as it did before a metric with `nan_policy = "empty_steps"` counts as
/// having a gap (one-sided, per look).
pub const EMPTY_STEPS_LEVEL: f64 = 0.001;

impl Observations {
    /// How many instances of one metric have a finite point, when its series name them.
    pub fn instance_count(&self, metric: &str) -> Option<usize> {
        self.instances_with_points(metric, true)
    }

    /// How many instances of one metric have a point (finite, or NaN too when
    /// `finite_only` is false), when its series name them.
    fn instances_with_points(&self, metric: &str, finite_only: bool) -> Option<usize> {
        self.instances.get(metric).map(|instances| {
            instances
                .iter()
                .filter(|one| {
                    one.samples
                        .iter()
                        .any(|s| !finite_only || s.value.is_finite())
                })
                .count()
        })
    }

    /// Points of one metric, NaN included (steps the series reported at all).
    pub fn steps_reported(&self, metric: &str) -> usize {
        match self.metrics.get(metric) {
            Some(MetricData::Samples { samples, .. }) => samples.len(),
            Some(MetricData::Counts { total, .. }) => total.len(),
            None => 0,
        }
    }

    /// Finite points of one metric (for count data: steps with a finite total).
    pub fn points(&self, metric: &str) -> usize {
        match self.metrics.get(metric) {
            Some(MetricData::Samples { samples, .. }) => {
                samples.iter().filter(|s| s.value.is_finite()).count()
            }
            Some(MetricData::Counts { total, .. }) => {
                total.iter().filter(|s| s.value.is_finite()).count()
            }
            None => 0,
        }
    }
}

/// The metrics of `profile` without a single canary point since the previous look:
/// the gap check of a stage without a baseline, which has no baseline's points to
/// count against (and a source's resolution is not known here, so a thinner series is
/// not taken for a gap; its triggers still see every point it has).
pub fn canary_coverage_problems(
    profile: &super::Profile,
    canary: &Observations,
) -> BTreeMap<String, String> {
    profile
        .metrics
        .iter()
        .filter(|spec| {
            if spec.nan_policy == super::NanPolicy::EmptySteps {
                canary.steps_reported(&spec.name) == 0
            } else {
                canary.points(&spec.name) == 0
            }
        })
        .map(|spec| {
            (
                spec.name.clone(),
                "the canary has no points since the previous analysis: a gap in its data, \
                 which never promotes"
                    .to_owned(),
            )
        })
        .collect()
}

/// Gaps in the canary's series: for every step-aligned metric (not `raw_samples`) of
/// `profile` where the canary has fewer than [`MIN_COVERAGE`] of the baseline's points
/// in the same window, why its data is not trusted. Both windows must be the same.
/// When both sides name their instances, points are counted per instance: a canary of
/// two pods beside a baseline of three has two thirds of its points and no gap.
pub fn coverage_problems(
    profile: &super::Profile,
    baseline: &Observations,
    canary: &Observations,
) -> BTreeMap<String, String> {
    profile
        .metrics
        .iter()
        .filter(|spec| !spec.raw_samples)
        .filter_map(|spec| {
            let empty_steps = spec.nan_policy == super::NanPolicy::EmptySteps;
            // With empty steps a NaN point is a step the series did report: the
            // presence gap counts every point, and the measured share is compared below.
            let (b, c) = if empty_steps {
                (
                    baseline.steps_reported(&spec.name),
                    canary.steps_reported(&spec.name),
                )
            } else {
                (baseline.points(&spec.name), canary.points(&spec.name))
            };
            let per_instance = match (
                baseline.instances_with_points(&spec.name, !empty_steps),
                canary.instances_with_points(&spec.name, !empty_steps),
            ) {
                (Some(kb), Some(kc)) if kb > 0 && kc > 0 => kc as f64 / kb as f64,
                _ => 1.0,
            };
            if b >= 2 && (c as f64) < MIN_COVERAGE * b as f64 * per_instance {
                return Some((
                    spec.name.clone(),
                    format!(
                        "the canary has {c} of the baseline's {b} points since the previous analysis: \
                         a gap in its data, which never promotes"
                    ),
                ));
            }
            if !empty_steps {
                return None;
            }
            let (measured_b, measured_c) =
                (baseline.points(&spec.name), canary.points(&spec.name));
            fewer_measured_steps(measured_b, b, measured_c, c).then(|| {
                (
                    spec.name.clone(),
                    format!(
                        "the canary measured {measured_c} of its {c} steps since the previous analysis, \
                         the baseline {measured_b} of {b}: fewer than chance allows (p < {EMPTY_STEPS_LEVEL}), \
                         a gap in its data, which never promotes"
                    ),
                )
            })
        })
        .collect()
}

/// Whether a canary that measured `measured_c` of its `c` steps measured clearly fewer
/// than a baseline with `measured_b` of `b`: given the steps measured on both sides,
/// the canary's count is binomial with its share of the steps under equal measured
/// shares, and its lower tail is below [`EMPTY_STEPS_LEVEL`].
fn fewer_measured_steps(measured_b: usize, b: usize, measured_c: usize, c: usize) -> bool {
    use statrs::distribution::{Binomial, DiscreteCDF};
    let measured = measured_b + measured_c;
    if measured == 0 || c == 0 || b == 0 {
        return false;
    }
    let share = c as f64 / (b + c) as f64;
    Binomial::new(share, measured as u64)
        .is_ok_and(|binomial| binomial.cdf(measured_c as u64) < EMPTY_STEPS_LEVEL)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn profile() -> super::super::Profile {
        super::super::Profile::parse(
            "name = \"p\"\n[[metrics]]\nname = \"latency\"\nkind = \"continuous\"\n",
            "p.toml",
        )
        .unwrap()
    }

    /// `pods` instances of `steps` points each, pooled and kept per instance.
    fn side(prefix: &str, pods: usize, steps: usize, with_instances: bool) -> Observations {
        let origin = Location {
            file: "t".to_owned(),
            line: 1,
        };
        let instances: Vec<InstanceSeries> = (0..pods)
            .map(|pod| InstanceSeries {
                instance: format!("pod=\"{prefix}-{pod}\""),
                samples: (0..steps)
                    .map(|step| Sample {
                        timestamp: step as f64,
                        value: 1.0,
                    })
                    .collect(),
            })
            .collect();
        let pooled = instances.iter().flat_map(|i| i.samples.clone()).collect();
        let mut observations = Observations::default();
        observations.metrics.insert(
            "latency".to_owned(),
            MetricData::Samples {
                samples: pooled,
                origin,
            },
        );
        if with_instances {
            observations
                .instances
                .insert("latency".to_owned(), instances);
        }
        observations
    }

    #[test]
    fn fewer_canary_instances_than_baseline_instances_are_no_gap() {
        let problems =
            coverage_problems(&profile(), &side("b", 3, 6, true), &side("c", 2, 6, true));
        assert!(problems.is_empty(), "{problems:?}");
    }

    #[test]
    fn a_canary_instance_missing_steps_is_still_a_gap() {
        let mut canary = side("c", 3, 6, true);
        // One pod reports only two of its six steps.
        let instances = canary.instances.get_mut("latency").unwrap();
        instances[2].samples.truncate(2);
        let pooled: Vec<Sample> = instances.iter().flat_map(|i| i.samples.clone()).collect();
        canary.metrics.insert(
            "latency".to_owned(),
            MetricData::Samples {
                samples: pooled,
                origin: Location {
                    file: "t".to_owned(),
                    line: 1,
                },
            },
        );
        let problems = coverage_problems(&profile(), &side("b", 3, 6, true), &canary);
        assert!(problems.contains_key("latency"), "{problems:?}");
    }

    #[test]
    fn without_instances_points_are_compared_as_they_are() {
        let problems =
            coverage_problems(&profile(), &side("b", 3, 6, false), &side("c", 2, 6, false));
        assert!(problems.contains_key("latency"), "{problems:?}");
    }

    /// One series of `steps` points, the first `measured` of them finite and the rest
    /// NaN (steps without a request to measure).
    fn sparse(steps: usize, measured: usize) -> Observations {
        let samples = (0..steps)
            .map(|step| Sample {
                timestamp: step as f64,
                value: if step < measured { 1.0 } else { f64::NAN },
            })
            .collect();
        let mut observations = Observations::default();
        observations.metrics.insert(
            "latency".to_owned(),
            MetricData::Samples {
                samples,
                origin: Location {
                    file: "t".to_owned(),
                    line: 1,
                },
            },
        );
        observations
    }

    fn empty_steps_profile() -> super::super::Profile {
        super::super::Profile::parse(
            "name = \"p\"\n[[metrics]]\nname = \"latency\"\nkind = \"continuous\"\nnan_policy = \"empty_steps\"\n",
            "p.toml",
        )
        .unwrap()
    }

    #[test]
    fn empty_steps_on_both_sides_are_no_gap_and_a_canary_that_stops_measuring_is() {
        let sparse_profile = empty_steps_profile();
        let profile = &sparse_profile;
        // Low traffic: a few of twenty steps measured on each side.
        assert!(coverage_problems(profile, &sparse(20, 3), &sparse(20, 1)).is_empty());
        assert!(coverage_problems(profile, &sparse(20, 2), &sparse(20, 0)).is_empty());
        // Without the policy the same data is a gap (NaN points are missing points).
        assert!(
            coverage_problems(&self::profile(), &sparse(20, 3), &sparse(20, 1))
                .contains_key("latency")
        );
        // A canary that stops answering while the baseline measures most steps.
        let problems = coverage_problems(profile, &sparse(20, 18), &sparse(20, 2));
        assert!(
            problems["latency"].contains("the canary measured 2 of its 20 steps"),
            "{problems:?}"
        );
        // Steps not reported at all are still a gap.
        assert!(coverage_problems(profile, &sparse(20, 3), &sparse(10, 1)).contains_key("latency"));
        // A stage without a baseline: NaN steps are reported steps.
        assert!(canary_coverage_problems(profile, &sparse(4, 0)).is_empty());
        assert!(canary_coverage_problems(&self::profile(), &sparse(4, 0)).contains_key("latency"));
    }
}
