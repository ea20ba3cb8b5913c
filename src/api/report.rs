//! `GET /v1/analyses/{id}/report` (the HTML report) and `.../report.json` (its JSON
//! form, `report_schema_version` 1): read-only views of what the store keeps, built by
//! [`crate::report::analysis`]. The charts draw the downsampled series each look keeps
//! (`Look::series`); looks recorded before those were kept chart one point per
//! look.

use axum::extract::{Path, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};

use super::analyses::{AnalysisId, parse_id};
use super::auth::{Authorized, ReadScope};
use super::error::{ApiError, ErrorBody};
use super::state::ApiState;
use crate::report::analysis::{AnalysisReport, ChartData};
use crate::report::html;
use crate::store::LookRecord;

/// The report and the stored looks (whose series the HTML charts draw).
async fn build(state: &ApiState, id: &str) -> Result<(AnalysisReport, Vec<LookRecord>), ApiError> {
    let id = parse_id(id)?;
    let analysis = state
        .store
        .get_analysis(id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no analysis {id}")))?;
    let looks = state.store.list_looks(id).await?;
    let actuations = state.store.list_actuations(id).await?;
    let audit = state.store.audit_log(id).await?;
    let report = AnalysisReport::from_analysis(&analysis, &looks, &actuations, &audit);
    Ok((report, looks))
}

/// `GET /v1/analyses/{id}/report`: 200 with one self-contained HTML page; 400 for an
/// id that is not a UUID; 404 for an unknown one.
#[utoipa::path(
    get,
    path = "/v1/analyses/{id}/report",
    operation_id = "getReport",
    summary = "The analysis report as one self-contained HTML page (inline CSS and SVG charts, no scripts)",
    params(AnalysisId),
    responses(
        (status = 200, description = "The report.", body = String, content_type = "text/html"),
        (status = 400, description = "The id is not a UUID (`malformed_id`).", body = ErrorBody),
        (status = 404, description = "No such analysis.", body = ErrorBody),
    )
)]
pub async fn report_html(
    State(state): State<ApiState>,
    _: Authorized<ReadScope>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let (report, looks) = build(&state, &id).await?;
    let page = html::render(&report, &ChartData::from_looks(&looks));
    Ok((
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            // The page has no scripts and loads nothing; say so to the browser too.
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'none'; style-src 'unsafe-inline'; img-src data:",
            ),
        ],
        page,
    )
        .into_response())
}

/// `GET /v1/analyses/{id}/report.json`: 200 with the report's JSON form.
#[utoipa::path(
    get,
    path = "/v1/analyses/{id}/report.json",
    operation_id = "getReportJson",
    summary = "The analysis report as JSON (`report_schema_version` 1, documented in docs/report-schema.md)",
    params(AnalysisId),
    responses(
        (status = 200, description = "The report.", body = Object, content_type = "application/json"),
        (status = 400, description = "The id is not a UUID (`malformed_id`).", body = ErrorBody),
        (status = 404, description = "No such analysis.", body = ErrorBody),
    )
)]
pub async fn report_json(
    State(state): State<ApiState>,
    _: Authorized<ReadScope>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let (report, _) = build(&state, &id).await?;
    Ok((
        [(header::CONTENT_TYPE, "application/json")],
        report.to_json(),
    )
        .into_response())
}
