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
