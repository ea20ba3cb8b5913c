//! The shared store: PostgreSQL, which several `canary serve` instances use at once.
//!
//! Work is shared through leases on rows. [`Store::claim_due`](super::model::Store::claim_due) picks due rows with
//! `SELECT ... FOR UPDATE SKIP LOCKED` and leases them in the same statement, so two
//! instances claiming at once lock disjoint rows and neither waits for the other. Every
//! check-then-write (a look, an actuation intent, a manual action) reads its analysis
//! with `SELECT ... FOR UPDATE` inside its transaction, so the lease and version it
//! checked cannot change before it commits. Ids are `uuid`, JSON is `jsonb`, reasons
//! `text[]`, times `bigint` milliseconds (see `migrations/postgres/`). The connection
//! URL may carry `options[search_path]=SCHEMA` to keep the tables in a schema of their own.
//!
//! The statements both engines share are in `sql.rs` (`sql_store!`); this file holds
//! what PostgreSQL does its own way: the pool, row locks, `uuid` and `text[]`, and the
//! claim and prune statements with `SKIP LOCKED`.

use std::str::FromStr;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions, PgRow};
use sqlx::{AssertSqlSafe, PgPool, Row};
use uuid::Uuid;

use super::model::{Analysis, StoreError};
use super::rows::{StoredRow, primitive_columns, sorted_claims};
use super::shared::{database_error, migrate_error, prunable_condition};
use super::sql::{analysis_columns, due_analyses, sql_store};

/// Connections when the settings do not say.
const DEFAULT_POOL_SIZE: u32 = 10;

/// The PostgreSQL store.
#[derive(Debug, Clone)]
pub struct PostgresStore {
    pool: PgPool,
}

impl PostgresStore {
    /// Connects with a pool of the default size and migrates the schema (migrations
    /// take an advisory lock, so instances starting together migrate once).
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        Self::connect_with_pool_size(url, None).await
    }

    /// Connects with a pool of `max_connections` (default 10) and migrates the schema.
    pub async fn connect_with_pool_size(
        url: &str,
        max_connections: Option<u32>,
    ) -> Result<Self, StoreError> {
        let options = PgConnectOptions::from_str(url)
            .map_err(|e| StoreError::Invalid(format!("PostgreSQL URL: {e}")))?;
        let pool = PgPoolOptions::new()
            .max_connections(max_connections.unwrap_or(DEFAULT_POOL_SIZE).max(1))
            .connect_with(options)
            .await
            .map_err(database_error)?;
        sqlx::migrate!("src/store/migrations/postgres")
            .run(&pool)
            .await
            .map_err(migrate_error)?;
        Ok(Self { pool })
    }

    async fn write_transaction(
        &self,
    ) -> Result<sqlx::Transaction<'static, sqlx::Postgres>, StoreError> {
        self.pool.begin().await.map_err(database_error)
    }

    /// Writers need no turn: row locks order them.
    async fn write_turn(&self) -> NoTurn {
        NoTurn
    }

    /// Ids are `uuid`.
    fn id_param(id: Uuid) -> Uuid {
        id
    }

    /// Lists are `text[]`.
    fn list_param(list: &[String]) -> Result<Vec<String>, StoreError> {
        Ok(list.to_vec())
    }

    /// Picks and leases due analyses in one statement, so one transaction: rows another
    /// claim has locked are skipped, not waited for, and a row whose lease a concurrent
    /// claim just committed is re-checked against the WHERE clause after locking.
    async fn claim(
        &self,
        worker: &str,
        now_ms: i64,
        expires_ms: i64,
        limit: i64,
    ) -> Result<Vec<Analysis>, StoreError> {
        let rows = sqlx::query(concat!(
            "WITH due AS (SELECT id AS due_id FROM analyses WHERE ",
            due_analyses!(),
            " FOR UPDATE SKIP LOCKED) \
             UPDATE analyses SET lease_owner = $1, lease_expires_at_ms = $2 \
             FROM due WHERE id = due.due_id RETURNING ",
            analysis_columns!()
        ))
        .bind(worker)
        .bind(expires_ms)
        .bind(now_ms)
        .bind(limit)
        .fetch_all(&self.pool)
        .await
        .map_err(database_error)?;
        sorted_claims(&rows)
    }

    /// Deletes up to `limit` prunable analyses. SKIP LOCKED: rows another instance is
    /// pruning, or a manual action is changing, are left for a later call instead of
    /// waited for.
    async fn prune(&self, cutoff_ms: i64, limit: i64) -> Result<u64, StoreError> {
        let deleted = sqlx::query(AssertSqlSafe(format!(
            "DELETE FROM analyses WHERE id IN (SELECT id FROM analyses WHERE {} \
             ORDER BY updated_at_ms LIMIT $2 FOR UPDATE SKIP LOCKED)",
            prunable_condition("$1")
        )))
        .bind(cutoff_ms)
        .bind(limit)
        .execute(&self.pool)
        .await
        .map_err(database_error)?
        .rows_affected();
        Ok(deleted)
    }
}

/// PostgreSQL's stand-in for SQLite's turn to write.
struct NoTurn;

// The guard read locks the analysis's row until the transaction ends.
sql_store!(
    statements,
    PostgresStore,
    sqlx::PgConnection,
    for_update = " FOR UPDATE"
);

impl StoredRow for PgRow {
    primitive_columns!();

    fn uuid(&self, column: &str) -> Result<Uuid, StoreError> {
        self.try_get(column).map_err(database_error)
    }

    fn string_list(&self, column: &str) -> Result<Vec<String>, StoreError> {
        self.try_get(column).map_err(database_error)
    }

    fn json(&self, column: &str) -> Result<serde_json::Value, StoreError> {
        self.try_get(column).map_err(database_error)
    }
}
