//! The answer's lease on its conversation (see [`AnswerLeases`](crate::AnswerLeases)), renewed
//! while the answer runs, with the last `seq` sent recorded in it for late joiners.

use std::sync::atomic::Ordering;
use std::time::Duration;

use super::{AnswerJob, ChatEngine};
use crate::AnswerLease;

/// How often at most the lease records the answer's progress (`joined.active_stream.seq`,
/// a hint for a late joiner, who resumes from it or from 0). Every chunk would be a store
/// write per chunk: with Redis, a third round trip per chunk beside the log and the publish.
const SEQ_EVERY: Duration = Duration::from_millis(50);

/// Runs `work` while keeping the answer's lease in the store alive.
pub(super) async fn with_lease<T>(
    engine: &ChatEngine,
    job: &AnswerJob,
    work: impl std::future::Future<Output = T>,
) -> T {
    let keeper = keep_lease(engine, job);
    tokio::pin!(keeper, work);
    tokio::select! {
        biased;
        out = &mut work => out,
        never = &mut keeper => match never {},
    }
}

/// Renews the lease every third of its length, and records the last `seq` sent at most every
/// [`SEQ_EVERY`]. Never returns; dropped when the answer's work is done.
async fn keep_lease(engine: &ChatEngine, job: &AnswerJob) -> std::convert::Infallible {
    let store = engine.shared.stores.answer_leases();
    let ttl = engine.answer_lease();
    let period = ttl / 3;
    let mut recorded = 0;
    let mut renew_at = tokio::time::Instant::now() + period;
    let mut failing = false;
    let started = tokio::time::Instant::now();
    let mut written_at = started.checked_sub(SEQ_EVERY).unwrap_or(started);
    loop {
        // Progress not yet recorded is written at the next `SEQ_EVERY` tick, not at once.
        let behind = job.seq.load(Ordering::Acquire) != recorded;
        let wake_at = if behind {
            renew_at.min(written_at + SEQ_EVERY)
        } else {
            renew_at
        };
        tokio::select! {
            () = job.progress.notified(), if !behind => {}
            () = tokio::time::sleep_until(wake_at) => {}
        }
        let seq = job.seq.load(Ordering::Acquire);
        let now = tokio::time::Instant::now();
        if now < renew_at && (seq == recorded || now < written_at + SEQ_EVERY) {
            continue;
        }
        written_at = now;
        let lease = AnswerLease {
            stream_id: job.stream_id.clone(),
            seq,
        };
        match store.renew_answer(&job.conversation_id, &lease, ttl).await {
            Ok(held) => {
                if !held {
                    tracing::warn!(stream_id = %job.stream_id, "another answer took this answer's lease");
                }
                if failing {
                    tracing::info!(stream_id = %job.stream_id, "the answer's lease is renewed again");
                    failing = false;
                }
                recorded = seq;
                renew_at = tokio::time::Instant::now() + period;
            }
            Err(e) => {
                if !failing {
                    tracing::warn!(error = %e, stream_id = %job.stream_id, "could not renew the answer's lease");
                    failing = true;
                }
                // Try again at the next chunk, or soon.
                renew_at = tokio::time::Instant::now() + period.min(Duration::from_secs(1));
            }
        }
    }
}
