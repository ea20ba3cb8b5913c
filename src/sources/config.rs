//! Choosing a metric source: the CLI forms `prometheus=URL` and `replay=DIR`, and the
//! one match that names the concrete sources.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;

use super::MetricSource;
use super::prometheus::PrometheusConfig;
use super::replay::ReplaySource;

/// A metric source as the command line (`prometheus=URL`, `replay=DIR`) or a settings
/// file (a table with `kind = "prometheus"` and the Prometheus settings, or
/// `kind = "replay"` and `directory`) names it.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum SourceConfig {
    /// A Prometheus server's HTTP API.
    Prometheus(PrometheusConfig),
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
    pub const CLI_FORMS: &'static str = "`prometheus=URL` or `replay=DIR`";

    /// Builds the source. A replay directory is read here, so its errors name files and
    /// lines before a rollout starts.
    pub fn build(&self) -> Result<Arc<dyn MetricSource>, SourceConfigError> {
        match self {
            SourceConfig::Prometheus(config) => config
                .build()
                .map(|source| Arc::new(source) as Arc<dyn MetricSource>)
                .map_err(|error| SourceConfigError {
                    spec: self.to_string(),
                    message: error.to_string(),
                }),
            SourceConfig::Replay { directory } => ReplaySource::open(directory)
                .map(|source| Arc::new(source) as Arc<dyn MetricSource>)
                .map_err(|error| SourceConfigError {
                    spec: self.to_string(),
                    message: error.to_string(),
                }),
        }
    }
}

impl FromStr for SourceConfig {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text.split_once('=') {
            Some(("prometheus", url)) if !url.is_empty() => {
                Ok(SourceConfig::Prometheus(PrometheusConfig::new(url)))
            }
            Some(("replay", directory)) if !directory.is_empty() => Ok(SourceConfig::Replay {
                directory: PathBuf::from(directory),
            }),
            _ => Err(format!(
                "unknown metric source {text:?}: expected {}",
                Self::CLI_FORMS
            )),
        }
    }
}

impl fmt::Display for SourceConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SourceConfig::Prometheus(config) => write!(f, "prometheus={}", config.url),
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
            "replay=fixtures/replay/healthy",
        ] {
            assert_eq!(form.parse::<SourceConfig>().unwrap().to_string(), form);
        }
    }

    #[test]
    fn unknown_forms_name_the_allowed_ones() {
        for form in ["graphite=http://x", "prometheus=", "replay", ""] {
            let error = form.parse::<SourceConfig>().unwrap_err();
            assert!(error.contains("prometheus=URL"), "{error}");
        }
    }
}
