//! A user's conversations over Socket.IO and HTTP (`docs/protocol.md` section 9): the list
//! a page shows, titles that follow on every connection of the members (joined or not),
//! the REST routes, and bad input.

#![allow(clippy::unwrap_used)]

#[path = "../../marie-adapters/tests/support/postgres.rs"]
mod postgres;
#[path = "../../marie-adapters/tests/support/proxy.rs"]
mod proxy;

use std::time::Duration;

use marie_adapters::{RedisConfig, RedisStore, SqlStore};
use marie_axum::MarieConfig;
use marie_core::{EngineConfig, Stores};
use marie_llm::EchoProvider;
use marie_testkit::server::{TestServer, start_custom, start_with};
use marie_testkit::socketio::connect;
use serde_json::{Value, json};

fn config() -> MarieConfig {
    let mut config = MarieConfig::default();
    config.engine = EngineConfig::default().models(["echo-small", "echo-large"]);
    config
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sidebar_follows_titles_and_the_model_choice_reaches_the_answer() {
    let server = start_with(EchoProvider::new(Duration::ZERO), config()).await;
    let mut alice = connect(server.addr, "alice").await;
    // Alice's second page has joined nothing: it shows her list.
    let mut sidebar = connect(server.addr, "alice").await;
    alice.join("trip").await;

    alice.send("trip", "Where should we go this summer").await;
    alice.stream().await;
    let named = sidebar.next("conversation_updated").await;
    assert_eq!(named["conversation_id"], "trip");
    assert_eq!(named["title"], "Where should we go this summer");
    assert_eq!(named["updated_by"], Value::Null);

    let list = sidebar.ack("list_conversations", json!({})).await;
    assert_eq!(list["status"], "ok", "{list}");
    let first = &list["conversations"][0];
    assert_eq!(first["title"], "Where should we go this summer");
    assert_eq!(first["last_message"]["role"], "assistant");
    assert_eq!(first["archived"], false);
    assert_eq!(list["next_before"], Value::Null);

    // The model: the default first, then the one chosen; one not offered is refused.
    alice.send("trip", "which model").await;
    assert_eq!(
        alice.stream().await.text(),
        "This conversation uses the model echo-small."
    );
    let refused = alice
        .ack(
            "update_conversation",
            json!({"conversation_id": "trip", "model": "gpt-9"}),
        )
        .await;
    assert_eq!(refused["code"], "bad_request");
    assert!(
        refused["message"]
            .as_str()
            .unwrap()
            .contains("echo-small, echo-large"),
        "{refused}"
    );
    let ack = alice
        .ack(
            "update_conversation",
            json!({"conversation_id": "trip", "model": "echo-large"}),
        )
        .await;
    assert_eq!(ack["model"], "echo-large", "{ack}");
    assert_eq!(
        sidebar.next("conversation_updated").await["model"],
        "echo-large"
    );
    alice.send("trip", "which model").await;
    assert_eq!(
        alice.stream().await.text(),
        "This conversation uses the model echo-large."
    );

    // Bad input: clear errors, nothing changed, the connection kept.
    for (event, payload) in [
        ("list_conversations", json!({"limit": -1})),
        ("list_conversations", json!({"before": 5})),
        ("list_conversations", json!({"sort": "title"})),
        ("update_conversation", json!({"conversation_id": "trip"})),
        (
            "update_conversation",
            json!({"conversation_id": "trip", "title": ""}),
        ),
        (
            "update_conversation",
            json!({"conversation_id": "trip", "system_prompt": "x"}),
        ),
        (
            "archive_conversation",
            json!({"conversation_id": "trip", "archived": "yes"}),
        ),
        ("remove_member", json!({"conversation_id": "trip"})),
    ] {
        let ack = alice.ack(event, payload.clone()).await;
        assert_eq!(ack["code"], "bad_request", "{event} {payload}: {ack}");
    }
    let details = alice
        .ack("get_conversation", json!({"conversation_id": "trip"}))
        .await;
    assert_eq!(details["title"], "Where should we go this summer");
    // What a member may change it to: the app's models, no prompt of their own.
    assert_eq!(details["models"], json!(["echo-small", "echo-large"]));
    assert_eq!(details["max_system_prompt_chars"], 0);
    assert_eq!(
        details["members"],
        json!([{"user_id": "alice", "role": "owner"}])
    );
}

/// The chat test server with the echo provider and [`config`], on `store`.
async fn server_on(store: Stores) -> TestServer {
    start_custom(EchoProvider::new(Duration::ZERO), config(), |b| {
        b.store(store)
    })
    .await
}

/// A `RedisStore` under a key prefix of its own.
async fn redis_stores() -> Stores {
    let config = RedisConfig::new(proxy::redis_url()).prefix(proxy::unique_prefix("conversations"));
    Stores::new(RedisStore::connect(config).await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rest_routes_list_read_rename_and_delete() {
    rest_routes(start_with(EchoProvider::new(Duration::ZERO), config()).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rest_routes_and_the_export_on_redis() {
    rest_routes(server_on(redis_stores().await).await).await;
    export(server_on(redis_stores().await).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rest_routes_and_the_export_on_sqlite() {
    let sqlite = || async { Stores::new(SqlStore::connect("sqlite::memory:").await.unwrap()) };
    rest_routes(server_on(sqlite().await).await).await;
    export(server_on(sqlite().await).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rest_routes_and_the_export_on_postgres() {
    let (a, b) = (
        postgres::Schema::create("conv_rest").await,
        postgres::Schema::create("conv_export").await,
    );
    rest_routes(server_on(Stores::new(a.store().await)).await).await;
    export(server_on(Stores::new(b.store().await)).await).await;
    a.drop_all().await;
    b.drop_all().await;
}

async fn rest_routes(server: TestServer) {
    let base = format!("http://{}/api/chat/conversations", server.addr);
    let http = reqwest::Client::new();
    let mut alice = connect(server.addr, "alice").await;
    for id in ["r1", "r2", "r3"] {
        alice.join(id).await;
    }

    let page: Value = http
        .get(format!("{base}?limit=2"))
        .bearer_auth("t-alice")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(page["conversations"].as_array().unwrap().len(), 2, "{page}");
    let cursor = page["next_before"].as_str().unwrap();
    let rest: Value = http
        .get(&base)
        .query(&[("before", cursor)])
        .bearer_auth("t-alice")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(rest["conversations"].as_array().unwrap().len(), 1, "{rest}");

    let renamed = http
        .patch(format!("{base}/r1"))
        .bearer_auth("t-alice")
        .json(&json!({"title": "First"}))
        .send()
        .await
        .unwrap();
    assert_eq!(renamed.status(), 200);
    let renamed: Value = renamed.json().await.unwrap();
    assert_eq!(renamed["title"], "First");
    assert_eq!(alice.next("conversation_updated").await["title"], "First");

    // Refusals: no credentials, someone else's conversation, a bad body, a bad query.
    let status = |r: reqwest::Response| r.status().as_u16();
    assert_eq!(status(http.get(&base).send().await.unwrap()), 401);
    assert_eq!(
        status(
            http.get(format!("{base}/r1"))
                .bearer_auth("t-bob")
                .send()
                .await
                .unwrap()
        ),
        403
    );
    assert_eq!(
        status(
            http.patch(format!("{base}/r1"))
                .bearer_auth("t-alice")
                .json(&json!({"conversation_id": "r2", "title": "x"}))
                .send()
                .await
                .unwrap()
        ),
        400
    );
    assert_eq!(
        status(
            http.get(format!("{base}?limit=lots"))
                .bearer_auth("t-alice")
                .send()
                .await
                .unwrap()
        ),
        400
    );
    assert_eq!(
        status(
            http.delete(format!("{base}/r1"))
                .bearer_auth("t-bob")
                .send()
                .await
                .unwrap()
        ),
        403
    );

    let deleted = http
        .delete(format!("{base}/r1"))
        .bearer_auth("t-alice")
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), 200);
    assert_eq!(
        alice.next("conversation_deleted").await["conversation_id"],
        "r1"
    );
    let gone = http
        .get(format!("{base}/r1"))
        .bearer_auth("t-alice")
        .send()
        .await
        .unwrap();
    assert_eq!(gone.status(), 404);
    // The socket left the room: joining again is refused, the id is not reused.
    let again = alice
        .ack("join_conversation", json!({"conversation_id": "r1"}))
        .await;
    assert_eq!(again["code"], "not_found", "{again}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_export_holds_every_branch_and_only_a_member_gets_it() {
    export(start_with(EchoProvider::new(Duration::ZERO), config()).await).await;
}

async fn export(server: TestServer) {
    let url = format!("http://{}/api/chat/conversations/x1/export", server.addr);
    let http = reqwest::Client::new();
    let mut alice = connect(server.addr, "alice").await;
    alice.join("x1").await;
    alice.send("x1", "first question").await;
    alice.stream().await;
    // A second answer to the same question: a branch beside the first.
    let history = alice
        .ack("get_history", json!({"conversation_id": "x1"}))
        .await;
    let answer = history["messages"][1]["message_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let regenerated = alice
        .ack(
            "regenerate",
            json!({"conversation_id": "x1", "message_id": answer}),
        )
        .await;
    assert_eq!(regenerated["status"], "ok", "{regenerated}");
    alice.stream().await;

    let response = http.get(&url).bearer_auth("t-alice").send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()["content-disposition"],
        "attachment; filename=\"conversation-x1.json\""
    );
    let export: Value = response.json().await.unwrap();
    assert_eq!(export["conversation"]["conversation_id"], "x1");
    assert_eq!(
        export["conversation"]["members"],
        json!([{"user_id": "alice", "role": "owner"}])
    );
    let messages = export["messages"].as_array().unwrap();
    let roles: Vec<_> = messages.iter().map(|m| m["role"].clone()).collect();
    assert_eq!(roles, ["user", "assistant", "assistant"], "{export}");
    let question = &messages[0]["message_id"];
    assert_eq!(messages[1]["parent_id"], *question);
    assert_eq!(
        messages[2]["parent_id"], *question,
        "both answers, one per branch"
    );
    assert_eq!(messages[1]["message_id"], answer.as_str());
    assert_eq!(export["active_leaf"], messages[2]["message_id"]);
    assert!(export["exported_at"].as_u64().unwrap() > 0);

    // The same over Socket.IO; someone else's conversation is refused on both.
    let over_socket = alice
        .ack("export_conversation", json!({"conversation_id": "x1"}))
        .await;
    assert_eq!(over_socket["messages"], export["messages"]);
    let bob = http.get(&url).bearer_auth("t-bob").send().await.unwrap();
    assert_eq!(bob.status(), 403);
    let missing = http
        .get(format!(
            "http://{}/api/chat/conversations/nope/export",
            server.addr
        ))
        .bearer_auth("t-alice")
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
}
