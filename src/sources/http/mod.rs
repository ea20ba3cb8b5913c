//! What every metric source that speaks HTTP shares: credentials kept out of logs,
//! durations in settings, bounded retries with doubling pauses (and a server's
//! `Retry-After` honoured), warnings that repeat summarised, and the mapping of
//! transport failures onto [`SourceError`] without the request URL (which carries the
//! whole query, and for some APIs a key).

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::time::Instant;
use tracing::{debug, warn};

use crate::sources::SourceError;

pub mod oauth2;
pub mod sigv4;

/// Why an HTTP client cannot be made for a source's URL.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum ClientSetupError {
    /// The URL does not parse or is not HTTP(S).
    InvalidUrl(String),
    /// An `https://` URL in a build without TLS.
    TlsNotBuiltIn,
    /// The CA file cannot be used.
    CaFile(String),
    /// The HTTP library refused the settings.
    Client(String),
}

/// Parses a source's base URL (trailing slashes dropped) and makes its HTTP client:
/// platform CA roots plus `ca_file` for `https://`, `timeout` per request, `headers`
/// on every request.
pub(crate) fn http_client(
    url: &str,
    ca_file: Option<&std::path::Path>,
    timeout: Duration,
    headers: reqwest::header::HeaderMap,
) -> Result<(reqwest::Client, reqwest::Url), ClientSetupError> {
    let trimmed = url.trim_end_matches('/');
    let parsed = reqwest::Url::parse(trimmed)
        .map_err(|error| ClientSetupError::InvalidUrl(error.to_string()))?;
    match parsed.scheme() {
        "http" => {}
        "https" if crate::tls::HTTPS_BUILT_IN => {}
        "https" => return Err(ClientSetupError::TlsNotBuiltIn),
        other => {
            return Err(ClientSetupError::InvalidUrl(format!(
                "scheme {other:?} is not http or https"
            )));
        }
    }
    #[cfg_attr(not(feature = "rustls"), allow(unused_mut))]
    let mut builder = crate::tls::client_builder(parsed.scheme() == "https");
    if let Some(ca_file) = ca_file {
        let certificates =
            crate::tls::ca_certificates(ca_file).map_err(ClientSetupError::CaFile)?;
        #[cfg(feature = "rustls")]
        {
            builder = builder.tls_certs_merge(certificates);
        }
        #[cfg(not(feature = "rustls"))]
        let _ = certificates;
    }
    let client = builder
        .default_headers(headers)
        .timeout(timeout)
        .build()
        .map_err(|error| ClientSetupError::Client(error.to_string()))?;
    Ok((client, parsed))
}

/// An HTTP answer: its status, the `Retry-After` it asked for, and its body.
pub(crate) struct Answer {
    pub(crate) status: reqwest::StatusCode,
    pub(crate) headers: reqwest::header::HeaderMap,
    pub(crate) retry_after: Option<Duration>,
    pub(crate) body: Vec<u8>,
}

/// Sends `request` and reads the answer; a transport failure (no connection, no answer
/// within `timeout`, a body cut short) is a retryable [`SourceError::Unreachable`] of
/// `source_name`, worded without the request URL.
pub(crate) async fn send(
    request: reqwest::RequestBuilder,
    source_name: &str,
    timeout: Duration,
) -> Result<Answer, Failure> {
    let transport = |error: reqwest::Error| {
        let message = if error.is_timeout() {
            format!(
                "no answer within {}",
                crate::format::duration(timeout.as_secs_f64())
            )
        } else if error.is_connect() {
            format!("cannot connect: {}", root_cause(&error))
        } else {
            let url = error.url().map(|url| url.as_str().to_owned());
            without_url(&error_chain(&error), url.as_deref())
        };
        Failure::retryable(SourceError::Unreachable {
            source_name: source_name.to_owned(),
            message,
        })
    };
    let response = request.send().await.map_err(transport)?;
    let status = response.status();
    let retry_after = response
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|value| value.to_str().ok())
        .and_then(|text| text.trim().parse::<f64>().ok())
        .filter(|seconds| seconds.is_finite() && *seconds >= 0.0)
        .map(|seconds| Duration::from_secs_f64(seconds.min(3600.0)));
    let headers = response.headers().clone();
    let body = response.bytes().await.map_err(transport)?.to_vec();
    Ok(Answer {
        status,
        headers,
        retry_after,
        body,
    })
}

/// The failure an unsuccessful status means, the same for every HTTP source: 401/403
/// refused credentials (never retried), 429 and 5xx the server's trouble (retried,
/// after the `Retry-After` it asked for), 404 nothing of the kind at this URL, any
/// other 4xx a rejected query. `message` is the server's own explanation, if any.
pub(crate) fn status_failure(
    answer: &Answer,
    source_name: &str,
    query: &str,
    message: Option<String>,
) -> Failure {
    let status = answer.status;
    let explained = match &message {
        Some(message) => format!("HTTP {status}: {message}"),
        None => format!("HTTP {status}"),
    };
    let unreachable = |message: String| SourceError::Unreachable {
        source_name: source_name.to_owned(),
        message,
    };
    match status.as_u16() {
        401 | 403 => Failure::fatal(SourceError::Unauthorized {
            source_name: source_name.to_owned(),
            message: explained,
        }),
        429 | 500..=599 => Failure {
            error: unreachable(explained),
            retryable: true,
            retry_after: answer.retry_after,
        },
        404 => Failure::fatal(unreachable(format!(
            "{explained}; is this the API's base URL?"
        ))),
        _ => Failure::fatal(SourceError::BadQuery {
            source_name: source_name.to_owned(),
            query: query.to_owned(),
            message: explained,
        }),
    }
}

/// The wall clock in whole Unix seconds, for a health check's "the last few minutes"
/// (0 on a clock before 1970).
pub(crate) fn now_unix_seconds() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs() as i64)
}

/// The default time one request may take: 10 seconds.
pub(crate) fn default_timeout() -> Duration {
    Duration::from_secs(10)
}

/// The default number of retries: 2.
pub(crate) fn default_retries() -> u32 {
    2
}

/// The default pause before the first retry: 200 ms.
pub(crate) fn default_retry_backoff() -> Duration {
    Duration::from_millis(200)
}

/// What a [`ClientSetupError`] means, in words for a settings error.
pub(crate) fn setup_message(error: ClientSetupError) -> String {
    match error {
        ClientSetupError::InvalidUrl(message) => format!("url: {message}"),
        ClientSetupError::TlsNotBuiltIn => {
            "uses HTTPS, but this canary was built without TLS (`--no-default-features`)".into()
        }
        ClientSetupError::CaFile(message) => format!("ca_file {message}"),
        ClientSetupError::Client(message) => format!("cannot set up the HTTP client: {message}"),
    }
}

/// The `Authorization` value of basic credentials (`username` with `password`) or of a
/// token (`token`, already with its scheme, from the setting `token_key`), or why the
/// settings cannot work: half a pair, or both kinds at once.
pub(crate) fn basic_or_token(
    username: Option<&str>,
    password: Option<&Secret>,
    token: Option<String>,
    token_key: &str,
) -> Result<Option<String>, String> {
    use base64::Engine as _;
    match (username, password, token) {
        (Some(_), _, Some(_)) | (_, Some(_), Some(_)) => Err(format!(
            "sets both username/password and {token_key}; keep one kind of credentials"
        )),
        (Some(username), Some(password), None) => Ok(Some(format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD
                .encode(format!("{username}:{}", password.expose()))
        ))),
        (Some(_), None, None) | (None, Some(_), None) => {
            Err("username and password go together".into())
        }
        (None, None, token) => Ok(token),
    }
}

/// Headers holding one `Authorization` value (or none), marked sensitive.
pub(crate) fn authorization_headers(
    value: Option<String>,
) -> Result<reqwest::header::HeaderMap, String> {
    let mut headers = reqwest::header::HeaderMap::new();
    if let Some(value) = value {
        let header = sensitive_header(&value).ok_or(
            "the credentials cannot be sent in an HTTP header (a control character or line break?)",
        )?;
        headers.insert(reqwest::header::AUTHORIZATION, header);
    }
    Ok(headers)
}

/// A header value that is kept out of the HTTP library's debug output, or `None`
/// when it cannot be sent (a control character or line break, usually from a file
/// read with its trailing newline).
pub(crate) fn sensitive_header(value: &str) -> Option<reqwest::header::HeaderValue> {
    let mut header = reqwest::header::HeaderValue::from_str(value).ok()?;
    header.set_sensitive(true);
    Some(header)
}

/// A credential: kept out of `Debug` output and logs.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// Wraps a credential.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The credential itself, for building the request header.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl From<&str> for Secret {
    fn from(value: &str) -> Self {
        Secret::new(value)
    }
}

/// A failed attempt and whether another attempt could succeed.
#[derive(Debug)]
pub(crate) struct Failure {
    pub(crate) error: SourceError,
    pub(crate) retryable: bool,
    /// How long the server asked to wait before the next attempt (`Retry-After`),
    /// which replaces the doubling pause when it is longer.
    pub(crate) retry_after: Option<Duration>,
}

impl Failure {
    /// A failure that another attempt may get past.
    pub(crate) fn retryable(error: SourceError) -> Self {
        Failure {
            error,
            retryable: true,
            retry_after: None,
        }
    }

    /// A failure that another attempt cannot fix.
    pub(crate) fn fatal(error: SourceError) -> Self {
        Failure {
            error,
            retryable: false,
            retry_after: None,
        }
    }
}

/// Collapses a warning that repeats: the same source failing the same way on every
/// request (Prometheus down fails all of a look's queries, and every retry of each).
/// The first occurrence is logged; the next ones are counted, and at most one summary
/// per `interval` says how many there were. A warning quiet for a whole interval is
/// logged again as a first one.
#[derive(Debug)]
pub(crate) struct RepeatedWarnings {
    interval: Duration,
    seen: Mutex<HashMap<String, Seen>>,
}

#[derive(Debug)]
struct Seen {
    logged_at: Instant,
    repeated: u64,
}

/// What to do with one occurrence of a warning.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Occurrence {
    /// The first: log it.
    First,
    /// Log a summary: the warning came `times` times (this one included) over `over`.
    Repeated { times: u64, over: Duration },
    /// Counted for the next summary; log nothing.
    Quiet,
}

impl RepeatedWarnings {
    pub(crate) fn new(interval: Duration) -> Self {
        Self {
            interval,
            seen: Mutex::new(HashMap::new()),
        }
    }

    /// Notes one occurrence of the warning `key` (source and error kind) at `now`.
    pub(crate) fn note(&self, key: &str, now: Instant) -> Occurrence {
        let mut seen = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(entry) = seen.get_mut(key) else {
            seen.insert(
                key.to_owned(),
                Seen {
                    logged_at: now,
                    repeated: 0,
                },
            );
            return Occurrence::First;
        };
        let over = now.saturating_duration_since(entry.logged_at);
        if entry.repeated == 0 && over >= self.interval {
            // Quiet for a whole interval since it was last logged: a new outage.
            entry.logged_at = now;
            return Occurrence::First;
        }
        entry.repeated += 1;
        if over < self.interval {
            return Occurrence::Quiet;
        }
        let times = entry.repeated;
        entry.logged_at = now;
        entry.repeated = 0;
        Occurrence::Repeated { times, over }
    }

    /// Logs `error` (a failed attempt about to be retried) unless it repeats one logged
    /// less than an interval ago.
    fn warn_retrying(&self, error: &SourceError, attempt: u32, pause: Duration) {
        let source = error.source_name();
        let key = format!("{source} {}", error.kind());
        match self.note(&key, Instant::now()) {
            Occurrence::First => warn!(
                source,
                kind = error.kind(),
                attempt,
                error = %error,
                pause_ms = pause.as_millis() as u64,
                "metric source request failed; retrying (repeats of this warning are summarised every {})",
                crate::format::duration(self.interval.as_secs_f64())
            ),
            Occurrence::Repeated { times, over } => warn!(
                source,
                kind = error.kind(),
                error = %error,
                "metric source request failed; retrying: repeated {times} times in the last {}",
                crate::format::duration(over.as_secs_f64())
            ),
            Occurrence::Quiet => {
                debug!(source, attempt, error = %error, "metric source request failed; retrying")
            }
        }
    }
}

/// The longest `Retry-After` honoured: a server asking for more is treated as down for
/// this analysis interval once the retries are spent.
pub(crate) const MAX_RETRY_AFTER: Duration = Duration::from_secs(30);

/// Runs `attempt` until it succeeds, fails for good, or `retries` retries are spent,
/// sleeping `backoff`, then twice that, and so on between attempts. Failed attempts are
/// logged through `warnings`, so a source that is down does not flood the log.
pub(crate) async fn with_retries<T, F, Fut>(
    retries: u32,
    backoff: Duration,
    warnings: &RepeatedWarnings,
    mut attempt: F,
) -> Result<T, SourceError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, Failure>>,
{
    let mut pause = backoff;
    let mut attempt_number = 1;
    loop {
        match attempt().await {
            Ok(value) => return Ok(value),
            Err(Failure {
                error,
                retryable: true,
                retry_after,
            }) if attempt_number <= retries => {
                let wait = retry_after.map_or(pause, |asked| asked.min(MAX_RETRY_AFTER).max(pause));
                warnings.warn_retrying(&error, attempt_number, wait);
                tokio::time::sleep(wait).await;
                pause = pause.saturating_mul(2);
                attempt_number += 1;
            }
            Err(Failure {
                error,
                retryable: true,
                ..
            }) if attempt_number > 1 => {
                return Err(match error {
                    SourceError::Unreachable {
                        source_name,
                        message,
                    } => SourceError::Unreachable {
                        source_name,
                        message: format!("{message} (gave up after {attempt_number} attempts)"),
                    },
                    other => other,
                });
            }
            Err(Failure { error, .. }) => return Err(error),
        }
    }
}

/// `text` without the request URL `url` that reqwest puts in its messages ("error
/// sending request for url (http://...?query=...)"): the source is named already.
pub(crate) fn without_url(text: &str, url: Option<&str>) -> String {
    match url {
        Some(url) if !url.is_empty() => text
            .replace(&format!(" for url ({url})"), "")
            .replace(url, "the query URL"),
        _ => text.to_owned(),
    }
}

/// The innermost cause of an error ("Connection refused (os error 111)"), which names
/// the problem without the layers (and the URL) around it.
pub(crate) fn root_cause(error: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = error;
    while let Some(inner) = cause.source() {
        cause = inner;
    }
    cause.to_string()
}

/// An error and its causes on one line ("error sending request: connection refused").
pub(crate) fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(inner) = cause {
        let inner_text = inner.to_string();
        if !text.contains(&inner_text) {
            text.push_str(": ");
            text.push_str(&inner_text);
        }
        cause = inner.source();
    }
    text
}

/// Durations written as seconds (`10`, `2.5`) or with a unit (`"500ms"`, `"10s"`, `"1m"`).
pub(crate) mod duration {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer, de::Error as _};

    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Written {
        Seconds(f64),
        Text(String),
    }

    pub fn serialize<S: Serializer>(value: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&format!("{}ms", value.as_millis()))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
        let seconds = match Written::deserialize(deserializer)? {
            Written::Seconds(seconds) => seconds,
            Written::Text(text) => parse(&text).map_err(D::Error::custom)?,
        };
        Duration::try_from_secs_f64(seconds)
            .map_err(|_| D::Error::custom(format!("{seconds} is not a usable number of seconds")))
    }

    /// Seconds in `"500ms"`, `"10s"`, `"1m"` or a bare number.
    pub(crate) fn parse(text: &str) -> Result<f64, String> {
        let text = text.trim();
        let (number, unit_seconds) = if let Some(number) = text.strip_suffix("ms") {
            (number, 0.001)
        } else if let Some(number) = text.strip_suffix('s') {
            (number, 1.0)
        } else if let Some(number) = text.strip_suffix('m') {
            (number, 60.0)
        } else {
            (text, 1.0)
        };
        number
            .trim()
            .parse::<f64>()
            .ok()
            .filter(|value| value.is_finite() && *value >= 0.0)
            .map(|value| value * unit_seconds)
            .ok_or_else(|| {
                format!("{text:?} is not a duration; write e.g. \"500ms\", \"10s\" or \"1m\"")
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unreachable(message: &str) -> Failure {
        Failure {
            error: SourceError::Unreachable {
                source_name: "test".into(),
                message: message.into(),
            },
            retryable: true,
            retry_after: None,
        }
    }

    fn warnings() -> RepeatedWarnings {
        RepeatedWarnings::new(Duration::from_secs(60))
    }

    #[test]
    fn a_repeated_warning_is_logged_once_then_summarised_once_per_interval() {
        let warnings = warnings();
        let start = Instant::now();
        let at = |seconds: u64| start + Duration::from_secs(seconds);
        let key = "prometheus:http://127.0.0.1:9090 unreachable";
        assert_eq!(warnings.note(key, at(0)), Occurrence::First);
        for second in 1..=36 {
            assert_eq!(warnings.note(key, at(second)), Occurrence::Quiet);
        }
        assert_eq!(
            warnings.note(key, at(60)),
            Occurrence::Repeated {
                times: 37,
                over: Duration::from_secs(60)
            },
            "issue 12: one summary per interval"
        );
        assert_eq!(warnings.note(key, at(61)), Occurrence::Quiet);
        assert_eq!(
            warnings.note("prometheus:http://127.0.0.1:9090 bad_query", at(61)),
            Occurrence::First,
            "another kind of error is another warning"
        );
        assert_eq!(
            warnings.note(key, at(200)),
            Occurrence::Repeated {
                times: 2,
                over: Duration::from_secs(140)
            }
        );
        // Quiet for a whole interval since it was logged: a new outage starts over.
        assert_eq!(warnings.note(key, at(400)), Occurrence::First);
    }

    #[test]
    fn error_text_leaves_out_the_query_url() {
        let url = "http://127.0.0.1:9090/api/v1/query_range?query=histogram_quantile%280.95%2C+sum%28rate%28x%5B5m%5D%29%29%29&start=1&end=2&step=15";
        let text = format!("error sending request for url ({url}): client error (Connect)");
        assert_eq!(
            without_url(&text, Some(url)),
            "error sending request: client error (Connect)"
        );
        assert_eq!(without_url("plain", None), "plain");
    }

    #[tokio::test(start_paused = true)]
    async fn retries_stop_after_the_configured_count_with_doubling_pauses() {
        let started = tokio::time::Instant::now();
        let mut attempts = 0;
        let result: Result<(), _> =
            with_retries(2, Duration::from_millis(200), &warnings(), || {
                attempts += 1;
                async { Err(unreachable("down")) }
            })
            .await;
        assert_eq!(attempts, 3);
        // 200 ms + 400 ms of pauses, on the paused clock.
        assert_eq!(started.elapsed(), Duration::from_millis(600));
        let SourceError::Unreachable { message, .. } = result.unwrap_err() else {
            panic!("expected Unreachable");
        };
        assert_eq!(message, "down (gave up after 3 attempts)");
    }

    #[tokio::test(start_paused = true)]
    async fn a_failure_that_cannot_pass_is_not_retried() {
        let mut attempts = 0;
        let result: Result<(), _> =
            with_retries(5, Duration::from_millis(200), &warnings(), || {
                attempts += 1;
                async {
                    Err(Failure {
                        error: SourceError::BadQuery {
                            source_name: "test".into(),
                            query: "rate(".into(),
                            message: "parse error".into(),
                        },
                        retryable: false,
                        retry_after: None,
                    })
                }
            })
            .await;
        assert_eq!(attempts, 1);
        assert!(matches!(result, Err(SourceError::BadQuery { .. })));
    }

    #[tokio::test(start_paused = true)]
    async fn a_success_after_a_failure_is_returned() {
        let mut attempts = 0;
        let result = with_retries(2, Duration::from_millis(200), &warnings(), || {
            attempts += 1;
            let outcome = if attempts == 1 {
                Err(unreachable("blip"))
            } else {
                Ok(attempts)
            };
            async move { outcome }
        })
        .await;
        assert_eq!(result, Ok(2));
    }
}
