//! Durable analyses: the [`Store`] trait, the records it keeps and its errors. No SQL
//! here; [`sqlite`] and [`postgres`] implement the trait, and [`StoreConfig::build`] is
//! the only code that names them.
//!
//! What a store keeps: each analysis (its request, a snapshot of its profile, where it
//! stands and an opaque snapshot of its runner), every look, every flag change
//! (actuation) with its idempotency key, and an audit log of manual actions. Look bodies
//! are kept compactly ([`look_body`]); finished analyses are deleted after their
//! retention ([`Store::prune_finished`], called by `scheduler::retention`).
//!
//! # Semantics every implementation keeps (the contract tests in `tests/it/store.rs`
//! check them against each store)
//! - **Times** are Unix seconds as `f64`, the runner's analysis time. A store keeps them as
//!   integer milliseconds, so a time reads back rounded to the millisecond. A store never
//!   reads a clock: every method that needs "now" takes it from the caller, so tests and
//!   replays drive leases without sleeping. Instances sharing a database must therefore
//!   have clocks that agree to well within a lease.
//! - **Versions**: a new analysis has version 1; every write of its content
//!   ([`Store::record_look`], [`Store::apply_manual_action`]) bumps it and sets
//!   `updated_at`. Lease bookkeeping (claim, renew, release) changes only the lease
//!   fields and bumps nothing, so a worker's heartbeat never makes its own next write
//!   conflict.
//! - **Leases**: a worker holds an analysis while `lease_owner` is its id and
//!   `now < lease_expires_at`. An expired lease is lost even when no one has taken the
//!   analysis yet. Only the holder may record a look or intend an actuation; a worker
//!   presumed dead gets [`StoreError::LeaseLost`] and can never write over its successor.
//! - **Due**: an analysis is claimable when it is `Pending`, `Running` or
//!   `RollbackFailed` (its rollback is tried again until it succeeds), its
//!   `next_look_at` is unset or `<= now`, and no unexpired lease is on it. A new
//!   analysis's `next_look_at` is its `start_at`, so a future start delays its first claim.
//! - **Final states** have a final verdict (what the API and `canary wait` report).
//!   Those the engine is *done* with — `Promoted`, `RolledBack`, `Failed` — cannot be
//!   changed by a look ([`StoreError::Conflict`]) and are never claimed; a
//!   `RollbackFailed` analysis is final (the verdict is rollback) but not done. A manual
//!   action can still change any of them (the one audited way out).
//! - **Manual promote and rollback** are requests for a worker, since only the scheduler
//!   calls actuators: [`Store::apply_manual_action`] moves the analysis to `Running`,
//!   sets [`Analysis::requested_action`] and makes it due at once; the worker that
//!   carries it out clears it with its [`Store::record_look`].

mod config;
pub mod look_body;
mod model;
pub mod postgres;
mod rows;
mod shared;
mod sql;
pub mod sqlite;

pub use self::config::StoreConfig;
pub use self::model::{
    ActuationOutcome, ActuationRecord, ActuationState, Analysis, AnalysisState, AnalysisSummary,
    AuditAction, AuditEntry, Execution, ExecutionOutcome, ExecutionState, LookRecord, LookUpdate,
    MAX_PAGE, ManualAction, NewActuation, NewAnalysis, NewExecution, Overview, OverviewQuery, Page,
    Snapshot, Store, StoreError,
};
pub use self::postgres::PostgresStore;
pub use self::sqlite::SqliteStore;

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::config::is_postgres_url;
    use super::shared::*;
    use super::*;

    #[test]
    fn every_state_round_trips_through_its_name() {
        for state in AnalysisState::ALL {
            assert_eq!(state.as_str().parse::<AnalysisState>(), Ok(state));
            assert_eq!(
                serde_json::to_value(state).unwrap(),
                serde_json::Value::String(state.as_str().to_owned())
            );
        }
        assert!("done".parse::<AnalysisState>().is_err());
    }

    #[test]
    fn only_promoted_rolled_back_rollback_failed_and_failed_are_final() {
        let finals: Vec<_> = AnalysisState::ALL
            .into_iter()
            .filter(|s| s.is_final())
            .collect();
        assert_eq!(
            finals,
            [
                AnalysisState::Promoted,
                AnalysisState::RolledBack,
                AnalysisState::RollbackFailed,
                AnalysisState::Failed
            ]
        );
        assert!(
            AnalysisState::ALL
                .iter()
                .all(|s| !(s.is_done() && s.is_claimable()))
        );
        // A rollback that failed is final for the pipeline and retried by the engine.
        assert!(AnalysisState::RollbackFailed.is_claimable());
        assert!(!AnalysisState::RollbackFailed.is_done());
    }

    #[test]
    fn the_owning_states_are_those_not_done_and_match_the_index() {
        let owning: Vec<_> = AnalysisState::ALL
            .into_iter()
            .filter(|s| s.owns_flag())
            .map(AnalysisState::as_str)
            .collect();
        let listed = format!("('{}')", owning.join("', '"));
        assert_eq!(listed, OWNING_STATES_SQL);
        for migration in [
            include_str!("migrations/postgres/0004_one_owner_per_flag.sql"),
            include_str!("migrations/sqlite/0004_one_owner_per_flag.sql"),
        ] {
            assert!(migration.contains(&format!("state IN {OWNING_STATES_SQL}")));
        }
    }

    #[test]
    fn millisecond_times_round_trip_exactly() {
        for seconds in [0.0, 1_700_000_000.0, 1_700_000_000.123, 1_700_000_123.999] {
            assert_eq!(from_millis(to_millis(seconds, "t").unwrap()), seconds);
        }
        assert!(matches!(
            to_millis(f64::NAN, "t"),
            Err(StoreError::Invalid(_))
        ));
        assert!(matches!(
            to_millis(f64::INFINITY, "t"),
            Err(StoreError::Invalid(_))
        ));
    }

    #[test]
    fn cursors_round_trip_and_garbage_is_invalid() {
        assert_eq!(parse_cursor(None).unwrap(), 0);
        assert_eq!(parse_cursor(Some(&format_cursor(42))).unwrap(), 42);
        for bad in ["", "42", "s", "s-1", "sx", "s1 "] {
            assert!(
                matches!(parse_cursor(Some(bad)), Err(StoreError::Invalid(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn a_zero_lease_is_invalid() {
        assert!(matches!(
            lease_millis(Duration::ZERO),
            Err(StoreError::Invalid(_))
        ));
        assert_eq!(lease_millis(Duration::from_secs(30)).unwrap(), 30_000);
    }

    #[test]
    fn postgres_urls_pick_postgres_and_everything_else_sqlite() {
        assert!(is_postgres_url("postgres://postgres@127.0.0.1/test"));
        assert!(is_postgres_url("postgresql://db/test"));
        assert!(!is_postgres_url("sqlite:canary.db"));
        assert!(!is_postgres_url("/var/lib/canary/canary.db"));
    }

    #[test]
    fn a_snapshot_this_build_cannot_read_is_kept_exactly_as_stored() {
        let stored = serde_json::json!({"record_version": 99, "looks": 3, "future": [1, 2]});
        let snapshot = Snapshot::from_stored(stored.clone());
        let Snapshot::Unreadable { error, .. } = &snapshot else {
            panic!("{snapshot:?}");
        };
        assert!(error.contains("newer canary"), "{error}");
        assert_eq!(snapshot.state(), None);
        assert_eq!(snapshot.to_stored().unwrap(), stored);
        assert_eq!(
            Snapshot::from_stored(serde_json::Value::Null),
            Snapshot::None
        );
    }
}
