//! Sending: a repeated client message id is a duplicate that starts nothing, and invalid messages
//! are refused before anything starts.

use marie_core::{EngineConfig, Error, ErrorCode, MessageRole, SendRequest, StreamEvent};
use marie_llm::ScriptedProvider;
use marie_testkit::engine::{conv, harness, harness_with, streamed, user};

fn with_client_id(request: SendRequest, id: &str) -> SendRequest {
    SendRequest {
        client_message_id: Some(id.to_owned()),
        on_busy: None,
        ..request
    }
}

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
