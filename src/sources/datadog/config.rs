//! The user-facing settings of a Datadog source. The field doc comments are the user
//! documentation of `kind = "datadog"` sources.

use std::path::PathBuf;
use std::time::Duration;

use reqwest::header::HeaderMap;
use serde::{Deserialize, Serialize};

use super::DatadogSource;
use crate::sources::http::sigv4::{Environment, ProcessEnvironment};
use crate::sources::http::{
    RepeatedWarnings, default_retries, default_retry_backoff, default_timeout, duration,
    http_client, sensitive_header, setup_message,
};

/// How to reach Datadog's metrics query API (`/api/v1/query`). The keys are read from
/// the environment, never from a settings file.
///
/// ```toml
/// site = "datadoghq.eu"        # default datadoghq.com
/// api_key_env = "DD_API_KEY"   # the defaults
/// application_key_env = "DD_APP_KEY"
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatadogConfig {
    /// The Datadog site of the organisation: `datadoghq.com` (US1, the default),
    /// `us3.datadoghq.com`, `us5.datadoghq.com`, `datadoghq.eu`, `ap1.datadoghq.com`,
    /// `ddog-gov.com`. The API is at `https://api.SITE`.
    #[serde(default = "default_site")]
    pub site: String,
    /// The API's base URL instead of `https://api.SITE` (a proxy).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// The environment variable holding the API key (`DD-API-KEY`).
    #[serde(default = "default_api_key_env")]
    pub api_key_env: String,
    /// The environment variable holding the application key (`DD-APPLICATION-KEY`),
    /// which needs the `timeseries_query` permission.
    #[serde(default = "default_application_key_env")]
    pub application_key_env: String,
    /// A PEM file of CA certificates to trust besides the platform's (a proxy).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
    /// How long one request may take. Default: 10 seconds.
    #[serde(default = "default_timeout", with = "duration")]
    pub timeout: Duration,
    /// Retries after a connection failure, a timeout, a 5xx or a rate limit (429, after
    /// the wait Datadog asks for in `X-RateLimit-Reset`, at most 30 s). Default: 2.
    #[serde(default = "default_retries")]
    pub retries: u32,
    /// The pause before the first retry, doubling after. Default: 200 ms.
    #[serde(default = "default_retry_backoff", with = "duration")]
    pub retry_backoff: Duration,
}

fn default_site() -> String {
    "datadoghq.com".into()
}

fn default_api_key_env() -> String {
    "DD_API_KEY".into()
}

fn default_application_key_env() -> String {
    "DD_APP_KEY".into()
}

/// Settings that cannot work, found before any request.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("datadog source {site:?}: {message}")]
pub struct DatadogConfigError {
    /// The site (or URL) as configured.
    pub site: String,
    /// What is wrong.
    pub message: String,
}

impl DatadogConfig {
    /// Settings with every default (site `datadoghq.com`, keys from `DD_API_KEY` and
    /// `DD_APP_KEY`).
    pub fn new() -> Self {
        DatadogConfig {
            site: default_site(),
            url: None,
            api_key_env: default_api_key_env(),
            application_key_env: default_application_key_env(),
            ca_file: None,
            timeout: default_timeout(),
            retries: default_retries(),
            retry_backoff: default_retry_backoff(),
        }
    }

    /// The API's base URL.
    pub fn base_url(&self) -> String {
        self.url
            .clone()
            .unwrap_or_else(|| format!("https://api.{}", self.site))
    }

    /// Reads the keys from the environment and builds the source (no request yet).
    pub fn build(&self) -> Result<DatadogSource, DatadogConfigError> {
        self.build_with(|name| ProcessEnvironment.var(name))
    }

    /// Builds the source with the keys `variable` gives for the configured
    /// environment variable names (the process environment in [`Self::build`]).
    pub fn build_with(
        &self,
        variable: impl Fn(&str) -> Option<String>,
    ) -> Result<DatadogSource, DatadogConfigError> {
        let error = |message: String| DatadogConfigError {
            site: self.url.clone().unwrap_or_else(|| self.site.clone()),
            message,
        };
        let mut headers = HeaderMap::new();
        for (header, variable_name) in [
            ("dd-api-key", &self.api_key_env),
            ("dd-application-key", &self.application_key_env),
        ] {
            let key = variable_value(&variable, variable_name).ok_or_else(|| {
                error(format!(
                    "the environment variable {variable_name} (the {header} key) is not set"
                ))
            })?;
            let value = sensitive_header(key.trim()).ok_or_else(|| {
                error(format!("{variable_name} cannot be sent in an HTTP header"))
            })?;
            headers.insert(header, value);
        }
        let (client, base) = http_client(
            &self.base_url(),
            self.ca_file.as_deref(),
            self.timeout,
            headers,
        )
        .map_err(|setup| error(setup_message(setup)))?;
        Ok(DatadogSource {
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

fn variable_value(variable: &impl Fn(&str) -> Option<String>, name: &str) -> Option<String> {
    variable(name).filter(|value| !value.trim().is_empty())
}

impl Default for DatadogConfig {
    fn default() -> Self {
        Self::new()
    }
}
