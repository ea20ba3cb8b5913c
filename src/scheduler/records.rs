//! What a rollout records: each [`Look`] and the runner's [`RunnerState`] snapshot,
//! typed. A store keeps them as JSON with a format version ([`RECORD_VERSION`]) and
//! reads them back with [`read_look`] and [`read_state`]: records written before
//! versions are version 1; keys added since have defaults; numbers JSON cannot hold
//! (NaN, ±∞, written as `null`) read back as NaN. A record of a newer version is
//! refused with a clear error rather than read wrongly.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::actuators::FlagState;
use crate::domain::{Percentage, Verdict};
use crate::judge::Judgement;
use crate::judge::sequential::SequentialState;
use crate::judge::triggers::TriggerCheck;

/// The format version of the looks and snapshots this build writes.
pub const RECORD_VERSION: u64 = 1;

/// The key a stored record keeps its version under.
const VERSION_KEY: &str = "record_version";

/// `record` as stored: its JSON with its format version.
pub fn write_record<T: Serialize>(record: &T) -> Result<Value, String> {
    let mut value = serde_json::to_value(record).map_err(|error| error.to_string())?;
    if let Value::Object(map) = &mut value {
        map.insert(VERSION_KEY.to_owned(), Value::from(RECORD_VERSION));
    }
    Ok(value)
}

/// A stored look.
pub fn read_look(value: &Value) -> Result<Look, String> {
    read_record(value, "look")
}

/// A stored runner snapshot.
pub fn read_state(value: &Value) -> Result<RunnerState, String> {
    read_record(value, "runner state")
}

/// A number a record did not keep (looks from before it was recorded).
fn not_recorded() -> f64 {
    f64::NAN
}

fn read_record<T: serde::de::DeserializeOwned>(value: &Value, what: &str) -> Result<T, String> {
    let Value::Object(map) = value else {
        return Err(format!("a {what} is a JSON object, not {value}"));
    };
    // The record types ignore keys they do not know, the version among them.
    let version = match map.get(VERSION_KEY) {
        None => 1,
        Some(version) => version.as_u64().ok_or_else(|| {
            format!("the {what}'s {VERSION_KEY} is not a whole number: {version}")
        })?,
    };
    if version > RECORD_VERSION {
        return Err(format!(
            "the {what} is of record version {version}, written by a newer canary; this one reads up to {RECORD_VERSION}"
        ));
    }
    T::deserialize(value).map_err(|error| format!("the {what} cannot be read: {error}"))
}

/// Where a rollout stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RolloutStatus {
    /// Still looking.
    Running,
    /// Every stage passed: the flag is at 100 %.
    Promoted,
    /// A trigger fired or the canary failed: the kill switch was pulled.
    RolledBack,
    /// Held past the hold timeout with `on_hold_timeout = "wait"`: a person decides.
    AwaitingReview,
}

impl RolloutStatus {
    /// The verdict a finished rollout reports (exit codes follow it).
    pub fn verdict(self) -> Option<Verdict> {
        match self {
            RolloutStatus::Running => None,
            RolloutStatus::Promoted => Some(Verdict::Promote),
            RolloutStatus::RolledBack => Some(Verdict::Rollback),
            RolloutStatus::AwaitingReview => Some(Verdict::Hold),
        }
    }

    /// How summaries and reports name this status. A dry run changes nothing, so a dry
    /// run that ended says what a real run would have done: `would_promote`,
    /// `would_roll_back` (its verdict and exit code are the same as a real run's).
    pub fn reported(self, dry_run: bool) -> &'static str {
        match (self, dry_run) {
            (RolloutStatus::Running, _) => "running",
            (RolloutStatus::Promoted, false) => "promoted",
            (RolloutStatus::Promoted, true) => "would_promote",
            (RolloutStatus::RolledBack, false) => "rolled_back",
            (RolloutStatus::RolledBack, true) => "would_roll_back",
            (RolloutStatus::AwaitingReview, _) => "awaiting_review",
        }
    }
}

/// What the runner did after one look.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "decision", rename_all = "snake_case")]
pub enum Decision {
    /// Keep looking at this stage.
    Continue,
    /// Hold: do not advance; look again.
    Hold,
    /// Move to the next stage.
    Advance {
        /// The next stage's traffic.
        to: Percentage,
    },
    /// All stages passed.
    Promote,
    /// Go to the fallback (the kill switch unless the plan says otherwise) and end.
    Rollback,
    /// A progressive rollback brings the canary's traffic down one step.
    ReduceTraffic {
        /// The traffic after this step.
        to: Percentage,
    },
    /// Stop and wait for a person.
    AwaitReview,
}

impl Decision {
    /// The decision's name as records and the store's `decision` column keep it
    /// (`advance`, `reduce_traffic`, ...).
    pub fn name(&self) -> &'static str {
        match self {
            Decision::Continue => "continue",
            Decision::Hold => "hold",
            Decision::Advance { .. } => "advance",
            Decision::Promote => "promote",
            Decision::Rollback => "rollback",
            Decision::ReduceTraffic { .. } => "reduce_traffic",
            Decision::AwaitReview => "await_review",
        }
    }
}

/// The decision in words, for people: `advance to 5%`, `hold`, `roll back`.
impl std::fmt::Display for Decision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Decision::Continue => f.write_str("continue"),
            Decision::Hold => f.write_str("hold"),
            Decision::Advance { to } => write!(f, "advance to {to}"),
            Decision::Promote => f.write_str("promote"),
            Decision::Rollback => f.write_str("roll back"),
            Decision::ReduceTraffic { to } => write!(f, "reduce traffic to {to}"),
            Decision::AwaitReview => f.write_str("wait for a person"),
        }
    }
}

/// Everything about one look.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Look {
    /// 1-based look number over the whole rollout.
    pub look: u64,
    /// Analysis time, Unix seconds.
    #[serde(deserialize_with = "crate::domain::non_finite::f64")]
    pub at: f64,
    /// 0-based stage index.
    pub stage_index: usize,
    /// The stage's name.
    pub stage: String,
    /// The canary's traffic during this look.
    pub traffic: Percentage,
    /// The confidence level this look judged at (its share of the error budget).
    #[serde(
        default = "not_recorded",
        deserialize_with = "crate::domain::non_finite::f64"
    )]
    pub confidence_level: f64,
    /// The judge's verdict for this look alone.
    pub verdict: Verdict,
    /// What the runner decided.
    pub decision: Decision,
    /// Why, deciding reasons first.
    #[serde(default)]
    pub reasons: Vec<String>,
    /// The full judgement.
    pub judgement: Judgement,
    /// Every trigger's state at this look.
    #[serde(default)]
    pub triggers: Vec<TriggerCheck>,
    /// Both sides' points since the previous look, downsampled, for the report's charts.
    #[serde(default)]
    pub series: crate::domain::look_series::LookSeries,
}

/// Everything a runner needs to continue a rollout elsewhere: what a store keeps
/// between looks, so that a worker that dies loses nothing. The looks and flag changes
/// themselves are records of their own, not part of the snapshot.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunnerState {
    /// Where the rollout stands.
    pub status: RolloutStatus,
    /// Whether `start` ran (the first stage's traffic is set).
    pub started: bool,
    /// 0-based stage index.
    pub stage_index: usize,
    /// When the current stage started, analysis time.
    pub stage_started_at: f64,
    /// When the last look ran.
    pub last_look_at: Option<f64>,
    /// Looks so far, over the whole rollout (they spend the error budget).
    pub looks: u64,
    /// Failing judge verdicts in a row.
    pub consecutive_failures: u32,
    /// Since when the rollout has been holding.
    pub hold_since: Option<f64>,
    /// The flag as it was before the rollout started (for `fallback = "initial"`).
    #[serde(default)]
    pub initial_flag: Option<FlagState>,
    /// A progressive rollback under way.
    #[serde(default)]
    pub rolling_back: Option<RollingBack>,
    /// Seconds of the current stage whose looks lacked usable data (gaps, no traffic);
    /// they do not count towards the stage's duration.
    #[serde(default)]
    pub stage_short_of_data: f64,
    /// The sequential judge's evidence so far.
    #[serde(default)]
    pub sequential: SequentialState,
    /// The flag as the runner last left it (the read-back of its last change, or the
    /// state it adopted): each look reads the flag and holds when someone else changed
    /// it. `None` in dry runs and in snapshots from before the check.
    #[serde(default)]
    pub expected_flag: Option<FlagState>,
    /// The share of an adopted flag, beyond its stage's, kept until the stage ends.
    #[serde(default)]
    pub adopted_share: Option<Percentage>,
    /// A hold trigger that fired: the rollout holds for a person's decision from then
    /// on, even once the condition clears, until a person resumes it (or the hold
    /// timeout decides). The reason the trigger gave when it first fired.
    #[serde(default)]
    pub held_for_review: Option<String>,
}

/// A progressive rollback under way: traffic comes down from `from` to the fallback in
/// the plan's `rollback_steps` equal steps.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct RollingBack {
    /// The canary's traffic when the rollback was decided.
    pub from: Percentage,
    /// Reductions applied so far.
    pub steps_done: u32,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state() -> RunnerState {
        RunnerState {
            status: RolloutStatus::Running,
            started: true,
            stage_index: 1,
            stage_started_at: 1_700_000_000.0,
            last_look_at: None,
            looks: 4,
            consecutive_failures: 0,
            hold_since: None,
            initial_flag: None,
            rolling_back: None,
            stage_short_of_data: 0.0,
            sequential: SequentialState::default(),
            expected_flag: None,
            adopted_share: None,
            held_for_review: None,
        }
    }

    #[test]
    fn a_record_is_written_with_its_version_and_read_back_as_it_was() {
        let written = write_record(&state()).unwrap();
        assert_eq!(written[VERSION_KEY], RECORD_VERSION);
        assert_eq!(read_state(&written).unwrap(), state());
    }

    #[test]
    fn a_record_from_before_versions_is_version_1() {
        let unversioned = serde_json::to_value(state()).unwrap();
        assert_eq!(read_state(&unversioned).unwrap(), state());
    }

    #[test]
    fn a_record_of_a_newer_version_is_refused_not_misread() {
        let mut newer = write_record(&state()).unwrap();
        newer[VERSION_KEY] = Value::from(RECORD_VERSION + 1);
        let error = read_state(&newer).unwrap_err();
        assert!(error.contains("newer canary"), "{error}");
        let error = read_look(&serde_json::json!([1, 2])).unwrap_err();
        assert!(error.contains("JSON object"), "{error}");
    }
}
