//! [`RolloutRunner`]: the thin shell around one rollout. Each look reads the flag,
//! fetches the look's observations, hands them to the pure [`look::decide_look`],
//! makes the change it plans through a [`FlagWriter`], moves the state on with
//! [`decide::settle`] once the change is made, and records the [`Look`].

use std::sync::Arc;

use super::clock::Clock;
use super::decide;
use super::fetch::{self, check_queries, fetch_window, look_step, preflight};
use super::look::{self, LookInput};
use super::ownership;
use super::records::{Look, RollingBack, RolloutStatus, RunnerState};
use super::rollout::{Actuation, Override, Rollout, RunError};
use super::writes::{DirectWrites, FlagWriter, WriteError};
use crate::actuators::{Actuator, ChangeContext, FlagAction, FlagChange};
use crate::domain::plan::{RolloutPlan, Stage};
use crate::domain::{Percentage, Verdict};
use crate::judge::sequential::SequentialState;
use crate::sources::MetricSource;

/// Runs one rollout.
pub struct RolloutRunner {
    rollout: Rollout,
    plan: RolloutPlan,
    source: Arc<dyn MetricSource>,
    /// Reads the flag (its health, its state before each look).
    actuator: Arc<dyn Actuator>,
    /// Makes the flag changes.
    writer: Arc<dyn FlagWriter>,
    /// Where the rollout stands: exactly what [`Self::snapshot`] persists.
    state: RunnerState,
    history: Vec<Look>,
    actuations: Vec<Actuation>,
    first_scrape_wait: std::time::Duration,
    adopt: bool,
}

impl RolloutRunner {
    /// A runner for `rollout`; fails when the profile has no rollout plan.
    pub fn new(
        rollout: Rollout,
        source: Arc<dyn MetricSource>,
        actuator: Arc<dyn Actuator>,
    ) -> Result<Self, RunError> {
        let plan = rollout.profile.plan.clone().ok_or_else(|| {
            RunError::Config(format!(
                "profile {:?} has no rollout plan: add [[stages]] tables to run it",
                rollout.profile.name
            ))
        })?;
        Ok(Self {
            rollout,
            plan,
            source,
            writer: Arc::new(DirectWrites(Arc::clone(&actuator))),
            actuator,
            state: RunnerState {
                status: RolloutStatus::Running,
                started: false,
                stage_index: 0,
                stage_started_at: 0.0,
                last_look_at: None,
                looks: 0,
                consecutive_failures: 0,
                hold_since: None,
                initial_flag: None,
                rolling_back: None,
                stage_short_of_data: 0.0,
                sequential: SequentialState::default(),
                expected_flag: None,
                adopted_share: None,
                held_for_review: None,
            },
            history: Vec::new(),
            actuations: Vec::new(),
            first_scrape_wait: fetch::FIRST_SCRAPE_WAIT,
            adopt: false,
        })
    }

    /// Makes the flag changes through `writer` instead of straight through the
    /// actuator (a worker records each one in the store).
    pub fn writing_through(mut self, writer: Arc<dyn FlagWriter>) -> Self {
        self.writer = writer;
        self
    }

    /// Lets [`Self::start`] adopt a flag already beyond the first stage (see
    /// [`ownership::start_point`]) instead of refusing it.
    pub fn with_adopt(mut self, adopt: bool) -> Self {
        self.adopt = adopt;
        self
    }

    /// The share of a flag this rollout adopted, while it stays at the stage it started
    /// at.
    pub fn adopted_share(&self) -> Option<Percentage> {
        self.state.adopted_share
    }

    /// How long `start` waits for a live source's first data before it calls an empty
    /// query a configuration error (20 s by default).
    pub fn with_first_scrape_wait(mut self, wait: std::time::Duration) -> Self {
        self.first_scrape_wait = wait;
        self
    }

    /// A runner that continues a rollout from a snapshot taken by [`Self::snapshot`]
    /// (by another process, after a restart or a crash). Its history starts empty.
    pub fn resume(
        rollout: Rollout,
        state: RunnerState,
        source: Arc<dyn MetricSource>,
        actuator: Arc<dyn Actuator>,
    ) -> Result<Self, RunError> {
        let mut runner = Self::new(rollout, source, actuator)?;
        if state.stage_index >= runner.plan.stages.len() {
            return Err(RunError::Config(format!(
                "the snapshot is at stage {} but the plan has {} stages",
                state.stage_index + 1,
                runner.plan.stages.len()
            )));
        }
        runner.state = state;
        Ok(runner)
    }

    /// The state to persist after a look.
    pub fn snapshot(&self) -> RunnerState {
        self.state.clone()
    }

    /// The rollout's status.
    pub fn status(&self) -> RolloutStatus {
        self.state.status
    }

    /// The current stage.
    pub fn stage(&self) -> &Stage {
        &self.plan.stages[self.state.stage_index]
    }

    /// The 0-based index of the current stage.
    pub fn stage_index(&self) -> usize {
        self.state.stage_index
    }

    /// The plan being run.
    pub fn plan(&self) -> &RolloutPlan {
        &self.plan
    }

    /// Every look so far.
    pub fn history(&self) -> &[Look] {
        &self.history
    }

    /// Every flag change so far.
    pub fn actuations(&self) -> &[Actuation] {
        &self.actuations
    }

    /// When the next look is due: an interval after the last one, or during a progressive
    /// rollback, one reduction step after it.
    pub fn next_look_at(&self) -> f64 {
        let wait = match self.state.rolling_back {
            Some(_) => self.plan.settings.rollback.step_seconds(),
            None => self.stage().interval.seconds(),
        };
        self.state
            .last_look_at
            .unwrap_or(self.state.stage_started_at)
            + wait
    }

    /// The progressive rollback under way, if one is.
    pub fn rolling_back(&self) -> Option<RollingBack> {
        self.state.rolling_back
    }

    /// The canary's share of traffic where the rollout stands.
    pub fn traffic(&self) -> Percentage {
        match self.state.status {
            RolloutStatus::Promoted => Percentage::FULL,
            RolloutStatus::RolledBack => self.fallback_share(),
            RolloutStatus::Running | RolloutStatus::AwaitingReview => match self.state.rolling_back
            {
                Some(rolling) => self.reduced_traffic(rolling.from, rolling.steps_done),
                None => self.state.adopted_share.unwrap_or(self.stage().traffic),
            },
        }
    }

    /// The share the fallback leaves the new variant (see [`decide::fallback_share`]).
    fn fallback_share(&self) -> Percentage {
        decide::fallback_share(&self.plan, &self.state)
    }

    /// The traffic after `steps_done` reductions from `from` towards the fallback.
    fn reduced_traffic(&self, from: Percentage, steps_done: u32) -> Percentage {
        decide::reduced_traffic(&self.plan, &self.state, from, steps_done)
    }

    /// Leaves the flag in the plan's fallback state (the kill switch, or the flag as it
    /// was before the rollout) and ends the rollout rolled back.
    async fn fall_back(&mut self, now: f64, reasons: &[String]) -> Result<(), RunError> {
        let action = decide::fallback_action(&self.plan, &self.state);
        self.actuate(now, action, Some(Verdict::Rollback), reasons)
            .await?;
        self.state.status = RolloutStatus::RolledBack;
        self.state.rolling_back = None;
        Ok(())
    }

    /// Checks the source and the flag, validates the queries, and sets the first stage's
    /// traffic. Nothing is actuated when any check fails.
    pub async fn start(&mut self, now: f64) -> Result<(), RunError> {
        check_queries(
            self.source.as_ref(),
            &self.rollout.profile,
            &self.rollout.scopes,
        )?;
        self.source.healthcheck().await?;
        preflight(
            self.source.as_ref(),
            &self.rollout.profile,
            &self.rollout.scopes,
            now,
            &self.plan.stages[0],
            self.first_scrape_wait,
        )
        .await?;
        let initial_flag = self
            .actuator
            .healthcheck(&self.rollout.flag)
            .await
            .map_err(|error| RunError::Actuator {
                context: format!("flag {:?} cannot be actuated", self.rollout.flag),
                error,
                rollback: false,
            })?;
        let start = ownership::start_point(
            &self.rollout.flag,
            &self.plan.stages,
            &initial_flag,
            self.adopt,
        )
        .map_err(RunError::Config)?;
        self.state.initial_flag = Some(initial_flag.clone());
        self.state.stage_started_at = now;
        self.state.started = true;
        if let ownership::StartPoint::Adopt { stage_index, share } = start {
            // The flag stays where it is: only a verdict moves it.
            self.state.stage_index = stage_index;
            self.state.adopted_share =
                (share > self.plan.stages[stage_index].traffic).then_some(share);
            if !self.rollout.dry_run {
                self.state.expected_flag = Some(initial_flag);
            }
            tracing::info!(flag = %self.rollout.flag, stage = %self.stage().name, share = %share, "rollout adopted the flag");
            return Ok(());
        }
        let traffic = self.plan.stages[0].traffic;
        let reasons = vec![format!(
            "rollout started: stage {} at {traffic}",
            self.plan.stages[0].name
        )];
        self.actuate(
            now,
            FlagAction::SetRollout { target: traffic },
            None,
            &reasons,
        )
        .await?;
        tracing::info!(flag = %self.rollout.flag, stage = %self.stage().name, traffic = %traffic, "rollout started");
        Ok(())
    }

    /// Makes one flag change (or, in a dry run, records it), with the verdict and reasons
    /// behind it, and records it in [`Self::actuations`].
    async fn actuate(
        &mut self,
        at: f64,
        action: FlagAction,
        verdict: Option<Verdict>,
        reasons: &[String],
    ) -> Result<(), RunError> {
        let target = action.target();
        let state = if self.rollout.dry_run {
            tracing::info!(flag = %self.rollout.flag, action = action.name(), target = %target, "dry run: not actuating");
            None
        } else {
            let flag = &self.rollout.flag;
            let change = FlagChange {
                flag: flag.clone(),
                action,
                context: ChangeContext {
                    verdict,
                    reasons: reasons.to_vec(),
                    ..ChangeContext::default()
                },
            };
            let state = match self.writer.write(&change, at).await {
                Ok(state) => state,
                Err(WriteError::Store(error)) => return Err(RunError::Store(error)),
                Err(WriteError::Actuator(error)) => {
                    return Err(RunError::Actuator {
                        context: match action {
                            FlagAction::Kill => format!(
                                "ROLLBACK OF FLAG {flag:?} FAILED: the canary may still be serving traffic"
                            ),
                            FlagAction::SetRollout { .. } => {
                                format!("could not set flag {flag:?} to {target}")
                            }
                        },
                        error,
                        rollback: action == FlagAction::Kill || verdict == Some(Verdict::Rollback),
                    });
                }
            };
            tracing::info!(flag = %flag, action = action.name(), target = %target, enabled = state.enabled, rollout = %state.rollout, "actuated");
            self.state.expected_flag = Some(state.clone());
            Some(state)
        };
        self.actuations.push(Actuation {
            at,
            action: action.name().to_owned(),
            target,
            state,
            dry_run: self.rollout.dry_run,
        });
        Ok(())
    }

    /// Takes one look at analysis time `now`: read the flag, fetch, decide the look
    /// (`look::decide_look`), make the flag change it plans and record. Returns the
    /// record of this look.
    #[tracing::instrument(skip(self), fields(flag = %self.rollout.flag, stage = %self.stage().name))]
    pub async fn take_look(&mut self, now: f64) -> Result<&Look, RunError> {
        // A rollout waiting for a person still looks: its rollback triggers and the
        // judge's rollbacks act meanwhile; nothing else moves the flag.
        if !matches!(
            self.state.status,
            RolloutStatus::Running | RolloutStatus::AwaitingReview
        ) {
            return Err(RunError::Config("the rollout has already ended".to_owned()));
        }
        let since = self
            .state
            .last_look_at
            .unwrap_or(self.state.stage_started_at);
        let traffic = self.traffic();
        let flag_check = self.check_flag().await;
        self.state.looks += 1;
        self.state.last_look_at = Some(now);
        let stage_index = self.state.stage_index;
        let stage = self.stage().clone();
        let fetched = fetch_window(
            self.source.as_ref(),
            &self.rollout.profile,
            &self.rollout.scopes,
            (
                self.fetch_from(since, now),
                now,
                look_step(&self.rollout.profile, &stage),
            ),
            stage.has_baseline(),
        )
        .await;
        if self.state.looks == 1 && fetched.canary_scope_matches_nothing() {
            return Err(self.unmatched_canary_scope(now, &fetched).await);
        }
        let profile = Arc::clone(&self.rollout.profile);
        let outcome = look::decide_look(
            &mut self.state,
            LookInput {
                profile: &profile,
                plan: &self.plan,
                baseline: fetched.baseline,
                canary: fetched.canary,
                since,
                now,
                traffic,
                flag_check: &flag_check,
                dry_run: self.rollout.dry_run,
            },
        )?;
        if let Some(change) = outcome.flag_change {
            self.actuate(now, change.action, change.verdict, &outcome.reasons)
                .await?;
        }
        decide::settle(
            &mut self.state,
            &profile,
            &self.plan,
            &outcome.decision,
            outcome.judge_budget,
            now,
        );
        tracing::info!(
            look = self.state.looks,
            verdict = %outcome.judgement.verdict,
            decision = ?outcome.decision,
            "look taken"
        );
        self.history.push(Look {
            look: self.state.looks,
            at: now,
            stage_index,
            stage: stage.name,
            traffic,
            confidence_level: outcome.confidence_level,
            verdict: outcome.judgement.verdict,
            decision: outcome.decision,
            reasons: outcome.reasons,
            judgement: outcome.judgement,
            triggers: outcome.triggers,
            series: outcome.series,
        });
        Ok(self.history.last().expect("just pushed"))
    }

    /// Where a look fetches from: the stage's lookback, or further back to cover the
    /// longest trigger's reach (and one step) before the previous look. The judge sees
    /// only this stage's data within the lookback.
    fn fetch_from(&self, since: f64, now: f64) -> f64 {
        let trigger_reach = self
            .plan
            .triggers
            .iter()
            .filter_map(|t| t.sustained_for.or(t.window))
            .map(|d| d.seconds())
            .fold(0.0, f64::max);
        (now - self.stage().lookback.seconds())
            .min(since - trigger_reach - self.plan.settings.step.seconds())
    }

    /// Carries out a person's override at analysis time `now`: sets the flag to 100 % or
    /// pulls the kill switch (recorded, like any flag change, in [`Self::actuations`]) and
    /// ends the rollout, whatever its status, so a final rollout can be overridden too
    /// (say, to retry a rollback that failed). Returns the reason to record. When the
    /// actuator fails the status is left as it was.
    pub async fn apply_override(
        &mut self,
        now: f64,
        action: Override,
        actor: &str,
        reason: &str,
    ) -> Result<String, RunError> {
        let recorded = match action {
            Override::Promote => {
                let recorded = format!("promoted by hand by {actor}: {reason}");
                let action = FlagAction::SetRollout {
                    target: Percentage::FULL,
                };
                self.actuate(
                    now,
                    action,
                    Some(Verdict::Promote),
                    std::slice::from_ref(&recorded),
                )
                .await?;
                self.state.status = RolloutStatus::Promoted;
                recorded
            }
            Override::Rollback => {
                let recorded = format!("rolled back by hand by {actor}: {reason}");
                self.fall_back(now, std::slice::from_ref(&recorded)).await?;
                recorded
            }
        };
        self.state.hold_since = None;
        self.state.held_for_review = None;
        tracing::warn!(flag = %self.rollout.flag, action = ?action, actor, reason, "manual override");
        Ok(recorded)
    }

    /// Pulls the kill switch again after a rollback could not be applied, and ends the
    /// rollout `RolledBack` when it works. Returns the reason to record. When the
    /// actuator fails again the status is left as it was.
    pub async fn retry_rollback(
        &mut self,
        now: f64,
        failed_since: f64,
    ) -> Result<String, RunError> {
        let after = crate::format::duration((now - failed_since).max(0.0));
        let reason = format!("rollback applied on a retry, {after} after it first failed");
        self.fall_back(now, std::slice::from_ref(&reason)).await?;
        self.state.hold_since = None;
        tracing::warn!(flag = %self.rollout.flag, "rollback applied on a retry");
        Ok(reason)
    }

    /// The first look found no canary series for any query while the same-size
    /// baseline had series: the canary scope matches nothing, a configuration error. The flag goes
    /// back to where it was before the rollout, and the error names the scope.
    async fn unmatched_canary_scope(&mut self, now: f64, fetched: &fetch::Fetched) -> RunError {
        let scope = self.rollout.scopes.canary.clone();
        let mut message = format!(
            "the canary scope `{scope}` matches no series: none of the {} canary queries ({}) \
             returned any at the first analysis, with the canary at {}; check --canary-scope",
            fetched.canary_queries_answered,
            fetched.canary_queries_without_series.join(", "),
            self.stage().traffic
        );
        let restore = match &self.state.initial_flag {
            Some(flag) if flag.enabled => FlagAction::SetRollout {
                target: flag.rollout,
            },
            _ => FlagAction::Kill,
        };
        let reasons = vec![format!("configuration error, flag restored: {message}")];
        match self.actuate(now, restore, None, &reasons).await {
            Ok(()) => message.push_str("; the flag is back where it was before the rollout"),
            Err(error @ RunError::Store(_)) => return error,
            Err(error) => message.push_str(&format!("; THE FLAG COULD NOT BE RESTORED: {error}")),
        }
        tracing::error!(flag = %self.rollout.flag, scope = %scope, "the canary scope matches no series");
        RunError::Config(message)
    }

    /// Reads the flag back and compares it with the state this runner last left it in.
    /// Dry runs, snapshots without that state and actuators whose reads cannot show
    /// others' changes (log-only) check nothing.
    async fn check_flag(&self) -> ownership::FlagCheck {
        let (false, Some(expected)) = (self.rollout.dry_run, &self.state.expected_flag) else {
            return ownership::FlagCheck::AsWritten;
        };
        if !self.actuator.sees_outside_changes() {
            return ownership::FlagCheck::AsWritten;
        }
        match self.actuator.current(&self.rollout.flag).await {
            Ok(found) => ownership::check_flag(&self.rollout.flag, expected, &found),
            Err(error) => ownership::FlagCheck::Unreadable(format!(
                "flag {:?} could not be read back: {error}",
                self.rollout.flag
            )),
        }
    }

    /// Runs the rollout to its end on `clock`, calling `on_look` after every look (the
    /// CLI's progress bar). It starts at `start_at` (analysis time; `None`: the clock's
    /// now), so a replay on a compressed clock looks at the same times however busy the
    /// machine is. Stops early, still `Running`, when the next look would come after
    /// `until` (the end of a recording). Returns the status it stopped in.
    pub async fn run(
        &mut self,
        clock: &dyn Clock,
        start_at: Option<f64>,
        until: Option<f64>,
        mut on_look: impl FnMut(&RolloutRunner) + Send,
    ) -> Result<RolloutStatus, RunError> {
        if !self.state.started {
            self.start(start_at.unwrap_or_else(|| clock.now())).await?;
            on_look(self);
        }
        while self.state.status == RolloutStatus::Running {
            let due = self.next_look_at();
            if until.is_some_and(|until| due > until) {
                break;
            }
            clock.sleep_until(due).await;
            self.take_look(due).await?;
            on_look(self);
        }
        Ok(self.state.status)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::actuators::log_only::LogOnlyActuator;
    use crate::domain::Profile;
    use crate::scheduler::{Decision, Scopes};
    use crate::sources::synthetic::{Distribution, MetricModel, SyntheticSource};

    const T0: f64 = 1_700_000_000.0;

    fn runner(actuator: Arc<LogOnlyActuator>) -> RolloutRunner {
        let profile = Profile::parse(
            r#"
name = "override"
[rollout]
step = "5s"
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
direction = "increase"
min_samples = 10
query = 'latency{ {{scope}} }'
"#,
            "override.toml",
        )
        .unwrap();
        let source = SyntheticSource::new(
            1,
            5.0,
            BTreeMap::from([(
                "latency".to_owned(),
                MetricModel::same_samples(Distribution::LogNormal {
                    median: 0.2,
                    sigma: 0.1,
                }),
            )]),
        );
        let rollout = Rollout {
            profile: Arc::new(profile),
            flag: "checkout".to_owned(),
            scopes: Scopes::from_matchers(r#"track="baseline""#, r#"track="canary""#),
            dry_run: false,
        };
        RolloutRunner::new(rollout, Arc::new(source), actuator).unwrap()
    }

    #[tokio::test]
    async fn a_manual_promote_sets_full_traffic_and_ends_the_rollout_with_the_reason() {
        let flags = Arc::new(LogOnlyActuator::new());
        let mut runner = runner(Arc::clone(&flags));
        runner.start(T0).await.unwrap();
        let reason = runner
            .apply_override(
                T0 + 30.0,
                Override::Promote,
                "sre",
                "the dashboards look fine",
            )
            .await
            .unwrap();
        assert_eq!(reason, "promoted by hand by sre: the dashboards look fine");
        assert_eq!(runner.status(), RolloutStatus::Promoted);
        let last = runner.actuations().last().unwrap();
        assert_eq!(
            (last.action.as_str(), last.target),
            ("set_rollout", Percentage::FULL)
        );
        assert_eq!(
            flags.current("checkout").await.unwrap().rollout,
            Percentage::FULL
        );
        assert!(
            runner.take_look(T0 + 60.0).await.is_err(),
            "no look after the end"
        );
    }

    #[tokio::test]
    async fn a_passing_look_says_how_long_the_stage_has_run_in_natural_units() {
        let mut runner = runner(Arc::new(LogOnlyActuator::new()));
        runner.start(T0).await.unwrap();
        let look = runner.take_look(T0 + 60.0).await.unwrap();
        assert!(
            look.reasons
                .iter()
                .any(|reason| reason.ends_with("stage 10% has run 1 min of its 2 min")),
            "issue 12: {:?}",
            look.reasons
        );
    }

    #[tokio::test]
    async fn a_manual_rollback_pulls_the_kill_switch_even_after_promotion() {
        let flags = Arc::new(LogOnlyActuator::new());
        let mut runner = runner(Arc::clone(&flags));
        runner.start(T0).await.unwrap();
        runner
            .apply_override(T0 + 30.0, Override::Promote, "sre", "ship it")
            .await
            .unwrap();
        let reason = runner
            .apply_override(
                T0 + 90.0,
                Override::Rollback,
                "oncall",
                "error budget burning",
            )
            .await
            .unwrap();
        assert_eq!(
            reason,
            "rolled back by hand by oncall: error budget burning"
        );
        assert_eq!(runner.status(), RolloutStatus::RolledBack);
        assert_eq!(runner.actuations().last().unwrap().action, "kill");
        assert!(!flags.current("checkout").await.unwrap().enabled);
        assert_eq!(runner.snapshot().status, RolloutStatus::RolledBack);
    }

    /// One 50 % stage of 10 minutes; the canary's latency quadruples from `T0 + 90`. A
    /// rollback trigger fires when latency stays above `trigger_for_minutes` (0.5 s for
    /// that many minutes; without it, never).
    fn regressing_runner(
        actuator: Arc<LogOnlyActuator>,
        rollout_table: &str,
        trigger_for_minutes: Option<u32>,
    ) -> RolloutRunner {
        let (above, sustained) = match trigger_for_minutes {
            Some(minutes) => (0.5, format!("{minutes}m")),
            None => (50.0, "10s".to_owned()),
        };
        let text = format!(
            r#"
name = "progressive"
[rollout]
step = "5s"
{rollout_table}
[[stages]]
traffic = 50
duration = "10m"
interval = "1m"
lookback = "1m"
[[triggers]]
name = "latency above {above} s"
metric = "latency"
above = {above}
for = "{sustained}"
action = "rollback"
[[metrics]]
name = "latency"
kind = "continuous"
direction = "increase"
min_samples = 10
critical = true
allowed_increase = 0.05
query = 'latency{{ {{{{scope}}}} }}'
"#
        );
        let profile = Profile::parse(&text, "progressive.toml").unwrap();
        let latency = |median| Distribution::LogNormal { median, sigma: 0.1 };
        let model =
            MetricModel::same_samples(latency(0.2)).canary_samples_from(T0 + 90.0, latency(0.8));
        let source = SyntheticSource::new(3, 5.0, BTreeMap::from([("latency".to_owned(), model)]));
        let rollout = Rollout {
            profile: Arc::new(profile),
            flag: "checkout".to_owned(),
            scopes: Scopes::from_matchers(r#"track="baseline""#, r#"track="canary""#),
            dry_run: false,
        };
        RolloutRunner::new(rollout, Arc::new(source), actuator).unwrap()
    }

    /// Looks until the rollout ends (at most 20), returning `(at, action, target)` of
    /// every flag change.
    async fn run_to_the_end(runner: &mut RolloutRunner) -> Vec<(f64, String, f64)> {
        runner.start(T0).await.unwrap();
        for _ in 0..20 {
            if runner.status() != RolloutStatus::Running {
                break;
            }
            let due = runner.next_look_at();
            runner.take_look(due).await.unwrap();
        }
        runner
            .actuations()
            .iter()
            .map(|a| (a.at - T0, a.action.clone(), a.target.value()))
            .collect()
    }

    #[tokio::test]
    async fn a_progressive_rollback_brings_traffic_down_in_equal_steps_then_pulls_the_kill_switch()
    {
        let flags = Arc::new(LogOnlyActuator::new());
        let mut runner = regressing_runner(
            Arc::clone(&flags),
            "rollback = \"progressive\"\nrollback_over = \"4m\"\nrollback_steps = 4",
            None,
        );
        let changes = run_to_the_end(&mut runner).await;
        assert_eq!(runner.status(), RolloutStatus::RolledBack);
        let decided = changes[1].0;
        assert_eq!(
            changes,
            [
                (0.0, "set_rollout".to_owned(), 50.0),
                (decided, "set_rollout".to_owned(), 37.5),
                (decided + 60.0, "set_rollout".to_owned(), 25.0),
                (decided + 120.0, "set_rollout".to_owned(), 12.5),
                (decided + 180.0, "kill".to_owned(), 0.0),
            ],
            "4 steps, a minute apart"
        );
        assert!(!flags.current("checkout").await.unwrap().enabled);
        let started = runner
            .history()
            .iter()
            .find(|look| matches!(look.decision, Decision::ReduceTraffic { .. }))
            .unwrap();
        assert!(
            started.reasons[0].starts_with("rolling back progressively over 4m in 4 steps"),
            "{:?}",
            started.reasons
        );
        assert_eq!(runner.traffic(), Percentage::ZERO);
    }

    #[tokio::test]
    async fn a_rollback_trigger_during_a_progressive_rollback_goes_to_the_fallback_at_once() {
        let flags = Arc::new(LogOnlyActuator::new());
        let mut runner = regressing_runner(
            Arc::clone(&flags),
            "rollback = \"progressive\"\nrollback_over = \"10m\"\nrollback_steps = 5",
            Some(4),
        );
        let changes = run_to_the_end(&mut runner).await;
        let actions: Vec<&str> = changes.iter().map(|c| c.1.as_str()).collect();
        assert_eq!(actions.last(), Some(&"kill"));
        assert!(changes.len() < 6, "cut short by the trigger: {changes:?}");
        let last = runner.history().last().unwrap();
        assert!(
            last.reasons[0].contains("a rollback trigger fired during the progressive rollback"),
            "{:?} {:?}",
            last.reasons,
            runner
                .history()
                .iter()
                .map(|l| (l.at - T0, l.decision.clone(), l.reasons.clone()))
                .collect::<Vec<_>>()
        );
    }

    #[tokio::test]
    async fn a_snapshot_taken_mid_rollback_resumes_the_reduction_where_it_stood() {
        let flags = Arc::new(LogOnlyActuator::new());
        let table = "rollback = \"progressive\"\nrollback_over = \"4m\"\nrollback_steps = 4";
        let mut runner = regressing_runner(Arc::clone(&flags), table, None);
        runner.start(T0).await.unwrap();
        while runner.rolling_back().is_none() {
            let due = runner.next_look_at();
            runner.take_look(due).await.unwrap();
        }
        let snapshot = runner.snapshot();
        let resumed_from =
            serde_json::from_value::<RunnerState>(serde_json::to_value(&snapshot).unwrap())
                .unwrap();
        let mut resumed = RolloutRunner::resume(
            regressing_runner(Arc::clone(&flags), table, None)
                .rollout
                .clone(),
            resumed_from,
            Arc::clone(&runner.source),
            Arc::clone(&flags) as Arc<dyn Actuator>,
        )
        .unwrap();
        assert_eq!(resumed.traffic().value(), 37.5);
        assert_eq!(resumed.next_look_at(), runner.next_look_at());
        let due = resumed.next_look_at();
        resumed.take_look(due).await.unwrap();
        assert_eq!(resumed.traffic().value(), 25.0);
    }

    #[tokio::test]
    async fn fallback_initial_restores_the_flag_as_it_was_instead_of_switching_it_off() {
        // The log-only store's flags start enabled at 0 %: the rollback leaves it so.
        let flags = Arc::new(LogOnlyActuator::new());
        let mut runner = regressing_runner(Arc::clone(&flags), "fallback = \"initial\"", None);
        let changes = run_to_the_end(&mut runner).await;
        assert_eq!(runner.status(), RolloutStatus::RolledBack);
        assert_eq!(changes.last().unwrap().1, "set_rollout");
        assert_eq!(changes.last().unwrap().2, 0.0);
        let flag = flags.current("checkout").await.unwrap();
        assert!(flag.enabled && flag.rollout == Percentage::ZERO);
    }

    #[test]
    fn decisions_read_as_words_not_debug_text() {
        let words: Vec<String> = [
            Decision::Advance {
                to: Percentage::parse(5.0).unwrap(),
            },
            Decision::Hold,
            Decision::Promote,
            Decision::Rollback,
            Decision::Continue,
        ]
        .iter()
        .map(ToString::to_string)
        .collect();
        assert_eq!(
            words,
            ["advance to 5%", "hold", "promote", "roll back", "continue"]
        );
    }

    #[test]
    fn a_dry_run_reports_what_it_would_have_done() {
        assert_eq!(RolloutStatus::RolledBack.reported(true), "would_roll_back");
        assert_eq!(RolloutStatus::Promoted.reported(true), "would_promote");
        assert_eq!(RolloutStatus::RolledBack.reported(false), "rolled_back");
        assert_eq!(
            RolloutStatus::AwaitingReview.reported(true),
            "awaiting_review"
        );
        for status in [
            RolloutStatus::Running,
            RolloutStatus::Promoted,
            RolloutStatus::RolledBack,
            RolloutStatus::AwaitingReview,
        ] {
            assert_eq!(
                serde_json::to_value(status).unwrap(),
                status.reported(false),
                "a real run reports the status as it is stored"
            );
        }
    }

    #[test]
    fn scopes_ignore_the_labels_their_matchers_name() {
        let scopes = Scopes::from_matchers(
            r#"track="baseline", version=~"1.*""#,
            r#"track="canary",pod!="x""#,
        );
        assert_eq!(scopes.scope_labels, ["pod", "track", "version"]);
        assert_eq!(scopes.canary, r#"track="canary",pod!="x""#);
    }
}
