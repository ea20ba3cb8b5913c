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
mod fetch;
mod look;
pub mod ownership;
mod registry;
pub mod retention;
mod runner;
pub mod worker;
pub mod writes;

use std::sync::Arc;

use serde::Serialize;

pub use self::clock::{Clock, CompressedClock, ManualClock, SystemClock};
pub use self::fetch::{Scopes, fetch_window, preflight};
pub use self::registry::Registry;
pub use self::retention::{PruneOptions, Pruner};
pub use self::runner::RolloutRunner;
pub use self::worker::{Worker, WorkerError, WorkerOptions};
pub use self::writes::{DirectWrites, FlagWriter, WriteError};
use crate::actuators::{ActuatorError, FlagState};
use crate::domain::{Percentage, Profile, Verdict};
use crate::judge::Judgement;
use crate::judge::sequential::SequentialState;
use crate::judge::triggers::TriggerCheck;
use crate::sources::SourceError;

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
        /// Whether the change was part of a rollback (the kill switch, a progressive
        /// reduction, the fallback share): the canary may still be serving traffic.
        rollback: bool,
    },
    /// A flag change could not be recorded in canary's store: the step counts for
    /// nothing and is taken again.
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
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
