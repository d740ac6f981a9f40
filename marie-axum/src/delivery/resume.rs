//! Resuming a follower from the stream log: a client's `resume_stream` or SSE resume
//! ([`resume`]), and a gap in a live stream ([`fill_gap`]).

use std::sync::Arc;

use marie_core::{ConversationId, Error, StreamEvent, StreamId, StreamLog, check_resume};

use super::Outbox;

/// Events read from the log per round trip.
const PAGE: usize = 1000;

/// Resumes `stream` for `outbox` from `after_seq`, what the client holds: drops what is
/// queued of it, holds its live events, reads the log to its end, queues what it gave,
/// releases what was held. The caller has checked access.
pub(crate) async fn resume(
    log: &Arc<dyn StreamLog>,
    outbox: &Outbox,
    conversation: &ConversationId,
    stream: &StreamId,
    after_seq: u64,
) -> Result<(), Error> {
    outbox.begin_resume(conversation, stream);
    fill_gap(log, outbox, stream, after_seq).await
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
    match read_to_end(log, stream, after_seq).await {
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

/// Every event of the log after `after_seq`, and its end if it has one.
async fn read_to_end(
    log: &Arc<dyn StreamLog>,
    stream: &StreamId,
    after_seq: u64,
) -> Result<(Vec<StreamEvent>, Option<StreamEvent>), Error> {
    let mut events = Vec::new();
    let mut pos = after_seq;
    loop {
        let read = check_resume(log.read(stream, pos, PAGE).await?, pos)?;
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
