//! Turning a profile's queries into observations for one analysis window.
//!
//! For every metric and side the query template is rendered with the side's scope
//! (`{{scope}}`, `{{side}}`, `{{step}}`, `{{lookback}}`), sent to the source (a
//! bounded number at a time), and the two sides' series are paired by their labels.
//! Whatever goes wrong — an unreachable source, a query that returns nothing, a
//! series without a counterpart — becomes a *problem* on the metric, which the judge
//! reports as inconclusive. A fetch never fails as a whole: missing data holds a
//! rollout, it never promotes it, and it never crashes it.

use std::collections::BTreeMap;

use futures::stream::{self, StreamExt};

use super::RunError;
use crate::domain::plan::Stage;
use crate::domain::{Location, MetricData, MetricKind, MetricSpec, Observations, Profile, Sample};
use crate::sources::pairing::pair_series;
use crate::sources::query::render;
use crate::sources::{LabeledSeries, MetricSource, RangeRequest, Side, SourceError};

/// How many source requests one analysis has in flight at once.
const MAX_CONCURRENT_REQUESTS: usize = 8;

/// How queries select each side, and which labels differ by design between them.
#[derive(Debug, Clone, PartialEq)]
pub struct Scopes {
    /// Label matchers for the baseline, e.g. `track="baseline"`.
    pub baseline: String,
    /// Label matchers for the canary, e.g. `track="canary"`.
    pub canary: String,
    /// Labels ignored when pairing baseline and canary series (`track`, `pod`, ...).
    pub scope_labels: Vec<String>,
}

impl Scopes {
    /// The scopes for two sets of label matchers, ignoring when pairing series the labels
    /// the matchers name (`track="canary", version=~"2.*"` → `track`, `version`): the
    /// labels that differ between the sides by design.
    pub fn from_matchers(baseline: &str, canary: &str) -> Self {
        let mut scope_labels = label_names(baseline);
        scope_labels.extend(label_names(canary));
        scope_labels.sort();
        scope_labels.dedup();
        Self {
            baseline: baseline.to_owned(),
            canary: canary.to_owned(),
            scope_labels,
        }
    }

    fn for_side(&self, side: Side) -> &str {
        match side {
            Side::Baseline => &self.baseline,
            Side::Canary => &self.canary,
        }
    }
}

/// The label names in a scope's matchers.
fn label_names(scope: &str) -> Vec<String> {
    scope
        .split(',')
        .filter_map(|matcher| {
            let name: String = matcher
                .trim()
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            (!name.is_empty()).then_some(name)
        })
        .collect()
}

/// The queries one metric needs: one for samples, or errors and total for counts.
fn metric_queries(spec: &MetricSpec) -> Vec<(String, Option<&str>)> {
    let counted = matches!(spec.kind, MetricKind::Proportion { .. }) || spec.errors_query.is_some();
    if counted {
        vec![
            (
                format!("{}:errors", spec.name),
                spec.errors_query.as_deref(),
            ),
            (format!("{}:total", spec.name), spec.total_query.as_deref()),
        ]
    } else {
        vec![(spec.name.clone(), spec.query.as_deref())]
    }
}

fn variables(scopes: &Scopes, side: Side, step: f64, lookback: f64) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("scope".to_owned(), scopes.for_side(side).to_owned()),
        ("side".to_owned(), side.as_str().to_owned()),
        ("step".to_owned(), format!("{}s", step.round() as u64)),
        (
            "lookback".to_owned(),
            format!("{}s", lookback.round() as u64),
        ),
    ])
}

struct Request {
    metric: String,
    key: String,
    side: Side,
    range: Option<RangeRequest>,
}

fn build_requests(
    source: &dyn MetricSource,
    profile: &Profile,
    scopes: &Scopes,
    from: f64,
    to: f64,
    step: f64,
) -> Result<Vec<Request>, RunError> {
    let mut requests = Vec::new();
    for spec in &profile.metrics {
        for (key, template) in metric_queries(spec) {
            for side in [Side::Baseline, Side::Canary] {
                let query = match template {
                    Some(template) => render(template, &variables(scopes, side, step, to - from))
                        .map_err(|error| {
                        RunError::Config(format!(
                            "metric {:?}: the query template is invalid: {error}",
                            spec.name
                        ))
                    })?,
                    None if source.uses_queries() => {
                        return Err(RunError::Config(format!(
                            "metric {:?} has no {} in profile {:?}, and {} runs queries",
                            spec.name,
                            if key.contains(':') {
                                "errors_query/total_query"
                            } else {
                                "query"
                            },
                            profile.name,
                            source.describe()
                        )));
                    }
                    None => String::new(),
                };
                requests.push(Request {
                    metric: spec.name.clone(),
                    key: key.clone(),
                    side,
                    range: Some(RangeRequest {
                        metric: key.clone(),
                        side,
                        query,
                        start: from,
                        end: to,
                        step,
                        raw_samples: spec.raw_samples,
                    }),
                });
            }
        }
    }
    Ok(requests)
}

type Answers = BTreeMap<(String, Side), Result<Vec<LabeledSeries>, SourceError>>;

async fn run_requests(source: &dyn MetricSource, requests: Vec<Request>) -> Answers {
    stream::iter(requests)
        .map(|mut request| async move {
            let range = request.range.take().expect("each request is sent once");
            let answer = source.fetch(&range).await;
            ((request.key, request.side), answer)
        })
        .buffer_unordered(MAX_CONCURRENT_REQUESTS)
        .collect()
        .await
}

/// Both sides' samples of the paired series of one query, and a note per unpaired one.
struct Pooled {
    baseline: Vec<Sample>,
    canary: Vec<Sample>,
    notes: Vec<String>,
}

/// Pools paired series into each side's samples, or explains why there are none.
fn pooled(answers: &mut Answers, key: &str, scopes: &Scopes) -> Result<Pooled, String> {
    let mut take = |side: Side| {
        answers
            .remove(&(key.to_owned(), side))
            .unwrap_or_else(|| Ok(Vec::new()))
    };
    let baseline = take(Side::Baseline).map_err(|error| format!("baseline `{key}`: {error}"))?;
    let canary = take(Side::Canary).map_err(|error| format!("canary `{key}`: {error}"))?;
    for (side, series) in [(Side::Baseline, &baseline), (Side::Canary, &canary)] {
        if series.is_empty() {
            return Err(format!(
                "the {} query for `{key}` returned no series (is the metric name right, and is the side getting traffic?)",
                side.as_str()
            ));
        }
    }
    let pairing = pair_series(baseline, canary, &scopes.scope_labels);
    let notes = pairing.notes(&scopes.scope_labels);
    let mut baseline_samples = Vec::new();
    let mut canary_samples = Vec::new();
    for (baseline_series, canary_series) in pairing.pairs {
        baseline_samples.extend(baseline_series.samples);
        canary_samples.extend(canary_series.samples);
    }
    Ok(Pooled {
        baseline: baseline_samples,
        canary: canary_samples,
        notes,
    })
}

/// Sums count samples per timestamp and aligns errors with totals (a timestamp with
/// only one of them gets NaN for the other: a missing point, not a zero).
fn counts(errors: Vec<Sample>, total: Vec<Sample>) -> (Vec<Sample>, Vec<Sample>) {
    let key = |t: f64| (t * 1000.0).round() as i64;
    let mut by_time: BTreeMap<i64, (f64, f64, f64)> = BTreeMap::new();
    for (samples, is_errors) in [(errors, true), (total, false)] {
        for sample in samples {
            let entry = by_time.entry(key(sample.timestamp)).or_insert((
                sample.timestamp,
                f64::NAN,
                f64::NAN,
            ));
            let slot = if is_errors {
                &mut entry.1
            } else {
                &mut entry.2
            };
            *slot = if slot.is_nan() {
                sample.value
            } else {
                *slot + sample.value
            };
        }
    }
    by_time
        .into_values()
        .map(|(timestamp, e, t)| {
            (
                Sample {
                    timestamp,
                    value: e,
                },
                Sample {
                    timestamp,
                    value: t,
                },
            )
        })
        .unzip()
}

/// Fetches every metric of `profile` for both sides over `(from, to]`.
pub async fn fetch_window(
    source: &dyn MetricSource,
    profile: &Profile,
    scopes: &Scopes,
    from: f64,
    to: f64,
    stage: &Stage,
) -> (Observations, Observations) {
    let step = profile
        .plan
        .as_ref()
        .map_or(15.0, |plan| plan.settings.step.seconds())
        .min(stage.interval.seconds());
    let mut baseline = Observations::default();
    let mut canary = Observations::default();
    let requests = match build_requests(source, profile, scopes, from, to, step) {
        Ok(requests) => requests,
        Err(error) => {
            // Preflight refuses such profiles; should one slip through, every metric is
            // inconclusive with the reason rather than the rollout crashing.
            for spec in &profile.metrics {
                canary.problems.insert(spec.name.clone(), error.to_string());
            }
            return (baseline, canary);
        }
    };
    let mut answers = run_requests(source, requests).await;
    let origin = |name: &str| Location {
        file: source.describe(),
        line: profile
            .metrics
            .iter()
            .position(|m| m.name == name)
            .map_or(0, |index| index + 1),
    };
    for spec in &profile.metrics {
        let keys = metric_queries(spec);
        let result = if keys.len() == 1 {
            pooled(&mut answers, &keys[0].0, scopes).map(|samples| {
                (
                    MetricData::Samples {
                        samples: samples.baseline,
                        origin: origin(&spec.name),
                    },
                    MetricData::Samples {
                        samples: samples.canary,
                        origin: origin(&spec.name),
                    },
                    samples.notes,
                )
            })
        } else {
            pooled(&mut answers, &keys[0].0, scopes).and_then(|errors| {
                let totals = pooled(&mut answers, &keys[1].0, scopes)?;
                let mut notes = errors.notes;
                notes.extend(totals.notes);
                let (baseline_errors, baseline_total) = counts(errors.baseline, totals.baseline);
                let (canary_errors, canary_total) = counts(errors.canary, totals.canary);
                Ok((
                    MetricData::Counts {
                        errors: baseline_errors,
                        total: baseline_total,
                        origin: origin(&spec.name),
                    },
                    MetricData::Counts {
                        errors: canary_errors,
                        total: canary_total,
                        origin: origin(&spec.name),
                    },
                    notes,
                ))
            })
        };
        match result {
            Ok((baseline_data, canary_data, notes)) => {
                baseline.metrics.insert(spec.name.clone(), baseline_data);
                canary.metrics.insert(spec.name.clone(), canary_data);
                if !notes.is_empty() {
                    canary.problems.insert(spec.name.clone(), notes.join("; "));
                }
            }
            Err(problem) => {
                canary.problems.insert(spec.name.clone(), problem);
            }
        }
    }
    (baseline, canary)
}

/// Checks, before anything is actuated, that every query renders, that the source
/// accepts it, and that the baseline has data over the first lookback — the check
/// that catches a misspelled metric name.
pub async fn preflight(
    source: &dyn MetricSource,
    profile: &Profile,
    scopes: &Scopes,
    now: f64,
    lookback: f64,
) -> Result<(), RunError> {
    let step = profile
        .plan
        .as_ref()
        .map_or(15.0, |plan| plan.settings.step.seconds());
    let requests: Vec<Request> =
        build_requests(source, profile, scopes, now - lookback, now, step)?
            .into_iter()
            .filter(|request| request.side == Side::Baseline)
            .collect();
    let metric_of: BTreeMap<String, String> = requests
        .iter()
        .map(|r| (r.key.clone(), r.metric.clone()))
        .collect();
    let answers = run_requests(source, requests).await;
    for ((key, _), answer) in answers {
        match answer {
            Err(error @ SourceError::BadQuery { .. }) => {
                return Err(RunError::Config(format!(
                    "metric {:?}: {error}",
                    metric_of.get(&key).map_or(key.as_str(), String::as_str)
                )));
            }
            Err(error) => return Err(RunError::Source(error)),
            Ok(series) if series.is_empty() => {
                return Err(RunError::Config(format!(
                    "metric {:?}: the baseline query for `{key}` returned no data over the last {} s; \
                     check the metric name and the baseline scope before rolling out",
                    metric_of.get(&key).map_or(key.as_str(), String::as_str),
                    lookback.round()
                )));
            }
            Ok(_) => {}
        }
    }
    Ok(())
}
