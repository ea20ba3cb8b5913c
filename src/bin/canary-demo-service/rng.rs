//! A small seeded random number generator (SplitMix64) with the draws the traffic
//! needs: uniform, normal, lognormal and Poisson.
//!
//! The library has the same generator (`sources::synthetic::SplitMix`), but it is
//! crate-private; this copy keeps the demo service from widening the library's API.

/// SplitMix64: fast, well mixed, and reproducible from one `u64` seed.
#[derive(Debug, Clone)]
pub struct SplitMix(u64);

impl SplitMix {
    /// A generator seeded with `seed`.
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in the open interval (0, 1).
    pub fn unit(&mut self) -> f64 {
        ((self.next_u64() >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    }

    /// Standard normal (Box-Muller).
    pub fn normal(&mut self) -> f64 {
        let (u, v) = (self.unit(), self.unit());
        (-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos()
    }

    /// Lognormal with the given median and log-scale standard deviation.
    pub fn lognormal(&mut self, median: f64, sigma: f64) -> f64 {
        median * (sigma * self.normal()).exp()
    }

    /// Poisson with the given mean: Knuth's exact product method for small means, the
    /// normal approximation (rounded, at least 0) from 30 on, where it is accurate to
    /// well under a request per tick.
    pub fn poisson(&mut self, mean: f64) -> u64 {
        if mean <= 0.0 {
            return 0;
        }
        if mean < 30.0 {
            let limit = (-mean).exp();
            let mut product = self.unit();
            let mut count = 0;
            while product > limit {
                product *= self.unit();
                count += 1;
            }
            count
        } else {
            (mean + mean.sqrt() * self.normal()).round().max(0.0) as u64
        }
    }

    /// An index in `0..count` (`count` > 0).
    pub fn index(&mut self, count: usize) -> usize {
        ((self.unit() * count as f64) as usize).min(count - 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_gives_the_same_draws() {
        let (mut a, mut b) = (SplitMix::new(7), SplitMix::new(7));
        for _ in 0..100 {
            assert_eq!(a.unit().to_bits(), b.unit().to_bits());
        }
    }

    #[test]
    fn poisson_draws_have_the_asked_mean() {
        let mut rng = SplitMix::new(1);
        for mean in [0.5, 4.0, 40.0] {
            let draws = 20_000;
            let total: u64 = (0..draws).map(|_| rng.poisson(mean)).sum();
            let observed = total as f64 / draws as f64;
            assert!(
                (observed - mean).abs() < 0.05 * mean.max(1.0),
                "{mean}: {observed}"
            );
        }
    }

    #[test]
    fn lognormal_draws_have_the_asked_median() {
        let mut rng = SplitMix::new(2);
        let mut draws: Vec<f64> = (0..20_001).map(|_| rng.lognormal(0.12, 0.4)).collect();
        draws.sort_by(f64::total_cmp);
        assert!(
            (draws[10_000] / 0.12 - 1.0).abs() < 0.02,
            "{}",
            draws[10_000]
        );
    }
}
