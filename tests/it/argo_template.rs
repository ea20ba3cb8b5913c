//! The AnalysisTemplate shipped in `docs/argo-rollouts.md`, run through Argo Rollouts'
//! own rules over whole rollouts: it must fail closed, so that an analysis that never
//! reaches `promoted` (held, paused, awaiting review, canary unreachable) never ends
//! the metric *Successful* — Argo would promote the canary.
//!
//! `assess_metric` below re-implements, for one metric, what the Argo Rollouts
//! controller does (read in argoproj/argo-rollouts at commit 9f8d111, August 2026):
//! - `analysis/analysis.go`, `runMeasurements`: how a completed measurement moves the
//!   counters (`Count`, `Failed`, `Inconclusive`, `ConsecutiveError`,
//!   `ConsecutiveSuccess`; an error does not add to `Count`);
//! - `analysis/analysis.go`, `assessMetricStatus` and
//!   `assessMetricFailureInconclusiveOrError`: the phase after each measurement (limits
//!   are exceeded when a counter is *greater* than its limit; `consecutiveSuccessLimit`
//!   ends it Successful; reaching `count` ends it Successful unless
//!   `consecutiveSuccessLimit` is set, when it is Inconclusive);
//! - `utils/evaluate/evaluate.go`, `EvaluateResult`: a measurement is Failed when the
//!   failure condition holds, Successful when only the success condition holds, and
//!   Inconclusive when neither does;
//! - `utils/analysis/factory.go`, `ValidateMetric`: the limits a template must respect;
//! - `pkg/apis/rollouts/v1alpha1/analysis_types.go`, `EffectiveCount`, and
//!   `utils/defaults/defaults.go` (`DefaultConsecutiveErrorLimit` = 4).
//!
//! Argo Rollouts before 1.8 has no `consecutiveSuccessLimit` (the field is dropped), so
//! every scenario is also run under those older rules.
//!
//! Each measurement's `result` is the JSON that `GET /v1/analyses/{id}/argo` answers,
//! made by the handler's own `ArgoVerdict::of` (`tests/it/api.rs` checks the endpoint
//! answers exactly that).

use std::collections::HashMap;

use serde_json::Value;

use canary::api::argo::ArgoVerdict;
use canary::store::AnalysisState;

use crate::helpers::root;

/// The metric fields of the shipped template that Argo's assessment reads.
#[derive(Debug, Clone)]
struct Metric {
    interval: Option<String>,
    count: Option<i64>,
    failure_limit: i64,
    inconclusive_limit: i64,
    consecutive_error_limit: i64,
    consecutive_success_limit: i64,
    success_condition: String,
    failure_condition: String,
}

/// The `key: value` lines of the first yaml block of `markdown`, comments removed.
fn yaml_fields(markdown: &str) -> HashMap<String, String> {
    let yaml = markdown
        .split("```yaml")
        .nth(1)
        .and_then(|rest| rest.split("```").next())
        .expect("docs/argo-rollouts.md has a yaml block");
    yaml.lines()
        .filter_map(|line| {
            let line = line.split(" #").next().unwrap_or_default().trim();
            let line = line.strip_prefix("- ").unwrap_or(line);
            let (key, value) = line.split_once(':')?;
            Some((
                key.trim().to_owned(),
                value.trim().trim_matches('"').to_owned(),
            ))
        })
        .collect()
}

fn metric_from(markdown: &str) -> Metric {
    let fields = yaml_fields(markdown);
    let number = |key: &str, default: i64| {
        fields.get(key).map_or(default, |value| {
            value
                .parse()
                .unwrap_or_else(|_| panic!("{key}: {value:?} is not a number"))
        })
    };
    Metric {
        interval: fields.get("interval").cloned(),
        count: fields.get("count").map(|_| number("count", 0)),
        failure_limit: number("failureLimit", 0),
        inconclusive_limit: number("inconclusiveLimit", 0),
        consecutive_error_limit: number("consecutiveErrorLimit", 4),
        consecutive_success_limit: number("consecutiveSuccessLimit", 0),
        success_condition: fields["successCondition"].clone(),
        failure_condition: fields["failureCondition"].clone(),
    }
}

fn shipped_metric() -> Metric {
    let text = std::fs::read_to_string(root().join("docs/argo-rollouts.md")).unwrap();
    metric_from(&text)
}

/// `ValidateMetric` (factory.go): the checks that touch the fields above.
fn validate(metric: &Metric) -> Result<(), String> {
    let count = metric.count.unwrap_or(0);
    let (failure, success) = (metric.failure_limit, metric.consecutive_success_limit);
    if success < 0 || failure < -1 || metric.inconclusive_limit < 0 {
        return Err("a negative limit".into());
    }
    if success == 0 && failure == -1 {
        return Err("failureLimit and consecutiveSuccessLimit both disabled".into());
    }
    if count > 0 {
        if failure >= 0 && count < failure + success {
            return Err("count < failureLimit + consecutiveSuccessLimit".into());
        }
        if failure < 0 && count < success {
            return Err("count < consecutiveSuccessLimit".into());
        }
        if count < metric.inconclusive_limit {
            return Err("count < inconclusiveLimit".into());
        }
    }
    if count > 1 && metric.interval.is_none() {
        return Err("count > 1 without an interval".into());
    }
    Ok(())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Running,
    Successful,
    Failed,
    Inconclusive,
    Error,
}

/// One measurement's outcome: the endpoint's answer, or no answer at all.
#[derive(Debug, Clone, Copy)]
enum Answer {
    State(AnalysisState),
    /// Connection refused, a timeout or a non-2xx status: the `web` provider records an
    /// Error measurement.
    Unreachable,
}

/// Evaluates `result.FIELD == true|false`, the only form the template uses.
fn condition_holds(condition: &str, result: &Value) -> bool {
    let (left, right) = condition.split_once("==").expect("a comparison");
    let field = left.trim().strip_prefix("result.").expect("result.FIELD");
    let expected: bool = right.trim().parse().expect("true or false");
    result[field].as_bool().expect("a boolean field") == expected
}

/// `EvaluateResult` (evaluate.go) for a template with both conditions set.
fn measure(metric: &Metric, answer: Answer) -> Phase {
    let result = match answer {
        Answer::Unreachable => return Phase::Error,
        Answer::State(state) => serde_json::to_value(ArgoVerdict::of(state)).unwrap(),
    };
    assert!(
        !metric.success_condition.is_empty() && !metric.failure_condition.is_empty(),
        "the template sets both conditions, so a measurement can be inconclusive"
    );
    if condition_holds(&metric.failure_condition, &result) {
        Phase::Failed
    } else if condition_holds(&metric.success_condition, &result) {
        Phase::Successful
    } else {
        Phase::Inconclusive
    }
}

/// The counters of `MetricResult`.
#[derive(Debug, Default)]
struct Counters {
    count: i64,
    failed: i64,
    inconclusive: i64,
    consecutive_error: i64,
    consecutive_success: i64,
}

/// Which Argo Rollouts assesses the metric.
#[derive(Debug, Clone, Copy)]
enum ArgoVersion {
    /// 1.8 and later: `consecutiveSuccessLimit` exists.
    Current,
    /// Before 1.8: the field is unknown and dropped.
    Before1_8,
}

/// `assessMetricStatus` after a completed measurement (analysis.go).
fn assess_metric(metric: &Metric, counters: &Counters, version: ArgoVersion) -> Phase {
    let success_limit = match version {
        ArgoVersion::Current => metric.consecutive_success_limit,
        ArgoVersion::Before1_8 => 0,
    };
    // assessMetricFailureInconclusiveOrError: later checks win.
    let mut phase = None;
    if metric.failure_limit >= 0 && counters.failed > metric.failure_limit {
        phase = Some(Phase::Failed);
    }
    if counters.inconclusive > metric.inconclusive_limit {
        phase = Some(Phase::Inconclusive);
    }
    if counters.consecutive_error > metric.consecutive_error_limit {
        phase = Some(Phase::Error);
    }
    if let Some(phase) = phase {
        return phase;
    }
    if success_limit > 0 && counters.consecutive_success >= success_limit {
        return Phase::Successful;
    }
    // EffectiveCount: with an interval and no count the metric runs indefinitely.
    let effective_count = match metric.count {
        Some(count) if count > 0 => Some(count),
        _ if metric.interval.is_none() => Some(1),
        _ => None,
    };
    if let Some(count) = effective_count
        && counters.count >= count
    {
        let failure_applicable = metric.failure_limit >= 0;
        let success_applicable = success_limit > 0;
        return match (failure_applicable, success_applicable) {
            (true, true) => Phase::Inconclusive,
            (false, true) => Phase::Failed,
            _ => Phase::Successful,
        };
    }
    Phase::Running
}

/// Runs the metric over `answers` (the last one repeated for as long as Argo keeps
/// measuring) and returns the metric's final phase and how many measurements it took.
fn run(metric: &Metric, answers: &[Answer], version: ArgoVersion) -> (Phase, usize) {
    let mut counters = Counters::default();
    // Bounded: every measurement either adds to `count` or to the consecutive errors.
    let bound = 10 * (metric.count.unwrap_or(1000) as usize + 10);
    for taken in 1..=bound {
        let answer = answers[(taken - 1).min(answers.len() - 1)];
        match measure(metric, answer) {
            Phase::Successful => {
                counters.count += 1;
                counters.consecutive_error = 0;
                counters.consecutive_success += 1;
            }
            Phase::Failed => {
                counters.count += 1;
                counters.consecutive_error = 0;
                counters.consecutive_success = 0;
                counters.failed += 1;
            }
            Phase::Inconclusive => {
                counters.count += 1;
                counters.consecutive_error = 0;
                counters.consecutive_success = 0;
                counters.inconclusive += 1;
            }
            Phase::Error => {
                counters.consecutive_error += 1;
                counters.consecutive_success = 0;
            }
            Phase::Running => unreachable!("a measurement is completed"),
        }
        let phase = assess_metric(metric, &counters, version);
        if phase != Phase::Running {
            return (phase, taken);
        }
    }
    panic!("the metric never completed in {bound} measurements: it runs indefinitely");
}

use AnalysisState::{AwaitingReview, Failed, Paused, Pending, Promoted, RollbackFailed, Running};
use AnswerKind::*;

/// Shorthand for building scenarios.
#[derive(Clone, Copy)]
enum AnswerKind {
    S(AnalysisState),
    Down,
}

fn answers(kinds: &[(AnswerKind, usize)]) -> Vec<Answer> {
    kinds
        .iter()
        .flat_map(|&(kind, times)| {
            let answer = match kind {
                S(state) => Answer::State(state),
                Down => Answer::Unreachable,
            };
            std::iter::repeat_n(answer, times)
        })
        .collect()
}

/// The scenarios, each with whether Argo may end the metric Successful.
fn scenarios(count: usize) -> Vec<(&'static str, Vec<Answer>, Option<Phase>)> {
    vec![
        (
            "promoted at the first measurement",
            answers(&[(S(Promoted), 1)]),
            Some(Phase::Successful),
        ),
        (
            "running for an hour, then promoted",
            answers(&[(S(Pending), 2), (S(Running), 58), (S(Promoted), 1)]),
            Some(Phase::Successful),
        ),
        (
            "promoted at the last measurement",
            answers(&[(S(Running), count - 1), (S(Promoted), 1)]),
            Some(Phase::Successful),
        ),
        (
            "rolled back",
            answers(&[(S(Running), 30), (S(AnalysisState::RolledBack), 1)]),
            Some(Phase::Failed),
        ),
        (
            "the rollback failed",
            answers(&[(S(Running), 3), (S(RollbackFailed), 1)]),
            Some(Phase::Failed),
        ),
        (
            "the analysis could not run",
            answers(&[(S(Failed), 1)]),
            Some(Phase::Failed),
        ),
        ("held (running) forever", answers(&[(S(Running), 1)]), None),
        ("never started (pending)", answers(&[(S(Pending), 1)]), None),
        (
            "paused by a person and never resumed",
            answers(&[(S(Running), 10), (S(Paused), 1)]),
            None,
        ),
        (
            "held past the hold timeout: awaiting review",
            answers(&[(S(Running), 40), (S(AwaitingReview), 1)]),
            None,
        ),
        (
            "canary unreachable from the start",
            answers(&[(Down, 1)]),
            None,
        ),
        (
            "canary unreachable in bursts, running otherwise",
            answers(&[
                (S(Running), 5),
                (Down, 3),
                (S(Running), 5),
                (Down, 4),
                (S(Running), 1),
            ]),
            None,
        ),
        (
            "promoted after the count is used up (too late)",
            answers(&[(S(Running), count), (S(Promoted), 1)]),
            None,
        ),
    ]
}

fn check(metric: &Metric) -> Vec<String> {
    let count = metric.count.expect("the template sets a count") as usize;
    let mut wrong = Vec::new();
    for version in [ArgoVersion::Current, ArgoVersion::Before1_8] {
        for (name, answers, expected) in scenarios(count) {
            let (phase, taken) = run(metric, &answers, version);
            let ok = match expected {
                Some(expected) => phase == expected,
                None => phase != Phase::Successful,
            };
            if !ok {
                wrong.push(format!(
                    "{version:?}: {name}: the metric ended {phase:?} after {taken} measurements (expected {})",
                    expected.map_or("anything but Successful".to_owned(), |p| format!("{p:?}"))
                ));
            }
        }
    }
    wrong
}

#[test]
fn the_submit_or_get_template_fails_closed_with_the_same_counts_and_limits() {
    let text = std::fs::read_to_string(root().join("docs/argo-rollouts.md")).unwrap();
    let (_, second) = text
        .split_once("## Without a separate submit")
        .expect("docs/argo-rollouts.md documents submit-or-get");
    let verdict_template = shipped_metric();
    let submit_template = metric_from(second);
    // Every assessment below was made for the first template; the second must not
    // differ in anything Argo assesses.
    assert_eq!(
        format!("{submit_template:?}"),
        format!("{verdict_template:?}")
    );
    validate(&submit_template).unwrap();
}

#[test]
fn the_shipped_argo_template_promotes_only_promoted_analyses() {
    let metric = shipped_metric();
    assert_eq!(validate(&metric), Ok(()), "Argo would refuse {metric:?}");
    let wrong = check(&metric);
    assert!(wrong.is_empty(), "{metric:?}:\n{}", wrong.join("\n"));
}

#[test]
fn the_shipped_argo_template_stops_at_the_first_verdict_on_current_argo() {
    let metric = shipped_metric();
    let promoted = answers(&[(S(Running), 3), (S(Promoted), 1)]);
    assert_eq!(
        run(&metric, &promoted, ArgoVersion::Current),
        (Phase::Successful, 4)
    );
}

/// The template as shipped before issue 13: `count: 120`, `inconclusiveLimit: 120` and
/// no `consecutiveSuccessLimit` — 120 "still running" answers end the metric Successful.
#[test]
fn the_old_argo_template_is_caught_promoting_a_held_canary() {
    let old = "```yaml\n      interval: 1m\n      count: 120\n      inconclusiveLimit: 120\n      failureLimit: 0\n      successCondition: result.successful == true\n      failureCondition: result.failed == true\n```\n";
    let metric = metric_from(old);
    assert_eq!(validate(&metric), Ok(()));
    let wrong = check(&metric);
    assert!(
        wrong
            .iter()
            .any(|line| line
                .contains("held (running) forever: the metric ended Successful after 120")),
        "{wrong:#?}"
    );
}
