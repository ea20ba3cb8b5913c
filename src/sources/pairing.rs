//! Matching baseline series to canary series, and pooling matched pairs into the
//! per-side [`MetricData`] that the judge reads.
//!
//! A query rendered for each side returns series whose label sets differ by design in
//! the *scope labels* (`track`, `version`, `pod`, ...) and otherwise name the same
//! thing (`route="/api"`). Two series pair when their label sets are equal once the
//! scope labels are removed. Series of one side that share that reduced label set
//! (one per pod, say) are first merged into one series, samples in time order, with
//! the labels they all have in common.
//!
//! Nothing is dropped silently: a series without a counterpart stays in the
//! [`Pairing`], and [`Pairing::pooled_samples`] turns each into a readable note. Its
//! samples are left out of the pooled data so that both sides cover the same things.

use std::collections::BTreeMap;

use crate::domain::{Location, MetricData, Sample};
use crate::sources::{LabeledSeries, Side};

/// Baseline and canary series matched by their labels.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Pairing {
    /// (baseline, canary) pairs, in the order of their reduced label sets.
    pub pairs: Vec<(LabeledSeries, LabeledSeries)>,
    /// Baseline series with no canary counterpart.
    pub unpaired_baseline: Vec<LabeledSeries>,
    /// Canary series with no baseline counterpart.
    pub unpaired_canary: Vec<LabeledSeries>,
}

/// The pooled samples of both sides of a pairing, with a note for every series left
/// out.
#[derive(Debug, Clone, PartialEq)]
pub struct PooledSamples {
    /// All samples of the paired baseline series.
    pub baseline: MetricData,
    /// All samples of the paired canary series.
    pub canary: MetricData,
    /// One sentence per unpaired series, e.g.
    /// `canary series {route="/api"} has no baseline counterpart`.
    pub notes: Vec<String>,
}

/// Pairs baseline and canary series whose label sets are equal without `scope_labels`.
pub fn pair_series(
    baseline: Vec<LabeledSeries>,
    canary: Vec<LabeledSeries>,
    scope_labels: &[String],
) -> Pairing {
    let mut baseline_by_key = group_by_key(baseline, scope_labels);
    let canary_by_key = group_by_key(canary, scope_labels);
    let mut pairing = Pairing::default();
    for (key, canary_series) in canary_by_key {
        match baseline_by_key.remove(&key) {
            Some(baseline_series) => pairing.pairs.push((baseline_series, canary_series)),
            None => pairing.unpaired_canary.push(canary_series),
        }
    }
    pairing.unpaired_baseline = baseline_by_key.into_values().collect();
    pairing
}

impl Pairing {
    /// Pools the samples of all pairs per side (for sample-based metrics) and writes a
    /// note for every unpaired series. `scope_labels` are left out of the notes, as
    /// they only say which side a series is on; `origin` is where the metric is
    /// defined, for later error messages.
    pub fn pooled_samples(&self, scope_labels: &[String], origin: Location) -> PooledSamples {
        let mut baseline_samples = Vec::new();
        let mut canary_samples = Vec::new();
        for (baseline_series, canary_series) in &self.pairs {
            baseline_samples.extend_from_slice(&baseline_series.samples);
            canary_samples.extend_from_slice(&canary_series.samples);
        }
        PooledSamples {
            baseline: MetricData::Samples {
                samples: baseline_samples,
                origin: origin.clone(),
            },
            canary: MetricData::Samples {
                samples: canary_samples,
                origin,
            },
            notes: self.notes(scope_labels),
        }
    }

    /// One sentence per unpaired series, baseline first.
    pub fn notes(&self, scope_labels: &[String]) -> Vec<String> {
        let unpaired = [
            (Side::Baseline, Side::Canary, &self.unpaired_baseline),
            (Side::Canary, Side::Baseline, &self.unpaired_canary),
        ];
        unpaired
            .into_iter()
            .flat_map(|(side, other_side, series)| {
                series.iter().map(move |series| {
                    format!(
                        "{} series {} has no {} counterpart",
                        side.as_str(),
                        series_name(&reduced_labels(&series.labels, scope_labels)),
                        other_side.as_str()
                    )
                })
            })
            .collect()
    }
}

/// The series' name in PromQL selector syntax: `name{label="value", ...}`, with
/// `__name__` as the name when it is there.
pub fn series_name(labels: &BTreeMap<String, String>) -> String {
    let name = labels.get("__name__").map_or("", String::as_str);
    let matchers: Vec<String> = labels
        .iter()
        .filter(|(label, _)| label.as_str() != "__name__")
        .map(|(label, value)| format!("{label}={value:?}"))
        .collect();
    format!("{name}{{{}}}", matchers.join(", "))
}

/// The label set without `scope_labels`: what pairs a series with the other side's.
pub fn reduced_labels(
    labels: &BTreeMap<String, String>,
    scope_labels: &[String],
) -> BTreeMap<String, String> {
    labels
        .iter()
        .filter(|(label, _)| !scope_labels.contains(label))
        .map(|(label, value)| (label.clone(), value.clone()))
        .collect()
}

/// The instance a series comes from: the values of its `instance_labels`, as
/// `pod="web-1"` (several joined by commas), or `None` when it has none of them.
pub fn instance_name(
    labels: &BTreeMap<String, String>,
    instance_labels: &[String],
) -> Option<String> {
    let parts: Vec<String> = instance_labels
        .iter()
        .filter_map(|label| labels.get(label).map(|value| format!("{label}={value:?}")))
        .collect();
    (!parts.is_empty()).then(|| parts.join(","))
}

/// Groups a side's series by reduced label set, merging series that share one.
fn group_by_key(
    series: Vec<LabeledSeries>,
    scope_labels: &[String],
) -> BTreeMap<BTreeMap<String, String>, LabeledSeries> {
    let mut groups: BTreeMap<BTreeMap<String, String>, LabeledSeries> = BTreeMap::new();
    for one in series {
        let key = reduced_labels(&one.labels, scope_labels);
        match groups.get_mut(&key) {
            None => {
                groups.insert(key, one);
            }
            Some(merged) => {
                merged
                    .labels
                    .retain(|label, value| one.labels.get(label) == Some(value));
                merged.samples.extend_from_slice(&one.samples);
                merged.samples.sort_by(|left: &Sample, right: &Sample| {
                    left.timestamp.total_cmp(&right.timestamp)
                });
            }
        }
    }
    groups
}

#[cfg(test)]
mod tests {
    use super::*;

    fn series(labels: &[(&str, &str)], values: &[(f64, f64)]) -> LabeledSeries {
        LabeledSeries {
            labels: labels
                .iter()
                .map(|(label, value)| (label.to_string(), value.to_string()))
                .collect(),
            samples: values
                .iter()
                .map(|&(timestamp, value)| Sample { timestamp, value })
                .collect(),
        }
    }

    fn scope() -> Vec<String> {
        vec!["track".to_string(), "pod".to_string()]
    }

    fn origin() -> Location {
        Location {
            file: "profile.toml".into(),
            line: 3,
        }
    }

    #[test]
    fn series_pair_by_their_labels_without_the_scope_labels() {
        let pairing = pair_series(
            vec![
                series(&[("route", "/a"), ("track", "baseline")], &[(1.0, 10.0)]),
                series(&[("route", "/b"), ("track", "baseline")], &[(1.0, 20.0)]),
            ],
            vec![
                series(&[("route", "/b"), ("track", "canary")], &[(1.0, 21.0)]),
                series(&[("route", "/a"), ("track", "canary")], &[(1.0, 11.0)]),
            ],
            &scope(),
        );
        assert!(pairing.unpaired_baseline.is_empty() && pairing.unpaired_canary.is_empty());
        let routes: Vec<(&str, &str)> = pairing
            .pairs
            .iter()
            .map(|(b, c)| (b.labels["route"].as_str(), c.labels["route"].as_str()))
            .collect();
        assert_eq!(routes, [("/a", "/a"), ("/b", "/b")]);
        assert_eq!(pairing.pairs[0].1.labels["track"], "canary");
    }

    #[test]
    fn an_unpaired_series_is_kept_and_named_in_a_note() {
        let pairing = pair_series(
            vec![series(
                &[("route", "/a"), ("track", "baseline")],
                &[(1.0, 10.0)],
            )],
            vec![
                series(&[("route", "/a"), ("track", "canary")], &[(1.0, 11.0)]),
                series(
                    &[
                        ("__name__", "latency"),
                        ("route", "/api"),
                        ("track", "canary"),
                    ],
                    &[(1.0, 99.0)],
                ),
            ],
            &scope(),
        );
        assert_eq!(pairing.pairs.len(), 1);
        assert_eq!(pairing.unpaired_canary.len(), 1);
        let pooled = pairing.pooled_samples(&scope(), origin());
        assert_eq!(
            pooled.notes,
            ["canary series latency{route=\"/api\"} has no baseline counterpart"]
        );
        // The unpaired series' samples stay out of the pooled data.
        let MetricData::Samples { samples, .. } = &pooled.canary else {
            panic!("samples expected");
        };
        assert_eq!(
            samples,
            &[Sample {
                timestamp: 1.0,
                value: 11.0
            }]
        );
    }

    #[test]
    fn series_of_one_side_sharing_a_reduced_label_set_are_merged_in_time_order() {
        let pairing = pair_series(
            vec![
                series(
                    &[("route", "/a"), ("pod", "p1"), ("track", "baseline")],
                    &[(2.0, 1.0)],
                ),
                series(
                    &[("route", "/a"), ("pod", "p2"), ("track", "baseline")],
                    &[(1.0, 2.0)],
                ),
            ],
            vec![series(
                &[("route", "/a"), ("pod", "c1"), ("track", "canary")],
                &[(1.0, 3.0)],
            )],
            &scope(),
        );
        assert_eq!(pairing.pairs.len(), 1);
        let (baseline, _) = &pairing.pairs[0];
        assert_eq!(
            baseline.labels,
            BTreeMap::from([
                ("route".to_string(), "/a".to_string()),
                ("track".to_string(), "baseline".to_string())
            ])
        );
        let timestamps: Vec<f64> = baseline.samples.iter().map(|s| s.timestamp).collect();
        assert_eq!(timestamps, [1.0, 2.0]);
    }

    #[test]
    fn pooling_keeps_nan_samples_for_the_judge() {
        let pairing = pair_series(
            vec![series(
                &[("track", "baseline")],
                &[(1.0, f64::NAN), (2.0, 1.0)],
            )],
            vec![series(&[("track", "canary")], &[(1.0, 2.0)])],
            &scope(),
        );
        let pooled = pairing.pooled_samples(&scope(), origin());
        let MetricData::Samples { samples, origin } = &pooled.baseline else {
            panic!("samples expected");
        };
        assert_eq!(samples.len(), 2);
        assert!(samples[0].value.is_nan());
        assert_eq!(origin.line, 3);
        assert!(pooled.notes.is_empty());
    }

    #[test]
    fn a_baseline_series_without_counterpart_gets_a_note_too() {
        let pairing = pair_series(
            vec![series(&[("route", "/old"), ("track", "baseline")], &[])],
            vec![],
            &scope(),
        );
        assert_eq!(
            pairing.notes(&scope()),
            ["baseline series {route=\"/old\"} has no canary counterpart"]
        );
    }
}
