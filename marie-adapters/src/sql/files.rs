//! Uploaded files (`marie_files`, bytes included) and what each user's files take
//! (`marie_file_usage`, what the quota counts).
//!
//! Storing a file is one transaction that starts by updating its owner's `marie_file_usage`
//! row (`INSERT .. ON CONFLICT DO UPDATE .. RETURNING used`, a row made at 0 on a first
//! upload). That serializes one user's uploads, from one node or several: a row lock in
//! PostgreSQL, held to the end of the transaction, and SQLite's write lock, taken at `BEGIN
//! IMMEDIATE`. The total it returns is then exact: the quota is checked against it, and the
//! file's row and the new total are written, or the transaction is rolled back and nothing
//! is stored. Reading a record leaves the bytes out.

use marie_core::{ConversationId, FileId, FileMeta, PutOutcome, StoredFile, UserId};
use sqlx::Row;
use sqlx::any::AnyRow;

use super::{Fault, SqlStore, corrupt, from_db, to_db};

/// A record's columns, in the order [`read_meta`] reads them.
const META_COLUMNS: &str =
    "file_id, user_id, conversation_id, name, content_type, size, created_at";

impl SqlStore {
    pub(super) async fn store_file(
        &self,
        meta: &FileMeta,
        data: &[u8],
        quota: Option<u64>,
    ) -> Result<PutOutcome, Fault> {
        let user = meta.user_id.as_str();
        let mut tx = self.begin_write().await?;
        // Locks the owner's row until the end of the transaction, and reads their total.
        let used: i64 = sqlx::query_scalar(
            "INSERT INTO marie_file_usage (user_id, used) VALUES ($1, 0) \
             ON CONFLICT (user_id) DO UPDATE SET used = marie_file_usage.used RETURNING used",
        )
        .bind(user)
        .fetch_one(&mut *tx)
        .await?;
        let held = from_db(used);
        let mut used = held;
        // The same id again (never, with random ids): the new file replaces the old one,
        // whose bytes no longer count.
        let old = sqlx::query("DELETE FROM marie_files WHERE file_id = $1 RETURNING user_id, size")
            .bind(meta.file_id.as_str())
            .fetch_optional(&mut *tx)
            .await?;
        if let Some(old) = old {
            let owner: String = old.try_get(0)?;
            let size = from_db(old.try_get(1)?);
            if owner == user {
                used = used.saturating_sub(size);
            } else {
                sqlx::query(
                    "UPDATE marie_file_usage SET used = CASE WHEN used > $2 THEN used - $2 \
                     ELSE 0 END WHERE user_id = $1",
                )
                .bind(owner)
                .bind(to_db(size))
                .execute(&mut *tx)
                .await?;
            }
        }
        let total = used.saturating_add(meta.size);
        if quota.is_some_and(|quota| total > quota) {
            tx.rollback().await?;
            return Ok(PutOutcome::OverQuota { used: held });
        }
        sqlx::query(
            "INSERT INTO marie_files (file_id, user_id, conversation_id, name, content_type, \
             size, created_at, data) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(meta.file_id.as_str())
        .bind(user)
        .bind(meta.conversation_id.as_str())
        .bind(meta.name.as_str())
        .bind(meta.content_type.as_str())
        .bind(to_db(meta.size))
        .bind(to_db(meta.created_at))
        .bind(data)
        .execute(&mut *tx)
        .await?;
        sqlx::query("UPDATE marie_file_usage SET used = $2 WHERE user_id = $1")
            .bind(user)
            .bind(to_db(total))
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(PutOutcome::Stored)
    }

    pub(super) async fn file_meta(&self, file: &FileId) -> Result<Option<FileMeta>, Fault> {
        let row = sqlx::query(&format!(
            "SELECT {META_COLUMNS} FROM marie_files WHERE file_id = $1"
        ))
        .bind(file.as_str())
        .fetch_optional(self.pool())
        .await?;
        row.as_ref().map(read_meta).transpose()
    }

    pub(super) async fn file(&self, file: &FileId) -> Result<Option<StoredFile>, Fault> {
        let row = sqlx::query(&format!(
            "SELECT {META_COLUMNS}, data FROM marie_files WHERE file_id = $1"
        ))
        .bind(file.as_str())
        .fetch_optional(self.pool())
        .await?;
        let Some(row) = row else {
            return Ok(None);
        };
        let data: Vec<u8> = row.try_get(7)?;
        Ok(Some(StoredFile {
            meta: read_meta(&row)?,
            data: data.into(),
        }))
    }

    /// Removes the files uploaded to `conversation`, each as [`remove_file`](Self::remove_file)
    /// does (one owner's total at a time, in the order uploads lock it).
    pub(super) async fn remove_conversation_files(
        &self,
        conversation: &ConversationId,
    ) -> Result<Vec<FileMeta>, Fault> {
        let ids: Vec<String> =
            sqlx::query_scalar("SELECT file_id FROM marie_files WHERE conversation_id = $1")
                .bind(conversation.as_str())
                .fetch_all(self.pool())
                .await?;
        let mut removed = Vec::with_capacity(ids.len());
        for id in ids {
            let Ok(id) = FileId::parse(&id) else { continue };
            if let Some(meta) = self.remove_file(&id).await? {
                removed.push(meta);
            }
        }
        Ok(removed)
    }

    /// Removes the file and takes its size off its owner's total, in one transaction that
    /// locks the owner's row first, as storing does.
    pub(super) async fn remove_file(&self, file: &FileId) -> Result<Option<FileMeta>, Fault> {
        let Some(meta) = self.file_meta(file).await? else {
            return Ok(None);
        };
        let mut tx = self.begin_write().await?;
        sqlx::query("UPDATE marie_file_usage SET used = used WHERE user_id = $1")
            .bind(meta.user_id.as_str())
            .execute(&mut *tx)
            .await?;
        let size: Option<i64> =
            sqlx::query_scalar("DELETE FROM marie_files WHERE file_id = $1 RETURNING size")
                .bind(file.as_str())
                .fetch_optional(&mut *tx)
                .await?;
        let Some(size) = size else {
            // Removed meanwhile, by another caller.
            tx.rollback().await?;
            return Ok(None);
        };
        sqlx::query(
            "UPDATE marie_file_usage SET used = CASE WHEN used > $2 THEN used - $2 ELSE 0 END \
             WHERE user_id = $1",
        )
        .bind(meta.user_id.as_str())
        .bind(size)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(Some(meta))
    }

    pub(super) async fn file_bytes_used(&self, user: &UserId) -> Result<u64, Fault> {
        let used: Option<i64> =
            sqlx::query_scalar("SELECT used FROM marie_file_usage WHERE user_id = $1")
                .bind(user.as_str())
                .fetch_optional(self.pool())
                .await?;
        Ok(used.map_or(0, from_db))
    }
}

/// A record from the columns of [`META_COLUMNS`].
fn read_meta(row: &AnyRow) -> Result<FileMeta, Fault> {
    Ok(FileMeta {
        file_id: FileId::parse(row.try_get::<String, _>(0)?).map_err(corrupt)?,
        user_id: UserId::parse(row.try_get::<String, _>(1)?).map_err(corrupt)?,
        conversation_id: ConversationId::parse(row.try_get::<String, _>(2)?).map_err(corrupt)?,
        name: row.try_get(3)?,
        content_type: row.try_get(4)?,
        size: from_db(row.try_get(5)?),
        created_at: from_db(row.try_get(6)?),
    })
}
