//! A look's series, kept small for the report's charts.
//!
//! A rollout's look is recorded with the judge's numbers, which are exact, and with a
//! [`LookSeries`]: per metric and side, the points that arrived since the previous look
//! (so a rollout's looks together cover its whole history once), downsampled to at
//! most [`MAX_POINTS_PER_LOOK`] points with each bucket's minimum and maximum kept, so a
//! spike survives, plus the values at [`DISTRIBUTION_RANKS`] evenly spaced ranks, so the
//! report can draw the distribution without the bias a min/max-downsampled set would
//! give it. Count data is kept as the per-point rate `errors / total`.
//!
//! This is a drawing aid, not data to judge: values keep [`SIGNIFICANT_DIGITS`]
//! significant digits (a chart 200 pixels high shows three), times are offsets from the
//! look's start, and nothing here ever feeds a statistic. No I/O, no clock.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{MetricData, Observations};

/// Most time points kept per metric, side and look.
pub const MAX_POINTS_PER_LOOK: usize = 60;

/// How many values at evenly spaced ranks describe a side's distribution at one look
/// (every value when there are no more than this): rank steps of 2.5 %, so the CDF
/// drawn from them is within 2.5 % of the exact one.
pub const DISTRIBUTION_RANKS: usize = 41;

/// Significant digits kept of each value.
pub const SIGNIFICANT_DIGITS: usize = 5;

/// The downsampled series of one look.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LookSeries {
    /// The previous look's time (or the stage's start), Unix seconds: the points are
    /// those after it, up to and including the look's time.
    pub from: f64,
    /// Metric name → both sides.
    #[serde(default)]
    pub metrics: BTreeMap<String, MetricSeries>,
}

/// One metric's series at one look.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MetricSeries {
    /// The baseline's points.
    #[serde(default)]
    pub baseline: SideSeries,
    /// The canary's points.
    #[serde(default)]
    pub canary: SideSeries,
}

/// One side's points of one metric at one look.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SideSeries {
    /// Finite points before downsampling.
    #[serde(default)]
    pub n: u64,
    /// `[seconds after LookSeries::from, value]`, in time order, at most
    /// [`MAX_POINTS_PER_LOOK`]; rates for count data.
    #[serde(default)]
    pub points: Vec<(f64, f64)>,
    /// The sorted values at [`DISTRIBUTION_RANKS`] evenly spaced ranks, from the smallest
    /// to the largest (all values, sorted, when `n` is no more than that).
    #[serde(default)]
    pub ranks: Vec<f64>,
}

impl LookSeries {
    /// The points of `baseline` and `canary` after `from` and up to `to`, downsampled.
    pub fn between(
        baseline: &Observations,
        canary: &Observations,
        from: f64,
        to: f64,
    ) -> LookSeries {
        let side = |observations: &Observations, name: &str| {
            observations
                .metrics
                .get(name)
                .map(|data| SideSeries::from_points(&finite_points(data, from, to), from))
                .unwrap_or_default()
        };
        let metrics = baseline
            .metrics
            .keys()
            .chain(canary.metrics.keys())
            .map(|name| {
                (
                    name.clone(),
                    MetricSeries {
                        baseline: side(baseline, name),
                        canary: side(canary, name),
                    },
                )
            })
            .collect();
        LookSeries { from, metrics }
    }
}

impl SideSeries {
    /// Downsamples `points` (Unix seconds, value; finite, any order) for a look that
    /// started at `from`.
    pub fn from_points(points: &[(f64, f64)], from: f64) -> SideSeries {
        let mut by_time = points.to_vec();
        by_time.sort_by(|a, b| a.0.total_cmp(&b.0));
        let mut values: Vec<f64> = points.iter().map(|p| p.1).collect();
        values.sort_by(f64::total_cmp);
        SideSeries {
            n: points.len() as u64,
            points: downsample(&by_time, MAX_POINTS_PER_LOOK)
                .into_iter()
                .map(|(t, v)| (round(t - from), round(v)))
                .collect(),
            ranks: evenly_ranked(&values, DISTRIBUTION_RANKS)
                .into_iter()
                .map(round)
                .collect(),
        }
    }

    /// The share of this side's points at or below each of its rank values, as
    /// `(value, share)`: an empirical CDF, exact when every value was kept.
    pub fn cdf(&self) -> Vec<(f64, f64)> {
        let n = self.n as f64;
        let k = self.ranks.len();
        self.ranks
            .iter()
            .enumerate()
            .map(|(i, &value)| (value, (rank_of(i, k, self.n) + 1) as f64 / n))
            .collect()
    }
}

/// Every finite point of `data` after `from` and up to `to`; counts as per-point rates
/// (points with no events are left out: their rate is undefined).
fn finite_points(data: &MetricData, from: f64, to: f64) -> Vec<(f64, f64)> {
    let inside = |t: f64| t > from && t <= to;
    match data {
        MetricData::Samples { samples, .. } => samples
            .iter()
            .filter(|s| inside(s.timestamp) && s.value.is_finite())
            .map(|s| (s.timestamp, s.value))
            .collect(),
        MetricData::Counts { errors, total, .. } => errors
            .iter()
            .zip(total)
            .filter(|(e, t)| {
                inside(t.timestamp) && e.value.is_finite() && t.value.is_finite() && t.value > 0.0
            })
            .map(|(e, t)| (t.timestamp, e.value / t.value))
            .collect(),
    }
}

/// The 0-based rank of the `i`-th of `k` evenly spaced ranks among `n` sorted values.
fn rank_of(i: usize, k: usize, n: u64) -> u64 {
    if k <= 1 || n == 0 {
        return n.saturating_sub(1);
    }
    i as u64 * (n - 1) / (k as u64 - 1)
}

/// The values of `sorted` at `k` evenly spaced ranks, smallest and largest included;
/// all of them when there are no more than `k`.
fn evenly_ranked(sorted: &[f64], k: usize) -> Vec<f64> {
    let n = sorted.len();
    if n <= k {
        return sorted.to_vec();
    }
    (0..k)
        .map(|i| sorted[rank_of(i, k, n as u64) as usize])
        .collect()
}

/// `value` to [`SIGNIFICANT_DIGITS`] significant digits: the double nearest the
/// decimal `format!("{value:.4e}")` writes, without writing it (a look rounds a few
/// hundred values, and writing them was most of a look's time).
///
/// The digits are `R`, the integer nearest `|value| / 10^(e - 4)`, with `e` the decimal
/// exponent. While the power of ten is an exact double (|e - 4| ≤ 22), one
/// multiplication or division scales `|value|`, and a fused multiply-add gives that
/// operation's exact error, so whether the exact scaled value lies above or below a half
/// is known exactly. `R × 10^(e - 4)` is then one correctly rounded product or quotient
/// of two exact doubles: the nearest double to that decimal, as parsing it gives. An
/// exact half (where the text's rule for ties decides) and values beyond the exact
/// powers are written and parsed.
fn round(value: f64) -> f64 {
    if value == 0.0 || !value.is_finite() {
        return value;
    }
    round_fast(value).unwrap_or_else(|| round_by_text(value))
}

/// [`round`] by writing the decimal and parsing it back (the definition).
fn round_by_text(value: f64) -> f64 {
    format!("{value:.prec$e}", prec = SIGNIFICANT_DIGITS - 1)
        .parse()
        .unwrap_or(value)
}

/// Exact powers of ten as doubles: 10^0 to 10^22.
const POWERS_OF_TEN: [f64; 23] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16,
    1e17, 1e18, 1e19, 1e20, 1e21, 1e22,
];

/// [`round`] by arithmetic, or `None` for an exact half or a power of ten that is not
/// an exact double.
fn round_fast(value: f64) -> Option<f64> {
    let magnitude = value.abs();
    let digits = SIGNIFICANT_DIGITS as i32;
    let low = POWERS_OF_TEN[SIGNIFICANT_DIGITS - 1];
    // `log10` may be one off next to a power of ten; the range check corrects it. (Next
    // to a power of ten either exponent rounds to that power, so a scaled value a unit
    // in the last place off the range's ends cannot change the result.)
    let mut exponent = magnitude.log10().floor() as i32;
    for _ in 0..3 {
        let shift = exponent - (digits - 1);
        let power = *POWERS_OF_TEN.get(shift.unsigned_abs() as usize)?;
        // `scaled + error / divisor` is exactly |value| / 10^shift.
        let (scaled, error, divisor) = if shift >= 0 {
            let quotient = magnitude / power;
            (quotient, (-quotient).mul_add(power, magnitude), power)
        } else {
            let product = magnitude * power;
            (product, magnitude.mul_add(power, -product), 1.0)
        };
        if scaled < low {
            exponent -= 1;
            continue;
        }
        if scaled >= low * 10.0 {
            exponent += 1;
            continue;
        }
        // `scaled` is below 2^17, so its fraction and the half are exact, and a nonzero
        // difference from the half is at least a unit in its last place, more than the
        // operation's error: only a zero difference needs the error's sign.
        let floor = scaled.floor();
        let from_half = scaled - floor - 0.5;
        let above_half = if from_half != 0.0 {
            from_half > 0.0
        } else if error != 0.0 {
            error / divisor > 0.0
        } else {
            return None;
        };
        let digits_value = if above_half { floor + 1.0 } else { floor };
        let rounded = if shift >= 0 {
            digits_value * power
        } else {
            digits_value / power
        };
        return Some(rounded.copysign(value));
    }
    None
}

/// Downsamples a time-ordered series to at most `max` points: the points are cut into
/// `max / 2` buckets of consecutive points, and each bucket keeps its minimum and its
/// maximum in time order, so spikes and dips stay visible. Shorter series are kept
/// whole.
pub fn downsample(points: &[(f64, f64)], max: usize) -> Vec<(f64, f64)> {
    if points.len() <= max || max < 2 {
        return points.to_vec();
    }
    let buckets = max / 2;
    let size = points.len().div_ceil(buckets);
    let mut out = Vec::with_capacity(max);
    for chunk in points.chunks(size) {
        let mut low = chunk[0];
        let mut high = chunk[0];
        for &point in chunk {
            if point.1 < low.1 {
                low = point;
            }
            if point.1 > high.1 {
                high = point;
            }
        }
        if low.0 <= high.0 {
            out.push(low);
            if high != low {
                out.push(high);
            }
        } else {
            out.push(high);
            out.push(low);
        }
    }
    out
}

/// The empirical CDF of several looks' sides together, as `(value, share at or below)`
/// points from the smallest value: each look weighs by its number of points. Exact
/// when every look kept all its values; otherwise each look's share is within one rank
/// step (1 / ([`DISTRIBUTION_RANKS`] − 1)) of the exact one, and so is the mixture.
pub fn merged_cdf<'a>(sides: impl IntoIterator<Item = &'a SideSeries>) -> Vec<(f64, f64)> {
    let curves: Vec<(f64, Vec<(f64, f64)>)> = sides
        .into_iter()
        .filter(|side| side.n > 0 && !side.ranks.is_empty())
        .map(|side| (side.n as f64, side.cdf()))
        .collect();
    let total: f64 = curves.iter().map(|(n, _)| n).sum();
    if total == 0.0 {
        return Vec::new();
    }
    let mut values: Vec<f64> = curves
        .iter()
        .flat_map(|(_, curve)| curve.iter().map(|p| p.0))
        .collect();
    values.sort_by(f64::total_cmp);
    values.dedup();
    let mut cursors = vec![0usize; curves.len()];
    let mut out = Vec::with_capacity(values.len() + 1);
    out.push((values[0], 0.0));
    for value in values {
        let mut below = 0.0;
        for ((n, curve), cursor) in curves.iter().zip(cursors.iter_mut()) {
            while *cursor < curve.len() && curve[*cursor].0 <= value {
                *cursor += 1;
            }
            if *cursor > 0 {
                below += n * curve[*cursor - 1].1;
            }
        }
        out.push((value, below / total));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Location, Sample};

    fn here() -> Location {
        Location {
            file: "test".to_owned(),
            line: 1,
        }
    }

    fn samples(points: &[(f64, f64)]) -> MetricData {
        MetricData::Samples {
            samples: points
                .iter()
                .map(|&(timestamp, value)| Sample { timestamp, value })
                .collect(),
            origin: here(),
        }
    }

    fn observations(name: &str, data: MetricData) -> Observations {
        let mut observations = Observations::default();
        observations.metrics.insert(name.to_owned(), data);
        observations
    }

    #[test]
    fn a_long_look_keeps_at_most_sixty_points_with_its_spike_and_its_dip() {
        let mut points: Vec<(f64, f64)> = (1..=1_000).map(|i| (f64::from(i), 10.0)).collect();
        points[417].1 = 99.0;
        points[802].1 = -5.0;
        let side = SideSeries::from_points(&points, 0.0);
        assert_eq!(side.n, 1_000);
        assert!(
            side.points.len() <= MAX_POINTS_PER_LOOK,
            "{}",
            side.points.len()
        );
        assert!(side.points.contains(&(418.0, 99.0)), "{:?}", side.points);
        assert!(side.points.contains(&(803.0, -5.0)), "{:?}", side.points);
        assert!(
            side.points.windows(2).all(|w| w[0].0 <= w[1].0),
            "time order"
        );
        assert_eq!(side.ranks.len(), DISTRIBUTION_RANKS);
        assert_eq!(side.ranks[0], -5.0);
        assert_eq!(*side.ranks.last().unwrap(), 99.0);
    }

    #[test]
    fn a_short_look_keeps_every_point_and_every_value() {
        let points = [(30.0, 3.0), (10.0, 1.0), (20.0, 2.0)];
        let side = SideSeries::from_points(&points, 5.0);
        assert_eq!(side.points, vec![(5.0, 1.0), (15.0, 2.0), (25.0, 3.0)]);
        assert_eq!(side.ranks, vec![1.0, 2.0, 3.0]);
        assert_eq!(
            side.cdf(),
            vec![(1.0, 1.0 / 3.0), (2.0, 2.0 / 3.0), (3.0, 1.0)]
        );
    }

    #[test]
    fn the_look_takes_only_points_since_the_previous_look_and_counts_as_rates() {
        let baseline = observations(
            "latency",
            samples(&[(100.0, 1.0), (110.0, 2.0), (120.0, f64::NAN), (130.0, 4.0)]),
        );
        let counts = |values: &[(f64, f64)]| -> Vec<Sample> {
            values
                .iter()
                .map(|&(timestamp, value)| Sample { timestamp, value })
                .collect()
        };
        let canary = observations(
            "errors",
            MetricData::Counts {
                errors: counts(&[(110.0, 1.0), (120.0, 3.0), (130.0, 0.0)]),
                total: counts(&[(110.0, 10.0), (120.0, 0.0), (130.0, 50.0)]),
                origin: here(),
            },
        );
        let look = LookSeries::between(&baseline, &canary, 100.0, 130.0);
        assert_eq!(look.from, 100.0);
        // 100 is the previous look's; NaN is a gap.
        assert_eq!(
            look.metrics["latency"].baseline.points,
            vec![(10.0, 2.0), (30.0, 4.0)]
        );
        assert_eq!(look.metrics["latency"].canary, SideSeries::default());
        // A point with no events has no rate.
        assert_eq!(
            look.metrics["errors"].canary.points,
            vec![(10.0, 0.1), (30.0, 0.0)]
        );
    }

    #[test]
    fn values_keep_five_significant_digits() {
        assert_eq!(round(0.123_456_789), 0.123_46);
        assert_eq!(round(99_999.7), 100_000.0);
        assert_eq!(round(1e300), 1e300);
        assert_eq!(round(1_700_000_123.4), 1_700_000_000.0);
        assert_eq!(round(-0.000_012_345_67), -0.000_012_346);
        assert_eq!(round(0.0), 0.0);
    }

    proptest::proptest! {
        #[test]
        fn rounding_by_arithmetic_gives_the_double_the_text_gives(
            bits in proptest::num::u64::ANY,
            digits in 0u64..10_000_000,
            exponent in -30i32..30,
        ) {
            // Any double at all; decimals of six to eight digits at every scale, whose
            // sixth digit is often a 5 (the near-ties); and their neighbours.
            let any = f64::from_bits(bits);
            let decimal: f64 = format!("{digits}e{exponent}").parse().unwrap();
            for value in [any, decimal, decimal.next_up(), decimal.next_down(), -decimal] {
                let expected = round_by_text(value);
                let got = round(value);
                proptest::prop_assert!(
                    got.to_bits() == expected.to_bits() || (got.is_nan() && expected.is_nan()),
                    "{value:e}: {got:e} by arithmetic, {expected:e} by text"
                );
            }
        }
    }

    #[test]
    fn rounding_by_arithmetic_agrees_with_the_text_at_the_edges() {
        for exponent in -25..=28 {
            let power = 10f64.powi(exponent);
            for value in [
                power,
                power.next_up(),
                power.next_down(),
                9.9999e0 * power,
                9.99995 * power,
                1.00005 * power,
                1.234_55 * power,
            ] {
                assert_eq!(
                    round(value).to_bits(),
                    round_by_text(value).to_bits(),
                    "{value:e}"
                );
            }
        }
        // Six digits ending in 5, as recorded series hold them, and exact halves (12345.5
        // is a double: the text's rule for ties decides it).
        for value in [
            0.209_235, 0.225_495, 522.135, 518.065, 0.601_145, 12_345.5, 12_346.5, 123_455.0,
            0.062_5,
        ] {
            assert_eq!(
                round(value).to_bits(),
                round_by_text(value).to_bits(),
                "{value:e}"
            );
        }
    }

    #[test]
    fn merged_looks_give_the_exact_cdf_when_nothing_was_dropped() {
        let first = SideSeries::from_points(&[(1.0, 1.0), (2.0, 3.0)], 0.0);
        let second = SideSeries::from_points(&[(3.0, 2.0), (4.0, 4.0)], 2.0);
        assert_eq!(
            merged_cdf([&first, &second]),
            vec![(1.0, 0.0), (1.0, 0.25), (2.0, 0.5), (3.0, 0.75), (4.0, 1.0)]
        );
    }

    #[test]
    fn merged_downsampled_looks_stay_within_a_rank_step_of_the_exact_cdf() {
        // Two looks of different sizes and distributions.
        let first: Vec<(f64, f64)> = (0..5_000)
            .map(|i| (f64::from(i), f64::from((i * 7919) % 1_000)))
            .collect();
        let second: Vec<(f64, f64)> = (0..1_000)
            .map(|i| (f64::from(i), 500.0 + f64::from((i * 31) % 2_000)))
            .collect();
        let curve = merged_cdf([
            &SideSeries::from_points(&first, 0.0),
            &SideSeries::from_points(&second, 0.0),
        ]);
        let mut all: Vec<f64> = first.iter().chain(&second).map(|p| p.1).collect();
        all.sort_by(f64::total_cmp);
        let exact = |x: f64| all.partition_point(|&v| v <= x) as f64 / all.len() as f64;
        let step = 1.0 / (DISTRIBUTION_RANKS - 1) as f64;
        for &(value, share) in &curve[1..] {
            assert!(
                (share - exact(value)).abs() <= step + 1e-9,
                "at {value}: {share} vs exact {}",
                exact(value)
            );
        }
        assert_eq!(curve.last().unwrap().1, 1.0);
    }

    #[test]
    fn a_look_body_without_series_reads_as_empty() {
        let look: LookSeries = serde_json::from_str(r#"{"from": 5}"#).unwrap();
        assert!(look.metrics.is_empty());
        let side: SideSeries = serde_json::from_str("{}").unwrap();
        assert!(merged_cdf([&side]).is_empty());
    }
}
