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
use std::time::Duration;

use prometheus_http_query::error::{Error as PromError, PrometheusErrorType};
use prometheus_http_query::response::Data;
use tracing::debug;

use crate::sources::http::{Failure, error_chain, root_cause, without_url};

use crate::domain::Sample;
use crate::sources::{LabeledSeries, SourceError};

/// Classifies an error of `prometheus-http-query` for `query` sent to `source_name`.
pub(super) fn classify(
    error: PromError,
    source_name: &str,
    query: &str,
    timeout: Duration,
) -> Failure {
    let unreachable = |message: String, retryable: bool| {
        let error = SourceError::Unreachable {
            source_name: source_name.to_string(),
            message,
        };
        if retryable {
            Failure::retryable(error)
        } else {
            Failure::fatal(error)
        }
    };
    let bad_query = |message: String| {
        Failure::fatal(SourceError::BadQuery {
            source_name: source_name.to_string(),
            query: query.to_string(),
            message,
        })
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
                    401 | 403 => Failure::fatal(SourceError::Unauthorized {
                        source_name: source_name.to_string(),
                        message: format!("HTTP {status}"),
                    }),
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
}
