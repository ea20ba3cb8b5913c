//! The user-facing settings of an InfluxDB source. The field doc comments are the
//! user documentation of `kind = "influxdb"` sources.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::InfluxDbSource;
use crate::sources::http::{
    RepeatedWarnings, Secret, authorization_headers, basic_or_token, default_retries,
    default_retry_backoff, default_timeout, duration, http_client, setup_message,
};

/// How to reach an InfluxDB server's InfluxQL endpoint (`/query`): InfluxDB 1.x, or
/// 2.x and 3.x through their 1.x-compatible API (a database/retention-policy mapping
/// and a token).
///
/// ```toml
/// url = "http://influxdb:8086"
/// database = "telegraf"
/// username = "canary"         # with password; or token = "…" for 2.x/3.x
/// password = "…"
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InfluxDbConfig {
    /// Base URL of the server, e.g. `http://influxdb:8086`.
    pub url: String,
    /// The database the queries run in (`db`).
    pub database: String,
    /// The retention policy (`rp`); default: the database's default policy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retention_policy: Option<String>,
    /// A user name, sent with `password` as HTTP basic authentication (1.x with
    /// `auth-enabled`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// The password that goes with `username`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<Secret>,
    /// An API token, sent as `Authorization: Token …` (InfluxDB 2.x and 3.x).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<Secret>,
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
#[error("influxdb source {url:?}: {message}")]
pub struct InfluxDbConfigError {
    /// The URL as configured.
    pub url: String,
    /// What is wrong.
    pub message: String,
}

impl InfluxDbConfig {
    /// Settings with the defaults for everything but the URL and the database.
    pub fn new(url: impl Into<String>, database: impl Into<String>) -> Self {
        InfluxDbConfig {
            url: url.into(),
            database: database.into(),
            retention_policy: None,
            username: None,
            password: None,
            token: None,
            ca_file: None,
            timeout: default_timeout(),
            retries: default_retries(),
            retry_backoff: default_retry_backoff(),
        }
    }

    /// Checks the settings and builds the source (no request yet).
    pub fn build(&self) -> Result<InfluxDbSource, InfluxDbConfigError> {
        let error = |message: String| InfluxDbConfigError {
            url: self.url.clone(),
            message,
        };
        if self.database.trim().is_empty() {
            return Err(error("database is empty".into()));
        }
        let authorization = basic_or_token(
            self.username.as_deref(),
            self.password.as_ref(),
            self.token
                .as_ref()
                .map(|token| format!("Token {}", token.expose())),
            "token",
        )
        .map_err(error)?;
        let headers = authorization_headers(authorization).map_err(error)?;
        let (client, base) = http_client(&self.url, self.ca_file.as_deref(), self.timeout, headers)
            .map_err(|setup| error(setup_message(setup)))?;
        Ok(InfluxDbSource {
            client,
            base,
            database: self.database.clone(),
            retention_policy: self.retention_policy.clone(),
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
    fn a_config_with_url_and_database_gets_the_defaults() {
        let config: InfluxDbConfig =
            toml::from_str("url = \"http://127.0.0.1:8086\"\ndatabase = \"metrics\"").unwrap();
        assert_eq!(
            config,
            InfluxDbConfig::new("http://127.0.0.1:8086", "metrics")
        );
        assert!(config.build().is_ok());
    }

    #[test]
    fn credentials_that_cannot_work_are_refused_by_name() {
        let mut config = InfluxDbConfig::new("http://127.0.0.1:8086", "metrics");
        config.username = Some("canary".into());
        assert!(config.build().unwrap_err().message.contains("go together"));
        config.password = Some("p".into());
        config.token = Some("t".into());
        assert!(config.build().unwrap_err().message.contains("keep one"));
        let empty = InfluxDbConfig::new("http://127.0.0.1:8086", " ");
        assert!(empty.build().unwrap_err().message.contains("database"));
        let bad = InfluxDbConfig::new("ftp://x", "m");
        assert!(bad.build().unwrap_err().message.contains("url"));
    }

    #[test]
    fn secrets_stay_out_of_debug_output() {
        let mut config = InfluxDbConfig::new("http://127.0.0.1:8086", "metrics");
        config.token = Some("very-secret-token".into());
        assert!(!format!("{config:?}").contains("very-secret"));
        assert!(!format!("{:?}", config.build().unwrap()).contains("very-secret"));
    }
}
