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
//!
//! The statements both engines share are in `sql.rs` (`sql_store!`); this file holds
//! what SQLite does its own way: the connection, the turn to write, ids and lists as
//! text, and the claim and prune statements.

use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use sqlx::sqlite::{
    SqliteAutoVacuum, SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteRow,
    SqliteSynchronous,
};
use sqlx::{AssertSqlSafe, Row, SqlitePool};
use uuid::Uuid;

use super::model::{Analysis, StoreError};
use super::rows::{StoredRow, primitive_columns, sorted_claims};
use super::shared::{database_error, migrate_error, prunable_condition};
use super::sql::{analysis_columns, due_analyses, sql_store};

/// How long a statement waits for another connection's write lock before failing with
/// [`StoreError::Unavailable`].
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Connections for a file: WAL lets readers run beside the one writer.
const FILE_POOL_SIZE: u32 = 4;

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

    /// Ids are kept as hyphenated text.
    fn id_param(id: Uuid) -> String {
        id.to_string()
    }

    /// Lists are kept as JSON text.
    fn list_param(list: &[String]) -> Result<String, StoreError> {
        serde_json::to_string(list).map_err(|e| StoreError::Invalid(format!("JSON: {e}")))
    }

    /// Picks and leases due analyses in one statement, in a write transaction: the
    /// immediate transaction makes it wait for the write lock rather than read a stale
    /// snapshot.
    async fn claim(
        &self,
        worker: &str,
        now_ms: i64,
        expires_ms: i64,
        limit: i64,
    ) -> Result<Vec<Analysis>, StoreError> {
        let mut tx = self.write_transaction().await?;
        let rows = sqlx::query(concat!(
            "UPDATE analyses SET lease_owner = $1, lease_expires_at_ms = $2 \
             WHERE seq IN (SELECT seq FROM analyses WHERE ",
            due_analyses!(),
            ") RETURNING ",
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

    /// Deletes up to `limit` prunable analyses, then hands the freed pages back.
    async fn prune(&self, cutoff_ms: i64, limit: i64) -> Result<u64, StoreError> {
        let mut tx = self.write_transaction().await?;
        let deleted = sqlx::query(AssertSqlSafe(format!(
            "DELETE FROM analyses WHERE id IN (SELECT id FROM analyses WHERE {} \
             ORDER BY updated_at_ms LIMIT $2)",
            prunable_condition("$1")
        )))
        .bind(cutoff_ms)
        .bind(limit)
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
}

// The guard read takes no row lock: its transaction already holds the write lock.
sql_store!(
    statements,
    SqliteStore,
    sqlx::SqliteConnection,
    for_update = ""
);

fn uuid_from_text(text: &str) -> Result<Uuid, StoreError> {
    Uuid::parse_str(text).map_err(|e| StoreError::Corrupt(format!("id {text:?}: {e}")))
}

fn json_from_text<T: serde::de::DeserializeOwned>(text: &str, what: &str) -> Result<T, StoreError> {
    serde_json::from_str(text).map_err(|e| StoreError::Corrupt(format!("{what}: {e}")))
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
