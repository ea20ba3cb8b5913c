//! The rollout runner: owns a rollout's interval loop — read the flag, fetch, decide
//! (pure: `look`, `decide`), apply the planned flag change, record — and is the only
//! writer of flags (through a [`FlagWriter`]). [`records`] are what it records.
//!
//! [`RolloutRunner::step`] is one analysis at a given analysis time; it is public so
//! tests and simulations drive a rollout look by look without sleeping.
//! [`RolloutRunner::run`] is the loop a worker runs: wait for the next look on a
//! [`Clock`], step, repeat until the rollout ends.
//!
//! How repeated looks are kept from becoming a false-rollback machine (see
//! ARCHITECTURE.md): every look judges at its own share of the rollout's error budget
//! ([`crate::domain::plan::RolloutPlan::look_alpha`]), split between the judge and the statistical
//! triggers, so the chance that *any* look of a healthy rollout fails statistically
//! stays within `error_budget`; and a statistical rollback can be made to need
//! `consecutive_failures` failing looks in a row.

pub mod clock;
mod decide;
mod fetch;
mod look;
pub mod ownership;
pub mod records;
mod registry;
pub mod retention;
mod runner;
pub mod worker;
pub mod writes;

use std::sync::Arc;

use serde::Serialize;

pub use self::clock::{Clock, CompressedClock, ManualClock, SystemClock};
pub use self::fetch::{Scopes, fetch_window, preflight};
pub use self::records::{Decision, Look, RollingBack, RolloutStatus, RunnerState};
pub use self::registry::Registry;
pub use self::retention::{PruneOptions, Pruner};
pub use self::runner::RolloutRunner;
pub use self::worker::{Worker, WorkerError, WorkerOptions};
pub use self::writes::{DirectWrites, FlagWriter, WriteError};
use crate::actuators::{ActuatorError, FlagState};
use crate::domain::{Percentage, Profile};
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
