//! Resuming a follower from the stream log: a client's `resume_stream` or SSE resume
//! ([`resume`]), and a gap in a live stream ([`fill_gap`]).

use std::sync::Arc;

use marie_core::{
    ConversationId, Error, MessageAdded, StreamEvent, StreamId, StreamLog, check_resume,
};

use super::Outbox;

/// Events read from the log per round trip.
const PAGE: usize = 1000;

/// Resumes `stream` for `outbox` from `after_seq`, what the client holds: drops what is
/// queued of it, holds its live events, reads the log to its end, queues what it gave,
/// releases what was held. The caller has checked access. From the start (`after_seq` 0),
/// the question the answer answers comes first, as `message_added` (a member who joined
/// late, or was away when it was sent, gets it in order).
pub(crate) async fn resume(
    log: &Arc<dyn StreamLog>,
    outbox: &Outbox,
    conversation: &ConversationId,
    stream: &StreamId,
    after_seq: u64,
) -> Result<(), Error> {
    outbox.begin_resume(conversation, stream);
    read_into(log, outbox, stream, after_seq, after_seq == 0).await
}

/// Reads the log after `after_seq` to its end and hands what it gave to the outbox, which
/// then releases the live events it held (dropping those the log gave); on failure, releases
/// them as they are. This also fills a gap that a live event revealed (the outbox holds that
/// event and the stream's live events since).
pub(super) async fn fill_gap(
    log: &Arc<dyn StreamLog>,
    outbox: &Outbox,
    stream: &StreamId,
    after_seq: u64,
) -> Result<(), Error> {
    read_into(log, outbox, stream, after_seq, false).await
}

/// [`fill_gap`], with the answer's question first when `with_question`.
async fn read_into(
    log: &Arc<dyn StreamLog>,
    outbox: &Outbox,
    stream: &StreamId,
    after_seq: u64,
    with_question: bool,
) -> Result<(), Error> {
    match read_to_end(log, stream, after_seq, with_question).await {
        Ok((events, end)) => {
            outbox.finish_resume(stream, after_seq, events, end);
            Ok(())
        }
        Err(e) => {
            outbox.abort_resume(stream);
            Err(e)
        }
    }
}

/// Every event of the log after `after_seq` (the answer's question first, as
/// `message_added`, when `with_question` and the log holds it), and its end if it has one.
async fn read_to_end(
    log: &Arc<dyn StreamLog>,
    stream: &StreamId,
    after_seq: u64,
    with_question: bool,
) -> Result<(Vec<StreamEvent>, Option<StreamEvent>), Error> {
    let mut events = Vec::new();
    let mut pos = after_seq;
    let mut first = with_question;
    loop {
        let read = check_resume(log.read(stream, pos, PAGE).await?, pos)?;
        if std::mem::take(&mut first)
            && let Some(question) = read.meta.question
        {
            events.push(StreamEvent::MessageAdded(MessageAdded {
                conversation_id: read.meta.conversation_id,
                message: question,
            }));
        }
        let full = read.events.len() >= PAGE;
        if let Some(last) = read.events.last().and_then(StreamEvent::seq) {
            pos = last;
        }
        events.extend(read.events);
        if !full {
            return Ok((events, read.end));
        }
    }
}
