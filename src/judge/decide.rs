//! From classified metrics to a score and a verdict.
//!
//! The score is the weighted share of passing metrics over the metrics that could be
//! scored: each group's pass share counts with the group's weight, and groups with
//! no scored metric drop out. Warning metrics are not scored (their failure holds
//! instead), and inconclusive or errored metrics are not scored (they hold).
//!
//! The rules, in order:
//! 1. a critical metric failed → **rollback**;
//! 2. the score is below `marginal_score` → **rollback**;
//! 3. a warning metric failed, a metric is inconclusive or errored, or the score is
//!    below `pass_score` → **hold**;
//! 4. otherwise → **promote**.

use std::collections::BTreeMap;

use super::{Classification, Judgement, MetricResult};
use crate::domain::{Profile, Severity, Verdict};
use crate::format::number;

/// The verdict over classified `metrics`, recorded as judged at `confidence_level`
/// (a rollout's look judges at its own share of the budget, not the profile's).
pub(super) fn decide(
    profile: &Profile,
    confidence_level: f64,
    metrics: Vec<MetricResult>,
) -> Judgement {
    let score = score(profile, &metrics);
    let rules = Rules {
        pass_score: profile.judge.pass_score.value(),
        marginal_score: profile.judge.marginal_score.value(),
        score,
        metrics: &metrics,
    };
    let mut reasons = Vec::new();
    let mut verdict = rules.rollback(&mut reasons);
    rules.hold(&mut verdict, &mut reasons);
    if verdict == Verdict::Promote {
        reasons.push(rules.promotion());
    }
    Judgement {
        verdict,
        reasons,
        score,
        profile: profile.name.clone(),
        confidence_level,
        multiple_comparisons: profile.judge.multiple_comparisons,
        metrics,
        group_scores: None,
    }
}

/// The verdict rules (see the module documentation) over one look's metrics.
struct Rules<'a> {
    pass_score: f64,
    marginal_score: f64,
    score: Option<f64>,
    metrics: &'a [MetricResult],
}

impl Rules<'_> {
    fn with(
        &self,
        classification: Classification,
        severity: Severity,
    ) -> impl Iterator<Item = &MetricResult> {
        self.metrics
            .iter()
            .filter(move |m| m.classification == classification && m.severity == severity)
    }

    fn score_text(&self, score: f64) -> String {
        let scored = |m: &&MetricResult| m.severity != Severity::Warning;
        let scored_count = self
            .metrics
            .iter()
            .filter(scored)
            .filter(|m| is_decided(m))
            .count();
        let scored_passes = self
            .metrics
            .iter()
            .filter(scored)
            .filter(|m| m.classification == Classification::Pass)
            .count();
        format!(
            "score {} ({} of {} scored metrics passed)",
            number(score),
            scored_passes,
            scored_count
        )
    }

    /// Rules 1 and 2: a critical failure or a score below `marginal_score` roll back
    /// (normal failures are reasons too). Promote otherwise.
    fn rollback(&self, reasons: &mut Vec<String>) -> Verdict {
        let mut verdict = Verdict::Promote;
        for metric in self.with(Classification::Fail, Severity::Critical) {
            verdict = Verdict::Rollback;
            reasons.push(format!(
                "{} (critical) failed: {}",
                metric.name, metric.reason
            ));
        }
        if let Some(score) = self.score
            && score < self.marginal_score
        {
            verdict = Verdict::Rollback;
            reasons.push(format!(
                "{} is below the marginal score {}",
                self.score_text(score),
                number(self.marginal_score)
            ));
        }
        for metric in self.with(Classification::Fail, Severity::Normal) {
            reasons.push(format!("{} failed: {}", metric.name, metric.reason));
        }
        verdict
    }

    /// Rule 3: a warning failure, an inconclusive or errored metric, or a score below
    /// `pass_score` hold a verdict that would otherwise promote.
    fn hold(&self, verdict: &mut Verdict, reasons: &mut Vec<String>) {
        let mut hold = |reason: String| {
            if *verdict == Verdict::Promote {
                *verdict = Verdict::Hold;
            }
            reasons.push(reason);
        };
        for metric in self.with(Classification::Fail, Severity::Warning) {
            hold(format!(
                "{} (warning) failed, hold for manual review: {}",
                metric.name, metric.reason
            ));
        }
        let unclassified = self.metrics.iter().filter(|m| {
            matches!(
                m.classification,
                Classification::Inconclusive | Classification::Error
            )
        });
        for metric in unclassified {
            let label = match metric.classification {
                Classification::Error => "could not be evaluated",
                _ => "is inconclusive",
            };
            hold(format!(
                "{} {label}, which never promotes: {}",
                metric.name, metric.reason
            ));
        }
        if let Some(score) = self.score
            && (self.marginal_score..self.pass_score).contains(&score)
        {
            hold(format!(
                "{} is below the pass score {}",
                self.score_text(score),
                number(self.pass_score)
            ));
        }
    }

    /// Rule 4's reason: every checked metric passed.
    fn promotion(&self) -> String {
        let not_compared = self
            .metrics
            .iter()
            .filter(|m| m.classification == Classification::NotCompared)
            .count();
        let checked = self.metrics.len() - not_compared;
        let mut reason = match self.score {
            Some(score) => format!(
                "all {checked} metrics passed; {} meets the pass score {}",
                self.score_text(score),
                number(self.pass_score)
            ),
            None if checked == 0 => "no metric was checked".to_owned(),
            None => format!("all {checked} metrics passed"),
        };
        if not_compared > 0 {
            reason.push_str(&format!(
                "; {not_compared} not compared (no baseline at this stage), their canary data present"
            ));
        }
        reason
    }
}

fn is_decided(metric: &MetricResult) -> bool {
    matches!(
        metric.classification,
        Classification::Pass | Classification::Fail
    )
}

/// The weighted pass share, 0–100, over scored (non-warning, decided) metrics.
fn score(profile: &Profile, metrics: &[MetricResult]) -> Option<f64> {
    let mut groups: BTreeMap<&str, (usize, usize)> = BTreeMap::new();
    for metric in metrics
        .iter()
        .filter(|m| m.severity != Severity::Warning && is_decided(m))
    {
        let (passed, decided) = groups.entry(metric.group.as_str()).or_default();
        *decided += 1;
        if metric.classification == Classification::Pass {
            *passed += 1;
        }
    }
    if groups.is_empty() {
        return None;
    }
    let (weighted, total_weight) = groups.iter().fold(
        (0.0, 0.0),
        |(weighted, total_weight), (group, (passed, decided))| {
            let weight = profile.group_weight(group);
            (
                weighted + weight * (*passed as f64 / *decided as f64),
                total_weight + weight,
            )
        },
    );
    Some(100.0 * weighted / total_weight)
}
