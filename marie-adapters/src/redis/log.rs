//! [`RedisStreamLog`]: the [`StreamLog`] of every node in one Redis Stream per answer.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use marie_core::{LogRead, StoreError, StreamEvent, StreamId, StreamLog, StreamMeta};
use redis::Script;
use redis::aio::ConnectionManager;

use super::{RedisConfig, unavailable};

/// KEYS: stream, meta. ARGV: meta JSON, ttl ms.
static OPEN: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
if redis.call('EXISTS', KEYS[2]) == 0 then
  redis.call('DEL', KEYS[1])
  redis.call('HSET', KEYS[2], 'meta', ARGV[1], 'first', 1, 'last', 0)
end
redis.call('PEXPIRE', KEYS[2], ARGV[2])
return 1",
    )
});

/// KEYS: stream, meta. ARGV: max events, ttl ms, meta JSON ('' when unknown), then the seq and
/// the JSON of each event, in order. Returns the number appended (those already there are
/// skipped), or -1: the log is gone and cannot be recreated.
static APPEND: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local last = 0
if redis.call('EXISTS', KEYS[2]) == 0 then
  if ARGV[3] == '' then return -1 end
  -- The log was lost (expired, flushed): recreate it from this seq on, so that readers
  -- see it starts here and refuse positions before it.
  redis.call('DEL', KEYS[1])
  redis.call('HSET', KEYS[2], 'meta', ARGV[3], 'first', ARGV[4], 'last', 0)
else
  last = tonumber(redis.call('HGET', KEYS[2], 'last') or '0')
end
local added = 0
for i = 4, #ARGV, 2 do
  local seq = tonumber(ARGV[i])
  if seq > last then
    redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], ARGV[i] .. '-1', 'e', ARGV[i + 1])
    last = seq
    added = added + 1
  end
end
redis.call('HSET', KEYS[2], 'last', last)
redis.call('PEXPIRE', KEYS[1], ARGV[2])
redis.call('PEXPIRE', KEYS[2], ARGV[2])
return added",
    )
});

/// KEYS: stream, meta. ARGV: end JSON, retention ms.
static CLOSE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
if redis.call('EXISTS', KEYS[2]) == 0 then return 0 end
redis.call('HSET', KEYS[2], 'end', ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
redis.call('PEXPIRE', KEYS[2], ARGV[2])
return 1",
    )
});

/// KEYS: stream, meta. ARGV: after seq, limit. A JSON document, or nil when there is no log.
static READ: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
if redis.call('EXISTS', KEYS[2]) == 0 then return false end
local h = redis.call('HMGET', KEYS[2], 'meta', 'first', 'last', 'end')
local head = redis.call('XRANGE', KEYS[1], '-', '+', 'COUNT', 1)
local oldest = 0
if #head > 0 then oldest = tonumber(string.match(head[1][1], '^(%d+)')) end
local entries = redis.call('XRANGE', KEYS[1], (tonumber(ARGV[1]) + 1) .. '-0', '+', 'COUNT', tonumber(ARGV[2]))
local events = {}
for i, e in ipairs(entries) do
  local f = {}
  for j = 1, #e[2], 2 do f[e[2][j]] = e[2][j + 1] end
  events[i] = f['e']
end
return cjson.encode({ meta = h[1], first = tonumber(h[2] or '1'), last = tonumber(h[3] or '0'),
  ['end'] = h[4] or '', oldest = oldest, events = events })",
    )
});

/// A [`StreamLog`] in Redis, shared by every node: one Redis Stream per answer (entry id =
/// `seq`), trimmed to [`max_events`](Self::max_events), kept while the answer runs and for
/// [`retention`](Self::retention) after it ends.
///
/// Keys (under the [`RedisConfig::prefix`], hash-tagged by stream id):
/// `<prefix>:log:{<stream_id>}` (the stream: field `e`, the event as JSON) and
/// `<prefix>:log:{<stream_id>}:meta` (hash: `meta` JSON, `first` and `last` seq, `end` the
/// terminal event as JSON). An event's JSON is [`StreamEvent`]'s own serialization.
///
/// ```no_run
/// # async fn run() -> Result<(), marie_core::StoreError> {
/// use marie_adapters::{RedisConfig, RedisStreamLog};
///
/// let log = RedisStreamLog::connect(RedisConfig::new("redis://127.0.0.1:6379")).await?;
/// # let _ = log;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct RedisStreamLog {
    inner: Arc<Inner>,
}

struct Inner {
    conn: ConnectionManager,
    config: RedisConfig,
    retention: Duration,
    running_ttl: Duration,
    max_events: usize,
    /// The metadata of the answers this node runs, to recreate a log lost mid-answer.
    open: Mutex<HashMap<StreamId, String>>,
}

impl std::fmt::Debug for RedisStreamLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStreamLog")
            .field("config", &self.inner.config)
            .field("retention", &self.inner.retention)
            .field("max_events", &self.inner.max_events)
            .finish_non_exhaustive()
    }
}

impl RedisStreamLog {
    /// Connects to Redis (a connection of its own, which reconnects by itself). Logs are
    /// kept 5 minutes after their answer ends, at most 16,384 events each.
    pub async fn connect(config: RedisConfig) -> Result<Self, StoreError> {
        let conn = config.connect(None).await?;
        Ok(Self {
            inner: Arc::new(Inner {
                conn,
                config,
                retention: Duration::from_secs(300),
                running_ttl: Duration::from_secs(3600),
                max_events: 16_384,
                open: Mutex::default(),
            }),
        })
    }

    fn with(mut self, f: impl FnOnce(&mut Inner)) -> Self {
        if let Some(inner) = Arc::get_mut(&mut self.inner) {
            f(inner);
        }
        self
    }

    /// How long a log stays readable after its answer ended (5 minutes). Call before cloning.
    pub fn retention(self, retention: Duration) -> Self {
        self.with(|i| i.retention = retention.max(Duration::from_millis(1)))
    }

    /// How many events a log keeps, the oldest trimmed first (16,384; Redis trims lazily, so a
    /// few more may stay). Call before cloning.
    pub fn max_events(self, events: usize) -> Self {
        self.with(|i| i.max_events = events.max(1))
    }

    /// How long the log of a running answer lasts without a new event (1 hour).
    pub fn running_ttl(self, ttl: Duration) -> Self {
        self.with(|i| i.running_ttl = ttl.max(Duration::from_millis(1)))
    }

    fn keys(&self, stream_id: &StreamId) -> (String, String) {
        let base = format!("{}:log:{{{stream_id}}}", self.inner.config.prefix);
        (base.clone(), format!("{base}:meta"))
    }

    fn open_metas(&self) -> std::sync::MutexGuard<'_, HashMap<StreamId, String>> {
        self.inner.open.lock().unwrap_or_else(|e| e.into_inner())
    }

    async fn run<T: redis::FromRedisValue>(
        &self,
        op: &'static str,
        call: redis::ScriptInvocation<'_>,
    ) -> Result<T, StoreError> {
        let mut conn = self.inner.conn.clone();
        let result = tokio::time::timeout(self.inner.config.timeout, call.invoke_async(&mut conn))
            .await
            .unwrap_or_else(|_| {
                Err(redis::RedisError::from((
                    redis::ErrorKind::Io,
                    "timed out waiting for Redis",
                )))
            });
        result.map_err(|e| {
            metrics::counter!("marie_store_errors_total", "store" => "redis_log", "op" => op)
                .increment(1);
            unavailable(e)
        })
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1)
}

fn corrupt(e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(e.to_string())
}

#[async_trait]
impl StreamLog for RedisStreamLog {
    async fn open(&self, meta: &StreamMeta) -> Result<(), StoreError> {
        let json = serde_json::to_string(meta).map_err(corrupt)?;
        // What an append sends along to recreate a lost log: the meta without the question
        // (up to a whole user message, which every burst would carry again). A log recreated
        // mid-answer gives a resume from its start no `message_added`; history has it.
        let light = StreamMeta {
            question: None,
            ..meta.clone()
        };
        let light = serde_json::to_string(&light).map_err(corrupt)?;
        self.open_metas().insert(meta.stream_id.clone(), light);
        let (stream, meta_key) = self.keys(&meta.stream_id);
        let mut call = OPEN.prepare_invoke();
        call.key(stream)
            .key(meta_key)
            .arg(json)
            .arg(millis(self.inner.running_ttl));
        self.run::<i64>("log_open", call).await.map(drop)
    }

    /// One script call, so one round trip, for the whole burst.
    async fn append(&self, stream_id: &StreamId, events: &[StreamEvent]) -> Result<(), StoreError> {
        let numbered: Vec<(u64, String)> = events
            .iter()
            .filter_map(|e| Some((e.seq()?, serde_json::to_string(e))))
            .map(|(seq, json)| json.map(|json| (seq, json)).map_err(corrupt))
            .collect::<Result<_, _>>()?;
        if numbered.is_empty() {
            return Ok(());
        }
        let meta = self
            .open_metas()
            .get(stream_id)
            .cloned()
            .unwrap_or_default();
        let (stream, meta_key) = self.keys(stream_id);
        let mut call = APPEND.prepare_invoke();
        call.key(stream)
            .key(meta_key)
            .arg(self.inner.max_events)
            .arg(millis(self.inner.running_ttl))
            .arg(meta);
        for (seq, json) in &numbered {
            call.arg(*seq).arg(json);
        }
        self.run::<i64>("log_append", call).await.map(drop)
    }

    async fn close(&self, stream_id: &StreamId, end: &StreamEvent) -> Result<(), StoreError> {
        self.open_metas().remove(stream_id);
        let json = serde_json::to_string(end).map_err(corrupt)?;
        let (stream, meta_key) = self.keys(stream_id);
        let mut call = CLOSE.prepare_invoke();
        call.key(stream)
            .key(meta_key)
            .arg(json)
            .arg(millis(self.inner.retention));
        self.run::<i64>("log_close", call).await.map(drop)
    }

    async fn read(
        &self,
        stream_id: &StreamId,
        after_seq: u64,
        limit: usize,
    ) -> Result<Option<LogRead>, StoreError> {
        let (stream, meta_key) = self.keys(stream_id);
        let mut call = READ.prepare_invoke();
        call.key(stream)
            .key(meta_key)
            .arg(after_seq)
            .arg(limit.max(1));
        let raw: Option<String> = self.run("log_read", call).await?;
        let Some(raw) = raw else { return Ok(None) };
        let doc: serde_json::Value = serde_json::from_str(&raw).map_err(corrupt)?;
        let meta: StreamMeta =
            serde_json::from_str(doc["meta"].as_str().unwrap_or_default()).map_err(corrupt)?;
        let last_seq = doc["last"].as_u64().unwrap_or(0);
        let oldest = doc["oldest"].as_u64().unwrap_or(0);
        let first = doc["first"].as_u64().unwrap_or(1);
        // Trimming moves the oldest entry; a recreated log starts at `first`.
        let first_seq = if oldest == 0 {
            first.max(last_seq + 1)
        } else {
            first.max(oldest)
        };
        // cjson writes an empty table as `{}`: no events.
        let events = doc["events"]
            .as_array()
            .map(|items| {
                items
                    .iter()
                    .map(|e| {
                        let json = e
                            .as_str()
                            .ok_or_else(|| corrupt("an entry without its event"))?;
                        serde_json::from_str::<StreamEvent>(json).map_err(corrupt)
                    })
                    .collect::<Result<Vec<_>, StoreError>>()
            })
            .transpose()?
            .unwrap_or_default();
        let end = match doc["end"].as_str() {
            Some(s) if !s.is_empty() => Some(serde_json::from_str(s).map_err(corrupt)?),
            _ => None,
        };
        Ok(Some(LogRead {
            meta,
            first_seq,
            last_seq,
            events,
            end,
        }))
    }
}
