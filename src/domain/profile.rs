//! Analysis profiles: which metrics to compare, how, and how to turn the results
//! into a verdict.
//!
//! A profile is a TOML file (`analysis-profiles/*.toml`). Its keys are a public
//! contract: they may be extended, never renamed. [`Profile::parse`] reads the
//! text into loosely typed "raw" structs that remember where each value stood,
//! then validates every key into the domain types below. Every error names the
//! file, the line and the field, and says what is allowed, so a pipeline author
//! can fix a profile without reading this code.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use super::HumanDuration;
use super::plan::{MIN_BURST_WINDOW_STEPS, RolloutPlan};
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
    /// Which judge classifies and scores (`kayenta` implies `mode = "fixed"`).
    pub algorithm: JudgeAlgorithm,
    /// The prior for how much instances (hosts, pods) of one version differ in level, as
    /// a relative spread (`0.03`: one instance's typical level is 3 % off the fleet's).
    /// When a metric's series carry instance labels, the location checks (sequential
    /// and one-shot) do not count a difference between the sides' instances as a
    /// regression until it is beyond what this spread (pooled with the spread the
    /// baseline's own instances show) can explain for the number of instances on each
    /// side. `0` turns the allowance off.
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

/// Which judge classifies the metrics and scores them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum JudgeAlgorithm {
    /// canary's own judge: Mann-Whitney with Hodges-Lehmann intervals against
    /// median-shift tolerances, two-proportion tests, thresholds, multiple-comparison
    /// correction, and (in a rollout) anytime-valid sequential evidence.
    #[default]
    Canary,
    /// Kayenta's `NetflixACAJudge-v1.0`, reproduced: every metric continuous, the
    /// Mann-Whitney classifier at 98 % confidence with a tolerance of 25 % of the
    /// estimate, Kayenta's effect-size gates, NODATA rules and weighted-sum score (see
    /// `src/judge/kayenta.rs`). For teams moving from Kayenta; `canary analyze
    /// --compare` shows where it and canary's judge disagree.
    Kayenta,
}

impl fmt::Display for JudgeAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            JudgeAlgorithm::Canary => "canary",
            JudgeAlgorithm::Kayenta => "kayenta",
        })
    }
}

/// Kayenta's effect-size measure for a metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EffectMeasure {
    /// Canary mean over baseline mean (Kayenta's `meanRatio`); gates are ratios, 1 is
    /// no change.
    MeanRatio,
    /// The common-language effect size (Kayenta's `cles`): the chance a canary value
    /// exceeds a baseline value; gates are probabilities, 0.5 is no change.
    Cles,
}

/// What Kayenta does with NaN values of a metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KayentaNanStrategy {
    /// Drop them (a side left empty is NODATA).
    Remove,
    /// Count them as zeros (a side left empty passes).
    Replace,
}

/// A metric's settings under `algorithm = "kayenta"`, with Kayenta's meaning: the
/// effect-size gates are on [`EffectMeasure`], not on canary's median shift.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct KayentaMetric {
    /// How the effect size the gates compare is measured.
    pub measure: EffectMeasure,
    /// A significant increase fails only when the effect size is at least this.
    pub allowed_increase: f64,
    /// A significant decrease fails only when the effect size is at most this.
    pub allowed_decrease: f64,
    /// A critical metric's increase fails the whole analysis only at or above this.
    pub critical_increase: f64,
    /// A critical metric's decrease fails the whole analysis only at or below this.
    pub critical_decrease: f64,
    /// No data on a side fails the metric (NODATA_FAIL) instead of leaving it out.
    pub must_have_data: bool,
    /// Classified and reported, but left out of the score.
    pub muted: bool,
    /// NaN handling.
    pub nan_strategy: KayentaNanStrategy,
    /// `Some(factor)`: remove outliers beyond `min(p1, Q1 − factor·IQR)` and
    /// `max(p99, Q3 + factor·IQR)`.
    pub outlier_factor: Option<f64>,
}

impl KayentaMetric {
    /// Kayenta's defaults: mean ratio, every gate at 1 (any significant change fails
    /// and a critical metric's failure is critical), NaN removed, outliers kept.
    pub fn defaults(measure: EffectMeasure) -> Self {
        let neutral = match measure {
            EffectMeasure::MeanRatio => 1.0,
            EffectMeasure::Cles => 0.5,
        };
        Self {
            measure,
            allowed_increase: neutral,
            allowed_decrease: neutral,
            critical_increase: neutral,
            critical_decrease: neutral,
            must_have_data: false,
            muted: false,
            nan_strategy: KayentaNanStrategy::Remove,
            outlier_factor: None,
        }
    }
}

/// A confidence level in `[0.5, 1)`.
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd, Serialize)]
#[serde(transparent)]
pub struct ConfidenceLevel(pub(in crate::domain) f64);

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
pub struct Score(pub(in crate::domain) f64);

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
    /// The metric's settings under `[judge] algorithm = "kayenta"` (the
    /// `[metrics.kayenta]` table, or Kayenta's defaults); `None` under canary's judge.
    pub kayenta: Option<KayentaMetric>,
    /// The metric's queries in the languages of other metric systems (the
    /// `[metrics.queries.LANGUAGE]` tables): a source runs the set of its own language.
    /// PromQL stays in `query`, `errors_query` and `total_query` above.
    pub queries: BTreeMap<QueryLanguage, MetricQueries>,
}

/// The language a metric source's queries are written in; each names a
/// `[metrics.queries.KEY]` table of the profile.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum QueryLanguage {
    /// PromQL: Prometheus, VictoriaMetrics, Thanos, Cortex, Mimir, Amazon Managed
    /// Prometheus. The metric's own `query`, `errors_query`, `total_query`.
    Prometheus,
    /// InfluxQL (InfluxDB 1.x, and 2.x/3.x through their InfluxQL endpoint).
    Influxdb,
    /// Graphite's render-API targets (functions and paths, or `seriesByTag`).
    Graphite,
    /// Datadog's metric query syntax (`avg:metric{tags}`).
    Datadog,
    /// Amazon CloudWatch metric math and `SEARCH` expressions.
    Cloudwatch,
}

impl QueryLanguage {
    /// Every language, in the order the docs list them.
    pub const ALL: [QueryLanguage; 5] = [
        QueryLanguage::Prometheus,
        QueryLanguage::Influxdb,
        QueryLanguage::Graphite,
        QueryLanguage::Datadog,
        QueryLanguage::Cloudwatch,
    ];

    /// The key of its `[metrics.queries.KEY]` table.
    pub fn key(self) -> &'static str {
        match self {
            QueryLanguage::Prometheus => "prometheus",
            QueryLanguage::Influxdb => "influxdb",
            QueryLanguage::Graphite => "graphite",
            QueryLanguage::Datadog => "datadog",
            QueryLanguage::Cloudwatch => "cloudwatch",
        }
    }

    /// The language whose table key is `key`.
    pub fn from_key(key: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|language| language.key() == key)
    }
}

impl fmt::Display for QueryLanguage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.key())
    }
}

/// One `[metrics.queries.LANGUAGE]` table: a metric's queries in one language.
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct MetricQueries {
    /// The query for samples (continuous and threshold metrics).
    pub query: Option<String>,
    /// The query counting bad events per step (proportions, thresholds on a rate).
    pub errors_query: Option<String>,
    /// The query counting all events per step.
    pub total_query: Option<String>,
    /// The count queries return cumulative counters, differenced per step.
    pub cumulative: bool,
}

/// The queries a source of one language runs for a metric, borrowed from its spec.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct QuerySet<'a> {
    /// The query for samples.
    pub query: Option<&'a str>,
    /// The query counting bad events.
    pub errors_query: Option<&'a str>,
    /// The query counting all events.
    pub total_query: Option<&'a str>,
    /// Raw samples instead of a range query (PromQL only).
    pub raw_samples: bool,
    /// The count queries return counters.
    pub cumulative: bool,
}

impl MetricSpec {
    /// The metric's queries in `language`, or `None` when the profile has none in it.
    /// For PromQL they are the metric's own `query`, `errors_query` and `total_query`
    /// (whichever are set).
    pub fn queries_in(&self, language: QueryLanguage) -> Option<QuerySet<'_>> {
        if language == QueryLanguage::Prometheus {
            let any =
                self.query.is_some() || self.errors_query.is_some() || self.total_query.is_some();
            return any.then_some(QuerySet {
                query: self.query.as_deref(),
                errors_query: self.errors_query.as_deref(),
                total_query: self.total_query.as_deref(),
                raw_samples: self.raw_samples,
                cumulative: self.cumulative,
            });
        }
        self.queries.get(&language).map(|queries| QuerySet {
            query: queries.query.as_deref(),
            errors_query: queries.errors_query.as_deref(),
            total_query: queries.total_query.as_deref(),
            raw_samples: false,
            cumulative: queries.cumulative,
        })
    }

    /// Whether the metric is counted (errors out of events) rather than sampled: every
    /// proportion, and a threshold on a rate (its queries count errors and events; the
    /// profile's validation keeps every language's set the same shape).
    pub fn counted(&self) -> bool {
        matches!(self.kind, MetricKind::Proportion(_))
            || self.errors_query.is_some()
            || self
                .queries
                .values()
                .any(|queries| queries.errors_query.is_some())
    }
}

/// The kind of comparison, with the settings that only make sense for it.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum MetricKind {
    /// Mann-Whitney U test and Hodges-Lehmann shift between the two samples.
    Continuous(ContinuousKind),
    /// Errors out of events on each side; two-proportion z-test or Fisher's exact test.
    Proportion(ProportionKind),
    /// An absolute limit on one statistic of the canary alone.
    Threshold(ThresholdKind),
}

/// The settings of a continuous metric.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct ContinuousKind {
    /// The bad direction.
    pub direction: Direction,
    /// A significant increase of at most this fraction of the baseline median is tolerated.
    pub allowed_increase: f64,
    /// A significant decrease of at most this fraction of the baseline median is tolerated.
    pub allowed_decrease: f64,
}

/// The settings of a proportion metric.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct ProportionKind {
    /// The bad direction.
    pub direction: Direction,
    /// A significant increase is tolerated while the canary rate is at most this many
    /// times the baseline rate.
    pub max_ratio: Option<f64>,
    /// A significant decrease is tolerated while the canary rate is at least this many
    /// times the baseline rate.
    pub min_ratio: Option<f64>,
}

/// The settings of a threshold metric.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct ThresholdKind {
    /// Which statistic of the canary's samples is compared.
    pub statistic: ThresholdStatistic,
    /// The canary fails below this.
    pub min: Option<f64>,
    /// The canary fails above this.
    pub max: Option<f64>,
}

impl MetricKind {
    /// The profile spelling of the kind.
    pub fn name(&self) -> &'static str {
        match self {
            MetricKind::Continuous(_) => "continuous",
            MetricKind::Proportion(_) => "proportion",
            MetricKind::Threshold(_) => "threshold",
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

impl Profile {
    /// The weight of a score group (1 when the profile does not declare groups).
    pub fn group_weight(&self, group: &str) -> f64 {
        self.group_weights.get(group).copied().unwrap_or(1.0)
    }

    /// The metric with this name.
    pub fn metric(&self, name: &str) -> Option<&MetricSpec> {
        self.metrics.iter().find(|metric| metric.name == name)
    }
}

/// Checks of a plan that need the profile's metrics (kept here so `plan` does not
/// depend on `profile`).
impl RolloutPlan {
    /// Where the plan's looks are too short for a sequential check to mean much, in
    /// words naming the stage, the metric and the numbers (`canary check-profile`
    /// prints them; none stops a rollout).
    ///
    /// A look hands the sequential judge the points since the previous one: for range
    /// queries `interval / step` per side. A location comparison of one point against
    /// one is a coin toss (no single look can show a regression); the tails check
    /// waits until each side has
    /// [`MIN_SPREAD_POINTS`](crate::stats::sequential::MIN_SPREAD_POINTS) points, so
    /// with fewer points a look it compares only every few looks, and a stage shorter
    /// than that never compares at all; a `bursts` window of fewer than
    /// [`MIN_BURST_WINDOW_STEPS`] steps holds too few points to be a burst. Metrics read
    /// as raw samples (`raw_samples = true`) come at the scrape interval, unknown here,
    /// and are left out of the per-look counts.
    pub fn short_look_warnings(&self, metrics: &[MetricSpec]) -> Vec<String> {
        use crate::stats::sequential::MIN_SPREAD_POINTS;
        let step = self.settings.step;
        let mut warnings = Vec::new();
        for metric in metrics {
            if let (MetricKind::Proportion(_), Some(window)) = (&metric.kind, metric.bursts) {
                let steps = window.seconds() / step.seconds();
                if steps < MIN_BURST_WINDOW_STEPS {
                    warnings.push(format!(
                        "metric {:?}: its bursts window {window} is {} of {step}; a window needs \
                         at least {MIN_BURST_WINDOW_STEPS} steps to test a burst",
                        metric.name,
                        plural(steps, "step"),
                    ));
                }
            }
            if !matches!(metric.kind, MetricKind::Continuous(_)) || metric.raw_samples {
                continue;
            }
            // A stage without a baseline compares nothing, so its looks cannot be short.
            for stage in self.stages.iter().filter(|stage| stage.has_baseline()) {
                let per_look = (stage.interval.seconds() / step.seconds()).floor();
                let per_stage = (stage.duration.seconds() / step.seconds()).floor();
                let context = format!(
                    "stage {:?}, metric {:?}: a look every {} at a step of {step} brings {} per side",
                    stage.name,
                    metric.name,
                    stage.interval,
                    plural(per_look, "point"),
                );
                if per_look < 2.0 {
                    warnings.push(format!(
                        "{context}; a location comparison of one point against one cannot show a \
                         regression at any single look (give the interval at least 2 steps)"
                    ));
                }
                let needed = MIN_SPREAD_POINTS as f64;
                if metric.tails && per_stage < needed {
                    warnings.push(format!(
                        "{context}; the stage's {} never reach the {needed} per side the tails \
                         check compares spread over, so it cannot test the spread at this stage",
                        plural(per_stage, "point"),
                    ));
                } else if metric.tails && per_look < needed {
                    warnings.push(format!(
                        "{context}; the tails check compares spread over {needed} points per side, \
                         so only every {} looks (give the interval at least {needed} steps)",
                        (needed / per_look.max(1.0)).ceil(),
                    ));
                }
            }
        }
        warnings
    }
}

/// `1 point`, `2 points`, `0.5 steps`.
fn plural(count: f64, unit: &str) -> String {
    if count == 1.0 {
        format!("1 {unit}")
    } else {
        format!("{} {unit}s", (count * 100.0).round() / 100.0)
    }
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

    const KAYENTA_METRIC: &str = "name = \"k\"\n[judge]\nalgorithm = \"kayenta\"\n[[metrics]]\nname = \"latency\"\nkind = \"continuous\"\n";

    #[test]
    fn a_kayenta_profile_gets_kayentas_defaults_and_fixed_looks() {
        let profile = parse(KAYENTA_METRIC).unwrap();
        assert_eq!(profile.judge.algorithm, JudgeAlgorithm::Kayenta);
        assert_eq!(profile.judge.mode, JudgeMode::Fixed);
        assert_eq!(
            profile.metrics[0].kayenta,
            Some(KayentaMetric::defaults(EffectMeasure::MeanRatio))
        );
        let text = format!(
            "{KAYENTA_METRIC}[metrics.kayenta]\nmeasure = \"cles\"\nallowed_increase = 0.7\nmuted = true\n"
        );
        let kayenta = parse(&text).unwrap().metrics[0].kayenta.unwrap();
        assert_eq!(kayenta.measure, EffectMeasure::Cles);
        assert_eq!(kayenta.allowed_increase, 0.7);
        assert_eq!(kayenta.allowed_decrease, 0.5);
        assert!(kayenta.muted);
    }

    #[test]
    fn kayenta_settings_that_would_do_nothing_are_refused_with_their_line() {
        let cases = [
            // A [metrics.kayenta] table under canary's judge.
            (
                "name = \"k\"\n[[metrics]]\nname = \"latency\"\nkind = \"continuous\"\n[metrics.kayenta]\nmuted = true\n",
                5,
                "metrics.latency.kayenta",
            ),
            // canary's median-shift tolerance under Kayenta's judge.
            (
                &format!("{KAYENTA_METRIC}allowed_increase = 0.1\n"),
                7,
                "metrics.latency.allowed_increase",
            ),
            // A CLES gate outside 0..1, a ratio at 0.
            (
                &format!(
                    "{KAYENTA_METRIC}[metrics.kayenta]\nmeasure = \"cles\"\nallowed_increase = 1.5\n"
                ),
                9,
                "metrics.latency.kayenta.allowed_increase",
            ),
            (
                &format!("{KAYENTA_METRIC}[metrics.kayenta]\ncritical_increase = 0\n"),
                8,
                "metrics.latency.kayenta.critical_increase",
            ),
            // Kayenta has no proportion metrics and no sequential looks.
            (
                "name = \"k\"\n[judge]\nalgorithm = \"kayenta\"\n[[metrics]]\nname = \"errors\"\nkind = \"proportion\"\n",
                6,
                "metrics.errors.kind",
            ),
            (
                "name = \"k\"\n[judge]\nalgorithm = \"kayenta\"\nmode = \"sequential\"\n[[metrics]]\nname = \"l\"\nkind = \"continuous\"\n",
                4,
                "judge.mode",
            ),
        ];
        for (text, line, field) in cases {
            let error = parse(text).unwrap_err();
            assert_eq!((error.line, error.field.as_str()), (line, field), "{error}");
        }
    }

    const TWO_LANGUAGES: &str = "name = \"p\"\n[[metrics]]\nname = \"errors\"\nkind = \"proportion\"\nerrors_query = 'e'\ntotal_query = 't'\n[metrics.queries.influxdb]\nerrors_query = 'SELECT e'\ntotal_query = 'SELECT t'\ncumulative = true\n";

    #[test]
    fn a_metric_carries_queries_for_several_languages() {
        let profile = parse(TWO_LANGUAGES).unwrap();
        let errors = &profile.metrics[0];
        let promql = errors.queries_in(QueryLanguage::Prometheus).unwrap();
        assert_eq!(promql.errors_query, Some("e"));
        assert!(!promql.cumulative);
        let influxql = errors.queries_in(QueryLanguage::Influxdb).unwrap();
        assert_eq!(influxql.total_query, Some("SELECT t"));
        assert!(influxql.cumulative);
        assert!(errors.queries_in(QueryLanguage::Graphite).is_none());
        assert!(errors.counted());

        // A profile for InfluxDB alone, with no PromQL at all.
        let influx_only = parse("name = \"p\"\n[[metrics]]\nname = \"rate\"\nkind = \"threshold\"\nmax = 0.01\n[metrics.queries.influxdb]\nerrors_query = 'SELECT e'\ntotal_query = 'SELECT t'\n").unwrap();
        let rate = &influx_only.metrics[0];
        assert!(rate.queries_in(QueryLanguage::Prometheus).is_none());
        assert!(
            rate.counted(),
            "a threshold on a rate, whatever the language"
        );
    }

    #[test]
    fn query_tables_that_cannot_work_are_refused_with_their_line() {
        let base =
            "name = \"p\"\n[[metrics]]\nname = \"lat\"\nkind = \"continuous\"\nquery = 'x'\n";
        let cases = [
            (
                format!("{base}[metrics.queries.splunk]\nquery = 'x'\n"),
                6,
                "metrics.lat.queries.splunk",
                "influxdb, graphite, datadog, cloudwatch",
            ),
            (
                format!("{base}[metrics.queries.prometheus]\nquery = 'x'\n"),
                6,
                "metrics.lat.queries.prometheus",
                "own `query`",
            ),
            (
                format!("{base}[metrics.queries.influxdb]\nerrors_query = 'e'\ntotal_query = 't'\n"),
                7,
                "metrics.lat.queries.influxdb.errors_query",
                "proportion and threshold",
            ),
            (
                format!("{base}[metrics.queries.graphite]\ncumulative = true\n"),
                6,
                "metrics.lat.queries.graphite",
                "has no query",
            ),
            (
                "name = \"p\"\n[[metrics]]\nname = \"e\"\nkind = \"proportion\"\n[metrics.queries.datadog]\nerrors_query = 'e'\n".to_owned(),
                6,
                "metrics.e.queries.datadog.total_query",
                "go together",
            ),
            (
                "name = \"p\"\n[[metrics]]\nname = \"t\"\nkind = \"threshold\"\nmax = 1\nquery = 'q'\n[metrics.queries.influxdb]\nerrors_query = 'e'\ntotal_query = 't'\n".to_owned(),
                7,
                "metrics.t.queries.influxdb",
                "same thing",
            ),
            (
                format!("{base}[metrics.queries.influxdb]\nquery = 'q'\nraw_samples = true\n"),
                8,
                "raw_samples",
                "expected one of `query`, `errors_query`, `total_query`, `cumulative`",
            ),
        ];
        for (text, line, field, message) in cases {
            let error = parse(&text).unwrap_err();
            assert_eq!((error.line, error.field.as_str()), (line, field), "{error}");
            assert!(error.message.contains(message), "{error}");
        }
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
            MetricKind::Proportion(ProportionKind {
                direction: Direction::Increase,
                max_ratio: Some(1.5),
                min_ratio: None
            })
        );
        assert_eq!(
            profile.metrics[2].kind,
            MetricKind::Threshold(ThresholdKind {
                statistic: ThresholdStatistic::Mean,
                min: None,
                max: Some(0.4)
            })
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
