//! `GET /v1/openapi.json`: the OpenAPI 3.1 document, derived rather than kept by hand.
//!
//! Every route is registered once, in `api::operations`, together with its
//! operation: the `#[utoipa::path]` on its handler (path, parameters, answers) and the
//! `ToSchema` of the types it reads and answers with. The router and the document are
//! the two halves of that one list, so a route cannot be served undocumented. What the
//! middleware adds to every operation is added here in one place, as the layers apply
//! it: `secure` the bearer scheme and the 401, 403 and 415 answers under
//! `/v1/analyses` ([`super::auth`]), `bound` the 408, 413, 414 and 431 answers
//! ([`super::limits`]). A test serves every documented operation on the live router and
//! checks that each answer it gets is one the document lists.

use std::sync::LazyLock;

use axum::Json;
use serde_json::{Value, json};

/// `GET /v1/openapi.json`: 200 with the document.
#[utoipa::path(
    get,
    path = "/v1/openapi.json",
    operation_id = "openapi",
    summary = "This document",
    responses((status = 200, description = "OpenAPI 3.1", body = Object))
)]
pub async fn openapi() -> Json<Value> {
    Json(document())
}

fn error_response(description: &str) -> Value {
    json!({
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
    })
}

/// Adds the security requirement and the 401, 403 and 415 answers to every operation
/// under `/v1/analyses`, `/v1/argo`, `/v1/flagger` and `/kayenta`: a token (bearer, or the password of
/// Basic credentials) for POST and PUT (scope `submit` or `act`), an optional one for
/// GET (scope `read`, required only with `server.require_token_for_reads`).
fn secure(document: &mut Value) {
    let Some(paths) = document["paths"].as_object_mut() else {
        return;
    };
    for (path, item) in paths.iter_mut() {
        if !(path.starts_with("/v1/analyses")
            || path.starts_with("/v1/argo/")
            || path.starts_with("/v1/flagger/")
            || path.starts_with("/kayenta/"))
        {
            continue;
        }
        let Some(operations) = item.as_object_mut() else {
            continue;
        };
        for (method, operation) in operations.iter_mut() {
            let scope = if method == "get" {
                "read"
            } else if path.ends_with("/actions") {
                "act"
            } else {
                "submit"
            };
            operation["security"] = if method == "get" {
                json!([{}, {"bearer": []}, {"basic": []}])
            } else {
                json!([{"bearer": []}, {"basic": []}])
            };
            let responses = &mut operation["responses"];
            if method == "get" {
                responses["401"] = error_response(
                    "Only with `server.require_token_for_reads`: no bearer token, or an unknown one (`unauthorized`, with `WWW-Authenticate: Bearer`).",
                );
                responses["403"] = error_response(
                    "Only with `server.require_token_for_reads`: the token lacks scope `read` (`forbidden`).",
                );
            } else {
                responses["401"] = error_response(&format!(
                    "The server has tokens and the request has no bearer token, or an unknown one (`unauthorized`, with `WWW-Authenticate: Bearer`). Needs scope `{scope}`."
                ));
                responses["403"] = error_response(&if scope == "act" {
                    "The token lacks scope `act`, or the server has no token at all: manual actions are then disabled (`forbidden`).".to_owned()
                } else {
                    "The token lacks scope `submit` (`forbidden`).".to_owned()
                });
                responses["415"] = error_response(
                    "The body was not sent as `Content-Type: application/json` (`unsupported_media_type`); form and text/plain bodies are refused so that no web page can post across sites.",
                );
            }
        }
    }
}

/// Adds the answers of the request bounds ([`limits`](super::limits)) to every
/// operation: 408 and 413 where a body is sent, 414 and 431 everywhere.
fn bound(document: &mut Value) {
    let Some(paths) = document["paths"].as_object_mut() else {
        return;
    };
    for item in paths.values_mut() {
        let Some(operations) = item.as_object_mut() else {
            continue;
        };
        for (method, operation) in operations.iter_mut() {
            let responses = &mut operation["responses"];
            if method == "post" || method == "put" {
                responses["408"] = error_response(
                    "The body did not arrive within `[server] body_read_timeout` (`request_timeout`); the connection is closed.",
                );
                responses["413"] =
                    error_response("The body is longer than 64 KiB (`body_too_large`).");
            }
            responses["414"] = error_response("The URL is longer than 8 KiB (`uri_too_long`).");
            responses["431"] =
                error_response("The headers are longer than 16 KiB (`headers_too_large`).");
        }
    }
}

/// The document, built once.
static DOCUMENT: LazyLock<Value> = LazyLock::new(|| {
    let (_, api) = super::operations().split_for_parts();
    let mut document = serde_json::to_value(api).unwrap_or_else(|_| json!({"paths": {}}));
    document["info"] = json!({
        "title": "canary serve",
        "version": env!("CARGO_PKG_VERSION"),
        "description": "Automated canary analysis: submit staged rollouts, wait for their verdicts, inspect and override them; Kayenta's canary-execution API under /kayenta. Errors are JSON, whatever the status (also 404, 405 with `Allow`, 408, 413, 414, 431): {\"error\": {\"code\", \"message\", \"field\"?, \"allowed\"?}}. Request bodies must be `application/json` (415 otherwise). Authentication: bearer tokens (or the token as the password of Basic credentials) with scopes `read`, `submit` and `act` (`server.auth_token` has all three; `[[server.tokens]]` name theirs). With any token configured, submitting needs `submit` and manual actions `act`; reads need `read` only with `server.require_token_for_reads`. A server without tokens lets anyone who reaches it submit (it warns at start-up) and refuses manual actions. /healthz, /readyz, /metrics and this document never need a token."
    });
    document["components"]["securitySchemes"] = json!({
        "bearer": {"type": "http", "scheme": "bearer", "description": "server.auth_token (every scope) or a [[server.tokens]] token with the scope the operation needs."},
        "basic": {"type": "http", "scheme": "basic", "description": "The same token as the password, any user name: for clients that can only carry credentials in the URL (http://user:TOKEN@host/), such as Argo Rollouts' kayenta provider. The server never asks for Basic credentials, so browsers do not keep them."}
    });
    secure(&mut document);
    bound(&mut document);
    document
});

/// The document.
pub fn document() -> Value {
    DOCUMENT.clone()
}

/// Every documented operation: method (upper case) and path template.
pub fn routes() -> Vec<(String, String)> {
    let mut routes: Vec<(String, String)> = DOCUMENT["paths"]
        .as_object()
        .into_iter()
        .flatten()
        .flat_map(|(path, item)| {
            item.as_object()
                .into_iter()
                .flatten()
                .map(|(method, _)| (method.to_uppercase(), path.clone()))
        })
        .collect();
    routes.sort();
    routes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_route_is_documented_once_with_its_schemas() {
        let routes = routes();
        assert_eq!(routes.len(), 19, "{routes:?}");
        let document = document();
        assert_eq!(document["openapi"], "3.1.0");
        let text = document.to_string();
        // Every schema referred to is defined.
        for reference in text.split("\"$ref\":\"#/components/schemas/").skip(1) {
            let name = reference.split('"').next().unwrap();
            assert!(
                document["components"]["schemas"][name].is_object(),
                "{name} is referred to but not defined"
            );
        }
        let states = &document["components"]["schemas"]["AnalysisState"]["enum"];
        assert_eq!(states.as_array().unwrap().len(), 8, "{states}");
    }

    #[test]
    fn every_analysis_operation_documents_its_token_and_every_post_its_415() {
        let document = document();
        for (path, item) in document["paths"].as_object().unwrap() {
            for (method, operation) in item.as_object().unwrap() {
                let responses = &operation["responses"];
                if path.starts_with("/v1/analyses")
                    || path.starts_with("/v1/argo/")
                    || path.starts_with("/v1/flagger/")
                    || path.starts_with("/kayenta/")
                {
                    assert!(operation["security"].is_array(), "{method} {path}");
                    assert!(responses["401"].is_object(), "{method} {path}");
                    assert!(responses["403"].is_object(), "{method} {path}");
                }
                if method == "post" || method == "put" {
                    assert!(responses["415"].is_object(), "{method} {path}");
                }
            }
        }
    }
}
