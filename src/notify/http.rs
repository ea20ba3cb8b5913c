//! One JSON POST to a notification destination, optionally signed, and what its
//! outcome means. Shared by the Slack and JSON notifiers.

use std::error::Error as _;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use reqwest::{StatusCode, Url};

use super::NotifyError;
use crate::signing::{SIGNATURE_HEADER, sign};
use crate::sources::prometheus::Secret;

/// How much of a refusing destination's answer goes into the error.
const BODY_SNIPPET_CHARS: usize = 200;

/// A destination URL with its client; the URL may be a credential (Slack's is), so
/// only `target` (scheme and host) is ever printed.
pub(super) struct JsonPoster {
    http: reqwest::Client,
    url: Url,
    target: String,
    secret: Option<Secret>,
    timeout: Duration,
}

impl JsonPoster {
    /// A poster for `url`; `kind` and the host make up its printed name.
    pub(super) fn new(
        name: &str,
        kind: &str,
        url: &str,
        secret: Option<Secret>,
        timeout: Duration,
    ) -> Result<Self, NotifyError> {
        let config_error = |message: String| NotifyError::Config {
            name: name.to_owned(),
            message,
        };
        let url =
            Url::parse(url).map_err(|error| config_error(format!("url is not a URL: {error}")))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(config_error(format!(
                "url: {:?} URLs are not supported; use http or https",
                url.scheme()
            )));
        }
        crate::tls::check_https(&url, "url").map_err(|error| config_error(error.to_string()))?;
        let target = format!(
            "{kind}:{}://{}",
            url.scheme(),
            url.host_str().unwrap_or_default()
        );
        let http = crate::tls::client_builder(url.scheme() == "https")
            .timeout(timeout)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("canary/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|error| config_error(format!("cannot set up an HTTP client: {error}")))?;
        Ok(Self {
            http,
            url,
            target,
            secret,
            timeout,
        })
    }

    /// The destination as logs name it: `slack:https://hooks.slack.com`.
    pub(super) fn target(&self) -> &str {
        &self.target
    }

    /// POSTs `body`, signed when there is a secret. One attempt.
    pub(super) async fn post(&self, body: Vec<u8>) -> Result<(), NotifyError> {
        let mut request = self
            .http
            .post(self.url.clone())
            .header(reqwest::header::CONTENT_TYPE, "application/json");
        if let Some(secret) = &self.secret {
            let timestamp = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |elapsed| elapsed.as_secs());
            request = request.header(
                SIGNATURE_HEADER,
                sign(secret.expose().as_bytes(), timestamp, &body),
            );
        }
        let response = request
            .body(body)
            .send()
            .await
            .map_err(|error| self.transport_error(&error))?;
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        let answer = response.bytes().await.unwrap_or_default();
        Err(status_error(status, &answer, &self.target))
    }

    fn transport_error(&self, error: &reqwest::Error) -> NotifyError {
        let message = if error.is_timeout() {
            format!("no answer within {} ms", self.timeout.as_millis())
        } else {
            // reqwest's own message names the URL, which may be the credential: only
            // its causes (connection refused, reset, DNS) are kept.
            let mut message = if error.is_connect() {
                "cannot connect".to_owned()
            } else {
                "request failed".to_owned()
            };
            let mut source = error.source();
            while let Some(cause) = source {
                message.push_str(": ");
                message.push_str(&cause.to_string());
                source = cause.source();
            }
            message
        };
        NotifyError::Unavailable {
            target: self.target.clone(),
            message,
        }
    }
}

/// 408, 429 and 5xx are temporary (`Unavailable`); any other status is a refusal.
pub(super) fn status_error(status: StatusCode, body: &[u8], target: &str) -> NotifyError {
    let text = String::from_utf8_lossy(body);
    let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
    let snippet = match text.char_indices().nth(BODY_SNIPPET_CHARS) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None if text.is_empty() => "(empty body)".to_owned(),
        None => text,
    };
    let message = format!("answered {status}: {snippet}");
    if status.is_server_error()
        || status == StatusCode::REQUEST_TIMEOUT
        || status == StatusCode::TOO_MANY_REQUESTS
    {
        NotifyError::Unavailable {
            target: target.to_owned(),
            message,
        }
    } else {
        NotifyError::Rejected {
            target: target.to_owned(),
            message,
        }
    }
}
