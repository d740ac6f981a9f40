//! The engine path from raw frames to MARIE's handlers: a real MARIE (in-memory store, echo
//! provider, every limit off so that all frames reach the handlers) behind socketioxide;
//! each input is one authenticated connection, split on `\n` into Engine.IO message
//! frames (the text a WebSocket frame carries; a frame starting with byte 0x01 is sent as
//! a binary frame), then closed.
//!
//! socketioxide's `__test_harness` feeds the frames straight into its Socket.IO client
//! (parser, namespaces, acks, binary attachments, then MARIE's middleware and handlers),
//! skipping only the WebSocket framing, which is tungstenite's. A panic anywhere (any task
//! on the runtime) aborts the process: libFuzzer reports it as a crash.
#![no_main]

use std::sync::OnceLock;
use std::time::Duration;

use engineioxide::Packet;
use libfuzzer_sys::fuzz_target;
use marie_adapters::{MemoryStore, StaticAuthenticator};
use marie_axum::{Limits, Marie, MarieConfig, MarieHandle};
use marie_core::{Identity, UserId};
use marie_llm::EchoProvider;

struct Harness {
    rt: tokio::runtime::Runtime,
    handle: MarieHandle,
}

fn harness() -> &'static Harness {
    static H: OnceLock<Harness> = OnceLock::new();
    H.get_or_init(|| {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let auth = StaticAuthenticator::new()
            .with_token("t-fuzz", Identity::new(UserId::parse("fuzz").expect("id")))
            .with_token(
                "t-admin",
                Identity::new(UserId::parse("admin").expect("id")).with_role("admin"),
            );
        let mut config = MarieConfig::default();
        config.limits = Limits::unlimited();
        let handle = rt.block_on(async {
            let (_layer, handle) = Marie::builder()
                .authenticator(auth)
                .store(MemoryStore::new())
                .provider(EchoProvider::new(Duration::ZERO))
                .config(config)
                .build()
                .expect("marie");
            handle
        });
        Harness { rt, handle }
    })
}

fuzz_target!(|data: &[u8]| {
    let h = harness();
    h.rt.block_on(async {
        // Admin for some inputs, so that admin-only paths are reached too.
        let token = if data.first() == Some(&b'A') {
            "t-admin"
        } else {
            "t-fuzz"
        };
        let (tx, mut rx) = h
            .handle
            .io()
            .new_dummy_sock("/", serde_json::json!({ "token": token }))
            .await;
        let settle = |rx: &mut tokio::sync::mpsc::Receiver<Packet>| {
            while rx.try_recv().is_ok() {}
        };
        for frame in data.split(|b| *b == b'\n') {
            let packet = match frame.split_first() {
                Some((1, bin)) => Packet::Binary(bin.to_vec().into()),
                _ => Packet::Message(String::from_utf8_lossy(frame).into_owned().into()),
            };
            if tx.send(packet).await.is_err() {
                break;
            }
            for _ in 0..4 {
                tokio::task::yield_now().await;
            }
            settle(&mut rx);
        }
        let _ = tx.send(Packet::Close).await;
        for _ in 0..16 {
            tokio::task::yield_now().await;
            settle(&mut rx);
        }
    });
});
