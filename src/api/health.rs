//! `GET /healthz` (the process answers) and `GET /readyz` (the store answers too).
//! A load balancer sends traffic on `readyz`; an orchestrator restarts on `healthz`.

use axum::Json;
use axum::extract::State;
use serde_json::{Value, json};

use super::error::{ApiError, ErrorBody};
use super::state::ApiState;

/// `GET /healthz`: always 200 `{"status": "ok"}` while the process serves requests.
#[utoipa::path(
    get,
    path = "/healthz",
    operation_id = "healthz",
    summary = "The process is up",
    responses((status = 200, description = "{\"status\": \"ok\"}", body = Object))
)]
pub async fn healthz() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

/// `GET /readyz`: 200 `{"status": "ready"}` when the store answers, 503 otherwise
/// (also when it does not answer within [`ApiState::store_timeout`]).
#[utoipa::path(
    get,
    path = "/readyz",
    operation_id = "readyz",
    summary = "The store answers",
    responses(
        (status = 200, description = "{\"status\": \"ready\"}", body = Object),
        (status = 503, description = "The store does not answer.", body = ErrorBody),
    )
)]
pub async fn readyz(State(state): State<ApiState>) -> Result<Json<Value>, ApiError> {
    state
        .bounded_store_call(state.store.healthcheck())
        .await
        .map_err(|error| {
            let (_, body) = error.status_and_body();
            ApiError::Unavailable(format!("the store does not answer: {}", body.error.message))
        })?;
    Ok(Json(json!({"status": "ready"})))
}
