//! [`UsageLedger`] in memory.

use std::collections::HashMap;

use async_trait::async_trait;
use marie_core::{StoreError, UsageLedger, UsageWindow, UserId, now_millis};

use super::{MemoryStore, lock};

/// Tokens used per user and budget window.
pub(super) type Counts = HashMap<(UserId, UsageWindow), u64>;

#[async_trait]
impl UsageLedger for MemoryStore {
    async fn add_usage(
        &self,
        user: &UserId,
        window: UsageWindow,
        tokens: u64,
    ) -> Result<u64, StoreError> {
        let mut counts = lock(&self.tables.usage);
        // Ended windows are read no more: forget them now and then.
        if counts.len() % 1024 == 1023 {
            let now = now_millis();
            counts.retain(|(_, w), _| w.end > now);
        }
        let used = counts.entry((user.clone(), window)).or_default();
        *used = used.saturating_add(tokens);
        Ok(*used)
    }

    async fn usage(&self, user: &UserId, window: UsageWindow) -> Result<u64, StoreError> {
        Ok(lock(&self.tables.usage)
            .get(&(user.clone(), window))
            .copied()
            .unwrap_or(0))
    }
}
