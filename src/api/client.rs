//! A typed client of this API, for `canary submit` and `canary wait`: it speaks the
//! same request and response types the server uses, so the two cannot drift apart.
//! `https://` servers need the `rustls` feature (on by default; see [`crate::tls`]);
//! `canary serve` itself serves plain HTTP, so HTTPS means a proxy in front of it. With
//! a token ([`Client::with_token`]) every request carries
//! `Authorization: Bearer TOKEN`.

use std::time::Duration;

use serde::de::DeserializeOwned;
use uuid::Uuid;

use super::analyses::{AnalysisView, Submission, VerdictView};
use super::error::ErrorBody;
use super::state::MAX_WAIT;
use crate::sources::prometheus::Secret;

/// What went wrong talking to the server.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The server could not be reached, or did not answer in time.
    #[error("cannot reach the canary server at {server}: {message}")]
    Unreachable {
        /// The server's URL.
        server: String,
        /// What the HTTP client said.
        message: String,
    },
    /// The server answered with an error.
    #[error("the server refused the request ({status}, {code}{}): {message}", field.as_ref().map(|f| format!(", field {f}")).unwrap_or_default())]
    Api {
        /// The HTTP status.
        status: u16,
        /// The error code.
        code: String,
        /// The field at fault.
        field: Option<String>,
        /// The server's message.
        message: String,
    },
    /// The server answered something this client cannot read.
    #[error("unexpected answer from the server: {0}")]
    Protocol(String),
}

/// A client of one `canary serve` instance.
#[derive(Debug, Clone)]
pub struct Client {
    server: String,
    http: reqwest::Client,
    token: Option<Secret>,
}

impl Client {
    /// A client of the server at `server` (`http://HOST:PORT`, with or without a
    /// trailing slash).
    pub fn new(server: &str) -> Result<Self, ClientError> {
        let server = server.trim_end_matches('/').to_owned();
        if !server.starts_with("http://") && !server.starts_with("https://") {
            return Err(ClientError::Protocol(format!(
                "--server must be an http:// or https:// URL, got {server:?}"
            )));
        }
        let url = reqwest::Url::parse(&server)
            .map_err(|error| ClientError::Protocol(format!("--server {server:?}: {error}")))?;
        crate::tls::check_https(&url, "--server")
            .map_err(|error| ClientError::Protocol(error.to_string()))?;
        let http = crate::tls::client_builder(url.scheme() == "https")
            .connect_timeout(Duration::from_secs(10))
            .build()
            .map_err(|error| ClientError::Protocol(error.to_string()))?;
        Ok(Self {
            server,
            http,
            token: None,
        })
    }

    /// The same client, sending `token` as a bearer token with every request.
    pub fn with_token(mut self, token: Option<Secret>) -> Self {
        self.token = token;
        self
    }

    /// A request to `url`, with the bearer token when there is one.
    fn request(&self, method: reqwest::Method, url: String) -> reqwest::RequestBuilder {
        let request = self.http.request(method, url);
        match &self.token {
            Some(token) => request.bearer_auth(token.expose()),
            None => request,
        }
    }

    async fn read<T: DeserializeOwned>(
        &self,
        sent: Result<reqwest::Response, reqwest::Error>,
    ) -> Result<T, ClientError> {
        let response = sent.map_err(|error| ClientError::Unreachable {
            server: self.server.clone(),
            message: error_chain(&error),
        })?;
        let status = response.status();
        let body = response
            .bytes()
            .await
            .map_err(|error| ClientError::Unreachable {
                server: self.server.clone(),
                message: error_chain(&error),
            })?;
        if status.is_success() {
            return serde_json::from_slice(&body)
                .map_err(|error| ClientError::Protocol(format!("{error} in {status} answer")));
        }
        Err(match serde_json::from_slice::<ErrorBody>(&body) {
            Ok(ErrorBody { error }) => ClientError::Api {
                status: status.as_u16(),
                code: error.code,
                field: error.field,
                message: error.message,
            },
            Err(_) => ClientError::Api {
                status: status.as_u16(),
                code: "http_error".to_owned(),
                field: None,
                message: String::from_utf8_lossy(&body).trim().to_owned(),
            },
        })
    }

    /// `POST /v1/analyses`: the stored analysis.
    pub async fn submit(&self, submission: &Submission) -> Result<AnalysisView, ClientError> {
        let sent = self
            .request(
                reqwest::Method::POST,
                format!("{}/v1/analyses", self.server),
            )
            .timeout(Duration::from_secs(30))
            .json(submission)
            .send()
            .await;
        self.read(sent).await
    }

    /// `GET /v1/analyses/{id}/verdict?wait=`: one long-poll of at most `wait` (cut to
    /// the server's 300 s).
    pub async fn verdict(&self, id: Uuid, wait: Duration) -> Result<VerdictView, ClientError> {
        let wait = wait.min(MAX_WAIT);
        let sent = self
            .request(
                reqwest::Method::GET,
                format!(
                    "{}/v1/analyses/{id}/verdict?wait={:.3}",
                    self.server,
                    wait.as_secs_f64()
                ),
            )
            .timeout(wait + Duration::from_secs(30))
            .send()
            .await;
        self.read(sent).await
    }

    /// `GET /v1/analyses/{id}/report.json` and `GET /v1/analyses/{id}/report`: the
    /// report's JSON form and its HTML page.
    pub async fn report(
        &self,
        id: Uuid,
    ) -> Result<(crate::report::analysis::AnalysisReport, String), ClientError> {
        let get = |path: String| {
            self.request(
                reqwest::Method::GET,
                format!("{}/v1/analyses/{id}/{path}", self.server),
            )
            .timeout(Duration::from_secs(60))
            .send()
        };
        let report = self.read(get("report.json".to_owned()).await).await?;
        let response =
            get("report".to_owned())
                .await
                .map_err(|error| ClientError::Unreachable {
                    server: self.server.clone(),
                    message: error_chain(&error),
                })?;
        let status = response.status();
        let page = response
            .text()
            .await
            .map_err(|error| ClientError::Unreachable {
                server: self.server.clone(),
                message: error_chain(&error),
            })?;
        if !status.is_success() {
            return Err(ClientError::Protocol(format!(
                "{status} for the HTML report"
            )));
        }
        Ok((report, page))
    }

    /// Long-polls until the analysis is final or `timeout` has passed; returns the last
    /// answer (not final when the timeout ran out).
    pub async fn wait(&self, id: Uuid, timeout: Duration) -> Result<VerdictView, ClientError> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let remaining = deadline.saturating_duration_since(tokio::time::Instant::now());
            let verdict = self.verdict(id, remaining).await?;
            if verdict.is_final || tokio::time::Instant::now() >= deadline {
                return Ok(verdict);
            }
        }
    }
}

/// An error with its causes, which carry the useful part ("connection refused").
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
