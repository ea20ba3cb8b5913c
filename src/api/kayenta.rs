//! Kayenta's REST API, the part controllers call, under `/kayenta`: Argo Rollouts'
//! `kayenta` metric provider and Spinnaker's canary stage work against `canary serve`
//! by changing only their Kayenta address to `http://CANARY/kayenta`.
//!
//! - `GET /kayenta/canaryConfig`: the profiles as Kayenta's config index
//!   (`[{id, name, updatedTimestamp, updatedTimestampIso, applications}]`); Argo looks
//!   the config up by `name` and posts to its `id`.
//! - `POST /kayenta/canary/{configId}`: a canary execution over one window — Kayenta's
//!   `scopes` body (one scope pair: control = baseline, experiment = canary) and
//!   `thresholds`. It is stored, answered at once with **200** `{"canaryExecutionId"}`,
//!   and run by whichever instance's executor claims it
//!   ([`crate::scheduler::executions`]). `metricsAccountName` names the metric source
//!   declared in settings (optional when only one is).
//! - `GET /kayenta/canary/{executionId}`: Kayenta's status response — `complete`,
//!   `status` (`not_started`, `running`, `succeeded`, `terminal`), and once succeeded
//!   `result.judgeResult` with the per-metric `results`, the `groupScores` and the
//!   `score` — from any instance sharing the store.
//!
//! A Kayenta scope is either label matchers (`app="web",track="canary"`), used as they
//! are, or a bare value such as Kayenta's `myapp-canary`, which becomes
//! `LABEL="value"` with `server.kayenta_scope_label` (Kayenta's account `scopeLabel`).
//! The location (region) is kept but not used: put it in the matchers.
//!
//! Kayenta itself has no authentication; canary keeps its own: creating an execution
//! needs scope `submit`, reading needs `read` when the server requires it — unless
//! `server.kayenta_without_token` opens these routes (Spinnaker's Orca sends no
//! credentials; executions never move a flag). Argo's
//! provider cannot set headers, but Go's HTTP client sends a URL's user information
//! as Basic credentials, so `address: http://kayenta:TOKEN@canary:8080/kayenta` works:
//! the Basic password is taken as the token ([`super::auth`]).

use std::collections::BTreeMap;
use std::time::UNIX_EPOCH;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use utoipa::ToSchema;
use uuid::Uuid;

use super::analyses::{
    QueryParams, check_scope, parse_body, profile_names, query_params, read_profile,
};
use super::auth::Scope;
use super::error::{ApiError, ErrorBody};
use super::state::ApiState;
use crate::domain::{Direction, Profile};
use crate::judge::{Classification, Judgement, MetricResult, SideSummary};
use crate::scheduler::executions::{KIND_KAYENTA, WindowRequest, WindowResult};
use crate::store::{Execution, ExecutionState, NewExecution};

/// The longest window one execution may judge.
const MAX_WINDOW_SECONDS: f64 = 7.0 * 24.0 * 3600.0;

/// The most points per series one execution may ask for (Prometheus refuses more than
/// 11,000 per range query).
const MAX_POINTS: f64 = 11_000.0;

/// How far in the future a window may end (the execution waits for its end).
const MAX_FUTURE_SECONDS: f64 = 24.0 * 3600.0;

/// The step when the caller sends none (Argo's `step` defaults to 0).
const DEFAULT_STEP_SECONDS: f64 = 60.0;

/// One entry of Kayenta's config index.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConfigSummary {
    /// The profile's file name without `.toml`: what `POST /kayenta/canary/{configId}`
    /// takes.
    pub id: String,
    /// The profile's `name`: what Argo's `canaryConfigName` matches.
    pub name: String,
    /// When the profile file last changed, Unix milliseconds.
    pub updated_timestamp: i64,
    /// The same, ISO 8601.
    pub updated_timestamp_iso: String,
    /// Applications (profiles are not tied to any: empty).
    pub applications: Vec<String>,
}

/// `GET /kayenta/canaryConfig`: every valid profile as Kayenta's config index. The
/// `application` and `configurationAccountName` parameters are accepted and not used.
#[utoipa::path(
    get,
    path = "/kayenta/canaryConfig",
    operation_id = "kayentaCanaryConfigs",
    summary = "Kayenta's canary-config index: the profiles",
    description = "Argo Rollouts' kayenta provider finds its `canaryConfigName` here by `name` and posts to its `id`. Profiles that do not parse are left out (and logged).",
    responses(
        (status = 200, description = "The profiles.", body = [ConfigSummary]),
        (status = 401, description = "Reads need a token and none or an unknown one was sent.", body = ErrorBody),
    )
)]
pub async fn configs(
    State(state): State<ApiState>,
    headers: HeaderMap,
    query: QueryParams,
) -> Result<Json<Vec<ConfigSummary>>, ApiError> {
    caller(&state, &headers, Scope::Read)?;
    query_params(query)?;
    let mut configs = Vec::new();
    for id in profile_names(&state) {
        let path = state.profiles_directory.join(format!("{id}.toml"));
        let Ok(text) = std::fs::read_to_string(&path) else {
            continue;
        };
        let profile = match Profile::parse(&text, &format!("{id}.toml")) {
            Ok(profile) => profile,
            Err(error) => {
                tracing::warn!(profile = %id, error = %error, "an invalid profile is left out of Kayenta's config index");
                continue;
            }
        };
        let millis = std::fs::metadata(&path)
            .and_then(|meta| meta.modified())
            .ok()
            .and_then(|time| time.duration_since(UNIX_EPOCH).ok())
            .map_or(0, |since| {
                i64::try_from(since.as_millis()).unwrap_or(i64::MAX)
            });
        configs.push(ConfigSummary {
            id,
            name: profile.name,
            updated_timestamp: millis,
            updated_timestamp_iso: iso(millis as f64 / 1000.0),
            applications: Vec::new(),
        });
    }
    Ok(Json(configs))
}

/// Kayenta's `CanaryExecutionRequest`, as controllers send it (unknown fields are
/// ignored, as Kayenta does).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ExecutionBody {
    scopes: Option<BTreeMap<String, ScopePair>>,
    thresholds: Option<Thresholds>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ScopePair {
    control_scope: Option<ScopeDetail>,
    experiment_scope: Option<ScopeDetail>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ScopeDetail {
    scope: Option<String>,
    #[allow(dead_code)]
    location: Option<String>,
    start: Option<String>,
    end: Option<String>,
    step: Option<f64>,
}

#[derive(Debug, Deserialize)]
struct Thresholds {
    pass: Option<f64>,
    marginal: Option<f64>,
}

/// What `POST /kayenta/canary/{configId}` answers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ExecutionCreated {
    /// Read the execution at `GET /kayenta/canary/{canaryExecutionId}`.
    pub canary_execution_id: String,
}

/// `POST /kayenta/canary/{configId}`: stores a canary execution of profile `configId`
/// over the body's window and answers its id (200, as Kayenta does).
#[utoipa::path(
    post,
    path = "/kayenta/canary/{id}",
    operation_id = "kayentaCreateExecution",
    summary = "Kayenta's canary execution: judge one window once",
    description = "The body is Kayenta's CanaryExecutionRequest: `scopes` with exactly one pair (`controlScope` is the baseline, `experimentScope` the canary; `scope`, `start`, `end` in RFC 3339, `step` in seconds, the same window on both sides) and `thresholds` (`pass`, `marginal`, 1 to 100). Query parameters: `metricsAccountName` names the metric source (optional with one source); `application`, `parentPipelineExecutionId`, `configurationAccountName` and `storageAccountName` are echoed back. Runs once the window has ended; moves no flag. Needs scope `submit`.",
    params(("id" = String, Path, description = "The canary config: a profile id from `GET /kayenta/canaryConfig`.")),
    responses(
        (status = 200, description = "Stored.", body = ExecutionCreated),
        (status = 400, description = "A body that is not JSON, or a bad query parameter.", body = ErrorBody),
        (status = 401, description = "No token or an unknown one.", body = ErrorBody),
        (status = 403, description = "The token lacks scope `submit`.", body = ErrorBody),
        (status = 404, description = "No such profile.", body = ErrorBody),
        (status = 422, description = "A field of the request is invalid (`field` names it, as a JSON path).", body = ErrorBody),
        (status = 503, description = "The store is unavailable.", body = ErrorBody),
    )
)]
pub async fn create(
    State(state): State<ApiState>,
    headers: HeaderMap,
    Path(config_id): Path<String>,
    query: QueryParams,
    body: Bytes,
) -> Result<Json<ExecutionCreated>, ApiError> {
    let actor = caller(&state, &headers, Scope::Submit)?;
    let params = query_params(query)?;
    let (profile_text, _) =
        read_profile(&state, &config_id, "configId").map_err(|error| match error {
            ApiError::InvalidField {
                code: "unknown_profile",
                ..
            } => ApiError::NotFound(format!(
                "no canary config {config_id:?}; GET /kayenta/canaryConfig lists them"
            )),
            other => other,
        })?;
    let source = named_source(
        &state,
        params.get("metricsAccountName"),
        "metricsAccountName",
    )?;
    let raw: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let parsed: ExecutionBody = parse_body(&body)?;
    let now = state.clock.now();
    let mut request = window_request(&state, parsed, now)?;
    request.caller = json!({
        "canaryExecutionRequest": raw,
        "canaryConfigId": config_id,
        "application": params.get("application"),
        "parentPipelineExecutionId": params.get("parentPipelineExecutionId"),
        "metricsAccountName": params.get("metricsAccountName"),
        "configurationAccountName": params.get("configurationAccountName"),
        "storageAccountName": params.get("storageAccountName"),
    });
    let due_at = request.end.max(now);
    let request = serde_json::to_value(&request)
        .map_err(|error| ApiError::Internal(format!("the request cannot be stored: {error}")))?;
    let execution = state
        .bounded_store_call(state.store.create_execution(
            NewExecution {
                kind: KIND_KAYENTA.to_owned(),
                key: None,
                profile_name: config_id.clone(),
                profile_text,
                source,
                request,
                due_at,
            },
            now,
        ))
        .await?;
    tracing::info!(execution = %execution.id, config = %config_id, actor = %actor, "Kayenta canary execution requested");
    Ok(Json(ExecutionCreated {
        canary_execution_id: execution.id.to_string(),
    }))
}

/// Who calls, when the request may use `scope`: a token as everywhere, or anyone with
/// `server.kayenta_without_token`.
fn caller(state: &ApiState, headers: &HeaderMap, scope: Scope) -> Result<String, ApiError> {
    if state.kayenta_without_token {
        return Ok("kayenta-without-token".to_owned());
    }
    Ok(state.auth.authorize(headers, scope)?.actor)
}

/// The metric source `given` names (in `field`), or the only one declared when it names
/// none.
pub(crate) fn named_source(
    state: &ApiState,
    given: Option<&String>,
    field: &str,
) -> Result<String, ApiError> {
    match given
        .map(|name| name.trim())
        .filter(|name| !name.is_empty())
    {
        Some(name) if state.sources.iter().any(|known| known == name) => Ok(name.to_owned()),
        Some(name) => Err(ApiError::unknown_name(
            "unknown_source",
            field,
            name,
            &state.sources,
        )),
        None => match state.sources.as_slice() {
            [only] => Ok(only.clone()),
            _ => Err(ApiError::unknown_name(
                "unknown_source",
                field,
                "",
                &state.sources,
            )),
        },
    }
}

/// Kayenta's request checked and turned into canary's window (the `caller` is filled
/// in by the handler).
fn window_request(
    state: &ApiState,
    body: ExecutionBody,
    now: f64,
) -> Result<WindowRequest, ApiError> {
    let scopes = body
        .scopes
        .ok_or_else(|| ApiError::field("missing_field", "scopes", "scopes is required"))?;
    let mut pairs = scopes.into_iter();
    let (name, pair) = pairs.next().ok_or_else(|| {
        ApiError::field("invalid_field", "scopes", "scopes must hold one scope pair")
    })?;
    if pairs.next().is_some() {
        return Err(ApiError::field(
            "invalid_field",
            "scopes",
            "scopes must hold exactly one scope pair: canary judges every metric of the \
             config over the same control and experiment scopes",
        ));
    }
    let field = |side: &str, part: &str| format!("scopes.{name}.{side}.{part}");
    let control = pair.control_scope.ok_or_else(|| {
        let field = format!("scopes.{name}.controlScope");
        ApiError::field("missing_field", &field, format!("{field} is required"))
    })?;
    let experiment = pair.experiment_scope.ok_or_else(|| {
        let field = format!("scopes.{name}.experimentScope");
        ApiError::field("missing_field", &field, format!("{field} is required"))
    })?;
    let baseline_scope = matchers(
        state,
        control.scope.as_deref(),
        &field("controlScope", "scope"),
    )?;
    let canary_scope = matchers(
        state,
        experiment.scope.as_deref(),
        &field("experimentScope", "scope"),
    )?;
    if baseline_scope == canary_scope {
        return Err(ApiError::field(
            "invalid_field",
            &field("experimentScope", "scope"),
            "the experiment scope must select other series than the control scope",
        ));
    }
    let start = instant(control.start.as_deref(), &field("controlScope", "start"))?;
    let end = instant(control.end.as_deref(), &field("controlScope", "end"))?;
    for (part, control_value, experiment_value) in [
        ("start", &control.start, &experiment.start),
        ("end", &control.end, &experiment.end),
    ] {
        let experiment_field = field("experimentScope", part);
        let same = match experiment_value {
            None => true,
            Some(text) => {
                instant(Some(text), &experiment_field)?
                    == instant(control_value.as_deref(), &field("controlScope", part))?
            }
        };
        if !same {
            return Err(ApiError::field(
                "invalid_field",
                &experiment_field,
                format!(
                    "{experiment_field} must equal controlScope.{part}: canary compares both \
                     scopes over the same window"
                ),
            ));
        }
    }
    if end <= start {
        return Err(ApiError::field(
            "invalid_field",
            &field("controlScope", "end"),
            "the window must end after it starts",
        ));
    }
    if end - start > MAX_WINDOW_SECONDS {
        return Err(ApiError::field(
            "invalid_field",
            &field("controlScope", "start"),
            format!(
                "the window must be at most 7 days long, got {} s",
                end - start
            ),
        ));
    }
    if end > now + MAX_FUTURE_SECONDS {
        return Err(ApiError::field(
            "invalid_field",
            &field("controlScope", "end"),
            "the window must end within a day from now",
        ));
    }
    let step = match (control.step, experiment.step) {
        (Some(a), Some(b)) if a > 0.0 && b > 0.0 && a != b => {
            return Err(ApiError::field(
                "invalid_field",
                &field("experimentScope", "step"),
                "the experiment scope's step must equal the control scope's",
            ));
        }
        (Some(step), _) | (None, Some(step)) if step > 0.0 => step,
        (Some(step), _) | (_, Some(step)) if !step.is_finite() || step < 0.0 => {
            return Err(ApiError::field(
                "invalid_field",
                &field("controlScope", "step"),
                format!("step must be a positive number of seconds, got {step}"),
            ));
        }
        _ => DEFAULT_STEP_SECONDS,
    };
    if (end - start) / step > MAX_POINTS {
        return Err(ApiError::field(
            "invalid_field",
            &field("controlScope", "step"),
            format!(
                "a {} s window at a step of {step} s is more than {MAX_POINTS} points per \
                 series; use a longer step",
                end - start
            ),
        ));
    }
    let thresholds = body
        .thresholds
        .ok_or_else(|| ApiError::field("missing_field", "thresholds", "thresholds is required"))?;
    let pass = thresholds.pass.ok_or_else(|| {
        ApiError::field(
            "missing_field",
            "thresholds.pass",
            "thresholds.pass is required",
        )
    })?;
    let marginal = thresholds.marginal.ok_or_else(|| {
        ApiError::field(
            "missing_field",
            "thresholds.marginal",
            "thresholds.marginal is required",
        )
    })?;
    if !(1.0..=100.0).contains(&pass) {
        return Err(ApiError::field(
            "invalid_field",
            "thresholds.pass",
            format!("thresholds.pass must be from 1 to 100, got {pass}"),
        ));
    }
    if !(1.0..=pass).contains(&marginal) {
        return Err(ApiError::field(
            "invalid_field",
            "thresholds.marginal",
            format!(
                "thresholds.marginal must be from 1 to thresholds.pass ({pass}), got {marginal}: \
                 at 0 a rollback's score would still read as marginal"
            ),
        ));
    }
    Ok(WindowRequest {
        baseline_scope,
        canary_scope,
        start,
        end,
        step,
        pass_score: pass,
        marginal_score: marginal,
        caller: Value::Null,
    })
}

/// A Kayenta scope as label matchers: matchers as they are, a bare value as
/// `LABEL="value"` with the server's `kayenta_scope_label`.
pub(crate) fn matchers(
    state: &ApiState,
    scope: Option<&str>,
    field: &str,
) -> Result<String, ApiError> {
    let scope = scope
        .map(str::trim)
        .filter(|scope| !scope.is_empty())
        .ok_or_else(|| ApiError::field("missing_field", field, format!("{field} is required")))?;
    super::fields::check_scope_limits(scope, field)?;
    check_scope(scope, field)?;
    if scope.contains('=') || scope.contains('~') {
        return Ok(scope.to_owned());
    }
    match &state.kayenta_scope_label {
        Some(label) => Ok(format!(
            "{label}=\"{}\"",
            scope.replace('\\', "\\\\").replace('"', "\\\"")
        )),
        None => Err(ApiError::field(
            "invalid_field",
            field,
            format!(
                "{field} {scope:?} is a bare value, and the server has no \
                 server.kayenta_scope_label to match it with: send label matchers \
                 (e.g. app=\"web\",track=\"canary\") or set the label"
            ),
        )),
    }
}

/// An RFC 3339 time as Unix seconds.
fn instant(text: Option<&str>, field: &str) -> Result<f64, ApiError> {
    let text = text.ok_or_else(|| {
        ApiError::field(
            "missing_field",
            field,
            format!("{field} is required (RFC 3339, e.g. 2026-12-07T10:00:00Z)"),
        )
    })?;
    let parsed = time::OffsetDateTime::parse(text.trim(), &time::format_description::well_known::Rfc3339)
        .map_err(|error| {
            ApiError::field(
                "invalid_field",
                field,
                format!("{field} must be an RFC 3339 time (e.g. 2026-12-07T10:00:00Z), got {text:?}: {error}"),
            )
        })?;
    Ok(parsed.unix_timestamp_nanos() as f64 / 1e9)
}

/// Unix seconds as an ISO 8601 UTC time.
pub(crate) fn iso(seconds: f64) -> String {
    let nanos = (seconds * 1e9).round() as i128;
    time::OffsetDateTime::from_unix_timestamp_nanos(nanos)
        .ok()
        .and_then(|time| {
            time.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}

/// `GET /kayenta/canary/{executionId}`: Kayenta's status response. `storageAccountName`
/// is accepted and not used.
#[utoipa::path(
    get,
    path = "/kayenta/canary/{id}",
    operation_id = "kayentaExecution",
    summary = "A Kayenta canary execution's status and result",
    description = "`complete` is true once the execution succeeded or failed; `status` is `not_started`, `running`, `succeeded` or `terminal`. A succeeded execution has `result.judgeResult` with `score.score` (what Argo compares with its thresholds), `groupScores` and per-metric `results`; a failed one `exception.details.errors`. `canary` adds canary's own verdict and reasons.",
    params(("id" = String, Path, description = "The `canaryExecutionId`.")),
    responses(
        (status = 200, description = "The execution.", body = Object),
        (status = 400, description = "A malformed id.", body = ErrorBody),
        (status = 404, description = "No such execution.", body = ErrorBody),
    )
)]
pub async fn get(
    State(state): State<ApiState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    query: QueryParams,
) -> Result<Json<Value>, ApiError> {
    caller(&state, &headers, Scope::Read)?;
    query_params(query)?;
    let id = Uuid::parse_str(&id).map_err(|_| {
        ApiError::parameter(
            "invalid_id",
            "executionId",
            format!("executionId must be a canaryExecutionId (a UUID), got {id:?}"),
        )
    })?;
    let execution = state
        .bounded_store_call(state.store.get_execution(id))
        .await?
        .filter(|execution| execution.kind == KIND_KAYENTA)
        .ok_or_else(|| ApiError::NotFound(format!("no canary execution {id}")))?;
    Ok(Json(status_response(&execution)))
}

/// Kayenta's `CanaryExecutionStatusResponse` for `execution`.
pub fn status_response(execution: &Execution) -> Value {
    let request: Option<WindowRequest> = serde_json::from_value(execution.request.clone()).ok();
    let caller = request
        .as_ref()
        .map_or(Value::Null, |request| request.caller.clone());
    let status = match execution.state {
        ExecutionState::Pending => "not_started",
        ExecutionState::Running => "running",
        ExecutionState::Succeeded => "succeeded",
        ExecutionState::Failed => "terminal",
    };
    let millis = |seconds: f64| (seconds * 1000.0).round() as i64;
    let mut response = json!({
        "application": caller.get("application"),
        "parentPipelineExecutionId": caller.get("parentPipelineExecutionId"),
        "pipelineId": execution.id.to_string(),
        "stageStatus": {"judge": status},
        "complete": execution.state.is_finished(),
        "status": status,
        "executionStatus": status.to_uppercase(),
        "canaryConfigId": execution.profile_name,
        "canaryExecutionRequest": caller.get("canaryExecutionRequest"),
        "metricsAccountName": execution.source,
        "configurationAccountName": caller.get("configurationAccountName"),
        "storageAccountName": caller.get("storageAccountName"),
        "buildTimeMillis": millis(execution.created_at),
        "buildTimeIso": iso(execution.created_at),
    });
    if let Some(finished) = execution.finished_at {
        response["endTimeMillis"] = json!(millis(finished));
        response["endTimeIso"] = json!(iso(finished));
    }
    if let Some(error) = &execution.error {
        response["exception"] = json!({"details": {"errors": [error]}});
    }
    let result: Option<WindowResult> = serde_json::from_value(execution.result.clone()).ok();
    if let (Some(result), Some(request)) = (result, request) {
        response["startTimeMillis"] = json!(millis(result.started_at));
        response["startTimeIso"] = json!(iso(result.started_at));
        response["result"] = json!({
            "judgeResult": judge_result(&result, &request),
            "canaryDuration": format!("PT{}S", request.end - request.start),
        });
        response["canary"] = json!({
            "verdict": result.judgement.verdict,
            "score": result.judgement.score,
            "reportedScore": result.reported_score,
            "reasons": result.judgement.reasons,
        });
    }
    response
}

/// Kayenta's `CanaryJudgeResult`.
fn judge_result(result: &WindowResult, request: &WindowRequest) -> Value {
    let judgement = &result.judgement;
    let score = result.reported_score;
    let classification = if score >= request.pass_score {
        "Pass"
    } else if score >= request.marginal_score {
        "Marginal"
    } else {
        "Fail"
    };
    let kayenta = judgement.metrics.iter().any(|m| m.kayenta_label.is_some());
    json!({
        "judgeName": if kayenta { "NetflixACAJudge-v1.0" } else { "canary" },
        "results": judgement.metrics.iter().map(metric_result).collect::<Vec<_>>(),
        "groupScores": group_scores(judgement)
            .into_iter()
            .map(|(name, score)| json!({"name": name, "score": score, "classification": ""}))
            .collect::<Vec<_>>(),
        "score": {
            "score": score,
            "classification": classification,
            "classificationReason": judgement.reasons.join("; "),
        },
    })
}

/// Each group's score: Kayenta's when its judge scored, else the share of passing
/// metrics among those that passed or failed (100 when none did).
fn group_scores(judgement: &Judgement) -> BTreeMap<String, f64> {
    if let Some(groups) = &judgement.group_scores {
        return groups.clone();
    }
    let mut tallies: BTreeMap<&str, (u32, u32)> = BTreeMap::new();
    for metric in &judgement.metrics {
        let tally = tallies.entry(metric.group.as_str()).or_default();
        match metric.classification {
            Classification::Pass => {
                tally.0 += 1;
                tally.1 += 1;
            }
            Classification::Fail => tally.1 += 1,
            _ => {}
        }
    }
    tallies
        .into_iter()
        .map(|(name, (pass, counted))| {
            let score = if counted == 0 {
                100.0
            } else {
                100.0 * f64::from(pass) / f64::from(counted)
            };
            (name.to_owned(), score)
        })
        .collect()
}

/// Kayenta's `CanaryAnalysisResult` for one metric.
fn metric_result(metric: &MetricResult) -> Value {
    let label = metric.kayenta_label.clone().unwrap_or_else(|| {
        match metric.classification {
            Classification::Pass => "Pass",
            Classification::Fail => {
                let higher = metric
                    .shift_estimate
                    .map_or(metric.direction != Some(Direction::Decrease), |shift| {
                        shift > 0.0
                    });
                if higher { "High" } else { "Low" }
            }
            Classification::Error => "Error",
            Classification::Inconclusive | Classification::NotCompared => "Nodata",
        }
        .to_owned()
    });
    json!({
        "name": metric.name,
        "id": metric.name,
        "tags": {},
        "classification": label,
        "classificationReason": metric.reason,
        "groups": [metric.group],
        "experimentMetadata": {"stats": stats(metric.canary.as_ref())},
        "controlMetadata": {"stats": stats(metric.baseline.as_ref())},
        "resultMetadata": {
            "shiftEstimate": metric.shift_estimate,
            "shiftInterval": metric.shift_ci,
            "pValue": metric.p_value,
        },
        "critical": metric.severity == crate::domain::Severity::Critical,
    })
}

/// Kayenta's per-side `stats`.
fn stats(side: Option<&SideSummary>) -> Value {
    side.map_or_else(
        || json!({"count": 0}),
        |side| {
            json!({
                "count": side.n,
                "mean": side.mean,
                "median": side.median,
                "min": side.min,
                "max": side.max,
            })
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_times_with_offsets_and_fractions_read_as_unix_seconds() {
        assert_eq!(
            instant(Some("2026-12-07T10:00:00Z"), "f").unwrap(),
            1_796_637_600.0
        );
        assert_eq!(
            instant(Some("2026-12-07T11:00:00+01:00"), "f").unwrap(),
            1_796_637_600.0
        );
        assert_eq!(
            instant(Some("2026-12-07T10:00:00.5Z"), "f").unwrap(),
            1_796_637_600.5
        );
        for bad in ["", "yesterday", "2026-12-07", "1796637600"] {
            let error = instant(Some(bad), "scopes.default.controlScope.start").unwrap_err();
            assert!(
                format!("{error:?}").contains("scopes.default.controlScope.start"),
                "{error:?}"
            );
        }
        assert_eq!(iso(1_796_637_600.0), "2026-12-07T10:00:00Z");
    }
}
