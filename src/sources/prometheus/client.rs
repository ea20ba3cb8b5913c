//! Talking to the Prometheus HTTP API: one request with bounded retries, the mapping
//! of every failure onto [`SourceError`], and the conversion of answers into
//! [`LabeledSeries`].
//!
//! What is retried: connection failures, timeouts, 5xx answers and Prometheus'
//! own `timeout` / `unavailable` / `internal` errors, which can pass. What is not: a
//! rejected query (`bad_data`, `execution`: retrying cannot fix it) and refused
//! credentials (retrying could lock an account). Values are passed through as
//! Prometheus sent them, NaN included: missing points are the judge's business.

use std::collections::BTreeMap;
use std::future::Future;
use std::time::Duration;

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

/// Runs `attempt` until it succeeds, fails for good, or `retries` retries are spent,
/// sleeping `backoff`, then twice that, and so on between attempts.
pub(super) async fn with_retries<T, F, Fut>(
    retries: u32,
    backoff: Duration,
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
                warn!(attempt = attempt_number, error = %error, pause_ms = pause.as_millis() as u64, "prometheus request failed; retrying");
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
                // A 2xx answer that is not JSON: something else lives at this URL.
                return unreachable(
                    format!("{client_error}; is this the Prometheus API base URL?"),
                    false,
                );
            };
            if http_error.is_timeout() {
                return unreachable(
                    format!("no answer within {:.1} s", timeout.as_secs_f64()),
                    true,
                );
            }
            if http_error.is_connect() {
                return unreachable(format!("cannot connect: {}", error_chain(http_error)), true);
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
                        error_chain(http_error)
                    ),
                    false,
                );
            }
            unreachable(error_chain(http_error), true)
        }
        other => unreachable(other.to_string(), false),
    }
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

    #[tokio::test(start_paused = true)]
    async fn retries_stop_after_the_configured_count_with_doubling_pauses() {
        let started = tokio::time::Instant::now();
        let mut attempts = 0;
        let result: Result<(), _> = with_retries(2, Duration::from_millis(200), || {
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
        let result: Result<(), _> = with_retries(5, Duration::from_millis(200), || {
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
        let result = with_retries(2, Duration::from_millis(200), || {
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
