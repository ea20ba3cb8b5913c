//! The Unleash actuator: moves a flag through the Unleash admin API, in one project and
//! one environment.
//!
//! - **The rollout is one `flexibleRollout` strategy** in the environment: the one whose
//!   `groupId` is the flag, or else the only `flexibleRollout` there is. When there is
//!   none, canary creates it (stickiness `default`, `groupId` = the flag, so the same
//!   users stay in as the percentage grows); its `rollout` parameter is changed with a
//!   JSON-patch. Its constraints, segments and variants are kept: they narrow who the
//!   percentage applies to.
//! - **Other active strategies are refused**: Unleash gives a user the flag when *any*
//!   active strategy matches, so a `default` strategy or a user list beside the rollout
//!   would make the percentage meaningless. `set_rollout`, `current` and `healthcheck`
//!   answer `Invalid` naming them; disabled strategies are ignored.
//! - **Strategy first, switch second**: Unleash 7 adds a default strategy of 100 % when
//!   an environment with no active strategy is switched on, so the environment is only
//!   switched on once the rollout strategy is in place and active. Every change is read
//!   back through the admin API and compared with what was asked; when the read-back
//!   shows the flag on for more users than asked (another strategy appeared, the
//!   percentage is higher), the environment is switched off again and the call fails.
//! - **Percentages are whole**: Unleash stores integers from 0 to 100; a plan asking for
//!   0.5 % is refused as `Invalid` rather than rounded (rounding 0.1 % up is ten times the
//!   traffic asked for, rounding it down measures nothing).
//! - **Kill switch**: the environment is switched off (`POST .../off`), read back and
//!   checked; then the rollout strategy is set to 0 % so switching the environment on
//!   by hand never jumps back to the old percentage. A kill never fails because of the
//!   strategies: the switch comes first and a failure to zero the rollout is only logged.
//!   Other environments and other flags are not touched.
//! - **Idempotent**: when the flag is already as asked, nothing is written (no event
//!   appears in Unleash's event log).
//! - **The token** is an admin API token read from an environment variable
//!   ([`AdminToken::from_env`]); it is sent only in the `Authorization` header and never
//!   appears in `describe()`, `Debug` output or errors.

mod client;
mod strategies;

#[cfg(test)]
mod tests;

use std::time::Duration;

use async_trait::async_trait;
use reqwest::Url;

use super::{Actuator, ActuatorError, FlagAction, FlagChange, FlagState};
use crate::domain::Percentage;
use client::AdminClient;
pub use client::AdminToken;
use strategies::{Reading, StrategyChange};

/// How long one admin API request may take when the config does not say.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// Where the flags live: a server, a project in it and one of its environments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnleashTarget {
    /// The server's base URL, e.g. `http://unleash.internal:4242` (the admin API is
    /// under `/api/admin`; a path prefix such as `/unleash` is kept).
    pub url: String,
    /// The project holding the flags, `default` in a fresh Unleash.
    pub project: String,
    /// The environment whose switch and strategies canary moves.
    pub environment: String,
    /// The longest one admin API request may take.
    pub timeout: Duration,
}

/// Moves flags in one Unleash project and environment; see the module docs.
#[derive(Debug)]
pub struct UnleashActuator {
    client: AdminClient,
    target: UnleashTarget,
}

impl UnleashActuator {
    /// An actuator for `target` that authenticates with `token`. Checks the URL only;
    /// nothing is contacted until it is used (call [`Actuator::healthcheck`] first).
    pub fn new(target: UnleashTarget, token: AdminToken) -> Result<Self, ActuatorError> {
        let store = store_name(&target);
        let invalid = |message: String| ActuatorError::Invalid {
            store: store.clone(),
            message,
        };
        let mut base = Url::parse(&target.url)
            .map_err(|error| invalid(format!("{:?} is not a URL: {error}", target.url)))?;
        match base.scheme() {
            "http" | "https" => {
                crate::tls::check_https(&base, "url").map_err(|error| invalid(error.to_string()))?
            }
            other => {
                return Err(invalid(format!(
                    "the URL scheme must be http or https, not {other:?}"
                )));
            }
        }
        if !base.username().is_empty() || base.password().is_some() {
            return Err(invalid(
                "the URL must not carry credentials; the admin token is read from the environment"
                    .to_owned(),
            ));
        }
        if base.query().is_some() || base.fragment().is_some() {
            return Err(invalid(
                "the URL must be the server's base URL, without a query or fragment".to_owned(),
            ));
        }
        if !base.path().ends_with('/') {
            let path = format!("{}/", base.path());
            base.set_path(&path);
        }
        let client = AdminClient::new(
            base,
            target.project.clone(),
            target.environment.clone(),
            token,
            target.timeout,
            store,
        )?;
        Ok(Self { client, target })
    }

    /// The server, project and environment this actuator moves flags in.
    pub fn target(&self) -> &UnleashTarget {
        &self.target
    }

    fn invalid(&self, flag: &str, message: String) -> ActuatorError {
        ActuatorError::Invalid {
            store: store_name(&self.target),
            message: format!("flag {flag:?}: {message}"),
        }
    }

    /// Reads the feature and sorts the environment's strategies; `f` gets the reading.
    async fn read<T>(
        &self,
        flag: &str,
        f: impl FnOnce(&Reading<'_>) -> Result<T, String>,
    ) -> Result<T, ActuatorError> {
        let feature = self.client.feature(flag).await?;
        let environment = feature
            .environment(&self.target.environment)
            .map_err(|message| self.invalid(flag, message))?;
        let reading =
            strategies::read(environment, flag).map_err(|message| self.invalid(flag, message))?;
        f(&reading).map_err(|message| self.invalid(flag, message))
    }

    /// Switches the environment off after a read-back showed more exposure than asked,
    /// and explains in the error what was seen and done.
    async fn fail_closed(&self, flag: &str, problem: String) -> ActuatorError {
        let outcome = match self.client.switch(flag, false).await {
            Ok(()) => "canary switched the environment off to be safe".to_owned(),
            Err(error) => format!("switching the environment off to be safe failed too: {error}"),
        };
        tracing::error!(flag = %flag, store = %store_name(&self.target), problem = %problem, outcome = %outcome, "Unleash flag read back with more exposure than asked");
        self.invalid(flag, format!("{problem}; {outcome}"))
    }
}

impl UnleashActuator {
    /// Enables the flag for `rollout` percent of traffic.
    async fn write_rollout(
        &self,
        flag: &str,
        rollout: Percentage,
    ) -> Result<FlagState, ActuatorError> {
        let percent =
            strategies::whole_percent(rollout).map_err(|message| self.invalid(flag, message))?;
        let (plan, before) = self
            .read(flag, |reading| {
                Ok((reading.plan(flag, percent)?, reading.state()))
            })
            .await?;
        let asked = FlagState {
            enabled: true,
            rollout,
        };
        if plan.strategy == StrategyChange::None && !plan.switch_on {
            tracing::debug!(flag = %flag, rollout = %rollout, store = %store_name(&self.target), "flag already at this rollout; nothing written to Unleash");
            return before.map_err(|message| self.invalid(flag, message));
        }
        match plan.strategy {
            StrategyChange::None => {}
            StrategyChange::Create(body) => {
                self.client.create_strategy(flag, body).await?;
            }
            StrategyChange::Patch { id, operations } => {
                self.client.patch_strategy(flag, &id, operations).await?;
            }
        }
        if plan.switch_on {
            self.client.switch(flag, true).await?;
        }
        let after = self.read(flag, |reading| Ok(reading.state())).await?;
        match after {
            Ok(state) if state == asked => {
                tracing::info!(flag = %flag, rollout = %rollout, store = %store_name(&self.target), "flag rollout set in Unleash");
                Ok(state)
            }
            Ok(state) if !state.enabled || state.rollout < rollout => Err(self.invalid(
                flag,
                format!(
                    "asked for {rollout} enabled, but the admin API reads back {} at {}",
                    if state.enabled { "enabled" } else { "disabled" },
                    state.rollout
                ),
            )),
            Ok(state) => {
                let problem = format!(
                    "asked for {rollout}, but the admin API reads back enabled at {}",
                    state.rollout
                );
                Err(self.fail_closed(flag, problem).await)
            }
            // Enabled beside other active strategies, or a rollout that cannot be read.
            Err(problem) => Err(self
                .fail_closed(flag, format!("after setting {rollout}: {problem}"))
                .await),
        }
    }

    /// The kill switch.
    async fn write_kill(&self, flag: &str) -> Result<FlagState, ActuatorError> {
        self.client.switch(flag, false).await?;
        let (enabled, strategy) = self
            .read(flag, |reading| {
                let strategy = reading
                    .rollout_strategy
                    .map(|strategy| (strategy.id.clone(), strategy.rollout()));
                Ok((reading.enabled, strategy))
            })
            .await?;
        if enabled {
            return Err(self.invalid(
                flag,
                "switched the environment off, but the admin API still reads it enabled".to_owned(),
            ));
        }
        tracing::info!(flag = %flag, store = %store_name(&self.target), "flag killed in Unleash (environment switched off)");
        let mut state = FlagState {
            enabled: false,
            rollout: Percentage::ZERO,
        };
        // Zeroing the rollout keeps a hand-made switch-on from restoring the old share.
        // The flag is already off, so a failure here is logged, not returned.
        if let Some((id, current)) = strategy {
            match current {
                Ok(0) => {}
                Ok(percent) => {
                    let operations = serde_json::json!([{"op": "replace", "path": "/parameters/rollout", "value": "0"}]);
                    if let Err(error) = self.client.patch_strategy(flag, &id, operations).await {
                        tracing::warn!(flag = %flag, %error, "flag is off, but its rollout strategy could not be set to 0 %; switching the environment on by hand restores the old share");
                        state.rollout = Percentage::parse(f64::from(percent))
                            .expect("a whole percentage of at most 100");
                    }
                }
                Err(problem) => {
                    tracing::warn!(flag = %flag, problem = %problem, "flag is off, but its rollout strategy was left as it is");
                }
            }
        }
        Ok(state)
    }
}

#[async_trait]
impl Actuator for UnleashActuator {
    fn describe(&self) -> String {
        format!(
            "unleash:{} project={} environment={}",
            self.target.url, self.target.project, self.target.environment
        )
    }

    /// The token works, the feature exists in the project and environment, and its
    /// strategies are ones canary can move. Writing is not tried: an admin token may
    /// write.
    async fn healthcheck(&self, flag: &str) -> Result<FlagState, ActuatorError> {
        self.read(flag, |reading| {
            reading.refuse_others()?;
            reading.state()
        })
        .await
    }

    async fn current(&self, flag: &str) -> Result<FlagState, ActuatorError> {
        self.read(flag, |reading| reading.state()).await
    }

    async fn apply(&self, change: &FlagChange) -> Result<FlagState, ActuatorError> {
        match change.action {
            FlagAction::SetRollout { target } => self.write_rollout(&change.flag, target).await,
            FlagAction::Kill => self.write_kill(&change.flag).await,
        }
    }
}

/// How a target is named in errors and logs (never with the token).
fn store_name(target: &UnleashTarget) -> String {
    format!(
        "unleash {} (project {:?}, environment {:?})",
        target.url, target.project, target.environment
    )
}
