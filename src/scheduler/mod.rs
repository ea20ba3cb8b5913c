//! The rollout runner: owns a rollout's interval loop, fetch → judge → decide →
//! actuate → record, and is the only caller of actuators.
//!
//! [`RolloutRunner::step`] is one analysis at a given analysis time; it is public so
//! tests and simulations drive a rollout look by look without sleeping.
//! [`RolloutRunner::run`] is the loop a worker runs: wait for the next look on a
//! [`Clock`], step, repeat until the rollout ends.
//!
//! How repeated looks are kept from becoming a false-rollback machine (see
//! ARCHITECTURE.md): every look judges at its own share of the rollout's error budget
//! ([`RolloutPlan::look_alpha`]), split between the judge and the statistical
//! triggers, so the chance that *any* look of a healthy rollout fails statistically
//! stays within `error_budget`; and a statistical rollback can be made to need
//! `consecutive_failures` failing looks in a row.

pub mod clock;
mod decide;
use decide::LookFacts;
mod fetch;
pub mod ownership;
pub mod retention;
pub mod worker;

use std::sync::Arc;

use serde::Serialize;

pub use self::clock::{Clock, CompressedClock, ManualClock, SystemClock};
pub use self::fetch::{Scopes, fetch_window, preflight};
pub use self::retention::{PruneOptions, Pruner};
pub use self::worker::{Registry, Worker, WorkerError, WorkerOptions};
use crate::actuators::{Actuator, ActuatorError, ChangeContext, FlagAction, FlagChange, FlagState};
use crate::domain::observations::{canary_coverage_problems, coverage_problems};
use crate::domain::plan::{Fallback, RolloutPlan, Stage};
use crate::domain::{ConfidenceLevel, JudgeMode, Observations, Percentage, Profile, Verdict};
use crate::judge::sequential::{SequentialState, check_alpha, complete_stage, judge_look};
use crate::judge::triggers::{TriggerCheck, TriggerChecks, check_triggers};
use crate::judge::{Classification, JudgeOptions, Judgement, judge_with, judge_without_baseline};
use crate::sources::{MetricSource, SourceError};

/// Whether a trigger runs a significance test (a `window` trigger on count data) and so
/// spends part of the look's error budget.
fn is_statistical(profile: &Profile, trigger: &crate::domain::plan::Trigger) -> bool {
    trigger.window.is_some()
        && profile.metric(&trigger.metric).is_some_and(|metric| {
            matches!(metric.kind, crate::domain::MetricKind::Proportion { .. })
                || metric.errors_query.is_some()
        })
}

/// One look's shares of the rollout's error budget.
#[derive(Debug, Clone, Copy, PartialEq)]
struct LookBudget {
    /// The judge's part of the whole rollout's budget (its e-processes and stage
    /// completions spend it).
    judge_budget: f64,
    /// Each statistical trigger's false-alarm rate at this look (0 without any).
    trigger_alpha: f64,
    /// The judge's false-alarm rate at this look: its level is `1 − judge_alpha`.
    judge_alpha: f64,
}

/// The error budget at look number `looks` of `stage`: half to the judge and half to
/// the statistical triggers when the stage has any, all to the judge otherwise.
/// Triggers and (in fixed mode) the judge spend their share look by look; the
/// sequential judge's e-processes need no per-look share, and only its rate thresholds
/// spend one check's share look by look.
fn look_budget(profile: &Profile, plan: &RolloutPlan, stage: &Stage, looks: u64) -> LookBudget {
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

/// What one rollout is: a profile with a plan, a flag, and the two scopes.
#[derive(Debug, Clone)]
pub struct Rollout {
    /// The analysis profile; it must have a rollout plan.
    pub profile: Arc<Profile>,
    /// The feature flag the actuator moves.
    pub flag: String,
    /// How queries select the baseline and the canary.
    pub scopes: Scopes,
    /// Judge and record, never actuate.
    pub dry_run: bool,
}

/// Where a rollout stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RolloutStatus {
    /// Still looking.
    Running,
    /// Every stage passed: the flag is at 100 %.
    Promoted,
    /// A trigger fired or the canary failed: the kill switch was pulled.
    RolledBack,
    /// Held past the hold timeout with `on_hold_timeout = "wait"`: a person decides.
    AwaitingReview,
}

impl RolloutStatus {
    /// The verdict a finished rollout reports (exit codes follow it).
    pub fn verdict(self) -> Option<Verdict> {
        match self {
            RolloutStatus::Running => None,
            RolloutStatus::Promoted => Some(Verdict::Promote),
            RolloutStatus::RolledBack => Some(Verdict::Rollback),
            RolloutStatus::AwaitingReview => Some(Verdict::Hold),
        }
    }

    /// How summaries and reports name this status. A dry run changes nothing, so a dry
    /// run that ended says what a real run would have done: `would_promote`,
    /// `would_roll_back` (its verdict and exit code are the same as a real run's).
    pub fn reported(self, dry_run: bool) -> &'static str {
        match (self, dry_run) {
            (RolloutStatus::Running, _) => "running",
            (RolloutStatus::Promoted, false) => "promoted",
            (RolloutStatus::Promoted, true) => "would_promote",
            (RolloutStatus::RolledBack, false) => "rolled_back",
            (RolloutStatus::RolledBack, true) => "would_roll_back",
            (RolloutStatus::AwaitingReview, _) => "awaiting_review",
        }
    }
}

/// What the runner did after one look.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "decision", rename_all = "snake_case")]
pub enum Decision {
    /// Keep looking at this stage.
    Continue,
    /// Hold: do not advance; look again.
    Hold,
    /// Move to the next stage.
    Advance {
        /// The next stage's traffic.
        to: Percentage,
    },
    /// All stages passed.
    Promote,
    /// Go to the fallback (the kill switch unless the plan says otherwise) and end.
    Rollback,
    /// A progressive rollback brings the canary's traffic down one step.
    ReduceTraffic {
        /// The traffic after this step.
        to: Percentage,
    },
    /// Stop and wait for a person.
    AwaitReview,
}

/// The decision in words, for people: `advance to 5%`, `hold`, `roll back`.
impl std::fmt::Display for Decision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Decision::Continue => f.write_str("continue"),
            Decision::Hold => f.write_str("hold"),
            Decision::Advance { to } => write!(f, "advance to {to}"),
            Decision::Promote => f.write_str("promote"),
            Decision::Rollback => f.write_str("roll back"),
            Decision::ReduceTraffic { to } => write!(f, "reduce traffic to {to}"),
            Decision::AwaitReview => f.write_str("wait for a person"),
        }
    }
}

/// A flag change the runner made (or, in a dry run, would have made).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Actuation {
    /// Analysis time.
    pub at: f64,
    /// `set_rollout` or `kill`.
    pub action: String,
    /// The target traffic.
    pub target: Percentage,
    /// The state read back from the store (none in a dry run).
    pub state: Option<FlagState>,
    /// Whether this was only recorded (dry run).
    pub dry_run: bool,
}

/// Everything about one look.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Look {
    /// 1-based look number over the whole rollout.
    pub look: u64,
    /// Analysis time, Unix seconds.
    pub at: f64,
    /// 0-based stage index.
    pub stage_index: usize,
    /// The stage's name.
    pub stage: String,
    /// The canary's traffic during this look.
    pub traffic: Percentage,
    /// The confidence level this look judged at (its share of the error budget).
    pub confidence_level: f64,
    /// The judge's verdict for this look alone.
    pub verdict: Verdict,
    /// What the runner decided.
    pub decision: Decision,
    /// Why, deciding reasons first.
    pub reasons: Vec<String>,
    /// The full judgement.
    pub judgement: Judgement,
    /// Every trigger's state at this look.
    pub triggers: Vec<TriggerCheck>,
    /// Both sides' points since the previous look, downsampled, for the report's charts.
    pub series: crate::domain::look_series::LookSeries,
}

/// A rollout that cannot go on: bad configuration found before anything was actuated,
/// or a flag store that refused a change.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The profile or the run's settings are unusable.
    #[error("{0}")]
    Config(String),
    /// The metric source failed its preflight.
    #[error(transparent)]
    Source(#[from] SourceError),
    /// The actuator failed; when this happens during a rollback it is loud on purpose.
    /// The message already includes the actuator's error, so it is not also exposed as
    /// the error's `source()`: a chain printer (anyhow's `{:#}`) would print it twice.
    #[error("{context}: {error}")]
    Actuator {
        /// What the runner was doing.
        context: String,
        /// The actuator's error.
        error: ActuatorError,
    },
}

/// A person's decision that ends a rollout now, whatever the looks say.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Override {
    /// Set the flag to 100 % and end the rollout `Promoted`.
    Promote,
    /// Pull the kill switch and end the rollout `RolledBack`.
    Rollback,
}

/// Everything a runner needs to continue a rollout elsewhere: what a store keeps
/// between looks, so that a worker that dies loses nothing. The looks and flag changes
/// themselves are records of their own, not part of the snapshot.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct RunnerState {
    /// Where the rollout stands.
    pub status: RolloutStatus,
    /// Whether `start` ran (the first stage's traffic is set).
    pub started: bool,
    /// 0-based stage index.
    pub stage_index: usize,
    /// When the current stage started, analysis time.
    pub stage_started_at: f64,
    /// When the last look ran.
    pub last_look_at: Option<f64>,
    /// Looks so far, over the whole rollout (they spend the error budget).
    pub looks: u64,
    /// Failing judge verdicts in a row.
    pub consecutive_failures: u32,
    /// Since when the rollout has been holding.
    pub hold_since: Option<f64>,
    /// The flag as it was before the rollout started (for `fallback = "initial"`).
    #[serde(default)]
    pub initial_flag: Option<FlagState>,
    /// A progressive rollback under way.
    #[serde(default)]
    pub rolling_back: Option<RollingBack>,
    /// Seconds of the current stage whose looks lacked usable data (gaps, no traffic);
    /// they do not count towards the stage's duration.
    #[serde(default)]
    pub stage_short_of_data: f64,
    /// The sequential judge's evidence so far.
    #[serde(default)]
    pub sequential: SequentialState,
    /// The flag as the runner last left it (the read-back of its last change, or the
    /// state it adopted): each look reads the flag and holds when someone else changed
    /// it. `None` in dry runs and in snapshots from before the check.
    #[serde(default)]
    pub expected_flag: Option<FlagState>,
    /// The share of an adopted flag, beyond its stage's, kept until the stage ends.
    #[serde(default)]
    pub adopted_share: Option<Percentage>,
    /// A hold trigger that fired: the rollout holds for a person's decision from then
    /// on, even once the condition clears, until a person resumes it (or the hold
    /// timeout decides). The reason the trigger gave when it first fired.
    #[serde(default)]
    pub held_for_review: Option<String>,
}

/// A progressive rollback under way: traffic comes down from `from` to the fallback in
/// the plan's `rollback_steps` equal steps.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, serde::Deserialize)]
pub struct RollingBack {
    /// The canary's traffic when the rollback was decided.
    pub from: Percentage,
    /// Reductions applied so far.
    pub steps_done: u32,
}

/// Runs one rollout.
pub struct RolloutRunner {
    rollout: Rollout,
    plan: RolloutPlan,
    source: Arc<dyn MetricSource>,
    actuator: Arc<dyn Actuator>,
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
        let action = match (
            self.plan.settings.rollback.fallback,
            &self.state.initial_flag,
        ) {
            (Fallback::Initial, Some(flag)) if flag.enabled => FlagAction::SetRollout {
                target: flag.rollout,
            },
            _ => FlagAction::Kill,
        };
        self.actuate(now, action, Some(Verdict::Rollback), reasons)
            .await?;
        self.state.status = RolloutStatus::RolledBack;
        self.state.rolling_back = None;
        Ok(())
    }

    /// Checks the source and the flag, validates the queries, and sets the first stage's
    /// traffic. Nothing is actuated when any check fails.
    pub async fn start(&mut self, now: f64) -> Result<(), RunError> {
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
                    verdict: verdict.map(|v| v.to_string()),
                    reasons: reasons.to_vec(),
                    ..ChangeContext::default()
                },
            };
            let state = self
                .actuator
                .apply(&change)
                .await
                .map_err(|error| RunError::Actuator {
                    context: match action {
                        FlagAction::Kill => format!(
                            "ROLLBACK OF FLAG {flag:?} FAILED: the canary may still be serving traffic"
                        ),
                        FlagAction::SetRollout { .. } => {
                            format!("could not set flag {flag:?} to {target}")
                        }
                    },
                    error,
                })?;
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

    /// One analysis at analysis time `now`: fetch, judge, check triggers, decide, actuate
    /// and record. Returns the record of this look.
    #[tracing::instrument(skip(self), fields(flag = %self.rollout.flag, stage = %self.stage().name))]
    pub async fn step(&mut self, now: f64) -> Result<&Look, RunError> {
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
        let traffic_during_look = self.traffic();
        let flag_check = self.check_flag().await;
        self.state.looks += 1;
        self.state.last_look_at = Some(now);
        let stage = self.stage().clone();
        let profile_arc = Arc::clone(&self.rollout.profile);
        let profile: &Profile = &profile_arc;

        // Fetch once, long enough for the longest trigger; the judge sees only this
        // stage's data within the lookback.
        let trigger_reach = self
            .plan
            .triggers
            .iter()
            .filter_map(|t| t.sustained_for.or(t.window))
            .map(|d| d.seconds())
            .fold(0.0, f64::max);
        let fetch_from = (now - stage.lookback.seconds())
            .min(since - trigger_reach - self.plan.settings.step.seconds());
        let fetched = fetch_window(
            self.source.as_ref(),
            profile,
            &self.rollout.scopes,
            fetch_from,
            now,
            &stage,
        )
        .await;
        if self.state.looks == 1
            && fetched.baseline_queries_with_series > 0
            && fetched.canary_queries_answered > 0
            && fetched.canary_queries_without_series.len() == fetched.canary_queries_answered
        {
            return Err(self.unmatched_canary_scope(now, &fetched).await);
        }
        let (baseline, mut canary) = (fetched.baseline, fetched.canary);
        // A canary series with fewer points than the baseline's since the previous look
        // (or, without a baseline, than the steps since the previous look) has a gap:
        // its metric is inconclusive (missing data never promotes).
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
        let judge_from = (now - stage.lookback.seconds()).max(self.state.stage_started_at);
        let LookBudget {
            judge_budget,
            trigger_alpha,
            judge_alpha,
        } = look_budget(profile, &self.plan, &stage, self.state.looks);
        let mode = profile.judge.mode;
        let level = 1.0 - judge_alpha;
        let options = JudgeOptions {
            confidence_level: ConfidenceLevel::parse(level).map_err(|message| {
                RunError::Config(format!("per-look confidence level: {message}"))
            })?,
            describe_only: false,
        };
        let (baseline_window, canary_window) = (
            baseline.restricted(judge_from, now),
            canary.restricted(judge_from, now),
        );
        let mut harm_excluded = false;
        let judgement = match mode {
            // Nobody to compare with: triggers and absolute checks decide, and every
            // metric must still have canary data.
            _ if !stage.has_baseline() => judge_without_baseline(
                profile,
                options.confidence_level,
                &canary_window,
                &stage.name,
            ),
            JudgeMode::Fixed => judge_with(profile, options, &baseline_window, &canary_window),
            JudgeMode::Sequential => {
                // The lookback window describes the metrics, checks thresholds and finds
                // data problems; `min_samples` of comparative metrics is checked against
                // the whole stage by the sequential judge.
                let describe = JudgeOptions {
                    describe_only: true,
                    ..options
                };
                let described = judge_with(profile, describe, &baseline_window, &canary_window);
                let (judged, outcome) = judge_look(
                    profile,
                    &self.plan,
                    self.state.stage_index,
                    judge_budget,
                    &baseline_batch,
                    &canary_batch,
                    &mut self.state.sequential,
                    described,
                );
                harm_excluded = outcome.harm_excluded;
                judged
            }
        };
        // A look whose data is missing or doubtful (a gap, no series, an unreachable
        // source, no point since the previous look) does not count towards the stage's
        // duration. A look that only has not yet gathered the stage's `min_samples`
        // does: its data arrived as it should, and the stage cannot end before the
        // samples are there anyway.
        let has_baseline = stage.has_baseline();
        let without_points =
            |observations: &Observations, name: &str| observations.points(name) == 0;
        let short_of_data = judgement.metrics.iter().any(|m| {
            matches!(
                m.classification,
                Classification::Inconclusive | Classification::Error
            ) && (canary.problems.contains_key(&m.name)
                || without_points(&canary_batch, &m.name)
                || (has_baseline && without_points(&baseline_batch, &m.name)))
        });
        if short_of_data {
            self.state.stage_short_of_data += now - since;
        }

        let TriggerChecks {
            checks: triggers,
            fired_rollback,
            fired_hold,
        } = check_triggers(
            &self.plan,
            &stage.name,
            &baseline,
            &canary,
            since,
            now,
            trigger_alpha,
        );

        let rolling_back_before = self.state.rolling_back;
        let outcome = decide::decide(
            &mut self.state,
            &self.plan,
            LookFacts {
                profile,
                judgement: &judgement,
                stage: &stage,
                now,
                harm_excluded,
                traffic: traffic_during_look,
                fired_rollback,
                fired_hold,
                dry_run: self.rollout.dry_run,
            },
        );
        if let Some(gathering) = &outcome.cannot_finish {
            tracing::warn!(flag = %self.rollout.flag, stage = %stage.name, reasons = ?gathering, "at the traffic observed, the plan cannot gather its samples in time");
        }
        let (decision, mut reasons) = (outcome.decision, outcome.reasons);
        // The first look says what the plan can do at the traffic it found.
        if self.state.looks == 1
            && let Some(estimate) = crate::judge::traffic::plan_at_observed_traffic(
                profile,
                &self.plan,
                self.state.stage_index,
                &baseline_batch,
                now - since,
            )
        {
            reasons.push(estimate);
        }
        // A flag someone else changed is not actuated over (see `ownership`).
        let would_write = self.state_after(&decision, traffic_during_look);
        let (decision, flag_reason) =
            ownership::guard_decision(&flag_check, decision, would_write.as_ref());
        if let Some(reason) = flag_reason {
            if matches!(flag_check, ownership::FlagCheck::Unreadable(_)) {
                reasons.push(reason);
            } else {
                reasons.insert(0, reason);
            }
            if decision == Decision::Hold {
                self.state.rolling_back = rolling_back_before;
            }
        }
        match &decision {
            Decision::Rollback => {
                self.fall_back(now, &reasons).await?;
            }
            Decision::ReduceTraffic { to } => {
                let action = FlagAction::SetRollout { target: *to };
                self.actuate(now, action, Some(Verdict::Rollback), &reasons)
                    .await?;
                if let Some(rolling) = self.state.rolling_back.as_mut() {
                    rolling.steps_done += 1;
                }
                self.state.status = RolloutStatus::Running;
            }
            Decision::Advance { to } => {
                let action = FlagAction::SetRollout { target: *to };
                self.actuate(now, action, Some(Verdict::Promote), &reasons)
                    .await?;
                if stage.has_baseline() {
                    complete_stage(
                        &mut self.state.sequential,
                        profile,
                        &self.plan,
                        self.state.stage_index,
                        judge_budget,
                    );
                }
                self.state.stage_index += 1;
                self.state.adopted_share = None;
                self.state.stage_started_at = now;
                self.state.stage_short_of_data = 0.0;
                self.state.last_look_at = Some(now);
                self.state.hold_since = None;
            }
            Decision::Promote => {
                if traffic_during_look < Percentage::FULL {
                    let action = FlagAction::SetRollout {
                        target: Percentage::FULL,
                    };
                    self.actuate(now, action, Some(Verdict::Promote), &reasons)
                        .await?;
                }
                self.state.status = RolloutStatus::Promoted;
            }
            Decision::AwaitReview => self.state.status = RolloutStatus::AwaitingReview,
            Decision::Continue | Decision::Hold => {}
        }
        tracing::info!(
            look = self.state.looks,
            verdict = %judgement.verdict,
            decision = ?decision,
            "look taken"
        );
        self.history.push(Look {
            look: self.state.looks,
            at: now,
            stage_index: if matches!(decision, Decision::Advance { .. }) {
                self.state.stage_index - 1
            } else {
                self.state.stage_index
            },
            stage: stage.name.clone(),
            traffic: traffic_during_look,
            confidence_level: level,
            verdict: judgement.verdict,
            decision,
            reasons,
            judgement,
            triggers,
            series: crate::domain::look_series::LookSeries::between(&baseline, &canary, since, now),
        });
        Ok(self.history.last().expect("just pushed"))
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
            Err(error) => message.push_str(&format!("; THE FLAG COULD NOT BE RESTORED: {error}")),
        }
        tracing::error!(flag = %self.rollout.flag, scope = %scope, "the canary scope matches no series");
        RunError::Config(message)
    }

    /// The flag state `decision` leaves the flag in, when it moves it.
    fn state_after(&self, decision: &Decision, traffic: Percentage) -> Option<FlagState> {
        let enabled_at = |rollout| FlagState {
            enabled: true,
            rollout,
        };
        match decision {
            Decision::Advance { to } | Decision::ReduceTraffic { to } => Some(enabled_at(*to)),
            Decision::Promote if traffic < Percentage::FULL => Some(enabled_at(Percentage::FULL)),
            Decision::Rollback => Some(
                match (
                    self.plan.settings.rollback.fallback,
                    &self.state.initial_flag,
                ) {
                    (Fallback::Initial, Some(flag)) if flag.enabled => enabled_at(flag.rollout),
                    _ => FlagState {
                        enabled: false,
                        rollout: Percentage::ZERO,
                    },
                },
            ),
            _ => None,
        }
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
            self.step(due).await?;
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
            runner.step(T0 + 60.0).await.is_err(),
            "no look after the end"
        );
    }

    #[tokio::test]
    async fn a_passing_look_says_how_long_the_stage_has_run_in_natural_units() {
        let mut runner = runner(Arc::new(LogOnlyActuator::new()));
        runner.start(T0).await.unwrap();
        let look = runner.step(T0 + 60.0).await.unwrap();
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
            runner.step(due).await.unwrap();
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
            runner.step(due).await.unwrap();
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
        resumed.step(due).await.unwrap();
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
