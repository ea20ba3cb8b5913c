//! What one judgement allocates: the 20-metric profile of `benches/judge.rs` judged
//! under dhat's counting allocator, once to build what the process keeps (the exact
//! null distributions) and once counted, as every later look pays. Prints the number of
//! allocations, their bytes and the most held at once; a separate binary, so the
//! counting allocator never slows the timed benchmarks. Run with `cargo bench --bench
//! allocations`.

use std::hint::black_box;

use canary::judge::judge;

#[path = "common/judge_input.rs"]
mod judge_input;
use judge_input::{profile, side};

#[global_allocator]
static ALLOCATOR: dhat::Alloc = dhat::Alloc;

fn main() {
    let profile = profile();
    let baseline = side(1, 0.2);
    let canary = side(2, 0.21);
    black_box(judge(&profile, &baseline, &canary));
    let _profiler = dhat::Profiler::builder().testing().build();
    black_box(judge(&profile, &baseline, &canary));
    let stats = dhat::HeapStats::get();
    println!(
        "one judgement of 20 metrics (10 x 1,000-sample continuous): {} allocations, \
         {} KiB in all, {} KiB at most at once",
        stats.total_blocks,
        stats.total_bytes / 1024,
        stats.max_bytes / 1024
    );
}
