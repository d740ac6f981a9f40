//! [`AnswerLeases`] in memory.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use marie_core::{AnswerLease, AnswerLeases, ConversationId, StoreError, StreamId};

use super::{MemoryStore, lock};

/// Leases of running answers, with the instant each lapses.
#[derive(Debug, Default)]
pub(super) struct Leases(HashMap<ConversationId, (AnswerLease, Instant)>);

impl Leases {
    /// The unexpired lease on `conversation`, dropping a lapsed one.
    fn unexpired(&mut self, conversation: &ConversationId) -> Option<&AnswerLease> {
        if self
            .0
            .get(conversation)
            .is_some_and(|(_, until)| *until <= Instant::now())
        {
            self.0.remove(conversation);
        }
        self.0.get(conversation).map(|(lease, _)| lease)
    }
}

#[async_trait]
impl AnswerLeases for MemoryStore {
    async fn claim_answer(
        &self,
        conversation: &ConversationId,
        stream_id: &StreamId,
        ttl: Duration,
    ) -> Result<bool, StoreError> {
        let mut leases = lock(&self.tables.leases);
        if leases.unexpired(conversation).is_some() {
            return Ok(false);
        }
        let lease = AnswerLease {
            stream_id: stream_id.clone(),
            seq: 0,
        };
        leases
            .0
            .insert(conversation.clone(), (lease, Instant::now() + ttl));
        Ok(true)
    }

    async fn renew_answer(
        &self,
        conversation: &ConversationId,
        lease: &AnswerLease,
        ttl: Duration,
    ) -> Result<bool, StoreError> {
        let mut leases = lock(&self.tables.leases);
        if leases
            .unexpired(conversation)
            .is_some_and(|held| held.stream_id != lease.stream_id)
        {
            return Ok(false);
        }
        leases
            .0
            .insert(conversation.clone(), (lease.clone(), Instant::now() + ttl));
        Ok(true)
    }

    async fn release_answer(
        &self,
        conversation: &ConversationId,
        stream_id: &StreamId,
    ) -> Result<(), StoreError> {
        let mut leases = lock(&self.tables.leases);
        if leases
            .0
            .get(conversation)
            .is_some_and(|(held, _)| held.stream_id == *stream_id)
        {
            leases.0.remove(conversation);
        }
        Ok(())
    }

    async fn active_answer(
        &self,
        conversation: &ConversationId,
    ) -> Result<Option<AnswerLease>, StoreError> {
        Ok(lock(&self.tables.leases).unexpired(conversation).cloned())
    }
}
