//! Workers against real stores (a SQLite file, SQLite in memory, PostgreSQL in a schema
//! of its own), synthetic sources and the log-only actuator behind a counter: a worker
//! drives analyses to promotion and rollback look by look on a manual clock (no
//! sleeping); a new worker on the same SQLite file finishes an analysis with the same
//! decisions; a successor replays the look of a worker that died after changing the flag
//! and the flag changes once; two workers on PostgreSQL run 200 analyses to completion,
//! each look judged once; manual promote and rollback reach the flag through a worker,
//! and pause stops claims until resume; a lease renewal that waits on the step's own
//! row lock does not deadlock the step.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use canary::actuators::log_only::LogOnlyActuator;
use canary::actuators::{Actuator, ActuatorError, ActuatorExt, FlagAction, FlagChange, FlagState};
use canary::scheduler::{Clock, CompressedClock, ManualClock, Registry, Worker, WorkerOptions};
use canary::sources::synthetic::{Distribution, MetricModel, SyntheticSource};
use canary::store::{
    ActuationOutcome, ActuationRecord, ActuationState, Analysis, AnalysisState, AuditAction,
    AuditEntry, LookRecord, LookUpdate, ManualAction, NewActuation, NewAnalysis, Page, Store,
    StoreConfig, StoreError,
};
use uuid::Uuid;

use crate::store::in_postgres_schema;

/// Analyses are submitted at this analysis time.
pub(crate) const T0: f64 = 1_700_000_000.0;
const LEASE: Duration = Duration::from_secs(30);

/// Two stages of two minutes, a look a minute: start, then four looks to promotion.
const PROFILE: &str = r#"
name = "worker-test"
description = "two short stages for worker tests"

[judge]
confidence_level = 0.95
pass_score = 95
marginal_score = 75

[rollout]
error_budget = 0.05
consecutive_failures = 1
step = "5s"

[[stages]]
traffic = 10
duration = "2m"
interval = "1m"
lookback = "2m"
[[stages]]
traffic = 50
duration = "2m"
interval = "1m"
lookback = "2m"

[[triggers]]
name = "p95 latency above 500 ms for 1 minute"
metric = "latency_p95"
above = 0.5
for = "1m"
action = "rollback"

[[metrics]]
name = "latency_p95"
kind = "continuous"
direction = "increase"
min_samples = 10
critical = true
allowed_increase = 0.05
query = 'latency_p95{ {{scope}} }'
"#;

fn latency(median: f64) -> Distribution {
    Distribution::LogNormal { median, sigma: 0.1 }
}

/// A canary as fast as its baseline.
fn healthy(seed: u64) -> Arc<SyntheticSource> {
    Arc::new(SyntheticSource::new(
        seed,
        5.0,
        BTreeMap::from([(
            "latency_p95".to_owned(),
            MetricModel::same_samples(latency(0.2)),
        )]),
    ))
}

/// A canary whose latency quadruples just after the second stage starts (at 2 min 5 s),
/// so the second stage's first look sees only regressed canary points.
fn regressing(seed: u64) -> Arc<SyntheticSource> {
    Arc::new(SyntheticSource::new(
        seed,
        5.0,
        BTreeMap::from([(
            "latency_p95".to_owned(),
            MetricModel::same_samples(latency(0.2)).canary_samples_from(T0 + 125.0, latency(0.8)),
        )]),
    ))
}

/// The log-only actuator, counting every change it makes, by flag. While `down`, it
/// refuses every change as unavailable (a flag store that is down).
#[derive(Default)]
pub(crate) struct CountingActuator {
    flags: LogOnlyActuator,
    changes: Mutex<Vec<(String, String, f64)>>,
    down: AtomicBool,
    refused: std::sync::atomic::AtomicUsize,
}

impl CountingActuator {
    fn refuse_while_down(&self) -> Result<(), ActuatorError> {
        if self.down.load(Ordering::SeqCst) {
            self.refused.fetch_add(1, Ordering::SeqCst);
            return Err(ActuatorError::Unavailable {
                store: "counting".to_owned(),
                message: "connection refused".to_owned(),
            });
        }
        Ok(())
    }

    /// `(action, target)` of every change made to `flag`, in order.
    fn changes_of(&self, flag: &str) -> Vec<(String, f64)> {
        self.changes
            .lock()
            .unwrap()
            .iter()
            .filter(|(f, _, _)| f == flag)
            .map(|(_, action, target)| (action.clone(), *target))
            .collect()
    }
}

#[async_trait]
impl Actuator for CountingActuator {
    fn describe(&self) -> String {
        "counting log-only".to_owned()
    }

    async fn healthcheck(&self, flag: &str) -> Result<FlagState, ActuatorError> {
        self.flags.healthcheck(flag).await
    }

    async fn apply(&self, change: &FlagChange) -> Result<FlagState, ActuatorError> {
        self.refuse_while_down()?;
        let flag = change.flag.as_str();
        let (action, target) = match change.action {
            FlagAction::SetRollout { target } => ("set_rollout", target.value()),
            FlagAction::Kill => ("kill", 0.0),
        };
        self.changes
            .lock()
            .unwrap()
            .push((flag.to_owned(), action.to_owned(), target));
        self.flags.apply(change).await
    }

    async fn current(&self, flag: &str) -> Result<FlagState, ActuatorError> {
        self.flags.current(flag).await
    }
}

pub(crate) fn registry(seed: u64, flags: &Arc<CountingActuator>) -> Arc<Registry> {
    Arc::new(
        Registry::new()
            .with_source("healthy", healthy(seed))
            .with_source("regressing", regressing(seed))
            .with_actuator("flags", Arc::clone(flags) as Arc<dyn Actuator>),
    )
}

pub(crate) fn options(id: &str, concurrency: usize) -> WorkerOptions {
    WorkerOptions {
        id: id.to_owned(),
        concurrency,
        lease: LEASE,
        poll_interval: Duration::from_millis(20),
        rollback_retry: Duration::from_secs(30),
    }
}

fn request(source: &str, flag: &str) -> NewAnalysis {
    NewAnalysis {
        profile_name: "worker-test".to_owned(),
        profile_text: PROFILE.to_owned(),
        flag: flag.to_owned(),
        source: source.to_owned(),
        actuator: "flags".to_owned(),
        baseline_scope: r#"track="baseline""#.to_owned(),
        canary_scope: r#"track="canary""#.to_owned(),
        dry_run: false,
        start_at: None,
        owner: None,
        adopt: false,
        submit_key: None,
    }
}

pub(crate) async fn submit(store: &dyn Store, source: &str, flag: &str) -> Analysis {
    store
        .create_analysis(request(source, flag), T0)
        .await
        .expect("submit")
}

async fn get(store: &dyn Store, id: Uuid) -> Analysis {
    store.get_analysis(id).await.unwrap().expect("stored")
}

/// Steps the worker, moving the clock to the next due look in between, until every
/// analysis in `ids` is final, none is due, or `max_steps` calls have run.
async fn drive(
    worker: &Worker,
    store: &dyn Store,
    clock: &ManualClock,
    ids: &[Uuid],
    max_steps: usize,
) {
    for _ in 0..max_steps {
        worker.try_execute_task().await.expect("claim");
        let mut next_due = None::<f64>;
        for id in ids {
            let analysis = get(store, *id).await;
            if analysis.state.is_claimable() {
                let due = analysis.next_look_at.unwrap_or(clock.now());
                next_due = Some(next_due.map_or(due, |d| d.min(due)));
            }
        }
        match next_due {
            Some(due) => clock.set(due.max(clock.now())),
            None => return,
        }
    }
}

/// The decision of every look, in order.
async fn decisions(store: &dyn Store, id: Uuid) -> Vec<(u64, String)> {
    store
        .list_looks(id)
        .await
        .unwrap()
        .into_iter()
        .map(|look| (look.look, look.decision))
        .collect()
}

/// Every look recorded once, numbered 1, 2, 3, ... without a gap.
async fn assert_every_look_once(store: &dyn Store, id: Uuid) -> usize {
    let looks = store.list_looks(id).await.unwrap();
    let numbers: Vec<u64> = looks.iter().map(|l| l.look).collect();
    let expected: Vec<u64> = (1..=looks.len() as u64).collect();
    assert_eq!(numbers, expected, "analysis {id}");
    looks.len()
}

/// Every flag change recorded once, applied, and made exactly once on the flag.
async fn assert_each_actuation_once(
    store: &dyn Store,
    flags: &CountingActuator,
    analysis: &Analysis,
) -> Vec<(String, f64)> {
    let records = store.list_actuations(analysis.id).await.unwrap();
    assert!(
        records.iter().all(|r| r.state == ActuationState::Applied),
        "{records:#?}"
    );
    let recorded: Vec<(String, f64)> = records
        .iter()
        .map(|r| (r.action.clone(), r.target))
        .collect();
    assert_eq!(
        recorded,
        flags.changes_of(&analysis.flag),
        "{}",
        analysis.flag
    );
    recorded
}

fn changes(list: &[(&str, f64)]) -> Vec<(String, f64)> {
    list.iter().map(|(a, t)| ((*a).to_owned(), *t)).collect()
}

/// A Slack-style channel the worker announces to, as `[notifiers.oncall]` would set it.
async fn oncall_channel(worker: Worker) -> (Worker, crate::notify::Received) {
    let (channel, messages) = crate::notify::slack_receiver().await;
    let settings = canary::config::Settings::load_from(
        None,
        Some(BTreeMap::from([
            (
                "CANARY_NOTIFIERS__ONCALL__KIND".to_owned(),
                "slack".to_owned(),
            ),
            (
                "CANARY_NOTIFIERS__ONCALL__URL".to_owned(),
                format!("http://{channel}/services/T000/B000/XXXX"),
            ),
        ])),
    )
    .unwrap();
    let worker =
        worker.notify_with(canary::notify::Notifications::from_settings(&settings).unwrap());
    (worker, messages)
}

/// The texts the channel received, once it has `at_least` of them (or after 10 s: the
/// notifications are sent in the background).
async fn channel_texts(messages: &crate::notify::Received, at_least: usize) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(10);
    while messages.lock().unwrap().len() < at_least && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    messages
        .lock()
        .unwrap()
        .iter()
        .map(|m| m["text"].as_str().unwrap_or_default().to_owned())
        .collect()
}

pub(crate) async fn sqlite_file(dir: &tempfile::TempDir) -> Arc<dyn Store> {
    StoreConfig::new(dir.path().join("canary.db").to_str().unwrap())
        .build()
        .await
        .expect("sqlite file")
}

#[tokio::test]
async fn a_worker_drives_a_healthy_canary_to_promotion_and_a_regression_to_rollback() {
    let started = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let store = sqlite_file(&dir).await;
    let flags = Arc::new(CountingActuator::default());
    let clock = Arc::new(ManualClock::new(T0));
    let worker = Worker::new(
        store.clone(),
        registry(7, &flags),
        clock.clone(),
        options("w1", 4),
    );
    let good = submit(store.as_ref(), "healthy", "checkout").await;
    let bad = submit(store.as_ref(), "regressing", "search").await;

    drive(&worker, store.as_ref(), &clock, &[good.id, bad.id], 50).await;

    let good = get(store.as_ref(), good.id).await;
    assert_eq!(good.state, AnalysisState::Promoted, "{:?}", good.reasons);
    assert_eq!(good.traffic, Some(100.0));
    assert_eq!(good.lease_owner, None, "released");
    assert_eq!(
        decisions(store.as_ref(), good.id).await,
        [
            (1, "continue".to_owned()),
            (2, "advance".to_owned()),
            (3, "continue".to_owned()),
            (4, "promote".to_owned())
        ]
    );
    assert_eq!(
        assert_each_actuation_once(store.as_ref(), &flags, &good).await,
        changes(&[
            ("set_rollout", 10.0),
            ("set_rollout", 50.0),
            ("set_rollout", 100.0)
        ])
    );
    let flag = flags.current("checkout").await.unwrap();
    assert!(flag.enabled && flag.rollout.value() == 100.0);

    let bad = get(store.as_ref(), bad.id).await;
    assert_eq!(bad.state, AnalysisState::RolledBack, "{:?}", bad.reasons);
    assert_eq!(bad.traffic, Some(0.0));
    // The sequential judge sees the quadrupled latency at the second stage's first
    // look, before the one-minute trigger has a minute of breaching points.
    assert!(
        bad.reasons
            .iter()
            .any(|r| r.starts_with("latency_p95 (critical) failed: location: shift +")),
        "{:?}",
        bad.reasons
    );
    let bad_decisions = decisions(store.as_ref(), bad.id).await;
    assert_eq!(bad_decisions.last().unwrap().1, "rollback");
    assert_eq!(
        assert_every_look_once(store.as_ref(), bad.id).await,
        bad_decisions.len()
    );
    assert_eq!(
        assert_each_actuation_once(store.as_ref(), &flags, &bad).await,
        changes(&[("set_rollout", 10.0), ("set_rollout", 50.0), ("kill", 0.0)])
    );
    assert!(!flags.current("search").await.unwrap().enabled);
    store.close().await;
    eprintln!("took {:?}", started.elapsed());
}

/// A rollout waiting for a person's decision is still watched: a worker keeps taking its
/// looks, which leave the flag alone while the canary is no worse, and when the canary's
/// latency then breaches the rollback trigger the next look switches the flag off. The
/// people on call hear once that it waits and once that it rolled back.
#[tokio::test]
async fn a_worker_keeps_watching_an_analysis_awaiting_review_and_rolls_it_back_on_a_rollback_trigger()
 {
    let dir = tempfile::tempdir().unwrap();
    let store = sqlite_file(&dir).await;
    let flags = Arc::new(CountingActuator::default());
    let clock = Arc::new(ManualClock::new(T0));
    // Both sides above the hold trigger's 300 ms from the start; the canary breaches the
    // rollback trigger's 500 ms from T0 + 5 min.
    let breaches_at = T0 + 300.0;
    let source = Arc::new(SyntheticSource::new(
        7,
        5.0,
        BTreeMap::from([(
            "latency_p95".to_owned(),
            MetricModel::same_samples(latency(0.4)).canary_samples_from(breaches_at, latency(0.8)),
        )]),
    ));
    let registry = Arc::new(
        Registry::new()
            .with_source("slow-then-breaching", source)
            .with_actuator("flags", Arc::clone(&flags) as Arc<dyn Actuator>),
    );
    let worker = Worker::new(store.clone(), registry, clock.clone(), options("w1", 1));
    let (worker, messages) = oncall_channel(worker).await;
    let mut request = request("slow-then-breaching", "checkout");
    request.profile_text = format!(
        "{PROFILE}\n[[triggers]]\nname = \"p95 latency above 300 ms for 1 minute\"\n\
         metric = \"latency_p95\"\nabove = 0.3\nfor = \"1m\"\naction = \"hold\"\n"
    );
    let analysis = store.create_analysis(request, T0).await.unwrap();

    // Started, then the first look's hold trigger hands the decision to a person.
    drive(&worker, store.as_ref(), &clock, &[analysis.id], 2).await;
    let waiting = get(store.as_ref(), analysis.id).await;
    assert_eq!(
        waiting.state,
        AnalysisState::AwaitingReview,
        "{:?}",
        waiting.reasons
    );
    assert!(
        waiting.next_look_at.is_some(),
        "a waiting analysis still has a next look"
    );

    drive(&worker, store.as_ref(), &clock, &[analysis.id], 20).await;
    let ended = get(store.as_ref(), analysis.id).await;
    assert_eq!(
        ended.state,
        AnalysisState::RolledBack,
        "{:?}",
        ended.reasons
    );
    assert!(
        ended
            .reasons
            .iter()
            .any(|r| r.contains("trigger \"p95 latency above 500 ms for 1 minute\" fired")),
        "{:?}",
        ended.reasons
    );
    let looks = store.list_looks(analysis.id).await.unwrap();
    let (last, before) = looks.split_last().unwrap();
    assert_eq!(last.decision, "rollback");
    assert!(before.len() >= 3, "looks while waiting: {}", before.len());
    for look in before {
        assert_eq!(look.decision, "await_review", "look {}", look.look);
        assert!(
            look.at <= breaches_at + 60.0,
            "look {} at {}",
            look.look,
            look.at
        );
    }
    assert_eq!(
        assert_each_actuation_once(store.as_ref(), &flags, &ended).await,
        changes(&[("set_rollout", 10.0), ("kill", 0.0)])
    );
    let texts = channel_texts(&messages, 2).await;
    assert_eq!(texts.len(), 2, "{texts:#?}");
    assert!(
        texts[0].contains("waiting") || texts[0].contains("review"),
        "{texts:#?}"
    );
    assert!(
        texts[1].to_lowercase().contains("rolled back"),
        "{texts:#?}"
    );
    store.close().await;
}

#[tokio::test]
async fn a_new_worker_on_the_same_sqlite_file_finishes_an_analysis_with_the_same_decisions() {
    // The reference: one worker, uninterrupted.
    let reference_dir = tempfile::tempdir().unwrap();
    let reference_store = sqlite_file(&reference_dir).await;
    let flags = Arc::new(CountingActuator::default());
    let clock = Arc::new(ManualClock::new(T0));
    let worker = Worker::new(
        reference_store.clone(),
        registry(11, &flags),
        clock.clone(),
        options("reference", 1),
    );
    let reference = submit(reference_store.as_ref(), "regressing", "search").await;
    drive(
        &worker,
        reference_store.as_ref(),
        &clock,
        &[reference.id],
        50,
    )
    .await;
    let expected = decisions(reference_store.as_ref(), reference.id).await;
    assert_eq!(expected.last().unwrap().1, "rollback");
    reference_store.close().await;

    // The same analysis, with the worker and its process gone after two looks.
    let dir = tempfile::tempdir().unwrap();
    let store = sqlite_file(&dir).await;
    let first_flags = Arc::new(CountingActuator::default());
    let clock = Arc::new(ManualClock::new(T0));
    let first = Worker::new(
        store.clone(),
        registry(11, &first_flags),
        clock.clone(),
        options("first", 1),
    );
    let analysis = submit(store.as_ref(), "regressing", "search").await;
    drive(&first, store.as_ref(), &clock, &[analysis.id], 3).await;
    assert_eq!(decisions(store.as_ref(), analysis.id).await.len(), 2);
    drop(first);
    store.close().await;
    drop(store);

    let store = sqlite_file(&dir).await;
    let second_flags = Arc::new(CountingActuator::default());
    // The flag store outlives the process: the new one finds the flag where the first
    // left it (set without counting it as a change).
    let left = first_flags.current("search").await.unwrap();
    second_flags
        .flags
        .set_rollout("search", left.rollout)
        .await
        .unwrap();
    let second = Worker::new(
        store.clone(),
        registry(11, &second_flags),
        clock.clone(),
        options("second", 1),
    );
    drive(&second, store.as_ref(), &clock, &[analysis.id], 50).await;
    let analysis = get(store.as_ref(), analysis.id).await;
    assert_eq!(analysis.state, AnalysisState::RolledBack);
    assert_eq!(decisions(store.as_ref(), analysis.id).await, expected);
    // Each worker made its own share of the changes, none twice.
    let mut made = first_flags.changes_of("search");
    made.extend(second_flags.changes_of("search"));
    let recorded: Vec<(String, f64)> = store
        .list_actuations(analysis.id)
        .await
        .unwrap()
        .iter()
        .map(|r| (r.action.clone(), r.target))
        .collect();
    assert_eq!(made, recorded);
    store.close().await;
}

/// A real store with one fault injected.
struct FaultyStore {
    store: Arc<dyn Store>,
    fault: Fault,
    /// `DiesOnAdvance`: whether the worker has died.
    dead: AtomicBool,
    /// `RowLock`: the analysis row, locked by `record_look` as a database locks it in the
    /// look's write transaction, and waited on by `renew_lease`.
    row: tokio::sync::Mutex<()>,
    /// `RowLock`: a renewal has started.
    renewal_started: tokio::sync::Notify,
    /// `RowLock`: a look's write holds the row lock and waits.
    look_waiting: tokio::sync::Notify,
    /// Renewals asked for.
    renewals: std::sync::atomic::AtomicUsize,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Fault {
    /// The worker dies: its look that advances a stage is never recorded, and it never
    /// releases a lease (a dead process releases nothing).
    DiesOnAdvance,
    /// What PostgreSQL does under load: a look's write transaction holds the analysis's
    /// row lock until it commits, and a lease renewal that comes meanwhile waits for the
    /// lock. Here the look's write cannot finish until a renewal has started, so a
    /// worker that stopped polling the step while it renews would wait forever.
    RowLock,
}

impl FaultyStore {
    fn new(store: Arc<dyn Store>, fault: Fault) -> Self {
        Self {
            store,
            fault,
            dead: AtomicBool::new(false),
            row: tokio::sync::Mutex::new(()),
            renewal_started: tokio::sync::Notify::new(),
            look_waiting: tokio::sync::Notify::new(),
            renewals: std::sync::atomic::AtomicUsize::new(0),
        }
    }
}

#[async_trait]
impl Store for FaultyStore {
    async fn create_analysis(&self, new: NewAnalysis, now: f64) -> Result<Analysis, StoreError> {
        self.store.create_analysis(new, now).await
    }
    async fn get_analysis(&self, id: Uuid) -> Result<Option<Analysis>, StoreError> {
        self.store.get_analysis(id).await
    }
    async fn analysis_by_submit_key(&self, key: &str) -> Result<Option<Analysis>, StoreError> {
        self.store.analysis_by_submit_key(key).await
    }
    async fn list_analyses(
        &self,
        state: Option<AnalysisState>,
        limit: u32,
        cursor: Option<&str>,
    ) -> Result<Page<Analysis>, StoreError> {
        self.store.list_analyses(state, limit, cursor).await
    }
    async fn claim_due(
        &self,
        worker: &str,
        now: f64,
        lease: Duration,
        limit: u32,
    ) -> Result<Vec<Analysis>, StoreError> {
        self.store.claim_due(worker, now, lease, limit).await
    }
    async fn renew_lease(
        &self,
        id: Uuid,
        worker: &str,
        now: f64,
        lease: Duration,
    ) -> Result<f64, StoreError> {
        self.renewals.fetch_add(1, Ordering::SeqCst);
        let _row = if self.fault == Fault::RowLock {
            self.renewal_started.notify_one();
            Some(self.row.lock().await)
        } else {
            None
        };
        self.store.renew_lease(id, worker, now, lease).await
    }
    async fn release(&self, id: Uuid, worker: &str) -> Result<bool, StoreError> {
        if self.dead.load(Ordering::SeqCst) {
            return Ok(false);
        }
        self.store.release(id, worker).await
    }
    async fn record_look(
        &self,
        id: Uuid,
        worker: &str,
        expected_version: i64,
        now: f64,
        update: LookUpdate,
    ) -> Result<Analysis, StoreError> {
        if self.fault == Fault::RowLock {
            let _row = self.row.lock().await;
            self.look_waiting.notify_one();
            self.renewal_started.notified().await;
            return self
                .store
                .record_look(id, worker, expected_version, now, update)
                .await;
        }
        if update
            .look
            .as_ref()
            .is_some_and(|l| l.decision == "advance")
        {
            self.dead.store(true, Ordering::SeqCst);
        }
        if self.dead.load(Ordering::SeqCst) {
            return Err(StoreError::Unavailable("the worker died".to_owned()));
        }
        self.store
            .record_look(id, worker, expected_version, now, update)
            .await
    }
    async fn intend_actuation(
        &self,
        worker: &str,
        now: f64,
        intent: NewActuation,
    ) -> Result<ActuationRecord, StoreError> {
        self.store.intend_actuation(worker, now, intent).await
    }
    async fn complete_actuation(
        &self,
        key: &str,
        outcome: ActuationOutcome,
        detail: &str,
        now: f64,
    ) -> Result<ActuationRecord, StoreError> {
        self.store
            .complete_actuation(key, outcome, detail, now)
            .await
    }
    async fn list_looks(&self, id: Uuid) -> Result<Vec<LookRecord>, StoreError> {
        self.store.list_looks(id).await
    }
    async fn list_actuations(&self, id: Uuid) -> Result<Vec<ActuationRecord>, StoreError> {
        self.store.list_actuations(id).await
    }
    async fn apply_manual_action(
        &self,
        id: Uuid,
        action: ManualAction,
        now: f64,
    ) -> Result<Analysis, StoreError> {
        self.store.apply_manual_action(id, action, now).await
    }
    async fn audit_log(&self, id: Uuid) -> Result<Vec<AuditEntry>, StoreError> {
        self.store.audit_log(id).await
    }
    async fn counts_by_state(&self) -> Result<BTreeMap<AnalysisState, u64>, StoreError> {
        self.store.counts_by_state().await
    }
    async fn overview(
        &self,
        query: &canary::store::OverviewQuery,
    ) -> Result<canary::store::Overview, StoreError> {
        self.store.overview(query).await
    }
    async fn prune_finished(&self, finished_before: f64, limit: u32) -> Result<u64, StoreError> {
        self.store.prune_finished(finished_before, limit).await
    }
    async fn create_execution(
        &self,
        new: canary::store::NewExecution,
        now: f64,
    ) -> Result<canary::store::Execution, StoreError> {
        self.store.create_execution(new, now).await
    }
    async fn get_execution(
        &self,
        id: uuid::Uuid,
    ) -> Result<Option<canary::store::Execution>, StoreError> {
        self.store.get_execution(id).await
    }
    async fn active_with_latest_look(
        &self,
        limit: u32,
    ) -> Result<Vec<(canary::store::Analysis, Option<canary::store::LookRecord>)>, StoreError> {
        self.store.active_with_latest_look(limit).await
    }
    async fn latest_execution(
        &self,
        key: &str,
    ) -> Result<Option<canary::store::Execution>, StoreError> {
        self.store.latest_execution(key).await
    }
    async fn claim_execution(
        &self,
        worker: &str,
        now: f64,
        lease: std::time::Duration,
    ) -> Result<Option<canary::store::Execution>, StoreError> {
        self.store.claim_execution(worker, now, lease).await
    }
    async fn finish_execution(
        &self,
        id: uuid::Uuid,
        worker: &str,
        now: f64,
        outcome: canary::store::ExecutionOutcome,
    ) -> Result<canary::store::Execution, StoreError> {
        self.store.finish_execution(id, worker, now, outcome).await
    }
    async fn healthcheck(&self) -> Result<(), StoreError> {
        self.store.healthcheck().await
    }
    async fn close(&self) {}
}

#[tokio::test]
async fn a_successor_replays_the_look_of_a_worker_that_died_after_changing_the_flag_and_the_flag_changes_once()
 {
    let dir = tempfile::tempdir().unwrap();
    let store = sqlite_file(&dir).await;
    let flags = Arc::new(CountingActuator::default());
    let clock = Arc::new(ManualClock::new(T0));
    let dying = Arc::new(FaultyStore::new(store.clone(), Fault::DiesOnAdvance));
    let doomed = Worker::new(
        dying.clone(),
        registry(3, &flags),
        clock.clone(),
        options("doomed", 1),
    );
    let analysis = submit(store.as_ref(), "healthy", "checkout").await;

    // Start, look 1 (continue), look 2 (advance: the flag goes to 50 %, then the worker
    // dies before recording the look).
    drive(&doomed, store.as_ref(), &clock, &[analysis.id], 3).await;
    assert!(dying.dead.load(Ordering::SeqCst), "the worker died");
    let orphan = get(store.as_ref(), analysis.id).await;
    assert_eq!(decisions(store.as_ref(), analysis.id).await.len(), 1);
    assert_eq!(orphan.lease_owner.as_deref(), Some("doomed"));
    assert_eq!(orphan.traffic, Some(10.0), "the store still says 10 %");
    assert_eq!(
        flags.current("checkout").await.unwrap().rollout.value(),
        50.0
    );
    let keys: Vec<String> = store
        .list_actuations(analysis.id)
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.idempotency_key)
        .collect();
    assert_eq!(
        keys,
        [
            format!("{}:0:set_rollout:10", analysis.id),
            format!("{}:2:set_rollout:50", analysis.id)
        ]
    );
    drop(doomed);

    // Nobody can take it while the lease runs; after it expires a successor does.
    let successor = Worker::new(
        store.clone(),
        registry(3, &flags),
        clock.clone(),
        options("successor", 1),
    );
    assert_eq!(successor.try_execute_task().await.unwrap(), 0);
    clock.advance(LEASE.as_secs_f64());
    assert_eq!(successor.try_execute_task().await.unwrap(), 1);
    let replayed = get(store.as_ref(), analysis.id).await;
    assert_eq!(replayed.traffic, Some(50.0));
    assert_eq!(
        decisions(store.as_ref(), analysis.id).await,
        [(1, "continue".to_owned()), (2, "advance".to_owned())]
    );

    drive(&successor, store.as_ref(), &clock, &[analysis.id], 20).await;
    let done = get(store.as_ref(), analysis.id).await;
    assert_eq!(done.state, AnalysisState::Promoted);
    assert_every_look_once(store.as_ref(), analysis.id).await;
    assert_eq!(
        assert_each_actuation_once(store.as_ref(), &flags, &done).await,
        changes(&[
            ("set_rollout", 10.0),
            ("set_rollout", 50.0),
            ("set_rollout", 100.0)
        ]),
        "the flag went to 50 % once, by the worker that died"
    );
    store.close().await;
}

/// Regression test for a deadlock seen under load on PostgreSQL: the worker awaited a
/// lease renewal *instead of* polling the step, while the step's write transaction held
/// the row lock the renewal waited for. Renewals now run beside the step.
#[tokio::test]
async fn a_lease_renewal_waiting_on_the_steps_own_row_lock_does_not_deadlock_the_step() {
    let dir = tempfile::tempdir().unwrap();
    let store = sqlite_file(&dir).await;
    let flags = Arc::new(CountingActuator::default());
    let clock = Arc::new(ManualClock::new(T0));
    let locking = Arc::new(FaultyStore::new(store.clone(), Fault::RowLock));
    let worker = Worker::new(
        locking.clone(),
        registry(5, &flags),
        clock.clone(),
        options("renewing", 1),
    );
    let analysis = submit(store.as_ref(), "healthy", "checkout").await;

    let step = tokio::spawn(async move { worker.try_execute_task().await });
    // The step's write takes the row lock; then a renewal falls due.
    tokio::time::timeout(Duration::from_secs(30), locking.look_waiting.notified())
        .await
        .expect("the step reaches its write");
    clock.advance(LEASE.as_secs_f64() / 3.0 + 1.0);
    let stepped = tokio::time::timeout(Duration::from_secs(30), step)
        .await
        .expect("deadlock: the step's write waited for a renewal that waited for the step")
        .unwrap();
    assert_eq!(stepped.unwrap(), 1, "the start was recorded");
    assert_eq!(
        locking.renewals.load(Ordering::SeqCst),
        1,
        "one renewal fell due"
    );
    let started = get(store.as_ref(), analysis.id).await;
    assert_eq!(started.state, AnalysisState::Running);
    assert_eq!(started.lease_owner, None, "the lease was released");
    store.close().await;
}

/// The flag store is down when the rollback comes: the kill switch is retried with
/// backoff until its deadline, the analysis becomes `rollback_failed` (loudly, with the
/// reason), the worker keeps trying every `rollback_retry`, and once the store is back
/// the flag is switched off and the analysis ends rolled back.
#[tokio::test]
async fn a_rollback_while_the_flag_store_is_down_is_retried_until_the_store_returns() {
    use canary::actuators::retry::{RetryPolicy, RetryingActuator};

    let dir = tempfile::tempdir().unwrap();
    let store = sqlite_file(&dir).await;
    let flags = Arc::new(CountingActuator::default());
    let retrying = RetryingActuator::new(
        Arc::clone(&flags) as Arc<dyn Actuator>,
        RetryPolicy {
            initial_backoff: Duration::from_millis(10),
            max_backoff: Duration::from_millis(40),
            deadline: Duration::from_millis(200),
        },
    );
    let registry = Arc::new(
        Registry::new()
            .with_source("regressing", regressing(13))
            .with_actuator("flags", Arc::new(retrying)),
    );
    let clock = Arc::new(ManualClock::new(T0));
    let worker = Worker::new(store.clone(), registry, clock.clone(), options("w1", 1));
    // The people on call read a Slack-style channel.
    let (worker, messages) = oncall_channel(worker).await;
    let analysis = submit(store.as_ref(), "regressing", "search").await;

    // Look by look until the rollback is decided, with the store going down just before.
    let mut failed = None;
    for _ in 0..20 {
        let current = get(store.as_ref(), analysis.id).await;
        if current.state == AnalysisState::RollbackFailed {
            failed = Some(current);
            break;
        }
        assert!(current.state.is_claimable(), "{:?}", current.state);
        if current.traffic == Some(50.0) {
            flags.down.store(true, Ordering::SeqCst);
        }
        clock.set(current.next_look_at.unwrap_or(clock.now()).max(clock.now()));
        worker.try_execute_task().await.unwrap();
    }
    let failed = failed.expect("the rollback failed while the store was down");
    let reason = failed.reasons.join(" ");
    assert!(
        reason.contains("ROLLBACK OF FLAG \"search\" FAILED"),
        "{reason}"
    );
    assert!(reason.contains("attempts over"), "retried first: {reason}");
    assert!(reason.contains("tried again every 30 s"), "{reason}");
    assert_eq!(failed.next_look_at, Some(clock.now() + 30.0));
    assert!(failed.lease_owner.is_none());
    let refused_first = flags.refused.load(Ordering::SeqCst);
    assert!(refused_first > 1, "retried with backoff: {refused_first}");
    assert!(flags.current("search").await.unwrap().enabled, "still on");

    // Still down 30 s later: still failed, and tried again.
    assert_eq!(worker.try_execute_task().await.unwrap(), 0, "not due yet");
    clock.advance(30.0);
    assert_eq!(worker.try_execute_task().await.unwrap(), 1);
    let still = get(store.as_ref(), analysis.id).await;
    assert_eq!(still.state, AnalysisState::RollbackFailed);
    assert!(flags.refused.load(Ordering::SeqCst) > refused_first);

    // The store is back: the next retry switches the flag off.
    flags.down.store(false, Ordering::SeqCst);
    clock.advance(30.0);
    assert_eq!(worker.try_execute_task().await.unwrap(), 1);
    let done = get(store.as_ref(), analysis.id).await;
    assert_eq!(done.state, AnalysisState::RolledBack, "{:?}", done.reasons);
    assert!(
        done.reasons[0].contains("rollback applied on a retry, 1 min after it first failed"),
        "{:?}",
        done.reasons
    );
    assert_eq!(done.next_look_at, None);
    assert!(!flags.current("search").await.unwrap().enabled);
    assert_eq!(
        flags.changes_of("search"),
        changes(&[("set_rollout", 10.0), ("set_rollout", 50.0), ("kill", 0.0)]),
        "the kill switch was pulled once, when the store was back"
    );
    // Every attempt is on record: the failed ones and the one that worked.
    let kills: Vec<(String, ActuationState)> = store
        .list_actuations(analysis.id)
        .await
        .unwrap()
        .into_iter()
        .filter(|a| a.action == "kill")
        .map(|a| (a.idempotency_key, a.state))
        .collect();
    assert_eq!(kills.len(), 3, "{kills:?}");
    assert_eq!(kills.last().unwrap().1, ActuationState::Applied);
    assert_eq!(
        worker.try_execute_task().await.unwrap(),
        0,
        "done: never claimed again"
    );

    // The channel was told loudly that the rollback failed, then that it happened.
    let texts = channel_texts(&messages, 2).await;
    assert_eq!(
        texts.len(),
        2,
        "one per state reached, not one per retry: {texts:#?}"
    );
    assert!(
        texts
            .iter()
            .any(|t| t.contains("Rollback FAILED for search")),
        "{texts:#?}"
    );
    assert!(
        texts.iter().any(|t| t.contains("Rolled back search")),
        "{texts:#?}"
    );
    store.close().await;
}

/// A progressive rollback run by a worker: traffic comes down in steps a reduction
/// apart, each change recorded once, and the channel hears of the rollback when it
/// starts and when it ends.
#[tokio::test]
async fn a_worker_rolls_back_progressively_and_announces_the_start_and_the_end() {
    let dir = tempfile::tempdir().unwrap();
    let store = sqlite_file(&dir).await;
    let flags = Arc::new(CountingActuator::default());
    let clock = Arc::new(ManualClock::new(T0));
    let worker = Worker::new(
        store.clone(),
        registry(17, &flags),
        clock.clone(),
        options("w1", 1),
    );
    let (worker, messages) = oncall_channel(worker).await;
    let mut new = request("regressing", "search");
    new.profile_text = PROFILE.replace(
        "consecutive_failures = 1\n",
        "consecutive_failures = 1\nrollback = \"progressive\"\nrollback_over = \"2m\"\nrollback_steps = 2\n",
    );
    assert_ne!(new.profile_text, PROFILE);
    let analysis = store.create_analysis(new, T0).await.unwrap();

    drive(&worker, store.as_ref(), &clock, &[analysis.id], 30).await;
    let done = get(store.as_ref(), analysis.id).await;
    assert_eq!(done.state, AnalysisState::RolledBack, "{:?}", done.reasons);
    let made = assert_each_actuation_once(store.as_ref(), &flags, &done).await;
    let (last, reductions) = made.split_last().unwrap();
    assert_eq!(last, &("kill".to_owned(), 0.0));
    let before = reductions[reductions.len() - 2].1;
    assert_eq!(
        reductions.last().unwrap(),
        &("set_rollout".to_owned(), before / 2.0),
        "half way down first: {made:?}"
    );

    let texts = channel_texts(&messages, 2).await;
    assert!(
        texts
            .iter()
            .any(|t| t.contains("Rolling back search progressively")),
        "{texts:#?}"
    );
    assert!(
        texts.iter().any(|t| t.contains("Rolled back search")),
        "{texts:#?}"
    );
    store.close().await;
}

#[tokio::test]
async fn two_postgres_workers_run_two_hundred_analyses_to_completion_judging_each_look_once() {
    in_postgres_schema(|schema| async move {
        let started = Instant::now();
        let setup = schema.store(2).await;
        let flags = Arc::new(CountingActuator::default());
        // Both instances read one clock, as machines with synchronised clocks would:
        // sixty analysis seconds a wall second.
        let clock: Arc<dyn Clock> = Arc::new(CompressedClock::new(T0, 60.0));
        let mut analyses = Vec::new();
        for index in 0..200 {
            let source = if index % 4 == 0 {
                "regressing"
            } else {
                "healthy"
            };
            analyses.push(submit(setup.as_ref(), source, &format!("flag-{index}")).await);
        }
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let mut instances = Vec::new();
        for name in ["instance-a", "instance-b"] {
            let store = schema.store(8).await;
            let mut options = options(name, 16);
            options.lease = Duration::from_secs(60);
            let worker = Worker::new(store.clone(), registry(5, &flags), clock.clone(), options);
            let mut stopped = stopped.clone();
            instances.push((
                store,
                tokio::spawn(worker.run_until_stopped(async move {
                    let _ = stopped.wait_for(|stop| *stop).await;
                })),
            ));
        }
        let deadline = Instant::now() + Duration::from_secs(180);
        loop {
            let counts = setup.counts_by_state().await.unwrap();
            let finished: u64 = counts
                .iter()
                .filter(|(state, _)| state.is_final())
                .map(|(_, n)| n)
                .sum();
            if finished == 200 {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "unfinished after 180 s: {counts:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let finished_after = started.elapsed();
        stop.send(true).unwrap();
        for (store, instance) in instances {
            instance.await.unwrap();
            store.close().await;
        }

        let mut states = BTreeMap::<AnalysisState, usize>::new();
        for submitted in &analyses {
            let analysis = get(setup.as_ref(), submitted.id).await;
            *states.entry(analysis.state).or_default() += 1;
            assert!(
                matches!(
                    analysis.state,
                    AnalysisState::Promoted | AnalysisState::RolledBack
                ),
                "{}: {:?} {:?}",
                analysis.flag,
                analysis.state,
                analysis.reasons
            );
            assert_eq!(analysis.lease_owner, None, "every lease released");
            let looks = assert_every_look_once(setup.as_ref(), analysis.id).await;
            let snapshot_looks = analysis.runner_state.state().unwrap().looks;
            assert_eq!(looks as u64, snapshot_looks, "{}", analysis.flag);
            let made = assert_each_actuation_once(setup.as_ref(), &flags, &analysis).await;
            let last = made.last().unwrap();
            match analysis.state {
                AnalysisState::Promoted => assert_eq!(*last, ("set_rollout".to_owned(), 100.0)),
                _ => assert_eq!(*last, ("kill".to_owned(), 0.0)),
            }
        }
        // Every regressing canary is rolled back; healthy ones are mostly promoted.
        assert!(states[&AnalysisState::RolledBack] >= 50, "{states:?}");
        assert!(states[&AnalysisState::Promoted] >= 140, "{states:?}");
        setup.close().await;
        eprintln!("200 analyses finished in {finished_after:?}: {states:?}");
    })
    .await;
}

fn manual(action: AuditAction, new_state: AnalysisState, expected_version: i64) -> ManualAction {
    ManualAction {
        actor: "sre@example.com".to_owned(),
        action,
        reason: format!("{} by hand", action.as_str()),
        new_state,
        expected_version,
    }
}

#[tokio::test]
async fn manual_promote_and_rollback_reach_the_flag_through_a_worker_and_pause_holds_until_resume()
{
    let store = StoreConfig::new("sqlite::memory:").build().await.unwrap();
    let flags = Arc::new(CountingActuator::default());
    let clock = Arc::new(ManualClock::new(T0));
    let worker = Worker::new(
        store.clone(),
        registry(9, &flags),
        clock.clone(),
        options("w1", 4),
    );
    let paused = submit(store.as_ref(), "healthy", "paused-flag").await;
    let promoted = submit(store.as_ref(), "healthy", "promoted-flag").await;
    let rolled_back = submit(store.as_ref(), "healthy", "rolled-back-flag").await;
    let ids = [paused.id, promoted.id, rolled_back.id];
    // Start all three and take one look of each.
    drive(&worker, store.as_ref(), &clock, &ids, 2).await;
    for id in ids {
        assert_eq!(decisions(store.as_ref(), id).await.len(), 1);
    }

    // Pause: due looks pass without it.
    let current = get(store.as_ref(), paused.id).await;
    store
        .apply_manual_action(
            paused.id,
            manual(AuditAction::Pause, AnalysisState::Paused, current.version),
            clock.now(),
        )
        .await
        .unwrap();
    // Promote and roll back by hand, mid-stage: a worker claims them at once.
    for (id, action) in [
        (promoted.id, AuditAction::Promote),
        (rolled_back.id, AuditAction::Rollback),
    ] {
        let current = get(store.as_ref(), id).await;
        let requested = store
            .apply_manual_action(
                id,
                manual(action, AnalysisState::Running, current.version),
                clock.now(),
            )
            .await
            .unwrap();
        assert_eq!(requested.requested_action, Some(action));
    }
    assert_eq!(worker.try_execute_task().await.unwrap(), 2);

    let promoted = get(store.as_ref(), promoted.id).await;
    assert_eq!(promoted.state, AnalysisState::Promoted);
    assert_eq!(promoted.requested_action, None);
    assert_eq!(promoted.traffic, Some(100.0));
    assert_eq!(
        promoted.reasons,
        ["promoted by hand by sre@example.com: promote by hand"]
    );
    let flag = flags.current("promoted-flag").await.unwrap();
    assert!(flag.enabled && flag.rollout.value() == 100.0);
    assert_eq!(
        assert_each_actuation_once(store.as_ref(), &flags, &promoted).await,
        changes(&[("set_rollout", 10.0), ("set_rollout", 100.0)])
    );
    assert_eq!(
        decisions(store.as_ref(), promoted.id).await.len(),
        1,
        "no look taken"
    );

    let rolled_back = get(store.as_ref(), rolled_back.id).await;
    assert_eq!(rolled_back.state, AnalysisState::RolledBack);
    assert_eq!(rolled_back.traffic, Some(0.0));
    assert!(!flags.current("rolled-back-flag").await.unwrap().enabled);
    assert_eq!(
        assert_each_actuation_once(store.as_ref(), &flags, &rolled_back).await,
        changes(&[("set_rollout", 10.0), ("kill", 0.0)])
    );

    // Well past its due time, the paused analysis is still not claimed.
    clock.advance(600.0);
    assert_eq!(worker.try_execute_task().await.unwrap(), 0);
    let still = get(store.as_ref(), paused.id).await;
    assert_eq!(still.state, AnalysisState::Paused);
    assert_eq!(decisions(store.as_ref(), paused.id).await.len(), 1);

    // Resumed, it continues (judging current data, it is long overdue) to promotion.
    store
        .apply_manual_action(
            paused.id,
            manual(AuditAction::Resume, AnalysisState::Running, still.version),
            clock.now(),
        )
        .await
        .unwrap();
    assert_eq!(worker.try_execute_task().await.unwrap(), 1);
    let resumed_look = store.list_looks(paused.id).await.unwrap();
    assert_eq!(resumed_look.len(), 2);
    assert_eq!(
        resumed_look[1].at,
        clock.now(),
        "an overdue look judges now"
    );
    drive(&worker, store.as_ref(), &clock, &[paused.id], 20).await;
    let finished = get(store.as_ref(), paused.id).await;
    assert_eq!(
        finished.state,
        AnalysisState::Promoted,
        "{:?}",
        finished.reasons
    );
    assert_every_look_once(store.as_ref(), paused.id).await;
    assert_each_actuation_once(store.as_ref(), &flags, &finished).await;
    let audit: Vec<AuditAction> = store
        .audit_log(paused.id)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.action)
        .collect();
    assert_eq!(audit, [AuditAction::Pause, AuditAction::Resume]);
    store.close().await;
}

#[tokio::test]
async fn an_analysis_naming_an_unknown_source_or_a_broken_profile_fails_and_the_worker_goes_on() {
    let store = StoreConfig::new("sqlite::memory:").build().await.unwrap();
    let flags = Arc::new(CountingActuator::default());
    let clock = Arc::new(ManualClock::new(T0));
    let worker = Worker::new(
        store.clone(),
        registry(1, &flags),
        clock.clone(),
        options("w1", 4),
    );
    let unknown = submit(store.as_ref(), "nowhere", "a").await;
    let broken_request = NewAnalysis {
        profile_text: "name = \"broken\"\n[[stages]]\ntraffic = 500\n".to_owned(),
        ..request("healthy", "b")
    };
    let broken = store.create_analysis(broken_request, T0).await.unwrap();
    let fine = submit(store.as_ref(), "healthy", "c").await;

    assert_eq!(worker.try_execute_task().await.unwrap(), 3);
    let unknown = get(store.as_ref(), unknown.id).await;
    assert_eq!(unknown.state, AnalysisState::Failed);
    assert_eq!(unknown.reasons, ["no metric source is named \"nowhere\""]);
    let broken = get(store.as_ref(), broken.id).await;
    assert_eq!(broken.state, AnalysisState::Failed);
    assert!(
        broken.reasons[0].contains("needs at least one [[metrics]] table"),
        "{:?}",
        broken.reasons
    );
    assert_eq!(
        get(store.as_ref(), fine.id).await.state,
        AnalysisState::Running
    );
    assert!(flags.changes_of("a").is_empty() && flags.changes_of("b").is_empty());
    store.close().await;
}

/// The chat links of a rollout waiting for review: the Slack message carries signed
/// "Roll back…" and "Promote…" buttons; opening one shows a confirmation page and
/// changes nothing; its form, with a reason, requests the rollback (audited as
/// `action-link`), which the worker then carries out. A forged or expired link, a form
/// without a reason, and a JSON post are refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_review_notification_links_to_a_confirmed_rollback_that_the_worker_carries_out() {
    use canary::notify::links::ActionLinks;
    let secret = "s".repeat(40);
    let dir = tempfile::tempdir().unwrap();
    let store = sqlite_file(&dir).await;
    let flags = Arc::new(CountingActuator::default());
    let clock = Arc::new(ManualClock::new(T0));
    // The API on the same store and clock, signing with the same secret.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let links = ActionLinks::new(
        &base,
        canary::sources::prometheus::Secret::new(secret.clone()),
        Duration::from_secs(3600),
    );
    let mut state = canary::api::ApiState::new(
        store.clone(),
        &canary::config::Settings::load_from(None, Some(BTreeMap::new())).unwrap(),
        Arc::new(canary::telemetry::EngineMetrics::new()),
    )
    .unwrap();
    state.clock = clock.clone();
    state.action_links = Some(Arc::new(links.clone()));
    let router = canary::api::router(state);
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });

    let source = Arc::new(SyntheticSource::new(
        7,
        5.0,
        BTreeMap::from([(
            "latency_p95".to_owned(),
            MetricModel::same_samples(latency(0.4)),
        )]),
    ));
    let registry = Arc::new(
        Registry::new()
            .with_source("slow", source)
            .with_actuator("flags", Arc::clone(&flags) as Arc<dyn Actuator>),
    );
    let worker = Worker::new(store.clone(), registry, clock.clone(), options("w1", 1))
        .action_links(Arc::new(links));
    let (worker, messages) = oncall_channel(worker).await;
    let mut request = request("slow", "checkout");
    request.profile_text = format!(
        "{PROFILE}\n[[triggers]]\nname = \"p95 latency above 300 ms for 1 minute\"\n\
         metric = \"latency_p95\"\nabove = 0.3\nfor = \"1m\"\naction = \"hold\"\n"
    );
    let analysis = store.create_analysis(request, T0).await.unwrap();
    drive(&worker, store.as_ref(), &clock, &[analysis.id], 2).await;
    assert_eq!(
        get(store.as_ref(), analysis.id).await.state,
        AnalysisState::AwaitingReview
    );
    channel_texts(&messages, 1).await;
    let message = messages.lock().unwrap()[0].clone();
    let buttons = message["blocks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|block| block["type"] == "actions")
        .unwrap_or_else(|| panic!("no buttons in {message:#}"))["elements"]
        .as_array()
        .unwrap()
        .clone();
    let url_of = |label: &str| {
        buttons
            .iter()
            .find(|b| b["text"]["text"].as_str().unwrap().starts_with(label))
            .unwrap()["url"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let rollback = url_of("Roll back");
    assert!(url_of("Promote").contains("action=promote"));
    assert!(rollback.starts_with(&format!("{base}/v1/action-links/{}?", analysis.id)));

    let http = reqwest::Client::new();
    // Opening the link (as a chat preview would) shows the page and changes nothing.
    let page = http.get(&rollback).send().await.unwrap();
    assert_eq!(page.status(), 200);
    for (name, value) in [
        ("x-frame-options", "DENY"),
        ("referrer-policy", "no-referrer"),
        ("cache-control", "no-store"),
    ] {
        assert_eq!(page.headers()[name], value);
    }
    assert!(
        page.headers()["content-security-policy"]
            .to_str()
            .unwrap()
            .contains("frame-ancestors 'none'")
    );
    let html = page.text().await.unwrap();
    assert!(html.contains("<form method=\"post\">"), "{html}");
    assert!(html.contains("Roll back checkout?"), "{html}");
    let version = get(store.as_ref(), analysis.id).await.version;
    assert_eq!(
        get(store.as_ref(), analysis.id).await.state,
        AnalysisState::AwaitingReview
    );

    let query: BTreeMap<String, String> = reqwest::Url::parse(&rollback)
        .unwrap()
        .query_pairs()
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    let post_form = |fields: Vec<(&str, String)>| {
        http.post(format!("{base}/v1/action-links/{}", analysis.id))
            .form(&fields)
            .send()
    };
    let field = |name: &str| query[name].clone();
    // Refused: no reason; a signature for another action; an expired link; JSON.
    let refused = [
        (
            vec![
                ("action", field("action")),
                ("expires", field("expires")),
                ("sig", field("sig")),
            ],
            422,
        ),
        (
            vec![
                ("action", "promote".to_owned()),
                ("expires", field("expires")),
                ("sig", field("sig")),
                ("reason", "sneaky".to_owned()),
            ],
            403,
        ),
        (
            vec![
                ("action", "rollback".to_owned()),
                ("expires", (T0 as u64 - 1).to_string()),
                (
                    "sig",
                    canary::signing::sign_action_link(
                        secret.as_bytes(),
                        &analysis.id.to_string(),
                        "rollback",
                        T0 as u64 - 1,
                    ),
                ),
                ("reason", "too late".to_owned()),
            ],
            410,
        ),
    ];
    for (fields, status) in refused {
        let response = post_form(fields.clone()).await.unwrap();
        assert_eq!(response.status().as_u16(), status, "{fields:?}");
    }
    let json = http
        .post(format!("{base}/v1/action-links/{}", analysis.id))
        .json(&serde_json::json!({"action": "rollback", "expires": field("expires"), "sig": field("sig"), "reason": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(json.status(), 415);
    assert_eq!(
        get(store.as_ref(), analysis.id).await.version,
        version,
        "nothing written"
    );

    // The page's form: recorded, audited, carried out by the worker.
    let done = post_form(vec![
        ("action", field("action")),
        ("expires", field("expires")),
        ("sig", field("sig")),
        (
            "reason",
            "p95 is over budget; rolling back from chat".to_owned(),
        ),
    ])
    .await
    .unwrap();
    assert_eq!(done.status(), 200);
    assert!(
        done.text()
            .await
            .unwrap()
            .contains("Roll back checkout requested")
    );
    let audit = store.audit_log(analysis.id).await.unwrap();
    let entry = audit.last().unwrap();
    assert_eq!(entry.actor, "action-link");
    assert_eq!(entry.reason, "p95 is over budget; rolling back from chat");
    drive(&worker, store.as_ref(), &clock, &[analysis.id], 2).await;
    assert_eq!(
        get(store.as_ref(), analysis.id).await.state,
        AnalysisState::RolledBack
    );
    store.close().await;
}
