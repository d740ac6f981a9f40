//! The answer's lease on its conversation (see [`AnswerLeases`](crate::AnswerLeases)), renewed
//! while the answer runs, with the last `seq` sent recorded in it for late joiners.

use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::{AnswerJob, ChatEngine};
use crate::AnswerLease;

/// How often at most the lease records the answer's progress (`joined.active_stream.seq`,
/// a hint for a late joiner, who resumes from it or from 0). Every chunk would be a store
/// write per chunk: with Redis, a third round trip per chunk beside the log and the publish.
const SEQ_EVERY: Duration = Duration::from_millis(50);

/// Runs `work` while keeping the answer's lease in the store alive.
///
/// When `work` is done the keeper is stopped, and a renewal it has in flight is awaited
/// rather than dropped: a renewal takes a lapsed lease again, and a dropped one may still
/// reach the store (a SQL statement already handed to a pool's connection runs anyway) after
/// the answer has released its lease, taking it back and leaving the conversation `busy`
/// for a whole lease.
pub(super) async fn with_lease<T>(
    engine: &ChatEngine,
    job: &AnswerJob,
    work: impl std::future::Future<Output = T>,
) -> T {
    let stop = CancellationToken::new();
    let keeper = keep_lease(engine, job, &stop);
    tokio::pin!(keeper, work);
    // The keeper returns only once stopped; `running` keeps a returned future from being
    // polled again all the same.
    let mut running = true;
    let out = tokio::select! {
        biased;
        out = &mut work => out,
        () = &mut keeper => {
            running = false;
            (&mut work).await
        }
    };
    if running {
        stop.cancel();
        keeper.await;
    }
    out
}

/// Renews the lease every third of its length, and records the last `seq` sent at most every
/// [`SEQ_EVERY`], until `stop`: it returns then, between two renewals.
async fn keep_lease(engine: &ChatEngine, job: &AnswerJob, stop: &CancellationToken) {
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
            () = stop.cancelled() => return,
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
