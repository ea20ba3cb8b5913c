//! The Unleash actuator against a real unleash-server 7.4.1 (`unleash_harness`): every
//! state the actuator reports is checked with the harness's own admin API reads, not
//! only through the actuator. Each test starts one server (a few seconds) and uses
//! flags of its own; without `node` or `tests/unleash/node_modules` they skip with a
//! notice.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use canary::actuators::unleash::{AdminToken, UnleashActuator, UnleashTarget};
use canary::actuators::{Actuator, ActuatorError, ActuatorExt, FlagState};
use canary::domain::{Percentage, Profile};
use canary::scheduler::{RolloutRunner, RolloutStatus, Scopes};
use canary::sources::synthetic::{CountModel, Distribution, MetricModel, SyntheticSource};
use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::root;
use crate::unleash_harness::{ADMIN_TOKEN, UnleashServer};

fn actuator_with_token(server: &UnleashServer, environment: &str, token: &str) -> UnleashActuator {
    UnleashActuator::new(
        UnleashTarget {
            url: server.url.clone(),
            project: "default".to_owned(),
            environment: environment.to_owned(),
            timeout: Duration::from_secs(10),
        },
        AdminToken::new(token, "the test's token"),
    )
    .unwrap()
}

fn actuator(server: &UnleashServer, environment: &str) -> UnleashActuator {
    actuator_with_token(server, environment, ADMIN_TOKEN)
}

fn percent(value: f64) -> Percentage {
    Percentage::parse(value).unwrap()
}

fn state(enabled: bool, rollout: f64) -> FlagState {
    FlagState {
        enabled,
        rollout: percent(rollout),
    }
}

/// The environment's strategies as `(name, rollout parameter)` pairs.
fn strategies(environment: &Value) -> Vec<(String, Option<String>)> {
    environment["strategies"]
        .as_array()
        .unwrap()
        .iter()
        .map(|strategy| {
            (
                strategy["name"].as_str().unwrap().to_owned(),
                strategy["parameters"]["rollout"]
                    .as_str()
                    .map(str::to_owned),
            )
        })
        .collect()
}

fn rollout_at(percent: &str) -> Vec<(String, Option<String>)> {
    vec![("flexibleRollout".to_owned(), Some(percent.to_owned()))]
}

#[tokio::test]
async fn a_flag_moves_1_5_25_100_percent_each_step_read_back_and_repeating_a_percentage_writes_nothing()
 {
    let Some(server) = UnleashServer::start() else {
        return;
    };
    let flag = "moves-through-stages";
    server.create_flag(flag).await;
    let actuator = actuator(&server, "production");

    assert_eq!(actuator.healthcheck(flag).await.unwrap(), state(false, 0.0));

    let mut strategy_id: Option<String> = None;
    for step in [1.0, 5.0, 25.0, 100.0] {
        let reported = actuator.set_rollout(flag, percent(step)).await.unwrap();
        assert_eq!(reported, state(true, step));

        // Read independently: on, and exactly one gradual rollout at this percentage.
        // Unleash adds a default strategy of 100 % when an environment without strategies
        // is switched on; at the first step this shows canary's strategy came first.
        let production = server.environment(flag, "production").await;
        assert_eq!(production["enabled"], json!(true), "{production}");
        assert_eq!(
            strategies(&production),
            rollout_at(&format!("{step}")),
            "{production}"
        );
        let strategy = &production["strategies"][0];
        assert_eq!(strategy["parameters"]["groupId"], json!(flag));
        assert_eq!(strategy["parameters"]["stickiness"], json!("default"));
        let id = strategy["id"].as_str().unwrap().to_owned();
        assert_eq!(
            strategy_id.get_or_insert_with(|| id.clone()),
            &id,
            "the one strategy is moved, not replaced"
        );
        assert_eq!(actuator.current(flag).await.unwrap(), state(true, step));
    }
    // The development environment was never touched.
    let development = server.environment(flag, "development").await;
    assert_eq!(development["enabled"], json!(false));
    assert_eq!(strategies(&development), vec![]);

    // Idempotent: the same percentage again writes nothing, so Unleash logs no event.
    let events = server.event_count(flag).await;
    let before = server.environment(flag, "production").await;
    assert_eq!(
        actuator.set_rollout(flag, percent(100.0)).await.unwrap(),
        state(true, 100.0)
    );
    assert_eq!(server.event_count(flag).await, events, "no new event");
    assert_eq!(server.environment(flag, "production").await, before);
}

#[tokio::test]
async fn the_kill_switch_turns_off_one_flag_in_one_environment_and_mistakes_fail_clearly() {
    let Some(server) = UnleashServer::start() else {
        return;
    };
    let (killed, other) = ("kill-target", "kill-bystander");
    server.create_flag(killed).await;
    server.create_flag(other).await;
    let production = actuator(&server, "production");
    let development = actuator(&server, "development");
    production.set_rollout(killed, percent(25.0)).await.unwrap();
    development
        .set_rollout(killed, percent(50.0))
        .await
        .unwrap();
    production.set_rollout(other, percent(10.0)).await.unwrap();

    assert_eq!(production.kill(killed).await.unwrap(), state(false, 0.0));

    let killed_production = server.environment(killed, "production").await;
    assert_eq!(killed_production["enabled"], json!(false));
    // The rollout is zeroed too, so switching it on by hand does not restore 25 %.
    assert_eq!(strategies(&killed_production), rollout_at("0"));
    let killed_development = server.environment(killed, "development").await;
    assert_eq!(killed_development["enabled"], json!(true));
    assert_eq!(strategies(&killed_development), rollout_at("50"));
    let bystander = server.environment(other, "production").await;
    assert_eq!(bystander["enabled"], json!(true));
    assert_eq!(strategies(&bystander), rollout_at("10"));
    assert_eq!(production.current(killed).await.unwrap(), state(false, 0.0));
    // Killing again changes nothing.
    let events = server.event_count(killed).await;
    assert_eq!(production.kill(killed).await.unwrap(), state(false, 0.0));
    assert_eq!(server.event_count(killed).await, events);

    // An unknown flag is FlagNotFound for every call.
    let missing = "no-such-flag";
    for error in [
        production.healthcheck(missing).await.unwrap_err(),
        production.current(missing).await.unwrap_err(),
        production
            .set_rollout(missing, percent(5.0))
            .await
            .unwrap_err(),
        production.kill(missing).await.unwrap_err(),
    ] {
        let ActuatorError::FlagNotFound { flag, store } = &error else {
            panic!("expected FlagNotFound, got {error:?}");
        };
        assert_eq!(flag, missing);
        assert!(store.contains("There's no feature named"), "{store}");
    }

    // A wrong token: a clear error that names where the token came from, not the token.
    let wrong = actuator_with_token(&server, "production", "*:*.wrong-token");
    let error = wrong.healthcheck(killed).await.unwrap_err();
    let message = error.to_string();
    assert!(matches!(error, ActuatorError::Invalid { .. }), "{error:?}");
    assert!(message.contains("401 Unauthorized"), "{message}");
    assert!(
        message.contains("Unleash refused the admin token from the test's token"),
        "{message}"
    );
    assert!(!message.contains("wrong-token"), "{message}");
    assert!(wrong.kill(killed).await.is_err());

    // An environment the project does not have.
    let staging = actuator(&server, "staging");
    let error = staging.healthcheck(killed).await.unwrap_err();
    assert!(
        error.to_string().contains(
            "has no environment \"staging\" (its environments: \"development\", \"production\")"
        ),
        "{error}"
    );

    // Another active strategy beside the rollout would give users the flag whatever the
    // percentage says: refused by name, and nothing is changed.
    let crowded = "crowded-flag";
    server.create_flag(crowded).await;
    let strategies_path = format!(
        "/api/admin/projects/default/features/{crowded}/environments/production/strategies"
    );
    server
        .admin(
            Method::POST,
            &strategies_path,
            Some(json!({"name": "flexibleRollout", "parameters": {"rollout": "5", "stickiness": "default", "groupId": crowded}})),
        )
        .await;
    server
        .admin(
            Method::POST,
            &strategies_path,
            Some(json!({"name": "default", "title": "everyone", "parameters": {}})),
        )
        .await;
    let before = server.environment(crowded, "production").await;
    let events = server.event_count(crowded).await;
    for error in [
        production.healthcheck(crowded).await.unwrap_err(),
        production
            .set_rollout(crowded, percent(25.0))
            .await
            .unwrap_err(),
    ] {
        let ActuatorError::Invalid { message, .. } = &error else {
            panic!("expected Invalid, got {error:?}");
        };
        assert!(message.contains("default \"everyone\" (id "), "{message}");
    }
    assert_eq!(server.environment(crowded, "production").await, before);
    assert_eq!(server.event_count(crowded).await, events);
    // The kill switch still works on it.
    assert!(!production.kill(crowded).await.unwrap().enabled);

    // Unleash stores whole percentages: 0.5 % is refused, not rounded.
    let error = production
        .set_rollout(other, percent(0.5))
        .await
        .unwrap_err();
    assert!(error.to_string().contains("whole percentages"), "{error}");
    assert_eq!(
        strategies(&server.environment(other, "production").await),
        rollout_at("10")
    );
}

/// The rollouts below run the web-service plan (1 → 5 → 25 → 50 → 100 %) on synthetic
/// series, look by look with no sleeping, and move real Unleash flags.
const T0: f64 = 1_699_999_200.0;

fn web_service_models(canary_latency_from: Option<f64>) -> BTreeMap<String, MetricModel> {
    let latency = Distribution::LogNormal {
        median: 0.2,
        sigma: 0.15,
    };
    let mut latency_model = MetricModel::same_samples(latency);
    if let Some(at) = canary_latency_from {
        latency_model = latency_model.canary_samples_from(
            at,
            Distribution::LogNormal {
                median: 0.3,
                sigma: 0.15,
            },
        );
    }
    BTreeMap::from([
        ("latency_p95".to_owned(), latency_model),
        ("p95_slo".to_owned(), MetricModel::same_samples(latency)),
        (
            "error_rate".to_owned(),
            MetricModel::same_counts(CountModel {
                events_per_step: 330.0,
                error_rate: 0.004,
            }),
        ),
        (
            "cpu_usage".to_owned(),
            MetricModel::same_samples(Distribution::Normal {
                mean: 0.55,
                sd: 0.04,
            }),
        ),
        (
            "memory_rss".to_owned(),
            MetricModel::same_samples(Distribution::Normal {
                mean: 512.0,
                sd: 8.0,
            }),
        ),
    ])
}

async fn run_rollout(
    actuator: Arc<dyn Actuator>,
    flag: &str,
    models: BTreeMap<String, MetricModel>,
    seed: u64,
) -> RolloutRunner {
    let path = root().join("analysis-profiles/web-service.toml");
    let profile = Arc::new(
        Profile::parse(
            &std::fs::read_to_string(&path).unwrap(),
            &path.display().to_string(),
        )
        .unwrap(),
    );
    let step = profile.plan.as_ref().unwrap().settings.step.seconds();
    let source = Arc::new(SyntheticSource::new(seed, step, models));
    let rollout = canary::scheduler::Rollout {
        profile,
        flag: flag.to_owned(),
        scopes: Scopes::from_matchers(r#"track="baseline""#, r#"track="canary""#),
        dry_run: false,
    };
    let mut runner = RolloutRunner::new(rollout, source, actuator).unwrap();
    runner.start(T0).await.unwrap();
    let max_looks = runner.plan().planned_looks() * 3;
    while runner.status() == RolloutStatus::Running && (runner.history().len() as u64) < max_looks {
        let due = runner.next_look_at();
        runner.take_look(due).await.unwrap();
    }
    runner
}

#[tokio::test]
async fn rollouts_through_the_runner_end_promoted_at_100_percent_or_rolled_back_with_the_flag_off()
{
    let Some(server) = UnleashServer::start() else {
        return;
    };
    let actuator: Arc<dyn Actuator> = Arc::new(actuator(&server, "production"));

    let healthy = "runner-healthy";
    server.create_flag(healthy).await;
    let runner = run_rollout(Arc::clone(&actuator), healthy, web_service_models(None), 11).await;
    assert_eq!(runner.status(), RolloutStatus::Promoted);
    let targets: Vec<f64> = runner
        .actuations()
        .iter()
        .map(|actuation| actuation.target.value())
        .collect();
    assert_eq!(targets, [1.0, 5.0, 25.0, 50.0, 100.0]);
    let production = server.environment(healthy, "production").await;
    assert_eq!(production["enabled"], json!(true));
    assert_eq!(strategies(&production), rollout_at("100"));

    // The canary's latency rises by half from its 14th minute: rolled back, flag off.
    let regressing = "runner-regressing";
    server.create_flag(regressing).await;
    let runner = run_rollout(
        Arc::clone(&actuator),
        regressing,
        web_service_models(Some(T0 + 14.0 * 60.0)),
        77,
    )
    .await;
    assert_eq!(runner.status(), RolloutStatus::RolledBack);
    let last = runner.actuations().last().unwrap();
    assert_eq!(last.action, "kill");
    assert_eq!(last.state, Some(state(false, 0.0)));
    let production = server.environment(regressing, "production").await;
    assert_eq!(production["enabled"], json!(false), "{production}");
    assert_eq!(strategies(&production), rollout_at("0"));
}
