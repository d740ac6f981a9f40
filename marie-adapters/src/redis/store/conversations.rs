//! [`Conversations`] in Redis: a record and a sorted set of members per conversation.

use std::sync::LazyLock;

use async_trait::async_trait;
use marie_core::{ConversationId, ConversationInfo, Conversations, StoreError, UserId};
use redis::{AsyncCommands, Script};

use super::{RedisStore, TOUCH, from_json, to_json};

/// KEYS: info, members, ids, msgs. ARGV: info JSON, creator, ttl ms (0: none).
static CREATE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        "{TOUCH}
if not redis.call('SET', KEYS[1], ARGV[1], 'NX') then return 0 end
redis.call('ZADD', KEYS[2], 0, ARGV[2])
touch(ARGV[3])
return 1"
    ))
});

/// KEYS: info, members, ids, msgs. ARGV: user, ttl ms. -1: no such conversation.
static GRANT: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        "{TOUCH}
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
if not redis.call('ZSCORE', KEYS[2], ARGV[1]) then
  redis.call('ZADD', KEYS[2], redis.call('ZCARD', KEYS[2]), ARGV[1])
end
touch(ARGV[2])
return 1"
    ))
});

#[async_trait]
impl Conversations for RedisStore {
    async fn create_conversation(&self, info: ConversationInfo) -> Result<bool, StoreError> {
        let keys = self.conv_keys(&info.conversation_id);
        let json = to_json(&info)?;
        let ttl = self.ttl_ms();
        let created: i64 = self
            .run("create_conversation", |mut c| async move {
                let mut call = CREATE.prepare_invoke();
                for k in keys.all() {
                    call.key(k);
                }
                call.arg(json)
                    .arg(info.created_by.as_str())
                    .arg(ttl)
                    .invoke_async(&mut c)
                    .await
            })
            .await?;
        Ok(created == 1)
    }

    async fn conversation(
        &self,
        conversation: &ConversationId,
    ) -> Result<Option<ConversationInfo>, StoreError> {
        let key = self.conv_keys(conversation).info;
        let raw: Option<String> = self
            .run("conversation", |mut c| async move { c.get(key).await })
            .await?;
        raw.as_deref().map(from_json).transpose()
    }

    async fn grant_access(
        &self,
        conversation: &ConversationId,
        user: &UserId,
    ) -> Result<(), StoreError> {
        let keys = self.conv_keys(conversation);
        let ttl = self.ttl_ms();
        let done: i64 = self
            .run("grant_access", |mut c| async move {
                let mut call = GRANT.prepare_invoke();
                for k in keys.all() {
                    call.key(k);
                }
                call.arg(user.as_str()).arg(ttl).invoke_async(&mut c).await
            })
            .await?;
        if done < 0 {
            return Err(StoreError::no_such_conversation());
        }
        Ok(())
    }

    async fn has_access(
        &self,
        conversation: &ConversationId,
        user: &UserId,
    ) -> Result<bool, StoreError> {
        let key = self.conv_keys(conversation).members;
        let score: Option<f64> = self
            .run("has_access", |mut c| async move {
                c.zscore(key, user.as_str()).await
            })
            .await?;
        Ok(score.is_some())
    }

    async fn members(&self, conversation: &ConversationId) -> Result<Vec<UserId>, StoreError> {
        let key = self.conv_keys(conversation).members;
        let raw: Vec<String> = self
            .run("members", |mut c| async move { c.zrange(key, 0, -1).await })
            .await?;
        raw.into_iter()
            .map(|u| UserId::parse(u).map_err(|e| StoreError::Corrupt(e.to_string())))
            .collect()
    }
}
