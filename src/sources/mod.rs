//! Where observations come from.
//!
//! - [`recorded`]: readers for recorded baseline and canary files (CSV and
//!   Prometheus API JSON), used by `canary analyze`.
//! - [`replay`]: recorded series served as a [`MetricSource`], for demos and tests.
//! - The [`MetricSource`] trait: live sources that the rollout runner asks for one
//!   metric of one side over one analysis window. Implementations are named only in
//!   `app`.
//! - [`prometheus`]: the Prometheus HTTP API as a [`MetricSource`] (and every store
//!   that speaks it).
//! - [`influxdb`]: InfluxQL over InfluxDB's `/query` endpoint.
//! - [`graphite`]: Graphite's render API.
//! - [`datadog`]: Datadog's metrics query API.
//! - [`cloudwatch`]: Amazon CloudWatch's `GetMetricData`, signed with SigV4.
//! - [`http`]: what the HTTP sources share (retries, credentials, OAuth2, SigV4).
//! - [`scope`]: scopes parsed into label matchers, for languages other than PromQL.
//! - [`query`]: query templates, rendered once per side with its `{{scope}}`.
//! - [`pairing`]: matching baseline and canary series by label and pooling them into
//!   per-side data, with a note for every series that has no counterpart.

pub mod cloudwatch;
pub mod config;
pub mod datadog;
pub mod graphite;
pub mod http;
pub mod influxdb;
pub mod pairing;
pub mod prometheus;
pub mod query;
pub mod recorded;
pub mod replay;
pub mod scope;
pub mod synthetic;

use std::collections::BTreeMap;

use async_trait::async_trait;
use serde::Serialize;

use crate::domain::{QueryLanguage, Sample};

/// Which side of the comparison a query is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Side {
    /// The current version, on a slice the same size as the canary's.
    Baseline,
    /// The new version.
    Canary,
}

impl Side {
    /// `"baseline"` or `"canary"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Side::Baseline => "baseline",
            Side::Canary => "canary",
        }
    }
}

/// One request to a metric source: a rendered query for one metric of one side over
/// an analysis window.
#[derive(Debug, Clone, PartialEq)]
pub struct RangeRequest {
    /// The profile metric this is for (`latency_p95`, or `error_rate:errors`).
    pub metric: String,
    /// The side.
    pub side: Side,
    /// The query with the scope already filled in.
    pub query: String,
    /// Window start, Unix seconds.
    pub start: f64,
    /// Window end, Unix seconds.
    pub end: f64,
    /// Resolution of a range query, seconds.
    pub step: f64,
    /// Return raw samples (`query[window]` evaluated at `end`) instead of evaluating
    /// the query at each step: PromQL's only (profiles set it on PromQL queries alone;
    /// other languages say in the query itself whether they aggregate).
    pub raw_samples: bool,
}

/// A series as a source returns it: its labels and its samples in time order.
#[derive(Debug, Clone, PartialEq)]
pub struct LabeledSeries {
    /// Label set (without `__name__` unless the source keeps it).
    pub labels: BTreeMap<String, String>,
    /// Samples; NaN where the source reported NaN.
    pub samples: Vec<Sample>,
}

impl LabeledSeries {
    /// The samples of `samples` in a request's window `(start, end]` as one unlabeled
    /// series, or nothing when none falls inside: how sources without labels (replays,
    /// simulations) answer.
    pub fn unlabeled_in_window(
        samples: impl IntoIterator<Item = Sample>,
        request: &RangeRequest,
    ) -> Vec<LabeledSeries> {
        let samples: Vec<Sample> = samples
            .into_iter()
            .filter(|s| s.timestamp > request.start && s.timestamp <= request.end)
            .collect();
        if samples.is_empty() {
            Vec::new()
        } else {
            vec![LabeledSeries {
                labels: BTreeMap::new(),
                samples,
            }]
        }
    }
}

/// Why a source could not answer. The runner branches on it: `Unreachable` holds the
/// rollout and retries at the next interval; `BadQuery` is a configuration error;
/// `NoData` makes the metric inconclusive.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SourceError {
    /// Connection refused, timed out, or a 5xx after the bounded retries.
    #[error("metric source {source_name} unreachable: {message}")]
    Unreachable {
        /// The source, e.g. its URL.
        source_name: String,
        /// What happened.
        message: String,
    },
    /// The source rejected the query (syntax error, unknown function, 4xx).
    #[error("metric source {source_name} rejected the query {query:?}: {message}")]
    BadQuery {
        /// The source.
        source_name: String,
        /// The query as sent.
        query: String,
        /// The source's explanation.
        message: String,
    },
    /// Credentials missing or refused.
    #[error("metric source {source_name} refused the credentials: {message}")]
    Unauthorized {
        /// The source.
        source_name: String,
        /// What it said.
        message: String,
    },
}

impl SourceError {
    /// What kind of failure this is, for logs and metrics: `unreachable`, `bad_query` or
    /// `unauthorized`.
    pub fn kind(&self) -> &'static str {
        match self {
            SourceError::Unreachable { .. } => "unreachable",
            SourceError::BadQuery { .. } => "bad_query",
            SourceError::Unauthorized { .. } => "unauthorized",
        }
    }

    /// The source that failed, e.g. `prometheus:http://127.0.0.1:9090`.
    pub fn source_name(&self) -> &str {
        match self {
            SourceError::Unreachable { source_name, .. }
            | SourceError::BadQuery { source_name, .. }
            | SourceError::Unauthorized { source_name, .. } => source_name,
        }
    }
}

/// A live source of metric series.
#[async_trait]
pub trait MetricSource: Send + Sync {
    /// A short name for logs and reports, e.g. `prometheus:http://127.0.0.1:9090`.
    fn describe(&self) -> String;

    /// Whether the source runs the profile's queries. A replay of recorded series looks
    /// metrics up by name instead, so profiles without queries can be replayed.
    fn uses_queries(&self) -> bool {
        true
    }

    /// For recorded data: the first and last timestamps there are. Live sources have
    /// no such bound.
    fn recorded_range(&self) -> Option<(f64, f64)> {
        None
    }

    /// The language of the queries the source runs: which of a metric's query sets
    /// (`query` for PromQL, `[metrics.queries.LANGUAGE]` for the others) it takes.
    fn language(&self) -> QueryLanguage {
        QueryLanguage::Prometheus
    }

    /// A side's scope, given as label matchers (`track="canary", pod=~"web-.*"`),
    /// written in the source's language for `{{scope}}`: PromQL takes the matchers as
    /// they are; other languages parse them ([`scope::parse_matchers`]) and write them
    /// as a `WHERE` condition, tags or dimensions. An error says what the language
    /// cannot express.
    fn render_scope(&self, scope: &str) -> Result<String, String> {
        Ok(scope.to_owned())
    }

    /// The source's own template variables for the window `(start, end]` (Unix
    /// seconds), besides the common ones (`scope`, `side`, `step`, `lookback`, ...).
    fn query_variables(&self, _start: f64, _end: f64) -> Vec<(&'static str, String)> {
        Vec::new()
    }

    /// Checks that the source answers, before a rollout starts.
    async fn healthcheck(&self) -> Result<(), SourceError>;

    /// Runs one request. An empty vector means the query matched nothing (the caller
    /// decides that this is missing data).
    async fn fetch(&self, request: &RangeRequest) -> Result<Vec<LabeledSeries>, SourceError>;
}
