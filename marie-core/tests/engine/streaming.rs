//! A streamed answer (its events, reasoning, usage, the model's request), an answer with
//! `stream: false`, and chunks logged before they are sent.

use std::sync::Arc;

use async_trait::async_trait;
use marie_adapters::MemoryStore;
use marie_core::{
    ChatEngine, EndStatus, EngineConfig, ErrorCode, FinishReason, MessagePart, MessageRole,
    ProviderError, RecordingSink, SinkError, StartStatus, StoreError, StreamEvent, StreamId,
    StreamSink, Usage, estimate_tokens,
};
use marie_llm::ScriptedProvider;
use marie_testkit::engine::{
    conv, harness, harness_with, prompt, streamed, unstreamed, user, within,
};

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
        events.iter().map(StreamEvent::name).collect::<Vec<_>>(),
        ["message_added", "message_response"],
        "the question to the room, then the answer, no stream events: {events:?}"
    );
    assert_eq!(*events[1].conversation_id(), room);

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
    let names: Vec<_> = h.sink.events().iter().map(StreamEvent::name).collect();
    assert_eq!(names, ["message_added", "error"]);
    // The conversation is free again.
    h.send(&alice, unstreamed(&room, "again")).await;
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
