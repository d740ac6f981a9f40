//! Busy conversations: what a send does when an answer already runs (`on_busy`), and the
//! sends that wait their turn ([`QueuedSend`]).

use serde::{Deserialize, Serialize};

use crate::{ConversationId, Identity, MessageId, StreamId, UserId};

/// What `send_message` does while an answer runs in its conversation.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum OnBusy {
    /// Refuse it: `busy` (protocol v1).
    #[default]
    Reject,
    /// Queue it: it is answered after the running answer and those queued before it, on
    /// whichever node ends the answer before it.
    Enqueue,
    /// Cancel the running answer (it ends `cancelled`, its partial text stored) and answer
    /// this one.
    Interrupt,
}

/// A send waiting for its turn, as the store keeps it. Its ids are given when it is queued,
/// so that `queued` can name its stream and `cancel_stream` can take it out of the queue.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueuedSend {
    /// Where it waits.
    pub conversation_id: ConversationId,
    /// Who sent it.
    pub user_id: UserId,
    /// The sender's roles, for the access check when its turn comes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub roles: Vec<String>,
    /// The user's text.
    pub message: String,
    /// The files it carries (checked when it was queued).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attachments: Vec<crate::Attachment>,
    /// `true`: streamed; `false`: one `message_response`.
    pub stream: bool,
    /// The user message it becomes.
    pub message_id: MessageId,
    /// The assistant message its answer becomes.
    pub answer_message_id: MessageId,
    /// Its answer's stream.
    pub stream_id: StreamId,
    /// Milliseconds since the Unix epoch.
    pub queued_at: u64,
}

impl QueuedSend {
    /// The sender, as the engine checks and answers them.
    pub fn identity(&self) -> Identity {
        let mut who = Identity::new(self.user_id.clone());
        who.roles = self.roles.clone();
        who
    }
}
