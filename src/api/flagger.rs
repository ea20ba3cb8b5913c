//! Flagger's webhooks: `POST /v1/flagger/{hook}`, the gates a Flagger `Canary`'s
//! `analysis.webhooks` call, answered from canary's judgement of the live window.
//!
//! Flagger moves the traffic; canary judges it. Each call carries Flagger's payload
//! (`name`, `namespace`, `phase`, `checksum`, `metadata`; `CanaryWebhookPayload` in
//! Flagger's `pkg/apis/flagger/v1beta1`), and the webhook's `metadata` says what to
//! judge: `profile`, `source` (optional with one source), `baseline_scope` and
//! `canary_scope` (label matchers of the primary and the canary), `window` (how much
//! data each judgement looks at, default `2m`), `step` (default the profile's, or
//! `15s`) and `timeout` (how long the call waits for the judgement, default `8s`:
//! keep it below the webhook's `timeout`, Flagger's default 10 s). Flagger counts any
//! status above 202 as an error, so:
//!
//! - `pre-rollout`: 200 when the metadata is usable (profile, source and scopes
//!   exist and parse), else a 422 naming the key — Flagger halts and counts a failed
//!   check.
//! - `rollout` (every analysis iteration) and `confirm-promotion`: a one-shot
//!   judgement of the last `window` (an execution, run by the executor as Kayenta's
//!   are, stored under the key `flagger/{namespace}/{name}/{checksum}`): **200** only
//!   when canary's verdict is promote; **412** with the reasons when it holds (missing
//!   or short data, an inconclusive comparison) or rolls back, so Flagger counts a
//!   failed check (rollout) or keeps waiting (confirm-promotion); **503** when the
//!   judgement could not be made or finish within `timeout`. Missing data never lets
//!   traffic advance.
//! - `rollback` (called by Flagger before every iteration; 2xx makes it roll back at
//!   once): **200** when the latest judgement under the canary's key rolled back,
//!   **409** (`not_rolling_back`) otherwise.
//! - `confirm-rollout`, `post-rollout` and `event`: 200, nothing judged (so a Canary can
//!   point every hook at one URL).
//!
//! The checksum is Flagger's hash of the canary's spec: a new revision gets a new key.
//! Flagger's webhooks send no headers of their own; put the token in the URL
//! (`http://flagger:TOKEN@canary:8080/v1/flagger/rollout`, sent as Basic credentials).

use std::collections::BTreeMap;
use std::time::Duration;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;
use uuid::Uuid;

use super::analyses::{parse_body, read_profile};
use super::auth::{Authorized, SubmitScope};
use super::error::{ApiError, ErrorBody};
use super::kayenta::{matchers, named_source};
use super::state::ApiState;
use crate::domain::{HumanDuration, Verdict};
use crate::scheduler::executions::{WindowRequest, WindowResult};
use crate::store::{Execution, ExecutionState, NewExecution};

/// The execution kind of Flagger's webhooks.
pub const KIND_FLAGGER: &str = "flagger";

/// The window judged when the metadata names none.
const DEFAULT_WINDOW: &str = "2m";
/// The longest window.
const MAX_WINDOW_SECONDS: f64 = 24.0 * 3600.0;
/// How long a call waits for its judgement when the metadata says nothing.
const DEFAULT_TIMEOUT: &str = "8s";
/// The longest wait.
const MAX_TIMEOUT_SECONDS: f64 = 60.0;
/// The most points per series (Prometheus refuses more than 11,000).
const MAX_POINTS: f64 = 11_000.0;
/// The most characters of Flagger's checksum.
const MAX_CHECKSUM: usize = 63;

/// Flagger's `CanaryWebhookPayload`.
#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
pub struct FlaggerPayload {
    /// The Canary's name.
    pub name: Option<String>,
    /// Its namespace.
    pub namespace: Option<String>,
    /// Its phase (`Progressing`, `Waiting`, ...): recorded, not used.
    pub phase: Option<String>,
    /// Flagger's hash of the canary's spec and tracked configs.
    pub checksum: Option<String>,
    /// The webhook's metadata: what to judge.
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
}

/// What a judged hook answers when it passes (a non-passing one is an error body with
/// the same facts in its message).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct FlaggerVerdict {
    /// The hook.
    pub hook: String,
    /// canary's verdict for the window (`null` for hooks that judge nothing).
    pub verdict: Option<Verdict>,
    /// The judge's score, when it scored.
    pub score: Option<f64>,
    /// Why, deciding reasons first.
    pub reasons: Vec<String>,
    /// The stored execution that judged the window, for logs.
    pub execution_id: Option<Uuid>,
}

/// `POST /v1/flagger/{hook}`: see the module documentation.
#[utoipa::path(
    post,
    path = "/v1/flagger/{hook}",
    operation_id = "flaggerWebhook",
    summary = "A Flagger webhook gate",
    description = "`hook` is Flagger's webhook type: `pre-rollout` (checks the metadata), `rollout` and `confirm-promotion` (judge the last `metadata.window`: 200 only on promote, 412 on hold or rollback, 503 when no judgement finished within `metadata.timeout`), `rollback` (200 when the latest judgement of this canary revision rolled back, else 409), `confirm-rollout`, `post-rollout`, `event` (200). The body is Flagger's payload; `metadata` holds `profile`, `source`, `baseline_scope`, `canary_scope`, `window`, `step`, `timeout`. Needs scope `submit`.",
    params(("hook" = String, Path, description = "Flagger's webhook type.")),
    request_body = FlaggerPayload,
    responses(
        (status = 200, description = "The gate passes (for `rollback`: roll back).", body = FlaggerVerdict),
        (status = 400, description = "A malformed name, namespace or checksum (`field` names it), or a body that is not JSON.", body = ErrorBody),
        (status = 404, description = "An unknown hook.", body = ErrorBody),
        (status = 409, description = "`rollback`: the latest judgement did not roll back (`not_rolling_back`).", body = ErrorBody),
        (status = 412, description = "canary holds or rolls back (`canary_not_passing`; the message has the reasons).", body = ErrorBody),
        (status = 422, description = "A metadata key is invalid (`field` is `metadata.KEY`).", body = ErrorBody),
        (status = 503, description = "The judgement could not be made or did not finish in time, or the store is unavailable.", body = ErrorBody),
    )
)]
pub async fn webhook(
    State(state): State<ApiState>,
    authorized: Authorized<SubmitScope>,
    Path(hook): Path<String>,
    body: Bytes,
) -> Result<Json<FlaggerVerdict>, ApiError> {
    const HOOKS: [&str; 7] = [
        "pre-rollout",
        "rollout",
        "confirm-rollout",
        "confirm-promotion",
        "post-rollout",
        "rollback",
        "event",
    ];
    if !HOOKS.contains(&hook.as_str()) {
        return Err(ApiError::NotFound(format!(
            "no Flagger hook {hook:?}; known: {}",
            HOOKS.join(", ")
        )));
    }
    let payload: FlaggerPayload = parse_body(&body)?;
    let key = canary_key(&payload)?;
    let answer = |verdict: Option<Verdict>, reasons: Vec<String>| FlaggerVerdict {
        hook: hook.clone(),
        verdict,
        score: None,
        reasons,
        execution_id: None,
    };
    match hook.as_str() {
        "pre-rollout" => {
            let judged = Judged::from_metadata(&state, &payload.metadata, state.clock.now())?;
            Ok(Json(answer(
                None,
                vec![format!(
                    "{key}: profile {:?} on source {:?} judges {} against {} over {} windows",
                    judged.profile_name,
                    judged.source,
                    judged.request.canary_scope,
                    judged.request.baseline_scope,
                    crate::format::duration(judged.request.end - judged.request.start)
                )],
            )))
        }
        "rollout" | "confirm-promotion" => {
            let now = state.clock.now();
            let judged = Judged::from_metadata(&state, &payload.metadata, now)?;
            let execution = judge(&state, &key, judged, now).await?;
            tracing::info!(canary = %key, hook = %hook, execution = %execution.id, actor = %authorized.caller.actor, "Flagger webhook judged");
            verdict_answer(&hook, &execution)
        }
        "rollback" => {
            let latest = state
                .bounded_store_call(state.store.latest_execution(&key))
                .await?;
            let result = latest.as_ref().and_then(result_of);
            match result {
                Some(result) if result.judgement.verdict == Verdict::Rollback => {
                    tracing::warn!(canary = %key, "Flagger rollback hook: canary's latest judgement rolled back");
                    Ok(Json(FlaggerVerdict {
                        hook: hook.clone(),
                        verdict: Some(Verdict::Rollback),
                        score: result.judgement.score,
                        reasons: result.judgement.reasons,
                        execution_id: latest.map(|execution| execution.id),
                    }))
                }
                Some(result) => Err(not_rolling_back(format!(
                    "{key}: the latest judgement's verdict is {}",
                    result.judgement.verdict
                ))),
                None => Err(not_rolling_back(format!(
                    "{key}: no finished judgement yet"
                ))),
            }
        }
        _ => Ok(Json(answer(None, Vec::new()))),
    }
}

fn not_rolling_back(message: String) -> ApiError {
    ApiError::Refused {
        status: StatusCode::CONFLICT,
        code: "not_rolling_back",
        message,
    }
}

/// `flagger/{namespace}/{name}/{checksum}`, after checking each part.
fn canary_key(payload: &FlaggerPayload) -> Result<String, ApiError> {
    let part = |value: &Option<String>, field: &str| {
        value
            .clone()
            .filter(|v| !v.is_empty())
            .ok_or_else(|| ApiError::field("missing_field", field, format!("{field} is required")))
    };
    let name = part(&payload.name, "name")?;
    let namespace = part(&payload.namespace, "namespace")?;
    let checksum = part(&payload.checksum, "checksum")?;
    super::fields::check_kubernetes_name(&namespace, "namespace")?;
    super::fields::check_kubernetes_name(&name, "name")?;
    if checksum.len() > MAX_CHECKSUM || !checksum.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return Err(ApiError::parameter(
            "invalid_checksum",
            "checksum",
            format!(
                "checksum must be Flagger's hash (letters and digits, at most {MAX_CHECKSUM}), \
                 got {checksum:?}"
            ),
        ));
    }
    Ok(format!("flagger/{namespace}/{name}/{checksum}"))
}

/// What the metadata asks to judge.
struct Judged {
    profile_name: String,
    profile_text: String,
    source: String,
    request: WindowRequest,
    timeout: Duration,
}

impl Judged {
    fn from_metadata(
        state: &ApiState,
        metadata: &BTreeMap<String, String>,
        now: f64,
    ) -> Result<Self, ApiError> {
        let get = |key: &str| metadata.get(key).map(|value| value.trim().to_owned());
        let profile_name = get("profile").filter(|v| !v.is_empty()).ok_or_else(|| {
            ApiError::field(
                "missing_field",
                "metadata.profile",
                "metadata.profile is required: the profile that judges the canary",
            )
        })?;
        let (profile_text, profile) = read_profile(state, &profile_name, "metadata.profile")?;
        let source = named_source(state, metadata.get("source"), "metadata.source")?;
        let baseline_scope = matchers(
            state,
            get("baseline_scope").as_deref(),
            "metadata.baseline_scope",
        )?;
        let canary_scope = matchers(
            state,
            get("canary_scope").as_deref(),
            "metadata.canary_scope",
        )?;
        if baseline_scope == canary_scope {
            return Err(ApiError::field(
                "invalid_field",
                "metadata.canary_scope",
                "metadata.canary_scope must select other series than metadata.baseline_scope",
            ));
        }
        let duration = |key: &str, default: &str, max: f64| {
            let field = format!("metadata.{key}");
            let text = get(key).unwrap_or_else(|| default.to_owned());
            let seconds = HumanDuration::parse(&text)
                .map_err(|error| {
                    ApiError::field("invalid_field", &field, format!("{field}: {error}"))
                })?
                .seconds();
            if seconds <= 0.0 || seconds > max {
                return Err(ApiError::field(
                    "invalid_field",
                    &field,
                    format!("{field} must be more than 0 and at most {max} s, got {text:?}"),
                ));
            }
            Ok(seconds)
        };
        let window = duration("window", DEFAULT_WINDOW, MAX_WINDOW_SECONDS)?;
        let profile_step = profile
            .plan
            .as_ref()
            .map_or(15.0, |plan| plan.settings.step.seconds())
            .min(window);
        let step = duration("step", &format!("{profile_step}s"), window)?;
        if window / step > MAX_POINTS {
            return Err(ApiError::field(
                "invalid_field",
                "metadata.step",
                format!("a {window} s window at a {step} s step is more than {MAX_POINTS} points"),
            ));
        }
        let timeout = duration("timeout", DEFAULT_TIMEOUT, MAX_TIMEOUT_SECONDS)?;
        Ok(Self {
            profile_name,
            profile_text,
            source,
            request: WindowRequest {
                baseline_scope,
                canary_scope,
                start: now - window,
                end: now,
                step,
                pass_score: profile.judge.pass_score.value(),
                marginal_score: profile.judge.marginal_score.value(),
                caller: Value::Null,
            },
            timeout: Duration::from_secs_f64(timeout),
        })
    }
}

/// Stores a judgement of `judged` under `key` and waits for it (up to its timeout).
async fn judge(
    state: &ApiState,
    key: &str,
    mut judged: Judged,
    now: f64,
) -> Result<Execution, ApiError> {
    judged.request.caller = serde_json::json!({"key": key});
    let request = serde_json::to_value(&judged.request)
        .map_err(|error| ApiError::Internal(format!("the request cannot be stored: {error}")))?;
    let execution = state
        .bounded_store_call(state.store.create_execution(
            NewExecution {
                kind: KIND_FLAGGER.to_owned(),
                key: Some(key.to_owned()),
                profile_name: judged.profile_name,
                profile_text: judged.profile_text,
                source: judged.source,
                request,
                due_at: now,
            },
            now,
        ))
        .await?;
    let deadline = tokio::time::Instant::now() + judged.timeout;
    loop {
        let current = state
            .bounded_store_call(state.store.get_execution(execution.id))
            .await?
            .ok_or_else(|| ApiError::Internal(format!("execution {} vanished", execution.id)))?;
        if current.state.is_finished() {
            return Ok(current);
        }
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        if left.is_zero() || state.shutdown.is_stopping() {
            return Err(ApiError::Unavailable(format!(
                "{key}: the judgement {} did not finish within {} s (metadata.timeout); \
                 nothing passes without one",
                execution.id,
                judged.timeout.as_secs_f64()
            )));
        }
        tokio::select! {
            () = tokio::time::sleep(state.poll_interval.min(left)) => {}
            () = state.shutdown.stopped() => {}
        }
    }
}

/// The stored result of a succeeded execution.
fn result_of(execution: &Execution) -> Option<WindowResult> {
    (execution.state == ExecutionState::Succeeded)
        .then(|| serde_json::from_value(execution.result.clone()).ok())
        .flatten()
}

/// 200 on promote, 412 on hold or rollback, 503 when the judgement failed.
fn verdict_answer(hook: &str, execution: &Execution) -> Result<Json<FlaggerVerdict>, ApiError> {
    let Some(result) = result_of(execution) else {
        return Err(ApiError::Unavailable(format!(
            "the window could not be judged: {}",
            execution.error.as_deref().unwrap_or("no result")
        )));
    };
    let judgement = result.judgement;
    if judgement.verdict == Verdict::Promote {
        return Ok(Json(FlaggerVerdict {
            hook: hook.to_owned(),
            verdict: Some(judgement.verdict),
            score: judgement.score,
            reasons: judgement.reasons,
            execution_id: Some(execution.id),
        }));
    }
    Err(ApiError::Refused {
        status: StatusCode::PRECONDITION_FAILED,
        code: "canary_not_passing",
        message: format!(
            "canary's verdict is {} (execution {}): {}",
            judgement.verdict,
            execution.id,
            judgement.reasons.join("; ")
        ),
    })
}
