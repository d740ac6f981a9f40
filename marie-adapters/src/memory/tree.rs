//! [`HistoryTree`]: one conversation's messages as a tree, with its active branch.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use marie_core::{ChatMessage, HistoryQuery, MessageId};

/// Maps keyed by message ids, hashed with foldhash: every send looks ids up under the
/// store's lock (`docs/benchmarks.md`, item 17), and SipHash's resistance to chosen keys is
/// not needed for ids the engine made.
type IdMap<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

/// A conversation's messages (every branch) and its active branch.
///
/// The active branch is kept as a path of the messages themselves (shared with the index
/// by id), so that a page of it is a slice: reading the last page of a 100,000-message
/// conversation costs what reading a page costs, and the prompt of every question
/// (`docs/benchmarks.md`, the hot path) copies its messages without a lookup.
#[derive(Debug, Default)]
pub(super) struct HistoryTree {
    /// Every message, by id.
    nodes: IdMap<MessageId, Arc<Node>>,
    /// The ids in the order they were stored, the oldest first, for [`trim`](Self::trim)
    /// and [`count_after`](Self::count_after).
    order: VecDeque<MessageId>,
    /// The position the next new message is stored at: positions grow in the order
    /// messages are stored (not the order of their ids), and are never reused.
    next_position: u64,
    /// The children of each message (`None`: the first messages), in the order they came.
    children: IdMap<Option<MessageId>, Vec<MessageId>>,
    /// The active branch, oldest first: `path[i]` is at depth `path[0].depth + i`.
    path: VecDeque<Arc<Node>>,
}

#[derive(Debug)]
pub(super) struct Node {
    pub(super) message: ChatMessage,
    /// How many ancestors the store holds of it.
    depth: usize,
    /// Where it was stored among the conversation's messages (kept when it is replaced).
    position: u64,
}

impl HistoryTree {
    /// Adds `message` after its parent and makes the branch through it the active one.
    /// A message already held is replaced in place.
    pub(super) fn insert(&mut self, mut message: ChatMessage) {
        message.siblings = Vec::new();
        let id = message.message_id.clone();
        if let Some(old) = self.nodes.get(&id) {
            let node = Arc::new(Node {
                message,
                depth: old.depth,
                position: old.position,
            });
            if let Some(index) = self.path_index(&id) {
                self.path[index] = node.clone();
            }
            self.nodes.insert(id, node);
            return;
        }
        let parent = message.parent_id.clone();
        let depth = parent
            .as_ref()
            .and_then(|p| self.nodes.get(p))
            .map_or(0, |p| p.depth + 1);
        self.children.entry(parent).or_default().push(id.clone());
        let position = self.next_position;
        self.next_position += 1;
        let node = Arc::new(Node {
            message,
            depth,
            position,
        });
        self.order.push_back(id.clone());
        self.nodes.insert(id, node.clone());
        self.activate(node);
    }

    /// Makes the path end at `node`: keeps the path up to its nearest ancestor on it, then
    /// the rest of its ancestors and it. Usually the parent is the path's last message, and
    /// this is one push.
    fn activate(&mut self, node: Arc<Node>) {
        let mut chain = Vec::new();
        let mut at = Some(node);
        let mut kept = None;
        while let Some(current) = at {
            if let Some(index) = self.path_index(&current.message.message_id) {
                kept = Some(index + 1);
                break;
            }
            at = current
                .message
                .parent_id
                .as_ref()
                .and_then(|p| self.nodes.get(p))
                .cloned();
            chain.push(current);
        }
        self.path.truncate(kept.unwrap_or(0));
        self.path.extend(chain.into_iter().rev());
    }

    /// Where `id` is on the active branch, if it is.
    fn path_index(&self, id: &MessageId) -> Option<usize> {
        let depth = self.nodes.get(id)?.depth;
        let index = depth.checked_sub(self.path.front()?.depth)?;
        self.path
            .get(index)
            .is_some_and(|n| n.message.message_id == *id)
            .then_some(index)
    }

    /// The newest `query.limit` messages of the active branch before `query.before`, oldest
    /// first.
    pub(super) fn page(&self, query: &HistoryQuery) -> impl Iterator<Item = &Node> {
        let end = match &query.before {
            Some(before) => self.path_index(before).unwrap_or_else(|| {
                // Ids are time-ordered, so "older than" is "sorts before".
                self.path
                    .partition_point(|n| n.message.message_id < *before)
            }),
            None => self.path.len(),
        };
        let start = end.saturating_sub(query.limit);
        self.path.range(start..end).map(|n| &**n)
    }

    /// Every message with the same parent as `message`, when there is more than one.
    pub(super) fn siblings(&self, message: &ChatMessage) -> &[MessageId] {
        match self.children.get(&message.parent_id) {
            Some(all) if all.len() > 1 => all,
            _ => &[],
        }
    }

    /// Every message, on every branch, in the order they came.
    pub(super) fn all(&self) -> impl Iterator<Item = &ChatMessage> {
        self.order
            .iter()
            .filter_map(|id| self.nodes.get(id))
            .map(|n| &n.message)
    }

    /// Where `id` was stored among the messages held, if it is held.
    pub(super) fn position(&self, id: &MessageId) -> Option<u64> {
        self.nodes.get(id).map(|n| n.position)
    }

    /// How many messages (on every branch) were stored after position `mark` (all of them
    /// without one), counting at most `max`: from the newest back, so it costs at most `max`
    /// lookups however long the conversation.
    pub(super) fn count_after(&self, mark: Option<u64>, max: usize) -> usize {
        self.order
            .iter()
            .rev()
            .filter_map(|id| self.nodes.get(id))
            .take_while(|n| mark.is_none_or(|mark| n.position > mark))
            .take(max)
            .count()
    }

    /// Drops every message, keeping the positions given out: the next message is stored
    /// after them, so read marks stay behind what comes.
    pub(super) fn clear(&mut self) {
        *self = Self {
            next_position: self.next_position,
            ..Self::default()
        };
    }

    /// A message of any branch.
    pub(super) fn get(&self, id: &MessageId) -> Option<&ChatMessage> {
        self.nodes.get(id).map(|n| &n.message)
    }

    /// The last message of the active branch.
    pub(super) fn leaf(&self) -> Option<&MessageId> {
        self.path.back().map(|n| &n.message.message_id)
    }

    /// Makes the branch through `id`, down to its newest leaf, the active one; returns the
    /// leaf, or `None` (changing nothing) when there is no such message.
    pub(super) fn switch(&mut self, id: &MessageId) -> Option<MessageId> {
        let mut leaf = self.nodes.get(id)?.clone();
        while let Some(newest) = self
            .children
            .get(&Some(leaf.message.message_id.clone()))
            .and_then(|kids| kids.last())
            .and_then(|kid| self.nodes.get(kid))
        {
            leaf = newest.clone();
        }
        let id = leaf.message.message_id.clone();
        self.activate(leaf);
        Some(id)
    }

    /// Drops the oldest messages beyond `cap`. Their children stay (with a parent no longer
    /// held); the active branch loses them from its start.
    pub(super) fn trim(&mut self, cap: usize) {
        while self.nodes.len() > cap {
            let Some(id) = self.order.pop_front() else {
                return;
            };
            let Some(node) = self.nodes.remove(&id) else {
                continue;
            };
            if let Some(kids) = self.children.get_mut(&node.message.parent_id) {
                kids.retain(|k| *k != id);
            }
            if self
                .path
                .front()
                .is_some_and(|n| n.message.message_id == id)
            {
                self.path.pop_front();
            }
        }
    }
}
