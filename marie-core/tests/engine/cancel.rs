//! `cancel_stream`: with chunks said and before the first one.

use marie_core::{EndStatus, Error, ErrorCode, FinishReason, MessageRole, StreamEvent, StreamId};
use marie_llm::ScriptedProvider;
use marie_testkit::engine::{conv, harness, streamed, user, within};

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
