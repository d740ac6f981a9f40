//! History pages: the limit clamped, paging backwards, access.

use marie_core::{ChatMessage, EngineConfig, ErrorCode, History, MessageId, MessageRole};
use marie_llm::ScriptedProvider;
use marie_testkit::engine::{conv, harness_with, user};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_limit_is_clamped_and_pages_backwards() {
    let mut config = EngineConfig::default();
    config.default_history_page = 2;
    config.max_history_page = 3;
    let h = harness_with(ScriptedProvider::new(["ok"]), config);
    let alice = user("alice");
    let room = conv("room-history");
    h.create(&alice, &room).await;

    let mut ids: Vec<MessageId> = Vec::new();
    for i in 0..5 {
        let message = ChatMessage::now(
            MessageRole::User,
            format!("m{i}"),
            Some(alice.user_id.clone()),
            ids.last().cloned(),
        );
        ids.push(message.message_id.clone());
        h.store
            .append_message(&room, message)
            .await
            .expect("append");
    }
    let contents =
        |messages: Vec<ChatMessage>| messages.into_iter().map(|m| m.content).collect::<Vec<_>>();
    let page = |before, limit| h.engine.history(&alice, &room, before, limit);

    assert_eq!(
        contents(page(None, None).await.expect("default")),
        ["m3", "m4"]
    );
    assert_eq!(
        contents(page(None, Some(1000)).await.expect("clamped down")),
        ["m2", "m3", "m4"]
    );
    assert_eq!(
        contents(page(None, Some(0)).await.expect("none asked")),
        Vec::<String>::new(),
        "limit 0 asks for no message"
    );
    assert_eq!(
        contents(page(Some(ids[3].clone()), Some(10)).await.expect("older")),
        ["m0", "m1", "m2"]
    );
    assert_eq!(
        contents(page(Some(ids[0].clone()), None).await.expect("oldest")),
        Vec::<String>::new()
    );
    assert_eq!(
        h.engine
            .history(&user("bob"), &room, None, None)
            .await
            .expect_err("no access")
            .code(),
        ErrorCode::Forbidden
    );
    assert_eq!(
        h.engine
            .history(&alice, &conv("room-nowhere"), None, None)
            .await
            .expect_err("no such conversation")
            .code(),
        ErrorCode::NotFound
    );
}
