//! The statistics of Kayenta's `NetflixACAJudge-v1.0`, reproduced for
//! `[judge] algorithm = "kayenta"`, so that teams moving from Kayenta see the verdicts
//! they know before switching to canary's own judge.
//!
//! What Kayenta computes, and so what this module computes (canary's own judge in
//! [`super::hodges_lehmann`] does these things differently, on purpose):
//! - the Hodges-Lehmann estimate and confidence interval of `canary − baseline` are
//!   the roots of the **normal approximation** of the Wilcoxon statistic with
//!   continuity correction and tie correction, whatever the sample sizes (R's
//!   `wilcox.test(exact = FALSE, correct = TRUE, conf.int = TRUE)`), found by Brent's
//!   method with an **absolute** tolerance of `1e-4` in the metric's own unit (a
//!   metric measured in fractions of a unit gets a coarse interval; Kayenta's does
//!   too);
//! - effect sizes are the **ratio of means** (canary over baseline; undefined when
//!   either mean is 0) or the common-language effect size;
//! - outliers are removed outside `min(p1, Q1 − k·IQR)` and `max(p99, Q3 + k·IQR)`
//!   with R-7 percentiles ("reduced sensitivity");
//! - two sides that each hold one distinct value get Gaussian noise of standard
//!   deviation `value × 1e-5` before the test. Kayenta draws it at random; here it is
//!   drawn from a fixed seed, so a judgement is repeatable.
//!
//! Pure: no I/O, no clocks, no global randomness.

use super::StatsError;

/// Brent's method gives up after this many steps (Kayenta's limit; it then returns
/// its last estimate, as here).
const MAX_ITERATIONS: usize = 1000;

/// Absolute tolerance of the roots, in the metric's unit (Kayenta's).
const ROOT_TOLERANCE: f64 = 1e-4;

/// The interval and estimate of `experiment − control` as Kayenta's Mann-Whitney
/// computes them.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct KayentaInterval {
    /// Lower end of the interval.
    pub low: f64,
    /// Upper end of the interval.
    pub high: f64,
    /// The location-shift estimate.
    pub estimate: f64,
}

/// The standardized, continuity-corrected Wilcoxon rank-sum statistic of
/// `experiment − mu` against `control`, minus `quantile`: the function whose roots in
/// `mu` are the interval ends (`quantile = ±z`) and the estimate (`quantile = 0`).
/// Both slices must be sorted ascending and free of NaN. `None` when every
/// observation is tied at this shift (the statistic has no spread).
pub fn wilcoxon_difference(
    mu: f64,
    quantile: f64,
    experiment_sorted: &[f64],
    control_sorted: &[f64],
) -> Option<f64> {
    let x_len = experiment_sorted.len() as f64;
    let y_len = control_sorted.len() as f64;
    let (experiment_rank_sum, tie_sum) = rank_sum(experiment_sorted, control_sorted, mu);
    let dz = experiment_rank_sum - x_len * (x_len + 1.0) / 2.0 - x_len * y_len / 2.0;
    // Half a unit towards zero; none at zero (`f64::signum` would give +1 there).
    let correction = if dz > 0.0 {
        0.5
    } else if dz < 0.0 {
        -0.5
    } else {
        0.0
    };
    let sigma = ((x_len * y_len / 12.0)
        * ((x_len + y_len + 1.0) - tie_sum / ((x_len + y_len) * (x_len + y_len - 1.0))))
        .sqrt();
    if sigma == 0.0 || sigma.is_nan() {
        return None;
    }
    Some((dz - correction) / sigma - quantile)
}

/// The rank sum of `experiment − mu` in the pooled sample with `control` (tied values
/// share their average rank), and the tie term `Σ (t³ − t)` over the groups of tied
/// values. Both slices sorted ascending; shifting keeps the experiment sorted (rounding
/// is monotone), so one merge ranks the pooled values.
fn rank_sum(experiment_sorted: &[f64], control_sorted: &[f64], mu: f64) -> (f64, f64) {
    let (mut i, mut j) = (0, 0);
    let mut position = 0.0;
    let mut experiment_rank_sum = 0.0;
    let mut tie_sum = 0.0;
    while i < experiment_sorted.len() || j < control_sorted.len() {
        let next_x = experiment_sorted.get(i).map(|&x| x - mu);
        let next_y = control_sorted.get(j).copied();
        let value = match (next_x, next_y) {
            (Some(x), Some(y)) => x.min(y),
            (Some(x), None) => x,
            (None, Some(y)) => y,
            (None, None) => unreachable!("the loop stops when both are used up"),
        };
        let mut tied_x = 0.0;
        while i < experiment_sorted.len() && experiment_sorted[i] - mu == value {
            tied_x += 1.0;
            i += 1;
        }
        let mut tied = tied_x;
        while j < control_sorted.len() && control_sorted[j] == value {
            tied += 1.0;
            j += 1;
        }
        experiment_rank_sum += tied_x * (position + (tied + 1.0) / 2.0);
        tie_sum += tied * tied * tied - tied;
        position += tied;
    }
    (experiment_rank_sum, tie_sum)
}

/// Kayenta's interval and estimate of `experiment − control` at `confidence_level`.
/// Both slices must be sorted ascending, non-empty and free of NaN.
pub fn kayenta_interval(
    experiment_sorted: &[f64],
    control_sorted: &[f64],
    confidence_level: f64,
) -> Result<KayentaInterval, StatsError> {
    let (Some(&x_min), Some(&x_max)) = (experiment_sorted.first(), experiment_sorted.last()) else {
        return Err(StatsError::EmptySample { side: "canary" });
    };
    let (Some(&y_min), Some(&y_max)) = (control_sorted.first(), control_sorted.last()) else {
        return Err(StatsError::EmptySample { side: "baseline" });
    };
    if !(confidence_level > 0.0 && confidence_level < 1.0) {
        return Err(StatsError::InvalidConfidenceLevel(confidence_level));
    }
    let f = |mu: f64, quantile: f64| {
        wilcoxon_difference(mu, quantile, experiment_sorted, control_sorted)
            .ok_or(StatsError::AllTied)
    };
    let mu_min = x_min - y_max;
    let mu_max = x_max - y_min;
    let z = standard_normal_quantile((1.0 - confidence_level) / 2.0);
    let find_root = |quantile: f64| -> Result<f64, StatsError> {
        let f_lower = f(mu_min, quantile)?;
        let f_upper = f(mu_max, quantile)?;
        if f_lower <= 0.0 {
            Ok(mu_min)
        } else if f_upper >= 0.0 {
            Ok(mu_max)
        } else {
            brent_root(mu_min, mu_max, f_lower, f_upper, |mu| f(mu, quantile))
        }
    };
    let low = find_root(-z)?;
    let high = find_root(z)?;
    let estimate = brent_root(mu_min, mu_max, f(mu_min, 0.0)?, f(mu_max, 0.0)?, |mu| {
        f(mu, 0.0)
    })?;
    Ok(KayentaInterval {
        low,
        high,
        estimate,
    })
}

/// The standard normal quantile as Kayenta's library computes it: `√2 · erf⁻¹(2p − 1)`.
fn standard_normal_quantile(p: f64) -> f64 {
    std::f64::consts::SQRT_2 * statrs::function::erf::erf_inv(2.0 * p - 1.0)
}

/// Whether `value` is zero to within one unit in the last place (how Kayenta tests a
/// function value for an exact root).
fn is_zero(value: f64) -> bool {
    value.abs() <= f64::from_bits(1)
}

/// Brent's root finder (inverse quadratic interpolation, secant and bisection steps)
/// on `[a, b]` given `f(a)` and `f(b)`, to the absolute tolerance Kayenta uses, in the
/// formulation of Brent (1973) that R's `uniroot` and Kayenta share, so the root it
/// returns on a step function (which the rank statistic is) is the same point.
fn brent_root(
    a: f64,
    b: f64,
    f_a: f64,
    f_b: f64,
    mut f: impl FnMut(f64) -> Result<f64, StatsError>,
) -> Result<f64, StatsError> {
    let (mut a, mut b, mut f_a, mut f_b) = (a, b, f_a, f_b);
    let (mut c, mut f_c) = (a, f_a);
    if is_zero(f_a) {
        return Ok(a);
    }
    if is_zero(f_b) {
        return Ok(b);
    }
    for _ in 0..=MAX_ITERATIONS {
        let previous_step = b - a;
        // Keep `b` the best guess so far, `c` on the other side of the root.
        if f_c.abs() < f_b.abs() {
            (a, b, c) = (b, c, b);
            (f_a, f_b, f_c) = (f_b, f_c, f_b);
        }
        let tolerance = 2.0 * f64::EPSILON * b.abs() + ROOT_TOLERANCE / 2.0;
        let mut step = (c - b) / 2.0;
        if step.abs() <= tolerance || is_zero(f_b) {
            return Ok(b);
        }
        if previous_step.abs() >= tolerance && f_a.abs() > f_b.abs() {
            // Interpolate: linearly when only two points are distinct, else through
            // the inverse quadratic of all three.
            let to_c = c - b;
            let (mut p, mut q);
            if a == c {
                let t1 = f_b / f_a;
                p = to_c * t1;
                q = 1.0 - t1;
            } else {
                let q0 = f_a / f_c;
                let t1 = f_b / f_c;
                let t2 = f_b / f_a;
                p = t2 * (to_c * q0 * (q0 - t1) - (b - a) * (t1 - 1.0));
                q = (q0 - 1.0) * (t1 - 1.0) * (t2 - 1.0);
            }
            if p > 0.0 {
                q = -q;
            } else {
                p = -p;
            }
            if p < 0.75 * to_c * q - (tolerance * q).abs() / 2.0
                && p < (previous_step * q / 2.0).abs()
            {
                step = p / q;
            }
        }
        if step.abs() < tolerance {
            step = tolerance.copysign(if step > 0.0 { 1.0 } else { -1.0 });
        }
        a = b;
        f_a = f_b;
        b += step;
        f_b = f(b)?;
        if (f_b > 0.0 && f_c > 0.0) || (f_b < 0.0 && f_c < 0.0) {
            c = a;
            f_c = f_a;
        }
    }
    Ok(b)
}

/// The mean as Kayenta's library computes it: the plain mean plus the mean of the
/// residuals (a second pass that corrects the first one's rounding).
pub fn corrected_mean(values: &[f64]) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    let n = values.len() as f64;
    let mean = values.iter().sum::<f64>() / n;
    let correction: f64 = values.iter().map(|value| value - mean).sum();
    mean + correction / n
}

/// The mean of the experiment over the mean of the control; NaN when either is 0.
pub fn mean_ratio(control: &[f64], experiment: &[f64]) -> f64 {
    let control_mean = corrected_mean(control);
    let experiment_mean = corrected_mean(experiment);
    if control_mean == 0.0 || experiment_mean == 0.0 {
        f64::NAN
    } else {
        experiment_mean / control_mean
    }
}

/// The common-language effect size: the chance that an experiment value exceeds a
/// control value, ties counting half (0.5: no difference).
pub fn common_language_effect_size(control: &[f64], experiment: &[f64]) -> f64 {
    let mut experiment_sorted = experiment.to_vec();
    let mut control_sorted = control.to_vec();
    super::sort::sort_f64(&mut experiment_sorted);
    super::sort::sort_f64(&mut control_sorted);
    let m = experiment.len() as f64;
    let n = control.len() as f64;
    let (experiment_rank_sum, _) = rank_sum(&experiment_sorted, &control_sorted, 0.0);
    (2.0 * experiment_rank_sum - m * (m + 1.0)) / (2.0 * n * m)
}

/// The `p`-th percentile (0–100) of sorted values, R-7 (linear between order
/// statistics, as Kayenta's percentiles are); NaN when empty.
pub fn percentile_r7(sorted: &[f64], p: f64) -> f64 {
    let n = sorted.len();
    if n == 0 {
        return f64::NAN;
    }
    if n == 1 {
        return sorted[0];
    }
    let position = if p >= 100.0 {
        n as f64
    } else {
        1.0 + (n as f64 - 1.0) * p / 100.0
    };
    let floor = position.floor();
    let lower = sorted[(floor as usize).clamp(1, n) - 1];
    let upper = sorted[((floor as usize) + 1).clamp(1, n) - 1];
    lower + (position - floor) * (upper - lower)
}

/// Kayenta's outlier fences with reduced sensitivity: values below
/// `min(p1, Q1 − factor·IQR)` or above `max(p99, Q3 + factor·IQR)` are outliers.
pub fn reduced_sensitivity_fences(sorted: &[f64], factor: f64) -> (f64, f64) {
    let q1 = percentile_r7(sorted, 25.0);
    let q3 = percentile_r7(sorted, 75.0);
    let iqr = q3 - q1;
    let lower = percentile_r7(sorted, 1.0).min(q1 - factor * iqr);
    let upper = percentile_r7(sorted, 99.0).max(q3 + factor * iqr);
    (lower, upper)
}

/// Adds the Gaussian noise Kayenta adds to a side that holds one distinct value
/// (standard deviation `value × 1e-5`), from a fixed seed so the result repeats.
pub fn add_tie_breaking_noise(values: &mut [f64], seed: u64) {
    let Some(&first) = values.first() else {
        return;
    };
    let deviation = first * 1e-5;
    let mut state = seed | 1;
    let mut uniform = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        ((state >> 11) + 1) as f64 / (1u64 << 53) as f64
    };
    for value in values.iter_mut() {
        let radius = (-2.0 * uniform().ln()).sqrt();
        let angle = 2.0 * std::f64::consts::PI * uniform();
        *value += deviation * radius * angle.cos();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_follow_r7() {
        let sorted = [1.0, 2.0, 3.0, 4.0, 10.0];
        assert_eq!(percentile_r7(&sorted, 50.0), 3.0);
        assert_eq!(percentile_r7(&sorted, 25.0), 2.0);
        assert_eq!(percentile_r7(&sorted, 100.0), 10.0);
        // R: quantile(c(1,2,3,4,10), 0.9) = 7.6
        assert!((percentile_r7(&sorted, 90.0) - 7.6).abs() < 1e-12);
        assert!(percentile_r7(&[], 50.0).is_nan());
    }

    #[test]
    fn the_interval_matches_r_wilcox_test_without_exact_distribution() {
        // R: wilcox.test(x, y, conf.int = TRUE, exact = FALSE, conf.level = 0.95),
        // whose uniroot has Kayenta's tolerance of 1e-4.
        let mut x = vec![3.0, 4.0, 5.0, 6.0, 7.0, 8.0];
        let mut y = vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0];
        crate::stats::sort::sort_f64(&mut x);
        crate::stats::sort::sort_f64(&mut y);
        // R 4.2.2 gives [-0.999964662887211, 4.999964662887214] and 2.
        let interval = kayenta_interval(&x, &y, 0.95).unwrap();
        assert!(
            (interval.low - -0.999_964_662_887_211).abs() < 1e-9,
            "{interval:?}"
        );
        assert!(
            (interval.high - 4.999_964_662_887_214).abs() < 1e-9,
            "{interval:?}"
        );
        assert!((interval.estimate - 2.0).abs() < 1e-9, "{interval:?}");
    }

    #[test]
    fn a_shift_with_no_spread_is_refused_not_divided_by_zero() {
        assert_eq!(
            wilcoxon_difference(0.0, 0.0, &[1.0, 1.0], &[1.0, 1.0]),
            None
        );
    }

    #[test]
    fn mean_ratio_is_undefined_at_a_zero_mean() {
        assert!(mean_ratio(&[0.0, 0.0], &[1.0]).is_nan());
        assert_eq!(mean_ratio(&[1.0, 3.0], &[4.0]), 2.0);
    }

    #[test]
    fn common_language_effect_size_counts_ties_half() {
        assert_eq!(common_language_effect_size(&[1.0], &[2.0]), 1.0);
        assert_eq!(common_language_effect_size(&[2.0], &[1.0]), 0.0);
        assert_eq!(common_language_effect_size(&[1.0], &[1.0]), 0.5);
    }

    #[test]
    fn noise_is_repeatable_and_small() {
        let mut a = vec![10.0; 5];
        let mut b = vec![10.0; 5];
        add_tie_breaking_noise(&mut a, 7);
        add_tie_breaking_noise(&mut b, 7);
        assert_eq!(a, b);
        assert!(a.iter().all(|v| (v - 10.0).abs() < 1e-2));
        assert!(a.windows(2).any(|w| w[0] != w[1]));
    }
}
