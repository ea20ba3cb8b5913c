//! The composition root: each command's wiring of files, sources, judge and report.
//!
//! This is the only module that names concrete sources and actuators, through their
//! config enums (`SourceConfig`, `ActuatorConfig`) and the recorded-file readers.
//! Errors are `anyhow` with context; `main` prints them once.

use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result};

use crate::actuators::Actuator;
use crate::actuators::retry::{RetryPolicy, RetryingActuator};
use crate::api::analyses::{Submission, VerdictView};
use crate::api::client::Client;
use crate::api::{self, ApiState};
use crate::cli::{
    AnalyzeArgs, CheckProfileArgs, Format, ReportArgs, RunArgs, ServeArgs, SimulateArgs,
    SimulateMode, SubmitArgs, WaitArgs,
};
use crate::config::Settings;
use crate::domain::plan::{RolloutPlan, Stage};
use crate::domain::{ContinuousKind, JudgeMode, Profile, Verdict};
use crate::judge::{self, Judgement};
use crate::notify::Notifications;
use crate::report;
use crate::scheduler::{
    Actuation, Clock, CompressedClock, Decision, Look, PruneOptions, Pruner, Rollout,
    RolloutRunner, RolloutStatus, Scopes, SystemClock,
};
use crate::scheduler::{Executor, ExecutorOptions, Registry, Worker, WorkerOptions};
use crate::sources::config::SourceConfig;
use crate::sources::prometheus::config::{BasicAuth, Secret};
use crate::sources::recorded;
use crate::store::StoreConfig;
use crate::telemetry::EngineMetrics;

/// An error and its causes on one line, as `main` prints it: like anyhow's `{:#}`, but a
/// cause whose text the message already shows (an error whose `Display` includes its
/// source) is not repeated.
pub fn error_message(error: &anyhow::Error) -> String {
    let mut message = String::new();
    for cause in error.chain() {
        let text = cause.to_string();
        if message.contains(&text) {
            continue;
        }
        if !message.is_empty() {
            message.push_str(": ");
        }
        message.push_str(&text);
    }
    message
}

/// Reads and validates a profile file.
pub fn load_profile(path: &Path) -> Result<Profile> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("{}: cannot read the profile", path.display()))?;
    Ok(Profile::parse(&text, &path.display().to_string())?)
}

/// Runs `canary analyze`: returns the judgement and its rendering for stdout. With
/// `--format text`, `terminal` (stdout is a terminal) chooses the compact summary of
/// [`report::terminal`] over the plain table that logs and scripts read.
pub fn analyze(args: &AnalyzeArgs, terminal: Terminal) -> Result<(Judgement, String)> {
    let profile = load_profile(&args.profile)?;
    // The two files are read side by side: large recordings are mostly parsing.
    let (baseline, canary) = std::thread::scope(|scope| {
        let canary = scope.spawn(|| recorded::read_file(&args.canary));
        let baseline = recorded::read_file(&args.baseline);
        let canary = canary
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        (baseline, canary)
    });
    // The baseline's error first, as when they were read one after the other.
    let (baseline, canary) = (baseline?, canary?);
    baseline.check_against(&profile)?;
    canary.check_against(&profile)?;
    let judgement = judge::judge(&profile, &baseline, &canary);
    tracing::info!(
        profile = %profile.name,
        verdict = %judgement.verdict,
        score = ?judgement.score,
        "judged canary"
    );
    let analysis_report =
        report::analysis::AnalysisReport::from_judgement(&judgement).with_relative_limits(&profile);
    let rendered = match (args.format, terminal) {
        (Format::Text, Terminal::Pipe) => report::text::render(&judgement),
        (Format::Text, Terminal::Tty { colour }) => {
            report::terminal::render(&analysis_report, colour)
        }
        (Format::Json, _) => report::json::render(&judgement),
    };
    let rendered = if args.compare {
        let comparison = judge::compare::compare(&profile, &judgement, &baseline, &canary);
        match args.format {
            Format::Text => format!(
                "{rendered}{}",
                report::text::render_comparison(&judgement, &comparison)
            ),
            Format::Json => report::json::with_comparison(&rendered, &comparison)?,
        }
    } else {
        rendered
    };
    if let Some(path) = &args.report {
        let page = report::html::render(
            &analysis_report,
            &report::analysis::ChartData::from_observations(&baseline, &canary),
        );
        write_report(path, &page)?;
    }
    Ok((judgement, rendered))
}

/// Where stdout goes, for the text format: a terminal gets the compact summary
/// ([`report::terminal`]), coloured unless `NO_COLOR` is set; anything else (a pipe, a
/// file, a CI log) gets the plain table, unchanged so scripts can rely on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Terminal {
    /// A pipe, a file or a log.
    Pipe,
    /// A terminal.
    Tty {
        /// ANSI colours (off when `NO_COLOR` is set).
        colour: bool,
    },
}

impl Terminal {
    /// What stdout is now, and whether `NO_COLOR` (<https://no-color.org>) asks for no
    /// colour.
    pub fn of_stdout() -> Terminal {
        if std::io::IsTerminal::is_terminal(&std::io::stdout()) {
            Terminal::Tty {
                colour: crate::telemetry::colour(true, std::env::var_os("NO_COLOR")),
            }
        } else {
            Terminal::Pipe
        }
    }

    /// Whether to print ANSI colours.
    pub fn colour(self) -> bool {
        matches!(self, Terminal::Tty { colour: true })
    }
}

/// What `canary import` produced: stdout's text (the profile, or a line saying where
/// it went) and the notes for stderr.
pub struct ImportOutcome {
    /// For stdout.
    pub stdout: String,
    /// What could not be carried over.
    pub not_carried: Vec<String>,
}

/// Runs `canary import kayenta`: reads the config, converts it, checks that the result
/// is a valid profile, then prints it or writes it (to a temporary file renamed over
/// the target, so a reader never sees half a profile; an existing file only with
/// `--force`).
pub fn import_kayenta(args: &crate::cli::ImportKayentaArgs) -> anyhow::Result<ImportOutcome> {
    use anyhow::Context as _;
    let file = args.config.display().to_string();
    let json = std::fs::read_to_string(&args.config)
        .with_context(|| format!("cannot read the Kayenta config {file}"))?;
    let options = crate::import::kayenta::ImportOptions {
        pass_score: args.pass_score,
        marginal_score: args.marginal_score,
        variables: args.variables.iter().cloned().collect(),
    };
    let imported = crate::import::kayenta::import_kayenta(&json, &file, &options)?;
    let target = args.output.as_ref().map_or_else(
        || "the imported profile".to_owned(),
        |p| p.display().to_string(),
    );
    let profile = Profile::parse(&imported.profile, &target).with_context(|| {
        format!("the profile imported from {file} is not valid (a bug in the importer)")
    })?;
    let Some(output) = &args.output else {
        return Ok(ImportOutcome {
            stdout: imported.profile,
            not_carried: imported.not_carried,
        });
    };
    if output.exists() && !args.force {
        anyhow::bail!("{target} exists; give --force to replace it");
    }
    let temporary = output.with_extension(format!("toml.tmp-{}", std::process::id()));
    std::fs::write(&temporary, &imported.profile)
        .and_then(|()| std::fs::rename(&temporary, output))
        .with_context(|| format!("cannot write {target}"))?;
    Ok(ImportOutcome {
        stdout: format!(
            "wrote {target}: profile {:?}, {} metric{}, judged as Kayenta judges ({} not carried \
             over as it was)\n",
            profile.name,
            profile.metrics.len(),
            if profile.metrics.len() == 1 { "" } else { "s" },
            imported.not_carried.len()
        ),
        not_carried: imported.not_carried,
    })
}

/// The `check-profile` line that says which metric sources can run the profile: the
/// query languages every metric has queries in, and those only some have.
fn query_languages(profile: &Profile) -> String {
    let mut languages = Vec::new();
    for language in crate::domain::QueryLanguage::ALL {
        let missing: Vec<&str> = profile
            .metrics
            .iter()
            .filter(|metric| metric.queries_in(language).is_none())
            .map(|metric| metric.name.as_str())
            .collect();
        if missing.len() == profile.metrics.len() {
            continue;
        }
        if missing.is_empty() {
            languages.push(language.key().to_owned());
        } else {
            languages.push(format!("{language} (none for {})", missing.join(", ")));
        }
    }
    if languages.is_empty() {
        "  queries: none (recorded data only)\n".to_owned()
    } else {
        format!("  queries: {}\n", languages.join(", "))
    }
}

/// Runs `canary check-profile`: a summary line per valid profile (then a warning line
/// for each of its stages' looks too short for a sequential check, see
/// [`RolloutPlan::short_look_warnings`](crate::domain::plan::RolloutPlan::short_look_warnings)),
/// and the first error of each invalid one.
pub fn check_profiles(args: &CheckProfileArgs) -> (String, Vec<anyhow::Error>) {
    let mut summary = String::new();
    let mut errors = Vec::new();
    for path in &args.profiles {
        match load_profile(path) {
            Ok(profile) => {
                let judge = match profile.judge.algorithm {
                    crate::domain::JudgeAlgorithm::Canary => format!(
                        "confidence level {}",
                        profile.judge.confidence_level.value()
                    ),
                    crate::domain::JudgeAlgorithm::Kayenta => format!(
                        "Kayenta's judge (its classifier at {} with a tolerance of {})",
                        crate::judge::kayenta::KAYENTA_CONFIDENCE_LEVEL,
                        crate::judge::kayenta::KAYENTA_TOLERANCE
                    ),
                };
                summary.push_str(&format!(
                    "{}: ok: profile {:?}, {} metrics, {judge}{}\n",
                    path.display(),
                    profile.name,
                    profile.metrics.len(),
                    profile
                        .plan
                        .as_ref()
                        .map_or_else(String::new, |plan| format!(
                            ", {} stages ({}), {} triggers{}",
                            plan.stages.len(),
                            plan.stages
                                .iter()
                                .map(|s| s.traffic.to_string())
                                .collect::<Vec<_>>()
                                .join(" → "),
                            plan.triggers.len(),
                            match profile.judge.algorithm {
                                crate::domain::JudgeAlgorithm::Canary =>
                                    format!(", error budget {}", plan.settings.error_budget),
                                // Kayenta's judge tests every look at its fixed level.
                                crate::domain::JudgeAlgorithm::Kayenta => String::new(),
                            }
                        ))
                ));
                summary.push_str(&query_languages(&profile));
                if let Some(plan) = &profile.plan {
                    summary.push_str(&stage_comparisons(&profile, plan));
                }
                // Looks too short for a sequential check to mean much: the profile is
                // valid, so these are warnings, one line each.
                if let (Some(plan), JudgeMode::Sequential) = (&profile.plan, profile.judge.mode) {
                    for warning in plan.short_look_warnings(&profile.metrics) {
                        summary.push_str(&format!("{}: warning: {warning}\n", path.display()));
                    }
                    summary.push_str(&instance_notes(&profile));
                }
                if let (Some(plan), Some(rps)) = (&profile.plan, args.traffic) {
                    summary.push_str(&traffic_table(&profile, plan, rps, args.error_rate, path));
                }
            }
            Err(error) => errors.push(error),
        }
    }
    (summary, errors)
}

/// The `--traffic` table: per stage with a baseline and comparative metric, what the
/// stage gathers, the time to `min_samples` against its `max_duration`, and for error
/// rates the detectable ratio; then a warning per stage that cannot gather its samples.
fn traffic_table(
    profile: &Profile,
    plan: &crate::domain::plan::RolloutPlan,
    requests_per_second: f64,
    error_rate: f64,
    path: &Path,
) -> String {
    use crate::format::{count, duration, number, percent};
    let estimates =
        crate::judge::traffic::stage_estimates(profile, plan, requests_per_second, error_rate);
    let mut out = format!(
        "  at {} requests/s for the whole service (samples: one series' points, one per step; \
         detects ×: the error-rate ratio a stage can tell from 1 once it has its samples, at a \
         baseline error rate of {}):\n",
        number(requests_per_second),
        percent(error_rate)
    );
    out.push_str(&format!(
        "  {:<12} {:<20} {:>18} {:>12} {:>12} {:>12}\n",
        "stage", "metric", "gathered", "min_samples", "needs", "detects ×"
    ));
    let mut warnings = String::new();
    for estimate in &estimates {
        let stage = plan
            .stages
            .iter()
            .find(|s| s.name == estimate.stage)
            .expect("an estimate's stage is in the plan");
        let needs = if estimate.needed.is_finite() {
            duration(estimate.needed)
        } else {
            "never".to_owned()
        };
        out.push_str(&format!(
            "  {:<12} {:<20} {:>18} {:>12} {:>12} {:>12}\n",
            estimate.stage,
            estimate.metric,
            format!("{} {}", count(estimate.gathered as u64), estimate.unit),
            count(estimate.min_samples),
            needs,
            estimate
                .detectable_ratio
                .filter(|ratio| ratio.is_finite())
                .map_or_else(|| "-".to_owned(), number)
        ));
        if !estimate.fits {
            warnings.push_str(&format!(
                "{}: warning: at {} requests/s stage {} needs {} to gather metric {:?}'s {} {}, \
                 beyond its max_duration {}: it would hold there (raise max_duration or lower min_samples)\n",
                path.display(),
                number(requests_per_second),
                estimate.stage,
                needs,
                estimate.metric,
                count(estimate.min_samples),
                estimate.unit,
                stage.max_duration
            ));
        }
    }
    out.push_str(&warnings);
    out
}

/// One indented note per comparative continuous metric whose query aggregates its
/// instances away: the judge then cannot allow for host differences (issue 14).
fn instance_notes(profile: &Profile) -> String {
    if profile.judge.host_spread <= 0.0 {
        return String::new();
    }
    profile
        .metrics
        .iter()
        .filter(|m| matches!(m.kind, crate::domain::MetricKind::Continuous(_)))
        .filter_map(|metric| {
            let query = metric.query.as_deref()?;
            let hiding = crate::sources::query::aggregation_hiding_instances(
                query,
                &profile.judge.instance_labels,
            )?;
            Some(format!(
                "  note: metric {:?}: its query aggregates the instances away (`{hiding}`), so \
                 a difference between the sides' hosts counts as a version difference; keep \
                 one of [judge] instance_labels ({}) in it to let the judge allow for host \
                 differences (README, \"Instances differ\")\n",
                metric.name,
                profile.judge.instance_labels.join(", ")
            ))
        })
        .collect()
}

/// One line per stage: its traffic, length and looks, and what it compares the canary
/// with (a live baseline, or at a stage without one the triggers and absolute checks).
fn stage_comparisons(profile: &Profile, plan: &crate::domain::plan::RolloutPlan) -> String {
    let thresholds: Vec<&str> = profile
        .metrics
        .iter()
        .filter(|m| matches!(m.kind, crate::domain::MetricKind::Threshold(_)))
        .map(|m| m.name.as_str())
        .collect();
    plan.stages
        .iter()
        .map(|stage| {
            format!(
                "  stage {} ({}, {}, a look every {}): {}\n",
                stage.name,
                stage.traffic,
                stage.duration,
                stage.interval,
                stage.comparison(&thresholds)
            )
        })
        .collect()
}

/// Runs `canary simulate`: the decision-quality table (Markdown) with the targets
/// met and missed, or the results as JSON.
pub async fn simulate(args: &SimulateArgs) -> Result<String> {
    use crate::simulate::{Family, Simulation, markdown_table, simulate, target_report};
    let profile = match &args.profile {
        Some(path) => load_profile(path)?,
        None => Profile::parse(
            crate::simulate::DEFAULT_PROFILE,
            "fixtures/simulation/profile.toml",
        )
        .context("the built-in simulation profile")?,
    };
    for (name, kind) in [("latency", "continuous"), ("errors", "proportion")] {
        if profile.metric(name).map(|m| m.kind.name()) != Some(kind) {
            anyhow::bail!(
                "--profile: profile {:?} has no {kind} metric {name:?}; the simulated service \
                 reports `latency` (continuous) and `errors` (proportion) only",
                profile.name
            );
        }
    }
    if profile.plan.is_none() {
        anyhow::bail!(
            "--profile: profile {:?} has no [[stages]]; a simulated rollout needs a plan",
            profile.name
        );
    }
    let families = if args.families.is_empty() {
        Family::ALL.to_vec()
    } else {
        args.families
            .iter()
            .map(|name| Family::parse(name).map_err(anyhow::Error::msg))
            .collect::<Result<Vec<_>>>()
            .context("--family")?
    };
    // The family's label (healthy) holds only while its slowdown, exp(τ) - 1, is inside
    // the profile's tolerance.
    if families.contains(&Family::SlowerByHostSpread)
        && let Some(crate::domain::MetricKind::Continuous(ContinuousKind {
            allowed_increase, ..
        })) = profile.metric("latency").map(|m| &m.kind)
        && args.host_spread.exp() - 1.0 >= *allowed_increase
    {
        anyhow::bail!(
            "--host-spread {}: the canary of slower-by-host-spread would be {:.1} % slower, \
             not inside the profile's allowed_increase of {:.1} %, so its label (healthy) \
             would be wrong; use a smaller spread or leave that family out",
            args.host_spread,
            (args.host_spread.exp() - 1.0) * 100.0,
            allowed_increase * 100.0
        );
    }
    let modes = match args.mode {
        SimulateMode::Both => vec![JudgeMode::Sequential, JudgeMode::Fixed],
        SimulateMode::Sequential => vec![JudgeMode::Sequential],
        SimulateMode::Fixed => vec![JudgeMode::Fixed],
    };
    let rollouts = args.rollouts as usize;
    let total = (rollouts * families.len() * modes.len()) as u64;
    let simulation = Simulation {
        profile,
        families,
        modes,
        rollouts,
        seed: args.seed,
        jobs: args.jobs.map_or_else(
            || std::thread::available_parallelism().map_or(2, usize::from),
            |jobs| jobs as usize,
        ),
        production: crate::simulate::ProductionShape {
            instances: args.instances.clone(),
            service_rps: args.service_rps,
            host_spread: args.host_spread,
            error_host_spread: args.error_host_spread,
            latency_sampling: args.latency_sampling,
            ..crate::simulate::ProductionShape::default()
        },
    };
    let bar = if std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        indicatif::ProgressBar::new(total)
    } else {
        indicatif::ProgressBar::hidden()
    };
    let ticker = bar.clone();
    let results = simulate(&simulation, move || ticker.inc(1)).await?;
    bar.finish_and_clear();
    Ok(match args.format {
        Format::Json => format!("{}\n", serde_json::to_string_pretty(&results)?),
        Format::Text => {
            let mut out = format!(
                "{} rollouts per family and mode, seeds {}..{}\n\n{}",
                args.rollouts,
                args.seed,
                args.seed + u64::from(args.rollouts) - 1,
                markdown_table(&results)
            );
            out.push_str("\nTargets (sequential mode):\n");
            for (met, line) in target_report(&results) {
                out.push_str(&format!(
                    "  [{}] {line}\n",
                    if met { "met" } else { "MISSED" }
                ));
            }
            out
        }
    })
}

/// Credentials come from the environment, never from the command line (where `ps`
/// would show them). Prometheus: `CANARY_PROMETHEUS_BEARER_TOKEN`, or
/// `CANARY_PROMETHEUS_USERNAME` with `CANARY_PROMETHEUS_PASSWORD`; the tenant
/// `CANARY_PROMETHEUS_TENANT`; a private CA to trust for HTTPS,
/// `CANARY_PROMETHEUS_CA_FILE` (the source's `ca_file`). InfluxDB:
/// `CANARY_INFLUXDB_USERNAME` with `CANARY_INFLUXDB_PASSWORD`, or
/// `CANARY_INFLUXDB_TOKEN`. A `file=PATH` source carries its own settings.
fn with_credentials_from_environment(source: SourceConfig) -> SourceConfig {
    let variable = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    match source {
        SourceConfig::Influxdb(mut config) => {
            if let (Some(username), Some(password)) = (
                variable("CANARY_INFLUXDB_USERNAME"),
                variable("CANARY_INFLUXDB_PASSWORD"),
            ) {
                config.username = Some(username);
                config.password = Some(Secret::new(password));
            }
            if let Some(token) = variable("CANARY_INFLUXDB_TOKEN") {
                config.token = Some(Secret::new(token));
            }
            SourceConfig::Influxdb(config)
        }
        SourceConfig::Prometheus(mut config) => {
            if let Some(tenant) = variable("CANARY_PROMETHEUS_TENANT") {
                config.tenant = Some(tenant);
            }
            if let Some(ca_file) = variable("CANARY_PROMETHEUS_CA_FILE") {
                config.ca_file = Some(ca_file.into());
            }
            if let Some(token) = variable("CANARY_PROMETHEUS_BEARER_TOKEN") {
                config.bearer_token = Some(Secret::new(token));
            }
            if let (Some(username), Some(password)) = (
                variable("CANARY_PROMETHEUS_USERNAME"),
                variable("CANARY_PROMETHEUS_PASSWORD"),
            ) {
                config.basic_auth = Some(BasicAuth {
                    username,
                    password: Secret::new(password),
                });
            }
            SourceConfig::Prometheus(config)
        }
        other => other,
    }
}

/// What `canary run` prints at the end.
#[derive(Debug, serde::Serialize)]
pub struct RunSummary {
    /// Version of this JSON layout.
    pub schema_version: u32,
    /// Promote, hold or rollback.
    pub verdict: Verdict,
    /// How the rollout ended: `promoted`, `rolled_back`, `awaiting_review` or
    /// `running`; a dry run that ended says what it would have done instead:
    /// `would_promote`, `would_roll_back` ([`RolloutStatus::reported`]).
    pub status: &'static str,
    /// Why it ended the way it did.
    pub reasons: Vec<String>,
    /// The profile.
    pub profile: String,
    /// The flag.
    pub flag: String,
    /// Whether the flag was left alone.
    pub dry_run: bool,
    /// Names of the stages that passed.
    pub stages_passed: Vec<String>,
    /// Every flag change.
    pub actuations: Vec<Actuation>,
    /// Every look (without the downsampled series kept for the HTML report's charts:
    /// this JSON stays as it was).
    #[serde(serialize_with = "looks_without_series")]
    pub history: Vec<Look>,
}

fn looks_without_series<S: serde::Serializer>(
    history: &[Look],
    serializer: S,
) -> std::result::Result<S::Ok, S::Error> {
    use serde::ser::{Error as _, SerializeSeq as _};
    let mut sequence = serializer.serialize_seq(Some(history.len()))?;
    for record in history {
        let mut value = serde_json::to_value(record).map_err(S::Error::custom)?;
        if let Some(fields) = value.as_object_mut() {
            fields.remove("series");
        }
        sequence.serialize_element(&value)?;
    }
    sequence.end()
}

fn render_run_summary(summary: &RunSummary, plan: &RolloutPlan) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let headline = match (summary.dry_run, summary.verdict) {
        (true, Verdict::Promote) => "WOULD PROMOTE".to_owned(),
        (true, Verdict::Rollback) => "WOULD ROLL BACK".to_owned(),
        (_, verdict) => verdict.to_string().to_uppercase(),
    };
    let _ = writeln!(
        out,
        "rollout: {headline}    flag: {}    profile: {}    looks: {}{}",
        summary.flag,
        summary.profile,
        summary.history.len(),
        if summary.dry_run {
            "    (dry run: the flag was not changed)"
        } else {
            ""
        }
    );
    let stages: Vec<String> = plan
        .stages
        .iter()
        .map(|stage| {
            let mark = if summary.stages_passed.contains(&stage.name) {
                "passed"
            } else if summary
                .history
                .last()
                .is_some_and(|look| look.stage == stage.name)
            {
                match summary.status {
                    "rolled_back" => "ROLLED BACK",
                    "would_roll_back" => "WOULD ROLL BACK",
                    "promoted" | "would_promote" => "passed",
                    _ => "held",
                }
            } else {
                "not reached"
            };
            if stage.name == stage.traffic.to_string() {
                format!("{}: {mark}", stage.name)
            } else {
                format!("{} ({}): {mark}", stage.name, stage.traffic)
            }
        })
        .collect();
    let _ = writeln!(out, "stages: {}", stages.join(" → "));
    let _ = writeln!(out, "\nreasons:");
    for (index, reason) in summary.reasons.iter().enumerate() {
        let _ = writeln!(out, "  {}. {reason}", index + 1);
    }
    let _ = writeln!(out, "\nflag changes:");
    let start = summary.actuations.first().map_or(0.0, |a| a.at);
    let action_width = if summary.dry_run { 17 } else { 11 };
    for actuation in &summary.actuations {
        let read_back = match &actuation.state {
            Some(state) => format!(
                "read back: {}, {}",
                if state.enabled { "enabled" } else { "disabled" },
                state.rollout
            ),
            None => "dry run: not applied".to_owned(),
        };
        let _ = writeln!(
            out,
            "  +{:<11} {:<action_width$} {:<6} ({read_back})",
            crate::format::duration(actuation.at - start),
            if summary.dry_run {
                format!("would {}", actuation.action)
            } else {
                actuation.action.clone()
            },
            actuation.target.to_string()
        );
    }
    out
}

/// What the progress bar of `canary run` shows after a look. Pure, so it is tested
/// without a terminal.
#[derive(Debug, Clone, PartialEq, Eq)]
struct ProgressLine {
    /// Looks taken.
    position: u64,
    /// Looks taken plus the looks the plan still has ahead: held looks and looks not
    /// credited to a stage make the bar longer, so it never counts past its total.
    length: u64,
    /// The stage, its traffic and the latest look's verdict and decision, in words.
    message: String,
}

impl ProgressLine {
    /// After `looks` (each look's stage index, verdict and decision), at `stage_index`.
    fn after(
        plan: &RolloutPlan,
        stage_index: usize,
        looks: &[(usize, Verdict, Decision)],
    ) -> ProgressLine {
        let stage_index = stage_index.min(plan.stages.len().saturating_sub(1));
        let stage = &plan.stages[stage_index];
        // A look that ends `continue` at the current stage is one of its planned looks;
        // a held one is not, and the look that advances belongs to the stage it left.
        let credited_here = looks
            .iter()
            .filter(|(index, _, decision)| *index == stage_index && *decision == Decision::Continue)
            .count() as u64;
        let ahead: u64 = stage.planned_looks().saturating_sub(credited_here)
            + plan.stages[stage_index + 1..]
                .iter()
                .map(Stage::planned_looks)
                .sum::<u64>();
        let position = looks.len() as u64;
        let finished = looks.last().is_some_and(|(_, _, decision)| {
            matches!(
                decision,
                Decision::Promote | Decision::Rollback | Decision::AwaitReview
            )
        });
        let where_ = if stage.name == stage.traffic.to_string() {
            format!(
                "stage {}/{} at {}",
                stage_index + 1,
                plan.stages.len(),
                stage.traffic
            )
        } else {
            format!(
                "stage {}/{} {} at {}",
                stage_index + 1,
                plan.stages.len(),
                stage.name,
                stage.traffic
            )
        };
        let latest = looks.last().map_or_else(
            || "starting".to_owned(),
            |(_, verdict, decision)| format!("{verdict}, {decision}"),
        );
        ProgressLine {
            position,
            length: if finished {
                position.max(1)
            } else {
                (position + ahead).max(1)
            },
            message: format!("{where_} | latest look: {latest}"),
        }
    }
}

/// Runs `canary run`: one rollout in the foreground. Returns its verdict and the summary
/// for stdout (the compact one of [`report::terminal`] when `terminal` is a terminal and
/// the format is text).
pub async fn run(args: &RunArgs, terminal: Terminal) -> Result<(Verdict, String)> {
    let profile = Arc::new(load_profile(&args.profile)?);
    let plan = profile.plan.clone().with_context(|| {
        format!(
            "{}: profile {:?} has no rollout plan; add [[stages]] tables to run it",
            args.profile.display(),
            profile.name
        )
    })?;
    let source = with_credentials_from_environment(args.source.clone()).build()?;
    let actuator: Arc<dyn Actuator> = Arc::new(RetryingActuator::new(
        Arc::from(args.actuator.build()?),
        RetryPolicy::default(),
    ));
    let scopes = Scopes::from_matchers(&args.baseline_scope, &args.canary_scope);

    let recorded = source.recorded_range();
    let RunClock {
        clock,
        start,
        compressed,
    } = run_clock(args, &plan, recorded)?;

    let rollout = Rollout {
        profile: Arc::clone(&profile),
        flag: args.flag.clone(),
        scopes,
        dry_run: args.dry_run,
    };
    let mut runner = RolloutRunner::new(rollout, source, actuator)?.with_adopt(args.adopt);
    let progress = indicatif::ProgressBar::new(plan.planned_looks());
    progress.set_style(
        indicatif::ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {bar:24} {pos}/{len} looks  {msg}",
        )
        .expect("the progress template is valid"),
    );
    let outcome = tokio::select! {
        outcome = runner.run(clock.as_ref(), compressed.then_some(start), recorded.map(|(_, last)| last), |runner| {
            let looks: Vec<(usize, Verdict, Decision)> = runner
                .history()
                .iter()
                .map(|look| (look.stage_index, look.verdict, look.decision.clone()))
                .collect();
            let line = ProgressLine::after(&plan, runner.stage_index(), &looks);
            progress.set_length(line.length);
            progress.set_position(line.position);
            progress.set_message(line.message);
        }) => Some(outcome),
        _ = tokio::signal::ctrl_c() => None,
    };
    progress.finish_and_clear();
    let interrupted = outcome.is_none();
    let status = match outcome {
        Some(result) => result?,
        None => runner.status(),
    };

    let (verdict, reasons) = run_verdict(&runner, status, args.dry_run, interrupted);
    let stages_passed: Vec<String> = plan
        .stages
        .iter()
        .take(runner.stage_index() + usize::from(status == RolloutStatus::Promoted))
        .map(|stage| stage.name.clone())
        .collect();
    let summary = RunSummary {
        schema_version: 1,
        verdict,
        status: status.reported(args.dry_run),
        reasons,
        profile: profile.name.clone(),
        flag: args.flag.clone(),
        dry_run: args.dry_run,
        stages_passed,
        actuations: runner.actuations().to_vec(),
        history: runner.history().to_vec(),
    };
    let rendered = render_run(args, terminal, &summary, &plan, status, &profile)?;
    Ok((verdict, rendered))
}

/// The analysis clock of `canary run` and where it starts.
struct RunClock {
    clock: Box<dyn Clock>,
    start: f64,
    /// Analysis time that starts exactly at `start` (a chosen start, a recording, or
    /// `--speed`), not the wall clock.
    compressed: bool,
}

/// The clock `canary run` looks on: the wall clock for a live rollout; analysis time
/// compressed by `--speed` from `--start` or from a recording (which starts one
/// lookback in, so the preflight and the first look have history, as a live rollout
/// does). A rollout in the past runs its planned duration in about 20 s by default.
fn run_clock(args: &RunArgs, plan: &RolloutPlan, recorded: Option<(f64, f64)>) -> Result<RunClock> {
    let wall_now = SystemClock.now();
    let start = args
        .start
        .or(recorded.map(|(first, _)| first + plan.stages[0].lookback.seconds()))
        .unwrap_or(wall_now);
    let planned_seconds: f64 = plan.stages.iter().map(|s| s.duration.seconds()).sum();
    let speed = args.speed.unwrap_or(if start < wall_now - 60.0 {
        (planned_seconds / 20.0).max(1.0)
    } else {
        1.0
    });
    if !(speed.is_finite() && speed > 0.0) {
        anyhow::bail!("--speed must be a number above 0, got {speed}");
    }
    let compressed = !(args.start.is_none() && recorded.is_none() && speed == 1.0);
    let clock: Box<dyn Clock> = if compressed {
        Box::new(CompressedClock::new(start, speed))
    } else {
        Box::new(SystemClock)
    };
    Ok(RunClock {
        clock,
        start,
        compressed,
    })
}

/// The verdict `canary run` reports and its reasons: the status's verdict (a dry run
/// says what a real run would have done), or hold when the rollout did not finish.
fn run_verdict(
    runner: &RolloutRunner,
    status: RolloutStatus,
    dry_run: bool,
    interrupted: bool,
) -> (Verdict, Vec<String>) {
    let mut reasons: Vec<String> = runner
        .history()
        .last()
        .map(|look| look.reasons.clone())
        .unwrap_or_default();
    let verdict = match status.verdict() {
        Some(verdict) => {
            if dry_run && verdict != Verdict::Hold {
                reasons.insert(
                    0,
                    format!(
                        "dry run: a real run would {} here; the flag was not changed",
                        if verdict == Verdict::Promote {
                            "promote the flag to 100%"
                        } else {
                            "roll the flag back"
                        }
                    ),
                );
            }
            verdict
        }
        None => {
            reasons.insert(
                0,
                if interrupted {
                    "interrupted before the rollout finished: the flag stays where it is".to_owned()
                } else {
                    "the recording ended before the rollout finished: the flag stays where it is"
                        .to_owned()
                },
            );
            Verdict::Hold
        }
    };
    (verdict, reasons)
}

/// Writes the HTML report when asked for and renders the summary `canary run` prints.
fn render_run(
    args: &RunArgs,
    terminal: Terminal,
    summary: &RunSummary,
    plan: &RolloutPlan,
    status: RolloutStatus,
    profile: &Profile,
) -> Result<String> {
    let facts = report::analysis::RunFacts {
        profile: &summary.profile,
        flag: &summary.flag,
        // The report names a dry run's ending itself, from the status as it is stored.
        state: status.reported(false),
        verdict: summary.verdict,
        dry_run: summary.dry_run,
        reasons: &summary.reasons,
        history: &summary.history,
        actuations: &summary.actuations,
    };
    let run_report =
        report::analysis::AnalysisReport::from_run(&facts).with_relative_limits(profile);
    if let Some(path) = &args.report {
        let page = report::html::render(
            &run_report,
            &report::analysis::ChartData::from_look_series(
                summary.history.iter().map(|look| &look.series),
            ),
        );
        write_report(path, &page)?;
    }
    let rendered = match (args.format, terminal) {
        (Format::Text, Terminal::Pipe) => render_run_summary(summary, plan),
        (Format::Text, Terminal::Tty { colour }) => report::terminal::render(&run_report, colour),
        (Format::Json, _) => {
            let mut text =
                serde_json::to_string_pretty(summary).context("serializing the summary")?;
            text.push('\n');
            text
        }
    };
    Ok(rendered)
}

/// Writes an HTML report to `path`.
fn write_report(path: &Path, page: &str) -> Result<()> {
    std::fs::write(path, page)
        .with_context(|| format!("{}: cannot write the report", path.display()))
}

/// Runs `canary report`: fetches the report of analysis `args.id`, writes its HTML to
/// `--out` when given, and returns the terminal summary (`colour` for terminals).
pub async fn fetch_report(args: &ReportArgs, colour: bool) -> Result<String> {
    let client = Client::new(&args.server)?.with_token(client_token(args.token.as_deref()));
    let id: uuid::Uuid = args
        .id
        .trim()
        .parse()
        .with_context(|| format!("{:?} is not an analysis id (a UUID)", args.id))?;
    let (fetched, page) = client.report(id).await?;
    if let Some(path) = &args.out {
        write_report(path, &page)?;
    }
    Ok(report::terminal::render(&fetched, colour))
}

/// The bearer token `canary submit`, `wait` and `report` send: `--token`, else the
/// CANARY_TOKEN variable, else none. An empty value counts as none.
pub fn client_token(flag: Option<&str>) -> Option<Secret> {
    flag.map(str::to_owned)
        .or_else(|| std::env::var("CANARY_TOKEN").ok())
        .map(|token| token.trim().to_owned())
        .filter(|token| !token.is_empty())
        .map(Secret::new)
}

/// Runs `canary submit`: stores the analysis on the server and returns its id.
pub async fn submit(args: &SubmitArgs) -> Result<uuid::Uuid> {
    let client = Client::new(&args.server)?.with_token(client_token(args.token.as_deref()));
    let submission = Submission {
        profile: args.profile.clone(),
        baseline_scope: args.baseline_scope.clone(),
        canary_scope: args.canary_scope.clone(),
        flag: args.flag.clone(),
        source: args.source.clone(),
        actuator: args.actuator.clone(),
        dry_run: args.dry_run,
        start_at: args.start_at,
        adopt: args.adopt,
    };
    let analysis = client.submit(&submission).await?;
    tracing::info!(analysis = %analysis.id, server = %args.server, "analysis submitted");
    Ok(analysis.id)
}

/// The exit code of `canary submit` when the flag already has an active analysis (the
/// server's 409 `flag_owned`): not a verdict, not a plain error, so a pipeline can tell
/// "someone else is rolling this flag out" from a failure.
pub const FLAG_OWNED_EXIT_CODE: u8 = 4;

/// The exit code for a failed `canary submit`: [`FLAG_OWNED_EXIT_CODE`] when the flag is
/// owned by another analysis, 1 otherwise.
pub fn submit_error_exit_code(error: &anyhow::Error) -> u8 {
    match error.downcast_ref::<crate::api::client::ClientError>() {
        Some(crate::api::client::ClientError::Api { code, .. }) if code == "flag_owned" => {
            FLAG_OWNED_EXIT_CODE
        }
        _ => 1,
    }
}

/// Runs `canary wait`: long-polls until the analysis is final or the timeout runs out.
/// Returns the exit code ([`wait_exit_code`]) and the text for stdout.
pub async fn wait(args: &WaitArgs) -> Result<(u8, String)> {
    let id = uuid::Uuid::parse_str(args.id.trim())
        .with_context(|| format!("{:?} is not an analysis id (a UUID)", args.id))?;
    wait_for(&args.server, args.token.as_deref(), id, args.timeout).await
}

/// Waits for analysis `id` on `server` for at most `timeout`, sending `token` (see
/// [`client_token`]): the exit code and the text for stdout.
pub async fn wait_for(
    server: &str,
    token: Option<&str>,
    id: uuid::Uuid,
    timeout: std::time::Duration,
) -> Result<(u8, String)> {
    let client = Client::new(server)?.with_token(client_token(token));
    let verdict = client
        .wait(id, timeout)
        .await
        .with_context(|| format!("waiting for analysis {id}"))?;
    Ok((wait_exit_code(&verdict), render_verdict(&verdict)))
}

/// The exit code a waited-for verdict reports: 0 promoted, 3 rolled back (or rollback
/// failed), 2 not final yet (hold), 1 the analysis failed to run.
pub fn wait_exit_code(verdict: &VerdictView) -> u8 {
    if !verdict.is_final {
        return Verdict::Hold.exit_code();
    }
    match verdict.verdict {
        Some(Verdict::Promote) => Verdict::Promote.exit_code(),
        Some(Verdict::Rollback) => Verdict::Rollback.exit_code(),
        Some(Verdict::Hold) | None => 1,
    }
}

fn render_verdict(verdict: &VerdictView) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let headline = match (verdict.is_final, verdict.verdict.map(Verdict::as_str)) {
        (true, Some(word)) => word.to_uppercase(),
        (true, None) => "ERROR (the analysis failed)".to_owned(),
        (false, latest) => format!(
            "HOLD (not final: still {}, latest look: {})",
            verdict.state,
            latest.unwrap_or("none yet")
        ),
    };
    let _ = writeln!(
        out,
        "verdict: {headline}    state: {}    analysis: {}",
        verdict.state, verdict.id
    );
    if let Some(traffic) = verdict.traffic {
        let _ = writeln!(out, "traffic: {traffic}%");
    }
    if !verdict.reasons.is_empty() {
        let _ = writeln!(out, "reasons:");
        for (index, reason) in verdict.reasons.iter().enumerate() {
            let _ = writeln!(out, "  {}. {reason}", index + 1);
        }
    }
    out
}

/// Resolves on SIGINT (Ctrl-C) or SIGTERM, the signals a terminal or an orchestrator
/// sends to stop a server.
pub async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut terminate =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(signal) => signal,
                Err(_) => {
                    let _ = interrupt.await;
                    return;
                }
            };
        tokio::select! {
            _ = interrupt => {}
            _ = terminate.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = interrupt.await;
    }
}

/// Runs `canary serve`: the HTTP API and the workers on one store, until `shutdown`
/// resolves; then the server stops accepting requests, the workers stop claiming,
/// running looks finish and leases are released.
pub async fn serve(
    args: &ServeArgs,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<()> {
    let settings = Settings::load(args.config.as_deref())?;
    let store = StoreConfig {
        url: settings.store.url.clone(),
        max_connections: None,
    }
    .build()
    .await
    .with_context(|| format!("store {}", settings.store.url))?;
    let metrics = Arc::new(EngineMetrics::new());
    let retention = settings.store.retention()?;
    let pruner_metrics = Arc::clone(&metrics);
    let registry = Arc::new(Registry::from_settings(&settings)?.instrumented(&metrics));
    let options = WorkerOptions::from_settings(&settings.worker)?;
    let listener = tokio::net::TcpListener::bind(&settings.server.bind)
        .await
        .with_context(|| format!("cannot listen on {}", settings.server.bind))?;
    let address = listener.local_addr().context("the listening address")?;
    let worker_id = options.id.clone();
    let mut worker = Worker::new(
        Arc::clone(&store),
        Arc::clone(&registry),
        Arc::new(SystemClock),
        options.clone(),
    )
    .report_to(Arc::clone(&metrics))
    .notify_with(Notifications::from_settings(&settings).context("notifiers in the settings")?);
    if let Some(public_url) = &settings.server.public_url {
        worker = worker.links_to(public_url);
    }
    let executor = Executor::new(
        Arc::clone(&store),
        Arc::clone(&registry),
        Arc::new(SystemClock),
        ExecutorOptions {
            id: options.id.clone(),
            lease: options.lease,
            poll_interval: options.poll_interval,
            max_attempts: 3,
            concurrency: options.concurrency,
        },
    )
    .report_to(Arc::clone(&metrics));
    let mut state = ApiState::new(Arc::clone(&store), &settings, metrics)?;
    // Read once (the secret's variable), for the API's pages and the workers' links.
    if let Some(links) = &state.action_links {
        worker = worker.action_links(Arc::clone(links));
    }
    let (stop, stopped) = tokio::sync::watch::channel(false);
    state.shutdown = api::ShutdownSignal::on(stopped.clone());
    if state.auth.is_open() {
        tracing::warn!(
            bind = %settings.server.bind,
            "THE API IS OPEN: no server.auth_token or [[server.tokens]] is set, so anyone who \
             can reach {} can submit analyses that move production flags; manual actions \
             are refused",
            settings.server.bind
        );
    }
    let api = api::router(state);

    let wait_for_stop = |mut stopped: tokio::sync::watch::Receiver<bool>| async move {
        let _ = stopped.wait_for(|stop| *stop).await;
    };
    let server = api::serve(
        listener,
        api,
        settings.server.header_read_duration()?,
        wait_for_stop(stopped.clone()),
    );
    let workers = worker.run_until_stopped(wait_for_stop(stopped.clone()));
    let executions = executor.run_until_stopped(wait_for_stop(stopped.clone()));
    let retention = async {
        match retention {
            Some(retain) => {
                let pruner = Pruner::new(
                    Arc::clone(&store),
                    Arc::new(SystemClock),
                    PruneOptions::new(retain),
                )
                .report_to(pruner_metrics);
                pruner.run_until_stopped(wait_for_stop(stopped)).await;
            }
            None => {
                tracing::info!("retention: store.retain_finished = \"forever\", nothing is deleted")
            }
        }
    };
    // Printed (not logged) so that scripts and tests can find a port chosen by the OS.
    println!("listening on http://{address}");
    tracing::info!(%address, worker = %worker_id, store = %settings.store.url, "canary serve started");
    let signal = async move {
        shutdown.await;
        tracing::info!("shutting down: finishing running looks and releasing leases");
        let _ = stop.send(true);
    };
    let ((), (), (), (), ()) = tokio::join!(server, workers, executions, retention, signal);
    store.close().await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan() -> RolloutPlan {
        Profile::parse(
            r#"
name = "progress"
[[stages]]
traffic = 5
duration = "2m"
interval = "1m"
[[stages]]
traffic = 50
duration = "2m"
interval = "1m"
[[metrics]]
name = "latency"
kind = "continuous"
"#,
            "progress.toml",
        )
        .unwrap()
        .plan
        .unwrap()
    }

    #[test]
    fn the_progress_bar_grows_with_held_looks_instead_of_counting_past_its_total() {
        let plan = plan();
        assert_eq!(plan.planned_looks(), 4);
        let mut looks = Vec::new();
        for _ in 0..6 {
            looks.push((0, Verdict::Hold, Decision::Hold));
            let line = ProgressLine::after(&plan, 0, &looks);
            assert!(line.position <= line.length, "issue 12: {line:?}");
            assert_eq!(
                line.length,
                looks.len() as u64 + 4,
                "four planned looks ahead"
            );
        }
        looks.push((0, Verdict::Promote, Decision::Continue));
        looks.push((
            0,
            Verdict::Promote,
            Decision::Advance {
                to: crate::domain::Percentage::parse(50.0).unwrap(),
            },
        ));
        let line = ProgressLine::after(&plan, 1, &looks);
        assert_eq!((line.position, line.length), (8, 10));
        assert_eq!(
            line.message,
            "stage 2/2 at 50% | latest look: promote, advance to 50%"
        );
        looks.push((1, Verdict::Rollback, Decision::Rollback));
        let line = ProgressLine::after(&plan, 1, &looks);
        assert_eq!(
            (line.position, line.length),
            (9, 9),
            "a finished rollout is full"
        );
        assert_eq!(
            line.message,
            "stage 2/2 at 50% | latest look: rollback, roll back"
        );
    }

    #[test]
    fn an_error_message_shows_each_cause_once() {
        let inner = anyhow::anyhow!("flag \"x\" not found in flags.json");
        let doubled =
            inner.context("flag \"x\" cannot be actuated: flag \"x\" not found in flags.json");
        assert_eq!(
            error_message(&doubled),
            "flag \"x\" cannot be actuated: flag \"x\" not found in flags.json"
        );
        let chained = anyhow::anyhow!("connection refused").context("reading the flag");
        assert_eq!(
            error_message(&chained),
            "reading the flag: connection refused"
        );
    }
}
