//! The production-shaped half of the simulated service (issue 14): a fleet of instances
//! per side whose latency levels differ from host to host, a shared drift moving both
//! sides, latency recorded from a sampled share of requests, and per-instance counts.
//!
//! Every value stays a pure function of (seed, metric, side, instance, timestamp) and of
//! the canary's traffic timeline. The drift is an autocorrelated process, so it is drawn
//! once per rollout onto a grid of steps from the seed alone (never from what was
//! fetched), and read back by timestamp.
//!
//! This module owns the shape (what a fleet looks like and how it drifts); which
//! family has which fault is decided in the parent module.

use crate::sources::Side;
use crate::sources::synthetic::{SplitMix, point_seed};

/// The knobs of the production-shaped families (`canary simulate --instances ...`).
#[derive(Debug, Clone, PartialEq)]
pub struct ProductionShape {
    /// Instances per side at each analysed stage, in stage order; a stage beyond the
    /// list has the last entry's count. Instances are kept from stage to stage: stage
    /// `k` runs `i-0` to `i-(n_k - 1)`, the first ones staying.
    pub instances: Vec<u32>,
    /// Requests per second of the whole service at 100 % traffic (a tenth of the older
    /// families' 2,000, as in the production service of issue 14).
    pub service_rps: f64,
    /// τ: each instance's latency level is multiplied by `exp(τ·z)`, `z` standard
    /// normal and fixed per (seed, side, instance).
    pub host_spread: f64,
    /// The same for each instance's error rate (errors differ a little between hosts).
    pub error_host_spread: f64,
    /// The share of requests whose latency is recorded; a step's per-instance
    /// percentile is computed from that many requests (none recorded: NaN).
    pub latency_sampling: f64,
    /// Amplitude of the daily curve of traffic (±30 %: 0.3), shared by both sides.
    pub daily_traffic: f64,
    /// Amplitude of the daily curve of latency on the log scale, shared by both sides.
    pub daily_latency: f64,
    /// Stationary standard deviation of the slow wobble (AR(1) on the log scale) of
    /// latency, shared by both sides.
    pub wobble_latency: f64,
    /// The same for traffic.
    pub wobble_traffic: f64,
    /// Correlation time of the wobble, seconds (its lag-one autocorrelation is
    /// `exp(-step / wobble_seconds)`).
    pub wobble_seconds: f64,
}

impl Default for ProductionShape {
    fn default() -> Self {
        Self {
            instances: vec![1, 1, 5, 10, 20],
            service_rps: 200.0,
            host_spread: 0.03,
            error_host_spread: 0.1,
            latency_sampling: 0.1,
            daily_traffic: 0.3,
            daily_latency: 0.1,
            wobble_latency: 0.05,
            wobble_traffic: 0.1,
            wobble_seconds: 600.0,
        }
    }
}

impl ProductionShape {
    /// Instances per side at analysed stage `stage` (0-based).
    pub fn instances_at_stage(&self, stage: usize) -> u32 {
        self.instances
            .get(stage)
            .or(self.instances.last())
            .copied()
            .unwrap_or(1)
            .max(1)
    }

    /// `z` of one instance: standard normal, fixed per (seed, side, instance, what).
    fn instance_normal(seed: u64, what: &str, side: Side, instance: u32) -> f64 {
        SplitMix(point_seed(seed, what, side, f64::from(instance))).normal()
    }

    /// The factor of an instance's latency level: `exp(τ·z)`.
    pub fn latency_level(&self, seed: u64, side: Side, instance: u32) -> f64 {
        (self.host_spread * Self::instance_normal(seed, "host-latency", side, instance)).exp()
    }

    /// The factor of an instance's error rate.
    pub fn error_level(&self, seed: u64, side: Side, instance: u32) -> f64 {
        (self.error_host_spread * Self::instance_normal(seed, "host-errors", side, instance)).exp()
    }
}

/// Multipliers shared by both sides at one timestamp.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SharedDrift {
    /// Multiplies every instance's latency level.
    pub latency: f64,
    /// Multiplies the service's request rate.
    pub traffic: f64,
}

impl SharedDrift {
    /// No drift.
    pub const NONE: SharedDrift = SharedDrift {
        latency: 1.0,
        traffic: 1.0,
    };
}

/// A rollout's shared drift: a daily curve with a random phase (rollouts start at
/// different times of day) times two AR(1) wobbles on the log scale, drawn on a grid.
#[derive(Debug, Clone)]
pub struct DriftPath {
    start: f64,
    step: f64,
    phase: f64,
    daily_traffic: f64,
    daily_latency: f64,
    latency_wobble: Vec<f64>,
    traffic_wobble: Vec<f64>,
}

/// Seconds in a day.
const DAY: f64 = 86_400.0;

impl DriftPath {
    /// Draws the drift for `[start, start + span]` at `step` from `seed`.
    pub fn new(shape: &ProductionShape, seed: u64, start: f64, span: f64, step: f64) -> Self {
        let mut rng = SplitMix(seed ^ 0xd41f_7d21_f7a0_0001);
        let phase = rng.unit() * std::f64::consts::TAU;
        let points = (span / step).ceil().max(1.0) as usize + 1;
        let rho = (-step / shape.wobble_seconds.max(step)).exp();
        let mut ar1 = |sd: f64| {
            let innovation = sd * (1.0 - rho * rho).sqrt();
            let mut x = sd * rng.normal();
            let mut path = Vec::with_capacity(points);
            for _ in 0..points {
                path.push(x);
                x = rho * x + innovation * rng.normal();
            }
            path
        };
        let latency_wobble = ar1(shape.wobble_latency);
        let traffic_wobble = ar1(shape.wobble_traffic);
        Self {
            start,
            step,
            phase,
            daily_traffic: shape.daily_traffic,
            daily_latency: shape.daily_latency,
            latency_wobble,
            traffic_wobble,
        }
    }

    /// The drift at `timestamp` (the grid's edge values outside it).
    pub fn at(&self, timestamp: f64) -> SharedDrift {
        let index = ((timestamp - self.start) / self.step).round().max(0.0) as usize;
        let index = index.min(self.latency_wobble.len() - 1);
        let daily = (std::f64::consts::TAU * (timestamp - self.start) / DAY + self.phase).sin();
        SharedDrift {
            latency: (self.daily_latency * daily + self.latency_wobble[index]).exp(),
            traffic: (1.0 + self.daily_traffic * daily) * self.traffic_wobble[index].exp(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stage_beyond_the_list_keeps_the_last_instance_count() {
        let shape = ProductionShape::default();
        let counts: Vec<u32> = (0..7).map(|k| shape.instances_at_stage(k)).collect();
        assert_eq!(counts, vec![1, 1, 5, 10, 20, 20, 20]);
    }

    #[test]
    fn instance_levels_spread_by_the_host_spread_over_many_seeds() {
        let shape = ProductionShape {
            host_spread: 0.05,
            ..ProductionShape::default()
        };
        let logs: Vec<f64> = (0..4000u64)
            .map(|seed| shape.latency_level(seed, Side::Canary, 0).ln())
            .collect();
        let mean = logs.iter().sum::<f64>() / logs.len() as f64;
        let sd =
            (logs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (logs.len() - 1) as f64).sqrt();
        assert!(mean.abs() < 0.004, "mean {mean}");
        assert!((sd - 0.05).abs() < 0.003, "sd {sd}");
    }

    #[test]
    fn instances_of_one_side_differ_and_sides_draw_their_own_hosts() {
        let shape = ProductionShape::default();
        let baseline: Vec<f64> = (0..5)
            .map(|i| shape.latency_level(7, Side::Baseline, i))
            .collect();
        let canary: Vec<f64> = (0..5)
            .map(|i| shape.latency_level(7, Side::Canary, i))
            .collect();
        assert!(baseline.windows(2).all(|w| w[0] != w[1]));
        assert_ne!(baseline, canary);
    }

    #[test]
    fn no_host_spread_gives_identical_instances() {
        let shape = ProductionShape {
            host_spread: 0.0,
            ..ProductionShape::default()
        };
        assert!((0..10).all(|i| shape.latency_level(3, Side::Baseline, i) == 1.0));
    }

    #[test]
    fn the_wobble_is_autocorrelated_with_the_stated_spread() {
        let shape = ProductionShape {
            daily_latency: 0.0,
            daily_traffic: 0.0,
            ..ProductionShape::default()
        };
        let (mut lag_products, mut squares, mut count) = (0.0, 0.0, 0.0);
        for seed in 0..200u64 {
            let path = DriftPath::new(&shape, seed, 0.0, 15.0 * 400.0, 15.0);
            let logs: Vec<f64> = (0..400)
                .map(|k| path.at(15.0 * f64::from(k)).latency.ln())
                .collect();
            for pair in logs.windows(2) {
                lag_products += pair[0] * pair[1];
                squares += pair[0] * pair[0];
                count += 1.0;
            }
        }
        let sd = (squares / count).sqrt();
        let autocorrelation = lag_products / squares;
        assert!((sd - 0.05).abs() < 0.005, "sd {sd}");
        let expected = (-15.0f64 / 600.0).exp();
        assert!(
            (autocorrelation - expected).abs() < 0.01,
            "{autocorrelation} vs {expected}"
        );
    }

    #[test]
    fn the_daily_curve_moves_traffic_by_its_amplitude() {
        let shape = ProductionShape {
            wobble_latency: 0.0,
            wobble_traffic: 0.0,
            ..ProductionShape::default()
        };
        let path = DriftPath::new(&shape, 1, 0.0, DAY, 60.0);
        let traffic: Vec<f64> = (0..1440)
            .map(|m| path.at(60.0 * f64::from(m)).traffic)
            .collect();
        let high = traffic.iter().copied().fold(f64::MIN, f64::max);
        let low = traffic.iter().copied().fold(f64::MAX, f64::min);
        assert!(
            (high - 1.3).abs() < 0.001 && (low - 0.7).abs() < 0.001,
            "{low}..{high}"
        );
    }
}
