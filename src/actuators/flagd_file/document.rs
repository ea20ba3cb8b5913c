//! Reading and editing one flag inside a parsed flagd flag file. Pure: takes and
//! returns `serde_json::Value`s, does no I/O.
//!
//! Edits touch only the flag's `state` and the weights of its top-level `fractional`
//! rule (or create that rule when the flag has no targeting). Every other flag, every
//! key this module does not know, and the order of keys and buckets stay as they were:
//! bucket order decides which users land in which variant, so reordering buckets would
//! reshuffle users. Targeting of any other shape (an `if` around the split, more than
//! two variants) is refused as `Invalid` rather than guessed at.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use super::weights::{Weights, percent_of, weights_for};
use crate::actuators::{ActuatorError, FlagState};
use crate::domain::Percentage;

/// A flag file's flag list is printed in a "not found" message when it has at most
/// this many flags.
const MAX_LISTED_FLAGS: usize = 10;

/// What the kill switch writes into a flag.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum KillMode {
    /// `state` = "DISABLED" and the new variant's weight 0. flagd then answers every
    /// evaluation with reason `DISABLED` and the *application's* code default, not the
    /// flag's off variant.
    #[default]
    Disable,
    /// `state` stays "ENABLED", `defaultVariant` becomes the off variant and the
    /// targeting is removed, so flagd answers every evaluation with the off variant,
    /// whatever the application's code default. A custom bucketing expression in the
    /// removed rule is lost: the next rollout writes the standard one.
    OffVariant,
}

impl KillMode {
    /// `"disable"` or `"off-variant"`, as configured.
    pub fn name(self) -> &'static str {
        match self {
            KillMode::Disable => "disable",
            KillMode::OffVariant => "off-variant",
        }
    }
}

impl std::str::FromStr for KillMode {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "disable" => Ok(KillMode::Disable),
            "off-variant" => Ok(KillMode::OffVariant),
            _ => Err(format!(
                "unknown kill mode {text:?}: expected \"disable\" (state DISABLED, flagd serves the application's default) or \"off-variant\" (flagd serves the off variant)"
            )),
        }
    }
}

/// What a change asks for: the flag's state and the new variant's share.
#[derive(Debug, Clone, Copy)]
pub(super) struct Desired {
    /// `state` = "ENABLED" when true, "DISABLED" (the kill switch) when false.
    pub(super) enabled: bool,
    /// The share of the new variant in the fractional rule.
    pub(super) rollout: Percentage,
}

/// Reads `flag`'s state from a parsed flag file. `store` names the file in errors.
pub(super) fn read_state(
    root: &Value,
    flag: &str,
    store: &str,
) -> Result<FlagState, ActuatorError> {
    let flag_object = flag_object(root, flag, store)?;
    let invalid = |message: String| invalid(store, flag, message);
    let enabled = read_enabled(flag_object).map_err(invalid)?;
    let rollout = read_rollout(flag_object).map_err(invalid)?;
    Ok(FlagState { enabled, rollout })
}

/// Reads `flag`'s state as an actuator whose kill switch is `kill` reports it. With
/// [`KillMode::OffVariant`], a flag that is enabled with no targeting and an off
/// `defaultVariant` is what the kill switch leaves, and flagd serves it as off to
/// everybody, so it reads as disabled at 0 %.
pub(super) fn read_state_for(
    root: &Value,
    flag: &str,
    store: &str,
    kill: KillMode,
) -> Result<FlagState, ActuatorError> {
    let mut state = read_state(root, flag, store)?;
    if kill == KillMode::OffVariant && state.enabled && state.rollout == Percentage::ZERO {
        let flag_object = flag_object(root, flag, store)?;
        let untargeted = fractional_buckets(flag_object)
            .map_err(|message| invalid(store, flag, message))?
            .is_none();
        state.enabled = !untargeted;
    }
    Ok(state)
}

/// Sets `flag`'s state and the new variant's weight, creating the fractional rule when
/// the flag has no targeting, and returns the state the edited document reports.
/// Leaves `root` untouched when it returns an error.
pub(super) fn apply(
    root: &mut Value,
    flag: &str,
    desired: Desired,
    store: &str,
) -> Result<FlagState, ActuatorError> {
    let flag_object = flag_object_mut(root, flag, store)?;
    edit_flag(flag_object, desired).map_err(|message| invalid(store, flag, message))?;
    read_state(root, flag, store)
}

/// The kill switch: disables the flag and zeroes the new variant's weight. When the
/// flag's targeting is of a shape this module does not edit, it still disables the flag
/// (a rollback must not fail because of the rollout rule) and says so in the returned
/// note; the weights are then left as they were.
pub(super) fn kill(
    root: &mut Value,
    flag: &str,
    store: &str,
    mode: KillMode,
) -> Result<(FlagState, Option<String>), ActuatorError> {
    if mode == KillMode::OffVariant {
        return kill_to_off_variant(root, flag, store);
    }
    let desired = Desired {
        enabled: false,
        rollout: Percentage::ZERO,
    };
    let flag_object = flag_object_mut(root, flag, store)?;
    let mut edited = flag_object.clone();
    match edit_flag(&mut edited, desired) {
        Ok(()) => {
            *flag_object = edited;
            Ok((read_state(root, flag, store)?, None))
        }
        Err(message) => Ok(disable_as_last_resort(flag_object, message)),
    }
}

/// A kill switch that could not edit the flag as its mode says still switches it off:
/// `state: DISABLED`, everything else left as it was, and `message` as the note why.
fn disable_as_last_resort(
    flag_object: &mut Map<String, Value>,
    message: String,
) -> (FlagState, Option<String>) {
    flag_object.insert("state".to_owned(), Value::from("DISABLED"));
    let state = FlagState {
        enabled: false,
        rollout: Percentage::ZERO,
    };
    (state, Some(message))
}

/// The flags of `read_back` other than `flag` that differ from `before`: added,
/// removed or changed. Used after a write to check that nothing but `flag` moved.
pub(super) fn other_flags_changed(before: &Value, read_back: &Value, flag: &str) -> Vec<String> {
    let empty = Map::new();
    let before = before
        .get("flags")
        .and_then(Value::as_object)
        .unwrap_or(&empty);
    let after = read_back
        .get("flags")
        .and_then(Value::as_object)
        .unwrap_or(&empty);
    let mut changed: Vec<String> = before
        .iter()
        .filter(|(name, value)| name.as_str() != flag && after.get(name.as_str()) != Some(value))
        .map(|(name, _)| name.clone())
        .collect();
    changed.extend(
        after
            .keys()
            .filter(|name| name.as_str() != flag && !before.contains_key(name.as_str()))
            .cloned(),
    );
    changed
}

/// The kill switch of [`KillMode::OffVariant`]: enabled, `defaultVariant` the off
/// variant, no targeting. When the off variant cannot be told, the flag is disabled
/// instead (a rollback must not fail) and the returned note says why.
fn kill_to_off_variant(
    root: &mut Value,
    flag: &str,
    store: &str,
) -> Result<(FlagState, Option<String>), ActuatorError> {
    let flag_object = flag_object_mut(root, flag, store)?;
    match new_variant(flag_object).and_then(|new| off_variant(flag_object, &new)) {
        Ok(off) => {
            flag_object.insert("state".to_owned(), Value::from("ENABLED"));
            flag_object.insert("defaultVariant".to_owned(), Value::from(off));
            // shift_remove keeps the order of the keys that follow.
            flag_object.shift_remove("targeting");
            Ok((
                read_state_for(root, flag, store, KillMode::OffVariant)?,
                None,
            ))
        }
        Err(message) => Ok(disable_as_last_resort(flag_object, message)),
    }
}

/// The variant the off-variant kill switch serves: `defaultVariant` when it is not the
/// new variant (the fallback a rollout splits against); otherwise the only other
/// variant, or the only one whose value is `false` or that is named "off".
fn off_variant(flag_object: &Map<String, Value>, new_variant: &str) -> Result<String, String> {
    if let Ok(fallback) = default_variant(flag_object)
        && fallback != new_variant
    {
        return Ok(fallback);
    }
    let variants = flag_object
        .get("variants")
        .and_then(Value::as_object)
        .ok_or("it has no \"variants\" object")?;
    let others: Vec<&String> = variants
        .keys()
        .filter(|name| name.as_str() != new_variant)
        .collect();
    let offs: Vec<&String> = variants
        .iter()
        .filter(|(name, value)| {
            name.as_str() != new_variant
                && (**value == Value::Bool(false) || name.as_str() == "off")
        })
        .map(|(name, _)| name)
        .collect();
    match (others.as_slice(), offs.as_slice()) {
        ([only], _) | (_, [only]) => Ok((*only).clone()),
        _ => Err(format!(
            "its defaultVariant is the new variant {new_variant:?} and none of its other variants ({}) is the only one that is `false` or named \"off\", so the off variant is unknown",
            names(others.iter().copied())
        )),
    }
}

/// Applies `desired` to one flag object, or explains why it cannot, leaving the object
/// as it was in that case.
fn edit_flag(flag_object: &mut Map<String, Value>, desired: Desired) -> Result<(), String> {
    let new_variant = new_variant(flag_object)?;
    let fallback = default_variant(flag_object)?;
    if new_variant == fallback {
        return Err(format!(
            "its defaultVariant {new_variant:?} is the new variant, so there is no fallback to roll back to"
        ));
    }
    let target = weights_for(desired.rollout);
    match fractional_buckets(flag_object)? {
        None => {
            let rule = json!({
                "fractional": [
                    {"cat": [{"var": "$flagd.flagKey"}, {"var": "targetingKey"}]},
                    [new_variant, target.new_variant],
                    [fallback, target.fallback()],
                ]
            });
            flag_object.insert("targeting".to_owned(), rule);
        }
        Some(buckets) => {
            let positions = two_bucket_positions(&buckets, &new_variant, &fallback)?;
            let current = Weights {
                new_variant: buckets[positions.new_variant].weight,
                total: buckets[positions.new_variant].weight + buckets[positions.fallback].weight,
            };
            // Weights that already give exactly this share are kept, so a hand-written
            // 1 : 3 split is not rewritten to 25 : 75 for nothing.
            if percent_of(current.new_variant, current.total) != Some(desired.rollout.value()) {
                let rule = fractional_rule_mut(flag_object);
                set_weight(
                    rule,
                    buckets[positions.new_variant].index,
                    target.new_variant,
                );
                set_weight(rule, buckets[positions.fallback].index, target.fallback());
            }
        }
    }
    let state = if desired.enabled {
        "ENABLED"
    } else {
        "DISABLED"
    };
    flag_object.insert("state".to_owned(), Value::from(state));
    Ok(())
}

/// `state` as a boolean; flagd knows only these two values.
fn read_enabled(flag_object: &Map<String, Value>) -> Result<bool, String> {
    match flag_object.get("state").and_then(Value::as_str) {
        Some("ENABLED") => Ok(true),
        Some("DISABLED") => Ok(false),
        other => Err(format!(
            "its state is {}, expected \"ENABLED\" or \"DISABLED\"",
            other.map_or_else(|| "missing".to_owned(), |state| format!("{state:?}"))
        )),
    }
}

/// The new variant's share: from the fractional weights, or 0 % / 100 % by the
/// default variant when there is no split (or a split whose weights are all zero,
/// which flagd also answers with the default variant).
fn read_rollout(flag_object: &Map<String, Value>) -> Result<Percentage, String> {
    let new_variant = new_variant(flag_object)?;
    let split = match fractional_buckets(flag_object)? {
        None => None,
        Some(buckets) => {
            let new_weight: u64 = buckets
                .iter()
                .filter(|bucket| bucket.variant == new_variant)
                .map(|bucket| bucket.weight)
                .sum();
            let total: u64 = buckets.iter().map(|bucket| bucket.weight).sum();
            percent_of(new_weight, total)
        }
    };
    let percent = match split {
        Some(percent) => percent,
        None if default_variant(flag_object)? == new_variant => 100.0,
        None => 0.0,
    };
    Percentage::parse(percent).map_err(|message| format!("its rollout {message}"))
}

/// The variant being rolled out: the one whose value is `true` or that is named "on".
fn new_variant(flag_object: &Map<String, Value>) -> Result<String, String> {
    let variants = flag_object
        .get("variants")
        .and_then(Value::as_object)
        .ok_or("it has no \"variants\" object")?;
    let candidates: Vec<&String> = variants
        .iter()
        .filter(|(name, value)| **value == Value::Bool(true) || name.as_str() == "on")
        .map(|(name, _)| name)
        .collect();
    match candidates.as_slice() {
        [only] => Ok((*only).clone()),
        [] => Err(format!(
            "none of its variants ({}) is `true` or named \"on\", so the new variant is unknown",
            names(variants.keys())
        )),
        several => Err(format!(
            "several of its variants ({}) are `true` or named \"on\", so the new variant is ambiguous",
            names(several.iter().copied())
        )),
    }
}

/// The fallback: `defaultVariant`, which must name one of the variants.
fn default_variant(flag_object: &Map<String, Value>) -> Result<String, String> {
    let default = flag_object
        .get("defaultVariant")
        .and_then(Value::as_str)
        .ok_or("it has no defaultVariant to fall back to")?;
    let known = flag_object
        .get("variants")
        .and_then(Value::as_object)
        .is_some_and(|variants| variants.contains_key(default));
    if known {
        Ok(default.to_owned())
    } else {
        Err(format!(
            "its defaultVariant {default:?} is not one of its variants"
        ))
    }
}

/// One `[variant, weight]` entry of a fractional rule.
#[derive(Debug)]
struct Bucket {
    /// Position in the rule's array (after the optional bucketing expression).
    index: usize,
    variant: String,
    weight: u64,
}

/// The buckets of the flag's top-level fractional rule; `None` when the flag has no
/// targeting (absent, `null` or `{}`). Any other targeting is an error.
fn fractional_buckets(flag_object: &Map<String, Value>) -> Result<Option<Vec<Bucket>>, String> {
    let targeting = match flag_object.get("targeting") {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Object(targeting)) if targeting.is_empty() => return Ok(None),
        Some(Value::Object(targeting)) => targeting,
        Some(_) => return Err("its targeting is not a JSON object".to_owned()),
    };
    let rule = match (targeting.len(), targeting.get("fractional")) {
        (1, Some(Value::Array(rule))) => rule,
        _ => {
            return Err(
                "its targeting is not a single top-level \"fractional\" rule, the only shape canary edits"
                    .to_owned(),
            );
        }
    };
    let mut buckets = Vec::new();
    for (index, entry) in rule.iter().enumerate() {
        let Value::Array(entry) = entry else {
            // flagd allows one bucketing expression before the buckets.
            if index == 0 {
                continue;
            }
            return Err(format!(
                "fractional entry {index} is not a [variant, weight] pair"
            ));
        };
        let (variant, weight) = match entry.as_slice() {
            [Value::String(variant)] => (variant, 1),
            [Value::String(variant), weight] => (variant, parse_weight(weight, index)?),
            _ => {
                return Err(format!(
                    "fractional entry {index} is not a [variant name, weight] pair"
                ));
            }
        };
        buckets.push(Bucket {
            index,
            variant: variant.clone(),
            weight,
        });
    }
    Ok(Some(buckets))
}

/// A bucket weight as flagd reads it: an integer, negatives counted as zero.
fn parse_weight(weight: &Value, index: usize) -> Result<u64, String> {
    if let Some(weight) = weight.as_u64() {
        return Ok(weight);
    }
    if weight.as_i64().is_some() {
        return Ok(0);
    }
    match weight.as_f64() {
        Some(float) if float.fract() == 0.0 && float <= u32::MAX as f64 => {
            Ok(float.max(0.0) as u64)
        }
        _ => Err(format!(
            "fractional entry {index} has weight {weight}, flagd needs an integer"
        )),
    }
}

/// Where the new and fallback variants sit among the buckets.
struct Positions {
    new_variant: usize,
    fallback: usize,
}

/// The rule must split between exactly the new variant and the fallback, once each.
fn two_bucket_positions(
    buckets: &[Bucket],
    new_variant: &str,
    fallback: &str,
) -> Result<Positions, String> {
    let position = |variant: &str| buckets.iter().position(|bucket| bucket.variant == variant);
    match (buckets.len(), position(new_variant), position(fallback)) {
        (2, Some(new_position), Some(fallback_position)) => Ok(Positions {
            new_variant: new_position,
            fallback: fallback_position,
        }),
        _ => Err(format!(
            "its fractional rule splits between {}; canary edits a split between exactly the new variant {new_variant:?} and the default {fallback:?}",
            names(buckets.iter().map(|bucket| &bucket.variant))
        )),
    }
}

/// The fractional rule's array; only called after `fractional_buckets` found it.
fn fractional_rule_mut(flag_object: &mut Map<String, Value>) -> &mut Vec<Value> {
    flag_object
        .get_mut("targeting")
        .and_then(|targeting| targeting.get_mut("fractional"))
        .and_then(Value::as_array_mut)
        .expect("the fractional rule was found before editing it")
}

/// Sets one bucket's weight, adding it when the bucket had only a variant name.
fn set_weight(rule: &mut [Value], index: usize, weight: u64) {
    let entry = rule[index]
        .as_array_mut()
        .expect("the bucket was read as an array before editing it");
    let weight = Value::from(weight);
    match entry.get_mut(1) {
        Some(existing) if *existing != weight => *existing = weight,
        Some(_) => {}
        None => entry.push(weight),
    }
}

/// The flags object of the file, or why the file is not a flag file.
fn flags<'a>(root: &'a Value, store: &str) -> Result<&'a Map<String, Value>, ActuatorError> {
    root.get("flags")
        .and_then(Value::as_object)
        .ok_or_else(|| ActuatorError::Invalid {
            store: store.to_owned(),
            message: "not a flagd flag file: no top-level \"flags\" object".to_owned(),
        })
}

fn flag_object<'a>(
    root: &'a Value,
    flag: &str,
    store: &str,
) -> Result<&'a Map<String, Value>, ActuatorError> {
    let flags = flags(root, store)?;
    match flags.get(flag) {
        Some(Value::Object(flag_object)) => Ok(flag_object),
        Some(_) => Err(invalid(store, flag, "it is not a JSON object".to_owned())),
        None => Err(not_found(flags, flag, store)),
    }
}

fn flag_object_mut<'a>(
    root: &'a mut Value,
    flag: &str,
    store: &str,
) -> Result<&'a mut Map<String, Value>, ActuatorError> {
    // Checked through the shared path first so the errors are worded once.
    flag_object(root, flag, store)?;
    Ok(root
        .get_mut("flags")
        .and_then(|flags| flags.get_mut(flag))
        .and_then(Value::as_object_mut)
        .expect("the flag was found as an object just above"))
}

/// `FlagNotFound`, naming the flags that do exist when there are few of them.
fn not_found(flags: &Map<String, Value>, flag: &str, store: &str) -> ActuatorError {
    let store = if flags.is_empty() {
        format!("{store} (it has no flags)")
    } else if flags.len() <= MAX_LISTED_FLAGS {
        format!("{store} (flags there: {})", names(flags.keys()))
    } else {
        format!("{store} ({} flags)", flags.len())
    };
    ActuatorError::FlagNotFound {
        flag: flag.to_owned(),
        store,
    }
}

fn invalid(store: &str, flag: &str, message: String) -> ActuatorError {
    ActuatorError::Invalid {
        store: store.to_owned(),
        message: format!("cannot edit flag {flag:?}: {message}"),
    }
}

/// `"a", "b", "c"`.
fn names<'a>(names: impl IntoIterator<Item = &'a String>) -> String {
    names
        .into_iter()
        .map(|name| format!("{name:?}"))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    const STORE: &str = "flags.json";

    fn percent(value: f64) -> Percentage {
        Percentage::parse(value).unwrap()
    }

    fn enabled_at(value: f64) -> Desired {
        Desired {
            enabled: true,
            rollout: percent(value),
        }
    }

    fn document(flag: Value) -> Value {
        json!({"flags": {"new-checkout": flag}})
    }

    fn rule(root: &Value) -> &Value {
        &root["flags"]["new-checkout"]["targeting"]["fractional"]
    }

    #[test]
    fn missing_fractional_rule_is_created_from_the_variant_names() {
        let mut root = document(json!({
            "state": "DISABLED",
            "variants": {"enabled": true, "disabled": false},
            "defaultVariant": "disabled"
        }));
        let state = apply(&mut root, "new-checkout", enabled_at(10.0), STORE).unwrap();
        assert_eq!(
            state,
            FlagState {
                enabled: true,
                rollout: percent(10.0)
            }
        );
        assert_eq!(
            *rule(&root),
            json!([
                {"cat": [{"var": "$flagd.flagKey"}, {"var": "targetingKey"}]},
                ["enabled", 10],
                ["disabled", 90]
            ])
        );
        assert_eq!(root["flags"]["new-checkout"]["state"], "ENABLED");
    }

    #[test]
    fn existing_bucket_order_and_bucketing_expression_are_kept() {
        let mut root = document(json!({
            "state": "ENABLED",
            "variants": {"on": true, "off": false},
            "defaultVariant": "off",
            "targeting": {"fractional": [{"var": "email"}, ["off", 90], ["on", 10]]}
        }));
        apply(&mut root, "new-checkout", enabled_at(50.0), STORE).unwrap();
        assert_eq!(
            *rule(&root),
            json!([{"var": "email"}, ["off", 50], ["on", 50]])
        );
    }

    #[test]
    fn weights_that_already_give_the_share_are_not_rewritten() {
        let mut root = document(json!({
            "state": "ENABLED",
            "variants": {"on": true, "off": false},
            "defaultVariant": "off",
            "targeting": {"fractional": [["on", 1], ["off", 3]]}
        }));
        let state = apply(&mut root, "new-checkout", enabled_at(25.0), STORE).unwrap();
        assert_eq!(state.rollout, percent(25.0));
        assert_eq!(*rule(&root), json!([["on", 1], ["off", 3]]));
    }

    #[test]
    fn buckets_without_weights_count_one_each_and_get_weights_when_edited() {
        let mut root = document(json!({
            "state": "ENABLED",
            "variants": {"on": true, "off": false},
            "defaultVariant": "off",
            "targeting": {"fractional": [["on"], ["off"]]}
        }));
        assert_eq!(
            read_state(&root, "new-checkout", STORE).unwrap().rollout,
            percent(50.0)
        );
        apply(&mut root, "new-checkout", enabled_at(5.0), STORE).unwrap();
        assert_eq!(*rule(&root), json!([["on", 5], ["off", 95]]));
    }

    #[test]
    fn flag_without_fractional_rule_reports_its_default_variant() {
        let off = document(
            json!({"state": "ENABLED", "variants": {"on": true, "off": false}, "defaultVariant": "off"}),
        );
        let on = document(
            json!({"state": "ENABLED", "variants": {"on": true, "off": false}, "defaultVariant": "on"}),
        );
        assert_eq!(
            read_state(&off, "new-checkout", STORE).unwrap().rollout,
            Percentage::ZERO
        );
        assert_eq!(
            read_state(&on, "new-checkout", STORE).unwrap().rollout,
            Percentage::FULL
        );
    }

    #[test]
    fn ambiguous_or_unknown_new_variant_is_refused_as_invalid() {
        for variants in [
            json!({"on": false, "yes": true, "off": false}),
            json!({"red": "red", "blue": "blue"}),
        ] {
            let mut root = document(
                json!({"state": "ENABLED", "variants": variants, "defaultVariant": "off"}),
            );
            let before = root.clone();
            let error = apply(&mut root, "new-checkout", enabled_at(5.0), STORE).unwrap_err();
            assert!(matches!(error, ActuatorError::Invalid { .. }), "{error}");
            assert_eq!(root, before);
        }
    }

    #[test]
    fn default_variant_that_is_the_new_variant_is_refused() {
        let mut root = document(
            json!({"state": "ENABLED", "variants": {"on": true, "off": false}, "defaultVariant": "on"}),
        );
        let error = apply(&mut root, "new-checkout", enabled_at(5.0), STORE).unwrap_err();
        assert!(error.to_string().contains("no fallback"), "{error}");
    }

    #[test]
    fn targeting_of_another_shape_is_refused_but_kill_still_disables() {
        let mut root = document(json!({
            "state": "ENABLED",
            "variants": {"on": true, "off": false},
            "defaultVariant": "off",
            "targeting": {"if": [{"ends_with": [{"var": "email"}, "@example.com"]}, "on", null]}
        }));
        let error = apply(&mut root, "new-checkout", enabled_at(5.0), STORE).unwrap_err();
        assert!(
            error
                .to_string()
                .contains("single top-level \"fractional\""),
            "{error}"
        );
        let mut off_variant_root = root.clone();
        let (state, note) = kill(&mut root, "new-checkout", STORE, KillMode::Disable).unwrap();
        assert!(!state.enabled);
        assert!(note.is_some());
        assert_eq!(root["flags"]["new-checkout"]["state"], "DISABLED");
        assert!(root["flags"]["new-checkout"]["targeting"]["if"].is_array());
        // The off-variant kill switch removes any targeting: every evaluation gets "off".
        let (state, note) = kill(
            &mut off_variant_root,
            "new-checkout",
            STORE,
            KillMode::OffVariant,
        )
        .unwrap();
        assert_eq!(note, None);
        assert!(!state.enabled);
        assert_eq!(
            off_variant_root["flags"]["new-checkout"],
            json!({"state": "ENABLED", "variants": {"on": true, "off": false}, "defaultVariant": "off"})
        );
    }

    #[test]
    fn the_off_variant_kill_switch_finds_the_off_variant_when_the_default_is_on() {
        let mut root = document(json!({
            "state": "ENABLED",
            "variants": {"on": true, "off": false},
            "defaultVariant": "on",
            "metadata": {"ticket": "PAY-1"}
        }));
        let (state, note) = kill(&mut root, "new-checkout", STORE, KillMode::OffVariant).unwrap();
        assert_eq!(note, None);
        assert_eq!(
            state,
            FlagState {
                enabled: false,
                rollout: Percentage::ZERO
            }
        );
        assert_eq!(root["flags"]["new-checkout"]["defaultVariant"], "off");
        let keys: Vec<&String> = root["flags"]["new-checkout"]
            .as_object()
            .unwrap()
            .keys()
            .collect();
        assert_eq!(keys, ["state", "variants", "defaultVariant", "metadata"]);
    }

    #[test]
    fn the_off_variant_kill_switch_disables_a_flag_whose_off_variant_is_unknown() {
        let mut root = document(json!({
            "state": "ENABLED",
            "variants": {"on": true, "red": "red", "blue": "blue"},
            "defaultVariant": "on"
        }));
        let (state, note) = kill(&mut root, "new-checkout", STORE, KillMode::OffVariant).unwrap();
        assert!(!state.enabled);
        assert!(note.unwrap().contains("off variant is unknown"));
        assert_eq!(root["flags"]["new-checkout"]["state"], "DISABLED");
    }

    #[test]
    fn an_untargeted_enabled_flag_reads_as_off_only_for_the_off_variant_kill_switch() {
        let root = document(
            json!({"state": "ENABLED", "variants": {"on": true, "off": false}, "defaultVariant": "off"}),
        );
        let disable = read_state_for(&root, "new-checkout", STORE, KillMode::Disable).unwrap();
        assert!(disable.enabled);
        let off_variant =
            read_state_for(&root, "new-checkout", STORE, KillMode::OffVariant).unwrap();
        assert_eq!(
            off_variant,
            FlagState {
                enabled: false,
                rollout: Percentage::ZERO
            }
        );
    }

    #[test]
    fn non_integer_weight_is_invalid() {
        let root = document(json!({
            "state": "ENABLED",
            "variants": {"on": true, "off": false},
            "defaultVariant": "off",
            "targeting": {"fractional": [["on", 2.5], ["off", 97.5]]}
        }));
        let error = read_state(&root, "new-checkout", STORE).unwrap_err();
        assert!(error.to_string().contains("needs an integer"), "{error}");
    }

    #[test]
    fn unknown_state_is_invalid() {
        let root = document(
            json!({"state": "ON", "variants": {"on": true, "off": false}, "defaultVariant": "off"}),
        );
        let error = read_state(&root, "new-checkout", STORE).unwrap_err();
        assert!(error.to_string().contains("\"ON\""), "{error}");
    }

    #[test]
    fn file_without_flags_object_is_invalid() {
        let error = read_state(&json!({"flag": {}}), "new-checkout", STORE).unwrap_err();
        assert!(matches!(error, ActuatorError::Invalid { .. }), "{error}");
    }

    #[test]
    fn missing_flag_lists_the_flags_of_a_short_file_only() {
        let short = json!({"flags": {"a": {}, "b": {}}});
        let error = read_state(&short, "new-checkout", STORE).unwrap_err();
        assert_eq!(
            error.to_string(),
            r#"flag "new-checkout" not found in flags.json (flags there: "a", "b")"#
        );
        let long: Map<String, Value> = (0..20)
            .map(|index| (format!("flag-{index}"), json!({})))
            .collect();
        let error = read_state(&json!({"flags": long}), "new-checkout", STORE).unwrap_err();
        assert_eq!(
            error.to_string(),
            r#"flag "new-checkout" not found in flags.json (20 flags)"#
        );
    }
}
