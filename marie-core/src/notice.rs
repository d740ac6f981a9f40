//! [`Notice`]: what a conversation's members (or one of them) are told when the
//! conversation itself changes: renamed or reconfigured, deleted, a member removed
//! (`docs/protocol.md` section 9). Unlike a [`StreamEvent`](crate::StreamEvent), a notice goes
//! to each user's own connections, whether or not they follow the conversation now, so that
//! a list of conversations on screen stays current.

use serde::{Deserialize, Serialize};

use crate::{ConversationId, UserId};

/// A change of a conversation, for its members.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "notice", rename_all = "snake_case")]
#[non_exhaustive]
pub enum Notice {
    /// `conversation_updated`: its title or settings changed (or it was named).
    ConversationUpdated(ConversationUpdated),
    /// `conversation_deleted`: it is gone; its members no longer follow it.
    ConversationDeleted(ConversationDeleted),
    /// `removed`: the user told no longer has access to it; their connections stop
    /// following it.
    Removed(Removed),
}

impl Notice {
    /// The event name on the wire.
    pub fn name(&self) -> &'static str {
        match self {
            Self::ConversationUpdated(_) => "conversation_updated",
            Self::ConversationDeleted(_) => "conversation_deleted",
            Self::Removed(_) => "removed",
        }
    }

    /// The conversation it is about.
    pub fn conversation_id(&self) -> &ConversationId {
        match self {
            Self::ConversationUpdated(n) => &n.conversation_id,
            Self::ConversationDeleted(n) => &n.conversation_id,
            Self::Removed(n) => &n.conversation_id,
        }
    }

    /// Whether those told stop following the conversation (their connections leave its
    /// room).
    pub fn ends_following(&self) -> bool {
        matches!(self, Self::ConversationDeleted(_) | Self::Removed(_))
    }

    /// The payload on the wire, serialized as it is.
    pub fn payload(&self) -> NoticePayload<'_> {
        NoticePayload(self)
    }
}

/// A notice's wire payload: its fields, without the tag.
#[derive(Debug)]
pub struct NoticePayload<'a>(&'a Notice);

impl Serialize for NoticePayload<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            Notice::ConversationUpdated(n) => n.serialize(serializer),
            Notice::ConversationDeleted(n) => n.serialize(serializer),
            Notice::Removed(n) => n.serialize(serializer),
        }
    }
}

/// `conversation_updated {conversation_id, title, model, updated_by, updated_at}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConversationUpdated {
    /// The conversation.
    pub conversation_id: ConversationId,
    /// Its title now.
    pub title: Option<String>,
    /// Its model now (`None`: the app's default).
    pub model: Option<String>,
    /// Which messages are answered now (`docs/protocol.md` section 10).
    #[serde(default)]
    pub answer_policy: crate::AnswerPolicy,
    /// Who changed it; `None` when the server did (a title made after the first answer).
    pub updated_by: Option<UserId>,
    /// Milliseconds since the Unix epoch.
    pub updated_at: u64,
}

impl ConversationUpdated {
    /// The notice of `info` as it is now, changed by `by` (`None`: the server).
    pub fn of(info: &crate::ConversationInfo, by: Option<UserId>) -> Self {
        Self {
            conversation_id: info.conversation_id.clone(),
            title: info.title.clone(),
            model: info.model.clone(),
            answer_policy: info.answer_policy,
            updated_by: by,
            updated_at: info.updated_at,
        }
    }
}

/// `conversation_deleted {conversation_id, deleted_by}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConversationDeleted {
    /// The conversation.
    pub conversation_id: ConversationId,
    /// Who deleted it.
    pub deleted_by: UserId,
}

/// `removed {conversation_id, removed_by}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Removed {
    /// The conversation.
    pub conversation_id: ConversationId,
    /// Who removed them (themselves, when they left for good).
    pub removed_by: UserId,
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn payloads_are_the_wire_payloads() {
        let notice = Notice::Removed(Removed {
            conversation_id: ConversationId::parse("c").unwrap(),
            removed_by: UserId::parse("alice").unwrap(),
        });
        assert_eq!(notice.name(), "removed");
        assert_eq!(
            serde_json::to_value(notice.payload()).unwrap(),
            json!({"conversation_id": "c", "removed_by": "alice"})
        );
        let updated = Notice::ConversationUpdated(ConversationUpdated {
            conversation_id: ConversationId::parse("c").unwrap(),
            title: Some("Plans".into()),
            model: None,
            answer_policy: crate::AnswerPolicy::Always,
            updated_by: None,
            updated_at: 5,
        });
        assert_eq!(
            serde_json::to_value(updated.payload()).unwrap(),
            json!({"conversation_id": "c", "title": "Plans", "model": null, "answer_policy": "always", "updated_by": null, "updated_at": 5})
        );
        // Across nodes, the whole notice with its tag.
        let back: Notice = serde_json::from_value(serde_json::to_value(&updated).unwrap()).unwrap();
        assert_eq!(back, updated);
    }
}
