//! `canary serve` as a real process: settings from a file, the API and the workers on a
//! SQLite file, analyses submitted and waited for with `canary submit --wait`, flags
//! moved in a real flag file, and a graceful stop on SIGTERM; a process killed with
//! SIGKILL mid-rollout and started again on its SQLite file; and two processes sharing
//! one PostgreSQL database, one of them killed with SIGKILL mid-way.

use std::path::Path;
use std::process::Command;

use crate::helpers::canary;

use crate::helpers::REPLAY_START;

type Server = crate::helpers::ServeProcess;

/// A `canary serve` process with its settings in `directory/settings_name`, on `store`.
fn start_server_on(directory: &Path, store: &str, settings_name: &str, lease: &str) -> Server {
    start_server_with(directory, store, settings_name, lease, "")
}

/// [`start_server_on`] with `extra` appended to the settings file.
fn start_server_with(
    directory: &Path,
    store: &str,
    settings_name: &str,
    lease: &str,
    extra: &str,
) -> Server {
    crate::helpers::serve_on_replays(
        directory,
        store,
        settings_name,
        lease,
        extra,
        &[
            // Where notifications and webhooks link to (settings can come from variables).
            ("CANARY_SERVER__PUBLIC_URL", "https://canary.example.com"),
            // The HMAC secret of the webhook actuator some tests declare.
            ("CANARY_TEST_WEBHOOK_SECRET", WEBHOOK_SECRET),
        ],
    )
}

fn submit_and_wait(server: &Server, source: &str, flag: &str) -> crate::helpers::Run {
    canary([
        "submit",
        "--server",
        &server.url,
        "--profile",
        "web-service",
        "--flag",
        flag,
        "--source",
        source,
        "--actuator",
        "flags",
        "--start-at",
        &REPLAY_START.to_string(),
        "--wait",
        "120s",
        "--token",
        "test-token",
    ])
}

#[test]
fn canary_serve_runs_submitted_rollouts_to_their_verdicts_and_stops_gracefully() {
    let directory = tempfile::tempdir().unwrap();
    // A Slack-style channel that the people on call read.
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (channel, messages) = runtime.block_on(crate::notify::slack_receiver());
    let server = start_server_with(
        directory.path(),
        &format!("sqlite:{}", directory.path().join("canary.db").display()),
        "canary.toml",
        "10s",
        &format!(
            "[notifiers.oncall]\nkind = \"slack\"\nurl = \"http://{channel}/services/T000/B000/XXXX\"\n"
        ),
    );

    let promoted = submit_and_wait(&server, "healthy", "checkout-v2");
    assert_eq!(promoted.code, 0, "{}\n{}", promoted.stdout, promoted.stderr);
    let rolled_back = submit_and_wait(&server, "regression", "search-v3");
    assert_eq!(
        rolled_back.code, 3,
        "{}\n{}",
        rolled_back.stdout, rolled_back.stderr
    );

    let flags: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(directory.path().join("flags.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(flags["flags"]["checkout-v2"]["state"], "ENABLED");
    assert_eq!(
        flags["flags"]["checkout-v2"]["targeting"]["fractional"][1],
        serde_json::json!(["on", 100])
    );
    assert_eq!(flags["flags"]["search-v3"]["state"], "DISABLED");

    // The rolled-back analysis, read back through the API: every look and flag change.
    let id = rolled_back.stdout.lines().next().unwrap().trim().to_owned();
    let detail: serde_json::Value =
        reqwest::blocking_get(&format!("{}/v1/analyses/{id}", server.url));
    assert_eq!(detail["state"], "rolled_back", "{detail:#}");

    // The engine's own metrics: analyses by state, and the verdicts the workers reached.
    let metrics = tokio::runtime::Runtime::new().unwrap().block_on(async {
        ::reqwest::get(format!("{}/metrics", server.url))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    });
    assert!(
        metrics.contains(r#"canary_analyses{state="promoted"} 1"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"canary_verdicts_total{outcome="rollback"}"#),
        "{metrics}"
    );
    assert!(
        metrics.contains("canary_interval_lateness_seconds"),
        "{metrics}"
    );
    // Every fetch and flag change, timed under the names the settings give.
    for line in [
        r#"canary_source_request_duration_seconds_count{source="healthy"}"#,
        r#"canary_source_request_duration_seconds_count{source="regression"}"#,
        r#"canary_actuator_request_duration_seconds_count{actuator="flags"}"#,
    ] {
        assert!(metrics.contains(line), "{line} missing from {metrics}");
    }

    // The channel heard of both: the rollback as critical, the promotion as info.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while messages.lock().unwrap().len() < 2 && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let texts: Vec<String> = messages
        .lock()
        .unwrap()
        .iter()
        .map(|message| message.to_string())
        .collect();
    assert_eq!(texts.len(), 2, "{texts:#?}");
    assert!(
        texts
            .iter()
            .any(|t| t.contains(":rotating_light:") && t.contains("Rolled back search-v3")),
        "{texts:#?}"
    );
    assert!(
        texts.iter().any(|t| t.contains("Promoted checkout-v2")),
        "{texts:#?}"
    );
    assert!(
        texts
            .iter()
            .any(|t| t.contains(&format!("https://canary.example.com/v1/analyses/{id}"))),
        "the rollback links to its analysis: {texts:#?}"
    );
    // ... and counts them (just after the channel answered each).
    let sent = r#"canary_notifications_total{notifier="oncall",outcome="sent"} 2"#;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let metrics = loop {
        let metrics = runtime.block_on(async {
            ::reqwest::get(format!("{}/metrics", server.url))
                .await
                .unwrap()
                .text()
                .await
                .unwrap()
        });
        if metrics.contains(sent) || std::time::Instant::now() > deadline {
            break metrics;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    assert!(metrics.contains(sent), "{metrics}");

    // SIGTERM: the server finishes and exits 0.
    let pid = server.child.id();
    let status = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let mut server = server;
    let exit = server.child.wait().unwrap();
    assert!(
        exit.success(),
        "canary serve exits cleanly on SIGTERM: {exit:?}"
    );
}

/// A tiny blocking GET for the test, on a fresh runtime.
mod reqwest {
    pub fn blocking_get(url: &str) -> serde_json::Value {
        tokio::runtime::Runtime::new()
            .unwrap()
            .block_on(async { ::reqwest::get(url).await.unwrap().json().await.unwrap() })
    }
}

/// Two `canary serve` processes share one PostgreSQL database: 200 analyses submitted to
/// both are all carried out, and when one process is killed with SIGKILL in the middle,
/// the other finishes its analyses once their leases expire — none lost, no look judged
/// twice, no flag change recorded twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_serve_processes_on_postgres_finish_200_analyses_even_when_one_is_killed() {
    use canary::store::StoreConfig;

    let schema = crate::store::PostgresSchema::create().await;
    let directory = tempfile::tempdir().unwrap();
    let mut first = start_server_on(directory.path(), &schema.url, "first.toml", "3s");
    let second = start_server_on(directory.path(), &schema.url, "second.toml", "3s");
    let ids = submit_many(&[&first, &second], 200).await;
    let store = StoreConfig {
        url: schema.url.clone(),
        max_connections: Some(2),
    }
    .build()
    .await
    .unwrap();
    // Let both work for a moment, then kill the first without any chance to clean up,
    // while analyses are still in flight.
    tokio::time::sleep(std::time::Duration::from_millis(700)).await;
    first.child.kill().unwrap();
    first.child.wait().unwrap();
    let finished_at_kill = final_count(store.as_ref()).await;
    assert!(
        finished_at_kill < 200,
        "the kill came while analyses were still running"
    );
    println!("{finished_at_kill} of 200 analyses were final when the first instance was killed");
    finish_all(store.as_ref(), &ids).await;
    store.close().await;
    drop(second);
    schema.drop().await;
}

/// `canary serve` on a SQLite file is killed with SIGKILL while analyses are running and
/// started again on the same file: the new process resumes them once the dead one's
/// leases expire, and finishes every one with no look judged twice and no flag change
/// recorded twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_serve_process_restarted_on_its_sqlite_file_after_sigkill_finishes_the_running_analyses()
{
    use canary::store::{AnalysisState, StoreConfig};

    let directory = tempfile::tempdir().unwrap();
    let store_url = format!("sqlite:{}", directory.path().join("canary.db").display());
    let mut first = start_server_on(directory.path(), &store_url, "canary.toml", "2s");
    let ids = submit_many(&[&first], 24).await;
    let store = StoreConfig {
        url: store_url.clone(),
        max_connections: Some(1),
    }
    .build()
    .await
    .unwrap();
    // Kill the process as soon as an analysis is part-way through its rollout (a look
    // recorded, more to come).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let running_at_kill = loop {
        let running = store
            .list_analyses(Some(AnalysisState::Running), 100, None)
            .await
            .unwrap()
            .items;
        if running
            .iter()
            .any(|a| a.runner_state.state().map_or(0, |s| s.looks) > 0)
        {
            first.child.kill().unwrap();
            first.child.wait().unwrap();
            break running.len();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no analysis got part-way: {:?}",
            store.counts_by_state().await.unwrap()
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    };
    let finished_at_kill = final_count(store.as_ref()).await;
    let mut looks_at_kill = std::collections::BTreeMap::new();
    for &id in &ids {
        looks_at_kill.insert(id, store.list_looks(id).await.unwrap().len());
    }
    let part_way = looks_at_kill.values().filter(|&&looks| looks > 0).count();
    assert!(running_at_kill > 0 && part_way > 0 && finished_at_kill < ids.len() as u64);
    println!(
        "{running_at_kill} running ({part_way} with looks recorded) and {finished_at_kill} of {} final when canary serve was killed",
        ids.len()
    );

    let second = start_server_on(directory.path(), &store_url, "canary.toml", "2s");
    finish_all(store.as_ref(), &ids).await;
    // What was recorded before the kill is still there: the looks continued from it.
    for (id, before) in looks_at_kill {
        assert!(store.list_looks(id).await.unwrap().len() >= before);
    }
    store.close().await;
    drop(second);
}

/// A team's own flag system behind the webhook actuator: it checks every request's
/// signature, applies each actuation id once, and serves the flags' states back.
#[derive(Default)]
struct FlagSystem {
    /// Flag → (enabled, rollout).
    flags: std::collections::BTreeMap<String, (bool, f64)>,
    /// Actuation ids applied, in order, with what they did.
    applied: Vec<(String, String, String, f64)>,
    /// Requests for an id already applied (a retry or a replay after a crash).
    repeats: usize,
    /// Requests whose signature did not verify.
    forged: usize,
}

const WEBHOOK_SECRET: &str = "serve-webhook-secret";

async fn flag_system() -> (
    std::net::SocketAddr,
    std::sync::Arc<std::sync::Mutex<FlagSystem>>,
) {
    use axum::extract::{Path as UrlPath, State};
    use axum::http::{HeaderMap, StatusCode};
    use axum::routing::{get, post};

    type Shared = std::sync::Arc<std::sync::Mutex<FlagSystem>>;
    let system = Shared::default();
    let router = axum::Router::new()
        .route(
            "/actuations",
            post(
                |State(system): State<Shared>, headers: HeaderMap, body: axum::body::Bytes| async move {
                    let now = std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .unwrap()
                        .as_secs();
                    let signed = headers
                        .get(canary::signing::SIGNATURE_HEADER)
                        .and_then(|value| value.to_str().ok())
                        .is_some_and(|header| {
                            canary::signing::verify(
                                WEBHOOK_SECRET.as_bytes(),
                                header,
                                &body,
                                now,
                                canary::signing::DEFAULT_TOLERANCE,
                            )
                            .is_ok()
                        });
                    let mut system = system.lock().unwrap();
                    if !signed {
                        system.forged += 1;
                        return (StatusCode::FORBIDDEN, String::new());
                    }
                    let request: serde_json::Value = serde_json::from_slice(&body).unwrap();
                    let id = request["actuation_id"].as_str().unwrap().to_owned();
                    assert_eq!(
                        headers.get("idempotency-key").unwrap().to_str().unwrap(),
                        id
                    );
                    let flag = request["flag"].as_str().unwrap().to_owned();
                    if system.applied.iter().any(|(seen, ..)| *seen == id) {
                        system.repeats += 1;
                    } else {
                        let action = request["action"].as_str().unwrap().to_owned();
                        let target = request["target_percentage"].as_f64().unwrap();
                        let state = if action == "kill" { (false, 0.0) } else { (true, target) };
                        system.flags.insert(flag.clone(), state);
                        system.applied.push((id, flag.clone(), action, target));
                    }
                    let (enabled, rollout) = system.flags[&flag];
                    (
                        StatusCode::OK,
                        serde_json::json!({"enabled": enabled, "rollout": rollout}).to_string(),
                    )
                },
            ),
        )
        .route(
            "/flags/{flag}",
            get(|State(system): State<Shared>, UrlPath(flag): UrlPath<String>| async move {
                let system = system.lock().unwrap();
                let (enabled, rollout) = system.flags.get(&flag).copied().unwrap_or((true, 0.0));
                axum::Json(serde_json::json!({"enabled": enabled, "rollout": rollout}))
            }),
        )
        .with_state(system.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    (address, system)
}

/// Flag changes go to a team's own flag system through the signed webhook actuator,
/// and `canary serve` is killed with SIGKILL mid-way and started again: every change
/// reaches the receiver with a valid signature and is applied there exactly once, in
/// the order the store recorded it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_receiver_applies_each_flag_change_once_across_a_sigkill_and_restart() {
    use canary::store::{ActuationState, AnalysisState, StoreConfig};

    let (receiver, system) = flag_system().await;
    let directory = tempfile::tempdir().unwrap();
    let store_url = format!("sqlite:{}", directory.path().join("canary.db").display());
    let hook = format!(
        "[actuators.hook]\nkind = \"webhook\"\nurl = \"http://{receiver}/actuations\"\n\
         secret_env = \"CANARY_TEST_WEBHOOK_SECRET\"\nstate_url = \"http://{receiver}/flags/{{flag}}\"\n"
    );
    // The secret reaches the servers through their environment (see start_server_with).
    let start = || start_server_with(directory.path(), &store_url, "canary.toml", "2s", &hook);
    let mut first = start();
    let ids = submit_many_to(&[&first], 16, "hook").await;
    let store = StoreConfig {
        url: store_url.clone(),
        max_connections: Some(1),
    }
    .build()
    .await
    .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let applied = system.lock().unwrap().applied.len();
        if applied >= 20 {
            first.child.kill().unwrap();
            first.child.wait().unwrap();
            break;
        }
        assert!(std::time::Instant::now() < deadline, "no flag changes");
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    let applied_at_kill = system.lock().unwrap().applied.len();
    assert!(final_count(store.as_ref()).await < ids.len() as u64);

    let second = start();
    finish_all(store.as_ref(), &ids).await;
    let system = std::mem::take(&mut *system.lock().unwrap());
    assert_eq!(system.forged, 0, "every request was signed with the secret");
    for &id in &ids {
        let analysis = store.get_analysis(id).await.unwrap().unwrap();
        let recorded: Vec<(String, String, f64)> = store
            .list_actuations(id)
            .await
            .unwrap()
            .into_iter()
            .filter(|a| a.state == ActuationState::Applied)
            .map(|a| (a.idempotency_key, a.action, a.target))
            .collect();
        let received: Vec<(String, String, f64)> = system
            .applied
            .iter()
            .filter(|(_, flag, ..)| *flag == analysis.flag)
            .map(|(key, _, action, target)| (key.clone(), action.clone(), *target))
            .collect();
        assert_eq!(
            received, recorded,
            "{}: each change applied once, in order",
            analysis.flag
        );
        let (enabled, rollout) = system.flags[&analysis.flag];
        match analysis.state {
            AnalysisState::Promoted => assert!(enabled && rollout == 100.0),
            AnalysisState::RolledBack => assert!(!enabled),
            other => panic!("{}: {other:?}", analysis.flag),
        }
    }
    println!(
        "{applied_at_kill} changes applied before the kill, {} in all, {} repeated deliveries deduplicated",
        system.applied.len(),
        system.repeats
    );
    drop(system);
    store.close().await;
    drop(second);
}

/// Submits `count` rollouts of the web-service profile through the API, spread over
/// `servers`: every fourth replays a regression, the others a healthy canary; all use the
/// log-only actuator. Returns their ids in submission order.
async fn submit_many(servers: &[&Server], count: usize) -> Vec<uuid::Uuid> {
    submit_many_to(servers, count, "log").await
}

/// [`submit_many`] through the actuator called `actuator`.
async fn submit_many_to(servers: &[&Server], count: usize, actuator: &str) -> Vec<uuid::Uuid> {
    let client = ::reqwest::Client::new();
    let mut ids = Vec::new();
    for index in 0..count {
        let server = servers[index % servers.len()];
        let body = serde_json::json!({
            "profile": "web-service",
            "flag": format!("flag-{index}"),
            "source": if index % 4 == 1 { "regression" } else { "healthy" },
            "actuator": actuator,
            "start_at": REPLAY_START,
        });
        let response = client
            .post(format!("{}/v1/analyses", server.url))
            .bearer_auth("test-token")
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 201);
        let created: serde_json::Value = response.json().await.unwrap();
        ids.push(
            created["id"]
                .as_str()
                .unwrap()
                .parse::<uuid::Uuid>()
                .unwrap(),
        );
    }
    ids
}

/// How many analyses are final.
async fn final_count(store: &dyn canary::store::Store) -> u64 {
    store
        .counts_by_state()
        .await
        .unwrap()
        .iter()
        .filter(|(s, _)| s.is_final())
        .map(|(_, n)| n)
        .sum()
}

/// Waits (up to 180 s) until every analysis in `ids` is final, then checks that each was
/// promoted or rolled back, every look was recorded once and in order, no flag change
/// was recorded twice, and no lease is left.
async fn finish_all(store: &dyn canary::store::Store, ids: &[uuid::Uuid]) {
    use canary::store::AnalysisState;

    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(180);
    loop {
        if final_count(store).await == ids.len() as u64 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "unfinished after 180 s: {:?}",
            store.counts_by_state().await.unwrap()
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    for &id in ids {
        let analysis = store.get_analysis(id).await.unwrap().unwrap();
        assert!(
            matches!(
                analysis.state,
                AnalysisState::Promoted | AnalysisState::RolledBack
            ),
            "{}: {:?} {:?}",
            analysis.flag,
            analysis.state,
            analysis.reasons
        );
        let looks: Vec<u64> = store
            .list_looks(id)
            .await
            .unwrap()
            .iter()
            .map(|l| l.look)
            .collect();
        let expected: Vec<u64> = (1..=looks.len() as u64).collect();
        assert_eq!(
            looks, expected,
            "{}: every look once, in order",
            analysis.flag
        );
        assert_eq!(
            analysis.runner_state.state().map(|s| s.looks),
            Some(looks.len() as u64)
        );
        let actuations = store.list_actuations(id).await.unwrap();
        let mut keys: Vec<&str> = actuations
            .iter()
            .map(|a| a.idempotency_key.as_str())
            .collect();
        keys.sort();
        keys.dedup();
        assert_eq!(
            keys.len(),
            actuations.len(),
            "{}: no flag change recorded twice",
            analysis.flag
        );
        assert_eq!(
            analysis.lease_owner, None,
            "{}: lease released",
            analysis.flag
        );
    }
}

/// The report of a rollout a real `canary serve` rolled back, as the person paged by it
/// sees it: fetched over HTTP and with `canary report --out`, opened in headless
/// Chromium. The verdict, a row per metric, each look's trigger checks, and charts drawn
/// from the series the looks kept (many points per look, not one).
#[test]
fn a_served_rollback_report_shows_the_verdict_triggers_and_real_series_in_a_browser() {
    use canary::report::analysis::{AnalysisReport, TimelineEvent};

    let directory = tempfile::tempdir().unwrap();
    let server = start_server_on(
        directory.path(),
        &format!("sqlite:{}", directory.path().join("canary.db").display()),
        "canary.toml",
        "10s",
    );
    let rolled_back = submit_and_wait(&server, "regression", "search-v3");
    assert_eq!(
        rolled_back.code, 3,
        "{}\n{}",
        rolled_back.stdout, rolled_back.stderr
    );
    let id = rolled_back.stdout.lines().next().unwrap().trim().to_owned();

    let runtime = tokio::runtime::Runtime::new().unwrap();
    let get = |path: String| {
        runtime.block_on(async {
            let response = ::reqwest::get(format!("{}{path}", server.url))
                .await
                .unwrap();
            assert_eq!(response.status().as_u16(), 200, "{path}");
            response.text().await.unwrap()
        })
    };
    let report: AnalysisReport =
        serde_json::from_str(&get(format!("/v1/analyses/{id}/report.json"))).unwrap();
    assert_eq!(report.subject.state, "rolled_back");
    assert_eq!(
        report.banner.verdict,
        Some(canary::domain::Verdict::Rollback)
    );
    let looks: Vec<&TimelineEvent> = report
        .timeline
        .iter()
        .filter(|event| matches!(event, TimelineEvent::Look { .. }))
        .collect();
    assert!(looks.len() >= 2, "{:#?}", report.timeline);
    // web-service has three triggers on every stage: each look reports them all.
    for look in &looks {
        let TimelineEvent::Look { triggers, look, .. } = look else {
            unreachable!()
        };
        let names: Vec<&str> = triggers.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "error rate above 2 % for 2 minutes",
                "p95 latency above baseline × 1.3 for 30 seconds",
                "p95 latency above 500 ms for 1 minute"
            ],
            "look {look}"
        );
        assert!(triggers.iter().all(|t| !t.reason.is_empty()));
    }
    // The profile snapshot's relative limits, on the latest look's baseline.
    let latency = report
        .metrics
        .iter()
        .find(|m| m.name == "latency_p95")
        .unwrap();
    assert_eq!(latency.classification, "fail", "{latency:#?}");
    let limit = &latency.relative_limits[0];
    assert_eq!(limit.rule, "allowed_increase");
    let median = latency.baseline.as_ref().unwrap().median.unwrap();
    assert!((limit.limit - median * 1.05).abs() < 1e-9, "{limit:?}");

    // The page over HTTP and the one `canary report --out` writes are the same page.
    let page = get(format!("/v1/analyses/{id}/report"));
    let fetched = directory.path().join("fetched.html");
    let summary = canary([
        "report",
        &id,
        "--server",
        &server.url,
        "--out",
        fetched.to_str().unwrap(),
    ]);
    assert_eq!(summary.code, 0, "{}", summary.stderr);
    assert!(
        summary.stdout.starts_with("VERDICT: ROLLBACK"),
        "{}",
        summary.stdout
    );
    assert!(summary.stdout.contains("trigger") || summary.stdout.contains("latency_p95"));
    assert!(!summary.stdout.contains('\x1b'), "no colour into a pipe");
    assert_eq!(std::fs::read_to_string(&fetched).unwrap(), page);

    // Real series: every time chart says how many points it drew, and they are many
    // per look (the replay has a point every 5 s, a look every 3 min).
    let drawn: Vec<(u64, u64)> = page
        .match_indices("over time: ")
        .map(|(at, _)| {
            let words: Vec<&str> = page[at..].split_whitespace().collect();
            let number = |word: &str| word.replace(',', "").parse::<u64>().unwrap();
            (number(words[2]), number(words[5]))
        })
        .collect();
    assert_eq!(
        drawn.len(),
        report.metrics.len(),
        "one time chart per metric"
    );
    for (baseline, canary) in &drawn {
        assert!(
            *baseline >= 20 * looks.len() as u64 && *canary >= 20 * looks.len() as u64,
            "{baseline} and {canary} points over {} looks",
            looks.len()
        );
    }
    // And the SVG lines carry them: the longest line has many more points than looks.
    let longest_line = page
        .split("<polyline")
        .skip(1)
        .map(|line| {
            let points = line.split("points=\"").nth(1).unwrap_or("");
            points[..points.find('"').unwrap_or(0)]
                .split_whitespace()
                .count()
        })
        .max()
        .unwrap_or(0);
    assert!(longest_line >= 20 * looks.len(), "{longest_line} points");

    let screenshot = crate::report::output_directory().join("served-rollback.png");
    let _ = std::fs::remove_file(&screenshot);
    let Some(dom) = crate::report::open_in_chromium(&fetched, &screenshot) else {
        return;
    };
    std::fs::copy(
        &fetched,
        crate::report::output_directory().join("served-rollback.html"),
    )
    .unwrap();
    let text = crate::report::visible_text(&dom);
    assert!(text.contains("Verdict: ROLLBACK"), "{text}");
    assert!(
        text.contains("Rolled back: search-v3 was switched off"),
        "{text}"
    );
    for metric in &report.metrics {
        assert!(text.contains(&metric.name), "no row for {}", metric.name);
        assert!(
            text.contains(&metric.reason),
            "no reason for {}",
            metric.name
        );
    }
    assert_eq!(
        dom.matches("<tr class=\"metric\">").count(),
        report.metrics.len()
    );
    assert_eq!(
        dom.matches("<tr class=\"trigger ").count(),
        3 * looks.len(),
        "a row per trigger per look (web-service has three)"
    );
    for seen in [
        "error rate above 2 % for 2 minutes",
        "p95 latency above baseline × 1.3 for 30 seconds",
        "p95 latency above 500 ms for 1 minute",
        "not met",
        "baseline median ×1.05",
        "p95 max 0.4",
    ] {
        assert!(text.contains(seen), "the page shows {seen:?}: {text}");
    }
    assert!(
        !text.contains("at each look"),
        "no chart falls back to one point per look"
    );
    let png = std::fs::read(&screenshot).unwrap();
    assert!(png.starts_with(b"\x89PNG") && png.len() > 20_000);
}
