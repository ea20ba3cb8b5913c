//! Rollback and hold triggers: the plain conditions rollout plans write ("error rate
//! above 2 % for 5 minutes", "2 consecutive health-check failures", "above baseline ×
//! 1.5 over a 10-minute window"), checked on the canary's series.
//!
//! Pure, like the rest of the judge. A look checks every point that arrived since the
//! previous look, so a breach between two looks is not missed:
//! - `for = D`: some run of consecutive breaching points spans at least `D` from its
//!   first to its last point, like Prometheus' `for` (no point missing in between);
//! - `consecutive = N`: some run of at least `N` consecutive breaching points;
//! - `window = D`: the mean over the `D` before some point (for count data: the pooled
//!   error rate) breaches. For count data the breach must also be significant, at the
//!   look's share of the error budget split over the windows checked: against an
//!   absolute limit ("> 2 %"), an exact binomial test of the errors among the events;
//!   against the baseline ("> baseline × 1.5"), a one-sided test of the rate ratio
//!   against the factor (Katz log-ratio z-test). Three errors in 250 requests is no
//!   evidence of a rate above 1 %, and ten errors against six is none that a canary is
//!   1.5 times worse: a plan that rolls back on them is a false-rollback machine;
//! - none of these: some point breaches.
//!
//! Missing data never meets a trigger (it cannot prove a breach); the judge's own
//! rules hold a rollout whose data is missing.

use serde::Serialize;

use statrs::distribution::{ContinuousCDF, Normal};

use crate::domain::plan::{Trigger, TriggerAction, TriggerCondition};
use crate::domain::{MetricData, Sample};
use crate::format::{number, p_value};
use crate::stats::Alternative;
use crate::stats::proportions::{Counts, rate_beyond_limit_p_value};

/// The state of one trigger at one look.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
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

/// Errors and events over a window, for count data.
fn window_counts(data: &MetricData, from: f64, to: f64) -> Option<(f64, f64)> {
    let MetricData::Counts { errors, total, .. } = data else {
        return None;
    };
    let (mut error_sum, mut total_sum) = (0.0, 0.0);
    for (e, t) in errors.iter().zip(total) {
        if e.timestamp > from && e.timestamp <= to && e.value.is_finite() && t.value.is_finite() {
            error_sum += e.value;
            total_sum += t.value;
        }
    }
    (total_sum > 0.0).then_some((error_sum, total_sum))
}

/// One-sided p-value that the canary/baseline rate ratio exceeds `factor` (or falls
/// below it): a z-test on the log of the ratio with Katz's standard error, with half
/// an event added to every cell when one is empty.
fn ratio_beyond_factor_p(
    canary: (f64, f64),
    baseline: (f64, f64),
    factor: f64,
    above: bool,
) -> f64 {
    let correction =
        if canary.0 == 0.0 || baseline.0 == 0.0 || canary.0 == canary.1 || baseline.0 == baseline.1
        {
            0.5
        } else {
            0.0
        };
    let (ce, cn) = (canary.0 + correction, canary.1 + 2.0 * correction);
    let (be, bn) = (baseline.0 + correction, baseline.1 + 2.0 * correction);
    let log_ratio = (ce / cn).ln() - (be / bn).ln();
    let standard_error = (1.0 / ce - 1.0 / cn + 1.0 / be - 1.0 / bn).max(0.0).sqrt();
    if standard_error == 0.0 {
        return 1.0;
    }
    let z = (log_ratio - factor.ln()) / standard_error;
    let normal = Normal::standard();
    if above { normal.sf(z) } else { normal.cdf(z) }
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

/// Every trigger of `plan` that applies at `stage`, checked over the points in
/// `(since, now]` ([`check_trigger`]).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TriggerChecks {
    /// Each applicable trigger's check, in the plan's order.
    pub checks: Vec<TriggerCheck>,
    /// The reasons of the rollback triggers that fired.
    pub fired_rollback: Vec<String>,
    /// The reasons of the hold triggers that fired.
    pub fired_hold: Vec<String>,
}

/// Checks every trigger of `plan` that applies at stage `stage` (see [`TriggerChecks`]).
pub fn check_triggers(
    plan: &crate::domain::plan::RolloutPlan,
    stage: &str,
    baseline: &crate::domain::Observations,
    canary: &crate::domain::Observations,
    since: f64,
    now: f64,
    alpha: f64,
) -> TriggerChecks {
    let mut checked = TriggerChecks::default();
    for trigger in plan.triggers.iter().filter(|t| t.applies_to(stage)) {
        let check = check_trigger(
            trigger,
            baseline.metrics.get(&trigger.metric),
            canary.metrics.get(&trigger.metric),
            since,
            now,
            alpha,
        );
        if check.met {
            let reason = format!("trigger \"{}\" fired: {}", trigger.name, check.reason);
            match trigger.action {
                crate::domain::plan::TriggerAction::Rollback => checked.fired_rollback.push(reason),
                crate::domain::plan::TriggerAction::Hold => checked.fired_hold.push(reason),
            }
        }
        checked.checks.push(check);
    }
    checked
}

/// A trigger's condition: the limit (or, relative to the baseline, the factor) and the
/// bad direction.
#[derive(Clone, Copy)]
struct Condition {
    factor_or_limit: f64,
    above: bool,
    relative: bool,
}

impl Condition {
    fn of(condition: TriggerCondition) -> Condition {
        let (factor_or_limit, above, relative) = match condition {
            TriggerCondition::Above(limit) => (limit, true, false),
            TriggerCondition::Below(limit) => (limit, false, false),
            TriggerCondition::AboveBaselineTimes(factor) => (factor, true, true),
            TriggerCondition::BelowBaselineTimes(factor) => (factor, false, true),
        };
        Condition {
            factor_or_limit,
            above,
            relative,
        }
    }

    fn comparison(self) -> &'static str {
        if self.above { "above" } else { "below" }
    }
}

/// Checks one trigger over the points in `(since, now]` (Unix seconds); windows and runs
/// may reach back before `since`. `alpha` is the false-alarm rate allowed for the
/// statistical check of baseline-relative count triggers at this look.
pub fn check_trigger(
    trigger: &Trigger,
    baseline: Option<&MetricData>,
    canary: Option<&MetricData>,
    since: f64,
    now: f64,
    alpha: f64,
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
    let condition = Condition::of(trigger.condition);
    let Some(canary) = canary else {
        check.reason = "no canary data: cannot show a breach".to_owned();
        return check;
    };
    if condition.relative && baseline.is_none() {
        check.reason = "no baseline data: cannot compare with the baseline".to_owned();
        return check;
    }
    let canary_points = points(canary);
    let recent: Vec<&Sample> = canary_points
        .iter()
        .filter(|p| p.timestamp > since && p.timestamp <= now)
        .collect();
    if recent.is_empty() {
        check.reason = "no canary data since the previous look".to_owned();
        return check;
    }
    match trigger.window {
        Some(window) => {
            let window_alpha = {
                // Windows ending at neighbouring points overlap almost entirely; count the
                // independent ones (two per window length of new data) rather than every
                // point: the windows checked at this look share its false-alarm rate.
                let independent = (2.0 * (now - since) / window.seconds()).ceil().max(1.0);
                alpha / independent
            };
            let windows = Windows {
                condition,
                window,
                alpha: window_alpha,
                baseline,
                canary,
            };
            windows.check(&recent, check)
        }
        None => sustained(
            trigger,
            condition,
            baseline,
            &canary_points,
            (since, now),
            check,
        ),
    }
}

/// A `window` trigger at one look: the aggregate over the window ending at each recent
/// point, checked against the limit (significantly, for count data).
struct Windows<'a> {
    condition: Condition,
    window: crate::domain::HumanDuration,
    /// The false-alarm rate of each window's significance test.
    alpha: f64,
    baseline: Option<&'a MetricData>,
    canary: &'a MetricData,
}

impl Windows<'_> {
    /// The worst window ending at a recent point, or why none breached.
    fn check(&self, recent: &[&Sample], mut check: TriggerCheck) -> TriggerCheck {
        let Condition {
            factor_or_limit,
            above,
            relative,
        } = self.condition;
        let (window, comparison) = (self.window, self.condition.comparison());
        let mut strongest_unproven: Option<(f64, f64, f64)> = None;
        let mut worst: Option<(f64, f64, f64)> = None;
        for point in recent {
            let from = point.timestamp - window.seconds();
            let Some(value) = aggregate(self.canary, from, point.timestamp) else {
                continue;
            };
            if let Some((p, limit)) = self.test(from, point.timestamp)
                && p >= self.alpha
            {
                if breaches(value, limit, above)
                    && strongest_unproven.is_none_or(|(best, _, _)| p < best)
                {
                    strongest_unproven = Some((p, value, limit));
                }
                continue;
            }
            let limit = if relative {
                match self
                    .baseline
                    .and_then(|b| aggregate(b, from, point.timestamp))
                {
                    Some(base) => base * factor_or_limit,
                    None => continue,
                }
            } else {
                factor_or_limit
            };
            let excess = if above { value - limit } else { limit - value };
            if worst.is_none_or(|(e, _, _)| excess > e) {
                worst = Some((excess, value, limit));
            }
        }
        let Some((excess, value, limit)) = worst else {
            check.reason = match strongest_unproven {
                Some((p, value, limit)) => {
                    check.value = Some(value);
                    check.limit = Some(limit);
                    let against = if relative {
                        format!("baseline × {} = {}", number(factor_or_limit), number(limit))
                    } else {
                        format!("the limit {}", number(limit))
                    };
                    format!(
                        "canary {} over {window} is {comparison} {against}, but not significantly \
                         (p = {} against the {} this look allows)",
                        number(value),
                        p_value(p, None),
                        p_value(self.alpha, None)
                    )
                }
                None => format!("no breach of a {window} window since the previous look"),
            };
            return check;
        };
        check.value = Some(value);
        check.limit = Some(limit);
        check.met = excess > 0.0;
        check.reason = format!(
            "canary {} over {window} is {}{comparison} the limit {}",
            number(value),
            if check.met { "" } else { "not " },
            number(limit)
        );
        check
    }

    /// For count data, the p-value that the window `(from, to]` is beyond the limit (a
    /// baseline-relative one must be beyond the baseline's rate times the factor), with
    /// the limit it was tested against; `None` for samples.
    fn test(&self, from: f64, to: f64) -> Option<(f64, f64)> {
        let Condition {
            factor_or_limit,
            above,
            relative,
        } = self.condition;
        let canary_counts = window_counts(self.canary, from, to)?;
        if relative {
            let baseline_counts = window_counts(self.baseline?, from, to)?;
            return Some((
                ratio_beyond_factor_p(canary_counts, baseline_counts, factor_or_limit, above),
                baseline_counts.0 / baseline_counts.1 * factor_or_limit,
            ));
        }
        let counts = Counts {
            events: canary_counts.0.round() as u64,
            total: canary_counts.1.round() as u64,
        };
        let alternative = if above {
            Alternative::Greater
        } else {
            Alternative::Less
        };
        Some((
            rate_beyond_limit_p_value(counts, factor_or_limit, alternative),
            factor_or_limit,
        ))
    }
}

/// A `for` (or `consecutive`) trigger at one look: the longest run of consecutive
/// breaching points ending after `since`, starting early enough to reach back a whole
/// `for` duration before the first recent point.
fn sustained(
    trigger: &Trigger,
    condition: Condition,
    baseline: Option<&MetricData>,
    canary_points: &[Sample],
    (since, now): (f64, f64),
    mut check: TriggerCheck,
) -> TriggerCheck {
    let Condition {
        factor_or_limit,
        above,
        relative,
    } = condition;
    let comparison = condition.comparison();
    let reach = trigger.sustained_for.map_or(0.0, |d| d.seconds());
    let baseline_points = baseline.map(points).unwrap_or_default();
    let limit_at = |t: f64| -> Option<f64> {
        if relative {
            baseline_points
                .iter()
                .find(|b| (b.timestamp - t).abs() < 1e-3)
                .map(|b| b.value)
                .filter(|b| b.is_finite())
                .map(|b| b * factor_or_limit)
        } else {
            Some(factor_or_limit)
        }
    };
    let step = median_spacing(canary_points).unwrap_or(0.0);
    let needed_points = trigger.consecutive.max(1) as usize;
    let mut run_start: Option<f64> = None;
    let mut run_length = 0usize;
    let mut best: Option<(f64, usize, f64, f64)> = None; // (span, points, value, limit)
    for point in canary_points
        .iter()
        .filter(|p| p.timestamp > since - reach - step && p.timestamp <= now)
    {
        let limit = limit_at(point.timestamp);
        let breaching = point.value.is_finite()
            && limit.is_some_and(|limit| breaches(point.value, limit, above));
        if !breaching {
            run_start = None;
            run_length = 0;
            continue;
        }
        let start = *run_start.get_or_insert(point.timestamp);
        run_length += 1;
        // Like Prometheus' `for`: the condition held at every evaluation from the run's
        // first point to this one.
        let span = point.timestamp - start;
        if point.timestamp > since && best.is_none_or(|(s, n, _, _)| (span, run_length) > (s, n)) {
            best = Some((span, run_length, point.value, limit.unwrap_or(f64::NAN)));
        }
    }
    let Some((span, run_points, value, limit)) = best else {
        check.reason = format!("no canary point {comparison} the limit since the previous look");
        return check;
    };
    check.value = Some(value);
    check.limit = Some(limit);
    check.met = span + 1e-6 >= reach && run_points >= needed_points;
    let run = match trigger.sustained_for {
        Some(duration) => format!(
            "{} of the required {}",
            crate::format::duration(span),
            crate::format::duration(duration.seconds())
        ),
        None => format!("{run_points} of the required {needed_points} point(s)"),
    };
    check.reason = format!(
        "canary {comparison} {} for {run}{}",
        number(limit),
        if check.met { "" } else { ": not sustained" }
    );
    check
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
        assert!(
            check_trigger(
                &p99,
                None,
                Some(&breaching_for_three_minutes),
                540.0,
                600.0,
                0.01
            )
            .met
        );
        let breaching_for_one_minute = minutes(|t| if t >= 540.0 { 0.8 } else { 0.2 });
        let check = check_trigger(
            &p99,
            None,
            Some(&breaching_for_one_minute),
            540.0,
            600.0,
            0.01,
        );
        assert!(!check.met);
        assert!(check.reason.contains("not sustained"), "{}", check.reason);
        assert!(
            check.reason.contains("for 1 min of the required 2 min"),
            "durations in natural units (issue 12): {}",
            check.reason
        );
        // A breach between two looks is seen by the next one.
        let breached_and_recovered = minutes(|t| {
            if (180.0..=360.0).contains(&t) {
                0.8
            } else {
                0.2
            }
        });
        assert!(check_trigger(&p99, None, Some(&breached_and_recovered), 0.0, 600.0, 0.01).met);
        assert!(
            !check_trigger(
                &p99,
                None,
                Some(&breached_and_recovered),
                420.0,
                600.0,
                0.01
            )
            .met
        );
    }

    #[test]
    fn a_missing_point_never_meets_a_sustained_trigger() {
        let p99 = trigger(TriggerCondition::Above(0.5), Some("2m"), None);
        let with_gap = minutes(|t| if t == 540.0 { f64::NAN } else { 0.8 });
        assert!(!check_trigger(&p99, None, Some(&with_gap), 480.0, 600.0, 0.01).met);
        let too_short = samples(&[(590.0, 0.9), (600.0, 0.9)]);
        let check = check_trigger(&p99, None, Some(&too_short), 540.0, 600.0, 0.01);
        assert!(
            !check.met && check.reason.contains("not sustained"),
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
        assert!(check_trigger(&rate, None, Some(&high), 540.0, 600.0, 0.01).met);
        let one_low = counts(&[
            (480.0, 5.0, 100.0),
            (540.0, 1.0, 100.0),
            (600.0, 4.0, 100.0),
        ]);
        assert!(!check_trigger(&rate, None, Some(&one_low), 540.0, 600.0, 0.01).met);
    }

    #[test]
    fn a_relative_window_trigger_compares_pooled_rates_with_the_baseline() {
        let relative = trigger(TriggerCondition::AboveBaselineTimes(1.5), None, Some("10m"));
        let baseline = counts(&[(300.0, 20.0, 10_000.0), (600.0, 20.0, 10_000.0)]);
        let canary_quadruple = counts(&[(300.0, 80.0, 10_000.0), (600.0, 80.0, 10_000.0)]);
        let check = check_trigger(
            &relative,
            Some(&baseline),
            Some(&canary_quadruple),
            540.0,
            600.0,
            0.01,
        );
        assert!(check.met, "{}", check.reason);
        assert_eq!(check.limit, Some(0.003));
        let canary_same = counts(&[(300.0, 20.0, 10_000.0), (600.0, 30.0, 10_000.0)]);
        assert!(
            !check_trigger(
                &relative,
                Some(&baseline),
                Some(&canary_same),
                540.0,
                600.0,
                0.01
            )
            .met
        );
        assert!(!check_trigger(&relative, None, Some(&canary_quadruple), 540.0, 600.0, 0.01).met);
    }

    #[test]
    fn a_relative_count_trigger_needs_significant_evidence_not_a_noisy_ratio() {
        let relative = trigger(TriggerCondition::AboveBaselineTimes(1.5), None, Some("10m"));
        // Twice the baseline's rate, but eight errors against four: no evidence.
        let baseline = counts(&[(300.0, 2.0, 1000.0), (600.0, 2.0, 1000.0)]);
        let canary_double = counts(&[(300.0, 4.0, 1000.0), (600.0, 4.0, 1000.0)]);
        let check = check_trigger(
            &relative,
            Some(&baseline),
            Some(&canary_double),
            540.0,
            600.0,
            0.01,
        );
        assert!(!check.met);
        assert!(
            check.reason.contains("not significantly"),
            "{}",
            check.reason
        );
    }

    #[test]
    fn consecutive_counts_breaching_points_in_a_row() {
        let mut health = trigger(TriggerCondition::Above(0.0), None, None);
        health.consecutive = 2;
        let one_failure = minutes(|t| if t == 300.0 { 1.0 } else { 0.0 });
        assert!(!check_trigger(&health, None, Some(&one_failure), 0.0, 600.0, 0.01).met);
        let two_in_a_row = minutes(|t| if t == 300.0 || t == 360.0 { 1.0 } else { 0.0 });
        assert!(check_trigger(&health, None, Some(&two_in_a_row), 0.0, 600.0, 0.01).met);
        let two_apart = minutes(|t| if t == 300.0 || t == 420.0 { 1.0 } else { 0.0 });
        assert!(!check_trigger(&health, None, Some(&two_apart), 0.0, 600.0, 0.01).met);
        assert!(!check_trigger(&health, None, None, 0.0, 600.0, 0.01).met);
    }

    #[test]
    fn without_for_or_window_any_recent_point_breaching_meets_the_trigger() {
        let any = trigger(TriggerCondition::Above(0.5), None, None);
        let spike = minutes(|t| if t == 480.0 { 0.9 } else { 0.1 });
        assert!(check_trigger(&any, None, Some(&spike), 420.0, 600.0, 0.01).met);
        assert!(!check_trigger(&any, None, Some(&spike), 480.0, 600.0, 0.01).met);
    }
}
