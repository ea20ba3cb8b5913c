//! What share of traffic a flagd flag gives the new variant, read the way flagd
//! evaluates the file; and the task that re-reads the file.
//!
//! The library's flagd-file actuator reads the same files, but this is a separate,
//! deliberately independent reading: the test bed checks the actuator's edits from the
//! outside, as flagd would, so a mistake in the actuator's parser cannot hide itself.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use serde_json::Value;

use crate::world::{SharedWorld, unix_now};

/// How often the flag file is read again (the brief: at least every 100 ms).
pub const FLAG_POLL_INTERVAL: Duration = Duration::from_millis(100);

/// The flag's `state`, or `missing` when the file has no such flag.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum FlagStatus {
    /// `"state": "ENABLED"`.
    #[serde(rename = "ENABLED")]
    Enabled,
    /// `"state": "DISABLED"`: every request gets the application's default (stable).
    #[serde(rename = "DISABLED")]
    Disabled,
    /// The file parses but does not hold the flag.
    #[serde(rename = "missing")]
    Missing,
}

/// One reading of the flag: its state and the new variant's share of traffic.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct FlagReading {
    /// The flag's state.
    pub flag_state: FlagStatus,
    /// Percent of requests that get the new variant (the canary).
    pub canary_percent: f64,
}

/// Reads `flag` from a parsed flag file.
///
/// - `DISABLED` (or a missing flag) → 0 %.
/// - `ENABLED` with a top-level `fractional` rule → the new variant's weight over the
///   total weight (a bucket without a weight weighs 1, as in flagd; a leading
///   bucketing expression is skipped).
/// - `ENABLED` without targeting, or with weights that are all zero →
///   `defaultVariant` decides: 100 % when it is the new variant, else 0 %.
///
/// The new variant is the one named `on`, or else the only one whose value is `true`.
/// Anything else (no `flags` object, an unknown state, targeting of another shape) is
/// an error, and the caller keeps its last good reading.
pub fn read_flag(document: &Value, flag: &str) -> Result<FlagReading, String> {
    let flags = document
        .get("flags")
        .and_then(Value::as_object)
        .ok_or("the file has no \"flags\" object")?;
    let Some(definition) = flags.get(flag) else {
        return Ok(FlagReading {
            flag_state: FlagStatus::Missing,
            canary_percent: 0.0,
        });
    };
    match definition.get("state").and_then(Value::as_str) {
        Some("DISABLED") => {
            return Ok(FlagReading {
                flag_state: FlagStatus::Disabled,
                canary_percent: 0.0,
            });
        }
        Some("ENABLED") => {}
        other => return Err(format!("flag {flag:?} has state {other:?}")),
    }
    let new_variant = new_variant(definition).ok_or_else(|| {
        format!("flag {flag:?} has no variant named \"on\" nor a single `true` variant")
    })?;
    let canary_percent = match fractional_share(definition, &new_variant)? {
        Some(percent) => percent,
        None if definition.get("defaultVariant").and_then(Value::as_str)
            == Some(new_variant.as_str()) =>
        {
            100.0
        }
        None => 0.0,
    };
    Ok(FlagReading {
        flag_state: FlagStatus::Enabled,
        canary_percent,
    })
}

fn new_variant(definition: &Value) -> Option<String> {
    let variants = definition.get("variants")?.as_object()?;
    if variants.contains_key("on") {
        return Some("on".to_owned());
    }
    let mut truthy = variants
        .iter()
        .filter(|(_, value)| **value == Value::Bool(true));
    match (truthy.next(), truthy.next()) {
        (Some((name, _)), None) => Some(name.clone()),
        _ => None,
    }
}

/// The new variant's percentage from the fractional rule; `None` when there is no
/// targeting or every weight is zero (flagd then answers with the default variant).
fn fractional_share(definition: &Value, new_variant: &str) -> Result<Option<f64>, String> {
    let targeting = match definition.get("targeting") {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Object(targeting)) if targeting.is_empty() => return Ok(None),
        Some(Value::Object(targeting)) => targeting,
        Some(_) => return Err("its targeting is not an object".to_owned()),
    };
    let Some(Value::Array(rule)) = targeting.get("fractional") else {
        return Err("its targeting is not a top-level \"fractional\" rule".to_owned());
    };
    let (mut new_weight, mut total) = (0.0, 0.0);
    for (index, entry) in rule.iter().enumerate() {
        let Value::Array(bucket) = entry else {
            if index == 0 {
                continue; // the bucketing expression
            }
            return Err(format!(
                "fractional entry {index} is not a [variant, weight] pair"
            ));
        };
        let variant = bucket
            .first()
            .and_then(Value::as_str)
            .ok_or_else(|| format!("fractional entry {index} has no variant name"))?;
        let weight = match bucket.get(1) {
            None => 1.0,
            Some(weight) => weight
                .as_f64()
                .filter(|weight| *weight >= 0.0)
                .ok_or_else(|| format!("fractional entry {index} has a bad weight {weight}"))?,
        };
        total += weight;
        if variant == new_variant {
            new_weight += weight;
        }
    }
    Ok((total > 0.0).then(|| 100.0 * new_weight / total))
}

/// Re-reads the flag file every [`FLAG_POLL_INTERVAL`] and hands each good reading to
/// the world, which records it when it changed. An unreadable or invalid file keeps the
/// last good reading (flag files are replaced by rename, but a writer that truncates
/// and rewrites can be caught half way); the problem is logged once until it changes.
pub async fn watch(path: PathBuf, flag: String, world: Arc<SharedWorld>) {
    let mut ticker = tokio::time::interval(FLAG_POLL_INTERVAL);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_problem: Option<String> = None;
    loop {
        ticker.tick().await;
        match read_file(&path, &flag).await {
            Ok(reading) => {
                if last_problem.take().is_some() {
                    tracing::info!(path = %path.display(), "flag file readable again");
                }
                world.lock().observe_flag(reading, unix_now());
            }
            Err(problem) => {
                if last_problem.as_deref() != Some(problem.as_str()) {
                    tracing::warn!(path = %path.display(), %problem, "flag file not usable; keeping the last good reading");
                    last_problem = Some(problem);
                }
            }
        }
    }
}

/// Reads and evaluates the flag file once.
pub async fn read_file(path: &std::path::Path, flag: &str) -> Result<FlagReading, String> {
    let bytes = tokio::fs::read(path)
        .await
        .map_err(|error| format!("cannot read {}: {error}", path.display()))?;
    let document: Value = serde_json::from_slice(&bytes)
        .map_err(|error| format!("{} is not JSON: {error}", path.display()))?;
    read_flag(&document, flag)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn flag_file(definition: Value) -> Value {
        json!({"flags": {"checkout-v2": definition, "other": {"state": "ENABLED"}}})
    }

    fn percent(definition: Value) -> f64 {
        read_flag(&flag_file(definition), "checkout-v2")
            .unwrap()
            .canary_percent
    }

    #[test]
    fn fractional_weights_give_the_on_share() {
        let definition = json!({
            "state": "ENABLED",
            "variants": {"on": true, "off": false},
            "defaultVariant": "off",
            "targeting": {"fractional": [
                {"cat": [{"var": "$flagd.flagKey"}, {"var": "targetingKey"}]},
                ["on", 25], ["off", 75]]}
        });
        assert_eq!(percent(definition), 25.0);
    }

    #[test]
    fn weights_are_relative_and_a_bucket_without_weight_weighs_one() {
        let relative = json!({
            "state": "ENABLED", "variants": {"on": true, "off": false}, "defaultVariant": "off",
            "targeting": {"fractional": [["on", 1], ["off", 3]]}
        });
        assert_eq!(percent(relative), 25.0);
        let unweighted = json!({
            "state": "ENABLED", "variants": {"on": true, "off": false}, "defaultVariant": "off",
            "targeting": {"fractional": [["on"], ["off"]]}
        });
        assert_eq!(percent(unweighted), 50.0);
    }

    #[test]
    fn without_targeting_the_default_variant_decides() {
        let off = json!({"state": "ENABLED", "variants": {"on": true, "off": false}, "defaultVariant": "off"});
        let on = json!({"state": "ENABLED", "variants": {"on": true, "off": false}, "defaultVariant": "on"});
        let all_zero = json!({
            "state": "ENABLED", "variants": {"on": true, "off": false}, "defaultVariant": "on",
            "targeting": {"fractional": [["on", 0], ["off", 0]]}
        });
        assert_eq!(percent(off), 0.0);
        assert_eq!(percent(on), 100.0);
        assert_eq!(percent(all_zero), 100.0);
    }

    #[test]
    fn a_disabled_flag_gives_nothing_whatever_its_weights() {
        let definition = json!({
            "state": "DISABLED", "variants": {"on": true, "off": false}, "defaultVariant": "on",
            "targeting": {"fractional": [["on", 90], ["off", 10]]}
        });
        let reading = read_flag(&flag_file(definition), "checkout-v2").unwrap();
        assert_eq!(reading.flag_state, FlagStatus::Disabled);
        assert_eq!(reading.canary_percent, 0.0);
    }

    #[test]
    fn a_missing_flag_reads_as_missing_and_a_broken_file_as_an_error() {
        let reading = read_flag(&flag_file(json!({})), "search-v3").unwrap();
        assert_eq!(reading.flag_state, FlagStatus::Missing);
        assert!(read_flag(&json!({"flogs": {}}), "checkout-v2").is_err());
        let if_rule = json!({
            "state": "ENABLED", "variants": {"on": true, "off": false}, "defaultVariant": "off",
            "targeting": {"if": [true, "on", "off"]}
        });
        assert!(read_flag(&flag_file(if_rule), "checkout-v2").is_err());
    }

    #[test]
    fn the_new_variant_may_be_the_true_one_under_another_name() {
        let definition = json!({
            "state": "ENABLED", "variants": {"new": true, "old": false}, "defaultVariant": "old",
            "targeting": {"fractional": [["new", 5], ["old", 95]]}
        });
        assert_eq!(percent(definition), 5.0);
    }

    #[test]
    fn the_fixture_flags_read_as_expected() {
        let text = include_str!("../../../fixtures/flags.json");
        let document: Value = serde_json::from_str(text).unwrap();
        assert_eq!(
            read_flag(&document, "checkout-v2").unwrap(),
            FlagReading {
                flag_state: FlagStatus::Enabled,
                canary_percent: 0.0
            }
        );
        assert_eq!(
            read_flag(&document, "dark-mode").unwrap().canary_percent,
            100.0
        );
    }
}
