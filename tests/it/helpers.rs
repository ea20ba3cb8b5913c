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

/// The replays' recordings start here; a served rollout on them starts one lookback
/// later.
pub const REPLAY_START: f64 = 1_700_000_000.0 + 360.0;

/// A `canary serve` process on `store` with its settings in `directory/settings_name`:
/// the shipped profiles, the replay sources `healthy` and `regression`, the actuators
/// `flags` (the flagd file `directory/flags.json`, copied from the fixtures unless it
/// is there) and `log` (log-only), workers with `lease`; `extra` is appended to the
/// settings and `envs` set in the process's environment.
pub fn serve_on_replays(
    directory: &Path,
    store: &str,
    settings_name: &str,
    lease: &str,
    extra: &str,
    envs: &[(&str, &str)],
) -> ServeProcess {
    let flags = directory.join("flags.json");
    if !flags.exists() {
        std::fs::copy(root().join("fixtures/flags.json"), &flags).unwrap();
    }
    let settings = directory.join(settings_name);
    std::fs::write(
        &settings,
        format!(
            r#"
[server]
bind = "127.0.0.1:0"
auth_token = "test-token"
[store]
url = "{store}"
[profiles]
directory = "{profiles}"
[sources.healthy]
kind = "replay"
directory = "{replays}/healthy"
[sources.regression]
kind = "replay"
directory = "{replays}/latency-regression"
[actuators.flags]
kind = "flagd-file"
path = "{flags}"
[actuators.log]
kind = "log-only"
[worker]
concurrency = 4
lease = "{lease}"
poll_interval = "100ms"
{extra}
"#,
            profiles = root().join("analysis-profiles").display(),
            replays = root().join("fixtures/replay").display(),
            flags = flags.display(),
        ),
    )
    .unwrap();
    spawn_serve(&settings, envs)
}

/// The wall clock, Unix seconds.
pub fn now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

/// A look as a worker records it, with round numbers: for store and API tests that need
/// a stored look but not a real judgement.
pub fn sample_look(number: u64, at: f64) -> canary::scheduler::Look {
    use canary::domain::{Percentage, Verdict};
    use canary::judge::Judgement;
    canary::scheduler::Look {
        look: number,
        at,
        stage_index: 1,
        stage: "5%".to_owned(),
        traffic: Percentage::parse(5.0).unwrap(),
        confidence_level: 0.99,
        verdict: Verdict::Promote,
        decision: canary::scheduler::Decision::Continue,
        reasons: vec!["every metric passed".to_owned()],
        judgement: Judgement {
            verdict: Verdict::Promote,
            reasons: vec!["every metric passed".to_owned()],
            score: Some(97.5),
            profile: "web-service".to_owned(),
            confidence_level: 0.99,
            multiple_comparisons: canary::stats::multiple_testing::Correction::Holm,
            metrics: Vec::new(),
            group_scores: None,
        },
        triggers: Vec::new(),
        series: Default::default(),
    }
}

/// A runner snapshot three looks into the second stage.
pub fn sample_state() -> canary::scheduler::RunnerState {
    canary::scheduler::RunnerState {
        status: canary::scheduler::RolloutStatus::Running,
        started: true,
        stage_index: 1,
        stage_started_at: 1_700_000_000.25,
        last_look_at: Some(1_700_000_060.25),
        looks: 3,
        consecutive_failures: 0,
        hold_since: None,
        initial_flag: None,
        rolling_back: None,
        stage_short_of_data: 0.0,
        sequential: Default::default(),
        expected_flag: None,
        adopted_share: None,
        held_for_review: None,
    }
}
