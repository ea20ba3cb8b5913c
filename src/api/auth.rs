//! Who may call the API: bearer tokens with scopes, checked in constant time, and the
//! one rule that every request body is JSON.
//!
//! A token carries scopes: `read` (the `GET /v1/analyses...` routes, only when
//! `server.require_token_for_reads` is set), `submit` (`POST /v1/analyses`) and `act`
//! (manual actions). Handlers state the scope they need in their signature with the
//! [`Authorized`] extractor, so a route cannot forget its check. When no token is
//! configured, submissions and reads stay open (the server warns at start-up) and
//! manual actions are refused.
//!
//! Tokens are compared as SHA-256 digests with [`subtle`], against every configured
//! token without stopping at the first match, so neither the length of a token nor
//! which one matched shows in the time of an answer. This module never logs a token.

use std::marker::PhantomData;
use std::sync::Arc;

use axum::extract::{FromRef, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::{ConditionallySelectable, ConstantTimeEq};

use super::error::ApiError;

/// The actor written to the audit log for actions authenticated by `server.auth_token`.
pub const LEGACY_TOKEN_ACTOR: &str = "api-token";

/// What a token allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    /// Read analyses, verdicts and reports (only checked with
    /// `server.require_token_for_reads`).
    Read,
    /// Submit analyses: `POST /v1/analyses`, which moves production flags.
    Submit,
    /// Pause, resume, promote and roll back analyses.
    Act,
}

impl Scope {
    /// Every scope, as `server.auth_token` has them.
    pub const ALL: [Scope; 3] = [Scope::Read, Scope::Submit, Scope::Act];

    /// The scope's name in settings.
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Read => "read",
            Scope::Submit => "submit",
            Scope::Act => "act",
        }
    }
}

/// One configured token: its name, its scopes and the SHA-256 digest of its value
/// (the value itself is not kept).
#[derive(Clone)]
pub struct ApiToken {
    name: String,
    actor: String,
    scopes: Vec<Scope>,
    digest: [u8; 32],
}

impl std::fmt::Debug for ApiToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiToken")
            .field("name", &self.name)
            .field("scopes", &self.scopes)
            .finish_non_exhaustive()
    }
}

impl ApiToken {
    /// A named token (`[[server.tokens]]`); its actor in the audit log is
    /// `api-token:NAME`.
    pub fn new(name: &str, scopes: &[Scope], value: &str) -> Self {
        Self {
            name: name.to_owned(),
            actor: format!("{LEGACY_TOKEN_ACTOR}:{name}"),
            scopes: scopes.to_vec(),
            digest: digest(value),
        }
    }

    /// `server.auth_token`: every scope, actor `api-token` as before named tokens.
    pub fn legacy(value: &str) -> Self {
        Self {
            name: "auth_token".to_owned(),
            actor: LEGACY_TOKEN_ACTOR.to_owned(),
            scopes: Scope::ALL.to_vec(),
            digest: digest(value),
        }
    }

    /// The token's name in settings.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether `other` has the same value (start-up refuses two tokens with one value,
    /// which would make the audit log's actor ambiguous).
    pub fn same_value_as(&self, other: &ApiToken) -> bool {
        self.digest == other.digest
    }
}

fn digest(value: &str) -> [u8; 32] {
    Sha256::digest(value.as_bytes()).into()
}

/// Who made an authorized request, for logs and the audit log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// `api-token`, `api-token:NAME`, or `anonymous` on a server without tokens.
    pub actor: String,
}

/// The configured tokens and whether reads need one.
#[derive(Debug, Clone, Default)]
pub struct Authenticator {
    tokens: Vec<ApiToken>,
    require_token_for_reads: bool,
}

impl Authenticator {
    /// Checks `tokens`; `require_token_for_reads` makes `read` a scope to check.
    pub fn new(tokens: Vec<ApiToken>, require_token_for_reads: bool) -> Self {
        Self {
            tokens,
            require_token_for_reads,
        }
    }

    /// Whether anyone who reaches the API may submit (no token is configured).
    pub fn is_open(&self) -> bool {
        self.tokens.is_empty()
    }

    /// Whether the request's bearer token allows `scope`.
    pub fn authorize(&self, headers: &HeaderMap, scope: Scope) -> Result<Caller, ApiError> {
        self.authorize_given(bearer_token(headers).as_deref(), scope)
    }

    /// [`Authenticator::authorize`] for a token the caller found elsewhere (the
    /// console's session cookie): `None` is a request without one.
    pub fn authorize_token(&self, token: Option<&str>, scope: Scope) -> Result<Caller, ApiError> {
        self.authorize_given(token, scope)
    }

    /// Whether `token` is one of the configured tokens (whatever its scopes).
    pub fn knows(&self, token: &str) -> bool {
        self.find(token).is_some()
    }

    /// The actor the audit log names for `token` (whatever its scopes), if it is known.
    pub fn actor_of(&self, token: &str) -> Option<String> {
        self.find(token).map(|found| found.actor.clone())
    }

    fn authorize_given(&self, given: Option<&str>, scope: Scope) -> Result<Caller, ApiError> {
        if self.tokens.is_empty() {
            return match scope {
                Scope::Act => Err(ApiError::Forbidden(
                    "manual actions are disabled: the server has no token \
                     (set server.auth_token or [[server.tokens]] with scope \"act\")"
                        .to_owned(),
                )),
                Scope::Read | Scope::Submit => Ok(Caller {
                    actor: "anonymous".to_owned(),
                }),
            };
        }
        if scope == Scope::Read && !self.require_token_for_reads {
            return Ok(Caller {
                actor: "anonymous".to_owned(),
            });
        }
        let given = given.filter(|token| !token.is_empty()).ok_or_else(|| {
            ApiError::Unauthorized(format!(
                "this request needs an `Authorization: Bearer <token>` header (or Basic \
                 credentials with the token as password) with a token of scope {:?}",
                scope.as_str()
            ))
        })?;
        let token = self
            .find(given)
            .ok_or_else(|| ApiError::Unauthorized("the bearer token is not known".to_owned()))?;
        if token.scopes.contains(&scope) {
            Ok(Caller {
                actor: token.actor.clone(),
            })
        } else {
            Err(ApiError::Forbidden(format!(
                "token {:?} lacks scope {:?} (it has: {})",
                token.name,
                scope.as_str(),
                token
                    .scopes
                    .iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )))
        }
    }

    /// The token whose value is `given`: every configured digest is compared, in
    /// constant time and without an early exit.
    fn find(&self, given: &str) -> Option<&ApiToken> {
        let given = digest(given);
        // 0 means no match; index + 1 otherwise.
        let mut matched = 0u64;
        for (index, token) in self.tokens.iter().enumerate() {
            let equal = given.ct_eq(&token.digest);
            matched = u64::conditional_select(&matched, &(index as u64 + 1), equal);
        }
        usize::try_from(matched)
            .ok()
            .and_then(|position| position.checked_sub(1))
            .and_then(|index| self.tokens.get(index))
    }
}

/// The token of an `Authorization: Bearer TOKEN` header, or the password of an
/// `Authorization: Basic` one (any user name): clients that cannot set headers but
/// send a URL's user information as Basic credentials (Go's HTTP client, so Argo
/// Rollouts' `kayenta` provider) authenticate with `http://user:TOKEN@host/`. The server
/// never asks for Basic credentials (no `WWW-Authenticate: Basic` challenge), so
/// browsers neither prompt for them nor keep them.
fn bearer_token(headers: &HeaderMap) -> Option<String> {
    use base64::Engine as _;
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.trim().split_once(' ')?;
    let token = token.trim();
    if scheme.eq_ignore_ascii_case("bearer") {
        return (!token.is_empty()).then(|| token.to_owned());
    }
    if scheme.eq_ignore_ascii_case("basic") {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(token)
            .ok()?;
        let credentials = String::from_utf8(decoded).ok()?;
        let (_, password) = credentials.split_once(':')?;
        return (!password.is_empty()).then(|| password.to_owned());
    }
    None
}

/// Marks the scope an [`Authorized`] extractor checks.
pub trait RequiredScope {
    /// The scope.
    const SCOPE: Scope;
}

/// Marker: the `read` scope.
#[derive(Debug)]
pub struct ReadScope;
/// Marker: the `submit` scope.
#[derive(Debug)]
pub struct SubmitScope;
/// Marker: the `act` scope.
#[derive(Debug)]
pub struct ActScope;

impl RequiredScope for ReadScope {
    const SCOPE: Scope = Scope::Read;
}
impl RequiredScope for SubmitScope {
    const SCOPE: Scope = Scope::Submit;
}
impl RequiredScope for ActScope {
    const SCOPE: Scope = Scope::Act;
}

/// An extractor that answers 401 or 403 unless the request may use scope `S`.
#[derive(Debug)]
pub struct Authorized<S> {
    /// Who is calling.
    pub caller: Caller,
    scope: PhantomData<S>,
}

impl<S, State> FromRequestParts<State> for Authorized<S>
where
    S: RequiredScope + Send,
    State: Send + Sync,
    Arc<Authenticator>: FromRef<State>,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &State) -> Result<Self, ApiError> {
        let caller = Arc::<Authenticator>::from_ref(state).authorize(&parts.headers, S::SCOPE)?;
        Ok(Self {
            caller,
            scope: PhantomData,
        })
    }
}

/// Middleware: a request that carries a body (any POST, PUT or PATCH, or any request
/// with a non-empty body) must say `Content-Type: application/json`, or gets a 415.
///
/// Browsers send `text/plain`, form and multipart bodies across sites without a
/// preflight ("simple requests"); refusing them keeps a web page an engineer opens from
/// starting a rollout through the engineer's network position.
pub async fn require_json_bodies(request: Request, next: Next) -> Response {
    let carries_body = matches!(
        *request.method(),
        Method::POST | Method::PUT | Method::PATCH
    ) || request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|length| length.trim() != "0")
        || request.headers().contains_key(header::TRANSFER_ENCODING);
    // The one form route: a signed action link's confirmation, whose signature is the
    // credential (a cross-site form cannot forge it).
    let signed_link_form = *request.method() == Method::POST
        && (request.uri().path().starts_with("/v1/action-links/")
            || super::console::takes_forms(request.uri().path()))
        && is_form(request.headers());
    if carries_body && !signed_link_form && !is_json(request.headers()) {
        let given = request
            .headers()
            .get(header::CONTENT_TYPE)
            .map(|value| String::from_utf8_lossy(value.as_bytes()).into_owned());
        return ApiError::UnsupportedMediaType(format!(
            "request bodies must be sent with `Content-Type: application/json`, got {}",
            given.map_or_else(|| "no Content-Type".to_owned(), |t| format!("{t:?}"))
        ))
        .into_response();
    }
    next.run(request).await
}

/// `application/x-www-form-urlencoded`, with or without parameters.
fn is_form(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split(';').next())
        .is_some_and(|essence| {
            essence
                .trim()
                .eq_ignore_ascii_case("application/x-www-form-urlencoded")
        })
}

/// `application/json`, with or without parameters such as `charset=utf-8`.
fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split(';').next())
        .is_some_and(|essence| essence.trim().eq_ignore_ascii_case("application/json"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(authorization: Option<&str>) -> HeaderMap {
        let mut headers = HeaderMap::new();
        if let Some(value) = authorization {
            headers.insert(header::AUTHORIZATION, HeaderValue::from_str(value).unwrap());
        }
        headers
    }

    fn authenticator(require_token_for_reads: bool) -> Authenticator {
        Authenticator::new(
            vec![
                ApiToken::new("dashboard", &[Scope::Read], "read-secret"),
                ApiToken::new("pipeline", &[Scope::Submit, Scope::Read], "pipeline-secret"),
                ApiToken::new("oncall", &[Scope::Act], "oncall-secret"),
                ApiToken::legacy("legacy-secret"),
            ],
            require_token_for_reads,
        )
    }

    fn status(result: Result<Caller, ApiError>) -> u16 {
        match result {
            Ok(_) => 200,
            Err(error) => error.status_and_body().0.as_u16(),
        }
    }

    #[test]
    fn each_token_is_found_among_several_and_names_its_actor() {
        let auth = authenticator(false);
        let pipeline = auth
            .authorize(&headers(Some("Bearer pipeline-secret")), Scope::Submit)
            .unwrap();
        assert_eq!(pipeline.actor, "api-token:pipeline");
        let oncall = auth
            .authorize(&headers(Some("bearer  oncall-secret ")), Scope::Act)
            .unwrap();
        assert_eq!(oncall.actor, "api-token:oncall");
        let legacy = auth
            .authorize(&headers(Some("Bearer legacy-secret")), Scope::Act)
            .unwrap();
        assert_eq!(legacy.actor, LEGACY_TOKEN_ACTOR);
    }

    #[test]
    fn basic_credentials_carry_the_token_as_their_password() {
        use base64::Engine as _;
        let basic = |pair: &str| {
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(pair)
            )
        };
        let auth = authenticator(false);
        let caller = auth
            .authorize(
                &headers(Some(&basic("kayenta:pipeline-secret"))),
                Scope::Submit,
            )
            .unwrap();
        assert_eq!(caller.actor, "api-token:pipeline");
        for refused in [
            basic("pipeline-secret:"),
            basic("kayenta:pipeline-secre"),
            basic("no-colon"),
            "Basic !!!not-base64".to_owned(),
        ] {
            assert_eq!(
                status(auth.authorize(&headers(Some(&refused)), Scope::Submit)),
                401,
                "{refused}"
            );
        }
    }

    #[test]
    fn a_missing_or_unknown_token_is_401_and_a_token_without_the_scope_is_403() {
        let auth = authenticator(false);
        assert_eq!(status(auth.authorize(&headers(None), Scope::Submit)), 401);
        for wrong in [
            "Bearer pipeline-secre",
            "Bearer pipeline-secretx",
            "Bearer ",
            "Basic pipeline-secret",
            "pipeline-secret",
        ] {
            assert_eq!(
                status(auth.authorize(&headers(Some(wrong)), Scope::Submit)),
                401,
                "{wrong}"
            );
        }
        assert_eq!(
            status(auth.authorize(&headers(Some("Bearer read-secret")), Scope::Submit)),
            403
        );
        assert_eq!(
            status(auth.authorize(&headers(Some("Bearer pipeline-secret")), Scope::Act)),
            403
        );
    }

    #[test]
    fn reads_are_open_unless_required_and_a_server_without_tokens_refuses_actions() {
        assert_eq!(
            status(authenticator(false).authorize(&headers(None), Scope::Read)),
            200
        );
        let strict = authenticator(true);
        assert_eq!(status(strict.authorize(&headers(None), Scope::Read)), 401);
        assert_eq!(
            status(strict.authorize(&headers(Some("Bearer oncall-secret")), Scope::Read)),
            403
        );
        assert_eq!(
            status(strict.authorize(&headers(Some("Bearer read-secret")), Scope::Read)),
            200
        );
        let open = Authenticator::default();
        assert!(open.is_open());
        assert_eq!(status(open.authorize(&headers(None), Scope::Submit)), 200);
        assert_eq!(
            status(open.authorize(&headers(Some("Bearer x")), Scope::Act)),
            403
        );
    }

    #[test]
    fn only_application_json_counts_as_json() {
        let with = |value: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(header::CONTENT_TYPE, HeaderValue::from_str(value).unwrap());
            is_json(&headers)
        };
        assert!(with("application/json"));
        assert!(with("Application/JSON; charset=utf-8"));
        assert!(!with("text/plain"));
        assert!(!with("application/x-www-form-urlencoded"));
        assert!(!with("multipart/form-data; boundary=x"));
        assert!(!with("application/json-seq"));
        assert!(!is_json(&HeaderMap::new()));
    }
}
