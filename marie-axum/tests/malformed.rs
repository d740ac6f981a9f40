//! Thousands of malformed Engine.IO / Socket.IO frames and payloads thrown at a running
//! server over raw WebSockets; then every client is still served correctly, and nothing
//! panicked (a panic hook records any panic, in any thread or task).

#![allow(clippy::unwrap_used)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use marie_axum::{Limits, MarieConfig};
use marie_llm::EchoProvider;
use marie_testkit::raw;
use marie_testkit::server::start_with;
use marie_testkit::socketio::connect;
use serde_json::json;

static PANICS: AtomicUsize = AtomicUsize::new(0);

/// A small deterministic PRNG (xorshift64*), so a failure can be replayed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

const EVENTS: [&str; 10] = [
    "join_conversation",
    "leave_conversation",
    "invite",
    "send_message",
    "send_message_with_ack",
    "cancel_stream",
    "resume_stream",
    "get_history",
    "system_announcement",
    "no_such_event",
];

/// Payloads that do not fit, for every event.
fn bad_payloads() -> Vec<String> {
    let deep_array = format!("{}{}", "[".repeat(5000), "]".repeat(5000));
    let deep_object = format!("{}1{}", "{\"a\":".repeat(3000), "}".repeat(3000));
    vec![
        "null".into(),
        "1".into(),
        "-1".into(),
        "1e999".into(),
        "123456789012345678901234567890123456789012345678901234567890".into(),
        "\"s\"".into(),
        "[]".into(),
        "{}".into(),
        "true".into(),
        deep_array,
        deep_object,
        "{\"conversation_id\":1}".into(),
        "{\"conversation_id\":null}".into(),
        "{\"conversation_id\":\"\"}".into(),
        format!("{{\"conversation_id\":\"{}\"}}", "a".repeat(5000)),
        "{\"conversation_id\":\"../../etc\"}".into(),
        "{\"conversation_id\":\"c\",\"message\":{}}".into(),
        "{\"conversation_id\":\"c\",\"message\":\"\"}".into(),
        "{\"conversation_id\":\"c\",\"message\":\"\\ud800\"}".into(),
        "{\"conversation_id\":\"c\",\"limit\":-1}".into(),
        "{\"conversation_id\":\"c\",\"limit\":1e300}".into(),
        "{\"conversation_id\":\"c\",\"limit\":18446744073709551616}".into(),
        "{\"conversation_id\":\"c\",\"before\":\"zzz\"}".into(),
        "{\"conversation_id\":\"c\",\"stream_id\":[1]}".into(),
        "{\"conversation_id\":\"c\",\"last_seq\":-5}".into(),
        "{\"conversation_id\":\"c\",\"user_id\":\"a b\"}".into(),
        "{\"conversation_id\":\"c\",\"stream\":\"yes\"}".into(),
        "{\"message\":\"x\",\"extra\":{\"__proto__\":1}}".into(),
        "{\"conversation_id\":\"c\",\"conversation_id\":\"d\"}".into(),
    ]
}

/// Frames that break the Engine.IO or Socket.IO framing itself.
fn bad_frames() -> Vec<String> {
    let mut frames: Vec<String> = [
        "",
        "9",
        "x",
        "0",
        "1",
        "4",
        "5",
        "6",
        "2probe",
        "3",
        "\u{0}",
        "\u{fffd}",
        "40",
        "40{",
        "40[]",
        "40\"x\"",
        "41",
        "43",
        "44",
        "45",
        "46",
        "47",
        "48",
        "4x",
        "42",
        "42[",
        "42[]",
        "42[1]",
        "42[null]",
        "42{}",
        "42\"x\"",
        "42[\"\"]",
        "42[[]]",
        "42[{}]",
        "42/nope,[\"x\"]",
        "42/nope,",
        "42/,[\"join_conversation\",{}]",
        "42/admin,[\"system_announcement\",{}]",
        "4299999999999999999999999[\"get_history\",{}]",
        "42-1[\"get_history\",{}]",
        "420[\"get_history\"]",
        "43999[\"x\"]",
        "43[\"x\"]",
        "451-[\"x\",{\"_placeholder\":true,\"num\":5}]",
        "45-[\"x\"]",
        "45999999999999-[\"x\"]",
        "450-[\"x\"]",
        "461-[\"x\"]",
        "451-[\"x\",{\"_placeholder\":\"yes\",\"num\":0}]",
        "4-1",
        "4 2[\"x\"]",
        "42[\"send_message\",{\"conversation_id\":\"c\",\"message\":\"hi\"},1,2,3]",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    frames.push(format!("42{}", "[".repeat(100_000)));
    frames.push(format!("42[\"x\",{}]", "9".repeat(100_000)));
    frames
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_flood_leaves_the_server_serving() {
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        PANICS.fetch_add(1, Ordering::SeqCst);
        default_hook(info);
    }));

    let mut config = MarieConfig::default();
    config.max_payload = 256 * 1024;
    // No rate limit, so that every frame reaches the decoders and handlers.
    config.limits = Limits::unlimited();
    config.limits.max_event_bytes = 64 * 1024;
    let server = start_with(EchoProvider::new(Duration::from_millis(1)), config).await;
    let addr = server.addr;

    // Legitimate users, connected throughout.
    let mut alice = connect(addr, "alice").await;
    let mut bob = connect(addr, "bob").await;
    alice.join("plans").await;
    alice
        .ack(
            "invite",
            json!({"conversation_id": "plans", "user_id": "bob"}),
        )
        .await;
    bob.join("plans").await;

    let started = Instant::now();
    let mut sent = 0usize;
    let mut reconnects = 0usize;
    let mut rng = Rng(0x5eed_1234_abcd_ef01);
    let mut ws = raw::ws_connect(addr, "t-carol").await;

    // Every event with every bad payload, as event and as event with ack.
    let mut frames = Vec::new();
    for event in EVENTS {
        for payload in bad_payloads() {
            frames.push(format!("42[\"{event}\",{payload}]"));
            frames.push(format!("4217[\"{event}\",{payload}]"));
        }
    }
    frames.extend(bad_frames());
    // Random mutations of valid frames: truncation, byte flips, insertions, duplication.
    let valid = [
        "42[\"join_conversation\",{\"conversation_id\":\"c\"}]",
        "421[\"send_message\",{\"conversation_id\":\"c\",\"message\":\"hello\"}]",
        "42[\"get_history\",{\"conversation_id\":\"c\",\"limit\":5}]",
        "40{\"token\":\"t-carol\"}",
        "451-[\"send_message\",{\"_placeholder\":true,\"num\":0}]",
    ];
    let alphabet = b"[]{}\",:0123456789-/\\ 42ex_";
    for _ in 0..3000 {
        let mut bytes = valid[rng.below(valid.len())].as_bytes().to_vec();
        for _ in 0..=rng.below(4) {
            match rng.below(4) {
                0 => bytes.truncate(rng.below(bytes.len() + 1)),
                1 if !bytes.is_empty() => {
                    let i = rng.below(bytes.len());
                    bytes[i] = alphabet[rng.below(alphabet.len())];
                }
                2 => {
                    let i = rng.below(bytes.len() + 1);
                    bytes.insert(i, alphabet[rng.below(alphabet.len())]);
                }
                _ => {
                    let copy = bytes.clone();
                    bytes.extend_from_slice(&copy);
                }
            }
        }
        frames.push(String::from_utf8_lossy(&bytes).into_owned());
    }

    let total = frames.len();
    for (i, frame) in frames.into_iter().enumerate() {
        // Every few frames, a binary frame out of place, and an oversize one now and then.
        let ok = if i % 97 == 0 {
            raw::send_binary(&mut ws, vec![0xff; rng.below(64)]).await
        } else if i % 1013 == 0 {
            raw::send_text(&mut ws, "x".repeat(300 * 1024)).await
        } else {
            raw::send_text(&mut ws, frame).await
        };
        sent += 1;
        // A frame that breaks the framing closes the connection: open a new one and go on.
        if !ok || i % 50 == 49 {
            let alive = ok && {
                raw::send_text(
                    &mut ws,
                    "42[\"get_history\",{\"conversation_id\":\"carol-ping\"}]",
                )
                .await
                    && raw::next_event(&mut ws, "error", Duration::from_secs(2))
                        .await
                        .is_some()
            };
            if !alive {
                reconnects += 1;
                ws = raw::ws_connect(addr, "t-carol").await;
            }
        }
    }
    let elapsed = started.elapsed();
    println!(
        "sent {sent} malformed frames ({total} generated) in {elapsed:?}, {reconnects} reconnects"
    );
    assert!(sent >= 3000);

    // The server still serves every client correctly.
    let ack = alice
        .ack(
            "send_message",
            json!({"conversation_id": "plans", "message": "still works"}),
        )
        .await;
    assert_eq!(ack["status"], "ok", "{ack}");
    for c in [&mut alice, &mut bob] {
        let seen = c.stream().await;
        assert_eq!(seen.terminal.event, "stream_end");
        assert_eq!(seen.assert_contiguous(), "still works");
    }
    let history = bob
        .ack("get_history", json!({"conversation_id": "plans"}))
        .await;
    assert_eq!(history["messages"].as_array().unwrap().len(), 2);
    let mut carol = connect(addr, "carol").await;
    assert_eq!(carol.join("carol-room").await["status"], "ok");
    let _ = raw::polling_handshake(addr).await;
    assert_eq!(PANICS.load(Ordering::SeqCst), 0, "a panic was recorded");
}
