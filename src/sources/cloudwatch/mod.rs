//! Amazon CloudWatch as a [`MetricSource`]: `GetMetricData` over the JSON protocol,
//! signed with AWS Signature Version 4.
//!
//! A metric's `[metrics.queries.cloudwatch]` query is the `MetricDataQueries` array of
//! a `GetMetricData` request, as the CloudWatch console's "Source" tab shows it, with
//! `{{scope}}` where the side's dimensions go:
//!
//! ```json
//! [{"Id": "api", "MetricStat": {"Metric": {"Namespace": "Web", "MetricName": "Latency",
//!   "Dimensions": [{{scope}}, {"Name": "Route", "Value": "/api"}]},
//!   "Period": {{step_seconds}}, "Stat": "Average"}}]
//! ```
//!
//! `track="canary"` becomes `{"Name": "track", "Value": "canary"}`; CloudWatch
//! dimensions match exact values only, so `!=` and regular expressions are refused
//! (a `SEARCH` expression can take them, written into the query). Every result that is
//! returned (`ReturnData`) is one series labelled by its `Id` (and its `Label` when a
//! `SEARCH` returns several under one `Id`); the same `Id` on both sides pairs them.
//! `NextToken` pages are followed. Throttling (HTTP 400 `Throttling`) is retried like
//! a 5xx; refused credentials (`UnrecognizedClientException`, `InvalidClientTokenId`,
//! `SignatureDoesNotMatch`, `ExpiredToken`, `AccessDenied…`) are not.

pub mod config;

use std::collections::BTreeMap;
use std::time::Duration;

use async_trait::async_trait;
use serde::Deserialize;

pub use self::config::{CloudWatchConfig, CloudWatchConfigError};
use crate::domain::{QueryLanguage, Sample};
use crate::sources::http::sigv4::SigV4Signer;
use crate::sources::http::{Failure, RepeatedWarnings, send, status_failure, with_retries};
use crate::sources::scope::{MatchOp, parse_matchers};
use crate::sources::{LabeledSeries, MetricSource, RangeRequest, SourceError};

/// The JSON protocol's target for `GetMetricData`.
const GET_METRIC_DATA: &str = "GraniteServiceVersion20100801.GetMetricData";

/// At most this many pages are followed for one query.
const MAX_PAGES: usize = 50;

/// CloudWatch as a metric source. Made by [`CloudWatchConfig::build`].
#[derive(Clone)]
pub struct CloudWatchSource {
    client: reqwest::Client,
    base: reqwest::Url,
    signer: SigV4Signer,
    timeout: Duration,
    retries: u32,
    retry_backoff: Duration,
    warnings: std::sync::Arc<RepeatedWarnings>,
}

impl std::fmt::Debug for CloudWatchSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CloudWatchSource")
            .field("url", &self.base.as_str())
            .finish_non_exhaustive()
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct GetMetricDataResponse {
    #[serde(default)]
    metric_data_results: Vec<MetricDataResult>,
    #[serde(default)]
    next_token: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct MetricDataResult {
    id: String,
    #[serde(default)]
    label: Option<String>,
    #[serde(default)]
    timestamps: Vec<f64>,
    #[serde(default)]
    values: Vec<f64>,
}

/// An AWS JSON-protocol error (`__type` and `message`, or `Message`).
#[derive(Deserialize)]
struct AwsError {
    #[serde(rename = "__type", default)]
    kind: String,
    #[serde(default, alias = "Message")]
    message: Option<String>,
}

impl AwsError {
    /// The error code without its namespace (`…#ThrottlingException`).
    fn code(&self) -> &str {
        self.kind.rsplit('#').next().unwrap_or_default()
    }
}

impl CloudWatchSource {
    /// One signed `GetMetricData` call; its parsed answer.
    async fn call(
        &self,
        body: &serde_json::Value,
        query: &str,
    ) -> Result<GetMetricDataResponse, SourceError> {
        let source_name = self.describe();
        let body = body.to_string();
        with_retries(self.retries, self.retry_backoff, &self.warnings, || async {
            let mut request = self
                .client
                .post(self.base.clone())
                .header("content-type", "application/x-amz-json-1.0")
                .header("x-amz-target", GET_METRIC_DATA)
                .body(body.clone());
            for (name, value) in self.signer.sign(
                "POST",
                &self.base,
                &[
                    ("content-type", "application/x-amz-json-1.0"),
                    ("x-amz-target", GET_METRIC_DATA),
                ],
                body.as_bytes(),
                time::OffsetDateTime::now_utc(),
            ) {
                request = request.header(name, value);
            }
            let answer = send(request, &source_name, self.timeout).await?;
            if answer.status.is_success() {
                return serde_json::from_slice(&answer.body).map_err(|error| {
                    Failure::fatal(SourceError::Unreachable {
                        source_name: source_name.clone(),
                        message: format!("the answer is not a GetMetricData response: {error}"),
                    })
                });
            }
            let error = serde_json::from_slice::<AwsError>(&answer.body).ok();
            let code = error.as_ref().map(AwsError::code).unwrap_or_default();
            let message = error.as_ref().map(|error| match &error.message {
                Some(message) => format!("{}: {}", error.code(), message.trim()),
                None => error.code().to_owned(),
            });
            Err(match code {
                "Throttling" | "ThrottlingException" | "RequestLimitExceeded" => {
                    Failure::retryable(SourceError::Unreachable {
                        source_name: source_name.clone(),
                        message: message.unwrap_or_else(|| "throttled".into()),
                    })
                }
                "UnrecognizedClientException"
                | "InvalidClientTokenId"
                | "SignatureDoesNotMatch"
                | "ExpiredToken"
                | "ExpiredTokenException"
                | "AccessDenied"
                | "AccessDeniedException"
                | "MissingAuthenticationToken" => Failure::fatal(SourceError::Unauthorized {
                    source_name: source_name.clone(),
                    message: message.unwrap_or_default(),
                }),
                _ => status_failure(&answer, &source_name, query, message),
            })
        })
        .await
    }

    async fn get_metric_data(
        &self,
        query: &str,
        start: i64,
        end: i64,
    ) -> Result<Vec<LabeledSeries>, SourceError> {
        let queries: serde_json::Value =
            serde_json::from_str(query).map_err(|error| SourceError::BadQuery {
                source_name: self.describe(),
                query: query.to_owned(),
                message: format!(
                    "a CloudWatch query is the JSON array of MetricDataQueries: {error}"
                ),
            })?;
        if !queries.is_array() {
            return Err(SourceError::BadQuery {
                source_name: self.describe(),
                query: query.to_owned(),
                message: "a CloudWatch query is the JSON array of MetricDataQueries".into(),
            });
        }
        let mut results: Vec<MetricDataResult> = Vec::new();
        let mut next_token: Option<String> = None;
        for _ in 0..MAX_PAGES {
            let mut body = serde_json::json!({
                "MetricDataQueries": queries,
                "StartTime": start,
                "EndTime": end,
                "ScanBy": "TimestampAscending",
            });
            if let Some(token) = &next_token {
                body["NextToken"] = serde_json::Value::from(token.clone());
            }
            let page = self.call(&body, query).await?;
            results.extend(page.metric_data_results);
            next_token = page.next_token.filter(|token| !token.is_empty());
            if next_token.is_none() {
                break;
            }
        }
        Ok(into_series(results, start))
    }
}

/// Results as labelled series, merged by `Id` (and `Label` where one `Id` has
/// several), points from `start` on (a CloudWatch point is labelled with the start of
/// its period, so the period that opens the window is in it).
fn into_series(results: Vec<MetricDataResult>, start: i64) -> Vec<LabeledSeries> {
    let mut per_id: BTreeMap<String, usize> = BTreeMap::new();
    for result in &results {
        *per_id.entry(result.id.clone()).or_default() += 1;
    }
    let mut merged: BTreeMap<BTreeMap<String, String>, Vec<Sample>> = BTreeMap::new();
    for result in results {
        let mut labels = BTreeMap::from([("id".to_owned(), result.id.clone())]);
        if per_id[&result.id] > 1
            && let Some(label) = result.label
        {
            labels.insert("label".to_owned(), label);
        }
        merged.entry(labels).or_default().extend(
            result
                .timestamps
                .iter()
                .zip(&result.values)
                .filter(|(timestamp, _)| **timestamp >= start as f64)
                .map(|(timestamp, value)| Sample {
                    timestamp: *timestamp,
                    value: *value,
                }),
        );
    }
    merged
        .into_iter()
        .map(|(labels, mut samples)| {
            samples.sort_by(|a, b| a.timestamp.total_cmp(&b.timestamp));
            LabeledSeries { labels, samples }
        })
        .collect()
}

/// A scope's matchers as CloudWatch dimensions:
/// `{"Name": "track", "Value": "canary"}`, comma-separated.
pub fn dimensions(scope: &str) -> Result<String, String> {
    let matchers = parse_matchers(scope)?;
    let mut written = Vec::with_capacity(matchers.len());
    for matcher in matchers {
        if matcher.op != MatchOp::Equal {
            return Err(format!(
                "CloudWatch dimensions match exact values only; {}{}{:?} needs a SEARCH expression written into the query",
                matcher.name,
                matcher.op.as_str(),
                matcher.value
            ));
        }
        written
            .push(serde_json::json!({ "Name": matcher.name, "Value": matcher.value }).to_string());
    }
    Ok(written.join(", "))
}

#[async_trait]
impl MetricSource for CloudWatchSource {
    fn describe(&self) -> String {
        format!("cloudwatch:{}", self.base.as_str().trim_end_matches('/'))
    }

    fn language(&self) -> QueryLanguage {
        QueryLanguage::Cloudwatch
    }

    fn render_scope(&self, scope: &str) -> Result<String, String> {
        dimensions(scope)
    }

    /// A `GetMetricData` of one metric over the last five minutes: proves the
    /// endpoint answers and the signature and credentials are accepted (an empty
    /// answer is fine).
    async fn healthcheck(&self) -> Result<(), SourceError> {
        let now = crate::sources::http::now_unix_seconds();
        let probe = r#"[{"Id": "canary_preflight", "MetricStat": {"Metric": {"Namespace": "AWS/EC2", "MetricName": "CPUUtilization"}, "Period": 60, "Stat": "Average"}}]"#;
        self.get_metric_data(probe, now - 300, now)
            .await
            .map(|_| ())
    }

    async fn fetch(&self, request: &RangeRequest) -> Result<Vec<LabeledSeries>, SourceError> {
        self.get_metric_data(
            &request.query,
            request.start.floor() as i64,
            request.end.round() as i64,
        )
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_become_dimensions_and_inexact_matchers_are_refused() {
        assert_eq!(
            dimensions(r#"track="canary", app="web""#).unwrap(),
            r#"{"Name":"track","Value":"canary"}, {"Name":"app","Value":"web"}"#
        );
        let error = dimensions(r#"pod=~"web-.*""#).unwrap_err();
        assert!(error.contains("SEARCH"), "{error}");
    }

    #[test]
    fn results_are_series_by_id_and_label_where_ids_repeat() {
        let results: Vec<MetricDataResult> = serde_json::from_str(
            r#"[{"Id":"api","Label":"lat","Timestamps":[100,115,130],"Values":[1,2,3],"StatusCode":"Complete"},
                {"Id":"s","Label":"a","Timestamps":[115],"Values":[1]},
                {"Id":"s","Label":"b","Timestamps":[115],"Values":[2]}]"#,
        )
        .unwrap();
        let series = into_series(results, 100);
        assert!(into_series(Vec::new(), 100).is_empty());
        assert_eq!(series.len(), 3);
        assert_eq!(
            series[0].labels,
            BTreeMap::from([("id".into(), "api".into())])
        );
        assert_eq!(
            series[0].samples.len(),
            3,
            "the period that opens the window is in"
        );
        assert_eq!(series[1].labels["label"], "a");
    }

    #[test]
    fn error_codes_lose_their_namespace() {
        let error: AwsError = serde_json::from_str(
            r#"{"__type":"com.amazon.coral.availability#ThrottlingException","message":"Rate exceeded"}"#,
        )
        .unwrap();
        assert_eq!(error.code(), "ThrottlingException");
        let error: AwsError =
            serde_json::from_str(r#"{"__type":"X#ValidationError","Message":"bad"}"#).unwrap();
        assert_eq!(error.message.as_deref(), Some("bad"));
    }
}
