//! Faults: a provider that fails (on start, mid-stream, truncated) or panics, a sink that panics,
//! and a store that panics. `FaultyStore` serves `shutdown` too.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use marie_adapters::MemoryStore;
use marie_core::{
    ChatMessage, ConversationId, EndStatus, EngineConfig, ErrorCode, History, HistoryQuery,
    MessageId, MessageRole, ProviderError, RecordingSink, SinkError, StoreError, Stores,
    StreamEvent, StreamSink,
};
use marie_llm::ScriptedProvider;
use marie_testkit::engine::{Harness, conv, harness, harness_with, streamed, user};

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
    let h = Harness::builder(ScriptedProvider::new(["a"]))
        .sink(
            sink.clone(),
            Arc::new(PanicOnStartSink {
                inner: sink,
                panicked: Default::default(),
            }),
        )
        .build();
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
// Faults in the store
// ---------------------------------------------------------------------------------------

/// A [`MemoryStore`] with a fault on cue.
pub(crate) struct FaultyStore {
    inner: MemoryStore,
    pub(crate) fault: Fault,
}

/// What a [`FaultyStore`] does wrong.
pub(crate) enum Fault {
    /// Panics when an assistant message (an answer) is stored.
    PanicOnAnswer,
    /// Holds each user message back: signals `entered`, then waits for a `release` permit.
    HoldUserMessages {
        entered: tokio::sync::Notify,
        release: tokio::sync::Semaphore,
    },
}

impl FaultyStore {
    pub(crate) fn new(fault: Fault) -> Arc<Self> {
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
    async fn delete_history(&self, conversation: &ConversationId) -> Result<(), StoreError> {
        self.inner.delete_history(conversation).await
    }
    async fn all_messages(
        &self,
        conversation: &ConversationId,
    ) -> Result<Vec<ChatMessage>, StoreError> {
        self.inner.all_messages(conversation).await
    }
}

/// A harness whose engine keeps its history in `faulty`, and every other part in the
/// [`MemoryStore`] under it.
pub(crate) fn harness_with_store(provider: ScriptedProvider, faulty: Arc<FaultyStore>) -> Harness {
    let store = faulty.inner.clone();
    Harness::builder(provider)
        .stores(store.clone(), Stores::new(store).with_history(faulty))
        .build()
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
