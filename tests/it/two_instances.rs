//! Issue 13's target run, sized for CI: two `canary serve` processes on one PostgreSQL
//! database share one flagd flag file; 40 analyses over distinct flags (one in four on
//! a regressing replay) are submitted to both, a same-flag duplicate of every fifth is
//! refused with a 409, and one instance is killed with SIGKILL mid-way. Every analysis
//! must end with the right verdict, every promoted flag at 100 % and enabled in the file,
//! every rolled-back flag disabled (no lost edit), and no flag change recorded twice.
//!
//! `CANARY_TARGET_ANALYSES=200 CANARY_TARGET_KILLS=2` runs the full size: the killed
//! instance is restarted and the other one is killed too.

use std::path::Path;
use std::time::{Duration, Instant};

use canary::actuators::Actuator;
use canary::actuators::flagd_file::FlagdFileActuator;
use canary::store::{AnalysisState, Store, StoreConfig};

use crate::helpers::REPLAY_START;

type Server = crate::helpers::ServeProcess;

fn start_server(directory: &Path, store: &str, name: &str) -> Server {
    crate::helpers::serve_on_replays(directory, store, &format!("{name}.toml"), "3s", "", &[])
}

fn kill(server: &mut Server) {
    server.child.kill().unwrap();
    server.child.wait().unwrap();
}

async fn submit(
    http: &reqwest::Client,
    server: &Server,
    flag: &str,
    source: &str,
) -> (u16, serde_json::Value) {
    let response = http
        .post(format!("{}/v1/analyses", server.url))
        .bearer_auth("test-token")
        .json(&serde_json::json!({
            "profile": "web-service",
            "flag": flag,
            "source": source,
            "actuator": "flags",
            "start_at": REPLAY_START,
        }))
        .send()
        .await
        .unwrap();
    (response.status().as_u16(), response.json().await.unwrap())
}

async fn final_count(store: &dyn Store) -> u64 {
    store
        .counts_by_state()
        .await
        .unwrap()
        .iter()
        .filter(|(state, _)| state.is_final())
        .map(|(_, n)| n)
        .sum()
}

/// Waits (at most 600 s) until at least `count` analyses are final.
async fn wait_until_final(store: &dyn Store, count: u64) {
    let deadline = Instant::now() + Duration::from_secs(600);
    while final_count(store).await < count {
        assert!(
            Instant::now() < deadline,
            "fewer than {count} final after 600 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn from_env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|text| text.parse().ok())
        .unwrap_or(default)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_on_one_flag_file_lose_no_edit_and_double_no_change_across_sigkill() {
    let analyses = from_env("CANARY_TARGET_ANALYSES", 40);
    let kills = from_env("CANARY_TARGET_KILLS", 1);
    let started = Instant::now();
    let schema = crate::store::PostgresSchema::create().await;
    let directory = tempfile::tempdir().unwrap();
    let flags: Vec<String> = (0..analyses).map(|i| format!("flag-{i}")).collect();
    crate::ownership::write_flag_file(&directory.path().join("flags.json"), flags.clone());
    let mut first = start_server(directory.path(), &schema.url, "first");
    let mut second = start_server(directory.path(), &schema.url, "second");

    let http = reqwest::Client::new();
    let mut submitted = Vec::new();
    let mut refused = 0;
    for (index, flag) in flags.iter().enumerate() {
        let source = if index % 4 == 1 {
            "regression"
        } else {
            "healthy"
        };
        let (to, other) = if index % 2 == 0 {
            (&first, &second)
        } else {
            (&second, &first)
        };
        let (status, created) = submit(&http, to, flag, source).await;
        assert_eq!(status, 201, "{created}");
        let id: uuid::Uuid = created["id"].as_str().unwrap().parse().unwrap();
        if index % 5 == 0 {
            let (status, error) = submit(&http, other, flag, source).await;
            assert_eq!(status, 409, "{flag}: a second owner: {error}");
            assert!(
                error["error"]["message"]
                    .as_str()
                    .unwrap()
                    .contains(&id.to_string())
            );
            refused += 1;
        }
        submitted.push((id, flag.clone(), source));
    }
    let store = StoreConfig {
        url: schema.url.clone(),
        max_connections: Some(2),
    }
    .build()
    .await
    .unwrap();

    // Kill mid-way: once a quarter of the analyses are final, the others in flight.
    wait_until_final(store.as_ref(), analyses as u64 / 4).await;
    kill(&mut first);
    let final_at_first_kill = final_count(store.as_ref()).await;
    assert!(
        final_at_first_kill < analyses as u64,
        "the kill came while analyses were still running"
    );
    let mut final_at_second_kill = None;
    if kills >= 2 {
        // The killed instance comes back; at half way the other one is killed.
        first = start_server(directory.path(), &schema.url, "first");
        wait_until_final(store.as_ref(), analyses as u64 / 2).await;
        final_at_second_kill = Some(final_count(store.as_ref()).await);
        kill(&mut second);
    }

    let deadline = Instant::now() + Duration::from_secs(600);
    while final_count(store.as_ref()).await < analyses as u64 {
        assert!(
            Instant::now() < deadline,
            "unfinished after 600 s: {:?}",
            store.counts_by_state().await.unwrap()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    let file = FlagdFileActuator::new(directory.path().join("flags.json"));
    let (mut promoted, mut rolled_back, mut wrong_verdicts, mut lost_edits, mut doubled) =
        (0, 0, Vec::new(), Vec::new(), Vec::new());
    let mut changes = 0;
    for (id, flag, source) in &submitted {
        let analysis = store.get_analysis(*id).await.unwrap().unwrap();
        let expected = if *source == "healthy" {
            AnalysisState::Promoted
        } else {
            AnalysisState::RolledBack
        };
        if analysis.state != expected {
            wrong_verdicts.push(format!("{flag}: {} {:?}", analysis.state, analysis.reasons));
        }
        let state = file.current(flag).await.unwrap();
        match analysis.state {
            AnalysisState::Promoted => {
                promoted += 1;
                if !(state.enabled && state.rollout.value() == 100.0) {
                    lost_edits.push(format!("{flag}: promoted but {state:?}"));
                }
            }
            AnalysisState::RolledBack => {
                rolled_back += 1;
                if state.enabled {
                    lost_edits.push(format!("{flag}: rolled back but {state:?}"));
                }
            }
            _ => {}
        }
        let actuations = store.list_actuations(*id).await.unwrap();
        changes += actuations.len();
        let mut keys: Vec<&str> = actuations
            .iter()
            .map(|a| a.idempotency_key.as_str())
            .collect();
        keys.sort();
        keys.dedup();
        let applied: Vec<(&str, f64)> = actuations
            .iter()
            .map(|a| (a.action.as_str(), a.target))
            .collect();
        if keys.len() != actuations.len() || applied.windows(2).any(|pair| pair[0] == pair[1]) {
            doubled.push(format!("{flag}: {applied:?}"));
        }
    }
    let other_flags = serde_json::from_str::<serde_json::Value>(
        &std::fs::read_to_string(directory.path().join("flags.json")).unwrap(),
    )
    .unwrap()["flags"]
        .as_object()
        .unwrap()
        .len();
    println!(
        "two instances, {analyses} analyses, {kills} kill(s) -9: {promoted} promoted, \
         {rolled_back} rolled back, {} wrong verdicts, {} lost edits, {} doubled changes, \
         {changes} flag changes, {refused} same-flag duplicates refused with 409; final at \
         the kills: {final_at_first_kill}, {final_at_second_kill:?}; {:.1} s",
        wrong_verdicts.len(),
        lost_edits.len(),
        doubled.len(),
        started.elapsed().as_secs_f64()
    );
    assert!(wrong_verdicts.is_empty(), "{wrong_verdicts:#?}");
    assert!(lost_edits.is_empty(), "{lost_edits:#?}");
    assert!(doubled.is_empty(), "{doubled:#?}");
    assert_eq!(other_flags, analyses, "every flag is still in the file");
    store.close().await;
    drop(first);
    drop(second);
    schema.drop().await;
}
