//! `GET /v1/analyses/{id}/argo`: a flat verdict that Argo Rollouts' `web` metric
//! provider evaluates as is (`successCondition: result.successful == true`,
//! `failureCondition: result.failed == true`); the example AnalysisTemplate is in
//! `docs/argo-rollouts.md`, and a test checks the two agree.
//!
//! Before the analysis is final both conditions are false, so Argo records an
//! inconclusive measurement and measures again at its next interval. Only `promoted`
//! is successful; the template's limits make a run that never gets there end
//! Inconclusive or Failed, never Successful (`tests/it/argo_template.rs`). `?wait=` long-polls
//! like the verdict endpoint, to answer sooner when the analysis ends.

use axum::Json;
use axum::extract::{Path, State};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::analyses::{
    AnalysisId, QueryParams, WaitQuery, final_verdict, parse_id, parse_wait, query_params,
    wait_for_final,
};
use super::auth::{Authorized, ReadScope};
use super::error::{ApiError, ErrorBody};
use super::state::ApiState;
use crate::domain::Verdict;
use crate::store::AnalysisState;

/// What Argo reads.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ArgoVerdict {
    /// `promote` or `rollback` once final; `null` before, and for a failed analysis.
    pub verdict: Option<Verdict>,
    /// The analysis state.
    pub state: AnalysisState,
    /// Promoted: the rollout may continue.
    pub successful: bool,
    /// Rolled back, rollback failed or failed: abort the rollout.
    pub failed: bool,
    /// Not final yet: measure again later.
    pub inconclusive: bool,
    /// Whether the analysis is over.
    #[serde(rename = "final")]
    pub is_final: bool,
}

impl ArgoVerdict {
    /// The flat verdict for an analysis in `state`.
    pub fn of(state: AnalysisState) -> Self {
        Self {
            verdict: final_verdict(state),
            state,
            successful: state == AnalysisState::Promoted,
            failed: state.is_final() && state != AnalysisState::Promoted,
            inconclusive: !state.is_final(),
            is_final: state.is_final(),
        }
    }
}

/// `GET /v1/analyses/{id}/argo?wait=`: 200 with the flat verdict; 400 for a bad id or
/// wait; 404 for an unknown id.
#[utoipa::path(
    get,
    path = "/v1/analyses/{id}/argo",
    operation_id = "argoVerdict",
    summary = "A flat verdict for Argo Rollouts' web metric provider",
    description = "Use `successCondition: result.successful == true` and `failureCondition: result.failed == true`; before the analysis is final both are false (inconclusive).",
    params(AnalysisId, WaitQuery),
    responses(
        (status = 200, description = "The flat verdict.", body = ArgoVerdict),
        (status = 400, description = "Malformed id or wait.", body = ErrorBody),
        (status = 404, description = "No such analysis.", body = ErrorBody),
    )
)]
pub async fn argo(
    State(state): State<ApiState>,
    _: Authorized<ReadScope>,
    Path(id): Path<String>,
    query: QueryParams,
) -> Result<Json<ArgoVerdict>, ApiError> {
    let id = parse_id(&id)?;
    let wait = parse_wait(query_params(query)?.get("wait").map(String::as_str))?;
    let analysis = wait_for_final(&state, id, wait).await?;
    Ok(Json(ArgoVerdict::of(analysis.state)))
}
