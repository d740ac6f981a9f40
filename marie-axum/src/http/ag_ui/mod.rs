//! `POST /api/ag-ui`: MARIE as an AG-UI agent (`docs/protocol.md` section 12), for
//! `@ag-ui/client`'s `HttpAgent` and the frontends built on it (CopilotKit). A run takes a
//! `RunAgentInput` (`threadId`: the conversation) and answers as SSE of AG-UI events, from
//! `RUN_STARTED` to exactly one `RUN_FINISHED` or `RUN_ERROR`.
//!
//! The server's history is the source of truth: of the posted messages, only the last one is
//! read: a user message is sent (with `tools` as client tools), and tool messages after the
//! last answer are the results of client tools' calls (`submit_tool_result`). An approval is
//! an interrupt (`RUN_FINISHED.outcome`), answered by the next run's `resume`. Every check of
//! a send applies: the command layer runs each command.
//!
//! - `mod.rs`: the route, and what a run does.
//! - `events.rs`: the events, and the encoder of an answer's events.

mod events;

use std::convert::Infallible;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;
use marie_core::{ApprovalId, ConversationId, Error, SendRequest, StreamId, ToolSpec, Waited};
use serde::Deserialize;
use serde_json::Value;
use socketioxide::adapter::Adapter;

use self::events::{AgUiEvent, Encoder};
use super::events::{HttpLink, command};
use super::{HttpError, identify, sse};
use crate::commands::{ClientEvent, Command};
use crate::guards::PacketSize;
use crate::state::NodeState;

/// `RunAgentInput`, as far as MARIE reads it (`state`, `context`, `forwardedProps` are the
/// app's, and let through).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RunAgentInput {
    thread_id: String,
    run_id: String,
    #[serde(default)]
    messages: Vec<InputMessage>,
    #[serde(default)]
    tools: Vec<ToolSpec>,
    #[serde(default)]
    resume: Vec<ResumeEntry>,
}

/// A posted message: what MARIE reads of it.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct InputMessage {
    id: String,
    role: String,
    #[serde(default)]
    content: Value,
    #[serde(default)]
    tool_call_id: Option<String>,
    #[serde(default)]
    error: Option<String>,
}

impl InputMessage {
    /// The text: a string, or the text parts of a list of content parts.
    fn text(&self) -> String {
        match &self.content {
            Value::String(text) => text.clone(),
            Value::Array(parts) => parts
                .iter()
                .filter(|p| p["type"] == "text")
                .filter_map(|p| p["text"].as_str())
                .collect::<Vec<_>>()
                .join("\n"),
            _ => String::new(),
        }
    }
}

/// `resume[]`: the answer to an interrupt (here, an approval).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ResumeEntry {
    interrupt_id: String,
    /// `resolved` or `cancelled`.
    status: String,
    #[serde(default)]
    payload: Value,
}

/// The answer a run streams, and from where.
struct Run {
    conversation: ConversationId,
    stream: StreamId,
    after: u64,
    encoder: Encoder,
}

/// `POST /api/ag-ui`.
pub(super) async fn run<A: Adapter>(
    State(shared): State<Arc<NodeState<A>>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, HttpError> {
    let caller = identify(&shared, &headers, None).await?;
    let size = PacketSize::text(body.len());
    let input: RunAgentInput = serde_json::from_slice(&body)
        .map_err(|e| Error::BadRequest(format!("invalid RunAgentInput: {e}")))?;
    let link = HttpLink {
        caller: &caller,
        sse: true,
    };
    let run = start(&shared, &link, input, &size).await?;
    let first = run.encoder.started();
    let followed = sse::events(&shared.hub, run.conversation, run.stream, run.after).await;
    let events = futures_util::stream::iter([first])
        .chain(sse::encoded(followed, run.encoder))
        .map(|event| Ok::<_, Infallible>(Event::default().data(json(&event))));
    Ok(Sse::new(events)
        .keep_alive(KeepAlive::default())
        .into_response())
}

/// What a run does before it streams: the thread joined (created for the caller when new),
/// then its last message answered, or the answer it continues told what the client did.
async fn start<A: Adapter>(
    shared: &Arc<NodeState<A>>,
    link: &HttpLink<'_>,
    input: RunAgentInput,
    size: &PacketSize,
) -> Result<Run, Error> {
    let conversation = ConversationId::parse(input.thread_id.clone())?;
    let join = Command::Join(conversation.clone());
    command(shared, link, ClientEvent::JoinConversation, join, size).await?;
    let last = input
        .messages
        .last()
        .ok_or_else(|| Error::BadRequest("`messages` is empty".into()))?;
    if last.role == "user" && input.resume.is_empty() {
        let send = Command::Send(SendRequest {
            conversation_id: conversation.clone(),
            message: last.text(),
            stream: true,
            client_message_id: Some(last.id.clone()),
            on_busy: None,
            attachments: Vec::new(),
            answer: Some(true),
            client_tools: input.tools,
        });
        let acked = command(shared, link, ClientEvent::SendMessage, send, size).await?;
        let follow = acked
            .follow
            .ok_or(Error::NotFound("the send started no answer to stream"))?;
        let message_id = follow
            .start
            .map(|s| s.message_id)
            .ok_or(Error::NotFound("the send started no answer to stream"))?;
        return Ok(Run {
            conversation,
            stream: follow.stream,
            after: follow.after_seq,
            encoder: Encoder::new(input.thread_id, input.run_id, message_id, false, Vec::new()),
        });
    }
    // A run that continues the answer: from just after the last wait it answers.
    let running = shared
        .engine
        .running_answer(&conversation)
        .await?
        .ok_or(Error::NotFound(
            "no answer is running in this thread: nothing to continue",
        ))?;
    let approvals = input
        .resume
        .iter()
        .map(|entry| Ok((ApprovalId::parse(entry.interrupt_id.clone())?, entry)))
        .collect::<Result<Vec<_>, Error>>()?;
    // The tool messages after the last answer: the client's results.
    let results: Vec<(String, &InputMessage)> = input
        .messages
        .iter()
        .rev()
        .take_while(|m| m.role == "tool")
        .filter_map(|m| Some((m.tool_call_id.clone()?, m)))
        .collect();
    let waited: Vec<Waited<'_>> = approvals
        .iter()
        .map(|(id, _)| Waited::Approval(id))
        .chain(results.iter().map(|(id, _)| Waited::ClientCall(id)))
        .collect();
    let after =
        sse::continue_from(&shared.engine, &running.stream_id, &waited, running.seq).await?;
    let mut told = false;
    for (approval, entry) in approvals {
        let approve = Command::Approve {
            conversation: Some(conversation.clone()),
            approval,
            approved: entry.status == "resolved"
                && entry.payload.get("approved").and_then(Value::as_bool) != Some(false),
            reason: entry.payload["reason"].as_str().map(str::to_owned),
        };
        told |= applied(command(shared, link, ClientEvent::ApproveTool, approve, size).await)?;
    }
    let mut answered = Vec::new();
    for (tool_call_id, message) in results {
        let result = match &message.error {
            Some(error) => Err(error.clone()),
            None => {
                let text = message.text();
                Ok(serde_json::from_str(&text).unwrap_or(Value::String(text)))
            }
        };
        let submit = Command::SubmitToolResult {
            conversation: conversation.clone(),
            tool_call_id: tool_call_id.clone(),
            result,
        };
        let outcome = command(shared, link, ClientEvent::SubmitToolResult, submit, size).await;
        if applied(outcome)? {
            told = true;
            answered.push(tool_call_id);
        }
    }
    if !told {
        return Err(Error::BadRequest(
            "the last message is not a user message, and the run answers no tool call or interrupt"
                .into(),
        ));
    }
    let message_id = sse::answer_message_id(&shared.hub, &running.stream_id)
        .await?
        .ok_or(Error::NotFound("the answer has ended"))?;
    Ok(Run {
        conversation,
        stream: running.stream_id,
        after,
        encoder: Encoder::new(input.thread_id, input.run_id, message_id, true, answered),
    })
}

/// Whether a decision was taken: one already taken (this run retried, or another member
/// first) or unknown to the answer still lets the run follow it.
fn applied(outcome: Result<crate::commands::Acked, Error>) -> Result<bool, Error> {
    match outcome {
        Ok(_) | Err(Error::Conflict(_)) => Ok(true),
        Err(Error::NotFound(_)) => Ok(false),
        Err(e) => Err(e),
    }
}

/// An event as JSON. Cannot fail: events are strings and numbers.
fn json(event: &AgUiEvent) -> String {
    serde_json::to_string(event).unwrap_or_else(|e| {
        tracing::error!(error = %e, "could not serialize an AG-UI event");
        r#"{"type":"RUN_ERROR","message":"internal error","code":"internal"}"#.to_owned()
    })
}
