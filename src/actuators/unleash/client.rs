//! The few Unleash admin API calls the actuator makes, and how every failure maps onto
//! [`ActuatorError`]. Knows HTTP and Unleash's error bodies, not strategies.
//!
//! - No answer (connection refused, a timeout, a broken connection), `408`, `429` and
//!   `5xx` are `Unavailable`: worth retrying.
//! - `404` for the feature is `FlagNotFound` with Unleash's own message (it says when the
//!   feature lives in another project).
//! - `401` / `403` and any other `4xx`, and a `2xx` whose body is not what the admin API
//!   returns, are `Invalid`, with Unleash's message.
//!
//! The admin token goes in the `Authorization` header and nowhere else: it is not in
//! any URL, log line or message, and an answer that happened to echo it is scrubbed
//! before it is quoted.

use std::fmt;
use std::time::Duration;

use reqwest::{Method, StatusCode, Url};
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::strategies::Feature;
use crate::actuators::ActuatorError;

/// The longest piece of an unexpected answer quoted in an error.
const MAX_QUOTED_BODY: usize = 300;

/// An Unleash admin API token. Its `Debug` and `Display` never show the secret.
#[derive(Clone)]
pub struct AdminToken {
    secret: String,
    /// Where it came from, for messages: "the environment variable CANARY_UNLEASH_TOKEN".
    source: String,
}

impl AdminToken {
    /// A token and a description of where it came from (named in errors instead of
    /// the token).
    pub fn new(secret: impl Into<String>, source: impl Into<String>) -> Self {
        Self {
            secret: secret.into(),
            source: source.into(),
        }
    }

    /// Reads the token from the environment variable `variable`; the error names the
    /// variable when it is unset or empty.
    pub fn from_env(variable: &str) -> Result<Self, String> {
        match std::env::var(variable) {
            Ok(secret) if !secret.trim().is_empty() => Ok(Self::new(
                secret.trim(),
                format!("the environment variable {variable}"),
            )),
            Ok(_) => Err(format!(
                "the environment variable {variable}, which should hold the Unleash admin API token, is empty"
            )),
            Err(std::env::VarError::NotPresent) => Err(format!(
                "the environment variable {variable}, which should hold the Unleash admin API token, is not set"
            )),
            Err(std::env::VarError::NotUnicode(_)) => Err(format!(
                "the environment variable {variable}, which should hold the Unleash admin API token, is not valid UTF-8"
            )),
        }
    }

    /// Where the token came from.
    pub fn source(&self) -> &str {
        &self.source
    }
}

impl fmt::Debug for AdminToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AdminToken(<redacted>, from {})", self.source)
    }
}

impl fmt::Display for AdminToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "the admin token from {}", self.source)
    }
}

/// Calls one project and environment of one Unleash server's admin API.
#[derive(Debug)]
pub(super) struct AdminClient {
    http: reqwest::Client,
    /// The server's base URL, ending in `/`.
    base: Url,
    project: String,
    environment: String,
    token: AdminToken,
    /// How the server is named in errors.
    store: String,
}

/// One request, for messages: `PATCH .../strategies/{id}`.
struct Call<'a> {
    method: Method,
    segments: Vec<&'a str>,
}

impl fmt::Display for Call<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} /{}", self.method, self.segments.join("/"))
    }
}

impl AdminClient {
    pub(super) fn new(
        base: Url,
        project: String,
        environment: String,
        token: AdminToken,
        timeout: Duration,
        store: String,
    ) -> Result<Self, ActuatorError> {
        let http = crate::tls::client_builder(base.scheme() == "https")
            .timeout(timeout)
            .connect_timeout(timeout)
            .build()
            .map_err(|error| ActuatorError::Invalid {
                store: store.clone(),
                message: format!("cannot set up an HTTP client: {}", error_chain(&error)),
            })?;
        Ok(Self {
            http,
            base,
            project,
            environment,
            token,
            store,
        })
    }

    /// `GET /api/admin/projects/{project}/features/{flag}`: the feature with every
    /// environment's switch and strategies.
    pub(super) async fn feature(&self, flag: &str) -> Result<Feature, ActuatorError> {
        let call = self.feature_call(Method::GET, flag, &[]);
        self.send(flag, call, None).await
    }

    /// `POST .../environments/{environment}/strategies` with `body`.
    pub(super) async fn create_strategy(
        &self,
        flag: &str,
        body: Value,
    ) -> Result<Value, ActuatorError> {
        let environment = self.environment.clone();
        let call = self.feature_call(
            Method::POST,
            flag,
            &["environments", &environment, "strategies"],
        );
        self.send(flag, call, Some(body)).await
    }

    /// `PATCH .../environments/{environment}/strategies/{id}` with JSON-patch
    /// `operations`; returns the strategy as Unleash stored it.
    pub(super) async fn patch_strategy(
        &self,
        flag: &str,
        id: &str,
        operations: Value,
    ) -> Result<Value, ActuatorError> {
        let environment = self.environment.clone();
        let call = self.feature_call(
            Method::PATCH,
            flag,
            &["environments", &environment, "strategies", id],
        );
        self.send(flag, call, Some(operations)).await
    }

    /// `POST .../environments/{environment}/on` or `/off`.
    pub(super) async fn switch(&self, flag: &str, on: bool) -> Result<(), ActuatorError> {
        let environment = self.environment.clone();
        let call = self.feature_call(
            Method::POST,
            flag,
            &["environments", &environment, if on { "on" } else { "off" }],
        );
        // Unleash answers with an empty body.
        self.send::<serde::de::IgnoredAny>(flag, call, None)
            .await
            .map(|_| ())
    }

    fn feature_call<'a>(&'a self, method: Method, flag: &'a str, rest: &[&'a str]) -> Call<'a> {
        let mut segments = vec![
            "api",
            "admin",
            "projects",
            self.project.as_str(),
            "features",
            flag,
        ];
        segments.extend_from_slice(rest);
        Call { method, segments }
    }

    async fn send<T: DeserializeOwned>(
        &self,
        flag: &str,
        call: Call<'_>,
        body: Option<Value>,
    ) -> Result<T, ActuatorError> {
        let mut url = self.base.clone();
        url.path_segments_mut()
            .expect("an http(s) URL has path segments")
            .pop_if_empty()
            .extend(&call.segments);
        let mut request = self
            .http
            .request(call.method.clone(), url)
            .header(reqwest::header::AUTHORIZATION, &self.token.secret)
            .header(reqwest::header::ACCEPT, "application/json");
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request
            .send()
            .await
            .map_err(|error| self.unavailable(&call, &error))?;
        let status = response.status();
        let text = response
            .text()
            .await
            .map_err(|error| self.unavailable(&call, &error))?;
        if !status.is_success() {
            return Err(self.status_error(flag, &call, status, &text));
        }
        let text = if text.trim().is_empty() {
            "null"
        } else {
            &text
        };
        serde_json::from_str(text).map_err(|error| ActuatorError::Invalid {
            store: self.store.clone(),
            message: format!(
                "{call} answered {status} with a body that is not what the admin API returns ({error}): {}",
                self.quote(text)
            ),
        })
    }

    fn unavailable(&self, call: &Call<'_>, error: &reqwest::Error) -> ActuatorError {
        let what = if error.is_timeout() {
            "timed out"
        } else if error.is_connect() {
            "could not connect"
        } else {
            "failed"
        };
        ActuatorError::Unavailable {
            store: self.store.clone(),
            message: format!("{call} {what}: {}", error_chain(error)),
        }
    }

    fn status_error(
        &self,
        flag: &str,
        call: &Call<'_>,
        status: StatusCode,
        body: &str,
    ) -> ActuatorError {
        let message = self.unleash_message(body);
        let store = self.store.clone();
        match status {
            StatusCode::NOT_FOUND if message.contains("no feature named") => {
                ActuatorError::FlagNotFound {
                    flag: flag.to_owned(),
                    store: format!("{store} (Unleash says: {message})"),
                }
            }
            StatusCode::UNAUTHORIZED => ActuatorError::Invalid {
                store,
                message: format!(
                    "Unleash refused {} with {status} (is it an admin API token of this server?): {message}",
                    self.token
                ),
            },
            StatusCode::FORBIDDEN => ActuatorError::Invalid {
                store,
                message: format!(
                    "Unleash forbids {call} to {} with {status} (an admin token is needed): {message}",
                    self.token
                ),
            },
            StatusCode::REQUEST_TIMEOUT | StatusCode::TOO_MANY_REQUESTS => {
                ActuatorError::Unavailable {
                    store,
                    message: format!("{call} answered {status}: {message}"),
                }
            }
            status if status.is_server_error() => ActuatorError::Unavailable {
                store,
                message: format!("{call} answered {status}: {message}"),
            },
            _ => ActuatorError::Invalid {
                store,
                message: format!("{call} answered {status}: {message}"),
            },
        }
    }

    /// Unleash's `message` from an error body, or the start of the body.
    fn unleash_message(&self, body: &str) -> String {
        let message = serde_json::from_str::<Value>(body).ok().and_then(|value| {
            value
                .get("message")
                .and_then(Value::as_str)
                .map(str::to_owned)
        });
        match message {
            Some(message) => self.quote(&message),
            None if body.trim().is_empty() => "(empty body)".to_owned(),
            None => self.quote(body),
        }
    }

    /// A piece of an answer fit to quote: at most [`MAX_QUOTED_BODY`] characters, the
    /// token replaced should the server have echoed it.
    fn quote(&self, text: &str) -> String {
        let scrubbed = text.replace(&self.token.secret, "<redacted>");
        let mut quoted: String = scrubbed.trim().chars().take(MAX_QUOTED_BODY).collect();
        if scrubbed.trim().chars().count() > MAX_QUOTED_BODY {
            quoted.push('…');
        }
        quoted
    }
}

/// An error and its sources on one line: reqwest's own message rarely says why.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_never_prints_its_secret() {
        let token = AdminToken::new("*:*.s3cret", "the environment variable X");
        assert_eq!(
            format!("{token:?}"),
            "AdminToken(<redacted>, from the environment variable X)"
        );
        assert_eq!(
            token.to_string(),
            "the admin token from the environment variable X"
        );
    }

    #[test]
    fn an_unset_token_variable_is_named_in_the_error() {
        let error = AdminToken::from_env("CANARY_TEST_SURELY_UNSET_UNLEASH_TOKEN").unwrap_err();
        assert_eq!(
            error,
            "the environment variable CANARY_TEST_SURELY_UNSET_UNLEASH_TOKEN, which should hold the Unleash admin API token, is not set"
        );
    }

    fn client() -> AdminClient {
        AdminClient::new(
            Url::parse("http://127.0.0.1:9/").unwrap(),
            "default".to_owned(),
            "production".to_owned(),
            AdminToken::new("*:*.s3cret", "the environment variable X"),
            Duration::from_secs(1),
            "unleash".to_owned(),
        )
        .unwrap()
    }

    #[test]
    fn quoted_answers_are_scrubbed_of_the_token_and_cut_short() {
        let client = client();
        assert_eq!(
            client.quote("bad token *:*.s3cret here"),
            "bad token <redacted> here"
        );
        let long = "x".repeat(1000);
        assert_eq!(
            client.quote(&long).chars().count(),
            MAX_QUOTED_BODY + 1,
            "cut, with an ellipsis"
        );
    }

    #[test]
    fn statuses_map_onto_actuator_errors() {
        let client = client();
        let call = client.feature_call(Method::GET, "checkout", &[]);
        let not_found = client.status_error(
            "checkout",
            &call,
            StatusCode::NOT_FOUND,
            r#"{"name":"NotFoundError","message":"There's no feature named \"checkout\" in project \"default\"."}"#,
        );
        assert!(
            matches!(&not_found, ActuatorError::FlagNotFound { flag, store } if flag == "checkout" && store.contains("There's no feature named")),
            "{not_found:?}"
        );
        let environment_missing = client.status_error(
            "checkout",
            &call,
            StatusCode::NOT_FOUND,
            r#"{"message":"Could not find environment staging for feature: checkout"}"#,
        );
        assert!(
            matches!(environment_missing, ActuatorError::Invalid { .. }),
            "{environment_missing:?}"
        );
        let unauthorized = client.status_error(
            "checkout",
            &call,
            StatusCode::UNAUTHORIZED,
            r#"{"message":"You must log in to use Unleash."}"#,
        );
        let text = unauthorized.to_string();
        assert!(matches!(unauthorized, ActuatorError::Invalid { .. }));
        assert!(
            text.contains("the admin token from the environment variable X"),
            "{text}"
        );
        assert!(text.contains("401 Unauthorized"), "{text}");
        assert!(!text.contains("s3cret"), "{text}");
        for status in [
            StatusCode::INTERNAL_SERVER_ERROR,
            StatusCode::BAD_GATEWAY,
            StatusCode::SERVICE_UNAVAILABLE,
            StatusCode::TOO_MANY_REQUESTS,
        ] {
            let error = client.status_error("checkout", &call, status, "<html>oops</html>");
            assert!(
                matches!(&error, ActuatorError::Unavailable { message, .. } if message.contains("<html>oops</html>")),
                "{error:?}"
            );
        }
        let bad_request = client.status_error(
            "checkout",
            &call,
            StatusCode::BAD_REQUEST,
            r#"{"message":"rollout must be a string"}"#,
        );
        assert!(
            matches!(&bad_request, ActuatorError::Invalid { message, .. } if message == "GET /api/admin/projects/default/features/checkout answered 400 Bad Request: rollout must be a string"),
            "{bad_request:?}"
        );
    }
}
