//! The [`Store`](super::model::Store) methods whose SQL both engines share, written once.
//!
//! The two engines keep the same tables and accept the same statements: both take
//! numbered parameters (`$1`; sqlx binds SQLite's `$N` by number too), `RETURNING`,
//! `ON CONFLICT`, `COALESCE` and `CAST`. What differs is small and named by each engine
//! as an inherent item of its store type, which [`sql_store!`] calls:
//!
//! | item | SQLite | PostgreSQL |
//! |---|---|---|
//! | `id_param(Uuid)` | hyphenated text | `uuid` |
//! | `list_param(&[String])` | JSON text | `text[]` |
//! | `write_turn()` | this process's turn to write | nothing to wait for |
//! | `write_transaction()` | `BEGIN IMMEDIATE` under the turn | `BEGIN` |
//! | `for_update` (the guard read's lock, a macro argument) | none: the transaction holds the write lock | `FOR UPDATE` |
//! | `claim(...)` | a subquery under the write lock | `FOR UPDATE SKIP LOCKED` |
//! | `prune(...)` | then `PRAGMA incremental_vacuum` | `FOR UPDATE SKIP LOCKED` |
//!
//! JSON documents are bound as [`sqlx::types::Json`], which is text in SQLite and `jsonb`
//! in PostgreSQL; rows are read through [`StoredRow`](super::rows::StoredRow).
//!
//! Why a macro and not a function generic over `sqlx::Database`: a generic store needs
//! an `Encode + Type` bound per bound type and an `Executor` bound per connection kind
//! on every function, which says more about sqlx than about the store. The macro
//! compiles the same text twice, once per concrete engine.

/// The analysis columns, in the order [`analysis_from_row`](super::rows::analysis_from_row)
/// reads them.
macro_rules! analysis_columns {
    () => {
        "id, profile_name, profile_text, flag, source, actuator, baseline_scope, \
         canary_scope, dry_run, start_at_ms, state, current_stage, traffic, latest_verdict, \
         reasons, runner_state, next_look_at_ms, version, lease_owner, lease_expires_at_ms, \
         created_at_ms, updated_at_ms, seq, requested_action, owner, adopt, submit_key"
    };
}
pub(crate) use analysis_columns;

/// The columns of an [`AnalysisSummary`](super::model::AnalysisSummary), read by
/// [`summary_from_row`](super::rows::summary_from_row): no runner snapshot.
macro_rules! summary_columns {
    () => {
        "id, profile_name, profile_text, flag, dry_run, start_at_ms, state, current_stage, \
         traffic, latest_verdict, reasons, next_look_at_ms, version, created_at_ms, \
         updated_at_ms, requested_action"
    };
}
pub(crate) use summary_columns;

/// The filters of [`Store::overview`](super::model::Store::overview) after `WHERE`:
/// `$1` the states as `,a,b,` (or null for all), `$2` a lower-case `LIKE` pattern for
/// the flag (or null), `$3` the earliest `updated_at_ms` (or null). Written with `LIKE`
/// and `||`, which both engines read alike.
macro_rules! overview_filter {
    () => {
        "(CAST($1 AS TEXT) IS NULL OR CAST($1 AS TEXT) LIKE '%,' || state || ',%') \
         AND (CAST($2 AS TEXT) IS NULL OR lower(flag) LIKE CAST($2 AS TEXT) ESCAPE '\\') \
         AND (CAST($3 AS BIGINT) IS NULL OR updated_at_ms >= CAST($3 AS BIGINT))"
    };
}
pub(crate) use overview_filter;

/// The actuation columns, in the order [`actuation_from_row`](super::rows::actuation_from_row)
/// reads them.
macro_rules! actuation_columns {
    () => {
        "analysis_id, idempotency_key, action, target, state, detail, at_ms, completed_at_ms"
    };
}
pub(crate) use actuation_columns;

/// The execution columns, in the order [`execution_from_row`](super::rows::execution_from_row)
/// reads them.
macro_rules! execution_columns {
    () => {
        "id, kind, key, profile_name, profile_text, source, request, state, result, error, \
         attempts, due_at_ms, lease_owner, lease_expires_at_ms, created_at_ms, \
         updated_at_ms, finished_at_ms"
    };
}
pub(crate) use execution_columns;

/// The analyses a claim may take, most overdue first, `$3` being now and `$4` the
/// limit (the text after `WHERE`): `pending`, `running` and `rollback_failed` ones due
/// or never looked at, started `awaiting_review` ones due, none under an unexpired lease.
macro_rules! due_analyses {
    () => {
        "(state IN ('pending', 'running', 'rollback_failed') \
              AND (next_look_at_ms IS NULL OR next_look_at_ms <= $3) \
           OR state = 'awaiting_review' AND next_look_at_ms <= $3) \
         AND (lease_expires_at_ms IS NULL OR lease_expires_at_ms <= $3) \
         ORDER BY next_look_at_ms NULLS FIRST, seq LIMIT $4"
    };
}
pub(crate) use due_analyses;

/// The lease and version of an analysis, read inside a write transaction.
pub(crate) struct Guard {
    pub(crate) state: super::model::AnalysisState,
    pub(crate) version: i64,
    pub(crate) lease_owner: Option<String>,
    pub(crate) lease_expires_at_ms: Option<i64>,
}

impl Guard {
    /// Whether `worker` holds the lease at `now_ms`.
    pub(crate) fn holds(&self, worker: &str, now_ms: i64) -> bool {
        self.lease_owner.as_deref() == Some(worker)
            && self
                .lease_expires_at_ms
                .is_some_and(|expires| now_ms < expires)
    }

    /// [`StoreError::LeaseLost`](super::model::StoreError::LeaseLost) unless `worker` holds
    /// the lease.
    pub(crate) fn check_holder(
        &self,
        id: uuid::Uuid,
        worker: &str,
        now_ms: i64,
    ) -> Result<(), super::model::StoreError> {
        if self.holds(worker, now_ms) {
            Ok(())
        } else {
            Err(super::model::StoreError::LeaseLost {
                analysis: id,
                worker: worker.to_owned(),
            })
        }
    }

    /// [`StoreError::Conflict`](super::model::StoreError::Conflict) unless the analysis is at
    /// `expected` version.
    pub(crate) fn check_version(
        &self,
        id: uuid::Uuid,
        expected: i64,
    ) -> Result<(), super::model::StoreError> {
        if self.version == expected {
            Ok(())
        } else {
            Err(super::model::StoreError::Conflict(format!(
                "analysis {id} is at version {}, not {expected}",
                self.version
            )))
        }
    }
}

/// [`OverviewQuery`](super::model::OverviewQuery) as the overview statement binds it.
pub(crate) struct OverviewFilter {
    /// `,a,b,` or `None` for every state.
    pub(crate) states: Option<String>,
    /// `%text%`, lower case, with `%`, `_` and `\\` escaped; `None` for every flag.
    pub(crate) flag_pattern: Option<String>,
    /// The earliest `updated_at_ms`, if any.
    pub(crate) updated_since_ms: Option<i64>,
    /// Problems changed at or after this sort above the running analyses.
    pub(crate) recent_after_ms: i64,
}

impl OverviewFilter {
    pub(crate) fn of(
        query: &super::model::OverviewQuery,
    ) -> Result<Self, super::model::StoreError> {
        let states = (!query.states.is_empty()).then(|| {
            let names: Vec<&str> = query.states.iter().map(|state| state.as_str()).collect();
            format!(",{},", names.join(","))
        });
        let flag_pattern = query
            .flag_contains
            .as_deref()
            .map(str::trim)
            .filter(|text| !text.is_empty())
            .map(|text| {
                let mut pattern = String::from("%");
                for character in text.to_ascii_lowercase().chars() {
                    if matches!(character, '%' | '_' | '\\') {
                        pattern.push('\\');
                    }
                    pattern.push(character);
                }
                pattern.push('%');
                pattern
            });
        Ok(Self {
            states,
            flag_pattern,
            updated_since_ms: query
                .updated_since
                .map(|since| super::shared::to_millis(since, "updated_since"))
                .transpose()?,
            recent_after_ms: super::shared::to_millis(query.recent_after, "recent_after")?,
        })
    }
}

/// Implements [`Store`](super::model::Store) for `$store` over `$connection` from the shared
/// statements, in a module `$module` of the calling engine's file (which can therefore
/// use the engine's private items listed in this module's documentation).
macro_rules! sql_store {
    ($module:ident, $store:ident, $connection:ty, for_update = $for_update:literal) => {
        mod $module {
            use std::collections::BTreeMap;
            use std::time::Duration;

            use async_trait::async_trait;
            use sqlx::types::Json;
            use uuid::Uuid;

            use super::$store;
            use $crate::domain::Verdict;
            use $crate::store::look_body;
            use $crate::store::model::{
                ActuationOutcome, ActuationRecord, ActuationState, Analysis, AnalysisState,
                AuditEntry, Execution, ExecutionOutcome, ExecutionState, LookRecord,
                LookUpdate, ManualAction, NewActuation, NewAnalysis, NewExecution, Overview,
                OverviewQuery, Page, Store, StoreError,
            };
            use $crate::store::rows::{
                StoredRow, actuation_from_row, analysis_from_row, audit_entry_from_row,
                counts_from_rows, execution_from_row, look_from_row, page_from_rows,
                summary_from_row,
            };
            use $crate::store::shared::{
                check_completion, check_look, check_same_intent, claim_limit, database_error,
                from_index, from_millis, is_owner_violation, is_submit_key_violation, lease_millis, not_found,
                optional_millis, owning_states_sql, page_limit, parse_cursor, parse_stored,
                requested_action, to_millis,
            };
            use $crate::store::sql::{
                Guard, OverviewFilter, actuation_columns, analysis_columns, execution_columns,
                overview_filter, summary_columns,
            };

            impl $store {
                async fn require_analysis(&self, id: Uuid) -> Result<(), StoreError> {
                    let found: Option<i64> =
                        sqlx::query_scalar("SELECT seq FROM analyses WHERE id = $1")
                            .bind($store::id_param(id))
                            .fetch_optional(&self.pool)
                            .await
                            .map_err(database_error)?;
                    found.map(|_| ()).ok_or_else(|| not_found(id))
                }

                /// The analysis's lease, version and state, locked for the rest of
                /// the transaction.
                async fn read_guard(
                    tx: &mut $connection,
                    id: Uuid,
                ) -> Result<Guard, StoreError> {
                    let row = sqlx::query(concat!(
                        "SELECT state, version, lease_owner, lease_expires_at_ms \
                         FROM analyses WHERE id = $1",
                        $for_update
                    ))
                    .bind($store::id_param(id))
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err(database_error)?
                    .ok_or_else(|| not_found(id))?;
                    Ok(Guard {
                        state: parse_stored(&row.text("state")?)?,
                        version: row.integer("version")?,
                        lease_owner: row.optional_text("lease_owner")?,
                        lease_expires_at_ms: row.optional_integer("lease_expires_at_ms")?,
                    })
                }

                /// Inserts `new`, or names the analysis that owns its flag.
                async fn insert_analysis(
                    &self,
                    new: &NewAnalysis,
                    now_ms: i64,
                    start_at_ms: Option<i64>,
                ) -> Result<Option<Analysis>, StoreError> {
                    let _turn = self.write_turn().await;
                    let inserted = sqlx::query(concat!(
                        "INSERT INTO analyses (id, profile_name, profile_text, flag, source, \
                         actuator, baseline_scope, canary_scope, dry_run, start_at_ms, state, \
                         reasons, runner_state, next_look_at_ms, version, created_at_ms, \
                         updated_at_ms, owner, adopt, submit_key) \
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, 'pending', $14, \
                         'null', $10, 1, $11, $11, $12, $13, $15) RETURNING ",
                        analysis_columns!()
                    ))
                    .bind($store::id_param(Uuid::new_v4()))
                    .bind(&new.profile_name)
                    .bind(&new.profile_text)
                    .bind(&new.flag)
                    .bind(&new.source)
                    .bind(&new.actuator)
                    .bind(&new.baseline_scope)
                    .bind(&new.canary_scope)
                    .bind(new.dry_run)
                    .bind(start_at_ms)
                    .bind(now_ms)
                    .bind(&new.owner)
                    .bind(new.adopt)
                    .bind($store::list_param(&[])?)
                    .bind(&new.submit_key)
                    .fetch_one(&self.pool)
                    .await;
                    match inserted {
                        Ok(row) => return analysis_from_row(&row).map(Some),
                        Err(error) if is_submit_key_violation(&error) => {
                            return Err(StoreError::SubmitKeyTaken(
                                new.submit_key.clone().unwrap_or_default(),
                            ));
                        }
                        Err(error) if is_owner_violation(&error) => {}
                        Err(error) => return Err(database_error(error)),
                    }
                    let owner = sqlx::query(concat!(
                        "SELECT id, state FROM analyses WHERE owner = $1 AND flag = $2 \
                         AND state IN ",
                        owning_states_sql!()
                    ))
                    .bind(&new.owner)
                    .bind(&new.flag)
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(database_error)?;
                    match owner {
                        Some(row) => Err(StoreError::FlagOwned {
                            flag: new.flag.clone(),
                            actuator: new.actuator.clone(),
                            owner: row.uuid("id")?,
                            state: parse_stored(&row.text("state")?)?,
                        }),
                        // The owner finished between the two statements: the flag is free.
                        None => Ok(None),
                    }
                }

                /// The actuation under `key`, inside a transaction.
                async fn actuation_by_key(
                    tx: &mut $connection,
                    key: &str,
                ) -> Result<ActuationRecord, StoreError> {
                    let row = sqlx::query(concat!(
                        "SELECT ",
                        actuation_columns!(),
                        " FROM actuations WHERE idempotency_key = $1"
                    ))
                    .bind(key)
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err(database_error)?
                    .ok_or_else(|| StoreError::NotFound(format!("actuation {key:?}")))?;
                    actuation_from_row(&row)
                }

                /// Records `look` of analysis `id` inside a transaction.
                async fn insert_look(
                    tx: &mut $connection,
                    id: Uuid,
                    look: &LookRecord,
                    at_ms: i64,
                    body: Option<&[u8]>,
                ) -> Result<(), StoreError> {
                    sqlx::query(
                        "INSERT INTO looks (analysis_id, look, at_ms, stage_index, verdict, \
                         decision, body, body_zlib) VALUES ($1, $2, $3, $4, $5, $6, 'null', $7)",
                    )
                    .bind($store::id_param(id))
                    .bind(i64::try_from(look.look).unwrap_or(i64::MAX))
                    .bind(at_ms)
                    .bind(i64::try_from(look.stage_index).unwrap_or(i64::MAX))
                    .bind(look.verdict.as_str())
                    .bind(&look.decision)
                    .bind(body)
                    .execute(&mut *tx)
                    .await
                    .map_err(|error| match database_error(error) {
                        StoreError::Conflict(_) => StoreError::Conflict(format!(
                            "look {} of analysis {id} is already recorded",
                            look.look
                        )),
                        other => other,
                    })?;
                    Ok(())
                }
            }

            #[async_trait]
            impl Store for $store {
                async fn create_analysis(
                    &self,
                    new: NewAnalysis,
                    now: f64,
                ) -> Result<Analysis, StoreError> {
                    let now_ms = to_millis(now, "now")?;
                    let start_at_ms = optional_millis(new.start_at, "start_at")?;
                    // The unique index decides; when it refuses, the owner is read to name
                    // it. An owner that finished between the two statements frees the
                    // flag: insert again.
                    for _ in 0..3 {
                        if let Some(analysis) =
                            self.insert_analysis(&new, now_ms, start_at_ms).await?
                        {
                            return Ok(analysis);
                        }
                    }
                    Err(StoreError::Conflict(format!(
                        "flag {:?} changed owners while this submission was stored; submit again",
                        new.flag
                    )))
                }

                async fn get_analysis(&self, id: Uuid) -> Result<Option<Analysis>, StoreError> {
                    sqlx::query(concat!(
                        "SELECT ",
                        analysis_columns!(),
                        " FROM analyses WHERE id = $1"
                    ))
                    .bind($store::id_param(id))
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(database_error)?
                    .map(|row| analysis_from_row(&row))
                    .transpose()
                }

                async fn analysis_by_submit_key(
                    &self,
                    key: &str,
                ) -> Result<Option<Analysis>, StoreError> {
                    sqlx::query(concat!(
                        "SELECT ",
                        analysis_columns!(),
                        " FROM analyses WHERE submit_key = $1"
                    ))
                    .bind(key)
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(database_error)?
                    .map(|row| analysis_from_row(&row))
                    .transpose()
                }

                async fn list_analyses(
                    &self,
                    state: Option<AnalysisState>,
                    limit: u32,
                    cursor: Option<&str>,
                ) -> Result<Page<Analysis>, StoreError> {
                    let after = parse_cursor(cursor)?;
                    let limit = page_limit(limit);
                    let rows = sqlx::query(concat!(
                        "SELECT ",
                        analysis_columns!(),
                        " FROM analyses WHERE (CAST($1 AS TEXT) IS NULL OR state = $1) \
                         AND seq > $2 ORDER BY seq LIMIT $3"
                    ))
                    .bind(state.map(AnalysisState::as_str))
                    .bind(after)
                    .bind(limit + 1)
                    .fetch_all(&self.pool)
                    .await
                    .map_err(database_error)?;
                    page_from_rows(&rows, limit)
                }

                async fn claim_due(
                    &self,
                    worker: &str,
                    now: f64,
                    lease: Duration,
                    limit: u32,
                ) -> Result<Vec<Analysis>, StoreError> {
                    let now_ms = to_millis(now, "now")?;
                    let expires_ms = now_ms.saturating_add(lease_millis(lease)?);
                    let limit = claim_limit(limit);
                    if limit == 0 {
                        return Ok(Vec::new());
                    }
                    self.claim(worker, now_ms, expires_ms, limit).await
                }

                async fn renew_lease(
                    &self,
                    id: Uuid,
                    worker: &str,
                    now: f64,
                    lease: Duration,
                ) -> Result<f64, StoreError> {
                    let now_ms = to_millis(now, "now")?;
                    let expires_ms = now_ms.saturating_add(lease_millis(lease)?);
                    let renewed = {
                        let _turn = self.write_turn().await;
                        sqlx::query(
                            "UPDATE analyses SET lease_expires_at_ms = $1 \
                             WHERE id = $2 AND lease_owner = $3 AND lease_expires_at_ms > $4",
                        )
                        .bind(expires_ms)
                        .bind($store::id_param(id))
                        .bind(worker)
                        .bind(now_ms)
                        .execute(&self.pool)
                        .await
                        .map_err(database_error)?
                        .rows_affected()
                    };
                    if renewed == 1 {
                        return Ok(from_millis(expires_ms));
                    }
                    self.require_analysis(id).await?;
                    Err(StoreError::LeaseLost {
                        analysis: id,
                        worker: worker.to_owned(),
                    })
                }

                async fn release(&self, id: Uuid, worker: &str) -> Result<bool, StoreError> {
                    let released = {
                        let _turn = self.write_turn().await;
                        sqlx::query(
                            "UPDATE analyses SET lease_owner = NULL, lease_expires_at_ms = NULL \
                             WHERE id = $1 AND lease_owner = $2",
                        )
                        .bind($store::id_param(id))
                        .bind(worker)
                        .execute(&self.pool)
                        .await
                        .map_err(database_error)?
                        .rows_affected()
                    };
                    if released == 0 {
                        self.require_analysis(id).await?;
                    }
                    Ok(released == 1)
                }

                async fn record_look(
                    &self,
                    id: Uuid,
                    worker: &str,
                    expected_version: i64,
                    now: f64,
                    update: LookUpdate,
                ) -> Result<Analysis, StoreError> {
                    check_look(id, &update)?;
                    let now_ms = to_millis(now, "now")?;
                    let next_look_at_ms = optional_millis(update.next_look_at, "next_look_at")?;
                    let look_at_ms = update
                        .look
                        .as_ref()
                        .map(|look| to_millis(look.at, "look.at"))
                        .transpose()?;
                    // Deflated before the transaction, so the write lock is not held for it.
                    let stored_body = update
                        .look
                        .as_ref()
                        .map(|look| look_body::encode_look(&look.body))
                        .transpose()?;
                    let reasons = $store::list_param(&update.reasons)?;
                    let runner_state = Json(update.runner_state.to_stored()?);

                    let mut tx = self.write_transaction().await?;
                    let guard = Self::read_guard(&mut tx, id).await?;
                    guard.check_holder(id, worker, now_ms)?;
                    guard.check_version(id, expected_version)?;
                    if guard.state.is_done() {
                        return Err(StoreError::Conflict(format!(
                            "analysis {id} is {} (final)",
                            guard.state
                        )));
                    }
                    if let (Some(look), Some(at_ms)) = (&update.look, look_at_ms) {
                        Self::insert_look(&mut tx, id, look, at_ms, stored_body.as_deref())
                            .await?;
                    }
                    let row = sqlx::query(concat!(
                        "UPDATE analyses SET state = $1, current_stage = $2, traffic = $3, \
                         latest_verdict = $4, reasons = $5, runner_state = $6, \
                         next_look_at_ms = $7, requested_action = NULL, version = version + 1, \
                         updated_at_ms = $8 WHERE id = $9 RETURNING ",
                        analysis_columns!()
                    ))
                    .bind(update.state.as_str())
                    .bind(from_index(update.current_stage))
                    .bind(update.traffic)
                    .bind(update.latest_verdict.map(Verdict::as_str))
                    .bind(reasons)
                    .bind(runner_state)
                    .bind(next_look_at_ms)
                    .bind(now_ms)
                    .bind($store::id_param(id))
                    .fetch_one(&mut *tx)
                    .await
                    .map_err(database_error)?;
                    let analysis = analysis_from_row(&row)?;
                    tx.commit().await.map_err(database_error)?;
                    Ok(analysis)
                }

                async fn intend_actuation(
                    &self,
                    worker: &str,
                    now: f64,
                    intent: NewActuation,
                ) -> Result<ActuationRecord, StoreError> {
                    let now_ms = to_millis(now, "now")?;
                    let at_ms = to_millis(intent.at, "at")?;
                    let id = intent.analysis_id;
                    let mut tx = self.write_transaction().await?;
                    Self::read_guard(&mut tx, id)
                        .await?
                        .check_holder(id, worker, now_ms)?;
                    let inserted = sqlx::query(concat!(
                        "INSERT INTO actuations (idempotency_key, analysis_id, action, target, \
                         state, at_ms) VALUES ($1, $2, $3, $4, 'intended', $5) \
                         ON CONFLICT (idempotency_key) DO NOTHING RETURNING ",
                        actuation_columns!()
                    ))
                    .bind(&intent.idempotency_key)
                    .bind($store::id_param(id))
                    .bind(&intent.action)
                    .bind(intent.target)
                    .bind(at_ms)
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err(database_error)?;
                    let record = match inserted {
                        Some(row) => actuation_from_row(&row)?,
                        None => Self::actuation_by_key(&mut tx, &intent.idempotency_key).await?,
                    };
                    tx.commit().await.map_err(database_error)?;
                    check_same_intent(&intent, record)
                }

                async fn complete_actuation(
                    &self,
                    idempotency_key: &str,
                    outcome: ActuationOutcome,
                    detail: &str,
                    now: f64,
                ) -> Result<ActuationRecord, StoreError> {
                    let now_ms = to_millis(now, "now")?;
                    let state = ActuationState::from(outcome);
                    let mut tx = self.write_transaction().await?;
                    let updated = sqlx::query(concat!(
                        "UPDATE actuations SET state = $1, detail = $2, completed_at_ms = $3 \
                         WHERE idempotency_key = $4 AND state = 'intended' RETURNING ",
                        actuation_columns!()
                    ))
                    .bind(state.as_str())
                    .bind(detail)
                    .bind(now_ms)
                    .bind(idempotency_key)
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err(database_error)?;
                    let record = match updated {
                        Some(row) => actuation_from_row(&row)?,
                        None => Self::actuation_by_key(&mut tx, idempotency_key).await?,
                    };
                    tx.commit().await.map_err(database_error)?;
                    check_completion(record, state)
                }

                async fn list_looks(&self, id: Uuid) -> Result<Vec<LookRecord>, StoreError> {
                    self.require_analysis(id).await?;
                    let rows = sqlx::query(
                        "SELECT analysis_id, look, at_ms, stage_index, verdict, decision, body, \
                         body_zlib FROM looks WHERE analysis_id = $1 ORDER BY look",
                    )
                    .bind($store::id_param(id))
                    .fetch_all(&self.pool)
                    .await
                    .map_err(database_error)?;
                    rows.iter().map(look_from_row).collect()
                }

                async fn list_actuations(
                    &self,
                    id: Uuid,
                ) -> Result<Vec<ActuationRecord>, StoreError> {
                    self.require_analysis(id).await?;
                    let rows = sqlx::query(concat!(
                        "SELECT ",
                        actuation_columns!(),
                        " FROM actuations WHERE analysis_id = $1 ORDER BY seq"
                    ))
                    .bind($store::id_param(id))
                    .fetch_all(&self.pool)
                    .await
                    .map_err(database_error)?;
                    rows.iter().map(actuation_from_row).collect()
                }

                async fn apply_manual_action(
                    &self,
                    id: Uuid,
                    action: ManualAction,
                    now: f64,
                ) -> Result<Analysis, StoreError> {
                    let now_ms = to_millis(now, "now")?;
                    let requested = requested_action(&action)?;
                    let mut tx = self.write_transaction().await?;
                    let guard = Self::read_guard(&mut tx, id).await?;
                    guard.check_version(id, action.expected_version)?;
                    let row = sqlx::query(concat!(
                        "UPDATE analyses SET state = $1, version = version + 1, \
                         updated_at_ms = $2, requested_action = COALESCE($4, requested_action), \
                         next_look_at_ms = CASE WHEN $4 IS NULL THEN next_look_at_ms ELSE $2 END \
                         WHERE id = $3 RETURNING ",
                        analysis_columns!()
                    ))
                    .bind(action.new_state.as_str())
                    .bind(now_ms)
                    .bind($store::id_param(id))
                    .bind(requested)
                    .fetch_one(&mut *tx)
                    .await
                    .map_err(database_error)?;
                    let analysis = analysis_from_row(&row)?;
                    sqlx::query(
                        "INSERT INTO audit_log (analysis_id, actor, action, reason, from_state, \
                         to_state, at_ms) VALUES ($1, $2, $3, $4, $5, $6, $7)",
                    )
                    .bind($store::id_param(id))
                    .bind(&action.actor)
                    .bind(action.action.as_str())
                    .bind(&action.reason)
                    .bind(guard.state.as_str())
                    .bind(action.new_state.as_str())
                    .bind(now_ms)
                    .execute(&mut *tx)
                    .await
                    .map_err(database_error)?;
                    tx.commit().await.map_err(database_error)?;
                    Ok(analysis)
                }

                async fn audit_log(&self, id: Uuid) -> Result<Vec<AuditEntry>, StoreError> {
                    self.require_analysis(id).await?;
                    let rows = sqlx::query(
                        "SELECT analysis_id, actor, action, reason, from_state, to_state, at_ms \
                         FROM audit_log WHERE analysis_id = $1 ORDER BY seq",
                    )
                    .bind($store::id_param(id))
                    .fetch_all(&self.pool)
                    .await
                    .map_err(database_error)?;
                    rows.iter().map(audit_entry_from_row).collect()
                }

                async fn counts_by_state(
                    &self,
                ) -> Result<BTreeMap<AnalysisState, u64>, StoreError> {
                    let rows =
                        sqlx::query("SELECT state, COUNT(*) AS n FROM analyses GROUP BY state")
                            .fetch_all(&self.pool)
                            .await
                            .map_err(database_error)?;
                    counts_from_rows(&rows)
                }

                async fn overview(&self, query: &OverviewQuery) -> Result<Overview, StoreError> {
                    let filter = OverviewFilter::of(query)?;
                    let rows = sqlx::query(concat!(
                        "SELECT ",
                        summary_columns!(),
                        " FROM analyses WHERE ",
                        overview_filter!(),
                        " ORDER BY CASE WHEN state IN ('awaiting_review', 'rollback_failed') THEN 0 \
                         WHEN state IN ('rolled_back', 'failed') AND updated_at_ms >= $4 THEN 1 \
                         WHEN state IN ('pending', 'running', 'paused') THEN 2 ELSE 3 END, \
                         updated_at_ms DESC, seq DESC LIMIT $5"
                    ))
                    .bind(filter.states.as_deref())
                    .bind(filter.flag_pattern.as_deref())
                    .bind(filter.updated_since_ms)
                    .bind(filter.recent_after_ms)
                    .bind(page_limit(query.limit))
                    .fetch_all(&self.pool)
                    .await
                    .map_err(database_error)?;
                    let matching: i64 = sqlx::query_scalar(concat!(
                        "SELECT COUNT(*) FROM analyses WHERE ",
                        overview_filter!()
                    ))
                    .bind(filter.states.as_deref())
                    .bind(filter.flag_pattern.as_deref())
                    .bind(filter.updated_since_ms)
                    .fetch_one(&self.pool)
                    .await
                    .map_err(database_error)?;
                    Ok(Overview {
                        rows: rows
                            .iter()
                            .map(summary_from_row)
                            .collect::<Result<_, _>>()?,
                        matching: u64::try_from(matching).unwrap_or_default(),
                    })
                }

                async fn prune_finished(
                    &self,
                    finished_before: f64,
                    limit: u32,
                ) -> Result<u64, StoreError> {
                    let cutoff_ms = to_millis(finished_before, "finished_before")?;
                    let limit = claim_limit(limit);
                    let pruned = self.prune(cutoff_ms, limit).await?;
                    {
                        let _turn = self.write_turn().await;
                        sqlx::query(
                            "DELETE FROM executions WHERE seq IN (SELECT seq FROM executions \
                             WHERE finished_at_ms < $1 ORDER BY finished_at_ms LIMIT $2)",
                        )
                        .bind(cutoff_ms)
                        .bind(limit)
                        .execute(&self.pool)
                        .await
                        .map_err(database_error)?;
                    }
                    Ok(pruned)
                }

                async fn create_execution(
                    &self,
                    new: NewExecution,
                    now: f64,
                ) -> Result<Execution, StoreError> {
                    let now_ms = to_millis(now, "now")?;
                    let due_ms = to_millis(new.due_at, "due_at")?;
                    let _turn = self.write_turn().await;
                    let row = sqlx::query(concat!(
                        "INSERT INTO executions (id, kind, profile_name, profile_text, source, \
                         request, state, due_at_ms, created_at_ms, updated_at_ms, key) \
                         VALUES ($1, $2, $3, $4, $5, $6, 'pending', $7, $8, $8, $9) RETURNING ",
                        execution_columns!()
                    ))
                    .bind($store::id_param(Uuid::new_v4()))
                    .bind(&new.kind)
                    .bind(&new.profile_name)
                    .bind(&new.profile_text)
                    .bind(&new.source)
                    .bind(Json(&new.request))
                    .bind(due_ms)
                    .bind(now_ms)
                    .bind(&new.key)
                    .fetch_one(&self.pool)
                    .await
                    .map_err(database_error)?;
                    execution_from_row(&row)
                }

                async fn get_execution(&self, id: Uuid) -> Result<Option<Execution>, StoreError> {
                    sqlx::query(concat!(
                        "SELECT ",
                        execution_columns!(),
                        " FROM executions WHERE id = $1"
                    ))
                    .bind($store::id_param(id))
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(database_error)?
                    .map(|row| execution_from_row(&row))
                    .transpose()
                }

                async fn active_with_latest_look(
                    &self,
                    limit: u32,
                ) -> Result<Vec<(Analysis, Option<LookRecord>)>, StoreError> {
                    let limit = page_limit(limit);
                    let rows = sqlx::query(concat!(
                        "SELECT ",
                        analysis_columns!(),
                        " FROM analyses WHERE state IN ",
                        owning_states_sql!(),
                        " ORDER BY seq LIMIT $1"
                    ))
                    .bind(limit)
                    .fetch_all(&self.pool)
                    .await
                    .map_err(database_error)?;
                    let analyses = rows
                        .iter()
                        .map(analysis_from_row)
                        .collect::<Result<Vec<_>, _>>()?;
                    let looks = sqlx::query(concat!(
                        "SELECT analysis_id, look, at_ms, stage_index, verdict, decision, body, \
                         body_zlib FROM looks l WHERE l.analysis_id IN (SELECT id FROM analyses \
                         WHERE state IN ",
                        owning_states_sql!(),
                        " ORDER BY seq LIMIT $1) AND l.look = (SELECT MAX(m.look) FROM looks m \
                         WHERE m.analysis_id = l.analysis_id)"
                    ))
                    .bind(limit)
                    .fetch_all(&self.pool)
                    .await
                    .map_err(database_error)?;
                    let mut latest: BTreeMap<Uuid, LookRecord> = looks
                        .iter()
                        .map(|row| look_from_row(row).map(|look| (look.analysis_id, look)))
                        .collect::<Result<_, _>>()?;
                    Ok(analyses
                        .into_iter()
                        .map(|analysis| {
                            let look = latest.remove(&analysis.id);
                            (analysis, look)
                        })
                        .collect())
                }

                async fn latest_execution(
                    &self,
                    key: &str,
                ) -> Result<Option<Execution>, StoreError> {
                    sqlx::query(concat!(
                        "SELECT ",
                        execution_columns!(),
                        " FROM executions WHERE key = $1 ORDER BY seq DESC LIMIT 1"
                    ))
                    .bind(key)
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(database_error)?
                    .map(|row| execution_from_row(&row))
                    .transpose()
                }

                async fn claim_execution(
                    &self,
                    worker: &str,
                    now: f64,
                    lease: Duration,
                ) -> Result<Option<Execution>, StoreError> {
                    let now_ms = to_millis(now, "now")?;
                    let expires_ms = now_ms.saturating_add(lease_millis(lease)?);
                    // Pick a candidate, then take it with a compare-and-set on the same
                    // conditions: a concurrent claim that took it first leaves nothing to
                    // update (PostgreSQL re-checks the WHERE clause after the row lock), and
                    // the next candidate is tried.
                    for _ in 0..8 {
                        let candidate: Option<i64> = sqlx::query_scalar(
                            "SELECT seq FROM executions WHERE state IN ('pending', 'running') \
                             AND due_at_ms <= $1 \
                             AND (lease_expires_at_ms IS NULL OR lease_expires_at_ms <= $1) \
                             ORDER BY due_at_ms, seq LIMIT 1",
                        )
                        .bind(now_ms)
                        .fetch_optional(&self.pool)
                        .await
                        .map_err(database_error)?;
                        let Some(seq) = candidate else {
                            return Ok(None);
                        };
                        let _turn = self.write_turn().await;
                        let claimed = sqlx::query(concat!(
                            "UPDATE executions SET state = 'running', lease_owner = $1, \
                             lease_expires_at_ms = $2, attempts = attempts + 1, \
                             updated_at_ms = $3 \
                             WHERE seq = $4 AND state IN ('pending', 'running') \
                             AND (lease_expires_at_ms IS NULL OR lease_expires_at_ms <= $3) \
                             RETURNING ",
                            execution_columns!()
                        ))
                        .bind(worker)
                        .bind(expires_ms)
                        .bind(now_ms)
                        .bind(seq)
                        .fetch_optional(&self.pool)
                        .await
                        .map_err(database_error)?;
                        if let Some(row) = claimed {
                            return execution_from_row(&row).map(Some);
                        }
                    }
                    // Lost eight races in a row: leave the rest to the next poll.
                    Ok(None)
                }

                async fn finish_execution(
                    &self,
                    id: Uuid,
                    worker: &str,
                    now: f64,
                    outcome: ExecutionOutcome,
                ) -> Result<Execution, StoreError> {
                    let now_ms = to_millis(now, "now")?;
                    let (state, result, error) = match outcome {
                        ExecutionOutcome::Succeeded(result) => {
                            (ExecutionState::Succeeded, result, None)
                        }
                        ExecutionOutcome::Failed(error) => {
                            (ExecutionState::Failed, serde_json::Value::Null, Some(error))
                        }
                    };
                    let finished = {
                        let _turn = self.write_turn().await;
                        sqlx::query(concat!(
                            "UPDATE executions SET state = $1, result = $2, error = $3, \
                             lease_owner = NULL, lease_expires_at_ms = NULL, \
                             updated_at_ms = $4, finished_at_ms = $4 \
                             WHERE id = $5 AND state = 'running' AND lease_owner = $6 \
                             AND lease_expires_at_ms > $4 RETURNING ",
                            execution_columns!()
                        ))
                        .bind(state.as_str())
                        .bind(Json(&result))
                        .bind(error)
                        .bind(now_ms)
                        .bind($store::id_param(id))
                        .bind(worker)
                        .fetch_optional(&self.pool)
                        .await
                        .map_err(database_error)?
                    };
                    match finished {
                        Some(row) => execution_from_row(&row),
                        None => match self.get_execution(id).await? {
                            None => Err(StoreError::NotFound(format!("execution {id}"))),
                            Some(_) => Err(StoreError::LeaseLost {
                                analysis: id,
                                worker: worker.to_owned(),
                            }),
                        },
                    }
                }

                async fn healthcheck(&self) -> Result<(), StoreError> {
                    sqlx::query("SELECT 1")
                        .execute(&self.pool)
                        .await
                        .map_err(database_error)?;
                    Ok(())
                }

                async fn close(&self) {
                    self.pool.close().await;
                }
            }
        }
    };
}
pub(crate) use sql_store;
