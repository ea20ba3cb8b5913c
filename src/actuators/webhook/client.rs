//! One signed HTTP request and what its outcome means for the caller: the mapping of
//! statuses and transport failures onto [`ActuatorError`] lives here and only here.
//! One call is one attempt: retries belong to the decorator around every actuator.

use std::error::Error as _;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use reqwest::{Method, StatusCode, Url};

use crate::actuators::ActuatorError;
use crate::signing::{SIGNATURE_HEADER, sign};
use crate::sources::prometheus::Secret;

/// How much of a refusing receiver's body goes into the error.
const BODY_SNIPPET_CHARS: usize = 200;

/// An answer, whatever its status.
pub(super) struct Answer {
    pub(super) status: StatusCode,
    pub(super) body: Vec<u8>,
}

impl Answer {
    /// The answer when it is a 2xx; otherwise what its status means ([`status_error`]).
    pub(super) fn success(self, store: &str) -> Result<Answer, ActuatorError> {
        if self.status.is_success() {
            Ok(self)
        } else {
            Err(status_error(self.status, &self.body, store))
        }
    }
}

/// The HTTP side of the actuator: a client with the timeout and no redirects (a POST
/// silently turned into a GET by a redirect would look like success).
#[derive(Debug)]
pub(super) struct SignedClient {
    http: reqwest::Client,
    secret: Secret,
    timeout: Duration,
}

impl SignedClient {
    /// `https` says whether any URL it will be given is `https://`.
    pub(super) fn new(
        secret: Secret,
        timeout: Duration,
        https: bool,
    ) -> Result<Self, reqwest::Error> {
        let http = crate::tls::client_builder(https)
            .timeout(timeout)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("canary/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Self {
            http,
            secret,
            timeout,
        })
    }

    /// Sends `body` (empty for a GET) signed at the current time, with the extra
    /// headers. Transport failures (no connection, a timeout) are errors; any status is
    /// an [`Answer`]. `store` names the receiver in errors.
    pub(super) async fn send(
        &self,
        method: Method,
        url: Url,
        body: Vec<u8>,
        headers: &[(&str, &str)],
        store: &str,
    ) -> Result<Answer, ActuatorError> {
        let timestamp = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |elapsed| elapsed.as_secs());
        let signature = sign(self.secret.expose().as_bytes(), timestamp, &body);
        let mut request = self
            .http
            .request(method.clone(), url)
            .header(SIGNATURE_HEADER, signature);
        if method == Method::POST {
            request = request
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body);
        }
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let response = request
            .send()
            .await
            .map_err(|error| self.transport_error(&error, store))?;
        let status = response.status();
        let body = response
            .bytes()
            .await
            .map_err(|error| self.transport_error(&error, store))?
            .to_vec();
        Ok(Answer { status, body })
    }

    fn transport_error(&self, error: &reqwest::Error, store: &str) -> ActuatorError {
        let message = if error.is_timeout() {
            format!("no answer within {} ms", self.timeout.as_millis())
        } else {
            // reqwest's own message is generic ("error sending request"); the cause
            // (connection refused, reset, DNS) is in its sources. The URL is left out:
            // `store` already names the receiver without its query string.
            let mut message = error.to_string();
            let mut source = error.source();
            while let Some(cause) = source {
                message.push_str(": ");
                message.push_str(&cause.to_string());
                source = cause.source();
            }
            message
        };
        ActuatorError::Unavailable {
            store: store.to_owned(),
            message,
        }
    }
}

/// What a non-2xx answer means: 408, 429 and 5xx are the receiver's temporary trouble
/// (`Unavailable`, retryable); any other status is a refusal of this request
/// (`Invalid`: a wrong secret, a malformed body, an unknown flag), and redirects are
/// not followed.
pub(super) fn status_error(status: StatusCode, body: &[u8], store: &str) -> ActuatorError {
    let message = format!("answered {status}: {}", snippet(body));
    if status.is_server_error()
        || status == StatusCode::REQUEST_TIMEOUT
        || status == StatusCode::TOO_MANY_REQUESTS
    {
        ActuatorError::Unavailable {
            store: store.to_owned(),
            message,
        }
    } else {
        let message = if status.is_redirection() {
            format!("{message} (redirects are not followed: configure the final URL)")
        } else {
            message
        };
        ActuatorError::Invalid {
            store: store.to_owned(),
            message,
        }
    }
}

/// The start of a body, on one line, for an error message.
pub(super) fn snippet(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if text.is_empty() {
        return "(empty body)".to_owned();
    }
    match text.char_indices().nth(BODY_SNIPPET_CHARS) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text,
    }
}
