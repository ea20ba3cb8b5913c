//! The store's records, its errors and the `Store` trait.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::domain::Verdict;
use crate::scheduler::records::{self, Look, RunnerState};

/// The largest page [`Store::list_analyses`] returns; larger limits are cut to it.
pub const MAX_PAGE: u32 = 1000;

/// What went wrong in a store call, in the kinds callers branch on.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// No analysis with that id, or no actuation with that idempotency key.
    #[error("not found: {0}")]
    NotFound(String),
    /// The worker does not hold an unexpired lease on the analysis: it must stop working
    /// on it (another worker may have taken it over).
    #[error("worker {worker:?} does not hold the lease on analysis {analysis}")]
    LeaseLost {
        /// The analysis.
        analysis: Uuid,
        /// The worker that asked.
        worker: String,
    },
    /// The write lost a race or breaks a rule: the version moved since the caller read
    /// it, the analysis is final, a look number was already recorded, or an idempotency
    /// key belongs to another intent. Re-read and decide again.
    #[error("conflict: {0}")]
    Conflict(String),
    /// The caller passed something the store cannot keep: a malformed cursor, a
    /// non-finite time, a zero lease, a look record for another analysis.
    #[error("invalid request to the store: {0}")]
    Invalid(String),
    /// The database cannot be reached or refused the work (connection, pool timeout,
    /// lock timeout, I/O). Retrying later may succeed.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// Another active analysis owns the flag (one owner per (actuator target, flag),
    /// enforced by a unique index): the new analysis was not stored.
    #[error(
        "flag {flag:?} on actuator {actuator:?} is owned by analysis {owner}, which is {state}"
    )]
    FlagOwned {
        /// The flag.
        flag: String,
        /// The actuator named in the refused submission.
        actuator: String,
        /// The analysis that owns the flag.
        owner: Uuid,
        /// Its state (one of the owning states, [`AnalysisState::owns_flag`]).
        state: AnalysisState,
    },
    /// Another analysis was stored under the submission's
    /// [`NewAnalysis::submit_key`] (read it with [`Store::analysis_by_submit_key`]).
    #[error("an analysis is already stored under submit key {0:?}")]
    SubmitKeyTaken(String),
    /// The database holds something this version cannot read: an unknown state, JSON
    /// that does not parse, a schema newer than the code.
    #[error("store data is corrupt or from a newer version: {0}")]
    Corrupt(String),
}

/// Where an analysis stands.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum AnalysisState {
    /// Submitted; no worker has started it yet.
    Pending,
    /// A worker is taking looks.
    Running,
    /// Stopped by a person; not claimed until resumed.
    Paused,
    /// Every stage passed: the flag is at 100 %. Final.
    Promoted,
    /// The kill switch was pulled. Final.
    RolledBack,
    /// Held past its hold timeout: a person decides. Not claimed.
    AwaitingReview,
    /// The kill switch could not be pulled: the canary may still serve traffic. Final
    /// (for the engine; a person acts).
    RollbackFailed,
    /// The analysis could not run (bad configuration, a source or flag that never
    /// answered). Final.
    Failed,
}

impl AnalysisState {
    /// Every state, in declaration order.
    pub const ALL: [AnalysisState; 8] = [
        AnalysisState::Pending,
        AnalysisState::Running,
        AnalysisState::Paused,
        AnalysisState::Promoted,
        AnalysisState::RolledBack,
        AnalysisState::AwaitingReview,
        AnalysisState::RollbackFailed,
        AnalysisState::Failed,
    ];

    /// Whether the verdict is final: promoted, rolled back, a rollback that could not be
    /// applied yet (the verdict stands; the engine keeps trying), or failed.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            AnalysisState::Promoted
                | AnalysisState::RolledBack
                | AnalysisState::RollbackFailed
                | AnalysisState::Failed
        )
    }

    /// Whether the engine is done with the analysis: it is never claimed again and a
    /// look cannot change it. `RollbackFailed` is final but not done: its rollback is
    /// tried again.
    pub fn is_done(self) -> bool {
        self.is_final() && self != AnalysisState::RollbackFailed
    }

    /// Whether an analysis in this state owns its flag: it may still move it (pending,
    /// running), it left the flag at a partial share that a resume or a manual action
    /// moves again (paused, awaiting review), or its kill switch is being retried
    /// (rollback failed). At most one analysis per (actuator target, flag) is in one of
    /// these states; the store enforces it with a unique index.
    pub fn owns_flag(self) -> bool {
        !self.is_done()
    }

    /// Whether workers claim analyses in this state (when due and unleased;
    /// `awaiting_review` only once it has a next look, that is, once started: it is
    /// watched for its rollback triggers while it waits for a person).
    pub fn is_claimable(self) -> bool {
        matches!(
            self,
            AnalysisState::Pending
                | AnalysisState::Running
                | AnalysisState::RollbackFailed
                | AnalysisState::AwaitingReview
        )
    }

    /// The snake_case name used in the database, the API and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            AnalysisState::Pending => "pending",
            AnalysisState::Running => "running",
            AnalysisState::Paused => "paused",
            AnalysisState::Promoted => "promoted",
            AnalysisState::RolledBack => "rolled_back",
            AnalysisState::AwaitingReview => "awaiting_review",
            AnalysisState::RollbackFailed => "rollback_failed",
            AnalysisState::Failed => "failed",
        }
    }
}

impl fmt::Display for AnalysisState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for AnalysisState {
    type Err = String;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        AnalysisState::ALL
            .into_iter()
            .find(|state| state.as_str() == name)
            .ok_or_else(|| format!("unknown analysis state {name:?}"))
    }
}

/// What a pipeline submits: everything needed to run the analysis, resolved by name.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewAnalysis {
    /// The analysis profile's name.
    pub profile_name: String,
    /// The profile's TOML as it was at submission, so a later edit of the file cannot
    /// change a running analysis.
    pub profile_text: String,
    /// The feature flag the actuator moves.
    pub flag: String,
    /// The named metric source (declared in settings).
    pub source: String,
    /// The named actuator (declared in settings).
    pub actuator: String,
    /// Label matchers that select the baseline.
    pub baseline_scope: String,
    /// Label matchers that select the canary.
    pub canary_scope: String,
    /// Judge and record, never actuate.
    pub dry_run: bool,
    /// When to start, Unix seconds; `None` starts at once.
    pub start_at: Option<f64>,
    /// Who owns the flag while the analysis is active: the actuator's target as the
    /// server resolved it from settings (see [`crate::actuators::ActuatorConfig::owner`])
    /// and the flag, unique among active analyses. `None` owns nothing (dry runs).
    #[serde(default)]
    pub owner: Option<String>,
    /// Start on a flag already beyond the plan's first stage, from the stage at or
    /// below its current share, instead of refusing it.
    #[serde(default)]
    pub adopt: bool,
    /// A key that names this analysis for good (see [`Store::analysis_by_submit_key`]):
    /// no two analyses share one, whatever their states. `None` for ordinary
    /// submissions.
    #[serde(default)]
    pub submit_key: Option<String>,
}

/// A stored analysis.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Analysis {
    /// A random (v4) UUID, assigned by the store.
    pub id: Uuid,
    /// The analysis profile's name.
    pub profile_name: String,
    /// The profile's TOML as submitted.
    pub profile_text: String,
    /// The feature flag the actuator moves.
    pub flag: String,
    /// The named metric source.
    pub source: String,
    /// The named actuator.
    pub actuator: String,
    /// Label matchers that select the baseline.
    pub baseline_scope: String,
    /// Label matchers that select the canary.
    pub canary_scope: String,
    /// Judge and record, never actuate.
    pub dry_run: bool,
    /// When it was asked to start, Unix seconds.
    pub start_at: Option<f64>,
    /// Where it stands.
    pub state: AnalysisState,
    /// The 0-based index of the current stage, once started.
    pub current_stage: Option<usize>,
    /// The canary's traffic in percent, once started.
    pub traffic: Option<f64>,
    /// The latest look's verdict.
    pub latest_verdict: Option<Verdict>,
    /// Why it stands where it does, deciding reasons first.
    pub reasons: Vec<String>,
    /// The runner's snapshot, enough to continue after a restart.
    pub runner_state: Snapshot,
    /// When the next look is due, Unix seconds; `None` means at once.
    pub next_look_at: Option<f64>,
    /// 1 when created, bumped by every content write.
    pub version: i64,
    /// The worker holding the lease, if any (it may have expired).
    pub lease_owner: Option<String>,
    /// When that lease expires, Unix seconds.
    pub lease_expires_at: Option<f64>,
    /// When it was submitted, Unix seconds.
    pub created_at: f64,
    /// When its content last changed, Unix seconds.
    pub updated_at: f64,
    /// A manual promote or rollback waiting for a worker to carry it out (only the
    /// scheduler calls actuators). Set by [`Store::apply_manual_action`], cleared by the
    /// next [`Store::record_look`].
    pub requested_action: Option<AuditAction>,
    /// The owner key of [`NewAnalysis::owner`].
    #[serde(default)]
    pub owner: Option<String>,
    /// Whether the submission asked to adopt a flag beyond the first stage.
    #[serde(default)]
    pub adopt: bool,
    /// The key of [`NewAnalysis::submit_key`].
    #[serde(default)]
    pub submit_key: Option<String>,
}

impl Analysis {
    /// Whether `worker` holds an unexpired lease at `now`.
    pub fn is_leased_by(&self, worker: &str, now: f64) -> bool {
        self.lease_owner.as_deref() == Some(worker)
            && self.lease_expires_at.is_some_and(|expires| now < expires)
    }
}

/// The runner's snapshot as an analysis keeps it.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum Snapshot {
    /// The rollout has not started.
    #[default]
    None,
    /// The runner's state.
    State(Box<RunnerState>),
    /// A stored snapshot this build cannot read (written by a newer canary, or
    /// damaged): kept exactly as it is, and the analysis is not stepped.
    Unreadable {
        /// The stored JSON.
        json: String,
        /// Why it cannot be read.
        error: String,
    },
}

impl Snapshot {
    /// The snapshot of `state`.
    pub fn of(state: RunnerState) -> Self {
        Snapshot::State(Box::new(state))
    }

    /// The runner's state, when the snapshot holds a readable one.
    pub fn state(&self) -> Option<&RunnerState> {
        match self {
            Snapshot::State(state) => Some(state),
            Snapshot::None | Snapshot::Unreadable { .. } => None,
        }
    }

    /// The snapshot in a stored JSON value (`null`: none).
    pub fn from_stored(value: serde_json::Value) -> Self {
        if value.is_null() {
            return Snapshot::None;
        }
        match records::read_state(&value) {
            Ok(state) => Snapshot::of(state),
            Err(error) => Snapshot::Unreadable {
                json: value.to_string(),
                error,
            },
        }
    }

    /// The JSON value to store: versioned, or the unreadable JSON as it was.
    pub fn to_stored(&self) -> Result<serde_json::Value, StoreError> {
        match self {
            Snapshot::None => Ok(serde_json::Value::Null),
            Snapshot::State(state) => records::write_record(state.as_ref())
                .map_err(|error| StoreError::Invalid(format!("runner state: {error}"))),
            Snapshot::Unreadable { json, .. } => serde_json::from_str(json)
                .map_err(|error| StoreError::Invalid(format!("runner state: {error}"))),
        }
    }
}

impl Serialize for Snapshot {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.to_stored()
            .map_err(serde::ser::Error::custom)?
            .serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Snapshot {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Ok(Snapshot::from_stored(serde_json::Value::deserialize(
            deserializer,
        )?))
    }
}

/// One look as the store keeps it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct LookRecord {
    /// The analysis it belongs to.
    pub analysis_id: Uuid,
    /// 1-based look number over the whole rollout; unique per analysis.
    pub look: u64,
    /// Analysis time, Unix seconds.
    pub at: f64,
    /// 0-based stage index.
    pub stage_index: usize,
    /// The judge's verdict for this look.
    pub verdict: Verdict,
    /// What the runner decided.
    pub decision: String,
    /// The full look as written: its judgement, triggers, decision and reasons. Stores
    /// keep it compactly and versioned (`record_version`) and return it as written.
    #[schema(value_type = Object)]
    pub body: Look,
}

impl LookRecord {
    /// The record of `look`, taken by analysis `analysis_id`.
    pub fn of(analysis_id: Uuid, look: &Look) -> Self {
        LookRecord {
            analysis_id,
            look: look.look,
            at: look.at,
            stage_index: look.stage_index,
            verdict: look.verdict,
            decision: look.decision.name().to_owned(),
            body: look.clone(),
        }
    }
}

/// Everything one worker step writes, in one transaction: the look (if the step took
/// one) and where the analysis stands afterwards. Fields replace the stored ones.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LookUpdate {
    /// The look taken, or `None` for a step without one (the start, a failure).
    pub look: Option<LookRecord>,
    /// The new state.
    pub state: AnalysisState,
    /// The current stage.
    pub current_stage: Option<usize>,
    /// The canary's traffic in percent.
    pub traffic: Option<f64>,
    /// The latest verdict.
    pub latest_verdict: Option<Verdict>,
    /// Why, deciding reasons first.
    pub reasons: Vec<String>,
    /// The runner's snapshot.
    pub runner_state: Snapshot,
    /// When the next look is due; `None` means at once.
    pub next_look_at: Option<f64>,
}

/// Where a flag change stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ActuationState {
    /// Written before the change is made; the change may or may not have happened.
    Intended,
    /// The actuator confirmed the change.
    Applied,
    /// The actuator refused or failed.
    Failed,
}

impl ActuationState {
    /// The snake_case name used in the database.
    pub fn as_str(self) -> &'static str {
        match self {
            ActuationState::Intended => "intended",
            ActuationState::Applied => "applied",
            ActuationState::Failed => "failed",
        }
    }
}

impl FromStr for ActuationState {
    type Err = String;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        match name {
            "intended" => Ok(ActuationState::Intended),
            "applied" => Ok(ActuationState::Applied),
            "failed" => Ok(ActuationState::Failed),
            other => Err(format!("unknown actuation state {other:?}")),
        }
    }
}

/// How an intended flag change ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ActuationOutcome {
    /// The actuator confirmed the change.
    Applied,
    /// The actuator refused or failed.
    Failed,
}

impl From<ActuationOutcome> for ActuationState {
    fn from(outcome: ActuationOutcome) -> Self {
        match outcome {
            ActuationOutcome::Applied => ActuationState::Applied,
            ActuationOutcome::Failed => ActuationState::Failed,
        }
    }
}

/// A flag change about to be made.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewActuation {
    /// The analysis making it.
    pub analysis_id: Uuid,
    /// Unique over all analyses, and derived from what the change is (for example
    /// `"{analysis}/look-{n}/set_rollout-{target}"`), so a replayed step computes the same
    /// key. Keys are single-use: a retry after `Failed` needs a new key.
    pub idempotency_key: String,
    /// `set_rollout` or `kill`.
    pub action: String,
    /// The target traffic in percent.
    pub target: f64,
    /// Analysis time, Unix seconds.
    pub at: f64,
}

/// A flag change as the store keeps it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ActuationRecord {
    /// The analysis that made it.
    pub analysis_id: Uuid,
    /// Its unique key.
    pub idempotency_key: String,
    /// `set_rollout` or `kill`.
    pub action: String,
    /// The target traffic in percent.
    pub target: f64,
    /// Where it stands.
    pub state: ActuationState,
    /// What the actuator said (the state read back, or its error).
    pub detail: Option<String>,
    /// When it was intended, Unix seconds.
    pub at: f64,
    /// When it was completed, Unix seconds.
    pub completed_at: Option<f64>,
}

/// A person's override.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AuditAction {
    /// Stop taking looks.
    Pause,
    /// Take looks again.
    Resume,
    /// Go to 100 % now.
    Promote,
    /// Pull the kill switch now.
    Rollback,
}

impl AuditAction {
    /// The snake_case name used in the database and the API.
    pub fn as_str(self) -> &'static str {
        match self {
            AuditAction::Pause => "pause",
            AuditAction::Resume => "resume",
            AuditAction::Promote => "promote",
            AuditAction::Rollback => "rollback",
        }
    }
}

impl FromStr for AuditAction {
    type Err = String;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        match name {
            "pause" => Ok(AuditAction::Pause),
            "resume" => Ok(AuditAction::Resume),
            "promote" => Ok(AuditAction::Promote),
            "rollback" => Ok(AuditAction::Rollback),
            other => Err(format!("unknown manual action {other:?}")),
        }
    }
}

/// A manual action to apply: the state it sets and who asked why. The caller (the API)
/// decides the new state from the state it read; `expected_version` makes that read
/// count, so an override never lands on an analysis that moved in between.
///
/// Pause and resume only set the state (`Paused`, `Running`). Promote and rollback change
/// the flag, which only a worker may do: their `new_state` must be `Running`, and the
/// store keeps the request in [`Analysis::requested_action`] and makes the analysis due
/// at once, so a worker claims it, actuates and records the final state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ManualAction {
    /// Who asked (from the API's authentication).
    pub actor: String,
    /// What they asked for.
    pub action: AuditAction,
    /// Why, in their words.
    pub reason: String,
    /// The state the analysis moves to.
    pub new_state: AnalysisState,
    /// The version the caller read.
    pub expected_version: i64,
}

/// One manual action as the audit log keeps it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AuditEntry {
    /// The analysis.
    pub analysis_id: Uuid,
    /// Who asked.
    pub actor: String,
    /// What they asked for.
    pub action: AuditAction,
    /// Why.
    pub reason: String,
    /// The state before.
    pub from_state: AnalysisState,
    /// The state after.
    pub to_state: AnalysisState,
    /// When, Unix seconds.
    pub at: f64,
}

/// One page of a listing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Page<T> {
    /// The items, oldest first.
    pub items: Vec<T>,
    /// Pass it back for the next page; `None` when there is none.
    pub next_cursor: Option<String>,
}

/// What the console's analyses page lists ([`Store::overview`]): filters, all optional,
/// and how many rows to return.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct OverviewQuery {
    /// Only analyses in one of these states; empty means every state.
    pub states: Vec<AnalysisState>,
    /// Only analyses whose flag contains this text, ignoring ASCII case.
    pub flag_contains: Option<String>,
    /// Only analyses whose content changed at or after this time, Unix seconds.
    pub updated_since: Option<f64>,
    /// Problems (rolled back, failed) that changed at or after this time sort above the
    /// running analyses; older ones sort with the finished. Unix seconds.
    pub recent_after: f64,
    /// At most this many rows, clamped to `1..=MAX_PAGE`.
    pub limit: u32,
}

/// One analysis as the console lists it: what a row shows, without the runner snapshot
/// (the largest column, which a list never needs).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AnalysisSummary {
    /// Its id.
    pub id: Uuid,
    /// The analysis profile's name.
    pub profile_name: String,
    /// The profile's TOML as submitted (stage names come from it).
    pub profile_text: String,
    /// The feature flag.
    pub flag: String,
    /// Judge and record, never actuate.
    pub dry_run: bool,
    /// When it was asked to start, Unix seconds.
    pub start_at: Option<f64>,
    /// Where it stands.
    pub state: AnalysisState,
    /// The 0-based index of the current stage, once started.
    pub current_stage: Option<usize>,
    /// The canary's traffic in percent, once started.
    pub traffic: Option<f64>,
    /// The latest look's verdict.
    pub latest_verdict: Option<Verdict>,
    /// Why it stands where it does, deciding reasons first.
    pub reasons: Vec<String>,
    /// When the next look is due, Unix seconds.
    pub next_look_at: Option<f64>,
    /// Bumped by every content write.
    pub version: i64,
    /// When it was submitted, Unix seconds.
    pub created_at: f64,
    /// When its content last changed, Unix seconds.
    pub updated_at: f64,
    /// A manual promote or rollback waiting for a worker.
    pub requested_action: Option<AuditAction>,
}

/// The rows of an overview and how many analyses matched its filters in all.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Overview {
    /// The rows, in the console's order (see [`Store::overview`]).
    pub rows: Vec<AnalysisSummary>,
    /// How many analyses match the filters, `rows` or not.
    pub matching: u64,
}

/// A one-shot judgement of a fixed window, as Kayenta's API asks for one: stored by
/// the API, run once by whichever worker claims it, read back by id from any instance.
/// It never moves a flag.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewExecution {
    /// Which API asked (`kayenta`, `flagger`): the request's and result's JSON are
    /// that API's.
    pub kind: String,
    /// What the caller judges again and again (see [`Store::latest_execution`]), if
    /// anything: several executions may share one.
    pub key: Option<String>,
    /// The profile's name.
    pub profile_name: String,
    /// The profile's TOML as it was at the request.
    pub profile_text: String,
    /// The named metric source.
    pub source: String,
    /// What to judge: scopes, window, thresholds (JSON the engine owns).
    pub request: serde_json::Value,
    /// Not before this time, Unix seconds (the window's end: its data must exist).
    pub due_at: f64,
}

/// Where an execution stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExecutionState {
    /// Waiting for a worker.
    Pending,
    /// Claimed by a worker (whose lease may have expired: then it is claimed again).
    Running,
    /// Judged; the result is stored.
    Succeeded,
    /// Could not be judged (the error says why).
    Failed,
}

impl ExecutionState {
    /// The state's stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            ExecutionState::Pending => "pending",
            ExecutionState::Running => "running",
            ExecutionState::Succeeded => "succeeded",
            ExecutionState::Failed => "failed",
        }
    }

    /// Succeeded or failed.
    pub fn is_finished(self) -> bool {
        matches!(self, ExecutionState::Succeeded | ExecutionState::Failed)
    }
}

impl FromStr for ExecutionState {
    type Err = String;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        [
            ExecutionState::Pending,
            ExecutionState::Running,
            ExecutionState::Succeeded,
            ExecutionState::Failed,
        ]
        .into_iter()
        .find(|state| state.as_str() == name)
        .ok_or_else(|| format!("unknown execution state {name:?}"))
    }
}

/// A stored execution.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Execution {
    /// A random (v4) UUID, assigned by the store.
    pub id: Uuid,
    /// Which API asked.
    pub kind: String,
    /// What the caller judges again and again, if anything.
    pub key: Option<String>,
    /// The profile's name.
    pub profile_name: String,
    /// The profile's TOML as requested.
    pub profile_text: String,
    /// The named metric source.
    pub source: String,
    /// What to judge.
    pub request: serde_json::Value,
    /// Where it stands.
    pub state: ExecutionState,
    /// The judgement, once succeeded (`null` before).
    pub result: serde_json::Value,
    /// Why it failed.
    pub error: Option<String>,
    /// How many times a worker claimed it.
    pub attempts: u32,
    /// Not claimed before this time, Unix seconds.
    pub due_at: f64,
    /// The worker holding the lease, if any (it may have expired).
    pub lease_owner: Option<String>,
    /// When that lease expires, Unix seconds.
    pub lease_expires_at: Option<f64>,
    /// When it was requested, Unix seconds.
    pub created_at: f64,
    /// When it last changed, Unix seconds.
    pub updated_at: f64,
    /// When it succeeded or failed, Unix seconds.
    pub finished_at: Option<f64>,
}

/// How a worker ends an execution.
#[derive(Debug, Clone, PartialEq)]
pub enum ExecutionOutcome {
    /// Judged: the result to keep.
    Succeeded(serde_json::Value),
    /// Could not be judged, and trying again would not help: why.
    Failed(String),
}

/// Durable storage of analyses, their looks, actuations and audit log.
///
/// Implementations are safe to share between tasks (`Arc<dyn Store>`). See the module
/// documentation for times, versions, leases and final states.
#[async_trait]
pub trait Store: Send + Sync {
    /// Stores a new analysis in `Pending`, version 1, with `next_look_at = start_at`,
    /// created and updated at `now`. [`StoreError::FlagOwned`], naming the owner, when
    /// `new.owner` is set and an analysis with the same owner and flag is in an owning
    /// state ([`AnalysisState::owns_flag`]); a unique index decides, so of two
    /// concurrent submissions (from any instances) exactly one is stored.
    ///
    /// [`StoreError::SubmitKeyTaken`] when `new.submit_key` is set and an analysis was
    /// already stored under it, in any state (a unique index decides here too).
    async fn create_analysis(&self, new: NewAnalysis, now: f64) -> Result<Analysis, StoreError>;

    /// The analysis with this id, if any.
    async fn get_analysis(&self, id: Uuid) -> Result<Option<Analysis>, StoreError>;

    /// The analysis stored under this [`NewAnalysis::submit_key`], if any.
    async fn analysis_by_submit_key(&self, key: &str) -> Result<Option<Analysis>, StoreError>;

    /// Analyses in creation order (keyset paging: a page never repeats or skips an
    /// analysis that existed when the listing began), optionally only those in `state`.
    /// `limit` is clamped to `1..=MAX_PAGE`; `cursor` is a previous page's `next_cursor`.
    async fn list_analyses(
        &self,
        state: Option<AnalysisState>,
        limit: u32,
        cursor: Option<&str>,
    ) -> Result<Page<Analysis>, StoreError>;

    /// Atomically leases to `worker` up to `limit` due, unleased analyses (see the module
    /// documentation), most overdue first, until `now + lease`. Two concurrent calls
    /// never return the same analysis.
    async fn claim_due(
        &self,
        worker: &str,
        now: f64,
        lease: Duration,
        limit: u32,
    ) -> Result<Vec<Analysis>, StoreError>;

    /// Extends `worker`'s unexpired lease to `now + lease` and returns the new expiry;
    /// [`StoreError::LeaseLost`] when it does not hold one.
    async fn renew_lease(
        &self,
        id: Uuid,
        worker: &str,
        now: f64,
        lease: Duration,
    ) -> Result<f64, StoreError>;

    /// Drops `worker`'s lease (expired or not) so another worker may claim the analysis
    /// at once. Returns whether it held one; releasing twice is harmless.
    async fn release(&self, id: Uuid, worker: &str) -> Result<bool, StoreError>;

    /// Writes one worker step in one transaction: inserts the look (if any) and replaces
    /// the analysis's progress fields, bumping its version and clearing
    /// [`Analysis::requested_action`] (the version check proves the worker saw it). Fails, writing nothing, with
    /// [`StoreError::LeaseLost`] unless `worker` holds an unexpired lease at `now`, then
    /// with [`StoreError::Conflict`] if the version is not `expected_version`, the
    /// analysis is final, or the look number was already recorded.
    async fn record_look(
        &self,
        id: Uuid,
        worker: &str,
        expected_version: i64,
        now: f64,
        update: LookUpdate,
    ) -> Result<Analysis, StoreError>;

    /// Records that `worker` is about to make a flag change, or returns the record
    /// already stored under the same idempotency key (whatever its state), so a replayed
    /// step skips keys already `Applied`. [`StoreError::LeaseLost`] unless `worker` holds
    /// the analysis's lease at `now`; [`StoreError::Conflict`] if the key belongs to
    /// another analysis or action.
    async fn intend_actuation(
        &self,
        worker: &str,
        now: f64,
        intent: NewActuation,
    ) -> Result<ActuationRecord, StoreError>;

    /// Marks an intended change `Applied` or `Failed`. Needs no lease: it records what
    /// happened to the flag, which stays true even if the lease ran out meanwhile.
    /// Completing again with the same outcome returns the record unchanged; with the
    /// other outcome it is a [`StoreError::Conflict`].
    async fn complete_actuation(
        &self,
        idempotency_key: &str,
        outcome: ActuationOutcome,
        detail: &str,
        now: f64,
    ) -> Result<ActuationRecord, StoreError>;

    /// Every look of an analysis, by look number; [`StoreError::NotFound`] for an
    /// unknown analysis.
    async fn list_looks(&self, id: Uuid) -> Result<Vec<LookRecord>, StoreError>;

    /// Every actuation of an analysis, in the order intended.
    async fn list_actuations(&self, id: Uuid) -> Result<Vec<ActuationRecord>, StoreError>;

    /// Sets the analysis's state and appends the audit entry in one transaction, bumping
    /// the version; [`StoreError::Conflict`] if the version is not
    /// `action.expected_version`. Leases are left alone: the holder's next write conflicts
    /// and it re-reads the analysis. A promote or rollback also sets
    /// [`Analysis::requested_action`] and `next_look_at = now`; its `new_state` must be
    /// `Running` ([`StoreError::Invalid`] otherwise), so that a worker claims it.
    async fn apply_manual_action(
        &self,
        id: Uuid,
        action: ManualAction,
        now: f64,
    ) -> Result<Analysis, StoreError>;

    /// Every manual action on an analysis, oldest first.
    async fn audit_log(&self, id: Uuid) -> Result<Vec<AuditEntry>, StoreError>;

    /// How many analyses are in each state; every state is present, zeros included.
    async fn counts_by_state(&self) -> Result<BTreeMap<AnalysisState, u64>, StoreError>;

    /// Deletes, oldest first, up to `limit` analyses the engine is done with (promoted,
    /// rolled back, failed) whose content last changed before `finished_before`, with
    /// their looks, flag changes and audit entries, and returns how many it deleted. It
    /// never deletes an analysis that is not done, one with a flag change still
    /// `Intended` (its outcome is unknown), or one whose lease runs past
    /// `finished_before`. One call is one short transaction; several instances may
    /// prune at once (each analysis is deleted once). The same call deletes up to `limit`
    /// executions that finished before `finished_before` (not counted in the answer).
    /// SQLite returns the freed pages to
    /// the file system when the file allows it (`auto_vacuum = INCREMENTAL`).
    async fn prune_finished(&self, finished_before: f64, limit: u32) -> Result<u64, StoreError>;

    /// Stores a new execution in `Pending`, attempts 0, created and updated at `now`.
    async fn create_execution(&self, new: NewExecution, now: f64) -> Result<Execution, StoreError>;

    /// The execution with this id, if any.
    async fn get_execution(&self, id: Uuid) -> Result<Option<Execution>, StoreError>;

    /// Up to `limit` analyses the engine is not done with (pending, running, paused,
    /// awaiting review, rollback failed), oldest first, each with its latest look if it
    /// has one: what `/metrics` reports per active analysis. Two statements, whatever
    /// the number of analyses.
    async fn active_with_latest_look(
        &self,
        limit: u32,
    ) -> Result<Vec<(Analysis, Option<LookRecord>)>, StoreError>;

    /// The analyses matching `query`'s filters, in the order an on-call engineer reads
    /// them: those waiting for a person (awaiting review, rollback failed) first, then
    /// problems newer than `query.recent_after` (rolled back, failed), then the active
    /// ones (pending, running, paused), then the rest; within each, the most recently
    /// changed first. At most `query.limit` rows, and the number that matched. Two
    /// statements, without the runner snapshots.
    async fn overview(&self, query: &OverviewQuery) -> Result<Overview, StoreError>;

    /// The newest execution stored under `key` ([`NewExecution::key`]), if any.
    async fn latest_execution(&self, key: &str) -> Result<Option<Execution>, StoreError>;

    /// Atomically leases to `worker` until `now + lease` the unfinished execution due
    /// longest ago (`due_at <= now`) that no unexpired lease is on, marks it `Running`
    /// and counts the attempt. Two concurrent calls never return the same execution; one
    /// whose worker died is claimed again once its lease expires.
    async fn claim_execution(
        &self,
        worker: &str,
        now: f64,
        lease: Duration,
    ) -> Result<Option<Execution>, StoreError>;

    /// Ends `worker`'s execution with `outcome` at `now` and clears the lease;
    /// [`StoreError::LeaseLost`] (and nothing written) unless `worker` holds an unexpired
    /// lease on it, [`StoreError::NotFound`] for an unknown id.
    async fn finish_execution(
        &self,
        id: Uuid,
        worker: &str,
        now: f64,
        outcome: ExecutionOutcome,
    ) -> Result<Execution, StoreError>;

    /// Whether the database answers.
    async fn healthcheck(&self) -> Result<(), StoreError>;

    /// Closes the connections, waiting for calls in flight. Later calls fail with
    /// [`StoreError::Unavailable`].
    async fn close(&self);
}
