//! [`AnswerLeases`]: one answer at a time per conversation, across every node.

use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::{ConversationId, StoreError, StreamId};

/// The lease of a running answer, as a store keeps it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AnswerLease {
    /// The answer holding the lease.
    pub stream_id: StreamId,
    /// The last `seq` it had sent at its last renewal.
    pub seq: u64,
}

/// Leases of running answers.
///
/// One answer runs per conversation at a time, cluster-wide. The node that starts an answer
/// takes a *lease* on the conversation ([`claim_answer`](Self::claim_answer)), renews it while
/// the answer runs ([`renew_answer`](Self::renew_answer), which also records the last `seq`
/// sent) and gives it back at the end ([`release_answer`](Self::release_answer)). A lease not
/// renewed within its `ttl` lapses, so a node that dies cannot leave a conversation busy
/// forever. [`active_answer`](Self::active_answer) is what `joined.active_stream` reports.
#[async_trait]
pub trait AnswerLeases: Send + Sync + 'static {
    /// Takes the lease of `conversation` for the answer `stream_id` (at `seq` 0) for `ttl`.
    /// Returns `false`, changing nothing, while another answer holds an unexpired lease.
    async fn claim_answer(
        &self,
        conversation: &ConversationId,
        stream_id: &StreamId,
        ttl: Duration,
    ) -> Result<bool, StoreError>;

    /// Extends the lease of `lease.stream_id` by `ttl` from now and records `lease.seq`.
    /// A lease that lapsed meanwhile is taken again. Returns `false`, changing nothing, when
    /// another answer holds the lease.
    async fn renew_answer(
        &self,
        conversation: &ConversationId,
        lease: &AnswerLease,
        ttl: Duration,
    ) -> Result<bool, StoreError>;

    /// Gives back the lease of `stream_id`. Does nothing when another answer holds it.
    async fn release_answer(
        &self,
        conversation: &ConversationId,
        stream_id: &StreamId,
    ) -> Result<(), StoreError>;

    /// The answer holding an unexpired lease on `conversation`, with the last `seq` recorded.
    async fn active_answer(
        &self,
        conversation: &ConversationId,
    ) -> Result<Option<AnswerLease>, StoreError>;
}

#[async_trait]
impl<T: AnswerLeases + ?Sized> AnswerLeases for std::sync::Arc<T> {
    async fn claim_answer(
        &self,
        conversation: &ConversationId,
        stream_id: &StreamId,
        ttl: Duration,
    ) -> Result<bool, StoreError> {
        (**self).claim_answer(conversation, stream_id, ttl).await
    }
    async fn renew_answer(
        &self,
        conversation: &ConversationId,
        lease: &AnswerLease,
        ttl: Duration,
    ) -> Result<bool, StoreError> {
        (**self).renew_answer(conversation, lease, ttl).await
    }
    async fn release_answer(
        &self,
        conversation: &ConversationId,
        stream_id: &StreamId,
    ) -> Result<(), StoreError> {
        (**self).release_answer(conversation, stream_id).await
    }
    async fn active_answer(
        &self,
        conversation: &ConversationId,
    ) -> Result<Option<AnswerLease>, StoreError> {
        (**self).active_answer(conversation).await
    }
}
