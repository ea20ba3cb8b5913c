//! Workers: run stored analyses one look at a time, so that any number of `canary serve`
//! instances can share them through the store and a worker that dies loses nothing.
//!
//! A worker's unit of work is [`Worker::try_execute_task`]: claim the due analyses it
//! has room for (with leases), and for each, concurrently and bounded by a semaphore of
//! `concurrency` permits, rebuild the rollout from what the store keeps (the profile
//! *snapshot* taken at submission, the named source and actuator, the runner's
//! snapshot), take ONE step — start it, take one look, or carry out a person's promote
//! or rollback — and write the outcome back with [`Store::record_look`] before releasing
//! the lease. It is public so tests drive a rollout look by look on a manual clock;
//! [`Worker::run_until_stopped`] is the loop `canary serve` runs.
//!
//! **Exactly-once actuation.** The runner makes its flag changes through
//! [`RecordedWrites`]: intent → apply → complete. It writes an intent with an
//! idempotency key derived from the step (`"{analysis}:{look}:{action}:{target}"`)
//! before touching the flag, skips the call when that key is already `Applied`, and
//! records the outcome: a successor that replays the look of a worker that died between
//! the flag change and `record_look` finds the change done. Only the lease holder may
//! write an intent, so a worker presumed dead cannot actuate either.
//!
//! One bad analysis never stops a worker: it is marked `Failed` (or `RollbackFailed`)
//! with the reason and logged loudly. A store that fails makes the step count for
//! nothing; the look is taken again once the lease is free.
//!
//! This module must not read profile files (an analysis runs the profile it was
//! submitted with) nor name concrete sources or actuators (they come in a [`Registry`]).

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tracing::Instrument;
use uuid::Uuid;

use super::clock::Clock;
use super::records::{Decision, RolloutStatus, RunnerState};
use super::registry::Registry;
use super::rollout::{Override, Rollout, RunError, WorkerError};
use super::runner::RolloutRunner;
use super::scopes::Scopes;
use super::writes::{FlagWriter, WriteError};
use crate::actuators::{Actuator, ActuatorError, FlagChange, FlagState};
use crate::config::WorkerSettings;
use crate::domain::{Percentage, Profile};
use crate::notify::links::ActionLinks;
use crate::notify::{Notification, Notifications};
use crate::sources::MetricSource;
use crate::store::{
    ActuationOutcome, ActuationRecord, ActuationState, Analysis, AnalysisState, AuditAction,
    LookRecord, LookUpdate, NewActuation, Snapshot, Store, StoreError,
};
use crate::telemetry::EngineMetrics;

/// How a worker works.
#[derive(Debug, Clone, PartialEq)]
pub struct WorkerOptions {
    /// This worker's name in leases and logs; unique among the instances sharing a store.
    pub id: String,
    /// Analyses stepped at once (at least 1).
    pub concurrency: usize,
    /// How long a claim lasts without renewal, in analysis time (the clock's seconds).
    pub lease: Duration,
    /// How long an idle [`Worker::run_until_stopped`] waits before claiming again
    /// (tokio time).
    pub poll_interval: Duration,
    /// How long after a rollback failed it is tried again, in analysis time.
    pub rollback_retry: Duration,
}

impl WorkerOptions {
    /// The options `[worker]` settings give; the id defaults to host name and process id.
    pub fn from_settings(settings: &WorkerSettings) -> Result<Self, WorkerError> {
        let setting = |error: crate::config::SettingsError| WorkerError::Settings(error.0);
        Ok(Self {
            id: settings.id.clone().unwrap_or_else(default_worker_id),
            concurrency: settings.concurrency.max(1),
            lease: settings.lease_duration().map_err(setting)?,
            poll_interval: settings.poll_duration().map_err(setting)?,
            rollback_retry: settings.rollback_retry_duration().map_err(setting)?,
        })
    }
}

/// `HOST-PID`, so two instances on one machine differ.
fn default_worker_id() -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|name| name.trim().to_owned())
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "canary".to_owned());
    format!("{host}-{}", std::process::id())
}

/// Runs stored analyses; see the module documentation. Cloning is cheap and clones share
/// the concurrency limit.
#[derive(Clone)]
pub struct Worker {
    inner: Arc<Inner>,
    /// The engine's metrics, when the worker runs inside `canary serve`.
    metrics: Option<Arc<EngineMetrics>>,
    /// The server's public URL, which flag changes and notifications link to.
    public_url: Option<Arc<str>>,
    /// Where rollbacks, reviews and promotions are announced.
    notifications: Option<Notifications>,
    /// Signs the promote and roll-back links notifications carry.
    action_links: Option<Arc<ActionLinks>>,
}

struct Inner {
    store: Arc<dyn Store>,
    registry: Arc<Registry>,
    clock: Arc<dyn Clock>,
    options: WorkerOptions,
    permits: Arc<Semaphore>,
}

impl fmt::Debug for Worker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Worker")
            .field("options", &self.inner.options)
            .field("registry", &self.inner.registry)
            .finish()
    }
}

/// What one step of one analysis came to.
enum Stepped {
    /// The outcome is recorded.
    Recorded,
    /// Nothing was recorded (the lease was lost, the analysis moved, the store failed).
    Dropped,
}

impl Worker {
    /// A worker taking analyses from `store`, with the sources and actuators of
    /// `registry`, on `clock`.
    pub fn new(
        store: Arc<dyn Store>,
        registry: Arc<Registry>,
        clock: Arc<dyn Clock>,
        mut options: WorkerOptions,
    ) -> Self {
        options.concurrency = options.concurrency.max(1);
        let permits = Arc::new(Semaphore::new(options.concurrency));
        Self {
            inner: Arc::new(Inner {
                store,
                registry,
                clock,
                options,
                permits,
            }),
            metrics: None,
            public_url: None,
            notifications: None,
            action_links: None,
        }
    }

    /// Links flag changes (webhooks) and notifications to the analysis at `public_url`
    /// (`[server] public_url`): `{public_url}/v1/analyses/{id}`.
    #[must_use]
    pub fn links_to(mut self, public_url: &str) -> Self {
        self.public_url = Some(public_url.trim_end_matches('/').into());
        self
    }

    /// Puts signed promote and roll-back links into the notifications that need a
    /// person's decision (`[server] action_link_secret_env`).
    #[must_use]
    pub fn action_links(mut self, links: Arc<ActionLinks>) -> Self {
        self.action_links = Some(links);
        self
    }

    /// Announces every analysis that ends (or waits for a person) through
    /// `notifications`: rollbacks and failed rollbacks as critical, reviews as warnings,
    /// promotions as info.
    #[must_use]
    pub fn notify_with(mut self, notifications: Notifications) -> Self {
        self.notifications = Some(notifications);
        self
    }

    /// Where a person reads `analysis`, when the public URL is known.
    fn analysis_url(&self, analysis: Uuid) -> Option<String> {
        self.public_url
            .as_ref()
            .map(|base| format!("{base}/v1/analyses/{analysis}"))
    }

    /// Reports verdicts and interval lateness to `metrics` (what `/metrics` exposes).
    #[must_use]
    pub fn report_to(mut self, metrics: Arc<EngineMetrics>) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// This worker's id.
    pub fn id(&self) -> &str {
        &self.inner.options.id
    }

    /// Claims the due analyses there is room for, takes one step of each (concurrently)
    /// and records it. Returns how many steps were recorded. Fails only when claiming
    /// fails; a step that cannot be recorded is logged and taken again later.
    pub async fn try_execute_task(&self) -> Result<usize, WorkerError> {
        let claims = self.claim().await?;
        let mut steps = JoinSet::new();
        for (analysis, permit) in claims {
            let worker = self.clone();
            steps.spawn(async move {
                let stepped = worker.execute(analysis).await;
                drop(permit);
                stepped
            });
        }
        let mut recorded = 0;
        while let Some(outcome) = steps.join_next().await {
            match outcome {
                Ok(Stepped::Recorded) => recorded += 1,
                Ok(Stepped::Dropped) => {}
                Err(error) => tracing::error!(
                    worker = %self.id(),
                    error = %error,
                    "a step panicked; its lease expires and another worker takes the analysis"
                ),
            }
        }
        Ok(recorded)
    }

    /// Steps analyses until `shutdown` completes: claims while there is room (waiting
    /// `poll_interval` when nothing is due), then stops claiming, lets the running steps
    /// finish (each releases its lease) and returns.
    pub async fn run_until_stopped(self, shutdown: impl Future<Output = ()>) {
        tokio::pin!(shutdown);
        let mut steps = JoinSet::new();
        tracing::info!(worker = %self.id(), concurrency = self.inner.options.concurrency, "worker started");
        loop {
            while let Some(outcome) = steps.try_join_next() {
                if let Err(error) = outcome {
                    tracing::error!(worker = %self.id(), error = %error, "a step panicked");
                }
            }
            let wanted = self.inner.permits.available_permits();
            // A claim waits for the store; with the store gone that is the pool's whole
            // acquire timeout, so shutdown does not wait for it. A claim dropped after
            // its transaction committed leaves leases that expire, as a killed worker's do.
            let claimed = tokio::select! {
                biased;
                () = &mut shutdown => break,
                claimed = self.claim() => claimed,
            };
            let saturated = match claimed {
                Ok(claims) => {
                    let claimed = claims.len();
                    for (analysis, permit) in claims {
                        let worker = self.clone();
                        steps.spawn(async move {
                            worker.execute(analysis).await;
                            drop(permit);
                        });
                    }
                    claimed > 0 && claimed == wanted
                }
                Err(error) => {
                    tracing::warn!(worker = %self.id(), error = %error, "could not claim analyses; trying again");
                    false
                }
            };
            tokio::select! {
                () = &mut shutdown => break,
                // Every permit is taken: claim again as soon as a step ends.
                Some(_) = steps.join_next(), if saturated => {}
                () = tokio::time::sleep(self.inner.options.poll_interval), if !saturated => {}
            }
        }
        tracing::info!(worker = %self.id(), running = steps.len(), "worker stopping: finishing running steps");
        while let Some(outcome) = steps.join_next().await {
            if let Err(error) = outcome {
                tracing::error!(worker = %self.id(), error = %error, "a step panicked");
            }
        }
        tracing::info!(worker = %self.id(), "worker stopped");
    }

    /// Leases as many due analyses as there are free permits, each with its permit.
    async fn claim(&self) -> Result<Vec<(Analysis, OwnedSemaphorePermit)>, WorkerError> {
        let mut permits = Vec::new();
        while let Ok(permit) = Arc::clone(&self.inner.permits).try_acquire_owned() {
            permits.push(permit);
        }
        if permits.is_empty() {
            return Ok(Vec::new());
        }
        let limit = u32::try_from(permits.len()).unwrap_or(u32::MAX);
        let claimed = self
            .inner
            .store
            .claim_due(
                self.id(),
                self.inner.clock.now(),
                self.inner.options.lease,
                limit,
            )
            .await?;
        // Permits beyond the claimed analyses are dropped here, freeing them.
        Ok(claimed.into_iter().zip(permits).collect())
    }

    /// One step of one claimed analysis, with the lease renewed while it runs and
    /// released after.
    async fn execute(&self, analysis: Analysis) -> Stepped {
        let id = analysis.id;
        // The span follows this future only (`instrument`): a guard entered here and
        // held across an `.await` would become the parent of whatever else the thread
        // polled meanwhile, and other analyses' lines would carry this id (issue 13).
        let span = tracing::info_span!("step", analysis = %id, worker = %self.id());
        async move {
            let outcome = self.renewing_lease(id, self.step(analysis)).await;
            self.settle(id, outcome).await
        }
        .instrument(span)
        .await
    }

    /// Logs how a step ended and releases its lease.
    async fn settle(&self, id: Uuid, outcome: Result<(), WorkerError>) -> Stepped {
        let stepped = match outcome {
            Ok(()) => Stepped::Recorded,
            Err(WorkerError::Store(StoreError::LeaseLost { .. })) => {
                tracing::warn!(
                    "lost the lease during the step: another worker continues the analysis"
                );
                Stepped::Dropped
            }
            Err(WorkerError::Store(StoreError::Conflict(message))) => {
                tracing::info!(%message, "the analysis changed during the step (a manual action?): it is stepped again");
                Stepped::Dropped
            }
            Err(error) => {
                tracing::error!(error = %error, "step not recorded; it is taken again later");
                Stepped::Dropped
            }
        };
        if let Err(error) = self.inner.store.release(id, self.id()).await {
            tracing::warn!(error = %error, "could not release the lease; it expires on its own");
        }
        stepped
    }

    /// Runs `work`, renewing the lease on `id` every third of a lease meanwhile, so a slow
    /// step (a slow source, a slow flag store) keeps its analysis.
    ///
    /// The renewals run *beside* the work, never instead of it: a renewal can wait on the
    /// row lock of the step's own write transaction, and if the work were not polled
    /// while it waits, that transaction could never commit (a deadlock between the two).
    async fn renewing_lease<T>(&self, id: Uuid, work: impl Future<Output = T>) -> T {
        let inner = &self.inner;
        let lease = inner.options.lease;
        let renewals = async {
            loop {
                let renew_at = inner.clock.now() + lease.as_secs_f64() / 3.0;
                inner.clock.sleep_until(renew_at).await;
                match inner
                    .store
                    .renew_lease(id, self.id(), inner.clock.now(), lease)
                    .await
                {
                    Ok(expires) => tracing::debug!(analysis = %id, expires, "lease renewed"),
                    Err(error) => {
                        tracing::warn!(analysis = %id, error = %error, "could not renew the lease");
                        // Once lost it stays lost: the step's writes will be refused.
                        if matches!(error, StoreError::LeaseLost { .. }) {
                            break;
                        }
                    }
                }
            }
            std::future::pending::<()>().await;
        };
        tokio::select! {
            output = work => output,
            () = renewals => unreachable!("the renewals never end on their own"),
        }
    }

    /// Ends an analysis that cannot be run (a bad profile snapshot, an unknown source,
    /// a rollout that cannot start) as `Failed` with the reason.
    async fn fail(&self, analysis: &Analysis, now: f64, reason: String) -> Result<(), WorkerError> {
        self.end(analysis, now, AnalysisState::Failed, reason, None)
            .await
    }

    /// Rebuilds the analysis's rollout and runner, takes one step and records it.
    async fn step(&self, analysis: Analysis) -> Result<(), WorkerError> {
        let now = self.inner.clock.now();
        let prepared = match self.prepare(&analysis) {
            Ok(prepared) => prepared,
            Err(reason) => {
                return self
                    .end(&analysis, now, AnalysisState::Failed, reason, None)
                    .await;
            }
        };
        if let Some(action) = analysis.requested_action {
            return self
                .carry_out_override(&analysis, prepared, now, action)
                .await;
        }
        if analysis.state == AnalysisState::RollbackFailed {
            return self.retry_rollback(&analysis, prepared, now).await;
        }
        match prepared.state.clone() {
            None => self.start(&analysis, prepared, now).await,
            Some(state) => self.look(&analysis, prepared, state, now).await,
        }
    }

    /// Everything an analysis needs, from the store's record and the registry. An error
    /// is the reason the analysis cannot run.
    fn prepare(&self, analysis: &Analysis) -> Result<Prepared, String> {
        let source = self
            .inner
            .registry
            .source(&analysis.source)
            .ok_or_else(|| format!("no metric source is named {:?}", analysis.source))?;
        let actuator = self
            .inner
            .registry
            .actuator(&analysis.actuator)
            .ok_or_else(|| format!("no actuator is named {:?}", analysis.actuator))?;
        let profile = Profile::parse(
            &analysis.profile_text,
            &format!(
                "profile {:?} of analysis {}",
                analysis.profile_name, analysis.id
            ),
        )
        .map_err(|error| error.to_string())?;
        let state = match &analysis.runner_state {
            Snapshot::None => None,
            Snapshot::Unreadable { error, .. } => {
                return Err(format!("the stored runner state cannot be read: {error}"));
            }
            Snapshot::State(state) => {
                let mut state: RunnerState = state.as_ref().clone();
                // A person resumed a rollout that was waiting for review: it looks again, its
                // hold timeout starts over, and a hold trigger that fired is decided on.
                if analysis.state == AnalysisState::Running
                    && state.status == RolloutStatus::AwaitingReview
                {
                    state.status = RolloutStatus::Running;
                    state.hold_since = None;
                    state.held_for_review = None;
                }
                Some(state)
            }
        };
        Ok(Prepared {
            rollout: Rollout {
                profile: Arc::new(profile),
                flag: analysis.flag.clone(),
                scopes: Scopes::from_matchers(&analysis.baseline_scope, &analysis.canary_scope),
                dry_run: analysis.dry_run,
            },
            source: Arc::clone(source),
            actuator: Arc::clone(actuator),
            state,
        })
    }

    /// Where the runner's flag changes go for one step: every change recorded under a
    /// key made from `occasion`.
    fn recorded_writes(
        &self,
        analysis: &Analysis,
        prepared: &Prepared,
        occasion: String,
    ) -> Arc<RecordedWrites> {
        Arc::new(RecordedWrites {
            report_url: self.analysis_url(analysis.id),
            ..RecordedWrites::new(
                Arc::clone(&prepared.actuator),
                Arc::clone(&self.inner.store),
                Arc::clone(&self.inner.clock),
                self.id(),
                analysis.id,
                &occasion,
            )
        })
    }

    /// A never-started analysis: healthchecks, preflight, first stage's traffic.
    async fn start(
        &self,
        analysis: &Analysis,
        prepared: Prepared,
        now: f64,
    ) -> Result<(), WorkerError> {
        let first_interval = prepared
            .rollout
            .profile
            .plan
            .as_ref()
            .and_then(|plan| plan.stages.first())
            .map_or(0.0, |stage| stage.interval.seconds());
        let at = step_time(
            analysis.next_look_at,
            now,
            first_interval,
            prepared.source.recorded_range().is_some(),
        );
        let writes = self.recorded_writes(analysis, &prepared, "0".to_owned());
        let mut runner =
            match RolloutRunner::new(prepared.rollout, prepared.source, prepared.actuator) {
                Ok(runner) => runner.writing_through(writes).with_adopt(analysis.adopt),
                Err(error) => {
                    return self.fail(analysis, now, error.to_string()).await;
                }
            };
        if let Err(error) = runner.start(at).await {
            let error = unless_store_failed(error)?;
            return self
                .fail(analysis, now, format!("could not start: {error}"))
                .await;
        }
        let stage = runner.stage();
        let adopted = match runner.adopted_share() {
            Some(share) => format!(", the flag adopted at {share} and left there"),
            None if analysis.adopt && runner.stage_index() > 0 => {
                ", the flag adopted at its share".to_owned()
            }
            None => String::new(),
        };
        let update = LookUpdate {
            look: None,
            state: AnalysisState::Running,
            current_stage: Some(runner.stage_index()),
            traffic: Some(runner.traffic().value()),
            latest_verdict: None,
            reasons: vec![format!(
                "started: stage {} at {}{adopted}{}",
                stage.name,
                stage.traffic,
                if analysis.dry_run {
                    " (dry run: the flag was not changed)"
                } else {
                    ""
                }
            )],
            runner_state: snapshot(&runner),
            next_look_at: Some(runner.next_look_at()),
        };
        self.record(analysis, now, update).await
    }

    /// A started analysis: one look.
    async fn look(
        &self,
        analysis: &Analysis,
        prepared: Prepared,
        state: RunnerState,
        now: f64,
    ) -> Result<(), WorkerError> {
        let occasion = (state.looks + 1).to_string();
        let writes = self.recorded_writes(analysis, &prepared, occasion);
        let recorded = prepared.source.recorded_range().is_some();
        let mut runner = match RolloutRunner::resume(
            prepared.rollout,
            state,
            prepared.source,
            prepared.actuator,
        ) {
            Ok(runner) => runner.writing_through(writes),
            Err(error) => {
                return self.fail(analysis, now, error.to_string()).await;
            }
        };
        if !matches!(
            runner.status(),
            RolloutStatus::Running | RolloutStatus::AwaitingReview
        ) {
            // The snapshot says the rollout ended but the analysis is still claimable:
            // record what the snapshot says.
            let state = analysis_state(runner.status());
            let reason = format!("the rollout had already ended: {}", state.as_str());
            return self.end(analysis, now, state, reason, Some(&runner)).await;
        }
        let due = runner.next_look_at();
        let at = step_time(Some(due), now, runner.stage().interval.seconds(), recorded);
        let record = match runner.take_look(at).await {
            Ok(record) => record.clone(),
            Err(error) => {
                let error = unless_store_failed(error)?;
                return self.step_failed(analysis, now, &runner, error).await;
            }
        };
        if let Some(metrics) = &self.metrics {
            metrics.record_verdict(&record.verdict.to_string());
            // How long after its due time the look ran: the figure that shows an
            // overloaded instance. Measured from the due time, not the look's time (a
            // look more than an interval late runs at "now"), and not for replays, whose
            // due times are in the recording's past.
            if !recorded {
                metrics.observe_interval_lateness(now - due);
            }
        }
        let status = runner.status();
        let update = LookUpdate {
            look: Some(LookRecord::of(analysis.id, &record)),
            state: analysis_state(status),
            current_stage: Some(runner.stage_index()),
            traffic: Some(traffic(&runner)),
            latest_verdict: Some(record.verdict),
            reasons: record.reasons.clone(),
            runner_state: snapshot(&runner),
            // A rollout waiting for a person still looks, for its rollback triggers.
            next_look_at: matches!(
                status,
                RolloutStatus::Running | RolloutStatus::AwaitingReview
            )
            .then(|| runner.next_look_at()),
        };
        match status {
            RolloutStatus::Running => {}
            RolloutStatus::AwaitingReview if analysis.state == AnalysisState::AwaitingReview => {}
            RolloutStatus::RolledBack => {
                tracing::warn!(look = record.look, reasons = ?record.reasons, "rolled back")
            }
            _ => tracing::info!(look = record.look, status = ?status, "rollout ended"),
        }
        let starts_rolling_back = matches!(record.decision, Decision::ReduceTraffic { .. })
            && runner.rolling_back().map(|r| r.steps_done) == Some(1);
        let recorded = self.record_returning(analysis, now, update).await?;
        // A progressive rollback ends minutes after it was decided: people on call hear
        // of it when it starts, not only when it ends.
        if starts_rolling_back {
            let url = self.analysis_url(analysis.id);
            self.announce(Notification::rolling_back(&recorded, url, now));
        }
        Ok(())
    }

    /// A step the runner could not finish: a flag store that is down is tried again at
    /// the next interval (from the same snapshot, so the look is taken again); a kill
    /// switch that failed is `RollbackFailed`; anything else fails the analysis.
    async fn step_failed(
        &self,
        analysis: &Analysis,
        now: f64,
        runner: &RolloutRunner,
        error: RunError,
    ) -> Result<(), WorkerError> {
        match &error {
            RunError::Actuator { rollback: true, .. } => {
                tracing::error!(error = %error, "THE KILL SWITCH FAILED: the canary may still serve traffic");
                self.end(
                    analysis,
                    now,
                    AnalysisState::RollbackFailed,
                    error.to_string(),
                    Some(runner),
                )
                .await
            }
            RunError::Actuator {
                error: ActuatorError::Unavailable { .. },
                ..
            } => {
                let retry_at = now + runner.stage().interval.seconds();
                tracing::warn!(error = %error, retry_at, "flag store unavailable; the look is taken again");
                let update = LookUpdate {
                    look: None,
                    state: analysis.state,
                    current_stage: analysis.current_stage,
                    traffic: analysis.traffic,
                    latest_verdict: analysis.latest_verdict,
                    reasons: vec![format!("{error}; trying again at the next interval")],
                    runner_state: analysis.runner_state.clone(),
                    next_look_at: Some(retry_at),
                };
                self.record(analysis, now, update).await
            }
            _ => {
                self.end(
                    analysis,
                    now,
                    AnalysisState::Failed,
                    error.to_string(),
                    Some(runner),
                )
                .await
            }
        }
    }

    /// A person's promote or rollback, which the API left for a worker.
    async fn carry_out_override(
        &self,
        analysis: &Analysis,
        prepared: Prepared,
        now: f64,
        action: AuditAction,
    ) -> Result<(), WorkerError> {
        let action_override = match action {
            AuditAction::Promote => Override::Promote,
            AuditAction::Rollback => Override::Rollback,
            AuditAction::Pause | AuditAction::Resume => {
                return Err(WorkerError::Analysis {
                    id: analysis.id,
                    reason: format!("{} is not a request for a worker", action.as_str()),
                });
            }
        };
        let audit = self.inner.store.audit_log(analysis.id).await?;
        let (actor, reason) = audit
            .iter()
            .rev()
            .find(|entry| entry.action == action)
            .map_or(("someone", "no reason recorded"), |entry| {
                (entry.actor.as_str(), entry.reason.as_str())
            });
        // Keyed by the number of manual actions so far: a replay of this override finds
        // its own key, a later override of the same kind gets a new one.
        let occasion = format!("manual{}", audit.len());
        let writes = self.recorded_writes(analysis, &prepared, occasion);
        let mut runner = match runner_from(prepared, writes) {
            Ok(runner) => runner,
            Err(error) => {
                return self.fail(analysis, now, error.to_string()).await;
            }
        };
        match runner
            .apply_override(now, action_override, actor, reason)
            .await
        {
            Ok(recorded) => {
                let update = LookUpdate {
                    look: None,
                    state: analysis_state(runner.status()),
                    current_stage: Some(runner.stage_index()),
                    traffic: Some(traffic(&runner)),
                    latest_verdict: analysis.latest_verdict,
                    reasons: vec![recorded],
                    runner_state: snapshot(&runner),
                    next_look_at: None,
                };
                self.record(analysis, now, update).await
            }
            Err(error) => {
                let error = unless_store_failed(error)?;
                let state = match action_override {
                    Override::Rollback => AnalysisState::RollbackFailed,
                    Override::Promote => AnalysisState::Failed,
                };
                self.end(
                    analysis,
                    now,
                    state,
                    format!("manual {} failed: {error}", action.as_str()),
                    Some(&runner),
                )
                .await
            }
        }
    }

    /// Pulls the kill switch of a `RollbackFailed` analysis again: `RolledBack` when it
    /// works, `RollbackFailed` (due again after `rollback_retry`) when it does not.
    async fn retry_rollback(
        &self,
        analysis: &Analysis,
        prepared: Prepared,
        now: f64,
    ) -> Result<(), WorkerError> {
        let failed_since = self
            .inner
            .store
            .list_actuations(analysis.id)
            .await?
            .iter()
            .filter(|a| a.action == "kill" && a.state == ActuationState::Failed)
            .map(|a| a.at)
            .fold(analysis.updated_at, f64::min);
        // Every retry shares one key; each failed attempt moves it to the next suffix.
        let writes = self.recorded_writes(analysis, &prepared, "rollback-retry".to_owned());
        let mut runner = match runner_from(prepared, writes) {
            Ok(runner) => runner,
            Err(error) => {
                // The rollout cannot be rebuilt, so the kill switch cannot be pulled from
                // here: the analysis stays RollbackFailed, for a person.
                return self
                    .end(
                        analysis,
                        now,
                        AnalysisState::RollbackFailed,
                        format!("the rollback cannot be retried: {error}"),
                        None,
                    )
                    .await;
            }
        };
        match runner.retry_rollback(now, failed_since).await {
            Ok(reason) => {
                let mut reasons = vec![reason];
                reasons.extend(analysis.reasons.iter().cloned());
                let update = LookUpdate {
                    look: None,
                    state: AnalysisState::RolledBack,
                    current_stage: Some(runner.stage_index()),
                    traffic: Some(traffic(&runner)),
                    latest_verdict: analysis.latest_verdict,
                    reasons,
                    runner_state: snapshot(&runner),
                    next_look_at: None,
                };
                self.record(analysis, now, update).await
            }
            Err(error) => {
                let error = unless_store_failed(error)?;
                self.end(
                    analysis,
                    now,
                    AnalysisState::RollbackFailed,
                    format!("THE ROLLBACK STILL FAILS: {error}"),
                    Some(&runner),
                )
                .await
            }
        }
    }

    /// Records that the analysis ended in `state` for `reason` (a failure, or a final
    /// state a snapshot already had), loudly when it failed. A `RollbackFailed`
    /// analysis is due again after `rollback_retry`: its rollback is retried until it
    /// works.
    async fn end(
        &self,
        analysis: &Analysis,
        now: f64,
        state: AnalysisState,
        reason: String,
        runner: Option<&RolloutRunner>,
    ) -> Result<(), WorkerError> {
        if matches!(state, AnalysisState::Failed | AnalysisState::RollbackFailed) {
            tracing::error!(state = %state, reason = %reason, "analysis failed");
        }
        let runner_state = match runner {
            Some(runner) => snapshot(runner),
            None => analysis.runner_state.clone(),
        };
        let retry_in = self.inner.options.rollback_retry.as_secs_f64();
        let next_look_at = (state == AnalysisState::RollbackFailed).then_some(now + retry_in);
        let reason = if next_look_at.is_some() {
            format!(
                "{reason}; the kill switch is tried again every {} s until it works",
                crate::format::number(retry_in)
            )
        } else {
            reason
        };
        let update = LookUpdate {
            look: None,
            state,
            current_stage: analysis.current_stage,
            traffic: analysis.traffic,
            latest_verdict: analysis.latest_verdict,
            reasons: vec![reason],
            runner_state,
            next_look_at,
        };
        self.record(analysis, now, update).await
    }

    async fn record(
        &self,
        analysis: &Analysis,
        now: f64,
        update: LookUpdate,
    ) -> Result<(), WorkerError> {
        self.record_returning(analysis, now, update).await.map(drop)
    }

    /// [`Self::record`], returning the analysis as recorded.
    async fn record_returning(
        &self,
        analysis: &Analysis,
        now: f64,
        update: LookUpdate,
    ) -> Result<Analysis, WorkerError> {
        // The clock may have moved while the step ran; the lease is checked at write time.
        let written_at = self.inner.clock.now().max(now);
        let recorded = self
            .inner
            .store
            .record_look(analysis.id, self.id(), analysis.version, written_at, update)
            .await?;
        if recorded.state != analysis.state {
            self.notify(&recorded, written_at);
        }
        Ok(recorded)
    }

    /// Tells the people on call that `analysis` reached its state (rolled back, rollback
    /// failed, awaiting review, failed, promoted), in the background: a slow chat
    /// service never holds up a step, and a failed notification never fails one.
    fn notify(&self, analysis: &Analysis, at: f64) {
        let url = self.analysis_url(analysis.id);
        if let Some(mut notification) = Notification::for_state(analysis, url, at) {
            if let Some(links) = &self.action_links {
                notification.action_urls =
                    links.urls(&notification.analysis_id, &notification.state, at);
            }
            self.announce(notification);
        }
    }

    /// Sends `notification` in the background, when notifiers are configured.
    fn announce(&self, notification: Notification) {
        if let Some(notifications) = &self.notifications {
            let notifications = notifications.clone();
            let metrics = self.metrics.clone();
            tokio::spawn(async move {
                let delivery = notifications.send(notification).await;
                if let Some(metrics) = metrics {
                    metrics.observe_notification(
                        &delivery.delivered,
                        &delivery.failed,
                        delivery.suppressed,
                    );
                }
            });
        }
    }
}

/// An analysis rebuilt from the store.
struct Prepared {
    rollout: Rollout,
    source: Arc<dyn MetricSource>,
    actuator: Arc<dyn Actuator>,
    state: Option<RunnerState>,
}

/// When to take a step that was due at `due`: then, so that a worker that is a little
/// late (or a successor replaying a look) decides exactly as an on-time one would; but
/// at `now` when it is more than an interval late (after a pause or an outage), so the
/// look judges current data instead of replaying history look by look. A recorded
/// source (a replay) is its own clock: its looks are always taken at their due times.
fn step_time(due: Option<f64>, now: f64, interval: f64, recorded: bool) -> f64 {
    match due {
        Some(due) if recorded || now - due <= interval => due,
        _ => now,
    }
}

fn analysis_state(status: RolloutStatus) -> AnalysisState {
    match status {
        RolloutStatus::Running => AnalysisState::Running,
        RolloutStatus::Promoted => AnalysisState::Promoted,
        RolloutStatus::RolledBack => AnalysisState::RolledBack,
        RolloutStatus::AwaitingReview => AnalysisState::AwaitingReview,
    }
}

/// The canary's traffic where the runner stands.
fn traffic(runner: &RolloutRunner) -> f64 {
    runner.traffic().value()
}

/// The runner of a prepared analysis, resumed from its snapshot when it has one,
/// writing the flag through `writes`.
fn runner_from(prepared: Prepared, writes: Arc<RecordedWrites>) -> Result<RolloutRunner, RunError> {
    let (rollout, source, actuator) = (prepared.rollout, prepared.source, prepared.actuator);
    let runner = match prepared.state {
        Some(state) => RolloutRunner::resume(rollout, state, source, actuator),
        None => RolloutRunner::new(rollout, source, actuator),
    };
    Ok(runner?.writing_through(writes))
}

/// A step's error, unless it is canary's own store failing to record a flag change:
/// then the step counts for nothing (it is taken again), and is not the analysis's
/// failure.
fn unless_store_failed(error: RunError) -> Result<RunError, WorkerError> {
    match error {
        RunError::Store(error) => Err(WorkerError::Store(error)),
        error => Ok(error),
    }
}

fn snapshot(runner: &RolloutRunner) -> Snapshot {
    Snapshot::of(runner.snapshot())
}

/// A worker's flag changes for one step of one analysis, each made exactly once
/// across workers (see the module documentation): intent → apply → complete.
pub struct RecordedWrites {
    actuator: Arc<dyn Actuator>,
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    worker: String,
    analysis: Uuid,
    /// The look number (`0` for the start, `manualN` for an override) in the key.
    occasion: String,
    /// Where a person reads the analysis, sent with each change.
    report_url: Option<String>,
}

impl RecordedWrites {
    /// Changes through `actuator` for the step `occasion` (a look number, `0` for the
    /// start) of `analysis`, taken by `worker`, which must hold its lease.
    pub fn new(
        actuator: Arc<dyn Actuator>,
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        worker: &str,
        analysis: Uuid,
        occasion: &str,
    ) -> Self {
        Self {
            actuator,
            store,
            clock,
            worker: worker.to_owned(),
            analysis,
            occasion: occasion.to_owned(),
            report_url: None,
        }
    }

    /// The idempotency key of a change: `"{analysis}:{occasion}:{action}:{target}"`.
    pub fn idempotency_key(&self, action: &str, target: Percentage) -> String {
        format!(
            "{}:{}:{action}:{}",
            self.analysis,
            self.occasion,
            target.value()
        )
    }

    /// Records the intent to make `change` at `at` under the first free key (keys are
    /// single-use: after a failed attempt the retry gets the next suffix).
    async fn intend(&self, change: &FlagChange, at: f64) -> Result<ActuationRecord, StoreError> {
        let action = change.action.name();
        let base = self.idempotency_key(action, change.action.target());
        let mut attempt = 1;
        loop {
            let idempotency_key = if attempt == 1 {
                base.clone()
            } else {
                format!("{base}:attempt{attempt}")
            };
            let intent = NewActuation {
                analysis_id: self.analysis,
                idempotency_key,
                action: action.to_owned(),
                target: change.action.target().value(),
                at,
            };
            let record = self
                .store
                .intend_actuation(&self.worker, self.clock.now(), intent)
                .await?;
            if record.state != ActuationState::Failed {
                return Ok(record);
            }
            attempt += 1;
        }
    }
}

#[async_trait]
impl FlagWriter for RecordedWrites {
    async fn write(&self, change: &FlagChange, at: f64) -> Result<FlagState, WriteError> {
        let flag = change.flag.as_str();
        let intent = self.intend(change, at).await?;
        if intent.state == ActuationState::Applied {
            tracing::info!(key = %intent.idempotency_key, flag, "flag change already applied by an earlier attempt of this step: not repeated");
            return Ok(self.actuator.current(flag).await?);
        }
        // Receivers see one id per change however often it is tried: the base key.
        let mut change = change.clone();
        change.context.actuation_id =
            Some(self.idempotency_key(change.action.name(), change.action.target()));
        change.context.analysis_id = Some(self.analysis.to_string());
        if change.context.report_url.is_none() {
            change.context.report_url = self.report_url.clone();
        }
        let result = self.actuator.apply(&change).await;
        let (outcome, detail) = match &result {
            Ok(state) => (
                ActuationOutcome::Applied,
                format!("enabled: {}, rollout: {}", state.enabled, state.rollout),
            ),
            Err(error) => (ActuationOutcome::Failed, error.to_string()),
        };
        self.store
            .complete_actuation(&intent.idempotency_key, outcome, &detail, self.clock.now())
            .await?;
        Ok(result?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_little_late_step_keeps_its_due_time_and_a_long_late_one_uses_now() {
        assert_eq!(step_time(Some(100.0), 130.0, 60.0, false), 100.0);
        assert_eq!(step_time(Some(100.0), 160.0, 60.0, false), 100.0);
        assert_eq!(step_time(Some(100.0), 161.0, 60.0, false), 161.0);
        assert_eq!(step_time(None, 161.0, 60.0, false), 161.0);
        assert_eq!(
            step_time(Some(100.0), 1e9, 60.0, true),
            100.0,
            "a replay keeps its time"
        );
        // Due a hair after now (times are stored to the millisecond): at its due time.
        assert_eq!(step_time(Some(100.0004), 100.0, 60.0, false), 100.0004);
    }

    #[test]
    fn every_rollout_status_has_its_analysis_state() {
        assert_eq!(
            analysis_state(RolloutStatus::Running),
            AnalysisState::Running
        );
        assert_eq!(
            analysis_state(RolloutStatus::Promoted),
            AnalysisState::Promoted
        );
        assert_eq!(
            analysis_state(RolloutStatus::RolledBack),
            AnalysisState::RolledBack
        );
        assert_eq!(
            analysis_state(RolloutStatus::AwaitingReview),
            AnalysisState::AwaitingReview
        );
    }

    #[test]
    fn settings_give_the_worker_its_options() {
        let settings = WorkerSettings {
            concurrency: 4,
            lease: "10s".to_owned(),
            poll_interval: "250ms".to_owned(),
            id: Some("canary-1".to_owned()),
            rollback_retry_interval: "1m".to_owned(),
            ..WorkerSettings::default()
        };
        let options = WorkerOptions::from_settings(&settings).unwrap();
        assert_eq!(options.rollback_retry, Duration::from_secs(60));
        assert_eq!(options.id, "canary-1");
        assert_eq!(options.concurrency, 4);
        assert_eq!(options.lease, Duration::from_secs(10));
        assert_eq!(options.poll_interval, Duration::from_millis(250));
        let unnamed = WorkerOptions::from_settings(&WorkerSettings::default()).unwrap();
        assert!(
            unnamed.id.ends_with(&format!("-{}", std::process::id())),
            "{}",
            unnamed.id
        );
    }
}
