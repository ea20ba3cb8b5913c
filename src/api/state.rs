//! What every handler shares: the store, the tokens, the clock, the metrics and the
//! server's shutdown signal.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::FromRef;

use super::auth::Authenticator;
use super::error::ApiError;
use crate::config::{Settings, SettingsError};
use crate::scheduler::{Clock, SystemClock};
use crate::store::{Store, StoreError};
use crate::telemetry::EngineMetrics;

/// The longest a long-poll (`?wait=`) holds a request; longer waits are cut to it.
pub const MAX_WAIT: Duration = Duration::from_secs(300);

/// What the handlers share: the store, the names callers may use, the tokens and the
/// metrics. Cheap to clone.
#[derive(Clone)]
pub struct ApiState {
    /// Where analyses are kept.
    pub store: Arc<dyn Store>,
    /// The bearer tokens and their scopes; without any, submissions and reads are open
    /// and manual actions refused.
    pub auth: Arc<Authenticator>,
    /// Names of the metric sources declared in settings.
    pub sources: Vec<String>,
    /// Names of the actuators declared in settings.
    pub actuators: Vec<String>,
    /// Each actuator name's owner key (the flag store it writes,
    /// [`ActuatorConfig::owner`](crate::actuators::ActuatorConfig::owner)): one active
    /// analysis per owner key and flag. A name missing here owns as `actuator:NAME`.
    pub actuator_owners: std::collections::BTreeMap<String, String>,
    /// Directory of `NAME.toml` profiles, read at each submission so an edited or
    /// added profile needs no restart.
    pub profiles_directory: PathBuf,
    /// The engine's metrics, shared with the workers.
    pub metrics: Arc<EngineMetrics>,
    /// "Now" for the store's timestamps.
    pub clock: Arc<dyn Clock>,
    /// How often a long-poll reads the store (default 200 ms). Reading the store, not
    /// an in-process signal, makes the wait see changes made by any instance.
    pub poll_interval: Duration,
    /// Fires when the server starts to stop: long-polls answer with the current state.
    pub shutdown: ShutdownSignal,
    /// The longest `/readyz`, `/metrics` and a submission wait for the store before a
    /// 503 (`[store] api_timeout`, default 2 s).
    pub store_timeout: Duration,
    /// The longest a client may take to send a body (`[server] body_read_timeout`,
    /// default 30 s); then 408.
    pub body_read_timeout: Duration,
    /// The label a bare Kayenta scope value selects on (`server.kayenta_scope_label`).
    pub kayenta_scope_label: Option<String>,
    /// Kayenta's API takes callers without a token (`server.kayenta_without_token`).
    pub kayenta_without_token: bool,
    /// Checks the signed promote and roll-back links, when the server signs them.
    pub action_links: Option<Arc<crate::notify::links::ActionLinks>>,
    /// `server.public_url`: the console accepts forms from its origin too, and sets
    /// `Secure` cookies when a request reaches its `https` host.
    pub public_url: Option<String>,
}

/// Resolves when the server begins to stop (see [`ShutdownSignal::stopped`]). Cheap to
/// clone.
#[derive(Clone, Debug)]
pub struct ShutdownSignal(Option<tokio::sync::watch::Receiver<bool>>);

impl ShutdownSignal {
    /// A signal that never fires (tests, and a state built before its server).
    pub fn never() -> Self {
        Self(None)
    }

    /// Fires when `receiver` reads `true`.
    pub fn on(receiver: tokio::sync::watch::Receiver<bool>) -> Self {
        Self(Some(receiver))
    }

    /// Whether the server is stopping.
    pub fn is_stopping(&self) -> bool {
        self.0.as_ref().is_some_and(|receiver| *receiver.borrow())
    }

    /// Completes once the server is stopping; never when its sender is gone first.
    pub async fn stopped(&self) {
        if let Some(receiver) = &self.0 {
            let mut receiver = receiver.clone();
            if receiver.wait_for(|stopping| *stopping).await.is_ok() {
                return;
            }
        }
        std::future::pending::<()>().await;
    }
}

impl ApiState {
    /// The state for `settings`, with the system clock. Tokens named by `token_env` are
    /// read from the process environment; an empty or missing one is an error naming
    /// its setting.
    pub fn new(
        store: Arc<dyn Store>,
        settings: &Settings,
        metrics: Arc<EngineMetrics>,
    ) -> Result<Self, SettingsError> {
        let tokens = settings
            .server
            .api_tokens(&|name| std::env::var(name).ok())?;
        Ok(Self {
            store,
            auth: Arc::new(Authenticator::new(
                tokens,
                settings.server.require_token_for_reads,
            )),
            sources: settings.sources.keys().cloned().collect(),
            actuators: settings.actuators.keys().cloned().collect(),
            actuator_owners: settings
                .actuators
                .iter()
                .map(|(name, config)| (name.clone(), config.owner(name)))
                .collect(),
            profiles_directory: settings.profiles.directory.clone(),
            metrics,
            clock: Arc::new(SystemClock),
            poll_interval: Duration::from_millis(200),
            shutdown: ShutdownSignal::never(),
            store_timeout: settings.store.api_timeout_duration()?,
            body_read_timeout: settings.server.body_read_duration()?,
            kayenta_scope_label: settings.server.kayenta_scope_label()?,
            kayenta_without_token: settings.server.kayenta_without_token,
            action_links: crate::notify::links::ActionLinks::from_settings(
                &settings.server,
                &|name| std::env::var(name).ok(),
            )?
            .map(Arc::new),
            public_url: settings.server.public_url.clone(),
        })
    }

    /// Runs a store call for a path that must answer fast (health, metrics, submit):
    /// a store that does not answer within [`ApiState::store_timeout`] is a 503.
    pub(crate) async fn bounded_store_call<T>(
        &self,
        call: impl std::future::Future<Output = Result<T, StoreError>>,
    ) -> Result<T, ApiError> {
        match tokio::time::timeout(self.store_timeout, call).await {
            Ok(result) => result.map_err(ApiError::from),
            Err(_) => Err(ApiError::Unavailable(format!(
                "the store did not answer within {} s",
                self.store_timeout.as_secs_f64()
            ))),
        }
    }
}

/// The tokens, for the `Authorized` extractor.
impl FromRef<ApiState> for Arc<Authenticator> {
    fn from_ref(state: &ApiState) -> Self {
        Arc::clone(&state.auth)
    }
}
