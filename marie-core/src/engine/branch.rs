//! `edit_message`, `regenerate` and `switch_branch`: the commands that grow or move a
//! conversation's branches (`docs/protocol.md` section 7). Nothing is ever deleted: an edit
//! is a new user message beside the one edited, a regenerated answer a new one beside the
//! one replaced, and both then answer through the same path as a send (`send.rs`).

use super::send::{Question, Start};
use super::{ChatEngine, SendOutcome};
use crate::{ChatMessage, ConversationId, Error, Identity, MessageId, MessageRole, OnBusy};

impl ChatEngine {
    /// `edit_message`: a new user message beside `message` (which must be `who`'s own), then
    /// an answer to it. The active branch moves to the new message.
    pub async fn edit(
        &self,
        who: &Identity,
        conversation: &ConversationId,
        message: &MessageId,
        text: String,
        stream: bool,
    ) -> Result<SendOutcome, Error> {
        self.check_message(&text)?;
        let edited = self.find_message(who, conversation, message).await?;
        if edited.role != MessageRole::User {
            return Err(Error::BadRequest(
                "only a user message can be edited; regenerate an answer instead".into(),
            ));
        }
        if edited.user_id.as_ref() != Some(&who.user_id) {
            return Err(Error::Forbidden("only its author may edit a message"));
        }
        let start = Start {
            conversation: conversation.clone(),
            question: Question::Edit {
                text,
                parent: edited.parent_id,
                // An edit keeps the files of the message it edits.
                attachments: edited.attachments,
            },
            streamed: stream,
            client_message_id: None,
            on_busy: OnBusy::Reject,
            queued: None,
            answer: None,
            assistant: None,
            client_tools: crate::ClientTools::default(),
        };
        self.start(who, start).await
    }

    /// `regenerate`: a new answer beside the assistant message `message`, or by default beside
    /// the active branch's last answer (or to its last user message, when that one's answer
    /// failed before it said anything). Any member may regenerate. The outcome's
    /// `message_id` is the user message answered.
    pub async fn regenerate(
        &self,
        who: &Identity,
        conversation: &ConversationId,
        message: Option<&MessageId>,
        stream: bool,
    ) -> Result<SendOutcome, Error> {
        let target = match message {
            Some(message) => self.find_message(who, conversation, message).await?,
            None => {
                self.authorize(who, conversation).await?;
                let store = self.shared.stores.history();
                let leaf = store
                    .active_leaf(conversation)
                    .await?
                    .ok_or(Error::NotFound("nothing to regenerate yet"))?;
                store
                    .message(conversation, &leaf)
                    .await?
                    .ok_or(Error::NotFound("nothing to regenerate yet"))?
            }
        };
        let assistant = target.assistant.clone();
        let question = match (target.role, target.parent_id) {
            (MessageRole::Assistant, Some(user_message)) => Question::Again {
                user_message,
                replaces: Some(target.message_id),
            },
            (MessageRole::Assistant, None) => {
                return Err(Error::BadRequest(
                    "this answer cannot be regenerated: the question it answers is gone".into(),
                ));
            }
            (MessageRole::User, _) if message.is_none() => Question::Again {
                user_message: target.message_id,
                replaces: None,
            },
            _ => {
                return Err(Error::BadRequest(
                    "only an answer can be regenerated; edit a question instead".into(),
                ));
            }
        };
        let start = Start {
            conversation: conversation.clone(),
            question,
            streamed: stream,
            client_message_id: None,
            on_busy: OnBusy::Reject,
            queued: None,
            answer: None,
            assistant,
            client_tools: crate::ClientTools::default(),
        };
        self.start(who, start).await
    }

    /// `switch_branch`: makes the branch through `message`, down to its newest leaf, the
    /// active one, and returns that leaf. Refused (`busy`) while an answer runs: the answer
    /// goes on the branch it started on.
    pub async fn switch_branch(
        &self,
        who: &Identity,
        conversation: &ConversationId,
        message: &MessageId,
    ) -> Result<MessageId, Error> {
        self.authorize(who, conversation).await?;
        if self.running_answer(conversation).await?.is_some() {
            return Err(Error::Busy);
        }
        self.shared
            .stores
            .history()
            .switch_branch(conversation, message)
            .await?
            .ok_or(Error::NotFound("no such message in this conversation"))
    }

    /// A message of `conversation`, after checking that `who` may enter it.
    async fn find_message(
        &self,
        who: &Identity,
        conversation: &ConversationId,
        message: &MessageId,
    ) -> Result<ChatMessage, Error> {
        self.authorize(who, conversation).await?;
        self.shared
            .stores
            .history()
            .message(conversation, message)
            .await?
            .ok_or(Error::NotFound("no such message in this conversation"))
    }
}
