//! Token budgets: an answer stops at the budget, and cancelled and failed answers count.

use std::time::Duration;

use marie_core::{
    Budget, BudgetPeriod, EndStatus, Error, ErrorCode, FinishReason, ProviderError, budget_fn,
};
use marie_llm::ScriptedProvider;
use marie_testkit::engine::{Harness, conv, streamed, user, words};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_stops_at_the_budget_and_the_next_send_is_refused() {
    let budget = Budget::new(40, BudgetPeriod::Day);
    let h = Harness::builder(ScriptedProvider::new(words(100)))
        .with(move |b| b.budget(budget))
        .build();
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
    let h = Harness::builder(
        ScriptedProvider::new(words(50))
            .delay(Duration::from_millis(5))
            .fail_at(30, ProviderError::Disconnected("gone".into())),
    )
    .with(move |b| b.budget(policy))
    .build();
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
