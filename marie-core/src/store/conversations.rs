//! [`Conversations`]: which conversations exist, who may enter them, and each user's list of
//! them.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::{ChatMessage, ConversationId, Error, MessageRole, StoreError, UserId};

/// A conversation's record: who created it and when, its name and settings, and when it was
/// last active.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConversationInfo {
    /// The conversation.
    pub conversation_id: ConversationId,
    /// Its creator (its owner), who may always join and invite, and may delete it.
    pub created_by: UserId,
    /// Milliseconds since the Unix epoch.
    pub created_at: u64,
    /// Its title, once it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    /// The model its answers use (one the app offers); `None`: the app's default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// Its own instructions for the model, given after the app's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system_prompt: Option<String>,
    /// Which user messages the model answers (`docs/protocol.md` section 10).
    #[serde(default, skip_serializing_if = "AnswerPolicy::is_always")]
    pub answer_policy: AnswerPolicy,
    /// When it was last active (its last message, or a change of its title or settings),
    /// in milliseconds since the Unix epoch: what a list of conversations is ordered by.
    #[serde(default)]
    pub updated_at: u64,
    /// Its last message, in short, once it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_message: Option<LastMessage>,
}

impl ConversationInfo {
    /// A new conversation of `created_by`, created at `at` (milliseconds since the Unix
    /// epoch), without a title or settings.
    pub fn new(conversation_id: ConversationId, created_by: UserId, at: u64) -> Self {
        Self {
            conversation_id,
            created_by,
            created_at: at,
            title: None,
            model: None,
            system_prompt: None,
            answer_policy: AnswerPolicy::Always,
            updated_at: at,
            last_message: None,
        }
    }
}

/// Which user messages of a conversation the model answers (`answer_policy`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum AnswerPolicy {
    /// Every one (a conversation with an assistant; the default).
    #[default]
    Always,
    /// Only one that mentions an assistant, `@name`: that assistant answers it (a group of
    /// people who call an assistant in when they want one).
    Mention,
    /// None: people talk to each other (`send_message.answer:true` is refused).
    Never,
}

impl AnswerPolicy {
    /// The policy as the wire spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Always => "always",
            Self::Mention => "mention",
            Self::Never => "never",
        }
    }

    /// Reads the wire's spelling: `bad_request` naming the choices otherwise.
    pub fn parse(raw: &str) -> Result<Self, Error> {
        match raw {
            "always" => Ok(Self::Always),
            "mention" => Ok(Self::Mention),
            "never" => Ok(Self::Never),
            other => Err(Error::BadRequest(format!(
                "`answer_policy` must be \"always\", \"mention\" or \"never\", not {other:?}"
            ))),
        }
    }

    fn is_always(&self) -> bool {
        *self == Self::Always
    }
}

/// A conversation's last message, as its list item shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LastMessage {
    /// Who wrote it.
    pub role: MessageRole,
    /// Its first [`LastMessage::PREVIEW_CHARS`] characters.
    pub preview: String,
    /// Milliseconds since the Unix epoch.
    pub created_at: u64,
}

impl LastMessage {
    /// How much of a message its preview keeps, in characters.
    pub const PREVIEW_CHARS: usize = 140;

    /// The preview of `message`.
    pub fn of(message: &ChatMessage) -> Self {
        Self {
            role: message.role,
            preview: message.content.chars().take(Self::PREVIEW_CHARS).collect(),
            created_at: message.created_at,
        }
    }
}

/// A change of a conversation's title or settings: the fields given are set (an empty
/// `model` or `system_prompt` clears it), the others kept.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ConversationChange {
    /// A new title.
    pub title: Option<String>,
    /// A new model (`""`: the app's default).
    pub model: Option<String>,
    /// New instructions (`""`: none).
    pub system_prompt: Option<String>,
    /// A new answer policy.
    pub answer_policy: Option<AnswerPolicy>,
}

impl ConversationChange {
    /// `info` with the change applied, active at `at`.
    pub fn apply(&self, info: &mut ConversationInfo, at: u64) {
        let set = |field: &mut Option<String>, to: &Option<String>| {
            if let Some(to) = to {
                *field = (!to.is_empty()).then(|| to.clone());
            }
        };
        if let Some(title) = &self.title {
            info.title = Some(title.clone());
        }
        set(&mut info.model, &self.model);
        set(&mut info.system_prompt, &self.system_prompt);
        if let Some(policy) = self.answer_policy {
            info.answer_policy = policy;
        }
        info.updated_at = info.updated_at.max(at);
    }
}

/// Where a page of a user's conversations ends: the next page starts after it. Opaque to
/// clients (`next_before` on the wire).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ListCursor {
    /// The `updated_at` of the last conversation of the page.
    pub updated_at: u64,
    /// Its id (conversations active at the same moment are ordered by id, descending).
    pub conversation_id: ConversationId,
}

impl ListCursor {
    /// The cursor after `info`.
    pub fn after(info: &ConversationInfo) -> Self {
        Self {
            updated_at: info.updated_at,
            conversation_id: info.conversation_id.clone(),
        }
    }

    /// Its form on the wire.
    pub fn encode(&self) -> String {
        format!("{}.{}", self.updated_at, self.conversation_id)
    }

    /// Reads a cursor a client gives back: `bad_request` when it is not one.
    pub fn parse(raw: &str) -> Result<Self, Error> {
        let bad = || Error::BadRequest("`before` is not a cursor this server gave".into());
        let (at, id) = raw.split_once('.').ok_or_else(bad)?;
        Ok(Self {
            updated_at: at.parse().map_err(|_| bad())?,
            conversation_id: ConversationId::parse(id).map_err(|_| bad())?,
        })
    }

    /// Whether `info` comes after this cursor in a list (most recently active first).
    pub fn precedes(&self, info: &ConversationInfo) -> bool {
        (info.updated_at, &info.conversation_id) < (self.updated_at, &self.conversation_id)
    }
}

/// Which page of a user's conversations to read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListQuery {
    /// Only those after this cursor.
    pub before: Option<ListCursor>,
    /// At most this many.
    pub limit: usize,
    /// Only those whose title holds this text, compared case-insensitively (and, on a store
    /// that can search them, those with a message that holds it).
    pub query: Option<String>,
    /// The user's archived conversations instead of the others.
    pub archived: bool,
}

/// One conversation of a user's list.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListedConversation {
    /// Its record.
    pub info: ConversationInfo,
    /// Whether the user archived it.
    pub archived: bool,
    /// How many messages were stored in it after the one the user last marked read
    /// ([`Conversations::mark_read`]), in the order they were stored (not the order of their
    /// ids: an answer's id is made when it starts, and it is stored when it ends, after the
    /// messages posted meanwhile); all of them when they never marked one. At most
    /// [`UNREAD_MAX`](Self::UNREAD_MAX): a page of a list counts at most that many messages
    /// per conversation, however long the conversation.
    pub unread: u64,
}

impl ListedConversation {
    /// The most [`unread`](Self::unread) counts: more unread messages than this show as this.
    pub const UNREAD_MAX: u64 = 100;
}

/// A page of a user's conversations, most recently active first.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ConversationPage {
    /// The conversations.
    pub conversations: Vec<ListedConversation>,
    /// Where the next page starts; `None` on the last page.
    pub next_before: Option<ListCursor>,
}

/// Conversations, their access lists, and each user's list of them.
///
/// The [`AccessPolicy`](crate::AccessPolicy) reads them on every command that names a
/// conversation, so a grant or a removal takes effect at once, on every node.
///
/// Each user's list is an index kept in order of activity (a sorted set, a table index, an
/// ordered map), so that a page of it costs the same for a user with 10 conversations or
/// 100,000: [`touch`](Self::touch) and [`update_conversation`](Self::update_conversation)
/// move a conversation to the top of every member's list.
#[async_trait]
pub trait Conversations: Send + Sync + 'static {
    /// Creates a conversation and grants its creator access. Returns `false`, changing
    /// nothing, when it exists or existed (a deleted conversation's id is never used again).
    async fn create_conversation(&self, info: ConversationInfo) -> Result<bool, StoreError>;

    /// Reads a conversation's record (`None` for one deleted).
    async fn conversation(
        &self,
        conversation: &ConversationId,
    ) -> Result<Option<ConversationInfo>, StoreError>;

    /// Lets `user` join `conversation` (an invite). Idempotent.
    /// [`StoreError::NotFound`] when there is no such conversation.
    async fn grant_access(
        &self,
        conversation: &ConversationId,
        user: &UserId,
    ) -> Result<(), StoreError>;

    /// Whether `user` was granted access to `conversation` (creators always are).
    async fn has_access(
        &self,
        conversation: &ConversationId,
        user: &UserId,
    ) -> Result<bool, StoreError>;

    /// Every user with access to `conversation`, in the order they were let in.
    async fn members(&self, conversation: &ConversationId) -> Result<Vec<UserId>, StoreError>;

    /// Records a message stored in `conversation`: it becomes its `last_message`, and the
    /// conversation the most recently active of its members' lists (an `updated_at` never
    /// goes back). Nothing when there is no such conversation.
    async fn touch(
        &self,
        conversation: &ConversationId,
        last_message: &LastMessage,
    ) -> Result<(), StoreError>;

    /// Changes a conversation's title or settings, active at `at`; its record after the
    /// change, or `None` when there is no such conversation.
    async fn update_conversation(
        &self,
        conversation: &ConversationId,
        change: &ConversationChange,
        at: u64,
    ) -> Result<Option<ConversationInfo>, StoreError>;

    /// A page of the conversations `user` has access to (archived or not, as asked), most
    /// recently active first; among those active at the same moment, by id, descending.
    async fn list_conversations(
        &self,
        user: &UserId,
        query: &ListQuery,
    ) -> Result<ConversationPage, StoreError>;

    /// Moves `conversation` into `user`'s archive, or out of it; `false` when `user` has no
    /// access to it.
    async fn set_archived(
        &self,
        conversation: &ConversationId,
        user: &UserId,
        archived: bool,
    ) -> Result<bool, StoreError>;

    /// Whether `user` archived `conversation` (`false` when they have no access to it).
    async fn is_archived(
        &self,
        conversation: &ConversationId,
        user: &UserId,
    ) -> Result<bool, StoreError>;

    /// Takes `user`'s access to `conversation` away (not its creator's); `false` when they
    /// had none.
    async fn remove_member(
        &self,
        conversation: &ConversationId,
        user: &UserId,
    ) -> Result<bool, StoreError>;

    /// Deletes a conversation's record, members and list entries, keeping its id as used;
    /// `false` when there was none. (Its history, queue and files are other parts' and
    /// other stores': the engine deletes those.)
    async fn delete_conversation(&self, conversation: &ConversationId) -> Result<bool, StoreError>;

    /// Records that `user` read `conversation` up to `message` (a message it holds; the
    /// engine checks). A mark is a position in the order the conversation's messages were
    /// stored, and it never moves back: one for a message stored before the user's mark
    /// changes nothing. [`list_conversations`](Self::list_conversations) counts the messages
    /// stored after it as `unread`.
    ///
    /// Returns the mark held after the call: `message` when the mark moved to it (or was on
    /// it), the message of the mark kept when that one was stored later. `None`, storing
    /// nothing, when `user` is no member of `conversation` (or there is no such
    /// conversation), or when the conversation does not hold `message` and the user has no
    /// mark yet.
    async fn mark_read(
        &self,
        conversation: &ConversationId,
        user: &UserId,
        message: &crate::MessageId,
    ) -> Result<Option<crate::MessageId>, StoreError>;
}

#[async_trait]
impl<T: Conversations + ?Sized> Conversations for std::sync::Arc<T> {
    async fn create_conversation(&self, info: ConversationInfo) -> Result<bool, StoreError> {
        (**self).create_conversation(info).await
    }
    async fn conversation(
        &self,
        conversation: &ConversationId,
    ) -> Result<Option<ConversationInfo>, StoreError> {
        (**self).conversation(conversation).await
    }
    async fn grant_access(
        &self,
        conversation: &ConversationId,
        user: &UserId,
    ) -> Result<(), StoreError> {
        (**self).grant_access(conversation, user).await
    }
    async fn has_access(
        &self,
        conversation: &ConversationId,
        user: &UserId,
    ) -> Result<bool, StoreError> {
        (**self).has_access(conversation, user).await
    }
    async fn members(&self, conversation: &ConversationId) -> Result<Vec<UserId>, StoreError> {
        (**self).members(conversation).await
    }
    async fn touch(
        &self,
        conversation: &ConversationId,
        last_message: &LastMessage,
    ) -> Result<(), StoreError> {
        (**self).touch(conversation, last_message).await
    }
    async fn update_conversation(
        &self,
        conversation: &ConversationId,
        change: &ConversationChange,
        at: u64,
    ) -> Result<Option<ConversationInfo>, StoreError> {
        (**self).update_conversation(conversation, change, at).await
    }
    async fn list_conversations(
        &self,
        user: &UserId,
        query: &ListQuery,
    ) -> Result<ConversationPage, StoreError> {
        (**self).list_conversations(user, query).await
    }
    async fn set_archived(
        &self,
        conversation: &ConversationId,
        user: &UserId,
        archived: bool,
    ) -> Result<bool, StoreError> {
        (**self).set_archived(conversation, user, archived).await
    }
    async fn is_archived(
        &self,
        conversation: &ConversationId,
        user: &UserId,
    ) -> Result<bool, StoreError> {
        (**self).is_archived(conversation, user).await
    }
    async fn remove_member(
        &self,
        conversation: &ConversationId,
        user: &UserId,
    ) -> Result<bool, StoreError> {
        (**self).remove_member(conversation, user).await
    }
    async fn delete_conversation(&self, conversation: &ConversationId) -> Result<bool, StoreError> {
        (**self).delete_conversation(conversation).await
    }
    async fn mark_read(
        &self,
        conversation: &ConversationId,
        user: &UserId,
        message: &crate::MessageId,
    ) -> Result<Option<crate::MessageId>, StoreError> {
        (**self).mark_read(conversation, user, message).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_refuse_what_they_are_not() {
        let cursor = ListCursor {
            updated_at: 1_700_000_000_123,
            conversation_id: ConversationId::parse("team.a:b").unwrap(),
        };
        assert_eq!(ListCursor::parse(&cursor.encode()).unwrap(), cursor);
        for bad in ["", "12", "x.c", "12.", "-1.c", "12.a b"] {
            assert!(ListCursor::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_change_sets_what_it_names_and_clears_with_empty() {
        let mut info = ConversationInfo::new(
            ConversationId::parse("c").unwrap(),
            UserId::parse("u").unwrap(),
            10,
        );
        ConversationChange {
            answer_policy: None,
            title: Some("Plans".into()),
            model: Some("m1".into()),
            system_prompt: Some("Be brief".into()),
        }
        .apply(&mut info, 20);
        assert_eq!(
            (
                info.title.as_deref(),
                info.model.as_deref(),
                info.updated_at
            ),
            (Some("Plans"), Some("m1"), 20)
        );
        ConversationChange {
            model: Some(String::new()),
            ..Default::default()
        }
        .apply(&mut info, 15);
        assert_eq!(info.model, None);
        assert_eq!(info.system_prompt.as_deref(), Some("Be brief"));
        assert_eq!(info.updated_at, 20, "never goes back");
    }
}
