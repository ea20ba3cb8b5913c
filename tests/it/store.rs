//! The store contract, run against every store: SQLite in memory, SQLite on a file and
//! PostgreSQL (127.0.0.1:5432, database `test`, or `DATABASE_URL`). Each PostgreSQL test
//! gets a schema of its own, dropped at the end even when the test fails, so tests run
//! in parallel and leave nothing behind. Also: a SQLite file survives a restart; eight
//! workers share 200 analyses without ever sharing one, as eight PostgreSQL-backed
//! instances and as eight tasks on one SQLite file; and workers racing with expiring
//! leases never get a write accepted after their lease ran out.
//!
//! No test sleeps: the store takes "now" from its caller, so leases expire by passing a
//! later time.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use canary::store::{
    ActuationOutcome, ActuationState, Analysis, AnalysisState, AuditAction, ExecutionOutcome,
    ExecutionState, LookRecord, LookUpdate, ManualAction, NewActuation, NewAnalysis, NewExecution,
    Snapshot, SqliteStore, Store, StoreConfig, StoreError,
};
use sqlx::AssertSqlSafe;
use uuid::Uuid;

/// Every test's "now": an old, whole-second epoch.
const NOW: f64 = 1_700_000_000.0;
const LEASE: Duration = Duration::from_secs(30);
const LEASE_SECONDS: f64 = 30.0;

fn new_analysis(name: &str, start_at: Option<f64>) -> NewAnalysis {
    NewAnalysis {
        profile_name: name.to_owned(),
        profile_text: format!("name = \"{name}\"\n[[metrics]]\nname = \"latency\"\n"),
        flag: format!("{name}-flag"),
        source: "prometheus-main".to_owned(),
        actuator: "flagd".to_owned(),
        baseline_scope: "track=\"baseline\"".to_owned(),
        canary_scope: "track=\"canary\"".to_owned(),
        dry_run: false,
        start_at,
        owner: None,
        adopt: false,
        submit_key: None,
    }
}

async fn create(store: &dyn Store, name: &str) -> Analysis {
    store
        .create_analysis(new_analysis(name, None), NOW)
        .await
        .expect("create")
}

fn look(id: Uuid, number: u64, at: f64) -> LookRecord {
    LookRecord {
        analysis_id: id,
        look: number,
        at,
        stage_index: 1,
        verdict: canary::domain::Verdict::Promote,
        decision: "continue".to_owned(),
        body: crate::helpers::sample_look(number, at),
    }
}

fn progress(look: Option<LookRecord>, state: AnalysisState) -> LookUpdate {
    LookUpdate {
        look,
        state,
        current_stage: Some(1),
        traffic: Some(12.5),
        latest_verdict: Some(canary::domain::Verdict::Promote),
        reasons: vec![
            "every metric passed".to_owned(),
            "no trigger fired".to_owned(),
        ],
        runner_state: Snapshot::of(crate::helpers::sample_state()),
        next_look_at: Some(NOW + 60.125),
    }
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

fn intent(id: Uuid, key: &str, target: f64) -> NewActuation {
    NewActuation {
        analysis_id: id,
        idempotency_key: key.to_owned(),
        action: "set_rollout".to_owned(),
        target,
        at: NOW + 1.5,
    }
}

fn ids(analyses: &[Analysis]) -> Vec<Uuid> {
    analyses.iter().map(|a| a.id).collect()
}

/// Claims exactly `id` for `worker` at `now` (nothing else may be due).
async fn claim_only(store: &dyn Store, worker: &str, now: f64, id: Uuid) -> Analysis {
    let claimed = store
        .claim_due(worker, now, LEASE, 10)
        .await
        .expect("claim");
    assert_eq!(ids(&claimed), [id], "{worker} claims exactly {id}");
    claimed.into_iter().next().unwrap()
}

fn new_execution(due_at: f64) -> NewExecution {
    NewExecution {
        kind: "kayenta".to_owned(),
        key: None,
        profile_name: "web-service".to_owned(),
        profile_text: "name = \"web-service\"".to_owned(),
        source: "prod".to_owned(),
        request: serde_json::json!({"window": [1, 2], "scopes": {"default": "x"}}),
        due_at,
    }
}

/// The contract every store keeps; each function is one test per store.
mod contract {
    use super::*;

    pub async fn a_created_analysis_reads_back_with_every_field(store: Arc<dyn Store>) {
        let mut request = new_analysis("checkout", Some(NOW + 5.5));
        request.dry_run = true;
        let created = store
            .create_analysis(request.clone(), NOW)
            .await
            .expect("create");
        assert_eq!(created.profile_name, request.profile_name);
        assert_eq!(created.profile_text, request.profile_text);
        assert_eq!(created.flag, request.flag);
        assert_eq!(created.source, request.source);
        assert_eq!(created.actuator, request.actuator);
        assert_eq!(created.baseline_scope, request.baseline_scope);
        assert_eq!(created.canary_scope, request.canary_scope);
        assert!(created.dry_run);
        assert_eq!(created.start_at, Some(NOW + 5.5));
        assert_eq!(created.state, AnalysisState::Pending);
        assert_eq!(created.version, 1);
        assert_eq!(
            created.next_look_at,
            Some(NOW + 5.5),
            "first look at start_at"
        );
        assert_eq!(created.current_stage, None);
        assert_eq!(created.traffic, None);
        assert_eq!(created.latest_verdict, None);
        assert!(created.reasons.is_empty());
        assert_eq!(created.runner_state, Snapshot::None);
        assert_eq!(
            (created.lease_owner.clone(), created.lease_expires_at),
            (None, None)
        );
        assert_eq!((created.created_at, created.updated_at), (NOW, NOW));
        assert_eq!(created.id.get_version_num(), 4, "a random UUID");

        let read = store.get_analysis(created.id).await.expect("get");
        assert_eq!(read.as_ref(), Some(&created));
        assert_eq!(store.get_analysis(Uuid::new_v4()).await.expect("get"), None);

        let other = create(store.as_ref(), "checkout").await;
        assert_ne!(other.id, created.id);
    }

    pub async fn progress_and_looks_read_back_exactly(store: Arc<dyn Store>) {
        let analysis = create(store.as_ref(), "search").await;
        claim_only(store.as_ref(), "w1", NOW, analysis.id).await;
        let first = look(analysis.id, 1, NOW + 60.0);
        let written = store
            .record_look(
                analysis.id,
                "w1",
                1,
                NOW + 1.0,
                progress(Some(first.clone()), AnalysisState::Running),
            )
            .await
            .expect("record look");
        assert_eq!(written.version, 2);
        assert_eq!(written.updated_at, NOW + 1.0);
        assert_eq!(written.created_at, NOW);
        assert_eq!(written.state, AnalysisState::Running);
        assert_eq!(written.current_stage, Some(1));
        assert_eq!(written.traffic, Some(12.5));
        assert_eq!(
            written.latest_verdict,
            Some(canary::domain::Verdict::Promote)
        );
        assert_eq!(written.reasons, ["every metric passed", "no trigger fired"]);
        assert_eq!(
            written.runner_state,
            progress(None, AnalysisState::Running).runner_state
        );
        assert_eq!(written.next_look_at, Some(NOW + 60.125));
        assert_eq!(
            written.lease_owner.as_deref(),
            Some("w1"),
            "the lease stays"
        );
        assert_eq!(
            store.get_analysis(analysis.id).await.unwrap(),
            Some(written.clone())
        );

        // A step without a look changes the progress and keeps the looks.
        let mut no_look = progress(None, AnalysisState::Running);
        no_look.reasons.clear();
        no_look.next_look_at = None;
        let second = store
            .record_look(analysis.id, "w1", 2, NOW + 2.0, no_look)
            .await
            .expect("record without a look");
        assert_eq!(second.version, 3);
        assert!(second.reasons.is_empty());
        assert_eq!(second.next_look_at, None);
        let third = look(analysis.id, 2, NOW + 120.0);
        store
            .record_look(
                analysis.id,
                "w1",
                3,
                NOW + 3.0,
                progress(Some(third.clone()), AnalysisState::Running),
            )
            .await
            .expect("second look");
        assert_eq!(
            store.list_looks(analysis.id).await.unwrap(),
            [first, third],
            "looks in look order with their bodies"
        );
        let other = create(store.as_ref(), "other").await;
        assert!(store.list_looks(other.id).await.unwrap().is_empty());
    }

    pub async fn listing_pages_in_creation_order_and_filters_by_state(store: Arc<dyn Store>) {
        let mut created = Vec::new();
        for n in 0..7 {
            let analysis = store
                .create_analysis(new_analysis(&format!("p{n}"), None), NOW + n as f64)
                .await
                .unwrap();
            created.push(analysis.id);
        }
        let mut seen = Vec::new();
        let mut cursor: Option<String> = None;
        let mut sizes = Vec::new();
        loop {
            let page = store
                .list_analyses(None, 3, cursor.as_deref())
                .await
                .expect("page");
            sizes.push(page.items.len());
            seen.extend(ids(&page.items));
            match page.next_cursor {
                Some(next) => cursor = Some(next),
                None => break,
            }
        }
        assert_eq!(sizes, [3, 3, 1]);
        assert_eq!(seen, created, "every analysis once, oldest first");

        // Exactly a page's worth leaves no dangling cursor.
        let page = store.list_analyses(None, 7, None).await.unwrap();
        assert_eq!(page.items.len(), 7);
        assert_eq!(page.next_cursor, None);
        // A limit of zero is clamped to one.
        assert_eq!(
            store
                .list_analyses(None, 0, None)
                .await
                .unwrap()
                .items
                .len(),
            1
        );

        for id in [created[1], created[4], created[5]] {
            store
                .apply_manual_action(
                    id,
                    manual(AuditAction::Pause, AnalysisState::Paused, 1),
                    NOW,
                )
                .await
                .unwrap();
        }
        let first = store
            .list_analyses(Some(AnalysisState::Paused), 2, None)
            .await
            .unwrap();
        assert_eq!(ids(&first.items), [created[1], created[4]]);
        let rest = store
            .list_analyses(Some(AnalysisState::Paused), 2, first.next_cursor.as_deref())
            .await
            .unwrap();
        assert_eq!(ids(&rest.items), [created[5]]);
        assert_eq!(rest.next_cursor, None);
        let pending = store
            .list_analyses(Some(AnalysisState::Pending), 100, None)
            .await
            .unwrap();
        assert_eq!(
            ids(&pending.items),
            [created[0], created[2], created[3], created[6]]
        );
        let promoted = store
            .list_analyses(Some(AnalysisState::Promoted), 100, None)
            .await
            .unwrap();
        assert!(promoted.items.is_empty());

        for bad in ["", "garbage", "s-4", "42"] {
            let result = store.list_analyses(None, 3, Some(bad)).await;
            assert!(
                matches!(result, Err(StoreError::Invalid(_))),
                "{bad:?}: {result:?}"
            );
        }
    }

    pub async fn only_due_and_unleased_analyses_are_claimed(store: Arc<dyn Store>) {
        let at_once = create(store.as_ref(), "at-once").await;
        let overdue = store
            .create_analysis(new_analysis("overdue", Some(NOW - 10.0)), NOW - 20.0)
            .await
            .unwrap();
        let due_now = store
            .create_analysis(new_analysis("due-now", Some(NOW)), NOW - 20.0)
            .await
            .unwrap();
        let later = store
            .create_analysis(new_analysis("later", Some(NOW + 60.0)), NOW)
            .await
            .unwrap();
        let paused = create(store.as_ref(), "paused").await;
        store
            .apply_manual_action(
                paused.id,
                manual(AuditAction::Pause, AnalysisState::Paused, 1),
                NOW,
            )
            .await
            .unwrap();
        let awaiting = create(store.as_ref(), "awaiting").await;
        store
            .apply_manual_action(
                awaiting.id,
                manual(AuditAction::Pause, AnalysisState::AwaitingReview, 1),
                NOW,
            )
            .await
            .unwrap();

        let claimed = store.claim_due("w1", NOW, LEASE, 10).await.expect("claim");
        assert_eq!(
            ids(&claimed),
            [at_once.id, overdue.id, due_now.id],
            "due analyses only, never-looked first, then most overdue"
        );
        for analysis in &claimed {
            assert_eq!(analysis.lease_owner.as_deref(), Some("w1"));
            assert_eq!(analysis.lease_expires_at, Some(NOW + LEASE_SECONDS));
            assert_eq!(analysis.version, 1, "a claim is not a content write");
            assert!(analysis.is_leased_by("w1", NOW));
        }
        let stored = store.get_analysis(overdue.id).await.unwrap().unwrap();
        assert_eq!(
            stored.lease_owner.as_deref(),
            Some("w1"),
            "the claim is stored"
        );

        assert!(
            store
                .claim_due("w2", NOW + 1.0, LEASE, 10)
                .await
                .unwrap()
                .is_empty(),
            "leased analyses are not claimed again, by anyone"
        );
        assert!(
            store
                .claim_due("w1", NOW + 1.0, LEASE, 10)
                .await
                .unwrap()
                .is_empty()
        );
        assert_eq!(
            ids(&store.claim_due("w2", NOW + 60.0, LEASE, 10).await.unwrap()),
            [at_once.id, overdue.id, due_now.id, later.id],
            "expired leases are free again and a future start becomes due at its time"
        );

        // The limit is kept, and what is left goes to the next claim.
        let more: Vec<Uuid> = [
            create(store.as_ref(), "m0").await.id,
            create(store.as_ref(), "m1").await.id,
            create(store.as_ref(), "m2").await.id,
        ]
        .into();
        let first = store.claim_due("w3", NOW + 10.0, LEASE, 2).await.unwrap();
        assert_eq!(ids(&first), more[..2]);
        let second = store.claim_due("w4", NOW + 10.0, LEASE, 2).await.unwrap();
        assert_eq!(ids(&second), more[2..]);
        assert!(
            store
                .claim_due("w5", NOW + 10.0, LEASE, 0)
                .await
                .unwrap()
                .is_empty()
        );
        assert!(matches!(
            store.claim_due("w5", NOW + 10.0, Duration::ZERO, 1).await,
            Err(StoreError::Invalid(_))
        ));
    }

    pub async fn an_expired_lease_passes_to_another_worker_and_the_old_worker_can_no_longer_write(
        store: Arc<dyn Store>,
    ) {
        let analysis = create(store.as_ref(), "takeover").await;
        claim_only(store.as_ref(), "w1", NOW, analysis.id).await;
        let after_first = store
            .record_look(
                analysis.id,
                "w1",
                1,
                NOW + 10.0,
                progress(
                    Some(look(analysis.id, 1, NOW + 10.0)),
                    AnalysisState::Running,
                ),
            )
            .await
            .expect("the holder writes");
        assert_eq!(after_first.version, 2);
        // Due again at once, but still leased to w1 until NOW + 30.
        let mut due_now = progress(None, AnalysisState::Running);
        due_now.next_look_at = Some(NOW + 10.0);
        store
            .record_look(analysis.id, "w1", 2, NOW + 10.0, due_now)
            .await
            .unwrap();
        assert!(
            store
                .claim_due("w2", NOW + 29.999, LEASE, 10)
                .await
                .unwrap()
                .is_empty()
        );

        // At the expiry instant the lease is gone.
        let taken = claim_only(store.as_ref(), "w2", NOW + LEASE_SECONDS, analysis.id).await;
        assert_eq!(taken.version, 3);
        assert_eq!(taken.lease_owner.as_deref(), Some("w2"));

        // The old worker, presumed dead, comes back with the version it last saw.
        let stale = store
            .record_look(
                analysis.id,
                "w1",
                3,
                NOW + 31.0,
                progress(
                    Some(look(analysis.id, 2, NOW + 31.0)),
                    AnalysisState::RolledBack,
                ),
            )
            .await;
        assert!(
            matches!(&stale, Err(StoreError::LeaseLost { analysis: a, worker }) if *a == analysis.id && worker == "w1"),
            "{stale:?}"
        );
        let renew = store
            .renew_lease(analysis.id, "w1", NOW + 31.0, LEASE)
            .await;
        assert!(
            matches!(renew, Err(StoreError::LeaseLost { .. })),
            "{renew:?}"
        );
        let intend = store
            .intend_actuation("w1", NOW + 31.0, intent(analysis.id, "takeover/kill", 0.0))
            .await;
        assert!(
            matches!(intend, Err(StoreError::LeaseLost { .. })),
            "{intend:?}"
        );
        assert!(
            !store.release(analysis.id, "w1").await.unwrap(),
            "w1 releases nothing"
        );

        let mut successor_update = progress(
            Some(look(analysis.id, 2, NOW + 32.0)),
            AnalysisState::Running,
        );
        successor_update.next_look_at = Some(NOW + 1000.0);
        let successor = store
            .record_look(analysis.id, "w2", 3, NOW + 32.0, successor_update)
            .await
            .expect("the successor writes");
        assert_eq!(successor.state, AnalysisState::Running);
        assert_eq!(successor.lease_owner.as_deref(), Some("w2"));
        let looks = store.list_looks(analysis.id).await.unwrap();
        assert_eq!(
            looks.iter().map(|l| l.at).collect::<Vec<_>>(),
            [NOW + 10.0, NOW + 32.0]
        );
        assert!(store.list_actuations(analysis.id).await.unwrap().is_empty());

        // A lease that expired is lost even when no one took the analysis over.
        let alone = create(store.as_ref(), "alone").await;
        claim_only(store.as_ref(), "w3", NOW + 100.0, alone.id).await;
        let late = store
            .record_look(
                alone.id,
                "w3",
                1,
                NOW + 100.0 + LEASE_SECONDS,
                progress(None, AnalysisState::Running),
            )
            .await;
        assert!(
            matches!(late, Err(StoreError::LeaseLost { .. })),
            "{late:?}"
        );
        // A worker that never held the lease cannot write either.
        let stranger = store
            .record_look(
                alone.id,
                "w9",
                1,
                NOW + 101.0,
                progress(None, AnalysisState::Running),
            )
            .await;
        assert!(
            matches!(stranger, Err(StoreError::LeaseLost { .. })),
            "{stranger:?}"
        );
        assert_eq!(
            store.get_analysis(alone.id).await.unwrap().unwrap().version,
            1
        );
    }

    pub async fn a_write_against_a_moved_version_is_a_conflict_and_writes_nothing(
        store: Arc<dyn Store>,
    ) {
        let analysis = create(store.as_ref(), "versions").await;
        claim_only(store.as_ref(), "w1", NOW, analysis.id).await;
        let written = store
            .record_look(
                analysis.id,
                "w1",
                1,
                NOW + 1.0,
                progress(
                    Some(look(analysis.id, 1, NOW + 1.0)),
                    AnalysisState::Running,
                ),
            )
            .await
            .unwrap();
        assert_eq!(written.version, 2);

        let replay = store
            .record_look(
                analysis.id,
                "w1",
                1,
                NOW + 2.0,
                progress(
                    Some(look(analysis.id, 2, NOW + 2.0)),
                    AnalysisState::Promoted,
                ),
            )
            .await;
        assert!(matches!(replay, Err(StoreError::Conflict(_))), "{replay:?}");

        // A person pauses it while the worker holds the lease: the worker's next write
        // conflicts instead of undoing the pause.
        let paused = store
            .apply_manual_action(
                analysis.id,
                manual(AuditAction::Pause, AnalysisState::Paused, 2),
                NOW + 3.0,
            )
            .await
            .unwrap();
        assert_eq!(paused.version, 3);
        assert_eq!(
            paused.lease_owner.as_deref(),
            Some("w1"),
            "leases are left alone"
        );
        let overwrite = store
            .record_look(
                analysis.id,
                "w1",
                2,
                NOW + 4.0,
                progress(
                    Some(look(analysis.id, 2, NOW + 4.0)),
                    AnalysisState::Running,
                ),
            )
            .await;
        assert!(
            matches!(overwrite, Err(StoreError::Conflict(_))),
            "{overwrite:?}"
        );

        // A look number already recorded is a conflict too, and the whole step is undone.
        let resumed = store
            .apply_manual_action(
                analysis.id,
                manual(AuditAction::Resume, AnalysisState::Running, 3),
                NOW + 5.0,
            )
            .await
            .unwrap();
        let duplicate = store
            .record_look(
                analysis.id,
                "w1",
                resumed.version,
                NOW + 6.0,
                progress(
                    Some(look(analysis.id, 1, NOW + 6.0)),
                    AnalysisState::Promoted,
                ),
            )
            .await;
        assert!(
            matches!(duplicate, Err(StoreError::Conflict(_))),
            "{duplicate:?}"
        );

        let stored = store.get_analysis(analysis.id).await.unwrap().unwrap();
        assert_eq!(stored.version, 4, "only the two manual actions bumped it");
        assert_eq!(stored.state, AnalysisState::Running);
        let looks = store.list_looks(analysis.id).await.unwrap();
        assert_eq!(looks.len(), 1);
        assert_eq!(looks[0].at, NOW + 1.0);

        // A look for another analysis is refused outright.
        let misdirected = store
            .record_look(
                analysis.id,
                "w1",
                4,
                NOW + 7.0,
                progress(
                    Some(look(Uuid::new_v4(), 2, NOW + 7.0)),
                    AnalysisState::Running,
                ),
            )
            .await;
        assert!(
            matches!(misdirected, Err(StoreError::Invalid(_))),
            "{misdirected:?}"
        );
    }

    pub async fn renewing_keeps_the_lease_and_releasing_frees_it(store: Arc<dyn Store>) {
        let analysis = create(store.as_ref(), "heartbeat").await;
        claim_only(store.as_ref(), "w1", NOW, analysis.id).await;
        let expires = store
            .renew_lease(analysis.id, "w1", NOW + 20.0, LEASE)
            .await
            .expect("renew");
        assert_eq!(expires, NOW + 20.0 + LEASE_SECONDS);
        assert!(
            store
                .claim_due("w2", NOW + 40.0, LEASE, 10)
                .await
                .unwrap()
                .is_empty(),
            "a renewed lease outlives the first one"
        );
        let stranger = store
            .renew_lease(analysis.id, "w2", NOW + 40.0, LEASE)
            .await;
        assert!(
            matches!(stranger, Err(StoreError::LeaseLost { .. })),
            "{stranger:?}"
        );
        assert!(
            !store.release(analysis.id, "w2").await.unwrap(),
            "not w2's to release"
        );
        let held = store.get_analysis(analysis.id).await.unwrap().unwrap();
        assert!(held.is_leased_by("w1", NOW + 40.0));
        assert_eq!(held.version, 1, "heartbeats bump no version");

        assert!(store.release(analysis.id, "w1").await.unwrap());
        assert!(
            !store.release(analysis.id, "w1").await.unwrap(),
            "releasing twice is harmless"
        );
        let released = store.get_analysis(analysis.id).await.unwrap().unwrap();
        assert_eq!(
            (released.lease_owner, released.lease_expires_at),
            (None, None)
        );
        let renew = store
            .renew_lease(analysis.id, "w1", NOW + 41.0, LEASE)
            .await;
        assert!(
            matches!(renew, Err(StoreError::LeaseLost { .. })),
            "{renew:?}"
        );
        claim_only(store.as_ref(), "w2", NOW + 41.0, analysis.id).await;
    }

    pub async fn actuation_intents_are_idempotent_by_key(store: Arc<dyn Store>) {
        let analysis = create(store.as_ref(), "flags").await;
        let other = create(store.as_ref(), "other-flags").await;
        let claimed = store.claim_due("w1", NOW, LEASE, 10).await.unwrap();
        assert_eq!(claimed.len(), 2);
        let key = format!("{}/look-1/set_rollout-25", analysis.id);

        let intended = store
            .intend_actuation("w1", NOW + 1.0, intent(analysis.id, &key, 25.0))
            .await
            .expect("intend");
        assert_eq!(intended.state, ActuationState::Intended);
        assert_eq!((intended.target, intended.at), (25.0, NOW + 1.5));
        assert_eq!(
            (intended.detail.clone(), intended.completed_at),
            (None, None)
        );

        // A replayed step asks again, even with a drifted target: it gets the record.
        let again = store
            .intend_actuation("w1", NOW + 2.0, intent(analysis.id, &key, 30.0))
            .await
            .unwrap();
        assert_eq!(again, intended);

        let applied = store
            .complete_actuation(&key, ActuationOutcome::Applied, "enabled, 25 %", NOW + 3.0)
            .await
            .expect("complete");
        assert_eq!(applied.state, ActuationState::Applied);
        assert_eq!(applied.detail.as_deref(), Some("enabled, 25 %"));
        assert_eq!(applied.completed_at, Some(NOW + 3.0));
        let replayed = store
            .intend_actuation("w1", NOW + 4.0, intent(analysis.id, &key, 25.0))
            .await
            .unwrap();
        assert_eq!(
            replayed, applied,
            "an applied key tells the replay to skip it"
        );
        assert_eq!(
            store
                .complete_actuation(&key, ActuationOutcome::Applied, "again", NOW + 5.0)
                .await
                .unwrap(),
            applied,
            "completing twice the same way changes nothing"
        );
        let contradiction = store
            .complete_actuation(&key, ActuationOutcome::Failed, "timeout", NOW + 5.0)
            .await;
        assert!(
            matches!(contradiction, Err(StoreError::Conflict(_))),
            "{contradiction:?}"
        );

        let collision = store
            .intend_actuation("w1", NOW + 5.0, intent(other.id, &key, 25.0))
            .await;
        assert!(
            matches!(collision, Err(StoreError::Conflict(_))),
            "{collision:?}"
        );
        let mut kill = intent(analysis.id, &key, 0.0);
        kill.action = "kill".to_owned();
        let other_action = store.intend_actuation("w1", NOW + 5.0, kill).await;
        assert!(
            matches!(other_action, Err(StoreError::Conflict(_))),
            "{other_action:?}"
        );

        let missing = store
            .complete_actuation("no-such-key", ActuationOutcome::Applied, "", NOW)
            .await;
        assert!(
            matches!(missing, Err(StoreError::NotFound(_))),
            "{missing:?}"
        );

        // Completing needs no lease: what happened to the flag is recorded regardless.
        let failing_key = format!("{}/look-2/kill", analysis.id);
        let mut kill = intent(analysis.id, &failing_key, 0.0);
        kill.action = "kill".to_owned();
        store.intend_actuation("w1", NOW + 6.0, kill).await.unwrap();
        let failed = store
            .complete_actuation(
                &failing_key,
                ActuationOutcome::Failed,
                "flagd: permission denied",
                NOW + 500.0,
            )
            .await
            .unwrap();
        assert_eq!(failed.state, ActuationState::Failed);

        let recorded = store.list_actuations(analysis.id).await.unwrap();
        assert_eq!(
            recorded,
            [applied, failed],
            "one record per key, in the order intended"
        );
        assert!(store.list_actuations(other.id).await.unwrap().is_empty());
    }

    pub async fn manual_actions_write_the_state_and_the_audit_entry_together(
        store: Arc<dyn Store>,
    ) {
        let analysis = create(store.as_ref(), "override").await;
        let paused = store
            .apply_manual_action(
                analysis.id,
                manual(AuditAction::Pause, AnalysisState::Paused, 1),
                NOW + 1.0,
            )
            .await
            .expect("pause");
        assert_eq!(paused.state, AnalysisState::Paused);
        assert_eq!(paused.version, 2);
        assert_eq!(paused.updated_at, NOW + 1.0);
        let log = store.audit_log(analysis.id).await.unwrap();
        assert_eq!(log.len(), 1);
        assert_eq!(log[0].analysis_id, analysis.id);
        assert_eq!(log[0].actor, "sre@example.com");
        assert_eq!(log[0].action, AuditAction::Pause);
        assert_eq!(log[0].reason, "pause by hand");
        assert_eq!(
            (log[0].from_state, log[0].to_state),
            (AnalysisState::Pending, AnalysisState::Paused)
        );
        assert_eq!(log[0].at, NOW + 1.0);

        // A stale override changes nothing: neither the state nor the log.
        let stale = store
            .apply_manual_action(
                analysis.id,
                manual(AuditAction::Resume, AnalysisState::Running, 1),
                NOW + 2.0,
            )
            .await;
        assert!(matches!(stale, Err(StoreError::Conflict(_))), "{stale:?}");
        assert_eq!(store.audit_log(analysis.id).await.unwrap().len(), 1);
        let unchanged = store.get_analysis(analysis.id).await.unwrap().unwrap();
        assert_eq!(
            (unchanged.state, unchanged.version),
            (AnalysisState::Paused, 2)
        );

        store
            .apply_manual_action(
                analysis.id,
                manual(AuditAction::Resume, AnalysisState::Running, 2),
                NOW + 3.0,
            )
            .await
            .unwrap();
        // Promote and rollback change the flag, which only a worker does: the store keeps
        // the request and makes the analysis due at once, still running.
        let rollback_requested = store
            .apply_manual_action(
                analysis.id,
                manual(AuditAction::Rollback, AnalysisState::Running, 3),
                NOW + 4.0,
            )
            .await
            .unwrap();
        assert_eq!(rollback_requested.state, AnalysisState::Running);
        assert_eq!(
            rollback_requested.requested_action,
            Some(AuditAction::Rollback)
        );
        assert_eq!(rollback_requested.next_look_at, Some(NOW + 4.0));
        // A request that would leave the analysis unclaimed is refused, writing nothing.
        let unreachable = store
            .apply_manual_action(
                analysis.id,
                manual(AuditAction::Promote, AnalysisState::Promoted, 4),
                NOW + 5.0,
            )
            .await;
        assert!(
            matches!(unreachable, Err(StoreError::Invalid(_))),
            "{unreachable:?}"
        );
        // A later request replaces an earlier one; pause and resume leave it alone.
        store
            .apply_manual_action(
                analysis.id,
                manual(AuditAction::Promote, AnalysisState::Running, 4),
                NOW + 5.0,
            )
            .await
            .unwrap();
        let paused = store
            .apply_manual_action(
                analysis.id,
                manual(AuditAction::Pause, AnalysisState::Paused, 5),
                NOW + 6.0,
            )
            .await
            .unwrap();
        assert_eq!(paused.requested_action, Some(AuditAction::Promote));
        assert_eq!(paused.next_look_at, Some(NOW + 5.0));
        let actions: Vec<_> = store
            .audit_log(analysis.id)
            .await
            .unwrap()
            .into_iter()
            .map(|e| (e.action, e.from_state, e.to_state))
            .collect();
        assert_eq!(
            actions,
            [
                (
                    AuditAction::Pause,
                    AnalysisState::Pending,
                    AnalysisState::Paused
                ),
                (
                    AuditAction::Resume,
                    AnalysisState::Paused,
                    AnalysisState::Running
                ),
                (
                    AuditAction::Rollback,
                    AnalysisState::Running,
                    AnalysisState::Running
                ),
                (
                    AuditAction::Promote,
                    AnalysisState::Running,
                    AnalysisState::Running
                ),
                (
                    AuditAction::Pause,
                    AnalysisState::Running,
                    AnalysisState::Paused
                ),
            ]
        );
        let other = create(store.as_ref(), "quiet").await;
        assert!(store.audit_log(other.id).await.unwrap().is_empty());
    }

    /// A rollout waiting for a person still takes its looks (its rollback triggers act
    /// meanwhile): a started `awaiting_review` analysis is claimed when its next look is
    /// due, and one without a next look (never started) is not.
    pub async fn an_analysis_awaiting_review_is_claimed_when_its_next_look_is_due(
        store: Arc<dyn Store>,
    ) {
        let never_started = create(store.as_ref(), "never-started").await;
        store
            .apply_manual_action(
                never_started.id,
                manual(AuditAction::Pause, AnalysisState::AwaitingReview, 1),
                NOW,
            )
            .await
            .unwrap();
        let waiting = store
            .create_analysis(new_analysis("waiting", Some(NOW + 1.0)), NOW)
            .await
            .unwrap();
        claim_only(store.as_ref(), "w1", NOW + 1.0, waiting.id).await;
        let mut waits = progress(
            Some(look(waiting.id, 1, NOW + 1.0)),
            AnalysisState::AwaitingReview,
        );
        waits.next_look_at = Some(NOW + 60.0);
        let recorded = store
            .record_look(waiting.id, "w1", 1, NOW + 1.0, waits)
            .await
            .unwrap();
        assert_eq!(recorded.state, AnalysisState::AwaitingReview);
        store.release(waiting.id, "w1").await.unwrap();

        assert!(
            store
                .claim_due("w2", NOW + 59.0, LEASE, 10)
                .await
                .unwrap()
                .is_empty(),
            "not before its next look, and never one that has none"
        );
        let claimed = claim_only(store.as_ref(), "w2", NOW + 60.0, waiting.id).await;
        assert_eq!(claimed.state, AnalysisState::AwaitingReview);
    }

    pub async fn a_requested_override_is_claimed_at_once_and_cleared_by_the_next_look(
        store: Arc<dyn Store>,
    ) {
        let analysis = create(store.as_ref(), "override").await;
        claim_only(store.as_ref(), "w1", NOW, analysis.id).await;
        let mut update = progress(None, AnalysisState::RolledBack);
        update.next_look_at = None;
        let ended = store
            .record_look(analysis.id, "w1", 1, NOW + 1.0, update)
            .await
            .unwrap();
        store.release(analysis.id, "w1").await.unwrap();
        assert_eq!(ended.requested_action, None);
        // A person reopens the final analysis (say, to promote after all): a worker
        // claims it at once, though its last look had no next one planned.
        let requested = store
            .apply_manual_action(
                analysis.id,
                manual(AuditAction::Promote, AnalysisState::Running, 2),
                NOW + 10.0,
            )
            .await
            .unwrap();
        assert_eq!(requested.requested_action, Some(AuditAction::Promote));
        let claimed = claim_only(store.as_ref(), "w2", NOW + 10.0, analysis.id).await;
        assert_eq!(claimed.requested_action, Some(AuditAction::Promote));
        let mut update = progress(None, AnalysisState::Promoted);
        update.next_look_at = None;
        let done = store
            .record_look(analysis.id, "w2", claimed.version, NOW + 11.0, update)
            .await
            .unwrap();
        assert_eq!(done.requested_action, None);
        assert_eq!(done.state, AnalysisState::Promoted);
        let stored = store.get_analysis(analysis.id).await.unwrap().unwrap();
        assert_eq!(stored.requested_action, None);
    }

    /// Issue 13 (retention): pruning deletes exactly the done analyses (promoted, rolled
    /// back, failed) that last changed before the cutoff, with their looks, flag changes
    /// and audit entries, in batches; it keeps recent ones, active ones, a failed
    /// rollback and one whose flag change has an unknown outcome.
    pub async fn pruning_deletes_exactly_the_old_finished_analyses_with_their_records(
        store: Arc<dyn Store>,
    ) {
        let store = store.as_ref();
        let old = NOW + 10.0;
        let cutoff = NOW + 500.0;
        // Ends `name` in `state` at `at` with one look and one applied flag change.
        let finish = |name: &'static str, state: AnalysisState, at: f64| async move {
            let analysis = create(store, name).await;
            claim_only(store, "w1", at, analysis.id).await;
            let key = format!("{name}:1:set_rollout:5");
            store
                .intend_actuation("w1", at, intent(analysis.id, &key, 5.0))
                .await
                .unwrap();
            store
                .complete_actuation(&key, ActuationOutcome::Applied, "ok", at)
                .await
                .unwrap();
            let mut update = progress(Some(look(analysis.id, 1, at)), state);
            // Not due again before the end of the test, except a failed rollback.
            update.next_look_at = Some(match state {
                AnalysisState::RollbackFailed => at + 30.0,
                _ => NOW + 1e6,
            });
            store
                .record_look(analysis.id, "w1", 1, at, update)
                .await
                .unwrap();
            store.release(analysis.id, "w1").await.unwrap();
            analysis.id
        };
        // Finished recently: kept. Claimed first, at its own (later) time.
        let recent = finish("recent-promoted", AnalysisState::Promoted, NOW + 1000.0).await;
        let promoted = finish("old-promoted", AnalysisState::Promoted, old).await;
        let failed = finish("old-failed", AnalysisState::Failed, old).await;
        // Rolled back after a person paused and resumed it: audit entries go too.
        let rolled_back = create(store, "old-rolled-back").await;
        store
            .apply_manual_action(
                rolled_back.id,
                manual(AuditAction::Pause, AnalysisState::Paused, 1),
                old,
            )
            .await
            .unwrap();
        store
            .apply_manual_action(
                rolled_back.id,
                manual(AuditAction::Resume, AnalysisState::Running, 2),
                old,
            )
            .await
            .unwrap();
        claim_only(store, "w1", old, rolled_back.id).await;
        store
            .record_look(
                rolled_back.id,
                "w1",
                3,
                old,
                progress(
                    Some(look(rolled_back.id, 1, old)),
                    AnalysisState::RolledBack,
                ),
            )
            .await
            .unwrap();
        store.release(rolled_back.id, "w1").await.unwrap();
        // Rolled back long ago, but its last flag change's outcome is unknown: kept.
        let unknown = create(store, "old-unknown-change").await;
        claim_only(store, "w1", old, unknown.id).await;
        store
            .intend_actuation("w1", old, intent(unknown.id, "unknown:kill", 0.0))
            .await
            .unwrap();
        store
            .record_look(
                unknown.id,
                "w1",
                1,
                old,
                progress(None, AnalysisState::RolledBack),
            )
            .await
            .unwrap();
        store.release(unknown.id, "w1").await.unwrap();
        // Old but not done: kept.
        let rollback_failed =
            finish("old-rollback-failed", AnalysisState::RollbackFailed, old).await;
        let awaiting = finish("old-awaiting-review", AnalysisState::AwaitingReview, old).await;
        let running = finish("old-running", AnalysisState::Running, old).await;
        let paused = create(store, "old-paused").await;
        store
            .apply_manual_action(
                paused.id,
                manual(AuditAction::Pause, AnalysisState::Paused, 1),
                old,
            )
            .await
            .unwrap();
        let pending = create(store, "old-pending").await;

        // Nothing is older than a cutoff before everything.
        assert_eq!(store.prune_finished(NOW, 100).await.unwrap(), 0);
        // Batches of two: two, then the third, then nothing.
        assert_eq!(store.prune_finished(cutoff, 2).await.unwrap(), 2);
        assert_eq!(store.prune_finished(cutoff, 2).await.unwrap(), 1);
        assert_eq!(store.prune_finished(cutoff, 2).await.unwrap(), 0);

        for id in [promoted, failed, rolled_back.id] {
            assert_eq!(store.get_analysis(id).await.unwrap(), None, "{id} deleted");
            assert!(matches!(
                store.list_looks(id).await,
                Err(StoreError::NotFound(_))
            ));
        }
        // The flag changes went with them: their keys are free again.
        claim_only(store, "w9", NOW + 1.0, pending.id).await;
        let reused = store
            .intend_actuation(
                "w9",
                NOW + 1.0,
                intent(pending.id, "old-promoted:1:set_rollout:5", 5.0),
            )
            .await
            .unwrap();
        assert_eq!(
            reused.analysis_id, pending.id,
            "the deleted analysis's flag change is gone"
        );

        for id in [
            recent,
            unknown.id,
            rollback_failed,
            awaiting,
            running,
            paused.id,
            pending.id,
        ] {
            assert!(store.get_analysis(id).await.unwrap().is_some(), "{id} kept");
        }
        assert_eq!(store.list_looks(recent).await.unwrap().len(), 1);
        assert_eq!(store.list_actuations(recent).await.unwrap().len(), 1);
        assert_eq!(store.audit_log(paused.id).await.unwrap().len(), 1);
        let counts = store.counts_by_state().await.unwrap();
        assert_eq!(counts[&AnalysisState::Promoted], 1);
        assert_eq!(counts[&AnalysisState::RolledBack], 1);
        assert_eq!(counts[&AnalysisState::Failed], 0);
        assert_eq!(counts.values().sum::<u64>(), 7);
        // Everything finished is deletable once the cutoff passes the recent one too;
        // the unknown flag change still keeps its analysis.
        assert_eq!(store.prune_finished(NOW + 5000.0, 100).await.unwrap(), 1);
        assert!(store.get_analysis(unknown.id).await.unwrap().is_some());
    }

    pub async fn done_analyses_are_never_claimed_nor_changed_and_a_failed_rollback_is_claimed_again(
        store: Arc<dyn Store>,
    ) {
        let finals = [
            AnalysisState::Promoted,
            AnalysisState::RolledBack,
            AnalysisState::RollbackFailed,
            AnalysisState::Failed,
        ];
        let mut ended = Vec::new();
        for state in finals {
            let analysis = create(store.as_ref(), state.as_str()).await;
            claim_only(store.as_ref(), "w1", NOW, analysis.id).await;
            let mut update = progress(None, state);
            // A failed rollback is tried again later; the others are done.
            update.next_look_at = (state == AnalysisState::RollbackFailed).then_some(NOW + 30.0);
            let written = store
                .record_look(analysis.id, "w1", 1, NOW + 1.0, update)
                .await
                .unwrap();
            assert!(written.state.is_final());
            ended.push(written);
        }
        // Still leased to w1: a further look is refused because the analysis is final.
        let further = store
            .record_look(
                ended[0].id,
                "w1",
                2,
                NOW + 2.0,
                progress(None, AnalysisState::Running),
            )
            .await;
        assert!(
            matches!(further, Err(StoreError::Conflict(_))),
            "{further:?}"
        );
        for analysis in &ended {
            assert!(store.release(analysis.id, "w1").await.unwrap());
        }
        let claimed: Vec<AnalysisState> = store
            .claim_due("w2", NOW + 1e6, LEASE, 100)
            .await
            .unwrap()
            .iter()
            .map(|a| a.state)
            .collect();
        assert_eq!(
            claimed,
            [AnalysisState::RollbackFailed],
            "done analyses stay put, due or not; a failed rollback is retried"
        );
        let stored = store.get_analysis(ended[0].id).await.unwrap().unwrap();
        assert_eq!((stored.state, stored.version), (AnalysisState::Promoted, 2));
    }

    pub async fn counts_by_state_name_every_state(store: Arc<dyn Store>) {
        let empty = store.counts_by_state().await.unwrap();
        assert_eq!(empty.len(), AnalysisState::ALL.len());
        assert!(empty.values().all(|&n| n == 0));
        let a = create(store.as_ref(), "a").await;
        create(store.as_ref(), "b").await;
        create(store.as_ref(), "c").await;
        store
            .apply_manual_action(
                a.id,
                manual(AuditAction::Pause, AnalysisState::Paused, 1),
                NOW,
            )
            .await
            .unwrap();
        let counts = store.counts_by_state().await.unwrap();
        let mut expected: BTreeMap<_, _> = AnalysisState::ALL.into_iter().map(|s| (s, 0)).collect();
        expected.insert(AnalysisState::Pending, 2);
        expected.insert(AnalysisState::Paused, 1);
        assert_eq!(counts, expected);
        store.healthcheck().await.expect("healthy");
    }

    /// The console's list: filters by state, flag text (case and `LIKE` wildcards taken
    /// literally) and time, in the on-call order, with the number that matched.
    pub async fn the_overview_filters_and_puts_what_needs_a_person_first(store: Arc<dyn Store>) {
        let mut made = BTreeMap::new();
        for (name, flag) in [
            ("pending", "checkout-v2"),
            ("paused", "Search-V3"),
            ("running", "search_v4"),
            ("review", "cart"),
            ("rolled-back-new", "pay_v2"),
            ("rolled-back-old", "payXv2"),
            ("promoted", "100%-launch"),
        ] {
            let analysis = store
                .create_analysis(
                    NewAnalysis {
                        flag: flag.to_owned(),
                        ..new_analysis(name, None)
                    },
                    NOW,
                )
                .await
                .unwrap();
            made.insert(name, analysis.id);
        }
        let claimed = store.claim_due("w1", NOW, LEASE, 100).await.unwrap();
        assert_eq!(claimed.len(), made.len());
        for (name, state, at) in [
            ("running", AnalysisState::Running, 20.0),
            ("review", AnalysisState::AwaitingReview, 5.0),
            ("rolled-back-new", AnalysisState::RolledBack, 25.0),
            ("rolled-back-old", AnalysisState::RolledBack, 1.0),
            ("promoted", AnalysisState::Promoted, 28.0),
        ] {
            store
                .record_look(made[name], "w1", 1, NOW + at, progress(None, state))
                .await
                .unwrap();
        }
        store
            .apply_manual_action(
                made["paused"],
                manual(AuditAction::Pause, AnalysisState::Paused, 1),
                NOW + 10.0,
            )
            .await
            .unwrap();
        let query = |states: Vec<AnalysisState>, flag: Option<&str>, since: Option<f64>| {
            canary::store::OverviewQuery {
                states,
                flag_contains: flag.map(str::to_owned),
                updated_since: since,
                recent_after: NOW + 15.0,
                limit: 100,
            }
        };
        let names = |overview: &canary::store::Overview| -> Vec<&str> {
            overview
                .rows
                .iter()
                .map(|row| *made.iter().find(|(_, id)| **id == row.id).unwrap().0)
                .collect()
        };
        let everything = store.overview(&query(vec![], None, None)).await.unwrap();
        assert_eq!(
            names(&everything),
            [
                "review",
                "rolled-back-new",
                "running",
                "paused",
                "pending",
                "promoted",
                "rolled-back-old"
            ]
        );
        assert_eq!(everything.matching, 7);
        let running = &everything.rows[2];
        assert_eq!(
            (
                running.flag.as_str(),
                running.current_stage,
                running.traffic
            ),
            ("search_v4", Some(1), Some(12.5))
        );
        assert_eq!(running.reasons[0], "every metric passed");
        assert_eq!(running.updated_at, NOW + 20.0);
        assert_eq!(running.version, 2);

        let rolled_back = store
            .overview(&query(vec![AnalysisState::RolledBack], None, None))
            .await
            .unwrap();
        assert_eq!(names(&rolled_back), ["rolled-back-new", "rolled-back-old"]);
        let two_states = store
            .overview(&query(
                vec![AnalysisState::Paused, AnalysisState::Pending],
                None,
                None,
            ))
            .await
            .unwrap();
        assert_eq!(names(&two_states), ["paused", "pending"]);
        // `_` and `%` are letters here, and case does not matter.
        for (text, expected) in [
            ("Y_V", vec!["rolled-back-new"]),
            ("search-v", vec!["paused"]),
            ("SEARCH", vec!["running", "paused"]),
            ("100%", vec!["promoted"]),
            ("%", vec!["promoted"]),
            ("  ", names(&everything)),
        ] {
            let found = store
                .overview(&query(vec![], Some(text), None))
                .await
                .unwrap();
            assert_eq!(names(&found), expected, "flag contains {text:?}");
            assert_eq!(found.matching, expected.len() as u64);
        }
        let recent = store
            .overview(&query(vec![], None, Some(NOW + 15.0)))
            .await
            .unwrap();
        assert_eq!(names(&recent), ["rolled-back-new", "running", "promoted"]);
        let first_two = store
            .overview(&canary::store::OverviewQuery {
                limit: 2,
                ..query(vec![], None, None)
            })
            .await
            .unwrap();
        assert_eq!(names(&first_two), ["review", "rolled-back-new"]);
        assert_eq!(first_two.matching, 7);
    }

    pub async fn a_submit_key_names_one_analysis_for_good(store: Arc<dyn Store>) {
        let keyed = |name: &str, key: &str| NewAnalysis {
            submit_key: Some(key.to_owned()),
            ..new_analysis(name, None)
        };
        assert_eq!(
            store.analysis_by_submit_key("argo/a/b/c").await.unwrap(),
            None
        );
        // Eight concurrent first calls under one key: exactly one is stored.
        let attempts = (0..8).map(|index| {
            let store = Arc::clone(&store);
            let request = keyed(&format!("race{index}"), "argo/a/b/c");
            async move { store.create_analysis(request, NOW).await }
        });
        let results = futures::future::join_all(attempts).await;
        let stored: Vec<&Analysis> = results.iter().filter_map(|r| r.as_ref().ok()).collect();
        assert_eq!(stored.len(), 1, "{results:?}");
        for result in &results {
            if let Err(error) = result {
                assert!(
                    matches!(error, StoreError::SubmitKeyTaken(key) if key == "argo/a/b/c"),
                    "{error:?}"
                );
            }
        }
        let found = store
            .analysis_by_submit_key("argo/a/b/c")
            .await
            .unwrap()
            .expect("stored under its key");
        assert_eq!(found, *stored[0]);
        assert_eq!(found.submit_key.as_deref(), Some("argo/a/b/c"));
        // A final analysis keeps its key: the key is not free again.
        let claimed = claim_only(store.as_ref(), "w1", NOW, found.id).await;
        store
            .record_look(
                found.id,
                "w1",
                claimed.version,
                NOW,
                progress(None, AnalysisState::Promoted),
            )
            .await
            .expect("promoted");
        let again = store
            .create_analysis(keyed("later", "argo/a/b/c"), NOW)
            .await;
        assert!(
            matches!(again, Err(StoreError::SubmitKeyTaken(_))),
            "{again:?}"
        );
        // Other keys, and analyses without one, are independent.
        let other = store
            .create_analysis(keyed("other", "argo/a/b/d"), NOW)
            .await
            .unwrap();
        assert_ne!(other.id, found.id);
        create(store.as_ref(), "plain-1").await;
        let plain = create(store.as_ref(), "plain-2").await;
        assert_eq!(plain.submit_key, None);
    }

    pub async fn unknown_analyses_are_not_found(store: Arc<dyn Store>) {
        let id = Uuid::new_v4();
        assert_eq!(store.get_analysis(id).await.unwrap(), None);
        let not_found = |result: Result<(), StoreError>, what: &str| {
            assert!(
                matches!(result, Err(StoreError::NotFound(_))),
                "{what}: {result:?}"
            );
        };
        not_found(store.list_looks(id).await.map(drop), "list_looks");
        not_found(store.list_actuations(id).await.map(drop), "list_actuations");
        not_found(store.audit_log(id).await.map(drop), "audit_log");
        not_found(
            store.renew_lease(id, "w1", NOW, LEASE).await.map(drop),
            "renew_lease",
        );
        not_found(store.release(id, "w1").await.map(drop), "release");
        not_found(
            store
                .record_look(id, "w1", 1, NOW, progress(None, AnalysisState::Running))
                .await
                .map(drop),
            "record_look",
        );
        not_found(
            store
                .intend_actuation("w1", NOW, intent(id, "k", 1.0))
                .await
                .map(drop),
            "intend_actuation",
        );
        not_found(
            store
                .apply_manual_action(
                    id,
                    manual(AuditAction::Pause, AnalysisState::Paused, 1),
                    NOW,
                )
                .await
                .map(drop),
            "apply_manual_action",
        );
        let bad_time = store
            .create_analysis(new_analysis("nan", None), f64::NAN)
            .await;
        assert!(
            matches!(bad_time, Err(StoreError::Invalid(_))),
            "{bad_time:?}"
        );
    }

    pub async fn an_execution_is_claimed_once_when_due_and_finished_only_by_its_holder(
        store: Arc<dyn Store>,
    ) {
        let store = store.as_ref();
        let created = store
            .create_execution(new_execution(NOW + 10.0), NOW)
            .await
            .unwrap();
        assert_eq!(created.state, ExecutionState::Pending);
        assert_eq!(created.attempts, 0);
        assert_eq!(created.due_at, NOW + 10.0);
        assert_eq!(created.result, serde_json::Value::Null);
        assert_eq!(created.request, new_execution(0.0).request);
        assert_eq!(
            store.get_execution(created.id).await.unwrap().as_ref(),
            Some(&created)
        );
        assert_eq!(
            store
                .claim_execution("w1", NOW + 9.999, LEASE)
                .await
                .unwrap(),
            None,
            "not due before its window ends"
        );
        let claimed = store
            .claim_execution("w1", NOW + 10.0, LEASE)
            .await
            .unwrap()
            .expect("due");
        assert_eq!(claimed.id, created.id);
        assert_eq!(claimed.state, ExecutionState::Running);
        assert_eq!(claimed.attempts, 1);
        assert_eq!(claimed.lease_owner.as_deref(), Some("w1"));
        assert_eq!(
            store
                .claim_execution("w2", NOW + 11.0, LEASE)
                .await
                .unwrap(),
            None,
            "leased"
        );
        let stranger = store
            .finish_execution(
                created.id,
                "w2",
                NOW + 12.0,
                ExecutionOutcome::Failed("not mine".to_owned()),
            )
            .await;
        assert!(
            matches!(stranger, Err(StoreError::LeaseLost { .. })),
            "{stranger:?}"
        );
        let result = serde_json::json!({"score": 97.5, "groups": {"latency": 100}});
        let finished = store
            .finish_execution(
                created.id,
                "w1",
                NOW + 13.0,
                ExecutionOutcome::Succeeded(result.clone()),
            )
            .await
            .unwrap();
        assert_eq!(finished.state, ExecutionState::Succeeded);
        assert_eq!(finished.result, result);
        assert_eq!(finished.finished_at, Some(NOW + 13.0));
        assert_eq!(finished.lease_owner, None);
        assert_eq!(
            store.get_execution(created.id).await.unwrap(),
            Some(finished)
        );
        assert_eq!(
            store
                .claim_execution("w2", NOW + 100.0, LEASE)
                .await
                .unwrap(),
            None,
            "finished executions are never claimed"
        );
        let again = store
            .finish_execution(
                created.id,
                "w1",
                NOW + 14.0,
                ExecutionOutcome::Failed("twice".to_owned()),
            )
            .await;
        assert!(
            matches!(again, Err(StoreError::LeaseLost { .. })),
            "{again:?}"
        );
        let unknown = store
            .finish_execution(
                Uuid::new_v4(),
                "w1",
                NOW,
                ExecutionOutcome::Failed("x".to_owned()),
            )
            .await;
        assert!(
            matches!(unknown, Err(StoreError::NotFound(_))),
            "{unknown:?}"
        );
        assert_eq!(store.get_execution(Uuid::new_v4()).await.unwrap(), None);
    }

    pub async fn an_execution_whose_worker_died_is_claimed_again_and_the_dead_worker_cannot_finish_it(
        store: Arc<dyn Store>,
    ) {
        let store = store.as_ref();
        let first = store
            .create_execution(new_execution(NOW), NOW)
            .await
            .unwrap();
        let second = store
            .create_execution(new_execution(NOW), NOW)
            .await
            .unwrap();
        let taken = store
            .claim_execution("dead", NOW, LEASE)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(taken.id, first.id, "oldest first");
        let next = store
            .claim_execution("w2", NOW, LEASE)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(next.id, second.id);
        let after_expiry = NOW + LEASE_SECONDS;
        let retaken = store
            .claim_execution("w3", after_expiry, LEASE)
            .await
            .unwrap()
            .expect("the dead worker's lease has expired");
        assert_eq!(retaken.id, first.id);
        assert_eq!(retaken.attempts, 2);
        let late = store
            .finish_execution(
                first.id,
                "dead",
                after_expiry + 1.0,
                ExecutionOutcome::Succeeded(serde_json::json!({"stale": true})),
            )
            .await;
        assert!(
            matches!(late, Err(StoreError::LeaseLost { .. })),
            "{late:?}"
        );
        let failed = store
            .finish_execution(
                first.id,
                "w3",
                after_expiry + 1.0,
                ExecutionOutcome::Failed("the source did not answer".to_owned()),
            )
            .await
            .unwrap();
        assert_eq!(failed.state, ExecutionState::Failed);
        assert_eq!(failed.error.as_deref(), Some("the source did not answer"));
        assert_eq!(failed.result, serde_json::Value::Null);
    }

    pub async fn the_latest_execution_under_a_key_is_the_newest(store: Arc<dyn Store>) {
        let store = store.as_ref();
        assert_eq!(store.latest_execution("flagger/a/b/c").await.unwrap(), None);
        let keyed = |key: &str| NewExecution {
            key: Some(key.to_owned()),
            ..new_execution(NOW)
        };
        let first = store
            .create_execution(keyed("flagger/a/b/c"), NOW)
            .await
            .unwrap();
        assert_eq!(first.key.as_deref(), Some("flagger/a/b/c"));
        let second = store
            .create_execution(keyed("flagger/a/b/c"), NOW)
            .await
            .unwrap();
        store
            .create_execution(keyed("flagger/a/b/d"), NOW)
            .await
            .unwrap();
        store
            .create_execution(new_execution(NOW), NOW)
            .await
            .unwrap();
        assert_eq!(
            store
                .latest_execution("flagger/a/b/c")
                .await
                .unwrap()
                .map(|e| e.id),
            Some(second.id)
        );
    }

    pub async fn active_analyses_come_with_their_latest_look_and_done_ones_not_at_all(
        store: Arc<dyn Store>,
    ) {
        let store_ref = store.as_ref();
        let looked = create(store_ref, "looked").await;
        claim_only(store_ref, "w1", NOW, looked.id).await;
        for (number, version) in [(1, 1), (2, 2)] {
            store_ref
                .record_look(
                    looked.id,
                    "w1",
                    version,
                    NOW + number as f64,
                    progress(
                        Some(look(looked.id, number, NOW + number as f64)),
                        AnalysisState::Running,
                    ),
                )
                .await
                .unwrap();
        }
        let done = create(store_ref, "done").await;
        claim_only(store_ref, "w1", NOW, done.id).await;
        store_ref
            .record_look(
                done.id,
                "w1",
                1,
                NOW + 1.0,
                progress(Some(look(done.id, 1, NOW + 1.0)), AnalysisState::Promoted),
            )
            .await
            .unwrap();
        let waiting = create(store_ref, "waiting").await;
        let active = store_ref.active_with_latest_look(100).await.unwrap();
        let summary: Vec<(Uuid, Option<u64>)> = active
            .iter()
            .map(|(analysis, look)| (analysis.id, look.as_ref().map(|look| look.look)))
            .collect();
        assert_eq!(summary, [(looked.id, Some(2)), (waiting.id, None)]);
        assert_eq!(store_ref.active_with_latest_look(1).await.unwrap().len(), 1);
    }

    pub async fn pruning_deletes_old_finished_executions_and_keeps_the_rest(store: Arc<dyn Store>) {
        let store = store.as_ref();
        let old = store
            .create_execution(new_execution(NOW), NOW)
            .await
            .unwrap();
        store
            .claim_execution("w", NOW, LEASE)
            .await
            .unwrap()
            .unwrap();
        store
            .finish_execution(old.id, "w", NOW + 1.0, ExecutionOutcome::Failed("x".into()))
            .await
            .unwrap();
        let recent = store
            .create_execution(new_execution(NOW), NOW)
            .await
            .unwrap();
        store
            .claim_execution("w", NOW + 5.0, LEASE)
            .await
            .unwrap()
            .unwrap();
        store
            .finish_execution(
                recent.id,
                "w",
                NOW + 20.0,
                ExecutionOutcome::Succeeded(serde_json::json!(1)),
            )
            .await
            .unwrap();
        let waiting = store
            .create_execution(new_execution(NOW), NOW)
            .await
            .unwrap();
        store.prune_finished(NOW + 10.0, 100).await.unwrap();
        assert_eq!(store.get_execution(old.id).await.unwrap(), None);
        assert!(store.get_execution(recent.id).await.unwrap().is_some());
        assert!(store.get_execution(waiting.id).await.unwrap().is_some());
    }
}

/// One store per test, of each kind.
async fn on_sqlite_memory<F, Fut>(test: F)
where
    F: FnOnce(Arc<dyn Store>) -> Fut,
    Fut: Future<Output = ()>,
{
    let store = StoreConfig::new("sqlite::memory:")
        .build()
        .await
        .expect("sqlite in memory");
    test(store.clone()).await;
    store.close().await;
}

async fn on_sqlite_file<F, Fut>(test: F)
where
    F: FnOnce(Arc<dyn Store>) -> Fut,
    Fut: Future<Output = ()>,
{
    let dir = tempfile::tempdir().expect("temporary directory");
    let path = dir.path().join("canary.db");
    let store = StoreConfig::new(path.to_str().expect("UTF-8 path"))
        .build()
        .await
        .expect("sqlite file");
    test(store.clone()).await;
    store.close().await;
}

/// A PostgreSQL schema of its own for one test (the worker tests use it too).
pub(crate) struct PostgresSchema {
    admin: sqlx::PgPool,
    name: String,
    /// A URL whose connections use this schema.
    pub(crate) url: String,
}

impl PostgresSchema {
    pub(crate) async fn create() -> Self {
        let base = std::env::var("DATABASE_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned());
        let admin = sqlx::postgres::PgPoolOptions::new()
            .max_connections(1)
            .connect(&base)
            .await
            .unwrap_or_else(|e| panic!("PostgreSQL at {base} (set DATABASE_URL): {e}"));
        let name = format!("canary_test_{}", Uuid::new_v4().simple());
        sqlx::query(AssertSqlSafe(format!("CREATE SCHEMA {name}")))
            .execute(&admin)
            .await
            .expect("create schema");
        let separator = if base.contains('?') { '&' } else { '?' };
        let url = format!("{base}{separator}options[search_path]={name}");
        Self { admin, name, url }
    }

    pub(crate) async fn drop(self) {
        sqlx::query(AssertSqlSafe(format!("DROP SCHEMA {} CASCADE", self.name)))
            .execute(&self.admin)
            .await
            .expect("drop schema");
        self.admin.close().await;
    }

    pub(crate) async fn store(&self, max_connections: u32) -> Arc<dyn Store> {
        StoreConfig {
            url: self.url.clone(),
            max_connections: Some(max_connections),
        }
        .build()
        .await
        .expect("postgres store")
    }
}

/// Runs `test` with a fresh schema and drops the schema afterwards, also when the test
/// panics (the panic is raised again after the clean-up).
pub(crate) async fn in_postgres_schema<F, Fut>(test: F)
where
    F: FnOnce(Arc<PostgresSchema>) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let schema = Arc::new(PostgresSchema::create().await);
    let outcome = tokio::spawn(test(schema.clone())).await;
    let schema = Arc::into_inner(schema).expect("the test let go of its schema");
    schema.drop().await;
    if let Err(error) = outcome {
        std::panic::resume_unwind(error.into_panic());
    }
}

async fn on_postgres<F, Fut>(test: F)
where
    F: FnOnce(Arc<dyn Store>) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    in_postgres_schema(|schema| async move {
        let store = schema.store(4).await;
        test(store.clone()).await;
        store.close().await;
    })
    .await;
}

macro_rules! contract_tests {
    ($($name:ident),* $(,)?) => {
        mod sqlite_memory {
            $(#[tokio::test]
            async fn $name() {
                super::on_sqlite_memory(super::contract::$name).await;
            })*
        }
        mod sqlite_file {
            $(#[tokio::test]
            async fn $name() {
                super::on_sqlite_file(super::contract::$name).await;
            })*
        }
        mod postgres {
            $(#[tokio::test]
            async fn $name() {
                super::on_postgres(super::contract::$name).await;
            })*
        }
    };
}

contract_tests!(
    a_created_analysis_reads_back_with_every_field,
    progress_and_looks_read_back_exactly,
    listing_pages_in_creation_order_and_filters_by_state,
    only_due_and_unleased_analyses_are_claimed,
    an_expired_lease_passes_to_another_worker_and_the_old_worker_can_no_longer_write,
    a_write_against_a_moved_version_is_a_conflict_and_writes_nothing,
    renewing_keeps_the_lease_and_releasing_frees_it,
    actuation_intents_are_idempotent_by_key,
    manual_actions_write_the_state_and_the_audit_entry_together,
    a_requested_override_is_claimed_at_once_and_cleared_by_the_next_look,
    an_analysis_awaiting_review_is_claimed_when_its_next_look_is_due,
    done_analyses_are_never_claimed_nor_changed_and_a_failed_rollback_is_claimed_again,
    counts_by_state_name_every_state,
    the_overview_filters_and_puts_what_needs_a_person_first,
    a_submit_key_names_one_analysis_for_good,
    unknown_analyses_are_not_found,
    pruning_deletes_exactly_the_old_finished_analyses_with_their_records,
    an_execution_is_claimed_once_when_due_and_finished_only_by_its_holder,
    an_execution_whose_worker_died_is_claimed_again_and_the_dead_worker_cannot_finish_it,
    pruning_deletes_old_finished_executions_and_keeps_the_rest,
    the_latest_execution_under_a_key_is_the_newest,
    active_analyses_come_with_their_latest_look_and_done_ones_not_at_all,
);

#[tokio::test]
async fn a_sqlite_file_keeps_everything_across_a_restart() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let url = format!("sqlite:{}", dir.path().join("canary.db").display());

    let store = SqliteStore::connect(&url).await.expect("first start");
    let analysis = create(&store, "restart").await;
    claim_only(&store, "w1", NOW, analysis.id).await;
    let running = store
        .record_look(
            analysis.id,
            "w1",
            1,
            NOW + 1.0,
            progress(
                Some(look(analysis.id, 1, NOW + 1.0)),
                AnalysisState::Running,
            ),
        )
        .await
        .unwrap();
    let key = "restart/look-1/set_rollout-25";
    store
        .intend_actuation("w1", NOW + 1.0, intent(analysis.id, key, 25.0))
        .await
        .unwrap();
    store
        .complete_actuation(key, ActuationOutcome::Applied, "25 %", NOW + 2.0)
        .await
        .unwrap();
    let waiting = create(&store, "waiting").await;
    store
        .apply_manual_action(
            waiting.id,
            manual(AuditAction::Pause, AnalysisState::Paused, 1),
            NOW + 3.0,
        )
        .await
        .unwrap();
    let looks = store.list_looks(analysis.id).await.unwrap();
    let actuations = store.list_actuations(analysis.id).await.unwrap();
    let audit = store.audit_log(waiting.id).await.unwrap();
    store.close().await;
    drop(store);

    let reopened = SqliteStore::connect(&url).await.expect("second start");
    assert_eq!(
        reopened.get_analysis(analysis.id).await.unwrap(),
        Some(running.clone())
    );
    assert_eq!(reopened.list_looks(analysis.id).await.unwrap(), looks);
    assert_eq!(
        reopened.list_actuations(analysis.id).await.unwrap(),
        actuations
    );
    assert_eq!(reopened.audit_log(waiting.id).await.unwrap(), audit);
    assert_eq!(looks.len() + actuations.len() + audit.len(), 3);
    // The running analysis resumes: once the dead instance's lease expires it is
    // claimed again, with the runner snapshot it had.
    assert!(
        reopened
            .claim_due("w2", NOW + 20.0, LEASE, 10)
            .await
            .unwrap()
            .is_empty()
    );
    let resumed = claim_only(&reopened, "w2", NOW + 61.0, analysis.id).await;
    assert_eq!(resumed.runner_state, running.runner_state);
    assert_eq!(resumed.version, running.version);
    reopened.close().await;
}

/// Workers claim 200 due analyses until none are left, finishing each one they claim.
/// Every analysis is claimed exactly once and no two workers ever hold the same one.
async fn workers_share_two_hundred_analyses(setup: Arc<dyn Store>, workers: Vec<Arc<dyn Store>>) {
    const ANALYSES: usize = 200;
    let worker_count = workers.len();
    {
        let mut created = Vec::with_capacity(ANALYSES);
        for n in 0..ANALYSES {
            created.push(create(setup.as_ref(), &format!("load-{n}")).await.id);
        }
        let started = Instant::now();
        let held: Arc<Mutex<HashMap<Uuid, String>>> = Arc::default();
        let claims: Arc<Mutex<HashMap<Uuid, Vec<String>>>> = Arc::default();
        let overlaps: Arc<Mutex<Vec<String>>> = Arc::default();
        let mut tasks = Vec::new();
        for (w, store) in workers.iter().cloned().enumerate() {
            let worker = format!("worker-{w}");
            let (held, claims, overlaps) = (held.clone(), claims.clone(), overlaps.clone());
            tasks.push(tokio::spawn(async move {
                loop {
                    let batch = store
                        .claim_due(&worker, NOW, LEASE, 3)
                        .await
                        .expect("claim");
                    if batch.is_empty() {
                        break;
                    }
                    for analysis in batch {
                        assert_eq!(analysis.lease_owner.as_deref(), Some(worker.as_str()));
                        if let Some(other) =
                            held.lock().unwrap().insert(analysis.id, worker.clone())
                        {
                            overlaps
                                .lock()
                                .unwrap()
                                .push(format!("{} held by {other} and {worker}", analysis.id));
                        }
                        claims
                            .lock()
                            .unwrap()
                            .entry(analysis.id)
                            .or_default()
                            .push(worker.clone());
                        // Let the other workers run while this one holds the lease.
                        tokio::task::yield_now().await;
                        let mut done =
                            progress(Some(look(analysis.id, 1, NOW)), AnalysisState::Promoted);
                        done.next_look_at = None;
                        store
                            .record_look(analysis.id, &worker, analysis.version, NOW, done)
                            .await
                            .expect("the holder records its look");
                        held.lock().unwrap().remove(&analysis.id);
                        assert!(store.release(analysis.id, &worker).await.expect("release"));
                    }
                }
            }));
        }
        for task in tasks {
            task.await.expect("worker");
        }
        let elapsed = started.elapsed();

        let overlaps = overlaps.lock().unwrap().clone();
        assert!(
            overlaps.is_empty(),
            "analyses held by two workers at once: {overlaps:?}"
        );
        let claims = claims.lock().unwrap().clone();
        let twice: Vec<_> = claims.iter().filter(|(_, by)| by.len() != 1).collect();
        assert!(twice.is_empty(), "claimed more than once: {twice:?}");
        assert_eq!(claims.len(), ANALYSES, "every analysis claimed");
        let mut per_worker: BTreeMap<String, usize> = BTreeMap::new();
        for by in claims.values() {
            *per_worker.entry(by[0].clone()).or_default() += 1;
        }
        let counts = setup.counts_by_state().await.unwrap();
        assert_eq!(counts[&AnalysisState::Promoted], ANALYSES as u64);
        for id in &created {
            assert_eq!(
                setup.list_looks(*id).await.unwrap().len(),
                1,
                "one look for {id}"
            );
        }
        eprintln!("{ANALYSES} analyses over {worker_count} workers in {elapsed:?}: {per_worker:?}");
        for store in workers {
            store.close().await;
        }
        setup.close().await;
    }
}

/// Eight workers, each an instance of its own with one connection, as eight
/// `canary serve` processes on one database would be.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn eight_postgres_workers_claim_two_hundred_analyses_each_exactly_once() {
    in_postgres_schema(|schema| async move {
        let mut workers = Vec::new();
        for _ in 0..8 {
            workers.push(schema.store(1).await);
        }
        workers_share_two_hundred_analyses(schema.store(2).await, workers).await;
    })
    .await;
}

/// Eight instances claim 100 executions concurrently: each is claimed exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn eight_postgres_instances_claim_each_execution_exactly_once() {
    in_postgres_schema(|schema| async move {
        let setup = schema.store(2).await;
        for _ in 0..100 {
            setup
                .create_execution(new_execution(NOW), NOW)
                .await
                .unwrap();
        }
        let mut tasks = tokio::task::JoinSet::new();
        for worker in 0..8 {
            let store = schema.store(1).await;
            tasks.spawn(async move {
                let name = format!("w{worker}");
                let mut mine = Vec::new();
                while let Some(execution) = store.claim_execution(&name, NOW, LEASE).await.unwrap()
                {
                    mine.push(execution.id);
                }
                store.close().await;
                mine
            });
        }
        let mut claimed = Vec::new();
        while let Some(mine) = tasks.join_next().await {
            claimed.extend(mine.unwrap());
        }
        let total = claimed.len();
        claimed.sort();
        claimed.dedup();
        assert_eq!((total, claimed.len()), (100, 100));
        setup.close().await;
    })
    .await;
}

/// Eight workers in one instance on one SQLite file (its pool has several connections,
/// so writers really contend for the file's write lock).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn eight_workers_on_one_sqlite_file_claim_two_hundred_analyses_each_exactly_once() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let store = StoreConfig::new(format!("sqlite://{}", dir.path().join("load.db").display()))
        .build()
        .await
        .expect("sqlite file");
    workers_share_two_hundred_analyses(store.clone(), vec![store; 8]).await;
}

/// Claims that race for the same few analyses over and over, with leases expiring
/// under them: a worker only ever writes while it holds the lease, and every write by a
/// worker that lost its lease is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_postgres_workers_never_write_without_the_lease() {
    in_postgres_schema(|schema| async move {
        let setup = schema.store(2).await;
        for n in 0..5 {
            create(setup.as_ref(), &format!("race-{n}")).await;
        }
        let mut tasks = Vec::new();
        for w in 0..6 {
            let worker = format!("racer-{w}");
            let store = schema.store(1).await;
            tasks.push(tokio::spawn(async move {
                let (mut written, mut refused) = (0u32, 0u32);
                // Time moves in steps of 10 s with 15 s leases, so leases keep expiring
                // while their holders still think they have them.
                for tick in 0..40 {
                    let now = NOW + f64::from(tick) * 10.0;
                    let claimed = store
                        .claim_due(&worker, now, Duration::from_secs(15), 2)
                        .await
                        .expect("claim");
                    for analysis in claimed {
                        let later = now + 16.0 * f64::from(u8::from(tick % 3 == 0));
                        let mut update = progress(None, AnalysisState::Running);
                        update.next_look_at = Some(now);
                        match store
                            .record_look(analysis.id, &worker, analysis.version, later, update)
                            .await
                        {
                            Ok(after) => {
                                assert_eq!(
                                    later, now,
                                    "a write after its lease expired was accepted"
                                );
                                assert!(after.is_leased_by(&worker, later));
                                written += 1;
                            }
                            // Refused after expiry always; also in time when a worker whose
                            // clock runs ahead took the analysis over first.
                            Err(StoreError::LeaseLost { .. }) | Err(StoreError::Conflict(_)) => {
                                refused += 1;
                            }
                            Err(other) => panic!("unexpected {other}"),
                        }
                    }
                }
                store.close().await;
                (written, refused)
            }));
        }
        let (mut written, mut refused) = (0, 0);
        for task in tasks {
            let (w, r) = task.await.expect("racer");
            written += w;
            refused += r;
        }
        assert!(
            written > 0 && refused > 0,
            "both paths ran: {written} written, {refused} refused"
        );
        let versions: i64 = setup
            .list_analyses(None, 10, None)
            .await
            .unwrap()
            .items
            .iter()
            .map(|a| a.version - 1)
            .sum();
        assert_eq!(
            versions,
            i64::from(written),
            "every accepted write and no other"
        );
        setup.close().await;
    })
    .await;
}
