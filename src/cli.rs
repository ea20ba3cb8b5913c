//! Command-line types. Parsing only: `main` hands the parsed values to [`crate::app`].

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

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
