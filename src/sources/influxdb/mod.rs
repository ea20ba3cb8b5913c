//! InfluxDB as a [`MetricSource`]: InfluxQL over the `/query` endpoint.
//!
//! - [`config`]: the settings ([`InfluxDbConfig`]); `build()` gives an
//!   [`InfluxDbSource`].
//!
//! A metric's `[metrics.queries.influxdb]` query is one InfluxQL `SELECT` that returns
//! one value column, usually grouped by time and by the tags that name series:
//!
//! ```sql
//! SELECT mean("value") FROM "request_latency_seconds"
//! WHERE {{scope}} AND {{time_filter}} GROUP BY time({{step}}), "pod"
//! ```
//!
//! `{{scope}}` becomes a `WHERE` condition (`"track" = 'canary'`; regular expressions
//! anchored as PromQL anchors them), `{{time_filter}}` the window
//! (`time > …ms AND time <= …ms`). Each returned series is one labelled series (its
//! tags are its labels, paired across the sides as Prometheus labels are); `null`
//! values (empty `GROUP BY time` buckets) are missing points, not zeros.

pub mod config;

use std::collections::BTreeMap;
use std::time::Duration;

use async_trait::async_trait;
use serde::Deserialize;

pub use self::config::{InfluxDbConfig, InfluxDbConfigError};
use crate::domain::{QueryLanguage, Sample};
use crate::sources::http::{Failure, RepeatedWarnings, send, status_failure, with_retries};
use crate::sources::scope::{MatchOp, parse_matchers};
use crate::sources::{LabeledSeries, MetricSource, RangeRequest, SourceError};

/// An InfluxDB server as a metric source. Made by [`InfluxDbConfig::build`].
#[derive(Clone)]
pub struct InfluxDbSource {
    client: reqwest::Client,
    base: reqwest::Url,
    database: String,
    retention_policy: Option<String>,
    timeout: Duration,
    retries: u32,
    retry_backoff: Duration,
    warnings: std::sync::Arc<RepeatedWarnings>,
}

impl std::fmt::Debug for InfluxDbSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InfluxDbSource")
            .field("url", &self.base.as_str())
            .field("database", &self.database)
            .finish_non_exhaustive()
    }
}

/// The `/query` answer.
#[derive(Deserialize)]
struct QueryResponse {
    #[serde(default)]
    results: Vec<StatementResult>,
    #[serde(default)]
    error: Option<String>,
}

#[derive(Deserialize)]
struct StatementResult {
    #[serde(default)]
    series: Vec<InfluxSeries>,
    #[serde(default)]
    error: Option<String>,
}

#[derive(Deserialize)]
struct InfluxSeries {
    #[serde(default)]
    tags: BTreeMap<String, String>,
    columns: Vec<String>,
    #[serde(default)]
    values: Vec<Vec<serde_json::Value>>,
}

impl InfluxDbSource {
    /// Runs one InfluxQL statement with retries and returns its series.
    async fn query(&self, query: &str) -> Result<Vec<LabeledSeries>, SourceError> {
        self.statement(query, into_series).await
    }

    /// Runs one InfluxQL statement with retries and makes something of its answer
    /// (`read` says why the answer cannot be used).
    async fn statement<T>(
        &self,
        query: &str,
        read: fn(QueryResponse) -> Result<T, String>,
    ) -> Result<T, SourceError> {
        let source_name = self.describe();
        let mut url = self.base.clone();
        url.set_path(&format!("{}/query", self.base.path().trim_end_matches('/')));
        let mut params = vec![
            ("db", self.database.as_str()),
            ("q", query),
            ("epoch", "ms"),
        ];
        if let Some(policy) = &self.retention_policy {
            params.push(("rp", policy));
        }
        with_retries(self.retries, self.retry_backoff, &self.warnings, || async {
            let answer = send(
                self.client.post(url.clone()).form(&params),
                &source_name,
                self.timeout,
            )
            .await?;
            let parsed = serde_json::from_slice::<QueryResponse>(&answer.body);
            if !answer.status.is_success() {
                let message = parsed.ok().and_then(|response| response.error);
                return Err(status_failure(&answer, &source_name, query, message));
            }
            let response = parsed.map_err(|error| {
                Failure::fatal(SourceError::Unreachable {
                    source_name: source_name.clone(),
                    message: format!("the answer is not an InfluxDB /query response: {error}"),
                })
            })?;
            read(response).map_err(|message| {
                Failure::fatal(SourceError::BadQuery {
                    source_name: source_name.clone(),
                    query: query.to_owned(),
                    message,
                })
            })
        })
        .await
    }
}

/// The series of a one-statement answer, or why the answer cannot be used.
fn into_series(response: QueryResponse) -> Result<Vec<LabeledSeries>, String> {
    if let Some(error) = response.error {
        return Err(error);
    }
    let [result] = <[StatementResult; 1]>::try_from(response.results).map_err(|results| {
        format!(
            "the query has {} statements; give one SELECT per query",
            results.len()
        )
    })?;
    if let Some(error) = result.error {
        return Err(error);
    }
    let mut all = Vec::with_capacity(result.series.len());
    for series in result.series {
        let time = series.columns.iter().position(|column| column == "time");
        let value_columns: Vec<usize> = (0..series.columns.len())
            .filter(|index| Some(*index) != time)
            .collect();
        let (Some(time), [value]) = (time, value_columns.as_slice()) else {
            return Err(format!(
                "a query must return a time column and one value column; got {:?}",
                series.columns
            ));
        };
        let mut samples = Vec::with_capacity(series.values.len());
        for row in &series.values {
            let Some(timestamp) = row.get(time).and_then(serde_json::Value::as_f64) else {
                return Err("a row has no numeric time (is epoch set?)".into());
            };
            match row.get(*value) {
                None | Some(serde_json::Value::Null) => {}
                Some(serde_json::Value::Number(number)) => samples.push(Sample {
                    timestamp: timestamp / 1000.0,
                    value: number.as_f64().unwrap_or(f64::NAN),
                }),
                Some(other) => {
                    return Err(format!(
                        "column {:?} holds {other}, not a number",
                        series.columns[*value]
                    ));
                }
            }
        }
        all.push(LabeledSeries {
            labels: series.tags,
            samples,
        });
    }
    all.sort_by(|left, right| left.labels.cmp(&right.labels));
    Ok(all)
}

/// The error of a one-statement answer whose series do not matter.
fn statement_error(response: QueryResponse) -> Result<(), String> {
    if let Some(error) = response.error {
        return Err(error);
    }
    match response
        .results
        .first()
        .and_then(|result| result.error.clone())
    {
        Some(error) => Err(error),
        None => Ok(()),
    }
}

/// `"name"`, escaped as InfluxQL identifiers are.
fn identifier(name: &str) -> String {
    format!("\"{}\"", name.replace('\\', "\\\\").replace('"', "\\\""))
}

/// `'value'`, escaped as InfluxQL strings are.
fn string_literal(value: &str) -> String {
    format!("'{}'", value.replace('\\', "\\\\").replace('\'', "\\'"))
}

/// `/^(?:regex)$/`: anchored as PromQL anchors its regular expressions.
fn regex_literal(regex: &str) -> String {
    format!("/^(?:{})$/", regex.replace('/', "\\/"))
}

/// A scope's matchers as an InfluxQL condition.
pub fn influxql_condition(scope: &str) -> Result<String, String> {
    let matchers = parse_matchers(scope)?;
    Ok(matchers
        .iter()
        .map(|matcher| {
            let name = identifier(&matcher.name);
            match matcher.op {
                MatchOp::Equal => format!("{name} = {}", string_literal(&matcher.value)),
                MatchOp::NotEqual => format!("{name} != {}", string_literal(&matcher.value)),
                MatchOp::Matches => format!("{name} =~ {}", regex_literal(&matcher.value)),
                MatchOp::NotMatches => format!("{name} !~ {}", regex_literal(&matcher.value)),
            }
        })
        .collect::<Vec<_>>()
        .join(" AND "))
}

#[async_trait]
impl MetricSource for InfluxDbSource {
    fn describe(&self) -> String {
        format!(
            "influxdb:{}/{}",
            self.base.as_str().trim_end_matches('/'),
            self.database
        )
    }

    fn language(&self) -> QueryLanguage {
        QueryLanguage::Influxdb
    }

    fn render_scope(&self, scope: &str) -> Result<String, String> {
        influxql_condition(scope)
    }

    fn query_variables(&self, start: f64, end: f64) -> Vec<(&'static str, String)> {
        vec![(
            "time_filter",
            format!(
                "time > {}ms AND time <= {}ms",
                (start * 1000.0).round() as i64,
                (end * 1000.0).round() as i64
            ),
        )]
    }

    /// `SHOW RETENTION POLICIES ON "database"`: proves the server answers, the
    /// credentials are accepted and the database exists ("database not found").
    async fn healthcheck(&self) -> Result<(), SourceError> {
        let statement = format!("SHOW RETENTION POLICIES ON {}", identifier(&self.database));
        self.statement(&statement, statement_error).await
    }

    async fn fetch(&self, request: &RangeRequest) -> Result<Vec<LabeledSeries>, SourceError> {
        self.query(&request.query).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_become_influxql_conditions() {
        assert_eq!(
            influxql_condition(r#"track="canary", pod=~"web-v2-.*", zone!="a'b", path!~"/x""#)
                .unwrap(),
            r#""track" = 'canary' AND "pod" =~ /^(?:web-v2-.*)$/ AND "zone" != 'a\'b' AND "path" !~ /^(?:\/x)$/"#
        );
        assert!(influxql_condition("track").is_err());
    }

    fn parse(text: &str) -> Result<Vec<LabeledSeries>, String> {
        into_series(serde_json::from_str(text).unwrap())
    }

    #[test]
    fn answers_become_labelled_series_and_nulls_are_missing_points() {
        let series = parse(
            r#"{"results":[{"statement_id":0,"series":[
                {"name":"lat","tags":{"route":"/b"},"columns":["time","last"],"values":[[1700000000000,0.5],[1700000015000,null]]},
                {"name":"lat","tags":{"route":"/a"},"columns":["time","last"],"values":[[1700000000000,1]]}]}]}"#,
        )
        .unwrap();
        assert_eq!(series.len(), 2);
        assert_eq!(series[0].labels["route"], "/a");
        assert_eq!(series[1].samples.len(), 1, "the null is no point");
        assert_eq!(series[1].samples[0].timestamp, 1_700_000_000.0);
        assert!(
            parse(r#"{"results":[{"statement_id":0}]}"#)
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn answers_that_cannot_be_used_say_why() {
        for (text, expected) in [
            (
                r#"{"results":[{"statement_id":0,"error":"database not found: x"}]}"#,
                "database not found",
            ),
            (
                r#"{"results":[{"statement_id":0},{"statement_id":1}]}"#,
                "2 statements",
            ),
            (
                r#"{"results":[{"series":[{"columns":["time","a","b"],"values":[]}]}]}"#,
                "one value column",
            ),
            (
                r#"{"results":[{"series":[{"columns":["time","a"],"values":[[1,"x"]]}]}]}"#,
                "not a number",
            ),
        ] {
            let error = parse(text).unwrap_err();
            assert!(error.contains(expected), "{text}: {error}");
        }
    }
}
