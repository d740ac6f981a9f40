//! Token usage per user and budget window (`marie_usage`): one counter row each, added to by
//! one `INSERT .. ON CONFLICT DO UPDATE .. RETURNING`, so that concurrent adds from several
//! nodes all count and each sees its own total. Windows that ended a day ago are swept now
//! and then.

use std::sync::atomic::Ordering;

use async_trait::async_trait;
use marie_core::{StoreError, UsageLedger, UsageWindow, UserId, now_millis};

use super::{Fault, SqlStore, from_db, to_db};

/// Every this many adds, one sweeps the windows that ended more than [`KEEP_ENDED`] ago.
const SWEEP_EVERY: u64 = 256;

/// How long a window's counter is kept after the window ends (as the Redis store does).
const KEEP_ENDED: u64 = 86_400_000;

impl SqlStore {
    pub(super) async fn add_tokens(
        &self,
        user: &UserId,
        window: UsageWindow,
        tokens: u64,
    ) -> Result<u64, Fault> {
        if self.inner.usage_writes.fetch_add(1, Ordering::Relaxed) % SWEEP_EVERY == SWEEP_EVERY - 1
        {
            sqlx::query("DELETE FROM marie_usage WHERE window_end < $1")
                .bind(to_db(now_millis().saturating_sub(KEEP_ENDED)))
                .execute(self.pool())
                .await?;
        }
        let used: i64 = sqlx::query_scalar(
            "INSERT INTO marie_usage (user_id, window_start, window_end, tokens) \
             VALUES ($1, $2, $3, $4) ON CONFLICT (user_id, window_start, window_end) \
             DO UPDATE SET tokens = marie_usage.tokens + excluded.tokens RETURNING tokens",
        )
        .bind(user.as_str())
        .bind(to_db(window.start))
        .bind(to_db(window.end))
        .bind(i64::try_from(tokens).unwrap_or(i64::MAX))
        .fetch_one(self.pool())
        .await?;
        Ok(from_db(used))
    }

    pub(super) async fn used_tokens(
        &self,
        user: &UserId,
        window: UsageWindow,
    ) -> Result<u64, Fault> {
        let used: Option<i64> = sqlx::query_scalar(
            "SELECT tokens FROM marie_usage \
             WHERE user_id = $1 AND window_start = $2 AND window_end = $3",
        )
        .bind(user.as_str())
        .bind(to_db(window.start))
        .bind(to_db(window.end))
        .fetch_optional(self.pool())
        .await?;
        Ok(used.map_or(0, from_db))
    }
}

#[async_trait]
impl UsageLedger for SqlStore {
    async fn add_usage(
        &self,
        user: &UserId,
        window: UsageWindow,
        tokens: u64,
    ) -> Result<u64, StoreError> {
        self.run("add_usage", || self.add_tokens(user, window, tokens))
            .await
    }

    async fn usage(&self, user: &UserId, window: UsageWindow) -> Result<u64, StoreError> {
        self.run("usage", || self.used_tokens(user, window)).await
    }
}
