//! Graphite as a [`MetricSource`]: the render API (`/render?format=json`) of
//! graphite-web, or of anything that serves it (carbonapi, Grafana's Graphite proxy).
//!
//! A metric's `[metrics.queries.graphite]` query is a render target, functions
//! included. With tagged series, `{{scope}}` becomes tag expressions for
//! `seriesByTag`:
//!
//! ```text
//! seriesByTag('name=web.request.latency', {{scope}})
//! ```
//!
//! (`track="canary"` becomes `'track=canary'`; regular expressions are anchored as
//! PromQL anchors them). With plain dotted paths the side goes in the path instead:
//! `aliasByNode(web.{{side}}.*.latency, 2)`. Each returned series is one labelled
//! series: its tags without `name`, or, for a series without tags, its target (so an
//! `aliasByNode` that drops the side pairs the two sides). `null` datapoints are
//! missing points.

pub mod config;

use std::collections::BTreeMap;
use std::time::Duration;

use async_trait::async_trait;
use serde::Deserialize;

pub use self::config::{GraphiteConfig, GraphiteConfigError};
use crate::domain::{QueryLanguage, Sample};
use crate::sources::http::{Failure, RepeatedWarnings, send, status_failure, with_retries};
use crate::sources::scope::{MatchOp, parse_matchers};
use crate::sources::{LabeledSeries, MetricSource, RangeRequest, SourceError};

/// A Graphite render API as a metric source. Made by [`GraphiteConfig::build`].
#[derive(Clone)]
pub struct GraphiteSource {
    client: reqwest::Client,
    base: reqwest::Url,
    timeout: Duration,
    retries: u32,
    retry_backoff: Duration,
    warnings: std::sync::Arc<RepeatedWarnings>,
}

impl std::fmt::Debug for GraphiteSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GraphiteSource")
            .field("url", &self.base.as_str())
            .finish_non_exhaustive()
    }
}

/// One series of a `format=json` answer.
#[derive(Deserialize)]
struct RenderedSeries {
    target: String,
    #[serde(default)]
    tags: BTreeMap<String, serde_json::Value>,
    datapoints: Vec<(Option<f64>, f64)>,
}

impl GraphiteSource {
    /// Runs one render request for `target` over `(from, until]` with retries.
    async fn render(
        &self,
        target: &str,
        from: i64,
        until: i64,
    ) -> Result<Vec<LabeledSeries>, SourceError> {
        let source_name = self.describe();
        let mut url = self.base.clone();
        url.set_path(&format!(
            "{}/render",
            self.base.path().trim_end_matches('/')
        ));
        let params = [
            ("target", target.to_owned()),
            ("from", from.to_string()),
            ("until", until.to_string()),
            ("format", "json".to_owned()),
        ];
        with_retries(self.retries, self.retry_backoff, &self.warnings, || async {
            let answer = send(
                self.client.post(url.clone()).form(&params),
                &source_name,
                self.timeout,
            )
            .await?;
            if !answer.status.is_success() {
                let text = String::from_utf8_lossy(&answer.body);
                let message = first_line_of_error(&text);
                return Err(status_failure(&answer, &source_name, target, message));
            }
            let rendered: Vec<RenderedSeries> =
                serde_json::from_slice(&answer.body).map_err(|error| {
                    Failure::fatal(SourceError::Unreachable {
                        source_name: source_name.clone(),
                        message: format!(
                            "the answer is not a Graphite render response: {error}; is this the render API's base URL?"
                        ),
                    })
                })?;
            Ok(into_series(rendered, from))
        })
        .await
    }
}

/// The line of an error page that says what went wrong (graphite-web answers a
/// failed target with a traceback or an HTML page; the last line names the error).
fn first_line_of_error(text: &str) -> Option<String> {
    let line = text
        .lines()
        .map(str::trim)
        .rfind(|line| !line.is_empty() && !line.starts_with('<'))?;
    Some(line.chars().take(300).collect())
}

/// The series of a render answer, points after `from` only, nulls left out.
fn into_series(rendered: Vec<RenderedSeries>, from: i64) -> Vec<LabeledSeries> {
    let mut all: Vec<LabeledSeries> = rendered
        .into_iter()
        .map(|series| {
            let mut labels: BTreeMap<String, String> = series
                .tags
                .into_iter()
                .filter(|(name, _)| name != "name")
                .map(|(name, value)| {
                    let text = match value {
                        serde_json::Value::String(text) => text,
                        other => other.to_string(),
                    };
                    (name, text)
                })
                .collect();
            if labels.is_empty() {
                labels.insert("target".to_owned(), series.target);
            }
            LabeledSeries {
                labels,
                samples: series
                    .datapoints
                    .into_iter()
                    .filter(|(_, timestamp)| *timestamp > from as f64)
                    .filter_map(|(value, timestamp)| value.map(|value| Sample { timestamp, value }))
                    .collect(),
            }
        })
        .collect();
    all.sort_by(|left, right| left.labels.cmp(&right.labels));
    all
}

/// A scope's matchers as `seriesByTag` tag expressions: `'track=canary', 'pod=~^(?:web-.*)$'`.
pub fn tag_expressions(scope: &str) -> Result<String, String> {
    let matchers = parse_matchers(scope)?;
    let mut expressions = Vec::with_capacity(matchers.len());
    for matcher in matchers {
        if matcher
            .value
            .chars()
            .any(|c| matches!(c, '\'' | '"' | ';' | ',') || c.is_control())
        {
            return Err(format!(
                "the value of label {:?} holds a quote, `;`, `,` or a control character, which a Graphite tag expression cannot carry",
                matcher.name
            ));
        }
        let expression = match matcher.op {
            MatchOp::Equal => format!("{}={}", matcher.name, matcher.value),
            MatchOp::NotEqual => format!("{}!={}", matcher.name, matcher.value),
            MatchOp::Matches => format!("{}=~^(?:{})$", matcher.name, matcher.value),
            MatchOp::NotMatches => format!("{}!=~^(?:{})$", matcher.name, matcher.value),
        };
        expressions.push(format!("'{expression}'"));
    }
    Ok(expressions.join(", "))
}

#[async_trait]
impl MetricSource for GraphiteSource {
    fn describe(&self) -> String {
        format!("graphite:{}", self.base.as_str().trim_end_matches('/'))
    }

    fn language(&self) -> QueryLanguage {
        QueryLanguage::Graphite
    }

    fn render_scope(&self, scope: &str) -> Result<String, String> {
        tag_expressions(scope)
    }

    /// Renders `constantLine(1)` over the last minute: proves the render API answers
    /// JSON and the credentials are accepted.
    async fn healthcheck(&self) -> Result<(), SourceError> {
        let now = crate::sources::http::now_unix_seconds();
        self.render("constantLine(1)", now - 60, now)
            .await
            .map(|_| ())
    }

    async fn fetch(&self, request: &RangeRequest) -> Result<Vec<LabeledSeries>, SourceError> {
        self.render(
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
    fn scopes_become_tag_expressions() {
        assert_eq!(
            tag_expressions(r#"track="canary", pod=~"web-.*", zone!="b""#).unwrap(),
            "'track=canary', 'pod=~^(?:web-.*)$', 'zone!=b'"
        );
        let error = tag_expressions(r#"track="a'b""#).unwrap_err();
        assert!(error.contains("quote"), "{error}");
    }

    #[test]
    fn tags_are_labels_and_untagged_series_are_named_by_target() {
        let rendered: Vec<RenderedSeries> = serde_json::from_str(
            r#"[
              {"target":"web.latency;route=/api;track=canary","tags":{"name":"web.latency","route":"/api","track":"canary"},"datapoints":[[0.5,100],[null,110],[0.7,120]]},
              {"target":"api","tags":{"name":"api"},"datapoints":[[1,100]]}
            ]"#,
        )
        .unwrap();
        let series = into_series(rendered, 100);
        assert_eq!(series.len(), 2);
        let tagged = series
            .iter()
            .find(|s| s.labels.contains_key("route"))
            .unwrap();
        assert_eq!(tagged.labels["track"], "canary");
        assert!(!tagged.labels.contains_key("name"));
        assert_eq!(
            tagged.samples.len(),
            1,
            "the point at `from` and the null are out"
        );
        let untagged = series
            .iter()
            .find(|s| s.labels.contains_key("target"))
            .unwrap();
        assert_eq!(untagged.labels["target"], "api");
    }

    #[test]
    fn the_last_line_of_an_error_page_says_what_went_wrong() {
        let page = "Traceback (most recent call last):\n  File \"x\"\nValueError: unknown function nope\n\n";
        assert_eq!(
            first_line_of_error(page).as_deref(),
            Some("ValueError: unknown function nope")
        );
    }
}
