//! Settings for `canary serve` and the commands that talk to it: a TOML file, overridden
//! by `CANARY_*` environment variables (`CANARY_SERVER__BIND`, `CANARY_STORE__URL`, ...),
//! read into plain serde structs with the `config` crate.
//!
//! Metric sources and actuators are declared here under names; API callers refer to
//! them by name and can never make the engine call a URL of their choosing.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::actuators::ActuatorConfig;
use crate::api::auth::{ApiToken, Scope};
use crate::domain::HumanDuration;
use crate::notify::NotifierConfig;
use crate::sources::config::SourceConfig;
use crate::sources::prometheus::Secret;

/// All settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// The HTTP API.
    #[serde(default)]
    pub server: ServerSettings,
    /// Where analyses are kept.
    #[serde(default)]
    pub store: StoreSettings,
    /// Where analysis profiles are read from.
    #[serde(default)]
    pub profiles: ProfilesSettings,
    /// Named metric sources, e.g. `[sources.prod] kind = "prometheus"`, `url = "..."`
    /// (or kind `influxdb`, `graphite`, `datadog`, `cloudwatch`).
    #[serde(default)]
    pub sources: BTreeMap<String, SourceConfig>,
    /// Named actuators, e.g. `[actuators.flags] kind = "flagd-file"`, `path = "..."`.
    #[serde(default)]
    pub actuators: BTreeMap<String, ActuatorConfig>,
    /// The workers that run analyses.
    #[serde(default)]
    pub worker: WorkerSettings,
    /// Named notification destinations, e.g. `[notifiers.oncall] kind = "slack"`,
    /// `url = "..."`, `min_severity = "warning"`.
    #[serde(default)]
    pub notifiers: BTreeMap<String, NotifierConfig>,
}

/// `[server]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerSettings {
    /// Address to listen on. Default `127.0.0.1:8080`.
    pub bind: String,
    /// A bearer token with every scope (read, submit, act). With any token configured,
    /// submitting and manual actions need one; with none, anyone who reaches the API can
    /// submit (the server warns at start-up) and manual actions are refused. An empty
    /// value is refused at start-up.
    pub auth_token: Option<Secret>,
    /// Named tokens with scopes, e.g. `[[server.tokens]] name = "pipeline"`,
    /// `scopes = ["submit", "read"]`, `token_env = "CANARY_PIPELINE_TOKEN"`.
    pub tokens: Vec<TokenSettings>,
    /// Whether the `GET /v1/analyses...` routes need a token with scope `read` when
    /// tokens are configured. Default false: dashboards and Argo's verdict polls read
    /// without one. Health, readiness, metrics and the OpenAPI document stay open.
    pub require_token_for_reads: bool,
    /// The URL reports and notifications link to, e.g. `https://canary.example.com`.
    pub public_url: Option<String>,
    /// How long a client may take to send a request's line and headers; a slower one is
    /// disconnected. Also bounds an idle kept-alive connection. Default `10s`.
    pub header_read_timeout: String,
    /// How long a client may take to send a request's body once its headers are in; a
    /// slower one gets a 408. Default `30s`.
    pub body_read_timeout: String,
    /// The label a bare Kayenta scope value selects on (Kayenta's account
    /// `scopeLabel`): `POST /kayenta/canary/...` with `"scope": "myapp-canary"` judges
    /// `LABEL="myapp-canary"`. Unset, Kayenta scopes must be label matchers.
    pub kayenta_scope_label: Option<String>,
    /// Let callers without a token use Kayenta's API under `/kayenta` (Spinnaker's Orca
    /// sends no credentials). Executions never move a flag, but anyone who reaches the
    /// port can then make canary query the metric sources. Default false.
    pub kayenta_without_token: bool,
    /// The environment variable holding the secret that signs the promote and
    /// roll-back links notifications carry (at least 32 characters; needs
    /// `public_url`). Unset, notifications carry no action links.
    pub action_link_secret_env: Option<String>,
    /// How long an action link stays valid. Default `1h`.
    pub action_link_ttl: String,
}

impl Default for ServerSettings {
    fn default() -> Self {
        Self {
            bind: "127.0.0.1:8080".to_owned(),
            auth_token: None,
            tokens: Vec::new(),
            require_token_for_reads: false,
            public_url: None,
            header_read_timeout: "10s".to_owned(),
            body_read_timeout: "30s".to_owned(),
            kayenta_scope_label: None,
            kayenta_without_token: false,
            action_link_secret_env: None,
            action_link_ttl: "1h".to_owned(),
        }
    }
}

/// `[[server.tokens]]`: one named bearer token.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenSettings {
    /// The token's name, shown in the audit log as `api-token:NAME`.
    pub name: String,
    /// What it allows: `read`, `submit`, `act`.
    pub scopes: Vec<Scope>,
    /// The environment variable holding the token (preferred: keeps it out of files).
    #[serde(default)]
    pub token_env: Option<String>,
    /// The token itself.
    #[serde(default)]
    pub token: Option<Secret>,
}

impl ServerSettings {
    /// `kayenta_scope_label`, checked to be a Prometheus label name.
    pub fn kayenta_scope_label(&self) -> Result<Option<String>, SettingsError> {
        match &self.kayenta_scope_label {
            None => Ok(None),
            Some(label) => {
                let valid = label
                    .chars()
                    .next()
                    .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                    && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
                if valid {
                    Ok(Some(label.clone()))
                } else {
                    Err(SettingsError(format!(
                        "server.kayenta_scope_label must be a label name (letters, digits \
                         and '_', not starting with a digit), got {label:?}"
                    )))
                }
            }
        }
    }

    /// The header read timeout as a duration.
    pub fn header_read_duration(&self) -> Result<Duration, SettingsError> {
        parse_positive_duration("server.header_read_timeout", &self.header_read_timeout)
    }

    /// The body read timeout as a duration.
    pub fn body_read_duration(&self) -> Result<Duration, SettingsError> {
        parse_positive_duration("server.body_read_timeout", &self.body_read_timeout)
    }

    /// The configured tokens: `auth_token` (every scope) and each `[[server.tokens]]`,
    /// whose `token_env` is looked up with `variable`. An empty token, a missing
    /// variable, a token without scopes, a repeated name or two tokens with the same
    /// value is an error naming the setting.
    pub fn api_tokens(
        &self,
        variable: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Vec<ApiToken>, SettingsError> {
        let mut tokens = Vec::new();
        if let Some(token) = &self.auth_token {
            if token.expose().trim().is_empty() {
                return Err(SettingsError(
                    "server.auth_token (CANARY_SERVER__AUTH_TOKEN) is empty: set a token, or \
                     remove the setting to serve without one"
                        .to_owned(),
                ));
            }
            check_token_edges("server.auth_token", token.expose())?;
            tokens.push(ApiToken::legacy(token.expose()));
        }
        for (index, entry) in self.tokens.iter().enumerate() {
            let name = entry.name.trim();
            let setting = format!("server.tokens[{index}] ({name:?})");
            if name.is_empty() {
                return Err(SettingsError(format!("{setting}: name must not be empty")));
            }
            if entry.scopes.is_empty() {
                return Err(SettingsError(format!(
                    "{setting}: scopes must list at least one of \"read\", \"submit\", \"act\""
                )));
            }
            let value = match (&entry.token, &entry.token_env) {
                (Some(token), None) => token.expose().to_owned(),
                (None, Some(env)) => variable(env).ok_or_else(|| {
                    SettingsError(format!("{setting}: token_env {env:?} is not set"))
                })?,
                _ => {
                    return Err(SettingsError(format!(
                        "{setting}: give exactly one of token_env and token"
                    )));
                }
            };
            if value.trim().is_empty() {
                return Err(SettingsError(format!("{setting}: the token is empty")));
            }
            check_token_edges(&setting, &value)?;
            let token = ApiToken::new(name, &entry.scopes, &value);
            if let Some(other) = tokens
                .iter()
                .find(|other: &&ApiToken| other.name() == name || other.same_value_as(&token))
            {
                return Err(SettingsError(format!(
                    "{setting}: has the same name or value as token {:?}",
                    other.name()
                )));
            }
            tokens.push(token);
        }
        Ok(tokens)
    }
}

/// `[store]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreSettings {
    /// `sqlite:PATH` (the default, `sqlite:canary.db`: a file, no server needed) or
    /// `postgres://...` to share work between several `canary serve` instances.
    pub url: String,
    /// The longest `/readyz`, `/metrics` and a submission wait for the store (a pool
    /// connection and the query) before answering 503. Default `2s`.
    pub api_timeout: String,
    /// How long a finished analysis (promoted, rolled back, failed) is kept after it
    /// last changed, with its looks, flag changes and audit entries; then `canary serve`
    /// deletes it. A duration (`30d`, `12h`), or `forever` to keep everything. Default
    /// `90d`.
    pub retain_finished: String,
}

impl Default for StoreSettings {
    fn default() -> Self {
        Self {
            url: "sqlite:canary.db".to_owned(),
            api_timeout: "2s".to_owned(),
            retain_finished: "90d".to_owned(),
        }
    }
}

impl StoreSettings {
    /// The API's store timeout as a duration.
    pub fn api_timeout_duration(&self) -> Result<Duration, SettingsError> {
        parse_positive_duration("store.api_timeout", &self.api_timeout)
    }

    /// How long finished analyses are kept; `None` for `forever`.
    pub fn retention(&self) -> Result<Option<Duration>, SettingsError> {
        if self.retain_finished.trim() == "forever" {
            return Ok(None);
        }
        HumanDuration::parse(&self.retain_finished)
            .map(|duration| Some(duration.get()))
            .map_err(|message| {
                SettingsError(format!(
                    "store.retain_finished: {message}, or \"forever\" to keep everything"
                ))
            })
    }
}

/// `[profiles]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProfilesSettings {
    /// Directory of `NAME.toml` analysis profiles. Default `analysis-profiles`.
    pub directory: PathBuf,
}

impl Default for ProfilesSettings {
    fn default() -> Self {
        Self {
            directory: PathBuf::from("analysis-profiles"),
        }
    }
}

/// `[worker]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WorkerSettings {
    /// Analyses one instance works on at once. Default 16.
    pub concurrency: usize,
    /// How long a claimed analysis stays reserved for this instance without a renewal.
    /// Another instance takes over an analysis whose lease has expired. Default `30s`.
    pub lease: String,
    /// How often an idle worker looks for due analyses. Default `200ms`: a look waits up
    /// to this long for its claim, and the capacity benchmark's 1 s lateness target
    /// needs it well under a second (an empty claim writes nothing).
    pub poll_interval: String,
    /// This instance's name in leases and logs. Default: host name and process id.
    pub id: Option<String>,
    /// How long one flag change is retried (with doubling pauses from 100 ms to 5 s)
    /// while the flag store is unavailable or reads back something else. Default `30s`.
    pub actuation_deadline: String,
    /// How often a rollback that could not be applied (`rollback_failed`) is tried
    /// again, until it succeeds or a person acts. Default `30s`.
    pub rollback_retry_interval: String,
}

impl Default for WorkerSettings {
    fn default() -> Self {
        Self {
            concurrency: 16,
            lease: "30s".to_owned(),
            poll_interval: "200ms".to_owned(),
            id: None,
            actuation_deadline: "30s".to_owned(),
            rollback_retry_interval: "30s".to_owned(),
        }
    }
}

impl WorkerSettings {
    /// The lease as a duration.
    pub fn lease_duration(&self) -> Result<Duration, SettingsError> {
        parse_duration("worker.lease", &self.lease)
    }

    /// The poll interval as a duration.
    pub fn poll_duration(&self) -> Result<Duration, SettingsError> {
        parse_duration("worker.poll_interval", &self.poll_interval)
    }

    /// The actuation deadline as a duration.
    pub fn actuation_deadline_duration(&self) -> Result<Duration, SettingsError> {
        parse_duration("worker.actuation_deadline", &self.actuation_deadline)
    }

    /// The rollback retry interval as a duration.
    pub fn rollback_retry_duration(&self) -> Result<Duration, SettingsError> {
        parse_duration(
            "worker.rollback_retry_interval",
            &self.rollback_retry_interval,
        )
    }
}

/// A token with surrounding whitespace (often a newline read from a file) could never
/// match: a request's `Authorization` header is read trimmed.
fn check_token_edges(setting: &str, value: &str) -> Result<(), SettingsError> {
    if value.trim() != value {
        return Err(SettingsError(format!(
            "{setting}: the token starts or ends with whitespace (a newline from a file?)"
        )));
    }
    Ok(())
}

fn parse_duration(field: &str, text: &str) -> Result<Duration, SettingsError> {
    HumanDuration::parse(text)
        .map(HumanDuration::get)
        .map_err(|message| SettingsError(format!("{field}: {message}")))
}

/// A duration that must not be zero (a timeout of nothing would refuse everything).
pub(crate) fn parse_positive_duration(field: &str, text: &str) -> Result<Duration, SettingsError> {
    let duration = parse_duration(field, text)?;
    if duration.is_zero() {
        return Err(SettingsError(format!("{field}: must be longer than 0 s")));
    }
    Ok(duration)
}

/// Settings that cannot be used: names the file or variable and the field.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("settings: {0}")]
pub struct SettingsError(pub String);

impl Settings {
    /// Reads `file` (when given; it must exist) and then the `CANARY_*` environment.
    pub fn load(file: Option<&Path>) -> Result<Settings, SettingsError> {
        Self::load_from(file, Some(std::env::vars().collect()))
    }

    /// Reads `file` and then `environment` (variables as `CANARY_SECTION__KEY`), so tests
    /// can pass variables without touching the process environment.
    pub fn load_from(
        file: Option<&Path>,
        environment: Option<BTreeMap<String, String>>,
    ) -> Result<Settings, SettingsError> {
        let mut builder = config::Config::builder();
        if let Some(path) = file {
            if !path.exists() {
                return Err(SettingsError(format!("{}: no such file", path.display())));
            }
            builder = builder.add_source(config::File::from(path).format(config::FileFormat::Toml));
        }
        // Only `CANARY_SECTION__KEY` variables are settings: every setting lives in a
        // section, and other `CANARY_*` variables hold secrets that settings name
        // (`CANARY_UNLEASH_TOKEN`, `CANARY_WEBHOOK_SECRET`), which are not settings.
        let environment = environment.unwrap_or_else(|| std::env::vars().collect());
        let variables = environment
            .clone()
            .into_iter()
            .filter(|(name, _)| {
                name.strip_prefix("CANARY_")
                    .is_some_and(|rest| rest.contains("__"))
            })
            .collect();
        let settings_variables = config::Environment::with_prefix("CANARY")
            .prefix_separator("_")
            .separator("__")
            .source(Some(variables));
        let settings: Settings = builder
            .add_source(settings_variables)
            .build()
            .and_then(config::Config::try_deserialize)
            .map_err(|error| {
                SettingsError(match file {
                    Some(path) => format!("{}: {error}", path.display()),
                    None => error.to_string(),
                })
            })?;
        settings.validate()?;
        // Tokens are checked here too, so that `canary serve` refuses an empty or
        // missing token before it opens a port.
        settings
            .server
            .api_tokens(&|name| environment.get(name).cloned())?;
        Ok(settings)
    }

    fn validate(&self) -> Result<(), SettingsError> {
        self.store.retention()?;
        self.worker.lease_duration()?;
        self.worker.poll_duration()?;
        self.server.header_read_duration()?;
        self.server.body_read_duration()?;
        self.store.api_timeout_duration()?;
        if self.worker.concurrency == 0 {
            return Err(SettingsError(
                "worker.concurrency: must be at least 1".to_owned(),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(text: &str) -> (tempfile::TempDir, PathBuf) {
        let directory = tempfile::tempdir().unwrap();
        let path = directory.path().join("canary.toml");
        std::fs::write(&path, text).unwrap();
        (directory, path)
    }

    #[test]
    fn request_and_store_timeouts_have_defaults_and_a_zero_one_names_its_field() {
        let settings = Settings::load_from(None, Some(BTreeMap::new())).unwrap();
        assert_eq!(
            settings.server.header_read_duration().unwrap(),
            Duration::from_secs(10)
        );
        assert_eq!(
            settings.server.body_read_duration().unwrap(),
            Duration::from_secs(30)
        );
        assert_eq!(
            settings.store.api_timeout_duration().unwrap(),
            Duration::from_secs(2)
        );
        for (section, key) in [
            ("server", "header_read_timeout"),
            ("server", "body_read_timeout"),
            ("store", "api_timeout"),
        ] {
            for value in ["0s", "soon"] {
                let (_directory, path) = write(&format!("[{section}]\n{key} = \"{value}\"\n"));
                let error = Settings::load_from(Some(&path), Some(BTreeMap::new())).unwrap_err();
                assert!(error.0.contains(&format!("{section}.{key}")), "{error}");
            }
        }
    }

    #[test]
    fn defaults_need_no_file() {
        let settings = Settings::load_from(None, Some(BTreeMap::new())).unwrap();
        assert_eq!(settings.store.url, "sqlite:canary.db");
        assert_eq!(settings.server.bind, "127.0.0.1:8080");
        assert_eq!(
            settings.worker.lease_duration().unwrap(),
            Duration::from_secs(30)
        );
    }

    #[test]
    fn a_file_declares_named_sources_and_actuators() {
        let (_directory, path) = write(
            r#"
[server]
bind = "0.0.0.0:9000"
auth_token = "s3cret"
[store]
url = "postgres://127.0.0.1/test"
[sources.prod]
kind = "prometheus"
url = "http://prometheus:9090"
timeout = "5s"
[sources.recorded]
kind = "replay"
directory = "fixtures/replay/healthy"
[actuators.flags]
kind = "flagd-file"
path = "/etc/flagd/flags.json"
[actuators.dry]
kind = "log-only"
[worker]
concurrency = 4
lease = "10s"
"#,
        );
        let settings = Settings::load_from(Some(&path), Some(BTreeMap::new())).unwrap();
        assert_eq!(settings.server.bind, "0.0.0.0:9000");
        assert_eq!(
            settings.server.auth_token.as_ref().unwrap().expose(),
            "s3cret"
        );
        assert!(matches!(
            settings.sources["prod"],
            SourceConfig::Prometheus(_)
        ));
        assert!(matches!(
            settings.sources["recorded"],
            SourceConfig::Replay { .. }
        ));
        assert_eq!(settings.actuators["dry"], ActuatorConfig::LogOnly);
        assert_eq!(settings.worker.concurrency, 4);
    }

    #[test]
    fn a_file_declares_named_notifiers() {
        let (_directory, path) = write(
            r#"
[notifiers.oncall]
kind = "slack"
url = "https://hooks.slack.com/services/T000/B000/XXXX"
min_severity = "warning"
[notifiers.incidents]
kind = "json"
url = "https://incidents.internal/canary"
secret_env = "INCIDENTS_WEBHOOK_SECRET"
timeout = "2s"
"#,
        );
        let settings = Settings::load_from(Some(&path), Some(BTreeMap::new())).unwrap();
        assert_eq!(settings.notifiers.len(), 2);
        assert_eq!(
            settings.notifiers["oncall"].min_severity(),
            crate::notify::Severity::Warning
        );
        assert!(matches!(
            &settings.notifiers["incidents"],
            NotifierConfig::Json { secret_env: Some(variable), .. } if variable == "INCIDENTS_WEBHOOK_SECRET"
        ));
        let defaults = Settings::load_from(None, Some(BTreeMap::new())).unwrap();
        assert!(defaults.notifiers.is_empty());
    }

    #[test]
    fn environment_variables_override_the_file() {
        let (_directory, path) = write("[store]\nurl = \"sqlite:one.db\"\n");
        let environment = BTreeMap::from([
            ("CANARY_STORE__URL".to_owned(), "sqlite:two.db".to_owned()),
            ("CANARY_SERVER__BIND".to_owned(), "127.0.0.1:0".to_owned()),
        ]);
        let settings = Settings::load_from(Some(&path), Some(environment)).unwrap();
        assert_eq!(settings.store.url, "sqlite:two.db");
        assert_eq!(settings.server.bind, "127.0.0.1:0");
    }

    #[test]
    fn canary_variables_that_are_not_section_keys_are_secrets_not_settings() {
        // The default token and secret variables of the Unleash and webhook actuators
        // share the prefix; they must not be read as (unknown) settings.
        let environment = BTreeMap::from([
            ("CANARY_UNLEASH_TOKEN".to_owned(), "*:*.secret".to_owned()),
            ("CANARY_WEBHOOK_SECRET".to_owned(), "hmac".to_owned()),
            ("CANARY_STORE__URL".to_owned(), "sqlite:three.db".to_owned()),
        ]);
        let settings = Settings::load_from(None, Some(environment)).unwrap();
        assert_eq!(settings.store.url, "sqlite:three.db");
    }

    #[test]
    fn named_tokens_come_from_the_file_or_the_environment_and_auth_token_has_every_scope() {
        let (_directory, path) = write(
            r#"
[server]
auth_token = "legacy"
require_token_for_reads = true
[[server.tokens]]
name = "pipeline"
scopes = ["submit", "read"]
token_env = "CANARY_PIPELINE_TOKEN"
[[server.tokens]]
name = "dashboard"
scopes = ["read"]
token = "dashboard-token"
"#,
        );
        let environment = BTreeMap::from([(
            "CANARY_PIPELINE_TOKEN".to_owned(),
            "pipeline-token".to_owned(),
        )]);
        let settings = Settings::load_from(Some(&path), Some(environment.clone())).unwrap();
        assert!(settings.server.require_token_for_reads);
        assert_eq!(
            settings.server.tokens[0].scopes,
            [Scope::Submit, Scope::Read]
        );
        let tokens = settings
            .server
            .api_tokens(&|name| environment.get(name).cloned())
            .unwrap();
        let names: Vec<&str> = tokens.iter().map(ApiToken::name).collect();
        assert_eq!(names, ["auth_token", "pipeline", "dashboard"]);

        let error = Settings::load_from(Some(&path), Some(BTreeMap::new())).unwrap_err();
        assert!(error.0.contains("CANARY_PIPELINE_TOKEN"), "{error}");
    }

    #[test]
    fn an_empty_auth_token_is_refused_naming_the_setting() {
        let (_directory, path) = write("[server]\nauth_token = \"\"\n");
        let error = Settings::load_from(Some(&path), Some(BTreeMap::new())).unwrap_err();
        assert!(error.0.contains("server.auth_token"), "{error}");
        let environment =
            BTreeMap::from([("CANARY_SERVER__AUTH_TOKEN".to_owned(), " ".to_owned())]);
        let error = Settings::load_from(None, Some(environment)).unwrap_err();
        assert!(error.0.contains("server.auth_token"), "{error}");
    }

    #[test]
    fn bad_tokens_are_refused_naming_the_entry() {
        for (entry, expected) in [
            ("name = \"a\"\nscopes = []\ntoken = \"t\"", "scopes"),
            ("name = \"a\"\nscopes = [\"read\"]\ntoken = \"\"", "empty"),
            ("name = \"a\"\nscopes = [\"read\"]", "exactly one"),
            ("name = \"\"\nscopes = [\"read\"]\ntoken = \"t\"", "name"),
            ("name = \"a\"\nscopes = [\"write\"]\ntoken = \"t\"", "write"),
            (
                "name = \"a\"\nscopes = [\"read\"]\ntoken = \"t\\n\"",
                "whitespace",
            ),
        ] {
            let (_directory, path) = write(&format!("[[server.tokens]]\n{entry}\n"));
            let error = Settings::load_from(Some(&path), Some(BTreeMap::new())).unwrap_err();
            assert!(error.0.contains(expected), "{entry}: {error}");
        }
        let (_directory, path) = write(
            "[server]\nauth_token = \"same\"\n[[server.tokens]]\nname = \"a\"\nscopes = [\"read\"]\ntoken = \"same\"\n",
        );
        let error = Settings::load_from(Some(&path), Some(BTreeMap::new())).unwrap_err();
        assert!(error.0.contains("same name or value"), "{error}");
    }

    #[test]
    fn retention_is_a_duration_or_forever_and_a_bad_one_names_the_key() {
        assert_eq!(
            Settings::load_from(None, Some(BTreeMap::new()))
                .unwrap()
                .store
                .retention()
                .unwrap(),
            Some(Duration::from_secs(90 * 86_400))
        );
        let (_directory, path) = write("[store]\nretain_finished = \"30d\"\n");
        let settings = Settings::load_from(Some(&path), Some(BTreeMap::new())).unwrap();
        assert_eq!(
            settings.store.retention().unwrap(),
            Some(Duration::from_secs(30 * 86_400))
        );
        let forever = BTreeMap::from([(
            "CANARY_STORE__RETAIN_FINISHED".to_owned(),
            "forever".to_owned(),
        )]);
        let settings = Settings::load_from(None, Some(forever)).unwrap();
        assert_eq!(settings.store.retention().unwrap(), None);
        for bad in ["30 days", "0d", "", "-1d", "never"] {
            let (_directory, path) = write(&format!("[store]\nretain_finished = {bad:?}\n"));
            let error = Settings::load_from(Some(&path), Some(BTreeMap::new())).unwrap_err();
            assert!(error.0.contains("store.retain_finished"), "{bad}: {error}");
            assert!(error.0.contains("forever"), "{bad}: {error}");
        }
    }

    #[test]
    fn bad_settings_name_the_file_and_field() {
        let (_directory, path) = write("[worker]\nlease = \"soon\"\n");
        let error = Settings::load_from(Some(&path), Some(BTreeMap::new())).unwrap_err();
        assert!(error.0.contains("worker.lease"), "{error}");
        let (_directory, path) = write("[sources.x]\nkind = \"splunk\"\n");
        let error = Settings::load_from(Some(&path), Some(BTreeMap::new())).unwrap_err();
        assert!(error.0.contains("canary.toml"), "{error}");
        assert!(error.0.contains("splunk"), "{error}");
        let missing =
            Settings::load_from(Some(Path::new("/nonexistent/canary.toml")), None).unwrap_err();
        assert!(missing.0.contains("/nonexistent/canary.toml"));
    }
}
