//! The analysis report model: every fact the HTML report, the JSON report and the
//! terminal summary show, built purely (no I/O, no clock) from what the store keeps
//! about one analysis — or, for `canary analyze`, from one [`Judgement`].
//!
//! The JSON form of [`AnalysisReport`] is a contract, versioned by
//! [`REPORT_SCHEMA_VERSION`] and documented in `docs/report-schema.md`: fields are only
//! ever added; renaming or removing one bumps the version. Non-finite numbers are
//! written as `null`.
//!
//! Stored looks are typed records (`LookRecord::body`, a versioned
//! [`Look`](crate::scheduler::Look)); the report reads them directly and turns each
//! judge result into its own row types ([`MetricRow`] and friends), the report's stable
//! JSON form, with non-finite numbers as absent values.

use serde::{Deserialize, Serialize};

use crate::domain::look_series::{LookSeries, MetricSeries, SideSeries, merged_cdf};
use crate::domain::{
    ContinuousKind, Direction, MetricKind, Observations, Profile, ProportionKind, Verdict,
};
use crate::format::{confidence_percent, number, percent, signed, signed_percent};
use crate::judge::sequential::SequentialEvidence;
use crate::judge::triggers::TriggerCheck;
use crate::judge::{EffectSize, Judgement, MetricResult, SideSummary, ThresholdCheck};
use crate::scheduler::Decision;
use crate::store::{ActuationRecord, Analysis, AuditEntry, LookRecord, Snapshot};

/// Version of the report's JSON layout; bumped on any incompatible change.
pub const REPORT_SCHEMA_VERSION: u32 = 1;

/// Everything a report shows about one analysis.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AnalysisReport {
    /// Always [`REPORT_SCHEMA_VERSION`].
    pub report_schema_version: u32,
    /// What was analysed.
    pub subject: Subject,
    /// The answer and why, for the banner.
    pub banner: Banner,
    /// Looks, flag changes and manual actions, oldest first.
    pub timeline: Vec<TimelineEvent>,
    /// The latest look's per-metric results, in profile order.
    pub metrics: Vec<MetricRow>,
    /// Each metric's central values at every look, for the over-time charts.
    pub history: Vec<MetricHistory>,
}

/// What was analysed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Subject {
    /// The analysis id (none for `canary analyze`).
    pub analysis_id: Option<String>,
    /// The profile's name.
    pub profile: String,
    /// The feature flag (none for `canary analyze`).
    pub flag: Option<String>,
    /// The analysis state (`promoted`, `rolled_back`, ...; `analyzed` for `canary analyze`);
    /// a dry run says what it would have done: `would_promote`, `would_roll_back`.
    pub state: String,
    /// Judged and recorded only, never actuated.
    pub dry_run: bool,
    /// When it was submitted, Unix seconds.
    pub created_at: Option<f64>,
    /// When it last changed, Unix seconds.
    pub updated_at: Option<f64>,
    /// The per-metric confidence level of the latest look.
    pub confidence_level: Option<f64>,
    /// The multiple-comparison correction of the latest look.
    pub multiple_comparisons: Option<String>,
}

/// The verdict banner.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Banner {
    /// `promote`, `hold` or `rollback`: the final word when the analysis ended, else
    /// the latest look's verdict; none before the first look.
    pub verdict: Option<Verdict>,
    /// One line: what happened.
    pub headline: String,
    /// The score of the latest look, 0–100.
    pub score: Option<f64>,
    /// Why, in plain language, deciding reasons first.
    pub reasons: Vec<String>,
    /// One sentence per metric that decided (failed, or held the verdict), with its numbers.
    pub deciding_metrics: Vec<String>,
}

/// One event of the timeline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum TimelineEvent {
    /// A look: one judgement and what the runner did.
    Look {
        /// Unix seconds.
        at: f64,
        /// 1-based look number.
        look: u64,
        /// 0-based stage index.
        stage_index: usize,
        /// The stage's name.
        stage: String,
        /// The canary's traffic in percent.
        traffic: Option<f64>,
        /// The look's verdict.
        verdict: Verdict,
        /// What the runner decided, in words (`advance to 25%`).
        decision: String,
        /// Why, deciding reasons first.
        reasons: Vec<String>,
        /// Every trigger checked at this look, in plan order (empty for looks recorded
        /// before triggers were reported, and for stages no trigger applies to).
        #[serde(default)]
        triggers: Vec<TriggerRow>,
    },
    /// A flag change.
    Actuation {
        /// Unix seconds (when it was intended).
        at: f64,
        /// `set_rollout` or `kill`.
        action: String,
        /// Target traffic in percent.
        target: f64,
        /// `intended`, `applied`, `failed`, ...
        state: String,
        /// What the actuator said.
        detail: Option<String>,
    },
    /// A person's action.
    Manual {
        /// Unix seconds.
        at: f64,
        /// Who.
        actor: String,
        /// `pause`, `resume`, `promote` or `rollback`.
        action: String,
        /// Why.
        reason: String,
        /// State before.
        from_state: String,
        /// State after.
        to_state: String,
    },
}

impl TimelineEvent {
    /// When it happened, Unix seconds.
    pub fn at(&self) -> f64 {
        match self {
            TimelineEvent::Look { at, .. }
            | TimelineEvent::Actuation { at, .. }
            | TimelineEvent::Manual { at, .. } => *at,
        }
    }
}

/// One trigger's check at one look, as the runner recorded it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TriggerRow {
    /// The trigger's name.
    #[serde(default)]
    pub name: String,
    /// The metric it watches.
    #[serde(default)]
    pub metric: String,
    /// Whether its condition held at this look (it fired).
    #[serde(default)]
    pub met: bool,
    /// What it does when it fires: `rollback` or `hold`.
    #[serde(default)]
    pub action: String,
    /// The canary value compared (latest point, window aggregate, or the least breaching
    /// point of a sustained check).
    #[serde(default)]
    pub value: Option<f64>,
    /// The limit it was compared with (for relative triggers: baseline × factor).
    #[serde(default)]
    pub limit: Option<f64>,
    /// Why, with the numbers.
    #[serde(default)]
    pub reason: String,
}

/// A limit relative to the baseline that the profile sets on a comparative metric, in
/// the metric's own unit at the latest look: what the charts mark beside absolute
/// thresholds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RelativeLimit {
    /// The profile key: `allowed_increase`, `allowed_decrease` (continuous) or
    /// `max_ratio`, `min_ratio` (proportion).
    pub rule: String,
    /// Its value in the profile (a fraction for `allowed_*`, a factor for `*_ratio`).
    pub setting: f64,
    /// The baseline statistic it is relative to: `median` (continuous) or `rate`.
    pub baseline_statistic: String,
    /// That statistic at the latest look.
    pub baseline_value: f64,
    /// The limit it implies: baseline median × (1 + allowed_increase), × (1 −
    /// allowed_decrease), or baseline rate × max_ratio, × min_ratio. A metric fails only
    /// when its change is significant *and* its estimate is beyond this.
    pub limit: f64,
}

impl RelativeLimit {
    /// A short label for charts: `baseline median ×1.05 = 0.1957`.
    pub fn label(&self) -> String {
        let factor = match self.rule.as_str() {
            "allowed_increase" => 1.0 + self.setting,
            "allowed_decrease" => 1.0 - self.setting,
            _ => self.setting,
        };
        let value = if self.baseline_statistic == "rate" {
            percent(self.limit)
        } else {
            number(self.limit)
        };
        format!(
            "baseline {} ×{} = {value}",
            self.baseline_statistic,
            number(factor)
        )
    }
}

/// One side's summary, as the judge computed it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SideRow {
    /// Samples used (total events for count data).
    pub n: u64,
    /// Mean (the rate for count data).
    #[serde(default)]
    pub mean: Option<f64>,
    /// Median (none for count data).
    #[serde(default)]
    pub median: Option<f64>,
    /// 95th percentile (none for count data).
    #[serde(default)]
    pub p95: Option<f64>,
    /// 99th percentile (none for count data).
    #[serde(default)]
    pub p99: Option<f64>,
    /// Smallest sample (none for count data).
    #[serde(default)]
    pub min: Option<f64>,
    /// Largest sample (none for count data).
    #[serde(default)]
    pub max: Option<f64>,
    /// Error count (count data).
    #[serde(default)]
    pub errors: Option<u64>,
    /// Total events (count data).
    #[serde(default)]
    pub total: Option<u64>,
}

/// The absolute limits of a threshold metric.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ThresholdRow {
    /// The statistic compared.
    pub statistic: String,
    /// Its canary value.
    #[serde(default)]
    pub value: Option<f64>,
    /// Lower limit.
    #[serde(default)]
    pub min: Option<f64>,
    /// Upper limit.
    #[serde(default)]
    pub max: Option<f64>,
}

/// One metric of the latest look.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetricRow {
    /// The metric's name.
    pub name: String,
    /// `continuous`, `proportion` or `threshold`.
    pub kind: String,
    /// `critical`, `warning` or `normal`.
    pub severity: String,
    /// `pass`, `fail`, `inconclusive` or `error`.
    pub classification: String,
    /// Why, with the numbers; for inconclusive metrics, what was missing.
    pub reason: String,
    /// Baseline summary.
    #[serde(default)]
    pub baseline: Option<SideRow>,
    /// Canary summary.
    #[serde(default)]
    pub canary: Option<SideRow>,
    /// The main effect size in words (`median ×1.23`, `rate ×5.8 [×3.1, ×9.7]`).
    #[serde(default)]
    pub effect: Option<String>,
    /// The judge's effect sizes as it wrote them.
    #[serde(default)]
    pub effect_size: Option<EffectSize>,
    /// The test behind `p_value`.
    #[serde(default)]
    pub test: Option<String>,
    /// Raw p-value.
    #[serde(default)]
    pub p_value: Option<f64>,
    /// p-value after the multiple-comparison correction.
    #[serde(default)]
    pub adjusted_p_value: Option<f64>,
    /// Canary − baseline.
    #[serde(default)]
    pub shift_estimate: Option<f64>,
    /// Interval for the shift at the confidence level.
    #[serde(default)]
    pub shift_ci: Option<[f64; 2]>,
    /// The shift relative to the baseline median (continuous metrics).
    #[serde(default)]
    pub relative_shift: Option<f64>,
    /// Absolute limits (thresholds only).
    #[serde(default)]
    pub threshold: Option<ThresholdRow>,
    /// Limits relative to the baseline that the profile sets (`allowed_increase`,
    /// `max_ratio`, ...), in the bad direction(s); empty when the report was built
    /// without the profile.
    #[serde(default)]
    pub relative_limits: Vec<RelativeLimit>,
    /// The anytime-valid evidence of the sequential judge (staged rollouts in
    /// `sequential` mode): each check's e-value, the threshold it had to reach, its share
    /// of the error budget, whether it crossed, the estimate and, for bursts, the worst
    /// window. Absent for one-shot and fixed-mode analyses.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sequential: Option<SequentialEvidence>,
    /// The host-spread allowance a fixed-mode look tested the location beyond, when the
    /// metric's series named their instances (sequential checks carry theirs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_allowance: Option<crate::judge::hosts::HostAllowance>,
}

/// `value` when it is a number JSON can hold (what a report shows), absent otherwise.
fn finite(value: f64) -> Option<f64> {
    value.is_finite().then_some(value)
}

impl MetricRow {
    /// The row of one judge result (its effect sentence and relative limits are filled
    /// in later).
    fn of(result: &MetricResult) -> MetricRow {
        MetricRow {
            name: result.name.clone(),
            kind: result.kind.to_string(),
            severity: snake(&result.severity),
            classification: snake(&result.classification),
            reason: result.reason.clone(),
            baseline: result.baseline.as_ref().map(SideRow::of),
            canary: result.canary.as_ref().map(SideRow::of),
            effect: None,
            effect_size: result.effect_size.clone(),
            test: result.test.as_ref().map(ToString::to_string),
            p_value: result.p_value.and_then(finite),
            adjusted_p_value: result.adjusted_p_value.and_then(finite),
            shift_estimate: result.shift_estimate.and_then(finite),
            shift_ci: result.shift_ci,
            relative_shift: result.relative_shift.and_then(finite),
            threshold: result.threshold.as_ref().map(ThresholdRow::of),
            relative_limits: Vec::new(),
            sequential: result.sequential.clone(),
            host_allowance: result.host_allowance,
        }
    }
}

impl SideRow {
    fn of(side: &SideSummary) -> SideRow {
        SideRow {
            n: side.n,
            mean: finite(side.mean),
            median: side.median.and_then(finite),
            p95: side.p95.and_then(finite),
            p99: side.p99.and_then(finite),
            min: side.min.and_then(finite),
            max: side.max.and_then(finite),
            errors: side.errors,
            total: side.total,
        }
    }
}

impl ThresholdRow {
    fn of(check: &ThresholdCheck) -> ThresholdRow {
        ThresholdRow {
            statistic: check.statistic.clone(),
            value: finite(check.value),
            min: check.min.and_then(finite),
            max: check.max.and_then(finite),
        }
    }
}

impl TriggerRow {
    fn of(check: &TriggerCheck) -> TriggerRow {
        TriggerRow {
            name: check.name.clone(),
            metric: check.metric.clone(),
            met: check.met,
            action: snake(&check.action),
            value: check.value.and_then(finite),
            limit: check.limit.and_then(finite),
            reason: check.reason.clone(),
        }
    }
}

/// One metric's central values at every look.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetricHistory {
    /// The metric.
    pub name: String,
    /// What the values are: `median`, `mean` or `rate`.
    pub statistic: String,
    /// One point per look that had the metric.
    pub points: Vec<HistoryPoint>,
    /// Threshold limits to mark on the chart.
    pub limits: Vec<f64>,
}

/// A metric's central values at one look.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HistoryPoint {
    /// 1-based look number.
    pub look: u64,
    /// Unix seconds.
    pub at: f64,
    /// Baseline value.
    pub baseline: Option<f64>,
    /// Canary value.
    pub canary: Option<f64>,
}

/// The raw data behind one report, for charts only: never part of the JSON.
#[derive(Debug, Clone, Default)]
pub struct ChartData {
    /// Per metric name: the baseline and canary series as (time, value) points.
    pub series: Vec<RawSeries>,
}

/// One metric's raw series on both sides.
#[derive(Debug, Clone, Default)]
pub struct RawSeries {
    /// The metric.
    pub name: String,
    /// Baseline points (time, value); for count data the per-point rate.
    pub baseline: Vec<(f64, f64)>,
    /// Canary points.
    pub canary: Vec<(f64, f64)>,
    /// When the points are the looks' downsampled copies: each side's distribution as
    /// CDF points (value, share at or below), merged from the looks' rank values (the
    /// ECDF of min/max-downsampled points would overweight the extremes). None when
    /// the points are all the data.
    pub distribution: Option<[Vec<(f64, f64)>; 2]>,
    /// When the points are downsampled: how many each side had before.
    pub counted: Option<[u64; 2]>,
}

impl ChartData {
    /// Per-point values of every metric in `baseline` and `canary` (rates for counts).
    pub fn from_observations(baseline: &Observations, canary: &Observations) -> ChartData {
        use crate::domain::MetricData;
        let points = |data: Option<&MetricData>| -> Vec<(f64, f64)> {
            match data {
                Some(MetricData::Samples { samples, .. }) => samples
                    .iter()
                    .filter(|s| s.value.is_finite())
                    .map(|s| (s.timestamp, s.value))
                    .collect(),
                Some(MetricData::Counts { errors, total, .. }) => errors
                    .iter()
                    .zip(total)
                    .filter(|(e, t)| e.value.is_finite() && t.value.is_finite() && t.value > 0.0)
                    .map(|(e, t)| (t.timestamp, e.value / t.value))
                    .collect(),
                None => Vec::new(),
            }
        };
        let mut names: Vec<&String> = baseline
            .metrics
            .keys()
            .chain(canary.metrics.keys())
            .collect();
        names.sort();
        names.dedup();
        ChartData {
            series: names
                .into_iter()
                .map(|name| RawSeries {
                    name: name.clone(),
                    baseline: points(baseline.metrics.get(name)),
                    canary: points(canary.metrics.get(name)),
                    distribution: None,
                    counted: None,
                })
                .collect(),
        }
    }

    /// The series the looks of a rollout kept ([`LookSeries`], oldest look first): each
    /// side's downsampled points joined in time, and its distribution merged from the
    /// looks' rank values. Looks recorded before series were kept add nothing; with no
    /// series at all the charts fall back to one point per look.
    pub fn from_look_series<'a>(looks: impl IntoIterator<Item = &'a LookSeries>) -> ChartData {
        let looks: Vec<&LookSeries> = looks.into_iter().collect();
        let mut names: Vec<&String> = looks.iter().flat_map(|l| l.metrics.keys()).collect();
        names.sort();
        names.dedup();
        let series = names
            .into_iter()
            .map(|name| {
                let sides: Vec<_> = looks
                    .iter()
                    .filter_map(|look| look.metrics.get(name).map(|m| (look.from, m)))
                    .collect();
                let points = |pick: fn(&MetricSeries) -> &SideSeries| {
                    let mut points: Vec<(f64, f64)> = sides
                        .iter()
                        .flat_map(|(from, metric)| {
                            pick(metric).points.iter().map(move |&(t, v)| (from + t, v))
                        })
                        .collect();
                    points.sort_by(|a, b| a.0.total_cmp(&b.0));
                    points
                };
                let counted = |pick: fn(&MetricSeries) -> &SideSeries| {
                    sides.iter().map(|(_, metric)| pick(metric).n).sum::<u64>()
                };
                RawSeries {
                    name: name.clone(),
                    baseline: points(baseline_of),
                    canary: points(canary_of),
                    distribution: Some([
                        merged_cdf(sides.iter().map(|(_, m)| &m.baseline)),
                        merged_cdf(sides.iter().map(|(_, m)| &m.canary)),
                    ]),
                    counted: Some([counted(baseline_of), counted(canary_of)]),
                }
            })
            .collect();
        ChartData { series }
    }

    /// [`Self::from_look_series`] of stored looks (their bodies' `series`), in look
    /// order; bodies without one (older looks) are skipped.
    pub fn from_looks(looks: &[LookRecord]) -> ChartData {
        let mut looks: Vec<&LookRecord> = looks.iter().collect();
        looks.sort_by_key(|l| l.look);
        let series: Vec<LookSeries> = looks.iter().map(|look| look.body.series.clone()).collect();
        ChartData::from_look_series(&series)
    }

    /// The raw series of `name`, if any.
    pub fn get(&self, name: &str) -> Option<&RawSeries> {
        self.series.iter().find(|s| s.name == name)
    }
}

fn baseline_of(metric: &MetricSeries) -> &SideSeries {
    &metric.baseline
}

fn canary_of(metric: &MetricSeries) -> &SideSeries {
    &metric.canary
}

/// What `canary run` knows about its rollout, for [`AnalysisReport::from_run`].
pub struct RunFacts<'a> {
    /// The profile's name.
    pub profile: &'a str,
    /// The flag.
    pub flag: &'a str,
    /// The rollout status in snake_case: `promoted`, `rolled_back`, `awaiting_review`,
    /// `running`.
    pub state: &'a str,
    /// The final verdict.
    pub verdict: Verdict,
    /// Judged and recorded only.
    pub dry_run: bool,
    /// Why, deciding reasons first.
    pub reasons: &'a [String],
    /// Every look.
    pub history: &'a [crate::scheduler::Look],
    /// Every flag change.
    pub actuations: &'a [crate::scheduler::Actuation],
}

impl AnalysisReport {
    /// The report of one `canary analyze` judgement.
    pub fn from_judgement(judgement: &Judgement) -> AnalysisReport {
        let metrics = finish_rows(judgement.metrics.iter().map(MetricRow::of).collect());
        let confidence_level = finite(judgement.confidence_level);
        let deciding_metrics = deciding(&metrics, confidence_level);
        AnalysisReport {
            report_schema_version: REPORT_SCHEMA_VERSION,
            subject: Subject {
                analysis_id: None,
                profile: judgement.profile.clone(),
                flag: None,
                state: "analyzed".to_owned(),
                dry_run: true,
                created_at: None,
                updated_at: None,
                confidence_level,
                multiple_comparisons: Some(snake(&judgement.multiple_comparisons)),
            },
            banner: Banner {
                headline: format!("canary analyze under profile {}", judgement.profile),
                verdict: Some(judgement.verdict),
                score: judgement.score.and_then(finite),
                reasons: judgement.reasons.clone(),
                deciding_metrics,
            },
            timeline: Vec::new(),
            history: Vec::new(),
            metrics,
        }
    }

    /// The report of a stored analysis from its looks, flag changes and audit log.
    pub fn from_analysis(
        analysis: &Analysis,
        looks: &[LookRecord],
        actuations: &[ActuationRecord],
        audit: &[AuditEntry],
    ) -> AnalysisReport {
        let mut looks: Vec<&LookRecord> = looks.iter().collect();
        looks.sort_by_key(|l| l.look);

        let timeline = timeline(&looks, actuations, audit);

        let latest = looks.last().map(|record| &record.body.judgement);
        let confidence_level = latest.and_then(|j| finite(j.confidence_level));
        let metrics = latest
            .map(|j| finish_rows(j.metrics.iter().map(MetricRow::of).collect()))
            .unwrap_or_default();
        let history = history(&looks, &metrics);

        let state = snake(&analysis.state);
        let verdict = match state.as_str() {
            "promoted" => Some(Verdict::Promote),
            "rolled_back" | "rollback_failed" => Some(Verdict::Rollback),
            _ => analysis
                .latest_verdict
                .or_else(|| latest.map(|j| j.verdict)),
        };
        let headline = headline(analysis, &state, verdict);
        let mut reasons = analysis.reasons.clone();
        if reasons.is_empty()
            && let Some(j) = latest
        {
            reasons = j.reasons.clone();
        }
        // A dry run changed nothing: its state says what a real run would have done.
        let state = match (state.as_str(), analysis.dry_run) {
            ("promoted", true) => "would_promote".to_owned(),
            ("rolled_back", true) => "would_roll_back".to_owned(),
            _ => state,
        };
        let report = AnalysisReport {
            report_schema_version: REPORT_SCHEMA_VERSION,
            subject: Subject {
                analysis_id: Some(analysis.id.to_string()),
                profile: analysis.profile_name.clone(),
                flag: Some(analysis.flag.clone()),
                state,
                dry_run: analysis.dry_run,
                created_at: Some(analysis.created_at),
                updated_at: Some(analysis.updated_at),
                confidence_level,
                multiple_comparisons: latest.map(|j| snake(&j.multiple_comparisons)),
            },
            banner: Banner {
                verdict,
                headline,
                score: latest.and_then(|j| j.score.and_then(finite)),
                reasons,
                deciding_metrics: deciding(&metrics, confidence_level),
            },
            timeline,
            metrics,
            history,
        };
        // The snapshot was validated when the analysis was submitted; a report of one
        // that no longer parses (an older profile syntax) just marks no relative limits.
        match Profile::parse(&analysis.profile_text, "the analysis's profile snapshot") {
            Ok(profile) => report.with_relative_limits(&profile),
            Err(_) => report,
        }
    }

    /// Fills in each comparative metric's [`RelativeLimit`]s from `profile` and the
    /// latest look's baseline: continuous metrics' `allowed_increase` /
    /// `allowed_decrease` on the baseline median, proportions' `max_ratio` /
    /// `min_ratio` on the baseline rate, in the metric's bad direction(s).
    pub fn with_relative_limits(mut self, profile: &Profile) -> AnalysisReport {
        for row in &mut self.metrics {
            row.relative_limits = profile
                .metric(&row.name)
                .map(|spec| relative_limits(&spec.kind, row.baseline.as_ref()))
                .unwrap_or_default();
        }
        self
    }

    /// The report of a `canary run` rollout from its looks and flag changes in memory.
    /// `state` is the rollout's status in snake_case (`promoted`, `rolled_back`, ...).
    pub fn from_run(run: &RunFacts<'_>) -> AnalysisReport {
        let id = uuid::Uuid::nil();
        let looks: Vec<LookRecord> = run
            .history
            .iter()
            .map(|look| LookRecord::of(id, look))
            .collect();
        let actuations: Vec<ActuationRecord> = run
            .actuations
            .iter()
            .map(|actuation| ActuationRecord {
                analysis_id: id,
                idempotency_key: String::new(),
                action: actuation.action.clone(),
                target: actuation.target.value(),
                state: crate::store::ActuationState::Applied,
                detail: if actuation.dry_run {
                    Some("dry run: recorded, not applied".to_owned())
                } else {
                    actuation.state.as_ref().map(|state| {
                        format!(
                            "read back: {}, {}%",
                            if state.enabled { "on" } else { "off" },
                            number(state.rollout.value())
                        )
                    })
                },
                at: actuation.at,
                completed_at: None,
            })
            .collect();
        let first = looks
            .first()
            .map(|l| l.at)
            .into_iter()
            .chain(actuations.first().map(|a| a.at))
            .fold(f64::INFINITY, f64::min);
        let last = looks.last().map_or(first, |l| l.at);
        let state = run
            .state
            .parse()
            .unwrap_or(crate::store::AnalysisState::Running);
        let analysis = Analysis {
            id,
            profile_name: run.profile.to_owned(),
            profile_text: String::new(),
            flag: run.flag.to_owned(),
            source: String::new(),
            actuator: String::new(),
            baseline_scope: String::new(),
            canary_scope: String::new(),
            dry_run: run.dry_run,
            start_at: None,
            state,
            current_stage: run.history.last().map(|r| r.stage_index),
            traffic: run.history.last().map(|r| r.traffic.value()),
            latest_verdict: Some(run.verdict),
            reasons: run.reasons.to_vec(),
            runner_state: Snapshot::None,
            next_look_at: None,
            version: 0,
            lease_owner: None,
            lease_expires_at: None,
            created_at: if first.is_finite() { first } else { 0.0 },
            updated_at: if last.is_finite() { last } else { 0.0 },
            requested_action: None,
            owner: None,
            adopt: false,
            submit_key: None,
        };
        let mut report = AnalysisReport::from_analysis(&analysis, &looks, &actuations, &[]);
        report.subject.analysis_id = None;
        report
    }

    /// Pretty-printed JSON with a trailing newline.
    pub fn to_json(&self) -> String {
        let mut text = serde_json::to_string_pretty(self)
            .expect("a report always serializes: it holds only strings, numbers and lists");
        text.push('\n');
        text
    }
}

/// The looks, flag changes and manual actions of an analysis in time order.
fn timeline(
    looks: &[&LookRecord],
    actuations: &[ActuationRecord],
    audit: &[AuditEntry],
) -> Vec<TimelineEvent> {
    let mut timeline = Vec::new();
    for record in looks {
        let body = &record.body;
        timeline.push(TimelineEvent::Look {
            at: record.at,
            look: record.look,
            stage_index: record.stage_index,
            stage: body.stage.clone(),
            traffic: finite(body.traffic.value()),
            verdict: record.verdict,
            decision: decision_words(&body.decision),
            reasons: body.reasons.clone(),
            triggers: body.triggers.iter().map(TriggerRow::of).collect(),
        });
    }
    for actuation in actuations {
        timeline.push(TimelineEvent::Actuation {
            at: actuation.at,
            action: actuation.action.clone(),
            target: actuation.target,
            state: snake(&actuation.state),
            detail: actuation.detail.clone(),
        });
    }
    for entry in audit {
        timeline.push(TimelineEvent::Manual {
            at: entry.at,
            actor: entry.actor.clone(),
            action: snake(&entry.action),
            reason: entry.reason.clone(),
            from_state: snake(&entry.from_state),
            to_state: snake(&entry.to_state),
        });
    }
    // A stable sort keeps a look before the flag change it caused at the same time.
    timeline.sort_by(|a, b| a.at().total_cmp(&b.at()));
    timeline
}

/// The banner's headline for an analysis in `state` whose latest verdict is `verdict`.
fn headline(analysis: &Analysis, state: &str, verdict: Option<Verdict>) -> String {
    let headline = match (state, analysis.dry_run) {
        ("promoted", true) => {
            format!("Would promote (dry run): {} was not changed", analysis.flag)
        }
        ("rolled_back", true) => format!(
            "Would roll back (dry run): {} was not changed",
            analysis.flag
        ),
        _ => String::new(),
    };
    match state {
        _ if !headline.is_empty() => headline,
        "promoted" => format!("Promoted: {} is at 100%", analysis.flag),
        "rolled_back" => format!("Rolled back: {} was switched off", analysis.flag),
        "rollback_failed" => format!(
            "ROLLBACK FAILED: {} may still serve canary traffic",
            analysis.flag
        ),
        "awaiting_review" => "Awaiting review: a person decides".to_owned(),
        "failed" => "Failed: the analysis could not run".to_owned(),
        "paused" => "Paused by a person".to_owned(),
        "pending" => "Pending: no look yet".to_owned(),
        _ => match (verdict, analysis.traffic) {
            (Some(v), Some(traffic)) => format!(
                "Running at {}% traffic; latest look: {}",
                number(traffic),
                v.as_str().to_uppercase()
            ),
            _ => "Running".to_owned(),
        },
    }
}

/// The snake_case name serde gives a unit enum variant.
fn snake<T: Serialize>(value: &T) -> String {
    match serde_json::to_value(value) {
        Ok(serde_json::Value::String(text)) => text,
        Ok(other) => other.to_string(),
        Err(_) => String::new(),
    }
}

/// The decision in the timeline's words: `advance to 5%`, `reduce traffic to 10%`,
/// `await review`.
fn decision_words(decision: &Decision) -> String {
    match decision {
        Decision::Advance { to } => format!("advance to {}%", number(to.value())),
        Decision::ReduceTraffic { to } => format!("reduce traffic to {}%", number(to.value())),
        other => other.name().replace('_', " "),
    }
}

/// Fills in the effect-size sentence of each row.
fn finish_rows(mut rows: Vec<MetricRow>) -> Vec<MetricRow> {
    for row in &mut rows {
        row.effect = effect_words(row);
    }
    rows
}

/// A proportion's rate ratio and its interval, when the judge estimated them.
fn rate_ratio(effect: &Option<EffectSize>) -> Option<(f64, Option<[f64; 2]>)> {
    match effect {
        Some(EffectSize::Proportion {
            rate_ratio,
            rate_ratio_ci,
            ..
        }) => Some((
            rate_ratio.and_then(finite)?,
            rate_ratio_ci.filter(|[low, high]| low.is_finite() && high.is_finite()),
        )),
        _ => None,
    }
}

fn effect_words(row: &MetricRow) -> Option<String> {
    if let Some((ratio, interval)) = rate_ratio(&row.effect_size) {
        return Some(match interval {
            Some([low, high]) => format!(
                "rate ×{} [×{}, ×{}]",
                number(ratio),
                number(low),
                number(high)
            ),
            None => format!("rate ×{}", number(ratio)),
        });
    }
    let Some(EffectSize::Continuous {
        mean_ratio,
        median_ratio,
        probability_of_superiority,
    }) = &row.effect_size
    else {
        return None;
    };
    if let Some(ratio) = median_ratio.and_then(finite) {
        return Some(format!("median ×{}", number(ratio)));
    }
    if let Some(ratio) = mean_ratio.and_then(finite) {
        return Some(format!("mean ×{}", number(ratio)));
    }
    finite(*probability_of_superiority).map(|p| format!("P(canary > baseline) {}", number(p)))
}

/// One plain-language sentence per metric that decided the verdict: the failures, or
/// when none failed, the metrics that held it.
fn deciding(metrics: &[MetricRow], confidence_level: Option<f64>) -> Vec<String> {
    let failed: Vec<&MetricRow> = metrics
        .iter()
        .filter(|m| m.classification == "fail")
        .collect();
    let chosen: Vec<&MetricRow> = if failed.is_empty() {
        metrics
            .iter()
            .filter(|m| m.classification == "inconclusive" || m.classification == "error")
            .collect()
    } else {
        failed
    };
    chosen
        .into_iter()
        .map(|m| metric_sentence(m, confidence_level))
        .collect()
}

/// "error_rate 2.3% vs 0.4% baseline, ×5.8, 99% CI ×3.1–×9.7, critical".
pub fn metric_sentence(metric: &MetricRow, confidence_level: Option<f64>) -> String {
    let level =
        confidence_level.map_or_else(String::new, |l| format!("{}% ", confidence_percent(l)));
    let name = &metric.name;
    let severity = &metric.severity;
    if metric.classification == "inconclusive" || metric.classification == "error" {
        return format!("{name}: {} ({})", metric.reason, metric.classification);
    }
    if let Some(threshold) = &metric.threshold {
        let limits = match (threshold.min, threshold.max) {
            (Some(min), Some(max)) => format!("allowed {}–{}", number(min), number(max)),
            (None, Some(max)) => format!("limit {}", number(max)),
            (Some(min), None) => format!("minimum {}", number(min)),
            (None, None) => "no limit".to_owned(),
        };
        return format!(
            "{name} {} {} ({limits}), {severity}",
            threshold.statistic,
            threshold.value.map_or_else(|| "n/a".to_owned(), number)
        );
    }
    let base = metric.baseline.as_ref();
    let canary = metric.canary.as_ref();
    if metric.kind == "proportion" {
        let rate = |side: Option<&SideRow>| {
            side.and_then(|s| s.mean)
                .map_or_else(|| "n/a".to_owned(), percent)
        };
        let mut text = format!("{name} {} vs {} baseline", rate(canary), rate(base));
        if let Some((ratio, interval)) = rate_ratio(&metric.effect_size) {
            text.push_str(&format!(", ×{}", number(ratio)));
            if let Some([low, high]) = interval {
                text.push_str(&format!(", {level}CI ×{}–×{}", number(low), number(high)));
            }
        }
        text.push_str(&format!(", {severity}"));
        return text;
    }
    let centre = |side: Option<&SideRow>| {
        side.and_then(|s| s.median.or(s.mean))
            .map_or_else(|| "n/a".to_owned(), number)
    };
    let mut text = format!(
        "{name} median {} vs {} baseline",
        centre(canary),
        centre(base)
    );
    if let Some(shift) = metric.shift_estimate {
        text.push_str(&format!(", shift {}", signed(shift)));
        if let Some(relative) = metric.relative_shift {
            text.push_str(&format!(" ({})", signed_percent(relative)));
        }
        if let Some([low, high]) = metric.shift_ci {
            text.push_str(&format!(", {level}CI {} to {}", signed(low), signed(high)));
        }
    }
    text.push_str(&format!(", {severity}"));
    text
}

/// The limits `kind` sets relative to `baseline`, in its bad direction(s).
fn relative_limits(kind: &MetricKind, baseline: Option<&SideRow>) -> Vec<RelativeLimit> {
    let Some(baseline) = baseline else {
        return Vec::new();
    };
    let limit = |rule: &str, setting: f64, statistic: &str, value: Option<f64>, factor: f64| {
        value
            .filter(|v| v.is_finite() && factor.is_finite())
            .map(|value| RelativeLimit {
                rule: rule.to_owned(),
                setting,
                baseline_statistic: statistic.to_owned(),
                baseline_value: value,
                limit: value * factor,
            })
    };
    let direction = match kind {
        MetricKind::Continuous(ContinuousKind { direction, .. })
        | MetricKind::Proportion(ProportionKind { direction, .. }) => *direction,
        MetricKind::Threshold(_) => return Vec::new(),
    };
    let up = matches!(direction, Direction::Increase | Direction::Either);
    let down = matches!(direction, Direction::Decrease | Direction::Either);
    match kind {
        MetricKind::Continuous(ContinuousKind {
            allowed_increase,
            allowed_decrease,
            ..
        }) => [
            up.then(|| {
                limit(
                    "allowed_increase",
                    *allowed_increase,
                    "median",
                    baseline.median,
                    1.0 + allowed_increase,
                )
            }),
            down.then(|| {
                limit(
                    "allowed_decrease",
                    *allowed_decrease,
                    "median",
                    baseline.median,
                    1.0 - allowed_decrease,
                )
            }),
        ]
        .into_iter()
        .flatten()
        .flatten()
        .collect(),
        MetricKind::Proportion(ProportionKind {
            max_ratio,
            min_ratio,
            ..
        }) => [
            max_ratio
                .filter(|_| up)
                .and_then(|ratio| limit("max_ratio", ratio, "rate", baseline.mean, ratio)),
            min_ratio
                .filter(|_| down)
                .and_then(|ratio| limit("min_ratio", ratio, "rate", baseline.mean, ratio)),
        ]
        .into_iter()
        .flatten()
        .collect(),
        MetricKind::Threshold(_) => Vec::new(),
    }
}

/// Each metric's central value per look: the median for samples, the rate for counts,
/// the checked statistic for thresholds.
fn history(looks: &[&LookRecord], metrics: &[MetricRow]) -> Vec<MetricHistory> {
    metrics
        .iter()
        .map(|metric| {
            let mut statistic = String::from("median");
            let points = looks
                .iter()
                .filter_map(|record| {
                    let judgement = &record.body.judgement;
                    let row = judgement.metrics.iter().find(|m| m.name == metric.name)?;
                    let centre = |side: &Option<SideSummary>| {
                        side.as_ref().and_then(|s| {
                            let mean = finite(s.mean);
                            if s.total.is_some() {
                                mean
                            } else {
                                s.median.and_then(finite).or(mean)
                            }
                        })
                    };
                    if row.baseline.as_ref().is_some_and(|s| s.total.is_some())
                        || row.canary.as_ref().is_some_and(|s| s.total.is_some())
                    {
                        statistic = "rate".to_owned();
                    }
                    Some(HistoryPoint {
                        look: record.look,
                        at: record.at,
                        baseline: centre(&row.baseline),
                        canary: centre(&row.canary),
                    })
                })
                .collect();
            let limits = metric
                .threshold
                .as_ref()
                .map(|t| t.min.into_iter().chain(t.max).collect())
                .unwrap_or_default();
            MetricHistory {
                name: metric.name.clone(),
                statistic,
                points,
                limits,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::look_series::{MetricSeries, SideSeries};
    use crate::scheduler::Look;

    /// A stored look with `series` (none: a look recorded before series were kept).
    fn stored_look(look: u64, series: Option<LookSeries>) -> LookRecord {
        let at = 1_000.0 + 60.0 * look as f64;
        LookRecord {
            analysis_id: uuid::Uuid::nil(),
            look,
            at,
            stage_index: 0,
            verdict: Verdict::Promote,
            decision: "continue".to_owned(),
            body: Look {
                look,
                at,
                stage_index: 0,
                stage: "1%".to_owned(),
                traffic: crate::domain::Percentage::parse(1.0).unwrap(),
                confidence_level: 0.99,
                verdict: crate::domain::Verdict::Promote,
                decision: Decision::Continue,
                reasons: Vec::new(),
                judgement: Judgement {
                    verdict: crate::domain::Verdict::Promote,
                    reasons: Vec::new(),
                    score: Some(100.0),
                    profile: "p".to_owned(),
                    confidence_level: 0.99,
                    multiple_comparisons: crate::stats::multiple_testing::Correction::Holm,
                    metrics: Vec::new(),
                    group_scores: None,
                },
                triggers: Vec::new(),
                series: series.unwrap_or_default(),
            },
        }
    }

    fn look_series(from: f64, baseline: &[(f64, f64)], canary: &[(f64, f64)]) -> LookSeries {
        LookSeries {
            from,
            metrics: [(
                "latency".to_owned(),
                MetricSeries {
                    baseline: SideSeries::from_points(baseline, from),
                    canary: SideSeries::from_points(canary, from),
                },
            )]
            .into(),
        }
    }

    #[test]
    fn charts_from_stored_looks_join_their_points_in_time_and_skip_older_looks() {
        let many: Vec<(f64, f64)> = (1..=600)
            .map(|i| (1_060.0 + f64::from(i) / 10.0, 1.0))
            .collect();
        let looks = vec![
            // Stored out of order: the report sorts by look number.
            stored_look(2, Some(look_series(1_060.0, &many, &[(1_090.0, 3.0)]))),
            stored_look(
                1,
                Some(look_series(1_000.0, &[(1_030.0, 2.0)], &[(1_030.0, 4.0)])),
            ),
            // A look recorded before series were kept.
            stored_look(3, None),
        ];
        let charts = ChartData::from_looks(&looks);
        let latency = charts.get("latency").expect("the metric is charted");
        assert_eq!(latency.canary, vec![(1_030.0, 4.0), (1_090.0, 3.0)]);
        assert_eq!(latency.baseline[0], (1_030.0, 2.0));
        assert!(latency.baseline.len() <= 61, "{}", latency.baseline.len());
        assert!(latency.baseline.windows(2).all(|w| w[0].0 <= w[1].0));
        assert_eq!(latency.counted, Some([601, 2]));
        let [baseline_cdf, canary_cdf] = latency.distribution.clone().unwrap();
        assert_eq!(canary_cdf, vec![(3.0, 0.0), (3.0, 0.5), (4.0, 1.0)]);
        // 600 ones and one two: the CDF is 600/601 at 1.
        assert_eq!(baseline_cdf[1], (1.0, 600.0 / 601.0));

        let none = ChartData::from_looks(&[stored_look(1, None)]);
        assert!(
            none.series.is_empty(),
            "old looks fall back to one point per look"
        );
    }

    #[test]
    fn relative_limits_follow_the_profile_in_the_bad_direction() {
        let side = |median: Option<f64>, mean: Option<f64>| SideRow {
            n: 100,
            mean,
            median,
            p95: None,
            p99: None,
            min: None,
            max: None,
            errors: None,
            total: None,
        };
        let continuous = |direction| {
            MetricKind::Continuous(ContinuousKind {
                direction,
                allowed_increase: 0.05,
                allowed_decrease: 0.2,
            })
        };
        let latency = side(Some(0.2), Some(0.25));
        let up = relative_limits(&continuous(Direction::Increase), Some(&latency));
        assert_eq!(up.len(), 1);
        assert_eq!(up[0].rule, "allowed_increase");
        assert!((up[0].limit - 0.21).abs() < 1e-12, "{}", up[0].limit);
        assert_eq!(up[0].label(), "baseline median ×1.05 = 0.21");
        let both = relative_limits(&continuous(Direction::Either), Some(&latency));
        assert_eq!(
            both.iter().map(|l| l.rule.as_str()).collect::<Vec<_>>(),
            ["allowed_increase", "allowed_decrease"]
        );
        assert!((both[1].limit - 0.16).abs() < 1e-12);

        let rate = side(None, Some(0.004));
        let proportion = |max_ratio, min_ratio| {
            MetricKind::Proportion(ProportionKind {
                direction: Direction::Either,
                max_ratio,
                min_ratio,
            })
        };
        let limits = relative_limits(&proportion(Some(1.5), Some(0.5)), Some(&rate));
        assert!((limits[0].limit - 0.006).abs() < 1e-12);
        assert_eq!(limits[0].label(), "baseline rate ×1.5 = 0.6%");
        assert!((limits[1].limit - 0.002).abs() < 1e-12);
        // No ratio set: a significant change fails whatever its size, so nothing to mark.
        assert!(relative_limits(&proportion(None, None), Some(&rate)).is_empty());
        // No baseline, no limit.
        assert!(relative_limits(&continuous(Direction::Increase), None).is_empty());
    }
}
