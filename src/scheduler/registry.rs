//! The named metric sources and actuators analyses refer to, built once from the
//! settings (the composition root's plugins), each wrapped in retries and, inside
//! `canary serve`, in metrics. Workers look them up by the names stored with each
//! analysis.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use super::rollout::WorkerError;
use crate::actuators::Actuator;
use crate::actuators::retry::{RetryPolicy, RetryingActuator};
use crate::config::Settings;
use crate::sources::MetricSource;
use crate::telemetry::EngineMetrics;

/// The named metric sources and actuators that analyses refer to, built once from the
/// settings. An analysis can only use what is declared here.
#[derive(Clone, Default)]
pub struct Registry {
    sources: BTreeMap<String, Arc<dyn MetricSource>>,
    actuators: BTreeMap<String, Arc<dyn Actuator>>,
}

impl fmt::Debug for Registry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Registry")
            .field("sources", &self.sources.keys().collect::<Vec<_>>())
            .field("actuators", &self.actuators.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Builds every source and actuator the settings declare; the first that cannot be
    /// built is an error naming it. Each actuator retries and verifies its changes
    /// ([`RetryingActuator`]) for `[worker] actuation_deadline`.
    pub fn from_settings(settings: &Settings) -> Result<Self, WorkerError> {
        let policy = RetryPolicy {
            deadline: settings
                .worker
                .actuation_deadline_duration()
                .map_err(|error| WorkerError::Settings(error.0))?,
            ..RetryPolicy::default()
        };
        let mut registry = Self::new();
        for (name, config) in &settings.sources {
            let source = config
                .build()
                .map_err(|error| WorkerError::Settings(format!("sources.{name}: {error}")))?;
            registry = registry.with_source(name, source);
        }
        for (name, config) in &settings.actuators {
            let actuator = config
                .build()
                .map_err(|error| WorkerError::Settings(format!("actuators.{name}: {error}")))?;
            let actuator = RetryingActuator::new(Arc::from(actuator), policy);
            registry = registry.with_actuator(name, Arc::new(actuator));
        }
        Ok(registry)
    }

    /// Wraps every source and actuator so that each fetch and each flag change is timed,
    /// and each failure counted, in `metrics` under its name from the settings.
    pub fn instrumented(self, metrics: &Arc<EngineMetrics>) -> Self {
        use crate::telemetry::instrumented::{InstrumentedActuator, InstrumentedSource};
        Self {
            sources: self
                .sources
                .into_iter()
                .map(|(name, source)| {
                    let source: Arc<dyn MetricSource> =
                        Arc::new(InstrumentedSource::new(&name, source, Arc::clone(metrics)));
                    (name, source)
                })
                .collect(),
            actuators: self
                .actuators
                .into_iter()
                .map(|(name, actuator)| {
                    let actuator: Arc<dyn Actuator> = Arc::new(InstrumentedActuator::new(
                        &name,
                        actuator,
                        Arc::clone(metrics),
                    ));
                    (name, actuator)
                })
                .collect(),
        }
    }

    /// Adds (or replaces) the source called `name`.
    pub fn with_source(mut self, name: &str, source: Arc<dyn MetricSource>) -> Self {
        self.sources.insert(name.to_owned(), source);
        self
    }

    /// Adds (or replaces) the actuator called `name`.
    pub fn with_actuator(mut self, name: &str, actuator: Arc<dyn Actuator>) -> Self {
        self.actuators.insert(name.to_owned(), actuator);
        self
    }

    /// The source called `name`.
    pub fn source(&self, name: &str) -> Option<&Arc<dyn MetricSource>> {
        self.sources.get(name)
    }

    /// The actuator called `name`.
    pub fn actuator(&self, name: &str) -> Option<&Arc<dyn Actuator>> {
        self.actuators.get(name)
    }

    /// The declared source names, sorted.
    pub fn source_names(&self) -> impl Iterator<Item = &str> {
        self.sources.keys().map(String::as_str)
    }

    /// The declared actuator names, sorted.
    pub fn actuator_names(&self) -> impl Iterator<Item = &str> {
        self.actuators.keys().map(String::as_str)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_registry_from_settings_names_what_it_built_and_what_it_could_not() {
        let settings: Settings = toml::from_str(
            "[actuators.dry]\nkind = \"log-only\"\n[sources.recorded]\nkind = \"replay\"\ndirectory = \"fixtures/replay/healthy\"\n",
        )
        .unwrap();
        let registry = Registry::from_settings(&settings).unwrap();
        assert_eq!(registry.actuator_names().collect::<Vec<_>>(), ["dry"]);
        assert_eq!(registry.source_names().collect::<Vec<_>>(), ["recorded"]);
        let broken: Settings =
            toml::from_str("[sources.gone]\nkind = \"replay\"\ndirectory = \"/nonexistent\"\n")
                .unwrap();
        let error = Registry::from_settings(&broken).unwrap_err();
        assert!(error.to_string().contains("sources.gone"), "{error}");
    }
}
