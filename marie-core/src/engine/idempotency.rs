//! The outcomes of recent sends, by `client_message_id`: a repeat is answered with the first
//! outcome and starts nothing.

use std::collections::{HashMap, VecDeque};

use crate::{ConversationId, UserId};

use super::SendOutcome;

/// Who sent which `client_message_id` where.
pub(super) type Key = (ConversationId, UserId, String);

/// Outcomes of recent sends, oldest evicted first once the capacity is reached.
#[derive(Default)]
pub(super) struct IdempotencyCache {
    outcomes: HashMap<Key, SendOutcome>,
    order: VecDeque<Key>,
}

impl IdempotencyCache {
    /// The first outcome of the send `key` names, marked `duplicate`: what its repeat gets.
    pub(super) fn repeat(&self, key: &Key) -> Option<SendOutcome> {
        self.outcomes.get(key).map(|first| SendOutcome {
            duplicate: true,
            ..first.clone()
        })
    }

    pub(super) fn insert(&mut self, key: Key, outcome: SendOutcome, capacity: usize) {
        if self.outcomes.insert(key.clone(), outcome).is_none() {
            self.order.push_back(key);
        }
        while self.order.len() > capacity {
            if let Some(old) = self.order.pop_front() {
                self.outcomes.remove(&old);
            }
        }
    }

    pub(super) fn remove(&mut self, key: &Key) {
        self.outcomes.remove(key);
        self.order.retain(|k| k != key);
    }
}
