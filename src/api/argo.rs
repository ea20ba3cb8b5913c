//! Two ways in for Argo Rollouts' `web` metric provider.
//!
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
//!
//! `PUT /v1/argo/rollouts/{namespace}/{rollout}/{revision}`: submit-or-get, so that one
//! AnalysisTemplate needs no separate `canary submit`. Every measurement sends the same
//! submission body; the first stores the analysis under the key
//! `argo/{namespace}/{rollout}/{revision}` (a unique index decides between concurrent
//! first calls, from any instance), every later one reads it, and all answer with the
//! same flat verdict plus the analysis id. The revision is the pod-template hash Argo
//! passes with `valueFrom.podTemplateHashValue: Latest`, so a new revision of the same
//! rollout gets a new analysis and a repeated measurement never starts a second one. A
//! body that differs from the stored analysis's submission is a 409, never silently
//! the other analysis's verdict.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::analyses::{
    AnalysisId, QueryParams, Submission, WaitQuery, final_verdict, parse_id, parse_submission,
    parse_wait, query_params, wait_for_final,
};
use super::auth::{Authorized, ReadScope, SubmitScope};
use super::error::{ApiError, ErrorBody};
use super::state::ApiState;
use crate::domain::Verdict;
use crate::store::{Analysis, AnalysisState, NewAnalysis, StoreError};

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

/// What `PUT /v1/argo/rollouts/...` answers: the flat verdict of [`ArgoVerdict`] and
/// the analysis it is about.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ArgoRolloutVerdict {
    /// The analysis stored under the rollout's key.
    pub analysis_id: Uuid,
    /// The flat verdict, its fields beside `analysis_id`.
    #[serde(flatten)]
    pub verdict: ArgoVerdict,
}

impl ArgoRolloutVerdict {
    fn of(analysis: &Analysis) -> Self {
        Self {
            analysis_id: analysis.id,
            verdict: ArgoVerdict::of(analysis.state),
        }
    }
}

/// The rollout a submit-or-get call is about, from its path.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct RolloutPath {
    /// The rollout's namespace (a Kubernetes name: lower-case letters, digits, `-` and
    /// `.`, at most 253 characters).
    pub namespace: String,
    /// The rollout's name (the same rules).
    pub rollout: String,
    /// The revision under analysis: the pod-template hash of the new ReplicaSet (letters
    /// and digits, at most 63 characters).
    pub revision: String,
}

/// The most characters of a revision (a label value).
const MAX_REVISION: usize = 63;

impl RolloutPath {
    /// The submit key, after checking each part (a 400 naming the part otherwise).
    fn key(&self) -> Result<String, ApiError> {
        for (field, value) in [("namespace", &self.namespace), ("rollout", &self.rollout)] {
            super::fields::check_kubernetes_name(value, field)?;
        }
        let revision = &self.revision;
        if revision.is_empty()
            || revision.len() > MAX_REVISION
            || !revision.bytes().all(|b| b.is_ascii_alphanumeric())
        {
            return Err(ApiError::parameter(
                "invalid_revision",
                "revision",
                format!(
                    "revision must be the pod-template hash (letters and digits, at most \
                     {MAX_REVISION} characters), got {revision:?}"
                ),
            ));
        }
        Ok(format!(
            "argo/{}/{}/{}",
            self.namespace, self.rollout, self.revision
        ))
    }
}

/// Whether `stored` was submitted with the same request as `new` (what the caller
/// controls; the profile by name, since its text is read again at each submission).
fn same_submission(stored: &Analysis, new: &NewAnalysis) -> bool {
    stored.profile_name == new.profile_name
        && stored.flag == new.flag
        && stored.source == new.source
        && stored.actuator == new.actuator
        && stored.baseline_scope == new.baseline_scope
        && stored.canary_scope == new.canary_scope
        && stored.dry_run == new.dry_run
        && stored.adopt == new.adopt
        && stored.start_at == new.start_at
}

/// The analysis stored under `key`, or `new` stored now (`true`): read first, and read
/// again when a concurrent call stored it between the read and the insert.
async fn stored_or_created(
    state: &ApiState,
    key: &str,
    new: &NewAnalysis,
) -> Result<(Analysis, bool), ApiError> {
    if let Some(stored) = state
        .bounded_store_call(state.store.analysis_by_submit_key(key))
        .await?
    {
        return Ok((stored, false));
    }
    let created = state
        .bounded_store_call(async {
            match state
                .store
                .create_analysis(new.clone(), state.clock.now())
                .await
            {
                Ok(analysis) => Ok(Some(analysis)),
                Err(StoreError::SubmitKeyTaken(_)) => Ok(None),
                Err(error) => Err(error),
            }
        })
        .await?;
    if let Some(analysis) = created {
        return Ok((analysis, true));
    }
    state
        .bounded_store_call(state.store.analysis_by_submit_key(key))
        .await?
        .map(|stored| (stored, false))
        .ok_or_else(|| {
            ApiError::Internal(format!(
                "the analysis under {key:?} was refused as taken but cannot be read"
            ))
        })
}

/// `PUT /v1/argo/rollouts/{namespace}/{rollout}/{revision}?wait=`: the analysis of this
/// rollout revision, stored from the body on the first call (201) and read on every
/// later one (200), with its flat verdict.
#[utoipa::path(
    put,
    path = "/v1/argo/rollouts/{namespace}/{rollout}/{revision}",
    operation_id = "argoRolloutVerdict",
    summary = "Submit-or-get for Argo Rollouts' web metric provider",
    description = "The body is a submission as for `POST /v1/analyses`. The first call for a namespace, rollout and revision stores the analysis (201); every later call with the same body reads it (200). Both answer with the flat verdict of `GET /v1/analyses/{id}/argo` and the analysis id; use `successCondition: result.successful == true` and `failureCondition: result.failed == true`. `?wait=` long-polls an existing analysis. Needs scope `submit`.",
    params(RolloutPath, WaitQuery),
    request_body = Submission,
    responses(
        (status = 200, description = "The analysis already stored for this revision.", body = ArgoRolloutVerdict),
        (status = 201, description = "Stored now.", body = ArgoRolloutVerdict,
            headers(("Location" = String, description = "/v1/analyses/{id}"))),
        (status = 400, description = "A malformed namespace, rollout, revision or wait (`field` names it), or a body that is not JSON.", body = ErrorBody),
        (status = 409, description = "The revision's analysis was submitted with another body (`submit_key_conflict`), or another active analysis owns the flag (`flag_owned`).", body = ErrorBody),
        (status = 422, description = "A field of the submission is invalid, as for `POST /v1/analyses`.", body = ErrorBody),
        (status = 503, description = "The store is unavailable.", body = ErrorBody),
    )
)]
pub async fn rollout(
    State(state): State<ApiState>,
    authorized: Authorized<SubmitScope>,
    Path(path): Path<RolloutPath>,
    query: QueryParams,
    body: Bytes,
) -> Result<Response, ApiError> {
    let key = path.key()?;
    let wait = parse_wait(query_params(query)?.get("wait").map(String::as_str))?;
    let mut new = parse_submission(&state, &body)?;
    new.submit_key = Some(key.clone());
    let (stored, created) = stored_or_created(&state, &key, &new).await?;
    if created {
        tracing::info!(analysis = %stored.id, key = %key, profile = %stored.profile_name, flag = %stored.flag, actor = %authorized.caller.actor, "analysis submitted by Argo Rollouts");
        let location = format!("/v1/analyses/{}", stored.id);
        return Ok((
            StatusCode::CREATED,
            [(header::LOCATION, location)],
            Json(ArgoRolloutVerdict::of(&stored)),
        )
            .into_response());
    }
    if !same_submission(&stored, &new) {
        return Err(ApiError::Refused {
            status: StatusCode::CONFLICT,
            code: "submit_key_conflict",
            message: format!(
                "analysis {} was submitted for {key} with another body (profile {:?}, flag \
                 {:?}, source {:?}, actuator {:?}); send the same body, or analyse a new \
                 revision",
                stored.id, stored.profile_name, stored.flag, stored.source, stored.actuator
            ),
        });
    }
    let analysis = if wait.is_zero() {
        stored
    } else {
        wait_for_final(&state, stored.id, wait).await?
    };
    Ok(Json(ArgoRolloutVerdict::of(&analysis)).into_response())
}
