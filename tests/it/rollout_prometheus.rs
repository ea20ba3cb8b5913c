//! The rollout runner against a real Prometheus (backfilled with `promtool`) and a real
//! flagd flag file: promotion, a regression rolled back at the stage where it appears,
//! Prometheus going away mid-rollout, queries that return nothing, and a misspelled
//! metric caught before anything is actuated.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use canary::actuators::Actuator;
use canary::actuators::flagd_file::FlagdFileActuator;
use canary::domain::{Percentage, Profile};
use canary::scheduler::{Decision, Rollout, RolloutRunner, RolloutStatus, RunError, Scopes};
use canary::sources::prometheus::PrometheusConfig;

use crate::helpers::{canary, root};
use crate::prometheus_harness::{PrometheusGuard, start_prometheus};

/// The rollouts start six minutes into the recordings (see fixtures/prometheus/rollout.py),
/// so the runner's preflight has history to check its queries against.
const START: f64 = 1_700_000_360.0;
const FLAG: &str = "checkout-v2";

fn recording(name: &str) -> String {
    std::fs::read_to_string(root().join("fixtures/prometheus").join(name)).unwrap()
}

fn profile_text() -> String {
    std::fs::read_to_string(root().join("fixtures/prometheus/rollout-profile.toml")).unwrap()
}

fn flag_file(directory: &Path) -> PathBuf {
    let path = directory.join("flags.json");
    std::fs::write(
        &path,
        r#"{
  "flags": {
    "checkout-v2": {
      "state": "ENABLED",
      "variants": { "on": true, "off": false },
      "defaultVariant": "off"
    },
    "dark-mode": {
      "state": "ENABLED",
      "variants": { "on": true, "off": false },
      "defaultVariant": "on"
    }
  }
}
"#,
    )
    .unwrap();
    path
}

struct Harness {
    prometheus: PrometheusGuard,
    runner: RolloutRunner,
    actuator: Arc<FlagdFileActuator>,
    _directory: tempfile::TempDir,
}

fn harness(recording_name: &str, profile: &str, canary_scope: &str) -> Harness {
    let prometheus = start_prometheus(&recording(recording_name));
    let source = Arc::new(
        PrometheusConfig::new(prometheus.url.clone())
            .build()
            .unwrap(),
    );
    let directory = tempfile::tempdir().unwrap();
    let actuator = Arc::new(FlagdFileActuator::new(flag_file(directory.path())));
    let rollout = Rollout {
        profile: Arc::new(Profile::parse(profile, "rollout-profile.toml").unwrap()),
        flag: FLAG.to_owned(),
        scopes: Scopes {
            baseline: r#"track="baseline""#.to_owned(),
            canary: canary_scope.to_owned(),
            scope_labels: vec!["track".to_owned()],
        },
        dry_run: false,
    };
    let runner =
        RolloutRunner::new(rollout, source, Arc::clone(&actuator) as Arc<dyn Actuator>).unwrap();
    Harness {
        prometheus,
        runner,
        actuator,
        _directory: directory,
    }
}

async fn step_until_done(runner: &mut RolloutRunner) {
    while runner.status() == RolloutStatus::Running && runner.history().len() < 40 {
        let due = runner.next_look_at();
        runner.take_look(due).await.unwrap();
    }
}

#[tokio::test]
async fn a_good_canary_is_promoted_through_every_stage_and_the_flag_file_follows() {
    let mut h = harness("rollout-healthy.om", &profile_text(), r#"track="canary""#);
    h.runner.start(START).await.unwrap();
    step_until_done(&mut h.runner).await;
    assert_eq!(
        h.runner.status(),
        RolloutStatus::Promoted,
        "{:#?}",
        h.runner.history().last().map(|l| &l.reasons)
    );
    let targets: Vec<f64> = h
        .runner
        .actuations()
        .iter()
        .map(|a| a.target.value())
        .collect();
    assert_eq!(targets, [1.0, 5.0, 25.0, 50.0, 100.0]);
    let state = h.actuator.current(FLAG).await.unwrap();
    assert!(state.enabled);
    assert_eq!(state.rollout, Percentage::FULL);
    assert_eq!(h.runner.history().len(), 10, "two looks a stage, none held");
}

#[tokio::test]
async fn a_regression_is_rolled_back_at_the_stage_where_it_appears() {
    let mut h = harness(
        "rollout-regression.om",
        &profile_text(),
        r#"track="canary""#,
    );
    h.runner.start(START).await.unwrap();
    step_until_done(&mut h.runner).await;
    assert_eq!(h.runner.status(), RolloutStatus::RolledBack);
    let last = h.runner.history().last().unwrap();
    assert_eq!(
        last.stage, "25%",
        "the canary slows at minute 13, during the 25 % stage"
    );
    assert!(
        last.reasons[0].starts_with("latency (critical) failed"),
        "{:#?}",
        last.reasons
    );
    let state = h.actuator.current(FLAG).await.unwrap();
    assert!(!state.enabled, "the kill switch is off in the flag file");
}

#[tokio::test]
async fn prometheus_going_away_mid_rollout_holds_and_the_rollout_recovers_when_it_returns() {
    let mut h = harness("rollout-healthy.om", &profile_text(), r#"track="canary""#);
    h.runner.start(START).await.unwrap();
    while h.runner.stage_index() < 2 {
        let due = h.runner.next_look_at();
        h.runner.take_look(due).await.unwrap();
    }
    h.prometheus.stop();
    let due = h.runner.next_look_at();
    let look = h.runner.take_look(due).await.unwrap().clone();
    assert_eq!(look.decision, Decision::Hold, "{:#?}", look.reasons);
    assert!(
        look.reasons.iter().any(|r| r.contains("unreachable")),
        "the reason says the source is unreachable: {:#?}",
        look.reasons
    );
    // Issue 12: each reason names the metric, the side and the source, not the URL of
    // the query with its query string.
    let unreachable = look
        .reasons
        .iter()
        .find(|r| r.contains("unreachable"))
        .unwrap();
    assert!(
        unreachable.contains("`latency`")
            && (unreachable.contains("baseline") || unreachable.contains("canary"))
            && unreachable.contains(&format!("prometheus:{}", h.prometheus.url)),
        "{unreachable}"
    );
    assert!(
        look.reasons.iter().all(|r| !r.contains("/api/v1/query")),
        "{:#?}",
        look.reasons
    );
    assert_eq!(
        h.runner.status(),
        RolloutStatus::Running,
        "never promoted without data"
    );
    h.prometheus.restart();
    step_until_done(&mut h.runner).await;
    assert_eq!(h.runner.status(), RolloutStatus::Promoted);
}

#[tokio::test]
async fn a_canary_scope_that_matches_no_series_is_a_configuration_error_that_restores_the_flag() {
    let mut h = harness(
        "rollout-healthy.om",
        &profile_text(),
        r#"track="canary-typo""#,
    );
    let before = h.actuator.current(FLAG).await.unwrap();
    h.runner.start(START).await.unwrap();
    assert_eq!(
        h.actuator.current(FLAG).await.unwrap().rollout,
        Percentage::parse(1.0).unwrap(),
        "the first stage's share is set: only now can the canary scope be checked"
    );
    let due = h.runner.next_look_at();
    let error = h.runner.take_look(due).await.unwrap_err();
    assert!(matches!(error, RunError::Config(_)), "{error}");
    let message = error.to_string();
    assert!(
        message.contains(r#"`track="canary-typo"`"#) && message.contains("matches no series"),
        "the message names the scope: {message}"
    );
    assert!(message.contains("back where it was"), "{message}");
    let after = h.actuator.current(FLAG).await.unwrap();
    assert_eq!(
        (after.enabled, after.rollout),
        (before.enabled, before.rollout),
        "the flag is back where it was before the rollout"
    );
    assert_eq!(h.runner.status(), RolloutStatus::Running, "not a verdict");
}

#[tokio::test]
async fn a_misspelled_metric_is_a_clear_error_before_the_flag_is_touched() {
    let profile =
        profile_text().replace("web_request_latency_seconds", "web_request_latncy_seconds");
    let mut h = harness("rollout-healthy.om", &profile, r#"track="canary""#);
    let error = h.runner.start(START).await.unwrap_err();
    assert!(matches!(error, RunError::Config(_)), "{error}");
    let message = error.to_string();
    assert!(
        message.contains("latency")
            && message.contains("returned no data")
            && message.contains("metric name"),
        "{message}"
    );
    assert!(h.runner.actuations().is_empty());
    let state = h.actuator.current(FLAG).await.unwrap();
    assert_eq!(
        state.rollout,
        Percentage::ZERO,
        "the flag file is untouched"
    );
}

#[test]
fn canary_run_drives_a_rollout_against_prometheus_from_the_command_line() {
    let prometheus = start_prometheus(&recording("rollout-healthy.om"));
    let directory = tempfile::tempdir().unwrap();
    let flags = flag_file(directory.path());
    let before_other = std::fs::read_to_string(&flags).unwrap();
    let run = canary([
        "run",
        "--profile",
        "fixtures/prometheus/rollout-profile.toml",
        "--source",
        &format!("prometheus={}", prometheus.url),
        "--flag",
        FLAG,
        "--actuator",
        &format!("flagd-file={}", flags.display()),
        "--start",
        "1700000360",
        "--speed",
        "3000",
        "--format",
        "json",
    ]);
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    let summary: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(summary["verdict"], "promote");
    assert_eq!(summary["stages_passed"].as_array().unwrap().len(), 5);
    let after: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&flags).unwrap()).unwrap();
    let before: serde_json::Value = serde_json::from_str(&before_other).unwrap();
    assert_eq!(
        after["flags"]["dark-mode"], before["flags"]["dark-mode"],
        "other flags are kept"
    );
    assert_eq!(after["flags"][FLAG]["state"], "ENABLED");
}
