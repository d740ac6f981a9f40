//! One user's chat with a provider through the engine (`marie_testkit::engine`, with a file
//! store): what a client of a conversation receives, without the transport, checked against
//! the protocol's rules.

use std::sync::Arc;

use marie_adapters::MemoryFileStore;
use marie_core::{
    Bytes, ChatEngine, ConversationId, EndStatus, EngineConfig, ErrorCode, FileId, Identity,
    LlmProvider, RecordingSink, SendRequest, StreamChunk, StreamEnd, StreamEvent, StreamFailed,
    StreamId, StreamReasoning, Tool, Upload,
};
use marie_testkit::engine::{Harness, conv, user};
use serde_json::{Value, json};

use super::fake::{FakeServer, WAIT};
use super::ms;

/// A provider's builder, as the tests configure one: what [`chat`] and [`retrying_chat`]
/// build (and unwrap).
pub trait ProviderBuilder {
    type Provider: LlmProvider;

    fn build_provider(self) -> Self::Provider;
}

#[cfg(feature = "openai")]
impl ProviderBuilder for marie_llm::OpenAiBuilder {
    type Provider = marie_llm::OpenAiProvider;

    fn build_provider(self) -> Self::Provider {
        self.build().unwrap()
    }
}

#[cfg(feature = "anthropic")]
impl ProviderBuilder for marie_llm::AnthropicBuilder {
    type Provider = marie_llm::AnthropicProvider;

    fn build_provider(self) -> Self::Provider {
        self.build().unwrap()
    }
}

#[cfg(feature = "ollama")]
impl ProviderBuilder for marie_llm::OllamaBuilder {
    type Provider = marie_llm::OllamaProvider;

    fn build_provider(self) -> Self::Provider {
        self.build().unwrap()
    }
}

/// A chat whose engine does not ask a failed step again: how each fault of the wire reaches
/// a client (the engine's retries are tested in `retries.rs` and marie-core).
pub async fn chat(provider: impl ProviderBuilder) -> Chat {
    Chat::new(
        provider.build_provider(),
        EngineConfig::default().mid_stream_retries(0),
    )
    .await
}

/// A chat with the engine's default `mid_stream_retries`, its backoff short.
pub async fn retrying_chat(provider: impl ProviderBuilder) -> Chat {
    Chat::new(
        provider.build_provider(),
        EngineConfig::default().retry_backoff(ms(20)),
    )
    .await
}

pub struct Chat {
    pub engine: ChatEngine,
    pub sink: Arc<RecordingSink>,
    pub user: Identity,
    pub conversation: ConversationId,
}

/// One answer as the room saw it.
#[derive(Debug)]
pub struct Answer {
    pub stream_id: StreamId,
    pub chunks: Vec<StreamChunk>,
    /// The `stream_reasoning` events, in order.
    pub reasoning: Vec<StreamReasoning>,
    /// Every event of the answer, in order.
    pub events: Vec<StreamEvent>,
    pub terminal: StreamEvent,
}

impl Chat {
    pub async fn new(provider: impl LlmProvider, config: EngineConfig) -> Self {
        Self::with_tools(provider, config, Vec::new()).await
    }

    /// A chat whose engine offers `tools` to the model.
    pub async fn with_tools(
        provider: impl LlmProvider,
        config: EngineConfig,
        tools: Vec<Arc<dyn Tool>>,
    ) -> Self {
        let Harness { engine, sink, .. } = Harness::builder(provider)
            .config(config)
            .with(move |builder| {
                let mut builder = builder.files(Arc::new(MemoryFileStore::new()));
                for tool in tools {
                    builder = builder.tool(tool);
                }
                builder
            })
            .build();
        let user = user("alice");
        let conversation = conv("talk");
        engine.join(&user, &conversation).await.expect("join");
        Self {
            engine,
            sink,
            user,
            conversation,
        }
    }

    /// Sends `message` and returns the answer's stream id at once.
    pub async fn send(&self, message: &str) -> StreamId {
        self.send_with_files(message, Vec::new()).await
    }

    /// Sends `message` with the uploaded `files` attached.
    pub async fn send_with_files(&self, message: &str, files: Vec<FileId>) -> StreamId {
        self.engine
            .send(
                &self.user,
                SendRequest {
                    client_tools: Default::default(),
                    conversation_id: self.conversation.clone(),
                    message: message.into(),
                    stream: true,
                    client_message_id: None,
                    on_busy: None,
                    attachments: files,
                    answer: None,
                },
            )
            .await
            .expect("send")
            .stream_id
    }

    /// Uploads a file to the conversation, as `POST /api/chat/files` does.
    pub async fn upload(&self, name: &str, data: &'static [u8]) -> FileId {
        self.engine
            .upload(
                &self.user,
                Upload {
                    conversation_id: self.conversation.clone(),
                    name: name.into(),
                    content_type: None,
                    data: Bytes::from_static(data),
                },
            )
            .await
            .expect("upload")
            .file_id
    }

    /// Waits for the first chunk of `stream`.
    pub async fn first_chunk(&self, stream: &StreamId) -> StreamChunk {
        let event = tokio::time::timeout(
            WAIT,
            self.sink
                .wait_for(|e| matches!(e, StreamEvent::Chunk(c) if c.stream_id == *stream)),
        )
        .await
        .expect("a first chunk in time");
        match event {
            StreamEvent::Chunk(c) => c,
            _ => unreachable!(),
        }
    }

    /// Waits for the end of `stream` and returns everything the room got of it, checking
    /// the protocol's rules on the way: one `stream_start` first, `seq` 1, 2, 3, ... with
    /// no gaps, no empty chunk, `tokens_used` increasing, one terminal event last.
    pub async fn finish(&self, stream: &StreamId) -> Answer {
        tokio::time::timeout(
            WAIT,
            self.sink.wait_for(|e| match e {
                StreamEvent::End(end) => end.stream_id == *stream,
                StreamEvent::Error(err) => err.stream_id == *stream,
                _ => false,
            }),
        )
        .await
        .unwrap_or_else(|_| {
            panic!(
                "the answer did not end within {WAIT:?}; events: {:#?}",
                self.sink.events()
            )
        });
        let events: Vec<StreamEvent> = self
            .sink
            .events()
            .into_iter()
            .filter(|e| e.stream_id() == Some(stream))
            .collect();
        assert!(
            matches!(events.first(), Some(StreamEvent::Start(_))),
            "{events:#?}"
        );
        let terminal = events.last().cloned().expect("a terminal event");
        assert!(terminal.is_terminal(), "{events:#?}");
        assert_eq!(
            events.iter().filter(|e| e.is_terminal()).count(),
            1,
            "exactly one terminal event: {events:#?}"
        );
        let chunks: Vec<StreamChunk> = events
            .iter()
            .filter_map(|e| match e {
                StreamEvent::Chunk(c) => Some(c.clone()),
                _ => None,
            })
            .collect();
        let seqs: Vec<u64> = events.iter().filter_map(StreamEvent::seq).collect();
        assert_eq!(
            seqs,
            (1..=seqs.len() as u64).collect::<Vec<_>>(),
            "seq without gaps, chunks and reasoning alike: {events:#?}"
        );
        let reasoning: Vec<StreamReasoning> = events
            .iter()
            .filter_map(|e| match e {
                StreamEvent::Reasoning(r) => Some(r.clone()),
                _ => None,
            })
            .collect();
        for (i, c) in chunks.iter().enumerate() {
            assert!(!c.content.is_empty());
            assert!(!c.done);
            assert_eq!(c.tokens_used, i as u64 + 1, "one token per delta");
        }
        Answer {
            stream_id: stream.clone(),
            chunks,
            reasoning,
            events,
            terminal,
        }
    }

    /// Sends `message` and waits for the whole answer.
    pub async fn ask(&self, message: &str) -> Answer {
        let stream = self.send(message).await;
        self.finish(&stream).await
    }
}

impl Answer {
    /// The content of each chunk, in order.
    pub fn pieces(&self) -> Vec<&str> {
        self.chunks.iter().map(|c| c.content.as_str()).collect()
    }

    pub fn text(&self) -> String {
        self.chunks.iter().map(|c| c.content.as_str()).collect()
    }

    /// The `stream_end`, checked to be `complete` with `full_content` == the chunks.
    pub fn complete(&self) -> &StreamEnd {
        let StreamEvent::End(end) = &self.terminal else {
            panic!("expected stream_end, got {:#?}", self.terminal)
        };
        assert_eq!(end.status, EndStatus::Complete, "{end:#?}");
        assert_eq!(end.full_content, self.text());
        end
    }

    /// The `stream_error`, checked to be `provider_unavailable` with a safe message and
    /// `after_seq` naming the last numbered event sent.
    pub fn failed(&self) -> &StreamFailed {
        let StreamEvent::Error(err) = &self.terminal else {
            panic!("expected stream_error, got {:#?}", self.terminal)
        };
        assert_eq!(err.code, ErrorCode::ProviderUnavailable);
        assert_eq!(err.error, "the language model is unavailable");
        let last = self.events.iter().filter_map(StreamEvent::seq).max();
        assert_eq!(err.after_seq, last.unwrap_or(0));
        err
    }
}

/// Sends `message` and waits for the end of its answer, which may have been reset: every
/// event of the stream, and the events a client keeps once it has dropped what each
/// `stream_reset` tells it to.
pub async fn ask_through_resets(
    chat: &Chat,
    message: &str,
) -> (Vec<StreamEvent>, Vec<StreamEvent>) {
    let stream = chat.send(message).await;
    tokio::time::timeout(
        WAIT,
        chat.sink.wait_for(|e| match e {
            StreamEvent::End(end) => end.stream_id == stream,
            StreamEvent::Error(err) => err.stream_id == stream,
            _ => false,
        }),
    )
    .await
    .expect("the answer ended in time");
    let events: Vec<StreamEvent> = chat
        .sink
        .events()
        .into_iter()
        .filter(|e| e.stream_id() == Some(&stream))
        .collect();
    let mut kept: Vec<StreamEvent> = Vec::new();
    for event in &events {
        if let StreamEvent::Reset(reset) = event {
            kept.retain(|k| k.seq().is_none_or(|seq| seq <= reset.after_seq));
        } else {
            kept.push(event.clone());
        }
    }
    (events, kept)
}

/// The text of the `stream_chunk`s among `events`.
pub fn text_of(events: &[StreamEvent]) -> String {
    events
        .iter()
        .filter_map(|e| match e {
            StreamEvent::Chunk(c) => Some(c.content.as_str()),
            _ => None,
        })
        .collect()
}

/// The `stream_reset`s among `events`: `(after_seq, attempt)`.
pub fn resets(events: &[StreamEvent]) -> Vec<(u64, u32)> {
    events
        .iter()
        .filter_map(|e| match e {
            StreamEvent::Reset(r) => Some((r.after_seq, r.attempt)),
            _ => None,
        })
        .collect()
}

/// `calculate`: evaluates "a*b" and "a+b" of whole numbers, enough for these tests.
pub fn calculate() -> Arc<dyn Tool> {
    Arc::new(marie_core::tool_fn(
        "calculate",
        "Evaluates an arithmetic expression",
        json!({"type": "object", "properties": {"expression": {"type": "string"}}, "required": ["expression"]}),
        |args: Value, _| async move {
            let e = args["expression"].as_str().unwrap_or_default();
            let (op, (a, b)) = if let Some(ab) = e.split_once('*') {
                ('*', ab)
            } else {
                ('+', e.split_once('+').unwrap_or((e, "0")))
            };
            let (a, b): (i64, i64) = (a.trim().parse().unwrap_or(0), b.trim().parse().unwrap_or(0));
            Ok(json!(if op == '*' { a * b } else { a + b }))
        },
    ))
}

/// Asks twice, a person's pause apart, both answers complete, and checks that the second
/// request went over the first one's connection: no new TCP (and, against a real server,
/// TLS) handshake for every answer.
pub async fn assert_connection_reused(chat: &Chat, server: &FakeServer) {
    chat.ask("first").await.complete();
    // A person reads an answer before asking again. (The connection goes back to the pool
    // from hyper's connection task a moment after the body ends; nothing observable says
    // when, and a request sent in that moment opens a new connection, which is correct.)
    tokio::time::sleep(ms(200)).await;
    chat.ask("second").await.complete();
    let requests = server.requests();
    assert_eq!(
        requests[0].peer, requests[1].peer,
        "the connection was reused"
    );
}

/// Asks "hi" through a [`retrying_chat`] and checks that the answer failed for good at once:
/// no `stream_reset`, a `stream_error` that is not retryable, one request to `server`.
pub async fn assert_failed_without_retry(provider: impl ProviderBuilder, server: &FakeServer) {
    let chat = retrying_chat(provider).await;
    let (events, _) = ask_through_resets(&chat, "hi").await;
    assert!(resets(&events).is_empty(), "{events:#?}");
    let Some(StreamEvent::Error(err)) = events.last() else {
        panic!("expected stream_error: {events:#?}")
    };
    assert!(!err.retryable);
    assert_eq!(server.requests().len(), 1);
}

/// Asks "hi" through a [`retrying_chat`] whose first attempt fails mid-answer, and checks
/// that the engine asked the step again once (`stream_reset` with `after_seq` 0, attempt 1)
/// and that both the `stream_end` and what a client keeps say `text`. Returns the
/// `stream_end`.
pub async fn assert_asked_again(provider: impl ProviderBuilder, text: &str) -> StreamEnd {
    let chat = retrying_chat(provider).await;
    let (events, kept) = ask_through_resets(&chat, "hi").await;
    assert_eq!(resets(&events), [(0, 1)], "{events:#?}");
    let Some(StreamEvent::End(end)) = events.last() else {
        panic!("expected stream_end: {events:#?}")
    };
    assert_eq!(end.full_content, text);
    assert_eq!(text_of(&kept), text);
    end.clone()
}

impl Answer {
    /// The `tool_call` events: each call's id and arguments.
    pub fn tool_calls(&self) -> Vec<(String, Value)> {
        self.events
            .iter()
            .filter_map(|e| match e {
                StreamEvent::ToolCall(c) => Some((c.tool_call_id.clone(), c.arguments.clone())),
                _ => None,
            })
            .collect()
    }
}
