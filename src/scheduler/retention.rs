//! Retention: the task of `canary serve` that deletes finished analyses once they are
//! older than `[store] retain_finished`, so the store stops growing.
//!
//! A pass asks the store ([`Store::prune_finished`]) to delete, in batches of
//! [`PruneOptions::batch`] analyses per transaction, every analysis the engine is done
//! with (promoted, rolled back, failed) whose content last changed more than the
//! retention ago, with its looks, flag changes and audit entries. Active analyses,
//! `rollback_failed` ones and ones with a flag change whose outcome is unknown are never
//! deleted. Batches keep each write short, so workers recording looks wait at most one
//! batch; every instance sharing a store may run the task (each analysis is deleted
//! once). [`Pruner::try_prune`] is one pass, public so that tests drive it without
//! waiting; [`Pruner::run_until_stopped`] runs a pass at start and then every
//! [`PruneOptions::every`]. What a pass deleted is logged and counted
//! (`canary_pruned_analyses_total`).

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use crate::store::{Store, StoreError};
use crate::telemetry::EngineMetrics;

use super::clock::Clock;

/// How the retention task works.
#[derive(Debug, Clone, PartialEq)]
pub struct PruneOptions {
    /// Finished analyses older than this are deleted.
    pub retain: Duration,
    /// How often a pass runs (tokio time).
    pub every: Duration,
    /// Analyses deleted per transaction.
    pub batch: u32,
}

impl PruneOptions {
    /// Passes every ten minutes, 100 analyses (about a thousand looks) per transaction.
    pub fn new(retain: Duration) -> Self {
        Self {
            retain,
            every: Duration::from_secs(600),
            batch: 100,
        }
    }
}

/// Deletes finished analyses past their retention; see the module documentation.
pub struct Pruner {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    options: PruneOptions,
    metrics: Option<Arc<EngineMetrics>>,
}

impl Pruner {
    /// A pruner of `store`, taking "now" from `clock`.
    pub fn new(store: Arc<dyn Store>, clock: Arc<dyn Clock>, options: PruneOptions) -> Self {
        Self {
            store,
            clock,
            options,
            metrics: None,
        }
    }

    /// Counts what it deletes in `metrics`.
    pub fn report_to(mut self, metrics: Arc<EngineMetrics>) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// One pass: deletes, batch by batch, every analysis finished before now minus the
    /// retention, and returns how many it deleted.
    pub async fn try_prune(&self) -> Result<u64, StoreError> {
        let cutoff = self.clock.now() - self.options.retain.as_secs_f64();
        let batch = self.options.batch.max(1);
        let mut deleted = 0;
        loop {
            let outcome = self.store.prune_finished(cutoff, batch).await;
            if let Some(metrics) = &self.metrics {
                metrics.observe_prune(outcome.as_ref().ok().copied());
            }
            let batch_deleted = match outcome {
                Ok(count) => count,
                Err(error) if deleted > 0 => {
                    tracing::info!(deleted, "retention: deleted finished analyses");
                    return Err(error);
                }
                Err(error) => return Err(error),
            };
            deleted += batch_deleted;
            if batch_deleted < u64::from(batch) {
                break;
            }
            // Lets the workers' writes in between batches.
            tokio::task::yield_now().await;
        }
        if deleted > 0 {
            tracing::info!(
                deleted,
                retain_seconds = self.options.retain.as_secs(),
                "retention: deleted finished analyses"
            );
        }
        Ok(deleted)
    }

    /// Runs a pass now and then every [`PruneOptions::every`] until `shutdown` resolves;
    /// a failed pass is logged and tried again at the next.
    pub async fn run_until_stopped(self, shutdown: impl Future<Output = ()>) {
        tokio::pin!(shutdown);
        loop {
            if let Err(error) = self.try_prune().await {
                tracing::warn!(%error, "retention: a pass failed; trying again later");
            }
            tokio::select! {
                () = &mut shutdown => return,
                () = tokio::time::sleep(self.options.every) => {}
            }
        }
    }
}
