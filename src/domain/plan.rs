//! Rollout plans: the stages a canary climbs, the triggers that stop it, and what
//! happens when it waits too long.
//!
//! These are the `[[stages]]`, `[[triggers]]` and `[rollout]` tables of a profile.
//! They are optional for `canary analyze` (one look, no stages) and required for
//! `canary run`. Validation follows the profile's rules: every error names the file,
//! line and field and says what is allowed.

use serde::{Deserialize, Serialize};

use super::duration::HumanDuration;
use super::percentage::Percentage;

/// The share of the error budget that the planned looks spend; the rest is kept for
/// looks beyond the plan.
pub use crate::stats::sequential::PLANNED_SHARE;

pub(crate) const DEFAULT_STEP: &str = "15s";

/// A staged rollout.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RolloutPlan {
    /// Stages in order; traffic strictly increases.
    pub stages: Vec<Stage>,
    /// Absolute and baseline-relative triggers checked at every interval.
    pub triggers: Vec<Trigger>,
    /// How repeated looks, holds and failures are handled.
    pub settings: RolloutSettings,
}

/// One stage of a rollout.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Stage {
    /// A label for reports ("pilot", "25%").
    pub name: String,
    /// Share of traffic the canary gets during this stage (0 = shadow / dark traffic).
    pub traffic: Percentage,
    /// Minimum time at this stage before it may be promoted.
    pub duration: HumanDuration,
    /// How long the stage may run to gather its metrics' `min_samples` (at least
    /// `duration`, which it defaults to): looks short only of samples go on, not hold,
    /// until then.
    pub max_duration: HumanDuration,
    /// Time between analyses.
    pub interval: HumanDuration,
    /// How much data each analysis looks at, ending at the analysis time.
    pub lookback: HumanDuration,
    /// What the canary is compared with during this stage.
    pub baseline: StageBaseline,
}

/// What a stage compares the canary with.
///
/// A flag rollout sends a same-size baseline beside the canary while there is room
/// (`min(p, 100 − p)`), so at 100 % nobody is left to compare with: the canary serves
/// everyone. Such a stage is a *bake*: the plan's triggers and the profile's absolute
/// checks (threshold metrics) decide, every comparative metric must still have canary
/// data (missing data never promotes), and nothing is compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StageBaseline {
    /// A live baseline beside the canary: every metric is compared with it.
    Live,
    /// No baseline (the default at 100 %): triggers and absolute checks only.
    None,
}

impl StageBaseline {
    /// The default for a stage at `traffic`: none at 100 %, a live baseline below.
    pub fn default_for(traffic: Percentage) -> Self {
        if traffic >= Percentage::FULL {
            StageBaseline::None
        } else {
            StageBaseline::Live
        }
    }
}

impl Stage {
    /// Whether the canary is compared with a live baseline during this stage.
    pub fn has_baseline(&self) -> bool {
        self.baseline == StageBaseline::Live
    }

    /// What the stage compares against, in words, for `check-profile` and reports.
    pub fn comparison(&self, thresholds: &[&str]) -> String {
        match self.baseline {
            StageBaseline::Live => "compared with the live baseline".to_owned(),
            StageBaseline::None if thresholds.is_empty() => {
                "no baseline: triggers only (and canary data must be present)".to_owned()
            }
            StageBaseline::None => format!(
                "no baseline: triggers and absolute checks ({}) only",
                thresholds.join(", ")
            ),
        }
    }

    /// The number of analyses the stage runs when nothing holds it.
    pub fn planned_looks(&self) -> u64 {
        (self.duration.get().as_millis() / self.interval.get().as_millis()).max(1) as u64
    }
}

/// What a trigger does when it fires.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TriggerAction {
    /// Kill switch: traffic back to the fallback at once.
    Rollback,
    /// Stop advancing and wait for a person.
    Hold,
}

/// The condition a trigger checks on a metric's canary series.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TriggerCondition {
    /// The canary value is above this (for count data: the error rate).
    Above(f64),
    /// The canary value is below this.
    Below(f64),
    /// The canary value is above the baseline value times this.
    AboveBaselineTimes(f64),
    /// The canary value is below the baseline value times this.
    BelowBaselineTimes(f64),
}

/// A rollback or hold trigger, as the seed plans write them: "error rate > 2 % for 5
/// minutes", "p99 > 500 ms for 2 minutes", "2 consecutive health-check failures",
/// "> baseline × 1.5 over a 10-minute window".
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Trigger {
    /// Readable name, used in reasons.
    pub name: String,
    /// The profile metric whose series is checked.
    pub metric: String,
    /// The condition.
    pub condition: TriggerCondition,
    /// Sustained: the condition must hold at every point of the last `for` (no gaps).
    pub sustained_for: Option<HumanDuration>,
    /// Aggregate: the condition is checked on the statistic over this window (mean,
    /// or the pooled rate for count data).
    pub window: Option<HumanDuration>,
    /// The trigger needs this many consecutive breaching points (e.g. two failed health
    /// checks in a row).
    pub consecutive: u32,
    /// What happens when it fires.
    pub action: TriggerAction,
    /// The stages (by name) where the trigger applies; empty means every stage.
    pub stages: Vec<String>,
}

impl Trigger {
    /// Whether the trigger is checked during the stage named `stage`.
    pub fn applies_to(&self, stage: &str) -> bool {
        self.stages.is_empty() || self.stages.iter().any(|s| s == stage)
    }
}

/// What a hold that lasts past `hold_timeout` turns into.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HoldOutcome {
    /// Roll back: an undecided canary is not worth the risk.
    Rollback,
    /// Keep holding until a person promotes or rolls back.
    Wait,
}

/// How a rollback reaches the fallback (`[rollout] rollback`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RollbackMode {
    /// At once: the kill switch (or the fallback) in one change.
    Immediate,
    /// Traffic brought down in `rollback_steps` equal steps over `rollback_over`. Only
    /// rollbacks the judge decides go gradually; rollback triggers, manual rollbacks and
    /// a trigger firing during the reduction go to the fallback at once.
    Progressive,
}

/// The flag state a rollback leaves (`[rollout] fallback`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Fallback {
    /// The kill switch: the flag disabled.
    Off,
    /// The flag as it was before the rollout started (read when it started): disabled if
    /// it was disabled, else enabled at the share it had.
    Initial,
}

/// How rollbacks are carried out.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct RollbackSettings {
    /// Immediate or progressive.
    pub mode: RollbackMode,
    /// Progressive: the time from the rollback decision to the fallback.
    pub over: HumanDuration,
    /// Progressive: the number of reductions (the last one reaches the fallback).
    pub steps: u32,
    /// The flag state a rollback leaves.
    pub fallback: Fallback,
}

impl RollbackSettings {
    /// The time between two reductions of a progressive rollback, in seconds.
    pub fn step_seconds(&self) -> f64 {
        self.over.seconds() / f64::from(self.steps.max(1))
    }
}

/// A progressive rollback's default duration ("gradual traffic reduction over 5
/// minutes").
pub(crate) const DEFAULT_ROLLBACK_OVER: &str = "5m";
/// A progressive rollback's default number of reductions.
pub(crate) const DEFAULT_ROLLBACK_STEPS: u32 = 5;

/// The `[rollout]` table.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RolloutSettings {
    /// The probability of rolling back a healthy canary over the *whole* rollout, spread
    /// over all planned looks (see ARCHITECTURE.md).
    pub error_budget: f64,
    /// A rollback by the judge (a critical metric failing, or the score below
    /// `marginal_score`) needs this many failing analyses in a row; rollback triggers
    /// act at once.
    pub consecutive_failures: u32,
    /// How long a stage may hold before `on_hold_timeout` applies.
    pub hold_timeout: Option<HumanDuration>,
    /// What a hold past `hold_timeout` becomes.
    pub on_hold_timeout: HoldOutcome,
    /// Resolution of range queries (and the `{{step}}` of count queries).
    pub step: HumanDuration,
    /// How rollbacks are carried out.
    pub rollback: RollbackSettings,
    /// Sequential mode, opt-in (`early_advance = true`): a stage may advance before its
    /// duration once every comparative metric has excluded a harmful effect and at
    /// least half the duration has run with usable data. Off by default, so a plan's
    /// bake time is kept unless it says otherwise.
    pub early_advance: bool,
}

impl RolloutPlan {
    /// All analyses the plan runs when nothing holds it.
    pub fn planned_looks(&self) -> u64 {
        self.stages
            .iter()
            .map(Stage::planned_looks)
            .sum::<u64>()
            .max(1)
    }

    /// The share of the error budget spent by analysis number `look` (1-based).
    ///
    /// Planned looks share [`PLANNED_SHARE`] of the budget evenly. Looks beyond the
    /// plan (a hold keeps a stage looking) spend the rest along a convergent series
    /// (`6 / (π² j²)` of it for the j-th extra look), so however long a rollout holds,
    /// the shares add up to at most the budget: by the union bound the chance that any
    /// look of a healthy rollout fails statistically stays within `error_budget`.
    pub fn look_alpha(&self, look: u64) -> f64 {
        crate::stats::sequential::spend(self.settings.error_budget, self.planned_looks(), look)
    }

    /// The two-sided confidence level the judge uses at analysis number `look`.
    pub fn look_confidence_level(&self, look: u64) -> f64 {
        1.0 - self.look_alpha(look)
    }
}

/// The fewest steps a `bursts` window should span: a window of one or two points is a
/// spike detector, not a burst test.
pub const MIN_BURST_WINDOW_STEPS: f64 = 3.0;

#[cfg(test)]
mod tests {
    use crate::domain::{Profile, ProfileError};

    use super::*;

    const METRICS: &str =
        "name = \"x\"\n[[metrics]]\nname = \"error_rate\"\nkind = \"proportion\"\n";

    fn parse(plan: &str) -> Result<Profile, ProfileError> {
        Profile::parse(&format!("{METRICS}{plan}"), "plan.toml")
    }

    const FIVE_STAGES: &str = r#"
[rollout]
error_budget = 0.01
consecutive_failures = 2
hold_timeout = "30m"
on_hold_timeout = "rollback"
[[stages]]
traffic = 1
duration = "10m"
interval = "1m"
lookback = "5m"
[[stages]]
traffic = 5
duration = "10m"
interval = "1m"
[[stages]]
name = "quarter"
traffic = 25
duration = "20m"
interval = "2m"
[[triggers]]
name = "error rate above 2% for 5 minutes"
metric = "error_rate"
above = 0.02
for = "5m"
action = "rollback"
[[triggers]]
metric = "error_rate"
above_baseline_times = 1.5
window = "10m"
action = "hold"
"#;

    /// A live Prometheus looked at every 10 s with a 5 s step: two points per look.
    #[test]
    fn looks_too_short_for_a_check_are_warned_about_with_the_stage_metric_and_numbers() {
        let text = r#"
name = "live"
[[metrics]]
name = "latency"
kind = "continuous"
tails = true
[[metrics]]
name = "errors"
kind = "proportion"
bursts = "10s"
[rollout]
step = "5s"
[[stages]]
name = "pilot"
traffic = 5
duration = "5m"
interval = "10s"
[[stages]]
name = "short"
traffic = 10
duration = "20s"
interval = "5s"
[[stages]]
name = "wide"
traffic = 50
duration = "10m"
interval = "1m"
"#;
        let profile = Profile::parse(text, "live.toml").unwrap();
        let warnings = profile
            .plan
            .as_ref()
            .unwrap()
            .short_look_warnings(&profile.metrics);
        assert_eq!(warnings.len(), 4, "{warnings:#?}");
        let find = |text: &str| {
            warnings
                .iter()
                .find(|w| w.contains(text))
                .unwrap_or_else(|| panic!("no warning with {text:?}: {warnings:#?}"))
        };
        find("metric \"errors\": its bursts window 10s is 2 steps of 5s");
        let pilot = find(
            "stage \"pilot\", metric \"latency\": a look every 10s at a step of 5s brings 2 points per side",
        );
        assert!(
            pilot.contains(
                "the tails check compares spread over 5 points per side, so only every 3 looks"
            ),
            "{pilot}"
        );
        find(
            "stage \"short\", metric \"latency\": a look every 5s at a step of 5s brings 1 point per side; a location comparison",
        );
        find(
            "stage \"short\", metric \"latency\": a look every 5s at a step of 5s brings 1 point per side; the stage's 4 points never reach the 5",
        );
        // The shipped web-service plan (36 points a look, one-minute bursts at 5 s) has none.
        let shipped = Profile::parse(
            &std::fs::read_to_string(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/analysis-profiles/web-service.toml"
            ))
            .unwrap(),
            "web-service.toml",
        )
        .unwrap();
        assert!(
            shipped
                .plan
                .unwrap()
                .short_look_warnings(&shipped.metrics)
                .is_empty()
        );
    }

    #[test]
    fn a_staged_plan_with_triggers_parses() {
        let plan = parse(FIVE_STAGES).unwrap().plan.unwrap();
        assert_eq!(plan.stages.len(), 3);
        assert_eq!(plan.stages[0].name, "1%");
        assert_eq!(plan.stages[0].lookback.seconds(), 300.0);
        assert_eq!(
            plan.stages[1].lookback.seconds(),
            60.0,
            "lookback defaults to the interval"
        );
        assert_eq!(plan.stages[2].name, "quarter");
        assert_eq!(plan.planned_looks(), 10 + 10 + 10);
        assert!((plan.look_alpha(1) - 0.8 * 0.01 / 30.0).abs() < 1e-15);
        assert_eq!(plan.look_alpha(30), plan.look_alpha(1));
        assert!(plan.look_alpha(31) < 0.2 * 0.01);
        let spent: f64 = (1..100_000).map(|look| plan.look_alpha(look)).sum();
        assert!(
            spent <= 0.01,
            "the looks never spend more than the budget: {spent}"
        );
        assert_eq!(plan.triggers[0].sustained_for.unwrap().seconds(), 300.0);
        assert_eq!(
            plan.triggers[1].condition,
            TriggerCondition::AboveBaselineTimes(1.5)
        );
        assert_eq!(plan.triggers[1].name, "error_rate > baseline × 1.5");
        assert_eq!(plan.settings.on_hold_timeout, HoldOutcome::Rollback);
        assert_eq!(plan.settings.consecutive_failures, 2);
    }

    #[test]
    fn a_profile_without_stages_has_no_plan() {
        assert!(parse("").unwrap().plan.is_none());
        let error = parse("[[triggers]]\nmetric = \"error_rate\"\nabove = 1\naction = \"hold\"\n")
            .unwrap_err();
        assert_eq!(error.field, "triggers");
    }

    #[test]
    fn a_stage_at_full_traffic_has_no_baseline_unless_the_plan_says_so() {
        let stages = "[[stages]]\ntraffic = 50\nduration = \"5m\"\ninterval = \"1m\"\n\
                      [[stages]]\ntraffic = 100\nduration = \"5m\"\ninterval = \"1m\"\n";
        let plan = parse(stages).unwrap().plan.unwrap();
        assert!(plan.stages[0].has_baseline());
        assert_eq!(plan.stages[1].baseline, StageBaseline::None);
        assert_eq!(
            plan.stages[1].comparison(&["p95_slo"]),
            "no baseline: triggers and absolute checks (p95_slo) only"
        );
        let kept = stages.replace("traffic = 100\n", "traffic = 100\nbaseline = \"live\"\n");
        assert!(parse(&kept).unwrap().plan.unwrap().stages[1].has_baseline());
        let dropped = stages.replace("traffic = 50\n", "traffic = 50\nbaseline = \"none\"\n");
        assert!(!parse(&dropped).unwrap().plan.unwrap().stages[0].has_baseline());
        let error =
            parse(&stages.replace("traffic = 50\n", "traffic = 50\nbaseline = \"previous\"\n"))
                .unwrap_err();
        assert!(error.to_string().contains("baseline"), "{error}");
    }

    #[test]
    fn stages_must_increase_traffic() {
        let plan = "[[stages]]\ntraffic = 5\nduration = \"5m\"\ninterval = \"1m\"\n[[stages]]\ntraffic = 5\nduration = \"5m\"\ninterval = \"1m\"\n";
        let error = parse(plan).unwrap_err();
        assert_eq!(error.field, "stages[2].traffic");
        // Four lines of metrics, then the second stage's `traffic` on line 10.
        assert_eq!(error.line, 10);
        assert!(error.message.contains("increase"), "{error}");
    }

    #[test]
    fn bad_stage_values_are_refused_with_their_field() {
        let cases = [
            (
                "[[stages]]\ntraffic = 150\nduration = \"5m\"\ninterval = \"1m\"\n",
                "stages[1].traffic",
            ),
            (
                "[[stages]]\ntraffic = 5\nduration = \"5m\"\ninterval = \"10m\"\n",
                "stages[1].interval",
            ),
            (
                "[[stages]]\ntraffic = 5\nduration = \"5m\"\ninterval = \"1m\"\nlookback = \"30s\"\n",
                "stages[1].lookback",
            ),
            (
                "[[stages]]\ntraffic = 5\nduration = \"5 minutes\"\ninterval = \"1m\"\n",
                "stages[1].duration",
            ),
            (
                "[[stages]]\ntraffic = 5\ninterval = \"1m\"\n",
                "stages[1].duration",
            ),
        ];
        for (plan, field) in cases {
            assert_eq!(parse(plan).unwrap_err().field, field, "{plan}");
        }
    }

    #[test]
    fn bad_triggers_are_refused_with_their_field() {
        let stage = "[[stages]]\ntraffic = 5\nduration = \"5m\"\ninterval = \"1m\"\n";
        let cases = [
            (
                "metric = \"errors\"\nabove = 1\naction = \"hold\"\n",
                "triggers[1].metric",
            ),
            (
                "metric = \"error_rate\"\naction = \"hold\"\n",
                "triggers[1].above",
            ),
            (
                "metric = \"error_rate\"\nabove = 1\nbelow = 0\naction = \"hold\"\n",
                "triggers[1].condition",
            ),
            ("metric = \"error_rate\"\nabove = 1\n", "triggers[1].action"),
            (
                "metric = \"error_rate\"\nabove = 1\naction = \"hold\"\nfor = \"1m\"\nwindow = \"1m\"\n",
                "triggers[1].window",
            ),
            (
                "metric = \"error_rate\"\nabove_baseline_times = 0\naction = \"hold\"\n",
                "triggers[1].condition",
            ),
        ];
        for (trigger, field) in cases {
            let plan = format!("{stage}[[triggers]]\n{trigger}");
            assert_eq!(parse(&plan).unwrap_err().field, field, "{plan}");
        }
        let plan = format!("{stage}[rollout]\nerror_budget = 5\n");
        assert_eq!(parse(&plan).unwrap_err().field, "rollout.error_budget");
    }
}
