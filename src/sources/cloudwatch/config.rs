//! The user-facing settings of an Amazon CloudWatch source. The field doc comments are
//! the user documentation of `kind = "cloudwatch"` sources.

use std::path::PathBuf;
use std::time::Duration;

use reqwest::header::HeaderMap;
use serde::{Deserialize, Serialize};

use super::CloudWatchSource;
use crate::sources::http::sigv4::{Environment, ProcessEnvironment, SigV4Config};
use crate::sources::http::{
    RepeatedWarnings, Secret, default_retries, default_retry_backoff, default_timeout, duration,
    http_client, setup_message,
};

/// How to reach CloudWatch's `GetMetricData` (the JSON protocol, signed with AWS
/// Signature Version 4 for the service `monitoring`).
///
/// ```toml
/// region = "eu-west-1"          # default: AWS_REGION / AWS_DEFAULT_REGION
/// # access_key / secret_key, or the AWS environment and shared credentials file
/// ```
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CloudWatchConfig {
    /// The AWS region. Default: `AWS_REGION`, then `AWS_DEFAULT_REGION`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// The endpoint instead of `https://monitoring.REGION.amazonaws.com` (a VPC
    /// endpoint, a CloudWatch-compatible server). Default: `AWS_ENDPOINT_URL_CLOUDWATCH`,
    /// then `AWS_ENDPOINT_URL`, as the AWS SDKs read them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// An access key ID, with `secret_key`; otherwise `AWS_ACCESS_KEY_ID` and
    /// `AWS_SECRET_ACCESS_KEY` (and `AWS_SESSION_TOKEN`), then the shared credentials
    /// file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_key: Option<String>,
    /// The secret access key that goes with `access_key`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_key: Option<Secret>,
    /// The profile of the shared credentials file. Default: `AWS_PROFILE`, then
    /// `default`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile: Option<String>,
    /// A PEM file of CA certificates to trust besides the platform's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
    /// How long one request may take. Default: 10 seconds.
    #[serde(default = "default_timeout", with = "duration")]
    pub timeout: Duration,
    /// Retries after a connection failure, a timeout, a 5xx or throttling
    /// (`Throttling`, `ThrottlingException`). Default: 2.
    #[serde(default = "default_retries")]
    pub retries: u32,
    /// The pause before the first retry, doubling after. Default: 200 ms.
    #[serde(default = "default_retry_backoff", with = "duration")]
    pub retry_backoff: Duration,
}

/// Settings that cannot work, found before any request.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("cloudwatch source: {message}")]
pub struct CloudWatchConfigError {
    /// What is wrong.
    pub message: String,
}

impl CloudWatchConfig {
    /// Settings with every default: region, endpoint and credentials from the AWS
    /// environment.
    pub fn new() -> Self {
        CloudWatchConfig {
            timeout: default_timeout(),
            retries: default_retries(),
            retry_backoff: default_retry_backoff(),
            ..CloudWatchConfig::default()
        }
    }

    /// Resolves region, endpoint and credentials from the settings and the process
    /// environment and builds the source (no request yet).
    pub fn build(&self) -> Result<CloudWatchSource, CloudWatchConfigError> {
        self.build_with(|name| ProcessEnvironment.var(name))
    }

    /// [`Self::build`] with the environment variables `variable` gives.
    pub fn build_with(
        &self,
        variable: impl Fn(&str) -> Option<String>,
    ) -> Result<CloudWatchSource, CloudWatchConfigError> {
        let error = |message: String| CloudWatchConfigError { message };
        let environment = Lookup(&variable);
        let signer = SigV4Config {
            region: self.region.clone(),
            access_key: self.access_key.clone(),
            secret_key: self.secret_key.clone(),
            profile: self.profile.clone(),
            service: None,
        }
        .signer("monitoring", &environment)
        .map_err(|message| error(message.replace("sigv4.", "")))?;
        let url = self
            .url
            .clone()
            .or_else(|| environment.var("AWS_ENDPOINT_URL_CLOUDWATCH"))
            .or_else(|| environment.var("AWS_ENDPOINT_URL"))
            .unwrap_or_else(|| format!("https://monitoring.{}.amazonaws.com", signer.region()));
        let (client, base) = http_client(
            &url,
            self.ca_file.as_deref(),
            self.timeout,
            HeaderMap::new(),
        )
        .map_err(|setup| error(format!("{url}: {}", setup_message(setup))))?;
        Ok(CloudWatchSource {
            client,
            base,
            signer,
            timeout: self.timeout,
            retries: self.retries,
            retry_backoff: self.retry_backoff,
            warnings: std::sync::Arc::new(RepeatedWarnings::new(
                crate::sources::prometheus::REPEATED_WARNING_INTERVAL,
            )),
        })
    }
}

struct Lookup<'a, F: Fn(&str) -> Option<String>>(&'a F);

impl<F: Fn(&str) -> Option<String>> Environment for Lookup<'_, F> {
    fn var(&self, name: &str) -> Option<String> {
        (self.0)(name).filter(|value| !value.is_empty())
    }
}
