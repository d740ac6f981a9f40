//! The stores an example keeps its conversations and uploaded files in: `MARIE_DATABASE_URL`
//! names a SQL database (`sqlite://marie.db?mode=rwc`, `postgres://user:pass@host/db`) for
//! both; unset, the in-memory store (nothing survives a restart), and files in the directory
//! `MARIE_FILES_DIR` names, or in memory. Included with `#[path]`.

use std::sync::Arc;

use marie_adapters::{DiskFileStore, MemoryFileStore, MemoryStore, SqlStore};
use marie_core::{FileStore, Stores};

use crate::web;

/// The store `MARIE_DATABASE_URL` names, connected and migrated; `None` when unset.
pub(crate) async fn sql_from_env() -> Result<Option<SqlStore>, web::Words> {
    let Ok(url) = std::env::var("MARIE_DATABASE_URL") else {
        return Ok(None);
    };
    let mut config = marie_adapters::SqlConfig::new(url);
    if let Ok(text) = std::env::var("MARIE_HISTORY_TTL_DAYS") {
        let days: u64 = text.trim().parse().ok().filter(|d| *d > 0).ok_or_else(|| {
            web::Words(format!(
                "MARIE_HISTORY_TTL_DAYS={text:?} is not a number of days (1 or more)"
            ))
        })?;
        config = config.history_ttl(std::time::Duration::from_secs(days * 86_400));
    }
    let store = SqlStore::connect_with(config).await.map_err(|e| {
        web::Words(format!(
            "MARIE_DATABASE_URL: could not open the database ({e}); give sqlite://<file>?mode=rwc or postgres://user:pass@host/db"
        ))
    })?;
    tracing::info!(store = ?store, "conversations are kept in SQL");
    Ok(Some(store))
}

/// The store `MARIE_DATABASE_URL` named (`sql`, from [`sql_from_env`]), or the in-memory one.
#[allow(
    dead_code,
    reason = "the cluster example's default store is Redis: it uses `sql_from_env` alone"
)]
pub(crate) fn from_env(sql: Option<&SqlStore>) -> Stores {
    match sql {
        Some(sql) => Stores::new(sql.clone()),
        None => {
            tracing::info!(
                "conversations are kept in memory (set MARIE_DATABASE_URL to keep them)"
            );
            Stores::new(MemoryStore::new())
        }
    }
}

/// Where uploaded files are kept: in the SQL database that keeps the conversations (`sql`,
/// from [`sql_from_env`]); without one, in the directory `MARIE_FILES_DIR` names (created if
/// missing); without that, in memory (nothing survives a restart; the per-user quota bounds
/// what they take).
///
/// A directory outlives the in-memory conversations: after a restart, a file is readable by
/// the members of whichever conversation is created again under its conversation's id.
#[allow(
    dead_code,
    reason = "the cluster example takes files only into its SQL store"
)]
pub(crate) async fn files_from_env(
    sql: Option<&SqlStore>,
) -> Result<Arc<dyn FileStore>, web::Words> {
    let dir = std::env::var_os("MARIE_FILES_DIR").filter(|dir| !dir.is_empty());
    if let Some(sql) = sql {
        if let Some(dir) = dir {
            tracing::warn!(
                dir = %std::path::Path::new(&dir).display(),
                "MARIE_FILES_DIR is ignored: uploaded files are kept in MARIE_DATABASE_URL's database"
            );
        }
        tracing::info!("uploaded files are kept in SQL, beside the conversations");
        return Ok(Arc::new(sql.clone()));
    }
    if let Some(dir) = dir {
        let files = DiskFileStore::open(&dir).await.map_err(|e| {
            web::Words(format!(
                "MARIE_FILES_DIR: could not use {} as the uploads' directory ({e})",
                std::path::Path::new(&dir).display()
            ))
        })?;
        tracing::info!(dir = %files.dir().display(), "uploaded files are kept in a directory");
        return Ok(Arc::new(files));
    }
    tracing::info!(
        "uploaded files are kept in memory (set MARIE_DATABASE_URL or MARIE_FILES_DIR to keep them)"
    );
    Ok(Arc::new(MemoryFileStore::new()))
}
