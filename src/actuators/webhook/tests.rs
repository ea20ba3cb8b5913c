//! Unit tests of the webhook actuator's pieces: settings, the body schema, the mapping
//! of answers onto errors. The actuator against a real receiver is in
//! `tests/it/webhook.rs`.

use reqwest::StatusCode;
use serde_json::json;

use super::client::{snippet, status_error};
use super::{ActuationRequest, WebhookConfig};
use crate::actuators::{ActuatorConfig, ActuatorError, ChangeContext, FlagAction, FlagChange};
use crate::domain::{HumanDuration, Percentage};
use crate::sources::prometheus::Secret;

fn change(action: FlagAction) -> FlagChange {
    FlagChange {
        flag: "new-checkout".to_owned(),
        action,
        context: ChangeContext {
            actuation_id: Some("a1:3:set_rollout:25".to_owned()),
            analysis_id: Some("a1".to_owned()),
            verdict: Some(crate::domain::Verdict::Promote),
            reasons: vec!["latency p99: no significant change".to_owned()],
            report_url: Some("https://canary.example.com/v1/analyses/a1".to_owned()),
        },
    }
}

#[test]
fn the_body_follows_schema_version_1() {
    let target = Percentage::parse(25.0).unwrap();
    let change = change(FlagAction::SetRollout { target });
    let request = ActuationRequest::new(&change, "a1:3:set_rollout:25", 1_700_000_000.123_4);
    // The documented schema, field for field and in this order
    // (docs/webhook-actuator.md): a change here is a change to the contract.
    assert_eq!(
        serde_json::to_string(&request).unwrap(),
        r#"{"version":1,"actuation_id":"a1:3:set_rollout:25","analysis_id":"a1","flag":"new-checkout","action":"set_rollout","target_percentage":25.0,"verdict":"promote","reasons":["latency p99: no significant change"],"report_url":"https://canary.example.com/v1/analyses/a1","sent_at":1700000000.123}"#
    );
}

#[test]
fn a_kill_without_context_sends_nulls_and_zero() {
    let change = FlagChange {
        flag: "new-checkout".to_owned(),
        action: FlagAction::Kill,
        context: ChangeContext::default(),
    };
    let request = ActuationRequest::new(&change, "generated", 1_700_000_000.0);
    let value = serde_json::to_value(&request).unwrap();
    assert_eq!(value["action"], "kill");
    assert_eq!(value["target_percentage"], json!(0.0));
    assert_eq!(value["analysis_id"], json!(null));
    assert_eq!(value["verdict"], json!(null));
    assert_eq!(value["reasons"], json!([]));
    let implied = ActuationRequest::implied_state(&change);
    assert!(!implied.enabled);
    assert_eq!(implied.rollout, Percentage::ZERO);
}

#[test]
fn a_receiver_may_report_the_state_or_say_nothing() {
    assert_eq!(
        super::reported_state(br#"{"enabled": true, "rollout": 5, "note": "ok"}"#)
            .unwrap()
            .rollout,
        Percentage::parse(5.0).unwrap()
    );
    assert_eq!(super::reported_state(b""), None);
    assert_eq!(super::reported_state(b"OK"), None);
    assert_eq!(super::reported_state(br#"{"applied": true}"#), None);
    assert_eq!(
        super::reported_state(br#"{"enabled": true, "rollout": 150}"#),
        None
    );
}

#[test]
fn temporary_failures_are_unavailable_and_refusals_are_invalid() {
    for status in [500, 502, 503, 504, 408, 429] {
        let error = status_error(StatusCode::from_u16(status).unwrap(), b"busy", "webhook x");
        assert!(
            matches!(error, ActuatorError::Unavailable { .. }),
            "{status}: {error}"
        );
    }
    for status in [400, 401, 403, 404, 409, 422, 301, 302] {
        let error = status_error(StatusCode::from_u16(status).unwrap(), b"no", "webhook x");
        assert!(
            matches!(error, ActuatorError::Invalid { .. }),
            "{status}: {error}"
        );
    }
    let error = status_error(
        StatusCode::FORBIDDEN,
        b"{\"error\":\n  \"bad signature\"}",
        "webhook http://flags/",
    );
    assert_eq!(
        error.to_string(),
        r#"flag store webhook http://flags/ is invalid: answered 403 Forbidden: {"error": "bad signature"}"#
    );
}

#[test]
fn long_bodies_are_cut_in_errors() {
    let body = "é".repeat(500);
    let cut = snippet(body.as_bytes());
    assert_eq!(cut.chars().count(), 201);
    assert!(cut.ends_with('…'));
    assert_eq!(snippet(b""), "(empty body)");
}

#[test]
fn settings_have_defaults_and_refuse_unknown_keys() {
    let config: ActuatorConfig =
        toml::from_str("kind = \"webhook\"\nurl = \"http://flags.internal/hook\"").unwrap();
    assert_eq!(
        config,
        ActuatorConfig::Webhook(WebhookConfig {
            url: "http://flags.internal/hook".to_owned(),
            secret_env: "CANARY_WEBHOOK_SECRET".to_owned(),
            timeout: HumanDuration::parse("5s").unwrap(),
            state_url: None,
        })
    );
    let config: ActuatorConfig = toml::from_str(
        "kind = \"webhook\"\nurl = \"http://h/\"\nsecret_env = \"FLAGS_SECRET\"\ntimeout = \"250ms\"\nstate_url = \"http://h/flags/{flag}\"",
    )
    .unwrap();
    let ActuatorConfig::Webhook(config) = config else {
        panic!("a webhook")
    };
    assert_eq!(config.secret_env, "FLAGS_SECRET");
    assert_eq!(config.timeout.get().as_millis(), 250);
    assert!(
        toml::from_str::<ActuatorConfig>("kind = \"webhook\"\nurl = \"http://h/\"\nsecret = \"x\"")
            .is_err()
    );
    assert!(
        toml::from_str::<ActuatorConfig>(
            "kind = \"webhook\"\nurl = \"http://h/\"\ntimeout = \"soon\""
        )
        .is_err()
    );
}

#[test]
fn the_cli_form_is_the_url_with_the_default_secret_variable() {
    let config: ActuatorConfig = "webhook=http://flags.internal/hook?team=a".parse().unwrap();
    assert_eq!(
        config,
        ActuatorConfig::Webhook(WebhookConfig::for_url("http://flags.internal/hook?team=a"))
    );
    assert_eq!(
        config.to_string(),
        "webhook=http://flags.internal/hook?team=a"
    );
    for text in ["webhook", "webhook="] {
        let error = text.parse::<ActuatorConfig>().unwrap_err();
        assert!(error.contains("webhook=URL"), "{error}");
    }
}

#[test]
fn an_unset_secret_variable_is_named_in_the_error() {
    let config = WebhookConfig {
        secret_env: "CANARY_TEST_WEBHOOK_SECRET_THAT_IS_NEVER_SET".to_owned(),
        ..WebhookConfig::for_url("http://flags.internal/hook")
    };
    let error = ActuatorConfig::Webhook(config).build().err().unwrap();
    assert!(matches!(error, ActuatorError::Invalid { .. }));
    assert!(
        error
            .to_string()
            .contains("CANARY_TEST_WEBHOOK_SECRET_THAT_IS_NEVER_SET"),
        "{error}"
    );
}

#[test]
fn bad_urls_are_refused_before_anything_is_sent() {
    let secret = || Secret::new("s3cret");
    let error = WebhookConfig::for_url("flags.internal/hook")
        .build_with_secret(secret())
        .unwrap_err();
    assert!(error.to_string().contains("url:"), "{error}");
    let error = WebhookConfig::for_url("ftp://flags.internal/hook")
        .build_with_secret(secret())
        .unwrap_err();
    assert!(error.to_string().contains("http or https"), "{error}");
    let error = WebhookConfig {
        state_url: Some("not a url/{flag}".to_owned()),
        ..WebhookConfig::for_url("http://flags.internal/hook")
    }
    .build_with_secret(secret())
    .unwrap_err();
    assert!(error.to_string().contains("state_url:"), "{error}");
    assert!(
        WebhookConfig::for_url("http://h/")
            .build_with_secret(Secret::new(""))
            .is_err()
    );
}

#[test]
fn the_secret_never_shows_in_debug_or_describe() {
    use crate::actuators::Actuator;
    let actuator = WebhookConfig::for_url("http://user:pw@flags.internal/hook?token=t0k")
        .build_with_secret(Secret::new("very-secret-value"))
        .unwrap();
    let debug = format!("{actuator:?}");
    assert!(!debug.contains("very-secret-value"), "{debug}");
    let described = actuator.describe();
    assert_eq!(described, "webhook:http://flags.internal/hook");
}

#[tokio::test]
async fn without_a_state_url_nothing_is_read_back_before_a_change() {
    use crate::actuators::Actuator;
    let actuator = WebhookConfig::for_url("http://127.0.0.1:9/hook")
        .build_with_secret(Secret::new("s"))
        .unwrap();
    // No receiver listens on port 9: neither call contacts it.
    let health = actuator.healthcheck("new-checkout").await.unwrap();
    assert!(!health.enabled);
    let error = actuator.current("new-checkout").await.unwrap_err();
    assert!(
        matches!(error, ActuatorError::Unavailable { .. }),
        "{error}"
    );
    assert!(error.to_string().contains("state_url"), "{error}");
}

#[cfg(not(feature = "rustls"))]
#[test]
fn https_urls_are_refused_at_build_time_in_a_build_without_tls() {
    let error = WebhookConfig::for_url("https://flags.internal/hook")
        .build_with_secret(Secret::new("s3cret"))
        .unwrap_err();
    assert!(
        error.to_string().contains(
            "url: \"https://flags.internal\" is an https URL, but this canary was built without TLS"
        ),
        "{error}"
    );
    let error = WebhookConfig {
        state_url: Some("https://flags.internal/flags/{flag}".to_owned()),
        ..WebhookConfig::for_url("http://flags.internal/hook")
    }
    .build_with_secret(Secret::new("s3cret"))
    .unwrap_err();
    assert!(
        error
            .to_string()
            .contains("state_url: \"https://flags.internal\""),
        "{error}"
    );
}
