//! Datadog as a [`MetricSource`]: the metrics query API v1 (`GET /api/v1/query`).
//!
//! A metric's `[metrics.queries.datadog]` query is a Datadog metric query; `{{scope}}`
//! becomes a tag filter (`track="canary"` → `track:canary`, `!=` → `!track:canary`;
//! Datadog has no regular expressions in tag filters, so `=~` is refused: use a
//! wildcard value instead, `pod="web-*"`). Group by the tags that name series and
//! roll up to the step:
//!
//! ```text
//! avg:trace.http.request.duration{service:web,{{scope}}} by {pod}.rollup(avg, {{step_seconds}})
//! ```
//!
//! Each returned series is one labelled series: its `tag_set` (`pod:web-1` → label
//! `pod` = `web-1`). `null` points are missing points. A rate limit (429) is waited out
//! as Datadog asks (`X-RateLimit-Reset` seconds, at most 30) before the retry.

pub mod config;

use std::collections::BTreeMap;
use std::time::Duration;

use async_trait::async_trait;
use serde::Deserialize;

pub use self::config::{DatadogConfig, DatadogConfigError};
use crate::domain::{QueryLanguage, Sample};
use crate::sources::http::{RepeatedWarnings, send, status_failure, with_retries};
use crate::sources::scope::{MatchOp, parse_matchers};
use crate::sources::{LabeledSeries, MetricSource, RangeRequest, SourceError};

/// Datadog's API as a metric source. Made by [`DatadogConfig::build`].
#[derive(Clone)]
pub struct DatadogSource {
    client: reqwest::Client,
    base: reqwest::Url,
    timeout: Duration,
    retries: u32,
    retry_backoff: Duration,
    warnings: std::sync::Arc<RepeatedWarnings>,
}

impl std::fmt::Debug for DatadogSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DatadogSource")
            .field("url", &self.base.as_str())
            .finish_non_exhaustive()
    }
}

#[derive(Deserialize)]
struct QueryResponse {
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    series: Vec<DatadogSeries>,
}

#[derive(Deserialize)]
struct DatadogSeries {
    #[serde(default)]
    scope: Option<String>,
    #[serde(default)]
    tag_set: Vec<String>,
    #[serde(default)]
    pointlist: Vec<(f64, Option<f64>)>,
}

#[derive(Deserialize)]
struct ErrorResponse {
    #[serde(default)]
    errors: Vec<String>,
}

impl DatadogSource {
    fn endpoint(&self, path: &str) -> reqwest::Url {
        let mut url = self.base.clone();
        url.set_path(&format!(
            "{}/{path}",
            self.base.path().trim_end_matches('/')
        ));
        url
    }

    /// Sends a GET of `path` with `params` and returns the body of a success.
    async fn get(
        &self,
        path: &str,
        params: &[(&str, String)],
        query: &str,
    ) -> Result<Vec<u8>, SourceError> {
        let source_name = self.describe();
        let url = self.endpoint(path);
        with_retries(self.retries, self.retry_backoff, &self.warnings, || async {
            let answer = send(
                self.client.get(url.clone()).query(params),
                &source_name,
                self.timeout,
            )
            .await?;
            if answer.status.is_success() {
                return Ok(answer.body);
            }
            let message = serde_json::from_slice::<ErrorResponse>(&answer.body)
                .ok()
                .filter(|response| !response.errors.is_empty())
                .map(|response| response.errors.join("; "));
            let mut failure = status_failure(&answer, &source_name, query, message);
            if answer.status.as_u16() == 429 && failure.retry_after.is_none() {
                // Datadog's rate-limit headers: seconds until the window resets.
                failure.retry_after = answer
                    .headers
                    .get("x-ratelimit-reset")
                    .and_then(|value| value.to_str().ok())
                    .and_then(|text| text.trim().parse::<f64>().ok())
                    .filter(|seconds| seconds.is_finite() && *seconds >= 0.0)
                    .map(|seconds| Duration::from_secs_f64(seconds.min(3600.0)));
            }
            Err(failure)
        })
        .await
    }

    async fn query(
        &self,
        query: &str,
        from: i64,
        to: i64,
    ) -> Result<Vec<LabeledSeries>, SourceError> {
        let params = [
            ("from", from.to_string()),
            ("to", to.to_string()),
            ("query", query.to_owned()),
        ];
        let body = self.get("api/v1/query", &params, query).await?;
        let response: QueryResponse =
            serde_json::from_slice(&body).map_err(|error| SourceError::Unreachable {
                source_name: self.describe(),
                message: format!("the answer is not a Datadog query response: {error}"),
            })?;
        if response.status.as_deref() == Some("error") {
            return Err(SourceError::BadQuery {
                source_name: self.describe(),
                query: query.to_owned(),
                message: response.error.unwrap_or_else(|| "status error".into()),
            });
        }
        Ok(into_series(response.series, from))
    }
}

/// The labels of a series: its `tag_set` (`key:value`), or its scope when it has none
/// (`*` for an ungrouped query, which gets no labels).
fn labels(series: &DatadogSeries) -> BTreeMap<String, String> {
    let tags: Vec<&str> = if series.tag_set.is_empty() {
        series
            .scope
            .as_deref()
            .filter(|scope| *scope != "*")
            .map(|scope| scope.split(',').collect())
            .unwrap_or_default()
    } else {
        series.tag_set.iter().map(String::as_str).collect()
    };
    tags.into_iter()
        .map(|tag| match tag.trim().split_once(':') {
            Some((key, value)) => (key.to_owned(), value.to_owned()),
            None => (tag.trim().to_owned(), String::new()),
        })
        .collect()
}

fn into_series(series: Vec<DatadogSeries>, from: i64) -> Vec<LabeledSeries> {
    let mut all: Vec<LabeledSeries> = series
        .iter()
        .map(|one| LabeledSeries {
            labels: labels(one),
            samples: one
                .pointlist
                .iter()
                .filter_map(|(milliseconds, value)| {
                    let timestamp = milliseconds / 1000.0;
                    value
                        .filter(|_| timestamp > from as f64)
                        .map(|value| Sample { timestamp, value })
                })
                .collect(),
        })
        .collect();
    all.sort_by(|left, right| left.labels.cmp(&right.labels));
    all
}

/// A scope's matchers as a Datadog tag filter: `track:canary,!zone:b`.
pub fn tag_filter(scope: &str) -> Result<String, String> {
    let matchers = parse_matchers(scope)?;
    let mut tags = Vec::with_capacity(matchers.len());
    for matcher in matchers {
        if matcher.value.contains([',', '{', '}', ' ']) {
            return Err(format!(
                "the value of label {:?} holds a comma, a brace or a space, which a Datadog tag filter cannot carry",
                matcher.name
            ));
        }
        match matcher.op {
            MatchOp::Equal => tags.push(format!("{}:{}", matcher.name, matcher.value)),
            MatchOp::NotEqual => tags.push(format!("!{}:{}", matcher.name, matcher.value)),
            MatchOp::Matches | MatchOp::NotMatches => {
                return Err(format!(
                    "Datadog tag filters have no regular expressions ({}{}{:?}); use a wildcard value instead, e.g. {}=\"web-*\"",
                    matcher.name,
                    matcher.op.as_str(),
                    matcher.value,
                    matcher.name
                ));
            }
        }
    }
    Ok(tags.join(","))
}

#[async_trait]
impl MetricSource for DatadogSource {
    fn describe(&self) -> String {
        format!("datadog:{}", self.base.as_str().trim_end_matches('/'))
    }

    fn language(&self) -> QueryLanguage {
        QueryLanguage::Datadog
    }

    fn render_scope(&self, scope: &str) -> Result<String, String> {
        tag_filter(scope)
    }

    /// `GET /api/v1/validate` (the API key), then a query over the last five minutes
    /// (the application key and its `timeseries_query` permission; an empty answer is
    /// fine).
    async fn healthcheck(&self) -> Result<(), SourceError> {
        let body = self.get("api/v1/validate", &[], "validate").await?;
        let valid = serde_json::from_slice::<serde_json::Value>(&body)
            .ok()
            .and_then(|value| value["valid"].as_bool());
        if valid != Some(true) {
            return Err(SourceError::Unauthorized {
                source_name: self.describe(),
                message: "the API key is not valid".into(),
            });
        }
        let now = crate::sources::http::now_unix_seconds();
        self.query("avg:datadog.agent.running{*}", now - 300, now)
            .await
            .map(|_| ())
    }

    async fn fetch(&self, request: &RangeRequest) -> Result<Vec<LabeledSeries>, SourceError> {
        self.query(
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
    fn scopes_become_tag_filters_and_regular_expressions_are_refused() {
        assert_eq!(
            tag_filter(r#"track="canary", zone!="b", pod="web-*""#).unwrap(),
            "track:canary,!zone:b,pod:web-*"
        );
        let error = tag_filter(r#"pod=~"web-.*""#).unwrap_err();
        assert!(error.contains("wildcard"), "{error}");
    }

    #[test]
    fn tag_sets_are_labels_and_null_points_are_missing() {
        let series: Vec<DatadogSeries> = serde_json::from_str(
            r#"[{"scope":"pod:web-1,track:canary","tag_set":["pod:web-1","track:canary"],"pointlist":[[1700000000000.0,null],[1700000015000.0,0.5],[1700000030000.0,0.6]]},
                {"scope":"*","tag_set":[],"pointlist":[[1700000015000.0,1.0]]}]"#,
        )
        .unwrap();
        let series = into_series(series, 1_700_000_000);
        assert!(
            series[0].labels.is_empty(),
            "an ungrouped query has no labels"
        );
        assert_eq!(series[1].labels["pod"], "web-1");
        assert_eq!(series[1].samples.len(), 2);
        assert_eq!(series[1].samples[0].timestamp, 1_700_000_015.0);
    }
}
