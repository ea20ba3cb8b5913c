//! The web console of `canary serve`: server-rendered pages for the people who watch
//! rollouts, on the same router and store as the API.
//!
//! - `GET /`: every analysis, what needs a person first ([`Store::overview`]), with
//!   filters by state, flag and time; `GET /console/rows` is the same listing as an
//!   HTML fragment with an `ETag`, which the page polls every second (a `304` when
//!   nothing changed), so a worker's rollback shows without a reload.
//! - `GET /console/analyses/{id}`: one analysis — where it stands, its stage timeline,
//!   the flag's path, its triggers, the sequential evidence look by look, the audit
//!   log and the full report — and `.../live`, the part that changes, polled likewise.
//! - Manual actions: `GET /console/analyses/{id}/confirm?action=` asks for a reason,
//!   `POST /console/analyses/{id}/actions` records the action (audited with the token's
//!   actor and the name given at sign-in) for a worker to carry out.
//! - `GET`/`POST /console/login` and `POST /console/logout`: the session is the API
//!   token itself in an `HttpOnly`, `SameSite=Strict` cookie (`Secure` behind HTTPS),
//!   so any instance sharing the store and tokens accepts it and nothing is kept per
//!   session. The cookie counts only on these routes; the JSON API keeps bearer
//!   tokens.
//!
//! Cross-site requests: besides `SameSite=Strict`, every console `POST` must come from
//! this origin (`Origin`, else `Sec-Fetch-Site`) and, once signed in, carry the form
//! token derived from the session ([`form_token`]). Pages are never framed, send a
//! referrer only to this origin and run only `/console/assets/console.js` (a small, dependency-free
//! script): `script-src 'self'`, nothing fetched from elsewhere.
//!
//! [`Store::overview`]: crate::store::Store::overview

mod pages;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine as _;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::analyses::{action_target, parse_id};
use super::auth::{Caller, Scope};
use super::error::ApiError;
use super::state::ApiState;
use crate::store::{AnalysisState, AuditAction, ManualAction, OverviewQuery, StoreError};

/// The session cookie's name.
pub const COOKIE: &str = "canary_console";
/// How long a sign-in lasts.
pub const SESSION_SECONDS: u64 = 12 * 3600;
/// The most characters of a reason.
pub const MAX_REASON: usize = 2000;
/// The most characters of the name given at sign-in.
pub const MAX_NAME: usize = 64;
/// The most analyses the list shows.
pub const MAX_ROWS: u32 = 1000;

/// The console's routes (not part of the OpenAPI document: they answer HTML).
pub fn routes() -> Router<ApiState> {
    Router::new()
        .route("/", get(list_page))
        .route("/console/rows", get(rows))
        .route("/console/analyses/{id}", get(analysis_page))
        .route("/console/analyses/{id}/live", get(analysis_live))
        .route("/console/analyses/{id}/confirm", get(confirm_page))
        .route("/console/analyses/{id}/actions", post(act))
        .route("/console/login", get(login_page).post(login))
        .route("/console/logout", post(logout))
        .route("/console/assets/console.js", get(script))
        .route("/console/assets/console.css", get(style))
}

/// Whether `path` is a console route that takes a form body.
pub fn takes_forms(path: &str) -> bool {
    path == "/console/login" || path == "/console/logout" || path.starts_with("/console/analyses/")
}

// ---------------------------------------------------------------------------------
// Sessions and cross-site protection.

/// Who is signed in: the token and the name they gave.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, Deserialize)]
pub struct Session {
    /// The API token.
    pub token: String,
    /// The person's name, for the audit log.
    #[serde(default)]
    pub name: Option<String>,
}

impl Session {
    /// The cookie's value: the session as base64url JSON (cookie-safe whatever the
    /// token holds).
    fn encode(&self) -> String {
        let json = serde_json::to_vec(self).unwrap_or_default();
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(json)
    }

    fn decode(value: &str) -> Option<Session> {
        let json = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(value.trim())
            .ok()?;
        serde_json::from_slice(&json).ok()
    }

    /// The session in the request's cookie, if any.
    pub fn of(headers: &HeaderMap) -> Option<Session> {
        headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|value| value.to_str().ok())
            .flat_map(|value| value.split(';'))
            .filter_map(|pair| pair.trim().split_once('='))
            .find(|(name, _)| *name == COOKIE)
            .and_then(|(_, value)| Session::decode(value))
    }
}

/// The form token of a session: bound to its token, so a page of another site, which
/// can neither read this origin's pages nor guess the token, cannot make one.
pub fn form_token(session: &Session) -> String {
    let mut hasher = Sha256::new();
    hasher.update(b"canary console form token\0");
    hasher.update(session.token.as_bytes());
    hex::encode(&hasher.finalize()[..16])
}

/// Whether a `POST` comes from this origin: its `Origin` names the host it was sent to
/// (or the public URL's), or, without `Origin`, `Sec-Fetch-Site` says `same-origin`.
/// A request with neither passes here and must still carry the form token.
pub fn same_origin(headers: &HeaderMap, public_url: Option<&str>) -> Result<(), ApiError> {
    let refused = |why: String| {
        Err(ApiError::Forbidden(format!(
            "cross-site request refused: {why}; use the console's own pages"
        )))
    };
    if let Some(origin) = headers.get(header::ORIGIN) {
        let origin = origin.to_str().unwrap_or_default().trim_end_matches('/');
        let host = headers
            .get(header::HOST)
            .and_then(|value| value.to_str().ok())
            .unwrap_or_default();
        let own = [format!("http://{host}"), format!("https://{host}")];
        let public = public_url.map(origin_of);
        if own
            .iter()
            .any(|candidate| candidate.eq_ignore_ascii_case(origin))
            || public.is_some_and(|public| public.eq_ignore_ascii_case(origin))
        {
            return Ok(());
        }
        return refused(format!("the request came from {origin:?}"));
    }
    match headers
        .get("sec-fetch-site")
        .and_then(|value| value.to_str().ok())
    {
        None | Some("same-origin") => Ok(()),
        Some(site) => refused(format!("Sec-Fetch-Site is {site:?}")),
    }
}

/// `scheme://host[:port]` of a URL.
fn origin_of(url: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("https", url));
    let host = rest.split(['/', '?', '#']).next().unwrap_or_default();
    format!("{scheme}://{host}")
}

/// Whether the browser reached us over HTTPS: a proxy said so, or the request went to
/// the host of an `https` public URL.
fn over_https(headers: &HeaderMap, public_url: Option<&str>) -> bool {
    let forwarded = headers
        .get("x-forwarded-proto")
        .and_then(|value| value.to_str().ok())
        .is_some_and(|proto| proto.trim().eq_ignore_ascii_case("https"));
    let host = headers
        .get(header::HOST)
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default();
    forwarded
        || public_url.is_some_and(|url| {
            url.starts_with("https://")
                && origin_of(url).eq_ignore_ascii_case(&format!("https://{host}"))
        })
}

/// The `Set-Cookie` value that signs `session` in (or, `None`, out).
fn session_cookie(session: Option<&Session>, secure: bool) -> String {
    let secure = if secure { "; Secure" } else { "" };
    match session {
        Some(session) => format!(
            "{COOKIE}={}; Path=/; HttpOnly; SameSite=Strict; Max-Age={SESSION_SECONDS}{secure}",
            session.encode()
        ),
        None => format!("{COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0{secure}"),
    }
}

/// Who the console request is from, for `scope`: a bearer token if the request has
/// one, else the session cookie. The actor names the console and the person.
fn console_caller(state: &ApiState, headers: &HeaderMap, scope: Scope) -> Result<Caller, ApiError> {
    if headers.contains_key(header::AUTHORIZATION) {
        return state.auth.authorize(headers, scope);
    }
    let session = Session::of(headers);
    let caller = state
        .auth
        .authorize_token(session.as_ref().map(|s| s.token.as_str()), scope)?;
    Ok(match session {
        Some(session) if caller.actor != "anonymous" => Caller {
            actor: console_actor(&caller.actor, session.name.as_deref()),
        },
        _ => caller,
    })
}

/// How the audit log names a person acting from the console: their name (if given)
/// and the token's actor.
fn console_actor(token_actor: &str, name: Option<&str>) -> String {
    match name {
        Some(name) => format!("{name} via console ({token_actor})"),
        None => format!("console ({token_actor})"),
    }
}

/// What the page shows about the viewer: signed in (and whether they may act) or not.
#[derive(Debug, Clone)]
pub struct Viewer {
    /// The session, when signed in with a token this server knows.
    pub session: Option<Session>,
    /// The actor the audit log would name.
    pub actor: Option<String>,
    /// Whether the session's token has scope `act`.
    pub can_act: bool,
    /// Whether the server has any token (without one, actions are disabled).
    pub actions_enabled: bool,
}

impl Viewer {
    fn of(state: &ApiState, headers: &HeaderMap) -> Viewer {
        let session = Session::of(headers).filter(|s| state.auth.knows(&s.token));
        let acting = session
            .as_ref()
            .and_then(|_| console_caller(state, headers, Scope::Act).ok());
        // The token's own actor, whatever its scopes (with reads open, a read check
        // would name every caller "anonymous").
        let actor = session.as_ref().and_then(|session| {
            state
                .auth
                .actor_of(&session.token)
                .map(|actor| console_actor(&actor, session.name.as_deref()))
        });
        Viewer {
            can_act: acting.is_some(),
            actor,
            session,
            actions_enabled: !state.auth.is_open(),
        }
    }

    /// The form token of the session, if signed in.
    pub fn form_token(&self) -> Option<String> {
        self.session.as_ref().map(form_token)
    }
}

// ---------------------------------------------------------------------------------
// Answers.

/// The console's security headers on an HTML answer.
fn html(status: StatusCode, body: String) -> Response {
    let mut response = (status, body).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    secure_headers(headers);
    response
}

fn secure_headers(headers: &mut HeaderMap) {
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; \
             img-src 'self' data:; connect-src 'self'; form-action 'self'; \
             frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    // `same-origin`, not `no-referrer`: under `no-referrer` browsers send `Origin: null`
    // with a page's own form posts, which the origin check must refuse. Nothing leaves
    // for other sites either way.
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
}

/// An error as a console page (the JSON API's errors stay JSON).
fn error_page(error: ApiError, viewer: &Viewer) -> Response {
    let (status, message) = describe(&error);
    html(status, pages::error(status, &message, viewer))
}

/// The status of an error and its sentence, naming the field at fault when one is.
fn describe(error: &ApiError) -> (StatusCode, String) {
    let (status, body) = error.status_and_body();
    let detail = body.error;
    let message = match &detail.field {
        Some(field) if !detail.message.contains(field.as_str()) => {
            format!("{field}: {}", detail.message)
        }
        _ => detail.message,
    };
    (status, message)
}

fn see_other(location: &str) -> Response {
    let mut response = StatusCode::SEE_OTHER.into_response();
    if let Ok(value) = HeaderValue::from_str(location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    secure_headers(response.headers_mut());
    response
}

/// Where to go after signing in: a path on this server, never another site.
fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(path)
            if path.starts_with('/')
                && !path.starts_with("//")
                && !path.contains('\\')
                && !path.chars().any(char::is_control) =>
        {
            path.to_owned()
        }
        _ => "/".to_owned(),
    }
}

fn login_redirect(next: &str) -> Response {
    let query = serde_urlencoded::to_string([("next", next)]).unwrap_or_default();
    see_other(&format!("/console/login?{query}"))
}

/// The viewer may read, or the page to send them to.
fn require_read(
    state: &ApiState,
    headers: &HeaderMap,
    here: &str,
) -> Result<Viewer, Box<Response>> {
    let viewer = Viewer::of(state, headers);
    match console_caller(state, headers, Scope::Read) {
        Ok(_) => Ok(viewer),
        Err(ApiError::Unauthorized(_)) => Err(Box::new(login_redirect(here))),
        Err(error) => Err(Box::new(error_page(error, &viewer))),
    }
}

/// A fragment the page polls: 401 when the session ended, so the script says so.
fn require_read_fragment(state: &ApiState, headers: &HeaderMap) -> Result<(), Box<Response>> {
    console_caller(state, headers, Scope::Read)
        .map(|_| ())
        .map_err(|error| Box::new(error.into_response()))
}

/// A fragment with its `ETag`, or `304` when the caller has it already.
fn fragment(headers: &HeaderMap, etag: String, body: impl FnOnce() -> String) -> Response {
    let quoted = format!("\"{etag}\"");
    // `body` runs only when the caller does not have this version already.
    let mut response = if holds(headers, &etag) {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        html(StatusCode::OK, body())
    };
    let headers = response.headers_mut();
    secure_headers(headers);
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    if let Ok(value) = HeaderValue::from_str(&quoted) {
        headers.insert(header::ETAG, value);
    }
    response
}

/// Whether the request's `If-None-Match` names the (unquoted) `etag`.
fn holds(headers: &HeaderMap, etag: &str) -> bool {
    let quoted = format!("\"{etag}\"");
    headers
        .get(header::IF_NONE_MATCH)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|given| given.split(',').any(|tag| tag.trim() == quoted))
}

fn digest_hex(parts: impl IntoIterator<Item = String>) -> String {
    let mut hasher = Sha256::new();
    for part in parts {
        hasher.update(part.as_bytes());
        hasher.update([0]);
    }
    hex::encode(&hasher.finalize()[..12])
}

// ---------------------------------------------------------------------------------
// The analyses page.

/// The list's filters as the query string gives them.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Filters {
    /// A state, or a group: `attention`, `active`, `problems`.
    pub state: Option<String>,
    /// Text the flag contains.
    pub flag: Option<String>,
    /// Changed within: `1h`, `24h`, `7d`, `30d`.
    pub since: Option<String>,
}

/// The state groups the filter offers, with their states.
pub const STATE_GROUPS: [(&str, &str, &[AnalysisState]); 3] = [
    (
        "attention",
        "needs a person",
        &[AnalysisState::AwaitingReview, AnalysisState::RollbackFailed],
    ),
    (
        "active",
        "active",
        &[
            AnalysisState::Pending,
            AnalysisState::Running,
            AnalysisState::Paused,
            AnalysisState::AwaitingReview,
            AnalysisState::RollbackFailed,
        ],
    ),
    (
        "problems",
        "problems",
        &[
            AnalysisState::RolledBack,
            AnalysisState::RollbackFailed,
            AnalysisState::Failed,
        ],
    ),
];

/// The time windows the filter offers, in seconds.
pub const WINDOWS: [(&str, &str, f64); 4] = [
    ("1h", "last hour", 3600.0),
    ("24h", "last 24 hours", 86_400.0),
    ("7d", "last 7 days", 7.0 * 86_400.0),
    ("30d", "last 30 days", 30.0 * 86_400.0),
];

/// How long a rollback or failure counts as news (sorts above the running ones).
const RECENT_PROBLEMS: f64 = 86_400.0;

impl Filters {
    /// The store query, or an error naming the field at fault.
    pub fn query(&self, now: f64) -> Result<OverviewQuery, ApiError> {
        let state = self.state.as_deref().map(str::trim).unwrap_or_default();
        let states = if state.is_empty() {
            Vec::new()
        } else if let Some((_, _, states)) = STATE_GROUPS.iter().find(|(name, ..)| *name == state) {
            states.to_vec()
        } else {
            vec![state.parse::<AnalysisState>().map_err(|_| {
                let known: Vec<String> = STATE_GROUPS
                    .iter()
                    .map(|(name, ..)| (*name).to_owned())
                    .chain(AnalysisState::ALL.iter().map(|s| s.as_str().to_owned()))
                    .collect();
                ApiError::BadParameter {
                    code: "invalid_parameter",
                    field: "state".to_owned(),
                    message: format!("state: {state:?} is not one of {}", known.join(", ")),
                    allowed: Some(known),
                }
            })?]
        };
        let flag = self.flag.as_deref().map(str::trim).unwrap_or_default();
        if flag.chars().count() > 200 {
            return Err(ApiError::parameter(
                "invalid_parameter",
                "flag",
                "flag: at most 200 characters",
            ));
        }
        let since = self.since.as_deref().map(str::trim).unwrap_or_default();
        let updated_since = if since.is_empty() {
            None
        } else {
            let (_, _, seconds) = WINDOWS
                .iter()
                .find(|(name, ..)| *name == since)
                .ok_or_else(|| {
                    ApiError::parameter(
                        "invalid_parameter",
                        "since",
                        format!("since: {since:?} is not one of 1h, 24h, 7d, 30d (or empty for any time)"),
                    )
                })?;
            Some(now - seconds)
        };
        Ok(OverviewQuery {
            states,
            flag_contains: (!flag.is_empty()).then(|| flag.to_owned()),
            updated_since,
            recent_after: now - RECENT_PROBLEMS,
            limit: MAX_ROWS,
        })
    }

    /// The filters as a query string (`?state=...`), empty when none is set.
    pub fn query_string(&self) -> String {
        let pairs: Vec<(&str, &str)> = [
            ("state", &self.state),
            ("flag", &self.flag),
            ("since", &self.since),
        ]
        .into_iter()
        .filter_map(|(name, value)| {
            value
                .as_deref()
                .map(str::trim)
                .filter(|v| !v.is_empty())
                .map(|v| (name, v))
        })
        .collect();
        let text = serde_urlencoded::to_string(pairs).unwrap_or_default();
        if text.is_empty() {
            text
        } else {
            format!("?{text}")
        }
    }
}

fn parse_filters(raw: Option<&str>) -> Result<Filters, ApiError> {
    let raw = raw.unwrap_or_default();
    serde_urlencoded::from_str(raw).map_err(|error| {
        ApiError::parameter(
            "invalid_parameter",
            "query",
            format!("the query string: {error}"),
        )
    })
}

/// What the list shows: the rows, the counts and the time they were read.
async fn listing(state: &ApiState, filters: &Filters) -> Result<pages::Listing, ApiError> {
    let now = state.clock.now();
    let query = filters.query(now)?;
    let overview = state.store.overview(&query).await?;
    let counts = state.store.counts_by_state().await?;
    Ok(pages::Listing {
        overview,
        counts,
        now,
    })
}

async fn list_page(
    State(state): State<ApiState>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Response {
    let here = match &raw {
        Some(query) => format!("/?{query}"),
        None => "/".to_owned(),
    };
    let viewer = match require_read(&state, &headers, &here) {
        Ok(viewer) => viewer,
        Err(response) => return *response,
    };
    let filters = match parse_filters(raw.as_deref()) {
        Ok(filters) => filters,
        Err(error) => return error_page(error, &viewer),
    };
    match listing(&state, &filters).await {
        Ok(listing) => html(
            StatusCode::OK,
            pages::list_page(&listing, &filters, &viewer, &listing_etag(&listing)),
        ),
        Err(error) => {
            let (status, message) = describe(&error);
            html(status, pages::list_error(&filters, &viewer, &message))
        }
    }
}

async fn rows(
    State(state): State<ApiState>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Response {
    if let Err(response) = require_read_fragment(&state, &headers) {
        return *response;
    }
    let filters = match parse_filters(raw.as_deref()) {
        Ok(filters) => filters,
        Err(error) => return error.into_response(),
    };
    match listing(&state, &filters).await {
        Ok(listing) => {
            let etag = listing_digest(&listing);
            fragment(&headers, etag, || pages::listing(&listing, &filters))
        }
        Err(error) => error.into_response(),
    }
}

/// What identifies a listing's content: every row's id, version and state, the counts
/// and the number matched (times are written absolute, so they change with these).
fn listing_etag(listing: &pages::Listing) -> String {
    format!("\"{}\"", listing_digest(listing))
}

fn listing_digest(listing: &pages::Listing) -> String {
    digest_hex(
        listing
            .overview
            .rows
            .iter()
            .map(|row| format!("{}:{}:{}", row.id, row.version, row.state))
            .chain(listing.counts.values().map(u64::to_string))
            .chain([listing.overview.matching.to_string()]),
    )
}

/// The `ETag` of an analysis page's live part for this viewer.
fn live_etag(stamp: String, viewer: &Viewer) -> String {
    digest_hex([
        stamp,
        viewer.can_act.to_string(),
        viewer.session.is_some().to_string(),
    ])
}

// ---------------------------------------------------------------------------------
// The analysis page.

async fn analysis_page(
    State(state): State<ApiState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(notice): Query<Notice>,
) -> Response {
    let viewer = match require_read(&state, &headers, &format!("/console/analyses/{id}")) {
        Ok(viewer) => viewer,
        Err(response) => return *response,
    };
    match pages::AnalysisData::read(&state, &id).await {
        Ok(data) => {
            let etag = format!("\"{}\"", live_etag(data.stamp(), &viewer));
            html(
                StatusCode::OK,
                pages::analysis_page(&data, &viewer, notice.done.as_deref(), &etag),
            )
        }
        Err(error) => error_page(error, &viewer),
    }
}

/// The notice an analysis page shows after an action.
#[derive(Debug, Deserialize)]
struct Notice {
    done: Option<String>,
}

async fn analysis_live(
    State(state): State<ApiState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    if let Err(response) = require_read_fragment(&state, &headers) {
        return *response;
    }
    let viewer = Viewer::of(&state, &headers);
    let head = match pages::Head::read(&state, &id).await {
        Ok(head) => head,
        Err(error) => return error.into_response(),
    };
    let etag = live_etag(head.stamp(), &viewer);
    if holds(&headers, &etag) {
        return fragment(&headers, etag, String::new);
    }
    // Changed: read the looks and the audit log for the same head the ETag names.
    match pages::AnalysisData::complete(&state, head).await {
        Ok(data) => fragment(&headers, etag, || pages::live(&data, &viewer)),
        Err(error) => error.into_response(),
    }
}

// ---------------------------------------------------------------------------------
// Actions.

#[derive(Debug, Deserialize)]
struct ConfirmQuery {
    action: Option<String>,
}

fn parse_action(text: Option<&str>) -> Result<AuditAction, ApiError> {
    let text = text.unwrap_or_default();
    text.parse::<AuditAction>().map_err(|_| {
        ApiError::unknown_name(
            "unknown_action",
            "action",
            text,
            &["pause", "resume", "promote", "rollback"].map(str::to_owned),
        )
    })
}

async fn confirm_page(
    State(state): State<ApiState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(query): Query<ConfirmQuery>,
) -> Response {
    let here = format!(
        "/console/analyses/{id}/confirm?action={}",
        query.action.as_deref().unwrap_or_default()
    );
    let viewer = Viewer::of(&state, &headers);
    if let Err(error) = console_caller(&state, &headers, Scope::Act) {
        return match error {
            ApiError::Unauthorized(_) => login_redirect(&here),
            other => error_page(other, &viewer),
        };
    }
    let result = async {
        let action = parse_action(query.action.as_deref())?;
        let analysis_id = parse_id(&id)?;
        let analysis = super::analyses::read(&state, analysis_id).await?;
        Ok::<_, ApiError>((action, analysis))
    }
    .await;
    match result {
        Ok((action, analysis)) => {
            let allowed = action_target(&analysis, action);
            html(
                if allowed.is_ok() {
                    StatusCode::OK
                } else {
                    StatusCode::CONFLICT
                },
                pages::confirm(&analysis, action, allowed.err().as_deref(), &viewer),
            )
        }
        Err(error) => error_page(error, &viewer),
    }
}

/// The confirmation form.
#[derive(Debug, Deserialize)]
struct ActionForm {
    action: Option<String>,
    reason: Option<String>,
    expected_version: Option<i64>,
    form_token: Option<String>,
}

/// Checks the form token against the session's, in constant time.
fn check_form_token(headers: &HeaderMap, given: Option<&str>) -> Result<(), ApiError> {
    let Some(session) = Session::of(headers) else {
        // Bearer callers (scripts) have no session and need no form token: a browser
        // never adds an Authorization header across sites by itself.
        return if headers.contains_key(header::AUTHORIZATION) {
            Ok(())
        } else {
            Err(ApiError::Unauthorized(
                "sign in first (/console/login)".to_owned(),
            ))
        };
    };
    let expected = form_token(&session);
    let given = given.unwrap_or_default();
    if bool::from(expected.as_bytes().ct_eq(given.as_bytes())) {
        Ok(())
    } else {
        Err(ApiError::Forbidden(
            "the form token is missing or does not match this session: reload the page and try again"
                .to_owned(),
        ))
    }
}

fn parse_form<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    serde_urlencoded::from_bytes(body).map_err(|error| {
        ApiError::BadRequest(format!(
            "the form body could not be read ({error}); send application/x-www-form-urlencoded"
        ))
    })
}

async fn act(
    State(state): State<ApiState>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let viewer = Viewer::of(&state, &headers);
    let result = async {
        same_origin(&headers, state.public_url.as_deref())?;
        let caller = console_caller(&state, &headers, Scope::Act)?;
        let form: ActionForm = parse_form(&body)?;
        check_form_token(&headers, form.form_token.as_deref())?;
        let action = parse_action(form.action.as_deref())?;
        let reason = form.reason.unwrap_or_default().trim().to_owned();
        if reason.is_empty() || reason.chars().count() > MAX_REASON {
            return Err(ApiError::field(
                "invalid_field",
                "reason",
                format!("reason must be 1 to {MAX_REASON} characters"),
            ));
        }
        let analysis_id = parse_id(&id)?;
        let analysis = super::analyses::read(&state, analysis_id).await?;
        let new_state = action_target(&analysis, action).map_err(ApiError::Conflict)?;
        let updated = state
            .store
            .apply_manual_action(
                analysis_id,
                ManualAction {
                    actor: caller.actor.clone(),
                    action,
                    reason,
                    new_state,
                    expected_version: form.expected_version.unwrap_or(analysis.version),
                },
                state.clock.now(),
            )
            .await
            .map_err(|error| match error {
                StoreError::Conflict(_) => ApiError::Conflict(format!(
                    "{} changed since you opened the confirmation (it is now {}); \
                     look at it again before acting",
                    analysis.flag,
                    analysis.state
                )),
                other => other.into(),
            })?;
        tracing::info!(analysis = %analysis_id, action = action.as_str(), actor = %caller.actor, to = %updated.state, "manual action recorded from the console");
        Ok::<_, ApiError>((analysis_id, action))
    }
    .await;
    match result {
        Ok((analysis_id, action)) => see_other(&format!(
            "/console/analyses/{analysis_id}?done={}",
            action.as_str()
        )),
        Err(ApiError::Unauthorized(_)) => login_redirect(&format!("/console/analyses/{id}")),
        Err(error) => error_page(error, &viewer),
    }
}

// ---------------------------------------------------------------------------------
// Signing in and out.

#[derive(Debug, Deserialize)]
struct LoginQuery {
    next: Option<String>,
}

#[derive(Debug, Deserialize)]
struct LoginForm {
    token: Option<String>,
    name: Option<String>,
    next: Option<String>,
}

async fn login_page(
    State(state): State<ApiState>,
    headers: HeaderMap,
    Query(query): Query<LoginQuery>,
) -> Response {
    let viewer = Viewer::of(&state, &headers);
    html(
        StatusCode::OK,
        pages::login(&safe_next(query.next.as_deref()), None, &viewer),
    )
}

async fn login(State(state): State<ApiState>, headers: HeaderMap, body: Bytes) -> Response {
    let viewer = Viewer::of(&state, &headers);
    if let Err(error) = same_origin(&headers, state.public_url.as_deref()) {
        return error_page(error, &viewer);
    }
    let form: LoginForm = match parse_form(&body) {
        Ok(form) => form,
        Err(error) => return error_page(error, &viewer),
    };
    let next = safe_next(form.next.as_deref());
    let token = form.token.unwrap_or_default().trim().to_owned();
    let name = form
        .name
        .map(|name| name.trim().to_owned())
        .filter(|name| !name.is_empty());
    let refuse = |message: &str| {
        html(
            StatusCode::UNAUTHORIZED,
            pages::login(&next, Some(message), &viewer),
        )
    };
    if state.auth.is_open() {
        return refuse(
            "This server has no API token, so there is nothing to sign in with: reading is open and manual actions are disabled (set server.auth_token or [[server.tokens]]).",
        );
    }
    if token.is_empty() || !state.auth.knows(&token) {
        tracing::info!("console sign-in refused: unknown token");
        return refuse("That token is not known to this server.");
    }
    if let Some(name) = &name
        && (name.chars().count() > MAX_NAME || name.chars().any(char::is_control))
    {
        return refuse("name: at most 64 characters, without control characters.");
    }
    let session = Session { token, name };
    let mut response = see_other(&next);
    if let Ok(value) = HeaderValue::from_str(&session_cookie(
        Some(&session),
        over_https(&headers, state.public_url.as_deref()),
    )) {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    response
}

#[derive(Debug, Deserialize)]
struct LogoutForm {
    form_token: Option<String>,
}

async fn logout(State(state): State<ApiState>, headers: HeaderMap, body: Bytes) -> Response {
    let viewer = Viewer::of(&state, &headers);
    let checked = same_origin(&headers, state.public_url.as_deref())
        .and_then(|()| parse_form::<LogoutForm>(&body))
        .and_then(|form| check_form_token(&headers, form.form_token.as_deref()));
    if let Err(error) = checked {
        return error_page(error, &viewer);
    }
    let mut response = see_other("/");
    if let Ok(value) = HeaderValue::from_str(&session_cookie(
        None,
        over_https(&headers, state.public_url.as_deref()),
    )) {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    response
}

// ---------------------------------------------------------------------------------
// Assets.

const SCRIPT: &str = include_str!("console.js");
const STYLE: &str = include_str!("console.css");

fn asset(content_type: &'static str, body: &'static str) -> Response {
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=300"),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    response
}

async fn script() -> Response {
    asset("text/javascript; charset=utf-8", SCRIPT)
}

async fn style() -> Response {
    asset("text/css; charset=utf-8", STYLE)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for (name, value) in pairs {
            headers.append(
                header::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_str(value).unwrap(),
            );
        }
        headers
    }

    #[test]
    fn a_session_round_trips_through_its_cookie_whatever_the_token_holds() {
        let session = Session {
            token: "a;b=c d\"é".to_owned(),
            name: Some("Alice".to_owned()),
        };
        let cookie = session_cookie(Some(&session), false);
        assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"));
        assert!(!cookie.contains("Secure"));
        let value = cookie.split(';').next().unwrap();
        let found = Session::of(&headers(&[("cookie", &format!("other=1; {value}; x=y"))]));
        assert_eq!(found, Some(session));
        assert_eq!(
            Session::of(&headers(&[("cookie", "canary_console=%%%")])),
            None
        );
        assert!(session_cookie(None, true).contains("Max-Age=0; Secure"));
    }

    #[test]
    fn the_form_token_is_bound_to_the_session_token() {
        let a = Session {
            token: "one".to_owned(),
            name: None,
        };
        let b = Session {
            token: "two".to_owned(),
            name: Some("x".to_owned()),
        };
        assert_eq!(form_token(&a).len(), 32);
        assert_ne!(form_token(&a), form_token(&b));
        assert_eq!(
            form_token(&a),
            form_token(&Session {
                name: Some("y".to_owned()),
                ..a.clone()
            })
        );
    }

    #[test]
    fn only_requests_from_this_origin_pass() {
        let host = ("host", "canary.internal:8080");
        assert!(
            same_origin(
                &headers(&[host, ("origin", "http://canary.internal:8080")]),
                None
            )
            .is_ok()
        );
        assert!(
            same_origin(
                &headers(&[host, ("origin", "https://canary.internal:8080")]),
                None
            )
            .is_ok()
        );
        assert!(same_origin(&headers(&[host, ("origin", "https://evil.example")]), None).is_err());
        assert!(same_origin(&headers(&[host, ("origin", "null")]), None).is_err());
        assert!(
            same_origin(
                &headers(&[host, ("origin", "https://canary.example.com")]),
                Some("https://canary.example.com/base/")
            )
            .is_ok()
        );
        assert!(same_origin(&headers(&[host, ("sec-fetch-site", "cross-site")]), None).is_err());
        assert!(same_origin(&headers(&[host, ("sec-fetch-site", "same-site")]), None).is_err());
        assert!(same_origin(&headers(&[host, ("sec-fetch-site", "same-origin")]), None).is_ok());
        assert!(same_origin(&headers(&[host]), None).is_ok());
    }

    #[test]
    fn the_next_page_after_sign_in_stays_on_this_server() {
        assert_eq!(
            safe_next(Some("/console/analyses/x?y=1")),
            "/console/analyses/x?y=1"
        );
        for bad in [
            "https://evil.example/",
            "//evil.example/",
            "/\\evil",
            "",
            "x",
        ] {
            assert_eq!(safe_next(Some(bad)), "/", "{bad}");
        }
        assert_eq!(safe_next(None), "/");
    }

    #[test]
    fn cookies_are_secure_behind_https() {
        assert!(over_https(
            &headers(&[("x-forwarded-proto", "https")]),
            None
        ));
        assert!(over_https(
            &headers(&[("host", "canary.example.com")]),
            Some("https://canary.example.com")
        ));
        assert!(!over_https(
            &headers(&[("host", "127.0.0.1:8080")]),
            Some("https://canary.example.com")
        ));
        assert!(!over_https(&headers(&[]), None));
    }

    #[test]
    fn filters_name_the_field_at_fault_and_groups_expand() {
        let filters = |state: &str, since: &str| Filters {
            state: Some(state.to_owned()),
            flag: Some("  pay ".to_owned()),
            since: Some(since.to_owned()),
        };
        let query = filters("attention", "24h").query(1_000_000.0).unwrap();
        assert_eq!(
            query.states,
            [AnalysisState::AwaitingReview, AnalysisState::RollbackFailed]
        );
        assert_eq!(query.flag_contains.as_deref(), Some("pay"));
        assert_eq!(query.updated_since, Some(1_000_000.0 - 86_400.0));
        let one = filters("rolled_back", "").query(0.0).unwrap();
        assert_eq!(one.states, [AnalysisState::RolledBack]);
        assert_eq!(one.updated_since, None);
        let wrong = describe(&filters("gone", "").query(0.0).unwrap_err()).1;
        assert!(wrong.contains("state") && wrong.contains("gone"), "{wrong}");
        let wrong = describe(&filters("", "3w").query(0.0).unwrap_err()).1;
        assert!(wrong.starts_with("since"), "{wrong}");
        assert_eq!(
            filters("active", "7d").query_string(),
            "?state=active&flag=pay&since=7d"
        );
        assert_eq!(Filters::default().query_string(), "");
    }
}
