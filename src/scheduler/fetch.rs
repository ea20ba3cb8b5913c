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

use super::rollout::RunError;
use super::scopes::Scopes;
use crate::domain::plan::Stage;
use crate::domain::{
    InstanceCounts, InstanceSeries, Location, MetricData, MetricSpec, Observations, Profile,
    QueryLanguage, Sample,
};
use crate::sources::pairing::{instance_name, pair_series, reduced_labels};
use crate::sources::query::render;
use crate::sources::{LabeledSeries, MetricSource, RangeRequest, Side, SourceError};

/// How many source requests one analysis has in flight at once.
const MAX_CONCURRENT_REQUESTS: usize = 8;

/// The queries one metric needs in `language`: one for samples, or errors and total
/// for counts (a template is `None` when the profile has none in that language).
fn metric_queries(spec: &MetricSpec, language: QueryLanguage) -> Vec<(String, Option<&str>)> {
    let set = spec.queries_in(language);
    if spec.counted() {
        vec![
            (
                format!("{}:errors", spec.name),
                set.and_then(|set| set.errors_query),
            ),
            (
                format!("{}:total", spec.name),
                set.and_then(|set| set.total_query),
            ),
        ]
    } else {
        vec![(spec.name.clone(), set.and_then(|set| set.query))]
    }
}

/// The values of a side's template variables: the common ones, and the source's own
/// (InfluxQL's `{{time_filter}}`). The scope is written in the source's language.
fn variables(
    source: &dyn MetricSource,
    scopes: &Scopes,
    side: Side,
    (from, to, step): (f64, f64, f64),
) -> Result<BTreeMap<String, String>, RunError> {
    let scope = scopes.for_side(side);
    let rendered_scope = source.render_scope(scope).map_err(|message| {
        RunError::Config(format!(
            "the {} scope `{scope}` cannot be written for {}: {message}",
            side.as_str(),
            source.describe()
        ))
    })?;
    let lookback = to - from;
    let mut variables = BTreeMap::from([
        ("scope".to_owned(), rendered_scope),
        ("side".to_owned(), side.as_str().to_owned()),
        ("step".to_owned(), format!("{}s", step.round() as u64)),
        (
            "step_seconds".to_owned(),
            format!("{}", step.round() as u64),
        ),
        (
            "lookback".to_owned(),
            format!("{}s", lookback.round() as u64),
        ),
        (
            "lookback_seconds".to_owned(),
            format!("{}", lookback.round() as u64),
        ),
        ("start".to_owned(), format!("{}", from.round() as i64)),
        ("end".to_owned(), format!("{}", to.round() as i64)),
    ]);
    for (name, value) in source.query_variables(from, to) {
        variables.insert(name.to_owned(), value);
    }
    Ok(variables)
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
    sides: &[Side],
) -> Result<Vec<Request>, RunError> {
    let language = source.language();
    // Rendered for sources that look metrics up by name too: their requests carry the
    // query all the same (a wrapper may read it, as the capacity benchmark does).
    let mut side_variables = BTreeMap::new();
    for &side in sides {
        side_variables.insert(side, variables(source, scopes, side, (from, to, step))?);
    }
    let mut requests = Vec::new();
    for spec in &profile.metrics {
        for (key, template) in metric_queries(spec, language) {
            for &side in sides {
                let query = match (template, side_variables.get(&side)) {
                    (Some(template), Some(variables)) => {
                        render(template, variables).map_err(|error| {
                            RunError::Config(format!(
                                "metric {:?}: the query template is invalid: {error}",
                                spec.name
                            ))
                        })?
                    }
                    (None, _) if source.uses_queries() => {
                        return Err(RunError::Config(missing_query(
                            spec, &key, language, profile, source,
                        )));
                    }
                    _ => String::new(),
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
                        raw_samples: spec.queries_in(language).is_some_and(|set| set.raw_samples),
                    }),
                });
            }
        }
    }
    Ok(requests)
}

/// Checks, without a request, that `source` can run every query of `profile` for both
/// scopes: each metric has queries in the source's language, and each template and
/// scope renders. A profile without queries for the source fails here, before the
/// source is asked anything.
pub fn check_queries(
    source: &dyn MetricSource,
    profile: &Profile,
    scopes: &Scopes,
) -> Result<(), RunError> {
    build_requests(
        source,
        profile,
        scopes,
        0.0,
        60.0,
        15.0,
        &[Side::Baseline, Side::Canary],
    )
    .map(|_| ())
}

/// Why a metric cannot be fetched from a source that runs queries: the keys it lacks,
/// where a profile would put them.
fn missing_query(
    spec: &MetricSpec,
    key: &str,
    language: QueryLanguage,
    profile: &Profile,
    source: &dyn MetricSource,
) -> String {
    let keys = if key.contains(':') {
        "errors_query/total_query"
    } else {
        "query"
    };
    let place = match language {
        QueryLanguage::Prometheus => keys.to_owned(),
        other => format!("[metrics.queries.{other}] {keys}"),
    };
    format!(
        "metric {:?} has no {place} in profile {:?}, and {} runs {} queries",
        spec.name,
        profile.name,
        source.describe(),
        language_name(language)
    )
}

/// The language's name in messages.
fn language_name(language: QueryLanguage) -> &'static str {
    match language {
        QueryLanguage::Prometheus => "PromQL",
        QueryLanguage::Influxdb => "InfluxQL",
        QueryLanguage::Graphite => "Graphite",
        QueryLanguage::Datadog => "Datadog",
        QueryLanguage::Cloudwatch => "CloudWatch",
    }
}

type Answers = BTreeMap<(String, Side), Result<Vec<LabeledSeries>, SourceError>>;

async fn run_requests(source: &dyn MetricSource, requests: Vec<Request>) -> Answers {
    stream::iter(requests)
        .map(|mut request| async move {
            let range = request.range.take().expect("each request is sent once");
            tracing::debug!(
                source = %source.describe(),
                metric = %range.metric,
                side = range.side.as_str(),
                query = %range.query,
                start = range.start,
                end = range.end,
                step = range.step,
                raw_samples = range.raw_samples,
                "querying the metric source"
            );
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
    /// Each side's paired points per instance, when the series name their instances.
    instances: [Vec<InstanceSeries>; 2],
}

/// A side's series split by instance (the values of `instance_labels`), each tagged
/// with the label set it pairs by; series naming no instance are left out.
fn by_instance(
    series: &[LabeledSeries],
    excluded: &[String],
    instance_labels: &[String],
) -> Vec<(BTreeMap<String, String>, InstanceSeries)> {
    series
        .iter()
        .filter_map(|one| {
            let instance = instance_name(&one.labels, instance_labels)?;
            Some((
                reduced_labels(&one.labels, excluded),
                InstanceSeries {
                    instance,
                    samples: one.samples.clone(),
                },
            ))
        })
        .collect()
}

/// The instances of the series that found a counterpart, merged by instance name (one
/// host serving several routes is one instance), samples in time order.
fn paired_instances(
    tagged: Vec<(BTreeMap<String, String>, InstanceSeries)>,
    paired: &[BTreeMap<String, String>],
) -> Vec<InstanceSeries> {
    let mut merged: BTreeMap<String, Vec<Sample>> = BTreeMap::new();
    for (key, one) in tagged {
        if paired.contains(&key) {
            merged.entry(one.instance).or_default().extend(one.samples);
        }
    }
    merged
        .into_iter()
        .map(|(instance, mut samples)| {
            samples.sort_by(|a, b| a.timestamp.total_cmp(&b.timestamp));
            InstanceSeries { instance, samples }
        })
        .collect()
}

/// Pools paired series into each side's samples, or explains why there are none.
/// Without a baseline (`with_baseline` false) the canary's series are pooled as they
/// are: there is nothing to pair them with.
fn pooled(
    answers: &mut Answers,
    key: &str,
    scopes: &Scopes,
    instance_labels: &[String],
    with_baseline: bool,
) -> Result<Pooled, String> {
    let mut take = |side: Side| {
        answers
            .remove(&(key.to_owned(), side))
            .unwrap_or_else(|| Ok(Vec::new()))
    };
    let baseline = take(Side::Baseline).map_err(|error| format!("baseline `{key}`: {error}"))?;
    let canary = take(Side::Canary).map_err(|error| format!("canary `{key}`: {error}"))?;
    if !with_baseline {
        if canary.is_empty() {
            return Err(format!(
                "the canary query for `{key}` returned no series (is the canary scope right?)"
            ));
        }
        return Ok(Pooled {
            baseline: Vec::new(),
            canary: canary
                .into_iter()
                .flat_map(|series| series.samples)
                .collect(),
            notes: Vec::new(),
            instances: [Vec::new(), Vec::new()],
        });
    }
    for (side, series) in [(Side::Baseline, &baseline), (Side::Canary, &canary)] {
        if series.is_empty() {
            return Err(format!(
                "the {} query for `{key}` returned no series (is the metric name right, and is the side getting traffic?)",
                side.as_str()
            ));
        }
    }
    // Instances differ between the sides by design (a canary pod is not a baseline
    // pod), so their labels do not pair series: the series of one side's instances are
    // pooled, and which instance each point came from is kept beside the pool.
    let mut excluded = scopes.scope_labels.clone();
    excluded.extend(instance_labels.iter().cloned());
    let baseline_instances = by_instance(&baseline, &excluded, instance_labels);
    let canary_instances = by_instance(&canary, &excluded, instance_labels);
    let pairing = pair_series(baseline, canary, &excluded);
    let notes = pairing.notes(&excluded);
    let paired: Vec<BTreeMap<String, String>> = pairing
        .pairs
        .iter()
        .map(|(baseline_series, _)| reduced_labels(&baseline_series.labels, &excluded))
        .collect();
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
        instances: [
            paired_instances(baseline_instances, &paired),
            paired_instances(canary_instances, &paired),
        ],
    })
}

/// Cumulative counters to per-step counts: each series' increase from one point to
/// the next (a drop is a counter reset, and the new value is counted from zero, as
/// Prometheus' `increase` does), stamped at the later point, then summed across series
/// per timestamp into one series per instance (labelled with its `instance_labels`
/// only; one unlabeled series for the series naming no instance) — the side's events,
/// each counted once, and which instance counted them.
/// A series' first point has no predecessor and is left out, unless the series starts
/// after the side's earliest series did: it appeared within the window (a new pod, a
/// first error), so its counter is counted from zero.
fn counter_increases(series: Vec<LabeledSeries>, instance_labels: &[String]) -> Vec<LabeledSeries> {
    let key = |t: f64| (t * 1000.0).round() as i64;
    let earliest = series
        .iter()
        .filter_map(|s| s.samples.iter().map(|p| p.timestamp).reduce(f64::min))
        .reduce(f64::min);
    let Some(earliest) = earliest else {
        return series;
    };
    type Increases = BTreeMap<i64, (f64, f64)>;
    let mut groups: BTreeMap<BTreeMap<String, String>, Increases> = BTreeMap::new();
    for one in series {
        let instance: BTreeMap<String, String> = one
            .labels
            .iter()
            .filter(|(label, _)| instance_labels.contains(label))
            .map(|(label, value)| (label.clone(), value.clone()))
            .collect();
        let by_time = groups.entry(instance).or_default();
        let mut samples: Vec<Sample> = one
            .samples
            .into_iter()
            .filter(|p| p.value.is_finite())
            .collect();
        samples.sort_by(|a, b| a.timestamp.total_cmp(&b.timestamp));
        let Some(first) = samples.first() else {
            continue;
        };
        let mut add = |timestamp: f64, increase: f64| {
            by_time.entry(key(timestamp)).or_insert((timestamp, 0.0)).1 += increase;
        };
        if first.timestamp > earliest + 1e-6 {
            add(first.timestamp, first.value.max(0.0));
        }
        for pair in samples.windows(2) {
            let (before, after) = (pair[0].value, pair[1].value);
            add(
                pair[1].timestamp,
                if after >= before {
                    after - before
                } else {
                    after.max(0.0)
                },
            );
        }
    }
    groups
        .into_iter()
        .filter(|(_, by_time)| !by_time.is_empty())
        .map(|(labels, by_time)| LabeledSeries {
            labels,
            samples: by_time
                .into_values()
                .map(|(timestamp, value)| Sample { timestamp, value })
                .collect(),
        })
        .collect()
}

/// One side's counts per instance: each instance that has totals, with its errors (none
/// when it had no error series: a pod without a single error).
fn instance_counts(
    errors: Vec<InstanceSeries>,
    totals: Vec<InstanceSeries>,
) -> Vec<InstanceCounts> {
    let mut errors: BTreeMap<String, Vec<Sample>> = errors
        .into_iter()
        .map(|one| (one.instance, one.samples))
        .collect();
    totals
        .into_iter()
        .map(|one| InstanceCounts {
            errors: errors.remove(&one.instance).unwrap_or_default(),
            instance: one.instance,
            total: one.samples,
        })
        .collect()
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

/// What one fetch brought back.
#[derive(Debug, Default)]
pub struct Fetched {
    /// The baseline's observations (empty at a stage without a baseline).
    pub baseline: Observations,
    /// The canary's observations, with every problem of either side.
    pub canary: Observations,
    /// The queries (`metric` or `metric:errors` / `metric:total`) the source answered
    /// for the canary with no series at all: once the canary gets traffic, a scope that
    /// matches nothing everywhere is a configuration error, not missing data.
    pub canary_queries_without_series: Vec<String>,
    /// How many canary queries were answered (with or without series).
    pub canary_queries_answered: usize,
    /// How many baseline queries were answered with at least one series: the baseline
    /// gets as much traffic as the canary, so a baseline with series and a canary with
    /// none is a scope that matches nothing, not a canary without traffic yet.
    pub baseline_queries_with_series: usize,
}

impl Fetched {
    /// Whether the canary scope matches nothing: every canary query was answered without
    /// a series while the same-size baseline had series. At the first look this is a
    /// configuration error.
    pub fn canary_scope_matches_nothing(&self) -> bool {
        self.baseline_queries_with_series > 0
            && self.canary_queries_answered > 0
            && self.canary_queries_without_series.len() == self.canary_queries_answered
    }
}

/// The resolution a rollout's look at `stage` fetches at: the plan's step, at most the
/// stage's interval.
pub fn look_step(profile: &Profile, stage: &Stage) -> f64 {
    profile
        .plan
        .as_ref()
        .map_or(15.0, |plan| plan.settings.step.seconds())
        .min(stage.interval.seconds())
}

/// Fetches every metric of `profile` over `(from, to]` at resolution `step`: for both
/// sides, or for the canary alone `without_baseline` (a stage where the canary serves
/// everyone; the baseline's observations are then empty).
pub async fn fetch_window(
    source: &dyn MetricSource,
    profile: &Profile,
    scopes: &Scopes,
    (from, to, step): (f64, f64, f64),
    with_baseline: bool,
) -> Fetched {
    let sides: &[Side] = if with_baseline {
        &[Side::Baseline, Side::Canary]
    } else {
        &[Side::Canary]
    };
    let baseline = Observations::default();
    let mut canary = Observations::default();
    let requests = match build_requests(source, profile, scopes, from, to, step, sides) {
        Ok(requests) => requests,
        Err(error) => {
            // Preflight refuses such profiles; should one slip through, every metric is
            // inconclusive with the reason rather than the rollout crashing.
            for spec in &profile.metrics {
                canary.problems.insert(spec.name.clone(), error.to_string());
            }
            return Fetched {
                baseline,
                canary,
                ..Fetched::default()
            };
        }
    };
    let mut answers = run_requests(source, requests).await;
    let canary_answers: Vec<(String, bool)> = answers
        .iter()
        .filter(|((_, side), _)| *side == Side::Canary)
        .filter_map(|((key, _), answer)| {
            answer
                .as_ref()
                .ok()
                .map(|series| (key.clone(), series.is_empty()))
        })
        .collect();
    let canary_queries_answered = canary_answers.len();
    let baseline_queries_with_series = answers
        .iter()
        .filter(|((_, side), answer)| {
            *side == Side::Baseline && answer.as_ref().is_ok_and(|series| !series.is_empty())
        })
        .count();
    difference_counters(&mut answers, source, profile, sides);
    let canary_queries_without_series: Vec<String> = canary_answers
        .into_iter()
        .filter(|(_, empty)| *empty)
        .map(|(key, _)| key)
        .collect();
    let mut assembly = Assembly {
        source,
        profile,
        scopes,
        with_baseline,
        answers,
        baseline,
        canary,
    };
    for spec in &profile.metrics {
        assembly.add(spec);
    }
    Fetched {
        baseline: assembly.baseline,
        canary: assembly.canary,
        canary_queries_without_series,
        canary_queries_answered,
        baseline_queries_with_series,
    }
}

/// Turns the answers of cumulative counter queries into per-step increases. Sources
/// that run no queries (replays, simulations) serve per-step counts, as recorded files
/// hold them, whatever the queries would have returned.
fn difference_counters(
    answers: &mut Answers,
    source: &dyn MetricSource,
    profile: &Profile,
    sides: &[Side],
) {
    let counters = profile.metrics.iter().filter(|spec| {
        source.uses_queries()
            && spec
                .queries_in(source.language())
                .is_some_and(|set| set.cumulative)
    });
    for spec in counters {
        for (key, _) in metric_queries(spec, source.language()) {
            for side in sides {
                if let Some(Ok(series)) = answers.get_mut(&(key.clone(), *side)) {
                    *series =
                        counter_increases(std::mem::take(series), &profile.judge.instance_labels);
                }
            }
        }
    }
}

/// The observations of both sides, built metric by metric from the answers.
struct Assembly<'a> {
    source: &'a dyn MetricSource,
    profile: &'a Profile,
    scopes: &'a Scopes,
    with_baseline: bool,
    answers: Answers,
    baseline: Observations,
    canary: Observations,
}

impl Assembly<'_> {
    /// Adds `spec`'s data to both sides, or its problem to the canary's.
    fn add(&mut self, spec: &MetricSpec) {
        let keys = metric_queries(spec, self.source.language());
        let result = if keys.len() == 1 {
            self.samples(spec, &keys[0].0)
        } else {
            self.counts(spec, &keys[0].0, &keys[1].0)
        };
        match result {
            Ok((baseline_data, canary_data, notes)) => {
                self.baseline
                    .metrics
                    .insert(spec.name.clone(), baseline_data);
                self.canary.metrics.insert(spec.name.clone(), canary_data);
                if !notes.is_empty() {
                    self.canary
                        .problems
                        .insert(spec.name.clone(), notes.join("; "));
                }
            }
            Err(problem) => {
                self.canary.problems.insert(spec.name.clone(), problem);
            }
        }
    }

    fn pool(&mut self, key: &str) -> Result<Pooled, String> {
        pooled(
            &mut self.answers,
            key,
            self.scopes,
            &self.profile.judge.instance_labels,
            self.with_baseline,
        )
    }

    /// Where a metric's data came from, for data problems: the source and the metric's
    /// place in the profile.
    fn origin(&self, name: &str) -> Location {
        Location {
            file: self.source.describe(),
            line: self
                .profile
                .metrics
                .iter()
                .position(|m| m.name == name)
                .map_or(0, |index| index + 1),
        }
    }

    /// A sampled metric (one query), with its per-instance points when both sides name
    /// their instances.
    fn samples(&mut self, spec: &MetricSpec, key: &str) -> Result<SidesData, String> {
        let samples = self.pool(key)?;
        let [baseline_instances, canary_instances] = samples.instances;
        if !baseline_instances.is_empty() && !canary_instances.is_empty() {
            self.baseline
                .instances
                .insert(spec.name.clone(), baseline_instances);
            self.canary
                .instances
                .insert(spec.name.clone(), canary_instances);
        }
        Ok((
            MetricData::Samples {
                samples: samples.baseline,
                origin: self.origin(&spec.name),
            },
            MetricData::Samples {
                samples: samples.canary,
                origin: self.origin(&spec.name),
            },
            samples.notes,
        ))
    }

    /// A counted metric (errors and totals), with its per-instance counts when both
    /// sides name their instances.
    fn counts(
        &mut self,
        spec: &MetricSpec,
        errors_key: &str,
        totals_key: &str,
    ) -> Result<SidesData, String> {
        let errors = self.pool(errors_key)?;
        let totals = self.pool(totals_key)?;
        let [baseline_errors, canary_errors] = errors.instances;
        let [baseline_totals, canary_totals] = totals.instances;
        let baseline_instances = instance_counts(baseline_errors, baseline_totals);
        let canary_instances = instance_counts(canary_errors, canary_totals);
        if !baseline_instances.is_empty() && !canary_instances.is_empty() {
            self.baseline
                .count_instances
                .insert(spec.name.clone(), baseline_instances);
            self.canary
                .count_instances
                .insert(spec.name.clone(), canary_instances);
        }
        let mut notes = errors.notes;
        notes.extend(totals.notes);
        let (baseline_errors, baseline_total) = counts(errors.baseline, totals.baseline);
        let (canary_errors, canary_total) = counts(errors.canary, totals.canary);
        Ok((
            MetricData::Counts {
                errors: baseline_errors,
                total: baseline_total,
                origin: self.origin(&spec.name),
            },
            MetricData::Counts {
                errors: canary_errors,
                total: canary_total,
                origin: self.origin(&spec.name),
            },
            notes,
        ))
    }
}

/// One metric's data on both sides, and the notes on it.
type SidesData = (MetricData, MetricData, Vec<String>);

/// How long preflight waits for a live source's first data before it blames the
/// query: a Prometheus that has just started (or just been given a new target) scrapes
/// it a few seconds later (2.42 hands new targets to its scraper every 5 s).
pub const FIRST_SCRAPE_WAIT: std::time::Duration = std::time::Duration::from_secs(20);

/// Checks, before anything is actuated, that every query renders, that the source
/// accepts it, and that the side the first stage compares with (the baseline; the
/// canary at a first stage without one) has data over the first lookback — the check
/// that catches a misspelled metric name. A live source (one that runs queries) that
/// has no data yet is asked again every 2 s for up to `first_scrape_wait`, with the
/// window moved on by the time waited, so a Prometheus started a moment ago is not
/// taken for a misspelling.
pub async fn preflight(
    source: &dyn MetricSource,
    profile: &Profile,
    scopes: &Scopes,
    now: f64,
    first_stage: &Stage,
    first_scrape_wait: std::time::Duration,
) -> Result<(), RunError> {
    let step = profile
        .plan
        .as_ref()
        .map_or(15.0, |plan| plan.settings.step.seconds());
    let lookback = first_stage.lookback.seconds();
    let side = if first_stage.has_baseline() {
        Side::Baseline
    } else {
        Side::Canary
    };
    let started = std::time::Instant::now();
    loop {
        let waited = started.elapsed();
        let at = now + waited.as_secs_f64();
        let requests: Vec<Request> =
            build_requests(source, profile, scopes, at - lookback, at, step, &[side])?;
        let metric_of: BTreeMap<String, String> = requests
            .iter()
            .map(|r| (r.key.clone(), r.metric.clone()))
            .collect();
        let answers = run_requests(source, requests).await;
        let mut empty = None;
        for ((key, _), answer) in answers {
            let metric = metric_of.get(&key).map_or(key.as_str(), String::as_str);
            match answer {
                Err(error @ SourceError::BadQuery { .. }) => {
                    return Err(RunError::Config(format!("metric {metric:?}: {error}")));
                }
                Err(error) => return Err(RunError::Source(error)),
                Ok(series) if series.is_empty() => {
                    empty.get_or_insert((metric.to_owned(), key));
                }
                Ok(_) => {}
            }
        }
        let Some((metric, key)) = empty else {
            return Ok(());
        };
        if source.uses_queries() && waited < first_scrape_wait {
            if waited.is_zero() {
                tracing::info!(metric = %metric, "no data yet; waiting up to {} s for the source's first scrape", first_scrape_wait.as_secs());
            }
            tokio::time::sleep(std::time::Duration::from_secs(2)).await;
            continue;
        }
        let scope = scopes.for_side(side);
        let waited_text = if source.uses_queries() && !first_scrape_wait.is_zero() {
            format!(" (after waiting {} s for a first scrape)", waited.as_secs())
        } else {
            String::new()
        };
        return Err(RunError::Config(format!(
            "metric {metric:?}: the {} query for `{key}` returned no data over the last {} s{waited_text}; \
             check the metric name and the {} scope `{scope}` before rolling out",
            side.as_str(),
            lookback.round(),
            side.as_str(),
        )));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn series(pod: &str, points: &[(f64, f64)]) -> LabeledSeries {
        LabeledSeries {
            labels: BTreeMap::from([("pod".to_owned(), pod.to_owned())]),
            samples: points
                .iter()
                .map(|&(timestamp, value)| Sample { timestamp, value })
                .collect(),
        }
    }

    fn values(series: &[LabeledSeries]) -> Vec<(f64, f64)> {
        series[0]
            .samples
            .iter()
            .map(|s| (s.timestamp, s.value))
            .collect()
    }

    fn routed(pod: &str, route: &str, points: &[(f64, f64)]) -> LabeledSeries {
        let mut one = series(pod, points);
        one.labels.insert("track".to_owned(), "x".to_owned());
        one.labels.insert("route".to_owned(), route.to_owned());
        one
    }

    /// Issue 14: per-pod series of the two sides name different pods by design. They
    /// pair by their other labels, pool per side, and keep which pod each point came
    /// from; a route without a counterpart is still a note, and its pods are left out.
    #[test]
    fn per_instance_series_pair_across_instances_and_keep_their_instances() {
        let scopes = Scopes::from_matchers("track=\"baseline\"", "track=\"canary\"");
        let mut answers: Answers = BTreeMap::new();
        answers.insert(
            ("latency".to_owned(), Side::Baseline),
            Ok(vec![
                routed("b-0", "/a", &[(5.0, 1.0), (10.0, 2.0)]),
                routed("b-1", "/a", &[(5.0, 3.0)]),
                routed("b-1", "/only-baseline", &[(5.0, 9.0)]),
            ]),
        );
        answers.insert(
            ("latency".to_owned(), Side::Canary),
            Ok(vec![routed("c-0", "/a", &[(5.0, 4.0), (10.0, 5.0)])]),
        );
        let pooled = pooled(&mut answers, "latency", &scopes, &["pod".to_owned()], true).unwrap();
        let mut baseline: Vec<f64> = pooled.baseline.iter().map(|s| s.value).collect();
        baseline.sort_by(f64::total_cmp);
        assert_eq!(baseline, [1.0, 2.0, 3.0]);
        assert_eq!(pooled.canary.len(), 2);
        assert_eq!(pooled.notes.len(), 1, "{:?}", pooled.notes);
        assert!(
            pooled.notes[0].contains("/only-baseline"),
            "{:?}",
            pooled.notes
        );
        let [baseline_instances, canary_instances] = pooled.instances;
        let names: Vec<&str> = baseline_instances
            .iter()
            .map(|i| i.instance.as_str())
            .collect();
        assert_eq!(names, ["pod=\"b-0\"", "pod=\"b-1\""]);
        assert_eq!(
            baseline_instances[1].samples.len(),
            1,
            "the unpaired route is left out"
        );
        assert_eq!(canary_instances.len(), 1);
        assert_eq!(canary_instances[0].samples.len(), 2);
    }

    /// Counter increases of series that name no instance: one merged series.
    fn counter_increases_merged(series: Vec<LabeledSeries>) -> Vec<LabeledSeries> {
        counter_increases(series, &[])
    }

    #[test]
    fn counter_increases_keep_one_series_per_instance_labelled_by_its_instance_labels() {
        let with_route = |pod: &str, route: &str, points: &[(f64, f64)]| {
            let mut one = series(pod, points);
            one.labels.insert("route".to_owned(), route.to_owned());
            one
        };
        let counted = counter_increases(
            vec![
                with_route("web-0", "/a", &[(0.0, 10.0), (5.0, 13.0)]),
                with_route("web-0", "/b", &[(0.0, 1.0), (5.0, 2.0)]),
                with_route("web-1", "/a", &[(0.0, 7.0), (5.0, 17.0)]),
            ],
            &["pod".to_owned(), "instance".to_owned()],
        );
        let per_pod: Vec<(String, Vec<(f64, f64)>)> = counted
            .iter()
            .map(|one| {
                (
                    format!("{:?}", one.labels),
                    one.samples.iter().map(|p| (p.timestamp, p.value)).collect(),
                )
            })
            .collect();
        assert_eq!(
            per_pod,
            [
                (r#"{"pod": "web-0"}"#.to_owned(), vec![(5.0, 4.0)]),
                (r#"{"pod": "web-1"}"#.to_owned(), vec![(5.0, 10.0)]),
            ],
            "each pod's routes summed, the route label dropped"
        );
    }

    #[test]
    fn counter_increases_count_every_event_once_and_sum_the_series() {
        let counted = counter_increases_merged(vec![
            series("a", &[(0.0, 10.0), (5.0, 13.0), (10.0, 13.0), (15.0, 20.0)]),
            series(
                "b",
                &[(0.0, 100.0), (5.0, 101.0), (10.0, 105.0), (15.0, 105.0)],
            ),
        ]);
        assert_eq!(counted.len(), 1, "one unlabeled series per side");
        assert!(counted[0].labels.is_empty());
        assert_eq!(values(&counted), [(5.0, 4.0), (10.0, 4.0), (15.0, 7.0)]);
        let total: f64 = counted[0].samples.iter().map(|s| s.value).sum();
        assert_eq!(
            total,
            (20.0 - 10.0) + (105.0 - 100.0),
            "the counters' whole increase"
        );
    }

    #[test]
    fn a_counter_reset_counts_from_zero_and_a_new_series_from_its_first_value() {
        let counted = counter_increases_merged(vec![
            series("a", &[(0.0, 50.0), (5.0, 52.0), (10.0, 3.0), (15.0, 4.0)]),
            // Appeared at 10 s (a first error, a new pod): counted from zero.
            series("b", &[(10.0, 2.0), (15.0, 2.0)]),
        ]);
        assert_eq!(values(&counted), [(5.0, 2.0), (10.0, 5.0), (15.0, 1.0)]);
    }

    #[test]
    fn no_points_give_no_series() {
        assert!(counter_increases_merged(Vec::new()).is_empty());
        assert!(counter_increases_merged(vec![series("a", &[(0.0, 1.0)])]).is_empty());
    }
}
