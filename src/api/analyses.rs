//! `/v1/analyses`: submit an analysis, inspect one, list them, long-poll a verdict and
//! record manual actions.
//!
//! Submissions are validated field by field before anything is stored: the profile,
//! source and actuator must be names the server knows (a 422 lists the known ones), and
//! the profile must have a rollout plan. The profile's text is stored with the analysis,
//! so a later edit of the file cannot change a running analysis.
//!
//! Manual actions are only *recorded* here, through [`Store::apply_manual_action`] (one
//! transaction with its audit entry); the workers carry them out. Pause and resume set
//! the state directly. Promote and rollback move the analysis to its claimable state
//! (`running`, even before its first look) and the store keeps the request as
//! the analysis's `requested_action`, due at once, until a worker has carried it out
//! ([`pending_override`]).
//!
//! [`Store::apply_manual_action`]: crate::store::Store::apply_manual_action

use std::time::Duration;

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use utoipa::{IntoParams, ToSchema};

use super::error::ErrorBody;
use uuid::Uuid;

use super::auth::{ActScope, Authorized, ReadScope, SubmitScope};
use super::error::ApiError;
use super::state::{ApiState, MAX_WAIT};
use crate::domain::{HumanDuration, Profile, Verdict};
use crate::store::{
    ActuationRecord, Analysis, AnalysisState, AuditAction, AuditEntry, LookRecord, ManualAction,
    NewAnalysis, StoreError,
};

/// The path of every operation on one analysis.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct AnalysisId {
    /// The analysis id returned by POST /v1/analyses.
    pub id: Uuid,
}

/// The long-poll of `GET /v1/analyses/{id}/verdict` and `/argo` (read by [`parse_wait`]).
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct WaitQuery {
    /// Long-poll: answer as soon as the analysis is final, or after this long (or when
    /// the server begins to stop) with its current state. `120s`, `2m`, `1m30s` or a
    /// finite number of seconds (`120`); at most 300 s; default 0.
    #[param(example = "120s")]
    pub wait: Option<String>,
}

/// The query of `GET /v1/analyses` (read by [`list`], which names the field at fault).
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Only analyses in this state.
    pub state: Option<AnalysisState>,
    /// 1 to 1000; default 50.
    #[param(minimum = 1, maximum = 1000, default = 50)]
    pub limit: Option<u32>,
    /// The previous page's next_cursor.
    pub cursor: Option<String>,
}

/// The page size of `GET /v1/analyses` when `limit` is not given.
pub const DEFAULT_PAGE: u32 = 50;

/// What `canary submit` sends: `POST /v1/analyses`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Submission {
    /// The profile's name: `NAME` for `NAME.toml` in the server's profiles directory.
    pub profile: String,
    /// Label matchers that select the baseline; at most 4 KiB, no braces, control or
    /// invisible characters.
    #[schema(required = false, default = "track=\"baseline\"")]
    pub baseline_scope: String,
    /// Label matchers that select the canary; at most 4 KiB, no braces, control or
    /// invisible characters.
    #[schema(required = false, default = "track=\"canary\"")]
    pub canary_scope: String,
    /// The feature flag to move: no whitespace, control, invisible or
    /// bidirectional-control characters (Unicode Cc, Cf).
    #[schema(max_length = 200)]
    pub flag: String,
    /// A metric source named in the server's settings.
    pub source: String,
    /// An actuator named in the server's settings.
    pub actuator: String,
    /// Judge and record, never change the flag.
    #[schema(required = false, default = false)]
    pub dry_run: bool,
    /// When to start, Unix seconds, finite and at most a year from now; absent starts
    /// at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_at: Option<f64>,
    /// Take over a flag that is already beyond the plan's first stage: start from the
    /// stage at or below its current share, never lowering it without a verdict.
    /// Without it such a flag is refused (the analysis ends `failed`, flag untouched).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    #[schema(default = false)]
    pub adopt: bool,
}

/// The body as received: every field optional, so a missing one gets a 422 naming it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSubmission {
    profile: Option<String>,
    baseline_scope: Option<String>,
    canary_scope: Option<String>,
    flag: Option<String>,
    source: Option<String>,
    actuator: Option<String>,
    dry_run: Option<bool>,
    start_at: Option<f64>,
    adopt: Option<bool>,
}

/// Where a started analysis stands in its rollout plan.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[schema(as = Stage)]
pub struct StageView {
    /// 0-based stage index.
    pub index: usize,
    /// The stage's name in the profile (`"25%"`, `"pilot"`), when the profile names it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// How many stages the plan has.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub of: Option<usize>,
}

/// An analysis as the API shows it (lists and the detail view).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[schema(as = Analysis)]
pub struct AnalysisView {
    /// Its id.
    pub id: Uuid,
    /// The profile's name.
    pub profile: String,
    /// The flag.
    pub flag: String,
    /// The metric source's name.
    pub source: String,
    /// The actuator's name.
    pub actuator: String,
    /// Baseline label matchers.
    pub baseline_scope: String,
    /// Canary label matchers.
    pub canary_scope: String,
    /// Whether the flag is left alone.
    pub dry_run: bool,
    /// Whether the submission asked to adopt a flag already beyond the first stage.
    #[serde(default)]
    pub adopt: bool,
    /// The requested start, Unix seconds.
    pub start_at: Option<f64>,
    /// Where it stands.
    pub state: AnalysisState,
    /// Whether the state is final (promoted, rolled back, rollback failed, failed).
    #[serde(rename = "final")]
    pub is_final: bool,
    /// The current stage, once started.
    pub stage: Option<StageView>,
    /// The canary's traffic in percent, once started.
    pub traffic: Option<f64>,
    /// The latest look's verdict.
    pub latest_verdict: Option<Verdict>,
    /// Why it stands where it does, deciding reasons first.
    pub reasons: Vec<String>,
    /// When the next look is due, Unix seconds.
    pub next_look_at: Option<f64>,
    /// Bumped by every change; pass it as `expected_version` to an action.
    pub version: i64,
    /// When it was submitted, Unix seconds.
    pub created_at: f64,
    /// When it last changed, Unix seconds.
    pub updated_at: f64,
}

/// `GET /v1/analyses/{id}`: the analysis with its history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct AnalysisDetail {
    /// The analysis.
    #[serde(flatten)]
    pub analysis: AnalysisView,
    /// A manual promote or rollback recorded and not yet carried out by a worker.
    pub pending_action: Option<AuditAction>,
    /// Every look, by look number: verdict, decision and the full look record.
    pub history: Vec<LookRecord>,
    /// Every flag change, in the order intended.
    pub actuations: Vec<ActuationRecord>,
    /// Every manual action, oldest first.
    pub audit: Vec<AuditEntry>,
}

/// `GET /v1/analyses`: one page.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct AnalysisPage {
    /// The analyses, oldest first.
    pub items: Vec<AnalysisView>,
    /// Pass as `cursor` for the next page; `null` on the last.
    pub next_cursor: Option<String>,
}

/// `GET /v1/analyses/{id}/verdict`: what a pipeline waits for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[schema(as = Verdict)]
pub struct VerdictView {
    /// The analysis.
    pub id: Uuid,
    /// Where it stands.
    pub state: AnalysisState,
    /// Whether it is over. Until it is, `verdict` is the latest look's.
    #[serde(rename = "final")]
    pub is_final: bool,
    /// `promote` or `rollback` once final (`null` for `failed`: the analysis could not
    /// run); before that, the latest look's verdict (`promote`, `hold`, `rollback`) or
    /// `null` before the first look.
    pub verdict: Option<Verdict>,
    /// Why, deciding reasons first.
    pub reasons: Vec<String>,
    /// The current stage.
    pub stage: Option<StageView>,
    /// The canary's traffic in percent.
    pub traffic: Option<f64>,
    /// When it last changed, Unix seconds.
    pub updated_at: f64,
}

/// The body of `POST /v1/analyses/{id}/actions`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ActionRequest {
    /// `pause`, `resume`, `promote` or `rollback`.
    pub action: AuditAction,
    /// Why, for the audit log.
    pub reason: String,
    /// The version read before deciding; absent means the current one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected_version: Option<i64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAction {
    action: Option<String>,
    reason: Option<String>,
    expected_version: Option<i64>,
}

/// The answer to an action: the analysis afterwards and the audit entry written.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ActionResponse {
    /// The analysis after the action.
    pub analysis: AnalysisView,
    /// The audit entry.
    pub audit: AuditEntry,
    /// The action a worker still has to carry out (promote, rollback), if any.
    pub pending_action: Option<AuditAction>,
}

impl AnalysisView {
    /// The view of a stored analysis.
    pub fn of(analysis: &Analysis) -> Self {
        Self {
            id: analysis.id,
            profile: analysis.profile_name.clone(),
            flag: analysis.flag.clone(),
            source: analysis.source.clone(),
            actuator: analysis.actuator.clone(),
            baseline_scope: analysis.baseline_scope.clone(),
            canary_scope: analysis.canary_scope.clone(),
            dry_run: analysis.dry_run,
            adopt: analysis.adopt,
            start_at: analysis.start_at,
            state: analysis.state,
            is_final: analysis.state.is_final(),
            stage: stage_of(analysis),
            traffic: analysis.traffic,
            latest_verdict: analysis.latest_verdict,
            reasons: analysis.reasons.clone(),
            next_look_at: analysis.next_look_at,
            version: analysis.version,
            created_at: analysis.created_at,
            updated_at: analysis.updated_at,
        }
    }
}

impl VerdictView {
    /// The verdict view of a stored analysis.
    pub fn of(analysis: &Analysis) -> Self {
        Self {
            id: analysis.id,
            state: analysis.state,
            is_final: analysis.state.is_final(),
            verdict: final_verdict(analysis.state).or_else(|| {
                (!analysis.state.is_final())
                    .then_some(analysis.latest_verdict)
                    .flatten()
            }),
            reasons: analysis.reasons.clone(),
            stage: stage_of(analysis),
            traffic: analysis.traffic,
            updated_at: analysis.updated_at,
        }
    }
}

/// The verdict a final state stands for: `promote` for promoted, `rollback` for rolled
/// back and rollback failed (the canary was judged worse either way). `None` for
/// `failed` and for states that are not final.
pub fn final_verdict(state: AnalysisState) -> Option<Verdict> {
    match state {
        AnalysisState::Promoted => Some(Verdict::Promote),
        AnalysisState::RolledBack | AnalysisState::RollbackFailed => Some(Verdict::Rollback),
        _ => None,
    }
}

/// The stage, named from the stored profile snapshot when it parses.
fn stage_of(analysis: &Analysis) -> Option<StageView> {
    let index = analysis.current_stage?;
    let plan = Profile::parse(&analysis.profile_text, &analysis.profile_name)
        .ok()
        .and_then(|profile| profile.plan);
    Some(StageView {
        index,
        name: plan
            .as_ref()
            .and_then(|plan| plan.stages.get(index))
            .map(|stage| stage.name.clone()),
        of: plan.map(|plan| plan.stages.len()),
    })
}

/// The manual promote or rollback a worker still has to carry out.
pub fn pending_override(analysis: &Analysis) -> Option<AuditAction> {
    analysis
        .requested_action
        .filter(|action| matches!(action, AuditAction::Promote | AuditAction::Rollback))
        .filter(|_| !analysis.state.is_final())
}

/// The state a manual action moves an analysis to, or why it is not allowed from
/// `analysis.state`.
pub fn action_target(analysis: &Analysis, action: AuditAction) -> Result<AnalysisState, String> {
    use AnalysisState::*;
    let allowed: &[AnalysisState] = match action {
        AuditAction::Pause => &[Pending, Running, AwaitingReview],
        AuditAction::Resume => &[Paused, AwaitingReview],
        AuditAction::Promote => &[Pending, Running, Paused, AwaitingReview],
        AuditAction::Rollback => &[Pending, Running, Paused, AwaitingReview, RollbackFailed],
    };
    if !allowed.contains(&analysis.state) {
        return Err(format!(
            "cannot {} an analysis that is {}; allowed from: {}",
            action.as_str(),
            analysis.state,
            allowed
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    // Before its first look an analysis has no runner snapshot: a resume sends it back
    // to `pending`, so the worker starts it from the beginning.
    let claimable = if analysis.current_stage.is_none() {
        Pending
    } else {
        Running
    };
    Ok(match action {
        AuditAction::Pause => Paused,
        AuditAction::Resume => claimable,
        // The store keeps the request as `requested_action` on a running analysis, due
        // at once; a worker carries it out even before the first look.
        AuditAction::Promote | AuditAction::Rollback => Running,
    })
}

/// Parses a JSON body, telling syntax errors (400, with serde's line and column) from
/// fields of the wrong type or unknown fields (422, naming the field).
pub(crate) fn parse_body<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    // `123`, `"x"`, `[1]`: valid JSON but not an object, so no field is at fault (and
    // serde would read an array as the struct's fields by position).
    if body.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{')
        && serde_json::from_slice::<serde::de::IgnoredAny>(body).is_ok()
    {
        return Err(ApiError::field(
            "invalid_body",
            "body",
            format!(
                "the body must be a JSON object, got {}",
                super::fields::json_kind(body)
            ),
        ));
    }
    let mut deserializer = serde_json::Deserializer::from_slice(body);
    let parsed: Result<T, _> = serde_path_to_error::deserialize(&mut deserializer);
    let value = match parsed {
        Ok(value) => value,
        Err(error) => {
            let path = error.path().to_string();
            let inner = error.into_inner();
            return Err(match inner.classify() {
                serde_json::error::Category::Data => {
                    let message = inner.to_string();
                    let field = if path == "." {
                        // An unknown field: serde names it between backquotes.
                        message.split('`').nth(1).unwrap_or("").to_owned()
                    } else {
                        path
                    };
                    let code = if message.starts_with("unknown field") {
                        "unknown_field"
                    } else {
                        "invalid_field"
                    };
                    ApiError::field(code, &field, message)
                }
                _ => ApiError::MalformedJson(format!("the body is not valid JSON: {inner}")),
            });
        }
    };
    deserializer
        .end()
        .map_err(|error| ApiError::MalformedJson(format!("the body is not valid JSON: {error}")))?;
    Ok(value)
}

fn required(value: Option<String>, field: &str) -> Result<String, ApiError> {
    match value {
        Some(text) if !text.trim().is_empty() => Ok(text.trim().to_owned()),
        Some(_) => Err(ApiError::field(
            "empty_field",
            field,
            format!("{field} must not be empty"),
        )),
        None => Err(ApiError::field(
            "missing_field",
            field,
            format!("{field} is required"),
        )),
    }
}

fn check_known(value: &str, field: &str, known: &[String]) -> Result<(), ApiError> {
    if known.iter().any(|name| name == value) {
        Ok(())
    } else {
        Err(ApiError::unknown_name(
            match field {
                "source" => "unknown_source",
                "actuator" => "unknown_actuator",
                _ => "unknown_profile",
            },
            field,
            value,
            known,
        ))
    }
}

/// Label matchers are pasted into the profile's queries: refuse characters that would
/// end the selector or the query.
pub(crate) fn check_scope(scope: &str, field: &str) -> Result<(), ApiError> {
    if scope
        .chars()
        .any(|c| matches!(c, '{' | '}') || c.is_control())
    {
        return Err(ApiError::field(
            "invalid_field",
            field,
            format!(
                "{field} must be label matchers without braces, e.g. track=\"canary\"; got {scope:?}"
            ),
        ));
    }
    Ok(())
}

/// The names of the `*.toml` profiles in the profiles directory, sorted.
pub(crate) fn profile_names(state: &ApiState) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(&state.profiles_directory)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .filter_map(|entry| {
                    let path = entry.path();
                    (path.extension()? == "toml")
                        .then(|| path.file_stem()?.to_str().map(str::to_owned))
                        .flatten()
                })
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// The profile's text, validated and checked to have a rollout plan.
fn load_profile(state: &ApiState, name: &str) -> Result<String, ApiError> {
    let (text, profile) = read_profile(state, name, "profile")?;
    if profile.plan.is_none() {
        return Err(ApiError::field(
            "profile_without_rollout_plan",
            "profile",
            format!(
                "profile {name:?} has no rollout plan ([[stages]]); the server can only run staged rollouts"
            ),
        ));
    }
    Ok(text)
}

/// A profile of the profiles directory that is listed there (so no path escapes it),
/// read and parsed: its text and the profile, or a 422 naming `field`.
pub(crate) fn read_profile(
    state: &ApiState,
    name: &str,
    field: &str,
) -> Result<(String, Profile), ApiError> {
    let names = profile_names(state);
    if !names.iter().any(|known| known == name) {
        return Err(ApiError::unknown_name(
            "unknown_profile",
            field,
            name,
            &names,
        ));
    }
    let path = state.profiles_directory.join(format!("{name}.toml"));
    let text = std::fs::read_to_string(&path).map_err(|error| {
        ApiError::Internal(format!("cannot read profile {}: {error}", path.display()))
    })?;
    let profile = Profile::parse(&text, &format!("{name}.toml")).map_err(|error| {
        ApiError::field(
            "invalid_profile",
            field,
            format!("profile {name:?} is invalid: {error}"),
        )
    })?;
    Ok((text, profile))
}

/// A submission body parsed and validated as `POST /v1/analyses` does it (the same
/// errors, naming the field).
pub(crate) fn parse_submission(state: &ApiState, body: &[u8]) -> Result<NewAnalysis, ApiError> {
    validate_submission(state, parse_body(body)?)
}

fn validate_submission(state: &ApiState, raw: RawSubmission) -> Result<NewAnalysis, ApiError> {
    let profile_name = required(raw.profile, "profile")?;
    let flag = required(raw.flag, "flag")?;
    super::fields::check_flag_key(&flag)?;
    let source = required(raw.source, "source")?;
    check_known(&source, "source", &state.sources)?;
    let actuator = required(raw.actuator, "actuator")?;
    check_known(&actuator, "actuator", &state.actuators)?;
    let baseline_scope = raw
        .baseline_scope
        .unwrap_or_else(|| r#"track="baseline""#.to_owned());
    let canary_scope = raw
        .canary_scope
        .unwrap_or_else(|| r#"track="canary""#.to_owned());
    let baseline_scope = required(Some(baseline_scope), "baseline_scope")?;
    let canary_scope = required(Some(canary_scope), "canary_scope")?;
    for (scope, field) in [
        (&baseline_scope, "baseline_scope"),
        (&canary_scope, "canary_scope"),
    ] {
        super::fields::check_scope_limits(scope, field)?;
        check_scope(scope, field)?;
    }
    if baseline_scope == canary_scope {
        return Err(ApiError::field(
            "invalid_field",
            "canary_scope",
            "canary_scope must select other series than baseline_scope",
        ));
    }
    if let Some(start) = raw.start_at {
        super::fields::check_start_at(start, state.clock.now())?;
    }
    let profile_text = load_profile(state, &profile_name)?;
    let dry_run = raw.dry_run.unwrap_or(false);
    // A dry run never moves the flag, so it owns nothing.
    let owner = (!dry_run).then(|| {
        state
            .actuator_owners
            .get(&actuator)
            .cloned()
            .unwrap_or_else(|| format!("actuator:{actuator}"))
    });
    Ok(NewAnalysis {
        profile_name,
        profile_text,
        flag,
        source,
        actuator,
        baseline_scope,
        canary_scope,
        dry_run,
        start_at: raw.start_at,
        owner,
        adopt: raw.adopt.unwrap_or(false),
        submit_key: None,
    })
}

pub(crate) fn parse_id(text: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(text).map_err(|_| {
        ApiError::parameter(
            "malformed_id",
            "id",
            format!("{text:?} is not an analysis id (a UUID)"),
        )
    })
}

pub(crate) async fn read(state: &ApiState, id: Uuid) -> Result<Analysis, ApiError> {
    state
        .store
        .get_analysis(id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no analysis {id}")))
}

pub(crate) type QueryParams = Result<Query<BTreeMap<String, String>>, QueryRejection>;

pub(crate) fn query_params(query: QueryParams) -> Result<BTreeMap<String, String>, ApiError> {
    query
        .map(|Query(params)| params)
        .map_err(|rejection| ApiError::BadRequest(rejection.body_text()))
}

/// Parses `?wait=`: `120s`, `2m`, `1m30s` or a number of seconds (`120`, `0.5`); absent
/// means no wait. Longer than [`MAX_WAIT`] is cut to it.
pub fn parse_wait(text: Option<&str>) -> Result<Duration, ApiError> {
    let Some(text) = text.map(str::trim).filter(|t| !t.is_empty()) else {
        return Ok(Duration::ZERO);
    };
    let wait = match text.parse::<f64>() {
        Ok(seconds) if seconds.is_finite() && seconds >= 0.0 => {
            Duration::from_secs_f64(seconds.min(MAX_WAIT.as_secs_f64()))
        }
        Ok(seconds) if !seconds.is_finite() => {
            return Err(ApiError::parameter(
                "invalid_wait",
                "wait",
                format!(
                    "wait must be a finite number of seconds or a duration such as 120s, got {text:?}"
                ),
            ));
        }
        Ok(_) => {
            return Err(ApiError::parameter(
                "invalid_wait",
                "wait",
                format!("wait must not be negative, got {text:?}"),
            ));
        }
        Err(_) => HumanDuration::parse(text)
            .map(HumanDuration::get)
            .map_err(|message| {
                ApiError::parameter("invalid_wait", "wait", format!("wait {message}"))
            })?,
    };
    Ok(wait.min(MAX_WAIT))
}

/// Reads the analysis until it is final, `wait` has passed or the server is stopping
/// ([`ApiState::shutdown`]), every [`ApiState::poll_interval`]; returns the last read.
pub(crate) async fn wait_for_final(
    state: &ApiState,
    id: Uuid,
    wait: Duration,
) -> Result<Analysis, ApiError> {
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let analysis = read(state, id).await?;
        let now = tokio::time::Instant::now();
        if analysis.state.is_final() || now >= deadline || state.shutdown.is_stopping() {
            return Ok(analysis);
        }
        // At shutdown the loop reads once more and answers with the current state.
        tokio::select! {
            () = tokio::time::sleep(state.poll_interval.min(deadline - now)) => {}
            () = state.shutdown.stopped() => {}
        }
    }
}

/// `POST /v1/analyses`: 201 with the analysis and a `Location` header; 401 without a
/// known bearer token and 403 with one lacking scope `submit` (when the server has
/// tokens); 400 for a body that is not JSON; 415 for a body not sent as JSON; 422 for a
/// missing, empty or unknown field; 409 (`flag_owned`, naming the owner's id and state)
/// when another active analysis owns the flag on the same flag store.
#[utoipa::path(
    post,
    path = "/v1/analyses",
    operation_id = "submitAnalysis",
    summary = "Submit an analysis",
    description = "Validates every field, stores the profile's text with the analysis and returns it in state `pending`. Workers start it at `start_at` (or at once). One analysis per flag at a time: while another analysis on the same flag store (the actuator's target, however it is named) and flag is pending, running, paused, awaiting review or rollback_failed, the submission is refused with a 409 (dry runs own no flag).",
    request_body = Submission,
    responses(
        (status = 201, description = "Stored.", body = AnalysisView,
            headers(("Location" = String, description = "/v1/analyses/{id}"))),
        (status = 400, description = "The body is not JSON (`malformed_json`; the message has the line and column).", body = ErrorBody),
        (status = 422, description = "A field is missing, empty, of the wrong type, unknown or beyond its limit (flag key characters and length, scope length, `start_at` more than a year ahead); or the profile, source or actuator is not known (`allowed` lists the known names), or the profile has no rollout plan; or the body is not a JSON object (`invalid_body`, field `body`). `field` names the field.", body = ErrorBody),
        (status = 409, description = "Another active analysis owns the flag (`flag_owned`, field `flag`); the message names its id and state.", body = ErrorBody),
        (status = 503, description = "The store is unavailable, or does not answer within `[store] api_timeout`.", body = ErrorBody),
    )
)]
pub async fn create(
    State(state): State<ApiState>,
    authorized: Authorized<SubmitScope>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let new = parse_submission(&state, &body)?;
    let analysis = state
        .bounded_store_call(state.store.create_analysis(new, state.clock.now()))
        .await?;
    tracing::info!(analysis = %analysis.id, profile = %analysis.profile_name, flag = %analysis.flag, actor = %authorized.caller.actor, "analysis submitted");
    let location = format!("/v1/analyses/{}", analysis.id);
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, location)],
        Json(AnalysisView::of(&analysis)),
    )
        .into_response())
}

/// `GET /v1/analyses/{id}`: 200 with the analysis, its looks, actuations and audit log;
/// 400 for an id that is not a UUID; 404 for an unknown one.
#[utoipa::path(
    get,
    path = "/v1/analyses/{id}",
    operation_id = "getAnalysis",
    summary = "An analysis with its history of looks, actuations and audit log",
    params(AnalysisId),
    responses(
        (status = 200, description = "The analysis.", body = AnalysisDetail),
        (status = 400, description = "The id is not a UUID (`malformed_id`).", body = ErrorBody),
        (status = 404, description = "No such analysis.", body = ErrorBody),
    )
)]
pub async fn get(
    State(state): State<ApiState>,
    _: Authorized<ReadScope>,
    Path(id): Path<String>,
) -> Result<Json<AnalysisDetail>, ApiError> {
    let id = parse_id(&id)?;
    let analysis = read(&state, id).await?;
    let history = state.store.list_looks(id).await?;
    let actuations = state.store.list_actuations(id).await?;
    let audit = state.store.audit_log(id).await?;
    Ok(Json(AnalysisDetail {
        pending_action: pending_override(&analysis),
        analysis: AnalysisView::of(&analysis),
        history,
        actuations,
        audit,
    }))
}

/// `GET /v1/analyses?state=&limit=&cursor=`: 200 with a page, oldest first; 400 for an
/// unknown state, a limit outside 1..=1000 or a malformed cursor.
#[utoipa::path(
    get,
    path = "/v1/analyses",
    operation_id = "listAnalyses",
    summary = "List analyses, oldest first, with keyset paging",
    params(ListQuery),
    responses(
        (status = 200, description = "One page.", body = AnalysisPage),
        (status = 400, description = "Unknown state, limit out of range or malformed cursor.", body = ErrorBody),
    )
)]
pub async fn list(
    State(state): State<ApiState>,
    _: Authorized<ReadScope>,
    query: QueryParams,
) -> Result<Json<AnalysisPage>, ApiError> {
    let params = query_params(query)?;
    let state_filter = params
        .get("state")
        .map(|name| {
            name.parse::<AnalysisState>()
                .map_err(|_| ApiError::BadParameter {
                    code: "invalid_state",
                    field: "state".to_owned(),
                    message: format!("unknown state {name:?}"),
                    allowed: Some(
                        AnalysisState::ALL
                            .iter()
                            .map(|s| s.as_str().to_owned())
                            .collect(),
                    ),
                })
        })
        .transpose()?;
    let limit = match params.get("limit") {
        None => DEFAULT_PAGE,
        Some(text) => text
            .parse::<u32>()
            .ok()
            .filter(|limit| (1..=crate::store::MAX_PAGE).contains(limit))
            .ok_or_else(|| {
                ApiError::parameter(
                    "invalid_limit",
                    "limit",
                    format!(
                        "limit must be a whole number from 1 to {}, got {text:?}",
                        crate::store::MAX_PAGE
                    ),
                )
            })?,
    };
    let page = state
        .store
        .list_analyses(
            state_filter,
            limit,
            params.get("cursor").map(String::as_str),
        )
        .await
        .map_err(|error| match error {
            StoreError::Invalid(message) => {
                ApiError::parameter("invalid_cursor", "cursor", message)
            }
            other => other.into(),
        })?;
    Ok(Json(AnalysisPage {
        items: page.items.iter().map(AnalysisView::of).collect(),
        next_cursor: page.next_cursor,
    }))
}

/// `GET /v1/analyses/{id}/verdict?wait=120s`: 200 as soon as the analysis is final, or
/// with its current state when the wait runs out (at most 300 s) or the server begins to
/// stop; 400 for a bad id or wait; 404 for an unknown id.
#[utoipa::path(
    get,
    path = "/v1/analyses/{id}/verdict",
    operation_id = "waitForVerdict",
    summary = "Long-poll the verdict",
    params(AnalysisId, WaitQuery),
    responses(
        (status = 200, description = "The verdict: `final` says whether it is the last word.", body = VerdictView),
        (status = 400, description = "Malformed id or wait.", body = ErrorBody),
        (status = 404, description = "No such analysis.", body = ErrorBody),
    )
)]
pub async fn verdict(
    State(state): State<ApiState>,
    _: Authorized<ReadScope>,
    Path(id): Path<String>,
    query: QueryParams,
) -> Result<Json<VerdictView>, ApiError> {
    let id = parse_id(&id)?;
    let wait = parse_wait(query_params(query)?.get("wait").map(String::as_str))?;
    let analysis = wait_for_final(&state, id, wait).await?;
    Ok(Json(VerdictView::of(&analysis)))
}

/// `POST /v1/analyses/{id}/actions`: 200 with the analysis and its audit entry; 401
/// without the bearer token or with a wrong one; 403 when the server has no token; 422
/// for an unknown action or a missing reason; 404 for an unknown id; 409 when the action
/// is not allowed from the analysis's state or the version moved.
#[utoipa::path(
    post,
    path = "/v1/analyses/{id}/actions",
    operation_id = "applyAction",
    summary = "Pause, resume, promote or roll back an analysis (audited)",
    description = "Recorded in the audit log with the actor `api-token` (server.auth_token) or `api-token:NAME` (a named token). Promote and rollback are carried out by a worker: until then the analysis shows `pending_action`.",
    params(AnalysisId),
    request_body = ActionRequest,
    responses(
        (status = 200, description = "Recorded.", body = ActionResponse),
        (status = 400, description = "Malformed id or body.", body = ErrorBody),
        (status = 404, description = "No such analysis.", body = ErrorBody),
        (status = 409, description = "Not allowed from the analysis's state, or the analysis changed since `expected_version`.", body = ErrorBody),
        (status = 422, description = "Unknown action or missing reason.", body = ErrorBody),
    )
)]
pub async fn action(
    State(state): State<ApiState>,
    authorized: Authorized<ActScope>,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Json<ActionResponse>, ApiError> {
    let actor = authorized.caller.actor;
    let id = parse_id(&id)?;
    let raw: RawAction = parse_body(&body)?;
    let action_name = required(raw.action, "action")?;
    let action = action_name.parse::<AuditAction>().map_err(|_| {
        ApiError::unknown_name(
            "unknown_action",
            "action",
            &action_name,
            &["pause", "resume", "promote", "rollback"].map(str::to_owned),
        )
    })?;
    let reason = required(raw.reason, "reason")?;
    let analysis = read(&state, id).await?;
    let new_state = action_target(&analysis, action).map_err(ApiError::Conflict)?;
    let updated = state
        .store
        .apply_manual_action(
            id,
            ManualAction {
                actor: actor.clone(),
                action,
                reason,
                new_state,
                expected_version: raw.expected_version.unwrap_or(analysis.version),
            },
            state.clock.now(),
        )
        .await?;
    let audit = state.store.audit_log(id).await?;
    let entry = audit
        .last()
        .cloned()
        .ok_or_else(|| ApiError::Internal("the audit entry was not written".to_owned()))?;
    tracing::info!(analysis = %id, action = action.as_str(), %actor, to = %new_state, "manual action recorded");
    Ok(Json(ActionResponse {
        pending_action: pending_override(&updated),
        analysis: AnalysisView::of(&updated),
        audit: entry,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wait_accepts_units_and_plain_seconds_and_is_capped() {
        assert_eq!(parse_wait(None).unwrap(), Duration::ZERO);
        assert_eq!(parse_wait(Some("0")).unwrap(), Duration::ZERO);
        assert_eq!(parse_wait(Some("120s")).unwrap(), Duration::from_secs(120));
        assert_eq!(parse_wait(Some("2m")).unwrap(), Duration::from_secs(120));
        assert_eq!(parse_wait(Some("120")).unwrap(), Duration::from_secs(120));
        assert_eq!(parse_wait(Some("1h")).unwrap(), MAX_WAIT);
        assert_eq!(parse_wait(Some("100000")).unwrap(), MAX_WAIT);
        assert!(parse_wait(Some("soon")).is_err());
        assert!(parse_wait(Some("-1")).is_err());
    }

    #[test]
    fn a_syntax_error_is_malformed_json_and_a_wrong_type_names_the_field() {
        let error = parse_body::<RawSubmission>(b"{\"profile\": ").unwrap_err();
        assert!(matches!(error, ApiError::MalformedJson(ref m) if m.contains("line 1")));
        let error = parse_body::<RawSubmission>(br#"{"dry_run": "yes"}"#).unwrap_err();
        assert!(matches!(error, ApiError::InvalidField { ref field, .. } if field == "dry_run"));
        let error = parse_body::<RawSubmission>(br#"{"flagg": "x"}"#).unwrap_err();
        assert!(
            matches!(error, ApiError::InvalidField { ref field, code: "unknown_field", .. } if field == "flagg")
        );
        let error = parse_body::<RawSubmission>(br#"{} {}"#).unwrap_err();
        assert!(matches!(error, ApiError::MalformedJson(_)));
    }

    #[test]
    fn a_body_that_is_not_an_object_says_so_and_invalid_utf8_names_its_place() {
        for (body, kind) in [
            (&b"123"[..], "a number"),
            (b"\"x\"", "a string"),
            (b"[1, 2]", "an array"),
            (b"null", "null"),
        ] {
            let error = parse_body::<RawSubmission>(body).unwrap_err();
            let (_, detail) = error.status_and_body();
            assert_eq!(detail.error.field.as_deref(), Some("body"), "{body:?}");
            assert!(
                detail
                    .error
                    .message
                    .ends_with(&format!("must be a JSON object, got {kind}")),
                "{detail:?}"
            );
        }
        let error = parse_body::<RawSubmission>(b"{\n\"flag\": \"\xff\"}").unwrap_err();
        let (_, detail) = error.status_and_body();
        assert!(detail.error.message.contains("line 2 column"), "{detail:?}");
    }

    #[test]
    fn a_wait_that_is_not_finite_says_so() {
        for text in ["NaN", "inf", "-inf", "infinity"] {
            let error = parse_wait(Some(text)).unwrap_err();
            let (_, detail) = error.status_and_body();
            assert_eq!(detail.error.field.as_deref(), Some("wait"));
            assert!(
                detail.error.message.contains("finite"),
                "{text}: {detail:?}"
            );
        }
    }
}
