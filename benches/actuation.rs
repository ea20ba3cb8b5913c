//! How long a rollback takes to show: from calling `kill()` on an actuator until an
//! independent read of the flag store sees the flag off, on loopback.
//!
//! - `flagd-file`: always runs. The flag file is in a temporary directory; the
//!   independent read parses the file and checks the flag's `state` is `DISABLED`.
//! - `unleash`: runs when `CANARY_BENCH_UNLEASH_URL` names an Unleash server and
//!   `CANARY_UNLEASH_TOKEN` holds an admin token (`scripts/bench-unleash.sh` starts one
//!   and sets both); otherwise it prints a notice. The environment is
//!   `CANARY_BENCH_UNLEASH_ENVIRONMENT` (default `production`). The independent read is
//!   the admin API's `GET .../features/{flag}/environments/{environment}`, which must say
//!   `enabled: false`. The flag `canary-bench-kill` is created when missing.
//!
//! Each iteration first sets the flag to 25 % (not timed), then times the kill and the
//! read. Run with `cargo bench --bench actuation`; under `cargo bench` (not in the test
//! mode `cargo test --all-targets` uses) it also prints the median and the 99th
//! percentile of a separate run of single kills.

use std::time::{Duration, Instant};

use canary::actuators::flagd_file::FlagdFileActuator;
use canary::actuators::{Actuator, ActuatorConfig, ActuatorExt};
use canary::domain::Percentage;
use criterion::{Criterion, criterion_group, criterion_main};
use tokio::runtime::Runtime;

const FLAG: &str = "canary-bench-kill";
/// Single kills timed for the percentile summary.
const SUMMARY_KILLS: usize = 200;

const FLAG_FILE: &str = r#"{
  "flags": {
    "canary-bench-kill": {
      "state": "ENABLED",
      "variants": {"on": true, "off": false},
      "defaultVariant": "off",
      "targeting": {"fractional": [
        {"cat": [{"var": "$flagd.flagKey"}, {"var": "targetingKey"}]},
        ["on", 25], ["off", 75]]}
    },
    "bystander": {"state": "ENABLED", "variants": {"on": true, "off": false}, "defaultVariant": "on"}
  }
}
"#;

/// One flag store under test: the actuator and an independent way to see the flag off.
struct Case {
    name: &'static str,
    actuator: Box<dyn Actuator>,
    reads_off: Box<dyn Fn() -> std::pin::Pin<Box<dyn Future<Output = bool> + Send>> + Send>,
}

impl Case {
    /// Sets 25 % (untimed), then returns how long the kill and the read took.
    async fn one_kill(&self) -> Duration {
        let quarter = Percentage::parse(25.0).expect("25 is a percentage");
        self.actuator
            .set_rollout(FLAG, quarter)
            .await
            .expect("the flag is set to 25 %");
        let started = Instant::now();
        let state = self.actuator.kill(FLAG).await.expect("the kill works");
        assert!(!state.enabled);
        // The independent read; polled in case a store applies the change late.
        while !(self.reads_off)().await {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "{}: the flag did not read off within 10 s",
                self.name
            );
        }
        started.elapsed()
    }
}

fn flagd_case(directory: &tempfile::TempDir) -> Case {
    let path = directory.path().join("flags.json");
    std::fs::write(&path, FLAG_FILE).expect("the flag file is written");
    let read_path = path.clone();
    Case {
        name: "flagd-file",
        actuator: Box::new(FlagdFileActuator::new(path)),
        reads_off: Box::new(move || {
            let path = read_path.clone();
            Box::pin(async move {
                let text = tokio::fs::read(&path).await.expect("the flag file reads");
                let root: serde_json::Value =
                    serde_json::from_slice(&text).expect("the flag file parses");
                root["flags"][FLAG]["state"] == "DISABLED"
            })
        }),
    }
}

/// The Unleash case, or `None` after a notice when no server is configured.
fn unleash_case(runtime: &Runtime) -> Option<Case> {
    let Ok(url) = std::env::var("CANARY_BENCH_UNLEASH_URL") else {
        println!(
            "NOTICE: CANARY_BENCH_UNLEASH_URL is not set, so the Unleash kill is not measured \
             (scripts/bench-unleash.sh starts an unleash-server and runs this bench against it)"
        );
        return None;
    };
    let Ok(token) = std::env::var("CANARY_UNLEASH_TOKEN") else {
        println!(
            "NOTICE: CANARY_UNLEASH_TOKEN (an Unleash admin token) is not set, so the Unleash kill is not measured"
        );
        return None;
    };
    let environment = std::env::var("CANARY_BENCH_UNLEASH_ENVIRONMENT")
        .unwrap_or_else(|_| "production".to_owned());
    let config: ActuatorConfig = format!("unleash={url},environment={environment}")
        .parse()
        .expect("the Unleash actuator form parses");
    let actuator = config.build().expect("the Unleash actuator builds");

    let http = reqwest::Client::new();
    let base = url.trim_end_matches('/').to_owned();
    runtime.block_on(async {
        // Created when missing; a 409 means it exists already.
        let created = http
            .post(format!("{base}/api/admin/projects/default/features"))
            .header("authorization", &token)
            .json(&serde_json::json!({"name": FLAG, "type": "release"}))
            .send()
            .await
            .expect("Unleash answers");
        assert!(
            created.status().is_success() || created.status().as_u16() == 409,
            "creating {FLAG}: {}",
            created.status()
        );
    });
    let environment_url =
        format!("{base}/api/admin/projects/default/features/{FLAG}/environments/{environment}");
    Some(Case {
        name: "unleash",
        actuator,
        reads_off: Box::new(move || {
            let (http, url, token) = (http.clone(), environment_url.clone(), token.clone());
            Box::pin(async move {
                let answer: serde_json::Value = http
                    .get(&url)
                    .header("authorization", &token)
                    .send()
                    .await
                    .expect("Unleash answers")
                    .json()
                    .await
                    .expect("a JSON environment");
                answer["enabled"] == false
            })
        }),
    })
}

/// Median and 99th percentile of single kills, printed; only under `cargo bench`.
fn summary(runtime: &Runtime, case: &Case) {
    let mut times: Vec<Duration> = runtime.block_on(async {
        let mut times = Vec::with_capacity(SUMMARY_KILLS);
        for _ in 0..SUMMARY_KILLS {
            times.push(case.one_kill().await);
        }
        times
    });
    times.sort();
    let at = |quantile: f64| times[((times.len() - 1) as f64 * quantile).round() as usize];
    println!(
        "kill → reads off, {}: median {:.3} ms, p99 {:.3} ms, max {:.3} ms over {} kills",
        case.name,
        at(0.5).as_secs_f64() * 1e3,
        at(0.99).as_secs_f64() * 1e3,
        times[times.len() - 1].as_secs_f64() * 1e3,
        times.len()
    );
}

fn actuation(criterion: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let directory = tempfile::tempdir().expect("a temporary directory");
    let mut cases = vec![flagd_case(&directory)];
    cases.extend(unleash_case(&runtime));
    let benchmarking = std::env::args().any(|argument| argument == "--bench");

    let mut group = criterion.benchmark_group("kill_until_reads_off");
    group
        .sample_size(30)
        .measurement_time(Duration::from_secs(5));
    for case in &cases {
        group.bench_function(case.name, |bencher| {
            bencher.iter_custom(|iterations| {
                runtime.block_on(async {
                    let mut total = Duration::ZERO;
                    for _ in 0..iterations {
                        total += case.one_kill().await;
                    }
                    total
                })
            })
        });
    }
    group.finish();
    if benchmarking {
        for case in &cases {
            summary(&runtime, case);
        }
    }
}

criterion_group!(benches, actuation);
criterion_main!(benches);
