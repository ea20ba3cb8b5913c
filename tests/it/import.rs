//! `canary import kayenta` through the real binary: a Kayenta sample config becomes a
//! profile `check-profile` accepts and `analyze` judges, with what could not be
//! carried over on stderr; an existing file is never replaced without `--force`.

use crate::helpers::canary;

#[test]
fn an_imported_kayenta_config_is_a_profile_that_judges_as_kayenta_and_is_never_written_over() {
    let directory = tempfile::tempdir().unwrap();
    let output = directory.path().join("imported.toml");
    let output_arg = output.to_str().unwrap();
    let config = "fixtures/kayenta/configs/prometheus-integration-test-cpu.json";

    // To stdout, with the notes on stderr.
    let run = canary(["import", "kayenta", config]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        run.stdout.contains("algorithm = \"kayenta\""),
        "{}",
        run.stdout
    );
    assert!(
        run.stderr.contains(
            "not carried over: metric \"CPU_usage_for_service\": its query uses ${namespace}"
        ),
        "{}",
        run.stderr
    );

    // To a file, with a variable filled in; the file is a valid profile.
    let run = canary([
        "import",
        "kayenta",
        config,
        "--var",
        "namespace=prod",
        "--output",
        output_arg,
    ]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        run.stdout.starts_with(&format!("wrote {output_arg}")),
        "{}",
        run.stdout
    );
    let written = std::fs::read_to_string(&output).unwrap();
    assert!(written.contains("namespace='prod'"), "{written}");
    let check = canary(["check-profile", output_arg]);
    assert_eq!(check.code, 0, "{}", check.stdout);
    assert!(check.stdout.contains("Kayenta's judge"), "{}", check.stdout);

    // Never over an existing file without --force; what is there stays.
    std::fs::write(&output, "# mine\n").unwrap();
    let run = canary(["import", "kayenta", config, "--output", output_arg]);
    assert_eq!(run.code, 1);
    assert!(run.stderr.contains("--force"), "{}", run.stderr);
    assert_eq!(std::fs::read_to_string(&output).unwrap(), "# mine\n");
    let run = canary([
        "import", "kayenta", config, "--output", output_arg, "--force",
    ]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_ne!(std::fs::read_to_string(&output).unwrap(), "# mine\n");

    // Bad JSON names the file and line; `${scope}` is not a variable.
    let bad = directory.path().join("bad.json");
    std::fs::write(&bad, "{\n  \"metrics\": [\n    {\"name\": 3}\n  ]\n}\n").unwrap();
    let run = canary(["import", "kayenta", bad.to_str().unwrap()]);
    assert_eq!(run.code, 1);
    assert!(run.stderr.contains("bad.json:3:"), "{}", run.stderr);
    let run = canary(["import", "kayenta", config, "--var", "scope=x"]);
    assert_eq!(run.code, 1, "a usage error: {}", run.stderr);
    assert!(run.stderr.contains("{{scope}}"), "{}", run.stderr);
}

/// The imported profile judges recorded data: the same latency regression that
/// `kayenta-web-service.toml` rolls back, under the profile Kayenta's config gives.
#[test]
fn an_imported_profile_judges_recorded_data() {
    let directory = tempfile::tempdir().unwrap();
    let config = directory.path().join("latency.json");
    std::fs::write(
        &config,
        r#"{
  "name": "latency-only",
  "judge": {"name": "NetflixACAJudge-v1.0", "judgeConfigurations": {}},
  "metrics": [{
    "name": "latency_p95",
    "query": {"type": "prometheus", "customInlineTemplate": "PromQL:histogram_quantile(0.95, sum by (le) (rate(http_request_duration_seconds_bucket{version=\"${scope}\"}[1m])))"},
    "groups": ["latency"],
    "analysisConfigurations": {"canary": {"direction": "increase", "effectSize": {"allowedIncrease": 1.1}}}
  }],
  "classifier": {"groupWeights": {"latency": 100}, "scoreThresholds": {"pass": 95, "marginal": 75}}
}"#,
    )
    .unwrap();
    let profile = directory.path().join("latency.toml");
    let run = canary([
        "import",
        "kayenta",
        config.to_str().unwrap(),
        "--output",
        profile.to_str().unwrap(),
    ]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let text = std::fs::read_to_string(&profile).unwrap();
    assert!(
        text.contains("rate(http_request_duration_seconds_bucket{{{scope}}}[1m])"),
        "{text}"
    );
    // fixtures/kayenta/latency-regression holds latency_p95 and two more metrics; keep
    // latency_p95 only.
    for side in ["baseline", "canary"] {
        let all = std::fs::read_to_string(format!(
            "{}/fixtures/kayenta/latency-regression/{side}.csv",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap();
        let kept: String = all
            .lines()
            .filter(|line| line.starts_with("metric,") || line.starts_with("latency_p95,"))
            .map(|line| format!("{line}\n"))
            .collect();
        std::fs::write(directory.path().join(format!("{side}.csv")), kept).unwrap();
    }
    let run = canary([
        "analyze",
        "--profile",
        profile.to_str().unwrap(),
        "--baseline",
        directory.path().join("baseline.csv").to_str().unwrap(),
        "--canary",
        directory.path().join("canary.csv").to_str().unwrap(),
        "--format",
        "json",
    ]);
    assert_eq!(run.code, 3, "rollback: {}", run.stdout);
    let report: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(report["score"], 0.0, "{report}");
}
