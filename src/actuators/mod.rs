//! Actuators: the only code that changes production feature flags.
//!
//! An actuator moves a flag's rollout percentage, flips its kill switch and reads
//! its state back. Implementations live one per file (or folder) and are named only in
//! `app`; only the rollout runner calls them, so there is one audited path to
//! production flags.
//!
//! # Implementations
//! - [`log_only`]: remembers states in memory and logs them; for dry runs and tests.
//! - [`flagd_file`]: edits an OpenFeature flagd flag file, atomically.
//! - [`unleash`]: moves a gradual rollout through the Unleash admin API.
//! - [`webhook`]: POSTs every change, signed, to a team's own flag system
//!   (`docs/webhook-actuator.md`).
//!
//! Around every one of them the composition root puts [`retry::RetryingActuator`]:
//! retries with exponential backoff until a deadline, and a read-back of every change.
//!
//! [`ActuatorConfig`] names one of them (from a config file or the CLI form
//! `log-only` / `flagd-file=PATH[,kill=off-variant]` / `unleash=URL,environment=ENV` /
//! `webhook=URL`) and
//! builds it; adding an actuator touches its own module, one variant and one match arm.

pub mod flagd_file;
pub mod log_only;
pub mod retry;
pub mod unleash;
pub mod webhook;

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::domain::{Percentage, Verdict};

/// A flag's state as the flag store reports it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FlagState {
    /// Whether the flag is on at all (the kill switch is `enabled = false`).
    pub enabled: bool,
    /// Share of traffic that gets the new variant while enabled.
    pub rollout: Percentage,
}

/// One flag change as the rollout asks for it: the flag, what to do with it, and what
/// the change is for. Most actuators only need the flag and the action; those that tell
/// another system (a webhook) send the context along.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FlagChange {
    /// The flag key.
    pub flag: String,
    /// What to do.
    pub action: FlagAction,
    /// Why, and the idempotency key.
    pub context: ChangeContext,
}

impl FlagChange {
    /// `action` on `flag` without a context: a change made outside an analysis.
    pub fn bare(flag: &str, action: FlagAction) -> Self {
        Self {
            flag: flag.to_owned(),
            action,
            context: ChangeContext::default(),
        }
    }
}

/// What a [`FlagChange`] does.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum FlagAction {
    /// Enable the flag for this share of traffic.
    SetRollout {
        /// The share.
        target: Percentage,
    },
    /// The kill switch: disable the flag.
    Kill,
}

impl FlagAction {
    /// `"set_rollout"` or `"kill"`, as recorded and sent.
    pub fn name(self) -> &'static str {
        match self {
            FlagAction::SetRollout { .. } => "set_rollout",
            FlagAction::Kill => "kill",
        }
    }

    /// The flag's state after the change, as the store should read it back.
    pub fn leaves(self) -> FlagState {
        match self {
            FlagAction::SetRollout { target } => FlagState {
                enabled: true,
                rollout: target,
            },
            FlagAction::Kill => FlagState {
                enabled: false,
                rollout: Percentage::ZERO,
            },
        }
    }

    /// The share of traffic the change leaves the new variant (0 for the kill switch).
    pub fn target(self) -> Percentage {
        match self {
            FlagAction::SetRollout { target } => target,
            FlagAction::Kill => Percentage::ZERO,
        }
    }
}

/// What a flag change is for. Every field is optional: a change made outside an
/// analysis (a test, a health check) has none.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ChangeContext {
    /// Unique to this change and the same on every retry or replay of it: receivers
    /// use it to apply a change once.
    pub actuation_id: Option<String>,
    /// The analysis that asked for the change.
    pub analysis_id: Option<String>,
    /// The verdict behind it.
    pub verdict: Option<Verdict>,
    /// The reasons for the verdict, most important first.
    pub reasons: Vec<String>,
    /// Where a person reads the analysis.
    pub report_url: Option<String>,
}

/// Why an actuation did not happen. Callers branch on it: `FlagNotFound` and
/// `Invalid` are configuration errors to report before a rollout starts;
/// `Unavailable` is worth retrying.
#[derive(Debug, thiserror::Error)]
pub enum ActuatorError {
    /// The flag does not exist in the store.
    #[error("flag {flag:?} not found in {store}")]
    FlagNotFound {
        /// The flag key.
        flag: String,
        /// Where we looked (a file path, a URL).
        store: String,
    },
    /// The store cannot be reached, read or written right now.
    #[error("flag store {store} unavailable: {message}")]
    Unavailable {
        /// Where.
        store: String,
        /// What happened.
        message: String,
    },
    /// The store holds something this actuator cannot safely edit.
    #[error("flag store {store} is invalid: {message}")]
    Invalid {
        /// Where.
        store: String,
        /// What is wrong, with a line where there is one.
        message: String,
    },
}

/// Moves feature flags.
#[async_trait]
pub trait Actuator: Send + Sync {
    /// A short name for logs and reports, e.g. `flagd-file:/etc/flags.json`.
    fn describe(&self) -> String;

    /// Checks, before a rollout starts, that the flag exists and the store can be
    /// written.
    async fn healthcheck(&self, flag: &str) -> Result<FlagState, ActuatorError>;

    /// Reads the flag's current state back from the store.
    async fn current(&self, flag: &str) -> Result<FlagState, ActuatorError>;

    /// Whether [`Actuator::current`] shows changes made by others (another process, a
    /// person). The runner compares the flag with what it last wrote only when it does:
    /// the log-only actuator keeps its flags in the process, so a restarted process would
    /// otherwise see every flag as changed. Wrappers pass it through.
    fn sees_outside_changes(&self) -> bool {
        true
    }

    /// Makes one change with its context: the only way to write a flag. Idempotent:
    /// setting the same percentage twice, or pulling the kill switch twice, changes
    /// nothing. Actuators that send the context somewhere (webhooks) use it; the others
    /// ignore it. Wrappers (metrics, retries) forward it.
    async fn apply(&self, change: &FlagChange) -> Result<FlagState, ActuatorError>;
}

/// Shorthands for a change without context, for any [`Actuator`]: tests and tools that
/// move a flag by hand.
#[async_trait]
pub trait ActuatorExt: Actuator {
    /// Enables the flag for `rollout` percent of traffic.
    async fn set_rollout(
        &self,
        flag: &str,
        rollout: Percentage,
    ) -> Result<FlagState, ActuatorError> {
        self.apply(&FlagChange::bare(
            flag,
            FlagAction::SetRollout { target: rollout },
        ))
        .await
    }

    /// The kill switch: traffic back to the fallback (flag disabled, 0 %).
    async fn kill(&self, flag: &str) -> Result<FlagState, ActuatorError> {
        self.apply(&FlagChange::bare(flag, FlagAction::Kill)).await
    }
}

impl<A: Actuator + ?Sized> ActuatorExt for A {}

/// Which actuator to use and how to reach its store. In a config file it is a table
/// with a `kind` (`kind = "flagd-file"`, `path = "/etc/flagd/flags.json"`); on the
/// command line it is `log-only` or `flagd-file=PATH`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum ActuatorConfig {
    /// Change nothing: remember flag states in memory and log every change. For dry
    /// runs.
    LogOnly,
    /// Edit an OpenFeature flagd flag file (JSON) that flagd watches.
    FlagdFile {
        /// The flag file. Its directory must be writable: the file is replaced by
        /// writing a temporary file beside it and renaming it over the original, and
        /// every writer locks the sidecar `PATH.lock` (created there) around its edit.
        path: PathBuf,
        /// What the kill switch writes: `"disable"` (the default: `state` DISABLED, so
        /// flagd serves the application's code default) or `"off-variant"` (the flag stays
        /// ENABLED with `defaultVariant` the off variant and no targeting, so flagd serves
        /// the off variant to everybody, whatever the code default).
        #[serde(default)]
        kill: flagd_file::KillMode,
        /// How long an edit waits for the lock file held by another writer (another
        /// canary process) before it fails as unavailable and is retried, in
        /// milliseconds.
        #[serde(default = "default_flagd_lock_wait_ms")]
        lock_wait_ms: u64,
    },
    /// POST every change, signed with HMAC-SHA256, to a webhook
    /// (`docs/webhook-actuator.md`).
    Webhook(webhook::WebhookConfig),
    /// Move a gradual rollout (`flexibleRollout` strategy) in one environment of an
    /// Unleash project through its admin API; the kill switch turns the environment off.
    Unleash {
        /// The Unleash server's base URL, e.g. `http://unleash.internal:4242` or
        /// `https://…` (refused at start-up by a build without the `rustls` feature).
        url: String,
        /// The project holding the flags.
        #[serde(default = "default_unleash_project")]
        project: String,
        /// The environment canary switches and rolls out in, e.g. `production`. Other
        /// environments are never touched.
        environment: String,
        /// The environment variable holding an Unleash **admin** API token. The token
        /// itself is never put in a config file, and never printed.
        #[serde(default = "default_unleash_token_env")]
        token_env: String,
        /// How long one admin API request may take, in seconds.
        #[serde(default = "default_unleash_timeout_seconds")]
        timeout_seconds: u64,
    },
}

fn default_flagd_lock_wait_ms() -> u64 {
    flagd_file::DEFAULT_LOCK_WAIT.as_millis() as u64
}

fn default_unleash_project() -> String {
    "default".to_owned()
}

fn default_unleash_token_env() -> String {
    "CANARY_UNLEASH_TOKEN".to_owned()
}

fn default_unleash_timeout_seconds() -> u64 {
    unleash::DEFAULT_TIMEOUT.as_secs()
}

impl ActuatorConfig {
    /// The forms [`FromStr`] accepts, for help texts and error messages.
    pub const CLI_FORMS: &'static str = "`log-only`, \
         `flagd-file=PATH[,kill=disable|off-variant][,lock-wait-ms=N]`, \
         `unleash=URL,environment=ENV[,project=P][,token-env=VAR][,timeout-seconds=N]` or \
         `webhook=URL` (HMAC secret from CANARY_WEBHOOK_SECRET)";

    /// Builds the actuator. Nothing is contacted yet: call [`Actuator::healthcheck`]
    /// with the flag before a rollout starts.
    pub fn build(&self) -> Result<Box<dyn Actuator>, ActuatorError> {
        match self {
            ActuatorConfig::LogOnly => Ok(Box::new(log_only::LogOnlyActuator::new())),
            ActuatorConfig::FlagdFile {
                path,
                kill,
                lock_wait_ms,
            } => Ok(Box::new(
                flagd_file::FlagdFileActuator::new(path.clone())
                    .with_kill_mode(*kill)
                    .with_lock_wait(Duration::from_millis(*lock_wait_ms)),
            )),
            ActuatorConfig::Unleash {
                url,
                project,
                environment,
                token_env,
                timeout_seconds,
            } => {
                let target = unleash::UnleashTarget {
                    url: url.clone(),
                    project: project.clone(),
                    environment: environment.clone(),
                    timeout: std::time::Duration::from_secs(*timeout_seconds),
                };
                let token = unleash::AdminToken::from_env(token_env).map_err(|message| {
                    ActuatorError::Invalid {
                        store: format!("unleash {url}"),
                        message,
                    }
                })?;
                Ok(Box::new(unleash::UnleashActuator::new(target, token)?))
            }
            ActuatorConfig::Webhook(config) => Ok(Box::new(config.build()?)),
        }
    }

    /// Who owns a flag moved through this actuator, for the store's one-owner-per-flag
    /// rule: the flag store it writes, not the name it is declared under, so two names
    /// (or two instances) writing one flag file are one owner. A flag file is named by
    /// its absolute path with symbolic links and `.`/`..` resolved (as far as the path
    /// exists); Unleash by its URL without a trailing `/`, project and environment; a
    /// webhook by its URL. A log-only actuator keeps its flags in the process, so it is
    /// its declared `name`.
    pub fn owner(&self, name: &str) -> String {
        match self {
            ActuatorConfig::LogOnly => format!("log-only:{name}"),
            ActuatorConfig::FlagdFile { path, .. } => {
                format!("flagd-file:{}", normalised_path(path).display())
            }
            ActuatorConfig::Unleash {
                url,
                project,
                environment,
                ..
            } => format!(
                "unleash:{},{project},{environment}",
                url.trim_end_matches('/')
            ),
            ActuatorConfig::Webhook(config) => format!("webhook:{}", config.url),
        }
    }
}

/// `path` made absolute, `.` and `..` removed, and symbolic links resolved for the
/// longest part of it that exists (the file itself may not exist yet).
fn normalised_path(path: &std::path::Path) -> PathBuf {
    use std::path::Component;
    let absolute = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    let mut lexical = PathBuf::new();
    for component in absolute.components() {
        match component {
            Component::CurDir => {}
            Component::ParentDir => {
                lexical.pop();
            }
            other => lexical.push(other),
        }
    }
    let mut missing = Vec::new();
    let mut existing = lexical.as_path();
    loop {
        if let Ok(resolved) = existing.canonicalize() {
            return missing
                .iter()
                .rev()
                .fold(resolved, |path, part| path.join(part));
        }
        match (existing.parent(), existing.file_name()) {
            (Some(parent), Some(name)) => {
                missing.push(name.to_owned());
                existing = parent;
            }
            _ => return lexical,
        }
    }
}

impl FromStr for ActuatorConfig {
    type Err = String;

    /// Parses the command-line form: `log-only`, `flagd-file=PATH` with optional
    /// `,kill=disable|off-variant` and `,lock-wait-ms=N`,
    /// `unleash=URL,environment=ENV` with optional `,project=P`, `,token-env=VAR` and
    /// `,timeout-seconds=N`, or `webhook=URL`.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let (kind, argument) = match text.split_once('=') {
            Some((kind, argument)) => (kind, Some(argument)),
            None => (text, None),
        };
        match (kind, argument) {
            ("log-only", None) => Ok(ActuatorConfig::LogOnly),
            ("log-only", Some(_)) => Err(format!(
                "invalid actuator {text:?}: `log-only` takes no argument (expected {})",
                Self::CLI_FORMS
            )),
            ("flagd-file", Some(argument)) if !argument.is_empty() => parse_flagd_file(argument)
                .map_err(|message| format!("invalid actuator {text:?}: {message}")),
            ("flagd-file", _) => Err(format!(
                "invalid actuator {text:?}: `flagd-file` needs the flag file's path, as `flagd-file=PATH`"
            )),
            ("unleash", argument) => parse_unleash(argument.unwrap_or(""))
                .map_err(|message| format!("invalid actuator {text:?}: {message}")),
            ("webhook", Some(url)) if !url.is_empty() => Ok(ActuatorConfig::Webhook(
                webhook::WebhookConfig::for_url(url),
            )),
            ("webhook", _) => Err(format!(
                "invalid actuator {text:?}: `webhook` needs the receiver's URL, as `webhook=URL`"
            )),
            _ => Err(format!(
                "unknown actuator {text:?}: expected {}",
                Self::CLI_FORMS
            )),
        }
    }
}

impl fmt::Display for ActuatorConfig {
    /// The command-line form, which [`FromStr`] reads back.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ActuatorConfig::LogOnly => write!(f, "log-only"),
            ActuatorConfig::FlagdFile {
                path,
                kill,
                lock_wait_ms,
            } => {
                write!(f, "flagd-file={}", path.display())?;
                if *kill != flagd_file::KillMode::default() {
                    write!(f, ",kill={}", kill.name())?;
                }
                if *lock_wait_ms != default_flagd_lock_wait_ms() {
                    write!(f, ",lock-wait-ms={lock_wait_ms}")?;
                }
                Ok(())
            }
            ActuatorConfig::Unleash {
                url,
                project,
                environment,
                token_env,
                timeout_seconds,
            } => {
                write!(f, "unleash={url},environment={environment}")?;
                if *project != default_unleash_project() {
                    write!(f, ",project={project}")?;
                }
                if *token_env != default_unleash_token_env() {
                    write!(f, ",token-env={token_env}")?;
                }
                if *timeout_seconds != default_unleash_timeout_seconds() {
                    write!(f, ",timeout-seconds={timeout_seconds}")?;
                }
                Ok(())
            }
            // Only the URL: the CLI form cannot say the other settings.
            ActuatorConfig::Webhook(config) => write!(f, "webhook={}", config.url),
        }
    }
}

/// `PATH[,kill=disable|off-variant][,lock-wait-ms=N]`, the part after `flagd-file=`.
/// Options are taken off the end, so a path may itself hold commas and `=`; a trailing
/// `,word=value` whose word is not an option is refused rather than read as part of the
/// path, so a misspelt option is not silently ignored.
fn parse_flagd_file(argument: &str) -> Result<ActuatorConfig, String> {
    const FORM: &str = "expected `flagd-file=PATH[,kill=disable|off-variant][,lock-wait-ms=N]`";
    let mut path = argument;
    let mut kill = None;
    let mut lock_wait_ms = None;
    while let Some((head, last)) = path.rsplit_once(',') {
        let Some((key, value)) = last.split_once('=') else {
            break;
        };
        let looks_like_option =
            !key.is_empty() && key.chars().all(|c| c.is_ascii_lowercase() || c == '-');
        match key {
            "kill" if kill.is_none() => {
                kill = Some(value.parse::<flagd_file::KillMode>()?);
            }
            "lock-wait-ms" if lock_wait_ms.is_none() => {
                lock_wait_ms = Some(value.parse::<u64>().ok().filter(|ms| *ms > 0).ok_or_else(
                    || format!("lock-wait-ms must be a whole number of milliseconds above 0, got {value:?}"),
                )?);
            }
            "kill" | "lock-wait-ms" => return Err(format!("{key} is given twice; {FORM}")),
            _ if looks_like_option => return Err(format!("unknown option {key:?}; {FORM}")),
            _ => break,
        }
        path = head;
    }
    if path.is_empty() {
        return Err(format!("`flagd-file` needs the flag file's path; {FORM}"));
    }
    Ok(ActuatorConfig::FlagdFile {
        path: PathBuf::from(path),
        kill: kill.unwrap_or_default(),
        lock_wait_ms: lock_wait_ms.unwrap_or_else(default_flagd_lock_wait_ms),
    })
}

/// `URL,environment=ENV[,project=P][,token-env=VAR][,timeout-seconds=N]`, the part after
/// `unleash=`. The URL is everything before the first comma.
fn parse_unleash(argument: &str) -> Result<ActuatorConfig, String> {
    const FORM: &str =
        "expected `unleash=URL,environment=ENV[,project=P][,token-env=VAR][,timeout-seconds=N]`";
    let mut parts = argument.split(',');
    let url = parts.next().unwrap_or("").trim();
    if !(url.starts_with("http://") || url.starts_with("https://")) {
        return Err(format!(
            "`unleash` needs the server's http(s) URL first; {FORM}"
        ));
    }
    let mut environment = None;
    let mut project = default_unleash_project();
    let mut token_env = default_unleash_token_env();
    let mut timeout_seconds = default_unleash_timeout_seconds();
    for part in parts {
        let (key, value) = part
            .split_once('=')
            .filter(|(_, value)| !value.is_empty())
            .ok_or_else(|| format!("{part:?} is not a `key=value` option; {FORM}"))?;
        match key {
            "environment" => environment = Some(value.to_owned()),
            "project" => project = value.to_owned(),
            "token-env" => token_env = value.to_owned(),
            "timeout-seconds" => {
                timeout_seconds = value
                    .parse()
                    .ok()
                    .filter(|seconds| *seconds > 0)
                    .ok_or_else(|| {
                        format!("timeout-seconds must be a whole number of seconds above 0, got {value:?}")
                    })?;
            }
            _ => return Err(format!("unknown option {key:?}; {FORM}")),
        }
    }
    let environment = environment.ok_or_else(|| {
        format!("`unleash` needs the environment to move flags in, e.g. `,environment=production`; {FORM}")
    })?;
    Ok(ActuatorConfig::Unleash {
        url: url.to_owned(),
        project,
        environment,
        token_env,
        timeout_seconds,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cli_forms_parse_into_configs() {
        assert_eq!(
            "log-only".parse::<ActuatorConfig>(),
            Ok(ActuatorConfig::LogOnly)
        );
        assert_eq!(
            "flagd-file=/etc/flagd/flags.json".parse::<ActuatorConfig>(),
            Ok(flagd_file_config("/etc/flagd/flags.json"))
        );
    }

    #[test]
    fn one_flag_file_written_two_ways_is_one_owner() {
        let directory = tempfile::tempdir().unwrap();
        let file = directory.path().join("flags.json");
        std::fs::write(&file, "{}").unwrap();
        std::fs::create_dir(directory.path().join("sub")).unwrap();
        let roundabout = directory.path().join("sub/../././flags.json");
        let direct = flagd_file_config(file.to_str().unwrap()).owner("a");
        assert_eq!(
            flagd_file_config(roundabout.to_str().unwrap()).owner("b"),
            direct
        );
        assert!(direct.starts_with("flagd-file:/"), "{direct}");
        // A file that does not exist yet still has one absolute name.
        let later = directory.path().join("sub/../later.json");
        assert_eq!(
            flagd_file_config(later.to_str().unwrap()).owner("a"),
            format!(
                "flagd-file:{}",
                directory
                    .path()
                    .canonicalize()
                    .unwrap()
                    .join("later.json")
                    .display()
            )
        );
        // Log-only flags live in the process: the name is the owner.
        assert_ne!(
            ActuatorConfig::LogOnly.owner("a"),
            ActuatorConfig::LogOnly.owner("b")
        );
    }

    fn flagd_file_config(path: &str) -> ActuatorConfig {
        ActuatorConfig::FlagdFile {
            path: PathBuf::from(path),
            kill: flagd_file::KillMode::Disable,
            lock_wait_ms: 5_000,
        }
    }

    #[test]
    fn flagd_file_cli_form_takes_the_kill_mode_and_lock_wait() {
        assert_eq!(
            "flagd-file=/etc/flagd/flags.json,kill=off-variant,lock-wait-ms=250"
                .parse::<ActuatorConfig>(),
            Ok(ActuatorConfig::FlagdFile {
                path: PathBuf::from("/etc/flagd/flags.json"),
                kill: flagd_file::KillMode::OffVariant,
                lock_wait_ms: 250,
            })
        );
        // Commas and `=` in the path itself stay in the path.
        assert_eq!(
            "flagd-file=/srv/a,b/flags=v2.json,kill=disable".parse::<ActuatorConfig>(),
            Ok(flagd_file_config("/srv/a,b/flags=v2.json"))
        );
        for text in [
            "flagd-file=/f.json,kill=off-variant",
            "flagd-file=/f.json,lock-wait-ms=100",
            "flagd-file=/f.json,kill=off-variant,lock-wait-ms=100",
        ] {
            let config: ActuatorConfig = text.parse().unwrap();
            assert_eq!(config.to_string(), text);
        }
        for (text, expected) in [
            ("flagd-file=/f.json,kill=off", "unknown kill mode \"off\""),
            (
                "flagd-file=/f.json,kil=off-variant",
                "unknown option \"kil\"",
            ),
            ("flagd-file=/f.json,lock-wait-ms=0", "above 0"),
            (
                "flagd-file=/f.json,kill=disable,kill=disable",
                "given twice",
            ),
            ("flagd-file=,kill=disable", "needs the flag file's path"),
        ] {
            let error = text.parse::<ActuatorConfig>().unwrap_err();
            assert!(error.contains(expected), "{text}: {error}");
        }
    }

    #[test]
    fn flagd_file_config_file_form_takes_the_kill_mode() {
        let config: ActuatorConfig = toml::from_str(
            "kind = \"flagd-file\"\npath = \"/f.json\"\nkill = \"off-variant\"\nlock_wait_ms = 100",
        )
        .unwrap();
        assert_eq!(
            config.to_string(),
            "flagd-file=/f.json,kill=off-variant,lock-wait-ms=100"
        );
    }

    #[test]
    fn configs_print_as_the_cli_form_they_parse_from() {
        for text in ["log-only", "flagd-file=flags=v2.json"] {
            let config: ActuatorConfig = text.parse().unwrap();
            assert_eq!(config.to_string(), text);
        }
    }

    #[test]
    fn unknown_actuator_error_names_the_allowed_forms() {
        let error = "launchdarkly=http://localhost"
            .parse::<ActuatorConfig>()
            .unwrap_err();
        assert_eq!(
            error,
            format!(
                "unknown actuator \"launchdarkly=http://localhost\": expected {}",
                ActuatorConfig::CLI_FORMS
            )
        );
        assert!(error.contains("`log-only`, `flagd-file=PATH[,kill=disable|off-variant]"));
    }

    #[test]
    fn unleash_cli_form_parses_with_defaults_and_options() {
        assert_eq!(
            "unleash=http://unleash:4242,environment=production".parse::<ActuatorConfig>(),
            Ok(ActuatorConfig::Unleash {
                url: "http://unleash:4242".to_owned(),
                project: "default".to_owned(),
                environment: "production".to_owned(),
                token_env: "CANARY_UNLEASH_TOKEN".to_owned(),
                timeout_seconds: 10,
            })
        );
        assert_eq!(
            "unleash=https://flags.example.com/unleash,project=payments,environment=prod,token-env=PAY_UNLEASH,timeout-seconds=3"
                .parse::<ActuatorConfig>(),
            Ok(ActuatorConfig::Unleash {
                url: "https://flags.example.com/unleash".to_owned(),
                project: "payments".to_owned(),
                environment: "prod".to_owned(),
                token_env: "PAY_UNLEASH".to_owned(),
                timeout_seconds: 3,
            })
        );
        for text in [
            "unleash=http://unleash:4242,environment=production",
            "unleash=https://u.example.com/x,environment=prod,project=payments,token-env=T,timeout-seconds=3",
        ] {
            let config: ActuatorConfig = text.parse().unwrap();
            assert_eq!(config.to_string(), text);
        }
    }

    #[test]
    fn unleash_cli_form_mistakes_are_explained() {
        for (text, expected) in [
            ("unleash", "needs the server's http(s) URL first"),
            (
                "unleash=unleash:4242,environment=p",
                "needs the server's http(s) URL first",
            ),
            ("unleash=http://u:4242", "needs the environment"),
            (
                "unleash=http://u:4242,environment=",
                "is not a `key=value` option",
            ),
            (
                "unleash=http://u:4242,environment=p,colour=red",
                "unknown option \"colour\"",
            ),
            (
                "unleash=http://u:4242,environment=p,timeout-seconds=0",
                "above 0",
            ),
        ] {
            let error = text.parse::<ActuatorConfig>().unwrap_err();
            assert!(error.contains(expected), "{text}: {error}");
            assert!(
                error.starts_with(&format!("invalid actuator {text:?}")),
                "{error}"
            );
        }
    }

    #[test]
    fn unleash_config_file_form_needs_only_url_and_environment() {
        let config: ActuatorConfig = toml::from_str(
            "kind = \"unleash\"\nurl = \"http://unleash:4242\"\nenvironment = \"production\"",
        )
        .unwrap();
        assert_eq!(
            config,
            "unleash=http://unleash:4242,environment=production"
                .parse()
                .unwrap()
        );
        let with_token: Result<ActuatorConfig, _> = toml::from_str(
            "kind = \"unleash\"\nurl = \"http://u\"\nenvironment = \"p\"\ntoken = \"*:*.secret\"",
        );
        let error = with_token.unwrap_err().to_string();
        assert!(error.contains("unknown field `token`"), "{error}");
    }

    #[test]
    fn an_unset_unleash_token_variable_is_named_when_building() {
        let config = ActuatorConfig::Unleash {
            url: "http://unleash:4242".to_owned(),
            project: "default".to_owned(),
            environment: "production".to_owned(),
            token_env: "CANARY_TEST_UNSET_UNLEASH_TOKEN_VARIABLE".to_owned(),
            timeout_seconds: 10,
        };
        let error = config.build().err().expect("no token, no actuator");
        assert!(matches!(error, ActuatorError::Invalid { .. }));
        assert!(
            error
                .to_string()
                .contains("CANARY_TEST_UNSET_UNLEASH_TOKEN_VARIABLE, which should hold the Unleash admin API token, is not set"),
            "{error}"
        );
    }

    #[test]
    fn flagd_file_without_a_path_is_refused() {
        for text in ["flagd-file", "flagd-file="] {
            let error = text.parse::<ActuatorConfig>().unwrap_err();
            assert!(error.contains("flagd-file=PATH"), "{error}");
        }
        assert!("log-only=x".parse::<ActuatorConfig>().is_err());
    }

    #[test]
    fn config_file_form_is_a_table_with_a_kind() {
        let config: ActuatorConfig =
            toml::from_str("kind = \"flagd-file\"\npath = \"/etc/flagd/flags.json\"").unwrap();
        assert_eq!(config, flagd_file_config("/etc/flagd/flags.json"));
        let config: ActuatorConfig = toml::from_str("kind = \"log-only\"").unwrap();
        assert_eq!(config, ActuatorConfig::LogOnly);
    }

    #[tokio::test]
    async fn built_actuators_describe_their_store() {
        let log_only = ActuatorConfig::LogOnly.build().unwrap();
        assert_eq!(log_only.describe(), "log-only");
        let flagd = flagd_file_config("/etc/flagd/flags.json").build().unwrap();
        assert_eq!(flagd.describe(), "flagd-file:/etc/flagd/flags.json");
    }
}
