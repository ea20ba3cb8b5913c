//! The sequential judge: anytime-valid evidence accumulated over every look of a
//! staged rollout (`[judge] mode = "sequential"`).
//!
//! At each look the runner hands over the batch of data since the previous look. Each
//! comparative metric feeds one or more *checks*, each an e-process from
//! [`crate::stats::sequential`]:
//!
//! - **location** (every continuous and proportion metric): for a continuous metric,
//!   the stratified Mann-Whitney evidence that the canary exceeds the baseline by more
//!   than `allowed_increase` (positive data is compared on the log scale, so the
//!   tolerance is a ratio); for a proportion, the mixture SPRT that the error-rate
//!   ratio exceeds `max_ratio` (1 when unset). `decrease` metrics test the other way,
//!   `either` metrics both ways at half the share each.
//! - **tails** (`tails = true`, continuous): each side's deviations from its own
//!   median (log scale when positive; the canary's divided by `1 + allowed_increase`),
//!   compared by Klotz (squared normal) scores with their permutation moments
//!   ([`spread_increment`]), so a shifted canary with the same spread is no evidence.
//!   Points wait in the state ([`PendingPoints`]) until each side has
//!   [`MIN_SPREAD_POINTS`] points, so a look of fewer points per side is compared with
//!   the next ones instead of alone (below five a side the centred statistic's
//!   variance is not its permutation variance: three times it at two points, issue 12).
//! - **bursts** (`bursts = "1m"`, proportion): every sub-window of that length is
//!   tested on its own (the exact conditional binomial test of the canary's share of
//!   the window's errors) at its share of the check's budget, spent along
//!   [`spend`] over the planned number of windows, so the worst window's evidence is
//!   corrected for how many windows were looked at. A window longer than the looks is
//!   carried in the state ([`OpenWindow`]) and tested once, when complete.
//!
//! Every check keeps its level however few points a look brings: location and tails use
//! the exact (tie-corrected) permutation variance of each comparison, rates and bursts
//! exact conditional binomial likelihoods (the `small_batches` tests simulate 1 to 5
//! points per side per look, with and without ties).
//!
//! **Budget rule.** The judge's share of the error budget is split equally among the
//! checks (plus one share for rate thresholds when the profile has any). A check's
//! e-process fails its metric the first time it reaches `1/α_check`; by Ville's
//! inequality and the union bound, a healthy rollout fails any check with probability
//! at most the judge's share, however many looks it takes and however long it holds.
//!
//! **Across stages.** Evidence restarts at each stage (a regression that appears only at
//! higher traffic is not diluted by earlier stages) without forgetting the earlier ones:
//! a check's e-value is `Σ_s w_s Π_{s ≤ s' ≤ now} M_{s'}`, the average (weights
//! `1/stages`) of the products of the per-stage e-processes started at each stage, which
//! is itself a test martingale.
//!
//! **Early advance.** The same rank and rate evidence tested the other way (harm
//! *excluded*: the canary is below the tolerated limit, a non-inferiority test against
//! `allowed_increase` or `max_ratio`) at the check's level lets a stage advance early.
//! A metric without a tolerance (`allowed_increase = 0`, no `max_ratio`) can never
//! exclude harm, so its stage runs its full duration.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::hosts::{
    HostAllowance, StageCounts, StageInstances, allowance, allowance_alpha, rate_allowance,
};
use super::{Classification, Judgement, MetricResult};
use crate::domain::plan::RolloutPlan;
use crate::domain::{
    ContinuousKind, Direction, InstanceCounts, InstanceSeries, MetricData, MetricKind, MetricSpec,
    Observations, Profile, ProportionKind,
};
use crate::format::{count, number, percent, signed_percent};
use crate::stats::sequential::{
    MIN_SPREAD_POINTS, PendingPoints, RankEvidence, RateEvidence, RatePoint, binomial_upper_tail,
    rank_increment, spend, spread_increment, tuned_tau2,
};

/// What the sequential judge carries from look to look (part of the runner's snapshot).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SequentialState {
    /// Per metric, per check.
    pub checks: BTreeMap<String, CheckState>,
    /// Burst sub-windows tested so far, over the whole rollout, per metric.
    #[serde(default)]
    pub burst_windows: BTreeMap<String, u64>,
    /// Samples (continuous) or events (proportion) seen at this stage, per metric, as
    /// (baseline, canary): what `min_samples` is checked against.
    #[serde(default)]
    pub stage_counts: BTreeMap<String, (f64, f64)>,
    /// Per metric, the bursts window still open at the last look: a look shorter than
    /// the window brings only part of it, and it is tested once, when complete. Absent
    /// from snapshots written before it existed.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub burst_pending: BTreeMap<String, OpenWindow>,
    /// Per metric, `ln` of the pooled bursts e-processes over every window tested so far,
    /// one per burst share in [`BURST_SHARES`] (see [`pooled_burst_factor`]).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub burst_pooled: BTreeMap<String, Vec<f64>>,
    /// Per continuous metric, this stage's points per instance on each side, for the
    /// host-spread allowance ([`super::hosts`]). Empty when the series name no instance.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub instances: BTreeMap<String, StageInstances>,
    /// Per proportion metric, this stage's counts per instance on each side, for the
    /// error-rate host allowance. Empty when the series name no instance.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub count_instances: BTreeMap<String, StageCounts>,
}

/// A bursts window seen only in part so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct OpenWindow {
    /// The window's number: it covers `(index·w, (index+1)·w]`.
    pub index: i64,
    /// Its counts so far.
    pub counts: RatePoint,
}

/// One check's evidence.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CheckState {
    /// `ln M` of each completed stage's e-process.
    pub completed: Vec<f64>,
    /// This stage's rank evidence against "no change" (continuous checks).
    pub rank: Option<RankEvidence>,
    /// This stage's rank evidence against the tolerated change (harm excluded).
    #[serde(default)]
    pub rank_safe: Option<RankEvidence>,
    /// This stage's rate evidence against harm (proportion checks).
    pub rate_harm: Option<RateEvidence>,
    /// This stage's rate evidence that harm is excluded.
    pub rate_safe: Option<RateEvidence>,
    /// Tails checks: this stage's points not yet compared (too few at the last looks).
    /// Absent from snapshots written before it existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending: Option<PendingPoints>,
}

/// The numbers behind one check's decision, kept for the report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckEvidence {
    /// `location`, `location_decrease`, `tails` or `bursts`.
    pub check: String,
    /// The null hypothesis, in words.
    pub null: String,
    /// The e-value over the rollout so far (stages combined). For bursts, which test each
    /// window on its own, the worst window's `needed / p-value` (at least 1 fails).
    #[serde(deserialize_with = "crate::domain::non_finite::f64")]
    pub e_value: f64,
    /// Its natural log (finite when the e-value overflows).
    #[serde(deserialize_with = "crate::domain::non_finite::f64")]
    pub ln_e_value: f64,
    /// The e-value this stage alone.
    #[serde(deserialize_with = "crate::domain::non_finite::f64")]
    pub stage_e_value: f64,
    /// The e-value that fails the metric: `1/alpha`.
    #[serde(deserialize_with = "crate::domain::non_finite::f64")]
    pub threshold: f64,
    /// This check's share of the error budget.
    #[serde(deserialize_with = "crate::domain::non_finite::f64")]
    pub alpha: f64,
    /// Whether the evidence crossed the threshold.
    pub crossed: bool,
    /// Whether the estimated effect is beyond what the profile tolerates (a location
    /// check fails only when both hold, like the fixed judge: a significant but
    /// tolerated change passes).
    pub beyond_tolerance: bool,
    /// The estimated effect the tolerance is checked on, in words.
    pub effect: String,
    /// Whether this check fails its metric.
    pub fails: bool,
    /// Evidence that harm is excluded this stage (none when the metric tolerates no
    /// change, so harm can never be excluded).
    pub harm_excluded_e_value: Option<f64>,
    /// The estimate the check is about: `P(canary > baseline)` after the tolerance
    /// (rank checks) or the canary/baseline error-rate ratio (rate checks).
    pub estimate: Option<f64>,
    /// Anytime-valid interval for `estimate` at the check's level (rank checks).
    #[serde(default, deserialize_with = "crate::domain::non_finite::optional_pair")]
    pub interval: Option<[f64; 2]>,
    /// Information (rank checks) or errors on both sides (rate checks) this stage.
    #[serde(deserialize_with = "crate::domain::non_finite::f64")]
    pub information: f64,
    /// For bursts: the worst window (end time, canary rate, baseline rate, p-value,
    /// the p-value it had to reach).
    pub worst_window: Option<BurstWindow>,
    /// For bursts: the e-value pooled over every window tested so far, and the one that
    /// fails the metric (`2/alpha`: half the check's budget).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "crate::domain::non_finite::optional_pair"
    )]
    pub pooled_bursts: Option<[f64; 2]>,
    /// For location checks of metrics whose series name their instances: how far apart
    /// the sides may be from host differences alone, which the check does not count.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_allowance: Option<HostAllowance>,
}

/// The most extreme sub-window a bursts check looked at.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BurstWindow {
    /// End of the window, Unix seconds.
    #[serde(deserialize_with = "crate::domain::non_finite::f64")]
    pub until: f64,
    /// The canary's error rate in it.
    #[serde(deserialize_with = "crate::domain::non_finite::f64")]
    pub canary_rate: f64,
    /// The baseline's error rate in it.
    #[serde(deserialize_with = "crate::domain::non_finite::f64")]
    pub baseline_rate: f64,
    /// The exact conditional p-value.
    #[serde(deserialize_with = "crate::domain::non_finite::f64")]
    pub p_value: f64,
    /// The p-value that would have failed the metric (the window's share of the budget).
    #[serde(deserialize_with = "crate::domain::non_finite::f64")]
    pub needed: f64,
}

/// The sequential evidence of one metric at one look.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SequentialEvidence {
    /// Every check of the metric.
    pub checks: Vec<CheckEvidence>,
    /// Whether every location check excluded harm at this stage.
    pub harm_excluded: bool,
    /// Samples or events seen at this stage, baseline and canary.
    #[serde(deserialize_with = "crate::domain::non_finite::pair")]
    pub stage_samples: [f64; 2],
}

/// What a sequential look adds to the fixed judgement.
#[derive(Debug, Clone, PartialEq)]
pub struct SequentialOutcome {
    /// Whether every comparative metric excluded harm at this stage (early advance).
    pub harm_excluded: bool,
}

/// One check's share of `judge_budget`: the budget divided equally among the profile's
/// checks (see the module docs).
pub fn check_alpha(profile: &Profile, judge_budget: f64) -> f64 {
    let mut units = 0usize;
    let mut rate_thresholds = false;
    for metric in &profile.metrics {
        match metric.kind {
            MetricKind::Continuous(_) => units += 1 + usize::from(metric.tails),
            MetricKind::Proportion(_) => units += 1 + usize::from(metric.bursts.is_some()),
            MetricKind::Threshold(_) => rate_thresholds |= metric.counted(),
        }
    }
    units += usize::from(rate_thresholds);
    judge_budget / units.max(1) as f64
}

/// The chained e-value: the average over start stages of the products of the stage
/// e-processes from that stage on; stages not yet reached count 1.
fn chained_ln_e(completed: &[f64], current: f64, stages: usize) -> f64 {
    let stages = stages.max(completed.len() + 1);
    let mut terms: Vec<f64> = Vec::with_capacity(stages);
    let mut suffix = current;
    terms.push(suffix);
    for &earlier in completed.iter().rev() {
        suffix += earlier;
        terms.push(suffix);
    }
    terms.extend(std::iter::repeat_n(0.0, stages - completed.len() - 1));
    let max = terms.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let sum: f64 = terms.iter().map(|t| (t - max).exp()).sum();
    max + (sum / stages as f64).ln()
}

/// Finite, positive samples of a side, or none.
fn values(data: Option<&MetricData>) -> Vec<f64> {
    match data {
        Some(MetricData::Samples { samples, .. }) => samples
            .iter()
            .map(|s| s.value)
            .filter(|v| v.is_finite())
            .collect(),
        _ => Vec::new(),
    }
}

/// Per-timestamp (errors, total) of a side, summed over its series.
fn counts(data: Option<&MetricData>) -> BTreeMap<i64, (f64, f64)> {
    let mut by_time = BTreeMap::new();
    if let Some(MetricData::Counts { errors, total, .. }) = data {
        for (e, t) in errors.iter().zip(total) {
            if e.value.is_finite() && t.value.is_finite() {
                let entry = by_time
                    .entry((t.timestamp * 1000.0).round() as i64)
                    .or_insert((0.0, 0.0));
                entry.0 += e.value;
                entry.1 += t.value;
            }
        }
    }
    by_time
}

/// The median of a sample (NaN when it is empty).
fn median_of(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    crate::stats::quantiles::median_sorted(&sorted).unwrap_or(f64::NAN)
}

/// The prior scale of a rank check's mixture, from the information it is tuned for.
///
/// Location checks are tuned for one interval's batch of a single series (about `6` per
/// sample pair, `12 n m / (n + m + 1)` for equal batches, the tails check's batches
/// being at least [`MIN_SPREAD_POINTS`] a side), so the boundary is tightest
/// at the first looks, where a large regression should be caught; later looks pay only
/// a `√(log I)` growth of the boundary. Tails checks are tuned for two stages' worth
/// of data: a change of spread shows slowly, and its evidence carries across stages.
fn tau2_for(key: &str, alpha: f64, plan: &RolloutPlan, stage_index: usize) -> f64 {
    let stage = &plan.stages[stage_index.min(plan.stages.len() - 1)];
    let window = if key.ends_with(":tails") {
        2.0 * stage.duration.seconds()
    } else {
        stage.interval.seconds()
    };
    let samples = window / plan.settings.step.seconds();
    // The tails check compares batches of `n ≥ MIN_SPREAD_POINTS` points a side,
    // information `12 n²/(2n + 1)`, `12 n/(2n + 1)` per point of a side.
    let per_sample = if key.ends_with(":tails") {
        let per_look = (stage.interval.seconds() / plan.settings.step.seconds()).floor();
        let n = per_look.max(MIN_SPREAD_POINTS as f64);
        12.0 * n / (2.0 * n + 1.0)
    } else {
        6.0
    };
    tuned_tau2(alpha, (per_sample * samples).max(6.0))
}

/// Whether both sides' samples are positive, so the comparison can be on the log scale.
fn all_positive(a: &[f64], b: &[f64]) -> bool {
    a.iter().chain(b).all(|v| *v > 0.0)
}

/// Adds this look's batch to the state and replaces the comparative metrics'
/// classifications in `judgement` with the sequential ones (then re-decides).
#[allow(clippy::too_many_arguments)]
pub fn judge_look(
    profile: &Profile,
    plan: &RolloutPlan,
    stage_index: usize,
    judge_budget: f64,
    baseline_batch: &Observations,
    canary_batch: &Observations,
    state: &mut SequentialState,
    judgement: Judgement,
) -> (Judgement, SequentialOutcome) {
    let alpha = check_alpha(profile, judge_budget);
    let stages = plan.stages.len();
    let tuning = |key: &str| tau2_for(key, alpha, plan, stage_index);
    let mut harm_excluded_all = true;
    let mut metrics = Vec::with_capacity(judgement.metrics.len());
    for mut result in judgement.metrics {
        let Some(spec) = profile.metric(&result.name) else {
            metrics.push(result);
            continue;
        };
        let baseline = baseline_batch.metrics.get(&spec.name);
        let canary = canary_batch.metrics.get(&spec.name);
        let evidence = match &spec.kind {
            MetricKind::Continuous(kind) => Some(continuous(
                (spec, *kind),
                result.relative_shift,
                &values(baseline),
                &values(canary),
                Instances {
                    baseline: baseline_batch.instances.get(&spec.name).map(Vec::as_slice),
                    canary: canary_batch.instances.get(&spec.name).map(Vec::as_slice),
                    prior_spread: profile.judge.host_spread,
                },
                state,
                alpha,
                &tuning,
                stages,
            )),
            MetricKind::Proportion(kind) => Some(proportion(
                (spec, *kind),
                plan,
                &counts(baseline),
                &counts(canary),
                CountInstances {
                    baseline: baseline_batch.count_instances.get(&spec.name),
                    canary: canary_batch.count_instances.get(&spec.name),
                    prior_spread: profile.judge.error_host_spread,
                },
                state,
                alpha,
                stages,
            )),
            MetricKind::Threshold(_) => None,
        };
        if let Some(evidence) = evidence {
            harm_excluded_all &= evidence.harm_excluded;
            classify(spec, &mut result, evidence);
        }
        metrics.push(result);
    }
    // The look's level and correction, as the fixed judge used them for thresholds.
    let mut judged = super::decide::decide(profile, judgement.confidence_level, metrics);
    judged.multiple_comparisons = judgement.multiple_comparisons;
    let harm_excluded = harm_excluded_all
        && judged
            .metrics
            .iter()
            .all(|m| m.classification == Classification::Pass);
    (judged, SequentialOutcome { harm_excluded })
}

/// Moves every check's current stage into its completed stages (the runner calls this
/// when a stage advances).
pub fn complete_stage(
    state: &mut SequentialState,
    profile: &Profile,
    plan: &RolloutPlan,
    stage_index: usize,
    judge_budget: f64,
) {
    let alpha = check_alpha(profile, judge_budget);
    for (name, check) in state.checks.iter_mut() {
        let ln_m = current_ln_e(name, check, tau2_for(name, alpha, plan, stage_index));
        check.completed.push(ln_m);
        check.rank = None;
        check.rank_safe = None;
        check.rate_harm = None;
        check.rate_safe = None;
        // Points of different stages (different traffic) are never compared together.
        check.pending = None;
    }
    state.stage_counts.clear();
    state.burst_pending.clear();
    state.instances.clear();
    state.count_instances.clear();
}

/// The check's current-stage `ln M`, in its harmful direction.
fn current_ln_e(key: &str, check: &CheckState, tau2: f64) -> f64 {
    if let Some(rate) = &check.rate_harm {
        return rate.ln_e();
    }
    match &check.rank {
        Some(rank) if key.ends_with(":decrease") => rank.ln_e_less(tau2),
        Some(rank) => rank.ln_e_greater(tau2),
        None => 0.0,
    }
}

/// The fields every e-process check shares; the caller fills in the rest.
fn evidence(
    key: &str,
    null: String,
    (ln_e, stage_ln): (f64, f64),
    alpha: f64,
    beyond_tolerance: bool,
    effect: String,
) -> CheckEvidence {
    let threshold = 1.0 / alpha;
    let crossed = ln_e >= threshold.ln();
    CheckEvidence {
        check: key.split(':').skip(1).collect::<Vec<_>>().join("_"),
        null,
        e_value: ln_e.exp(),
        ln_e_value: ln_e,
        stage_e_value: stage_ln.exp(),
        threshold,
        alpha,
        crossed,
        beyond_tolerance,
        effect,
        fails: crossed && beyond_tolerance,
        harm_excluded_e_value: None,
        estimate: None,
        interval: None,
        information: 0.0,
        worst_window: None,
        host_allowance: None,
        pooled_bursts: None,
    }
}

#[allow(clippy::too_many_arguments)]
fn rank_check(
    key: &str,
    null: String,
    increment: Option<(f64, f64)>,
    safe_increment: Option<Option<(f64, f64)>>,
    (beyond_tolerance, effect): (bool, String),
    state: &mut SequentialState,
    alpha: f64,
    tuning: &dyn Fn(&str) -> f64,
    stages: usize,
) -> CheckEvidence {
    let tau2 = tuning(key);
    let check = state.checks.entry(key.to_owned()).or_default();
    let rank = check.rank.get_or_insert_with(RankEvidence::default);
    rank.add(increment);
    let rank = *rank;
    let decrease = key.ends_with(":decrease");
    let safe_ln = safe_increment.map(|increment| {
        let safe = check.rank_safe.get_or_insert_with(RankEvidence::default);
        safe.add(increment);
        if decrease {
            safe.ln_e_greater(tau2)
        } else {
            safe.ln_e_less(tau2)
        }
    });
    let stage_ln = if decrease {
        rank.ln_e_less(tau2)
    } else {
        rank.ln_e_greater(tau2)
    };
    let ln_e = chained_ln_e(&check.completed, stage_ln, stages);
    let location = !key.ends_with(":tails");
    CheckEvidence {
        harm_excluded_e_value: safe_ln.map(f64::exp),
        estimate: rank
            .centred_superiority()
            .filter(|_| location)
            .map(|c| if decrease { 0.5 - c } else { 0.5 + c }),
        interval: (location && rank.information > 0.0)
            .then(|| {
                rank.superiority_interval(tau2, alpha).map(|[lo, hi]| {
                    if decrease {
                        [1.0 - hi, 1.0 - lo]
                    } else {
                        [lo, hi]
                    }
                })
            })
            .flatten(),
        information: rank.information,
        ..evidence(key, null, (ln_e, stage_ln), alpha, beyond_tolerance, effect)
    }
}

/// A look's points per instance of one continuous metric, when its series name them,
/// and the profile's prior for how much instances differ.
struct Instances<'a> {
    baseline: Option<&'a [InstanceSeries]>,
    canary: Option<&'a [InstanceSeries]>,
    prior_spread: f64,
}

impl Instances<'_> {
    /// Adds the look's per-instance points to the stage's, and the host allowance they
    /// give at `alpha` (none without named instances).
    fn allowance(
        &self,
        spec: &MetricSpec,
        state: &mut SequentialState,
        alpha: f64,
    ) -> Option<HostAllowance> {
        if self.baseline.is_some() || self.canary.is_some() {
            state
                .instances
                .entry(spec.name.clone())
                .or_default()
                .observe(
                    self.baseline.unwrap_or_default(),
                    self.canary.unwrap_or_default(),
                );
        }
        state
            .instances
            .get(&spec.name)
            .and_then(|stage| allowance(stage, self.prior_spread, alpha))
    }

    /// Both sides' points each relative to its instance's mean level at this stage, when
    /// both sides name their instances and every point is positive.
    fn centred(&self, spec: &MetricSpec, state: &SequentialState) -> Option<(Vec<f64>, Vec<f64>)> {
        match (self.baseline, self.canary, state.instances.get(&spec.name)) {
            (Some(baseline_instances), Some(canary_instances), Some(stage))
                if !stage.non_positive =>
            {
                Some((
                    within_instances(baseline_instances, &stage.baseline),
                    within_instances(canary_instances, &stage.canary),
                ))
            }
            _ => None,
        }
    }
}

impl SequentialState {
    /// Adds a look's sample (or event) counts, baseline and canary, one batch after
    /// another, to `metric`'s at this stage and returns the stage's totals.
    fn count_stage(
        &mut self,
        metric: &str,
        batches: impl IntoIterator<Item = (f64, f64)>,
    ) -> [f64; 2] {
        let counted = self.stage_counts.entry(metric.to_owned()).or_default();
        for (baseline, canary) in batches {
            counted.0 += baseline;
            counted.1 += canary;
        }
        [counted.0, counted.1]
    }
}

/// A check's share of `alpha`: half for each direction of a two-sided metric.
fn share_of(direction: Direction, alpha: f64) -> f64 {
    if direction == Direction::Either {
        alpha / 2.0
    } else {
        alpha
    }
}

/// The location shift in words, for a check's effect.
fn shift_words(relative_shift: Option<f64>) -> String {
    relative_shift.map_or_else(
        || "no shift estimate".to_owned(),
        |shift| format!("shift {} of the baseline median", signed_percent(shift)),
    )
}

/// The scale a look's location checks compare on: logarithms when every point is
/// positive (a relative shift), the values themselves otherwise.
struct Scale<'a> {
    log: bool,
    baseline: &'a [f64],
    canary: &'a [f64],
    base_median: Option<f64>,
}

impl<'a> Scale<'a> {
    fn of(baseline: &'a [f64], canary: &'a [f64]) -> Self {
        Scale {
            log: all_positive(baseline, canary),
            baseline,
            canary,
            base_median: (!baseline.is_empty()).then(|| median_of(baseline)),
        }
    }

    /// The baseline on this scale.
    fn baseline(&self) -> Vec<f64> {
        if self.log {
            self.baseline.iter().map(|b| b.ln()).collect()
        } else {
            self.baseline.to_vec()
        }
    }

    /// The canary's samples moved by `factor`, so "no worse than `factor` times the
    /// baseline" is the null the ranks test.
    fn shifted(&self, factor: f64) -> Vec<f64> {
        if self.log {
            self.canary.iter().map(|c| c.ln() - factor.ln()).collect()
        } else {
            let offset = self.base_median.map_or(0.0, |m| (factor - 1.0) * m.abs());
            self.canary.iter().map(|c| c - offset).collect()
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn continuous(
    (spec, kind): (&MetricSpec, ContinuousKind),
    relative_shift: Option<f64>,
    baseline: &[f64],
    canary: &[f64],
    instances: Instances<'_>,
    state: &mut SequentialState,
    alpha: f64,
    tuning: &dyn Fn(&str) -> f64,
    stages: usize,
) -> SequentialEvidence {
    let ContinuousKind {
        direction,
        allowed_increase,
        allowed_decrease,
    } = kind;
    let sizes = [(baseline.len() as f64, canary.len() as f64)];
    let stage_samples = state.count_stage(&spec.name, sizes);
    let scale = Scale::of(baseline, canary);
    let (log_scale, base) = (scale.log, scale.baseline());
    let shifted = |factor: f64| scale.shifted(factor);
    let mut checks = Vec::new();
    let share = share_of(direction, alpha);
    // Host differences (see [`super::hosts`]): when the series name their instances, the
    // location checks test beyond the allowance, at half their share; the allowance
    // takes the other half.
    let host = instances
        .allowance(spec, state, allowance_alpha(share, stages))
        .filter(|_| log_scale);
    let HostSplit {
        share,
        factor: host_factor,
        note: host_note,
        beyond_hosts,
    } = HostSplit::of(host.as_ref(), share, "host_spread", |host| {
        format!("a difference up to {}", signed_percent(host.relative()))
    });
    let effect = shift_words(relative_shift);
    let location = |suffix: &str,
                    null: String,
                    factor: f64,
                    tolerated_factor: Option<f64>,
                    (beyond_tolerance, tolerance): (bool, f64),
                    state: &mut SequentialState| {
        let mut check = rank_check(
            &format!("{}:{suffix}", spec.name),
            null,
            rank_increment(&base, &shifted(factor)),
            tolerated_factor.map(|factor| rank_increment(&base, &shifted(factor))),
            (
                beyond_tolerance,
                format!(
                    "{effect} (tolerated: {}){host_note}",
                    signed_percent(tolerance)
                ),
            ),
            state,
            share,
            tuning,
            stages,
        );
        check.host_allowance = host;
        check
    };
    if matches!(direction, Direction::Increase | Direction::Either) {
        checks.push(location(
            "location",
            format!("the canary is no higher than the baseline{beyond_hosts}"),
            host_factor,
            (allowed_increase > 0.0).then_some((1.0 + allowed_increase) / host_factor),
            (
                relative_shift.is_some_and(|shift| shift > allowed_increase),
                allowed_increase,
            ),
            state,
        ));
    }
    if matches!(direction, Direction::Decrease | Direction::Either) {
        checks.push(location(
            "location:decrease",
            format!("the canary is no lower than the baseline{beyond_hosts}"),
            1.0 / host_factor,
            (allowed_decrease > 0.0).then_some((1.0 - allowed_decrease) * host_factor),
            (
                relative_shift.is_some_and(|shift| shift < -allowed_decrease),
                -allowed_decrease,
            ),
            state,
        ));
    }
    let harm_excluded = checks
        .iter()
        .all(|c| c.harm_excluded_e_value.is_some_and(|e| e >= c.threshold));
    if spec.tails {
        // Instances differ in level, so a side's points scatter by the instances' levels
        // as well as by the version's own spread; with the instances named, each point
        // is taken relative to its instance's mean level at this stage, and the check
        // compares the spread within instances, which is the version's.
        let centred = instances.centred(spec, state).filter(|_| log_scale);
        let sides = centred
            .as_ref()
            .map_or((baseline, canary), |(b, c)| (b.as_slice(), c.as_slice()));
        checks.push(tails_check(
            spec,
            allowed_increase,
            sides,
            state,
            alpha,
            tuning,
            stages,
        ));
    }
    SequentialEvidence {
        checks,
        harm_excluded,
        stage_samples,
    }
}

/// Each positive point of `instances` divided by its instance's mean level (the
/// geometric mean of its points at this stage), so that the points of instances at
/// different levels scatter around one level.
fn within_instances(
    instances: &[InstanceSeries],
    levels: &BTreeMap<String, super::hosts::Moments>,
) -> Vec<f64> {
    instances
        .iter()
        .flat_map(|one| {
            let level = levels.get(&one.instance).map_or(0.0, |m| m.mean);
            one.samples
                .iter()
                .filter(|s| s.value.is_finite() && s.value > 0.0)
                .map(move |s| (s.value.ln() - level).exp())
        })
        .collect()
}

/// The tails check: this look's points join the ones waiting (see [`PendingPoints`]);
/// once both sides have enough, their deviations from their own medians are compared,
/// the canary's divided by `1 + allowed_increase` (on the log scale when every value is
/// positive, so the tolerance is a ratio of spreads).
fn tails_check(
    spec: &MetricSpec,
    allowed_increase: f64,
    (baseline, canary): (&[f64], &[f64]),
    state: &mut SequentialState,
    alpha: f64,
    tuning: &dyn Fn(&str) -> f64,
    stages: usize,
) -> CheckEvidence {
    let key = format!("{}:tails", spec.name);
    let pending = state
        .checks
        .entry(key.clone())
        .or_default()
        .pending
        .get_or_insert_with(PendingPoints::default);
    let compared = pending.add(baseline, canary);
    let (waiting_baseline, waiting_canary) = pending.waiting();
    let (increment, spread_effect) = match compared {
        Some((base_points, canary_points)) => {
            let log_scale = all_positive(&base_points, &canary_points);
            let scale = |values: &[f64]| -> Vec<f64> {
                if log_scale {
                    values.iter().map(|v| v.ln()).collect()
                } else {
                    values.to_vec()
                }
            };
            let (base, canary) = (scale(&base_points), scale(&canary_points));
            // For the reason: the ratio of the sides' standard deviations.
            let sd = |values: &[f64]| {
                let n = values.len() as f64;
                let mean = values.iter().sum::<f64>() / n;
                (values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0)).sqrt()
            };
            let ratio = sd(&canary) / sd(&base);
            let effect = if ratio.is_finite() {
                format!(
                    "canary spread ×{} the baseline's in the latest comparison (standard deviations of {} and {} points{})",
                    number(ratio),
                    base.len(),
                    canary.len(),
                    if log_scale { ", log scale" } else { "" }
                )
            } else {
                "no spread to compare in the latest comparison".to_owned()
            };
            (
                spread_increment(&base, &canary, 1.0 + allowed_increase),
                effect,
            )
        }
        None => (
            None,
            format!(
                "no comparison at this look: spread is compared over at least {MIN_SPREAD_POINTS} \
                 points per side ({waiting_baseline} baseline and {waiting_canary} canary points waiting)"
            ),
        ),
    };
    rank_check(
        &key,
        format!(
            "the canary's spread is at most {} above the baseline's",
            percent(allowed_increase)
        ),
        increment,
        None,
        (true, spread_effect),
        state,
        alpha,
        tuning,
        stages,
    )
}

/// One look's counts per instance of a proportion metric, and the prior for how much
/// instances' error rates differ.
struct CountInstances<'a> {
    baseline: Option<&'a Vec<InstanceCounts>>,
    canary: Option<&'a Vec<InstanceCounts>>,
    prior_spread: f64,
}

/// A location check with or without the host allowance: half its share goes to the
/// allowance, its null moves by `e^margin`, and its reasons say what cannot be told
/// from host differences.
struct HostSplit {
    /// The check's share of the budget left to its e-process.
    share: f64,
    /// The null's factor, `e^margin` (1 without the allowance).
    factor: f64,
    /// The report's sentence on the allowance ("; a difference up to … cannot be told
    /// from host differences with …"), empty without it.
    note: String,
    /// Words the null gains: " beyond host differences", or nothing.
    beyond_hosts: &'static str,
}

impl HostSplit {
    /// `difference` words what the allowance cannot tell apart; `prior` names the
    /// profile setting behind the spread.
    fn of(
        host: Option<&HostAllowance>,
        share: f64,
        prior: &str,
        difference: impl Fn(&HostAllowance) -> String,
    ) -> Self {
        let Some(host) = host else {
            return Self {
                share,
                factor: 1.0,
                note: String::new(),
                beyond_hosts: "",
            };
        };
        let note = host.note(&difference(host), prior);
        Self {
            share: share / 2.0,
            factor: host.margin.exp(),
            note,
            beyond_hosts: " beyond host differences",
        }
    }
}

/// One look's points of a proportion metric and what its rate checks share.
struct RateLook<'a> {
    points: &'a [(i64, RatePoint)],
    share: f64,
    host: Option<HostAllowance>,
    host_note: &'a str,
    stages: usize,
}

impl RateLook<'_> {
    /// Adds the look's points to one rate check's e-processes and gives its evidence.
    /// The nulls are ratios before the host allowance: harm's, and (when there is a
    /// tolerance) harm-excluded's.
    fn check(
        &self,
        state: &mut SequentialState,
        key: String,
        null: String,
        (harm, safe): ((RateEvidence, f64), Option<(RateEvidence, f64)>),
        beyond: &dyn Fn(Option<f64>) -> bool,
        tolerated: String,
    ) -> CheckEvidence {
        let check = state.checks.entry(key.clone()).or_default();
        let (harm, harm_null) = harm;
        let harm = check.rate_harm.get_or_insert(harm);
        for (_, p) in self.points {
            harm.add_against(*p, harm_null);
        }
        let safe_null = safe.as_ref().map(|(_, null)| *null);
        if check.rate_safe.is_none() {
            check.rate_safe = safe.map(|(evidence, _)| evidence);
        }
        if let (Some(safe), Some(safe_null)) = (check.rate_safe.as_mut(), safe_null) {
            for (_, p) in self.points {
                safe.add_against(*p, safe_null);
            }
        }
        let stage_ln = check.rate_harm.as_ref().map_or(0.0, RateEvidence::ln_e);
        let ln_e = chained_ln_e(&check.completed, stage_ln, self.stages);
        let harm = check.rate_harm.as_ref().expect("set above");
        let effect = match harm.ratio() {
            Some(ratio) => format!(
                "error-rate ratio ×{} this stage (tolerated: {tolerated})",
                number(ratio)
            ),
            None => format!("no baseline errors this stage (tolerated: {tolerated})"),
        };
        CheckEvidence {
            harm_excluded_e_value: check.rate_safe.as_ref().map(|s| s.ln_e().exp()),
            estimate: harm.ratio(),
            information: harm.canary_errors + harm.baseline_errors,
            host_allowance: self.host,
            ..evidence(
                &key,
                null,
                (ln_e, stage_ln),
                self.share,
                beyond(harm.ratio()),
                format!("{effect}{}", self.host_note),
            )
        }
    }
}

/// The steps both sides counted, paired by time.
fn rate_points(
    baseline: &BTreeMap<i64, (f64, f64)>,
    canary: &BTreeMap<i64, (f64, f64)>,
) -> Vec<(i64, RatePoint)> {
    canary
        .iter()
        .filter_map(|(t, &(ec, nc))| {
            baseline.get(t).map(|&(eb, nb)| {
                (
                    *t,
                    RatePoint {
                        baseline_errors: eb,
                        baseline_total: nb,
                        canary_errors: ec,
                        canary_total: nc,
                    },
                )
            })
        })
        .collect()
}

impl CountInstances<'_> {
    /// Adds the look's per-instance counts to the stage's, and the error-rate host
    /// allowance they give at `alpha` (none without named instances).
    fn allowance(
        &self,
        spec: &MetricSpec,
        state: &mut SequentialState,
        alpha: f64,
    ) -> Option<HostAllowance> {
        if self.baseline.is_some() || self.canary.is_some() {
            state
                .count_instances
                .entry(spec.name.clone())
                .or_default()
                .observe(
                    self.baseline.map_or(&[][..], Vec::as_slice),
                    self.canary.map_or(&[][..], Vec::as_slice),
                );
        }
        state
            .count_instances
            .get(&spec.name)
            .and_then(|stage| rate_allowance(stage, self.prior_spread, alpha))
    }
}

#[allow(clippy::too_many_arguments)]
fn proportion(
    (spec, kind): (&MetricSpec, ProportionKind),
    plan: &RolloutPlan,
    baseline: &BTreeMap<i64, (f64, f64)>,
    canary: &BTreeMap<i64, (f64, f64)>,
    instances: CountInstances<'_>,
    state: &mut SequentialState,
    alpha: f64,
    stages: usize,
) -> SequentialEvidence {
    let ProportionKind {
        direction,
        max_ratio,
        min_ratio,
    } = kind;
    let points = rate_points(baseline, canary);
    let totals = points
        .iter()
        .map(|(_, p)| (p.baseline_total, p.canary_total));
    let stage_samples = state.count_stage(&spec.name, totals);
    let share = share_of(direction, alpha);
    // Host differences in error rate (see [`super::hosts`]): when the series name their
    // instances, the error-rate checks test beyond the allowance, at half their share.
    let host = instances.allowance(spec, state, allowance_alpha(share, stages));
    let HostSplit {
        share,
        factor: host_factor,
        note: host_note,
        beyond_hosts,
    } = HostSplit::of(host.as_ref(), share, "error_host_spread", |host| {
        format!("an error-rate ratio up to ×{}", number(host.margin.exp()))
    });
    let mut checks = Vec::new();
    let look = RateLook {
        points: &points,
        share,
        host,
        host_note: &host_note,
        stages,
    };
    if matches!(direction, Direction::Increase | Direction::Either) {
        let tolerated = max_ratio.unwrap_or(1.0);
        checks.push(look.check(
            state,
            format!("{}:location", spec.name),
            format!("the canary's error rate is no higher than the baseline's{beyond_hosts}"),
            (
                (RateEvidence::harm(1.0), host_factor),
                (tolerated > 1.0).then(|| {
                    let null = tolerated / host_factor;
                    (RateEvidence::safety(null), null)
                }),
            ),
            &|ratio| ratio.is_none_or(|r| r > tolerated),
            format!("×{}", number(tolerated)),
        ));
    }
    if matches!(direction, Direction::Decrease | Direction::Either) {
        let tolerated = min_ratio.unwrap_or(1.0);
        checks.push(look.check(
            state,
            format!("{}:location:decrease", spec.name),
            format!("the canary's rate is no lower than the baseline's{beyond_hosts}"),
            (
                (RateEvidence::safety(1.0), 1.0 / host_factor),
                (tolerated < 1.0).then(|| {
                    let null = tolerated * host_factor;
                    (RateEvidence::harm(null), null)
                }),
            ),
            &|ratio| ratio.is_some_and(|r| r < tolerated),
            format!("×{}", number(tolerated)),
        ));
    }
    let harm_excluded = checks
        .iter()
        .all(|c| c.harm_excluded_e_value.is_some_and(|e| e >= c.threshold));
    if let Some(window) = spec.bursts {
        // Not beyond the host allowance: a host's steady difference hardly moves the
        // bursts evidence, which looks for windows several times the tolerated ratio,
        // and the allowance at a 1 % stage (one pod a side) would hide the bursts there.
        let theta0 = max_ratio.unwrap_or(1.0);
        checks.push(bursts(spec, plan, &points, window, state, alpha, theta0));
    }
    SequentialEvidence {
        checks,
        harm_excluded,
        stage_samples,
    }
}

fn bursts(
    spec: &MetricSpec,
    plan: &RolloutPlan,
    points: &[(i64, RatePoint)],
    window_length: crate::domain::HumanDuration,
    state: &mut SequentialState,
    alpha: f64,
    theta0: f64,
) -> CheckEvidence {
    let window = window_length.seconds();
    let planned_seconds: f64 = plan.stages.iter().map(|s| s.duration.seconds()).sum();
    let planned_windows = (planned_seconds / window).ceil().max(1.0) as u64;
    let window_ms = (window * 1000.0).round().max(1.0) as i64;
    let mut windows: BTreeMap<i64, RatePoint> = BTreeMap::new();
    if let Some(open) = state.burst_pending.remove(&spec.name) {
        windows.insert(open.index, open.counts);
    }
    for (t, p) in points {
        // Windows are (k·w, (k+1)·w], like the looks' (previous, now] batches.
        let w = windows.entry((t - 1).div_euclid(window_ms)).or_default();
        w.baseline_errors += p.baseline_errors;
        w.baseline_total += p.baseline_total;
        w.canary_errors += p.canary_errors;
        w.canary_total += p.canary_total;
    }
    // The latest window is complete once a point at its end has been seen; until then
    // it waits for the next look, so a window is tested once, whole, however many looks
    // it spans (testing each look's part would spend the budget on more, smaller
    // windows than planned).
    let last_time = points.last().map(|(t, _)| *t);
    if let Some((&index, &counts)) = windows.last_key_value()
        && last_time.is_none_or(|t| t < (index + 1) * window_ms)
    {
        windows.remove(&index);
        state
            .burst_pending
            .insert(spec.name.clone(), OpenWindow { index, counts });
    }
    let tested = state.burst_windows.entry(spec.name.clone()).or_default();
    let pooled = state
        .burst_pooled
        .entry(spec.name.clone())
        .or_insert_with(|| vec![0.0; BURST_SHARES.len()]);
    let mut worst: Option<BurstWindow> = None;
    let mut crossed = false;
    for (index, w) in &windows {
        let errors = w.canary_errors + w.baseline_errors;
        if errors <= 0.0 || w.canary_total <= 0.0 || w.baseline_total <= 0.0 {
            continue;
        }
        *tested += 1;
        for (ln_e, factor) in pooled.iter_mut().zip(pooled_burst_factor(w, theta0)) {
            *ln_e += factor;
        }
        // Half the check's budget tests each window alone, half pools them.
        let needed = spend(alpha / 2.0, planned_windows, *tested);
        let p0 = w.canary_total * theta0 / (w.canary_total * theta0 + w.baseline_total);
        let p_value = binomial_upper_tail(w.canary_errors as u64, errors as u64, p0);
        let this = BurstWindow {
            until: ((index + 1) * window_ms) as f64 / 1000.0,
            canary_rate: w.canary_errors / w.canary_total,
            baseline_rate: w.baseline_errors / w.baseline_total,
            p_value,
            needed,
        };
        crossed |= p_value <= needed;
        if worst
            .as_ref()
            .is_none_or(|w| p_value / needed < w.p_value / w.needed)
        {
            worst = Some(this);
        }
    }
    // The pooled e-process: the average of the per-share products (each an e-process,
    // so their average is one), failing at 2/alpha.
    let ln_pooled = log_mean_exp(pooled);
    let ln_pooled_needed = (2.0 / alpha).ln();
    crossed |= ln_pooled >= ln_pooled_needed;
    // Against a threshold of 1: the worst window's needed / p, or the pooled e-value
    // over its threshold, whichever is closer to failing.
    // Without a window tested yet the per-window side is at its threshold (e = 1).
    let ln_window = worst
        .as_ref()
        .map_or(0.0, |w| (w.needed / w.p_value.max(f64::MIN_POSITIVE)).ln());
    let ln_e_value = ln_window.max(ln_pooled - ln_pooled_needed);
    CheckEvidence {
        check: "bursts".to_owned(),
        null: format!(
            "no {} window has a canary error rate above baseline × {}",
            window_length,
            number(theta0)
        ),
        e_value: ln_e_value.exp(),
        ln_e_value,
        stage_e_value: 1.0,
        threshold: 1.0,
        alpha,
        crossed,
        beyond_tolerance: crossed,
        effect: format!("{} windows tested so far", tested),
        pooled_bursts: Some([ln_pooled.exp(), ln_pooled_needed.exp()]),
        fails: crossed,
        harm_excluded_e_value: None,
        estimate: worst.as_ref().map(|w| {
            if w.baseline_rate > 0.0 {
                w.canary_rate / w.baseline_rate
            } else {
                f64::INFINITY
            }
        }),
        interval: None,
        information: *tested as f64,
        worst_window: worst,
        host_allowance: None,
    }
}

/// The burst shares the pooled bursts e-process mixes over: the share of windows a
/// burst pattern is assumed to touch.
pub const BURST_SHARES: [f64; 4] = [0.01, 0.03, 0.1, 0.3];

/// The burst sizes (canary error rate over baseline × the tolerated ratio) the pooled
/// bursts e-process mixes over.
pub const BURST_RATIOS: [f64; 4] = [2.0, 4.0, 8.0, 16.0];

/// `ln` of one window's factor in each pooled bursts e-process (one per share `π` in
/// [`BURST_SHARES`]): `(1 − π) + π·L`, where `L` is the window's likelihood ratio
/// averaged over the burst sizes in [`BURST_RATIOS`]. Given the window's errors on
/// both sides, the canary's count is binomial with `q0 = c·θ0 / (c·θ0 + b)` (`c`, `b`
/// the sides' requests) under the tolerated ratio `θ0`, and `q1` likewise under
/// `θ0 × r`; each ratio's likelihood ratio has expectation at most 1 under any ratio up
/// to `θ0` (monotone likelihood ratio), so each factor does too, and the product over
/// windows is a test supermartingale. A window with many errors at the canary's share
/// adds a little; a run of small windows each with a few too many canary errors (bursts
/// at a 1 % stage, none significant alone) adds up.
pub fn pooled_burst_factor(window: &RatePoint, theta0: f64) -> Vec<f64> {
    let (c, b) = (window.canary_total, window.baseline_total);
    let q0 = c * theta0 / (c * theta0 + b);
    let ln_ratios: Vec<f64> = BURST_RATIOS
        .iter()
        .map(|r| {
            let theta1 = theta0 * r;
            let q1 = c * theta1 / (c * theta1 + b);
            window.canary_errors * (q1.ln() - q0.ln())
                + window.baseline_errors * ((1.0 - q1).ln() - (1.0 - q0).ln())
        })
        .collect();
    let ln_l = log_mean_exp(&ln_ratios);
    BURST_SHARES
        .iter()
        .map(|share| log_add_exp((1.0 - share).ln(), share.ln() + ln_l))
        .collect()
}

/// `ln(mean(exp(values)))`, without overflow.
fn log_mean_exp(values: &[f64]) -> f64 {
    let max = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    if !max.is_finite() {
        return max;
    }
    let sum: f64 = values.iter().map(|v| (v - max).exp()).sum();
    max + (sum / values.len() as f64).ln()
}

/// `ln(exp(a) + exp(b))`, without overflow.
fn log_add_exp(a: f64, b: f64) -> f64 {
    let max = a.max(b);
    if max == f64::NEG_INFINITY {
        return max;
    }
    max + ((a - max).exp() + (b - max).exp()).ln()
}

/// Replaces a comparative metric's classification with the sequential one. Data
/// problems the fixed judge found (no data, NaN, gaps) stay inconclusive.
fn classify(spec: &MetricSpec, result: &mut MetricResult, evidence: SequentialEvidence) {
    // The runner judged the batch with `min_samples = 1` for comparative metrics, so an
    // inconclusive result here is a data problem, not a small batch.
    let unusable = matches!(
        result.classification,
        Classification::Error | Classification::Inconclusive
    );
    let [base_n, canary_n] = evidence.stage_samples;
    let unit = match spec.kind {
        MetricKind::Proportion(_) => "events",
        _ => "samples",
    };
    let failing: Vec<&CheckEvidence> = evidence.checks.iter().filter(|c| c.fails).collect();
    let have = base_n.min(canary_n);
    result.short_of_samples =
        (!unusable && have < spec.min_samples as f64).then_some(super::SampleShortfall {
            have,
            need: spec.min_samples,
        });
    let (classification, reason) = if unusable {
        (result.classification, result.reason.clone())
    } else if base_n.min(canary_n) < spec.min_samples as f64 {
        (
            Classification::Inconclusive,
            format!(
                "{} of {} required {unit} at this stage (baseline {}, canary {})",
                count(base_n.min(canary_n) as u64),
                count(spec.min_samples),
                count(base_n as u64),
                count(canary_n as u64)
            ),
        )
    } else if !failing.is_empty() {
        let texts: Vec<String> = failing.iter().map(|c| describe(c)).collect();
        (Classification::Fail, texts.join("; "))
    } else {
        let texts: Vec<String> = evidence.checks.iter().map(describe).collect();
        (
            Classification::Pass,
            format!("no anytime-valid evidence of harm: {}", texts.join("; ")),
        )
    };
    result.classification = classification;
    result.reason = reason;
    result.sequential = Some(evidence);
}

/// One check in words, with its numbers.
pub fn describe(check: &CheckEvidence) -> String {
    if let Some(window) = &check.worst_window {
        let pooled = check.pooled_bursts.map_or_else(String::new, |[e, needed]| {
            format!(
                "; pooled over {}: e = {} (fails at {})",
                check.effect.trim_end_matches(" tested so far"),
                number(e),
                number(needed)
            )
        });
        return format!(
            "worst {} window: canary error rate {} vs baseline {}, p = {} (fails at {}){pooled}{}",
            check.check,
            percent(window.canary_rate),
            percent(window.baseline_rate),
            crate::format::p_value(window.p_value, None),
            crate::format::p_value(window.needed, None),
            if check.crossed { ", a burst" } else { "" }
        );
    }
    let evidence = format!(
        "e = {} {} {} against \"{}\"",
        number_e(check.ln_e_value),
        if check.crossed { "≥" } else { "<" },
        number(check.threshold),
        check.null
    );
    let superiority = match (check.estimate, check.interval) {
        (Some(p), Some([lo, hi])) => format!(
            ", P(canary worse) {} (anytime-valid {}–{})",
            number(p),
            number(lo),
            number(hi)
        ),
        _ => String::new(),
    };
    format!("{}: {}; {evidence}{superiority}", check.check, check.effect)
}

fn number_e(ln_e: f64) -> String {
    if ln_e > 700.0 {
        format!("e^{}", number(ln_e))
    } else {
        number(ln_e.exp())
    }
}

/// A continuous metric with its settings, as the judge's dispatch passes it.
#[cfg(test)]
fn as_continuous(spec: &MetricSpec) -> (&MetricSpec, ContinuousKind) {
    match spec.kind {
        MetricKind::Continuous(kind) => (spec, kind),
        _ => panic!("{} is not continuous", spec.name),
    }
}

/// A proportion metric with its settings, as the judge's dispatch passes it.
#[cfg(test)]
fn as_proportion(spec: &MetricSpec) -> (&MetricSpec, ProportionKind) {
    match spec.kind {
        MetricKind::Proportion(kind) => (spec, kind),
        _ => panic!("{} is not a proportion", spec.name),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Location, Sample};

    const PROFILE: &str = r#"
name = "t"
[[metrics]]
name = "latency"
kind = "continuous"
allowed_increase = 0.05
tails = true
min_samples = 10
[[metrics]]
name = "errors"
kind = "proportion"
max_ratio = 1.2
bursts = "1m"
min_samples = 100
[rollout]
error_budget = 0.01
[[stages]]
traffic = 5
duration = "30m"
interval = "5m"
lookback = "5m"
[[stages]]
traffic = 50
duration = "30m"
interval = "5m"
lookback = "5m"
"#;

    fn profile() -> Profile {
        Profile::parse(PROFILE, "t.toml").unwrap()
    }

    use crate::sources::synthetic::SplitMix as Rng;

    /// One 5-minute batch (20 steps) of both sides: latency scaled by `slower`, errors
    /// at `rate` for the baseline and `rate × worse` for the canary.
    fn batch(rng: &mut Rng, start: f64, slower: f64, worse: f64) -> (Observations, Observations) {
        let side = |rng: &mut Rng, factor: f64, error_factor: f64| {
            let mut latency = Vec::new();
            let (mut errors, mut total) = (Vec::new(), Vec::new());
            for k in 1..=20 {
                let timestamp = start + 15.0 * k as f64;
                latency.push(Sample {
                    timestamp,
                    value: 0.2 * factor * (0.1 * rng.normal()).exp(),
                });
                let events = 1000.0;
                let expected = events * 0.01 * error_factor;
                let count = (expected + expected.sqrt() * rng.normal()).round().max(0.0);
                errors.push(Sample {
                    timestamp,
                    value: count,
                });
                total.push(Sample {
                    timestamp,
                    value: events,
                });
            }
            let origin = Location {
                file: "t.csv".to_owned(),
                line: 1,
            };
            Observations {
                metrics: BTreeMap::from([
                    (
                        "latency".to_owned(),
                        MetricData::Samples {
                            samples: latency,
                            origin: origin.clone(),
                        },
                    ),
                    (
                        "errors".to_owned(),
                        MetricData::Counts {
                            errors,
                            total,
                            origin,
                        },
                    ),
                ]),
                problems: BTreeMap::new(),
                instances: BTreeMap::new(),
                count_instances: BTreeMap::new(),
            }
        };
        (side(rng, 1.0, 1.0), side(rng, slower, worse))
    }

    fn look(
        profile: &Profile,
        state: &mut SequentialState,
        baseline: &Observations,
        canary: &Observations,
    ) -> (Judgement, SequentialOutcome) {
        let plan = profile.plan.clone().unwrap();
        let mut described_profile = profile.clone();
        for metric in &mut described_profile.metrics {
            metric.min_samples = 1;
        }
        let described = crate::judge::judge(&described_profile, baseline, canary);
        judge_look(profile, &plan, 0, 0.01, baseline, canary, state, described)
    }

    #[test]
    fn the_chained_evidence_averages_the_products_started_at_each_stage() {
        // Two stages, none completed: (M + 1) / 2.
        let ln = chained_ln_e(&[], 3.0_f64.ln(), 2);
        assert!((ln.exp() - 2.0).abs() < 1e-12);
        // One completed with M₁ = 4, current M₂ = 2: (4·2 + 2) / 2 = 5.
        let ln = chained_ln_e(&[4.0_f64.ln()], 2.0_f64.ln(), 2);
        assert!((ln.exp() - 5.0).abs() < 1e-12);
    }

    #[test]
    fn the_budget_is_shared_equally_among_the_checks() {
        // latency: location + tails; errors: location + bursts.
        assert!((check_alpha(&profile(), 0.01) - 0.0025).abs() < 1e-15);
    }

    #[test]
    fn a_healthy_canary_passes_with_the_numbers_and_a_regression_fails_within_a_few_looks() {
        let profile = profile();
        let mut rng = Rng(1);
        let mut state = SequentialState::default();
        for k in 0..6 {
            let (baseline, canary) = batch(&mut rng, k as f64 * 300.0, 1.0, 1.0);
            let (judgement, _) = look(&profile, &mut state, &baseline, &canary);
            assert_eq!(
                judgement.verdict,
                crate::domain::Verdict::Promote,
                "{:#?}",
                judgement.reasons
            );
            let latency = &judgement.metrics[0];
            let evidence = latency.sequential.as_ref().unwrap();
            assert_eq!(evidence.checks.len(), 2);
            assert!(latency.reason.contains("no anytime-valid evidence of harm"));
            assert!(evidence.checks.iter().all(|c| c.threshold == 400.0));
        }

        let mut state = SequentialState::default();
        let mut failed_at = None;
        for k in 0..6 {
            let (baseline, canary) = batch(&mut rng, k as f64 * 300.0, 1.3, 1.0);
            let (judgement, _) = look(&profile, &mut state, &baseline, &canary);
            if judgement.metrics[0].classification == Classification::Fail {
                failed_at = Some(k + 1);
                assert!(
                    judgement.metrics[0].reason.contains("location: shift +"),
                    "{}",
                    judgement.metrics[0].reason
                );
                break;
            }
        }
        assert!(failed_at.is_some_and(|k| k <= 2), "{failed_at:?}");
    }

    #[test]
    fn error_rates_fail_on_the_ratio_and_min_samples_counts_the_whole_stage() {
        let mut profile = profile();
        profile.metrics[1].min_samples = 30_000;
        let mut rng = Rng(2);
        let mut state = SequentialState::default();
        let (baseline, canary) = batch(&mut rng, 0.0, 1.0, 3.0);
        let (judgement, _) = look(&profile, &mut state, &baseline, &canary);
        let errors = &judgement.metrics[1];
        assert_eq!(errors.classification, Classification::Inconclusive);
        assert!(
            errors.reason.contains("20,000 of 30,000 required events"),
            "{}",
            errors.reason
        );
        let (baseline, canary) = batch(&mut rng, 300.0, 1.0, 3.0);
        let (judgement, _) = look(&profile, &mut state, &baseline, &canary);
        assert_eq!(
            judgement.metrics[1].classification,
            Classification::Fail,
            "{}",
            judgement.metrics[1].reason
        );
        assert_eq!(judgement.verdict, crate::domain::Verdict::Rollback);
    }

    /// Each pooled bursts factor is an e-value: given the window's errors, its
    /// expectation is exactly 1 at the tolerated ratio and below 1 under a better canary.
    #[test]
    fn a_pooled_bursts_factor_has_expectation_at_most_one_under_the_null() {
        use statrs::distribution::{Binomial, Discrete};
        for (canary_total, baseline_total, errors) in [
            (120.0, 120.0, 9u64),
            (60.0, 180.0, 4),
            (1_000.0, 900.0, 40),
            (5.0, 5.0, 1),
        ] {
            let theta0 = 1.2;
            let q0 = canary_total * theta0 / (canary_total * theta0 + baseline_total);
            for q in [q0, q0 * 0.8, q0 * 0.3] {
                let binomial = Binomial::new(q, errors).unwrap();
                let mut expectation = vec![0.0; BURST_SHARES.len()];
                for k in 0..=errors {
                    let window = RatePoint {
                        baseline_errors: (errors - k) as f64,
                        baseline_total,
                        canary_errors: k as f64,
                        canary_total,
                    };
                    for (sum, factor) in expectation
                        .iter_mut()
                        .zip(pooled_burst_factor(&window, theta0))
                    {
                        *sum += binomial.pmf(k) * factor.exp();
                    }
                }
                for e in expectation {
                    if q == q0 {
                        assert!((e - 1.0).abs() < 1e-9, "{e} at the null's boundary");
                    } else {
                        assert!(e < 1.0, "{e} under a better canary");
                    }
                }
            }
        }
    }

    /// At a 1 % stage a burst window has a few requests: 8 canary errors of 120 against
    /// 1 of the baseline's 120 is p ≈ 0.04 alone, nowhere near a window's share of the
    /// budget. Thirteen such windows among 26 quiet ones fail the pooled evidence.
    #[test]
    fn small_burst_windows_none_significant_alone_fail_the_pooled_bursts_evidence() {
        let profile = profile();
        let plan = profile.plan.clone().unwrap();
        let spec = &profile.metrics[1];
        let mut state = SequentialState::default();
        let mut points = Vec::new();
        for minute in 0..40i64 {
            let burst = minute % 3 == 0;
            points.push((
                (minute + 1) * 60_000,
                RatePoint {
                    baseline_errors: 1.0,
                    baseline_total: 120.0,
                    canary_errors: if burst { 8.0 } else { 1.0 },
                    canary_total: 120.0,
                },
            ));
        }
        let alpha = 0.0025;
        let window = crate::domain::HumanDuration::parse("1m").unwrap();
        let evidence = bursts(spec, &plan, &points, window, &mut state, alpha, 1.2);
        let worst = evidence.worst_window.as_ref().unwrap();
        assert!(
            worst.p_value > 0.01,
            "no window alone: p = {}",
            worst.p_value
        );
        assert!(worst.p_value > worst.needed);
        let [pooled, needed] = evidence.pooled_bursts.unwrap();
        assert!((needed - 800.0).abs() < 1e-6);
        assert!(pooled > needed, "pooled e = {pooled}");
        assert!(evidence.crossed && evidence.fails);
        assert!(
            describe(&evidence).contains("pooled over 40 windows: e = "),
            "{}",
            describe(&evidence)
        );
        // Without the bursts, the same quiet windows stay far below.
        let quiet: Vec<_> = points
            .iter()
            .map(|(t, p)| {
                (
                    *t,
                    RatePoint {
                        canary_errors: 1.0,
                        ..*p
                    },
                )
            })
            .collect();
        let mut state = SequentialState::default();
        let evidence = bursts(spec, &plan, &quiet, window, &mut state, alpha, 1.2);
        assert!(!evidence.crossed);
        assert!(evidence.pooled_bursts.unwrap()[0] < 1.0);
    }

    #[test]
    fn a_one_minute_burst_fails_the_bursts_check_with_its_window() {
        let profile = profile();
        let mut rng = Rng(3);
        let mut state = SequentialState::default();
        let (baseline, mut canary) = batch(&mut rng, 0.0, 1.0, 1.0);
        if let Some(MetricData::Counts { errors, .. }) = canary.metrics.get_mut("errors") {
            for point in errors.iter_mut().take(4) {
                point.value = 100.0;
            }
        }
        let (judgement, _) = look(&profile, &mut state, &baseline, &canary);
        let errors = &judgement.metrics[1];
        assert_eq!(
            errors.classification,
            Classification::Fail,
            "{}",
            errors.reason
        );
        let bursts = errors
            .sequential
            .as_ref()
            .unwrap()
            .checks
            .iter()
            .find(|c| c.check == "bursts")
            .unwrap();
        assert!(bursts.crossed);
        assert!(bursts.worst_window.as_ref().unwrap().canary_rate > 0.09);
        assert_eq!(state.burst_windows["errors"], 5);
    }

    #[test]
    fn a_canary_as_good_as_the_baseline_excludes_harm_and_a_data_problem_holds() {
        let profile = profile();
        let mut rng = Rng(4);
        let mut state = SequentialState::default();
        let mut excluded = false;
        for k in 0..6 {
            let (baseline, canary) = batch(&mut rng, k as f64 * 300.0, 0.9, 0.5);
            excluded = look(&profile, &mut state, &baseline, &canary)
                .1
                .harm_excluded;
        }
        assert!(excluded);

        let (baseline, mut canary) = batch(&mut rng, 2000.0, 1.0, 1.0);
        canary
            .problems
            .insert("latency".to_owned(), "a gap in its data".to_owned());
        let (judgement, outcome) = look(&profile, &mut state, &baseline, &canary);
        assert_eq!(judgement.verdict, crate::domain::Verdict::Hold);
        assert!(!outcome.harm_excluded);
    }

    #[test]
    fn a_completed_stage_keeps_its_evidence_for_the_next() {
        let profile = profile();
        let plan = profile.plan.clone().unwrap();
        let mut rng = Rng(5);
        let mut state = SequentialState::default();
        let (baseline, canary) = batch(&mut rng, 0.0, 1.08, 1.0);
        look(&profile, &mut state, &baseline, &canary);
        complete_stage(&mut state, &profile, &plan, 0, 0.01);
        let latency = &state.checks["latency:location"];
        assert_eq!(latency.completed.len(), 1);
        assert!(latency.rank.is_none());
        assert!(state.stage_counts.is_empty());
    }

    /// The whole sequential judge on healthy data — four checks sharing the budget, two
    /// stages of six looks, evidence chained across the stage change — fails a healthy
    /// canary in at most its budget of rollouts (a generous budget, so the rate is
    /// measurable).
    #[test]
    fn healthy_rollouts_fail_no_more_often_than_the_judges_budget() {
        let profile = profile();
        let plan = profile.plan.clone().unwrap();
        let budget = 0.2;
        let mut rng = Rng(99);
        let runs = 300;
        let mut failed = 0;
        for _ in 0..runs {
            let mut state = SequentialState::default();
            let mut any = false;
            'rollout: for stage in 0..2 {
                for k in 0..6 {
                    let (baseline, canary) =
                        batch(&mut rng, (stage * 6 + k) as f64 * 300.0, 1.0, 1.0);
                    let mut described_profile = profile.clone();
                    for metric in &mut described_profile.metrics {
                        metric.min_samples = 1;
                    }
                    let described = crate::judge::judge(&described_profile, &baseline, &canary);
                    let (judgement, _) = judge_look(
                        &profile, &plan, stage, budget, &baseline, &canary, &mut state, described,
                    );
                    if judgement.metrics.iter().any(|m| {
                        m.sequential
                            .as_ref()
                            .is_some_and(|e| e.checks.iter().any(|c| c.crossed))
                    }) {
                        any = true;
                        break 'rollout;
                    }
                }
                complete_stage(&mut state, &profile, &plan, stage, budget);
            }
            failed += usize::from(any);
        }
        let rate = failed as f64 / runs as f64;
        assert!(
            rate <= budget + 3.0 * (budget * (1.0 - budget) / runs as f64).sqrt(),
            "{failed} of {runs}"
        );
    }
}

/// Issue 12: a live Prometheus (step 5 s, a look every few steps) hands the judge only a
/// few points per side per look. Every check must keep its level however small the
/// batches are.
#[cfg(test)]
mod small_batches {
    use super::*;
    use crate::domain::{Location, Sample};
    use crate::sources::synthetic::SplitMix as Rng;

    const STEP: f64 = 5.0;

    /// A one-stage plan of `looks` looks, each `points` steps of 5 s long; four checks
    /// share a generous budget (each gets 0.05, so a rate is measurable).
    fn live_profile(points: usize, looks: usize) -> Profile {
        let text = format!(
            r#"
name = "live"
[[metrics]]
name = "latency"
kind = "continuous"
allowed_increase = 0.05
tails = true
min_samples = 1
[[metrics]]
name = "errors"
kind = "proportion"
max_ratio = 1.2
bursts = "1m"
min_samples = 1
[rollout]
error_budget = 0.2
step = "5s"
[[stages]]
traffic = 50
duration = "{duration}s"
interval = "{interval}s"
lookback = "{interval}s"
"#,
            duration = looks * points * STEP as usize,
            interval = points * STEP as usize,
        );
        Profile::parse(&text, "live.toml").unwrap()
    }

    /// What a simulated side looks like.
    #[derive(Clone, Copy)]
    pub(super) struct SideModel {
        /// Median latency, seconds.
        pub median: f64,
        /// Standard deviation of log latency.
        pub log_sd: f64,
        /// Error rate.
        pub error_rate: f64,
    }

    pub(super) const HEALTHY: SideModel = SideModel {
        median: 0.2,
        log_sd: 0.3,
        error_rate: 0.01,
    };

    /// `points` steps of one side ending at `end`; latencies rounded to 10 ms buckets
    /// when `quantised` (as a histogram quantile over few requests is, which ties).
    fn side(
        rng: &mut Rng,
        model: SideModel,
        end: f64,
        points: usize,
        quantised: bool,
    ) -> Observations {
        let origin = Location {
            file: "live".to_owned(),
            line: 1,
        };
        let (mut latency, mut errors, mut total) = (Vec::new(), Vec::new(), Vec::new());
        for k in 0..points {
            let timestamp = end - STEP * (points - 1 - k) as f64;
            let mut value = model.median * (model.log_sd * rng.normal()).exp();
            if quantised {
                value = ((value / 0.01).round() * 0.01).max(0.01);
            }
            latency.push(Sample { timestamp, value });
            errors.push(Sample {
                timestamp,
                value: rng.poisson(100.0 * model.error_rate),
            });
            total.push(Sample {
                timestamp,
                value: 100.0,
            });
        }
        Observations {
            metrics: BTreeMap::from([
                (
                    "latency".to_owned(),
                    MetricData::Samples {
                        samples: latency,
                        origin: origin.clone(),
                    },
                ),
                (
                    "errors".to_owned(),
                    MetricData::Counts {
                        errors,
                        total,
                        origin,
                    },
                ),
            ]),
            problems: BTreeMap::new(),
            instances: BTreeMap::new(),
            count_instances: BTreeMap::new(),
        }
    }

    /// Per check, the share of `runs` one-stage rollouts of `looks` looks in which the
    /// check's evidence crossed its threshold at some look; and, per run, the look at
    /// which each check first crossed.
    pub(super) fn crossing_rates(
        points: usize,
        looks: usize,
        runs: usize,
        quantised: bool,
        canary_model: SideModel,
        seed: u64,
    ) -> (BTreeMap<String, f64>, f64) {
        let profile = live_profile(points, looks);
        let plan = profile.plan.clone().unwrap();
        let alpha = check_alpha(&profile, plan.settings.error_budget);
        let tuning = |key: &str| tau2_for(key, alpha, &plan, 0);
        let mut rng = Rng(seed);
        let mut crossed: BTreeMap<String, usize> = BTreeMap::new();
        for _ in 0..runs {
            let mut state = SequentialState::default();
            let mut crossed_this_run: Vec<String> = Vec::new();
            for look in 1..=looks {
                let end = 1_000_000.0 + (look * points) as f64 * STEP;
                let baseline = side(&mut rng, HEALTHY, end, points, quantised);
                let canary = side(&mut rng, canary_model, end, points, quantised);
                // The checks themselves, without the fixed judge's description of the
                // look (which only adds the effect estimates a failure also needs).
                let latency = continuous(
                    as_continuous(&profile.metrics[0]),
                    None,
                    &values(baseline.metrics.get("latency")),
                    &values(canary.metrics.get("latency")),
                    Instances {
                        baseline: None,
                        canary: None,
                        prior_spread: 0.03,
                    },
                    &mut state,
                    alpha,
                    &tuning,
                    1,
                );
                let errors = proportion(
                    as_proportion(&profile.metrics[1]),
                    &plan,
                    &counts(baseline.metrics.get("errors")),
                    &counts(canary.metrics.get("errors")),
                    CountInstances {
                        baseline: None,
                        canary: None,
                        prior_spread: 0.0,
                    },
                    &mut state,
                    alpha,
                    1,
                );
                for (metric, evidence) in [("latency", latency), ("errors", errors)] {
                    for check in evidence.checks.iter().filter(|c| c.crossed) {
                        let key = format!("{metric}:{}", check.check);
                        if !crossed_this_run.contains(&key) {
                            crossed_this_run.push(key);
                        }
                    }
                }
            }
            for key in crossed_this_run {
                *crossed.entry(key).or_default() += 1;
            }
        }
        (
            crossed
                .into_iter()
                .map(|(k, n)| (k, n as f64 / runs as f64))
                .collect(),
            alpha,
        )
    }

    /// Asserts no check crosses in more than its share of healthy rollouts (with three
    /// binomial standard errors for the simulation).
    fn assert_every_check_keeps_its_level(points: usize, quantised: bool) {
        let runs = 300;
        let (rates, alpha) =
            crossing_rates(points, 30, runs, quantised, HEALTHY, 40 + points as u64);
        let tolerance = alpha + 3.0 * (alpha * (1.0 - alpha) / runs as f64).sqrt();
        eprintln!("{points} points per look, quantised {quantised}: {rates:?}");
        for (check, rate) in &rates {
            assert!(
                *rate <= tolerance,
                "{check}: {rate} of healthy rollouts crossed at {points} points per look (level {alpha})"
            );
        }
    }

    /// The defect of issue 12: two points per side per look rolled healthy stages back
    /// through the tails check (12 % of healthy one-stage rollouts of 30 looks crossed
    /// at a 5 % level before the fix).
    #[test]
    fn issue_12_two_points_per_look_keep_the_tails_check_within_its_level() {
        assert_every_check_keeps_its_level(2, false);
    }

    #[test]
    fn every_check_keeps_its_level_at_one_point_per_look() {
        assert_every_check_keeps_its_level(1, false);
        assert_every_check_keeps_its_level(1, true);
    }

    #[test]
    fn every_check_keeps_its_level_at_two_tied_points_per_look() {
        assert_every_check_keeps_its_level(2, true);
    }

    #[test]
    fn every_check_keeps_its_level_at_three_points_per_look() {
        assert_every_check_keeps_its_level(3, false);
        assert_every_check_keeps_its_level(3, true);
    }

    #[test]
    fn every_check_keeps_its_level_at_four_points_per_look() {
        assert_every_check_keeps_its_level(4, false);
        assert_every_check_keeps_its_level(4, true);
    }

    #[test]
    fn every_check_keeps_its_level_at_five_points_per_look() {
        assert_every_check_keeps_its_level(5, false);
        assert_every_check_keeps_its_level(5, true);
    }

    /// Snapshots written before the pending points and open bursts windows existed
    /// still load, and a state without any writes neither field.
    #[test]
    fn a_snapshot_without_pending_points_or_open_windows_still_loads() {
        let old = r#"{"checks":{"latency:tails":{"completed":[0.5],"rank":{"s":1.0,"information":4.0,"batches":1},"rate_harm":null,"rate_safe":null}},"burst_windows":{"errors":3},"stage_counts":{}}"#;
        let state: SequentialState = serde_json::from_str(old).unwrap();
        assert_eq!(state.checks["latency:tails"].pending, None);
        assert!(state.burst_pending.is_empty());
        let written = serde_json::to_string(&state).unwrap();
        assert!(!written.contains("pending"), "{written}");
    }

    /// A bursts window longer than a look is tested once, whole: a one-minute window at
    /// two 5 s points per look spans six looks and is tested at the look that completes
    /// it, and a burst spread over those looks is found.
    #[test]
    fn a_bursts_window_spanning_several_looks_is_tested_once_whole() {
        let profile = live_profile(2, 30);
        let plan = profile.plan.clone().unwrap();
        let alpha = check_alpha(&profile, plan.settings.error_budget);
        let mut rng = Rng(8);
        let mut state = SequentialState::default();
        let mut worst = Vec::new();
        for look in 1..=14 {
            // Look k brings the points at 1 000 000 + 10k − 5 and + 10k seconds: the
            // window (999 960, 1 000 020] is complete at look 2, then every sixth look
            // completes one (8, 14).
            let end = 1_000_000.0 + (look * 2) as f64 * STEP;
            let baseline = side(&mut rng, HEALTHY, end, 2, false);
            let mut canary = side(&mut rng, HEALTHY, end, 2, false);
            if look > 8 {
                // A burst: every point of the window (1 000 080, 1 000 140] has 10 % errors.
                if let Some(MetricData::Counts { errors, .. }) = canary.metrics.get_mut("errors") {
                    errors.iter_mut().for_each(|e| e.value = 10.0);
                }
            }
            let evidence = proportion(
                as_proportion(&profile.metrics[1]),
                &plan,
                &counts(baseline.metrics.get("errors")),
                &counts(canary.metrics.get("errors")),
                CountInstances {
                    baseline: None,
                    canary: None,
                    prior_spread: 0.0,
                },
                &mut state,
                alpha,
                1,
            );
            let bursts = evidence
                .checks
                .into_iter()
                .find(|c| c.check == "bursts")
                .unwrap();
            worst.push((look, bursts.crossed, bursts.worst_window.is_some()));
        }
        // Windows were tested at looks 2, 8 and 14 only: one test per window.
        let tested: Vec<usize> = worst.iter().filter(|w| w.2).map(|w| w.0).collect();
        assert_eq!(tested, vec![2, 8, 14], "{worst:?}");
        assert_eq!(state.burst_windows["errors"], 3);
        let crossed: Vec<usize> = worst.iter().filter(|w| w.1).map(|w| w.0).collect();
        assert_eq!(crossed, vec![14], "{worst:?}");
        assert!(state.burst_pending.is_empty());
    }
}

/// The location check with instances that differ (issue 14): healthy canaries on other
/// hosts than their baseline, through the check itself.
#[cfg(test)]
mod host_differences {
    use super::*;
    use crate::domain::Sample;
    use crate::sources::synthetic::SplitMix as Rng;

    const STEP: f64 = 5.0;

    /// A one-stage plan of 30 looks of three 5-second steps, with `metric` (TOML).
    fn one_stage(name: &str, metric: &str) -> Profile {
        let text = format!(
            r#"
name = "{name}"
[[metrics]]
{metric}
min_samples = 1
[rollout]
error_budget = 0.01
step = "5s"
[[stages]]
traffic = 50
duration = "450s"
interval = "15s"
lookback = "15s"
"#
        );
        Profile::parse(&text, &format!("{name}.toml")).unwrap()
    }

    fn profile() -> Profile {
        one_stage(
            "hosts",
            "name = \"latency\"\nkind = \"continuous\"\nallowed_increase = 0.05\ntails = true",
        )
    }

    /// One side's instances at one look: `points` per-step values per instance, each
    /// instance at its own level (log scale) with 5 % noise from step to step.
    fn look(
        rng: &mut Rng,
        levels: &[f64],
        factor: f64,
        end: f64,
        points: usize,
    ) -> Vec<InstanceSeries> {
        levels
            .iter()
            .enumerate()
            .map(|(i, level)| InstanceSeries {
                instance: format!("pod=\"p{i}\""),
                samples: (0..points)
                    .map(|k| Sample {
                        timestamp: end - STEP * (points - 1 - k) as f64,
                        value: 0.2 * factor * (level + 0.05 * rng.normal()).exp(),
                    })
                    .collect(),
            })
            .collect()
    }

    /// The share of `runs` one-stage rollouts of 30 looks in which the location check
    /// crossed, with `k` instances a side whose levels differ by `spread` (log sd), the
    /// canary `factor` slower; `aware` hands the judge the instances.
    fn crossing_rate(
        k: usize,
        spread: f64,
        factor: f64,
        aware: bool,
        runs: usize,
        seed: u64,
    ) -> (f64, f64) {
        let (location, _, alpha) = crossing_rates(k, spread, factor, aware, runs, seed);
        (location, alpha)
    }

    /// The shares of rollouts in which the location and the tails checks crossed, and
    /// each check's level.
    fn crossing_rates(
        k: usize,
        spread: f64,
        factor: f64,
        aware: bool,
        runs: usize,
        seed: u64,
    ) -> (f64, f64, f64) {
        let profile = profile();
        let plan = profile.plan.clone().unwrap();
        let alpha = check_alpha(&profile, plan.settings.error_budget);
        let tuning = |key: &str| tau2_for(key, alpha, &plan, 0);
        let mut rng = Rng(seed);
        let mut crossed = 0;
        let mut tails_crossed = 0;
        for _ in 0..runs {
            let baseline_levels: Vec<f64> = (0..k).map(|_| spread * rng.normal()).collect();
            let canary_levels: Vec<f64> = (0..k).map(|_| spread * rng.normal()).collect();
            let mut state = SequentialState::default();
            let mut any = false;
            let mut tails_any = false;
            for index in 1..=30 {
                let end = 1_000_000.0 + (index * 3) as f64 * STEP;
                let baseline = look(&mut rng, &baseline_levels, 1.0, end, 3);
                let canary = look(&mut rng, &canary_levels, factor, end, 3);
                let pooled = |instances: &[InstanceSeries]| -> Vec<f64> {
                    instances
                        .iter()
                        .flat_map(|one| one.samples.iter().map(|s| s.value))
                        .collect()
                };
                let evidence = continuous(
                    as_continuous(&profile.metrics[0]),
                    None,
                    &pooled(&baseline),
                    &pooled(&canary),
                    Instances {
                        baseline: aware.then_some(baseline.as_slice()),
                        canary: aware.then_some(canary.as_slice()),
                        prior_spread: 0.03,
                    },
                    &mut state,
                    alpha,
                    &tuning,
                    1,
                );
                any |= evidence.checks[0].crossed;
                tails_any |= evidence.checks[1].crossed;
            }
            crossed += usize::from(any);
            tails_crossed += usize::from(tails_any);
        }
        (
            crossed as f64 / runs as f64,
            tails_crossed as f64 / runs as f64,
            alpha,
        )
    }

    /// The defect of issue 14: with one instance a side, a canary host a few percent
    /// slower than the baseline's is a certain "regression" for the pooled rank test;
    /// with the instances named, the check keeps its level.
    #[test]
    fn issue_14_host_differences_keep_the_location_check_within_its_level() {
        let spread = 0.03_f64.ln_1p();
        assert_keeps_level("latency", |k, aware, runs| {
            crossing_rate(k, spread, 1.0, aware, runs, 100 + k as u64)
        });
    }

    /// With 1, 3 and 10 instances a side, the check `rate(k, aware, runs)` measures
    /// crosses at most at its level (with three standard errors) when the judge knows
    /// the instances, and at one a side crosses far more often when it does not.
    fn assert_keeps_level(what: &str, rate: impl Fn(usize, bool, usize) -> (f64, f64)) {
        let runs = 300;
        for k in [1, 3, 10] {
            let (blind, alpha) = rate(k, false, runs);
            let (aware, _) = rate(k, true, runs);
            let tolerance = alpha + 3.0 * (alpha * (1.0 - alpha) / runs as f64).sqrt();
            eprintln!("{what}, {k} instances a side: blind {blind}, aware {aware} (level {alpha})");
            assert!(
                aware <= tolerance,
                "{what}, {k} instances a side: {aware} crossed (level {alpha})"
            );
            if k == 1 {
                assert!(
                    blind > 5.0 * alpha,
                    "the blind check should show the defect: {blind}"
                );
            }
        }
    }

    /// Instances at different levels widen each side's scatter by chance: with three
    /// pods a side the tails check took that for a wider canary on the live bed
    /// (spread ×2.7 over 6 points a side). Within instances the spread is the version's.
    #[test]
    fn issue_14_host_differences_do_not_widen_the_tails_check() {
        let runs = 300;
        let spread = 0.03_f64.ln_1p();
        for k in [3, 10] {
            let (_, blind, alpha) = crossing_rates(k, spread, 1.0, false, runs, 200 + k as u64);
            let (_, aware, _) = crossing_rates(k, spread, 1.0, true, runs, 200 + k as u64);
            let tolerance = alpha + 3.0 * (alpha * (1.0 - alpha) / runs as f64).sqrt();
            eprintln!("tails, {k} instances a side: blind {blind}, aware {aware} (level {alpha})");
            assert!(
                aware <= tolerance,
                "{k} instances a side: {aware} crossed (level {alpha})"
            );
        }
    }

    fn error_profile() -> Profile {
        one_stage(
            "error-hosts",
            "name = \"errors\"\nkind = \"proportion\"\nmax_ratio = 1.5",
        )
    }

    /// The share of `runs` one-stage rollouts of 30 looks in which the error-rate check
    /// failed (crossed, its ratio beyond `max_ratio`), with `k` instances a side serving 400 requests a step each at a 1 %
    /// error rate whose instance levels differ by `spread` (log sd), the canary's rate
    /// `factor` times the baseline's; `aware` hands the judge the instances. Returns the
    /// share and the check's level.
    fn error_crossing_rate(
        k: usize,
        spread: f64,
        factor: f64,
        aware: bool,
        runs: usize,
        seed: u64,
    ) -> (f64, f64) {
        let profile = error_profile();
        let plan = profile.plan.clone().unwrap();
        let alpha = check_alpha(&profile, plan.settings.error_budget);
        let mut rng = Rng(seed);
        let mut crossed = 0;
        for _ in 0..runs {
            let levels = |rng: &mut Rng| -> Vec<f64> {
                (0..k).map(|_| (spread * rng.normal()).exp()).collect()
            };
            let (baseline_levels, canary_levels) = (levels(&mut rng), levels(&mut rng));
            let mut state = SequentialState::default();
            let mut any = false;
            for index in 1..=30 {
                let end = 1_000_000.0 + (index * 3) as f64 * STEP;
                let mut side = |levels: &[f64], factor: f64| {
                    let mut summed: BTreeMap<i64, (f64, f64)> = BTreeMap::new();
                    let instances: Vec<InstanceCounts> = levels
                        .iter()
                        .enumerate()
                        .map(|(i, level)| {
                            let (mut errors, mut total) = (Vec::new(), Vec::new());
                            for step in 0..3 {
                                let timestamp = end - STEP * (2 - step) as f64;
                                let n = 400.0;
                                let e = rng.binomial(n, (0.01 * level * factor).min(1.0));
                                let slot = summed.entry((timestamp * 1000.0) as i64).or_default();
                                slot.0 += e;
                                slot.1 += n;
                                errors.push(Sample {
                                    timestamp,
                                    value: e,
                                });
                                total.push(Sample {
                                    timestamp,
                                    value: n,
                                });
                            }
                            InstanceCounts {
                                instance: format!("pod=\"p{i}\""),
                                errors,
                                total,
                            }
                        })
                        .collect();
                    (summed, instances)
                };
                let (baseline, baseline_instances) = side(&baseline_levels, 1.0);
                let (canary, canary_instances) = side(&canary_levels, factor);
                let evidence = proportion(
                    as_proportion(&profile.metrics[0]),
                    &plan,
                    &baseline,
                    &canary,
                    CountInstances {
                        baseline: aware.then_some(&baseline_instances),
                        canary: aware.then_some(&canary_instances),
                        prior_spread: spread.exp_m1(),
                    },
                    &mut state,
                    alpha,
                    1,
                );
                any |= evidence.checks[0].fails;
            }
            crossed += usize::from(any);
        }
        (crossed as f64 / runs as f64, alpha)
    }

    /// The error-rate half of issue 14: instances whose error rates differ by 30 % make
    /// a single canary pod's error rate 1.5 times its single baseline pod's in about one
    /// rollout in six, a certain failure for the pooled test; with the instances named
    /// (and the spread right) the check keeps its level, and errors ×2 are still caught
    /// with ten instances a side.
    #[test]
    fn issue_14_error_rate_host_differences_keep_the_error_rate_check_within_its_level() {
        let spread = 0.3_f64.ln_1p();
        assert_keeps_level("errors", |k, aware, runs| {
            error_crossing_rate(k, spread, 1.0, aware, runs, 300 + k as u64)
        });
        let (ten, _) = error_crossing_rate(10, spread, 2.0, true, 100, 9);
        assert!(
            ten >= 0.95,
            "errors ×2 with 10 instances a side: caught in {ten}"
        );
    }

    /// What the allowance costs: a canary 20 % slower is still caught with ten
    /// instances a side, and with one a side only beyond what hosts can explain.
    #[test]
    fn a_real_slowdown_is_still_caught_beyond_the_allowance() {
        let spread = 0.03_f64.ln_1p();
        let (ten, _) = crossing_rate(10, spread, 1.2, true, 100, 7);
        assert!(
            ten >= 0.95,
            "+20 % with 10 instances a side: caught in {ten}"
        );
        let (one, _) = crossing_rate(1, spread, 1.5, true, 100, 8);
        assert!(one >= 0.9, "+50 % with 1 instance a side: caught in {one}");
    }
}
