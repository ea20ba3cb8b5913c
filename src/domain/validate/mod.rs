//! Profile validation: the TOML text is read into the raw structs of [`raw`] (every
//! key optional, each value with its span), then each part is validated into the
//! model of `profile` and `plan`: the judge settings and groups here, each metric in
//! [`metric`] (one validator per kind over shared helpers), the rollout plan in
//! [`plan`]. Every error names the file, the line and the field, and says what is
//! allowed.

mod metric;
mod plan;
mod raw;

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;

use toml::Spanned;

use self::raw::{RawGroup, RawJudge, RawMetric, RawProfile};
use super::location::line_and_column;
use super::profile::{
    ConfidenceLevel, DEFAULT_ERROR_HOST_SPREAD, DEFAULT_HOST_SPREAD, JudgeAlgorithm, JudgeMode,
    JudgeSettings, MetricSpec, Profile, ProfileError, Score, default_instance_labels,
};
use crate::stats::multiple_testing::Correction;

const DEFAULT_CONFIDENCE_LEVEL: f64 = 0.95;
const DEFAULT_PASS_SCORE: f64 = 95.0;
const DEFAULT_MARGINAL_SCORE: f64 = 75.0;

/// Builds errors that point into one profile text.
pub(in crate::domain) struct Validator<'a> {
    file: &'a str,
    text: &'a str,
}

impl Validator<'_> {
    pub(in crate::domain) fn error(
        &self,
        span: Range<usize>,
        field: &str,
        message: impl Into<String>,
    ) -> ProfileError {
        let (line, column) = line_and_column(self.text, span.start);
        ProfileError {
            file: self.file.to_owned(),
            line,
            column,
            field: field.to_owned(),
            message: message.into(),
        }
    }
}

impl Profile {
    /// Parses and validates a profile. `file` is only used in error messages.
    pub fn parse(text: &str, file: &str) -> Result<Profile, ProfileError> {
        let v = Validator { file, text };
        let raw: RawProfile = toml::from_str(text).map_err(|error| {
            let span = error.span().unwrap_or(0..0);
            let start = span.start;
            v.error(
                span,
                &field_of_toml_error(error.message())
                    .or_else(|| field_at(text, start))
                    .unwrap_or_else(|| "(syntax)".to_owned()),
                error.message().trim(),
            )
        })?;

        let name = match raw.name {
            Some(name) if !name.get_ref().trim().is_empty() => name.into_inner(),
            Some(name) => return Err(v.error(name.span(), "name", "must not be empty")),
            None => {
                return Err(v.error(
                    0..0,
                    "name",
                    "is required: add `name = \"...\"` at the top of the profile",
                ));
            }
        };

        let judge = validate_judge(&v, raw.judge)?;

        let group_weights = validate_groups(&v, &raw.groups, judge.algorithm)?;
        let metrics = validate_metrics(&v, raw.metrics, &judge, &group_weights)?;

        let plan = plan::validate_plan(
            &v,
            raw.stages,
            raw.triggers,
            raw.rollout,
            judge.confidence_level.alpha(),
            &metrics,
        )?;

        Ok(Profile {
            name,
            description: raw.description,
            judge,
            group_weights,
            metrics,
            plan,
        })
    }
}

/// `[groups.NAME]` tables: each with a weight above 0.
fn validate_groups(
    v: &Validator<'_>,
    groups: &BTreeMap<Spanned<String>, Spanned<RawGroup>>,
    algorithm: JudgeAlgorithm,
) -> Result<BTreeMap<String, f64>, ProfileError> {
    // Kayenta's weights are percentages, and a group can be left with none (its
    // declared weights already sum to 100): it then counts for nothing.
    let (lowest, allowed) = match algorithm {
        JudgeAlgorithm::Canary => (f64::MIN_POSITIVE, "above 0"),
        JudgeAlgorithm::Kayenta => (0.0, "from 0 (Kayenta's weights are percentages)"),
    };
    let mut group_weights = BTreeMap::new();
    for (group_name, group) in groups {
        let field = format!("groups.{}.weight", group_name.get_ref());
        let weight = match &group.get_ref().weight {
            Some(weight) => {
                let value = *weight.get_ref();
                if !(value.is_finite() && value >= lowest) {
                    return Err(v.error(
                        weight.span(),
                        &field,
                        format!("must be a number {allowed}, got {value}"),
                    ));
                }
                value
            }
            None => {
                return Err(v.error(
                    group.span(),
                    &field,
                    "is required in a [groups.NAME] table (a number above 0)",
                ));
            }
        };
        group_weights.insert(group_name.get_ref().clone(), weight);
    }

    Ok(group_weights)
}

/// The `[[metrics]]` tables: at least one, names unique, groups declared.
fn validate_metrics(
    v: &Validator<'_>,
    raw_metrics: Vec<Spanned<RawMetric>>,
    judge: &JudgeSettings,
    group_weights: &BTreeMap<String, f64>,
) -> Result<Vec<MetricSpec>, ProfileError> {
    if raw_metrics.is_empty() {
        return Err(v.error(
            0..0,
            "metrics",
            "a profile needs at least one [[metrics]] table",
        ));
    }
    let mut metrics = Vec::with_capacity(raw_metrics.len());
    let mut seen_names = BTreeSet::new();
    for (index, raw_metric) in raw_metrics.into_iter().enumerate() {
        let span = raw_metric.span();
        let metric =
            metric::validate_metric(v, index, span.clone(), raw_metric.into_inner(), judge)?;
        if !seen_names.insert(metric.name.clone()) {
            return Err(v.error(
                span,
                &format!("metrics.{}.name", metric.name),
                "is used by an earlier metric; metric names must be unique",
            ));
        }
        if !group_weights.is_empty() && !group_weights.contains_key(&metric.group) {
            let declared: Vec<&str> = group_weights.keys().map(String::as_str).collect();
            return Err(v.error(
                span,
                &format!("metrics.{}.group", metric.name),
                format!(
                    "group {:?} is not declared; declared groups: {}",
                    metric.group,
                    declared.join(", ")
                ),
            ));
        }
        metrics.push(metric);
    }

    Ok(metrics)
}

/// serde's messages name the offending key in backticks ("unknown field `foo`",
/// "missing field `bar`"); use it as the field when there is one.
fn field_of_toml_error(message: &str) -> Option<String> {
    message
        .split('`')
        .nth(1)
        .filter(|_| message.contains("field"))
        .map(str::to_owned)
}

/// The dotted field a `key = value` line at `offset` sets (`judge.mode`,
/// `metrics.NAME.kind`), for errors TOML reports without naming it (an unknown enum
/// variant, a wrong type). `None` when the offset is not in such a line.
fn field_at(text: &str, offset: usize) -> Option<String> {
    let line_start = text[..offset.min(text.len())]
        .rfind('\n')
        .map_or(0, |i| i + 1);
    let line = text[line_start..].lines().next()?;
    let key = line.split_once('=')?.0.trim();
    if key.is_empty() || key.starts_with('[') || key.starts_with('#') {
        return None;
    }
    // The nearest table header above, and for an array of tables the entry's name.
    let above = &text[..line_start];
    let header_line = above
        .lines()
        .rev()
        .find(|l| l.trim_start().starts_with('['))
        .map(str::trim);
    let Some(header) = header_line else {
        return Some(key.to_owned());
    };
    let table = header.trim_matches(|c| c == '[' || c == ']').trim();
    let block_start = above.rfind(header).unwrap_or(0);
    let name = text[block_start..]
        .lines()
        .skip(1)
        .take_while(|l| !l.trim_start().starts_with('['))
        .find_map(|l| {
            let (k, v) = l.split_once('=')?;
            (k.trim() == "name").then(|| v.trim().trim_matches('"').to_owned())
        });
    Some(match (header.starts_with("[["), name) {
        (true, Some(name)) => format!("{table}.{name}.{key}"),
        _ => format!("{table}.{key}"),
    })
}

/// Whether `name` is a valid Prometheus label name.
fn is_label_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|first| first.is_ascii_alphabetic() || first == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn validate_judge(
    v: &Validator<'_>,
    raw: Option<Spanned<RawJudge>>,
) -> Result<JudgeSettings, ProfileError> {
    let Some(raw) = raw.map(Spanned::into_inner) else {
        return Ok(JudgeSettings {
            confidence_level: ConfidenceLevel(DEFAULT_CONFIDENCE_LEVEL),
            pass_score: Score(DEFAULT_PASS_SCORE),
            marginal_score: Score(DEFAULT_MARGINAL_SCORE),
            multiple_comparisons: Correction::Holm,
            mode: JudgeMode::default(),
            algorithm: JudgeAlgorithm::default(),
            host_spread: DEFAULT_HOST_SPREAD,
            error_host_spread: DEFAULT_ERROR_HOST_SPREAD,
            instance_labels: default_instance_labels(),
        });
    };
    let confidence_level = match raw.confidence_level {
        Some(level) => ConfidenceLevel::parse(*level.get_ref())
            .map_err(|message| v.error(level.span(), "judge.confidence_level", message))?,
        None => ConfidenceLevel(DEFAULT_CONFIDENCE_LEVEL),
    };
    let pass_score = match &raw.pass_score {
        Some(score) => Score::parse(*score.get_ref())
            .map_err(|message| v.error(score.span(), "judge.pass_score", message))?,
        None => Score(DEFAULT_PASS_SCORE),
    };
    let marginal_score = match &raw.marginal_score {
        Some(score) => Score::parse(*score.get_ref())
            .map_err(|message| v.error(score.span(), "judge.marginal_score", message))?,
        None => Score(DEFAULT_MARGINAL_SCORE),
    };
    if marginal_score > pass_score {
        let span = raw
            .marginal_score
            .as_ref()
            .or(raw.pass_score.as_ref())
            .map_or(0..0, Spanned::span);
        return Err(v.error(
            span,
            "judge.marginal_score",
            format!(
                "must not exceed judge.pass_score ({} > {}): scores below marginal_score roll back, \
                 scores between the two hold",
                marginal_score.value(),
                pass_score.value()
            ),
        ));
    }
    let spread = |raw: &Option<Spanned<f64>>, field: &str, default: f64| match raw {
        Some(spread) => {
            let value = *spread.get_ref();
            if !(0.0..=1.0).contains(&value) {
                return Err(v.error(
                    spread.span(),
                    field,
                    format!("must be a relative spread between 0 and 1 (0.03 is 3 %), got {value}"),
                ));
            }
            Ok(value)
        }
        None => Ok(default),
    };
    let host_spread = spread(&raw.host_spread, "judge.host_spread", DEFAULT_HOST_SPREAD)?;
    let error_host_spread = spread(
        &raw.error_host_spread,
        "judge.error_host_spread",
        DEFAULT_ERROR_HOST_SPREAD,
    )?;
    let instance_labels = match raw.instance_labels {
        Some(labels) => {
            let span = labels.span();
            let labels = labels.into_inner();
            if let Some(bad) = labels.iter().find(|label| !is_label_name(label)) {
                return Err(v.error(
                    span,
                    "judge.instance_labels",
                    format!("{bad:?} is not a Prometheus label name ([a-zA-Z_][a-zA-Z0-9_]*)"),
                ));
            }
            labels
        }
        None => default_instance_labels(),
    };
    let algorithm = raw
        .algorithm
        .as_ref()
        .map_or(JudgeAlgorithm::default(), |a| *a.get_ref());
    // Kayenta judges every look on its own: its judge has no sequential evidence.
    let mode = match (&raw.mode, algorithm) {
        (Some(mode), JudgeAlgorithm::Kayenta) if *mode.get_ref() == JudgeMode::Sequential => {
            return Err(v.error(
                mode.span(),
                "judge.mode",
                "must be \"fixed\" with algorithm = \"kayenta\" (Kayenta judges each look on                  its own; leave mode out to get \"fixed\")",
            ));
        }
        (_, JudgeAlgorithm::Kayenta) => JudgeMode::Fixed,
        (mode, JudgeAlgorithm::Canary) => mode
            .as_ref()
            .map_or(JudgeMode::default(), |mode| *mode.get_ref()),
    };
    Ok(JudgeSettings {
        confidence_level,
        pass_score,
        marginal_score,
        multiple_comparisons: raw
            .multiple_comparisons
            .map_or(Correction::Holm, Spanned::into_inner),
        mode,
        algorithm,
        host_spread,
        error_host_spread,
        instance_labels,
    })
}
