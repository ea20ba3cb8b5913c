//! Actuators: the only code that changes production feature flags.
//!
//! An actuator moves a flag's rollout percentage, flips its kill switch and reads
//! its state back. Implementations live one per file (or folder) and are named only in
//! `app`; only the rollout runner calls them, so there is one audited path to
//! production flags.

use async_trait::async_trait;
use serde::Serialize;

use crate::domain::Percentage;

/// A flag's state as the flag store reports it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FlagState {
    /// Whether the flag is on at all (the kill switch is `enabled = false`).
    pub enabled: bool,
    /// Share of traffic that gets the new variant while enabled.
    pub rollout: Percentage,
}

/// Why an actuation did not happen. Callers branch on it: `FlagNotFound` and
/// `Invalid` are configuration errors to report before a rollout starts;
/// `Unavailable` is worth retrying.
#[derive(Debug, thiserror::Error)]
pub enum ActuatorError {
    /// The flag does not exist in the store.
    #[error("flag {flag:?} not found in {store}")]
    FlagNotFound {
        /// The flag key.
        flag: String,
        /// Where we looked (a file path, a URL).
        store: String,
    },
    /// The store cannot be reached, read or written right now.
    #[error("flag store {store} unavailable: {message}")]
    Unavailable {
        /// Where.
        store: String,
        /// What happened.
        message: String,
    },
    /// The store holds something this actuator cannot safely edit.
    #[error("flag store {store} is invalid: {message}")]
    Invalid {
        /// Where.
        store: String,
        /// What is wrong, with a line where there is one.
        message: String,
    },
}

/// Moves feature flags.
#[async_trait]
pub trait Actuator: Send + Sync {
    /// A short name for logs and reports, e.g. `flagd-file:/etc/flags.json`.
    fn describe(&self) -> String;

    /// Checks, before a rollout starts, that the flag exists and the store can be
    /// written.
    async fn healthcheck(&self, flag: &str) -> Result<FlagState, ActuatorError>;

    /// Enables the flag for `rollout` percent of traffic. Idempotent: applying the same
    /// percentage twice changes nothing.
    async fn set_rollout(
        &self,
        flag: &str,
        rollout: Percentage,
    ) -> Result<FlagState, ActuatorError>;

    /// The kill switch: traffic back to the fallback (flag disabled, 0 %).
    async fn kill(&self, flag: &str) -> Result<FlagState, ActuatorError>;

    /// Reads the flag's current state back from the store.
    async fn current(&self, flag: &str) -> Result<FlagState, ActuatorError>;
}
