//! Where a runner's flag changes go. The runner plans a change and hands it to a
//! [`FlagWriter`]: [`DirectWrites`] applies it with the actuator (`canary run`), a
//! worker's `RecordedWrites` records an intent in the store, applies it, and records
//! the outcome (exactly-once across workers, see `worker`). Nothing else writes flags.

use std::sync::Arc;

use async_trait::async_trait;

use crate::actuators::{Actuator, ActuatorError, FlagChange, FlagState};
use crate::store::StoreError;

/// Why a flag change did not happen, or is not known to have happened.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// The flag store refused or could not be reached.
    #[error(transparent)]
    Actuator(#[from] ActuatorError),
    /// The change could not be recorded in canary's store: it was not made, or is not
    /// known to have been made. The step counts for nothing and is taken again.
    #[error("the flag change could not be recorded: {0}")]
    Store(#[from] StoreError),
}

/// Makes a runner's flag changes.
#[async_trait]
pub trait FlagWriter: Send + Sync {
    /// Makes `change`, decided at analysis time `at`, and returns the flag's state
    /// after it as the store reads it back.
    async fn write(&self, change: &FlagChange, at: f64) -> Result<FlagState, WriteError>;
}

/// Changes applied straight through the actuator, recorded nowhere but in the runner's
/// own history.
pub struct DirectWrites(pub Arc<dyn Actuator>);

#[async_trait]
impl FlagWriter for DirectWrites {
    async fn write(&self, change: &FlagChange, _at: f64) -> Result<FlagState, WriteError> {
        Ok(self.0.apply(change).await?)
    }
}
