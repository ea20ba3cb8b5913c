//! The HTTP API of `canary serve`: an axum [`router`] over an [`ApiState`].
//!
//! One file per resource: [`analyses`] (submit, inspect, list, long-poll the verdict,
//! manual actions), [`action_links`] (the pages behind notifications' signed promote
//! and roll-back links), [`argo`] (the flat verdict for Argo Rollouts, and submit-or-get by
//! rollout revision), [`kayenta`] (Kayenta's canary-config index and canary executions,
//! for Argo's `kayenta` provider and Spinnaker), [`flagger`] (Flagger's webhook gates),
//! [`health`]
//! (`/healthz`, `/readyz`), [`metrics`] (`/metrics`) and [`openapi`] (the OpenAPI
//! document). [`error`] maps every [`ApiError`] to its status code, in one place;
//! [`client`] is the typed client `canary submit` and `canary wait` use. [`auth`] owns
//! the bearer tokens and their scopes (handlers name the scope they need with its
//! `Authorized` extractor) and the rule that request bodies are JSON. [`limits`] bounds
//! every request (URL, headers, body size and read time) and gives every error answer
//! the JSON error body; [`server`] serves the router with a header read timeout and a
//! graceful shutdown, at which long-polls answer with the current state. [`console`]
//! is the web console (`GET /` and `/console/...`): HTML pages over the same store,
//! with its own sign-in (a session cookie) and cross-site protection.
//!
//! The API never runs an analysis and never calls an actuator: it writes requests and
//! manual actions to the store, and the scheduler's workers carry them out. Callers
//! name metric sources and actuators declared in settings; they can never make the
//! engine call a URL of their choosing.

pub mod action_links;
pub mod analyses;
pub mod argo;
pub mod auth;
pub mod client;
pub mod console;
pub mod error;
pub mod fields;
pub mod flagger;
pub mod health;
pub mod kayenta;
pub mod limits;
pub mod metrics;
pub mod openapi;
pub mod report;
pub mod server;
mod state;

use std::time::Instant;

use axum::Router;
use axum::extract::{MatchedPath, Request, State};
use axum::middleware::{self, Next};
use axum::response::Response;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub use self::error::ApiError;
pub use self::server::serve;
pub use self::state::{ApiState, MAX_WAIT, ShutdownSignal};

/// Every route with its OpenAPI operation, registered once: [`router`] serves them
/// and [`openapi::document`] describes them.
fn operations() -> OpenApiRouter<ApiState> {
    OpenApiRouter::new()
        .routes(routes!(health::healthz))
        .routes(routes!(health::readyz))
        .routes(routes!(metrics::metrics))
        .routes(routes!(openapi::openapi))
        .routes(routes!(analyses::create, analyses::list))
        .routes(routes!(analyses::get))
        .routes(routes!(analyses::verdict))
        .routes(routes!(analyses::action))
        .routes(routes!(argo::argo))
        .routes(routes!(argo::rollout))
        .routes(routes!(action_links::confirm_page, action_links::confirm))
        .routes(routes!(flagger::webhook))
        .routes(routes!(kayenta::configs))
        .routes(routes!(kayenta::create))
        .routes(routes!(kayenta::get))
        .routes(routes!(report::report_html))
        .routes(routes!(report::report_json))
}

/// Every route: method and path template, as the router serves them and the OpenAPI
/// document names them.
pub fn routes() -> Vec<(String, String)> {
    openapi::routes()
}

/// The API's routes over `state` (see [`routes()`]), with request metrics, a JSON 404
/// for unknown paths, a 415 for request bodies that are not JSON, the request bounds of
/// [`limits`] and a JSON body on every error answer.
pub fn router(state: ApiState) -> Router {
    let (routes, _) = operations().split_for_parts();
    routes
        .merge(console::routes())
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
