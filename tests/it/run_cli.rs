//! `canary run` through the real binary on the recorded replays: exit codes, the flag
//! file it moves, dry runs, and bad configuration refused before anything is actuated.

use std::path::{Path, PathBuf};

use crate::helpers::{Run, canary, root};

fn demo_flags(directory: &Path) -> PathBuf {
    let path = directory.join("flags.json");
    std::fs::copy(root().join("fixtures/flags.json"), &path).unwrap();
    path
}

fn run(replay: &str, flag: &str, actuator: &str, extra: &[&str]) -> Run {
    let mut args = vec![
        "run".to_owned(),
        "--profile".to_owned(),
        "analysis-profiles/web-service.toml".to_owned(),
        "--source".to_owned(),
        format!("replay=fixtures/replay/{replay}"),
        "--flag".to_owned(),
        flag.to_owned(),
        "--actuator".to_owned(),
        actuator.to_owned(),
        "--speed".to_owned(),
        "100000".to_owned(),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    canary(args)
}

fn flag_json(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

#[test]
fn a_healthy_replay_is_promoted_and_the_flag_file_ends_at_100_percent() {
    let directory = tempfile::tempdir().unwrap();
    let flags = demo_flags(directory.path());
    let result = run(
        "healthy",
        "checkout-v2",
        &format!("flagd-file={}", flags.display()),
        &[],
    );
    assert_eq!(result.code, 0, "{}\n{}", result.stdout, result.stderr);
    assert!(
        result.stdout.starts_with("rollout: PROMOTE"),
        "{}",
        result.stdout
    );
    for stage in [
        "1%: passed",
        "5%: passed",
        "25%: passed",
        "50%: passed",
        "100%: passed",
    ] {
        assert!(
            result.stdout.contains(stage),
            "{stage} in {}",
            result.stdout
        );
    }
    let flag = &flag_json(&flags)["flags"]["checkout-v2"];
    assert_eq!(flag["state"], "ENABLED");
    assert_eq!(
        flag["targeting"]["fractional"][1],
        serde_json::json!(["on", 100])
    );
}

#[test]
fn a_regressing_replay_is_rolled_back_at_25_percent_and_only_its_flag_is_switched_off() {
    let directory = tempfile::tempdir().unwrap();
    let flags = demo_flags(directory.path());
    let before = flag_json(&flags);
    let result = run(
        "latency-regression",
        "search-v3",
        &format!("flagd-file={}", flags.display()),
        &["--format", "json"],
    );
    assert_eq!(result.code, 3, "{}\n{}", result.stdout, result.stderr);
    let summary: serde_json::Value = serde_json::from_str(&result.stdout).unwrap();
    assert_eq!(summary["verdict"], "rollback");
    assert_eq!(summary["stages_passed"], serde_json::json!(["1%", "5%"]));
    let last_look = summary["history"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .clone();
    assert_eq!(last_look["stage"], "25%");
    assert!(
        last_look["reasons"][0]
            .as_str()
            .unwrap()
            .starts_with("latency_p95 (critical) failed"),
        "{last_look:#}"
    );
    let after = flag_json(&flags);
    assert_eq!(after["flags"]["search-v3"]["state"], "DISABLED");
    for untouched in ["checkout-v2", "dark-mode"] {
        assert_eq!(
            after["flags"][untouched], before["flags"][untouched],
            "{untouched}"
        );
    }
    assert_eq!(after["$schema"], before["$schema"]);
}

#[test]
fn a_dry_run_judges_the_same_way_and_never_touches_the_flag_file() {
    let directory = tempfile::tempdir().unwrap();
    let flags = demo_flags(directory.path());
    let before = std::fs::read(&flags).unwrap();
    let result = run(
        "latency-regression",
        "search-v3",
        &format!("flagd-file={}", flags.display()),
        &["--dry-run"],
    );
    assert_eq!(result.code, 3, "{}\n{}", result.stdout, result.stderr);
    assert!(
        result.stdout.contains("dry run: the flag was not changed"),
        "{}",
        result.stdout
    );
    assert_eq!(std::fs::read(&flags).unwrap(), before, "byte for byte");
}

/// Issue 12: a dry run said `rolled_back` though nothing changed.
#[test]
fn a_dry_run_says_it_would_roll_back_and_never_that_it_rolled_back() {
    let directory = tempfile::tempdir().unwrap();
    let flags = demo_flags(directory.path());
    let before = std::fs::read(&flags).unwrap();
    let report = directory.path().join("report.html");
    let actuator = format!("flagd-file={}", flags.display());
    let text = run(
        "latency-regression",
        "search-v3",
        &actuator,
        &["--dry-run", "--report", report.to_str().unwrap()],
    );
    assert_eq!(text.code, 3, "{}\n{}", text.stdout, text.stderr);
    assert!(
        text.stdout.starts_with("rollout: WOULD ROLL BACK"),
        "{}",
        text.stdout
    );
    assert!(
        text.stdout.contains("25%: WOULD ROLL BACK"),
        "{}",
        text.stdout
    );
    assert!(
        text.stdout
            .contains("dry run: a real run would roll the flag back here"),
        "{}",
        text.stdout
    );
    assert!(text.stdout.contains("would kill"), "{}", text.stdout);
    let page = std::fs::read_to_string(&report).unwrap();
    assert!(
        page.contains("Would roll back (dry run)"),
        "the HTML headline"
    );
    assert!(page.contains("would roll back"), "the HTML state");
    for printed in [&text.stdout, &text.stderr, &page] {
        let lower = printed.to_lowercase();
        for word in [
            "rolled back",
            "rolled_back",
            "kill switch pulled",
            "switched off",
        ] {
            assert!(!lower.contains(word), "{word:?} in a dry run's output");
        }
    }

    let json = run(
        "latency-regression",
        "search-v3",
        &actuator,
        &["--dry-run", "--format", "json"],
    );
    assert_eq!(json.code, 3, "the exit code is the verdict's");
    let summary: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(summary["dry_run"], true);
    assert_eq!(summary["status"], "would_roll_back");
    assert_eq!(summary["verdict"], "rollback");
    assert_eq!(std::fs::read(&flags).unwrap(), before, "byte for byte");
}

/// Issue 12: an actuator error whose message includes its cause was printed twice.
#[test]
fn a_flag_missing_from_the_flag_file_is_reported_once() {
    let directory = tempfile::tempdir().unwrap();
    let flags = demo_flags(directory.path());
    let result = run(
        "healthy",
        "no-such-flag",
        &format!("flagd-file={}", flags.display()),
        &[],
    );
    assert_eq!(result.code, 1, "{}", result.stderr);
    assert_eq!(
        result.stderr.matches("not found in").count(),
        1,
        "{}",
        result.stderr
    );
    assert!(
        result.stderr.starts_with(
            "error: flag \"no-such-flag\" cannot be actuated: flag \"no-such-flag\" not found in"
        ),
        "{}",
        result.stderr
    );
}

#[test]
fn bad_configuration_is_refused_before_anything_is_actuated() {
    let directory = tempfile::tempdir().unwrap();
    let flags = demo_flags(directory.path());
    let before = std::fs::read(&flags).unwrap();
    let flagd = format!("flagd-file={}", flags.display());
    let missing_file = format!(
        "flagd-file={}",
        directory.path().join("nope.json").display()
    );
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["--source", "splunk=http://x"], "prometheus=URL"),
        (vec!["--actuator", "consul=http://x"], "flagd-file=PATH"),
        (vec!["--actuator", &missing_file], "nope.json"),
        (
            vec![
                "--actuator",
                "unleash=http://127.0.0.1:9,environment=production,token-env=CANARY_TEST_UNSET_UNLEASH_TOKEN",
            ],
            "CANARY_TEST_UNSET_UNLEASH_TOKEN, which should hold the Unleash admin API token, is not set",
        ),
        (vec!["--flag", "no-such-flag"], "no-such-flag"),
    ];
    for (overrides, needle) in cases {
        let mut args = vec![
            "run",
            "--profile",
            "analysis-profiles/web-service.toml",
            "--source",
            "replay=fixtures/replay/healthy",
            "--flag",
            "checkout-v2",
            "--actuator",
            &flagd,
            "--speed",
            "100000",
        ];
        for pair in overrides.chunks(2) {
            let position = args.iter().position(|a| *a == pair[0]).unwrap();
            args[position + 1] = pair[1];
        }
        let result = canary(&args);
        assert_eq!(result.code, 1, "{overrides:?}: {}", result.stderr);
        assert_eq!(result.stdout, "", "{overrides:?}");
        assert!(
            result.stderr.contains(needle),
            "{overrides:?}: {needle:?} in {}",
            result.stderr
        );
    }
    let no_plan = canary([
        "run",
        "--profile",
        "fixtures/bad-input/bad-confidence.toml",
        "--source",
        "replay=fixtures/replay/healthy",
        "--flag",
        "checkout-v2",
    ]);
    assert_eq!(no_plan.code, 1);
    assert!(
        no_plan.stderr.contains("bad-confidence.toml:4:"),
        "{}",
        no_plan.stderr
    );
    assert_eq!(
        std::fs::read(&flags).unwrap(),
        before,
        "nothing was actuated"
    );
}

#[test]
fn a_profile_without_stages_cannot_be_run() {
    let directory = tempfile::tempdir().unwrap();
    let profile = directory.path().join("no-plan.toml");
    std::fs::write(
        &profile,
        "name = \"no-plan\"\n[[metrics]]\nname = \"latency_p95\"\nkind = \"continuous\"\n",
    )
    .unwrap();
    let result = canary([
        "run",
        "--profile",
        profile.to_str().unwrap(),
        "--source",
        "replay=fixtures/replay/healthy",
        "--flag",
        "checkout-v2",
    ]);
    assert_eq!(result.code, 1);
    assert!(
        result.stderr.contains("no rollout plan"),
        "{}",
        result.stderr
    );
}

#[test]
fn run_help_documents_sources_actuators_and_exit_codes() {
    let help = canary(["run", "--help"]);
    assert_eq!(help.code, 0);
    for needle in [
        "prometheus=URL",
        "replay=DIR",
        "flagd-file=PATH",
        "unleash=URL,environment=ENV",
        "--dry-run",
        "would_roll_back",
        "3  rollback",
    ] {
        assert!(help.stdout.contains(needle), "{needle} in {}", help.stdout);
    }
}

/// Issue 12: with Prometheus down, every retry of every query logged a coloured warning
/// carrying the whole query URL, even into a log file.
#[test]
fn a_prometheus_that_is_down_gets_one_plain_warning_and_an_error_without_the_query_url() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    drop(listener);
    let result = canary([
        "run",
        "--profile",
        "analysis-profiles/web-service.toml",
        "--source",
        &format!("prometheus=http://{address}"),
        "--flag",
        "checkout-v2",
        "--dry-run",
    ]);
    assert_eq!(result.code, 1, "{}", result.stderr);
    assert!(
        !result.stderr.contains('\u{1b}'),
        "ANSI codes in a pipe: {:?}",
        result.stderr
    );
    assert_eq!(
        result
            .stderr
            .matches("metric source request failed")
            .count(),
        1,
        "repeats are collapsed: {}",
        result.stderr
    );
    assert!(
        result
            .stderr
            .contains(&format!("prometheus:http://{address}")),
        "the source is named: {}",
        result.stderr
    );
    assert!(
        !result.stderr.contains("/api/v1/query"),
        "no query URL: {}",
        result.stderr
    );
}

/// Writes a replay directory whose one baseline host and one canary host serve
/// lognormal latencies around 200 ms, the canary's host `canary_factor` slower, with
/// or without the `instance` column, and a sequential profile that tolerates +5 %.
fn host_replay(directory: &Path, canary_factor: f64, with_instance: bool) -> PathBuf {
    let profile = directory.join("hosts.toml");
    std::fs::write(
        &profile,
        r#"name = "hosts"
[judge]
mode = "sequential"
[rollout]
step = "15s"
[[stages]]
traffic = 10
duration = "10m"
interval = "1m"
[[stages]]
traffic = 50
duration = "10m"
interval = "1m"
[[metrics]]
name = "latency"
kind = "continuous"
allowed_increase = 0.05
min_samples = 10
query = 'latency{ {{scope}} }'
"#,
    )
    .unwrap();
    let replay = directory.join("replay");
    std::fs::create_dir_all(&replay).unwrap();
    // A fixed generator, so the test sees the same data every time.
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut normal = move || {
        let mut unit = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            ((state >> 11) as f64 + 0.5) / (1u64 << 53) as f64
        };
        let (u, v) = (unit(), unit());
        (-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos()
    };
    for (side, factor, host) in [("baseline", 1.0, "b-1"), ("canary", canary_factor, "c-1")] {
        let mut text = if with_instance {
            "metric,timestamp,value,instance\n".to_owned()
        } else {
            "metric,timestamp,value\n".to_owned()
        };
        for step in 0..(20 * 4 + 8) {
            let value = 0.2 * factor * (0.1 * normal()).exp();
            let timestamp = 1_700_000_000 + 15 * step;
            text.push_str(&format!("latency,{timestamp},{value:.6}"));
            if with_instance {
                text.push_str(&format!(",{host}"));
            }
            text.push('\n');
        }
        std::fs::write(replay.join(format!("{side}.csv")), text).unwrap();
    }
    profile
}

/// Issue 14: a replay whose rows name their instance lets the judge allow for host
/// differences. One canary host 10 % slower than the one baseline host is as likely a
/// slower host as a slower version (hosts differ by a few percent): named, the run
/// does not roll it back; the same values without the instance column are pooled as
/// independent requests and the shift is taken for a regression.
#[test]
fn a_replay_with_an_instance_column_allows_for_a_slower_host() {
    for (with_instance, expected) in [(true, 0), (false, 3)] {
        let directory = tempfile::tempdir().unwrap();
        let profile = host_replay(directory.path(), 1.10, with_instance);
        let result = canary([
            "run".to_owned(),
            "--profile".to_owned(),
            profile.display().to_string(),
            "--source".to_owned(),
            format!("replay={}", directory.path().join("replay").display()),
            "--flag".to_owned(),
            "hosts".to_owned(),
            "--actuator".to_owned(),
            "log-only".to_owned(),
            "--speed".to_owned(),
            "100000".to_owned(),
        ]);
        assert_eq!(
            result.code, expected,
            "with the instance column: {with_instance}\n{}\n{}",
            result.stdout, result.stderr
        );
    }
}

/// A staged rollout judged by Kayenta's judge (`fixtures/kayenta/web-service-rollout.toml`)
/// on the recorded series: the healthy canary goes to 100 %, the one whose p95 rises
/// about 20 % at 25 % is failed critically there and switched off.
#[test]
fn a_rollout_judged_by_kayentas_judge_promotes_the_healthy_replay_and_rolls_back_the_regression() {
    for (replay, code, expected) in [
        ("healthy", 0, "100%: passed"),
        ("latency-regression", 3, "25%: ROLLED BACK"),
    ] {
        let directory = tempfile::tempdir().unwrap();
        let flags = demo_flags(directory.path());
        let result = canary([
            "run",
            "--profile",
            "fixtures/kayenta/web-service-rollout.toml",
            "--source",
            &format!("replay=fixtures/replay/{replay}"),
            "--flag",
            "checkout-v2",
            "--actuator",
            &format!("flagd-file={}", flags.display()),
            "--speed",
            "100000",
        ]);
        assert_eq!(
            result.code, code,
            "{replay}: {}\n{}",
            result.stdout, result.stderr
        );
        assert!(
            result.stdout.contains(expected),
            "{replay}: {}",
            result.stdout
        );
        if code == 3 {
            assert!(
                result.stdout.contains("classified as High (Critical)"),
                "{}",
                result.stdout
            );
            let flag = &flag_json(&flags)["flags"]["checkout-v2"];
            assert_eq!(flag["state"], "DISABLED", "{flag}");
        }
    }
}
