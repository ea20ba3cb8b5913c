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

use std::future::Future;

use prometheus_http_query::error::Error as PromError;
use prometheus_http_query::response::Data;

use self::client::{classify, into_series};
pub use self::config::{BasicAuth, PrometheusConfig, PrometheusConfigError, Secret};
use self::config::{BuiltClient, RequestAuth};
use crate::sources::http::{Failure, RepeatedWarnings, sensitive_header, with_retries};
use crate::sources::{LabeledSeries, MetricSource, RangeRequest, SourceError};

/// A Prometheus server as a metric source. Made by [`PrometheusConfig::build`].
#[derive(Clone)]
pub struct PrometheusSource {
    client: prometheus_http_query::Client,
    url: String,
    base: reqwest::Url,
    auth: RequestAuth,
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
        // The parameters as prometheus-http-query sends them, for a signature.
        let params = [("query", query.to_owned()), ("time", time.to_string())];
        self.run("api/v1/query", query, &params, || {
            self.client.query(query).at(time)
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
        let params = [
            ("query", query.to_owned()),
            ("start", start.to_string()),
            ("end", end.to_string()),
            ("step", step.to_string()),
        ];
        self.run("api/v1/query_range", query, &params, || {
            self.client.query_range(query, start, end, step)
        })
        .await
    }

    /// Sends the query `builder` makes, with retries and the per-request credentials:
    /// an OAuth2 bearer token (fetched again once when the server refuses it), or a
    /// SigV4 signature, in which case the query goes as a signed form POST (a signed
    /// body leaves no doubt about how the query string was encoded).
    async fn run<B: QueryBuilder>(
        &self,
        path: &str,
        query: &str,
        params: &[(&'static str, String)],
        builder: impl Fn() -> B,
    ) -> Result<Vec<LabeledSeries>, SourceError> {
        let source_name = self.describe();
        let mut refreshed = false;
        loop {
            let result = with_retries(self.retries, self.retry_backoff, &self.warnings, || async {
                let (request, post) = self
                    .authorised(builder(), path, params, &source_name)
                    .await?;
                let answer = if post {
                    request.send_post().await
                } else {
                    request.send_get().await
                };
                answer
                    .map(into_series)
                    .map_err(|error| classify(error, &source_name, query, self.timeout))
            })
            .await;
            match (&self.auth, result) {
                (RequestAuth::OAuth2(oauth2), Err(SourceError::Unauthorized { .. }))
                    if !refreshed =>
                {
                    // The token may have been revoked or expired early: fetch a new one
                    // once before reporting the credentials refused.
                    oauth2.invalidate().await;
                    refreshed = true;
                }
                (_, result) => return result,
            }
        }
    }

    /// `request` with its per-request credentials, and whether it must go as a POST.
    async fn authorised<B: QueryBuilder>(
        &self,
        request: B,
        path: &str,
        params: &[(&'static str, String)],
        source_name: &str,
    ) -> Result<(B, bool), Failure> {
        let unsendable = |what: &str| {
            Failure::fatal(SourceError::Unauthorized {
                source_name: source_name.to_owned(),
                message: format!("the {what} cannot be sent in an HTTP header"),
            })
        };
        match &self.auth {
            RequestAuth::None => Ok((request, false)),
            RequestAuth::OAuth2(oauth2) => {
                let token = oauth2.token(source_name).await?;
                let value = sensitive_header(&format!("Bearer {}", token.expose()))
                    .ok_or_else(|| unsendable("OAuth2 access token"))?;
                Ok((request.with_header("authorization", value), false))
            }
            RequestAuth::SigV4(signer) => {
                let mut url = self.base.clone();
                url.set_path(&format!(
                    "{}/{path}",
                    self.base.path().trim_end_matches('/')
                ));
                let body = form_body(params);
                let mut request = request;
                for (name, value) in signer.sign(
                    "POST",
                    &url,
                    &[("content-type", "application/x-www-form-urlencoded")],
                    body.as_bytes(),
                    time::OffsetDateTime::now_utc(),
                ) {
                    let value = sensitive_header(&value).ok_or_else(|| unsendable(name))?;
                    request = request.with_header(name, value);
                }
                Ok((request, true))
            }
        }
    }
}

/// The form body reqwest sends for `params`, byte for byte (both use
/// `form_urlencoded`), which a SigV4 signature covers.
fn form_body(params: &[(&'static str, String)]) -> String {
    let mut serializer = form_urlencoded::Serializer::new(String::new());
    for (name, value) in params {
        serializer.append_pair(name, value);
    }
    serializer.finish()
}

/// The two query builders of prometheus-http-query, as one.
trait QueryBuilder: Sized + Send {
    fn with_header(self, name: &'static str, value: reqwest::header::HeaderValue) -> Self;
    fn send_get(self) -> impl Future<Output = Result<Data, PromError>> + Send;
    fn send_post(self) -> impl Future<Output = Result<Data, PromError>> + Send;
}

impl QueryBuilder for prometheus_http_query::InstantQueryBuilder {
    fn with_header(self, name: &'static str, value: reqwest::header::HeaderValue) -> Self {
        self.header(name, value)
    }
    async fn send_get(self) -> Result<Data, PromError> {
        self.get().await.map(|result| result.into_inner().0)
    }
    async fn send_post(self) -> Result<Data, PromError> {
        self.post().await.map(|result| result.into_inner().0)
    }
}

impl QueryBuilder for prometheus_http_query::RangeQueryBuilder {
    fn with_header(self, name: &'static str, value: reqwest::header::HeaderValue) -> Self {
        self.header(name, value)
    }
    async fn send_get(self) -> Result<Data, PromError> {
        self.get().await.map(|result| result.into_inner().0)
    }
    async fn send_post(self) -> Result<Data, PromError> {
        self.post().await.map(|result| result.into_inner().0)
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
        let now = crate::sources::http::now_unix_seconds();
        self.instant("vector(1)", now).await.map(|_| ())
    }

    async fn fetch(&self, request: &RangeRequest) -> Result<Vec<LabeledSeries>, SourceError> {
        let start = request.start.round() as i64;
        let end = request.end.round() as i64;
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
        let BuiltClient {
            client,
            url,
            base,
            auth,
        } = self.client()?;
        Ok(PrometheusSource {
            client,
            url,
            base,
            auth,
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
