//! [`StreamLog`]: every numbered event of an answer, kept so that a client can resume where
//! it lost the stream (`docs/protocol.md` section 3, `resume_stream`).
//!
//! The answer task appends each event that has a `seq` (today: each chunk) to the log
//! **before** it is sent, and records the terminal event before that is sent too. A reader
//! that subscribes to the live events first and reads the log second therefore misses
//! nothing: every event is either in what it read or arrives live afterwards (duplicates are
//! dropped by `seq`). The log holds the same [`StreamEvent`]s that are sent.
//!
//! ## Positions that no longer exist
//!
//! A log can be lost (a restarted node, a flushed Redis) or trimmed (a bounded window). A log
//! that is recreated after a loss starts at the `seq` it was recreated at, not at 1, so
//! [`LogRead::first_seq`] tells a reader which positions the log still vouches for.
//! [`check_resume`] refuses (`resume_unavailable`) any read whose start is not covered, whose
//! position lies beyond what the log holds, or whose events are not contiguous: a client is
//! never fed data from a different incarnation of a log, nor a gap.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::{ConversationId, Error, MessageId, StoreError, StreamEvent, StreamId};

/// What a log knows about its answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamMeta {
    /// The conversation the answer belongs to (access is checked against it).
    pub conversation_id: ConversationId,
    /// The answer.
    pub stream_id: StreamId,
    /// The assistant message the answer becomes.
    pub message_id: MessageId,
    /// The user message the answer answers when the answer stored it (a send, an edit), as
    /// `message_added` told it: a client that resumes the answer from its start gets it
    /// first (`docs/protocol.md` section 10).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub question: Option<crate::ChatMessage>,
}

/// One read of a log.
#[derive(Clone, Debug, PartialEq)]
pub struct LogRead {
    /// The answer.
    pub meta: StreamMeta,
    /// The oldest `seq` the log still holds, or `last_seq + 1` when it holds none. 1 unless
    /// the log was trimmed or recreated after a loss.
    pub first_seq: u64,
    /// The newest `seq` appended (0 when none).
    pub last_seq: u64,
    /// The events after the requested position, oldest first, at most the requested number.
    pub events: Vec<StreamEvent>,
    /// The terminal event, once the answer is over.
    pub end: Option<StreamEvent>,
}

/// Where the numbered events of running and recently ended answers are kept.
///
/// Implementations: [`MemoryStreamLog`] (one node; the default) and, in `marie-adapters`'
/// `redis` feature, a Redis Streams log shared by every node. Every method is one atomic
/// step on the backend; a backend that is away returns [`StoreError::Unavailable`] rather
/// than blocking. `marie-adapters/tests/stream_log.rs` holds the contract.
#[async_trait]
pub trait StreamLog: Send + Sync + 'static {
    /// Starts the log of a new answer (before its `stream_start` is sent).
    async fn open(&self, meta: &StreamMeta) -> Result<(), StoreError>;

    /// Appends events (before they are sent): those that have a [`seq`](StreamEvent::seq),
    /// in increasing order (others are not logged). The engine appends a burst (several
    /// events ready at once) with one call: a log in another process should make it one
    /// round trip. Appending a `seq` that is already logged changes nothing. A log lost since
    /// `open` is recreated, starting at the first `seq` appended.
    async fn append(&self, stream_id: &StreamId, events: &[StreamEvent]) -> Result<(), StoreError>;

    /// Records the terminal event (before it is sent). From now on the log is kept for the
    /// implementation's retention window only.
    async fn close(&self, stream_id: &StreamId, end: &StreamEvent) -> Result<(), StoreError>;

    /// Reads at most `limit` events after `after_seq`. `None` when the log does not exist
    /// (never did, expired, or was lost).
    async fn read(
        &self,
        stream_id: &StreamId,
        after_seq: u64,
        limit: usize,
    ) -> Result<Option<LogRead>, StoreError>;
}

#[async_trait]
impl<T: StreamLog + ?Sized> StreamLog for std::sync::Arc<T> {
    async fn open(&self, meta: &StreamMeta) -> Result<(), StoreError> {
        (**self).open(meta).await
    }
    async fn append(&self, stream_id: &StreamId, events: &[StreamEvent]) -> Result<(), StoreError> {
        (**self).append(stream_id, events).await
    }
    async fn close(&self, stream_id: &StreamId, end: &StreamEvent) -> Result<(), StoreError> {
        (**self).close(stream_id, end).await
    }
    async fn read(
        &self,
        stream_id: &StreamId,
        after_seq: u64,
        limit: usize,
    ) -> Result<Option<LogRead>, StoreError> {
        (**self).read(stream_id, after_seq, limit).await
    }
}

/// Checks that `read` (of the events after `after_seq`) can be trusted to continue a client
/// that holds exactly the events up to `after_seq`; `resume_unavailable` otherwise.
pub fn check_resume(read: Option<LogRead>, after_seq: u64) -> Result<LogRead, Error> {
    let read = read.ok_or(Error::ResumeUnavailable(
        "this answer is no longer available for resuming",
    ))?;
    if after_seq > read.last_seq {
        // A position this log never produced: the client holds positions of a lost log.
        return Err(Error::ResumeUnavailable(
            "this answer's log was lost; its positions are no longer valid",
        ));
    }
    if after_seq + 1 < read.first_seq {
        return Err(Error::ResumeUnavailable(
            "the chunks after this position are no longer kept",
        ));
    }
    if read
        .events
        .iter()
        .enumerate()
        .any(|(i, e)| e.seq() != Some(after_seq + 1 + i as u64))
    {
        return Err(Error::ResumeUnavailable(
            "this answer's log has a gap after this position",
        ));
    }
    Ok(read)
}

/// Settings of a [`MemoryStreamLog`].
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct MemoryLogConfig {
    /// Events kept per answer: older ones are dropped first (ring buffer).
    pub max_events: usize,
    /// How long an ended answer stays readable.
    pub retention: Duration,
    /// Answers kept at most; the oldest ended ones (then the oldest) are dropped first.
    pub max_streams: usize,
}

impl Default for MemoryLogConfig {
    fn default() -> Self {
        Self {
            max_events: 16_384,
            retention: Duration::from_secs(300),
            max_streams: 4096,
        }
    }
}

/// A [`StreamLog`] in this process's memory: a ring buffer per answer, kept for a retention
/// window after the answer ends. The default of every engine; one node only.
#[derive(Debug, Default)]
pub struct MemoryStreamLog {
    config: MemoryLogConfig,
    logs: Mutex<MemoryLogs>,
}

#[derive(Debug, Default)]
struct MemoryLogs {
    by_id: HashMap<StreamId, Ring>,
    /// Creation order, for eviction. May name logs already dropped (skipped, and pruned now
    /// and then), so that dropping one is not a scan.
    order: VecDeque<StreamId>,
    /// Ended answers in the order they ended, with their expiry: increasing, as the retention
    /// is one constant, so expired logs are found at the front without a scan. May also
    /// name logs already dropped.
    ended: VecDeque<(Instant, StreamId)>,
}

#[derive(Debug)]
struct Ring {
    meta: StreamMeta,
    /// The numbered events, each with its `seq`.
    events: VecDeque<(u64, StreamEvent)>,
    first_seq: u64,
    last_seq: u64,
    end: Option<StreamEvent>,
    /// Set once ended: readable until then.
    expires: Option<Instant>,
}

impl MemoryStreamLog {
    /// A log with the default [`MemoryLogConfig`].
    pub fn new() -> Self {
        Self::default()
    }

    /// A log with `config`.
    pub fn with_config(config: MemoryLogConfig) -> Self {
        Self {
            config,
            logs: Mutex::default(),
        }
    }

    fn logs(&self) -> std::sync::MutexGuard<'_, MemoryLogs> {
        self.logs.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Drops expired logs, then the oldest ended ones (then the oldest) while over
    /// `max_streams`. Runs on every `open` and `read`, so it never scans every log: a busy node
    /// holds thousands.
    fn sweep(&self, logs: &mut MemoryLogs) {
        let now = Instant::now();
        let MemoryLogs {
            by_id,
            order,
            ended,
        } = logs;
        while let Some((expires, _)) = ended.front()
            && *expires <= now
        {
            if let Some((_, id)) = ended.pop_front()
                && by_id
                    .get(&id)
                    .is_some_and(|r| r.expires.is_some_and(|t| t <= now))
            {
                by_id.remove(&id);
            }
        }
        while by_id.len() > self.config.max_streams.max(1) {
            let victim = match ended.pop_front() {
                Some((_, id)) => id,
                None => match order.pop_front() {
                    Some(id) => id,
                    None => break,
                },
            };
            by_id.remove(&victim);
        }
        // Names of dropped logs: pruned once they outnumber the logs, so this stays
        // amortized O(1) per call and the queues stay bounded.
        let bound = 2 * by_id.len() + 64;
        if order.len() > bound {
            order.retain(|id| by_id.contains_key(id));
        }
        if ended.len() > bound {
            ended.retain(|(_, id)| by_id.contains_key(id));
        }
    }
}

#[async_trait]
impl StreamLog for MemoryStreamLog {
    async fn open(&self, meta: &StreamMeta) -> Result<(), StoreError> {
        let mut logs = self.logs();
        if !logs.by_id.contains_key(&meta.stream_id) {
            logs.by_id.insert(
                meta.stream_id.clone(),
                Ring {
                    meta: meta.clone(),
                    events: VecDeque::new(),
                    first_seq: 1,
                    last_seq: 0,
                    end: None,
                    expires: None,
                },
            );
            logs.order.push_back(meta.stream_id.clone());
        }
        self.sweep(&mut logs);
        Ok(())
    }

    async fn append(&self, stream_id: &StreamId, events: &[StreamEvent]) -> Result<(), StoreError> {
        let mut logs = self.logs();
        let Some(ring) = logs.by_id.get_mut(stream_id) else {
            // Evicted under pressure: a reader will be told the log is gone.
            return Ok(());
        };
        for event in events {
            let Some(seq) = event.seq() else { continue };
            if seq <= ring.last_seq {
                continue;
            }
            if ring.events.is_empty() && ring.last_seq == 0 {
                ring.first_seq = seq;
            }
            ring.last_seq = seq;
            ring.events.push_back((seq, event.clone()));
        }
        while ring.events.len() > self.config.max_events.max(1) {
            ring.events.pop_front();
        }
        ring.first_seq = ring
            .events
            .front()
            .map_or(ring.last_seq + 1, |(seq, _)| *seq);
        Ok(())
    }

    async fn close(&self, stream_id: &StreamId, end: &StreamEvent) -> Result<(), StoreError> {
        let mut logs = self.logs();
        let expires = Instant::now() + self.config.retention;
        if let Some(ring) = logs.by_id.get_mut(stream_id)
            && ring.end.is_none()
        {
            ring.end = Some(end.clone());
            ring.expires = Some(expires);
            logs.ended.push_back((expires, stream_id.clone()));
        }
        Ok(())
    }

    async fn read(
        &self,
        stream_id: &StreamId,
        after_seq: u64,
        limit: usize,
    ) -> Result<Option<LogRead>, StoreError> {
        let mut logs = self.logs();
        self.sweep(&mut logs);
        let Some(ring) = logs.by_id.get(stream_id) else {
            return Ok(None);
        };
        let events = ring
            .events
            .iter()
            .filter(|(seq, _)| *seq > after_seq)
            .take(limit)
            .map(|(_, e)| e.clone())
            .collect();
        Ok(Some(LogRead {
            meta: ring.meta.clone(),
            first_seq: ring.first_seq,
            last_seq: ring.last_seq,
            events,
            end: ring.end.clone(),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(id: &str) -> StreamMeta {
        StreamMeta {
            question: None,
            conversation_id: ConversationId::parse("c").unwrap(),
            stream_id: StreamId::parse(id).unwrap(),
            message_id: MessageId::parse("m").unwrap(),
        }
    }

    fn chunk(seq: u64) -> StreamEvent {
        StreamEvent::Chunk(crate::StreamChunk {
            conversation_id: ConversationId::parse("c").unwrap(),
            stream_id: StreamId::parse("s").unwrap(),
            seq,
            content: format!("<{seq}>"),
            done: false,
            tokens_used: seq,
            first_seq: None,
        })
    }

    fn end() -> StreamEvent {
        StreamEvent::Failed(crate::AnswerFailed {
            code: crate::ErrorCode::Internal,
            message: "end".into(),
            event: "send_message".into(),
            conversation_id: ConversationId::parse("c").unwrap(),
            stream_id: StreamId::parse("s").unwrap(),
        })
    }

    async fn kept(log: &MemoryStreamLog, ids: &[&str]) -> Vec<String> {
        let mut kept = Vec::new();
        for id in ids {
            if log
                .read(&StreamId::parse(*id).unwrap(), 0, 1)
                .await
                .unwrap()
                .is_some()
            {
                kept.push((*id).to_owned());
            }
        }
        kept
    }

    #[tokio::test]
    async fn over_max_streams_the_oldest_ended_go_first_then_the_oldest() {
        let log = MemoryStreamLog::with_config(MemoryLogConfig {
            max_streams: 3,
            ..Default::default()
        });
        for id in ["s1", "s2", "s3"] {
            log.open(&meta(id)).await.unwrap();
        }
        log.close(&meta("s2").stream_id, &end()).await.unwrap();
        log.open(&meta("s4")).await.unwrap();
        assert_eq!(
            kept(&log, &["s1", "s2", "s3", "s4"]).await,
            ["s1", "s3", "s4"]
        );
        log.open(&meta("s5")).await.unwrap();
        assert_eq!(
            kept(&log, &["s1", "s3", "s4", "s5"]).await,
            ["s3", "s4", "s5"]
        );
    }

    #[tokio::test]
    async fn an_ended_log_expires_after_its_retention_and_a_running_one_never() {
        let log = MemoryStreamLog::with_config(MemoryLogConfig {
            retention: Duration::ZERO,
            ..Default::default()
        });
        for id in ["s1", "s2"] {
            log.open(&meta(id)).await.unwrap();
            log.append(&meta(id).stream_id, &[chunk(1)]).await.unwrap();
        }
        log.close(&meta("s1").stream_id, &end()).await.unwrap();
        assert_eq!(kept(&log, &["s1", "s2"]).await, ["s2"]);
        // Many more come and go; the bookkeeping stays bounded by what is kept.
        for i in 0..1000 {
            let m = meta(&format!("t{i}"));
            log.open(&m).await.unwrap();
            log.close(&m.stream_id, &end()).await.unwrap();
        }
        log.read(&meta("s2").stream_id, 0, 1).await.unwrap();
        let logs = log.logs();
        assert_eq!(logs.by_id.len(), 1);
        assert!(logs.order.len() <= 2 * logs.by_id.len() + 64 + 1);
        assert!(logs.ended.len() <= 2 * logs.by_id.len() + 64 + 1);
    }

    #[tokio::test]
    async fn check_resume_refuses_positions_it_cannot_vouch_for() {
        let log = MemoryStreamLog::with_config(MemoryLogConfig {
            max_events: 3,
            ..Default::default()
        });
        let m = meta("s1");
        log.open(&m).await.unwrap();
        for seq in 1..=5 {
            log.append(&m.stream_id, &[chunk(seq)]).await.unwrap();
        }
        // Holds 3..=5.
        let ok = check_resume(log.read(&m.stream_id, 2, 10).await.unwrap(), 2).unwrap();
        assert_eq!(
            ok.events
                .iter()
                .map(|e| e.seq().unwrap())
                .collect::<Vec<_>>(),
            [3, 4, 5]
        );
        let trimmed = check_resume(log.read(&m.stream_id, 1, 10).await.unwrap(), 1);
        assert!(matches!(trimmed, Err(Error::ResumeUnavailable(_))));
        let beyond = check_resume(log.read(&m.stream_id, 9, 10).await.unwrap(), 9);
        assert!(matches!(beyond, Err(Error::ResumeUnavailable(_))));
        let missing = check_resume(
            log.read(&StreamId::parse("x").unwrap(), 0, 10)
                .await
                .unwrap(),
            0,
        );
        assert!(matches!(missing, Err(Error::ResumeUnavailable(_))));
    }
}
