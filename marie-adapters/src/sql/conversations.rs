//! Conversations, their members and each user's list: `marie_conversations`,
//! `marie_members` (one row per member, with the conversation's last activity and the
//! member's archive flag, indexed by `marie_members_list`), and `marie_reads` (each member's
//! read mark, a `marie_messages.seq`, from which a list item's `unread` is counted).

use async_trait::async_trait;
use marie_core::{
    AnswerPolicy, ConversationChange, ConversationId, ConversationInfo, ConversationPage,
    Conversations, LastMessage, ListCursor, ListQuery, ListedConversation, MessageId, StoreError,
    UserId, now_millis,
};
use sqlx::any::AnyRow;
use sqlx::{Any, Row, Transaction};

use super::{Fault, SqlStore, changed, corrupt, from_db, from_json, search, to_db, to_json};

/// Locks a conversation's row for the rest of the transaction (and, in the messages' case,
/// hands out the next `seq`); no row: no such conversation (or a deleted one).
pub(super) const LOCK_CONVERSATION: &str = "UPDATE marie_conversations SET last_seq = last_seq \
     WHERE conversation_id = $1 AND deleted_at IS NULL";

/// The columns of a conversation's record, in the order [`read_info`] reads them.
const INFO_COLUMNS: &str = "c.conversation_id, c.created_by, c.created_at, c.title, c.model, \
     c.system_prompt, c.updated_at, c.last_message, c.answer_policy";

/// How many messages of the conversation `m.conversation_id` the member `m.user_id` has not
/// read: those stored after their mark (`seq` after the mark's; all of them without one), at
/// most [`ListedConversation::UNREAD_MAX`]: a range of `marie_messages_in_order` cut at that
/// many entries, so a page of a list costs one query, and at most that many index entries
/// per conversation, however long its conversations are. (`ORDER BY seq` makes it a walk
/// of the index that stops at the limit: without it PostgreSQL may pick a bitmap scan,
/// which reads the whole range before the limit applies.)
fn unread() -> String {
    format!(
        "(SELECT COUNT(*) FROM (SELECT 1 FROM marie_messages u \
         WHERE u.conversation_id = m.conversation_id AND u.seq > COALESCE(\
           (SELECT r.seq FROM marie_reads r \
            WHERE r.conversation_id = m.conversation_id AND r.user_id = m.user_id), 0) \
         ORDER BY u.seq LIMIT {}) after_mark)",
        ListedConversation::UNREAD_MAX
    )
}

/// A conversation's record from a row of [`INFO_COLUMNS`] (and more after them).
fn read_info(row: &AnyRow) -> Result<ConversationInfo, Fault> {
    let last: Option<String> = row.try_get(7)?;
    Ok(ConversationInfo {
        conversation_id: ConversationId::parse(row.try_get::<String, _>(0)?).map_err(corrupt)?,
        created_by: user_id(row.try_get(1)?)?,
        created_at: from_db(row.try_get(2)?),
        title: row.try_get(3)?,
        model: row.try_get(4)?,
        system_prompt: row.try_get(5)?,
        updated_at: from_db(row.try_get(6)?),
        last_message: last.as_deref().map(from_json).transpose()?,
        answer_policy: AnswerPolicy::parse(&row.try_get::<String, _>(8)?).map_err(corrupt)?,
    })
}

/// `text` as a `LIKE` pattern that matches it anywhere, its wildcards escaped (`\`).
fn contains_pattern(text: &str) -> String {
    let mut pattern = String::with_capacity(text.len() + 2);
    pattern.push('%');
    for c in text.to_lowercase().chars() {
        if matches!(c, '%' | '_' | '\\') {
            pattern.push('\\');
        }
        pattern.push(c);
    }
    pattern.push('%');
    pattern
}

impl SqlStore {
    pub(super) async fn create(&self, info: &ConversationInfo) -> Result<bool, Fault> {
        let mut tx = self.begin_write().await?;
        // A deleted conversation keeps its row: its id conflicts, and is never used again.
        let created = sqlx::query(
            "INSERT INTO marie_conversations (conversation_id, created_by, created_at, title, \
             model, system_prompt, updated_at, answer_policy) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
             ON CONFLICT (conversation_id) DO NOTHING",
        )
        .bind(info.conversation_id.as_str())
        .bind(info.created_by.as_str())
        .bind(to_db(info.created_at))
        .bind(info.title.as_deref())
        .bind(info.model.as_deref())
        .bind(info.system_prompt.as_deref())
        .bind(to_db(info.updated_at))
        .bind(info.answer_policy.as_str())
        .execute(&mut *tx)
        .await?;
        if !changed(&created) {
            tx.rollback().await?;
            return Ok(false);
        }
        sqlx::query(
            "INSERT INTO marie_members (conversation_id, user_id, position, updated_at) \
             VALUES ($1, $2, 0, $3)",
        )
        .bind(info.conversation_id.as_str())
        .bind(info.created_by.as_str())
        .bind(to_db(info.updated_at))
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(true)
    }

    pub(super) async fn read_conversation(
        &self,
        conversation: &ConversationId,
    ) -> Result<Option<ConversationInfo>, Fault> {
        let row = sqlx::query(&format!(
            "SELECT {INFO_COLUMNS} FROM marie_conversations c \
             WHERE c.conversation_id = $1 AND c.deleted_at IS NULL"
        ))
        .bind(conversation.as_str())
        .fetch_optional(self.pool())
        .await?;
        row.as_ref().map(read_info).transpose()
    }

    pub(super) async fn grant(
        &self,
        conversation: &ConversationId,
        user: &UserId,
    ) -> Result<(), Fault> {
        let mut tx = self.begin_write().await?;
        let locked = sqlx::query(LOCK_CONVERSATION)
            .bind(conversation.as_str())
            .execute(&mut *tx)
            .await?;
        if !changed(&locked) {
            tx.rollback().await?;
            return Err(StoreError::no_such_conversation().into());
        }
        // The conversation's row is locked: no other grant takes the next position
        // meanwhile. Positions are never reused, so that removals keep the order.
        sqlx::query(
            "INSERT INTO marie_members (conversation_id, user_id, position, updated_at) \
             VALUES ($1, $2, \
               (SELECT COALESCE(MAX(position) + 1, 0) FROM marie_members WHERE conversation_id = $1), \
               (SELECT updated_at FROM marie_conversations WHERE conversation_id = $1)) \
             ON CONFLICT (conversation_id, user_id) DO NOTHING",
        )
        .bind(conversation.as_str())
        .bind(user.as_str())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    pub(super) async fn is_member(
        &self,
        conversation: &ConversationId,
        user: &UserId,
    ) -> Result<bool, Fault> {
        let row =
            sqlx::query("SELECT 1 FROM marie_members WHERE conversation_id = $1 AND user_id = $2")
                .bind(conversation.as_str())
                .bind(user.as_str())
                .fetch_optional(self.pool())
                .await?;
        Ok(row.is_some())
    }

    pub(super) async fn read_members(
        &self,
        conversation: &ConversationId,
    ) -> Result<Vec<UserId>, Fault> {
        let rows = sqlx::query(
            "SELECT user_id FROM marie_members WHERE conversation_id = $1 \
             ORDER BY position, user_id",
        )
        .bind(conversation.as_str())
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|row| Ok(user_id(row.try_get(0)?)?))
            .collect()
    }

    /// Moves the conversation's `updated_at` (and its members' copies) forward to `at`,
    /// never back, in `tx`.
    async fn advance(
        tx: &mut Transaction<'static, Any>,
        conversation: &ConversationId,
        at: u64,
    ) -> Result<(), Fault> {
        for table in ["marie_conversations", "marie_members"] {
            sqlx::query(&format!(
                "UPDATE {table} SET updated_at = $2 WHERE conversation_id = $1 AND updated_at < $2"
            ))
            .bind(conversation.as_str())
            .bind(to_db(at))
            .execute(&mut **tx)
            .await?;
        }
        Ok(())
    }

    pub(super) async fn record_activity(
        &self,
        conversation: &ConversationId,
        last: &LastMessage,
    ) -> Result<(), Fault> {
        let mut tx = self.begin_write().await?;
        let updated = sqlx::query(
            "UPDATE marie_conversations SET last_message = $2 \
             WHERE conversation_id = $1 AND deleted_at IS NULL",
        )
        .bind(conversation.as_str())
        .bind(to_json(last)?)
        .execute(&mut *tx)
        .await?;
        if changed(&updated) {
            Self::advance(&mut tx, conversation, last.created_at).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    pub(super) async fn change(
        &self,
        conversation: &ConversationId,
        change: &ConversationChange,
        at: u64,
    ) -> Result<Option<ConversationInfo>, Fault> {
        let mut tx = self.begin_write().await?;
        let locked = sqlx::query(LOCK_CONVERSATION)
            .bind(conversation.as_str())
            .execute(&mut *tx)
            .await?;
        if !changed(&locked) {
            tx.rollback().await?;
            return Ok(None);
        }
        let row = sqlx::query(&format!(
            "SELECT {INFO_COLUMNS} FROM marie_conversations c WHERE c.conversation_id = $1"
        ))
        .bind(conversation.as_str())
        .fetch_one(&mut *tx)
        .await?;
        let mut info = read_info(&row)?;
        change.apply(&mut info, at);
        sqlx::query(
            "UPDATE marie_conversations SET title = $2, model = $3, system_prompt = $4, \
             answer_policy = $5 WHERE conversation_id = $1",
        )
        .bind(conversation.as_str())
        .bind(info.title.as_deref())
        .bind(info.model.as_deref())
        .bind(info.system_prompt.as_deref())
        .bind(info.answer_policy.as_str())
        .execute(&mut *tx)
        .await?;
        Self::advance(&mut tx, conversation, info.updated_at).await?;
        tx.commit().await?;
        Ok(Some(info))
    }

    /// One range of `marie_members_list`: the user's rows after the cursor, newest first,
    /// each joined with its conversation's record and counted its unread messages
    /// ([`unread`]).
    pub(super) async fn list(
        &self,
        user: &UserId,
        query: &ListQuery,
    ) -> Result<ConversationPage, Fault> {
        let mut sql = format!(
            "SELECT {INFO_COLUMNS}, {} FROM marie_members m \
             JOIN marie_conversations c ON c.conversation_id = m.conversation_id \
             WHERE m.user_id = $1 AND m.archived = $2 AND c.deleted_at IS NULL",
            unread()
        );
        let mut next = 3;
        if query.before.is_some() {
            sql.push_str(&format!(
                " AND (m.updated_at < ${next} OR (m.updated_at = ${next} AND m.conversation_id < ${}))",
                next + 1
            ));
            next += 2;
        }
        // The title holds the text, or a message holds its words.
        let words = query
            .query
            .as_deref()
            .and_then(|text| search::text_query(text, self.inner.backend));
        if query.query.is_some() {
            sql.push_str(&format!(" AND (LOWER(c.title) LIKE ${next} ESCAPE '\\'"));
            next += 1;
            if words.is_some() {
                sql.push_str(&format!(
                    " OR {}",
                    search::text_condition(self.inner.backend, next)
                ));
                next += 1;
            }
            sql.push(')');
        }
        sql.push_str(&format!(
            " ORDER BY m.updated_at DESC, m.conversation_id DESC LIMIT ${next}"
        ));
        let mut q = sqlx::query(&sql)
            .bind(user.as_str())
            .bind(i64::from(query.archived));
        if let Some(before) = &query.before {
            q = q
                .bind(to_db(before.updated_at))
                .bind(before.conversation_id.as_str());
        }
        if let Some(text) = &query.query {
            q = q.bind(contains_pattern(text));
        }
        if let Some(words) = words {
            q = q.bind(words);
        }
        let limit = i64::try_from(query.limit.saturating_add(1)).unwrap_or(i64::MAX);
        let rows = q.bind(limit).fetch_all(self.pool()).await?;
        let mut conversations = rows
            .iter()
            .map(|row| {
                let unread: i64 = row.try_get(9)?;
                Ok(ListedConversation {
                    info: read_info(row)?,
                    archived: query.archived,
                    unread: from_db(unread),
                })
            })
            .collect::<Result<Vec<_>, Fault>>()?;
        let more = conversations.len() > query.limit;
        conversations.truncate(query.limit);
        Ok(ConversationPage {
            next_before: more
                .then(|| conversations.last().map(|c| ListCursor::after(&c.info)))
                .flatten(),
            conversations,
        })
    }

    pub(super) async fn archive(
        &self,
        conversation: &ConversationId,
        user: &UserId,
        archived: bool,
    ) -> Result<bool, Fault> {
        let done = sqlx::query(
            "UPDATE marie_members SET archived = $3 WHERE conversation_id = $1 AND user_id = $2",
        )
        .bind(conversation.as_str())
        .bind(user.as_str())
        .bind(i64::from(archived))
        .execute(self.pool())
        .await?;
        Ok(changed(&done))
    }

    pub(super) async fn archived(
        &self,
        conversation: &ConversationId,
        user: &UserId,
    ) -> Result<bool, Fault> {
        let row = sqlx::query(
            "SELECT 1 FROM marie_members WHERE conversation_id = $1 AND user_id = $2 \
             AND archived = 1",
        )
        .bind(conversation.as_str())
        .bind(user.as_str())
        .fetch_optional(self.pool())
        .await?;
        Ok(row.is_some())
    }

    /// Their read mark goes with them.
    pub(super) async fn remove(
        &self,
        conversation: &ConversationId,
        user: &UserId,
    ) -> Result<bool, Fault> {
        let mut tx = self.begin_write().await?;
        let done = sqlx::query(
            "DELETE FROM marie_members WHERE conversation_id = $1 AND user_id = $2 \
             AND user_id <> (SELECT created_by FROM marie_conversations WHERE conversation_id = $1)",
        )
        .bind(conversation.as_str())
        .bind(user.as_str())
        .execute(&mut *tx)
        .await?;
        if !changed(&done) {
            tx.rollback().await?;
            return Ok(false);
        }
        sqlx::query("DELETE FROM marie_reads WHERE conversation_id = $1 AND user_id = $2")
            .bind(conversation.as_str())
            .bind(user.as_str())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Moves the member's mark forward to `message`, never back, by where messages were
    /// stored (`seq`, as [`unread`] counts), in one statement: nothing when `user` is no
    /// member (of a conversation that exists) or the conversation holds no such message.
    /// Then reads the mark held, in the same transaction.
    pub(super) async fn mark(
        &self,
        conversation: &ConversationId,
        user: &UserId,
        message: &MessageId,
    ) -> Result<Option<MessageId>, Fault> {
        let mut tx = self.begin_write().await?;
        sqlx::query(
            "INSERT INTO marie_reads (conversation_id, user_id, message_id, seq) \
             SELECT $1, $2, msg.message_id, msg.seq FROM marie_messages msg \
             WHERE msg.conversation_id = $1 AND msg.message_id = $3 \
             AND EXISTS (SELECT 1 FROM marie_members \
               WHERE conversation_id = $1 AND user_id = $2) \
             ON CONFLICT (conversation_id, user_id) DO UPDATE \
             SET message_id = excluded.message_id, seq = excluded.seq \
             WHERE marie_reads.seq < excluded.seq",
        )
        .bind(conversation.as_str())
        .bind(user.as_str())
        .bind(message.as_str())
        .execute(&mut *tx)
        .await?;
        let held: Option<String> = sqlx::query_scalar(
            "SELECT message_id FROM marie_reads WHERE conversation_id = $1 AND user_id = $2",
        )
        .bind(conversation.as_str())
        .bind(user.as_str())
        .fetch_optional(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(held
            .map(|id| MessageId::parse(id).map_err(corrupt))
            .transpose()?)
    }

    pub(super) async fn delete(&self, conversation: &ConversationId) -> Result<bool, Fault> {
        let mut tx = self.begin_write().await?;
        let marked = sqlx::query(
            "UPDATE marie_conversations SET deleted_at = $2, title = NULL, system_prompt = NULL, \
             last_message = NULL WHERE conversation_id = $1 AND deleted_at IS NULL",
        )
        .bind(conversation.as_str())
        .bind(to_db(now_millis()))
        .execute(&mut *tx)
        .await?;
        if !changed(&marked) {
            tx.rollback().await?;
            return Ok(false);
        }
        for table in ["marie_members", "marie_reads"] {
            sqlx::query(&format!("DELETE FROM {table} WHERE conversation_id = $1"))
                .bind(conversation.as_str())
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(true)
    }
}

fn user_id(raw: String) -> Result<UserId, StoreError> {
    UserId::parse(raw).map_err(corrupt)
}

#[async_trait]
impl Conversations for SqlStore {
    async fn create_conversation(&self, info: ConversationInfo) -> Result<bool, StoreError> {
        self.run("create_conversation", || self.create(&info)).await
    }

    async fn conversation(
        &self,
        conversation: &ConversationId,
    ) -> Result<Option<ConversationInfo>, StoreError> {
        self.run("conversation", || self.read_conversation(conversation))
            .await
    }

    async fn grant_access(
        &self,
        conversation: &ConversationId,
        user: &UserId,
    ) -> Result<(), StoreError> {
        self.run("grant_access", || self.grant(conversation, user))
            .await
    }

    async fn has_access(
        &self,
        conversation: &ConversationId,
        user: &UserId,
    ) -> Result<bool, StoreError> {
        self.run("has_access", || self.is_member(conversation, user))
            .await
    }

    async fn members(&self, conversation: &ConversationId) -> Result<Vec<UserId>, StoreError> {
        self.run("members", || self.read_members(conversation))
            .await
    }

    async fn touch(
        &self,
        conversation: &ConversationId,
        last_message: &LastMessage,
    ) -> Result<(), StoreError> {
        self.run("touch", || self.record_activity(conversation, last_message))
            .await
    }

    async fn update_conversation(
        &self,
        conversation: &ConversationId,
        change: &ConversationChange,
        at: u64,
    ) -> Result<Option<ConversationInfo>, StoreError> {
        self.run("update_conversation", || {
            self.change(conversation, change, at)
        })
        .await
    }

    async fn list_conversations(
        &self,
        user: &UserId,
        query: &ListQuery,
    ) -> Result<ConversationPage, StoreError> {
        self.run("list_conversations", || self.list(user, query))
            .await
    }

    async fn set_archived(
        &self,
        conversation: &ConversationId,
        user: &UserId,
        archived: bool,
    ) -> Result<bool, StoreError> {
        self.run("set_archived", || {
            self.archive(conversation, user, archived)
        })
        .await
    }

    async fn is_archived(
        &self,
        conversation: &ConversationId,
        user: &UserId,
    ) -> Result<bool, StoreError> {
        self.run("is_archived", || self.archived(conversation, user))
            .await
    }

    async fn remove_member(
        &self,
        conversation: &ConversationId,
        user: &UserId,
    ) -> Result<bool, StoreError> {
        self.run("remove_member", || self.remove(conversation, user))
            .await
    }

    async fn delete_conversation(&self, conversation: &ConversationId) -> Result<bool, StoreError> {
        self.run("delete_conversation", || self.delete(conversation))
            .await
    }

    async fn mark_read(
        &self,
        conversation: &ConversationId,
        user: &UserId,
        message: &MessageId,
    ) -> Result<Option<MessageId>, StoreError> {
        self.run("mark_read", || self.mark(conversation, user, message))
            .await
    }
}

#[cfg(all(test, feature = "sqlite"))]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    /// A list item's `unread` is a range of `marie_messages_in_order` after its mark, found
    /// by `marie_reads`' key, in SQLite's plan: a page of a list costs what the page holds
    /// (and at most `UNREAD_MAX` index entries per conversation), not what its conversations
    /// hold.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn unread_is_a_range_of_the_messages_key() {
        let dir = std::env::temp_dir().join(format!("marie-sql-unread-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let url = format!("sqlite://{}?mode=rwc", dir.join("plans.db").display());
        let store = SqlStore::connect(&url).await.unwrap();
        let rows = sqlx::query(&format!(
            "EXPLAIN QUERY PLAN SELECT {INFO_COLUMNS}, {} FROM marie_members m \
             JOIN marie_conversations c ON c.conversation_id = m.conversation_id \
             WHERE m.user_id = $1 AND m.archived = $2 AND c.deleted_at IS NULL \
             ORDER BY m.updated_at DESC, m.conversation_id DESC LIMIT $3",
            unread()
        ))
        .fetch_all(store.pool())
        .await
        .unwrap();
        let plan: Vec<String> = rows.iter().map(|r| r.try_get(3).unwrap()).collect();
        let uses = |table: &str, key: &str| {
            plan.iter()
                .any(|d| d.starts_with("SEARCH ") && d.contains(table) && d.contains(key))
        };
        assert!(
            uses("marie_messages_in_order", "(conversation_id=? AND seq>?)"),
            "{plan:#?}"
        );
        assert!(
            uses("marie_reads", "(conversation_id=? AND user_id=?)"),
            "{plan:#?}"
        );
        // The only scan is of the cut range's own rows (at most `UNREAD_MAX`), not a table.
        assert!(
            !plan
                .iter()
                .any(|d| d.starts_with("SCAN ") && d != "SCAN after_mark"),
            "a full scan in {plan:#?}"
        );
        assert!(
            !plan.iter().any(|d| d.contains("TEMP B-TREE")),
            "a sort in {plan:#?}"
        );
        store.close().await;
        let _ = std::fs::remove_dir_all(&dir);
    }
}
