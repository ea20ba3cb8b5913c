//! Command-line types. Parsing only: `main` hands the parsed values to [`crate::app`].

use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};

use crate::actuators::ActuatorConfig;
use crate::domain::HumanDuration;
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
    /// marks a missing point. A fourth CSV column `instance` (or, in the JSON, an
    /// `instance` or `pod` label) names each point's host or pod: continuous metrics
    /// are then tested beyond what hosts that far apart can differ by (README,
    /// "Instances differ").
    #[command(after_help = EXIT_CODES)]
    Analyze(AnalyzeArgs),
    /// Drive a staged rollout: at every analysis interval pull baseline and canary series,
    /// judge them, and move the feature flag stage by stage until it promotes, holds or
    /// rolls back.
    ///
    /// The profile's `[[stages]]` give the traffic, minimum duration, interval and lookback of
    /// each stage; its `[[triggers]]` roll back or hold at once. Repeated looks do not
    /// multiply false rollbacks: in `[judge] mode = "sequential"` (the default) the judge
    /// accumulates anytime-valid evidence over the looks and rolls back as soon as it
    /// crosses its share of the rollout's error budget; in `fixed` mode every look judges
    /// at its own share. Missing canary data holds and does not count towards a stage. A
    /// stage with no baseline (the default at 100 %, where a flag leaves nobody to compare
    /// with) is judged by its triggers and threshold metrics alone, the other metrics
    /// needing only canary data; `check-profile` prints what each stage compares against.
    /// A configuration error is exit 1, never a verdict: before the flag moves for the
    /// queries, the flag and the metric names (a live source is given 20 s for its first
    /// scrape), and at the first look for a canary scope that matches no series while the
    /// baseline has some (the flag is then put back where it was). With --dry-run the
    /// rollout is judged and recorded, and the flag is never touched: the summary says what a real run would have done ("would roll back",
    /// status `would_roll_back` / `would_promote` with `"dry_run": true` in JSON), and the
    /// exit code is that verdict's (0, 2 or 3), so a pipeline can act on it. A progress bar on stderr shows stage, traffic, elapsed time and the latest
    /// verdict; the summary goes to stdout.
    #[command(after_help = EXIT_CODES)]
    Run(Box<RunArgs>),
    /// Measure decision quality: run seeded, labeled rollouts through the real runner.
    ///
    /// Families: healthy A/A (normal and low traffic, and traffic and errors bursting
    /// equally on both sides), latency +5 %, +20 %, +50 %, latency variance doubled at the
    /// same median, error rate ×2 and ×5, intermittent error bursts, a canary that slows
    /// only from 25 % traffic, and canary data dropping out. Production-shaped families
    /// (issue 14) answer one latency and count series per instance (label
    /// `instance="i-<n>"`, the same values on both sides) from a fleet whose instances
    /// differ by a host spread, with latency recorded for a sampled share of requests:
    /// healthy-hosts; healthy-hosts-drift, and every family below, adds a shared drift on
    /// both sides (a ±30 % daily traffic curve, ±10 % on latency, and a slow AR(1)
    /// wobble); healthy-low-traffic-10rps (10 requests/s for the whole service);
    /// healthy-bursty-both; slower-by-host-spread (canary latency × exp(τ), inside the
    /// 5 % tolerance: labelled healthy); latency+20%-hosts; errors-x2-hosts;
    /// variance-x2-hosts; error-bursts-small-stages (15–30 s bursts of 15 % errors in 2 %
    /// of the canary's steps, at 1–5 % traffic only); no-data-hosts. Each rollout looks at every
    /// interval of every stage, as a real one does. Prints per family and judge mode the
    /// rollouts promoted, rolled back and left for review, the rate that matters (false
    /// rollbacks, detection, or no-data promotions) and the median detection delay in
    /// looks (for healthy families, the median looks to the end), then the targets met
    /// and missed. The profile defaults to the built-in one
    /// (fixtures/simulation/profile.toml); another needs its metrics `latency`
    /// (continuous) and `errors` (proportion). Exits 0 unless it cannot run.
    Simulate(SimulateArgs),
    /// Validate analysis profiles and print a one-line summary of each, a line per stage
    /// saying what it compares the canary with (the live baseline, or at a stage without
    /// one its triggers and absolute checks), warnings about looks too short for a
    /// sequential check, and a note for each comparative metric whose query aggregates
    /// its instances away (the judge then cannot allow for host differences).
    ///
    /// With --traffic REQUESTS_PER_SECOND (the whole service's), also a table per stage
    /// and comparative metric: what the stage gathers over its duration on the smaller
    /// side, how long it needs for the metric's min_samples and whether that fits in the
    /// stage's max_duration, and for error rates the smallest canary/baseline ratio the
    /// stage can detect at the baseline error rate --error-rate (default 1 %); a stage
    /// that cannot gather its samples is a warning.
    ///
    /// Example: canary check-profile analysis-profiles/web-service.toml --traffic 40
    ///
    /// Exits 0 when every profile is valid, 1 otherwise (each error names the file,
    /// line and field).
    CheckProfile(CheckProfileArgs),
    /// Turn another tool's analysis configuration into a canary profile.
    #[command(subcommand)]
    Import(ImportCommand),
    /// Serve the HTTP API and run the workers that carry out submitted analyses.
    ///
    /// Settings come from --config (TOML) and CANARY_SECTION__KEY variables
    /// (CANARY_SERVER__BIND, CANARY_STORE__URL, CANARY_SERVER__AUTH_TOKEN, ...): the listen
    /// address and public URL, the bearer tokens and their scopes (server.auth_token has
    /// every scope; each [[server.tokens]] has a name, scopes among read, submit and act,
    /// and a token_env to read it from; with any token, submitting and manual actions need one, and reads too
    /// with server.require_token_for_reads; without any, anyone who reaches the API can
    /// submit, and the server warns; an empty token is refused at start-up), the slow-client
    /// timeouts (server.header_read_timeout 10s: disconnected; server.body_read_timeout 30s:
    /// 408), the store (sqlite:PATH by default; postgres://... lets several instances share
    /// the work; store.api_timeout 2s: /readyz, /metrics and submit answer 503 when the store
    /// is slower; store.retain_finished, default 90d or forever, is how long finished
    /// analyses are kept before they are deleted), the profiles directory, the named metric sources
    /// (kind prometheus, influxdb, graphite, datadog or cloudwatch; each runs the profile's
    /// queries in its own language, README "Metric sources") and actuators analyses may use, the notifiers told of rollbacks, reviews and
    /// promotions, and the workers (concurrency, lease, actuation deadline, how often a
    /// failed rollback is retried). The API also answers Kayenta's canary-execution calls under
    /// /kayenta (Argo Rollouts' kayenta provider, Spinnaker; server.kayenta_scope_label is the
    /// label a bare Kayenta scope selects; see docs/kayenta.md), which the instance's executor
    /// judges once each, moving no flag, and Flagger's webhook gates under /v1/flagger/HOOK
    /// (docs/flagger.md). /metrics reports each active analysis's results; with
    /// server.action_link_secret_env (and server.public_url) review notifications carry signed
    /// promote and roll-back links. A browser on http://ADDRESS/ gets the web console: every
    /// analysis, live, with filters; each analysis's stages, flag path, triggers, evidence and
    /// audit log; pause, resume, promote and roll back after signing in with a token (README
    /// "The web console"). Prints `listening on http://ADDRESS` once ready. SIGINT
    /// or SIGTERM stops it gracefully: no new connections or claims, open verdict long-polls
    /// answer at once with the current state, running looks finish, leases are released.
    Serve(ServeArgs),
    /// Submit an analysis to a `canary serve` instance and print its id.
    ///
    /// The profile, source and actuator are names the server knows (its profiles
    /// directory and the sources and actuators in its settings). Prints the analysis id
    /// on stdout, so `ID=$(canary submit ...)` captures it. With --wait, then waits for the
    /// verdict like `canary wait` and exits with its code; without, exits 0 once stored.
    /// A server with tokens needs one of scope `submit`: --token or CANARY_TOKEN.
    ///
    /// Example: canary submit --server http://canary:8080 --profile web-service
    /// --flag checkout-v2 --source prod --actuator flags --wait 2h
    #[command(after_help = WAIT_EXIT_CODES)]
    Submit(SubmitArgs),
    /// Wait for the verdict of an analysis on a `canary serve` instance.
    ///
    /// Long-polls the server (GET /v1/analyses/ID/verdict, up to 5 minutes a request)
    /// until the analysis is final or --timeout runs out, prints the verdict and its
    /// reasons, and exits with the verdict's code: a pipeline step that blocks until the
    /// canary is judged.
    ///
    /// Example: canary wait 3f2b...-... --server http://canary:8080 --timeout 90m
    #[command(after_help = WAIT_EXIT_CODES)]
    Wait(WaitArgs),
    /// Fetch the report of an analysis from a `canary serve` instance.
    ///
    /// Prints a compact summary (coloured when stdout is a terminal, unless NO_COLOR is
    /// set) and, with --out,
    /// writes the HTML report (GET /v1/analyses/ID/report) to FILE. Exits 0, or 1 on an
    /// error.
    ///
    /// Example: canary report 3f2b...-... --server http://canary:8080 --out report.html
    Report(ReportArgs),
}

/// Arguments of `canary report`.
#[derive(Debug, clap::Args)]
pub struct ReportArgs {
    /// The analysis id.
    #[arg(value_name = "ID")]
    pub id: String,
    /// The server's URL, e.g. `http://canary.internal:8080`.
    #[arg(long, value_name = "URL")]
    pub server: String,
    /// Write the HTML report to FILE.
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// A bearer token of scope `read`, needed only when the server sets
    /// `require_token_for_reads`. Default: the CANARY_TOKEN variable (which keeps it
    /// out of the process list).
    #[arg(long, value_name = "TOKEN")]
    pub token: Option<String>,
}

const WAIT_EXIT_CODES: &str = "\
Exit codes (with --wait for submit):
  0  promote   the analysis promoted the canary
  2  hold      not final when the timeout ran out (running, paused, awaiting review)
  3  rollback  the canary was rolled back (or its rollback failed)
  1  error     the server is unreachable, the id is unknown, the request was refused,
               or the analysis failed to run
  4  owned     submit only: another active analysis owns the flag (its id and state are
               printed); one analysis per flag at a time";

/// Parses `30s`, `5m`, `1h30m` or a number of seconds.
fn parse_duration(text: &str) -> Result<Duration, String> {
    match text.trim().parse::<f64>() {
        Ok(seconds) if seconds.is_finite() && seconds >= 0.0 => {
            Ok(Duration::from_secs_f64(seconds))
        }
        Ok(_) => Err(format!("{text:?} must not be negative")),
        Err(_) => HumanDuration::parse(text).map(HumanDuration::get),
    }
}

/// Arguments of `canary submit`.
#[derive(Debug, clap::Args)]
pub struct SubmitArgs {
    /// The server's URL, e.g. `http://canary.internal:8080`.
    #[arg(long, value_name = "URL")]
    pub server: String,
    /// The analysis profile's name on the server (NAME for NAME.toml in its profiles
    /// directory); it must have a rollout plan.
    #[arg(long, value_name = "NAME")]
    pub profile: String,
    /// The feature flag to move.
    #[arg(long, value_name = "NAME")]
    pub flag: String,
    /// A metric source named in the server's settings.
    #[arg(long, value_name = "NAME")]
    pub source: String,
    /// An actuator named in the server's settings.
    #[arg(long, value_name = "NAME")]
    pub actuator: String,
    /// Label matchers that select the baseline in queries.
    #[arg(long, value_name = "MATCHERS", default_value = r#"track="baseline""#)]
    pub baseline_scope: String,
    /// Label matchers that select the canary in queries.
    #[arg(long, value_name = "MATCHERS", default_value = r#"track="canary""#)]
    pub canary_scope: String,
    /// Judge and record every interval, but never change the flag.
    #[arg(long)]
    pub dry_run: bool,
    /// When to start, Unix seconds. Default: at once.
    #[arg(long, value_name = "UNIX_SECONDS")]
    pub start_at: Option<f64>,
    /// Take over a flag already beyond the plan's first stage: start from the stage at
    /// or below its current share (never lowering it without a verdict). Without it,
    /// such a flag is refused: the analysis ends `failed`, the flag untouched.
    #[arg(long)]
    pub adopt: bool,
    /// After submitting, wait this long for the verdict (`90m`, `2h`, or seconds) and
    /// exit with its code.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub wait: Option<Duration>,
    /// A bearer token of scope `submit` (and `read` for --wait when the server sets
    /// `require_token_for_reads`), needed when the server has tokens. Default: the
    /// CANARY_TOKEN variable (which keeps it out of the process list).
    #[arg(long, value_name = "TOKEN")]
    pub token: Option<String>,
}

/// Arguments of `canary wait`.
#[derive(Debug, clap::Args)]
pub struct WaitArgs {
    /// The analysis id `canary submit` printed.
    #[arg(value_name = "ID")]
    pub id: String,
    /// The server's URL, e.g. `http://canary.internal:8080`.
    #[arg(long, value_name = "URL")]
    pub server: String,
    /// How long to wait for a final verdict (`30m`, `2h`, or seconds); then exit 2
    /// (hold) with the analysis's current state.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, default_value = "1h")]
    pub timeout: Duration,
    /// A bearer token of scope `read`, needed only when the server sets
    /// `require_token_for_reads`. Default: the CANARY_TOKEN variable (which keeps it
    /// out of the process list).
    #[arg(long, value_name = "TOKEN")]
    pub token: Option<String>,
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
    /// Output format on stdout. `text` is a compact coloured summary on a terminal and
    /// the full plain table when piped or redirected (NO_COLOR turns colour off).
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
    /// Also write the HTML report (one self-contained file with charts) to FILE.
    #[arg(long, value_name = "FILE")]
    pub report: Option<PathBuf>,
    /// Also judge the data with the other judge (Kayenta's NetflixACAJudge for a profile
    /// with canary's judge, canary's for a `[judge] algorithm = "kayenta"` profile) and
    /// show, metric by metric, where the two disagree, with how the profile was read for
    /// it. The exit code stays the profile's own verdict's.
    #[arg(long)]
    pub compare: bool,
}

/// Arguments of `canary run`.
#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// The analysis profile (TOML) with a rollout plan (`[[stages]]`).
    #[arg(long, value_name = "FILE")]
    pub profile: PathBuf,
    /// Where metrics come from: `prometheus=URL` (the profile's PromQL queries are run;
    /// VictoriaMetrics, Thanos, Mimir and other stores that speak the Prometheus API
    /// too), `influxdb=URL?db=DATABASE` (the profile's [metrics.queries.influxdb]
    /// InfluxQL), `file=PATH` (a TOML table: `kind` and the source's settings, such as
    /// oauth2, sigv4, tenant or headers) or `replay=DIR` (recorded DIR/baseline.csv and
    /// DIR/canary.csv, replayed on a compressed clock). Credentials are read from the
    /// environment: CANARY_PROMETHEUS_BEARER_TOKEN, or CANARY_PROMETHEUS_USERNAME and
    /// CANARY_PROMETHEUS_PASSWORD, CANARY_PROMETHEUS_TENANT (X-Scope-OrgID); for an https
    /// URL signed by a private CA, CANARY_PROMETHEUS_CA_FILE (PEM); InfluxDB:
    /// CANARY_INFLUXDB_USERNAME and CANARY_INFLUXDB_PASSWORD, or CANARY_INFLUXDB_TOKEN.
    /// HTTPS certificates are checked against the system's CA roots (SSL_CERT_FILE /
    /// SSL_CERT_DIR override where they are read).
    #[arg(long, value_name = "SOURCE")]
    pub source: SourceConfig,
    /// The feature flag to move.
    #[arg(long, value_name = "NAME")]
    pub flag: String,
    /// What moves the flag: `flagd-file=PATH[,kill=off-variant][,lock-wait-ms=N]` (an
    /// OpenFeature flagd flag file, edited atomically under the lock file PATH.lock,
    /// waited for up to N ms, default 5000; the kill switch sets `state: DISABLED`, so
    /// flagd serves the application's code default, or with `kill=off-variant` keeps the
    /// flag enabled and serves its off variant to everybody), `unleash=URL,environment=ENV[,project=P][,token-env=VAR]` (the
    /// Unleash admin API; the admin token is read from CANARY_UNLEASH_TOKEN or VAR),
    /// `webhook=URL` (a signed POST per change; the HMAC secret from
    /// CANARY_WEBHOOK_SECRET) or `log-only` (log the changes, touch nothing).
    #[arg(long, value_name = "ACTUATOR", default_value = "log-only")]
    pub actuator: ActuatorConfig,
    /// Judge and record every interval, but never change the flag (shadow mode).
    #[arg(long)]
    pub dry_run: bool,
    /// Take over a flag already beyond the plan's first stage: start from the stage at
    /// or below its current share, never lowering it without a verdict. Without it such
    /// a flag is refused (exit 1, flag untouched).
    #[arg(long)]
    pub adopt: bool,
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
    /// Summary format on stdout. `text` is a compact coloured summary on a terminal and
    /// the plain summary (stages, reasons, flag changes) when piped or redirected
    /// (NO_COLOR turns colour off).
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
    /// Also write the HTML report of the rollout (timeline with trigger checks, metrics,
    /// charts of every look's series) to FILE.
    #[arg(long, value_name = "FILE")]
    pub report: Option<PathBuf>,
}

/// Arguments of `canary serve`.
#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// Settings file (TOML); CANARY_* environment variables override it.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
}

/// Arguments of `canary simulate`.
#[derive(Debug, clap::Args)]
pub struct SimulateArgs {
    /// Rollouts per family and mode.
    #[arg(long, default_value_t = 200, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub rollouts: u32,
    /// The first seed (rollout i uses SEED + i, the same in every mode; the
    /// production-shaped families mix their name into it, so each draws its own hosts
    /// and drift).
    #[arg(long, default_value_t = 1, value_name = "SEED")]
    pub seed: u64,
    /// Only these families (repeat the flag); all by default.
    #[arg(long = "family", value_name = "NAME")]
    pub families: Vec<String>,
    /// The judge modes to compare.
    #[arg(long, value_enum, default_value_t = SimulateMode::Both)]
    pub mode: SimulateMode,
    /// The profile to simulate (the built-in one by default).
    #[arg(long, value_name = "FILE")]
    pub profile: Option<PathBuf>,
    /// Output: a Markdown table with the targets, or JSON.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
    /// Rollouts run at once (default: the number of CPUs).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub jobs: Option<u32>,
    /// Production-shaped families: instances per side at each analysed stage, in stage
    /// order (a stage beyond the list keeps the last count). The first instances stay
    /// from stage to stage; each serves an equal share of its side's requests.
    #[arg(long, value_name = "N,N,...", value_delimiter = ',', default_value = "1,1,5,10,20",
          value_parser = clap::value_parser!(u32).range(1..))]
    pub instances: Vec<u32>,
    /// Production-shaped families: requests per second of the whole service at 100 %
    /// traffic (healthy-low-traffic-10rps has 10 whatever this says).
    #[arg(long, value_name = "RPS", default_value_t = 200.0, value_parser = positive_rate)]
    pub service_rps: f64,
    /// Production-shaped families: τ, the host-to-host spread of latency; each
    /// instance's level is multiplied by exp(τ·z), z standard normal per (seed, side,
    /// instance). 0.03 is "a few percent".
    #[arg(long, value_name = "TAU", default_value_t = 0.03, value_parser = non_negative_fraction)]
    pub host_spread: f64,
    /// Production-shaped families: the same spread for each instance's error rate.
    #[arg(long, value_name = "TAU", default_value_t = 0.1, value_parser = non_negative_fraction)]
    pub error_host_spread: f64,
    /// Production-shaped families: the share of requests whose latency is recorded (a
    /// step's per-instance percentile comes from that many; none recorded gives NaN).
    #[arg(long, value_name = "SHARE", default_value_t = 0.1, value_parser = sampling_share)]
    pub latency_sampling: f64,
}

/// A finite number from 0 to 1.
fn non_negative_fraction(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(value) if (0.0..=1.0).contains(&value) => Ok(value),
        _ => Err(format!("{text:?} is not a number from 0 to 1")),
    }
}

/// A finite rate above 0.
fn positive_rate(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(value) if value.is_finite() && value > 0.0 => Ok(value),
        _ => Err(format!("{text:?} is not a rate above 0")),
    }
}

/// A share above 0, at most 1.
fn sampling_share(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(value) if value > 0.0 && value <= 1.0 => Ok(value),
        _ => Err(format!("{text:?} is not a share above 0 and at most 1")),
    }
}

/// Which judge modes `canary simulate` runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SimulateMode {
    /// Sequential and fixed, side by side.
    Both,
    /// Anytime-valid sequential evidence.
    Sequential,
    /// A fixed-horizon test at every look.
    Fixed,
}

/// What `canary import` reads.
#[derive(Debug, Subcommand)]
pub enum ImportCommand {
    /// A Kayenta canary config (JSON) as a profile judged by Kayenta's own judge
    /// (`[judge] algorithm = "kayenta"`), so it gives the verdicts Kayenta gave.
    ///
    /// Carries over the metrics (Prometheus queries built as Kayenta builds them, its
    /// `${scope}` matcher becoming canary's `{{scope}}`), groups and weights, critical,
    /// muted, mustHaveData, direction, NaN strategy, outliers, the effect-size gates with
    /// Kayenta's meaning (ratios of means or CLES), and the score thresholds. Whatever
    /// cannot be carried over (other sources' queries, a metric's second group, template
    /// variables without a --var) is listed on stderr and in the profile's header.
    /// Prints the profile on stdout, or writes it to --output (never over an existing
    /// file without --force).
    ///
    /// Example: canary import kayenta canary-config.json --var namespace=prod
    /// --output analysis-profiles/checkout.toml
    ///
    /// Exits 0 when the profile was produced (with or without notes), 1 otherwise.
    Kayenta(ImportKayentaArgs),
}

/// Arguments of `canary import kayenta`.
#[derive(Debug, clap::Args)]
pub struct ImportKayentaArgs {
    /// The Kayenta canary config (JSON, as Kayenta's /canaryConfig API returns it).
    #[arg(value_name = "CONFIG.json")]
    pub config: PathBuf,
    /// Write the profile here instead of stdout.
    #[arg(long, short, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Replace --output when it exists.
    #[arg(long)]
    pub force: bool,
    /// The pass score (Kayenta's scoreThresholds.pass), when the config has none or it
    /// is to be replaced; 95 when neither gives one.
    #[arg(long, value_name = "SCORE", value_parser = score)]
    pub pass_score: Option<f64>,
    /// The marginal score (scoreThresholds.marginal), likewise; 75 by default.
    #[arg(long, value_name = "SCORE", value_parser = score)]
    pub marginal_score: Option<f64>,
    /// A value for `${NAME}` in the config's query templates (Kayenta's
    /// extendedScopeParams, location, project); repeatable.
    #[arg(long = "var", value_name = "NAME=VALUE", value_parser = variable)]
    pub variables: Vec<(String, String)>,
}

fn score(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(value) if (0.0..=100.0).contains(&value) => Ok(value),
        _ => Err(format!("must be a score from 0 to 100, got {text:?}")),
    }
}

fn variable(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((name, value)) if !name.is_empty() && name != "scope" => {
            Ok((name.to_owned(), value.to_owned()))
        }
        Some(("scope", _)) => Err(
            "${scope} is not a variable here: it becomes {{scope}}, filled per analysis with \
             each side's matchers"
                .into(),
        ),
        _ => Err(format!("must be NAME=VALUE, got {text:?}")),
    }
}

/// Arguments of `canary check-profile`.
#[derive(Debug, clap::Args)]
pub struct CheckProfileArgs {
    /// Profile files to validate.
    #[arg(required = true, value_name = "FILE")]
    pub profiles: Vec<PathBuf>,
    /// The whole service's requests per second: estimate per stage how long each
    /// metric needs to gather its min_samples and what it can detect.
    #[arg(long, value_name = "REQUESTS_PER_SECOND", value_parser = positive_rate)]
    pub traffic: Option<f64>,
    /// The baseline error rate assumed for the detectable ratio of error-rate metrics
    /// (with --traffic), a fraction in (0, 1).
    #[arg(long, value_name = "FRACTION", default_value_t = 0.01, value_parser = fraction)]
    pub error_rate: f64,
}

fn fraction(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(value) if value > 0.0 && value < 1.0 => Ok(value),
        _ => Err(format!(
            "{text:?} is not a fraction between 0 and 1 (1 % is 0.01)"
        )),
    }
}

/// Output formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// A readable report: verdict, reasons, a table of metrics (compact and coloured on
    /// a terminal).
    Text,
    /// One JSON object (schema in the README).
    Json,
}
