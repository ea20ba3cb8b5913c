//! The user-facing settings of a Prometheus source and their validation.
//!
//! The field doc comments of [`PrometheusConfig`] are the user documentation of the
//! `[source.prometheus]` settings. [`PrometheusConfig::build`] turns the settings into a
//! ready `PrometheusSource`; it checks everything that can be checked without talking
//! to the server (URL syntax, one kind of credentials at most, HTTPS support built in)
//! and never makes a request.

use std::collections::BTreeMap;
use std::time::Duration;

use base64::Engine as _;
use reqwest::header::{AUTHORIZATION, HeaderMap};
use serde::{Deserialize, Serialize};

pub use crate::sources::http::Secret;
use crate::sources::http::oauth2::OAuth2Client;
pub use crate::sources::http::oauth2::OAuth2Config;
pub use crate::sources::http::sigv4::SigV4Config;
use crate::sources::http::sigv4::{ProcessEnvironment, SigV4Signer};
use crate::sources::http::{
    ClientSetupError, default_retries, default_retry_backoff, default_timeout, duration,
    http_client, sensitive_header,
};

/// How to reach one Prometheus server, or anything speaking its HTTP API:
/// VictoriaMetrics, Thanos Query, Cortex, Mimir, Amazon Managed Service for Prometheus.
///
/// ```toml
/// url = "http://prometheus.monitoring:9090"
/// bearer_token = "…"          # or basic_auth, oauth2 or sigv4: one kind of credentials
/// tenant = "team-a"           # X-Scope-OrgID, for Cortex and Mimir
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
    /// OAuth 2.0 client credentials: a token is fetched from `token_url` (and again
    /// before it expires) and sent as `Authorization: Bearer`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oauth2: Option<OAuth2Config>,
    /// AWS Signature Version 4, for Amazon Managed Service for Prometheus (`service`
    /// `aps`): every query is sent as a signed POST. Credentials from `access_key` and
    /// `secret_key`, else the standard AWS environment variables, else the shared
    /// credentials file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sigv4: Option<SigV4Config>,
    /// The tenant of a multi-tenant store, sent as `X-Scope-OrgID` (Cortex, Mimir, a
    /// Thanos or Loki-style gateway). VictoriaMetrics' cluster takes its tenant in the
    /// URL instead: `http://vmselect:8481/select/42/prometheus`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    /// Further headers sent with every request, such as `{ "X-Api-Key" = "…" }`. Their
    /// values are kept out of logs. `Authorization` only when no other credentials are
    /// set.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, Secret>,
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
    /// More than one kind of credentials is set (`bearer_token`, `basic_auth`,
    /// `oauth2`, `sigv4`, an `Authorization` header).
    #[error("prometheus source {url:?} sets {keys}; keep one kind of credentials")]
    ConflictingCredentials {
        /// The URL as configured.
        url: String,
        /// The settings that conflict, e.g. `bearer_token and basic_auth`.
        keys: String,
    },
    /// A credential that cannot be sent in an HTTP header (a control character or
    /// a line break, usually from a file read with its trailing newline).
    #[error(
        "prometheus source {url:?}: the {which} cannot be sent in an HTTP header (control character or line break?)"
    )]
    InvalidCredentials {
        /// The URL as configured.
        url: String,
        /// `bearer_token`, `basic_auth`, `tenant` or `headers.NAME`.
        which: String,
    },
    /// `oauth2` or `sigv4` settings that cannot work.
    #[error("prometheus source {url:?}: {message}")]
    Auth {
        /// The URL as configured.
        url: String,
        /// What is wrong.
        message: String,
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
            oauth2: None,
            sigv4: None,
            tenant: None,
            headers: BTreeMap::new(),
            ca_file: None,
            timeout: default_timeout(),
            retries: default_retries(),
            retry_backoff: default_retry_backoff(),
        }
    }

    /// Checks the settings and builds the HTTP client, with the URL it is for and the
    /// credentials that are added per request (the source wraps them,
    /// `PrometheusConfig::build`).
    pub(super) fn client(&self) -> Result<BuiltClient, PrometheusConfigError> {
        self.check_one_kind_of_credentials()?;
        let headers = self.static_headers()?;
        let (client_for_queries, parsed) =
            http_client(&self.url, self.ca_file.as_deref(), self.timeout, headers).map_err(
                |error| match error {
                    ClientSetupError::InvalidUrl(message) => PrometheusConfigError::InvalidUrl {
                        url: self.url.clone(),
                        message,
                    },
                    ClientSetupError::TlsNotBuiltIn => PrometheusConfigError::TlsNotBuiltIn {
                        url: self.url.clone(),
                    },
                    ClientSetupError::CaFile(message) => PrometheusConfigError::CaFile {
                        url: self.url.clone(),
                        message,
                    },
                    ClientSetupError::Client(message) => PrometheusConfigError::Client {
                        url: self.url.clone(),
                        message,
                    },
                },
            )?;
        let auth_error = |message: String| PrometheusConfigError::Auth {
            url: self.url.clone(),
            message,
        };
        let auth = if let Some(oauth2) = &self.oauth2 {
            // The token endpoint gets its own client: the source's headers (tenant,
            // custom ones) are not the identity provider's business.
            let token_client = http_client(
                &oauth2.token_url,
                self.ca_file.as_deref(),
                self.timeout,
                HeaderMap::new(),
            )
            .map_err(|error| auth_error(format!("oauth2.token_url: {error:?}")))?
            .0;
            RequestAuth::OAuth2(std::sync::Arc::new(
                oauth2.client(token_client).map_err(auth_error)?,
            ))
        } else if let Some(sigv4) = &self.sigv4 {
            RequestAuth::SigV4(std::sync::Arc::new(
                sigv4
                    .signer("aps", &ProcessEnvironment)
                    .map_err(auth_error)?,
            ))
        } else {
            RequestAuth::None
        };
        let url = parsed.as_str().trim_end_matches('/').to_string();
        let client =
            prometheus_http_query::Client::from(client_for_queries, &url).map_err(|error| {
                PrometheusConfigError::InvalidUrl {
                    url: self.url.clone(),
                    message: error.to_string(),
                }
            })?;
        Ok(BuiltClient {
            client,
            url,
            base: parsed,
            auth,
        })
    }

    /// At most one of `bearer_token`, `basic_auth`, `oauth2`, `sigv4` and an
    /// `Authorization` header.
    fn check_one_kind_of_credentials(&self) -> Result<(), PrometheusConfigError> {
        let mut kinds = Vec::new();
        if self.bearer_token.is_some() {
            kinds.push("bearer_token");
        }
        if self.basic_auth.is_some() {
            kinds.push("basic_auth");
        }
        if self.oauth2.is_some() {
            kinds.push("oauth2");
        }
        if self.sigv4.is_some() {
            kinds.push("sigv4");
        }
        if self
            .headers
            .keys()
            .any(|name| name.eq_ignore_ascii_case("authorization"))
        {
            kinds.push("an Authorization header");
        }
        if kinds.len() > 1 {
            return Err(PrometheusConfigError::ConflictingCredentials {
                url: self.url.clone(),
                keys: kinds.join(" and "),
            });
        }
        Ok(())
    }

    /// The headers sent with every request: static credentials, the tenant and the
    /// custom headers, each marked sensitive so that the HTTP library never shows it.
    fn static_headers(&self) -> Result<HeaderMap, PrometheusConfigError> {
        let invalid = |which: String| PrometheusConfigError::InvalidCredentials {
            url: self.url.clone(),
            which,
        };
        let mut headers = HeaderMap::new();
        let authorization = match (&self.bearer_token, &self.basic_auth) {
            (Some(token), _) => Some((format!("Bearer {}", token.expose()), "bearer_token")),
            (None, Some(basic)) => {
                let pair = format!("{}:{}", basic.username, basic.password.expose());
                let encoded = base64::engine::general_purpose::STANDARD.encode(pair);
                Some((format!("Basic {encoded}"), "basic_auth"))
            }
            (None, None) => None,
        };
        if let Some((value, which)) = authorization {
            let header = sensitive_header(&value).ok_or_else(|| invalid(which.to_owned()))?;
            headers.insert(AUTHORIZATION, header);
        }
        if let Some(tenant) = &self.tenant {
            let header = sensitive_header(tenant)
                .filter(|_| !tenant.is_empty())
                .ok_or_else(|| invalid("tenant".to_owned()))?;
            headers.insert("x-scope-orgid", header);
        }
        for (name, value) in &self.headers {
            let header_name = reqwest::header::HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| invalid(format!("header name {name:?}")))?;
            let header = sensitive_header(value.expose())
                .ok_or_else(|| invalid(format!("headers.{name}")))?;
            headers.insert(header_name, header);
        }
        Ok(headers)
    }
}

/// What `PrometheusConfig::client` makes.
pub(super) struct BuiltClient {
    pub(super) client: prometheus_http_query::Client,
    /// The base URL, without a trailing slash.
    pub(super) url: String,
    /// The same, parsed (request URLs for signing are made from it).
    pub(super) base: reqwest::Url,
    pub(super) auth: RequestAuth,
}

/// Credentials added to each request rather than once to the client.
#[derive(Debug, Clone)]
pub(super) enum RequestAuth {
    /// Static headers only.
    None,
    /// A bearer token from an OAuth2 provider.
    OAuth2(std::sync::Arc<OAuth2Client>),
    /// A signature over each request.
    SigV4(std::sync::Arc<SigV4Signer>),
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
            Err(PrometheusConfigError::InvalidCredentials { which, .. }) if which == "bearer_token"
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
