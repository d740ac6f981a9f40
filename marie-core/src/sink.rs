//! [`StreamSink`]: where an answer's events go.
//!
//! ## Bursts and `flush`: the protocol between the engine and a sink
//!
//! This is the one place it is explained; the engine (`engine/answer/burst.rs`) and the
//! Socket.IO delivery of `marie-axum` follow it.
//!
//! A model's tokens usually come 5 to 50 ms apart, and each is sent as it comes. Sometimes
//! several are ready at once: a network read that held many tokens, a very fast model, a
//! busy node. The engine then takes every delta that is ready without waiting (up to 32), logs
//! them with one [`StreamLog::append`](crate::StreamLog::append) and hands them to the sink with
//! one [`emit_many`](StreamSink::emit_many): a *burst*. A sink that reaches other processes
//! sends a burst in one round trip; a sink that delivers to clients may also *hold* the
//! events of a burst and send them merged, as one frame.
//!
//! Whenever the engine is about to wait (its provider has nothing ready, or the answer is
//! over), it calls [`flush`](StreamSink::flush) for the conversation: from then on nothing
//! more comes for a while, so whatever a sink held must go out now. The engine never waits for
//! its provider without flushing first, so a sink may hold events until `flush` without ever
//! delaying one behind a slow model. A sink that holds nothing ignores `flush` (the default).

use std::sync::Mutex;

use async_trait::async_trait;

use crate::{ConversationId, Notice, SinkError, StreamEvent, UserId};

/// Delivers an answer's [`StreamEvent`]s to every member of its conversation, on every node.
///
/// The engine awaits each call before the next, so a sink sees one answer's events in order;
/// a sink must keep that order per conversation. See the module documentation for bursts and
/// [`flush`](Self::flush).
#[async_trait]
pub trait StreamSink: Send + Sync + 'static {
    /// Sends `event` to the members of its conversation.
    async fn emit(&self, event: StreamEvent) -> Result<(), SinkError>;

    /// Sends a burst: `events`, in order, all of one answer (see the module documentation).
    /// The default emits them one by one with [`emit_each`].
    async fn emit_many(&self, events: Vec<StreamEvent>) -> Result<(), SinkError> {
        emit_each(self, events).await
    }

    /// The engine has nothing more ready for `conversation` for now: send what was held back
    /// of a burst. The default does nothing.
    async fn flush(&self, conversation: &ConversationId) -> Result<(), SinkError> {
        let _ = conversation;
        Ok(())
    }

    /// Tells `users` (each on all their connections, on every node) of a change of a
    /// conversation; a [`Notice`] that [`ends_following`](Notice::ends_following) also makes
    /// their connections stop following it. The default does nothing.
    async fn notify(&self, notice: Notice, users: Vec<UserId>) -> Result<(), SinkError> {
        let _ = (notice, users);
        Ok(())
    }
}

/// Emits `events` one by one with [`StreamSink::emit`], all of them even after a failure,
/// and reports the first failure: what [`StreamSink::emit_many`] does by default, for sinks
/// that override it for some events only.
pub async fn emit_each<S: StreamSink + ?Sized>(
    sink: &S,
    events: Vec<StreamEvent>,
) -> Result<(), SinkError> {
    let mut outcome = Ok(());
    for event in events {
        let sent = sink.emit(event).await;
        if outcome.is_ok() {
            outcome = sent;
        }
    }
    outcome
}

/// A sink that keeps every event and notice, for tests of the engine and of custom
/// backends.
#[derive(Debug, Default)]
pub struct RecordingSink {
    events: Mutex<Vec<StreamEvent>>,
    notices: Mutex<Vec<(Notice, Vec<UserId>)>>,
    notify: tokio::sync::Notify,
}

impl RecordingSink {
    /// An empty sink.
    pub fn new() -> Self {
        Self::default()
    }

    /// Every event so far, in order.
    pub fn events(&self) -> Vec<StreamEvent> {
        self.events
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Every notice so far, with whom it was for, in order.
    pub fn notices(&self) -> Vec<(Notice, Vec<UserId>)> {
        self.notices
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Waits until an event matching `pred` has been recorded and returns it.
    pub async fn wait_for(&self, pred: impl Fn(&StreamEvent) -> bool) -> StreamEvent {
        loop {
            // Register interest before checking, so an event recorded in between is not
            // missed.
            let notified = self.notify.notified();
            if let Some(e) = self.events().into_iter().find(|e| pred(e)) {
                return e;
            }
            notified.await;
        }
    }

    /// Waits until a notice matching `pred` has been recorded and returns it, with whom it
    /// was for.
    pub async fn wait_for_notice(&self, pred: impl Fn(&Notice) -> bool) -> (Notice, Vec<UserId>) {
        loop {
            let notified = self.notify.notified();
            if let Some(found) = self.notices().into_iter().find(|(n, _)| pred(n)) {
                return found;
            }
            notified.await;
        }
    }
}

#[async_trait]
impl StreamSink for RecordingSink {
    async fn emit(&self, event: StreamEvent) -> Result<(), SinkError> {
        self.events
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(event);
        self.notify.notify_waiters();
        Ok(())
    }

    async fn notify(&self, notice: Notice, users: Vec<UserId>) -> Result<(), SinkError> {
        self.notices
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((notice, users));
        self.notify.notify_waiters();
        Ok(())
    }
}

#[async_trait]
impl<T: StreamSink + ?Sized> StreamSink for std::sync::Arc<T> {
    async fn emit(&self, event: StreamEvent) -> Result<(), SinkError> {
        (**self).emit(event).await
    }

    async fn emit_many(&self, events: Vec<StreamEvent>) -> Result<(), SinkError> {
        (**self).emit_many(events).await
    }

    async fn flush(&self, conversation: &ConversationId) -> Result<(), SinkError> {
        (**self).flush(conversation).await
    }

    async fn notify(&self, notice: Notice, users: Vec<UserId>) -> Result<(), SinkError> {
        (**self).notify(notice, users).await
    }
}
