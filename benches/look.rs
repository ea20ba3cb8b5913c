//! One whole look of a rollout, as `canary run` takes it: the web-service profile
//! (`analysis-profiles/web-service.toml`, sequential judge, five metrics, two triggers)
//! over the healthy replay (`fixtures/replay/healthy`), with the log-only actuator. A
//! look reads the flag, fetches its window from the replay, judges, checks the
//! triggers, decides and records. Each timed iteration is one look; when the rollout
//! ends, a new runner starts (untimed), so the figure is the mean over the rollout's
//! looks, the first look of each stage included. Run with `cargo bench --bench look`.
//!
//! What it leaves out: a live source's network round trip and a real flag store's write
//! (see `benches/actuation.rs`), and the store's record of the look (a worker's).

#[path = "common/look_input.rs"]
mod look_input;

use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use look_input::Replay;

fn bench_look(c: &mut Criterion) {
    let replay = Replay::open();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a runtime");
    c.bench_function(
        "one sequential look (web-service profile, healthy replay)",
        |b| {
            b.iter_custom(|iterations| {
                runtime.block_on(async {
                    let mut runner = replay.started_runner().await;
                    let mut spent = Duration::ZERO;
                    for _ in 0..iterations {
                        if !replay.has_look(&runner) {
                            runner = replay.started_runner().await;
                        }
                        let due = runner.next_look_at();
                        let start = Instant::now();
                        std::hint::black_box(runner.take_look(due).await.expect("a look"));
                        spent += start.elapsed();
                    }
                    spent
                })
            })
        },
    );
}

criterion_group!(benches, bench_look);
criterion_main!(benches);
