//! Command-line types. Parsing only: `main` hands the parsed values to [`crate::app`].

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

use crate::actuators::ActuatorConfig;
use crate::sources::config::SourceConfig;

const EXIT_CODES: &str = "\
Exit codes:
  0  promote   the canary is at least as good as the baseline
  2  hold      not enough evidence, or a warning needs manual review
  3  rollback  the canary is worse
  1  error     bad input (the message names the file, line and field) or a failure";

/// Automated canary analysis: compares baseline and canary metrics and decides
/// promote, hold or rollback.
#[derive(Debug, Parser)]
#[command(name = "canary", version, after_help = EXIT_CODES)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Judge recorded baseline and canary series under an analysis profile.
    ///
    /// Data files are CSV (`metric,timestamp,value` rows, an optional header, `#`
    /// comments; a proportion metric NAME is given as `NAME:errors` and `NAME:total`
    /// rows) or the JSON of Prometheus' /api/v1/query_range: either one response whose
    /// series carry `__name__`, or an object mapping metric names to responses. NaN
    /// marks a missing point.
    #[command(after_help = EXIT_CODES)]
    Analyze(AnalyzeArgs),
    /// Drive a staged rollout: at every analysis interval pull baseline and canary series,
    /// judge them, and move the feature flag stage by stage until it promotes, holds or
    /// rolls back.
    ///
    /// The profile's `[[stages]]` give the traffic, minimum duration, interval and lookback of
    /// each stage; its `[[triggers]]` roll back or hold at once. Every look judges at its
    /// share of the rollout's error budget, so repeated looks do not multiply false
    /// rollbacks. With --dry-run the rollout is judged and recorded, and the flag is never
    /// touched. A progress bar on stderr shows stage, traffic, elapsed time and the latest
    /// verdict; the summary goes to stdout.
    #[command(after_help = EXIT_CODES)]
    Run(Box<RunArgs>),
    /// Validate analysis profiles and print a one-line summary of each.
    ///
    /// Exits 0 when every profile is valid, 1 otherwise (each error names the file,
    /// line and field).
    CheckProfile(CheckProfileArgs),
}

/// Arguments of `canary analyze`.
#[derive(Debug, clap::Args)]
pub struct AnalyzeArgs {
    /// The analysis profile (TOML), e.g. analysis-profiles/web-service.toml.
    #[arg(long, value_name = "FILE")]
    pub profile: PathBuf,
    /// Baseline observations (.csv or Prometheus .json).
    #[arg(long, value_name = "FILE")]
    pub baseline: PathBuf,
    /// Canary observations (.csv or Prometheus .json).
    #[arg(long, value_name = "FILE")]
    pub canary: PathBuf,
    /// Output format on stdout.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
}

/// Arguments of `canary run`.
#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// The analysis profile (TOML) with a rollout plan (`[[stages]]`).
    #[arg(long, value_name = "FILE")]
    pub profile: PathBuf,
    /// Where metrics come from: `prometheus=URL` (the profile's queries are run) or
    /// `replay=DIR` (recorded DIR/baseline.csv and DIR/canary.csv, replayed on a
    /// compressed clock). Prometheus credentials are read from the environment:
    /// CANARY_PROMETHEUS_BEARER_TOKEN, or CANARY_PROMETHEUS_USERNAME and
    /// CANARY_PROMETHEUS_PASSWORD.
    #[arg(long, value_name = "SOURCE")]
    pub source: SourceConfig,
    /// The feature flag to move.
    #[arg(long, value_name = "NAME")]
    pub flag: String,
    /// What moves the flag: `flagd-file=PATH` (an OpenFeature flagd flag file, edited
    /// atomically) or `log-only` (log the changes, touch nothing).
    #[arg(long, value_name = "ACTUATOR", default_value = "log-only")]
    pub actuator: ActuatorConfig,
    /// Judge and record every interval, but never change the flag (shadow mode).
    #[arg(long)]
    pub dry_run: bool,
    /// Label matchers that select the baseline in queries (`{{scope}}`).
    #[arg(long, value_name = "MATCHERS", default_value = r#"track="baseline""#)]
    pub baseline_scope: String,
    /// Label matchers that select the canary in queries (`{{scope}}`).
    #[arg(long, value_name = "MATCHERS", default_value = r#"track="canary""#)]
    pub canary_scope: String,
    /// Analysis time to start at, Unix seconds (to replay history). Default: now for
    /// Prometheus; for a replay, one first-stage lookback after the recording's first
    /// timestamp.
    #[arg(long, value_name = "UNIX_SECONDS")]
    pub start: Option<f64>,
    /// Analysis seconds per wall-clock second. Default: 1 for a live rollout from now; a
    /// replay (or a --start in the past) runs its whole plan in about 20 seconds.
    #[arg(long, value_name = "FACTOR")]
    pub speed: Option<f64>,
    /// Summary format on stdout.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
}

/// Arguments of `canary check-profile`.
#[derive(Debug, clap::Args)]
pub struct CheckProfileArgs {
    /// Profile files to validate.
    #[arg(required = true, value_name = "FILE")]
    pub profiles: Vec<PathBuf>,
}

/// Output formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// A readable report: verdict, reasons, a table of metrics.
    Text,
    /// One JSON object (schema in the README).
    Json,
}
