//! The composition root: each command's wiring of files, sources, judge and report.
//!
//! This is the only module that names concrete sources (today the recorded-file
//! readers). Errors are `anyhow` with context; `main` prints them once.

use std::path::Path;

use anyhow::{Context, Result};

use crate::cli::{AnalyzeArgs, CheckProfileArgs, Format};
use crate::domain::{Profile, Verdict};
use crate::judge::{self, Judgement};
use crate::report;
use crate::sources::recorded;

/// Reads and validates a profile file.
pub fn load_profile(path: &Path) -> Result<Profile> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("{}: cannot read the profile", path.display()))?;
    Ok(Profile::parse(&text, &path.display().to_string())?)
}

/// Runs `canary analyze`: returns the judgement and its rendering for stdout.
pub fn analyze(args: &AnalyzeArgs) -> Result<(Judgement, String)> {
    let profile = load_profile(&args.profile)?;
    let baseline = recorded::read_file(&args.baseline)?;
    let canary = recorded::read_file(&args.canary)?;
    baseline.check_against(&profile)?;
    canary.check_against(&profile)?;
    let judgement = judge::judge(&profile, &baseline, &canary);
    tracing::info!(
        profile = %profile.name,
        verdict = %judgement.verdict,
        score = ?judgement.score,
        "judged canary"
    );
    let rendered = match args.format {
        Format::Text => report::text::render(&judgement),
        Format::Json => report::json::render(&judgement),
    };
    Ok((judgement, rendered))
}

/// Runs `canary check-profile`: a summary line per valid profile, and the first
/// error of each invalid one.
pub fn check_profiles(args: &CheckProfileArgs) -> (String, Vec<anyhow::Error>) {
    let mut summary = String::new();
    let mut errors = Vec::new();
    for path in &args.profiles {
        match load_profile(path) {
            Ok(profile) => summary.push_str(&format!(
                "{}: ok: profile {:?}, {} metrics, confidence level {}\n",
                path.display(),
                profile.name,
                profile.metrics.len(),
                profile.judge.confidence_level.value()
            )),
            Err(error) => errors.push(error),
        }
    }
    (summary, errors)
}

/// The exit code for a verdict.
pub fn exit_code(verdict: Verdict) -> u8 {
    verdict.exit_code()
}
