//! Test support for MARIE's own tests, shared by the test binaries of marie-core, marie-llm
//! and marie-axum so that each helper is written once. It is never published: nothing here is
//! API, and it changes with the tests that use it.
//!
//! Each group of modules sits behind a feature, so that a crate's tests build only what they
//! use: `engine` for the engine harness, `server` for MARIE over Socket.IO (the `server`,
//! `socketio` and `raw` modules), `metrics` for the recorder.
//!
//! ## Layout
//!
//! - `engine`: a `ChatEngine` on `MemoryStore`, `ScriptedProvider` and `RecordingSink`, and waits.
//! - `server`: MARIE on axum on an ephemeral port, with the test users' `t-<name>` tokens.
//! - `socketio`: a real Socket.IO client (`rust_socketio`) that records every event and acks.
//! - `raw`: raw Engine.IO / Socket.IO over a WebSocket, and raw HTTP/1.1.
//! - `metrics`: a process-wide metrics recorder whose values the tests read.

// A test crate: a failed `unwrap` is a failed test, with its location, which is what a test
// wants (the library crates keep the workspace's `unwrap_used` warning).
#![allow(clippy::unwrap_used)]

#[cfg(feature = "engine")]
pub mod engine;
#[cfg(feature = "metrics")]
pub mod metrics;
#[cfg(feature = "server")]
pub mod raw;
#[cfg(feature = "server")]
pub mod server;
#[cfg(feature = "server")]
pub mod socketio;
