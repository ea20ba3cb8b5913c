//! The web console's analyses list with 1,000 analyses in the store (issue 19: "the list
//! answers in < 100 ms"), over real HTTP on loopback to the router `canary serve` runs,
//! on a SQLite file (the embedded default).
//!
//! The store holds 1,000 analyses of the shipped `web-service` profile in a mix of
//! states, each with a 20 KB runner snapshot (what a running analysis keeps; the list
//! must not read it) and three reasons. Timed:
//! - `list_page`: `GET /`, the whole page (1,000 rows);
//! - `rows_changed`: `GET /console/rows`, the fragment the page polls, when it changed;
//! - `rows_unchanged`: the same with the `ETag` the page holds (`304`), which is what an
//!   open page costs the server each second while nothing moves.
//!
//! Not modelled: PostgreSQL (its overview is the same two statements), many pages
//! polling at once, and the browser's own work (measured separately by the console's
//! browser test, which prints the page's load and update times).

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use canary::api::{ApiState, router};
use canary::config::Settings;
use canary::store::{AnalysisState, LookUpdate, NewAnalysis, Snapshot, SqliteStore, Store};
use canary::telemetry::EngineMetrics;
use criterion::{Criterion, criterion_group, criterion_main};
use tokio::runtime::Runtime;

const ANALYSES: usize = 1000;

fn new_analysis(profile_text: &str, index: usize, now: f64) -> NewAnalysis {
    NewAnalysis {
        profile_name: "web-service".to_owned(),
        profile_text: profile_text.to_owned(),
        flag: format!("service-{:03}-flag-{index}", index % 137),
        source: "prod".to_owned(),
        actuator: "flags".to_owned(),
        baseline_scope: "track=\"baseline\"".to_owned(),
        canary_scope: "track=\"canary\"".to_owned(),
        dry_run: index.is_multiple_of(10),
        start_at: Some(now - 60.0),
        owner: None,
        adopt: false,
        submit_key: None,
    }
}

/// A SQLite store in `directory` with [`ANALYSES`] analyses in a mix of states.
async fn filled_store(directory: &Path) -> Arc<dyn Store> {
    let store: Arc<dyn Store> = Arc::new(
        SqliteStore::connect(&format!("sqlite:{}", directory.join("canary.db").display()))
            .await
            .expect("a SQLite store"),
    );
    let profile_text =
        std::fs::read_to_string("analysis-profiles/web-service.toml").expect("the profile");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    for index in 0..ANALYSES {
        store
            .create_analysis(
                new_analysis(&profile_text, index, now - 7200.0),
                now - 7200.0,
            )
            .await
            .unwrap();
    }
    let snapshot = Snapshot::from_stored(serde_json::json!({ "kept": "x".repeat(20_000) }));
    let states = [
        AnalysisState::Running,
        AnalysisState::Promoted,
        AnalysisState::RolledBack,
        AnalysisState::AwaitingReview,
        AnalysisState::Running,
        AnalysisState::Promoted,
    ];
    let mut written = 0;
    loop {
        let claimed = store
            .claim_due("bench", now - 3600.0, Duration::from_secs(3600), 1000)
            .await
            .unwrap();
        if claimed.is_empty() {
            break;
        }
        for analysis in claimed {
            let state = states[written % states.len()];
            store
                .record_look(
                    analysis.id,
                    "bench",
                    analysis.version,
                    now - 3600.0 + written as f64,
                    LookUpdate {
                        look: None,
                        state,
                        current_stage: Some(written % 5),
                        traffic: Some([1.0, 5.0, 25.0, 50.0, 100.0][written % 5]),
                        latest_verdict: Some(canary::domain::Verdict::Hold),
                        reasons: vec![
                            "latency_p95 (critical) inconclusive: 212 of 300 samples".to_owned(),
                            "error_rate passed".to_owned(),
                            "no trigger fired".to_owned(),
                        ],
                        runner_state: snapshot.clone(),
                        next_look_at: Some(now + 60.0),
                    },
                )
                .await
                .unwrap();
            written += 1;
        }
    }
    assert_eq!(written, ANALYSES);
    store
}

fn console(c: &mut Criterion) {
    let runtime = Runtime::new().unwrap();
    let directory = tempfile::tempdir().unwrap();
    let settings_file = directory.path().join("canary.toml");
    std::fs::write(
        &settings_file,
        "[profiles]\ndirectory = \"analysis-profiles\"\n[sources.prod]\nkind = \"replay\"\ndirectory = \"fixtures/replay/healthy\"\n[actuators.flags]\nkind = \"log-only\"\n",
    )
    .unwrap();
    let settings = Settings::load_from(Some(&settings_file), Some(Default::default())).unwrap();
    let address = runtime.block_on(async {
        let store = filled_store(directory.path()).await;
        let state = ApiState::new(store, &settings, Arc::new(EngineMetrics::new())).unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, router(state)).await.unwrap() });
        address
    });
    let http = reqwest::Client::new();
    let get = |path: &str, etag: Option<&str>| {
        let mut request = http.get(format!("{address}{path}"));
        if let Some(etag) = etag {
            request = request.header("if-none-match", etag);
        }
        async move {
            let response = request.send().await.unwrap();
            let status = response.status().as_u16();
            let etag = response
                .headers()
                .get("etag")
                .map(|value| value.to_str().unwrap().to_owned());
            let body = response.bytes().await.unwrap();
            (status, etag, body.len())
        }
    };
    let (status, etag, bytes) = runtime.block_on(get("/console/rows", None));
    assert_eq!(status, 200);
    assert!(bytes > 100_000, "1,000 rows: {bytes} bytes");
    let etag = etag.unwrap();

    let mut group = c.benchmark_group("console_1000_analyses");
    group.sample_size(20);
    group.bench_function("list_page", |b| {
        b.iter(|| {
            let (status, _, _) = runtime.block_on(get("/", None));
            assert_eq!(status, 200);
        })
    });
    group.bench_function("rows_changed", |b| {
        b.iter(|| {
            let (status, _, _) = runtime.block_on(get("/console/rows", None));
            assert_eq!(status, 200);
        })
    });
    group.bench_function("rows_unchanged", |b| {
        b.iter(|| {
            let (status, _, _) = runtime.block_on(get("/console/rows", Some(&etag)));
            assert_eq!(status, 304);
        })
    });
    group.finish();
}

criterion_group!(benches, console);
criterion_main!(benches);
