//! The service's shape: three tracks of pods, how a canary share splits traffic between
//! them, and what one request costs. Pure.

use serde::{Deserialize, Serialize};

use crate::rng::SplitMix;

/// A deployment track. `stable` is the old version serving the rest of the traffic;
/// `baseline` is the old version on fresh pods, sized like the canary so the two can
/// be compared fairly; `canary` runs the new version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Track {
    /// The old version serving what the other two do not.
    Stable,
    /// The old version, with as much traffic as the canary (at most half).
    Baseline,
    /// The new version.
    Canary,
}

impl Track {
    /// Every track, in the order metrics list them.
    pub const ALL: [Track; 3] = [Track::Stable, Track::Baseline, Track::Canary];

    /// The `track` label value.
    pub fn name(self) -> &'static str {
        match self {
            Track::Stable => "stable",
            Track::Baseline => "baseline",
            Track::Canary => "canary",
        }
    }
}

/// Percent of requests each track gets.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct TrackShares {
    /// The rest.
    pub stable: f64,
    /// `min(p, 100 − p)`.
    pub baseline: f64,
    /// The flag's share `p`.
    pub canary: f64,
}

impl TrackShares {
    /// The split for a canary share of `canary_percent` (clamped to 0–100): the
    /// baseline gets as much as the canary while the old version has that much to
    /// spare, `min(p, 100 − p)`, and stable the rest.
    pub fn for_canary_percent(canary_percent: f64) -> Self {
        let canary = canary_percent.clamp(0.0, 100.0);
        let baseline = canary.min(100.0 - canary);
        Self {
            stable: 100.0 - canary - baseline,
            baseline,
            canary,
        }
    }

    /// The track of a request whose uniform draw is `unit` in (0, 1).
    pub fn route(&self, unit: f64) -> Track {
        let point = unit * 100.0;
        if point < self.canary {
            Track::Canary
        } else if point < self.canary + self.baseline {
            Track::Baseline
        } else {
            Track::Stable
        }
    }
}

/// One pod: a host that is a little faster or slower than its peers.
#[derive(Debug, Clone, Serialize)]
pub struct Pod {
    /// Its track.
    pub track: Track,
    /// The `pod` label value, e.g. `canary-0`.
    pub name: String,
    /// Multiplies latency and per-request CPU (lognormal around 1).
    pub speed_factor: f64,
    /// Its resident memory before noise, bytes.
    #[serde(skip)]
    pub memory_bytes: f64,
}

/// Resident memory of a pod, about 180 MB.
pub const MEMORY_BYTES: f64 = 180e6;

/// Builds `pods_per_track` pods for every track, each with its own draw of host speed
/// (lognormal with log-sd `pod_spread`) and memory (±0.5 %).
pub fn build_pods(pods_per_track: u32, pod_spread: f64, rng: &mut SplitMix) -> Vec<Pod> {
    let mut pods = Vec::new();
    for track in Track::ALL {
        for index in 0..pods_per_track {
            pods.push(Pod {
                track,
                name: format!("{}-{index}", track.name()),
                speed_factor: rng.lognormal(1.0, pod_spread),
                memory_bytes: MEMORY_BYTES * (1.0 + 0.005 * rng.normal()),
            });
        }
    }
    pods
}

/// What a request on a track costs before its pod's speed is applied.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RequestModel {
    /// Median latency, seconds.
    pub median_latency: f64,
    /// Log-scale standard deviation of latency.
    pub latency_sigma: f64,
    /// Probability that a request fails with a 500.
    pub error_rate: f64,
    /// Multiplies the CPU each request costs (a slower version burns more).
    pub cpu_factor: f64,
    /// Probability that the request's business event fails (a migration, a fund setup,
    /// a wizard left incomplete).
    pub business_failure_rate: f64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_baseline_gets_as_much_as_the_canary_up_to_half() {
        let at = |p: f64| TrackShares::for_canary_percent(p);
        assert_eq!(
            at(0.0),
            TrackShares {
                stable: 100.0,
                baseline: 0.0,
                canary: 0.0
            }
        );
        assert_eq!(
            at(5.0),
            TrackShares {
                stable: 90.0,
                baseline: 5.0,
                canary: 5.0
            }
        );
        assert_eq!(
            at(25.0),
            TrackShares {
                stable: 50.0,
                baseline: 25.0,
                canary: 25.0
            }
        );
        assert_eq!(
            at(50.0),
            TrackShares {
                stable: 0.0,
                baseline: 50.0,
                canary: 50.0
            }
        );
        assert_eq!(
            at(75.0),
            TrackShares {
                stable: 0.0,
                baseline: 25.0,
                canary: 75.0
            }
        );
        assert_eq!(
            at(100.0),
            TrackShares {
                stable: 0.0,
                baseline: 0.0,
                canary: 100.0
            }
        );
        assert_eq!(at(140.0), at(100.0));
    }

    #[test]
    fn routing_follows_the_shares() {
        let shares = TrackShares::for_canary_percent(25.0);
        assert_eq!(shares.route(0.10), Track::Canary);
        assert_eq!(shares.route(0.30), Track::Baseline);
        assert_eq!(shares.route(0.60), Track::Stable);
        let none = TrackShares::for_canary_percent(0.0);
        assert_eq!(none.route(0.000_001), Track::Stable);
    }

    #[test]
    fn every_track_gets_its_pods_with_distinct_names() {
        let pods = build_pods(3, 0.03, &mut SplitMix::new(1));
        assert_eq!(pods.len(), 9);
        assert_eq!(pods[0].name, "stable-0");
        assert_eq!(pods[8].name, "canary-2");
        assert!(pods.iter().all(|pod| (pod.speed_factor - 1.0).abs() < 0.2));
    }
}
