//! The pages behind the signed promote and roll-back links notifications carry
//! ([`crate::notify::links`]): `GET /v1/action-links/{id}` shows what the link would
//! do and asks for a reason — it never acts, since chat tools and mail scanners fetch
//! links to preview them — and `POST /v1/action-links/{id}` (the page's form, sent as
//! `application/x-www-form-urlencoded` with the link's signed fields) records the
//! manual action, audited as `action-link`, for a worker to carry out.
//!
//! The signature is the credential: it is bound to the analysis, the action and the
//! expiry, so a cross-site form cannot forge one, and this route is the only one that
//! takes a form body. The pages are framed by nobody (`frame-ancestors 'none'`), send
//! no referrer (the URL holds the signature), are not cached, run no script and load
//! nothing.

use axum::Form;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use maud::{DOCTYPE, Markup, html};
use serde::Deserialize;
use utoipa::IntoParams;

use super::analyses::{action_target, parse_id, read};
use super::error::{ApiError, ErrorBody};
use super::state::ApiState;
use crate::notify::action_label;
use crate::notify::links::LINK_ACTIONS;
use crate::report::markup::Text;
use crate::signing::SignatureError;
use crate::store::{Analysis, AuditAction, ManualAction};

/// The most characters of a reason given on the page.
const MAX_REASON: usize = 2000;

/// A link's signed fields.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct LinkFields {
    /// `promote` or `rollback`.
    pub action: Option<String>,
    /// When the link expires, Unix seconds.
    pub expires: Option<u64>,
    /// The link's signature (hex).
    pub sig: Option<String>,
}

/// The page's form: the link's signed fields and the person's reason.
#[derive(Debug, Deserialize)]
pub struct Confirmation {
    action: Option<String>,
    expires: Option<u64>,
    sig: Option<String>,
    reason: Option<String>,
}

/// The checked action of a link.
fn checked(
    state: &ApiState,
    id: &str,
    action: Option<&str>,
    expires: Option<u64>,
    sig: Option<&str>,
) -> Result<AuditAction, ApiError> {
    let links = state.action_links.as_ref().ok_or_else(|| {
        ApiError::NotFound(
            "action links are not enabled on this server (server.action_link_secret_env)"
                .to_owned(),
        )
    })?;
    let action = action.unwrap_or_default();
    if !LINK_ACTIONS.contains(&action) {
        return Err(ApiError::parameter(
            "invalid_action",
            "action",
            format!("action must be promote or rollback, got {action:?}"),
        ));
    }
    let (Some(expires), Some(sig)) = (expires, sig) else {
        return Err(ApiError::parameter(
            "invalid_link",
            "sig",
            "the link is incomplete (expires and sig are required): open it as it was sent",
        ));
    };
    links
        .verify(id, action, expires, sig, state.clock.now())
        .map_err(|error| match error {
            SignatureError::Expired { .. } => ApiError::Refused {
                status: StatusCode::GONE,
                code: "link_expired",
                message: format!(
                    "{error}: act from the report or with a token, or wait for the next notification"
                ),
            },
            _ => ApiError::Forbidden(format!("the link is not valid: {error}")),
        })?;
    action
        .parse::<AuditAction>()
        .map_err(|_| ApiError::Internal(format!("{action} is not an action")))
}

/// The page's headers: HTML, no framing, no referrer, no cache, no script.
fn page(status: StatusCode, body: Markup) -> Response {
    (
        status,
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; \
                 frame-ancestors 'none'; base-uri 'none'",
            ),
            (header::X_FRAME_OPTIONS, "DENY"),
            (header::REFERRER_POLICY, "no-referrer"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        body.into_string(),
    )
        .into_response()
}

fn layout(title: &str, content: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                meta name="robots" content="noindex";
                title { (Text(title)) }
                style { "body{font-family:system-ui,sans-serif;max-width:42rem;margin:2rem auto;padding:0 1rem;color:#111;background:#fff}textarea{width:100%;min-height:5rem;font:inherit}button{font:inherit;padding:.5rem 1rem;margin-top:.75rem}.danger{background:#b00020;color:#fff;border:0}.note{background:#fff4e5;padding:.5rem .75rem}dt{font-weight:600}" }
            }
            body { main { (content) } }
        }
    }
}

fn standing(analysis: &Analysis) -> Markup {
    html! {
        dl {
            dt { "Flag" } dd { code { (Text(&analysis.flag)) } }
            dt { "Profile" } dd { (Text(&analysis.profile_name)) }
            dt { "State" } dd { (Text(analysis.state.as_str())) }
            @if let Some(verdict) = analysis.latest_verdict {
                dt { "Latest verdict" } dd { (Text(verdict.as_str())) }
            }
            @if let Some(traffic) = analysis.traffic {
                dt { "Traffic" } dd { (Text(&crate::format::number(traffic))) "%" }
            }
        }
        @if !analysis.reasons.is_empty() {
            h2 { "Why it stands there" }
            ul { @for reason in analysis.reasons.iter().take(5) { li { (Text(reason)) } } }
        }
        p { a href={ "/v1/analyses/" (analysis.id) "/report" } { "Open the full report" } }
    }
}

/// `GET /v1/action-links/{id}?action=&expires=&sig=`: the confirmation page.
#[utoipa::path(
    get,
    path = "/v1/action-links/{id}",
    operation_id = "actionLinkPage",
    summary = "The confirmation page of a signed promote or roll-back link",
    description = "What a notification's action link opens: the analysis and a form asking for a reason. Never acts. 404 when the server signs no links.",
    params(("id" = String, Path, description = "The analysis id."), LinkFields),
    responses(
        (status = 200, description = "The page.", body = String, content_type = "text/html"),
        (status = 400, description = "A malformed id, action or link.", body = ErrorBody),
        (status = 403, description = "The signature does not match.", body = ErrorBody),
        (status = 404, description = "No such analysis, or links are not enabled.", body = ErrorBody),
        (status = 410, description = "The link expired (`link_expired`).", body = ErrorBody),
    )
)]
pub async fn confirm_page(
    State(state): State<ApiState>,
    Path(id): Path<String>,
    Query(fields): Query<LinkFields>,
) -> Result<Response, ApiError> {
    let analysis_id = parse_id(&id)?;
    let action = checked(
        &state,
        &id,
        fields.action.as_deref(),
        fields.expires,
        fields.sig.as_deref(),
    )?;
    let analysis = read(&state, analysis_id).await?;
    let label = action_label(action.as_str());
    let title = format!("{label} {}?", analysis.flag);
    let allowed = action_target(&analysis, action);
    let content = html! {
        h1 { (Text(&title)) }
        (standing(&analysis))
        @match &allowed {
            Err(why) => p class="note" { "This link can no longer be used: " (Text(why)) "." },
            Ok(_) => form method="post" {
                input type="hidden" name="action" value=(action.as_str());
                input type="hidden" name="expires" value=(fields.expires.unwrap_or_default());
                input type="hidden" name="sig" value=(Text(fields.sig.as_deref().unwrap_or_default()));
                label for="reason" { "Why (kept in the audit log)" }
                textarea id="reason" name="reason" required maxlength=(MAX_REASON) {}
                button type="submit" class=[(action == AuditAction::Rollback).then_some("danger")] {
                    (label) " " (Text(&analysis.flag))
                }
            },
        }
    };
    Ok(page(StatusCode::OK, layout(&title, content)))
}

/// `POST /v1/action-links/{id}`: the page's form; records the action.
#[utoipa::path(
    post,
    path = "/v1/action-links/{id}",
    operation_id = "actionLinkConfirm",
    summary = "Carry out a signed promote or roll-back link",
    description = "The confirmation page's form (`application/x-www-form-urlencoded`: action, expires, sig, reason). Records the manual action, audited as `action-link`; a worker carries it out. Any other body type is a 415.",
    params(("id" = String, Path, description = "The analysis id.")),
    responses(
        (status = 200, description = "Recorded; the page says so.", body = String, content_type = "text/html"),
        (status = 400, description = "A malformed id, action or link.", body = ErrorBody),
        (status = 403, description = "The signature does not match.", body = ErrorBody),
        (status = 404, description = "No such analysis, or links are not enabled.", body = ErrorBody),
        (status = 409, description = "Not allowed from the analysis's state.", body = ErrorBody),
        (status = 410, description = "The link expired.", body = ErrorBody),
        (status = 415, description = "The body is not a form.", body = ErrorBody),
        (status = 422, description = "No reason, or a reason over 2,000 characters.", body = ErrorBody),
    )
)]
pub async fn confirm(
    State(state): State<ApiState>,
    Path(id): Path<String>,
    Form(form): Form<Confirmation>,
) -> Result<Response, ApiError> {
    let analysis_id = parse_id(&id)?;
    let action = checked(
        &state,
        &id,
        form.action.as_deref(),
        form.expires,
        form.sig.as_deref(),
    )?;
    let reason = form.reason.unwrap_or_default().trim().to_owned();
    if reason.is_empty() || reason.chars().count() > MAX_REASON {
        return Err(ApiError::field(
            "invalid_field",
            "reason",
            format!("reason must be 1 to {MAX_REASON} characters"),
        ));
    }
    let analysis = read(&state, analysis_id).await?;
    let new_state = action_target(&analysis, action).map_err(ApiError::Conflict)?;
    let actor = "action-link".to_owned();
    let updated = state
        .store
        .apply_manual_action(
            analysis_id,
            ManualAction {
                actor: actor.clone(),
                action,
                reason,
                new_state,
                expected_version: analysis.version,
            },
            state.clock.now(),
        )
        .await?;
    tracing::info!(analysis = %analysis_id, action = action.as_str(), %actor, to = %new_state, "manual action recorded from a signed link");
    let title = format!(
        "{} {} requested",
        action_label(action.as_str()),
        updated.flag
    );
    let content = html! {
        h1 { (Text(&title)) }
        p { "Recorded and audited; a worker carries it out within moments." }
        (standing(&updated))
    };
    Ok(page(StatusCode::OK, layout(&title, content)))
}
