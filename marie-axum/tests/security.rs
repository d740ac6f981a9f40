//! Security over real connections: bad tokens, access across conversations, room spoofing,
//! every limit, unknown events, origins, expiry and revocation (issue 6).

#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::time::Duration;

use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
use marie_adapters::{JwtAuthenticator, MemoryStore};
use marie_axum::{AllowedOrigins, Limits, Marie, MarieConfig, MarieHandle, Rate};
use marie_core::{Authenticator, ConversationId, History, HistoryQuery, UserId, now_millis};
use marie_llm::EchoProvider;
use marie_testkit::raw;
use marie_testkit::server::{TestServer, listen, start_with};
use marie_testkit::socketio::{TestClient, connect, connect_raw};
use serde_json::{Value, json};

const RSA_PRIVATE: &[u8] = include_bytes!("../../marie-adapters/tests/keys/rsa_private.pem");
const RSA_PUBLIC: &[u8] = include_bytes!("../../marie-adapters/tests/keys/rsa_public.pem");
const EC_PRIVATE: &[u8] = include_bytes!("../../marie-adapters/tests/keys/ec_private.pem");

fn echo() -> EchoProvider {
    EchoProvider::new(Duration::from_millis(1))
}

/// A server with `auth` and `config`, on an ephemeral port.
async fn serve(auth: impl Authenticator, config: MarieConfig) -> (SocketAddr, MarieHandle) {
    let (layer, handle) = Marie::builder()
        .authenticator(auth)
        .store(MemoryStore::new())
        .provider(echo())
        .config(config)
        .build()
        .unwrap();
    let addr = listen(axum::Router::new().layer(layer)).await;
    (addr, handle)
}

fn now_s() -> i64 {
    (now_millis() / 1000) as i64
}

fn hs(claims: Value, alg: Algorithm, secret: &[u8]) -> String {
    encode(
        &Header::new(alg),
        &claims,
        &EncodingKey::from_secret(secret),
    )
    .unwrap()
}

/// Expects the CONNECT to be refused with `code`, and nothing else to arrive.
async fn assert_refused(addr: SocketAddr, token: Value, code: &str, case: &str) {
    let mut c = connect_raw(addr, Some(json!({ "token": token }))).await;
    let err = c.next("error").await;
    assert!(
        err.to_string().contains(code),
        "{case}: expected connect_error {code}, got {err}"
    );
    tokio::time::sleep(Duration::from_millis(50)).await;
    let seen = c.all();
    assert!(
        seen.iter().all(|r| r.event == "error"),
        "{case}: a refused client must see nothing else: {seen:?}"
    );
    c.disconnect().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_tokens_are_refused_with_unauthorized() {
    let secret = b"matrix-secret";
    let auth = JwtAuthenticator::hs256(secret)
        .audience(&["marie"])
        .issuer(&["https://id.example"]);
    let (addr, _handle) = serve(auth, MarieConfig::default()).await;
    let good = |extra: Value| {
        let mut c = json!({"sub": "alice", "exp": now_s() + 600, "aud": "marie", "iss": "https://id.example"});
        for (k, v) in extra.as_object().unwrap() {
            if v.is_null() {
                c.as_object_mut().unwrap().remove(k);
            } else {
                c[k] = v.clone();
            }
        }
        c
    };

    // The control: a good token connects.
    let t = hs(good(json!({})), Algorithm::HS256, secret);
    let mut ok = connect_raw(addr, Some(json!({ "token": t }))).await;
    assert_eq!(ok.next("connected").await["user_id"], "alice");

    let rsa = EncodingKey::from_rsa_pem(RSA_PRIVATE).unwrap();
    let ec = EncodingKey::from_ec_pem(EC_PRIVATE).unwrap();
    let b64 = |v: Value| {
        // base64url without padding, by hand: the test needs no extra crate.
        const T: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        let bytes = v.to_string().into_bytes();
        let mut out = String::new();
        for chunk in bytes.chunks(3) {
            let n = chunk.iter().fold(0u32, |a, b| (a << 8) | *b as u32) << (8 * (3 - chunk.len()));
            for i in 0..=chunk.len() {
                out.push(T[((n >> (18 - 6 * i)) & 63) as usize] as char);
            }
        }
        out
    };
    let alg_none = format!(
        "{}.{}.",
        b64(json!({"alg": "none", "typ": "JWT"})),
        b64(good(json!({})))
    );
    let cases: Vec<(&str, Value)> = vec![
        (
            "wrong signature",
            json!(hs(good(json!({})), Algorithm::HS256, b"other-secret")),
        ),
        ("alg none", json!(alg_none)),
        (
            "alg none, signature kept",
            json!(format!(
                "{}.{}.c2ln",
                b64(json!({"alg": "none"})),
                b64(good(json!({})))
            )),
        ),
        (
            "wrong algorithm HS384",
            json!(hs(good(json!({})), Algorithm::HS384, secret)),
        ),
        (
            "wrong algorithm RS256",
            json!(encode(&Header::new(Algorithm::RS256), &good(json!({})), &rsa).unwrap()),
        ),
        (
            "wrong algorithm ES256",
            json!(encode(&Header::new(Algorithm::ES256), &good(json!({})), &ec).unwrap()),
        ),
        (
            "expired",
            json!(hs(
                good(json!({"exp": now_s() - 3600})),
                Algorithm::HS256,
                secret
            )),
        ),
        (
            "not yet valid",
            json!(hs(
                good(json!({"nbf": now_s() + 3600})),
                Algorithm::HS256,
                secret
            )),
        ),
        (
            "wrong audience",
            json!(hs(
                good(json!({"aud": "someone-else"})),
                Algorithm::HS256,
                secret
            )),
        ),
        (
            "no audience",
            json!(hs(good(json!({"aud": null})), Algorithm::HS256, secret)),
        ),
        (
            "wrong issuer",
            json!(hs(
                good(json!({"iss": "https://evil.example"})),
                Algorithm::HS256,
                secret
            )),
        ),
        (
            "exp as a string",
            json!(hs(
                good(json!({"exp": "9999999999"})),
                Algorithm::HS256,
                secret
            )),
        ),
        (
            "no exp",
            json!(hs(good(json!({"exp": null})), Algorithm::HS256, secret)),
        ),
        (
            "missing sub",
            json!(hs(good(json!({"sub": null})), Algorithm::HS256, secret)),
        ),
        (
            "sub not a string",
            json!(hs(good(json!({"sub": 42})), Algorithm::HS256, secret)),
        ),
        (
            "sub not a valid id",
            json!(hs(good(json!({"sub": "a b/c"})), Algorithm::HS256, secret)),
        ),
        (
            "roles not an array",
            json!(hs(
                good(json!({"roles": "admin"})),
                Algorithm::HS256,
                secret
            )),
        ),
        ("garbage", json!("not.a.jwt")),
        ("garbage base64", json!("%%%.%%%.%%%")),
        ("empty", json!("")),
        ("one segment", json!("eyJhbGciOiJIUzI1NiJ9")),
        ("huge", json!("a".repeat(200_000))),
        ("not a string", json!({"sub": "alice"})),
        ("number", json!(42)),
    ];
    for (case, token) in cases {
        assert_refused(addr, token, "unauthorized", case).await;
    }
    // The good connection was never disturbed.
    let ack = ok
        .ack(
            "join_conversation",
            json!({"conversation_id": "still-here"}),
        )
        .await;
    assert_eq!(ack["status"], "ok");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rs256_server_refuses_key_confusion() {
    let auth = JwtAuthenticator::rs256_pem(RSA_PUBLIC).unwrap();
    let (addr, _handle) = serve(auth, MarieConfig::default()).await;
    let claims = json!({"sub": "alice", "exp": now_s() + 600});
    let rsa = EncodingKey::from_rsa_pem(RSA_PRIVATE).unwrap();
    let good = encode(&Header::new(Algorithm::RS256), &claims, &rsa).unwrap();
    let mut c = connect_raw(addr, Some(json!({ "token": good }))).await;
    assert_eq!(c.next("connected").await["user_id"], "alice");
    // HS256 "signed" with the public key as the HMAC secret.
    let confused = hs(claims.clone(), Algorithm::HS256, RSA_PUBLIC);
    assert_refused(
        addr,
        json!(confused),
        "unauthorized",
        "HS256 with the RSA public key",
    )
    .await;
    let rs512 = encode(&Header::new(Algorithm::RS512), &claims, &rsa).unwrap();
    assert_refused(addr, json!(rs512), "unauthorized", "RS512 not pinned").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_credentials_end_the_connection_at_expiry() {
    let secret = b"expiry";
    let auth = JwtAuthenticator::hs256(secret).leeway(0);
    let (addr, handle) = serve(auth, MarieConfig::default()).await;
    let short = hs(
        json!({"sub": "alice", "exp": now_s() + 2}),
        Algorithm::HS256,
        secret,
    );
    let long = hs(
        json!({"sub": "bob", "exp": now_s() + 600}),
        Algorithm::HS256,
        secret,
    );
    let mut alice = connect_raw(addr, Some(json!({ "token": short }))).await;
    alice.next("connected").await;
    let mut bob = connect_raw(addr, Some(json!({ "token": long }))).await;
    bob.next("connected").await;
    assert_eq!(handle.io().sockets().len(), 2);

    let err = alice.try_next("error", Duration::from_secs(6)).await;
    let err = err.expect("the expired connection is told why");
    assert_eq!(err["code"], "unauthorized");
    assert_eq!(err["message"], "your credentials expired");
    wait_for(|| handle.io().sockets().len() == 1, "alice disconnected").await;
    // Bob is unaffected.
    assert_eq!(bob.join("after-expiry").await["status"], "ok");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoking_a_user_ends_all_their_connections() {
    let server = start_with(echo(), MarieConfig::default()).await;
    let mut a1 = connect(server.addr, "alice").await;
    let mut a2 = connect(server.addr, "alice").await;
    let mut bob = connect(server.addr, "bob").await;
    server
        .handle
        .revoke_user(&UserId::parse("alice").unwrap())
        .await
        .unwrap();
    for a in [&mut a1, &mut a2] {
        let err = a.next("error").await;
        assert_eq!(err["code"], "unauthorized");
        assert_eq!(err["message"], "your access was revoked");
    }
    wait_for(
        || server.handle.io().sockets().len() == 1,
        "alice's connections closed",
    )
    .await;
    assert_eq!(bob.join("still-served").await["status"], "ok");
}

/// A WebSocket message far bigger than a connection's read buffer (1 KiB by default,
/// `MarieConfig::ws_read_buffer_size`) arrives whole: a 20 KB message comes back intact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_bigger_than_the_read_buffer_arrives_whole() {
    let server = start_with(echo(), MarieConfig::default()).await;
    let words: Vec<String> = (0..200)
        .map(|i| format!("{i:03}{}", "w".repeat(97)))
        .collect();
    let text = words.join(" ");
    assert!(text.len() > 16 * MarieConfig::default().ws_read_buffer_size);
    let mut ws = raw::ws_connect(server.addr, "t-alice").await;
    let join = json!(["join_conversation", {"conversation_id": "big"}]);
    assert!(raw::send_text(&mut ws, format!("42{join}")).await);
    raw::next_event(&mut ws, "joined", Duration::from_secs(5))
        .await
        .expect("joined");
    let send =
        json!(["send_message", {"conversation_id": "big", "message": text, "stream": false}]);
    assert!(raw::send_text(&mut ws, format!("42{send}")).await);
    let response = raw::next_event(&mut ws, "message_response", Duration::from_secs(10))
        .await
        .expect("the answer to the big message");
    let echoed: Vec<&str> = response["message"]
        .as_str()
        .unwrap()
        .split_whitespace()
        .collect();
    assert_eq!(echoed, words);
}

async fn wait_for(mut cond: impl FnMut() -> bool, what: &str) {
    for _ in 0..100 {
        if cond() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for: {what}");
}

/// Sends `send_message` with `stream:false` and waits for the answer.
async fn say(c: &mut TestClient, conversation: &str, text: &str) -> Value {
    let ack = c
        .ack(
            "send_message",
            json!({"conversation_id": conversation, "message": text, "stream": false}),
        )
        .await;
    if ack["status"] == "ok" {
        c.next("message_response").await;
    }
    ack
}

async fn history(server: &TestServer, conversation: &str) -> Vec<String> {
    server
        .store
        .history(
            &ConversationId::parse(conversation).unwrap(),
            HistoryQuery {
                before: None,
                limit: 100,
            },
        )
        .await
        .unwrap()
        .into_iter()
        .map(|m| m.content)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_event_reaches_a_conversation_without_access() {
    let server = start_with(echo(), MarieConfig::default()).await;
    let mut alice = connect(server.addr, "alice").await;
    let mut bob = connect(server.addr, "bob").await;
    alice.join("secret").await;
    assert_eq!(say(&mut alice, "secret", "the plan").await["status"], "ok");

    let c = json!("secret");
    let attempts = [
        ("join_conversation", json!({"conversation_id": c})),
        (
            "send_message",
            json!({"conversation_id": c, "message": "hi"}),
        ),
        (
            "send_message",
            json!({"conversation_id": c, "message": "hi", "stream": false}),
        ),
        (
            "send_message_with_ack",
            json!({"conversation_id": c, "message": "hi"}),
        ),
        ("get_history", json!({"conversation_id": c})),
        ("cancel_stream", json!({"conversation_id": c})),
        ("invite", json!({"conversation_id": c, "user_id": "bob"})),
        ("invite", json!({"conversation_id": c, "user_id": "carol"})),
        ("system_announcement", json!({"message": "I am admin"})),
    ];
    for (event, payload) in attempts {
        let ack = bob.ack(event, payload.clone()).await;
        assert_eq!(ack["status"], "error", "{event} {payload}: {ack}");
        let code = ack["code"].as_str().unwrap_or_default();
        assert_eq!(code, "forbidden", "{event} {payload}: {ack}");
        assert!(!ack.to_string().contains("the plan"), "{ack}");
    }
    // Leaving a conversation one is not in reveals nothing and changes nothing.
    let ack = bob
        .ack("leave_conversation", json!({"conversation_id": c}))
        .await;
    assert_eq!(ack, json!({"status": "ok", "conversation_id": "secret"}));

    // Nothing of the conversation reached bob; nothing of bob reached it.
    tokio::time::sleep(Duration::from_millis(200)).await;
    for r in bob.all() {
        assert!(
            !r.data.to_string().contains("the plan") && r.event != "message_response",
            "bob saw {r:?}"
        );
    }
    assert_eq!(
        history(&server, "secret").await,
        vec!["the plan", "the plan"]
    );
    assert!(
        !alice
            .all()
            .iter()
            .any(|r| r.event == "announcement" || r.event == "user_joined")
    );
    // Alice still works, and carol was never let in.
    let carol = connect(server.addr, "carol").await;
    let ack = carol
        .ack("join_conversation", json!({"conversation_id": c}))
        .await;
    assert_eq!(ack["code"], "forbidden");
    assert_eq!(say(&mut alice, "secret", "more").await["status"], "ok");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn room_names_cannot_be_spoofed() {
    let server = start_with(echo(), MarieConfig::default()).await;
    let mut alice = connect_raw(server.addr, Some(json!({"token": "t-alice"}))).await;
    let alice_sid = alice.next("connected").await["sid"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut bob = connect(server.addr, "bob").await;
    // Names that look like alice's private socket room, her user room, or a raw room name.
    for name in [alice_sid.as_str(), "user:alice", "conv:secret"] {
        bob.join(name).await;
    }
    for bad in ["", " ", "a/b", "../x", "x\u{0}", &"x".repeat(200)] {
        let ack = bob
            .ack("join_conversation", json!({"conversation_id": bad}))
            .await;
        assert_eq!(ack["code"], "bad_request", "{bad:?}: {ack}");
    }
    let io = server.handle.io();
    // socketioxide 0.18 keeps no room per socket id, but if a room of that name existed,
    // bob's join could not have put him in it: his room is `conv:<sid>`.
    io.to(alice_sid.clone())
        .emit("private", &json!({"for": "alice"}))
        .await
        .unwrap();
    io.to("user:alice")
        .emit("private", &json!({"for": "alice"}))
        .await
        .unwrap();
    assert_eq!(alice.next("private").await["for"], "alice");
    let alice_socket = io
        .sockets()
        .into_iter()
        .find(|s| s.id.to_string() == alice_sid)
        .unwrap();
    for room in alice_socket.rooms() {
        io.to(room.to_string())
            .emit("private", &json!({"room": room.to_string()}))
            .await
            .unwrap();
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        !bob.all().iter().any(|r| r.event == "private"),
        "bob got into a private room"
    );
    // Bob's rooms are all his own conversations.
    let bob_socket = io
        .sockets()
        .into_iter()
        .find(|s| s.id.to_string() != alice_sid)
        .unwrap();
    for room in bob_socket.rooms() {
        assert!(
            room.starts_with("conv:") || room == "user:bob" || room == bob_socket.id.to_string(),
            "unexpected room {room}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_events_get_bad_request() {
    let server = start_with(echo(), MarieConfig::default()).await;
    let mut alice = connect(server.addr, "alice").await;
    let ack = alice.ack("no_such_event", json!({"x": 1})).await;
    assert_eq!(ack["status"], "error");
    assert_eq!(ack["code"], "bad_request");
    let err = alice.next("error").await;
    assert_eq!(
        err,
        json!({"code": "bad_request", "message": "unknown event", "event": "no_such_event"})
    );
    alice.emit("another_unknown", json!(null)).await;
    assert_eq!(alice.next("error").await["event"], "another_unknown");
    assert_eq!(alice.join("still-fine").await["status"], "ok");
}

fn limited(f: impl FnOnce(&mut Limits)) -> MarieConfig {
    let mut config = MarieConfig::default();
    f(&mut config.limits);
    config
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn event_and_message_size_limits() {
    let mut config = limited(|l| l.max_event_bytes = 2048);
    config.engine.max_message_bytes = 500;
    let server = start_with(echo(), config).await;
    let mut alice = connect(server.addr, "alice").await;
    let mut bob = connect(server.addr, "bob").await;
    alice.join("c").await;
    bob.join("b").await;

    let ack = alice
        .ack(
            "send_message",
            json!({"conversation_id": "c", "message": "x".repeat(3000)}),
        )
        .await;
    assert_eq!(ack["code"], "payload_too_large", "{ack}");
    let ack = alice
        .ack(
            "send_message",
            json!({"conversation_id": "c", "message": "x".repeat(600)}),
        )
        .await;
    assert_eq!(ack["code"], "payload_too_large", "{ack}");
    let ack = alice
        .ack(
            "get_history",
            json!({"conversation_id": "c", "padding": "y".repeat(5000)}),
        )
        .await;
    assert_eq!(ack["code"], "payload_too_large", "{ack}");
    // Nothing was stored; the connection and the others work on.
    assert!(history(&server, "c").await.is_empty());
    assert_eq!(say(&mut alice, "c", &"x".repeat(500)).await["status"], "ok");
    assert_eq!(say(&mut bob, "b", "hello").await["status"], "ok");
    assert_eq!(history(&server, "c").await.len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn event_rate_limit_per_user() {
    let server = start_with(echo(), limited(|l| l.events = Rate::per_second(2, 5))).await;
    let mut alice = connect(server.addr, "alice").await;
    let mut alice2 = connect(server.addr, "alice").await;
    let mut bob = connect(server.addr, "bob").await;
    let mut codes = Vec::new();
    for i in 0..8 {
        let c = if i % 2 == 0 { &mut alice } else { &mut alice2 };
        let ack = c.ack("get_history", json!({"conversation_id": "x"})).await;
        codes.push(ack["code"].as_str().unwrap_or("ok").to_owned());
    }
    // The burst is shared by the user's connections; the rest is refused.
    let refused = codes.iter().filter(|c| *c == "rate_limited").count();
    assert!((2..=3).contains(&refused), "{codes:?}");
    assert_eq!(alice.next("error").await["code"], "not_found");
    // Bob has his own budget.
    assert_eq!(bob.join("bob-room").await["status"], "ok");
    // Alice keeps her connection and is served again once the bucket refills.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(alice.join("alice-room").await["status"], "ok");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn message_rate_limit_per_user_loses_nothing() {
    let server = start_with(echo(), limited(|l| l.messages = Rate::per_minute(60, 2))).await;
    let mut alice = connect(server.addr, "alice").await;
    let mut bob = connect(server.addr, "bob").await;
    alice.join("c").await;
    bob.join("d").await;
    assert_eq!(say(&mut alice, "c", "one").await["status"], "ok");
    assert_eq!(say(&mut alice, "c", "two").await["status"], "ok");
    let ack = say(&mut alice, "c", "three").await;
    assert_eq!(ack["code"], "rate_limited", "{ack}");
    let err = alice.next("error").await;
    assert_eq!(err["code"], "rate_limited");
    assert_eq!(err["event"], "send_message");
    // Only what was accepted is stored, all of it; other events still work for alice.
    assert_eq!(
        history(&server, "c").await,
        vec!["one", "one", "two", "two"]
    );
    let ack = alice
        .ack("get_history", json!({"conversation_id": "c"}))
        .await;
    assert_eq!(ack["messages"].as_array().unwrap().len(), 4);
    assert_eq!(say(&mut bob, "d", "bob's").await["status"], "ok");
}

/// A retry of a send that was accepted gets its first outcome, marked `duplicate`, even while
/// the user's message limit refuses new sends: a repeat starts nothing, so it is not counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retried_send_gets_its_first_outcome_while_new_sends_are_rate_limited() {
    let server = start_with(echo(), limited(|l| l.messages = Rate::per_minute(60, 1))).await;
    let mut alice = connect(server.addr, "alice").await;
    alice.join("c").await;
    let send = |cmid: &str, text: &str| json!({"conversation_id": "c", "message": text, "stream": false, "client_message_id": cmid});
    let first = alice.ack("send_message", send("m-1", "one")).await;
    assert_eq!(first["status"], "ok", "{first}");
    assert_eq!(first["duplicate"], false);
    alice.next("message_response").await;
    // The limit is spent: a new message is refused...
    let refused = alice.ack("send_message", send("m-2", "two")).await;
    assert_eq!(refused["code"], "rate_limited", "{refused}");
    assert_eq!(alice.next("error").await["code"], "rate_limited");
    // ... but the retry of the first, twice, is answered with its first outcome.
    for _ in 0..2 {
        let again = alice.ack("send_message", send("m-1", "one")).await;
        assert_eq!(again["status"], "ok", "{again}");
        assert_eq!(again["duplicate"], true, "{again}");
        assert_eq!(again["message_id"], first["message_id"]);
        assert_eq!(again["stream_id"], first["stream_id"]);
    }
    assert_eq!(
        history(&server, "c").await,
        vec!["one", "one"],
        "stored once"
    );
    // `send_message_with_ack` repeats the same way, in the seed's shape.
    let seed = alice.ack("send_message_with_ack", send("m-1", "one")).await;
    assert_eq!(seed["status"], "success", "{seed}");
    assert_eq!(seed["message_id"], first["message_id"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rooms_per_socket_limit() {
    let server = start_with(echo(), limited(|l| l.max_rooms_per_socket = 2)).await;
    let mut alice = connect(server.addr, "alice").await;
    alice.join("a").await;
    alice.join("b").await;
    let ack = alice
        .ack("join_conversation", json!({"conversation_id": "c"}))
        .await;
    assert_eq!(ack["code"], "rate_limited", "{ack}");
    assert_eq!(
        alice.join("a").await["status"],
        "ok",
        "rejoining is no new room"
    );
    let ack = alice
        .ack("leave_conversation", json!({"conversation_id": "a"}))
        .await;
    assert_eq!(ack["status"], "ok");
    assert_eq!(alice.join("c").await["status"], "ok");
    // Another connection of the same user has its own rooms.
    let mut again = connect(server.addr, "alice").await;
    again.join("a").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_per_user_limit() {
    let server = start_with(echo(), limited(|l| l.max_connections_per_user = 2)).await;
    let a1 = connect(server.addr, "alice").await;
    let mut a2 = connect(server.addr, "alice").await;
    assert_refused(
        server.addr,
        json!("t-alice"),
        "rate_limited",
        "third connection",
    )
    .await;
    let mut bob = connect(server.addr, "bob").await;
    assert_eq!(bob.join("b").await["status"], "ok");
    assert_eq!(a2.join("a").await["status"], "ok", "the others keep theirs");
    a1.disconnect().await;
    wait_for(|| server.handle.io().sockets().len() == 2, "a1 gone").await;
    let _a3 = connect(server.addr, "alice").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_and_polling_payload_limits() {
    let mut config = MarieConfig::default();
    config.max_payload = 8 * 1024;
    let server = start_with(echo(), config).await;
    let mut alice = connect(server.addr, "alice").await;
    alice.join("c").await;

    // WebSocket: one message over max_payload closes that connection (close 1009).
    let mut ws = raw::ws_connect(server.addr, "t-bob").await;
    let big = format!(
        "42[\"send_message\",{{\"conversation_id\":\"c\",\"message\":\"{}\"}}]",
        "x".repeat(20 * 1024)
    );
    raw::send_text(&mut ws, big).await;
    assert!(raw::closed_within(&mut ws, Duration::from_secs(5)).await);
    // Just under it: served (then refused by the message length limit, connection kept).
    let mut ws = raw::ws_connect(server.addr, "t-bob").await;
    let under = format!(
        "420[\"send_message\",{{\"conversation_id\":\"c\",\"message\":\"{}\"}}]",
        "x".repeat(7 * 1024)
    );
    raw::send_text(&mut ws, under).await;
    let err = raw::next_event(&mut ws, "error", Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(err["code"], "forbidden", "bob has no access to c: {err}");

    // Long-polling: a body over max_payload is refused with 413.
    let sid = raw::polling_handshake(server.addr).await;
    let path = format!("/socket.io/?EIO=4&transport=polling&sid={sid}");
    let body = format!("42[\"x\",\"{}\"]", "y".repeat(20 * 1024));
    let (status, _) = raw::http(
        server.addr,
        "POST",
        &path,
        &[("Content-Type", "text/plain")],
        body.as_bytes(),
    )
    .await;
    assert_eq!(status, 413);

    // Nobody else noticed.
    assert_eq!(say(&mut alice, "c", "still here").await["status"], "ok");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_attachment_limits() {
    let server = start_with(echo(), limited(|l| l.max_binary_attachments = 1)).await;
    let mut alice = connect(server.addr, "alice").await;
    alice.join("c").await;
    let mut ws = raw::ws_connect(server.addr, "t-bob").await;
    // Two attachments, over the soft limit: payload_too_large, the connection stays.
    raw::send_text(
        &mut ws,
        r#"452-1["get_history",{"conversation_id":"c"},{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]"#,
    )
    .await;
    raw::send_binary(&mut ws, vec![1, 2, 3]).await;
    raw::send_binary(&mut ws, vec![4, 5, 6]).await;
    let err = raw::next_event(&mut ws, "error", Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(err["code"], "payload_too_large", "{err}");
    raw::send_text(
        &mut ws,
        r#"42["join_conversation",{"conversation_id":"mine"}]"#,
    )
    .await;
    let joined = raw::next_event(&mut ws, "joined", Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(joined["conversation_id"], "mine");
    // Over the hard limit (16 by default): the parser closes the connection.
    let placeholders: Vec<String> = (0..17)
        .map(|i| format!(r#"{{"_placeholder":true,"num":{i}}}"#))
        .collect();
    raw::send_text(&mut ws, format!(r#"4517-["x",{}]"#, placeholders.join(","))).await;
    assert!(raw::closed_within(&mut ws, Duration::from_secs(5)).await);
    assert_eq!(say(&mut alice, "c", "unaffected").await["status"], "ok");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn origin_allowlist_on_polling_and_websocket() {
    let mut config = MarieConfig::default();
    config.allowed_origins = AllowedOrigins::list(["http://chat.example"]);
    let server = start_with(echo(), config).await;
    let path = "/socket.io/?EIO=4&transport=polling";
    let get = |origin: Option<&'static str>| {
        let headers: Vec<(&str, &str)> = origin.map(|o| ("Origin", o)).into_iter().collect();
        async move { raw::http(server.addr, "GET", path, &headers, b"").await.0 }
    };
    assert_eq!(get(Some("http://evil.example")).await, 403);
    assert_eq!(get(Some("null")).await, 403);
    assert_eq!(get(Some("http://chat.example")).await, 200);
    assert_eq!(get(None).await, 200, "non-browser clients send no Origin");
    // The app's own routes are not the endpoint's business.
    let (status, _) = raw::http(
        server.addr,
        "GET",
        "/other",
        &[("Origin", "http://evil.example")],
        b"",
    )
    .await;
    assert_eq!(status, 404);

    // WebSocket upgrades are checked the same way.
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let url = format!("ws://{}/socket.io/?EIO=4&transport=websocket", server.addr);
    let mut req = url.clone().into_client_request().unwrap();
    req.headers_mut()
        .insert("Origin", "http://evil.example".parse().unwrap());
    let refused = tokio_tungstenite::connect_async(req).await;
    match refused {
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => assert_eq!(resp.status(), 403),
        other => panic!("the upgrade should be refused: {:?}", other.map(|_| ())),
    }
    let mut req = url.into_client_request().unwrap();
    req.headers_mut()
        .insert("Origin", "http://chat.example".parse().unwrap());
    assert!(tokio_tungstenite::connect_async(req).await.is_ok());
    // And a real client without Origin works end to end.
    let mut alice = connect(server.addr, "alice").await;
    assert_eq!(alice.join("c").await["status"], "ok");
}
