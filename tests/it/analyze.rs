//! The recorded scenarios in `fixtures/scenarios/`, run through the real binary.

use std::path::Path;

use serde_json::Value;

use crate::helpers::{analyze, canary, root};

fn data_file(directory: &Path, side: &str) -> std::path::PathBuf {
    let csv = directory.join(format!("{side}.csv"));
    if csv.exists() {
        csv
    } else {
        directory.join(format!("{side}.json"))
    }
}

fn scenario(name: &str) -> (Run2, Value) {
    let directory = Path::new("fixtures/scenarios").join(name);
    let expected: Value = serde_json::from_str(
        &std::fs::read_to_string(root().join(&directory).join("expected.json")).unwrap(),
    )
    .unwrap();
    let abs = root().join(&directory);
    let baseline = data_file(&abs, "baseline")
        .strip_prefix(root())
        .unwrap()
        .to_owned();
    let canary_file = data_file(&abs, "canary")
        .strip_prefix(root())
        .unwrap()
        .to_owned();
    let run = analyze(&baseline, &canary_file, "json");
    assert_eq!(run.stderr, "", "{name}: nothing on stderr");
    let report: Value = serde_json::from_str(&run.stdout)
        .unwrap_or_else(|e| panic!("{name}: stdout is one JSON object ({e}): {}", run.stdout));
    (
        Run2 {
            code: run.code,
            report,
        },
        expected,
    )
}

struct Run2 {
    code: i32,
    report: Value,
}

fn exit_code_for(verdict: &str) -> i32 {
    match verdict {
        "promote" => 0,
        "hold" => 2,
        "rollback" => 3,
        other => panic!("unknown verdict {other}"),
    }
}

fn metric<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["metrics"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == name)
        .unwrap_or_else(|| panic!("metric {name} in the report"))
}

#[test]
fn every_recorded_scenario_reaches_its_expected_verdict_and_exit_code() {
    let mut names: Vec<String> = std::fs::read_dir(root().join("fixtures/scenarios"))
        .unwrap()
        .filter_map(|entry| {
            let entry = entry.unwrap();
            entry
                .file_type()
                .unwrap()
                .is_dir()
                .then(|| entry.file_name().into_string().unwrap())
        })
        .collect();
    names.sort();
    assert!(names.len() >= 8, "the scenarios are all there: {names:?}");
    for name in names {
        let (run, expected) = scenario(&name);
        let verdict = expected["verdict"].as_str().unwrap();
        assert_eq!(
            run.report["verdict"], verdict,
            "{name}: {}\nreasons: {:#}",
            expected["why"], run.report["reasons"]
        );
        assert_eq!(run.code, exit_code_for(verdict), "{name}: exit code");
    }
}

#[test]
fn the_json_report_carries_the_documented_fields() {
    let (run, _) = scenario("latency-regression");
    let report = run.report;
    assert_eq!(report["schema_version"], 1);
    assert!(report["score"].is_number());
    assert!(!report["reasons"].as_array().unwrap().is_empty());
    for metric in report["metrics"].as_array().unwrap() {
        for field in [
            "name",
            "kind",
            "classification",
            "reason",
            "baseline",
            "canary",
            "p_value",
            "shift_estimate",
            "shift_ci",
            "effect_size",
        ] {
            assert!(metric.get(field).is_some(), "{field} in {metric:#}");
        }
        for side in ["baseline", "canary"] {
            for field in ["n", "mean", "median"] {
                assert!(
                    metric[side].get(field).is_some(),
                    "{side}.{field} in {metric:#}"
                );
            }
        }
    }
    let latency = metric(&report, "latency_p95");
    assert_eq!(latency["classification"], "fail");
    assert_eq!(latency["kind"], "continuous");
    let shift = latency["shift_estimate"].as_f64().unwrap();
    let [low, high] = [
        latency["shift_ci"][0].as_f64().unwrap(),
        latency["shift_ci"][1].as_f64().unwrap(),
    ];
    assert!(low <= shift && shift <= high);
    assert!(
        low > 0.0,
        "a 30% regression's interval excludes 0: [{low}, {high}]"
    );
    assert!(latency["p_value"].as_f64().unwrap() < 1e-6);
    assert!(
        latency["effect_size"]["probability_of_superiority"]
            .as_f64()
            .unwrap()
            > 0.8
    );
    let slo = metric(&report, "p95_slo");
    assert!(slo["p_value"].is_null() && slo["effect_size"].is_null());
    // The deciding reason comes first and names the critical metric.
    let first = report["reasons"][0].as_str().unwrap();
    assert!(
        first.starts_with("latency_p95 (critical) failed"),
        "{first}"
    );
}

#[test]
fn an_error_spike_reports_rates_ratio_and_its_interval() {
    let (run, _) = scenario("error-spike");
    let errors = metric(&run.report, "error_rate");
    assert_eq!(errors["classification"], "fail");
    assert_eq!(errors["test"], "two_proportion_z");
    let ratio = errors["effect_size"]["rate_ratio"].as_f64().unwrap();
    let ci = &errors["effect_size"]["rate_ratio_ci"];
    assert!(ratio > 3.0, "ratio {ratio}");
    assert!(
        ci[0].as_f64().unwrap() > 1.5,
        "the whole interval is above the allowed ×1.5: {ci}"
    );
    assert!(
        errors["canary"]["errors"].as_u64().unwrap()
            > errors["baseline"]["errors"].as_u64().unwrap()
    );
    assert!(errors["reason"].as_str().unwrap().contains('×'));
}

#[test]
fn inconclusive_metrics_say_what_was_missing() {
    let (run, _) = scenario("too-few-samples");
    let latency = metric(&run.report, "latency_p95");
    assert_eq!(latency["classification"], "inconclusive");
    assert_eq!(
        latency["reason"],
        "canary has 20 of the 30 required samples"
    );
    let (run, _) = scenario("nan-heavy");
    let reason = metric(&run.report, "latency_p95")["reason"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        reason.contains("NaN") && reason.contains("of 120 canary samples"),
        "{reason}"
    );
    let (run, _) = scenario("missing-metric");
    assert_eq!(metric(&run.report, "cpu_usage")["reason"], "no canary data");
}

#[test]
fn a_warning_failure_holds_for_manual_review() {
    let (run, _) = scenario("warning-only");
    let memory = metric(&run.report, "memory_rss");
    assert_eq!(memory["classification"], "fail");
    assert_eq!(memory["severity"], "warning");
    assert_eq!(run.report["verdict"], "hold");
    let reasons = run.report["reasons"].to_string();
    assert!(reasons.contains("manual review"), "{reasons}");
}

#[test]
fn the_text_report_is_a_readable_table_with_the_same_verdict() {
    let run = analyze(
        Path::new("fixtures/scenarios/error-spike/baseline.csv"),
        Path::new("fixtures/scenarios/error-spike/canary.csv"),
        "text",
    );
    assert_eq!(run.code, 3);
    assert!(
        run.stdout.starts_with("verdict: ROLLBACK"),
        "{}",
        run.stdout
    );
    for needle in ["reasons:", "error_rate", "latency_p95", "95% CI", "FAIL"] {
        assert!(run.stdout.contains(needle), "{needle} in\n{}", run.stdout);
    }
}

#[test]
fn help_documents_the_exit_codes() {
    let run = canary(["analyze", "--help"]);
    assert_eq!(run.code, 0);
    for needle in [
        "0  promote",
        "2  hold",
        "3  rollback",
        "1  error",
        "NAME:errors",
    ] {
        assert!(run.stdout.contains(needle), "{needle} in\n{}", run.stdout);
    }
}

#[test]
fn a_usage_error_exits_1_not_the_hold_code() {
    let run = canary(["analyze", "--profile"]);
    assert_eq!(run.code, 1, "{}", run.stderr);
}

/// `[judge] algorithm = "kayenta"` through the real binary: Kayenta's score and
/// classification decide, except that a metric without data holds instead of passing.
#[test]
fn a_kayenta_profile_judges_as_kayenta_would_and_never_promotes_without_data() {
    let run = |scenario: &str| {
        let directory = format!("fixtures/kayenta/{scenario}");
        let run = canary([
            "analyze",
            "--profile",
            "analysis-profiles/kayenta-web-service.toml",
            "--baseline",
            &format!("{directory}/baseline.csv"),
            "--canary",
            &format!("{directory}/canary.csv"),
            "--format",
            "json",
        ]);
        assert_eq!(run.stderr, "", "{scenario}");
        let report: Value = serde_json::from_str(&run.stdout).unwrap();
        (run.code, report)
    };
    let (code, report) = run("healthy");
    assert_eq!(
        (code, report["verdict"].as_str()),
        (0, Some("promote")),
        "{report}"
    );
    assert_eq!(report["score"], 100.0);
    assert_eq!(
        metric(&report, "latency_p95")["test"],
        "kayenta_mann_whitney"
    );

    // latency_p95's mean ratio is 1.28: beyond its allowed 1.1 (High), short of its
    // critical 1.5, so it fails as a normal metric: 0 % of the latency group's 60 plus
    // 100 % of the system group's 40.
    let (code, report) = run("latency-regression");
    assert_eq!(
        (code, report["verdict"].as_str()),
        (3, Some("rollback")),
        "{report}"
    );
    assert_eq!(report["score"], 40.0);
    let latency = metric(&report, "latency_p95");
    assert_eq!(latency["classification"], "fail");
    assert_eq!(latency["severity"], "normal");
    assert!(
        latency["reason"]
            .as_str()
            .unwrap()
            .contains("classified as High"),
        "{latency}"
    );

    // Kayenta scores a metric without data out (100 here) and would pass; canary holds.
    let (code, report) = run("missing-metric");
    assert_eq!(
        (code, report["verdict"].as_str()),
        (2, Some("hold")),
        "{report}"
    );
    assert_eq!(report["score"], 100.0);
    assert_eq!(
        metric(&report, "cpu_usage")["classification"],
        "inconclusive"
    );
}

/// `--compare` lines the two judges up on the same data: on the latency regression both
/// fail latency_p95, and the canary profile's proportion metric is canary's alone.
#[test]
fn compare_shows_both_judges_metric_by_metric_and_keeps_the_own_exit_code() {
    let directory = "fixtures/scenarios/latency-regression";
    let run = canary([
        "analyze",
        "--profile",
        "analysis-profiles/web-service.toml",
        "--baseline",
        &format!("{directory}/baseline.csv"),
        "--canary",
        &format!("{directory}/canary.csv"),
        "--compare",
    ]);
    assert_eq!(run.code, 3, "canary's own rollback: {}", run.stdout);
    assert!(
        run.stdout
            .contains("compared with Kayenta's judge: ROLLBACK"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.contains("error_rate: a proportion metric"),
        "{}",
        run.stdout
    );

    let directory = "fixtures/kayenta/latency-regression";
    let run = canary([
        "analyze",
        "--profile",
        "analysis-profiles/kayenta-web-service.toml",
        "--baseline",
        &format!("{directory}/baseline.csv"),
        "--canary",
        &format!("{directory}/canary.csv"),
        "--compare",
        "--format",
        "json",
    ]);
    assert_eq!(run.code, 3, "{}", run.stdout);
    let report: Value = serde_json::from_str(&run.stdout).unwrap();
    let comparison = &report["comparison"];
    assert_eq!(comparison["other_algorithm"], "canary", "{comparison}");
    let latency = comparison["metrics"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["metric"] == "latency_p95")
        .unwrap();
    assert_eq!(
        (latency["own"].as_str(), latency["other"].as_str()),
        (Some("fail"), Some("fail"))
    );
}

/// `canary analyze` on recordings that name the pod of every row: the canary's three
/// pods 6 % slower than the baseline's, the same version on slower hosts. Beyond the
/// profile's 5 % tolerance, within what three pods a side 5 % apart can do: promoted,
/// with the allowance in the report; the same rows without their pods roll back.
#[test]
fn analyze_allows_for_host_differences_when_the_rows_name_their_pods() {
    let directory = tempfile::tempdir().unwrap();
    let profile = directory.path().join("per-pod.toml");
    std::fs::write(
        &profile,
        r#"
name = "per-pod"
[judge]
host_spread = 0.05
[[metrics]]
name = "latency_p95"
kind = "continuous"
direction = "increase"
allowed_increase = 0.05
min_samples = 5
critical = true
"#,
    )
    .unwrap();
    let mut state = 0x9e37_79b9_7f4a_7c15_u64;
    let mut noise = move || {
        // xorshift64*, then a sum of four uniforms: close enough to normal for noise.
        (0..4)
            .map(|_| {
                state ^= state >> 12;
                state ^= state << 25;
                state ^= state >> 27;
                (state.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 11) as f64 / (1u64 << 53) as f64
            })
            .sum::<f64>()
            - 2.0
    };
    let mut write = |side: &str, levels: [f64; 3], named: bool| {
        let mut text = String::from(if named {
            "metric,timestamp,value,instance\n"
        } else {
            "metric,timestamp,value\n"
        });
        for (pod, level) in levels.iter().enumerate() {
            for step in 0..40 {
                let value = 0.2 * level * (0.03 * noise()).exp();
                text.push_str(&format!("latency_p95,{},{value:.6}", 5 * step));
                if named {
                    text.push_str(&format!(",{side}-{pod}"));
                }
                text.push('\n');
            }
        }
        let path = directory.path().join(format!(
            "{side}-{}.csv",
            if named { "pods" } else { "pooled" }
        ));
        std::fs::write(&path, text).unwrap();
        path
    };
    let pooled = [
        write("baseline", [0.99, 1.0, 1.01], false),
        write("canary", [1.05, 1.06, 1.07], false),
    ];
    let named = [
        write("baseline", [0.99, 1.0, 1.01], true),
        write("canary", [1.05, 1.06, 1.07], true),
    ];
    let run = |[baseline, canary_file]: &[std::path::PathBuf; 2]| {
        let run = canary([
            "analyze".as_ref(),
            "--profile".as_ref(),
            profile.as_os_str(),
            "--baseline".as_ref(),
            baseline.as_os_str(),
            "--canary".as_ref(),
            canary_file.as_os_str(),
            "--format".as_ref(),
            "json".as_ref(),
        ]);
        let report: Value = serde_json::from_str(&run.stdout)
            .unwrap_or_else(|e| panic!("one JSON report ({e}): {} {}", run.stdout, run.stderr));
        (run.code, report)
    };
    let (code, report) = run(&pooled);
    assert_eq!(
        code, 3,
        "pooled, the hosts look like a slower version: {report:#}"
    );
    assert!(
        metric(&report, "latency_p95")
            .get("host_allowance")
            .is_none()
    );
    let (code, report) = run(&named);
    let latency = metric(&report, "latency_p95");
    assert_eq!(code, 0, "with the pods named: {latency:#}");
    assert!(
        latency["relative_shift"].as_f64().unwrap() > 0.05,
        "the shift itself is beyond the tolerance: {latency:#}"
    );
    assert_eq!(latency["host_allowance"]["baseline_instances"], 3);
    assert_eq!(latency["host_allowance"]["canary_instances"], 3);
    assert!(
        latency["reason"].as_str().unwrap().contains(
            "cannot be told from host differences with 3 baseline and 3 canary instances"
        ),
        "{latency:#}"
    );
}
