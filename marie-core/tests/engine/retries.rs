//! A model step that fails mid-stream is asked again (`stream_reset`), within bounds and only
//! when worth it.

use std::time::Duration;

use marie_core::{
    Budget, BudgetPeriod, EndStatus, EngineConfig, ErrorCode, ProviderError, StreamEvent, StreamId,
    StreamReset, Usage, estimate_tokens,
};
use marie_llm::ScriptedProvider;
use marie_testkit::engine::{Harness, conv, harness_with, streamed, user, words};

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
    let h = Harness::builder(
        ScriptedProvider::new(words(10))
            .usage(Usage::reported(7, 10))
            .fail_first_at(1, 5, ProviderError::Upstream("overloaded_error".into())),
    )
    .with(|b| b.budget(Budget::new(100_000, BudgetPeriod::Day)))
    .build();
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
