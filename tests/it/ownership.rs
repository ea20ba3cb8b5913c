//! One owner per flag (issue 13): the store keeps at most one active analysis per
//! (actuator target, flag) on every store, also when migration 0004 meets duplicates
//! already stored; two API servers on one database answer a same-flag double
//! submission with exactly one 201 and one 409 naming the owner; `canary submit` exits 4
//! on it. A rollout refuses a flag already beyond its first stage unless it adopts it,
//! and holds, without actuating, when someone else changed its flag between looks (a
//! real flagd file edited by the test); `canary run --adopt` does the same.

use std::borrow::Cow;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use canary::actuators::flagd_file::FlagdFileActuator;
use canary::actuators::{Actuator, ActuatorExt};
use canary::api::{ApiState, router};
use canary::config::Settings;
use canary::domain::{Percentage, Profile};
use canary::scheduler::{
    Decision, ManualClock, Registry, Rollout, RolloutRunner, RolloutStatus, RunError, Scopes,
    Worker, WorkerOptions,
};
use canary::sources::replay::ReplaySource;
use canary::store::{
    AnalysisState, AuditAction, LookUpdate, ManualAction, NewAnalysis, SqliteStore, Store,
    StoreConfig, StoreError,
};
use canary::telemetry::EngineMetrics;
use serde_json::{Value, json};
use sqlx::AssertSqlSafe;
use uuid::Uuid;

use crate::helpers::{canary, root};

const NOW: f64 = 1_700_000_000.0;
/// The replays' recordings start at NOW; a rollout starts one lookback later.
const REPLAY_START: f64 = NOW + 360.0;

fn request(flag: &str, owner: Option<&str>) -> NewAnalysis {
    NewAnalysis {
        profile_name: "p".to_owned(),
        profile_text: "name = \"p\"\n".to_owned(),
        flag: flag.to_owned(),
        source: "prod".to_owned(),
        actuator: "flags".to_owned(),
        baseline_scope: "track=\"baseline\"".to_owned(),
        canary_scope: "track=\"canary\"".to_owned(),
        dry_run: owner.is_none(),
        start_at: None,
        owner: owner.map(str::to_owned),
        adopt: false,
        submit_key: None,
    }
}

async fn the_store_keeps_one_active_analysis_per_owner_and_flag(store: Arc<dyn Store>) {
    let first = store
        .create_analysis(request("checkout", Some("flagd-file:/f.json")), NOW)
        .await
        .unwrap();
    match store
        .create_analysis(request("checkout", Some("flagd-file:/f.json")), NOW)
        .await
    {
        Err(StoreError::FlagOwned {
            owner, state, flag, ..
        }) => {
            assert_eq!(
                (owner, state, flag.as_str()),
                (first.id, AnalysisState::Pending, "checkout")
            );
        }
        other => panic!("a second owner of checkout: {other:?}"),
    }
    // Another flag, another flag store, a dry run: no conflict.
    for (flag, owner) in [
        ("search", Some("flagd-file:/f.json")),
        ("checkout", Some("flagd-file:/g.json")),
        ("checkout", None),
    ] {
        store
            .create_analysis(request(flag, owner), NOW)
            .await
            .unwrap();
    }
    // A paused analysis still owns its flag (its flag sits at a partial share).
    let paused = store
        .apply_manual_action(
            first.id,
            ManualAction {
                actor: "test".to_owned(),
                action: AuditAction::Pause,
                reason: "looking".to_owned(),
                new_state: AnalysisState::Paused,
                expected_version: first.version,
            },
            NOW,
        )
        .await
        .unwrap();
    assert!(matches!(
        store
            .create_analysis(request("checkout", Some("flagd-file:/f.json")), NOW)
            .await,
        Err(StoreError::FlagOwned {
            state: AnalysisState::Paused,
            ..
        })
    ));
    // Once it is done, the flag is free.
    let resumed = store
        .apply_manual_action(
            first.id,
            ManualAction {
                actor: "test".to_owned(),
                action: AuditAction::Resume,
                reason: "go".to_owned(),
                new_state: AnalysisState::Pending,
                expected_version: paused.version,
            },
            NOW,
        )
        .await
        .unwrap();
    let claimed = store
        .claim_due("w", NOW, Duration::from_secs(30), 100)
        .await
        .unwrap();
    assert!(claimed.iter().any(|a| a.id == first.id));
    store
        .record_look(
            first.id,
            "w",
            resumed.version,
            NOW,
            LookUpdate {
                look: None,
                state: AnalysisState::Promoted,
                current_stage: Some(0),
                traffic: Some(100.0),
                latest_verdict: Some(canary::domain::Verdict::Promote),
                reasons: vec!["done".to_owned()],
                runner_state: canary::store::Snapshot::None,
                next_look_at: None,
            },
        )
        .await
        .unwrap();
    let next = store
        .create_analysis(request("checkout", Some("flagd-file:/f.json")), NOW)
        .await
        .unwrap();
    assert_eq!(next.owner.as_deref(), Some("flagd-file:/f.json"));
}

#[tokio::test]
async fn one_owner_per_flag_on_sqlite_in_memory() {
    let store = StoreConfig::new("sqlite::memory:").build().await.unwrap();
    the_store_keeps_one_active_analysis_per_owner_and_flag(store).await;
}

#[tokio::test]
async fn one_owner_per_flag_on_a_sqlite_file() {
    let directory = tempfile::tempdir().unwrap();
    let store = StoreConfig::new(directory.path().join("c.db").to_str().unwrap())
        .build()
        .await
        .unwrap();
    the_store_keeps_one_active_analysis_per_owner_and_flag(store).await;
}

#[tokio::test]
async fn one_owner_per_flag_on_postgres() {
    crate::store::in_postgres_schema(|schema| async move {
        let store = schema.store(4).await;
        the_store_keeps_one_active_analysis_per_owner_and_flag(store.clone()).await;
        store.close().await;
    })
    .await;
}

/// Rows as a store before migration 0004 could hold them: two active analyses on flag
/// `f` (running, pending), two on `g` (running, rollback_failed), a promoted one on `f`
/// and a dry run on `f`. `(id, flag, state, dry_run)`.
fn duplicates() -> Vec<(Uuid, &'static str, &'static str, bool)> {
    [
        ("f", "running", false),
        ("f", "pending", false),
        ("g", "running", false),
        ("g", "rollback_failed", false),
        ("f", "promoted", false),
        ("f", "running", true),
    ]
    .into_iter()
    .map(|(flag, state, dry)| (Uuid::new_v4(), flag, state, dry))
    .collect()
}

fn insert_sql(rows: &[(Uuid, &str, &str, bool)], postgres: bool) -> Vec<String> {
    rows.iter()
        .enumerate()
        .map(|(index, (id, flag, state, dry))| {
            let (reasons, dry) = if postgres {
                ("'{\"first reason\"}'", dry.to_string())
            } else {
                ("'[\"first reason\"]'", u8::from(*dry).to_string())
            };
            format!(
                "INSERT INTO analyses (id, profile_name, profile_text, flag, source, actuator, \
                 baseline_scope, canary_scope, dry_run, state, reasons, runner_state, version, \
                 created_at_ms, updated_at_ms) VALUES ('{id}', 'p', 'name = \"p\"', '{flag}', \
                 'prod', 'flags', 'b', 'c', {dry}, '{state}', {reasons}, 'null', 1, {at}, {at})",
                at = 1_700_000_000_000_i64 + index as i64
            )
        })
        .collect()
}

/// After the migration: one owner kept per flag (rollback_failed before running, running
/// before pending), the others `failed` naming it, every row and reason still there.
async fn check_migrated(store: &dyn Store, rows: &[(Uuid, &str, &str, bool)]) {
    let expected = [
        ("running", None),
        ("failed", Some(rows[0].0)),
        ("failed", Some(rows[3].0)),
        ("rollback_failed", None),
        ("promoted", None),
        ("running", None),
    ];
    for ((id, flag, _, _), (state, keeper)) in rows.iter().zip(expected) {
        let analysis = store
            .get_analysis(*id)
            .await
            .unwrap()
            .expect("no row is lost");
        assert_eq!(analysis.state.as_str(), state, "{flag} {id}");
        match keeper {
            Some(keeper) => {
                assert_eq!(analysis.reasons.len(), 2, "{:?}", analysis.reasons);
                assert!(
                    analysis.reasons[0].contains(&format!("analysis {keeper} kept flag {flag}")),
                    "{:?}",
                    analysis.reasons
                );
                assert_eq!(analysis.reasons[1], "first reason");
            }
            None => assert_eq!(analysis.reasons, ["first reason"]),
        }
    }
    // The kept owner now refuses a newcomer on `f`.
    let mut newcomer = request("f", Some("actuator:flags"));
    newcomer.dry_run = false;
    assert!(matches!(
        store.create_analysis(newcomer, NOW).await,
        Err(StoreError::FlagOwned { owner, .. }) if owner == rows[0].0
    ));
}

#[tokio::test]
async fn migration_0004_on_a_sqlite_file_with_duplicate_owners_keeps_every_row() {
    let directory = tempfile::tempdir().unwrap();
    let path = directory.path().join("old.db");
    let url = format!("sqlite:{}?mode=rwc", path.display());
    let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
    let mut migrator = sqlx::migrate!("src/store/migrations/sqlite");
    migrator.migrations = Cow::Owned(
        migrator
            .migrations
            .iter()
            .filter(|m| m.version < 4)
            .cloned()
            .collect(),
    );
    migrator.run(&pool).await.unwrap();
    let rows = duplicates();
    for sql in insert_sql(&rows, false) {
        sqlx::query(AssertSqlSafe(sql))
            .execute(&pool)
            .await
            .unwrap();
    }
    pool.close().await;
    let store = SqliteStore::connect(path.to_str().unwrap()).await.unwrap();
    check_migrated(&store, &rows).await;
}

#[tokio::test]
async fn migration_0004_on_postgres_with_duplicate_owners_keeps_every_row() {
    crate::store::in_postgres_schema(|schema| async move {
        let pool = sqlx::postgres::PgPoolOptions::new()
            .max_connections(1)
            .connect(&schema.url)
            .await
            .unwrap();
        let mut migrator = sqlx::migrate!("src/store/migrations/postgres");
        migrator.migrations = Cow::Owned(
            migrator
                .migrations
                .iter()
                .filter(|m| m.version < 4)
                .cloned()
                .collect(),
        );
        migrator.run(&pool).await.unwrap();
        let rows = duplicates();
        for sql in insert_sql(&rows, true) {
            sqlx::query(AssertSqlSafe(sql))
                .execute(&pool)
                .await
                .unwrap();
        }
        pool.close().await;
        let store = schema.store(2).await;
        check_migrated(store.as_ref(), &rows).await;
        store.close().await;
    })
    .await;
}

/// A flag file with `flags` (each enabled, off by default, no targeting).
pub(crate) fn write_flag_file(path: &Path, flags: impl IntoIterator<Item = String>) {
    let flags: serde_json::Map<String, Value> = flags
        .into_iter()
        .map(|flag| {
            (
                flag,
                json!({"state": "ENABLED", "variants": {"on": true, "off": false}, "defaultVariant": "off"}),
            )
        })
        .collect();
    std::fs::write(
        path,
        serde_json::to_string_pretty(&json!({ "flags": flags })).unwrap(),
    )
    .unwrap();
}

/// An API server in process on `store`, with the replay source `prod` and two actuator
/// names for one flag file, the second spelling its path with `sub/..`.
async fn spawn_api(store: Arc<dyn Store>, directory: &Path) -> String {
    std::fs::create_dir_all(directory.join("sub")).unwrap();
    let settings_text = format!(
        "[profiles]\ndirectory = {profiles:?}\n\
         [sources.prod]\nkind = \"replay\"\ndirectory = \"fixtures/replay/healthy\"\n\
         [actuators.flags]\nkind = \"flagd-file\"\npath = {flags:?}\n\
         [actuators.flags-again]\nkind = \"flagd-file\"\npath = {again:?}\n",
        profiles = root().join("analysis-profiles").display().to_string(),
        flags = directory.join("flags.json").display().to_string(),
        again = directory.join("sub/../flags.json").display().to_string(),
    );
    let settings_file = directory.join(format!("canary-{}.toml", Uuid::new_v4()));
    std::fs::write(&settings_file, settings_text).unwrap();
    let settings = Settings::load_from(Some(&settings_file), Some(Default::default())).unwrap();
    let state = ApiState::new(store, &settings, Arc::new(EngineMetrics::new())).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router(state)).await.unwrap() });
    address
}

/// A start time thirty days ahead: the analysis stays pending (and owns its flag) for the
/// whole test, and it is within the API's limit of a year ahead.
fn pending_start() -> f64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    (now + 30.0 * 86_400.0).floor()
}

async fn post(http: &reqwest::Client, server: &str, flag: &str, actuator: &str) -> (u16, Value) {
    let response = http
        .post(format!("{server}/v1/analyses"))
        .json(&json!({
            "profile": "web-service",
            "flag": flag,
            "source": "prod",
            "actuator": actuator,
            // Far enough ahead that no worker starts it, within the API's one-year limit.
            "start_at": pending_start(),
        }))
        .send()
        .await
        .unwrap();
    (response.status().as_u16(), response.json().await.unwrap())
}

/// Each of `rounds` flags is submitted to both servers at once: exactly one 201, and a
/// 409 `flag_owned` naming the 201's analysis and its state.
async fn double_submissions(first: &str, second: &str, directory: &Path, rounds: usize) {
    write_flag_file(
        &directory.join("flags.json"),
        (0..rounds).map(|i| format!("flag-{i}")),
    );
    let http = reqwest::Client::new();
    for round in 0..rounds {
        let flag = format!("flag-{round}");
        let (a, b) = tokio::join!(
            post(&http, first, &flag, "flags"),
            post(&http, second, &flag, "flags-again")
        );
        let mut answers = [a, b];
        answers.sort_by_key(|(status, _)| *status);
        let [(created, owner), (refused, error)] = answers;
        assert_eq!((created, refused), (201, 409), "{flag}: {owner} {error}");
        assert_eq!(error["error"]["code"], "flag_owned", "{error}");
        assert_eq!(error["error"]["field"], "flag", "{error}");
        let message = error["error"]["message"].as_str().unwrap();
        assert!(
            message.contains(owner["id"].as_str().unwrap()) && message.contains("pending"),
            "{message}"
        );
    }
    // A dry run owns nothing.
    let http = reqwest::Client::new();
    let response = http
        .post(format!("{first}/v1/analyses"))
        .json(
            &json!({"profile": "web-service", "flag": "flag-0", "source": "prod",
                      "actuator": "flags", "dry_run": true}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 201);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_same_flag_double_submission_to_two_servers_on_postgres_gets_one_201_and_one_409() {
    crate::store::in_postgres_schema(|schema| async move {
        let directory = tempfile::tempdir().unwrap();
        let (one, two) = (schema.store(4).await, schema.store(4).await);
        let first = spawn_api(one, directory.path()).await;
        let second = spawn_api(two, directory.path()).await;
        double_submissions(&first, &second, directory.path(), 20).await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_same_flag_double_submission_on_sqlite_gets_one_201_and_one_409() {
    let directory = tempfile::tempdir().unwrap();
    let database = directory.path().join("canary.db");
    let url = format!("sqlite:{}", database.display());
    let one: Arc<dyn Store> = Arc::new(SqliteStore::connect(&url).await.unwrap());
    let first = spawn_api(Arc::clone(&one), directory.path()).await;
    let second = spawn_api(one, directory.path()).await;
    double_submissions(&first, &second, directory.path(), 20).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn canary_submit_on_an_owned_flag_exits_4_naming_the_owner() {
    let directory = tempfile::tempdir().unwrap();
    write_flag_file(
        &directory.path().join("flags.json"),
        ["checkout".to_owned()],
    );
    let store: Arc<dyn Store> = Arc::new(
        SqliteStore::connect(&format!(
            "sqlite:{}",
            directory.path().join("c.db").display()
        ))
        .await
        .unwrap(),
    );
    let server = spawn_api(store, directory.path()).await;
    let start_at = pending_start().to_string();
    let submit = |server: String| {
        let start_at = start_at.clone();
        tokio::task::spawn_blocking(move || {
            canary([
                "submit",
                "--server",
                &server,
                "--profile",
                "web-service",
                "--flag",
                "checkout",
                "--source",
                "prod",
                "--actuator",
                "flags",
                "--start-at",
                &start_at,
            ])
        })
    };
    let first = submit(server.clone()).await.unwrap();
    assert_eq!(first.code, 0, "{}", first.stderr);
    let owner = first.stdout.trim().to_owned();
    let second = submit(server).await.unwrap();
    assert_eq!(second.code, 4, "{}\n{}", second.stdout, second.stderr);
    assert!(second.stdout.is_empty(), "{}", second.stdout);
    assert!(
        second.stderr.contains("flag_owned") && second.stderr.contains(&owner),
        "{}",
        second.stderr
    );
}

fn web_service() -> Arc<Profile> {
    let text = std::fs::read_to_string(root().join("analysis-profiles/web-service.toml")).unwrap();
    Arc::new(Profile::parse(&text, "web-service.toml").unwrap())
}

/// A runner on the healthy replay moving `flag` in the flag file at `path`.
fn runner(path: &Path, flag: &str, adopt: bool) -> RolloutRunner {
    let source = Arc::new(ReplaySource::open(&root().join("fixtures/replay/healthy")).unwrap());
    let actuator: Arc<dyn Actuator> = Arc::new(FlagdFileActuator::new(path));
    let rollout = Rollout {
        profile: web_service(),
        flag: flag.to_owned(),
        scopes: Scopes::from_matchers(r#"track="baseline""#, r#"track="canary""#),
        dry_run: false,
    };
    RolloutRunner::new(rollout, source, actuator)
        .unwrap()
        .with_adopt(adopt)
}

async fn flag_file_at(path: &Path, flag: &str, share: f64) -> PathBuf {
    write_flag_file(path, [flag.to_owned()]);
    FlagdFileActuator::new(path)
        .set_rollout(flag, Percentage::parse(share).unwrap())
        .await
        .unwrap();
    path.to_path_buf()
}

#[tokio::test]
async fn a_flag_beyond_the_first_stage_is_refused_untouched_unless_adopted() {
    let directory = tempfile::tempdir().unwrap();
    let path = flag_file_at(&directory.path().join("flags.json"), "checkout", 100.0).await;
    let before = std::fs::read(&path).unwrap();
    let mut refused = runner(&path, "checkout", false);
    match refused.start(REPLAY_START).await {
        Err(RunError::Config(message)) => {
            assert!(message.contains("already enabled at 100%"), "{message}");
            assert!(message.contains("first stage 1% at 1%"), "{message}");
            assert!(message.contains("adopt"), "{message}");
        }
        other => panic!("a flag at 100 % must be refused: {other:?}"),
    }
    assert_eq!(
        std::fs::read(&path).unwrap(),
        before,
        "the flag is untouched"
    );
    assert!(refused.actuations().is_empty());
}

#[tokio::test]
async fn an_adopted_flag_starts_at_the_stage_below_its_share_and_is_never_lowered() {
    let directory = tempfile::tempdir().unwrap();
    let path = flag_file_at(&directory.path().join("flags.json"), "checkout", 30.0).await;
    let before = std::fs::read(&path).unwrap();
    let mut adopted = runner(&path, "checkout", true);
    adopted.start(REPLAY_START).await.unwrap();
    assert_eq!(
        std::fs::read(&path).unwrap(),
        before,
        "adopting writes nothing"
    );
    assert_eq!(adopted.stage().name, "25%");
    assert_eq!(adopted.traffic().value(), 30.0);
    while adopted.status() == RolloutStatus::Running {
        let due = adopted.next_look_at();
        adopted.take_look(due).await.unwrap();
    }
    assert_eq!(adopted.status(), RolloutStatus::Promoted);
    let targets: Vec<f64> = adopted
        .actuations()
        .iter()
        .map(|a| a.target.value())
        .collect();
    assert_eq!(targets, [50.0, 100.0], "never below 30 %");
    let state = FlagdFileActuator::new(&path)
        .current("checkout")
        .await
        .unwrap();
    assert!(state.enabled && state.rollout.value() == 100.0, "{state:?}");
}

#[tokio::test]
async fn a_flag_changed_by_someone_else_between_looks_holds_the_rollout_without_moving_it() {
    let directory = tempfile::tempdir().unwrap();
    let path = directory.path().join("flags.json");
    write_flag_file(&path, ["checkout".to_owned(), "other".to_owned()]);
    let mut rollout = runner(&path, "checkout", false);
    rollout.start(REPLAY_START).await.unwrap();
    let first = rollout.next_look_at();
    rollout.take_look(first).await.unwrap();
    // Someone else (another tool, a person) sets the flag to 50 % in the file.
    let person = FlagdFileActuator::new(&path);
    person
        .set_rollout("checkout", Percentage::parse(50.0).unwrap())
        .await
        .unwrap();
    let changes_before = rollout.actuations().len();
    for _ in 0..4 {
        let due = rollout.next_look_at();
        let look = rollout.take_look(due).await.unwrap();
        assert_eq!(look.decision, Decision::Hold, "{:?}", look.reasons);
        assert!(
            look.reasons[0].contains("changed outside this rollout")
                && look.reasons[0].contains("expected enabled at 1%, found enabled at 50%"),
            "{:?}",
            look.reasons
        );
    }
    assert_eq!(
        rollout.actuations().len(),
        changes_before,
        "nothing actuated over it"
    );
    let state = person.current("checkout").await.unwrap();
    assert_eq!(state.rollout.value(), 50.0, "the person's change stands");
    // Put back as the rollout left it, the rollout goes on.
    person
        .set_rollout("checkout", Percentage::parse(1.0).unwrap())
        .await
        .unwrap();
    let due = rollout.next_look_at();
    let look = rollout.take_look(due).await.unwrap();
    assert_ne!(look.decision, Decision::Hold, "{:?}", look.reasons);
}

#[test]
fn canary_run_refuses_a_flag_beyond_the_first_stage_and_adopts_it_with_adopt() {
    let directory = tempfile::tempdir().unwrap();
    let path = directory.path().join("flags.json");
    tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(flag_file_at(&path, "checkout", 100.0));
    let before = std::fs::read(&path).unwrap();
    let run = |extra: &[&str]| {
        let mut args = vec![
            "run".to_owned(),
            "--profile".to_owned(),
            "analysis-profiles/web-service.toml".to_owned(),
            "--source".to_owned(),
            "replay=fixtures/replay/healthy".to_owned(),
            "--flag".to_owned(),
            "checkout".to_owned(),
            "--actuator".to_owned(),
            format!("flagd-file={}", path.display()),
            "--speed".to_owned(),
            "100000".to_owned(),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        canary(args)
    };
    let refused = run(&[]);
    assert_eq!(refused.code, 1, "{}\n{}", refused.stdout, refused.stderr);
    assert!(
        refused.stderr.contains("already enabled at 100%") && refused.stderr.contains("--adopt"),
        "{}",
        refused.stderr
    );
    assert_eq!(std::fs::read(&path).unwrap(), before);
    let adopted = run(&["--adopt"]);
    assert_eq!(adopted.code, 0, "{}\n{}", adopted.stdout, adopted.stderr);
}

#[tokio::test]
async fn a_served_analysis_on_a_flag_beyond_its_first_stage_fails_untouched_unless_it_adopts() {
    let directory = tempfile::tempdir().unwrap();
    let path = directory.path().join("flags.json");
    write_flag_file(&path, ["checkout".to_owned(), "search".to_owned()]);
    let file = FlagdFileActuator::new(&path);
    file.set_rollout("checkout", Percentage::FULL)
        .await
        .unwrap();
    file.set_rollout("search", Percentage::parse(30.0).unwrap())
        .await
        .unwrap();
    let before = std::fs::read(&path).unwrap();
    let store = StoreConfig::new("sqlite::memory:").build().await.unwrap();
    let registry = Registry::new()
        .with_source(
            "prod",
            Arc::new(ReplaySource::open(&root().join("fixtures/replay/healthy")).unwrap()),
        )
        .with_actuator("flags", Arc::new(FlagdFileActuator::new(&path)));
    let clock = Arc::new(ManualClock::new(REPLAY_START));
    let worker = Worker::new(
        Arc::clone(&store),
        Arc::new(registry),
        clock,
        WorkerOptions {
            id: "w".to_owned(),
            concurrency: 2,
            lease: Duration::from_secs(30),
            poll_interval: Duration::from_millis(20),
            rollback_retry: Duration::from_secs(30),
        },
    );
    let profile_text =
        std::fs::read_to_string(root().join("analysis-profiles/web-service.toml")).unwrap();
    let submit = |flag: &str, adopt: bool| NewAnalysis {
        profile_name: "web-service".to_owned(),
        profile_text: profile_text.clone(),
        dry_run: false,
        start_at: Some(REPLAY_START),
        owner: Some("flagd-file:test".to_owned()),
        adopt,
        ..request(flag, None)
    };
    let refused = store
        .create_analysis(submit("checkout", false), REPLAY_START)
        .await
        .unwrap();
    let adopted = store
        .create_analysis(submit("search", true), REPLAY_START)
        .await
        .unwrap();
    assert_eq!(worker.try_execute_task().await.unwrap(), 2);
    let refused = store.get_analysis(refused.id).await.unwrap().unwrap();
    assert_eq!(refused.state, AnalysisState::Failed);
    assert!(
        refused.reasons[0].contains("already enabled at 100%")
            && refused.reasons[0].contains("first stage 1% at 1%"),
        "{:?}",
        refused.reasons
    );
    let adopted = store.get_analysis(adopted.id).await.unwrap().unwrap();
    assert_eq!(
        adopted.state,
        AnalysisState::Running,
        "{:?}",
        adopted.reasons
    );
    assert_eq!(adopted.current_stage, Some(2));
    assert_eq!(adopted.traffic, Some(30.0));
    assert!(
        adopted.reasons[0].contains("adopted at 30%"),
        "{:?}",
        adopted.reasons
    );
    assert_eq!(std::fs::read(&path).unwrap(), before, "no flag was touched");
}
