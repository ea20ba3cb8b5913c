//! The log-only actuator: keeps flag states in memory and logs every change.
//!
//! It never touches anything outside the process, which makes it the actuator for dry
//! runs (`--actuator log-only`) and for tests of the rollout runner. A flag it has not
//! seen yet starts enabled at 0 %, the state a real store would report for a flag that
//! exists but has not been rolled out.

use std::collections::BTreeMap;

use async_trait::async_trait;
use tokio::sync::Mutex;

use super::{Actuator, ActuatorError, FlagAction, FlagChange, FlagState};
use crate::domain::Percentage;

/// An actuator that only remembers and logs; see the module docs.
#[derive(Debug, Default)]
pub struct LogOnlyActuator {
    flags: Mutex<BTreeMap<String, FlagState>>,
}

impl LogOnlyActuator {
    /// An actuator that knows no flags yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// The state a flag has before anything moved it: enabled, 0 %.
    fn initial_state() -> FlagState {
        FlagState {
            enabled: true,
            rollout: Percentage::ZERO,
        }
    }

    /// Stores `new_state` for `flag` and logs it when it differs from the old state.
    async fn store_state(&self, flag: &str, new_state: FlagState) -> FlagState {
        let mut flags = self.flags.lock().await;
        let old_state = flags
            .insert(flag.to_owned(), new_state.clone())
            .unwrap_or_else(Self::initial_state);
        if old_state == new_state {
            tracing::debug!(flag = %flag, rollout = %new_state.rollout, enabled = new_state.enabled, "flag unchanged (log-only)");
        } else if new_state.enabled {
            tracing::info!(flag = %flag, rollout = %new_state.rollout, "flag rollout set (log-only, nothing changed outside)");
        } else {
            tracing::info!(flag = %flag, rollout = %new_state.rollout, "flag killed (log-only, nothing changed outside)");
        }
        new_state
    }
}

impl LogOnlyActuator {
    /// Enables the flag for `rollout` percent of traffic.
    async fn write_rollout(
        &self,
        flag: &str,
        rollout: Percentage,
    ) -> Result<FlagState, ActuatorError> {
        let new_state = FlagState {
            enabled: true,
            rollout,
        };
        Ok(self.store_state(flag, new_state).await)
    }

    /// The kill switch.
    async fn write_kill(&self, flag: &str) -> Result<FlagState, ActuatorError> {
        let new_state = FlagState {
            enabled: false,
            rollout: Percentage::ZERO,
        };
        Ok(self.store_state(flag, new_state).await)
    }
}

#[async_trait]
impl Actuator for LogOnlyActuator {
    fn describe(&self) -> String {
        "log-only".to_owned()
    }

    async fn healthcheck(&self, flag: &str) -> Result<FlagState, ActuatorError> {
        self.current(flag).await
    }

    fn sees_outside_changes(&self) -> bool {
        false
    }

    async fn current(&self, flag: &str) -> Result<FlagState, ActuatorError> {
        let flags = self.flags.lock().await;
        Ok(flags.get(flag).cloned().unwrap_or_else(Self::initial_state))
    }

    async fn apply(&self, change: &FlagChange) -> Result<FlagState, ActuatorError> {
        match change.action {
            FlagAction::SetRollout { target } => self.write_rollout(&change.flag, target).await,
            FlagAction::Kill => self.write_kill(&change.flag).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::actuators::ActuatorExt;

    fn percent(value: f64) -> Percentage {
        Percentage::parse(value).unwrap()
    }

    #[tokio::test]
    async fn unknown_flag_starts_enabled_at_zero_percent() {
        let actuator = LogOnlyActuator::new();
        let state = actuator.current("new-checkout").await.unwrap();
        assert_eq!(
            state,
            FlagState {
                enabled: true,
                rollout: Percentage::ZERO
            }
        );
        assert_eq!(actuator.healthcheck("new-checkout").await.unwrap(), state);
    }

    #[tokio::test]
    async fn stages_are_remembered_and_read_back() {
        let actuator = LogOnlyActuator::new();
        for stage in [1.0, 5.0, 25.0, 50.0, 100.0] {
            let written = actuator
                .set_rollout("new-checkout", percent(stage))
                .await
                .unwrap();
            let read = actuator.current("new-checkout").await.unwrap();
            assert_eq!(written, read);
            assert_eq!(read.rollout, percent(stage));
            assert!(read.enabled);
        }
    }

    #[tokio::test]
    async fn kill_disables_at_zero_percent_and_leaves_other_flags_alone() {
        let actuator = LogOnlyActuator::new();
        actuator
            .set_rollout("new-checkout", percent(25.0))
            .await
            .unwrap();
        actuator
            .set_rollout("dark-mode", percent(50.0))
            .await
            .unwrap();
        let killed = actuator.kill("new-checkout").await.unwrap();
        assert_eq!(
            killed,
            FlagState {
                enabled: false,
                rollout: Percentage::ZERO
            }
        );
        assert_eq!(actuator.current("new-checkout").await.unwrap(), killed);
        assert_eq!(
            actuator.current("dark-mode").await.unwrap().rollout,
            percent(50.0)
        );
    }

    #[test]
    fn describes_itself_as_log_only() {
        assert_eq!(LogOnlyActuator::new().describe(), "log-only");
    }
}
