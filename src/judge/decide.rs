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
    let pass_score = profile.judge.pass_score.value();
    let marginal_score = profile.judge.marginal_score.value();

    let with = |classification: Classification, severity: Option<Severity>| {
        metrics
            .iter()
            .filter(move |m| {
                m.classification == classification && severity.is_none_or(|s| m.severity == s)
            })
            .collect::<Vec<_>>()
    };
    let critical_failures = with(Classification::Fail, Some(Severity::Critical));
    let warning_failures = with(Classification::Fail, Some(Severity::Warning));
    let normal_failures = with(Classification::Fail, Some(Severity::Normal));
    let unclassified: Vec<&MetricResult> = metrics
        .iter()
        .filter(|m| {
            matches!(
                m.classification,
                Classification::Inconclusive | Classification::Error
            )
        })
        .collect();
    let scored_count = metrics
        .iter()
        .filter(|m| m.severity != Severity::Warning && is_decided(m))
        .count();
    let scored_passes = metrics
        .iter()
        .filter(|m| m.severity != Severity::Warning && m.classification == Classification::Pass)
        .count();
    let score_text = |score: f64| {
        format!(
            "score {} ({} of {} scored metrics passed)",
            number(score),
            scored_passes,
            scored_count
        )
    };

    let mut reasons = Vec::new();
    let mut verdict = Verdict::Promote;
    for metric in &critical_failures {
        verdict = Verdict::Rollback;
        reasons.push(format!(
            "{} (critical) failed: {}",
            metric.name, metric.reason
        ));
    }
    if let Some(score) = score
        && score < marginal_score
    {
        verdict = Verdict::Rollback;
        reasons.push(format!(
            "{} is below the marginal score {}",
            score_text(score),
            number(marginal_score)
        ));
    }
    for metric in &normal_failures {
        reasons.push(format!("{} failed: {}", metric.name, metric.reason));
    }
    let mut hold = |reason: String, reasons: &mut Vec<String>| {
        if verdict == Verdict::Promote {
            verdict = Verdict::Hold;
        }
        reasons.push(reason);
    };
    for metric in &warning_failures {
        hold(
            format!(
                "{} (warning) failed, hold for manual review: {}",
                metric.name, metric.reason
            ),
            &mut reasons,
        );
    }
    for metric in &unclassified {
        let label = match metric.classification {
            Classification::Error => "could not be evaluated",
            _ => "is inconclusive",
        };
        hold(
            format!(
                "{} {label}, which never promotes: {}",
                metric.name, metric.reason
            ),
            &mut reasons,
        );
    }
    if let Some(score) = score
        && (marginal_score..pass_score).contains(&score)
    {
        hold(
            format!(
                "{} is below the pass score {}",
                score_text(score),
                number(pass_score)
            ),
            &mut reasons,
        );
    }
    if verdict == Verdict::Promote {
        let not_compared = metrics
            .iter()
            .filter(|m| m.classification == Classification::NotCompared)
            .count();
        let checked = metrics.len() - not_compared;
        let mut reason = match score {
            Some(score) => format!(
                "all {checked} metrics passed; {} meets the pass score {}",
                score_text(score),
                number(pass_score)
            ),
            None if checked == 0 => "no metric was checked".to_owned(),
            None => format!("all {checked} metrics passed"),
        };
        if not_compared > 0 {
            reason.push_str(&format!(
                "; {not_compared} not compared (no baseline at this stage), their canary data present"
            ));
        }
        reasons.push(reason);
    }

    Judgement {
        verdict,
        reasons,
        score,
        profile: profile.name.clone(),
        confidence_level,
        multiple_comparisons: profile.judge.multiple_comparisons,
        metrics,
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
