//! # marie-llm
//!
//! [`LlmProvider`](marie_core::LlmProvider) implementations for
//! [MARIE](https://github.com/marie-rs/marie).
//!
//! ## Feature flags
//!
//! | feature | default | what it adds |
//! |---|---|---|
//! | `echo` | yes | [`EchoProvider`]: **a demo**, streams the user's message back word by word |
//!
//! [`ScriptedProvider`] (fixed chunks, delays, faults on cue) is always there, for tests.
//!
//! ## Example
//!
//! ```
//! use std::time::Duration;
//! use marie_llm::EchoProvider;
//!
//! let provider = EchoProvider::new(Duration::from_millis(40));
//! # let _ = provider;
//! ```
#![cfg_attr(docsrs, feature(doc_cfg))]

#[cfg(feature = "echo")]
mod echo;
mod scripted;
#[cfg(feature = "echo")]
mod words;

#[cfg(feature = "echo")]
pub use echo::EchoProvider;
pub use scripted::ScriptedProvider;
