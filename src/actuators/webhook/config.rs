//! The webhook actuator's settings: serde fields whose doc comments are the user docs,
//! the CLI form's defaults, and `build()`, which reads the HMAC secret from the
//! environment and checks the URLs before anything is sent.

use reqwest::Url;
use serde::{Deserialize, Serialize};

use super::WebhookActuator;
use crate::actuators::ActuatorError;
use crate::domain::HumanDuration;
use crate::sources::prometheus::Secret;

/// The environment variable the HMAC secret is read from unless `secret_env` names
/// another (and always for the CLI form `webhook=URL`).
pub const DEFAULT_SECRET_ENV: &str = "CANARY_WEBHOOK_SECRET";

/// The placeholder in `state_url` that the flag key replaces.
pub const FLAG_PLACEHOLDER: &str = "{flag}";

/// A webhook that receives every flag change as a signed HTTP POST; see
/// `docs/webhook-actuator.md` for the contract a receiver implements.
///
/// ```toml
/// [actuators.flags]
/// kind = "webhook"
/// url = "https://flags.internal/canary/actuations"
/// secret_env = "FLAGS_WEBHOOK_SECRET"
/// timeout = "5s"
/// state_url = "https://flags.internal/canary/flags/{flag}"
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    /// Where every flag change is POSTed (`http://` or `https://`; a build without the
    /// default `rustls` feature refuses HTTPS here at start-up).
    pub url: String,
    /// The name of the environment variable holding the HMAC-SHA256 secret that signs
    /// every request (`X-Canary-Signature`). The secret itself is never written in a
    /// settings file. Default `CANARY_WEBHOOK_SECRET`.
    #[serde(default = "default_secret_env")]
    pub secret_env: String,
    /// How long one request may take, connection included, before it counts as
    /// unavailable (retryable). Default `5s`.
    #[serde(default = "default_timeout")]
    pub timeout: HumanDuration,
    /// Optional read-back: a URL answering `GET` with the flag's state as
    /// `{"enabled": bool, "rollout": number}`; `{flag}` is replaced by the flag key.
    /// Without it the actuator cannot read a flag back and reports the last state it
    /// applied itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state_url: Option<String>,
}

fn default_secret_env() -> String {
    DEFAULT_SECRET_ENV.to_owned()
}

fn default_timeout() -> HumanDuration {
    HumanDuration::parse("5s").expect("5s is a duration")
}

impl WebhookConfig {
    /// The settings the CLI form `webhook=URL` stands for: the secret from
    /// `CANARY_WEBHOOK_SECRET`, a 5 s timeout, no read-back.
    pub fn for_url(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            secret_env: default_secret_env(),
            timeout: default_timeout(),
            state_url: None,
        }
    }

    /// Builds the actuator with the secret read from the environment variable
    /// `secret_env`. Nothing is contacted yet.
    pub fn build(&self) -> Result<WebhookActuator, ActuatorError> {
        let secret = match std::env::var(&self.secret_env) {
            Ok(secret) if !secret.is_empty() => Secret::new(secret),
            Ok(_) => {
                return Err(self.invalid(format!(
                    "the environment variable {} that should hold the HMAC secret is empty",
                    self.secret_env
                )));
            }
            Err(_) => {
                return Err(self.invalid(format!(
                    "the environment variable {} that should hold the HMAC secret is not set",
                    self.secret_env
                )));
            }
        };
        self.build_with_secret(secret)
    }

    /// Builds the actuator with the given secret (tests, and callers that keep secrets
    /// elsewhere). Checks both URLs.
    pub fn build_with_secret(&self, secret: Secret) -> Result<WebhookActuator, ActuatorError> {
        if secret.expose().is_empty() {
            return Err(self.invalid("the HMAC secret is empty".to_owned()));
        }
        let url =
            parse_http_url(&self.url).map_err(|message| self.invalid(format!("url: {message}")))?;
        crate::tls::check_https(&url, "url").map_err(|error| self.invalid(error.to_string()))?;
        if let Some(state_url) = &self.state_url {
            let state_url = parse_http_url(&state_url.replace(FLAG_PLACEHOLDER, "flag"))
                .map_err(|message| self.invalid(format!("state_url: {message}")))?;
            crate::tls::check_https(&state_url, "state_url")
                .map_err(|error| self.invalid(error.to_string()))?;
        }
        WebhookActuator::new(url, self.state_url.clone(), secret, self.timeout)
    }

    fn invalid(&self, message: String) -> ActuatorError {
        ActuatorError::Invalid {
            store: format!("webhook {}", redacted(&self.url)),
            message,
        }
    }
}

fn parse_http_url(text: &str) -> Result<Url, String> {
    let url = Url::parse(text).map_err(|error| format!("{text:?} is not a URL: {error}"))?;
    match url.scheme() {
        "http" | "https" => Ok(url),
        scheme => Err(format!(
            "{scheme:?} URLs are not supported; use http or https"
        )),
    }
}

/// A URL as it may appear in logs and errors: no user, password or query string (which
/// sometimes carry credentials).
pub(super) fn redacted(text: &str) -> String {
    match Url::parse(text) {
        Ok(mut url) => {
            // Both only fail for URLs that cannot have credentials at all.
            let _ = url.set_username("");
            let _ = url.set_password(None);
            url.set_query(None);
            url.set_fragment(None);
            url.to_string()
        }
        Err(_) => text.split(['?', '#']).next().unwrap_or_default().to_owned(),
    }
}
