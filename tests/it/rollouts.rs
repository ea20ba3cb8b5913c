//! Staged rollouts of every shipped profile through the real runner, on synthetic
//! series: a healthy canary is promoted through every stage, a faulty one is rolled
//! back (or held) at the trigger its plan names. Also the false-rollback check: many
//! A/A rollouts with all their repeated looks.

use std::collections::BTreeMap;
use std::sync::Arc;

use canary::actuators::Actuator;
use canary::actuators::log_only::LogOnlyActuator;
use canary::domain::{Percentage, Profile};
use canary::scheduler::{Decision, Rollout, RolloutRunner, RolloutStatus, Scopes};
use canary::sources::synthetic::{
    CountModel, Distribution, MetricModel, SideModel, SyntheticSource,
};

use crate::helpers::root;

/// The rollouts start here: an old, whole-hour epoch.
const T0: f64 = 1_699_999_200.0;
const DAY: f64 = 86_400.0;

fn profile(name: &str) -> Arc<Profile> {
    let path = root()
        .join("analysis-profiles")
        .join(format!("{name}.toml"));
    let text = std::fs::read_to_string(&path).unwrap();
    Arc::new(Profile::parse(&text, &path.display().to_string()).unwrap())
}

fn lognormal(median: f64, sigma: f64) -> Distribution {
    Distribution::LogNormal { median, sigma }
}

fn normal(mean: f64, sd: f64) -> Distribution {
    Distribution::Normal { mean, sd }
}

fn counts(events_per_step: f64, error_rate: f64) -> CountModel {
    CountModel {
        events_per_step,
        error_rate,
    }
}

struct Outcome {
    status: RolloutStatus,
    runner: RolloutRunner,
}

impl Outcome {
    /// The targets of every `set_rollout` and whether a kill happened.
    fn traffic_path(&self) -> Vec<f64> {
        self.runner
            .actuations()
            .iter()
            .map(|a| {
                if a.action == "kill" {
                    -1.0
                } else {
                    a.target.value()
                }
            })
            .collect()
    }

    fn last_reasons(&self) -> Vec<String> {
        self.runner.history().last().unwrap().reasons.clone()
    }

    fn last_stage(&self) -> String {
        self.runner.history().last().unwrap().stage.clone()
    }
}

/// Drives a rollout look by look (no sleeping) until it ends or `max_looks` pass.
async fn drive(profile: Arc<Profile>, models: BTreeMap<String, MetricModel>, seed: u64) -> Outcome {
    let step = profile.plan.as_ref().unwrap().settings.step.seconds();
    let source = Arc::new(SyntheticSource::new(seed, step, models));
    let actuator: Arc<dyn Actuator> = Arc::new(LogOnlyActuator::new());
    let rollout = Rollout {
        profile,
        flag: "new-feature".to_owned(),
        scopes: Scopes {
            baseline: r#"track="baseline""#.to_owned(),
            canary: r#"track="canary""#.to_owned(),
            scope_labels: vec!["track".to_owned()],
        },
        dry_run: false,
    };
    let mut runner = RolloutRunner::new(rollout, source, actuator).unwrap();
    runner.start(T0).await.unwrap();
    let max_looks = runner.plan().planned_looks() * 3;
    while runner.status() == RolloutStatus::Running && (runner.history().len() as u64) < max_looks {
        let due = runner.next_look_at();
        runner.take_look(due).await.unwrap();
    }
    Outcome {
        status: runner.status(),
        runner,
    }
}

fn assert_promoted_through_every_stage(outcome: &Outcome) {
    let plan = outcome.runner.plan();
    let mut expected: Vec<f64> = plan.stages.iter().map(|s| s.traffic.value()).collect();
    if expected.last() != Some(&100.0) {
        expected.push(100.0);
    }
    let holds: Vec<&Vec<String>> = outcome
        .runner
        .history()
        .iter()
        .filter(|look| {
            look.decision != Decision::Continue
                && !matches!(look.decision, Decision::Advance { .. })
        })
        .filter(|look| look.decision != Decision::Promote)
        .map(|look| &look.reasons)
        .collect();
    assert_eq!(
        outcome.status,
        RolloutStatus::Promoted,
        "last reasons: {:#?}\nholds: {holds:#?}",
        outcome.last_reasons()
    );
    assert_eq!(outcome.traffic_path(), expected);
    // Doubtful data may hold a look (a rate just above its limit on few events), but
    // rarely, and a healthy canary is never failed.
    let looks = outcome.runner.history().len();
    assert!(
        holds.len() * 50 <= looks,
        "{} holds in {looks} looks: {holds:#?}",
        holds.len()
    );
    assert!(
        outcome
            .runner
            .history()
            .iter()
            .all(|look| look.verdict != canary::domain::Verdict::Rollback),
        "no look of a healthy canary fails"
    );
}

fn assert_rolled_back_by(outcome: &Outcome, trigger: &str, stage: &str) {
    assert_eq!(
        outcome.status,
        RolloutStatus::RolledBack,
        "{:#?}",
        outcome.last_reasons()
    );
    let first = &outcome.last_reasons()[0];
    assert!(
        first.contains(&format!("trigger \"{trigger}\" fired")),
        "the deciding reason names the trigger {trigger:?}: {first}"
    );
    assert_eq!(outcome.last_stage(), stage);
    assert_eq!(
        outcome.traffic_path().last(),
        Some(&-1.0),
        "the kill switch was pulled"
    );
}

fn cohort_migration_healthy() -> BTreeMap<String, MetricModel> {
    BTreeMap::from([
        (
            "migration_failures".to_owned(),
            MetricModel::same_counts(counts(5.0, 0.01)),
        ),
        (
            "latency_p95".to_owned(),
            MetricModel::same_samples(lognormal(0.3, 0.1)),
        ),
        (
            "latency_p95_slo".to_owned(),
            MetricModel::same_samples(lognormal(0.3, 0.1)),
        ),
        (
            "reserve_ratio".to_owned(),
            MetricModel::same_samples(normal(1.0, 0.001)),
        ),
        (
            "resource_utilization".to_owned(),
            MetricModel::same_samples(normal(0.5, 0.05)),
        ),
    ])
}

#[tokio::test]
async fn cohort_migration_promotes_a_healthy_canary_through_every_stage() {
    let outcome = drive(profile("cohort-migration"), cohort_migration_healthy(), 1).await;
    assert_promoted_through_every_stage(&outcome);
}

#[tokio::test]
async fn cohort_migration_rolls_back_on_a_sustained_reserve_ratio_deviation() {
    let mut models = cohort_migration_healthy();
    let reserve = models.remove("reserve_ratio").unwrap();
    // Day 3.5: the beta stage (days 3 to 6).
    models.insert(
        "reserve_ratio".to_owned(),
        reserve.canary_samples_from(T0 + 3.5 * DAY, normal(0.97, 0.001)),
    );
    let outcome = drive(profile("cohort-migration"), models, 2).await;
    assert_rolled_back_by(
        &outcome,
        "reserve ratio deviation > 2 % for > 5 minutes (low)",
        "beta",
    );
}

fn v2_healthy() -> BTreeMap<String, MetricModel> {
    BTreeMap::from([
        (
            "error_rate".to_owned(),
            MetricModel::same_counts(counts(200.0, 0.005)),
        ),
        (
            "latency_p95".to_owned(),
            MetricModel::same_samples(lognormal(0.25, 0.1)),
        ),
        (
            "wizard_completion".to_owned(),
            MetricModel::same_counts(counts(20.0, 0.8)),
        ),
        (
            "fund_setup_success".to_owned(),
            MetricModel::same_counts(counts(20.0, 0.9)),
        ),
        (
            "health_check_failures".to_owned(),
            MetricModel::same_samples(normal(0.0, 0.0)),
        ),
    ])
}

#[tokio::test]
async fn v2_1_0_promotes_a_healthy_canary_through_every_stage() {
    let outcome = drive(profile("v2-1-0-canary"), v2_healthy(), 3).await;
    assert_promoted_through_every_stage(&outcome);
}

#[tokio::test]
async fn v2_1_0_rolls_back_when_the_error_rate_exceeds_one_and_a_half_times_the_baseline() {
    let mut models = v2_healthy();
    let errors = models.remove("error_rate").unwrap();
    // Day 8: the beta stage (days 7 to 14). Ten times the baseline's rate: enough
    // evidence within ten minutes for the trigger's significance check.
    models.insert(
        "error_rate".to_owned(),
        errors.canary_counts_from(T0 + 8.0 * DAY, counts(200.0, 0.05)),
    );
    let outcome = drive(profile("v2-1-0-canary"), models, 4).await;
    assert_rolled_back_by(
        &outcome,
        "error rate > baseline × 1.5 over 10 minutes",
        "beta",
    );
}

#[tokio::test]
async fn v2_1_0_rolls_back_after_two_consecutive_health_check_failures() {
    let mut models = v2_healthy();
    models.insert(
        "health_check_failures".to_owned(),
        MetricModel::same_samples(normal(0.0, 0.0))
            .canary_samples_from(T0 + 2.0 * DAY, normal(1.0, 0.0)),
    );
    let outcome = drive(profile("v2-1-0-canary"), models, 5).await;
    assert_rolled_back_by(
        &outcome,
        "2 consecutive canary health-check failures",
        "internal",
    );
}

fn transport_healthy() -> BTreeMap<String, MetricModel> {
    BTreeMap::from([
        (
            "error_rate".to_owned(),
            MetricModel::same_counts(counts(50.0, 0.0005)),
        ),
        (
            "http_5xx".to_owned(),
            MetricModel::same_counts(counts(50.0, 0.0003)),
        ),
        (
            "latency_p95".to_owned(),
            MetricModel::same_samples(lognormal(0.150, 0.03)),
        ),
        (
            "latency_p99".to_owned(),
            MetricModel::same_samples(lognormal(0.2, 0.1)),
        ),
        (
            "cpu_usage".to_owned(),
            MetricModel::same_samples(normal(2.0, 0.1)),
        ),
        (
            "throughput".to_owned(),
            MetricModel::same_samples(normal(1000.0, 20.0)),
        ),
    ])
}

#[tokio::test]
async fn protocol_transport_promotes_a_healthy_canary_from_shadow_to_everyone() {
    let outcome = drive(profile("protocol-transport"), transport_healthy(), 6).await;
    assert_promoted_through_every_stage(&outcome);
    assert_eq!(
        outcome.runner.actuations()[0].target,
        Percentage::ZERO,
        "shadow first"
    );
}

#[tokio::test]
async fn protocol_transport_rolls_back_when_p99_stays_above_500_ms() {
    let mut models = transport_healthy();
    models.insert(
        "latency_p99".to_owned(),
        MetricModel::same_samples(lognormal(0.2, 0.1))
            .canary_samples_from(T0 + 6.0 * DAY, lognormal(0.6, 0.05)),
    );
    let outcome = drive(profile("protocol-transport"), models, 7).await;
    assert_rolled_back_by(
        &outcome,
        "p99 response time > 500 ms for more than 2 minutes",
        "10%",
    );
}

#[tokio::test]
async fn protocol_transport_holds_for_review_when_throughput_drops_and_then_waits_for_a_person() {
    let mut models = transport_healthy();
    models.insert(
        "throughput".to_owned(),
        MetricModel::same_samples(normal(1000.0, 20.0))
            .canary_samples_from(T0 + 6.0 * DAY, normal(900.0, 20.0)),
    );
    let outcome = drive(profile("protocol-transport"), models, 8).await;
    let first_hold = outcome
        .runner
        .history()
        .iter()
        .find(|look| look.decision == Decision::Hold)
        .expect("the throughput drop holds the rollout");
    assert_eq!(first_hold.stage, "10%");
    assert!(
        first_hold
            .reasons
            .iter()
            .any(|r| r.contains("throughput (warning) failed, hold for manual review")),
        "{:#?}",
        first_hold.reasons
    );
    // The plan waits for a person after two days of holding; it never rolls back alone.
    assert_eq!(
        outcome.status,
        RolloutStatus::AwaitingReview,
        "{:#?}",
        outcome.last_reasons()
    );
    assert!(outcome.last_reasons()[0].contains("waiting for a person"));
    assert!(
        outcome
            .runner
            .actuations()
            .iter()
            .all(|a| a.action == "set_rollout")
    );
}

fn staged_ga_healthy() -> BTreeMap<String, MetricModel> {
    BTreeMap::from([
        (
            "error_rate".to_owned(),
            MetricModel::same_counts(counts(100.0, 0.005)),
        ),
        (
            "latency_p95".to_owned(),
            MetricModel::same_samples(lognormal(0.8, 0.1)),
        ),
        (
            "cpu_usage".to_owned(),
            MetricModel::same_samples(normal(0.5, 0.03)),
        ),
        (
            "memory_usage".to_owned(),
            MetricModel::same_samples(normal(0.6, 0.03)),
        ),
    ])
}

#[tokio::test]
async fn staged_ga_promotes_a_healthy_canary_through_every_stage() {
    let outcome = drive(profile("staged-ga"), staged_ga_healthy(), 9).await;
    assert_promoted_through_every_stage(&outcome);
}

#[tokio::test]
async fn staged_ga_rolls_back_at_the_pilot_error_rate_threshold() {
    let mut models = staged_ga_healthy();
    // 3 %: under the 5 % automatic trigger, over the pilot's 2 % alert threshold.
    models.insert(
        "error_rate".to_owned(),
        MetricModel::same_counts(counts(100.0, 0.005))
            .canary_counts_from(T0 + 3.0 * DAY, counts(100.0, 0.03)),
    );
    let outcome = drive(profile("staged-ga"), models, 10).await;
    assert_rolled_back_by(&outcome, "pilot: error rate > 2 %", "pilot");
}

/// "Error rate > 2 % for 1+ hour" asks for a person's rollback decision: a service-wide
/// 4.5 % for the internal stage's first four hours fires it, and the rollout then waits
/// for that decision even after the error rate falls back to 0.5 % (the hold timeout,
/// a day, ends it awaiting review), never advancing on its own.
#[tokio::test]
async fn staged_ga_a_hold_trigger_that_fired_holds_for_a_person_after_the_condition_clears() {
    let mut models = staged_ga_healthy();
    let side = SideModel::Counts {
        before: counts(1000.0, 0.045),
        after: Some((T0 + 4.0 * 3600.0, counts(1000.0, 0.005))),
    };
    models.insert(
        "error_rate".to_owned(),
        MetricModel {
            baseline: side.clone(),
            canary: side,
            canary_gap: None,
        },
    );
    let outcome = drive(profile("staged-ga"), models, 14).await;
    assert_eq!(outcome.status, RolloutStatus::AwaitingReview);
    assert_eq!(outcome.last_stage(), "internal");
    assert_eq!(outcome.traffic_path(), vec![1.0], "never advanced");
    let history = outcome.runner.history();
    assert!(
        history[0].reasons[0].contains("trigger \"error rate > 2 % for 1+ hour\" fired"),
        "{:#?}",
        history[0].reasons
    );
    let after_clearing = &history[3];
    assert_eq!(after_clearing.decision, Decision::Hold);
    assert!(
        after_clearing.triggers.iter().all(|trigger| !trigger.met),
        "the condition has cleared: {:#?}",
        after_clearing.triggers
    );
    assert!(
        after_clearing
            .reasons
            .iter()
            .any(|reason| reason.contains("held for a person's decision")),
        "{:#?}",
        after_clearing.reasons
    );
    assert!(
        outcome.last_reasons()[0].contains("past the hold timeout 1d: waiting for a person"),
        "{:#?}",
        outcome.last_reasons()
    );
}

/// A rollout waiting for a person's decision still takes its looks: they leave the
/// flag alone while the canary is no worse, and when its error rate then climbs past the
/// 5 % rollback trigger the next look rolls it back without waiting for the person.
#[tokio::test]
async fn staged_ga_a_rollout_waiting_for_a_person_still_rolls_back_on_a_rollback_trigger() {
    let climbs_at = T0 + 30.0 * 3600.0;
    let mut models = staged_ga_healthy();
    models.insert(
        "error_rate".to_owned(),
        MetricModel {
            baseline: SideModel::Counts {
                before: counts(1000.0, 0.045),
                after: None,
            },
            canary: SideModel::Counts {
                before: counts(1000.0, 0.045),
                after: Some((climbs_at, counts(1000.0, 0.08))),
            },
            canary_gap: None,
        },
    );
    let mut outcome = drive(profile("staged-ga"), models, 15).await;
    assert_eq!(outcome.status, RolloutStatus::AwaitingReview);
    let waiting_from = outcome.runner.history().len();
    let runner = &mut outcome.runner;
    for _ in 0..10 {
        if runner.status() != RolloutStatus::AwaitingReview {
            break;
        }
        let due = runner.next_look_at();
        runner.take_look(due).await.unwrap();
    }
    assert_eq!(runner.status(), RolloutStatus::RolledBack);
    let history = runner.history();
    let (last, waiting) = history[waiting_from..].split_last().unwrap();
    assert!(!waiting.is_empty(), "looks while waiting, before the climb");
    for look in waiting {
        assert!(look.at <= climbs_at, "{}", look.at);
        assert_eq!(look.decision, Decision::AwaitReview);
        assert!(
            look.reasons[0].starts_with("waiting for a person's decision"),
            "{:#?}",
            look.reasons
        );
    }
    assert_eq!(last.decision, Decision::Rollback);
    assert!(
        last.reasons
            .iter()
            .any(|reason| reason.contains("trigger \"error rate > 5 %\" fired")),
        "{:#?}",
        last.reasons
    );
    assert_eq!(
        outcome.traffic_path(),
        vec![1.0, -1.0],
        "started, then killed"
    );
}

/// A two-stage plan whose error rate needs 500 events a stage, past its 30-minute
/// duration at the low traffic of [`low_traffic_errors`].
fn gathering_profile(max_duration: &str) -> Arc<Profile> {
    let text = format!(
        r#"
name = "gathering"
[judge]
mode = "sequential"
[rollout]
step = "1m"
hold_timeout = "30m"
on_hold_timeout = "wait"
[[stages]]
traffic = 1
duration = "30m"
max_duration = "{max_duration}"
interval = "10m"
[[stages]]
traffic = 50
duration = "30m"
max_duration = "{max_duration}"
interval = "10m"
[[metrics]]
name = "error_rate"
kind = "proportion"
min_samples = 500
max_ratio = 1.5
errors_query = 'e{{ {{{{scope}}}} }}'
total_query = 't{{ {{{{scope}}}} }}'
"#
    );
    Arc::new(Profile::parse(&text, "gathering.toml").unwrap())
}

/// `per_minute` events a side each minute, at either stage.
fn low_traffic_errors(per_minute: f64) -> BTreeMap<String, MetricModel> {
    BTreeMap::from([(
        "error_rate".to_owned(),
        MetricModel::same_counts(counts(per_minute, 0.01)),
    )])
}

/// Short only of `min_samples`, a stage goes on past its duration (no hold, the hold
/// timeout never starts) until it has them, within its max_duration, and the rollout
/// promotes; every such look says how many it has and how long it still needs.
#[tokio::test]
async fn a_stage_short_only_of_samples_runs_on_to_its_max_duration_and_promotes() {
    let outcome = drive(gathering_profile("2h"), low_traffic_errors(10.0), 21).await;
    assert_eq!(outcome.status, RolloutStatus::Promoted);
    let history = outcome.runner.history();
    assert!(
        history.iter().all(|look| look.decision != Decision::Hold),
        "no look holds"
    );
    let first = &history[0];
    assert_eq!(first.decision, Decision::Continue);
    assert!(
        first.reasons[0].starts_with("error_rate gathering samples: ")
            && first.reasons[0].contains("of 500 events at stage 1% after 10 min")
            && first.reasons[0]
                .contains("past the stage's duration 30m (within its max_duration 2h)"),
        "{:#?}",
        first.reasons
    );
    // 500 events at about 10 a minute (Poisson): the first stage advances at the first
    // look with 500 (50 or 60 minutes), not at its 30-minute duration.
    let advance = history
        .iter()
        .find(|look| matches!(look.decision, Decision::Advance { .. }))
        .expect("the first stage advances");
    assert!(
        matches!(advance.look, 5 | 6),
        "advanced at look {}",
        advance.look
    );
}

/// A stage that cannot gather its samples within its max_duration says so from its
/// first look, holds once the max_duration has passed, and waits for a person at the
/// hold timeout.
#[tokio::test]
async fn a_stage_that_cannot_gather_its_samples_in_its_max_duration_holds_past_it() {
    let outcome = drive(gathering_profile("1h"), low_traffic_errors(5.0), 22).await;
    assert_eq!(outcome.status, RolloutStatus::AwaitingReview);
    let history = outcome.runner.history();
    assert!(
        history[0].reasons[0].contains("beyond the stage's max_duration 1h: it will hold there"),
        "{:#?}",
        history[0].reasons
    );
    let first_hold = history
        .iter()
        .find(|look| look.decision == Decision::Hold)
        .expect("a hold past the max_duration");
    assert_eq!(first_hold.look, 6, "the look at 60 minutes");
    assert!(
        first_hold.reasons[0]
            .contains("stage 1% has run its max_duration 1h without gathering its samples"),
        "{:#?}",
        first_hold.reasons
    );
    assert!(
        outcome.last_reasons()[0].contains("past the hold timeout 30m: waiting for a person"),
        "{:#?}",
        outcome.last_reasons()
    );
}

fn dark_launch_healthy() -> BTreeMap<String, MetricModel> {
    BTreeMap::from([
        (
            "error_rate".to_owned(),
            MetricModel::same_counts(counts(10.0, 0.003)),
        ),
        (
            "error_rate_slo".to_owned(),
            MetricModel::same_counts(counts(10.0, 0.003)),
        ),
        (
            "response_time".to_owned(),
            MetricModel::same_samples(lognormal(0.3, 0.1)),
        ),
        (
            "resource_usage".to_owned(),
            MetricModel::same_samples(normal(0.5, 0.05)),
        ),
    ])
}

#[tokio::test]
async fn dark_launch_promotes_a_healthy_feature_from_a_tenth_of_a_percent_to_everyone() {
    let outcome = drive(profile("dark-launch"), dark_launch_healthy(), 11).await;
    assert_promoted_through_every_stage(&outcome);
    assert_eq!(outcome.runner.actuations()[0].target.value(), 0.1);
}

#[tokio::test]
async fn dark_launch_flips_the_toggle_off_when_the_error_rate_passes_five_percent() {
    let mut models = dark_launch_healthy();
    // An outage of the new code path at the 5 % stage: a fifth of its requests fail. At
    // ten requests a minute, a ten-minute window holds enough of them to show it.
    models.insert(
        "error_rate".to_owned(),
        MetricModel::same_counts(counts(10.0, 0.003))
            .canary_counts_from(T0 + 2.5 * DAY, counts(10.0, 0.2)),
    );
    let outcome = drive(profile("dark-launch"), models, 12).await;
    assert_rolled_back_by(&outcome, "critical: error rate > 5 %", "5%");
}

#[tokio::test]
async fn dark_launch_holds_on_high_resource_usage_and_rolls_back_after_the_hold_timeout() {
    let mut models = dark_launch_healthy();
    models.insert(
        "resource_usage".to_owned(),
        MetricModel::same_samples(normal(0.5, 0.05))
            .canary_samples_from(T0 + 2.5 * DAY, normal(0.9, 0.01)),
    );
    let outcome = drive(profile("dark-launch"), models, 13).await;
    let first_hold = outcome
        .runner
        .history()
        .iter()
        .find(|look| look.decision == Decision::Hold)
        .expect("high resource usage holds the rollout");
    assert_eq!(first_hold.stage, "5%");
    assert!(
        first_hold.reasons[0].contains("trigger \"warning: high resource usage\" fired"),
        "{:#?}",
        first_hold.reasons
    );
    assert_eq!(outcome.status, RolloutStatus::RolledBack);
    assert!(
        outcome.last_reasons()[0].contains("past the hold timeout 6h"),
        "{:#?}",
        outcome.last_reasons()
    );
    let held_looks = outcome
        .runner
        .history()
        .iter()
        .filter(|look| look.decision == Decision::Hold)
        .count();
    assert_eq!(
        held_looks, 6,
        "one look an hour for the six hours of the hold timeout"
    );
}

/// The false-rollback check: A/A rollouts (baseline and canary from the same
/// distributions) of the web-service plan, with all ten looks each. The share rolled
/// back must stay within the plan's error budget.
#[tokio::test]
async fn healthy_rollouts_are_rolled_back_no_more_often_than_the_error_budget() {
    let profile = profile("web-service");
    let budget = profile.plan.as_ref().unwrap().settings.error_budget;
    let models = web_service_healthy();
    let rollouts = 200;
    let mut rolled_back = 0;
    let mut promoted = 0;
    for seed in 0..rollouts {
        let outcome = drive(Arc::clone(&profile), models.clone(), 10_000 + seed).await;
        match outcome.status {
            RolloutStatus::RolledBack => rolled_back += 1,
            RolloutStatus::Promoted => promoted += 1,
            _ => {}
        }
    }
    let share = rolled_back as f64 / rollouts as f64;
    println!(
        "A/A false-rollback check: {rolled_back} of {rollouts} healthy rollouts rolled back ({:.1} %), \
         {promoted} promoted; error budget {:.1} %",
        share * 100.0,
        budget * 100.0
    );
    assert!(
        share <= budget,
        "{rolled_back} of {rollouts} healthy rollouts rolled back"
    );
    assert!(
        promoted as f64 >= 0.9 * rollouts as f64,
        "healthy rollouts are promoted: {promoted}"
    );
}

/// A worker that dies loses nothing: a rollout resumed from a JSON snapshot by a fresh
/// runner (another process, after a crash) makes exactly the decisions an uninterrupted
/// one makes.
#[tokio::test]
async fn a_rollout_resumed_from_a_snapshot_decides_exactly_as_an_uninterrupted_one() {
    let profile = profile("web-service");
    let step = profile.plan.as_ref().unwrap().settings.step.seconds();
    let models = BTreeMap::from([
        (
            "latency_p95".to_owned(),
            MetricModel::same_samples(lognormal(0.2, 0.15))
                .canary_samples_from(T0 + 14.0 * 60.0, lognormal(0.3, 0.15)),
        ),
        (
            "p95_slo".to_owned(),
            MetricModel::same_samples(lognormal(0.2, 0.15)),
        ),
        (
            "error_rate".to_owned(),
            MetricModel::same_counts(counts(330.0, 0.004)),
        ),
        (
            "cpu_usage".to_owned(),
            MetricModel::same_samples(normal(0.55, 0.04)),
        ),
        (
            "memory_rss".to_owned(),
            MetricModel::same_samples(normal(512.0, 8.0)),
        ),
    ]);
    let uninterrupted = drive(Arc::clone(&profile), models.clone(), 77).await;
    let expected: Vec<Decision> = uninterrupted
        .runner
        .history()
        .iter()
        .map(|l| l.decision.clone())
        .collect();
    assert_eq!(uninterrupted.status, RolloutStatus::RolledBack);

    let source = Arc::new(SyntheticSource::new(77, step, models));
    let actuator: Arc<dyn Actuator> = Arc::new(LogOnlyActuator::new());
    let rollout = Rollout {
        profile,
        flag: "new-feature".to_owned(),
        scopes: Scopes {
            baseline: r#"track="baseline""#.to_owned(),
            canary: r#"track="canary""#.to_owned(),
            scope_labels: vec!["track".to_owned()],
        },
        dry_run: false,
    };
    let mut first =
        RolloutRunner::new(rollout.clone(), source.clone(), Arc::clone(&actuator)).unwrap();
    first.start(T0).await.unwrap();
    let mut decisions = Vec::new();
    for _ in 0..3 {
        let due = first.next_look_at();
        decisions.push(first.take_look(due).await.unwrap().decision.clone());
    }
    let snapshot = serde_json::to_string(&first.snapshot()).unwrap();
    drop(first);

    let mut second = RolloutRunner::resume(
        rollout,
        serde_json::from_str(&snapshot).unwrap(),
        source,
        actuator,
    )
    .unwrap();
    while second.status() == RolloutStatus::Running {
        let due = second.next_look_at();
        decisions.push(second.take_look(due).await.unwrap().decision.clone());
    }
    assert_eq!(decisions, expected);
    assert_eq!(second.status(), RolloutStatus::RolledBack);
}

fn web_service_healthy() -> BTreeMap<String, MetricModel> {
    BTreeMap::from([
        (
            "latency_p95".to_owned(),
            MetricModel::same_samples(lognormal(0.2, 0.15)),
        ),
        (
            "p95_slo".to_owned(),
            MetricModel::same_samples(lognormal(0.2, 0.15)),
        ),
        (
            "error_rate".to_owned(),
            MetricModel::same_counts(counts(330.0, 0.004)),
        ),
        (
            "cpu_usage".to_owned(),
            MetricModel::same_samples(normal(0.55, 0.04)),
        ),
        (
            "memory_rss".to_owned(),
            MetricModel::same_samples(normal(512.0, 8.0)),
        ),
    ])
}

/// Missing data is never good news: while the canary's latency series has a gap the
/// looks hold, and the minutes without usable data do not count towards the stage, so
/// the first stage (6 minutes, looks every 3) advances only after 6 minutes of good data.
#[tokio::test]
async fn a_gap_in_the_canary_data_holds_and_the_missing_minutes_do_not_count_towards_the_stage() {
    let mut models = web_service_healthy();
    let mut latency = models.remove("latency_p95").unwrap();
    latency.canary_gap = Some((T0 + 60.0, T0 + 230.0));
    models.insert("latency_p95".to_owned(), latency);
    let outcome = drive(profile("web-service"), models, 21).await;
    let history = outcome.runner.history();
    for look in &history[..2] {
        assert_eq!(look.decision, Decision::Hold, "{:#?}", look.reasons);
        assert!(
            look.reasons.iter().any(|r| r.contains("gap in its data")),
            "{:#?}",
            look.reasons
        );
    }
    assert_eq!(
        history[2].decision,
        Decision::Continue,
        "{:#?}",
        history[2].reasons
    );
    assert!(
        history[2].reasons[0].contains("6 min without usable data not counted"),
        "{:#?}",
        history[2].reasons
    );
    let advance = history
        .iter()
        .find(|look| matches!(look.decision, Decision::Advance { .. }))
        .unwrap();
    assert_eq!(advance.at, T0 + 720.0, "{:#?}", advance.reasons);
    assert_eq!(outcome.status, RolloutStatus::Promoted);
}

/// The shipped web-service profile tests the latency's spread (`tails = true`): a canary
/// whose p95 latency spreads out at the same median (a location test cannot see it) is
/// rolled back by the tails check.
#[tokio::test]
async fn web_service_rolls_back_a_canary_whose_latency_spreads_out_at_the_same_median() {
    let mut models = web_service_healthy();
    models.insert(
        "latency_p95".to_owned(),
        MetricModel::same_samples(lognormal(0.2, 0.1))
            .canary_samples_from(T0, lognormal(0.2, 0.25)),
    );
    models.insert(
        "p95_slo".to_owned(),
        MetricModel::same_samples(lognormal(0.2, 0.1)),
    );
    let outcome = drive(profile("web-service"), models, 31).await;
    assert_eq!(
        outcome.status,
        RolloutStatus::RolledBack,
        "{:#?}",
        outcome.last_reasons()
    );
    let reasons = outcome.last_reasons().join("\n");
    assert!(
        reasons.contains("latency_p95 (critical) failed: tails:"),
        "{reasons}"
    );
    assert!(!reasons.contains("location: shift"), "{reasons}");
    assert!(reasons.contains("canary spread ×"), "{reasons}");
}
