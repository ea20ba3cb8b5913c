//! The embedded store: one SQLite file (or an in-memory database for tests), no server.
//!
//! A file is opened in WAL mode with `synchronous = FULL` (a commit survives a crash of
//! the process and of the machine), `foreign_keys = ON` and a busy timeout. Every write
//! transaction starts with `BEGIN IMMEDIATE`, which takes SQLite's single write lock up
//! front: a transaction that reads and then writes cannot fail on a stale snapshot, and
//! concurrent writers wait (up to the busy timeout) instead of failing.
//!
//! **One `canary serve` instance per file.** Claims are atomic because SQLite has one
//! writer at a time, which is also why this store cannot share work between machines;
//! use PostgreSQL for that. Ids are kept as hyphenated text, JSON as text, times as
//! integer milliseconds (see `migrations/sqlite/`).

use std::collections::BTreeMap;
use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::sqlite::{
    SqliteAutoVacuum, SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteRow,
    SqliteSynchronous,
};
use sqlx::{AssertSqlSafe, Row, SqlitePool};
use uuid::Uuid;

use super::look_body;
use super::model::{
    ActuationOutcome, ActuationRecord, ActuationState, Analysis, AnalysisState, AuditEntry,
    LookRecord, LookUpdate, ManualAction, NewActuation, NewAnalysis, Page, Store, StoreError,
};
use super::rows::{
    StoredRow, actuation_from_row, analysis_from_row, audit_entry_from_row, counts_from_rows,
    look_from_row, page_from_rows, primitive_columns, sorted_claims,
};
use super::shared::{
    check_look, claim_limit, database_error, from_index, from_millis, is_owner_violation,
    lease_millis, migrate_error, not_found, optional_millis, owning_states_sql, page_limit,
    parse_cursor, parse_stored, prunable_condition, to_millis,
};

/// How long a statement waits for another connection's write lock before failing with
/// [`StoreError::Unavailable`].
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Connections for a file: WAL lets readers run beside the one writer.
const FILE_POOL_SIZE: u32 = 4;

/// The analysis columns, in the order [`analysis_from_row`] reads them.
macro_rules! analysis_columns {
    () => {
        "id, profile_name, profile_text, flag, source, actuator, baseline_scope, \
         canary_scope, dry_run, start_at_ms, state, current_stage, traffic, latest_verdict, \
         reasons, runner_state, next_look_at_ms, version, lease_owner, lease_expires_at_ms, \
         created_at_ms, updated_at_ms, seq, requested_action, owner, adopt"
    };
}

macro_rules! actuation_columns {
    () => {
        "analysis_id, idempotency_key, action, target, state, detail, at_ms, completed_at_ms"
    };
}

/// The SQLite store.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
    /// This process's turn to write. SQLite has one writer at a time and makes the
    /// others wait in its busy handler, which *sleeps* (1, 2, 5 … 100 ms) instead of
    /// being woken when the lock frees; under load that, not the CPU, capped a `canary
    /// serve` instance (the capacity benchmark). Writers of one process queue here
    /// instead and are woken in turn; the busy handler is left for other processes.
    writer: Arc<tokio::sync::Mutex<()>>,
}

/// A write transaction holding the process's turn to write until it ends.
struct WriteTransaction {
    tx: sqlx::Transaction<'static, sqlx::Sqlite>,
    _turn: tokio::sync::OwnedMutexGuard<()>,
}

impl WriteTransaction {
    async fn commit(self) -> Result<(), sqlx::Error> {
        self.tx.commit().await
    }
}

impl std::ops::Deref for WriteTransaction {
    type Target = sqlx::SqliteConnection;

    fn deref(&self) -> &Self::Target {
        &self.tx
    }
}

impl std::ops::DerefMut for WriteTransaction {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.tx
    }
}

impl SqliteStore {
    /// Opens (creating if missing) the database at `url_or_path` and migrates it:
    /// `sqlite:PATH`, `sqlite://PATH`, a plain path, or `sqlite::memory:` for a private
    /// in-memory database that lives as long as the store.
    pub async fn connect(url_or_path: &str) -> Result<Self, StoreError> {
        let in_memory = url_or_path == "sqlite::memory:" || url_or_path == ":memory:";
        let options = if in_memory {
            SqliteConnectOptions::from_str("sqlite::memory:").map_err(database_error)?
        } else if url_or_path.starts_with("sqlite:") {
            SqliteConnectOptions::from_str(url_or_path)
                .map_err(|e| StoreError::Invalid(format!("SQLite URL {url_or_path:?}: {e}")))?
        } else {
            SqliteConnectOptions::new().filename(Path::new(url_or_path))
        };
        let options = options
            .create_if_missing(true)
            .foreign_keys(true)
            .busy_timeout(BUSY_TIMEOUT);
        let pool = if in_memory {
            // Each connection to `:memory:` is its own database, so the pool keeps exactly
            // one, for ever: closing it would throw the data away.
            SqlitePoolOptions::new()
                .max_connections(1)
                .min_connections(1)
                .idle_timeout(None)
                .max_lifetime(None)
                .connect_with(options)
                .await
        } else {
            SqlitePoolOptions::new()
                .max_connections(FILE_POOL_SIZE)
                .connect_with(
                    options
                        // A new file hands pages freed by pruning back to the file
                        // system (`prune_finished`); an older one needs `VACUUM` once.
                        .auto_vacuum(SqliteAutoVacuum::Incremental)
                        .journal_mode(SqliteJournalMode::Wal)
                        .synchronous(SqliteSynchronous::Full),
                )
                .await
        }
        .map_err(database_error)?;
        sqlx::migrate!("src/store/migrations/sqlite")
            .run(&pool)
            .await
            .map_err(migrate_error)?;
        Ok(Self {
            pool,
            writer: Arc::new(tokio::sync::Mutex::new(())),
        })
    }

    /// Waits for this process's turn to write (see [`SqliteStore::writer`]).
    async fn write_turn(&self) -> tokio::sync::OwnedMutexGuard<()> {
        Arc::clone(&self.writer).lock_owned().await
    }

    async fn write_transaction(&self) -> Result<WriteTransaction, StoreError> {
        let turn = self.write_turn().await;
        let tx = self
            .pool
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(database_error)?;
        Ok(WriteTransaction { tx, _turn: turn })
    }

    async fn require_analysis(&self, id: Uuid) -> Result<(), StoreError> {
        let found: Option<i64> = sqlx::query_scalar("SELECT seq FROM analyses WHERE id = ?1")
            .bind(id.to_string())
            .fetch_optional(&self.pool)
            .await
            .map_err(database_error)?;
        found.map(|_| ()).ok_or_else(|| not_found(id))
    }
}

fn uuid_from_text(text: &str) -> Result<Uuid, StoreError> {
    Uuid::parse_str(text).map_err(|e| StoreError::Corrupt(format!("id {text:?}: {e}")))
}

fn json_from_text<T: serde::de::DeserializeOwned>(text: &str, what: &str) -> Result<T, StoreError> {
    serde_json::from_str(text).map_err(|e| StoreError::Corrupt(format!("{what}: {e}")))
}

fn json_text<T: serde::Serialize>(value: &T) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(|e| StoreError::Invalid(format!("JSON: {e}")))
}

impl StoredRow for SqliteRow {
    primitive_columns!();

    fn uuid(&self, column: &str) -> Result<Uuid, StoreError> {
        uuid_from_text(&self.text(column)?)
    }

    fn string_list(&self, column: &str) -> Result<Vec<String>, StoreError> {
        json_from_text(&self.text(column)?, column)
    }

    fn json(&self, column: &str) -> Result<serde_json::Value, StoreError> {
        json_from_text(&self.text(column)?, column)
    }
}

/// The lease and version of an analysis, read inside a write transaction.
struct Guard {
    state: AnalysisState,
    version: i64,
    lease_owner: Option<String>,
    lease_expires_at_ms: Option<i64>,
}

impl Guard {
    fn holds(&self, worker: &str, now_ms: i64) -> bool {
        self.lease_owner.as_deref() == Some(worker)
            && self
                .lease_expires_at_ms
                .is_some_and(|expires| now_ms < expires)
    }
}

async fn read_guard(tx: &mut sqlx::SqliteConnection, id: Uuid) -> Result<Guard, StoreError> {
    let row = sqlx::query(
        "SELECT state, version, lease_owner, lease_expires_at_ms FROM analyses WHERE id = ?1",
    )
    .bind(id.to_string())
    .fetch_optional(&mut *tx)
    .await
    .map_err(database_error)?
    .ok_or_else(|| not_found(id))?;
    let state = row.text("state")?;
    Ok(Guard {
        state: parse_stored(&state)?,
        version: row.integer("version")?,
        lease_owner: row.optional_text("lease_owner")?,
        lease_expires_at_ms: row.optional_integer("lease_expires_at_ms")?,
    })
}

#[async_trait]
impl Store for SqliteStore {
    async fn create_analysis(&self, new: NewAnalysis, now: f64) -> Result<Analysis, StoreError> {
        let now_ms = to_millis(now, "now")?;
        let start_at_ms = optional_millis(new.start_at, "start_at")?;
        let turn = self.write_turn().await;
        let inserted = sqlx::query(concat!(
            "INSERT INTO analyses (id, profile_name, profile_text, flag, source, actuator, \
             baseline_scope, canary_scope, dry_run, start_at_ms, state, reasons, runner_state, \
             next_look_at_ms, version, created_at_ms, updated_at_ms, owner, adopt) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, 'pending', '[]', 'null', ?10, 1, \
             ?11, ?11, ?12, ?13) RETURNING ",
            analysis_columns!()
        ))
        .bind(Uuid::new_v4().to_string())
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
        .fetch_one(&self.pool)
        .await;
        let row = match inserted {
            Ok(row) => row,
            // Writers take turns, so the owner read under the same turn is the one the
            // index found.
            Err(error) if is_owner_violation(&error) => {
                let owner = sqlx::query(concat!(
                    "SELECT id, state FROM analyses WHERE owner = ?1 AND flag = ?2 \
                     AND state IN ",
                    owning_states_sql!()
                ))
                .bind(&new.owner)
                .bind(&new.flag)
                .fetch_optional(&self.pool)
                .await
                .map_err(database_error)?
                .ok_or_else(|| {
                    StoreError::Conflict(format!(
                        "flag {:?} changed owners while this submission was stored; submit again",
                        new.flag
                    ))
                })?;
                return Err(StoreError::FlagOwned {
                    flag: new.flag,
                    actuator: new.actuator,
                    owner: owner.uuid("id")?,
                    state: parse_stored(&owner.text("state")?)?,
                });
            }
            Err(error) => return Err(database_error(error)),
        };
        drop(turn);
        analysis_from_row(&row)
    }

    async fn get_analysis(&self, id: Uuid) -> Result<Option<Analysis>, StoreError> {
        sqlx::query(concat!(
            "SELECT ",
            analysis_columns!(),
            " FROM analyses WHERE id = ?1"
        ))
        .bind(id.to_string())
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
            " FROM analyses WHERE (?1 IS NULL OR state = ?1) AND seq > ?2 \
             ORDER BY seq LIMIT ?3"
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
        // One statement picks and leases in the same write transaction; the immediate
        // transaction makes it wait for the write lock rather than read a stale snapshot.
        let mut tx = self.write_transaction().await?;
        let rows = sqlx::query(concat!(
            "UPDATE analyses SET lease_owner = ?1, lease_expires_at_ms = ?2 \
             WHERE seq IN (SELECT seq FROM analyses \
                 WHERE (state IN ('pending', 'running', 'rollback_failed') \
                        AND (next_look_at_ms IS NULL OR next_look_at_ms <= ?3) \
                     OR state = 'awaiting_review' AND next_look_at_ms <= ?3) \
                   AND (lease_expires_at_ms IS NULL OR lease_expires_at_ms <= ?3) \
                 ORDER BY next_look_at_ms NULLS FIRST, seq LIMIT ?4) \
             RETURNING ",
            analysis_columns!()
        ))
        .bind(worker)
        .bind(expires_ms)
        .bind(now_ms)
        .bind(limit)
        .fetch_all(&mut *tx)
        .await
        .map_err(database_error)?;
        tx.commit().await.map_err(database_error)?;
        sorted_claims(&rows)
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
        let turn = self.write_turn().await;
        let renewed = sqlx::query(
            "UPDATE analyses SET lease_expires_at_ms = ?1 \
             WHERE id = ?2 AND lease_owner = ?3 AND lease_expires_at_ms > ?4",
        )
        .bind(expires_ms)
        .bind(id.to_string())
        .bind(worker)
        .bind(now_ms)
        .execute(&self.pool)
        .await
        .map_err(database_error)?
        .rows_affected();
        drop(turn);
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
        let turn = self.write_turn().await;
        let released = sqlx::query(
            "UPDATE analyses SET lease_owner = NULL, lease_expires_at_ms = NULL \
             WHERE id = ?1 AND lease_owner = ?2",
        )
        .bind(id.to_string())
        .bind(worker)
        .execute(&self.pool)
        .await
        .map_err(database_error)?
        .rows_affected();
        drop(turn);
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
        let reasons = json_text(&update.reasons)?;
        let runner_state = json_text(&update.runner_state.to_stored()?)?;

        let mut tx = self.write_transaction().await?;
        let guard = read_guard(&mut tx, id).await?;
        if !guard.holds(worker, now_ms) {
            return Err(StoreError::LeaseLost {
                analysis: id,
                worker: worker.to_owned(),
            });
        }
        if guard.version != expected_version {
            return Err(StoreError::Conflict(format!(
                "analysis {id} is at version {}, not {expected_version}",
                guard.version
            )));
        }
        if guard.state.is_done() {
            return Err(StoreError::Conflict(format!(
                "analysis {id} is {} (final)",
                guard.state
            )));
        }
        if let (Some(look), Some(at_ms)) = (&update.look, look_at_ms) {
            sqlx::query(
                "INSERT INTO looks (analysis_id, look, at_ms, stage_index, verdict, decision, body, body_zlib) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'null', ?7)",
            )
            .bind(id.to_string())
            .bind(i64::try_from(look.look).unwrap_or(i64::MAX))
            .bind(at_ms)
            .bind(i64::try_from(look.stage_index).unwrap_or(i64::MAX))
            .bind(&look.verdict)
            .bind(&look.decision)
            .bind(stored_body.as_deref())
            .execute(&mut *tx)
            .await
            .map_err(|error| match database_error(error) {
                StoreError::Conflict(_) => StoreError::Conflict(format!(
                    "look {} of analysis {id} is already recorded",
                    look.look
                )),
                other => other,
            })?;
        }
        let row = sqlx::query(concat!(
            "UPDATE analyses SET state = ?1, current_stage = ?2, traffic = ?3, \
             latest_verdict = ?4, reasons = ?5, runner_state = ?6, next_look_at_ms = ?7, \
             requested_action = NULL, version = version + 1, updated_at_ms = ?8 \
             WHERE id = ?9 RETURNING ",
            analysis_columns!()
        ))
        .bind(update.state.as_str())
        .bind(from_index(update.current_stage))
        .bind(update.traffic)
        .bind(&update.latest_verdict)
        .bind(reasons)
        .bind(runner_state)
        .bind(next_look_at_ms)
        .bind(now_ms)
        .bind(id.to_string())
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
        let guard = read_guard(&mut tx, id).await?;
        if !guard.holds(worker, now_ms) {
            return Err(StoreError::LeaseLost {
                analysis: id,
                worker: worker.to_owned(),
            });
        }
        let inserted = sqlx::query(concat!(
            "INSERT INTO actuations (idempotency_key, analysis_id, action, target, state, at_ms) \
             VALUES (?1, ?2, ?3, ?4, 'intended', ?5) \
             ON CONFLICT (idempotency_key) DO NOTHING RETURNING ",
            actuation_columns!()
        ))
        .bind(&intent.idempotency_key)
        .bind(id.to_string())
        .bind(&intent.action)
        .bind(intent.target)
        .bind(at_ms)
        .fetch_optional(&mut *tx)
        .await
        .map_err(database_error)?;
        let record = match inserted {
            Some(row) => actuation_from_row(&row)?,
            None => {
                let row = sqlx::query(concat!(
                    "SELECT ",
                    actuation_columns!(),
                    " FROM actuations WHERE idempotency_key = ?1"
                ))
                .bind(&intent.idempotency_key)
                .fetch_one(&mut *tx)
                .await
                .map_err(database_error)?;
                actuation_from_row(&row)?
            }
        };
        tx.commit().await.map_err(database_error)?;
        super::shared::check_same_intent(&intent, record)
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
            "UPDATE actuations SET state = ?1, detail = ?2, completed_at_ms = ?3 \
             WHERE idempotency_key = ?4 AND state = 'intended' RETURNING ",
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
            None => {
                let row = sqlx::query(concat!(
                    "SELECT ",
                    actuation_columns!(),
                    " FROM actuations WHERE idempotency_key = ?1"
                ))
                .bind(idempotency_key)
                .fetch_optional(&mut *tx)
                .await
                .map_err(database_error)?
                .ok_or_else(|| StoreError::NotFound(format!("actuation {idempotency_key:?}")))?;
                actuation_from_row(&row)?
            }
        };
        tx.commit().await.map_err(database_error)?;
        super::shared::check_completion(record, state)
    }

    async fn list_looks(&self, id: Uuid) -> Result<Vec<LookRecord>, StoreError> {
        self.require_analysis(id).await?;
        let rows = sqlx::query(
            "SELECT analysis_id, look, at_ms, stage_index, verdict, decision, body, body_zlib \
             FROM looks WHERE analysis_id = ?1 ORDER BY look",
        )
        .bind(id.to_string())
        .fetch_all(&self.pool)
        .await
        .map_err(database_error)?;
        rows.iter().map(look_from_row).collect()
    }

    async fn list_actuations(&self, id: Uuid) -> Result<Vec<ActuationRecord>, StoreError> {
        self.require_analysis(id).await?;
        let rows = sqlx::query(concat!(
            "SELECT ",
            actuation_columns!(),
            " FROM actuations WHERE analysis_id = ?1 ORDER BY seq"
        ))
        .bind(id.to_string())
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
        let requested = super::shared::requested_action(&action)?;
        let mut tx = self.write_transaction().await?;
        let guard = read_guard(&mut tx, id).await?;
        if guard.version != action.expected_version {
            return Err(StoreError::Conflict(format!(
                "analysis {id} is at version {}, not {}",
                guard.version, action.expected_version
            )));
        }
        let row = sqlx::query(concat!(
            "UPDATE analyses SET state = ?1, version = version + 1, updated_at_ms = ?2, \
             requested_action = COALESCE(?4, requested_action), \
             next_look_at_ms = CASE WHEN ?4 IS NULL THEN next_look_at_ms ELSE ?2 END \
             WHERE id = ?3 RETURNING ",
            analysis_columns!()
        ))
        .bind(action.new_state.as_str())
        .bind(now_ms)
        .bind(id.to_string())
        .bind(requested)
        .fetch_one(&mut *tx)
        .await
        .map_err(database_error)?;
        let analysis = analysis_from_row(&row)?;
        sqlx::query(
            "INSERT INTO audit_log (analysis_id, actor, action, reason, from_state, to_state, at_ms) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        )
        .bind(id.to_string())
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
             FROM audit_log WHERE analysis_id = ?1 ORDER BY seq",
        )
        .bind(id.to_string())
        .fetch_all(&self.pool)
        .await
        .map_err(database_error)?;
        rows.iter().map(audit_entry_from_row).collect()
    }

    async fn counts_by_state(&self) -> Result<BTreeMap<AnalysisState, u64>, StoreError> {
        let rows = sqlx::query("SELECT state, COUNT(*) AS n FROM analyses GROUP BY state")
            .fetch_all(&self.pool)
            .await
            .map_err(database_error)?;
        counts_from_rows(&rows)
    }

    async fn prune_finished(&self, finished_before: f64, limit: u32) -> Result<u64, StoreError> {
        let cutoff_ms = to_millis(finished_before, "finished_before")?;
        let mut tx = self.write_transaction().await?;
        let deleted = sqlx::query(AssertSqlSafe(format!(
            "DELETE FROM analyses WHERE id IN (SELECT id FROM analyses WHERE {} \
             ORDER BY updated_at_ms LIMIT ?2)",
            prunable_condition("?1")
        )))
        .bind(cutoff_ms)
        .bind(claim_limit(limit))
        .execute(&mut *tx)
        .await
        .map_err(database_error)?
        .rows_affected();
        tx.commit().await.map_err(database_error)?;
        if deleted > 0 {
            // Hands the freed pages back to the file system (a no-op unless the file
            // was created with, or vacuumed into, `auto_vacuum = INCREMENTAL`).
            let _turn = self.write_turn().await;
            sqlx::query("PRAGMA incremental_vacuum")
                .execute(&self.pool)
                .await
                .map_err(database_error)?;
        }
        Ok(deleted)
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
