//! Per-analysis results as metrics: for every analysis the engine is not done with,
//! its state, latest verdict, score, traffic and stage, and each metric's
//! classification and effect estimate with its interval, labelled with the analysis id,
//! the flag and the profile. Set from the store at every scrape (every instance sharing
//! a database reports the same series); the families are cleared first, so an analysis
//! that finished leaves the exposition at the next scrape and the series count stays
//! bounded by the active analyses (at most [`MAX_REPORTED`]).

use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::judge::Classification;
use crate::store::{Analysis, LookRecord};

/// The most active analyses reported (oldest first); more are left out and counted in
/// `canary_analyses{state}` only.
pub const MAX_REPORTED: u32 = 500;

type FloatGauge = Gauge<f64, AtomicU64>;

/// `analysis`, `flag`, `profile`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AnalysisLabels {
    /// The analysis id.
    pub analysis: String,
    /// The flag it moves.
    pub flag: String,
    /// Its profile.
    pub profile: String,
}

/// [`AnalysisLabels`] and one more: `state` or `verdict`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AnalysisValueLabels {
    /// The analysis id.
    pub analysis: String,
    /// The flag it moves.
    pub flag: String,
    /// Its profile.
    pub profile: String,
    /// The state or the verdict.
    pub value: String,
}

/// [`AnalysisLabels`] and `metric`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct MetricLabels {
    /// The analysis id.
    pub analysis: String,
    /// The flag it moves.
    pub flag: String,
    /// Its profile.
    pub profile: String,
    /// The profile metric.
    pub metric: String,
}

/// [`MetricLabels`] and `classification`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct MetricClassificationLabels {
    /// The analysis id.
    pub analysis: String,
    /// The flag it moves.
    pub flag: String,
    /// Its profile.
    pub profile: String,
    /// The profile metric.
    pub metric: String,
    /// `pass`, `fail`, `inconclusive`, `error` or `not_compared`.
    pub classification: String,
}

/// The per-analysis families.
#[derive(Debug, Clone, Default)]
pub struct ActiveAnalyses {
    state: Family<AnalysisValueLabels, Gauge>,
    verdict: Family<AnalysisValueLabels, Gauge>,
    score: Family<AnalysisLabels, FloatGauge>,
    traffic: Family<AnalysisLabels, FloatGauge>,
    stage: Family<AnalysisLabels, Gauge>,
    classification: Family<MetricClassificationLabels, Gauge>,
    effect: Family<MetricLabels, FloatGauge>,
    effect_lower: Family<MetricLabels, FloatGauge>,
    effect_upper: Family<MetricLabels, FloatGauge>,
}

impl ActiveAnalyses {
    /// The families, registered in `registry`.
    pub fn register(registry: &mut Registry) -> Self {
        let active = Self::default();
        registry.register(
            "analysis_state",
            "1 for each active analysis, labelled with its state (value)",
            active.state.clone(),
        );
        registry.register(
            "analysis_verdict",
            "1 for each active analysis, labelled with its latest look's verdict (value: promote, hold, rollback)",
            active.verdict.clone(),
        );
        registry.register(
            "analysis_score",
            "The latest look's score (0-100) of each active analysis",
            active.score.clone(),
        );
        registry.register(
            "analysis_traffic_percent",
            "The canary's share of traffic for each active analysis, in percent",
            active.traffic.clone(),
        );
        registry.register(
            "analysis_stage",
            "The 0-based index of each active analysis's current stage",
            active.stage.clone(),
        );
        registry.register(
            "analysis_metric_classification",
            "1 for each metric of each active analysis's latest look, labelled with its classification",
            active.classification.clone(),
        );
        registry.register(
            "analysis_metric_effect",
            "Each metric's effect estimate at the latest look: canary - baseline (Hodges-Lehmann shift, or the rate difference)",
            active.effect.clone(),
        );
        registry.register(
            "analysis_metric_effect_lower",
            "The lower end of the effect's interval at the latest look",
            active.effect_lower.clone(),
        );
        registry.register(
            "analysis_metric_effect_upper",
            "The upper end of the effect's interval at the latest look",
            active.effect_upper.clone(),
        );
        active
    }

    /// Replaces every series with those of `active`.
    pub fn set(&self, active: &[(Analysis, Option<LookRecord>)]) {
        self.state.clear();
        self.verdict.clear();
        self.score.clear();
        self.traffic.clear();
        self.stage.clear();
        self.classification.clear();
        self.effect.clear();
        self.effect_lower.clear();
        self.effect_upper.clear();
        for (analysis, look) in active {
            let labels = AnalysisLabels {
                analysis: analysis.id.to_string(),
                flag: analysis.flag.clone(),
                profile: analysis.profile_name.clone(),
            };
            let with = |value: &str| AnalysisValueLabels {
                analysis: labels.analysis.clone(),
                flag: labels.flag.clone(),
                profile: labels.profile.clone(),
                value: value.to_owned(),
            };
            self.state
                .get_or_create(&with(analysis.state.as_str()))
                .set(1);
            if let Some(verdict) = analysis.latest_verdict {
                self.verdict.get_or_create(&with(verdict.as_str())).set(1);
            }
            if let Some(traffic) = analysis.traffic {
                self.traffic.get_or_create(&labels).set(traffic);
            }
            if let Some(stage) = analysis.current_stage {
                self.stage
                    .get_or_create(&labels)
                    .set(i64::try_from(stage).unwrap_or(i64::MAX));
            }
            let Some(look) = look else {
                continue;
            };
            let judgement = &look.body.judgement;
            if let Some(score) = judgement.score {
                self.score.get_or_create(&labels).set(score);
            }
            for metric in &judgement.metrics {
                let metric_labels = MetricLabels {
                    analysis: labels.analysis.clone(),
                    flag: labels.flag.clone(),
                    profile: labels.profile.clone(),
                    metric: metric.name.clone(),
                };
                self.classification
                    .get_or_create(&MetricClassificationLabels {
                        analysis: labels.analysis.clone(),
                        flag: labels.flag.clone(),
                        profile: labels.profile.clone(),
                        metric: metric.name.clone(),
                        classification: classification_name(metric.classification).to_owned(),
                    })
                    .set(1);
                if let Some(shift) = metric.shift_estimate.filter(|v| v.is_finite()) {
                    self.effect.get_or_create(&metric_labels).set(shift);
                }
                if let Some([low, high]) = metric.shift_ci {
                    if low.is_finite() {
                        self.effect_lower.get_or_create(&metric_labels).set(low);
                    }
                    if high.is_finite() {
                        self.effect_upper.get_or_create(&metric_labels).set(high);
                    }
                }
            }
        }
    }
}

fn classification_name(classification: Classification) -> &'static str {
    match classification {
        Classification::Pass => "pass",
        Classification::Fail => "fail",
        Classification::Inconclusive => "inconclusive",
        Classification::Error => "error",
        Classification::NotCompared => "not_compared",
    }
}
