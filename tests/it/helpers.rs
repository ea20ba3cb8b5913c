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

/// A running `canary serve` process, killed (SIGKILL) and reaped when dropped.
pub struct ServeProcess {
    /// The process.
    pub child: std::process::Child,
    /// `http://127.0.0.1:PORT`, as the server announced it.
    pub url: String,
}

impl ServeProcess {
    /// `127.0.0.1:PORT`, for raw TCP clients.
    pub fn address(&self) -> &str {
        self.url.trim_start_matches("http://")
    }
}

impl Drop for ServeProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `canary serve --config SETTINGS` from the repository root with `RUST_LOG=error`
/// and the extra environment `envs`, and waits for the line that announces its address
/// (the port the OS chose).
pub fn spawn_serve(settings: &Path, envs: &[(&str, &str)]) -> ServeProcess {
    use std::io::{BufRead, BufReader};
    use std::process::Stdio;
    let mut command = Command::new(env!("CARGO_BIN_EXE_canary"));
    command
        .args(["serve", "--config", settings.to_str().unwrap()])
        .current_dir(root())
        // The tests read the store and the API, not the log.
        .env("RUST_LOG", "error")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    for (name, value) in envs {
        command.env(name, value);
    }
    let mut child = command.spawn().expect("canary serve starts");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let url = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("canary serve announces its address, got {line:?}"))
        .to_owned();
    ServeProcess { child, url }
}
