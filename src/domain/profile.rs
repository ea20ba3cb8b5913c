//! Analysis profiles: which metrics to compare, how, and how to turn the results
//! into a verdict.
//!
//! A profile is a TOML file (`analysis-profiles/*.toml`). Its keys are a public
//! contract: they may be extended, never renamed. [`Profile::parse`] reads the
//! text into loosely typed "raw" structs that remember where each value stood,
//! then validates every key into the domain types below. Every error names the
//! file, the line and the field, and says what is allowed, so a pipeline author
//! can fix a profile without reading this code.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::ops::Range;

use serde::{Deserialize, Serialize};
use toml::Spanned;

use super::HumanDuration;
use super::location::line_and_column;
use super::plan::{RawRollout, RawStage, RawTrigger, RolloutPlan, validate_plan};
use crate::stats::multiple_testing::Correction;

/// A validated analysis profile.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Profile {
    /// The profile's name, as pipelines refer to it.
    pub name: String,
    /// Free text for humans.
    pub description: Option<String>,
    /// How metric results become a verdict.
    pub judge: JudgeSettings,
    /// Weight of each metric group in the score. Groups not listed weigh 1.
    pub group_weights: BTreeMap<String, f64>,
    /// The metrics to compare, in profile order.
    pub metrics: Vec<MetricSpec>,
    /// The staged rollout, when the profile has `[[stages]]` (required by `canary run`).
    pub plan: Option<RolloutPlan>,
}

/// The `[judge]` table.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct JudgeSettings {
    /// Two-sided confidence level of every per-metric interval; `1 - confidence_level`
    /// is the family-wise false-alarm rate the multiple-comparison correction controls.
    pub confidence_level: ConfidenceLevel,
    /// Promote at or above this score (and with nothing holding).
    pub pass_score: Score,
    /// Roll back below this score; hold between it and `pass_score`.
    pub marginal_score: Score,
    /// How p-values of the comparative metrics are corrected for testing many metrics at once.
    pub multiple_comparisons: Correction,
    /// How a staged rollout judges its repeated looks.
    pub mode: JudgeMode,
    /// The prior for how much instances (hosts, pods) of one version differ in level, as
    /// a relative spread (`0.03`: one instance's typical level is 3 % off the fleet's).
    /// When a metric's series carry instance labels, the sequential location checks do
    /// not count a difference between the sides' instances as a regression until it is
    /// beyond what this spread (pooled with the spread the baseline's own instances
    /// show) can explain for the number of instances on each side. `0` turns the
    /// allowance off.
    pub host_spread: f64,
    /// How much one version's error rate differs from instance to instance, as a
    /// relative spread of the rate (`0.1`: one instance's error rate is typically 10 %
    /// off the fleet's). The sequential error-rate checks of proportion metrics whose
    /// series carry instance labels allow for it as `host_spread` does for latency.
    /// `0` turns the allowance off.
    pub error_host_spread: f64,
    /// The labels whose values name an instance (`instance`, `pod`): series that differ
    /// only in them are instances of one thing, pooled for the comparison and kept
    /// apart for the host-spread allowance.
    pub instance_labels: Vec<String>,
}

/// The default `[judge] host_spread`: instances of one version commonly differ by a few
/// percent in latency (hardware generations, neighbours, cache warmth).
pub const DEFAULT_HOST_SPREAD: f64 = 0.03;

/// The default `[judge] error_host_spread`: instances of one version may differ in
/// error rate (a pod with a cold cache, a bad neighbour, a flaky downstream connection
/// serves a few more errors all stage). A modest prior: the baseline's own instances
/// widen it where they show more (the simulation's pods differ by 10 %), and a wide one
/// slows detection where they do not (on the live bed errors ×2 at 25 % reached the next
/// stage with 10 %).
pub const DEFAULT_ERROR_HOST_SPREAD: f64 = 0.05;

/// The default `[judge] instance_labels`.
pub fn default_instance_labels() -> Vec<String> {
    vec!["instance".to_owned(), "pod".to_owned()]
}

/// How a staged rollout's repeated looks are judged (`[judge] mode`).
///
/// One-shot `canary analyze` always judges once at `confidence_level`; the mode only
/// matters to the rollout runner.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum JudgeMode {
    /// Anytime-valid e-processes accumulated over every look of the rollout: early
    /// rollback as soon as the evidence crosses its boundary, early advance once harm
    /// is excluded, and no budget spent by extra looks (see ARCHITECTURE.md).
    #[default]
    Sequential,
    /// A fixed-horizon test of each look's lookback window at that look's share of the
    /// error budget (a union bound over looks).
    Fixed,
}

impl fmt::Display for JudgeMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            JudgeMode::Sequential => "sequential",
            JudgeMode::Fixed => "fixed",
        })
    }
}

/// A confidence level in `[0.5, 1)`.
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd, Serialize)]
#[serde(transparent)]
pub struct ConfidenceLevel(f64);

impl ConfidenceLevel {
    /// Validates a confidence level; levels below 0.5 are almost certainly a typo for a
    /// false-alarm rate and are refused.
    pub fn parse(value: f64) -> Result<Self, String> {
        if value.is_finite() && (0.5..1.0).contains(&value) {
            Ok(Self(value))
        } else {
            Err(format!(
                "must be a number at least 0.5 and below 1 (for example 0.95), got {value}"
            ))
        }
    }

    /// The level, e.g. `0.95`.
    pub fn value(self) -> f64 {
        self.0
    }

    /// The false-alarm rate `1 - level`.
    pub fn alpha(self) -> f64 {
        1.0 - self.0
    }
}

/// A score between 0 and 100.
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd, Serialize)]
#[serde(transparent)]
pub struct Score(f64);

impl Score {
    /// Validates a score.
    pub fn parse(value: f64) -> Result<Self, String> {
        if value.is_finite() && (0.0..=100.0).contains(&value) {
            Ok(Self(value))
        } else {
            Err(format!("must be a number from 0 to 100, got {value}"))
        }
    }

    /// The score.
    pub fn value(self) -> f64 {
        self.0
    }
}

/// One `[[metrics]]` entry.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MetricSpec {
    /// Unique name; data files refer to it.
    pub name: String,
    /// The comparison and its kind-specific settings.
    pub kind: MetricKind,
    /// Minimum observations per side (for proportions: events, i.e. requests); fewer makes
    /// the metric inconclusive.
    pub min_samples: u64,
    /// What a failure of this metric does to the verdict.
    pub severity: Severity,
    /// The score group.
    pub group: String,
    /// The query metric sources run for samples (continuous and threshold metrics); a
    /// template where `{{scope}}`, `{{side}}`, `{{step}}` and `{{lookback}}` are filled in.
    pub query: Option<String>,
    /// For proportion metrics (and thresholds on a rate): the query counting bad events
    /// per step, e.g. `sum(increase(http_requests_total{ {{scope}}, code=~"5.." }[{{step}}]))`.
    pub errors_query: Option<String>,
    /// The query counting all events per step.
    pub total_query: Option<String>,
    /// Ask the source for raw samples (`QUERY[lookback]`) instead of evaluating the
    /// query at each step; the query must then be a plain series selector.
    pub raw_samples: bool,
    /// `errors_query` and `total_query` return cumulative counters (e.g.
    /// `http_requests_total{ {{scope}}, code=~"5.." }`), not per-step counts: each
    /// step counts each series' increase since the previous step (a counter reset
    /// counts from zero), then the series are summed. Every event is counted once,
    /// unlike `increase(x[{{step}}])` evaluated every step, which loses the events
    /// between one window's last scrape and the next window's first. Only what a
    /// query-running source returns is differenced: recordings (`canary analyze` files,
    /// `--source replay=DIR`, simulations) hold per-step counts already.
    pub cumulative: bool,
    /// What to do with NaN samples.
    pub nan_policy: NanPolicy,
    /// With `nan_policy = "drop"`: the largest share of NaN samples on a side that is
    /// still trusted; more makes the metric inconclusive.
    pub max_nan_fraction: f64,
    /// Outlier removal applied to each side before comparing.
    pub outliers: OutlierPolicy,
    /// Continuous metrics: also test the spread (sequential mode), so a canary whose
    /// tails grow at the same median fails (`tails = true`).
    pub tails: bool,
    /// Proportion metrics: look for error bursts in sub-windows of this length
    /// (sequential mode), each tested on its own and corrected for their number.
    pub bursts: Option<HumanDuration>,
}

/// The kind of comparison, with the settings that only make sense for it.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum MetricKind {
    /// Mann-Whitney U test and Hodges-Lehmann shift between the two samples.
    Continuous {
        /// The bad direction.
        direction: Direction,
        /// A significant increase of at most this fraction of the baseline median is tolerated.
        allowed_increase: f64,
        /// A significant decrease of at most this fraction of the baseline median is tolerated.
        allowed_decrease: f64,
    },
    /// Errors out of events on each side; two-proportion z-test or Fisher's exact test.
    Proportion {
        /// The bad direction.
        direction: Direction,
        /// A significant increase is tolerated while the canary rate is at most this many
        /// times the baseline rate.
        max_ratio: Option<f64>,
        /// A significant decrease is tolerated while the canary rate is at least this many
        /// times the baseline rate.
        min_ratio: Option<f64>,
    },
    /// An absolute limit on one statistic of the canary alone.
    Threshold {
        /// Which statistic of the canary's samples is compared.
        statistic: ThresholdStatistic,
        /// The canary fails below this.
        min: Option<f64>,
        /// The canary fails above this.
        max: Option<f64>,
    },
}

impl MetricKind {
    /// The profile spelling of the kind.
    pub fn name(&self) -> &'static str {
        match self {
            MetricKind::Continuous { .. } => "continuous",
            MetricKind::Proportion { .. } => "proportion",
            MetricKind::Threshold { .. } => "threshold",
        }
    }
}

/// The direction in which a change is a regression.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// Larger canary values are bad (latency, errors).
    Increase,
    /// Smaller canary values are bad (throughput, conversions).
    Decrease,
    /// A change either way is bad.
    Either,
}

/// What a failing metric does to the verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// A failure forces a rollback.
    Critical,
    /// A failure holds the rollout for manual review; it does not lower the score.
    Warning,
    /// A failure lowers the score.
    Normal,
}

/// What NaN samples mean.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NanPolicy {
    /// Drop them, unless more than `max_nan_fraction` of a side is NaN.
    Drop,
    /// Any NaN makes the metric inconclusive.
    Inconclusive,
    /// A NaN point is a step with nothing to measure (a quantile over no requests, as
    /// `histogram_quantile` gives at low traffic): dropped however many there are. The
    /// data is short only when the canary measured clearly fewer of its steps than the
    /// baseline did (the gap check, [`super::observations::coverage_problems`]).
    EmptySteps,
}

/// Outlier removal before comparison.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(tag = "method", rename_all = "snake_case")]
pub enum OutlierPolicy {
    /// Use every sample.
    Keep,
    /// Drop samples outside Tukey's fences `Q1 - k·IQR`, `Q3 + k·IQR`, per side.
    Iqr {
        /// `k`, usually 1.5 (3 for "far out" only).
        multiplier: f64,
    },
}

/// Which statistic of the canary a threshold metric limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ThresholdStatistic {
    /// Arithmetic mean of the samples (for count data: the error rate).
    Mean,
    /// Median of the samples.
    Median,
    /// 95th percentile of the samples.
    P95,
    /// 99th percentile of the samples.
    P99,
    /// Largest sample.
    Max,
    /// Smallest sample.
    Min,
    /// The sample with the latest timestamp.
    Last,
}

impl fmt::Display for ThresholdStatistic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ThresholdStatistic::Mean => "mean",
            ThresholdStatistic::Median => "median",
            ThresholdStatistic::P95 => "p95",
            ThresholdStatistic::P99 => "p99",
            ThresholdStatistic::Max => "max",
            ThresholdStatistic::Min => "min",
            ThresholdStatistic::Last => "last",
        })
    }
}

/// A profile that cannot be used, with where and why.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{file}:{line}:{column}: {field}: {message}")]
pub struct ProfileError {
    /// The profile file as the user named it.
    pub file: String,
    /// 1-based line of the offending value (or of the table that lacks a key).
    pub line: usize,
    /// 1-based column.
    pub column: usize,
    /// The key path, e.g. `metrics.error_rate.max_ratio`.
    pub field: String,
    /// What is wrong and what is allowed.
    pub message: String,
}

const DEFAULT_CONFIDENCE_LEVEL: f64 = 0.95;
const DEFAULT_PASS_SCORE: f64 = 95.0;
const DEFAULT_MARGINAL_SCORE: f64 = 75.0;
const DEFAULT_MAX_NAN_FRACTION: f64 = 0.1;
const DEFAULT_IQR_MULTIPLIER: f64 = 1.5;

/// The default `min_samples` per kind: enough for the normal approximations to be
/// trustworthy (continuous), for a 0.1–1 % error rate to produce a few errors
/// (proportion), and at least one value (threshold).
fn default_min_samples(kind: KindName) -> u64 {
    match kind {
        KindName::Continuous => 20,
        KindName::Proportion => 500,
        KindName::Threshold => 1,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
enum KindName {
    Continuous,
    Proportion,
    Threshold,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
enum OutlierMethodName {
    Keep,
    Iqr,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProfile {
    name: Option<Spanned<String>>,
    description: Option<String>,
    judge: Option<Spanned<RawJudge>>,
    #[serde(default)]
    groups: BTreeMap<Spanned<String>, Spanned<RawGroup>>,
    #[serde(default)]
    metrics: Vec<Spanned<RawMetric>>,
    #[serde(default)]
    stages: Vec<Spanned<RawStage>>,
    #[serde(default)]
    triggers: Vec<Spanned<RawTrigger>>,
    rollout: Option<Spanned<RawRollout>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawJudge {
    confidence_level: Option<Spanned<f64>>,
    pass_score: Option<Spanned<f64>>,
    marginal_score: Option<Spanned<f64>>,
    multiple_comparisons: Option<Spanned<Correction>>,
    mode: Option<Spanned<JudgeMode>>,
    host_spread: Option<Spanned<f64>>,
    error_host_spread: Option<Spanned<f64>>,
    instance_labels: Option<Spanned<Vec<String>>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGroup {
    weight: Option<Spanned<f64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMetric {
    name: Option<Spanned<String>>,
    kind: Option<Spanned<KindName>>,
    direction: Option<Spanned<Direction>>,
    min_samples: Option<Spanned<i64>>,
    critical: Option<Spanned<bool>>,
    severity: Option<Spanned<Severity>>,
    group: Option<Spanned<String>>,
    query: Option<Spanned<String>>,
    errors_query: Option<Spanned<String>>,
    total_query: Option<Spanned<String>>,
    raw_samples: Option<Spanned<bool>>,
    cumulative: Option<Spanned<bool>>,
    allowed_increase: Option<Spanned<f64>>,
    allowed_decrease: Option<Spanned<f64>>,
    max_ratio: Option<Spanned<f64>>,
    min_ratio: Option<Spanned<f64>>,
    max: Option<Spanned<f64>>,
    min: Option<Spanned<f64>>,
    statistic: Option<Spanned<ThresholdStatistic>>,
    nan_policy: Option<Spanned<NanPolicy>>,
    max_nan_fraction: Option<Spanned<f64>>,
    outliers: Option<Spanned<OutlierMethodName>>,
    iqr_multiplier: Option<Spanned<f64>>,
    tails: Option<Spanned<bool>>,
    bursts: Option<Spanned<String>>,
}

/// Builds errors that point into one profile text.
pub(super) struct Validator<'a> {
    file: &'a str,
    text: &'a str,
}

impl Validator<'_> {
    pub(super) fn error(
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

        let mut group_weights = BTreeMap::new();
        for (group_name, group) in &raw.groups {
            let field = format!("groups.{}.weight", group_name.get_ref());
            let weight = match &group.get_ref().weight {
                Some(weight) => {
                    let value = *weight.get_ref();
                    if !(value.is_finite() && value > 0.0) {
                        return Err(v.error(
                            weight.span(),
                            &field,
                            format!("must be a number above 0, got {value}"),
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

        if raw.metrics.is_empty() {
            return Err(v.error(
                0..0,
                "metrics",
                "a profile needs at least one [[metrics]] table",
            ));
        }
        let mut metrics = Vec::with_capacity(raw.metrics.len());
        let mut seen_names = BTreeSet::new();
        for (index, raw_metric) in raw.metrics.into_iter().enumerate() {
            let span = raw_metric.span();
            let metric =
                validate_metric(&v, index, span.clone(), raw_metric.into_inner(), judge.mode)?;
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

        let plan = validate_plan(
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

    /// The weight of a score group (1 when the profile does not declare groups).
    pub fn group_weight(&self, group: &str) -> f64 {
        self.group_weights.get(group).copied().unwrap_or(1.0)
    }

    /// The metric with this name.
    pub fn metric(&self, name: &str) -> Option<&MetricSpec> {
        self.metrics.iter().find(|metric| metric.name == name)
    }
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
    Ok(JudgeSettings {
        confidence_level,
        pass_score,
        marginal_score,
        multiple_comparisons: raw
            .multiple_comparisons
            .map_or(Correction::Holm, Spanned::into_inner),
        mode: raw.mode.map_or(JudgeMode::default(), Spanned::into_inner),
        host_spread,
        error_host_spread,
        instance_labels,
    })
}

fn validate_metric(
    v: &Validator<'_>,
    index: usize,
    span: Range<usize>,
    raw: RawMetric,
    mode: JudgeMode,
) -> Result<MetricSpec, ProfileError> {
    let name = match &raw.name {
        Some(name) => {
            let value = name.get_ref();
            let valid = !value.is_empty()
                && value
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
            if !valid {
                return Err(v.error(
                    name.span(),
                    &format!("metrics[{}].name", index + 1),
                    format!(
                        "{value:?} is not a valid metric name: use letters, digits, '_', '-' and '.' \
                         (':' is reserved for the `NAME:errors` / `NAME:total` rows of data files)"
                    ),
                ));
            }
            value.clone()
        }
        None => {
            return Err(v.error(
                span,
                &format!("metrics[{}].name", index + 1),
                "is required in every [[metrics]] table",
            ));
        }
    };
    let field = |key: &str| format!("metrics.{name}.{key}");

    let kind_name = match &raw.kind {
        Some(kind) => *kind.get_ref(),
        None => {
            return Err(v.error(
                span,
                &field("kind"),
                "is required: one of \"continuous\", \"proportion\", \"threshold\"",
            ));
        }
    };
    let kind_label = match kind_name {
        KindName::Continuous => "continuous",
        KindName::Proportion => "proportion",
        KindName::Threshold => "threshold",
    };

    // Keys that belong to another kind are refused rather than ignored: a `max_ratio`
    // on a continuous metric would otherwise silently do nothing.
    let only_for =
        |key: &str, present: Option<Range<usize>>, kinds: &[KindName], allowed: &str| match present
        {
            Some(key_span) if !kinds.contains(&kind_name) => Err(v.error(
                key_span,
                &field(key),
                format!("applies only to {allowed} metrics, not to kind = \"{kind_label}\""),
            )),
            _ => Ok(()),
        };
    use KindName::{Continuous, Proportion, Threshold};
    only_for(
        "direction",
        raw.direction.as_ref().map(Spanned::span),
        &[Continuous, Proportion],
        "continuous and proportion",
    )?;
    for (key, value) in [
        ("allowed_increase", &raw.allowed_increase),
        ("allowed_decrease", &raw.allowed_decrease),
    ] {
        only_for(
            key,
            value.as_ref().map(Spanned::span),
            &[Continuous],
            "continuous",
        )?;
    }
    for (key, value) in [("max_ratio", &raw.max_ratio), ("min_ratio", &raw.min_ratio)] {
        only_for(
            key,
            value.as_ref().map(Spanned::span),
            &[Proportion],
            "proportion",
        )?;
    }
    for (key, value) in [("max", &raw.max), ("min", &raw.min)] {
        only_for(
            key,
            value.as_ref().map(Spanned::span),
            &[Threshold],
            "threshold",
        )?;
    }
    only_for(
        "statistic",
        raw.statistic.as_ref().map(Spanned::span),
        &[Threshold],
        "threshold",
    )?;
    for (key, value) in [
        ("outliers", raw.outliers.as_ref().map(Spanned::span)),
        (
            "iqr_multiplier",
            raw.iqr_multiplier.as_ref().map(Spanned::span),
        ),
    ] {
        only_for(
            key,
            value,
            &[Continuous, Threshold],
            "continuous and threshold",
        )?;
    }

    if kind_name == Proportion
        && let Some(query) = &raw.query
    {
        return Err(v.error(
            query.span(),
            &field("query"),
            "a proportion metric is counted with two queries: use `errors_query` and `total_query`",
        ));
    }
    for (key, value) in [
        ("errors_query", &raw.errors_query),
        ("total_query", &raw.total_query),
    ] {
        only_for(
            key,
            value.as_ref().map(Spanned::span),
            &[Proportion, Threshold],
            "proportion and threshold",
        )?;
    }
    match (&raw.errors_query, &raw.total_query) {
        (Some(only), None) | (None, Some(only)) => {
            return Err(v.error(
                only.span(),
                &field(if raw.errors_query.is_some() {
                    "total_query"
                } else {
                    "errors_query"
                }),
                "`errors_query` and `total_query` go together: give both or neither",
            ));
        }
        _ => {}
    }
    if kind_name == Threshold
        && let (Some(_), Some(query)) = (&raw.errors_query, &raw.query)
    {
        return Err(v.error(
            query.span(),
            &field("query"),
            "give either `query` (samples) or `errors_query` and `total_query` (a rate), not both",
        ));
    }
    only_for(
        "tails",
        raw.tails.as_ref().map(Spanned::span),
        &[Continuous],
        "continuous",
    )?;
    only_for(
        "bursts",
        raw.bursts.as_ref().map(Spanned::span),
        &[Proportion],
        "proportion",
    )?;
    // The spread and burst checks belong to the sequential judge: refused, not ignored,
    // where they would not run.
    if mode == JudgeMode::Fixed {
        let tails = raw
            .tails
            .as_ref()
            .filter(|t| *t.get_ref())
            .map(Spanned::span);
        let bursts = raw.bursts.as_ref().map(Spanned::span);
        for (key, present) in [("tails", tails), ("bursts", bursts)] {
            if let Some(key_span) = present {
                return Err(v.error(
                    key_span,
                    &field(key),
                    "is a check of the sequential judge and does not run with [judge] mode = \"fixed\": \
                     remove it or use mode = \"sequential\"",
                ));
            }
        }
    }
    let bursts = match &raw.bursts {
        Some(window) => Some(
            HumanDuration::parse(window.get_ref())
                .map_err(|message| v.error(window.span(), &field("bursts"), message))?,
        ),
        None => None,
    };
    only_for(
        "raw_samples",
        raw.raw_samples.as_ref().map(Spanned::span),
        &[Continuous, Threshold],
        "continuous and threshold",
    )?;

    if let Some(cumulative) = &raw.cumulative
        && *cumulative.get_ref()
        && (raw.errors_query.is_none() || raw.total_query.is_none())
    {
        return Err(v.error(
            cumulative.span(),
            &field("cumulative"),
            "only applies to count data: give errors_query and total_query that return counters",
        ));
    }

    let non_negative = |key: &str, value: &Option<Spanned<f64>>| -> Result<f64, ProfileError> {
        match value {
            Some(value) if !(value.get_ref().is_finite() && *value.get_ref() >= 0.0) => Err(v
                .error(
                    value.span(),
                    &field(key),
                    format!(
                        "must be a fraction of the baseline at least 0 (0.1 = 10 %), got {}",
                        value.get_ref()
                    ),
                )),
            Some(value) => Ok(*value.get_ref()),
            None => Ok(0.0),
        }
    };
    let direction = raw
        .direction
        .as_ref()
        .map_or(Direction::Increase, |d| *d.get_ref());

    let kind = match kind_name {
        KindName::Continuous => {
            let allowed_increase = non_negative("allowed_increase", &raw.allowed_increase)?;
            let allowed_decrease = non_negative("allowed_decrease", &raw.allowed_decrease)?;
            if let Some(decrease) = &raw.allowed_decrease
                && allowed_decrease >= 1.0
            {
                return Err(v.error(
                    decrease.span(),
                    &field("allowed_decrease"),
                    format!(
                        "must be below 1 (a decrease of 100 % or more tolerates anything), got {allowed_decrease}"
                    ),
                ));
            }
            MetricKind::Continuous {
                direction,
                allowed_increase,
                allowed_decrease,
            }
        }
        KindName::Proportion => {
            let max_ratio = match &raw.max_ratio {
                Some(ratio) if !(ratio.get_ref().is_finite() && *ratio.get_ref() >= 1.0) => {
                    return Err(v.error(
                        ratio.span(),
                        &field("max_ratio"),
                        format!(
                            "must be a number at least 1 (1.5 = canary rate may reach baseline × 1.5), got {}",
                            ratio.get_ref()
                        ),
                    ));
                }
                ratio => ratio.as_ref().map(|r| *r.get_ref()),
            };
            let min_ratio = match &raw.min_ratio {
                Some(ratio)
                    if !(ratio.get_ref().is_finite()
                        && *ratio.get_ref() > 0.0
                        && *ratio.get_ref() <= 1.0) =>
                {
                    return Err(v.error(
                        ratio.span(),
                        &field("min_ratio"),
                        format!(
                            "must be a number above 0 and at most 1 (0.8 = canary rate may fall to baseline × 0.8), got {}",
                            ratio.get_ref()
                        ),
                    ));
                }
                ratio => ratio.as_ref().map(|r| *r.get_ref()),
            };
            MetricKind::Proportion {
                direction,
                max_ratio,
                min_ratio,
            }
        }
        KindName::Threshold => {
            let finite = |key: &str, value: &Option<Spanned<f64>>| match value {
                Some(value) if !value.get_ref().is_finite() => Err(v.error(
                    value.span(),
                    &field(key),
                    format!("must be a finite number, got {}", value.get_ref()),
                )),
                value => Ok(value.as_ref().map(|x| *x.get_ref())),
            };
            let min = finite("min", &raw.min)?;
            let max = finite("max", &raw.max)?;
            match (min, max) {
                (None, None) => {
                    return Err(v.error(
                        span,
                        &field("max"),
                        "a threshold metric needs `max`, `min` or both",
                    ));
                }
                (Some(low), Some(high)) if low > high => {
                    return Err(v.error(
                        raw.min.as_ref().map_or(span.clone(), Spanned::span),
                        &field("min"),
                        format!("must not exceed max ({low} > {high})"),
                    ));
                }
                _ => {}
            }
            MetricKind::Threshold {
                statistic: raw
                    .statistic
                    .as_ref()
                    .map_or(ThresholdStatistic::Mean, |s| *s.get_ref()),
                min,
                max,
            }
        }
    };

    let min_samples = match &raw.min_samples {
        Some(count) if *count.get_ref() < 1 => {
            return Err(v.error(
                count.span(),
                &field("min_samples"),
                format!("must be a whole number at least 1, got {}", count.get_ref()),
            ));
        }
        Some(count) => *count.get_ref() as u64,
        None => default_min_samples(kind_name),
    };

    let severity = match (&raw.critical, &raw.severity) {
        (Some(critical), Some(severity)) => {
            let agrees = (*critical.get_ref()) == (*severity.get_ref() == Severity::Critical);
            if !agrees {
                return Err(v.error(
                    critical.span(),
                    &field("critical"),
                    format!(
                        "contradicts severity = \"{}\"; give one of `critical = true` or `severity = \"critical\" | \"warning\" | \"normal\"`",
                        severity_label(*severity.get_ref())
                    ),
                ));
            }
            *severity.get_ref()
        }
        (Some(critical), None) if *critical.get_ref() => Severity::Critical,
        (_, Some(severity)) => *severity.get_ref(),
        _ => Severity::Normal,
    };

    let group = match &raw.group {
        Some(group) if group.get_ref().trim().is_empty() => {
            return Err(v.error(group.span(), &field("group"), "must not be empty"));
        }
        Some(group) => group.get_ref().clone(),
        None => "default".to_owned(),
    };

    let nan_policy = raw
        .nan_policy
        .as_ref()
        .map_or(NanPolicy::Drop, |p| *p.get_ref());
    let max_nan_fraction = match &raw.max_nan_fraction {
        Some(fraction) if !(0.0..=1.0).contains(fraction.get_ref()) => {
            return Err(v.error(
                fraction.span(),
                &field("max_nan_fraction"),
                format!("must be a fraction from 0 to 1, got {}", fraction.get_ref()),
            ));
        }
        Some(fraction) => *fraction.get_ref(),
        None => DEFAULT_MAX_NAN_FRACTION,
    };

    let outliers = match (
        raw.outliers.as_ref().map(|o| *o.get_ref()),
        &raw.iqr_multiplier,
    ) {
        (Some(OutlierMethodName::Iqr), multiplier) => {
            let multiplier = match multiplier {
                Some(k) if !(k.get_ref().is_finite() && *k.get_ref() > 0.0) => {
                    return Err(v.error(
                        k.span(),
                        &field("iqr_multiplier"),
                        format!(
                            "must be a number above 0 (usually 1.5), got {}",
                            k.get_ref()
                        ),
                    ));
                }
                Some(k) => *k.get_ref(),
                None => DEFAULT_IQR_MULTIPLIER,
            };
            OutlierPolicy::Iqr { multiplier }
        }
        (_, Some(k)) => {
            return Err(v.error(
                k.span(),
                &field("iqr_multiplier"),
                "only applies with outliers = \"iqr\"",
            ));
        }
        _ => OutlierPolicy::Keep,
    };

    Ok(MetricSpec {
        name,
        kind,
        min_samples,
        severity,
        group,
        query: raw.query.map(Spanned::into_inner),
        errors_query: raw.errors_query.map(Spanned::into_inner),
        total_query: raw.total_query.map(Spanned::into_inner),
        raw_samples: raw.raw_samples.is_some_and(|r| *r.get_ref()),
        cumulative: raw.cumulative.is_some_and(|c| *c.get_ref()),
        nan_policy,
        max_nan_fraction,
        outliers,
        tails: raw.tails.is_some_and(|t| *t.get_ref()),
        bursts,
    })
}

fn severity_label(severity: Severity) -> &'static str {
    match severity {
        Severity::Critical => "critical",
        Severity::Warning => "warning",
        Severity::Normal => "normal",
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(severity_label(*self))
    }
}

impl fmt::Display for Direction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Direction::Increase => "increase",
            Direction::Decrease => "decrease",
            Direction::Either => "either",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONTRACT_EXAMPLE: &str = r#"
name = "web-service"
[judge]
confidence_level = 0.95     # per metric
pass_score = 95             # promote at or above
marginal_score = 75         # rollback below; hold in between
[[metrics]]
name = "latency_p95"
kind = "continuous"         # Mann-Whitney + Hodges-Lehmann
direction = "increase"      # the bad direction: increase | decrease | either
min_samples = 50            # per side; fewer → inconclusive
critical = true             # a failure here forces rollback
group = "latency"           # groups and weights feed the score
query = '...'               # used by metric sources later
[[metrics]]
name = "error_rate"
kind = "proportion"         # errors / total, two-proportion tests
min_samples = 1000          # events (requests) per side
max_ratio = 1.5             # canary rate may not exceed baseline × 1.5
[[metrics]]
name = "p95_slo"
kind = "threshold"          # absolute limit on the canary alone
max = 0.4
"#;

    fn parse(text: &str) -> Result<Profile, ProfileError> {
        Profile::parse(text, "profile.toml")
    }

    #[test]
    fn the_documented_contract_example_parses() {
        let profile = parse(CONTRACT_EXAMPLE).unwrap();
        assert_eq!(profile.name, "web-service");
        assert_eq!(profile.judge.confidence_level.value(), 0.95);
        assert_eq!(profile.metrics.len(), 3);
        let latency = &profile.metrics[0];
        assert_eq!(latency.severity, Severity::Critical);
        assert_eq!(latency.min_samples, 50);
        assert_eq!(latency.group, "latency");
        assert_eq!(
            profile.metrics[1].kind,
            MetricKind::Proportion {
                direction: Direction::Increase,
                max_ratio: Some(1.5),
                min_ratio: None
            }
        );
        assert_eq!(
            profile.metrics[2].kind,
            MetricKind::Threshold {
                statistic: ThresholdStatistic::Mean,
                min: None,
                max: Some(0.4)
            }
        );
    }

    #[test]
    fn an_unknown_kind_names_line_field_and_allowed_values() {
        let text = "name = \"x\"\n[[metrics]]\nname = \"a\"\nkind = \"continous\"\n";
        let error = parse(text).unwrap_err();
        assert_eq!(error.line, 4);
        assert_eq!(error.file, "profile.toml");
        assert!(error.message.contains("continuous"), "{error}");
        assert!(error.message.contains("threshold"), "{error}");
    }

    #[test]
    fn an_unknown_key_is_refused_with_its_line() {
        let text =
            "name = \"x\"\n[[metrics]]\nname = \"a\"\nkind = \"continuous\"\nmax_ration = 2\n";
        let error = parse(text).unwrap_err();
        assert_eq!(error.line, 5);
        assert_eq!(error.field, "max_ration");
    }

    #[test]
    fn a_key_of_another_kind_is_refused() {
        let text =
            "name = \"x\"\n[[metrics]]\nname = \"a\"\nkind = \"continuous\"\nmax_ratio = 2\n";
        let error = parse(text).unwrap_err();
        assert_eq!(error.line, 5);
        assert_eq!(error.field, "metrics.a.max_ratio");
        assert!(error.message.contains("proportion"), "{error}");
    }

    #[test]
    fn out_of_range_values_are_refused_with_what_is_allowed() {
        let cases = [
            (
                "[judge]\nconfidence_level = 95\n",
                "judge.confidence_level",
                3,
            ),
            ("[judge]\npass_score = 120\n", "judge.pass_score", 3),
            (
                "[judge]\npass_score = 70\nmarginal_score = 80\n",
                "judge.marginal_score",
                4,
            ),
        ];
        for (judge, field, line) in cases {
            let text =
                format!("name = \"x\"\n{judge}[[metrics]]\nname = \"a\"\nkind = \"continuous\"\n");
            let error = parse(&text).unwrap_err();
            assert_eq!(error.field, field, "{error}");
            assert_eq!(error.line, line, "{error}");
        }
        let text =
            "name = \"x\"\n[[metrics]]\nname = \"a\"\nkind = \"proportion\"\nmin_samples = -3\n";
        let error = parse(text).unwrap_err();
        assert_eq!(
            (error.field.as_str(), error.line),
            ("metrics.a.min_samples", 5)
        );
        let text =
            "name = \"x\"\n[[metrics]]\nname = \"a\"\nkind = \"proportion\"\nmax_ratio = 0.5\n";
        assert_eq!(parse(text).unwrap_err().field, "metrics.a.max_ratio");
    }

    #[test]
    fn duplicate_metric_names_are_refused() {
        let text = "name = \"x\"\n[[metrics]]\nname = \"a\"\nkind = \"continuous\"\n[[metrics]]\nname = \"a\"\nkind = \"continuous\"\n";
        let error = parse(text).unwrap_err();
        assert_eq!(error.line, 5);
        assert!(error.message.contains("unique"));
    }

    #[test]
    fn contradicting_critical_and_severity_are_refused() {
        let text = "name = \"x\"\n[[metrics]]\nname = \"a\"\nkind = \"continuous\"\ncritical = true\nseverity = \"warning\"\n";
        assert_eq!(parse(text).unwrap_err().field, "metrics.a.critical");
    }

    #[test]
    fn undeclared_groups_are_refused_once_groups_are_declared() {
        let text = "name = \"x\"\n[groups.latency]\nweight = 2\n[[metrics]]\nname = \"a\"\nkind = \"continuous\"\ngroup = \"latncy\"\n";
        let error = parse(text).unwrap_err();
        assert_eq!(error.field, "metrics.a.group");
        assert!(error.message.contains("latency"));
    }

    #[test]
    fn a_threshold_needs_a_limit() {
        let text = "name = \"x\"\n[[metrics]]\nname = \"a\"\nkind = \"threshold\"\n";
        assert_eq!(parse(text).unwrap_err().field, "metrics.a.max");
    }

    #[test]
    fn syntax_errors_point_at_their_line() {
        let text = "name = \"x\"\n[[metrics]\nname = \"a\"\n";
        let error = parse(text).unwrap_err();
        assert_eq!(error.line, 2);
    }

    #[test]
    fn a_profile_without_metrics_is_refused() {
        assert_eq!(parse("name = \"x\"\n").unwrap_err().field, "metrics");
    }

    #[test]
    fn defaults_are_filled_in() {
        let profile =
            parse("name = \"x\"\n[[metrics]]\nname = \"a\"\nkind = \"continuous\"\n").unwrap();
        assert_eq!(profile.judge.pass_score.value(), 95.0);
        assert_eq!(profile.judge.multiple_comparisons, Correction::Holm);
        let metric = &profile.metrics[0];
        assert_eq!(metric.severity, Severity::Normal);
        assert_eq!(metric.group, "default");
        assert_eq!(metric.nan_policy, NanPolicy::Drop);
        assert_eq!(metric.outliers, OutlierPolicy::Keep);
    }

    #[test]
    fn sequential_is_the_default_mode_and_its_checks_are_parsed() {
        let profile = parse(
            "name = \"x\"\n[[metrics]]\nname = \"a\"\nkind = \"continuous\"\ntails = true\n\
             [[metrics]]\nname = \"e\"\nkind = \"proportion\"\nbursts = \"1m\"\n",
        )
        .unwrap();
        assert_eq!(profile.judge.mode, JudgeMode::Sequential);
        assert!(profile.metrics[0].tails);
        assert_eq!(profile.metrics[1].bursts.unwrap().seconds(), 60.0);
    }

    #[test]
    fn sequential_checks_are_refused_where_they_would_not_run() {
        let fixed = "name = \"x\"\n[judge]\nmode = \"fixed\"\n[[metrics]]\nname = \"a\"\nkind = \"continuous\"\ntails = true\n";
        let error = parse(fixed).unwrap_err();
        assert_eq!((error.field.as_str(), error.line), ("metrics.a.tails", 7));
        assert!(
            error.message.contains("sequential judge"),
            "{}",
            error.message
        );

        let wrong_kind =
            "name = \"x\"\n[[metrics]]\nname = \"a\"\nkind = \"continuous\"\nbursts = \"1m\"\n";
        assert_eq!(parse(wrong_kind).unwrap_err().field, "metrics.a.bursts");
        let bad_window =
            "name = \"x\"\n[[metrics]]\nname = \"e\"\nkind = \"proportion\"\nbursts = \"soon\"\n";
        let error = parse(bad_window).unwrap_err();
        assert_eq!((error.field.as_str(), error.line), ("metrics.e.bursts", 5));
        let bad_mode = "name = \"x\"\n[judge]\nmode = \"bayesian\"\n[[metrics]]\nname = \"a\"\nkind = \"continuous\"\n";
        let error = parse(bad_mode).unwrap_err();
        assert_eq!(
            (error.field.as_str(), error.line),
            ("judge.mode", 3),
            "{error:?}"
        );
    }
}
