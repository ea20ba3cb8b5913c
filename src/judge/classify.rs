//! Per-metric evaluation: data preparation, the comparison, and the classification
//! once the family's p-values are corrected.
//!
//! Rules (documented in ARCHITECTURE.md):
//! - a side with no data, too many NaN points or fewer than `min_samples`
//!   observations is `inconclusive`, with the numbers that were missing;
//! - a comparative metric fails only when its corrected p-value is below
//!   `1 - confidence_level` in the bad direction **and** the estimated effect is
//!   beyond what the profile tolerates (`allowed_increase`, `max_ratio`, ...); a
//!   significant but tolerated change passes and says so;
//! - a threshold metric fails when the canary's statistic is outside its limits; for
//!   count data (a rate) only when the events show it (exact binomial test), and is
//!   inconclusive when the observed rate is beyond the limit without that evidence.

use super::hosts::{HostAllowance, OneShotHosts};
use super::{Classification, EffectSize, MetricResult, SideSummary, ThresholdCheck};
use crate::domain::{
    ConfidenceLevel, ContinuousKind, Direction, MetricData, MetricKind, MetricSpec, NanPolicy,
    OutlierPolicy, ProportionKind, ThresholdKind, ThresholdStatistic,
};
use crate::format::{confidence_percent, count, number, p_value, percent, signed, signed_percent};
use crate::stats::Alternative;
use crate::stats::hodges_lehmann::rank_comparison_sorted;
use crate::stats::mann_whitney::{MannWhitneyMethod, mann_whitney_sorted};
use crate::stats::multiple_testing::Correction;
use crate::stats::proportions::{
    Counts, ProportionTest, compare_proportions, rate_beyond_limit_p_value,
};
use crate::stats::quantiles::{iqr_fences_sorted, quantile_sorted};
use crate::stats::sort::{sort_f64, sorted_f64_of};

/// A metric whose comparison ran but whose classification waits for the corrected
/// p-value.
pub(super) struct Provisional {
    result: MetricResult,
    outcome: Outcome,
}

enum Outcome {
    /// Already classified (inconclusive, error, or a threshold check).
    Decided(Classification, String),
    /// A comparative test; classified once the family is corrected.
    Tested {
        /// The p-value the decision uses (one-sided doubled, capped at 1).
        decision_p_value: f64,
        /// The corrected `decision_p_value`.
        adjusted_p_value: Option<f64>,
        /// Whether the estimated effect is beyond what the profile tolerates.
        beyond_tolerance: bool,
        /// "canary is higher by +23% (shift ..., CI ...)".
        effect_text: String,
        /// "within the allowed +5%".
        tolerance_text: String,
    },
}

impl Provisional {
    pub(super) fn decision_p_value(&self) -> Option<f64> {
        match self.outcome {
            Outcome::Tested {
                decision_p_value, ..
            } => Some(decision_p_value),
            Outcome::Decided(..) => None,
        }
    }

    pub(super) fn set_adjusted_p_value(&mut self, adjusted: f64) {
        if let Outcome::Tested {
            adjusted_p_value, ..
        } = &mut self.outcome
        {
            *adjusted_p_value = Some(adjusted);
        }
    }

    pub(super) fn finish(
        self,
        confidence_level: ConfidenceLevel,
        correction: Correction,
    ) -> MetricResult {
        let mut result = self.result;
        let (classification, reason) = match self.outcome {
            Outcome::Decided(classification, reason) => (classification, reason),
            Outcome::Tested {
                decision_p_value,
                adjusted_p_value,
                beyond_tolerance,
                effect_text,
                tolerance_text,
            } => {
                let adjusted = adjusted_p_value.unwrap_or(decision_p_value);
                result.adjusted_p_value = Some(adjusted);
                let alpha = confidence_level.alpha();
                let raw_p = p_value(
                    result.p_value.unwrap_or(decision_p_value),
                    result.ln_p_value,
                );
                // With the host allowance the test's null is "no change beyond it".
                let raw_p = if result.host_allowance.is_some() {
                    format!("{raw_p} beyond host differences")
                } else {
                    raw_p
                };
                let evidence = match correction {
                    Correction::None => format!("p = {raw_p}"),
                    Correction::Holm | Correction::Bonferroni => format!(
                        "p = {raw_p}, {}-adjusted {}",
                        match correction {
                            Correction::Holm => "Holm",
                            _ => "Bonferroni",
                        },
                        p_value(adjusted, None)
                    ),
                };
                let significant = adjusted < alpha;
                match (significant, beyond_tolerance) {
                    (true, true) => (Classification::Fail, format!("{effect_text}; {evidence}")),
                    (true, false) => (
                        Classification::Pass,
                        format!("{effect_text}, {tolerance_text}; {evidence}"),
                    ),
                    (false, _) => (
                        Classification::Pass,
                        format!(
                            "no significant regression at {}% confidence: {effect_text}; {evidence}",
                            confidence_percent(confidence_level.value())
                        ),
                    ),
                }
            }
        };
        result.classification = classification;
        result.reason = reason;
        result
    }
}

/// Evaluates one metric as far as it can go without the rest of the family.
pub(super) fn evaluate(
    spec: &MetricSpec,
    (baseline, canary): (Option<&MetricData>, Option<&MetricData>),
    hosts: Option<OneShotHosts<'_>>,
    problems: &[&str],
    confidence_level: ConfidenceLevel,
) -> Provisional {
    let mut result = MetricResult {
        name: spec.name.clone(),
        kind: spec.kind.name().into(),
        severity: spec.severity,
        group: spec.group.clone(),
        direction: match spec.kind {
            MetricKind::Continuous(ContinuousKind { direction, .. })
            | MetricKind::Proportion(ProportionKind { direction, .. }) => Some(direction),
            MetricKind::Threshold(_) => None,
        },
        classification: Classification::Inconclusive,
        reason: String::new(),
        baseline: None,
        canary: None,
        test: None,
        p_value: None,
        ln_p_value: None,
        adjusted_p_value: None,
        shift_estimate: None,
        shift_ci: None,
        relative_shift: None,
        effect_size: None,
        threshold: None,
        sequential: None,
        short_of_samples: None,
        host_allowance: None,
        kayenta_label: None,
    };
    let outcome = if problems.is_empty() {
        match &spec.kind {
            MetricKind::Continuous(kind) => continuous(
                (spec, *kind),
                (baseline, canary),
                hosts,
                confidence_level,
                &mut result,
            ),
            MetricKind::Proportion(kind) => proportion(
                (spec, *kind),
                baseline,
                canary,
                confidence_level,
                &mut result,
            ),
            MetricKind::Threshold(kind) => threshold(
                (spec, *kind),
                baseline,
                canary,
                confidence_level,
                &mut result,
            ),
        }
    } else {
        inconclusive(problems.join("; "))
    };
    Provisional { result, outcome }
}

/// A comparative metric at a stage without a baseline: the canary's data described,
/// [`Classification::NotCompared`] when it has usable data, inconclusive otherwise.
/// One usable point is enough (the stage's triggers and threshold metrics judge the
/// values); `min_samples` is about comparisons, and nothing is compared here.
pub(super) fn describe_canary(
    spec: &MetricSpec,
    canary: Option<&MetricData>,
    problems: &[&str],
    stage: &str,
    confidence_level: ConfidenceLevel,
) -> Provisional {
    let mut provisional = evaluate(spec, (None, None), None, &[], confidence_level);
    let result = &mut provisional.result;
    let mut spec = spec.clone();
    spec.min_samples = 1;
    provisional.outcome = if !problems.is_empty() {
        inconclusive(problems.join("; "))
    } else {
        match canary {
            None => inconclusive("no canary data"),
            Some(data @ MetricData::Samples { .. }) => match prepare_samples(&spec, "canary", data)
            {
                Ok(prepared) => {
                    result.canary = prepared.summary;
                    not_compared(stage)
                }
                Err(outcome) => outcome,
            },
            Some(data @ MetricData::Counts { .. }) => match prepare_counts(&spec, "canary", data) {
                Ok(prepared) if prepared.summary.n > 0 => {
                    result.canary = Some(prepared.summary);
                    not_compared(stage)
                }
                Ok(_) => inconclusive("the canary had no events"),
                Err(outcome) => outcome,
            },
        }
    };
    provisional
}

fn not_compared(stage: &str) -> Outcome {
    Outcome::Decided(
        Classification::NotCompared,
        format!(
            "not compared: stage {stage} has no baseline (the canary serves all traffic); \
             the canary's data are present, and triggers and absolute checks decide"
        ),
    )
}

fn inconclusive(reason: impl Into<String>) -> Outcome {
    Outcome::Decided(Classification::Inconclusive, reason.into())
}

/// Both sides prepared by `prepare`, or the outcome that stops the metric: a side
/// without data is inconclusive, and so is a side `prepare` refuses.
fn prepare_both<T>(
    baseline: Option<&MetricData>,
    canary: Option<&MetricData>,
    prepare: impl Fn(&str, &MetricData) -> Result<T, Outcome>,
) -> Result<(T, T), Outcome> {
    match (baseline, canary) {
        (None, None) => Err(inconclusive("no data for either side")),
        (None, Some(_)) => Err(inconclusive("no baseline data")),
        (Some(_), None) => Err(inconclusive("no canary data")),
        (Some(baseline), Some(canary)) => {
            Ok((prepare("baseline", baseline)?, prepare("canary", canary)?))
        }
    }
}

/// One side's samples after NaN handling and outlier removal, sorted.
struct PreparedSamples {
    sorted: Vec<f64>,
    summary: Option<SideSummary>,
}

/// Applies the NaN policy and outlier removal. `Err` carries the reason the metric
/// is inconclusive (or an error, for data of the wrong shape).
fn prepare_samples(
    spec: &MetricSpec,
    side: &str,
    data: &MetricData,
) -> Result<PreparedSamples, Outcome> {
    let MetricData::Samples { samples, .. } = data else {
        return Err(Outcome::Decided(
            Classification::Error,
            format!(
                "the {side} data are error/total counts, but a {} metric needs plain samples",
                spec.kind.name()
            ),
        ));
    };
    let total_points = samples.len();
    let nan_dropped: usize = samples
        .iter()
        .map(|sample| usize::from(!sample.value.is_finite()))
        .sum();
    check_nan_share(spec, side, nan_dropped, total_points, "samples")?;
    let mut sorted = if nan_dropped == 0 {
        // A sorted copy whose copying is its sort's first pass (no spare buffer of the
        // sample's size; see `stats::sort`).
        sorted_f64_of(samples, |s| s.value)
    } else {
        // Copied at the exact size (a million samples a side would otherwise grow to
        // the next power of two).
        let mut finite = Vec::with_capacity(total_points - nan_dropped);
        finite.extend(
            samples
                .iter()
                .map(|sample| sample.value)
                .filter(|value| value.is_finite()),
        );
        sort_f64(&mut finite);
        finite
    };
    let outliers_removed = match spec.outliers {
        OutlierPolicy::Keep => 0,
        OutlierPolicy::Iqr { multiplier } => match iqr_fences_sorted(&sorted, multiplier) {
            // The values within the fences are a contiguous run of the sorted ones.
            Some((lower, upper)) => {
                let before = sorted.len();
                sorted.retain(|value| (lower..=upper).contains(value));
                before - sorted.len()
            }
            None => 0,
        },
    };
    let summary = SideSummary::of_sorted_samples(&sorted, nan_dropped, outliers_removed);
    Ok(PreparedSamples { sorted, summary })
}

fn check_nan_share(
    spec: &MetricSpec,
    side: &str,
    nan_count: usize,
    total_points: usize,
    unit: &str,
) -> Result<(), Outcome> {
    if nan_count == 0 {
        return Ok(());
    }
    match spec.nan_policy {
        NanPolicy::Inconclusive => Err(inconclusive(format!(
            "{} of {} {side} {unit} are NaN (missing) and nan_policy is \"inconclusive\"",
            count(nan_count as u64),
            count(total_points as u64)
        ))),
        NanPolicy::Drop if nan_count as f64 > spec.max_nan_fraction * total_points as f64 => {
            Err(inconclusive(format!(
                "{} of {} {side} {unit} are NaN (missing), more than the trusted {}",
                count(nan_count as u64),
                count(total_points as u64),
                percent(spec.max_nan_fraction)
            )))
        }
        NanPolicy::Drop | NanPolicy::EmptySteps => Ok(()),
    }
}

fn check_min_samples(spec: &MetricSpec, side: &str, n: u64, unit: &str) -> Result<(), Outcome> {
    if n < spec.min_samples {
        Err(inconclusive(format!(
            "{side} has {} of the {} required {unit}",
            count(n),
            count(spec.min_samples)
        )))
    } else {
        Ok(())
    }
}

fn alternative_for(direction: Direction) -> Alternative {
    match direction {
        Direction::Increase => Alternative::Greater,
        Direction::Decrease => Alternative::Less,
        Direction::Either => Alternative::TwoSided,
    }
}

/// One-sided p-values are doubled so every metric is compared with `1 - level`, which
/// makes "significant" agree with "the two-sided interval excludes no change".
fn decision_p_value(p: f64, direction: Direction) -> f64 {
    match direction {
        Direction::Either => p,
        Direction::Increase | Direction::Decrease => (2.0 * p).min(1.0),
    }
}

fn ratio(numerator: f64, denominator: f64) -> Option<f64> {
    (denominator != 0.0).then(|| numerator / denominator)
}

fn continuous(
    (spec, kind): (&MetricSpec, ContinuousKind),
    (baseline, canary): (Option<&MetricData>, Option<&MetricData>),
    hosts: Option<OneShotHosts<'_>>,
    confidence_level: ConfidenceLevel,
    result: &mut MetricResult,
) -> Outcome {
    let ContinuousKind {
        direction,
        allowed_increase,
        allowed_decrease,
    } = kind;
    let (baseline, canary) = match prepare_both(baseline, canary, |side, data| {
        prepare_samples(spec, side, data)
    }) {
        Ok(sides) => sides,
        Err(outcome) => return outcome,
    };
    result.baseline = baseline.summary.clone();
    result.canary = canary.summary.clone();
    for (side, prepared) in [("baseline", &baseline), ("canary", &canary)] {
        if let Err(outcome) = check_min_samples(spec, side, prepared.sorted.len() as u64, "samples")
        {
            return outcome;
        }
    }
    let (Some(baseline_summary), Some(canary_summary)) = (&baseline.summary, &canary.summary)
    else {
        return inconclusive("no finite samples");
    };

    let (test, shift) = match rank_comparison_sorted(
        &baseline.sorted,
        &canary.sorted,
        alternative_for(direction),
        confidence_level.value(),
    ) {
        Ok(both) => both,
        Err(error) => return Outcome::Decided(Classification::Error, error.to_string()),
    };
    let baseline_median = baseline_summary.median.unwrap_or(f64::NAN);
    let canary_median = canary_summary.median.unwrap_or(f64::NAN);
    let relative_shift = ratio(shift.estimate, baseline_median.abs());

    let test_name = |method: MannWhitneyMethod| match method {
        MannWhitneyMethod::Exact => "mann_whitney_exact",
        MannWhitneyMethod::NormalApproximation => "mann_whitney_normal",
    };
    result.test = Some(test_name(test.method).into());
    // Instances differ in level (see `super::hosts`): with the series' instances named
    // and every value positive, the test's null is "no change beyond the allowance".
    let host = hosts
        .filter(|_| baseline.sorted[0] > 0.0 && canary.sorted[0] > 0.0)
        .and_then(|hosts| hosts.allowance());
    let (p_value, ln_p_value, decision_p_value) = match &host {
        None => (
            test.p_value,
            test.ln_p_value,
            decision_p_value(test.p_value, direction),
        ),
        Some(host) => match beyond_hosts(&baseline.sorted, &canary.sorted, host, direction) {
            Ok((p, ln_p, method)) => {
                // The moved samples may tie where the measured ones did not (or the
                // reverse), which decides the method.
                result.test = Some(test_name(method).into());
                (p, ln_p, (2.0 * decision_p_value(p, direction)).min(1.0))
            }
            Err(error) => return Outcome::Decided(Classification::Error, error.to_string()),
        },
    };
    result.host_allowance = host;
    result.p_value = Some(p_value);
    result.ln_p_value = Some(ln_p_value);
    result.shift_estimate = Some(shift.estimate);
    result.shift_ci = Some([shift.low, shift.high]);
    result.relative_shift = relative_shift;
    result.effect_size = Some(EffectSize::Continuous {
        mean_ratio: ratio(canary_summary.mean, baseline_summary.mean),
        median_ratio: ratio(canary_median, baseline_median),
        probability_of_superiority: test.probability_of_superiority,
    });

    // Compare the relative shift with the tolerance; with a zero baseline median the
    // relative shift is unbounded, so any shift in the bad direction is beyond it.
    let relative = relative_shift.unwrap_or(if shift.estimate == 0.0 {
        0.0
    } else {
        f64::INFINITY.copysign(shift.estimate)
    });
    let increase_beyond = shift.estimate > 0.0 && relative > allowed_increase;
    let decrease_beyond = shift.estimate < 0.0 && -relative > allowed_decrease;
    let beyond_tolerance = match direction {
        Direction::Increase => increase_beyond,
        Direction::Decrease => decrease_beyond,
        Direction::Either => increase_beyond || decrease_beyond,
    };
    let change = match relative_shift {
        Some(relative) => format!(
            "canary median {} vs baseline {}, shift {} ({})",
            number(canary_median),
            number(baseline_median),
            signed(shift.estimate),
            signed_percent(relative)
        ),
        None => format!(
            "canary median {} vs baseline {}, shift {}",
            number(canary_median),
            number(baseline_median),
            signed(shift.estimate)
        ),
    };
    let host_note = host.map_or_else(String::new, |host| {
        let difference = match direction {
            Direction::Increase => format!("an increase up to {}", percent(host.relative())),
            Direction::Decrease => {
                format!("a decrease up to {}", percent(-(-host.margin).exp_m1()))
            }
            Direction::Either => {
                format!("a difference up to {} either way", percent(host.relative()))
            }
        };
        host.note(&difference, "host_spread")
    });
    let effect_text = format!(
        "{change}, {}% CI [{}, {}]{host_note}",
        confidence_percent(confidence_level.value()),
        signed(shift.low),
        signed(shift.high)
    );
    let tolerance_text = if shift.estimate >= 0.0 {
        format!(
            "within the allowed increase of {}",
            percent(allowed_increase)
        )
    } else {
        format!(
            "within the allowed decrease of {}",
            percent(allowed_decrease)
        )
    };
    Outcome::Tested {
        decision_p_value,
        adjusted_p_value: None,
        beyond_tolerance,
        effect_text,
        tolerance_text,
    }
}

/// The Mann-Whitney p-value (and its log) of "the canary is no worse than the baseline
/// beyond the host allowance": the canary's sorted, positive samples divided by
/// `e^margin` against an increase, multiplied by it against a decrease, both for
/// `either` (the smaller doubled), with the method that gave it. Scaling by a positive
/// factor keeps them sorted.
fn beyond_hosts(
    baseline_sorted: &[f64],
    canary_sorted: &[f64],
    host: &HostAllowance,
    direction: Direction,
) -> Result<(f64, f64, MannWhitneyMethod), crate::stats::StatsError> {
    let moved = |factor: f64, alternative: Alternative| {
        let scaled: Vec<f64> = canary_sorted.iter().map(|c| c * factor).collect();
        mann_whitney_sorted(baseline_sorted, &scaled, alternative)
            .map(|test| (test.p_value, test.ln_p_value, test.method))
    };
    let factor = host.margin.exp();
    match direction {
        Direction::Increase => moved(1.0 / factor, Alternative::Greater),
        Direction::Decrease => moved(factor, Alternative::Less),
        Direction::Either => {
            let (higher, lower) = (
                moved(1.0 / factor, Alternative::Greater)?,
                moved(factor, Alternative::Less)?,
            );
            let (_, ln_p, method) = if higher.1 <= lower.1 { higher } else { lower };
            let ln_p = (ln_p + std::f64::consts::LN_2).min(0.0);
            Ok((ln_p.exp(), ln_p, method))
        }
    }
}

/// One side's counts, summed over the timestamps where both counts are present.
struct PreparedCounts {
    counts: Counts,
    summary: SideSummary,
}

fn prepare_counts(
    spec: &MetricSpec,
    side: &str,
    data: &MetricData,
) -> Result<PreparedCounts, Outcome> {
    let MetricData::Counts { errors, total, .. } = data else {
        return Err(Outcome::Decided(
            Classification::Error,
            format!(
                "the {side} data are plain samples, but a proportion metric needs `{0}:errors` and `{0}:total` counts",
                spec.name
            ),
        ));
    };
    let mut error_sum = 0.0;
    let mut total_sum = 0.0;
    let mut nan_dropped = 0;
    for (error_point, total_point) in errors.iter().zip(total) {
        if error_point.value.is_finite() && total_point.value.is_finite() {
            error_sum += error_point.value;
            total_sum += total_point.value;
        } else {
            nan_dropped += 1;
        }
    }
    check_nan_share(spec, side, nan_dropped, errors.len(), "intervals")?;
    // Counts from `increase()` are not whole; the tests need whole events.
    let counts = Counts {
        events: error_sum.round() as u64,
        total: total_sum.round() as u64,
    };
    let counts = Counts {
        events: counts.events.min(counts.total),
        ..counts
    };
    let rate = if counts.total == 0 {
        f64::NAN
    } else {
        counts.events as f64 / counts.total as f64
    };
    Ok(PreparedCounts {
        counts,
        summary: SideSummary {
            n: counts.total,
            mean: rate,
            median: None,
            p95: None,
            p99: None,
            std_dev: None,
            min: None,
            max: None,
            errors: Some(counts.events),
            total: Some(counts.total),
            nan_dropped,
            outliers_removed: 0,
        },
    })
}

fn proportion(
    (spec, kind): (&MetricSpec, ProportionKind),
    baseline: Option<&MetricData>,
    canary: Option<&MetricData>,
    confidence_level: ConfidenceLevel,
    result: &mut MetricResult,
) -> Outcome {
    let ProportionKind {
        direction,
        max_ratio,
        min_ratio,
    } = kind;
    let (baseline, canary) = match prepare_both(baseline, canary, |side, data| {
        prepare_counts(spec, side, data)
    }) {
        Ok(sides) => sides,
        Err(outcome) => return outcome,
    };
    result.baseline = Some(baseline.summary.clone());
    result.canary = Some(canary.summary.clone());
    for (side, prepared) in [("baseline", &baseline), ("canary", &canary)] {
        if let Err(outcome) = check_min_samples(spec, side, prepared.counts.total, "events") {
            return outcome;
        }
    }
    let comparison = match compare_proportions(
        baseline.counts,
        canary.counts,
        confidence_level.value(),
        alternative_for(direction),
    ) {
        Ok(comparison) => comparison,
        Err(error) => return Outcome::Decided(Classification::Error, error.to_string()),
    };
    result.test = Some(
        match comparison.test {
            ProportionTest::ZTest => "two_proportion_z",
            ProportionTest::FisherExact => "fisher_exact",
        }
        .into(),
    );
    result.p_value = Some(comparison.p_value);
    result.ln_p_value = Some(comparison.ln_p_value);
    result.shift_estimate = Some(comparison.difference);
    result.shift_ci = Some([comparison.difference_ci.0, comparison.difference_ci.1]);
    result.effect_size = Some(EffectSize::Proportion {
        rate_ratio: comparison.ratio,
        rate_ratio_ci: comparison.ratio_ci.map(|(low, high)| [low, high]),
        rate_difference: comparison.difference,
        rate_difference_ci: [comparison.difference_ci.0, comparison.difference_ci.1],
    });

    // With a zero baseline rate the ratio is unbounded: any increase exceeds max_ratio.
    let increase_beyond = comparison.difference > 0.0
        && match (max_ratio, comparison.ratio) {
            (Some(limit), Some(ratio)) => ratio > limit,
            _ => true,
        };
    let decrease_beyond = comparison.difference < 0.0
        && match (min_ratio, comparison.ratio) {
            (Some(limit), Some(ratio)) => ratio < limit,
            _ => true,
        };
    let beyond_tolerance = match direction {
        Direction::Increase => increase_beyond,
        Direction::Decrease => decrease_beyond,
        Direction::Either => increase_beyond || decrease_beyond,
    };
    let level = confidence_percent(confidence_level.value());
    let ratio_text = match (comparison.ratio, comparison.ratio_ci) {
        (Some(ratio), Some((low, high))) => format!(
            ", ×{} ({level}% CI ×{}–×{})",
            number(ratio),
            number(low),
            number(high)
        ),
        (Some(ratio), None) => format!(", ×{}", number(ratio)),
        (None, _) => String::new(),
    };
    let effect_text = format!(
        "rate {} ({} of {}) vs {} baseline ({} of {}){ratio_text}",
        percent(comparison.canary_rate),
        count(canary.counts.events),
        count(canary.counts.total),
        percent(comparison.baseline_rate),
        count(baseline.counts.events),
        count(baseline.counts.total),
    );
    let tolerance_text = if comparison.difference >= 0.0 {
        match max_ratio {
            Some(limit) => format!("within the allowed ratio ×{}", number(limit)),
            None => "within tolerance".to_owned(),
        }
    } else {
        match min_ratio {
            Some(limit) => format!("within the allowed ratio ×{}", number(limit)),
            None => "within tolerance".to_owned(),
        }
    };
    Outcome::Tested {
        decision_p_value: decision_p_value(comparison.p_value, direction),
        adjusted_p_value: None,
        beyond_tolerance,
        effect_text,
        tolerance_text,
    }
}

/// The statistic a threshold limits, of the canary's data: the profile's statistic of
/// its samples, or the error rate of its counts (with the counts, the rate's evidence).
/// Records the canary's summary in `result`; an outcome when the data cannot give it.
fn canary_statistic(
    spec: &MetricSpec,
    statistic: ThresholdStatistic,
    canary: &MetricData,
    result: &mut MetricResult,
) -> Result<(String, f64, Option<Counts>), Outcome> {
    match canary {
        MetricData::Samples { samples, .. } => {
            let prepared = prepare_samples(spec, "canary", canary)?;
            result.canary = prepared.summary.clone();
            check_min_samples(spec, "canary", prepared.sorted.len() as u64, "samples")?;
            let Some(summary) = prepared.summary else {
                return Err(inconclusive("no finite canary samples"));
            };
            let value = match statistic {
                ThresholdStatistic::Mean => summary.mean,
                ThresholdStatistic::Median => summary.median.unwrap_or(f64::NAN),
                ThresholdStatistic::P95 => summary.p95.unwrap_or(f64::NAN),
                ThresholdStatistic::P99 => {
                    quantile_sorted(&prepared.sorted, 0.99).unwrap_or(f64::NAN)
                }
                ThresholdStatistic::Max => summary.max.unwrap_or(f64::NAN),
                ThresholdStatistic::Min => summary.min.unwrap_or(f64::NAN),
                ThresholdStatistic::Last => samples
                    .iter()
                    .filter(|s| s.value.is_finite())
                    .max_by(|a, b| a.timestamp.total_cmp(&b.timestamp))
                    .map_or(f64::NAN, |s| s.value),
            };
            Ok((statistic.to_string(), value, None))
        }
        MetricData::Counts { .. } => {
            let prepared = prepare_counts(spec, "canary", canary)?;
            result.canary = Some(prepared.summary.clone());
            check_min_samples(spec, "canary", prepared.counts.total, "events")?;
            Ok((
                "error_rate".to_owned(),
                prepared.summary.mean,
                Some(prepared.counts),
            ))
        }
    }
}

fn threshold(
    (spec, kind): (&MetricSpec, ThresholdKind),
    baseline: Option<&MetricData>,
    canary: Option<&MetricData>,
    confidence_level: ConfidenceLevel,
    result: &mut MetricResult,
) -> Outcome {
    let ThresholdKind {
        statistic,
        min,
        max,
    } = kind;
    // The baseline is shown for context only; a threshold judges the canary alone.
    match baseline {
        Some(data @ MetricData::Samples { .. }) => {
            result.baseline = prepare_samples(spec, "baseline", data)
                .ok()
                .and_then(|p| p.summary);
        }
        Some(data @ MetricData::Counts { .. }) => {
            result.baseline = prepare_counts(spec, "baseline", data)
                .ok()
                .map(|p| p.summary);
        }
        None => {}
    }
    let Some(canary) = canary else {
        return inconclusive("no canary data");
    };
    // Count data keep their counts: the rate's evidence, so a few errors among few
    // events do not fail it.
    let (statistic_name, value, canary_counts) =
        match canary_statistic(spec, statistic, canary, result) {
            Ok(found) => found,
            Err(outcome) => return outcome,
        };
    result.threshold = Some(ThresholdCheck {
        statistic: statistic_name.clone(),
        value,
        min,
        max,
    });
    if !value.is_finite() {
        return inconclusive(format!("the canary {statistic_name} is not a number"));
    }
    let shown = |x: f64| {
        if statistic_name == "error_rate" {
            percent(x)
        } else {
            number(x)
        }
    };
    // A rate beyond its limit fails only when the events show it (one-sided exact
    // binomial test at half the false-alarm rate, like every directional check); beyond
    // it without that evidence is doubtful, and doubtful data holds.
    let breach = |limit: f64, alternative: Alternative, side: &str| -> Outcome {
        let observed = format!(
            "canary {statistic_name} {} is {side} the limit {}",
            shown(value),
            shown(limit)
        );
        match canary_counts {
            Some(counts) => {
                let p = rate_beyond_limit_p_value(counts, limit, alternative);
                if p < confidence_level.alpha() / 2.0 {
                    Outcome::Decided(
                        Classification::Fail,
                        format!(
                            "{observed} ({} of {} events; p = {})",
                            count(counts.events),
                            count(counts.total),
                            p_value(p, None)
                        ),
                    )
                } else {
                    inconclusive(format!(
                        "{observed}, but {} of {} events cannot show it (p = {})",
                        count(counts.events),
                        count(counts.total),
                        p_value(p, None)
                    ))
                }
            }
            None => Outcome::Decided(Classification::Fail, observed),
        }
    };
    match (min, max) {
        (_, Some(limit)) if value > limit => breach(limit, Alternative::Greater, "above"),
        (Some(limit), _) if value < limit => breach(limit, Alternative::Less, "below"),
        _ => Outcome::Decided(
            Classification::Pass,
            format!(
                "canary {statistic_name} {} is within {}",
                shown(value),
                match (min, max) {
                    (Some(low), Some(high)) => format!("[{}, {}]", shown(low), shown(high)),
                    (Some(low), None) => format!("the minimum {}", shown(low)),
                    (None, Some(high)) => format!("the limit {}", shown(high)),
                    (None, None) => "its limits".to_owned(),
                }
            ),
        ),
    }
}
