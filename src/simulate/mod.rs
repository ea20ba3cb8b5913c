//! The decision-quality benchmark behind `canary simulate`: seeded, labeled rollouts
//! run through the real [`RolloutRunner`] with its repeated looks, counted per family
//! and judge mode.
//!
//! Each rollout gets its own [`SimulatedService`], a [`MetricSource`] whose every value
//! is a pure function of (seed, metric, side, timestamp) and of the canary's traffic at
//! that timestamp: the runner's flag changes are written onto a traffic timeline the
//! source reads, so request counts (and the noise of per-step latency) follow the
//! stages, and a fault can depend on the stage. Baseline and canary are the same size
//! at every stage, as in the plans this engine runs.
//!
//! What is counted per family: the share of rollouts promoted, rolled back and left for
//! a person (the hold timeout with `on_hold_timeout = "wait"`), and for faulty families
//! the median detection delay: looks from the first look that saw the fault to the
//! look that rolled back.
//!
//! The families ending in `-hosts` and the others of issue 14 (see
//! [`Family::is_production`]) answer from a production-shaped service instead
//! ([`production`]): one series per instance (`instance="i-<n>"`, the same label values
//! on both sides so that pairing by labels pairs them), instance levels differing by a
//! host spread, a shared drift on both sides, latency from a sampled share of requests.
//! The older families keep their single unlabeled series per side and their values.

pub mod production;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use serde::Serialize;

use crate::actuators::Actuator;
use crate::actuators::log_only::LogOnlyActuator;
use crate::domain::{JudgeMode, Profile, Sample};
use crate::format::percent;
use crate::scheduler::{Decision, Rollout, RolloutRunner, RolloutStatus, Scopes};
use crate::sources::synthetic::{SplitMix, point_seed};
use crate::sources::{LabeledSeries, MetricSource, RangeRequest, Side, SourceError};

pub use production::ProductionShape;
use production::{DriftPath, SharedDrift};

/// The built-in profile (`fixtures/simulation/profile.toml`).
pub const DEFAULT_PROFILE: &str = include_str!("../../fixtures/simulation/profile.toml");

/// Analysis time of every simulated rollout's start (a fixed Monday, 00:00 UTC).
const T0: f64 = 1_767_571_200.0;

/// A labeled kind of rollout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Family {
    /// A/A at normal traffic.
    Healthy,
    /// A/A at a twentieth of the traffic.
    HealthyLowTraffic,
    /// A/A whose traffic and errors burst, equally on both sides.
    HealthyBursty,
    /// Canary latency +5 % (at the profile's tolerance).
    Latency5,
    /// Canary latency +20 %.
    Latency20,
    /// Canary latency +50 %.
    Latency50,
    /// Canary latency variance doubled at the same median.
    VarianceX2,
    /// Canary error rate × 2.
    ErrorsX2,
    /// Canary error rate × 5.
    ErrorsX5,
    /// Canary errors × 10 in one minute out of ten, at random.
    ErrorBursts,
    /// Canary latency +30 % only once its traffic reaches 25 %.
    SlowAtHigherStages,
    /// The canary's series stop at a random time in the first two stages.
    DataDropout,
    /// A/A on a fleet: instances per stage, host-to-host differences, sampled latency.
    HealthyHosts,
    /// `healthy-hosts` with a shared drift (daily curve and wobble) on both sides.
    HealthyHostsDrift,
    /// The production shape at 10 requests/s for the whole service.
    HealthyLowTraffic10Rps,
    /// The production shape with traffic and errors bursting equally on both sides.
    HealthyBurstyBoth,
    /// A canary slower by exactly the host spread (`exp(τ)`, +3 % at τ = 0.03): inside
    /// the profile's 5 % tolerance, so labelled healthy.
    SlowerByHostSpread,
    /// The production shape, canary latency +20 %.
    Latency20Hosts,
    /// The production shape, canary error rate × 2.
    ErrorsX2Hosts,
    /// The production shape, canary latency variance doubled at the same median.
    VarianceX2Hosts,
    /// The production shape; while the canary is at 1–5 % traffic, 2 % of its steps start
    /// a 15–30 s burst of 15 % errors; healthy afterwards.
    ErrorBurstsSmallStages,
    /// The production shape; the canary's series stop at a random time in the first two
    /// stages.
    NoDataHosts,
}

impl Family {
    /// Every family, in table order.
    pub const ALL: [Family; 22] = [
        Family::Healthy,
        Family::HealthyLowTraffic,
        Family::HealthyBursty,
        Family::Latency5,
        Family::Latency20,
        Family::Latency50,
        Family::VarianceX2,
        Family::ErrorsX2,
        Family::ErrorsX5,
        Family::ErrorBursts,
        Family::SlowAtHigherStages,
        Family::DataDropout,
        Family::HealthyHosts,
        Family::HealthyHostsDrift,
        Family::HealthyLowTraffic10Rps,
        Family::HealthyBurstyBoth,
        Family::SlowerByHostSpread,
        Family::Latency20Hosts,
        Family::ErrorsX2Hosts,
        Family::VarianceX2Hosts,
        Family::ErrorBurstsSmallStages,
        Family::NoDataHosts,
    ];

    /// The command-line name.
    pub fn name(self) -> &'static str {
        match self {
            Family::Healthy => "healthy",
            Family::HealthyLowTraffic => "healthy-low-traffic",
            Family::HealthyBursty => "healthy-bursty",
            Family::Latency5 => "latency+5%",
            Family::Latency20 => "latency+20%",
            Family::Latency50 => "latency+50%",
            Family::VarianceX2 => "variance-x2",
            Family::ErrorsX2 => "errors-x2",
            Family::ErrorsX5 => "errors-x5",
            Family::ErrorBursts => "error-bursts",
            Family::SlowAtHigherStages => "slow-at-higher-stages",
            Family::DataDropout => "data-dropout",
            Family::HealthyHosts => "healthy-hosts",
            Family::HealthyHostsDrift => "healthy-hosts-drift",
            Family::HealthyLowTraffic10Rps => "healthy-low-traffic-10rps",
            Family::HealthyBurstyBoth => "healthy-bursty-both",
            Family::SlowerByHostSpread => "slower-by-host-spread",
            Family::Latency20Hosts => "latency+20%-hosts",
            Family::ErrorsX2Hosts => "errors-x2-hosts",
            Family::VarianceX2Hosts => "variance-x2-hosts",
            Family::ErrorBurstsSmallStages => "error-bursts-small-stages",
            Family::NoDataHosts => "no-data-hosts",
        }
    }

    /// Whether the family runs on the production-shaped service (a fleet per side,
    /// one series per instance) rather than the single-series one.
    pub fn is_production(self) -> bool {
        self >= Family::HealthyHosts
    }

    /// Whether a shared drift moves both sides (every production family but
    /// `healthy-hosts`, which isolates the host differences).
    fn has_drift(self) -> bool {
        self.is_production() && self != Family::HealthyHosts
    }

    /// Whether traffic and errors burst in the same minutes on both sides.
    fn bursts_on_both_sides(self) -> bool {
        matches!(self, Family::HealthyBursty | Family::HealthyBurstyBoth)
    }

    /// The seed of a rollout's service: the rollout seed for the older families (their
    /// values stay what they were), mixed with the family's name for the production
    /// ones, so that each of those draws its own hosts and drift.
    fn service_seed(self, seed: u64) -> u64 {
        if self.is_production() {
            point_seed(seed, self.name(), Side::Baseline, 0.0)
        } else {
            seed
        }
    }

    /// Parses a command-line name.
    pub fn parse(name: &str) -> Result<Family, String> {
        Family::ALL
            .into_iter()
            .find(|f| f.name() == name)
            .ok_or_else(|| {
                let names: Vec<&str> = Family::ALL.iter().map(|f| f.name()).collect();
                format!("unknown family {name:?}; families: {}", names.join(", "))
            })
    }

    /// What the right outcome is.
    pub fn label(self) -> Label {
        match self {
            Family::Healthy
            | Family::HealthyLowTraffic
            | Family::HealthyBursty
            | Family::HealthyHosts
            | Family::HealthyHostsDrift
            | Family::HealthyLowTraffic10Rps
            | Family::HealthyBurstyBoth
            | Family::SlowerByHostSpread => Label::Healthy,
            Family::Latency5 => Label::AtTolerance,
            Family::DataDropout | Family::NoDataHosts => Label::NoData,
            _ => Label::Faulty,
        }
    }
}

/// What a family's rollouts should end as.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Label {
    /// Promote; a rollback is a false rollback.
    Healthy,
    /// A regression at the tolerance: either outcome is defensible.
    AtTolerance,
    /// Roll back; the share rolled back is the detection rate.
    Faulty,
    /// The canary's data is missing: never promote.
    NoData,
}

/// The traffic of the canary over time: `(from, percent)` entries in time order.
type Timeline = Arc<Mutex<Vec<(f64, f64)>>>;

/// Requests per second of the whole service at normal traffic.
const SERVICE_RPS: f64 = 2_000.0;
/// Requests per second of the whole service in `healthy-low-traffic-10rps`.
const LOW_TRAFFIC_RPS: f64 = 10.0;
/// The baseline error rate.
const ERROR_RATE: f64 = 0.005;
/// Median latency, seconds.
const LATENCY: f64 = 0.2;

/// One simulated service, baseline and canary, for one rollout.
pub struct SimulatedService {
    family: Family,
    seed: u64,
    step: f64,
    traffic: Timeline,
    dropout_at: f64,
    /// The production families' fleet and drift (`None` for the older families).
    production: Option<Production>,
}

/// What the production-shaped families add to a service.
struct Production {
    shape: Arc<ProductionShape>,
    /// The analysed stages' traffic, in plan order: a traffic share maps to its stage,
    /// and so to its instance count.
    stage_traffic: Vec<f64>,
    drift: Option<DriftPath>,
}

/// How far from the start the drift is drawn (beyond it, its last value holds): a day,
/// longer than any simulated rollout's look limit.
const DRIFT_SPAN: f64 = 86_400.0;

impl SimulatedService {
    /// The service of one rollout of `family`; `stage_traffic` lists the plan's stages'
    /// traffic (percent) and `shape` is used by the production families only.
    pub fn new(
        family: Family,
        seed: u64,
        step: f64,
        traffic: Timeline,
        shape: Arc<ProductionShape>,
        stage_traffic: Vec<f64>,
    ) -> Self {
        let seed = family.service_seed(seed);
        let mut rng = SplitMix(seed ^ 0x5eed);
        // Somewhere in the first two stages.
        let dropout_at = T0 + 600.0 + rng.unit() * 3000.0;
        let production = family.is_production().then(|| Production {
            drift: family.has_drift().then(|| {
                // From a lookback before the start, so the first look's window has it.
                DriftPath::new(&shape, seed, T0 - 3_600.0, DRIFT_SPAN, step)
            }),
            shape,
            stage_traffic,
        });
        Self {
            family,
            seed,
            step,
            traffic,
            dropout_at,
            production,
        }
    }

    /// Instances per side at `timestamp`: the count of the stage whose traffic the
    /// canary has then (the last stage at or below it; the first stage before any).
    fn instances_at(&self, production: &Production, timestamp: f64) -> u32 {
        let traffic = self.traffic_at(timestamp);
        let stage = production
            .stage_traffic
            .iter()
            .rposition(|&stage| stage <= traffic + 1e-9)
            .unwrap_or(0);
        production.shape.instances_at_stage(stage)
    }

    /// Whether the canary's step at `timestamp` is inside an error burst: each step
    /// starts one with probability 2 %, lasting one or two steps (15–30 s at 15 s).
    fn in_error_burst(&self, timestamp: f64) -> bool {
        let starts = |at: f64| {
            let mut rng = SplitMix(point_seed(self.seed, "error-burst", Side::Canary, at));
            let started = rng.unit() < 0.02;
            let long = rng.unit() < 0.5;
            (started, long)
        };
        let (now, _) = starts(timestamp);
        let (before, before_long) = starts(timestamp - self.step);
        now || (before && before_long)
    }

    /// One instance's value at `timestamp` on the production-shaped service; `instances`
    /// is the side's instance count then, over which the side's requests are shared.
    fn production_value(
        &self,
        production: &Production,
        metric: &str,
        side: Side,
        instance: u32,
        instances: u32,
        timestamp: f64,
    ) -> Option<f64> {
        let canary = side == Side::Canary;
        if canary && self.family == Family::NoDataHosts && timestamp >= self.dropout_at {
            return None;
        }
        let shape = &production.shape;
        let traffic = self.traffic_at(timestamp);
        let drift = production
            .drift
            .as_ref()
            .map_or(SharedDrift::NONE, |drift| drift.at(timestamp));
        let bursting = self.family.bursts_on_both_sides();
        let surge = if bursting && self.minute_event("surge", timestamp, 0.2) {
            4.0
        } else {
            1.0
        };
        // Each instance serves an equal share of its side's requests.
        let service_rps = if self.family == Family::HealthyLowTraffic10Rps {
            LOW_TRAFFIC_RPS
        } else {
            shape.service_rps
        };
        let requests = service_rps * self.step * traffic / 100.0 * drift.traffic * surge
            / f64::from(instances.max(1));
        // The instance is part of the point's identity: its own draws at every step.
        let instance_seed = self.seed ^ u64::from(instance).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        match metric {
            "latency" => {
                let mut rng = SplitMix(point_seed(instance_seed, "latency", side, timestamp));
                // Latency is recorded for a sampled share of the instance's requests; a
                // step in which none was recorded has no percentile (NaN, as
                // `histogram_quantile` gives for an empty window).
                let recorded = rng.poisson(requests * shape.latency_sampling);
                if recorded < 1.0 {
                    return Some(f64::NAN);
                }
                let mut sigma = 0.06 + 0.8 / recorded.sqrt();
                let mut median =
                    LATENCY * shape.latency_level(self.seed, side, instance) * drift.latency;
                if canary {
                    match self.family {
                        Family::Latency20Hosts => median *= 1.2,
                        Family::VarianceX2Hosts => sigma *= std::f64::consts::SQRT_2,
                        Family::SlowerByHostSpread => median *= shape.host_spread.exp(),
                        _ => {}
                    }
                }
                Some(median * (sigma * rng.normal()).exp())
            }
            "errors" | "requests" => {
                // One draw for both queries, so that errors never exceed requests.
                let mut rng = SplitMix(point_seed(instance_seed, "counts", side, timestamp));
                let total = rng.poisson(requests);
                let mut rate = ERROR_RATE * shape.error_level(self.seed, side, instance);
                if bursting && self.minute_event("outage", timestamp, 0.05) {
                    rate *= 6.0;
                }
                if canary {
                    match self.family {
                        Family::ErrorsX2Hosts => rate *= 2.0,
                        Family::ErrorBurstsSmallStages
                            if traffic <= 5.0 && self.in_error_burst(timestamp) =>
                        {
                            rate = rate.max(0.15);
                        }
                        _ => {}
                    }
                }
                let errors = rng.binomial(total, rate.min(1.0));
                Some(if metric == "errors" { errors } else { total })
            }
            _ => None,
        }
    }

    /// The production families' answer: one series per instance, labelled
    /// `instance="i-<n>"`, each with the steps at which that instance ran.
    fn production_series(
        &self,
        production: &Production,
        metric: &str,
        request: &RangeRequest,
    ) -> Vec<LabeledSeries> {
        let first = (request.start / self.step).floor() as i64 + 1;
        let last = (request.end / self.step).floor() as i64;
        let mut per_instance: Vec<Vec<Sample>> = Vec::new();
        for k in first..=last {
            let timestamp = k as f64 * self.step;
            if timestamp <= request.start || timestamp > request.end {
                continue;
            }
            let instances = self.instances_at(production, timestamp);
            for instance in 0..instances {
                let Some(value) = self.production_value(
                    production,
                    metric,
                    request.side,
                    instance,
                    instances,
                    timestamp,
                ) else {
                    continue;
                };
                let index = instance as usize;
                if per_instance.len() <= index {
                    per_instance.resize_with(index + 1, Vec::new);
                }
                per_instance[index].push(Sample { timestamp, value });
            }
        }
        per_instance
            .into_iter()
            .enumerate()
            .filter(|(_, samples)| !samples.is_empty())
            .map(|(instance, samples)| LabeledSeries {
                labels: BTreeMap::from([("instance".to_owned(), format!("i-{instance}"))]),
                samples,
            })
            .collect()
    }

    fn traffic_at(&self, timestamp: f64) -> f64 {
        let timeline = self
            .traffic
            .lock()
            .expect("the timeline lock is not poisoned");
        timeline
            .iter()
            .rev()
            .find(|(from, _)| *from < timestamp)
            .or(timeline.first())
            .map_or(0.0, |(_, percent)| *percent)
    }

    /// Whether a shared (both-sides) or canary-only hash of the minute falls under `p`.
    fn minute_event(&self, tag: &str, timestamp: f64, p: f64) -> bool {
        let minute = (timestamp / 60.0).floor() * 60.0;
        SplitMix(point_seed(self.seed, tag, Side::Baseline, minute)).unit() < p
    }

    fn value(&self, metric: &str, side: Side, timestamp: f64) -> Option<f64> {
        let canary = side == Side::Canary;
        if canary && self.family == Family::DataDropout && timestamp >= self.dropout_at {
            return None;
        }
        let traffic = self.traffic_at(timestamp);
        let service_rps = match self.family {
            Family::HealthyLowTraffic => SERVICE_RPS / 20.0,
            _ => SERVICE_RPS,
        };
        let surge =
            if self.family == Family::HealthyBursty && self.minute_event("surge", timestamp, 0.2) {
                4.0
            } else {
                1.0
            };
        let requests = service_rps * self.step * traffic / 100.0 * surge;
        let mut rng = SplitMix(point_seed(
            self.seed,
            metric.split(':').next().unwrap_or(metric),
            side,
            timestamp,
        ));
        match metric {
            "latency" => {
                // A per-step latency percentile: noisier when fewer requests make it.
                let mut sigma = 0.06 + 0.8 / requests.max(1.0).sqrt();
                let mut median = LATENCY;
                if canary {
                    match self.family {
                        Family::Latency5 => median *= 1.05,
                        Family::Latency20 => median *= 1.2,
                        Family::Latency50 => median *= 1.5,
                        Family::VarianceX2 => sigma *= std::f64::consts::SQRT_2,
                        Family::SlowAtHigherStages if traffic >= 25.0 => median *= 1.3,
                        _ => {}
                    }
                }
                Some(median * (sigma * rng.normal()).exp())
            }
            "errors" | "requests" => {
                let total = rng.poisson(requests);
                let mut rate = ERROR_RATE;
                if self.family == Family::HealthyBursty
                    && self.minute_event("outage", timestamp, 0.05)
                {
                    rate *= 6.0;
                }
                if canary {
                    match self.family {
                        Family::ErrorsX2 => rate *= 2.0,
                        Family::ErrorsX5 => rate *= 5.0,
                        Family::ErrorBursts if self.minute_event("burst", timestamp, 0.1) => {
                            rate *= 10.0
                        }
                        _ => {}
                    }
                }
                let errors = rng.binomial(total, rate.min(1.0));
                Some(if metric == "errors" { errors } else { total })
            }
            _ => None,
        }
    }
}

/// The simulated metric a profile query names: `latency`, `errors` or `requests`.
fn simulated_metric(query_metric: &str) -> &str {
    match query_metric.split_once(':') {
        Some((_, "errors")) => "errors",
        Some((_, "total")) => "requests",
        _ => query_metric,
    }
}

#[async_trait]
impl MetricSource for SimulatedService {
    fn describe(&self) -> String {
        format!("simulated:{}:seed={}", self.family.name(), self.seed)
    }

    fn uses_queries(&self) -> bool {
        false
    }

    async fn healthcheck(&self) -> Result<(), SourceError> {
        Ok(())
    }

    async fn fetch(&self, request: &RangeRequest) -> Result<Vec<LabeledSeries>, SourceError> {
        let metric = simulated_metric(&request.metric);
        if let Some(production) = &self.production {
            return Ok(self.production_series(production, metric, request));
        }
        let first = (request.start / self.step).floor() as i64 + 1;
        let last = (request.end / self.step).floor() as i64;
        let samples = (first..=last).filter_map(|k| {
            let timestamp = k as f64 * self.step;
            self.value(metric, request.side, timestamp)
                .map(|value| Sample { timestamp, value })
        });
        Ok(LabeledSeries::unlabeled_in_window(samples, request))
    }
}

/// How one rollout ended.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RolloutOutcome {
    /// The final status (`running` when it hit the look limit).
    pub status: RolloutStatus,
    /// Looks taken.
    pub looks: u64,
    /// Looks from the first that saw the fault to the rollback (faulty families).
    pub detection_delay: Option<u64>,
}

/// Runs one rollout of `family` under `profile` to its end; `shape` is the production
/// families' fleet and drift.
pub async fn run_rollout(
    profile: Arc<Profile>,
    family: Family,
    seed: u64,
    shape: Arc<ProductionShape>,
) -> Result<RolloutOutcome, crate::scheduler::RunError> {
    let plan = profile.plan.clone().ok_or_else(|| {
        crate::scheduler::RunError::Config("the profile has no stages".to_owned())
    })?;
    let traffic: Timeline = Arc::new(Mutex::new(vec![(T0, plan.stages[0].traffic.value())]));
    let stage_traffic = plan.stages.iter().map(|s| s.traffic.value()).collect();
    let source = Arc::new(SimulatedService::new(
        family,
        seed,
        plan.settings.step.seconds(),
        Arc::clone(&traffic),
        shape,
        stage_traffic,
    ));
    let actuator: Arc<dyn Actuator> = Arc::new(LogOnlyActuator::new());
    let rollout = Rollout {
        profile,
        flag: "simulated".to_owned(),
        scopes: Scopes {
            baseline: r#"track="baseline""#.to_owned(),
            canary: r#"track="canary""#.to_owned(),
            scope_labels: vec!["track".to_owned()],
        },
        dry_run: false,
    };
    let mut runner = RolloutRunner::new(rollout, source, actuator)?;
    runner.start(T0).await?;
    let max_looks = plan.planned_looks() * 4;
    let mut onset_look: Option<u64> = match family.label() {
        Label::Faulty | Label::AtTolerance if family != Family::SlowAtHigherStages => Some(1),
        _ => None,
    };
    while runner.status() == RolloutStatus::Running && (runner.history().len() as u64) < max_looks {
        let due = runner.next_look_at();
        let traffic_during = runner.traffic().value();
        let record = runner.take_look(due).await?;
        let look = record.look;
        if family == Family::SlowAtHigherStages && traffic_during >= 25.0 && onset_look.is_none() {
            onset_look = Some(look);
        }
        let now_traffic = runner.traffic().value();
        let mut timeline = traffic.lock().expect("the timeline lock is not poisoned");
        if timeline.last().map(|(_, t)| *t) != Some(now_traffic) {
            timeline.push((due, now_traffic));
        }
    }
    let looks = runner.history().len() as u64;
    if let Some(last) = runner.history().last() {
        tracing::debug!(family = family.name(), seed, status = ?runner.status(), stage = %last.stage, reasons = ?last.reasons, "simulated rollout ended");
    }
    let rollback_look = runner
        .history()
        .iter()
        .find(|r| {
            matches!(
                r.decision,
                Decision::Rollback | Decision::ReduceTraffic { .. }
            )
        })
        .map(|r| r.look);
    let detection_delay = match (onset_look, rollback_look) {
        (Some(onset), Some(rollback)) if rollback >= onset => Some(rollback - onset + 1),
        _ => None,
    };
    Ok(RolloutOutcome {
        status: runner.status(),
        looks,
        detection_delay,
    })
}

/// One family under one mode.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FamilyResult {
    /// The family.
    pub family: Family,
    /// What its rollouts should end as.
    pub label: Label,
    /// The judge mode.
    pub mode: JudgeMode,
    /// Rollouts run.
    pub rollouts: usize,
    /// Promoted.
    pub promoted: usize,
    /// Rolled back.
    pub rolled_back: usize,
    /// Held past the hold timeout, waiting for a person.
    pub escalated: usize,
    /// Still running at the look limit.
    pub undecided: usize,
    /// Median looks from the fault to the rollback, over detected rollouts.
    pub median_detection_delay: Option<f64>,
    /// Median looks to the end of a rollout.
    pub median_looks: f64,
}

impl FamilyResult {
    /// `count / rollouts`.
    pub fn share(&self, count: usize) -> f64 {
        count as f64 / self.rollouts.max(1) as f64
    }
}

fn median(values: &mut [f64]) -> Option<f64> {
    values.sort_by(f64::total_cmp);
    crate::stats::quantiles::median_sorted(values)
}

/// What to simulate.
#[derive(Debug, Clone)]
pub struct Simulation {
    /// The profile (its `[judge] mode` is replaced by each of `modes`).
    pub profile: Profile,
    /// The families.
    pub families: Vec<Family>,
    /// The modes, side by side.
    pub modes: Vec<JudgeMode>,
    /// Rollouts per family and mode.
    pub rollouts: usize,
    /// The first seed; rollout `i` of every family and mode uses `seed + i`.
    pub seed: u64,
    /// Rollouts run at once.
    pub jobs: usize,
    /// The production families' fleet and drift.
    pub production: ProductionShape,
}

/// Runs every family under every mode; `on_done` is called after each rollout.
pub async fn simulate(
    simulation: &Simulation,
    on_done: impl Fn() + Send + Sync + 'static,
) -> Result<Vec<FamilyResult>, crate::scheduler::RunError> {
    let on_done = Arc::new(on_done);
    let shape = Arc::new(simulation.production.clone());
    let mut results = Vec::new();
    for &mode in &simulation.modes {
        let mut profile = simulation.profile.clone();
        profile.judge.mode = mode;
        let profile = Arc::new(profile);
        for &family in &simulation.families {
            let mut outcomes = Vec::with_capacity(simulation.rollouts);
            let mut pending = tokio::task::JoinSet::new();
            let mut next = 0;
            while next < simulation.rollouts || !pending.is_empty() {
                while next < simulation.rollouts && pending.len() < simulation.jobs.max(1) {
                    let profile = Arc::clone(&profile);
                    let seed = simulation.seed.wrapping_add(next as u64);
                    let shape = Arc::clone(&shape);
                    pending.spawn(async move { run_rollout(profile, family, seed, shape).await });
                    next += 1;
                }
                if let Some(done) = pending.join_next().await {
                    let outcome = done.map_err(|e| {
                        crate::scheduler::RunError::Config(format!(
                            "a simulated rollout panicked: {e}"
                        ))
                    })??;
                    on_done();
                    outcomes.push(outcome);
                }
            }
            results.push(summarize(family, mode, &outcomes));
        }
    }
    Ok(results)
}

fn summarize(family: Family, mode: JudgeMode, outcomes: &[RolloutOutcome]) -> FamilyResult {
    let count = |status: RolloutStatus| outcomes.iter().filter(|o| o.status == status).count();
    let mut delays: Vec<f64> = outcomes
        .iter()
        .filter(|o| o.status == RolloutStatus::RolledBack)
        .filter_map(|o| o.detection_delay.map(|d| d as f64))
        .collect();
    let mut looks: Vec<f64> = outcomes.iter().map(|o| o.looks as f64).collect();
    FamilyResult {
        family,
        label: family.label(),
        mode,
        rollouts: outcomes.len(),
        promoted: count(RolloutStatus::Promoted),
        rolled_back: count(RolloutStatus::RolledBack),
        escalated: count(RolloutStatus::AwaitingReview),
        undecided: count(RolloutStatus::Running),
        median_detection_delay: median(&mut delays),
        median_looks: median(&mut looks).unwrap_or(0.0),
    }
}

/// The Wilson score interval (95 %, no continuity correction) of `count` out of `n`:
/// unlike the Wald interval it does not collapse to a point at 0 of `n`.
pub fn wilson_interval_95(count: usize, n: usize) -> (f64, f64) {
    if n == 0 {
        return (0.0, 1.0);
    }
    let z = 1.959_963_984_540_054_f64;
    let n = n as f64;
    let p = count as f64 / n;
    let denominator = 1.0 + z * z / n;
    let centre = (p + z * z / (2.0 * n)) / denominator;
    let half = z * (p * (1.0 - p) / n + z * z / (4.0 * n * n)).sqrt() / denominator;
    // At 0 (or n) of n the bound is 0 (or 1) exactly, not a rounding error away.
    let low = if count == 0 { 0.0 } else { centre - half };
    let high = if count as f64 >= n {
        1.0
    } else {
        centre + half
    };
    (low.max(0.0), high.min(1.0))
}

/// The results as a Markdown table, families down, modes side by side.
pub fn markdown_table(results: &[FamilyResult]) -> String {
    let mut modes: Vec<JudgeMode> = Vec::new();
    for result in results {
        if !modes.contains(&result.mode) {
            modes.push(result.mode);
        }
    }
    let mut by_family: BTreeMap<Family, Vec<&FamilyResult>> = BTreeMap::new();
    for result in results {
        by_family.entry(result.family).or_default().push(result);
    }
    let mut out = String::from("| family | what counts |");
    for mode in &modes {
        out.push_str(&format!(
            " {mode}: promoted · rolled back · for review | {mode}: the rate [Wilson 95 %] | {mode}: median delay (looks) |"
        ));
    }
    out.push('\n');
    out.push_str("|---|---|");
    for _ in &modes {
        out.push_str("---|---|---|");
    }
    out.push('\n');
    for (family, rows) in by_family {
        let label = match family.label() {
            Label::Healthy => "false rollbacks",
            Label::AtTolerance => "rolled back (at the tolerance)",
            Label::Faulty => "detection",
            Label::NoData => "no-data promoted",
        };
        out.push_str(&format!("| {} | {label} |", family.name()));
        for mode in &modes {
            match rows.iter().find(|r| r.mode == *mode) {
                Some(r) => {
                    let counted = match r.label {
                        Label::NoData => r.promoted,
                        _ => r.rolled_back,
                    };
                    let (low, high) = wilson_interval_95(counted, r.rollouts);
                    // Faulty families: looks from the fault to the rollback; healthy
                    // ones: looks to the end (the delay a gathering stage adds).
                    let delay = match (r.label, r.median_detection_delay) {
                        (Label::Faulty | Label::AtTolerance, Some(d)) => format!("{d}"),
                        (Label::Healthy, _) => format!("(ends after {})", r.median_looks),
                        _ => "–".to_owned(),
                    };
                    out.push_str(&format!(
                        " {} · {} · {} | **{}** [{}, {}] | {} |",
                        r.promoted,
                        r.rolled_back,
                        r.escalated + r.undecided,
                        percent(r.share(counted)),
                        percent(low),
                        percent(high),
                        delay
                    ));
                }
                None => out.push_str(" – | – | – |"),
            }
        }
        out.push('\n');
    }
    out
}

/// The issue's targets checked against `results` (sequential mode), one line each.
pub fn target_report(results: &[FamilyResult]) -> Vec<(bool, String)> {
    let find = |family: Family, mode: JudgeMode| {
        results
            .iter()
            .find(|r| r.family == family && r.mode == mode)
    };
    let mut lines = Vec::new();
    for r in results.iter().filter(|r| r.mode == JudgeMode::Sequential) {
        match r.label {
            Label::Healthy => {
                let rate = r.share(r.rolled_back);
                lines.push((
                    rate <= 0.01,
                    format!(
                        "{}: false rollbacks {} (target ≤ 1 %)",
                        r.family.name(),
                        percent(rate)
                    ),
                ));
            }
            Label::Faulty => {
                let rate = r.share(r.rolled_back);
                if matches!(
                    r.family,
                    Family::Latency20
                        | Family::ErrorsX2
                        | Family::VarianceX2
                        | Family::ErrorBursts
                        | Family::Latency20Hosts
                        | Family::ErrorsX2Hosts
                        | Family::VarianceX2Hosts
                        | Family::ErrorBurstsSmallStages
                ) {
                    lines.push((
                        rate >= 0.95,
                        format!(
                            "{}: detection {} (target ≥ 95 %)",
                            r.family.name(),
                            percent(rate)
                        ),
                    ));
                }
                if let (Some(seq), Some(fixed)) = (
                    r.median_detection_delay,
                    find(r.family, JudgeMode::Fixed).and_then(|f| f.median_detection_delay),
                ) {
                    lines.push((
                        seq <= fixed,
                        format!(
                            "{}: median detection delay {seq} looks vs {fixed} in fixed mode (target: no worse)",
                            r.family.name()
                        ),
                    ));
                }
            }
            Label::NoData => {
                let rate = r.share(r.promoted);
                lines.push((
                    r.promoted == 0,
                    format!(
                        "{}: promoted {} (target 0 %)",
                        r.family.name(),
                        percent(rate)
                    ),
                ));
            }
            Label::AtTolerance => {}
        }
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A service whose canary stays at `traffic` percent, with the built-in profile's
    /// stages.
    fn service(
        family: Family,
        seed: u64,
        shape: ProductionShape,
        traffic: f64,
    ) -> SimulatedService {
        SimulatedService::new(
            family,
            seed,
            15.0,
            Arc::new(Mutex::new(vec![(T0 - 1e6, traffic)])),
            Arc::new(shape),
            vec![1.0, 5.0, 10.0, 25.0, 50.0],
        )
    }

    fn request(metric: &str, side: Side, start: f64, end: f64) -> RangeRequest {
        RangeRequest {
            metric: metric.to_owned(),
            side,
            query: metric.to_owned(),
            start,
            end,
            step: 15.0,
            raw_samples: false,
        }
    }

    /// The production families' answer to one query.
    fn answer(
        service: &SimulatedService,
        metric: &str,
        side: Side,
        start: f64,
        end: f64,
    ) -> Vec<LabeledSeries> {
        let production = service.production.as_ref().expect("a production family");
        let request = request(metric, side, start, end);
        service.production_series(production, simulated_metric(metric), &request)
    }

    fn instance_labels(series: &[LabeledSeries]) -> Vec<String> {
        series
            .iter()
            .map(|s| s.labels.get("instance").cloned().unwrap_or_default())
            .collect()
    }

    fn log_mean_and_sd(values: &[f64]) -> (f64, f64) {
        let logs: Vec<f64> = values
            .iter()
            .filter(|v| v.is_finite())
            .map(|v| v.ln())
            .collect();
        let n = logs.len() as f64;
        let mean = logs.iter().sum::<f64>() / n;
        let sd = (logs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0)).sqrt();
        (mean, sd)
    }

    #[test]
    fn older_families_keep_one_unlabeled_series_and_their_values() {
        let service = service(Family::Healthy, 5, ProductionShape::default(), 10.0);
        assert!(service.production.is_none());
        let values: Vec<f64> = (1..=3)
            .map(|k| {
                service
                    .value("latency", Side::Canary, T0 + 15.0 * f64::from(k))
                    .expect("a value")
            })
            .collect();
        // Pinned from the single-series service as it was before the production
        // families were added: the older families' results must not move.
        let pinned = [
            0.190_348_597_818_521_65,
            0.197_920_550_406_219,
            0.188_742_912_601_934_63,
        ];
        for (value, pinned) in values.iter().zip(pinned) {
            assert!((value - pinned).abs() < 1e-12, "{values:?}");
        }
    }

    #[test]
    fn every_stage_answers_one_latency_series_per_instance_with_the_same_labels_on_both_sides() {
        let shape = ProductionShape::default();
        for (traffic, expected) in [(1.0, 1), (5.0, 1), (10.0, 5), (25.0, 10), (50.0, 20)] {
            let service = service(Family::HealthyHosts, 3, shape.clone(), traffic);
            let baseline = answer(&service, "latency", Side::Baseline, T0, T0 + 600.0);
            let canary = answer(&service, "latency", Side::Canary, T0, T0 + 600.0);
            assert_eq!(baseline.len(), expected, "at {traffic} %");
            assert_eq!(instance_labels(&baseline), instance_labels(&canary));
            let wanted: Vec<String> = (0..expected).map(|i| format!("i-{i}")).collect();
            let mut labels = instance_labels(&baseline);
            labels.sort();
            let mut wanted_sorted = wanted.clone();
            wanted_sorted.sort();
            assert_eq!(labels, wanted_sorted);
            assert!(baseline.iter().all(|s| s.samples.len() == 40));
        }
    }

    #[test]
    fn the_instances_knob_sets_the_count_per_stage_and_counts_follow_the_stage() {
        let shape = ProductionShape {
            instances: vec![2, 3],
            ..ProductionShape::default()
        };
        let count = |traffic: f64| {
            let service = service(Family::ErrorsX2Hosts, 1, shape.clone(), traffic);
            answer(&service, "errors:errors", Side::Canary, T0, T0 + 300.0).len()
        };
        assert_eq!((count(1.0), count(5.0), count(50.0)), (2, 3, 3));
    }

    #[test]
    fn a_stage_change_inside_the_window_keeps_the_first_instances() {
        let mut service = service(Family::HealthyHosts, 2, ProductionShape::default(), 5.0);
        service.traffic = Arc::new(Mutex::new(vec![(T0 - 1e6, 5.0), (T0 + 300.0, 10.0)]));
        let series = answer(&service, "latency", Side::Baseline, T0, T0 + 600.0);
        let by_label = |label: &str| {
            series
                .iter()
                .find(|s| s.labels["instance"] == label)
                .map_or(0, |s| s.samples.len())
        };
        // i-0 ran through both stages; i-1 to i-4 joined at the second.
        assert_eq!(by_label("i-0"), 40);
        assert_eq!(by_label("i-1"), 20);
        assert_eq!(by_label("i-4"), 20);
        assert_eq!(series.len(), 5);
    }

    #[test]
    fn per_step_latency_is_noisier_when_an_instance_serves_a_smaller_share() {
        let spread_at = |instances: u32| {
            let shape = ProductionShape {
                instances: vec![instances],
                service_rps: 2_000.0,
                host_spread: 0.0,
                ..ProductionShape::default()
            };
            let service = service(Family::HealthyHosts, 9, shape, 10.0);
            let series = answer(&service, "latency", Side::Baseline, T0, T0 + 6000.0);
            let values: Vec<f64> = series[0].samples.iter().map(|s| s.value).collect();
            log_mean_and_sd(&values).1
        };
        let (one, twenty) = (spread_at(1), spread_at(20));
        // 300 recorded requests a step against 15: 0.06 + 0.8/√n is 0.106 against 0.267.
        assert!((one - 0.106).abs() < 0.02, "one instance: {one}");
        assert!((twenty - 0.267).abs() < 0.04, "twenty instances: {twenty}");
    }

    #[test]
    fn instance_levels_differ_by_the_host_spread() {
        let shape = ProductionShape {
            instances: vec![20],
            service_rps: 2_000.0,
            host_spread: 0.1,
            latency_sampling: 1.0,
            ..ProductionShape::default()
        };
        let mut level_logs = Vec::new();
        for seed in 0..20 {
            let service = service(Family::HealthyHosts, seed, shape.clone(), 50.0);
            for series in answer(&service, "latency", Side::Canary, T0, T0 + 3000.0) {
                let values: Vec<f64> = series.samples.iter().map(|s| s.value).collect();
                level_logs.push(log_mean_and_sd(&values).0);
            }
        }
        let levels: Vec<f64> = level_logs.iter().map(|l| l.exp()).collect();
        let (_, spread) = log_mean_and_sd(&levels);
        // 400 instance means, each with a noise of about 0.085/√200 on top of τ = 0.1.
        assert!((spread - 0.1).abs() < 0.012, "spread {spread}");
    }

    /// Per-step means of log latency over a side's instances.
    fn step_means(service: &SimulatedService, side: Side) -> Vec<f64> {
        let series = answer(service, "latency", side, T0, T0 + 7200.0);
        (0..series[0].samples.len())
            .map(|k| {
                let logs: Vec<f64> = series.iter().map(|s| s.samples[k].value.ln()).collect();
                logs.iter().sum::<f64>() / logs.len() as f64
            })
            .collect()
    }

    fn correlation(x: &[f64], y: &[f64]) -> f64 {
        let n = x.len() as f64;
        let (mx, my) = (x.iter().sum::<f64>() / n, y.iter().sum::<f64>() / n);
        let cov: f64 = x.iter().zip(y).map(|(a, b)| (a - mx) * (b - my)).sum();
        let vx: f64 = x.iter().map(|a| (a - mx).powi(2)).sum();
        let vy: f64 = y.iter().map(|b| (b - my).powi(2)).sum();
        cov / (vx * vy).sqrt()
    }

    #[test]
    fn the_shared_drift_moves_both_sides_equally() {
        let shape = ProductionShape {
            instances: vec![20],
            service_rps: 2_000.0,
            host_spread: 0.0,
            latency_sampling: 1.0,
            wobble_latency: 0.1,
            ..ProductionShape::default()
        };
        let drifting = service(Family::HealthyHostsDrift, 4, shape.clone(), 50.0);
        let (baseline, canary) = (
            step_means(&drifting, Side::Baseline),
            step_means(&drifting, Side::Canary),
        );
        assert!(correlation(&baseline, &canary) > 0.8);
        let gap: f64 = baseline
            .iter()
            .zip(&canary)
            .map(|(b, c)| c - b)
            .sum::<f64>()
            / baseline.len() as f64;
        assert!(gap.abs() < 0.01, "mean gap {gap}");
        // Without drift the sides' step means are unrelated.
        let still = service(Family::HealthyHosts, 4, shape, 50.0);
        let unrelated = correlation(
            &step_means(&still, Side::Baseline),
            &step_means(&still, Side::Canary),
        );
        assert!(unrelated.abs() < 0.2, "{unrelated}");
    }

    #[test]
    fn the_same_seed_gives_the_same_values_and_each_family_draws_its_own() {
        let values = |family: Family, seed: u64| {
            let service = service(family, seed, ProductionShape::default(), 25.0);
            answer(&service, "latency", Side::Canary, T0, T0 + 600.0)
        };
        assert_eq!(
            values(Family::HealthyHostsDrift, 8),
            values(Family::HealthyHostsDrift, 8)
        );
        assert_ne!(
            values(Family::HealthyHostsDrift, 8),
            values(Family::HealthyHostsDrift, 9)
        );
        assert_ne!(
            values(Family::HealthyHostsDrift, 8),
            values(Family::HealthyBurstyBoth, 8)
        );
    }

    #[test]
    fn low_traffic_sends_ten_requests_a_second_and_leaves_empty_steps_without_latency() {
        let service = service(
            Family::HealthyLowTraffic10Rps,
            6,
            ProductionShape::default(),
            50.0,
        );
        let total: f64 = answer(&service, "errors:total", Side::Canary, T0, T0 + 3600.0)
            .iter()
            .flat_map(|s| s.samples.iter().map(|p| p.value))
            .sum();
        // Half of 10 requests/s for an hour, give or take the drift.
        assert!((9_000.0..27_000.0).contains(&total), "{total}");
        let latency = answer(&service, "latency", Side::Canary, T0, T0 + 3600.0);
        let nan = latency
            .iter()
            .flat_map(|s| &s.samples)
            .filter(|p| p.value.is_nan())
            .count();
        assert!(nan > 0);
    }

    #[test]
    fn errors_never_exceed_requests_on_an_instance() {
        let service = service(Family::ErrorsX2Hosts, 12, ProductionShape::default(), 1.0);
        let errors = answer(&service, "errors:errors", Side::Canary, T0, T0 + 1800.0);
        let totals = answer(&service, "errors:total", Side::Canary, T0, T0 + 1800.0);
        for (e, t) in errors.iter().zip(&totals) {
            assert_eq!(e.labels, t.labels);
            assert!(
                e.samples
                    .iter()
                    .zip(&t.samples)
                    .all(|(e, t)| e.value <= t.value)
            );
        }
    }

    fn error_rate(family: Family, seed: u64, side: Side, traffic: f64) -> f64 {
        let shape = ProductionShape {
            service_rps: 2_000.0,
            ..ProductionShape::default()
        };
        let service = service(family, seed, shape, traffic);
        let sum = |metric: &str| -> f64 {
            answer(&service, metric, side, T0, T0 + 7200.0)
                .iter()
                .flat_map(|s| s.samples.iter().map(|p| p.value))
                .sum()
        };
        sum("errors:errors") / sum("errors:total")
    }

    #[test]
    fn error_bursts_come_at_small_stages_only() {
        let small = error_rate(Family::ErrorBurstsSmallStages, 2, Side::Canary, 1.0);
        let large = error_rate(Family::ErrorBurstsSmallStages, 2, Side::Canary, 25.0);
        // 3 % of steps at 15 % errors on top of 0.5 %.
        assert!(small > 0.0075, "at 1 %: {small}");
        assert!(large < 0.0065, "at 25 %: {large}");
    }

    #[test]
    fn the_canary_of_slower_by_host_spread_is_slower_by_exp_tau() {
        let shape = ProductionShape {
            instances: vec![20],
            service_rps: 2_000.0,
            latency_sampling: 1.0,
            ..ProductionShape::default()
        };
        let tau = shape.host_spread;
        // Over twenty rollouts of twenty hosts a side, the hosts' own levels average out
        // (τ·√(2/400) ≈ 0.002) and the canary's extra τ remains.
        let mut shifts = Vec::new();
        for seed in 0..20 {
            let service = service(Family::SlowerByHostSpread, seed, shape.clone(), 50.0);
            let mean = |side: Side| {
                let means = step_means(&service, side);
                means.iter().sum::<f64>() / means.len() as f64
            };
            shifts.push(mean(Side::Canary) - mean(Side::Baseline));
        }
        let shift = shifts.iter().sum::<f64>() / shifts.len() as f64;
        assert!((shift - tau).abs() < 0.008, "shift {shift}");
    }

    #[test]
    fn no_data_hosts_stop_every_canary_instance() {
        let service = service(Family::NoDataHosts, 3, ProductionShape::default(), 5.0);
        let after = service.dropout_at + 15.0;
        assert!(answer(&service, "latency", Side::Canary, after, after + 600.0).is_empty());
        assert!(!answer(&service, "latency", Side::Baseline, after, after + 600.0).is_empty());
    }

    #[test]
    fn wilson_intervals_match_the_closed_form_at_zero_and_are_symmetric() {
        let (low, high) = wilson_interval_95(0, 200);
        // At 0 of n the upper bound is z²/(n + z²).
        let z2 = 1.959_963_984_540_054_f64.powi(2);
        assert!(low == 0.0 && (high - z2 / (200.0 + z2)).abs() < 1e-12);
        assert_eq!(wilson_interval_95(200, 200).1, 1.0);
        let (a, b) = wilson_interval_95(5, 200);
        let (c, d) = wilson_interval_95(195, 200);
        assert!((a - (1.0 - d)).abs() < 1e-12 && (b - (1.0 - c)).abs() < 1e-12);
        assert!((a - 0.010_724_7).abs() < 1e-6 && (b - 0.057_178_3).abs() < 1e-6);
    }

    #[test]
    fn family_names_parse_back() {
        for family in Family::ALL {
            assert_eq!(Family::parse(family.name()), Ok(family));
        }
        assert!(Family::HealthyHosts.is_production() && !Family::DataDropout.is_production());
    }
}
