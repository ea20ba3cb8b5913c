//! The service's HTTP surface: `/metrics`, `/fault`, `/state`, `/healthz`.

use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::json;

use crate::fault::FaultSpec;
use crate::world::{SharedWorld, unix_now};

/// The routes, over the shared world.
pub fn router(world: Arc<SharedWorld>) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/fault", axum::routing::post(set_fault).delete(clear_fault))
        .route("/state", get(state))
        .route("/healthz", get(healthz))
        .with_state(world)
}

async fn metrics(State(world): State<Arc<SharedWorld>>) -> Response {
    let text = world.lock().render_metrics(unix_now());
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
        .into_response()
}

/// `POST /fault`: 200 with the fault and its `onset_at`, or 400
/// `{"error": {"field", "message"}}`.
async fn set_fault(State(world): State<Arc<SharedWorld>>, body: Bytes) -> Response {
    match FaultSpec::parse(&body) {
        Ok(spec) => {
            let view = world.lock().set_fault(spec, unix_now());
            Json(view).into_response()
        }
        Err(error) => (
            StatusCode::BAD_REQUEST,
            Json(json!({"error": {"field": error.field, "message": error.message}})),
        )
            .into_response(),
    }
}

async fn clear_fault(State(world): State<Arc<SharedWorld>>) -> Json<serde_json::Value> {
    world.lock().clear_fault();
    Json(json!({"fault": null}))
}

async fn state(State(world): State<Arc<SharedWorld>>) -> Response {
    let view = world.lock().state(unix_now());
    Json(view).into_response()
}

async fn healthz() -> &'static str {
    "ok\n"
}
