//! [`UsageLedger`]: the tokens each user has spent, per budget window.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::{StoreError, UserId};

/// One period of one budget: `[start, end)` in milliseconds since the Unix epoch. Usage is
/// counted per user and window.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct UsageWindow {
    /// When it began.
    pub start: u64,
    /// When it ends (and the budget starts again: `get_usage.resets_at`).
    pub end: u64,
}

/// Token usage per user and budget window.
///
/// With a [`BudgetPolicy`](crate::BudgetPolicy), the tokens of each answer are added to its
/// user's figure for the budget's current window ([`add_usage`](Self::add_usage)), once per
/// answer, by the node that ran it; every node reads the same figure
/// ([`usage`](Self::usage)).
#[async_trait]
pub trait UsageLedger: Send + Sync + 'static {
    /// Adds `tokens` to what `user` has used in `window` and returns the new total. Atomic:
    /// adds from several nodes at once all count. A store may forget a window once it has
    /// ended.
    async fn add_usage(
        &self,
        user: &UserId,
        window: UsageWindow,
        tokens: u64,
    ) -> Result<u64, StoreError>;

    /// What `user` has used in `window`: 0 when nothing was counted.
    async fn usage(&self, user: &UserId, window: UsageWindow) -> Result<u64, StoreError>;
}

#[async_trait]
impl<T: UsageLedger + ?Sized> UsageLedger for std::sync::Arc<T> {
    async fn add_usage(
        &self,
        user: &UserId,
        window: UsageWindow,
        tokens: u64,
    ) -> Result<u64, StoreError> {
        (**self).add_usage(user, window, tokens).await
    }
    async fn usage(&self, user: &UserId, window: UsageWindow) -> Result<u64, StoreError> {
        (**self).usage(user, window).await
    }
}
