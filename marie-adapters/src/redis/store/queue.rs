//! [`SendQueue`] in Redis: one list per conversation.

use std::sync::LazyLock;

use async_trait::async_trait;
use marie_core::{ConversationId, QueuedSend, SendQueue, StoreError, StreamId};
use redis::{AsyncCommands, Script};

use super::{RedisStore, from_json, to_json};

/// KEYS: queue. ARGV: stream id, send JSON, max. The send's position, or 0 when the queue is
/// full. Items are `"<stream id> <JSON>"`, so that a send is found by its stream without
/// decoding JSON in Lua.
static ENQUEUE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local items = redis.call('LRANGE', KEYS[1], 0, -1)
local prefix = ARGV[1] .. ' '
for i, item in ipairs(items) do
  if string.sub(item, 1, #prefix) == prefix then return i end
end
if #items >= tonumber(ARGV[3]) then return 0 end
return redis.call('RPUSH', KEYS[1], prefix .. ARGV[2])",
    )
});

/// KEYS: queue. ARGV: stream id. 1 when the send was taken out, 0 when it was not there.
static DEQUEUE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local prefix = ARGV[1] .. ' '
for _, item in ipairs(redis.call('LRANGE', KEYS[1], 0, -1)) do
  if string.sub(item, 1, #prefix) == prefix then
    return redis.call('LREM', KEYS[1], 1, item)
  end
end
return 0",
    )
});

impl RedisStore {
    fn queue_key(&self, conversation: &ConversationId) -> String {
        format!("{}:conv:{{{conversation}}}:queue", self.inner.config.prefix)
    }
}

#[async_trait]
impl SendQueue for RedisStore {
    async fn enqueue_send(
        &self,
        send: &QueuedSend,
        max: usize,
    ) -> Result<Option<usize>, StoreError> {
        let key = self.queue_key(&send.conversation_id);
        let json = to_json(send)?;
        let position: usize = self
            .run("enqueue_send", |mut c| async move {
                ENQUEUE
                    .key(key)
                    .arg(send.stream_id.as_str())
                    .arg(json)
                    .arg(max)
                    .invoke_async(&mut c)
                    .await
            })
            .await?;
        Ok((position > 0).then_some(position))
    }

    async fn queued_sends(
        &self,
        conversation: &ConversationId,
    ) -> Result<Vec<QueuedSend>, StoreError> {
        let key = self.queue_key(conversation);
        let items: Vec<String> = self
            .run(
                "queued_sends",
                |mut c| async move { c.lrange(key, 0, -1).await },
            )
            .await?;
        items
            .iter()
            .map(|item| {
                let (_, json) = item.split_once(' ').ok_or_else(|| {
                    StoreError::Corrupt("a queued send without its stream".into())
                })?;
                from_json(json)
            })
            .collect()
    }

    async fn remove_queued(
        &self,
        conversation: &ConversationId,
        stream_id: &StreamId,
    ) -> Result<bool, StoreError> {
        let key = self.queue_key(conversation);
        let removed: i64 = self
            .run("remove_queued", |mut c| async move {
                DEQUEUE
                    .key(key)
                    .arg(stream_id.as_str())
                    .invoke_async(&mut c)
                    .await
            })
            .await?;
        Ok(removed > 0)
    }
}
