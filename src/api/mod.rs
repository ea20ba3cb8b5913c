//! The HTTP API of `canary serve`: an axum [`router`] over an [`ApiState`].
//!
//! One file per resource: [`analyses`] (submit, inspect, list, long-poll the verdict,
//! manual actions), [`argo`] (the flat verdict for Argo Rollouts), [`health`]
//! (`/healthz`, `/readyz`), [`metrics`] (`/metrics`) and [`openapi`] (the OpenAPI
//! document). [`error`] maps every [`ApiError`] to its status code, in one place;
//! [`client`] is the typed client `canary submit` and `canary wait` use. [`auth`] owns
//! the bearer tokens and their scopes (handlers name the scope they need with its
//! `Authorized` extractor) and the rule that request bodies are JSON. [`limits`] bounds
//! every request (URL, headers, body size and read time) and gives every error answer
//! the JSON error body; [`server`] serves the router with a header read timeout and a
//! graceful shutdown, at which long-polls answer with the current state.
//!
//! The API never runs an analysis and never calls an actuator: it writes requests and
//! manual actions to the store, and the scheduler's workers carry them out. Callers
//! name metric sources and actuators declared in settings; they can never make the
//! engine call a URL of their choosing.

pub mod analyses;
pub mod argo;
pub mod auth;
pub mod client;
pub mod error;
pub mod fields;
pub mod health;
pub mod limits;
pub mod metrics;
pub mod openapi;
pub mod report;
pub mod server;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{MatchedPath, Request, State};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{get, post};

use self::auth::Authenticator;
pub use self::error::ApiError;
pub use self::server::serve;
use crate::config::{Settings, SettingsError};
use crate::scheduler::{Clock, SystemClock};
use crate::store::{Store, StoreError};
use crate::telemetry::EngineMetrics;

/// The longest a long-poll (`?wait=`) holds a request; longer waits are cut to it.
pub const MAX_WAIT: Duration = Duration::from_secs(300);

/// Every route: method and path template, as the router and the OpenAPI document
/// name them.
pub const ROUTES: [(&str, &str); 12] = [
    ("POST", "/v1/analyses"),
    ("GET", "/v1/analyses"),
    ("GET", "/v1/analyses/{id}"),
    ("GET", "/v1/analyses/{id}/verdict"),
    ("POST", "/v1/analyses/{id}/actions"),
    ("GET", "/v1/analyses/{id}/argo"),
    ("GET", "/v1/analyses/{id}/report"),
    ("GET", "/v1/analyses/{id}/report.json"),
    ("GET", "/v1/openapi.json"),
    ("GET", "/healthz"),
    ("GET", "/readyz"),
    ("GET", "/metrics"),
];

/// What the handlers share: the store, the names callers may use, the tokens and the
/// metrics. Cheap to clone.
#[derive(Clone)]
pub struct ApiState {
    /// Where analyses are kept.
    pub store: Arc<dyn Store>,
    /// The bearer tokens and their scopes; without any, submissions and reads are open
    /// and manual actions refused.
    pub auth: Arc<Authenticator>,
    /// Names of the metric sources declared in settings.
    pub sources: Vec<String>,
    /// Names of the actuators declared in settings.
    pub actuators: Vec<String>,
    /// Each actuator name's owner key (the flag store it writes,
    /// [`ActuatorConfig::owner`](crate::actuators::ActuatorConfig::owner)): one active
    /// analysis per owner key and flag. A name missing here owns as `actuator:NAME`.
    pub actuator_owners: std::collections::BTreeMap<String, String>,
    /// Directory of `NAME.toml` profiles, read at each submission so an edited or
    /// added profile needs no restart.
    pub profiles_directory: PathBuf,
    /// The engine's metrics, shared with the workers.
    pub metrics: Arc<EngineMetrics>,
    /// "Now" for the store's timestamps.
    pub clock: Arc<dyn Clock>,
    /// How often a long-poll reads the store (default 200 ms). Reading the store, not
    /// an in-process signal, makes the wait see changes made by any instance.
    pub poll_interval: Duration,
    /// Fires when the server starts to stop: long-polls answer with the current state.
    pub shutdown: ShutdownSignal,
    /// The longest `/readyz`, `/metrics` and a submission wait for the store before a
    /// 503 (`[store] api_timeout`, default 2 s).
    pub store_timeout: Duration,
    /// The longest a client may take to send a body (`[server] body_read_timeout`,
    /// default 30 s); then 408.
    pub body_read_timeout: Duration,
}

/// Resolves when the server begins to stop (see [`ShutdownSignal::stopped`]). Cheap to
/// clone.
#[derive(Clone, Debug)]
pub struct ShutdownSignal(Option<tokio::sync::watch::Receiver<bool>>);

impl ShutdownSignal {
    /// A signal that never fires (tests, and a state built before its server).
    pub fn never() -> Self {
        Self(None)
    }

    /// Fires when `receiver` reads `true`.
    pub fn on(receiver: tokio::sync::watch::Receiver<bool>) -> Self {
        Self(Some(receiver))
    }

    /// Whether the server is stopping.
    pub fn is_stopping(&self) -> bool {
        self.0.as_ref().is_some_and(|receiver| *receiver.borrow())
    }

    /// Completes once the server is stopping; never when its sender is gone first.
    pub async fn stopped(&self) {
        if let Some(receiver) = &self.0 {
            let mut receiver = receiver.clone();
            if receiver.wait_for(|stopping| *stopping).await.is_ok() {
                return;
            }
        }
        std::future::pending::<()>().await;
    }
}

impl ApiState {
    /// The state for `settings`, with the system clock. Tokens named by `token_env` are
    /// read from the process environment; an empty or missing one is an error naming
    /// its setting.
    pub fn new(
        store: Arc<dyn Store>,
        settings: &Settings,
        metrics: Arc<EngineMetrics>,
    ) -> Result<Self, SettingsError> {
        let tokens = settings
            .server
            .api_tokens(&|name| std::env::var(name).ok())?;
        Ok(Self {
            store,
            auth: Arc::new(Authenticator::new(
                tokens,
                settings.server.require_token_for_reads,
            )),
            sources: settings.sources.keys().cloned().collect(),
            actuators: settings.actuators.keys().cloned().collect(),
            actuator_owners: settings
                .actuators
                .iter()
                .map(|(name, config)| (name.clone(), config.owner(name)))
                .collect(),
            profiles_directory: settings.profiles.directory.clone(),
            metrics,
            clock: Arc::new(SystemClock),
            poll_interval: Duration::from_millis(200),
            shutdown: ShutdownSignal::never(),
            store_timeout: settings.store.api_timeout_duration()?,
            body_read_timeout: settings.server.body_read_duration()?,
        })
    }

    /// Runs a store call for a path that must answer fast (health, metrics, submit):
    /// a store that does not answer within [`ApiState::store_timeout`] is a 503.
    pub(crate) async fn bounded_store_call<T>(
        &self,
        call: impl std::future::Future<Output = Result<T, StoreError>>,
    ) -> Result<T, ApiError> {
        match tokio::time::timeout(self.store_timeout, call).await {
            Ok(result) => result.map_err(ApiError::from),
            Err(_) => Err(ApiError::Unavailable(format!(
                "the store did not answer within {} s",
                self.store_timeout.as_secs_f64()
            ))),
        }
    }
}

/// The API's routes over `state` (see [`ROUTES`]), with request metrics, a JSON 404
/// for unknown paths, a 415 for request bodies that are not JSON, the request bounds of
/// [`limits`] and a JSON body on every error answer.
pub fn router(state: ApiState) -> Router {
    Router::new()
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/metrics", get(metrics::metrics))
        .route("/v1/openapi.json", get(openapi::openapi))
        .route("/v1/analyses", post(analyses::create).get(analyses::list))
        .route("/v1/analyses/{id}", get(analyses::get))
        .route("/v1/analyses/{id}/verdict", get(analyses::verdict))
        .route("/v1/analyses/{id}/actions", post(analyses::action))
        .route("/v1/analyses/{id}/argo", get(argo::argo))
        .route("/v1/analyses/{id}/report", get(report::report_html))
        .route("/v1/analyses/{id}/report.json", get(report::report_json))
        .fallback(no_such_route)
        .layer(middleware::from_fn_with_state(
            state.clone(),
            limits::bounded_requests,
        ))
        .layer(middleware::from_fn(auth::require_json_bodies))
        .layer(middleware::from_fn(limits::json_errors))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            count_requests,
        ))
        .with_state(state)
}

async fn no_such_route(request: Request) -> ApiError {
    ApiError::NoSuchRoute(format!(
        "no route for {} {}; see /v1/openapi.json",
        request.method(),
        request.uri().path()
    ))
}

/// Counts every answered request by method, route template and status.
async fn count_requests(State(state): State<ApiState>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = request.method().to_string();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |path| path.as_str().to_owned());
    let response = next.run(request).await;
    state.metrics.observe_http_request(
        &method,
        &route,
        response.status().as_u16(),
        started.elapsed().as_secs_f64(),
    );
    response
}
