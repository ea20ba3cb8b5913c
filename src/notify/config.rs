//! `[notifiers.NAME]` in the settings: the one match that names the concrete
//! notifiers.

use serde::{Deserialize, Serialize};

use super::json::JsonNotifier;
use super::slack::SlackNotifier;
use super::{Notifier, NotifyError, Severity};
use crate::domain::HumanDuration;
use crate::sources::prometheus::Secret;

/// A notification destination, e.g.
///
/// ```toml
/// [notifiers.oncall]
/// kind = "slack"
/// url = "https://hooks.slack.com/services/T000/B000/XXXX"
/// min_severity = "warning"
///
/// [notifiers.incidents]
/// kind = "json"
/// url = "https://incidents.internal/canary"
/// secret_env = "INCIDENTS_WEBHOOK_SECRET"
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum NotifierConfig {
    /// A Slack-compatible incoming webhook.
    Slack {
        /// The incoming-webhook URL. It is the credential for the channel: keep it out
        /// of files in version control (`CANARY_NOTIFIERS__NAME__URL` sets it) — it is
        /// never printed.
        url: Secret,
        /// The least severe notification sent here: `info` (the default), `warning` or
        /// `critical`.
        #[serde(default)]
        min_severity: Severity,
        /// How long one attempt may take. Default `5s`.
        #[serde(default = "default_timeout")]
        timeout: HumanDuration,
    },
    /// Any HTTP endpoint that takes a JSON POST of the notification.
    Json {
        /// Where to POST.
        url: String,
        /// The name of the environment variable holding the HMAC secret; with it every
        /// POST carries `X-Canary-Signature` (the webhook actuator's scheme). Without it
        /// notifications are not signed.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        secret_env: Option<String>,
        /// The least severe notification sent here. Default `info`.
        #[serde(default)]
        min_severity: Severity,
        /// How long one attempt may take. Default `5s`.
        #[serde(default = "default_timeout")]
        timeout: HumanDuration,
    },
}

fn default_timeout() -> HumanDuration {
    HumanDuration::parse("5s").expect("5s is a duration")
}

impl NotifierConfig {
    /// The least severe notification this destination gets.
    pub fn min_severity(&self) -> Severity {
        match self {
            NotifierConfig::Slack { min_severity, .. }
            | NotifierConfig::Json { min_severity, .. } => *min_severity,
        }
    }

    /// Builds the notifier named `name` in the settings, reading its secret from the
    /// environment. Nothing is contacted.
    pub fn build(&self, name: &str) -> Result<Box<dyn Notifier>, NotifyError> {
        match self {
            NotifierConfig::Slack { url, timeout, .. } => {
                Ok(Box::new(SlackNotifier::new(name, url, timeout.get())?))
            }
            NotifierConfig::Json {
                url,
                secret_env,
                timeout,
                ..
            } => {
                let secret = match secret_env {
                    None => None,
                    Some(variable) => match std::env::var(variable) {
                        Ok(secret) if !secret.is_empty() => Some(Secret::new(secret)),
                        _ => {
                            return Err(NotifyError::Config {
                                name: name.to_owned(),
                                message: format!(
                                    "the environment variable {variable} that should hold the HMAC secret is not set or empty"
                                ),
                            });
                        }
                    },
                };
                Ok(Box::new(JsonNotifier::new(
                    name,
                    url,
                    secret,
                    timeout.get(),
                )?))
            }
        }
    }
}
