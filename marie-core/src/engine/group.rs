//! What a conversation of several people needs besides answers (`docs/protocol.md` section
//! 10): a message stored and told to the room without an answer ([`ChatEngine::post`]),
//! `message_added` for every stored message ([`ChatEngine::tell_added`]), and read marks
//! ([`ChatEngine::mark_read`]).

use super::ChatEngine;
use super::send::{Question, SendOutcome, Start, user_message};
use crate::{
    ChatMessage, ConversationId, Error, Identity, LastMessage, MessageAdded, MessageId,
    StreamEvent, StreamId,
};

/// Where a message goes in its conversation's tree.
pub(super) enum Place {
    /// After the active branch's leaf, as the store finds it when it stores the message.
    Leaf,
    /// After this message (`None`: a first message): an edit, beside the message edited.
    After(Option<MessageId>),
}

impl ChatEngine {
    /// Stores a message `who` sent that is not answered and tells the room: never `busy`,
    /// never queued, also while an answer streams (it goes after the active branch's leaf,
    /// and the answer after it when it is stored). An edit that is not answered is `busy`
    /// while an answer runs, as it would move the branch the answer is on.
    pub(super) async fn post(&self, who: &Identity, start: Start) -> Result<SendOutcome, Error> {
        let conversation = &start.conversation;
        let (text, place, attachments) = match start.question {
            Question::New { text, attachments } => (text, Place::Leaf, attachments),
            Question::Edit {
                text,
                parent,
                attachments,
            } => {
                if self.running_answer(conversation).await?.is_some() {
                    return Err(Error::Busy);
                }
                (text, Place::After(parent), attachments)
            }
            Question::Again { .. } => return Err(Error::Internal("a regeneration is answered")),
        };
        let id = MessageId::new_time_ordered();
        let outcome = SendOutcome {
            message_id: id.clone(),
            answer_message_id: id.clone(),
            stream_id: StreamId::random(),
            duplicate: false,
            queued: None,
            answered: false,
            assistant: None,
        };
        // A repeat of the `client_message_id` is found, or the id taken, in one critical
        // section (as `reserve` does for an answered send): two copies of one send in flight
        // store it once. A send that fails forgets it, so that a retry is not a "repeat".
        let key = start
            .client_message_id
            .map(|cmid| (conversation.clone(), who.user_id.clone(), cmid));
        if let Some(key) = &key {
            let mut state = self.state();
            if let Some(first) = state.sent.repeat(key) {
                return Ok(first);
            }
            let capacity = self.shared.config.idempotency_capacity;
            state.sent.insert(key.clone(), outcome.clone(), capacity);
        }
        let message = user_message(id, who, text, attachments);
        let message = match self.store_message(conversation, message, place).await {
            Ok(message) => message,
            Err(e) => {
                if let Some(key) = &key {
                    self.state().sent.remove(key);
                }
                return Err(e);
            }
        };
        self.tell_added(conversation, &message).await;
        Ok(outcome)
    }

    /// Stores a message (a question, a post, an answer) at `place` and moves the
    /// conversation to the top of its members' lists; returns it as stored (with its
    /// parent).
    pub(super) async fn store_message(
        &self,
        conversation: &ConversationId,
        mut message: ChatMessage,
        place: Place,
    ) -> Result<ChatMessage, Error> {
        let history = self.shared.stores.history();
        let message = match place {
            Place::Leaf => history.append_to_active(conversation, message).await?,
            Place::After(parent) => {
                message.parent_id = parent;
                history
                    .append_message(conversation, message.clone())
                    .await?;
                message
            }
        };
        self.touch(conversation, &LastMessage::of(&message)).await;
        Ok(message)
    }

    /// `message_added` to every member following the conversation, on every node. Not fatal:
    /// the message is stored, and a member who missed it finds it in the history.
    pub(super) async fn tell_added(&self, conversation: &ConversationId, message: &ChatMessage) {
        let event = StreamEvent::MessageAdded(MessageAdded {
            conversation_id: conversation.clone(),
            message: message.clone(),
        });
        if let Err(e) = self.shared.sink.emit(event).await {
            tracing::warn!(error = %e, "message_added not delivered everywhere");
        }
    }

    /// `mark_read`: `who` has read `conversation` up to `message` (one it holds). Their
    /// list's `unread` counts the messages stored after it; a mark never moves back (by the
    /// order messages were stored). Returns the mark held after the call
    /// ([`Conversations::mark_read`](crate::Conversations::mark_read)): `message`, or a
    /// message stored after it that `who` marked before; `None` when nothing was stored
    /// (`who` is no longer a member).
    pub async fn mark_read(
        &self,
        who: &Identity,
        conversation: &ConversationId,
        message: &MessageId,
    ) -> Result<Option<MessageId>, Error> {
        self.authorize(who, conversation).await?;
        let stores = &self.shared.stores;
        if stores
            .history()
            .message(conversation, message)
            .await?
            .is_none()
        {
            return Err(Error::NotFound("no such message in this conversation"));
        }
        Ok(stores
            .conversations()
            .mark_read(conversation, &who.user_id, message)
            .await?)
    }
}
