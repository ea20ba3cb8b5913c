//! `canary simulate`: the decision-quality benchmark runs end to end through the
//! binary, with the real runner and its repeated looks. The full table (200 rollouts
//! per family) is in the README; here a few seeded rollouts check that the families
//! are labeled and counted as they should be.

use std::process::Command;

use serde_json::Value;

fn canary() -> Command {
    Command::new(env!("CARGO_BIN_EXE_canary"))
}

#[test]
fn a_small_simulation_counts_each_family_under_both_modes() {
    let output = canary()
        .args([
            "simulate",
            "--rollouts",
            "4",
            "--family",
            "healthy",
            "--family",
            "errors-x5",
            "--family",
            "data-dropout",
            "--format",
            "json",
        ])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let results: Vec<Value> = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(results.len(), 6);
    for result in &results {
        let (family, mode) = (
            result["family"].as_str().unwrap(),
            result["mode"].as_str().unwrap(),
        );
        assert_eq!(result["rollouts"], 4, "{family} {mode}");
        match family {
            "healthy" => assert_eq!(result["promoted"], 4, "{family} {mode}: {result}"),
            "errors-x5" => {
                assert_eq!(result["rolled_back"], 4, "{family} {mode}: {result}");
                assert!(result["median_detection_delay"].as_f64().unwrap() <= 2.0);
            }
            "data-dropout" => {
                assert_eq!(result["promoted"], 0, "{family} {mode}: {result}");
                assert_eq!(result["label"], "no_data");
            }
            other => panic!("unexpected family {other}"),
        }
    }
    assert!(results.iter().any(|r| r["mode"] == "sequential"));
    assert!(results.iter().any(|r| r["mode"] == "fixed"));
}

#[test]
fn the_text_output_is_a_table_with_the_targets() {
    let output = canary()
        .args([
            "simulate",
            "--rollouts",
            "2",
            "--family",
            "latency+50%",
            "--mode",
            "sequential",
        ])
        .output()
        .unwrap();
    assert!(output.status.success());
    let text = String::from_utf8(output.stdout).unwrap();
    assert!(text.contains("| latency+50% | detection |"), "{text}");
    assert!(text.contains("Targets (sequential mode):"), "{text}");
}

#[test]
fn an_unknown_family_is_refused_with_the_known_ones() {
    let output = canary()
        .args(["simulate", "--family", "nope"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("--family")
            && stderr.contains("unknown family \"nope\"")
            && stderr.contains("variance-x2"),
        "{stderr}"
    );
}

#[test]
fn a_profile_the_simulated_service_cannot_feed_is_refused() {
    let output = canary()
        .args([
            "simulate",
            "--profile",
            "analysis-profiles/web-service.toml",
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("--profile") && stderr.contains("no continuous metric \"latency\""),
        "{stderr}"
    );
    let zero = canary()
        .args(["simulate", "--rollouts", "0"])
        .output()
        .unwrap();
    assert_eq!(zero.status.code(), Some(1));
}
