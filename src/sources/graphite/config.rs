//! The user-facing settings of a Graphite source. The field doc comments are the user
//! documentation of `kind = "graphite"` sources.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::GraphiteSource;
use crate::sources::http::{
    RepeatedWarnings, Secret, authorization_headers, basic_or_token, default_retries,
    default_retry_backoff, default_timeout, duration, http_client, setup_message,
};

/// How to reach a Graphite render API (graphite-web, carbonapi, or a proxy in front).
///
/// ```toml
/// url = "http://graphite:8080"
/// username = "canary"         # with password, for a server behind basic auth
/// password = "…"
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GraphiteConfig {
    /// Base URL of the server, without `/render`.
    pub url: String,
    /// A user name, sent with `password` as HTTP basic authentication.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// The password that goes with `username`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<Secret>,
    /// A bearer token (a Grafana Cloud or proxy API key), sent as
    /// `Authorization: Bearer …`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bearer_token: Option<Secret>,
    /// A PEM file of CA certificates to trust for an `https://` server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
    /// How long one request may take. Default: 10 seconds.
    #[serde(default = "default_timeout", with = "duration")]
    pub timeout: Duration,
    /// Retries after a connection failure, a timeout, a 429 or a 5xx. Default: 2.
    #[serde(default = "default_retries")]
    pub retries: u32,
    /// The pause before the first retry, doubling after. Default: 200 ms.
    #[serde(default = "default_retry_backoff", with = "duration")]
    pub retry_backoff: Duration,
}

/// Settings that cannot work, found before any request.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("graphite source {url:?}: {message}")]
pub struct GraphiteConfigError {
    /// The URL as configured.
    pub url: String,
    /// What is wrong.
    pub message: String,
}

impl GraphiteConfig {
    /// Settings with the defaults for everything but the URL.
    pub fn new(url: impl Into<String>) -> Self {
        GraphiteConfig {
            url: url.into(),
            username: None,
            password: None,
            bearer_token: None,
            ca_file: None,
            timeout: default_timeout(),
            retries: default_retries(),
            retry_backoff: default_retry_backoff(),
        }
    }

    /// Checks the settings and builds the source (no request yet).
    pub fn build(&self) -> Result<GraphiteSource, GraphiteConfigError> {
        let error = |message: String| GraphiteConfigError {
            url: self.url.clone(),
            message,
        };
        let authorization = basic_or_token(
            self.username.as_deref(),
            self.password.as_ref(),
            self.bearer_token
                .as_ref()
                .map(|token| format!("Bearer {}", token.expose())),
            "bearer_token",
        )
        .map_err(error)?;
        let headers = authorization_headers(authorization).map_err(error)?;
        let (client, base) = http_client(&self.url, self.ca_file.as_deref(), self.timeout, headers)
            .map_err(|setup| error(setup_message(setup)))?;
        Ok(GraphiteSource {
            client,
            base,
            timeout: self.timeout,
            retries: self.retries,
            retry_backoff: self.retry_backoff,
            warnings: std::sync::Arc::new(RepeatedWarnings::new(
                crate::sources::prometheus::REPEATED_WARNING_INTERVAL,
            )),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_that_cannot_work_are_refused_by_name() {
        let mut config = GraphiteConfig::new("http://127.0.0.1:8080");
        assert!(config.build().is_ok());
        config.username = Some("canary".into());
        assert!(config.build().unwrap_err().message.contains("go together"));
        config.password = Some("p".into());
        config.bearer_token = Some("t".into());
        assert!(config.build().unwrap_err().message.contains("keep one"));
    }
}
