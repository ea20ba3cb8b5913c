//! The bounds every request meets before a handler sees it, and the JSON error body for
//! every status the server answers.
//!
//! [`bounded_requests`] refuses a URL longer than [`MAX_URI_BYTES`] (414) and headers
//! longer than [`MAX_HEADER_BYTES`] (431), and reads the body in full, at most
//! [`MAX_BODY_BYTES`] (413) within the server's body read timeout (408, and the
//! connection is closed). [`json_errors`] turns any error answer not already JSON (a 405
//! from the method router, a rejection of an extractor) into the JSON error body, so
//! a client never has to parse anything else; the web console's HTML error pages, meant
//! for a person, are left as they are.

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use futures::StreamExt;

use super::error::ApiError;
use super::state::ApiState;

/// The longest request body: a submission or an action is a few hundred bytes.
pub const MAX_BODY_BYTES: usize = 64 * 1024;
/// The longest path and query.
pub const MAX_URI_BYTES: usize = 8 * 1024;
/// The most bytes of header names and values together.
pub const MAX_HEADER_BYTES: usize = 16 * 1024;

/// Refuses over-long URLs and headers, and reads the body within the limits (see the
/// module documentation); the handler gets the body already read.
pub async fn bounded_requests(
    State(state): State<ApiState>,
    request: Request,
    next: Next,
) -> Response {
    let uri_bytes = request.uri().to_string().len();
    if uri_bytes > MAX_URI_BYTES {
        return refused(
            StatusCode::URI_TOO_LONG,
            "uri_too_long",
            format!("the URL is {uri_bytes} bytes long; at most {MAX_URI_BYTES} are accepted"),
        );
    }
    let header_bytes: usize = request
        .headers()
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len())
        .sum();
    if header_bytes > MAX_HEADER_BYTES {
        return refused(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            "headers_too_large",
            format!(
                "the headers are {header_bytes} bytes long; at most {MAX_HEADER_BYTES} are accepted"
            ),
        );
    }
    let (parts, body) = request.into_parts();
    let timeout = state.body_read_timeout;
    let body = match tokio::time::timeout(timeout, read_body(body)).await {
        Ok(Ok(bytes)) => bytes,
        Ok(Err(error)) => return error.into_response(),
        Err(_) => {
            let mut response = refused(
                StatusCode::REQUEST_TIMEOUT,
                "request_timeout",
                format!(
                    "the request body did not arrive within {} s",
                    timeout.as_secs_f64()
                ),
            );
            response
                .headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
            return response;
        }
    };
    next.run(Request::from_parts(parts, Body::from(body))).await
}

/// The body, or a 413 as soon as it is longer than [`MAX_BODY_BYTES`].
async fn read_body(body: Body) -> Result<Bytes, ApiError> {
    let too_large = || ApiError::Refused {
        status: StatusCode::PAYLOAD_TOO_LARGE,
        code: "body_too_large",
        message: format!("the request body is longer than {MAX_BODY_BYTES} bytes"),
    };
    let mut stream = body.into_data_stream();
    let mut bytes = Vec::new();
    while let Some(chunk) = stream.next().await {
        let chunk =
            chunk.map_err(|error| ApiError::BadRequest(format!("reading the body: {error}")))?;
        if bytes.len() + chunk.len() > MAX_BODY_BYTES {
            return Err(too_large());
        }
        bytes.extend_from_slice(&chunk);
    }
    Ok(Bytes::from(bytes))
}

fn refused(status: StatusCode, code: &'static str, message: String) -> Response {
    ApiError::Refused {
        status,
        code,
        message,
    }
    .into_response()
}

/// Gives every error answer the JSON error body: answers that are already JSON pass
/// unchanged; others keep their status and headers (`Allow` on a 405) and get a body
/// whose message is the original text, or a sentence for the status.
pub async fn json_errors(request: Request, next: Next) -> Response {
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let response = next.run(request).await;
    let status = response.status();
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.starts_with("application/json"));
    // The console's error pages are HTML on purpose (a person reads them).
    let is_page = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.starts_with("text/html"));
    if !(status.is_client_error() || status.is_server_error()) || is_json || is_page {
        return response;
    }
    let (parts, body) = response.into_parts();
    let text = axum::body::to_bytes(body, 4096)
        .await
        .ok()
        .and_then(|bytes| String::from_utf8(bytes.to_vec()).ok())
        .unwrap_or_default();
    let allowed = parts
        .headers
        .get(header::ALLOW)
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned);
    let (code, message) = describe(status, &method, &path, allowed.as_deref(), text.trim());
    let mut json = refused(status, code, message);
    for (name, value) in &parts.headers {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            json.headers_mut().insert(name.clone(), value.clone());
        }
    }
    json
}

/// The code and message of an error answer that came without a JSON body.
fn describe(
    status: StatusCode,
    method: &Method,
    path: &str,
    allowed: Option<&str>,
    text: &str,
) -> (&'static str, String) {
    let or_text = |sentence: String| {
        if text.is_empty() {
            sentence
        } else {
            format!("{sentence}: {text}")
        }
    };
    match status {
        StatusCode::METHOD_NOT_ALLOWED => (
            "method_not_allowed",
            format!(
                "{method} is not allowed on {path}; allowed: {}",
                allowed.unwrap_or("see /v1/openapi.json")
            ),
        ),
        StatusCode::PAYLOAD_TOO_LARGE => (
            "body_too_large",
            format!("the request body is longer than {MAX_BODY_BYTES} bytes"),
        ),
        StatusCode::URI_TOO_LONG => ("uri_too_long", or_text("the URL is too long".to_owned())),
        StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE => (
            "headers_too_large",
            or_text("the headers are too large".to_owned()),
        ),
        StatusCode::REQUEST_TIMEOUT => (
            "request_timeout",
            or_text("the request did not arrive in time".to_owned()),
        ),
        StatusCode::UNSUPPORTED_MEDIA_TYPE => (
            "unsupported_media_type",
            or_text("send the body as application/json".to_owned()),
        ),
        StatusCode::NOT_FOUND => (
            "no_such_route",
            format!("no route for {method} {path}; see /v1/openapi.json"),
        ),
        status if status.is_server_error() => (
            "internal",
            or_text(format!(
                "the server failed ({})",
                status.canonical_reason().unwrap_or("error")
            )),
        ),
        status => (
            "bad_request",
            or_text(format!(
                "the request was refused ({})",
                status.canonical_reason().unwrap_or("error")
            )),
        ),
    }
}
