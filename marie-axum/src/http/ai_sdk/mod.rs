//! The Vercel AI SDK's endpoints (`docs/protocol.md` section 12): `useChat` with its default
//! HTTP transport (`POST /api/ai-sdk/chat`, `GET /api/ai-sdk/chat/{id}/stream`, `GET
//! /api/ai-sdk/chat/{id}/messages`) and with its WebSocket transport (`GET /api/ai-sdk/ws`,
//! `ws.rs`). Every command goes through the command layer, as on Socket.IO: the same
//! credentials, access, limits, budgets and idempotency.
//!
//! ## Layout
//!
//! - `mod.rs`: the HTTP routes, and [`take_turn`], what a posted chat request does (both
//!   transports).
//! - `chunks.rs`: the UI message stream's chunks, and the encoder of an answer's events.
//! - `messages.rs`: `UIMessage`s: the history as the SDK holds it, and what is read of the
//!   posted ones.
//! - `ws.rs`: the WebSocket transport.

mod chunks;
mod messages;
pub(super) mod ws;

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::{Stream, StreamExt};
use marie_core::{
    ConversationId, Error, MessageId, SendRequest, StreamEvent, StreamId, ToolSpec, Waited,
};
use serde::Deserialize;
use socketioxide::adapter::Adapter;

use self::chunks::{Encoder, UiChunk};
use self::messages::{Answered, Posted};
use super::events::{HttpLink, command as run};
use super::{HttpError, identify, sse};
use crate::commands::{self, Caller, ClientEvent, Command};
use crate::guards::PacketSize;
use crate::state::NodeState;

/// What `useChat` posts (`DefaultChatTransport`), and what a WebSocket `send` frame carries.
/// Fields MARIE does not read (the app's own `body` extras) are let through.
#[derive(Debug, Deserialize)]
pub(super) struct ChatRequest {
    /// The conversation.
    id: String,
    #[serde(default)]
    messages: Vec<Posted>,
    /// `submit-message` or `regenerate-message`.
    #[serde(default)]
    trigger: Option<String>,
    /// Of a regeneration: the answer replaced; of an edit: the user message edited; of a
    /// continuation: the assistant message continued.
    #[serde(default, rename = "messageId")]
    message_id: Option<String>,
    /// Tools the client runs, as `send_message.client_tools` (`useChat({body})`).
    #[serde(default)]
    client_tools: Vec<ToolSpec>,
}

/// An answer to stream to the SDK: which, from where, and what comes first.
pub(super) struct Turn {
    conversation: ConversationId,
    stream: StreamId,
    /// The last `seq` the client has of it.
    after: u64,
    /// The chunks before the followed events (`start`).
    head: Vec<UiChunk>,
    encoder: Encoder,
}

/// What a posted chat request does: creates the conversation for the caller when it is new
/// (as `join_conversation`), then answers its last message: a user message is sent (its
/// `id` the send's `client_message_id`, so a retried POST starts nothing twice), edited or
/// regenerated; an assistant message carries approvals and client tool outputs, applied as
/// `approve_tool` and `submit_tool_result`, and the running answer goes on from where it was.
pub(super) async fn take_turn<A: Adapter>(
    shared: &Arc<NodeState<A>>,
    caller: &Caller,
    request: ChatRequest,
    size: &PacketSize,
) -> Result<Turn, Error> {
    let link = HttpLink { caller, sse: true };
    let conversation = ConversationId::parse(request.id)?;
    let join = Command::Join(conversation.clone());
    run(shared, &link, ClientEvent::JoinConversation, join, size).await?;
    let last = request
        .messages
        .last()
        .ok_or_else(|| Error::BadRequest("`messages` is empty".into()))?;
    if last.role == "assistant" {
        return continue_answer(shared, &link, conversation, last, request.message_id, size).await;
    }
    if last.role != "user" {
        return Err(Error::BadRequest(
            "the last message is neither the user's nor an answer".into(),
        ));
    }
    let text = last.text();
    let (event, command) = match (request.trigger.as_deref(), request.message_id) {
        (Some("regenerate-message"), id) => (
            ClientEvent::Regenerate,
            Command::Regenerate {
                conversation: conversation.clone(),
                message: id.map(MessageId::parse).transpose()?,
                stream: true,
            },
        ),
        (_, Some(id)) if id == last.id => (
            ClientEvent::EditMessage,
            Command::Edit {
                conversation: conversation.clone(),
                message: MessageId::parse(id)?,
                text,
                stream: true,
            },
        ),
        _ => (
            ClientEvent::SendMessage,
            Command::Send(SendRequest {
                conversation_id: conversation.clone(),
                message: text,
                stream: true,
                client_message_id: Some(last.id.clone()),
                on_busy: None,
                attachments: Vec::new(),
                answer: Some(true),
                client_tools: request.client_tools,
            }),
        ),
    };
    let acked = run(shared, &link, event, command, size).await?;
    let follow = acked
        .follow
        .ok_or(Error::NotFound("the send started no answer to stream"))?;
    let mut encoder = Encoder::default();
    let mut head = Vec::new();
    if let Some(start) = follow.start {
        encoder.encode(&StreamEvent::Start(start), &mut head);
    }
    Ok(Turn {
        conversation,
        stream: follow.stream,
        after: follow.after_seq,
        head,
        encoder,
    })
}

/// The running answer, after the approvals and tool outputs of `last` were applied: from
/// just after the last wait they answer, as the same message (`start` with its id).
async fn continue_answer<A: Adapter>(
    shared: &Arc<NodeState<A>>,
    link: &HttpLink<'_>,
    conversation: ConversationId,
    last: &Posted,
    message_id: Option<String>,
    size: &PacketSize,
) -> Result<Turn, Error> {
    let running = shared
        .engine
        .running_answer(&conversation)
        .await?
        .ok_or(Error::NotFound(
            "no answer is running in this conversation: nothing to continue",
        ))?;
    let message_id = MessageId::parse(message_id.unwrap_or_else(|| last.id.clone()))?;
    // The message continued must be the running answer's: another one (its answer over, and
    // someone else's running now) would get an answer that is not its own.
    let running_message = sse::answer_message_id(&shared.hub, &running.stream_id).await?;
    if running_message.as_ref() != Some(&message_id) {
        return Err(Error::Conflict(
            "the answer this message continues is no longer running",
        ));
    }
    let answered = last.answered();
    let waited: Vec<Waited<'_>> = answered
        .iter()
        .map(|a| match a {
            Answered::Approval { approval_id, .. } => Waited::Approval(approval_id),
            Answered::Output { tool_call_id, .. } => Waited::ClientCall(tool_call_id),
        })
        .collect();
    let after =
        sse::continue_from(&shared.engine, &running.stream_id, &waited, running.seq).await?;
    for answered in answered {
        let (event, command) = match answered {
            Answered::Approval {
                approval_id,
                approved,
                reason,
            } => (
                ClientEvent::ApproveTool,
                Command::Approve {
                    conversation: Some(conversation.clone()),
                    approval: approval_id,
                    approved,
                    reason,
                },
            ),
            Answered::Output {
                tool_call_id,
                result,
            } => (
                ClientEvent::SubmitToolResult,
                Command::SubmitToolResult {
                    conversation: conversation.clone(),
                    tool_call_id,
                    result,
                },
            ),
        };
        match run(shared, link, event, command, size).await {
            // Decided already (by another member, or this same request retried), or not a
            // call this answer waits for.
            Ok(_) | Err(Error::Conflict(_) | Error::NotFound(_)) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(Turn {
        conversation,
        stream: running.stream_id,
        after,
        head: vec![UiChunk::Start { message_id }],
        encoder: Encoder::default(),
    })
}

/// The answer running in `conversation` from its start, for a client that reconnects (`GET
/// .../stream`, a WebSocket `resume`); `None` when none runs. The waits it passed are
/// replayed as they were, and it stops only at the one it waits for now.
pub(super) async fn resume_turn<A: Adapter>(
    shared: &Arc<NodeState<A>>,
    caller: &Caller,
    conversation: ConversationId,
) -> Result<Option<Turn>, Error> {
    // Access first: someone without it learns nothing, not even that nothing runs. A chat
    // that never ran is not an error: `useChat({resume:true})` asks on every page load.
    match shared
        .engine
        .authorize(caller.identity(), &conversation)
        .await
    {
        Ok(_) => {}
        Err(Error::NotFound(_)) => return Ok(None),
        Err(e) => return Err(e),
    }
    let Some(running) = shared.engine.running_answer(&conversation).await? else {
        return Ok(None);
    };
    let link = HttpLink { caller, sse: true };
    let resume = Command::Resume {
        conversation: Some(conversation.clone()),
        stream: running.stream_id.clone(),
        last_seq: 0,
    };
    let size = PacketSize::default();
    let acked = match run(shared, &link, ClientEvent::ResumeStream, resume, &size).await {
        Ok(acked) => acked,
        // Ended between the two looks.
        Err(Error::NotFound(_)) => return Ok(None),
        Err(e) => return Err(e),
    };
    let Some(follow) = acked.follow else {
        return Ok(None);
    };
    let Some(message_id) = sse::answer_message_id(&shared.hub, &follow.stream).await? else {
        return Ok(None);
    };
    let waiting = running
        .pending_approval
        .map(|a| a.approval_id.to_string())
        .or(running.pending_tool_call.map(|c| c.tool_call_id));
    let mut head = Vec::new();
    let mut encoder = Encoder::replaying(running.seq, waiting);
    let start = marie_core::StreamStart {
        conversation_id: conversation.clone(),
        stream_id: follow.stream.clone(),
        message_id,
        parent_id: None,
        assistant: None,
        status: marie_core::StartStatus::Streaming,
    };
    encoder.encode(&StreamEvent::Start(start), &mut head);
    Ok(Some(Turn {
        conversation,
        stream: follow.stream,
        after: follow.after_seq,
        head,
        encoder,
    }))
}

/// The chunks of a turn: its head, then its followed events encoded, up to the answer's
/// end or its next wait for a person.
pub(super) async fn chunks<A: Adapter>(
    shared: &Arc<NodeState<A>>,
    turn: Turn,
) -> impl Stream<Item = UiChunk> + Send + 'static {
    let events = sse::events(&shared.hub, turn.conversation, turn.stream, turn.after).await;
    futures_util::stream::iter(turn.head).chain(sse::encoded(events, turn.encoder))
}

/// `POST /api/ai-sdk/chat`.
pub(super) async fn chat<A: Adapter>(
    State(shared): State<Arc<NodeState<A>>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, HttpError> {
    let caller = identify(&shared, &headers, None).await?;
    let size = PacketSize::text(body.len());
    let request: ChatRequest = serde_json::from_slice(&body)
        .map_err(|e| Error::BadRequest(format!("invalid body: {e}")))?;
    let turn = take_turn(&shared, &caller, request, &size).await?;
    Ok(ui_message_stream(chunks(&shared, turn).await))
}

/// The caller and the conversation of a route that reads (`.../stream`, `.../messages`),
/// after the checks of any request (credentials still valid, the request rate).
async fn reader<A: Adapter>(
    shared: &Arc<NodeState<A>>,
    headers: &HeaderMap,
    id: String,
) -> Result<(Caller, ConversationId), HttpError> {
    let caller = identify(shared, headers, None).await?;
    commands::admit(shared, &caller, &PacketSize::default())?;
    Ok((caller, ConversationId::parse(id)?))
}

/// `GET /api/ai-sdk/chat/{id}/stream`: the running answer from its start, or `204`.
pub(super) async fn stream<A: Adapter>(
    State(shared): State<Arc<NodeState<A>>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, HttpError> {
    let (caller, conversation) = reader(&shared, &headers, id).await?;
    match resume_turn(&shared, &caller, conversation).await? {
        Some(turn) => Ok(ui_message_stream(chunks(&shared, turn).await)),
        None => Ok(StatusCode::NO_CONTENT.into_response()),
    }
}

/// `GET /api/ai-sdk/chat/{id}/messages`: the active branch as `UIMessage[]`.
pub(super) async fn messages<A: Adapter>(
    State(shared): State<Arc<NodeState<A>>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, HttpError> {
    let (caller, conversation) = reader(&shared, &headers, id).await?;
    let history = shared
        .engine
        .history(caller.identity(), &conversation, None, Some(usize::MAX))
        .await?;
    let messages: Vec<_> = history.iter().map(messages::ui_message).collect();
    Ok(axum::Json(messages).into_response())
}

/// The UI message stream response: SSE of `data: {chunk}`, then `data: [DONE]`.
fn ui_message_stream(chunks: impl Stream<Item = UiChunk> + Send + 'static) -> Response {
    let events = chunks
        .map(|chunk| Event::default().data(json(&chunk)))
        .chain(futures_util::stream::once(async {
            Event::default().data("[DONE]")
        }))
        .map(Ok::<_, std::convert::Infallible>);
    let mut response = Sse::new(events)
        .keep_alive(KeepAlive::default())
        .into_response();
    let headers = response.headers_mut();
    headers.insert(
        "x-vercel-ai-ui-message-stream",
        HeaderValue::from_static("v1"),
    );
    headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

/// A chunk as JSON. Cannot fail: chunks are strings, numbers, booleans and JSON values.
pub(super) fn json(chunk: &UiChunk) -> String {
    serde_json::to_string(chunk).unwrap_or_else(|e| {
        tracing::error!(error = %e, "could not serialize a UI message chunk");
        r#"{"type":"error","errorText":"internal error"}"#.to_owned()
    })
}
