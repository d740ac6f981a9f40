//! The [`StreamLog`] contract, written once and run against every log: the in-memory ring
//! buffer and the Redis Streams log (against the Redis of `MARIE_TEST_REDIS_URL`, by default
//! 127.0.0.1:6379, each test under a key prefix of its own).

#![allow(clippy::unwrap_used, unreachable_pub)]

#[cfg(feature = "redis")]
mod support {
    pub mod proxy;
}

use std::sync::Arc;
#[cfg(feature = "redis")]
use std::time::Duration;

use marie_core::{
    ConversationId, EndStatus, Error, FinishReason, MessageId, MessagePart, StreamChunk, StreamEnd,
    StreamEvent, StreamId, StreamLog, StreamMeta, Usage, check_resume,
};

type Log = Arc<dyn StreamLog>;

fn meta(stream: &str) -> StreamMeta {
    StreamMeta {
        conversation_id: ConversationId::parse("conv-1").unwrap(),
        stream_id: StreamId::parse(stream).unwrap(),
        message_id: MessageId::parse("msg-1").unwrap(),
        question: None,
    }
}

fn chunk_of(m: &StreamMeta, seq: u64) -> StreamEvent {
    StreamEvent::Chunk(StreamChunk {
        conversation_id: m.conversation_id.clone(),
        stream_id: m.stream_id.clone(),
        seq,
        // Unicode and JSON-special characters must round-trip.
        content: format!("tök \"{seq}\" / é\n"),
        done: false,
        tokens_used: seq,
        first_seq: None,
    })
}

/// The terminal event of `m`'s stream.
fn end_of(m: &StreamMeta, text: &str) -> StreamEvent {
    StreamEvent::End(StreamEnd {
        conversation_id: m.conversation_id.clone(),
        stream_id: m.stream_id.clone(),
        message_id: m.message_id.clone(),
        full_content: text.into(),
        status: EndStatus::Complete,
        usage: Usage::estimated(1, 2),
        finish_reason: FinishReason::Stop,
        parts: vec![MessagePart::Text {
            content: text.into(),
        }],
    })
}

fn seqs(events: &[StreamEvent]) -> Vec<u64> {
    events.iter().filter_map(StreamEvent::seq).collect()
}

mod contract {
    use super::*;

    pub async fn chunks_are_read_back_after_a_position(log: Log) {
        let m = meta("s-read");
        log.open(&m).await.unwrap();
        let empty = log.read(&m.stream_id, 0, 100).await.unwrap().unwrap();
        assert_eq!(empty.meta, m);
        assert_eq!((empty.first_seq, empty.last_seq), (1, 0));
        assert!(empty.events.is_empty() && empty.end.is_none());
        for seq in 1..=10 {
            log.append(&m.stream_id, &[chunk_of(&m, seq)])
                .await
                .unwrap();
        }
        let all = log.read(&m.stream_id, 0, 100).await.unwrap().unwrap();
        assert_eq!(seqs(&all.events), (1..=10).collect::<Vec<_>>());
        assert_eq!(all.events[3], chunk_of(&m, 4), "content round-trips");
        assert_eq!((all.first_seq, all.last_seq), (1, 10));
        let page = log.read(&m.stream_id, 4, 3).await.unwrap().unwrap();
        assert_eq!(seqs(&page.events), [5, 6, 7]);
        let tail = log.read(&m.stream_id, 10, 3).await.unwrap().unwrap();
        assert!(tail.events.is_empty());
        assert!(check_resume(Some(tail), 10).is_ok());
    }

    pub async fn a_repeated_append_changes_nothing(log: Log) {
        let m = meta("s-dup");
        log.open(&m).await.unwrap();
        for seq in [1, 2, 2, 1, 3] {
            log.append(&m.stream_id, &[chunk_of(&m, seq)])
                .await
                .unwrap();
        }
        let read = log.read(&m.stream_id, 0, 100).await.unwrap().unwrap();
        assert_eq!(seqs(&read.events), [1, 2, 3]);
    }

    pub async fn a_burst_is_appended_in_order_skipping_what_is_there(log: Log) {
        let m = meta("s-burst");
        log.open(&m).await.unwrap();
        log.append(&m.stream_id, &[chunk_of(&m, 1)]).await.unwrap();
        let burst: Vec<_> = (1..=40).map(|seq| chunk_of(&m, seq)).collect();
        log.append(&m.stream_id, &burst).await.unwrap();
        log.append(&m.stream_id, &[]).await.unwrap();
        log.append(&m.stream_id, &[chunk_of(&m, 39), chunk_of(&m, 41)])
            .await
            .unwrap();
        let read = log.read(&m.stream_id, 0, 100).await.unwrap().unwrap();
        assert_eq!(seqs(&read.events), (1..=41).collect::<Vec<_>>());
        assert_eq!(read.events[20], chunk_of(&m, 21), "content round-trips");
        assert_eq!((read.first_seq, read.last_seq), (1, 41));
    }

    pub async fn the_end_is_kept_with_the_chunks(log: Log) {
        let m = meta("s-end");
        log.open(&m).await.unwrap();
        log.append(&m.stream_id, &[chunk_of(&m, 1)]).await.unwrap();
        let end = end_of(&m, "x");
        log.close(&m.stream_id, &end).await.unwrap();
        let read = log.read(&m.stream_id, 0, 100).await.unwrap().unwrap();
        assert_eq!(read.end, Some(end));
        assert_eq!(seqs(&read.events), [1]);
    }

    pub async fn an_unknown_stream_cannot_be_resumed(log: Log) {
        let unknown = StreamId::parse("never-was").unwrap();
        let read = log.read(&unknown, 0, 10).await.unwrap();
        assert!(read.is_none());
        assert!(matches!(
            check_resume(read, 0),
            Err(Error::ResumeUnavailable(_))
        ));
    }

    pub async fn positions_beyond_the_log_are_refused(log: Log) {
        // A client holding seq 7 of a log that (after a loss) only reached 3.
        let m = meta("s-beyond");
        log.open(&m).await.unwrap();
        for seq in 1..=3 {
            log.append(&m.stream_id, &[chunk_of(&m, seq)])
                .await
                .unwrap();
        }
        let read = log.read(&m.stream_id, 7, 10).await.unwrap();
        assert!(matches!(
            check_resume(read, 7),
            Err(Error::ResumeUnavailable(_))
        ));
    }
}

macro_rules! log_tests {
    ($kind:ident, $make:path) => {
        mod $kind {
            use super::*;
            log_tests!(@case $make;
                chunks_are_read_back_after_a_position,
                a_repeated_append_changes_nothing,
                a_burst_is_appended_in_order_skipping_what_is_there,
                the_end_is_kept_with_the_chunks,
                an_unknown_stream_cannot_be_resumed,
                positions_beyond_the_log_are_refused,
            );
        }
    };
    (@case $make:path; $($case:ident),+ $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                let log = $make(stringify!($case)).await;
                contract::$case(log).await;
            }
        )+
    };
}

#[cfg(feature = "memory")]
async fn memory_log(_test: &str) -> Log {
    Arc::new(marie_adapters::MemoryStreamLog::new())
}

#[cfg(feature = "memory")]
log_tests!(in_memory, memory_log);

#[cfg(feature = "redis")]
mod redis_log {
    use super::support::proxy::{redis_url, unique_prefix};
    use super::*;
    use marie_adapters::{RedisConfig, RedisStreamLog};

    pub fn config(test: &str) -> RedisConfig {
        RedisConfig::new(redis_url()).prefix(unique_prefix(test))
    }

    pub async fn make(test: &str) -> Log {
        // Short retention: whatever a test leaves behind expires on its own.
        Arc::new(
            RedisStreamLog::connect(config(test))
                .await
                .expect("Redis answers on MARIE_TEST_REDIS_URL (default 127.0.0.1:6379)")
                .retention(Duration::from_secs(60))
                .running_ttl(Duration::from_secs(60)),
        )
    }

    async fn raw() -> redis::aio::MultiplexedConnection {
        redis::Client::open(redis_url())
            .unwrap()
            .get_multiplexed_async_connection()
            .await
            .unwrap()
    }

    /// The window: a trimmed log refuses positions before what it keeps; an ended log
    /// expires after its retention.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn trimming_and_retention_bound_the_window() {
        let config = config("window");
        let prefix = config.prefix.clone();
        let log = RedisStreamLog::connect(config)
            .await
            .unwrap()
            .max_events(10)
            .retention(Duration::from_millis(300));
        let m = meta("s-window");
        log.open(&m).await.unwrap();
        for seq in 1..=500 {
            log.append(&m.stream_id, &[chunk_of(&m, seq)])
                .await
                .unwrap();
        }
        let read = log.read(&m.stream_id, 0, 1000).await.unwrap().unwrap();
        assert!(read.first_seq > 1, "trimmed: first_seq {}", read.first_seq);
        assert!(matches!(
            check_resume(Some(read.clone()), 0),
            Err(Error::ResumeUnavailable(_))
        ));
        let from = read.first_seq - 1;
        let ok = check_resume(log.read(&m.stream_id, from, 1000).await.unwrap(), from).unwrap();
        assert_eq!(ok.events.last().unwrap().seq(), Some(500));

        let end = end_of(&m, "");
        log.close(&m.stream_id, &end).await.unwrap();
        let mut conn = raw().await;
        let ttl: i64 = redis::cmd("PTTL")
            .arg(format!("{prefix}:log:{{{}}}:meta", m.stream_id))
            .query_async(&mut conn)
            .await
            .unwrap();
        assert!((1..=300).contains(&ttl), "retention set on close: {ttl}");
    }

    /// A log lost in the middle of an answer is recreated from the next chunk on, and
    /// positions from before the loss are refused instead of being continued wrongly.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_lost_log_is_never_continued_from_old_positions() {
        let config = config("lost");
        let prefix = config.prefix.clone();
        let log = RedisStreamLog::connect(config).await.unwrap();
        let m = meta("s-lost");
        log.open(&m).await.unwrap();
        for seq in 1..=5 {
            log.append(&m.stream_id, &[chunk_of(&m, seq)])
                .await
                .unwrap();
        }
        let mut conn = raw().await;
        let base = format!("{prefix}:log:{{{}}}", m.stream_id);
        redis::cmd("DEL")
            .arg(&base)
            .arg(format!("{base}:meta"))
            .query_async::<()>(&mut conn)
            .await
            .unwrap();
        for seq in 6..=8 {
            log.append(&m.stream_id, &[chunk_of(&m, seq)])
                .await
                .unwrap();
        }
        let read = log.read(&m.stream_id, 3, 100).await.unwrap().unwrap();
        assert_eq!(read.first_seq, 6);
        assert!(matches!(
            check_resume(Some(read), 3),
            Err(Error::ResumeUnavailable(_))
        ));
        let ok = check_resume(log.read(&m.stream_id, 5, 100).await.unwrap(), 5).unwrap();
        assert_eq!(seqs(&ok.events), [6, 7, 8]);
        redis::cmd("DEL")
            .arg(&base)
            .arg(format!("{base}:meta"))
            .query_async::<()>(&mut conn)
            .await
            .unwrap();
    }
}

#[cfg(feature = "redis")]
log_tests!(in_redis, redis_log::make);
