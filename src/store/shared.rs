//! What both stores share: time and index conversions, page cursors, the SQL of
//! pruning and of the one-owner rule, database error mapping, and the checks every
//! write makes before it touches a row.

use std::str::FromStr;
use std::time::Duration;

use uuid::Uuid;

use super::model::{
    ActuationRecord, ActuationState, AnalysisState, AuditAction, LookUpdate, MAX_PAGE,
    ManualAction, NewActuation, StoreError,
};

/// Unix seconds → stored milliseconds, refusing times a database cannot order.
pub(crate) fn to_millis(seconds: f64, what: &str) -> Result<i64, StoreError> {
    if !seconds.is_finite() || seconds.abs() > 9.0e12 {
        return Err(StoreError::Invalid(format!(
            "{what} must be a finite Unix time in seconds, got {seconds}"
        )));
    }
    Ok((seconds * 1000.0).round() as i64)
}

pub(crate) fn optional_millis(seconds: Option<f64>, what: &str) -> Result<Option<i64>, StoreError> {
    seconds.map(|s| to_millis(s, what)).transpose()
}

/// Stored milliseconds → Unix seconds.
pub(crate) fn from_millis(millis: i64) -> f64 {
    millis as f64 / 1000.0
}

pub(crate) fn lease_millis(lease: Duration) -> Result<i64, StoreError> {
    let millis = i64::try_from(lease.as_millis()).unwrap_or(i64::MAX);
    if millis <= 0 {
        return Err(StoreError::Invalid(
            "a lease must last at least one millisecond".to_owned(),
        ));
    }
    Ok(millis)
}

/// Page cursors are the last item's creation sequence number, opaque to callers.
pub(crate) fn parse_cursor(cursor: Option<&str>) -> Result<i64, StoreError> {
    match cursor {
        None => Ok(0),
        Some(text) => text
            .strip_prefix('s')
            .and_then(|digits| digits.parse::<i64>().ok())
            .filter(|seq| *seq >= 0)
            .ok_or_else(|| StoreError::Invalid(format!("malformed page cursor {text:?}"))),
    }
}

pub(crate) fn format_cursor(seq: i64) -> String {
    format!("s{seq}")
}

/// The analyses [`Store::prune_finished`] may delete, as a condition on `analyses`
/// (SQL shared by both stores; `{cutoff}` is the cutoff's parameter).
pub(crate) fn prunable_condition(cutoff: &str) -> String {
    format!(
        "state IN ('promoted', 'rolled_back', 'failed') AND updated_at_ms < {cutoff} \
         AND (lease_expires_at_ms IS NULL OR lease_expires_at_ms < {cutoff}) \
         AND NOT EXISTS (SELECT 1 FROM actuations \
             WHERE actuations.analysis_id = analyses.id AND actuations.state = 'intended')"
    )
}

pub(crate) fn page_limit(limit: u32) -> i64 {
    i64::from(limit.clamp(1, MAX_PAGE))
}

pub(crate) fn claim_limit(limit: u32) -> i64 {
    i64::from(limit.min(MAX_PAGE))
}

pub(crate) fn parse_stored<T: FromStr<Err = String>>(text: &str) -> Result<T, StoreError> {
    text.parse().map_err(StoreError::Corrupt)
}

pub(crate) fn to_index(value: Option<i64>, what: &str) -> Result<Option<usize>, StoreError> {
    value
        .map(|v| {
            usize::try_from(v).map_err(|_| StoreError::Corrupt(format!("negative {what}: {v}")))
        })
        .transpose()
}

pub(crate) fn from_index(value: Option<usize>) -> Option<i64> {
    value.map(|v| i64::try_from(v).unwrap_or(i64::MAX))
}

/// The unique index that keeps one owner per flag (migration 0004).
pub(crate) const ONE_OWNER_INDEX: &str = "analyses_one_owner_per_flag";

/// The owning states as an SQL list, for the query that finds a flag's owner.
macro_rules! owning_states_sql {
    () => {
        "('pending', 'running', 'paused', 'awaiting_review', 'rollback_failed')"
    };
}
pub(crate) use owning_states_sql;

#[cfg(test)]
pub(super) const OWNING_STATES_SQL: &str = owning_states_sql!();

/// Whether an insert failed on the one-owner-per-flag index.
pub(crate) fn is_owner_violation(error: &sqlx::Error) -> bool {
    is_unique_violation(error, ONE_OWNER_INDEX, "analyses.owner, analyses.flag")
}

/// The unique index on [`NewAnalysis::submit_key`](super::NewAnalysis::submit_key).
pub(crate) const SUBMIT_KEY_INDEX: &str = "analyses_submit_key";

/// Whether `error` is the submit-key index refusing a second analysis under one key.
pub(crate) fn is_submit_key_violation(error: &sqlx::Error) -> bool {
    is_unique_violation(error, SUBMIT_KEY_INDEX, "analyses.submit_key")
}

/// Whether `error` is the unique index `index` refusing a row: PostgreSQL names the
/// index, SQLite only the indexed `columns` (as `table.column, ...` in its message).
fn is_unique_violation(error: &sqlx::Error, index: &str, columns: &str) -> bool {
    match error {
        sqlx::Error::Database(db) => {
            db.kind() == sqlx::error::ErrorKind::UniqueViolation
                && (db.constraint() == Some(index) || db.message().contains(columns))
        }
        _ => false,
    }
}

/// Maps a database error onto the kinds callers branch on.
pub(crate) fn database_error(error: sqlx::Error) -> StoreError {
    use sqlx::error::ErrorKind;
    match &error {
        sqlx::Error::Database(db) => match db.kind() {
            ErrorKind::UniqueViolation => StoreError::Conflict(db.message().to_owned()),
            ErrorKind::ForeignKeyViolation
            | ErrorKind::NotNullViolation
            | ErrorKind::CheckViolation => StoreError::Invalid(db.message().to_owned()),
            _ => match db.code().as_deref() {
                // PostgreSQL: serialization failure and deadlock lost a race; retryable.
                Some("40001") | Some("40P01") => StoreError::Conflict(db.message().to_owned()),
                _ => StoreError::Unavailable(error.to_string()),
            },
        },
        sqlx::Error::ColumnDecode { .. }
        | sqlx::Error::Decode(_)
        | sqlx::Error::ColumnNotFound(_)
        | sqlx::Error::ColumnIndexOutOfBounds { .. }
        | sqlx::Error::TypeNotFound { .. } => StoreError::Corrupt(error.to_string()),
        _ => StoreError::Unavailable(error.to_string()),
    }
}

pub(crate) fn migrate_error(error: sqlx::migrate::MigrateError) -> StoreError {
    use sqlx::migrate::MigrateError;
    match error {
        MigrateError::VersionMissing(_)
        | MigrateError::VersionMismatch(_)
        | MigrateError::VersionNotPresent(_)
        | MigrateError::VersionTooOld(..)
        | MigrateError::VersionTooNew(..)
        | MigrateError::Dirty(_) => StoreError::Corrupt(format!("schema migration: {error}")),
        other => StoreError::Unavailable(format!("schema migration: {other}")),
    }
}

/// The request a manual action leaves for a worker (`promote` or `rollback`), after
/// checking that it leaves the analysis claimable.
pub(crate) fn requested_action(action: &ManualAction) -> Result<Option<&'static str>, StoreError> {
    match action.action {
        AuditAction::Pause | AuditAction::Resume => Ok(None),
        AuditAction::Promote | AuditAction::Rollback => {
            if action.new_state != AnalysisState::Running {
                return Err(StoreError::Invalid(format!(
                    "a manual {} is carried out by a worker: its new state must be running, not {}",
                    action.action.as_str(),
                    action.new_state
                )));
            }
            Ok(Some(action.action.as_str()))
        }
    }
}

pub(crate) fn not_found(id: Uuid) -> StoreError {
    StoreError::NotFound(format!("analysis {id}"))
}

pub(crate) fn check_look(id: Uuid, update: &LookUpdate) -> Result<(), StoreError> {
    match &update.look {
        Some(look) if look.analysis_id != id => Err(StoreError::Invalid(format!(
            "look record for analysis {} written to analysis {id}",
            look.analysis_id
        ))),
        _ => Ok(()),
    }
}

/// The record stored under an intent's key must be that intent: the same analysis and
/// action. Anything else is a key collision, which would silently skip a flag change.
pub(crate) fn check_same_intent(
    intent: &NewActuation,
    stored: ActuationRecord,
) -> Result<ActuationRecord, StoreError> {
    if stored.analysis_id != intent.analysis_id || stored.action != intent.action {
        return Err(StoreError::Conflict(format!(
            "idempotency key {:?} already belongs to {} of analysis {}",
            intent.idempotency_key, stored.action, stored.analysis_id
        )));
    }
    Ok(stored)
}

/// A completion found an actuation that was not `Intended`: the same outcome again is a
/// harmless repeat, another outcome contradicts what was recorded.
pub(crate) fn check_completion(
    stored: ActuationRecord,
    wanted: ActuationState,
) -> Result<ActuationRecord, StoreError> {
    if stored.state == wanted {
        Ok(stored)
    } else {
        Err(StoreError::Conflict(format!(
            "actuation {:?} is already {}, cannot become {}",
            stored.idempotency_key,
            stored.state.as_str(),
            wanted.as_str()
        )))
    }
}
