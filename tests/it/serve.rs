//! `canary serve` as a real process: settings from a file, the API and the workers on a
//! SQLite file, analyses submitted and waited for with `canary submit --wait`, flags
//! moved in a real flag file, and a graceful stop on SIGTERM.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

use crate::helpers::{canary, root};

/// The replays' recordings start here; a rollout starts one lookback later.
const REPLAY_START: f64 = 1_700_000_000.0 + 360.0;

struct Server {
    child: Child,
    url: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_server(directory: &Path) -> Server {
    let flags = directory.join("flags.json");
    std::fs::copy(root().join("fixtures/flags.json"), &flags).unwrap();
    let settings = directory.join("canary.toml");
    std::fs::write(
        &settings,
        format!(
            r#"
[server]
bind = "127.0.0.1:0"
auth_token = "test-token"
[store]
url = "sqlite:{store}"
[profiles]
directory = "{profiles}"
[sources.healthy]
kind = "replay"
directory = "{replays}/healthy"
[sources.regression]
kind = "replay"
directory = "{replays}/latency-regression"
[actuators.flags]
kind = "flagd-file"
path = "{flags}"
[worker]
concurrency = 4
lease = "10s"
poll_interval = "100ms"
"#,
            store = directory.join("canary.db").display(),
            profiles = root().join("analysis-profiles").display(),
            replays = root().join("fixtures/replay").display(),
            flags = flags.display(),
        ),
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_canary"))
        .args(["serve", "--config", settings.to_str().unwrap()])
        .current_dir(root())
        .env_remove("RUST_LOG")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("canary serve starts");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let url = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("canary serve announces its address, got {line:?}"))
        .to_owned();
    Server { child, url }
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
    ])
}

#[test]
fn canary_serve_runs_submitted_rollouts_to_their_verdicts_and_stops_gracefully() {
    let directory = tempfile::tempdir().unwrap();
    let server = start_server(directory.path());

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
