//! Faults a real Unleash cannot be made to show on demand: 5xx answers, slow answers,
//! garbage bodies, a refused connection, and a read-back that differs from what was
//! written. Behaviour against a real unleash-server is in `tests/it/unleash.rs`.

use crate::actuators::ActuatorExt;
use std::time::Duration;

use serde_json::{Value, json};
use wiremock::matchers::{body_json, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use super::*;

const SECRET: &str = "*:*.do-not-print-me";
const FEATURE_PATH: &str = "/api/admin/projects/default/features/checkout";

fn actuator(url: &str, timeout: Duration) -> UnleashActuator {
    UnleashActuator::new(
        UnleashTarget {
            url: url.to_owned(),
            project: "default".to_owned(),
            environment: "production".to_owned(),
            timeout,
        },
        AdminToken::new(SECRET, "the environment variable CANARY_UNLEASH_TOKEN"),
    )
    .unwrap()
}

fn feature(enabled: bool, strategies: Value) -> Value {
    json!({
        "name": "checkout",
        "project": "default",
        "environments": [
            {"name": "development", "enabled": true, "strategies": []},
            {"name": "production", "enabled": enabled, "strategies": strategies}
        ]
    })
}

fn rollout_strategy(id: &str, percent: &str) -> Value {
    json!({"id": id, "name": "flexibleRollout", "title": null, "disabled": false, "constraints": [],
           "parameters": {"rollout": percent, "stickiness": "default", "groupId": "checkout"}})
}

fn percent(value: f64) -> Percentage {
    Percentage::parse(value).unwrap()
}

fn assert_no_secret(error: &ActuatorError) {
    let shown = format!("{error} {error:?}");
    assert!(!shown.contains("do-not-print-me"), "{shown}");
}

#[tokio::test]
async fn server_errors_are_unavailable_with_the_call_and_answer() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path(FEATURE_PATH))
        .respond_with(ResponseTemplate::new(503).set_body_string("upstream connect error"))
        .mount(&server)
        .await;
    let actuator = actuator(&server.uri(), Duration::from_secs(5));
    for error in [
        actuator.current("checkout").await.unwrap_err(),
        actuator.healthcheck("checkout").await.unwrap_err(),
        actuator
            .set_rollout("checkout", percent(5.0))
            .await
            .unwrap_err(),
    ] {
        let ActuatorError::Unavailable { store, message } = &error else {
            panic!("expected Unavailable, got {error:?}");
        };
        assert!(store.contains(&server.uri()), "{store}");
        assert_eq!(
            message,
            "GET /api/admin/projects/default/features/checkout answered 503 Service Unavailable: upstream connect error"
        );
        assert_no_secret(&error);
    }
}

#[tokio::test]
async fn a_slow_server_times_out_as_unavailable() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path(FEATURE_PATH))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(feature(false, json!([])))
                .set_delay(Duration::from_secs(3)),
        )
        .mount(&server)
        .await;
    let actuator = actuator(&server.uri(), Duration::from_millis(200));
    let started = std::time::Instant::now();
    let error = actuator.current("checkout").await.unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "the timeout held"
    );
    let ActuatorError::Unavailable { message, .. } = &error else {
        panic!("expected Unavailable, got {error:?}");
    };
    assert!(message.contains("timed out"), "{message}");
}

#[tokio::test]
async fn a_refused_connection_is_unavailable() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    drop(listener);
    let actuator = actuator(&format!("http://{address}"), Duration::from_secs(2));
    let error = actuator.kill("checkout").await.unwrap_err();
    let ActuatorError::Unavailable { message, .. } = &error else {
        panic!("expected Unavailable, got {error:?}");
    };
    assert!(message.contains("could not connect"), "{message}");
}

#[tokio::test]
async fn a_body_that_is_not_a_feature_is_invalid() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path(FEATURE_PATH))
        .respond_with(ResponseTemplate::new(200).set_body_string("<html>login page</html>"))
        .mount(&server)
        .await;
    let error = actuator(&server.uri(), Duration::from_secs(5))
        .current("checkout")
        .await
        .unwrap_err();
    let ActuatorError::Invalid { message, .. } = &error else {
        panic!("expected Invalid, got {error:?}");
    };
    assert!(
        message.contains("answered 200 OK with a body that is not what the admin API returns"),
        "{message}"
    );
    assert!(message.ends_with("<html>login page</html>"), "{message}");
}

#[tokio::test]
async fn an_answer_echoing_the_token_is_scrubbed() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path(FEATURE_PATH))
        .respond_with(
            ResponseTemplate::new(401)
                .set_body_json(json!({"message": format!("token {SECRET} is not valid")})),
        )
        .mount(&server)
        .await;
    let actuator = actuator(&server.uri(), Duration::from_secs(5));
    let error = actuator.healthcheck("checkout").await.unwrap_err();
    assert_no_secret(&error);
    assert!(
        error.to_string().contains("token <redacted> is not valid"),
        "{error}"
    );
    assert!(!actuator.describe().contains("do-not-print-me"));
    assert!(!format!("{actuator:?}").contains("do-not-print-me"));
}

#[tokio::test]
async fn the_token_goes_in_the_authorization_header() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path(FEATURE_PATH))
        .and(wiremock::matchers::header("authorization", SECRET))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(feature(true, json!([rollout_strategy("a1", "5")]))),
        )
        .expect(1)
        .mount(&server)
        .await;
    let state = actuator(&server.uri(), Duration::from_secs(5))
        .current("checkout")
        .await
        .unwrap();
    assert_eq!(
        state,
        FlagState {
            enabled: true,
            rollout: percent(5.0)
        }
    );
}

/// Between canary's strategy change and its switch-on, somebody deletes the rollout
/// strategy: Unleash then adds its default strategy of 100 % as it switches the
/// environment on. The read-back catches it and the environment is switched off again.
#[tokio::test]
async fn a_read_back_at_one_hundred_percent_switches_the_environment_off_again() {
    let server = MockServer::start().await;
    let features = format!("{FEATURE_PATH}/environments/production");
    Mock::given(method("GET"))
        .and(path(FEATURE_PATH))
        .respond_with(ResponseTemplate::new(200).set_body_json(feature(false, json!([]))))
        .up_to_n_times(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path(FEATURE_PATH))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(feature(true, json!([rollout_strategy("d1", "100")]))),
        )
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path(format!("{features}/strategies")))
        .and(body_json(
            json!({"name": "flexibleRollout", "constraints": [],
            "parameters": {"rollout": "5", "stickiness": "default", "groupId": "checkout"}}),
        ))
        .respond_with(ResponseTemplate::new(200).set_body_json(rollout_strategy("a1", "5")))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path(format!("{features}/on")))
        .respond_with(ResponseTemplate::new(200))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path(format!("{features}/off")))
        .respond_with(ResponseTemplate::new(200))
        .expect(1)
        .mount(&server)
        .await;
    let error = actuator(&server.uri(), Duration::from_secs(5))
        .set_rollout("checkout", percent(5.0))
        .await
        .unwrap_err();
    let ActuatorError::Invalid { message, .. } = &error else {
        panic!("expected Invalid, got {error:?}");
    };
    assert_eq!(
        message,
        "flag \"checkout\": asked for 5%, but the admin API reads back enabled at 100%; canary switched the environment off to be safe"
    );
}

#[tokio::test]
async fn a_fractional_percentage_is_refused_before_anything_is_sent() {
    let server = MockServer::start().await;
    let error = actuator(&server.uri(), Duration::from_secs(5))
        .set_rollout("checkout", percent(0.1))
        .await
        .unwrap_err();
    assert!(
        matches!(&error, ActuatorError::Invalid { message, .. } if message.contains("whole percentages")),
        "{error:?}"
    );
    assert!(server.received_requests().await.unwrap().is_empty());
}

#[tokio::test]
async fn a_kill_that_cannot_zero_the_rollout_still_reports_the_flag_off() {
    let server = MockServer::start().await;
    let features = format!("{FEATURE_PATH}/environments/production");
    Mock::given(method("POST"))
        .and(path(format!("{features}/off")))
        .respond_with(ResponseTemplate::new(200))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path(FEATURE_PATH))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(feature(false, json!([rollout_strategy("a1", "25")]))),
        )
        .mount(&server)
        .await;
    Mock::given(method("PATCH"))
        .and(path(format!("{features}/strategies/a1")))
        .respond_with(ResponseTemplate::new(500))
        .expect(1)
        .mount(&server)
        .await;
    let state = actuator(&server.uri(), Duration::from_secs(5))
        .kill("checkout")
        .await
        .unwrap();
    assert_eq!(
        state,
        FlagState {
            enabled: false,
            rollout: percent(25.0)
        }
    );
}

#[test]
fn urls_that_cannot_work_are_refused_when_building() {
    let build = |url: &str| {
        UnleashActuator::new(
            UnleashTarget {
                url: url.to_owned(),
                project: "default".to_owned(),
                environment: "production".to_owned(),
                timeout: DEFAULT_TIMEOUT,
            },
            AdminToken::new(SECRET, "test"),
        )
    };
    assert!(build("http://unleash:4242").is_ok());
    assert!(build("http://unleash:4242/unleash/").is_ok());
    for (url, expected) in [
        ("unleash:4242", "scheme must be http or https"),
        ("not a url", "is not a URL"),
        ("http://admin:pw@unleash:4242", "must not carry credentials"),
        ("http://unleash:4242/?x=1", "without a query"),
    ] {
        let error = build(url).unwrap_err();
        assert!(error.to_string().contains(expected), "{url}: {error}");
    }
    if !cfg!(feature = "rustls") {
        let error = build("https://unleash:4242").unwrap_err();
        assert!(error.to_string().contains("url: \"https://unleash:4242\" is an https URL, but this canary was built without TLS"), "{error}");
    }
}
