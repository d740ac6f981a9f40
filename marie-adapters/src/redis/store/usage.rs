//! [`UsageLedger`] in Redis: one counter per user and budget window, expiring a day after it.

use async_trait::async_trait;
use marie_core::{StoreError, UsageLedger, UsageWindow, UserId};
use redis::AsyncCommands;

use super::RedisStore;

impl RedisStore {
    fn usage_key(&self, user: &UserId, window: UsageWindow) -> String {
        format!(
            "{}:usage:{{{user}}}:{}-{}",
            self.inner.config.prefix, window.start, window.end
        )
    }
}

#[async_trait]
impl UsageLedger for RedisStore {
    async fn add_usage(
        &self,
        user: &UserId,
        window: UsageWindow,
        tokens: u64,
    ) -> Result<u64, StoreError> {
        let key = self.usage_key(user, window);
        // Kept a day past its window, then gone by itself.
        let expire_at = window.end.saturating_add(86_400_000);
        let (used,): (u64,) = self
            .run("add_usage", |mut c| async move {
                redis::pipe()
                    .atomic()
                    .incr(&key, tokens)
                    .cmd("PEXPIREAT")
                    .arg(&key)
                    .arg(expire_at)
                    .ignore()
                    .query_async(&mut c)
                    .await
            })
            .await?;
        Ok(used)
    }

    async fn usage(&self, user: &UserId, window: UsageWindow) -> Result<u64, StoreError> {
        let key = self.usage_key(user, window);
        let used: Option<u64> = self
            .run("usage", |mut c| async move { c.get(key).await })
            .await?;
        Ok(used.unwrap_or(0))
    }
}
