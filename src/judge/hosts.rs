//! The host-spread allowance of the location checks (sequential, and the one-shot
//! judge's continuous tests): how far apart two sides of the *same* version can be
//! because they run on different instances.
//!
//! Requests served by one instance (host, pod) are not independent draws from the
//! version's distribution: instances differ in level by a few percent (hardware
//! generation, noisy neighbours, cache warmth), and that difference stays for the
//! whole stage. With `k_b` baseline and `k_c` canary instances, the difference between
//! the sides' average instance levels is, for two identical versions, roughly normal
//! with standard deviation `τ √(1/k_b + 1/k_c)` on the log scale, where `τ` is the
//! between-instance spread; it does not shrink as more requests arrive. A rank test of
//! the pooled points against "no change" would take it for a regression with
//! certainty once the data are plentiful (issue 14: one canary instance 15 % slower
//! than the one baseline instance rolled a healthy canary back).
//!
//! The location check therefore tests "the canary is no higher than the baseline
//! beyond `m`", with the allowance `m = z · τ · √(1/k_b + 1/k_c)` and `z` the normal
//! quantile of the allowance's share of the check's budget (half of it, divided
//! evenly over the plan's stages, because the instances change from stage to stage).
//! A healthy rollout then fails the check only if the host difference exceeds `m` at
//! some stage (probability at most that half, by the union bound) or, given that it
//! does not, the rank e-process crosses its boundary (at most the other half, by
//! Ville's inequality): the check keeps its share of the budget.
//!
//! `τ` is the profile's prior `[judge] host_spread` pooled with what the baseline's own
//! instances show at this stage: `τ² = (ν₀ τ₀² + (k_b − 1) τ̂²) / (ν₀ + k_b − 1)` with
//! `ν₀ =` [`PRIOR_WEIGHT`], where `τ̂²` is the variance of the baseline instances' mean
//! log levels less their within-instance part (floored at zero). The within part is
//! estimated from consecutive points, which are positively correlated in practice, so
//! `τ̂²` errs large: the allowance errs wide, never narrow. With one instance a side
//! there is nothing to estimate from and the prior decides; the report says which
//! difference cannot be told from host differences.
//!
//! A one-shot judgement (an analysis, an execution, a Flagger webhook) has one stage and
//! one test per metric: its Mann-Whitney test moves the canary's points by `e^−m`, the
//! allowance spending half the metric's share of the level ([`one_shot_alpha`]).
//!
//! The allowance applies only when both sides' series name their instances
//! (`[judge] instance_labels`) and every value is positive (latencies, sizes): it is a
//! ratio. An aggregated query (`sum by (le)`) hides the instances, and the check is
//! then the plain rank test of the pooled points, as before.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use statrs::distribution::{ContinuousCDF, Normal};

use crate::domain::{InstanceCounts, InstanceSeries, Sample};

/// The weight of the prior `host_spread`, in baseline instances' degrees of freedom:
/// with five baseline instances (four degrees of freedom) the estimate and the prior
/// count equally.
pub const PRIOR_WEIGHT: f64 = 4.0;

/// Running moments of one instance's log values (Welford).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Moments {
    /// Points seen.
    pub n: f64,
    /// Their mean.
    pub mean: f64,
    /// Sum of squared deviations from the mean.
    pub m2: f64,
}

impl Moments {
    fn add(&mut self, value: f64) {
        self.n += 1.0;
        let delta = value - self.mean;
        self.mean += delta / self.n;
        self.m2 += delta * (value - self.mean);
    }
}

/// This stage's points per instance on each side, on the log scale.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StageInstances {
    /// Baseline instance name → moments.
    pub baseline: BTreeMap<String, Moments>,
    /// Canary instance name → moments.
    pub canary: BTreeMap<String, Moments>,
    /// Whether a non-positive value was seen (the allowance, a ratio, then does not apply).
    #[serde(default)]
    pub non_positive: bool,
}

impl StageInstances {
    /// Adds a look's points per instance.
    pub fn observe(&mut self, baseline: &[InstanceSeries], canary: &[InstanceSeries]) {
        for (side, instances) in [(&mut self.baseline, baseline), (&mut self.canary, canary)] {
            for one in instances {
                for sample in &one.samples {
                    if !sample.value.is_finite() {
                        continue;
                    }
                    if sample.value <= 0.0 {
                        self.non_positive = true;
                        continue;
                    }
                    side.entry(one.instance.clone())
                        .or_default()
                        .add(sample.value.ln());
                }
            }
        }
    }
}

/// The allowance at one look, with the numbers behind it for the report.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, serde::Deserialize)]
pub struct HostAllowance {
    /// Baseline instances seen at this stage.
    pub baseline_instances: usize,
    /// Canary instances seen at this stage.
    pub canary_instances: usize,
    /// The between-instance spread used (log scale), prior and estimate pooled.
    #[serde(deserialize_with = "crate::domain::non_finite::f64")]
    pub spread: f64,
    /// The spread the baseline's instances show on their own, when there are two or more.
    pub estimated_spread: Option<f64>,
    /// The allowance `m` on the log scale: the check's null is "canary ≤ baseline · e^m".
    #[serde(deserialize_with = "crate::domain::non_finite::f64")]
    pub margin: f64,
}

impl HostAllowance {
    /// The allowance as a ratio minus one (`0.08`: the canary may be 8 % above).
    pub fn relative(&self) -> f64 {
        self.margin.exp_m1()
    }

    /// The report's clause on the allowance: "; `difference` cannot be told from host
    /// differences with 3 baseline and 3 canary instances (spread …, …)". `prior` names
    /// the profile setting behind the spread.
    pub fn note(&self, difference: &str, prior: &str) -> String {
        format!(
            "; {difference} cannot be told from host differences with {} baseline and {} canary {} (spread {}{})",
            self.baseline_instances,
            self.canary_instances,
            if self.baseline_instances + self.canary_instances == 2 {
                "instance"
            } else {
                "instances"
            },
            crate::format::percent(self.spread.exp_m1()),
            self.estimated_spread.map_or_else(
                || format!(", the profile's {prior}"),
                |estimated| format!(
                    ", the baseline's instances alone show {}",
                    crate::format::percent(estimated.exp_m1())
                ),
            ),
        )
    }
}

/// The between-instance variance the baseline's instances show (log scale), or `None`
/// with fewer than two instances of two points each.
fn estimated_variance(baseline: &BTreeMap<String, Moments>) -> Option<f64> {
    let instances: Vec<&Moments> = baseline.values().filter(|m| m.n >= 2.0).collect();
    let k = instances.len();
    if k < 2 {
        return None;
    }
    let grand = instances.iter().map(|m| m.mean).sum::<f64>() / k as f64;
    let between = instances
        .iter()
        .map(|m| (m.mean - grand).powi(2))
        .sum::<f64>()
        / (k - 1) as f64;
    // What the means would scatter by with no host differences at all.
    let within = instances
        .iter()
        .map(|m| m.m2 / (m.n - 1.0) / m.n)
        .sum::<f64>()
        / k as f64;
    Some((between - within).max(0.0))
}

/// The allowance for this stage's instances, or `None` when it does not apply: the
/// prior spread is zero (turned off), a side names no instance, or a value was not
/// positive. `alpha` is the allowance's share of the check's budget for this stage.
pub fn allowance(stage: &StageInstances, prior_spread: f64, alpha: f64) -> Option<HostAllowance> {
    if stage.non_positive {
        return None;
    }
    margin(
        stage.baseline.len(),
        stage.canary.len(),
        prior_spread,
        estimated_variance(&stage.baseline).map(|v| (v, stage.baseline.len() as f64 - 1.0)),
        alpha,
    )
}

/// This stage's error and total counts per instance on each side (proportion metrics).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StageCounts {
    /// Baseline instance name → (errors, total).
    pub baseline: BTreeMap<String, (f64, f64)>,
    /// Canary instance name → (errors, total).
    pub canary: BTreeMap<String, (f64, f64)>,
}

impl StageCounts {
    /// Adds a look's counts per instance.
    pub fn observe(&mut self, baseline: &[InstanceCounts], canary: &[InstanceCounts]) {
        for (side, instances) in [(&mut self.baseline, baseline), (&mut self.canary, canary)] {
            for one in instances {
                let entry = side.entry(one.instance.clone()).or_default();
                entry.0 += Sample::total(&one.errors);
                entry.1 += Sample::total(&one.total);
            }
        }
    }
}

/// The fewest errors an instance needs before its error rate counts towards the
/// estimated spread. Its log rate's sampling variance is about `1/errors`; with fewer,
/// that noise (0.025 at 40 errors) dwarfs the spreads that matter (0.0025 at 5 %) and
/// the estimate minus it scatters so widely over a few pods that it inflated the
/// allowance: on the live bed (three pods a side, about 40 errors each at a 60-second
/// stage) errors ×2 then went unnoticed for a stage.
pub const MIN_INSTANCE_ERRORS: f64 = 100.0;

/// The between-instance variance of the baseline instances' log error rates, less the
/// part their errors' counting noise explains (about `1/e − 1/n` each), with its degrees
/// of freedom, or `None` with
/// fewer than two instances of [`MIN_INSTANCE_ERRORS`] errors.
fn estimated_rate_variance(baseline: &BTreeMap<String, (f64, f64)>) -> Option<(f64, f64)> {
    let rates: Vec<(f64, f64)> = baseline
        .values()
        .filter(|(errors, total)| *errors >= MIN_INSTANCE_ERRORS && total > errors)
        .map(|&(errors, total)| ((errors / total).ln(), 1.0 / errors - 1.0 / total))
        .collect();
    let k = rates.len();
    if k < 2 {
        return None;
    }
    let grand = rates.iter().map(|(r, _)| r).sum::<f64>() / k as f64;
    let between = rates.iter().map(|(r, _)| (r - grand).powi(2)).sum::<f64>() / (k - 1) as f64;
    let within = rates.iter().map(|(_, v)| v).sum::<f64>() / k as f64;
    Some(((between - within).max(0.0), (k - 1) as f64))
}

/// The error-rate allowance for this stage's instances (the null ratio of the error-rate
/// check is multiplied by `e^margin`), or `None` when it does not apply: the prior
/// spread is zero or a side names no instance.
pub fn rate_allowance(stage: &StageCounts, prior_spread: f64, alpha: f64) -> Option<HostAllowance> {
    let named = |side: &BTreeMap<String, (f64, f64)>| side.values().filter(|c| c.1 > 0.0).count();
    margin(
        named(&stage.baseline),
        named(&stage.canary),
        prior_spread,
        estimated_rate_variance(&stage.baseline),
        alpha,
    )
}

/// The allowance `z · τ · √(1/k_b + 1/k_c)`, `τ²` the prior pooled with the baseline's
/// estimate (weighted by its degrees of freedom).
fn margin(
    k_b: usize,
    k_c: usize,
    prior_spread: f64,
    estimate: Option<(f64, f64)>,
    alpha: f64,
) -> Option<HostAllowance> {
    if prior_spread <= 0.0 || k_b == 0 || k_c == 0 || alpha <= 0.0 {
        return None;
    }
    let prior = prior_spread.ln_1p();
    let (estimate, degrees) = match estimate {
        Some((variance, degrees)) => (Some(variance), degrees),
        None => (None, 0.0),
    };
    let variance = (PRIOR_WEIGHT * prior * prior + degrees * estimate.unwrap_or(0.0))
        / (PRIOR_WEIGHT + degrees);
    let spread = variance.sqrt();
    let z = Normal::standard().inverse_cdf(1.0 - alpha.min(0.5));
    let margin = z * spread * (1.0 / k_b as f64 + 1.0 / k_c as f64).sqrt();
    Some(HostAllowance {
        baseline_instances: k_b,
        canary_instances: k_c,
        spread,
        estimated_spread: estimate.map(f64::sqrt),
        margin,
    })
}

/// The allowance's share of a location check's budget at one stage: half the check's
/// share, spread evenly over the plan's stages.
pub fn allowance_alpha(check_alpha: f64, stages: usize) -> f64 {
    check_alpha / 2.0 / stages.max(1) as f64
}

/// The instances behind one continuous metric's two sides in a one-shot judgement (an
/// analysis, an execution, a Flagger webhook, a look of a fixed-mode rollout), and what
/// the allowance may spend.
#[derive(Debug, Clone, Copy)]
pub struct OneShotHosts<'a> {
    /// The baseline's points per instance.
    pub baseline: &'a [InstanceSeries],
    /// The canary's points per instance.
    pub canary: &'a [InstanceSeries],
    /// The profile's `host_spread`.
    pub prior_spread: f64,
    /// The allowance's share of the budget ([`one_shot_alpha`]).
    pub alpha: f64,
}

impl OneShotHosts<'_> {
    /// The allowance these instances give, or `None` when it does not apply (see
    /// [`allowance`]).
    pub fn allowance(&self) -> Option<HostAllowance> {
        let mut stage = StageInstances::default();
        stage.observe(self.baseline, self.canary);
        allowance(&stage, self.prior_spread, self.alpha)
    }
}

/// The allowance's share of a one-shot judgement's budget, per metric and direction:
/// the judge compares each metric's doubled one-sided p-value with `alpha = 1 − level`,
/// so a direction has `alpha / 2`; the allowance takes half of that, divided among the
/// `family` of metrics the correction spans, and the location test keeps the other
/// half (its decision p-value is doubled again). Host differences beyond their
/// allowances then occur in a healthy canary's family with probability at most
/// `alpha / 4` a direction (union bound), and the corrected tests' false alarms take at
/// most the other `alpha / 4`: together what the correction alone spent before.
pub fn one_shot_alpha(alpha: f64, family: usize) -> f64 {
    alpha / 4.0 / family.max(1) as f64
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Sample;
    use crate::sources::synthetic::SplitMix;

    fn instance(name: &str, values: &[f64]) -> InstanceSeries {
        InstanceSeries {
            instance: name.to_owned(),
            samples: values
                .iter()
                .enumerate()
                .map(|(i, v)| Sample {
                    timestamp: i as f64,
                    value: *v,
                })
                .collect(),
        }
    }

    #[test]
    fn one_instance_a_side_gets_the_prior_allowance() {
        let mut stage = StageInstances::default();
        stage.observe(&[instance("b0", &[0.2, 0.21])], &[instance("c0", &[0.2])]);
        let allowance = allowance(&stage, 0.03, 0.001).expect("instances on both sides");
        assert_eq!(
            (allowance.baseline_instances, allowance.canary_instances),
            (1, 1)
        );
        assert!(allowance.estimated_spread.is_none());
        let z = Normal::standard().inverse_cdf(0.999);
        let expected = z * 0.03_f64.ln_1p() * 2f64.sqrt();
        assert!((allowance.margin - expected).abs() < 1e-12, "{allowance:?}");
    }

    #[test]
    fn more_instances_narrow_the_allowance() {
        let margin = |k: usize| {
            let mut stage = StageInstances::default();
            let side = |prefix: &str| -> Vec<InstanceSeries> {
                (0..k)
                    .map(|i| instance(&format!("{prefix}{i}"), &[0.2, 0.2]))
                    .collect()
            };
            stage.observe(&side("b"), &side("c"));
            allowance(&stage, 0.03, 0.001).unwrap().margin
        };
        assert!(margin(1) > margin(5));
        assert!(margin(5) > margin(20));
    }

    #[test]
    fn no_allowance_without_instances_or_when_turned_off() {
        let mut stage = StageInstances::default();
        stage.observe(&[instance("b0", &[0.2])], &[]);
        assert!(allowance(&stage, 0.03, 0.001).is_none());
        stage.observe(&[], &[instance("c0", &[0.2])]);
        assert!(allowance(&stage, 0.03, 0.001).is_some());
        assert!(allowance(&stage, 0.0, 0.001).is_none());
        stage.observe(&[], &[instance("c0", &[-1.0])]);
        assert!(
            allowance(&stage, 0.03, 0.001).is_none(),
            "a ratio needs positive values"
        );
    }

    #[test]
    fn the_baseline_instances_spread_is_estimated_and_pooled_with_the_prior() {
        // Twenty baseline instances whose levels differ by 10 % (log sd 0.1), many
        // points each: the estimate is near 0.1 and outweighs the 3 % prior.
        let mut rng = SplitMix(7);
        let baseline: Vec<InstanceSeries> = (0..20)
            .map(|i| {
                let level = 0.1 * rng.normal();
                let values: Vec<f64> = (0..50)
                    .map(|_| (level + 0.05 * rng.normal()).exp() * 0.2)
                    .collect();
                instance(&format!("b{i}"), &values)
            })
            .collect();
        let mut stage = StageInstances::default();
        stage.observe(&baseline, &[instance("c0", &[0.2])]);
        let allowance = allowance(&stage, 0.03, 0.001).unwrap();
        let estimated = allowance.estimated_spread.unwrap();
        assert!((0.06..0.14).contains(&estimated), "estimated {estimated}");
        assert!(
            allowance.spread > 0.06 && allowance.spread < estimated,
            "{allowance:?}"
        );
    }

    #[test]
    fn within_instance_noise_alone_is_not_taken_for_host_differences() {
        // Identical instances with noisy points: the estimate is near zero.
        let mut rng = SplitMix(11);
        let baseline: Vec<InstanceSeries> = (0..10)
            .map(|i| {
                let values: Vec<f64> = (0..40).map(|_| (0.2 * rng.normal()).exp()).collect();
                instance(&format!("b{i}"), &values)
            })
            .collect();
        let mut stage = StageInstances::default();
        stage.observe(&baseline, &[instance("c0", &[1.0])]);
        let estimated = allowance(&stage, 0.03, 0.001)
            .unwrap()
            .estimated_spread
            .unwrap();
        assert!(estimated < 0.03, "estimated {estimated}");
    }

    fn counts(name: &str, errors: f64, total: f64) -> InstanceCounts {
        let one = |value: f64| {
            vec![Sample {
                timestamp: 0.0,
                value,
            }]
        };
        InstanceCounts {
            instance: name.to_owned(),
            errors: one(errors),
            total: one(total),
        }
    }

    #[test]
    fn the_baseline_instances_error_rate_spread_is_estimated_beyond_counting_noise() {
        let mut rng = SplitMix(5);
        let spread_of = |tau: f64, rng: &mut SplitMix| {
            let baseline: Vec<InstanceCounts> = (0..20)
                .map(|i| {
                    let rate = 0.01 * (tau * rng.normal()).exp();
                    counts(&format!("b{i}"), rng.binomial(100_000.0, rate), 100_000.0)
                })
                .collect();
            let mut stage = StageCounts::default();
            stage.observe(&baseline, &[counts("c0", 10.0, 1000.0)]);
            rate_allowance(&stage, 0.1, 0.001).unwrap()
        };
        let wide = spread_of(0.3, &mut rng);
        let estimated = wide.estimated_spread.unwrap();
        assert!((0.2..0.4).contains(&estimated), "estimated {estimated}");
        assert_eq!((wide.baseline_instances, wide.canary_instances), (20, 1));
        let equal = spread_of(0.0, &mut rng).estimated_spread.unwrap();
        assert!(equal < 0.05, "counting noise alone: {equal}");
        // Instances with too few errors to tell their rate count for k but not for the
        // estimate; without a canary instance there is no allowance.
        let mut few = StageCounts::default();
        few.observe(
            &[counts("b0", 3.0, 300.0), counts("b1", 0.0, 300.0)],
            &[counts("c0", 2.0, 300.0)],
        );
        let allowance = rate_allowance(&few, 0.1, 0.001).unwrap();
        assert_eq!(allowance.baseline_instances, 2);
        assert!(allowance.estimated_spread.is_none());
        assert!(rate_allowance(&few, 0.0, 0.001).is_none(), "turned off");
        let mut one_side = StageCounts::default();
        one_side.observe(&[counts("b0", 3.0, 300.0)], &[]);
        assert!(rate_allowance(&one_side, 0.1, 0.001).is_none());
    }

    #[test]
    fn host_differences_exceed_the_allowance_at_most_at_its_level() {
        // Identical versions, instances 3 % apart (the prior is right): the sides'
        // difference in mean instance level exceeds the allowance in at most about
        // `alpha` of rollouts (checked at a loose alpha so the count is informative).
        let alpha = 0.05;
        let trials = 4000;
        let mut rng = SplitMix(3);
        let tau = 0.03_f64.ln_1p();
        for k in [1usize, 3, 10] {
            let mut exceeded = 0;
            for _ in 0..trials {
                let mut stage = StageInstances::default();
                let side = |prefix: &str, rng: &mut SplitMix| -> (Vec<InstanceSeries>, f64) {
                    let mut mean = 0.0;
                    let series = (0..k)
                        .map(|i| {
                            let level = tau * rng.normal();
                            mean += level / k as f64;
                            let values: Vec<f64> = (0..20)
                                .map(|_| (level + 0.01 * rng.normal()).exp())
                                .collect();
                            instance(&format!("{prefix}{i}"), &values)
                        })
                        .collect();
                    (series, mean)
                };
                let (baseline, baseline_level) = side("b", &mut rng);
                let (canary, canary_level) = side("c", &mut rng);
                stage.observe(&baseline, &canary);
                let margin = allowance(&stage, 0.03, alpha).unwrap().margin;
                if canary_level - baseline_level > margin {
                    exceeded += 1;
                }
            }
            let share = exceeded as f64 / trials as f64;
            assert!(share <= alpha * 1.3, "{k} instances a side: {share}");
        }
    }
}
