//! Rollback and hold triggers: the plain conditions rollout plans write ("error rate
//! > 2 % for 5 minutes", "> baseline × 1.5 over a 10-minute window"), checked on the
//! canary's series at one analysis time.
//!
//! Pure, like the rest of the judge. A trigger is *met* at one look; the runner counts
//! consecutive looks and fires it after `consecutive` of them. Missing data never
//! meets a trigger (it cannot prove a breach), but the judge's own rules already hold
//! a rollout whose data is missing.
//!
//! - `for = D`: every point of the last `D` breaches, the points cover `D` (the first
//!   one lies within one sampling step of its start) and none is missing.
//! - `window = D`: the mean over the last `D` (for count data: the pooled error rate)
//!   breaches.
//! - neither: the latest point breaches.

use serde::Serialize;

use super::format::number;
use crate::domain::plan::{Trigger, TriggerAction, TriggerCondition};
use crate::domain::{MetricData, Sample};

/// The state of one trigger at one look.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TriggerCheck {
    /// The trigger's name.
    pub name: String,
    /// The metric it watches.
    pub metric: String,
    /// Whether its condition holds at this look.
    pub met: bool,
    /// What it does when it fires.
    pub action: TriggerAction,
    /// The canary value compared (latest point, window aggregate, or the least
    /// breaching point of a sustained check).
    pub value: Option<f64>,
    /// The limit it was compared with (for relative triggers: baseline × factor).
    pub limit: Option<f64>,
    /// Readable explanation with the numbers.
    pub reason: String,
}

/// One value per timestamp: samples as they are, counts as `errors / total`.
fn points(data: &MetricData) -> Vec<Sample> {
    match data {
        MetricData::Samples { samples, .. } => {
            let mut points = samples.clone();
            points.sort_by(|a, b| a.timestamp.total_cmp(&b.timestamp));
            points
        }
        MetricData::Counts { errors, total, .. } => errors
            .iter()
            .zip(total)
            .map(|(e, t)| Sample {
                timestamp: e.timestamp,
                value: if t.value > 0.0 {
                    e.value / t.value
                } else {
                    f64::NAN
                },
            })
            .collect(),
    }
}

/// The mean over a window; for count data the pooled rate, so a quiet interval does
/// not weigh as much as a busy one.
fn aggregate(data: &MetricData, from: f64, to: f64) -> Option<f64> {
    let inside = |t: f64| t > from && t <= to;
    match data {
        MetricData::Samples { samples, .. } => {
            let values: Vec<f64> = samples
                .iter()
                .filter(|s| inside(s.timestamp) && s.value.is_finite())
                .map(|s| s.value)
                .collect();
            (!values.is_empty()).then(|| values.iter().sum::<f64>() / values.len() as f64)
        }
        MetricData::Counts { errors, total, .. } => {
            let (mut error_sum, mut total_sum) = (0.0, 0.0);
            for (e, t) in errors.iter().zip(total) {
                if inside(e.timestamp) && e.value.is_finite() && t.value.is_finite() {
                    error_sum += e.value;
                    total_sum += t.value;
                }
            }
            (total_sum > 0.0).then(|| error_sum / total_sum)
        }
    }
}

fn median_spacing(points: &[Sample]) -> Option<f64> {
    let mut gaps: Vec<f64> = points
        .windows(2)
        .map(|pair| pair[1].timestamp - pair[0].timestamp)
        .filter(|gap| *gap > 0.0)
        .collect();
    if gaps.is_empty() {
        return None;
    }
    gaps.sort_by(f64::total_cmp);
    Some(gaps[gaps.len() / 2])
}

fn breaches(value: f64, limit: f64, above: bool) -> bool {
    if above { value > limit } else { value < limit }
}

/// Checks one trigger at analysis time `now` (Unix seconds).
pub fn check_trigger(
    trigger: &Trigger,
    baseline: Option<&MetricData>,
    canary: Option<&MetricData>,
    now: f64,
) -> TriggerCheck {
    let mut check = TriggerCheck {
        name: trigger.name.clone(),
        metric: trigger.metric.clone(),
        met: false,
        action: trigger.action,
        value: None,
        limit: None,
        reason: String::new(),
    };
    let (factor_or_limit, above, relative) = match trigger.condition {
        TriggerCondition::Above(limit) => (limit, true, false),
        TriggerCondition::Below(limit) => (limit, false, false),
        TriggerCondition::AboveBaselineTimes(factor) => (factor, true, true),
        TriggerCondition::BelowBaselineTimes(factor) => (factor, false, true),
    };
    let comparison = if above { "above" } else { "below" };
    let Some(canary) = canary else {
        check.reason = "no canary data: cannot show a breach".to_owned();
        return check;
    };
    if relative && baseline.is_none() {
        check.reason = "no baseline data: cannot compare with the baseline".to_owned();
        return check;
    }

    if let Some(window) = trigger.window {
        let from = now - window.seconds();
        let Some(value) = aggregate(canary, from, now) else {
            check.reason = format!("no canary data in the last {window}");
            return check;
        };
        let limit = if relative {
            match baseline.and_then(|b| aggregate(b, from, now)) {
                Some(base) => base * factor_or_limit,
                None => {
                    check.reason = format!("no baseline data in the last {window}");
                    return check;
                }
            }
        } else {
            factor_or_limit
        };
        check.value = Some(value);
        check.limit = Some(limit);
        check.met = breaches(value, limit, above);
        check.reason = format!(
            "canary {} over the last {window} is {}{} the limit {}",
            number(value),
            if check.met { "" } else { "not " },
            comparison,
            number(limit)
        );
        return check;
    }

    let canary_points = points(canary);
    let baseline_points = baseline.map(points).unwrap_or_default();
    let baseline_at = |t: f64| {
        baseline_points
            .iter()
            .find(|b| (b.timestamp - t).abs() < 1e-3)
            .map(|b| b.value)
    };
    let limit_at = |t: f64| -> Option<f64> {
        if relative {
            baseline_at(t)
                .filter(|b| b.is_finite())
                .map(|b| b * factor_or_limit)
        } else {
            Some(factor_or_limit)
        }
    };

    match trigger.sustained_for {
        Some(duration) => {
            let from = now - duration.seconds();
            let inside: Vec<Sample> = canary_points
                .iter()
                .copied()
                .filter(|p| p.timestamp > from - 1e-9 && p.timestamp <= now)
                .collect();
            let step = median_spacing(&canary_points).unwrap_or(duration.seconds());
            let Some(first) = inside.first() else {
                check.reason = format!("no canary data in the last {duration}");
                return check;
            };
            if first.timestamp > from + step + 1e-9 {
                check.reason = format!(
                    "the canary data cover only {} s of the {duration} the trigger needs",
                    number(now - first.timestamp)
                );
                return check;
            }
            let mut least_breaching: Option<(f64, f64)> = None;
            for point in &inside {
                let Some(limit) = limit_at(point.timestamp) else {
                    check.reason = format!(
                        "no baseline value at {} to compare with",
                        number(point.timestamp)
                    );
                    return check;
                };
                if !point.value.is_finite() {
                    check.reason = format!("a canary point in the last {duration} is missing");
                    return check;
                }
                if !breaches(point.value, limit, above) {
                    check.value = Some(point.value);
                    check.limit = Some(limit);
                    check.reason = format!(
                        "not sustained: canary {} at {} is not {comparison} {}",
                        number(point.value),
                        number(point.timestamp),
                        number(limit)
                    );
                    return check;
                }
                let margin = (point.value - limit).abs();
                if least_breaching.is_none_or(|(m, _)| margin < m) {
                    least_breaching = Some((margin, point.value));
                    check.limit = Some(limit);
                }
            }
            check.met = true;
            check.value = least_breaching.map(|(_, value)| value);
            check.reason = format!(
                "canary {comparison} {} at all {} points of the last {duration}",
                check.limit.map_or_else(|| "the limit".to_owned(), number),
                inside.len()
            );
            check
        }
        None => {
            let Some(latest) = canary_points
                .iter()
                .rev()
                .find(|p| p.timestamp <= now && p.value.is_finite())
            else {
                check.reason = "no canary data".to_owned();
                return check;
            };
            let Some(limit) = limit_at(latest.timestamp) else {
                check.reason = "no baseline value at the latest canary point".to_owned();
                return check;
            };
            check.value = Some(latest.value);
            check.limit = Some(limit);
            check.met = breaches(latest.value, limit, above);
            check.reason = format!(
                "latest canary value {} is {}{comparison} {}",
                number(latest.value),
                if check.met { "" } else { "not " },
                number(limit)
            );
            check
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::plan::TriggerAction;
    use crate::domain::{HumanDuration, Location};

    fn samples(values: &[(f64, f64)]) -> MetricData {
        MetricData::Samples {
            samples: values
                .iter()
                .map(|&(timestamp, value)| Sample { timestamp, value })
                .collect(),
            origin: Location {
                file: "test".to_owned(),
                line: 1,
            },
        }
    }

    fn counts(rows: &[(f64, f64, f64)]) -> MetricData {
        MetricData::Counts {
            errors: rows
                .iter()
                .map(|&(timestamp, e, _)| Sample {
                    timestamp,
                    value: e,
                })
                .collect(),
            total: rows
                .iter()
                .map(|&(timestamp, _, t)| Sample {
                    timestamp,
                    value: t,
                })
                .collect(),
            origin: Location {
                file: "test".to_owned(),
                line: 1,
            },
        }
    }

    fn trigger(
        condition: TriggerCondition,
        sustained: Option<&str>,
        window: Option<&str>,
    ) -> Trigger {
        Trigger {
            name: "t".to_owned(),
            metric: "m".to_owned(),
            condition,
            sustained_for: sustained.map(|d| HumanDuration::parse(d).unwrap()),
            window: window.map(|d| HumanDuration::parse(d).unwrap()),
            consecutive: 1,
            action: TriggerAction::Rollback,
            stages: Vec::new(),
        }
    }

    /// One point a minute from t = 0 to t = 600.
    fn minutes(value_at: impl Fn(f64) -> f64) -> MetricData {
        let values: Vec<(f64, f64)> = (0..=10)
            .map(|i| (i as f64 * 60.0, value_at(i as f64 * 60.0)))
            .collect();
        samples(&values)
    }

    #[test]
    fn a_sustained_breach_meets_the_trigger_only_when_it_lasts_the_whole_duration() {
        let p99 = trigger(TriggerCondition::Above(0.5), Some("2m"), None);
        let breaching_for_three_minutes = minutes(|t| if t >= 420.0 { 0.8 } else { 0.2 });
        assert!(check_trigger(&p99, None, Some(&breaching_for_three_minutes), 600.0).met);
        let breaching_for_one_minute = minutes(|t| if t >= 540.0 { 0.8 } else { 0.2 });
        let check = check_trigger(&p99, None, Some(&breaching_for_one_minute), 600.0);
        assert!(!check.met);
        assert!(check.reason.contains("not sustained"), "{}", check.reason);
    }

    #[test]
    fn a_missing_point_never_meets_a_sustained_trigger() {
        let p99 = trigger(TriggerCondition::Above(0.5), Some("2m"), None);
        let with_gap = minutes(|t| if t == 540.0 { f64::NAN } else { 0.8 });
        assert!(!check_trigger(&p99, None, Some(&with_gap), 600.0).met);
        let too_short = samples(&[(590.0, 0.9), (600.0, 0.9)]);
        let check = check_trigger(&p99, None, Some(&too_short), 600.0);
        assert!(
            !check.met && check.reason.contains("cover only"),
            "{}",
            check.reason
        );
    }

    #[test]
    fn error_rate_triggers_read_counts_as_rates() {
        let rate = trigger(TriggerCondition::Above(0.02), Some("2m"), None);
        let high = counts(&[
            (480.0, 5.0, 100.0),
            (540.0, 3.0, 100.0),
            (600.0, 4.0, 100.0),
        ]);
        assert!(check_trigger(&rate, None, Some(&high), 600.0).met);
        let one_low = counts(&[
            (480.0, 5.0, 100.0),
            (540.0, 1.0, 100.0),
            (600.0, 4.0, 100.0),
        ]);
        assert!(!check_trigger(&rate, None, Some(&one_low), 600.0).met);
    }

    #[test]
    fn a_relative_window_trigger_compares_pooled_rates_with_the_baseline() {
        let relative = trigger(TriggerCondition::AboveBaselineTimes(1.5), None, Some("10m"));
        let baseline = counts(&[(300.0, 2.0, 1000.0), (600.0, 2.0, 1000.0)]);
        let canary_double = counts(&[(300.0, 4.0, 1000.0), (600.0, 4.0, 1000.0)]);
        let check = check_trigger(&relative, Some(&baseline), Some(&canary_double), 600.0);
        assert!(check.met, "{}", check.reason);
        assert_eq!(check.limit, Some(0.003));
        let canary_same = counts(&[(300.0, 2.0, 1000.0), (600.0, 3.0, 1000.0)]);
        assert!(!check_trigger(&relative, Some(&baseline), Some(&canary_same), 600.0).met);
        assert!(!check_trigger(&relative, None, Some(&canary_double), 600.0).met);
    }

    #[test]
    fn without_for_or_window_the_latest_point_decides() {
        let health = trigger(TriggerCondition::Above(0.0), None, None);
        assert!(
            check_trigger(
                &health,
                None,
                Some(&minutes(|t| if t == 600.0 { 1.0 } else { 0.0 })),
                600.0
            )
            .met
        );
        assert!(!check_trigger(&health, None, Some(&minutes(|_| 0.0)), 600.0).met);
        assert!(!check_trigger(&health, None, None, 600.0).met);
    }
}
