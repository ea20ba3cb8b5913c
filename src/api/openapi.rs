//! `GET /v1/openapi.json`: the OpenAPI 3.1 document of every route in [`super::ROUTES`],
//! written by hand; a test checks it parses and lists exactly the router's routes.
//! [`document`] adds the bearer scheme and the 401, 403 and 415 answers to every
//! `/v1/analyses` operation in one place (`secure`), as [`super::auth`] applies them.

use axum::Json;
use serde_json::{Value, json};

/// `GET /v1/openapi.json`: 200 with the document.
pub async fn openapi() -> Json<Value> {
    Json(document())
}

fn error_response(description: &str) -> Value {
    json!({
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
    })
}

fn json_response(description: &str, schema: &str) -> Value {
    json!({
        "description": description,
        "content": {"application/json": {"schema": {"$ref": format!("#/components/schemas/{schema}")}}}
    })
}

fn id_parameter() -> Value {
    json!({
        "name": "id", "in": "path", "required": true,
        "description": "The analysis id returned by POST /v1/analyses.",
        "schema": {"type": "string", "format": "uuid"}
    })
}

fn wait_parameter() -> Value {
    json!({
        "name": "wait", "in": "query", "required": false,
        "description": "Long-poll: answer as soon as the analysis is final, or after this long (or when the server begins to stop) with its current state. `120s`, `2m`, `1m30s` or a finite number of seconds (`120`); at most 300 s; default 0.",
        "schema": {"type": "string", "example": "120s"}
    })
}

/// Adds the security requirement and the 401, 403 and 415 answers to every operation
/// under `/v1/analyses`: a bearer token for POST (scope `submit` or `act`), an optional
/// one for GET (scope `read`, required only with `server.require_token_for_reads`).
fn secure(document: &mut Value) {
    let Some(paths) = document["paths"].as_object_mut() else {
        return;
    };
    for (path, item) in paths.iter_mut() {
        if !path.starts_with("/v1/analyses") {
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
                json!([{}, {"bearer": []}])
            } else {
                json!([{"bearer": []}])
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
            if method == "post" {
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

/// The document.
pub fn document() -> Value {
    let mut document = unsecured_document();
    secure(&mut document);
    bound(&mut document);
    document
}

fn unsecured_document() -> Value {
    let mut paths = analysis_paths();
    merge(&mut paths, service_paths());
    let mut schemas = analysis_schemas();
    merge(&mut schemas, action_schemas());
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "canary serve",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Automated canary analysis: submit staged rollouts, wait for their verdicts, inspect and override them. Errors are JSON, whatever the status (also 404, 405 with `Allow`, 408, 413, 414, 431): {\"error\": {\"code\", \"message\", \"field\"?, \"allowed\"?}}. Request bodies must be `application/json` (415 otherwise). Authentication: bearer tokens with scopes `read`, `submit` and `act` (`server.auth_token` has all three; `[[server.tokens]]` name theirs). With any token configured, submitting needs `submit` and manual actions `act`; reads need `read` only with `server.require_token_for_reads`. A server without tokens lets anyone who reaches it submit (it warns at start-up) and refuses manual actions. /healthz, /readyz, /metrics and this document never need a token."
        },
        "paths": paths,
        "components": {
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "description": "server.auth_token (every scope) or a [[server.tokens]] token with the scope the operation needs."}
            },
            "schemas": schemas
        }
    })
}

/// Adds `more`'s keys to `object`, in their order.
fn merge(object: &mut Value, more: Value) {
    if let (Some(object), Value::Object(more)) = (object.as_object_mut(), more) {
        object.extend(more);
    }
}

/// The analysis states, as the schemas enumerate them.
fn states() -> Value {
    json!([
        "pending",
        "running",
        "paused",
        "promoted",
        "rolled_back",
        "awaiting_review",
        "rollback_failed",
        "failed"
    ])
}

/// The operations under `/v1/analyses`.
fn analysis_paths() -> Value {
    let states = states();
    json!({
        "/v1/analyses": {
            "post": {
                "operationId": "submitAnalysis",
                "summary": "Submit an analysis",
                "description": "Validates every field, stores the profile's text with the analysis and returns it in state `pending`. Workers start it at `start_at` (or at once). One analysis per flag at a time: while another analysis on the same flag store (the actuator's target, however it is named) and flag is pending, running, paused, awaiting review or rollback_failed, the submission is refused with a 409 (dry runs own no flag).",
                "requestBody": {"required": true, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Submission"}}}},
                "responses": {
                    "201": {
                        "description": "Stored.",
                        "headers": {"Location": {"description": "/v1/analyses/{id}", "schema": {"type": "string"}}},
                        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Analysis"}}}
                    },
                    "400": error_response("The body is not JSON (`malformed_json`; the message has the line and column)."),
                    "422": error_response("A field is missing, empty, of the wrong type, unknown or beyond its limit (flag key characters and length, scope length, `start_at` more than a year ahead); or the profile, source or actuator is not known (`allowed` lists the known names), or the profile has no rollout plan; or the body is not a JSON object (`invalid_body`, field `body`). `field` names the field."),
                    "409": error_response("Another active analysis owns the flag (`flag_owned`, field `flag`); the message names its id and state."),
                    "503": error_response("The store is unavailable, or does not answer within `[store] api_timeout`.")
                }
            },
            "get": {
                "operationId": "listAnalyses",
                "summary": "List analyses, oldest first, with keyset paging",
                "parameters": [
                    {"name": "state", "in": "query", "required": false, "schema": {"type": "string", "enum": states}},
                    {"name": "limit", "in": "query", "required": false, "description": "1 to 1000; default 50.", "schema": {"type": "integer", "minimum": 1, "maximum": 1000, "default": 50}},
                    {"name": "cursor", "in": "query", "required": false, "description": "The previous page's next_cursor.", "schema": {"type": "string"}}
                ],
                "responses": {
                    "200": json_response("One page.", "AnalysisPage"),
                    "400": error_response("Unknown state, limit out of range or malformed cursor.")
                }
            }
        },
        "/v1/analyses/{id}": {
            "get": {
                "operationId": "getAnalysis",
                "summary": "An analysis with its per-interval history, actuations and audit log",
                "parameters": [id_parameter()],
                "responses": {
                    "200": json_response("The analysis.", "AnalysisDetail"),
                    "400": error_response("The id is not a UUID (`malformed_id`)."),
                    "404": error_response("No such analysis.")
                }
            }
        },
        "/v1/analyses/{id}/verdict": {
            "get": {
                "operationId": "waitForVerdict",
                "summary": "Long-poll the verdict",
                "parameters": [id_parameter(), wait_parameter()],
                "responses": {
                    "200": json_response("The verdict: `final` says whether it is the last word.", "Verdict"),
                    "400": error_response("Malformed id or wait."),
                    "404": error_response("No such analysis.")
                }
            }
        },
        "/v1/analyses/{id}/actions": {
            "post": {
                "operationId": "applyAction",
                "summary": "Pause, resume, promote or roll back an analysis (audited)",
                "description": "Recorded in the audit log with the actor `api-token` (server.auth_token) or `api-token:NAME` (a named token). Promote and rollback are carried out by a worker: until then the analysis shows `pending_action`.",
                "parameters": [id_parameter()],
                "requestBody": {"required": true, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ActionRequest"}}}},
                "responses": {
                    "200": json_response("Recorded.", "ActionResponse"),
                    "400": error_response("Malformed id or body."),
                    "404": error_response("No such analysis."),
                    "409": error_response("Not allowed from the analysis's state, or the analysis changed since `expected_version`."),
                    "422": error_response("Unknown action or missing reason.")
                }
            }
        },
        "/v1/analyses/{id}/argo": {
            "get": {
                "operationId": "argoVerdict",
                "summary": "A flat verdict for Argo Rollouts' web metric provider",
                "description": "Use `successCondition: result.successful == true` and `failureCondition: result.failed == true`; before the analysis is final both are false (inconclusive).",
                "parameters": [id_parameter(), wait_parameter()],
                "responses": {
                    "200": json_response("The flat verdict.", "ArgoVerdict"),
                    "400": error_response("Malformed id or wait."),
                    "404": error_response("No such analysis.")
                }
            }
        },
        "/v1/analyses/{id}/report": {
            "get": {
                "operationId": "getReport",
                "summary": "The analysis report as one self-contained HTML page (inline CSS and SVG charts, no scripts)",
                "parameters": [id_parameter()],
                "responses": {
                    "200": {"description": "The report.", "content": {"text/html": {}}},
                    "400": error_response("The id is not a UUID (`malformed_id`)."),
                    "404": error_response("No such analysis.")
                }
            }
        },
        "/v1/analyses/{id}/report.json": {
            "get": {
                "operationId": "getReportJson",
                "summary": "The analysis report as JSON (`report_schema_version` 1, documented in docs/report-schema.md)",
                "parameters": [id_parameter()],
                "responses": {
                    "200": {"description": "The report.", "content": {"application/json": {"schema": {"type": "object", "required": ["report_schema_version", "subject", "banner", "timeline", "metrics", "history"]}}}},
                    "400": error_response("The id is not a UUID (`malformed_id`)."),
                    "404": error_response("No such analysis.")
                }
            }
        }
    })
}

/// The service's own operations: this document, health, readiness and metrics.
fn service_paths() -> Value {
    json!({
        "/v1/openapi.json": {
            "get": {
                "operationId": "openapi",
                "summary": "This document",
                "responses": {"200": {"description": "OpenAPI 3.1", "content": {"application/json": {}}}}
            }
        },
        "/healthz": {
            "get": {
                "operationId": "healthz",
                "summary": "The process is up",
                "responses": {"200": {"description": "{\"status\": \"ok\"}", "content": {"application/json": {}}}}
            }
        },
        "/readyz": {
            "get": {
                "operationId": "readyz",
                "summary": "The store answers",
                "responses": {
                    "200": {"description": "{\"status\": \"ready\"}", "content": {"application/json": {}}},
                    "503": error_response("The store does not answer.")
                }
            }
        },
        "/metrics": {
            "get": {
                "operationId": "metrics",
                "summary": "The engine's own metrics (OpenMetrics text)",
                "description": "canary_analyses{state}, canary_http_requests_total{method,route,status}, canary_http_request_duration_seconds{method,route}, canary_verdicts_total{outcome}, canary_interval_lateness_seconds, canary_source_request_duration_seconds{source}, canary_source_errors_total{source,kind}, canary_actuator_request_duration_seconds{actuator}, canary_actuator_errors_total{actuator}, canary_notifications_total{notifier,outcome}.",
                "responses": {
                    "200": {"description": "The exposition.", "content": {"application/openmetrics-text": {}}},
                    "503": error_response("The store cannot count analyses.")
                }
            }
        }
    })
}

/// The schemas of submissions, analyses and errors.
fn analysis_schemas() -> Value {
    let states = states();
    json!({
        "Error": {
            "type": "object", "required": ["error"],
            "properties": {"error": {
                "type": "object", "required": ["code", "message"],
                "properties": {
                    "code": {"type": "string", "examples": ["malformed_json", "missing_field", "unknown_profile", "unknown_source", "unknown_actuator", "malformed_id", "not_found", "unauthorized", "forbidden", "unsupported_media_type", "conflict"]},
                    "message": {"type": "string"},
                    "field": {"type": "string"},
                    "allowed": {"type": "array", "items": {"type": "string"}}
                }
            }}
        },
        "Submission": {
            "type": "object", "additionalProperties": false,
            "required": ["profile", "flag", "source", "actuator"],
            "properties": {
                "profile": {"type": "string", "description": "NAME of NAME.toml in the server's profiles directory; it must have a rollout plan."},
                "baseline_scope": {"type": "string", "default": "track=\"baseline\"", "description": "Label matchers selecting the baseline; at most 4 KiB, no braces, control or invisible characters."},
                "canary_scope": {"type": "string", "default": "track=\"canary\"", "description": "Label matchers selecting the canary; at most 4 KiB, no braces, control or invisible characters."},
                "flag": {"type": "string", "maxLength": 200, "description": "The flag key: no whitespace, control, invisible or bidirectional-control characters (Unicode Cc, Cf)."},
                "source": {"type": "string", "description": "A metric source named in the server's settings."},
                "actuator": {"type": "string", "description": "An actuator named in the server's settings."},
                "dry_run": {"type": "boolean", "default": false},
                "start_at": {"type": "number", "description": "Unix seconds, finite and at most a year from now; absent starts at once."},
                "adopt": {"type": "boolean", "default": false, "description": "Take over a flag already beyond the plan's first stage: start from the stage at or below its current share, never lowering it without a verdict. Without it such a flag is refused at the first look (the analysis ends `failed`, the flag untouched)."}
            }
        },
        "Stage": {
            "type": ["object", "null"],
            "properties": {"index": {"type": "integer"}, "name": {"type": "string"}, "of": {"type": "integer"}}
        },
        "Analysis": {
            "type": "object",
            "required": ["id", "profile", "flag", "source", "actuator", "state", "final", "reasons", "version"],
            "properties": {
                "id": {"type": "string", "format": "uuid"},
                "profile": {"type": "string"}, "flag": {"type": "string"},
                "source": {"type": "string"}, "actuator": {"type": "string"},
                "baseline_scope": {"type": "string"}, "canary_scope": {"type": "string"},
                "dry_run": {"type": "boolean"},
                "adopt": {"type": "boolean"},
                "start_at": {"type": ["number", "null"]},
                "state": {"type": "string", "enum": states},
                "final": {"type": "boolean"},
                "stage": {"$ref": "#/components/schemas/Stage"},
                "traffic": {"type": ["number", "null"], "description": "Canary traffic in percent."},
                "latest_verdict": {"type": ["string", "null"], "enum": ["promote", "hold", "rollback", null]},
                "reasons": {"type": "array", "items": {"type": "string"}},
                "next_look_at": {"type": ["number", "null"]},
                "version": {"type": "integer"},
                "created_at": {"type": "number"}, "updated_at": {"type": "number"}
            }
        },
        "AnalysisDetail": {
            "allOf": [{"$ref": "#/components/schemas/Analysis"}, {
                "type": "object",
                "properties": {
                    "pending_action": {"type": ["string", "null"], "enum": ["promote", "rollback", null]},
                    "history": {"type": "array", "items": {"type": "object", "properties": {
                        "look": {"type": "integer"}, "at": {"type": "number"}, "stage_index": {"type": "integer"},
                        "verdict": {"type": "string"}, "decision": {"type": "string"}, "body": {"type": "object"}
                    }}},
                    "actuations": {"type": "array", "items": {"type": "object", "properties": {
                        "idempotency_key": {"type": "string"}, "action": {"type": "string"}, "target": {"type": "number"},
                        "state": {"type": "string", "enum": ["intended", "applied", "failed"]},
                        "detail": {"type": ["string", "null"]}, "at": {"type": "number"}, "completed_at": {"type": ["number", "null"]}
                    }}},
                    "audit": {"type": "array", "items": {"$ref": "#/components/schemas/AuditEntry"}}
                }
            }]
        },
        "AnalysisPage": {
            "type": "object", "required": ["items", "next_cursor"],
            "properties": {
                "items": {"type": "array", "items": {"$ref": "#/components/schemas/Analysis"}},
                "next_cursor": {"type": ["string", "null"]}
            }
        }
    })
}

/// The schemas of verdicts and manual actions.
fn action_schemas() -> Value {
    let states = states();
    json!({
        "Verdict": {
            "type": "object", "required": ["id", "state", "final", "verdict", "reasons"],
            "properties": {
                "id": {"type": "string", "format": "uuid"},
                "state": {"type": "string", "enum": states},
                "final": {"type": "boolean"},
                "verdict": {"type": ["string", "null"], "enum": ["promote", "hold", "rollback", null], "description": "Once final: promote or rollback (null: the analysis failed). Before: the latest look's."},
                "reasons": {"type": "array", "items": {"type": "string"}},
                "stage": {"$ref": "#/components/schemas/Stage"},
                "traffic": {"type": ["number", "null"]},
                "updated_at": {"type": "number"}
            }
        },
        "ActionRequest": {
            "type": "object", "additionalProperties": false, "required": ["action", "reason"],
            "properties": {
                "action": {"type": "string", "enum": ["pause", "resume", "promote", "rollback"]},
                "reason": {"type": "string"},
                "expected_version": {"type": "integer", "description": "The version read; a 409 if it moved. Default: the current one."}
            }
        },
        "AuditEntry": {
            "type": "object",
            "properties": {
                "analysis_id": {"type": "string", "format": "uuid"}, "actor": {"type": "string"},
                "action": {"type": "string", "enum": ["pause", "resume", "promote", "rollback"]},
                "reason": {"type": "string"},
                "from_state": {"type": "string", "enum": states}, "to_state": {"type": "string", "enum": states},
                "at": {"type": "number"}
            }
        },
        "ActionResponse": {
            "type": "object", "required": ["analysis", "audit"],
            "properties": {
                "analysis": {"$ref": "#/components/schemas/Analysis"},
                "audit": {"$ref": "#/components/schemas/AuditEntry"},
                "pending_action": {"type": ["string", "null"], "enum": ["promote", "rollback", null]}
            }
        },
        "ArgoVerdict": {
            "type": "object", "required": ["verdict", "state", "successful", "failed", "inconclusive", "final"],
            "properties": {
                "verdict": {"type": ["string", "null"], "enum": ["promote", "rollback", null]},
                "state": {"type": "string", "enum": states},
                "successful": {"type": "boolean"}, "failed": {"type": "boolean"},
                "inconclusive": {"type": "boolean"}, "final": {"type": "boolean"}
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_document_lists_exactly_the_routes_of_the_router() {
        let document = document();
        let mut documented: Vec<(String, String)> = document["paths"]
            .as_object()
            .unwrap()
            .iter()
            .flat_map(|(path, item)| {
                item.as_object()
                    .unwrap()
                    .keys()
                    .map(|method| (method.to_uppercase(), path.clone()))
                    .collect::<Vec<_>>()
            })
            .collect();
        let mut routes: Vec<(String, String)> = super::super::ROUTES
            .iter()
            .map(|(m, p)| ((*m).to_owned(), (*p).to_owned()))
            .collect();
        documented.sort();
        routes.sort();
        assert_eq!(documented, routes);
    }

    #[test]
    fn every_analysis_operation_documents_its_token_and_every_post_its_415() {
        let document = document();
        for (path, item) in document["paths"].as_object().unwrap() {
            for (method, operation) in item.as_object().unwrap() {
                let responses = &operation["responses"];
                if path.starts_with("/v1/analyses") {
                    assert!(operation["security"].is_array(), "{method} {path}");
                    assert!(responses["401"].is_object(), "{method} {path}");
                    assert!(responses["403"].is_object(), "{method} {path}");
                }
                if method == "post" {
                    assert!(responses["415"].is_object(), "{method} {path}");
                }
            }
        }
    }
}
