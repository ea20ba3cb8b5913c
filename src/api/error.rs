//! [`ApiError`]: every error the API returns, and the one place that maps each to an
//! HTTP status and a JSON body `{"error": {"code", "message", "field"?, "allowed"?}}`.
//!
//! Handlers return `Result<_, ApiError>` and never build an error response themselves,
//! so a status code is decided here and nowhere else.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::store::StoreError;

/// The JSON body of every error response.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[schema(as = Error)]
pub struct ErrorBody {
    /// The error itself.
    pub error: ErrorDetail,
}

/// What went wrong, for machines (`code`, `field`) and for people (`message`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ErrorDetail {
    /// A stable snake_case code, e.g. `unknown_profile`, `malformed_json`, `conflict`.
    pub code: String,
    /// A sentence saying what is wrong and how to fix it.
    pub message: String,
    /// The request field at fault, when one is (`profile`, `source`, `wait`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// The values the field accepts, when they form a short list (profile, source and
    /// actuator names, states, actions).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allowed: Option<Vec<String>>,
}

/// An error answer of the API.
#[derive(Debug, Clone, PartialEq)]
pub enum ApiError {
    /// The body is not JSON (400, `malformed_json`); the message is serde's, with the
    /// line and column.
    MalformedJson(String),
    /// A path or query parameter cannot be read (400), e.g. an id that is not a UUID.
    BadParameter {
        /// The code, e.g. `malformed_id`.
        code: &'static str,
        /// The parameter.
        field: String,
        /// Why.
        message: String,
        /// What it accepts.
        allowed: Option<Vec<String>>,
    },
    /// A body field is missing or wrong (422), e.g. an unknown profile.
    InvalidField {
        /// The code, e.g. `unknown_profile`, `missing_field`.
        code: &'static str,
        /// The field.
        field: String,
        /// Why.
        message: String,
        /// The names it accepts.
        allowed: Option<Vec<String>>,
    },
    /// The request cannot be served as asked (400), for reasons not tied to one field.
    BadRequest(String),
    /// No credentials, or the wrong ones (401).
    Unauthorized(String),
    /// The token lacks the scope the request needs, or the server refuses this kind of
    /// request in its configuration (403), e.g. manual actions with no token set.
    Forbidden(String),
    /// The request has a body that is not `application/json` (415).
    UnsupportedMediaType(String),
    /// No such analysis (404).
    NotFound(String),
    /// No such route (404).
    NoSuchRoute(String),
    /// The request lost a race or is not allowed from the analysis's state (409).
    Conflict(String),
    /// Another active analysis owns the flag (409, `flag_owned`, field `flag`); the
    /// message names the owner's id and state.
    FlagOwned(String),
    /// The store cannot be reached (503).
    Unavailable(String),
    /// A bug or corrupt data (500).
    Internal(String),
    /// The request breaks a bound of the HTTP layer (405, 408, 413, 414, 431; see
    /// [`limits`](super::limits)).
    Refused {
        /// The status.
        status: StatusCode,
        /// The code, e.g. `body_too_large`, `method_not_allowed`.
        code: &'static str,
        /// Why, with the bound.
        message: String,
    },
}

impl ApiError {
    /// A 422 for a body field.
    pub fn field(code: &'static str, field: &str, message: impl Into<String>) -> Self {
        ApiError::InvalidField {
            code,
            field: field.to_owned(),
            message: message.into(),
            allowed: None,
        }
    }

    /// A 422 for a body field that accepts only the `allowed` names.
    pub fn unknown_name(code: &'static str, field: &str, given: &str, allowed: &[String]) -> Self {
        let listed = if allowed.is_empty() {
            "none are configured".to_owned()
        } else {
            format!("allowed: {}", allowed.join(", "))
        };
        ApiError::InvalidField {
            code,
            field: field.to_owned(),
            message: format!("{field} {given:?} is not known ({listed})"),
            allowed: Some(allowed.to_vec()),
        }
    }

    /// A 400 for a path or query parameter.
    pub fn parameter(code: &'static str, field: &str, message: impl Into<String>) -> Self {
        ApiError::BadParameter {
            code,
            field: field.to_owned(),
            message: message.into(),
            allowed: None,
        }
    }

    /// The status code and body this error is answered with.
    pub fn status_and_body(&self) -> (StatusCode, ErrorBody) {
        let detail = |code: &str, message: &str, field: Option<&String>, allowed| ErrorDetail {
            code: code.to_owned(),
            message: message.to_owned(),
            field: field.cloned(),
            allowed,
        };
        let (status, detail) = match self {
            ApiError::MalformedJson(message) => (
                StatusCode::BAD_REQUEST,
                detail("malformed_json", message, None, None),
            ),
            ApiError::BadParameter {
                code,
                field,
                message,
                allowed,
            } => (
                StatusCode::BAD_REQUEST,
                detail(code, message, Some(field), allowed.clone()),
            ),
            ApiError::InvalidField {
                code,
                field,
                message,
                allowed,
            } => (
                StatusCode::UNPROCESSABLE_ENTITY,
                detail(code, message, Some(field), allowed.clone()),
            ),
            ApiError::BadRequest(message) => (
                StatusCode::BAD_REQUEST,
                detail("bad_request", message, None, None),
            ),
            ApiError::Unauthorized(message) => (
                StatusCode::UNAUTHORIZED,
                detail("unauthorized", message, None, None),
            ),
            ApiError::Forbidden(message) => (
                StatusCode::FORBIDDEN,
                detail("forbidden", message, None, None),
            ),
            ApiError::UnsupportedMediaType(message) => (
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                detail("unsupported_media_type", message, None, None),
            ),
            ApiError::NotFound(message) => (
                StatusCode::NOT_FOUND,
                detail("not_found", message, None, None),
            ),
            ApiError::NoSuchRoute(message) => (
                StatusCode::NOT_FOUND,
                detail("no_such_route", message, None, None),
            ),
            ApiError::Conflict(message) => (
                StatusCode::CONFLICT,
                detail("conflict", message, None, None),
            ),
            ApiError::FlagOwned(message) => (
                StatusCode::CONFLICT,
                detail("flag_owned", message, Some(&"flag".to_owned()), None),
            ),
            ApiError::Unavailable(message) => (
                StatusCode::SERVICE_UNAVAILABLE,
                detail("unavailable", message, None, None),
            ),
            ApiError::Internal(message) => (
                StatusCode::INTERNAL_SERVER_ERROR,
                detail("internal", message, None, None),
            ),
            ApiError::Refused {
                status,
                code,
                message,
            } => (*status, detail(code, message, None, None)),
        };
        (status, ErrorBody { error: detail })
    }
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::NotFound(what) => ApiError::NotFound(format!("no {what}")),
            StoreError::Conflict(message) => ApiError::Conflict(format!(
                "{message}; read the analysis again and retry if still wanted"
            )),
            StoreError::FlagOwned {
                flag,
                actuator,
                owner,
                state,
            } => ApiError::FlagOwned(format!(
                "flag {flag:?} (actuator {actuator:?}) is owned by analysis {owner}, which is \
                 {state}; one analysis per flag at a time: wait for it to end, or act on it \
                 (/v1/analyses/{owner})"
            )),
            StoreError::SubmitKeyTaken(key) => ApiError::Conflict(format!(
                "an analysis is already stored under {key:?}; read it again"
            )),
            StoreError::Invalid(message) => ApiError::BadRequest(message),
            StoreError::Unavailable(message) => ApiError::Unavailable(message),
            StoreError::LeaseLost { .. } | StoreError::Corrupt(_) => {
                ApiError::Internal(error.to_string())
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, body) = self.status_and_body();
        if status.is_server_error() {
            tracing::error!(status = %status, message = %body.error.message, "API error");
        }
        let mut response = (status, Json(body)).into_response();
        if status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"canary\""),
            );
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_kind_of_error_has_its_own_status() {
        let cases = [
            (ApiError::MalformedJson("x".into()), 400),
            (ApiError::parameter("malformed_id", "id", "x"), 400),
            (ApiError::field("missing_field", "flag", "x"), 422),
            (ApiError::Unauthorized("x".into()), 401),
            (ApiError::Forbidden("x".into()), 403),
            (ApiError::UnsupportedMediaType("x".into()), 415),
            (ApiError::NotFound("x".into()), 404),
            (ApiError::Conflict("x".into()), 409),
            (ApiError::FlagOwned("x".into()), 409),
            (ApiError::Unavailable("x".into()), 503),
            (ApiError::Internal("x".into()), 500),
        ];
        for (error, status) in cases {
            assert_eq!(error.status_and_body().0.as_u16(), status, "{error:?}");
        }
    }

    #[test]
    fn a_flag_owned_elsewhere_is_a_409_naming_the_owner_and_its_state() {
        let owner = uuid::Uuid::new_v4();
        let error = ApiError::from(StoreError::FlagOwned {
            flag: "checkout".to_owned(),
            actuator: "flags".to_owned(),
            owner,
            state: crate::store::AnalysisState::Running,
        });
        let (status, body) = error.status_and_body();
        assert_eq!(status.as_u16(), 409);
        assert_eq!(body.error.code, "flag_owned");
        assert_eq!(body.error.field.as_deref(), Some("flag"));
        assert!(body.error.message.contains(&owner.to_string()));
        assert!(body.error.message.contains("running"));
    }

    #[test]
    fn an_unknown_name_lists_the_allowed_ones() {
        let error = ApiError::unknown_name(
            "unknown_source",
            "source",
            "prod",
            &["staging".to_owned(), "replay".to_owned()],
        );
        let (_, body) = error.status_and_body();
        assert_eq!(body.error.field.as_deref(), Some("source"));
        assert!(body.error.message.contains("staging, replay"));
        assert_eq!(body.error.allowed.unwrap().len(), 2);
    }
}
