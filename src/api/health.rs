//! `GET /healthz` (the process answers) and `GET /readyz` (the store answers too).
//! A load balancer sends traffic on `readyz`; an orchestrator restarts on `healthz`.

use axum::Json;
use axum::extract::State;
use serde_json::{Value, json};

use super::{ApiError, ApiState};

/// `GET /healthz`: always 200 `{"status": "ok"}` while the process serves requests.
pub async fn healthz() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

/// `GET /readyz`: 200 `{"status": "ready"}` when the store answers, 503 otherwise.
pub async fn readyz(State(state): State<ApiState>) -> Result<Json<Value>, ApiError> {
    state
        .store
        .healthcheck()
        .await
        .map_err(|error| ApiError::Unavailable(format!("the store does not answer: {error}")))?;
    Ok(Json(json!({"status": "ready"})))
}
