//! The webhook actuator: every flag change is a signed HTTP POST to a team's own flag
//! system. The contract a receiver implements is `docs/webhook-actuator.md`; in short:
//!
//! - **Body**: [`ActuationRequest`], JSON schema version 1 — the flag, `set_rollout` or
//!   `kill`, the target percentage, and the change's context (analysis, verdict,
//!   reasons, report link).
//! - **Headers**: `Content-Type: application/json`, `Idempotency-Key: <actuation_id>`
//!   and `X-Canary-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`
//!   ([`crate::signing`]).
//! - **Answers**: any 2xx means applied; its body may report the flag's state as
//!   `{"enabled": bool, "rollout": number}`, which is then what [`Actuator::apply`]
//!   returns (otherwise the state the request asked for). 408, 429, 5xx, connection
//!   failures and timeouts are [`ActuatorError::Unavailable`] (worth retrying); any
//!   other status is [`ActuatorError::Invalid`] with the status and the start of the
//!   body. Redirects are not followed.
//! - **One call, one attempt.** This actuator never retries: the retry decorator wrapped
//!   around every actuator does, with the same `actuation_id`, which is why receivers
//!   must apply an id once.
//! - **Read-back**: with `state_url`, [`Actuator::current`] and
//!   [`Actuator::healthcheck`] GET it (signed over an empty body). Without it,
//!   `current` answers the last state this actuator applied to the flag since the
//!   process started (no read-back: a change made elsewhere is not seen), or
//!   `Unavailable` when it has applied none; `healthcheck` succeeds without contacting
//!   the receiver, reporting that last state or "disabled, 0 %".
//! - `set_rollout` and `kill` without a context send the same POST with an empty
//!   context and a fresh random `actuation_id`.

mod body;
mod client;
mod config;

#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use reqwest::{Method, StatusCode, Url};

use super::{Actuator, ActuatorError, FlagChange, FlagState};
use crate::domain::{HumanDuration, Percentage};
use crate::sources::prometheus::Secret;
pub use body::{ActuationRequest, SCHEMA_VERSION, reported_state};
use client::SignedClient;
pub use config::{DEFAULT_SECRET_ENV, FLAG_PLACEHOLDER, WebhookConfig};

/// Sends flag changes to a webhook; see the module docs. Built by
/// [`WebhookConfig::build`]. Its `Debug` output never shows the secret.
#[derive(Debug)]
pub struct WebhookActuator {
    url: Url,
    state_url: Option<String>,
    client: SignedClient,
    /// The last state applied per flag, for `current` without a `state_url`.
    applied: Mutex<HashMap<String, FlagState>>,
}

impl WebhookActuator {
    fn new(
        url: Url,
        state_url: Option<String>,
        secret: Secret,
        timeout: HumanDuration,
    ) -> Result<Self, ActuatorError> {
        let https = url.scheme() == "https"
            || state_url
                .as_deref()
                .is_some_and(|state_url| state_url.starts_with("https://"));
        let client = SignedClient::new(secret, timeout.get(), https).map_err(|error| {
            ActuatorError::Invalid {
                store: format!("webhook {}", config::redacted(url.as_str())),
                message: format!("cannot set up an HTTP client: {error}"),
            }
        })?;
        Ok(Self {
            url,
            state_url,
            client,
            applied: Mutex::new(HashMap::new()),
        })
    }

    /// The receiver as errors and logs name it (no credentials or query string).
    fn store(&self) -> String {
        format!("webhook {}", config::redacted(self.url.as_str()))
    }

    fn remember(&self, flag: &str, state: &FlagState) {
        self.applied
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(flag.to_owned(), state.clone());
    }

    fn last_applied(&self, flag: &str) -> Option<FlagState> {
        self.applied
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(flag)
            .cloned()
    }

    /// GETs the flag's state from `state_url`.
    async fn read_back(&self, state_url: &str, flag: &str) -> Result<FlagState, ActuatorError> {
        let encoded: String = url_encode_path_segment(flag);
        let text = state_url.replace(FLAG_PLACEHOLDER, &encoded);
        let store = format!("webhook state {}", config::redacted(&text));
        let url = Url::parse(&text).map_err(|error| ActuatorError::Invalid {
            store: store.clone(),
            message: format!("not a URL: {error}"),
        })?;
        let answer = self
            .client
            .send(Method::GET, url, Vec::new(), &[], &store)
            .await?;
        // For a read, 404 has one sensible meaning: the receiver does not know the flag.
        if answer.status == StatusCode::NOT_FOUND {
            return Err(ActuatorError::FlagNotFound {
                flag: flag.to_owned(),
                store,
            });
        }
        let answer = answer.success(&store)?;
        reported_state(&answer.body).ok_or_else(|| ActuatorError::Invalid {
            store,
            message: format!(
                "answered {} without a {{\"enabled\": bool, \"rollout\": 0-100}} body: {}",
                answer.status,
                client::snippet(&answer.body)
            ),
        })
    }
}

/// Percent-encodes a flag key for a URL path segment (flag keys are usually plain, but
/// a `/` or `?` must not change which URL is asked).
fn url_encode_path_segment(text: &str) -> String {
    let mut encoded = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~') {
            encoded.push(byte as char);
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    encoded
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |elapsed| elapsed.as_secs_f64())
}

#[async_trait]
impl Actuator for WebhookActuator {
    fn describe(&self) -> String {
        format!("webhook:{}", config::redacted(self.url.as_str()))
    }

    async fn healthcheck(&self, flag: &str) -> Result<FlagState, ActuatorError> {
        match &self.state_url {
            Some(state_url) => self.read_back(state_url, flag).await,
            None => Ok(self.last_applied(flag).unwrap_or(FlagState {
                enabled: false,
                rollout: Percentage::ZERO,
            })),
        }
    }

    async fn current(&self, flag: &str) -> Result<FlagState, ActuatorError> {
        match &self.state_url {
            Some(state_url) => self.read_back(state_url, flag).await,
            None => self
                .last_applied(flag)
                .ok_or_else(|| ActuatorError::Unavailable {
                    store: self.store(),
                    message: format!(
                        "no state_url is configured to read flag {flag:?} back, and this process has not changed it"
                    ),
                }),
        }
    }

    async fn apply(&self, change: &FlagChange) -> Result<FlagState, ActuatorError> {
        let actuation_id = change
            .context
            .actuation_id
            .clone()
            .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
        let request = ActuationRequest::new(change, &actuation_id, unix_now());
        let body = serde_json::to_vec(&request).expect("the request body serializes");
        let store = self.store();
        let answer = self
            .client
            .send(
                Method::POST,
                self.url.clone(),
                body,
                &[("Idempotency-Key", actuation_id.as_str())],
                &store,
            )
            .await?
            .success(&store)?;
        let state =
            reported_state(&answer.body).unwrap_or_else(|| ActuationRequest::implied_state(change));
        tracing::info!(
            flag = %change.flag,
            action = change.action.name(),
            target = %change.action.target(),
            actuation = %actuation_id,
            status = %answer.status,
            enabled = state.enabled,
            rollout = %state.rollout,
            webhook = %store,
            "flag change accepted by webhook"
        );
        self.remember(&change.flag, &state);
        Ok(state)
    }
}
