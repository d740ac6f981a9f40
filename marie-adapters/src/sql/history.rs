//! History: every message of every branch (`marie_messages`) and each conversation's active
//! branch (`marie_active_path`), the same tree the memory and Redis stores keep.
//!
//! - A message's `depth` is its parent's plus one, or 0 when the store does not hold its
//!   parent (a first message, or one after a message it never had): such a message starts
//!   a branch.
//! - The active branch is kept as a path, `depth → message_id`, from 0 to the leaf, so that a
//!   page of it is a range of `marie_active_path`'s primary key.
//! - Making a message the leaf keeps the path up to its nearest ancestor on it and writes the
//!   rest of its ancestors and it after that: usually its parent is the leaf, and this is one
//!   row. Both the walk up and the walk down (to the newest child at each step) are one
//!   recursive query, however long the branch.

use async_trait::async_trait;
use marie_core::{
    Attachment, ChatMessage, ConversationId, History, HistoryQuery, MessageId, MessagePart,
    MessageRole, PromptMessage, StoreError,
};
use sqlx::any::AnyRow;
use sqlx::{Any, AnyConnection, Row, Transaction};

use super::conversations::LOCK_CONVERSATION;
use super::{Fault, SqlStore, changed, corrupt, from_db, from_json, to_db, to_json};

/// The active branch from `$2` up: `$2` and its ancestors, each with whether it is on the
/// path now, stopping at the first that is. Parameters: `$1` conversation, `$2` message.
const CHAIN: &str = "WITH RECURSIVE chain(message_id, parent_id, depth, on_path) AS (
    SELECT m.message_id, m.parent_id, m.depth,
           EXISTS (SELECT 1 FROM marie_active_path p WHERE p.conversation_id = $1
                   AND p.depth = m.depth AND p.message_id = m.message_id)
    FROM marie_messages m WHERE m.conversation_id = $1 AND m.message_id = $2
  UNION ALL
    SELECT m.message_id, m.parent_id, m.depth,
           EXISTS (SELECT 1 FROM marie_active_path p WHERE p.conversation_id = $1
                   AND p.depth = m.depth AND p.message_id = m.message_id)
    FROM chain c JOIN marie_messages m ON m.conversation_id = $1
         AND m.message_id = c.parent_id AND m.depth = c.depth - 1
    WHERE NOT c.on_path
)";

/// From `$2` down to its newest leaf, the newest child at each step: the leaf's id.
const DESCEND: &str = "WITH RECURSIVE down(message_id, depth) AS (
    SELECT message_id, depth FROM marie_messages WHERE conversation_id = $1 AND message_id = $2
  UNION ALL
    SELECT (SELECT k.message_id FROM marie_messages k
            WHERE k.conversation_id = $1 AND k.parent_id = d.message_id AND k.depth = d.depth + 1
            ORDER BY k.seq DESC LIMIT 1),
           d.depth + 1
    FROM down d WHERE d.message_id IS NOT NULL
)
SELECT message_id FROM down WHERE message_id IS NOT NULL ORDER BY depth DESC LIMIT 1";

/// The newest `$3` messages of the active branch below depth `$2`, newest first, with how
/// many messages share each one's parent.
const PAGE: &str = "SELECT m.message_id, m.parent_id, m.role, m.content, m.user_id,
       m.created_at, m.parts, m.attachments, m.assistant,
       CASE WHEN m.parent_id IS NULL
            THEN (SELECT COUNT(*) FROM marie_messages s
                  WHERE s.conversation_id = $1 AND s.parent_id IS NULL)
            ELSE (SELECT COUNT(*) FROM marie_messages s
                  WHERE s.conversation_id = $1 AND s.parent_id = m.parent_id)
       END AS siblings
FROM marie_active_path p
JOIN marie_messages m ON m.conversation_id = p.conversation_id AND m.message_id = p.message_id
WHERE p.conversation_id = $1 AND p.depth < $2
ORDER BY p.depth DESC
LIMIT $3";

/// [`PAGE`], with only what the model is shown (and the author of a user message).
const PROMPT_PAGE: &str = "SELECT m.role, m.content, m.parts, m.attachments, m.user_id
FROM marie_active_path p
JOIN marie_messages m ON m.conversation_id = p.conversation_id AND m.message_id = p.message_id
WHERE p.conversation_id = $1 AND p.depth < $2
ORDER BY p.depth DESC
LIMIT $3";

/// The depth of `$2` when it is on the active branch.
const DEPTH_ON_PATH: &str = "SELECT p.depth FROM marie_active_path p
JOIN marie_messages m ON m.conversation_id = p.conversation_id AND m.depth = p.depth
     AND m.message_id = p.message_id
WHERE m.conversation_id = $1 AND m.message_id = $2";

const COLUMNS: &str =
    "message_id, parent_id, role, content, user_id, created_at, parts, attachments, assistant";

/// Inserts a message (unless one with its id is held) and returns its parent and depth.
/// `$1`..`$10`: conversation, message, seq, role, content, user, created_at, parts,
/// attachments, assistant; `$parent` gives `parent_id, depth`.
macro_rules! insert_message {
    ($parent:literal) => {
        concat!(
            "INSERT INTO marie_messages (conversation_id, message_id, seq, role, content, \
             user_id, created_at, parts, attachments, assistant, parent_id, depth) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, ",
            $parent,
            ") ON CONFLICT (conversation_id, message_id) DO NOTHING RETURNING parent_id, depth"
        )
    };
}

/// [`insert_message!`] after `$11` (NULL: a first message), at its depth plus one, or 0 when
/// the store does not hold it.
const INSERT_AFTER: &str = insert_message!(
    "$11, COALESCE((SELECT depth + 1 FROM marie_messages \
     WHERE conversation_id = $1 AND message_id = $11), 0)"
);

/// [`insert_message!`] after the active branch's leaf (none, at depth 0, when it is empty),
/// read by the insert itself. The path's depths are its messages' depths.
const INSERT_AFTER_LEAF: &str = insert_message!(
    "(SELECT message_id FROM marie_active_path WHERE conversation_id = $1 \
     ORDER BY depth DESC LIMIT 1), \
     COALESCE((SELECT MAX(depth) + 1 FROM marie_active_path WHERE conversation_id = $1), 0)"
);

/// Where [`SqlStore::append`] puts a new message.
#[derive(Clone, Copy)]
pub(super) enum Place<'a> {
    /// After this message (`None`: a first message), the branch through it made the active
    /// one.
    After(Option<&'a MessageId>),
    /// After the active branch's leaf, read in the same transaction, under the
    /// conversation's lock: it becomes the new leaf.
    Leaf,
}

impl SqlStore {
    /// Stores `message` at `place` in one write transaction, and returns the parent it is
    /// stored after. A message already held is replaced where it is, its place in the tree
    /// unchanged.
    ///
    /// The transaction starts by updating the conversation's row (its `last_seq`), which
    /// serializes the writers of one conversation (a row lock in PostgreSQL, held until the
    /// commit; SQLite's write lock, taken at `BEGIN IMMEDIATE`), so the leaf that
    /// [`Place::Leaf`] reads in a later statement is the one it appends after.
    ///
    /// Statements, between `BEGIN` and `COMMIT`: that update; the insert, which reads the
    /// parent's depth (or the leaf) itself (a message already held takes one more, the
    /// update that replaces it); then the active branch: for [`Place::Leaf`] one insert of
    /// the new leaf, for [`Place::After`] the three of [`activate`].
    pub(super) async fn append(
        &self,
        conversation: &ConversationId,
        message: &ChatMessage,
        place: Place<'_>,
    ) -> Result<Option<MessageId>, Fault> {
        let mut tx = self.begin_write().await?;
        let seq: Option<i64> = sqlx::query_scalar(
            "UPDATE marie_conversations SET last_seq = last_seq + 1 \
             WHERE conversation_id = $1 AND deleted_at IS NULL RETURNING last_seq",
        )
        .bind(conversation.as_str())
        .fetch_optional(&mut *tx)
        .await?;
        let Some(seq) = seq else {
            tx.rollback().await?;
            return Err(StoreError::no_such_conversation().into());
        };
        let parts = (!message.parts.is_empty())
            .then(|| to_json(&message.parts))
            .transpose()?;
        let attachments = (!message.attachments.is_empty())
            .then(|| to_json(&message.attachments))
            .transpose()?;
        let role = message.role.as_str();
        let user = message.user_id.as_ref().map(|u| u.as_str());
        let insert = sqlx::query(match place {
            Place::After(_) => INSERT_AFTER,
            Place::Leaf => INSERT_AFTER_LEAF,
        })
        .bind(conversation.as_str())
        .bind(message.message_id.as_str())
        .bind(seq)
        .bind(role)
        .bind(message.content.as_str())
        .bind(user)
        .bind(to_db(message.created_at))
        .bind(parts.as_deref())
        .bind(attachments.as_deref())
        .bind(message.assistant.as_deref());
        let insert = match place {
            Place::After(parent) => insert.bind(parent.map(|p| p.as_str())),
            Place::Leaf => insert,
        };
        let parent: Option<String> = match insert.fetch_optional(&mut *tx).await? {
            Some(row) => {
                let depth: i64 = row.try_get(1)?;
                match place {
                    Place::After(_) => activate(&mut tx, conversation, &message.message_id).await?,
                    // Its parent is the leaf: the path grows by it.
                    Place::Leaf => {
                        sqlx::query(
                            "INSERT INTO marie_active_path (conversation_id, depth, message_id) \
                             VALUES ($1, $2, $3)",
                        )
                        .bind(conversation.as_str())
                        .bind(depth)
                        .bind(message.message_id.as_str())
                        .execute(&mut *tx)
                        .await?;
                    }
                }
                row.try_get(0)?
            }
            // Held already: replaced where it is.
            None => sqlx::query_scalar(
                "UPDATE marie_messages SET role = $3, content = $4, user_id = $5, \
                 created_at = $6, parts = $7, attachments = $8, assistant = $9 \
                 WHERE conversation_id = $1 AND message_id = $2 RETURNING parent_id",
            )
            .bind(conversation.as_str())
            .bind(message.message_id.as_str())
            .bind(role)
            .bind(message.content.as_str())
            .bind(user)
            .bind(to_db(message.created_at))
            .bind(parts.as_deref())
            .bind(attachments.as_deref())
            .bind(message.assistant.as_deref())
            .fetch_optional(&mut *tx)
            .await?
            .flatten(),
        };
        tx.commit().await?;
        Ok(parent.map(message_id).transpose()?)
    }

    pub(super) async fn switch(
        &self,
        conversation: &ConversationId,
        message: &MessageId,
    ) -> Result<Option<MessageId>, Fault> {
        let mut tx = self.begin_write().await?;
        let locked = sqlx::query(LOCK_CONVERSATION)
            .bind(conversation.as_str())
            .execute(&mut *tx)
            .await?;
        let leaf: Option<String> = if changed(&locked) {
            sqlx::query_scalar(DESCEND)
                .bind(conversation.as_str())
                .bind(message.as_str())
                .fetch_optional(&mut *tx)
                .await?
        } else {
            None
        };
        let Some(leaf) = leaf else {
            tx.rollback().await?;
            return Ok(None);
        };
        let leaf = message_id(leaf)?;
        activate(&mut tx, conversation, &leaf).await?;
        tx.commit().await?;
        Ok(Some(leaf))
    }

    pub(super) async fn page(
        &self,
        conversation: &ConversationId,
        query: &HistoryQuery,
    ) -> Result<Vec<ChatMessage>, Fault> {
        let mut tx = self.begin_read().await?;
        let end = end_depth(&mut tx, conversation, query.before.as_ref()).await?;
        let rows = sqlx::query(PAGE)
            .bind(conversation.as_str())
            .bind(end)
            .bind(limit(query.limit))
            .fetch_all(&mut *tx)
            .await?;
        let mut page = Vec::with_capacity(rows.len());
        // Siblings, per parent: most pages have none, or one or two places that branch.
        let mut siblings: Vec<(Option<MessageId>, Vec<MessageId>)> = Vec::new();
        for row in rows.iter().rev() {
            let mut message = read_message(row)?;
            let count: i64 = row.try_get(9)?;
            if count > 1 {
                let known = siblings.iter().find(|(p, _)| *p == message.parent_id);
                message.siblings = match known {
                    Some((_, ids)) => ids.clone(),
                    None => {
                        let ids =
                            children(&mut tx, conversation, message.parent_id.as_ref()).await?;
                        siblings.push((message.parent_id.clone(), ids.clone()));
                        ids
                    }
                };
            }
            page.push(message);
        }
        tx.commit().await?;
        Ok(page)
    }

    pub(super) async fn prompt_page(
        &self,
        conversation: &ConversationId,
        query: &HistoryQuery,
    ) -> Result<Vec<PromptMessage>, Fault> {
        let rows = if query.before.is_none() {
            // One statement: no transaction needed.
            sqlx::query(PROMPT_PAGE)
                .bind(conversation.as_str())
                .bind(i64::MAX)
                .bind(limit(query.limit))
                .fetch_all(self.pool())
                .await?
        } else {
            let mut tx = self.begin_read().await?;
            let end = end_depth(&mut tx, conversation, query.before.as_ref()).await?;
            let rows = sqlx::query(PROMPT_PAGE)
                .bind(conversation.as_str())
                .bind(end)
                .bind(limit(query.limit))
                .fetch_all(&mut *tx)
                .await?;
            tx.commit().await?;
            rows
        };
        rows.iter()
            .rev()
            .map(|row| {
                let role = role(row.try_get(0)?)?;
                let author: Option<String> = row.try_get(4)?;
                Ok(PromptMessage {
                    role,
                    content: row.try_get(1)?,
                    parts: parts(row.try_get(2)?)?,
                    attachments: attachments(row.try_get(3)?)?,
                    author: author.filter(|_| role == MessageRole::User),
                })
            })
            .collect()
    }

    pub(super) async fn read_message(
        &self,
        conversation: &ConversationId,
        message: &MessageId,
    ) -> Result<Option<ChatMessage>, Fault> {
        let row = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM marie_messages WHERE conversation_id = $1 AND message_id = $2"
        ))
        .bind(conversation.as_str())
        .bind(message.as_str())
        .fetch_optional(self.pool())
        .await?;
        row.as_ref().map(read_message).transpose()
    }

    /// Every message of `conversation`, in the order they came (`seq`), found through the
    /// primary key and sorted.
    async fn read_all(&self, conversation: &ConversationId) -> Result<Vec<ChatMessage>, Fault> {
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM marie_messages WHERE conversation_id = $1 ORDER BY seq"
        ))
        .bind(conversation.as_str())
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(read_message).collect()
    }

    pub(super) async fn leaf(
        &self,
        conversation: &ConversationId,
    ) -> Result<Option<MessageId>, Fault> {
        let leaf: Option<String> = sqlx::query_scalar(
            "SELECT message_id FROM marie_active_path WHERE conversation_id = $1 \
             ORDER BY depth DESC LIMIT 1",
        )
        .bind(conversation.as_str())
        .fetch_optional(self.pool())
        .await?;
        Ok(leaf.map(message_id).transpose()?)
    }
}

/// Makes the active branch end at `id`: keeps it up to `id`'s nearest ancestor on it, and
/// writes the rest of `id`'s ancestors and `id` after that.
async fn activate(
    tx: &mut Transaction<'static, Any>,
    conversation: &ConversationId,
    id: &MessageId,
) -> Result<(), Fault> {
    let fork: Option<i64> = sqlx::query_scalar(&format!(
        "{CHAIN} SELECT MIN(depth) FROM chain WHERE NOT on_path"
    ))
    .bind(conversation.as_str())
    .bind(id.as_str())
    .fetch_one(&mut **tx)
    .await?;
    let Some(fork) = fork else {
        // Already on the path: it becomes the leaf.
        sqlx::query(
            "DELETE FROM marie_active_path WHERE conversation_id = $1 AND depth > \
             (SELECT depth FROM marie_messages WHERE conversation_id = $1 AND message_id = $2)",
        )
        .bind(conversation.as_str())
        .bind(id.as_str())
        .execute(&mut **tx)
        .await?;
        return Ok(());
    };
    sqlx::query("DELETE FROM marie_active_path WHERE conversation_id = $1 AND depth >= $2")
        .bind(conversation.as_str())
        .bind(fork)
        .execute(&mut **tx)
        .await?;
    sqlx::query(&format!(
        "{CHAIN} INSERT INTO marie_active_path (conversation_id, depth, message_id) \
         SELECT $1, depth, message_id FROM chain WHERE NOT on_path"
    ))
    .bind(conversation.as_str())
    .bind(id.as_str())
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Where a page before `before` ends on the active branch (exclusive): at `before` when it
/// is on the branch; otherwise after the last message whose id sorts before it (ids are
/// time-ordered, and so is the branch), found by a binary search over depths, in Rust so
/// that the database's collation plays no part.
async fn end_depth(
    conn: &mut AnyConnection,
    conversation: &ConversationId,
    before: Option<&MessageId>,
) -> Result<i64, Fault> {
    let Some(before) = before else {
        return Ok(i64::MAX);
    };
    let on_path: Option<i64> = sqlx::query_scalar(DEPTH_ON_PATH)
        .bind(conversation.as_str())
        .bind(before.as_str())
        .fetch_optional(&mut *conn)
        .await?;
    if let Some(depth) = on_path {
        return Ok(depth);
    }
    let len: i64 = sqlx::query_scalar(
        "SELECT COALESCE(MAX(depth) + 1, 0) FROM marie_active_path WHERE conversation_id = $1",
    )
    .bind(conversation.as_str())
    .fetch_one(&mut *conn)
    .await?;
    let (mut lo, mut hi) = (0, len);
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        let at: Option<String> = sqlx::query_scalar(
            "SELECT message_id FROM marie_active_path WHERE conversation_id = $1 AND depth = $2",
        )
        .bind(conversation.as_str())
        .bind(mid)
        .fetch_optional(&mut *conn)
        .await?;
        if at.as_deref().is_some_and(|at| at < before.as_str()) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    Ok(lo)
}

/// The children of `parent` (`None`: the first messages), oldest first.
async fn children(
    conn: &mut AnyConnection,
    conversation: &ConversationId,
    parent: Option<&MessageId>,
) -> Result<Vec<MessageId>, Fault> {
    let ids: Vec<String> = match parent {
        Some(parent) => {
            sqlx::query_scalar(
                "SELECT message_id FROM marie_messages \
                 WHERE conversation_id = $1 AND parent_id = $2 ORDER BY seq",
            )
            .bind(conversation.as_str())
            .bind(parent.as_str())
            .fetch_all(&mut *conn)
            .await?
        }
        None => {
            sqlx::query_scalar(
                "SELECT message_id FROM marie_messages \
                 WHERE conversation_id = $1 AND parent_id IS NULL ORDER BY seq",
            )
            .bind(conversation.as_str())
            .fetch_all(&mut *conn)
            .await?
        }
    };
    Ok(ids.into_iter().map(message_id).collect::<Result<_, _>>()?)
}

/// A message from the first nine columns of a row ([`COLUMNS`]).
fn read_message(row: &AnyRow) -> Result<ChatMessage, Fault> {
    let parent: Option<String> = row.try_get(1)?;
    let user: Option<String> = row.try_get(4)?;
    Ok(ChatMessage {
        message_id: message_id(row.try_get(0)?)?,
        role: role(row.try_get(2)?)?,
        content: row.try_get(3)?,
        user_id: user
            .map(|u| marie_core::UserId::parse(u).map_err(corrupt))
            .transpose()?,
        created_at: from_db(row.try_get(5)?),
        parts: parts(row.try_get(6)?)?,
        parent_id: parent.map(message_id).transpose()?,
        siblings: Vec::new(),
        attachments: attachments(row.try_get(7)?)?,
        assistant: row.try_get(8)?,
    })
}

fn message_id(raw: String) -> Result<MessageId, marie_core::StoreError> {
    MessageId::parse(raw).map_err(corrupt)
}

fn role(raw: String) -> Result<MessageRole, marie_core::StoreError> {
    match raw.as_str() {
        "system" => Ok(MessageRole::System),
        "user" => Ok(MessageRole::User),
        "assistant" => Ok(MessageRole::Assistant),
        other => Err(corrupt(format!("unknown message role {other:?}"))),
    }
}

fn parts(raw: Option<String>) -> Result<Vec<MessagePart>, marie_core::StoreError> {
    raw.as_deref().map_or(Ok(Vec::new()), from_json)
}

fn attachments(raw: Option<String>) -> Result<Vec<Attachment>, marie_core::StoreError> {
    raw.as_deref().map_or(Ok(Vec::new()), from_json)
}

fn limit(limit: usize) -> i64 {
    i64::try_from(limit).unwrap_or(i64::MAX)
}

impl SqlStore {
    /// Every message of a conversation, and its active path.
    async fn delete_messages(&self, conversation: &ConversationId) -> Result<(), Fault> {
        let mut tx = self.begin_write().await?;
        for table in ["marie_messages", "marie_active_path"] {
            sqlx::query(&format!("DELETE FROM {table} WHERE conversation_id = $1"))
                .bind(conversation.as_str())
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }
}

#[async_trait]
impl History for SqlStore {
    async fn append_message(
        &self,
        conversation: &ConversationId,
        message: ChatMessage,
    ) -> Result<(), StoreError> {
        let place = Place::After(message.parent_id.as_ref());
        self.run("append_message", || {
            self.append(conversation, &message, place)
        })
        .await
        .map(drop)
    }

    /// One transaction, under the conversation's lock: see `SqlStore::append`.
    async fn append_to_active(
        &self,
        conversation: &ConversationId,
        mut message: ChatMessage,
    ) -> Result<ChatMessage, StoreError> {
        message.siblings = Vec::new();
        message.parent_id = self
            .run("append_to_active", || {
                self.append(conversation, &message, Place::Leaf)
            })
            .await?;
        Ok(message)
    }

    async fn history(
        &self,
        conversation: &ConversationId,
        query: HistoryQuery,
    ) -> Result<Vec<ChatMessage>, StoreError> {
        if query.limit == 0 {
            return Ok(Vec::new());
        }
        self.run("history", || self.page(conversation, &query))
            .await
    }

    /// Reads only what the model is shown of each message, without siblings.
    async fn prompt_history(
        &self,
        conversation: &ConversationId,
        query: HistoryQuery,
    ) -> Result<Vec<PromptMessage>, StoreError> {
        if query.limit == 0 {
            return Ok(Vec::new());
        }
        self.run("prompt_history", || self.prompt_page(conversation, &query))
            .await
    }

    async fn message(
        &self,
        conversation: &ConversationId,
        message: &MessageId,
    ) -> Result<Option<ChatMessage>, StoreError> {
        self.run("message", || self.read_message(conversation, message))
            .await
    }

    async fn active_leaf(
        &self,
        conversation: &ConversationId,
    ) -> Result<Option<MessageId>, StoreError> {
        self.run("active_leaf", || self.leaf(conversation)).await
    }

    async fn switch_branch(
        &self,
        conversation: &ConversationId,
        message: &MessageId,
    ) -> Result<Option<MessageId>, StoreError> {
        self.run("switch_branch", || self.switch(conversation, message))
            .await
    }

    async fn delete_history(&self, conversation: &ConversationId) -> Result<(), StoreError> {
        self.run("delete_history", || self.delete_messages(conversation))
            .await
    }

    async fn all_messages(
        &self,
        conversation: &ConversationId,
    ) -> Result<Vec<ChatMessage>, StoreError> {
        self.run("all_messages", || self.read_all(conversation))
            .await
    }
}

#[cfg(all(test, feature = "sqlite"))]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    /// What a plan line says of one table read: a full scan of a table or index (`SCAN t`),
    /// other than of a recursive query's own rows, is a read that grows with the
    /// conversation.
    fn full_scan(detail: &str) -> bool {
        let Some(rest) = detail.strip_prefix("SCAN ") else {
            return false;
        };
        // The recursive queries' own rows, by name or alias.
        !matches!(
            rest.split_whitespace().next(),
            Some("chain" | "c" | "down" | "d")
        )
    }

    /// Every statement that reads or writes history is a search by key in SQLite's plan,
    /// never a scan: a page of a 100,000-message conversation reads what a page holds.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn history_statements_read_by_key() {
        let dir = std::env::temp_dir().join(format!("marie-sql-plans-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let url = format!("sqlite://{}?mode=rwc", dir.join("plans.db").display());
        let store = SqlStore::connect(&url).await.unwrap();
        let statements = [
            PAGE.to_owned(),
            PROMPT_PAGE.to_owned(),
            DEPTH_ON_PATH.to_owned(),
            DESCEND.to_owned(),
            INSERT_AFTER.to_owned(),
            INSERT_AFTER_LEAF.to_owned(),
            format!("{CHAIN} SELECT MIN(depth) FROM chain WHERE NOT on_path"),
            format!(
                "{CHAIN} INSERT INTO marie_active_path (conversation_id, depth, message_id) \
                 SELECT $1, depth, message_id FROM chain WHERE NOT on_path"
            ),
            "SELECT message_id FROM marie_messages WHERE conversation_id = $1 \
             AND parent_id = $2 ORDER BY seq"
                .to_owned(),
            "SELECT message_id FROM marie_messages WHERE conversation_id = $1 \
             AND parent_id IS NULL ORDER BY seq"
                .to_owned(),
            "SELECT message_id FROM marie_active_path WHERE conversation_id = $1 \
             ORDER BY depth DESC LIMIT 1"
                .to_owned(),
            "SELECT COALESCE(MAX(depth) + 1, 0) FROM marie_active_path WHERE conversation_id = $1"
                .to_owned(),
            "DELETE FROM marie_active_path WHERE conversation_id = $1 AND depth >= $2".to_owned(),
        ];
        for sql in statements {
            // Parameters left unbound are NULL: the plan does not depend on them.
            let rows = sqlx::query(&format!("EXPLAIN QUERY PLAN {sql}"))
                .fetch_all(store.pool())
                .await
                .unwrap();
            let plan: Vec<String> = rows.iter().map(|r| r.try_get(3).unwrap()).collect();
            assert!(
                !plan.iter().any(|d| full_scan(d)),
                "a full scan in\n{sql}\n{plan:#?}"
            );
            assert!(
                plan.iter().any(|d| d.contains("USING")),
                "no key used in\n{sql}\n{plan:#?}"
            );
        }
        store.close().await;
        let _ = std::fs::remove_dir_all(&dir);
    }
}
