//! A conversation busy with an answer: `busy` until the terminal event, and `on_busy` (the queue,
//! interrupt).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use marie_core::{
    ConversationId, EndStatus, EngineConfig, Error, ErrorCode, OnBusy, RecordingSink, SendRequest,
    SinkError, StreamEvent, StreamId, StreamSink,
};
use marie_llm::ScriptedProvider;
use marie_testkit::engine::{
    Harness, admin, contents, conv, harness, harness_with, streamed, user,
};

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
    // The queued question's model request held the answer before it (after the note that
    // Alice and Bob share the room).
    assert_eq!(h.provider.requests()[1].messages.len(), 4);
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
    let h = Harness::builder(ScriptedProvider::new(["done"]))
        .sink(sink, slow.clone())
        .build();
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

/// Leases whose renewals reach the store late, as a SQL statement already handed to a pool's
/// connection does: dropping the renewal's future does not stop it. `landing` counts the
/// renewals on their way.
struct LateRenewals {
    store: marie_adapters::MemoryStore,
    landing: Arc<tokio::sync::watch::Sender<usize>>,
}

#[async_trait]
impl marie_core::AnswerLeases for LateRenewals {
    async fn claim_answer(
        &self,
        conversation: &ConversationId,
        stream_id: &StreamId,
        ttl: Duration,
    ) -> Result<bool, marie_core::StoreError> {
        self.store.claim_answer(conversation, stream_id, ttl).await
    }
    async fn renew_answer(
        &self,
        conversation: &ConversationId,
        lease: &marie_core::AnswerLease,
        ttl: Duration,
    ) -> Result<bool, marie_core::StoreError> {
        let (store, landing) = (self.store.clone(), self.landing.clone());
        let (conversation, lease) = (conversation.clone(), lease.clone());
        landing.send_modify(|n| *n += 1);
        tokio::spawn(async move {
            // Slower than the answer's last words: the end comes while it is on its way.
            tokio::time::sleep(Duration::from_millis(60)).await;
            let renewed = store.renew_answer(&conversation, &lease, ttl).await;
            landing.send_modify(|n| *n -= 1);
            renewed
        })
        .await
        .unwrap()
    }
    async fn release_answer(
        &self,
        conversation: &ConversationId,
        stream_id: &StreamId,
    ) -> Result<(), marie_core::StoreError> {
        self.store.release_answer(conversation, stream_id).await
    }
    async fn active_answer(
        &self,
        conversation: &ConversationId,
    ) -> Result<Option<marie_core::AnswerLease>, marie_core::StoreError> {
        self.store.active_answer(conversation).await
    }
}

/// A renewal still on its way when the answer ends lands before the lease is released, not
/// after (which would take the lease again and leave the conversation `busy` for a lease).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_renewal_in_flight_at_the_end_never_takes_the_lease_back() {
    use marie_core::AnswerLeases;
    let store = marie_adapters::MemoryStore::new();
    let (landing, mut landed) = tokio::sync::watch::channel(0usize);
    let leases = LateRenewals {
        store: store.clone(),
        landing: Arc::new(landing),
    };
    let parts = marie_core::Stores::new(store.clone()).with_answer_leases(leases);
    let words: Vec<String> = (0..30).map(|i| format!("w{i} ")).collect();
    let h = Harness::builder(ScriptedProvider::new(words).delay(Duration::from_millis(5)))
        .stores(store.clone(), parts)
        .build();
    let alice = user("alice");
    let room = conv("room-late-renewal");
    h.create(&alice, &room).await;
    for i in 0..5 {
        let sent = h.send(&alice, streamed(&room, &format!("q{i}"))).await;
        h.end(&sent.stream_id).await;
        // Every renewal has reached the store, late ones included.
        landed.wait_for(|n| *n == 0).await.unwrap();
        assert_eq!(
            store.active_answer(&room).await.unwrap(),
            None,
            "answer {i}: the lease stays released"
        );
    }
}
