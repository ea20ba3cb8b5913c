//! Unit tests of notifications: what the messages say, the settings, and the
//! dispatcher's filtering, retries and rate limiting with in-memory notifiers. Real
//! receivers are in `tests/it/notify.rs`.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use serde_json::json;

use super::json::JsonBody;
use super::slack;
use super::{
    Delivery, Notification, NotificationStats, Notifications, Notifier, NotifierConfig,
    NotifyError, RateLimits, Severity,
};

const T0: f64 = 1_700_000_000.0;

fn rollback() -> Notification {
    Notification {
        severity: Severity::Critical,
        event: "rolled_back".to_owned(),
        title: "Rolled back new-checkout".to_owned(),
        analysis_id: "a1".to_owned(),
        flag: "new-checkout".to_owned(),
        profile: "web-service".to_owned(),
        state: "rolled_back".to_owned(),
        verdict: Some(crate::domain::Verdict::Rollback),
        stage: Some(1),
        traffic: Some(5.0),
        reasons: (1..=7).map(|i| format!("reason {i} <b>&")).collect(),
        report_url: Some("https://canary.example.com/v1/analyses/a1".to_owned()),
        action_urls: std::collections::BTreeMap::new(),
        time: T0,
        suppressed: 0,
    }
}

#[test]
fn severities_order_from_info_to_critical_and_default_to_info() {
    assert!(Severity::Info < Severity::Warning);
    assert!(Severity::Warning < Severity::Critical);
    assert_eq!(Severity::default(), Severity::Info);
}

#[test]
fn a_slack_message_has_the_emoji_flag_verdict_top_reasons_and_link() {
    let mut notification = rollback();
    notification.suppressed = 3;
    let message = slack::message(&notification);
    assert_eq!(
        message["text"],
        ":rotating_light: [CRITICAL] Rolled back new-checkout (3 similar notifications suppressed)"
    );
    assert_eq!(
        message["blocks"][0]["text"]["text"],
        ":rotating_light: *Rolled back new-checkout*\n*Flag* `new-checkout` · *Profile* `web-service` · *State* rolled_back · *Verdict* rollback · *Stage* 2 · *Traffic* 5%"
    );
    let reasons = message["blocks"][1]["text"]["text"].as_str().unwrap();
    assert_eq!(reasons.lines().count(), 6, "five reasons and 'and 2 more'");
    assert!(
        reasons.starts_with("• reason 1 &lt;b&gt;&amp;\n"),
        "{reasons}"
    );
    assert!(reasons.ends_with("• _and 2 more_"), "{reasons}");
    assert_eq!(
        message["blocks"][2],
        json!({"type": "context", "elements": [{"type": "mrkdwn",
            "text": "analysis `a1` · <https://canary.example.com/v1/analyses/a1|Open the report> · (3 similar notifications suppressed)"}]})
    );
}

#[test]
fn each_severity_has_its_emoji() {
    assert_eq!(slack::emoji(Severity::Critical), ":rotating_light:");
    assert_eq!(slack::emoji(Severity::Warning), ":warning:");
    assert_eq!(slack::emoji(Severity::Info), ":white_check_mark:");
}

#[test]
fn the_json_body_is_the_notification_with_five_reasons_and_a_text() {
    let body = serde_json::to_value(JsonBody::new(&rollback())).unwrap();
    assert_eq!(body["version"], 1);
    assert_eq!(body["severity"], "critical");
    assert_eq!(body["event"], "rolled_back");
    assert_eq!(body["analysis_id"], "a1");
    assert_eq!(body["traffic"], 5.0);
    assert_eq!(body["reasons"].as_array().unwrap().len(), 5);
    assert_eq!(body["suppressed"], 0);
    let text = body["text"].as_str().unwrap();
    assert!(text.starts_with("[CRITICAL] Rolled back new-checkout\nflag new-checkout · profile web-service · state rolled_back · verdict rollback · stage 2 · traffic 5% · analysis a1\n- reason 1"), "{text}");
    assert!(text.contains("- and 2 more"), "{text}");
    let parsed: JsonBody = serde_json::from_value(body).unwrap();
    assert_eq!(parsed.notification.flag, "new-checkout");
}

#[test]
fn notifier_settings_are_tables_with_a_kind() {
    let config: NotifierConfig = toml::from_str(
        "kind = \"slack\"\nurl = \"https://hooks.slack.com/services/T/B/X\"\nmin_severity = \"warning\"",
    )
    .unwrap();
    assert_eq!(config.min_severity(), Severity::Warning);
    assert!(
        !format!("{config:?}").contains("hooks.slack.com"),
        "the URL is the credential"
    );
    let config: NotifierConfig = toml::from_str(
        "kind = \"json\"\nurl = \"http://incidents/\"\nsecret_env = \"X\"\ntimeout = \"2s\"",
    )
    .unwrap();
    assert_eq!(config.min_severity(), Severity::Info);
    for bad in [
        "kind = \"slack\"\nurl = \"http://x/\"\nsecret_env = \"X\"",
        "kind = \"json\"\nurl = \"http://x/\"\nmin_severity = \"loud\"",
        "kind = \"email\"\nurl = \"http://x/\"",
    ] {
        assert!(toml::from_str::<NotifierConfig>(bad).is_err(), "{bad}");
    }
}

#[test]
fn an_unset_secret_variable_is_named_and_a_slack_url_is_never_printed() {
    let config = NotifierConfig::Json {
        url: "http://incidents.internal/".to_owned(),
        secret_env: Some("CANARY_TEST_NOTIFY_SECRET_THAT_IS_NEVER_SET".to_owned()),
        min_severity: Severity::Info,
        timeout: crate::domain::HumanDuration::parse("1s").unwrap(),
    };
    let error = config.build("incidents").err().unwrap();
    assert!(
        error
            .to_string()
            .contains("CANARY_TEST_NOTIFY_SECRET_THAT_IS_NEVER_SET"),
        "{error}"
    );
    let slack: NotifierConfig = toml::from_str(
        "kind = \"slack\"\nurl = \"https://hooks.slack.com/services/T/B/SECRETPART\"",
    )
    .unwrap();
    if cfg!(feature = "rustls") {
        let notifier = slack.build("oncall").unwrap();
        assert_eq!(notifier.describe(), "slack:https://hooks.slack.com");
    } else {
        // Without TLS the URL is refused at start-up, still without its secret part.
        let error = slack.build("oncall").err().unwrap().to_string();
        assert!(
            error.contains("url: \"https://hooks.slack.com\" is an https URL"),
            "{error}"
        );
        assert!(!error.contains("SECRETPART"), "{error}");
    }
}

/// Remembers what it got; fails the first `failures` attempts with `error`.
struct Recording {
    received: Arc<Mutex<Vec<Notification>>>,
    failures: Mutex<usize>,
    error: NotifyError,
}

impl Recording {
    fn new(failures: usize, error: NotifyError) -> (Self, Arc<Mutex<Vec<Notification>>>) {
        let received = Arc::new(Mutex::new(Vec::new()));
        (
            Self {
                received: received.clone(),
                failures: Mutex::new(failures),
                error,
            },
            received,
        )
    }

    fn healthy() -> (Self, Arc<Mutex<Vec<Notification>>>) {
        Self::new(0, unavailable())
    }
}

fn unavailable() -> NotifyError {
    NotifyError::Unavailable {
        target: "test".to_owned(),
        message: "down".to_owned(),
    }
}

#[async_trait]
impl Notifier for Recording {
    fn describe(&self) -> String {
        "recording".to_owned()
    }

    async fn notify(&self, notification: &Notification) -> Result<(), NotifyError> {
        let mut failures = self.failures.lock().unwrap();
        if *failures > 0 {
            *failures -= 1;
            return Err(self.error.clone());
        }
        self.received.lock().unwrap().push(notification.clone());
        Ok(())
    }
}

#[tokio::test]
async fn notifications_go_only_where_their_severity_is_wanted() {
    let (all, all_received) = Recording::healthy();
    let (pager, pager_received) = Recording::healthy();
    let notifications = Notifications::new(
        vec![
            ("all".to_owned(), Severity::Info, Box::new(all)),
            ("pager".to_owned(), Severity::Critical, Box::new(pager)),
        ],
        RateLimits::default(),
    );
    let mut promoted = rollback();
    promoted.severity = Severity::Info;
    promoted.event = "promoted".to_owned();
    let delivery = notifications.send_at(promoted, T0).await;
    assert_eq!(delivery.delivered, ["all"]);
    let delivery = notifications.send_at(rollback(), T0).await;
    assert_eq!(delivery.delivered, ["all", "pager"]);
    assert_eq!(all_received.lock().unwrap().len(), 2);
    assert_eq!(pager_received.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn a_temporary_failure_is_retried_once_and_a_dead_notifier_never_fails_the_caller() {
    let (flaky, flaky_received) = Recording::new(1, unavailable());
    let (dead, _) = Recording::new(usize::MAX, unavailable());
    let (refusing, _) = Recording::new(
        usize::MAX,
        NotifyError::Rejected {
            target: "test".to_owned(),
            message: "404".to_owned(),
        },
    );
    let notifications = Notifications::new(
        vec![
            ("flaky".to_owned(), Severity::Info, Box::new(flaky)),
            ("dead".to_owned(), Severity::Info, Box::new(dead)),
            ("refusing".to_owned(), Severity::Info, Box::new(refusing)),
        ],
        RateLimits::default(),
    )
    .with_retry_pause(Duration::ZERO);
    let delivery = notifications.send_at(rollback(), T0).await;
    assert_eq!(
        delivery,
        Delivery {
            suppressed: false,
            delivered: vec!["flaky".to_owned()],
            failed: vec!["dead".to_owned(), "refusing".to_owned()],
        }
    );
    assert_eq!(flaky_received.lock().unwrap().len(), 1);
    assert_eq!(
        notifications.stats(),
        NotificationStats {
            sent: 1,
            failed: 2,
            suppressed: 0
        }
    );
}

#[tokio::test]
async fn a_flood_is_suppressed_and_the_next_one_sent_says_how_many() {
    let (channel, received) = Recording::healthy();
    let notifications = Notifications::new(
        vec![("oncall".to_owned(), Severity::Info, Box::new(channel))],
        RateLimits::default(),
    );
    let mut held = rollback();
    held.severity = Severity::Warning;
    held.event = "awaiting_review".to_owned();
    for second in 0..50 {
        notifications
            .send_at(held.clone(), T0 + second as f64)
            .await;
    }
    let failed = Notification {
        event: "rollback_failed".to_owned(),
        ..rollback()
    };
    assert!(!notifications.send_at(failed, T0 + 51.0).await.suppressed);
    assert!(
        !notifications
            .send_at(held.clone(), T0 + 400.0)
            .await
            .suppressed
    );
    let received = received.lock().unwrap();
    let events: Vec<(&str, u64)> = received
        .iter()
        .map(|n| (n.event.as_str(), n.suppressed))
        .collect();
    assert_eq!(
        events,
        [
            ("awaiting_review", 0),
            ("rollback_failed", 0),
            ("awaiting_review", 49)
        ]
    );
    assert_eq!(notifications.stats().suppressed, 49);
}

#[tokio::test]
async fn no_notifiers_means_nothing_is_sent_or_counted() {
    let notifications = Notifications::new(Vec::new(), RateLimits::default());
    assert!(notifications.is_empty());
    assert_eq!(notifications.send(rollback()).await, Delivery::default());
}

#[test]
fn stored_analyses_that_people_must_hear_about_become_notifications() {
    use crate::store::AnalysisState;
    let analysis: crate::store::Analysis = serde_json::from_value(json!({
        "id": "5e0b8a9c-2f1e-4c1a-9d3b-0a1b2c3d4e5f",
        "profile_name": "web-service", "profile_text": "", "flag": "checkout",
        "source": "prod", "actuator": "flags", "baseline_scope": "", "canary_scope": "",
        "dry_run": false, "start_at": null, "state": "rolled_back", "current_stage": 1,
        "traffic": 5.0, "latest_verdict": "rollback", "reasons": ["errors up"],
        "runner_state": null, "next_look_at": null, "version": 3, "lease_owner": null,
        "lease_expires_at": null, "created_at": 0.0, "updated_at": 0.0,
        "requested_action": null
    }))
    .unwrap();
    let notification =
        Notification::for_state(&analysis, Some("http://canary/a".to_owned()), T0).unwrap();
    assert_eq!(notification.severity, Severity::Critical);
    assert_eq!(notification.event, "rolled_back");
    assert_eq!(notification.title, "Rolled back checkout");
    assert_eq!(notification.reasons, ["errors up"]);
    for (state, severity) in [
        (AnalysisState::RollbackFailed, Some(Severity::Critical)),
        (AnalysisState::AwaitingReview, Some(Severity::Warning)),
        (AnalysisState::Failed, Some(Severity::Warning)),
        (AnalysisState::Promoted, Some(Severity::Info)),
        (AnalysisState::Running, None),
        (AnalysisState::Paused, None),
        (AnalysisState::Pending, None),
    ] {
        let analysis = crate::store::Analysis {
            state,
            ..analysis.clone()
        };
        let notification = Notification::for_state(&analysis, None, T0);
        assert_eq!(notification.map(|n| n.severity), severity, "{state}");
    }
}
