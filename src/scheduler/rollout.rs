//! What a rollout is ([`Rollout`]), the flag changes it made ([`Actuation`]), a
//! person's override ([`Override`]), and what stops a rollout or a worker
//! ([`RunError`], [`WorkerError`]).

use std::sync::Arc;

use serde::Serialize;
use uuid::Uuid;

use super::scopes::Scopes;
use crate::actuators::{ActuatorError, FlagState};
use crate::domain::{Percentage, Profile};
use crate::sources::SourceError;
use crate::store::StoreError;

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

/// What stops a worker from doing its work, in the kinds callers branch on.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    /// The store failed or refused (unavailable, a lost lease, a lost race): nothing was
    /// recorded; the work is done again later, by this worker or another.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The worker cannot be built: a source or actuator in the settings, or the worker
    /// settings themselves.
    #[error("worker settings: {0}")]
    Settings(String),
    /// One analysis cannot run (its profile, source, actuator or snapshot is unusable, or
    /// its flag refused a change). The worker marks it failed and goes on.
    #[error("analysis {id}: {reason}")]
    Analysis {
        /// The analysis.
        id: Uuid,
        /// Why, for the analysis's reasons and the log.
        reason: String,
    },
}
