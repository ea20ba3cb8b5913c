//! Whole rollouts on the live test bed: the real `canary run` against a real Prometheus
//! scraping the demo service, whose canary and baseline traffic follow the flag file
//! `canary run` edits (`live_bed.rs`). The compressed web-service plan
//! (`fixtures/live/web-service-60s.toml`: 1 → 5 → 25 → 50 → 100 %, 60 s a stage, a
//! look every 10 s) runs in about five minutes; faults are injected when the flag
//! reaches 25 %. These tests check outcomes (promoted, switched off, never promoted,
//! untouched); how fast the flag goes off is measured by `scripts/bench-live.sh`,
//! not timed here.
//!
//! They are slow and mostly asleep, so `scripts/test.sh` runs them apart from the rest,
//! many at once (`cargo test --test it live_rollouts:: -- --test-threads 16`).

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::helpers::root;
use crate::live_bed::{BedOptions, LiveBed, wait_until};

mod seeds;

const PROFILE: &str = "fixtures/live/web-service-60s.toml";
/// A whole healthy rollout is five 60-second stages; anything past this is a hang.
const ROLLOUT_TIMEOUT: Duration = Duration::from_secs(600);

fn bed(seed: u64) -> LiveBed {
    LiveBed::start(BedOptions {
        seed,
        ..BedOptions::default()
    })
}

/// `canary run` on the bed, in the background, with `extra` arguments; its output goes
/// to files beside the test's own temporary directory.
struct RunningCanary {
    child: Child,
    output: tempfile::TempDir,
}

struct Finished {
    code: i32,
    stdout: String,
    stderr: String,
}

fn start_canary(bed: &LiveBed, profile: &Path, extra: &[&str]) -> RunningCanary {
    start_canary_on(bed, &bed.flag, profile, extra)
}

fn start_canary_on(bed: &LiveBed, flag: &str, profile: &Path, extra: &[&str]) -> RunningCanary {
    let output = tempfile::tempdir().expect("a temporary directory");
    let child = Command::new(env!("CARGO_BIN_EXE_canary"))
        .arg("run")
        .arg("--profile")
        .arg(profile)
        .arg("--source")
        .arg(format!("prometheus={}", bed.prometheus_url))
        .arg("--flag")
        .arg(flag)
        .arg("--actuator")
        .arg(format!("flagd-file={}", bed.flags.display()))
        .args(["--format", "json"])
        .args(extra)
        .current_dir(root())
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(output.path().join("stdout")).unwrap())
        .stderr(std::fs::File::create(output.path().join("stderr")).unwrap())
        .spawn()
        .expect("canary run starts");
    RunningCanary { child, output }
}

impl RunningCanary {
    fn wait(mut self) -> Finished {
        let deadline = Instant::now() + ROLLOUT_TIMEOUT;
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("canary run can be waited on") {
                break status;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!(
                    "canary run did not finish within {ROLLOUT_TIMEOUT:?}; stderr:\n{}",
                    self.read("stderr")
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        };
        Finished {
            code: status.code().expect("canary run exits with a code"),
            stdout: self.read("stdout"),
            stderr: self.read("stderr"),
        }
    }

    fn read(&self, name: &str) -> String {
        std::fs::read_to_string(self.output.path().join(name)).unwrap_or_default()
    }
}

fn profile() -> std::path::PathBuf {
    root().join(PROFILE)
}

/// The bed's flag as the flag file has it.
fn flag(bed: &LiveBed) -> Value {
    let document: Value =
        serde_json::from_slice(&bed.flag_file_bytes()).expect("the flag file is JSON");
    document["flags"][bed.flag.as_str()].clone()
}

fn on_weight(flag: &Value) -> Option<u64> {
    flag["targeting"]["fractional"]
        .as_array()?
        .iter()
        .find(|entry| entry[0] == "on")?
        .get(1)?
        .as_u64()
}

/// The exit code, stderr, every look's stage, decision and reasons (with every trigger's
/// state), and the bed's state: what a failed rollout test needs to say why.
fn explain(finished: &Finished, bed: &LiveBed) -> String {
    let looks = serde_json::from_str::<Value>(&finished.stdout)
        .ok()
        .and_then(|summary| summary["history"].as_array().cloned())
        .unwrap_or_default();
    let looks: Vec<String> = looks
        .iter()
        .map(|look| {
            // Every trigger's state, and the canary's side of the metric it watches as
            // the look judged it: a trigger that should have fired and did not says why
            // (a run cut short, too few requests for the limit to show).
            let triggers: Vec<String> = look["triggers"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|trigger| {
                    let metric = trigger["metric"].as_str().unwrap_or_default();
                    let canary = look["judgement"]["metrics"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .find(|judged| judged["name"] == metric)
                        .map(|judged| {
                            let side = &judged["canary"];
                            format!(
                                "n {} mean {} errors {}",
                                side["n"], side["mean"], side["errors"]
                            )
                        })
                        .unwrap_or_default();
                    format!(
                        "\n    trigger {} ({}): {}; canary {metric} in the window: {canary}",
                        trigger["name"],
                        if trigger["met"] == true {
                            "met"
                        } else {
                            "not met"
                        },
                        trigger["reason"],
                    )
                })
                .collect();
            format!(
                "  stage {} {}: {}{}",
                look["stage"],
                look["decision"]["decision"],
                look["reasons"],
                triggers.concat()
            )
        })
        .collect();
    // Without a parsed summary (a crash, a usage error), the raw end of stdout.
    let looks = if looks.is_empty() {
        format!(
            "(no looks parsed; stdout's tail)\n{}",
            tail(&finished.stdout, 4000)
        )
    } else {
        looks.join("\n")
    };
    format!(
        "exit {}\n--- stderr\n{}\n--- looks\n{}\n--- bed state\n{}",
        finished.code,
        finished.stderr,
        looks,
        bed.state()
    )
}

fn tail(text: &str, chars: usize) -> &str {
    let start = text.len().saturating_sub(chars);
    let start = (start..text.len())
        .find(|&i| text.is_char_boundary(i))
        .unwrap_or(text.len());
    &text[start..]
}

/// Waits until the service sees the canary at `percent`, then injects `fault`. A run
/// that ends before (a rollback at an earlier stage) fails the test at once, with its
/// output.
fn inject_at(bed: &LiveBed, run: &mut RunningCanary, percent: f64, fault: Value) -> Value {
    let mut ended = None;
    let reached = wait_until(Duration::from_secs(400), || {
        if let Ok(Some(status)) = run.child.try_wait() {
            ended = Some(status);
            return true;
        }
        bed.state()["canary_percent"].as_f64() == Some(percent)
    });
    if let Some(status) = ended {
        panic!(
            "canary run ended ({status}) before the flag reached {percent} %:\n--- stderr\n{}\n--- stdout (tail)\n{}\n--- bed state\n{}",
            run.read("stderr"),
            tail(&run.read("stdout"), 4000),
            bed.state()
        );
    }
    assert!(
        reached,
        "the flag never reached {percent} %: {}",
        bed.state()
    );
    bed.fault(fault)
}

fn assert_switched_off(finished: &Finished, bed: &LiveBed) {
    assert_eq!(finished.code, 3, "rolled back: {}", explain(finished, bed));
    let flag = flag(bed);
    assert_eq!(flag["state"], "DISABLED", "the kill switch: {flag}");
    // The service re-reads the flag file every 100 ms.
    let followed = wait_until(Duration::from_secs(2), || {
        bed.state()["canary_percent"] == 0.0
    });
    let state = bed.state();
    assert!(followed, "the service follows: {state}");
    assert!(
        state["fault_onset_to_flag_off_seconds"].as_f64().is_some(),
        "the flag went off after the fault's onset: {state}"
    );
    assert!(
        !state["changes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|change| change["canary_percent"].as_f64() > Some(25.0)),
        "never advanced past the stage where the fault appeared: {state}"
    );
}

#[test]
fn live_rollouts_a_healthy_canary_is_promoted_to_100_percent_with_the_flag_enabled() {
    let bed = bed(11);
    let finished = start_canary(&bed, &profile(), &[]).wait();
    assert_eq!(finished.code, 0, "promoted: {}", explain(&finished, &bed));
    let flag = flag(&bed);
    assert_eq!(flag["state"], "ENABLED", "{flag}");
    assert_eq!(on_weight(&flag), Some(100), "{flag}");
    let state = bed.state();
    let path: Vec<f64> = state["changes"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|change| change["canary_percent"].as_f64())
        .collect();
    assert_eq!(path, [0.0, 1.0, 5.0, 25.0, 50.0, 100.0], "{state}");
    let summary: Value = serde_json::from_str(&finished.stdout).expect("the JSON summary");
    let looks = summary["history"].as_array().expect("looks");
    let last = looks.last().unwrap();
    assert!(
        last["judgement"]["metrics"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["classification"] == "not_compared"),
        "the 100 % stage compares nothing: {last}"
    );
}

#[test]
fn live_rollouts_errors_times_ten_at_25_percent_switch_the_flag_off() {
    let bed = bed(12);
    let mut run = start_canary(&bed, &profile(), &[]);
    inject_at(&bed, &mut run, 25.0, json!({"error_factor": 10.0}));
    assert_switched_off(&run.wait(), &bed);
}

#[test]
fn live_rollouts_errors_times_two_at_25_percent_switch_the_flag_off() {
    let bed = bed(13);
    let mut run = start_canary(&bed, &profile(), &[]);
    inject_at(&bed, &mut run, 25.0, json!({"error_factor": 2.0}));
    assert_switched_off(&run.wait(), &bed);
}

#[test]
fn live_rollouts_latency_times_one_and_a_half_at_25_percent_switches_the_flag_off() {
    let bed = bed(14);
    let mut run = start_canary(&bed, &profile(), &[]);
    inject_at(&bed, &mut run, 25.0, json!({"latency_factor": 1.5}));
    assert_switched_off(&run.wait(), &bed);
}

#[test]
fn live_rollouts_a_tail_only_slowdown_at_25_percent_switches_the_flag_off() {
    let bed = bed(15);
    let mut run = start_canary(&bed, &profile(), &[]);
    // The median stays; the spread grows by half (the p95 by about a third).
    inject_at(&bed, &mut run, 25.0, json!({"tail_spread": 1.5}));
    assert_switched_off(&run.wait(), &bed);
}

#[test]
fn live_rollouts_prometheus_down_mid_rollout_never_promotes_and_the_rollout_resumes() {
    let mut bed = bed(16);
    let run = start_canary(&bed, &profile(), &[]);
    let reached = wait_until(Duration::from_secs(200), || {
        bed.state()["canary_percent"].as_f64() == Some(5.0)
    });
    assert!(reached, "{}", bed.state());
    bed.stop_prometheus();
    let down_at = Instant::now();
    // Shorter than the plan's hold timeout (60 s): the rollout holds, then goes on.
    while down_at.elapsed() < Duration::from_secs(25) {
        assert_eq!(
            bed.state()["canary_percent"],
            5.0,
            "no flag change while Prometheus is down"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    bed.restart_prometheus();
    let finished = run.wait();
    assert_eq!(
        finished.code,
        0,
        "resumed and promoted: {}",
        explain(&finished, &bed)
    );
    let summary: Value = serde_json::from_str(&finished.stdout).unwrap();
    let held_unreachable = summary["history"].as_array().unwrap().iter().any(|look| {
        look["decision"]["decision"] == "hold"
            && look["reasons"].to_string().contains("unreachable")
    });
    assert!(
        held_unreachable,
        "a look held on the outage: {}",
        finished.stdout
    );
}

#[test]
fn live_rollouts_a_dry_run_never_changes_the_flag_file() {
    let bed = bed(17);
    let before = bed.flag_file_bytes();
    let run = start_canary(&bed, &profile(), &["--dry-run"]);
    // A fault at what the dry run believes is 25 %: the service stays at 0 %, so the
    // run sees no canary traffic at all; nothing may change either way.
    let finished = run.wait();
    assert_eq!(
        bed.flag_file_bytes(),
        before,
        "{}",
        explain(&finished, &bed)
    );
    let changes = bed.state()["changes"].as_array().unwrap().len();
    assert_eq!(changes, 1, "the service saw no flag change");
    assert_ne!(
        finished.code, 0,
        "a dry run that sees no canary never promotes"
    );
}

#[test]
fn live_rollouts_configuration_errors_exit_1_before_the_flag_moves() {
    let bed = bed(18);
    let before = bed.flag_file_bytes();
    let directory = tempfile::tempdir().unwrap();
    let profile_path = profile();
    let text = std::fs::read_to_string(&profile_path).unwrap();
    let misspelled = directory.path().join("misspelled.toml");
    std::fs::write(
        &misspelled,
        text.replace(
            "http_request_duration_seconds_bucket",
            "http_request_duraton_seconds_bucket",
        ),
    )
    .unwrap();
    let cases = [
        (
            "a misspelled metric",
            bed.flag.as_str(),
            misspelled.as_path(),
            "check the metric name",
        ),
        (
            "a flag missing from the file",
            "no-such-flag",
            profile_path.as_path(),
            "no-such-flag",
        ),
    ];
    for (what, flag, profile, expected) in cases {
        let finished = start_canary_on(&bed, flag, profile, &[]).wait();
        assert_eq!(finished.code, 1, "{what}: {}", explain(&finished, &bed));
        assert!(
            finished.stderr.contains(expected),
            "{what}: the message says {expected:?}: {}",
            finished.stderr
        );
        assert_eq!(
            bed.flag_file_bytes(),
            before,
            "{what}: the flag file is untouched"
        );
    }
    // A canary scope that matches nothing shows only once the flag has moved: it goes
    // back where it was, and the run is an error, not a rollback.
    let finished = start_canary(
        &bed,
        &profile(),
        &["--canary-scope", r#"track="canary-typo""#],
    )
    .wait();
    assert_eq!(finished.code, 1, "{}", explain(&finished, &bed));
    assert!(
        finished.stderr.contains(r#"track="canary-typo""#),
        "the message names the scope: {}",
        finished.stderr
    );
    let flag = flag(&bed);
    let before_flag: Value =
        serde_json::from_slice::<Value>(&before).unwrap()["flags"][bed.flag.as_str()].clone();
    assert_eq!(flag["state"], before_flag["state"], "{flag}");
    assert_eq!(bed.state()["canary_percent"], 0.0, "{}", bed.state());
}

/// Issue 12: a look's errors and totals are the counters' increase over the look. The
/// shipped count queries (`cumulative = true`: the counters themselves, differenced per
/// series) are fetched from the live Prometheus and summed over a window; the same
/// window's increase is read straight from the counters with `@` instant queries.
#[test]
fn live_rollouts_a_windows_counts_equal_the_counters_increase() {
    use canary::domain::Profile;
    use canary::scheduler::{Scopes, fetch_window, look_step};
    use canary::sources::prometheus::PrometheusConfig;

    let bed = bed(19);
    bed.set_flag("ENABLED", 25);
    bed.fault(json!({"error_factor": 10.0}));
    std::thread::sleep(Duration::from_secs(25));
    let profile = Profile::parse(
        r#"
name = "counts"
[[metrics]]
name = "error_rate"
kind = "proportion"
errors_query = 'sum by (instance, pod) (http_requests_total{ {{scope}}, code=~"5.." })'
total_query = 'sum by (instance, pod) (http_requests_total{ {{scope}} })'
cumulative = true
[rollout]
step = "5s"
[[stages]]
traffic = 25
duration = "60s"
interval = "20s"
"#,
        "counts.toml",
    )
    .unwrap();
    let stage = profile.plan.as_ref().unwrap().stages[0].clone();
    let scopes = Scopes::from_matchers(r#"track="baseline""#, r#"track="canary""#);
    let source = PrometheusConfig::new(bed.prometheus_url.clone())
        .build()
        .unwrap();
    // Whole seconds two scrapes back, so both ends have been scraped.
    let to = (unix_now() - 2.0).floor();
    let from = to - 20.0;
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let fetched = runtime.block_on(fetch_window(
        &source,
        &profile,
        &scopes,
        (from, to, look_step(&profile, &stage)),
        stage.has_baseline(),
    ));
    for (side, observations) in [("baseline", &fetched.baseline), ("canary", &fetched.canary)] {
        let Some(canary::domain::MetricData::Counts { errors, total, .. }) =
            observations.metrics.get("error_rate")
        else {
            panic!("{side}: no counts: {:?}", observations.problems);
        };
        let sum =
            |samples: &[canary::domain::Sample]| -> f64 { samples.iter().map(|s| s.value).sum() };
        let increase = |matchers: &str| {
            let now = format!("sum(http_requests_total{{{matchers}}} @ {to})");
            let then = format!("sum(http_requests_total{{{matchers}}} @ {from})");
            bed.query_value(&format!("{now} - {then}")).unwrap()
        };
        let track = format!(r#"track="{side}""#);
        let expected_total = increase(&track);
        let expected_errors = increase(&format!(r#"{track}, code=~"5..""#));
        assert!(
            expected_total > 1000.0,
            "{side}: traffic flows: {expected_total}"
        );
        assert!(
            expected_errors > 10.0,
            "{side}: errors happen: {expected_errors}"
        );
        for (what, got, expected) in [
            ("total", sum(total), expected_total),
            ("errors", sum(errors), expected_errors),
        ] {
            assert!(
                (got - expected).abs() <= 0.01 * expected,
                "{side} {what}: the window counted {got}, the counters rose by {expected}"
            );
        }
    }
}

/// Kayenta's API on the live bed: `canary serve` judges windows of the bed's live
/// traffic at 25 % with the Kayenta-judged live profile, as Argo Rollouts' `kayenta`
/// provider asks (`kayenta_api::argo_measurement`): a healthy window is Successful; a
/// window after the canary's latency rose by half and its errors tenfold is Failed.
#[test]
fn live_rollouts_kayenta_executions_pass_a_healthy_window_and_fail_a_faulty_one() {
    use crate::kayenta_api::{KayentaMetric, TOKEN, argo_measurement};
    let bed = bed(22);
    bed.set_flag("ENABLED", 25);
    let (server, _directory) =
        serve_on_bed(&bed, "fixtures/live/kayenta-web-service-60s.toml", TOKEN);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let http = reqwest::Client::new();
    let iso = |seconds: f64| {
        time::OffsetDateTime::from_unix_timestamp(seconds as i64)
            .unwrap()
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap()
    };
    let measure = |start: f64, end: f64| {
        let (start, end) = (iso(start), iso(end));
        let metric = KayentaMetric {
            address: format!("http://argo:{TOKEN}@ADDRESS/kayenta"),
            application: "checkout",
            canary_config_name: "kayenta-web-service-60s",
            metrics_account_name: "live",
            configuration_account_name: "",
            storage_account_name: "",
            pass: 95,
            marginal: 75,
            step: 5,
            control_scope: r#"track="baseline""#,
            experiment_scope: r#"track="canary""#,
            window: (&start, &end),
        };
        let asked = Instant::now();
        let (phase, status) = runtime.block_on(argo_measurement(
            &http,
            &metric,
            server.address(),
            server.address(),
        ));
        eprintln!(
            "kayenta execution {start}..{end}: {phase}, score {}, complete {:.2} s after the POST",
            status["result"]["judgeResult"]["score"]["score"],
            asked.elapsed().as_secs_f64()
        );
        (phase, status)
    };
    // 45 s of traffic at 25 %; the window is the last 40 s, ending two scrapes back.
    std::thread::sleep(Duration::from_secs(45));
    let now = unix_now().floor();
    let (phase, status) = measure(now - 42.0, now - 2.0);
    assert_eq!(phase, "Successful", "healthy: {status:#}\n{}", bed.logs());
    bed.fault(json!({"latency_factor": 1.5, "error_factor": 10.0}));
    let fault_at = unix_now().ceil();
    std::thread::sleep(Duration::from_secs(42));
    let (phase, status) = measure(fault_at + 2.0, unix_now().floor() - 2.0);
    assert_eq!(phase, "Failed", "faulty: {status:#}");
    assert_eq!(status["canary"]["verdict"], "rollback");
    assert_eq!(
        flag(&bed)["state"],
        "ENABLED",
        "an execution never moves the flag"
    );
}

/// `canary serve` on the bed (SQLite, the source `live`, the profile at `profile`),
/// with `token`; the directory holding its files.
fn serve_on_bed(
    bed: &LiveBed,
    profile: &str,
    token: &str,
) -> (crate::helpers::ServeProcess, tempfile::TempDir) {
    let directory = tempfile::tempdir().unwrap();
    let profiles = directory.path().join("profiles");
    std::fs::create_dir(&profiles).unwrap();
    let path = root().join(profile);
    std::fs::copy(&path, profiles.join(path.file_name().unwrap())).unwrap();
    let settings = directory.path().join("settings.toml");
    std::fs::write(
        &settings,
        format!(
            r#"
[server]
bind = "127.0.0.1:0"
auth_token = "{token}"
[store]
url = "sqlite:{store}"
[profiles]
directory = "{profiles}"
[sources.live]
kind = "prometheus"
url = "{prometheus}"
[worker]
poll_interval = "100ms"
"#,
            store = directory.path().join("canary.db").display(),
            profiles = profiles.display(),
            prometheus = bed.prometheus_url,
        ),
    )
    .unwrap();
    (crate::helpers::spawn_serve(&settings, &[]), directory)
}

/// Flagger's webhooks on the live bed at 25 %, judged by canary's one-shot judge with
/// the live web-service profile: on healthy traffic `rollout` and `confirm-promotion`
/// pass and `rollback` does not signal; once the canary's latency rose by half and its
/// errors tenfold, `rollout` fails its check and `rollback` signals Flagger to roll back.
///
/// The bed's seed gives the canary one slow pod (8 % above the fleet) and so three pods
/// 5.9 % slower on average than the baseline's, the same version: beyond the profile's
/// 5 % tolerance for latency_p95, within what three hosts a side 3 % apart can do. A
/// one-shot judgement that pooled the pods' points rolled such canaries back (seed 23,
/// pods 4.4 % apart, did so now and then in the parallel live runs); it must allow
/// for the pods.
#[test]
fn live_rollouts_flagger_webhooks_pass_healthy_traffic_and_roll_back_a_fault() {
    use crate::flagger::{call, payload};
    let bed = bed(64);
    let pods = bed.state()["pods"].as_array().unwrap().clone();
    let level = |track: &str| {
        let speeds: Vec<f64> = pods
            .iter()
            .filter(|pod| pod["track"] == track)
            .map(|pod| pod["speed_factor"].as_f64().unwrap().ln())
            .collect();
        speeds.iter().sum::<f64>() / speeds.len() as f64
    };
    let apart = (level("canary") - level("baseline")).exp_m1();
    assert!(
        (0.055..0.065).contains(&apart),
        "the premise: the canary's pods are slower by 5.5-6.5 %, not {apart}: {pods:?}"
    );
    bed.set_flag("ENABLED", 25);
    let (server, _directory) = serve_on_bed(
        &bed,
        "fixtures/live/web-service-60s.toml",
        crate::flagger::TOKEN,
    );
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let http = reqwest::Client::new();
    let metadata = json!({
        "profile": "web-service-60s",
        "baseline_scope": "track=\"baseline\"",
        "canary_scope": "track=\"canary\"",
        "window": "40s",
        "step": "5s",
    });
    let hook = |name: &str| {
        let asked = Instant::now();
        let (status, body) = runtime.block_on(call(
            &http,
            &server.url,
            name,
            payload("Progressing", "7f9c2ba4e8", &metadata),
        ));
        eprintln!(
            "flagger {name}: {status} in {:.2} s: {}",
            asked.elapsed().as_secs_f64(),
            body.get("reasons").or(body.get("error")).unwrap_or(&body)
        );
        (status, body)
    };
    assert_eq!(hook("pre-rollout").0, 200);
    std::thread::sleep(Duration::from_secs(45));
    let (status, body) = hook("rollout");
    assert_eq!(status, 200, "healthy: {body:#}\n{}", bed.logs());
    assert_eq!(body["verdict"], "promote");
    assert_eq!(hook("confirm-promotion").0, 200);
    assert_eq!(
        hook("rollback").0,
        409,
        "healthy traffic signals no rollback"
    );
    bed.fault(json!({"latency_factor": 1.5, "error_factor": 10.0}));
    std::thread::sleep(Duration::from_secs(42));
    let (status, body) = hook("rollout");
    assert_eq!(status, 412, "faulty: {body:#}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("verdict is rollback"),
        "{body:#}"
    );
    let (status, body) = hook("rollback");
    assert_eq!(status, 200, "the fault signals a rollback: {body:#}");
    assert_eq!(
        flag(&bed)["state"],
        "ENABLED",
        "canary moves no flag under Flagger"
    );
}

fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}
