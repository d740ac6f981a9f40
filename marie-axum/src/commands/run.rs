//! Each command's body: one engine call, and what the link must do around it. Every check
//! that is not the engine's ran before, in [`dispatch`](super::dispatch).

use std::sync::Arc;

use marie_core::{
    ConversationId, Error, Identity, MessageId, OnBusy, SendOutcome, StartStatus, StreamEvent,
    StreamFailed, StreamId, StreamStart,
};
use socketioxide::adapter::Adapter;

use super::acks::{
    Announcement, Archived, BranchSwitched, Cancelled, ConversationList, ConversationView, Decided,
    Deleted, Export, HistoryPage, Invited, Joined, Left, MarkedRead, Nothing, Resumed, SeedAckOk,
    Sent, Settings, ToolResultTaken, TypingAck, ok, raw,
};
use super::link::TypingAccess;
use super::{Acked, ClientEvent, Command, Follow, Link};
use crate::rooms::conversation_room;
use crate::state::NodeState;

/// What a command runs with: the node's state, the link it came on, its user, its event.
pub(super) struct Ctx<'a, A: Adapter, L: Link> {
    pub(super) shared: &'a Arc<NodeState<A>>,
    pub(super) link: &'a L,
    pub(super) who: &'a Arc<Identity>,
    pub(super) event: ClientEvent,
}

/// An ack and nothing to follow.
fn acked(ack: Box<serde_json::value::RawValue>) -> Result<Acked, Error> {
    Ok(Acked { ack, follow: None })
}

impl<A: Adapter, L: Link> Ctx<'_, A, L> {
    /// A repeat of an earlier send's `client_message_id`: its first outcome, marked
    /// `duplicate`, without running or counting anything.
    pub(super) fn repeat(&self, command: &Command) -> Option<Acked> {
        let Command::Send(request) = command else {
            return None;
        };
        let id = request.client_message_id.as_deref()?;
        let first = self
            .shared
            .engine
            .sent_before(self.who, &request.conversation_id, id)?;
        Some(self.sent(&request.conversation_id, request.stream, first))
    }

    pub(super) async fn run(&self, command: Command) -> Result<Acked, Error> {
        let engine = &self.shared.engine;
        match command {
            Command::Join(conversation) => self.join(conversation).await,
            Command::Leave(conversation) => {
                self.link.leave(&conversation).await;
                let left = Left {
                    conversation_id: conversation,
                };
                self.link.tell("left", raw(&left));
                acked(ok(&left))
            }
            Command::Invite { conversation, user } => {
                engine.invite(self.who, &conversation, &user).await?;
                acked(ok(&Invited {
                    conversation_id: conversation,
                    user_id: user,
                }))
            }
            Command::Send(request) => self.send(request).await,
            Command::Cancel {
                conversation,
                stream,
            } => {
                let stream_id = engine
                    .cancel(self.who, &conversation, stream.as_ref())
                    .await?;
                acked(ok(&Cancelled {
                    conversation_id: conversation,
                    stream_id,
                }))
            }
            Command::Resume {
                conversation,
                stream,
                last_seq,
            } => self.resume(conversation, stream, last_seq).await,
            Command::History {
                conversation,
                before,
                limit,
            } => {
                let messages = engine
                    .history(self.who, &conversation, before, limit)
                    .await?;
                acked(ok(&HistoryPage {
                    conversation_id: conversation,
                    messages,
                }))
            }
            Command::Announce { message } => self.announce(&message).await,
            Command::Approve {
                conversation,
                approval,
                approved,
                reason,
            } => {
                let decided = engine
                    .approve(self.who, conversation.as_ref(), &approval, approved, reason)
                    .await?;
                acked(ok(&Decided::of(&decided)))
            }
            Command::SubmitToolResult {
                conversation,
                tool_call_id,
                result,
            } => {
                engine
                    .submit_tool_result(self.who, &conversation, &tool_call_id, result)
                    .await?;
                acked(ok(&ToolResultTaken {
                    conversation_id: &conversation,
                    tool_call_id: &tool_call_id,
                }))
            }
            Command::Typing {
                conversation,
                typing,
            } => self.typing(conversation, typing).await,
            Command::MarkRead {
                conversation,
                message,
            } => {
                // The mark kept: the one given, or a later one the reader marked before.
                let mark = engine.mark_read(self.who, &conversation, &message).await?;
                if let Some(mark) = &mark {
                    self.shared
                        .reads
                        .read(&self.who.user_id, &conversation, mark)
                        .await;
                }
                acked(ok(&MarkedRead {
                    conversation_id: conversation,
                    message_id: mark.unwrap_or(message),
                }))
            }
            Command::Edit {
                conversation,
                message,
                text,
                stream,
            } => {
                let outcome = engine
                    .edit(self.who, &conversation, &message, text, stream)
                    .await?;
                Ok(self.started(&conversation, stream, outcome))
            }
            Command::Regenerate {
                conversation,
                message,
                stream,
            } => {
                let outcome = engine
                    .regenerate(self.who, &conversation, message.as_ref(), stream)
                    .await?;
                Ok(self.started(&conversation, stream, outcome))
            }
            Command::SwitchBranch {
                conversation,
                message,
            } => self.switch_branch(conversation, message).await,
            Command::Usage => acked(ok(&engine.usage(self.who).await?)),
            Command::ListConversations {
                before,
                limit,
                query,
                archived,
            } => {
                let page = engine
                    .list_conversations(
                        self.who,
                        before.as_deref(),
                        limit,
                        query.as_deref(),
                        archived,
                    )
                    .await?;
                acked(ok(&ConversationList::of(page)))
            }
            Command::GetConversation(conversation) => {
                let details = engine.conversation_details(self.who, &conversation).await?;
                let config = engine.config();
                acked(ok(&ConversationView {
                    archived: Some(details.archived),
                    members: Some(details.members),
                    settings: Some(Settings {
                        models: config.models.clone(),
                        max_system_prompt_chars: config.max_system_prompt_chars,
                        assistants: config.assistants.clone(),
                    }),
                    ..ConversationView::with_prompt(details.info)
                }))
            }
            Command::ExportConversation(conversation) => {
                let export = engine.export_conversation(self.who, &conversation).await?;
                acked(ok(&Export::of(export)))
            }
            Command::UpdateConversation {
                conversation,
                change,
            } => {
                let info = engine
                    .update_conversation(self.who, &conversation, change)
                    .await?;
                acked(ok(&ConversationView::with_prompt(info)))
            }
            Command::ArchiveConversation {
                conversation,
                archived,
            } => {
                engine
                    .archive_conversation(self.who, &conversation, archived)
                    .await?;
                acked(ok(&Archived {
                    conversation_id: conversation,
                    archived,
                }))
            }
            Command::DeleteConversation(conversation) => {
                engine.delete_conversation(self.who, &conversation).await?;
                acked(ok(&Deleted {
                    conversation_id: conversation,
                }))
            }
            Command::RemoveMember { conversation, user } => {
                engine.remove_member(self.who, &conversation, &user).await?;
                acked(ok(&Invited {
                    conversation_id: conversation,
                    user_id: user,
                }))
            }
        }
    }

    /// `join_conversation`: `joined` to the link, and as its ack (with `status:"ok"`).
    async fn join(&self, conversation: ConversationId) -> Result<Acked, Error> {
        let rooms = self.link.rooms(&conversation);
        self.shared
            .guards
            .check_rooms(rooms.joined, rooms.already_in)?;
        let outcome = self.shared.engine.join(self.who, &conversation).await?;
        self.link.enter(&conversation).await;
        let mut body = Joined {
            conversation_id: conversation,
            status: "joined",
            members: outcome.members,
            created: outcome.created,
            active_stream: outcome.active_stream,
            queued: outcome.queued,
        };
        self.link.tell("joined", raw(&body));
        body.status = "ok";
        acked(raw(&body))
    }

    /// `send_message`, `send_message_with_ack`. A link that must stream the answer now
    /// cannot wait in a queue: `enqueue` asked for is `bad_request`, an app default of
    /// `enqueue` is `reject` there.
    async fn send(&self, mut request: marie_core::SendRequest) -> Result<Acked, Error> {
        if request.stream && !self.link.can_wait_in_queue() {
            let default = self.shared.engine.config().on_busy;
            request.on_busy = match request.on_busy {
                Some(OnBusy::Enqueue) => {
                    return Err(Error::BadRequest(
                        "`on_busy: \"enqueue\"` needs a connection that waits for the answer: over HTTP, ask for JSON (the ack) rather than an event stream".into(),
                    ));
                }
                None if default == OnBusy::Enqueue => Some(OnBusy::Reject),
                other => other,
            };
        }
        let conversation = request.conversation_id.clone();
        let streamed = request.stream;
        let outcome = self.shared.engine.send(self.who, request).await?;
        if !outcome.duplicate && outcome.answered {
            self.link.asked(&conversation, &outcome.stream_id);
        }
        Ok(self.sent(&conversation, streamed, outcome))
    }

    /// The ack of a command that started an answer (`edit_message`, `regenerate`).
    fn started(
        &self,
        conversation: &ConversationId,
        streamed: bool,
        outcome: SendOutcome,
    ) -> Acked {
        if outcome.answered {
            self.link.asked(conversation, &outcome.stream_id);
        }
        self.sent(conversation, streamed, outcome)
    }

    /// The ack of a send (in the seed's shape for `send_message_with_ack`), and the stream
    /// to follow when it was streamed and started.
    fn sent(&self, conversation: &ConversationId, streamed: bool, outcome: SendOutcome) -> Acked {
        let follow = (streamed && outcome.queued.is_none() && outcome.answered).then(|| Follow {
            conversation: conversation.clone(),
            stream: outcome.stream_id.clone(),
            after_seq: 0,
            start: Some(StreamStart {
                conversation_id: conversation.clone(),
                stream_id: outcome.stream_id.clone(),
                message_id: outcome.answer_message_id.clone(),
                parent_id: Some(outcome.message_id.clone()),
                assistant: outcome.assistant.clone(),
                status: StartStatus::Streaming,
            }),
        });
        let ack = if self.event.seed_ack() {
            raw(&SeedAckOk {
                status: "success",
                message_id: &outcome.message_id,
            })
        } else {
            ok(&Sent {
                message_id: outcome.message_id,
                stream_id: outcome.answered.then_some(outcome.stream_id),
                duplicate: outcome.duplicate,
                queued: outcome.queued,
                answered: outcome.answered,
            })
        };
        Acked { ack, follow }
    }

    /// `resume_stream`: access is checked again, then the link replays every event after
    /// `last_seq` and follows the live tail, with no gap and no duplicate
    /// (`crate::delivery`). An answer that already ended is followed by its terminal event.
    /// A position the log cannot continue from is `resume_unavailable`, also told as
    /// `stream_error`.
    async fn resume(
        &self,
        conversation: Option<ConversationId>,
        stream: StreamId,
        last_seq: u64,
    ) -> Result<Acked, Error> {
        let read = match self
            .shared
            .engine
            .read_stream(self.who, conversation.as_ref(), &stream, last_seq, 1)
            .await
        {
            Ok(read) => read,
            Err(e @ Error::ResumeUnavailable(_)) => {
                if let Some(conversation) = conversation {
                    let failed = StreamEvent::Error(StreamFailed::cannot_resume(
                        conversation,
                        stream,
                        &e,
                        last_seq,
                    ));
                    self.link.tell(failed.name(), raw(&failed.payload()));
                }
                return Err(e);
            }
            Err(e) => return Err(e),
        };
        let conversation = read.meta.conversation_id.clone();
        self.link.resume(&conversation, &stream, last_seq).await?;
        let ack = ok(&Resumed {
            conversation_id: conversation.clone(),
            stream_id: stream.clone(),
            from_seq: last_seq + 1,
            last_seq: read.last_seq,
            ended: read.end.is_some(),
        });
        Ok(Acked {
            ack,
            follow: Some(Follow {
                conversation,
                stream,
                after_seq: last_seq,
                start: None,
            }),
        })
    }

    /// `typing`: `user_typing` to the others (`crate::typing`).
    async fn typing(&self, conversation: ConversationId, typing: bool) -> Result<Acked, Error> {
        let typist = match self.link.typist(&conversation) {
            TypingAccess::Member(typist) => typist,
            TypingAccess::NotJoined => {
                return Err(Error::Forbidden("join the conversation first"));
            }
            TypingAccess::Check(typist) => {
                self.shared
                    .engine
                    .authorize(self.who, &conversation)
                    .await?;
                typist
            }
        };
        self.shared
            .typing
            .typing(typist, &self.who.user_id, &conversation, typing)
            .await;
        acked(ok(&TypingAck {
            conversation_id: conversation,
            typing,
        }))
    }

    /// `switch_branch`: `branch_switched` to the whole room (the caller's sockets included),
    /// on every node, and as the ack's fields.
    async fn switch_branch(
        &self,
        conversation: ConversationId,
        message: MessageId,
    ) -> Result<Acked, Error> {
        let leaf = self
            .shared
            .engine
            .switch_branch(self.who, &conversation, &message)
            .await?;
        let switched = BranchSwitched {
            conversation_id: conversation,
            message_id: message,
            leaf_id: leaf,
            user_id: self.who.user_id.clone(),
        };
        if let Some(ns) = self.shared.io.of(&self.shared.config.namespace) {
            let room = conversation_room(&switched.conversation_id);
            let everywhere = ns.clone().within(room.clone());
            if let Err(e) = everywhere.emit("branch_switched", &switched).await {
                // The other nodes are out of reach (Redis is away): this node's members at least.
                tracing::debug!(error = %e, "branch_switched delivered on this node only");
                let _ = ns
                    .local()
                    .within(room)
                    .emit("branch_switched", &switched)
                    .await;
            }
        }
        acked(ok(&switched))
    }

    /// `system_announcement`: admins only; `announcement` to every client of the namespace.
    async fn announce(&self, message: &str) -> Result<Acked, Error> {
        let shared = self.shared;
        shared.engine.authorize_announcement(self.who, message)?;
        shared
            .io
            .of(&shared.config.namespace)
            .ok_or(Error::Internal("namespace not registered"))?
            .emit("announcement", &Announcement { message })
            .await
            .map_err(|e| {
                tracing::warn!(error = %e, "announcement not delivered to every client");
                Error::Internal("the announcement could not be delivered to every client")
            })?;
        acked(ok(&Nothing {}))
    }
}
