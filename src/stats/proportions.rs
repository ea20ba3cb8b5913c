//! Comparing two proportions: errors out of requests on the baseline and on the
//! canary.
//!
//! This file owns the rate comparison the judge uses for error-rate metrics: the
//! pooled two-proportion z-test, Fisher's exact test, Newcombe's hybrid score
//! interval for the difference of rates and the Katz log interval for their
//! ratio. [`compare_proportions`] picks the test from the data: Fisher's exact
//! test whenever any expected cell count of the 2x2 table is below 5 (the usual
//! rule below which the normal approximation of the z-test is unreliable, and the
//! common canary case of a handful of errors in millions of requests), the pooled
//! z-test otherwise (exact enumeration gains nothing there and costs time
//! proportional to the number of events). Fisher's test is computed in log space by
//! walking the hypergeometric support with the ratio of consecutive probabilities,
//! so it stays exact and fast when totals are huge and events are few. Newcombe's
//! interval is built from Wilson intervals because the Wald interval collapses to a
//! point, or leaves [-1, 1], at rates near 0, which is exactly where error rates
//! live.
//!
//! Everything reads "canary compared with baseline": the difference is
//! `canary_rate - baseline_rate`, the ratio is `canary_rate / baseline_rate`, and
//! [`Alternative::Greater`] means the canary rate is larger.

use std::cmp::Ordering;

use serde::Serialize;
use statrs::function::erf::{erfc, erfc_inv};
use statrs::function::gamma::checked_gamma_ur;

use super::{Alternative, StatsError};

/// Events out of a number of trials on one side, for example errors out of requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Counts {
    /// Number of events (errors).
    pub events: u64,
    /// Number of trials (requests); must be at least `events`.
    pub total: u64,
}

/// Which test produced the p-value of a [`ProportionComparison`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ProportionTest {
    /// The pooled two-proportion z-test without continuity correction.
    ZTest,
    /// Fisher's exact test on the 2x2 table.
    FisherExact,
}

/// The result of comparing the canary's event rate with the baseline's.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ProportionComparison {
    /// Baseline events divided by baseline total.
    pub baseline_rate: f64,
    /// Canary events divided by canary total.
    pub canary_rate: f64,
    /// `canary_rate - baseline_rate`.
    pub difference: f64,
    /// Two-sided interval for the difference at the requested confidence level
    /// (Newcombe's hybrid score interval, method 10, from Wilson intervals).
    pub difference_ci: (f64, f64),
    /// `canary_rate / baseline_rate`; `None` when the baseline rate is 0.
    pub ratio: Option<f64>,
    /// Two-sided Katz log interval for the ratio of rates. When any cell of the 2x2
    /// table is 0, 0.5 is added to every cell (Haldane) so the interval stays
    /// finite. `None` only when both sides have 0 events.
    pub ratio_ci: Option<(f64, f64)>,
    /// The pooled z statistic when the z-test was used, `None` for Fisher's test.
    pub z: Option<f64>,
    /// The p-value of the test named by `test` for the requested alternative.
    pub p_value: f64,
    /// Natural logarithm of `p_value`, finite even when `p_value` underflows to 0.
    pub ln_p_value: f64,
    /// Which test produced `p_value`.
    pub test: ProportionTest,
}

/// Expected cell count below which [`compare_proportions`] switches from the
/// z-test to Fisher's exact test (the classical rule of thumb for chi-square and
/// z approximations of 2x2 tables).
const MIN_EXPECTED_CELL_COUNT: f64 = 5.0;

/// Relative tolerance used to decide which tables are "at most as probable as the
/// observed one" in the two-sided Fisher test. It is R's `fisher.test` value; it
/// makes tables whose probabilities are equal in exact arithmetic count as equal
/// despite rounding.
const FISHER_RELATIVE_TOLERANCE: f64 = 1e-7;

/// Terms whose log-probability is this far below the largest term of a sum are
/// dropped from the Fisher sums. `exp(-80)` is about 1.8e-35, so even 2^64 such
/// terms change a sum by less than 1e-15 relative.
const NEGLIGIBLE_LN_GAP: f64 = 80.0;

/// Above this z the logarithm of the normal tail is taken from its asymptotic
/// expansion instead of from the tail itself, which is about 1e-268 at 35 and
/// underflows (statrs' incomplete gamma function returns 0) just below 38.
const ASYMPTOTIC_TAIL_THRESHOLD: f64 = 35.0;

/// Compares the canary's event rate with the baseline's.
///
/// The p-value comes from Fisher's exact test when any expected cell count of the
/// 2x2 table (row total times column total over the grand total) is below 5, and
/// from the pooled two-proportion z-test otherwise; `test` says which was used and
/// `z` is only set for the z-test. When both sides have no events (or only events)
/// every expected count in one column is 0, so Fisher's test is used and gives
/// p = 1: there is no evidence of a difference.
///
/// # Errors
///
/// [`StatsError::EmptySample`] when a side has a total of 0,
/// [`StatsError::InvalidCounts`] when a side has more events than trials, and
/// [`StatsError::InvalidConfidenceLevel`] when `confidence_level` is not strictly
/// between 0 and 1.
pub fn compare_proportions(
    baseline: Counts,
    canary: Counts,
    confidence_level: f64,
    alternative: Alternative,
) -> Result<ProportionComparison, StatsError> {
    validate_pair(baseline, canary)?;
    if !(confidence_level > 0.0 && confidence_level < 1.0) {
        return Err(StatsError::InvalidConfidenceLevel(confidence_level));
    }
    let critical_z = two_sided_critical_z(confidence_level);

    let baseline_rate = rate(baseline);
    let canary_rate = rate(canary);
    let difference = canary_rate - baseline_rate;
    let difference_ci = newcombe_difference_interval(baseline, canary, critical_z);
    let ratio = (baseline_rate > 0.0).then(|| canary_rate / baseline_rate);
    let ratio_ci = katz_ratio_interval(baseline, canary, critical_z);

    let (test, z, p_value, ln_p_value) =
        if min_expected_cell_count(baseline, canary) < MIN_EXPECTED_CELL_COUNT {
            let (p, ln_p) = fisher_exact_with_ln(baseline, canary, alternative);
            (ProportionTest::FisherExact, None, p, ln_p)
        } else {
            let (z, p, ln_p) = z_test_unchecked(baseline, canary, alternative);
            (ProportionTest::ZTest, Some(z), p, ln_p)
        };

    Ok(ProportionComparison {
        baseline_rate,
        canary_rate,
        difference,
        difference_ci,
        ratio,
        ratio_ci,
        z,
        p_value,
        ln_p_value,
        test,
    })
}

/// The pooled two-proportion z-test without continuity correction.
///
/// Returns `(z, p, ln p)` where `z = (canary_rate - baseline_rate) / se` and `se`
/// uses the pooled rate of both sides. `ln p` stays finite for any finite `z`,
/// because deep in the tail it comes from the asymptotic expansion of the normal
/// tail rather than from the logarithm of an underflowed p-value. When the pooled
/// variance is 0 (both sides have no events, or only events) the rates are equal
/// and the result is `(0, 1, 0)`.
///
/// # Errors
///
/// [`StatsError::EmptySample`] when a side has a total of 0 and
/// [`StatsError::InvalidCounts`] when a side has more events than trials.
pub fn two_proportion_z_test(
    baseline: Counts,
    canary: Counts,
    alternative: Alternative,
) -> Result<(f64, f64, f64), StatsError> {
    validate_pair(baseline, canary)?;
    Ok(z_test_unchecked(baseline, canary, alternative))
}

/// Fisher's exact test on the 2x2 table
/// `[[canary events, canary non-events], [baseline events, baseline non-events]]`.
///
/// With the margins fixed, the canary's event count `X` is hypergeometric.
/// [`Alternative::Greater`] (canary rate larger, odds ratio above 1) gives
/// `P(X >= observed)`, [`Alternative::Less`] gives `P(X <= observed)`, and the
/// two-sided p-value is, as in R and scipy, the total probability of the tables no
/// more probable than the observed one (with R's relative tolerance of 1e-7).
///
/// Probabilities are computed in log space relative to the mode of the
/// distribution, from the ratio of consecutive probabilities, so no factorial of
/// the (possibly huge) totals is ever formed. The work is bounded by the support,
/// which has at most `events + 1` points; in practice it is the distance from the
/// mode to the observed count plus the few points beyond which the remaining
/// probability is negligible. That is instant for the few events where an exact
/// test matters, but grows with the spread of the distribution (roughly the
/// square root of the number of events) and with how far out the observation
/// lies; with millions of events use the z-test, as [`compare_proportions`] does.
///
/// # Errors
///
/// [`StatsError::EmptySample`] when a side has a total of 0 and
/// [`StatsError::InvalidCounts`] when a side has more events than trials.
pub fn fisher_exact(
    baseline: Counts,
    canary: Counts,
    alternative: Alternative,
) -> Result<f64, StatsError> {
    validate_pair(baseline, canary)?;
    Ok(fisher_exact_with_ln(baseline, canary, alternative).0)
}

/// Checks both sides, baseline first so errors are reported in a stable order.
fn validate_pair(baseline: Counts, canary: Counts) -> Result<(), StatsError> {
    validate_counts(baseline, "baseline")?;
    validate_counts(canary, "canary")
}

fn validate_counts(counts: Counts, side: &'static str) -> Result<(), StatsError> {
    if counts.total == 0 {
        return Err(StatsError::EmptySample { side });
    }
    if counts.events > counts.total {
        return Err(StatsError::InvalidCounts(format!(
            "the {side} side has {} events out of {} trials",
            counts.events, counts.total
        )));
    }
    Ok(())
}

fn rate(counts: Counts) -> f64 {
    counts.events as f64 / counts.total as f64
}

/// The z with `P(|Z| > z) = 1 - confidence_level`. Going through `erfc_inv` of the
/// two-sided tail mass avoids forming `1 - alpha / 2`, which loses digits when the
/// confidence level is close to 1.
fn two_sided_critical_z(confidence_level: f64) -> f64 {
    std::f64::consts::SQRT_2 * erfc_inv(1.0 - confidence_level)
}

fn min_expected_cell_count(baseline: Counts, canary: Counts) -> f64 {
    let baseline_total = baseline.total as f64;
    let canary_total = canary.total as f64;
    let grand_total = baseline_total + canary_total;
    let events = baseline.events as f64 + canary.events as f64;
    let non_events = grand_total - events;
    let smallest_row = baseline_total.min(canary_total);
    let smallest_column = events.min(non_events);
    // The smallest expected count is always smallest row times smallest column.
    smallest_row * smallest_column / grand_total
}

fn z_test_unchecked(baseline: Counts, canary: Counts, alternative: Alternative) -> (f64, f64, f64) {
    let baseline_total = baseline.total as f64;
    let canary_total = canary.total as f64;
    let pooled_rate =
        (baseline.events as f64 + canary.events as f64) / (baseline_total + canary_total);
    let variance = pooled_rate * (1.0 - pooled_rate) * (1.0 / baseline_total + 1.0 / canary_total);
    if variance <= 0.0 || variance.is_nan() {
        // Both sides have no events, or only events: the rates are identical.
        return (0.0, 1.0, 0.0);
    }
    let z = (rate(canary) - rate(baseline)) / variance.sqrt();
    let ln_p = match alternative {
        Alternative::Greater => ln_normal_sf(z),
        Alternative::Less => ln_normal_sf(-z),
        Alternative::TwoSided => (std::f64::consts::LN_2 + ln_normal_sf(z.abs())).min(0.0),
    };
    (z, ln_p.exp(), ln_p)
}

/// Natural logarithm of the standard normal survival function `P(Z > z)`.
fn ln_normal_sf(z: f64) -> f64 {
    if z.is_nan() {
        return f64::NAN;
    }
    if z < 0.0 {
        // P(Z > z) = 1 - P(Z > -z); ln_1p keeps the digits of a value close to 1.
        return (-normal_sf(-z)).ln_1p();
    }
    if z <= ASYMPTOTIC_TAIL_THRESHOLD {
        return normal_sf(z).ln();
    }
    // Mills-ratio expansion: P(Z > z) = phi(z) / z * (1 - 1/z^2 + 3/z^4 - 15/z^6
    // + 105/z^8 - 945/z^10 + ...). At z > 35 the first omitted term is below 1e-14.
    let inv_z2 = 1.0 / (z * z);
    let series = 1.0
        + inv_z2 * (-1.0 + inv_z2 * (3.0 + inv_z2 * (-15.0 + inv_z2 * (105.0 - 945.0 * inv_z2))));
    let ln_two_pi = (2.0 * std::f64::consts::PI).ln();
    -0.5 * z * z - z.ln() - 0.5 * ln_two_pi + series.ln()
}

/// Standard normal survival function `P(Z > z)` for `z >= 0`.
///
/// statrs' `erfc` is only accurate to about 1e-10 relative, while its regularized
/// upper incomplete gamma function, `P(Z > z) = Q(1/2, z^2 / 2) / 2`, is accurate
/// to about 1e-14 (checked against 30-digit values), so the gamma form is used
/// wherever it is defined; `erfc` is kept for `z` near 0, where it is exact enough
/// and the gamma form has no advantage.
fn normal_sf(z: f64) -> f64 {
    if z > 0.5
        && let Ok(upper_tail) = checked_gamma_ur(0.5, 0.5 * z * z)
    {
        return 0.5 * upper_tail;
    }
    0.5 * erfc(z / std::f64::consts::SQRT_2)
}

/// Wilson score interval for one proportion, without continuity correction,
/// clipped to [0, 1] against rounding (it lies there mathematically).
fn wilson_interval(counts: Counts, critical_z: f64) -> (f64, f64) {
    let n = counts.total as f64;
    let p = rate(counts);
    let z2 = critical_z * critical_z;
    let denominator = 1.0 + z2 / n;
    let center = (p + z2 / (2.0 * n)) / denominator;
    let half_width = critical_z * (p * (1.0 - p) / n + z2 / (4.0 * n * n)).sqrt() / denominator;
    (
        (center - half_width).clamp(0.0, 1.0),
        (center + half_width).clamp(0.0, 1.0),
    )
}

/// Newcombe's hybrid score interval (his method 10) for `canary_rate - baseline_rate`.
fn newcombe_difference_interval(baseline: Counts, canary: Counts, critical_z: f64) -> (f64, f64) {
    let canary_rate = rate(canary);
    let baseline_rate = rate(baseline);
    let (canary_low, canary_high) = wilson_interval(canary, critical_z);
    let (baseline_low, baseline_high) = wilson_interval(baseline, critical_z);
    let difference = canary_rate - baseline_rate;
    let below =
        ((canary_rate - canary_low).powi(2) + (baseline_high - baseline_rate).powi(2)).sqrt();
    let above =
        ((canary_high - canary_rate).powi(2) + (baseline_rate - baseline_low).powi(2)).sqrt();
    // Mathematically inside [-1, 1]; the clamp only guards against rounding.
    (
        (difference - below).clamp(-1.0, 1.0),
        (difference + above).clamp(-1.0, 1.0),
    )
}

/// Katz log interval for `canary_rate / baseline_rate`, with Haldane's 0.5 added
/// to every cell when any cell is 0.
fn katz_ratio_interval(baseline: Counts, canary: Counts, critical_z: f64) -> Option<(f64, f64)> {
    if baseline.events == 0 && canary.events == 0 {
        return None;
    }
    let any_zero_cell = baseline.events == 0
        || canary.events == 0
        || baseline.events == baseline.total
        || canary.events == canary.total;
    // Adding 0.5 to both the event and the non-event cell adds 1 to the total.
    let (cell_correction, total_correction) = if any_zero_cell {
        (0.5, 1.0)
    } else {
        (0.0, 0.0)
    };
    let canary_events = canary.events as f64 + cell_correction;
    let canary_total = canary.total as f64 + total_correction;
    let baseline_events = baseline.events as f64 + cell_correction;
    let baseline_total = baseline.total as f64 + total_correction;

    let ln_ratio = (canary_events / canary_total).ln() - (baseline_events / baseline_total).ln();
    let variance = (1.0 / canary_events - 1.0 / canary_total + 1.0 / baseline_events
        - 1.0 / baseline_total)
        .max(0.0);
    let half_width = critical_z * variance.sqrt();
    Some(((ln_ratio - half_width).exp(), (ln_ratio + half_width).exp()))
}

/// A running `ln(sum(exp(terms)))` that never overflows or underflows.
#[derive(Debug, Clone, Copy)]
struct LogSumExp {
    largest: f64,
    scaled_sum: f64,
}

impl LogSumExp {
    fn new() -> Self {
        Self {
            largest: f64::NEG_INFINITY,
            scaled_sum: 0.0,
        }
    }

    fn add(&mut self, ln_term: f64) {
        self.add_scaled(ln_term, 1.0);
    }

    fn merged(mut self, other: &Self) -> Self {
        if other.scaled_sum > 0.0 {
            self.add_scaled(other.largest, other.scaled_sum);
        }
        self
    }

    /// Adds `scaled_sum * exp(largest)`, another running sum.
    fn add_scaled(&mut self, largest: f64, scaled_sum: f64) {
        if largest > self.largest {
            self.scaled_sum = self.scaled_sum * (self.largest - largest).exp() + scaled_sum;
            self.largest = largest;
        } else {
            self.scaled_sum += scaled_sum * (largest - self.largest).exp();
        }
    }

    /// `ln` of the sum; negative infinity for an empty sum.
    fn ln(&self) -> f64 {
        self.largest + self.scaled_sum.ln()
    }
}

/// Fisher's exact test on validated counts, returning `(p, ln p)`.
fn fisher_exact_with_ln(baseline: Counts, canary: Counts, alternative: Alternative) -> (f64, f64) {
    // u128 so that sums of two u64 totals cannot overflow.
    let canary_total = u128::from(canary.total);
    let baseline_total = u128::from(baseline.total);
    let events = u128::from(canary.events) + u128::from(baseline.events);
    let observed = u128::from(canary.events);
    let support_low = events.saturating_sub(baseline_total);
    let support_high = events.min(canary_total);

    // ln(P(X = x + 1) / P(X = x)) for the canary event count X; x + 1 <= support_high.
    // `baseline_total + x - events` is the baseline's non-events when the canary has
    // x events, non-negative on the support.
    let ln_step_up = |x: u128| -> f64 {
        let numerator = (events - x) as f64 * (canary_total - x) as f64;
        let denominator = (x + 1) as f64 * (baseline_total + x + 1 - events) as f64;
        (numerator / denominator).ln()
    };

    // Start at (approximately) the mode; an off-by-one start only means the first
    // step may go uphill, which the stopping rule below tolerates.
    let grand_total = canary_total + baseline_total;
    let approximate_mode =
        ((canary_total + 1) as f64 * (events + 1) as f64 / (grand_total + 2) as f64).floor();
    let start = (approximate_mode as u128).clamp(support_low, support_high);

    // Log-probability of the observed table relative to the start.
    let mut ln_observed = 0.0;
    if observed >= start {
        for x in start..observed {
            ln_observed += ln_step_up(x);
        }
    } else {
        for x in (observed..start).rev() {
            ln_observed -= ln_step_up(x);
        }
    }

    let two_sided_threshold = ln_observed + FISHER_RELATIVE_TOLERANCE.ln_1p();
    // Every sum includes a term at least as large as min(ln_observed, 0), so terms
    // below this are negligible; past the mode terms only decrease, so walks stop there.
    let cutoff = ln_observed.min(0.0) - NEGLIGIBLE_LN_GAP;

    let mut total = LogSumExp::new();
    // Each p-value is a sum over a set of tables; the complement of the set is kept
    // too, because a p-value close to 1 is more accurate as 1 minus its complement.
    let mut below_observed = LogSumExp::new();
    let mut at_observed = LogSumExp::new();
    let mut above_observed = LogSumExp::new();
    let mut no_more_probable = LogSumExp::new();
    let mut more_probable = LogSumExp::new();
    let mut visit = |x: u128, ln_weight: f64| {
        total.add(ln_weight);
        match x.cmp(&observed) {
            Ordering::Less => below_observed.add(ln_weight),
            Ordering::Equal => at_observed.add(ln_weight),
            Ordering::Greater => above_observed.add(ln_weight),
        }
        if ln_weight <= two_sided_threshold {
            no_more_probable.add(ln_weight);
        } else {
            more_probable.add(ln_weight);
        }
    };

    visit(start, 0.0);
    // The walks repeat the summation order used for `ln_observed`, so the observed
    // table gets bit-for-bit the same weight as above.
    let mut x = start;
    let mut ln_weight = 0.0;
    while x < support_high {
        ln_weight += ln_step_up(x);
        x += 1;
        if ln_weight < cutoff {
            break;
        }
        visit(x, ln_weight);
    }
    let mut x = start;
    let mut ln_weight = 0.0;
    while x > support_low {
        x -= 1;
        ln_weight -= ln_step_up(x);
        if ln_weight < cutoff {
            break;
        }
        visit(x, ln_weight);
    }

    let (selected, complement) = match alternative {
        Alternative::Greater => (above_observed.merged(&at_observed), below_observed),
        Alternative::Less => (below_observed.merged(&at_observed), above_observed),
        Alternative::TwoSided => (no_more_probable, more_probable),
    };
    let ln_total = total.ln();
    let ln_selected_share = selected.ln() - ln_total;
    let ln_p = if ln_selected_share > -std::f64::consts::LN_2 {
        (-(complement.ln() - ln_total).exp()).ln_1p()
    } else {
        ln_selected_share
    }
    .min(0.0);
    (ln_p.exp(), ln_p)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts(events: u64, total: u64) -> Counts {
        Counts { events, total }
    }

    #[test]
    fn empty_sides_are_reported_by_name() {
        assert_eq!(
            fisher_exact(counts(0, 0), counts(1, 10), Alternative::TwoSided),
            Err(StatsError::EmptySample { side: "baseline" })
        );
        assert_eq!(
            two_proportion_z_test(counts(1, 10), counts(0, 0), Alternative::TwoSided),
            Err(StatsError::EmptySample { side: "canary" })
        );
    }

    #[test]
    fn more_events_than_trials_names_the_side() {
        let error = compare_proportions(counts(1, 10), counts(11, 10), 0.95, Alternative::TwoSided)
            .unwrap_err();
        match error {
            StatsError::InvalidCounts(message) => assert!(message.contains("canary")),
            other => panic!("unexpected error {other:?}"),
        }
    }

    #[test]
    fn confidence_levels_outside_the_open_unit_interval_are_rejected() {
        for level in [0.0, 1.0, -0.5, 1.5, f64::NAN] {
            let result =
                compare_proportions(counts(1, 10), counts(2, 10), level, Alternative::TwoSided);
            assert!(matches!(result, Err(StatsError::InvalidConfidenceLevel(_))));
        }
    }

    #[test]
    fn both_rates_zero_give_no_evidence() {
        let result = compare_proportions(
            counts(0, 1000),
            counts(0, 1000),
            0.95,
            Alternative::TwoSided,
        )
        .unwrap();
        assert_eq!(result.test, ProportionTest::FisherExact);
        assert_eq!(result.p_value, 1.0);
        assert_eq!(result.ln_p_value, 0.0);
        assert_eq!(result.difference, 0.0);
        assert_eq!(result.ratio, None);
        assert_eq!(result.ratio_ci, None);
        assert_eq!(
            two_proportion_z_test(counts(0, 10), counts(0, 20), Alternative::Greater).unwrap(),
            (0.0, 1.0, 0.0)
        );
        assert_eq!(
            two_proportion_z_test(counts(10, 10), counts(20, 20), Alternative::Less).unwrap(),
            (0.0, 1.0, 0.0)
        );
    }

    #[test]
    fn few_expected_events_use_fisher_and_many_use_the_z_test() {
        let rare = compare_proportions(
            counts(0, 2_000_000),
            counts(3, 2_000_000),
            0.95,
            Alternative::Greater,
        )
        .unwrap();
        assert_eq!(rare.test, ProportionTest::FisherExact);
        assert_eq!(rare.z, None);
        let common = compare_proportions(
            counts(50, 1000),
            counts(80, 1000),
            0.95,
            Alternative::Greater,
        )
        .unwrap();
        assert_eq!(common.test, ProportionTest::ZTest);
        assert!(common.z.unwrap() > 0.0);
    }

    #[test]
    fn fisher_with_huge_totals_and_few_events_is_exact() {
        // Three events among 4,000,000 trials split evenly: P(all three on the
        // canary) = C(2e6,3) / C(4e6,3), and the two-sided p doubles it.
        let n = 2_000_000.0_f64;
        let all_on_canary =
            (n * (n - 1.0) * (n - 2.0)) / (2.0 * n * (2.0 * n - 1.0) * (2.0 * n - 2.0));
        let greater = fisher_exact(
            counts(0, 2_000_000),
            counts(3, 2_000_000),
            Alternative::Greater,
        )
        .unwrap();
        let two_sided = fisher_exact(
            counts(0, 2_000_000),
            counts(3, 2_000_000),
            Alternative::TwoSided,
        )
        .unwrap();
        assert!((greater - all_on_canary).abs() <= 1e-13 * all_on_canary);
        assert!((two_sided - 2.0 * all_on_canary).abs() <= 1e-13 * all_on_canary);
    }

    #[test]
    fn fisher_greater_means_the_canary_rate_is_larger() {
        let greater = fisher_exact(counts(1, 100), counts(10, 100), Alternative::Greater).unwrap();
        let less = fisher_exact(counts(1, 100), counts(10, 100), Alternative::Less).unwrap();
        assert!(greater < 0.01);
        assert!(less > 0.99);
    }

    #[test]
    fn fisher_extreme_tables_have_finite_log_p_values() {
        let (p, ln_p) =
            fisher_exact_with_ln(counts(0, 5000), counts(5000, 5000), Alternative::TwoSided);
        assert_eq!(p, 0.0);
        assert!(ln_p.is_finite() && ln_p < -6000.0);
    }

    #[test]
    fn z_test_log_p_value_stays_finite_for_huge_z() {
        let (z, p, ln_p) = two_proportion_z_test(
            counts(0, 1_000_000),
            counts(500_000, 1_000_000),
            Alternative::Greater,
        )
        .unwrap();
        assert!(z > 500.0);
        assert_eq!(p, 0.0);
        assert!(ln_p.is_finite() && ln_p < -100_000.0);
    }

    #[test]
    fn normal_log_tail_is_continuous_at_the_asymptotic_switch() {
        let below = ln_normal_sf(ASYMPTOTIC_TAIL_THRESHOLD);
        let above = ln_normal_sf(ASYMPTOTIC_TAIL_THRESHOLD + 1e-9);
        assert!((below - above).abs() < 1e-6, "{below} vs {above}");
        // Compare the expansion with erfc where both are accurate.
        let z: f64 = 30.0;
        let inv_z2 = 1.0 / (z * z);
        let series = 1.0
            + inv_z2
                * (-1.0 + inv_z2 * (3.0 + inv_z2 * (-15.0 + inv_z2 * (105.0 - 945.0 * inv_z2))));
        let asymptotic =
            -0.5 * z * z - z.ln() - 0.5 * (2.0 * std::f64::consts::PI).ln() + series.ln();
        assert!((asymptotic - normal_sf(z).ln()).abs() < 1e-11 * z * z);
    }

    #[test]
    fn extreme_counts_do_not_panic() {
        let max = u64::MAX;
        let cases = [
            (counts(0, max), counts(3, max)),
            (counts(max, max), counts(max, max)),
            (counts(1, max), counts(max - 1, max)),
            (counts(0, 1), counts(max, max)),
            (counts(1, 1), counts(0, max)),
        ];
        for (baseline, canary) in cases {
            for alternative in [
                Alternative::TwoSided,
                Alternative::Greater,
                Alternative::Less,
            ] {
                let result = compare_proportions(baseline, canary, 0.95, alternative).unwrap();
                assert!((0.0..=1.0).contains(&result.p_value), "{result:?}");
                assert!(result.ln_p_value <= 0.0, "{result:?}");
            }
        }
    }

    #[test]
    fn haldane_correction_keeps_the_ratio_interval_finite() {
        let result = compare_proportions(
            counts(0, 1000),
            counts(4, 1000),
            0.95,
            Alternative::TwoSided,
        )
        .unwrap();
        assert_eq!(result.ratio, None);
        let (low, high) = result.ratio_ci.unwrap();
        assert!(low > 0.0 && high.is_finite() && low < high);
    }
}

/// Agreement with `fixtures/reference/proportions.json`, produced by
/// `fixtures/reference/proportions.py` from statsmodels, scipy and exact rational
/// arithmetic.
#[cfg(test)]
mod reference_tests {
    use super::*;
    use serde_json::Value;

    const REFERENCE: &str = include_str!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/fixtures/reference/proportions.json"
    ));

    /// Relative tolerance for every reference value.
    const RELATIVE_TOLERANCE: f64 = 1e-9;
    /// Absolute floor for rates, differences and interval bounds. These live in
    /// [-1, 1] and are often differences of nearly equal numbers (a Newcombe bound
    /// next to 0, a Wilson bound clipped at 0), where a relative comparison would
    /// judge rounding noise; 1e-12 is far below any decision threshold.
    const ABSOLUTE_FLOOR: f64 = 1e-12;

    fn reference() -> Value {
        serde_json::from_str(REFERENCE).expect("the reference JSON parses")
    }

    fn assert_close(actual: f64, expected: f64, what: &str) {
        let allowed = (RELATIVE_TOLERANCE * actual.abs().max(expected.abs())).max(ABSOLUTE_FLOOR);
        assert!(
            (actual - expected).abs() <= allowed || actual == expected,
            "{what}: got {actual:e}, reference {expected:e}"
        );
    }

    fn counts_of(value: &Value) -> Counts {
        Counts {
            events: value[0].as_u64().unwrap(),
            total: value[1].as_u64().unwrap(),
        }
    }

    fn alternative_of(value: &Value) -> Alternative {
        match value.as_str().unwrap() {
            "two_sided" => Alternative::TwoSided,
            "greater" => Alternative::Greater,
            "less" => Alternative::Less,
            other => panic!("unknown alternative {other}"),
        }
    }

    fn pair_of(value: &Value) -> (f64, f64) {
        (value[0].as_f64().unwrap(), value[1].as_f64().unwrap())
    }

    #[test]
    fn z_tests_match_statsmodels() {
        let reference = reference();
        let cases = reference["z_tests"].as_array().unwrap();
        assert!(cases.len() >= 30);
        for case in cases {
            let what = format!("{case}");
            let (z, p, ln_p) = two_proportion_z_test(
                counts_of(&case["baseline"]),
                counts_of(&case["canary"]),
                alternative_of(&case["alternative"]),
            )
            .unwrap();
            assert_close(z, case["z"].as_f64().unwrap(), &format!("z of {what}"));
            assert_close(p, case["p"].as_f64().unwrap(), &format!("p of {what}"));
            assert_close(
                ln_p,
                case["ln_p"].as_f64().unwrap(),
                &format!("ln p of {what}"),
            );
        }
    }

    #[test]
    fn fisher_exact_matches_exact_rational_arithmetic() {
        let reference = reference();
        let cases = reference["fisher"].as_array().unwrap();
        assert!(cases.len() >= 60);
        for case in cases {
            let what = format!("{case}");
            let (p, ln_p) = fisher_exact_with_ln(
                counts_of(&case["baseline"]),
                counts_of(&case["canary"]),
                alternative_of(&case["alternative"]),
            );
            assert_close(p, case["p"].as_f64().unwrap(), &format!("p of {what}"));
            assert_close(
                ln_p,
                case["ln_p"].as_f64().unwrap(),
                &format!("ln p of {what}"),
            );
            let public = fisher_exact(
                counts_of(&case["baseline"]),
                counts_of(&case["canary"]),
                alternative_of(&case["alternative"]),
            )
            .unwrap();
            assert_eq!(public, p);
        }
    }

    #[test]
    fn comparisons_match_the_reference() {
        let reference = reference();
        let cases = reference["comparisons"].as_array().unwrap();
        assert!(cases.len() >= 15);
        for case in cases {
            let what = format!("{case}");
            let result = compare_proportions(
                counts_of(&case["baseline"]),
                counts_of(&case["canary"]),
                case["confidence_level"].as_f64().unwrap(),
                alternative_of(&case["alternative"]),
            )
            .unwrap();
            let expected_test = match case["test"].as_str().unwrap() {
                "z_test" => ProportionTest::ZTest,
                _ => ProportionTest::FisherExact,
            };
            assert_eq!(result.test, expected_test, "{what}");
            assert_close(
                result.baseline_rate,
                case["baseline_rate"].as_f64().unwrap(),
                &what,
            );
            assert_close(
                result.canary_rate,
                case["canary_rate"].as_f64().unwrap(),
                &what,
            );
            assert_close(
                result.difference,
                case["difference"].as_f64().unwrap(),
                &what,
            );
            let (low, high) = pair_of(&case["difference_ci"]);
            assert_close(
                result.difference_ci.0,
                low,
                &format!("difference low of {what}"),
            );
            assert_close(
                result.difference_ci.1,
                high,
                &format!("difference high of {what}"),
            );
            match (result.ratio, case["ratio"].as_f64()) {
                (Some(actual), Some(expected)) => assert_close(actual, expected, &what),
                (actual, expected) => assert_eq!(actual, expected, "ratio of {what}"),
            }
            match (result.ratio_ci, case["ratio_ci"].is_null()) {
                (Some((actual_low, actual_high)), false) => {
                    let (low, high) = pair_of(&case["ratio_ci"]);
                    assert_close(actual_low, low, &format!("ratio low of {what}"));
                    assert_close(actual_high, high, &format!("ratio high of {what}"));
                }
                (None, true) => {}
                (actual, _) => panic!("ratio interval of {what}: got {actual:?}"),
            }
            match (result.z, case["z"].as_f64()) {
                (Some(actual), Some(expected)) => assert_close(actual, expected, &what),
                (actual, expected) => assert_eq!(actual, expected, "z of {what}"),
            }
            assert_close(
                result.p_value,
                case["p"].as_f64().unwrap(),
                &format!("p of {what}"),
            );
            assert_close(
                result.ln_p_value,
                case["ln_p"].as_f64().unwrap(),
                &format!("ln p of {what}"),
            );
        }
    }
}

#[cfg(test)]
mod property_tests {
    use super::*;
    use proptest::prelude::*;

    /// Relative slack for comparing two computations of the same quantity that
    /// take different rounding paths (for example Fisher's sums walked from the
    /// other side after swapping baseline and canary).
    const RELATIVE_SLACK: f64 = 1e-9;

    fn close(left: f64, right: f64) -> bool {
        (left - right).abs() <= RELATIVE_SLACK * left.abs().max(right.abs()).max(1e-300)
    }

    /// Counts with up to a few thousand trials, any event count.
    fn small_counts() -> impl Strategy<Value = Counts> {
        (1_u64..=3000)
            .prop_flat_map(|total| (0..=total).prop_map(move |events| Counts { events, total }))
    }

    /// Rare events among up to a few million trials, the typical error-rate shape.
    fn rare_event_counts() -> impl Strategy<Value = Counts> {
        (1_u64..=3_000_000).prop_flat_map(|total| {
            (0..=total.min(40)).prop_map(move |events| Counts { events, total })
        })
    }

    fn any_counts() -> impl Strategy<Value = Counts> {
        prop_oneof![small_counts(), rare_event_counts()]
    }

    fn any_alternative() -> impl Strategy<Value = Alternative> {
        prop_oneof![
            Just(Alternative::TwoSided),
            Just(Alternative::Greater),
            Just(Alternative::Less)
        ]
    }

    fn mirrored(alternative: Alternative) -> Alternative {
        match alternative {
            Alternative::TwoSided => Alternative::TwoSided,
            Alternative::Greater => Alternative::Less,
            Alternative::Less => Alternative::Greater,
        }
    }

    proptest! {
        #[test]
        fn p_values_are_probabilities_with_finite_logarithms(
            baseline in any_counts(),
            canary in any_counts(),
            alternative in any_alternative(),
        ) {
            let result = compare_proportions(baseline, canary, 0.95, alternative).unwrap();
            prop_assert!((0.0..=1.0).contains(&result.p_value));
            prop_assert!(result.ln_p_value.is_finite() && result.ln_p_value <= 0.0);
            let fisher = fisher_exact(baseline, canary, alternative).unwrap();
            prop_assert!((0.0..=1.0).contains(&fisher));
            let (_, z_p, z_ln_p) = two_proportion_z_test(baseline, canary, alternative).unwrap();
            prop_assert!((0.0..=1.0).contains(&z_p));
            prop_assert!(z_ln_p.is_finite() && z_ln_p <= 0.0);
        }

        #[test]
        fn the_difference_interval_contains_the_difference_and_stays_in_range(
            baseline in any_counts(),
            canary in any_counts(),
            confidence_level in 0.5_f64..0.9999,
        ) {
            let result = compare_proportions(baseline, canary, confidence_level, Alternative::TwoSided).unwrap();
            let (low, high) = result.difference_ci;
            prop_assert!(-1.0 <= low && low <= result.difference, "{result:?}");
            prop_assert!(result.difference <= high && high <= 1.0, "{result:?}");
        }

        #[test]
        fn the_ratio_interval_is_positive_and_contains_the_ratio_without_zero_cells(
            baseline in any_counts(),
            canary in any_counts(),
            confidence_level in 0.5_f64..0.9999,
        ) {
            let result = compare_proportions(baseline, canary, confidence_level, Alternative::TwoSided).unwrap();
            prop_assert_eq!(result.ratio_ci.is_none(), baseline.events == 0 && canary.events == 0);
            if let Some((low, high)) = result.ratio_ci {
                prop_assert!(low > 0.0 && low <= high && high.is_finite(), "{result:?}");
                let no_zero_cell = [baseline, canary]
                    .iter()
                    .all(|side| side.events > 0 && side.events < side.total);
                if let (Some(ratio), true) = (result.ratio, no_zero_cell) {
                    prop_assert!(low <= ratio && ratio <= high, "{result:?}");
                }
            }
        }

        #[test]
        fn swapping_the_sides_mirrors_every_directional_quantity(
            baseline in any_counts(),
            canary in any_counts(),
            alternative in any_alternative(),
        ) {
            let forward = compare_proportions(baseline, canary, 0.95, alternative).unwrap();
            let swapped = compare_proportions(canary, baseline, 0.95, mirrored(alternative)).unwrap();
            prop_assert_eq!(forward.test, swapped.test);
            prop_assert_eq!(swapped.difference, -forward.difference);
            prop_assert!(close(swapped.difference_ci.0, -forward.difference_ci.1));
            prop_assert!(close(swapped.difference_ci.1, -forward.difference_ci.0));
            match (forward.ratio_ci, swapped.ratio_ci) {
                (Some((low, high)), Some((swapped_low, swapped_high))) => {
                    prop_assert!(close(swapped_low, 1.0 / high), "{forward:?} {swapped:?}");
                    prop_assert!(close(swapped_high, 1.0 / low), "{forward:?} {swapped:?}");
                }
                (None, None) => {}
                _ => prop_assert!(false, "{forward:?} {swapped:?}"),
            }
            if let (Some(ratio), Some(swapped_ratio)) = (forward.ratio, swapped.ratio) {
                prop_assert!(close(swapped_ratio, 1.0 / ratio));
            }
            prop_assert!(close(forward.p_value, swapped.p_value), "{forward:?} {swapped:?}");
            // Logarithms are compared on an absolute scale: ln p next to 0 is
            // a difference of nearly equal sums.
            prop_assert!(
                (forward.ln_p_value - swapped.ln_p_value).abs()
                    <= 1e-12 + RELATIVE_SLACK * forward.ln_p_value.abs(),
                "{forward:?} {swapped:?}"
            );
        }

        #[test]
        fn fisher_two_sided_is_at_least_the_one_sided_p_in_the_observed_direction(
            baseline in any_counts(),
            canary in any_counts(),
        ) {
            let canary_is_higher = u128::from(canary.events) * u128::from(baseline.total)
                >= u128::from(baseline.events) * u128::from(canary.total);
            let observed_direction = if canary_is_higher { Alternative::Greater } else { Alternative::Less };
            let one_sided = fisher_exact(baseline, canary, observed_direction).unwrap();
            let two_sided = fisher_exact(baseline, canary, Alternative::TwoSided).unwrap();
            prop_assert!(two_sided >= one_sided * (1.0 - RELATIVE_SLACK), "{two_sided} < {one_sided}");
        }
    }
}

/// One-sided p-value that the true rate behind `counts` is above (`Greater`) or below
/// (`Less`) `limit`: the exact binomial tail of the observed events among the trials
/// (`TwoSided` is read as `Greater`). Used where a plan compares a rate with an absolute
/// limit: a few errors among few requests are no evidence of a rate above it.
pub fn rate_beyond_limit_p_value(counts: Counts, limit: f64, alternative: Alternative) -> f64 {
    use statrs::distribution::{Binomial, DiscreteCDF};
    let (events, trials) = (counts.events.min(counts.total), counts.total);
    let above = !matches!(alternative, Alternative::Less);
    if trials == 0 || !limit.is_finite() {
        return 1.0;
    }
    if limit <= 0.0 {
        // Any event at all proves a rate above zero; nothing proves one below it.
        return if above && events > 0 { 0.0 } else { 1.0 };
    }
    if limit >= 1.0 {
        return if !above && events < trials { 0.0 } else { 1.0 };
    }
    let Ok(binomial) = Binomial::new(limit, trials) else {
        return 1.0;
    };
    if above {
        // P(X >= events) = 1 - P(X <= events - 1).
        if events == 0 {
            1.0
        } else {
            binomial.sf(events - 1)
        }
    } else {
        binomial.cdf(events)
    }
}

#[cfg(test)]
mod limit_tests {
    use super::*;

    #[test]
    fn a_rate_beyond_a_limit_needs_enough_events_to_show() {
        let few = Counts {
            events: 3,
            total: 250,
        };
        assert!(rate_beyond_limit_p_value(few, 0.01, Alternative::Greater) > 0.4);
        let many = Counts {
            events: 300,
            total: 10_000,
        };
        assert!(rate_beyond_limit_p_value(many, 0.02, Alternative::Greater) < 1e-9);
        // P(X >= 3 | n = 10, p = 0.1) = 0.0701908264 (R: pbinom(2, 10, 0.1, lower.tail = FALSE)).
        let exact = rate_beyond_limit_p_value(
            Counts {
                events: 3,
                total: 10,
            },
            0.1,
            Alternative::Greater,
        );
        assert!((exact - 0.070_190_826_4).abs() < 1e-9, "{exact}");
        // P(X <= 1 | n = 10, p = 0.5) = 0.0107421875.
        let below = rate_beyond_limit_p_value(
            Counts {
                events: 1,
                total: 10,
            },
            0.5,
            Alternative::Less,
        );
        assert!((below - 0.010_742_187_5).abs() < 1e-12, "{below}");
        assert_eq!(
            rate_beyond_limit_p_value(
                Counts {
                    events: 1,
                    total: 10
                },
                0.0,
                Alternative::Greater
            ),
            0.0
        );
    }
}
