//! The simulated service as one value: its pods and their counters, the flag as last
//! read, the fault, and the record of flag changes. Callers pass the time in, so every
//! method is deterministic for a given seed; the shell (`main.rs`, `api.rs`,
//! `flag.rs`) owns the clock, the timers and the lock.

use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard};

use serde::Serialize;

use crate::catalogue::{Gauge, GaugeLevels, MetricSet, render_sets};
use crate::fault::{Fault, FaultSpec};
use crate::flag::{FlagReading, FlagStatus};
use crate::metrics::{PodCounters, latency_buckets, render};
use crate::rng::SplitMix;
use crate::traffic::{Pod, RequestModel, Track, TrackShares, build_pods};

/// CPU every pod burns while idle, seconds per second.
const IDLE_CPU_PER_SECOND: f64 = 0.02;
/// CPU one request costs on a pod of speed 1, seconds.
const CPU_PER_REQUEST: f64 = 0.0004;
/// Relative noise of resident memory at each scrape.
const MEMORY_NOISE: f64 = 0.002;

/// The service's settings (from the command line).
#[derive(Debug, Clone)]
pub struct ServiceConfig {
    /// Requests per second over the whole service.
    pub requests_per_second: f64,
    /// Pods in each of the three tracks.
    pub pods_per_track: u32,
    /// Seed of every random draw.
    pub seed: u64,
    /// Log-sd of the pods' speed factors.
    pub pod_spread: f64,
    /// Median latency, seconds.
    pub base_latency: f64,
    /// Log-sd of latency.
    pub latency_sigma: f64,
    /// Probability of a 500.
    pub error_rate: f64,
    /// Probability that a business event fails.
    pub business_failure_rate: f64,
    /// The catalogue's sets exported beside the web set.
    pub metric_sets: Vec<MetricSet>,
    /// Percent of requests mirrored to the canary and, as much, to the baseline while
    /// the flag is ENABLED at 0 % (a shadow stage); 0 for none.
    pub shadow_percent: f64,
}

/// One observed change of the flag.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FlagChange {
    /// When the service first saw it, Unix seconds.
    pub at: f64,
    /// The canary's share after it.
    pub canary_percent: f64,
    /// The flag's state after it.
    pub flag_state: FlagStatus,
}

/// Requests a track has served.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct RequestTotals {
    /// All requests.
    pub total: u64,
    /// Requests answered 500.
    pub errors: u64,
}

/// The answer of `GET /state`.
#[derive(Debug, Clone, Serialize)]
pub struct StateView {
    /// The flag being followed.
    pub flag: String,
    /// The canary's share now.
    pub canary_percent: f64,
    /// The flag's state now.
    pub flag_state: FlagStatus,
    /// Every track's share now.
    pub shares: TrackShares,
    /// Every observed change, the first at start.
    pub changes: Vec<FlagChange>,
    /// The latest fault (also after it ended), `null` when none or after `DELETE /fault`.
    pub fault: Option<FaultView>,
    /// From the latest fault's onset to the first observed change after it that left
    /// the canary with 0 %.
    pub fault_onset_to_flag_off_seconds: Option<f64>,
    /// Requests served per track.
    pub requests: BTreeMap<Track, RequestTotals>,
    /// Every pod with its speed factor (the hosts' differences, fixed by the seed).
    pub pods: Vec<Pod>,
}

/// A fault as `POST /fault` and `GET /state` show it.
#[derive(Debug, Clone, Serialize)]
pub struct FaultView {
    /// The fault and its onset.
    #[serde(flatten)]
    pub fault: Fault,
    /// Whether it acts now.
    pub active: bool,
}

/// The simulated service.
#[derive(Debug)]
pub struct World {
    config: ServiceConfig,
    flag: String,
    bounds: Vec<f64>,
    pods: Vec<Pod>,
    counters: Vec<PodCounters>,
    reading: FlagReading,
    changes: Vec<FlagChange>,
    fault: Option<Fault>,
    /// The onset of the latest fault, kept after `DELETE /fault` for the figure.
    latest_onset: Option<f64>,
    rng: SplitMix,
}

impl World {
    /// A service following `flag`, which reads `initial` at `now`.
    pub fn new(config: ServiceConfig, flag: String, initial: FlagReading, now: f64) -> Self {
        let mut rng = SplitMix::new(config.seed);
        let pods = build_pods(config.pods_per_track, config.pod_spread, &mut rng);
        let bounds = latency_buckets();
        let counters = vec![PodCounters::new(bounds.len()); pods.len()];
        Self {
            config,
            flag,
            bounds,
            pods,
            counters,
            reading: initial,
            changes: vec![FlagChange {
                at: now,
                canary_percent: initial.canary_percent,
                flag_state: initial.flag_state,
            }],
            fault: None,
            latest_onset: None,
            rng,
        }
    }

    /// Takes a new reading of the flag; records it when it differs from the last one.
    pub fn observe_flag(&mut self, reading: FlagReading, now: f64) {
        if reading == self.reading {
            return;
        }
        tracing::info!(
            flag = %self.flag,
            canary_percent = reading.canary_percent,
            state = ?reading.flag_state,
            "flag changed"
        );
        self.reading = reading;
        self.changes.push(FlagChange {
            at: now,
            canary_percent: reading.canary_percent,
            flag_state: reading.flag_state,
        });
    }

    /// Serves the requests of `elapsed` seconds ending at `now`: a Poisson number with
    /// mean `rps × elapsed`, each routed to a track by the flag's shares and to a random
    /// pod of that track; and every pod's idle CPU for that time. While the flag is
    /// ENABLED at 0 %, `--shadow-percent` of the requests are also mirrored to a canary
    /// pod and a baseline pod (a shadow stage: users get stable's answers).
    pub fn serve(&mut self, elapsed: f64, now: f64) {
        let shares = TrackShares::for_canary_percent(self.reading.canary_percent);
        let normal = RequestModel {
            median_latency: self.config.base_latency,
            latency_sigma: self.config.latency_sigma,
            error_rate: self.config.error_rate,
            cpu_factor: 1.0,
            business_failure_rate: self.config.business_failure_rate,
        };
        let models = Track::ALL.map(|track| match &self.fault {
            Some(fault) => fault.model_for(track, normal, now),
            None => normal,
        });
        for counter in &mut self.counters {
            counter.cpu_seconds += IDLE_CPU_PER_SECOND * elapsed;
        }
        let shadowing = self.config.shadow_percent > 0.0
            && self.reading.canary_percent == 0.0
            && self.reading.flag_state == FlagStatus::Enabled;
        let requests = self.rng.poisson(self.config.requests_per_second * elapsed);
        for _ in 0..requests {
            let track = shares.route(self.rng.unit());
            self.serve_one(track, models[track as usize]);
            if shadowing && self.rng.unit() * 100.0 < self.config.shadow_percent {
                for mirror in [Track::Baseline, Track::Canary] {
                    self.serve_one(mirror, models[mirror as usize]);
                }
            }
        }
    }

    /// One request on a random pod of `track`.
    fn serve_one(&mut self, track: Track, model: RequestModel) {
        let pods_per_track = self.config.pods_per_track as usize;
        let index = track as usize * pods_per_track + self.rng.index(pods_per_track);
        let speed = self.pods[index].speed_factor;
        let latency = self
            .rng
            .lognormal(model.median_latency * speed, model.latency_sigma);
        let failed = self.rng.unit() < model.error_rate;
        // Drawn only when exported, so beds without business sets keep their draws.
        let business = self
            .config
            .metric_sets
            .iter()
            .any(|set| matches!(set, MetricSet::Migration | MetricSet::Business))
            .then(|| self.rng.unit() < model.business_failure_rate);
        let counter = &mut self.counters[index];
        counter.record(&self.bounds, latency, failed);
        counter.cpu_seconds += CPU_PER_REQUEST * model.cpu_factor * speed;
        if let Some(business_failed) = business {
            counter.record_business(business_failed);
        }
    }

    /// Replaces any fault with `spec`, asked for at `now`.
    pub fn set_fault(&mut self, spec: FaultSpec, now: f64) -> FaultView {
        let fault = Fault::new(spec, now);
        tracing::info!(?fault, "fault set");
        self.latest_onset = Some(fault.onset_at);
        self.fault = Some(fault.clone());
        FaultView {
            active: fault.is_active(now),
            fault,
        }
    }

    /// Clears the fault.
    pub fn clear_fault(&mut self) {
        if self.fault.take().is_some() {
            tracing::info!("fault cleared");
        }
    }

    /// The Prometheus text exposition at this scrape (at `now`, for faults on gauges).
    pub fn render_metrics(&mut self, now: f64) -> String {
        let memory: Vec<f64> = self
            .pods
            .iter()
            .map(|pod| pod.memory_bytes * (1.0 + MEMORY_NOISE * self.rng.normal()))
            .collect();
        let mut text = render(
            &self.pods,
            &self.counters,
            &memory,
            &self.bounds,
            self.reading.canary_percent,
        );
        if !self.config.metric_sets.is_empty() {
            let gauges = self.gauge_levels(now);
            render_sets(
                &mut text,
                &self.config.metric_sets,
                &self.pods,
                &self.counters,
                &memory,
                &gauges,
                &self.bounds,
            );
        }
        text
    }

    /// Every pod's gauges at `now`: the fault's level on its track, else the healthy
    /// one, each with its noise.
    fn gauge_levels(&mut self, now: f64) -> GaugeLevels {
        Gauge::ALL.map(|gauge| {
            let mut levels = Vec::with_capacity(self.pods.len());
            for index in 0..self.pods.len() {
                let track = self.pods[index].track;
                let level = self
                    .fault
                    .as_ref()
                    .and_then(|fault| fault.gauge_for(track, gauge, now))
                    .unwrap_or_else(|| gauge.healthy());
                let noise = gauge.noise() * self.rng.normal();
                levels.push((level + noise).max(0.0));
            }
            levels
        })
    }

    /// What `GET /state` shows at `now`.
    pub fn state(&self, now: f64) -> StateView {
        let mut requests: BTreeMap<Track, RequestTotals> = Track::ALL
            .iter()
            .map(|track| (*track, RequestTotals::default()))
            .collect();
        for (pod, counter) in self.pods.iter().zip(&self.counters) {
            let totals = requests.entry(pod.track).or_default();
            totals.total += counter.total();
            totals.errors += counter.errors;
        }
        StateView {
            flag: self.flag.clone(),
            canary_percent: self.reading.canary_percent,
            flag_state: self.reading.flag_state,
            shares: TrackShares::for_canary_percent(self.reading.canary_percent),
            changes: self.changes.clone(),
            fault: self.fault.clone().map(|fault| FaultView {
                active: fault.is_active(now),
                fault,
            }),
            fault_onset_to_flag_off_seconds: self
                .latest_onset
                .and_then(|onset| onset_to_flag_off(&self.changes, onset)),
            requests,
            pods: self.pods.clone(),
        }
    }
}

/// Seconds from `onset` to the first change at or after it that left the canary with
/// no traffic.
pub fn onset_to_flag_off(changes: &[FlagChange], onset: f64) -> Option<f64> {
    changes
        .iter()
        .find(|change| change.at >= onset && change.canary_percent == 0.0)
        .map(|change| change.at - onset)
}

/// The world behind a mutex that shrugs off poisoning: a panic in one handler must not
/// take the whole demo down, and every method leaves the world consistent.
#[derive(Debug)]
pub struct SharedWorld(Mutex<World>);

impl SharedWorld {
    /// Wraps `world`.
    pub fn new(world: World) -> Self {
        Self(Mutex::new(world))
    }

    /// Locks it. Hold the guard only for a computation, never across an `.await`.
    pub fn lock(&self) -> MutexGuard<'_, World> {
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// The system time, Unix seconds.
pub fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |since| since.as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> ServiceConfig {
        ServiceConfig {
            requests_per_second: 4000.0,
            pods_per_track: 3,
            seed: 1,
            pod_spread: 0.03,
            base_latency: 0.12,
            latency_sigma: 0.4,
            error_rate: 0.002,
            business_failure_rate: 0.01,
            metric_sets: Vec::new(),
            shadow_percent: 0.0,
        }
    }

    fn reading(canary_percent: f64) -> FlagReading {
        FlagReading {
            flag_state: FlagStatus::Enabled,
            canary_percent,
        }
    }

    #[test]
    fn traffic_is_split_by_the_flag() {
        let mut world = World::new(config(), "f".to_owned(), reading(25.0), 0.0);
        for tick in 1..=1000 {
            world.serve(0.01, f64::from(tick) / 100.0);
        }
        let state = world.state(10.0);
        let total: u64 = state.requests.values().map(|totals| totals.total).sum();
        assert!((total as f64 / 40_000.0 - 1.0).abs() < 0.02, "{total}");
        let share = |track| state.requests[&track].total as f64 / total as f64;
        assert!((share(Track::Canary) - 0.25).abs() < 0.01);
        assert!((share(Track::Baseline) - 0.25).abs() < 0.01);
        assert!((share(Track::Stable) - 0.5).abs() < 0.01);
    }

    #[test]
    fn a_fault_raises_its_tracks_errors_only() {
        let mut world = World::new(config(), "f".to_owned(), reading(50.0), 0.0);
        let spec = FaultSpec::parse(br#"{"error_factor": 10}"#).unwrap();
        world.set_fault(spec, 0.0);
        for tick in 1..=2000 {
            world.serve(0.01, f64::from(tick) / 100.0);
        }
        let state = world.state(20.0);
        let rate = |track| {
            let totals: RequestTotals = state.requests[&track];
            totals.errors as f64 / totals.total as f64
        };
        assert!(
            (rate(Track::Canary) / 0.02 - 1.0).abs() < 0.15,
            "{}",
            rate(Track::Canary)
        );
        assert!(rate(Track::Baseline) < 0.004);
    }

    #[test]
    fn changes_are_recorded_once_and_the_time_to_flag_off_is_measured_from_the_onset() {
        let mut world = World::new(config(), "f".to_owned(), reading(0.0), 100.0);
        world.observe_flag(reading(25.0), 101.0);
        world.observe_flag(reading(25.0), 101.1);
        world.set_fault(FaultSpec::parse(b"{}").unwrap(), 102.0);
        assert_eq!(world.state(102.0).fault_onset_to_flag_off_seconds, None);
        let off = FlagReading {
            flag_state: FlagStatus::Disabled,
            canary_percent: 0.0,
        };
        world.observe_flag(off, 104.5);
        let state = world.state(105.0);
        assert_eq!(state.changes.len(), 3);
        assert_eq!(state.changes[2].flag_state, FlagStatus::Disabled);
        assert_eq!(state.fault_onset_to_flag_off_seconds, Some(2.5));
        world.clear_fault();
        let state = world.state(106.0);
        assert!(state.fault.is_none());
        assert_eq!(state.fault_onset_to_flag_off_seconds, Some(2.5));
    }

    #[test]
    fn business_failures_and_gauges_follow_a_fault_on_the_canary() {
        let config = ServiceConfig {
            metric_sets: vec![MetricSet::Migration],
            ..config()
        };
        let mut world = World::new(config, "f".to_owned(), reading(50.0), 0.0);
        let spec = FaultSpec::parse(
            br#"{"business_failure_rate": 0.2, "gauges": {"reserve_ratio": 0.9}}"#,
        )
        .unwrap();
        world.set_fault(spec, 0.0);
        for tick in 1..=1000 {
            world.serve(0.01, f64::from(tick) / 100.0);
        }
        let failure_rate = |track: Track| {
            let (events, failures) = world
                .pods
                .iter()
                .zip(&world.counters)
                .filter(|(pod, _)| pod.track == track)
                .fold((0, 0), |(events, failures), (_, counter)| {
                    (
                        events + counter.business_events,
                        failures + counter.business_failures,
                    )
                });
            failures as f64 / events as f64
        };
        assert!((failure_rate(Track::Canary) - 0.2).abs() < 0.03);
        assert!(failure_rate(Track::Baseline) < 0.02);
        let text = world.render_metrics(10.0);
        let reserve = |pod: &str| {
            let prefix = format!(
                "reserve_ratio{{track=\"{}\",pod=\"{pod}\"}} ",
                &pod[..pod.len() - 2]
            );
            text.lines()
                .find_map(|line| line.strip_prefix(&prefix))
                .and_then(|value| value.parse::<f64>().ok())
                .unwrap_or_else(|| panic!("no reserve_ratio for {pod}"))
        };
        assert!((reserve("canary-0") - 0.9).abs() < 0.01);
        assert!((reserve("baseline-0") - 1.0).abs() < 0.01);
    }

    #[test]
    fn a_shadow_stage_mirrors_requests_to_the_canary_and_the_baseline() {
        let config = ServiceConfig {
            shadow_percent: 10.0,
            ..config()
        };
        let mut world = World::new(config.clone(), "f".to_owned(), reading(0.0), 0.0);
        for tick in 1..=1000 {
            world.serve(0.01, f64::from(tick) / 100.0);
        }
        let state = world.state(10.0);
        let share = |track| {
            state.requests[&track].total as f64 / state.requests[&Track::Stable].total as f64
        };
        assert!((share(Track::Canary) - 0.1).abs() < 0.02, "{state:?}");
        assert!((share(Track::Baseline) - 0.1).abs() < 0.02, "{state:?}");
        let off = FlagReading {
            flag_state: FlagStatus::Disabled,
            canary_percent: 0.0,
        };
        let mut world = World::new(config, "f".to_owned(), off, 0.0);
        world.serve(10.0, 10.0);
        assert_eq!(
            world.state(10.0).requests[&Track::Canary].total,
            0,
            "no shadow when DISABLED"
        );
    }

    #[test]
    fn idle_pods_still_burn_cpu() {
        let mut world = World::new(config(), "f".to_owned(), reading(0.0), 0.0);
        world.serve(10.0, 10.0);
        let text = world.render_metrics(10.0);
        assert!(
            text.contains("process_cpu_seconds_total{track=\"canary\",pod=\"canary-0\"} 0.2\n")
        );
    }
}
