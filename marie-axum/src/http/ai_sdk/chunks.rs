//! [`UiChunk`]: the AI SDK's UI message stream chunks, and [`Encoder`], which turns an
//! answer's [`StreamEvent`]s into them, once, for every transport that speaks them (the
//! HTTP endpoint, the WebSocket one, and the TypeScript client's transport mirrors it).
//!
//! Written by hand: no Rust crate models the `ai` package's chunks. They are checked against
//! the real package (`ai` 7, its `uiMessageChunkSchema`) in `e2e/ai-sdk*.test.mjs`. An optional
//! field is left out rather than sent as `null`: the package's schemas refuse `null` there.

use std::collections::HashSet;

use marie_core::{EndStatus, FinishReason, MessageId, StreamEvent};
use serde::Serialize;
use serde_json::Value;

/// One chunk of the AI SDK's UI message stream.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(
    tag = "type",
    rename_all = "kebab-case",
    rename_all_fields = "camelCase"
)]
pub(crate) enum UiChunk {
    /// The assistant message begins (or continues, with the same id).
    Start {
        message_id: MessageId,
    },
    /// A model step begins.
    StartStep,
    /// A model step ended.
    FinishStep,
    /// The current step failed and is asked again: its parts are dropped (`stream_reset`).
    ResetStep,
    TextStart {
        id: String,
    },
    TextDelta {
        id: String,
        delta: String,
    },
    TextEnd {
        id: String,
    },
    ReasoningStart {
        id: String,
    },
    ReasoningDelta {
        id: String,
        delta: String,
    },
    ReasoningEnd {
        id: String,
    },
    ToolInputStart {
        tool_call_id: String,
        tool_name: String,
    },
    ToolInputDelta {
        tool_call_id: String,
        input_text_delta: String,
    },
    ToolInputAvailable {
        tool_call_id: String,
        tool_name: String,
        input: Value,
    },
    ToolApprovalRequest {
        approval_id: String,
        tool_call_id: String,
    },
    ToolApprovalResponse {
        approval_id: String,
        approved: bool,
        #[serde(skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    ToolOutputAvailable {
        tool_call_id: String,
        output: Value,
    },
    ToolOutputError {
        tool_call_id: String,
        error_text: String,
    },
    ToolOutputDenied {
        tool_call_id: String,
    },
    Finish {
        #[serde(skip_serializing_if = "Option::is_none")]
        finish_reason: Option<&'static str>,
    },
    Error {
        error_text: String,
    },
    Abort {
        #[serde(skip_serializing_if = "Option::is_none")]
        reason: Option<&'static str>,
    },
}

/// What the stream does after an event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Flow {
    /// Goes on.
    More,
    /// The answer waits for a person (an approval, a client tool's result): a transport
    /// whose client must answer before it goes on (`useChat` sends the answer only once the
    /// response ended) ends its response here; the answer itself keeps waiting.
    Paused,
    /// The answer ended.
    Ended,
}

impl crate::http::sse::Encode for Encoder {
    type Item = UiChunk;

    fn encode_event(&mut self, event: &StreamEvent, out: &mut Vec<UiChunk>) -> bool {
        // `start` is the turn's head: the followed one (live, or the log's) is not repeated.
        if matches!(event, StreamEvent::Start(_)) {
            return false;
        }
        self.encode(event, out) != Flow::More
    }
}

/// The part of the message open now.
#[derive(Debug)]
enum Open {
    Text(String),
    Reasoning(String),
}

/// Turns one answer's events into UI message chunks, keeping what the chunks need: the part
/// open, whether a step is open, the tool calls begun.
#[derive(Debug, Default)]
pub(crate) struct Encoder {
    open: Option<Open>,
    in_step: bool,
    /// A tool result came last: the next text, reasoning or call begins a new model step.
    after_tools: bool,
    /// The last approval was a denial: the call's result is `tool-output-denied`.
    denied: bool,
    begun: HashSet<String>,
    parts: u32,
    /// Of a replay (a resume from the start): the waits up to this `seq` were answered
    /// already, except `waiting`, the one the answer waits for now; they do not end the
    /// response. A live stream ends at every wait.
    answered_up_to: u64,
    waiting: Option<String>,
}

impl Encoder {
    /// An encoder that replays an answer from its start: the waits it passed (up to `seq`)
    /// go by, and it stops at `waiting` (an approval's id or a client call's), or at a wait
    /// that comes after `seq`.
    pub(crate) fn replaying(seq: u64, waiting: Option<String>) -> Self {
        Self {
            answered_up_to: seq,
            waiting,
            ..Self::default()
        }
    }

    /// Whether the wait `id` asked at `seq` ends the response.
    fn stops_at(&self, seq: u64, id: &str) -> bool {
        seq > self.answered_up_to || self.waiting.as_deref() == Some(id)
    }
}

impl Encoder {
    /// The chunks of `event`, appended to `out`, and what the stream does next.
    pub(crate) fn encode(&mut self, event: &StreamEvent, out: &mut Vec<UiChunk>) -> Flow {
        match event {
            StreamEvent::Start(start) => {
                out.push(UiChunk::Start {
                    message_id: start.message_id.clone(),
                });
                out.push(UiChunk::StartStep);
                self.in_step = true;
            }
            StreamEvent::Chunk(chunk) => {
                let id = self.open_text(out);
                out.push(UiChunk::TextDelta {
                    id,
                    delta: chunk.content.clone(),
                });
            }
            StreamEvent::Reasoning(reasoning) => {
                let id = self.open_reasoning(out);
                out.push(UiChunk::ReasoningDelta {
                    id,
                    delta: reasoning.content.clone(),
                });
            }
            StreamEvent::ToolCallStart(call) => {
                self.step(out);
                self.close(out);
                self.begin(out, &call.tool_call_id, &call.name);
            }
            StreamEvent::ToolCallDelta(delta) if self.begun.contains(&delta.tool_call_id) => {
                out.push(UiChunk::ToolInputDelta {
                    tool_call_id: delta.tool_call_id.clone(),
                    input_text_delta: delta.delta.clone(),
                });
            }
            StreamEvent::ToolCall(call) => {
                self.step(out);
                self.close(out);
                self.begin(out, &call.tool_call_id, &call.name);
                out.push(UiChunk::ToolInputAvailable {
                    tool_call_id: call.tool_call_id.clone(),
                    tool_name: call.name.clone(),
                    input: call.arguments.clone(),
                });
                if call.client && self.stops_at(call.seq, &call.tool_call_id) {
                    return self.pause(out);
                }
            }
            StreamEvent::ApprovalRequest(request) => {
                self.close(out);
                out.push(UiChunk::ToolApprovalRequest {
                    approval_id: request.approval_id.to_string(),
                    tool_call_id: request.tool_call_id.clone(),
                });
                if self.stops_at(request.seq, request.approval_id.as_str()) {
                    return self.pause(out);
                }
            }
            StreamEvent::Approval(decision) => {
                self.denied = !decision.approved;
                out.push(UiChunk::ToolApprovalResponse {
                    approval_id: decision.approval_id.to_string(),
                    approved: decision.approved,
                    reason: decision.reason.clone(),
                });
            }
            StreamEvent::ToolResult(result) => {
                self.close(out);
                let tool_call_id = result.tool_call_id.clone();
                out.push(match (&result.output, &result.error) {
                    _ if std::mem::take(&mut self.denied) => {
                        UiChunk::ToolOutputDenied { tool_call_id }
                    }
                    (_, Some(error)) => UiChunk::ToolOutputError {
                        tool_call_id,
                        error_text: error.clone(),
                    },
                    (output, None) => UiChunk::ToolOutputAvailable {
                        tool_call_id,
                        output: output.clone().unwrap_or(Value::Null),
                    },
                });
                self.after_tools = true;
            }
            // Nothing of the failed step was sent yet (it failed before saying anything after
            // the tools' results): nothing to drop. A `reset-step` now would drop the step
            // before it, the tool calls, which the retry does not repeat.
            StreamEvent::Reset(_) if self.after_tools => {}
            StreamEvent::Reset(_) => {
                // The client drops the step's parts itself; what was open is gone with them.
                self.open = None;
                out.push(UiChunk::ResetStep);
            }
            StreamEvent::End(end) => {
                self.close(out);
                if std::mem::take(&mut self.in_step) {
                    out.push(UiChunk::FinishStep);
                }
                out.push(match end.status {
                    EndStatus::Complete => UiChunk::Finish {
                        finish_reason: Some(finish_reason(&end.finish_reason)),
                    },
                    EndStatus::Cancelled => UiChunk::Abort {
                        reason: Some("cancelled"),
                    },
                    EndStatus::Interrupted => UiChunk::Abort {
                        reason: Some("interrupted"),
                    },
                });
                return Flow::Ended;
            }
            StreamEvent::Error(failed) => {
                self.close(out);
                out.push(UiChunk::Error {
                    error_text: failed.error.clone(),
                });
                return Flow::Ended;
            }
            // Not part of the assistant message: the question, the queue, an unstreamed answer
            // (and what a later version adds).
            _ => {}
        }
        Flow::More
    }

    /// Ends the response at a wait: the step and the message, for now.
    fn pause(&mut self, out: &mut Vec<UiChunk>) -> Flow {
        self.close(out);
        if std::mem::take(&mut self.in_step) {
            out.push(UiChunk::FinishStep);
        }
        out.push(UiChunk::Finish {
            finish_reason: Some("tool-calls"),
        });
        Flow::Paused
    }

    /// Opens a model step if none is, or a new one after tool results.
    fn step(&mut self, out: &mut Vec<UiChunk>) {
        if std::mem::take(&mut self.after_tools) && self.in_step {
            self.close(out);
            out.push(UiChunk::FinishStep);
            self.in_step = false;
        }
        if !self.in_step {
            out.push(UiChunk::StartStep);
            self.in_step = true;
        }
    }

    fn begin(&mut self, out: &mut Vec<UiChunk>, tool_call_id: &str, name: &str) {
        if self.begun.insert(tool_call_id.to_owned()) {
            out.push(UiChunk::ToolInputStart {
                tool_call_id: tool_call_id.to_owned(),
                tool_name: name.to_owned(),
            });
        }
    }

    fn open_text(&mut self, out: &mut Vec<UiChunk>) -> String {
        self.step(out);
        if let Some(Open::Text(id)) = &self.open {
            return id.clone();
        }
        self.close(out);
        let id = self.next_id("text");
        out.push(UiChunk::TextStart { id: id.clone() });
        self.open = Some(Open::Text(id.clone()));
        id
    }

    fn open_reasoning(&mut self, out: &mut Vec<UiChunk>) -> String {
        self.step(out);
        if let Some(Open::Reasoning(id)) = &self.open {
            return id.clone();
        }
        self.close(out);
        let id = self.next_id("reasoning");
        out.push(UiChunk::ReasoningStart { id: id.clone() });
        self.open = Some(Open::Reasoning(id.clone()));
        id
    }

    fn close(&mut self, out: &mut Vec<UiChunk>) {
        match self.open.take() {
            Some(Open::Text(id)) => out.push(UiChunk::TextEnd { id }),
            Some(Open::Reasoning(id)) => out.push(UiChunk::ReasoningEnd { id }),
            None => {}
        }
    }

    /// A part id, new in this response (the SDK keeps a part per id it is told to start).
    fn next_id(&mut self, kind: &str) -> String {
        self.parts += 1;
        format!("{kind}-{}", self.parts)
    }
}

/// The SDK's `finishReason` of an answer that completed.
fn finish_reason(reason: &FinishReason) -> &'static str {
    match reason {
        FinishReason::Stop => "stop",
        FinishReason::Length | FinishReason::Budget => "length",
        FinishReason::ContentFilter => "content-filter",
        FinishReason::ToolCalls | FinishReason::MaxSteps => "tool-calls",
        FinishReason::Interrupted => "interrupted",
        _ => "other",
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    /// An answer's event from its wire form (`{event, data}`), ids filled in.
    fn ev(name: &str, mut data: Value) -> StreamEvent {
        data["conversation_id"] = json!("c");
        data["stream_id"] = json!("s");
        serde_json::from_value(json!({"event": name, "data": data})).unwrap()
    }

    fn types(chunks: &[UiChunk]) -> Vec<String> {
        chunks
            .iter()
            .map(|c| {
                serde_json::to_value(c).unwrap()["type"]
                    .as_str()
                    .unwrap()
                    .to_owned()
            })
            .collect()
    }

    fn chunk(seq: u64, content: &str) -> StreamEvent {
        ev(
            "stream_chunk",
            json!({"seq": seq, "content": content, "done": false, "tokens_used": seq}),
        )
    }

    #[test]
    fn an_answer_with_reasoning_a_tool_and_a_reset_encodes_as_the_sdk_reads_it() {
        let events = [
            ev(
                "stream_start",
                json!({"message_id": "m1", "status": "streaming"}),
            ),
            ev("stream_reasoning", json!({"seq": 1, "content": "hmm"})),
            chunk(2, "Let me "),
            ev(
                "tool_call_start",
                json!({"seq": 3, "tool_call_id": "t1", "name": "calc"}),
            ),
            ev(
                "tool_call_delta",
                json!({"seq": 4, "tool_call_id": "t1", "delta": "{}"}),
            ),
            ev(
                "tool_call",
                json!({"seq": 5, "tool_call_id": "t1", "name": "calc", "arguments": {}}),
            ),
            ev(
                "tool_result",
                json!({"seq": 6, "tool_call_id": "t1", "name": "calc", "output": 84, "duration_ms": 1}),
            ),
            chunk(7, "It is "),
            ev(
                "stream_reset",
                json!({"seq": 8, "after_seq": 6, "attempt": 1, "reason": "x"}),
            ),
            chunk(9, "84."),
            ev(
                "stream_end",
                json!({"message_id": "m1", "full_content": "84.", "status": "complete",
                       "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
                       "finish_reason": "stop"}),
            ),
        ];
        let mut encoder = Encoder::default();
        let mut out = Vec::new();
        let flows: Vec<Flow> = events.iter().map(|e| encoder.encode(e, &mut out)).collect();
        assert_eq!(flows.last(), Some(&Flow::Ended));
        assert!(flows[..flows.len() - 1].iter().all(|f| *f == Flow::More));
        assert_eq!(
            types(&out),
            [
                "start",
                "start-step",
                "reasoning-start",
                "reasoning-delta",
                "reasoning-end",
                "text-start",
                "text-delta",
                "text-end",
                "tool-input-start",
                "tool-input-delta",
                "tool-input-available",
                "tool-output-available",
                "finish-step",
                "start-step",
                "text-start",
                "text-delta",
                // The failed attempt's step is dropped by the client; the retry's text is a
                // new part of the same step.
                "reset-step",
                "text-start",
                "text-delta",
                "text-end",
                "finish-step",
                "finish"
            ]
        );
        // Ids are fresh per part, and optional fields are left out, never null.
        let wire: Vec<Value> = out
            .iter()
            .map(|c| serde_json::to_value(c).unwrap())
            .collect();
        assert_eq!(wire[0], json!({"type": "start", "messageId": "m1"}));
        assert_eq!(wire[14]["id"], json!("text-3"));
        assert_eq!(wire[17]["id"], json!("text-4"));
        assert_eq!(
            wire.last().unwrap(),
            &json!({"type": "finish", "finishReason": "stop"})
        );
        assert!(
            wire.iter()
                .all(|c| c.as_object().unwrap().values().all(|v| !v.is_null()))
        );
    }

    #[test]
    fn a_reset_before_the_step_after_tools_said_anything_keeps_the_tools_step() {
        let mut encoder = Encoder::default();
        let mut out = Vec::new();
        for event in [
            ev(
                "stream_start",
                json!({"message_id": "m1", "status": "streaming"}),
            ),
            ev(
                "tool_call",
                json!({"seq": 1, "tool_call_id": "t1", "name": "calc", "arguments": {}}),
            ),
            ev(
                "tool_result",
                json!({"seq": 2, "tool_call_id": "t1", "name": "calc", "output": 84, "duration_ms": 1}),
            ),
            ev(
                "stream_reset",
                json!({"seq": 3, "after_seq": 2, "attempt": 1, "reason": "x"}),
            ),
            chunk(4, "84."),
        ] {
            encoder.encode(&event, &mut out);
        }
        assert_eq!(
            types(&out),
            [
                "start",
                "start-step",
                "tool-input-start",
                "tool-input-available",
                "tool-output-available",
                "finish-step",
                "start-step",
                "text-start",
                "text-delta"
            ]
        );
    }

    #[test]
    fn a_replay_passes_the_waits_already_answered_and_stops_at_the_one_pending() {
        let request = |seq: u64, approval: &str, call: &str| {
            ev(
                "tool_approval_request",
                json!({"seq": seq, "approval_id": approval, "tool_call_id": call,
                       "name": "send_email", "arguments": {}, "expires_at": 1}),
            )
        };
        let decided = ev(
            "tool_approval",
            json!({"seq": 3, "approval_id": "a1", "approved": true, "decided_by": "bob"}),
        );
        // Replayed while the answer waits for a2 (its last seq sent: 6).
        let mut replay = Encoder::replaying(6, Some("a2".into()));
        let mut out = Vec::new();
        assert_eq!(replay.encode(&request(2, "a1", "t1"), &mut out), Flow::More);
        assert_eq!(replay.encode(&decided, &mut out), Flow::More);
        assert_eq!(
            replay.encode(&request(6, "a2", "t2"), &mut out),
            Flow::Paused
        );
        // A wait that comes after the replay caught up ends it too.
        let mut caught_up = Encoder::replaying(6, None);
        assert_eq!(
            caught_up.encode(&request(7, "a3", "t3"), &mut Vec::new()),
            Flow::Paused
        );
        assert_eq!(
            Encoder::replaying(6, None).encode(&request(2, "a1", "t1"), &mut Vec::new()),
            Flow::More
        );
    }

    #[test]
    fn a_wait_for_a_person_ends_the_response_and_a_denial_is_output_denied() {
        let mut encoder = Encoder::default();
        let mut out = Vec::new();
        encoder.encode(
            &ev(
                "tool_call",
                json!({"seq": 1, "tool_call_id": "t1", "name": "send_email", "arguments": {}}),
            ),
            &mut out,
        );
        let request = ev(
            "tool_approval_request",
            json!({"seq": 2, "approval_id": "a1", "tool_call_id": "t1", "name": "send_email",
                   "arguments": {}, "expires_at": 1}),
        );
        assert_eq!(encoder.encode(&request, &mut out), Flow::Paused);
        assert_eq!(
            types(&out),
            [
                "start-step",
                "tool-input-start",
                "tool-input-available",
                "tool-approval-request",
                "finish-step",
                "finish"
            ]
        );
        // The continuation: the denial, then the call's result as denied.
        let mut next = Encoder::default();
        let mut out = Vec::new();
        next.encode(
            &ev(
                "tool_approval",
                json!({"seq": 3, "approval_id": "a1", "approved": false, "decided_by": "bob"}),
            ),
            &mut out,
        );
        next.encode(
            &ev(
                "tool_result",
                json!({"seq": 4, "tool_call_id": "t1", "name": "send_email",
                       "error": "not run: bob denied the call", "duration_ms": 0}),
            ),
            &mut out,
        );
        assert_eq!(
            types(&out),
            ["tool-approval-response", "tool-output-denied"]
        );
        // A client tool's call waits too.
        let mut client = Encoder::default();
        let call = ev(
            "tool_call",
            json!({"seq": 1, "tool_call_id": "t2", "name": "get_time", "arguments": {},
                   "client": true}),
        );
        assert_eq!(client.encode(&call, &mut Vec::new()), Flow::Paused);
    }
}
