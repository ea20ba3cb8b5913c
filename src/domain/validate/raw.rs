//! The profile as TOML gives it: every key optional and loosely typed, each value with
//! its span in the text, so validation can name the line of a bad value. Unknown keys
//! are refused here (`deny_unknown_fields`).

use std::collections::BTreeMap;

use serde::Deserialize;
use toml::Spanned;

use crate::domain::plan::{Fallback, HoldOutcome, RollbackMode, StageBaseline, TriggerAction};
use crate::domain::profile::{
    Direction, EffectMeasure, JudgeAlgorithm, JudgeMode, KayentaNanStrategy, NanPolicy, Severity,
    ThresholdStatistic,
};
use crate::stats::multiple_testing::Correction;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(super) enum KindName {
    Continuous,
    Proportion,
    Threshold,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(super) enum OutlierMethodName {
    Keep,
    Iqr,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawProfile {
    pub(super) name: Option<Spanned<String>>,
    pub(super) description: Option<String>,
    pub(super) judge: Option<Spanned<RawJudge>>,
    #[serde(default)]
    pub(super) groups: BTreeMap<Spanned<String>, Spanned<RawGroup>>,
    #[serde(default)]
    pub(super) metrics: Vec<Spanned<RawMetric>>,
    #[serde(default)]
    pub(super) stages: Vec<Spanned<RawStage>>,
    #[serde(default)]
    pub(super) triggers: Vec<Spanned<RawTrigger>>,
    pub(super) rollout: Option<Spanned<RawRollout>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawJudge {
    pub(super) confidence_level: Option<Spanned<f64>>,
    pub(super) pass_score: Option<Spanned<f64>>,
    pub(super) marginal_score: Option<Spanned<f64>>,
    pub(super) multiple_comparisons: Option<Spanned<Correction>>,
    pub(super) mode: Option<Spanned<JudgeMode>>,
    pub(super) algorithm: Option<Spanned<JudgeAlgorithm>>,
    pub(super) host_spread: Option<Spanned<f64>>,
    pub(super) error_host_spread: Option<Spanned<f64>>,
    pub(super) instance_labels: Option<Spanned<Vec<String>>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawGroup {
    pub(super) weight: Option<Spanned<f64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawMetric {
    pub(super) name: Option<Spanned<String>>,
    pub(super) kind: Option<Spanned<KindName>>,
    pub(super) direction: Option<Spanned<Direction>>,
    pub(super) min_samples: Option<Spanned<i64>>,
    pub(super) critical: Option<Spanned<bool>>,
    pub(super) severity: Option<Spanned<Severity>>,
    pub(super) group: Option<Spanned<String>>,
    pub(super) query: Option<Spanned<String>>,
    pub(super) errors_query: Option<Spanned<String>>,
    pub(super) total_query: Option<Spanned<String>>,
    pub(super) raw_samples: Option<Spanned<bool>>,
    pub(super) cumulative: Option<Spanned<bool>>,
    pub(super) allowed_increase: Option<Spanned<f64>>,
    pub(super) allowed_decrease: Option<Spanned<f64>>,
    pub(super) max_ratio: Option<Spanned<f64>>,
    pub(super) min_ratio: Option<Spanned<f64>>,
    pub(super) max: Option<Spanned<f64>>,
    pub(super) min: Option<Spanned<f64>>,
    pub(super) statistic: Option<Spanned<ThresholdStatistic>>,
    pub(super) nan_policy: Option<Spanned<NanPolicy>>,
    pub(super) max_nan_fraction: Option<Spanned<f64>>,
    pub(super) outliers: Option<Spanned<OutlierMethodName>>,
    pub(super) iqr_multiplier: Option<Spanned<f64>>,
    pub(super) tails: Option<Spanned<bool>>,
    pub(super) bursts: Option<Spanned<String>>,
    pub(super) kayenta: Option<Spanned<RawKayenta>>,
    pub(super) queries: Option<Spanned<BTreeMap<Spanned<String>, Spanned<RawQueries>>>>,
}

/// `[metrics.queries.LANGUAGE]`: the metric's queries in another metric system's
/// language.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawQueries {
    pub(super) query: Option<Spanned<String>>,
    pub(super) errors_query: Option<Spanned<String>>,
    pub(super) total_query: Option<Spanned<String>>,
    pub(super) cumulative: Option<Spanned<bool>>,
}

/// `[metrics.kayenta]`: Kayenta's per-metric analysis settings, Kayenta's names in
/// snake case.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawKayenta {
    pub(super) measure: Option<Spanned<EffectMeasure>>,
    pub(super) allowed_increase: Option<Spanned<f64>>,
    pub(super) allowed_decrease: Option<Spanned<f64>>,
    pub(super) critical_increase: Option<Spanned<f64>>,
    pub(super) critical_decrease: Option<Spanned<f64>>,
    pub(super) must_have_data: Option<Spanned<bool>>,
    pub(super) muted: Option<Spanned<bool>>,
    pub(super) nan_strategy: Option<Spanned<KayentaNanStrategy>>,
    pub(super) outlier_factor: Option<Spanned<f64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawStage {
    pub(super) name: Option<Spanned<String>>,
    pub(super) traffic: Option<Spanned<f64>>,
    pub(super) duration: Option<Spanned<String>>,
    pub(super) max_duration: Option<Spanned<String>>,
    pub(super) interval: Option<Spanned<String>>,
    pub(super) lookback: Option<Spanned<String>>,
    pub(super) baseline: Option<Spanned<StageBaseline>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTrigger {
    pub(super) name: Option<Spanned<String>>,
    pub(super) metric: Option<Spanned<String>>,
    pub(super) above: Option<Spanned<f64>>,
    pub(super) below: Option<Spanned<f64>>,
    pub(super) above_baseline_times: Option<Spanned<f64>>,
    pub(super) below_baseline_times: Option<Spanned<f64>>,
    #[serde(rename = "for")]
    pub(super) sustained_for: Option<Spanned<String>>,
    pub(super) window: Option<Spanned<String>>,
    pub(super) consecutive: Option<Spanned<i64>>,
    pub(super) action: Option<Spanned<TriggerAction>>,
    pub(super) stages: Option<Spanned<Vec<String>>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRollout {
    pub(super) error_budget: Option<Spanned<f64>>,
    pub(super) consecutive_failures: Option<Spanned<i64>>,
    pub(super) hold_timeout: Option<Spanned<String>>,
    pub(super) on_hold_timeout: Option<Spanned<HoldOutcome>>,
    pub(super) step: Option<Spanned<String>>,
    pub(super) early_advance: Option<Spanned<bool>>,
    pub(super) rollback: Option<Spanned<RollbackMode>>,
    pub(super) rollback_over: Option<Spanned<String>>,
    pub(super) rollback_steps: Option<Spanned<i64>>,
    pub(super) fallback: Option<Spanned<Fallback>>,
}
