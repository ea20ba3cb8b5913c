//! Actuators: the only code that changes production feature flags.
//!
//! An actuator moves a flag's rollout percentage, flips its kill switch and reads
//! its state back. Implementations live one per file (or folder) and are named only in
//! `app`; only the rollout runner calls them, so there is one audited path to
//! production flags.
//!
//! # Implementations
//! - [`log_only`]: remembers states in memory and logs them; for dry runs and tests.
//! - [`flagd_file`]: edits an OpenFeature flagd flag file, atomically.
//! - [`webhook`]: POSTs every change, signed, to a team's own flag system
//!   (`docs/webhook-actuator.md`).
//!
//! [`ActuatorConfig`] names one of them (from a config file or the CLI form
//! `log-only` / `flagd-file=PATH` / `webhook=URL`) and builds it; adding an actuator touches its own
//! module, one variant and one match arm.

pub mod flagd_file;
pub mod log_only;
pub mod webhook;

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::domain::Percentage;

/// A flag's state as the flag store reports it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FlagState {
    /// Whether the flag is on at all (the kill switch is `enabled = false`).
    pub enabled: bool,
    /// Share of traffic that gets the new variant while enabled.
    pub rollout: Percentage,
}

/// One flag change as the rollout asks for it: the flag, what to do with it, and what
/// the change is for. Most actuators only need the flag and the action (the trait's
/// default [`Actuator::apply`] calls [`Actuator::set_rollout`] or [`Actuator::kill`]);
/// those that tell another system (a webhook) send the context along.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FlagChange {
    /// The flag key.
    pub flag: String,
    /// What to do.
    pub action: FlagAction,
    /// Why, and the idempotency key.
    pub context: ChangeContext,
}

/// What a [`FlagChange`] does.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum FlagAction {
    /// Enable the flag for this share of traffic.
    SetRollout {
        /// The share.
        target: Percentage,
    },
    /// The kill switch: disable the flag.
    Kill,
}

impl FlagAction {
    /// `"set_rollout"` or `"kill"`, as recorded and sent.
    pub fn name(self) -> &'static str {
        match self {
            FlagAction::SetRollout { .. } => "set_rollout",
            FlagAction::Kill => "kill",
        }
    }

    /// The share of traffic the change leaves the new variant (0 for the kill switch).
    pub fn target(self) -> Percentage {
        match self {
            FlagAction::SetRollout { target } => target,
            FlagAction::Kill => Percentage::ZERO,
        }
    }
}

/// What a flag change is for. Every field is optional: a change made outside an
/// analysis (a test, a health check) has none.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ChangeContext {
    /// Unique to this change and the same on every retry or replay of it: receivers
    /// use it to apply a change once.
    pub actuation_id: Option<String>,
    /// The analysis that asked for the change.
    pub analysis_id: Option<String>,
    /// The verdict behind it: `promote`, `hold` or `rollback`.
    pub verdict: Option<String>,
    /// The reasons for the verdict, most important first.
    pub reasons: Vec<String>,
    /// Where a person reads the analysis.
    pub report_url: Option<String>,
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

    /// Makes one change with its context. The rollout runner calls this; the default
    /// ignores the context and calls [`Actuator::set_rollout`] or [`Actuator::kill`].
    /// Actuators that send the context somewhere (webhooks) and wrappers (metrics,
    /// retries, records) override it.
    async fn apply(&self, change: &FlagChange) -> Result<FlagState, ActuatorError> {
        match change.action {
            FlagAction::SetRollout { target } => self.set_rollout(&change.flag, target).await,
            FlagAction::Kill => self.kill(&change.flag).await,
        }
    }
}

/// Which actuator to use and how to reach its store. In a config file it is a table
/// with a `kind` (`kind = "flagd-file"`, `path = "/etc/flagd/flags.json"`); on the
/// command line it is `log-only` or `flagd-file=PATH`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum ActuatorConfig {
    /// Change nothing: remember flag states in memory and log every change. For dry
    /// runs.
    LogOnly,
    /// Edit an OpenFeature flagd flag file (JSON) that flagd watches.
    FlagdFile {
        /// The flag file. Its directory must be writable: the file is replaced by
        /// writing a temporary file beside it and renaming it over the original.
        path: PathBuf,
    },
    /// POST every change, signed with HMAC-SHA256, to a webhook
    /// (`docs/webhook-actuator.md`).
    Webhook(webhook::WebhookConfig),
}

impl ActuatorConfig {
    /// The forms [`FromStr`] accepts, for help texts and error messages.
    pub const CLI_FORMS: &'static str =
        "`log-only`, `flagd-file=PATH` or `webhook=URL` (HMAC secret from CANARY_WEBHOOK_SECRET)";

    /// Builds the actuator. Nothing is contacted yet: call [`Actuator::healthcheck`]
    /// with the flag before a rollout starts.
    pub fn build(&self) -> Result<Box<dyn Actuator>, ActuatorError> {
        match self {
            ActuatorConfig::LogOnly => Ok(Box::new(log_only::LogOnlyActuator::new())),
            ActuatorConfig::FlagdFile { path } => {
                Ok(Box::new(flagd_file::FlagdFileActuator::new(path.clone())))
            }
            ActuatorConfig::Webhook(config) => Ok(Box::new(config.build()?)),
        }
    }
}

impl FromStr for ActuatorConfig {
    type Err = String;

    /// Parses the command-line form: `log-only`, `flagd-file=PATH` or `webhook=URL`.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let (kind, argument) = match text.split_once('=') {
            Some((kind, argument)) => (kind, Some(argument)),
            None => (text, None),
        };
        match (kind, argument) {
            ("log-only", None) => Ok(ActuatorConfig::LogOnly),
            ("log-only", Some(_)) => Err(format!(
                "invalid actuator {text:?}: `log-only` takes no argument (expected {})",
                Self::CLI_FORMS
            )),
            ("flagd-file", Some(path)) if !path.is_empty() => Ok(ActuatorConfig::FlagdFile {
                path: PathBuf::from(path),
            }),
            ("flagd-file", _) => Err(format!(
                "invalid actuator {text:?}: `flagd-file` needs the flag file's path, as `flagd-file=PATH`"
            )),
            ("webhook", Some(url)) if !url.is_empty() => Ok(ActuatorConfig::Webhook(
                webhook::WebhookConfig::for_url(url),
            )),
            ("webhook", _) => Err(format!(
                "invalid actuator {text:?}: `webhook` needs the receiver's URL, as `webhook=URL`"
            )),
            _ => Err(format!(
                "unknown actuator {text:?}: expected {}",
                Self::CLI_FORMS
            )),
        }
    }
}

impl fmt::Display for ActuatorConfig {
    /// The command-line form, which [`FromStr`] reads back.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ActuatorConfig::LogOnly => write!(f, "log-only"),
            ActuatorConfig::FlagdFile { path } => write!(f, "flagd-file={}", path.display()),
            // Only the URL: the CLI form cannot say the other settings.
            ActuatorConfig::Webhook(config) => write!(f, "webhook={}", config.url),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cli_forms_parse_into_configs() {
        assert_eq!(
            "log-only".parse::<ActuatorConfig>(),
            Ok(ActuatorConfig::LogOnly)
        );
        assert_eq!(
            "flagd-file=/etc/flagd/flags.json".parse::<ActuatorConfig>(),
            Ok(ActuatorConfig::FlagdFile {
                path: PathBuf::from("/etc/flagd/flags.json")
            })
        );
    }

    #[test]
    fn configs_print_as_the_cli_form_they_parse_from() {
        for text in ["log-only", "flagd-file=flags=v2.json"] {
            let config: ActuatorConfig = text.parse().unwrap();
            assert_eq!(config.to_string(), text);
        }
    }

    #[test]
    fn unknown_actuator_error_names_the_allowed_forms() {
        let error = "unleash=http://localhost"
            .parse::<ActuatorConfig>()
            .unwrap_err();
        assert_eq!(
            error,
            "unknown actuator \"unleash=http://localhost\": expected `log-only`, `flagd-file=PATH` or `webhook=URL` (HMAC secret from CANARY_WEBHOOK_SECRET)"
        );
    }

    #[test]
    fn flagd_file_without_a_path_is_refused() {
        for text in ["flagd-file", "flagd-file="] {
            let error = text.parse::<ActuatorConfig>().unwrap_err();
            assert!(error.contains("flagd-file=PATH"), "{error}");
        }
        assert!("log-only=x".parse::<ActuatorConfig>().is_err());
    }

    #[test]
    fn config_file_form_is_a_table_with_a_kind() {
        let config: ActuatorConfig =
            toml::from_str("kind = \"flagd-file\"\npath = \"/etc/flagd/flags.json\"").unwrap();
        assert_eq!(
            config,
            ActuatorConfig::FlagdFile {
                path: PathBuf::from("/etc/flagd/flags.json")
            }
        );
        let config: ActuatorConfig = toml::from_str("kind = \"log-only\"").unwrap();
        assert_eq!(config, ActuatorConfig::LogOnly);
    }

    #[tokio::test]
    async fn built_actuators_describe_their_store() {
        let log_only = ActuatorConfig::LogOnly.build().unwrap();
        assert_eq!(log_only.describe(), "log-only");
        let flagd = ActuatorConfig::FlagdFile {
            path: PathBuf::from("/etc/flagd/flags.json"),
        }
        .build()
        .unwrap();
        assert_eq!(flagd.describe(), "flagd-file:/etc/flagd/flags.json");
    }
}
