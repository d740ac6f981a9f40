//! Shutdown: answers finish within the grace period or are interrupted, and a send that is
//! starting its answer is waited for.

use std::time::Duration;

use marie_core::{EndStatus, Error, ErrorCode, FinishReason, StreamEvent};
use marie_llm::ScriptedProvider;
use marie_testkit::engine::{WAIT, conv, harness, stream_id_of, streamed, user, within};

use crate::faults::{Fault, FaultyStore, harness_with_store};

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
