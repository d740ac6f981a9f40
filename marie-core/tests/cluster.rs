//! Two engines sharing one store and one control bus behave as two nodes of a cluster:
//! one answer per conversation across both, `active_stream` seen from either, and
//! `cancel_stream` on one stopping an answer that runs on the other.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use marie_adapters::MemoryStore;
use marie_core::{
    AnswerLeases, ControlBus, EndStatus, EngineConfig, Error, Identity, LocalControlBus,
    StreamEvent, StreamId,
};
use marie_llm::ScriptedProvider;
use marie_testkit::engine::{Harness, WAIT, conv, streamed, user};

/// A node: an engine on the cluster's `store` and `bus`.
fn node(store: &MemoryStore, bus: &Arc<LocalControlBus>, provider: ScriptedProvider) -> Harness {
    let bus = bus.clone() as Arc<dyn ControlBus>;
    Harness::builder(provider)
        .store(store.clone())
        .config(EngineConfig::default().answer_lease(Duration::from_secs(30)))
        .with(move |builder| builder.control_bus(bus))
        .build()
}

fn alice() -> Identity {
    user("alice")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_answer_per_conversation_across_nodes_and_cancel_reaches_the_runner() {
    let store = MemoryStore::new();
    let bus = Arc::new(LocalControlBus::new());
    // Node A's answers say two words, then wait for ever (until cancelled).
    let a = node(
        &store,
        &bus,
        ScriptedProvider::new(["one ", "two "]).hang_at_end(),
    );
    let b = node(&store, &bus, ScriptedProvider::new(["x"]));
    let room = conv("shared");
    b.engine.join(&alice(), &room).await.unwrap();

    let sent = a
        .engine
        .send(&alice(), streamed(&room, "hi"))
        .await
        .unwrap();
    a.chunk(&sent.stream_id, 2).await;

    // B sees the answer A runs, with its progress, and refuses a second one.
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let joined = b.engine.join(&alice(), &room).await.unwrap();
        let active = joined.active_stream.expect("B sees A's answer");
        assert_eq!(active.stream_id, sent.stream_id);
        if active.seq == 2 {
            break;
        }
        // The lease keeper records `seq` just after each chunk; wait for it, bounded.
        assert!(
            tokio::time::Instant::now() < deadline,
            "seq never reached 2"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(matches!(
        b.engine.send(&alice(), streamed(&room, "too")).await,
        Err(Error::Busy)
    ));
    assert_eq!(b.engine.running_answers(), 0);
    assert_eq!(a.engine.running_answers(), 1);

    // Cancel on B stops the answer on A.
    let cancelled = b.engine.cancel(&alice(), &room, None).await.unwrap();
    assert_eq!(cancelled, sent.stream_id);
    let StreamEvent::End(end) = a.terminal(&sent.stream_id).await else {
        panic!("expected stream_end");
    };
    assert_eq!(end.status, EndStatus::Cancelled);
    assert_eq!(end.full_content, "one two ");

    // The lease went with the answer: B may answer now, and nobody is busy.
    assert_eq!(store.active_answer(&room).await.unwrap(), None);
    let next = b
        .engine
        .send(&alice(), streamed(&room, "again"))
        .await
        .unwrap();
    assert!(matches!(
        b.terminal(&next.stream_id).await,
        StreamEvent::End(_)
    ));
    assert!(
        b.engine
            .cancel(&alice(), &room, Some(&next.stream_id))
            .await
            .is_err(),
        "nothing left to cancel"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancel_naming_another_stream_does_not_stop_the_answer() {
    let store = MemoryStore::new();
    let bus = Arc::new(LocalControlBus::new());
    let a = node(&store, &bus, ScriptedProvider::new(["a"]).hang_at_end());
    let b = node(&store, &bus, ScriptedProvider::new(["x"]));
    let room = conv("named");
    a.engine.join(&alice(), &room).await.unwrap();
    let sent = a
        .engine
        .send(&alice(), streamed(&room, "hi"))
        .await
        .unwrap();
    a.chunk(&sent.stream_id, 1).await;

    let other = StreamId::parse("not-that-one").unwrap();
    assert!(matches!(
        b.engine.cancel(&alice(), &room, Some(&other)).await,
        Err(Error::NotFound(_))
    ));
    assert_eq!(a.engine.running_answers(), 1);
    b.engine
        .cancel(&alice(), &room, Some(&sent.stream_id))
        .await
        .unwrap();
    assert!(matches!(
        a.terminal(&sent.stream_id).await,
        StreamEvent::End(e) if e.status == EndStatus::Cancelled
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lease_left_by_a_dead_node_lapses() {
    let store = MemoryStore::new();
    let bus = Arc::new(LocalControlBus::new());
    let b = node(&store, &bus, ScriptedProvider::new(["x"]));
    let room = conv("orphan");
    b.engine.join(&alice(), &room).await.unwrap();
    // A node claimed the conversation and died without releasing it.
    let dead = StreamId::parse("dead").unwrap();
    assert!(
        store
            .claim_answer(&room, &dead, Duration::from_millis(100))
            .await
            .unwrap()
    );
    assert!(matches!(
        b.engine.send(&alice(), streamed(&room, "hi")).await,
        Err(Error::Busy)
    ));
    let deadline = tokio::time::Instant::now() + WAIT;
    let sent = loop {
        match b.engine.send(&alice(), streamed(&room, "hi")).await {
            Ok(sent) => break sent,
            Err(Error::Busy) => {
                assert!(tokio::time::Instant::now() < deadline, "never freed");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(e) => panic!("{e}"),
        }
    };
    assert!(matches!(
        b.terminal(&sent.stream_id).await,
        StreamEvent::End(_)
    ));
}
