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

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use serde::Serialize;

use crate::actuators::Actuator;
use crate::actuators::log_only::LogOnlyActuator;
use crate::domain::{JudgeMode, Profile, Sample};
use crate::judge::format::percent;
use crate::scheduler::{Decision, Rollout, RolloutRunner, RolloutStatus, Scopes};
use crate::sources::synthetic::{SplitMix, point_seed};
use crate::sources::{LabeledSeries, MetricSource, RangeRequest, Side, SourceError};

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
}

impl Family {
    /// Every family, in table order.
    pub const ALL: [Family; 12] = [
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
            Family::Healthy | Family::HealthyLowTraffic | Family::HealthyBursty => Label::Healthy,
            Family::Latency5 => Label::AtTolerance,
            Family::DataDropout => Label::NoData,
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
}

impl SimulatedService {
    fn new(family: Family, seed: u64, step: f64, traffic: Timeline) -> Self {
        let mut rng = SplitMix(seed ^ 0x5eed);
        // Somewhere in the first two stages.
        let dropout_at = T0 + 600.0 + rng.unit() * 3000.0;
        Self {
            family,
            seed,
            step,
            traffic,
            dropout_at,
        }
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
        let metric = match request.metric.split_once(':') {
            Some((_, "errors")) => "errors",
            Some((_, "total")) => "requests",
            _ => request.metric.as_str(),
        };
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

/// Runs one rollout of `family` under `profile` to its end.
pub async fn run_rollout(
    profile: Arc<Profile>,
    family: Family,
    seed: u64,
) -> Result<RolloutOutcome, crate::scheduler::RunError> {
    let plan = profile.plan.clone().ok_or_else(|| {
        crate::scheduler::RunError::Config("the profile has no stages".to_owned())
    })?;
    let traffic: Timeline = Arc::new(Mutex::new(vec![(T0, plan.stages[0].traffic.value())]));
    let source = Arc::new(SimulatedService::new(
        family,
        seed,
        plan.settings.step.seconds(),
        Arc::clone(&traffic),
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
        let record = runner.step(due).await?;
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
}

/// Runs every family under every mode; `on_done` is called after each rollout.
pub async fn simulate(
    simulation: &Simulation,
    on_done: impl Fn() + Send + Sync + 'static,
) -> Result<Vec<FamilyResult>, crate::scheduler::RunError> {
    let on_done = Arc::new(on_done);
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
                    pending.spawn(async move { run_rollout(profile, family, seed).await });
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
            " {mode}: promoted · rolled back · for review | {mode}: the rate | {mode}: median delay (looks) |"
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
                    let rate = match r.label {
                        Label::NoData => r.share(r.promoted),
                        _ => r.share(r.rolled_back),
                    };
                    let delay = match (r.label, r.median_detection_delay) {
                        (Label::Faulty | Label::AtTolerance, Some(d)) => format!("{d}"),
                        _ => "–".to_owned(),
                    };
                    out.push_str(&format!(
                        " {} · {} · {} | **{}** | {} |",
                        r.promoted,
                        r.rolled_back,
                        r.escalated + r.undecided,
                        percent(rate),
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
                    Family::Latency20 | Family::ErrorsX2 | Family::VarianceX2 | Family::ErrorBursts
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
