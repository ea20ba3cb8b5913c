//! Which store to use, from settings: the one place naming the concrete stores.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::model::{Store, StoreError};
use super::postgres::PostgresStore;
use super::sqlite::SqliteStore;

/// Which store to use, from settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoreConfig {
    /// `sqlite:PATH`, `sqlite://PATH` or a plain file path for an embedded SQLite file
    /// (created if missing; one `canary serve` instance only); `sqlite::memory:` for a
    /// throwaway database; `postgres://USER@HOST:PORT/DB` (or `postgresql://`) for
    /// PostgreSQL, which several instances can share.
    pub url: String,
    /// The connection pool's size for PostgreSQL (default 10). SQLite files use a small
    /// fixed pool and in-memory databases one connection.
    #[serde(default)]
    pub max_connections: Option<u32>,
}

impl StoreConfig {
    /// A configuration for `url` with the default pool size.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            max_connections: None,
        }
    }

    /// Connects to the store the URL names and brings its schema up to date.
    pub async fn build(&self) -> Result<Arc<dyn Store>, StoreError> {
        if is_postgres_url(&self.url) {
            let store =
                PostgresStore::connect_with_pool_size(&self.url, self.max_connections).await?;
            Ok(Arc::new(store))
        } else {
            Ok(Arc::new(SqliteStore::connect(&self.url).await?))
        }
    }
}

pub(super) fn is_postgres_url(url: &str) -> bool {
    url.starts_with("postgres://") || url.starts_with("postgresql://")
}
