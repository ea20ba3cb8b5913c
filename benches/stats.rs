//! Benchmarks of the rank statistics at the sizes the judge sees, against the
//! cost floor of sorting the pooled sample once.
//!
//! From 10 to 10,000 observations per side: `sort pooled` clones and sorts the 2n
//! pooled values with the standard library's `sort_unstable_by(f64::total_cmp)` (the
//! floor any rank method pays), `radix sort pooled` with canary's own radix sort
//! (`stats::sort`), and `p-value + interval` does what the judge does per metric: sort
//! both samples, then `rank_comparison_sorted` (the Mann-Whitney p-value and the
//! Hodges-Lehmann 95% interval from one merge). Below 50 per side both use the exact null
//! distribution of U, which the process builds once per pair of sizes and shares;
//! `exact distribution` measures that one build (what the first look at a size pays).
//! `p-value + interval, canary 8/7 longer` does the same with a canary one seventh
//! longer than the baseline: the two sides rarely have the same length, and a
//! selection grid that drifted with unequal lengths once made 10,000 a side five
//! times slower there while the equal-length figure looked fine.
//! The targets: `p-value + interval` within 3x of `sort pooled` at 1,000 per side and
//! at most 30 µs at 49 per side.

use std::hint::black_box;

use canary::stats::Alternative;
use canary::stats::hodges_lehmann::rank_comparison_sorted;
use canary::stats::mann_whitney::exact_null_counts;
use canary::stats::sort::sort_f64;
use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};

/// Lognormal latencies (Box-Muller over a xorshift generator; no rand dependency).
fn lognormal_sample(seed: u64, len: usize, log_mean: f64) -> Vec<f64> {
    let mut state = seed.max(1);
    let mut next_uniform = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        // 53 random bits in (0, 1]: never 0, so the logarithm stays finite.
        ((state >> 11) + 1) as f64 / (1u64 << 53) as f64
    };
    (0..len)
        .map(|_| {
            let radius = (-2.0 * next_uniform().ln()).sqrt();
            let angle = 2.0 * std::f64::consts::PI * next_uniform();
            (log_mean + 0.5 * radius * angle.cos()).exp()
        })
        .collect()
}

/// What the judge does per continuous metric: sort both sides, then the test and the
/// interval from one merge.
fn as_the_judge_does(
    baseline: &[f64],
    canary: &[f64],
) -> (
    canary::stats::mann_whitney::MannWhitney,
    canary::stats::hodges_lehmann::ShiftInterval,
) {
    let mut baseline_sorted = baseline.to_vec();
    sort_f64(&mut baseline_sorted);
    let mut canary_sorted = canary.to_vec();
    sort_f64(&mut canary_sorted);
    rank_comparison_sorted(
        &baseline_sorted,
        &canary_sorted,
        Alternative::TwoSided,
        0.95,
    )
    .expect("finite, non-empty samples")
}

fn rank_statistics(criterion: &mut Criterion) {
    let mut group = criterion.benchmark_group("rank_statistics");
    for size in [10usize, 36, 49] {
        group.bench_with_input(
            BenchmarkId::new("exact distribution", size),
            &size,
            |bench, &size| bench.iter(|| black_box(exact_null_counts(size, size))),
        );
    }
    for size in [10usize, 36, 49, 50, 100, 1_000, 10_000] {
        let baseline = lognormal_sample(0x9E37_79B9_7F4A_7C15, size, 4.0);
        let canary = lognormal_sample(0xD1B5_4A32_D192_ED03, size, 4.05);
        let pooled: Vec<f64> = baseline.iter().chain(&canary).copied().collect();

        group.bench_with_input(
            BenchmarkId::new("sort pooled", size),
            &pooled,
            |bench, pooled| {
                bench.iter(|| {
                    let mut values = pooled.clone();
                    values.sort_unstable_by(f64::total_cmp);
                    black_box(values)
                })
            },
        );

        group.bench_with_input(
            BenchmarkId::new("radix sort pooled", size),
            &pooled,
            |bench, pooled| {
                bench.iter(|| {
                    let mut values = pooled.clone();
                    sort_f64(&mut values);
                    black_box(values)
                })
            },
        );

        group.bench_with_input(
            BenchmarkId::new("p-value + interval", size),
            &(baseline, canary),
            |bench, (baseline, canary)| {
                bench.iter(|| black_box(as_the_judge_does(baseline, canary)))
            },
        );
    }
    for size in [1_000usize, 10_000] {
        let baseline = lognormal_sample(0x9E37_79B9_7F4A_7C15, size, 4.0);
        let canary = lognormal_sample(0xD1B5_4A32_D192_ED03, size + size / 7, 4.05);
        group.bench_with_input(
            BenchmarkId::new("p-value + interval, canary 8/7 longer", size),
            &(baseline, canary),
            |bench, (baseline, canary)| {
                bench.iter(|| black_box(as_the_judge_does(baseline, canary)))
            },
        );
    }
    group.finish();
}

criterion_group!(benches, rank_statistics);
criterion_main!(benches);
