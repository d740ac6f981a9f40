//! [`RedisStore`]: every [`RoomStore`] record in Redis, shared by every node.

use std::future::Future;
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use async_trait::async_trait;
use marie_core::{
    ActiveStream, ApprovalDecision, ApprovalId, ApprovalOutcome, ApprovalRecord, ChatMessage,
    ConversationId, ConversationInfo, HistoryQuery, MessageId, QueuedSend, RoomStore, SessionId,
    SessionRecord, StoreError, StreamId, UsageWindow, UserId, now_millis,
};
use redis::aio::ConnectionManager;
use redis::{AsyncCommands, Script};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::{RedisConfig, unavailable};

/// Refreshes the TTL of every key passed (a no-op without one): shared by the write scripts.
const TOUCH: &str = r"
local function touch(ttl)
  if tonumber(ttl) > 0 then
    for i = 1, #KEYS do redis.call('PEXPIRE', KEYS[i], ttl) end
  end
end
";

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

/// The history tree, shared by the scripts that read or write it. KEYS: info, members, ids,
/// msgs, tree, kids, path (see [`ConvKeys`]).
///
/// - `tree`: message id → `"<depth> <parent id>"` (the parent empty for a first message);
/// - `kids`: parent id (`""` for the first messages) → its children's ids, comma-separated,
///   in the order they came;
/// - `path`: the active branch, oldest first; `path[i]` is at depth `depth(path[0]) + i`, so
///   that a page of it is one `LRANGE`.
const TREE: &str = r"
local function node(id)
  local n = redis.call('HGET', KEYS[5], id)
  if not n then return nil end
  local d, p = string.match(n, '^(%d+) (.*)$')
  return tonumber(d), p
end
-- Where `id` is on the active branch, or nil.
local function index(id)
  local d = node(id)
  if not d then return nil end
  local first = redis.call('LINDEX', KEYS[7], 0)
  if not first then return nil end
  local base = node(first)
  if not base or d < base then return nil end
  if redis.call('LINDEX', KEYS[7], d - base) == id then return d - base end
  return nil
end
-- Makes the active branch end at `id`: kept up to id's nearest ancestor on it, then the
-- rest of id's ancestors and id (usually the parent is the last message: one push).
local function activate(id)
  local chain = {}
  local cur = id
  local keep = nil
  while cur and cur ~= '' do
    local i = index(cur)
    if i then keep = i break end
    chain[#chain + 1] = cur
    local _, p = node(cur)
    cur = p
  end
  if keep then redis.call('LTRIM', KEYS[7], 0, keep) else redis.call('DEL', KEYS[7]) end
  for i = #chain, 1, -1 do redis.call('RPUSH', KEYS[7], chain[i]) end
end
-- History written before branches is one line: it becomes a tree on first use.
local function upgrade()
  if redis.call('EXISTS', KEYS[7]) == 1 or redis.call('HLEN', KEYS[5]) > 0 then return end
  local parent = ''
  for i, id in ipairs(redis.call('ZRANGE', KEYS[3], 0, -1)) do
    redis.call('HSET', KEYS[5], id, (i - 1) .. ' ' .. parent)
    redis.call('HSET', KEYS[6], parent, id)
    redis.call('RPUSH', KEYS[7], id)
    parent = id
  end
end
-- Drops the oldest messages beyond `limit` (0: none) from every key.
local function trim(limit)
  limit = tonumber(limit)
  if limit <= 0 then return end
  local excess = redis.call('ZCARD', KEYS[3]) - limit
  if excess <= 0 then return end
  local old = redis.call('ZRANGE', KEYS[3], 0, excess - 1)
  redis.call('ZREMRANGEBYRANK', KEYS[3], 0, excess - 1)
  for _, id in ipairs(old) do
    local _, p = node(id)
    local kids = p and redis.call('HGET', KEYS[6], p)
    if kids then
      local rest = {}
      for k in string.gmatch(kids, '[^,]+') do
        if k ~= id then rest[#rest + 1] = k end
      end
      if #rest > 0 then
        redis.call('HSET', KEYS[6], p, table.concat(rest, ','))
      else
        redis.call('HDEL', KEYS[6], p)
      end
    end
    if redis.call('LINDEX', KEYS[7], 0) == id then redis.call('LPOP', KEYS[7]) end
    redis.call('HDEL', KEYS[4], id)
    redis.call('HDEL', KEYS[5], id)
  end
end
";

/// ARGV: message id, message JSON, parent id ('' for none), limit (0: none), ttl ms.
/// -1: no such conversation.
static APPEND: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        "{TOUCH}{TREE}
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
upgrade()
local id, parent = ARGV[1], ARGV[3]
if redis.call('HEXISTS', KEYS[4], id) == 0 then
  local depth = 0
  if parent ~= '' then
    local d = node(parent)
    if d then depth = d + 1 end
  end
  redis.call('ZADD', KEYS[3], 0, id)
  redis.call('HSET', KEYS[5], id, depth .. ' ' .. parent)
  local kids = redis.call('HGET', KEYS[6], parent)
  redis.call('HSET', KEYS[6], parent, kids and (kids .. ',' .. id) or id)
  redis.call('HSET', KEYS[4], id, ARGV[2])
  activate(id)
  trim(ARGV[4])
else
  redis.call('HSET', KEYS[4], id, ARGV[2])
end
touch(ARGV[5])
return 1"
    ))
});

/// ARGV: before ('' for none), limit. The active branch's newest `limit` messages before
/// `before`, oldest first, as triples: message JSON, parent id, siblings ('' when none).
static HISTORY: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        "{TREE}
upgrade()
local n = redis.call('LLEN', KEYS[7])
local stop = n
if ARGV[1] ~= '' then
  stop = index(ARGV[1])
  if not stop then
    -- Not on the active branch: cut by id order (ids are time-ordered).
    local lo, hi = 0, n
    while lo < hi do
      local mid = math.floor((lo + hi) / 2)
      if redis.call('LINDEX', KEYS[7], mid) < ARGV[1] then lo = mid + 1 else hi = mid end
    end
    stop = lo
  end
end
local start = math.max(0, stop - tonumber(ARGV[2]))
local out = {{}}
if stop <= start then return out end
for _, id in ipairs(redis.call('LRANGE', KEYS[7], start, stop - 1)) do
  local m = redis.call('HGET', KEYS[4], id)
  if m then
    local _, p = node(id)
    p = p or ''
    local kids = redis.call('HGET', KEYS[6], p) or ''
    if not string.find(kids, ',', 1, true) then kids = '' end
    out[#out + 1] = m
    out[#out + 1] = p
    out[#out + 1] = kids
  end
end
return out"
    ))
});

/// ARGV: message id. The message JSON and its parent id, or nothing.
static MESSAGE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        "{TREE}
upgrade()
local m = redis.call('HGET', KEYS[4], ARGV[1])
if not m then return {{}} end
local _, p = node(ARGV[1])
return {{m, p or ''}}"
    ))
});

/// The active branch's last message id, or nil.
static LEAF: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        "{TREE}
upgrade()
return redis.call('LINDEX', KEYS[7], -1)"
    ))
});

/// ARGV: message id, ttl ms. Makes the branch through the message, down to its newest leaf,
/// the active one; the leaf's id, or nil when there is no such message.
static SWITCH: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        "{TOUCH}{TREE}
upgrade()
if not node(ARGV[1]) then return false end
local leaf = ARGV[1]
while true do
  local kids = redis.call('HGET', KEYS[6], leaf)
  if not kids then break end
  leaf = string.match(kids, '([^,]+)$')
end
activate(leaf)
touch(ARGV[2])
return leaf"
    ))
});

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

/// A [`RoomStore`] in Redis: conversations, access lists, history, sessions and the leases of
/// running answers, shared by every node that uses the same Redis and prefix.
///
/// Cheap to clone; clones share one multiplexed connection, which reconnects by itself. See
/// the [module docs](crate::redis) for the key layout.
///
/// ```no_run
/// # async fn run() -> Result<(), marie_core::StoreError> {
/// use marie_adapters::{RedisConfig, RedisStore};
///
/// let store = RedisStore::connect(RedisConfig::new("redis://127.0.0.1:6379")).await?;
/// # let _ = store;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct RedisStore {
    inner: Arc<Inner>,
}

struct Inner {
    conn: ConnectionManager,
    config: RedisConfig,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore")
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

/// The keys of one conversation.
struct ConvKeys {
    info: String,
    members: String,
    ids: String,
    msgs: String,
    tree: String,
    kids: String,
    path: String,
}

impl ConvKeys {
    /// In the order the scripts take them.
    fn all(&self) -> [&str; 7] {
        [
            &self.info,
            &self.members,
            &self.ids,
            &self.msgs,
            &self.tree,
            &self.kids,
            &self.path,
        ]
    }
}

impl RedisStore {
    /// Connects to Redis. Fails when Redis cannot be reached now; once connected, the store
    /// reconnects by itself.
    pub async fn connect(config: RedisConfig) -> Result<Self, StoreError> {
        let conn = config.connect(None).await?;
        Ok(Self {
            inner: Arc::new(Inner { conn, config }),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &RedisConfig {
        &self.inner.config
    }

    /// Checks that Redis answers (for readiness probes).
    pub async fn ping(&self) -> Result<(), StoreError> {
        self.run("ping", |mut c| async move {
            redis::cmd("PING").query_async::<String>(&mut c).await
        })
        .await
        .map(drop)
    }

    fn conv_keys(&self, conversation: &ConversationId) -> ConvKeys {
        let base = format!("{}:conv:{{{conversation}}}", self.inner.config.prefix);
        ConvKeys {
            info: format!("{base}:info"),
            members: format!("{base}:members"),
            ids: format!("{base}:ids"),
            msgs: format!("{base}:msgs"),
            tree: format!("{base}:tree"),
            kids: format!("{base}:kids"),
            path: format!("{base}:path"),
        }
    }

    fn answer_key(&self, conversation: &ConversationId) -> String {
        format!(
            "{}:conv:{{{conversation}}}:answer",
            self.inner.config.prefix
        )
    }

    fn queue_key(&self, conversation: &ConversationId) -> String {
        format!("{}:conv:{{{conversation}}}:queue", self.inner.config.prefix)
    }

    fn usage_key(&self, user: &UserId, window: UsageWindow) -> String {
        format!(
            "{}:usage:{{{user}}}:{}-{}",
            self.inner.config.prefix, window.start, window.end
        )
    }

    fn session_key(&self, session: &SessionId) -> String {
        format!("{}:session:{{{session}}}", self.inner.config.prefix)
    }

    fn ttl_ms(&self) -> u64 {
        self.inner
            .config
            .conversation_ttl
            .map_or(0, |t| millis(t).max(1))
    }

    /// Runs one Redis operation under the configured timeout, mapping failures.
    pub(super) async fn run<T, F, Fut>(&self, op: &'static str, f: F) -> Result<T, StoreError>
    where
        F: FnOnce(ConnectionManager) -> Fut,
        Fut: Future<Output = redis::RedisResult<T>>,
    {
        let result = tokio::time::timeout(self.inner.config.timeout, f(self.inner.conn.clone()))
            .await
            .unwrap_or_else(|_| {
                Err(redis::RedisError::from((
                    redis::ErrorKind::Io,
                    "timed out waiting for Redis",
                )))
            });
        result.map_err(|e| {
            metrics::counter!("marie_store_errors_total", "store" => "redis", "op" => op)
                .increment(1);
            tracing::debug!(op, error = %e, "redis operation failed");
            unavailable(e)
        })
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

pub(super) fn to_json<T: Serialize>(value: &T) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(|e| StoreError::Corrupt(e.to_string()))
}

pub(super) fn from_json<T: DeserializeOwned>(raw: &str) -> Result<T, StoreError> {
    serde_json::from_str(raw).map_err(|e| StoreError::Corrupt(e.to_string()))
}

fn message_id(raw: &str) -> Result<MessageId, StoreError> {
    MessageId::parse(raw).map_err(|e| StoreError::Corrupt(e.to_string()))
}

/// A stored message, with the parent its tree node names (history written before branches
/// has no `parent_id` in its JSON).
fn read_message(json: &str, parent: &str) -> Result<ChatMessage, StoreError> {
    let mut message: ChatMessage = from_json(json)?;
    message.parent_id = (!parent.is_empty())
        .then(|| message_id(parent))
        .transpose()?;
    Ok(message)
}

fn no_such_conversation() -> StoreError {
    StoreError::Unavailable("no such conversation".into())
}

#[async_trait]
impl RoomStore for RedisStore {
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
            return Err(no_such_conversation());
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

    async fn append_message(
        &self,
        conversation: &ConversationId,
        message: ChatMessage,
    ) -> Result<(), StoreError> {
        let keys = self.conv_keys(conversation);
        let json = to_json(&message)?;
        let limit = self.inner.config.history_limit.unwrap_or(0);
        let ttl = self.ttl_ms();
        let done: i64 = self
            .run("append_message", |mut c| async move {
                let mut call = APPEND.prepare_invoke();
                for k in keys.all() {
                    call.key(k);
                }
                let parent = message.parent_id.as_ref().map_or("", |p| p.as_str());
                call.arg(message.message_id.as_str())
                    .arg(json)
                    .arg(parent)
                    .arg(limit)
                    .arg(ttl)
                    .invoke_async(&mut c)
                    .await
            })
            .await?;
        if done < 0 {
            return Err(no_such_conversation());
        }
        Ok(())
    }

    async fn history(
        &self,
        conversation: &ConversationId,
        query: HistoryQuery,
    ) -> Result<Vec<ChatMessage>, StoreError> {
        if query.limit == 0 {
            return Ok(Vec::new());
        }
        let keys = self.conv_keys(conversation);
        let before = query
            .before
            .as_ref()
            .map_or_else(String::new, |b| b.as_str().to_owned());
        let limit = i64::try_from(query.limit).unwrap_or(i64::MAX);
        let raw: Vec<String> = self
            .run("history", |mut c| async move {
                let mut call = HISTORY.prepare_invoke();
                for k in keys.all() {
                    call.key(k);
                }
                call.arg(before).arg(limit).invoke_async(&mut c).await
            })
            .await?;
        raw.chunks_exact(3)
            .map(|triple| {
                let mut message = read_message(&triple[0], &triple[1])?;
                if !triple[2].is_empty() {
                    message.siblings = triple[2]
                        .split(',')
                        .map(message_id)
                        .collect::<Result<_, _>>()?;
                }
                Ok(message)
            })
            .collect()
    }

    async fn message(
        &self,
        conversation: &ConversationId,
        message: &MessageId,
    ) -> Result<Option<ChatMessage>, StoreError> {
        let keys = self.conv_keys(conversation);
        let raw: Vec<String> = self
            .run("message", |mut c| async move {
                let mut call = MESSAGE.prepare_invoke();
                for k in keys.all() {
                    call.key(k);
                }
                call.arg(message.as_str()).invoke_async(&mut c).await
            })
            .await?;
        match raw.as_slice() {
            [json, parent] => read_message(json, parent).map(Some),
            _ => Ok(None),
        }
    }

    async fn active_leaf(
        &self,
        conversation: &ConversationId,
    ) -> Result<Option<MessageId>, StoreError> {
        let keys = self.conv_keys(conversation);
        let leaf: Option<String> = self
            .run("active_leaf", |mut c| async move {
                let mut call = LEAF.prepare_invoke();
                for k in keys.all() {
                    call.key(k);
                }
                call.invoke_async(&mut c).await
            })
            .await?;
        leaf.as_deref().map(message_id).transpose()
    }

    async fn switch_branch(
        &self,
        conversation: &ConversationId,
        message: &MessageId,
    ) -> Result<Option<MessageId>, StoreError> {
        let keys = self.conv_keys(conversation);
        let ttl = self.ttl_ms();
        let leaf: Option<String> = self
            .run("switch_branch", |mut c| async move {
                let mut call = SWITCH.prepare_invoke();
                for k in keys.all() {
                    call.key(k);
                }
                call.arg(message.as_str())
                    .arg(ttl)
                    .invoke_async(&mut c)
                    .await
            })
            .await?;
        leaf.as_deref().map(message_id).transpose()
    }

    async fn put_session(&self, session: SessionRecord) -> Result<(), StoreError> {
        let key = self.session_key(&session.session_id);
        let ttl = session.expires_at.saturating_sub(now_millis());
        if ttl == 0 {
            return self.remove_session(&session.session_id).await;
        }
        let json = to_json(&session)?;
        self.run("put_session", |mut c| async move {
            c.pset_ex::<_, _, ()>(key, json, ttl).await
        })
        .await
    }

    async fn session(&self, session: &SessionId) -> Result<Option<SessionRecord>, StoreError> {
        let key = self.session_key(session);
        let raw: Option<String> = self
            .run("session", |mut c| async move { c.get(key).await })
            .await?;
        let record: Option<SessionRecord> = raw.as_deref().map(from_json).transpose()?;
        Ok(record.filter(|s| s.expires_at > now_millis()))
    }

    async fn remove_session(&self, session: &SessionId) -> Result<(), StoreError> {
        let key = self.session_key(session);
        self.run("remove_session", |mut c| async move {
            c.del::<_, ()>(key).await
        })
        .await
    }

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
        active: &ActiveStream,
        ttl: Duration,
    ) -> Result<bool, StoreError> {
        let key = self.answer_key(conversation);
        let held: i64 = self
            .run("renew_answer", |mut c| async move {
                RENEW
                    .key(key)
                    .arg(active.stream_id.as_str())
                    .arg(active.seq)
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
    ) -> Result<Option<ActiveStream>, StoreError> {
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
        Ok(Some(ActiveStream {
            stream_id: StreamId::parse(stream_id)
                .map_err(|e| StoreError::Corrupt(e.to_string()))?,
            seq: seq.unwrap_or(0),
            pending_approval: None,
        }))
    }

    async fn create_approval(&self, approval: &ApprovalRecord) -> Result<(), StoreError> {
        self.put_approval(approval).await
    }

    async fn approval(&self, approval: &ApprovalId) -> Result<Option<ApprovalRecord>, StoreError> {
        self.read_approval(approval).await
    }

    async fn decide_approval(
        &self,
        approval: &ApprovalId,
        decision: &ApprovalDecision,
    ) -> Result<ApprovalOutcome, StoreError> {
        self.decide(approval, decision).await
    }

    async fn pending_approval(
        &self,
        conversation: &ConversationId,
    ) -> Result<Option<ApprovalRecord>, StoreError> {
        self.pending(conversation).await
    }

    async fn remove_approval(&self, approval: &ApprovalId) -> Result<(), StoreError> {
        self.forget_approval(approval).await
    }

    async fn add_usage(
        &self,
        user: &UserId,
        window: UsageWindow,
        tokens: u64,
    ) -> Result<u64, StoreError> {
        let key = self.usage_key(user, window);
        // Kept a day past its window, then gone by itself.
        let expire_at = window.end.saturating_add(86_400_000);
        let (used,): (u64,) = self
            .run("add_usage", |mut c| async move {
                redis::pipe()
                    .atomic()
                    .incr(&key, tokens)
                    .cmd("PEXPIREAT")
                    .arg(&key)
                    .arg(expire_at)
                    .ignore()
                    .query_async(&mut c)
                    .await
            })
            .await?;
        Ok(used)
    }

    async fn usage(&self, user: &UserId, window: UsageWindow) -> Result<u64, StoreError> {
        let key = self.usage_key(user, window);
        let used: Option<u64> = self
            .run("usage", |mut c| async move { c.get(key).await })
            .await?;
        Ok(used.unwrap_or(0))
    }

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
