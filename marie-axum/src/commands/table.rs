//! The table of client commands ([`ClientEvent`]): each one's name, what it costs (the checks
//! of [`dispatch`](super::dispatch)), and how its payload is decoded into a [`Command`].
//! The front ends, the fuzz target and the check of `docs/protocol.md` all read this table.

use marie_core::{
    AnswerPolicy, ConversationChange, ConversationId, Error, FileId, MessageId, SendRequest,
    StreamId, UserId,
};
use serde_json::Value;

use super::payloads::{
    self, ApproveTool, ArchiveConversation, CancelStream, ConversationRef, EditMessage, Empty,
    GetHistory, Invite, ListConversations, MarkRead, Regenerate, ResumeStream, SendMessage,
    SubmitToolResult, SwitchBranch, Typing, UpdateConversation, decode, decode_or_empty,
};

/// Every event a client may send.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ClientEvent {
    JoinConversation,
    LeaveConversation,
    Invite,
    SendMessage,
    SendMessageWithAck,
    CancelStream,
    ResumeStream,
    GetHistory,
    SystemAnnouncement,
    ApproveTool,
    SubmitToolResult,
    Typing,
    EditMessage,
    Regenerate,
    SwitchBranch,
    GetUsage,
    ListConversations,
    GetConversation,
    UpdateConversation,
    ArchiveConversation,
    DeleteConversation,
    RemoveMember,
    ExportConversation,
    MarkRead,
}

impl ClientEvent {
    /// Every client event, in the order of `docs/protocol.md` section 2 (a unit test below
    /// compares the two, in order).
    pub(crate) const ALL: [Self; 24] = [
        Self::JoinConversation,
        Self::LeaveConversation,
        Self::Invite,
        Self::SendMessage,
        Self::SendMessageWithAck,
        Self::CancelStream,
        Self::ResumeStream,
        Self::GetHistory,
        Self::SystemAnnouncement,
        Self::ApproveTool,
        Self::SubmitToolResult,
        Self::Typing,
        Self::EditMessage,
        Self::Regenerate,
        Self::SwitchBranch,
        Self::GetUsage,
        Self::ListConversations,
        Self::GetConversation,
        Self::UpdateConversation,
        Self::ArchiveConversation,
        Self::DeleteConversation,
        Self::RemoveMember,
        Self::ExportConversation,
        Self::MarkRead,
    ];

    /// The event's name, on Socket.IO and in `POST /api/chat/events/{event}`.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::JoinConversation => "join_conversation",
            Self::LeaveConversation => "leave_conversation",
            Self::Invite => "invite",
            Self::SendMessage => "send_message",
            Self::SendMessageWithAck => "send_message_with_ack",
            Self::CancelStream => "cancel_stream",
            Self::ResumeStream => "resume_stream",
            Self::GetHistory => "get_history",
            Self::SystemAnnouncement => "system_announcement",
            Self::ApproveTool => "approve_tool",
            Self::SubmitToolResult => "submit_tool_result",
            Self::Typing => "typing",
            Self::EditMessage => "edit_message",
            Self::Regenerate => "regenerate",
            Self::SwitchBranch => "switch_branch",
            Self::GetUsage => "get_usage",
            Self::ListConversations => "list_conversations",
            Self::GetConversation => "get_conversation",
            Self::UpdateConversation => "update_conversation",
            Self::ArchiveConversation => "archive_conversation",
            Self::DeleteConversation => "delete_conversation",
            Self::RemoveMember => "remove_member",
            Self::ExportConversation => "export_conversation",
            Self::MarkRead => "mark_read",
        }
    }

    pub(crate) fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|e| e.name() == name)
    }

    /// Whether it starts a model answer: it counts against
    /// [`Limits::messages`](crate::Limits::messages) (a repeat of an earlier
    /// `client_message_id` excepted, which starts nothing).
    pub(crate) fn starts_answer(self) -> bool {
        matches!(
            self,
            Self::SendMessage | Self::SendMessageWithAck | Self::EditMessage | Self::Regenerate
        )
    }

    /// Whether its ack has the seed's shape (`send_message_with_ack`) rather than
    /// `{status:"ok", ...}`.
    pub(crate) fn seed_ack(self) -> bool {
        self == Self::SendMessageWithAck
    }

    /// Decodes the event's payload and validates the ids in it.
    pub(crate) fn decode(self, payload: Option<Value>) -> Result<Command, Error> {
        Ok(match self {
            Self::JoinConversation => {
                let p: ConversationRef = decode(payload)?;
                Command::Join(ConversationId::parse(p.conversation_id)?)
            }
            Self::LeaveConversation => {
                let p: ConversationRef = decode(payload)?;
                Command::Leave(ConversationId::parse(p.conversation_id)?)
            }
            Self::Invite => {
                let p: Invite = decode(payload)?;
                Command::Invite {
                    conversation: ConversationId::parse(p.conversation_id)?,
                    user: UserId::parse(p.user_id)?,
                }
            }
            Self::SendMessage | Self::SendMessageWithAck => {
                let p: SendMessage = decode(payload)?;
                Command::Send(SendRequest {
                    conversation_id: ConversationId::parse(p.conversation_id)?,
                    message: p.message,
                    stream: p.stream && self == Self::SendMessage,
                    client_message_id: p.client_message_id,
                    on_busy: p.on_busy,
                    attachments: p
                        .attachments
                        .into_iter()
                        .map(FileId::parse)
                        .collect::<Result<_, _>>()?,
                    answer: p.answer,
                    client_tools: p.client_tools,
                })
            }
            Self::CancelStream => {
                let p: CancelStream = decode(payload)?;
                Command::Cancel {
                    conversation: ConversationId::parse(p.conversation_id)?,
                    stream: p.stream_id.map(StreamId::parse).transpose()?,
                }
            }
            Self::ResumeStream => {
                let p: ResumeStream = decode(payload)?;
                Command::Resume {
                    conversation: Some(ConversationId::parse(p.conversation_id)?),
                    stream: StreamId::parse(p.stream_id)?,
                    last_seq: p.last_seq,
                }
            }
            Self::GetHistory => {
                let p: GetHistory = decode(payload)?;
                Command::History {
                    conversation: ConversationId::parse(p.conversation_id)?,
                    before: p.before.map(MessageId::parse).transpose()?,
                    limit: p.limit.map(|n| usize::try_from(n).unwrap_or(usize::MAX)),
                }
            }
            Self::SystemAnnouncement => {
                let p: payloads::Announcement = decode(payload)?;
                Command::Announce { message: p.message }
            }
            Self::ApproveTool => {
                let p: ApproveTool = decode(payload)?;
                Command::Approve {
                    conversation: Some(ConversationId::parse(p.conversation_id)?),
                    approval: marie_core::ApprovalId::parse(p.approval_id)?,
                    approved: p.approved,
                    reason: p.reason,
                }
            }
            Self::SubmitToolResult => {
                let p: SubmitToolResult = decode(payload)?;
                let result = match (p.output, p.error) {
                    (Some(output), None) => Ok(output),
                    (None, Some(error)) => Err(error),
                    _ => {
                        return Err(Error::BadRequest("give either `output` or `error`".into()));
                    }
                };
                Command::SubmitToolResult {
                    conversation: ConversationId::parse(p.conversation_id)?,
                    tool_call_id: p.tool_call_id,
                    result,
                }
            }
            Self::Typing => {
                let p: Typing = decode(payload)?;
                Command::Typing {
                    conversation: ConversationId::parse(p.conversation_id)?,
                    typing: p.typing,
                }
            }
            Self::EditMessage => {
                let p: EditMessage = decode(payload)?;
                Command::Edit {
                    conversation: ConversationId::parse(p.conversation_id)?,
                    message: MessageId::parse(p.message_id)?,
                    text: p.message,
                    stream: p.stream,
                }
            }
            Self::Regenerate => {
                let p: Regenerate = decode(payload)?;
                Command::Regenerate {
                    conversation: ConversationId::parse(p.conversation_id)?,
                    message: p.message_id.map(MessageId::parse).transpose()?,
                    stream: p.stream,
                }
            }
            Self::GetUsage => {
                // Nothing to say: `{}`, `null`, or no payload at all.
                let _: Empty = decode_or_empty(payload)?;
                Command::Usage
            }
            Self::SwitchBranch => {
                let p: SwitchBranch = decode(payload)?;
                Command::SwitchBranch {
                    conversation: ConversationId::parse(p.conversation_id)?,
                    message: MessageId::parse(p.message_id)?,
                }
            }
            Self::ListConversations => {
                let p: ListConversations = decode_or_empty(payload)?;
                Command::ListConversations {
                    before: p.before,
                    limit: p.limit.map(|n| usize::try_from(n).unwrap_or(usize::MAX)),
                    query: p.query,
                    archived: p.archived,
                }
            }
            Self::GetConversation => {
                let p: ConversationRef = decode(payload)?;
                Command::GetConversation(ConversationId::parse(p.conversation_id)?)
            }
            Self::ExportConversation => {
                let p: ConversationRef = decode(payload)?;
                Command::ExportConversation(ConversationId::parse(p.conversation_id)?)
            }
            Self::MarkRead => {
                let p: MarkRead = decode(payload)?;
                Command::MarkRead {
                    conversation: ConversationId::parse(p.conversation_id)?,
                    message: MessageId::parse(p.message_id)?,
                }
            }
            Self::UpdateConversation => {
                let p: UpdateConversation = decode(payload)?;
                Command::UpdateConversation {
                    conversation: ConversationId::parse(p.conversation_id)?,
                    change: ConversationChange {
                        title: p.title,
                        model: p.model,
                        system_prompt: p.system_prompt,
                        answer_policy: p
                            .answer_policy
                            .as_deref()
                            .map(AnswerPolicy::parse)
                            .transpose()?,
                    },
                }
            }
            Self::ArchiveConversation => {
                let p: ArchiveConversation = decode(payload)?;
                Command::ArchiveConversation {
                    conversation: ConversationId::parse(p.conversation_id)?,
                    archived: p.archived,
                }
            }
            Self::DeleteConversation => {
                let p: ConversationRef = decode(payload)?;
                Command::DeleteConversation(ConversationId::parse(p.conversation_id)?)
            }
            Self::RemoveMember => {
                let p: Invite = decode(payload)?;
                Command::RemoveMember {
                    conversation: ConversationId::parse(p.conversation_id)?,
                    user: UserId::parse(p.user_id)?,
                }
            }
        })
    }
}

/// A client event, decoded and validated: what [`dispatch`](super::dispatch) runs.
#[derive(Debug)]
pub(crate) enum Command {
    Join(ConversationId),
    Leave(ConversationId),
    Invite {
        conversation: ConversationId,
        user: UserId,
    },
    /// `send_message`, or `send_message_with_ack` (`stream: false`).
    Send(SendRequest),
    Cancel {
        conversation: ConversationId,
        stream: Option<StreamId>,
    },
    /// `conversation` is `None` when a route names the stream alone (`GET
    /// /api/chat/streams/{id}`): the stream's own conversation, after the access check.
    Resume {
        conversation: Option<ConversationId>,
        stream: StreamId,
        last_seq: u64,
    },
    History {
        conversation: ConversationId,
        before: Option<MessageId>,
        limit: Option<usize>,
    },
    Announce {
        message: String,
    },
    /// `conversation` is `None` when a route names the approval alone (`POST
    /// /api/chat/approvals/{id}`).
    Approve {
        conversation: Option<ConversationId>,
        approval: marie_core::ApprovalId,
        approved: bool,
        reason: Option<String>,
    },
    /// `submit_tool_result`: a client tool's output, or its error.
    SubmitToolResult {
        conversation: ConversationId,
        tool_call_id: String,
        result: Result<Value, String>,
    },
    Typing {
        conversation: ConversationId,
        typing: bool,
    },
    Edit {
        conversation: ConversationId,
        message: MessageId,
        text: String,
        stream: bool,
    },
    Regenerate {
        conversation: ConversationId,
        message: Option<MessageId>,
        stream: bool,
    },
    SwitchBranch {
        conversation: ConversationId,
        message: MessageId,
    },
    Usage,
    ListConversations {
        before: Option<String>,
        limit: Option<usize>,
        query: Option<String>,
        archived: bool,
    },
    GetConversation(ConversationId),
    ExportConversation(ConversationId),
    UpdateConversation {
        conversation: ConversationId,
        change: ConversationChange,
    },
    MarkRead {
        conversation: ConversationId,
        message: MessageId,
    },
    ArchiveConversation {
        conversation: ConversationId,
        archived: bool,
    },
    DeleteConversation(ConversationId),
    RemoveMember {
        conversation: ConversationId,
        user: UserId,
    },
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn bad(event: ClientEvent, payload: Option<Value>) -> String {
        match event.decode(payload) {
            Err(Error::BadRequest(message)) => message,
            other => panic!("{event:?}: expected bad_request, got {other:?}"),
        }
    }

    #[test]
    fn payloads_that_do_not_fit_are_bad_requests() {
        for payload in [
            None,
            Some(json!(42)),
            Some(json!("conv")),
            Some(json!([1, 2])),
            Some(json!({})),
            Some(json!({"conversation_id": 7})),
            Some(json!({"conversation_id": "c", "extra": true})),
        ] {
            bad(ClientEvent::JoinConversation, payload);
        }
        let Ok(Command::Send(send)) =
            ClientEvent::SendMessage.decode(Some(json!({"conversation_id": "c", "message": "hi"})))
        else {
            panic!("a plain send decodes");
        };
        assert!(send.stream);
        let Ok(Command::Send(send)) = ClientEvent::SendMessageWithAck
            .decode(Some(json!({"conversation_id": "c", "message": "hi"})))
        else {
            panic!("a send with ack decodes");
        };
        assert!(!send.stream, "send_message_with_ack is never streamed");
    }

    /// The group fields: `answer`, `answer_policy` (its choices named), `mark_read`.
    #[test]
    fn group_fields_decode_and_bad_ones_are_named() {
        let Ok(Command::Send(send)) = ClientEvent::SendMessage.decode(Some(
            json!({"conversation_id": "c", "message": "hi", "answer": false}),
        )) else {
            panic!("a send with answer decodes");
        };
        assert_eq!(send.answer, Some(false));
        let message = bad(
            ClientEvent::SendMessage,
            Some(json!({"conversation_id": "c", "message": "hi", "answer": "yes"})),
        );
        assert!(message.contains("`answer`"), "{message}");
        let message = bad(
            ClientEvent::UpdateConversation,
            Some(json!({"conversation_id": "c", "answer_policy": "sometimes"})),
        );
        assert!(
            message.contains("\"always\", \"mention\" or \"never\""),
            "{message}"
        );
        let Ok(Command::MarkRead { message, .. }) =
            ClientEvent::MarkRead.decode(Some(json!({"conversation_id": "c", "message_id": "m1"})))
        else {
            panic!("mark_read decodes");
        };
        assert_eq!(message.as_str(), "m1");
        bad(ClientEvent::MarkRead, Some(json!({"conversation_id": "c"})));
    }

    /// `get_usage` takes `{}`, `null` or nothing, and nothing else.
    #[test]
    fn get_usage_takes_no_fields() {
        for payload in [None, Some(json!(null)), Some(json!({}))] {
            assert!(matches!(
                ClientEvent::GetUsage.decode(payload),
                Ok(Command::Usage)
            ));
        }
        bad(ClientEvent::GetUsage, Some(json!({"user_id": "bob"})));
        bad(ClientEvent::GetUsage, Some(json!([])));
    }

    /// A bad number says which field and what it must be, not `expected usize`.
    #[test]
    fn bad_numbers_name_the_field_in_words() {
        for (event, payload, field) in [
            (
                ClientEvent::GetHistory,
                json!({"conversation_id": "c", "limit": -1}),
                "limit",
            ),
            (
                ClientEvent::GetHistory,
                json!({"conversation_id": "c", "limit": "ten"}),
                "limit",
            ),
            (
                ClientEvent::GetHistory,
                json!({"conversation_id": "c", "limit": 2.5}),
                "limit",
            ),
            (
                ClientEvent::ResumeStream,
                json!({"conversation_id": "c", "stream_id": "s", "last_seq": -3}),
                "last_seq",
            ),
        ] {
            let message = bad(event, Some(payload));
            assert!(message.contains(&format!("`{field}`")), "{message}");
            assert!(message.contains("a whole number, 0 or more"), "{message}");
            assert!(
                !message.contains("usize") && !message.contains("u64"),
                "{message}"
            );
        }
        let Ok(Command::History { limit, .. }) =
            ClientEvent::GetHistory.decode(Some(json!({"conversation_id": "c", "limit": 0})))
        else {
            panic!("limit 0 decodes");
        };
        assert_eq!(limit, Some(0));
    }

    /// The event table of `docs/protocol.md` section 2 lists exactly these events.
    #[test]
    fn the_protocol_docs_list_every_client_event() {
        let docs = include_str!("../../../docs/protocol.md");
        let section = docs
            .split("## 2. Client → server events")
            .nth(1)
            .and_then(|s| s.split("\n## ").next())
            .expect("docs/protocol.md has section 2");
        let documented: Vec<&str> = section
            .lines()
            .filter_map(|line| line.strip_prefix("| `"))
            .filter_map(|rest| rest.split('`').next())
            .collect();
        let ours: Vec<&str> = ClientEvent::ALL.iter().map(|e| e.name()).collect();
        assert_eq!(documented, ours);
    }
}
