//! One-shot judgements of a fixed window: the canary executions of Kayenta's API.
//!
//! The API stores an [`Execution`] whose request is a [`WindowRequest`]; an [`Executor`]
//! in every `canary serve` instance claims due executions from the store (with a lease,
//! so one whose instance dies is claimed again once the lease expires), fetches every
//! metric of the profile for both scopes over the window, judges them once with the
//! profile's judge at the request's score thresholds, and stores a [`WindowResult`].
//! No flag is moved: the controller that asked (Argo Rollouts, Spinnaker) reads the
//! score and moves traffic itself.
//!
//! **Missing or doubtful data never passes.** The judge holds when data are missing or
//! short of `min_samples`, where Kayenta's own judge might still pass on its score; the
//! score a controller compares with its thresholds is then lowered below the pass
//! threshold ([`reported_score`]), and a rollback's below the marginal one, so no
//! controller reading only the score can promote what canary holds.
//!
//! This module names no concrete source: they come in the [`Registry`].

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use uuid::Uuid;

use super::clock::Clock;
use super::fetch::fetch_window;
use super::registry::Registry;
use super::rollout::WorkerError;
use super::scopes::Scopes;
use crate::domain::{Profile, Score, Verdict};
use crate::judge::{self, Judgement};
use crate::sources::MetricSource;
use crate::store::{Execution, ExecutionOutcome, Store, StoreError};
use crate::telemetry::EngineMetrics;

/// The execution kind of Kayenta's API.
pub const KIND_KAYENTA: &str = "kayenta";

/// What one execution judges: both scopes over one window, at the caller's thresholds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WindowRequest {
    /// Label matchers that select the baseline (Kayenta's control).
    pub baseline_scope: String,
    /// Label matchers that select the canary (Kayenta's experiment).
    pub canary_scope: String,
    /// Window start, Unix seconds.
    pub start: f64,
    /// Window end, Unix seconds.
    pub end: f64,
    /// Resolution, seconds.
    pub step: f64,
    /// Pass at or above this score.
    pub pass_score: f64,
    /// Marginal at or above this score, fail below.
    pub marginal_score: f64,
    /// What the caller sent (its body and query parameters), echoed in the answer.
    pub caller: serde_json::Value,
}

/// What an execution found.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WindowResult {
    /// The judge's full answer.
    pub judgement: Judgement,
    /// The score a controller compares with the thresholds (see [`reported_score`]).
    pub reported_score: f64,
    /// When the worker began, Unix seconds.
    pub started_at: f64,
}

/// The score to hand a controller that compares it with `pass` and `marginal`: the
/// judge's score when it promotes; at most `pass - 1` when it holds (the controller
/// then reads marginal, or fail when `marginal > pass - 1`), and at most `marginal - 1`
/// when it rolls back, whatever the score itself was — a hold for missing data or a
/// critical failure never reads as a pass. Never below 0.
pub fn reported_score(judgement: &Judgement, pass: f64, marginal: f64) -> f64 {
    let score = judgement.score;
    match judgement.verdict {
        Verdict::Promote => score.unwrap_or(100.0),
        Verdict::Hold => score.unwrap_or(pass).min(pass - 1.0).max(0.0),
        Verdict::Rollback => score.unwrap_or(0.0).min(marginal - 1.0).max(0.0),
    }
}

/// `profile` with the request's thresholds in place of its own.
pub fn with_thresholds(mut profile: Profile, request: &WindowRequest) -> Result<Profile, String> {
    profile.judge.pass_score =
        Score::parse(request.pass_score).map_err(|error| format!("thresholds.pass {error}"))?;
    profile.judge.marginal_score = Score::parse(request.marginal_score)
        .map_err(|error| format!("thresholds.marginal {error}"))?;
    Ok(profile)
}

/// Fetches both scopes over the request's window and judges them once.
pub async fn judge_window(
    source: &dyn MetricSource,
    profile: &Profile,
    request: &WindowRequest,
) -> Judgement {
    let scopes = Scopes::from_matchers(&request.baseline_scope, &request.canary_scope);
    let fetched = fetch_window(
        source,
        profile,
        &scopes,
        (request.start, request.end, request.step),
        true,
    )
    .await;
    let mut judgement = judge::judge(profile, &fetched.baseline, &fetched.canary);
    if fetched.canary_scope_matches_nothing() {
        judgement.reasons.insert(
            0,
            format!(
                "the canary scope {:?} matched no series in the window while the baseline \
                 scope {:?} did: check the experiment scope",
                request.canary_scope, request.baseline_scope
            ),
        );
    }
    judgement
}

/// How an executor works.
#[derive(Debug, Clone, PartialEq)]
pub struct ExecutorOptions {
    /// This instance's name in leases and logs.
    pub id: String,
    /// How long a claim lasts, in the clock's seconds.
    pub lease: Duration,
    /// How long an idle executor waits before claiming again (tokio time).
    pub poll_interval: Duration,
    /// Claims after which an execution that never finished is failed instead of run.
    pub max_attempts: u32,
    /// Executions run at once by this instance (at least 1).
    pub concurrency: usize,
}

/// Runs stored executions; see the module documentation.
#[derive(Clone)]
pub struct Executor {
    store: Arc<dyn Store>,
    registry: Arc<Registry>,
    clock: Arc<dyn Clock>,
    options: ExecutorOptions,
    metrics: Option<Arc<EngineMetrics>>,
}

impl std::fmt::Debug for Executor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Executor")
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

impl Executor {
    /// An executor over `store`, with the sources of `registry`.
    pub fn new(
        store: Arc<dyn Store>,
        registry: Arc<Registry>,
        clock: Arc<dyn Clock>,
        options: ExecutorOptions,
    ) -> Self {
        Self {
            store,
            registry,
            clock,
            options,
            metrics: None,
        }
    }

    /// Counts executions in `metrics`.
    pub fn report_to(mut self, metrics: Arc<EngineMetrics>) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// Claims one due execution and runs it to the end; its id, or `None` when none was
    /// due. Public so tests drive executions without the loop.
    pub async fn try_execute_one(&self) -> Result<Option<Uuid>, WorkerError> {
        match self.claim().await? {
            Some(execution) => self.execute(execution).await.map(Some),
            None => Ok(None),
        }
    }

    /// Leases the due execution waiting longest, if any.
    async fn claim(&self) -> Result<Option<Execution>, WorkerError> {
        Ok(self
            .store
            .claim_execution(&self.options.id, self.clock.now(), self.options.lease)
            .await?)
    }

    /// Runs a claimed execution to the end and stores the outcome.
    async fn execute(&self, execution: Execution) -> Result<Uuid, WorkerError> {
        let now = self.clock.now();
        let id = execution.id;
        let outcome = if execution.attempts > self.options.max_attempts {
            ExecutionOutcome::Failed(format!(
                "given up after {} claims that never finished (the instances running it \
                 stopped, or the judgement outran its lease of {} s)",
                execution.attempts - 1,
                self.options.lease.as_secs_f64()
            ))
        } else {
            // Bounded well inside the lease, so no other instance takes it meanwhile.
            let budget = self.options.lease.mul_f64(0.8);
            match tokio::time::timeout(budget, self.run(&execution, now)).await {
                Ok(outcome) => outcome,
                Err(_) => {
                    tracing::warn!(execution = %id, seconds = budget.as_secs_f64(), "an execution ran out of time; it is claimed again after its lease");
                    return Ok(id);
                }
            }
        };
        let failed = matches!(outcome, ExecutionOutcome::Failed(_));
        if let ExecutionOutcome::Failed(reason) = &outcome {
            tracing::warn!(execution = %id, reason = %reason, "execution failed");
        }
        match self
            .store
            .finish_execution(id, &self.options.id, self.clock.now(), outcome)
            .await
        {
            Ok(_) => {
                if let Some(metrics) = &self.metrics {
                    metrics.observe_execution(if failed { "failed" } else { "succeeded" });
                }
                tracing::info!(execution = %id, failed, "execution finished");
                Ok(id)
            }
            Err(StoreError::LeaseLost { .. }) => {
                tracing::warn!(execution = %id, "the execution's lease was lost before it finished; another instance runs it");
                Ok(id)
            }
            Err(error) => Err(error.into()),
        }
    }

    /// Judges one execution.
    async fn run(&self, execution: &Execution, started_at: f64) -> ExecutionOutcome {
        let request: WindowRequest = match serde_json::from_value(execution.request.clone()) {
            Ok(request) => request,
            Err(error) => {
                return ExecutionOutcome::Failed(format!(
                    "the stored request cannot be read by this version: {error}"
                ));
            }
        };
        let profile = match Profile::parse(&execution.profile_text, &execution.profile_name)
            .map_err(|error| error.to_string())
            .and_then(|profile| with_thresholds(profile, &request))
        {
            Ok(profile) => profile,
            Err(error) => {
                return ExecutionOutcome::Failed(format!(
                    "profile {:?}: {error}",
                    execution.profile_name
                ));
            }
        };
        let Some(source) = self.registry.source(&execution.source) else {
            return ExecutionOutcome::Failed(format!(
                "metric source {:?} is not declared in this instance's settings",
                execution.source
            ));
        };
        let judgement = judge_window(source.as_ref(), &profile, &request).await;
        let reported_score = reported_score(&judgement, request.pass_score, request.marginal_score);
        let result = WindowResult {
            judgement,
            reported_score,
            started_at,
        };
        match serde_json::to_value(&result) {
            Ok(value) => ExecutionOutcome::Succeeded(value),
            Err(error) => ExecutionOutcome::Failed(format!("the result cannot be stored: {error}")),
        }
    }

    /// Runs executions until `shutdown`, up to `concurrency` at once: claims again as
    /// soon as a permit is free, waits `poll_interval` when none was due or the store
    /// failed. Several instances share the work; at shutdown the running ones finish.
    pub async fn run_until_stopped(self, shutdown: impl Future<Output = ()>) {
        tokio::pin!(shutdown);
        let permits = Arc::new(Semaphore::new(self.options.concurrency.max(1)));
        let mut running = JoinSet::new();
        loop {
            while running.try_join_next().is_some() {}
            let permit = tokio::select! {
                biased;
                () = &mut shutdown => break,
                permit = Arc::clone(&permits).acquire_owned() => match permit {
                    Ok(permit) => permit,
                    Err(_) => break,
                },
            };
            let claimed = tokio::select! {
                biased;
                () = &mut shutdown => break,
                claimed = self.claim() => claimed,
            };
            match claimed {
                Ok(Some(execution)) => {
                    let executor = self.clone();
                    running.spawn(async move {
                        if let Err(error) = executor.execute(execution).await {
                            tracing::warn!(executor = %executor.options.id, error = %error, "could not store an execution's outcome; it is run again after its lease");
                        }
                        drop(permit);
                    });
                    continue;
                }
                Ok(None) => {}
                Err(error) => {
                    tracing::warn!(executor = %self.options.id, error = %error, "could not claim executions; trying again");
                }
            }
            drop(permit);
            tokio::select! {
                () = &mut shutdown => break,
                () = tokio::time::sleep(self.options.poll_interval) => {}
            }
        }
        while running.join_next().await.is_some() {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::multiple_testing::Correction;

    fn judgement(verdict: Verdict, score: Option<f64>) -> Judgement {
        Judgement {
            verdict,
            reasons: Vec::new(),
            score,
            profile: "p".to_owned(),
            confidence_level: 0.98,
            multiple_comparisons: Correction::None,
            metrics: Vec::new(),
            group_scores: None,
        }
    }

    #[test]
    fn a_hold_never_reads_as_a_pass_and_a_rollback_never_as_marginal() {
        // Argo compares the integer part: >= pass Successful, >= marginal Inconclusive.
        let read = |score: f64, pass: f64, marginal: f64| {
            let score = score.trunc();
            if score >= pass {
                "pass"
            } else if score >= marginal {
                "marginal"
            } else {
                "fail"
            }
        };
        for (pass, marginal) in [(95.0, 75.0), (75.0, 75.0), (100.0, 1.0), (1.0, 1.0)] {
            for score in [
                None,
                Some(0.0),
                Some(50.0),
                Some(74.99),
                Some(99.5),
                Some(100.0),
            ] {
                let hold = reported_score(&judgement(Verdict::Hold, score), pass, marginal);
                assert_ne!(
                    read(hold, pass, marginal),
                    "pass",
                    "{score:?} {pass} {marginal}"
                );
                let rollback = reported_score(&judgement(Verdict::Rollback, score), pass, marginal);
                assert_eq!(
                    read(rollback, pass, marginal),
                    "fail",
                    "{score:?} {pass} {marginal}"
                );
            }
            assert_eq!(
                reported_score(&judgement(Verdict::Promote, Some(97.5)), pass, marginal),
                97.5
            );
        }
        // A hold with the score under pass keeps it (Kayenta's marginal band).
        assert_eq!(
            reported_score(&judgement(Verdict::Hold, Some(80.0)), 95.0, 75.0),
            80.0
        );
        assert_eq!(
            reported_score(&judgement(Verdict::Hold, Some(100.0)), 95.0, 75.0),
            94.0
        );
        assert_eq!(
            reported_score(&judgement(Verdict::Rollback, Some(60.0)), 95.0, 75.0),
            60.0
        );
    }
}
