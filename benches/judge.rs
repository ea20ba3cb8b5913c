//! The whole judge on a 20-metric profile: 10 continuous metrics (1,000 samples per
//! side), 6 proportion metrics and 4 thresholds, including Holm correction, scoring
//! and reason text. Run with `cargo bench --bench judge`.

use std::hint::black_box;

use canary::judge::judge;
use criterion::{Criterion, criterion_group, criterion_main};

#[path = "common/judge_input.rs"]
mod judge_input;
use judge_input::{profile, side};

fn bench_judge(c: &mut Criterion) {
    let profile = profile();
    let baseline = side(1, 0.2);
    let canary = side(2, 0.21);
    c.bench_function("judge 20 metrics (10 x 1,000-sample continuous)", |b| {
        b.iter(|| {
            judge(
                black_box(&profile),
                black_box(&baseline),
                black_box(&canary),
            )
        })
    });
}

criterion_group!(benches, bench_judge);
criterion_main!(benches);
