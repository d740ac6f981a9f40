//! Retention: conversations idle for longer than [`SqlConfig::history_ttl`] are deleted,
//! history, files and all, by a task that sweeps now and then (Redis has its own expiry,
//! `RedisConfig::conversation_ttl`).

use std::sync::{Arc, Weak};
use std::time::Duration;

use marie_core::{ConversationId, StoreError, now_millis};

use super::{Fault, Inner, SqlStore, changed, millis, to_db};

/// How many expired conversations one statement finds; a sweep goes on until none is left.
const BATCH: i64 = 200;

impl SqlStore {
    /// Deletes the conversations nobody wrote to for longer than
    /// [`SqlConfig::history_ttl`](super::SqlConfig::history_ttl) (none without one): as
    /// `delete_conversation` does (the id stays taken), with their history on every branch,
    /// queued sends, approvals, expired leases and files. A conversation with a running
    /// answer is left for the next sweep. Returns how many it deleted.
    ///
    /// The store runs this by itself every tenth of the TTL (at most every 10 minutes); an
    /// app may call it too, from a job of its own.
    pub async fn expire_conversations(&self) -> Result<usize, StoreError> {
        let Some(ttl) = self.inner.config.history_ttl else {
            return Ok(0);
        };
        let mut expired = 0;
        loop {
            let now = now_millis();
            let cutoff = now.saturating_sub(millis(ttl));
            let batch = self
                .run("expire_conversations", || self.expired(cutoff, now))
                .await?;
            if batch.is_empty() {
                return Ok(expired);
            }
            for conversation in &batch {
                let gone = self
                    .run("expire_conversations", || self.expire(conversation, cutoff))
                    .await?;
                if gone {
                    expired += 1;
                }
            }
            if batch.len() < BATCH as usize {
                return Ok(expired);
            }
        }
    }

    /// Conversations idle since before `cutoff`, without a running answer, the oldest first.
    async fn expired(&self, cutoff: u64, now: u64) -> Result<Vec<ConversationId>, Fault> {
        let ids: Vec<String> = sqlx::query_scalar(
            "SELECT c.conversation_id FROM marie_conversations c \
             WHERE c.deleted_at IS NULL AND c.updated_at < $1 \
             AND NOT EXISTS (SELECT 1 FROM marie_answer_leases l \
                             WHERE l.conversation_id = c.conversation_id AND l.expires_at > $2) \
             ORDER BY c.updated_at LIMIT $3",
        )
        .bind(to_db(cutoff))
        .bind(to_db(now))
        .bind(BATCH)
        .fetch_all(self.pool())
        .await?;
        Ok(ids
            .into_iter()
            .filter_map(|id| ConversationId::parse(id).ok())
            .collect())
    }

    /// Deletes `conversation` if it is still idle since before `cutoff` (a message written
    /// since the sweep found it keeps it): the mark, its members and the rows that hang on
    /// it in one transaction, then its files. Whether it was deleted.
    async fn expire(&self, conversation: &ConversationId, cutoff: u64) -> Result<bool, Fault> {
        let mut tx = self.begin_write().await?;
        let now = now_millis();
        // Not while an answer holds it: one that started since the sweep looked keeps it.
        let marked = sqlx::query(
            "UPDATE marie_conversations SET deleted_at = $2, title = NULL, system_prompt = NULL, \
             last_message = NULL WHERE conversation_id = $1 AND deleted_at IS NULL \
             AND updated_at < $3 AND NOT EXISTS (SELECT 1 FROM marie_answer_leases l \
             WHERE l.conversation_id = $1 AND l.expires_at > $2)",
        )
        .bind(conversation.as_str())
        .bind(to_db(now))
        .bind(to_db(cutoff))
        .execute(&mut *tx)
        .await?;
        if !changed(&marked) {
            tx.rollback().await?;
            return Ok(false);
        }
        for table in [
            "marie_members",
            "marie_reads",
            "marie_messages",
            "marie_active_path",
            "marie_queued_sends",
            "marie_send_queues",
            "marie_approvals",
        ] {
            sqlx::query(&format!("DELETE FROM {table} WHERE conversation_id = $1"))
                .bind(conversation.as_str())
                .execute(&mut *tx)
                .await?;
        }
        sqlx::query(
            "DELETE FROM marie_answer_leases WHERE conversation_id = $1 AND expires_at <= $2",
        )
        .bind(conversation.as_str())
        .bind(to_db(now))
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        // Each file is taken off its owner's total in a transaction of its own, as a
        // deletion does. The conversation is gone already, so a failure here would leave
        // files no sweep finds again: it is returned, not skipped.
        self.remove_conversation_files(conversation).await?;
        Ok(true)
    }
}

/// Starts the sweep of [`SqlStore::expire_conversations`] for a store with a
/// `history_ttl`. It holds the store weakly: it ends when the last clone is dropped or the
/// pool is closed.
pub(super) fn spawn_expiry(inner: &Arc<Inner>, ttl: Duration) {
    let every = (ttl / 10).clamp(Duration::from_millis(50), Duration::from_secs(600));
    let weak: Weak<Inner> = Arc::downgrade(inner);
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let Some(inner) = weak.upgrade() else { return };
            if inner.pool.is_closed() {
                return;
            }
            let store = SqlStore { inner };
            match store.expire_conversations().await {
                Ok(0) => {}
                Ok(n) => tracing::info!(conversations = n, "expired idle conversations"),
                Err(e) => tracing::warn!(error = %e, "expiring idle conversations failed"),
            }
        }
    });
}
