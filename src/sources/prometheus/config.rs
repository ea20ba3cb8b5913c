//! The user-facing settings of a Prometheus source and their validation.
//!
//! The field doc comments of [`PrometheusConfig`] are the user documentation of the
//! `[source.prometheus]` settings. [`PrometheusConfig::build`] turns the settings into a
//! ready `PrometheusSource`; it checks everything that can be checked without talking
//! to the server (URL syntax, one kind of credentials at most, HTTPS support built in)
//! and never makes a request.

use std::time::Duration;

use base64::Engine as _;
use reqwest::header::{AUTHORIZATION, HeaderMap, HeaderValue};
use serde::{Deserialize, Serialize};

pub use crate::sources::http::Secret;
use crate::sources::http::duration;

/// How to reach one Prometheus server (or anything speaking its HTTP API, such as
/// Thanos Query or VictoriaMetrics).
///
/// ```toml
/// url = "http://prometheus.monitoring:9090"
/// bearer_token = "…"          # or: basic_auth = { username = "canary", password = "…" }
/// timeout = "10s"
/// retries = 2
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrometheusConfig {
    /// Base URL of the Prometheus HTTP API, without `/api/v1`: for example
    /// `http://prometheus:9090`, or `http://gateway/prometheus` behind a path prefix.
    /// `https://` URLs are checked against the platform's CA roots (`SSL_CERT_FILE` /
    /// `SSL_CERT_DIR` override where they are read from) plus `ca_file`; a build
    /// without the default `rustls` feature refuses them at start-up.
    pub url: String,
    /// A PEM file of CA certificates to trust, besides the platform's roots, for an
    /// `https://` Prometheus whose certificate a private CA signed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<std::path::PathBuf>,
    /// A bearer token, sent as `Authorization: Bearer TOKEN` with every request.
    /// At most one of `bearer_token` and `basic_auth` may be set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bearer_token: Option<Secret>,
    /// A user name and password for HTTP basic authentication (Prometheus'
    /// `--web.config.file` with `basic_auth_users`, or a proxy in front of it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub basic_auth: Option<BasicAuth>,
    /// How long one request may take, connection included, before it counts as a
    /// failed attempt: a number of seconds (`2.5`) or a string with a unit (`"500ms"`,
    /// `"10s"`, `"1m"`). Default: 10 seconds.
    #[serde(default = "default_timeout", with = "duration")]
    pub timeout: Duration,
    /// How many times a request is retried after a connection failure, a timeout or a
    /// 5xx answer, before the source is reported unreachable for this analysis
    /// interval. A rejected query or refused credentials is never retried. Default: 2.
    #[serde(default = "default_retries")]
    pub retries: u32,
    /// The pause before the first retry; it doubles before each further retry
    /// (200 ms, 400 ms, 800 ms, ...). Same formats as `timeout`. Default: 200 ms.
    #[serde(default = "default_retry_backoff", with = "duration")]
    pub retry_backoff: Duration,
}

/// HTTP basic-authentication credentials.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BasicAuth {
    /// The user name.
    pub username: String,
    /// The password.
    pub password: Secret,
}

fn default_timeout() -> Duration {
    Duration::from_secs(10)
}

fn default_retries() -> u32 {
    2
}

fn default_retry_backoff() -> Duration {
    Duration::from_millis(200)
}

/// Settings that cannot work, found before any request is made.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PrometheusConfigError {
    /// The URL does not parse or is not HTTP(S).
    #[error("prometheus url {url:?} is not usable: {message}")]
    InvalidUrl {
        /// The URL as configured.
        url: String,
        /// Why.
        message: String,
    },
    /// An `https://` URL in a build without TLS.
    #[error(
        "prometheus url {url:?} uses HTTPS, but this canary was built without TLS (`--no-default-features`); rebuild it with the default `rustls` feature"
    )]
    TlsNotBuiltIn {
        /// The URL as configured.
        url: String,
    },
    /// `ca_file` cannot be read or holds no PEM certificate (or the build has no TLS).
    #[error("prometheus source {url:?}: ca_file {message}")]
    CaFile {
        /// The URL as configured.
        url: String,
        /// What is wrong with the file.
        message: String,
    },
    /// Both `bearer_token` and `basic_auth` are set.
    #[error("prometheus source {url:?} sets both bearer_token and basic_auth; keep one")]
    ConflictingCredentials {
        /// The URL as configured.
        url: String,
    },
    /// A credential that cannot be sent in an HTTP header (a control character or
    /// a line break, usually from a file read with its trailing newline).
    #[error(
        "prometheus source {url:?}: the {which} cannot be sent in an HTTP header (control character or line break?)"
    )]
    InvalidCredentials {
        /// The URL as configured.
        url: String,
        /// `bearer_token` or `basic_auth`.
        which: &'static str,
    },
    /// The HTTP client could not be set up.
    #[error("prometheus source {url:?}: cannot set up the HTTP client: {message}")]
    Client {
        /// The URL as configured.
        url: String,
        /// What the HTTP library said.
        message: String,
    },
}

impl PrometheusConfig {
    /// Settings with the defaults for everything but the URL.
    pub fn new(url: impl Into<String>) -> Self {
        PrometheusConfig {
            url: url.into(),
            bearer_token: None,
            basic_auth: None,
            ca_file: None,
            timeout: default_timeout(),
            retries: default_retries(),
            retry_backoff: default_retry_backoff(),
        }
    }

    /// Checks the settings and builds the HTTP client, with the URL it is for (the
    /// source wraps it, `PrometheusConfig::build`).
    pub(super) fn client(
        &self,
    ) -> Result<(prometheus_http_query::Client, String), PrometheusConfigError> {
        let url = self.url.trim_end_matches('/').to_string();
        let parsed =
            reqwest::Url::parse(&url).map_err(|error| PrometheusConfigError::InvalidUrl {
                url: self.url.clone(),
                message: error.to_string(),
            })?;
        match parsed.scheme() {
            "http" => {}
            "https" if crate::tls::HTTPS_BUILT_IN => {}
            "https" => {
                return Err(PrometheusConfigError::TlsNotBuiltIn {
                    url: self.url.clone(),
                });
            }
            other => {
                return Err(PrometheusConfigError::InvalidUrl {
                    url: self.url.clone(),
                    message: format!("scheme {other:?} is not http or https"),
                });
            }
        }

        let mut headers = HeaderMap::new();
        if let Some(authorization) = self.authorization_header()? {
            headers.insert(AUTHORIZATION, authorization);
        }
        #[cfg_attr(not(feature = "rustls"), allow(unused_mut))]
        let mut builder = crate::tls::client_builder(parsed.scheme() == "https");
        if let Some(ca_file) = &self.ca_file {
            let certificates = crate::tls::ca_certificates(ca_file).map_err(|message| {
                PrometheusConfigError::CaFile {
                    url: self.url.clone(),
                    message,
                }
            })?;
            #[cfg(feature = "rustls")]
            {
                builder = builder.tls_certs_merge(certificates);
            }
            #[cfg(not(feature = "rustls"))]
            let _ = certificates;
        }
        let http_client = builder
            .default_headers(headers)
            .timeout(self.timeout)
            .build()
            .map_err(|error| PrometheusConfigError::Client {
                url: self.url.clone(),
                message: error.to_string(),
            })?;
        let client = prometheus_http_query::Client::from(http_client, &url).map_err(|error| {
            PrometheusConfigError::InvalidUrl {
                url: self.url.clone(),
                message: error.to_string(),
            }
        })?;
        Ok((client, url))
    }

    /// The `Authorization` header value, marked sensitive so that it never shows in
    /// debug output of the HTTP library.
    fn authorization_header(&self) -> Result<Option<HeaderValue>, PrometheusConfigError> {
        let (value, which) = match (&self.bearer_token, &self.basic_auth) {
            (Some(_), Some(_)) => {
                return Err(PrometheusConfigError::ConflictingCredentials {
                    url: self.url.clone(),
                });
            }
            (None, None) => return Ok(None),
            (Some(token), None) => (format!("Bearer {}", token.expose()), "bearer_token"),
            (None, Some(basic)) => {
                let pair = format!("{}:{}", basic.username, basic.password.expose());
                let encoded = base64::engine::general_purpose::STANDARD.encode(pair);
                (format!("Basic {encoded}"), "basic_auth")
            }
        };
        let mut header = HeaderValue::from_str(&value).map_err(|_| {
            PrometheusConfigError::InvalidCredentials {
                url: self.url.clone(),
                which,
            }
        })?;
        header.set_sensitive(true);
        Ok(Some(header))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_config_with_only_a_url_gets_the_documented_defaults() {
        let config: PrometheusConfig = toml::from_str(r#"url = "http://127.0.0.1:9090""#).unwrap();
        assert_eq!(config, PrometheusConfig::new("http://127.0.0.1:9090"));
        assert_eq!(config.timeout, Duration::from_secs(10));
        assert_eq!(config.retries, 2);
        assert_eq!(config.retry_backoff, Duration::from_millis(200));
    }

    #[test]
    fn durations_are_read_as_seconds_or_with_a_unit() {
        let config: PrometheusConfig = toml::from_str(
            "url = \"http://p:9090\"\ntimeout = \"500ms\"\nretry_backoff = 1.5\nretries = 0",
        )
        .unwrap();
        assert_eq!(config.timeout, Duration::from_millis(500));
        assert_eq!(config.retry_backoff, Duration::from_millis(1500));
        assert_eq!(config.retries, 0);
        assert_eq!(duration::parse("1m"), Ok(60.0));
        assert!(duration::parse("soon").unwrap_err().contains("\"soon\""));
    }

    #[test]
    fn basic_auth_is_read_from_a_table_and_hidden_from_debug_output() {
        let config: PrometheusConfig = toml::from_str(
            "url = \"http://p:9090\"\nbasic_auth = { username = \"canary\", password = \"hunter2\" }",
        )
        .unwrap();
        let basic = config.basic_auth.clone().unwrap();
        assert_eq!(basic.username, "canary");
        assert_eq!(basic.password.expose(), "hunter2");
        assert!(!format!("{config:?}").contains("hunter2"));
    }

    #[test]
    fn unknown_fields_are_refused() {
        let error =
            toml::from_str::<PrometheusConfig>("url = \"http://p\"\ntimout = 3").unwrap_err();
        assert!(error.to_string().contains("timout"), "{error}");
    }

    #[test]
    fn both_kinds_of_credentials_at_once_are_refused() {
        let mut config = PrometheusConfig::new("http://p:9090");
        config.bearer_token = Some("token".into());
        config.basic_auth = Some(BasicAuth {
            username: "u".into(),
            password: "p".into(),
        });
        assert!(matches!(
            config.build(),
            Err(PrometheusConfigError::ConflictingCredentials { .. })
        ));
    }

    #[test]
    fn a_token_with_a_trailing_newline_is_refused_at_build_time() {
        let mut config = PrometheusConfig::new("http://p:9090");
        config.bearer_token = Some("token\n".into());
        assert!(matches!(
            config.build(),
            Err(PrometheusConfigError::InvalidCredentials {
                which: "bearer_token",
                ..
            })
        ));
    }

    #[test]
    fn a_url_that_is_not_http_is_refused() {
        assert!(matches!(
            PrometheusConfig::new("not a url").build(),
            Err(PrometheusConfigError::InvalidUrl { .. })
        ));
        assert!(matches!(
            PrometheusConfig::new("ftp://p/").build(),
            Err(PrometheusConfigError::InvalidUrl { .. })
        ));
    }

    #[cfg(not(feature = "rustls"))]
    #[test]
    fn an_https_url_without_the_rustls_feature_says_how_to_get_it() {
        let error = PrometheusConfig::new("https://p:9090").build().unwrap_err();
        assert!(
            error.to_string().contains("default `rustls` feature"),
            "{error}"
        );
    }

    #[test]
    fn a_ca_file_that_cannot_be_used_is_refused_naming_ca_file() {
        let mut config = PrometheusConfig::new("http://p:9090");
        config.ca_file = Some("/nonexistent/ca.pem".into());
        let error = config.build().unwrap_err().to_string();
        assert!(error.contains("ca_file"), "{error}");
        assert!(error.contains("/nonexistent/ca.pem"), "{error}");
    }
}
