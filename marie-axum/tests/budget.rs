//! Token budgets with a real Socket.IO client: `get_usage`, an answer that stops at the
//! budget (`finish_reason:"budget"`), and `budget_exceeded` for the next send.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use marie_axum::MarieConfig;
use marie_core::{Budget, BudgetPeriod};
use marie_llm::EchoProvider;
use marie_testkit::server::start_custom;
use marie_testkit::socketio::connect;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_stops_at_the_budget_and_then_sends_are_refused() {
    let server = start_custom(
        EchoProvider::new(Duration::ZERO),
        MarieConfig::default(),
        |b| b.budget(Budget::new(30, BudgetPeriod::Day)),
    )
    .await;
    let mut alice = connect(server.addr, "alice").await;
    alice.join("room").await;

    let usage = alice.ack("get_usage", json!({})).await;
    assert_eq!(usage["status"], "ok", "{usage}");
    assert_eq!(
        (&usage["used"], &usage["limit"], &usage["period"]),
        (&json!(0), &json!(30), &json!("day"))
    );
    let resets_at = usage["resets_at"].as_u64().unwrap();
    assert!(resets_at > marie_core::now_millis());
    let extra = alice.ack("get_usage", json!({"user_id": "bob"})).await;
    assert_eq!(extra["code"], "bad_request", "{extra}");
    assert_eq!(alice.next("error").await["event"], "get_usage");

    let words: Vec<String> = (0..60).map(|i| format!("word{i}")).collect();
    let sent = alice
        .ack(
            "send_message",
            json!({"conversation_id": "room", "message": words.join(" ")}),
        )
        .await;
    assert_eq!(sent["status"], "ok", "{sent}");
    let seen = alice.stream().await;
    assert_eq!(seen.terminal.event, "stream_end");
    let end = &seen.terminal.data;
    assert_eq!(end["status"], "complete");
    assert_eq!(end["finish_reason"], "budget");

    let usage = alice.ack("get_usage", json!({})).await;
    assert_eq!(usage["used"], end["usage"]["total_tokens"], "counted once");
    assert_eq!(usage["resets_at"], resets_at);

    let refused = alice
        .ack(
            "send_message",
            json!({"conversation_id": "room", "message": "more"}),
        )
        .await;
    assert_eq!(refused["code"], "budget_exceeded", "{refused}");
    let error = alice.next("error").await;
    assert_eq!(error["code"], "budget_exceeded");
    assert_eq!(error["event"], "send_message");

    // Someone else's budget is their own.
    let bob = connect(server.addr, "bob").await;
    let usage = bob.ack("get_usage", json!({})).await;
    assert_eq!(usage["used"], 0);
}
