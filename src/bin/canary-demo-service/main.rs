//! `canary-demo-service`: the demo web service of the live test bed.
//!
//! A service whose traffic follows an OpenFeature flagd flag file: it re-reads the file
//! every 100 ms, gives the flag's share of requests to the `canary` track, as much to a
//! `baseline` track (at most half) and the rest to `stable`, and generates the requests
//! itself (Poisson arrivals, lognormal latency, random 500s) so no load generator is
//! needed. `/metrics` exposes what a real service would, per track and pod, for a real
//! Prometheus to scrape; `POST /fault` makes one track slower or fail more; `/state`
//! says what the service saw (every flag change, the fault, and how long the flag took
//! to go off after a fault). `scripts/live-bed.sh` and `tests/it/live_bed.rs` start it
//! with a Prometheus beside it.
//!
//! Layout: `world.rs` (the simulated service as one value; the time is passed in),
//! `traffic.rs` (tracks, shares, pods), `fault.rs`, `flag.rs` (reading the flag as
//! flagd would, and the task that re-reads the file), `metrics.rs` (the text
//! exposition), `api.rs` (routes), `rng.rs`. This file parses arguments, sets up
//! logging, binds, starts the two timers and serves until SIGTERM or SIGINT.

mod api;
mod catalogue;
mod fault;
mod flag;
mod metrics;
mod rng;
mod traffic;
mod world;

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Parser;
use tracing_subscriber::EnvFilter;

use world::{ServiceConfig, SharedWorld, World, unix_now};

/// How often requests are generated.
const TICK: Duration = Duration::from_millis(10);

/// A demo web service whose traffic follows an OpenFeature flagd flag, for trying canary
/// on a world that looks like production.
///
/// Three tracks of pods serve requests: `canary` gets the flag's share p (the `on`
/// variant's weight in the flag's `fractional` targeting when it is ENABLED; with no
/// targeting, 100 when `defaultVariant` is `on`, else 0; 0 when DISABLED or missing),
/// `baseline` gets min(p, 100 − p) and `stable` the rest. The flag file is re-read every
/// 100 ms; an unreadable or invalid file keeps the last good reading. Requests are
/// generated inside the service every 10 ms (Poisson arrivals at --rps), each with a
/// lognormal latency (median --base-latency × the pod's speed factor, log-sd
/// --latency-sigma) and a 500 with probability --error-rate; each is also one
/// business event (a migration, a fund setup, a started wizard) failing with
/// probability --business-failure-rate.
///
/// --metric-sets adds the series the shipped seed profiles query, per track and pod:
///   migration  — migrations_total{outcome="succeeded"|"failed"}, reserve_ratio (1.0),
///                resource_utilization_ratio (0.45);
///   feature    — feature_requests_total{outcome="ok"|"error"},
///                feature_request_duration_seconds (histogram), resource_utilization_ratio;
///   transport  — transport_requests_total{outcome="ok"|"error"},
///                transport_request_duration_seconds (histogram), http_responses_total{code};
///   container  — container_memory_working_set_bytes, container_spec_memory_limit_bytes (500 MB);
///   business   — fund_setups_total{outcome="success"|"failure"},
///                wizard_events_total{event="started"|"completed"}, probe_success (1).
/// Requests, errors and latencies behind the other names are the web set's own.
///
/// HTTP:
///   GET /metrics  — Prometheus text: http_requests_total{track,pod,code},
///                   http_request_duration_seconds{track,pod} (histogram),
///                   process_cpu_seconds_total{track,pod}, process_resident_memory_bytes{track,pod},
///                   demo_flag_canary_percent. Every series exists from the start, at 0.
///   POST /fault   — JSON {"track": "canary", "error_rate": null, "error_factor": null,
///                   "latency_factor": 1.0, "tail_spread": 1.0, "business_failure_rate": null,
///                   "gauges": {"reserve_ratio" | "resource_utilization_ratio" |
///                   "probe_success": level}, "start_delay_seconds": 0,
///                   "duration_seconds": null}, all optional; replaces any fault; answers
///                   the fault with its onset_at (Unix seconds); 400 names a bad field.
///   DELETE /fault — clears it.
///   GET /state    — JSON: canary_percent, flag_state, changes [{at, canary_percent,
///                   flag_state}], fault, fault_onset_to_flag_off_seconds, requests per track,
///                   pods [{track, name, speed_factor}].
///   GET /healthz  — 200.
///
/// Prints exactly one line on stdout, `listening on http://ADDR`, once bound; logs go to
/// stderr (RUST_LOG, default info). Stops on SIGTERM or SIGINT.
#[derive(Debug, Parser)]
#[command(name = "canary-demo-service", version, verbatim_doc_comment)]
struct Args {
    /// Address to listen on; port 0 picks a free port (the line on stdout says which).
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// The OpenFeature flagd flag file to follow.
    #[arg(long, value_name = "PATH")]
    flags: PathBuf,
    /// The flag in that file whose share goes to the canary.
    #[arg(long, value_name = "NAME")]
    flag: String,
    /// Requests per second over the whole service.
    #[arg(long, default_value_t = 4000.0)]
    rps: f64,
    /// Pods in each track (stable, baseline, canary).
    #[arg(long, default_value_t = 3)]
    pods_per_track: u32,
    /// Seed of every random draw (pods' speeds, arrivals, latencies, errors).
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Log-sd of the pods' speed factors (lognormal around 1): hosts differ a little.
    #[arg(long, default_value_t = 0.03)]
    pod_spread: f64,
    /// Median latency, seconds.
    #[arg(long, default_value_t = 0.12)]
    base_latency: f64,
    /// Log-sd of latency.
    #[arg(long, default_value_t = 0.4)]
    latency_sigma: f64,
    /// Probability that a request fails with a 500.
    #[arg(long, default_value_t = 0.002)]
    error_rate: f64,
    /// Probability that a business event fails (a failed migration or fund setup, a
    /// wizard left incomplete).
    #[arg(long, default_value_t = 0.01)]
    business_failure_rate: f64,
    /// The catalogue's sets of series to export beside the web set (comma-separated).
    #[arg(long, value_enum, value_delimiter = ',', value_name = "SET,...")]
    metric_sets: Vec<catalogue::MetricSet>,
    /// Percent of requests mirrored to the canary and, as much, to the baseline while
    /// the flag is ENABLED at 0 % (a shadow stage); users still get stable's answers.
    #[arg(long, default_value_t = 0.0)]
    shadow_percent: f64,
}

impl Args {
    fn config(&self) -> anyhow::Result<ServiceConfig> {
        let finite_non_negative = |value: f64| value.is_finite() && value >= 0.0;
        if !finite_non_negative(self.rps) {
            bail!("--rps must be a number of requests per second, at least 0");
        }
        if self.pods_per_track == 0 {
            bail!("--pods-per-track must be at least 1");
        }
        if !(finite_non_negative(self.pod_spread) && finite_non_negative(self.latency_sigma)) {
            bail!("--pod-spread and --latency-sigma must be at least 0");
        }
        if !(self.base_latency.is_finite() && self.base_latency > 0.0) {
            bail!("--base-latency must be a positive number of seconds");
        }
        if !(0.0..=1.0).contains(&self.error_rate) {
            bail!("--error-rate must be a probability between 0 and 1");
        }
        if !(0.0..=1.0).contains(&self.business_failure_rate) {
            bail!("--business-failure-rate must be a probability between 0 and 1");
        }
        if !(0.0..=100.0).contains(&self.shadow_percent) {
            bail!("--shadow-percent must be a percentage between 0 and 100");
        }
        Ok(ServiceConfig {
            requests_per_second: self.rps,
            pods_per_track: self.pods_per_track,
            seed: self.seed,
            pod_spread: self.pod_spread,
            base_latency: self.base_latency,
            latency_sigma: self.latency_sigma,
            error_rate: self.error_rate,
            business_failure_rate: self.business_failure_rate,
            metric_sets: self.metric_sets.clone(),
            shadow_percent: self.shadow_percent,
        })
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
    // One thread is plenty for 4,000 simulated requests a second and a few scrapes.
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::from(1)
        }
    }
}

async fn run(args: Args) -> anyhow::Result<()> {
    let config = args.config()?;
    let initial = flag::read_file(&args.flags, &args.flag)
        .await
        .map_err(anyhow::Error::msg)
        .context("the flag file must be readable at start")?;
    let world = Arc::new(SharedWorld::new(World::new(
        config,
        args.flag.clone(),
        initial,
        unix_now(),
    )));
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let address = listener.local_addr().context("the bound address")?;
    {
        let mut stdout = std::io::stdout().lock();
        writeln!(stdout, "listening on http://{address}").context("stdout")?;
        stdout.flush().context("stdout")?;
    }
    tracing::info!(%address, flag = %args.flag, path = %args.flags.display(), canary_percent = initial.canary_percent, "serving");

    tokio::spawn(flag::watch(args.flags, args.flag, world.clone()));
    tokio::spawn(generate_traffic(world.clone()));
    axum::serve(listener, api::router(world))
        .with_graceful_shutdown(shutdown_signal())
        .await
        .context("the HTTP server failed")?;
    tracing::info!("stopped");
    Ok(())
}

/// Every [`TICK`], serves the requests of the time since the previous tick (so a late
/// tick does not lose traffic; at most a second is made up).
async fn generate_traffic(world: Arc<SharedWorld>) {
    let mut ticker = tokio::time::interval(TICK);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut previous = Instant::now();
    loop {
        ticker.tick().await;
        let now = Instant::now();
        let elapsed = now.duration_since(previous).as_secs_f64().min(1.0);
        previous = now;
        world.lock().serve(elapsed, unix_now());
    }
}

/// Resolves on SIGTERM or SIGINT.
async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut terminate =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(terminate) => terminate,
                Err(_) => {
                    let _ = interrupt.await;
                    return;
                }
            };
        tokio::select! {
            _ = interrupt => {},
            _ = terminate.recv() => {},
        }
    }
    #[cfg(not(unix))]
    {
        let _ = interrupt.await;
    }
}
