//! OAuth 2.0 client credentials (RFC 6749 §4.4) for sources behind an identity
//! provider: Grafana Cloud, Mimir or Thanos behind an OAuth2 proxy, Azure Monitor's
//! managed Prometheus.
//!
//! The token is fetched on first use, kept until 30 seconds before the `expires_in`
//! the provider gave (or until the source refuses it), and fetched again; concurrent
//! requests wait for one fetch. The client secret goes in the `Authorization: Basic`
//! header (RFC 6749 §2.3.1, form-encoded first) and is never logged or put in an error.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::Mutex;
use tokio::time::Instant;

use super::{Failure, Secret, root_cause};
use crate::sources::SourceError;

/// How long before its stated expiry a token is replaced.
const EXPIRY_MARGIN: Duration = Duration::from_secs(30);

/// OAuth 2.0 client-credentials settings (`oauth2 = { ... }`), as in Prometheus'
/// own `oauth2` block.
///
/// ```toml
/// oauth2 = { token_url = "https://login.example.com/oauth2/token", client_id = "canary", client_secret_file = "/run/secrets/canary", scopes = ["metrics.read"] }
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OAuth2Config {
    /// The provider's token endpoint.
    pub token_url: String,
    /// The client ID.
    pub client_id: String,
    /// The client secret. Give this or `client_secret_file`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_secret: Option<Secret>,
    /// A file holding the client secret (a trailing newline is ignored), read when the
    /// source is built.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_secret_file: Option<PathBuf>,
    /// Scopes to ask for, sent space-separated as `scope`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub scopes: Vec<String>,
    /// Further form parameters of the token request (`audience`, `resource`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub endpoint_params: BTreeMap<String, String>,
}

impl OAuth2Config {
    /// Checks the settings, reads the secret file, and makes the token client (no
    /// request yet).
    pub(crate) fn client(&self, http: reqwest::Client) -> Result<OAuth2Client, String> {
        let token_url = reqwest::Url::parse(&self.token_url)
            .map_err(|error| format!("oauth2.token_url {:?}: {error}", self.token_url))?;
        if !matches!(token_url.scheme(), "http" | "https") {
            return Err(format!(
                "oauth2.token_url {:?} is not http or https",
                self.token_url
            ));
        }
        if self.client_id.is_empty() {
            return Err("oauth2.client_id is empty".into());
        }
        let secret = match (&self.client_secret, &self.client_secret_file) {
            (Some(_), Some(_)) => {
                return Err(
                    "oauth2 sets both client_secret and client_secret_file; keep one".into(),
                );
            }
            (None, None) => {
                return Err("oauth2 needs client_secret or client_secret_file".into());
            }
            (Some(secret), None) => secret.clone(),
            (None, Some(path)) => {
                let text = std::fs::read_to_string(path).map_err(|error| {
                    format!("oauth2.client_secret_file {}: {error}", path.display())
                })?;
                Secret::new(text.trim_end_matches(['\r', '\n']))
            }
        };
        Ok(OAuth2Client {
            token_url,
            client_id: self.client_id.clone(),
            client_secret: secret,
            scopes: self.scopes.clone(),
            endpoint_params: self.endpoint_params.clone(),
            http,
            cached: Mutex::new(None),
        })
    }
}

/// A token source for one set of client credentials.
pub(crate) struct OAuth2Client {
    token_url: reqwest::Url,
    client_id: String,
    client_secret: Secret,
    scopes: Vec<String>,
    endpoint_params: BTreeMap<String, String>,
    http: reqwest::Client,
    cached: Mutex<Option<CachedToken>>,
}

impl std::fmt::Debug for OAuth2Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OAuth2Client")
            .field("token_url", &self.token_url.as_str())
            .field("client_id", &self.client_id)
            .finish_non_exhaustive()
    }
}

struct CachedToken {
    access_token: Secret,
    /// `None` when the provider gave no `expires_in`: kept until refused.
    renew_at: Option<Instant>,
}

#[derive(Deserialize)]
struct TokenResponse {
    access_token: String,
    #[serde(default)]
    expires_in: Option<f64>,
}

#[derive(Deserialize)]
struct TokenError {
    error: String,
    #[serde(default)]
    error_description: Option<String>,
}

impl OAuth2Client {
    /// A valid access token, fetched when none is cached or the cached one is about to
    /// expire. Failures are the source's (`source_name`): an unreachable provider may
    /// pass, refused client credentials do not.
    pub(crate) async fn token(&self, source_name: &str) -> Result<Secret, Failure> {
        let mut cached = self.cached.lock().await;
        if let Some(token) = cached.as_ref()
            && token.renew_at.is_none_or(|at| Instant::now() < at)
        {
            return Ok(token.access_token.clone());
        }
        let fetched = self.fetch(source_name).await?;
        let token = fetched.access_token.clone();
        *cached = Some(fetched);
        Ok(token)
    }

    /// Forgets the cached token (the source refused it), so the next request fetches
    /// a new one.
    pub(crate) async fn invalidate(&self) {
        *self.cached.lock().await = None;
    }

    async fn fetch(&self, source_name: &str) -> Result<CachedToken, Failure> {
        let provider = format!("the OAuth2 token endpoint {}", self.token_url);
        let unreachable = |message: String| {
            Failure::retryable(SourceError::Unreachable {
                source_name: source_name.to_owned(),
                message: format!("{provider}: {message}"),
            })
        };
        let mut form: Vec<(&str, &str)> = vec![("grant_type", "client_credentials")];
        let scope = self.scopes.join(" ");
        if !scope.is_empty() {
            form.push(("scope", &scope));
        }
        for (name, value) in &self.endpoint_params {
            form.push((name, value));
        }
        let encode =
            |text: &str| -> String { form_urlencoded::byte_serialize(text.as_bytes()).collect() };
        let response = self
            .http
            .post(self.token_url.clone())
            .basic_auth(
                encode(&self.client_id),
                Some(encode(self.client_secret.expose())),
            )
            .header(reqwest::header::ACCEPT, "application/json")
            .form(&form)
            .send()
            .await
            .map_err(|error| unreachable(root_cause(&error)))?;
        let status = response.status();
        let body = response
            .bytes()
            .await
            .map_err(|error| unreachable(root_cause(&error)))?;
        if status.is_server_error() || status.as_u16() == 429 {
            return Err(unreachable(format!("HTTP {status}")));
        }
        if !status.is_success() {
            let reason = serde_json::from_slice::<TokenError>(&body)
                .map(|error| match error.error_description {
                    Some(description) => format!("{}: {description}", error.error),
                    None => error.error,
                })
                .unwrap_or_else(|_| format!("HTTP {status}"));
            return Err(Failure::fatal(SourceError::Unauthorized {
                source_name: source_name.to_owned(),
                message: format!("{provider} refused client {:?}: {reason}", self.client_id),
            }));
        }
        let token: TokenResponse = serde_json::from_slice(&body).map_err(|error| {
            Failure::fatal(SourceError::Unauthorized {
                source_name: source_name.to_owned(),
                message: format!("{provider} answered without an access_token: {error}"),
            })
        })?;
        let renew_at = token
            .expires_in
            .filter(|seconds| seconds.is_finite() && *seconds > 0.0)
            .map(|seconds| {
                let lifetime = Duration::from_secs_f64(seconds.min(1e9));
                Instant::now() + lifetime.saturating_sub(EXPIRY_MARGIN)
            });
        Ok(CachedToken {
            access_token: Secret::new(token.access_token),
            renew_at,
        })
    }
}
