//! Running the real binary from the repository root.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The repository root (where `fixtures/` and `analysis-profiles/` live).
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// What a run of the binary produced.
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl From<Output> for Run {
    fn from(output: Output) -> Self {
        Run {
            code: output
                .status
                .code()
                .expect("the binary exits with a code, not a signal"),
            stdout: String::from_utf8(output.stdout).expect("stdout is UTF-8"),
            stderr: String::from_utf8(output.stderr).expect("stderr is UTF-8"),
        }
    }
}

/// Runs `canary ARGS...` with the repository root as working directory, so paths in
/// messages read like the ones a user typed.
pub fn canary<I, S>(args: I) -> Run
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    Command::new(env!("CARGO_BIN_EXE_canary"))
        .args(args)
        .current_dir(root())
        .env_remove("RUST_LOG")
        .output()
        .expect("the canary binary runs")
        .into()
}

/// `canary analyze` with the web-service profile on two data files.
pub fn analyze(baseline: &Path, canary_file: &Path, format: &str) -> Run {
    canary([
        "analyze",
        "--profile",
        "analysis-profiles/web-service.toml",
        "--baseline",
        baseline.to_str().unwrap(),
        "--canary",
        canary_file.to_str().unwrap(),
        "--format",
        format,
    ])
}
