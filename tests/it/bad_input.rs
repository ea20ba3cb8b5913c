//! Bad input: a clear error naming the file and line, exit code 1, and never a verdict
//! on stdout.

use crate::helpers::canary;

fn analyze_with(profile: &str, baseline: &str, canary_file: &str) -> crate::helpers::Run {
    canary([
        "analyze",
        "--profile",
        profile,
        "--baseline",
        baseline,
        "--canary",
        canary_file,
    ])
}

const PROFILE: &str = "analysis-profiles/web-service.toml";
const GOOD: &str = "fixtures/scenarios/healthy/baseline.csv";

#[test]
fn bad_data_files_fail_with_file_line_and_reason() {
    // (file, line, message): a line of None means the problem is the whole file.
    let cases = [
        ("missing-field.csv", Some(3), "expected 3 fields"),
        (
            "unknown-metric.csv",
            Some(2),
            "\"latncy_p95\" is not in profile",
        ),
        ("negative-count.csv", Some(4), "cannot be negative"),
        ("errors-exceed-total.csv", Some(4), "exceed total"),
        ("infinite.csv", Some(3), "not finite"),
        ("not-a-number.csv", Some(3), "not a number"),
        ("empty.csv", None, "empty"),
        ("truncated.json", Some(5), "malformed JSON"),
        ("wrong-shape.csv", Some(3), "needs `error_rate:errors`"),
    ];
    for (file, line, message) in cases {
        let path = format!("fixtures/bad-input/{file}");
        let run = analyze_with(PROFILE, GOOD, &path);
        assert_eq!(run.code, 1, "{file}: exit 1\n{}", run.stderr);
        assert_eq!(run.stdout, "", "{file}: no verdict on stdout");
        let location = match line {
            Some(line) => format!("{path}:{line}: "),
            None => format!("{path}: "),
        };
        assert!(
            run.stderr.contains(&location) && run.stderr.contains(message),
            "{file}: expected {location:?} and {message:?} in: {}",
            run.stderr
        );
    }
}

#[test]
fn bad_profiles_fail_with_file_line_and_field() {
    let cases = [
        ("bad-kind.toml", ":5:", "kind", "threshold"),
        (
            "bad-confidence.toml",
            ":4:",
            "judge.confidence_level",
            "at least 0.5",
        ),
    ];
    for (file, location, field, allowed) in cases {
        let path = format!("fixtures/bad-input/{file}");
        let run = analyze_with(&path, GOOD, GOOD);
        assert_eq!(run.code, 1, "{file}");
        assert_eq!(run.stdout, "");
        assert!(
            run.stderr.contains(&format!("{path}{location}"))
                && run.stderr.contains(field)
                && run.stderr.contains(allowed),
            "{file}: {}",
            run.stderr
        );
        let check = canary(["check-profile", path.as_str()]);
        assert_eq!(check.code, 1);
        assert!(check.stderr.contains(&format!("{path}{location}")));
    }
}

#[test]
fn a_missing_file_is_an_error_not_a_verdict() {
    let run = analyze_with(PROFILE, GOOD, "fixtures/does-not-exist.csv");
    assert_eq!(run.code, 1);
    assert!(
        run.stderr.contains("fixtures/does-not-exist.csv"),
        "{}",
        run.stderr
    );
}
