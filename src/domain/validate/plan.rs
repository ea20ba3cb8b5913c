//! The plan tables of a profile: `[[stages]]`, `[[triggers]]` and `[rollout]`.

use std::ops::Range;

use toml::Spanned;

use super::Validator;
use super::raw::{RawRollout, RawStage, RawTrigger};
use crate::domain::plan::{
    DEFAULT_ROLLBACK_OVER, DEFAULT_ROLLBACK_STEPS, DEFAULT_STEP, Fallback, HoldOutcome,
    RollbackMode, RollbackSettings, RolloutPlan, RolloutSettings, Stage, StageBaseline, Trigger,
    TriggerCondition,
};
use crate::domain::profile::{MetricSpec, ProfileError};
use crate::domain::{HumanDuration, Percentage};

fn duration(
    v: &Validator<'_>,
    field: &str,
    value: &Option<Spanned<String>>,
) -> Result<Option<HumanDuration>, ProfileError> {
    value
        .as_ref()
        .map(|text| {
            HumanDuration::parse(text.get_ref())
                .map_err(|message| v.error(text.span(), field, message))
        })
        .transpose()
}

fn required_duration(
    v: &Validator<'_>,
    field: &str,
    value: &Option<Spanned<String>>,
    whole: Range<usize>,
) -> Result<HumanDuration, ProfileError> {
    duration(v, field, value)?
        .ok_or_else(|| v.error(whole, field, "is required (a duration such as \"5m\")"))
}

/// Validates the plan tables. Returns `None` when the profile has no stages (and then
/// refuses triggers and `[rollout]`, which would silently do nothing).
pub(super) fn validate_plan(
    v: &Validator<'_>,
    stages: Vec<Spanned<RawStage>>,
    triggers: Vec<Spanned<RawTrigger>>,
    rollout: Option<Spanned<RawRollout>>,
    default_error_budget: f64,
    metrics: &[MetricSpec],
) -> Result<Option<RolloutPlan>, ProfileError> {
    if stages.is_empty() {
        if let Some(trigger) = triggers.first() {
            return Err(v.error(
                trigger.span(),
                "triggers",
                "triggers need a rollout plan: add [[stages]] tables",
            ));
        }
        if let Some(rollout) = &rollout {
            return Err(v.error(
                rollout.span(),
                "rollout",
                "[rollout] needs a rollout plan: add [[stages]] tables",
            ));
        }
        return Ok(None);
    }

    let mut validated_stages: Vec<Stage> = Vec::with_capacity(stages.len());
    for (index, raw) in stages.into_iter().enumerate() {
        let stage = validate_stage(v, index, raw, &validated_stages)?;
        validated_stages.push(stage);
    }
    let validated_triggers = triggers
        .into_iter()
        .enumerate()
        .map(|(index, raw)| validate_trigger(v, index, raw, metrics, &validated_stages))
        .collect::<Result<Vec<_>, _>>()?;
    let settings = validate_settings(v, rollout, default_error_budget, &validated_stages)?;
    Ok(Some(RolloutPlan {
        stages: validated_stages,
        triggers: validated_triggers,
        settings,
    }))
}

/// `[[stages]]` entry `index` (0-based), after the `earlier` stages.
fn validate_stage(
    v: &Validator<'_>,
    index: usize,
    raw: Spanned<RawStage>,
    earlier: &[Stage],
) -> Result<Stage, ProfileError> {
    let span = raw.span();
    let raw = raw.into_inner();
    let field = |key: &str| format!("stages[{}].{key}", index + 1);
    let traffic = match &raw.traffic {
        Some(traffic) => Percentage::parse(*traffic.get_ref())
            .map_err(|message| v.error(traffic.span(), &field("traffic"), message))?,
        None => {
            return Err(v.error(
                span,
                &field("traffic"),
                "is required: the canary's share of traffic in percent (0 to 100)",
            ));
        }
    };
    if let Some(previous) = earlier.last()
        && traffic <= previous.traffic
    {
        return Err(v.error(
            raw.traffic.as_ref().map_or(span.clone(), Spanned::span),
            &field("traffic"),
            format!(
                "stages must increase traffic: {traffic} does not exceed the previous stage's {}",
                previous.traffic
            ),
        ));
    }
    let stage_duration = required_duration(v, &field("duration"), &raw.duration, span.clone())?;
    let max_duration =
        duration(v, &field("max_duration"), &raw.max_duration)?.unwrap_or(stage_duration);
    if max_duration < stage_duration {
        return Err(v.error(
            raw.max_duration
                .as_ref()
                .map_or(span.clone(), Spanned::span),
            &field("max_duration"),
            format!(
                "the max_duration {max_duration} is shorter than the stage's duration \
                 {stage_duration}; it is how long the stage may extend to gather samples"
            ),
        ));
    }
    let interval = required_duration(v, &field("interval"), &raw.interval, span.clone())?;
    if interval > stage_duration {
        return Err(v.error(
            raw.interval.as_ref().map_or(span.clone(), Spanned::span),
            &field("interval"),
            format!(
                "the interval {interval} is longer than the stage's duration {stage_duration}; \
                 a stage needs at least one analysis"
            ),
        ));
    }
    let lookback = duration(v, &field("lookback"), &raw.lookback)?.unwrap_or(interval);
    if lookback < interval {
        return Err(v.error(
            raw.lookback.as_ref().map_or(span.clone(), Spanned::span),
            &field("lookback"),
            format!(
                "the lookback {lookback} is shorter than the interval {interval}, so some data would \
                 never be analysed; use a lookback at least as long as the interval"
            ),
        ));
    }
    let name = raw
        .name
        .as_ref()
        .map(|n| n.get_ref().clone())
        .unwrap_or_else(|| traffic.to_string());
    if earlier.iter().any(|stage| stage.name == name) {
        return Err(v.error(
            raw.name.as_ref().map_or(span.clone(), Spanned::span),
            &field("name"),
            format!("stage name {name:?} is used twice; triggers refer to stages by name"),
        ));
    }
    let baseline = raw
        .baseline
        .as_ref()
        .map_or(StageBaseline::default_for(traffic), |b| *b.get_ref());
    Ok(Stage {
        name,
        traffic,
        duration: stage_duration,
        max_duration,
        interval,
        lookback,
        baseline,
    })
}

/// `[[triggers]]` entry `index` (0-based), on the profile's `metrics` and the plan's
/// `stages`.
fn validate_trigger(
    v: &Validator<'_>,
    index: usize,
    raw: Spanned<RawTrigger>,
    metrics: &[MetricSpec],
    validated_stages: &[Stage],
) -> Result<Trigger, ProfileError> {
    let span = raw.span();
    let raw = raw.into_inner();
    let field = |key: &str| format!("triggers[{}].{key}", index + 1);
    let metric = match &raw.metric {
        Some(metric) if metrics.iter().any(|m| &m.name == metric.get_ref()) => {
            metric.get_ref().clone()
        }
        Some(metric) => {
            let known: Vec<&str> = metrics.iter().map(|m| m.name.as_str()).collect();
            return Err(v.error(
                metric.span(),
                &field("metric"),
                format!(
                    "{:?} is not a metric of this profile; its metrics are: {}",
                    metric.get_ref(),
                    known.join(", ")
                ),
            ));
        }
        None => {
            return Err(v.error(
                span,
                &field("metric"),
                "is required: the profile metric to watch",
            ));
        }
    };
    let condition = trigger_condition(v, &raw, &span, &field("above"), &field("condition"))?;
    let sustained_for = duration(v, &field("for"), &raw.sustained_for)?;
    let window = duration(v, &field("window"), &raw.window)?;
    if let (Some(_), Some(window_value)) = (&sustained_for, &raw.window) {
        return Err(v.error(
            window_value.span(),
            &field("window"),
            "give either `for` (every point over the duration) or `window` (the aggregate over the duration), not both",
        ));
    }
    let consecutive = match &raw.consecutive {
        Some(count) if *count.get_ref() < 1 => {
            return Err(v.error(
                count.span(),
                &field("consecutive"),
                format!("must be a whole number at least 1, got {}", count.get_ref()),
            ));
        }
        Some(count) => *count.get_ref() as u32,
        None => 1,
    };
    let action = match &raw.action {
        Some(action) => *action.get_ref(),
        None => {
            return Err(v.error(
                span,
                &field("action"),
                "is required: \"rollback\" or \"hold\"",
            ));
        }
    };
    let name = raw.name.map(Spanned::into_inner).unwrap_or_else(|| {
        let condition_text = match condition {
            TriggerCondition::Above(x) => format!("> {x}"),
            TriggerCondition::Below(x) => format!("< {x}"),
            TriggerCondition::AboveBaselineTimes(x) => format!("> baseline × {x}"),
            TriggerCondition::BelowBaselineTimes(x) => format!("< baseline × {x}"),
        };
        format!("{metric} {condition_text}")
    });
    let stages = trigger_stages(v, raw.stages, validated_stages, &field("stages"))?;
    Ok(Trigger {
        name,
        metric,
        condition,
        sustained_for,
        window,
        consecutive,
        action,
        stages,
    })
}

/// The trigger's one condition: `above`, `below`, `above_baseline_times` or
/// `below_baseline_times`, a finite number (a factor above 0). Errors name
/// `missing_field` when there is none and `condition_field` otherwise.
fn trigger_condition(
    v: &Validator<'_>,
    raw: &RawTrigger,
    span: &Range<usize>,
    missing_field: &str,
    condition_field: &str,
) -> Result<TriggerCondition, ProfileError> {
    let conditions: Vec<(TriggerCondition, Range<usize>)> = [
        raw.above
            .as_ref()
            .map(|x| (TriggerCondition::Above(*x.get_ref()), x.span())),
        raw.below
            .as_ref()
            .map(|x| (TriggerCondition::Below(*x.get_ref()), x.span())),
        raw.above_baseline_times
            .as_ref()
            .map(|x| (TriggerCondition::AboveBaselineTimes(*x.get_ref()), x.span())),
        raw.below_baseline_times
            .as_ref()
            .map(|x| (TriggerCondition::BelowBaselineTimes(*x.get_ref()), x.span())),
    ]
    .into_iter()
    .flatten()
    .collect();
    match conditions.as_slice() {
        [(condition, condition_span)] => {
            let value = match condition {
                TriggerCondition::Above(x)
                | TriggerCondition::Below(x)
                | TriggerCondition::AboveBaselineTimes(x)
                | TriggerCondition::BelowBaselineTimes(x) => *x,
            };
            let relative = matches!(
                condition,
                TriggerCondition::AboveBaselineTimes(_) | TriggerCondition::BelowBaselineTimes(_)
            );
            if !value.is_finite() || (relative && value <= 0.0) {
                return Err(v.error(
                    condition_span.clone(),
                    condition_field,
                    format!(
                        "must be a finite number{}, got {value}",
                        if relative { " above 0" } else { "" }
                    ),
                ));
            }
            Ok(*condition)
        }
        [] => Err(v.error(
                span.clone(),
                missing_field,
                "a trigger needs one condition: above, below, above_baseline_times or below_baseline_times",
            )),
        [_, (_, second_span), ..] => Err(v.error(
                second_span.clone(),
                condition_field,
                "a trigger has exactly one condition (above, below, above_baseline_times, \
                 below_baseline_times); write two triggers for two conditions",
            )),
    }
}

/// The stages a trigger is limited to (none: all), each a stage of the plan.
fn trigger_stages(
    v: &Validator<'_>,
    stages: Option<Spanned<Vec<String>>>,
    validated_stages: &[Stage],
    field: &str,
) -> Result<Vec<String>, ProfileError> {
    Ok(match stages {
        Some(list) => {
            if let Some(unknown) = list
                .get_ref()
                .iter()
                .find(|name| !validated_stages.iter().any(|stage| &stage.name == *name))
            {
                let known: Vec<&str> = validated_stages.iter().map(|s| s.name.as_str()).collect();
                return Err(v.error(
                    list.span(),
                    field,
                    format!(
                        "{unknown:?} is not a stage of this plan; its stages are: {}",
                        known.join(", ")
                    ),
                ));
            }
            list.into_inner()
        }
        None => Vec::new(),
    })
}

/// The `[rollout]` table's settings; `default_error_budget` is the judge's alpha.
fn validate_settings(
    v: &Validator<'_>,
    rollout: Option<Spanned<RawRollout>>,
    default_error_budget: f64,
    validated_stages: &[Stage],
) -> Result<RolloutSettings, ProfileError> {
    let raw_rollout = rollout.map(Spanned::into_inner);
    let error_budget = match raw_rollout.as_ref().and_then(|r| r.error_budget.as_ref()) {
        Some(budget)
            if !(budget.get_ref().is_finite()
                && *budget.get_ref() > 0.0
                && *budget.get_ref() < 0.5) =>
        {
            return Err(v.error(
                budget.span(),
                "rollout.error_budget",
                format!(
                    "must be a probability above 0 and below 0.5 (0.01 = at most 1 % of healthy rollouts rolled back), got {}",
                    budget.get_ref()
                ),
            ));
        }
        Some(budget) => *budget.get_ref(),
        None => default_error_budget,
    };
    let consecutive_failures = match raw_rollout
        .as_ref()
        .and_then(|r| r.consecutive_failures.as_ref())
    {
        Some(count) if *count.get_ref() < 1 => {
            return Err(v.error(
                count.span(),
                "rollout.consecutive_failures",
                format!("must be a whole number at least 1, got {}", count.get_ref()),
            ));
        }
        Some(count) => *count.get_ref() as u32,
        None => 1,
    };
    let hold_timeout = match &raw_rollout {
        Some(raw) => duration(v, "rollout.hold_timeout", &raw.hold_timeout)?,
        None => None,
    };
    let on_hold_timeout = raw_rollout
        .as_ref()
        .and_then(|r| r.on_hold_timeout.as_ref())
        .map_or(HoldOutcome::Wait, |o| *o.get_ref());

    let step = match &raw_rollout {
        Some(raw) => duration(v, "rollout.step", &raw.step)?,
        None => None,
    }
    .unwrap_or(HumanDuration::parse(DEFAULT_STEP).expect("the default step parses"));
    if let Some(stage) = validated_stages.iter().find(|stage| stage.interval < step) {
        return Err(v.error(
            raw_rollout
                .as_ref()
                .and_then(|r| r.step.as_ref())
                .map_or(0..0, Spanned::span),
            "rollout.step",
            format!(
                "the query step {step} is longer than stage {:?}'s interval {}; each analysis needs at least one step",
                stage.name, stage.interval
            ),
        ));
    }

    let rollback = validate_rollback(v, raw_rollout.as_ref())?;

    Ok(RolloutSettings {
        error_budget,
        consecutive_failures,
        hold_timeout,
        on_hold_timeout,
        step,
        rollback,
        early_advance: raw_rollout
            .as_ref()
            .and_then(|r| r.early_advance.as_ref())
            .is_some_and(|e| *e.get_ref()),
    })
}

/// `rollback`, `rollback_over`, `rollback_steps` and `fallback` of `[rollout]`.
fn validate_rollback(
    v: &Validator<'_>,
    raw: Option<&RawRollout>,
) -> Result<RollbackSettings, ProfileError> {
    let mode = raw
        .and_then(|r| r.rollback.as_ref())
        .map_or(RollbackMode::Immediate, |m| *m.get_ref());
    let fallback = raw
        .and_then(|r| r.fallback.as_ref())
        .map_or(Fallback::Off, |f| *f.get_ref());
    let over_field = raw.and_then(|r| r.rollback_over.as_ref());
    let steps_field = raw.and_then(|r| r.rollback_steps.as_ref());
    if mode == RollbackMode::Immediate {
        let stray = over_field
            .map(|f| (f.span(), "rollout.rollback_over"))
            .or(steps_field.map(|f| (f.span(), "rollout.rollback_steps")));
        if let Some((span, field)) = stray {
            return Err(v.error(
                span,
                field,
                "only applies to a progressive rollback: add `rollback = \"progressive\"`"
                    .to_owned(),
            ));
        }
    }
    let over = duration(
        v,
        "rollout.rollback_over",
        &raw.and_then(|r| r.rollback_over.clone()),
    )?
    .unwrap_or(HumanDuration::parse(DEFAULT_ROLLBACK_OVER).expect("the default parses"));
    let steps = match steps_field {
        Some(steps) if !(2..=100).contains(steps.get_ref()) => {
            return Err(v.error(
                steps.span(),
                "rollout.rollback_steps",
                format!(
                    "must be a whole number from 2 to 100, got {}",
                    steps.get_ref()
                ),
            ));
        }
        Some(steps) => *steps.get_ref() as u32,
        None => DEFAULT_ROLLBACK_STEPS,
    };
    Ok(RollbackSettings {
        mode,
        over,
        steps,
        fallback,
    })
}
