//! `[judge] algorithm = "kayenta"`: Kayenta's `NetflixACAJudge-v1.0` reproduced, so a
//! team moving from Kayenta gets the classifications and scores it knows.
//!
//! Per metric (all continuous), as Kayenta does it:
//! 1. NaN values removed, or replaced by 0 (`nan_strategy`); outliers removed
//!    outside Kayenta's reduced-sensitivity fences when `outlier_factor` is set.
//! 2. A side left without values is **NODATA** (or **NODATA_FAIL** with
//!    `must_have_data` on a non-critical metric; with `nan_strategy = "replace"` it
//!    passes). Identical sides, or sides holding one value between them, pass.
//! 3. The Mann-Whitney classifier: the canary − baseline interval at 98 % (Kayenta's
//!    normal-approximation roots, [`crate::stats::kayenta`]) must lie beyond ±25 % of
//!    the absolute estimate, in a direction the metric watches, **and** the effect
//!    size (mean ratio or CLES) must reach `allowed_increase` / `allowed_decrease`:
//!    then **HIGH** or **LOW**, else **PASS**. A critical metric's HIGH or LOW is a
//!    critical failure when the effect also reaches `critical_increase` /
//!    `critical_decrease`.
//!
//! Then the weighted-sum score over the metrics that are not muted: each group scores
//! the share of PASS among its PASS, HIGH, LOW and NODATA_FAIL metrics (a group with
//! none of those counts as 100), groups weigh their declared weight in percent (the
//! remainder shared equally by groups without one), rounded half-up to two decimals;
//! a critical failure, or NODATA on half the metrics or more, makes the score 0. The
//! score is **pass** at or above `pass_score`, **marginal** at or above
//! `marginal_score`, **fail** below.
//!
//! canary's verdict is Kayenta's (pass → promote, marginal → hold, fail → rollback)
//! with one deliberate difference: a metric that is NODATA or could not be evaluated
//! turns a pass into a hold, because missing data never promotes here. The score and
//! the per-metric labels stay Kayenta's.
//!
//! Pure: no I/O.

use std::collections::BTreeMap;

use super::{Classification, EffectSize, Judgement, MetricResult, SideSummary};
use crate::domain::{
    Direction, EffectMeasure, KayentaMetric, KayentaNanStrategy, MetricData, Observations, Profile,
    Severity, Verdict,
};
use crate::format::number;
use crate::stats::kayenta::{
    KayentaInterval, add_tie_breaking_noise, common_language_effect_size, kayenta_interval,
    mean_ratio, reduced_sensitivity_fences,
};
use crate::stats::multiple_testing::Correction;
use crate::stats::sort::sort_f64;

/// The confidence level `NetflixACAJudge-v1.0` gives its classifier.
pub const KAYENTA_CONFIDENCE_LEVEL: f64 = 0.98;

/// The tolerance `NetflixACAJudge-v1.0` gives its classifier: the interval must lie
/// beyond this share of the absolute estimate.
pub const KAYENTA_TOLERANCE: f64 = 0.25;

/// At or above this percentage of NODATA metrics the score is 0.
const NODATA_THRESHOLD_PERCENT: f64 = 50.0;

/// Kayenta's label for one metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KayentaLabel {
    /// No significant change beyond the gates.
    Pass,
    /// Significantly higher.
    High,
    /// Significantly lower.
    Low,
    /// No data where data was required.
    NodataFailMetric,
    /// No data.
    Nodata,
    /// The classification could not be computed.
    Error,
}

impl KayentaLabel {
    /// Kayenta's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            KayentaLabel::Pass => "Pass",
            KayentaLabel::High => "High",
            KayentaLabel::Low => "Low",
            KayentaLabel::NodataFailMetric => "NodataFailMetric",
            KayentaLabel::Nodata => "Nodata",
            KayentaLabel::Error => "Error",
        }
    }
}

/// One metric as Kayenta's Mann-Whitney classifier leaves it.
#[derive(Debug, Clone, PartialEq)]
pub struct KayentaClassification {
    /// The label.
    pub label: KayentaLabel,
    /// Kayenta's reason, where it gives one.
    pub reason: Option<String>,
    /// The mean ratio (canary over baseline), 1 where nothing was compared.
    pub deviation: f64,
    /// Whether this result fails the whole analysis.
    pub critical: bool,
    /// The interval and estimate, when the comparison ran.
    pub interval: Option<KayentaInterval>,
    /// The effect size the gates compared (NaN when undefined or not compared).
    pub effect_size: f64,
}

impl KayentaClassification {
    fn without_comparison(label: KayentaLabel, reason: Option<String>, critical: bool) -> Self {
        Self {
            label,
            reason,
            deviation: 1.0,
            critical,
            interval: None,
            effect_size: f64::NAN,
        }
    }
}

/// Kayenta's Mann-Whitney classifier with its parameters (`NetflixACAJudge-v1.0`
/// uses [`KAYENTA_TOLERANCE`] and [`KAYENTA_CONFIDENCE_LEVEL`]; Kayenta's own tests
/// use others, hence the fields).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MannWhitneyClassifier {
    /// Share of the absolute estimate the interval must lie beyond.
    pub tolerance: f64,
    /// Level of the interval.
    pub confidence_level: f64,
    /// `(allowed_decrease, allowed_increase)`.
    pub effect_thresholds: (f64, f64),
    /// `(critical_decrease, critical_increase)`.
    pub critical_thresholds: (f64, f64),
    /// The effect-size measure the gates read.
    pub measure: EffectMeasure,
}

impl MannWhitneyClassifier {
    /// The classifier `NetflixACAJudge-v1.0` builds for a metric.
    pub fn for_metric(settings: &KayentaMetric) -> Self {
        Self {
            tolerance: KAYENTA_TOLERANCE,
            confidence_level: KAYENTA_CONFIDENCE_LEVEL,
            effect_thresholds: (settings.allowed_decrease, settings.allowed_increase),
            critical_thresholds: (settings.critical_decrease, settings.critical_increase),
            measure: settings.measure,
        }
    }

    /// Classifies the canary (`experiment`) against the baseline (`control`), both
    /// after NaN and outlier handling, in any order.
    pub fn classify(
        &self,
        name: &str,
        control: &[f64],
        experiment: &[f64],
        (direction, nan_strategy): (Direction, KayentaNanStrategy),
        (critical, data_required): (bool, bool),
    ) -> KayentaClassification {
        if experiment.is_empty() || control.is_empty() {
            if nan_strategy == KayentaNanStrategy::Replace {
                return KayentaClassification::without_comparison(KayentaLabel::Pass, None, false);
            }
            let reason = Some(format!("Missing data for {name}"));
            if data_required && !critical {
                return KayentaClassification::without_comparison(
                    KayentaLabel::NodataFailMetric,
                    reason,
                    false,
                );
            }
            return KayentaClassification::without_comparison(
                KayentaLabel::Nodata,
                reason,
                critical,
            );
        }
        let mut experiment_sorted = experiment.to_vec();
        let mut control_sorted = control.to_vec();
        sort_f64(&mut experiment_sorted);
        sort_f64(&mut control_sorted);
        if experiment_sorted == control_sorted {
            return KayentaClassification::without_comparison(
                KayentaLabel::Pass,
                Some("The Canary and Baseline data are identical".into()),
                false,
            );
        }
        let single_value = |sorted: &[f64]| sorted.first() == sorted.last();
        if single_value(&experiment_sorted)
            && single_value(&control_sorted)
            && experiment_sorted[0] == control_sorted[0]
        {
            return KayentaClassification::without_comparison(KayentaLabel::Pass, None, false);
        }
        let comparison = match self.compare(name, experiment_sorted, control_sorted, direction) {
            Ok(comparison) => comparison,
            Err(reason) => {
                return KayentaClassification::without_comparison(
                    KayentaLabel::Error,
                    Some(reason),
                    false,
                );
            }
        };
        let effect = comparison.effect_size;
        let reaches = |threshold: f64, high: bool| reaches_gate(effect, threshold, high);
        let critical_high = critical
            && comparison.label == KayentaLabel::High
            && reaches(self.critical_thresholds.1, true);
        let critical_low = critical
            && comparison.label == KayentaLabel::Low
            && reaches(self.critical_thresholds.0, false);
        if critical_high || critical_low {
            let label = comparison.label;
            return KayentaClassification {
                reason: Some(format!(
                    "The metric {name} was classified as {} (Critical)",
                    label.as_str()
                )),
                critical: true,
                ..comparison
            };
        }
        comparison
    }

    /// The interval against the tolerance, then the effect-size gates.
    fn compare(
        &self,
        name: &str,
        mut experiment_sorted: Vec<f64>,
        mut control_sorted: Vec<f64>,
        direction: Direction,
    ) -> Result<KayentaClassification, String> {
        let single_value = |sorted: &[f64]| sorted.first() == sorted.last();
        if single_value(&experiment_sorted) && single_value(&control_sorted) {
            // Two constant sides: Kayenta breaks the ties with a little noise.
            add_tie_breaking_noise(&mut experiment_sorted, 0x9E37_79B9_7F4A_7C15);
            add_tie_breaking_noise(&mut control_sorted, 0xD1B5_4A32_D192_ED03);
            sort_f64(&mut experiment_sorted);
            sort_f64(&mut control_sorted);
        }
        let interval = kayenta_interval(&experiment_sorted, &control_sorted, self.confidence_level)
            .map_err(|error| format!("Metric Classification Failed: {error}"))?;
        let deviation = mean_ratio(&control_sorted, &experiment_sorted);
        let effect_size = match self.measure {
            EffectMeasure::Cles => common_language_effect_size(&control_sorted, &experiment_sorted),
            EffectMeasure::MeanRatio => deviation,
        };
        let bound = self.tolerance * interval.estimate.abs();
        let gate = |threshold: f64, high: bool| reaches_gate(effect_size, threshold, high);
        let watches_increase = matches!(direction, Direction::Increase | Direction::Either);
        let watches_decrease = matches!(direction, Direction::Decrease | Direction::Either);
        let high = watches_increase && interval.low > bound && gate(self.effect_thresholds.1, true);
        let low =
            watches_decrease && interval.high < -bound && gate(self.effect_thresholds.0, false);
        let label = if high {
            KayentaLabel::High
        } else if low {
            KayentaLabel::Low
        } else {
            KayentaLabel::Pass
        };
        Ok(KayentaClassification {
            label,
            reason: (label != KayentaLabel::Pass)
                .then(|| format!("{name} was classified as {}", label.as_str())),
            deviation,
            critical: false,
            interval: Some(interval),
            effect_size,
        })
    }
}

/// Whether `effect` reaches an increase gate (`high`, at or above `threshold`) or a
/// decrease gate (at or below); an undefined effect (NaN) reaches every gate, as in
/// Kayenta, so the interval alone decides.
fn reaches_gate(effect: f64, threshold: f64, high: bool) -> bool {
    effect.is_nan()
        || if high {
            effect >= threshold
        } else {
            effect <= threshold
        }
}

/// One metric's label as the scorer sees it.
#[derive(Debug, Clone)]
pub struct ScoredMetric {
    /// Kayenta's label.
    pub label: KayentaLabel,
    /// Whether it fails the whole analysis.
    pub critical: bool,
    /// Left out of the score.
    pub muted: bool,
    /// Its groups (Kayenta lets a metric count in several; a profile metric has one).
    pub groups: Vec<String>,
    /// Kayenta's reason.
    pub reason: Option<String>,
}

/// Kayenta's score of an analysis.
#[derive(Debug, Clone, PartialEq)]
pub struct KayentaScore {
    /// 0–100, rounded half-up to two decimals.
    pub score: f64,
    /// Each group's score (0–100), by name.
    pub groups: BTreeMap<String, f64>,
    /// Why the score is 0, when a critical failure or too many NODATA made it so.
    pub reason: Option<String>,
}

/// Kayenta's weighted-sum scorer over `metrics` with the declared group `weights`
/// (percent).
pub fn weighted_sum_score(
    metrics: &[ScoredMetric],
    weights: &BTreeMap<String, f64>,
) -> KayentaScore {
    let counted: Vec<&ScoredMetric> = metrics.iter().filter(|m| !m.muted).collect();
    // (pass, counted) per group.
    let mut tallies: BTreeMap<&str, (f64, f64)> = BTreeMap::new();
    for metric in &counted {
        for group in &metric.groups {
            let tally = tallies.entry(group.as_str()).or_insert((0.0, 0.0));
            match metric.label {
                KayentaLabel::Pass => {
                    tally.0 += 1.0;
                    tally.1 += 1.0;
                }
                KayentaLabel::High | KayentaLabel::Low | KayentaLabel::NodataFailMetric => {
                    tally.1 += 1.0;
                }
                KayentaLabel::Nodata | KayentaLabel::Error => {}
            }
        }
    }
    let groups: BTreeMap<String, f64> = tallies
        .iter()
        .map(|(name, &(pass, total))| {
            let score = if total == 0.0 {
                0.0
            } else {
                pass / total * 100.0
            };
            ((*name).to_owned(), score)
        })
        .collect();
    if let Some(failure) = counted
        .iter()
        .find(|m| m.critical && m.label != KayentaLabel::Pass)
    {
        return KayentaScore {
            score: 0.0,
            groups,
            reason: Some(format!(
                "Canary Failed: {}",
                failure.reason.as_deref().unwrap_or("null")
            )),
        };
    }
    let nodata = counted
        .iter()
        .filter(|m| m.label == KayentaLabel::Nodata)
        .count() as f64;
    if nodata / counted.len() as f64 * 100.0 >= NODATA_THRESHOLD_PERCENT {
        return KayentaScore {
            score: 0.0,
            groups,
            reason: Some(format!(
                "Canary Failed: {NODATA_THRESHOLD_PERCENT}% or more metrics returned NODATA"
            )),
        };
    }
    let declared_sum: f64 = weights.values().sum();
    let unweighted = tallies
        .keys()
        .filter(|g| !weights.contains_key(**g))
        .count();
    let shared_weight = if unweighted > 0 {
        (100.0 - declared_sum) / unweighted as f64
    } else {
        0.0
    };
    let mut summary = 0.0;
    for (name, &(_, total)) in &tallies {
        let effective = if total == 0.0 { 100.0 } else { groups[*name] };
        let weight = weights.get(*name).copied().unwrap_or(shared_weight);
        summary += effective * (weight / 100.0);
    }
    KayentaScore {
        score: round_half_up_2(summary),
        groups,
        reason: None,
    }
}

/// Rounds half-up at two decimals on the shortest decimal form of `value` (as
/// Kayenta's `Precision.round(x, 2)` does), so 2.675 becomes 2.68.
fn round_half_up_2(value: f64) -> f64 {
    if !value.is_finite() {
        return value;
    }
    let text = format!("{}", value.abs());
    let (whole, fraction) = text.split_once('.').unwrap_or((&text, ""));
    let mut digits: Vec<u8> = whole
        .bytes()
        .chain(fraction.bytes().chain(std::iter::repeat(b'0')).take(2))
        .collect();
    let round_up = fraction.as_bytes().get(2).is_some_and(|d| *d >= b'5');
    if round_up {
        let mut index = digits.len();
        loop {
            if index == 0 {
                digits.insert(0, b'1');
                break;
            }
            index -= 1;
            if digits[index] == b'9' {
                digits[index] = b'0';
            } else {
                digits[index] += 1;
                break;
            }
        }
    }
    let cents: f64 = std::str::from_utf8(&digits)
        .ok()
        .and_then(|d| d.parse().ok())
        .unwrap_or(f64::NAN);
    (cents / 100.0).copysign(value)
}

/// Kayenta's classification of the whole analysis.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScoreClassification {
    /// At or above `pass_score`.
    Pass,
    /// At or above `marginal_score`.
    Marginal,
    /// Below `marginal_score`.
    Fail,
}

/// Judges `canary` against `baseline` as `NetflixACAJudge-v1.0` would, under a profile
/// whose metrics carry their Kayenta settings.
pub(super) fn judge(
    profile: &Profile,
    baseline: &Observations,
    canary: &Observations,
) -> Judgement {
    let mut metrics = Vec::with_capacity(profile.metrics.len());
    let mut scored = Vec::with_capacity(profile.metrics.len());
    let mut short_metrics = Vec::new();
    for spec in &profile.metrics {
        let settings = spec
            .kayenta
            .unwrap_or_else(|| KayentaMetric::defaults(EffectMeasure::MeanRatio));
        let direction = match &spec.kind {
            crate::domain::MetricKind::Continuous(kind) => kind.direction,
            _ => Direction::Either,
        };
        let critical = spec.severity == Severity::Critical;
        let problem = [baseline, canary]
            .iter()
            .find_map(|side| side.problems.get(&spec.name).cloned());
        let sides =
            [baseline, canary].map(|side| values_of(side.metrics.get(&spec.name), &settings));
        let [baseline_values, canary_values] = sides;
        let outcome = match (problem, baseline_values, canary_values) {
            (Some(problem), _, _) => Err(format!("the metric's data could not be read: {problem}")),
            (None, Err(error), _) | (None, _, Err(error)) => Err(error),
            (None, Ok(control), Ok(experiment)) => Ok((control, experiment)),
        };
        let fewest = match &outcome {
            Ok((control, experiment)) => control.len().min(experiment.len()) as u64,
            Err(_) => 0,
        };
        // canary's guard, when the profile asks for it (`min_samples`): a side with fewer
        // points is not compared, and holds (Kayenta would compare even two points).
        let short = fewest > 0 && fewest < spec.min_samples;
        let (classification, control, experiment) = match outcome {
            Ok((control, experiment)) if short => (
                KayentaClassification::without_comparison(
                    KayentaLabel::Nodata,
                    Some(format!(
                        "{} has {fewest} points on a side, fewer than its min_samples {} \
                         (canary's guard; Kayenta has no minimum)",
                        spec.name, spec.min_samples
                    )),
                    false,
                ),
                control,
                experiment,
            ),
            Ok((control, experiment)) => (
                MannWhitneyClassifier::for_metric(&settings).classify(
                    &spec.name,
                    &control,
                    &experiment,
                    (direction, settings.nan_strategy),
                    (critical, settings.must_have_data),
                ),
                control,
                experiment,
            ),
            Err(reason) => (
                KayentaClassification::without_comparison(KayentaLabel::Error, Some(reason), false),
                Vec::new(),
                Vec::new(),
            ),
        };
        if short {
            short_metrics.push(spec.name.clone());
        }
        scored.push(ScoredMetric {
            label: classification.label,
            critical: classification.critical,
            // A metric short of its points is left out of the score, as a muted one.
            muted: settings.muted || short,
            groups: vec![spec.group.clone()],
            reason: classification.reason.clone(),
        });
        metrics.push(metric_result(
            spec,
            direction,
            &settings,
            &classification,
            &control,
            &experiment,
        ));
    }
    let score = weighted_sum_score(&scored, &profile.group_weights);
    let pass_score = profile.judge.pass_score.value();
    let marginal_score = profile.judge.marginal_score.value();
    let kayenta_class = if score.score >= pass_score {
        ScoreClassification::Pass
    } else if score.score >= marginal_score {
        ScoreClassification::Marginal
    } else {
        ScoreClassification::Fail
    };
    let mut reasons = Vec::new();
    let summary = format!(
        "Kayenta NetflixACAJudge-v1.0 score {} ({}; pass at {}, marginal at {})",
        number(score.score),
        match kayenta_class {
            ScoreClassification::Pass => "Pass",
            ScoreClassification::Marginal => "Marginal",
            ScoreClassification::Fail => "Fail",
        },
        number(pass_score),
        number(marginal_score)
    );
    reasons.push(match &score.reason {
        Some(reason) => format!("{summary}: {reason}"),
        None => summary,
    });
    let mut verdict = match kayenta_class {
        ScoreClassification::Pass => Verdict::Promote,
        ScoreClassification::Marginal => Verdict::Hold,
        ScoreClassification::Fail => Verdict::Rollback,
    };
    for (result, scored) in metrics.iter().zip(&scored) {
        if matches!(
            scored.label,
            KayentaLabel::High | KayentaLabel::Low | KayentaLabel::NodataFailMetric
        ) {
            reasons.push(format!("{}: {}", result.name, result.reason));
        }
    }
    if !short_metrics.is_empty() {
        // Too few points is waiting, not evidence: scored without them, and never a
        // promotion (a rollback the other metrics show stands).
        let nothing_scored = scored.iter().all(|m| m.muted);
        if verdict == Verdict::Promote || nothing_scored {
            verdict = Verdict::Hold;
        }
        reasons.push(format!(
            "{} short of min_samples: left out of the score, and the look does not promote \
             (canary's guard; Kayenta has no minimum)",
            short_metrics.join(", ")
        ));
    }
    for (result, scored) in metrics.iter().zip(&scored) {
        let short = short_metrics.contains(&result.name);
        if matches!(scored.label, KayentaLabel::Nodata | KayentaLabel::Error) && !short {
            if verdict == Verdict::Promote {
                verdict = Verdict::Hold;
            }
            reasons.push(format!(
                "{} {}, which never promotes here (Kayenta would not hold for it): {}",
                result.name,
                if scored.label == KayentaLabel::Nodata {
                    "has no data"
                } else {
                    "could not be evaluated"
                },
                result.reason
            ));
        }
    }
    Judgement {
        verdict,
        reasons,
        score: Some(score.score),
        profile: profile.name.clone(),
        confidence_level: KAYENTA_CONFIDENCE_LEVEL,
        multiple_comparisons: Correction::None,
        metrics,
        group_scores: Some(score.groups),
    }
}

/// A side's values after Kayenta's NaN and outlier handling (empty when absent).
fn values_of(data: Option<&MetricData>, settings: &KayentaMetric) -> Result<Vec<f64>, String> {
    let samples = match data {
        None => return Ok(Vec::new()),
        Some(MetricData::Samples { samples, .. }) => samples,
        Some(MetricData::Counts { .. }) => {
            return Err(
                "the data are error/total counts, but Kayenta compares series of values".into(),
            );
        }
    };
    let values: Vec<f64> = match settings.nan_strategy {
        KayentaNanStrategy::Remove => samples
            .iter()
            .map(|s| s.value)
            .filter(|v| !v.is_nan())
            .collect(),
        KayentaNanStrategy::Replace => samples
            .iter()
            .map(|s| if s.value.is_nan() { 0.0 } else { s.value })
            .collect(),
    };
    let Some(factor) = settings.outlier_factor else {
        return Ok(values);
    };
    let mut sorted = values.clone();
    sort_f64(&mut sorted);
    let (lower, upper) = reduced_sensitivity_fences(&sorted, factor);
    Ok(values
        .into_iter()
        .filter(|v| !(*v > upper || *v < lower))
        .collect())
}

fn side_summary(values: &[f64]) -> Option<SideSummary> {
    let mut sorted = values.to_vec();
    sort_f64(&mut sorted);
    SideSummary::of_sorted_samples(&sorted, 0, 0)
}

fn metric_result(
    spec: &crate::domain::MetricSpec,
    direction: Direction,
    settings: &KayentaMetric,
    classification: &KayentaClassification,
    control: &[f64],
    experiment: &[f64],
) -> MetricResult {
    let label = classification.label;
    let kayenta_reason = classification
        .reason
        .clone()
        .unwrap_or_else(|| format!("{} was classified as {}", spec.name, label.as_str()));
    let numbers = classification.interval.map(|interval| {
        let measure = match settings.measure {
            EffectMeasure::MeanRatio => "mean ratio",
            EffectMeasure::Cles => "CLES",
        };
        format!(
            "canary − baseline {} (98 % interval [{}, {}]) against a tolerance of ±{}; {measure} {} \
             (allowed {} to {})",
            number(interval.estimate),
            number(interval.low),
            number(interval.high),
            number(KAYENTA_TOLERANCE * interval.estimate.abs()),
            number(classification.effect_size),
            number(settings.allowed_decrease),
            number(settings.allowed_increase),
        )
    });
    let reason = match numbers {
        Some(numbers) => format!("{kayenta_reason}: {numbers}"),
        None => kayenta_reason,
    };
    let classification_here = match label {
        KayentaLabel::Pass => Classification::Pass,
        KayentaLabel::High | KayentaLabel::Low | KayentaLabel::NodataFailMetric => {
            Classification::Fail
        }
        KayentaLabel::Nodata => Classification::Inconclusive,
        KayentaLabel::Error => Classification::Error,
    };
    let baseline = side_summary(control);
    let canary = side_summary(experiment);
    let median_ratio = match (&baseline, &canary) {
        (Some(b), Some(c)) => b
            .median
            .zip(c.median)
            .and_then(|(b, c)| (b != 0.0).then_some(c / b)),
        _ => None,
    };
    MetricResult {
        name: spec.name.clone(),
        kind: "continuous".into(),
        // A critical metric whose failure did not reach its critical gates failed as a
        // normal one does (Kayenta's rule).
        severity: if classification.critical
            || (spec.severity == Severity::Critical && label == KayentaLabel::Pass)
        {
            Severity::Critical
        } else {
            Severity::Normal
        },
        group: spec.group.clone(),
        direction: Some(direction),
        classification: classification_here,
        reason,
        baseline,
        canary,
        test: classification
            .interval
            .map(|_| "kayenta_mann_whitney".into()),
        p_value: None,
        ln_p_value: None,
        adjusted_p_value: None,
        shift_estimate: classification.interval.map(|i| i.estimate),
        shift_ci: classification.interval.map(|i| [i.low, i.high]),
        relative_shift: None,
        effect_size: classification.interval.map(|_| EffectSize::Continuous {
            mean_ratio: classification
                .deviation
                .is_finite()
                .then_some(classification.deviation),
            median_ratio,
            probability_of_superiority: common_language_effect_size(control, experiment),
        }),
        threshold: None,
        sequential: None,
        short_of_samples: None,
        host_allowance: None,
        kayenta_label: Some(label.as_str().to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    use super::*;

    /// Kayenta's own test cases (`scripts/kayenta-cases.py` extracted them from
    /// spinnaker/kayenta's ClassifierSuite and MannWhitneySuite).
    const CASES: &str = include_str!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/fixtures/kayenta/judge_cases.json"
    ));

    #[derive(Deserialize)]
    struct Cases {
        classifier: Vec<ClassifierCase>,
        mann_whitney: Vec<IntervalCase>,
        scorer: Vec<ScorerCase>,
    }

    #[derive(Deserialize)]
    struct ScorerCase {
        name: String,
        weights: BTreeMap<String, f64>,
        metrics: Vec<ScorerMetric>,
        expected_score: f64,
    }

    #[derive(Deserialize)]
    struct ScorerMetric {
        label: String,
        groups: Vec<String>,
        critical: bool,
        muted: bool,
    }

    #[test]
    fn every_kayenta_scorer_case_gives_kayentas_summary_score() {
        let cases = cases().scorer;
        assert!(cases.len() >= 13, "{} cases", cases.len());
        for case in cases {
            let metrics: Vec<ScoredMetric> = case
                .metrics
                .iter()
                .map(|m| ScoredMetric {
                    label: match m.label.as_str() {
                        "Pass" => KayentaLabel::Pass,
                        "High" => KayentaLabel::High,
                        "Low" => KayentaLabel::Low,
                        "Nodata" => KayentaLabel::Nodata,
                        "NodataFailMetric" => KayentaLabel::NodataFailMetric,
                        other => panic!("{}: label {other}", case.name),
                    },
                    critical: m.critical,
                    muted: m.muted,
                    groups: m.groups.clone(),
                    reason: None,
                })
                .collect();
            let score = weighted_sum_score(&metrics, &case.weights);
            assert_eq!(score.score, case.expected_score, "{}", case.name);
        }
    }

    #[derive(Deserialize)]
    struct ClassifierCase {
        name: String,
        experiment: Vec<Option<f64>>,
        control: Vec<Option<f64>>,
        tolerance: f64,
        confidence_level: f64,
        effect_thresholds: (f64, f64),
        critical_thresholds: (f64, f64),
        measure: EffectMeasure,
        direction: Direction,
        nan_strategy: KayentaNanStrategy,
        critical: bool,
        data_required: bool,
        expected_label: Option<String>,
        expected_critical: Option<bool>,
        expects_reason: bool,
    }

    #[derive(Deserialize)]
    struct IntervalCase {
        name: String,
        experiment: Vec<Option<f64>>,
        control: Vec<Option<f64>>,
        confidence_level: f64,
        expected: BTreeMap<String, Expected>,
    }

    #[derive(Deserialize)]
    struct Expected {
        value: f64,
        tolerance: f64,
    }

    fn cases() -> Cases {
        serde_json::from_str(CASES).expect("the Kayenta cases parse")
    }

    /// NaN handling as the judge applies it before classifying (null is NaN).
    fn handled(values: &[Option<f64>], strategy: KayentaNanStrategy) -> Vec<f64> {
        values
            .iter()
            .filter_map(|v| match (v, strategy) {
                (Some(v), _) => Some(*v),
                (None, KayentaNanStrategy::Replace) => Some(0.0),
                (None, KayentaNanStrategy::Remove) => None,
            })
            .collect()
    }

    #[test]
    fn every_kayenta_classifier_case_gives_kayentas_label_and_critical_flag() {
        let cases = cases().classifier;
        assert!(cases.len() >= 30, "{} cases", cases.len());
        for case in cases {
            let classifier = MannWhitneyClassifier {
                tolerance: case.tolerance,
                confidence_level: case.confidence_level,
                effect_thresholds: case.effect_thresholds,
                critical_thresholds: case.critical_thresholds,
                measure: case.measure,
            };
            let result = classifier.classify(
                "metric",
                &handled(&case.control, case.nan_strategy),
                &handled(&case.experiment, case.nan_strategy),
                (case.direction, case.nan_strategy),
                (case.critical, case.data_required),
            );
            if let Some(label) = &case.expected_label {
                assert_eq!(result.label.as_str(), label, "{}: {result:?}", case.name);
            }
            if let Some(critical) = case.expected_critical {
                assert_eq!(result.critical, critical, "{}: {result:?}", case.name);
            }
            if case.expects_reason {
                assert!(result.reason.is_some(), "{}", case.name);
            }
        }
    }

    #[test]
    fn every_kayenta_interval_case_gives_kayentas_interval_and_estimate() {
        let cases = cases().mann_whitney;
        assert!(cases.len() >= 4);
        for case in cases {
            let mut experiment = handled(&case.experiment, KayentaNanStrategy::Remove);
            let mut control = handled(&case.control, KayentaNanStrategy::Remove);
            sort_f64(&mut experiment);
            sort_f64(&mut control);
            let interval = kayenta_interval(&experiment, &control, case.confidence_level).unwrap();
            for (key, expected) in &case.expected {
                let got = match key.as_str() {
                    "low" => interval.low,
                    "high" => interval.high,
                    _ => interval.estimate,
                };
                assert!(
                    (got - expected.value).abs() <= expected.tolerance,
                    "{}: {key} {got} against Kayenta's {} ± {}",
                    case.name,
                    expected.value,
                    expected.tolerance
                );
            }
        }
    }

    fn scored(label: KayentaLabel, group: &str) -> ScoredMetric {
        ScoredMetric {
            label,
            critical: false,
            muted: false,
            groups: vec![group.into()],
            reason: None,
        }
    }

    #[test]
    fn groups_without_a_weight_share_what_the_declared_weights_leave() {
        let metrics = [
            scored(KayentaLabel::Pass, "a"),
            scored(KayentaLabel::High, "a"),
            scored(KayentaLabel::Pass, "b"),
            scored(KayentaLabel::Low, "c"),
        ];
        let weights = BTreeMap::from([("a".to_owned(), 50.0)]);
        let score = weighted_sum_score(&metrics, &weights);
        // a: 50 % of 50; b: 100 % of 25; c: 0 % of 25.
        assert_eq!(score.score, 50.0);
        assert_eq!(score.groups["a"], 50.0);
    }

    #[test]
    fn a_critical_failure_or_half_the_metrics_without_data_score_zero() {
        let mut critical = scored(KayentaLabel::High, "a");
        critical.critical = true;
        critical.reason = Some("x was classified as High (Critical)".into());
        let score = weighted_sum_score(
            &[critical, scored(KayentaLabel::Pass, "a")],
            &BTreeMap::new(),
        );
        assert_eq!(score.score, 0.0);
        assert!(score.reason.unwrap().contains("(Critical)"));
        let score = weighted_sum_score(
            &[
                scored(KayentaLabel::Nodata, "a"),
                scored(KayentaLabel::Pass, "a"),
            ],
            &BTreeMap::new(),
        );
        assert_eq!(score.score, 0.0);
        // A muted metric neither counts nor scores.
        let mut muted = scored(KayentaLabel::High, "a");
        muted.muted = true;
        let score = weighted_sum_score(&[muted, scored(KayentaLabel::Pass, "a")], &BTreeMap::new());
        assert_eq!(score.score, 100.0);
    }

    #[test]
    fn a_group_with_only_nodata_counts_as_a_full_score() {
        let metrics = [
            scored(KayentaLabel::Nodata, "a"),
            scored(KayentaLabel::Pass, "b"),
            scored(KayentaLabel::Pass, "b"),
        ];
        assert_eq!(weighted_sum_score(&metrics, &BTreeMap::new()).score, 100.0);
    }

    #[test]
    fn scores_round_half_up_on_their_decimal_form() {
        assert_eq!(round_half_up_2(2.675), 2.68);
        assert_eq!(round_half_up_2(66.666_666_666_666_67), 66.67);
        assert_eq!(round_half_up_2(99.995), 100.0);
        assert_eq!(round_half_up_2(33.333_333_333_333_336), 33.33);
        assert_eq!(round_half_up_2(100.0), 100.0);
    }
}

#[cfg(test)]
mod guard_tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::domain::{Location, Sample};

    fn side(values: &[f64]) -> Observations {
        let samples = values
            .iter()
            .enumerate()
            .map(|(i, &value)| Sample {
                timestamp: 5.0 * i as f64,
                value,
            })
            .collect();
        Observations {
            metrics: BTreeMap::from([(
                "errors".to_owned(),
                MetricData::Samples {
                    samples,
                    origin: Location {
                        file: "t.csv".into(),
                        line: 1,
                    },
                },
            )]),
            ..Observations::default()
        }
    }

    fn profile(min_samples: Option<u64>) -> Profile {
        let min = min_samples.map_or_else(String::new, |n| format!("min_samples = {n}\n"));
        let text = format!(
            "name = \"k\"\n[judge]\nalgorithm = \"kayenta\"\n[[metrics]]\nname = \"errors\"\nkind = \"continuous\"\ndirection = \"increase\"\ncritical = true\n{min}"
        );
        Profile::parse(&text, "k.toml").unwrap()
    }

    /// The live bed's first look at 1 %: two points a side, one error rate above a
    /// baseline of zeros. Kayenta's judge fails it critically (its "zero mean" rule);
    /// with canary's guard the look waits for more points.
    #[test]
    fn a_look_short_of_min_samples_holds_instead_of_failing_on_two_points() {
        let (baseline, canary) = (side(&[0.0, 0.0]), side(&[0.0055, 0.0055]));
        let kayenta = judge(&profile(None), &baseline, &canary);
        assert_eq!(kayenta.verdict, Verdict::Rollback, "{:?}", kayenta.reasons);
        let guarded = judge(&profile(Some(5)), &baseline, &canary);
        assert_eq!(guarded.verdict, Verdict::Hold, "{:?}", guarded.reasons);
        assert!(
            guarded
                .reasons
                .iter()
                .any(|r| r.contains("short of min_samples")),
            "{:?}",
            guarded.reasons
        );
        assert_eq!(
            guarded.metrics[0].classification,
            Classification::Inconclusive
        );
        // With enough points the same difference is judged as Kayenta judges it.
        let (baseline, canary) = (side(&[0.0; 6]), side(&[0.0055; 6]));
        assert_eq!(
            judge(&profile(Some(5)), &baseline, &canary).verdict,
            Verdict::Rollback
        );
    }
}
