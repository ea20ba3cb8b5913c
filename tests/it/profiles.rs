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
        .filter(|line| !line.starts_with("  stage "))
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
