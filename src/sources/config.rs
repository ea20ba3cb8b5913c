//! Choosing a metric source: the CLI forms (`prometheus=URL`, `influxdb=URL?db=NAME`,
//! `replay=DIR`, `file=PATH`), and the one match that names the concrete sources.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;

use super::MetricSource;
use super::cloudwatch::CloudWatchConfig;
use super::datadog::DatadogConfig;
use super::graphite::GraphiteConfig;
use super::influxdb::InfluxDbConfig;
use super::prometheus::PrometheusConfig;
use super::replay::ReplaySource;

/// A metric source as the command line (`prometheus=URL`, `replay=DIR`) or a settings
/// file (a table with `kind = "prometheus"` and the Prometheus settings, or
/// `kind = "replay"` and `directory`) names it.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
// Settings are read once at start-up; boxing the larger variants would buy nothing.
#[allow(clippy::large_enum_variant)]
pub enum SourceConfig {
    /// A Prometheus server's HTTP API, or a store speaking it (VictoriaMetrics,
    /// Thanos, Cortex, Mimir, Amazon Managed Prometheus).
    Prometheus(PrometheusConfig),
    /// An InfluxDB server's InfluxQL endpoint.
    Influxdb(InfluxDbConfig),
    /// A Graphite render API.
    Graphite(GraphiteConfig),
    /// Datadog's metrics query API.
    Datadog(DatadogConfig),
    /// Amazon CloudWatch's `GetMetricData`.
    Cloudwatch(CloudWatchConfig),
    /// Recorded `baseline` and `canary` files in a directory.
    Replay {
        /// The directory.
        directory: PathBuf,
    },
}

/// A source that cannot be built.
#[derive(Debug, thiserror::Error)]
#[error("metric source {spec}: {message}")]
pub struct SourceConfigError {
    /// The source as given.
    pub spec: String,
    /// What is wrong.
    pub message: String,
}

impl SourceConfig {
    /// The accepted command-line forms, for help and errors.
    pub const CLI_FORMS: &'static str = "`prometheus=URL`, `influxdb=URL?db=DATABASE`, `graphite=URL`, `datadog=SITE` (keys from DD_API_KEY and DD_APP_KEY), `cloudwatch=REGION` (credentials from the AWS environment), `replay=DIR` or `file=PATH` (a TOML table with `kind` and the source's settings)";

    /// Builds the source. A replay directory is read here, so its errors name files and
    /// lines before a rollout starts.
    pub fn build(&self) -> Result<Arc<dyn MetricSource>, SourceConfigError> {
        fn shared<S: MetricSource + 'static>(source: S) -> Arc<dyn MetricSource> {
            Arc::new(source)
        }
        let built = match self {
            SourceConfig::Prometheus(config) => {
                config.build().map(shared).map_err(|e| e.to_string())
            }
            SourceConfig::Influxdb(config) => config.build().map(shared).map_err(|e| e.message),
            SourceConfig::Graphite(config) => config.build().map(shared).map_err(|e| e.message),
            SourceConfig::Datadog(config) => config.build().map(shared).map_err(|e| e.message),
            SourceConfig::Cloudwatch(config) => config.build().map(shared).map_err(|e| e.message),
            SourceConfig::Replay { directory } => ReplaySource::open(directory)
                .map(shared)
                .map_err(|e| e.to_string()),
        };
        built.map_err(|message| SourceConfigError {
            spec: self.to_string(),
            message,
        })
    }
}

impl FromStr for SourceConfig {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text.split_once('=') {
            Some(("prometheus", url)) if !url.is_empty() => {
                Ok(SourceConfig::Prometheus(PrometheusConfig::new(url)))
            }
            Some(("influxdb", url)) if !url.is_empty() => influxdb_form(url),
            Some(("datadog", site)) if !site.is_empty() => {
                let mut config = DatadogConfig::new();
                if site.starts_with("http://") || site.starts_with("https://") {
                    config.url = Some(site.to_owned());
                } else {
                    config.site = site.to_owned();
                }
                Ok(SourceConfig::Datadog(config))
            }
            Some(("cloudwatch", region)) if !region.is_empty() => {
                let mut config = CloudWatchConfig::new();
                if region.starts_with("http://") || region.starts_with("https://") {
                    config.url = Some(region.to_owned());
                } else {
                    config.region = Some(region.to_owned());
                }
                Ok(SourceConfig::Cloudwatch(config))
            }
            Some(("graphite", url)) if !url.is_empty() => {
                Ok(SourceConfig::Graphite(GraphiteConfig::new(url)))
            }
            Some(("replay", directory)) if !directory.is_empty() => Ok(SourceConfig::Replay {
                directory: PathBuf::from(directory),
            }),
            Some(("file", path)) if !path.is_empty() => {
                let text = std::fs::read_to_string(path)
                    .map_err(|error| format!("metric source file {path}: {error}"))?;
                toml::from_str(&text).map_err(|error| {
                    let message = error.message().to_owned();
                    let line = error
                        .span()
                        .filter(|span| span.start > 0)
                        .map(|span| crate::domain::line_and_column(&text, span.start).0)
                        .or_else(|| line_of_named_key(&text, &message));
                    match line {
                        Some(line) => format!("metric source file {path}, line {line}: {message}"),
                        None => format!("metric source file {path}: {message}"),
                    }
                })
            }
            _ => Err(format!(
                "unknown metric source {text:?}: expected {}",
                Self::CLI_FORMS
            )),
        }
    }
}

/// The line of the key a serde message names in backticks (``unknown field `bogus` ``):
/// an internally tagged table loses the spans of its fields, so the key is looked up.
fn line_of_named_key(text: &str, message: &str) -> Option<usize> {
    let name = message.split('`').nth(1)?;
    text.lines()
        .position(|line| {
            line.trim_start()
                .strip_prefix(name)
                .is_some_and(|rest| rest.trim_start().starts_with('='))
        })
        .map(|index| index + 1)
}

/// `influxdb=URL?db=NAME[&rp=POLICY]`: the database (and retention policy) ride in the
/// URL's query string on the command line.
fn influxdb_form(url: &str) -> Result<SourceConfig, String> {
    let parsed =
        reqwest::Url::parse(url).map_err(|error| format!("influxdb source {url:?}: {error}"))?;
    let mut database = None;
    let mut retention_policy = None;
    for (name, value) in parsed.query_pairs() {
        match name.as_ref() {
            "db" => database = Some(value.into_owned()),
            "rp" => retention_policy = Some(value.into_owned()),
            other => {
                return Err(format!(
                    "influxdb source {url:?}: unknown parameter {other:?}; give db (and rp)"
                ));
            }
        }
    }
    let database = database
        .filter(|database| !database.is_empty())
        .ok_or_else(|| format!("influxdb source {url:?} names no database: add ?db=NAME"))?;
    let mut base = parsed.clone();
    base.set_query(None);
    let mut config = InfluxDbConfig::new(base.as_str().trim_end_matches('/'), database);
    config.retention_policy = retention_policy;
    Ok(SourceConfig::Influxdb(config))
}

impl fmt::Display for SourceConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SourceConfig::Prometheus(config) => write!(f, "prometheus={}", config.url),
            SourceConfig::Graphite(config) => write!(f, "graphite={}", config.url),
            SourceConfig::Cloudwatch(config) => match (&config.url, &config.region) {
                (Some(url), _) => write!(f, "cloudwatch={url}"),
                (None, Some(region)) => write!(f, "cloudwatch={region}"),
                (None, None) => write!(f, "cloudwatch"),
            },
            SourceConfig::Datadog(config) => match &config.url {
                Some(url) => write!(f, "datadog={url}"),
                None => write!(f, "datadog={}", config.site),
            },
            SourceConfig::Influxdb(config) => {
                write!(f, "influxdb={}?db={}", config.url, config.database)
            }
            SourceConfig::Replay { directory } => write!(f, "replay={}", directory.display()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cli_forms_parse_and_print_back() {
        for form in [
            "prometheus=http://127.0.0.1:9090",
            "influxdb=http://127.0.0.1:8086?db=metrics",
            "graphite=http://127.0.0.1:8080",
            "datadog=datadoghq.eu",
            "datadog=http://127.0.0.1:9999",
            "cloudwatch=eu-west-1",
            "cloudwatch=http://127.0.0.1:5000",
            "replay=fixtures/replay/healthy",
        ] {
            assert_eq!(form.parse::<SourceConfig>().unwrap().to_string(), form);
        }
    }

    #[test]
    fn unknown_forms_name_the_allowed_ones() {
        for form in [
            "splunk=http://x",
            "prometheus=",
            "replay",
            "",
            "influxdb=http://x",
        ] {
            let error = form.parse::<SourceConfig>().unwrap_err();
            assert!(
                error.contains("prometheus=URL") || error.contains("?db=NAME"),
                "{error}"
            );
        }
    }

    #[test]
    fn a_source_file_is_read_as_a_settings_table() {
        let directory = tempfile::tempdir().unwrap();
        let path = directory.path().join("source.toml");
        std::fs::write(
            &path,
            "kind = \"prometheus\"\nurl = \"http://vm:8428\"\ntenant = \"team-a\"\n",
        )
        .unwrap();
        let SourceConfig::Prometheus(config) = format!("file={}", path.display())
            .parse::<SourceConfig>()
            .unwrap()
        else {
            panic!("expected a Prometheus source");
        };
        assert_eq!(config.tenant.as_deref(), Some("team-a"));
        std::fs::write(
            &path,
            "kind = \"prometheus\"\nurl = \"http://vm:8428\"\nbogus = 1\n",
        )
        .unwrap();
        let error = format!("file={}", path.display())
            .parse::<SourceConfig>()
            .unwrap_err();
        assert!(
            error.contains("source.toml") && error.contains("line 3"),
            "{error}"
        );
    }
}
