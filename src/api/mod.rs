//! The HTTP API of `canary serve`: an axum [`router`] over an [`ApiState`].
//!
//! One file per resource: [`analyses`] (submit, inspect, list, long-poll the verdict,
//! manual actions), [`argo`] (the flat verdict for Argo Rollouts), [`health`]
//! (`/healthz`, `/readyz`), [`metrics`] (`/metrics`) and [`openapi`] (the OpenAPI
//! document). [`error`] maps every [`ApiError`] to its status code, in one place;
//! [`client`] is the typed client `canary submit` and `canary wait` use. [`auth`] owns
//! the bearer tokens and their scopes (handlers name the scope they need with its
//! `Authorized` extractor) and the rule that request bodies are JSON.
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
pub mod health;
pub mod metrics;
pub mod openapi;
pub mod report;

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
use crate::config::{Settings, SettingsError};
use crate::scheduler::{Clock, SystemClock};
use crate::store::Store;
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
        })
    }
}

/// The API's routes over `state` (see [`ROUTES`]), with request metrics, a JSON 404
/// for unknown paths and a 415 for request bodies that are not JSON.
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
        .layer(middleware::from_fn(auth::require_json_bodies))
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
