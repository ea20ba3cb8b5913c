//! What a feature's strategies in one environment mean, and what to change to reach a
//! rollout. Pure: takes the admin API's JSON, returns values, does no I/O.
//!
//! A user gets a flag in an Unleash environment when the environment is enabled and
//! *any* of its active strategies matches them (strategies are OR'ed; a disabled
//! strategy is skipped). So a percentage only means something when the environment's
//! one active strategy is the gradual rollout canary moves; any other active strategy is
//! refused by name rather than pretended away.

use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::actuators::FlagState;
use crate::domain::Percentage;

/// The strategy canary creates and moves.
pub(super) const ROLLOUT_STRATEGY: &str = "flexibleRollout";

/// The part of `GET /api/admin/projects/{project}/features/{flag}` canary reads.
#[derive(Debug, Clone, Deserialize)]
pub(super) struct Feature {
    /// The feature's name, as Unleash spells it.
    pub(super) name: String,
    /// One entry per environment enabled in the feature's project.
    #[serde(default)]
    pub(super) environments: Vec<Environment>,
}

/// One environment of a feature.
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub(super) struct Environment {
    pub(super) name: String,
    /// The environment's switch; `false` is the kill switch.
    pub(super) enabled: bool,
    #[serde(default)]
    pub(super) strategies: Vec<Strategy>,
}

/// One activation strategy of an environment.
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub(super) struct Strategy {
    pub(super) id: String,
    pub(super) name: String,
    #[serde(default)]
    pub(super) title: Option<String>,
    /// A disabled strategy is kept but never evaluated.
    #[serde(default)]
    pub(super) disabled: Option<bool>,
    #[serde(default)]
    pub(super) parameters: Map<String, Value>,
}

impl Strategy {
    fn is_active(&self) -> bool {
        self.disabled != Some(true)
    }

    /// How a strategy is named in messages: its type, title and id.
    fn label(&self) -> String {
        match self.title.as_deref().filter(|title| !title.is_empty()) {
            Some(title) => format!("{} {title:?} (id {})", self.name, self.id),
            None => format!("{} (id {})", self.name, self.id),
        }
    }

    /// The `rollout` parameter as a whole percentage. Unleash stores it as a string
    /// ("25"); a number is accepted too.
    pub(super) fn rollout(&self) -> Result<u8, String> {
        let value = self.parameters.get("rollout");
        let parsed = match value {
            Some(Value::String(text)) => text.trim().parse::<u8>().ok(),
            Some(Value::Number(number)) => number.as_u64().and_then(|n| u8::try_from(n).ok()),
            _ => None,
        };
        match parsed {
            Some(percent) if percent <= 100 => Ok(percent),
            _ => Err(format!(
                "strategy {} has rollout {}, expected a whole percentage from 0 to 100",
                self.label(),
                value.map_or_else(|| "missing".to_owned(), Value::to_string)
            )),
        }
    }
}

impl Feature {
    /// The environment called `name`, or why there is none.
    pub(super) fn environment(&self, name: &str) -> Result<&Environment, String> {
        self.environments
            .iter()
            .find(|environment| environment.name == name)
            .ok_or_else(|| {
                let known: Vec<String> = self
                    .environments
                    .iter()
                    .map(|environment| format!("{:?}", environment.name))
                    .collect();
                format!(
                    "feature {:?} has no environment {name:?} (its environments: {})",
                    self.name,
                    if known.is_empty() {
                        "none".to_owned()
                    } else {
                        known.join(", ")
                    }
                )
            })
    }
}

/// An environment's strategies sorted into the rollout canary moves and the rest.
#[derive(Debug)]
pub(super) struct Reading<'a> {
    pub(super) enabled: bool,
    /// The gradual rollout canary moves, active or not, when there is one.
    pub(super) rollout_strategy: Option<&'a Strategy>,
    /// Active strategies besides it: each would give users the flag whatever the
    /// rollout says.
    pub(super) others_active: Vec<&'a Strategy>,
}

/// Finds the rollout strategy: the `flexibleRollout` whose `groupId` is the flag (the
/// one canary creates, and the one Unleash creates by default), or else the only
/// `flexibleRollout` there is. Several candidates and no way to tell is an error.
pub(super) fn read<'a>(environment: &'a Environment, flag: &str) -> Result<Reading<'a>, String> {
    let gradual: Vec<&Strategy> = environment
        .strategies
        .iter()
        .filter(|strategy| strategy.name == ROLLOUT_STRATEGY)
        .collect();
    let grouped: Vec<&Strategy> = gradual
        .iter()
        .copied()
        .filter(|strategy| strategy.parameters.get("groupId").and_then(Value::as_str) == Some(flag))
        .collect();
    let rollout_strategy = match (grouped.as_slice(), gradual.as_slice()) {
        ([only], _) => Some(*only),
        ([], []) => None,
        ([], [only]) => Some(*only),
        _ => {
            let candidates = if grouped.is_empty() {
                &gradual
            } else {
                &grouped
            };
            return Err(format!(
                "environment {:?} has several {ROLLOUT_STRATEGY} strategies ({}), so the one to move is ambiguous; leave one",
                environment.name,
                labels(candidates)
            ));
        }
    };
    let others_active = environment
        .strategies
        .iter()
        .filter(|strategy| strategy.is_active())
        .filter(|strategy| rollout_strategy.is_none_or(|ours| ours.id != strategy.id))
        .collect();
    Ok(Reading {
        enabled: environment.enabled,
        rollout_strategy,
        others_active,
    })
}

impl Reading<'_> {
    /// The state users see, or why it cannot be told as one percentage.
    ///
    /// A disabled environment reads as off with the rollout strategy's percentage (0 %
    /// without one). An enabled environment with no active strategy reads as 100 %:
    /// Unleash SDKs give a flag with no strategies to everyone.
    pub(super) fn state(&self) -> Result<FlagState, String> {
        if self.enabled {
            self.refuse_others()?;
        }
        let rollout = match self.rollout_strategy {
            Some(strategy) if strategy.is_active() || !self.enabled => strategy.rollout()?,
            _ if self.enabled => 100,
            _ => 0,
        };
        Ok(FlagState {
            enabled: self.enabled,
            rollout: percentage(rollout),
        })
    }

    /// Refuses active strategies besides the rollout, naming them.
    pub(super) fn refuse_others(&self) -> Result<(), String> {
        if self.others_active.is_empty() {
            return Ok(());
        }
        Err(format!(
            "besides the {ROLLOUT_STRATEGY} strategy canary moves, the environment has active strategies that give users the flag whatever the rollout percentage says: {}; remove or disable them before a canary rollout",
            labels(&self.others_active)
        ))
    }

    /// The changes that give the flag `rollout` percent with the environment on, in the
    /// order they must be made.
    pub(super) fn plan(&self, flag: &str, rollout: u8) -> Result<Plan, String> {
        self.refuse_others()?;
        let strategy = match self.rollout_strategy {
            None => StrategyChange::Create(new_strategy_body(flag, rollout)),
            Some(strategy) => {
                let mut operations = Vec::new();
                if strategy.rollout().ok() != Some(rollout) {
                    operations.push(json!({
                        "op": if strategy.parameters.contains_key("rollout") { "replace" } else { "add" },
                        "path": "/parameters/rollout",
                        "value": rollout.to_string(),
                    }));
                }
                if !strategy.is_active() {
                    operations.push(json!({"op": "replace", "path": "/disabled", "value": false}));
                }
                if operations.is_empty() {
                    StrategyChange::None
                } else {
                    StrategyChange::Patch {
                        id: strategy.id.clone(),
                        operations: Value::Array(operations),
                    }
                }
            }
        };
        Ok(Plan {
            strategy,
            switch_on: !self.enabled,
        })
    }
}

/// What `set_rollout` changes. The strategy change comes first: Unleash adds a default
/// strategy of 100 % when an environment with no active strategy is switched on, so the
/// environment is only switched on once the rollout strategy is in place and active.
#[derive(Debug, PartialEq)]
pub(super) struct Plan {
    pub(super) strategy: StrategyChange,
    pub(super) switch_on: bool,
}

/// How the rollout strategy changes.
#[derive(Debug, PartialEq)]
pub(super) enum StrategyChange {
    /// Already as asked.
    None,
    /// `POST .../strategies` with this body.
    Create(Value),
    /// `PATCH .../strategies/{id}` with these JSON-patch operations.
    Patch { id: String, operations: Value },
}

/// The body of a new gradual rollout: sticky on Unleash's default stickiness, grouped by
/// the flag (so the same users stay in as the percentage grows), the rollout a string.
fn new_strategy_body(flag: &str, rollout: u8) -> Value {
    json!({
        "name": ROLLOUT_STRATEGY,
        "constraints": [],
        "parameters": {
            "rollout": rollout.to_string(),
            "stickiness": "default",
            "groupId": flag,
        },
    })
}

/// An Unleash rollout as a whole percentage. Unleash stores integers from 0 to 100;
/// anything finer is refused rather than rounded: rounding 0.1 % up would send ten
/// times the traffic asked for, rounding it down would send none and measure nothing.
pub(super) fn whole_percent(rollout: Percentage) -> Result<u8, String> {
    let value = rollout.value();
    let rounded = value.round();
    if (value - rounded).abs() <= 1e-9 {
        // A validated percentage lies in [0, 100], so the cast is exact.
        Ok(rounded as u8)
    } else {
        Err(format!(
            "Unleash rollouts are whole percentages from 0 to 100, and {rollout} is not one; canary does not round a rollout (use {}% or {}% in the plan)",
            value.floor(),
            value.ceil()
        ))
    }
}

fn percentage(percent: u8) -> Percentage {
    Percentage::parse(f64::from(percent)).expect("a rollout of at most 100 is a percentage")
}

fn labels(strategies: &[&Strategy]) -> String {
    strategies
        .iter()
        .map(|strategy| strategy.label())
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strategy(id: &str, name: &str, parameters: Value) -> Value {
        json!({"id": id, "name": name, "title": null, "disabled": false, "constraints": [], "parameters": parameters})
    }

    fn environment(enabled: bool, strategies: Vec<Value>) -> Environment {
        serde_json::from_value(json!({"name": "production", "enabled": enabled, "type": "production", "strategies": strategies})).unwrap()
    }

    fn rollout(id: &str, percent: &str) -> Value {
        strategy(
            id,
            ROLLOUT_STRATEGY,
            json!({"rollout": percent, "stickiness": "default", "groupId": "checkout"}),
        )
    }

    #[test]
    fn a_feature_from_the_admin_api_parses() {
        let feature: Feature = serde_json::from_value(json!({
            "name": "checkout", "project": "default", "stale": false, "variants": [],
            "environments": [
                {"name": "development", "enabled": false, "yes": 0, "no": 0, "strategies": []},
                {"name": "production", "enabled": true, "strategies": [
                    {"name": "flexibleRollout", "constraints": [], "variants": [], "segments": [], "sortOrder": 0,
                     "id": "5b1e", "title": null, "disabled": false,
                     "parameters": {"groupId": "checkout", "rollout": "25", "stickiness": "default"}}
                ]}
            ]
        }))
        .unwrap();
        let production = feature.environment("production").unwrap();
        let state = read(production, "checkout").unwrap().state().unwrap();
        assert_eq!(
            state,
            FlagState {
                enabled: true,
                rollout: percentage(25)
            }
        );
        let error = feature.environment("staging").unwrap_err();
        assert_eq!(
            error,
            "feature \"checkout\" has no environment \"staging\" (its environments: \"development\", \"production\")"
        );
    }

    #[test]
    fn an_environment_without_strategies_is_created_a_rollout_before_it_is_switched_on() {
        let off = environment(false, vec![]);
        let plan = read(&off, "checkout").unwrap().plan("checkout", 5).unwrap();
        assert!(plan.switch_on);
        let StrategyChange::Create(body) = plan.strategy else {
            panic!("expected a new strategy, got {plan:?}");
        };
        assert_eq!(
            body,
            json!({"name": "flexibleRollout", "constraints": [], "parameters": {"rollout": "5", "stickiness": "default", "groupId": "checkout"}})
        );
    }

    #[test]
    fn an_existing_rollout_is_patched_with_a_string_value() {
        let on = environment(true, vec![rollout("a1", "5")]);
        let plan = read(&on, "checkout").unwrap().plan("checkout", 25).unwrap();
        assert_eq!(
            plan,
            Plan {
                strategy: StrategyChange::Patch {
                    id: "a1".to_owned(),
                    operations: json!([{"op": "replace", "path": "/parameters/rollout", "value": "25"}]),
                },
                switch_on: false,
            }
        );
    }

    #[test]
    fn the_same_rollout_twice_plans_nothing() {
        let on = environment(true, vec![rollout("a1", "25")]);
        let plan = read(&on, "checkout").unwrap().plan("checkout", 25).unwrap();
        assert_eq!(
            plan,
            Plan {
                strategy: StrategyChange::None,
                switch_on: false
            }
        );
    }

    #[test]
    fn a_disabled_rollout_strategy_is_re_enabled_before_the_switch() {
        let mut disabled = rollout("a1", "25");
        disabled["disabled"] = json!(true);
        let off = environment(false, vec![disabled]);
        let plan = read(&off, "checkout")
            .unwrap()
            .plan("checkout", 25)
            .unwrap();
        assert_eq!(
            plan.strategy,
            StrategyChange::Patch {
                id: "a1".to_owned(),
                operations: json!([{"op": "replace", "path": "/disabled", "value": false}]),
            }
        );
        assert!(plan.switch_on);
    }

    #[test]
    fn other_active_strategies_are_refused_by_name() {
        let mut titled = strategy("u9", "userWithId", json!({"userIds": "42"}));
        titled["title"] = json!("staff");
        let on = environment(
            true,
            vec![
                rollout("a1", "5"),
                strategy("d7", "default", json!({})),
                titled,
            ],
        );
        let reading = read(&on, "checkout").unwrap();
        let error = reading.plan("checkout", 25).unwrap_err();
        assert!(
            error.contains("default (id d7), userWithId \"staff\" (id u9)"),
            "{error}"
        );
        assert_eq!(reading.state().unwrap_err(), error);
    }

    #[test]
    fn disabled_other_strategies_are_ignored() {
        let mut other = strategy("d7", "default", json!({}));
        other["disabled"] = json!(true);
        let on = environment(true, vec![other, rollout("a1", "10")]);
        let reading = read(&on, "checkout").unwrap();
        assert!(reading.others_active.is_empty());
        assert_eq!(reading.state().unwrap().rollout, percentage(10));
    }

    #[test]
    fn a_disabled_environment_reads_off_whatever_its_strategies() {
        let off = environment(
            false,
            vec![rollout("a1", "25"), strategy("d7", "default", json!({}))],
        );
        let state = read(&off, "checkout").unwrap().state().unwrap();
        assert_eq!(
            state,
            FlagState {
                enabled: false,
                rollout: percentage(25)
            }
        );
        let bare = environment(false, vec![]);
        assert_eq!(
            read(&bare, "checkout").unwrap().state().unwrap().rollout,
            Percentage::ZERO
        );
    }

    #[test]
    fn an_enabled_environment_without_active_strategies_reads_as_everyone() {
        let on = environment(true, vec![]);
        assert_eq!(
            read(&on, "checkout").unwrap().state().unwrap(),
            FlagState {
                enabled: true,
                rollout: Percentage::FULL
            }
        );
    }

    #[test]
    fn the_only_flexible_rollout_is_moved_even_with_another_group_id() {
        let on = environment(
            true,
            vec![strategy(
                "b2",
                ROLLOUT_STRATEGY,
                json!({"rollout": "30", "stickiness": "userId", "groupId": "legacy"}),
            )],
        );
        let reading = read(&on, "checkout").unwrap();
        assert_eq!(reading.rollout_strategy.unwrap().id, "b2");
        assert_eq!(reading.state().unwrap().rollout, percentage(30));
    }

    #[test]
    fn several_flexible_rollouts_without_one_for_the_flag_are_ambiguous() {
        let on = environment(
            true,
            vec![
                strategy(
                    "b1",
                    ROLLOUT_STRATEGY,
                    json!({"rollout": "30", "groupId": "x"}),
                ),
                strategy(
                    "b2",
                    ROLLOUT_STRATEGY,
                    json!({"rollout": "40", "groupId": "y"}),
                ),
            ],
        );
        let error = read(&on, "checkout").unwrap_err();
        assert!(error.contains("ambiguous"), "{error}");
        assert!(
            error.contains("flexibleRollout (id b1), flexibleRollout (id b2)"),
            "{error}"
        );
    }

    #[test]
    fn the_flags_own_group_wins_over_another_flexible_rollout() {
        let on = environment(
            true,
            vec![
                strategy(
                    "b1",
                    ROLLOUT_STRATEGY,
                    json!({"rollout": "100", "groupId": "x"}),
                ),
                rollout("a1", "5"),
            ],
        );
        let reading = read(&on, "checkout").unwrap();
        assert_eq!(reading.rollout_strategy.unwrap().id, "a1");
        assert_eq!(reading.others_active.len(), 1);
        assert!(reading.plan("checkout", 5).is_err());
    }

    #[test]
    fn a_rollout_that_is_not_a_whole_percentage_is_invalid() {
        for bad in [json!("12.5"), json!("abc"), json!("101"), json!(null)] {
            let on = environment(
                true,
                vec![strategy(
                    "a1",
                    ROLLOUT_STRATEGY,
                    json!({"rollout": bad, "groupId": "checkout"}),
                )],
            );
            let error = read(&on, "checkout").unwrap().state().unwrap_err();
            assert!(error.contains("expected a whole percentage"), "{error}");
        }
        let numeric = environment(
            true,
            vec![strategy(
                "a1",
                ROLLOUT_STRATEGY,
                json!({"rollout": 40, "groupId": "checkout"}),
            )],
        );
        assert_eq!(
            read(&numeric, "checkout").unwrap().state().unwrap().rollout,
            percentage(40)
        );
    }

    #[test]
    fn whole_percentages_pass_and_fractions_are_refused_not_rounded() {
        for value in [0.0, 1.0, 5.0, 25.0, 100.0] {
            assert_eq!(
                whole_percent(Percentage::parse(value).unwrap()),
                Ok(value as u8)
            );
        }
        let error = whole_percent(Percentage::parse(0.5).unwrap()).unwrap_err();
        assert_eq!(
            error,
            "Unleash rollouts are whole percentages from 0 to 100, and 0.5% is not one; canary does not round a rollout (use 0% or 1% in the plan)"
        );
        assert!(whole_percent(Percentage::parse(0.1).unwrap()).is_err());
    }
}
