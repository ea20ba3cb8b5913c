//! Retries with exponential backoff and a deadline, and verification by read-back,
//! around any actuator.
//!
//! A flag change that fails because the flag store is unavailable is tried again after
//! a pause that doubles from `initial_backoff` up to `max_backoff`, until it succeeds or
//! `deadline` has passed since the first attempt. Errors that another attempt cannot
//! fix (a missing flag, a store the actuator cannot edit) end the retries at once.
//!
//! Every change that an actuator reports as applied is then read back with
//! [`Actuator::current`]: the kill switch must read as disabled, a rollout as enabled
//! at the reported share. A read-back that disagrees counts as the store being
//! unavailable (it may be catching up) and is retried like a failed write, so a change
//! counts as done only once the store says so.
//!
//! Retrying is safe because changes are idempotent: setting a flag to the same share
//! twice, or pulling its kill switch twice, changes nothing, and a [`FlagChange`]
//! carries the same actuation id on every attempt.
//!
//! Wrapped around each configured actuator in the composition root; the runner and
//! the worker see one call that either applied the change or failed for good.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use super::{Actuator, ActuatorError, FlagAction, FlagChange, FlagState};
use crate::domain::Percentage;

/// How long and how often to retry a flag change.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetryPolicy {
    /// The pause after the first failed attempt; it doubles after each further one.
    pub initial_backoff: Duration,
    /// The longest pause between attempts.
    pub max_backoff: Duration,
    /// No attempt starts later than this after the first one.
    pub deadline: Duration,
}

impl Default for RetryPolicy {
    /// 100 ms doubling to 5 s, for 30 s.
    fn default() -> Self {
        Self {
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(5),
            deadline: Duration::from_secs(30),
        }
    }
}

impl RetryPolicy {
    /// One attempt, no retries (for tests that want to see the first failure).
    pub const NONE: RetryPolicy = RetryPolicy {
        initial_backoff: Duration::ZERO,
        max_backoff: Duration::ZERO,
        deadline: Duration::ZERO,
    };
}

/// An actuator whose changes are retried and verified; see the module documentation.
pub struct RetryingActuator {
    inner: Arc<dyn Actuator>,
    policy: RetryPolicy,
}

impl RetryingActuator {
    /// Wraps `inner`.
    pub fn new(inner: Arc<dyn Actuator>, policy: RetryPolicy) -> Self {
        Self { inner, policy }
    }

    /// One attempt: the change, then its read-back.
    async fn attempt(&self, change: &FlagChange) -> Result<FlagState, ActuatorError> {
        let reported = self.inner.apply(change).await?;
        let read_back = self.inner.current(&change.flag).await?;
        let (agrees, expected) = match change.action {
            FlagAction::Kill => (!read_back.enabled, "disabled".to_owned()),
            FlagAction::SetRollout { .. } => (
                read_back.enabled && same_share(read_back.rollout, reported.rollout),
                format!("enabled at {}", reported.rollout),
            ),
        };
        if agrees {
            Ok(read_back)
        } else {
            Err(ActuatorError::Unavailable {
                store: self.inner.describe(),
                message: format!(
                    "flag {:?} reads back {} at {} after the change; expected {expected}",
                    change.flag,
                    if read_back.enabled {
                        "enabled"
                    } else {
                        "disabled"
                    },
                    read_back.rollout
                ),
            })
        }
    }

    async fn apply_with_retries(&self, change: &FlagChange) -> Result<FlagState, ActuatorError> {
        let started = tokio::time::Instant::now();
        let mut backoff = self.policy.initial_backoff;
        let mut attempts = 1_u32;
        loop {
            let error = match self.attempt(change).await {
                Ok(state) => {
                    if attempts > 1 {
                        tracing::info!(flag = %change.flag, action = change.action.name(), attempts, "flag change applied after retries");
                    }
                    return Ok(state);
                }
                Err(error @ ActuatorError::Unavailable { .. }) => error,
                Err(error) => return Err(error),
            };
            let waited = started.elapsed();
            if waited + backoff >= self.policy.deadline {
                tracing::warn!(flag = %change.flag, action = change.action.name(), attempts, error = %error, "flag change failed; out of time for retries");
                return Err(ActuatorError::Unavailable {
                    store: self.inner.describe(),
                    message: format!(
                        "{} attempts over {:.1} s failed; the last: {error}",
                        attempts,
                        waited.as_secs_f64()
                    ),
                });
            }
            tracing::warn!(flag = %change.flag, action = change.action.name(), attempts, retry_in_ms = backoff.as_millis() as u64, error = %error, "flag change failed; retrying");
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(self.policy.max_backoff);
            attempts += 1;
        }
    }
}

/// Shares equal to a hundredth of a percent: stores keep shares as integers, per-mille
/// or floats, and a read-back must not fail on the rounding.
fn same_share(left: Percentage, right: Percentage) -> bool {
    (left.value() - right.value()).abs() < 0.01
}

#[async_trait]
impl Actuator for RetryingActuator {
    fn describe(&self) -> String {
        self.inner.describe()
    }

    async fn healthcheck(&self, flag: &str) -> Result<FlagState, ActuatorError> {
        self.inner.healthcheck(flag).await
    }

    async fn current(&self, flag: &str) -> Result<FlagState, ActuatorError> {
        self.inner.current(flag).await
    }

    fn sees_outside_changes(&self) -> bool {
        self.inner.sees_outside_changes()
    }

    async fn apply(&self, change: &FlagChange) -> Result<FlagState, ActuatorError> {
        self.apply_with_retries(change).await
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;
    use crate::actuators::ActuatorExt;
    use crate::actuators::log_only::LogOnlyActuator;

    /// A flag store that fails the first `failures` writes as unavailable, and can be
    /// made to lie on read-back.
    struct Flaky {
        flags: LogOnlyActuator,
        failures: Mutex<u32>,
        writes: Mutex<u32>,
        stale_reads: Mutex<u32>,
        missing: bool,
    }

    impl Flaky {
        fn new(failures: u32, stale_reads: u32) -> Self {
            Self {
                flags: LogOnlyActuator::new(),
                failures: Mutex::new(failures),
                writes: Mutex::new(0),
                stale_reads: Mutex::new(stale_reads),
                missing: false,
            }
        }

        fn writes(&self) -> u32 {
            *self.writes.lock().unwrap()
        }
    }

    #[async_trait]
    impl Actuator for Flaky {
        fn describe(&self) -> String {
            "flaky".to_owned()
        }
        async fn healthcheck(&self, flag: &str) -> Result<FlagState, ActuatorError> {
            self.flags.healthcheck(flag).await
        }
        async fn apply(&self, change: &FlagChange) -> Result<FlagState, ActuatorError> {
            let flag = change.flag.as_str();
            if change.action == FlagAction::Kill {
                *self.writes.lock().unwrap() += 1;
                return self.flags.apply(change).await;
            }
            *self.writes.lock().unwrap() += 1;
            if self.missing {
                return Err(ActuatorError::FlagNotFound {
                    flag: flag.to_owned(),
                    store: "flaky".to_owned(),
                });
            }
            {
                let mut failures = self.failures.lock().unwrap();
                if *failures > 0 {
                    *failures -= 1;
                    return Err(ActuatorError::Unavailable {
                        store: "flaky".to_owned(),
                        message: "connection refused".to_owned(),
                    });
                }
            }
            self.flags.apply(change).await
        }
        async fn current(&self, flag: &str) -> Result<FlagState, ActuatorError> {
            {
                let mut stale = self.stale_reads.lock().unwrap();
                if *stale > 0 {
                    *stale -= 1;
                    return Ok(FlagState {
                        enabled: true,
                        rollout: Percentage::ZERO,
                    });
                }
            }
            self.flags.current(flag).await
        }
    }

    fn percent(value: f64) -> Percentage {
        Percentage::parse(value).unwrap()
    }

    #[tokio::test(start_paused = true)]
    async fn an_unavailable_store_is_retried_with_doubling_pauses_until_the_change_applies() {
        let flaky = Arc::new(Flaky::new(3, 0));
        let actuator = RetryingActuator::new(flaky.clone(), RetryPolicy::default());
        let started = tokio::time::Instant::now();
        let state = actuator
            .set_rollout("checkout", percent(25.0))
            .await
            .unwrap();
        assert_eq!(state.rollout, percent(25.0));
        assert_eq!(flaky.writes(), 4);
        // 100 + 200 + 400 ms of pauses.
        assert_eq!(started.elapsed(), Duration::from_millis(700));
    }

    #[tokio::test(start_paused = true)]
    async fn retries_stop_at_the_deadline_with_the_last_error_and_the_attempt_count() {
        let flaky = Arc::new(Flaky::new(u32::MAX, 0));
        let policy = RetryPolicy {
            deadline: Duration::from_secs(10),
            ..RetryPolicy::default()
        };
        let actuator = RetryingActuator::new(flaky.clone(), policy);
        let started = tokio::time::Instant::now();
        let error = actuator
            .set_rollout("checkout", percent(5.0))
            .await
            .unwrap_err();
        assert!(
            matches!(error, ActuatorError::Unavailable { .. }),
            "{error}"
        );
        let message = error.to_string();
        assert!(message.contains("attempts over"), "{message}");
        assert!(message.contains("connection refused"), "{message}");
        // Pauses 0.1 + 0.2 + 0.4 + 0.8 + 1.6 + 3.2 = 6.3 s; the next (5 s) would pass 10 s.
        assert_eq!(flaky.writes(), 7);
        assert_eq!(started.elapsed(), Duration::from_millis(6300));
    }

    #[tokio::test(start_paused = true)]
    async fn a_read_back_that_disagrees_is_retried_until_the_store_says_what_was_asked() {
        let flaky = Arc::new(Flaky::new(0, 2));
        let actuator = RetryingActuator::new(flaky.clone(), RetryPolicy::default());
        let state = actuator
            .set_rollout("checkout", percent(50.0))
            .await
            .unwrap();
        assert_eq!(state.rollout, percent(50.0));
        assert_eq!(
            flaky.writes(),
            3,
            "written again after each stale read-back"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_kill_that_reads_back_enabled_is_not_done() {
        // Every read-back says "enabled at 0 %": the kill switch never shows as pulled.
        let flaky = Arc::new(Flaky::new(0, u32::MAX));
        let policy = RetryPolicy {
            deadline: Duration::from_secs(1),
            ..RetryPolicy::default()
        };
        let actuator = RetryingActuator::new(flaky, policy);
        let error = actuator.kill("checkout").await.unwrap_err().to_string();
        assert!(error.contains("expected disabled"), "{error}");
    }

    #[tokio::test(start_paused = true)]
    async fn errors_another_attempt_cannot_fix_are_not_retried() {
        let mut flaky = Flaky::new(0, 0);
        flaky.missing = true;
        let flaky = Arc::new(flaky);
        let actuator = RetryingActuator::new(flaky.clone(), RetryPolicy::default());
        let error = actuator
            .set_rollout("nope", percent(5.0))
            .await
            .unwrap_err();
        assert!(matches!(error, ActuatorError::FlagNotFound { .. }));
        assert_eq!(flaky.writes(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn no_retries_means_one_attempt() {
        let flaky = Arc::new(Flaky::new(1, 0));
        let actuator = RetryingActuator::new(flaky.clone(), RetryPolicy::NONE);
        assert!(
            actuator
                .set_rollout("checkout", percent(5.0))
                .await
                .is_err()
        );
        assert_eq!(flaky.writes(), 1);
    }
}
