//! [`AgUiEvent`]: the AG-UI protocol's events (1.0), and [`Encoder`], which turns an
//! answer's [`StreamEvent`]s into one run's events.
//!
//! Written by hand: the `ag-ui` crate is an unofficial alpha that does not follow 1.0; these
//! types are checked against the official `@ag-ui/core` schemas in `e2e/ag-ui.test.mjs`. An
//! optional field is left out rather than sent as `null`, which the schemas refuse.

use marie_core::{EndStatus, MessageId, StreamEvent};
use serde::Serialize;

/// One AG-UI event.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(
    tag = "type",
    rename_all = "SCREAMING_SNAKE_CASE",
    rename_all_fields = "camelCase"
)]
pub(super) enum AgUiEvent {
    RunStarted {
        thread_id: String,
        run_id: String,
    },
    RunFinished {
        thread_id: String,
        run_id: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        outcome: Option<Outcome>,
    },
    RunError {
        message: String,
        code: &'static str,
    },
    TextMessageStart {
        message_id: String,
        role: &'static str,
    },
    TextMessageContent {
        message_id: String,
        delta: String,
    },
    TextMessageEnd {
        message_id: String,
    },
    ReasoningStart {
        message_id: String,
    },
    ReasoningMessageStart {
        message_id: String,
        role: &'static str,
    },
    ReasoningMessageContent {
        message_id: String,
        delta: String,
    },
    ReasoningMessageEnd {
        message_id: String,
    },
    ReasoningEnd {
        message_id: String,
    },
    ToolCallStart {
        tool_call_id: String,
        tool_call_name: String,
    },
    ToolCallArgs {
        tool_call_id: String,
        delta: String,
    },
    ToolCallEnd {
        tool_call_id: String,
    },
    ToolCallResult {
        message_id: String,
        tool_call_id: String,
        content: String,
        role: &'static str,
    },
}

/// `RUN_FINISHED.outcome`.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(
    tag = "type",
    rename_all = "lowercase",
    rename_all_fields = "camelCase"
)]
pub(super) enum Outcome {
    /// Done, or waiting for the client's tools (`pendingToolCallIds`).
    Success { pending_tool_call_ids: Vec<String> },
    /// Waiting for a person: an approval, answered by the next run's `resume`.
    Interrupt { interrupts: Vec<Interrupt> },
    /// Cancelled by a member.
    Cancelled {},
}

/// A pause of the run (`RUN_FINISHED.outcome.interrupts`).
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct Interrupt {
    /// The approval's id: what `resume[].interruptId` names.
    pub(super) id: String,
    pub(super) reason: &'static str,
    pub(super) message: String,
    pub(super) tool_call_id: String,
}

impl crate::http::sse::Encode for Encoder {
    type Item = AgUiEvent;

    fn encode_event(&mut self, event: &StreamEvent, out: &mut Vec<AgUiEvent>) -> bool {
        self.encode(event, out)
    }
}

/// The message open now.
#[derive(Debug)]
enum Open {
    Text(String),
    Reasoning(String),
}

/// Turns one answer's events into one run's events. Message ids are the answer's message
/// id, then that id with a counter: unique in the thread, as AG-UI clients need (they append
/// to a message they know by id).
#[derive(Debug)]
pub(super) struct Encoder {
    thread_id: String,
    run_id: String,
    message_id: MessageId,
    /// Of a run that continues an answer begun in an earlier run: its message ids are the
    /// answer's with this run's id, so that none repeats one an earlier run gave.
    continuing: bool,
    /// The client tools' calls this run brought the results of: the client holds them
    /// already, as its own tool messages.
    answered: Vec<String>,
    open: Option<Open>,
    /// Tool calls started and not ended.
    calls: Vec<String>,
    messages: u32,
}

impl Encoder {
    /// An encoder of run `run_id` of thread `thread_id`, for the answer that becomes
    /// `message_id` (begun in an earlier run when `continuing`, which brought the results of
    /// the client's calls `answered`).
    pub(super) fn new(
        thread_id: String,
        run_id: String,
        message_id: MessageId,
        continuing: bool,
        answered: Vec<String>,
    ) -> Self {
        Self {
            thread_id,
            run_id,
            message_id,
            continuing,
            answered,
            open: None,
            calls: Vec::new(),
            messages: 0,
        }
    }

    /// `RUN_STARTED`.
    pub(super) fn started(&self) -> AgUiEvent {
        AgUiEvent::RunStarted {
            thread_id: self.thread_id.clone(),
            run_id: self.run_id.clone(),
        }
    }

    /// The events of `event`, appended to `out`; `true` when the run is over (the answer
    /// ended, or waits for the client).
    pub(super) fn encode(&mut self, event: &StreamEvent, out: &mut Vec<AgUiEvent>) -> bool {
        match event {
            StreamEvent::Chunk(chunk) => {
                let id = match &self.open {
                    Some(Open::Text(id)) => id.clone(),
                    _ => {
                        self.close(out);
                        let id = self.next_id();
                        out.push(AgUiEvent::TextMessageStart {
                            message_id: id.clone(),
                            role: "assistant",
                        });
                        self.open = Some(Open::Text(id.clone()));
                        id
                    }
                };
                out.push(AgUiEvent::TextMessageContent {
                    message_id: id,
                    delta: chunk.content.clone(),
                });
            }
            StreamEvent::Reasoning(reasoning) => {
                let id = match &self.open {
                    Some(Open::Reasoning(id)) => id.clone(),
                    _ => {
                        self.close(out);
                        let id = self.next_id();
                        out.push(AgUiEvent::ReasoningStart {
                            message_id: id.clone(),
                        });
                        out.push(AgUiEvent::ReasoningMessageStart {
                            message_id: id.clone(),
                            role: "reasoning",
                        });
                        self.open = Some(Open::Reasoning(id.clone()));
                        id
                    }
                };
                out.push(AgUiEvent::ReasoningMessageContent {
                    message_id: id,
                    delta: reasoning.content.clone(),
                });
            }
            StreamEvent::ToolCallStart(call) => {
                self.close(out);
                self.start_call(out, &call.tool_call_id, &call.name);
            }
            StreamEvent::ToolCallDelta(delta) if self.calls.contains(&delta.tool_call_id) => {
                out.push(AgUiEvent::ToolCallArgs {
                    tool_call_id: delta.tool_call_id.clone(),
                    delta: delta.delta.clone(),
                });
            }
            StreamEvent::ToolCall(call) => {
                self.close(out);
                if !self.calls.contains(&call.tool_call_id) {
                    // A provider that gave the call whole: its arguments in one piece.
                    self.start_call(out, &call.tool_call_id, &call.name);
                    out.push(AgUiEvent::ToolCallArgs {
                        tool_call_id: call.tool_call_id.clone(),
                        delta: call.arguments.to_string(),
                    });
                }
                self.calls.retain(|c| *c != call.tool_call_id);
                out.push(AgUiEvent::ToolCallEnd {
                    tool_call_id: call.tool_call_id.clone(),
                });
                if call.client {
                    // The client runs it: this run ends, the next one brings its result.
                    self.finish(
                        out,
                        Some(Outcome::Success {
                            pending_tool_call_ids: vec![call.tool_call_id.clone()],
                        }),
                    );
                    return true;
                }
            }
            StreamEvent::ApprovalRequest(request) => {
                self.finish(
                    out,
                    Some(Outcome::Interrupt {
                        interrupts: vec![Interrupt {
                            id: request.approval_id.to_string(),
                            reason: "tool_approval",
                            message: format!("approve the call of {}", request.name),
                            tool_call_id: request.tool_call_id.clone(),
                        }],
                    }),
                );
                return true;
            }
            StreamEvent::ToolResult(result) if self.answered.contains(&result.tool_call_id) => {}
            StreamEvent::ToolResult(result) => {
                self.close(out);
                let content = match (&result.output, &result.error) {
                    (_, Some(error)) => error.clone(),
                    (Some(output), None) => output.to_string(),
                    (None, None) => "null".to_owned(),
                };
                out.push(AgUiEvent::ToolCallResult {
                    message_id: self.next_id(),
                    tool_call_id: result.tool_call_id.clone(),
                    content,
                    role: "tool",
                });
            }
            StreamEvent::Reset(_) => {
                // AG-UI cannot take text back: what the failed attempt said stays in its
                // message, closed; the retry streams as a new one (docs/clients.md).
                self.close(out);
            }
            StreamEvent::End(end) => {
                let outcome = match end.status {
                    EndStatus::Complete => None,
                    EndStatus::Cancelled => Some(Outcome::Cancelled {}),
                    EndStatus::Interrupted => {
                        self.close_all(out);
                        out.push(AgUiEvent::RunError {
                            message:
                                "the server stopped before the answer was done; run again to resume"
                                    .into(),
                            code: "interrupted",
                        });
                        return true;
                    }
                };
                self.finish(out, outcome);
                return true;
            }
            StreamEvent::Error(failed) => {
                self.close_all(out);
                out.push(AgUiEvent::RunError {
                    message: failed.error.clone(),
                    code: failed.code.as_str(),
                });
                return true;
            }
            _ => {}
        }
        false
    }

    fn start_call(&mut self, out: &mut Vec<AgUiEvent>, tool_call_id: &str, name: &str) {
        self.calls.push(tool_call_id.to_owned());
        out.push(AgUiEvent::ToolCallStart {
            tool_call_id: tool_call_id.to_owned(),
            tool_call_name: name.to_owned(),
        });
    }

    /// Closes everything, then `RUN_FINISHED`: AG-UI refuses a run that ends with anything
    /// open.
    fn finish(&mut self, out: &mut Vec<AgUiEvent>, outcome: Option<Outcome>) {
        self.close_all(out);
        out.push(AgUiEvent::RunFinished {
            thread_id: self.thread_id.clone(),
            run_id: self.run_id.clone(),
            outcome,
        });
    }

    fn close_all(&mut self, out: &mut Vec<AgUiEvent>) {
        self.close(out);
        for tool_call_id in self.calls.drain(..) {
            out.push(AgUiEvent::ToolCallEnd { tool_call_id });
        }
    }

    fn close(&mut self, out: &mut Vec<AgUiEvent>) {
        match self.open.take() {
            Some(Open::Text(message_id)) => out.push(AgUiEvent::TextMessageEnd { message_id }),
            Some(Open::Reasoning(message_id)) => {
                out.push(AgUiEvent::ReasoningMessageEnd {
                    message_id: message_id.clone(),
                });
                out.push(AgUiEvent::ReasoningEnd { message_id });
            }
            None => {}
        }
    }

    /// The answer's message id first, then with a counter.
    fn next_id(&mut self) -> String {
        self.messages += 1;
        match (self.continuing, self.messages) {
            (false, 1) => self.message_id.to_string(),
            (false, n) => format!("{}-{n}", self.message_id),
            (true, n) => format!("{}-{}-{n}", self.message_id, self.run_id),
        }
    }
}
