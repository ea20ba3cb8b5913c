//! Issue 13, item 5 (retention): what the store keeps per look and per analysis, and
//! for how long. Web-service analyses run through a real worker over the replayed
//! recordings, on a SQLite file and on PostgreSQL (a schema of its own); their looks
//! are measured in the database as stored (compact) and as the JSON looks were stored
//! before, rewritten in place, which must still read back the same. The analysis report
//! renders the same from looks that went through a store. The retention task deletes
//! the finished analyses past their retention in batches and counts them, and a SQLite
//! file shrinks afterwards.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use canary::actuators::Actuator;
use canary::actuators::log_only::LogOnlyActuator;
use canary::report::analysis::AnalysisReport;
use canary::scheduler::{
    Clock, ManualClock, PruneOptions, Pruner, Registry, Worker, WorkerOptions,
};
use canary::sources::replay::ReplaySource;
use canary::store::{Analysis, AnalysisState, LookRecord, NewAnalysis, Store, StoreConfig};
use canary::telemetry::EngineMetrics;
use sqlx::{AssertSqlSafe, Row};
use uuid::Uuid;

use crate::helpers::root;
use crate::store::in_postgres_schema;

/// The replays' recordings start here; a rollout starts one lookback later.
const REPLAY_START: f64 = 1_700_000_000.0 + 360.0;

fn web_service_profile() -> String {
    std::fs::read_to_string(root().join("analysis-profiles/web-service.toml")).unwrap()
}

fn replay_registry() -> Arc<Registry> {
    let replays = root().join("fixtures/replay");
    Arc::new(
        Registry::new()
            .with_source(
                "healthy",
                Arc::new(ReplaySource::open(&replays.join("healthy")).unwrap()),
            )
            .with_source(
                "regression",
                Arc::new(ReplaySource::open(&replays.join("latency-regression")).unwrap()),
            )
            .with_actuator(
                "flags",
                Arc::new(LogOnlyActuator::new()) as Arc<dyn Actuator>,
            ),
    )
}

fn web_service_request(source: &str, flag: &str) -> NewAnalysis {
    NewAnalysis {
        profile_name: "web-service".to_owned(),
        profile_text: web_service_profile(),
        flag: flag.to_owned(),
        source: source.to_owned(),
        actuator: "flags".to_owned(),
        baseline_scope: r#"track="baseline""#.to_owned(),
        canary_scope: r#"track="canary""#.to_owned(),
        dry_run: false,
        start_at: None,
        owner: None,
        adopt: false,
        submit_key: None,
    }
}

/// Submits `healthy` healthy and `regressing` regressing web-service analyses at
/// `REPLAY_START` and steps one worker on a manual clock until all are final.
async fn run_web_service_analyses(
    store: &Arc<dyn Store>,
    healthy: usize,
    regressing: usize,
) -> Vec<Analysis> {
    let clock = Arc::new(ManualClock::new(REPLAY_START));
    let worker = Worker::new(
        Arc::clone(store),
        replay_registry(),
        clock.clone(),
        WorkerOptions {
            id: "size-worker".to_owned(),
            concurrency: 16,
            lease: Duration::from_secs(30),
            poll_interval: Duration::from_millis(20),
            rollback_retry: Duration::from_secs(30),
        },
    );
    let mut ids = Vec::new();
    let sources = std::iter::repeat_n("healthy", healthy)
        .chain(std::iter::repeat_n("regression", regressing));
    for (n, source) in sources.enumerate() {
        let analysis = store
            .create_analysis(
                web_service_request(source, &format!("flag-{n}")),
                REPLAY_START,
            )
            .await
            .unwrap();
        ids.push(analysis.id);
    }
    for _ in 0..200 {
        worker.try_execute_task().await.expect("step");
        let mut next_due = None::<f64>;
        for id in &ids {
            let analysis = store.get_analysis(*id).await.unwrap().unwrap();
            if analysis.state.is_claimable() {
                let due = analysis.next_look_at.unwrap_or(clock.now());
                next_due = Some(next_due.map_or(due, |d: f64| d.min(due)));
            }
        }
        match next_due {
            Some(due) => clock.set(due.max(clock.now())),
            None => break,
        }
    }
    let mut analyses = Vec::new();
    for id in ids {
        let analysis = store.get_analysis(id).await.unwrap().unwrap();
        assert!(analysis.state.is_done(), "{id}: {}", analysis.state);
        analyses.push(analysis);
    }
    analyses
}

/// Every look of every analysis, as the store returns them.
async fn all_looks(store: &dyn Store, analyses: &[Analysis]) -> Vec<Vec<LookRecord>> {
    let mut looks = Vec::new();
    for analysis in analyses {
        looks.push(store.list_looks(analysis.id).await.unwrap());
    }
    looks
}

/// The JSON reports of the analyses, as `GET /v1/analyses/{id}/report.json` builds them.
async fn reports(store: &dyn Store, analyses: &[Analysis]) -> Vec<String> {
    let mut reports = Vec::new();
    for analysis in analyses {
        let analysis = store.get_analysis(analysis.id).await.unwrap().unwrap();
        let looks = store.list_looks(analysis.id).await.unwrap();
        let actuations = store.list_actuations(analysis.id).await.unwrap();
        let audit = store.audit_log(analysis.id).await.unwrap();
        reports
            .push(AnalysisReport::from_analysis(&analysis, &looks, &actuations, &audit).to_json());
    }
    reports
}

/// Bytes measured after a vacuum: the looks as stored, and the whole database.
#[derive(Debug, Clone, Copy)]
struct Sizes {
    looks: u64,
    body_bytes: u64,
    looks_table_bytes: u64,
    database_bytes: u64,
}

impl Sizes {
    fn print(&self, label: &str, analyses: usize) {
        println!(
            "{label}: {} looks of {analyses} analyses; per look {} B of body, {} B of looks \
             table; per analysis {} B of database",
            self.looks,
            self.body_bytes / self.looks,
            self.looks_table_bytes / self.looks,
            self.database_bytes / analyses as u64,
        );
    }
}

async fn sqlite_pool(path: &Path) -> sqlx::SqlitePool {
    sqlx::sqlite::SqlitePoolOptions::new()
        .max_connections(1)
        .connect(&format!("sqlite:{}", path.display()))
        .await
        .unwrap()
}

async fn sqlite_sizes(path: &Path) -> Sizes {
    let pool = sqlite_pool(path).await;
    sqlx::query("VACUUM").execute(&pool).await.unwrap();
    sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
        .execute(&pool)
        .await
        .unwrap();
    let row = sqlx::query(
        "SELECT count(*) AS n, coalesce(sum(length(CAST(body AS BLOB)) \
         + coalesce(length(body_zlib), 0)), 0) AS bytes FROM looks",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    // The looks table's own pages, from SQLite's page statistics when compiled in, else
    // the bodies plus the other columns' share.
    let looks_table: Option<i64> =
        sqlx::query_scalar("SELECT sum(pgsize) FROM dbstat WHERE name = 'looks'")
            .fetch_one(&pool)
            .await
            .ok()
            .flatten();
    let page_size: i64 = sqlx::query_scalar("PRAGMA page_size")
        .fetch_one(&pool)
        .await
        .unwrap();
    let page_count: i64 = sqlx::query_scalar("PRAGMA page_count")
        .fetch_one(&pool)
        .await
        .unwrap();
    pool.close().await;
    let body_bytes = row.get::<i64, _>("bytes") as u64;
    Sizes {
        looks: row.get::<i64, _>("n") as u64,
        body_bytes,
        looks_table_bytes: looks_table.map_or(body_bytes, |b| b as u64),
        database_bytes: (page_size * page_count) as u64,
    }
}

async fn postgres_sizes(url: &str) -> Sizes {
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .connect(url)
        .await
        .unwrap();
    for table in ["analyses", "looks", "actuations", "audit_log"] {
        sqlx::query(AssertSqlSafe(format!("VACUUM FULL {table}")))
            .execute(&pool)
            .await
            .unwrap();
    }
    let row = sqlx::query(
        "SELECT count(*) AS n, coalesce(sum(pg_column_size(body) \
         + coalesce(pg_column_size(body_zlib), 0)), 0)::bigint AS bytes, \
         pg_total_relation_size('looks')::bigint AS looks_table, \
         (pg_total_relation_size('analyses') + pg_total_relation_size('looks') \
         + pg_total_relation_size('actuations') + pg_total_relation_size('audit_log'))::bigint \
         AS total FROM looks",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    pool.close().await;
    Sizes {
        looks: row.get::<i64, _>("n") as u64,
        body_bytes: row.get::<i64, _>("bytes") as u64,
        looks_table_bytes: row.get::<i64, _>("looks_table") as u64,
        database_bytes: row.get::<i64, _>("total") as u64,
    }
}

/// Rewrites every look as looks were stored before compact bodies: the JSON in `body`.
async fn rewrite_as_json_looks(
    sqlite: Option<&Path>,
    postgres: Option<&str>,
    looks: &[Vec<LookRecord>],
) {
    let looks = looks.iter().flatten();
    if let Some(path) = sqlite {
        let pool = sqlite_pool(path).await;
        for look in looks {
            sqlx::query(
                "UPDATE looks SET body = ?1, body_zlib = NULL WHERE analysis_id = ?2 AND look = ?3",
            )
            .bind(serde_json::to_string(&look.body).unwrap())
            .bind(look.analysis_id.to_string())
            .bind(look.look as i64)
            .execute(&pool)
            .await
            .unwrap();
        }
        pool.close().await;
    } else if let Some(url) = postgres {
        let pool = sqlx::postgres::PgPoolOptions::new()
            .max_connections(1)
            .connect(url)
            .await
            .unwrap();
        for look in looks {
            sqlx::query(
                "UPDATE looks SET body = $1, body_zlib = NULL WHERE analysis_id = $2 AND look = $3",
            )
            .bind(serde_json::to_value(&look.body).unwrap())
            .bind(look.analysis_id)
            .bind(look.look as i64)
            .execute(&pool)
            .await
            .unwrap();
        }
        pool.close().await;
    }
}

const HEALTHY: usize = 8;
const REGRESSING: usize = 2;
const ANALYSES: usize = HEALTHY + REGRESSING;

/// Runs the analyses, measures their looks compact and as JSON, checks that both read
/// back the same (bodies and reports), and returns (compact, JSON) sizes.
async fn measure(
    store: Arc<dyn Store>,
    reopen: StoreConfig,
    sqlite: Option<&Path>,
    postgres: Option<&str>,
) -> (Sizes, Sizes) {
    let analyses = run_web_service_analyses(&store, HEALTHY, REGRESSING).await;
    let states = analyses
        .iter()
        .filter(|a| a.state == AnalysisState::RolledBack)
        .count();
    assert_eq!(states, REGRESSING, "the regressions are rolled back");
    let looks = all_looks(store.as_ref(), &analyses).await;
    let compact_reports = reports(store.as_ref(), &analyses).await;
    store.close().await;
    let compact = match sqlite {
        Some(path) => sqlite_sizes(path).await,
        None => postgres_sizes(postgres.unwrap()).await,
    };

    rewrite_as_json_looks(sqlite, postgres, &looks).await;
    let json = match sqlite {
        Some(path) => sqlite_sizes(path).await,
        None => postgres_sizes(postgres.unwrap()).await,
    };
    // Looks stored before compact bodies read back as they were, into the same reports.
    let store = reopen.build().await.unwrap();
    assert_eq!(all_looks(store.as_ref(), &analyses).await, looks);
    // The same facts and numbers; only jsonb's own key order (PostgreSQL does not keep
    // the written one, compact bodies do) may differ in the sequential checks.
    let parsed = |reports: Vec<String>| {
        reports
            .iter()
            .map(|report| serde_json::from_str::<serde_json::Value>(report).unwrap())
            .collect::<Vec<_>>()
    };
    let json_reports = parsed(reports(store.as_ref(), &analyses).await);
    assert!(
        json_reports == parsed(compact_reports),
        "the reports differ"
    );
    store.close().await;
    assert_eq!(compact.looks, json.looks);
    (compact, json)
}

#[tokio::test]
async fn web_service_looks_on_sqlite_take_a_quarter_of_their_json_and_json_looks_still_read() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("canary.db");
    let url = path.to_str().unwrap().to_owned();
    let store = StoreConfig::new(&url).build().await.unwrap();
    let (compact, json) = measure(store, StoreConfig::new(&url), Some(&path), None).await;
    json.print("SQLite, looks as JSON (before)", ANALYSES);
    compact.print("SQLite, compact looks", ANALYSES);
    assert!(
        compact.body_bytes * 4 <= json.body_bytes,
        "{compact:?} against {json:?}"
    );
    assert!(
        compact.database_bytes * 5 <= json.database_bytes * 2,
        "{compact:?} against {json:?}"
    );
}

#[tokio::test]
async fn web_service_looks_on_postgres_take_less_than_half_their_jsonb_and_jsonb_looks_still_read()
{
    in_postgres_schema(|schema| async move {
        let store = schema.store(2).await;
        let reopen = StoreConfig {
            url: schema.url.clone(),
            max_connections: Some(2),
        };
        let (compact, json) = measure(store, reopen, None, Some(&schema.url)).await;
        json.print("PostgreSQL, looks as jsonb (before)", ANALYSES);
        compact.print("PostgreSQL, compact looks", ANALYSES);
        assert!(
            compact.body_bytes * 2 <= json.body_bytes,
            "{compact:?} against {json:?}"
        );
    })
    .await;
}

/// A store with `n` analyses finished at `at` (promoted) and one still running.
async fn finished_analyses(store: &Arc<dyn Store>, n: usize, at: f64) -> (Vec<Uuid>, Uuid) {
    let mut finished = Vec::new();
    for index in 0..n {
        let analysis = store
            .create_analysis(web_service_request("healthy", &format!("done-{index}")), at)
            .await
            .unwrap();
        finished.push(analysis.id);
    }
    let claimed = store
        .claim_due("w1", at, Duration::from_secs(30), 1000)
        .await
        .unwrap();
    assert_eq!(claimed.len(), n);
    for id in &finished {
        let update = canary::store::LookUpdate {
            look: None,
            state: AnalysisState::Promoted,
            current_stage: Some(4),
            traffic: Some(100.0),
            latest_verdict: Some(canary::domain::Verdict::Promote),
            reasons: vec!["every stage passed".to_owned()],
            runner_state: canary::store::Snapshot::None,
            next_look_at: None,
        };
        store.record_look(*id, "w1", 1, at, update).await.unwrap();
        store.release(*id, "w1").await.unwrap();
    }
    let running = store
        .create_analysis(web_service_request("healthy", "still-running"), at)
        .await
        .unwrap();
    (finished, running.id)
}

/// The retention task deletes every finished analysis past the retention, in batches,
/// counts them in the engine's metrics, and keeps the running one.
async fn the_retention_task_prunes_in_batches_and_counts(store: Arc<dyn Store>) {
    let finished_at = REPLAY_START;
    let (finished, running) = finished_analyses(&store, 7, finished_at).await;
    let clock = Arc::new(ManualClock::new(finished_at + 29.0 * 86_400.0));
    let metrics = Arc::new(EngineMetrics::new());
    let pruner = Pruner::new(
        Arc::clone(&store),
        clock.clone(),
        PruneOptions {
            retain: Duration::from_secs(30 * 86_400),
            every: Duration::from_secs(600),
            batch: 3,
        },
    )
    .report_to(Arc::clone(&metrics));
    assert_eq!(pruner.try_prune().await.unwrap(), 0, "29 days old: kept");
    clock.set(finished_at + 31.0 * 86_400.0);
    assert_eq!(pruner.try_prune().await.unwrap(), 7, "31 days old: deleted");
    assert_eq!(pruner.try_prune().await.unwrap(), 0);
    for id in finished {
        assert_eq!(store.get_analysis(id).await.unwrap(), None);
    }
    assert!(store.get_analysis(running).await.unwrap().is_some());
    assert!(
        metrics.encode().contains("canary_pruned_analyses_total 7"),
        "{}",
        metrics.encode()
    );
}

#[tokio::test]
async fn the_retention_task_prunes_a_sqlite_file_in_batches() {
    let dir = tempfile::tempdir().unwrap();
    let store = StoreConfig::new(dir.path().join("canary.db").to_str().unwrap())
        .build()
        .await
        .unwrap();
    the_retention_task_prunes_in_batches_and_counts(store).await;
}

#[tokio::test]
async fn the_retention_task_prunes_postgres_in_batches() {
    in_postgres_schema(|schema| async move {
        the_retention_task_prunes_in_batches_and_counts(schema.store(2).await).await;
    })
    .await;
}

/// Two instances pruning one PostgreSQL database at once delete each analysis once.
#[tokio::test]
async fn two_instances_pruning_postgres_at_once_delete_each_analysis_once() {
    in_postgres_schema(|schema| async move {
        let setup = schema.store(2).await;
        let (finished, running) = finished_analyses(&setup, 60, REPLAY_START).await;
        let later = REPLAY_START + 100.0 * 86_400.0;
        let mut tasks = Vec::new();
        for _ in 0..2 {
            let store = schema.store(2).await;
            let pruner = Pruner::new(
                store,
                Arc::new(ManualClock::new(later)),
                PruneOptions {
                    retain: Duration::from_secs(86_400),
                    every: Duration::from_secs(600),
                    batch: 5,
                },
            );
            tasks.push(tokio::spawn(
                async move { pruner.try_prune().await.unwrap() },
            ));
        }
        let mut deleted = 0;
        for task in tasks {
            deleted += task.await.unwrap();
        }
        assert_eq!(deleted, finished.len() as u64);
        assert!(setup.get_analysis(running).await.unwrap().is_some());
        assert_eq!(
            setup.counts_by_state().await.unwrap().values().sum::<u64>(),
            1
        );
    })
    .await;
}

/// A SQLite file created by this version hands the pages of pruned analyses back to the
/// file system (`auto_vacuum = INCREMENTAL`), without a manual `VACUUM`.
#[tokio::test]
async fn a_pruned_sqlite_file_shrinks() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("canary.db");
    let store = StoreConfig::new(path.to_str().unwrap())
        .build()
        .await
        .unwrap();
    let analyses = run_web_service_analyses(&store, 3, 0).await;
    let pages = async || {
        let pool = sqlite_pool(&path).await;
        let count: i64 = sqlx::query_scalar("PRAGMA page_count")
            .fetch_one(&pool)
            .await
            .unwrap();
        pool.close().await;
        count
    };
    let before = pages().await;
    let pruner = Pruner::new(
        Arc::clone(&store),
        Arc::new(ManualClock::new(REPLAY_START + 2.0 * 86_400.0)),
        PruneOptions::new(Duration::from_secs(86_400)),
    );
    assert_eq!(pruner.try_prune().await.unwrap(), analyses.len() as u64);
    let after = pages().await;
    println!("SQLite pages: {before} with 3 analyses, {after} after pruning them");
    assert!(after * 2 < before, "{before} pages, then {after}");
    store.close().await;
}

/// The committed report of the rolled-back fixture renders the same from its looks after
/// they went through each store (compacted, deflated and read back).
#[tokio::test]
async fn the_rolled_back_report_renders_the_same_from_looks_kept_by_either_store() {
    let expected =
        std::fs::read_to_string(root().join("fixtures/report/rolled-back.json")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let sqlite = StoreConfig::new(dir.path().join("canary.db").to_str().unwrap())
        .build()
        .await
        .unwrap();
    assert_eq!(report_through(sqlite).await, expected);
    in_postgres_schema(|schema| async move {
        let expected =
            std::fs::read_to_string(root().join("fixtures/report/rolled-back.json")).unwrap();
        // Byte for byte: a compact body keeps its key order, which jsonb did not.
        assert_eq!(report_through(schema.store(2).await).await, expected);
    })
    .await;
}

/// The rolled-back fixture's report, its looks written to `store` and read back.
async fn report_through(store: Arc<dyn Store>) -> String {
    let fixture = crate::report::rolled_back("checkout-v2");
    let stored = store
        .create_analysis(web_service_request("healthy", "checkout-v2"), REPLAY_START)
        .await
        .unwrap();
    store
        .claim_due("w1", REPLAY_START, Duration::from_secs(30), 10)
        .await
        .unwrap();
    for (version, look) in (1..).zip(&fixture.looks) {
        let update = canary::store::LookUpdate {
            look: Some(LookRecord {
                analysis_id: stored.id,
                ..look.clone()
            }),
            state: AnalysisState::Running,
            current_stage: Some(look.stage_index),
            traffic: None,
            latest_verdict: Some(look.verdict),
            reasons: Vec::new(),
            runner_state: canary::store::Snapshot::None,
            next_look_at: None,
        };
        store
            .record_look(stored.id, "w1", version, REPLAY_START, update)
            .await
            .unwrap();
    }
    let looks: Vec<LookRecord> = store
        .list_looks(stored.id)
        .await
        .unwrap()
        .into_iter()
        .map(|look| LookRecord {
            analysis_id: fixture.analysis.id,
            ..look
        })
        .collect();
    assert_eq!(looks, fixture.looks);
    store.close().await;
    AnalysisReport::from_analysis(
        &fixture.analysis,
        &looks,
        &fixture.actuations,
        &fixture.audit,
    )
    .to_json()
}

/// A malformed `retain_finished` stops `canary serve` before it listens, naming the key.
#[test]
fn canary_serve_refuses_a_bad_retain_finished_naming_the_key() {
    let directory = tempfile::tempdir().unwrap();
    let settings = directory.path().join("canary.toml");
    for bad in ["30 days", "0d", "never"] {
        std::fs::write(
            &settings,
            format!(
                "[server]\nbind = \"127.0.0.1:0\"\n[store]\nurl = \"sqlite::memory:\"\nretain_finished = {bad:?}\n"
            ),
        )
        .unwrap();
        let served = crate::helpers::canary(["serve", "--config", settings.to_str().unwrap()]);
        assert_eq!(served.code, 1, "{bad}: {}{}", served.stdout, served.stderr);
        assert!(
            served.stderr.contains("store.retain_finished"),
            "{bad}: {}",
            served.stderr
        );
        assert!(!served.stdout.contains("listening"), "{}", served.stdout);
    }
}
