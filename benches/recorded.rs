//! Reading recorded observations: the `metric,timestamp,value` CSV that `canary
//! analyze` and replays take, at 100,000 rows (3.2 MB). The reader streams the file
//! through one reused byte record and keeps each metric's points in columns, so the
//! cost is parsing: the figure per row is what a recording of a million rows pays ten
//! times over (`canary analyze` on 1 M samples per side is in the README, measured as
//! a whole process with its peak memory).

use std::hint::black_box;

use canary::sources::recorded::parse_csv;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

/// 100,000 rows of one latency metric, values with six decimals, 100 a second.
fn recording(rows: usize) -> String {
    let mut text = String::from("metric,timestamp,value\n");
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    for row in 0..rows {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let value = 0.1 + (state >> 11) as f64 / (1u64 << 53) as f64 * 0.3;
        text.push_str(&format!(
            "latency_p95,{},{value:.6}\n",
            1_700_000_000 + row / 100
        ));
    }
    text
}

fn csv(criterion: &mut Criterion) {
    let rows = 100_000;
    let text = recording(rows);
    let mut group = criterion.benchmark_group("recorded");
    group.throughput(Throughput::Elements(rows as u64));
    group.bench_function("read CSV, 100,000 rows", |bench| {
        bench.iter(|| black_box(parse_csv(&text, "bench.csv").unwrap()))
    });
    group.finish();
}

criterion_group!(benches, csv);
criterion_main!(benches);
