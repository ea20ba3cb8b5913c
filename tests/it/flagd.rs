//! Flag files written by the flagd-file actuator, evaluated by the real flagd evaluator.
//!
//! `tests/flagd/evaluate.mjs` loads a file with `@openfeature/flagd-core` (the logic
//! every in-process flagd provider runs, with strict schema validation) and evaluates
//! one flag for N targeting keys. These tests check that what the actuator writes is a
//! file flagd accepts and that it splits traffic the way the actuator reports. They
//! need `node` and `npm install` in `tests/flagd` (which `scripts/test.sh` does); they
//! skip with a notice only when `node` is absent.

use std::path::{Path, PathBuf};
use std::process::Command;

use canary::actuators::flagd_file::{FlagdFileActuator, KillMode};
use canary::actuators::{Actuator, ActuatorExt};
use canary::domain::Percentage;
use serde_json::Value;

use crate::helpers::root;

/// Targeting keys per evaluation: at 25 % the share's standard deviation is about
/// 0.7 points, so ±3 points is more than four standard deviations.
const KEYS: u32 = 4_000;

/// A flag file like a real one: the rolled-out flag, another flag that uses a shared
/// evaluator, and a `$schema`.
const FLAG_FILE: &str = r#"{
  "$schema": "https://flagd.dev/schema/v0/flags.json",
  "flags": {
    "new-checkout": {
      "state": "ENABLED",
      "variants": {"on": true, "off": false},
      "defaultVariant": "off",
      "targeting": {
        "fractional": [
          {"cat": [{"var": "$flagd.flagKey"}, {"var": "targetingKey"}]},
          ["on", 10],
          ["off", 90]
        ]
      }
    },
    "dark-mode": {
      "state": "ENABLED",
      "variants": {"on": true, "off": false},
      "defaultVariant": "off",
      "targeting": {"if": [{"$ref": "internal-users"}, "on", null]}
    },
    "fresh-flag": {
      "state": "DISABLED",
      "variants": {"enabled": true, "disabled": false},
      "defaultVariant": "disabled"
    }
  },
  "$evaluators": {
    "internal-users": {"ends_with": [{"var": "email"}, "@example.com"]}
  }
}
"#;

/// What `evaluate.mjs` printed.
struct Evaluation {
    /// Keys that got `true`.
    on: u64,
    /// The same in percent of all keys.
    on_percent: f64,
    /// The whole printed object, for messages and the reason counts.
    raw: Value,
}

impl Evaluation {
    fn reason_count(&self, reason: &str) -> u64 {
        self.raw["reasons"][reason].as_u64().unwrap_or(0)
    }
}

/// Evaluates `flag` in `file` with flagd-core for `keys` targeting keys, or `None`
/// (after printing why) when `node` is not installed.
fn evaluate(file: &Path, flag: &str, keys: u32) -> Option<Evaluation> {
    let script_directory = root().join("tests/flagd");
    let node = match Command::new("node").arg("--version").output() {
        Ok(output) if output.status.success() => "node",
        _ => {
            eprintln!(
                "SKIPPED: `node` is not installed, so flag files are not checked with flagd-core"
            );
            return None;
        }
    };
    assert!(
        script_directory
            .join("node_modules/@openfeature/flagd-core")
            .is_dir(),
        "@openfeature/flagd-core is not installed: run `npm install` in {} (scripts/test.sh does)",
        script_directory.display()
    );
    let output = Command::new(node)
        .arg(script_directory.join("evaluate.mjs"))
        .arg(file)
        .arg(flag)
        .arg(keys.to_string())
        .output()
        .expect("node runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "flagd-core rejected {}:\n{}\n{stdout}",
        file.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    let raw: Value =
        serde_json::from_str(stdout.trim()).expect("evaluate.mjs prints one JSON line");
    eprintln!("flagd-core, {flag}: {raw}");
    assert_eq!(
        raw["errors"],
        serde_json::json!({}),
        "evaluation errors: {raw}"
    );
    Some(Evaluation {
        on: raw["on"].as_u64().unwrap(),
        on_percent: raw["on_percent"].as_f64().unwrap(),
        raw,
    })
}

/// A copy of `FLAG_FILE` in a fresh temporary directory.
fn flag_file() -> (tempfile::TempDir, PathBuf) {
    let directory = tempfile::Builder::new()
        .prefix("canary-it-flagd-")
        .tempdir()
        .unwrap();
    let path = directory.path().join("flags.json");
    std::fs::write(&path, FLAG_FILE).unwrap();
    (directory, path)
}

fn percent(value: f64) -> Percentage {
    Percentage::parse(value).unwrap()
}

#[tokio::test]
async fn a_quarter_of_keys_get_the_new_variant_at_25_percent() {
    let (_directory, path) = flag_file();
    let actuator = FlagdFileActuator::new(&path);
    actuator
        .set_rollout("new-checkout", percent(25.0))
        .await
        .unwrap();
    let Some(evaluation) = evaluate(&path, "new-checkout", KEYS) else {
        return;
    };
    assert!(
        (evaluation.on_percent - 25.0).abs() <= 3.0,
        "{}",
        evaluation.raw
    );
    assert_eq!(
        evaluation.reason_count("TARGETING_MATCH"),
        u64::from(KEYS),
        "{}",
        evaluation.raw
    );
}

#[tokio::test]
async fn every_rollout_stage_reaches_its_share_of_keys() {
    let (_directory, path) = flag_file();
    let actuator = FlagdFileActuator::new(&path);
    let mut previous_on = 0;
    for stage in [0.0, 1.0, 5.0, 25.0, 50.0, 100.0] {
        actuator
            .set_rollout("new-checkout", percent(stage))
            .await
            .unwrap();
        let Some(evaluation) = evaluate(&path, "new-checkout", KEYS) else {
            return;
        };
        assert!(
            (evaluation.on_percent - stage).abs() <= 3.0,
            "at {stage}%: {}",
            evaluation.raw
        );
        // Growing the share only adds keys: bucketing is stable across stages.
        assert!(
            evaluation.on >= previous_on,
            "at {stage}%: {}",
            evaluation.raw
        );
        previous_on = evaluation.on;
    }
    assert_eq!(previous_on, u64::from(KEYS), "100 % is everybody");
}

#[tokio::test]
async fn a_killed_flag_serves_the_default() {
    let (_directory, path) = flag_file();
    let actuator = FlagdFileActuator::new(&path);
    actuator
        .set_rollout("new-checkout", percent(50.0))
        .await
        .unwrap();
    actuator.kill("new-checkout").await.unwrap();
    let Some(evaluation) = evaluate(&path, "new-checkout", KEYS) else {
        return;
    };
    // flagd answers a disabled flag with reason DISABLED and the caller's default
    // (`false` in evaluate.mjs), for every key.
    assert_eq!(evaluation.on, 0, "{}", evaluation.raw);
    assert_eq!(
        evaluation.reason_count("DISABLED"),
        u64::from(KEYS),
        "{}",
        evaluation.raw
    );
}

/// Issue 13, item 12: with `kill = "off-variant"` flagd serves the flag's off variant to
/// every key (reason STATIC, not DISABLED), so the application's code default no longer
/// matters; the actuator reads the flag back as off at 0 %.
#[tokio::test]
async fn the_off_variant_kill_switch_serves_off_to_every_key() {
    let (_directory, path) = flag_file();
    let actuator = FlagdFileActuator::new(&path).with_kill_mode(KillMode::OffVariant);
    for flag in ["new-checkout", "fresh-flag"] {
        actuator.set_rollout(flag, percent(50.0)).await.unwrap();
        let killed = actuator.kill(flag).await.unwrap();
        assert!(!killed.enabled, "{flag}: {killed:?}");
        assert_eq!(killed.rollout, Percentage::ZERO);
        assert_eq!(actuator.current(flag).await.unwrap(), killed);
        let Some(evaluation) = evaluate(&path, flag, KEYS) else {
            return;
        };
        assert_eq!(evaluation.on, 0, "{flag}: {}", evaluation.raw);
        let off_variant = if flag == "fresh-flag" {
            "disabled"
        } else {
            "off"
        };
        assert_eq!(
            evaluation.raw["variants"][off_variant].as_u64(),
            Some(u64::from(KEYS)),
            "{flag}: every key gets the off variant itself, not the caller's default: {}",
            evaluation.raw
        );
        assert_eq!(
            evaluation.reason_count("DISABLED"),
            0,
            "{flag}: {}",
            evaluation.raw
        );
    }
}

#[tokio::test]
async fn a_created_fractional_rule_splits_traffic_in_flagd() {
    let (_directory, path) = flag_file();
    let actuator = FlagdFileActuator::new(&path);
    actuator
        .set_rollout("fresh-flag", percent(25.0))
        .await
        .unwrap();
    let Some(evaluation) = evaluate(&path, "fresh-flag", KEYS) else {
        return;
    };
    assert!(
        (evaluation.on_percent - 25.0).abs() <= 3.0,
        "{}",
        evaluation.raw
    );
    // The other flags of the file still load and evaluate.
    let other = evaluate(&path, "dark-mode", 10).unwrap();
    assert_eq!(other.reason_count("DEFAULT"), 10, "{}", other.raw);
}

#[tokio::test]
async fn a_dark_launch_at_a_tenth_of_a_percent_reaches_a_few_keys() {
    let (_directory, path) = flag_file();
    let actuator = FlagdFileActuator::new(&path);
    actuator
        .set_rollout("new-checkout", percent(0.1))
        .await
        .unwrap();
    // 0.1 % of 20,000 keys is 20; a binomial count that far off is vanishingly rare.
    let Some(evaluation) = evaluate(&path, "new-checkout", 20_000) else {
        return;
    };
    assert!(
        (5..=40).contains(&evaluation.on),
        "expected about 20 keys: {}",
        evaluation.raw
    );
}

/// Set in the environment of the child processes of
/// `separate_processes_editing_different_flags_lose_no_edit`: `PATH,FLAG,EDITS`.
const WRITER_CHILD_VARIABLE: &str = "CANARY_TEST_FLAGD_WRITER_CHILD";

/// The child side of the multi-process test: sets `FLAG` to 1 %, 2 %, ... `EDITS` %.
/// Run only by that test, as a separate process of this test binary.
#[tokio::test]
#[ignore = "a child process of separate_processes_editing_different_flags_lose_no_edit"]
async fn flagd_writer_child_process() {
    let setting = std::env::var(WRITER_CHILD_VARIABLE).expect("run by the parent test");
    let mut parts = setting.split(',');
    let (path, flag, edits) = (
        parts.next().unwrap(),
        parts.next().unwrap(),
        parts.next().unwrap().parse::<u32>().unwrap(),
    );
    let actuator = FlagdFileActuator::new(path);
    for edit in 1..=edits {
        actuator
            .set_rollout(flag, percent(f64::from(edit)))
            .await
            .unwrap();
    }
}

/// Issue 13, item 3, with real processes: four processes, each editing its own flag of
/// one file 20 times, lose no edit (each flag ends at its last written value).
#[test]
fn separate_processes_editing_different_flags_lose_no_edit() {
    const EDITS: u32 = 20;
    let (_directory, path) = flag_file();
    let flags: Vec<String> = (0..4).map(|index| format!("writer-{index}")).collect();
    let mut root: Value = serde_json::from_str(FLAG_FILE).unwrap();
    for flag in &flags {
        root["flags"][flag] = serde_json::json!({
            "state": "ENABLED", "variants": {"on": true, "off": false}, "defaultVariant": "off"
        });
    }
    std::fs::write(&path, serde_json::to_string_pretty(&root).unwrap()).unwrap();
    let children: Vec<_> = flags
        .iter()
        .map(|flag| {
            Command::new(std::env::current_exe().unwrap())
                .args([
                    "flagd::flagd_writer_child_process",
                    "--exact",
                    "--ignored",
                    "--quiet",
                ])
                .env(
                    WRITER_CHILD_VARIABLE,
                    format!("{},{flag},{EDITS}", path.display()),
                )
                // Captured, so the children's own test summaries do not mix with ours.
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for child in children {
        let output = child.wait_with_output().unwrap();
        assert!(
            output.status.success(),
            "a writer process failed:\n{}\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let reader = FlagdFileActuator::new(&path);
    for flag in &flags {
        let state = runtime.block_on(reader.current(flag)).unwrap();
        assert_eq!(
            state.rollout,
            percent(f64::from(EDITS)),
            "{flag} lost its last edit"
        );
    }
}
