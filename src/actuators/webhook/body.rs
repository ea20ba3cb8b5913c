//! The JSON a receiver gets and may answer with. Version 1 of the schema; a change that
//! removes or renames a field, or changes a field's meaning, gets a new `version`.
//! Adding a field does not: receivers ignore fields they do not know.

use serde::{Deserialize, Serialize};

use crate::actuators::{FlagChange, FlagState};
use crate::domain::Verdict;

/// The schema version this engine sends.
pub const SCHEMA_VERSION: u32 = 1;

/// The body of every POST, version 1:
///
/// ```json
/// {"version": 1,
///  "actuation_id": "4ad9…:3:set_rollout:25", "analysis_id": "4ad9…",
///  "flag": "new-checkout", "action": "set_rollout", "target_percentage": 25.0,
///  "verdict": "promote", "reasons": ["latency p99: no significant change"],
///  "report_url": "https://canary.example.com/v1/analyses/4ad9…",
///  "sent_at": 1700000000.123}
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ActuationRequest {
    /// Always [`SCHEMA_VERSION`].
    pub version: u32,
    /// The idempotency key: the same on every retry or replay of this change (also sent
    /// as the `Idempotency-Key` header). Receivers apply each id once.
    pub actuation_id: String,
    /// The analysis that asked for the change; `null` for a change made outside one.
    pub analysis_id: Option<String>,
    /// The flag key.
    pub flag: String,
    /// `set_rollout` (enable for `target_percentage` of traffic) or `kill` (disable).
    pub action: String,
    /// The share of traffic, 0 to 100, fractions allowed; 0 for `kill`.
    pub target_percentage: f64,
    /// `promote`, `hold` or `rollback`; `null` outside an analysis.
    pub verdict: Option<Verdict>,
    /// The reasons for the verdict, most important first (may be empty).
    pub reasons: Vec<String>,
    /// Where a person reads the analysis; `null` when the engine has no public URL.
    pub report_url: Option<String>,
    /// When this attempt was sent, Unix seconds (milliseconds as the fraction). Differs
    /// between retries of one change; `actuation_id` does not.
    pub sent_at: f64,
}

impl ActuationRequest {
    /// The body for `change`, with the idempotency key already chosen and the time
    /// of sending.
    pub fn new(change: &FlagChange, actuation_id: &str, sent_at: f64) -> Self {
        let context = &change.context;
        Self {
            version: SCHEMA_VERSION,
            actuation_id: actuation_id.to_owned(),
            analysis_id: context.analysis_id.clone(),
            flag: change.flag.clone(),
            action: change.action.name().to_owned(),
            target_percentage: change.action.target().value(),
            verdict: context.verdict,
            reasons: context.reasons.clone(),
            report_url: context.report_url.clone(),
            sent_at: (sent_at * 1000.0).round() / 1000.0,
        }
    }

    /// The state the flag is in once the receiver has applied this change.
    pub fn implied_state(change: &FlagChange) -> FlagState {
        FlagState {
            enabled: matches!(
                change.action,
                crate::actuators::FlagAction::SetRollout { .. }
            ),
            rollout: change.action.target(),
        }
    }
}

/// A receiver's answer, when it says what state the flag is now in:
/// `{"enabled": bool, "rollout": number}` (other fields are ignored). Anything else,
/// an empty body included, means "applied as asked".
pub fn reported_state(body: &[u8]) -> Option<FlagState> {
    serde_json::from_slice::<FlagState>(body).ok()
}
