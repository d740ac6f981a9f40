//! [`Conversations`] in Redis: a record (JSON), a sorted set of members and a hash of their
//! read marks per conversation, a marker for each deleted one (its id is never used again),
//! and per user two sorted sets of conversation ids scored by their last activity:
//! `user:{id}:convs` and `user:{id}:archived`.
//!
//! A mark is a storage position (the conversation's `order`, which the history scripts keep:
//! message ids are not in the order messages are stored, as an answer is stored when it
//! ends). A list item's `unread` is a `ZCOUNT` of `order` after the user's mark (`ZCARD` of
//! `ids` without one), at most [`ListedConversation::UNREAD_MAX`]: one pipelined O(log n)
//! command per conversation of the page, however long the conversations.
//!
//! The scripts that change a conversation's activity also move it in every member's sets,
//! in the same step. They name those sets from the members they read, so the store needs one
//! Redis (not a Redis Cluster, where a script must declare every key it touches), as the
//! rest of `RedisStore` does.

use std::sync::LazyLock;

use async_trait::async_trait;
use marie_core::{
    AnswerPolicy, ConversationChange, ConversationId, ConversationInfo, ConversationPage,
    Conversations, LastMessage, ListCursor, ListQuery, ListedConversation, MessageId, StoreError,
    UserId,
};
use redis::{AsyncCommands, Script};

use super::{RedisStore, TOUCH, from_json, message_id, to_json};

/// The keys of a user's lists, from the store's prefix (`ARGV[1]` of the scripts below),
/// and their TTL (`ARGV[3]`, ms, 0 for none): a list lives as long as the most recently
/// active of its conversations, whose TTL it gets at each change (an entry whose
/// conversation expired before is dropped when the list is read).
const LISTS: &str = r"
local function lists(user)
  local base = ARGV[1] .. ':user:{' .. user .. '}:'
  return base .. 'convs', base .. 'archived'
end
local function listed(key, at, id)
  redis.call('ZADD', key, at, id)
  if tonumber(ARGV[3]) > 0 then redis.call('PEXPIRE', key, ARGV[3]) end
end
-- Moves the conversation `id` to score `to` in every list of `members` that holds it.
local function moved(members, id, to)
  for _, user in ipairs(members) do
    local active, archived = lists(user)
    for _, key in ipairs({active, archived}) do
      if redis.call('ZSCORE', key, id) then listed(key, to, id) end
    end
  end
end
";

/// KEYS: the conversation's (see [`ConvKeys`](super::ConvKeys)), then gone. ARGV: prefix,
/// id, ttl ms (0: none), info JSON, creator, updated_at.
static CREATE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        "{TOUCH}{LISTS}
if redis.call('EXISTS', KEYS[#KEYS]) == 1 then return 0 end
if not redis.call('SET', KEYS[1], ARGV[4], 'NX') then return 0 end
redis.call('ZADD', KEYS[2], 0, ARGV[5])
local active = lists(ARGV[5])
listed(active, ARGV[6], ARGV[2])
touch(ARGV[3])
return 1"
    ))
});

/// KEYS: the conversation's (see [`ConvKeys`](super::ConvKeys)). ARGV: prefix, id, ttl ms,
/// user.
/// -1: no such conversation. A new member comes after the last one (positions are never
/// reused, so that removals keep the order).
static GRANT: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        "{TOUCH}{LISTS}
local raw = redis.call('GET', KEYS[1])
if not raw then return -1 end
if not redis.call('ZSCORE', KEYS[2], ARGV[4]) then
  local last = redis.call('ZRANGE', KEYS[2], -1, -1, 'WITHSCORES')
  local next = 0
  if last[2] then next = tonumber(last[2]) + 1 end
  redis.call('ZADD', KEYS[2], next, ARGV[4])
  local active = lists(ARGV[4])
  listed(active, cjson.decode(raw).updated_at or 0, ARGV[2])
end
touch(ARGV[3])
return 1"
    ))
});

/// KEYS: info, members, reads, order. ARGV: prefix, id, ttl, role, preview, created_at. A message's
/// activity: `last_message` set, `updated_at` moved forward (never back), the members' lists
/// with it.
static ACTIVE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        "{LISTS}
local raw = redis.call('GET', KEYS[1])
if not raw then return 0 end
local info = cjson.decode(raw)
local from = tonumber(info.updated_at) or 0
local to = math.max(from, tonumber(ARGV[6]))
info.updated_at = to
info.last_message = {{role = ARGV[4], preview = ARGV[5], created_at = tonumber(ARGV[6])}}
redis.call('SET', KEYS[1], cjson.encode(info), 'KEEPTTL')
if to ~= from then moved(redis.call('ZRANGE', KEYS[2], 0, -1), ARGV[2], to) end
return 1"
    ))
});

/// KEYS: info, members, reads, order. ARGV: prefix, id, ttl, at, then for title, model, system
/// prompt and answer policy each a flag ('1': given) and a value ('' clears the model and the
/// prompt; `always`, the default, is left out of the record as serde leaves it out). The
/// record after the change, or nil.
static UPDATE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        "{LISTS}
local raw = redis.call('GET', KEYS[1])
if not raw then return false end
local info = cjson.decode(raw)
local from = tonumber(info.updated_at) or 0
if ARGV[5] == '1' then info.title = ARGV[6] end
if ARGV[7] == '1' then
  if ARGV[8] == '' then info.model = nil else info.model = ARGV[8] end
end
if ARGV[9] == '1' then
  if ARGV[10] == '' then info.system_prompt = nil else info.system_prompt = ARGV[10] end
end
if ARGV[11] == '1' then
  if ARGV[12] == 'always' then info.answer_policy = nil else info.answer_policy = ARGV[12] end
end
local to = math.max(from, tonumber(ARGV[4]))
info.updated_at = to
local out = cjson.encode(info)
redis.call('SET', KEYS[1], out, 'KEEPTTL')
if to ~= from then moved(redis.call('ZRANGE', KEYS[2], 0, -1), ARGV[2], to) end
return out"
    ))
});

/// KEYS: info, members, reads, order. ARGV: prefix, id, ttl, user, '1' to archive or '0' to bring
/// back.
/// 0 when the user is no member.
static ARCHIVE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        "{LISTS}
local raw = redis.call('GET', KEYS[1])
if not raw or not redis.call('ZSCORE', KEYS[2], ARGV[4]) then return 0 end
local at = cjson.decode(raw).updated_at or 0
local active, archived = lists(ARGV[4])
local from, to = active, archived
if ARGV[5] == '0' then from, to = archived, active end
redis.call('ZREM', from, ARGV[2])
listed(to, at, ARGV[2])
return 1"
    ))
});

/// KEYS: info, members, reads, order. ARGV: prefix, id, ttl, user. 0 when the user is no
/// member, or the creator. Their read mark goes with them.
static REMOVE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        "{LISTS}
local raw = redis.call('GET', KEYS[1])
if not raw or cjson.decode(raw).created_by == ARGV[4] then return 0 end
if redis.call('ZREM', KEYS[2], ARGV[4]) == 0 then return 0 end
local active, archived = lists(ARGV[4])
redis.call('ZREM', active, ARGV[2])
redis.call('ZREM', archived, ARGV[2])
redis.call('HDEL', KEYS[3], ARGV[4])
return 1"
    ))
});

/// KEYS: info, members, reads, seq, gone. ARGV: prefix, id, ttl. 0 when there is no such
/// conversation. The read marks go with it, and so does the counter of storage positions
/// they are positions of (the history's keys go with the history).
static DELETE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        "{LISTS}
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
for _, user in ipairs(redis.call('ZRANGE', KEYS[2], 0, -1)) do
  local active, archived = lists(user)
  redis.call('ZREM', active, ARGV[2])
  redis.call('ZREM', archived, ARGV[2])
end
redis.call('DEL', KEYS[1], KEYS[2], KEYS[3], KEYS[4])
redis.call('SET', KEYS[5], '1')
return 1"
    ))
});

/// KEYS: info, members, reads, order. ARGV: prefix, id, ttl, user, message id. Moves the
/// user's mark forward to the message's storage position (its score in `order`), never
/// back. Returns the id of the mark held after: the message's, or the one kept; nil when
/// there is no such conversation or the user is no member (or, without a mark, the message
/// is not held). A new hash of marks gets the record's TTL (the scripts that refresh the
/// conversation's refresh it after that).
static MARK: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
if redis.call('EXISTS', KEYS[1]) == 0 or not redis.call('ZSCORE', KEYS[2], ARGV[4]) then
  return false
end
local mark, kept = nil, false
local held = redis.call('HGET', KEYS[3], ARGV[4])
if held then
  local at, id = string.match(held, '^(%d+) (.+)$')
  mark, kept = tonumber(at), id
end
local at = redis.call('ZSCORE', KEYS[4], ARGV[5])
if at then
  at = tonumber(at)
  if not mark or at >= mark then
    redis.call('HSET', KEYS[3], ARGV[4], string.format('%d', at) .. ' ' .. ARGV[5])
    local ttl = redis.call('PTTL', KEYS[1])
    if ttl > 0 then redis.call('PEXPIRE', KEYS[3], ttl) end
    return ARGV[5]
  end
end
return kept",
    )
});

/// Ids read from a user's list per round trip.
const LIST_BATCH: usize = 64;

impl RedisStore {
    /// The marker of a deleted conversation.
    fn gone_key(&self, conversation: &ConversationId) -> String {
        format!("{}:conv:{{{conversation}}}:gone", self.config().prefix)
    }

    /// A user's list of conversations, archived or not.
    fn list_key(&self, user: &UserId, archived: bool) -> String {
        let which = if archived { "archived" } else { "convs" };
        format!("{}:user:{{{user}}}:{which}", self.config().prefix)
    }

    /// Runs one of the scripts above that take a conversation's `info`, `members`, `reads`
    /// and `order`.
    async fn on_conversation<T: redis::FromRedisValue>(
        &self,
        op: &'static str,
        script: &'static Script,
        conversation: &ConversationId,
        args: Vec<String>,
    ) -> Result<T, StoreError> {
        let keys = self.conv_keys(conversation);
        let prefix = self.config().prefix.clone();
        let id = conversation.to_string();
        let ttl = self.ttl_ms();
        self.run(op, |mut c| async move {
            let mut call = script.prepare_invoke();
            call.key(&keys.info)
                .key(&keys.members)
                .key(&keys.reads)
                .key(&keys.order)
                .arg(prefix)
                .arg(id)
                .arg(ttl);
            for arg in args {
                call.arg(arg);
            }
            call.invoke_async(&mut c).await
        })
        .await
    }
}

#[async_trait]
impl Conversations for RedisStore {
    async fn create_conversation(&self, info: ConversationInfo) -> Result<bool, StoreError> {
        let keys = self.conv_keys(&info.conversation_id);
        let gone = self.gone_key(&info.conversation_id);
        let json = to_json(&info)?;
        let ttl = self.ttl_ms();
        let prefix = self.config().prefix.clone();
        let created: i64 = self
            .run("create_conversation", |mut c| async move {
                let mut call = CREATE.prepare_invoke();
                for k in keys.all() {
                    call.key(k);
                }
                call.key(gone)
                    .arg(prefix)
                    .arg(info.conversation_id.as_str())
                    .arg(ttl)
                    .arg(json)
                    .arg(info.created_by.as_str())
                    .arg(info.updated_at)
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
        let prefix = self.config().prefix.clone();
        let done: i64 = self
            .run("grant_access", |mut c| async move {
                let mut call = GRANT.prepare_invoke();
                for k in keys.all() {
                    call.key(k);
                }
                call.arg(prefix)
                    .arg(conversation.as_str())
                    .arg(ttl)
                    .arg(user.as_str())
                    .invoke_async(&mut c)
                    .await
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

    async fn touch(
        &self,
        conversation: &ConversationId,
        last_message: &LastMessage,
    ) -> Result<(), StoreError> {
        let args = vec![
            last_message.role.as_str().to_owned(),
            last_message.preview.clone(),
            last_message.created_at.to_string(),
        ];
        self.on_conversation::<i64>("touch", &ACTIVE, conversation, args)
            .await
            .map(drop)
    }

    async fn update_conversation(
        &self,
        conversation: &ConversationId,
        change: &ConversationChange,
        at: u64,
    ) -> Result<Option<ConversationInfo>, StoreError> {
        let mut args = vec![at.to_string()];
        for field in [&change.title, &change.model, &change.system_prompt] {
            args.push(if field.is_some() { "1" } else { "0" }.to_owned());
            args.push(field.clone().unwrap_or_default());
        }
        let policy = change.answer_policy.map(AnswerPolicy::as_str);
        args.push(if policy.is_some() { "1" } else { "0" }.to_owned());
        args.push(policy.unwrap_or_default().to_owned());
        let raw: Option<String> = self
            .on_conversation("update_conversation", &UPDATE, conversation, args)
            .await?;
        raw.as_deref().map(from_json).transpose()
    }

    /// Reads the user's sorted set from the cursor down, a batch at a time, and the records
    /// and the user's read marks of what it finds in one pipeline per batch; a record gone
    /// (its conversation expired) leaves the list. Then counts the unread messages of the
    /// page in one more pipeline.
    async fn list_conversations(
        &self,
        user: &UserId,
        query: &ListQuery,
    ) -> Result<ConversationPage, StoreError> {
        let key = self.list_key(user, query.archived);
        let wanted = query.query.as_ref().map(|q| q.to_lowercase());
        let max = query
            .before
            .as_ref()
            .map_or_else(|| "+inf".to_owned(), |c| c.updated_at.to_string());
        // Each record with the user's read mark in it.
        let mut found: Vec<(ConversationInfo, Option<String>)> = Vec::new();
        let mut offset = 0;
        'batches: loop {
            // Without a search every id read is on the page, but for the cursor's own entry
            // (the range is inclusive) and ties with it: read no more records than that; a
            // search may skip many, so it reads more.
            let batch = if wanted.is_none() {
                query.limit + 1 + usize::from(query.before.is_some())
            } else {
                LIST_BATCH.max(query.limit + 1)
            };
            let (key, max) = (key.clone(), max.clone());
            let ids: Vec<String> = self
                .run("list_conversations", |mut c| async move {
                    redis::cmd("ZREVRANGEBYSCORE")
                        .arg(key)
                        .arg(max)
                        .arg("-inf")
                        .arg("LIMIT")
                        .arg(offset)
                        .arg(batch)
                        .query_async(&mut c)
                        .await
                })
                .await?;
            offset += ids.len();
            let ids: Vec<ConversationId> = ids
                .into_iter()
                .filter_map(|id| ConversationId::parse(id).ok())
                .collect();
            let records: Vec<Option<String>> = if ids.is_empty() {
                Vec::new()
            } else {
                let mut pipe = redis::pipe();
                for id in &ids {
                    let keys = self.conv_keys(id);
                    pipe.get(keys.info).hget(keys.reads, user.as_str());
                }
                self.run("list_conversations", |mut c| async move {
                    pipe.query_async(&mut c).await
                })
                .await?
            };
            for (id, pair) in ids.iter().zip(records.chunks_exact(2)) {
                let [record, mark] = pair else {
                    continue;
                };
                let Some(record) = record else {
                    let (key, id) = (self.list_key(user, query.archived), id.to_string());
                    self.run("list_conversations", |mut c| async move {
                        c.zrem::<_, _, ()>(key, id).await
                    })
                    .await?;
                    continue;
                };
                let info: ConversationInfo = from_json(record)?;
                if query.before.as_ref().is_some_and(|c| !c.precedes(&info)) {
                    continue;
                }
                let matches = match &wanted {
                    Some(q) => info
                        .title
                        .as_ref()
                        .is_some_and(|t| t.to_lowercase().contains(q.as_str())),
                    None => true,
                };
                if matches {
                    found.push((info, mark.clone()));
                    if found.len() > query.limit {
                        break 'batches;
                    }
                }
            }
            if ids.len() < batch {
                break;
            }
        }
        let more = found.len() > query.limit;
        found.truncate(query.limit);
        // The messages stored after each mark: O(log n) per conversation.
        let unread: Vec<u64> = if found.is_empty() {
            Vec::new()
        } else {
            let mut pipe = redis::pipe();
            for (info, mark) in &found {
                let keys = self.conv_keys(&info.conversation_id);
                match mark {
                    Some(mark) => {
                        let (at, _) = mark.split_once(' ').ok_or_else(|| {
                            StoreError::Corrupt(format!("read mark {mark:?} is no position"))
                        })?;
                        pipe.zcount(keys.order, format!("({at}"), "+inf");
                    }
                    // All of them (`ids`: history from before `order` counts too).
                    None => {
                        pipe.zcard(keys.ids);
                    }
                }
            }
            self.run("list_conversations", |mut c| async move {
                pipe.query_async(&mut c).await
            })
            .await?
        };
        Ok(ConversationPage {
            next_before: more
                .then(|| found.last().map(|(info, _)| ListCursor::after(info)))
                .flatten(),
            conversations: found
                .into_iter()
                .zip(unread)
                .map(|((info, _), unread)| ListedConversation {
                    info,
                    archived: query.archived,
                    unread: unread.min(ListedConversation::UNREAD_MAX),
                })
                .collect(),
        })
    }

    async fn set_archived(
        &self,
        conversation: &ConversationId,
        user: &UserId,
        archived: bool,
    ) -> Result<bool, StoreError> {
        let args = vec![
            user.to_string(),
            if archived { "1" } else { "0" }.to_owned(),
        ];
        let done: i64 = self
            .on_conversation("set_archived", &ARCHIVE, conversation, args)
            .await?;
        Ok(done == 1)
    }

    async fn is_archived(
        &self,
        conversation: &ConversationId,
        user: &UserId,
    ) -> Result<bool, StoreError> {
        let key = self.list_key(user, true);
        let score: Option<f64> = self
            .run("is_archived", |mut c| async move {
                c.zscore(key, conversation.as_str()).await
            })
            .await?;
        Ok(score.is_some())
    }

    async fn remove_member(
        &self,
        conversation: &ConversationId,
        user: &UserId,
    ) -> Result<bool, StoreError> {
        let done: i64 = self
            .on_conversation(
                "remove_member",
                &REMOVE,
                conversation,
                vec![user.to_string()],
            )
            .await?;
        Ok(done == 1)
    }

    async fn delete_conversation(&self, conversation: &ConversationId) -> Result<bool, StoreError> {
        let keys = self.conv_keys(conversation);
        let gone = self.gone_key(conversation);
        let prefix = self.config().prefix.clone();
        let done: i64 = self
            .run("delete_conversation", |mut c| async move {
                DELETE
                    .key(&keys.info)
                    .key(&keys.members)
                    .key(&keys.reads)
                    .key(&keys.seq)
                    .key(gone)
                    .arg(prefix)
                    .arg(conversation.as_str())
                    .arg(0)
                    .invoke_async(&mut c)
                    .await
            })
            .await?;
        Ok(done == 1)
    }

    async fn mark_read(
        &self,
        conversation: &ConversationId,
        user: &UserId,
        message: &MessageId,
    ) -> Result<Option<MessageId>, StoreError> {
        let args = vec![user.to_string(), message.to_string()];
        let mark: Option<String> = self
            .on_conversation("mark_read", &MARK, conversation, args)
            .await?;
        mark.as_deref().map(message_id).transpose()
    }
}
