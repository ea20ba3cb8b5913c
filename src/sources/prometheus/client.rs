//! Talking to the Prometheus HTTP API: one request with bounded retries, the mapping
//! of every failure onto [`SourceError`], and the conversion of answers into
//! [`LabeledSeries`].
//!
//! What is retried: connection failures, timeouts, 5xx answers and Prometheus'
//! own `timeout` / `unavailable` / `internal` errors, which can pass. What is not: a
//! rejected query (`bad_data`, `execution`: retrying cannot fix it) and refused
//! credentials (retrying could lock an account). Values are passed through as
//! Prometheus sent them, NaN included: missing points are the judge's business.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

use prometheus_http_query::error::{Error as PromError, PrometheusErrorType};
use prometheus_http_query::response::Data;
use tracing::{debug, warn};

use crate::domain::Sample;
use crate::sources::{LabeledSeries, SourceError};

/// A failed attempt and whether another attempt could succeed.
#[derive(Debug)]
pub(super) struct Failure {
    pub(super) error: SourceError,
    pub(super) retryable: bool,
}

/// Collapses a warning that repeats: the same source failing the same way on every
/// request (Prometheus down fails all of a look's queries, and every retry of each).
/// The first occurrence is logged; the next ones are counted, and at most one summary
/// per `interval` says how many there were. A warning quiet for a whole interval is
/// logged again as a first one.
#[derive(Debug)]
pub(super) struct RepeatedWarnings {
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
pub(super) enum Occurrence {
    /// The first: log it.
    First,
    /// Log a summary: the warning came `times` times (this one included) over `over`.
    Repeated { times: u64, over: Duration },
    /// Counted for the next summary; log nothing.
    Quiet,
}

impl RepeatedWarnings {
    pub(super) fn new(interval: Duration) -> Self {
        Self {
            interval,
            seen: Mutex::new(HashMap::new()),
        }
    }

    /// Notes one occurrence of the warning `key` (source and error kind) at `now`.
    pub(super) fn note(&self, key: &str, now: Instant) -> Occurrence {
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
                "prometheus request failed; retrying (repeats of this warning are summarised every {})",
                crate::format::duration(self.interval.as_secs_f64())
            ),
            Occurrence::Repeated { times, over } => warn!(
                source,
                kind = error.kind(),
                error = %error,
                "prometheus request failed; retrying: repeated {times} times in the last {}",
                crate::format::duration(over.as_secs_f64())
            ),
            Occurrence::Quiet => {
                debug!(source, attempt, error = %error, "prometheus request failed; retrying")
            }
        }
    }
}

/// Runs `attempt` until it succeeds, fails for good, or `retries` retries are spent,
/// sleeping `backoff`, then twice that, and so on between attempts. Failed attempts are
/// logged through `warnings`, so a source that is down does not flood the log.
pub(super) async fn with_retries<T, F, Fut>(
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
            }) if attempt_number <= retries => {
                warnings.warn_retrying(&error, attempt_number, pause);
                tokio::time::sleep(pause).await;
                pause = pause.saturating_mul(2);
                attempt_number += 1;
            }
            Err(Failure {
                error,
                retryable: true,
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

/// Classifies an error of `prometheus-http-query` for `query` sent to `source_name`.
pub(super) fn classify(
    error: PromError,
    source_name: &str,
    query: &str,
    timeout: Duration,
) -> Failure {
    let unreachable = |message: String, retryable: bool| Failure {
        error: SourceError::Unreachable {
            source_name: source_name.to_string(),
            message,
        },
        retryable,
    };
    let bad_query = |message: String| Failure {
        error: SourceError::BadQuery {
            source_name: source_name.to_string(),
            query: query.to_string(),
            message,
        },
        retryable: false,
    };
    match error {
        PromError::Prometheus(error) => match error.error_type() {
            PrometheusErrorType::BadData
            | PrometheusErrorType::Execution
            | PrometheusErrorType::NotFound => bad_query(error.message().to_string()),
            // timeout, canceled, unavailable, internal: the server's trouble, which
            // can pass.
            _ => unreachable(error.to_string(), true),
        },
        PromError::Client(client_error) => {
            let Some(http_error) = client_error.inner() else {
                debug!(source = source_name, query, error = %error_chain(&client_error), "prometheus request failed");
                // A 2xx answer that is not JSON: something else lives at this URL.
                return unreachable(
                    format!("{client_error}; is this the Prometheus API base URL?"),
                    false,
                );
            };
            // The query is in the logs at debug level only: reqwest names the request's
            // whole URL, encoded PromQL included, which would drown every reason.
            debug!(source = source_name, query, error = %error_chain(http_error), "prometheus request failed");
            let url = http_error.url().map(|url| url.as_str());
            if http_error.is_timeout() {
                return unreachable(
                    format!(
                        "no answer within {}",
                        crate::format::duration(timeout.as_secs_f64())
                    ),
                    true,
                );
            }
            if http_error.is_connect() {
                return unreachable(format!("cannot connect: {}", root_cause(http_error)), true);
            }
            if let Some(status) = http_error.status() {
                let code = status.as_u16();
                return match code {
                    401 | 403 => Failure {
                        error: SourceError::Unauthorized {
                            source_name: source_name.to_string(),
                            message: format!("HTTP {status}"),
                        },
                        retryable: false,
                    },
                    404 => unreachable(
                        format!("HTTP {status}: no Prometheus API at this URL"),
                        false,
                    ),
                    500..=599 => unreachable(format!("HTTP {status}"), true),
                    _ => bad_query(format!("HTTP {status}")),
                };
            }
            if http_error.is_decode() {
                return unreachable(
                    format!(
                        "the answer is not a Prometheus API response: {}",
                        without_url(&error_chain(http_error), url)
                    ),
                    false,
                );
            }
            unreachable(without_url(&error_chain(http_error), url), true)
        }
        other => unreachable(other.to_string(), false),
    }
}

/// `text` without the request URL `url` that reqwest puts in its messages ("error
/// sending request for url (http://...?query=...)"): the source is named already.
fn without_url(text: &str, url: Option<&str>) -> String {
    match url {
        Some(url) if !url.is_empty() => text
            .replace(&format!(" for url ({url})"), "")
            .replace(url, "the query URL"),
        _ => text.to_owned(),
    }
}

/// The innermost cause of an error ("Connection refused (os error 111)"), which names
/// the problem without the layers (and the URL) around it.
fn root_cause(error: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = error;
    while let Some(inner) = cause.source() {
        cause = inner;
    }
    cause.to_string()
}

/// An error and its causes on one line ("error sending request: connection refused").
fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
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

/// Converts a query result into series sorted by label set. An instant vector
/// becomes one-sample series, a scalar one unlabeled one-sample series.
pub(super) fn into_series(data: Data) -> Vec<LabeledSeries> {
    let mut series: Vec<LabeledSeries> = match data {
        Data::Matrix(matrix) => matrix
            .into_iter()
            .map(|range| {
                let (labels, samples) = range.into_inner();
                LabeledSeries {
                    labels: labels.into_iter().collect(),
                    samples: samples.iter().map(convert_sample).collect(),
                }
            })
            .collect(),
        Data::Vector(vector) => vector
            .into_iter()
            .map(|instant| {
                let (labels, sample) = instant.into_inner();
                LabeledSeries {
                    labels: labels.into_iter().collect(),
                    samples: vec![convert_sample(&sample)],
                }
            })
            .collect(),
        Data::Scalar(sample) => vec![LabeledSeries {
            labels: BTreeMap::new(),
            samples: vec![convert_sample(&sample)],
        }],
    };
    series.sort_by(|left, right| left.labels.cmp(&right.labels));
    debug!(series = series.len(), "prometheus answered");
    series
}

fn convert_sample(sample: &prometheus_http_query::response::Sample) -> Sample {
    Sample {
        timestamp: sample.timestamp(),
        value: sample.value(),
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

    #[tokio::test]
    async fn a_refused_connection_names_the_source_and_not_the_query_url() {
        // A port nothing listens on: bind one, then close it.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap();
        drop(listener);
        let client =
            prometheus_http_query::Client::try_from(format!("http://{address}").as_str()).unwrap();
        let query = format!(
            "sum(rate(http_requests_total{{track=\"canary\"}}[5m])) /* {} */",
            "x".repeat(300)
        );
        let error = client
            .query_range(&query, 1_700_000_000, 1_700_000_600, 15.0)
            .get()
            .await
            .unwrap_err();
        let failure = classify(
            error,
            "prometheus:http://127.0.0.1:9",
            &query,
            Duration::from_secs(1),
        );
        let text = failure.error.to_string();
        assert!(failure.retryable);
        assert!(
            text.starts_with(
                "metric source prometheus:http://127.0.0.1:9 unreachable: cannot connect: "
            ),
            "{text}"
        );
        assert!(!text.contains("query_range"), "issue 12: {text}");
        assert!(!text.contains("xxx"), "issue 12: {text}");
        assert!(text.len() < 200, "{text}");
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
