//! [`StreamSink`]: where room events go.

use std::sync::Mutex;

use async_trait::async_trait;

use crate::{ConversationId, RoomEvent, SinkError};

/// Delivers [`RoomEvent`]s to every member of a conversation, on every node.
///
/// The engine awaits each `emit` before the next, so a sink sees one answer's events in
/// order; a sink must keep that order per conversation.
#[async_trait]
pub trait StreamSink: Send + Sync + 'static {
    /// Sends `event` to the conversation's room.
    async fn emit(&self, conversation: &ConversationId, event: RoomEvent) -> Result<(), SinkError>;

    /// Sends `events`, in order, as [`emit`](Self::emit) does each: the chunks of a burst
    /// (several ready at once). A sink that reaches other processes should send them in one
    /// round trip. The default emits them one by one and reports the first failure.
    async fn emit_many(
        &self,
        conversation: &ConversationId,
        events: Vec<RoomEvent>,
    ) -> Result<(), SinkError> {
        emit_each(self, conversation, events).await
    }

    /// The engine has nothing more ready for the conversation right now (the provider has
    /// no next chunk yet, or the answer is over): a sink that holds back the events of a
    /// burst, to send them together, sends them now. Called only after an `emit`; the
    /// default does nothing.
    async fn flush(&self, conversation: &ConversationId) -> Result<(), SinkError> {
        let _ = conversation;
        Ok(())
    }
}

/// Emits `events` one by one with [`StreamSink::emit`], all of them even after a failure,
/// and reports the first failure: what [`StreamSink::emit_many`] does by default, for sinks
/// that override it for some events only.
pub async fn emit_each<S: StreamSink + ?Sized>(
    sink: &S,
    conversation: &ConversationId,
    events: Vec<RoomEvent>,
) -> Result<(), SinkError> {
    let mut outcome = Ok(());
    for event in events {
        let sent = sink.emit(conversation, event).await;
        if outcome.is_ok() {
            outcome = sent;
        }
    }
    outcome
}

/// A sink that keeps every event, for tests of the engine and of custom backends.
#[derive(Debug, Default)]
pub struct RecordingSink {
    events: Mutex<Vec<(ConversationId, RoomEvent)>>,
    notify: tokio::sync::Notify,
}

impl RecordingSink {
    /// An empty sink.
    pub fn new() -> Self {
        Self::default()
    }

    /// Every event so far, in order.
    pub fn events(&self) -> Vec<(ConversationId, RoomEvent)> {
        self.events
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Waits until an event matching `pred` has been recorded and returns it.
    pub async fn wait_for(&self, pred: impl Fn(&RoomEvent) -> bool) -> RoomEvent {
        loop {
            // Register interest before checking, so an event recorded in between is not
            // missed.
            let notified = self.notify.notified();
            if let Some((_, e)) = self.events().into_iter().find(|(_, e)| pred(e)) {
                return e;
            }
            notified.await;
        }
    }
}

#[async_trait]
impl StreamSink for RecordingSink {
    async fn emit(&self, conversation: &ConversationId, event: RoomEvent) -> Result<(), SinkError> {
        self.events
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((conversation.clone(), event));
        self.notify.notify_waiters();
        Ok(())
    }
}

#[async_trait]
impl<T: StreamSink + ?Sized> StreamSink for std::sync::Arc<T> {
    async fn emit(&self, conversation: &ConversationId, event: RoomEvent) -> Result<(), SinkError> {
        (**self).emit(conversation, event).await
    }

    async fn emit_many(
        &self,
        conversation: &ConversationId,
        events: Vec<RoomEvent>,
    ) -> Result<(), SinkError> {
        (**self).emit_many(conversation, events).await
    }

    async fn flush(&self, conversation: &ConversationId) -> Result<(), SinkError> {
        (**self).flush(conversation).await
    }
}
