//! [`HistoryTree`]: one conversation's messages as a tree, with its active branch.

use std::collections::{BTreeMap, HashMap, VecDeque};

use marie_core::{ChatMessage, HistoryQuery, MessageId};

/// A conversation's messages (every branch) and its active branch.
///
/// The active branch is kept as a path, so that a page of it is a slice: reading the last
/// page of a 100,000-message conversation costs what reading a page costs.
#[derive(Debug, Default)]
pub(super) struct HistoryTree {
    /// Every message, by id (ids are time-ordered: the first is the oldest).
    nodes: BTreeMap<MessageId, Node>,
    /// The children of each message (`None`: the first messages), in the order they came.
    children: HashMap<Option<MessageId>, Vec<MessageId>>,
    /// The active branch, oldest first: `path[i]` is at depth `depth(path[0]) + i`.
    path: VecDeque<MessageId>,
}

#[derive(Debug)]
struct Node {
    message: ChatMessage,
    /// How many ancestors the store holds of it.
    depth: usize,
}

impl HistoryTree {
    /// Adds `message` after its parent and makes the branch through it the active one.
    /// A message already held is replaced in place.
    pub(super) fn insert(&mut self, mut message: ChatMessage) {
        message.siblings = Vec::new();
        let id = message.message_id.clone();
        if let Some(node) = self.nodes.get_mut(&id) {
            node.message = message;
            return;
        }
        let parent = message.parent_id.clone();
        let depth = parent
            .as_ref()
            .and_then(|p| self.nodes.get(p))
            .map_or(0, |p| p.depth + 1);
        self.children.entry(parent).or_default().push(id.clone());
        self.nodes.insert(id.clone(), Node { message, depth });
        self.activate(&id);
    }

    /// Makes the path end at `id`: keeps the path up to `id`'s nearest ancestor on it, then
    /// the rest of `id`'s ancestors and `id`. Usually the parent is the path's last message,
    /// and this is one push.
    fn activate(&mut self, id: &MessageId) {
        let mut chain = Vec::new();
        let mut at = Some(id.clone());
        let mut kept = None;
        while let Some(current) = at {
            if let Some(index) = self.path_index(&current) {
                kept = Some(index + 1);
                break;
            }
            at = self
                .nodes
                .get(&current)
                .and_then(|n| n.message.parent_id.clone());
            chain.push(current);
        }
        self.path.truncate(kept.unwrap_or(0));
        self.path.extend(chain.into_iter().rev());
    }

    /// Where `id` is on the active branch, if it is.
    fn path_index(&self, id: &MessageId) -> Option<usize> {
        let depth = self.nodes.get(id)?.depth;
        let base = self.nodes.get(self.path.front()?)?.depth;
        let index = depth.checked_sub(base)?;
        (self.path.get(index) == Some(id)).then_some(index)
    }

    /// The newest `query.limit` messages of the active branch before `query.before`, oldest
    /// first, each as `copy` makes it from the message and its siblings (empty when none).
    pub(super) fn page<T>(
        &self,
        query: &HistoryQuery,
        copy: impl Fn(&ChatMessage, &[MessageId]) -> T,
    ) -> Vec<T> {
        let end = match &query.before {
            Some(before) => self
                .path_index(before)
                // Ids are time-ordered, so "older than" is "sorts before".
                .unwrap_or_else(|| self.path.partition_point(|m| m < before)),
            None => self.path.len(),
        };
        let start = end.saturating_sub(query.limit);
        self.path
            .range(start..end)
            .filter_map(|id| self.nodes.get(id))
            .map(|node| copy(&node.message, self.siblings(&node.message)))
            .collect()
    }

    /// Every message with the same parent as `message`, when there is more than one.
    fn siblings(&self, message: &ChatMessage) -> &[MessageId] {
        match self.children.get(&message.parent_id) {
            Some(all) if all.len() > 1 => all,
            _ => &[],
        }
    }

    /// A message of any branch.
    pub(super) fn get(&self, id: &MessageId) -> Option<&ChatMessage> {
        self.nodes.get(id).map(|n| &n.message)
    }

    /// The last message of the active branch.
    pub(super) fn leaf(&self) -> Option<&MessageId> {
        self.path.back()
    }

    /// Makes the branch through `id`, down to its newest leaf, the active one; returns the
    /// leaf, or `None` (changing nothing) when there is no such message.
    pub(super) fn switch(&mut self, id: &MessageId) -> Option<MessageId> {
        if !self.nodes.contains_key(id) {
            return None;
        }
        let mut leaf = id.clone();
        while let Some(newest) = self
            .children
            .get(&Some(leaf.clone()))
            .and_then(|kids| kids.last())
        {
            leaf = newest.clone();
        }
        self.activate(&leaf);
        Some(leaf)
    }

    /// Drops the oldest messages beyond `cap`. Their children stay (with a parent no longer
    /// held); the active branch loses them from its start.
    pub(super) fn trim(&mut self, cap: usize) {
        while self.nodes.len() > cap {
            let Some((id, node)) = self.nodes.pop_first() else {
                return;
            };
            if let Some(kids) = self.children.get_mut(&node.message.parent_id) {
                kids.retain(|k| *k != id);
            }
            if self.path.front() == Some(&id) {
                self.path.pop_front();
            }
        }
    }
}
