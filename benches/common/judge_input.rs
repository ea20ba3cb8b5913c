//! The 20-metric profile and its two sides that `benches/judge.rs` times and
//! `benches/allocations.rs` counts the allocations of.

use std::collections::BTreeMap;

use canary::domain::{Location, MetricData, Observations, Profile, Sample};

/// A small deterministic generator (xorshift64*), so the bench needs no `rand`.
struct Xorshift(u64);

impl Xorshift {
    fn next_unit(&mut self) -> f64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        let bits = self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 11;
        (bits as f64 + 0.5) / (1u64 << 53) as f64
    }

    fn lognormal(&mut self, median: f64, sigma: f64) -> f64 {
        // Box-Muller.
        let (u, v) = (self.next_unit(), self.next_unit());
        let normal = (-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos();
        median * (sigma * normal).exp()
    }
}

pub fn profile() -> Profile {
    let mut text = String::from("name = \"bench-20\"\n[judge]\nconfidence_level = 0.95\n");
    for i in 0..10 {
        text.push_str(&format!(
            "[[metrics]]\nname = \"latency_{i}\"\nkind = \"continuous\"\nallowed_increase = 0.05\nmin_samples = 50\n"
        ));
    }
    for i in 0..6 {
        text.push_str(&format!(
            "[[metrics]]\nname = \"errors_{i}\"\nkind = \"proportion\"\nmax_ratio = 1.5\nmin_samples = 1000\n"
        ));
    }
    for i in 0..4 {
        text.push_str(&format!(
            "[[metrics]]\nname = \"slo_{i}\"\nkind = \"threshold\"\nstatistic = \"p95\"\nmax = 1.0\n"
        ));
    }
    Profile::parse(&text, "bench-20.toml").expect("the bench profile is valid")
}

pub fn side(seed: u64, latency_median: f64) -> Observations {
    let mut rng = Xorshift(seed);
    let origin = Location {
        file: "bench".to_owned(),
        line: 1,
    };
    let mut metrics = BTreeMap::new();
    let series = |rng: &mut Xorshift, median: f64, n: usize| -> Vec<Sample> {
        (0..n)
            .map(|i| Sample {
                timestamp: i as f64 * 15.0,
                value: rng.lognormal(median, 0.2),
            })
            .collect()
    };
    for i in 0..10 {
        let samples = series(&mut rng, latency_median, 1_000);
        metrics.insert(
            format!("latency_{i}"),
            MetricData::Samples {
                samples,
                origin: origin.clone(),
            },
        );
    }
    for i in 0..6 {
        let total: Vec<Sample> = (0..120)
            .map(|t| Sample {
                timestamp: t as f64 * 15.0,
                value: 200.0,
            })
            .collect();
        let errors: Vec<Sample> = (0..120)
            .map(|t| Sample {
                timestamp: t as f64 * 15.0,
                value: if rng.next_unit() < 0.4 { 1.0 } else { 0.0 },
            })
            .collect();
        metrics.insert(
            format!("errors_{i}"),
            MetricData::Counts {
                errors,
                total,
                origin: origin.clone(),
            },
        );
    }
    for i in 0..4 {
        let samples = series(&mut rng, latency_median, 120);
        metrics.insert(
            format!("slo_{i}"),
            MetricData::Samples {
                samples,
                origin: origin.clone(),
            },
        );
    }
    Observations {
        metrics,
        ..Default::default()
    }
}
