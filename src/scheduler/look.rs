//! One look, pure: from the observations a look fetched and the runner's state to the
//! judgement, the triggers, the decision, its reasons and the flag change it plans. No
//! I/O, no clock, no actuator: the runner's `step` fetches before it, and applies the
//! planned change and records after it.
//!
//! In order: the look's share of the error budget ([`look_budget`]); gaps since the
//! previous look become data problems; one description of the lookback window feeds
//! both judge modes (fixed judges it, sequential adds the look's evidence to its
//! e-processes); data that was missing or doubtful keeps the stage from counting the
//! look's time; the triggers; the decision ([`decide::decide`]); the first look's
//! estimate of what the plan can do at the traffic it found; and the guard against
//! writing over a flag someone else moved ([`ownership::guard_decision`]).

use super::decide::{self, LookFacts, PlannedChange};
use super::ownership::{self, FlagCheck};
use super::records::{Decision, RunnerState};
use super::rollout::RunError;
use crate::domain::look_series::LookSeries;
use crate::domain::observations::{canary_coverage_problems, coverage_problems};
use crate::domain::plan::{RolloutPlan, Stage, Trigger};
use crate::domain::{ConfidenceLevel, JudgeMode, Observations, Percentage, Profile};
use crate::judge::sequential::{check_alpha, judge_look};
use crate::judge::triggers::{TriggerCheck, TriggerChecks, check_triggers};
use crate::judge::{Classification, JudgeOptions, Judgement, judge_with, judge_without_baseline};

/// Whether a trigger runs a significance test (a `window` trigger on count data) and so
/// spends part of the look's error budget.
fn is_statistical(profile: &Profile, trigger: &Trigger) -> bool {
    trigger.window.is_some()
        && profile
            .metric(&trigger.metric)
            .is_some_and(|metric| metric.counted())
}

/// One look's shares of the rollout's error budget.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct LookBudget {
    /// The judge's part of the whole rollout's budget (its e-processes and stage
    /// completions spend it).
    pub judge_budget: f64,
    /// Each statistical trigger's false-alarm rate at this look (0 without any).
    pub trigger_alpha: f64,
    /// The judge's false-alarm rate at this look: its level is `1 − judge_alpha`.
    pub judge_alpha: f64,
}

/// The error budget at look number `looks` of `stage`: half to the judge and half to
/// the statistical triggers when the stage has any, all to the judge otherwise.
/// Triggers and (in fixed mode) the judge spend their share look by look; the
/// sequential judge's e-processes need no per-look share, and only its rate thresholds
/// spend one check's share look by look.
pub(crate) fn look_budget(
    profile: &Profile,
    plan: &RolloutPlan,
    stage: &Stage,
    looks: u64,
) -> LookBudget {
    let statistical_triggers = plan
        .triggers
        .iter()
        .filter(|t| t.applies_to(&stage.name) && is_statistical(profile, t))
        .count();
    let judge_share = if statistical_triggers == 0 { 1.0 } else { 0.5 };
    let judge_budget = plan.settings.error_budget * judge_share;
    let look_alpha = plan.look_alpha(looks);
    let trigger_alpha = if statistical_triggers == 0 {
        0.0
    } else {
        look_alpha / 2.0 / statistical_triggers as f64
    };
    let judge_alpha = match profile.judge.mode {
        JudgeMode::Fixed => look_alpha * judge_share,
        JudgeMode::Sequential => crate::stats::sequential::spend(
            check_alpha(profile, judge_budget),
            plan.planned_looks(),
            looks,
        ),
    };
    LookBudget {
        judge_budget,
        trigger_alpha,
        judge_alpha,
    }
}

/// What one look has to go on: the rollout, the observations fetched for it (from
/// before `since`, as far back as the longest trigger reaches), and the flag as read.
pub(crate) struct LookInput<'a> {
    /// The profile being judged under.
    pub profile: &'a Profile,
    /// Its rollout plan.
    pub plan: &'a RolloutPlan,
    /// The baseline's observations.
    pub baseline: Observations,
    /// The canary's observations (the look adds its gaps to their problems).
    pub canary: Observations,
    /// When the previous look ran (or the stage started).
    pub since: f64,
    /// Analysis time of this look.
    pub now: f64,
    /// The canary's traffic during the look.
    pub traffic: Percentage,
    /// The flag as read back before the look.
    pub flag_check: &'a FlagCheck,
    /// A dry run (the reasons say "would roll back").
    pub dry_run: bool,
}

/// Everything one look decided.
#[derive(Debug)]
pub(crate) struct LookOutcome {
    /// The full judgement.
    pub judgement: Judgement,
    /// Every trigger's state.
    pub triggers: Vec<TriggerCheck>,
    /// What the runner does.
    pub decision: Decision,
    /// Why, deciding reasons first.
    pub reasons: Vec<String>,
    /// The flag change the decision needs, if it moves the flag.
    pub flag_change: Option<PlannedChange>,
    /// The confidence level the look judged at.
    pub confidence_level: f64,
    /// The judge's part of the rollout's error budget (a stage that ends spends it).
    pub judge_budget: f64,
    /// Both sides' points since the previous look, for the report's charts.
    pub series: LookSeries,
}

/// Decides one look (see the module docs). `state` is the runner's state with this
/// look already counted (`looks`, `last_look_at`); the decision-independent part of it
/// is updated here (the sequential evidence, the data shortfall, consecutive failures,
/// the hold), the part that needs the flag change to have happened by
/// [`decide::settle`].
pub(crate) fn decide_look(
    state: &mut RunnerState,
    input: LookInput<'_>,
) -> Result<LookOutcome, RunError> {
    let LookInput {
        profile,
        plan,
        baseline,
        mut canary,
        since,
        now,
        traffic,
        flag_check,
        dry_run,
    } = input;
    let stage = &plan.stages[state.stage_index];
    // A canary series with fewer points than the baseline's since the previous look
    // (or, without a baseline, than the steps since the previous look) has a gap: its
    // metric is inconclusive (missing data never promotes).
    let baseline_batch = baseline.restricted(since, now);
    let canary_batch = canary.restricted(since, now);
    let gaps = if stage.has_baseline() {
        coverage_problems(profile, &baseline_batch, &canary_batch)
    } else {
        canary_coverage_problems(profile, &canary_batch)
    };
    for (metric, problem) in gaps {
        canary.problems.entry(metric).or_insert(problem);
    }
    let budget = look_budget(profile, plan, stage, state.looks);
    let confidence_level = 1.0 - budget.judge_alpha;
    let options = JudgeOptions {
        confidence_level: ConfidenceLevel::parse(confidence_level)
            .map_err(|message| RunError::Config(format!("per-look confidence level: {message}")))?,
        describe_only: false,
    };
    let judge_from = (now - stage.lookback.seconds()).max(state.stage_started_at);
    let window = (
        baseline.restricted(judge_from, now),
        canary.restricted(judge_from, now),
    );
    let batch = (&baseline_batch, &canary_batch);
    let (judgement, harm_excluded) = judge(state, profile, plan, options, budget, &window, batch);
    if short_of_data(stage, &judgement, &canary, batch) {
        state.stage_short_of_data += now - since;
    }
    let TriggerChecks {
        checks: triggers,
        fired_rollback,
        fired_hold,
    } = check_triggers(
        plan,
        &stage.name,
        &baseline,
        &canary,
        since,
        now,
        budget.trigger_alpha,
    );
    let rolling_back_before = state.rolling_back;
    let stage_index = state.stage_index;
    let outcome = decide::decide(
        state,
        plan,
        LookFacts {
            profile,
            judgement: &judgement,
            stage,
            now,
            harm_excluded,
            traffic,
            fired_rollback,
            fired_hold,
            dry_run,
        },
    );
    if let Some(gathering) = &outcome.cannot_finish {
        tracing::warn!(stage = %stage.name, reasons = ?gathering, "at the traffic observed, the plan cannot gather its samples in time");
    }
    let (decision, mut reasons) = (outcome.decision, outcome.reasons);
    // The first look says what the plan can do at the traffic it found.
    if state.looks == 1
        && let Some(estimate) = crate::judge::traffic::plan_at_observed_traffic(
            profile,
            plan,
            stage_index,
            &baseline_batch,
            now - since,
        )
    {
        reasons.push(estimate);
    }
    // A flag someone else changed is not actuated over (see `ownership`).
    let would_write = decide::planned_change(plan, state, &decision, traffic)
        .map(|change| change.action.leaves());
    let (decision, flag_reason) =
        ownership::guard_decision(flag_check, decision, would_write.as_ref());
    if let Some(reason) = flag_reason {
        if matches!(flag_check, FlagCheck::Unreadable(_)) {
            reasons.push(reason);
        } else {
            reasons.insert(0, reason);
        }
        if decision == Decision::Hold {
            state.rolling_back = rolling_back_before;
        }
    }
    Ok(LookOutcome {
        flag_change: decide::planned_change(plan, state, &decision, traffic),
        series: LookSeries::between(&baseline, &canary, since, now),
        judgement,
        triggers,
        decision,
        reasons,
        confidence_level,
        judge_budget: budget.judge_budget,
    })
}

/// The look's judgement, and whether every metric excluded harm (the sequential
/// judge's early advance). A stage without a baseline has nobody to compare with:
/// triggers and absolute checks decide, and every metric must still have canary data.
/// With one, the lookback `window` is described once; the fixed judge judges it, the
/// sequential judge adds the look's `batch` to its evidence (`min_samples` of
/// comparative metrics is then checked against the whole stage).
fn judge(
    state: &mut RunnerState,
    profile: &Profile,
    plan: &RolloutPlan,
    options: JudgeOptions,
    budget: LookBudget,
    window: &(Observations, Observations),
    batch: (&Observations, &Observations),
) -> (Judgement, bool) {
    let (baseline_window, canary_window) = window;
    let stage = &plan.stages[state.stage_index];
    if !stage.has_baseline() {
        let judgement = judge_without_baseline(
            profile,
            options.confidence_level,
            canary_window,
            &stage.name,
        );
        return (judgement, false);
    }
    match profile.judge.mode {
        JudgeMode::Fixed => (
            judge_with(profile, options, baseline_window, canary_window),
            false,
        ),
        JudgeMode::Sequential => {
            let describe = JudgeOptions {
                describe_only: true,
                ..options
            };
            let described = judge_with(profile, describe, baseline_window, canary_window);
            let (judged, outcome) = judge_look(
                profile,
                plan,
                state.stage_index,
                budget.judge_budget,
                batch.0,
                batch.1,
                &mut state.sequential,
                described,
            );
            (judged, outcome.harm_excluded)
        }
    }
}

/// Whether the look's data was missing or doubtful (a gap, no series, an unreachable
/// source, no point since the previous look): such a look does not count towards the
/// stage's duration. A look that only has not yet gathered the stage's `min_samples`
/// does: its data arrived as it should, and the stage cannot end before the samples are
/// there anyway.
fn short_of_data(
    stage: &Stage,
    judgement: &Judgement,
    canary: &Observations,
    (baseline_batch, canary_batch): (&Observations, &Observations),
) -> bool {
    let without_points = |observations: &Observations, name: &str| observations.points(name) == 0;
    judgement.metrics.iter().any(|m| {
        matches!(
            m.classification,
            Classification::Inconclusive | Classification::Error
        ) && (canary.problems.contains_key(&m.name)
            || without_points(canary_batch, &m.name)
            || (stage.has_baseline() && without_points(baseline_batch, &m.name)))
    })
}
