//! [`History`] in Redis: each conversation's messages, its tree of branches and its active
//! branch, read and written by Lua scripts that keep them consistent.

use std::sync::LazyLock;

use async_trait::async_trait;
use marie_core::{ChatMessage, ConversationId, History, HistoryQuery, MessageId, StoreError};
use redis::Script;

use super::{RedisStore, TOUCH, message_id, read_message, to_json};

/// The history tree, shared by the scripts that read or write it. KEYS: info, members, ids,
/// msgs, tree, kids, path, order, seq, reads (see [`ConvKeys`](super::ConvKeys)).
///
/// - `tree`: message id → `"<depth> <parent id>"` (the parent empty for a first message);
/// - `kids`: parent id (`""` for the first messages) → its children's ids, comma-separated,
///   in the order they came;
/// - `path`: the active branch, oldest first; `path[i]` is at depth `depth(path[0]) + i`, so
///   that a page of it is one `LRANGE`;
/// - `order`: message id → its storage position, from the counter `seq`, which only grows
///   (read marks are positions).
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
-- History written before branches is one line: it becomes a tree on first use. History
-- written before storage positions gets them in id order, after any given out.
local function upgrade()
  if redis.call('EXISTS', KEYS[8]) == 0 then
    local at = tonumber(redis.call('GET', KEYS[9]) or '0')
    for _, id in ipairs(redis.call('ZRANGE', KEYS[3], 0, -1)) do
      at = at + 1
      redis.call('ZADD', KEYS[8], at, id)
    end
    if at > 0 then
      redis.call('SET', KEYS[9], at)
      local ttl = redis.call('PTTL', KEYS[1])
      if ttl > 0 then
        redis.call('PEXPIRE', KEYS[8], ttl)
        redis.call('PEXPIRE', KEYS[9], ttl)
      end
    end
  end
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
    redis.call('ZREM', KEYS[8], id)
    redis.call('HDEL', KEYS[4], id)
    redis.call('HDEL', KEYS[5], id)
  end
end
";

/// ARGV: message id, message JSON, parent id ('' for none), limit (0: none), ttl ms, and
/// `leaf` to put the message after the active branch's leaf instead of after the parent id
/// (the leaf read in the same step as the append). A new message gets the next storage
/// position; one already held is replaced where it is, keeping its position. Returns the
/// parent the message is stored after ('' for none), or nil when there is no such
/// conversation.
static APPEND: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        "{TOUCH}{TREE}
if redis.call('EXISTS', KEYS[1]) == 0 then return false end
upgrade()
local id, parent = ARGV[1], ARGV[3]
if redis.call('HEXISTS', KEYS[4], id) == 0 then
  if ARGV[6] == 'leaf' then parent = redis.call('LINDEX', KEYS[7], -1) or '' end
  local depth = 0
  if parent ~= '' then
    local d = node(parent)
    if d then depth = d + 1 end
  end
  redis.call('ZADD', KEYS[3], 0, id)
  redis.call('ZADD', KEYS[8], 'NX', redis.call('INCR', KEYS[9]), id)
  redis.call('HSET', KEYS[5], id, depth .. ' ' .. parent)
  local kids = redis.call('HGET', KEYS[6], parent)
  redis.call('HSET', KEYS[6], parent, kids and (kids .. ',' .. id) or id)
  redis.call('HSET', KEYS[4], id, ARGV[2])
  activate(id)
  trim(ARGV[4])
else
  local _, p = node(id)
  parent = p or ''
  redis.call('HSET', KEYS[4], id, ARGV[2])
end
touch(ARGV[5])
return parent"
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

/// Every message on every branch, in the order they were stored, as pairs: message JSON,
/// parent id.
static ALL: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        "{TREE}
upgrade()
local out = {{}}
for _, id in ipairs(redis.call('ZRANGE', KEYS[8], 0, -1)) do
  local m = redis.call('HGET', KEYS[4], id)
  if m then
    local _, p = node(id)
    out[#out + 1] = m
    out[#out + 1] = p or ''
  end
end
return out"
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

impl RedisStore {
    /// Runs [`APPEND`]: `message` after its `parent_id`, or after the active branch's leaf
    /// when `at_leaf`. Returns the parent it is stored after.
    async fn append(
        &self,
        conversation: &ConversationId,
        message: &ChatMessage,
        at_leaf: bool,
    ) -> Result<Option<MessageId>, StoreError> {
        let keys = self.conv_keys(conversation);
        let json = to_json(message)?;
        let limit = self.inner.config.history_limit.unwrap_or(0);
        let ttl = self.ttl_ms();
        let parent: Option<String> = self
            .run(
                if at_leaf {
                    "append_to_active"
                } else {
                    "append_message"
                },
                |mut c| async move {
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
                        .arg(if at_leaf { "leaf" } else { "" })
                        .invoke_async(&mut c)
                        .await
                },
            )
            .await?;
        match parent.as_deref() {
            None => Err(StoreError::no_such_conversation()),
            Some("") => Ok(None),
            Some(parent) => message_id(parent).map(Some),
        }
    }
}

#[async_trait]
impl History for RedisStore {
    async fn append_message(
        &self,
        conversation: &ConversationId,
        message: ChatMessage,
    ) -> Result<(), StoreError> {
        self.append(conversation, &message, false).await.map(drop)
    }

    /// One script: the leaf is read where the message is appended.
    async fn append_to_active(
        &self,
        conversation: &ConversationId,
        mut message: ChatMessage,
    ) -> Result<ChatMessage, StoreError> {
        // The tree names the parent; the JSON does not guess one.
        message.parent_id = None;
        message.siblings = Vec::new();
        message.parent_id = self.append(conversation, &message, true).await?;
        Ok(message)
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

    async fn delete_history(&self, conversation: &ConversationId) -> Result<(), StoreError> {
        let keys = self.conv_keys(conversation);
        self.run("delete_history", |mut c| async move {
            redis::cmd("DEL")
                .arg(&keys.ids)
                .arg(&keys.msgs)
                .arg(&keys.tree)
                .arg(&keys.kids)
                .arg(&keys.path)
                .arg(&keys.order)
                .query_async::<()>(&mut c)
                .await
        })
        .await
    }

    async fn all_messages(
        &self,
        conversation: &ConversationId,
    ) -> Result<Vec<ChatMessage>, StoreError> {
        let keys = self.conv_keys(conversation);
        let raw: Vec<String> = self
            .run("all_messages", |mut c| async move {
                let mut call = ALL.prepare_invoke();
                for k in keys.all() {
                    call.key(k);
                }
                call.invoke_async(&mut c).await
            })
            .await?;
        raw.chunks_exact(2)
            .map(|pair| read_message(&pair[0], &pair[1]))
            .collect()
    }
}
