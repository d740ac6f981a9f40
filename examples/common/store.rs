//! The store an example keeps its conversations in: `MARIE_DATABASE_URL` names a SQL
//! database (`sqlite://marie.db?mode=rwc`, `postgres://user:pass@host/db`); unset, the
//! in-memory store (nothing survives a restart). Included with `#[path]`.

use std::sync::Arc;

use marie_adapters::{MemoryFileStore, MemoryStore, SqlStore};
use marie_core::{FileStore, RoomStore};

use crate::web;

/// The store `MARIE_DATABASE_URL` names, connected and migrated; `None` when unset.
pub(crate) async fn sql_from_env() -> Result<Option<SqlStore>, web::Words> {
    let Ok(url) = std::env::var("MARIE_DATABASE_URL") else {
        return Ok(None);
    };
    let store = SqlStore::connect(&url).await.map_err(|e| {
        web::Words(format!(
            "MARIE_DATABASE_URL: could not open the database ({e}); give sqlite://<file>?mode=rwc or postgres://user:pass@host/db"
        ))
    })?;
    tracing::info!(store = ?store, "conversations are kept in SQL");
    Ok(Some(store))
}

/// The store `MARIE_DATABASE_URL` names, or the in-memory one.
#[allow(
    dead_code,
    reason = "the cluster example's default store is Redis: it uses `sql_from_env` alone"
)]
pub(crate) async fn from_env() -> Result<Arc<dyn RoomStore>, web::Words> {
    Ok(match sql_from_env().await? {
        Some(sql) => Arc::new(sql),
        None => {
            tracing::info!(
                "conversations are kept in memory (set MARIE_DATABASE_URL to keep them)"
            );
            Arc::new(MemoryStore::new())
        }
    })
}

#[allow(
    dead_code,
    reason = "the cluster example takes no files unless its history is in SQL"
)]
/// Where uploaded files are kept: in memory (nothing survives a restart; the per-user quota
/// bounds what they take).
pub(crate) fn files_from_env() -> Result<Arc<dyn FileStore>, web::Words> {
    tracing::info!("uploaded files are kept in memory");
    Ok(Arc::new(MemoryFileStore::new()))
}
