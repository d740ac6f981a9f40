//! Engine tests: every client command against the in-memory store, a scripted provider and
//! a recording sink. Each test asserts the room events a client would receive.
//!
//! Nothing here sleeps to wait: tests await `RecordingSink::wait_for` under a timeout, so a
//! bug fails a test instead of hanging it.

#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use marie_adapters::MemoryStore;
use marie_core::{
    Budget, BudgetPeriod, BudgetPolicy, ChatEngine, ChatMessage, ConversationId, Conversations,
    EndStatus, EngineConfig, Error, ErrorCode, FinishReason, History, HistoryQuery, Identity,
    MessageId, MessagePart, MessageRole, OnBusy, PromptMessage, ProviderError, RecordingSink,
    SendOutcome, SendRequest, SinkError, StartStatus, StoreError, Stores, StreamChunk, StreamEnd,
    StreamEvent, StreamFailed, StreamId, StreamReset, StreamSink, Usage, UserId, budget_fn,
    estimate_tokens,
};
use marie_llm::ScriptedProvider;

/// How long any single wait may take before the test fails.
const WAIT: Duration = Duration::from_secs(5);

// ---------------------------------------------------------------------------------------
// Harness
// ---------------------------------------------------------------------------------------

struct Harness {
    engine: ChatEngine,
    sink: Arc<RecordingSink>,
    provider: ScriptedProvider,
    store: MemoryStore,
}

fn harness(provider: ScriptedProvider) -> Harness {
    harness_with(provider, EngineConfig::default())
}

fn harness_with(provider: ScriptedProvider, config: EngineConfig) -> Harness {
    let sink = Arc::new(RecordingSink::new());
    harness_with_sink(provider, config, sink.clone(), sink)
}

/// A harness whose engine emits into `engine_sink`, which must record into `sink`.
fn harness_with_sink(
    provider: ScriptedProvider,
    config: EngineConfig,
    sink: Arc<RecordingSink>,
    engine_sink: Arc<dyn StreamSink>,
) -> Harness {
    let store = MemoryStore::new();
    harness_full(
        provider,
        config,
        sink,
        engine_sink,
        store.clone(),
        Stores::new(store),
    )
}

/// A harness whose engine uses `engine_store`, which must keep its data in `store`.
fn harness_with_store(provider: ScriptedProvider, faulty: Arc<FaultyStore>) -> Harness {
    let sink = Arc::new(RecordingSink::new());
    let store = faulty.inner.clone();
    harness_full(
        provider,
        EngineConfig::default(),
        sink.clone(),
        sink,
        store.clone(),
        Stores::new(store).with_history(faulty),
    )
}

fn harness_full(
    provider: ScriptedProvider,
    config: EngineConfig,
    sink: Arc<RecordingSink>,
    engine_sink: Arc<dyn StreamSink>,
    store: MemoryStore,
    engine_store: Stores,
) -> Harness {
    let engine = ChatEngine::builder(engine_store, Arc::new(provider.clone()), engine_sink)
        .config(config)
        .build();
    Harness {
        engine,
        sink,
        provider,
        store,
    }
}

/// A harness whose users have a token budget.
fn harness_with_budget(provider: ScriptedProvider, policy: impl BudgetPolicy) -> Harness {
    let sink = Arc::new(RecordingSink::new());
    let store = MemoryStore::new();
    let engine = ChatEngine::builder(
        Arc::new(store.clone()),
        Arc::new(provider.clone()),
        sink.clone(),
    )
    .budget(policy)
    .build();
    Harness {
        engine,
        sink,
        provider,
        store,
    }
}

fn user(name: &str) -> Identity {
    Identity::new(UserId::parse(name).expect("valid user id"))
}

fn admin(name: &str) -> Identity {
    user(name).with_role("admin")
}

fn conv(name: &str) -> ConversationId {
    ConversationId::parse(name).expect("valid conversation id")
}

fn streamed(conversation: &ConversationId, message: &str) -> SendRequest {
    SendRequest {
        conversation_id: conversation.clone(),
        message: message.to_owned(),
        stream: true,
        client_message_id: None,
        on_busy: None,
        attachments: Vec::new(),
    }
}

fn unstreamed(conversation: &ConversationId, message: &str) -> SendRequest {
    SendRequest {
        stream: false,
        ..streamed(conversation, message)
    }
}

fn with_client_id(request: SendRequest, id: &str) -> SendRequest {
    SendRequest {
        client_message_id: Some(id.to_owned()),
        on_busy: None,
        ..request
    }
}

/// Awaits `fut`, failing the test when it takes longer than [`WAIT`].
async fn within<T>(what: &str, fut: impl Future<Output = T>) -> T {
    tokio::time::timeout(WAIT, fut)
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
}

fn stream_id_of(event: &StreamEvent) -> Option<&StreamId> {
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

impl Harness {
    /// Creates `conversation` with `who` as its creator.
    async fn create(&self, who: &Identity, conversation: &ConversationId) {
        let joined = self
            .engine
            .join(who, conversation)
            .await
            .expect("the first join creates the conversation");
        assert!(joined.created);
    }

    async fn send(&self, who: &Identity, request: SendRequest) -> SendOutcome {
        let outcome = self
            .engine
            .send(who, request)
            .await
            .expect("send is accepted");
        assert!(!outcome.duplicate);
        outcome
    }

    /// Waits for the terminal event of `stream`.
    async fn terminal(&self, stream: &StreamId) -> StreamEvent {
        within(
            "the terminal event",
            self.sink
                .wait_for(|e| e.is_terminal() && stream_id_of(e) == Some(stream)),
        )
        .await
    }

    async fn end(&self, stream: &StreamId) -> StreamEnd {
        match self.terminal(stream).await {
            StreamEvent::End(end) => end,
            other => panic!("expected stream_end, got {other:?}"),
        }
    }

    async fn error(&self, stream: &StreamId) -> StreamFailed {
        match self.terminal(stream).await {
            StreamEvent::Error(err) => err,
            other => panic!("expected stream_error, got {other:?}"),
        }
    }

    /// Waits for chunk `seq` of `stream`.
    async fn chunk(&self, stream: &StreamId, seq: u64) -> StreamChunk {
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

    /// Every event recorded so far for `stream`, in order.
    fn stream_events(&self, stream: &StreamId) -> Vec<StreamEvent> {
        self.sink
            .events()
            .into_iter()
            .filter(|e| stream_id_of(e) == Some(stream))
            .collect()
    }

    /// The chunks of `stream`, checked: the numbered events (chunks, reasoning, resets) have
    /// `seq` 1..n without gaps; chunk content never empty, `done:false`, `tokens_used`
    /// increasing. Returns the chunks' contents joined as a client keeps them: a
    /// `stream_reset` drops the chunks after its `after_seq`.
    fn chunks_joined(&self, stream: &StreamId) -> String {
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
    fn assert_one_terminal_per_stream(&self) {
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
    async fn history(&self, who: &Identity, conversation: &ConversationId) -> Vec<ChatMessage> {
        self.engine
            .history(who, conversation, None, None)
            .await
            .expect("history")
    }
}

fn prompt(role: MessageRole, content: &str) -> PromptMessage {
    PromptMessage::text(role, content)
}

// ---------------------------------------------------------------------------------------
// A streamed answer
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streamed_answer_has_start_contiguous_chunks_and_one_complete_end() {
    let h = harness(ScriptedProvider::new(["Hel", "lo", ", ", "world"]));
    let alice = user("alice");
    let room = conv("room-1");
    h.create(&alice, &room).await;

    let sent = h.send(&alice, streamed(&room, "say hello")).await;
    let end = h.end(&sent.stream_id).await;

    let events = h.stream_events(&sent.stream_id);
    let StreamEvent::Start(start) = &events[0] else {
        panic!("the first event must be stream_start, got {:?}", events[0]);
    };
    assert_eq!(start.conversation_id, room);
    assert_eq!(start.status, StartStatus::Streaming);
    assert_eq!(
        events.len(),
        1 + 4 + 1,
        "start, four chunks, end: {events:?}"
    );

    let joined = h.chunks_joined(&sent.stream_id);
    assert_eq!(joined, "Hello, world");
    assert_eq!(end.full_content, joined);
    assert_eq!(end.conversation_id, room);
    assert_eq!(end.message_id, start.message_id);
    assert_eq!(end.status, EndStatus::Complete);
    assert_eq!(end.finish_reason, FinishReason::Stop);
    assert!(
        end.usage.estimated,
        "no usage reported: it must be estimated"
    );
    assert_eq!(
        end.usage,
        Usage::estimated(
            estimate_tokens("say hello"),
            estimate_tokens("Hello, world")
        )
    );
    assert_eq!(
        end.usage.total_tokens,
        end.usage.prompt_tokens + end.usage.completion_tokens
    );
    assert!(h.sink.events().iter().all(|e| *e.conversation_id() == room));

    // History: the user's message (with the id send returned), then the answer (with the id
    // stream_start and stream_end announced).
    let history = h.history(&alice, &room).await;
    assert_eq!(history.len(), 2, "{history:?}");
    assert_eq!(history[0].message_id, sent.message_id);
    assert_eq!(history[0].role, MessageRole::User);
    assert_eq!(history[0].content, "say hello");
    assert_eq!(history[0].user_id.as_ref(), Some(&alice.user_id));
    assert_eq!(history[1].message_id, end.message_id);
    assert_eq!(history[1].role, MessageRole::Assistant);
    assert_eq!(history[1].content, "Hello, world");
    assert_eq!(history[1].user_id, None);
    assert!(
        history[1].parts.is_empty(),
        "a text-only answer is its text"
    );
    assert!(
        end.parts.is_empty(),
        "a text-only answer is its full_content"
    );

    // What the provider was asked.
    let requests = h.provider.requests();
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0].conversation_id, room);
    assert_eq!(requests[0].user_id, alice.user_id);
    assert_eq!(
        requests[0].messages,
        vec![prompt(MessageRole::User, "say hello")]
    );
    assert_eq!(h.provider.streams_dropped(), 1);
    assert_eq!(h.engine.running_answers(), 0);
    h.assert_one_terminal_per_stream();
}

/// Reasoning streams as `stream_reasoning` in the same `seq` sequence as the chunks, is
/// never part of the text, and is kept as a part of the answer: in `stream_end.parts` and in
/// the stored message.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reasoning_streams_in_the_same_sequence_and_is_kept_as_a_part() {
    let provider = ScriptedProvider::new(["Hel", "lo"]).reasoning_first(["Let me ", "", "think."]);
    let h = harness(provider);
    let alice = user("alice");
    let room = conv("room-reasoning");
    h.create(&alice, &room).await;

    let sent = h.send(&alice, streamed(&room, "hi")).await;
    let end = h.end(&sent.stream_id).await;
    let events = h.stream_events(&sent.stream_id);
    let names: Vec<&str> = events.iter().map(StreamEvent::name).collect();
    assert_eq!(
        names,
        [
            "stream_start",
            "stream_reasoning",
            "stream_reasoning",
            "stream_chunk",
            "stream_chunk",
            "stream_end"
        ],
        "the empty reasoning delta is skipped"
    );
    assert_eq!(h.chunks_joined(&sent.stream_id), "Hello");
    let StreamEvent::Reasoning(first) = &events[1] else {
        unreachable!()
    };
    assert_eq!((first.seq, first.content.as_str()), (1, "Let me "));
    let StreamEvent::Chunk(chunk) = &events[3] else {
        unreachable!()
    };
    assert_eq!(
        (chunk.seq, chunk.tokens_used),
        (3, 1),
        "tokens_used counts text only"
    );

    let parts = vec![
        MessagePart::Reasoning {
            content: "Let me think.".into(),
            signature: None,
        },
        MessagePart::Text {
            content: "Hello".into(),
        },
    ];
    assert_eq!(end.full_content, "Hello");
    assert_eq!(end.parts, parts);
    let history = h.history(&alice, &room).await;
    assert_eq!(history[1].content, "Hello");
    assert_eq!(history[1].parts, parts);
    h.assert_one_terminal_per_stream();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reported_usage_is_passed_through_as_is() {
    let reported = Usage::reported(123, 45);
    let h = harness(ScriptedProvider::new(["a", "b"]).usage(reported));
    let alice = user("alice");
    let room = conv("room-usage");
    h.create(&alice, &room).await;

    let sent = h.send(&alice, streamed(&room, "count")).await;
    let end = h.end(&sent.stream_id).await;
    assert_eq!(end.status, EndStatus::Complete);
    assert_eq!(end.usage, reported);
    assert!(!end.usage.estimated);
    h.assert_one_terminal_per_stream();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn empty_deltas_are_skipped_and_never_sent_as_chunks() {
    let h = harness(ScriptedProvider::new(["", "a", "", "b", ""]));
    let alice = user("alice");
    let room = conv("room-empty-deltas");
    h.create(&alice, &room).await;

    let sent = h.send(&alice, streamed(&room, "go")).await;
    let end = h.end(&sent.stream_id).await;
    assert_eq!(h.chunks_joined(&sent.stream_id), "ab");
    assert_eq!(end.full_content, "ab");
    assert_eq!(h.stream_events(&sent.stream_id).len(), 1 + 2 + 1);
    h.assert_one_terminal_per_stream();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_holds_system_prompt_then_windowed_history_ending_with_user_message() {
    let config = EngineConfig::default()
        .system_prompt("Be brief.")
        .history_window(3);
    let h = harness_with(ScriptedProvider::new(["ok"]), config);
    let alice = user("alice");
    let room = conv("room-window");
    h.create(&alice, &room).await;

    for message in ["one", "two", "three"] {
        let sent = h.send(&alice, streamed(&room, message)).await;
        assert_eq!(h.end(&sent.stream_id).await.status, EndStatus::Complete);
    }

    let requests = h.provider.requests();
    assert_eq!(requests.len(), 3);
    assert_eq!(
        requests[0].messages,
        vec![
            prompt(MessageRole::System, "Be brief."),
            prompt(MessageRole::User, "one"),
        ]
    );
    // Window 3 of three messages: all of them.
    assert_eq!(
        requests[1].messages,
        vec![
            prompt(MessageRole::System, "Be brief."),
            prompt(MessageRole::User, "one"),
            prompt(MessageRole::Assistant, "ok"),
            prompt(MessageRole::User, "two"),
        ]
    );
    // Window 3 of five messages: "two", "ok", "three"; the system prompt is not counted.
    assert_eq!(
        requests[2].messages,
        vec![
            prompt(MessageRole::System, "Be brief."),
            prompt(MessageRole::User, "two"),
            prompt(MessageRole::Assistant, "ok"),
            prompt(MessageRole::User, "three"),
        ]
    );
    assert_eq!(requests[2].last_user_message(), Some("three"));
    assert_eq!(h.history(&alice, &room).await.len(), 6);
    h.assert_one_terminal_per_stream();
}

// ---------------------------------------------------------------------------------------
// Branches: edit, regenerate, switch
// ---------------------------------------------------------------------------------------

fn contents(messages: &[ChatMessage]) -> Vec<&str> {
    messages.iter().map(|m| m.content.as_str()).collect()
}

/// An edit is a sibling of the question, a regenerated answer a sibling of the answer; the
/// model is shown the active branch only, and nothing is ever deleted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edits_and_regenerations_add_siblings_and_the_model_sees_the_active_branch() {
    let h = harness(ScriptedProvider::new(["ok"]));
    let (alice, bob) = (user("alice"), user("bob"));
    let room = conv("room-branches");
    h.create(&alice, &room).await;
    h.engine.invite(&alice, &room, &bob.user_id).await.unwrap();

    let first = h.send(&alice, streamed(&room, "one")).await;
    h.end(&first.stream_id).await;
    let second = h.send(&alice, streamed(&room, "two")).await;
    h.end(&second.stream_id).await;

    // Alice edits "two": the model sees "one", its answer, and the edit.
    let edited = h
        .engine
        .edit(
            &alice,
            &room,
            &second.message_id,
            "two, better".into(),
            true,
        )
        .await
        .expect("the author may edit");
    h.end(&edited.stream_id).await;
    let history = h.history(&alice, &room).await;
    assert_eq!(contents(&history), ["one", "ok", "two, better", "ok"]);
    assert_eq!(
        history[2].siblings,
        vec![second.message_id.clone(), edited.message_id.clone()]
    );
    assert_eq!(history[2].parent_id.as_ref(), Some(&history[1].message_id));
    assert_eq!(history[3].parent_id.as_ref(), Some(&edited.message_id));
    let asked = h.provider.requests().last().unwrap().messages.clone();
    assert_eq!(
        asked,
        [
            prompt(MessageRole::User, "one"),
            prompt(MessageRole::Assistant, "ok"),
            prompt(MessageRole::User, "two, better"),
        ]
    );

    // Bob regenerates the last answer: the model sees the same branch again.
    let again = h
        .engine
        .regenerate(&bob, &room, None, true)
        .await
        .expect("any member may regenerate");
    assert_eq!(again.message_id, edited.message_id, "the question answered");
    h.end(&again.stream_id).await;
    assert_eq!(h.provider.requests().last().unwrap().messages, asked);
    let history = h.history(&alice, &room).await;
    assert_eq!(history[3].message_id, again.answer_message_id);
    assert_eq!(
        history[3].siblings,
        vec![
            edited.answer_message_id.clone(),
            again.answer_message_id.clone()
        ]
    );

    // Regenerating the first answer: the model sees "one" only, and the branch moves there.
    let first_again = h
        .engine
        .regenerate(&alice, &room, Some(&first.answer_message_id), true)
        .await
        .unwrap();
    h.end(&first_again.stream_id).await;
    assert_eq!(
        h.provider.requests().last().unwrap().messages,
        [prompt(MessageRole::User, "one")]
    );
    let history = h.history(&alice, &room).await;
    assert_eq!(contents(&history), ["one", "ok"]);
    assert_eq!(history[1].message_id, first_again.answer_message_id);

    // Back to the edit: down to its newest answer.
    let leaf = h
        .engine
        .switch_branch(&bob, &room, &edited.message_id)
        .await
        .unwrap();
    assert_eq!(leaf, again.answer_message_id);
    assert_eq!(
        contents(&h.history(&alice, &room).await),
        ["one", "ok", "two, better", "ok"]
    );
    // A send goes after the active branch's leaf.
    let third = h.send(&alice, streamed(&room, "three")).await;
    h.end(&third.stream_id).await;
    let history = h.history(&alice, &room).await;
    assert_eq!(history[4].parent_id, Some(leaf));
    assert_eq!(h.provider.requests().last().unwrap().messages.len(), 5);
    h.assert_one_terminal_per_stream();
}

/// Each bad command gets its own clear error and changes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_branch_commands_are_refused_and_change_nothing() {
    let h = harness(ScriptedProvider::new(["ok"]).delay(Duration::from_millis(30)));
    let (alice, bob, eve) = (user("alice"), user("bob"), user("eve"));
    let room = conv("room-bad-branches");
    let other = conv("room-other");
    h.create(&alice, &room).await;
    h.create(&alice, &other).await;
    h.engine.invite(&alice, &room, &bob.user_id).await.unwrap();
    assert_eq!(
        h.engine
            .regenerate(&alice, &room, None, true)
            .await
            .unwrap_err()
            .code(),
        ErrorCode::NotFound,
        "nothing to regenerate in an empty conversation"
    );
    let sent = h.send(&alice, streamed(&room, "mine")).await;
    h.end(&sent.stream_id).await;
    let elsewhere = h.send(&alice, streamed(&other, "elsewhere")).await;
    h.end(&elsewhere.stream_id).await;
    let before = h.history(&alice, &room).await;

    let code = |r: Result<SendOutcome, Error>| r.unwrap_err().code();
    let e = &h.engine;
    assert_eq!(
        code(
            e.edit(&bob, &room, &sent.message_id, "his".into(), true)
                .await
        ),
        ErrorCode::Forbidden,
        "only the author edits"
    );
    assert_eq!(
        code(
            e.edit(&alice, &room, &sent.answer_message_id, "x".into(), true)
                .await
        ),
        ErrorCode::BadRequest,
        "an answer is regenerated, not edited"
    );
    assert_eq!(
        code(
            e.edit(&alice, &room, &sent.message_id, "  ".into(), true)
                .await
        ),
        ErrorCode::BadRequest,
        "an empty edit"
    );
    assert_eq!(
        code(
            e.edit(&alice, &room, &elsewhere.message_id, "x".into(), true)
                .await
        ),
        ErrorCode::NotFound,
        "a message of another conversation"
    );
    assert_eq!(
        code(
            e.regenerate(&alice, &room, Some(&sent.message_id), true)
                .await
        ),
        ErrorCode::BadRequest,
        "a question is edited, not regenerated"
    );
    assert_eq!(
        code(e.regenerate(&eve, &room, None, true).await),
        ErrorCode::Forbidden,
        "not a member"
    );
    assert_eq!(
        e.switch_branch(&alice, &room, &elsewhere.message_id)
            .await
            .unwrap_err()
            .code(),
        ErrorCode::NotFound,
        "a switch to a message of another conversation"
    );
    assert_eq!(
        e.switch_branch(&eve, &room, &sent.message_id)
            .await
            .unwrap_err()
            .code(),
        ErrorCode::Forbidden
    );
    // While an answer runs: edits and regenerations are busy, and so is a switch.
    let running = h.send(&alice, streamed(&room, "slow")).await;
    assert_eq!(
        code(e.regenerate(&bob, &room, None, true).await),
        ErrorCode::Busy
    );
    assert_eq!(
        e.switch_branch(&bob, &room, &sent.message_id)
            .await
            .unwrap_err()
            .code(),
        ErrorCode::Busy
    );
    h.end(&running.stream_id).await;
    let after = h.history(&alice, &room).await;
    assert_eq!(
        &after[..2],
        &before[..],
        "the refused commands changed nothing"
    );
    assert_eq!(after.len(), 4);
    h.assert_one_terminal_per_stream();
}

/// An answer that failed before it said anything leaves its question as the leaf:
/// `regenerate` with no message answers it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn regenerate_answers_a_question_whose_answer_failed() {
    let h = harness(
        ScriptedProvider::new(["fine"]).fail_first(1, ProviderError::Unreachable("down".into())),
    );
    let alice = user("alice");
    let room = conv("room-retry");
    h.create(&alice, &room).await;
    let sent = h.send(&alice, streamed(&room, "hello?")).await;
    h.error(&sent.stream_id).await;
    assert_eq!(contents(&h.history(&alice, &room).await), ["hello?"]);
    let again = h
        .engine
        .regenerate(&alice, &room, None, true)
        .await
        .unwrap();
    assert_eq!(again.message_id, sent.message_id);
    h.end(&again.stream_id).await;
    let history = h.history(&alice, &room).await;
    assert_eq!(contents(&history), ["hello?", "fine"]);
    assert_eq!(history[1].parent_id.as_ref(), Some(&sent.message_id));
    assert!(history[1].siblings.is_empty());
    h.assert_one_terminal_per_stream();
}

// ---------------------------------------------------------------------------------------
// Busy conversations: on_busy
// ---------------------------------------------------------------------------------------

fn busy_send(conversation: &ConversationId, message: &str, on_busy: OnBusy) -> SendRequest {
    SendRequest {
        on_busy: Some(on_busy),
        ..streamed(conversation, message)
    }
}

/// The order in which streams started.
fn starts(h: &Harness) -> Vec<StreamId> {
    h.sink
        .events()
        .into_iter()
        .filter_map(|e| match e {
            StreamEvent::Start(s) => Some(s.stream_id),
            _ => None,
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queued_sends_are_answered_in_order_after_the_running_one() {
    let h = harness_with(
        ScriptedProvider::new(["a", "b"]).delay(Duration::from_millis(20)),
        EngineConfig::default().max_queue(2),
    );
    let (alice, bob) = (user("alice"), user("bob"));
    let room = conv("room-queue");
    h.create(&alice, &room).await;
    h.engine.invite(&alice, &room, &bob.user_id).await.unwrap();

    let first = h.send(&alice, streamed(&room, "one")).await;
    assert_eq!(first.queued, None);
    let second = h.send(&bob, busy_send(&room, "two", OnBusy::Enqueue)).await;
    assert_eq!(second.queued, Some(1));
    let third = h
        .send(&alice, busy_send(&room, "three", OnBusy::Enqueue))
        .await;
    assert_eq!(third.queued, Some(2));
    let full = h
        .engine
        .send(&alice, busy_send(&room, "four", OnBusy::Enqueue))
        .await;
    assert_eq!(full.unwrap_err().code(), ErrorCode::Busy, "max_queue is 2");
    let rejected = h.engine.send(&alice, streamed(&room, "five")).await;
    assert_eq!(
        rejected.unwrap_err().code(),
        ErrorCode::Busy,
        "the default rejects"
    );

    let queued: Vec<_> = h
        .sink
        .events()
        .into_iter()
        .filter_map(|e| match e {
            StreamEvent::Queued(q) => Some((q.stream_id, q.position, q.user_id, q.message)),
            _ => None,
        })
        .collect();
    assert_eq!(
        queued,
        [
            (
                second.stream_id.clone(),
                1,
                bob.user_id.clone(),
                "two".into()
            ),
            (
                third.stream_id.clone(),
                2,
                alice.user_id.clone(),
                "three".into()
            ),
        ]
    );
    for sent in [&first, &second, &third] {
        assert_eq!(h.end(&sent.stream_id).await.status, EndStatus::Complete);
    }
    assert_eq!(
        starts(&h),
        [
            first.stream_id.clone(),
            second.stream_id.clone(),
            third.stream_id.clone()
        ]
    );
    let history = h.history(&alice, &room).await;
    assert_eq!(
        contents(&history),
        ["one", "ab", "two", "ab", "three", "ab"]
    );
    assert_eq!(history[2].message_id, second.message_id);
    assert_eq!(history[2].user_id.as_ref(), Some(&bob.user_id));
    assert_eq!(
        history[2].parent_id.as_ref(),
        Some(&first.answer_message_id)
    );
    assert_eq!(history[3].message_id, second.answer_message_id);
    // The queued question's model request held the answer before it.
    assert_eq!(h.provider.requests()[1].messages.len(), 3);
    h.assert_one_terminal_per_stream();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queued_send_can_be_cancelled_and_repeats_are_not_queued_twice() {
    let h = harness(ScriptedProvider::new(["a", "b"]).delay(Duration::from_millis(20)));
    let alice = user("alice");
    let room = conv("room-queue-cancel");
    h.create(&alice, &room).await;
    let first = h.send(&alice, streamed(&room, "one")).await;
    let queued = |text: &str, id: &str| SendRequest {
        client_message_id: Some(id.into()),
        ..busy_send(&room, text, OnBusy::Enqueue)
    };
    let second = h.send(&alice, queued("two", "c-2")).await;
    let repeat = h.engine.send(&alice, queued("two", "c-2")).await.unwrap();
    assert!(repeat.duplicate);
    assert_eq!(
        (repeat.stream_id.clone(), repeat.queued),
        (second.stream_id.clone(), Some(1))
    );
    let third = h.send(&alice, queued("three", "c-3")).await;
    assert_eq!(third.queued, Some(2));

    let cancelled = h
        .engine
        .cancel(&alice, &room, Some(&second.stream_id))
        .await
        .unwrap();
    assert_eq!(cancelled, second.stream_id);
    let end = h.end(&second.stream_id).await;
    assert_eq!(
        (end.status, end.full_content.as_str()),
        (EndStatus::Cancelled, "")
    );
    assert_eq!(
        h.engine
            .cancel(&alice, &room, Some(&second.stream_id))
            .await
            .unwrap_err()
            .code(),
        ErrorCode::NotFound,
        "cancelled once"
    );
    h.end(&first.stream_id).await;
    h.end(&third.stream_id).await;
    assert_eq!(
        starts(&h),
        [first.stream_id.clone(), third.stream_id.clone()]
    );
    assert_eq!(
        contents(&h.history(&alice, &room).await),
        ["one", "ab", "three", "ab"]
    );
    h.assert_one_terminal_per_stream();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interrupt_cancels_the_running_answer_and_starts_the_new_one() {
    let words: Vec<String> = (0..200).map(|i| format!("w{i} ")).collect();
    let h = harness(ScriptedProvider::new(words).delay(Duration::from_millis(10)));
    let (alice, bob) = (user("alice"), user("bob"));
    let room = conv("room-interrupt");
    h.create(&alice, &room).await;
    h.engine.invite(&alice, &room, &bob.user_id).await.unwrap();
    let first = h.send(&alice, streamed(&room, "long")).await;
    h.chunk(&first.stream_id, 2).await;
    let second = h
        .send(&bob, busy_send(&room, "stop that", OnBusy::Interrupt))
        .await;
    let end = h.end(&first.stream_id).await;
    assert_eq!(end.status, EndStatus::Cancelled);
    assert!(!end.full_content.is_empty(), "the partial answer is kept");
    h.chunk(&second.stream_id, 1).await;
    h.engine.cancel(&bob, &room, None).await.unwrap();
    h.end(&second.stream_id).await;
    let history = h.history(&alice, &room).await;
    assert_eq!(
        history[1].content, end.full_content,
        "stored before the next question"
    );
    assert_eq!(history[2].content, "stop that");
    assert_eq!(
        history[2].parent_id.as_ref(),
        Some(&first.answer_message_id)
    );
    h.assert_one_terminal_per_stream();
}

// ---------------------------------------------------------------------------------------
// Token budgets
// ---------------------------------------------------------------------------------------

fn words(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("w{i} ")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_stops_at_the_budget_and_the_next_send_is_refused() {
    let budget = Budget::new(40, BudgetPeriod::Day);
    let h = harness_with_budget(ScriptedProvider::new(words(100)), budget);
    let (alice, bob) = (user("alice"), user("bob"));
    let room = conv("room-budget");
    h.create(&alice, &room).await;
    h.engine.invite(&alice, &room, &bob.user_id).await.unwrap();
    let fresh = h.engine.usage(&alice).await.unwrap();
    assert_eq!(
        (fresh.used, fresh.limit, fresh.period),
        (0, Some(40), Some(BudgetPeriod::Day))
    );
    let window = BudgetPeriod::Day.window(marie_core::now_millis());
    assert_eq!(fresh.resets_at, Some(window.end));

    let sent = h.send(&alice, streamed(&room, "hello there")).await;
    let end = h.end(&sent.stream_id).await;
    assert_eq!(end.status, EndStatus::Complete);
    assert_eq!(end.finish_reason, FinishReason::Budget);
    let said = end.full_content.split_whitespace().count();
    assert!(said > 0 && said < 100, "stopped part way: {said} words");
    assert_eq!(
        h.history(&alice, &room).await[1].content,
        end.full_content,
        "the partial answer is stored"
    );
    let used = h.engine.usage(&alice).await.unwrap().used;
    assert_eq!(used, end.usage.total_tokens, "counted once");
    assert!(used >= 40, "{used}");

    let refused = h.engine.send(&alice, streamed(&room, "more")).await;
    let Err(Error::BudgetExceeded {
        used: u,
        limit,
        resets_at,
    }) = refused
    else {
        panic!("expected budget_exceeded, got {refused:?}");
    };
    assert_eq!((u, limit, resets_at), (used, 40, window.end));
    assert_eq!(
        h.engine
            .regenerate(&alice, &room, None, true)
            .await
            .unwrap_err()
            .code(),
        ErrorCode::BudgetExceeded,
        "regenerations count too"
    );
    // Bob's budget is his own.
    let his = h.send(&bob, streamed(&room, "mine")).await;
    h.end(&his.stream_id).await;
    assert_eq!(h.engine.usage(&alice).await.unwrap().used, used);
    assert!(h.engine.usage(&bob).await.unwrap().used > 0);
    h.assert_one_terminal_per_stream();
}

/// A cancelled answer and a failed one are counted too, each once, as their ends say.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelled_and_failed_answers_count_once() {
    let policy = budget_fn(|who| {
        (who.user_id.as_str() != "admin").then(|| Budget::new(100_000, BudgetPeriod::Hour))
    });
    let h = harness_with_budget(
        ScriptedProvider::new(words(50))
            .delay(Duration::from_millis(5))
            .fail_at(30, ProviderError::Disconnected("gone".into())),
        policy,
    );
    let alice = user("alice");
    let room = conv("room-count");
    h.create(&alice, &room).await;

    let first = h.send(&alice, streamed(&room, "go")).await;
    h.chunk(&first.stream_id, 3).await;
    h.engine.cancel(&alice, &room, None).await.unwrap();
    let end = h.end(&first.stream_id).await;
    assert_eq!(end.status, EndStatus::Cancelled);
    let after_cancel = h.engine.usage(&alice).await.unwrap().used;
    assert_eq!(after_cancel, end.usage.total_tokens);

    let second = h.send(&alice, streamed(&room, "again")).await;
    h.error(&second.stream_id).await;
    let after_failure = h.engine.usage(&alice).await.unwrap().used;
    assert!(
        after_failure > after_cancel + 30,
        "the failed answer's 30 chunks and prompt are counted: {after_cancel} -> {after_failure}"
    );
    // Nothing is counted for a user without a budget.
    let report = h.engine.usage(&user("admin")).await.unwrap();
    assert_eq!(
        (report.used, report.limit, report.resets_at),
        (0, None, None)
    );
    h.assert_one_terminal_per_stream();
}

// ---------------------------------------------------------------------------------------
// Retries of a step that fails mid-stream
// ---------------------------------------------------------------------------------------

fn retrying() -> EngineConfig {
    EngineConfig::default().retry_backoff(Duration::from_millis(1))
}

/// The resets of `stream`, in order.
fn resets(h: &Harness, stream: &StreamId) -> Vec<StreamReset> {
    h.stream_events(stream)
        .into_iter()
        .filter_map(|e| match e {
            StreamEvent::Reset(r) => Some(r),
            _ => None,
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_step_cut_mid_stream_is_asked_again_and_clients_drop_what_it_said() {
    let h = harness_with(
        ScriptedProvider::new(["al", "pha ", "be", "ta"]).fail_first_at(
            1,
            2,
            ProviderError::Disconnected("connection reset".into()),
        ),
        retrying(),
    );
    let alice = user("alice");
    let room = conv("room-retry-step");
    h.create(&alice, &room).await;
    let sent = h.send(&alice, streamed(&room, "say it")).await;
    let end = h.end(&sent.stream_id).await;
    assert_eq!(end.status, EndStatus::Complete);
    assert_eq!(end.full_content, "alpha beta", "the final attempt, whole");
    assert_eq!(h.chunks_joined(&sent.stream_id), end.full_content);
    let reset = resets(&h, &sent.stream_id);
    assert_eq!(reset.len(), 1);
    assert_eq!(
        (reset[0].seq, reset[0].after_seq, reset[0].attempt),
        (3, 0, 1)
    );
    assert!(!reset[0].reason.is_empty());
    let requests = h.provider.requests();
    assert_eq!(requests.len(), 2, "asked again once");
    assert_eq!(
        requests[0].messages, requests[1].messages,
        "the same request"
    );
    assert_eq!(h.history(&alice, &room).await[1].content, "alpha beta");
    assert_eq!(
        end.usage.completion_tokens,
        estimate_tokens(&end.full_content),
        "usage describes the answer kept"
    );

    // The log holds the failed attempt, the reset and the retry: a client that resumes from
    // the start rebuilds exactly the final answer.
    let log = h
        .engine
        .read_stream(&alice, Some(&room), &sent.stream_id, 0, 100)
        .await
        .unwrap();
    let mut kept: Vec<(u64, String)> = Vec::new();
    for event in log.events {
        match event {
            StreamEvent::Chunk(c) => kept.push((c.seq, c.content)),
            StreamEvent::Reset(r) => kept.retain(|(seq, _)| *seq <= r.after_seq),
            _ => {}
        }
    }
    let rebuilt: String = kept.into_iter().map(|(_, c)| c).collect();
    assert_eq!(rebuilt, end.full_content);
    h.assert_one_terminal_per_stream();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_are_bounded_and_only_for_failures_worth_retrying() {
    // Always cut: two retries, then the answer fails.
    let h = harness_with(
        ScriptedProvider::new(["a", "b", "c"]).fail_at(
            1,
            ProviderError::Protocol("stream ended before [DONE]".into()),
        ),
        retrying(),
    );
    let alice = user("alice");
    let room = conv("room-retry-bounded");
    h.create(&alice, &room).await;
    let sent = h.send(&alice, streamed(&room, "x")).await;
    let failed = h.error(&sent.stream_id).await;
    assert_eq!(failed.code, ErrorCode::ProviderUnavailable);
    assert_eq!(h.provider.requests().len(), 3);
    let attempts: Vec<u32> = resets(&h, &sent.stream_id)
        .iter()
        .map(|r| r.attempt)
        .collect();
    assert_eq!(attempts, [1, 2]);
    h.assert_one_terminal_per_stream();

    // A refusal the provider would repeat (4xx) mid-stream: no retry.
    let h = harness_with(
        ScriptedProvider::new(["a", "b"]).fail_at(1, ProviderError::Status { status: 400 }),
        retrying(),
    );
    h.create(&alice, &room).await;
    let sent = h.send(&alice, streamed(&room, "x")).await;
    h.error(&sent.stream_id).await;
    assert_eq!(h.provider.requests().len(), 1);
    assert!(resets(&h, &sent.stream_id).is_empty());

    // Refused before the stream began: the provider has retried what it could.
    let h = harness_with(
        ScriptedProvider::new(["a"]).fail_on_start(ProviderError::Unreachable("down".into())),
        retrying(),
    );
    h.create(&alice, &room).await;
    let sent = h.send(&alice, streamed(&room, "x")).await;
    h.error(&sent.stream_id).await;
    assert_eq!(h.provider.requests().len(), 1);

    // Turned off: the first failure ends the answer.
    let h = harness_with(
        ScriptedProvider::new(["a", "b"]).fail_first_at(
            1,
            1,
            ProviderError::Disconnected("reset".into()),
        ),
        retrying().mid_stream_retries(0),
    );
    h.create(&alice, &room).await;
    let sent = h.send(&alice, streamed(&room, "x")).await;
    h.error(&sent.stream_id).await;
    assert_eq!(h.provider.requests().len(), 1);
    assert!(resets(&h, &sent.stream_id).is_empty());
}

/// A failed attempt's tokens count for the budget; `stream_end.usage` is the final one's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_attempts_count_for_the_budget() {
    let h = harness_with_budget(
        ScriptedProvider::new(words(10))
            .usage(Usage::reported(7, 10))
            .fail_first_at(1, 5, ProviderError::Upstream("overloaded_error".into())),
        Budget::new(100_000, BudgetPeriod::Day),
    );
    let alice = user("alice");
    let room = conv("room-retry-budget");
    h.create(&alice, &room).await;
    let sent = h.send(&alice, streamed(&room, "go")).await;
    let end = h.end(&sent.stream_id).await;
    assert_eq!(end.usage, Usage::reported(7, 10));
    let used = h.engine.usage(&alice).await.unwrap().used;
    assert!(
        used > end.usage.total_tokens + 5,
        "the failed attempt's prompt and 5 chunks count too: {used}"
    );
    h.assert_one_terminal_per_stream();
}

// ---------------------------------------------------------------------------------------
// stream:false
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unstreamed_answer_is_one_message_response_with_the_whole_text() {
    let h = harness(ScriptedProvider::new(["Hel", "lo"]));
    let alice = user("alice");
    let room = conv("room-unstreamed");
    h.create(&alice, &room).await;

    h.send(&alice, unstreamed(&room, "hi")).await;
    let event = within(
        "message_response",
        h.sink.wait_for(|e| matches!(e, StreamEvent::Response(_))),
    )
    .await;
    let StreamEvent::Response(response) = event else {
        unreachable!("wait_for matched a message_response");
    };
    assert_eq!(response.conversation_id, room);
    assert_eq!(response.message, "Hello");

    let events = h.sink.events();
    assert_eq!(
        events.len(),
        1,
        "only message_response, no stream events: {events:?}"
    );
    assert_eq!(*events[0].conversation_id(), room);

    let history = h.history(&alice, &room).await;
    assert_eq!(history.len(), 2);
    assert_eq!(history[1].message_id, response.message_id);
    assert_eq!(history[1].content, "Hello");
    assert_eq!(h.provider.requests().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unstreamed_answer_failure_is_one_room_error() {
    let h = harness(
        ScriptedProvider::new(["never"]).fail_on_start(ProviderError::Unreachable("x".into())),
    );
    let alice = user("alice");
    let room = conv("room-unstreamed-fail");
    h.create(&alice, &room).await;

    h.send(&alice, unstreamed(&room, "hi")).await;
    let event = within(
        "the room error",
        h.sink.wait_for(|e| matches!(e, StreamEvent::Failed(_))),
    )
    .await;
    let StreamEvent::Failed(failed) = event else {
        unreachable!("wait_for matched an error");
    };
    assert_eq!(failed.code, ErrorCode::ProviderUnavailable);
    assert_eq!(failed.event, "send_message");
    assert_eq!(failed.conversation_id, room);
    assert_eq!(h.sink.events().len(), 1);
    // The conversation is free again.
    h.send(&alice, unstreamed(&room, "again")).await;
}

// ---------------------------------------------------------------------------------------
// Join and invite
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn join_creates_on_first_join_and_checks_access() {
    let h = harness(ScriptedProvider::new(["ok"]));
    let (alice, bob, carol) = (user("alice"), user("bob"), user("carol"));
    let room = conv("room-join");

    let joined = h.engine.join(&alice, &room).await.expect("first join");
    assert!(joined.created);
    assert_eq!(joined.conversation.conversation_id, room);
    assert_eq!(joined.conversation.created_by, alice.user_id);
    assert_eq!(joined.members, vec![alice.user_id.clone()]);
    assert_eq!(joined.active_stream, None);

    let again = h.engine.join(&alice, &room).await.expect("creator rejoins");
    assert!(!again.created);

    // Others are kept out until invited.
    let err = h
        .engine
        .join(&bob, &room)
        .await
        .expect_err("bob is not invited");
    assert!(matches!(err, Error::Forbidden(_)));
    assert_eq!(err.code(), ErrorCode::Forbidden);
    assert_eq!(err.code().as_str(), "forbidden");

    // Only someone with access may invite.
    let err = h
        .engine
        .invite(&bob, &room, &carol.user_id)
        .await
        .expect_err("bob has no access");
    assert_eq!(err.code(), ErrorCode::Forbidden);
    let err = h
        .engine
        .invite(&bob, &room, &bob.user_id)
        .await
        .expect_err("bob cannot invite himself");
    assert_eq!(err.code(), ErrorCode::Forbidden);
    assert_eq!(
        h.engine
            .join(&carol, &room)
            .await
            .expect_err("still out")
            .code(),
        ErrorCode::Forbidden
    );

    h.engine
        .invite(&alice, &room, &bob.user_id)
        .await
        .expect("the creator invites");
    let joined = h.engine.join(&bob, &room).await.expect("bob was invited");
    assert!(!joined.created);
    assert_eq!(joined.conversation.created_by, alice.user_id);
    assert_eq!(
        joined.members,
        vec![alice.user_id.clone(), bob.user_id.clone()]
    );

    // An invited member may invite in turn.
    h.engine
        .invite(&bob, &room, &carol.user_id)
        .await
        .expect("a member invites");
    h.engine
        .join(&carol, &room)
        .await
        .expect("carol was invited");

    // Sending and reading follow the same rule.
    let dave = user("dave");
    assert_eq!(
        h.engine
            .send(&dave, streamed(&room, "hi"))
            .await
            .expect_err("dave has no access")
            .code(),
        ErrorCode::Forbidden
    );
    assert_eq!(
        h.engine
            .history(&dave, &room, None, None)
            .await
            .expect_err("dave has no access")
            .code(),
        ErrorCode::Forbidden
    );
    assert!(h.sink.events().is_empty());
    assert!(h.provider.requests().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admins_may_join_any_conversation() {
    let h = harness(ScriptedProvider::new(["ok"]));
    let alice = user("alice");
    let root = admin("root");
    let room = conv("room-admin");
    h.create(&alice, &room).await;

    let joined = h.engine.join(&root, &room).await.expect("admins may join");
    assert!(!joined.created);
    assert_eq!(joined.conversation.created_by, alice.user_id);
    // An admin may also send and read without being a member.
    let sent = h.send(&root, streamed(&room, "hello")).await;
    assert_eq!(h.end(&sent.stream_id).await.status, EndStatus::Complete);
    assert_eq!(h.history(&root, &room).await.len(), 2);
    // A non-admin role does not help.
    let err = h
        .engine
        .join(&user("mallory").with_role("moderator"), &room)
        .await
        .expect_err("not an admin");
    assert_eq!(err.code(), ErrorCode::Forbidden);
    h.assert_one_terminal_per_stream();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_create_on_join_unknown_conversations_are_not_found() {
    let h = harness_with(
        ScriptedProvider::new(["ok"]),
        EngineConfig::default().create_on_join(false),
    );
    let alice = user("alice");
    let room = conv("room-missing");

    let err = h.engine.join(&alice, &room).await.expect_err("not created");
    assert!(matches!(err, Error::NotFound(_)));
    assert_eq!(err.code().as_str(), "not_found");
    assert_eq!(
        h.engine
            .join(&admin("root"), &room)
            .await
            .expect_err("admins do not create either")
            .code(),
        ErrorCode::NotFound
    );
    assert_eq!(
        h.engine
            .invite(&alice, &room, &user("bob").user_id)
            .await
            .expect_err("nothing to invite to")
            .code(),
        ErrorCode::NotFound
    );
    assert_eq!(
        h.engine
            .send(&alice, streamed(&room, "hi"))
            .await
            .expect_err("nothing to send to")
            .code(),
        ErrorCode::NotFound
    );
    assert!(h.store.conversation(&room).await.expect("store").is_none());
    assert!(h.sink.events().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn join_reports_the_running_answer() {
    let h = harness(ScriptedProvider::new(["a", "b"]).hang_at_end());
    let (alice, bob) = (user("alice"), user("bob"));
    let room = conv("room-active");
    h.create(&alice, &room).await;
    h.engine
        .invite(&alice, &room, &bob.user_id)
        .await
        .expect("invite");

    let sent = h.send(&alice, streamed(&room, "go")).await;
    h.chunk(&sent.stream_id, 2).await;
    let joined = h.engine.join(&bob, &room).await.expect("bob joins");
    let active = joined.active_stream.expect("an answer is running");
    assert_eq!(active.stream_id, sent.stream_id);
    assert_eq!(active.seq, 2);

    h.engine
        .cancel(&bob, &room, None)
        .await
        .expect("a member cancels");
    assert_eq!(h.end(&sent.stream_id).await.status, EndStatus::Cancelled);
    assert_eq!(
        h.engine
            .join(&bob, &room)
            .await
            .expect("join")
            .active_stream,
        None
    );
    h.assert_one_terminal_per_stream();
}

// ---------------------------------------------------------------------------------------
// Busy
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn second_send_while_answering_is_busy_until_the_terminal_event() {
    let h = harness(ScriptedProvider::new(["a"]).hang_at_end());
    let (alice, bob) = (user("alice"), user("bob"));
    let room = conv("room-busy");
    h.create(&alice, &room).await;
    h.engine
        .invite(&alice, &room, &bob.user_id)
        .await
        .expect("invite");

    let first = h.send(&alice, streamed(&room, "first")).await;
    h.chunk(&first.stream_id, 1).await;

    for who in [&alice, &bob] {
        let err = h
            .engine
            .send(who, streamed(&room, "second"))
            .await
            .expect_err("an answer is running");
        assert!(matches!(err, Error::Busy));
        assert_eq!(err.code().as_str(), "busy");
    }
    // A busy send starts nothing and stores nothing.
    assert_eq!(h.provider.requests().len(), 1);
    assert_eq!(h.history(&alice, &room).await.len(), 1);

    // Other conversations are not affected.
    let other = conv("room-busy-other");
    h.create(&bob, &other).await;
    let elsewhere = h.send(&bob, streamed(&other, "elsewhere")).await;
    h.chunk(&elsewhere.stream_id, 1).await;
    assert_eq!(h.engine.running_answers(), 2);

    h.engine
        .cancel(&alice, &room, Some(&first.stream_id))
        .await
        .expect("cancel");
    h.end(&first.stream_id).await;

    // Right after the terminal event, the conversation takes a new message.
    let next = h.send(&alice, streamed(&room, "third")).await;
    assert_ne!(next.stream_id, first.stream_id);
    assert_ne!(next.message_id, first.message_id);
    h.chunk(&next.stream_id, 1).await;

    for (c, s) in [(&room, &next.stream_id), (&other, &elsewhere.stream_id)] {
        h.engine
            .cancel(&admin("root"), c, Some(s))
            .await
            .expect("cancel");
        h.end(s).await;
    }
    assert_eq!(h.engine.running_answers(), 0);
    h.assert_one_terminal_per_stream();
}

/// A sink that records each event, then holds the terminal ones back from returning until
/// the test releases them: like a real sink whose local room already got the event while
/// the broadcast to other nodes is still in flight.
struct SlowTerminalSink {
    inner: Arc<RecordingSink>,
    release: tokio::sync::Semaphore,
}

#[async_trait]
impl StreamSink for SlowTerminalSink {
    async fn emit(&self, event: StreamEvent) -> Result<(), SinkError> {
        let terminal = event.is_terminal();
        self.inner.emit(event).await?;
        if terminal {
            let _permit = self
                .release
                .acquire()
                .await
                .map_err(|_| SinkError::Delivery("closed".into()))?;
        }
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_saw_the_terminal_event_may_send_at_once() {
    let sink = Arc::new(RecordingSink::new());
    let slow = Arc::new(SlowTerminalSink {
        inner: sink.clone(),
        release: tokio::sync::Semaphore::new(0),
    });
    let h = harness_with_sink(
        ScriptedProvider::new(["done"]),
        EngineConfig::default(),
        sink,
        slow.clone(),
    );
    let alice = user("alice");
    let room = conv("room-next");
    h.create(&alice, &room).await;

    let first = h.send(&alice, streamed(&room, "first")).await;
    h.end(&first.stream_id).await;
    // The first answer's task is still inside the sink's `emit` of its stream_end, but the
    // client has the event: its next message must not be refused as busy.
    let second = h
        .engine
        .send(&alice, streamed(&room, "second"))
        .await
        .expect("not busy once stream_end was delivered");
    slow.release.add_permits(2);
    h.end(&second.stream_id).await;
    h.assert_one_terminal_per_stream();
}

// ---------------------------------------------------------------------------------------
// Idempotency
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_client_message_id_is_a_duplicate_and_starts_nothing() {
    let h = harness(ScriptedProvider::new(["a"]).hang_at_end());
    let (alice, bob) = (user("alice"), user("bob"));
    let room = conv("room-idem");
    h.create(&alice, &room).await;
    h.engine
        .invite(&alice, &room, &bob.user_id)
        .await
        .expect("invite");

    let request = with_client_id(streamed(&room, "hello"), "client-1");
    let first = h.send(&alice, request.clone()).await;
    h.chunk(&first.stream_id, 1).await;

    // A repeat while the answer runs is a duplicate, not busy.
    let repeat = h
        .engine
        .send(&alice, request.clone())
        .await
        .expect("a repeat is answered");
    assert!(repeat.duplicate);
    assert_eq!(repeat.message_id, first.message_id);
    assert_eq!(repeat.stream_id, first.stream_id);

    h.engine.cancel(&alice, &room, None).await.expect("cancel");
    h.end(&first.stream_id).await;

    // And after it ended, still the same outcome.
    let repeat = h
        .engine
        .send(&alice, request.clone())
        .await
        .expect("a repeat is answered");
    assert!(repeat.duplicate);
    assert_eq!(repeat.message_id, first.message_id);
    assert_eq!(repeat.stream_id, first.stream_id);

    assert_eq!(h.provider.requests().len(), 1);
    let starts = h
        .sink
        .events()
        .iter()
        .filter(|e| matches!(e, StreamEvent::Start(_)))
        .count();
    assert_eq!(starts, 1);
    let history = h.history(&alice, &room).await;
    let user_messages = history
        .iter()
        .filter(|m| m.role == MessageRole::User)
        .count();
    assert_eq!(user_messages, 1, "the repeat is not stored: {history:?}");

    // The id is the client's own: another user's same id is a new message.
    let bobs = h.send(&bob, request).await;
    assert_ne!(bobs.message_id, first.message_id);
    h.chunk(&bobs.stream_id, 1).await;
    assert_eq!(h.provider.requests().len(), 2);
    h.engine.cancel(&bob, &room, None).await.expect("cancel");
    h.end(&bobs.stream_id).await;
    h.assert_one_terminal_per_stream();
}

// ---------------------------------------------------------------------------------------
// Cancel
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_ends_with_cancelled_keeps_the_partial_answer_and_drops_the_provider_stream() {
    let h = harness(ScriptedProvider::new(["Hel", "lo"]).hang_at_end());
    let (alice, bob) = (user("alice"), user("bob"));
    let room = conv("room-cancel");
    h.create(&alice, &room).await;

    let sent = h.send(&alice, streamed(&room, "talk forever")).await;
    h.chunk(&sent.stream_id, 2).await;

    // A wrong stream id cancels nothing.
    let wrong = StreamId::parse("not-this-one").expect("valid id");
    let err = h
        .engine
        .cancel(&alice, &room, Some(&wrong))
        .await
        .expect_err("no such stream");
    assert!(matches!(err, Error::NotFound(_)));
    assert_eq!(err.code(), ErrorCode::NotFound);
    // Someone without access cancels nothing.
    let err = h
        .engine
        .cancel(&bob, &room, Some(&sent.stream_id))
        .await
        .expect_err("bob has no access");
    assert_eq!(err.code(), ErrorCode::Forbidden);
    assert_eq!(h.engine.running_answers(), 1);
    assert_eq!(h.provider.streams_dropped(), 0);

    let cancelled = h
        .engine
        .cancel(&alice, &room, Some(&sent.stream_id))
        .await
        .expect("alice cancels");
    assert_eq!(cancelled, sent.stream_id);
    let end = h.end(&sent.stream_id).await;
    assert_eq!(end.status, EndStatus::Cancelled);
    assert_eq!(end.finish_reason, FinishReason::Cancelled);
    assert_eq!(end.full_content, "Hello");
    assert_eq!(end.full_content, h.chunks_joined(&sent.stream_id));
    assert!(end.usage.estimated);
    assert_eq!(
        h.provider.streams_dropped(),
        1,
        "the provider stream was dropped"
    );

    let history = h.history(&alice, &room).await;
    assert_eq!(history.len(), 2);
    assert_eq!(history[1].message_id, end.message_id);
    assert_eq!(history[1].role, MessageRole::Assistant);
    assert_eq!(history[1].content, "Hello");

    // Nothing runs any more: a second cancel finds nothing.
    assert_eq!(h.engine.running_answers(), 0);
    assert_eq!(
        h.engine
            .cancel(&alice, &room, None)
            .await
            .expect_err("nothing running")
            .code(),
        ErrorCode::NotFound
    );
    h.assert_one_terminal_per_stream();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_before_the_first_chunk_ends_with_empty_content_and_stores_nothing() {
    let h = harness(ScriptedProvider::new(Vec::<String>::new()).hang_at_end());
    let alice = user("alice");
    let room = conv("room-cancel-early");
    h.create(&alice, &room).await;

    let sent = h.send(&alice, streamed(&room, "hm")).await;
    within(
        "stream_start",
        h.sink
            .wait_for(|e| matches!(e, StreamEvent::Start(s) if s.stream_id == sent.stream_id)),
    )
    .await;
    h.engine.cancel(&alice, &room, None).await.expect("cancel");
    let end = h.end(&sent.stream_id).await;
    assert_eq!(end.status, EndStatus::Cancelled);
    assert_eq!(end.full_content, "");
    assert_eq!(h.history(&alice, &room).await.len(), 1);
    h.assert_one_terminal_per_stream();
}

// ---------------------------------------------------------------------------------------
// Provider errors
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provider_failing_on_start_gives_one_stream_error_after_seq_zero() {
    let cases = [
        ProviderError::Unreachable("connection refused to http://secret-host".into()),
        ProviderError::Unauthorized { status: 401 },
        ProviderError::RateLimited {
            retry_after: Some(Duration::from_secs(3)),
        },
        ProviderError::Status { status: 503 },
        ProviderError::Status { status: 400 },
        ProviderError::Timeout("connect"),
    ];
    for error in cases {
        let h = harness(ScriptedProvider::new(["never"]).fail_on_start(error.clone()));
        let alice = user("alice");
        let room = conv("room-fail-start");
        h.create(&alice, &room).await;

        let sent = h.send(&alice, streamed(&room, "hi")).await;
        let failed = h.error(&sent.stream_id).await;
        assert_eq!(failed.code, ErrorCode::ProviderUnavailable, "{error:?}");
        assert_eq!(failed.conversation_id, room);
        assert_eq!(failed.after_seq, 0);
        assert_eq!(failed.retryable, error.retryable(), "{error:?}");
        assert!(!failed.error.contains("secret-host"), "{}", failed.error);
        assert_eq!(h.chunks_joined(&sent.stream_id), "");
        assert_eq!(h.stream_events(&sent.stream_id).len(), 2, "start + error");
        assert_eq!(h.history(&alice, &room).await.len(), 1, "no answer stored");
        h.assert_one_terminal_per_stream();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provider_failing_mid_stream_gives_stream_error_after_the_last_chunk() {
    // Without retries (they are tested above): the failure itself.
    let h = harness_with(
        ScriptedProvider::new(["a", "b", "c"]).fail_at(
            2,
            ProviderError::Upstream("overloaded, key sk-live-123".into()),
        ),
        EngineConfig::default().mid_stream_retries(0),
    );
    let alice = user("alice");
    let room = conv("room-fail-mid");
    h.create(&alice, &room).await;

    let sent = h.send(&alice, streamed(&room, "hi")).await;
    let failed = h.error(&sent.stream_id).await;
    assert_eq!(failed.code, ErrorCode::ProviderUnavailable);
    assert_eq!(failed.after_seq, 2);
    assert!(failed.retryable);
    assert!(!failed.error.contains("sk-live"), "{}", failed.error);
    assert_eq!(h.chunks_joined(&sent.stream_id), "ab");
    assert_eq!(h.provider.streams_dropped(), 1);
    assert_eq!(h.engine.running_answers(), 0);
    h.assert_one_terminal_per_stream();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn truncated_provider_stream_is_an_error_never_a_silent_complete() {
    let h = harness_with(
        ScriptedProvider::new(["a", "b"]).truncated(),
        EngineConfig::default().mid_stream_retries(0),
    );
    let alice = user("alice");
    let room = conv("room-truncated");
    h.create(&alice, &room).await;

    let sent = h.send(&alice, streamed(&room, "hi")).await;
    let failed = h.error(&sent.stream_id).await;
    assert_eq!(failed.code, ErrorCode::ProviderUnavailable);
    assert_eq!(failed.after_seq, 2);
    assert!(!failed.retryable, "a protocol error is not retryable");
    assert!(
        !h.stream_events(&sent.stream_id)
            .iter()
            .any(|e| matches!(e, StreamEvent::End(_))),
        "no stream_end"
    );
    h.assert_one_terminal_per_stream();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provider_panic_gives_internal_stream_error_and_frees_the_conversation() {
    let h = harness(ScriptedProvider::new(["a", "b"]).panic_at(1));
    let alice = user("alice");
    let room = conv("room-panic");
    h.create(&alice, &room).await;

    let sent = h.send(&alice, streamed(&room, "hi")).await;
    let failed = h.error(&sent.stream_id).await;
    assert_eq!(failed.code, ErrorCode::Internal);
    assert_eq!(failed.after_seq, 1);
    assert!(!failed.error.contains("panic"), "{}", failed.error);
    assert_eq!(h.chunks_joined(&sent.stream_id), "a");

    // Not left busy: a new send is accepted and gets its own terminal event.
    let again = h.send(&alice, streamed(&room, "again")).await;
    assert_eq!(h.error(&again.stream_id).await.code, ErrorCode::Internal);
    assert_eq!(h.engine.running_answers(), 0);
    h.assert_one_terminal_per_stream();
}

/// A sink that panics on the first `stream_start`, as a buggy transport would.
struct PanicOnStartSink {
    inner: Arc<RecordingSink>,
    panicked: std::sync::atomic::AtomicBool,
}

#[async_trait]
impl StreamSink for PanicOnStartSink {
    async fn emit(&self, event: StreamEvent) -> Result<(), SinkError> {
        if matches!(event, StreamEvent::Start(_))
            && !self
                .panicked
                .swap(true, std::sync::atomic::Ordering::AcqRel)
        {
            panic!("sink panics as asked");
        }
        self.inner.emit(event).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sink_panic_on_stream_start_still_ends_the_stream_and_frees_the_conversation() {
    let sink = Arc::new(RecordingSink::new());
    let h = harness_with_sink(
        ScriptedProvider::new(["a"]),
        EngineConfig::default(),
        sink.clone(),
        Arc::new(PanicOnStartSink {
            inner: sink,
            panicked: Default::default(),
        }),
    );
    let alice = user("alice");
    let room = conv("room-sink-panic");
    h.create(&alice, &room).await;

    let sent = h.send(&alice, streamed(&room, "hi")).await;
    let failed = h.error(&sent.stream_id).await;
    assert_eq!(failed.code, ErrorCode::Internal);
    assert_eq!(failed.after_seq, 0);
    assert_eq!(h.engine.running_answers(), 0);

    let again = h.send(&alice, streamed(&room, "again")).await;
    assert_eq!(h.end(&again.stream_id).await.status, EndStatus::Complete);
    let again_events = h.stream_events(&again.stream_id);
    assert!(matches!(again_events[0], StreamEvent::Start(_)));
    // The first stream lost its stream_start to the panic; the client still gets its end.
    let first_events = h.stream_events(&sent.stream_id);
    assert_eq!(first_events.len(), 1, "{first_events:?}");
}

// ---------------------------------------------------------------------------------------
// Validation and history
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_messages_are_refused_before_anything_starts() {
    let h = harness_with(
        ScriptedProvider::new(["ok"]),
        EngineConfig::default().max_message_bytes(10),
    );
    let alice = user("alice");
    let room = conv("room-validate");
    h.create(&alice, &room).await;

    for empty in ["", "   ", "\n\t"] {
        let err = h
            .engine
            .send(&alice, streamed(&room, empty))
            .await
            .expect_err("empty message");
        assert!(matches!(err, Error::BadRequest(_)));
        assert_eq!(err.code().as_str(), "bad_request");
    }
    let err = h
        .engine
        .send(&alice, streamed(&room, "12345678901"))
        .await
        .expect_err("11 bytes > 10");
    assert!(matches!(err, Error::PayloadTooLarge(_)));
    assert_eq!(err.code().as_str(), "payload_too_large");
    // Bytes, not characters: five two-byte characters are 10 bytes, six are 12.
    let err = h
        .engine
        .send(&alice, streamed(&room, "éééééé"))
        .await
        .expect_err("12 bytes > 10");
    assert_eq!(err.code(), ErrorCode::PayloadTooLarge);

    assert!(h.sink.events().is_empty());
    assert!(h.provider.requests().is_empty());
    assert!(h.history(&alice, &room).await.is_empty());
    assert_eq!(h.engine.running_answers(), 0);

    // Exactly at the limit is fine.
    let sent = h.send(&alice, streamed(&room, "ééééé")).await;
    h.end(&sent.stream_id).await;
    h.assert_one_terminal_per_stream();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_limit_is_clamped_and_pages_backwards() {
    let mut config = EngineConfig::default();
    config.default_history_page = 2;
    config.max_history_page = 3;
    let h = harness_with(ScriptedProvider::new(["ok"]), config);
    let alice = user("alice");
    let room = conv("room-history");
    h.create(&alice, &room).await;

    let mut ids: Vec<MessageId> = Vec::new();
    for i in 0..5 {
        let message = ChatMessage::now(
            MessageRole::User,
            format!("m{i}"),
            Some(alice.user_id.clone()),
            ids.last().cloned(),
        );
        ids.push(message.message_id.clone());
        h.store
            .append_message(&room, message)
            .await
            .expect("append");
    }
    let contents =
        |messages: Vec<ChatMessage>| messages.into_iter().map(|m| m.content).collect::<Vec<_>>();
    let page = |before, limit| h.engine.history(&alice, &room, before, limit);

    assert_eq!(
        contents(page(None, None).await.expect("default")),
        ["m3", "m4"]
    );
    assert_eq!(
        contents(page(None, Some(1000)).await.expect("clamped down")),
        ["m2", "m3", "m4"]
    );
    assert_eq!(
        contents(page(None, Some(0)).await.expect("none asked")),
        Vec::<String>::new(),
        "limit 0 asks for no message"
    );
    assert_eq!(
        contents(page(Some(ids[3].clone()), Some(10)).await.expect("older")),
        ["m0", "m1", "m2"]
    );
    assert_eq!(
        contents(page(Some(ids[0].clone()), None).await.expect("oldest")),
        Vec::<String>::new()
    );
    assert_eq!(
        h.engine
            .history(&user("bob"), &room, None, None)
            .await
            .expect_err("no access")
            .code(),
        ErrorCode::Forbidden
    );
    assert_eq!(
        h.engine
            .history(&alice, &conv("room-nowhere"), None, None)
            .await
            .expect_err("no such conversation")
            .code(),
        ErrorCode::NotFound
    );
}

// ---------------------------------------------------------------------------------------
// Shutdown
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_interrupts_a_hanging_answer_after_the_grace_period() {
    let h = harness(ScriptedProvider::new(["par", "tial"]).hang_at_end());
    let alice = user("alice");
    let room = conv("room-shutdown");
    h.create(&alice, &room).await;

    let sent = h.send(&alice, streamed(&room, "hi")).await;
    h.chunk(&sent.stream_id, 2).await;

    within("shutdown", h.engine.shutdown(Duration::from_millis(50))).await;
    // Shutdown waited for the answer: its terminal event is already there.
    let terminal = h
        .sink
        .events()
        .into_iter()
        .find(|e| e.is_terminal() && stream_id_of(e) == Some(&sent.stream_id));
    let Some(StreamEvent::End(end)) = terminal else {
        panic!("expected stream_end before shutdown returned, got {terminal:?}");
    };
    assert_eq!(end.status, EndStatus::Interrupted);
    assert_eq!(end.finish_reason, FinishReason::Interrupted);
    assert_eq!(end.full_content, "partial");
    assert_eq!(h.provider.streams_dropped(), 1);
    assert_eq!(h.engine.running_answers(), 0);

    let history = h.history(&alice, &room).await;
    assert_eq!(history.len(), 2);
    assert_eq!(history[1].message_id, end.message_id);
    assert_eq!(history[1].content, "partial");

    let err = h
        .engine
        .send(&alice, streamed(&room, "after"))
        .await
        .expect_err("shutting down");
    assert!(matches!(err, Error::ShuttingDown));
    assert_eq!(h.provider.requests().len(), 1);
    h.assert_one_terminal_per_stream();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_lets_answers_finish_within_the_grace_period() {
    let h = harness(ScriptedProvider::new(["a", "b", "c"]).delay(Duration::from_millis(5)));
    let alice = user("alice");
    let room = conv("room-graceful");
    h.create(&alice, &room).await;

    let sent = h.send(&alice, streamed(&room, "hi")).await;
    within("shutdown", h.engine.shutdown(WAIT)).await;
    let end = h.end(&sent.stream_id).await;
    assert_eq!(end.status, EndStatus::Complete);
    assert_eq!(end.full_content, "abc");
    assert_eq!(
        h.engine
            .send(&alice, streamed(&room, "after"))
            .await
            .expect_err("shutting down")
            .code(),
        ErrorCode::Internal
    );
    h.assert_one_terminal_per_stream();
}

#[tokio::test]
async fn shutdown_with_nothing_running_returns_at_once_on_a_current_thread_runtime() {
    let h = harness(ScriptedProvider::new(["ok"]));
    let alice = user("alice");
    let room = conv("room-idle");
    h.create(&alice, &room).await;
    let sent = h.send(&alice, streamed(&room, "hi")).await;
    h.end(&sent.stream_id).await;
    within("shutdown", h.engine.shutdown(Duration::from_secs(60))).await;
    assert!(matches!(
        h.engine.send(&alice, streamed(&room, "after")).await,
        Err(Error::ShuttingDown)
    ));
    h.assert_one_terminal_per_stream();
}

// ---------------------------------------------------------------------------------------
// Faults in the store
// ---------------------------------------------------------------------------------------

/// A [`MemoryStore`] with a fault on cue.
struct FaultyStore {
    inner: MemoryStore,
    fault: Fault,
}

enum Fault {
    /// Panics when an assistant message (an answer) is stored.
    PanicOnAnswer,
    /// Holds each user message back: signals `entered`, then waits for a `release` permit.
    HoldUserMessages {
        entered: tokio::sync::Notify,
        release: tokio::sync::Semaphore,
    },
}

impl FaultyStore {
    fn new(fault: Fault) -> Arc<Self> {
        Arc::new(Self {
            inner: MemoryStore::new(),
            fault,
        })
    }
}

/// Only the history has faults: every other part of the engine's stores is the plain
/// [`MemoryStore`] (`Stores::with_history`).
#[async_trait]
impl History for FaultyStore {
    async fn append_message(
        &self,
        conversation: &ConversationId,
        message: ChatMessage,
    ) -> Result<(), StoreError> {
        match (&self.fault, message.role) {
            (Fault::PanicOnAnswer, MessageRole::Assistant) => panic!("store panics as asked"),
            (Fault::HoldUserMessages { entered, release }, MessageRole::User) => {
                entered.notify_one();
                release
                    .acquire()
                    .await
                    .map_err(|_| StoreError::Unavailable("closed".into()))?
                    .forget();
            }
            _ => {}
        }
        self.inner.append_message(conversation, message).await
    }
    async fn history(
        &self,
        conversation: &ConversationId,
        query: HistoryQuery,
    ) -> Result<Vec<ChatMessage>, StoreError> {
        self.inner.history(conversation, query).await
    }
    async fn message(
        &self,
        conversation: &ConversationId,
        message: &MessageId,
    ) -> Result<Option<ChatMessage>, StoreError> {
        self.inner.message(conversation, message).await
    }
    async fn switch_branch(
        &self,
        conversation: &ConversationId,
        message: &MessageId,
    ) -> Result<Option<MessageId>, StoreError> {
        self.inner.switch_branch(conversation, message).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_panic_while_saving_the_answer_gives_internal_stream_error() {
    let h = harness_with_store(
        ScriptedProvider::new(["a", "b"]),
        FaultyStore::new(Fault::PanicOnAnswer),
    );
    let alice = user("alice");
    let room = conv("room-store-panic");
    h.create(&alice, &room).await;

    let sent = h.send(&alice, streamed(&room, "hi")).await;
    let failed = h.error(&sent.stream_id).await;
    assert_eq!(failed.code, ErrorCode::Internal);
    assert_eq!(failed.after_seq, 2);
    assert!(failed.retryable);
    assert_eq!(h.chunks_joined(&sent.stream_id), "ab");
    assert_eq!(h.engine.running_answers(), 0);

    // Not left busy.
    let again = h.send(&alice, streamed(&room, "again")).await;
    assert_eq!(h.error(&again.stream_id).await.code, ErrorCode::Internal);
    h.assert_one_terminal_per_stream();
}

/// On a current-thread runtime, so that the order of the steps below is exact.
#[tokio::test]
async fn shutdown_waits_for_a_send_that_is_starting_its_answer() {
    let store = FaultyStore::new(Fault::HoldUserMessages {
        entered: tokio::sync::Notify::new(),
        release: tokio::sync::Semaphore::new(0),
    });
    let Fault::HoldUserMessages { entered, release } = &store.fault else {
        unreachable!("built just above");
    };
    let h = harness_with_store(ScriptedProvider::new(["a"]).hang_at_end(), store.clone());
    let alice = user("alice");
    let room = conv("room-shutdown-race");
    h.create(&alice, &room).await;

    // A send that passed its checks and is storing the user's message...
    let send = tokio::spawn({
        let (engine, alice, room) = (h.engine.clone(), alice.clone(), room.clone());
        async move { engine.send(&alice, streamed(&room, "hi")).await }
    });
    within("the send to reach the store", entered.notified()).await;

    // ...keeps shutdown from returning until its answer has ended.
    let shutdown = h.engine.shutdown(Duration::from_millis(20));
    tokio::pin!(shutdown);
    tokio::select! {
        biased;
        () = &mut shutdown => panic!("shutdown returned while a send was starting an answer"),
        () = std::future::ready(()) => {}
    }
    release.add_permits(1);
    let sent = within("the send", send)
        .await
        .expect("the send task")
        .expect("the send got in before shutdown");
    within("shutdown", shutdown).await;

    let terminal = h
        .sink
        .events()
        .into_iter()
        .find(|e| e.is_terminal() && stream_id_of(e) == Some(&sent.stream_id));
    let Some(StreamEvent::End(end)) = terminal else {
        panic!("expected stream_end before shutdown returned, got {terminal:?}");
    };
    assert_eq!(end.status, EndStatus::Interrupted);
    assert_eq!(h.engine.running_answers(), 0);
    assert!(matches!(
        h.engine.send(&alice, streamed(&room, "after")).await,
        Err(Error::ShuttingDown)
    ));
    h.assert_one_terminal_per_stream();
}

/// A log that counts its `append` calls, over a [`MemoryStreamLog`].
#[derive(Default)]
struct CountingLog {
    inner: marie_core::MemoryStreamLog,
    bursts: std::sync::atomic::AtomicUsize,
}

#[async_trait]
impl marie_core::StreamLog for CountingLog {
    async fn open(&self, meta: &marie_core::StreamMeta) -> Result<(), StoreError> {
        self.inner.open(meta).await
    }
    async fn append(&self, stream_id: &StreamId, events: &[StreamEvent]) -> Result<(), StoreError> {
        self.bursts
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.inner.append(stream_id, events).await
    }
    async fn close(&self, stream_id: &StreamId, end: &StreamEvent) -> Result<(), StoreError> {
        self.inner.close(stream_id, end).await
    }
    async fn read(
        &self,
        stream_id: &StreamId,
        after_seq: u64,
        limit: usize,
    ) -> Result<Option<marie_core::LogRead>, StoreError> {
        self.inner.read(stream_id, after_seq, limit).await
    }
}

/// A sink that checks, for every chunk it is given, that the log already holds it.
struct LogFirstSink {
    log: Arc<CountingLog>,
    record: Arc<RecordingSink>,
}

#[async_trait]
impl StreamSink for LogFirstSink {
    async fn emit(&self, event: StreamEvent) -> Result<(), SinkError> {
        if let StreamEvent::Chunk(c) = &event {
            let read = marie_core::StreamLog::read(&*self.log, &c.stream_id, 0, 10_000)
                .await
                .unwrap()
                .unwrap();
            assert!(
                read.last_seq >= c.seq,
                "chunk {} sent before it was logged",
                c.seq
            );
        }
        self.record.emit(event).await
    }
}

/// Chunks the provider has ready at once are logged with one call per burst (at most 32),
/// each before it is sent, and reach the room one by one, numbered 1..n.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_is_logged_at_once_and_before_it_is_sent() {
    let n: u64 = 100;
    let words: Vec<String> = (1..=n).map(|i| format!("w{i} ")).collect();
    let provider = ScriptedProvider::new(words.clone());
    let log = Arc::new(CountingLog::default());
    let record = Arc::new(RecordingSink::new());
    let sink = Arc::new(LogFirstSink {
        log: log.clone(),
        record: record.clone(),
    });
    let store = MemoryStore::new();
    let engine = ChatEngine::builder(Arc::new(store), Arc::new(provider), sink)
        .stream_log(log.clone())
        .build();
    let room = conv("burst");
    let who = user("alice");
    engine.join(&who, &room).await.unwrap();
    engine.send(&who, streamed(&room, "go")).await.unwrap();
    within(
        "stream_end",
        record.wait_for(|e| matches!(e, StreamEvent::End(_))),
    )
    .await;
    let seqs: Vec<u64> = record
        .events()
        .iter()
        .filter_map(|e| match e {
            StreamEvent::Chunk(c) => Some(c.seq),
            _ => None,
        })
        .collect();
    assert_eq!(seqs, (1..=n).collect::<Vec<_>>());
    let bursts = log.bursts.load(std::sync::atomic::Ordering::SeqCst);
    assert!(
        (4..n as usize).contains(&bursts),
        "{bursts} log calls for {n} chunks ready at once"
    );
}
