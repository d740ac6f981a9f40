//! [`AnswerLeases`] in Redis: one expiring hash per conversation with a running answer.

use std::sync::LazyLock;
use std::time::Duration;

use async_trait::async_trait;
use marie_core::{AnswerLease, AnswerLeases, ConversationId, StoreError, StreamId};
use redis::Script;

use super::{RedisStore, millis};

/// KEYS: answer. ARGV: stream id, ttl ms.
static CLAIM: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], 'stream_id', ARGV[1], 'seq', 0)
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1",
    )
});

/// KEYS: answer. ARGV: stream id, seq, ttl ms.
static RENEW: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local held = redis.call('HGET', KEYS[1], 'stream_id')
if held and held ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'stream_id', ARGV[1], 'seq', ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return 1",
    )
});

/// KEYS: answer. ARGV: stream id.
static RELEASE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
if redis.call('HGET', KEYS[1], 'stream_id') == ARGV[1] then redis.call('DEL', KEYS[1]) end
return 1",
    )
});

impl RedisStore {
    fn answer_key(&self, conversation: &ConversationId) -> String {
        format!(
            "{}:conv:{{{conversation}}}:answer",
            self.inner.config.prefix
        )
    }
}

#[async_trait]
impl AnswerLeases for RedisStore {
    async fn claim_answer(
        &self,
        conversation: &ConversationId,
        stream_id: &StreamId,
        ttl: Duration,
    ) -> Result<bool, StoreError> {
        let key = self.answer_key(conversation);
        let claimed: i64 = self
            .run("claim_answer", |mut c| async move {
                CLAIM
                    .key(key)
                    .arg(stream_id.as_str())
                    .arg(millis(ttl).max(1))
                    .invoke_async(&mut c)
                    .await
            })
            .await?;
        Ok(claimed == 1)
    }

    async fn renew_answer(
        &self,
        conversation: &ConversationId,
        lease: &AnswerLease,
        ttl: Duration,
    ) -> Result<bool, StoreError> {
        let key = self.answer_key(conversation);
        let held: i64 = self
            .run("renew_answer", |mut c| async move {
                RENEW
                    .key(key)
                    .arg(lease.stream_id.as_str())
                    .arg(lease.seq)
                    .arg(millis(ttl).max(1))
                    .invoke_async(&mut c)
                    .await
            })
            .await?;
        Ok(held == 1)
    }

    async fn release_answer(
        &self,
        conversation: &ConversationId,
        stream_id: &StreamId,
    ) -> Result<(), StoreError> {
        let key = self.answer_key(conversation);
        self.run("release_answer", |mut c| async move {
            RELEASE
                .key(key)
                .arg(stream_id.as_str())
                .invoke_async::<i64>(&mut c)
                .await
        })
        .await
        .map(drop)
    }

    async fn active_answer(
        &self,
        conversation: &ConversationId,
    ) -> Result<Option<AnswerLease>, StoreError> {
        let key = self.answer_key(conversation);
        let (stream_id, seq): (Option<String>, Option<u64>) = self
            .run("active_answer", |mut c| async move {
                redis::cmd("HMGET")
                    .arg(key)
                    .arg("stream_id")
                    .arg("seq")
                    .query_async(&mut c)
                    .await
            })
            .await?;
        let Some(stream_id) = stream_id else {
            return Ok(None);
        };
        Ok(Some(AnswerLease {
            stream_id: StreamId::parse(stream_id)
                .map_err(|e| StoreError::Corrupt(e.to_string()))?,
            seq: seq.unwrap_or(0),
        }))
    }
}
