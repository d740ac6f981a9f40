//! Engine tests: every client command against the in-memory store, a scripted provider and
//! a recording sink (`marie_testkit::engine`). Each test asserts the room events a client
//! would receive.
//!
//! Nothing here sleeps to wait: tests await `RecordingSink::wait_for` under a timeout, so a
//! bug fails a test instead of hanging it.
//!
//! One test binary, a module per concern:
//!
//! - `access`: joining, inviting, admins, `create_on_join`, the running answer on join.
//! - `streaming`: a streamed answer (its events, reasoning, usage, the model's request), an
//!   answer with `stream: false`, and chunks logged before they are sent.
//! - `sending`: repeated client message ids, and messages refused before anything starts.
//! - `branches`: edit, regenerate and switch.
//! - `busy`: a conversation busy with an answer, and `on_busy` (the queue, interrupt).
//! - `cancel`: `cancel_stream` before and after the first chunk.
//! - `conversations`: the list, titles, settings, archive, members, deleting.
//! - `budgets`: token budgets.
//! - `retries`: a model step that fails mid-stream, asked again.
//! - `history`: history pages.
//! - `faults`: a provider, a sink or a store that fails or panics.
//! - `groups`: messages not answered, `answer_policy`, named assistants, read marks.
//! - `shutdown`: shutdown and its grace period.

#![allow(clippy::unwrap_used)]

mod access;
mod branches;
mod budgets;
mod busy;
mod cancel;
mod conversations;
mod faults;
mod groups;
mod history;
mod retries;
mod sending;
mod shutdown;
mod streaming;
