//! Notifications to real receivers on loopback ports: a Slack-style incoming webhook
//! and a JSON endpoint that verifies the HMAC signature with the public
//! `canary::signing::verify`; the rate limiter holds back a flood.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;

use canary::notify::json::JsonBody;
use canary::notify::{Notification, Notifications, NotifierConfig, RateLimits, Severity};
use canary::signing::{DEFAULT_TOLERANCE, SIGNATURE_HEADER, verify};
use canary::sources::prometheus::Secret;

const SECRET: &str = "notify-secret";

pub(crate) type Received = Arc<Mutex<Vec<serde_json::Value>>>;

async fn serve(router: Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    address
}

/// Answers like Slack: 200 "ok" for a body with `text`, 400 "invalid_payload" otherwise.
/// Its path is `/services/T000/B000/XXXX`.
pub(crate) async fn slack_receiver() -> (SocketAddr, Received) {
    let received = Received::default();
    let router = Router::new()
        .route(
            "/services/T000/B000/XXXX",
            post(|State(received): State<Received>, body: Bytes| async move {
                let Ok(message) = serde_json::from_slice::<serde_json::Value>(&body) else {
                    return (StatusCode::BAD_REQUEST, "invalid_payload");
                };
                if !message["text"].is_string() {
                    return (StatusCode::BAD_REQUEST, "invalid_payload");
                }
                received.lock().unwrap().push(message);
                (StatusCode::OK, "ok")
            }),
        )
        .with_state(received.clone());
    (serve(router).await, received)
}

/// Verifies the signature, then keeps the body.
async fn json_receiver() -> (SocketAddr, Received) {
    let received = Received::default();
    let router = Router::new()
        .route(
            "/events",
            post(
                |State(received): State<Received>, headers: HeaderMap, body: Bytes| async move {
                    let now = SystemTime::now()
                        .duration_since(UNIX_EPOCH)
                        .unwrap()
                        .as_secs();
                    let signed = headers
                        .get(SIGNATURE_HEADER)
                        .and_then(|value| value.to_str().ok())
                        .is_some_and(|header| {
                            verify(SECRET.as_bytes(), header, &body, now, DEFAULT_TOLERANCE).is_ok()
                        });
                    if !signed {
                        return StatusCode::UNAUTHORIZED;
                    }
                    received
                        .lock()
                        .unwrap()
                        .push(serde_json::from_slice(&body).unwrap());
                    StatusCode::NO_CONTENT
                },
            ),
        )
        .with_state(received.clone());
    (serve(router).await, received)
}

fn notification(severity: Severity, event: &str, title: &str) -> Notification {
    Notification {
        severity,
        event: event.to_owned(),
        title: title.to_owned(),
        analysis_id: "a1".to_owned(),
        flag: "new-checkout".to_owned(),
        profile: "web-service".to_owned(),
        state: event.to_owned(),
        verdict: Some(canary::domain::Verdict::Rollback),
        stage: Some(0),
        traffic: Some(1.0),
        reasons: vec!["http errors: canary 2.1 % vs baseline 0.3 %".to_owned()],
        report_url: Some("http://canary.test/v1/analyses/a1".to_owned()),
        action_urls: Default::default(),
        time: 1_700_000_000.0,
        suppressed: 0,
    }
}

fn slack_config(address: SocketAddr, min_severity: Severity) -> NotifierConfig {
    NotifierConfig::Slack {
        url: Secret::new(format!("http://{address}/services/T000/B000/XXXX")),
        min_severity,
        timeout: canary::domain::HumanDuration::parse("2s").unwrap(),
    }
}

/// Both receivers behind one dispatcher. The JSON notifier is built with its secret
/// directly (tests cannot set environment variables safely).
async fn notifications() -> (Notifications, Received, Received) {
    let (slack_address, slack) = slack_receiver().await;
    let (json_address, json) = json_receiver().await;
    let notifiers: Vec<(String, Severity, Box<dyn canary::notify::Notifier>)> = vec![
        (
            "oncall".to_owned(),
            Severity::Warning,
            slack_config(slack_address, Severity::Warning)
                .build("oncall")
                .unwrap(),
        ),
        (
            "events".to_owned(),
            Severity::Info,
            Box::new(
                canary::notify::json::JsonNotifier::new(
                    "events",
                    &format!("http://{json_address}/events"),
                    Some(Secret::new(SECRET)),
                    Duration::from_secs(2),
                )
                .unwrap(),
            ),
        ),
    ];
    (
        Notifications::new(notifiers, RateLimits::default()),
        slack,
        json,
    )
}

#[tokio::test]
async fn slack_and_json_receivers_get_notifications_by_severity() {
    let (notifications, slack, json) = notifications().await;
    const T: f64 = 1_700_000_000.0;
    let promoted = notification(Severity::Info, "promoted", "Promoted new-checkout to 100 %");
    let delivery = notifications.send_at(promoted, T).await;
    assert_eq!(
        delivery.delivered,
        ["events"],
        "info is below the Slack channel's minimum"
    );
    let rollback = notification(
        Severity::Critical,
        "rolled_back",
        "Rolled back new-checkout",
    );
    let delivery = notifications.send_at(rollback, T + 1.0).await;
    assert_eq!(delivery.delivered, ["oncall", "events"]);
    assert!(delivery.failed.is_empty());

    let slack = slack.lock().unwrap();
    assert_eq!(slack.len(), 1);
    assert_eq!(
        slack[0]["text"],
        ":rotating_light: [CRITICAL] Rolled back new-checkout"
    );
    let blocks = serde_json::to_string(&slack[0]["blocks"]).unwrap();
    for needle in [
        "*Flag* `new-checkout`",
        "*Verdict* rollback",
        "http errors: canary 2.1 % vs baseline 0.3 %",
        "<http://canary.test/v1/analyses/a1|Open the report>",
    ] {
        assert!(blocks.contains(needle), "{needle} in {blocks}");
    }

    let json = json.lock().unwrap();
    let bodies: Vec<JsonBody> = json
        .iter()
        .map(|value| serde_json::from_value(value.clone()).unwrap())
        .collect();
    assert_eq!(bodies.len(), 2);
    assert_eq!(bodies[0].notification.severity, Severity::Info);
    assert_eq!(bodies[1].notification.severity, Severity::Critical);
    assert_eq!(bodies[1].version, 1);
    assert!(
        bodies[1]
            .text
            .starts_with("[CRITICAL] Rolled back new-checkout")
    );
}

#[tokio::test]
async fn a_json_receiver_refuses_a_wrong_secret_and_the_caller_carries_on() {
    let (address, received) = json_receiver().await;
    let notifier = canary::notify::json::JsonNotifier::new(
        "events",
        &format!("http://{address}/events"),
        Some(Secret::new("wrong")),
        Duration::from_secs(2),
    )
    .unwrap();
    let notifications = Notifications::new(
        vec![("events".to_owned(), Severity::Info, Box::new(notifier))],
        RateLimits::default(),
    );
    let delivery = notifications
        .send_at(
            notification(Severity::Critical, "rolled_back", "Rolled back"),
            0.0,
        )
        .await;
    assert_eq!(delivery.failed, ["events"]);
    assert!(received.lock().unwrap().is_empty());
    assert_eq!(notifications.stats().failed, 1);
}

#[tokio::test]
async fn a_flapping_analysis_does_not_flood_the_channel() {
    let (notifications, slack, _json) = notifications().await;
    const T: f64 = 1_700_000_000.0;
    let held = notification(
        Severity::Warning,
        "awaiting_review",
        "new-checkout is held and waits for a review",
    );
    // Every 10 seconds for four minutes, then once more after the window.
    for step in 0..24 {
        notifications
            .send_at(held.clone(), T + 10.0 * step as f64)
            .await;
    }
    let failed = notification(
        Severity::Critical,
        "rollback_failed",
        "Rollback FAILED for new-checkout",
    );
    notifications.send_at(failed, T + 245.0).await;
    notifications.send_at(held.clone(), T + 301.0).await;

    let slack = slack.lock().unwrap();
    let texts: Vec<&str> = slack
        .iter()
        .map(|message| message["text"].as_str().unwrap())
        .collect();
    assert_eq!(
        texts,
        [
            ":warning: [WARNING] new-checkout is held and waits for a review",
            ":rotating_light: [CRITICAL] Rollback FAILED for new-checkout",
            ":warning: [WARNING] new-checkout is held and waits for a review (23 similar notifications suppressed)",
        ]
    );
    assert_eq!(notifications.stats().suppressed, 23);
}
