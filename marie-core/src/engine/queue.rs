//! Busy conversations (`on_busy`): queued sends, and interrupting the running answer.
//!
//! A queued send lives in the store ([`SendQueue::enqueue_send`](crate::SendQueue::enqueue_send)), so any
//! node may answer it. Whoever ends an answer starts the queue's first send
//! ([`ChatEngine::start_queued`]): it takes the conversation's lease under the send's
//! stream, then takes the send out of the queue, so that two nodes never answer it twice.
//! A queue is also looked at when a send is queued (the running answer may have ended
//! meanwhile) and when someone joins a conversation where nothing runs (a node that died
//! mid-answer left its queue waiting).

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use super::ChatEngine;
use super::send::{Question, Start};
use crate::{
    ConversationId, EndStatus, Error, FinishReason, Identity, OnBusy, QueuedSend, SendOutcome,
    SendQueued, StreamEnd, StreamEvent, StreamFailed, Usage, now_millis,
};

impl ChatEngine {
    /// Queues a send behind the running answer: `busy` when the queue is full. The ack
    /// says where it stands; the room gets `queued`.
    pub(super) async fn enqueue(&self, who: &Identity, start: Start) -> Result<SendOutcome, Error> {
        let Question::New {
            text: message,
            attachments,
        } = start.question
        else {
            return Err(Error::Busy);
        };
        let mut outcome = super::send::new_outcome();
        let send = QueuedSend {
            conversation_id: start.conversation.clone(),
            user_id: who.user_id.clone(),
            roles: who.roles.clone(),
            message,
            attachments,
            stream: start.streamed,
            message_id: outcome.message_id.clone(),
            answer_message_id: outcome.answer_message_id.clone(),
            stream_id: outcome.stream_id.clone(),
            queued_at: now_millis(),
            client_tools: start.client_tools.specs().to_vec(),
        };
        let config = &self.shared.config;
        let position = self
            .shared
            .stores
            .send_queue()
            .enqueue_send(&send, config.max_queue)
            .await?
            .ok_or(Error::Busy)?;
        outcome.queued = Some(position);
        if let Some(id) = start.client_message_id {
            let key = (start.conversation.clone(), who.user_id.clone(), id);
            self.state()
                .sent
                .insert(key, outcome.clone(), config.idempotency_capacity);
        }
        metrics::counter!("marie_sends_queued_total").increment(1);
        let notice = StreamEvent::Queued(SendQueued {
            conversation_id: send.conversation_id.clone(),
            stream_id: send.stream_id.clone(),
            message_id: send.message_id.clone(),
            user_id: send.user_id.clone(),
            message: send.message,
            position,
        });
        if let Err(e) = self.shared.sink.emit(notice).await {
            tracing::warn!(error = %e, "could not tell the room of a queued send");
        }
        // The running answer may have ended between the `busy` and the queueing, and then
        // no one would start this send.
        let engine = self.clone();
        let conversation = start.conversation;
        self.shared.tasks.spawn(async move {
            engine.start_queued(&conversation).await;
        });
        Ok(outcome)
    }

    /// Starts the first queued send of `conversation`, if nothing runs there. A send that
    /// cannot be answered any more (its sender lost access, say) is taken out of the queue,
    /// its stream ends with `stream_error`, and the next one is tried.
    ///
    /// Returns a boxed `dyn Future + Send`: an answer's end starts the next answer, whose end
    /// starts the next, and the erased type ends that cycle of types.
    pub(super) fn start_queued<'a>(
        &'a self,
        conversation: &'a ConversationId,
    ) -> Pin<Box<dyn Future<Output = ()> + Send + 'a>> {
        Box::pin(self.run_queue(conversation))
    }

    async fn run_queue(&self, conversation: &ConversationId) {
        let store = self.shared.stores.send_queue();
        loop {
            let next = match store.queued_sends(conversation).await {
                Ok(queue) => queue.into_iter().next(),
                Err(e) => {
                    tracing::warn!(error = %e, %conversation, "could not read the queue");
                    return;
                }
            };
            let Some(next) = next else { return };
            let start = Start {
                conversation: conversation.clone(),
                question: Question::New {
                    text: next.message.clone(),
                    attachments: next.attachments.clone(),
                },
                streamed: next.stream,
                client_message_id: None,
                on_busy: OnBusy::Reject,
                queued: Some(next.clone()),
                answer: Some(true),
                assistant: None,
                // Checked when it was queued; the server's tools may have changed since (a
                // restart): then the answer goes on without them.
                client_tools: crate::ClientTools::new(
                    next.client_tools.clone(),
                    &self.shared.tools,
                )
                .unwrap_or_default(),
            };
            match self.start(&next.identity(), start).await {
                // Started; or something runs, whose end starts it; or this node stops.
                Ok(_) | Err(Error::Busy | Error::ShuttingDown | Error::Store(_)) => return,
                // Taken by another node, or cancelled, meanwhile: the next one.
                Err(Error::NotFound(_)) => {}
                Err(error) => match store.remove_queued(conversation, &next.stream_id).await {
                    Ok(true) => {
                        tracing::info!(%error, stream_id = %next.stream_id, "a queued send could not be answered");
                        self.end_queued(&next, Err(&error)).await;
                    }
                    Ok(false) => {}
                    Err(_) => return,
                },
            }
        }
    }

    /// `cancel_stream` of a queued send: out of the queue, and its stream ends `cancelled`
    /// (without a `stream_start`: it never began). `false` when it is not queued.
    pub(super) async fn cancel_queued(
        &self,
        conversation: &ConversationId,
        stream_id: &crate::StreamId,
    ) -> Result<bool, Error> {
        let store = self.shared.stores.send_queue();
        let queue = store.queued_sends(conversation).await?;
        let Some(send) = queue.into_iter().find(|q| q.stream_id == *stream_id) else {
            return Ok(false);
        };
        if !store.remove_queued(conversation, stream_id).await? {
            return Ok(false);
        }
        self.end_queued(&send, Ok(())).await;
        Ok(true)
    }

    /// The terminal event of a queued send that never started.
    async fn end_queued(&self, send: &QueuedSend, outcome: Result<(), &Error>) {
        let event = match outcome {
            Ok(()) => StreamEvent::End(StreamEnd {
                conversation_id: send.conversation_id.clone(),
                stream_id: send.stream_id.clone(),
                message_id: send.answer_message_id.clone(),
                full_content: String::new(),
                status: EndStatus::Cancelled,
                usage: Usage::default(),
                finish_reason: FinishReason::Cancelled,
                parts: Vec::new(),
            }),
            Err(error) => StreamEvent::Error(StreamFailed {
                conversation_id: send.conversation_id.clone(),
                stream_id: send.stream_id.clone(),
                code: error.code(),
                error: error.client_message(),
                retryable: false,
                after_seq: 0,
            }),
        };
        if let Err(e) = self.shared.sink.emit(event).await {
            tracing::warn!(error = %e, stream_id = %send.stream_id, "could not end a queued send");
        }
    }

    /// `on_busy: "interrupt"`: cancels the running answer (on whichever node runs it) and
    /// waits until it has ended, its partial text stored and its lease given back; `busy`
    /// if it does not end within the answer lease.
    pub(super) async fn interrupt(
        &self,
        who: &Identity,
        conversation: &ConversationId,
    ) -> Result<(), Error> {
        match self.cancel(who, conversation, None).await {
            Ok(_) | Err(Error::NotFound(_)) => {}
            Err(e) => return Err(e),
        }
        let deadline = tokio::time::Instant::now() + self.answer_lease();
        let mut pause = Duration::from_millis(5);
        // Polled: the answer may run on another node, whose end this node only sees in the
        // store. Its cancel is quick, so the first checks usually find it ended.
        while self.running_answer(conversation).await?.is_some() {
            if tokio::time::Instant::now() >= deadline {
                return Err(Error::Busy);
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_millis(100));
        }
        metrics::counter!("marie_answers_interrupted_total").increment(1);
        Ok(())
    }
}
