//! Every shipped profile is valid.

use crate::helpers::{canary, root};

#[test]
fn every_shipped_profile_validates() {
    let mut profiles: Vec<String> = std::fs::read_dir(root().join("analysis-profiles"))
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|e| e == "toml"))
        .map(|path| path.strip_prefix(root()).unwrap().display().to_string())
        .collect();
    profiles.sort();
    assert!(!profiles.is_empty());
    let mut args = vec!["check-profile".to_owned()];
    args.extend(profiles.iter().cloned());
    let run = canary(&args);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let summaries: Vec<&str> = run
        .stdout
        .lines()
        .filter(|line| !line.starts_with("  "))
        .collect();
    assert_eq!(summaries.len(), profiles.len(), "{}", run.stdout);
    // Every stage says what it compares against; at 100 % there is no baseline.
    for line in run
        .stdout
        .lines()
        .filter(|line| line.starts_with("  stage "))
    {
        assert!(
            line.ends_with("compared with the live baseline") || line.contains("no baseline"),
            "{line}"
        );
        if line.contains("(100%,") {
            assert!(line.contains("no baseline: triggers"), "{line}");
        }
    }
}

/// Issue 12: a plan whose looks bring two points per side (a 10 s interval at a 5 s
/// step) is valid, but check-profile warns that the tails check compares only every few
/// looks, naming the stage, the metric and the numbers.
#[test]
fn check_profile_warns_when_looks_are_too_short_for_a_check() {
    let directory = tempfile::tempdir().unwrap();
    let path = directory.path().join("live.toml");
    std::fs::write(
        &path,
        r#"
name = "live"
[[metrics]]
name = "latency"
kind = "continuous"
tails = true
[[metrics]]
name = "errors"
kind = "proportion"
bursts = "10s"
[rollout]
step = "5s"
[[stages]]
name = "pilot"
traffic = 5
duration = "5m"
interval = "10s"
"#,
    )
    .unwrap();
    let run = canary(["check-profile", path.to_str().unwrap()]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let lines: Vec<&str> = run
        .stdout
        .lines()
        .filter(|line| !line.starts_with("  stage ") && !line.starts_with("  queries: "))
        .collect();
    assert_eq!(lines.len(), 3, "{}", run.stdout);
    assert!(
        lines[0].contains(": ok: profile \"live\""),
        "{}",
        run.stdout
    );
    assert!(
        lines[1].ends_with(
            "live.toml: warning: stage \"pilot\", metric \"latency\": a look every 10s at a step \
             of 5s brings 2 points per side; the tails check compares spread over 5 points per \
             side, so only every 3 looks (give the interval at least 5 steps)"
        ),
        "{}",
        run.stdout
    );
    assert!(
        lines[2].contains("warning: metric \"errors\": its bursts window 10s is 2 steps of 5s"),
        "{}",
        run.stdout
    );
}

/// The compressed seed profiles the live bed runs (`fixtures/live/`, see
/// `live_rollouts::seeds`) are the shipped ones but for what the README's "Seed
/// profiles on the live bed" documents: the name and description, the step, the hold
/// timeout and the progressive rollback's length, every stage's duration, interval and
/// lookback, the triggers' `for` and `window`, and lower `min_samples`. Every duration
/// is shorter; metric names, queries, thresholds, stages, triggers and every other
/// setting are the same.
#[test]
fn every_live_seed_profile_differs_from_its_shipped_profile_only_in_durations_and_minimum_samples()
{
    const ALLOWED: [&str; 11] = [
        "name",
        "description",
        "rollout.step",
        "rollout.hold_timeout",
        "rollout.rollback_over",
        "stages[].duration",
        "stages[].interval",
        "stages[].lookback",
        "triggers[].for",
        "triggers[].window",
        "metrics[].min_samples",
    ];
    for seed in [
        "cohort-migration",
        "dark-launch",
        "protocol-transport",
        "staged-ga",
        "v2-1-0-canary",
    ] {
        let read = |path: String| -> toml::Value {
            toml::from_str(&std::fs::read_to_string(root().join(&path)).unwrap())
                .unwrap_or_else(|error| panic!("{path}: {error}"))
        };
        let shipped = read(format!("analysis-profiles/{seed}.toml"));
        let live = read(format!("fixtures/live/{seed}.toml"));
        let mut differences = Vec::new();
        diff_values("", &shipped, &live, &mut differences);
        assert!(
            !differences.is_empty(),
            "{seed}: the copy is not compressed"
        );
        for (path, before, after) in &differences {
            let pattern = strip_indices(path);
            assert!(
                ALLOWED.contains(&pattern.as_str()),
                "{seed}: {path} differs ({before} → {after}), which the live copy may not change"
            );
            if pattern == "metrics[].min_samples" {
                assert!(
                    after.as_integer() < before.as_integer(),
                    "{seed}: {path} may only be lowered"
                );
            } else if pattern != "name" && pattern != "description" {
                let seconds = |value: &toml::Value| {
                    canary::domain::HumanDuration::parse(value.as_str().unwrap())
                        .unwrap()
                        .seconds()
                };
                assert!(
                    seconds(after) < seconds(before),
                    "{seed}: {path} may only be shortened ({before} → {after})"
                );
            }
        }
        // And the live copy runs: check-profile accepts it.
        let run = canary(&[
            "check-profile".to_owned(),
            format!("fixtures/live/{seed}.toml"),
        ]);
        assert_eq!(run.code, 0, "{seed}: {}", run.stderr);
    }
}

/// Every leaf where `a` and `b` differ: its path (`stages[2].duration`) and both values
/// (an absent one as the string `<absent>`).
fn diff_values(
    path: &str,
    a: &toml::Value,
    b: &toml::Value,
    out: &mut Vec<(String, toml::Value, toml::Value)>,
) {
    let absent = || toml::Value::String("<absent>".to_owned());
    match (a, b) {
        (toml::Value::Table(a), toml::Value::Table(b)) => {
            let keys: std::collections::BTreeSet<&String> = a.keys().chain(b.keys()).collect();
            for key in keys {
                let child = if path.is_empty() {
                    key.clone()
                } else {
                    format!("{path}.{key}")
                };
                match (a.get(key), b.get(key)) {
                    (Some(x), Some(y)) => diff_values(&child, x, y, out),
                    (x, y) => out.push((
                        child,
                        x.cloned().unwrap_or_else(absent),
                        y.cloned().unwrap_or_else(absent),
                    )),
                }
            }
        }
        (toml::Value::Array(a), toml::Value::Array(b)) if a.len() == b.len() => {
            for (index, (x, y)) in a.iter().zip(b).enumerate() {
                diff_values(&format!("{path}[{index}]"), x, y, out);
            }
        }
        _ if a != b => out.push((path.to_owned(), a.clone(), b.clone())),
        _ => {}
    }
}

/// `stages[2].duration` → `stages[].duration`.
fn strip_indices(path: &str) -> String {
    let mut out = String::new();
    let mut in_index = false;
    for c in path.chars() {
        match c {
            '[' => {
                in_index = true;
                out.push('[');
            }
            ']' => {
                in_index = false;
                out.push(']');
            }
            _ if in_index => {}
            _ => out.push(c),
        }
    }
    out
}

/// Issue 14: `check-profile` says which comparative metrics' queries aggregate their
/// instances away, so the judge cannot allow for host differences; the live plan's
/// per-pod p95 is not among them.
#[test]
fn check_profile_notes_queries_that_hide_the_instances() {
    let run = canary([
        "check-profile",
        root()
            .join("fixtures/live/web-service-60s.toml")
            .to_str()
            .unwrap(),
    ]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let notes: Vec<&str> = run
        .stdout
        .lines()
        .filter(|line| line.starts_with("  note: "))
        .collect();
    assert_eq!(notes.len(), 2, "{}", run.stdout);
    assert!(notes[0].contains("metric \"cpu_usage\""), "{}", run.stdout);
    assert!(notes[0].contains("(`avg(...)`)"), "{}", run.stdout);
    assert!(
        !run.stdout.contains("note: metric \"latency_p95\""),
        "{}",
        run.stdout
    );
}

/// Issue 14: `check-profile --traffic` says per stage how long each metric needs for
/// its `min_samples` at the service's traffic, and warns of a stage that cannot gather
/// them within its max_duration; the profile stays valid (exit 0).
#[test]
fn check_profile_with_traffic_says_how_long_each_stage_needs_for_its_samples() {
    let profile = root().join("analysis-profiles/web-service.toml");
    let profile = profile.to_str().unwrap();
    let low = canary(["check-profile", profile, "--traffic", "10"]);
    assert_eq!(low.code, 0, "{}", low.stderr);
    // 10 requests/s, 1 % a side: 1,000 events take 100,000 / 36 s ≈ 2 h 47 min.
    let row = low
        .stdout
        .lines()
        .find(|line| line.trim_start().starts_with("1%") && line.contains("error_rate"))
        .unwrap_or_else(|| panic!("a row for error_rate at 1 %: {}", low.stdout));
    assert!(
        row.contains("36 events") && row.contains("2 h 47 min"),
        "{row}"
    );
    assert!(
        low.stdout.contains(
            "warning: at 10 requests/s stage 1% needs 2 h 47 min to gather metric \"error_rate\"'s 1,000 events, beyond its max_duration 6m"
        ),
        "{}",
        low.stdout
    );
    // The stage without a baseline compares nothing and gets no row.
    assert!(
        !low.stdout
            .lines()
            .any(|l| l.trim_start().starts_with("100%  "))
    );
    let high = canary(["check-profile", profile, "--traffic", "10000"]);
    assert_eq!(high.code, 0, "{}", high.stderr);
    assert!(!high.stdout.contains("warning: at"), "{}", high.stdout);
    let zero = canary(["check-profile", profile, "--traffic", "0"]);
    assert_eq!(zero.code, 1, "a usage error (1, never a verdict's code)");
    assert!(zero.stderr.contains("--traffic"), "{}", zero.stderr);
}
