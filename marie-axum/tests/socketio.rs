//! The chat protocol driven by a real Socket.IO client over TCP.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use marie_axum::MarieConfig;
use marie_llm::{EchoProvider, ScriptedProvider};
use marie_testkit::server::{start, start_with};
use marie_testkit::socketio::{connect, connect_raw, connect_url};
use serde_json::{Value, json};

fn echo() -> EchoProvider {
    EchoProvider::new(Duration::from_millis(2))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_is_refused_without_valid_credentials() {
    let server = start(echo()).await;
    for auth in [
        None,
        Some(json!({})),
        Some(json!({ "token": "nope" })),
        Some(json!({ "token": 42 })),
    ] {
        let mut c = connect_raw(server.addr, auth.clone()).await;
        let err = c.next("error").await;
        assert!(
            err.to_string().contains("unauthorized"),
            "auth {auth:?} gave {err}"
        );
        assert!(
            !c.all().iter().any(|r| r.event == "connected"),
            "a refused client must not see `connected`"
        );
        c.disconnect().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn query_string_tokens_only_when_enabled() {
    // Off by default: tokens in URLs end up in logs.
    let server = start(echo()).await;
    let url = format!("http://{}/?token=t-alice", server.addr);
    let mut c = connect_url(&url, None).await;
    assert!(c.next("error").await.to_string().contains("unauthorized"));

    let mut config = MarieConfig::default();
    config.allow_query_token = true;
    let server = start_with(echo(), config).await;
    let url = format!("http://{}/?token=t-alice", server.addr);
    let mut c = connect_url(&url, None).await;
    assert_eq!(c.next("connected").await["user_id"], "alice");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connected_carries_user_and_private_session() {
    let server = start(echo()).await;
    let mut c = connect_raw(server.addr, Some(json!({ "token": "t-alice" }))).await;
    let connected = c.next("connected").await;
    assert_eq!(connected["status"], "connected");
    assert_eq!(connected["user_id"], "alice");
    let sid = connected["sid"].as_str().unwrap();
    let session = connected["session"].as_str().unwrap();
    assert!(!sid.is_empty());
    assert!(session.len() >= 32, "session handle must be unguessable");
    assert_ne!(sid, session, "the session is never the public sid");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn join_is_for_creator_invitees_and_admins() {
    let server = start(echo()).await;
    let mut alice = connect(server.addr, "alice").await;
    let mut bob = connect(server.addr, "bob").await;
    let mut admin = connect(server.addr, "admin").await;

    let ack = alice.join("plans").await;
    assert_eq!(ack["created"], true);
    assert_eq!(ack["members"], json!(["alice"]));
    let joined = alice.next("joined").await;
    assert_eq!(joined["conversation_id"], "plans");
    assert_eq!(joined["status"], "joined");

    let refused = bob
        .ack("join_conversation", json!({ "conversation_id": "plans" }))
        .await;
    assert_eq!(refused["status"], "error");
    assert_eq!(refused["code"], "forbidden");
    let err = bob.next("error").await;
    assert_eq!(err["code"], "forbidden");
    assert_eq!(err["event"], "join_conversation");

    // Only someone with access may invite.
    let not_member = bob
        .ack(
            "invite",
            json!({ "conversation_id": "plans", "user_id": "bob" }),
        )
        .await;
    assert_eq!(not_member["code"], "forbidden");

    alice.invite("plans", "bob").await;
    let ack = bob.join("plans").await;
    assert_eq!(ack["created"], false);
    assert_eq!(ack["members"], json!(["alice", "bob"]));
    let seen = alice.next("user_joined").await;
    assert_eq!(
        seen,
        json!({ "user_id": "bob", "conversation_id": "plans" })
    );

    admin.join("plans").await;

    // Leaving tells the others.
    let left = bob
        .ack("leave_conversation", json!({ "conversation_id": "plans" }))
        .await;
    assert_eq!(left["status"], "ok");
    assert_eq!(bob.next("left").await["conversation_id"], "plans");
    assert_eq!(alice.next("user_left").await["user_id"], "bob");
}

/// The model's reasoning reaches every member as `stream_reasoning`, numbered in the same
/// sequence as the chunks; `stream_end.parts` and `get_history` keep it apart from the text.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reasoning_streams_to_the_room_and_is_kept_as_a_part() {
    let server = start(
        ScriptedProvider::new(["Four", "."])
            .reasoning_first(["Two ", "and two."])
            .delay(Duration::from_millis(3)),
    )
    .await;
    let mut alice = connect(server.addr, "alice").await;
    alice.join("thinking").await;
    let ack = alice
        .ack(
            "send_message",
            json!({ "conversation_id": "thinking", "message": "2+2?" }),
        )
        .await;
    assert_eq!(ack["status"], "ok", "{ack}");
    let mut numbered = Vec::new();
    let end = loop {
        let ev = alice
            .next_of(&["stream_reasoning", "stream_chunk", "stream_end"])
            .await;
        if ev.event == "stream_end" {
            break ev.data;
        }
        assert_eq!(ev.data["stream_id"], ack["stream_id"]);
        assert!(
            ev.data.get("first_seq").is_none(),
            "nothing merged: {}",
            ev.data
        );
        numbered.push((
            ev.event,
            ev.data["seq"].as_u64().unwrap(),
            ev.data["content"].as_str().unwrap().to_owned(),
        ));
    };
    let expected: Vec<(String, u64, String)> = [
        ("stream_reasoning", 1, "Two "),
        ("stream_reasoning", 2, "and two."),
        ("stream_chunk", 3, "Four"),
        ("stream_chunk", 4, "."),
    ]
    .into_iter()
    .map(|(e, s, c)| (e.to_owned(), s, c.to_owned()))
    .collect();
    assert_eq!(numbered, expected);
    assert_eq!(end["full_content"], "Four.");
    let parts = json!([
        {"type": "reasoning", "content": "Two and two."},
        {"type": "text", "content": "Four."}
    ]);
    assert_eq!(end["parts"], parts);
    let history = alice
        .ack("get_history", json!({ "conversation_id": "thinking" }))
        .await;
    assert_eq!(history["messages"][1]["content"], "Four.");
    assert_eq!(history["messages"][1]["parts"], parts);
    assert!(history["messages"][0].get("parts").is_none(), "{history}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_streamed_answer_reaches_every_member_and_no_one_else() {
    let server = start(
        ScriptedProvider::new(["The ", "answer ", "is ", "forty-two."])
            .delay(Duration::from_millis(3)),
    )
    .await;
    let mut alice = connect(server.addr, "alice").await;
    let mut bob = connect(server.addr, "bob").await;
    let mut carol = connect(server.addr, "carol").await;
    alice.join("room1").await;
    alice
        .ack(
            "invite",
            json!({ "conversation_id": "room1", "user_id": "bob" }),
        )
        .await;
    bob.join("room1").await;
    carol.join("elsewhere").await;

    let ack = alice
        .ack(
            "send_message",
            json!({ "conversation_id": "room1", "message": "what is the answer?" }),
        )
        .await;
    assert_eq!(ack["status"], "ok", "{ack}");
    assert!(ack["message_id"].is_string());
    let stream_id = ack["stream_id"].as_str().unwrap().to_owned();

    for member in [&mut alice, &mut bob] {
        let seen = member.stream().await;
        assert_eq!(seen.start["stream_id"], stream_id);
        assert_eq!(seen.start["status"], "streaming");
        assert_eq!(
            seen.start["parent_id"], ack["message_id"],
            "the question it answers"
        );
        assert_eq!(seen.start["conversation_id"], "room1");
        assert_eq!(seen.chunks.len(), 4);
        let joined = seen.assert_contiguous();
        assert_eq!(joined, "The answer is forty-two.");
        assert_eq!(seen.terminal.event, "stream_end");
        let end = &seen.terminal.data;
        assert_eq!(end["full_content"], joined);
        assert_eq!(end["status"], "complete");
        assert_eq!(end["stream_id"], stream_id);
        assert_eq!(end["message_id"], seen.start["message_id"]);
        assert_eq!(end["finish_reason"], "stop");
        assert_eq!(end["usage"]["estimated"], true);
        assert!(end["usage"]["completion_tokens"].as_u64().unwrap() > 0);
        assert_eq!(seen.chunks.last().unwrap()["tokens_used"], 4);
    }

    // Carol is elsewhere: a round trip on her connection flushes anything sent to her
    // before the stream ended; nothing of the stream may be there.
    carol
        .ack("get_history", json!({ "conversation_id": "elsewhere" }))
        .await;
    let leaked: Vec<_> = carol
        .all()
        .into_iter()
        .filter(|r| r.event.starts_with("stream_"))
        .collect();
    assert!(leaked.is_empty(), "carol got {leaked:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acks_have_the_protocol_shapes() {
    let server = start(echo()).await;
    let mut alice = connect(server.addr, "alice").await;
    alice.join("acks").await;

    let sent = alice
        .ack(
            "send_message",
            json!({ "conversation_id": "acks", "message": "hello there" }),
        )
        .await;
    assert_eq!(sent["status"], "ok");
    assert!(sent["message_id"].is_string() && sent["stream_id"].is_string());
    let end = alice.next("stream_end").await;
    assert_eq!(end["full_content"], "hello there");

    // The seed's shape for send_message_with_ack, and the answer as one message_response.
    let seed = alice
        .ack(
            "send_message_with_ack",
            json!({ "conversation_id": "acks", "message": "no streaming please" }),
        )
        .await;
    assert_eq!(seed["status"], "success", "{seed}");
    assert!(seed["message_id"].is_string());
    let response = alice.next("message_response").await;
    assert_eq!(response["conversation_id"], "acks");
    assert_eq!(response["message"], "no streaming please");
    assert!(response["message_id"].is_string());

    let seed_err = alice
        .ack(
            "send_message_with_ack",
            json!({ "conversation_id": "nope", "message": "x" }),
        )
        .await;
    assert_eq!(seed_err["status"], "error");
    assert!(seed_err["error"].is_string());

    let history = alice
        .ack("get_history", json!({ "conversation_id": "acks" }))
        .await;
    assert_eq!(history["status"], "ok");
    let messages = history["messages"].as_array().unwrap();
    let roles: Vec<&str> = messages
        .iter()
        .map(|m| m["role"].as_str().unwrap())
        .collect();
    assert_eq!(roles, ["user", "assistant", "user", "assistant"]);
    assert_eq!(messages[0]["content"], "hello there");
    assert_eq!(messages[0]["user_id"], "alice");
    assert_eq!(messages[1]["content"], "hello there");
    assert_eq!(messages[1]["message_id"], end["message_id"]);
    assert!(messages[1].get("user_id").is_none());
    assert!(messages.iter().all(|m| m["created_at"].is_u64()));

    let page = alice
        .ack(
            "get_history",
            json!({ "conversation_id": "acks", "limit": 1, "before": messages[3]["message_id"] }),
        )
        .await;
    assert_eq!(page["messages"].as_array().unwrap().len(), 1);
    assert_eq!(page["messages"][0]["message_id"], messages[2]["message_id"]);

    // `limit: 0` asks for no message, and gets none.
    let none = alice
        .ack(
            "get_history",
            json!({ "conversation_id": "acks", "limit": 0 }),
        )
        .await;
    assert_eq!(none["status"], "ok", "{none}");
    assert_eq!(none["messages"], json!([]));
    // A bad number says which field, in words a client developer reads.
    let bad = alice
        .ack(
            "get_history",
            json!({ "conversation_id": "acks", "limit": -1 }),
        )
        .await;
    assert_eq!(bad["code"], "bad_request");
    let message = bad["message"].as_str().unwrap();
    assert!(
        message.contains("`limit`") && message.contains("a whole number"),
        "{message}"
    );
    assert!(!message.contains("usize"), "{message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_payloads_get_bad_request_and_the_connection_keeps_working() {
    // Many events in a burst: without rate limits (tests/security.rs covers those).
    let mut config = MarieConfig::default();
    config.limits = marie_axum::Limits::unlimited();
    let server = start_with(echo(), config).await;
    let mut alice = connect(server.addr, "alice").await;
    let mut bob = connect(server.addr, "bob").await;
    alice.join("fine").await;
    bob.join("bobs").await;

    let bad_payloads = [
        json!(42),
        json!("fine"),
        json!(null),
        json!([1, 2, 3]),
        json!({}),
        json!({ "conversation_id": 7 }),
        json!({ "conversation_id": "" }),
        json!({ "conversation_id": "has space" }),
        json!({ "conversation_id": "x".repeat(129) }),
        json!({ "conversation_id": "fine", "unexpected": true }),
    ];
    let events = [
        "join_conversation",
        "leave_conversation",
        "invite",
        "send_message",
        "send_message_with_ack",
        "cancel_stream",
        "resume_stream",
        "get_history",
        "system_announcement",
    ];
    for event in events {
        for payload in &bad_payloads {
            let ack = alice.ack(event, payload.clone()).await;
            assert_eq!(ack["status"], "error", "{event} {payload}: {ack}");
            // The seed's shape for send_message_with_ack carries `code` beside `error`.
            assert_eq!(ack["code"], "bad_request", "{event} {payload}: {ack}");
            let err = alice.next("error").await;
            assert_eq!(err["code"], "bad_request");
            assert_eq!(err["event"], event);
            assert!(err["message"].is_string());
        }
    }
    // Wrong types in otherwise fine payloads.
    for (event, payload) in [
        (
            "send_message",
            json!({ "conversation_id": "fine", "message": 5 }),
        ),
        (
            "send_message",
            json!({ "conversation_id": "fine", "message": "x", "stream": "yes" }),
        ),
        (
            "invite",
            json!({ "conversation_id": "fine", "user_id": ["bob"] }),
        ),
        (
            "get_history",
            json!({ "conversation_id": "fine", "limit": -1 }),
        ),
        (
            "cancel_stream",
            json!({ "conversation_id": "fine", "stream_id": "bad id!" }),
        ),
    ] {
        let ack = alice.ack(event, payload.clone()).await;
        assert_eq!(ack["code"], "bad_request", "{event} {payload}: {ack}");
    }
    // Without an ack the error event still comes.
    alice.emit("join_conversation", json!(12)).await;
    assert_eq!(alice.next("error").await["code"], "bad_request");

    // Still connected and served, and bob was never disturbed.
    let ok = alice
        .ack(
            "send_message",
            json!({ "conversation_id": "fine", "message": "still here" }),
        )
        .await;
    assert_eq!(ok["status"], "ok");
    assert_eq!(alice.next("stream_end").await["full_content"], "still here");
    let ok = bob
        .ack(
            "send_message",
            json!({ "conversation_id": "bobs", "message": "me too" }),
        )
        .await;
    assert_eq!(ok["status"], "ok");
    assert_eq!(bob.next("stream_end").await["full_content"], "me too");
    assert!(
        !bob.all().iter().any(|r| r.event == "error"),
        "bob must see none of alice's errors"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_ends_with_cancelled_and_keeps_the_partial_answer() {
    let provider = ScriptedProvider::new(["partial ", "answer "]).hang_at_end();
    let server = start(provider.clone()).await;
    let mut alice = connect(server.addr, "alice").await;
    alice.join("c").await;

    let sent = alice
        .ack(
            "send_message",
            json!({ "conversation_id": "c", "message": "go" }),
        )
        .await;
    let stream_id = sent["stream_id"].clone();
    alice.next("stream_start").await;
    alice.next("stream_chunk").await;
    let second = alice.next("stream_chunk").await;
    assert_eq!(second["seq"], 2);

    let busy = alice
        .ack(
            "send_message",
            json!({ "conversation_id": "c", "message": "again" }),
        )
        .await;
    assert_eq!(busy["code"], "busy");

    let wrong = alice
        .ack(
            "cancel_stream",
            json!({ "conversation_id": "c", "stream_id": "other" }),
        )
        .await;
    assert_eq!(wrong["code"], "not_found");

    let cancelled = alice
        .ack(
            "cancel_stream",
            json!({ "conversation_id": "c", "stream_id": stream_id }),
        )
        .await;
    assert_eq!(cancelled["status"], "ok", "{cancelled}");
    assert_eq!(cancelled["stream_id"], stream_id);

    let end = alice.next("stream_end").await;
    assert_eq!(end["status"], "cancelled");
    assert_eq!(end["full_content"], "partial answer ");
    assert_eq!(end["finish_reason"], "cancelled");
    let terminals = alice
        .all()
        .iter()
        .filter(|r| r.event == "stream_end" || r.event == "stream_error")
        .count();
    assert_eq!(terminals, 1);

    let history = alice
        .ack("get_history", json!({ "conversation_id": "c" }))
        .await;
    let last = history["messages"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .clone();
    assert_eq!(last["role"], "assistant");
    assert_eq!(last["content"], "partial answer ");
    assert_eq!(
        provider.streams_dropped(),
        1,
        "the provider stream is dropped"
    );

    // The conversation is free again.
    let again = alice
        .ack(
            "send_message",
            json!({ "conversation_id": "c", "message": "again" }),
        )
        .await;
    assert_eq!(again["status"], "ok");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provider_failure_ends_the_stream_with_stream_error() {
    let provider = ScriptedProvider::new(["a ", "b "])
        .fail_at(1, marie_core::ProviderError::Status { status: 503 });
    let server = start(provider).await;
    let mut alice = connect(server.addr, "alice").await;
    alice.join("f").await;
    alice
        .ack(
            "send_message",
            json!({ "conversation_id": "f", "message": "go" }),
        )
        .await;
    let seen = alice.stream().await;
    // The step is asked again twice (`mid_stream_retries`), failing each time after a chunk.
    assert_eq!(seen.chunks.len(), 3);
    let after: Vec<&Value> = seen.resets.iter().map(|r| &r["after_seq"]).collect();
    assert_eq!(
        after,
        [&json!(0), &json!(0)],
        "each retry drops the attempt before it"
    );
    assert_eq!(seen.terminal.event, "stream_error");
    let err = &seen.terminal.data;
    assert_eq!(err["code"], "provider_unavailable");
    assert_eq!(err["retryable"], true);
    assert_eq!(err["after_seq"], 5, "chunk, reset, chunk, reset, chunk");
    let text = err["error"].as_str().unwrap();
    assert!(
        !text.contains("503"),
        "no upstream detail in client messages: {text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn announcements_are_for_admins_and_reach_everyone() {
    let server = start(echo()).await;
    let mut alice = connect(server.addr, "alice").await;
    let mut bob = connect(server.addr, "bob").await;
    let admin = connect(server.addr, "admin").await;

    let refused = alice
        .ack("system_announcement", json!({ "message": "I am admin" }))
        .await;
    assert_eq!(refused["code"], "forbidden");

    let ok = admin
        .ack(
            "system_announcement",
            json!({ "message": "maintenance at noon" }),
        )
        .await;
    assert_eq!(ok["status"], "ok");
    for c in [&mut alice, &mut bob] {
        assert_eq!(
            c.next("announcement").await["message"],
            "maintenance at noon"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn previous_session_restores_rooms_for_the_same_user_only() {
    let server = start(echo()).await;
    let mut alice = connect_raw(server.addr, Some(json!({ "token": "t-alice" }))).await;
    let session = alice.next("connected").await["session"].clone();
    alice.join("kept").await;
    alice.disconnect().await;

    // Another user cannot take the session over.
    let mut bob = connect_raw(
        server.addr,
        Some(json!({ "token": "t-bob", "previous_session": session })),
    )
    .await;
    let fresh = bob.next("connected").await;
    assert_ne!(fresh["session"], session);

    // The seed's `previous_sid` is an alias.
    let mut again = connect_raw(
        server.addr,
        Some(json!({ "token": "t-alice", "previous_sid": session })),
    )
    .await;
    let restored = again.next("reconnected").await;
    assert_eq!(restored["restored"], true);
    assert_eq!(restored["rooms"], json!(["kept"]));
    assert_eq!(restored["session"], session);

    // Back in the room without joining again.
    again
        .ack(
            "send_message",
            json!({ "conversation_id": "kept", "message": "back again" }),
        )
        .await;
    assert_eq!(again.next("stream_end").await["full_content"], "back again");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_disconnecting_does_not_disturb_the_stream_for_others() {
    let server = start(
        ScriptedProvider::new((1..=20).map(|i| format!("w{i} "))).delay(Duration::from_millis(5)),
    )
    .await;
    let mut alice = connect(server.addr, "alice").await;
    let mut bob = connect(server.addr, "bob").await;
    alice.join("d").await;
    alice
        .ack(
            "invite",
            json!({ "conversation_id": "d", "user_id": "bob" }),
        )
        .await;
    bob.join("d").await;
    alice
        .ack(
            "send_message",
            json!({ "conversation_id": "d", "message": "go" }),
        )
        .await;
    bob.next("stream_chunk").await;
    bob.disconnect().await;
    let seen = alice.stream().await;
    assert_eq!(seen.terminal.event, "stream_end");
    assert_eq!(seen.chunks.len(), 20);
    seen.assert_contiguous();
    let left: Value = alice.next("user_left").await;
    assert_eq!(left["user_id"], "bob");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disconnect_is_not_cancel_unless_configured() {
    async fn asker_leaves_mid_answer(cancel_on_disconnect: bool) -> (Value, ScriptedProvider) {
        let provider = ScriptedProvider::new(["one ", "two "])
            .delay(Duration::from_millis(20))
            .hang_at_end();
        let mut config = MarieConfig::default();
        config.cancel_on_asker_disconnect = cancel_on_disconnect;
        let server = start_with(provider.clone(), config).await;
        let mut alice = connect(server.addr, "alice").await;
        let mut bob = connect(server.addr, "bob").await;
        alice.join("dc").await;
        alice
            .ack(
                "invite",
                json!({ "conversation_id": "dc", "user_id": "bob" }),
            )
            .await;
        bob.join("dc").await;
        alice
            .ack(
                "send_message",
                json!({ "conversation_id": "dc", "message": "go" }),
            )
            .await;
        assert_eq!(bob.next("stream_chunk").await["seq"], 1);
        alice.disconnect().await;
        // Bob hears alice leave once her disconnect handler (which also cancels, when so
        // configured) has run.
        assert_eq!(bob.next("user_left").await["user_id"], "alice");
        if !cancel_on_disconnect {
            // The answer goes on for bob: the second chunk still comes; then stop it.
            assert_eq!(bob.next("stream_chunk").await["seq"], 2);
            let ack = bob
                .ack("cancel_stream", json!({ "conversation_id": "dc" }))
                .await;
            assert_eq!(ack["status"], "ok", "{ack}");
        }
        (bob.next("stream_end").await, provider)
    }

    let (end, provider) = asker_leaves_mid_answer(false).await;
    assert_eq!(end["status"], "cancelled");
    assert_eq!(
        end["full_content"], "one two ",
        "the answer went on after the asker left"
    );
    assert_eq!(provider.streams_dropped(), 1);

    let (end, provider) = asker_leaves_mid_answer(true).await;
    assert_eq!(end["status"], "cancelled");
    assert_eq!(
        provider.streams_dropped(),
        1,
        "the upstream request is dropped"
    );
}
