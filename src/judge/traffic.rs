//! How long stages need at a given traffic: the time to gather each metric's
//! `min_samples`, and (for error rates) the smallest ratio a stage can detect.
//!
//! Pure: it takes the plan, the profile and observed or assumed rates. The runner uses
//! [`gathering`] on a look that holds only for samples; `canary check-profile --traffic`
//! uses [`stage_estimates`] before a rollout starts.

use super::{Judgement, MetricResult};
use crate::domain::plan::{RolloutPlan, Stage};
use crate::domain::{MetricKind, Profile};
use crate::format::{count, duration, number};

/// The share of the service's traffic the smaller compared side gets at `stage`: the
/// canary's share, or the same-size baseline's when that is smaller (`min(p, 100 − p)`).
/// Zero for a stage without a baseline (nothing is compared there).
pub fn compared_share(stage: &Stage) -> f64 {
    if !stage.has_baseline() {
        return 0.0;
    }
    let p = stage.traffic.value() / 100.0;
    p.min(1.0 - p).max(0.0)
}

/// The reasons of a look that holds only because some metrics' stages are still short
/// of `min_samples`: per metric, what it has, at what rate it gathers, and about how
/// much longer it needs; whether that fits in the stage's `max_duration`. On the
/// rollout's first look (`first_look`), error-rate metrics are also projected onto the
/// later stages at the traffic observed, naming every stage that cannot gather its
/// events within its `max_duration` (the plan cannot finish at this traffic). The
/// flag is set when this stage or a later one cannot.
pub fn gathering(
    judgement: &Judgement,
    plan: &RolloutPlan,
    stage_index: usize,
    elapsed: f64,
    first_look: bool,
) -> (Vec<String>, bool) {
    let mut cannot_finish = false;
    let stage = &plan.stages[stage_index];
    let mut reasons = Vec::new();
    for metric in &judgement.metrics {
        let Some(short) = metric.short_of_samples else {
            continue;
        };
        let unit = unit(metric);
        let rate = if elapsed > 0.0 {
            short.have / elapsed
        } else {
            0.0
        };
        let mut reason = format!(
            "{} gathering samples: {} of {} {unit} at stage {} after {}",
            metric.name,
            count(short.have as u64),
            count(short.need),
            stage.name,
            duration(elapsed)
        );
        if rate > 0.0 {
            let remaining = (short.need as f64 - short.have) / rate;
            reason.push_str(&format!(
                " ({}/s on the smaller side): about {} more",
                number(rate),
                duration(remaining)
            ));
            if elapsed + remaining > stage.max_duration.seconds() + 1e-6 {
                cannot_finish = true;
                reason.push_str(&format!(
                    ", beyond the stage's max_duration {}: it will hold there",
                    stage.max_duration
                ));
            } else if elapsed + remaining > stage.duration.seconds() + 1e-6 {
                reason.push_str(&format!(
                    ", past the stage's duration {} (within its max_duration {})",
                    stage.duration, stage.max_duration
                ));
            }
        } else {
            reason.push_str(": none yet, so no estimate");
        }
        reasons.push(reason);
        let share = compared_share(stage);
        if first_look && metric.kind == "proportion" && rate > 0.0 && share > 0.0 {
            let per_share = rate / share;
            let short_stages: Vec<String> = plan
                .stages
                .iter()
                .skip(stage_index + 1)
                .filter(|later| compared_share(later) > 0.0)
                .filter_map(|later| {
                    let needed = short.need as f64 / (per_share * compared_share(later));
                    (needed > later.max_duration.seconds() + 1e-6).then(|| {
                        format!(
                            "stage {} needs about {} (max_duration {})",
                            later.name,
                            duration(needed),
                            later.max_duration
                        )
                    })
                })
                .collect();
            if !short_stages.is_empty() {
                cannot_finish = true;
                reasons.push(format!(
                    "at the traffic observed ({}/s at stage {}), {}'s {} {unit} cannot be gathered in time at every stage: {}",
                    number(rate),
                    stage.name,
                    metric.name,
                    count(short.need),
                    short_stages.join("; ")
                ));
            }
        }
    }
    (reasons, cannot_finish)
}

fn unit(metric: &MetricResult) -> &'static str {
    if metric.kind == "proportion" {
        "events"
    } else {
        "samples"
    }
}

/// One metric at one stage, at an assumed traffic.
#[derive(Debug, Clone, PartialEq)]
pub struct StageEstimate {
    /// The stage's name.
    pub stage: String,
    /// The metric's name.
    pub metric: String,
    /// `events` (error rates) or `samples` (points per step).
    pub unit: &'static str,
    /// What the stage gathers on the smaller side over its `duration`.
    pub gathered: f64,
    /// The metric's `min_samples`.
    pub min_samples: u64,
    /// Seconds the stage needs to gather `min_samples` (infinite: never, at this
    /// traffic).
    pub needed: f64,
    /// Whether `needed` fits within the stage's `max_duration`.
    pub fits: bool,
    /// Error rates: the smallest canary/baseline ratio the stage's events can tell from
    /// 1 at the baseline rate assumed, with 80 % power at the stage's share of the
    /// error budget (a fixed-sample normal approximation: the anytime-valid test needs
    /// somewhat more). `None` for other metrics.
    pub detectable_ratio: Option<f64>,
}

/// Per stage (with a baseline) and comparative metric, what a stage gathers at
/// `requests_per_second` for the whole service: error-rate events scale with the
/// compared side's share, points per step do not (one per step per series, whatever
/// the traffic). `error_rate` is the baseline error rate assumed for the detectable
/// ratio.
pub fn stage_estimates(
    profile: &Profile,
    plan: &RolloutPlan,
    requests_per_second: f64,
    error_rate: f64,
) -> Vec<StageEstimate> {
    let comparative: Vec<_> = profile
        .metrics
        .iter()
        .filter(|m| !matches!(m.kind, MetricKind::Threshold(_)))
        .collect();
    let stages_compared = plan
        .stages
        .iter()
        .filter(|s| s.has_baseline())
        .count()
        .max(1);
    // Each metric's share of the judge's budget, split evenly over the compared stages
    // (one-sided: harm is one direction).
    let alpha =
        plan.settings.error_budget / comparative.len().max(1) as f64 / stages_compared as f64;
    let z_alpha = normal_quantile(1.0 - alpha);
    let z_power = normal_quantile(0.8);
    let step = plan.settings.step.seconds();
    let mut estimates = Vec::new();
    for stage in plan.stages.iter().filter(|s| s.has_baseline()) {
        let share = compared_share(stage);
        for metric in &comparative {
            let proportion = matches!(metric.kind, MetricKind::Proportion(_));
            let rate = if proportion {
                requests_per_second * share
            } else {
                1.0 / step
            };
            let gathered = rate * stage.duration.seconds();
            let needed = if rate > 0.0 {
                metric.min_samples as f64 / rate
            } else {
                f64::INFINITY
            };
            let detectable_ratio = proportion.then(|| {
                let n = gathered.max(metric.min_samples as f64);
                if n <= 0.0 || error_rate <= 0.0 {
                    return f64::INFINITY;
                }
                let difference =
                    (z_alpha + z_power) * (2.0 * error_rate * (1.0 - error_rate) / n).sqrt();
                1.0 + difference / error_rate
            });
            estimates.push(StageEstimate {
                stage: stage.name.clone(),
                metric: metric.name.clone(),
                unit: if proportion { "events" } else { "samples" },
                gathered,
                min_samples: metric.min_samples,
                needed,
                fits: needed <= stage.max_duration.seconds() + 1e-6,
                detectable_ratio,
            });
        }
    }
    estimates
}

/// The plan at the traffic a look observed, in one sentence for the rollout's first
/// look: the service's requests per second and baseline error rate, estimated from the
/// baseline's events of the first proportion metric over `seconds` at `stage` (whose
/// baseline gets the compared share), and per later-or-current stage with a baseline
/// what it gathers over its duration, how long `min_samples` takes, and the error-rate
/// ratio it can detect ([`stage_estimates`]). `None` without a proportion metric, a
/// baseline at this stage or events.
pub fn plan_at_observed_traffic(
    profile: &Profile,
    plan: &RolloutPlan,
    stage_index: usize,
    baseline: &crate::domain::Observations,
    seconds: f64,
) -> Option<String> {
    let share = compared_share(&plan.stages[stage_index]);
    let metric = profile
        .metrics
        .iter()
        .find(|m| matches!(m.kind, MetricKind::Proportion(_)))?;
    let Some(crate::domain::MetricData::Counts { errors, total, .. }) =
        baseline.metrics.get(&metric.name)
    else {
        return None;
    };
    let (errors, total) = (
        crate::domain::Sample::total(errors),
        crate::domain::Sample::total(total),
    );
    if share <= 0.0 || seconds <= 0.0 || total <= 0.0 {
        return None;
    }
    let requests_per_second = total / seconds / share;
    let error_rate = errors / total;
    let stages: Vec<String> = stage_estimates(profile, plan, requests_per_second, error_rate)
        .into_iter()
        .filter(|e| e.metric == metric.name)
        .filter(|e| {
            plan.stages
                .iter()
                .position(|s| s.name == e.stage)
                .is_some_and(|index| index >= stage_index)
        })
        .map(|e| {
            let needs = if e.needed.is_finite() {
                duration(e.needed)
            } else {
                "never".to_owned()
            };
            let detects = e
                .detectable_ratio
                .filter(|r| r.is_finite())
                .map_or_else(String::new, |r| format!(", detects about ×{}", number(r)));
            format!(
                "{} gathers {} events ({} to its {}{}{detects})",
                e.stage,
                count(e.gathered as u64),
                needs,
                count(e.min_samples),
                if e.fits {
                    ""
                } else {
                    ", beyond its max_duration"
                },
            )
        })
        .collect();
    Some(format!(
        "the plan at the traffic observed (about {} requests/s for the whole service, the baseline's {} at {}): {}",
        number(requests_per_second),
        metric.name,
        crate::format::percent(error_rate),
        stages.join("; ")
    ))
}

fn normal_quantile(p: f64) -> f64 {
    use statrs::distribution::{ContinuousCDF, Normal};
    Normal::standard().inverse_cdf(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn profile(stages: &str) -> Profile {
        let text = format!(
            r#"
name = "t"
[rollout]
error_budget = 0.01
step = "1m"
{stages}
[[metrics]]
name = "error_rate"
kind = "proportion"
min_samples = 1000
errors_query = 'sum(rate(e{{ {{{{scope}}}} }}[1m]))'
total_query = 'sum(rate(t{{ {{{{scope}}}} }}[1m]))'
[[metrics]]
name = "latency"
kind = "continuous"
min_samples = 30
query = 'x{{ {{{{scope}}}} }}'
"#
        );
        Profile::parse(&text, "t.toml").unwrap()
    }

    const STAGES: &str = r#"
[[stages]]
traffic = 1
duration = "1h"
interval = "10m"
max_duration = "2h"
[[stages]]
traffic = 50
duration = "1h"
interval = "10m"
[[stages]]
traffic = 100
duration = "1h"
interval = "10m"
"#;

    #[test]
    fn events_scale_with_the_smaller_sides_share_and_points_do_not() {
        let profile = profile(STAGES);
        let plan = profile.plan.clone().unwrap();
        let estimates = stage_estimates(&profile, &plan, 10.0, 0.01);
        // The 100 % stage has no baseline: nothing is compared there.
        assert_eq!(estimates.len(), 4);
        let errors_1 = &estimates[0];
        assert_eq!(
            (errors_1.stage.as_str(), errors_1.metric.as_str()),
            ("1%", "error_rate")
        );
        // 10 req/s × 1 % = 0.1 events/s: 1,000 events take 10,000 s, beyond 2 h.
        assert!((errors_1.needed - 10_000.0).abs() < 1e-6);
        assert!((errors_1.gathered - 360.0).abs() < 1e-6);
        assert!(!errors_1.fits);
        let errors_50 = &estimates[2];
        assert!((errors_50.needed - 200.0).abs() < 1e-6);
        assert!(errors_50.fits);
        // One point a minute whatever the traffic: 60 in the hour, 30 take 30 minutes.
        let latency_1 = &estimates[1];
        assert_eq!(latency_1.unit, "samples");
        assert!((latency_1.needed - 1_800.0).abs() < 1e-6);
        assert!(latency_1.detectable_ratio.is_none());
        // More events detect a smaller ratio.
        let (small, large) = (
            errors_1.detectable_ratio.unwrap(),
            errors_50.detectable_ratio.unwrap(),
        );
        assert!(large < small, "{large} < {small}");
        assert!(large > 1.0);
    }

    #[test]
    fn the_first_look_projects_the_traffic_it_observed_onto_the_plan() {
        use crate::domain::{Location, MetricData, Observations, Sample};
        let profile = profile(STAGES);
        let plan = profile.plan.clone().unwrap();
        // Ten minutes at the 1 % stage: the baseline (1 % of the service) counted 60
        // requests with 3 errors, so the service serves 10 requests/s at 5 % errors.
        let point = |value: f64| Sample {
            timestamp: 600.0,
            value,
        };
        let mut baseline = Observations::default();
        baseline.metrics.insert(
            "error_rate".to_owned(),
            MetricData::Counts {
                errors: vec![point(3.0)],
                total: vec![point(60.0)],
                origin: Location {
                    file: "t".to_owned(),
                    line: 1,
                },
            },
        );
        let sentence = plan_at_observed_traffic(&profile, &plan, 0, &baseline, 600.0).unwrap();
        assert!(
            sentence.starts_with(
                "the plan at the traffic observed (about 10 requests/s for the whole service, \
                 the baseline's error_rate at 5%)"
            ),
            "{sentence}"
        );
        assert!(
            sentence.contains(
                "1% gathers 360 events (2 h 47 min to its 1,000, beyond its max_duration"
            ),
            "{sentence}"
        );
        assert!(
            sentence.contains("; 50% gathers 18,000 events"),
            "{sentence}"
        );
        // From the second stage on, the first stage is not projected.
        let later = plan_at_observed_traffic(&profile, &plan, 1, &baseline, 600.0).unwrap();
        assert!(!later.contains("1% gathers"), "{later}");
        // No events, or no baseline at the stage: nothing to project.
        assert!(
            plan_at_observed_traffic(&profile, &plan, 0, &Observations::default(), 600.0).is_none()
        );
    }

    #[test]
    fn max_duration_defaults_to_the_duration_and_may_not_be_shorter() {
        let profile = profile(STAGES);
        let plan = profile.plan.unwrap();
        assert_eq!(plan.stages[1].max_duration, plan.stages[1].duration);
        let error = Profile::parse(&profile_text_with("max_duration = \"30m\""), "short.toml")
            .unwrap_err()
            .to_string();
        assert!(error.contains("max_duration"), "{error}");
        assert!(
            error.contains("shorter than the stage's duration"),
            "{error}"
        );
    }

    fn profile_text_with(line: &str) -> String {
        format!(
            r#"
name = "t"
[rollout]
step = "1m"
[[stages]]
traffic = 1
duration = "1h"
interval = "10m"
{line}
[[metrics]]
name = "latency"
kind = "continuous"
query = 'x{{ {{{{scope}}}} }}'
"#
        )
    }
}
