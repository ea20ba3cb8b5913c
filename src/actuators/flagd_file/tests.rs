//! The flagd-file actuator against real files in temporary directories: rollout
//! stages, the kill switch, losslessness, idempotency and every error the trait
//! promises. The flagd evaluator's view of the same files is checked in
//! `tests/it/flagd.rs`.

use crate::actuators::ActuatorExt;
use std::path::PathBuf;

use serde_json::{Value, json};
use tempfile::TempDir;

use super::{FlagdFileActuator, KillMode};
use crate::actuators::{Actuator, ActuatorError, FlagState};
use crate::domain::Percentage;

/// A flag file with the rolled-out flag between two others, a `$schema`, shared
/// `$evaluators`, metadata and keys flagd does not define, indented by two spaces.
const FLAG_FILE: &str = r#"{
  "$schema": "https://flagd.dev/schema/v0/flags.json",
  "metadata": {
    "team": "payments",
    "version": 7
  },
  "flags": {
    "dark-mode": {
      "state": "ENABLED",
      "variants": {
        "on": true,
        "off": false
      },
      "defaultVariant": "off",
      "targeting": {
        "if": [
          {
            "$ref": "internal-users"
          },
          "on",
          null
        ]
      },
      "x-owner": "web"
    },
    "new-checkout": {
      "state": "ENABLED",
      "variants": {
        "on": true,
        "off": false
      },
      "defaultVariant": "off",
      "targeting": {
        "fractional": [
          {
            "cat": [
              {
                "var": "$flagd.flagKey"
              },
              {
                "var": "targetingKey"
              }
            ]
          },
          [
            "on",
            10
          ],
          [
            "off",
            90
          ]
        ]
      },
      "metadata": {
        "ticket": "PAY-123"
      },
      "x-unknown": [
        1.5,
        "kept"
      ]
    },
    "zebra-colour": {
      "variants": {
        "red": "red",
        "blue": "blue"
      },
      "defaultVariant": "red",
      "state": "DISABLED"
    }
  },
  "$evaluators": {
    "internal-users": {
      "ends_with": [
        {
          "var": "email"
        },
        "@example.com"
      ]
    }
  }
}
"#;

/// A temporary directory holding `flags.json` with `contents`; the directory is
/// removed when the returned guard drops.
fn flag_file(contents: &str) -> (TempDir, PathBuf) {
    let directory = tempfile::Builder::new()
        .prefix("canary-flagd-file-")
        .tempdir()
        .unwrap();
    let path = directory.path().join("flags.json");
    std::fs::write(&path, contents).unwrap();
    (directory, path)
}

/// The names in `directory`, sorted.
fn file_names(directory: &std::path::Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(directory)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

fn percent(value: f64) -> Percentage {
    Percentage::parse(value).unwrap()
}

fn parsed(path: &PathBuf) -> Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

fn weights(path: &PathBuf, flag: &str) -> Value {
    let root = parsed(path);
    let rule = root["flags"][flag]["targeting"]["fractional"]
        .as_array()
        .unwrap()
        .clone();
    Value::Array(rule[1..].to_vec())
}

#[tokio::test]
async fn rollout_stages_are_written_and_read_back() {
    let (_directory, path) = flag_file(FLAG_FILE);
    let actuator = FlagdFileActuator::new(&path);
    for stage in [1.0, 5.0, 25.0, 50.0, 100.0] {
        let written = actuator
            .set_rollout("new-checkout", percent(stage))
            .await
            .unwrap();
        let expected = FlagState {
            enabled: true,
            rollout: percent(stage),
        };
        assert_eq!(written, expected);
        assert_eq!(actuator.current("new-checkout").await.unwrap(), expected);
        assert_eq!(
            weights(&path, "new-checkout"),
            json!([["on", stage as u64], ["off", 100 - stage as u64]])
        );
    }
}

#[tokio::test]
async fn zero_percent_keeps_the_flag_enabled_with_no_weight() {
    let (_directory, path) = flag_file(FLAG_FILE);
    let actuator = FlagdFileActuator::new(&path);
    let state = actuator
        .set_rollout("new-checkout", Percentage::ZERO)
        .await
        .unwrap();
    assert_eq!(
        state,
        FlagState {
            enabled: true,
            rollout: Percentage::ZERO
        }
    );
    assert_eq!(parsed(&path)["flags"]["new-checkout"]["state"], "ENABLED");
    assert_eq!(
        weights(&path, "new-checkout"),
        json!([["on", 0], ["off", 100]])
    );
}

#[tokio::test]
async fn kill_disables_the_flag_and_zeroes_the_new_variant() {
    let (_directory, path) = flag_file(FLAG_FILE);
    let actuator = FlagdFileActuator::new(&path);
    actuator
        .set_rollout("new-checkout", percent(50.0))
        .await
        .unwrap();
    let killed = actuator.kill("new-checkout").await.unwrap();
    let expected = FlagState {
        enabled: false,
        rollout: Percentage::ZERO,
    };
    assert_eq!(killed, expected);
    assert_eq!(actuator.current("new-checkout").await.unwrap(), expected);
    let root = parsed(&path);
    assert_eq!(root["flags"]["new-checkout"]["state"], "DISABLED");
    assert_eq!(root["flags"]["new-checkout"]["defaultVariant"], "off");
    assert_eq!(
        weights(&path, "new-checkout"),
        json!([["on", 0], ["off", 100]])
    );

    // Re-enabling starts from what is asked for, not from the 50 % before the kill.
    let reenabled = actuator
        .set_rollout("new-checkout", percent(1.0))
        .await
        .unwrap();
    assert_eq!(
        reenabled,
        FlagState {
            enabled: true,
            rollout: percent(1.0)
        }
    );
}

#[tokio::test]
async fn other_flags_and_unknown_keys_survive_unchanged_and_in_order() {
    let (_directory, path) = flag_file(FLAG_FILE);
    let before = parsed(&path);
    let actuator = FlagdFileActuator::new(&path);
    actuator
        .set_rollout("new-checkout", percent(25.0))
        .await
        .unwrap();
    actuator.kill("new-checkout").await.unwrap();
    let after = parsed(&path);

    let keys = |value: &Value| {
        value
            .as_object()
            .unwrap()
            .keys()
            .cloned()
            .collect::<Vec<_>>()
    };
    assert_eq!(
        keys(&after),
        ["$schema", "metadata", "flags", "$evaluators"]
    );
    assert_eq!(
        keys(&after["flags"]),
        ["dark-mode", "new-checkout", "zebra-colour"]
    );
    for untouched in ["$schema", "metadata", "$evaluators"] {
        assert_eq!(after[untouched], before[untouched], "{untouched}");
    }
    for other_flag in ["dark-mode", "zebra-colour"] {
        assert_eq!(after["flags"][other_flag], before["flags"][other_flag]);
        assert_eq!(
            keys(&after["flags"][other_flag]),
            keys(&before["flags"][other_flag])
        );
    }
    let edited = &after["flags"]["new-checkout"];
    assert_eq!(
        keys(edited),
        [
            "state",
            "variants",
            "defaultVariant",
            "targeting",
            "metadata",
            "x-unknown"
        ]
    );
    assert_eq!(edited["metadata"], json!({"ticket": "PAY-123"}));
    assert_eq!(edited["x-unknown"], json!([1.5, "kept"]));
}

#[tokio::test]
async fn only_the_edited_lines_change_in_the_file() {
    let (_directory, path) = flag_file(FLAG_FILE);
    let actuator = FlagdFileActuator::new(&path);
    actuator
        .set_rollout("new-checkout", percent(25.0))
        .await
        .unwrap();
    let after = std::fs::read_to_string(&path).unwrap();
    let expected = FLAG_FILE
        .replace("\"on\",\n            10", "\"on\",\n            25")
        .replace("\"off\",\n            90", "\"off\",\n            75");
    assert_eq!(after, expected);
}

#[tokio::test]
async fn setting_the_same_rollout_twice_leaves_the_bytes_unchanged() {
    let (_directory, path) = flag_file(FLAG_FILE);
    let actuator = FlagdFileActuator::new(&path);

    // The file already says 10 %: nothing to write, not even a reformatting.
    actuator
        .set_rollout("new-checkout", percent(10.0))
        .await
        .unwrap();
    assert_eq!(std::fs::read_to_string(&path).unwrap(), FLAG_FILE);

    actuator
        .set_rollout("new-checkout", percent(25.0))
        .await
        .unwrap();
    let once = std::fs::read(&path).unwrap();
    let modified_once = std::fs::metadata(&path).unwrap().modified().unwrap();
    actuator
        .set_rollout("new-checkout", percent(25.0))
        .await
        .unwrap();
    assert_eq!(std::fs::read(&path).unwrap(), once);
    assert_eq!(
        std::fs::metadata(&path).unwrap().modified().unwrap(),
        modified_once
    );

    actuator.kill("new-checkout").await.unwrap();
    let killed = std::fs::read(&path).unwrap();
    actuator.kill("new-checkout").await.unwrap();
    assert_eq!(std::fs::read(&path).unwrap(), killed);
}

#[tokio::test]
async fn a_tenth_of_a_percent_round_trips_as_relative_weights() {
    let (_directory, path) = flag_file(FLAG_FILE);
    let actuator = FlagdFileActuator::new(&path);
    let state = actuator
        .set_rollout("new-checkout", percent(0.1))
        .await
        .unwrap();
    assert_eq!(state.rollout, percent(0.1));
    assert_eq!(
        actuator.current("new-checkout").await.unwrap().rollout,
        percent(0.1)
    );
    assert_eq!(
        weights(&path, "new-checkout"),
        json!([["on", 1], ["off", 999]])
    );
}

#[tokio::test]
async fn a_flag_without_targeting_gets_a_fractional_rule() {
    let (_directory, path) = flag_file(
        r#"{"flags": {"new-checkout": {"state": "DISABLED", "variants": {"on": true, "off": false}, "defaultVariant": "off"}}}"#,
    );
    let actuator = FlagdFileActuator::new(&path);
    assert_eq!(
        actuator.current("new-checkout").await.unwrap(),
        FlagState {
            enabled: false,
            rollout: Percentage::ZERO
        }
    );
    actuator
        .set_rollout("new-checkout", percent(5.0))
        .await
        .unwrap();
    let root = parsed(&path);
    assert_eq!(
        root["flags"]["new-checkout"]["targeting"],
        json!({"fractional": [
            {"cat": [{"var": "$flagd.flagKey"}, {"var": "targetingKey"}]},
            ["on", 5],
            ["off", 95]
        ]})
    );
    // A one-line file stays on one line.
    assert_eq!(std::fs::read_to_string(&path).unwrap().lines().count(), 1);
}

#[tokio::test]
async fn missing_flag_is_flag_not_found_naming_the_flags_there() {
    let (_directory, path) = flag_file(FLAG_FILE);
    let actuator = FlagdFileActuator::new(&path);
    let error = actuator
        .set_rollout("new-chekout", percent(5.0))
        .await
        .unwrap_err();
    let ActuatorError::FlagNotFound { flag, store } = &error else {
        panic!("expected FlagNotFound, got {error:?}");
    };
    assert_eq!(flag, "new-chekout");
    assert!(store.starts_with(&path.display().to_string()), "{store}");
    assert!(
        store.contains(r#""dark-mode", "new-checkout", "zebra-colour""#),
        "{store}"
    );
    assert_eq!(std::fs::read_to_string(&path).unwrap(), FLAG_FILE);
    assert!(matches!(
        actuator.current("new-chekout").await,
        Err(ActuatorError::FlagNotFound { .. })
    ));
}

#[tokio::test]
async fn malformed_file_is_invalid_with_line_and_column() {
    let malformed = FLAG_FILE.replace(
        "\"defaultVariant\": \"off\",\n      \"targeting\": {\n        \"fractional\"",
        "\"defaultVariant\": \"off\"\n      \"targeting\": {\n        \"fractional\"",
    );
    let (_directory, path) = flag_file(&malformed);
    let actuator = FlagdFileActuator::new(&path);
    let error = actuator
        .set_rollout("new-checkout", percent(5.0))
        .await
        .unwrap_err();
    let ActuatorError::Invalid { store, message } = &error else {
        panic!("expected Invalid, got {error:?}");
    };
    assert_eq!(store, &path.display().to_string());
    // Line 32 lost its comma, so the parser stops at the next key, line 33, column 7.
    assert_eq!(
        message,
        "malformed JSON at line 33, column 7: expected `,` or `}`"
    );
    assert_eq!(std::fs::read_to_string(&path).unwrap(), malformed);
}

#[tokio::test]
async fn missing_file_is_unavailable_with_the_path() {
    let directory = tempfile::tempdir().unwrap();
    let path = directory.path().join("absent.json");
    let actuator = FlagdFileActuator::new(&path);
    for error in [
        actuator.current("new-checkout").await.unwrap_err(),
        actuator
            .set_rollout("new-checkout", percent(5.0))
            .await
            .unwrap_err(),
        actuator.kill("new-checkout").await.unwrap_err(),
        actuator.healthcheck("new-checkout").await.unwrap_err(),
    ] {
        let ActuatorError::Unavailable { store, message } = &error else {
            panic!("expected Unavailable, got {error:?}");
        };
        assert_eq!(store, &path.display().to_string());
        assert!(message.contains("No such file"), "{message}");
    }
    assert!(!path.exists(), "a failed edit must not create the file");
}

#[tokio::test]
async fn healthcheck_reports_the_state_and_leaves_no_file_behind() {
    let (directory, path) = flag_file(FLAG_FILE);
    let actuator = FlagdFileActuator::new(&path);
    let state = actuator.healthcheck("new-checkout").await.unwrap();
    assert_eq!(
        state,
        FlagState {
            enabled: true,
            rollout: percent(10.0)
        }
    );
    assert!(matches!(
        actuator.healthcheck("zebra-colour").await,
        Err(ActuatorError::Invalid { .. })
    ));
    assert_eq!(
        file_names(directory.path()),
        ["flags.json", "flags.json.lock"],
        "only the flag file and its lock file"
    );
}

#[tokio::test]
async fn concurrent_edits_in_one_process_lose_nothing() {
    let flags: serde_json::Map<String, Value> = (0..8)
        .map(|index| {
            let flag = json!({"state": "ENABLED", "variants": {"on": true, "off": false}, "defaultVariant": "off"});
            (format!("flag-{index}"), flag)
        })
        .collect();
    let (directory, path) =
        flag_file(&serde_json::to_string_pretty(&json!({"flags": flags})).unwrap());
    let actuator = std::sync::Arc::new(FlagdFileActuator::new(&path));
    let tasks: Vec<_> = (0..8)
        .map(|index| {
            let actuator = actuator.clone();
            tokio::spawn(async move {
                actuator
                    .set_rollout(&format!("flag-{index}"), percent(index as f64 + 1.0))
                    .await
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap().unwrap();
    }
    for index in 0..8 {
        let state = actuator.current(&format!("flag-{index}")).await.unwrap();
        assert_eq!(state.rollout, percent(index as f64 + 1.0));
    }
    assert_eq!(
        file_names(directory.path()),
        ["flags.json", "flags.json.lock"],
        "no temporary files left behind"
    );
}

#[cfg(unix)]
#[tokio::test]
async fn file_permissions_are_kept() {
    use std::os::unix::fs::PermissionsExt;
    let (_directory, path) = flag_file(FLAG_FILE);
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
    FlagdFileActuator::new(&path)
        .set_rollout("new-checkout", percent(50.0))
        .await
        .unwrap();
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o640);
}

#[tokio::test]
async fn four_space_indentation_is_kept() {
    let four_spaces = FLAG_FILE.replace("  ", "    ");
    let (_directory, path) = flag_file(&four_spaces);
    FlagdFileActuator::new(&path)
        .set_rollout("new-checkout", percent(50.0))
        .await
        .unwrap();
    let after = std::fs::read_to_string(&path).unwrap();
    let changed_lines = four_spaces
        .lines()
        .zip(after.lines())
        .filter(|(before, after)| before != after)
        .count();
    assert_eq!(changed_lines, 2);
    assert_eq!(four_spaces.lines().count(), after.lines().count());
}

/// A flag file of `count` enabled flags `flag-0`, `flag-1`, ... without targeting.
fn many_flags(count: usize) -> String {
    let flags: serde_json::Map<String, Value> = (0..count)
        .map(|index| {
            let flag = json!({"state": "ENABLED", "variants": {"on": true, "off": false}, "defaultVariant": "off"});
            (format!("flag-{index}"), flag)
        })
        .collect();
    serde_json::to_string_pretty(&json!({"flags": flags})).unwrap()
}

/// Issue 13, item 3: two `canary` instances sharing one flag file lost each other's
/// edits. Each writer here is its own actuator, with its own in-process mutex and its
/// own open file descriptions, as separate processes are (`flock` excludes per open
/// file description, so threads contend for it exactly as processes do); only the
/// cross-process lock file keeps their read-edit-writes apart.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn separate_writers_editing_different_flags_lose_no_edit() {
    const WRITERS: usize = 8;
    const EDITS: usize = 12;
    let (_directory, path) = flag_file(&many_flags(WRITERS));
    let tasks: Vec<_> = (0..WRITERS)
        .map(|writer| {
            let actuator = FlagdFileActuator::new(&path);
            tokio::spawn(async move {
                let flag = format!("flag-{writer}");
                for edit in 1..=EDITS {
                    actuator
                        .set_rollout(&flag, percent((writer * EDITS + edit) as f64 / 2.0))
                        .await
                        .unwrap();
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    let reader = FlagdFileActuator::new(&path);
    for writer in 0..WRITERS {
        let state = reader.current(&format!("flag-{writer}")).await.unwrap();
        assert_eq!(
            state.rollout,
            percent((writer * EDITS + EDITS) as f64 / 2.0),
            "flag-{writer} lost its last edit"
        );
    }
}

/// Takes the lock on `path`'s lock file as another process would.
fn hold_lock(path: &std::path::Path) -> std::fs::File {
    let holder = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .open(super::lock_path(path))
        .unwrap();
    holder.try_lock().unwrap();
    holder
}

#[tokio::test]
async fn a_lock_held_past_the_wait_fails_naming_the_lock_file_and_writes_nothing() {
    let (_directory, path) = flag_file(FLAG_FILE);
    let holder = hold_lock(&path);
    let actuator =
        FlagdFileActuator::new(&path).with_lock_wait(std::time::Duration::from_millis(150));
    let started = std::time::Instant::now();
    for attempt in [
        actuator.set_rollout("new-checkout", percent(50.0)).await,
        actuator.kill("new-checkout").await,
    ] {
        let error = attempt.unwrap_err();
        assert!(
            matches!(error, ActuatorError::Unavailable { .. }),
            "retryable: {error}"
        );
        let message = error.to_string();
        assert!(
            message.contains(&format!("{}.lock", path.display())),
            "names the lock file: {message}"
        );
        assert!(message.contains("nothing was written"), "{message}");
    }
    assert!(started.elapsed() >= std::time::Duration::from_millis(300));
    assert_eq!(std::fs::read_to_string(&path).unwrap(), FLAG_FILE);
    drop(holder);
    let state = actuator
        .set_rollout("new-checkout", percent(50.0))
        .await
        .unwrap();
    assert_eq!(state.rollout, percent(50.0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_writer_waits_for_a_lock_released_within_its_wait() {
    let (_directory, path) = flag_file(FLAG_FILE);
    let holder = hold_lock(&path);
    let release = std::thread::spawn(move || {
        std::thread::sleep(std::time::Duration::from_millis(200));
        drop(holder);
    });
    let state = FlagdFileActuator::new(&path)
        .set_rollout("new-checkout", percent(25.0))
        .await
        .unwrap();
    assert_eq!(state.rollout, percent(25.0));
    release.join().unwrap();
}

#[test]
fn a_read_back_that_differs_from_what_was_written_is_unavailable() {
    let (_directory, path) = flag_file(&many_flags(3));
    let before: Value = parsed(&path);
    let mut written = before.clone();
    written["flags"]["flag-0"]["state"] = json!("DISABLED");
    // The file still says what was read: our flag is not as written.
    let error =
        super::verify_written(&path, "flag-0", &before, &written, "flags.json").unwrap_err();
    assert!(matches!(error, ActuatorError::Unavailable { .. }));
    assert!(
        error
            .to_string()
            .contains("the flag is not what was written"),
        "{error}"
    );
    // Our flag as written, but another flag moved by a writer that ignores the lock.
    let mut raced = written.clone();
    raced["flags"]["flag-2"]["state"] = json!("DISABLED");
    std::fs::write(&path, serde_json::to_string(&raced).unwrap()).unwrap();
    let error =
        super::verify_written(&path, "flag-0", &before, &written, "flags.json").unwrap_err();
    assert!(
        error.to_string().contains("other flags changed: flag-2"),
        "{error}"
    );
    std::fs::write(&path, serde_json::to_string(&written).unwrap()).unwrap();
    super::verify_written(&path, "flag-0", &before, &written, "flags.json").unwrap();
}

/// Issue 13, item 12: the off-variant kill switch keeps the flag enabled, serves the off
/// variant by default with no targeting, and reads back as off at 0 %; the next rollout
/// writes a fresh split.
#[tokio::test]
async fn the_off_variant_kill_switch_serves_off_and_reads_back_as_off() {
    let (_directory, path) = flag_file(FLAG_FILE);
    let actuator = FlagdFileActuator::new(&path).with_kill_mode(KillMode::OffVariant);
    actuator
        .set_rollout("new-checkout", percent(50.0))
        .await
        .unwrap();
    let off = FlagState {
        enabled: false,
        rollout: Percentage::ZERO,
    };
    assert_eq!(actuator.kill("new-checkout").await.unwrap(), off);
    assert_eq!(actuator.current("new-checkout").await.unwrap(), off);
    assert_eq!(actuator.healthcheck("new-checkout").await.unwrap(), off);
    let root = parsed(&path);
    let flag = &root["flags"]["new-checkout"];
    assert_eq!(flag["state"], "ENABLED");
    assert_eq!(flag["defaultVariant"], "off");
    assert!(flag.get("targeting").is_none(), "{flag}");
    assert_eq!(flag["metadata"]["ticket"], "PAY-123", "other keys kept");
    // Killing again changes nothing.
    let bytes = std::fs::read(&path).unwrap();
    actuator.kill("new-checkout").await.unwrap();
    assert_eq!(std::fs::read(&path).unwrap(), bytes);
    // A later rollout starts again from a new split.
    let state = actuator
        .set_rollout("new-checkout", percent(5.0))
        .await
        .unwrap();
    assert_eq!(
        state,
        FlagState {
            enabled: true,
            rollout: percent(5.0)
        }
    );
    assert_eq!(
        weights(&path, "new-checkout"),
        json!([["on", 5], ["off", 95]])
    );
}
