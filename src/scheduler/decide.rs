//! The decision of one look, from what the look found: pure, no I/O, no clock.
//!
//! [`decide`] takes the judgement, the triggers that fired and the runner's state, and
//! returns the [`Decision`] with its reasons, updating the state the decision carries
//! (consecutive failures, the hold's start, a hold trigger that asks for a person, a
//! progressive rollback under way). [`planned_change`] is the flag change a decision
//! needs, and [`settle`] moves the state on once that change was made. The look
//! (`super::look`) judges and checks the triggers before `decide` and guards the flag
//! after it; the runner's `step` applies the change and records.

use super::records::{Decision, RollingBack, RolloutStatus, RunnerState};
use crate::actuators::FlagAction;
use crate::domain::plan::{Fallback, HoldOutcome, RollbackMode, RolloutPlan, Stage};
use crate::domain::{JudgeMode, Percentage, Profile, Verdict};
use crate::judge::Judgement;
use crate::judge::sequential::complete_stage;

/// What one look found, and what the decision needs to know about the rollout beyond
/// its state.
pub(crate) struct LookFacts<'a> {
    /// The profile being judged under.
    pub profile: &'a Profile,
    /// The look's judgement (fixed or sequential).
    pub judgement: &'a Judgement,
    /// The current stage.
    pub stage: &'a Stage,
    /// Analysis time of the look.
    pub now: f64,
    /// Whether every metric excluded harm (sequential mode's early advance).
    pub harm_excluded: bool,
    /// The canary's traffic during the look.
    pub traffic: Percentage,
    /// The reasons of the rollback triggers that fired.
    pub fired_rollback: Vec<String>,
    /// The reasons of the hold triggers that fired.
    pub fired_hold: Vec<String>,
    /// A dry run (the reasons say "would roll back").
    pub dry_run: bool,
}

/// The decision and its reasons.
pub(crate) struct DecisionOutcome {
    /// What the runner does.
    pub decision: Decision,
    /// Why, for people.
    pub reasons: Vec<String>,
    /// The gathering reasons when, at the traffic observed, the plan cannot gather its
    /// samples in time (the runner logs them).
    pub cannot_finish: Option<Vec<String>>,
}

/// The decision of one look (see the module docs). A rollout awaiting a person's
/// review lets only a rollback through.
pub(crate) fn decide(
    state: &mut RunnerState,
    plan: &RolloutPlan,
    facts: LookFacts<'_>,
) -> DecisionOutcome {
    let hold_since_before = state.hold_since;
    let mut fired_hold = facts.fired_hold.clone();
    // A hold trigger asks for a person's decision: once one fires the rollout
    // holds until a person resumes it, however the next points fall ("error rate
    // above 2 % for an hour" that dips to 1.9 % has not been decided on).
    match (&state.held_for_review, fired_hold.first()) {
        (None, Some(first)) => state.held_for_review = Some(first.clone()),
        (Some(earlier), None) => fired_hold.push(format!(
            "held for a person's decision since a hold trigger fired ({earlier}); resume to go on"
        )),
        _ => {}
    }
    let mut reasons = Vec::new();
    let mut cannot_finish = None;
    let decision = if let Some(rolling) = state.rolling_back {
        progressive_step(state, plan, rolling, &facts.fired_rollback, &mut reasons)
    } else if !facts.fired_rollback.is_empty() {
        reasons.extend(facts.fired_rollback.iter().cloned());
        Decision::Rollback
    } else {
        judged(
            state,
            plan,
            &facts,
            &fired_hold,
            &mut reasons,
            &mut cannot_finish,
        )
    };
    let decision = progressively(state, plan, &facts, decision, &mut reasons);
    let decision = if state.status == RolloutStatus::AwaitingReview {
        while_awaiting(
            state,
            &facts,
            decision,
            hold_since_before,
            fired_hold,
            &mut reasons,
        )
    } else {
        decision
    };
    DecisionOutcome {
        decision,
        reasons,
        cannot_finish,
    }
}

/// The next step of a progressive rollback under way: it goes on whatever the judge
/// says; a rollback trigger ends it at once.
fn progressive_step(
    state: &RunnerState,
    plan: &RolloutPlan,
    rolling: RollingBack,
    fired_rollback: &[String],
    reasons: &mut Vec<String>,
) -> Decision {
    let rollback_settings = plan.settings.rollback;
    if fired_rollback.is_empty() {
        let step = rolling.steps_done + 1;
        if step >= rollback_settings.steps {
            reasons.push(format!(
                "progressive rollback: step {step} of {}, to the fallback",
                rollback_settings.steps
            ));
            Decision::Rollback
        } else {
            let to = reduced_traffic(plan, state, rolling.from, step);
            reasons.push(format!(
                "progressive rollback: step {step} of {}, traffic to {to}",
                rollback_settings.steps
            ));
            Decision::ReduceTraffic { to }
        }
    } else {
        reasons.push(
            "a rollback trigger fired during the progressive rollback: straight to the fallback"
                .to_owned(),
        );
        reasons.extend(fired_rollback.iter().cloned());
        Decision::Rollback
    }
}

/// The decision from the judge's verdict, no rollback trigger having fired and no
/// progressive rollback being under way.
fn judged(
    state: &mut RunnerState,
    plan: &RolloutPlan,
    facts: &LookFacts<'_>,
    fired_hold: &[String],
    reasons: &mut Vec<String>,
    cannot_finish: &mut Option<Vec<String>>,
) -> Decision {
    let LookFacts {
        profile,
        judgement,
        stage,
        now,
        dry_run,
        ..
    } = *facts;
    match judgement.verdict {
        Verdict::Rollback => {
            state.consecutive_failures += 1;
            let limit = plan.settings.consecutive_failures;
            if state.consecutive_failures >= limit {
                reasons.extend(judgement.reasons.iter().cloned());
                Decision::Rollback
            } else {
                reasons.push(format!(
                    "failing analysis {} of the {limit} in a row that roll back; looking again",
                    state.consecutive_failures
                ));
                reasons.extend(fired_hold.iter().cloned());
                reasons.extend(judgement.reasons.iter().cloned());
                hold_or_timeout(state, plan, dry_run, now, reasons)
            }
        }
        Verdict::Hold
            if fired_hold.is_empty()
                && crate::judge::holds_only_for_samples(profile, judgement) =>
        {
            // Only gathering the stage's `min_samples`: the stage goes on, up to
            // its max_duration, and holds past it.
            state.consecutive_failures = 0;
            let elapsed = now - state.stage_started_at;
            let (gathering, short_of_time) = crate::judge::traffic::gathering(
                judgement,
                plan,
                state.stage_index,
                elapsed,
                state.looks == 1,
            );
            if short_of_time {
                *cannot_finish = Some(gathering.clone());
            }
            if elapsed + 1e-6 < stage.max_duration.seconds() {
                state.hold_since = None;
                reasons.extend(gathering);
                Decision::Continue
            } else {
                reasons.push(format!(
                    "stage {} has run its max_duration {} without gathering its samples",
                    stage.name, stage.max_duration
                ));
                reasons.extend(gathering);
                hold_or_timeout(state, plan, dry_run, now, reasons)
            }
        }
        Verdict::Hold => {
            state.consecutive_failures = 0;
            reasons.extend(fired_hold.iter().cloned());
            reasons.extend(judgement.reasons.iter().cloned());
            hold_or_timeout(state, plan, dry_run, now, reasons)
        }
        Verdict::Promote if !fired_hold.is_empty() => {
            state.consecutive_failures = 0;
            reasons.extend(fired_hold.iter().cloned());
            hold_or_timeout(state, plan, dry_run, now, reasons)
        }
        Verdict::Promote => passed(state, plan, facts, reasons),
    }
}

/// A look that passed: the stage goes on until it has run its duration (or, in
/// sequential mode with `early_advance`, half of it once every metric excluded harm),
/// then advances, or promotes after the last.
fn passed(
    state: &mut RunnerState,
    plan: &RolloutPlan,
    facts: &LookFacts<'_>,
    reasons: &mut Vec<String>,
) -> Decision {
    let LookFacts {
        profile,
        stage,
        now,
        harm_excluded,
        ..
    } = *facts;
    state.consecutive_failures = 0;
    state.hold_since = None;
    let elapsed = now - state.stage_started_at;
    let credited = elapsed - state.stage_short_of_data;
    let duration = stage.duration.seconds();
    let early = profile.judge.mode == JudgeMode::Sequential
        && plan.settings.early_advance
        && harm_excluded
        && credited + 1e-6 >= duration / 2.0;
    if credited + 1e-6 < duration && !early {
        let mut reason = format!(
            "analysis passed; stage {} has run {} of its {}",
            stage.name,
            crate::format::duration(credited),
            crate::format::duration(stage.duration.seconds())
        );
        if state.stage_short_of_data > 0.0 {
            reason.push_str(&format!(
                " ({} without usable data not counted)",
                crate::format::duration(state.stage_short_of_data)
            ));
        }
        reasons.push(reason);
        Decision::Continue
    } else if let Some(next) = plan.stages.get(state.stage_index + 1) {
        reasons.push(if credited + 1e-6 < duration {
            format!(
                "every metric excluded a harmful effect after {} of stage {}'s {}: advancing early to {}",
                crate::format::duration(credited),
                stage.name,
                crate::format::duration(stage.duration.seconds()),
                next.traffic
            )
        } else {
            format!(
                "stage {} passed after {}; advancing to {}",
                stage.name, stage.duration, next.traffic
            )
        });
        Decision::Advance { to: next.traffic }
    } else {
        reasons.push(format!("all {} stages passed", plan.stages.len()));
        Decision::Promote
    }
}

/// A rollback the judge decided (not a trigger, not already under way) goes gradually
/// when the plan asks for it and there is traffic to bring down.
fn progressively(
    state: &mut RunnerState,
    plan: &RolloutPlan,
    facts: &LookFacts<'_>,
    decision: Decision,
    reasons: &mut Vec<String>,
) -> Decision {
    let rollback_settings = plan.settings.rollback;
    let triggered_rollback = !facts.fired_rollback.is_empty();
    match decision {
        Decision::Rollback
            if state.rolling_back.is_none()
                && !triggered_rollback
                && rollback_settings.mode == RollbackMode::Progressive
                && facts.traffic > fallback_share(plan, state) =>
        {
            let to = reduced_traffic(plan, state, facts.traffic, 1);
            reasons.insert(
                0,
                format!(
                    "{} progressively over {} in {} steps: traffic to {to}",
                    if facts.dry_run {
                        "would roll back"
                    } else {
                        "rolling back"
                    },
                    rollback_settings.over,
                    rollback_settings.steps
                ),
            );
            state.rolling_back = Some(RollingBack {
                from: facts.traffic,
                steps_done: 0,
            });
            Decision::ReduceTraffic { to }
        }
        other => other,
    }
}

/// Waiting for a person: only a rollback goes ahead (a progressive one is no longer
/// waiting, it rolls back on its own); the look's findings are recorded, and the hold
/// keeps its start.
fn while_awaiting(
    state: &mut RunnerState,
    facts: &LookFacts<'_>,
    decision: Decision,
    hold_since_before: Option<f64>,
    hold_reasons: Vec<String>,
    reasons: &mut Vec<String>,
) -> Decision {
    match decision {
        Decision::Rollback | Decision::ReduceTraffic { .. } => decision,
        _ => {
            state.hold_since = hold_since_before;
            *reasons = vec![
                "waiting for a person's decision (resume, promote or roll back); \
                 this look found no reason to roll back"
                    .to_owned(),
            ];
            reasons.extend(hold_reasons);
            reasons.extend(facts.judgement.reasons.iter().cloned());
            Decision::AwaitReview
        }
    }
}

/// A hold, or what the hold turns into once it has lasted past `hold_timeout`.
fn hold_or_timeout(
    state: &mut RunnerState,
    plan: &RolloutPlan,
    dry_run: bool,
    now: f64,
    reasons: &mut Vec<String>,
) -> Decision {
    let since = *state.hold_since.get_or_insert(now);
    let Some(timeout) = plan.settings.hold_timeout else {
        // Without a hold timeout a hold trigger's decision is a person's at once.
        if state.held_for_review.is_some() {
            reasons.insert(0, "a hold trigger fired: waiting for a person".to_owned());
            return Decision::AwaitReview;
        }
        return Decision::Hold;
    };
    if now - since < timeout.seconds() {
        return Decision::Hold;
    }
    let held = crate::format::duration(now - since);
    match plan.settings.on_hold_timeout {
        HoldOutcome::Rollback => {
            reasons.insert(
                0,
                format!(
                    "held for {held}, past the hold timeout {timeout}: {}",
                    if dry_run {
                        "would roll back"
                    } else {
                        "rolling back"
                    }
                ),
            );
            Decision::Rollback
        }
        HoldOutcome::Wait => {
            reasons.insert(
                0,
                format!("held for {held}, past the hold timeout {timeout}: waiting for a person"),
            );
            Decision::AwaitReview
        }
    }
}

/// A flag change a decision needs: the action, and the verdict behind it (sent with
/// the change).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct PlannedChange {
    /// What to do with the flag.
    pub action: FlagAction,
    /// `promote` for a move up, `rollback` for a move down or off, none for the start.
    pub verdict: Option<Verdict>,
}

/// The flag change `decision` needs, taken at `traffic`; none when it leaves the flag
/// where it is.
pub(crate) fn planned_change(
    plan: &RolloutPlan,
    state: &RunnerState,
    decision: &Decision,
    traffic: Percentage,
) -> Option<PlannedChange> {
    let (action, verdict) = match decision {
        Decision::Advance { to } => (FlagAction::SetRollout { target: *to }, Verdict::Promote),
        Decision::Promote if traffic < Percentage::FULL => (
            FlagAction::SetRollout {
                target: Percentage::FULL,
            },
            Verdict::Promote,
        ),
        Decision::ReduceTraffic { to } => {
            (FlagAction::SetRollout { target: *to }, Verdict::Rollback)
        }
        Decision::Rollback => (fallback_action(plan, state), Verdict::Rollback),
        Decision::Promote | Decision::Continue | Decision::Hold | Decision::AwaitReview => {
            return None;
        }
    };
    Some(PlannedChange {
        action,
        verdict: Some(verdict),
    })
}

/// The change that leaves the flag in the plan's fallback state: the flag as it was
/// before the rollout for `fallback = "initial"` when it was enabled, the kill switch
/// otherwise.
pub(crate) fn fallback_action(plan: &RolloutPlan, state: &RunnerState) -> FlagAction {
    match (plan.settings.rollback.fallback, &state.initial_flag) {
        (Fallback::Initial, Some(flag)) if flag.enabled => FlagAction::SetRollout {
            target: flag.rollout,
        },
        _ => FlagAction::Kill,
    }
}

/// Moves the state on once `decision`'s flag change (if it needed one) was made: a
/// rollback ends the rollout, a reduction counts its step, an advance starts the next
/// stage at `now` (the sequential judge's stage completed at `judge_budget`), a
/// promotion ends the rollout, and a wait for review marks it.
pub(crate) fn settle(
    state: &mut RunnerState,
    profile: &Profile,
    plan: &RolloutPlan,
    decision: &Decision,
    judge_budget: f64,
    now: f64,
) {
    match decision {
        Decision::Rollback => {
            state.status = RolloutStatus::RolledBack;
            state.rolling_back = None;
        }
        Decision::ReduceTraffic { .. } => {
            if let Some(rolling) = state.rolling_back.as_mut() {
                rolling.steps_done += 1;
            }
            state.status = RolloutStatus::Running;
        }
        Decision::Advance { .. } => {
            if plan.stages[state.stage_index].has_baseline() {
                complete_stage(
                    &mut state.sequential,
                    profile,
                    plan,
                    state.stage_index,
                    judge_budget,
                );
            }
            state.stage_index += 1;
            state.adopted_share = None;
            state.stage_started_at = now;
            state.stage_short_of_data = 0.0;
            state.last_look_at = Some(now);
            state.hold_since = None;
        }
        Decision::Promote => state.status = RolloutStatus::Promoted,
        Decision::AwaitReview => state.status = RolloutStatus::AwaitingReview,
        Decision::Continue | Decision::Hold => {}
    }
}

/// The share the fallback leaves the new variant: 0 for the kill switch, the initial
/// share for `fallback = "initial"` when the flag was enabled.
pub(crate) fn fallback_share(plan: &RolloutPlan, state: &RunnerState) -> Percentage {
    fallback_action(plan, state).target()
}

/// The traffic after `steps_done` reductions from `from` towards the fallback.
pub(crate) fn reduced_traffic(
    plan: &RolloutPlan,
    state: &RunnerState,
    from: Percentage,
    steps_done: u32,
) -> Percentage {
    let steps = plan.settings.rollback.steps.max(1);
    let floor = fallback_share(plan, state).value();
    let share =
        from.value() - (from.value() - floor) * f64::from(steps_done.min(steps)) / f64::from(steps);
    // Whole hundredths, so flag stores that keep integers or per-mille agree.
    Percentage::parse((share * 100.0).round() / 100.0).unwrap_or(Percentage::ZERO)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::multiple_testing::Correction;

    fn profile() -> Profile {
        Profile::parse(
            r#"
name = "decide"
[rollout]
step = "10s"
consecutive_failures = 2
[[stages]]
traffic = 10
duration = "2m"
interval = "1m"
[[stages]]
traffic = 50
duration = "2m"
interval = "1m"
[[metrics]]
name = "latency"
kind = "continuous"
query = 'latency{ {{scope}} }'
"#,
            "decide.toml",
        )
        .unwrap()
    }

    fn judgement(verdict: Verdict) -> Judgement {
        Judgement {
            verdict,
            reasons: vec![format!("the judge says {verdict}")],
            score: None,
            profile: "decide".to_owned(),
            confidence_level: 0.99,
            multiple_comparisons: Correction::Holm,
            metrics: Vec::new(),
            group_scores: None,
        }
    }

    fn state(status: RolloutStatus) -> RunnerState {
        RunnerState {
            status,
            started: true,
            stage_index: 0,
            stage_started_at: 0.0,
            last_look_at: Some(60.0),
            looks: 2,
            consecutive_failures: 0,
            hold_since: Some(30.0),
            initial_flag: None,
            rolling_back: None,
            stage_short_of_data: 0.0,
            sequential: Default::default(),
            expected_flag: None,
            adopted_share: None,
            held_for_review: None,
        }
    }

    /// The decision at t = 120 s (the first stage's duration has run) for `verdict`.
    fn decided(
        state: &mut RunnerState,
        verdict: Verdict,
        fired_rollback: Vec<String>,
    ) -> DecisionOutcome {
        let profile = profile();
        let plan = profile.plan.clone().unwrap();
        let judgement = judgement(verdict);
        decide(
            state,
            &plan,
            LookFacts {
                profile: &profile,
                judgement: &judgement,
                stage: &plan.stages[0],
                now: 120.0,
                harm_excluded: false,
                traffic: plan.stages[0].traffic,
                fired_rollback,
                fired_hold: Vec::new(),
                dry_run: false,
            },
        )
    }

    #[test]
    fn a_passing_look_at_the_end_of_a_stage_advances_and_a_failing_one_counts_towards_the_limit() {
        let mut running = state(RolloutStatus::Running);
        let outcome = decided(&mut running, Verdict::Promote, Vec::new());
        assert_eq!(
            outcome.decision,
            Decision::Advance {
                to: Percentage::parse(50.0).unwrap()
            }
        );
        assert_eq!(running.hold_since, None, "a pass ends the hold");

        let mut failing = state(RolloutStatus::Running);
        let first = decided(&mut failing, Verdict::Rollback, Vec::new());
        assert_eq!(first.decision, Decision::Hold);
        assert_eq!(failing.consecutive_failures, 1);
        let second = decided(&mut failing, Verdict::Rollback, Vec::new());
        assert_eq!(second.decision, Decision::Rollback, "{:?}", second.reasons);
    }

    #[test]
    fn awaiting_review_only_a_rollback_goes_ahead_and_the_hold_keeps_its_start() {
        let mut waiting = state(RolloutStatus::AwaitingReview);
        let outcome = decided(&mut waiting, Verdict::Promote, Vec::new());
        assert_eq!(outcome.decision, Decision::AwaitReview);
        assert_eq!(waiting.hold_since, Some(30.0));
        assert!(
            outcome.reasons[0].starts_with("waiting for a person's decision"),
            "{:?}",
            outcome.reasons
        );
        assert!(
            outcome
                .reasons
                .contains(&"the judge says promote".to_owned())
        );

        let trigger = "trigger \"errors\" fired: 9 % > 5 %".to_owned();
        let outcome = decided(&mut waiting, Verdict::Promote, vec![trigger.clone()]);
        assert_eq!(outcome.decision, Decision::Rollback);
        assert_eq!(outcome.reasons, [trigger]);
    }
}
