//! The engine without a transport: a [`ChatEngine`] on a [`MemoryStore`], a
//! [`ScriptedProvider`] (or any provider) and a [`RecordingSink`], and the waits and checks of
//! the events a client of a conversation would receive.
//!
//! Nothing here sleeps to wait: the waits await [`RecordingSink::wait_for`] under a timeout
//! ([`WAIT`]), so a bug fails a test instead of hanging it.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use marie_adapters::MemoryStore;
use marie_core::{
    ChatEngine, ChatMessage, ConversationId, EndStatus, EngineBuilder, EngineConfig, Identity,
    LlmProvider, MessageRole, PromptMessage, RecordingSink, SendOutcome, SendRequest, StartStatus,
    Stores, StreamChunk, StreamEnd, StreamEvent, StreamFailed, StreamId, StreamSink,
    ToolApprovalRequest, ToolResult, UserId,
};
use marie_llm::ScriptedProvider;

/// How long any single wait may take before the test fails.
pub const WAIT: Duration = Duration::from_secs(5);

/// An engine, what it was built on, and what it emitted.
pub struct Harness<P = ScriptedProvider> {
    /// The engine under test.
    pub engine: ChatEngine,
    /// Every event the engine emitted, in order.
    pub sink: Arc<RecordingSink>,
    /// The model, to read what it was asked ([`ScriptedProvider::requests`]).
    pub provider: Arc<P>,
    /// The store, to look at (or write behind the engine's back) what it holds. With stores
    /// given in parts ([`HarnessBuilder::stores`]), the store of the plain parts.
    pub store: MemoryStore,
}

/// A customization of the engine's builder: tools, a budget, a control bus, a stream log...
type Customize = Box<dyn FnOnce(EngineBuilder) -> EngineBuilder>;

/// Builds a [`Harness`]: by default a fresh [`MemoryStore`], the default [`EngineConfig`],
/// and a [`RecordingSink`] the engine emits into directly.
pub struct HarnessBuilder<P> {
    provider: Arc<P>,
    config: EngineConfig,
    store: MemoryStore,
    stores: Option<Stores>,
    sink: Arc<RecordingSink>,
    engine_sink: Option<Arc<dyn StreamSink>>,
    customize: Vec<Customize>,
}

/// A harness with `provider` and the defaults.
pub fn harness<P: LlmProvider>(provider: P) -> Harness<P> {
    Harness::builder(provider).build()
}

/// A harness with `provider` and `config`.
pub fn harness_with<P: LlmProvider>(provider: P, config: EngineConfig) -> Harness<P> {
    Harness::builder(provider).config(config).build()
}

impl<P: LlmProvider> HarnessBuilder<P> {
    /// The engine's configuration.
    pub fn config(mut self, config: EngineConfig) -> Self {
        self.config = config;
        self
    }

    /// The engine's store: one another engine shares, as two nodes of a cluster do.
    pub fn store(mut self, store: MemoryStore) -> Self {
        self.store = store;
        self.stores = None;
        self
    }

    /// The engine's stores given in parts (`Stores::new(store).with_history(faulty)`, say),
    /// `store` being the [`MemoryStore`] that keeps the plain parts, for [`Harness::store`].
    pub fn stores(mut self, store: MemoryStore, parts: Stores) -> Self {
        self.store = store;
        self.stores = Some(parts);
        self
    }

    /// The engine emits into `engine_sink` (one that delays or breaks on cue, say), which
    /// must pass what it emits on to `sink`, the one the harness waits on.
    pub fn sink(mut self, sink: Arc<RecordingSink>, engine_sink: Arc<dyn StreamSink>) -> Self {
        self.sink = sink;
        self.engine_sink = Some(engine_sink);
        self
    }

    /// Anything else of the engine's builder: `|b| b.budget(policy)`, `|b| b.tool(t)`...
    pub fn with(
        mut self,
        customize: impl FnOnce(EngineBuilder) -> EngineBuilder + 'static,
    ) -> Self {
        self.customize.push(Box::new(customize));
        self
    }

    /// The engine, built.
    pub fn build(self) -> Harness<P> {
        let stores = self
            .stores
            .unwrap_or_else(|| Stores::new(self.store.clone()));
        let engine_sink = self
            .engine_sink
            .unwrap_or_else(|| self.sink.clone() as Arc<dyn StreamSink>);
        let provider = self.provider.clone() as Arc<dyn LlmProvider>;
        let mut builder = ChatEngine::builder(stores, provider, engine_sink).config(self.config);
        for customize in self.customize {
            builder = customize(builder);
        }
        Harness {
            engine: builder.build(),
            sink: self.sink,
            provider: self.provider,
            store: self.store,
        }
    }
}

/// A user without a role.
pub fn user(name: &str) -> Identity {
    Identity::new(UserId::parse(name).expect("valid user id"))
}

/// A user with the admin role.
pub fn admin(name: &str) -> Identity {
    user(name).with_role("admin")
}

/// A conversation id.
pub fn conv(name: &str) -> ConversationId {
    ConversationId::parse(name).expect("valid conversation id")
}

/// A streamed send of `message`, without a client id, files or `on_busy`.
pub fn streamed(conversation: &ConversationId, message: &str) -> SendRequest {
    SendRequest {
        client_tools: Default::default(),
        conversation_id: conversation.clone(),
        message: message.to_owned(),
        stream: true,
        client_message_id: None,
        on_busy: None,
        attachments: Vec::new(),
        answer: None,
    }
}

/// A send of `message` answered with one `message_response` (`stream: false`).
pub fn unstreamed(conversation: &ConversationId, message: &str) -> SendRequest {
    SendRequest {
        stream: false,
        ..streamed(conversation, message)
    }
}

/// A text message of a model request.
pub fn prompt(role: MessageRole, content: &str) -> PromptMessage {
    PromptMessage::text(role, content)
}

/// The contents of `messages`, in order.
pub fn contents(messages: &[ChatMessage]) -> Vec<&str> {
    messages.iter().map(|m| m.content.as_str()).collect()
}

/// `n` words, `w0 ` to `w<n-1> `: a long answer for [`ScriptedProvider::new`].
pub fn words(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("w{i} ")).collect()
}

/// Awaits `fut`, failing the test when it takes longer than [`WAIT`].
pub async fn within<T>(what: &str, fut: impl Future<Output = T>) -> T {
    tokio::time::timeout(WAIT, fut)
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
}

/// The stream of a `stream_*` event; `None` for every other event (a tool's, `queued`, a
/// room's), so that a stream's events are its start, chunks, reasoning, resets and end.
pub fn stream_id_of(event: &StreamEvent) -> Option<&StreamId> {
    match event {
        StreamEvent::Start(e) => Some(&e.stream_id),
        StreamEvent::Chunk(e) => Some(&e.stream_id),
        StreamEvent::End(e) => Some(&e.stream_id),
        StreamEvent::Error(e) => Some(&e.stream_id),
        StreamEvent::Reasoning(e) => Some(&e.stream_id),
        StreamEvent::Reset(e) => Some(&e.stream_id),
        _ => None,
    }
}

impl<P: LlmProvider> Harness<P> {
    /// Starts building a harness around `provider`.
    pub fn builder(provider: P) -> HarnessBuilder<P> {
        HarnessBuilder {
            provider: Arc::new(provider),
            config: EngineConfig::default(),
            store: MemoryStore::new(),
            stores: None,
            sink: Arc::new(RecordingSink::new()),
            engine_sink: None,
            customize: Vec::new(),
        }
    }
}

impl<P> Harness<P> {
    /// Creates `conversation` with `who` as its creator.
    pub async fn create(&self, who: &Identity, conversation: &ConversationId) {
        let joined = self
            .engine
            .join(who, conversation)
            .await
            .expect("the first join creates the conversation");
        assert!(joined.created);
    }

    /// Sends, checking the send was accepted and was not a repeat.
    pub async fn send(&self, who: &Identity, request: SendRequest) -> SendOutcome {
        let outcome = self
            .engine
            .send(who, request)
            .await
            .expect("send is accepted");
        assert!(!outcome.duplicate);
        outcome
    }

    /// Waits for the terminal event of `stream`.
    pub async fn terminal(&self, stream: &StreamId) -> StreamEvent {
        within(
            "the terminal event",
            self.sink
                .wait_for(|e| e.is_terminal() && stream_id_of(e) == Some(stream)),
        )
        .await
    }

    /// Waits for the `stream_end` of `stream`; fails on a `stream_error`.
    pub async fn end(&self, stream: &StreamId) -> StreamEnd {
        match self.terminal(stream).await {
            StreamEvent::End(end) => end,
            other => panic!("expected stream_end, got {other:?}"),
        }
    }

    /// Waits for the `stream_error` of `stream`; fails on a `stream_end`.
    pub async fn error(&self, stream: &StreamId) -> StreamFailed {
        match self.terminal(stream).await {
            StreamEvent::Error(err) => err,
            other => panic!("expected stream_error, got {other:?}"),
        }
    }

    /// Waits for chunk `seq` of `stream`.
    pub async fn chunk(&self, stream: &StreamId, seq: u64) -> StreamChunk {
        let event = within(
            "a chunk",
            self.sink.wait_for(
                |e| matches!(e, StreamEvent::Chunk(c) if c.stream_id == *stream && c.seq == seq),
            ),
        )
        .await;
        match event {
            StreamEvent::Chunk(c) => c,
            other => panic!("expected stream_chunk, got {other:?}"),
        }
    }

    /// Waits for the `tool_approval_request` of `stream`.
    pub async fn approval_request(&self, stream: &StreamId) -> ToolApprovalRequest {
        let event = within(
            "tool_approval_request",
            self.sink.wait_for(
                |e| matches!(e, StreamEvent::ApprovalRequest(r) if r.stream_id == *stream),
            ),
        )
        .await;
        match event {
            StreamEvent::ApprovalRequest(request) => request,
            other => panic!("expected tool_approval_request, got {other:?}"),
        }
    }

    /// The `stream_*` events recorded so far for `stream` (see [`stream_id_of`]), in order.
    pub fn stream_events(&self, stream: &StreamId) -> Vec<StreamEvent> {
        self.sink
            .events()
            .into_iter()
            .filter(|e| stream_id_of(e) == Some(stream))
            .collect()
    }

    /// Every event recorded so far that names `stream`, the tools' included, in order.
    pub fn events(&self, stream: &StreamId) -> Vec<StreamEvent> {
        self.sink
            .events()
            .into_iter()
            .filter(|e| e.stream_id() == Some(stream))
            .collect()
    }

    /// The `tool_result`s of `stream`, in order.
    pub fn tool_results(&self, stream: &StreamId) -> Vec<ToolResult> {
        self.events(stream)
            .into_iter()
            .filter_map(|e| match e {
                StreamEvent::ToolResult(r) => Some(r),
                _ => None,
            })
            .collect()
    }

    /// The numbered events of `stream`, the tools' included, have `seq` 1, 2, 3, ... and
    /// there is exactly one terminal event.
    pub fn assert_numbered_in_order(&self, stream: &StreamId) {
        let events = self.events(stream);
        let seqs: Vec<u64> = events.iter().filter_map(StreamEvent::seq).collect();
        let expected: Vec<u64> = (1..=seqs.len() as u64).collect();
        assert_eq!(seqs, expected, "{events:#?}");
        assert_eq!(events.iter().filter(|e| e.is_terminal()).count(), 1);
    }

    /// The chunks of `stream`, checked: the numbered events (chunks, reasoning, resets) have
    /// `seq` 1..n without gaps; chunk content never empty, `done:false`, `tokens_used`
    /// increasing. Returns the chunks' contents joined as a client keeps them: a
    /// `stream_reset` drops the chunks after its `after_seq`.
    pub fn chunks_joined(&self, stream: &StreamId) -> String {
        let events = self.stream_events(stream);
        let seqs: Vec<u64> = events.iter().filter_map(StreamEvent::seq).collect();
        let expected: Vec<u64> = (1..=seqs.len() as u64).collect();
        assert_eq!(seqs, expected, "seq must be contiguous from 1");
        let mut kept: Vec<StreamChunk> = Vec::new();
        for event in events {
            match event {
                StreamEvent::Chunk(chunk) => {
                    assert!(!chunk.content.is_empty(), "chunk content must not be empty");
                    assert!(!chunk.done);
                    let last_tokens = kept.last().map_or(0, |c| c.tokens_used);
                    assert!(
                        chunk.tokens_used > last_tokens,
                        "tokens_used must increase: {} after {last_tokens}",
                        chunk.tokens_used
                    );
                    kept.push(chunk);
                }
                StreamEvent::Reset(reset) => kept.retain(|c| c.seq <= reset.after_seq),
                _ => {}
            }
        }
        kept.iter().map(|c| c.content.as_str()).collect()
    }

    /// Asserts the shape of every stream the sink saw: it opens with `stream_start`, then
    /// carries only chunks, then exactly one terminal event (`stream_end` or
    /// `stream_error`), which comes last; or, of a queued send cancelled before its turn, only
    /// `stream_end {status:"cancelled"}`. Every event went to the stream's conversation.
    pub fn assert_one_terminal_per_stream(&self) {
        let mut streams: HashMap<StreamId, (ConversationId, Vec<StreamEvent>)> = HashMap::new();
        for event in self.sink.events() {
            let Some(id) = stream_id_of(&event).cloned() else {
                continue;
            };
            let conversation = event.conversation_id().clone();
            let entry = streams
                .entry(id)
                .or_insert_with(|| (conversation.clone(), Vec::new()));
            assert_eq!(entry.0, conversation, "a stream's events go to one room");
            entry.1.push(event);
        }
        for (id, (_, events)) in &streams {
            let terminals = events.iter().filter(|e| e.is_terminal()).count();
            assert_eq!(
                terminals, 1,
                "stream {id} has {terminals} terminal events: {events:?}"
            );
            if let [StreamEvent::End(end)] = events.as_slice() {
                // A queued send cancelled before its turn: it never started.
                assert_eq!(end.status, EndStatus::Cancelled, "{events:?}");
                continue;
            }
            assert!(
                matches!(events.first(), Some(StreamEvent::Start(s)) if s.status == StartStatus::Streaming),
                "stream {id} does not open with stream_start: {events:?}"
            );
            assert!(
                events.last().is_some_and(StreamEvent::is_terminal),
                "stream {id} has events after its terminal event: {events:?}"
            );
            for e in &events[1..events.len() - 1] {
                assert!(
                    matches!(
                        e,
                        StreamEvent::Chunk(_) | StreamEvent::Reasoning(_) | StreamEvent::Reset(_)
                    ),
                    "stream {id}: unexpected {e:?} mid-stream"
                );
            }
            self.chunks_joined(id);
        }
    }

    /// The conversation's history, first page, as `who` reads it.
    pub async fn history(&self, who: &Identity, conversation: &ConversationId) -> Vec<ChatMessage> {
        self.engine
            .history(who, conversation, None, None)
            .await
            .expect("history")
    }
}
