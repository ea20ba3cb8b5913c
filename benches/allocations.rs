//! What one judgement and one look allocate, under dhat's counting allocator:
//!
//! - the 20-metric profile of `benches/judge.rs`, judged once to build what the process
//!   keeps (the exact null distributions) and once counted, as every later judgement
//!   pays;
//! - the looks of `benches/look.rs` (the web-service profile over the healthy replay):
//!   one whole rollout uncounted, then a second one counted, divided by its looks.
//!
//! Prints the number of allocations, their bytes and the most held at once; a separate
//! binary, so the counting allocator never slows the timed benchmarks. Run with `cargo
//! bench --bench allocations`.

use std::hint::black_box;

use canary::judge::judge;

#[path = "common/judge_input.rs"]
mod judge_input;
#[path = "common/look_input.rs"]
mod look_input;
use judge_input::{profile, side};
use look_input::Replay;

#[global_allocator]
static ALLOCATOR: dhat::Alloc = dhat::Alloc;

fn main() {
    let profile = profile();
    let baseline = side(1, 0.2);
    let canary = side(2, 0.21);
    black_box(judge(&profile, &baseline, &canary));
    let replay = Replay::open();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a runtime");
    // A whole rollout first, so the counted one pays only what every later one does.
    runtime.block_on(async { looks(&replay, replay.started_runner().await).await });

    let profiler = dhat::Profiler::builder().testing().build();
    black_box(judge(&profile, &baseline, &canary));
    let stats = dhat::HeapStats::get();
    println!(
        "one judgement of 20 metrics (10 x 1,000-sample continuous): {} allocations, \
         {} KiB in all, {} KiB at most at once",
        stats.total_blocks,
        stats.total_bytes / 1024,
        stats.max_bytes / 1024
    );
    let runner = runtime.block_on(replay.started_runner());
    let before = dhat::HeapStats::get();
    let looks = runtime.block_on(looks(&replay, runner));
    let after = dhat::HeapStats::get();
    println!(
        "one look of the web-service profile (healthy replay, mean of {looks} looks): {} \
         allocations, {} KiB in all",
        (after.total_blocks - before.total_blocks) / looks,
        (after.total_bytes - before.total_bytes) / looks / 1024,
    );
    drop(profiler);
}

/// Takes `runner`'s looks to the end of the recording; returns how many it took.
async fn looks(replay: &Replay, mut runner: canary::scheduler::RolloutRunner) -> u64 {
    let mut looks = 0;
    while replay.has_look(&runner) {
        let due = runner.next_look_at();
        black_box(runner.take_look(due).await.expect("a look"));
        looks += 1;
    }
    looks
}
