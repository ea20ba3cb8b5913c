//! `canary analyze --compare`: the same data judged by the other judge (Kayenta's for a
//! profile with canary's judge, canary's for a Kayenta profile), metric by metric, so a
//! team moving from Kayenta sees where the two would decide differently before it
//! switches.
//!
//! The two judges do not mean the same thing by a tolerance (canary: a Hodges-Lehmann
//! shift as a fraction of the baseline median; Kayenta: a ratio of means), so the
//! profile is read for the other judge by the nearest equivalent, and every such
//! reading is listed in [`Comparison::notes`]. Pure.

use std::collections::BTreeMap;

use serde::Serialize;

use super::{Classification, Judgement};
use crate::domain::{
    ContinuousKind, EffectMeasure, JudgeAlgorithm, JudgeMode, KayentaMetric, KayentaNanStrategy,
    MetricKind, NanPolicy, Observations, OutlierPolicy, Profile, Verdict,
};
use crate::format::number;

/// One metric judged by both judges.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ComparedMetric {
    /// The metric.
    pub metric: String,
    /// Its classification by the profile's own judge.
    pub own: Classification,
    /// Its classification by the other judge (none when the other judge has no such
    /// metric: Kayenta judges continuous metrics only).
    pub other: Option<Classification>,
    /// Whether the two agree.
    pub agree: bool,
}

/// The other judge's view of the same data.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Comparison {
    /// Which judge the comparison ran (the profile's own is the other one).
    pub other_algorithm: JudgeAlgorithm,
    /// Its verdict.
    pub other_verdict: Verdict,
    /// Its score.
    pub other_score: Option<f64>,
    /// Whether the verdicts agree.
    pub same_verdict: bool,
    /// Per metric, in profile order.
    pub metrics: Vec<ComparedMetric>,
    /// How the profile was read for the other judge.
    pub notes: Vec<String>,
    /// The other judge's reasons.
    pub other_reasons: Vec<String>,
}

/// Judges the data with the other judge and lines its classifications up with `own`
/// (the judgement the profile's own judge made of the same data).
pub fn compare(
    profile: &Profile,
    own: &Judgement,
    baseline: &Observations,
    canary: &Observations,
) -> Comparison {
    let (other_profile, notes) = counterpart(profile);
    let other = super::judge(&other_profile, baseline, canary);
    let by_name: BTreeMap<&str, Classification> = other
        .metrics
        .iter()
        .map(|m| (m.name.as_str(), m.classification))
        .collect();
    let metrics = own
        .metrics
        .iter()
        .map(|m| {
            let other = by_name.get(m.name.as_str()).copied();
            ComparedMetric {
                metric: m.name.clone(),
                own: m.classification,
                other,
                agree: other.is_none_or(|o| o == m.classification),
            }
        })
        .collect();
    Comparison {
        other_algorithm: other_profile.judge.algorithm,
        other_verdict: other.verdict,
        other_score: other.score,
        same_verdict: other.verdict == own.verdict,
        metrics,
        notes,
        other_reasons: other.reasons,
    }
}

/// The profile as the other judge reads it, and how each setting was read.
pub fn counterpart(profile: &Profile) -> (Profile, Vec<String>) {
    let mut other = profile.clone();
    let mut notes = Vec::new();
    match profile.judge.algorithm {
        JudgeAlgorithm::Canary => {
            other.judge.algorithm = JudgeAlgorithm::Kayenta;
            other.judge.mode = JudgeMode::Fixed;
            notes.push(
                "Kayenta's judge tests at its fixed 98 % with a tolerance of 25 % of the \
                 estimate, whatever the profile's confidence level"
                    .to_owned(),
            );
            other.metrics.retain(|metric| {
                let continuous = matches!(metric.kind, MetricKind::Continuous(_));
                if !continuous {
                    notes.push(format!(
                        "{}: a {} metric, which Kayenta's judge does not have: judged by \
                         canary's only",
                        metric.name,
                        metric.kind.name()
                    ));
                }
                continuous
            });
            for metric in &mut other.metrics {
                let MetricKind::Continuous(kind) = metric.kind else {
                    continue;
                };
                let mut settings = KayentaMetric::defaults(EffectMeasure::MeanRatio);
                settings.allowed_increase = 1.0 + kind.allowed_increase;
                settings.allowed_decrease = (1.0 - kind.allowed_decrease).max(f64::MIN_POSITIVE);
                // canary fails a critical metric's every failure critically, and never
                // passes without data.
                settings.critical_increase = settings.allowed_increase;
                settings.critical_decrease = settings.allowed_decrease;
                settings.must_have_data = true;
                settings.nan_strategy = KayentaNanStrategy::Remove;
                settings.outlier_factor = match metric.outliers {
                    OutlierPolicy::Keep => None,
                    OutlierPolicy::Iqr { multiplier } => Some(multiplier),
                };
                notes.push(format!(
                    "{}: allowed_increase {} of the median became a mean ratio of {}{}",
                    metric.name,
                    number(kind.allowed_increase),
                    number(settings.allowed_increase),
                    if metric.outliers == OutlierPolicy::Keep {
                        ""
                    } else {
                        "; Kayenta's outlier fences are wider (at least p1 and p99)"
                    }
                ));
                metric.kayenta = Some(settings);
            }
            // canary's weights are relative (an undeclared group weighs 1); Kayenta's
            // are percentages.
            let groups: std::collections::BTreeSet<&str> =
                other.metrics.iter().map(|m| m.group.as_str()).collect();
            let total: f64 = groups.iter().map(|g| profile.group_weight(g)).sum();
            other.group_weights = groups
                .iter()
                .map(|g| ((*g).to_owned(), profile.group_weight(g) / total * 100.0))
                .collect();
        }
        JudgeAlgorithm::Kayenta => {
            other.judge.algorithm = JudgeAlgorithm::Canary;
            other.judge.mode = JudgeMode::Fixed;
            notes.push(format!(
                "canary's judge tests at the profile's confidence level ({}) with Holm's \
                 correction, and needs 20 samples a side",
                profile.judge.confidence_level.value()
            ));
            let zero_weight: Vec<String> = other
                .group_weights
                .iter()
                .filter(|(_, w)| **w <= 0.0)
                .map(|(g, _)| g.clone())
                .collect();
            for group in zero_weight {
                notes.push(format!(
                    "group {group:?} weighs 0 in Kayenta: a tiny weight in canary's judge"
                ));
                other.group_weights.insert(group, 1e-9);
            }
            for metric in &mut other.metrics {
                let Some(settings) = metric.kayenta.take() else {
                    continue;
                };
                let MetricKind::Continuous(kind) = metric.kind else {
                    continue;
                };
                let (increase, decrease) = match settings.measure {
                    EffectMeasure::MeanRatio => (
                        (settings.allowed_increase - 1.0).max(0.0),
                        (1.0 - settings.allowed_decrease).max(0.0),
                    ),
                    EffectMeasure::Cles => {
                        notes.push(format!(
                            "{}: a CLES gate has no median-shift equivalent: no tolerance",
                            metric.name
                        ));
                        (0.0, 0.0)
                    }
                };
                metric.kind = MetricKind::Continuous(ContinuousKind {
                    direction: kind.direction,
                    allowed_increase: increase,
                    allowed_decrease: decrease,
                });
                metric.min_samples = 20;
                metric.nan_policy = NanPolicy::Drop;
                metric.max_nan_fraction = 1.0;
                metric.outliers = settings
                    .outlier_factor
                    .map_or(OutlierPolicy::Keep, |multiplier| OutlierPolicy::Iqr {
                        multiplier,
                    });
                if settings.nan_strategy == KayentaNanStrategy::Replace {
                    notes.push(format!(
                        "{}: NaN points are dropped (canary does not count them as zeros)",
                        metric.name
                    ));
                }
                if settings.muted {
                    notes.push(format!(
                        "{}: muted in Kayenta, scored by canary's judge",
                        metric.name
                    ));
                }
                notes.push(format!(
                    "{}: the mean ratio {} became allowed_increase {} of the median",
                    metric.name,
                    number(settings.allowed_increase),
                    number(increase)
                ));
            }
        }
    }
    (other, notes)
}

#[cfg(test)]
mod tests {
    use super::*;

    const CANARY_PROFILE: &str = r#"
name = "p"
[groups.latency]
weight = 3
[groups.errors]
weight = 1
[[metrics]]
name = "latency"
kind = "continuous"
allowed_increase = 0.05
group = "latency"
[[metrics]]
name = "errors"
kind = "proportion"
max_ratio = 1.5
group = "errors"
"#;

    #[test]
    fn a_canary_profile_is_read_by_kayentas_judge_with_mean_ratios_and_percent_weights() {
        let profile = Profile::parse(CANARY_PROFILE, "p.toml").unwrap();
        let (other, notes) = counterpart(&profile);
        assert_eq!(other.judge.algorithm, JudgeAlgorithm::Kayenta);
        assert_eq!(other.metrics.len(), 1, "Kayenta has no proportion metrics");
        let kayenta = other.metrics[0].kayenta.unwrap();
        assert_eq!(kayenta.allowed_increase, 1.05);
        assert!(kayenta.must_have_data);
        assert_eq!(other.group_weights["latency"], 100.0);
        let notes = notes.join("\n");
        assert!(notes.contains("errors: a proportion metric"), "{notes}");
        assert!(notes.contains("became a mean ratio of 1.05"), "{notes}");
    }

    #[test]
    fn a_kayenta_profile_is_read_by_canarys_judge_with_median_shifts() {
        let text = "name = \"k\"\n[judge]\nalgorithm = \"kayenta\"\n[[metrics]]\nname = \"latency\"\nkind = \"continuous\"\n[metrics.kayenta]\nallowed_increase = 1.2\nnan_strategy = \"replace\"\n";
        let profile = Profile::parse(text, "k.toml").unwrap();
        let (other, notes) = counterpart(&profile);
        assert_eq!(other.judge.algorithm, JudgeAlgorithm::Canary);
        assert_eq!(other.metrics[0].kayenta, None);
        let MetricKind::Continuous(kind) = other.metrics[0].kind else {
            panic!()
        };
        assert!((kind.allowed_increase - 0.2).abs() < 1e-12);
        assert!(notes.join("\n").contains("NaN points are dropped"));
    }
}
