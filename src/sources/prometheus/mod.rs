//! A live [`MetricSource`] backed by the Prometheus HTTP API.
//!
//! - [`config`]: the user settings ([`PrometheusConfig`]) and their validation;
//!   `build()` gives a [`PrometheusSource`].
//! - `client`: one request with bounded retries and the mapping of failures onto
//!   [`SourceError`].
//!
//! A request is either a range query (`/api/v1/query_range` over `[start, end]` at
//! `step`: the query evaluated at every step) or, with `raw_samples`, the instant
//! query `QUERY[WINDOW]` evaluated at `end`, which returns the stored samples of the
//! window as they were scraped. In raw mode the query must be a plain series selector
//! such as `http_request_duration_seconds{track="canary"}`: PromQL only allows a
//! range `[...]` after a selector. Times go to Prometheus in whole seconds.
//!
//! This module knows nothing of profiles, the judge or scopes: it runs the query it
//! is given. An empty answer is `Ok(vec![])`, never an error; deciding that it
//! means "no data" is the caller's job.

mod client;
pub mod config;

use std::time::Duration;

use async_trait::async_trait;
use tracing::debug;

use self::client::{classify, into_series};
pub use self::config::{BasicAuth, PrometheusConfig, PrometheusConfigError, Secret};
use crate::sources::http::{RepeatedWarnings, with_retries};
use crate::sources::{LabeledSeries, MetricSource, RangeRequest, SourceError};

/// A Prometheus server as a metric source. Made by [`PrometheusConfig::build`].
#[derive(Clone)]
pub struct PrometheusSource {
    client: prometheus_http_query::Client,
    url: String,
    timeout: Duration,
    retries: u32,
    retry_backoff: Duration,
    /// Shared by the clones of a source, so a failure every request shares is logged
    /// once, then summarised once per [`REPEATED_WARNING_INTERVAL`].
    warnings: std::sync::Arc<RepeatedWarnings>,
}

/// How often a warning that keeps repeating (the same source failing the same way) is
/// summarised after its first occurrence.
pub const REPEATED_WARNING_INTERVAL: Duration = Duration::from_secs(60);

impl std::fmt::Debug for PrometheusSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PrometheusSource")
            .field("url", &self.url)
            .field("timeout", &self.timeout)
            .field("retries", &self.retries)
            .field("retry_backoff", &self.retry_backoff)
            .finish_non_exhaustive()
    }
}

impl PrometheusSource {
    /// The base URL the source talks to, without a trailing slash.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Runs an instant query at `time` (Unix seconds) with retries.
    async fn instant(&self, query: &str, time: i64) -> Result<Vec<LabeledSeries>, SourceError> {
        let source_name = self.describe();
        with_retries(self.retries, self.retry_backoff, &self.warnings, || async {
            self.client
                .query(query)
                .at(time)
                .get()
                .await
                .map(|result| into_series(result.into_inner().0))
                .map_err(|error| classify(error, &source_name, query, self.timeout))
        })
        .await
    }

    /// Runs a range query with retries.
    async fn range(
        &self,
        query: &str,
        start: i64,
        end: i64,
        step: f64,
    ) -> Result<Vec<LabeledSeries>, SourceError> {
        let source_name = self.describe();
        with_retries(self.retries, self.retry_backoff, &self.warnings, || async {
            self.client
                .query_range(query, start, end, step)
                .get()
                .await
                .map(|result| into_series(result.into_inner().0))
                .map_err(|error| classify(error, &source_name, query, self.timeout))
        })
        .await
    }
}

/// The instant query that returns the raw samples of `selector` over the last
/// `window_seconds` before the evaluation time.
pub fn raw_samples_query(selector: &str, window_seconds: f64) -> String {
    let window_milliseconds = (window_seconds * 1000.0).round() as i64;
    format!("{}[{window_milliseconds}ms]", selector.trim())
}

#[async_trait]
impl MetricSource for PrometheusSource {
    fn describe(&self) -> String {
        format!("prometheus:{}", self.url)
    }

    /// Runs `vector(1)`: proves the server answers, the credentials are accepted and
    /// the query API works (a proxy's own `/-/ready` would prove less).
    async fn healthcheck(&self) -> Result<(), SourceError> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|elapsed| elapsed.as_secs() as i64)
            .unwrap_or(0);
        self.instant("vector(1)", now).await.map(|_| ())
    }

    async fn fetch(&self, request: &RangeRequest) -> Result<Vec<LabeledSeries>, SourceError> {
        let start = request.start.round() as i64;
        let end = request.end.round() as i64;
        debug!(
            source = %self.url,
            metric = %request.metric,
            side = request.side.as_str(),
            query = %request.query,
            start,
            end,
            step = request.step,
            raw_samples = request.raw_samples,
            "querying prometheus"
        );
        if request.raw_samples {
            let window_seconds = request.end - request.start;
            // Written so that a NaN window is refused too.
            if window_seconds.partial_cmp(&0.0) != Some(std::cmp::Ordering::Greater) {
                return Err(SourceError::BadQuery {
                    source_name: self.describe(),
                    query: request.query.clone(),
                    message: format!(
                        "the window [{}, {}] is empty; raw samples need end after start",
                        request.start, request.end
                    ),
                });
            }
            let query = raw_samples_query(&request.query, window_seconds);
            self.instant(&query, end).await
        } else {
            self.range(&request.query, start, end, request.step).await
        }
    }
}

impl PrometheusConfig {
    /// Checks the settings and builds the source. Makes no request: call
    /// [`MetricSource::healthcheck`] for that.
    pub fn build(&self) -> Result<PrometheusSource, PrometheusConfigError> {
        let (client, url) = self.client()?;
        Ok(PrometheusSource {
            client,
            url,
            timeout: self.timeout,
            retries: self.retries,
            retry_backoff: self.retry_backoff,
            warnings: std::sync::Arc::new(RepeatedWarnings::new(REPEATED_WARNING_INTERVAL)),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_raw_samples_query_appends_the_window_in_milliseconds() {
        assert_eq!(
            raw_samples_query(" up{job=\"x\"} ", 1800.0),
            "up{job=\"x\"}[1800000ms]"
        );
    }

    #[test]
    fn the_source_describes_itself_by_its_url() {
        let source = PrometheusConfig::new("http://127.0.0.1:9090/")
            .build()
            .unwrap();
        assert_eq!(source.describe(), "prometheus:http://127.0.0.1:9090");
        assert_eq!(source.url(), "http://127.0.0.1:9090");
    }
}
