//! `GET /metrics`: the engine's own metrics (see [`EngineMetrics`]) in the OpenMetrics
//! text format, which Prometheus scrapes. Analyses by state, and each active analysis's
//! latest results (`canary_analysis_*`), are read from the store at each scrape, so
//! every instance sharing a database reports the same series. With
//! `server.require_token_for_reads` the per-analysis series need a token of scope
//! `read` (Prometheus' `authorization` scrape setting); without one the scrape gets the
//! engine's own metrics only.
//!
//! [`EngineMetrics`]: crate::telemetry::EngineMetrics

use axum::extract::State;
use axum::http::{HeaderMap, header};
use axum::response::IntoResponse;

use super::auth::Scope;
use super::error::{ApiError, ErrorBody};
use super::state::ApiState;

/// The content type of the exposition.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// `GET /metrics`: 200 with the exposition; 503 when the store cannot count analyses.
#[utoipa::path(
    get,
    path = "/metrics",
    operation_id = "metrics",
    summary = "The engine's own metrics (OpenMetrics text)",
    description = "canary_analyses{state}; per active analysis canary_analysis_state, canary_analysis_verdict, canary_analysis_score, canary_analysis_traffic_percent, canary_analysis_stage, canary_analysis_metric_classification, canary_analysis_metric_effect (and _lower, _upper), labelled analysis, flag, profile (and metric); canary_executions_total{outcome}; canary_http_requests_total{method,route,status}, canary_http_request_duration_seconds{method,route}, canary_verdicts_total{outcome}, canary_interval_lateness_seconds, canary_source_request_duration_seconds{source}, canary_source_errors_total{source,kind}, canary_actuator_request_duration_seconds{actuator}, canary_actuator_errors_total{actuator}, canary_notifications_total{notifier,outcome}.",
    responses(
        (status = 200, description = "The exposition.", body = String, content_type = "application/openmetrics-text"),
        (status = 503, description = "The store cannot count analyses.", body = ErrorBody),
    )
)]
pub async fn metrics(
    State(state): State<ApiState>,
    headers: HeaderMap,
) -> Result<impl IntoResponse, ApiError> {
    let counts = state
        .bounded_store_call(state.store.counts_by_state())
        .await?;
    // Per-analysis series name flags and profiles: a server that keeps its analyses
    // from anonymous readers (`require_token_for_reads`) shows them only to a scrape
    // with a read token; anyone gets the engine's own metrics.
    let may_read = state.auth.authorize(&headers, Scope::Read).is_ok();
    let active = if may_read {
        state
            .bounded_store_call(
                state
                    .store
                    .active_with_latest_look(crate::telemetry::analyses::MAX_REPORTED),
            )
            .await?
    } else {
        Vec::new()
    };
    Ok((
        [(header::CONTENT_TYPE, CONTENT_TYPE)],
        state.metrics.encode_scrape(&counts, &active),
    ))
}
