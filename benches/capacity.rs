//! Capacity of one `canary serve` instance: how many analyses it keeps on schedule.
//!
//! One run is one instance as `canary serve` composes it — one [`Worker`] with the
//! `[worker]` defaults (`WorkerSettings::default()`, except `poll_interval` when
//! `CAPACITY_POLL_MS` is set), `run_until_stopped` on the system clock, a SQLite file
//! store (WAL, `synchronous = FULL`) in a temporary directory on the machine's disk, the
//! log-only actuator, and the engine metrics it reports to. N analyses of the shipped
//! `analysis-profiles/web-service.toml` (5 metrics: p95 latency and CPU and memory as
//! samples, errors/requests as counts, a p95 SLO; 2 triggers; 5 stages) run on it at
//! once, against a synthetic source with one point per (scaled) second per side and
//! metric: 360 points per side per metric and look, 21,600 per look in all (12 queries).
//!
//! **Time is scaled, work is not.** The shipped profile looks every 3 minutes over the
//! last 6. To see several looks per analysis in a short run, every duration of the
//! profile (interval, stage duration, lookback, step, hold timeout, trigger spans) is
//! divided by the same factor `180 s / CAPACITY_INTERVAL`, and so is the synthetic
//! source's point spacing. Each look then does exactly the work of a real one (the same
//! points fetched and judged, the same trigger points, a stage change every second look
//! with its flag change and intent records, the same store writes), only more often:
//! the load is `N / interval` looks per second, so N analyses at a 30 s interval load the
//! instance like 6·N web-service analyses at their real 3 minutes.
//!
//! **Lateness** is measured outside the worker: the source records, per analysis and
//! look, when the look's first query arrived (the step has claimed the analysis, parsed
//! its profile snapshot and rebuilt its runner by then) minus the look's due time (the
//! query window's end). Looks that were never taken by the end of the run count with
//! their lateness so far; a look taken more than an interval late is recorded by the
//! worker at "now" instead of its due time (`step_time`), which shows up as an
//! off-schedule look and counts as a whole interval late. The worker's own
//! `canary_interval_lateness_seconds` histogram is printed beside it as a cross-check.
//! Memory is the child process's `VmHWM` (peak RSS) and its RSS growth per analysis;
//! each N runs in a fresh child process so the figures do not mix.
//!
//! `cargo bench --bench capacity` sweeps N (spread start times, then aligned ones) and
//! prints a table; environment variables change the sweep:
//! `CAPACITY_N=250,500,...` (spread sweep; stops at the first N that misses the target),
//! `CAPACITY_ALIGNED_N=...` (aligned sweep; empty to skip), `CAPACITY_INTERVAL` (seconds,
//! default 30), `CAPACITY_LOOKS` (measured looks per analysis, default 3),
//! `CAPACITY_POLL_MS`, `CAPACITY_CONCURRENCY`, `CAPACITY_SAMPLE_SECONDS` (scaled seconds
//! between synthetic points, default 1), `CAPACITY_STORE` (a `postgres://` URL instead
//! of the SQLite file). Under `cargo test` (no `--bench` argument) it runs one tiny
//! instance for a few seconds and checks that its looks were taken.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use canary::actuators::Actuator;
use canary::actuators::log_only::LogOnlyActuator;
use canary::config::WorkerSettings;
use canary::domain::Profile;
use canary::scheduler::{Clock, Registry, SystemClock, Worker, WorkerOptions};
use canary::sources::synthetic::{CountModel, Distribution, MetricModel, SyntheticSource};
use canary::sources::{LabeledSeries, MetricSource, RangeRequest, SourceError};
use canary::store::{
    ActuationOutcome, ActuationRecord, Analysis, AnalysisState, AuditEntry, LookRecord, LookUpdate,
    ManualAction, NewActuation, NewAnalysis, Page, Store, StoreConfig, StoreError,
};
use canary::telemetry::EngineMetrics;
use uuid::Uuid;

/// The target: a look may start at most this late at the 99th percentile.
const TARGET_P99_SECONDS: f64 = 1.0;
/// The shipped profile's interval, which the scaled profile shortens.
const REAL_INTERVAL_SECONDS: f64 = 180.0;
/// Marks the child process and carries its configuration.
const CHILD_VARIABLE: &str = "CAPACITY_CHILD";
const RESULT_PREFIX: &str = "CAPACITY_RESULT ";

/// One instance under one load.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct Load {
    /// Analyses running at once.
    analyses: usize,
    /// Their interval, seconds (the profile is scaled to it).
    interval: f64,
    /// Looks per analysis inside the measured window.
    looks: usize,
    /// All analyses due at the same instants (true) or spread evenly over an interval.
    aligned: bool,
    /// `[worker] concurrency`.
    concurrency: usize,
    /// `[worker] poll_interval`, milliseconds.
    poll_ms: u64,
    /// Scaled seconds between synthetic points (1 = per-second samples).
    sample_seconds: f64,
    /// A PostgreSQL URL, or `None` for a SQLite file in a temporary directory.
    store: Option<String>,
}

/// What one run measured.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct Outcome {
    load: Load,
    /// Looks due in the window (taken or not).
    looks_due: usize,
    /// Looks taken on schedule in the window.
    looks_taken: usize,
    /// Looks taken more than an interval late (recorded off their schedule).
    looks_slipped: usize,
    /// Looks due in the window and still not taken when the run ended.
    looks_missed: usize,
    /// Lateness percentiles over every look due in the window, seconds.
    p50: f64,
    p99: f64,
    max: f64,
    /// The worker's own histogram: looks observed and their mean lateness.
    worker_observed: u64,
    worker_mean: f64,
    /// Process CPU over the window, in cores (2.0 = both cores busy).
    cpu_cores: f64,
    /// Peak RSS of the process (VmHWM), MiB.
    peak_rss_mib: f64,
    /// RSS before submitting, and at the end of the run, MiB.
    rss_before_mib: f64,
    rss_after_mib: f64,
    /// Seconds to submit the N analyses.
    submit_seconds: f64,
    /// Store calls during the run: name → (calls, total seconds, max seconds).
    store_calls: BTreeMap<String, (u64, f64, f64)>,
    /// Time inside the source's fetches (synthetic generation), seconds.
    fetch_seconds: f64,
    /// Analyses in each state at the end.
    states: BTreeMap<String, u64>,
    /// The machine's 1-minute load average at the end (other processes share the cores).
    load_average: f64,
}

impl Outcome {
    fn looks_per_second(&self) -> f64 {
        self.load.analyses as f64 / self.load.interval
    }

    fn meets_target(&self) -> bool {
        self.p99 < TARGET_P99_SECONDS && self.looks_slipped == 0 && self.looks_missed == 0
    }
}

fn main() {
    if let Ok(text) = std::env::var(CHILD_VARIABLE) {
        let load: Load = serde_json::from_str(&text).expect("the parent passes a load");
        let outcome = run(load);
        println!(
            "{RESULT_PREFIX}{}",
            serde_json::to_string(&outcome).expect("an outcome serializes")
        );
        return;
    }
    // Like criterion: `cargo bench` passes `--bench`; `cargo test` runs benches without it,
    // and then a tiny instance for a few seconds is enough to show the harness works.
    if !std::env::args().any(|argument| argument == "--bench") {
        smoke_test();
        return;
    }
    sweep();
}

fn smoke_test() {
    let load = Load {
        analyses: 20,
        interval: 1.0,
        looks: 2,
        aligned: false,
        concurrency: WorkerSettings::default().concurrency,
        poll_ms: 50,
        sample_seconds: 1.0,
        store: None,
    };
    let outcome = run(load);
    print_header();
    print_row(&outcome);
    assert_eq!(outcome.looks_due, 40, "{outcome:?}");
    assert!(
        outcome.looks_taken + outcome.looks_slipped > 0,
        "no look was taken: {outcome:?}"
    );
    assert!(outcome.worker_observed > 0, "{outcome:?}");
}

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    match std::env::var(name) {
        Ok(text) if !text.trim().is_empty() => text
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("{name}={text:?} is not valid")),
        _ => default,
    }
}

fn env_list(name: &str, default: &str) -> Vec<usize> {
    let text = std::env::var(name).unwrap_or_else(|_| default.to_owned());
    text.split(',')
        .map(str::trim)
        .filter(|item| !item.is_empty())
        .map(|item| {
            item.parse()
                .unwrap_or_else(|_| panic!("{name}: {item:?} is not a count"))
        })
        .collect()
}

fn sweep() {
    let defaults = WorkerSettings::default();
    let default_poll_ms = defaults
        .poll_duration()
        .expect("the default poll interval parses")
        .as_millis() as u64;
    let base = Load {
        analyses: 0,
        interval: env_or("CAPACITY_INTERVAL", 30.0),
        looks: env_or("CAPACITY_LOOKS", 3),
        aligned: false,
        concurrency: env_or("CAPACITY_CONCURRENCY", defaults.concurrency),
        poll_ms: env_or("CAPACITY_POLL_MS", default_poll_ms),
        sample_seconds: env_or("CAPACITY_SAMPLE_SECONDS", 1.0),
        store: std::env::var("CAPACITY_STORE")
            .ok()
            .filter(|url| !url.is_empty()),
    };
    println!(
        "capacity: web-service profile scaled to a {} s interval ({} looks/s per 1,000 analyses; \
         equivalent to {:.0}x as many analyses at the real 180 s), {} measured looks per analysis, \
         concurrency {}, poll {} ms, store {}",
        base.interval,
        1000.0 / base.interval,
        REAL_INTERVAL_SECONDS / base.interval,
        base.looks,
        base.concurrency,
        base.poll_ms,
        base.store.as_deref().unwrap_or("SQLite file (WAL)")
    );
    for (aligned, variable, default) in [
        (false, "CAPACITY_N", "250,500,1000,2000,4000,8000"),
        (true, "CAPACITY_ALIGNED_N", "25,50,100,200,400"),
    ] {
        let counts = env_list(variable, default);
        if counts.is_empty() {
            continue;
        }
        println!(
            "\n{} (target: lateness p99 < {TARGET_P99_SECONDS} s, nothing slipped or missed)",
            if aligned {
                "aligned: every analysis due at the same instants;"
            } else {
                "spread: due times evenly spread over the interval;"
            }
        );
        print_header();
        let mut passed: Option<usize> = None;
        let mut failed: Option<usize> = None;
        for analyses in counts {
            let outcome = run_child(Load {
                analyses,
                aligned,
                ..base.clone()
            });
            print_row(&outcome);
            if outcome.meets_target() {
                passed = Some(analyses);
            } else {
                failed = Some(analyses);
                break;
            }
        }
        // One bisection step between the last N that met the target and the first that
        // did not, when the sweep found both.
        if let (Some(low), Some(high)) = (passed, failed)
            && high > low + 1
            && env_or("CAPACITY_BISECT", 1usize) > 0
        {
            let middle = (low + high) / 2;
            let outcome = run_child(Load {
                analyses: middle,
                aligned,
                ..base.clone()
            });
            print_row(&outcome);
            if outcome.meets_target() {
                passed = Some(middle);
            }
        }
        match passed {
            Some(analyses) => println!(
                "largest N meeting the target: {analyses} ({:.1} looks/s)",
                analyses as f64 / base.interval
            ),
            None => println!("no N in the sweep met the target"),
        }
    }
}

fn print_header() {
    println!(
        "| N | looks/s | due | on time | slipped | missed | lateness p50 | p99 | max | worker mean | CPU cores | peak RSS | RSS/analysis | record_look mean/max | claim mean | load avg | meets |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|");
}

fn print_row(outcome: &Outcome) {
    let call = |name: &str| {
        outcome
            .store_calls
            .get(name)
            .copied()
            .unwrap_or((0, 0.0, 0.0))
    };
    let (looks_recorded, record_seconds, record_max) = call("record_look");
    let (claims, claim_seconds, _) = call("claim_due");
    let growth_kib = (outcome.rss_after_mib - outcome.rss_before_mib) * 1024.0
        / outcome.load.analyses.max(1) as f64;
    println!(
        "| {} | {:.1} | {} | {} | {} | {} | {:.3} s | {:.3} s | {:.3} s | {:.3} s | {:.2} | {:.0} MiB | {:.1} KiB | {:.1} / {:.0} ms | {:.1} ms | {:.1} | {} |",
        outcome.load.analyses,
        outcome.looks_per_second(),
        outcome.looks_due,
        outcome.looks_taken,
        outcome.looks_slipped,
        outcome.looks_missed,
        outcome.p50,
        outcome.p99,
        outcome.max,
        outcome.worker_mean,
        outcome.cpu_cores,
        outcome.peak_rss_mib,
        growth_kib,
        1000.0 * record_seconds / looks_recorded.max(1) as f64,
        1000.0 * record_max,
        1000.0 * claim_seconds / claims.max(1) as f64,
        outcome.load_average,
        if outcome.meets_target() { "yes" } else { "no" },
    );
    // The details, on stderr so the table stays a table.
    // Timings are reset when the window opens and read after the half interval past it.
    let window = outcome.load.interval * (outcome.load.looks as f64 + 0.5);
    let busy = |name: &str| {
        format!(
            "{name} {:.0} % of the window",
            100.0 * call(name).1 / window
        )
    };
    eprintln!(
        "  N={}: submitted in {:.1} s; states at the end {:?}; synthetic fetches {:.1} % of a core; \
         store calls in the window (summed over concurrent steps): {}, {}, {}, {}",
        outcome.load.analyses,
        outcome.submit_seconds,
        outcome.states,
        100.0 * outcome.fetch_seconds / window,
        busy("record_look"),
        busy("claim_due"),
        busy("release"),
        busy("intend_actuation"),
    );
}

/// Runs one load in a fresh process, so peak RSS and the allocator's state are its own.
fn run_child(load: Load) -> Outcome {
    let executable = std::env::current_exe().expect("the bench knows its own path");
    let output = std::process::Command::new(executable)
        .env(
            CHILD_VARIABLE,
            serde_json::to_string(&load).expect("a load serializes"),
        )
        .stderr(std::process::Stdio::inherit())
        .output()
        .expect("the child runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let line = stdout
        .lines()
        .find_map(|line| line.strip_prefix(RESULT_PREFIX))
        .unwrap_or_else(|| panic!("the child for {load:?} printed no result: {stdout}"));
    serde_json::from_str(line).expect("the child's result parses")
}

/// One instance under `load`, in this process.
fn run(load: Load) -> Outcome {
    // `canary serve` runs on `#[tokio::main]`: the multi-threaded runtime, one thread per core.
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a runtime")
        .block_on(run_instance(load))
}

async fn run_instance(load: Load) -> Outcome {
    let directory = tempfile::Builder::new()
        .prefix("canary-capacity")
        .tempdir_in(std::env::var("CAPACITY_TMPDIR").unwrap_or_else(|_| "/tmp".to_owned()))
        .expect("a temporary directory");
    let url = match &load.store {
        Some(url) => url.clone(),
        None => format!("sqlite:{}", directory.path().join("canary.db").display()),
    };
    let inner_store = StoreConfig::new(url)
        .build()
        .await
        .expect("the store opens");
    let store = Arc::new(TimedStore::new(inner_store));
    let profile_text = scaled_profile(load.interval);
    let source = Arc::new(TimedSource::new(synthetic_source(
        load.interval,
        load.sample_seconds,
    )));
    let registry = Arc::new(
        Registry::new()
            .with_source("synthetic", Arc::clone(&source) as Arc<dyn MetricSource>)
            .with_actuator(
                "log-only",
                Arc::new(LogOnlyActuator::new()) as Arc<dyn Actuator>,
            ),
    );
    let rss_before = memory_kib("VmRSS:");

    // Due times on a millisecond grid (the store keeps milliseconds), so a look on
    // schedule is recognisable exactly.
    let interval_ms = (load.interval * 1000.0).round() as i64;
    let offset_ms = |index: usize| -> i64 {
        if load.aligned {
            0
        } else {
            interval_ms * index as i64 / load.analyses as i64
        }
    };
    let request = |index: usize, start_at: f64| NewAnalysis {
        profile_name: "web-service".to_owned(),
        profile_text: profile_text.clone(),
        flag: format!("checkout-{index}"),
        source: "synthetic".to_owned(),
        actuator: "log-only".to_owned(),
        baseline_scope: format!(r#"track="baseline",bench_analysis="{index}""#),
        canary_scope: format!(r#"track="canary",bench_analysis="{index}""#),
        dry_run: false,
        start_at: Some(start_at),
        owner: None,
        adopt: false,
        submit_key: None,
    };
    // Start times lie after the submissions end: their pace comes from a few probe
    // analyses due in a day (never claimed during the run).
    let probe_started = Instant::now();
    let probes = 20;
    for index in 0..probes {
        store
            .create_analysis(
                request(usize::MAX - index, SystemClock.now() + 86_400.0),
                SystemClock.now(),
            )
            .await
            .expect("submit a probe");
    }
    let pace = probe_started.elapsed().as_secs_f64() / probes as f64;
    let first_start_ms =
        ((SystemClock.now() + 1.5 * pace * load.analyses as f64 + 2.0) * 1000.0).round() as i64;
    let submit_started = Instant::now();
    let mut analyses = Vec::with_capacity(load.analyses);
    for index in 0..load.analyses {
        let start_ms = first_start_ms + offset_ms(index);
        let analysis = store
            .create_analysis(request(index, start_ms as f64 / 1000.0), SystemClock.now())
            .await
            .expect("submit");
        analyses.push((analysis.id, start_ms));
    }
    let submit_seconds = submit_started.elapsed().as_secs_f64();
    let late_submission = SystemClock.now() - first_start_ms as f64 / 1000.0;
    if late_submission > 0.0 {
        eprintln!(
            "capacity: N={} submissions ended {late_submission:.1} s after the first start time",
            load.analyses
        );
    }

    let settings = WorkerSettings::default();
    let mut options = WorkerOptions::from_settings(&settings).expect("default worker settings");
    options.id = "capacity-bench".to_owned();
    options.concurrency = load.concurrency;
    options.poll_interval = Duration::from_millis(load.poll_ms);
    let worker = Worker::new(
        Arc::clone(&store) as Arc<dyn Store>,
        registry,
        Arc::new(SystemClock),
        options,
    );
    let metrics = Arc::new(EngineMetrics::new());
    let worker = worker.report_to(Arc::clone(&metrics));

    // Starts happen in the first interval; the window holds `looks` looks of each
    // analysis; the run goes on for half an interval more so a look a little late at
    // the window's end is still taken, then stops as SIGTERM would.
    let window_from_ms = first_start_ms + interval_ms;
    let window_to_ms = window_from_ms + interval_ms * load.looks as i64;
    let stop_at = (window_to_ms + interval_ms / 2) as f64 / 1000.0;
    let mut cpu_from = None;
    let window_from = window_from_ms as f64 / 1000.0;
    let shutdown = async {
        SystemClock.sleep_until(window_from).await;
        // The starts are over: what follows is the steady state of looks.
        store.reset_timings();
        source.reset_timings();
        cpu_from = Some((cpu_seconds(), Instant::now()));
        SystemClock.sleep_until(stop_at).await;
    };
    worker.run_until_stopped(shutdown).await;
    let cpu_cores = cpu_from.map_or(0.0, |(cpu, wall)| {
        (cpu_seconds() - cpu) / wall.elapsed().as_secs_f64()
    });
    let stopped_at = SystemClock.now();

    // Which analyses ended (a rollback of a healthy canary happens: the error budget
    // allows 5 % per rollout), and when, so their later looks are not expected.
    let mut ended_at: HashMap<Uuid, f64> = HashMap::new();
    let mut states: BTreeMap<String, u64> = BTreeMap::new();
    let mut cursor: Option<String> = None;
    loop {
        let page: Page<Analysis> = store
            .list_analyses(None, 1000, cursor.as_deref())
            .await
            .expect("list analyses");
        for analysis in &page.items {
            *states
                .entry(analysis.state.as_str().to_owned())
                .or_default() += 1;
            if analysis.state.is_final() {
                ended_at.insert(analysis.id, analysis.updated_at);
            }
        }
        match page.next_cursor {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }

    let first_fetches = source.first_fetches();
    let mut lateness = Vec::new();
    let (mut looks_due, mut looks_taken, mut looks_slipped, mut looks_missed) = (0, 0, 0, 0);
    for (index, (id, start_ms)) in analyses.iter().enumerate() {
        let ends = first_fetches.get(&index);
        let end_of_life = ended_at.get(id).copied().unwrap_or(stopped_at);
        let mut due_ms = start_ms + interval_ms;
        while due_ms < window_from_ms {
            due_ms += interval_ms;
        }
        while due_ms < window_to_ms {
            let due = due_ms as f64 / 1000.0;
            if due <= end_of_life {
                looks_due += 1;
                match ends.and_then(|ends| ends.get(&due_ms)) {
                    Some(first_fetch) => {
                        looks_taken += 1;
                        lateness.push(first_fetch - due);
                    }
                    None => {
                        // Taken off schedule (more than an interval late), or not at all.
                        let slipped = ends.is_some_and(|ends| {
                            ends.keys().any(|&end| {
                                end > due_ms
                                    && end < due_ms + 2 * interval_ms
                                    && (end - start_ms) % interval_ms != 0
                            })
                        });
                        if slipped {
                            looks_slipped += 1;
                            lateness.push(load.interval);
                        } else {
                            looks_missed += 1;
                            lateness.push(stopped_at - due);
                        }
                    }
                }
            }
            due_ms += interval_ms;
        }
    }
    lateness.sort_by(f64::total_cmp);
    let (worker_observed, worker_sum) = lateness_histogram(&metrics.encode());
    store.close().await;
    Outcome {
        looks_due,
        looks_taken,
        looks_slipped,
        looks_missed,
        p50: percentile(&lateness, 0.50),
        p99: percentile(&lateness, 0.99),
        max: lateness.last().copied().unwrap_or(0.0),
        worker_observed,
        worker_mean: worker_sum / worker_observed.max(1) as f64,
        cpu_cores,
        peak_rss_mib: memory_kib("VmHWM:") / 1024.0,
        rss_before_mib: rss_before / 1024.0,
        rss_after_mib: memory_kib("VmRSS:") / 1024.0,
        submit_seconds,
        store_calls: store.timings(),
        fetch_seconds: source.fetch_seconds(),
        states,
        load_average: std::fs::read_to_string("/proc/loadavg")
            .ok()
            .and_then(|text| text.split_whitespace().next()?.parse().ok())
            .unwrap_or(f64::NAN),
        load,
    }
}

/// The nearest-rank percentile of sorted values.
fn percentile(sorted: &[f64], quantile: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = (quantile * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// `canary_interval_lateness_seconds` count and sum from the exposition text.
fn lateness_histogram(exposition: &str) -> (u64, f64) {
    let value = |name: &str| {
        exposition
            .lines()
            .find_map(|line| line.strip_prefix(name)?.trim().parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (
        value("canary_interval_lateness_seconds_count ") as u64,
        value("canary_interval_lateness_seconds_sum "),
    )
}

/// A field of `/proc/self/status`, KiB.
fn memory_kib(field: &str) -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status.lines().find_map(|line| {
                line.strip_prefix(field)?
                    .trim()
                    .trim_end_matches("kB")
                    .trim()
                    .parse()
                    .ok()
            })
        })
        .unwrap_or(f64::NAN)
}

/// User plus system CPU of this process, seconds (`/proc/self/stat`, USER_HZ = 100).
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name (which may hold spaces) start at the state, field 3.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or("", |(_, rest)| rest)
        .split_whitespace()
        .collect();
    let ticks = |position: usize| {
        fields
            .get(position)
            .and_then(|text| text.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // utime is field 14 and stime field 15, i.e. positions 11 and 12 after the state.
    (ticks(11) + ticks(12)) / 100.0
}

/// The shipped web-service profile with every duration divided by
/// `180 s / interval`, so it looks every `interval` seconds over the same share of its
/// data. Panics if the shipped profile no longer has the durations this expects.
fn scaled_profile(interval: f64) -> String {
    let shipped = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/analysis-profiles/web-service.toml"
    ))
    .expect("the shipped web-service profile");
    let factor = interval / REAL_INTERVAL_SECONDS;
    let mut text = shipped;
    for (quoted, seconds) in [
        ("\"6m\"", 360.0),
        ("\"3m\"", 180.0),
        ("\"2m\"", 120.0),
        ("\"1m\"", 60.0),
        ("\"5s\"", 5.0),
    ] {
        assert!(
            text.contains(quoted),
            "web-service.toml no longer has a {quoted} duration; update the capacity bench"
        );
        let scaled = format!("\"{}ms\"", (seconds * factor * 1000.0).round() as u64);
        text = text.replace(&format!("= {quoted}"), &format!("= {scaled}"));
    }
    let profile = Profile::parse(&text, "web-service.toml (scaled)").expect("the scaled profile");
    let plan = profile
        .plan
        .as_ref()
        .expect("web-service has a rollout plan");
    assert!(
        plan.stages
            .iter()
            .all(|stage| (stage.interval.seconds() - interval).abs() < 1e-3),
        "every stage looks every {interval} s"
    );
    text
}

/// The five web-service metrics, healthy (the canary like its baseline), one point per
/// `sample_seconds` of scaled time.
fn synthetic_source(interval: f64, sample_seconds: f64) -> SyntheticSource {
    let latency = Distribution::LogNormal {
        median: 0.2,
        sigma: 0.15,
    };
    let requests = CountModel {
        // 200 requests a second per side, 0.5 % of them errors.
        events_per_step: 200.0 * sample_seconds,
        error_rate: 0.005,
    };
    SyntheticSource::new(
        0xCA9A_4E57,
        sample_seconds * interval / REAL_INTERVAL_SECONDS,
        BTreeMap::from([
            ("latency_p95".to_owned(), MetricModel::same_samples(latency)),
            ("p95_slo".to_owned(), MetricModel::same_samples(latency)),
            ("error_rate".to_owned(), MetricModel::same_counts(requests)),
            (
                "cpu_usage".to_owned(),
                MetricModel::same_samples(Distribution::Normal {
                    mean: 0.45,
                    sd: 0.05,
                }),
            ),
            (
                "memory_rss".to_owned(),
                MetricModel::same_samples(Distribution::Normal {
                    mean: 310.0,
                    sd: 8.0,
                }),
            ),
        ]),
    )
}

/// The analysis index the bench put in the scope (`bench_analysis="17"`).
fn analysis_index(query: &str) -> Option<usize> {
    let (_, rest) = query.split_once("bench_analysis=\"")?;
    rest.split('"').next()?.parse().ok()
}

/// The synthetic source, noting when each look's first query arrived.
struct TimedSource {
    inner: SyntheticSource,
    /// Analysis index → window end (ms) → wall time of the first query for it.
    first_fetches: Mutex<HashMap<usize, BTreeMap<i64, f64>>>,
    fetch_nanos: std::sync::atomic::AtomicU64,
}

impl TimedSource {
    fn new(inner: SyntheticSource) -> Self {
        Self {
            inner,
            first_fetches: Mutex::new(HashMap::new()),
            fetch_nanos: std::sync::atomic::AtomicU64::new(0),
        }
    }

    fn reset_timings(&self) {
        self.fetch_nanos
            .store(0, std::sync::atomic::Ordering::Relaxed);
    }

    fn fetch_seconds(&self) -> f64 {
        self.fetch_nanos.load(std::sync::atomic::Ordering::Relaxed) as f64 / 1e9
    }

    fn first_fetches(&self) -> HashMap<usize, BTreeMap<i64, f64>> {
        self.first_fetches.lock().expect("not poisoned").clone()
    }
}

#[async_trait]
impl MetricSource for TimedSource {
    fn describe(&self) -> String {
        self.inner.describe()
    }

    fn uses_queries(&self) -> bool {
        self.inner.uses_queries()
    }

    fn language(&self) -> canary::domain::QueryLanguage {
        self.inner.language()
    }

    fn render_scope(&self, scope: &str) -> Result<String, String> {
        self.inner.render_scope(scope)
    }

    fn query_variables(&self, start: f64, end: f64) -> Vec<(&'static str, String)> {
        self.inner.query_variables(start, end)
    }

    async fn healthcheck(&self) -> Result<(), SourceError> {
        self.inner.healthcheck().await
    }

    async fn fetch(&self, request: &RangeRequest) -> Result<Vec<LabeledSeries>, SourceError> {
        let arrived = SystemClock.now();
        if let Some(index) = analysis_index(&request.query) {
            let end_ms = (request.end * 1000.0).round() as i64;
            self.first_fetches
                .lock()
                .expect("not poisoned")
                .entry(index)
                .or_default()
                .entry(end_ms)
                .or_insert(arrived);
        }
        let started = Instant::now();
        let answer = self.inner.fetch(request).await;
        self.fetch_nanos.fetch_add(
            started.elapsed().as_nanos() as u64,
            std::sync::atomic::Ordering::Relaxed,
        );
        answer
    }
}

/// The store, timing the calls a worker makes.
struct TimedStore {
    inner: Arc<dyn Store>,
    calls: Mutex<BTreeMap<String, (u64, f64, f64)>>,
}

impl TimedStore {
    fn new(inner: Arc<dyn Store>) -> Self {
        Self {
            inner,
            calls: Mutex::new(BTreeMap::new()),
        }
    }

    fn reset_timings(&self) {
        self.calls.lock().expect("not poisoned").clear();
    }

    fn timings(&self) -> BTreeMap<String, (u64, f64, f64)> {
        self.calls.lock().expect("not poisoned").clone()
    }

    async fn timed<T>(&self, name: &str, call: impl Future<Output = T>) -> T {
        let started = Instant::now();
        let output = call.await;
        let seconds = started.elapsed().as_secs_f64();
        let mut calls = self.calls.lock().expect("not poisoned");
        let entry = calls.entry(name.to_owned()).or_default();
        entry.0 += 1;
        entry.1 += seconds;
        entry.2 = entry.2.max(seconds);
        output
    }
}

#[async_trait]
impl Store for TimedStore {
    async fn create_analysis(&self, new: NewAnalysis, now: f64) -> Result<Analysis, StoreError> {
        self.timed("create_analysis", self.inner.create_analysis(new, now))
            .await
    }

    async fn get_analysis(&self, id: Uuid) -> Result<Option<Analysis>, StoreError> {
        self.inner.get_analysis(id).await
    }

    async fn analysis_by_submit_key(&self, key: &str) -> Result<Option<Analysis>, StoreError> {
        self.inner.analysis_by_submit_key(key).await
    }

    async fn list_analyses(
        &self,
        state: Option<AnalysisState>,
        limit: u32,
        cursor: Option<&str>,
    ) -> Result<Page<Analysis>, StoreError> {
        self.inner.list_analyses(state, limit, cursor).await
    }

    async fn claim_due(
        &self,
        worker: &str,
        now: f64,
        lease: Duration,
        limit: u32,
    ) -> Result<Vec<Analysis>, StoreError> {
        self.timed("claim_due", self.inner.claim_due(worker, now, lease, limit))
            .await
    }

    async fn renew_lease(
        &self,
        id: Uuid,
        worker: &str,
        now: f64,
        lease: Duration,
    ) -> Result<f64, StoreError> {
        self.timed(
            "renew_lease",
            self.inner.renew_lease(id, worker, now, lease),
        )
        .await
    }

    async fn release(&self, id: Uuid, worker: &str) -> Result<bool, StoreError> {
        self.timed("release", self.inner.release(id, worker)).await
    }

    async fn record_look(
        &self,
        id: Uuid,
        worker: &str,
        expected_version: i64,
        now: f64,
        update: LookUpdate,
    ) -> Result<Analysis, StoreError> {
        self.timed(
            "record_look",
            self.inner
                .record_look(id, worker, expected_version, now, update),
        )
        .await
    }

    async fn intend_actuation(
        &self,
        worker: &str,
        now: f64,
        intent: NewActuation,
    ) -> Result<ActuationRecord, StoreError> {
        self.timed(
            "intend_actuation",
            self.inner.intend_actuation(worker, now, intent),
        )
        .await
    }

    async fn complete_actuation(
        &self,
        idempotency_key: &str,
        outcome: ActuationOutcome,
        detail: &str,
        now: f64,
    ) -> Result<ActuationRecord, StoreError> {
        self.timed(
            "complete_actuation",
            self.inner
                .complete_actuation(idempotency_key, outcome, detail, now),
        )
        .await
    }

    async fn list_looks(&self, id: Uuid) -> Result<Vec<LookRecord>, StoreError> {
        self.inner.list_looks(id).await
    }

    async fn list_actuations(&self, id: Uuid) -> Result<Vec<ActuationRecord>, StoreError> {
        self.inner.list_actuations(id).await
    }

    async fn apply_manual_action(
        &self,
        id: Uuid,
        action: ManualAction,
        now: f64,
    ) -> Result<Analysis, StoreError> {
        self.inner.apply_manual_action(id, action, now).await
    }

    async fn audit_log(&self, id: Uuid) -> Result<Vec<AuditEntry>, StoreError> {
        self.timed("audit_log", self.inner.audit_log(id)).await
    }

    async fn counts_by_state(&self) -> Result<BTreeMap<AnalysisState, u64>, StoreError> {
        self.inner.counts_by_state().await
    }
    async fn overview(
        &self,
        query: &canary::store::OverviewQuery,
    ) -> Result<canary::store::Overview, StoreError> {
        self.inner.overview(query).await
    }
    async fn prune_finished(&self, finished_before: f64, limit: u32) -> Result<u64, StoreError> {
        self.inner.prune_finished(finished_before, limit).await
    }
    async fn create_execution(
        &self,
        new: canary::store::NewExecution,
        now: f64,
    ) -> Result<canary::store::Execution, StoreError> {
        self.inner.create_execution(new, now).await
    }
    async fn get_execution(
        &self,
        id: uuid::Uuid,
    ) -> Result<Option<canary::store::Execution>, StoreError> {
        self.inner.get_execution(id).await
    }
    async fn active_with_latest_look(
        &self,
        limit: u32,
    ) -> Result<Vec<(canary::store::Analysis, Option<canary::store::LookRecord>)>, StoreError> {
        self.inner.active_with_latest_look(limit).await
    }
    async fn latest_execution(
        &self,
        key: &str,
    ) -> Result<Option<canary::store::Execution>, StoreError> {
        self.inner.latest_execution(key).await
    }
    async fn claim_execution(
        &self,
        worker: &str,
        now: f64,
        lease: std::time::Duration,
    ) -> Result<Option<canary::store::Execution>, StoreError> {
        self.inner.claim_execution(worker, now, lease).await
    }
    async fn finish_execution(
        &self,
        id: uuid::Uuid,
        worker: &str,
        now: f64,
        outcome: canary::store::ExecutionOutcome,
    ) -> Result<canary::store::Execution, StoreError> {
        self.inner.finish_execution(id, worker, now, outcome).await
    }

    async fn healthcheck(&self) -> Result<(), StoreError> {
        self.inner.healthcheck().await
    }

    async fn close(&self) {
        self.inner.close().await;
    }
}
