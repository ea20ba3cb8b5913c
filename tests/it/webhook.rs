//! The webhook actuator against a real receiver: an axum server on a loopback port that
//! does what `docs/webhook-actuator.md` asks of a receiver — verifies the signature and
//! its timestamp with the public `canary::signing::verify`, applies each
//! `Idempotency-Key` once, and answers with the flag's state — and receivers that
//! refuse, fail or never answer.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use serde_json::json;

use canary::actuators::webhook::{ActuationRequest, WebhookConfig};
use canary::actuators::{
    Actuator, ActuatorError, ActuatorExt, ChangeContext, FlagAction, FlagChange, FlagState,
};
use canary::domain::{HumanDuration, Percentage};
use canary::signing::{DEFAULT_TOLERANCE, SIGNATURE_HEADER, verify};
use canary::sources::prometheus::Secret;

const SECRET: &str = "whsec_integration";

/// What the receiver saw and did.
#[derive(Default)]
struct Receiver {
    /// Every request whose signature verified, in arrival order (duplicates included).
    deliveries: Vec<ActuationRequest>,
    /// The changes applied, once per idempotency key.
    applied: Vec<ActuationRequest>,
    seen_keys: HashSet<String>,
    flags: HashMap<String, FlagState>,
    refused_signatures: usize,
}

type Shared = Arc<Mutex<Receiver>>;

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn signature_ok(headers: &HeaderMap, body: &[u8]) -> bool {
    let Some(header) = headers
        .get(SIGNATURE_HEADER)
        .and_then(|value| value.to_str().ok())
    else {
        return false;
    };
    verify(
        SECRET.as_bytes(),
        header,
        body,
        unix_now(),
        DEFAULT_TOLERANCE,
    )
    .is_ok()
}

async fn receive_change(
    State(receiver): State<Shared>,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, Json<serde_json::Value>) {
    let mut receiver = receiver.lock().unwrap();
    if !signature_ok(&headers, &body) {
        receiver.refused_signatures += 1;
        return (
            StatusCode::FORBIDDEN,
            Json(json!({"error": "bad signature"})),
        );
    }
    assert_eq!(headers["content-type"], "application/json");
    let request: ActuationRequest = serde_json::from_slice(&body).unwrap();
    let key = headers["idempotency-key"].to_str().unwrap().to_owned();
    assert_eq!(key, request.actuation_id);
    receiver.deliveries.push(request.clone());
    if receiver.seen_keys.insert(key) {
        let state = FlagState {
            enabled: request.action == "set_rollout",
            rollout: Percentage::parse(request.target_percentage).unwrap(),
        };
        receiver.flags.insert(request.flag.clone(), state);
        receiver.applied.push(request.clone());
    }
    let state = receiver.flags[&request.flag].clone();
    (StatusCode::OK, Json(serde_json::to_value(state).unwrap()))
}

async fn read_flag(
    State(receiver): State<Shared>,
    Path(flag): Path<String>,
    headers: HeaderMap,
) -> (StatusCode, Json<serde_json::Value>) {
    let receiver = receiver.lock().unwrap();
    if !signature_ok(&headers, b"") {
        return (
            StatusCode::FORBIDDEN,
            Json(json!({"error": "bad signature"})),
        );
    }
    match receiver.flags.get(&flag) {
        Some(state) => (StatusCode::OK, Json(serde_json::to_value(state).unwrap())),
        None => (
            StatusCode::NOT_FOUND,
            Json(json!({"error": "no such flag"})),
        ),
    }
}

async fn serve(router: Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    address
}

/// A receiver that verifies, dedups and applies, with read-back at `/flags/{flag}`.
async fn start_receiver() -> (SocketAddr, Shared) {
    let receiver = Shared::default();
    let router = Router::new()
        .route("/hook", post(receive_change))
        .route("/flags/{flag}", get(read_flag))
        .with_state(receiver.clone());
    (serve(router).await, receiver)
}

fn config(address: SocketAddr) -> WebhookConfig {
    WebhookConfig {
        state_url: Some(format!("http://{address}/flags/{{flag}}")),
        timeout: HumanDuration::parse("2s").unwrap(),
        ..WebhookConfig::for_url(format!("http://{address}/hook"))
    }
}

fn change(flag: &str, look: u32, action: FlagAction) -> FlagChange {
    FlagChange {
        flag: flag.to_owned(),
        action,
        context: ChangeContext {
            actuation_id: Some(format!(
                "analysis-1:{look}:{}:{}",
                action.name(),
                action.target().value()
            )),
            analysis_id: Some("analysis-1".to_owned()),
            verdict: Some(if action == FlagAction::Kill {
                canary::domain::Verdict::Rollback
            } else {
                canary::domain::Verdict::Promote
            }),
            reasons: vec![format!("look {look}")],
            report_url: Some("http://canary.test/v1/analyses/analysis-1".to_owned()),
        },
    }
}

fn rollout(percent: f64) -> FlagAction {
    FlagAction::SetRollout {
        target: Percentage::parse(percent).unwrap(),
    }
}

#[tokio::test]
async fn webhook_moves_a_flag_through_its_stages_and_kills_it_each_change_applied_once() {
    let (address, receiver) = start_receiver().await;
    let actuator = config(address)
        .build_with_secret(Secret::new(SECRET))
        .unwrap();

    let error = actuator.healthcheck("checkout").await.unwrap_err();
    assert!(
        matches!(error, ActuatorError::FlagNotFound { .. }),
        "an unknown flag on read-back: {error}"
    );

    let mut changes = Vec::new();
    for (look, percent) in [1.0, 5.0, 25.0, 100.0].into_iter().enumerate() {
        let change = change("checkout", look as u32, rollout(percent));
        let state = actuator.apply(&change).await.unwrap();
        assert_eq!(
            state,
            FlagState {
                enabled: true,
                rollout: Percentage::parse(percent).unwrap()
            }
        );
        assert_eq!(actuator.current("checkout").await.unwrap(), state);
        changes.push(change);
    }
    // A retry after a lost answer, or a replay after a restart: same actuation id.
    actuator.apply(&changes[2]).await.unwrap();
    let kill = change("checkout", 4, FlagAction::Kill);
    let killed = actuator.apply(&kill).await.unwrap();
    assert!(!killed.enabled);
    assert_eq!(killed.rollout, Percentage::ZERO);
    assert_eq!(actuator.current("checkout").await.unwrap(), killed);
    changes.push(kill);

    let receiver = receiver.lock().unwrap();
    assert_eq!(receiver.refused_signatures, 0);
    assert_eq!(receiver.deliveries.len(), 6, "five changes and one retry");
    let applied: Vec<(String, f64)> = receiver
        .applied
        .iter()
        .map(|request| (request.action.clone(), request.target_percentage))
        .collect();
    assert_eq!(
        applied,
        [
            ("set_rollout".to_owned(), 1.0),
            ("set_rollout".to_owned(), 5.0),
            ("set_rollout".to_owned(), 25.0),
            ("set_rollout".to_owned(), 100.0),
            ("kill".to_owned(), 0.0),
        ]
    );
    for (request, change) in receiver.applied.iter().zip(&changes) {
        assert_eq!(request.version, 1);
        assert_eq!(
            Some(&request.actuation_id),
            change.context.actuation_id.as_ref()
        );
        assert_eq!(request.analysis_id.as_deref(), Some("analysis-1"));
        assert_eq!(request.reasons, change.context.reasons);
        assert_eq!(request.verdict, change.context.verdict);
        assert!((request.sent_at - unix_now() as f64).abs() < 60.0);
    }
}

#[tokio::test]
async fn changes_without_context_get_a_fresh_actuation_id_each() {
    let (address, receiver) = start_receiver().await;
    let actuator = config(address)
        .build_with_secret(Secret::new(SECRET))
        .unwrap();
    actuator
        .set_rollout("search", Percentage::parse(10.0).unwrap())
        .await
        .unwrap();
    actuator.kill("search").await.unwrap();
    let receiver = receiver.lock().unwrap();
    assert_eq!(receiver.applied.len(), 2);
    let ids: HashSet<&str> = receiver
        .applied
        .iter()
        .map(|request| request.actuation_id.as_str())
        .collect();
    assert_eq!(ids.len(), 2);
    for id in ids {
        assert!(uuid::Uuid::parse_str(id).is_ok(), "{id} is a UUID");
    }
    assert_eq!(receiver.applied[0].analysis_id, None);
}

#[tokio::test]
async fn a_wrong_secret_is_refused_by_the_receiver_as_invalid() {
    let (address, receiver) = start_receiver().await;
    let actuator = config(address)
        .build_with_secret(Secret::new("not-the-secret"))
        .unwrap();
    let error = actuator
        .apply(&change("checkout", 0, rollout(1.0)))
        .await
        .unwrap_err();
    assert!(matches!(error, ActuatorError::Invalid { .. }), "{error}");
    let message = error.to_string();
    assert!(message.contains("403"), "{message}");
    assert!(message.contains("bad signature"), "{message}");
    assert!(!message.contains("not-the-secret"), "{message}");
    let receiver = receiver.lock().unwrap();
    assert_eq!(receiver.refused_signatures, 1);
    assert!(receiver.applied.is_empty());
}

#[tokio::test]
async fn a_receiver_answering_503_is_unavailable() {
    let router = Router::new().route(
        "/hook",
        post(|| async { (StatusCode::SERVICE_UNAVAILABLE, "maintenance") }),
    );
    let address = serve(router).await;
    let actuator = WebhookConfig::for_url(format!("http://{address}/hook"))
        .build_with_secret(Secret::new(SECRET))
        .unwrap();
    let error = actuator
        .apply(&change("checkout", 0, rollout(1.0)))
        .await
        .unwrap_err();
    assert!(
        matches!(error, ActuatorError::Unavailable { .. }),
        "{error}"
    );
    assert!(error.to_string().contains("503"), "{error}");
    assert!(error.to_string().contains("maintenance"), "{error}");
}

#[tokio::test]
async fn a_receiver_that_never_answers_times_out_as_unavailable() {
    let router = Router::new().route(
        "/hook",
        post(|| async {
            std::future::pending::<()>().await;
            "never"
        }),
    );
    let address = serve(router).await;
    let actuator = WebhookConfig {
        timeout: HumanDuration::parse("200ms").unwrap(),
        ..WebhookConfig::for_url(format!("http://{address}/hook"))
    }
    .build_with_secret(Secret::new(SECRET))
    .unwrap();
    let started = std::time::Instant::now();
    let error = actuator
        .apply(&change("checkout", 0, rollout(1.0)))
        .await
        .unwrap_err();
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
    assert!(
        matches!(error, ActuatorError::Unavailable { .. }),
        "{error}"
    );
    assert!(
        error.to_string().contains("no answer within 200 ms"),
        "{error}"
    );
}

#[tokio::test]
async fn a_receiver_that_is_not_listening_is_unavailable() {
    // A port that was free a moment ago: nothing listens on it now.
    let address = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let actuator = WebhookConfig::for_url(format!("http://{address}/hook"))
        .build_with_secret(Secret::new(SECRET))
        .unwrap();
    let error = actuator
        .apply(&change("checkout", 0, rollout(1.0)))
        .await
        .unwrap_err();
    assert!(
        matches!(error, ActuatorError::Unavailable { .. }),
        "{error}"
    );
}
