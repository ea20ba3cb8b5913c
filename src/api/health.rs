//! `GET /healthz` (the process answers) and `GET /readyz` (the store answers too).
//! A load balancer sends traffic on `readyz`; an orchestrator restarts on `healthz`.

use axum::Json;
use axum::extract::State;
use serde_json::{Value, json};

use super::error::ApiError;
use super::state::ApiState;

/// `GET /healthz`: always 200 `{"status": "ok"}` while the process serves requests.
pub async fn healthz() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

/// `GET /readyz`: 200 `{"status": "ready"}` when the store answers, 503 otherwise
/// (also when it does not answer within [`ApiState::store_timeout`]).
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
